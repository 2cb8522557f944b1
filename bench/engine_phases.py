"""Where a Playwright-engine job's time goes, phase by phase (issue 6).

Drives ``PlaywrightEngine.capture`` directly (no broker, no storage) over the corpus pages with
2 jobs in flight, as ``distshot shoot --concurrency 2`` does, and wraps the engine's and
Playwright's methods with timers. Prints, per phase, how often it ran and its median, mean
and 90th percentile, and the job's own time (``capture`` call to return: what the job waits
for) next to the engine's throughput. A phase the engine does not have (the code changed)
is left out. Phases overlap in time (2 jobs in flight), so they are per-call figures, not
shares of the run.

    .venv/bin/python bench/engine_phases.py                   # 60 pages, egress guard on
    .venv/bin/python bench/engine_phases.py --allow-private   # without the egress guard
    .venv/bin/python bench/engine_phases.py --pages 20 --rounds 2
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from corpus import DEFAULT_PAGES, Corpus
from machine import load

from distshot.core.contracts import EngineConfig
from distshot.core.models import ShotRequest
from distshot.core.options import CaptureOptions
from distshot.engines import playwright as engine_module

TIMES: dict[str, list[float]] = defaultdict(list)


def _label_for(label: str | Callable[..., str]) -> Callable[..., str]:
    return label if callable(label) else (lambda *args, **kwargs: label)


def wrap(owner: Any, name: str, label: str | Callable[..., str]) -> None:
    """Time every call of ``owner.name`` (a coroutine function) under ``label``."""
    original = getattr(owner, name, None)
    if original is None:
        return
    name_of = _label_for(label)

    @functools.wraps(original)
    async def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return await original(*args, **kwargs)
        finally:
            TIMES[name_of(*args, **kwargs)].append(time.perf_counter() - started)

    setattr(owner, name, timed)


def instrument() -> None:
    from playwright.async_api import BrowserContext, CDPSession, Page

    engine_cls, lane_cls = engine_module.PlaywrightEngine, engine_module._Lane
    wrap(engine_cls, "capture", "job (capture call to return)")
    wrap(engine_module.RecyclingBrowser, "acquire", "browser acquire")
    wrap(engine_cls, "_acquire_lane", "lane acquire")
    wrap(engine_cls, "_open_lane", "  open a new lane (context+page+CDP+guard)")
    wrap(engine_cls, "_capture_in", "capture in lane (fit..title)")
    wrap(engine_cls, "_finish_lane", "lane clean-up (finish_lane)")
    wrap(lane_cls, "fit", "  fit (viewport, headers)")
    wrap(lane_cls, "permissions_untouched", "  permission check")
    wrap(lane_cls, "reset", "  reset")
    wrap(lane_cls, "screenshot", "  screenshot (CDP)")
    wrap(engine_module.EgressGuard, "start", "  egress guard start")
    wrap(engine_module.EgressGuard, "close", "egress guard close")

    def goto_label(page: Any, url: str, *args: Any, **kwargs: Any) -> str:
        return "    goto about:blank" if url == "about:blank" else "  goto (navigate + load)"

    def send_label(session: Any, method: str, *args: Any, **kwargs: Any) -> str:
        return f"    cdp {method}"

    def evaluate_label(page: Any, expression: str, *args: Any, **kwargs: Any) -> str:
        return "    evaluate window.name" if "window.name" in expression else "    evaluate"

    wrap(Page, "goto", goto_label)
    wrap(Page, "screenshot", "  page.screenshot (Playwright)")
    wrap(Page, "title", "  title")
    wrap(Page, "evaluate", evaluate_label)
    wrap(CDPSession, "send", send_label)
    wrap(BrowserContext, "clear_cookies", "    clear_cookies")
    wrap(BrowserContext, "clear_permissions", "    clear_permissions")
    wrap(BrowserContext, "close", "  context close")


async def shoot(urls: list[str], allow_private: bool, in_flight: int) -> tuple[float, int]:
    engine = engine_module.PlaywrightEngine(EngineConfig(concurrency=in_flight))
    await engine.open()
    queue: asyncio.Queue[str] = asyncio.Queue()
    for url in urls[1:]:
        queue.put_nowait(url)
    options = CaptureOptions(width=1280, height=800, format="png")
    failures = 0

    async def one(url: str) -> None:
        nonlocal failures
        request = ShotRequest(
            id=url,
            line=0,
            url=url,
            options=options,
            allow_private=allow_private,
            allow_networks=() if allow_private else ("127.0.0.0/8",),
        )
        try:
            await engine.capture(request)
        except Exception as exc:
            failures += 1
            print(f"  failed: {url}: {exc}")

    async def worker() -> None:
        while not queue.empty():
            await one(queue.get_nowait())

    try:
        await one(urls[0])  # one warm-up job: browser launch, first lane, cold caches
        TIMES.clear()
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(in_flight)))
        elapsed = time.perf_counter() - started
    finally:
        await engine.close()
    return elapsed, failures


def report(elapsed: float, jobs: int, failures: int) -> None:
    print(f"\n{jobs} jobs in {elapsed:.1f}s: {jobs / elapsed:.2f} jobs/s ({failures} failed)\n")
    print("| phase | calls | median ms | mean ms | p90 ms |\n|---|---|---|---|---|")
    for label, values in TIMES.items():
        ms = sorted(value * 1000 for value in values)
        p90 = ms[min(len(ms) - 1, int(len(ms) * 0.9))]
        print(
            f"| {label} | {len(ms)} | {statistics.median(ms):.0f} | "
            f"{statistics.fmean(ms):.0f} | {p90:.0f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=DEFAULT_PAGES)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--in-flight", type=int, default=2)
    parser.add_argument("--allow-private", action="store_true", help="no egress guard")
    args = parser.parse_args()
    instrument()
    with Corpus() as corpus:
        urls = corpus.urls(args.pages)
        for number in range(1, args.rounds + 1):
            print(f"round {number}, load {load()}, guard {'off' if args.allow_private else 'on'}")
            elapsed, failures = asyncio.run(shoot(urls, args.allow_private, args.in_flight))
            report(elapsed, len(urls) - 1, failures)
            TIMES.clear()


if __name__ == "__main__":
    main()
