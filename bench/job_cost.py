"""Benchmark: the cost of one job's own work in a worker, without Dramatiq or RabbitMQ.

What a worker does for each message besides passing it between threads: decode the
message, rebuild the request, ``capture_request`` with the null engine and local storage
(the image and its cache entry written), encode the reply. The pipeline benchmark
(bench/pipeline.py) measures everything together; this one tells how much of a worker's CPU
per job is the job itself.

    .venv/bin/python bench/job_cost.py                 # CPU time per job
    .venv/bin/python bench/job_cost.py --callgrind     # instructions per job (valgrind)

Instruction counts are repeatable whatever else the machine does, so they settle A/B
questions that CPU time, drifting by ±20% here, cannot. They count user space only: the
system calls' kernel time is not in them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time

import dramatiq

from distshot.actors.reply_middleware import reply_message
from distshot.core.models import ShotRequest
from distshot.core.service import capture_request
from distshot.dispatch.dispatcher import capture_message
from distshot.engines.null import NullEngine
from distshot.storage.local import LocalStorage

REPLY_QUEUE = "distshot.reply.b"


def messages(count: int) -> list[bytes]:
    """Encoded capture messages, as the dispatcher sends them."""
    return [
        capture_message(
            ShotRequest(
                id=f"b:{n}",
                line=n,
                url=f"https://site{n % 1000}.test/page/{n}",
                batch="b",
                allow_private=True,
            ),
            "null",
            REPLY_QUEUE,
        ).encode()
        for n in range(count)
    ]


async def work(bodies: list[bytes], folder: str) -> float:
    """CPU seconds for all jobs, as the worker's actor and reply middleware do them."""
    storage, engine = LocalStorage(folder), NullEngine()
    storage.check()
    started = time.process_time()
    for body in bodies:
        message = dramatiq.Message.decode(body)
        request = ShotRequest.from_wire(message.args[0])
        result = await capture_request(request, engine, storage)
        reply_message(REPLY_QUEUE, result.to_record()).encode()
    return time.process_time() - started


def instructions(jobs: int, prepare_only: bool) -> int:
    command = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        __file__,
        "--jobs",
        str(jobs),
        "--rounds",
        "1",
        *(["--prepare-only"] if prepare_only else []),
    ]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stderr
    match = re.search(r"Collected : (\d+)", output)
    if match is None:
        raise SystemExit(f"valgrind printed no count:\n{output[-2000:]}")
    return int(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, help="jobs to run [20,000; 2,000 with --callgrind]")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--callgrind", action="store_true", help="count instructions instead")
    parser.add_argument("--prepare-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.jobs is None:
        args.jobs = 2_000 if args.callgrind else 20_000
    if args.callgrind:
        # Two job counts, each with and without the jobs: the differences cancel start-up,
        # imports and message preparation.
        small, large = args.jobs // 2 or 1, args.jobs
        full = instructions(large, False) - instructions(small, False)
        prepare = instructions(large, True) - instructions(small, True)
        per_job = (full - prepare) / (large - small)
        print(f"instructions per job (user space, callgrind): {per_job:,.0f}")
        return
    bodies = messages(args.jobs)
    if args.prepare_only:
        return
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="distshot-job-cost-") as folder:
            seconds = asyncio.run(work(bodies, folder))
        print(f"CPU per job: {seconds * 1e6 / args.jobs:.0f} us ({args.jobs} jobs)", flush=True)
    print(f"machine: {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
