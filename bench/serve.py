"""Benchmark: `distshot serve` (the HTTP service, embedded backend): latency, throughput
against `distshot shoot`, overload, and memory with a deep queue.

The pages are the bundled example site (examples/site: index, gallery, long, i18n, fonts, as
listed in examples/urls-demo.txt), served on 127.0.0.1 by a threaded HTTP/1.1 server in a
child process: bench/corpus.py's ``Handler`` and ``Server`` (keep-alive, no request log)
pointed at examples/site, plus ``/slow?delay=S`` (a small page answered after S seconds) for
part 4. When Debian's python3.11-doc is installed (``bench/corpus.py --install``), its 60
corpus pages (bench/corpus.py's ``Corpus``) are measured in parts 1 and 2 as well; when it is
not, the script says so and skips them (it never installs anything). Every shot is 1280x800
PNG (distshot's defaults, sent explicitly as options) and its URL is made unique with
``?shot=...``, so no answer comes from a cache and every image is a file of its own.

The service: ``distshot serve --port P --allow-private --state-dir D --storage D/shots
--concurrency C --max-queue Q`` in a fresh state folder (a new session: its whole process
group is killed at the end, also on error or Ctrl-C), ready when GET /readyz says 200. Its
stderr goes to a log; lines other than the access log (and access lines with a 5xx status)
are shown at the end. Clients are httpx (one connection per client thread, no proxy), to
127.0.0.1 only. Percentiles are nearest-rank; latencies are measured by the client, from
sending the request to having read the whole answer.

1. Latency: one client at a time on the warm service (every page shot once first, untimed),
   ``--samples`` POST /v1/shots with ``wait: 60``, cycling through the pages; p50/p99/max,
   and the part of it the service does not spend in the capture (client latency minus the
   record's ``timings.total_ms``). 300 samples (100 until 2026-12-05): the p99 of 100 is
   their second largest, and part 3 divides by it; it moved from 177 to 270 ms between
   runs an hour apart.
2. Throughput: ``--shots`` shots (the pages cycled) by 1, 2, 4 and 8 clients, each
   sending its next ``wait: 60`` request when the previous is answered; a 429 is counted
   and sent again after its Retry-After, as HTTP clients' retry policies do (until
   2026-12-05: 50 ms later, which is still run once at 8 clients and reported, not
   judged: on this machine such clients' CPU and the service's refusals come out of the
   browsers' two cores, and the CPU both used is shown). The clients are one asyncio loop
   in a process of its own, as part 3's (``closed_loop``; until 2026-12-05 they were
   httpx threads in this process).
   Two rates, as bench/throughput.py: **wall** = shots / (last
   answer - first request), and **steady** = (images - 1) / (last image written - first
   image written), from the files' modification times (throughput.steady_rate). The same
   list goes to ``distshot shoot URLS -o DIR --allow-private --concurrency C``, timed whole
   (its process's life: Python start, browser launch, shutdown), with the rate distshot
   reports about itself (throughput.reported_rate), its steady rate (which leaves start-up
   and shutdown out) and its start-up (process start to first image). Saturation is 8
   clients: ``--pairs`` pairs of a shoot round and the service at 8 clients run back to
   back, in alternating order, and the ratio service/shoot at saturation is the median of
   the pairs' steady-over-steady ratios (until 2026-12-05: one 8-client level against the
   mean of two shoot rounds minutes apart). Levels 1, 2 and 4 run once, against the pairs'
   mean shoot.
3. Overload at 3x capacity, in two ways, each for ``--overload-seconds``:
   - *open*: requests arrive at 3x the service's capacity (its steady shots/s at saturation:
     part 2's 8-client figure, else measured first), as a Poisson process with a fixed seed,
     whatever became of the earlier ones (an open loop: a slow service does not slow the
     arrivals down, as it would slow clients that wait for their answers). The client is one
     asyncio loop on plain keep-alive sockets in a child process of its own, at nice -10 (it
     stands for clients on other machines), so that its own CPU, GIL and wake-ups stay out
     of the tail; latencies count from each request's scheduled arrival. The targets are
     judged here.
   - *storm*: 3 x (C + Q) client threads resend at once after a 429, ignoring Retry-After
     (clients misbehaving: about 600 requests a second here); with a probe in a process of
     its own (one request every 50 ms). 5xx and memory are judged here too.
   Before them, the latency at capacity without overload (C clients, each waiting for its
   answer: no queue) is measured as context. Reported for each: every answer's latency by
   status, p99 time to a 429 (target < 50 ms), p99 of the 200s against part 1's p99
   (target within 2x), 5xx answers (target 0), transport errors, and the service's process
   tree RSS (the serve process and its descendants, from /proc, every second): at the
   start, the largest, at the end (once the queue is empty again), and whether it grew
   during the flood (largest of the second half over the first's, bounded: ≤ 1.1, both
   leaving out the seconds of a handover: a recycled browser's successor up beside it, or
   a worn lane's replacement context, seen as renderers above the usual count; those are
   counted and their peak shown, and there may never be more than two browsers). Also
   the service's own time per answer (its access log: the middleware's clock, without
   uvicorn's parsing or the event loop's backlog), the 200s' capture time
   (``timings.total_ms``) and the serve process's CPU time.
4. Memory with a deep queue: a second service with ``--max-queue 20000 --drain-timeout 1``,
   one shot to launch its browser, then C shots of ``/slow?delay=90`` (their timeout raised
   to 150 s) so that every browser slot is busy loading a page; tree RSS (median of 3
   samples, 1 s apart; split by kind of process: python, the Playwright driver, Chromium)
   before the burst, then ``--queued`` POSTs with ``wait: 0`` from ``--queue-clients`` (50)
   threads, for ``/slow?delay=--slow-delay`` pages (the queue stays full), then the RSS
   again (the same captures in flight: the difference is what the queue costs, also per
   queued request), the service's own time per 202 (access log) and the queue depth it
   reports in /metrics. Then SIGTERM to the serve process: the time it takes to exit
   (SIGKILL to its process group if not within 30 s), and whether any Chromium process is
   left: in its process group or session, among the Chromium processes seen in its tree,
   or any process that carries this run's marker in its environment (bench/wedged.py's way).

Tree RSS sums each process's resident memory (statm), so pages shared between Chromium's
processes are counted once per process (as bench/memory.py and distshot's recycle trigger).

    .venv/bin/python bench/serve.py --quick          # a smoke run (~1 min)
    .venv/bin/python bench/serve.py                  # the full run (~4 min)
    .venv/bin/python bench/serve.py --json out.json  # the figures as JSON too (- : stdout)
    .venv/bin/python bench/serve.py --parts 3 --overload-seconds 30 --max-queue 2
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import math
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import parse_qs, unquote, urlsplit

import httpx
from corpus import DOC_PACKAGE, DOC_ROOT, Corpus, doc_version
from corpus import Handler as CorpusHandler
from corpus import Server as CorpusServer
from machine import describe, load
from memory import kind
from throughput import median, png_size, reported_rate, steady_rate
from wedged import MARKER, command_line, marked

from distshot.engines.chromium import process_tree

ROOT = Path(__file__).resolve().parent.parent
SITE = ROOT / "examples" / "site"
DEMO_URLS = ROOT / "examples" / "urls-demo.txt"
DISTSHOT = Path(sys.executable).with_name("distshot")
PAGE = os.sysconf("SC_PAGE_SIZE")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
MIB = 1024 * 1024
WIDTH, HEIGHT = 1280, 800
OPTIONS = {"width": WIDTH, "height": HEIGHT, "format": "png"}
LEVELS = (1, 2, 4, 8)
WAIT = 60
STOP_GRACE = 30.0
#: Part 3: the open-loop client's nice value (it stands for clients on other machines).
CLIENT_NICE = -10
#: Part 4: seconds the pages that keep every browser slot busy take to answer.
HOLD = 90
#: The service's access log: "distshot.access: POST /v1/shots 429 1.2ms client=127.0.0.1".
ACCESS_LINE = re.compile(r"distshot\.access: POST /v1/shots (\d{3}) ([\d.]+)ms")

#: Every child process this script started (page server, services, shoot): killed at exit.
CHILDREN: list[subprocess.Popen[bytes]] = []
#: This run's marker, in the environment of every service (and so of its browsers).
TOKEN = uuid.uuid4().hex[:12]


# -- output ----------------------------------------------------------------------------------

OUT: TextIO = sys.stdout


def say(text: str = "") -> None:
    print(text, file=OUT, flush=True)


def progress(text: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def pct(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.1f}"


def num(value: float | None, digits: int = 2, suffix: str = "") -> str:
    return "-" if value is None else f"{value:.{digits}f}{suffix}"


def met(ok: bool | None) -> str:
    return "-" if ok is None else ("yes" if ok else "**no**")


# -- processes -------------------------------------------------------------------------------


def start_child(command: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    """A child in a session (and process group) of its own, remembered for the cleanup."""
    child = subprocess.Popen(command, start_new_session=True, **kwargs)
    CHILDREN.append(child)
    return child


def kill_group(child: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        child.wait(timeout=10)


def cleanup() -> list[str]:
    """SIGKILL every child's process group and anything carrying the marker; what was left."""
    left = []
    for child in CHILDREN:
        if child.poll() is None:
            left.append(f"{child.pid} {command_line(child.pid)}")
        kill_group(child)
    for pid in marked(TOKEN):
        left.append(f"{pid} {command_line(pid)}")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return left


def proc_stat(pid: int) -> tuple[str, int, int, int] | None:
    """(state, ppid, pgrp, session) of a process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[1]), int(fields[2]), int(fields[3])


def rss(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def group_members(pgid: int) -> list[int]:
    """Live processes whose process group or session is ``pgid`` (a session leader's pid)."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            stat = proc_stat(int(entry.name))
            if stat and stat[0] != "Z" and pgid in (stat[2], stat[3]):
                found.append(int(entry.name))
    return found


def is_chromium(pid: int) -> bool:
    return "chrom" in command_line(pid)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# -- the page server -------------------------------------------------------------------------


class PageHandler(CorpusHandler):
    """bench/corpus.py's handler on examples/site, plus ``/slow?delay=S``."""

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if parts.path != "/slow":
            super().do_GET()
            return
        delay = float(parse_qs(parts.query).get("delay", ["3"])[0])
        time.sleep(min(delay, 120.0))
        body = b"<!doctype html><title>slow</title><h1>A slow page</h1>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with contextlib.suppress(OSError):
            self.wfile.write(body)


def serve_pages(root: str) -> None:
    """The child: serve ``root`` until the parent closes our stdin (or kills us)."""
    handler: Callable[..., BaseHTTPRequestHandler] = functools.partial(PageHandler, directory=root)
    server = CorpusServer(("127.0.0.1", 0), handler)
    print(f"http://127.0.0.1:{server.server_address[1]}", flush=True)

    def exit_on_eof() -> None:
        sys.stdin.read()
        os._exit(0)

    threading.Thread(target=exit_on_eof, daemon=True).start()
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


@contextlib.contextmanager
def page_server() -> Iterator[str]:
    child = start_child(
        [sys.executable, __file__, "--page-server", str(SITE)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert child.stdout is not None
    base = child.stdout.readline().decode().strip()
    if not base.startswith("http://127.0.0.1:"):
        kill_group(child)
        raise SystemExit("the page server did not start")
    try:
        yield base
    finally:
        kill_group(child)
        for stream in (child.stdin, child.stdout):
            if stream is not None:
                stream.close()


def demo_pages(base: str) -> list[str]:
    lines = DEMO_URLS.read_text(encoding="utf-8").splitlines()
    return [line.replace("{base}", base) for line in lines if line.startswith("{base}")]


def unique(urls: list[str], tag: str, count: int) -> list[str]:
    """``count`` URLs: ``urls`` cycled, each made unique with ?shot=TAG-N (a page set's
    name may hold spaces: they become dashes)."""
    tag = re.sub(r"[^A-Za-z0-9._-]+", "-", tag)
    return [f"{urls[n % len(urls)]}?shot={tag}-{n}" for n in range(count)]


# -- the service -----------------------------------------------------------------------------


class Service:
    """One `distshot serve` in a fresh state folder, in a process group of its own."""

    def __init__(
        self,
        work: Path,
        name: str,
        concurrency: int,
        max_queue: int,
        drain: float | None = None,
        extra: list[str] | None = None,
    ) -> None:
        self.name = name
        self.state = work / name
        self.state.mkdir(parents=True)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = work / f"{name}.log"
        command = [
            str(DISTSHOT),
            "serve",
            "--port",
            str(self.port),
            "--allow-private",
            "--state-dir",
            str(self.state),
            "--storage",
            str(self.state / "shots"),
            "--concurrency",
            str(concurrency),
            "--max-queue",
            str(max_queue),
        ]
        if drain is not None:
            command += ["--drain-timeout", str(drain)]
        command += extra or []
        self.command = command
        with open(self.log_path, "wb") as log:
            self.process = start_child(
                command,
                cwd=work,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, MARKER: TOKEN},
            )
        self.pid = self.process.pid

    def wait_ready(self, timeout: float = 180) -> float:
        started = time.perf_counter()
        with httpx.Client(trust_env=False, timeout=5) as client:
            while time.perf_counter() - started < timeout:
                if self.process.poll() is not None:
                    raise SystemExit(
                        f"{self.name} exited {self.process.returncode}:\n{self.tail()}"
                    )
                with contextlib.suppress(httpx.TransportError):
                    if client.get(f"{self.base}/readyz").status_code == 200:
                        return time.perf_counter() - started
                time.sleep(0.2)
        raise SystemExit(f"{self.name} not ready within {timeout:.0f}s:\n{self.tail()}")

    def tail(self, lines: int = 20) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def metrics(self) -> dict[str, float]:
        with httpx.Client(trust_env=False, timeout=30) as client:
            text = client.get(f"{self.base}/metrics").text
        values = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                with contextlib.suppress(ValueError):
                    values[name] = float(value)
        return values

    def wait_idle(self, timeout: float = 300) -> bool:
        """Until nothing is queued or running (True), or ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            values = self.metrics()
            if not values.get("distshot_queue_depth") and not values.get("distshot_in_flight"):
                return True
            time.sleep(0.5)
        return False

    def stop(self, grace: float = STOP_GRACE) -> tuple[float, bool]:
        """SIGTERM the serve process; SIGKILL its group if it has not exited within
        ``grace``. (seconds to exit, whether it had to be killed)"""
        started = time.perf_counter()
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=grace)
            killed = False
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            self.process.wait()
            killed = True
        return time.perf_counter() - started, killed

    def log_size(self) -> int:
        return self.log_path.stat().st_size

    def access_times(self, start: int, end: int | None = None) -> dict[str, list[float]]:
        """Seconds the service itself took per POST /v1/shots, by status, from its access
        log lines between byte offsets ``start`` and ``end`` (the middleware's own clock)."""
        with open(self.log_path, "rb") as log:
            log.seek(start)
            data = log.read() if end is None else log.read(end - start)
        times: dict[str, list[float]] = {}
        for match in ACCESS_LINE.finditer(data.decode(errors="replace")):
            times.setdefault(match[1], []).append(float(match[2]) / 1000)
        return times

    def log_findings(self, limit: int = 40) -> list[str]:
        """Log lines worth a look: everything but the access log and the routine lines, and
        access lines with a 5xx status."""
        routine = ("draining:", "Started server", "Waiting for application", "Uvicorn running")
        found = []
        with contextlib.suppress(OSError), open(self.log_path, errors="replace") as log:
            for line in log:
                line = line.rstrip("\n")
                if "distshot.access:" in line:
                    fields = line.split("distshot.access:", 1)[1].split()
                    if len(fields) > 2 and fields[2].startswith("5"):
                        found.append(line)
                elif line.strip() and not any(text in line for text in routine):
                    found.append(line)
        if len(found) > limit:
            found = [
                *found[: limit // 2],
                f"... {len(found) - limit} more ...",
                *found[-limit // 2 :],
            ]
        return found


@dataclass
class Sample:
    at: float  # seconds since the sampler was made
    rss: int  # bytes, the serve process and its descendants
    processes: int
    parts: dict[str, int]  # bytes by kind: python, driver, chromium, other (memory.kind)
    detached: int  # bytes of marked processes outside the tree (Chromium's crashpad handlers)
    browsers: int = 0  # Chromium processes whose parent is not Chromium: browsers running
    renderers: int = 0  # Chromium renderer processes: one per lane (browser context), and
    # one more for a second or so while a worn lane's replacement opens beside it


class RssSampler:
    """The service's tree RSS every ``interval`` seconds, on a thread; also remembers every
    Chromium process seen in the tree (pid, start time) to check later that none survives."""

    def __init__(self, root: int, interval: float = 1.0) -> None:
        self.root = root
        self.interval = interval
        self.samples: list[Sample] = []
        self.chromium: set[tuple[int, str]] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._started = time.monotonic()
        self.origin = self._started  # a sample's ``at`` counts from here (monotonic clock)

    def start(self) -> RssSampler:
        self._thread.start()
        return self

    def sample(self) -> Sample:
        pids = process_tree(self.root)
        parts: dict[str, int] = {}
        kinds: dict[int, str] = {}
        for pid in pids:
            kinds[pid] = kind(process_name(pid))
            parts[kinds[pid]] = parts.get(kinds[pid], 0) + rss(pid)
            if kinds[pid] == "chromium":
                self.chromium.add((pid, start_time(pid)))
        browsers = renderers = 0
        for pid, what in kinds.items():
            stat = proc_stat(pid) if what == "chromium" else None
            browsers += stat is not None and kinds.get(stat[1]) != "chromium"
            renderers += what == "chromium" and is_renderer(pid)
        tree = set(pids)
        detached = sum(rss(pid) for pid in marked(TOKEN) if pid not in tree)
        sample = Sample(
            time.monotonic() - self._started,
            sum(parts.values()),
            len(pids),
            parts,
            detached,
            browsers,
            renderers,
        )
        self.samples.append(sample)
        return sample

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict[str, Any]:
        if not self.samples:
            return {"samples": 0}
        first, last = self.samples[0], self.samples[-1]
        peak = max(self.samples, key=lambda s: s.rss)
        return {
            "samples": len(self.samples),
            "start_mib": first.rss / MIB,
            "max_mib": peak.rss / MIB,
            "end_mib": last.rss / MIB,
            "max_processes": max(s.processes for s in self.samples),
            "parts_mib": {
                name: {k: v / MIB for k, v in sample.parts.items()}
                for name, sample in (("start", first), ("max", peak), ("end", last))
            },
            "max_detached_mib": max(s.detached for s in self.samples) / MIB,
        }

    def survivors(self) -> list[str]:
        """Chromium processes seen in the tree that are still alive (the same process: the
        start time matches)."""
        return [
            f"{pid} {command_line(pid)}"
            for pid, started in sorted(self.chromium)
            if started and start_time(pid) == started
        ]


def is_renderer(pid: int) -> bool:
    try:
        return b"--type=renderer" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def process_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def parts_text(parts: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:.0f}" for name, value in sorted(parts.items()))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def start_time(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


# -- clients ---------------------------------------------------------------------------------


@dataclass
class Answer:
    sent: float  # perf_counter at sending
    latency: float  # seconds to the whole answer
    status: str  # HTTP status, or the transport error's type
    record: dict[str, Any] | None = None
    retry_after: str | None = None


def client() -> httpx.Client:
    return httpx.Client(trust_env=False, timeout=httpx.Timeout(WAIT + 60, connect=30))


def post(
    http: httpx.Client, base: str, url: str, wait: float, options: dict[str, Any] | None = None
) -> Answer:
    body = {"url": url, "options": options or OPTIONS, "wait": wait}
    sent = time.perf_counter()
    try:
        response = http.post(f"{base}/v1/shots", json=body)
    except httpx.TransportError as exc:
        return Answer(sent, time.perf_counter() - sent, type(exc).__name__)
    latency = time.perf_counter() - sent
    record = None
    if response.status_code in (200, 202):
        with contextlib.suppress(ValueError):
            record = response.json()
    return Answer(
        sent, latency, str(response.status_code), record, response.headers.get("retry-after")
    )


def image_path(record: dict[str, Any] | None) -> Path | None:
    location = (record or {}).get("location")
    if not isinstance(location, str) or not location.startswith("file://"):
        return None
    return Path(unquote(urlsplit(location).path))


def good_image(record: dict[str, Any] | None) -> bool:
    path = image_path(record)
    return (
        record is not None
        and record.get("status") == "ok"
        and path is not None
        and path.exists()
        and png_size(path) == (WIDTH, HEIGHT)
    )


def failures(answers: list[Answer], good: list[Answer]) -> list[str]:
    """The first few answers that are not a good image: status and error."""
    counted = {id(a) for a in good}
    bad = [a for a in answers if id(a) not in counted]
    return [f"{a.status} {(a.record or {}).get('error')}" for a in bad[:3]]


# -- 1. latency ------------------------------------------------------------------------------


def latency_part(service: Service, name: str, pages: list[str], samples: int) -> dict[str, Any]:
    with client() as http:
        for url in unique(pages, f"warm-{name}", len(pages)):
            answer = post(http, service.base, url, WAIT)
            if answer.status != "200" or not good_image(answer.record):
                raise SystemExit(f"warm-up shot of {url} failed: {answer.status} {answer.record}")
        answers = [post(http, service.base, url, WAIT) for url in unique(pages, name, samples)]
    good = [a for a in answers if a.status == "200" and good_image(a.record)]
    latencies = [a.latency for a in good]
    inside = [
        a.latency - a.record["timings"]["total_ms"] / 1000
        for a in good
        if a.record and (a.record.get("timings") or {}).get("total_ms") is not None
    ]
    captures = [
        a.record["timings"]["total_ms"] / 1000
        for a in good
        if a.record and (a.record.get("timings") or {}).get("total_ms") is not None
    ]
    return {
        "pages": name,
        "page_count": len(pages),
        "samples": len(answers),
        "ok": len(good),
        "failures": failures(answers, good),
        "p50": pct(latencies, 50),
        "p99": pct(latencies, 99),
        "max": max(latencies, default=None),
        "capture_p50": pct(captures, 50),
        "overhead_p50": pct(inside, 50),
        "overhead_p99": pct(inside, 99),
    }


def latency_table(rows: list[dict[str, Any]]) -> None:
    say(
        "\n| pages | samples | ok | p50 ms | p99 ms | max ms | capture p50 ms (record) | "
        "not capture p50 / p99 ms |\n|---|---|---|---|---|---|---|---|"
    )
    for row in rows:
        say(
            f"| {row['pages']} ({row['page_count']}) | {row['samples']} | {row['ok']} | "
            f"{ms(row['p50'])} | {ms(row['p99'])} | {ms(row['max'])} | {ms(row['capture_p50'])} | "
            f"{ms(row['overhead_p50'])} / {ms(row['overhead_p99'])} |"
        )
        for failure in row["failures"]:
            say(f"|  failed: {failure} | | | | | | | |")


# -- 2. throughput ---------------------------------------------------------------------------


def service_level(
    service: Service, urls: list[str], clients: int, patient: bool = True
) -> dict[str, Any]:
    """``urls`` shot by ``clients`` clients, each waiting for its answer; 429s retried after
    their Retry-After (``patient``) or 50 ms later. Also the CPU seconds the clients and the
    service's API process used: on this machine both come out of the browsers' two cores.

    The clients are ``closed_loop``'s, in a process of their own (``--closed-loop``)."""
    patience = "patient" if patient else "impatient"
    api_cpu = cpu_seconds(service.pid)
    child = start_child(
        [sys.executable, __file__, "--closed-loop", service.base, str(clients), patience, *urls],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
    )
    try:
        out, _ = child.communicate(timeout=len(urls) * (WAIT + 10))
    except subprocess.TimeoutExpired:
        kill_group(child)
        raise SystemExit("throughput: the clients did not finish") from None
    found = json.loads(out)
    answers = [Answer(*row) for row in found["answers"]]
    retried, wall = [float(t) for t in found["retried"]], float(found["wall"])
    good = [a for a in answers if a.status == "200" and good_image(a.record)]
    images = [p for p in (image_path(a.record) for a in good) if p is not None]
    return {
        "runner": "serve" if patient else "serve, clients resend after 50 ms",
        "clients": clients,
        "patient": patient,
        "shots": len(urls),
        "ok": len(good),
        "client_cpu_s": float(found["cpu"]),
        "api_cpu_s": cpu_seconds(service.pid) - api_cpu,
        "retried_429": len(retried),
        "retried_429_at_s": [round(at, 3) for at in retried[:10]],
        "wall_s": wall,
        "wall_rate": len(good) / wall if wall else None,
        "steady_rate": steady_rate(images) if len(images) == len(urls) else None,
        "p50": pct([a.latency for a in good], 50),
        "p99": pct([a.latency for a in good], 99),
        "problems": failures(answers, good),
    }


def shoot_run(work: Path, urls: list[str], concurrency: int, label: str) -> dict[str, Any]:
    """`distshot shoot URLS -o DIR --allow-private --concurrency C`, timed whole."""
    urls_file = work / f"urls-{label}.txt"
    urls_file.write_text("".join(f"{url}\n" for url in urls))
    out = work / f"shoot-{label}"
    command = [
        str(DISTSHOT),
        "shoot",
        str(urls_file),
        "-o",
        str(out),
        "--allow-private",
        "--concurrency",
        str(concurrency),
    ]
    began = time.time()
    started = time.perf_counter()
    child = start_child(command, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _, stderr = child.communicate(timeout=1800)
    except subprocess.TimeoutExpired:
        kill_group(child)
        stderr = b"timed out after 1800 s"
    wall = time.perf_counter() - started
    text = stderr.decode(errors="replace")
    images = [p for p in out.rglob("*.png") if not p.name.startswith(".")]
    good = [p for p in images if png_size(p) == (WIDTH, HEIGHT)]
    records = []
    for manifest in out.rglob("manifest.jsonl"):
        records += [json.loads(line) for line in manifest.read_text().splitlines() if line]
    ok = sum(r.get("status") == "ok" for r in records)
    problems = []
    if child.returncode != 0:
        lines = [line for line in text.splitlines() if line.strip()]
        problems.append(f"exit {child.returncode}: {lines[-1][:200] if lines else ''}")
    if len(good) != len(urls) or ok != len(urls):
        problems.append(f"{len(good)} 1280x800 PNGs, {ok} ok records for {len(urls)} URLs")
    first = min((p.stat().st_mtime for p in good), default=None)
    result = {
        "runner": f"shoot {label}",
        "clients": concurrency,
        "shots": len(urls),
        "ok": ok,
        "wall_s": wall,
        "wall_rate": ok / wall if wall else None,
        "reported_rate": reported_rate(text),
        "steady_rate": steady_rate(good) if not problems else None,
        "startup_s": first - began if first is not None else None,
        "command": " ".join(command),
        "problems": problems,
    }
    shutil.rmtree(out, ignore_errors=True)
    return result


def mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def throughput_part(
    service: Service, work: Path, name: str, pages: list[str], shots: int, args: argparse.Namespace
) -> dict[str, Any]:
    """The levels below saturation once each, then ``--pairs`` pairs of a ``distshot shoot``
    round and the service at saturation, back to back, in alternating order. A pair's two
    runs share the machine's state of that minute, which one level against two shoot rounds
    minutes apart did not (the runs' spread was 0.15 either way, 2026-12-05); the ratio at
    saturation is the median of the pairs' ratios."""
    rows: list[dict[str, Any]] = []
    for clients in LEVELS[:-1]:
        progress(f"{name}: service, {clients} clients (load {load()})")
        rows.append(service_level(service, unique(pages, f"tput{clients}-{name}", shots), clients))
    pairs: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for pair in range(1, args.pairs + 1):
        runs: dict[str, dict[str, Any]] = {}
        order = ("shoot", "serve") if pair % 2 else ("serve", "shoot")
        for runner in order:
            progress(f"{name}: pair {pair}, {runner} (load {load()})")
            if runner == "shoot":
                urls = unique(pages, f"shoot{pair}-{name}", shots)
                runs[runner] = shoot_run(work, urls, args.concurrency, str(pair))
            else:
                urls = unique(pages, f"tput{LEVELS[-1]}-{pair}-{name}", shots)
                runs[runner] = service_level(service, urls, LEVELS[-1])
            runs[runner]["pair"] = pair
            rows.append(runs[runner])
        runs["serve"]["ratio_steady"] = ratio(runs["serve"], runs["shoot"], "steady_rate")
        runs["serve"]["ratio_wall"] = ratio(runs["serve"], runs["shoot"], "wall_rate")
        pairs.append((runs["shoot"], runs["serve"]))
    # Context, not judged: clients that resend a refusal 50 ms later, ignoring Retry-After,
    # on the same two cores as the browsers (until 2026-12-05, part 2's only clients).
    progress(f"{name}: service, {LEVELS[-1]} clients resending after 50 ms (load {load()})")
    urls = unique(pages, f"tput{LEVELS[-1]}-impatient-{name}", shots)
    rows.append(service_level(service, urls, LEVELS[-1], patient=False))
    shoot_steady = mean([s["steady_rate"] for s, _ in pairs if s["steady_rate"]])
    shoot_wall = mean([s["wall_rate"] for s, _ in pairs if s["wall_rate"] and not s["problems"]])
    # The other levels are set against the pairs' mean shoot.
    shoot: dict[str, Any] = {"steady_rate": shoot_steady, "wall_rate": shoot_wall, "problems": []}
    for row in rows:
        if row["runner"].startswith("serve") and "pair" not in row:
            row["ratio_steady"] = ratio(row, shoot, "steady_rate")
            row["ratio_wall"] = ratio(row, shoot, "wall_rate")
    steady = [r["ratio_steady"] for _, r in pairs if r["ratio_steady"] is not None]
    wall = [r["ratio_wall"] for _, r in pairs if r["ratio_wall"] is not None]
    return {
        "pages": name,
        "rows": rows,
        "shoot_steady_mean": shoot_steady,
        "shoot_wall_mean": shoot_wall,
        "saturation_clients": LEVELS[-1],
        "saturated_steady_rate": median([r["steady_rate"] for _, r in pairs if r["steady_rate"]]),
        # A pair with a failed run has no ratio: it is left out, and its problems shown.
        "pair_ratios": steady,
        "ratio_at_saturation": median(steady) if len(steady) == len(pairs) else None,
        "ratio_at_saturation_wall": median(wall),
    }


def ratio(serve: dict[str, Any], shoot: dict[str, Any], key: str) -> float | None:
    if not serve[key] or not shoot[key] or shoot["problems"]:
        return None
    return float(serve[key] / shoot[key])


def retried_cell(row: dict[str, Any]) -> str:
    if "retried_429" not in row:
        return "-"
    at = row["retried_429_at_s"]
    return f"{row['retried_429']}" + (f" (at {', '.join(f'{t:.2f}' for t in at)} s)" if at else "")


def throughput_table(part: dict[str, Any]) -> None:
    say(
        f"\n{part['pages']}: | runner | clients / --concurrency | shots | ok | 429 retried | "
        "CPU s: clients / API | wall s | shots/s wall | shots/s steady | distshot says | "
        "start-up s | serve/shoot steady (wall) |"
    )
    say("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for row in part["rows"]:
        ratio = "-"
        cpu = "-"
        if row["runner"].startswith("serve"):
            cpu = f"{row['client_cpu_s']:.1f} / {row['api_cpu_s']:.1f}"
            ratio = f"{num(row.get('ratio_steady'), 2, 'x')} ({num(row.get('ratio_wall'), 2, 'x')})"
        runner = row["runner"] + (f", pair {row['pair']}" if "pair" in row else "")
        say(
            f"| {runner} | {row['clients']} | {row['shots']} | {row['ok']} | "
            f"{retried_cell(row)} | {cpu} | {num(row['wall_s'], 1)} | "
            f"{num(row['wall_rate'])} | {num(row['steady_rate'])} | "
            f"{num(row.get('reported_rate'))} | {num(row.get('startup_s'), 1)} | {ratio} |"
        )
        for problem in row["problems"]:
            say(f"|  problem: {problem} | | | | | | | | | | | |")
    pairs = ", ".join(f"{r:.2f}x" for r in part["pair_ratios"])
    say(
        f"\nshoot (mean of {sum(r['runner'].startswith('shoot') for r in part['rows'])} rounds): "
        f"{num(part['shoot_steady_mean'])} shots/s steady, {num(part['shoot_wall_mean'])} "
        f"wall; serve at saturation ({part['saturation_clients']} clients) / shoot, the "
        f"median of the pairs ({pairs}): {num(part['ratio_at_saturation'], 2, 'x')} steady, "
        f"{num(part['ratio_at_saturation_wall'], 2, 'x')} wall (serve) over wall (shoot, "
        "start-up included); the levels below saturation are against the pairs' mean shoot"
    )


# -- 3. overload -----------------------------------------------------------------------------


async def raw_post(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[str, dict[str, str], bytes]:
    """One HTTP/1.1 exchange on a keep-alive connection: the status, headers and a
    Content-Length body (all the service answers with here)."""
    writer.write(request)
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionResetError("the server closed the connection")
    headers: dict[str, str] = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    payload = await reader.readexactly(int(headers.get("content-length", "0")))
    return status_line.split()[1].decode(), headers, payload


def open_loop(
    base: str, pages: list[str], rate: float, duration: float, floor: str | None = None
) -> tuple[list[Answer], int, list[float]]:
    """Requests arriving at ``rate`` per second (Poisson, a fixed seed) for ``duration``
    seconds, each sent at its time whatever became of the earlier ones: the load does not
    ease off when the service slows down, as it would with clients that wait for their
    answers. A latency counts from the request's scheduled arrival, so a request the client
    could not send on time is not flattered. Returns the answers and how many went out more
    than 10 ms late.

    One asyncio loop on plain keep-alive sockets (a pool of idle connections), in a child
    process of its own (``--open-loop``): client threads convoy on their GIL (a thread
    woken while ten others parse their answers waits their turns) and httpx costs about
    half a millisecond of CPU a request; either put the load generator's own delays into
    the tail on a machine this small. ``floor``: a do-nothing server (``floor_server``)
    probed every 50 ms meanwhile, the same request on a connection of its own; its
    latencies are returned too."""
    parts = urlsplit(base)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    rng = random.Random(16)
    arrivals: list[float] = []
    at = rng.expovariate(rate)
    while at < duration:
        arrivals.append(at)
        at += rng.expovariate(rate)
    answers: list[Answer] = []
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    late = 0

    async def one(n: int, due: float) -> None:
        nonlocal late
        body = {"url": f"{pages[n % len(pages)]}?shot=overload-{n}", "wait": WAIT}
        data = json.dumps(body | {"options": OPTIONS}).encode()
        request = (
            f"POST /v1/shots HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json"
            f"\r\nContent-Length: {len(data)}\r\n\r\n"
        ).encode() + data
        if time.perf_counter() - due > 0.010:
            late += 1
        conn = idle.pop() if idle else await asyncio.open_connection(host, port)
        try:
            status, headers, payload = await raw_post(*conn, request)
        except (OSError, asyncio.IncompleteReadError) as exc:
            conn[1].close()
            answers.append(Answer(due, time.perf_counter() - due, type(exc).__name__))
            return
        done = time.perf_counter()
        idle.append(conn)
        record = None
        if status == "200":
            with contextlib.suppress(ValueError):
                full = json.loads(payload)
                record = {
                    "status": full.get("status"),
                    "timings": {"total_ms": (full.get("timings") or {}).get("total_ms")},
                }
        answers.append(Answer(due, done - due, status, record, headers.get("retry-after")))

    floor_times: list[float] = []

    async def probe_floor(until: float) -> None:
        assert floor is not None
        address = urlsplit(floor)
        conn = await asyncio.open_connection(address.hostname, address.port)
        data = json.dumps({"url": pages[0], "wait": WAIT, "options": OPTIONS}).encode()
        request = (
            f"POST /v1/shots HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json"
            f"\r\nContent-Length: {len(data)}\r\n\r\n"
        ).encode() + data
        while time.perf_counter() < until:
            sent = time.perf_counter()
            await raw_post(*conn, request)
            floor_times.append(time.perf_counter() - sent)
            await asyncio.sleep(0.05)
        conn[1].close()

    async def main() -> None:
        tasks = []
        started = time.perf_counter()
        if floor:
            tasks.append(asyncio.create_task(probe_floor(started + duration)))
        for n, offset in enumerate(arrivals):
            pause = started + offset - time.perf_counter()
            if pause > 0:
                await asyncio.sleep(pause)
            tasks.append(asyncio.create_task(one(n, started + offset)))
        await asyncio.gather(*tasks)
        for _, writer in idle:
            writer.close()

    asyncio.run(main())
    return answers, late, floor_times


def closed_loop(
    base: str, urls: list[str], clients: int, patient: bool = True
) -> tuple[list[Answer], list[float], float]:
    """``urls`` shot by ``clients`` clients, each sending its next request when the previous
    one is answered; a refused one (429) is sent again after its Retry-After, as HTTP
    clients' retry policies do (urllib3's ``Retry``, ``respect_retry_after_header``), or,
    not ``patient``, 50 ms later (Retry-After ignored: the client wants its shots now).
    Returns the answers, when each 429 came (seconds after the start) and the seconds from
    the first request to the last answer.

    Like ``open_loop``'s: one asyncio loop on plain keep-alive sockets (a connection per
    client), in a child process of its own at nice -10. The clients stand for programs on
    other machines; httpx threads in the bench's own process cost this 2-core machine
    about half a millisecond of CPU a request beside the browsers, which ``distshot shoot``
    (no client) never paid, and 8 clients resending refusals make a thousand of them a
    level (docs/benchmarks.md, 2026-12-05)."""
    parts = urlsplit(base)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    todo = list(reversed(urls))
    answers: list[Answer] = []
    retried: list[float] = []
    started = time.perf_counter()

    async def one_client() -> None:
        conn = await asyncio.open_connection(host, port)
        try:
            while todo:
                url = todo.pop()
                data = json.dumps({"url": url, "options": OPTIONS, "wait": WAIT}).encode()
                request = (
                    f"POST /v1/shots HTTP/1.1\r\nHost: {host}\r\nContent-Type: "
                    f"application/json\r\nContent-Length: {len(data)}\r\n\r\n"
                ).encode() + data
                sent = time.perf_counter()
                try:
                    status, headers, payload = await raw_post(*conn, request)
                except (OSError, asyncio.IncompleteReadError) as exc:
                    answers.append(Answer(sent, time.perf_counter() - sent, type(exc).__name__))
                    conn[1].close()
                    conn = await asyncio.open_connection(host, port)
                    continue
                latency = time.perf_counter() - sent
                if status == "429":
                    retried.append(time.perf_counter() - started)
                    todo.append(url)
                    await asyncio.sleep(retry_pause(headers, patient))
                    continue
                record = None
                if status in ("200", "202"):
                    with contextlib.suppress(ValueError):
                        record = json.loads(payload)
                answers.append(Answer(sent, latency, status, record, headers.get("retry-after")))
        finally:
            conn[1].close()

    async def main() -> None:
        await asyncio.gather(*(one_client() for _ in range(clients)))

    asyncio.run(main())
    return answers, retried, time.perf_counter() - started


def retry_pause(headers: dict[str, str], patient: bool) -> float:
    """Seconds before a refused request is sent again."""
    if not patient:
        return 0.05
    try:
        return max(0.0, float(headers.get("retry-after", "1")))
    except ValueError:
        return 1.0


def closed_loop_child(base: str, clients: int, patient: bool, urls: list[str]) -> None:
    with contextlib.suppress(OSError):  # as root; otherwise at the bench's own priority
        os.setpriority(os.PRIO_PROCESS, 0, CLIENT_NICE)
    answers, retried, wall = closed_loop(base, urls, clients, patient)
    rows = [[a.sent, a.latency, a.status, a.record, a.retry_after] for a in answers]
    found = {"answers": rows, "retried": retried, "wall": wall, "cpu": time.process_time()}
    print(json.dumps(found), flush=True)


def floor_server(port: int) -> None:
    """The child behind ``--floor-server``: uvicorn (as the service runs it: h11, asyncio)
    with an app that does nothing but read the body and answer 429. Probed beside the
    service during the open-loop flood, it shows what the machine itself adds to an
    answer's time while Chromium keeps both cores busy: the floor under any Python service
    here."""
    import uvicorn

    body = b'{"error": {"type": "Overloaded", "message": "floor"}}'

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", b"1"),
        ]
        await send({"type": "http.response.start", "status": 429, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        access_log=False,
        log_level="warning",
        lifespan="off",
        ws="none",
        http="h11",
        loop="asyncio",
        timeout_keep_alive=75,
    )


def open_loop_child(base: str, floor: str, rate: float, duration: float, pages: list[str]) -> None:
    # The load generator stands for clients on other machines: above the service's own
    # processes and its browsers in the CPU queue, so that its wake-ups are on time (as
    # root; otherwise it says so).
    try:
        os.setpriority(os.PRIO_PROCESS, 0, CLIENT_NICE)
        nice = CLIENT_NICE
    except OSError:
        nice = os.getpriority(os.PRIO_PROCESS, 0)
    answers, late, floor_times = open_loop(base, pages, rate, duration, floor)
    rows = [[a.sent, a.latency, a.status, a.record, a.retry_after] for a in answers]
    found = {"late": late, "nice": nice, "answers": rows, "floor": floor_times}
    print(json.dumps(found), flush=True)


def run_open_loop(
    base: str, pages: list[str], rate: float, duration: float
) -> tuple[list[Answer], int, list[float]]:
    port = free_port()
    floor = start_child(
        [sys.executable, __file__, "--floor-server", str(port)], stdin=subprocess.DEVNULL
    )
    try:
        floor_base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.post(floor_base, content=b"{}", trust_env=False, timeout=2)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise SystemExit("overload: the floor server did not start") from None
                time.sleep(0.2)
        command = [sys.executable, __file__, "--open-loop", base, floor_base]
        child = start_child(
            [*command, str(rate), str(duration), *pages],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
        )
        try:
            out, _ = child.communicate(timeout=duration + WAIT + 120)
        except subprocess.TimeoutExpired:
            kill_group(child)
            raise SystemExit("overload: the open-loop client did not finish") from None
    finally:
        kill_group(floor)
    found = json.loads(out)
    if found["nice"] != CLIENT_NICE:
        say(f"- the open-loop client could not raise its priority (nice {found['nice']})")
    answers = [Answer(*row) for row in found["answers"]]
    return answers, int(found["late"]), [float(t) for t in found["floor"]]


def overload_part(
    service: Service,
    pages: list[str],
    args: argparse.Namespace,
    unloaded_p99: float | None,
    capacity: float | None = None,
) -> dict[str, Any]:
    """``capacity`` (shots/s) given: requests arrive at 3x that rate (open loop); without
    it: 3 x (C + Q) clients that resend at once, ignoring Retry-After (a retry storm)."""
    mode = "open" if capacity else "storm"
    clients = 3 * (args.concurrency + args.max_queue)
    duration = args.overload_seconds
    answers: list[Answer] = []
    counter = iter(range(10**9))
    lock = threading.Lock()
    sampler = RssSampler(service.pid).start()
    time.sleep(1.1)  # the start sample, before any load
    before = service.metrics()
    log_start = service.log_size()
    cpu_before = cpu_seconds(service.pid)
    deadline = time.perf_counter() + duration
    late = 0
    floor_times: list[float] = []

    def run() -> None:
        with client() as http:
            while time.perf_counter() < deadline:
                with lock:
                    n = next(counter)
                url = f"{pages[n % len(pages)]}?shot=overload-{n}"
                answers.append(post(http, service.base, url, WAIT))

    started = time.perf_counter()
    prober = None
    if mode == "open":
        assert capacity is not None
        rate = 3 * capacity
        progress(f"overload: {rate:.1f} requests/s (3 x {capacity:.2f}) for {duration:.0f} s")
        answers, late, floor_times = run_open_loop(service.base, pages, rate, duration)
    else:
        progress(f"overload: {clients} clients for {duration:.0f} s (load {load()})")
        threads = [threading.Thread(target=run) for _ in range(clients)]
        for thread in threads:
            thread.start()
        time.sleep(min(1.0, duration / 10))  # the probe starts once the flood is on
        prober = start_child(
            [sys.executable, __file__, "--probe", service.base, pages[0], str(duration - 2)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
        )
        for thread in threads:
            thread.join()
    elapsed = time.perf_counter() - started
    cpu = cpu_seconds(service.pid) - cpu_before
    probed: list[tuple[str, float]] = []
    if prober is not None:
        try:
            probe_out, _ = prober.communicate(timeout=WAIT + 120)
            probed = [(str(s), float(t)) for s, t in json.loads(probe_out or b"[]")]
        except (subprocess.TimeoutExpired, ValueError):
            kill_group(prober)
    idle = service.wait_idle()
    time.sleep(1.1)  # the end sample, once the queue is empty again
    sampler.stop()
    after = service.metrics()
    inside = service.access_times(log_start)

    by_status: dict[str, list[float]] = {}
    for answer in answers:
        by_status.setdefault(answer.status, []).append(answer.latency)
    statuses: dict[str, dict[str, Any]] = {
        status: {
            "count": len(values),
            "p50": pct(values, 50),
            "p99": pct(values, 99),
            "max": max(values),
            "service_p50": pct(inside.get(status, []), 50),
            "service_p99": pct(inside.get(status, []), 99),
            "service_count": len(inside.get(status, [])),
        }
        for status, values in sorted(by_status.items())
    }
    accepted = [a for a in answers if a.status == "200"]
    record_status: dict[str, int] = {}
    for answer in accepted:
        key = str((answer.record or {}).get("status"))
        record_status[key] = record_status.get(key, 0) + 1
    retry_after = sorted({a.retry_after for a in answers if a.status == "429" and a.retry_after})
    probe_429 = [t for status, t in probed if status == "429"]
    probe_statuses: dict[str, int] = {}
    for status, _ in probed:
        probe_statuses[status] = probe_statuses.get(status, 0) + 1
    p99_429 = statuses.get("429", {}).get("p99")
    p99_200 = statuses.get("200", {}).get("p99")
    server_errors = sum(v["count"] for k, v in statuses.items() if k.isdigit() and k[0] == "5")
    transport = sum(v["count"] for k, v in statuses.items() if not k.isdigit())
    in_window = [a for a in accepted if a.sent + a.latency <= started + duration]
    captures = [
        a.record["timings"]["total_ms"] / 1000
        for a in accepted
        if a.record and (a.record.get("timings") or {}).get("total_ms") is not None
    ]

    def delta(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    return {
        "mode": mode,
        "capacity": capacity,
        "rate": 3 * capacity if capacity else None,
        "late_sends": late,
        "floor": {
            "answers": len(floor_times),
            "p50": pct(floor_times, 50),
            "p99": pct(floor_times, 99),
            "max": max(floor_times, default=None),
        },
        "clients": clients if mode == "storm" else None,
        "seconds": duration,
        "elapsed_s": elapsed,
        "answers": len(answers),
        "statuses": statuses,
        "record_status_of_200": record_status,
        "retry_after_values": retry_after[:10],
        "p99_429": p99_429,
        "probe": {
            "answers": probe_statuses,
            "p50_429": pct(probe_429, 50),
            "p99_429": pct(probe_429, 99),
            "max_429": max(probe_429, default=None),
        },
        "p99_200": p99_200,
        "unloaded_p99": unloaded_p99,
        "ratio_200_to_unloaded": p99_200 / unloaded_p99 if p99_200 and unloaded_p99 else None,
        "server_errors": server_errors,
        "transport_errors": transport,
        "accepted_rate": len(in_window) / duration if duration else None,
        "capture_p50": pct(captures, 50),
        "capture_p99": pct(captures, 99),
        "serve_cpu_s": cpu,
        "serve_cpu_ms_per_answer": cpu * 1000 / len(answers) if answers else None,
        "metrics_overloaded_queue": delta('distshot_overloaded_total{reason="queue"}'),
        "metrics_overloaded_wait": delta('distshot_overloaded_total{reason="wait"}'),
        "metrics_shots_ok": delta('distshot_shots_total{engine="playwright",status="ok"}'),
        "idle_after": idle,
        "rss": sampler.summary(),
        "rss_series_mib": [round(sample.rss / MIB) for sample in sampler.samples],
        "browsers_series": [sample.browsers for sample in sampler.samples],
        "renderers_series": [sample.renderers for sample in sampler.samples],
        "rss_growth": rss_growth(sampler.samples),
        "handover": handover(sampler.samples),
        "around_handover": around_handover(answers, sampler),
    }


def around_handover(answers: list[Answer], sampler: RssSampler) -> dict[str, Any]:
    """The 200s' and 429s' p99 for answers in flight while two browsers were up (a sample
    with two, and the second before it: the successor's launch) and for the others. The
    clocks agree: ``perf_counter`` and ``monotonic`` are both CLOCK_MONOTONIC on Linux,
    in every process."""
    spans = [
        (sampler.origin + sample.at - sampler.interval, sampler.origin + sample.at)
        for sample in sampler.samples
        if sample.browsers > 1
    ]

    def during(answer: Answer) -> bool:
        end = answer.sent + answer.latency
        return any(answer.sent <= until and end >= since for since, until in spans)

    found: dict[str, Any] = {}
    for status in ("200", "429"):
        for where, wanted in (("during", True), ("outside", False)):
            values = [a.latency for a in answers if a.status == status and during(a) == wanted]
            found[f"{status}_{where}"] = {"count": len(values), "p99": pct(values, 99)}
    return found


def steady_renderers(samples: list[Sample]) -> int:
    """The usual number of renderer processes in the tree (the most common count): one per
    lane plus Chromium's own; more means a lane's replacement is opening beside it."""
    counts = [sample.renderers for sample in samples]
    return max(set(counts), key=counts.count) if counts else 0


def in_handover(sample: Sample, renderers: int) -> bool:
    """A second when the tree held a browser or a lane twice: a recycled browser's
    successor beside it (engines/recycling.py), or a worn lane's replacement context beside
    it (make before break, engines/playwright.py ``_replace_lane``)."""
    return sample.browsers > 1 or sample.renderers > renderers


def rss_growth(samples: list[Sample]) -> float | None:
    """Largest RSS of the flood's second half over that of its first, each leaving out the
    seconds of a handover: about 1 when the memory is bounded by the browser slots, above
    when it grows with the flood. A recycled browser's successor starts before the old one
    leaves, so for a few seconds every few hundred shots the tree holds two browsers; a worn
    lane (every ``LANE_JOBS`` jobs) is replaced the same way, a context and a renderer (some
    300 MiB) for a second. Those peaks are a fixed cost, reported by ``handover``, and would
    read as growth in whichever half they fell."""
    renderers = steady_renderers(samples)
    series = [sample.rss for sample in samples if not in_handover(sample, renderers)]
    if len(series) < 4:
        return None
    half = len(series) // 2
    return max(series[half:]) / max(series[:half])


def handover(samples: list[Sample]) -> dict[str, Any]:
    """The seconds with more than one browser in the tree (how many, the most browsers at
    once: 1 successor at most, so 2), those with a lane's replacement beside it, and the
    RSS then, against the largest otherwise."""
    renderers = steady_renderers(samples)
    during = [sample for sample in samples if in_handover(sample, renderers)]
    others = [sample.rss for sample in samples if not in_handover(sample, renderers)]
    return {
        "samples": sum(sample.browsers > 1 for sample in samples),
        "lane_samples": sum(
            sample.browsers <= 1 and sample.renderers > renderers for sample in samples
        ),
        "steady_renderers": renderers,
        "max_browsers": max((sample.browsers for sample in samples), default=0),
        "max_mib": max((sample.rss for sample in during), default=0) / MIB or None,
        "max_otherwise_mib": max(others, default=0) / MIB or None,
    }


def probe(base: str, url: str, seconds: float, gap: float = 0.05) -> None:
    """The child of part 3: one request at a time, ``gap`` seconds apart, for ``seconds``;
    prints [[status, latency], ...] as JSON. In a process of its own, so that its figures
    do not include waiting for the flood's client threads (one GIL)."""
    found = []
    deadline = time.perf_counter() + seconds
    with client() as http:
        n = 0
        while time.perf_counter() < deadline:
            answer = post(http, base, f"{url}?shot=probe-{n}", WAIT)
            found.append([answer.status, answer.latency])
            n += 1
            time.sleep(gap)
    print(json.dumps(found), flush=True)


def overload_table(part: dict[str, Any]) -> None:
    if part["mode"] == "open":
        who = (
            f"{part['rate']:.1f} requests/s arriving (3 x the {part['capacity']:.2f} shots/s "
            f"measured at saturation; {part['late_sends']} sent over 10 ms late)"
        )
    else:
        who = f"{part['clients']} clients resending at once (a retry storm)"
    say(
        f"\n{who} for {part['seconds']:.0f} s ({part['elapsed_s']:.1f} s "
        f"until the last answer), {part['answers']} answers; 200s answered within the window: "
        f"{num(part['accepted_rate'])} shots/s; records of the 200s: "
        f"{part['record_status_of_200']}; Retry-After values: {part['retry_after_values']}"
    )
    say(
        "\n| status | answers | p50 ms | p99 ms | max ms | service's own p50 / p99 ms "
        "(access log) |\n|---|---|---|---|---|---|"
    )
    for status, row in part["statuses"].items():
        say(
            f"| {status} | {row['count']} | {ms(row['p50'])} | {ms(row['p99'])} | "
            f"{ms(row['max'])} | {ms(row.get('service_p50'))} / {ms(row.get('service_p99'))} |"
        )
    say(
        f"\ncapture time of the 200s (record timings.total_ms): p50 {ms(part['capture_p50'])} "
        f"ms, p99 {ms(part['capture_p99'])} ms; the serve process (API and capture loop) used "
        f"{part['serve_cpu_s']:.1f} s of CPU in {part['elapsed_s']:.0f} s, "
        f"{num(part['serve_cpu_ms_per_answer'])} ms per answer"
    )
    floor = part["floor"]
    if floor["answers"]:
        say(
            f"\nfloor (a do-nothing uvicorn app beside the service, answering 429, probed "
            f"every 50 ms by the same client during the flood): {floor['answers']} answers, "
            f"p50 {ms(floor['p50'])} ms, p99 {ms(floor['p99'])} ms, max {ms(floor['max'])} ms"
        )
    probe = part["probe"]
    if probe["answers"]:
        say(
            f"\nprobe (a process of its own, one request every 50 ms during the flood): "
            f"{probe['answers']}; 429 p50 {ms(probe['p50_429'])} ms, p99 "
            f"{ms(probe['p99_429'])} ms, max {ms(probe['max_429'])} ms"
        )
    rss = part["rss"]
    say(
        f"\nservice tree RSS (every 1 s, {rss['samples']} samples, up to "
        f"{rss['max_processes']} processes): start {num(rss['start_mib'], 0)} MiB, max "
        f"{num(rss['max_mib'], 0)} MiB, end {num(rss['end_mib'], 0)} MiB; /metrics: "
        f"{part['metrics_overloaded_queue']:.0f} refused (queue), "
        f"{part['metrics_overloaded_wait']:.0f} refused (predicted wait), "
        f"{part['metrics_shots_ok']:.0f} shots ok; queue empty afterwards: {part['idle_after']}"
    )
    parts = rss.get("parts_mib", {})
    say(
        "by kind (MiB): "
        + "; ".join(f"{name}: {parts_text(values)}" for name, values in parts.items())
        + f"; outside the tree (crashpad): up to {num(rss.get('max_detached_mib'), 0)} MiB"
    )
    say(f"RSS every second (MiB): {part['rss_series_mib']}")
    say(f"browsers in the tree every second: {part['browsers_series']}")
    say(f"renderers in the tree every second: {part['renderers_series']}")
    shift = part["handover"]
    say(
        f"handovers: {shift['samples']} samples with two browsers (at most "
        f"{shift['max_browsers']} at once), {shift['lane_samples']} with a lane's "
        f"replacement (more than {shift['steady_renderers']} renderers); RSS then up to "
        f"{num(shift['max_mib'], 0)} MiB, otherwise up to {num(shift['max_otherwise_mib'], 0)} MiB"
    )
    around = part["around_handover"]
    say(
        "answers in flight during a handover / the others: "
        + "; ".join(
            f"{status}s {around[f'{status}_during']['count']}, p99 "
            f"{ms(around[f'{status}_during']['p99'])} ms / {around[f'{status}_outside']['count']}"
            f", p99 {ms(around[f'{status}_outside']['p99'])} ms"
            for status in ("200", "429")
        )
    )


# -- 4. memory with a deep queue -------------------------------------------------------------


def queued_part(
    work: Path, page_base: str, pages: list[str], args: argparse.Namespace
) -> dict[str, Any]:
    count = args.queued
    service = Service(work, "serve-queued", args.concurrency, 20000, drain=1)
    progress(f"queued: starting {' '.join(service.command)}")
    ready = service.wait_ready()
    sampler = RssSampler(service.pid)
    with client() as http:
        warm = post(http, service.base, f"{pages[0]}?shot=queued-warm", WAIT)
    if warm.status != "200" or not good_image(warm.record):
        raise SystemExit(f"queued: warm-up shot failed: {warm.status} {warm.record}")
    # Every browser slot busy with a page that takes HOLD seconds (its timeout raised to
    # match): the RSS before the burst has the same captures in flight as after it, so the
    # difference is what the queue costs.
    holders = []
    held = time.monotonic()
    with client() as http:
        for n in range(args.concurrency):
            url = f"{page_base}/slow?delay={HOLD}&shot=queued-hold-{n}"
            holders.append(post(http, service.base, url, 0, {**OPTIONS, "timeout": HOLD + 60}))
    if any(answer.status != "202" for answer in holders):
        raise SystemExit(f"queued: holders not accepted: {[a.status for a in holders]}")
    deadline = time.monotonic() + 30
    while service.metrics().get("distshot_in_flight") != args.concurrency:
        if time.monotonic() > deadline:
            raise SystemExit("queued: the holder pages did not start")
        time.sleep(0.2)
    time.sleep(3)
    before = []
    for _ in range(3):
        before.append(sampler.sample())
        time.sleep(1)
    log_start = service.log_size()

    answers: list[Answer] = []
    counter = iter(range(count))
    lock = threading.Lock()
    delay = args.slow_delay

    def run() -> None:
        with client() as http:
            while True:
                with lock:
                    n = next(counter, None)
                if n is None:
                    return
                url = f"{page_base}/slow?delay={delay}&shot=queued-{n}"
                answers.append(post(http, service.base, url, 0))

    progress(f"queued: {count} wait:0 POSTs from {args.queue_clients} clients (load {load()})")
    started = time.perf_counter()
    threads = [threading.Thread(target=run) for _ in range(args.queue_clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    burst = time.perf_counter() - started
    time.sleep(2)
    after_samples = []
    for _ in range(3):
        after_samples.append(sampler.sample())
        time.sleep(1)
    hold_elapsed = time.monotonic() - held
    values = service.metrics()
    inside = service.access_times(log_start)
    depth = values.get("distshot_queue_depth")
    in_flight = values.get("distshot_in_flight")
    service_rss = values.get("distshot_process_tree_rss_bytes")
    python_rss = rss(service.pid)

    statuses: dict[str, int] = {}
    for answer in answers:
        statuses[answer.status] = statuses.get(answer.status, 0) + 1
    latencies = [a.latency for a in answers if a.status == "202"]
    accepted = statuses.get("202", 0)
    memory = {
        "before": median_sample(before),
        "after": median_sample(after_samples),
    }
    delta = {
        name: memory["after"].get(name, 0) - memory["before"].get(name, 0)
        for name in memory["after"]
    }

    progress("queued: SIGTERM to the service")
    seconds, killed = service.stop(STOP_GRACE)
    right_after = [pid for pid in group_members(service.pid) if is_chromium(pid)]
    time.sleep(5)
    later = [f"{pid} {command_line(pid)}" for pid in group_members(service.pid)]
    later_chromium = [line for line in later if "chrom" in line]
    survivors = sampler.survivors()
    marked_left = [f"{pid} {command_line(pid)}" for pid in marked(TOKEN)]
    if later or marked_left:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(service.pid, signal.SIGKILL)
        for pid in marked(TOKEN):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    return {
        "queued": count,
        "clients": args.queue_clients,
        "slow_delay_s": delay,
        "hold_s": HOLD,
        "hold_elapsed_s": hold_elapsed,
        "ready_s": ready,
        "statuses": statuses,
        "burst_s": burst,
        "post_p50": pct(latencies, 50),
        "post_p99": pct(latencies, 99),
        "service_202_p50": pct(inside.get("202", []), 50),
        "service_202_p99": pct(inside.get("202", []), 99),
        "rss_mib": {
            when: {name: value / MIB for name, value in values.items()}
            for when, values in memory.items()
        },
        "delta_mib": {name: value / MIB for name, value in delta.items()},
        "kib_per_queued": {
            name: value / 1024 / accepted if accepted else None for name, value in delta.items()
        },
        "serve_process_rss_mib": python_rss / MIB,
        "processes": max(sample.processes for sample in after_samples),
        "metrics_queue_depth": depth,
        "metrics_in_flight": in_flight,
        "metrics_tree_rss_mib": service_rss / MIB if service_rss else None,
        "sigterm_exit_s": seconds,
        "sigkilled": killed,
        "exit_status": service.process.returncode,
        "chromium_in_group_at_exit": len(right_after),
        "left_after_5s": later,
        "chromium_left_after_5s": later_chromium,
        "seen_chromium_alive": survivors,
        "marked_left": marked_left,
        "log": service.log_findings(),
        "command": " ".join(service.command),
    }


def median_sample(samples: list[Sample]) -> dict[str, int]:
    """The median of each figure over a few samples: the tree, and each kind of process."""
    names = {name for sample in samples for name in sample.parts}
    figures = {"tree": sorted(sample.rss for sample in samples)}
    for name in names:
        figures[name] = sorted(sample.parts.get(name, 0) for sample in samples)
    return {name: values[len(values) // 2] for name, values in figures.items()}


def queued_table(part: dict[str, Any]) -> None:
    statuses = ", ".join(f"{k}: {v}" for k, v in sorted(part["statuses"].items()))
    say(
        f"\n{part['queued']} POSTs (wait: 0) from {part['clients']} clients in "
        f"{part['burst_s']:.1f} s ({statuses}); 202 latency p50 {ms(part['post_p50'])} ms, "
        f"p99 {ms(part['post_p99'])} ms; queued pages answer after {part['slow_delay_s']:g} s; "
        f"the {part['metrics_in_flight'] or 0:.0f} in flight (sent before the burst, both RSS "
        f"figures) after {part['hold_s']} s, {part['hold_elapsed_s']:.0f} s had passed at the "
        "last sample"
    )
    say(
        f"service's own time per 202 (access log): p50 {ms(part['service_202_p50'])} ms, p99 "
        f"{ms(part['service_202_p99'])} ms; /metrics after: queue depth "
        f"{num(part['metrics_queue_depth'], 0)}, in flight {num(part['metrics_in_flight'], 0)}, "
        f"tree RSS {num(part['metrics_tree_rss_mib'], 0)} MiB; {part['processes']} processes"
    )
    rows = part["rss_mib"]
    names = ["tree", *sorted(name for name in rows["after"] if name != "tree")]
    say(
        "\n| RSS (MiB) | "
        + " | ".join(names)
        + " |\n|---|"
        + "---|" * len(names)
        + "\n"
        + "\n".join(
            f"| {label} | " + " | ".join(num(values.get(name), 1) for name in names) + " |"
            for label, values in (
                ("before the burst", rows["before"]),
                (f"with {part['statuses'].get('202', 0)} accepted", rows["after"]),
                ("delta", part["delta_mib"]),
                ("KiB per queued request", part["kib_per_queued"]),
            )
        )
    )
    say(
        f"\nSIGTERM (--drain-timeout 1): exited in {part['sigterm_exit_s']:.1f} s with status "
        f"{part['exit_status']}{' after SIGKILL to its group' if part['sigkilled'] else ''}; "
        f"Chromium processes in its group right after: {part['chromium_in_group_at_exit']}, "
        f"5 s later: {len(part['chromium_left_after_5s'])}; Chromium processes seen in its "
        f"tree still alive: {len(part['seen_chromium_alive'])}; marked processes left: "
        f"{len(part['marked_left'])}"
    )
    for line in part["left_after_5s"] + part["seen_chromium_alive"] + part["marked_left"]:
        say(f"    left: {line}")


# -- the run ---------------------------------------------------------------------------------


def targets(results: dict[str, Any]) -> None:
    rows: list[tuple[str, str, bool | None]] = []
    for part in results.get("throughput", []):
        ratio = part["ratio_at_saturation"]
        rows.append(
            (
                f"serve / shoot at saturation ≥ 0.9 ({part['pages']}, steady)",
                num(ratio, 2, "x"),
                None if ratio is None else ratio >= 0.9,
            )
        )
    for overload in results.get("overload", []):
        mode = "overload" if overload["mode"] == "open" else "retry storm"
        rows.append(
            (
                f"{mode}: 5xx answers = 0",
                f"{overload['server_errors']} (transport errors: {overload['transport_errors']})",
                overload["server_errors"] == 0,
            )
        )
        growth = overload["rss_growth"]
        rss = overload["rss"]
        shift = overload["handover"]
        rows.append(
            (
                f"{mode}: tree RSS bounded (2nd half's max ≤ 1.1 x 1st half's, outside "
                "browser and lane handovers; never more than 2 browsers)",
                f"{num(growth, 2, 'x')}; start {num(rss.get('start_mib'), 0)} MiB, max "
                f"{num(rss.get('max_mib'), 0)} MiB, end {num(rss.get('end_mib'), 0)} MiB; "
                f"{shift['samples']} s of browser handover ({shift['max_browsers']} browsers "
                f"at most), {shift['lane_samples']} s of lane handover, up to "
                f"{num(shift['max_mib'], 0)} MiB",
                None if growth is None else growth <= 1.1 and shift["max_browsers"] <= 2,
            )
        )
        if overload["mode"] != "open":
            continue
        p99 = overload["p99_429"]
        inside = overload["statuses"].get("429", {}).get("service_p99")
        rows.append(
            (
                "overload: p99 time to a 429 < 50 ms",
                f"{ms(p99)} ms (the service's own: {ms(inside)} ms; a do-nothing app beside "
                f"it: {ms(overload['floor']['p99'])} ms)",
                None if p99 is None else p99 < 0.05,
            )
        )
        ratio = overload["ratio_200_to_unloaded"]
        rows.append(
            (
                "overload: p99 of 200s ≤ 2x unloaded p99",
                f"{ms(overload['p99_200'])} ms vs {ms(overload['unloaded_p99'])} ms "
                f"= {num(ratio, 2, 'x')}",
                None if ratio is None else ratio <= 2,
            )
        )
        loaded = (results.get("at_capacity") or {}).get("p99")
        if loaded and overload["p99_200"]:
            rows.append(
                (
                    "(context) p99 of 200s against the p99 at capacity without overload",
                    f"{ms(overload['p99_200'])} ms vs {ms(loaded)} ms "
                    f"= {num(overload['p99_200'] / loaded, 2, 'x')}",
                    None,
                )
            )
    queued = results.get("queued")
    if queued:
        left = len(queued["chromium_left_after_5s"]) + len(queued["seen_chromium_alive"])
        rows.append(
            (
                "queued: no Chromium left after SIGTERM",
                f"{left} left; exit in {queued['sigterm_exit_s']:.1f} s"
                f"{', SIGKILLed' if queued['sigkilled'] else ''}",
                left == 0,
            )
        )
    if rows:
        say("\n| target | measured | met |\n|---|---|---|")
        for label, value, ok in rows:
            say(f"| {label} | {value} | {met(ok)} |")


def saturation_rate(
    results: dict[str, Any], service: Service, pages: list[str], args: argparse.Namespace
) -> float:
    """The service's steady shots/s at saturation on the example site: part 2's figure,
    or measured now with as many clients as part 2's top level."""
    for part in results.get("throughput", []):
        if part["pages"] == "examples/site" and part["saturated_steady_rate"]:
            return float(part["saturated_steady_rate"])
    progress("overload: measuring the capacity first")
    row = service_level(service, unique(pages, "capacity", args.shots), LEVELS[-1])
    if not row["steady_rate"]:
        raise SystemExit(f"overload: could not measure the capacity: {row['problems']}")
    results["capacity"] = row
    return float(row["steady_rate"])


def run(args: argparse.Namespace, work: Path, results: dict[str, Any]) -> None:
    parts = set(args.parts)
    say("\n".join(describe()))
    docs = (DOC_ROOT / "library").is_dir()
    if not docs:
        say(
            f"- {DOC_PACKAGE} is not installed ({DOC_ROOT}/library is missing): the Python docs "
            "corpus is skipped (bench/corpus.py --install adds it)"
        )
    results["docs_corpus"] = doc_version() if docs else None
    with contextlib.ExitStack() as stack:
        base = stack.enter_context(page_server())
        page_sets = {"examples/site": demo_pages(base)}
        if docs:
            corpus = stack.enter_context(Corpus())
            page_sets[f"{DOC_PACKAGE} corpus"] = corpus.urls(args.docs_pages)
        say(
            f"- pages: examples/site at {base} ({len(page_sets['examples/site'])} pages); "
            f"{WIDTH}x{HEIGHT} PNG; service --concurrency {args.concurrency} --max-queue "
            f"{args.max_queue} {' '.join(args.serve_arg)}".rstrip()
        )
        if parts & {1, 2, 3}:
            service = Service(work, "serve", args.concurrency, args.max_queue, extra=args.serve_arg)
            results["command"] = " ".join(service.command)
            progress(f"starting {' '.join(service.command)}")
            results["ready_s"] = service.wait_ready()
            say(f"- service ready in {results['ready_s']:.1f} s: {service.command[0]} ...")
            try:
                unloaded = None
                if 1 in parts:
                    say(f"\n## 1. Latency, one client at a time, warm service (load {load()})")
                    results["latency"] = []
                    for name, pages in page_sets.items():
                        progress(f"latency: {name}, {args.samples} samples")
                        results["latency"].append(latency_part(service, name, pages, args.samples))
                    latency_table(results["latency"])
                    unloaded = results["latency"][0]["p99"]
                if 2 in parts:
                    say(f"\n## 2. Throughput (load {load()})")
                    results["throughput"] = []
                    for name, pages in page_sets.items():
                        part = throughput_part(service, work, name, pages, args.shots, args)
                        results["throughput"].append(part)
                        throughput_table(part)
                if 3 in parts:
                    if unloaded is None:
                        progress("overload: measuring the unloaded p99 first")
                        pages = page_sets["examples/site"]
                        unloaded = latency_part(service, "examples/site", pages, args.samples)[
                            "p99"
                        ]
                    pages = page_sets["examples/site"]
                    capacity = saturation_rate(results, service, pages, args)
                    progress(f"overload: latency with {args.concurrency} clients (no queue)")
                    urls = unique(pages, "at-capacity", args.samples)
                    results["at_capacity"] = service_level(service, urls, args.concurrency)
                    say(f"\n## 3. Overload at 3x capacity (load {load()})")
                    row = results["at_capacity"]
                    say(
                        f"\nFirst, at capacity without overload ({args.concurrency} clients, "
                        f"{row['ok']}/{row['shots']} ok): p50 {ms(row['p50'])} ms, p99 "
                        f"{ms(row['p99'])} ms (one client at a time: p99 {ms(unloaded)} ms)"
                    )
                    results["overload"] = []
                    modes = {"open": capacity, "storm": None}  # 3x capacity; a retry storm
                    for mode in args.overload_modes:
                        part = overload_part(service, pages, args, unloaded, modes[mode])
                        results["overload"].append(part)
                        overload_table(part)
            finally:
                seconds, killed = service.stop()
                results["stop"] = {"seconds": seconds, "sigkilled": killed}
                results["log"] = service.log_findings()
        if 4 in parts:
            say(f"\n## 4. Memory with {args.queued} queued requests (load {load()})")
            results["queued"] = queued_part(work, base, page_sets["examples/site"], args)
            queued_table(results["queued"])
    say("\n## Targets")
    targets(results)
    for name, key in (("serve", results), ("serve-queued", results.get("queued") or {})):
        if "log" not in key:
            continue
        lines = key["log"]
        say(f"\n{name} log: {len(lines)} lines other than routine ones and non-5xx access lines")
        for line in lines:
            say(f"    {line}")


def main() -> None:
    global OUT
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run: small numbers")
    parser.add_argument("--parts", type=int, nargs="+", choices=(1, 2, 3, 4), default=[1, 2, 3, 4])
    parser.add_argument("--concurrency", type=int, default=2, help="captures at once [2]")
    parser.add_argument(
        "--max-queue",
        type=int,
        default=6,
        help="the service's --max-queue for parts 1-3 [6]",
    )
    parser.add_argument(
        "--serve-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="one more argument for the service of parts 1-3 (repeat: --serve-arg=--max-queue-wait"
        " --serve-arg=0)",
    )
    parser.add_argument("--samples", type=int, help="latency samples per page set [300; 20]")
    parser.add_argument("--shots", type=int, help="shots per throughput level [100; 20]")
    parser.add_argument(
        "--pairs", type=int, help="part 2's pairs of shoot and serve at saturation [3; 1]"
    )
    parser.add_argument("--overload-seconds", type=float, help="[60; 10]")
    parser.add_argument(
        "--overload-modes",
        nargs="+",
        choices=("open", "storm"),
        default=["open", "storm"],
        help="part 3: arrivals at 3x capacity, and/or a retry storm [both]",
    )
    parser.add_argument("--queued", type=int, help="wait:0 requests of part 4 [10000; 1000]")
    parser.add_argument("--queue-clients", type=int, default=50, help="part 4's clients [50]")
    parser.add_argument("--slow-delay", type=float, default=5.0, help="part 4's page delay [5]")
    parser.add_argument("--docs-pages", type=int, default=60, help="docs corpus pages [60]")
    parser.add_argument(
        "--json",
        nargs="?",
        const="-",
        metavar="FILE",
        help="write the figures as JSON (- : stdout)",
    )
    parser.add_argument("--keep", type=Path, help="keep the work folder (logs, state) here")
    parser.add_argument("--page-server", help=argparse.SUPPRESS)  # the page server child
    parser.add_argument("--probe", nargs=3, help=argparse.SUPPRESS)  # part 3's probe child
    parser.add_argument("--open-loop", nargs="+", help=argparse.SUPPRESS)  # part 3's load
    parser.add_argument("--closed-loop", nargs="+", help=argparse.SUPPRESS)  # part 2's clients
    parser.add_argument("--floor-server", type=int, help=argparse.SUPPRESS)  # part 3's floor
    args = parser.parse_args()
    if args.page_server:
        serve_pages(args.page_server)
        return
    if args.probe:
        probe(args.probe[0], args.probe[1], float(args.probe[2]))
        return
    if args.open_loop:
        base, floor, rate, seconds, *urls = args.open_loop
        open_loop_child(base, floor, float(rate), float(seconds), urls)
        return
    if args.floor_server:
        floor_server(args.floor_server)
        return
    if args.closed_loop:
        base, clients, patience, *urls = args.closed_loop
        closed_loop_child(base, int(clients), patience == "patient", urls)
        return
    quick = args.quick
    defaults = {
        "samples": 20 if quick else 300,
        "shots": 20 if quick else 100,
        "pairs": 1 if quick else 3,
        "overload_seconds": 10.0 if quick else 60.0,
        "queued": 1000 if quick else 10000,
    }
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.json == "-":
        OUT = sys.stderr

    def terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    results: dict[str, Any] = {
        "arguments": {
            k: v
            for k, v in vars(args).items()
            if k not in ("page_server", "probe", "open_loop", "floor_server", "keep")
        }
        | {"keep": str(args.keep) if args.keep else None}
    }
    status = 0
    work = Path(tempfile.mkdtemp(prefix="distshot-serve-bench-"))
    try:
        run(args, work, results)
    except (Exception, KeyboardInterrupt, SystemExit) as exc:
        status = 1
        results["error"] = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
    finally:
        left = cleanup()
        results["left_at_exit"] = left
        if left:
            say(f"\nwarning: processes left at the end (killed): {left}")
        if args.keep:
            shutil.copytree(work, args.keep, dirs_exist_ok=True, ignore=_no_images)
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        text = json.dumps(results, indent=1, default=str)
        if args.json == "-":
            print(text, flush=True)
        else:
            Path(args.json).write_text(text + "\n")
    sys.exit(status)


def _no_images(folder: str, names: list[str]) -> list[str]:
    return [name for name in names if name.endswith((".png", ".jpeg", ".webp"))]


if __name__ == "__main__":
    main()
