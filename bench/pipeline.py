"""Benchmark: distshot's own pipeline through RabbitMQ, with the null engine.

dispatch -> RabbitMQ -> worker (null engine, local storage) -> reply -> manifest, measured
end to end in requests per second with 1 and with 2 worker processes, and the dispatcher's
peak RSS for large batches. Not a test: it prints figures.

    .venv/bin/python bench/pipeline.py                      # throughput, 1 and 2 processes
    .venv/bin/python bench/pipeline.py --memory 100000 1000000
    .venv/bin/python bench/pipeline.py --pin-cpu auto off   # pinned against floating workers
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pika
from machine import BROKER

from distshot.core.config import PIN_CHOICES

ROOT = Path(__file__).resolve().parent.parent
DISTSHOT = [sys.executable, "-m", "distshot.cli"]


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def wait_consumers(queue: str, count: int, timeout: float = 60) -> None:
    """Wait until ``count`` consumers (worker processes) listen on ``queue``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        connection = pika.BlockingConnection(pika.URLParameters(BROKER))
        try:
            frame = connection.channel().queue_declare(queue, passive=True)
            if frame.method.consumer_count >= count:
                return
        except pika.exceptions.ChannelClosedByBroker:
            pass
        finally:
            if connection.is_open:
                connection.close()
        time.sleep(0.3)
    raise SystemExit(f"workers did not come up on {queue}")


def delete_queues(prefix: str, batches: list[str]) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(BROKER))
    channel = connection.channel()
    for name in [f"{prefix}.null", *[f"{prefix}.reply.{b}" for b in batches]]:
        for suffix in ("", ".DQ", ".XQ"):
            channel.queue_delete(name + suffix)
    connection.close()


def run(
    urls: int,
    processes: int,
    threads: int,
    work: Path,
    sample: bool = False,
    pin_cpu: str = "auto",
) -> dict[str, float]:
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "DISTSHOT_QUEUE_PREFIX": prefix,
        "DISTSHOT_BROKER_URL": BROKER,
        "DISTSHOT_PIN_CPU": pin_cpu,
    }
    url_file = work / f"urls-{urls}.txt"
    if not url_file.exists():
        with open(url_file, "w") as out:
            for n in range(urls):
                out.write(f"https://site{n % 1000}.test/page/{n}\n")
    worker = subprocess.Popen(
        [
            *DISTSHOT,
            "worker",
            "--engine",
            "null",
            "--processes",
            str(processes),
            "--threads",
            str(threads),
            "--storage",
            str(work / f"shots-{prefix}"),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    batch = f"b{uuid.uuid4().hex[:8]}"
    try:
        wait_consumers(f"{prefix}.null", processes)
        started = time.monotonic()
        dispatcher = subprocess.Popen(
            [
                *DISTSHOT,
                "dispatch",
                str(url_file),
                "--engine",
                "null",
                "--allow-private",
                "--batch",
                batch,
                "--manifest",
                str(work / f"{batch}.jsonl"),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        peak = 0
        samples: list[tuple[float, int]] = []
        stop = threading.Event()

        def sampler() -> None:
            nonlocal peak
            while not stop.wait(0.5):
                value = rss_kib(dispatcher.pid)
                peak = max(peak, value)
                samples.append((time.monotonic() - started, value))

        thread = threading.Thread(target=sampler, daemon=True)
        thread.start()
        _, stderr = dispatcher.communicate()
        elapsed = time.monotonic() - started
        stop.set()
        thread.join()
        if dispatcher.returncode != 0:
            raise SystemExit(f"dispatch failed: {stderr.strip().splitlines()[-1:]}")
        with open(work / f"{batch}.jsonl") as manifest:
            lines = sum(1 for _ in manifest)
        assert lines == urls, f"{lines} records for {urls} URLs"
        return {
            "urls": urls,
            "processes": processes,
            "seconds": elapsed,
            "rate": urls / elapsed,
            "peak_rss_mib": peak / 1024,
            "rss_at_10pct": _rss_at(samples, elapsed * 0.1) / 1024,
        }
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=60)
        delete_queues(prefix, [batch])


def broker_baseline(count: int, confirms: bool = True) -> float:
    """Messages/s for one bare hop with the same guarantees distshot uses (persistent
    messages, publisher confirms, manual acks): a publisher and a consumer, pika only."""
    queue = f"bench-baseline-{uuid.uuid4().hex[:8]}"
    setup = pika.BlockingConnection(pika.URLParameters(BROKER))
    setup.channel().queue_declare(queue, durable=True)
    body = b"x" * 600  # about the size of a capture request

    def consume(done: threading.Event) -> None:
        connection = pika.BlockingConnection(pika.URLParameters(BROKER))
        channel = connection.channel()
        channel.basic_qos(prefetch_count=100)
        received = 0
        for method, _, _ in channel.consume(queue, inactivity_timeout=30):
            if method is None:
                break
            channel.basic_ack(method.delivery_tag)
            received += 1  # noqa: SIM113 - the loop ends on a timeout too
            if received == count:
                break
        connection.close()
        done.set()

    done = threading.Event()
    consumer = threading.Thread(target=consume, args=(done,))
    started = time.monotonic()
    consumer.start()
    connection = pika.BlockingConnection(pika.URLParameters(BROKER))
    channel = connection.channel()
    if confirms:
        channel.confirm_delivery()
    for _ in range(count):
        channel.basic_publish(
            "", queue, body, pika.BasicProperties(delivery_mode=2), mandatory=confirms
        )
    done.wait()
    elapsed = time.monotonic() - started
    connection.close()
    setup.channel().queue_delete(queue)
    setup.close()
    return count / elapsed


def cpu_seconds() -> dict[str, float]:
    """CPU used so far by distshot's processes (this script's waited-for children: the
    dispatchers and workers) and by the RabbitMQ node (beam.smp)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    beam = 0.0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if "(beam.smp)" in stat:
                fields = stat.rsplit(")", 1)[1].split()
                beam += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return {"distshot": children.ru_utime + children.ru_stime, "rabbitmq": beam}


def _rss_at(samples: list[tuple[float, int]], when: float) -> float:
    later = [value for at, value in samples if at >= when]
    return float(later[0]) if later else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--urls", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--processes", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--pin-cpu",
        nargs="*",
        default=["auto"],
        choices=PIN_CHOICES,
        help="worker pin_cpu settings to alternate (auto pins the null engine's processes)",
    )
    parser.add_argument(
        "--memory",
        type=int,
        nargs="*",
        default=[],
        help="batch sizes for the dispatcher memory benchmark",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="distshot-bench-") as tmp:
        work = Path(tmp)
        print(f"machine: {os.cpu_count()} cores; broker {BROKER.split('@')[-1]}")
        for confirms in (True, False):
            rate = broker_baseline(args.urls, confirms)
            kind = "with" if confirms else "without"
            print(
                f"broker baseline, one bare hop (pika, persistent, acks, {kind} publisher "
                f"confirms): {rate:.0f} messages/s"
            )
        print(
            "throughput (null engine, dispatch -> RabbitMQ -> worker -> reply -> manifest), "
            f"{args.rounds} rounds alternating between process counts"
        )
        setups = [(processes, pin) for pin in args.pin_cpu for processes in args.processes]
        rates: dict[tuple[int, str], list[float]] = {setup: [] for setup in setups}
        cpu: dict[tuple[int, str], list[dict[str, float]]] = {setup: [] for setup in setups}
        for _ in range(args.rounds):
            for setup in setups:
                processes, pin = setup
                before = cpu_seconds()
                result = run(args.urls, processes, args.threads, work, pin_cpu=pin)
                after = cpu_seconds()
                rates[setup].append(result["rate"])
                cpu[setup].append({k: (after[k] - before[k]) * 1000 / args.urls for k in after})
        for setup in setups if args.rounds else []:
            processes, pin = setup
            runs = ", ".join(f"{rate:.0f}" for rate in rates[setup])
            per = {k: statistics.median(c[k] for c in cpu[setup]) for k in cpu[setup][0]}
            print(
                f"  {processes} worker process(es) x {args.threads} threads, pin_cpu={pin}: "
                f"{statistics.median(rates[setup]):.0f} requests/s median ({runs}); "
                f"CPU ms per request: distshot {per['distshot']:.2f}, "
                f"RabbitMQ {per['rabbitmq']:.2f}"
            )
        for count in args.memory:
            result = run(
                count, max(args.processes), args.threads, work, sample=True, pin_cpu=args.pin_cpu[0]
            )
            print(
                f"  dispatcher, {count} URLs: peak RSS {result['peak_rss_mib']:.1f} MiB "
                f"(RSS at 10% of the run {result['rss_at_10pct']:.1f} MiB), "
                f"{result['rate']:.0f} requests/s"
            )


if __name__ == "__main__":
    main()
