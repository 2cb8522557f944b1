"""What the conformance suite checks results with: running cases through the capture
service, reading images and PDFs, and machine conditions (a loaded CPU, no browser left)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import re
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..core.contracts import Engine
from ..core.models import ShotRequest, ShotResult
from ..core.options import DEFAULT_OPTIONS, parse_options
from ..core.service import capture_request
from ..storage.local import LocalStorage
from .engine_cases import Case
from .processes import browser_processes
from .server import PageServer


def request_for(server: PageServer, number: int, case: Case, **extra: Any) -> ShotRequest:
    case = case.at(server.server_address[1])
    return ShotRequest(
        id=f"conformance:{number}",
        line=number,
        url=case.path if "://" in case.path else server.base + case.path,
        options=parse_options(case.options, DEFAULT_OPTIONS),
        allow_private=True,  # the pages are on loopback
        **extra,
    )


async def run_batch(
    engine: Engine,
    server: PageServer,
    cases: dict[str, Case],
    storage: LocalStorage,
    concurrency: int,
) -> dict[str, ShotResult]:
    gate = asyncio.Semaphore(concurrency)

    async def one(number: int, case: Case) -> ShotResult:
        async with gate:
            return await capture_request(request_for(server, number, case), engine, storage)

    results = await asyncio.gather(*(one(n, c) for n, c in enumerate(cases.values(), 1)))
    return dict(zip(cases, results, strict=True))


def image_of(result: ShotResult) -> Any:
    from PIL import Image

    assert result.location is not None, result
    data = Path(result.location.removeprefix("file://")).read_bytes()
    return Image.open(io.BytesIO(data))


def pixel_of(result: ShotResult) -> tuple[int, int, int]:
    rgb = image_of(result).convert("RGB")
    value: tuple[int, int, int] = rgb.getpixel((rgb.width // 2, rgb.height // 2))
    return value


def file_of(result: ShotResult) -> bytes:
    assert result.location is not None, result
    return Path(result.location.removeprefix("file://")).read_bytes()


def paper_is(pdf: bytes, points: tuple[int, int]) -> bool:
    """Whether the first page's /MediaBox is this size in points (within 2: Chromium
    rounds the paper's inches to its own units)."""
    match = re.search(rb"/MediaBox\s*\[\s*0\s+0\s+([\d.]+)\s+([\d.]+)\s*\]", pdf)
    assert match is not None, "no /MediaBox in the PDF"
    size = float(match.group(1)), float(match.group(2))
    return all(abs(a - b) <= 2 for a, b in zip(size, points, strict=True))


def fills(pdf: bytes, operator: str) -> bool:
    """Whether any of the PDF's (deflated) content streams sets this fill colour."""
    for stream in re.findall(rb"stream\r?\n(.*?)\r?\nendstream", pdf, re.DOTALL):
        try:
            text = zlib.decompress(stream)
        except zlib.error:
            text = stream
        if operator.encode() in text:
            return True
    return False


def failed_permanently(result: ShotResult, error_type: str, mentions: str) -> None:
    assert result.status == "failed", result
    assert result.error is not None and result.error["type"] == error_type, result.error
    assert mentions in result.error["message"], result.error
    assert not result.transient and result.attempts == 1


def close(a: Any, b: tuple[int, int, int], tolerance: int = 40) -> bool:
    return all(abs(x - y) <= tolerance for x, y in zip(a, b, strict=True))


def ok(result: ShotResult) -> ShotResult:
    assert result.status == "ok", result.error
    return result


def assert_no_browser_left() -> None:
    """A normal close leaves no browser or driver process behind (a few seconds allowed)."""
    deadline = time.monotonic() + 10
    while browser_processes() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert browser_processes() == [], "browser processes left after engine.close()"


@contextlib.contextmanager
def cpu_load(processes: int | None = None) -> Iterator[None]:
    """Keep every core busy (one spinning process each) for the duration, as on a worker
    that shares its machine; the processes are stopped and reaped afterwards."""
    spinners = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"])
        for _ in range(processes or os.cpu_count() or 1)
    ]
    try:
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
        for spinner in spinners:
            spinner.wait()


def pixel_difference(a: Any, b: Any, tolerance: int = 48) -> tuple[int, int]:
    """Pixels whose channels differ by more than ``tolerance``, and the pixel count."""
    from PIL import ImageChops

    diff = ImageChops.difference(a, b).convert("L").point(lambda v: 255 if v > tolerance else 0)
    histogram = diff.histogram()
    return histogram[255], a.width * a.height
