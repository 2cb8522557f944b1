"""How capture option values are read, checked and described: one ``Kind`` per sort of
value (a number in a range, a choice, a list of selectors, headers, a rectangle, a device).
``core.options`` declares each option with one of these."""

from __future__ import annotations

import ipaddress
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from .devices import find_device
from .errors import InvalidOption
from .proxy import SYNTAX as PROXY_SYNTAX
from .proxy import Proxy

MAX_PIXELS = 16384  # Chromium's largest texture side; larger viewports fail inside the GPU path.
MAX_SCRIPT = 100_000  # characters of a javascript or css option
MAX_SELECTORS = 50

_N = TypeVar("_N", int, float)


class Kind:
    """How one option's values are read and described."""

    #: Shown in ``distshot options`` and the README: what values are accepted.
    accepts = ""
    #: A CLI flag may be given several times (a list option).
    multiple = False
    #: The CLI reads ``@file`` as the file's contents.
    from_file = False
    #: The CLI flag takes a FILE and sends its contents (``@secrets/NAME`` stays a name).
    reads_file = False
    #: Part of a value is a secret (a proxy URL's password): ``key_json`` leaves it out, and
    #: that is how logs and answers show the value too.
    has_secret_part = False

    def parse(self, name: str, value: Any) -> Any:
        raise NotImplementedError

    def to_json(self, value: Any) -> Any:
        """The value, JSON-ready (``parse`` reads it back to the same value)."""
        return value

    def key_json(self, value: Any) -> Any:
        """The value as the cache key sees it: ``to_json``, less any secret."""
        return self.to_json(value)

    def json_schema(self) -> dict[str, Any]:
        """The JSON Schema of the values an API client sends (the service's OpenAPI schema).

        Narrower than ``parse`` where ``parse`` is lenient for CSV cells ("true", "1,2,3,4"):
        the schema shows the one spelling a JSON client should use."""
        return {}


@dataclass(frozen=True)
class Int(Kind):
    low: int
    high: int

    @property
    def accepts(self) -> str:  # type: ignore[override]
        return f"{self.low}-{self.high}"

    def parse(self, name: str, value: Any) -> int:
        number = _number(name, value, _whole, "a whole number")
        if not self.low <= number <= self.high:
            raise InvalidOption(f"{name} must be between {self.low} and {self.high}, not {number}")
        return number

    def json_schema(self) -> dict[str, Any]:
        return {"type": "integer", "minimum": self.low, "maximum": self.high}


@dataclass(frozen=True)
class Number(Kind):
    """A number above ``low`` and at most ``high``."""

    low: float
    high: float

    @property
    def accepts(self) -> str:  # type: ignore[override]
        return f"above {self.low:g}, at most {self.high:g}"

    def parse(self, name: str, value: Any) -> float:
        number = _number(name, value, float, "a number")
        if not self.low < number <= self.high or not math.isfinite(number):
            raise InvalidOption(
                f"{name} must be above {self.low:g} and at most {self.high:g}, not {value!r}"
            )
        return number

    def json_schema(self) -> dict[str, Any]:
        return {"type": "number", "exclusiveMinimum": self.low, "maximum": self.high}


def _number(name: str, value: Any, convert: Callable[[Any], _N], expected: str) -> _N:
    """``convert(value)``, or one InvalidOption saying what ``name`` must be. A bool is
    refused although Python counts it as a number: ``true`` is not a width."""
    if isinstance(value, bool):
        raise InvalidOption(f"{name} must be {expected}, not {value!r}")
    try:
        return convert(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: int(1e999) from JSON
        raise InvalidOption(f"{name} must be {expected}, not {value!r}") from None


def _whole(value: Any) -> int:
    number = int(value.strip()) if isinstance(value, str) else int(value)
    if isinstance(value, float) and value != number:
        raise ValueError(value)  # int() would drop the half of 2.5 without a word
    return number


_TRUE = {"1", "true", "yes", "on", "y", "t"}
_FALSE = {"0", "false", "no", "off", "n", "f"}


@dataclass(frozen=True)
class Flag(Kind):
    accepts = "true, false"

    def parse(self, name: str, value: Any) -> bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise InvalidOption(f"{name} must be true or false, not {value!r}")

    def json_schema(self) -> dict[str, Any]:
        return {"type": "boolean"}


@dataclass(frozen=True)
class Choice(Kind):
    choices: tuple[str, ...]
    aliases: tuple[tuple[str, str], ...] = ()

    @property
    def accepts(self) -> str:  # type: ignore[override]
        return ", ".join(self.choices)

    def parse(self, name: str, value: Any) -> str:
        if not isinstance(value, str):
            raise InvalidOption(f"{name} must be one of {', '.join(self.choices)}, not {value!r}")
        text = value.strip().lower()
        text = dict(self.aliases).get(text, text)
        if text not in self.choices:
            raise InvalidOption(f"{name} must be one of {', '.join(self.choices)}, not {value!r}")
        return str(text)

    def json_schema(self) -> dict[str, Any]:
        return {"type": "string", "enum": list(self.choices)}


def _one_line(name: str, value: Any, max_len: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidOption(f"{name} must be non-empty text, not {value!r}")
    if len(value) > max_len or any(ch in value for ch in "\r\n\0"):
        raise InvalidOption(f"{name} must be one line of at most {max_len} characters")
    return value.strip()


@dataclass(frozen=True)
class Text(Kind):
    """One line of text (a selector, a user agent)."""

    max_len: int = 2048
    accepts = "text"

    def parse(self, name: str, value: Any) -> str:
        return _one_line(name, value, self.max_len)

    def json_schema(self) -> dict[str, Any]:
        return {"type": "string", "minLength": 1, "maxLength": self.max_len, "pattern": r"\S"}


@dataclass(frozen=True)
class Code(Kind):
    """A script or a stylesheet: any text, several lines; the CLI reads ``@file``."""

    accepts = "code, or @file on the command line"
    from_file = True

    def parse(self, name: str, value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise InvalidOption(f"{name} must be non-empty text, not {value!r}")
        if len(value) > MAX_SCRIPT or "\0" in value:
            raise InvalidOption(f"{name} must be at most {MAX_SCRIPT} characters of text")
        return value

    def json_schema(self) -> dict[str, Any]:
        return {"type": "string", "minLength": 1, "maxLength": MAX_SCRIPT, "pattern": r"\S"}


def _list_items(name: str, value: Any, what: str, limit: int) -> list[Any]:
    """The items of a list option's value: a JSON list, or ``;``-separated text (a CSV
    cell), at most ``limit`` of them."""
    if isinstance(value, str):
        items: list[Any] = [part for part in value.split(";") if part.strip()]
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        raise InvalidOption(f"{name} must be a list of {what}, not {value!r}")
    if len(items) > limit:
        raise InvalidOption(f"{name} takes at most {limit} {what}")
    return items


@dataclass(frozen=True)
class Selectors(Kind):
    """A list of CSS selectors: a JSON list, or ``;``-separated text (a CSV cell)."""

    accepts = "CSS selectors (a list; ';'-separated in CSV)"
    multiple = True
    #: What the items are, for messages.
    items = "CSS selectors"

    def parse(self, name: str, value: Any) -> tuple[str, ...]:
        items = _list_items(name, value, self.items, MAX_SELECTORS)
        return tuple(_one_line(name, item, 1024) for item in items)

    def to_json(self, value: Any) -> Any:
        return list(value)

    def json_schema(self) -> dict[str, Any]:
        item = {"type": "string", "minLength": 1, "maxLength": 1024, "pattern": r"\S"}
        return {"type": "array", "items": item, "maxItems": MAX_SELECTORS}


def parse_header_line(text: str) -> tuple[str, str]:
    """'Name: value' -> (name, value); the CLI's --header and CSV cells use this."""
    name, sep, value = text.partition(":")
    name, value = name.strip(), value.strip()
    if not sep or not name or any(ch in name for ch in " \t\r\n\0:") or "\n" in value:
        raise InvalidOption(f"header must look like 'Name: value', not {text!r}")
    return name, value


@dataclass(frozen=True)
class Headers(Kind):
    accepts = "'Name: value' (repeatable), or an object"
    multiple = True

    def parse(self, name: str, value: Any) -> tuple[tuple[str, str], ...]:
        pairs: list[tuple[str, str]] = []
        if isinstance(value, Mapping):
            for key, val in value.items():
                if not isinstance(val, str | int | float) or isinstance(val, bool):
                    raise InvalidOption(f"header {key!r} must have a text value")
                pairs.append(parse_header_line(f"{key}: {val}"))
        elif isinstance(value, str):
            # CSV cells and env vars: 'A: 1; B: 2' or a JSON object.
            text = value.strip()
            if text.startswith("{"):
                try:
                    return self.parse(name, json.loads(text))
                except json.JSONDecodeError:
                    raise InvalidOption(f"headers is not valid JSON: {text!r}") from None
            pairs = [parse_header_line(part) for part in text.split(";") if part.strip()]
        elif isinstance(value, list | tuple):
            for item in value:
                if isinstance(item, str):
                    pairs.append(parse_header_line(item))
                elif isinstance(item, list | tuple) and len(item) == 2:
                    pairs.append(parse_header_line(f"{item[0]}: {item[1]}"))
                else:
                    raise InvalidOption(f"headers entry must be 'Name: value', not {item!r}")
        else:
            raise InvalidOption(f"headers must be an object of name: value, not {value!r}")
        return tuple(sorted(pairs, key=lambda p: p[0].lower()))

    def to_json(self, value: Any) -> Any:
        return dict(value)

    def json_schema(self) -> dict[str, Any]:
        return {
            "type": "object",
            "additionalProperties": {"type": "string"},
            "description": "header name: value",
        }


@dataclass(frozen=True)
class Clip(Kind):
    """A rectangle of the page: ``x,y,width,height`` in CSS px."""

    accepts = "x,y,width,height (CSS px)"

    def parse(self, name: str, value: Any) -> tuple[float, float, float, float]:
        if isinstance(value, Mapping):
            items: Any = [value.get(key) for key in ("x", "y", "width", "height")]
        elif isinstance(value, str):
            items = value.replace(" ", "").split(",")
        else:
            items = value
        message = f"{name} must be x,y,width,height in CSS px, not {value!r}"
        if not isinstance(items, list | tuple) or len(items) != 4:
            raise InvalidOption(message)
        try:
            numbers = [float(item) for item in items]
        except (TypeError, ValueError):
            raise InvalidOption(message) from None
        x, y, width, height = numbers
        if not all(math.isfinite(n) for n in numbers) or x < 0 or y < 0:
            raise InvalidOption(message)
        if not (0 < width <= MAX_PIXELS and 0 < height <= MAX_PIXELS):
            raise InvalidOption(f"{name}'s width and height must be 1-{MAX_PIXELS} px")
        return (x, y, width, height)

    def to_json(self, value: Any) -> Any:
        return list(value)

    def json_schema(self) -> dict[str, Any]:
        side = {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_PIXELS}
        corner = {"type": "number", "minimum": 0}
        return {
            "type": "object",
            "properties": {"x": corner, "y": corner, "width": side, "height": side},
            "required": ["x", "y", "width", "height"],
        }


@dataclass(frozen=True)
class DeviceName(Kind):
    accepts = "a device name (distshot devices)"

    def parse(self, name: str, value: Any) -> str:
        if not isinstance(value, str) or find_device(value) is None:
            raise InvalidOption(
                f"{name} {value!r} is not a known device; `distshot devices` lists them"
            )
        device = find_device(value)
        assert device is not None
        return device.name

    def json_schema(self) -> dict[str, Any]:
        from .devices import DEVICES

        return {"type": "string", "enum": sorted(DEVICES)}


@dataclass(frozen=True)
class TimeZone(Kind):
    accepts = "an IANA time zone (Europe/Paris)"

    def parse(self, name: str, value: Any) -> str:
        import zoneinfo

        text = value.strip() if isinstance(value, str) else ""
        try:
            zoneinfo.ZoneInfo(text)
        except (ValueError, zoneinfo.ZoneInfoNotFoundError):
            raise InvalidOption(
                f"{name} must be an IANA time zone such as Europe/Paris, not {value!r}"
            ) from None
        return text

    def json_schema(self) -> dict[str, Any]:
        return {"type": "string", "examples": ["Europe/Paris"]}


MAX_RESOLVES = 50
#: One pinned address: (host, port, address), the host lower-case and in ASCII (IDNA).
Pin = tuple[str, int, str]


def pin_host(host: str) -> str:
    """A host name as pins are keyed: lower-case ASCII (IDNA), no trailing dot; what a
    URL's host and the browser's SOCKS request both become. Raises UnicodeError."""
    return host.strip().rstrip(".").lower().encode("idna").decode("ascii")


def pinned_address(pins: tuple[Pin, ...], host: str, port: int) -> str | None:
    """The address ``pins`` give ``host:port``, or None."""
    if not pins:
        return None
    try:
        key = pin_host(host)
    except UnicodeError:
        return None
    return next((address for h, p, address in pins if (h, p) == (key, port)), None)


def parse_pin(name: str, text: str) -> Pin:
    """``host:port:address`` (curl's ``--resolve``) -> (host, port, address). The address
    may be IPv6, bracketed or not (``host:443:[::1]``, ``host:443:::1``)."""

    message = f"{name} must be host:port:address (shop.example:443:203.0.113.7), not {text!r}"
    host, _, rest = text.strip().partition(":")
    port_text, _, address_text = rest.partition(":")
    try:
        host = pin_host(host)
        port = int(port_text)
        address = ipaddress.ip_address(address_text.strip().strip("[]"))
    except (UnicodeError, ValueError):
        raise InvalidOption(message) from None
    if not host or not 0 < port < 65536 or any(ch in host for ch in "/[]@ "):
        raise InvalidOption(message)
    return host, port, str(address)


@dataclass(frozen=True)
class Resolves(Kind):
    """Addresses pinned for ``host:port`` (curl's ``--resolve``): a JSON list of
    ``host:port:address`` strings, or ``;``-separated text (a CSV cell)."""

    accepts = "host:port:address (repeatable; ';'-separated in CSV)"
    multiple = True

    def parse(self, name: str, value: Any) -> tuple[Pin, ...]:
        items = _list_items(name, value, "host:port:address", MAX_RESOLVES)
        pins: dict[tuple[str, int], Pin] = {}
        for item in items:
            if not isinstance(item, str):
                raise InvalidOption(f"{name} entries must be host:port:address, not {item!r}")
            pin = parse_pin(name, item)
            if pins.get(pin[:2], pin) != pin:
                raise InvalidOption(f"{name} gives {pin[0]}:{pin[1]} two addresses")
            pins[pin[:2]] = pin
        return tuple(sorted(pins.values()))

    def to_json(self, value: Any) -> Any:
        return [f"{host}:{port}:{address}" for host, port, address in value]

    def json_schema(self) -> dict[str, Any]:
        item = {"type": "string", "pattern": r"^[^:\s]+:[0-9]{1,5}:\S+$"}
        return {"type": "array", "items": item, "maxItems": MAX_RESOLVES}


@dataclass(frozen=True)
class ProxyUrl(Kind):
    """An upstream proxy URL (``core.proxy``). Its password is a secret: no message shows
    it, and the cache key (``key_json``) leaves it out."""

    accepts = "http://, https:// or socks5:// URL, with user:password@ if it needs them"
    has_secret_part = True

    def parse(self, name: str, value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise InvalidOption(f"{name} must be a proxy URL: {PROXY_SYNTAX}")
        if len(value) > 2048 or any(ch.isspace() or ord(ch) < 32 for ch in value.strip()):
            raise InvalidOption(f"{name} must be one URL of at most 2048 characters, no spaces")
        try:
            return Proxy.parse(value).url
        except ValueError as exc:
            raise InvalidOption(f"{name}: {exc}") from None

    def key_json(self, value: Any) -> Any:
        # The password cannot change the image (a wrong one fails the job), so the key
        # leaves it out rather than hashing it: no guessable digest of a secret anywhere.
        return Proxy.parse(value).shown

    def json_schema(self) -> dict[str, Any]:
        # (the parser takes any case; the schema shows the one spelling, in a pattern every
        # JSON Schema dialect reads)
        return {"type": "string", "pattern": r"^(https?|socks5h?)://\S+$", "maxLength": 2048}


@dataclass(frozen=True)
class Choices(Kind):
    """Several of ``choices``: a JSON list, or text separated by ``,`` (a flag) or ``;`` (a
    CSV cell, as every list option's)."""

    choices: tuple[str, ...]

    @property
    def accepts(self) -> str:  # type: ignore[override]
        return ", ".join(self.choices) + " (a list; ',' or ';'-separated)"

    multiple = True

    def parse(self, name: str, value: Any) -> tuple[str, ...]:
        if isinstance(value, str):
            items: list[Any] = re.split("[,;]", value)
        elif isinstance(value, list | tuple):
            # A repeated flag may itself be a comma list (--block-resources image,font).
            items = [p for v in value for p in (re.split("[,;]", v) if isinstance(v, str) else [v])]
        else:
            raise InvalidOption(f"{name} must be a list of {', '.join(self.choices)}")
        chosen = []
        for item in items:
            text = item.strip().lower() if isinstance(item, str) else item
            if text == "":
                continue
            if text not in self.choices:
                raise InvalidOption(f"{name} takes {', '.join(self.choices)}, not {item!r}")
            chosen.append(text)
        # One order whatever the input's: the cache key sees the same value for the same set.
        return tuple(c for c in self.choices if c in chosen)

    def to_json(self, value: Any) -> Any:
        return list(value)

    def json_schema(self) -> dict[str, Any]:
        return {
            "type": "array",
            "items": {"type": "string", "enum": list(self.choices)},
            "uniqueItems": True,
        }


@dataclass(frozen=True)
class UrlPatterns(Selectors):
    """URL patterns: a glob over the whole URL (``*`` matches any text, ``/`` included), or
    ``re:`` and a regular expression searched in it. A JSON list, or ``;``-separated text."""

    accepts = "globs or 're:' regexes (a list; ';'-separated in CSV)"
    items = "URL patterns"

    def parse(self, name: str, value: Any) -> tuple[str, ...]:
        patterns = super().parse(name, value)
        for pattern in patterns:
            if pattern.startswith("re:"):
                try:
                    re.compile(pattern[3:])
                except re.error as exc:
                    message = f"{name}: {pattern!r} is not a valid regex: {exc}"
                    raise InvalidOption(message) from None
        return patterns
