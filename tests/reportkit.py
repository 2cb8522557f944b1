"""Report folders for the page's tests and benchmark, written straight from the folder
contract (distshot/report/FORMAT.md) rather than by the builder: the page is tested
against the contract, and a builder bug cannot hide a page bug (or the reverse).

``write_report`` writes data/meta.js, the record chunks and groups.js, then the page itself
with ``write_page``; images (thumbnails, full images, diff images) are small Pillow images
made by ``make_image``.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from distshot.report.page import write_page

Record = dict[str, Any]

#: Every field of a manifest record (ARCHITECTURE.md), in the manifest's order.
MANIFEST_FIELDS = (
    *("id", "line", "url", "status", "engine", "location", "link", "final_url", "http_status"),
    *("title", "format", "width", "height", "bytes", "sha256", "cached", "attempts", "timings"),
    *("error", "phash", "truncated", "device", "blocked", "image_key"),
)


def manifest_record(line: int, url: str, status: str = "ok", **fields: Any) -> Record:
    """A manifest record with every field: plausible values for an ok shot, nulls else."""
    ok = status == "ok"
    record: Record = dict.fromkeys(MANIFEST_FIELDS)
    record.update(
        id=f"batch-{line}",
        line=line,
        url=url,
        status=status,
        engine="playwright" if status != "rejected" else None,
        cached=False,
        attempts=1 if status != "rejected" else 0,
        truncated=False,
        blocked=0,
    )
    if ok:
        record.update(
            location=f"file:///shots/{line:06d}.png",
            link=f"file:///shots/{line:06d}.png",
            final_url=url,
            http_status=200,
            title=f"Page {line}",
            format="png",
            width=1280,
            height=800,
            bytes=20_000 + line,
            sha256=f"{line:064x}",
            timings={
                "queue_ms": 3,
                "navigate_ms": 340 + line,
                "capture_ms": 55,
                "store_ms": 2,
                "total_ms": 400 + line,
            },
            phash=f"{line:016x}",
            image_key=f"{line:06d}.png",
        )
    record.update(fields)
    return record


def make_image(path: Path, color: tuple[int, int, int], size: tuple[int, int] = (320, 200)) -> None:
    """A small image (format from the suffix: .webp, .png) of one colour under a dark band."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", size, color)
    ImageDraw.Draw(image).rectangle((0, 0, size[0], size[1] // 5), fill=(30, 30, 30))
    image.save(path)


def write_report(
    out: Path,
    records: list[Record],
    *,
    kind: str = "report",
    groups: list[dict[str, Any]] | None = None,
    title: str = "distshot report",
    sources: list[str] | None = None,
    threshold: int = 10,
    live: dict[str, Any] | None = None,
    chunk_size: int = 1000,
) -> Path:
    """Write a report (or diff) folder for these records (with their "_" fields, "_i"
    added when missing) and return its index.html."""
    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    for i, record in enumerate(records):
        record.setdefault("_i", i)
    chunks = [records[k : k + chunk_size] for k in range(0, len(records), chunk_size)]
    for k, chunk in enumerate(chunks):
        body = json.dumps(chunk, ensure_ascii=False, separators=(",", ":"))
        (data / f"records-{k:04d}.js").write_text(f"DISTSHOT_RECORDS.push(...{body});\n")
    key = "change" if kind == "diff" else "status"
    meta = {
        "kind": kind,
        "title": title,
        "generated_at": "2026-12-04T18:00:00Z",
        "sources": sources
        or (["old.jsonl", "new.jsonl"] if kind == "diff" else ["manifest.jsonl"]),
        "total": len(records),
        "chunks": len(chunks),
        "counts": dict(Counter(str(r.get(key)) for r in records)),
        "groups": groups is not None,
        "threshold": threshold if kind == "report" else None,
        "live": live,
    }
    (data / "meta.js").write_text(f"window.DISTSHOT_META = {json.dumps(meta)};\n")
    if groups is not None:
        (data / "groups.js").write_text(f"window.DISTSHOT_GROUPS = {json.dumps(groups)};\n")
    write_page(out, title=title)
    return out / "index.html"


def synthetic_report(out: Path, n: int) -> Path:
    """A report of n records (9 in 10 ok, the rest failed or rejected) whose thumbnails are
    the same few images repeated, with look-alike groups of 50: for scale tests and the
    benchmark. Record i's URL is https://site-{i:05d}.example/ and its title "Item {i:05d}"."""
    colors = [(200, 60, 60), (60, 160, 60), (60, 90, 200), (200, 180, 40)]
    thumbs = [f"thumbs/{k:06d}.webp" for k in range(len(colors))]
    for name, color in zip(thumbs, colors, strict=True):
        make_image(out / name, color)
    records = []
    for i in range(n):
        url = f"https://site-{i:05d}.example/"
        if i % 10 == 7:
            record = manifest_record(
                i + 1, url, "failed", error={"type": "NavigationTimeout", "message": "30 s"}
            )
        elif i % 50 == 9:
            record = manifest_record(
                i + 1, url, "rejected", error={"type": "InvalidUrl", "message": "bad"}
            )
        else:
            record = manifest_record(i + 1, url, http_status=(200, 404, 301, 500)[i % 4])
        record["title"] = f"Item {i:05d}"
        ok = record["status"] == "ok"
        record.update(
            _i=i,
            _thumb=thumbs[i % len(thumbs)] if ok else None,
            _image=thumbs[i % len(thumbs)] if ok else None,
            _group=None,
            _source=0,
        )
        records.append(record)
    ok_positions = [r["_i"] for r in records if r["status"] == "ok"]
    groups = []
    for gid, start in enumerate(range(0, len(ok_positions) - 50, 500)):
        members = ok_positions[start : start + 50]
        for m in members:
            records[m]["_group"] = gid
        groups.append({"id": gid, "phash": f"{gid:016x}", "size": 50, "members": members})
    return write_report(out, records, groups=groups, title=f"synthetic {n}")
