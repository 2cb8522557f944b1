"""Benchmark: the browser engines side by side on the same pages at the same concurrency.

Each engine is created through the plug-in registry and driven through the capture service
with local storage, exactly as a worker drives it. Rounds alternate between the engines so
that a busy moment of the machine does not favour one of them; the browser launch and one
warm-up pass are not timed. Not a test: it prints shots/s per engine (median of the rounds).

    .venv/bin/python bench/engines.py                         # all installed browser engines
    .venv/bin/python bench/engines.py --engines playwright selenium --concurrency 2 --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import statistics
import sys
import tempfile
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from distshot.core.contracts import EngineConfig
from distshot.core.models import ShotRequest
from distshot.core.service import capture_request
from distshot.plugins.manager import get_registry
from distshot.storage.local import LocalStorage

ROOT = Path(__file__).resolve().parent.parent
SITE = ROOT / "examples" / "site"
SYNTHETIC = ROOT / "distshot" / "testing" / "pages"
CANDIDATES = ("playwright", "pyppeteer", "selenium", "cdp")


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def serve(folder: Path) -> tuple[ThreadingHTTPServer, str]:
    handler = functools.partial(QuietHandler, directory=str(folder))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def page_set(site_base: str, synthetic_base: str) -> list[str]:
    """The example site's pages (fonts, images, a long page, nine scripts) and two synthetic
    pages: a plain layout and a solid colour."""
    pages = sorted(p.name for p in SITE.glob("*.html"))
    return [f"{site_base}/{name}" for name in pages] + [
        f"{synthetic_base}/simple.html",
        f"{synthetic_base}/solid.html",
    ]


async def run_round(engine_name: str, urls: list[str], concurrency: int, folder: Path) -> float:
    engine = get_registry().create_engine(engine_name, EngineConfig(concurrency=concurrency))
    storage = LocalStorage(str(folder))
    gate = asyncio.Semaphore(concurrency)

    async def one(number: int, url: str) -> str:
        async with gate:
            request = ShotRequest(f"bench:{number}", number, url, allow_private=True)
            result = await capture_request(request, engine, storage)
            if result.status != "ok":
                print(f"  {engine_name}: {url} {result.error}", file=sys.stderr)
            return result.status

    await engine.open()
    try:
        await asyncio.gather(*(one(n, u) for n, u in enumerate(urls[:concurrency])))  # warm-up
        started = time.perf_counter()
        statuses = await asyncio.gather(*(one(n, u) for n, u in enumerate(urls)))
        elapsed = time.perf_counter() - started
    finally:
        await engine.close()
    return statuses.count("ok") / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    installed = [name for name in CANDIDATES if name in get_registry().engines]
    parser.add_argument("--engines", nargs="+", default=installed)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=4, help="passes over the page set per round")
    args = parser.parse_args()

    site, site_base = serve(SITE)
    synthetic, synthetic_base = serve(SYNTHETIC)
    urls = page_set(site_base, synthetic_base) * args.repeat
    print(
        f"{len(urls)} shots per round ({len(urls) // args.repeat} pages x {args.repeat}), "
        f"1280x800 PNG, concurrency {args.concurrency}, {args.rounds} rounds alternating"
    )
    rates: dict[str, list[float]] = {name: [] for name in args.engines}
    with tempfile.TemporaryDirectory(prefix="distshot-bench-") as folder:
        for round_number in range(args.rounds):
            order = args.engines if round_number % 2 == 0 else args.engines[::-1]
            for name in order:
                rate = asyncio.run(run_round(name, urls, args.concurrency, Path(folder) / name))
                rates[name].append(rate)
                print(f"  round {round_number + 1}: {name:<11} {rate:5.2f} shots/s", flush=True)
    site.shutdown()
    synthetic.shutdown()
    print(f"\n| engine | shots/s (median of {args.rounds}) | rounds |")
    print("|---|---|---|")
    for name, values in rates.items():
        rounds = ", ".join(f"{v:.2f}" for v in values)
        print(f"| {name} | {statistics.median(values):.2f} | {rounds} |")


if __name__ == "__main__":
    main()
