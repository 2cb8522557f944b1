"""Local disk storage (``file:///abs/dir`` or a plain directory).

Writes go to a temporary file in the same folder, then are renamed over the final name:
rename is atomic, so a crashed process never leaves a half-written image under its name.
``file:///dir?fsync=1`` also forces each image to disk before the rename, which extends the
promise to a crash of the whole machine, at a cost of one disk flush per image (measured
here: 44 ms median per image under load, the pipeline's largest cost).
``file:///dir?public_base_url=https://shots.example/`` makes links that base plus the
image's path under the folder (for a folder a web server publishes).

The capture cache keeps one small JSON file per cache key in ``DIR/.cache/``; a hit in a
later batch hard-links the image into that batch's folder (a copy across file systems).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import threading
import time
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from ..core.config import storage_options
from ..core.contracts import Storage
from ..core.errors import ConfigError, StorageError
from ..core.models import CacheEntry, CacheHit, StoredObject
from ..plugins.hookspecs import hookimpl

OPTIONS = ("fsync", "public_base_url")
CACHE_FOLDER = ".cache"
_CACHE_KEY_RE = re.compile(r"^[0-9a-f]{16,128}$")
_SEQ = itertools.count()
_INLINE_WRITE_LIMIT = 1 << 20  # 1 MiB: a viewport PNG, not a 20 MiB full-page one


def parse_location(url: str) -> tuple[Path, dict[str, str]]:
    """(folder, options) from ``file:///dir?fsync=1`` or a plain path."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "file":
        return Path(url).expanduser().resolve(), {}
    if parts.netloc not in ("", "localhost"):
        raise ConfigError(f"file storage must be on this machine, not {parts.netloc!r}")
    return Path(unquote(parts.path)).resolve(), storage_options(url, OPTIONS, "file")


class LocalStorage(Storage):
    scheme = "file"

    def __init__(self, url: str) -> None:
        self.root, options = parse_location(url)
        self.fsync = options.get("fsync", "0").lower() in ("1", "true", "yes")
        # Small writes without fsync land in the page cache in microseconds: the service
        # may run them on the event loop (see Storage.inline_write_limit).
        self.inline_write_limit = 0 if self.fsync else _INLINE_WRITE_LIMIT
        self._made: set[Path] = set()  # folders known to exist (made by this object)
        self.public_base_url = options.get("public_base_url")

    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create folder {self.root}: {exc.strerror}") from None
        if not os.access(self.root, os.W_OK):
            raise StorageError(f"folder {self.root} is not writable")

    def put(
        self, name: str, data: bytes, content_type: str, metadata: dict[str, str]
    ) -> StoredObject:
        target = self._path(name)
        try:
            self._replace(target, data)
        except OSError as exc:
            raise StorageError(f"cannot write to folder {target.parent}: {exc.strerror}") from None
        return self._stored(target)

    def read(self, location: str) -> bytes:
        path = self._located(location)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise StorageError(f"no image at {path}", transient=False) from None
        except OSError as exc:
            raise StorageError(f"cannot read {path}: {exc.strerror}") from None

    # -- the capture cache ------------------------------------------------------------

    def remember(self, cache_key: str, entry: CacheEntry) -> None:
        index = self._index(cache_key)
        try:
            self._replace(index, entry.to_json())
        except OSError as exc:
            raise StorageError(f"cannot write to folder {index.parent}: {exc.strerror}") from None

    def lookup(
        self, cache_key: str, name: str, max_age: float, now: float | None = None
    ) -> CacheHit | None:
        index, target = self._index(cache_key), self._path(name)
        try:
            # The index file's mtime is when the entry was remembered; a hit never writes it.
            age = (time.time() if now is None else now) - index.stat().st_mtime
            if age > max_age:
                return None
            entry = CacheEntry.from_json(index.read_bytes())
            if entry is None:
                return None
            source = self._path(entry.name)
            if source.stat().st_size != entry.bytes:
                return None  # replaced since it was remembered: not the image we know
            if source != target:
                self._link(source, target)
        except FileNotFoundError:
            return None  # never stored, or removed since: a miss
        except StorageError:
            return None  # an entry naming a path outside the folder: not ours, a miss
        except OSError as exc:
            raise StorageError(
                f"cache lookup failed in folder {self.root}: {exc.strerror}"
            ) from None
        return CacheHit(self._stored(target), entry, max(0.0, age))

    # -- helpers ----------------------------------------------------------------------

    def _path(self, name: str) -> Path:
        if ".." in Path(name).parts or Path(name).is_absolute():
            raise StorageError(f"refusing object name outside {self.root}: {name!r}")
        return self.root / name

    def _located(self, location: str) -> Path:
        """The file a ``file://`` location names, which must lie inside the folder (a
        storage on ``file:///`` reads any local image: what the report makes)."""
        parts = urlsplit(location)
        if parts.scheme.lower() != "file" or parts.netloc not in ("", "localhost"):
            raise StorageError(f"not a local file location: {location!r}", transient=False)
        path = Path(unquote(parts.path)).resolve()
        if path != self.root and self.root not in path.parents:
            raise StorageError(f"refusing to read {path}: outside {self.root}", transient=False)
        return path

    def _index(self, cache_key: str) -> Path:
        if not _CACHE_KEY_RE.match(cache_key):
            raise StorageError(f"refusing cache key {cache_key!r}: not a hex digest")
        return self.root / CACHE_FOLDER / f"{cache_key}.json"

    def _stored(self, target: Path) -> StoredObject:
        uri = target.as_uri()
        link = uri
        if self.public_base_url is not None:
            relative = target.relative_to(self.root).as_posix()
            link = self.public_base_url.rstrip("/") + "/" + quote(relative)
        return StoredObject(location=uri, link=link)

    def _replace(self, target: Path, data: bytes) -> None:
        """Write ``data`` to a temporary file beside ``target``, then rename it over it.

        Lean on purpose (one open, one write, one rename; folders made once per process):
        with a fast engine this write is a large share of a worker's CPU per job."""
        folder = target.parent
        if folder not in self._made:
            self._make(folder)
        # Unique without tempfile's random-name retries: one process, one thread, one counter.
        tmp = f"{folder}/.{target.name}.{os.getpid()}.{threading.get_ident()}.{next(_SEQ)}.part"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        try:
            fd = os.open(tmp, flags, 0o644)
        except FileNotFoundError:  # the folder was removed under us: make it again, once
            self._make(folder)
            fd = os.open(tmp, flags, 0o644)
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                if self.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def _make(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self._made.add(folder)

    def _link(self, source: Path, target: Path) -> None:
        """Make ``target`` the same image as ``source``, atomically: a hard link (no bytes
        copied; safe, since images are only ever replaced by rename, never rewritten), or
        a copy where links are impossible (another file system)."""
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".{target.name}.{os.getpid()}.{time.monotonic_ns()}.part"
        try:
            try:
                os.link(source, tmp)
            except OSError:
                shutil.copyfile(source, tmp)
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


@hookimpl
def distshot_storages(register):  # type: ignore[no-untyped-def]
    register("file", LocalStorage)
