"""The ``null`` engine: a fixed tiny image, no browser. For tests and pipeline benchmarks."""

from __future__ import annotations

import struct
import zlib
from functools import cache

from ..core.contracts import Capabilities, Engine
from ..core.models import Capture, ShotRequest
from ..plugins.hookspecs import hookimpl

CAPABILITIES = Capabilities(
    options=frozenset({"width", "height", "format"}),
    formats=frozenset({"png"}),
    wait_until=frozenset({"load"}),
    description="no browser: a blank PNG of the requested size",
    starts_processes=False,
)


@cache
def blank_png(width: int, height: int) -> bytes:
    """A valid white PNG of the given size (cached: the pipeline, not encoding, is measured)."""
    row = b"\x00" + b"\xff\xff\xff" * width
    raw = zlib.compress(row * height, 9)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


class NullEngine(Engine):
    name = "null"
    capabilities = CAPABILITIES

    async def capture(self, request: ShotRequest) -> Capture:
        opts = request.options
        return Capture(
            image=blank_png(opts.width, opts.height),
            format="png",
            final_url=request.url,
            http_status=None,
            title=None,
            navigate_ms=0.0,
            capture_ms=0.0,
        )


@hookimpl
def distshot_engines(register):  # type: ignore[no-untyped-def]
    register("null", lambda config: NullEngine(), CAPABILITIES)
