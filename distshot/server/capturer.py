"""The embedded backend's capture process: the engine, its browser and the storage uploads,
in a child process of the service.

Why a process and not a thread: in one interpreter the capture loop (Playwright's protocol
messages, base64 screenshots, JSON records) holds the GIL in bursts of milliseconds, and
every one of those is a wait for the API's loop; under overload the tail of a 429 grew from
the ~10 ms a bare uvicorn needs on the same machine to ~60 ms. Apart, the API's process
only parses, admits and answers.

The protocol is JSON over a ``multiprocessing`` pipe, one message per frame:
``{"op": "capture", "id": N, "request": WIRE}`` one way, ``{"id": N, "record": RECORD}``
back; ``{"op": "ready"}`` or ``{"op": "failed", "error": "..."}`` once at start-up;
``{"op": "close"}`` to stop. The child retries transient failures by the worker's rule
(``actors.capture.retry_allowed``), so a record that comes back is final.

The child ignores SIGINT and SIGTERM (the service drains, then sends ``close``) and stops
by itself, closing its browser, when the pipe breaks: a service killed with SIGKILL leaves
no capture process and no browser behind.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ctypes
import json
import logging
import os
import signal
import threading
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from ..actors.capture import result_for_payload, retry_allowed
from ..actors.runtime import WorkerRuntime
from ..core.contracts import EngineConfig
from ..core.errors import DistshotError
from ..core.models import ShotRequest, ShotResult
from ..core.service import capture_request

logger = logging.getLogger("distshot.serve")


@dataclass(frozen=True)
class CaptureSpec:
    """What the child needs to build its runtime (sent pickled at spawn)."""

    engine: str
    engine_config: EngineConfig
    storage: str
    upload_threads: int = 4
    max_attempts: int = 3
    min_backoff: float = 0.5
    log_level: int = logging.INFO
    hash_images: bool = True
    #: Added to the child's nice value, and so its browsers' (they inherit it): under
    #: overload Chromium takes every core, and the API's process, at the service's own
    #: nice, must still get the CPU to parse, admit, refuse with 429 and answer at once.
    #: Nice only weighs when the CPU is contended: alone the browsers run at full speed.
    nice: int = 0


def send(conn: Connection, message: dict[str, Any]) -> None:
    conn.send_bytes(json.dumps(message).encode())


def child_main(conn: Connection, spec: CaptureSpec) -> None:
    """The capture process's entry point (``multiprocessing`` spawn target)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if spec.nice:
        os.nice(spec.nice)  # before the browser starts: its processes inherit it
        _keep_children_nice()
    logging.basicConfig(level=spec.log_level, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(_Child(conn, spec).run())


_PR_CAPBSET_DROP, _CAP_SYS_NICE = 24, 23  # <linux/prctl.h>, <linux/capability.h>


def _keep_children_nice() -> None:
    """Chromium sets its threads' priorities itself: as root (holding CAP_SYS_NICE) it puts
    them back to 0, and its IO and compositor threads to -8, above the API's process, so an
    inherited nice is lost. Without the capability it can only keep what it inherited (its
    attempts fail quietly). As root, this process takes CAP_SYS_NICE out of its bounding set:
    no program it starts (Playwright's driver, the browser) gets it. Not root: nothing to do."""
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_CAPBSET_DROP, _CAP_SYS_NICE, 0, 0, 0) != 0:
        logger.warning(
            "could not keep the browsers nicer than the API (prctl: %s)",
            os.strerror(ctypes.get_errno()),
        )


class _Child:
    def __init__(self, conn: Connection, spec: CaptureSpec) -> None:
        self.conn = conn
        self.spec = spec
        self.runtime = WorkerRuntime(
            spec.engine,
            spec.engine_config,
            default_storage=spec.storage,
            hash_images=spec.hash_images,
        )
        self.stopping = False
        self.tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        uploads = concurrent.futures.ThreadPoolExecutor(
            self.spec.upload_threads, thread_name_prefix="distshot-store"
        )
        loop.set_default_executor(uploads)
        inbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

        def read() -> None:
            while True:
                try:
                    message = json.loads(self.conn.recv_bytes())
                except (EOFError, OSError):
                    loop.call_soon_threadsafe(inbox.put_nowait, None)  # the service is gone
                    return
                loop.call_soon_threadsafe(inbox.put_nowait, message)

        threading.Thread(target=read, name="distshot-capture-pipe", daemon=True).start()
        try:
            # A bad folder or a browser that cannot start fails the service's start-up
            # with one line, not every request.
            await asyncio.to_thread(self.runtime.storage, None)
            await self.runtime.engine()
        except DistshotError as exc:
            send(self.conn, {"op": "failed", "error": exc.message})
            await self.runtime.close()
            return
        send(self.conn, {"op": "ready"})
        try:
            while (message := await inbox.get()) is not None and message["op"] != "close":
                task = asyncio.create_task(self._capture(message["id"], message["request"]))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
        finally:
            self.stopping = True
            for task in list(self.tasks):
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)
            await self.runtime.close()
            uploads.shutdown(wait=True)

    async def _capture(self, job: int, wire: dict[str, Any]) -> None:
        """Capture one request and send its record back; whatever happens, a record goes
        back (a request the service waits for must never be lost to an exception here)."""
        try:
            record = await self._record(wire)
        except Exception as exc:  # a bug, not the page's fault: still one record
            logger.exception("capture of %s failed unexpectedly", wire.get("url"))
            error = DistshotError(f"internal error: {type(exc).__name__}: {exc}")
            result = result_for_payload(wire, "failed", error, 1)
            assert result is not None  # the service always sends an id
            record = result.to_record()
        # The service may be gone; its restart captures this request again.
        with contextlib.suppress(OSError):
            send(self.conn, {"id": job, "record": record})

    async def _record(self, wire: dict[str, Any]) -> dict[str, Any]:
        try:
            request = ShotRequest.from_wire(wire)
        except DistshotError as exc:  # the service checked it: a mismatch, but answer it
            rejected = result_for_payload(wire, "rejected", exc, 1)
            assert rejected is not None
            return rejected.to_record()
        attempt = 1
        while True:
            try:
                storage = self.runtime.storage(request.storage)
                engine = await self.runtime.engine()
            except DistshotError as exc:
                result = ShotResult.from_error(request.id, request.line, request.url, "failed", exc)
                result.attempts, result.engine = attempt, self.runtime.engine_name
            else:
                result = await capture_request(
                    request,
                    engine,
                    storage,
                    attempt=attempt,
                    hash_images=self.runtime.hash_images,
                    secrets_dir=self.runtime.engine_config.secrets_dir,
                )
            retry = retry_allowed(result, attempt - 1, self.spec.max_attempts - 1)
            if result.status != "failed" or not retry or self.stopping:
                break
            await asyncio.sleep(self.spec.min_backoff * 2 ** (attempt - 1))
            attempt += 1
        return result.to_record()
