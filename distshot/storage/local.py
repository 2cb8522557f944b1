"""Local disk storage (``file:///abs/dir`` or a plain directory).

Writes go to a temporary file in the same folder, are flushed to disk, then renamed over the
final name: rename is atomic, so a crash never leaves a half-written image under its name.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ..core.contracts import Storage
from ..core.errors import ConfigError, StorageError
from ..core.models import StoredObject
from ..plugins.hookspecs import hookimpl


def directory_from_url(url: str) -> Path:
    parts = urlsplit(url)
    if parts.scheme.lower() == "file":
        if parts.netloc not in ("", "localhost"):
            raise ConfigError(f"file storage must be on this machine, not {parts.netloc!r}")
        return Path(unquote(parts.path)).resolve()
    return Path(url).expanduser().resolve()


class LocalStorage(Storage):
    scheme = "file"

    def __init__(self, url: str) -> None:
        self.root = directory_from_url(url)

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
        target = self.root / name
        if ".." in Path(name).parts or Path(name).is_absolute():
            raise StorageError(f"refusing object name outside {self.root}: {name!r}")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
            try:
                with os.fdopen(fd, "wb") as stream:
                    stream.write(data)
                    stream.flush()
                    os.fsync(stream.fileno())
                os.chmod(tmp, 0o644)
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise StorageError(f"cannot write to folder {target.parent}: {exc.strerror}") from None
        uri = target.as_uri()
        return StoredObject(location=uri, link=uri, stored_at=time.time())


@hookimpl
def distshot_storages(register):  # type: ignore[no-untyped-def]
    register("file", LocalStorage)
