"""Pixel comparison of two shots of one page, and the picture of what changed.

A pixel differs when any of its red, green or blue values differs by more than
``TOLERANCE`` (16 of 255). Two renders of an unchanged page are not always bit-identical:
anti-aliased text edges, sub-pixel positioning and image decoding can shift values by a
few units; a change a person would notice (text, colour, layout) moves them by far more.
Alpha is ignored (shots are opaque; a transparent background's pixels compare by colour).

Shots of different sizes are compared over their common area, the top-left rectangle both
cover; the caller reports them as changed whatever that area says.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageChops, ImageDraw

TOLERANCE = 16
#: The diff picture: the new shot faded to light grey, what changed veiled in this red,
#: the area only the new shot has (a taller or wider page) tinted in this orange.
CHANGED = (230, 0, 0)
ADDED = (255, 160, 0)
_FADE = [160 + v * 80 // 255 for v in range(256)]


@dataclass(frozen=True)
class PixelDiff:
    #: Share of the common area's pixels that differ (0.0 to 1.0).
    ratio: float
    size_changed: bool
    #: Where pixels differ in the common area ("L": 255 differs, 0 same); None when none do.
    mask: Image.Image | None


def compare(old: Image.Image, new: Image.Image, tolerance: int = TOLERANCE) -> PixelDiff:
    """How much of the common area differs between two decoded shots."""
    width, height = min(old.width, new.width), min(old.height, new.height)
    size_changed = old.size != new.size
    if width == 0 or height == 0:
        return PixelDiff(1.0, size_changed, None)
    difference = ImageChops.difference(_rgb(old, width, height), _rgb(new, width, height))
    if difference.getbbox() is None:
        return PixelDiff(0.0, size_changed, None)
    red, green, blue = difference.split()
    # The largest of the three channel differences, then 255 above the tolerance, else 0.
    peak = ImageChops.lighter(ImageChops.lighter(red, green), blue)
    mask = peak.point([0] * (tolerance + 1) + [255] * (255 - tolerance))
    changed = mask.histogram()[255]
    if changed == 0:
        return PixelDiff(0.0, size_changed, None)
    return PixelDiff(changed / (width * height), size_changed, mask)


def draw_diff(
    new: Image.Image, diff: PixelDiff, old_size: tuple[int, int], dest: Path
) -> Image.Image:
    """Write the new shot, faded, with changed pixels veiled in red, a red box around them,
    and the area the old shot did not have tinted orange, as a PNG to ``dest``; return it
    (for its thumbnail)."""
    picture = new.convert("L").point(_FADE).convert("RGB")
    width, height = min(old_size[0], new.width), min(old_size[1], new.height)
    if diff.mask is not None:
        # Changed pixels in their new colours under a strong red veil: what changed stands
        # out, and what it changed to stays readable.
        common = _rgb(new, width, height)
        veiled = Image.blend(common, Image.new("RGB", common.size, CHANGED), 0.6)
        picture.paste(veiled, (0, 0), diff.mask)
    # Only the new shot's pixels: a strip on the right, a strip at the bottom, or both.
    for box in ((width, 0, new.width, new.height), (0, height, width, new.height)):
        if box[2] > box[0] and box[3] > box[1]:
            area = picture.crop(box)
            picture.paste(Image.blend(area, Image.new("RGB", area.size, ADDED), 0.35), box[:2])
    changed_box = diff.mask.getbbox() if diff.mask is not None else None
    if changed_box is not None:
        left, top, right, bottom = changed_box
        ImageDraw.Draw(picture).rectangle(
            (max(0, left - 4), max(0, top - 4), right + 3, bottom + 3), outline=CHANGED, width=3
        )
    picture.save(dest, "PNG", compress_level=3)
    return picture


def _rgb(image: Image.Image, width: int, height: int) -> Image.Image:
    if image.size != (width, height):
        image = image.crop((0, 0, width, height))
    return image if image.mode == "RGB" else image.convert("RGB")
