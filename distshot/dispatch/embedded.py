"""Embedded mode: the same actors, middleware and dispatcher in one process, no broker.

A StubBroker stands in for RabbitMQ and an in-process Dramatiq Worker runs the capture
actor with ``concurrency`` threads, all sharing one event loop and so one browser.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from dramatiq import Worker
from dramatiq.brokers.stub import StubBroker

from ..actors.capture import queue_for
from ..actors.runtime import WorkerRuntime
from ..actors.worker_stack import install_worker
from ..core.contracts import EngineConfig
from ..core.inputs import InputItem
from ..core.manifest import ManifestWriter
from ..engines.preflight import START_TIMEOUT, start_failure
from .dispatcher import Counts, Dispatcher, ProgressCallback

#: How long a stopping worker waits for in-flight jobs after they were told to stop.
_STOP_TIMEOUT_MS = 15_000


@dataclass(frozen=True)
class EmbeddedSettings:
    engine: str = "playwright"
    storage: str = "shots"
    concurrency: int = 2
    max_attempts: int = 3
    min_backoff_ms: int = 500
    engine_config: EngineConfig = field(default_factory=EngineConfig)
    hash_images: bool = True


def run_embedded(
    items: Iterable[InputItem],
    *,
    batch: str,
    manifest: ManifestWriter,
    settings: EmbeddedSettings,
    on_progress: ProgressCallback | None = None,
) -> Counts:
    runtime = WorkerRuntime(
        settings.engine,
        settings.engine_config,
        default_storage=settings.storage,
        hash_images=settings.hash_images,
    )
    runtime.storage(settings.storage)  # made and checked: a bad folder fails once, at start-up

    broker = StubBroker(middleware=[])
    install_worker(
        broker,
        runtime,
        max_attempts=settings.max_attempts,
        min_backoff_ms=settings.min_backoff_ms,
        max_backoff_ms=max(settings.min_backoff_ms, 5_000),
    )
    broker.emit_after("process_boot")
    worker = Worker(
        broker,
        worker_threads=settings.concurrency,
        queues={queue_for(settings.engine)},
        # Threads poll their queues this often (ms); Dramatiq's 1 s default would add up
        # to 2 s to every run's shutdown.
        worker_timeout=100,
    )
    worker.start()
    try:
        _open_engine(runtime)
        dispatcher = Dispatcher(
            broker,
            batch=batch,
            manifest=manifest,
            default_engine=settings.engine,
            # Enough queued work that no worker thread idles while a reply is written.
            window=settings.concurrency * 4,
            engines={settings.engine},
            on_progress=on_progress,
            poll_ms=100,
        )
        return dispatcher.run(items)
    finally:
        worker.stop(timeout=_STOP_TIMEOUT_MS)
        broker.close()


def _open_engine(runtime: WorkerRuntime) -> None:
    """Open the engine now, in the workers' event loop (where the jobs will use it): one
    that cannot start at all is a ConfigError before the first URL, not a failed record per
    URL after every retry. Opening it here rather than in a separate check launches the
    browser once, not twice."""
    import asyncio

    from dramatiq.asyncio import get_event_loop_thread

    loop_thread = get_event_loop_thread()
    assert loop_thread is not None, "the AsyncIO middleware is missing"

    async def open_within_timeout() -> None:
        await asyncio.wait_for(runtime.engine(), START_TIMEOUT)

    try:
        loop_thread.run_coroutine(open_within_timeout())
    except Exception as exc:
        raise start_failure(runtime.engine_name, exc) from None
