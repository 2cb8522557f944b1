"""Turning API input (a JSON body, a query string) into a ``ShotRequest``, with errors
that name the field. Options go through the same declarations as the CLI's."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from ..core.errors import DistshotError
from ..core.options import DEFAULT_OPTIONS, SPECS, CaptureOptions, parse_options
from ..core.policy import parse_url
from .errors import ApiError

#: Request fields of a shot beside its options.
SHOT_FIELDS = ("url", "options", "engine", "wait", "webhook_url")
MAX_WAIT = 300.0
#: The query parameters of GET /v1/screenshot that are not options.
QUERY_FIELDS = frozenset({"url", "engine", "key_id", "expires", "signature", "webhook_url"})


@dataclass(frozen=True)
class ShotInput:
    url: str
    options: CaptureOptions
    engine: str | None
    wait: float | None
    webhook_url: str | None


def invalid(field: str, message: str) -> ApiError:
    return ApiError(422, "InvalidRequest", message, field=field)


def parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "MalformedJson", f"the body is not valid JSON: {exc}") from None


def parse_options_field(raw: Any, base: CaptureOptions, prefix: str = "options.") -> CaptureOptions:
    """Options over ``base``; an error names the option that is wrong."""
    if not isinstance(raw, Mapping):
        raise invalid(prefix.rstrip("."), "options must be a JSON object")
    for key, value in raw.items():
        name = str(key)
        spec = SPECS.get(name.strip().lower().replace("-", "_"))
        if spec is None:
            raise invalid(
                prefix + name, f"unknown option {name!r}; GET /openapi.json lists the options"
            )
        if value is None or (isinstance(value, str) and not value.strip()):
            continue  # "not set", as parse_options reads it
        try:
            spec.kind.parse(spec.name, value)
        except DistshotError as exc:
            raise invalid(prefix + name, exc.message) from None
    try:  # every value is good alone: what is left is how they go together
        return parse_options(raw, base)
    except DistshotError as exc:
        raise invalid(prefix.rstrip(".") or "options", exc.message) from None


def parse_shot_body(data: Any) -> ShotInput:
    if not isinstance(data, dict):
        raise invalid("body", "the body must be a JSON object with a url")
    for key in data:
        if key not in SHOT_FIELDS:
            raise invalid(str(key), f"unknown field {key!r}; a shot has {', '.join(SHOT_FIELDS)}")
    url = check_url_text(data.get("url"))
    options = parse_options_field(data.get("options") or {}, DEFAULT_OPTIONS)
    engine = data.get("engine")
    if engine is not None and (not isinstance(engine, str) or not engine.strip()):
        raise invalid("engine", "engine must be an engine's name")
    wait = data.get("wait")
    if wait is not None and (
        isinstance(wait, bool)
        or not isinstance(wait, int | float)
        or not math.isfinite(wait)
        or not 0 <= wait <= MAX_WAIT
    ):
        raise invalid("wait", f"wait must be seconds from 0 to {MAX_WAIT:g}")
    webhook = data.get("webhook_url")
    if webhook is not None:
        webhook = check_url_text(webhook, "webhook_url")
    return ShotInput(url, options, engine, None if wait is None else float(wait), webhook)


def check_url_text(value: Any, field: str = "url") -> str:
    if not isinstance(value, str) or not value.strip():
        raise invalid(field, f"{field} must be an http or https URL")
    try:
        parse_url(value.strip())
    except DistshotError as exc:
        raise invalid(field, exc.message) from None
    if field == "webhook_url":
        # The webhook client must be able to send to it (an IDNA-invalid host name passes
        # the URL syntax check but no HTTP client can encode it).
        try:
            httpx.URL(value.strip())
        except httpx.InvalidURL as exc:
            raise invalid(field, f"webhook_url is not a usable URL: {exc}") from None
    return value.strip()


def query_options(params: list[tuple[str, str]], base: CaptureOptions) -> CaptureOptions:
    """Options from a query string: list options may repeat (``hide=a&hide=b``); any other
    option given twice is an error, not a silent choice."""
    grouped: dict[str, list[str]] = {}
    for key, value in params:
        if key in QUERY_FIELDS:
            continue
        grouped.setdefault(key, []).append(value)
    raw: dict[str, Any] = {}
    for key, values in grouped.items():
        spec = SPECS.get(key.strip().lower().replace("-", "_"))
        if spec is not None and spec.kind.multiple:
            raw[key] = values
        elif len(values) > 1:
            raise invalid(key, f"{key} is given {len(values)} times")
        else:
            raw[key] = values[0]
    return parse_options_field(raw, base, prefix="")


def single(params: list[tuple[str, str]], name: str) -> str | None:
    values = [v for k, v in params if k == name]
    if len(values) > 1:
        raise invalid(name, f"{name} is given {len(values)} times")
    return values[0] if values else None
