"""Benchmark: what one worker process carries, and what one broker carries (issue 17).

The figures a fleet is sized from (deploy/kubernetes/'s requests and limits, the README's
capacity table). Every part records the load average before and after it: the figures are
only as quiet as the machine was.

1. **Per worker process, by threads** (jobs in flight; 1, 2 and 4 by default): a fresh
   `distshot worker --processes 1 --threads T` (playwright, /usr/bin/chromium) is warmed up
   (browser launched) with a few shots, then `distshot dispatch` sends it --urls shots of
   the example site (examples/site/: its five pages, 1280x800 PNG, each URL made unique with
   ?shot=N), served on 127.0.0.1 from a child process. Measured: shots/s (URLs / the
   dispatch's life); CPU cores the worker's whole process tree used over the batch (psutil
   user+system time of Dramatiq's processes, the Playwright driver and every Chromium
   process, summed per process between the batch's start and end; a renderer that exits
   within the batch loses its last 100 ms); resident memory of that tree (RSS summed over
   it with psutil every 100 ms): the peak over the worker's life and the steady value (the
   median of the samples during the batch). RSS counts a page shared by several processes
   once per process, so the sum overstates the true footprint: it is the figure a
   container's memory limit must clear with room to spare. The tree's PSS (each shared page
   split among the processes sharing it, so the sum is the footprint; read every 0.5 s) is
   given beside it: what the memory request is sized from. Rounds alternate the thread
   counts; the table gives medians.
2. **Derived**: worker processes one core carries (1 / cores used by one process) and one GiB
   carries (1024 / peak tree MiB, by RSS and by PSS), per thread count.
3. **The broker/pipeline ceiling**: dispatch -> RabbitMQ -> workers -> replies -> manifest
   with the `null` engine (no browser; bench/pipeline.py's run), --null-processes worker
   processes x --null-threads threads: requests/s, and the RabbitMQ node's CPU ms per
   request (so requests/s per broker core).
4. **Drain**: with T jobs in flight on pages that take --drain-page-ms to load, SIGTERM to
   the worker's main process only (what Kubernetes sends to a container's PID 1, and systemd
   with KillMode=mixed): seconds until the worker's whole process tree is gone. Then a
   fresh worker takes over, and the batch must still end with every shot ok: the interrupted
   jobs were handed back, not lost.
5. **`distshot serve --backend rabbitmq`** (what the serve Deployment runs): --serve-requests
   POST /v1/shots with ``wait`` from --serve-clients client threads, answered by a null-engine
   worker (the service's own cost, not a browser's): requests/s, the service's CPU ms per
   request, its RSS idle (ready, no traffic), peak and steady.

Pages are on loopback, so workers, dispatcher and service run with DISTSHOT_ALLOW_PRIVATE=1. Queues
get a private prefix per run (DISTSHOT_QUEUE_PREFIX) and are deleted afterwards; the shared
RabbitMQ on 127.0.0.1:5672 is never stopped.

    .venv/bin/python bench/capacity.py                          # all parts (~8 min)
    .venv/bin/python bench/capacity.py --threads 1,2,4 --urls 40 --rounds 3
    .venv/bin/python bench/capacity.py --threads 2 --urls 10 --rounds 1 --parts workers
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psutil
from machine import BROKER, describe
from pipeline import run as pipeline_run
from pipeline import wait_consumers
from throughput import DISTSHOT, ENGINE_QUEUE, delete_queues, stop_process_group

from distshot.testing.server import start_server, stop_server

ROOT = Path(__file__).resolve().parent.parent
SITE = ROOT / "examples" / "site"
SITE_PAGES = ("index.html", "gallery.html", "long.html", "i18n.html", "fonts.html")
MIB = 1024 * 1024
PARTS = ("workers", "null", "drain", "serve")
WARMUP_SHOTS = 4


def loadavg() -> tuple[float, float, float]:
    return os.getloadavg()


def show_load(values: tuple[float, float, float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


# -- the example site on 127.0.0.1 ---------------------------------------------------------


class _Handler(SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real web server

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128


def _serve_site() -> None:
    """The child process: serve examples/site/ until our parent closes our stdin."""
    server = _Server(("127.0.0.1", 0), functools.partial(_Handler, directory=str(SITE)))
    print(f"http://127.0.0.1:{server.server_address[1]}", flush=True)

    def exit_on_eof() -> None:
        sys.stdin.read()
        os._exit(0)

    threading.Thread(target=exit_on_eof, daemon=True).start()
    server.serve_forever()


@contextlib.contextmanager
def site_server() -> Iterator[str]:
    """examples/site/ served from a child process (its GIL is not the benchmark's)."""
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve-site"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        base = child.stdout.readline().strip()
        if not base.startswith("http://127.0.0.1:"):
            raise SystemExit("the example site server did not start")
        yield base
    finally:
        child.terminate()
        child.wait(timeout=10)
        for stream in (child.stdin, child.stdout):
            if stream is not None:
                stream.close()


def write_urls(path: Path, base: str, count: int, tag: str) -> Path:
    lines = [f"{base}/{SITE_PAGES[n % len(SITE_PAGES)]}?shot={tag}{n}\n" for n in range(count)]
    path.write_text("".join(lines))
    return path


# -- the worker's process tree -------------------------------------------------------------


def tree(root: int) -> list[psutil.Process]:
    try:
        parent = psutil.Process(root)
        return [parent, *parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


@dataclass
class TreeSampler:
    """RSS of a process tree every ``interval`` s (summed over it), and CPU time per process
    (keyed by pid and start time, so a reused pid is a new process)."""

    root: int
    interval: float = 0.1
    samples: list[tuple[float, int]] = field(default_factory=list)
    #: PSS (proportional set size: a shared page split among its sharers), summed; every
    #: ``pss_every``-th sample only, as reading smaps costs more than RSS.
    pss: list[tuple[float, int]] = field(default_factory=list)
    pss_every: int = 5
    #: Shared-memory files the tree holds open (allocated bytes, each file once): Chromium's
    #: under /dev/shm (or /tmp with --disable-dev-shm-usage) and memfds; read with PSS.
    shm: list[tuple[float, int]] = field(default_factory=list)
    cpu: dict[tuple[int, float], float] = field(default_factory=dict)
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
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> None:
        rss, pss = 0, 0
        with_pss = len(self.samples) % self.pss_every == 0
        for process in tree(self.root):
            try:
                with process.oneshot():
                    rss += process.memory_info().rss
                    if with_pss:
                        pss += process.memory_full_info().pss
                    times = process.cpu_times()
                    self.cpu[(process.pid, process.create_time())] = times.user + times.system
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        if rss:
            self.samples.append((time.monotonic(), rss))
            if with_pss:
                self.pss.append((time.monotonic(), pss))
                self.shm.append((time.monotonic(), shared_memory_bytes(self.root)))

    def cpu_snapshot(self) -> dict[tuple[int, float], float]:
        self.sample()
        return dict(self.cpu)


def shared_memory_bytes(root: int) -> int:
    """Allocated bytes of the shared-memory files (/dev/shm, /tmp, memfd) the tree has open,
    each file counted once: what a container's /dev/shm (or /tmp) must hold for it."""
    seen: dict[tuple[int, int], int] = {}
    for process in tree(root):
        fds = Path(f"/proc/{process.pid}/fd")
        with contextlib.suppress(OSError):
            for fd in fds.iterdir():
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    if target.startswith(("/dev/shm/", "/tmp/", "/memfd:")):
                        info = os.stat(fd)
                        seen[(info.st_dev, info.st_ino)] = info.st_blocks * 512
    return sum(seen.values())


def cpu_between(
    before: dict[tuple[int, float], float], after: dict[tuple[int, float], float]
) -> float:
    """CPU seconds the tree used between two snapshots (processes born since count from 0)."""
    return sum(value - before.get(key, 0.0) for key, value in after.items())


# -- part 1: one worker process by threads -------------------------------------------------


def start_worker(
    threads: int, prefix: str, work: Path, env: dict[str, str]
) -> subprocess.Popen[bytes]:
    log = open(work / f"worker-{prefix}.log", "wb")  # noqa: SIM115 - the child keeps it
    try:
        return subprocess.Popen(
            [
                *DISTSHOT,
                "worker",
                "--processes",
                "1",
                "--threads",
                str(threads),
                "--storage",
                (work / f"shots-{prefix}").as_uri(),
            ],
            env={**env, "DISTSHOT_QUEUE_PREFIX": prefix},
            cwd=work,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    finally:
        log.close()


def dispatch(
    urls_file: Path, prefix: str, batch: str, work: Path, env: dict[str, str]
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            *DISTSHOT,
            "dispatch",
            str(urls_file),
            "--allow-private",
            "--batch",
            batch,
            "--manifest",
            str(work / f"{batch}.jsonl"),
            "--wait-timeout",
            "300",
        ],
        env={**env, "DISTSHOT_QUEUE_PREFIX": prefix},
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def manifest_records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def checked(
    done: subprocess.Popen[str], work: Path, batch: str, count: int
) -> list[dict[str, Any]]:
    _, stderr = done.communicate()
    path = work / f"{batch}.jsonl"
    records = manifest_records(path) if path.exists() else []
    ok = sum(r["status"] == "ok" for r in records)
    if done.returncode != 0 or ok != count:
        errors = {r["error"]["type"] for r in records if r.get("error")}
        raise SystemExit(f"batch {batch}: {ok}/{count} ok, errors {errors}; {stderr[-300:]}")
    return records


def worker_run(
    threads: int, count: int, base: str, work: Path, env: dict[str, str]
) -> dict[str, float]:
    prefix = f"benchcap{uuid.uuid4().hex[:8]}"
    batches = [f"w{uuid.uuid4().hex[:10]}", f"b{uuid.uuid4().hex[:10]}"]
    warmup = write_urls(work / f"{batches[0]}.txt", base, WARMUP_SHOTS, batches[0])
    timed = write_urls(work / f"{batches[1]}.txt", base, count, batches[1])
    worker = start_worker(threads, prefix, work, env)
    sampler = TreeSampler(worker.pid).start()
    try:
        wait_consumers(f"{prefix}.{ENGINE_QUEUE}", 1)
        checked(dispatch(warmup, prefix, batches[0], work, env), work, batches[0], WARMUP_SHOTS)
        cpu_before = sampler.cpu_snapshot()
        started = time.monotonic()
        checked(dispatch(timed, prefix, batches[1], work, env), work, batches[1], count)
        elapsed = time.monotonic() - started
        cpu_after = sampler.cpu_snapshot()
    finally:
        sampler.stop()
        stop_process_group(worker)
        delete_queues(prefix, batches)
    during = [rss for at, rss in sampler.samples if started <= at <= started + elapsed]
    during_pss = [pss for at, pss in sampler.pss if started <= at <= started + elapsed]
    return {
        "rate": count / elapsed,
        "cores": cpu_between(cpu_before, cpu_after) / elapsed,
        "peak": max(rss for _, rss in sampler.samples) / MIB,
        "steady": statistics.median(during) / MIB if during else 0.0,
        "peak_pss": max(pss for _, pss in sampler.pss) / MIB,
        "steady_pss": statistics.median(during_pss) / MIB if during_pss else 0.0,
        "peak_shm": max((b for _, b in sampler.shm), default=0) / MIB,
    }


# -- part 3: the broker ----------------------------------------------------------------------


def broker_process() -> psutil.Process:
    """The RabbitMQ node that listens on the benchmark's broker port (other RabbitMQ nodes,
    say in containers that other work starts and stops, are not counted)."""
    port = int(BROKER.rsplit(":", 1)[1].split("/", 1)[0])
    for connection in psutil.net_connections("tcp"):
        address = connection.laddr
        listening = connection.status == psutil.CONN_LISTEN and address and address.port == port
        if listening and connection.pid is not None:
            return psutil.Process(connection.pid)
    raise SystemExit(f"no process listens on port {port}")


def process_cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


# -- part 4: drain on SIGTERM --------------------------------------------------------------


def drain_run(threads: int, page_ms: int, work: Path, env: dict[str, str]) -> dict[str, float]:
    """SIGTERM with ``threads`` jobs in flight: seconds until the tree is gone; then a new
    worker finishes the batch."""
    pages = start_server()
    prefix = f"benchdrain{uuid.uuid4().hex[:8]}"
    batch = f"d{uuid.uuid4().hex[:10]}"
    urls = work / f"{batch}.txt"
    urls.write_text("".join(f"{pages.base}/slow?ms={page_ms}&n={n}\n" for n in range(threads)))
    worker = start_worker(threads, prefix, work, env)
    second: subprocess.Popen[bytes] | None = None
    try:
        wait_consumers(f"{prefix}.{ENGINE_QUEUE}", 1)
        running = dispatch(urls, prefix, batch, work, env)
        deadline = time.monotonic() + 60
        while pages.seen.active < threads:
            if time.monotonic() > deadline:
                raise SystemExit("drain: the slow pages were never all in flight")
            time.sleep(0.05)
        processes = tree(worker.pid)
        signalled = time.monotonic()
        worker.terminate()  # the main process only, as Kubernetes and KillMode=mixed do
        worker.wait(timeout=300)
        _, alive = psutil.wait_procs(processes, timeout=60)
        drained = time.monotonic() - signalled
        second = start_worker(threads, prefix, work, env)
        records = checked(running, work, batch, threads)
    finally:
        stop_process_group(worker)
        if second is not None:
            stop_process_group(second)
        delete_queues(prefix, [batch])
        stop_server(pages)
    return {
        "seconds": drained,
        "left_behind": float(len(alive)),
        "retried": float(sum(r["attempts"] > 1 for r in records)),
        "exit": float(worker.returncode),
    }


# -- part 5: `distshot serve --backend rabbitmq` ---------------------------------------------


def serve_run(
    count: int, clients: int, threads: int, work: Path, env: dict[str, str]
) -> dict[str, float]:
    """POST /v1/shots (``wait``) ``count`` times from ``clients`` threads to a serve instance
    on the rabbitmq backend, answered by a null-engine worker: the service process's RSS
    (idle when ready, peak, steady) and CPU per request, and requests/s."""
    import httpx

    prefix = f"benchserve{uuid.uuid4().hex[:8]}"
    env = {**env, "DISTSHOT_QUEUE_PREFIX": prefix}
    with socket_port() as port:
        pass
    log = open(work / f"serve-{prefix}.log", "wb")  # noqa: SIM115 - the child keeps it
    storage = (work / f"serve-shots-{prefix}").as_uri()
    worker = subprocess.Popen(
        [*DISTSHOT, "worker", "--engine", "null", "--threads", str(threads), "--storage", storage],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    serve = subprocess.Popen(
        [
            *DISTSHOT,
            "serve",
            "--backend",
            "rabbitmq",
            "--engine",
            "null",
            "--port",
            str(port),
            "--storage",
            storage,
            "--allow-private",
            "--concurrency",
            str(threads),
            "--max-queue",
            str(max(100, clients * 2)),
            "--state-dir",
            str(work / f"serve-state-{prefix}"),
        ],
        env=env,
        cwd=work,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    base = f"http://127.0.0.1:{port}"
    sampler = TreeSampler(serve.pid)
    try:
        wait_consumers(f"{prefix}.null", 1)
        deadline = time.monotonic() + 60
        with httpx.Client(timeout=90) as http:
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if http.get(f"{base}/readyz").status_code == 200:
                        break
                if time.monotonic() > deadline or serve.poll() is not None:
                    raise SystemExit("serve did not become ready")
                time.sleep(0.2)
        sampler.start()
        time.sleep(2)
        idle = statistics.median(rss for _, rss in sampler.samples) / MIB
        statuses: list[int] = []
        lock = threading.Lock()
        numbers = iter(range(count))

        def client() -> None:
            with httpx.Client(timeout=90) as http:
                while True:
                    with lock:
                        n = next(numbers, None)
                    if n is None:
                        return
                    body = {"url": f"http://127.0.0.1:9/shot/{prefix}/{n}", "wait": 60}
                    status = http.post(f"{base}/v1/shots", json=body).status_code
                    with lock:
                        statuses.append(status)

        cpu_before = sampler.cpu_snapshot()
        started = time.monotonic()
        pool = [threading.Thread(target=client) for _ in range(clients)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
        elapsed = time.monotonic() - started
        cpu_after = sampler.cpu_snapshot()
    finally:
        sampler.stop()
        stop_process_group(serve)
        stop_process_group(worker)
        delete_queues(prefix, ["serve-serve"])
        with contextlib.suppress(Exception):
            import pika

            connection = pika.BlockingConnection(pika.URLParameters(BROKER))
            for suffix in ("", ".DQ", ".XQ"):
                connection.channel().queue_delete(f"{prefix}.null{suffix}")
            connection.close()
    ok = statuses.count(200)
    if ok != count:
        raise SystemExit(f"serve: {ok}/{count} answered 200 ({sorted(set(statuses))})")
    during = [rss for at, rss in sampler.samples if started <= at <= started + elapsed]
    return {
        "rate": count / elapsed,
        "cpu_ms": cpu_between(cpu_before, cpu_after) * 1000 / count,
        "cores": cpu_between(cpu_before, cpu_after) / elapsed,
        "idle": idle,
        "peak": max(rss for _, rss in sampler.samples) / MIB,
        "steady": statistics.median(during) / MIB if during else 0.0,
    }


@contextlib.contextmanager
def socket_port() -> Iterator[int]:
    """A free port on 127.0.0.1 (closed again before the service binds it)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


# -- the report ----------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", default="1,2,4", help="threads per worker process [1,2,4]")
    parser.add_argument("--urls", type=int, default=40, help="shots per timed batch [40]")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per thread count [3]")
    parser.add_argument("--null-urls", type=int, default=5000, help="null-engine requests [5000]")
    parser.add_argument("--null-processes", type=int, default=2, help="null workers [2]")
    parser.add_argument("--null-threads", type=int, default=8, help="threads per null worker [8]")
    parser.add_argument("--drain-page-ms", type=int, default=8000, help="slow page's delay [8000]")
    parser.add_argument("--serve-requests", type=int, default=1000, help="serve part [1000]")
    parser.add_argument("--serve-clients", type=int, default=16, help="serve part's clients [16]")
    parser.add_argument(
        "--parts",
        default=",".join(PARTS),
        help=f"which parts to run, of {','.join(PARTS)} [all]",
    )
    parser.add_argument("--serve-site", action="store_true", help=argparse.SUPPRESS)  # the child
    args = parser.parse_args()
    if args.serve_site:
        _serve_site()
        return
    thread_counts = [int(part) for part in args.threads.split(",") if part.strip()]
    parts = {part.strip() for part in args.parts.split(",") if part.strip()}
    if not parts <= set(PARTS):
        raise SystemExit(f"--parts: unknown {', '.join(sorted(parts - set(PARTS)))}")
    if not thread_counts or min(thread_counts) < 1 or args.urls < 1 or args.rounds < 1:
        raise SystemExit("--threads must list counts of 1 or more; --urls and --rounds >= 1")

    print("\n".join(describe()))
    print(f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    env = {**os.environ, "DISTSHOT_BROKER_URL": BROKER, "DISTSHOT_ALLOW_PRIVATE": "1"}
    with site_server() as base, tempfile.TemporaryDirectory(prefix="distshot-capacity-") as tmp:
        work = Path(tmp)
        if "workers" in parts:
            workers_part(args, thread_counts, base, work, env)
        if "null" in parts:
            null_part(args, work)
        if "drain" in parts:
            drain_part(args, max(thread_counts), work, env)
        if "serve" in parts:
            serve_part(args, work, env)


def workers_part(
    args: argparse.Namespace, thread_counts: list[int], base: str, work: Path, env: dict[str, str]
) -> None:
    print(
        f"\n1. one worker process (`distshot worker --processes 1 --threads T`), "
        f"{args.urls} shots of examples/site/ per batch, 1280x800 PNG, "
        f"{args.rounds} round(s) alternating T",
        flush=True,
    )
    results: dict[int, list[dict[str, float]]] = {t: [] for t in thread_counts}
    loads: list[tuple[float, float, float]] = [loadavg()]
    for number in range(args.rounds):
        for threads in thread_counts:
            row = worker_run(threads, args.urls, base, work, env)
            results[threads].append(row)
            print(
                f"  round {number + 1}, T={threads}: {row['rate']:.2f} shots/s, "
                f"{row['cores']:.2f} cores, peak {row['peak']:.0f} MiB, "
                f"steady {row['steady']:.0f} MiB; PSS peak {row['peak_pss']:.0f}, "
                f"steady {row['steady_pss']:.0f} MiB; shared memory files peak "
                f"{row['peak_shm']:.0f} MiB  [load {show_load(loadavg())}]",
                flush=True,
            )
    loads.append(loadavg())
    print(
        f"\nload average (1, 5, 15 min) before part 1: {show_load(loads[0])}; "
        f"after: {show_load(loads[1])}"
    )
    print(
        "\n| threads (jobs in flight) | shots/s | cores used | tree RSS peak (MiB) "
        "| tree RSS steady (MiB) | tree PSS peak / steady (MiB) | processes per core "
        "| processes per GiB (RSS peak / PSS peak) | shots/s per core "
        "| shared-memory files peak (MiB) |\n|---|---|---|---|---|---|---|---|---|---|"
    )
    for threads in thread_counts:
        rows = results[threads]
        med = {key: statistics.median(r[key] for r in rows) for key in rows[0]}
        rates = ", ".join(f"{r['rate']:.2f}" for r in rows)
        print(
            f"| {threads} | {med['rate']:.2f} ({rates}) | {med['cores']:.2f} "
            f"| {med['peak']:.0f} (max {max(r['peak'] for r in rows):.0f}) "
            f"| {med['steady']:.0f} | {med['peak_pss']:.0f} / {med['steady_pss']:.0f} "
            f"| {1 / med['cores']:.2f} "
            f"| {1024 / med['peak']:.2f} / {1024 / med['peak_pss']:.2f} "
            f"| {med['rate'] / med['cores']:.2f} | {med['peak_shm']:.0f} |"
        )


def null_part(args: argparse.Namespace, work: Path) -> None:
    print(
        f"\n3. broker/pipeline ceiling: null engine, {args.null_processes} worker "
        f"process(es) x {args.null_threads} threads, {args.null_urls} requests, "
        f"{args.rounds} round(s)",
        flush=True,
    )
    before_load = loadavg()
    broker = broker_process()
    rates, broker_ms = [], []
    for number in range(args.rounds):
        before = process_cpu(broker)
        result = pipeline_run(
            args.null_urls, args.null_processes, args.null_threads, work, pin_cpu="auto"
        )
        after = process_cpu(broker)
        rates.append(result["rate"])
        broker_ms.append((after - before) * 1000 / args.null_urls)
        print(
            f"  round {number + 1}: {result['rate']:.0f} requests/s, RabbitMQ "
            f"{broker_ms[-1]:.2f} CPU ms/request  [load {show_load(loadavg())}]",
            flush=True,
        )
    ms = statistics.median(broker_ms)
    print(
        f"  median {statistics.median(rates):.0f} requests/s "
        f"({', '.join(f'{r:.0f}' for r in rates)}); RabbitMQ {ms:.2f} CPU ms per "
        f"request = {1000 / ms:.0f} requests/s per broker core\n"
        f"  load average before: {show_load(before_load)}; after: {show_load(loadavg())}"
    )


def drain_part(args: argparse.Namespace, threads: int, work: Path, env: dict[str, str]) -> None:
    print(
        f"\n4. drain: SIGTERM to the worker's main process with {threads} jobs in "
        f"flight on pages that take {args.drain_page_ms} ms",
        flush=True,
    )
    before_load = loadavg()
    drain = drain_run(threads, args.drain_page_ms, work, env)
    print(
        f"  worker tree gone {drain['seconds']:.1f} s after SIGTERM (exit status "
        f"{drain['exit']:.0f}, {drain['left_behind']:.0f} processes left behind); "
        f"{drain['retried']:.0f}/{threads} interrupted jobs finished ok on the next "
        f"worker, none lost\n"
        f"  load average before: {show_load(before_load)}; after: {show_load(loadavg())}"
    )


def serve_part(args: argparse.Namespace, work: Path, env: dict[str, str]) -> None:
    print(
        f"\n5. `distshot serve --backend rabbitmq` (engine null, one null worker x 8 threads): "
        f"{args.serve_requests} POST /v1/shots (wait) from {args.serve_clients} clients, "
        f"{args.rounds} round(s)",
        flush=True,
    )
    before_load = loadavg()
    rows = []
    for number in range(args.rounds):
        row = serve_run(args.serve_requests, args.serve_clients, 8, work, env)
        rows.append(row)
        print(
            f"  round {number + 1}: {row['rate']:.0f} requests/s, service {row['cpu_ms']:.2f} "
            f"CPU ms/request ({row['cores']:.2f} cores), RSS idle {row['idle']:.0f} MiB, "
            f"peak {row['peak']:.0f} MiB, steady {row['steady']:.0f} MiB  "
            f"[load {show_load(loadavg())}]",
            flush=True,
        )
    med = {key: statistics.median(r[key] for r in rows) for key in rows[0]}
    print(
        f"  median {med['rate']:.0f} requests/s, {med['cpu_ms']:.2f} CPU ms/request "
        f"({med['cores']:.2f} cores), RSS idle {med['idle']:.0f} / peak {med['peak']:.0f} "
        f"(max {max(r['peak'] for r in rows):.0f}) / steady {med['steady']:.0f} MiB\n"
        f"  load average before: {show_load(before_load)}; after: {show_load(loadavg())}"
    )


if __name__ == "__main__":
    main()
