"""Benchmark: full-page captures of very tall pages, through distshot's own code path.

Raw Chromium cannot encode an image of 2^29 pixels or more ("Unable to capture screenshot";
1280x415,000 works). distshot cuts a full page at ``max_height`` (300,000 CSS px by default)
and any capture area at MAX_IMAGE_PIXELS (distshot/engines/cdp_capture.py), and says
``truncated`` in the record; before a full-page capture it scrolls through the page
(``scroll_page``), bounded by max_height and half the job's time. This shows what a worker
does with such pages: default options + ``full_page``, one engine for every page in order.

Pages (generated in a temporary folder, served from 127.0.0.1 by a ThreadingHTTPServer):
  block-H    one <div> H px tall with a CSS gradient (H: 30,000 80,000 250,000 1,000,000)
  rows-N     N rows of text, 18 px each (N: 200,000, about 3.6 million px)

Each page is one job: ``distshot.core.service.capture_request`` with the engine from the
plug-in registry (EngineConfig(concurrency=1)), as the engine conformance suite does. After
each, a small page on the same engine shows whether the browser survived (ok on attempt 1).
Per page: status, error, image size, truncated, bytes, job seconds (timings total_ms, and
navigate_ms, which includes the scroll, and capture_ms), peak RSS of the browser's whole
process tree during the job (every Chromium process below this one, sampled every 0.2 s)
and the engine's ``launches`` before the job, after it and after the next job (a relaunch:
the browser died or was recycled; ``recycle_memory_mb``, 2048 by default, can recycle it
after a huge page).

The machine may be shared: when MemAvailable drops below ``--guard-mb`` the benchmark kills
its own Chromium processes (the row then says so).

    .venv/bin/python bench/tall_pages.py                          # playwright, every page
    .venv/bin/python bench/tall_pages.py --recycle-memory-mb 0    # never recycle on memory
    .venv/bin/python bench/tall_pages.py --engines playwright pyppeteer selenium
    .venv/bin/python bench/tall_pages.py --pages block-30000 rows-200000 --timeout 60
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import math
import os
import shlex
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from machine import describe, load

from distshot.core.contracts import Engine, EngineConfig
from distshot.core.models import ShotRequest, ShotResult
from distshot.core.options import DEFAULT_MAX_HEIGHT, DEFAULT_OPTIONS, parse_options
from distshot.core.service import capture_request
from distshot.engines.cdp_capture import MAX_IMAGE_PIXELS
from distshot.engines.chromium import kill_process_tree, process_tree
from distshot.plugins.manager import get_registry
from distshot.storage.local import LocalStorage

BROWSER = "/usr/bin/chromium"
MIB = 1024 * 1024
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
ROW_PX = 18
#: The rows page's body margin (8 px top and bottom): its height is N * 18 + 16.
BODY_MARGIN_PX = 16
VIEWPORT = (1280, 800)  # distshot's default width and height

BLOCKS = (30_000, 80_000, 250_000, 1_000_000)
ROWS = (200_000,)
ALL_PAGES = (*(f"block-{h}" for h in BLOCKS), *(f"rows-{n}" for n in ROWS))
PROBE = "small.html"


# -- the pages -----------------------------------------------------------------------------


def page_height(name: str) -> int:
    """The page's content height in CSS px, as generated."""
    kind, number = name.split("-")
    return int(number) if kind == "block" else int(number) * ROW_PX + BODY_MARGIN_PX


def write_page(folder: Path, name: str) -> Path:
    kind, number = name.split("-")
    path = folder / f"{name}.html"
    with open(path, "w") as out:
        out.write("<!doctype html><html><head><meta charset=utf-8>")
        if kind == "block":
            out.write(
                "<title>block</title><style>html,body{margin:0;padding:0}</style></head><body>"
                f'<div style="height:{number}px;'
                'background:linear-gradient(180deg,#c33,#33c 50%,#3c3)"></div>'
            )
        else:
            out.write(
                "<title>rows</title>"
                f"<style>div{{font:14px/{ROW_PX}px sans-serif;height:{ROW_PX}px}}</style>"
                "</head><body>\n"
            )
            for row in range(int(number)):
                out.write(f"<div>row {row} lorem ipsum dolor sit amet</div>\n")
        out.write("</body></html>\n")
    return path


def write_probe(folder: Path) -> None:
    (folder / PROBE).write_text(
        "<!doctype html><html><head><meta charset=utf-8><title>probe</title></head>"
        "<body style='background:#3a6'><h1>still alive</h1></body></html>\n"
    )


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serve(folder: Path) -> Iterator[str]:
    server = ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(folder))
    )
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield f"http://{host!s}:{port}"
    finally:
        server.shutdown()
        server.server_close()


# -- the browser's memory ------------------------------------------------------------------


def _is_chromium(pid: int) -> bool:
    try:
        if Path(f"/proc/{pid}/comm").read_text().strip() == "chromium":
            return True
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0]
    except OSError:
        return False
    return os.path.basename(argv0) == b"chromium"


def chromium_processes() -> list[int]:
    """Chromium processes descended from this one (whatever engine and driver started them)."""
    return [pid for pid in process_tree(os.getpid())[1:] if _is_chromium(pid)]


def _rss(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_SIZE
    except (OSError, IndexError, ValueError):
        return 0


def _mem_available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 1 << 50


class TreeSampler(threading.Thread):
    """Sums the RSS of this process's Chromium processes every ``interval`` seconds and keeps
    the peak since the last ``reset``. Kills them if the machine runs short of memory."""

    def __init__(self, interval: float, guard_bytes: int) -> None:
        super().__init__(daemon=True)
        self.interval, self.guard_bytes = interval, guard_bytes
        self.stopped = threading.Event()
        self.lock = threading.Lock()
        self.current = self.peak = self.peak_procs = 0
        self.guard: str | None = None

    def sample(self) -> None:
        pids = chromium_processes()
        total = sum(_rss(pid) for pid in pids)
        with self.lock:
            self.current = total
            if total > self.peak:
                self.peak, self.peak_procs = total, len(pids)
        if self.guard_bytes and pids:
            available = _mem_available()
            if available < self.guard_bytes:
                self.guard = (
                    f"guard: MemAvailable {available // MIB} MiB, killed {len(pids)} "
                    f"Chromium processes ({total // MIB} MiB)"
                )
                for pid in pids:
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)

    def reset(self) -> int:
        """Start a new peak; returns the tree's RSS now (bytes)."""
        self.sample()
        with self.lock:
            self.peak, self.peak_procs = self.current, 0
            self.guard = None
            return self.current

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            self.sample()


# -- the jobs ------------------------------------------------------------------------------


@dataclass
class Row:
    engine: str
    page: str
    page_px: int
    status: str
    error: str | None
    width: int | None
    height: int | None
    truncated: bool
    bytes: int | None
    job_s: float | None
    navigate_s: float | None
    capture_s: float | None
    rss_before_mib: int
    peak_rss_mib: int
    peak_procs: int
    launches: tuple[int | None, int | None, int | None]  # before, after the job, after next
    memory_recycles: tuple[int | None, int | None]  # before the job, after the next one
    next_status: str
    next_error: str | None
    guard: str | None

    def expected(self) -> tuple[int, bool]:
        """The image height and truncated flag distshot should give (default options)."""
        height = min(max(VIEWPORT[1], self.page_px), DEFAULT_MAX_HEIGHT)
        height = min(height, math.floor(MAX_IMAGE_PIXELS / VIEWPORT[0]))  # pages 1280 wide
        return height, self.page_px > height

    def as_expected(self) -> bool:
        height, truncated = self.expected()
        return (
            self.status == "ok"
            and self.height == height
            and self.truncated == truncated
            and self.next_status == "ok"
        )


def _counters(engine: Engine) -> tuple[int | None, int | None]:
    holder = getattr(engine, "browsers", engine)
    return getattr(engine, "launches", None), getattr(holder, "memory_recycles", None)


def _seconds(result: ShotResult, key: str) -> float | None:
    value = result.timings.get(key)
    return None if value is None else round(value / 1000, 2)


def _error(result: ShotResult) -> str | None:
    if result.error is None:
        return None
    return f"{result.error['type']}: {result.error['message']}"


class Jobs:
    def __init__(self, base: str, storage: LocalStorage, timeout: float) -> None:
        self.base, self.storage, self.timeout = base, storage, timeout
        self.number = 0

    def request(self, path: str, options: dict[str, Any]) -> ShotRequest:
        self.number += 1
        return ShotRequest(
            id=f"tall:{self.number}",
            line=self.number,
            url=f"{self.base}/{path}",
            options=parse_options(options, DEFAULT_OPTIONS),
            allow_private=True,  # the pages are on loopback
        )

    async def tall(self, engine: Engine, page: str) -> ShotResult:
        request = self.request(f"{page}.html", {"full_page": True, "timeout": self.timeout})
        return await capture_request(request, engine, self.storage)

    async def probe(self, engine: Engine) -> ShotResult:
        return await capture_request(self.request(PROBE, {"timeout": 60}), engine, self.storage)


async def run_engine(
    name: str,
    pages: list[str],
    jobs: Jobs,
    sampler: TreeSampler,
    config: EngineConfig,
    progress: Callable[[Row], None],
) -> list[Row]:
    engine = get_registry().create_engine(name, config)
    rows: list[Row] = []
    await engine.open()
    try:
        warm = await jobs.probe(engine)  # the browser launched and a lane open, as in a worker
        if warm.status != "ok":
            print(f"  {name}: warm-up job failed: {_error(warm)}", file=sys.stderr)
        for page in pages:
            launches_before, recycles_before = _counters(engine)
            rss_before = sampler.reset()
            result = await jobs.tall(engine, page)
            sampler.sample()
            peak, procs, guard = sampler.peak, sampler.peak_procs, sampler.guard
            launches_after, _ = _counters(engine)
            nxt = await jobs.probe(engine)
            launches_next, recycles_next = _counters(engine)
            row = Row(
                engine=name,
                page=page,
                page_px=page_height(page),
                status=result.status,
                error=_error(result),
                width=result.width,
                height=result.height,
                truncated=bool(result.truncated),
                bytes=result.bytes,
                job_s=_seconds(result, "total_ms"),
                navigate_s=_seconds(result, "navigate_ms"),
                capture_s=_seconds(result, "capture_ms"),
                rss_before_mib=rss_before // MIB,
                peak_rss_mib=peak // MIB,
                peak_procs=procs,
                launches=(launches_before, launches_after, launches_next),
                memory_recycles=(recycles_before, recycles_next),
                next_status=nxt.status if nxt.attempts == 1 else f"{nxt.status} (retried)",
                next_error=_error(nxt),
                guard=guard,
            )
            rows.append(row)
            progress(row)
            # The images are not needed: free the disk before the next page.
            for path in jobs.storage.root.rglob("*"):
                if path.is_file():
                    path.unlink()
    finally:
        await engine.close()
    return rows


def wait_no_chromium(timeout: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while chromium_processes() and time.monotonic() < deadline:
        time.sleep(0.2)
    return chromium_processes()


# -- the report ----------------------------------------------------------------------------


def _n(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _launches(row: Row) -> str:
    before, after, following = row.launches
    text = f"{_n(before)} → {_n(after)} → {_n(following)}"
    first, last = row.memory_recycles
    if first is not None and last is not None and last > first:
        text += f" ({last - first} memory recycle{'s' if last - first > 1 else ''})"
    elif before is not None and following is not None and following > before:
        text += " (relaunched)"
    return text


def line(row: Row) -> str:
    image = "-"
    if row.width is not None and row.height is not None:
        image = f"{row.width}x{row.height}"
    outcome = row.status if row.error is None else f"{row.status}: {row.error}"
    if row.guard:
        outcome += f" ({row.guard})"
    following = row.next_status if row.next_error is None else f"{row.next_status}: "
    following += row.next_error or ""
    size = "-" if row.bytes is None else f"{row.bytes / 1e6:.1f} MB"
    expected_height, expected_truncated = row.expected()
    verdict = "yes" if row.as_expected() else f"no (want {expected_height:,}"
    if not row.as_expected():
        verdict += f", truncated {str(expected_truncated).lower()})"
    return (
        f"| {row.engine} | {row.page} | {row.page_px:,} | {outcome} | {image} | "
        f"{str(row.truncated).lower()} | {size} | {_s(row.job_s)} | {_s(row.navigate_s)} | "
        f"{_s(row.capture_s)} | {row.rss_before_mib:,} | {row.peak_rss_mib:,} | "
        f"{_launches(row)} | {following} | {verdict} |"
    )


HEADER = (
    "| engine | page | page height (CSS px) | status | image | truncated | size | job s | "
    "load+scroll s | capture s | tree RSS before (MiB) | peak tree RSS (MiB) | "
    "launches (before → after job → after next job) | next job (small page) | as expected |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--engines", nargs="+", default=["playwright"])
    parser.add_argument("--pages", nargs="+", choices=ALL_PAGES, default=list(ALL_PAGES))
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per job [120]")
    parser.add_argument(
        "--recycle-memory-mb",
        type=int,
        default=EngineConfig.recycle_memory_mb,
        help=f"the engine's memory recycle limit, 0: never [{EngineConfig.recycle_memory_mb}]",
    )
    parser.add_argument(
        "--guard-mb",
        type=int,
        default=2048,
        help="kill this run's Chromium when MemAvailable drops below this, 0: never [2048]",
    )
    parser.add_argument("--json", type=Path, help="also write each row as a JSON line here")
    parser.add_argument("--keep", type=Path, help="generate the pages in this folder, keep them")
    args = parser.parse_args()
    # SIGTERM as Ctrl-C: the engines close and no Chromium outlives the run.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    registry = get_registry()
    unknown = [name for name in args.engines if name not in registry.engines]
    if unknown:
        parser.error(
            f"unknown engine(s) {unknown}; installed: {', '.join(sorted(registry.engines))}"
        )

    print("\n".join(describe(BROWSER)))
    command = shlex.join([os.path.relpath(sys.executable), *sys.argv])
    print(f"- command: `{command}`")
    config = EngineConfig(concurrency=1, recycle_memory_mb=args.recycle_memory_mb)
    print(
        f"\nfull_page with default options (viewport {VIEWPORT[0]}x{VIEWPORT[1]}, max_height "
        f"{DEFAULT_MAX_HEIGHT:,}, image cap {MAX_IMAGE_PIXELS:,} px), timeout {args.timeout:g}s"
        f"; EngineConfig(concurrency=1, recycle_memory_mb={config.recycle_memory_mb}); one "
        f"engine per name for all pages in order, a small page after each\n",
        flush=True,
    )
    sampler = TreeSampler(0.2, args.guard_mb * MIB)
    sampler.start()
    rows: list[Row] = []
    json_out = open(args.json, "w") if args.json else None  # noqa: SIM115 - closed below
    with tempfile.TemporaryDirectory(prefix="distshot-tall-") as tmp:
        folder = args.keep or Path(tmp) / "pages"
        folder.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        for page in args.pages:
            if not (folder / f"{page}.html").exists():
                write_page(folder, page)
        write_probe(folder)
        print(f"pages written in {time.monotonic() - started:.1f}s to {folder}", flush=True)
        storage = LocalStorage(str(Path(tmp) / "images"))
        storage.check()

        def progress(row: Row) -> None:
            print(f"  [load {load()}] {line(row)}", flush=True)
            if json_out is not None:
                json_out.write(json.dumps(asdict(row)) + "\n")
                json_out.flush()

        try:
            with serve(folder) as base:
                jobs = Jobs(base, storage, args.timeout)
                for name in args.engines:
                    try:
                        rows += asyncio.run(
                            run_engine(name, args.pages, jobs, sampler, config, progress)
                        )
                    except Exception as exc:
                        print(f"  {name}: {type(exc).__name__}: {exc}", file=sys.stderr)
                    left = wait_no_chromium()
                    if left:
                        print(f"warning: {name} left Chromium behind: {left}", file=sys.stderr)
        finally:
            sampler.stopped.set()
            for pid in chromium_processes():  # last resort: nothing of ours outlives the run
                kill_process_tree(pid)
            if json_out is not None:
                json_out.close()
    print(f"\n{HEADER}")
    for row in rows:
        print(line(row))


if __name__ == "__main__":
    main()
