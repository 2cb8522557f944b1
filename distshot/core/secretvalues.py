"""Secret option values: how they are hashed, named and resolved without ever being shown.

An option declared ``secret=True`` (cookies, storage_state, http_credentials, a proxy's
password...) gets three things from here, whatever its kind:

- a keyed hash (``keyed_hash``) in place of its value in the options' digest, so the cache
  key and the image's object name tell two sessions apart and reveal nothing;
- secret references: the text ``@secrets/NAME`` stays a ``SecretRef`` on the client and on
  the wire, and a worker reads ``NAME`` from its own ``secrets_dir`` (``read_secret``), so
  the value never passes through the broker;
- values whose ``repr`` hides them (the kinds' dataclasses), so a traceback or a debug log
  of a request shows ``<secret>``.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import re
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from .errors import InvalidOption

SECRET_PREFIX = "@secrets/"
#: What a secret's name may be: a file name inside the worker's secrets directory, with
#: sub-folders, never a way out of it.
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}(/[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})*$")
#: Where the key is taken from, before the generated one.
KEY_ENV = "DISTSHOT_SECRET_KEY"
#: A secret file larger than this is not a cookie jar.
MAX_SECRET_BYTES = 1_000_000

REDACTED = "<secret>"


@dataclass(frozen=True)
class SecretRef:
    """``@secrets/NAME``: a secret the worker reads from its own configuration."""

    name: str

    @classmethod
    def parse(cls, option: str, text: str) -> SecretRef:
        name = text.strip()[len(SECRET_PREFIX) :]
        if not _NAME_RE.match(name) or ".." in name.split("/"):
            raise InvalidOption(
                f"{option}: {text.strip()!r} is not a secret's name; use @secrets/NAME "
                "with letters, digits, '.', '_', '-' and '/'"
            )
        return cls(name)

    @property
    def text(self) -> str:
        return SECRET_PREFIX + self.name


def is_secret_ref(value: object) -> bool:
    return isinstance(value, str) and value.strip().startswith(SECRET_PREFIX)


def read_secret(option: str, ref: SecretRef, directory: Path | None) -> str:
    """The text of the secret file ``ref`` names, from this worker's ``secrets_dir``. Its
    name may be shown; its content never is."""
    if directory is None:
        raise InvalidOption(
            f"{option} is {ref.text}, but this worker has no secrets_dir to read it from"
        )
    path = directory / ref.name
    try:
        if path.stat().st_size > MAX_SECRET_BYTES:
            raise InvalidOption(f"{option}: the secret {ref.text} is larger than 1 MB")
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        raise InvalidOption(
            f"{option}: this worker has no readable secret {ref.text} in its secrets_dir"
        ) from None


# -- the keyed hash ------------------------------------------------------------------------
#
# Where the key comes from: DISTSHOT_SECRET_KEY when set (a fleet whose workers share one
# storage sets the same key on each, so that they share cached images of a logged-in page),
# else a random key generated once and kept in this machine's state directory (mode 0600),
# so that the cache works on one machine with no set-up. Never in the storage beside the
# images: whoever can list a bucket could then test guessed passwords against its names.

_key: bytes | None = None
_key_lock = threading.Lock()


def _key_file() -> Path:
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "distshot" / "secret-key"


def hmac_key() -> bytes:
    global _key
    with _key_lock:
        if _key is None:
            configured = os.environ.get(KEY_ENV, "").strip()
            _key = configured.encode() if configured else _generated_key()
        return _key


def _generated_key() -> bytes:
    """The machine's key, made by the first process that needs it: written whole to a file
    of its own, then linked into place, so a process that loses the race reads the winner's
    complete key, never a half-written one."""
    path = _key_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".secret-key.")  # mode 0600
        try:
            with os.fdopen(fd, "w") as out:
                out.write(os.urandom(32).hex())
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
        finally:
            os.unlink(tmp)
    return path.read_bytes().strip()


def keyed_hash(text: str) -> str:
    """HMAC-SHA256 of a secret value: equal values hash equal, and nothing can be learnt of
    the value without the key."""
    return hmac.new(hmac_key(), text.encode(), hashlib.sha256).hexdigest()


def scrub(message: str, *values: str) -> str:
    """``message`` with every one of ``values`` (longer than 2 characters) replaced."""
    for value in sorted(values, key=len, reverse=True):
        if len(value) > 2:
            message = message.replace(value, REDACTED)
    return message
