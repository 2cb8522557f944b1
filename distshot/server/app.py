"""The HTTP API: routes onto the ``Service``. Every answer that is not an image or a
manifest stream is JSON; every error has the shape of ``errors.ApiError``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import StreamingResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..core.errors import DistshotError
from ..core.imageinfo import CONTENT_TYPES
from ..core.options import DEFAULT_OPTIONS
from ..plugins.manager import Registry
from .batches import Batch
from .errors import ApiError, error_response, not_found, unauthorized
from .gallery import add_gallery_routes
from .keys import ApiKey
from .limits import Overloaded
from .parsing import (
    check_url_text,
    invalid,
    parse_json,
    parse_shot_body,
    query_options,
    single,
)
from .schemas import (
    BATCH_SCHEMA,
    PENDING_SCHEMA,
    RECORD_SCHEMA,
    SHOT_BODY_SCHEMA,
    errors,
    json_content,
    option_parameters,
)
from .service import Service
from .shots import Shot
from .signing import SCREENSHOT_PATH, SignatureError, is_signed, verify

access_log = logging.getLogger("distshot.access")

BATCH_FORMATS = {
    "text/plain": "txt",
    "text/csv": "csv",
    "application/x-ndjson": "jsonl",
    "application/jsonl": "jsonl",
    "application/json-seq": "jsonl",
}
#: Failures caused by what the request asked for (answered 422), not by the page (502).
_REQUEST_FAULTS = frozenset({"ElementNotFound", "ScriptError", "UnsupportedOption"})
#: Grace beyond a capture's own timeout before GET /v1/screenshot gives up waiting.
_SCREENSHOT_GRACE = 30.0


def create_app(service: Service, registry: Registry) -> FastAPI:
    """The routes. Whoever runs the app starts and closes ``service`` (``run.serve``)."""
    app = FastAPI(
        title="distshot",
        summary="Screenshots of web pages, one or a batch at a time.",
        version="1",
    )
    app.state.service = service
    app.add_middleware(AccessLog, metrics=service.metrics)
    installed = set(registry.engines)
    settings = service.settings

    # -- errors: one JSON shape, never a traceback --------------------------------------

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> Response:
        return exc.response()

    @app.exception_handler(Overloaded)
    async def overloaded(_: Request, exc: Overloaded) -> Response:
        headers = {"Retry-After": str(exc.retry_after)}
        return error_response(429, "Overloaded", exc.message, headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> Response:
        names = {404: "NotFound", 405: "MethodNotAllowed"}
        name = names.get(exc.status_code, "HttpError")
        headers = dict(exc.headers) if exc.headers else None
        return error_response(exc.status_code, name, exc.detail, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
        return error_response(422, "InvalidRequest", str(first.get("msg", "invalid")), field=where)

    @app.exception_handler(Exception)
    async def internal_error(_: Request, exc: Exception) -> Response:
        logging.getLogger("distshot.serve").exception("internal error")
        return error_response(500, "InternalError", "internal error; the service log has it")

    # -- helpers ------------------------------------------------------------------------

    def authenticate(request: Request) -> ApiKey:
        if not service.keys:
            return service.local_key
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise unauthorized("send Authorization: Bearer KEY")
        key = service.keys.authenticate(token.strip())
        if key is None:
            raise unauthorized("this key is not valid")
        return key

    def accepting() -> None:
        if service.draining:
            raise ApiError(503, "Draining", "the service is stopping", headers={"Retry-After": "5"})

    async def read_body(request: Request, limit: int) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise ApiError(413, "BodyTooLarge", f"the body must be at most {limit} bytes")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise ApiError(413, "BodyTooLarge", f"the body must be at most {limit} bytes")
        return bytes(body)

    def own_shot(request: Request, shot_id: str) -> Shot:
        """The shot, if the caller's key asked for it (another key's id is a 404 too)."""
        shot = service.shots.get(shot_id, authenticate(request).id)
        if shot is None:
            raise not_found("shot")
        return shot

    def own_batch(request: Request, batch_id: str) -> Batch:
        batch = service.batches.get(batch_id, authenticate(request).id)
        if batch is None:
            raise not_found("batch")
        return batch

    def check_engine(engine: str | None) -> str | None:
        if engine is None:
            return None
        if engine not in installed:
            names = ", ".join(sorted(installed))
            raise invalid("engine", f"unknown engine {engine!r}; installed: {names}")
        return engine

    async def check_destination(url: str, field: str) -> None:
        """The address policy before accepting: a private URL is a 422 now, not a
        rejected record later (the capture checks again after redirects)."""
        try:
            if field == "webhook_url":
                await asyncio.to_thread(service.webhooks.check_url, url)
            elif not service.policy.allow_private:
                await asyncio.to_thread(service.policy.check_url, url)
        except DistshotError as exc:
            raise ApiError(422, exc.type_name, exc.message, field=field) from None

    def location(shot_id: str) -> str:
        return f"/v1/shots/{shot_id}"

    # -- shots --------------------------------------------------------------------------

    @app.post(
        "/v1/shots",
        summary="Take a screenshot",
        openapi_extra={"requestBody": {"required": True, **json_content(SHOT_BODY_SCHEMA)}},
        responses={
            200: {
                "description": "Finished within `wait`: the record",
                **json_content(RECORD_SCHEMA),
            },
            202: {"description": "Accepted; poll Location", **json_content(PENDING_SCHEMA)},
            **errors(400, 401, 413, 422, 429, 503),
        },
    )
    async def post_shot(request: Request) -> Response:
        key = authenticate(request)
        accepting()
        service.backend.admission.check(key.id)
        shot_input = parse_shot_body(parse_json(await read_body(request, settings.max_body)))
        engine = check_engine(shot_input.engine)
        await check_destination(shot_input.url, "url")
        if shot_input.webhook_url:
            await check_destination(shot_input.webhook_url, "webhook_url")
        wait = settings.default_wait if shot_input.wait is None else shot_input.wait
        shot = service.submit_shot(
            key,
            shot_input.url,
            shot_input.options,
            engine,
            shot_input.webhook_url,
            waiting_client=wait > 0,
        )
        if wait > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(shot.done.wait()), wait)
        if shot.record is not None:
            return JSONResponse(shot.record)
        return JSONResponse(
            {"id": shot.id, "status": shot.status, "url": shot.url},
            status_code=202,
            headers={"Location": location(shot.id)},
        )

    @app.get(
        "/v1/shots/{shot_id}",
        summary="A shot's record, or where it stands",
        responses={
            200: {
                "description": "The record, or {id, status} while queued or running",
                **json_content({"oneOf": [RECORD_SCHEMA, PENDING_SCHEMA]}),
            },
            **errors(401, 404),
        },
    )
    async def get_shot(shot_id: str, request: Request) -> Response:
        return JSONResponse(own_shot(request, shot_id).summary())

    @app.get(
        "/v1/shots/{shot_id}/image",
        summary="A shot's image (or a redirect to its storage link)",
        responses={
            200: {"description": "The image", "content": {"image/png": {}}},
            307: {"description": "Redirect to the image's link"},
            **errors(401, 404, 409),
        },
    )
    async def get_shot_image(shot_id: str, request: Request) -> Response:
        shot = own_shot(request, shot_id)
        if shot.record is None:
            raise ApiError(409, "NotReady", f"the shot is {shot.status}; try again later")
        return image_response(shot.record)

    @app.get(
        SCREENSHOT_PATH,
        summary="The image of a URL, for <img src>",
        description="Bearer key, or a signed URL: key_id, expires and signature.",
        openapi_extra={
            "parameters": [
                {"name": "url", "in": "query", "required": True, "schema": {"type": "string"}},
                {"name": "engine", "in": "query", "schema": {"type": "string"}},
                {"name": "key_id", "in": "query", "schema": {"type": "string"}},
                {"name": "expires", "in": "query", "schema": {"type": "integer"}},
                {"name": "signature", "in": "query", "schema": {"type": "string"}},
                *option_parameters(),
            ]
        },
        responses={
            200: {"description": "The image", "content": {"image/png": {}}},
            307: {"description": "Redirect to the image's link"},
            **errors(401, 422, 429, 502, 503, 504),
        },
    )
    async def get_screenshot(request: Request) -> Response:
        params = list(request.query_params.multi_items())
        if is_signed(params):
            try:
                key = verify(service.keys, params, SCREENSHOT_PATH) if service.keys else None
            except SignatureError as exc:
                raise unauthorized(exc.message) from None
            if key is None:
                raise unauthorized("signed URLs need API keys on the service")
        else:
            key = authenticate(request)
        accepting()
        service.backend.admission.check(key.id, waiting_client=True)
        url = check_url_text(single(params, "url"))
        options = query_options(params, DEFAULT_OPTIONS)
        engine = check_engine(single(params, "engine"))
        await check_destination(url, "url")
        shot = service.submit_shot(key, url, options, engine, None, waiting_client=True)
        try:
            await asyncio.wait_for(
                asyncio.shield(shot.done.wait()), options.timeout + _SCREENSHOT_GRACE
            )
        except TimeoutError:
            raise ApiError(504, "Timeout", f"no image yet; GET {location(shot.id)}") from None
        assert shot.record is not None
        record = shot.record
        if record["status"] != "ok":
            err = record.get("error") or {}
            kind = err.get("type", "Failed")
            status = 422 if record["status"] == "rejected" or kind in _REQUEST_FAULTS else 502
            if kind == "NavigationTimeout":
                status = 504
            raise ApiError(status, kind, err.get("message", "the capture failed"))
        return image_response(record)

    # -- batches ------------------------------------------------------------------------

    @app.post(
        "/v1/batches",
        summary="Send a batch: URL lines, CSV or JSON Lines",
        description="Query parameters set every line's default options, like CLI flags.",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "text/plain": {"schema": {"type": "string"}},
                    "text/csv": {"schema": {"type": "string"}},
                    "application/x-ndjson": {"schema": {"type": "string"}},
                },
            },
            "parameters": [
                {"name": "engine", "in": "query", "schema": {"type": "string"}},
                {"name": "webhook_url", "in": "query", "schema": {"type": "string"}},
                *option_parameters(),
            ],
        },
        responses={
            202: {"description": "Accepted", **json_content(BATCH_SCHEMA)},
            **errors(401, 413, 415, 422, 503),
        },
    )
    async def post_batch(request: Request) -> Response:
        key = authenticate(request)
        accepting()
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        fmt = BATCH_FORMATS.get(media)
        if fmt is None:
            shown = ", ".join(BATCH_FORMATS)
            raise ApiError(415, "UnsupportedMediaType", f"send the batch as one of {shown}")
        params = list(request.query_params.multi_items())
        defaults = query_options(params, DEFAULT_OPTIONS)
        engine = check_engine(single(params, "engine"))
        webhook = single(params, "webhook_url")
        if webhook is not None:
            webhook = check_url_text(webhook, "webhook_url")
            await check_destination(webhook, "webhook_url")
        batch = service.batches.create(key.id, fmt, webhook)
        try:
            await spool(request, batch.input_path, settings.max_batch_body)
            await asyncio.to_thread(service.check_batch_input, batch)
        except DistshotError as exc:
            service.batches.drop(batch)
            raise ApiError(422, exc.type_name, exc.message, field="body") from None
        except BaseException:
            service.batches.drop(batch)
            raise
        service.start_batch(batch, defaults, engine)
        return JSONResponse(
            batch.summary(), status_code=202, headers={"Location": f"/v1/batches/{batch.id}"}
        )

    @app.get(
        "/v1/batches/{batch_id}",
        summary="A batch's progress",
        responses={
            200: json_content(BATCH_SCHEMA) | {"description": "Progress"},
            **errors(401, 404),
        },
    )
    async def get_batch(batch_id: str, request: Request) -> Response:
        batch = own_batch(request, batch_id)
        return JSONResponse(batch.summary())

    @app.get(
        "/v1/batches/{batch_id}/manifest",
        summary="A batch's records so far (JSON Lines); follow=true streams until done",
        responses={
            200: {"description": "Records", "content": {"application/x-ndjson": {}}},
            **errors(401, 404),
        },
    )
    async def get_manifest(batch_id: str, request: Request, follow: bool = False) -> Response:
        batch = own_batch(request, batch_id)
        return StreamingResponse(stream_manifest(batch, follow), media_type="application/x-ndjson")

    @app.delete(
        "/v1/batches/{batch_id}",
        summary="Cancel a batch: nothing more is started",
        responses={
            202: {"description": "Cancelling", **json_content(BATCH_SCHEMA)},
            **errors(401, 404),
        },
        status_code=202,
    )
    async def delete_batch(batch_id: str, request: Request) -> Response:
        batch = own_batch(request, batch_id)
        if not batch.finished:
            batch.cancel_requested = True
        return JSONResponse(batch.summary(), status_code=202)

    add_gallery_routes(app, service, authenticate)

    # -- the key, health, metrics -------------------------------------------------------

    @app.get(
        "/v1/account",
        summary="This key: its id, quotas and webhook secret",
        responses={200: {"description": "The key"}, **errors(401)},
    )
    async def account(request: Request) -> Response:
        key = authenticate(request)
        return JSONResponse(
            {
                "key_id": key.id,
                "webhook_secret": key.webhook_secret,
                "concurrency": key.concurrency or settings.concurrency,
                "max_queue": key.max_queue or settings.max_queue,
            }
        )

    @app.get("/healthz", summary="Liveness")
    async def healthz() -> Response:
        return JSONResponse({"status": "ok"})

    @app.get(
        "/readyz",
        summary="Readiness: 503 while saturated or draining",
        responses={503: {"description": "Not taking work now"}},
    )
    async def readyz() -> Response:
        admission = service.backend.admission
        if service.draining:
            return JSONResponse({"status": "draining"}, status_code=503)
        if admission.saturated:
            retry = {"Retry-After": str(admission.retry_after())}
            return JSONResponse({"status": "saturated"}, status_code=503, headers=retry)
        return JSONResponse({"status": "ready"})

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def metrics() -> Response:
        return Response(service.metrics.render(), media_type="text/plain; version=0.0.4")

    return app


def image_response(record: dict[str, Any]) -> Response:
    link = record.get("link") or ""
    location = record.get("location") or ""
    media = CONTENT_TYPES.get(str(record.get("format")), "application/octet-stream")
    if location.startswith("file://"):
        path = Path(unquote(urlsplit(location).path))
        if path.is_file():
            return FileResponse(path, media_type=media)
        raise ApiError(404, "NotFound", "the image is no longer in storage")
    if link.startswith(("http://", "https://")):
        return RedirectResponse(link, status_code=307)
    raise ApiError(404, "NotFound", "this shot has no image")


async def spool(request: Request, path: Path, limit: int) -> None:
    """Write the body to ``path`` as it arrives; never more than ``limit`` bytes."""
    size = 0
    with open(path, "wb") as out:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(413, "BodyTooLarge", f"a batch must be at most {limit} bytes")
            out.write(chunk)


async def stream_manifest(batch: Batch, follow: bool) -> AsyncIterator[bytes]:
    """The manifest's whole lines; with ``follow``, new ones as they are written, until
    the batch is finished and everything written has been sent."""
    offset = 0
    tail = b""
    while True:
        changed = batch.changed
        finished = batch.finished
        data = b""
        if batch.manifest_path.exists():
            with open(batch.manifest_path, "rb") as stream:
                stream.seek(offset)
                data = stream.read(1 << 20)
        if data:
            offset += len(data)
            data = tail + data
            cut = data.rfind(b"\n") + 1
            tail = data[cut:]
            if cut:
                yield data[:cut]
            continue
        if not follow or finished:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), 1.0)


class AccessLog:
    """One line per request (method, path, status, ms, key) and the request metrics. Pure
    ASGI: a streamed manifest passes through untouched. The query is not logged: it may
    hold a signature or a page's own tokens."""

    def __init__(self, app: ASGIApp, metrics: Any) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(template, scope["method"], str(status)).inc()
            access_log.info(
                "%s %s %d %.1fms client=%s",
                scope["method"],
                scope["path"],
                status,
                (time.monotonic() - started) * 1000,
                (scope.get("client") or ("-",))[0],
            )
