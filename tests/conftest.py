"""Shared fixtures: a local HTTP server with test pages, and CLI/process helpers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

PAGES = Path(__file__).parent / "pages"
DISTSHOT = [sys.executable, "-m", "distshot.cli"]


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
    seen: Seen
    stop: threading.Event

    @property
    def base(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


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
                "sessionStorage.setItem('s','leak');</script>",
                headers={"Set-Cookie": "session=leak; Path=/"},
            )
        elif path == "/tall":
            height = int(query.get("h", "3000"))
            self.send(
                f"<title>tall</title><style>body{{margin:0}}</style>"
                f"<div style='height:{height}px;background:#0a0'></div>"
            )
        else:
            file = (PAGES / path.lstrip("/")).resolve()
            if PAGES in file.parents and file.is_file():
                ctype = {"html": "text/html; charset=utf-8", "png": "image/png"}.get(
                    file.suffix.lstrip("."), "application/octet-stream"
                )
                self.send(file.read_bytes(), ctype=ctype)
            else:
                self.send("<title>Not Found</title>not found", status=404)


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
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def stop_server(server: PageServer) -> None:
    server.stop.set()
    server.shutdown()
    server.server_close()


@pytest.fixture
def http_server() -> Iterator[PageServer]:
    server = start_server()
    yield server
    stop_server(server)


@pytest.fixture
def tag(monkeypatch: pytest.MonkeyPatch) -> str:
    """A marker in the environment of every process this test starts (Chromium included),
    so leaks can be found by it afterwards."""
    value = uuid.uuid4().hex
    monkeypatch.setenv("DISTSHOT_TEST_TAG", value)
    return value


def tagged_processes(value: str, name: str = "chrom") -> list[int]:
    """Live (non-zombie) processes whose environment carries the tag and whose name matches."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if state == "Z" or name not in comm:
            continue
        if f"DISTSHOT_TEST_TAG={value}".encode() in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def wait_no_processes(value: str, timeout: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = tagged_processes(value)
        if not left:
            return []
        time.sleep(0.2)
    return tagged_processes(value)


def run_cli(
    *args: str,
    input: str | None = None,
    timeout: float = 240,
    env: dict[str, str] | None = None,
    cwd: str | Path | None = None,
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [*DISTSHOT, *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        cwd=cwd,
    )


def read_manifest(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def by_line(records: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    return {r["line"]: r for r in records}


# -- a real S3 API (moto_server) ----------------------------------------------------------

from s3server import MotoServer  # noqa: E402 - the S3 helpers live in their own module


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """One moto_server for the session; every test makes buckets of its own."""
    server = MotoServer(tmp_path_factory.mktemp("moto")).start()
    yield server
    server.stop()


@pytest.fixture
def s3(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> MotoServer:
    """The session's S3 server, with this process's environment (and so every distshot
    process a test starts) pointed at it through AWS_ENDPOINT_URL."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    for name, value in moto_server.env.items():
        monkeypatch.setenv(name, value)
    return moto_server


@pytest.fixture
def private_s3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MotoServer]:
    """A moto_server of this test's own, which the test may stop (an outage)."""
    server = MotoServer(tmp_path).start()
    for name, value in server.env.items():
        monkeypatch.setenv(name, value)
    yield server
    server.stop()
