"""A worker's Prometheus metrics: shots, capture latency, browsers, retries, jobs in flight.

Dramatiq runs several worker processes. prometheus_client's multiprocess mode has each one
write its values to files in one folder (``PROMETHEUS_MULTIPROC_DIR``), and one exposition
process, started by Dramatiq's CLI as a *fork function*, sums the files on every scrape.
Dramatiq's own Prometheus middleware works the same way, but it listens on 0.0.0.0 unless an
environment variable says otherwise and fixes its folder at import time; this one listens
where the ``metrics`` setting says (127.0.0.1:9191 by default) and keeps a folder per port,
so two workers on one machine (two engines) can each serve their own.

A scrape never touches a worker: a slow or hung capture cannot delay it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import socket
import stat
import tempfile
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.middleware import Middleware

from ..core import telemetry
from ..core.config import load_settings, parse_listen
from .capture import CAPTURE_ACTOR, peek_outcome

logger = logging.getLogger("distshot.metrics")

ENV_DIR = "PROMETHEUS_MULTIPROC_DIR"
#: The inherited listening socket's descriptor (see ``listen_socket``).
ENV_FD = "DISTSHOT_METRICS_FD"
LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120)
#: prometheus_client's per-process files: counter_123.db, gauge_livesum_123.db, ...
_PID_FILE_RE = re.compile(r"_(\d+)\.db$")


def metrics_dir(port: int) -> Path:
    """The multiprocess folder of the worker serving metrics on ``port`` (one per port: the
    port is what two workers on one machine cannot share anyway)."""
    return Path(tempfile.gettempdir()) / f"distshot-metrics-{os.getuid()}-{port}"


def fresh_metrics_dir(port: int) -> Path:
    """Empty the folder for a new run (``distshot worker``, before Dramatiq starts): the
    values of a previous run's processes must not be summed into this one's."""
    folder = metrics_dir(port)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _prune_dead(folder: Path) -> None:
    """Remove the files of processes that are gone (a previous run's, or ``dramatiq``
    started directly, which nothing empties before)."""
    for path in folder.glob("*.db"):
        match = _PID_FILE_RE.search(path.name)
        if match is None:
            continue
        try:
            os.kill(int(match.group(1)), 0)
        except ProcessLookupError:
            path.unlink(missing_ok=True)
        except PermissionError:
            pass  # alive, someone else's


def define_worker_metrics(registry: Any = None) -> dict[str, Any]:
    """The worker's metric families, on ``registry`` (prometheus_client's default when
    None: in multiprocess mode the values live in files, whatever the registry). The
    Grafana dashboard's test reads their names and labels from here."""
    from prometheus_client import REGISTRY, Counter, Gauge, Histogram

    registry = REGISTRY if registry is None else registry
    return {
        "shots": Counter(
            "distshot_worker_shots",
            "Shots finished by this worker, by status (ok, failed, rejected) and engine.",
            ["status", "engine"],
            registry=registry,
        ),
        "capture_seconds": Histogram(
            "distshot_worker_capture_seconds",
            "Time of one capture attempt, from the job's start to its outcome.",
            ["engine"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        ),
        "launches": Counter(
            "distshot_worker_browser_launches",
            "Browsers started (the first, after recycling and after crashes).",
            ["engine"],
            registry=registry,
        ),
        "recycles": Counter(
            "distshot_worker_browser_recycles",
            "Browsers retired, by reason: jobs (recycle_after), memory or crash.",
            ["engine", "reason"],
            registry=registry,
        ),
        "retries": Counter(
            "distshot_worker_retries",
            "Capture attempts that were retries of a failed one.",
            ["engine"],
            registry=registry,
        ),
        "in_flight": Gauge(
            "distshot_worker_jobs_in_flight",
            "Capture jobs running now.",
            ["engine"],
            multiprocess_mode="livesum",
            registry=registry,
        ),
    }


class WorkerMetrics(Middleware):
    """Counts in each worker process; ``serve_metrics`` (a Dramatiq fork) exposes the sum.

    It must come *before* Retries and *after* the reply middleware in the middleware list:
    ``after_*`` hooks run in reverse order, so Retries has decided whether a failure is
    final (``message.failed``) and the outcome has not been handed to the reply yet.
    """

    def __init__(self, engine: str, listen: tuple[str, int]) -> None:
        self.engine = engine
        self.listen = listen
        self.folder = Path(os.environ.get(ENV_DIR) or metrics_dir(listen[1]))
        # Before prometheus_client is imported in this process: its value class (memory or
        # files) is chosen at import.
        os.environ[ENV_DIR] = str(self.folder)
        self._started: dict[str, float] = {}
        self._ready = False

    @property
    def forks(self) -> list[Any]:
        return [serve_metrics]

    def after_process_boot(self, broker: dramatiq.Broker) -> None:
        # Here, not in __init__: the exposition process imports this package too (and so
        # builds the broker and this middleware), and it needs the socket.
        _close_inherited_socket()
        self.folder.mkdir(parents=True, exist_ok=True)
        _prune_dead(self.folder)
        families = define_worker_metrics()
        self.shots = families["shots"]
        self.capture_seconds = families["capture_seconds"]
        self.launches = families["launches"]
        self.recycles = families["recycles"]
        self.retries = families["retries"]
        self.in_flight = families["in_flight"]
        # Series exist from the start, at zero: a dashboard's rate() needs a first sample.
        for status in ("ok", "failed", "rejected"):
            self.shots.labels(status, self.engine)
        self.capture_seconds.labels(self.engine)
        self.launches.labels(self.engine)
        self.retries.labels(self.engine)
        self.in_flight.labels(self.engine).set(0)
        telemetry.subscribe(self._on_event)
        self._ready = True

    def _on_event(self, event: str, **fields: Any) -> None:
        if event == telemetry.BROWSER_LAUNCH:
            self.launches.labels(self.engine).inc()
        elif event == telemetry.BROWSER_RECYCLE:
            self.recycles.labels(self.engine, str(fields.get("reason", "unknown"))).inc()

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        if not self._ready or message.actor_name != CAPTURE_ACTOR:
            return
        self._started[message.message_id] = time.monotonic()
        self.in_flight.labels(self.engine).inc()
        if message.options.get("retries", 0) > 0:
            self.retries.labels(self.engine).inc()

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        started = self._started.pop(message.message_id, None)
        if started is None:  # not a capture, or skipped before it started
            return
        self.in_flight.labels(self.engine).dec()
        self.capture_seconds.labels(self.engine).observe(time.monotonic() - started)
        if exception is None:
            outcome = peek_outcome(message.message_id)
            status = outcome.get("status", "ok") if outcome else "ok"
        elif message.failed:
            status = "failed"
        else:
            return  # Retries sent it again: not finished yet
        self.shots.labels(str(status), self.engine).inc()

    def after_skip_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        self.after_process_message(broker, message, exception=RuntimeError("skipped"))

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if not self._ready:
            return
        telemetry.unsubscribe(self._on_event)
        from prometheus_client import multiprocess

        # Drops this process's live gauges (in flight) from the sum.
        multiprocess.mark_process_dead(os.getpid(), str(self.folder))  # type: ignore[no-untyped-call]


def _close_inherited_socket() -> None:
    """A worker process holds a copy of the metrics socket it inherited; only the
    exposition process should, or a dead exposition process would leave the port open and
    unanswered instead of refused."""
    inherited = os.environ.get(ENV_FD)
    if not inherited:
        return
    with contextlib.suppress(OSError, ValueError):
        if stat.S_ISSOCK(os.fstat(int(inherited)).st_mode):
            os.close(int(inherited))


class _Handler(BaseHTTPRequestHandler):
    folder = ""

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] not in ("/metrics", "/"):
            self.send_error(404, "metrics are at /metrics")
            return
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
        from prometheus_client.multiprocess import MultiProcessCollector

        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=self.folder)  # type: ignore[no-untyped-call]
        body = generate_latest(registry)
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE_LATEST)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # a scrape every 15 s is not worth a log line


def listen_socket(listen: tuple[str, int]) -> socket.socket:
    """A listening socket for the metrics, made by ``distshot worker`` before it becomes
    Dramatiq and handed down through exec (``ENV_FD``): the port is the worker's from the
    start, so no second worker can take it, or share its folder, in between."""
    family = socket.AF_INET6 if ":" in listen[0] else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(listen)
        sock.listen(64)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def serve_metrics() -> int:
    """Dramatiq fork function: serve the summed metrics until Dramatiq stops it. A port that
    is taken is one error line; the workers go on without metrics."""
    settings = load_settings(os.environ.get("DISTSHOT_CONFIG"))
    listen = parse_listen(settings.metrics)
    if listen is None:
        return 0
    folder = os.environ.get(ENV_DIR) or str(metrics_dir(listen[1]))
    handler = type("MetricsHandler", (_Handler,), {"folder": folder})
    server = ThreadingHTTPServer(listen, handler, bind_and_activate=False)
    server.socket.close()
    try:
        inherited = os.environ.get(ENV_FD)
        server.socket = socket.socket(fileno=int(inherited)) if inherited else listen_socket(listen)
    except OSError as exc:
        logger.error("metrics: cannot listen on %s:%d: %s", *listen, exc.strerror or exc)
        return 1
    server.server_address = server.socket.getsockname()[:2]
    logger.info("metrics at http://%s:%d/metrics", *listen)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0
