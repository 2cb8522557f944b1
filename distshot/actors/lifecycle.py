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

from .affinity import pin_to_own_core, should_pin
from .runtime import WorkerRuntime

logger = logging.getLogger("distshot.worker")


class RuntimeLifecycle(Middleware):
    """Closes the worker's engine (and so its browser) when the worker stops.

    It must come *after* AsyncIO in the middleware list: ``after_worker_shutdown`` hooks run
    in reverse order, so this one runs while the event loop is still alive, and after the
    worker threads have finished or returned their jobs.
    """

    def __init__(self, runtime: WorkerRuntime, *, pin_cpu: str = "off") -> None:
        self.runtime = runtime
        self.pin_cpu = pin_cpu

    def after_process_boot(self, broker: dramatiq.Broker) -> None:
        """In a Dramatiq worker process: pin it to a core if asked (before Dramatiq starts
        its threads, which then inherit the pin), and make a second SIGTERM a real kill.

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
        self._pin()
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

    def _pin(self) -> None:
        entry = self.runtime.registry.engine_entry(self.runtime.engine_name)
        if not should_pin(self.pin_cpu, entry.capabilities.starts_processes):
            return
        cpu = pin_to_own_core()
        if cpu is not None:
            logger.info("worker process %d pinned to CPU core %d", os.getpid(), cpu)

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        loop_thread = get_event_loop_thread()
        if loop_thread is None:
            return
        try:
            loop_thread.run_coroutine(self.runtime.close())
        except Exception:
            logger.exception("closing the engine failed")
