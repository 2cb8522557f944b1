"""Compact per-batch bookkeeping for the dispatcher: which input lines are recorded or sent.

Sets of line numbers are bitmaps (a million lines cost 125 kB), so resuming a huge batch
does not hold a million id strings. The sent journal is an append-only file of line
numbers next to the manifest.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import IO


class LineSet:
    """A growable bitmap of non-negative line numbers."""

    def __init__(self) -> None:
        self._bits = bytearray()
        self.count = 0

    def add(self, line: int) -> None:
        index, bit = divmod(line, 8)
        if index >= len(self._bits):
            self._bits.extend(bytes(index - len(self._bits) + 1 + len(self._bits) // 4))
        if not self._bits[index] & (1 << bit):
            self._bits[index] |= 1 << bit
            self.count += 1

    def __contains__(self, line: object) -> bool:
        if not isinstance(line, int) or line < 0:
            return False
        index, bit = divmod(line, 8)
        return index < len(self._bits) and bool(self._bits[index] & (1 << bit))

    def __len__(self) -> int:
        return self.count


def line_of(request_id: str) -> int | None:
    """'batch:42' -> 42."""
    _, _, tail = request_id.rpartition(":")
    return int(tail) if tail.isdigit() else None


class SentJournal:
    """Line numbers published so far, appended after each publish (flushed to the OS,
    so it survives the dispatcher being killed)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sent = LineSet()
        if path.exists():
            with open(path, encoding="ascii", errors="replace") as stream:
                for text in stream:
                    if text.endswith("\n") and text[:-1].isdigit():
                        self.sent.add(int(text))
        self._stream: IO[str] = open(path, "a", encoding="ascii")  # noqa: SIM115

    def record_many(self, lines: Iterable[int]) -> None:
        text = []
        for line in lines:
            text.append(f"{line}\n")
            self.sent.add(line)
        self._stream.write("".join(text))
        self._stream.flush()

    def close(self) -> None:
        self._stream.close()

    def remove(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)
