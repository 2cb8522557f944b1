"""Upstream proxies of the tests' own on 127.0.0.1: an HTTP CONNECT proxy (over TLS too,
an https:// proxy) and a SOCKS5 one, each optionally requiring a user and password (Basic,
RFC 1929), or refusing every tunnel. Each records the tunnels it opened, so a test can
show a page came through it.

They connect only to loopback addresses and never resolve a name (a name gets "host
unreachable"), so no test sends a packet or a DNS query off the machine through them.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import socket
import socketserver
import ssl
import struct
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

__all__ = ["TestProxy", "start_proxy", "stop_proxy"]


@dataclass
class Tunnels:
    #: ``host:port`` of every tunnel opened, in order.
    opened: list[str] = field(default_factory=list)
    #: Attempts whose credentials were missing or wrong.
    auth_failures: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class TestProxy(socketserver.ThreadingTCPServer):
    __test__ = False  # not a pytest class
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's backlog of 5: a burst of tunnels on a loaded machine overflows it, and
    # each dropped SYN costs a 1, 2, 4 s retransmission, past a 10 s connect timeout
    request_queue_size = 128
    kind: str  # "http", "https" or "socks5"
    credentials: tuple[str, str] | None
    refuse: bool
    tunnels: Tunnels
    tls: ssl.SSLContext | None = None

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = super().get_request()
        if self.tls is not None:
            sock.settimeout(10)  # a client that never finishes the handshake
            sock = self.tls.wrap_socket(sock, server_side=True)
            sock.settimeout(None)
        return sock, address

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def host(self) -> str:
        return str(self.server_address[0])

    def url(self, user: str | None = None, password: str | None = None) -> str:
        """This proxy's URL, with ``user:password@`` when given."""
        auth = ""
        if user is not None:
            auth = quote(user, safe="") + (
                f":{quote(password, safe='')}" if password is not None else ""
            )
            auth += "@"
        return f"{self.kind}://{auth}{self.host}:{self.port}"


def start_proxy(
    kind: str,
    credentials: tuple[str, str] | None = None,
    *,
    refuse: bool = False,
    host: str = "127.0.0.1",
    tls: ssl.SSLContext | None = None,
) -> TestProxy:
    """A proxy of ``kind`` ("http", "https" with ``tls``, or "socks5") listening on
    ``host`` (a loopback address), wanting ``credentials`` (user, password) if given."""
    assert kind in ("http", "https", "socks5"), kind
    assert (kind == "https") == (tls is not None), "an https proxy needs tls, and only it"
    assert _loopback(host), host
    handler = _Socks5 if kind == "socks5" else _HttpConnect
    server = TestProxy((host, 0), handler)
    server.tls = tls
    server.kind, server.credentials, server.refuse = kind, credentials, refuse
    server.tunnels = Tunnels()
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server


def stop_proxy(server: TestProxy) -> None:
    server.shutdown()
    server.server_close()


def _loopback(host: str) -> str | None:
    """``host`` if it is a loopback address (the only place these proxies connect)."""
    try:
        return host if ipaddress.ip_address(host.strip("[]")).is_loopback else None
    except ValueError:
        return None


class _Handler(socketserver.BaseRequestHandler):
    server: TestProxy

    def _read(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.request.recv(n - len(data))
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        return data

    def _tunnel(self, host: str, port: int) -> socket.socket | None:
        address = _loopback(host)
        if address is None:
            return None
        try:
            upstream = socket.create_connection((address.strip("[]"), port), timeout=10)
        except OSError:
            return None
        upstream.settimeout(None)
        with self.server.tunnels.lock:
            self.server.tunnels.opened.append(f"{host}:{port}")
        return upstream

    def _relay(self, upstream: socket.socket) -> None:
        def pump(src: socket.socket, dst: socket.socket) -> None:
            try:
                while data := src.recv(65536):
                    dst.sendall(data)
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass

        other = threading.Thread(target=pump, args=(upstream, self.request), daemon=True)
        other.start()
        pump(self.request, upstream)
        other.join(60)
        upstream.close()

    def _auth_failed(self) -> None:
        with self.server.tunnels.lock:
            self.server.tunnels.auth_failures += 1


class _HttpConnect(_Handler):
    def handle(self) -> None:
        head = b""
        while b"\r\n\r\n" not in head and len(head) < 16384:
            chunk = self.request.recv(4096)
            if not chunk:
                return
            head += chunk
        lines = head.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
        method, target = [*lines[0].split(" "), "", ""][:2]
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if method != "CONNECT":
            return self._answer("405 Method Not Allowed")
        if self.server.credentials is not None:
            user, password = self.server.credentials
            expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
            if headers.get("proxy-authorization") != expected:
                self._auth_failed()
                return self._answer(
                    "407 Proxy Authentication Required",
                    'Proxy-Authenticate: Basic realm="test"\r\n',
                )
        if self.server.refuse:
            return self._answer("403 Forbidden")
        host, _, port = target.rpartition(":")
        upstream = self._tunnel(host, int(port)) if port.isdigit() else None
        if upstream is None:
            return self._answer("502 Bad Gateway")
        self.request.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        self._relay(upstream)

    def _answer(self, status: str, extra: str = "") -> None:
        self.request.sendall(
            f"HTTP/1.1 {status}\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n".encode()
        )


class _Socks5(_Handler):
    def handle(self) -> None:
        with contextlib.suppress(ConnectionError):
            self._handle()

    def _handle(self) -> None:
        version, n_methods = self._read(2)
        methods = self._read(n_methods)
        if version != 5:
            return
        if self.server.credentials is not None:
            if 2 not in methods:
                self._auth_failed()
                self.request.sendall(b"\x05\xff")
                return
            self.request.sendall(b"\x05\x02")
            _, user_len = self._read(2)
            user = self._read(user_len)
            (password_len,) = self._read(1)
            password = self._read(password_len)
            if (user.decode(), password.decode()) != self.server.credentials:
                self._auth_failed()
                self.request.sendall(b"\x01\x01")
                return
            self.request.sendall(b"\x01\x00")
        else:
            self.request.sendall(b"\x05\x00")
        _, command, _, address_type = self._read(4)
        if address_type == 1:
            host = str(ipaddress.IPv4Address(self._read(4)))
        elif address_type == 4:
            host = str(ipaddress.IPv6Address(self._read(16)))
        else:
            (length,) = self._read(1)
            host = self._read(length).decode()  # a name: never resolved here
        (port,) = struct.unpack("!H", self._read(2))
        if command != 1 or self.server.refuse:
            return self._reply(2)  # connection not allowed by ruleset
        upstream = self._tunnel(host, port)
        if upstream is None:
            return self._reply(4)  # host unreachable
        self._reply(0)
        self._relay(upstream)

    def _reply(self, code: int) -> None:
        self.request.sendall(bytes([5, code, 0, 1, 0, 0, 0, 0, 0, 0]))
