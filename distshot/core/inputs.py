"""Stream requests out of .txt, .csv, .jsonl files or stdin, one line at a time.

Nothing is loaded whole: a million-line file costs the memory of one line. Every line that is
not blank or a comment yields exactly one item: a ``ShotRequest`` or a ``Rejection`` that
carries the line number and the reason, so nothing is dropped silently.
"""

from __future__ import annotations

import csv
import json
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import DistshotError, InvalidRequest
from .models import ShotRequest
from .options import SPECS, CaptureOptions, parse_options
from .policy import parse_url, with_default_scheme

FORMATS = ("txt", "csv", "jsonl")
_REQUEST_KEYS = frozenset({"url", "engine"})
_WHITESPACE = re.compile(r"\s")


@dataclass(frozen=True)
class Rejection:
    """A line that could not become a request."""

    id: str
    line: int
    raw: str
    error: DistshotError


InputItem = ShotRequest | Rejection


def request_id(batch: str, line: int) -> str:
    return f"{batch}:{line}"


def detect_format(path: str) -> str | None:
    suffix = Path(path).suffix.lower().lstrip(".")
    return {"txt": "txt", "csv": "csv", "jsonl": "jsonl", "ndjson": "jsonl"}.get(suffix)


class RequestReader:
    """Turns input lines into items; holds the defaults every request starts from."""

    def __init__(
        self,
        batch: str,
        defaults: CaptureOptions,
        *,
        engine: str | None = None,
        storage: str | None = None,
        allow_private: bool = False,
        allow_networks: tuple[str, ...] = (),
        cache_ttl: float | None = None,
        default_scheme: str = "https",
    ) -> None:
        self.batch = batch
        #: Put in front of a line that is a bare host name (``example.com``).
        self.default_scheme = default_scheme
        self.defaults = defaults
        self.engine = engine
        self.storage = storage
        self.allow_private = allow_private
        self.allow_networks = allow_networks
        self.cache_ttl = cache_ttl

    def read_path(self, path: str, fmt: str | None = None) -> Iterator[InputItem]:
        """Items from a file path, or from stdin when ``path`` is '-'."""
        if path == "-":
            yield from self.read_stream(sys.stdin, fmt)
            return
        fmt = fmt or detect_format(path) or "txt"
        with open(path, encoding="utf-8-sig", errors="replace", newline="") as stream:
            yield from self.read_stream(stream, fmt)

    def read_stream(self, stream: Iterable[str], fmt: str | None = None) -> Iterator[InputItem]:
        if fmt is None:
            fmt, stream = _sniff(stream)
        if fmt == "csv":
            yield from self._read_csv(stream)
        elif fmt == "jsonl":
            yield from self._read_jsonl(stream)
        else:
            yield from self._read_txt(stream)

    # -- one reader per format -------------------------------------------------------

    def _read_txt(self, stream: Iterable[str]) -> Iterator[InputItem]:
        for number, raw in enumerate(stream, start=1):
            text = raw.strip()
            if not text or text.startswith("#"):
                continue
            if _WHITESPACE.search(text):
                yield self._reject(
                    number,
                    text,
                    InvalidRequest(
                        "a .txt line holds one URL; put options in a .csv or .jsonl file"
                    ),
                )
                continue
            yield self._build(number, text, {"url": text})

    def _read_jsonl(self, stream: Iterable[str]) -> Iterator[InputItem]:
        for number, raw in enumerate(stream, start=1):
            text = raw.strip()
            if not text or text.startswith("#"):
                continue
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                yield self._reject(number, text, InvalidRequest(f"not valid JSON: {exc.msg}"))
                continue
            if not isinstance(data, dict):
                yield self._reject(
                    number, text, InvalidRequest("a .jsonl line must be a JSON object")
                )
                continue
            yield self._build(number, text, data)

    def _read_csv(self, stream: Iterable[str]) -> Iterator[InputItem]:
        reader = csv.reader(stream)
        header: list[str] | None = None
        for row in reader:
            number = reader.line_num
            if not row or all(not cell.strip() for cell in row) or row[0].lstrip().startswith("#"):
                continue
            if header is None:
                header = [cell.strip().lower() for cell in row]
                if "url" not in header:
                    raise InvalidRequest(
                        f"the .csv file needs a 'url' column in its first row; found {row!r}"
                    )
                continue
            raw = ",".join(row)
            if len(row) > len(header):
                yield self._reject(
                    number, raw, InvalidRequest(f"{len(row)} cells but {len(header)} columns")
                )
                continue
            data = {key: value for key, value in zip(header, row, strict=False) if key}
            yield self._build(number, raw, data)

    # -- shared ---------------------------------------------------------------------

    def _build(self, number: int, raw: str, data: dict[str, Any]) -> InputItem:
        url = data.get("url")
        shown = url if isinstance(url, str) and url.strip() else raw
        if shown is raw and any(key in SPECS and SPECS[key].secret for key in data):
            shown = "(a line without a url)"  # the line holds a secret: not shown
        try:
            if not isinstance(url, str):
                raise InvalidRequest("missing 'url'")
            url = with_default_scheme(url, self.default_scheme)
            parse_url(url)
            engine = data.get("engine") or self.engine
            if engine is not None and not isinstance(engine, str):
                raise InvalidRequest(f"engine must be a name, not {engine!r}")
            options = {k: v for k, v in data.items() if k not in _REQUEST_KEYS}
            request = ShotRequest(
                id=request_id(self.batch, number),
                line=number,
                url=url.strip(),
                options=parse_options(options, self.defaults),
                batch=self.batch,
                engine=engine.strip() if isinstance(engine, str) and engine.strip() else None,
                storage=self.storage,
                allow_private=self.allow_private,
                allow_networks=self.allow_networks,
                cache_ttl=self.cache_ttl,
            )
        except DistshotError as exc:
            return self._reject(number, shown, exc)
        return request

    def _reject(self, number: int, raw: str, error: DistshotError) -> Rejection:
        return Rejection(id=request_id(self.batch, number), line=number, raw=raw, error=error)


def _sniff(stream: Iterable[str]) -> tuple[str, Iterable[str]]:
    """Guess stdin's format from its first meaningful line, without consuming it."""
    peeked: list[str] = []
    fmt = "txt"
    for line in stream:
        peeked.append(line)
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if text.startswith("{"):
            fmt = "jsonl"
        elif "," in text and "url" in [c.strip().lower() for c in text.split(",")]:
            fmt = "csv"
        break
    return fmt, _chain(peeked, stream)


def _chain(head: list[str], tail: Iterable[str]) -> Iterator[str]:
    """The peeked lines, then the rest of the stream."""
    yield from head
    yield from tail
