"""The three values that cross every boundary: a request, an engine's capture, a result.

Plus what a storage keeps about an image for the capture cache (``CacheEntry``).
"""

from __future__ import annotations

import builtins
import dataclasses
import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .errors import DistshotError, InvalidRequest
from .options import CaptureOptions
from .policy import UrlPolicy

_ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,200}$")
#: A batch id is a folder of object keys: no slashes, no dots, nothing to escape.
#: A batch id: it names a reply queue and a manifest file, so only these characters.
BATCH_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,100}$")
BATCH_ID_RULE = "1-100 of [A-Za-z0-9_-]"
#: The longest cache TTL a request may carry (ten years): anything longer is a typo.
MAX_CACHE_TTL = 10 * 365 * 86400.0


@dataclass(frozen=True)
class ShotRequest:
    """One URL to capture. ``id`` is stable: the batch id and the input line number."""

    id: str
    line: int
    url: str
    options: CaptureOptions = field(default_factory=CaptureOptions)
    batch: str = ""
    engine: str | None = None
    storage: str | None = None
    allow_private: bool = False
    allow_networks: tuple[str, ...] = ()
    sent_at: float | None = None  # epoch seconds, set by the dispatcher for queue_ms
    #: Answer from storage when the same image was stored less than this many seconds ago.
    cache_ttl: float | None = None

    def policy(self) -> UrlPolicy:
        """The address policy this request was sent with."""
        return UrlPolicy.build(self.allow_private, self.allow_networks)

    def cache_key(self) -> str:
        """Hash of what determines the image: the URL and the image-changing options."""
        text = f"{self.url}\n{self.options.digest}"
        return hashlib.sha256(text.encode()).hexdigest()

    def image_key(self) -> str:
        """The manifest's ``image_key``: a short form of ``cache_key`` that also ends the
        object's name, so a record's key can be read back from its location."""
        return self.cache_key()[:16]

    def object_name(self) -> str:
        """A deterministic, collision-free object name: readable slug + content hash.

        Two requests share a name only when URL and options are equal, that is when
        they ask for the same image.
        """
        parts = urlsplit(self.url)
        slug = re.sub(r"[^A-Za-z0-9]+", "-", f"{parts.hostname or ''}{parts.path}").strip("-")
        ext = "jpg" if self.options.format == "jpeg" else self.options.format
        return f"{slug[:60] or 'page'}-{self.image_key()}.{ext}"

    def object_key(self) -> str:
        """Where the image goes inside a storage: ``<batch>/<object_name>``.

        Each batch is a folder, so a batch's images stay together and a later batch never
        overwrites an earlier one's; within a batch, names are deterministic.
        """
        return f"{self.batch}/{self.object_name()}" if self.batch else self.object_name()

    def to_wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "line": self.line,
            "url": self.url,
            "options": self.options.to_wire(),
            "batch": self.batch,
            "engine": self.engine,
            "storage": self.storage,
            "allow_private": self.allow_private,
            "allow_networks": list(self.allow_networks),
            "sent_at": self.sent_at,
            "cache_ttl": self.cache_ttl,
        }

    @classmethod
    def from_wire(cls, data: Any) -> ShotRequest:
        """Rebuild a request from a message; never trust the wire."""
        if not isinstance(data, dict):
            raise InvalidRequest(f"request must be a JSON object, not {type(data).__name__}")
        req_id, line, url = data.get("id"), data.get("line"), data.get("url")
        if not isinstance(req_id, str) or not _ID_RE.match(req_id):
            raise InvalidRequest(
                f"request id must be 1-200 characters of [A-Za-z0-9_.:-], not {req_id!r}"
            )
        if not isinstance(line, int) or isinstance(line, bool) or line < 0:
            raise InvalidRequest(f"request line must be a non-negative integer, not {line!r}")
        if not isinstance(url, str):
            raise InvalidRequest(f"request url must be text, not {url!r}")
        options = data.get("options") or {}
        if not isinstance(options, dict):
            raise InvalidRequest("request options must be a JSON object")
        for key in ("batch", "engine", "storage"):
            if data.get(key) is not None and not isinstance(data.get(key), str):
                raise InvalidRequest(f"request {key} must be text")
        batch = data.get("batch")
        if batch and not BATCH_ID_RE.match(batch):  # "" and None: no batch
            raise InvalidRequest(f"request batch must be {BATCH_ID_RULE}")
        cache_ttl = data.get("cache_ttl")
        if cache_ttl is not None and (
            not isinstance(cache_ttl, int | float)
            or isinstance(cache_ttl, bool)
            or not math.isfinite(cache_ttl)
            or not 0 < cache_ttl <= MAX_CACHE_TTL
        ):
            raise InvalidRequest(
                f"request cache_ttl must be seconds above 0 and at most {MAX_CACHE_TTL:g}, "
                f"not {cache_ttl!r}"
            )
        networks = data.get("allow_networks") or []
        if not isinstance(networks, list) or not all(isinstance(n, str) for n in networks):
            raise InvalidRequest("request allow_networks must be a list of CIDR strings")
        sent_at = data.get("sent_at")
        return cls(
            id=req_id,
            line=line,
            url=url,
            options=CaptureOptions.from_wire(options),
            batch=data.get("batch") or "",
            engine=data.get("engine"),
            storage=data.get("storage"),
            allow_private=bool(data.get("allow_private", False)),
            allow_networks=tuple(networks),
            sent_at=float(sent_at) if isinstance(sent_at, int | float) else None,
            cache_ttl=float(cache_ttl) if cache_ttl is not None else None,
        )


@dataclass(frozen=True)
class Capture:
    """What an engine hands back: the encoded image and what it saw."""

    image: bytes
    format: str
    final_url: str | None = None
    http_status: int | None = None
    title: str | None = None
    navigate_ms: float | None = None
    capture_ms: float | None = None
    #: The page was taller than ``max_height`` and the image stops there.
    truncated: bool = False
    #: Requests the blocking options refused (None: the job blocked nothing).
    blocked: int | None = None


@dataclass(frozen=True)
class StoredObject:
    """Where a storage put the image: ``location`` is canonical, ``link`` is openable."""

    location: str
    link: str | None
    #: The storage's version tag of what it stored (an S3 ETag), if it has one.
    version: str | None = None


@dataclass(frozen=True)
class CacheEntry:
    """What a storage keeps beside a stored image so a later request can be answered from
    storage: the record fields of the capture, without downloading the image again."""

    #: The object's name inside the storage (``batch/slug-hash.png``).
    name: str
    format: str
    bytes: int
    sha256: str
    width: int | None = None
    height: int | None = None
    engine: str | None = None
    final_url: str | None = None
    http_status: int | None = None
    title: str | None = None
    #: The storage's own version tag of the object (an S3 ETag), to detect replacement.
    etag: str | None = None
    truncated: bool = False
    #: The image's perceptual hash (None for a PDF, or an entry written before hashing).
    phash: str | None = None
    blocked: int | None = None

    def to_json(self) -> builtins.bytes:
        # Every field is a scalar: a flat dict, not asdict's recursive deep copy (which
        # was a tenth of a null-engine job's CPU in the worker).
        fields = {name: getattr(self, name) for name in _CACHE_ENTRY_FIELDS}
        return json.dumps(fields, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: builtins.bytes) -> CacheEntry | None:
        """The entry, or None when the data is not a well-formed entry (a torn or foreign
        file is a cache miss, never an error)."""
        try:
            raw = json.loads(data)
        except ValueError:
            return None
        if not isinstance(raw, dict):
            return None

        def text(key: str) -> str | None:
            value = raw.get(key)
            return value if isinstance(value, str) else None

        def number(key: str) -> int | None:
            value = raw.get(key)
            return value if isinstance(value, int) and not isinstance(value, bool) else None

        name, fmt, sha256, size = text("name"), text("format"), text("sha256"), number("bytes")
        if name is None or fmt is None or sha256 is None or size is None:
            return None
        return cls(
            name=name,
            format=fmt,
            bytes=size,
            sha256=sha256,
            width=number("width"),
            height=number("height"),
            engine=text("engine"),
            final_url=text("final_url"),
            http_status=number("http_status"),
            title=text("title"),
            etag=text("etag"),
            truncated=raw.get("truncated") is True,
            phash=text("phash"),
            blocked=number("blocked"),
        )


@dataclass(frozen=True)
class CacheHit:
    """A cached image, already present under the name the new request asked for."""

    stored: StoredObject
    entry: CacheEntry
    #: Seconds since the image was stored.
    age: float


_CACHE_ENTRY_FIELDS = tuple(f.name for f in dataclasses.fields(CacheEntry))

RECORD_FIELDS = (
    "id",
    "line",
    "url",
    "status",
    "engine",
    "location",
    "link",
    "final_url",
    "http_status",
    "title",
    "format",
    "width",
    "height",
    "bytes",
    "sha256",
    "cached",
    "attempts",
    "timings",
    "error",
    "truncated",
    "device",
    "phash",
    "image_key",
    "blocked",
)
TIMING_FIELDS = ("queue_ms", "navigate_ms", "capture_ms", "store_ms", "total_ms")


@dataclass
class ShotResult:
    """One manifest record. Fields that do not apply are None, never missing."""

    id: str
    line: int
    url: str
    status: str  # "ok" | "failed" | "rejected"
    engine: str | None = None
    location: str | None = None
    link: str | None = None
    final_url: str | None = None
    http_status: int | None = None
    title: str | None = None
    format: str | None = None
    width: int | None = None
    height: int | None = None
    bytes: int | None = None
    sha256: str | None = None
    cached: bool = False
    attempts: int = 0
    timings: dict[str, float | None] = field(default_factory=lambda: dict.fromkeys(TIMING_FIELDS))
    error: dict[str, str] | None = None
    #: Whether a full page was cut at ``max_height`` (None: no image).
    truncated: bool | None = None
    #: The device preset the page was shown as, if any.
    device: str | None = None
    #: The image's perceptual hash, 16 hex digits (core/perceptual.py): look-alike groups
    #: and ``distshot diff`` read it instead of opening every image again.
    phash: str | None = None
    #: What picture was asked for: the first 16 hex digits of the request's cache key (the
    #: URL and the options that change the image), the same that end the object's name. Two
    #: batches' records with equal keys asked for the same picture (``distshot diff``).
    image_key: str | None = None
    #: How many requests the blocking options refused (block_resources, block_urls,
    #: block_ads, block_trackers); None when none of them was set.
    blocked: int | None = None
    #: Not part of the record: whether a failed result may succeed on another attempt.
    transient: bool = False

    @classmethod
    def from_error(
        cls, request_id: str, line: int, url: str, status: str, error: DistshotError
    ) -> ShotResult:
        return cls(
            id=request_id,
            line=line,
            url=url,
            status=status,
            error={"type": error.type_name, "message": error.message},
            transient=error.transient,
        )

    def to_record(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in RECORD_FIELDS}
