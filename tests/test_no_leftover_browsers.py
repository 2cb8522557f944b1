"""No Chromium process outlives `distshot shoot`: after a normal run, Ctrl-C or SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import DISTSHOT, PageServer, tagged_processes, wait_no_processes


def test_no_chromium_left_after_a_normal_run(
    http_server: PageServer, tmp_path: Path, tag: str
) -> None:
    urls = tmp_path / "u.txt"
    urls.write_text(f"{http_server.base}/solid.html\n{http_server.base}/jsloop.html\n")
    result = subprocess.run(
        [
            *DISTSHOT,
            "shoot",
            str(urls),
            "-o",
            str(tmp_path / "out"),
            "--allow-private",
            "--timeout",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "DISTSHOT_MAX_ATTEMPTS": "1"},
    )
    assert result.returncode == 1, result.stderr  # the JS loop fails
    assert wait_no_processes(tag, timeout=5) == []


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_no_chromium_left_after_an_interrupt(
    http_server: PageServer, tmp_path: Path, tag: str, signum: int
) -> None:
    # Given a run busy with slow pages
    urls = tmp_path / "u.txt"
    urls.write_text("".join(f"{http_server.base}/slow?ms=4000&n={n}\n" for n in range(20)))
    process = subprocess.Popen(
        [
            *DISTSHOT,
            "shoot",
            str(urls),
            "-o",
            str(tmp_path / "out"),
            "--allow-private",
            "--concurrency",
            "2",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while len([r for r in http_server.seen.requests if r["path"] == "/slow"]) < 2:
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.1)
    assert tagged_processes(tag)  # the browser is up and busy
    # When it is interrupted
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    # Then it exits 130 with one line, leaves no browser and a readable manifest
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert "interrupted" in stderr
    assert wait_no_processes(tag, timeout=10) == []
    manifest = tmp_path / "out" / "manifest.jsonl"
    if manifest.exists():
        for line in manifest.read_text().splitlines():
            json.loads(line)
