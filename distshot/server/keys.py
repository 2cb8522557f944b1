"""API keys: who may call the service, what each key may use, and its secrets.

Keys are random tokens shown once; the service keeps only their SHA-256 (a keys file, one
JSON object a line, written by ``distshot keys add``), so a copied keys file does not let
anyone call the API. Keys may also come from ``DISTSHOT_API_KEYS`` (``id=KEY`` pairs), hashed
at start-up. Each key has its own concurrency quota and its own Standard Webhooks secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.errors import ConfigError

#: The principal of a service that runs without keys (loopback only).
LOCAL_ID = "local"
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")


@dataclass(frozen=True)
class ApiKey:
    id: str
    #: SHA-256 of the key, hex. Also the HMAC secret of the key's signed URLs, so that a
    #: client signs with what only it and the service know (see ``signing``).
    sha256: str
    #: ``whsec_...``: signs the webhooks sent for this key's shots and batches.
    webhook_secret: str
    #: Captures of this key that may run at once (None: the service's concurrency).
    concurrency: int | None = None
    #: Requests of this key that may wait for a browser (None: the service's --max-queue).
    max_queue: int | None = None

    @property
    def signing_secret(self) -> bytes:
        return bytes.fromhex(self.sha256)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def derived_webhook_secret(key_sha256: str) -> str:
    """A stable webhook secret for a key that has none of its own: derived from the key's
    hash, so it survives restarts without being stored."""
    raw = hmac.new(bytes.fromhex(key_sha256), b"distshot webhook secret", "sha256").digest()
    return "whsec_" + base64.b64encode(raw[:24]).decode()


def new_webhook_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


class KeyRing:
    """The keys the service accepts, looked up by hash (no comparison of secrets in the
    clear, so no timing leak) and by id (for signed URLs)."""

    def __init__(self, keys: Iterable[ApiKey] = ()) -> None:
        self._by_hash: dict[str, ApiKey] = {}
        self._by_id: dict[str, ApiKey] = {}
        for key in keys:
            if key.id in self._by_id:
                raise ConfigError(f"API key id {key.id!r} is given twice")
            self._by_hash[key.sha256] = key
            self._by_id[key.id] = key

    def __bool__(self) -> bool:
        return bool(self._by_id)

    def __len__(self) -> int:
        return len(self._by_id)

    def authenticate(self, token: str) -> ApiKey | None:
        return self._by_hash.get(hash_key(token)) if token else None

    def by_id(self, key_id: str) -> ApiKey | None:
        return self._by_id.get(key_id)


def _check_id(key_id: Any, where: str) -> str:
    if not isinstance(key_id, str) or not key_id or not set(key_id) <= _ID_CHARS:
        raise ConfigError(f"{where}: a key id must be letters, digits and _-. , not {key_id!r}")
    return key_id


def _limit(value: Any, name: str, where: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{where}: {name} must be a whole number of at least 1")
    return value


def key_from_entry(entry: Mapping[str, Any], where: str) -> ApiKey:
    key_id = _check_id(entry.get("id"), where)
    digest = entry.get("sha256")
    if not isinstance(digest, str) or len(digest) != 64:
        raise ConfigError(f"{where}: 'sha256' must be the key's SHA-256 in hex")
    try:
        bytes.fromhex(digest)
    except ValueError:
        raise ConfigError(f"{where}: 'sha256' must be the key's SHA-256 in hex") from None
    secret = entry.get("webhook_secret") or derived_webhook_secret(digest)
    if not isinstance(secret, str) or not secret.startswith("whsec_"):
        raise ConfigError(f"{where}: 'webhook_secret' must start with whsec_")
    return ApiKey(
        id=key_id,
        sha256=digest.lower(),
        webhook_secret=secret,
        concurrency=_limit(entry.get("concurrency"), "concurrency", where),
        max_queue=_limit(entry.get("max_queue"), "max_queue", where),
    )


def read_keys_file(path: Path) -> list[ApiKey]:
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the API keys file {path}: {exc.strerror}") from None
    keys = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        where = f"{path}:{number}"
        try:
            entry = json.loads(line)
        except ValueError:
            raise ConfigError(f"{where}: not a JSON object") from None
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: not a JSON object")
        keys.append(key_from_entry(entry, where))
    return keys


def keys_from_env(value: str) -> list[ApiKey]:
    """``DISTSHOT_API_KEYS``: ``id=KEY`` pairs separated by commas or spaces."""
    keys = []
    for part in value.replace(",", " ").split():
        key_id, sep, token = part.partition("=")
        if not sep or not token:
            raise ConfigError("DISTSHOT_API_KEYS must be id=KEY pairs separated by commas")
        digest = hash_key(token)
        entry = {"id": key_id, "sha256": digest}
        keys.append(key_from_entry(entry, "DISTSHOT_API_KEYS"))
    return keys


def load_keys(path: Path | None, env: Mapping[str, str] = os.environ) -> KeyRing:
    keys: list[ApiKey] = []
    if path is not None:
        keys += read_keys_file(path)
    if env.get("DISTSHOT_API_KEYS"):
        keys += keys_from_env(env["DISTSHOT_API_KEYS"])
    return KeyRing(keys)


def add_key(
    path: Path, key_id: str, *, concurrency: int | None = None, max_queue: int | None = None
) -> tuple[str, ApiKey]:
    """Make a new key, append its hash to ``path``; returns the key (shown once) and entry."""
    _check_id(key_id, "keys add")
    existing = read_keys_file(path) if path.exists() else []
    if any(key.id == key_id for key in existing):
        raise ConfigError(f"{path} already has a key {key_id!r}")
    token = "dsk_" + secrets.token_urlsafe(32)
    entry: dict[str, Any] = {
        "id": key_id,
        "sha256": hash_key(token),
        "webhook_secret": new_webhook_secret(),
    }
    if concurrency is not None:
        entry["concurrency"] = concurrency
    if max_queue is not None:
        entry["max_queue"] = max_queue
    key = key_from_entry(entry, "keys add")
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
    fd = os.open(path, flags, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as out:
        out.write(json.dumps(entry) + "\n")
    return token, key
