"""``distshot report``: a folder that shows one or more manifests as a browsable gallery.

Two passes, memory bounded whatever the number of records:

1. stream each manifest; give every record its report fields (``_i``, ``_source``,
   ``_image``), spool it to a temporary JSON Lines file, and queue its thumbnail (threads,
   a bounded number in flight); keep only what grouping needs: (index, pHash) pairs, and
   which thumbnails were made;
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
    hashes = _Hashes()
    computed: dict[int, str] = {}  # pHashes of records whose manifest had none
    thumbs: set[int] = set()
    problems = 0
    counts: Counter[str] = Counter({"ok": 0, "failed": 0, "rejected": 0})

    def absorb(results: list[Thumbnail]) -> None:
        nonlocal problems
        for result in results:
            if result.made:
                thumbs.add(result.index)
            if result.phash is not None:
                computed[result.index] = result.phash
                hashes.add(result.index, result.phash)
            if result.problem is not None:
                problems += 1
                level = logging.WARNING if problems <= LOGGED_PROBLEMS else logging.DEBUG
                logger.log(level, "no thumbnail: %s", result.problem)

    total = 0
    try:
        pool: BoundedPool[Thumbnail] = BoundedPool(workers or default_workers())
        with open(spool, "w", encoding="utf-8") as spooled, pool:
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
                        if not has_image(record):
                            continue
                        if phash is not None:
                            hashes.add(index, phash)
                        job = functools.partial(
                            make_thumbnail,
                            reader,
                            index,
                            record["location"],
                            out / THUMBS / f"{index:06d}.webp",
                            want_phash=phash is None,
                        )
                        absorb(pool.submit(job))
            absorb(list(pool.finish()))
        groups = look_alike_groups(hashes.pairs(), threshold)
        group_of = {i: group.id for group in groups for i in group.members}
        with ChunkWriter(out) as chunks, open(spool, encoding="utf-8") as spooled:
            for line in spooled:
                record = json.loads(line)
                index = record["_i"]
                if index in computed:
                    record["phash"] = computed[index]
                record["_thumb"] = f"{THUMBS}/{index:06d}.webp" if index in thumbs else None
                record["_group"] = group_of.get(index)
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
        thumbnails=len(thumbs),
        groups=len(groups),
        grouped=len(group_of),
        unreadable=problems,
        seconds=time.monotonic() - started,
        index=out / "index.html",
    )
