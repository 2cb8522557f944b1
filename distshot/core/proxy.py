"""Upstream proxies: the ``proxy`` option (per request) and the ``proxy`` setting (a
worker's default). A proxy URL is ``http://``, ``https://`` or ``socks5://``, with an
optional ``user:password@``. The browser never talks to it: the job's egress guard does
(``core.egress``), through ``open_tunnel`` here.

The password is a secret: ``Proxy.shown`` (what messages, the cache key and ``repr`` use)
never holds it, and neither does any error raised here.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import ssl
import struct
from dataclasses import dataclass, field
from urllib.parse import quote, unquote, urlsplit

from .errors import ProxyError

#: Each scheme and the port it gets when the URL names none.
SCHEMES = {"http": 80, "https": 443, "socks5": 1080}
SYNTAX = "http://, https:// or socks5:// [user:password@]host[:port]"
#: The longest proxy response head read (an HTTP CONNECT answer's status line and headers).
_MAX_HEAD = 16 * 1024


def redact(text: str) -> str:
    """``text`` with everything between its user and its last ``@`` shown as ***: for
    echoing a value that did not parse (so a password that holds ``@`` or ``/`` is hidden
    too)."""
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "", text
    userinfo, at, host = rest.rpartition("@")
    if not at:
        return text
    return f"{scheme}{sep}{userinfo.split(':', 1)[0]}:***@{host}"


@dataclass(frozen=True)
class Proxy:
    scheme: str
    host: str
    port: int
    user: str | None = None
    password: str | None = field(default=None, repr=False)

    @classmethod
    def parse(cls, text: str) -> Proxy:
        """Raises ValueError with a message that never holds the password."""
        problem = f"a proxy must be {SYNTAX}, not {redact(text)!r}"
        try:
            parts = urlsplit(text.strip())
            port = parts.port
        except ValueError:
            raise ValueError(problem) from None
        scheme = parts.scheme.lower()
        if scheme == "socks5h":  # curl's spelling for "the proxy resolves": ours decides
            scheme = "socks5"
        if scheme not in SCHEMES or not parts.hostname or parts.path not in ("", "/"):
            raise ValueError(problem)
        if parts.query or parts.fragment:
            raise ValueError(problem)
        user = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password is not None else None
        if scheme == "socks5" and any(len((v or "").encode()) > 255 for v in (user, password)):
            raise ValueError("a socks5 proxy's user and password are at most 255 bytes each")
        return cls(scheme, parts.hostname, port or SCHEMES[scheme], user, password)

    @property
    def _netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def shown(self) -> str:
        """The URL without the password: what messages and the cache key use."""
        user = f"{quote(self.user, safe='')}@" if self.user else ""
        return f"{self.scheme}://{user}{self._netloc}"

    @property
    def url(self) -> str:
        """The whole URL, password included (``parse`` reads it back to the same proxy)."""
        if self.user is None and self.password is None:
            return f"{self.scheme}://{self._netloc}"
        secret = f":{quote(self.password, safe='')}" if self.password is not None else ""
        return f"{self.scheme}://{quote(self.user or '', safe='')}{secret}@{self._netloc}"

    def __str__(self) -> str:
        return self.shown


async def open_tunnel(
    proxy: Proxy, via: str, host: str, port: int, timeout: float
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection to ``host:port`` through ``proxy``, reached at ``via`` (the proxy's
    checked address, or its name). ``host`` is what the proxy is asked for: an address or a
    name. Raises ProxyError naming the proxy (never its password)."""
    try:
        return await asyncio.wait_for(_open(proxy, via, host, port), timeout)
    except TimeoutError:
        raise ProxyError(f"proxy {proxy} did not answer within {timeout:g} s") from None
    except (ConnectionError, asyncio.IncompleteReadError) as exc:
        raise ProxyError(f"proxy {proxy} closed the connection: {_reason(exc)}") from None
    except ssl.SSLError as exc:
        raise ProxyError(f"proxy {proxy}: TLS failed: {exc.reason or exc}") from None
    except OSError as exc:
        raise ProxyError(f"proxy {proxy} failed: {_reason(exc)}") from None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, asyncio.IncompleteReadError):
        return "it closed mid-answer"
    return (exc.strerror if isinstance(exc, OSError) else None) or str(exc) or type(exc).__name__


async def _open(
    proxy: Proxy, via: str, host: str, port: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    tls = None
    if proxy.scheme == "https":
        tls = ssl.create_default_context()
    try:
        reader, writer = await asyncio.open_connection(
            via, proxy.port, ssl=tls, server_hostname=proxy.host if tls else None
        )
    except ssl.SSLError:
        raise
    except OSError as exc:
        raise ProxyError(f"proxy {proxy} is unreachable: {_reason(exc)}") from None
    try:
        if proxy.scheme == "socks5":
            await _socks5_connect(proxy, reader, writer, host, port)
        else:
            await _http_connect(proxy, reader, writer, host, port)
    except BaseException:
        writer.close()
        raise
    return reader, writer


async def _http_connect(
    proxy: Proxy,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    host: str,
    port: int,
) -> None:
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    head = f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n"
    if proxy.user is not None or proxy.password is not None:
        token = f"{proxy.user or ''}:{proxy.password or ''}".encode()
        head += f"Proxy-Authorization: Basic {base64.b64encode(token).decode()}\r\n"
    writer.write((head + "\r\n").encode())
    await writer.drain()
    try:
        answer = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError:
        raise ProxyError(f"proxy {proxy} sent an answer too long to be HTTP") from None
    if len(answer) > _MAX_HEAD:
        raise ProxyError(f"proxy {proxy} sent an answer too long to be HTTP")
    status_line = answer.split(b"\r\n", 1)[0].decode("latin-1").strip()
    fields = status_line.split(" ", 2)
    if len(fields) < 2 or not fields[0].startswith("HTTP/") or not fields[1].isdigit():
        raise ProxyError(f"proxy {proxy} does not speak HTTP: {status_line[:80]!r}")
    status = int(fields[1])
    if 200 <= status < 300:
        return
    if status == 407:
        raise ProxyError(_auth_refused(proxy, status_line))
    raise ProxyError(f"proxy {proxy} refused to connect to {target}: {status_line[:120]}")


def _auth_refused(proxy: Proxy, answer: str) -> str:
    if proxy.user is None and proxy.password is None:
        return f"proxy {proxy} requires credentials (user:password@ in its URL): {answer}"
    return f"proxy {proxy} rejected the credentials: {answer}"


#: RFC 1928's reply codes.
_SOCKS_REPLIES = {
    1: "general failure",
    2: "connection not allowed by its rules",
    3: "network unreachable",
    4: "host unreachable",
    5: "connection refused",
    6: "TTL expired",
    7: "command not supported",
    8: "address type not supported",
}
_NO_AUTH, _USER_PASSWORD, _NO_METHOD = 0, 2, 0xFF


async def _socks5_connect(
    proxy: Proxy,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    host: str,
    port: int,
) -> None:
    has_credentials = proxy.user is not None or proxy.password is not None
    methods = [_NO_AUTH, _USER_PASSWORD] if has_credentials else [_NO_AUTH]
    writer.write(bytes([5, len(methods), *methods]))
    version, method = await reader.readexactly(2)
    if version != 5:
        raise ProxyError(f"proxy {proxy} does not speak SOCKS5")
    if method == _USER_PASSWORD and has_credentials:
        # RFC 1929: version 1, the user and the password, each with its length
        user, password = (proxy.user or "").encode(), (proxy.password or "").encode()
        writer.write(bytes([1, len(user)]) + user + bytes([len(password)]) + password)
        _, status = await reader.readexactly(2)
        if status != 0:
            raise ProxyError(_auth_refused(proxy, "SOCKS5 authentication failed"))
    elif method != _NO_AUTH:
        raise ProxyError(
            _auth_refused(proxy, "it accepts none of the offered SOCKS5 methods")
            if method in (_NO_METHOD, _USER_PASSWORD)
            else f"proxy {proxy} chose an unknown SOCKS5 method {method}"
        )
    writer.write(bytes([5, 1, 0]) + _socks_address(host) + struct.pack("!H", port))
    version, reply, _, address_type = await reader.readexactly(4)
    if reply != 0:
        why = _SOCKS_REPLIES.get(reply, f"reply {reply}")
        raise ProxyError(f"proxy {proxy} refused to connect to {host}:{port}: {why}")
    # the address it bound: skipped, by its type
    length = {1: 4, 4: 16}.get(address_type)
    if length is None:
        (length,) = await reader.readexactly(1)
    await reader.readexactly(length + 2)


def _socks_address(host: str) -> bytes:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        name = host.encode("idna")
        return bytes([3, len(name)]) + name
    return bytes([1 if address.version == 4 else 4]) + address.packed
