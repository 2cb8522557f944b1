"""Send one message per request and write one manifest record per reply.

The dispatcher works with any Dramatiq broker (StubBroker in embedded mode, RabbitMQ in
distributed mode): it keeps at most ``window`` requests in flight, writes a record before it
acknowledges the reply that carried it, drops duplicate replies by id, and gives up on
requests nobody answered once ``wait_timeout`` passes without any reply.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import dramatiq

from ..actors.capture import CAPTURE_ACTOR, queue_for
from ..actors.reply import reply_queue_for
from ..core.errors import InvalidRequest, ReplyTimeout
from ..core.inputs import InputItem, Rejection
from ..core.manifest import ManifestWriter
from ..core.models import RECORD_FIELDS, ShotRequest, ShotResult


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
        done_ids: set[str] | None = None,
        on_progress: ProgressCallback | None = None,
        poll_ms: int = 200,
    ) -> None:
        self.broker = broker
        self.batch = batch
        self.manifest = manifest
        self.default_engine = default_engine
        self.window = max(1, window)
        self.wait_timeout = wait_timeout
        self.engines = engines
        self.done_ids = done_ids or set()
        self.on_progress = on_progress
        self.poll_ms = poll_ms
        self.reply_queue = reply_queue_for(batch)
        self.counts = Counts()
        self._pending: dict[str, _Pending] = {}

    def run(self, items: Iterable[InputItem]) -> Counts:
        self.broker.declare_queue(self.reply_queue)
        consumer = self.broker.consume(
            self.reply_queue, prefetch=self.window * 2, timeout=self.poll_ms
        )
        source: Iterator[InputItem] | None = iter(items)
        last_reply = time.monotonic()
        try:
            while True:
                while source is not None and len(self._pending) < self.window:
                    item = next(source, None)
                    if item is None:
                        source = None
                    else:
                        self._take(item)
                if source is None and not self._pending:
                    break
                message = next(consumer)
                if message is None:
                    if (
                        self.wait_timeout is not None
                        and time.monotonic() - last_reply > self.wait_timeout
                    ):
                        self._expire_pending()
                    continue
                last_reply = time.monotonic()
                self._record_reply(message.args[0] if message.args else None)
                consumer.ack(message)
        finally:
            consumer.close()
        return self.counts

    def _take(self, item: InputItem) -> None:
        if item.id in self.done_ids:
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
            self._write(
                ShotResult.from_error(item.id, item.line, item.url, "rejected", error).to_record()
            )
            return
        self._send(item, engine)

    def _send(self, request: ShotRequest, engine: str) -> None:
        payload = request.to_wire()
        payload["engine"] = engine
        payload["sent_at"] = time.time()
        message: dramatiq.Message[Any] = dramatiq.Message(
            queue_name=queue_for(engine),
            actor_name=CAPTURE_ACTOR,
            args=(payload,),
            kwargs={},
            options={"reply_to": self.reply_queue},
        )
        self._pending[request.id] = _Pending(request.line, request.url, engine)
        self.broker.enqueue(message)
        self.counts.sent += 1
        self.counts.in_flight = len(self._pending)

    def _record_reply(self, record: Any) -> None:
        if not isinstance(record, dict) or not isinstance(record.get("id"), str):
            return  # not ours to write; acked so it cannot wedge the queue
        if self._pending.pop(record["id"], None) is None:
            return  # a duplicate (redelivery) or a reply from an earlier run: already written
        self._write({name: record.get(name) for name in RECORD_FIELDS})

    def _expire_pending(self) -> None:
        for request_id, pending in list(self._pending.items()):
            error = ReplyTimeout(
                f"no reply within {self.wait_timeout:g}s; is a worker serving engine "
                f"{pending.engine!r} (queue {queue_for(pending.engine)})?"
            )
            result = ShotResult.from_error(request_id, pending.line, pending.url, "failed", error)
            result.engine = pending.engine
            del self._pending[request_id]
            self._write(result.to_record())

    def _write(self, record: dict[str, Any]) -> None:
        self.manifest.write(record)
        self.counts.add(str(record.get("status")))
        self.counts.in_flight = len(self._pending)
        if self.on_progress is not None:
            self.on_progress(self.counts)


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
