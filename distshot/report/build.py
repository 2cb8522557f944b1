"""``distshot report``: a folder that shows one or more manifests as a browsable gallery.

Two passes, memory bounded whatever the number of records:

1. stream each manifest; give every record its report fields (``_i``, ``_source``,
   ``_image``), spool it to a temporary JSON Lines file, and queue its thumbnail (threads,
   a bounded number in flight; one per distinct image: records with the same bytes share
   one); keep only what grouping needs: (index, pHash) pairs, and which thumbnails exist;
2. group the hashes, then stream the spool into the records chunks with ``_thumb`` and
   ``_group`` filled in; write groups.js, meta.js and the page.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from array import array
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import ConfigError
from ..core.manifest import read_records
from ..core.perceptual import DEFAULT_DISTANCE, HASH_BITS
from .data import (
    DATA,
    THUMBS,
    ChunkWriter,
    prepare_folder,
    report_meta,
    write_groups,
    write_meta,
)
from .groups import look_alike_groups
from .page import write_page
from .sources import (
    ImageReader,
    Record,
    check_manifests,
    has_image,
    image_key,
    image_link,
    manifest_file,
    valid_phash,
)
from .thumbnails import BoundedPool, Thumbnail, default_workers, make_thumbnail

logger = logging.getLogger("distshot.report")

#: Unreadable images are logged one by one up to this many, then only counted.
LOGGED_PROBLEMS = 5


@dataclass(frozen=True)
class ReportSummary:
    records: int
    thumbnails: int
    groups: int
    grouped: int
    unreadable: int
    seconds: float
    index: Path

    def line(self) -> str:
        problems = f", {self.unreadable} images unreadable" if self.unreadable else ""
        return (
            f"report: {self.records} records, {self.thumbnails} thumbnails, {self.groups} "
            f"look-alike groups ({self.grouped} records){problems}; in {self.seconds:.1f}s; "
            f"open {self.index}"
        )


class _Hashes:
    """(index, pHash) pairs as two flat arrays: 16 bytes a record instead of ~150."""

    def __init__(self) -> None:
        self.indexes = array("q")
        self.values = array("Q")

    def add(self, index: int, phash: str) -> None:
        self.indexes.append(index)
        self.values.append(int(phash, 16))

    def pairs(self) -> list[tuple[int, str]]:
        return [(i, f"{v:016x}") for i, v in zip(self.indexes, self.values, strict=True)]


class _Images:
    """Pass 1's image work and what it keeps, a few numbers per record: the pHashes for
    grouping, the hashes computed here, which thumbnails exist, and which records show the
    same bytes (sha256) as an earlier one: those share its thumbnail (and hash) instead of
    decoding the same image again (duplicate URLs, cache hits, identical error pages)."""

    def __init__(self, reader: ImageReader, out: Path, workers: int) -> None:
        self.reader = reader
        self.out = out
        self.pool: BoundedPool[Thumbnail] = BoundedPool(workers)
        self.hashes = _Hashes()
        self.computed: dict[int, str] = {}  # pHashes of records whose manifest had none
        self.thumbs: set[int] = set()
        self.problems = 0
        self._first: dict[str, tuple[int, str | None]] = {}  # sha256 -> (record, its phash)
        self.shares: dict[int, int] = {}  # record -> the earlier record with its bytes
        self._unhashed: list[int] = []  # sharers whose phash comes from their first record

    def add(self, index: int, record: Record, phash: str | None) -> None:
        if phash is not None:
            self.hashes.add(index, phash)
        sha = record.get("sha256")
        if isinstance(sha, str) and sha:
            first, first_phash = self._first.setdefault(sha, (index, phash))
            if first != index:
                self.shares[index] = first
                if phash is None and first_phash is not None:
                    self.hashes.add(index, first_phash)
                elif phash is None:
                    self._unhashed.append(index)
                return
        job = functools.partial(
            make_thumbnail,
            self.reader,
            index,
            record["location"],
            self.out / THUMBS / f"{index:06d}.webp",
            want_phash=phash is None,
        )
        self._absorb(self.pool.submit(job))

    def finish(self) -> None:
        self._absorb(list(self.pool.finish()))
        for index in self._unhashed:
            phash = self.computed.get(self.shares[index])
            if phash is not None:
                self.computed[index] = phash
                self.hashes.add(index, phash)
        self._first.clear()

    def thumb(self, index: int) -> str | None:
        owner = self.shares.get(index, index)
        return f"{THUMBS}/{owner:06d}.webp" if owner in self.thumbs else None

    def _absorb(self, results: list[Thumbnail]) -> None:
        for result in results:
            if result.made:
                self.thumbs.add(result.index)
            if result.phash is not None:
                self.computed[result.index] = result.phash
                self.hashes.add(result.index, result.phash)
            if result.problem is not None:
                self.problems += 1
                level = logging.WARNING if self.problems <= LOGGED_PROBLEMS else logging.DEBUG
                logger.log(level, "no thumbnail: %s", result.problem)


def build_report(
    sources: Sequence[str],
    out: Path,
    *,
    threshold: int = DEFAULT_DISTANCE,
    workers: int | None = None,
    title: str | None = None,
) -> ReportSummary:
    """Write the report of the manifests ``sources`` (paths, or storage URLs such as
    ``s3://bucket/batch.jsonl``) into the folder ``out``."""
    if not sources:
        raise ConfigError("no manifest to report on")
    if not 0 <= threshold <= HASH_BITS:
        raise ConfigError(f"threshold must be between 0 and {HASH_BITS} bits, not {threshold}")
    check_manifests(sources)
    started = time.monotonic()
    out = Path(out)
    prepare_folder(out)
    spool = out / DATA / ".records.jsonl"
    reader = ImageReader()
    images = _Images(reader, out, workers or default_workers())
    counts: Counter[str] = Counter({"ok": 0, "failed": 0, "rejected": 0})
    total = with_thumb = 0
    try:
        with open(spool, "w", encoding="utf-8") as spooled, images.pool:
            for source_index, source in enumerate(sources):
                with manifest_file(source, reader, out / DATA) as path:
                    for record in read_records(path):
                        index = total
                        total += 1
                        counts[str(record.get("status"))] += 1
                        phash = valid_phash(record.get("phash"))
                        record["phash"] = phash
                        record["image_key"] = image_key(record)
                        record["_i"] = index
                        record["_source"] = source_index
                        record["_image"] = image_link(record, out)
                        spooled.write(json.dumps(record, separators=(",", ":")) + "\n")
                        if has_image(record):
                            images.add(index, record, phash)
            images.finish()
        groups = look_alike_groups(images.hashes.pairs(), threshold)
        group_of = {i: group.id for group in groups for i in group.members}
        with ChunkWriter(out) as chunks, open(spool, encoding="utf-8") as spooled:
            for line in spooled:
                record = json.loads(line)
                index = record["_i"]
                if index in images.computed:
                    record["phash"] = images.computed[index]
                record["_thumb"] = images.thumb(index)
                record["_group"] = group_of.get(index)
                with_thumb += record["_thumb"] is not None
                chunks.add(record)
    finally:
        spool.unlink(missing_ok=True)
        reader.close()
    write_groups(out, (group.to_json() for group in groups))
    meta = report_meta("report", title, sources, chunks, counts={**counts}, threshold=threshold)
    write_meta(out, meta)
    write_page(out, title=title or "distshot report")
    return ReportSummary(
        records=total,
        thumbnails=with_thumb,
        groups=len(groups),
        grouped=len(group_of),
        unreadable=images.problems,
        seconds=time.monotonic() - started,
        index=out / "index.html",
    )
