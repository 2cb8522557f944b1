"""The OpenAPI pieces the routes declare: built from the option declarations and the
manifest's fields, so the schema and the parser cannot disagree."""

from __future__ import annotations

from typing import Any

from ..core.models import RECORD_FIELDS, TIMING_FIELDS
from ..core.optionkinds import Clip, Flag
from ..core.options import SPECS, options_json_schema
from .errors import ERROR_SCHEMA

_NULLABLE = {
    "id": "string",
    "line": "integer",
    "url": "string",
    "status": "string",
    "engine": "string",
    "location": "string",
    "link": "string",
    "final_url": "string",
    "http_status": "integer",
    "title": "string",
    "format": "string",
    "width": "integer",
    "height": "integer",
    "bytes": "integer",
    "sha256": "string",
    "cached": "boolean",
    "attempts": "integer",
    "truncated": "boolean",
    "device": "string",
    "phash": "string",
    "image_key": "string",
    "blocked": "integer",
}

RECORD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "A manifest record (README: Manifest).",
    "required": list(RECORD_FIELDS),
    "properties": {
        **{name: {"type": [kind, "null"]} for name, kind in _NULLABLE.items()},
        "status": {"type": "string", "enum": ["ok", "failed", "rejected"]},
        "timings": {
            "type": "object",
            "properties": {name: {"type": ["number", "null"]} for name in TIMING_FIELDS},
        },
        "error": {
            "type": ["object", "null"],
            "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
        },
    },
}

PENDING_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "status"],
    "properties": {
        "id": {"type": "string"},
        "status": {"type": "string", "enum": ["queued", "running"]},
        "url": {"type": "string"},
    },
}

SHOT_BODY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["url"],
    "additionalProperties": False,
    "properties": {
        "url": {
            "type": "string",
            "pattern": "^https?://[^/?#\\s]+",
            "examples": ["https://example.com/"],
        },
        "options": options_json_schema(),
        "engine": {"type": "string"},
        "wait": {"type": "number", "minimum": 0, "maximum": 300, "default": 30},
        "webhook_url": {"type": "string", "pattern": "^https?://[^/?#\\s]+"},
    },
}

BATCH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "status", "total", "ok", "failed", "rejected", "in_flight"],
    "properties": {
        "id": {"type": "string"},
        "status": {"type": "string", "enum": ["running", "done", "cancelled"]},
        "total": {"type": ["integer", "null"]},
        "ok": {"type": "integer"},
        "failed": {"type": "integer"},
        "rejected": {"type": "integer"},
        "in_flight": {"type": "integer"},
    },
}


def json_content(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    descriptions = {
        400: "Malformed body",
        401: "No valid key",
        404: "Not found (or another key's)",
        409: "Not ready yet",
        413: "Body too large",
        415: "Unsupported content type",
        422: "Invalid request; error.field names the field",
        429: "Over capacity: retry after Retry-After seconds",
        502: "The page could not be captured",
        503: "Draining",
        504: "The capture timed out",
    }
    return {
        code: {"description": descriptions[code], **json_content(ERROR_SCHEMA)} for code in codes
    }


def _query_schema(kind: Any) -> dict[str, Any]:
    if kind.multiple:  # a list option: the parameter repeats
        return {"type": "array", "items": {"type": "string"}}
    if isinstance(kind, Clip):
        return {"type": "string", "pattern": r"^[0-9.]+,[0-9.]+,[0-9.]+,[0-9.]+$"}
    if isinstance(kind, Flag):
        return {"type": "boolean"}
    schema = dict(kind.json_schema())
    return schema if schema.get("type") in ("integer", "number", "string") else {"type": "string"}


def option_parameters() -> list[dict[str, Any]]:
    """Every option as a query parameter (GET /v1/screenshot, POST /v1/batches defaults)."""
    params = []
    for name, spec in SPECS.items():
        param: dict[str, Any] = {
            "name": name,
            "in": "query",
            "required": False,
            "description": spec.help,
            "schema": _query_schema(spec.kind),
        }
        if spec.kind.multiple:
            param["style"], param["explode"] = "form", True
        params.append(param)
    return params
