"""The capture service: policy -> engine -> storage -> result, for one request.

The actor, the embedded runner and the tests all call ``capture_request``; it never raises
for a request's own failure but returns a ``ShotResult`` saying what happened.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from datetime import UTC, datetime

from .contracts import UNIVERSAL_OPTIONS, Engine, Storage
from .errors import DistshotError, NavigationTimeout, StorageError, UnsupportedOption
from .imageinfo import CONTENT_TYPES, image_size
from .models import Capture, ShotRequest, ShotResult
from .policy import Resolver, system_resolver

#: Time an engine gets beyond the request's timeout to clean up before the service gives up.
_CLEANUP_GRACE = 5.0


def check_supported(request: ShotRequest, engine: Engine) -> None:
    caps = engine.capabilities
    unsupported = sorted(request.options.non_default() - caps.options - UNIVERSAL_OPTIONS)
    if unsupported:
        raise UnsupportedOption(f"engine {engine.name!r} cannot honour {', '.join(unsupported)}")
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
) -> ShotResult:
    started = time.time()
    result = ShotResult(
        id=request.id, line=request.line, url=request.url, status="ok", engine=engine.name
    )
    result.attempts = attempt
    if request.sent_at is not None:
        result.timings["queue_ms"] = round(max(0.0, started - request.sent_at) * 1000, 1)

    # Refusals before any browser work are "rejected": nothing was tried. A DNS failure
    # here is not a refusal but a failed (and retryable) attempt.
    try:
        policy = request.policy()
        if policy.allow_private:
            policy.check_url(request.url, resolver)  # syntax only: no DNS, no thread hop
        else:
            await asyncio.to_thread(policy.check_url, request.url, resolver)
        check_supported(request, engine)
    except DistshotError as exc:
        return _fail(result, "failed" if exc.transient else "rejected", exc, started)

    try:
        capture = await _run_engine(engine, request)
    except DistshotError as exc:
        return _fail(result, "failed", exc, started)

    store_started = time.time()
    try:
        stored = await asyncio.to_thread(
            storage.put,
            request.object_name(),
            capture.image,
            CONTENT_TYPES[capture.format],
            {
                "source-url": request.url[:1024],
                "captured-at": datetime.now(UTC).isoformat(timespec="seconds"),
                "engine": engine.name,
            },
        )
    except DistshotError as exc:
        return _fail(result, "failed", exc, started)
    except OSError as exc:  # a storage plugin that leaked a raw I/O error
        return _fail(result, "failed", StorageError(f"could not store image: {exc}"), started)

    size = image_size(capture.image)
    result.location, result.link = stored.location, stored.link
    result.final_url, result.http_status, result.title = (
        capture.final_url,
        capture.http_status,
        capture.title,
    )
    result.format = capture.format
    result.width, result.height = size if size else (None, None)
    result.bytes = len(capture.image)
    result.sha256 = hashlib.sha256(capture.image).hexdigest()
    result.timings["navigate_ms"] = capture.navigate_ms
    result.timings["capture_ms"] = capture.capture_ms
    result.timings["store_ms"] = _ms_since(store_started)
    result.timings["total_ms"] = _ms_since(started)
    return result


async def _run_engine(engine: Engine, request: ShotRequest) -> Capture:
    """The engine enforces the timeout itself; this is the backstop for one that cannot
    (a renderer stuck in a JavaScript loop ignores polite requests)."""
    budget = request.options.timeout + _CLEANUP_GRACE
    try:
        return await asyncio.wait_for(engine.capture(request), budget)
    except TimeoutError:
        raise NavigationTimeout(f"job exceeded its {request.options.timeout:g}s timeout") from None


def _fail(result: ShotResult, status: str, error: DistshotError, started: float) -> ShotResult:
    result.status = status
    result.error = {"type": error.type_name, "message": error.message}
    result.transient = error.transient
    result.timings["total_ms"] = _ms_since(started)
    return result


def _ms_since(start: float) -> float:
    return round((time.time() - start) * 1000, 1)
