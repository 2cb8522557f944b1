"""Signed URLs for ``GET /v1/screenshot``: a page can embed ``<img src>`` without a key.

The signature is HMAC-SHA256 over the method, the path and the canonical query (every
parameter but ``signature``, sorted, percent-encoded), keyed by the SHA-256 of the API key:
the client computes it from its key, the service from its keys file, and the key itself
never appears in the page. ``expires`` (Unix seconds) bounds how long a link works.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterable
from urllib.parse import quote, urlencode

from ..core.errors import DistshotError
from .keys import ApiKey, KeyRing, hash_key

SCREENSHOT_PATH = "/v1/screenshot"
_SIGNING_FIELDS = ("key_id", "expires", "signature")


class SignatureError(DistshotError):
    """A signed URL that does not verify: missing parts, expired, or tampered with."""


def canonical_query(params: Iterable[tuple[str, str]]) -> str:
    pairs = sorted((k, v) for k, v in params if k != "signature")
    return "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in pairs)


def signature(secret: bytes, params: Iterable[tuple[str, str]], path: str) -> str:
    message = f"GET\n{path}\n{canonical_query(params)}".encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def sign_query(
    params: Iterable[tuple[str, str]],
    *,
    key_id: str,
    key: str,
    expires: int,
    path: str = SCREENSHOT_PATH,
) -> str:
    """The query string of a signed link, for clients (``distshot keys sign`` uses it)."""
    pairs = [(k, v) for k, v in params if k not in _SIGNING_FIELDS]
    pairs += [("key_id", key_id), ("expires", str(expires))]
    pairs.append(("signature", signature(bytes.fromhex(hash_key(key)), pairs, path)))
    return urlencode(pairs)


def is_signed(params: Iterable[tuple[str, str]]) -> bool:
    return any(k in _SIGNING_FIELDS for k, _ in params)


def verify(
    ring: KeyRing, params: list[tuple[str, str]], path: str, now: float | None = None
) -> ApiKey:
    """The key that signed ``params``; raises SignatureError (never says which part is
    wrong beyond "expired": that would help a forger)."""
    fields = {k: v for k, v in params if k in _SIGNING_FIELDS}
    if len(fields) != 3 or sum(1 for k, _ in params if k in _SIGNING_FIELDS) != 3:
        raise SignatureError("a signed URL needs key_id, expires and signature, once each")
    try:
        expires = int(fields["expires"])
    except ValueError:
        raise SignatureError("expires must be Unix seconds") from None
    key = ring.by_id(fields["key_id"])
    expected = signature(key.signing_secret if key else b"\0" * 32, params, path)
    if key is None or not hmac.compare_digest(expected, fields["signature"]):
        raise SignatureError("the signature does not match this URL")
    if expires < (time.time() if now is None else now):
        raise SignatureError("this signed URL has expired")
    return key
