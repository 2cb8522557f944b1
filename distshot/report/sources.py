"""What a report reads: manifests (local paths or storage URLs) and the images their records
name, opened through the storage plug-ins; and the fields every reader derives the same way
(``image_key``, the link to the full image)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from ..core.contracts import Storage
from ..core.errors import ConfigError
from ..plugins.manager import Registry, get_registry, storage_scheme

#: The 16 hex digits that end a stored object's name (``<slug>-<16hex>.<ext>``): the first
#: 16 of the request's cache key, i.e. of the URL and the options that change the image.
_KEY_IN_NAME = re.compile(r"-([0-9a-f]{16})\.(?:png|jpg|webp|pdf)$")
_HASH = re.compile(r"^[0-9a-f]{16}$")

Record = dict[str, Any]


def image_key(record: Record) -> str | None:
    """The record's ``image_key``; for older manifests, the hex that ends its location's file
    name; None when neither says (a failed record of an older manifest)."""
    key = record.get("image_key")
    if isinstance(key, str) and key:
        return key
    location = record.get("location")
    if isinstance(location, str):
        found = _KEY_IN_NAME.search(location)
        if found:
            return found.group(1)
    return None


def match_key(record: Record) -> str:
    """What pairs a record with its counterpart in another batch: the image key, or the raw
    URL when there is none (rejected lines, failed records of older manifests)."""
    key = image_key(record)
    return f"key:{key}" if key else f"url:{record.get('url')}"


def valid_phash(value: object) -> str | None:
    """A manifest's ``phash`` when it is one (16 hex digits), else None (to compute)."""
    return value if isinstance(value, str) and _HASH.match(value) else None


def has_image(record: Record) -> bool:
    """Whether the record names a stored image with pixels (``ok``, a location, not a PDF)."""
    return (
        record.get("status") == "ok"
        and isinstance(record.get("location"), str)
        and record.get("format") != "pdf"
    )


def image_link(record: Record, out: Path) -> str | None:
    """Where the page opens the full image: a path relative to the report folder for a local
    file (the folder can move with its images), else the location as a file:// URL when no
    relative path exists (another drive), else the record's link (a presigned S3 URL)."""
    location = record.get("location")
    link = record.get("link")
    if isinstance(location, str) and urlsplit(location).scheme.lower() == "file":
        path = unquote(urlsplit(location).path)
        try:
            relative = os.path.relpath(path, out.resolve())
        except ValueError:
            return location
        return quote(relative.replace(os.sep, "/"))
    if isinstance(link, str) and link:
        return link
    return None


class ImageReader:
    """Reads stored images back through the storage plug-ins: one storage per scheme and
    bucket (or host), made on first use and shared by every thread."""

    def __init__(self, registry: Registry | None = None) -> None:
        self._registry = registry
        self._storages: dict[str, Storage] = {}
        self._lock = threading.Lock()

    def read(self, location: str) -> bytes:
        return self._storage(location).read(location)

    def _storage(self, location: str) -> Storage:
        root = storage_root(location)
        storage = self._storages.get(root)
        if storage is None:
            with self._lock:
                storage = self._storages.get(root)
                if storage is None:
                    registry = self._registry or get_registry()
                    storage = self._storages[root] = registry.create_storage(root)
        return storage

    def close(self) -> None:
        with self._lock:
            for storage in self._storages.values():
                storage.close()
            self._storages.clear()


def storage_root(location: str) -> str:
    """The storage URL that can read ``location``: ``file:///`` for any local file,
    ``s3://bucket`` for an object of that bucket, ``scheme://host`` for a plug-in's."""
    scheme = storage_scheme(location)
    if scheme == "file":
        return "file:///"
    host = location.partition("://")[2].partition("/")[0]
    return f"{scheme}://{host}"


def check_manifests(sources: Sequence[str]) -> None:
    """Fail before any work (and before an earlier report is cleared) when a local manifest
    does not exist; a storage URL is only known to exist when it is read."""
    for source in sources:
        if "://" not in source or storage_scheme(source) == "file":
            path = Path(unquote(urlsplit(source).path) if "://" in source else source)
            if not path.is_file():
                raise ConfigError(f"no such manifest: {source}")


@contextlib.contextmanager
def manifest_file(source: str, reader: ImageReader, scratch: Path) -> Iterator[Path]:
    """A local path to the manifest ``source`` names: itself for a path or file:// URL; for a
    storage URL (``s3://bucket/batch.jsonl``) a copy in ``scratch`` read through the storage,
    removed afterwards, so that the records are streamed from disk like any other's."""
    scheme = storage_scheme(source) if "://" in source else "file"
    if scheme == "file":
        path = Path(unquote(urlsplit(source).path) if "://" in source else source)
        if not path.is_file():
            raise ConfigError(f"no such manifest: {source}")
        yield path
        return
    scratch.mkdir(parents=True, exist_ok=True)
    copy = scratch / f".manifest-{uuid.uuid4().hex[:8]}.jsonl"
    try:
        copy.write_bytes(reader.read(source))
        yield copy
    finally:
        copy.unlink(missing_ok=True)


def records_at(path: Path) -> Iterator[tuple[int, Record]]:
    """(byte offset, record) of each complete record of a manifest, streamed: what
    ``core.manifest.read_records`` yields, with where each line starts, so that a reader can
    keep offsets instead of records and seek back to one."""
    offset = 0
    with open(path, "rb") as stream:
        for line in stream:
            start, offset = offset, offset + len(line)
            if not line.endswith(b"\n"):
                return  # a torn last line
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                yield start, record


def record_at(stream: Any, offset: int) -> Record:
    """The record whose line starts at ``offset`` of an open binary manifest."""
    stream.seek(offset)
    record: Record = json.loads(stream.readline())
    return record
