"""The embedded backend: browsers on this machine, no broker.

Captures run in a capture process of the service's own (``capturer``: one engine, one
browser recycled by the engine, its storage uploads in a pool of their own size), at most
``concurrency`` at once as admission allows; this process only admits, waits and answers,
so a busy browser never slows a 429 or a health check.

Nothing accepted is dropped when the capture process dies (a crash, the kernel's OOM
killer): a new one is started and what was in flight is sent to it again. A request that
was in flight at ``MAX_DEATHS`` deaths gets a ``failed`` record (BrowserCrashed) instead of
taking down every later capture process with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import multiprocessing
import threading
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from ..actors.capture import result_for_payload
from ..core.errors import BrowserCrashed, ConfigError
from ..core.models import ShotRequest
from .backend import Backend
from .capturer import CaptureSpec, child_main, send
from .limits import Admission

logger = logging.getLogger("distshot.serve")

#: Deaths of the capture process a request may be in flight for before it fails.
MAX_DEATHS = 2
#: Seconds the capture process has to start its browser, and to stop it.
START_TIMEOUT = 120.0
STOP_TIMEOUT = 30.0


@dataclass
class _Job:
    wire: dict[str, Any]
    done: asyncio.Future[dict[str, Any]]
    deaths: int = field(default=0)


class EmbeddedBackend(Backend):
    name = "embedded"

    def __init__(self, spec: CaptureSpec, admission: Admission) -> None:
        self.spec = spec
        self.admission = admission
        self._ids = itertools.count(1)
        self._jobs: dict[int, _Job] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._process: Any = None
        self._conn: Connection | None = None
        self._ready: asyncio.Future[None] | None = None
        self._closing = False

    # -- the capture process --------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self._spawn()

    async def _spawn(self) -> None:
        """Start a capture process and wait until its browser is up; ConfigError (one
        line) when it cannot start."""
        assert self._loop is not None
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe()
        process = context.Process(
            target=child_main, args=(theirs, self.spec), name="distshot-capture", daemon=True
        )
        await asyncio.to_thread(process.start)
        theirs.close()
        self._process, self._conn = process, ours
        self._ready = self._loop.create_future()
        threading.Thread(
            target=self._read, args=(ours, process), name="distshot-capture-reader", daemon=True
        ).start()
        try:
            await asyncio.wait_for(asyncio.shield(self._ready), START_TIMEOUT)
        except TimeoutError:
            process.kill()
            raise ConfigError(f"the browser did not start within {START_TIMEOUT:.0f} s") from None

    def _read(self, conn: Connection, process: Any) -> None:
        """Thread: each message from one capture process, handed to the loop."""
        assert self._loop is not None
        while True:
            try:
                message = json.loads(conn.recv_bytes())
            except (EOFError, OSError):
                self._loop.call_soon_threadsafe(self._died, process)
                return
            self._loop.call_soon_threadsafe(self._on_message, message)

    def _on_message(self, message: dict[str, Any]) -> None:
        op = message.get("op")
        if op == "ready" and self._ready is not None and not self._ready.done():
            self._ready.set_result(None)
        elif op == "failed" and self._ready is not None and not self._ready.done():
            self._ready.set_exception(ConfigError(str(message.get("error"))))
        elif "id" in message:
            job = self._jobs.pop(message["id"], None)
            if job is not None and not job.done.done():
                job.done.set_result(message["record"])

    def _died(self, process: Any) -> None:
        if process is not self._process:
            return  # an earlier process's reader, after its replacement started
        if self._ready is not None and not self._ready.done():
            code = process.exitcode
            self._ready.set_exception(ConfigError(f"the capture process exited (status {code})"))
            return
        if self._closing:
            return
        logger.error(
            "the capture process died (status %s) with %d captures in flight; starting another",
            process.exitcode,
            len(self._jobs),
        )
        assert self._loop is not None
        self._loop.create_task(self._restart())

    async def _restart(self) -> None:
        for job_id, job in list(self._jobs.items()):
            job.deaths += 1
            if job.deaths >= MAX_DEATHS:
                del self._jobs[job_id]
                job.done.set_result(_crashed(job.wire, job.deaths))
        try:
            await self._spawn()
        except ConfigError as exc:
            logger.error("the capture process could not start again: %s", exc.message)
            for job in self._jobs.values():
                job.done.set_result(_crashed(job.wire, job.deaths))
            self._jobs.clear()
            return
        assert self._conn is not None
        for job_id, job in self._jobs.items():
            send(self._conn, {"op": "capture", "id": job_id, "request": job.wire})

    # -- the backend's interface ----------------------------------------------------------

    async def execute(self, request: ShotRequest) -> dict[str, Any]:
        assert self._loop is not None
        job = _Job(request.to_wire(), self._loop.create_future())
        job_id = next(self._ids)
        self._jobs[job_id] = job
        ready = self._ready is not None and self._ready.done() and not self._ready.exception()
        if ready and self._conn is not None:
            # If the process just died, _restart sends it again.
            with contextlib.suppress(OSError):
                send(self._conn, {"op": "capture", "id": job_id, "request": job.wire})
        return await job.done

    async def close(self) -> None:
        self._closing = True
        process, conn = self._process, self._conn
        if process is None or conn is None:
            return
        with contextlib.suppress(OSError):
            send(conn, {"op": "close"})
        await asyncio.to_thread(process.join, STOP_TIMEOUT)
        if process.is_alive():
            logger.error("the capture process did not stop within %.0f s; killing it", STOP_TIMEOUT)
            process.kill()
            await asyncio.to_thread(process.join, 5)
        conn.close()
        for job in self._jobs.values():
            if not job.done.done():
                job.done.set_result(_crashed(job.wire, job.deaths, "the service stopped"))
        self._jobs.clear()


def _crashed(wire: dict[str, Any], deaths: int, why: str | None = None) -> dict[str, Any]:
    message = why or f"the capture process died {deaths} times while this page was loading"
    result = result_for_payload(wire, "failed", BrowserCrashed(message), deaths)
    assert result is not None  # every request sent carries its id
    return result.to_record()
