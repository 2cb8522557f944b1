"""The embedded backend: browsers in this process, no broker.

Captures run on an event loop of their own, in a thread, with one engine (one browser,
recycled by the engine) shared by at most ``concurrency`` jobs at once; the API's loop only
admits, waits and answers, so a busy browser never slows a 429 or a health check. Storage
writes go to a thread pool of their own size (``upload_threads``). Transient failures are
retried here by the worker's rule (``actors.capture.retry_allowed``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from typing import Any

from ..actors.capture import retry_allowed
from ..actors.runtime import WorkerRuntime
from ..core.errors import DistshotError
from ..core.models import ShotRequest, ShotResult
from ..core.service import capture_request
from .backend import Backend
from .limits import Admission

logger = logging.getLogger("distshot.serve")


class EmbeddedBackend(Backend):
    name = "embedded"

    def __init__(
        self,
        runtime: WorkerRuntime,
        admission: Admission,
        *,
        upload_threads: int = 4,
        max_attempts: int = 3,
        min_backoff: float = 0.5,
    ) -> None:
        self.runtime = runtime
        self.admission = admission
        self.upload_threads = upload_threads
        self.max_attempts = max_attempts
        self.min_backoff = min_backoff
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._uploads: concurrent.futures.ThreadPoolExecutor | None = None
        self._stopping = False

    async def start(self) -> None:
        self._uploads = concurrent.futures.ThreadPoolExecutor(
            self.upload_threads, thread_name_prefix="distshot-store"
        )
        ready = threading.Event()

        def run_loop() -> None:
            loop = asyncio.new_event_loop()
            assert self._uploads is not None
            loop.set_default_executor(self._uploads)
            self._loop = loop
            asyncio.set_event_loop(loop)
            ready.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run_loop, name="distshot-capture", daemon=True)
        self._thread.start()
        ready.wait()
        # The default storage and the browser are made now: a bad folder or a browser that
        # cannot start fails the start-up with one line, not every request.
        await asyncio.to_thread(self.runtime.storage, None)
        await self._in_capture_loop(self.runtime.engine())

    async def _in_capture_loop(self, coro: Any) -> Any:
        assert self._loop is not None
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._loop))

    async def execute(self, request: ShotRequest) -> dict[str, Any]:
        record: dict[str, Any] = await self._in_capture_loop(self._capture(request))
        return record

    async def _capture(self, request: ShotRequest) -> dict[str, Any]:
        attempt = 1
        while True:
            try:
                storage = self.runtime.storage(request.storage)
                engine = await self.runtime.engine()
            except DistshotError as exc:
                result = ShotResult.from_error(request.id, request.line, request.url, "failed", exc)
                result.attempts, result.engine = attempt, self.runtime.engine_name
            else:
                result = await capture_request(request, engine, storage, attempt=attempt)
            retry = retry_allowed(result, attempt - 1, self.max_attempts - 1)
            if result.status != "failed" or not retry or self._stopping:
                return result.to_record()
            await asyncio.sleep(self.min_backoff * 2 ** (attempt - 1))
            attempt += 1

    async def close(self) -> None:
        self._stopping = True
        if self._loop is not None:
            try:
                await self._in_capture_loop(self.runtime.close())
            finally:
                self._loop.call_soon_threadsafe(self._loop.stop)
                if self._thread is not None:
                    await asyncio.to_thread(self._thread.join, 30)
                self._loop = None
        if self._uploads is not None:
            self._uploads.shutdown(wait=True)
