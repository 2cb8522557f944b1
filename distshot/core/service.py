"""The capture service: policy -> cache -> engine -> storage -> result, for one request.

The actor, the embedded runner and the tests all call ``capture_request``; it never raises
for a request's own failure but returns a ``ShotResult`` saying what happened.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
import logging
import time
from datetime import UTC, datetime
from pathlib import Path

from .contracts import Engine, Storage
from .errors import (
    BlockedAddress,
    DistshotError,
    NavigationTimeout,
    NetworkError,
    ProxyError,
    StorageError,
    UnsupportedOption,
)
from .imageinfo import CONTENT_TYPES, image_size
from .models import CacheEntry, CacheHit, Capture, ShotRequest, ShotResult, StoredObject
from .perceptual import phash_hex
from .policy import Resolver, pinned_resolver, system_resolver
from .proxy import Proxy

logger = logging.getLogger("distshot.service")

#: Time an engine gets beyond the request's timeout to clean up before the service gives up.
_CLEANUP_GRACE = 5.0
#: Images up to this many pixels are hashed on the event loop (well under a millisecond).
_INLINE_HASH_PIXELS = 256 * 256


def check_destinations(request: ShotRequest, resolver: Resolver) -> None:
    """The address policy's check before any browser work: the URL's host and the
    request's own upstream proxy, itself a destination (the worker's proxy is trusted
    configuration and not judged)."""
    policy = request.policy()
    policy.check_url(request.url, resolver)
    if request.options.proxy is None:
        return
    proxy = Proxy.parse(request.options.proxy)
    try:
        policy.check_host(proxy.host, proxy.port, resolver)
    except BlockedAddress as exc:
        raise BlockedAddress(f"proxy {proxy}: {exc.message}") from None
    except NetworkError as exc:
        raise ProxyError(f"proxy {proxy} is unreachable: {exc.message}") from None


def check_supported(request: ShotRequest, engine: Engine) -> None:
    caps = engine.capabilities
    unsupported = sorted(request.options.non_default() - caps.honoured)
    if unsupported:
        plural = "s" if len(unsupported) > 1 else ""
        raise UnsupportedOption(
            f"engine {engine.name!r} does not honour the option{plural} "
            f"{', '.join(unsupported)}; `distshot engines` lists what each engine honours"
        )
    if request.options.format not in caps.formats:
        raise UnsupportedOption(
            f"engine {engine.name!r} cannot encode {request.options.format}; "
            f"it supports {', '.join(sorted(caps.formats))}"
        )
    if request.options.wait_until not in caps.wait_until:
        raise UnsupportedOption(
            f"engine {engine.name!r} cannot wait until {request.options.wait_until}"
        )


async def capture_request(
    request: ShotRequest,
    engine: Engine,
    storage: Storage,
    *,
    attempt: int = 1,
    resolver: Resolver = system_resolver,
    hash_images: bool = True,
    secrets_dir: str | None = None,
) -> ShotResult:
    """``hash_images``: put the image's perceptual hash in the record (``phash``), about 2%
    of a shot's CPU (docs/benchmarks.md); a worker can turn it off (``phash = false``)."""
    started = time.monotonic()
    result = ShotResult(
        id=request.id,
        line=request.line,
        url=request.url,
        status="ok",
        engine=engine.name,
        device=request.options.device,
        image_key=request.image_key(),
    )
    result.attempts = attempt
    if request.sent_at is not None:  # the dispatcher's wall clock, not a monotonic one
        result.timings["queue_ms"] = round(max(0.0, time.time() - request.sent_at) * 1000, 1)

    # Refusals before any browser work are "rejected": nothing was tried. A DNS failure
    # here is not a refusal but a failed (and retryable) attempt.
    try:
        # ``@secrets/NAME`` values are read here, on the worker, before anything hashes
        # the options (the cache key counts the secret itself, not its name).
        options = request.options.resolve_secrets(Path(secrets_dir) if secrets_dir else None)
        if options is not request.options:
            request = dataclasses.replace(request, options=options)
            result.image_key = request.image_key()
        policy = request.policy()
        # A host the request pins (``resolve``) is judged by its pinned address, never DNS.
        resolver = pinned_resolver(request.options.resolve, resolver)
        if policy.allow_private:
            check_destinations(request, resolver)  # syntax only: no DNS, no thread hop
        else:
            await asyncio.to_thread(check_destinations, request, resolver)
        check_supported(request, engine)
    except DistshotError as exc:
        return _fail(result, "failed" if exc.transient else "rejected", exc, started)

    # The cache: an image of the same URL and options, stored within the TTL, answers the
    # request without any browser work. An error here fails the attempt like a storage error.
    if request.cache_ttl is not None:
        lookup_started = time.monotonic()
        try:
            hit = await asyncio.to_thread(
                storage.lookup,
                cache_id(request, engine.name),
                request.object_key(),
                request.cache_ttl,
            )
        except DistshotError as exc:
            return _fail(result, "failed", exc, started)
        except OSError as exc:
            return _fail(result, "failed", StorageError(f"cache lookup failed: {exc}"), started)
        if hit is not None:
            return _answer_from_cache(result, hit, lookup_started, started)

    try:
        capture = await _run_engine(engine, request)
    except DistshotError as exc:
        return _fail(result, "failed", exc, started)

    size = image_size(capture.image)
    width, height = size if size else (None, None)
    phash = await _hash(capture.image, width, height) if hash_images else None
    store_started = time.monotonic()
    sha256 = hashlib.sha256(capture.image).hexdigest()
    try:
        store = functools.partial(
            _store, storage, request, engine.name, capture, (width, height), sha256, phash
        )
        if len(capture.image) <= storage.inline_write_limit:
            stored = store()
        else:
            stored = await asyncio.to_thread(store)
    except DistshotError as exc:
        return _fail(result, "failed", exc, started)
    except OSError as exc:  # a storage plugin that leaked a raw I/O error
        return _fail(result, "failed", StorageError(f"could not store image: {exc}"), started)

    result.location, result.link = stored.location, stored.link
    result.final_url, result.http_status, result.title = (
        capture.final_url,
        capture.http_status,
        capture.title,
    )
    result.format = capture.format
    result.width, result.height = width, height
    result.bytes = len(capture.image)
    result.sha256 = sha256
    result.truncated = capture.truncated
    result.blocked = capture.blocked
    result.phash = phash
    result.timings["navigate_ms"] = capture.navigate_ms
    result.timings["capture_ms"] = capture.capture_ms
    result.timings["store_ms"] = _ms_since(store_started)
    result.timings["total_ms"] = _ms_since(started)
    return result


async def _hash(image: bytes, width: int | None, height: int | None) -> str | None:
    """Hashing decodes the image (a 1280x800 PNG: ~13 ms of CPU), so a real shot's hash runs
    in a thread and the event loop keeps serving the worker's other jobs; a tiny image
    (the null engine's) is hashed inline, where a thread hop would cost more than the hash."""
    if width is not None and height is not None and width * height <= _INLINE_HASH_PIXELS:
        return phash_hex(image)
    return await asyncio.to_thread(phash_hex, image)


def cache_id(request: ShotRequest, engine_name: str) -> str:
    """What identifies equal images for the cache: URL, image-changing options, engine."""
    return hashlib.sha256(f"{request.cache_key()}\n{engine_name}".encode()).hexdigest()


def _store(
    storage: Storage,
    request: ShotRequest,
    engine_name: str,
    capture: Capture,
    size: tuple[int | None, int | None],
    sha256: str,
    phash: str | None,
) -> StoredObject:
    """Put the image, then remember it for the cache (always, so that a later run with a
    cache TTL finds what this one stored). A failure to remember costs only a cache miss."""
    name = request.object_key()
    stored = storage.put(
        name,
        capture.image,
        CONTENT_TYPES[capture.format],
        {
            "source-url": request.url[:1024],
            "captured-at": datetime.now(UTC).isoformat(timespec="seconds"),
            "engine": engine_name,
        },
    )
    entry = CacheEntry(
        name=name,
        format=capture.format,
        bytes=len(capture.image),
        sha256=sha256,
        width=size[0],
        height=size[1],
        engine=engine_name,
        final_url=capture.final_url,
        http_status=capture.http_status,
        title=capture.title,
        etag=stored.version,
        truncated=capture.truncated,
        phash=phash,
        blocked=capture.blocked,
    )
    try:
        storage.remember(cache_id(request, engine_name), entry)
    except (DistshotError, OSError) as exc:
        logger.warning("stored %s but could not remember it for the cache: %s", name, exc)
    return stored


def _answer_from_cache(
    result: ShotResult, hit: CacheHit, lookup_started: float, started: float
) -> ShotResult:
    entry = hit.entry
    result.cached = True
    result.location, result.link = hit.stored.location, hit.stored.link
    result.final_url, result.http_status, result.title = (
        entry.final_url,
        entry.http_status,
        entry.title,
    )
    result.format = entry.format
    result.width, result.height = entry.width, entry.height
    result.bytes = entry.bytes
    result.sha256 = entry.sha256
    result.truncated = entry.truncated
    result.blocked = entry.blocked
    result.phash = entry.phash
    result.timings["store_ms"] = _ms_since(lookup_started)
    result.timings["total_ms"] = _ms_since(started)
    return result


async def _run_engine(engine: Engine, request: ShotRequest) -> Capture:
    """The engine enforces the timeout itself; this is the backstop for one that cannot
    (a renderer stuck in a JavaScript loop ignores polite requests)."""
    budget = request.options.timeout + _CLEANUP_GRACE
    try:
        # asyncio.timeout, not wait_for: the capture runs in the job's own task rather than
        # in a second one, which cost a fast engine's job a task and a loop iteration.
        async with asyncio.timeout(budget):
            return await engine.capture(request)
    except TimeoutError:
        raise NavigationTimeout.for_url(request.url, request.options.timeout) from None


def _fail(result: ShotResult, status: str, error: DistshotError, started: float) -> ShotResult:
    result.status = status
    result.error = {"type": error.type_name, "message": error.message}
    result.transient = error.transient
    result.timings["total_ms"] = _ms_since(started)
    return result


def _ms_since(start: float) -> float:
    return round((time.monotonic() - start) * 1000, 1)
