"""Read a report folder's data files back (FORMAT.md), for the report and diff tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

Record = dict[str, Any]


def _script_value(path: Path, prefix: str, suffix: str) -> Any:
    text = path.read_text(encoding="ascii")  # every byte ASCII: non-ASCII is \\u-escaped
    assert text.startswith(prefix) and text.endswith(suffix), path
    return json.loads(text[len(prefix) : -len(suffix)])


def load_meta(out: Path) -> dict[str, Any]:
    meta: dict[str, Any] = _script_value(out / "data" / "meta.js", "window.DISTSHOT_META = ", ";\n")
    return meta


def load_groups(out: Path) -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = _script_value(
        out / "data" / "groups.js", "window.DISTSHOT_GROUPS = ", ";\n"
    )
    return groups


def load_records(out: Path) -> list[Record]:
    """Every record of every chunk meta.js names, in order; checks there is no other chunk."""
    meta = load_meta(out)
    records: list[Record] = []
    for n in range(meta["chunks"]):
        chunk = out / "data" / f"records-{n:04d}.js"
        records += _script_value(chunk, "DISTSHOT_RECORDS.push(...", ");\n")
    assert not (out / "data" / f"records-{meta['chunks']:04d}.js").exists()
    assert len(records) == meta["total"]
    return records


def manifest_records(path: Path) -> list[Record]:
    """A manifest's records (lines end at "\n" only: a title may hold U+2028, which
    str.splitlines would also split at)."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line]


def strip_manifest(source: Path, dest: Path, *drop: str) -> list[Record]:
    """Copy a manifest without the fields ``drop`` (an older manifest), returning its records."""
    records = manifest_records(source)
    for record in records:
        for name in drop:
            record.pop(name, None)
    dest.write_text("".join(json.dumps(r) + "\n" for r in records))
    return records
