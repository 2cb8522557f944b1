"""The selenium engine's life: a bounded pool of drivers, isolation, recycling, crash and
time-limit recovery, and no chromedriver or Chromium left behind. The conformance suite
(options, hostile pages, egress guard) runs against it at the end of this file."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import PageServer, tagged_processes, wait_no_processes

from distshot.core.contracts import EngineConfig
from distshot.core.errors import ConfigError
from distshot.core.imageinfo import image_size
from distshot.core.models import ShotRequest, ShotResult
from distshot.core.options import CaptureOptions
from distshot.core.service import capture_request
from distshot.engines import selenium as selenium_engine
from distshot.engines.chromium import process_tree
from distshot.engines.playwright import PlaywrightEngine
from distshot.engines.selenium import SeleniumEngine
from distshot.engines.selenium import job as selenium_job
from distshot.engines.selenium.driver import Driver
from distshot.storage.local import LocalStorage


def request(url: str, number: int = 1, **options: Any) -> ShotRequest:
    return ShotRequest(f"t:{number}", number, url, CaptureOptions(**options), allow_private=True)


def browsers_of_this_process() -> list[int]:
    """Chromium browser processes started from this test: the children of a chromedriver
    (renderers and helpers are the browser's children, never chromedriver's)."""
    found = []
    for pid in process_tree(os.getpid())[1:]:
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
            ppid = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]
            parent = Path(f"/proc/{ppid}/comm").read_text().strip()
        except (OSError, IndexError):
            continue
        if comm == "chromium" and parent == "chromedriver":
            found.append(pid)
    return found


async def shoot(engine: SeleniumEngine, storage: LocalStorage, req: ShotRequest) -> ShotResult:
    return await capture_request(req, engine, storage)


async def shoot_all(
    engine: SeleniumEngine, storage: LocalStorage, *requests: ShotRequest
) -> list[ShotResult]:
    return list(await asyncio.gather(*(capture_request(r, engine, storage) for r in requests)))


def test_jobs_are_isolated_one_after_another_and_at_once(
    http_server: PageServer, tmp_path: Path, tag: str
) -> None:
    storage = LocalStorage(str(tmp_path))

    async def scenario() -> tuple[list[str | None], int]:
        engine = SeleniumEngine(EngineConfig(concurrency=2))
        await engine.open()
        try:
            # Given a job whose page sets a cookie, localStorage, sessionStorage, window.name
            setter = await shoot(engine, storage, request(f"{http_server.base}/set-cookie", 1))
            assert setter.status == "ok", setter.error
            # When the next job on the same driver, then two at once (both drivers), read them
            first = await shoot(engine, storage, request(f"{http_server.base}/cookies.html", 2))
            rest = await shoot_all(
                engine,
                storage,
                *(request(f"{http_server.base}/cookies.html", n) for n in (3, 4)),
            )
            return [r.title for r in (first, *rest)], engine.launches
        finally:
            await engine.close()

    titles, launches = asyncio.run(scenario())
    # Then none of them sees anything
    assert titles == ["no-cookie no-local no-session"] * 3
    assert launches == 2
    cookies = [
        r["headers"].get("Cookie")
        for r in http_server.seen.requests
        if r["path"] == "/cookies.html"
    ]
    assert cookies == [None, None, None]
    assert wait_no_processes(tag) == []


@pytest.mark.parametrize(("reuse", "expected_contexts"), [(True, 1), (False, 5)])
def test_a_clean_page_is_kept_for_the_next_job_and_isolation_holds(
    http_server: PageServer, tmp_path: Path, reuse: bool, expected_contexts: int
) -> None:
    storage = LocalStorage(str(tmp_path))

    async def scenario() -> tuple[list[str | None], int]:
        engine = SeleniumEngine(EngineConfig(concurrency=1, reuse_contexts=reuse))
        await engine.open()
        try:
            titles = []
            # Given jobs that alternately set and read cookies, storage and window.name
            for n, path in enumerate(["/set-cookie", "/cookies.html"] * 2 + ["/cookies.html"]):
                result = await shoot(engine, storage, request(f"{http_server.base}{path}", n))
                assert result.status == "ok", result.error
                titles.append(result.title)
            return titles, engine.lanes_opened
        finally:
            await engine.close()

    titles, contexts = asyncio.run(scenario())
    # Then a kept page still shows each reader nothing of the writer before it
    assert titles[1::2] == ["no-cookie no-local no-session"] * 2
    assert titles[4] == "no-cookie no-local no-session"
    # and one context served all five jobs (or five, when reuse is off)
    assert contexts == expected_contexts


def test_a_page_is_not_kept_after_a_failure_or_with_other_settings(
    http_server: PageServer, tmp_path: Path
) -> None:
    storage = LocalStorage(str(tmp_path))
    base = http_server.base
    host = base.removeprefix("http://")

    async def scenario() -> list[int]:
        engine = SeleniumEngine(EngineConfig(concurrency=1))
        await engine.open()
        try:
            opened = []
            for req in [
                request(f"{base}/solid.html", 1),
                request(f"{base}/solid.html", 2, width=640, headers=(("X-A", "1"),)),  # kept
                request(f"{base}/solid.html", 3, user_agent="other/1"),  # new: another UA
                request(f"{base}/status/404", 4),  # new: back to the default UA
                request(f"{base}/download", 5),  # kept for it, discarded after its failure
                request(f"{base}/solid.html", 6),  # new
                request(f"http://user:secret@{host}/auth", 7),  # kept, not kept after
                request(f"{base}/solid.html", 8),  # new
            ]:
                await shoot(engine, storage, req)
                opened.append(engine.lanes_opened)
            return opened
        finally:
            await engine.close()

    assert asyncio.run(scenario()) == [1, 1, 2, 3, 3, 4, 4, 5]


def test_full_page_and_viewport_sizes_match_playwright(
    http_server: PageServer, tmp_path: Path, tag: str
) -> None:
    storage = LocalStorage(str(tmp_path))
    cases: list[tuple[str, dict[str, Any]]] = [
        ("/tall?h=3000", {"full_page": True}),
        ("/tall?h=3000", {}),  # scrollbars hidden: exactly the viewport
        ("/solid.html", {"width": 1000, "height": 600, "scale": 2}),
    ]

    async def sizes(engine: Any) -> list[tuple[int, int] | None]:
        await engine.open()
        try:
            results = []
            for n, (path, options) in enumerate(cases, 1):
                result = await capture_request(
                    request(f"{http_server.base}{path}", n, **options), engine, storage
                )
                assert result.status == "ok", result.error
                assert result.location is not None
                data = Path(result.location.removeprefix("file://")).read_bytes()
                results.append(image_size(data))
            return results
        finally:
            await engine.close()

    ours = asyncio.run(sizes(SeleniumEngine(EngineConfig(concurrency=1))))
    theirs = asyncio.run(sizes(PlaywrightEngine(EngineConfig(concurrency=1))))
    assert ours == [(1280, 3000), (1280, 800), (2000, 1200)]
    assert ours == theirs
    assert wait_no_processes(tag) == []


def test_pool_is_bounded_by_concurrency(http_server: PageServer, tmp_path: Path, tag: str) -> None:
    storage = LocalStorage(str(tmp_path))
    most: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            most.append(len(browsers_of_this_process()))
            time.sleep(0.05)

    async def scenario() -> tuple[list[str], int]:
        engine = SeleniumEngine(EngineConfig(concurrency=2))
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            # Given more jobs at once than the pool has drivers
            results = await shoot_all(
                engine,
                storage,
                *(request(f"{http_server.base}/slow?ms=800&n={n}", n) for n in range(6)),
            )
            return [r.status for r in results], engine.launches
        finally:
            await engine.close()
            stop.set()
            sampler.join()

    statuses, launches = asyncio.run(scenario())
    assert statuses == ["ok"] * 6
    # Then two drivers ran them, two at a time, and never more than two browsers existed
    assert launches == 2
    assert max(most) == 2
    assert http_server.seen.max_active == 2
    assert wait_no_processes(tag) == []


def test_browser_crash_mid_job_is_transient_and_the_next_job_works(
    http_server: PageServer, tmp_path: Path, tag: str
) -> None:
    storage = LocalStorage(str(tmp_path))

    async def scenario() -> tuple[ShotResult, float, ShotResult, int]:
        engine = SeleniumEngine(EngineConfig(concurrency=1))
        await engine.open()
        try:
            job = asyncio.create_task(
                shoot(engine, storage, request(f"{http_server.base}/slow?ms=4000", 1, timeout=20))
            )
            while "/slow" not in http_server.seen.paths():
                await asyncio.sleep(0.05)
            # When every Chromium process is killed mid-job (chromedriver survives)
            victims = tagged_processes(tag, name="chromium")
            assert victims
            killed_at = time.monotonic()
            for pid in victims:
                os.kill(pid, signal.SIGKILL)
            crashed = await job
            noticed = time.monotonic() - killed_at
            after = await shoot(engine, storage, request(f"{http_server.base}/solid.html", 2))
            return crashed, noticed, after, engine.launches
        finally:
            await engine.close()

    crashed, noticed, after, launches = asyncio.run(scenario())
    # Then the job fails at once as a crash, worth retrying, and the next job gets a new driver
    assert crashed.status == "failed"
    assert crashed.error is not None and crashed.error["type"] == "BrowserCrashed"
    assert crashed.transient
    assert noticed < 3
    assert after.status == "ok", after.error
    assert launches == 2
    assert wait_no_processes(tag) == []


def test_javascript_loop_times_out_and_the_driver_stays_usable(
    http_server: PageServer, tmp_path: Path, tag: str
) -> None:
    storage = LocalStorage(str(tmp_path))

    async def scenario() -> tuple[ShotResult, float, ShotResult, int]:
        engine = SeleniumEngine(EngineConfig(concurrency=1))
        await engine.open()
        try:
            started = time.monotonic()
            looped = await shoot(
                engine, storage, request(f"{http_server.base}/jsloop.html", 1, timeout=3)
            )
            took = time.monotonic() - started
            after = await shoot(engine, storage, request(f"{http_server.base}/solid.html", 2))
            return looped, took, after, engine.launches
        finally:
            await engine.close()

    looped, took, after, launches = asyncio.run(scenario())
    assert looped.status == "failed"
    assert looped.error is not None and looped.error["type"] == "NavigationTimeout"
    assert took < 3 + 5
    assert after.status == "ok", after.error
    # The wait is on DevTools events, not on the stuck renderer: the driver survives it.
    assert launches == 1
    assert wait_no_processes(tag) == []


class _HostilePages(BaseHTTPRequestHandler):
    """A page that loads, then spins forever: any driver call into it hangs."""

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        body = (
            b"<title>spin</title><script>addEventListener('load', () =>"
            b" setTimeout(() => { while (true) {} }, 300));</script>"
        )
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def spinning_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HostilePages)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_driver_call_stuck_in_a_hung_page_kills_only_that_driver(
    spinning_server: str, http_server: PageServer, tmp_path: Path, tag: str
) -> None:
    storage = LocalStorage(str(tmp_path))

    async def scenario() -> tuple[ShotResult, float, ShotResult, int]:
        engine = SeleniumEngine(EngineConfig(concurrency=1))
        await engine.open()
        try:
            # Given a page that loads, then hangs its renderer while we wait for an element
            started = time.monotonic()
            stuck = await shoot(
                engine, storage, request(f"{spinning_server}/", 1, wait_for="#never", timeout=3)
            )
            took = time.monotonic() - started
            after = await shoot(engine, storage, request(f"{http_server.base}/solid.html", 2))
            return stuck, took, after, engine.launches
        finally:
            await engine.close()

    stuck, took, after, launches = asyncio.run(scenario())
    # Then the job fails within the service's backstop, and a new driver takes the next job
    assert stuck.status == "failed"
    assert stuck.error is not None and stuck.error["type"] == "NavigationTimeout"
    assert stuck.error["message"] == f"{spinning_server}/ did not finish within its 3s timeout"
    assert took < 3 + 5
    assert after.status == "ok", after.error
    assert launches in (1, 2)  # 2 if chromedriver itself was stuck and had to be killed
    assert wait_no_processes(tag) == []


def test_a_driver_call_that_never_returns_gets_its_driver_killed(
    http_server: PageServer, tmp_path: Path, tag: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = LocalStorage(str(tmp_path))

    original = selenium_job.sender

    def stuck(slot: Driver, job: Any, session: str) -> Any:
        send = original(slot, job, session)

        def stuck_send(method: str, params: dict[str, Any]) -> dict[str, Any]:
            if method != "Page.captureScreenshot":
                return send(method, params)
            # A real chromedriver call that never answers: a script that never calls back.
            assert slot.driver is not None
            slot.driver.set_script_timeout(600)
            slot.driver.execute_async_script("/* never calls back */")
            raise AssertionError("unreachable")

        return stuck_send

    async def scenario() -> tuple[ShotResult, float, ShotResult, int]:
        engine = SeleniumEngine(EngineConfig(concurrency=1))
        await engine.open()
        try:
            monkeypatch.setattr(selenium_job, "sender", stuck)
            started = time.monotonic()
            hung = await shoot(
                engine, storage, request(f"{http_server.base}/solid.html", 1, timeout=3)
            )
            took = time.monotonic() - started
            monkeypatch.undo()
            after = await shoot(engine, storage, request(f"{http_server.base}/solid.html", 2))
            return hung, took, after, engine.launches
        finally:
            await engine.close()

    hung, took, after, launches = asyncio.run(scenario())
    # Then the job fails within the service's backstop, the driver was killed (which ended
    # the call, so no thread stays busy), and a new driver takes the next job
    assert hung.status == "failed"
    assert hung.error is not None and hung.error["type"] == "NavigationTimeout"
    assert took < 3 + 5
    assert after.status == "ok", after.error
    assert launches == 2
    deadline = time.monotonic() + 5
    while any(t.name.startswith("distshot-selenium") for t in threading.enumerate()):
        assert time.monotonic() < deadline, "a driver thread is still busy"
        time.sleep(0.1)
    assert wait_no_processes(tag) == []


def test_selenium_manager_never_runs(
    http_server: PageServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from selenium.webdriver.common.selenium_manager import SeleniumManager

    def refuse(*args: object, **kwargs: object) -> dict[str, str]:
        raise AssertionError("Selenium Manager was asked for a driver")

    monkeypatch.setattr(SeleniumManager, "binary_paths", refuse)

    async def scenario() -> ShotResult:
        engine = SeleniumEngine(EngineConfig(concurrency=1))
        try:
            return await shoot(
                engine, LocalStorage(str(tmp_path)), request(f"{http_server.base}/solid.html")
            )
        finally:
            await engine.close()

    assert asyncio.run(scenario()).status == "ok"


def test_missing_selenium_is_a_config_error_with_the_install_hint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "selenium.webdriver", None)
    with pytest.raises(ConfigError, match=r"pip install 'distshot\[selenium\]'"):
        selenium_engine.create(EngineConfig())


def test_missing_chromedriver_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="chromedriver"):
        selenium_engine.create(EngineConfig(driver_path=str(tmp_path / "chromedriver")))
