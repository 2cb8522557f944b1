"""One pair of ``distshot diff``: an old and a new record of the same image key, compared.

Runs in the diff's worker threads: reads both images through the storages, decodes each
once for its thumbnail, its pHash (when the manifest has none) and the pixel comparison,
and draws the diff picture of a changed pair. A side whose image cannot be read back
makes the pair ``failed`` with the reason, never a failed diff.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image

from ..core.errors import DistshotError
from ..core.perceptual import hamming
from .data import DIFFS, THUMBS
from .pixels import compare, draw_diff
from .sources import ImageReader, Record, has_image, image_key, image_link, valid_phash
from .thumbnails import IMAGE_ERRORS, describe, hash_of, make_thumbnail, open_image, save_thumbnail


def compare_pair(
    reader: ImageReader,
    out: Path,
    seq: int,
    old: Record | None,
    new: Record | None,
    *,
    threshold: float,
    distance: int,
    tolerance: int,
) -> Record:
    """The diff record of one pair (FORMAT.md), with its page fields and ``seq``."""
    either = new if new is not None else old
    assert either is not None
    result: Record = {
        "seq": seq,
        "url": either.get("url"),
        "image_key": image_key(either),
        "change": "unchanged",
        "changed_ratio": None,
        "phash_distance": None,
        "size_changed": False,
        "old": old,
        "new": new,
        "diff_image": None,
        "error": None,
        "_old_thumb": None,
        "_new_thumb": None,
        "_old_image": image_link(old, out) if old is not None else None,
        "_new_image": image_link(new, out) if new is not None else None,
        "_diff_image": None,
        "_diff_thumb": None,
    }
    broken = [side for side in (new, old) if side is not None and side.get("status") != "ok"]
    if new is None:
        result["change"] = "gone"  # whatever it was: the new batch no longer asks for it
    elif broken:
        result["change"] = "failed"
        result["error"] = broken[0].get("error")  # the new side's when both failed
    elif old is None:
        result["change"] = "new"
    if result["change"] != "unchanged" or old is None or new is None:
        for side, record in (("old", old), ("new", new)):
            if record is not None and has_image(record):
                result[f"_{side}_thumb"] = _thumbnail(reader, out, seq, side, record)
        return result
    try:
        _compare_shots(reader, out, seq, old, new, result, threshold, distance, tolerance)
    except IMAGE_ERRORS as exc:
        name = exc.type_name if isinstance(exc, DistshotError) else "UnreadableImage"
        result.update(change="failed", changed_ratio=None, phash_distance=None)
        result.update(diff_image=None, _diff_image=None, _diff_thumb=None)
        result["error"] = {"type": name, "message": describe(exc, "an image")}
    return result


def _compare_shots(
    reader: ImageReader,
    out: Path,
    seq: int,
    old: Record,
    new: Record,
    result: Record,
    threshold: float,
    distance: int,
    tolerance: int,
) -> None:
    """Fill ``result`` for two ok records: the same bytes, different files without pixels
    (PDF), or two shots compared pixel by pixel."""
    same_bytes = isinstance(old.get("sha256"), str) and old.get("sha256") == new.get("sha256")
    if same_bytes or not (has_image(old) and has_image(new)):
        if same_bytes:
            result.update(changed_ratio=0.0, phash_distance=0)
            if has_image(new):
                # One thumbnail serves both sides: the images are the same bytes.
                thumb = _thumbnail(reader, out, seq, "new", new)
                result["_old_thumb"] = result["_new_thumb"] = thumb
        else:
            result["change"] = "changed"  # a PDF that is not the same file
        return
    images: dict[str, Image.Image] = {}
    for side, record in (("old", old), ("new", new)):
        data = reader.read(record["location"])
        image = images[side] = open_image(data)
        if valid_phash(record.get("phash")) is None:
            record["phash"] = hash_of(data, image)
        save_thumbnail(image, out / THUMBS / f"{seq:06d}-{side}.webp")
        result[f"_{side}_thumb"] = f"{THUMBS}/{seq:06d}-{side}.webp"
    pixels = compare(images["old"], images["new"], tolerance)
    phash_distance = _distance(old.get("phash"), new.get("phash"))
    result.update(
        changed_ratio=pixels.ratio, phash_distance=phash_distance, size_changed=pixels.size_changed
    )
    same_look = phash_distance is None or phash_distance <= distance
    if pixels.size_changed or not same_look or pixels.ratio > threshold:
        result["change"] = "changed"
        name = f"{DIFFS}/{seq:06d}.png"
        picture = draw_diff(images["new"], pixels, images["old"].size, out / name)
        result["diff_image"] = result["_diff_image"] = name
        # The card shows a thumbnail; the full diff picture only opens in the detail view
        # (a thousand changed pages must not load a thousand full-size PNGs).
        thumb = f"{THUMBS}/{seq:06d}-diff.webp"
        save_thumbnail(picture, out / thumb)
        result["_diff_thumb"] = thumb


def _thumbnail(reader: ImageReader, out: Path, seq: int, side: str, record: Record) -> Any:
    name = f"{THUMBS}/{seq:06d}-{side}.webp"
    made = make_thumbnail(
        reader,
        seq,
        record["location"],
        out / name,
        want_phash=valid_phash(record.get("phash")) is None,
    )
    if made.phash is not None:
        record["phash"] = made.phash
    return name if made.made else None


def _distance(a: object, b: object) -> int | None:
    a, b = valid_phash(a), valid_phash(b)
    return hamming(a, b) if a is not None and b is not None else None
