"""Build a broker's middleware stack and declare the actors on it (stub or RabbitMQ)."""

from __future__ import annotations

import dramatiq
from dramatiq.middleware import AsyncIO, CurrentMessage, Retries, ShutdownNotifications, TimeLimit

from .capture import declare_capture_actor
from .lifecycle import RuntimeLifecycle
from .metrics import WorkerMetrics
from .reply_middleware import ReplyMiddleware
from .runtime import WorkerRuntime


def worker_middleware(
    runtime: WorkerRuntime | None,
    *,
    pin_cpu: str = "off",
    metrics: tuple[str, int] | None = None,
) -> list[dramatiq.Middleware]:
    """The order matters: Reply, then WorkerMetrics, before Retries; RuntimeLifecycle after
    AsyncIO (see each). ``metrics``: where the worker serves them (None: nowhere)."""
    stack: list[dramatiq.Middleware] = [ReplyMiddleware()]
    if metrics is not None and runtime is not None:
        stack.append(WorkerMetrics(runtime.engine_name, metrics))
    stack += [
        TimeLimit(),
        ShutdownNotifications(),
        CurrentMessage(),
        Retries(),
        AsyncIO(),
    ]
    if runtime is not None:
        stack.append(RuntimeLifecycle(runtime, pin_cpu=pin_cpu))
    return stack


def install_worker(
    broker: dramatiq.Broker,
    runtime: WorkerRuntime,
    *,
    max_attempts: int = 3,
    min_backoff_ms: int = 1000,
    max_backoff_ms: int = 30_000,
    pin_cpu: str = "off",
    metrics: tuple[str, int] | None = None,
) -> dramatiq.Actor:  # type: ignore[type-arg]
    """Add the worker middleware to a broker built without middleware, then declare actors."""
    for middleware in worker_middleware(runtime, pin_cpu=pin_cpu, metrics=metrics):
        broker.add_middleware(middleware)
    return declare_capture_actor(
        broker,
        runtime,
        max_attempts=max_attempts,
        min_backoff_ms=min_backoff_ms,
        max_backoff_ms=max_backoff_ms,
    )
