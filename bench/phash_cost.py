"""Benchmark: what the worker's perceptual hash (the manifest's ``phash``) costs per shot.

The worker hashes each image it stores (``distshot.core.perceptual.phash_hex``: decode,
grey, box-reduce, imagehash's pHash). This measures that call's CPU time on real shots, the
images of a manifest, in this process (``time.process_time``: CPU, not wall, so another
load on the machine moves it little), and divides it by the CPU a whole shot costs, given
with ``--shot-cpu-ms`` (``bench/ab_shoot.py`` measures it: CPU ms/shot of the process tree).

    .venv/bin/python bench/corpus.py --install
    .venv/bin/python -m distshot.cli shoot URLS -o /tmp/shots --allow-private   # any shots
    .venv/bin/python bench/phash_cost.py /tmp/shots/manifest.jsonl --shot-cpu-ms 650

The whole-tree figure with and without hashing: ``bench/ab_shoot.py --base REV`` with REV a
revision before hashing, or the same tree with ``DISTSHOT_PHASH=false`` on one side.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

from distshot.core.manifest import read_records
from distshot.core.perceptual import phash_hex


def image_paths(manifest: Path) -> list[Path]:
    paths = []
    for record in read_records(manifest):
        location = record.get("location") or ""
        if record.get("status") == "ok" and location.startswith("file://"):
            paths.append(Path(unquote(urlsplit(location).path)))
    return paths


def cpu_ms(data: bytes, repeat: int) -> float:
    phash_hex(data)  # warm: imports and first-call costs are not per shot
    started = time.process_time()
    for _ in range(repeat):
        phash_hex(data)
    return (time.process_time() - started) / repeat * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("manifest", type=Path)
    parser.add_argument("--repeat", type=int, default=5, help="hashes per image")
    parser.add_argument("--shot-cpu-ms", type=float, help="CPU ms per shot of the whole tree")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args()
    paths = image_paths(args.manifest)
    if not paths:
        print(f"no local images in {args.manifest}", file=sys.stderr)
        return 2
    costs = []
    pixels = []
    for path in paths:
        data = path.read_bytes()
        costs.append(cpu_ms(data, args.repeat))
        pixels.append(_pixels(data))
    median = statistics.median(costs)
    mean = statistics.fmean(costs)
    worst = max(costs)
    print(f"{len(paths)} images, {statistics.median(pixels) / 1e6:.2f} Mpx median")
    print(f"phash CPU per image: median {median:.1f} ms, mean {mean:.1f} ms, max {worst:.1f} ms")
    figures = {"images": len(paths), "median_ms": median, "mean_ms": mean, "max_ms": worst}
    if args.shot_cpu_ms:
        share = mean / args.shot_cpu_ms
        figures["share_of_shot_cpu"] = share
        print(f"share of a shot's CPU ({args.shot_cpu_ms:.0f} ms): {share:.1%} (mean)")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


def _pixels(data: bytes) -> int:
    from distshot.core.imageinfo import image_size

    size = image_size(data)
    return size[0] * size[1] if size else 0


if __name__ == "__main__":
    raise SystemExit(main())
