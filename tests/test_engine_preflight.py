"""An engine that cannot start at all is one line and exit 2 at start-up, for shoot and
worker: not a failed record per URL after every retry (and not a traceback)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_cli

NO_BROWSER = {"DISTSHOT_BROWSER_PATH": "/nonexistent/chromium"}


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.mark.parametrize("engine", ["playwright", "pyppeteer", "selenium"])
def test_shoot_with_no_browser_says_so_once_and_writes_no_manifest(
    engine: str, tmp_path: Path
) -> None:
    urls = tmp_path / "u.txt"
    urls.write_text("https://example.test/a\nhttps://example.test/b\n")
    out = tmp_path / "out"
    result = run_cli("shoot", str(urls), "-o", str(out), "--engine", engine, env=NO_BROWSER)
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert line.startswith(f"distshot: error: engine '{engine}' cannot start: ")
    assert "/nonexistent/chromium" in line
    assert not (out / "manifest.jsonl").exists()


def test_worker_with_no_browser_exits_2_before_consuming(tmp_path: Path) -> None:
    result = run_cli("worker", "--engine", "playwright", "--metrics", "off", env=NO_BROWSER)
    assert result.returncode == 2
    assert "engine 'playwright' cannot start" in one_line(result.stderr)


# serve: its capture process starts the engine before the service listens
# (tests/test_serve.py::test_a_browser_that_cannot_start_is_one_line_and_exit_2).
