"""Benchmark: memory of the whole worker tree (worker + browser), by jobs in flight and over
1,000 shots with browser recycling (issue 6).

Tree RSS = the resident memory of a process and all its descendants (Dramatiq's worker
processes, Playwright's driver, Chromium's browser, zygotes, renderers, GPU and utility
processes), summed from /proc every 100 ms. RSS counts a page shared by several processes
once per process, so the sum overstates the true footprint; it is the same measure
distshot's memory recycle trigger uses (distshot.engines.chromium.process_tree_rss).

1. Peak by jobs in flight: a fresh `distshot worker --processes P --threads N` per N (1, 2
   and 4 by default), `distshot dispatch` of the corpus pages; peak tree RSS (and which part
   is Chromium, the driver, Python) and shots/s.
2. Recycling curve: `distshot shoot --concurrency 2` of 1,000 shots (the corpus cycled, each
   URL made unique with ?shot=N) with DISTSHOT_RECYCLE_AFTER=100; every 50 shots the tree
   RSS and the peak since the previous point, and how many browsers were launched so far.
   Then the same with recycling off (recycle_after=100000, no memory limit) to compare.

    .venv/bin/python bench/memory.py                              # the full run (~15 min)
    .venv/bin/python bench/memory.py --in-flight 1 2 --shots 60 --every 20   # a quick check
    .venv/bin/python bench/memory.py --no-peak --recycle-after 100 --no-compare
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from corpus import DEFAULT_PAGES, Corpus, write_urls
from machine import BROKER, describe, load
from throughput import DISTSHOT, ENGINE_QUEUE, delete_queues, stop_process_group, wait_consumers

from distshot.engines.chromium import process_tree

PAGE = os.sysconf("SC_PAGE_SIZE")
MIB = 1024 * 1024


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(command name, parent pid, RSS bytes) of a live process."""
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
        ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        rss = int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return None
    return comm, ppid, rss


def kind(comm: str) -> str:
    if comm.startswith(("chrom", "chrome")):
        return "chromium"
    if comm.startswith("node"):  # the driver names itself node-MainThread
        return "driver"
    if comm.startswith("python") or comm in ("dramatiq", "distshot"):
        return "python"
    return "other"


@dataclass
class Sample:
    at: float
    rss: int
    parts: dict[str, int]


@dataclass
class TreeSampler:
    """Samples a process tree's RSS on a thread; ``progress`` (if given) is called each time
    and its value stored with the sample, e.g. shots done so far."""

    root: int
    interval: float = 0.1
    samples: list[Sample] = field(default_factory=list)
    browsers: set[int] = field(default_factory=set)  # Chromium processes started by the driver
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> TreeSampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        started = time.monotonic()
        while not self._stop.is_set():
            parts: dict[str, int] = {}
            stats = {pid: _stat(pid) for pid in process_tree(self.root)}
            for pid, stat in stats.items():
                if stat is None:
                    continue
                comm, ppid, rss = stat
                parts[kind(comm)] = parts.get(kind(comm), 0) + rss
                parent = stats.get(ppid)
                if kind(comm) == "chromium" and parent and kind(parent[0]) == "driver":
                    self.browsers.add(pid)
            if parts:
                self.samples.append(Sample(time.monotonic() - started, sum(parts.values()), parts))
            self._stop.wait(self.interval)

    def peak(self) -> Sample:
        return max(self.samples, key=lambda s: s.rss, default=Sample(0, 0, {}))


def count_ok(lines: list[str]) -> int:
    return sum(json.loads(line)["status"] == "ok" for line in lines if line.strip())


# -- 1. peak by jobs in flight -------------------------------------------------------------


def peak_run(
    in_flight: int, processes: int, urls_file: Path, count: int, work: Path, env: dict[str, str]
) -> dict[str, object]:
    prefix = f"benchmem{uuid.uuid4().hex[:8]}"
    env = {**env, "DISTSHOT_QUEUE_PREFIX": prefix}
    log = open(work / f"worker-{prefix}.log", "w")  # noqa: SIM115 - closed below
    worker = subprocess.Popen(
        [*DISTSHOT, "worker", "--processes", str(processes), "--threads", str(in_flight)],
        env=env,
        cwd=work,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    sampler = TreeSampler(worker.pid).start()
    batch = f"b{uuid.uuid4().hex[:10]}"
    out = work / f"peak-{in_flight}"
    try:
        wait_consumers(f"{prefix}.{ENGINE_QUEUE}", processes)
        idle = sampler.peak().rss
        started = time.perf_counter()
        done = subprocess.run(
            [
                *DISTSHOT,
                "dispatch",
                str(urls_file),
                "--storage",
                out.as_uri(),
                "--batch",
                batch,
                "--manifest",
                str(work / f"{batch}.jsonl"),
                "--wait-timeout",
                "300",
                "--width",
                "1280",
                "--height",
                "800",
            ],
            env=env,
            cwd=work,
            capture_output=True,
            text=True,
        )
        elapsed = time.perf_counter() - started
    finally:
        sampler.stop()
        stop_process_group(worker)
        log.close()
        delete_queues(prefix, [batch])
    lines = (work / f"{batch}.jsonl").read_text().splitlines() if done.returncode == 0 else []
    ok = count_ok(lines)
    if done.returncode != 0 or ok != count:
        raise SystemExit(f"{in_flight} in flight: {ok}/{count} ok; {done.stderr.strip()[-300:]}")
    peak = sampler.peak()
    return {
        "in_flight": in_flight * processes,
        "peak": peak.rss / MIB,
        "parts": {name: value / MIB for name, value in peak.parts.items()},
        "idle": idle / MIB,
        "rate": count / elapsed,
    }


# -- 2. the recycling curve ----------------------------------------------------------------


class ManifestCounter:
    """Lines in a growing manifest, read incrementally."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset, self.lines = path, 0, 0

    def __call__(self) -> int:
        with contextlib.suppress(OSError), open(self.path, "rb") as stream:
            stream.seek(self.offset)
            data = stream.read()
            self.offset += len(data)
            self.lines += data.count(b"\n")
        return self.lines


def curve_run(
    urls: list[str], every: int, recycle_after: int, work: Path, env: dict[str, str]
) -> tuple[list[tuple[int, float, float, int]], float, int]:
    """[(shots done, tree RSS MiB, peak since the previous point MiB, browsers so far)],
    shots/s, and how many shots were ok."""
    name = f"curve-{recycle_after}"
    urls_file = write_urls(work / f"{name}.txt", urls)
    out = work / name
    out.mkdir()
    env = {**env, "DISTSHOT_RECYCLE_AFTER": str(recycle_after)}
    if recycle_after >= len(urls):
        env["DISTSHOT_RECYCLE_MEMORY_MB"] = "0"  # no recycling at all
    command = [
        *DISTSHOT,
        "shoot",
        str(urls_file),
        "-o",
        str(out),
        "--concurrency",
        "2",
        "--width",
        "1280",
        "--height",
        "800",
    ]
    started = time.perf_counter()
    shoot = subprocess.Popen(
        command, env=env, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    sampler = TreeSampler(shoot.pid).start()
    counter = ManifestCounter(out / "manifest.jsonl")
    points: list[tuple[int, float, float, int]] = []
    window_peak, seen, next_point = 0, 0, every
    try:
        while shoot.poll() is None:
            time.sleep(0.1)
            done = counter()
            fresh = sampler.samples[seen:]
            seen += len(fresh)
            window_peak = max([window_peak, *(s.rss for s in fresh)])
            if done >= next_point and sampler.samples:
                now = sampler.samples[-1].rss
                points.append((done, now / MIB, window_peak / MIB, len(sampler.browsers)))
                print(
                    f"  {done:5d} shots: tree {now / MIB:7.1f} MiB, peak since last "
                    f"{window_peak / MIB:7.1f} MiB, browsers launched {len(sampler.browsers)}"
                    f"  [load {load()}]",
                    flush=True,
                )
                window_peak, next_point = 0, (done // every + 1) * every
    finally:
        if shoot.poll() is None:
            shoot.terminate()
        _, stderr = shoot.communicate()
        sampler.stop()
    elapsed = time.perf_counter() - started
    ok = count_ok((out / "manifest.jsonl").read_text().splitlines())
    if shoot.returncode != 0:
        print(f"  shoot exited {shoot.returncode}: {stderr.strip()[-300:]}", file=sys.stderr)
    return points, len(urls) / elapsed, ok


def flatness(points: list[tuple[int, float, float, int]]) -> str:
    """Mean window peak over the first and the last fifth of the run."""
    if len(points) < 5:
        return "too few points to judge"
    fifth = max(1, len(points) // 5)
    first = sum(p[2] for p in points[:fifth]) / fifth
    last = sum(p[2] for p in points[-fifth:]) / fifth
    return (
        f"mean peak over the first fifth {first:.0f} MiB, over the last fifth {last:.0f} MiB "
        f"({last - first:+.0f} MiB, {100 * (last - first) / first:+.0f}%)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pages", type=int, default=DEFAULT_PAGES, help="corpus pages [60]")
    parser.add_argument("--in-flight", type=int, nargs="*", default=[1, 2, 4])
    parser.add_argument("--processes", type=int, default=1, help="worker processes [1]")
    parser.add_argument("--no-peak", action="store_true", help="skip the peak runs")
    parser.add_argument("--shots", type=int, default=1000, help="shots in the curve [1000]")
    parser.add_argument("--every", type=int, default=50, help="a curve point every N shots")
    parser.add_argument("--recycle-after", type=int, default=100)
    parser.add_argument("--no-compare", action="store_true", help="skip the run without recycling")
    parser.add_argument(
        "--allow-private", action="store_true", help="distshot without its egress guard"
    )
    args = parser.parse_args()

    print("\n".join(describe()))
    policy = {"DISTSHOT_ALLOW_PRIVATE": "1"} if args.allow_private else {}
    policy = policy or {"DISTSHOT_ALLOW_NETWORKS": "127.0.0.0/8"}
    env = {**os.environ, "DISTSHOT_BROKER_URL": BROKER, **policy}
    with Corpus() as corpus, tempfile.TemporaryDirectory(prefix="distshot-memory-") as tmp:
        work = Path(tmp)
        pages = corpus.urls(args.pages) + corpus.synthetic_urls()
        if args.in_flight and not args.no_peak:
            urls_file = write_urls(work / "peak.txt", pages)
            print(
                f"\npeak tree RSS: `distshot worker --processes {args.processes} --threads N`, "
                f"{len(pages)} pages dispatched, 1280x800 PNG",
                flush=True,
            )
            rows = []
            for n in args.in_flight:
                row = peak_run(n, args.processes, urls_file, len(pages), work, env)
                rows.append(row)
                print(f"  {n} in flight: peak {row['peak']:.0f} MiB  [load {load()}]", flush=True)
            print(
                "\n| jobs in flight | peak tree RSS (MiB) | Chromium | driver (node) | Python "
                "| idle worker (MiB) | shots/s |\n|---|---|---|---|---|---|---|"
            )
            for row in rows:
                parts = row["parts"]
                assert isinstance(parts, dict)
                print(
                    f"| {row['in_flight']} | {row['peak']:.0f} | {parts.get('chromium', 0):.0f} "
                    f"| {parts.get('driver', 0):.0f} | {parts.get('python', 0):.0f} "
                    f"| {row['idle']:.0f} | {row['rate']:.2f} |"
                )
        urls = [f"{pages[n % len(pages)]}?shot={n}" for n in range(args.shots)]
        settings = [args.recycle_after] + ([] if args.no_compare else [100_000])
        curves = {}
        for recycle_after in settings:
            label = (
                f"recycle_after={recycle_after}" if recycle_after < args.shots else "no recycling"
            )
            print(
                f"\ncurve, {label}: `distshot shoot --concurrency 2`, {args.shots} shots",
                flush=True,
            )
            curves[label] = curve_run(urls, args.every, recycle_after, work, env)
        for label, (points, rate, ok) in curves.items():
            print(f"\n{label}: {ok}/{args.shots} ok, {rate:.2f} shots/s; {flatness(points)}")
            print("\n| shots done | tree RSS (MiB) | peak since previous point (MiB) | browsers |")
            print("|---|---|---|---|")
            for done, now, peak, browsers in points:
                print(f"| {done} | {now:.0f} | {peak:.0f} | {browsers} |")


if __name__ == "__main__":
    main()
