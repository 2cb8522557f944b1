"""Open nothing at boot, close everything at shutdown: the engine lives in the event loop."""

from __future__ import annotations

import logging

import dramatiq
from dramatiq.asyncio import get_event_loop_thread
from dramatiq.middleware import Middleware

from .runtime import WorkerRuntime

logger = logging.getLogger("distshot.worker")


class RuntimeLifecycle(Middleware):
    """Closes the worker's engine (and so its browser) when the worker stops.

    It must come *after* AsyncIO in the middleware list: ``after_worker_shutdown`` hooks run
    in reverse order, so this one runs while the event loop is still alive, and after the
    worker threads have finished or returned their jobs.
    """

    def __init__(self, runtime: WorkerRuntime) -> None:
        self.runtime = runtime

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        loop_thread = get_event_loop_thread()
        if loop_thread is None:
            return
        try:
            loop_thread.run_coroutine(self.runtime.close())
        except Exception:
            logger.exception("closing the engine failed")
