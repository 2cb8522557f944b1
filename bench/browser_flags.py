"""Benchmark: two Chromium set-ups side by side, CPU per shot of each browser's process tree.

Comparing two throughput runs on this machine is at the mercy of its drift (±20% within a
few minutes). Here both browsers run at the same time and the shots alternate between
them, URL by URL, one at a time, so a slow minute slows both alike; what each browser's
process tree (browser, renderers, GPU and utility processes) spent is read from /proc.
Each side is distshot's own launch flags plus that side's extra flags, and may go to
about:blank after every shot, as a reused lane does between jobs.

    .venv/bin/python bench/browser_flags.py                     # RenderDocument on vs off
    .venv/bin/python bench/browser_flags.py --shots 150 \\
        --a "" --b "--disable-features=Translate" --blank     # any two sets of flags
    .venv/bin/python bench/browser_flags.py --a "" --b "" --blank-b   # what about:blank costs

The default compares the flags as shipped (RenderDocument off) against the same with
RenderDocument back on, with and without about:blank between shots.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from corpus import Corpus
from machine import describe

from distshot.engines.chromium import chromium_flags, process_tree
from distshot.engines.playwright import _browser_pid

BROWSER = "/usr/bin/chromium"
_HZ = os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(root: int) -> float:
    """CPU (user + system) of ``root`` and all its live descendants."""
    total = 0.0
    for pid in process_tree(root):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended since the walk
        total += (int(fields[11]) + int(fields[12])) / _HZ
    return total


@dataclass
class Side:
    name: str
    label: str
    args: list[str]
    blank: bool
    browser: object = None
    page: object = None
    cdp: object = None
    pid: int = 0
    cpu: float = 0.0
    errors: int = 0


async def run(sides: list[Side], urls: list[str], shots: int) -> None:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        for side in sides:
            browser = await playwright.chromium.launch(
                executable_path=BROWSER, headless=True, args=side.args
            )
            pid = await _browser_pid(browser)
            if pid is None:
                raise SystemExit("Chromium did not tell its process id")
            side.pid = pid
            context = await browser.new_context(viewport={"width": 1280, "height": 800})
            side.browser, side.page = browser, await context.new_page()
            side.cdp = await context.new_cdp_session(side.page)

        async def shot(side: Side, url: str) -> None:
            page, cdp = side.page, side.cdp
            try:
                await page.goto(url)  # type: ignore[attr-defined]
                await cdp.send(  # type: ignore[attr-defined]
                    "Page.captureScreenshot", {"format": "png", "optimizeForSpeed": True}
                )
                if side.blank:
                    await page.goto("about:blank")  # type: ignore[attr-defined]
            except Exception as exc:  # counted and shown: a flag that breaks pages must show
                side.errors += 1
                print(f"  {side.name}: {url}: {str(exc).splitlines()[0]}", file=sys.stderr)

        for url in urls[:6]:  # warm-up, not counted: caches, renderers, compiled scripts
            for side in sides:
                await shot(side, url)
        start = {side.name: tree_cpu_seconds(side.pid) for side in sides}
        for number in range(shots):
            url = urls[number % len(urls)]
            # Alternate who goes first, so neither always follows the other's busy moment.
            for side in sides if number % 2 == 0 else sides[::-1]:
                await shot(side, url)
        for side in sides:
            side.cpu = tree_cpu_seconds(side.pid) - start[side.name]
            await side.browser.close()  # type: ignore[attr-defined]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shots", type=int, default=120, help="shots per side [120]")
    parser.add_argument("--pages", type=int, default=60, help="corpus pages [60]")
    parser.add_argument("--a", help="side A's extra flags (space-separated)")
    parser.add_argument("--b", help="side B's extra flags")
    parser.add_argument("--blank", action="store_true", help="about:blank after each shot")
    parser.add_argument("--blank-b", action="store_true", help="about:blank on side B only")
    args = parser.parse_args()

    if args.a is None and args.b is None:
        # The default question: what does RenderDocument (which distshot switches off) cost?
        on = _enable_again("RenderDocument")
        sides = [
            Side("A", "RenderDocument on", on, blank=False),
            Side("B", "as shipped (RenderDocument off)", chromium_flags(), blank=False),
            Side("C", "RenderDocument on, about:blank after each shot", on, blank=True),
            Side("D", "as shipped, about:blank after each shot", chromium_flags(), blank=True),
        ]
    else:
        blank_b = args.blank or args.blank_b
        sides = [
            Side(
                "A",
                f"{args.a or '-'}{_BLANK if args.blank else ''}",
                chromium_flags(tuple((args.a or "").split())),
                blank=args.blank,
            ),
            Side(
                "B",
                f"{args.b or '-'}{_BLANK if blank_b else ''}",
                chromium_flags(tuple((args.b or "").split())),
                blank=blank_b,
            ),
        ]
    print("\n".join(describe(BROWSER)))
    with Corpus() as corpus:
        urls = corpus.urls(args.pages)
        print(f"\n{args.shots} shots per side, alternating, 1 at a time; corpus {corpus.base}\n")
        asyncio.run(run(sides, urls, args.shots))
    print("| side | set-up | CPU ms per shot | errors |\n|---|---|---|---|")
    for side in sides:
        cpu_ms = 1000 * side.cpu / args.shots
        print(f"| {side.name} | {side.label} | {cpu_ms:.0f} | {side.errors} |")


_BLANK = ", about:blank after each shot"


def _enable_again(feature: str) -> list[str]:
    """distshot's flags with ``feature`` taken out of its --disable-features list."""
    args = chromium_flags()
    for index, arg in enumerate(args):
        if arg.startswith("--disable-features="):
            kept = [f for f in arg.split("=", 1)[1].split(",") if f != feature]
            args[index] = "--disable-features=" + ",".join(kept)
            return args
    raise SystemExit("distshot's launch flags have no --disable-features")


if __name__ == "__main__":
    main()
