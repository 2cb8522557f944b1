"""The RabbitMQ side: a broker that can answer on reply queues, and worker set-up from config."""

from __future__ import annotations

from typing import Any

import dramatiq
import pika
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.errors import ConnectionClosed

from ..core.config import Settings, load_settings, parse_listen
from .reply_consumer import PERSISTENT, ReplyingConsumer
from .runtime import WorkerRuntime
from .worker_stack import install_worker


class DistshotBroker(RabbitmqBroker):
    """RabbitMQ with delivery confirms, batched request publishing for the dispatcher, and
    the replying consumer for workers (replies leave through it, not through ``enqueue``:
    a worker consumes every queue it declares, so it must not declare reply queues)."""

    #: The reply middleware hands replies to the consumer (see ``ReplyingConsumer``).
    defers_replies = True

    def __init__(self, url: str, **kwargs: Any) -> None:
        super().__init__(url=url, confirm_delivery=True, **kwargs)

    @property
    def consumer_class(self) -> type[ReplyingConsumer]:
        return ReplyingConsumer

    def publish_batch(self, messages: list[dramatiq.Message[Any]]) -> None:
        """Publish requests in one AMQP transaction: one round trip for the whole batch,
        and on commit every message is with the broker (pika's blocking channel waits for
        each publisher confirm separately, which capped a dispatcher at a few hundred/s)."""
        try:
            for queue_name in {message.queue_name for message in messages}:
                self.declare_queue(queue_name, ensure=True)
            channel = self._tx_channel()
            # The callback-style channel under the blocking one only buffers the frames;
            # the blocking channel's own publish would flush the socket once per message.
            # tx_commit sends them all and waits for the broker once.
            for message in messages:
                channel._impl.basic_publish(
                    exchange="",
                    routing_key=message.queue_name,
                    body=message.encode(),
                    properties=PERSISTENT,
                )
            channel.tx_commit()
        except (pika.exceptions.AMQPConnectionError, pika.exceptions.AMQPChannelError) as exc:
            self._tx = None
            del self.connection
            raise ConnectionClosed(exc) from None  # type: ignore[no-untyped-call]

    def _tx_channel(self) -> Any:
        tx = getattr(self, "_tx", None)
        if tx is None or not tx.is_open:
            tx = self.connection.channel()
            tx.tx_select()
            self._tx = tx
        return tx


def build_worker_broker(settings: Settings) -> tuple[DistshotBroker, WorkerRuntime]:
    """A RabbitMQ broker with the worker middleware and the capture actor declared."""
    runtime = WorkerRuntime(
        settings.engine,
        settings.engine_config(),
        default_storage=settings.storage_url(),
        queue_prefix=settings.queue_prefix,
        hash_images=settings.phash,
    )
    broker = DistshotBroker(settings.broker_url, middleware=[])
    install_worker(
        broker,
        runtime,
        max_attempts=settings.max_attempts,
        pin_cpu=settings.pin_cpu,
        metrics=parse_listen(settings.metrics),
    )
    return broker, runtime


def configure_from_environment() -> DistshotBroker:
    """For ``dramatiq distshot.actors``: settings from DISTSHOT_* and distshot.toml
    (DISTSHOT_CONFIG names another file), set as Dramatiq's global broker."""
    import os

    settings = load_settings(os.environ.get("DISTSHOT_CONFIG"))
    broker, _ = build_worker_broker(settings)
    dramatiq.set_broker(broker)
    return broker
