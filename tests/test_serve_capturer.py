"""The embedded backend's capture process: killed, it is replaced and what it had in
flight is captured again; a service killed with SIGKILL leaves neither it nor a browser."""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from pathlib import Path

from servekit import LOOPBACK, Serve, poll

from distshot.testing.processes import tagged_processes, wait_no_processes
from distshot.testing.server import PageServer


def capture_process(serve_pid: int) -> int:
    """The serve process's child that runs the captures (a multiprocessing spawn). The
    kernel lists a child under the thread that started it, so every thread is read."""
    children = [
        pid
        for task in Path(f"/proc/{serve_pid}/task").iterdir()
        for pid in (task / "children").read_text().split()
    ]
    for pid in children:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        if b"spawn_main" in command:
            return int(pid)
    raise AssertionError(f"no capture process among {children}")


def nice(stat: Path) -> int:
    """The nice value in a /proc ``stat`` file (a process's or one thread's)."""
    return int(stat.read_text().rsplit(")", 1)[1].split()[16])


def thread_nices(pid: int) -> set[int]:
    """The nice value of every thread of ``pid`` (Chromium sets some threads' own)."""
    found = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            found.add(nice(task / "stat"))
    return found


def test_the_browsers_run_nicer_than_the_api_so_its_answers_keep_their_cpu(
    tmp_path: Path, pages: PageServer, tag: str
) -> None:
    # Given a service at its default
    serve = Serve(tmp_path, "--concurrency", "1", *LOOPBACK).start()
    try:
        assert serve.process is not None
        with serve.client() as client:
            assert (
                client.post("/v1/shots", json={"url": pages.base + "/tall"}).json()["status"]
                == "ok"
            )
        api = nice(Path(f"/proc/{serve.process.pid}/stat"))
        # Then the capture process and every thread of every browser process run 5 nicer
        # than the API's: as root too, where Chromium would set its IO threads to -8
        assert nice(Path(f"/proc/{capture_process(serve.process.pid)}/stat")) == api + 5
        browsers = tagged_processes(tag, "chromium")
        assert browsers
        assert set().union(*(thread_nices(pid) for pid in browsers)) == {api + 5}
    finally:
        assert serve.stop() == 0
    assert wait_no_processes(tag, timeout=20) == []


def test_a_dead_capture_process_is_replaced_and_its_captures_done(
    tmp_path: Path, pages: PageServer, tag: str
) -> None:
    serve = Serve(tmp_path, "--concurrency", "2", *LOOPBACK).start()
    try:
        assert serve.process is not None
        with serve.client() as client:
            ids = [
                client.post(
                    "/v1/shots", json={"url": f"{pages.base}/slow?ms=3000&n={n}", "wait": 0}
                ).json()["id"]
                for n in range(2)
            ]
            time.sleep(1.0)  # both pages are loading
            first = capture_process(serve.process.pid)
            os.kill(first, signal.SIGKILL)
            for shot_id in ids:
                record = poll(client, f"/v1/shots/{shot_id}", lambda b: "format" in b)
                assert record["status"] == "ok", record
            assert capture_process(serve.process.pid) != first
            after = client.post("/v1/shots", json={"url": pages.base + "/tall"}).json()
            assert after["status"] == "ok"
        assert "the capture process died" in serve.log.read_text()
    finally:
        assert serve.stop() == 0
    assert wait_no_processes(tag, timeout=20) == []


def test_a_service_killed_outright_leaves_no_capture_process_and_no_browser(
    tmp_path: Path, pages: PageServer, tag: str
) -> None:
    serve = Serve(tmp_path, "--concurrency", "1", *LOOPBACK).start()
    assert serve.process is not None
    with serve.client() as client:
        assert client.post("/v1/shots", json={"url": pages.base + "/tall"}).json()["status"] == "ok"
    child = capture_process(serve.process.pid)
    assert tagged_processes(tag), "the browser should be running"
    os.kill(serve.process.pid, signal.SIGKILL)  # the service only, not its process group
    serve.process.wait(10)
    deadline = time.monotonic() + 30
    while Path(f"/proc/{child}").exists() and time.monotonic() < deadline:
        status = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if status == "Z":
            break
        time.sleep(0.2)
    else:
        assert not Path(f"/proc/{child}").exists(), "the capture process outlived the service"
    assert wait_no_processes(tag, timeout=30) == []


def test_a_page_in_flight_at_two_deaths_fails_as_browser_crashed_and_the_service_goes_on(
    tmp_path: Path, pages: PageServer, tag: str
) -> None:
    """A page that keeps killing its capture process must not take every later one down:
    at the second death it is recorded failed (BrowserCrashed), and the service goes on."""
    serve = Serve(tmp_path, "--concurrency", "1", *LOOPBACK).start()
    try:
        assert serve.process is not None
        with serve.client() as client:
            mark = uuid.uuid4().hex
            url = f"{pages.base}/slow?ms=20000&mark={mark}"
            body = {"url": url, "wait": 0, "options": {"timeout": 60}}
            shot_id = client.post("/v1/shots", json=body).json()["id"]

            def loads() -> int:
                return sum(r["query"].get("mark") == mark for r in list(pages.seen.requests))

            for death in range(2):
                # the page is loading in the current capture process (its first load, then
                # the load the new process makes when the request is sent again)
                deadline = time.monotonic() + 90
                while loads() <= death and time.monotonic() < deadline:
                    time.sleep(0.1)
                assert loads() > death, "the page never started loading"
                first = capture_process(serve.process.pid)
                os.kill(first, signal.SIGKILL)
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    with contextlib.suppress(AssertionError, OSError):
                        if capture_process(serve.process.pid) != first:
                            break
                    time.sleep(0.2)
            record = poll(client, f"/v1/shots/{shot_id}", lambda b: "format" in b or "error" in b)
            assert record["status"] == "failed", record
            assert record["error"]["type"] == "BrowserCrashed"
            assert "died 2 times" in record["error"]["message"]
            after = client.post("/v1/shots", json={"url": pages.base + "/tall"}).json()
            assert after["status"] == "ok"
    finally:
        assert serve.stop() == 0
    assert wait_no_processes(tag, timeout=20) == []
