"""Thumbnails: the top of a shot, 4:3, about 320 px wide, as a small WebP.

The top is what tells pages apart at a glance (header, hero, the error message), and a
fixed aspect keeps the gallery's grid even whatever the page's height. Each image is
decoded once: the same decoded image gives the thumbnail and, for records of older
manifests that have none, the pHash (``core.perceptual``, bit for bit what the worker
computes).

Work runs in threads, a bounded number in flight (``BoundedPool``): Pillow releases the
GIL while it decodes, resizes and encodes, which is nearly all of a thumbnail's time, and
threads share the storages' clients and need no pickling (bench/report_build.py).
"""

from __future__ import annotations

import io
import logging
import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from PIL import Image, UnidentifiedImageError

from ..core.errors import DistshotError
from ..core.perceptual import phash_decoded, phash_hex
from .sources import ImageReader

logger = logging.getLogger("distshot.report")

WIDTH = 320
HEIGHT = 240  # 4:3
QUALITY = 70
#: What a broken, missing or unreadable image raises here: never a failed report.
IMAGE_ERRORS = (
    DistshotError,
    UnidentifiedImageError,
    Image.DecompressionBombError,
    OSError,
    ValueError,
    SyntaxError,
)

T = TypeVar("T")


def default_workers() -> int:
    """Threads for image work: one per core this process may use, at most 8."""
    return max(1, min(8, len(os.sched_getaffinity(0))))


def open_image(data: bytes) -> Image.Image:
    """Decode an encoded shot fully (Pillow opens lazily; this reads the pixels now)."""
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def hash_of(data: bytes, image: Image.Image) -> str | None:
    """The pHash the worker would have written for this shot: a fully decoded PNG or WebP
    is hashed as it is; a JPEG is hashed from its bytes (the worker's reduced decode)."""
    return phash_hex(data) if image.format == "JPEG" else phash_decoded(image)


def save_thumbnail(image: Image.Image, dest: Path) -> None:
    """Write the top 4:3 of ``image``, at most ``WIDTH`` x ``HEIGHT``, as WebP to ``dest``."""
    width, height = image.size
    top = image.crop((0, 0, width, min(height, max(1, width * HEIGHT // WIDTH))))
    if top.mode not in ("RGB", "RGBA"):
        top = top.convert("RGBA" if "transparency" in top.info or "A" in top.mode else "RGB")
    # reducing_gap=1.0: a box reduction by the whole factor (4 for a 1280 px shot), then
    # LANCZOS for what is left: 1.5 ms instead of 17 for LANCZOS all the way, and no
    # difference to see at 320 px. WebP method 2 encodes in 3 ms instead of 8.5 (method 4)
    # for files 4% larger.
    top.thumbnail((WIDTH, HEIGHT), Image.Resampling.LANCZOS, reducing_gap=1.0)
    top.save(dest, "WEBP", quality=QUALITY, method=2)


@dataclass(frozen=True)
class Thumbnail:
    """What became of one record's image."""

    index: int
    made: bool
    #: The pHash computed here (only when asked: the record had none), or None.
    phash: str | None = None
    #: Why there is no thumbnail (an unreadable or missing image).
    problem: str | None = None


def make_thumbnail(
    reader: ImageReader, index: int, location: str, dest: Path, *, want_phash: bool
) -> Thumbnail:
    """Read the image at ``location``, write its thumbnail to ``dest``, and hash it if asked.
    Never raises for a bad image: the record keeps ``_thumb: null`` and the report goes on."""
    try:
        data = reader.read(location)
        if data.startswith(b"%PDF-"):
            return Thumbnail(index, made=False)
        if want_phash:
            # The whole image is hashed: decode it whole, once for both.
            with open_image(data) as image:
                phash = hash_of(data, image)
                save_thumbnail(image, dest)
            return Thumbnail(index, made=True, phash=phash)
        with open_top(data) as image:
            save_thumbnail(image, dest)
        return Thumbnail(index, made=True)
    except IMAGE_ERRORS as exc:
        return Thumbnail(index, made=False, problem=describe(exc, location))


def open_top(data: bytes) -> Image.Image:
    """Decode no more of a shot than its thumbnail shows. A JPEG decodes reduced (DCT
    scaling) to about the thumbnail's width. A tall PNG (a full page: 115 ms to decode
    1280x6000 whole) decodes its top 4:3 only (15 ms): PNG rows are compressed in order, so
    decoding can stop early. Pillow has no public call for that; its own plugins' way
    (``draft``) is to set the image's size and the decoding tile's extents before ``load``,
    which is done here, guarded: an interlaced or animated PNG, or tiles that look other than
    expected, decode whole. Anything else decodes whole."""
    image = Image.open(io.BytesIO(data))
    width, height = image.size
    rows = max(1, width * HEIGHT // WIDTH)
    if image.format == "JPEG":
        image.draft("RGB", (WIDTH, max(1, height * WIDTH // max(1, width))))
    elif (
        image.format == "PNG"
        and height > rows
        and not image.info.get("interlace")
        and getattr(image, "n_frames", 1) == 1
        and len(image.tile) == 1
        and hasattr(image.tile[0], "_replace")  # Pillow >= 11: tiles are named tuples
        and image.tile[0][1] == (0, 0, width, height)
    ):
        image._size = (width, rows)
        image.tile = [image.tile[0]._replace(extents=(0, 0, width, rows))]
    image.load()
    return image


def describe(exc: BaseException, location: str) -> str:
    """One line on why an image could not be used."""
    if isinstance(exc, DistshotError):
        return exc.message
    return f"{location}: {type(exc).__name__}: {exc}"


class BoundedPool(Generic[T]):
    """Threads running jobs with at most ``window`` in flight, so that a producer streaming
    100,000 records never queues more than a few images' worth of memory. ``submit`` hands
    back the results that finished while it waited for room; ``finish`` the rest. Results
    come in completion order, not submission order."""

    def __init__(self, workers: int, window: int | None = None) -> None:
        self.executor = ThreadPoolExecutor(max(1, workers), thread_name_prefix="distshot-report")
        self.window = window or 2 * max(1, workers)
        self.pending: set[Future[T]] = set()

    def submit(self, job: Callable[[], T]) -> list[T]:
        finished: list[T] = []
        while len(self.pending) >= self.window:
            done, self.pending = wait(self.pending, return_when=FIRST_COMPLETED)
            finished += (future.result() for future in done)
        self.pending.add(self.executor.submit(job))
        return finished

    def finish(self) -> Iterator[T]:
        queue = deque(self.pending)
        self.pending = set()
        while queue:
            yield queue.popleft().result()

    def __enter__(self) -> BoundedPool[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        for future in self.pending:
            future.cancel()
        self.executor.shutdown(wait=True, cancel_futures=True)
