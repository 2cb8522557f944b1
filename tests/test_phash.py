"""Perceptual hashes in the manifest: every shot's record carries ``phash`` and
``image_key``, a cache hit carries the hash it was stored with, and a worker can turn
hashing off."""

from __future__ import annotations

import asyncio
import io
import re
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw

from distshot.core.config import load_settings
from distshot.core.contracts import Engine
from distshot.core.models import Capture, ShotRequest
from distshot.core.options import CaptureOptions
from distshot.core.perceptual import DEFAULT_DISTANCE, hamming, phash_hex
from distshot.core.service import capture_request
from distshot.engines.null import CAPABILITIES
from distshot.storage.local import LocalStorage


def page(title: str, *, layout: int = 0, size: tuple[int, int] = (1280, 800)) -> bytes:
    """A page-like picture: a header bar, a title and blocks of 'text' in one of two
    layouts; the title's text is the small difference between near-duplicates."""
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, size[0], 90), fill=(30, 60, 120))
    draw.text((40, 30), title, fill="white")
    for row in range(8):
        if layout == 0:
            box = (60, 140 + row * 70, 60 + 900 - row * 60, 170 + row * 70)
        else:
            box = (600 - row * 40, 120 + row * 80, 1220, 190 + row * 80)
        draw.rectangle(box, fill=(90, 90, 90) if layout == 0 else (200, 40, 40))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


class PictureEngine(Engine):
    """Answers each URL with its picture from ``pictures`` (no browser: the record's
    fields are what is tested here)."""

    name = "pictures"
    capabilities = CAPABILITIES

    def __init__(self, pictures: dict[str, bytes]) -> None:
        self.pictures = pictures
        self.calls = 0

    async def capture(self, request: ShotRequest) -> Capture:
        self.calls += 1
        return Capture(image=self.pictures[request.url], format="png", final_url=request.url)


def shoot(url: str, engine: Engine, storage: LocalStorage, **kwargs: Any) -> dict[str, Any]:
    request = ShotRequest(
        id=f"b:{url}",
        line=1,
        url=url,
        options=CaptureOptions(),
        batch="b",
        allow_private=True,
        cache_ttl=kwargs.pop("cache_ttl", None),
    )
    return asyncio.run(capture_request(request, engine, storage, **kwargs)).to_record()


def test_near_duplicates_are_within_the_threshold_and_other_layouts_are_not() -> None:
    home, home_again = phash_hex(page("Welcome")), phash_hex(page("Welcome back, Ada"))
    other = phash_hex(page("Welcome", layout=1))
    assert home and home_again and other
    assert re.fullmatch(r"[0-9a-f]{16}", home)
    assert hamming(home, home_again) <= DEFAULT_DISTANCE
    assert hamming(home, other) > DEFAULT_DISTANCE


def test_a_pdf_or_undecodable_bytes_have_no_hash() -> None:
    assert phash_hex(b"%PDF-1.7\n...") is None
    assert phash_hex(b"\x89PNG\r\n\x1a\n truncated") is None


def test_each_record_carries_its_hash_and_the_key_that_ends_its_object_name(
    tmp_path: Path,
) -> None:
    image = page("Welcome")
    record = shoot(
        "https://a.test/", PictureEngine({"https://a.test/": image}), LocalStorage(str(tmp_path))
    )
    assert record["status"] == "ok"
    stored = Path(record["location"].removeprefix("file://")).read_bytes()
    assert record["phash"] == phash_hex(stored) == phash_hex(image)
    assert re.fullmatch(r"[0-9a-f]{16}", record["image_key"])
    assert record["location"].endswith(f"-{record['image_key']}.png")


def test_a_cache_hit_carries_the_hash_the_image_was_stored_with(tmp_path: Path) -> None:
    storage = LocalStorage(str(tmp_path))
    engine = PictureEngine({"https://a.test/": page("Welcome")})
    first = shoot("https://a.test/", engine, storage)
    again = shoot("https://a.test/", engine, storage, cache_ttl=3600)
    assert again["cached"] and engine.calls == 1
    assert again["phash"] == first["phash"] is not None


def test_hashing_can_be_turned_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = PictureEngine({"https://a.test/": page("Welcome")})
    record = shoot("https://a.test/", engine, LocalStorage(str(tmp_path)), hash_images=False)
    assert record["status"] == "ok" and record["phash"] is None
    assert record["image_key"] is not None  # the key costs nothing and diff needs it
    monkeypatch.setenv("DISTSHOT_PHASH", "false")
    assert load_settings().phash is False
    monkeypatch.delenv("DISTSHOT_PHASH")
    assert load_settings().phash is True
