"""Benchmark: `distshot report` and `distshot diff` over 10,000 records, time and peak memory.

Real shots, repeated: the pages of examples/site are captured once with `distshot shoot`
(five at 1280x800, one full page about 6,000 px tall), then a manifest of ``--records``
lines is synthesised from them (9 in 10 ok, each pointing at one of the shots in turn; the
rest failed or rejected; every record with bytes of its own, a distinct sha256, so that
each is decoded as distinct pages are). Each command runs as its own process, as a user runs it; its
process tree's resident memory is sampled every 50 ms (psutil) for the peak.

- report: the manifest as the worker writes it (phash and image_key in each record), and
  with ``--old-manifest`` also without them (the report hashes every image);
- diff: that manifest against a copy in which 1 ok record in 10 shows another shot
  (changed) and 1 in 10 the same pixels under another sha256 (compared pixel by pixel);
  the rest are the same bytes (no decoding but the thumbnail);
- groups alone: ``look_alike_groups`` over 100,000 hashes, isolated (the worst case: one
  pass per hash) and in 1,000 clusters;
- ``--executors``: the thumbnail work itself, serially, in threads and in processes (is
  the GIL released enough for threads?).

    .venv/bin/python bench/report_build.py --json /tmp/report-build.json

Times are wall-clock on a machine that may be shared: the load average is printed before
and after each part.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psutil

from distshot.core.manifest import read_records
from distshot.report.groups import look_alike_groups
from distshot.report.thumbnails import open_top, save_thumbnail

ROOT = Path(__file__).resolve().parent.parent
DISTSHOT = [sys.executable, "-m", "distshot.cli"]


class Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def make_shots(folder: Path) -> list[dict[str, Any]]:
    """Capture examples/site once; the ok records of that run."""
    handler = functools.partial(Quiet, directory=str(ROOT / "examples" / "site"))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    pages = ["index", "gallery", "long", "i18n", "fonts"]
    lines = [{"url": f"{base}/{page}.html"} for page in pages]
    lines.append({"url": f"{base}/long.html", "full_page": True})
    urls = folder / "urls.jsonl"
    urls.write_text("".join(json.dumps(line) + "\n" for line in lines))
    try:
        command = [*DISTSHOT, "shoot", str(urls), "-o", str(folder / "shots"), "--allow-private"]
        subprocess.run(command, check=True, capture_output=True)
    finally:
        server.shutdown()
    return [r for r in read_records(folder / "shots" / "manifest.jsonl") if r["status"] == "ok"]


def synthesise(shots: list[dict[str, Any]], n: int, path: Path, *, old: bool = False) -> None:
    """``n`` records: the shots in turn, 1 in 10 failed, 1 in 50 rejected."""
    with path.open("w") as stream:
        for i in range(n):
            line, url = i + 1, f"https://site-{i:05d}.example/"
            if i % 10 == 7:
                error = {"type": "NavigationTimeout", "message": f"{url} did not finish"}
                record: dict[str, Any] = {"status": "failed", "error": error}
            elif i % 50 == 9:
                error = {"type": "InvalidUrl", "message": "not an http(s) URL"}
                record = {"status": "rejected", "error": error}
            else:
                record = {**shots[i % len(shots)], "title": f"Page {i}"}
                record["image_key"] = f"{i:016x}"
                # Distinct bytes, as distinct pages have: the report shares one thumbnail
                # between records of the same sha256, which would leave six to make.
                record["sha256"] = f"{i:064x}"
            record.update(id=f"bench:{line}", line=line, url=url)
            if old:
                record.pop("phash", None)
                record.pop("image_key", None)
            stream.write(json.dumps(record) + "\n")


def changed_copy(source: Path, dest: Path, shots: list[dict[str, Any]]) -> None:
    """The manifest with 1 ok record in 10 showing another shot, 1 in 10 re-hashed."""
    with dest.open("w") as stream:
        for n, record in enumerate(read_records(source)):
            if record["status"] == "ok" and n % 10 == 1:
                other = shots[(shots.index(_shot_of(record, shots)) + 1) % len(shots)]
                for name in ("location", "link", "sha256", "phash", "width", "height"):
                    record[name] = other[name]
            elif record["status"] == "ok" and n % 10 == 2:
                record["sha256"] = "0" * 64  # same pixels, other bytes: a pixel comparison
            stream.write(json.dumps(record) + "\n")


def _shot_of(record: dict[str, Any], shots: list[dict[str, Any]]) -> dict[str, Any]:
    return next(s for s in shots if s["location"] == record["location"])


def run_measured(args: list[str]) -> dict[str, Any]:
    """Run a distshot command; wall time, exit status, peak RSS of its process tree."""
    started = time.monotonic()
    process = psutil.Popen([*DISTSHOT, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    peak = 0
    while process.poll() is None:
        try:
            tree = [process, *process.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree))
        except psutil.Error:
            pass
        time.sleep(0.05)
    out, err = process.communicate()
    return {
        "seconds": round(time.monotonic() - started, 2),
        "exit": process.returncode,
        "peak_rss_mib": round(peak / 2**20, 1),
        "summary": out.decode().strip() or err.decode().strip()[-300:],
    }


def bench_groups() -> dict[str, float]:
    rng = random.Random(18)
    isolated = [(i, f"{rng.getrandbits(64):016x}") for i in range(100_000)]
    centres = [rng.getrandbits(64) for _ in range(1000)]
    clustered = [
        (i, f"{centres[i % 1000] ^ (1 << rng.randrange(64)) ^ (1 << rng.randrange(64)):016x}")
        for i in range(100_000)
    ]
    figures = {}
    for name, pairs in (("isolated", isolated), ("clustered", clustered)):
        started = time.perf_counter()
        groups = look_alike_groups(pairs)
        figures[f"groups_100k_{name}_s"] = round(time.perf_counter() - started, 2)
        print(
            f"  groups of 100,000 {name} hashes: {figures[f'groups_100k_{name}_s']} s, "
            f"{len(groups)} groups"
        )
    return figures


def _thumb(path: str, dest: str) -> None:
    """A thumbnail as the report makes one when the record has its phash."""
    with open_top(Path(path).read_bytes()) as image:
        save_thumbnail(image, Path(dest))


def bench_executors(shots: list[dict[str, Any]], workers: int, jobs: int) -> dict[str, float]:
    paths = [s["location"].removeprefix("file://") for s in shots]
    with tempfile.TemporaryDirectory() as scratch:
        work = [(paths[i % len(paths)], f"{scratch}/{i}.webp") for i in range(jobs)]
        figures = {}
        started = time.perf_counter()
        for path, dest in work:
            _thumb(path, dest)
        figures["serial_s"] = time.perf_counter() - started
        for name, kind in (("threads", ThreadPoolExecutor), ("processes", ProcessPoolExecutor)):
            with kind(workers) as pool:
                list(pool.map(_thumb, *zip(*work[:workers], strict=True)))  # warm
                started = time.perf_counter()
                list(pool.map(_thumb, *zip(*work, strict=True), chunksize=1))
                figures[f"{name}_s"] = time.perf_counter() - started
    for name, seconds in figures.items():
        print(f"  {jobs} thumbnails, {name.removesuffix('_s')}: {seconds:.2f} s")
    return {k: round(v, 2) for k, v in figures.items()}


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--workers", type=int, help="distshot's --workers [its default]")
    parser.add_argument("--old-manifest", action="store_true", help="also without phash")
    parser.add_argument("--no-diff", action="store_true")
    parser.add_argument(
        "--executors",
        type=int,
        default=0,
        metavar="JOBS",
        help="also time JOBS thumbnails serially, in threads, in processes",
    )
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args()
    figures: dict[str, Any] = {"records": args.records, "cpus": os.cpu_count()}
    workers = ["--workers", str(args.workers)] if args.workers else []
    with tempfile.TemporaryDirectory(prefix="report-build-") as scratch:
        root = Path(scratch)
        print(f"capturing examples/site ... ({load()})", flush=True)
        shots = make_shots(root)
        manifest = root / "manifest.jsonl"
        synthesise(shots, args.records, manifest)
        runs = [("report", manifest)]
        if args.old_manifest:
            synthesise(shots, args.records, root / "old-manifest.jsonl", old=True)
            runs.append(("report_old_manifest", root / "old-manifest.jsonl"))
        for name, path in runs:
            print(f"{name}: {args.records} records ({load()})", flush=True)
            figures[name] = run_measured(["report", str(path), "-o", str(root / name), *workers])
            print(f"  {figures[name]}  ({load()})", flush=True)
        if not args.no_diff:
            changed = root / "changed.jsonl"
            changed_copy(manifest, changed, shots)
            print(f"diff: {args.records} against {args.records} ({load()})", flush=True)
            command = ["diff", str(manifest), str(changed), "-o", str(root / "diff"), *workers]
            figures["diff"] = run_measured(command)
            print(f"  {figures['diff']}  ({load()})", flush=True)
        print(f"groups ({load()})", flush=True)
        figures.update(bench_groups())
        if args.executors:
            n = args.workers or len(os.sched_getaffinity(0))
            print(f"executors, {n} workers ({load()})", flush=True)
            figures["executors"] = bench_executors(shots, n, args.executors)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
