"""Perceptual hashes of shots: imagehash's pHash, as 16 hex digits (64 bits).

The worker hashes each image at capture time (the manifest's ``phash``), so a report or a
diff never has to open every image again; the report hashes the images of older
manifests with this same function, so both agree bit for bit.
"""

from __future__ import annotations

import io
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image

logger = logging.getLogger("distshot.perceptual")

#: pHash bits (imagehash's default hash_size 8 gives an 8x8 = 64-bit hash).
HASH_BITS = 64
#: Look-alike threshold: at most this many differing bits of 64 (the issue's default).
DEFAULT_DISTANCE = 10
#: The short side images are box-reduced to before imagehash's own resize to 32x32.
_REDUCED_SIDE = 128


def phash_hex(image: bytes) -> str | None:
    """The pHash of an encoded PNG, JPEG or WebP as 16 hex digits, or None when it has no
    pixels (a PDF) or cannot be decoded (a hash is a convenience, never a failed shot)."""
    if image.startswith(b"%PDF-"):
        return None
    # Imported here: Pillow and imagehash (numpy, scipy) cost ~0.2 s to import, which the
    # commands that never hash (dispatch, engines, options) should not pay.
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(image)) as decoded:
            # JPEG can decode straight to a reduced grey image (DCT scaling): most of the
            # decoding cost of a large JPEG shot is skipped. pHash resizes to 32x32 anyway.
            if decoded.format == "JPEG":
                decoded.draft("L", (256, 256))
            return phash_decoded(decoded)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        logger.debug("no perceptual hash: %s", exc)
        return None


def phash_decoded(image: Image.Image) -> str:
    """The pHash of an image already opened with Pillow (the report decodes each image once,
    for its thumbnail and its hash). Equal to ``phash_hex`` of its bytes for a PNG or WebP,
    and for a JPEG opened with ``draft("L", (256, 256))``, as ``phash_hex`` does."""
    import imagehash

    grey = image.convert("L")
    # A box reduction to >= 128 px first: imagehash resizes to 32x32 with Lanczos, which
    # over a whole 1280x800 shot costs 15 ms of CPU, and over the reduced image 1 ms.
    # The hash stays within 2 bits of imagehash's on the full image (0 for 6 of the
    # demo's 8 shots): far below the look-alike threshold of 10. Worker and report
    # both hash here, so they agree exactly.
    factor = min(grey.size) // _REDUCED_SIDE
    if factor > 1:
        grey = grey.reduce(factor)
    return str(imagehash.phash(grey))


def hamming(a: str, b: str) -> int:
    """Number of differing bits between two hex hashes of the same length."""
    return (int(a, 16) ^ int(b, 16)).bit_count()
