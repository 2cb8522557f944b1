"""``distshot diff``: what changed between two batches of shots of the same URLs.

Records pair up by ``image_key`` (the URL and the options that change the image; older
manifests: the hex that ends the image's file name; else the raw URL). Each pair is one
of, in the page's order:

- ``changed``: the shots differ: their pHashes are more than ``distance`` bits apart, or
  more than ``threshold`` of their pixels differ (``pixels.py``), or their sizes differ;
  with the share of differing pixels and a picture of where (DIR/diffs/);
- ``failed``: either side failed or was rejected (the error is the failed side's; the new
  one's when both failed), or a side's image could not be read back;
- ``new`` / ``gone``: only in the new / the old batch (a URL only in the new batch that
  failed there counts as ``failed``);
- ``unchanged``: everything else.

Memory: the old manifest is indexed by byte offsets, not records; the new one is streamed;
images are opened pair by pair in threads, a bounded number at once; the results are
spooled to disk and sorted by a small key per pair.
"""

from __future__ import annotations

import functools
import json
import re
import time
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import ConfigError
from ..core.perceptual import HASH_BITS
from .data import DATA, ChunkWriter, prepare_folder, report_meta, write_meta
from .page import write_page
from .pairs import compare_pair
from .pixels import TOLERANCE
from .sources import (
    ImageReader,
    Record,
    check_manifests,
    manifest_file,
    match_key,
    record_at,
    records_at,
)
from .thumbnails import BoundedPool, default_workers

CHANGES = ("changed", "failed", "new", "gone", "unchanged")
DEFAULT_THRESHOLD = 0.001  # 0.1% of the pixels
#: The fields of a diff.jsonl line; the page's records add the "_" ones.
FIELDS = (
    "url",
    "image_key",
    "change",
    "changed_ratio",
    "phash_distance",
    "size_changed",
    "old",
    "new",
    "diff_image",
    "error",
)
_RATIO = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(%?)\s*$")


def parse_ratio(text: str) -> float:
    """``0.1%`` or ``0.001`` -> 0.001; a share between 0 and 1."""
    found = _RATIO.match(text)
    if found is None:
        raise ConfigError(f"threshold {text!r} is not a share of pixels (0.1% or 0.001)")
    value = float(found.group(1)) / (100 if found.group(2) else 1)
    if not 0 <= value <= 1:
        raise ConfigError(f"threshold {text!r} is not between 0 and 100%")
    return value


@dataclass(frozen=True)
class DiffSummary:
    counts: dict[str, int]
    seconds: float
    index: Path
    jsonl: Path

    @property
    def differs(self) -> bool:
        """Anything but ``unchanged``: the batches do not show the same pages."""
        return any(self.counts[change] for change in CHANGES if change != "unchanged")

    def line(self) -> str:
        order = ("unchanged", "changed", "new", "gone", "failed")
        parts = ", ".join(f"{self.counts[change]} {change}" for change in order)
        return f"diff: {parts}; in {self.seconds:.1f}s; open {self.index}"


def diff_batches(
    old_manifest: str,
    new_manifest: str,
    out: Path,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    distance: int = 0,
    tolerance: int = TOLERANCE,
    workers: int | None = None,
    title: str | None = None,
) -> DiffSummary:
    """Compare two manifests' shots; write DIR/diff.jsonl and the page's data into ``out``."""
    if not 0 <= threshold <= 1:
        raise ConfigError(f"threshold must be a share between 0 and 1, not {threshold}")
    if not 0 <= distance <= HASH_BITS:
        raise ConfigError(f"distance must be between 0 and {HASH_BITS} bits, not {distance}")
    check_manifests([old_manifest, new_manifest])
    started = time.monotonic()
    out = Path(out)
    prepare_folder(out, diffs=True)
    spool_path = out / DATA / ".diff.jsonl"
    reader = ImageReader()
    order: list[tuple[int, float, int, int]] = []  # (rank, -ratio, seq, offset in the spool)
    counts: Counter[str] = Counter(dict.fromkeys(CHANGES, 0))
    rank = {change: n for n, change in enumerate(CHANGES)}
    compare = functools.partial(
        compare_pair, reader, out, threshold=threshold, distance=distance, tolerance=tolerance
    )
    try:
        with open(spool_path, "wb") as spool:

            def absorb(results: list[Record]) -> None:
                for result in results:
                    counts[result["change"]] += 1
                    ratio = result["changed_ratio"] or 0.0
                    order.append((rank[result["change"]], -ratio, result["seq"], spool.tell()))
                    spool.write(json.dumps(result, separators=(",", ":")).encode() + b"\n")

            pool: BoundedPool[Record] = BoundedPool(workers or default_workers())
            with pool, manifest_file(old_manifest, reader, out / DATA) as old_path:
                with manifest_file(new_manifest, reader, out / DATA) as new_path:
                    for seq, (old, new) in enumerate(_pairs(old_path, new_path)):
                        absorb(pool.submit(functools.partial(compare, seq, old, new)))
                absorb(list(pool.finish()))
        order.sort()
        with (
            ChunkWriter(out) as chunks,
            open(out / "diff.jsonl", "w", encoding="utf-8") as jsonl,
            open(spool_path, "rb") as spool_in,
        ):
            for index, (*_, offset) in enumerate(order):
                record = record_at(spool_in, offset)
                del record["seq"]
                record["_i"] = index
                public = {name: record[name] for name in FIELDS}
                jsonl.write(json.dumps(public, ensure_ascii=False, separators=(",", ":")) + "\n")
                chunks.add(record)
    finally:
        spool_path.unlink(missing_ok=True)
        reader.close()
    meta = report_meta(
        "diff",
        title,
        [old_manifest, new_manifest],
        chunks,
        counts={**counts},
        threshold=threshold,
        distance=distance,
        tolerance=tolerance,
    )
    write_meta(out, meta)
    write_page(out, title=title or "distshot diff")
    return DiffSummary(
        counts={**counts},
        seconds=time.monotonic() - started,
        index=out / "index.html",
        jsonl=out / "diff.jsonl",
    )


class _Waiting:
    """The old manifest's records not yet paired, as byte offsets by match key: one int a
    record (a key repeats only when a batch asked for the same image twice)."""

    def __init__(self, path: Path) -> None:
        self.first: dict[str, int] = {}
        self.more: dict[str, deque[int]] = {}
        for offset, record in records_at(path):
            key = match_key(record)
            if key in self.first:
                self.more.setdefault(key, deque()).append(offset)
            else:
                self.first[key] = offset

    def take(self, key: str) -> int | None:
        offset = self.first.pop(key, None)
        more = self.more.get(key)
        if offset is not None and more:
            self.first[key] = more.popleft()
            if not more:
                del self.more[key]
        return offset

    def remaining(self) -> list[str]:
        """Every key still waiting, once per record."""
        return [k for k in self.first for _ in range(1 + len(self.more.get(k, ())))]


def _pairs(old_path: Path, new_path: Path) -> Iterator[tuple[Record | None, Record | None]]:
    """(old, new) record pairs: matched, then only-new, then only-old ones (gone)."""
    waiting = _Waiting(old_path)
    with open(old_path, "rb") as old_stream, open(new_path, "rb") as new_stream:
        unmatched: list[int] = []
        for offset, new in records_at(new_path):
            old_offset = waiting.take(match_key(new))
            if old_offset is None:
                unmatched.append(offset)
            else:
                yield record_at(old_stream, old_offset), new
        # A second chance by URL for a record one side keys by image key and the other by
        # URL (an older manifest's failed record has no image key): same URL, one side
        # without a key. Two keyed records of one URL (other options) never pair here.
        by_url: dict[str, list[str]] = {}
        for key in waiting.remaining():
            url = key[4:] if key.startswith("url:") else None
            if url is None:
                offset = waiting.first[key]
                url = str(record_at(old_stream, offset).get("url"))
            by_url.setdefault(url, []).append(key)
        for offset in unmatched:
            new = record_at(new_stream, offset)
            keyed = not match_key(new).startswith("url:")
            keys = by_url.get(str(new.get("url")), [])
            found = next((k for k in keys if not (keyed and k.startswith("key:"))), None)
            old_offset = None if found is None else waiting.take(found)
            if found is not None:
                keys.remove(found)
            yield (None if old_offset is None else record_at(old_stream, old_offset)), new
        for key in waiting.remaining():
            old_offset = waiting.take(key)
            if old_offset is not None:
                yield record_at(old_stream, old_offset), None
