"""A local HTTP server with the pages the conformance suites and distshot's own tests use.

Every route is a behaviour an engine must cope with: slow, hanging, redirecting, downloading,
never-finishing and script-heavy pages, plus an echo of the request headers. It listens on
127.0.0.1 only, so tests never send a packet anywhere else. Requests need
``allow_private=True`` (the pages are on loopback).
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

PAGES = Path(__file__).parent / "pages"

__all__ = ["PAGES", "PageServer", "Seen", "start_server", "stop_server"]


@dataclass
class Seen:
    """What the server saw, for assertions on headers, cookies and concurrency
    (``active``/``max_active`` count /slow requests only, so a favicon fetch cannot skew them)."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    active: int = 0
    max_active: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def paths(self) -> list[str]:
        return [r["path"] for r in self.requests]


class PageServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # not socketserver's 5: see proxies.TestProxy
    seen: Seen
    stop: threading.Event
    #: Pages a test writes and rewrites: ``/v/NAME`` serves ``variants[NAME]`` (HTML), so
    #: the same URL can look different in two runs (change detection).
    variants: dict[str, str]
    #: The ``sid`` cookie that ``/account`` takes for a logged-in session (a test sets its
    #: own, to look for it in everything distshot writes).
    session: str = "conformance-session"
    #: The password ``/auth`` (basic) and ``/digest-auth`` take for ``user``.
    password: str = "secret"

    @property
    def base(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"


class Handler(BaseHTTPRequestHandler):
    server: PageServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        seen = self.server.seen
        with seen.lock:
            seen.requests.append(
                {"path": parts.path, "query": query, "headers": dict(self.headers.items())}
            )
            counted = parts.path == "/slow"
            if counted:
                seen.active += 1
                seen.max_active = max(seen.max_active, seen.active)
        try:
            self.route(parts.path, query)
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            if counted:
                with seen.lock:
                    seen.active -= 1

    def send(
        self,
        body: bytes | str,
        status: int = 200,
        ctype: str = "text/html; charset=utf-8",
        headers: dict[str, str] | None = None,
    ) -> None:
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def route(self, path: str, query: dict[str, str]) -> None:
        stop = self.server.stop
        if path == "/echo":
            headers = json.dumps(dict(self.headers.items()))
            self.send(f"<title>echo</title><pre id=headers>{headers}</pre>")
        elif path.startswith("/status/"):
            code = int(path.rsplit("/", 1)[1])
            self.send(f"<title>Status {code}</title><h1>{code}</h1>", status=code)
        elif path == "/redirect":
            self.send("", status=302, headers={"Location": query["to"]})
        elif path == "/loop":
            self.send("", status=302, headers={"Location": "/loop"})
        elif path == "/hang":
            stop.wait(60)  # accepts the connection, never answers
        elif path == "/slow":
            time.sleep(float(query.get("ms", "500")) / 1000)
            self.send("<title>slow</title><body style='background:#00f'>slow</body>")
        elif path == "/slow-image":
            time.sleep(float(query.get("ms", "1000")) / 1000)
            self.send(_png_1x1_red(), ctype="image/png")
        elif path == "/slow-font":
            time.sleep(float(query.get("ms", "1500")) / 1000)
            self.send(_a_system_font(), ctype="font/ttf")
        elif path == "/never-loads":
            self.send("<title>never</title><p>text</p><img src='/hang'>")
        elif path == "/download":
            self.send(
                b"\x00" * 2048,
                ctype="application/octet-stream",
                headers={"Content-Disposition": "attachment; filename=file.bin"},
            )
        elif path == "/set-cookie":
            self.send(
                "<title>set</title><script>localStorage.setItem('k','leak');"
                "sessionStorage.setItem('s','leak');window.name='leak';</script>",
                headers={"Set-Cookie": "session=leak; Path=/"},
            )
        elif path == "/auth":
            # HTTP Basic auth for user:secret; browsers cache accepted credentials per realm.
            login = f"user:{self.server.password}".encode()
            expected = "Basic " + base64.b64encode(login).decode()
            if self.headers.get("Authorization") == expected:
                self.send("<title>authed</title><p>welcome</p>")
            else:
                # Readable from other origins' scripts, so that a page can be challenged
                # without a login prompt (challenge.html)
                self.send(
                    "<title>unauthorized</title><p>401</p>",
                    status=401,
                    headers={
                        "WWW-Authenticate": 'Basic realm="distshot"',
                        "Access-Control-Allow-Origin": "*",
                    },
                )
        elif path == "/account":
            self.account()
        elif path == "/digest-auth":
            self.digest_auth()
        elif path.startswith("/v/") and path[3:] in self.server.variants:
            self.send(self.server.variants[path[3:]])
        elif path == "/tall":
            height = int(query.get("h", "3000"))
            self.send(
                f"<title>tall</title><style>body{{margin:0}}</style>"
                f"<div style='height:{height}px;background:#0a0'></div>"
            )
        else:
            file = (PAGES / path.lstrip("/")).resolve()
            if PAGES in file.parents and file.is_file():
                ctype = {
                    "html": "text/html; charset=utf-8",
                    "png": "image/png",
                    "css": "text/css",
                    "js": "text/javascript",
                }.get(file.suffix.lstrip("."), "application/octet-stream")
                self.send(file.read_bytes(), ctype=ctype)
            else:
                self.send("<title>Not Found</title>not found", status=404)

    def account(self) -> None:
        """A page behind a login: green with the user's name for the session cookie, red
        asking to log in without it (as a site's login page would)."""
        cookies = dict(
            part.strip().split("=", 1)
            for part in self.headers.get("Cookie", "").split(";")
            if "=" in part
        )
        if cookies.get("sid") == self.server.session:
            self.send(
                "<title>account alice</title><style>html,body{margin:0;height:100%;"
                "background:#0f0}</style><p>logged in as alice</p>"
            )
        else:
            self.send(
                "<title>login required</title><style>html,body{margin:0;height:100%;"
                "background:#f00}</style><p>please log in</p>"
            )

    def digest_auth(self) -> None:
        """HTTP Digest auth (RFC 7616, MD5, qop=auth) for user:secret."""
        realm, nonce = "distshot", "dcd98b7102dd2f0e8b11d0f600bfb0c093"
        header = self.headers.get("Authorization", "")
        if header.startswith("Digest "):
            fields = dict(
                (key.strip(), value.strip().strip('"'))
                for key, _, value in (
                    item.partition("=") for item in header[len("Digest ") :].split(",")
                )
            )

            def md5(text: str) -> str:
                return hashlib.md5(text.encode()).hexdigest()  # the protocol's, not ours

            ha1 = md5(f"user:{realm}:{self.server.password}")
            ha2 = md5(f"GET:{fields.get('uri', '')}")
            expected = md5(
                f"{ha1}:{nonce}:{fields.get('nc', '')}:{fields.get('cnonce', '')}:auth:{ha2}"
            )
            if fields.get("username") == "user" and fields.get("response") == expected:
                self.send("<title>digest authed</title><p>welcome</p>")
                return
        self.send(
            "<title>unauthorized</title><p>401</p>",
            status=401,
            headers={"WWW-Authenticate": f'Digest realm="{realm}", qop="auth", nonce="{nonce}"'},
        )


def _a_system_font() -> bytes:
    """A TrueType font to serve as a web font: any will do, and a Chromium that renders
    text has some installed (Debian's pulls in DejaVu or Liberation)."""
    for font in sorted(Path("/usr/share/fonts").rglob("*.ttf")):
        return font.read_bytes()
    raise FileNotFoundError("no .ttf font under /usr/share/fonts to serve as a web font")


def _png_1x1_red() -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    raw = zlib.compress(b"\x00\xff\x00\x00")
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", raw)
        + chunk(b"IEND", b"")
    )


def start_server(host: str = "127.0.0.1") -> PageServer:
    server = PageServer((host, 0), Handler)
    server.seen = Seen()
    server.stop = threading.Event()
    server.variants = {}
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def stop_server(server: PageServer) -> None:
    server.stop.set()
    server.shutdown()
    server.server_close()
