"""Device presets for the ``device`` option: phones, tablets and desktops.

``devices.json`` holds Playwright's device descriptors (Playwright 1.65,
``deviceDescriptorsSource.json``, Apache-2.0), one line each: viewport width and height,
device scale factor, mobile, touch and user agent. ``distshot devices`` lists them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources


@dataclass(frozen=True)
class Device:
    name: str
    width: int
    height: int
    scale: float
    mobile: bool
    touch: bool
    user_agent: str


def _load() -> dict[str, Device]:
    raw = json.loads(resources.files(__package__).joinpath("devices.json").read_text("utf-8"))
    return {
        name: Device(name, int(w), int(h), float(scale), bool(mobile), bool(touch), str(ua))
        for name, (w, h, scale, mobile, touch, ua) in raw.items()
    }


DEVICES: dict[str, Device] = _load()
_BY_FOLDED = {name.casefold(): device for name, device in DEVICES.items()}


def find_device(name: str) -> Device | None:
    """The preset of that name, ignoring case and surrounding spaces."""
    return _BY_FOLDED.get(" ".join(name.split()).casefold())
