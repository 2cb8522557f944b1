"""Capture options: one schema for CLI flags, CSV/JSONL keys, distshot.toml and the wire.

Values arrive as text (CSV, environment), JSON scalars (JSONL) or Python values (CLI);
``parse_options`` turns any of them into a validated, immutable ``CaptureOptions`` or
raises ``InvalidOption`` naming the field and the accepted values.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import InvalidOption

FORMATS = ("png", "jpeg", "webp")
WAIT_UNTIL = ("load", "domcontentloaded", "networkidle")
MAX_PIXELS = 16384  # Chromium's largest texture side; larger viewports fail inside the GPU path.


@dataclass(frozen=True)
class CaptureOptions:
    width: int = 1280
    height: int = 800
    full_page: bool = False
    format: str = "png"
    quality: int | None = None
    scale: float = 1.0
    wait_until: str = "load"
    wait_for: str | None = None
    delay: int = 0
    timeout: float = 30.0
    user_agent: str | None = None
    headers: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    def to_wire(self) -> dict[str, Any]:
        """The options that differ from the defaults, JSON-ready; ``from_wire`` inverts it.

        Messages carry only these: a .txt batch then sends ``{}``, and the worker rebuilds
        the shared default object without parsing anything.
        """
        data = {name: getattr(self, name) for name in self.non_default()}
        if "headers" in data:
            data["headers"] = dict(self.headers)
        return data

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> CaptureOptions:
        return parse_options(data, DEFAULT_OPTIONS)

    def non_default(self) -> set[str]:
        """Names of options set to something other than their default."""
        if self is DEFAULT_OPTIONS:
            return set()
        return {
            name for name in _FIELD_NAMES if getattr(self, name) != getattr(DEFAULT_OPTIONS, name)
        }

    @functools.cached_property
    def digest(self) -> str:
        """A stable hash of the options that change the image (not the timeout); cached,
        since every request of a .txt batch shares one options object."""
        data = {name: getattr(self, name) for name in _FIELD_NAMES if name != "timeout"}
        data["headers"] = dict(self.headers)
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


_FIELD_NAMES = tuple(f.name for f in dataclasses.fields(CaptureOptions))
OPTION_NAMES = frozenset(_FIELD_NAMES)
#: The one default object: shared by every request without options, so its digest is
#: computed once per process.
DEFAULT_OPTIONS = CaptureOptions()


def _as_int(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool):
        raise InvalidOption(f"{name} must be a whole number, not {value!r}")
    try:
        number = int(value) if not isinstance(value, str) else int(value.strip())
    except (TypeError, ValueError):
        raise InvalidOption(f"{name} must be a whole number, not {value!r}") from None
    if isinstance(value, float) and value != number:
        raise InvalidOption(f"{name} must be a whole number, not {value!r}")
    if not low <= number <= high:
        raise InvalidOption(f"{name} must be between {low} and {high}, not {number}")
    return number


def _as_float(name: str, value: Any, low: float, high: float) -> float:
    if isinstance(value, bool):
        raise InvalidOption(f"{name} must be a number, not {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidOption(f"{name} must be a number, not {value!r}") from None
    if not low < number <= high or number != number:
        raise InvalidOption(f"{name} must be above {low:g} and at most {high:g}, not {value!r}")
    return number


_TRUE = {"1", "true", "yes", "on", "y", "t"}
_FALSE = {"0", "false", "no", "off", "n", "f", ""}


def _as_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise InvalidOption(f"{name} must be true or false, not {value!r}")


def _as_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    text = str(value).strip().lower() if isinstance(value, str) else value
    if text not in choices:
        raise InvalidOption(f"{name} must be one of {', '.join(choices)}, not {value!r}")
    return str(text)


def _as_text(name: str, value: Any, max_len: int = 2048) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidOption(f"{name} must be non-empty text, not {value!r}")
    if len(value) > max_len or any(ch in value for ch in "\r\n\0"):
        raise InvalidOption(f"{name} must be one line of at most {max_len} characters")
    return value.strip()


def parse_header_line(text: str) -> tuple[str, str]:
    """'Name: value' -> (name, value); the CLI's --header and CSV cells use this."""
    name, sep, value = text.partition(":")
    name, value = name.strip(), value.strip()
    if not sep or not name or any(ch in name for ch in " \t\r\n\0:") or "\n" in value:
        raise InvalidOption(f"header must look like 'Name: value', not {text!r}")
    return name, value


def _as_headers(value: Any) -> tuple[tuple[str, str], ...]:
    pairs: list[tuple[str, str]] = []
    if isinstance(value, Mapping):
        for key, val in value.items():
            if not isinstance(val, str | int | float) or isinstance(val, bool):
                raise InvalidOption(f"header {key!r} must have a text value")
            pairs.append(parse_header_line(f"{key}: {val}"))
    elif isinstance(value, str):
        # CSV cells and env vars: 'A: 1; B: 2' or a JSON object.
        text = value.strip()
        if text.startswith("{"):
            try:
                return _as_headers(json.loads(text))
            except json.JSONDecodeError:
                raise InvalidOption(f"headers is not valid JSON: {text!r}") from None
        pairs = [parse_header_line(part) for part in text.split(";") if part.strip()]
    elif isinstance(value, list | tuple):
        for item in value:
            if isinstance(item, str):
                pairs.append(parse_header_line(item))
            elif isinstance(item, list | tuple) and len(item) == 2:
                pairs.append(parse_header_line(f"{item[0]}: {item[1]}"))
            else:
                raise InvalidOption(f"headers entry must be 'Name: value', not {item!r}")
    else:
        raise InvalidOption(f"headers must be an object of name: value, not {value!r}")
    return tuple(sorted(pairs, key=lambda p: p[0].lower()))


def parse_options(raw: Mapping[str, Any], base: CaptureOptions) -> CaptureOptions:
    """Validate ``raw`` (any source) and lay it over ``base``.

    Keys with a None value or an empty CSV cell are "not set" and keep ``base``'s value.
    Unknown keys are an error: a misspelt option must never be silently ignored.
    """
    changes: dict[str, Any] = {}
    for key, value in raw.items():
        name = key.strip().lower().replace("-", "_")
        if name not in OPTION_NAMES:
            raise InvalidOption(
                f"unknown option {key!r}; known options: {', '.join(sorted(OPTION_NAMES))}"
            )
        if value is None or (isinstance(value, str) and value.strip() == "" and name != "headers"):
            continue
        changes[name] = _parse_one(name, value)
    if not changes:
        return base  # the common case for .txt input: no per-line options
    result = dataclasses.replace(base, **changes)
    if result.quality is not None and result.format == "png":
        raise InvalidOption("quality applies to jpeg and webp only, not png")
    return result


def _parse_one(name: str, value: Any) -> Any:
    if name in ("width", "height"):
        return _as_int(name, value, 1, MAX_PIXELS)
    if name == "full_page":
        return _as_bool(name, value)
    if name == "format":
        fmt = value.strip().lower() if isinstance(value, str) else value
        return _as_choice(name, "jpeg" if fmt == "jpg" else fmt, FORMATS)
    if name == "quality":
        return _as_int(name, value, 0, 100)
    if name == "scale":
        return _as_float(name, value, 0.0, 4.0)
    if name == "wait_until":
        return _as_choice(name, value, WAIT_UNTIL)
    if name == "wait_for":
        return _as_text(name, value)
    if name == "delay":
        return _as_int(name, value, 0, 60_000)
    if name == "timeout":
        return _as_float(name, value, 0.0, 600.0)
    if name == "user_agent":
        return _as_text(name, value)
    if name == "headers":
        return _as_headers(value)
    raise AssertionError(name)  # pragma: no cover - OPTION_NAMES guards this
