"""Open nothing at boot, close everything at shutdown: the engine lives in the event loop."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from types import FrameType
from typing import Any

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

    def after_process_boot(self, broker: dramatiq.Broker) -> None:
        """In a Dramatiq worker process, make a second SIGTERM a real kill.

        Dramatiq answers a second signal (``kill`` of the whole process group, systemd's
        default) with ``sys.exit`` in the main thread, which leaves the worker threads
        consuming and failing jobs while the interpreter winds down. ``os._exit`` instead
        drops the connection, so RabbitMQ redelivers every unacked job, and the Playwright
        driver, losing its pipe, closes the browser.
        """
        if (
            "dramatiq.cli" not in sys.modules
            or threading.current_thread() is not threading.main_thread()
        ):
            return
        previous = signal.getsignal(signal.SIGTERM)
        state = {"signalled": False}

        def on_term(signum: int, frame: FrameType | None) -> Any:
            if state["signalled"]:
                logger.warning("second SIGTERM: exiting now; unacked jobs will be redelivered")
                os._exit(3)
            state["signalled"] = True
            if callable(previous):
                return previous(signum, frame)
            return None

        signal.signal(signal.SIGTERM, on_term)

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        loop_thread = get_event_loop_thread()
        if loop_thread is None:
            return
        try:
            loop_thread.run_coroutine(self.runtime.close())
        except Exception:
            logger.exception("closing the engine failed")
