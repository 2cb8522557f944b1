"""The kinds of the identity options: who the browser is to the page (cookies, a stored
session, HTTP credentials, a locale, a position). Cookie values and passwords are secrets:
no error message here quotes them, and their ``repr`` hides them (``secretvalues``)."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import InvalidOption
from .optionkinds import Kind
from .secretvalues import REDACTED

#: A whole browser's export fits (Chromium keeps at most 3300 cookies).
MAX_COOKIES = 3300
MAX_ORIGINS = 50
MAX_ITEMS = 1000
_SAME_SITE = {"strict": "Strict", "lax": "Lax", "none": "None"}


@dataclass(frozen=True)
class Cookie:
    """One cookie, as Playwright's ``add_cookies`` and CDP's ``Network.setCookies`` take it:
    a ``domain`` (with ``path``) or a ``url``."""

    name: str
    value: str = field(repr=False)
    domain: str | None = None
    url: str | None = None
    path: str | None = None
    expires: float | None = None  # epoch seconds; None: a session cookie
    http_only: bool = False
    secure: bool = False
    same_site: str | None = None  # Strict, Lax or None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "value": self.value}
        for key in ("domain", "url", "path", "expires", "same_site"):
            if getattr(self, key) is not None:
                data[key] = getattr(self, key)
        if self.http_only:
            data["http_only"] = True
        if self.secure:
            data["secure"] = True
        return data

    def to_browser(self) -> dict[str, Any]:
        """Playwright's and CDP's spelling (``httpOnly``, ``sameSite``)."""
        data: dict[str, Any] = {"name": self.name, "value": self.value}
        if self.url is not None:
            data["url"] = self.url
        else:
            data["domain"] = self.domain
            data["path"] = self.path or "/"
        if self.expires is not None:
            data["expires"] = self.expires
        data["httpOnly"] = self.http_only
        data["secure"] = self.secure
        if self.same_site is not None:
            data["sameSite"] = self.same_site
        return data


@dataclass(frozen=True)
class StorageState:
    """A logged-in session as Playwright's ``storage_state()`` saves it: cookies, and the
    localStorage of each origin."""

    cookies: tuple[Cookie, ...] = ()
    #: (origin, ((name, value), ...)) pairs.
    origins: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = field(default=(), repr=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "cookies": [c.to_json() for c in self.cookies],
            "origins": [
                {"origin": origin, "localStorage": [{"name": k, "value": v} for k, v in items]}
                for origin, items in self.origins
            ],
        }

    def to_playwright(self) -> dict[str, Any]:
        return {
            "cookies": [_playwright_cookie(c) for c in self.cookies],
            "origins": self.to_json()["origins"],
        }


def _playwright_cookie(cookie: Cookie) -> dict[str, Any]:
    """A storage state's cookie needs every field (Playwright does not fill them in)."""
    data = cookie.to_browser()
    data.pop("url", None)
    if cookie.url is not None:
        from urllib.parse import urlsplit

        parts = urlsplit(cookie.url)
        data["domain"], data["path"] = parts.hostname or "", "/"
        data["secure"] = cookie.secure or parts.scheme == "https"
    data.setdefault("expires", -1)
    data.setdefault("sameSite", "Lax")
    return data


@dataclass(frozen=True)
class Credentials:
    """``user:password`` for HTTP basic or digest authentication."""

    username: str
    password: str = field(repr=False)


def _text(where: str, value: Any, *, max_len: int = 8192) -> str:
    if not isinstance(value, str) or len(value) > max_len or "\0" in value:
        raise InvalidOption(f"{where} must be text of at most {max_len} characters")
    return value


def _cookie(name: str, index: int, raw: Any) -> Cookie:
    where = f"{name}[{index}]"
    if not isinstance(raw, Mapping):
        raise InvalidOption(f"{where} must be an object with name, value and domain or url")
    known = {
        "name",
        "value",
        "domain",
        "url",
        "path",
        "expires",
        "http_only",
        "httpOnly",
        "secure",
        "same_site",
        "sameSite",
        # Written by Playwright's storage_state() and browser extensions; not used.
        "partitionKey",
        "_crHasCrossSiteAncestor",
    }
    unknown = sorted(set(raw) - known)
    if unknown:
        raise InvalidOption(f"{where} has unknown fields: {', '.join(unknown)}")
    cookie_name = _text(f"{where}.name", raw.get("name"), max_len=4096).strip()
    if not cookie_name or any(ch in cookie_name for ch in ";=\r\n \t"):
        raise InvalidOption(f"{where}.name must be a cookie name (no ';', '=', spaces)")
    value = _text(f"{where}.value", raw.get("value"))
    if any(ch in value for ch in ";\r\n"):
        raise InvalidOption(f"{where}.value must not contain ';' or a line break")
    domain, url, path = raw.get("domain"), raw.get("url"), raw.get("path")
    if (domain is None) == (url is None):
        raise InvalidOption(f"{where} needs a domain or a url (one of them)")
    if domain is not None:
        domain = _text(f"{where}.domain", domain, max_len=255).strip()
    if url is not None:
        url = _text(f"{where}.url", url, max_len=2048).strip()
        if not url.startswith(("http://", "https://")):
            raise InvalidOption(f"{where}.url must be an http(s) URL")
    if path is not None:
        path = _text(f"{where}.path", path, max_len=1024)
        if not path.startswith("/"):
            raise InvalidOption(f"{where}.path must start with '/'")
    expires = raw.get("expires")
    if expires is not None:
        if isinstance(expires, bool) or not isinstance(expires, int | float):
            raise InvalidOption(f"{where}.expires must be epoch seconds")
        expires = None if expires < 0 or not math.isfinite(expires) else float(expires)
    same_site = raw.get("same_site", raw.get("sameSite"))
    if same_site is not None:
        if not isinstance(same_site, str) or same_site.lower() not in _SAME_SITE:
            raise InvalidOption(f"{where}.same_site must be Strict, Lax or None")
        same_site = _SAME_SITE[same_site.lower()]
    flags = {}
    for key, alias in (("http_only", "httpOnly"), ("secure", "secure")):
        flag = raw.get(key, raw.get(alias, False))
        if not isinstance(flag, bool):
            raise InvalidOption(f"{where}.{key} must be true or false")
        flags[key] = flag
    return Cookie(cookie_name, value, domain, url, path, expires, same_site=same_site, **flags)


def parse_netscape(name: str, text: str) -> tuple[Cookie, ...]:
    """A Netscape cookies.txt (curl's, yt-dlp's, the browser extensions' export): domain,
    subdomains flag, path, secure, expiry, name, value, separated by tabs."""
    cookies: list[Cookie] = []
    for number, line in enumerate(text.splitlines(), 1):
        http_only = line.startswith("#HttpOnly_")
        if http_only:
            line = line[len("#HttpOnly_") :]
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.rstrip("\r\n").split("\t")
        if len(fields) != 7:
            raise InvalidOption(
                f"{name}: line {number} is not a cookies.txt line (7 fields separated by tabs)"
            )
        domain, _subdomains, path, secure, expires, cookie_name, value = fields
        try:
            expiry = float(expires)
        except ValueError:
            raise InvalidOption(f"{name}: line {number} has no expiry time") from None
        raw = {
            "name": cookie_name,
            "value": value,
            "domain": domain,
            "path": path,
            "secure": secure.upper() == "TRUE",
            "http_only": http_only,
            "expires": expiry if expiry > 0 else None,
        }
        cookies.append(_cookie(name, len(cookies), raw))
    return tuple(cookies)


def _json(name: str, text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        # The position only: the text holds the secret.
        raise InvalidOption(f"{name} is not valid JSON (line {exc.lineno})") from None


@dataclass(frozen=True)
class Cookies(Kind):
    """A list of cookies: JSON objects, or (text, a file on the command line) a Netscape
    cookies.txt or a Playwright storage-state file's cookies."""

    accepts = "a list of cookies; FILE (cookies.txt or storage-state JSON) on the command line"
    reads_file = True

    def parse(self, name: str, value: Any) -> tuple[Cookie, ...]:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith(("[", "{")):
                return self.parse(name, _json(name, text))
            return self._bounded(name, parse_netscape(name, value))
        if isinstance(value, Mapping) and "cookies" in value:  # a storage state
            return self.parse(name, value["cookies"])
        if isinstance(value, Cookie):
            return (value,)
        if not isinstance(value, list | tuple):
            raise InvalidOption(f"{name} must be a list of cookies")
        if all(isinstance(item, Cookie) for item in value):
            return self._bounded(name, tuple(value))
        return self._bounded(name, tuple(_cookie(name, i, raw) for i, raw in enumerate(value)))

    @staticmethod
    def _bounded(name: str, cookies: tuple[Cookie, ...]) -> tuple[Cookie, ...]:
        if len(cookies) > MAX_COOKIES:
            raise InvalidOption(f"{name} takes at most {MAX_COOKIES} cookies")
        return cookies

    def to_json(self, value: Any) -> Any:
        return [cookie.to_json() for cookie in value]

    def json_schema(self) -> dict[str, Any]:
        cookie = {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "value": {"type": "string"},
                "domain": {"type": "string"},
                "url": {"type": "string"},
                "path": {"type": "string"},
                "expires": {"type": "number"},
                "http_only": {"type": "boolean"},
                "secure": {"type": "boolean"},
                "same_site": {"type": "string", "enum": ["Strict", "Lax", "None"]},
            },
            "required": ["name", "value"],
        }
        return {"type": "array", "items": cookie, "maxItems": MAX_COOKIES}


@dataclass(frozen=True)
class StorageStateKind(Kind):
    """A Playwright storage state: ``{"cookies": [...], "origins": [{"origin": ...,
    "localStorage": [{"name": ..., "value": ...}]}]}``."""

    accepts = "a Playwright storage state; FILE on the command line"
    reads_file = True

    def parse(self, name: str, value: Any) -> StorageState:
        if isinstance(value, StorageState):
            return value
        if isinstance(value, str):
            return self.parse(name, _json(name, value))
        if not isinstance(value, Mapping):
            raise InvalidOption(f"{name} must be a storage state object (cookies, origins)")
        cookies = Cookies().parse(f"{name}.cookies", list(value.get("cookies") or []))
        raw_origins = value.get("origins") or []
        if not isinstance(raw_origins, list) or len(raw_origins) > MAX_ORIGINS:
            raise InvalidOption(f"{name}.origins must be a list of at most {MAX_ORIGINS}")
        origins = []
        for i, entry in enumerate(raw_origins):
            where = f"{name}.origins[{i}]"
            if not isinstance(entry, Mapping):
                raise InvalidOption(f"{where} must be an object with origin and localStorage")
            origin = _text(f"{where}.origin", entry.get("origin"), max_len=2048).rstrip("/")
            if not re.match(r"^https?://[^/?#\s]+$", origin):
                raise InvalidOption(f"{where}.origin must be scheme://host[:port]")
            items = entry.get("localStorage") or []
            if not isinstance(items, list) or len(items) > MAX_ITEMS:
                raise InvalidOption(f"{where}.localStorage must be a list of name, value")
            pairs = []
            for item in items:
                if not isinstance(item, Mapping):
                    raise InvalidOption(f"{where}.localStorage must be a list of name, value")
                pairs.append(
                    (
                        _text(f"{where}.localStorage name", item.get("name"), max_len=4096),
                        _text(f"{where}.localStorage value", item.get("value"), max_len=1_000_000),
                    )
                )
            origins.append((origin, tuple(pairs)))
        return StorageState(cookies, tuple(origins))

    def to_json(self, value: Any) -> Any:
        return value.to_json()

    def json_schema(self) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {
                "cookies": Cookies().json_schema(),
                "origins": {"type": "array", "items": {"type": "object"}},
            },
        }


@dataclass(frozen=True)
class CredentialsKind(Kind):
    accepts = "user:password"

    def parse(self, name: str, value: Any) -> Credentials:
        if isinstance(value, Credentials):
            return value
        if isinstance(value, Mapping):
            user, password = value.get("username"), value.get("password")
        elif isinstance(value, str):
            user, sep, password = value.partition(":")
            if not sep:
                raise InvalidOption(f"{name} must look like user:password")
        else:
            raise InvalidOption(f"{name} must look like user:password")
        user = _text(f"{name}'s user", user, max_len=1024)
        password = _text(f"{name}'s password", password, max_len=1024)
        if not user.strip() or any(ch in user + password for ch in "\r\n"):
            raise InvalidOption(f"{name} must be one line, user:password, with a user")
        return Credentials(user, password)

    def to_json(self, value: Any) -> Any:
        return f"{value.username}:{value.password}"

    def json_schema(self) -> dict[str, Any]:
        return {"type": "string", "pattern": "^[^:\\r\\n]+:", "description": "user:password"}


_LOCALE_RE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8}){0,3}$")


@dataclass(frozen=True)
class Locale(Kind):
    accepts = "a BCP 47 language tag (de-DE)"

    def parse(self, name: str, value: Any) -> str:
        text = value.strip().replace("_", "-") if isinstance(value, str) else ""
        if not _LOCALE_RE.match(text):
            raise InvalidOption(f"{name} must be a language tag such as de-DE, not {value!r}")
        return text

    def json_schema(self) -> dict[str, Any]:
        return {"type": "string", "pattern": _LOCALE_RE.pattern, "examples": ["de-DE"]}


@dataclass(frozen=True)
class Geolocation(Kind):
    """``lat,lon[,accuracy]``: degrees, and metres."""

    accepts = "lat,lon[,accuracy] (degrees, metres)"

    def parse(self, name: str, value: Any) -> tuple[float, float, float]:
        if isinstance(value, Mapping):
            items: Any = [value.get("latitude"), value.get("longitude")]
            if value.get("accuracy") is not None:
                items.append(value["accuracy"])
        elif isinstance(value, str):
            items = value.replace(" ", "").split(",")
        else:
            items = value
        message = f"{name} must be lat,lon[,accuracy], not {value!r}"
        if not isinstance(items, list | tuple) or len(items) not in (2, 3):
            raise InvalidOption(message)
        try:
            numbers = [float(item) for item in items if not isinstance(item, bool)]
        except (TypeError, ValueError):
            raise InvalidOption(message) from None
        if len(numbers) != len(items) or not all(math.isfinite(n) for n in numbers):
            raise InvalidOption(message)
        lat, lon, accuracy = (*numbers, 0.0) if len(numbers) == 2 else numbers
        if not (-90 <= lat <= 90 and -180 <= lon <= 180 and accuracy >= 0):
            raise InvalidOption(f"{name}: latitude -90..90, longitude -180..180, accuracy >= 0")
        return (lat, lon, accuracy)

    def to_json(self, value: Any) -> Any:
        return list(value)

    def json_schema(self) -> dict[str, Any]:
        return {
            "type": "array",
            "items": {"type": "number"},
            "minItems": 2,
            "maxItems": 3,
            "description": "latitude, longitude[, accuracy in metres]",
        }


__all__ = [
    "REDACTED",
    "Cookie",
    "Cookies",
    "Credentials",
    "CredentialsKind",
    "Geolocation",
    "Locale",
    "StorageState",
    "StorageStateKind",
    "parse_netscape",
]
