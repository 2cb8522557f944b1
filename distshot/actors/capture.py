"""The capture actor: one message in, one ``ShotResult`` out (as the actor's result).

Outcome rules, which the reply middleware relies on:
- ``ok`` and ``rejected`` return normally;
- ``failed`` raises ``CaptureFailed``: the Retries middleware retries it while the error is
  transient and attempts remain, and otherwise fails (dead-letters) the message.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import dramatiq
from dramatiq.middleware import CurrentMessage, Shutdown

from ..core.config import DEFAULT_QUEUE_PREFIX
from ..core.errors import DistshotError, InvalidRequest
from ..core.models import ShotRequest, ShotResult
from ..core.service import capture_request
from .runtime import WorkerRuntime

CAPTURE_ACTOR = "distshot.capture"
logger = logging.getLogger("distshot.worker")


def queue_for(engine: str, prefix: str = DEFAULT_QUEUE_PREFIX) -> str:
    """The queue an engine's workers consume. A prefix keeps tenants (or tests) apart."""
    return f"{prefix}.{engine}"


class CaptureFailed(dramatiq.Retry):
    """Carries a failed result out of the actor so Retries can judge it. A ``Retry`` so
    that Dramatiq does not log an expected failure as an unhandled exception."""

    def __init__(self, result: ShotResult) -> None:
        super().__init__(f"{result.id}: {result.error}")
        self.result = result


_outcomes: dict[str, dict[str, Any]] = {}
_outcomes_lock = threading.Lock()


def set_outcome(message_id: str, record: dict[str, Any]) -> None:
    """Hand a final record to the reply middleware. (Returning it from the actor would make
    Dramatiq warn on every job that no Results middleware keeps return values.)"""
    with _outcomes_lock:
        _outcomes[message_id] = record


def pop_outcome(message_id: str) -> dict[str, Any] | None:
    with _outcomes_lock:
        return _outcomes.pop(message_id, None)


def peek_outcome(message_id: str) -> dict[str, Any] | None:
    """The outcome, left for the reply middleware to take."""
    with _outcomes_lock:
        return _outcomes.get(message_id)


class MalformedMessage(Exception):
    """A message with no usable id: it cannot be answered, only dead-lettered."""


def result_for_payload(
    payload: Any, status: str, error: DistshotError, attempt: int
) -> ShotResult | None:
    """A result for a message we could not process, if it carries an id to answer to."""
    if not isinstance(payload, dict) or not isinstance(payload.get("id"), str) or not payload["id"]:
        return None
    line = payload["line"] if isinstance(payload.get("line"), int) else 0
    url = payload["url"] if isinstance(payload.get("url"), str) else ""
    result = ShotResult.from_error(payload["id"], line, url, status, error)
    result.attempts = attempt
    return result


#: A job that ran out of time is tried once more at most, whatever ``max_attempts`` says: a
#: slow server or a busy moment deserves a second chance, but a page whose own script never
#: yields wedges again every time, and each attempt costs a whole timeout.
TIMEOUT_RETRIES = 1


def should_retry(max_retries: int) -> Any:
    """Retry transient capture failures and anything unexpected (a stopping worker, a
    broken connection) while attempts remain; never retry a permanent failure, and a timed
    out job once at most."""

    def retry_when(retries: int, exception: BaseException) -> bool:
        if isinstance(exception, Shutdown):
            return True  # the worker is stopping: hand the job back for another worker
        if isinstance(exception, CaptureFailed):
            return retry_allowed(exception.result, retries, max_retries)
        return retries < max_retries

    return retry_when


def retry_allowed(result: ShotResult, retries: int, max_retries: int) -> bool:
    """Whether a failed result gets another attempt after ``retries`` retries: transient
    failures while attempts remain, a timeout once at most (the service's embedded backend
    retries by the same rule)."""
    limit = max_retries
    if result.error is not None and result.error["type"] == "NavigationTimeout":
        limit = min(max_retries, TIMEOUT_RETRIES)
    return result.transient and retries < limit


def declare_capture_actor(
    broker: dramatiq.Broker,
    runtime: WorkerRuntime,
    *,
    max_attempts: int = 3,
    min_backoff_ms: int = 1000,
    max_backoff_ms: int = 30_000,
    time_limit_ms: int = 660_000,
) -> dramatiq.Actor:  # type: ignore[type-arg]
    """Declare the capture actor on ``broker``, consuming this worker's engine queue."""

    async def capture(payload: Any) -> None:
        message = CurrentMessage.get_current_message()
        assert message is not None, "the CurrentMessage middleware is missing"
        attempt = message.options.get("retries", 0) + 1
        try:
            record = await _capture(payload, attempt)
        except MalformedMessage as exc:
            logger.error("dead-lettering message %s: %s", message.message_id, exc)
            raise
        set_outcome(message.message_id, record)

    async def _capture(payload: Any, attempt: int) -> dict[str, Any]:
        try:
            request = ShotRequest.from_wire(payload)
        except DistshotError as exc:
            rejected = result_for_payload(payload, "rejected", exc, attempt)
            if rejected is None:
                raise MalformedMessage(f"cannot answer a message without an id: {exc}") from None
            return rejected.to_record()
        if request.engine not in (None, runtime.engine_name):
            wrong = InvalidRequest(
                f"this worker runs engine {runtime.engine_name!r}, not {request.engine!r}"
            )
            return ShotResult.from_error(
                request.id, request.line, request.url, "rejected", wrong
            ).to_record()
        try:
            storage = runtime.storage(request.storage)
            engine = await runtime.engine()
        except DistshotError as exc:
            result = ShotResult.from_error(request.id, request.line, request.url, "failed", exc)
            result.attempts = attempt
            result.engine = runtime.engine_name
            raise CaptureFailed(result) from None
        result = await capture_request(
            request,
            engine,
            storage,
            attempt=attempt,
            hash_images=runtime.hash_images,
            secrets_dir=runtime.engine_config.secrets_dir,
        )
        if result.status == "failed":
            raise CaptureFailed(result)
        return result.to_record()

    return dramatiq.Actor(
        capture,
        broker=broker,
        actor_name=CAPTURE_ACTOR,
        queue_name=queue_for(runtime.engine_name, runtime.queue_prefix),
        priority=0,
        options={
            "max_retries": max_attempts - 1,
            "retry_when": should_retry(max_attempts - 1),
            "min_backoff": min_backoff_ms,
            "max_backoff": max_backoff_ms,
            "time_limit": time_limit_ms,
            "throws": (MalformedMessage,),
            # On stop, interrupt jobs (their browser contexts close) and requeue them.
            "notify_shutdown": True,
        },
    )
