"""Send one message per request and write one manifest record per reply.

The dispatcher works with any Dramatiq broker (StubBroker in embedded mode, RabbitMQ in
distributed mode). It keeps at most ``window`` requests in flight; it acknowledges a reply
only once its record is on disk (records are fsynced in small groups, then their replies
acked together); it drops duplicate replies by id; it survives broker restarts by
reconnecting; and it reports requests nobody answered once ``wait_timeout`` passes with
no reply at all.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.errors import BrokerConnectionError

from ..actors.capture import CAPTURE_ACTOR, queue_for
from ..actors.reply_middleware import reply_queue_for
from ..core.config import DEFAULT_QUEUE_PREFIX
from ..core.errors import ConfigError, InvalidRequest, ReplyTimeout
from ..core.inputs import InputItem, Rejection
from ..core.manifest import ManifestWriter
from ..core.models import RECORD_FIELDS, ShotRequest, ShotResult
from .journal import LineSet, SentJournal, line_of

logger = logging.getLogger("distshot.dispatch")

#: Records written but not yet fsynced/acked are flushed at this count or this age.
_ACK_GROUP = 256
_ACK_AGE = 0.05
#: How long to keep trying when the broker is unreachable before giving up on the run.
_RECONNECT_FOR = 300.0
#: Extra time a worker may hold a job beyond its capture timeout (store, clean-up).
_TIME_LIMIT_GRACE_S = 60


@dataclass
class Counts:
    ok: int = 0
    failed: int = 0
    rejected: int = 0
    sent: int = 0
    skipped: int = 0  # already in the manifest (resume)
    in_flight: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def done(self) -> int:
        return self.ok + self.failed + self.rejected

    def add(self, status: str) -> None:
        if status == "ok":
            self.ok += 1
        elif status == "rejected":
            self.rejected += 1
        else:
            self.failed += 1

    @property
    def all_ok(self) -> bool:
        return self.failed == 0 and self.rejected == 0


ProgressCallback = Callable[[Counts], None]


@dataclass
class _Pending:
    line: int
    url: str
    engine: str


class Dispatcher:
    def __init__(
        self,
        broker: dramatiq.Broker,
        *,
        batch: str,
        manifest: ManifestWriter,
        default_engine: str,
        window: int = 100,
        wait_timeout: float | None = None,
        engines: set[str] | None = None,
        done_lines: LineSet | None = None,
        journal: SentJournal | None = None,
        on_progress: ProgressCallback | None = None,
        poll_ms: int = 200,
        queue_prefix: str = DEFAULT_QUEUE_PREFIX,
    ) -> None:
        self.broker = broker
        self.batch = batch
        self.manifest = manifest
        self.default_engine = default_engine
        self.window = max(1, window)
        self.wait_timeout = wait_timeout
        self.engines = engines
        self.done_lines = done_lines or LineSet()
        self.journal = journal
        self.on_progress = on_progress
        self.poll_ms = poll_ms
        self.queue_prefix = queue_prefix
        self.reply_queue = reply_queue_for(batch, queue_prefix)
        self.counts = Counts()
        self._pending: dict[str, _Pending] = {}
        self._unacked: list[MessageProxy] = []
        self._outbox: list[tuple[dramatiq.Message[Any], int]] = []
        self._refill_step = max(1, self.window // 4)
        self._oldest_unacked = 0.0
        self._consumer: Any = None

    # -- the loop ---------------------------------------------------------------------

    def run(self, items: Iterable[InputItem]) -> Counts:
        self._retrying(self._declare_reply_queue)
        source: Iterator[InputItem] | None = iter(items)
        last_reply = time.monotonic()
        try:
            idle = True
            while True:
                # Refill in steps, not one by one: a step is published as one batch.
                if idle or len(self._pending) <= self.window - self._refill_step:
                    while source is not None and len(self._pending) < self.window:
                        item = next(source, None)
                        if item is None:
                            source = None
                        else:
                            self._take(item)
                    self._publish_outbox()
                if source is None and not self._pending:
                    break
                message = self._next_reply()
                idle = message is None
                if message is None:
                    self._flush_acks()
                    silent_for = time.monotonic() - last_reply
                    if self.wait_timeout is not None and silent_for > self.wait_timeout:
                        self._expire_pending()
                    continue
                last_reply = time.monotonic()
                self._record_reply(message)
                if len(self._unacked) >= _ACK_GROUP or (
                    time.monotonic() - self._oldest_unacked > _ACK_AGE
                ):
                    self._flush_acks()
            self._flush_acks()
        finally:
            self._close_consumer()
        return self.counts

    def _declare_reply_queue(self) -> None:
        # RabbitmqBroker declares lazily unless asked to ensure it; workers publish replies
        # with `mandatory`, so the queue must exist before the first request goes out.
        if isinstance(self.broker, RabbitmqBroker):
            self.broker.declare_queue(self.reply_queue, ensure=True)
        else:
            self.broker.declare_queue(self.reply_queue)

    def _take(self, item: InputItem) -> None:
        if item.line in self.done_lines:
            self.counts.skipped += 1
            return
        if isinstance(item, Rejection):
            result = ShotResult.from_error(item.id, item.line, item.raw, "rejected", item.error)
            self._write(result.to_record())
            return
        engine = item.engine or self.default_engine
        if self.engines is not None and engine not in self.engines:
            error = InvalidRequest(
                f"engine {engine!r} is not running here; running: {', '.join(sorted(self.engines))}"
            )
            record = ShotResult.from_error(item.id, item.line, item.url, "rejected", error)
            self._write(record.to_record())
            return
        pending = _Pending(item.line, item.url, engine)
        if self.journal is not None and item.line in self.journal.sent:
            # Sent by the run that died: its reply is queued or on its way. Wait for it.
            self._pending[item.id] = pending
            self.counts.in_flight = len(self._pending)
            return
        self._send(item, pending)

    def _send(self, request: ShotRequest, pending: _Pending) -> None:
        message = capture_message(request, pending.engine, self.reply_queue, self.queue_prefix)
        self._pending[request.id] = pending
        self._outbox.append((message, request.line))

    def _publish_outbox(self) -> None:
        """Publish the queued requests as one batch (one broker round trip on RabbitMQ)."""
        if not self._outbox:
            return
        messages = [message for message, _ in self._outbox]
        publish_batch = getattr(self.broker, "publish_batch", None)
        if publish_batch is not None:
            self._retrying(lambda: publish_batch(messages))
        else:
            for message in messages:
                self._retrying(functools.partial(self.broker.enqueue, message))
        # Journal after publishing: a crash in between re-sends on resume (a duplicate reply,
        # dropped by id) rather than waiting forever for a message that was never sent.
        if self.journal is not None:
            self.journal.record_many(line for _, line in self._outbox)
        self.counts.sent += len(self._outbox)
        self.counts.in_flight = len(self._pending)
        self._outbox.clear()

    # -- replies ----------------------------------------------------------------------

    def _next_reply(self) -> MessageProxy | None:
        try:
            if self._consumer is None:
                self._consumer = self.broker.consume(
                    self.reply_queue, prefetch=self.window * 2, timeout=self.poll_ms
                )
            return next(self._consumer)  # type: ignore[no-any-return]
        except BrokerConnectionError as exc:
            # Unacked replies come back after the reconnect; they are deduplicated by id.
            logger.warning("reply queue connection lost (%s); reconnecting", exc)
            self._unacked.clear()
            self._close_consumer()
            time.sleep(1.0)
            return None

    def _record_reply(self, message: MessageProxy) -> None:
        record = message.args[0] if message.args else None
        # A reply whose id is not pending is a duplicate (redelivery) or from an earlier
        # run and already written; it is acked and dropped.
        request_id = record.get("id") if isinstance(record, dict) else None
        if isinstance(request_id, str) and self._pending.pop(request_id, None) is not None:
            assert isinstance(record, dict)
            self._write({name: record.get(name) for name in RECORD_FIELDS})
        if not self._unacked:
            self._oldest_unacked = time.monotonic()
        self._unacked.append(message)

    def _flush_acks(self) -> None:
        """Make the records durable, then acknowledge the replies that carried them."""
        if not self._unacked:
            return
        self.manifest.sync()
        try:
            ack_all = getattr(self._consumer, "ack_all_received", None)
            if ack_all is not None:
                ack_all(self._unacked)  # one frame for the group (RabbitMQ)
            else:
                for message in self._unacked:
                    self._consumer.ack(message)
        except BrokerConnectionError:
            logger.warning("could not ack replies; they will be redelivered and dropped as dupes")
        self._unacked.clear()

    def _close_consumer(self) -> None:
        if self._consumer is not None:
            try:
                self._consumer.close()
            except Exception:
                logger.debug("consumer close failed", exc_info=True)
            self._consumer = None

    def _expire_pending(self) -> None:
        for request_id, pending in list(self._pending.items()):
            error = ReplyTimeout(
                f"no reply within {self.wait_timeout:g}s; is a worker serving engine "
                f"{pending.engine!r} (queue {queue_for(pending.engine, self.queue_prefix)})?"
            )
            result = ShotResult.from_error(request_id, pending.line, pending.url, "failed", error)
            result.engine = pending.engine
            del self._pending[request_id]
            self._write(result.to_record())

    def _write(self, record: dict[str, Any]) -> None:
        self.manifest.write(record)
        line = line_of(str(record.get("id", "")))
        if line is not None:
            self.done_lines.add(line)
        self.counts.add(str(record.get("status")))
        self.counts.in_flight = len(self._pending)
        if self.on_progress is not None:
            self.on_progress(self.counts)

    def _retrying(self, action: Callable[[], object]) -> None:
        """Run a broker call, retrying through an outage for up to ``_RECONNECT_FOR``."""
        deadline = time.monotonic() + _RECONNECT_FOR
        delay = 0.5
        while True:
            try:
                action()
                return
            except BrokerConnectionError as exc:
                if time.monotonic() > deadline:
                    raise ConfigError(f"the broker is unreachable: {exc}") from None
                logger.warning("broker unreachable (%s); retrying in %.1fs", exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, 10.0)


def capture_message(
    request: ShotRequest, engine: str, reply_queue: str, queue_prefix: str = DEFAULT_QUEUE_PREFIX
) -> dramatiq.Message[Any]:
    """The message a dispatcher sends for ``request``: to ``engine``'s queue, answered on
    ``reply_queue``, with a time limit the worker enforces."""
    payload = request.to_wire()
    payload["engine"] = engine
    payload["sent_at"] = time.time()
    return dramatiq.Message(
        queue_name=queue_for(engine, queue_prefix),
        actor_name=CAPTURE_ACTOR,
        args=(payload,),
        kwargs={},
        options={
            "reply_to": reply_queue,
            "time_limit": int((request.options.timeout + _TIME_LIMIT_GRACE_S) * 1000),
        },
    )


def summary_line(counts: Counts, manifest: str) -> str:
    elapsed = time.monotonic() - counts.started
    rate = counts.done / elapsed if elapsed > 0 else 0.0
    parts = [
        f"{counts.done} done: {counts.ok} ok, {counts.failed} failed, {counts.rejected} rejected"
    ]
    if counts.skipped:
        parts.append(f"{counts.skipped} already in the manifest")
    parts.append(f"in {elapsed:.1f}s ({rate:.1f}/s)")
    return "; ".join(parts) + f"; manifest: {manifest}"
