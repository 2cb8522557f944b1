"""The manifest: JSON Lines, one record per request, appended in completion order.

Each record is written whole and flushed before the request counts as done, so a crash
loses at most a torn last line, which ``ManifestWriter`` cuts off when it reopens the file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


def read_records(path: str | Path, *, missing_ok: bool = False) -> Iterator[dict[str, Any]]:
    """Complete records of a manifest (or of any JSON Lines file appended to like one: the
    service's shots and webhook logs), streamed. A torn last line is skipped, and so is a
    line that is not a JSON object: one bad line never hides the others. Bytes that are not
    UTF-8 read as U+FFFD. A missing file has no records when ``missing_ok``."""
    try:
        stream = open(path, encoding="utf-8", errors="replace")  # noqa: SIM115 - with below
    except FileNotFoundError:
        if missing_ok:
            return
        raise
    with stream:
        for line in stream:
            if not line.endswith("\n"):
                return
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                yield record


def recorded_lines(path: str | Path) -> Iterator[int]:
    """Input line numbers already recorded in a manifest (for resume)."""
    if not Path(path).exists():
        return
    for record in read_records(path):
        if isinstance(record.get("line"), int):
            yield record["line"]


class ManifestWriter:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _cut_torn_tail(self.path)
        self._stream: IO[str] = open(self.path, "a", encoding="utf-8")  # noqa: SIM115

    def write(self, record: dict[str, Any]) -> None:
        self._stream.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
        self._stream.flush()

    def sync(self) -> None:
        """Force written records to disk (the dispatcher acks replies only after this)."""
        self._stream.flush()
        os.fsync(self._stream.fileno())

    def close(self) -> None:
        self._stream.close()

    def __enter__(self) -> ManifestWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _cut_torn_tail(path: Path) -> None:
    """Drop a partial last line left by a crash mid-write, so appends start clean."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as stream:
        stream.seek(-1, os.SEEK_END)
        if stream.read(1) == b"\n":
            return
        size = stream.seek(0, os.SEEK_END)
        step = 4096
        pos = size
        while pos > 0:
            pos = max(0, pos - step)
            stream.seek(pos)
            chunk = stream.read(size - pos)
            cut = chunk.rfind(b"\n")
            if cut != -1:
                stream.truncate(pos + cut + 1)
                return
        stream.truncate(0)
