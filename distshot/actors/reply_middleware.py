"""Exactly one reply per request, on success or after the final failure, never on a retry."""

from __future__ import annotations

import logging
from typing import Any

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.middleware import Middleware

from ..core.config import DEFAULT_QUEUE_PREFIX
from ..core.errors import InvalidRequest
from .capture import CAPTURE_ACTOR, CaptureFailed, pop_outcome, result_for_payload
from .reply_consumer import attach_reply

REPLY_ACTOR = "distshot.reply"
logger = logging.getLogger("distshot.reply")


def reply_queue_for(batch: str, prefix: str = DEFAULT_QUEUE_PREFIX) -> str:
    return f"{prefix}.reply.{batch}"


class ReplyMiddleware(Middleware):
    """Sends the capture actor's outcome to the message's ``reply_to`` queue.

    It must come *before* Retries in the middleware list: ``after_*`` hooks run in reverse
    order, so by the time this one runs, Retries has either re-enqueued the message (no reply
    yet) or marked it failed (final: reply now).
    """

    @property
    def actor_options(self) -> set[str]:
        return {"reply_to"}

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        if message.actor_name != CAPTURE_ACTOR:
            return
        outcome = pop_outcome(message.message_id)
        reply_to = message.options.get("reply_to")
        if not reply_to:
            return
        record: dict[str, Any] | None
        if exception is None:
            record = outcome
        elif not message.failed:
            return  # Retries re-enqueued it: the final attempt will answer.
        elif isinstance(exception, CaptureFailed):
            record = exception.result.to_record()
        else:
            record = _unexpected_failure(message, exception)
            if record is None:
                logger.error("dead-lettered message %s: %s", message.message_id, exception)
        if record is None:
            return
        if getattr(broker, "defers_replies", False):
            # The consumer publishes it and acks the request once the reply is confirmed.
            attach_reply(message, reply_to, reply_message(reply_to, record).encode())
        else:
            send_reply(broker, reply_to, record)

    def after_skip_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        # A skipped message (for example one past its age limit) is final too.
        self.after_process_message(
            broker, message, exception=RuntimeError("message skipped by the worker")
        )


def _unexpected_failure(message: MessageProxy, exception: BaseException) -> dict[str, Any] | None:
    error = InvalidRequest(f"{type(exception).__name__}: {exception}")
    attempt = message.options.get("retries", 0) + 1
    result = result_for_payload(message.args[0] if message.args else None, "failed", error, attempt)
    return result.to_record() if result is not None else None


def reply_message(queue_name: str, record: dict[str, Any]) -> dramatiq.Message[Any]:
    return dramatiq.Message(
        queue_name=queue_name, actor_name=REPLY_ACTOR, args=(record,), kwargs={}, options={}
    )


def send_reply(broker: dramatiq.Broker, queue_name: str, record: dict[str, Any]) -> None:
    """Put one reply on ``queue_name`` right away, on a broker that does not defer replies
    to its consumer (the embedded mode's StubBroker, whose dispatcher declared the queue)."""
    broker.enqueue(reply_message(queue_name, record))
