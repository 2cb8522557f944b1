"""A RabbitMQ consumer that publishes each request's reply itself and acks the request only
once the broker has confirmed the reply.

Why: Dramatiq publishes from the worker thread on a blocking channel that waits for every
publisher confirm in turn, so each reply cost a full broker round trip (and an fsync) while
the thread sat idle; a worker process topped out near 400 replies/s. Here the worker thread
hands the encoded reply to the consumer's own connection and moves on; the consumer thread
publishes it on a confirm-mode channel without waiting, and the broker's confirms, which it
batches (``multiple``), release the request acks. The guarantee is unchanged: a request is
acked (or dead-lettered) only after its reply is safely with the broker, so a worker killed
at any point leaves either no reply and an unacked request (redelivered, answered again) or a
reply and an unacked request (redelivered; the dispatcher drops the duplicate by id).
"""

from __future__ import annotations

import logging
import threading
import time
from functools import partial
from typing import Any

import pika
from dramatiq.broker import MessageProxy
from dramatiq.brokers.rabbitmq import _RabbitmqConsumer
from dramatiq.errors import ConnectionClosed
from pika import spec

logger = logging.getLogger("distshot.reply")

#: How long a closing consumer waits for outstanding reply confirms before it gives up (the
#: requests then stay unacked and RabbitMQ redelivers them).
CLOSE_WAIT_S = 10.0
PERSISTENT = pika.BasicProperties(delivery_mode=2)  # delivery_mode 2: kept on disk
_REPLY_ATTRIBUTE = "_distshot_reply"
_OWNER_ATTRIBUTE = "_distshot_consumer"  # the consumer (connection) that delivered it
_CONNECTION_ERRORS = (pika.exceptions.AMQPConnectionError, pika.exceptions.AMQPChannelError)


def attach_reply(message: MessageProxy, queue_name: str, body: bytes) -> None:
    """Ask the consumer that delivered ``message`` to publish ``body`` to ``queue_name``
    before it settles the message (ack, or dead-letter when the message failed)."""
    setattr(message, _REPLY_ATTRIBUTE, (queue_name, body))


class ReplyingConsumer(_RabbitmqConsumer):
    """Dramatiq's RabbitMQ consumer, plus reply-then-settle for messages carrying a reply.

    Every pika call happens on the consumer thread: worker threads only schedule work with
    ``add_callback_threadsafe``, which the consumer runs between deliveries.
    """

    def __init__(self, broker: Any, queue_name: str, prefetch: int, timeout: int) -> None:
        super().__init__(broker, queue_name, prefetch, timeout)  # type: ignore[no-untyped-call]
        self._replies: Any = None  # the confirm-mode pika Channel, opened on first use
        self._published = 0
        # publish sequence number -> (request delivery tag, ack it (else dead-letter it))
        self._unconfirmed: dict[int, tuple[int, bool]] = {}

    def __next__(self) -> MessageProxy | None:
        message: MessageProxy | None = super().__next__()  # type: ignore[no-untyped-call]
        if message is not None:
            setattr(message, _OWNER_ATTRIBUTE, self)
        return message

    def ack(self, message: MessageProxy) -> None:
        self._settle(message, ack=True)

    def nack(self, message: MessageProxy) -> None:
        self._settle(message, ack=False)

    def ack_all_received(self, messages: list[MessageProxy]) -> None:
        """Ack ``messages`` with one ``multiple`` ack of the highest tag, from the consuming
        thread itself. Only right when every message received so far and not yet acked is
        in ``messages`` (the dispatcher acks all it has received, in groups): delivery tags
        grow in delivery order, so the ack covers exactly those."""
        messages = [m for m in messages if getattr(m, _OWNER_ATTRIBUTE, None) is self]
        if not messages:
            return
        for message in messages:
            self.known_tags.discard(message._tag)
        try:
            self.channel.basic_ack(max(message._tag for message in messages), multiple=True)
        except _CONNECTION_ERRORS as exc:
            raise ConnectionClosed(exc) from None  # type: ignore[no-untyped-call]

    def _settle(self, message: MessageProxy, *, ack: bool) -> None:
        if getattr(message, _OWNER_ATTRIBUTE, None) is not self:
            # Delivered on a connection that has since been replaced (Dramatiq retries a
            # failed ack on the new consumer). Its tag means nothing here: delivery tags
            # restart at 1 on every channel, so settling it could ack another, newer
            # delivery, whose own reply would then never go out. RabbitMQ redelivers it.
            logger.warning("%s not settled: its delivery is gone", message.message_id)
            return
        reply = getattr(message, _REPLY_ATTRIBUTE, None)
        if reply is None:
            if ack:
                super().ack(message)  # type: ignore[no-untyped-call]
            else:
                super().nack(message)  # type: ignore[no-untyped-call]
            return
        try:
            self.known_tags.remove(message._tag)
        except KeyError:
            logger.warning("reply for %s not sent: already settled", message.message_id)
            return
        try:
            self.connection.add_callback_threadsafe(
                partial(self._publish_reply, message._tag, reply, ack)
            )
        except _CONNECTION_ERRORS as exc:
            raise ConnectionClosed(exc) from None  # type: ignore[no-untyped-call]

    def _publish_reply(self, tag: int, reply: tuple[str, bytes], ack: bool) -> None:
        queue_name, body = reply
        channel = self._reply_channel()
        self._published += 1
        self._unconfirmed[self._published] = (tag, ack)
        # mandatory: a reply queue that no longer exists comes back as basic.return (logged)
        # instead of vanishing; the broker still confirms it, which settles the request.
        channel.basic_publish("", queue_name, body, properties=PERSISTENT, mandatory=True)

    def _reply_channel(self) -> Any:
        if self._replies is None or not self._replies.is_open:
            if self._unconfirmed:
                # Confirms of a closed channel never come: those requests stay unacked and
                # come back when this consumer's connection is replaced.
                self._unconfirmed.clear()
            channel = self.connection.channel()._impl  # the callback-style channel under it
            channel.confirm_delivery(self._on_confirm)
            channel.add_on_return_callback(self._on_return)
            self._replies = channel
            self._published = 0
        return self._replies

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        confirmed = method.delivery_tag
        if method.multiple:
            done = []
            for seq in self._unconfirmed:  # insertion order is publish order
                if seq > confirmed:
                    break
                done.append(seq)
        else:
            done = [confirmed]
        settle = self.channel._impl
        for seq in done:
            entry = self._unconfirmed.pop(seq, None)
            if entry is None:
                continue
            tag, ack = entry
            if isinstance(method, spec.Basic.Nack):
                # The broker could not take the reply: hand the request back to be answered.
                logger.warning("broker refused a reply; requeueing its request")
                settle.basic_nack(tag, requeue=True)
            elif ack:
                settle.basic_ack(tag)
            else:
                settle.basic_nack(tag, requeue=False)  # to the dead-letter queue

    def _on_return(self, _channel: Any, method: Any, _properties: Any, _body: bytes) -> None:
        # The dispatcher deleted its reply queue: the batch is over and nobody waits.
        logger.error("reply queue %s is gone; a reply was dropped", method.routing_key)

    def close(self) -> None:
        """Wait (a bounded time) for the replies already handed over to be confirmed, so a
        graceful stop acks what it answered, then close as Dramatiq does."""
        try:
            handed_over = threading.Event()
            self.connection.add_callback_threadsafe(handed_over.set)
            deadline = time.monotonic() + CLOSE_WAIT_S
            while (not handed_over.is_set() or self._unconfirmed) and time.monotonic() < deadline:
                self.connection.process_data_events(time_limit=0.05)
            if self._unconfirmed:
                logger.warning(
                    "%d replies unconfirmed at close; their requests will be redelivered",
                    len(self._unconfirmed),
                )
        except Exception:  # the connection may already be gone: close anyway
            logger.debug("waiting for reply confirms failed", exc_info=True)
        super().close()  # type: ignore[no-untyped-call]
