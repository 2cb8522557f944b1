"""The live gallery of a batch, ``/batches/{id}/``: the report's own page (one set of
templates, ``report/assets``), fed by the service instead of data files, updating as
records arrive.

A browser cannot send ``Authorization`` with an ``<img src>``, so when the service has
keys, a person opens the gallery with a *signed link* (``distshot keys sign`` of
``/batches/{id}/``, as for ``/v1/screenshot``). The page answers it with a cookie bound to
that batch and path, HMAC-signed with the key's signing secret and expiring with the link;
the page's data, images and thumbnails then accept the cookie (or a Bearer key, for
programs). Another key's batch is a 404, as in the API.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import html
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, RedirectResponse, Response

from ..report.page import ASSETS
from ..report.sources import ImageReader
from ..report.thumbnails import make_thumbnail
from .batches import Batch
from .errors import ApiError, not_found, unauthorized
from .keys import ApiKey
from .service import Service
from .signing import SignatureError, is_signed, verify

#: How often the page asks for new records while the batch runs (milliseconds).
POLL_MS = 1000
_COOKIE = "distshot_gallery"


def add_gallery_routes(
    app: FastAPI, service: Service, authenticate: Callable[[Request], ApiKey]
) -> None:
    """Add ``/batches/{id}/...`` to ``app``; ``authenticate`` is the API's Bearer check."""
    indexes = _RecordIndexes()
    reader = ImageReader()

    def viewer(request: Request, batch_id: str) -> ApiKey:
        """The key looking at this batch: no keys (loopback), a Bearer key, or the
        gallery cookie the signed link set."""
        if not service.keys or "authorization" in request.headers:
            return authenticate(request)
        key = _cookie_key(service, request.cookies.get(_COOKIE, ""), batch_id)
        if key is None:
            raise unauthorized("open this gallery with a signed link (distshot keys sign)")
        return key

    def own(request: Request, batch_id: str) -> Batch:
        batch = service.batches.get(batch_id, viewer(request, batch_id).id)
        if batch is None:
            raise not_found("batch")
        return batch

    @app.get("/batches/{batch_id}", include_in_schema=False)
    async def gallery_redirect(batch_id: str, request: Request) -> Response:
        # The page's links are relative to the batch's folder: it must end with a slash.
        query = f"?{request.url.query}" if request.url.query else ""
        return RedirectResponse(f"/batches/{batch_id}/{query}", status_code=307)

    @app.get("/batches/{batch_id}/", include_in_schema=False)
    async def gallery_page(batch_id: str, request: Request) -> Response:
        params = list(request.query_params.multi_items())
        cookie = None
        if service.keys and is_signed(params):
            try:
                key = verify(service.keys, params, request.url.path)
            except SignatureError as exc:
                raise ApiError(403, "SignatureError", exc.message) from None
            expires = int(request.query_params["expires"])
            cookie = (_cookie_value(key, batch_id, expires), expires)
            batch = service.batches.get(batch_id, key.id)
            if batch is None:
                raise not_found("batch")
        else:
            batch = own(request, batch_id)
        shell = (ASSETS / "index.html").read_text(encoding="utf-8")
        page = shell.replace("{{title}}", html.escape(f"batch {batch.id}"))
        response = Response(page, media_type="text/html; charset=utf-8")
        response.headers["Cache-Control"] = "no-store"
        if cookie is not None:
            value, expires = cookie
            response.set_cookie(
                _COOKIE,
                value,
                max_age=max(0, expires - int(time.time())),
                path=f"/batches/{batch_id}/",
                httponly=True,
                samesite="strict",
            )
        return response

    @app.get("/batches/{batch_id}/assets/{name}", include_in_schema=False)
    async def gallery_asset(batch_id: str, name: str) -> Response:
        asset = ASSETS / name
        if name == "index.html" or "/" in name or not asset.is_file():
            raise not_found("asset")
        media = {".js": "text/javascript", ".css": "text/css"}.get(Path(name).suffix)
        return Response(asset.read_bytes(), media_type=media or "application/octet-stream")

    @app.get("/batches/{batch_id}/data/meta.js", include_in_schema=False)
    async def gallery_meta(batch_id: str, request: Request) -> Response:
        batch = own(request, batch_id)
        meta = {
            "kind": "report",
            "title": f"batch {batch.id}",
            "generated_at": None,
            "sources": [f"batch {batch.id}"],
            "total": 0,
            "chunks": 0,
            "counts": {"ok": 0, "failed": 0, "rejected": 0},
            "groups": False,
            "threshold": None,
            "live": {"manifest_url": "records.ndjson", "poll_ms": POLL_MS},
        }
        script = f"window.DISTSHOT_META = {json.dumps(meta)};\n"
        return Response(script, media_type="text/javascript", headers={"Cache-Control": "no-store"})

    @app.get("/batches/{batch_id}/records.ndjson", include_in_schema=False)
    async def gallery_records(batch_id: str, request: Request, offset: int = 0) -> Response:
        """Records from the ``offset``-th on (the page sends how many lines it has read),
        each with the report's ``_`` fields pointing at this service's images and
        thumbnails (report/FORMAT.md, "Live gallery")."""
        batch = own(request, batch_id)
        status = batch.status  # read before the records: "done" then means all are in
        records = await asyncio.to_thread(indexes.records, batch)
        start = min(max(0, offset), len(records))
        body = "".join(
            json.dumps(_annotated(record, index)) + "\n"
            for index, record in enumerate(records[start:], start=start)
        )
        headers = {
            "X-Distshot-Batch-Status": status,
            "X-Distshot-Offset": str(start),
            "Cache-Control": "no-store",
        }
        return Response(body, media_type="application/x-ndjson", headers=headers)

    @app.get("/batches/{batch_id}/images/{line}", include_in_schema=False)
    async def gallery_image(batch_id: str, line: int, request: Request) -> Response:
        from .app import image_response

        record = indexes.by_line(own(request, batch_id), line)
        return image_response(record)

    @app.get("/batches/{batch_id}/thumbs/{line}.webp", include_in_schema=False)
    async def gallery_thumb(batch_id: str, line: int, request: Request) -> Response:
        batch = own(request, batch_id)
        record = indexes.by_line(batch, line)
        path = await asyncio.to_thread(_thumbnail, batch, line, record, reader)
        headers = {"Cache-Control": "private, max-age=86400"}
        return FileResponse(path, media_type="image/webp", headers=headers)


class _RecordIndexes:
    """Each batch's records read so far, by position and by line: the manifest file is
    read from where the last read stopped, never again from the top."""

    def __init__(self) -> None:
        self._by_batch: dict[str, tuple[int, list[dict[str, Any]], dict[int, int]]] = {}

    def records(self, batch: Batch) -> list[dict[str, Any]]:
        offset, records, lines = self._by_batch.get(batch.id, (0, [], {}))
        if batch.manifest_path.exists():
            with open(batch.manifest_path, "rb") as stream:
                stream.seek(offset)
                data = stream.read()
            whole = data[: data.rfind(b"\n") + 1]
            for raw in whole.splitlines():
                record = json.loads(raw)
                lines[int(record.get("line") or 0)] = len(records)
                records.append(record)
            offset += len(whole)
        self._by_batch[batch.id] = (offset, records, lines)
        return records

    def by_line(self, batch: Batch, line: int) -> dict[str, Any]:
        records = self.records(batch)
        position = self._by_batch[batch.id][2].get(line)
        if position is None:
            raise not_found("record")
        return records[position]


def _annotated(record: dict[str, Any], index: int) -> dict[str, Any]:
    has_image = record.get("status") == "ok" and record.get("location")
    line = record.get("line")
    pictured = has_image and record.get("format") != "pdf"
    return {
        **record,
        "_i": index,
        "_image": f"images/{line}" if has_image else None,
        "_thumb": f"thumbs/{line}.webp" if pictured else None,
        "_group": None,
        "_source": 0,
    }


def _thumbnail(batch: Batch, line: int, record: dict[str, Any], reader: ImageReader) -> Path:
    """The record's thumbnail, made once from its image (the report's own thumbnail, read
    through the storage plug-in) and kept in the batch's folder."""
    path = batch.folder / "thumbs" / f"{line}.webp"
    if not path.exists():
        path.parent.mkdir(exist_ok=True)
        partial = path.with_suffix(f".{threading.get_ident()}.part")
        made = make_thumbnail(reader, line, str(record.get("location")), partial, want_phash=False)
        if not made.made:
            partial.unlink(missing_ok=True)
            raise ApiError(404, "NotFound", made.problem or "this shot has no picture to show")
        partial.replace(path)
    return path


def _cookie_value(key: ApiKey, batch_id: str, expires: int) -> str:
    return f"{key.id}.{expires}.{_cookie_mac(key, batch_id, expires)}"


def _cookie_mac(key: ApiKey, batch_id: str, expires: int) -> str:
    message = f"gallery\n{batch_id}\n{expires}".encode()
    return hmac.new(key.signing_secret, message, hashlib.sha256).hexdigest()


def _cookie_key(service: Service, value: str, batch_id: str) -> ApiKey | None:
    """The key whose gallery cookie for ``batch_id`` this is, if valid and not expired."""
    rest, _, mac = value.rpartition(".")  # a key id may itself hold dots
    key_id, _, expires = rest.rpartition(".")
    if not expires.isdigit() or int(expires) < time.time() or service.keys is None:
        return None
    key = service.keys.by_id(key_id)
    if key is None or not hmac.compare_digest(_cookie_mac(key, batch_id, int(expires)), mac):
        return None
    return key
