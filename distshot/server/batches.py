"""Batches sent to the service: a spooled input file, a manifest, and their state on disk.

A batch lives in ``STATE/batches/<id>/``: ``input`` (the request body, streamed to disk
as it arrives, never held in memory), ``manifest.jsonl`` (one record per input line, in
completion order) and ``meta.json`` (owner, format, status). A service that stops while a
batch runs resumes it when it starts again: lines already in the manifest are skipped, the
others are sent (a line in flight at the stop may be captured twice; its second record is
dropped by line, so each line still has exactly one record).

The runner is the same for both backends: it reads the input in chunks in a thread, takes
an admission ticket per line (a batch is accepted whole, so its lines wait instead of
getting 429), and keeps at most ``window`` lines of the batch in flight.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.errors import DistshotError
from ..core.inputs import InputItem, Rejection, RequestReader
from ..core.manifest import ManifestWriter, read_records
from ..core.models import ShotRequest, ShotResult
from ..dispatch.dispatcher import Counts
from .shots import new_id

logger = logging.getLogger("distshot.serve")

_CHUNK = 256
#: Records between fsyncs of a batch manifest (a crash loses at most the unsynced tail,
#: and those lines are captured again on resume).
_SYNC_EVERY = 64


class Cancelled(DistshotError):
    """The batch was cancelled before this line was started."""


@dataclass
class Batch:
    id: str
    owner: str
    folder: Path
    fmt: str
    webhook_url: str | None = None
    status: str = "receiving"  # receiving | running | done | cancelled
    total: int | None = None
    #: ok / failed / rejected, counted as the dispatcher counts a batch's records.
    counts: Counts = field(default_factory=Counts)
    in_flight: int = 0
    created: float = field(default_factory=time.time)
    recorded: set[int] = field(default_factory=set)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    cancel_requested: bool = False

    @property
    def input_path(self) -> Path:
        return self.folder / "input"

    @property
    def manifest_path(self) -> Path:
        return self.folder / "manifest.jsonl"

    @property
    def finished(self) -> bool:
        return self.status in ("done", "cancelled")

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "total": self.total,
            "ok": self.counts.ok,
            "failed": self.counts.failed,
            "rejected": self.counts.rejected,
            "in_flight": self.in_flight,
        }

    def touch(self) -> None:
        """Wake whoever follows the manifest."""
        self.changed.set()
        self.changed = asyncio.Event()

    def save(self) -> None:
        meta = {
            "id": self.id,
            "owner": self.owner,
            "format": self.fmt,
            "webhook_url": self.webhook_url,
            "status": self.status,
            "created": self.created,
        }
        tmp = self.folder / "meta.json.tmp"
        tmp.write_text(json.dumps(meta), "utf-8")
        os.replace(tmp, self.folder / "meta.json")


class BatchStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._batches: dict[str, Batch] = {}

    def create(self, owner: str, fmt: str, webhook_url: str | None) -> Batch:
        batch_id = new_id("batch")
        folder = self.root / batch_id
        folder.mkdir(parents=True)
        batch = Batch(batch_id, owner, folder, fmt, webhook_url)
        batch.save()
        self._batches[batch_id] = batch
        return batch

    def get(self, batch_id: str, owner: str) -> Batch | None:
        batch = self._batches.get(batch_id)
        return batch if batch is not None and batch.owner == owner else None

    def drop(self, batch: Batch) -> None:
        """Forget a batch whose body never arrived whole."""
        self._batches.pop(batch.id, None)
        for path in batch.folder.iterdir():
            path.unlink()
        batch.folder.rmdir()

    def load(self) -> list[Batch]:
        """The batches of earlier runs; returns those to resume (they were running)."""
        resume: list[Batch] = []
        if not self.root.exists():
            return resume
        for folder in sorted(self.root.iterdir()):
            try:
                meta = json.loads((folder / "meta.json").read_text("utf-8"))
            except (OSError, ValueError):
                continue
            if meta.get("status") == "receiving":
                continue  # the body never arrived whole: nothing was accepted
            batch = Batch(
                str(meta["id"]),
                str(meta["owner"]),
                folder,
                str(meta["format"]),
                meta.get("webhook_url"),
                status=str(meta["status"]),
                created=float(meta.get("created", 0)),
            )
            if batch.manifest_path.exists():
                for record in read_records(batch.manifest_path):
                    line = record.get("line")
                    if isinstance(line, int) and line not in batch.recorded:
                        batch.recorded.add(line)
                        batch.counts.add(str(record.get("status")))
            if batch.finished:
                batch.total = len(batch.recorded)
            else:
                resume.append(batch)
            self._batches[batch.id] = batch
        return resume


Execute = Callable[[ShotRequest], Awaitable[dict[str, Any]]]


class BatchRunner:
    """Runs one batch through ``execute`` (the backend's one-request path)."""

    def __init__(
        self,
        batch: Batch,
        reader: RequestReader,
        execute: Execute,
        *,
        window: int,
        stopping: Callable[[], bool],
    ) -> None:
        self.batch = batch
        self.reader = reader
        self.execute = execute
        self.window = asyncio.Semaphore(max(1, window))
        self.stopping = stopping
        self._unsynced = 0

    async def run(self) -> bool:
        """True when every line is recorded; False when the service stopped first (the
        batch stays ``running`` on disk and resumes at the next start)."""
        batch = self.batch
        batch.status = "running"
        batch.save()
        counting = asyncio.create_task(self._count_total())
        items = self.reader.read_path(str(batch.input_path), batch.fmt)
        tasks: set[asyncio.Task[None]] = set()
        stopped = False
        with ManifestWriter(batch.manifest_path) as manifest:
            try:
                while not stopped:
                    # (the input was checked when it arrived: a reader error here is a file
                    # changed under us, and ends the reading, not the batch's records)
                    try:
                        chunk = await asyncio.to_thread(
                            lambda: list(itertools.islice(items, _CHUNK))
                        )
                    except DistshotError as exc:
                        logger.error("batch %s: cannot read on: %s", batch.id, exc.message)
                        break
                    if not chunk:
                        break
                    for item in chunk:
                        if item.line in batch.recorded:
                            continue
                        if self.stopping():
                            stopped = True
                            break
                        await self._start(item, manifest, tasks)
                if tasks:
                    await asyncio.gather(*tasks)
            finally:
                for task in tasks:
                    task.cancel()
                counting.cancel()
                await asyncio.to_thread(manifest.sync)
        if stopped:
            return False
        batch.status = "cancelled" if batch.cancel_requested else "done"
        batch.total = len(batch.recorded)
        batch.save()
        batch.touch()
        return True

    async def _start(
        self, item: InputItem, manifest: ManifestWriter, tasks: set[asyncio.Task[None]]
    ) -> None:
        batch = self.batch
        if isinstance(item, Rejection):
            result = ShotResult.from_error(item.id, item.line, item.raw, "rejected", item.error)
            self._record(result.to_record(), manifest)
            return
        if batch.cancel_requested:
            error = Cancelled("the batch was cancelled before this line was started")
            result = ShotResult.from_error(item.id, item.line, item.url, "rejected", error)
            self._record(result.to_record(), manifest)
            return
        await self.window.acquire()
        batch.in_flight += 1
        task = asyncio.create_task(self._one(item, manifest))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def _one(self, request: ShotRequest, manifest: ManifestWriter) -> None:
        try:
            record = await self.execute(request)
        finally:
            self.batch.in_flight -= 1
            self.window.release()
        self._record(record, manifest)

    def _record(self, record: dict[str, Any], manifest: ManifestWriter) -> None:
        batch = self.batch
        line = record.get("line")
        if not isinstance(line, int) or line in batch.recorded:
            return  # a duplicate (a line captured again after a restart)
        batch.recorded.add(line)
        manifest.write(record)
        batch.counts.add(str(record.get("status")))
        batch.touch()
        self._unsynced += 1
        if self._unsynced >= _SYNC_EVERY:
            self._unsynced = 0
            manifest.sync()

    async def _count_total(self) -> None:
        """The number of lines, read in a second pass: the status shows a total as soon as
        it is known, without holding the input in memory."""

        def count() -> int:
            items: Iterator[InputItem] = self.reader.read_path(
                str(self.batch.input_path), self.batch.fmt
            )
            return sum(1 for _ in items)

        self.batch.total = await asyncio.to_thread(count)
