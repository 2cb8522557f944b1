"""The rabbitmq backend: requests go to the engine queues, like the dispatcher's, and the
fleet's workers answer on this instance's own reply queue.

Each instance (``--instance NAME``) has a durable reply queue, so several instances behind
a load balancer share one fleet without seeing each other's replies. Nothing accepted is
kept only in memory: a restarted instance sends again what it had accepted and not yet
recorded (the shots book and the batch manifests say what that is); the same request id
is answered at most once into a record, and a reply that arrives for an id nobody waits for
any more (the first of two answers) is acknowledged and dropped.

Publishing happens on one thread of its own (a pika connection is not thread-safe); replies
are consumed on another and handed to the event loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from typing import Any

import dramatiq
from dramatiq.errors import BrokerConnectionError

from ..actors.rabbitmq import DistshotBroker
from ..actors.reply_middleware import reply_queue_for
from ..core.errors import ReplyTimeout
from ..core.models import ShotRequest, ShotResult
from ..dispatch.dispatcher import capture_message
from ..dispatch.distributed import connect
from .backend import Backend
from .limits import Admission
from .service import ServeSettings

logger = logging.getLogger("distshot.serve")
_POLL_MS = 200


class RabbitBackend(Backend):
    name = "rabbitmq"

    def __init__(self, settings: ServeSettings, admission: Admission) -> None:
        self.settings = settings
        self.admission = admission
        self.reply_queue = reply_queue_for(f"serve-{settings.instance}", settings.queue_prefix)
        self._publisher = concurrent.futures.ThreadPoolExecutor(1, "distshot-publish")
        self._broker: DistshotBroker | None = None
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._consumer_thread: threading.Thread | None = None
        self._stopping = threading.Event()

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self._loop.run_in_executor(self._publisher, self._open)
        self._consumer_thread = threading.Thread(
            target=self._consume, name="distshot-replies", daemon=True
        )
        self._consumer_thread.start()

    def _open(self) -> None:
        broker = connect(self.settings.broker_url)  # ConfigError: one line, exit 2
        # Workers publish replies as mandatory: the queue must exist before any request.
        broker.declare_queue(self.reply_queue, ensure=True)
        self._broker = broker

    async def execute(self, request: ShotRequest) -> dict[str, Any]:
        assert self._loop is not None
        engine = request.engine or self.settings.engine
        future = self._waiting.get(request.id)
        if future is None:
            future = self._loop.create_future()
            self._waiting[request.id] = future
        message = capture_message(request, engine, self.reply_queue, self.settings.queue_prefix)
        try:
            await self._loop.run_in_executor(self._publisher, self._publish, message)
            return await asyncio.wait_for(asyncio.shield(future), self.settings.reply_timeout)
        except TimeoutError:
            error = ReplyTimeout(
                f"no reply within {self.settings.reply_timeout:g}s; is a worker serving "
                f"engine {engine!r}?"
            )
            result = ShotResult.from_error(request.id, request.line, request.url, "failed", error)
            result.engine = engine
            return result.to_record()
        finally:
            self._waiting.pop(request.id, None)

    def _publish(self, message: dramatiq.Message[Any]) -> None:
        """Publish, riding out a broker restart (the request was accepted: it must go)."""
        delay = 0.5
        while True:
            try:
                assert self._broker is not None
                self._broker.enqueue(message)
                return
            except BrokerConnectionError as exc:
                if self._stopping.is_set():
                    raise
                logger.warning("broker unreachable (%s); retrying in %.1fs", exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, 10.0)

    def _consume(self) -> None:
        assert self._broker is not None
        while not self._stopping.is_set():
            consumer: Any = None
            try:
                consumer = self._broker.consume(
                    self.reply_queue,
                    prefetch=max(16, self.admission.concurrency * 2),
                    timeout=_POLL_MS,
                )
                for message in consumer:
                    if self._stopping.is_set():
                        break
                    if message is None:
                        continue
                    record = message.args[0] if message.args else None
                    if isinstance(record, dict) and self._loop is not None:
                        handed = asyncio.run_coroutine_threadsafe(self._deliver(record), self._loop)
                        handed.result(timeout=30)
                    consumer.ack(message)
            except BrokerConnectionError as exc:
                logger.warning("reply queue connection lost (%s); reconnecting", exc)
                self._stopping.wait(1.0)
            except Exception:
                logger.exception("reply consumer failed; restarting it")
                self._stopping.wait(1.0)
            finally:
                if consumer is not None:
                    try:
                        consumer.close()
                    except Exception:
                        logger.debug("consumer close failed", exc_info=True)

    async def _deliver(self, record: dict[str, Any]) -> None:
        future = self._waiting.get(str(record.get("id")))
        if future is not None and not future.done():
            future.set_result(record)

    async def close(self) -> None:
        self._stopping.set()
        if self._consumer_thread is not None:
            await asyncio.to_thread(self._consumer_thread.join, 10)
        broker, self._broker = self._broker, None
        if broker is not None:
            await asyncio.get_running_loop().run_in_executor(self._publisher, broker.close)
        self._publisher.shutdown(wait=True)
