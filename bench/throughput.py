"""Benchmark: distshot against raw Playwright and shot-scraper, side by side (issue 6).

Every contender shoots the same corpus pages (bench/corpus.py: 60 pages of Debian's
python3.11-doc served on 127.0.0.1) at 1280x800 PNG with 2 jobs in flight, from the same
Chromium (/usr/bin/chromium) with the same flags (distshot.engines.chromium.chromium_flags).
Rounds alternate the contenders' order so that a busy moment of the machine does not favour
one of them. Each run is checked before it counts: as many 1280x800 PNG files as URLs (and for
distshot a manifest whose every line is ok), else the round is marked failed.

Contenders (``--contenders``; raw-launch is off by default):
  raw-reuse        Playwright loop: one context, 2 pages reused, goto + screenshot
  raw-fresh        the same loop with a new browser context per URL
  raw-launch       the same loop with a new browser per URL
  shot-scraper     `shot-scraper multi` on a YAML of the shots (one job at a time: it has
                   no concurrency option)
  shot-scraper-x2  two `shot-scraper multi` processes, half the shots each (2 in flight)
  shoot            `distshot shoot --concurrency 2` (lanes: cleaned contexts reused)
  shoot-fresh      the same with DISTSHOT_REUSE_CONTEXTS=0 (a new context per job)
  rabbitmq-1p      `distshot worker --processes 1 --threads 2` + `distshot dispatch`
  rabbitmq-2p      the same with --processes 2 (2 browsers, 4 jobs in flight)

Two rates per run. **shots/s** (the headline) = (images - 1) / (last image written - first
image written), from the files' modification times, the same measure for every contender:
it leaves out start-up and shutdown. **wall** = images / the time the contender took, start
to end: the process's whole life for shoot and shot-scraper (Python start, browser launch,
shutdown); launch + loop + close for the raw loops; `distshot dispatch`'s life for RabbitMQ,
whose workers are started fresh each round and warmed up (browser launched) before timing.

distshot runs with its egress guard on, as for public sites: the corpus is admitted with
DISTSHOT_ALLOW_NETWORKS=127.0.0.0/8 (``--allow-private`` turns the guard off instead).

    .venv/bin/python bench/shot_scraper_env.py               # once: shot-scraper's venv
    .venv/bin/python bench/throughput.py                     # 60 pages, 3 rounds, all contenders
    .venv/bin/python bench/throughput.py --pages 6 --rounds 1    # a quick check
    .venv/bin/python bench/throughput.py --contenders raw-reuse shoot rabbitmq-1p
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pika
import shot_scraper_env
from corpus import DEFAULT_PAGES, Corpus, write_urls
from machine import BROKER, describe, load
from pipeline import wait_consumers

from distshot.engines.chromium import chromium_flags, process_tree

BROWSER = "/usr/bin/chromium"
DISTSHOT = [sys.executable, "-m", "distshot.cli"]
ENGINE_QUEUE = "playwright"
ALL = (
    "raw-reuse",
    "raw-fresh",
    "raw-launch",
    "shot-scraper",
    "shot-scraper-x2",
    "shoot",
    "shoot-fresh",
    "rabbitmq-1p",
    "rabbitmq-2p",
)
DEFAULT = tuple(name for name in ALL if name != "raw-launch")


@dataclass
class Setup:
    """What every contender shares for one benchmark run."""

    urls: list[str]
    urls_file: Path
    warmup_file: Path
    work: Path
    concurrency: int
    width: int
    height: int
    threads: int
    env: dict[str, str]  # for distshot processes: guard policy, broker


@dataclass
class Run:
    """One contender's run: ``wall`` seconds start to end, what distshot said about itself."""

    wall: float
    reported: float | None = None
    in_flight: int = 2
    errors: list[str] = field(default_factory=list)


# -- raw Playwright references -------------------------------------------------------------


async def _raw_loop(setup: Setup, out: Path, mode: str) -> Run:
    from playwright.async_api import async_playwright

    viewport = {"width": setup.width, "height": setup.height}
    queue: asyncio.Queue[tuple[int, str]] = asyncio.Queue()
    for item in enumerate(setup.urls):
        queue.put_nowait(item)
    errors: list[str] = []
    started = time.perf_counter()
    async with async_playwright() as playwright:

        async def launch():  # type: ignore[no-untyped-def]
            return await playwright.chromium.launch(
                executable_path=BROWSER, headless=True, args=chromium_flags()
            )

        browser = await launch()
        shared = await browser.new_context(viewport=viewport) if mode == "reuse" else None

        async def worker() -> None:
            page = await shared.new_page() if shared is not None else None
            while not queue.empty():
                number, url = queue.get_nowait()
                own_browser = await launch() if mode == "launch" else None
                context = None
                try:
                    if page is None or mode != "reuse":
                        context = await (own_browser or browser).new_context(viewport=viewport)
                        target = await context.new_page()
                    else:
                        target = page
                    await target.goto(url, timeout=60_000)
                    image = await target.screenshot(type="png")
                    (out / f"{number:04d}.png").write_bytes(image)
                except Exception as exc:
                    errors.append(f"{url}: {str(exc).splitlines()[0]}")
                finally:
                    if context is not None:
                        await context.close()
                    if own_browser is not None:
                        await own_browser.close()

        await asyncio.gather(*(worker() for _ in range(setup.concurrency)))
        await browser.close()
    return Run(time.perf_counter() - started, in_flight=setup.concurrency, errors=errors)


def raw(mode: str) -> Callable[[Setup, Path, int], Run]:
    def run(setup: Setup, out: Path, round_number: int) -> Run:
        return asyncio.run(_raw_loop(setup, out, mode))

    return run


# -- shot-scraper --------------------------------------------------------------------------


def shot_scraper(processes: int) -> Callable[[Setup, Path, int], Run]:
    def run(setup: Setup, out: Path, round_number: int) -> Run:
        commands = []
        for part in range(processes):
            shots = [
                {
                    "url": url,
                    "output": str(out / f"{n:04d}.png"),
                    "width": setup.width,
                    "height": setup.height,
                }
                for n, url in enumerate(setup.urls)
                if n % processes == part
            ]
            config = setup.work / f"shots-{round_number}-{part}.yml"
            # JSON is YAML: no YAML library needed here.
            config.write_text(json.dumps(shots, indent=1))
            commands.append(shot_scraper_env.command(config, chromium_flags()))
        started = time.perf_counter()
        children = [
            subprocess.Popen(
                command,
                env=shot_scraper_env.environment(),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,
            )
            for command in commands
        ]
        errors = []
        for child in children:
            _, stderr = child.communicate()
            if child.returncode != 0:
                errors.append(f"shot-scraper exit {child.returncode}: {_last_line(stderr)}")
        return Run(time.perf_counter() - started, in_flight=processes, errors=errors)

    return run


# -- distshot ------------------------------------------------------------------------------


#: distshot's summary line: "60 done: 60 ok, 0 failed, 0 rejected; in 17.2s (3.5/s); ..."
_SUMMARY = re.compile(r"(\d+) done: .*?in ([\d.]+)s")


def reported_rate(stderr: str) -> float | None:
    """The rate distshot itself reports (counted from its own start), more digits."""
    found = _SUMMARY.findall(stderr)
    if not found:
        return None
    done, seconds = found[-1]
    return int(done) / float(seconds) if float(seconds) else None


def shoot(reuse: bool) -> Callable[[Setup, Path, int], Run]:
    def run(setup: Setup, out: Path, round_number: int) -> Run:
        env = {**setup.env, "DISTSHOT_REUSE_CONTEXTS": "1" if reuse else "0"}
        command = [
            *DISTSHOT,
            "shoot",
            str(setup.urls_file),
            "-o",
            str(out),
            *_capture_flags(setup),
            "--concurrency",
            str(setup.concurrency),
        ]
        started = time.perf_counter()
        done = subprocess.run(
            command, env=env, cwd=setup.work, capture_output=True, text=True, timeout=1800
        )
        wall = time.perf_counter() - started
        errors = [] if done.returncode == 0 else [f"exit {done.returncode}: {_last_line(done)}"]
        return Run(wall, reported_rate(done.stderr), setup.concurrency, errors)

    return run


def rabbitmq(processes: int) -> Callable[[Setup, Path, int], Run]:
    def run(setup: Setup, out: Path, round_number: int) -> Run:
        prefix = f"bench{uuid.uuid4().hex[:8]}"
        env = {**setup.env, "DISTSHOT_QUEUE_PREFIX": prefix}
        log = open(setup.work / f"worker-{prefix}.log", "w")  # noqa: SIM115 - closed below
        worker = subprocess.Popen(
            [*DISTSHOT, "worker", "--processes", str(processes), "--threads", str(setup.threads)],
            env=env,
            cwd=setup.work,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        batches: list[str] = []
        try:
            wait_consumers(f"{prefix}.{ENGINE_QUEUE}", processes, timeout=120)
            # Warm up every process (browser launched) with the synthetic pages: not timed.
            warm = setup.work / f"warm-{prefix}"
            warmup = _dispatch(setup, env, setup.warmup_file, warm, batches)
            if warmup.returncode != 0:
                return Run(0.0, errors=[f"warm-up failed: {_last_line(warmup)}"])
            shutil.rmtree(warm, ignore_errors=True)
            started = time.perf_counter()
            done = _dispatch(setup, env, setup.urls_file, out, batches)
            wall = time.perf_counter() - started
            errors = [] if done.returncode == 0 else [f"exit {done.returncode}: {_last_line(done)}"]
            in_flight = processes * setup.threads
            return Run(wall, reported_rate(done.stderr), in_flight, errors)
        finally:
            stop_process_group(worker)
            log.close()
            delete_queues(prefix, batches)

    return run


def _dispatch(
    setup: Setup, env: dict[str, str], urls: Path, out: Path, batches: list[str]
) -> subprocess.CompletedProcess[str]:
    batch = f"b{uuid.uuid4().hex[:10]}"
    batches.append(batch)
    out.mkdir(parents=True, exist_ok=True)
    command = [
        *DISTSHOT,
        "dispatch",
        str(urls),
        "--storage",
        out.as_uri(),
        "--batch",
        batch,
        "--manifest",
        str(out / "manifest.jsonl"),
        "--wait-timeout",
        "300",
        *_capture_flags(setup),
    ]
    return subprocess.run(
        command, env=env, cwd=setup.work, capture_output=True, text=True, timeout=1800
    )


def _capture_flags(setup: Setup) -> list[str]:
    return ["--width", str(setup.width), "--height", str(setup.height), "--format", "png"]


def delete_queues(prefix: str, batches: list[str]) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(BROKER))
    channel = connection.channel()
    names = [f"{prefix}.{ENGINE_QUEUE}", *(f"{prefix}.reply.{batch}" for batch in batches)]
    for name in names:
        for suffix in ("", ".DQ", ".XQ"):
            channel.queue_delete(name + suffix)
    connection.close()


def stop_process_group(process: subprocess.Popen[bytes], grace: float = 60) -> None:
    """SIGTERM the worker's process group (Dramatiq, its workers, drivers, Chromium), then
    SIGKILL whatever is left of it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


# -- verification and rates ----------------------------------------------------------------


def png_size(path: Path) -> tuple[int, int] | None:
    with open(path, "rb") as stream:
        head = stream.read(24)
    if head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def verify(out: Path, setup: Setup, run: Run) -> tuple[list[Path], list[str]]:
    """The images of a run, and what is wrong with it (nothing: it counts)."""
    problems = list(run.errors)
    images = [p for p in out.rglob("*.png") if not p.name.startswith(".")]
    if len(images) != len(setup.urls):
        problems.append(f"{len(images)} images for {len(setup.urls)} URLs")
    wrong = [p.name for p in images if png_size(p) != (setup.width, setup.height)]
    if wrong:
        problems.append(f"{len(wrong)} images are not {setup.width}x{setup.height} PNG")
    manifest = out / "manifest.jsonl"
    if manifest.exists():
        records = [json.loads(line) for line in manifest.read_text().splitlines()]
        bad = [r for r in records if r["status"] != "ok"]
        if len(records) != len(setup.urls) or bad:
            sample = f": {bad[0]['url']} {bad[0]['error']}" if bad else ""
            problems.append(f"manifest: {len(records) - len(bad)} ok of {len(records)}{sample}")
    return images, problems[:3]


def steady_rate(images: list[Path]) -> float:
    """(n - 1) images over the time from the first to the last one written."""
    times = sorted(p.stat().st_mtime_ns for p in images)
    if len(times) < 2 or times[-1] == times[0]:
        return 0.0
    return (len(times) - 1) / ((times[-1] - times[0]) / 1e9)


# -- the run -------------------------------------------------------------------------------


CONTENDERS: dict[str, Callable[[Setup, Path, int], Run]] = {
    "raw-reuse": raw("reuse"),
    "raw-fresh": raw("fresh"),
    "raw-launch": raw("launch"),
    "shot-scraper": shot_scraper(1),
    "shot-scraper-x2": shot_scraper(2),
    "shoot": shoot(reuse=True),
    "shoot-fresh": shoot(reuse=False),
    "rabbitmq-1p": rabbitmq(1),
    "rabbitmq-2p": rabbitmq(2),
}


@dataclass
class Results:
    steady: list[float] = field(default_factory=list)
    wall: list[float] = field(default_factory=list)
    reported: list[float] = field(default_factory=list)
    in_flight: int = 0
    failures: list[str] = field(default_factory=list)


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def fmt(value: float | None, suffix: str = "") -> str:
    return "-" if value is None else f"{value:.2f}{suffix}"


def report(results: dict[str, Results], rounds: int) -> None:
    base = median(results["raw-reuse"].steady) if "raw-reuse" in results else None
    print(
        "\n| contender | in flight | shots/s (median) | wall shots/s | distshot says | "
        "ratio to raw-reuse | rounds (shots/s) |\n|---|---|---|---|---|---|---|"
    )
    for name, result in results.items():
        rate = median(result.steady)
        ratio = rate / base if rate and base else None
        rounds_text = ", ".join(f"{v:.2f}" for v in result.steady) or "-"
        if result.failures:
            rounds_text += f"; FAILED {len(result.failures)}/{rounds}: {result.failures[0]}"
        print(
            f"| {name} | {result.in_flight or '-'} | {fmt(rate)} | {fmt(median(result.wall))} | "
            f"{fmt(median(result.reported))} | {fmt(ratio, 'x')} | {rounds_text} |"
        )

    def ratio(name: str, reference: str) -> tuple[float | None, float | None]:
        if name not in results or reference not in results:
            return None, None
        a, b = results[name], results[reference]
        steady = _div(median(a.steady), median(b.steady))
        return steady, _div(median(a.wall), median(b.wall))

    print("\n| target | shots/s ratio | wall ratio | met |\n|---|---|---|---|")
    for label, name, reference, goal in (
        ("distshot shoot ≥ 0.9x raw reused-page loop", "shoot", "raw-reuse", 0.9),
        (
            "RabbitMQ, 1 worker process ≥ 0.85x raw reused-page loop",
            "rabbitmq-1p",
            "raw-reuse",
            0.85,
        ),
        ("distshot shoot ≥ 2x shot-scraper multi", "shoot", "shot-scraper", 2.0),
        ("distshot shoot ≥ 2x shot-scraper multi (2 processes)", "shoot", "shot-scraper-x2", 2.0),
    ):
        steady, wall = ratio(name, reference)
        met = "-" if steady is None else ("yes" if steady >= goal else "no")
        print(f"| {label} | {fmt(steady, 'x')} | {fmt(wall, 'x')} | {met} |")


def _div(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def _last_line(done: subprocess.CompletedProcess[str] | str | None) -> str:
    text = done if isinstance(done, str) else (done.stderr if done is not None else "")
    lines = [line for line in (text or "").splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def leftovers(ignore: set[int]) -> list[str]:
    """Processes this benchmark started that are still alive (there should be none)."""
    found = []
    for pid in process_tree(os.getpid())[1:]:
        if pid in ignore:
            continue
        with contextlib.suppress(OSError):
            found.append(f"{pid} {Path(f'/proc/{pid}/cmdline').read_text()[:80]}")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--contenders", nargs="+", choices=[*ALL, "all"], default=list(DEFAULT))
    parser.add_argument("--pages", type=int, default=DEFAULT_PAGES, help="corpus pages [60]")
    parser.add_argument("--synthetic", action="store_true", help="shoot the synthetic pages too")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=2, help="jobs in flight [2]")
    parser.add_argument("--threads", type=int, default=2, help="per RabbitMQ worker process [2]")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=800)
    parser.add_argument(
        "--allow-private", action="store_true", help="distshot without its egress guard"
    )
    parser.add_argument("--keep", type=Path, help="keep the images under this folder")
    args = parser.parse_args()
    names = list(ALL) if "all" in args.contenders else args.contenders

    if any(name.startswith("shot-scraper") for name in names):
        problem = shot_scraper_env.available(chromium_flags())
        if problem:
            print(f"skipping shot-scraper: {problem}", file=sys.stderr)
            names = [name for name in names if not name.startswith("shot-scraper")]

    print("\n".join(describe(BROWSER)))
    if "shot-scraper" in " ".join(names):
        print(
            f"- shot-scraper {shot_scraper_env.version()} (its own venv: {shot_scraper_env.VENV})"
        )
    with Corpus() as corpus, tempfile.TemporaryDirectory(prefix="distshot-throughput-") as tmp:
        work = Path(tmp)
        urls = corpus.urls(args.pages) + (corpus.synthetic_urls() if args.synthetic else [])
        warmup = corpus.synthetic_urls() * 4
        policy = {"DISTSHOT_ALLOW_PRIVATE": "1"} if args.allow_private else {}
        policy = policy or {"DISTSHOT_ALLOW_NETWORKS": "127.0.0.0/8"}
        setup = Setup(
            urls=urls,
            urls_file=write_urls(work / "urls.txt", urls),
            warmup_file=write_urls(work / "warmup.txt", warmup),
            work=work,
            concurrency=args.concurrency,
            width=args.width,
            height=args.height,
            threads=args.threads,
            env={**os.environ, "DISTSHOT_BROKER_URL": BROKER, **policy},
        )
        print(
            f"\n{len(urls)} shots per contender per round ({args.pages} corpus pages"
            f"{' + synthetic' if args.synthetic else ''}), {args.width}x{args.height} PNG, "
            f"{args.concurrency} in flight, {args.rounds} rounds alternating; corpus {corpus.base}"
            f"; distshot {'without' if args.allow_private else 'with'} its egress guard\n",
            flush=True,
        )
        results = {name: Results() for name in names}
        for round_number in range(1, args.rounds + 1):
            order = names if round_number % 2 else names[::-1]
            for name in order:
                out = work / f"out-{name}-{round_number}"
                out.mkdir()
                try:
                    run = CONTENDERS[name](setup, out, round_number)
                except Exception as exc:
                    run = Run(0.0, errors=[f"{type(exc).__name__}: {exc}"])
                images, problems = verify(out, setup, run)
                result = results[name]
                result.in_flight = run.in_flight
                if problems:
                    result.failures.append("; ".join(problems))
                    print(f"  round {round_number}: {name:<16} FAILED: {'; '.join(problems)}")
                else:
                    steady = steady_rate(images)
                    result.steady.append(steady)
                    result.wall.append(len(images) / run.wall)
                    if run.reported is not None:
                        result.reported.append(run.reported)
                    print(
                        f"  round {round_number}: {name:<16} {steady:5.2f} shots/s, "
                        f"wall {len(images) / run.wall:5.2f} ({run.wall:.1f}s)"
                        + (f", distshot says {run.reported:.2f}/s" if run.reported else "")
                        + f"  [load {load()}]",
                        flush=True,
                    )
                if args.keep:
                    shutil.copytree(out, args.keep / out.name, dirs_exist_ok=True)
                shutil.rmtree(out, ignore_errors=True)
        server = corpus.process.pid if corpus.process else 0
        report(results, args.rounds)
        left = leftovers({server})
        if left:
            print(f"\nwarning: processes left behind: {left}", file=sys.stderr)


if __name__ == "__main__":
    main()
