"""Shared fixtures: a local HTTP server with test pages, and CLI/process helpers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from distshot.testing.processes import tagged_processes, wait_no_processes
from distshot.testing.server import PAGES, PageServer, Seen, start_server, stop_server

__all__ = [
    "PAGES",
    "PageServer",
    "Seen",
    "start_server",
    "stop_server",
    "tagged_processes",
    "wait_no_processes",
]

DISTSHOT = [sys.executable, "-m", "distshot.cli"]

# Workers the tests start serve no metrics unless a test asks: with the default on, workers of
# tests running at the same time (pytest-xdist) would compete for the machine's one default
# port, 127.0.0.1:9191. tests/test_worker_metrics.py tests the default itself, with the
# variable removed (``Fleet.env``'s ``DEFAULT``).
os.environ.setdefault("DISTSHOT_METRICS", "off")


@pytest.fixture
def http_server() -> Iterator[PageServer]:
    server = start_server()
    yield server
    stop_server(server)


@pytest.fixture(scope="module")
def pages() -> Iterator[PageServer]:
    """One page server for a whole module's tests (the service's tests share theirs)."""
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


def wait_for(predicate: Callable[[], object], timeout: float = 60, what: str = "condition") -> None:
    """Poll for a test's premise (every 0.1 s) instead of sleeping a fixed time and hoping."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def read_manifest(path: Path) -> list[dict[str, Any]]:
    # split("\n"), not splitlines(): a page title may hold U+2028, which splitlines() cuts.
    return [json.loads(line) for line in path.read_text().split("\n") if line]


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
