"""Shared fixtures: a local HTTP server with test pages, and CLI/process helpers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
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
