"""The page's data files (FORMAT.md): records in chunks of script files, meta.js, groups.js.

They are scripts, not JSON, because a page opened from disk cannot fetch(): it adds a
<script src> per file. Every value is written with ``json.dumps(ensure_ascii=True)`` (so
U+2028/U+2029 and every other non-ASCII character is a \\u escape) and ``</`` as ``<\\/``,
so no string can end a script element or break the JavaScript around it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

#: Records per chunk file: small enough to parse without a pause, few enough files.
CHUNK_SIZE = 1000
DATA = "data"
THUMBS = "thumbs"
DIFFS = "diffs"


def js(value: Any) -> str:
    """``value`` as a JavaScript literal that is safe in any script file."""
    return json.dumps(value, ensure_ascii=True, separators=(",", ":")).replace("</", "<\\/")


def now_utc() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def prepare_folder(out: Path, *, diffs: bool = False) -> None:
    """Make the report folder's subfolders and remove what an earlier report left in them
    (chunks, thumbnails, diff images: only the files this module names), so that a smaller
    report over a bigger one shows nothing stale."""
    for sub, pattern in ((DATA, "records-*.js"), (THUMBS, "*.webp"), (DIFFS, "*.png")):
        folder = out / sub
        if folder.is_dir():
            for stale in folder.glob(pattern):
                stale.unlink()
        elif sub != DIFFS or diffs:
            folder.mkdir(parents=True)
    for name in ("meta.js", "groups.js"):
        (out / DATA / name).unlink(missing_ok=True)


class ChunkWriter:
    """Writes records to ``data/records-NNNN.js``, ``CHUNK_SIZE`` a file, as they come."""

    def __init__(self, out: Path, size: int = CHUNK_SIZE) -> None:
        self.folder = out / DATA
        self.size = size
        self.total = 0
        self.chunks = 0
        self._pending: list[str] = []

    def add(self, record: dict[str, Any]) -> None:
        self._pending.append(js(record))
        self.total += 1
        if len(self._pending) >= self.size:
            self._flush()

    def close(self) -> None:
        if self._pending:
            self._flush()

    def _flush(self) -> None:
        path = self.folder / f"records-{self.chunks:04d}.js"
        body = ",\n".join(self._pending)
        path.write_text(f"DISTSHOT_RECORDS.push(...[\n{body}\n]);\n", encoding="ascii")
        self.chunks += 1
        self._pending = []

    def __enter__(self) -> ChunkWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def report_meta(
    kind: str,
    title: str | None,
    sources: Sequence[str],
    chunks: ChunkWriter,
    *,
    counts: dict[str, int],
    threshold: float,
    **extra: Any,
) -> dict[str, Any]:
    """meta.js's object (FORMAT.md); ``extra`` adds keys of the kind's own."""
    return {
        "kind": kind,
        "title": title or f"distshot {kind}",
        "generated_at": now_utc(),
        "sources": list(sources),
        "total": chunks.total,
        "chunks": chunks.chunks,
        "counts": counts,
        "groups": kind == "report",
        "threshold": threshold,
        "live": None,
        **extra,
    }


def write_meta(out: Path, meta: dict[str, Any]) -> None:
    (out / DATA / "meta.js").write_text(f"window.DISTSHOT_META = {js(meta)};\n", encoding="ascii")


def write_groups(out: Path, groups: Iterable[dict[str, Any]]) -> None:
    lines = ",\n".join(js(group) for group in groups)
    (out / DATA / "groups.js").write_text(
        f"window.DISTSHOT_GROUPS = [\n{lines}\n];\n", encoding="ascii"
    )
