"""What the service knows about single shots: who asked, where each stands, its record.

Kept in memory for answers and appended to ``shots.jsonl`` in the state folder, so a
restarted service still answers ``GET /v1/shots/{id}`` for what finished before, and (on
the rabbitmq backend) records replies that arrive for shots sent before the restart. The
file is compacted at start-up to the newest ``limit`` shots.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.manifest import read_records

logger = logging.getLogger("distshot.serve")


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"


@dataclass
class Shot:
    id: str
    owner: str
    url: str
    status: str = "queued"  # queued | running | done
    record: dict[str, Any] | None = None
    webhook_url: str | None = None
    #: The request on the wire (``ShotRequest.to_wire``), to run it again after a restart.
    request: dict[str, Any] | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def summary(self) -> dict[str, Any]:
        if self.record is not None:
            return self.record
        return {"id": self.id, "status": self.status, "url": self.url}


class ShotBook:
    def __init__(self, path: Path, *, limit: int = 100_000) -> None:
        self.path = path
        self.limit = limit
        self._shots: OrderedDict[str, Shot] = OrderedDict()
        self._file: Any = None

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for entry in read_records(self.path, missing_ok=True):
            shot_id, owner = entry.get("id"), entry.get("owner")
            if not isinstance(shot_id, str) or not isinstance(owner, str):
                continue
            shot = self._shots.get(shot_id) or Shot(shot_id, owner, str(entry.get("url", "")))
            shot.webhook_url = entry.get("webhook_url") or shot.webhook_url
            if isinstance(entry.get("request"), dict):
                shot.request = entry["request"]
            record = entry.get("record")
            if isinstance(record, dict):
                shot.record, shot.status = record, "done"
                shot.done.set()
            self._remember(shot)
        self._compact()
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - held open

    def _compact(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as out:
            for shot in self._shots.values():
                out.write(json.dumps(self._entry(shot, with_record=True)) + "\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.path)

    @staticmethod
    def _entry(shot: Shot, *, with_record: bool) -> dict[str, Any]:
        entry: dict[str, Any] = {"id": shot.id, "owner": shot.owner, "url": shot.url}
        if shot.webhook_url:
            entry["webhook_url"] = shot.webhook_url
        if with_record and shot.record is not None:
            entry["record"] = shot.record
        elif shot.request is not None:
            entry["request"] = shot.request
        return entry

    def _remember(self, shot: Shot) -> None:
        self._shots[shot.id] = shot
        self._shots.move_to_end(shot.id)
        while len(self._shots) > self.limit:
            self._shots.popitem(last=False)

    def _append(self, entry: dict[str, Any]) -> None:
        if self._file is not None:
            self._file.write(json.dumps(entry) + "\n")
            self._file.flush()

    def reserve(self, owner: str, url: str, webhook_url: str | None = None) -> Shot:
        """A new shot with its id, not yet kept (``add`` keeps it with its request)."""
        return Shot(new_id("shot"), owner, url, webhook_url=webhook_url)

    def add(self, shot: Shot, request: dict[str, Any]) -> None:
        shot.request = request
        self._remember(shot)
        self._append(self._entry(shot, with_record=False))

    def get(self, shot_id: str, owner: str) -> Shot | None:
        """The shot, if ``owner`` asked for it: another key's id is not found, the same
        answer as an id that never existed."""
        shot = self._shots.get(shot_id)
        return shot if shot is not None and shot.owner == owner else None

    def pending(self) -> list[Shot]:
        return [shot for shot in self._shots.values() if shot.status != "done"]

    def finish(self, shot: Shot, record: dict[str, Any]) -> None:
        shot.record, shot.status = record, "done"
        self._append({"id": shot.id, "owner": shot.owner, "url": shot.url, "record": record})
        shot.done.set()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
