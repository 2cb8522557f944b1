"""The Playwright engine's life: shared browser, isolation, recycling, crash recovery."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import PageServer, tagged_processes, wait_no_processes

from distshot.core.contracts import EngineConfig
from distshot.core.models import ShotRequest
from distshot.core.options import CaptureOptions
from distshot.core.service import capture_request
from distshot.engines.playwright import PlaywrightEngine
from distshot.storage.local import LocalStorage


async def until(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    """Poll for ``condition`` (the test's premise), instead of sleeping and hoping."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def request(url: str, number: int = 1, **options: object) -> ShotRequest:
    return ShotRequest(
        f"t:{number}",
        number,
        url,
        CaptureOptions(**options),  # type: ignore[arg-type]
        allow_private=True,
    )


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_jobs_are_isolated_cookies_local_and_session_storage(
    http_server: PageServer, tmp_path: Path
) -> None:
    storage = LocalStorage(str(tmp_path))

    async def scenario() -> list[str | None]:
        engine = PlaywrightEngine(EngineConfig())
        await engine.open()
        try:
            # Given a job whose page sets a cookie, localStorage and sessionStorage
            first = await capture_request(
                request(f"{http_server.base}/set-cookie", 1), engine, storage
            )
            assert first.status == "ok"
            # When the next jobs on the same browser, sequential and concurrent, read them
            results = await asyncio.gather(
                *[
                    capture_request(request(f"{http_server.base}/cookies.html", n), engine, storage)
                    for n in range(2, 5)
                ]
            )
            return [r.title for r in results]
        finally:
            await engine.close()

    titles = run(scenario())
    # Then none of them sees anything
    assert titles == ["no-cookie no-local no-session"] * 3
    cookie_headers = [
        r["headers"].get("Cookie")
        for r in http_server.seen.requests
        if r["path"] == "/cookies.html"
    ]
    assert cookie_headers == [None, None, None]


def test_concurrent_jobs_share_one_browser(
    http_server: PageServer, tmp_path: Path, tag: str
) -> None:
    storage = LocalStorage(str(tmp_path))

    async def scenario() -> tuple[int, list[str]]:
        engine = PlaywrightEngine(EngineConfig())
        try:
            await engine.open()
            results = await asyncio.gather(
                *[
                    capture_request(
                        request(f"{http_server.base}/slow?ms=300&n={n}", n), engine, storage
                    )
                    for n in range(6)
                ]
            )
            return engine.launches, [r.status for r in results]
        finally:
            await engine.close()

    launches, statuses = run(scenario())
    assert statuses == ["ok"] * 6
    assert launches == 1
    assert wait_no_processes(tag) == []


def test_browser_crash_fails_the_job_transiently_and_the_next_job_relaunches(
    http_server: PageServer, tmp_path: Path, tag: str
) -> None:
    storage = LocalStorage(str(tmp_path))

    async def scenario() -> tuple[str, str | None, bool, str, int]:
        engine = PlaywrightEngine(EngineConfig())
        try:
            await engine.open()
            job = asyncio.create_task(
                capture_request(request(f"{http_server.base}/slow?ms=3000", 1), engine, storage)
            )
            await until(lambda: http_server.seen.active >= 1, "the slow page to be loading")
            # When every Chromium process of this test is killed mid-job
            victims = tagged_processes(tag)
            assert victims
            for pid in victims:
                os.kill(pid, signal.SIGKILL)
            crashed = await job
            after = await capture_request(
                request(f"{http_server.base}/solid.html", 2), engine, storage
            )
            return (
                crashed.status,
                crashed.error and crashed.error["type"],
                crashed.transient,
                after.status,
                engine.launches,
            )
        finally:
            await engine.close()

    status, error_type, transient, after_status, launches = run(scenario())
    assert (status, error_type, transient) == ("failed", "BrowserCrashed", True)
    assert after_status == "ok"
    assert launches == 2
    assert wait_no_processes(tag) == []


@pytest.mark.parametrize("option", [{"wait_for": "#["}])
def test_invalid_selector_is_a_clear_permanent_failure(
    http_server: PageServer, tmp_path: Path, option: dict[str, object]
) -> None:
    async def scenario():  # type: ignore[no-untyped-def]
        engine = PlaywrightEngine(EngineConfig())
        try:
            return await capture_request(
                request(f"{http_server.base}/solid.html", 1, **option),
                engine,
                LocalStorage(str(tmp_path)),
            )
        finally:
            await engine.close()

    result = run(scenario())
    assert result.status == "failed"
    assert result.error["type"] == "InvalidOption"
    assert not result.transient


@pytest.mark.parametrize(("reuse", "expected_contexts"), [(True, 1), (False, 5)])
def test_contexts_are_reused_between_clean_jobs_and_isolation_holds(
    http_server: PageServer, tmp_path: Path, reuse: bool, expected_contexts: int
) -> None:
    storage = LocalStorage(str(tmp_path))

    async def scenario() -> tuple[list[str | None], int]:
        engine = PlaywrightEngine(EngineConfig(concurrency=1, reuse_contexts=reuse))
        await engine.open()
        try:
            titles = []
            # Given jobs that alternately set and read cookies, storage and window.name
            for n, path in enumerate(["/set-cookie", "/cookies.html"] * 2 + ["/cookies.html"]):
                result = await capture_request(
                    request(f"{http_server.base}{path}", n), engine, storage
                )
                assert result.status == "ok", result.error
                titles.append(result.title)
            return titles, engine.lanes_opened
        finally:
            await engine.close()

    titles, contexts = run(scenario())
    # Then a reused context still shows each reader nothing of the writer before it
    assert titles[1::2] == ["no-cookie no-local no-session"] * 2
    assert titles[4] == "no-cookie no-local no-session"
    # and one context served all five jobs (or five, when reuse is off)
    assert contexts == expected_contexts


def test_a_reused_page_takes_each_jobs_viewport_and_headers_and_drops_the_last_ones(
    http_server: PageServer, tmp_path: Path
) -> None:
    storage = LocalStorage(str(tmp_path))
    jobs = [
        request(f"{http_server.base}/echo?one", 1, headers=(("X-Job", "one"),)),
        request(f"{http_server.base}/echo?two", 2, width=640, height=480),
        request(f"{http_server.base}/echo?three", 3),
    ]

    async def scenario() -> tuple[list[tuple[int | None, int | None]], int]:
        engine = PlaywrightEngine(EngineConfig(concurrency=1))
        await engine.open()
        try:
            sizes = []
            for job in jobs:
                result = await capture_request(job, engine, storage)
                assert result.status == "ok", result.error
                sizes.append((result.width, result.height))
            return sizes, engine.lanes_opened
        finally:
            await engine.close()

    sizes, contexts = run(scenario())
    # Given three jobs on one reused page, each gets its own viewport ...
    assert contexts == 1
    assert sizes == [(1280, 800), (640, 480), (1280, 800)]
    # ... and a header set by one job does not reach the server for the next ones
    headers = {
        next(iter(r["query"])): r["headers"]
        for r in http_server.seen.requests
        if r["path"] == "/echo"
    }
    assert headers["one"].get("X-Job") == "one"
    assert "X-Job" not in headers["two"] and "X-Job" not in headers["three"]


def _shoot_one(url: str, tmp_path: Path) -> tuple[Path, str | None]:
    """One job on a fresh engine: the image's path and the page's title (it must succeed)."""
    storage = LocalStorage(str(tmp_path))

    async def scenario() -> tuple[Path, str | None]:
        engine = PlaywrightEngine(EngineConfig(concurrency=1))
        await engine.open()
        try:
            result = await capture_request(request(url), engine, storage)
            assert result.status == "ok", result.error
            assert result.location is not None
            return Path(result.location.removeprefix("file://")), result.title
        finally:
            await engine.close()

    return run(scenario())  # type: ignore[no-any-return]


def test_a_focused_fields_caret_is_not_in_the_image(
    http_server: PageServer, tmp_path: Path
) -> None:
    from PIL import Image

    # Given a page whose autofocused field would draw a tall, steady green caret
    path, title = _shoot_one(f"{http_server.base}/caret.html", tmp_path)
    assert title == "caret"
    image = Image.open(path).convert("RGB")
    # Then the image has no green in it: the caret was hidden before the capture
    pixels = image.tobytes()
    green = sum(
        1
        for r, g, b in zip(pixels[0::3], pixels[1::3], pixels[2::3], strict=True)
        if g > 200 and r < 80 and b < 80
    )
    assert green == 0


def test_a_web_font_that_arrives_after_load_is_in_the_image(
    http_server: PageServer, tmp_path: Path
) -> None:
    from PIL import Image

    # Given a page that shows big black text after its load event, in a web font that takes
    # 1.5 s to arrive and hides the text until then (font-display: block)
    path, _ = _shoot_one(f"{http_server.base}/late-font.html", tmp_path)
    image = Image.open(path).convert("L")
    # Then the text is in the image: the capture waited for the font
    dark = sum(1 for value in image.tobytes() if value < 100)
    assert dark > 10_000


def _renderers(engine: PlaywrightEngine) -> set[int]:
    """The renderer processes of the engine's current browser."""
    from distshot.engines.chromium import process_tree

    slot = engine.browsers._slot
    assert slot is not None and slot.pid is not None
    found = set()
    for pid in process_tree(slot.pid):
        try:
            if b"--type=renderer" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.add(pid)
        except OSError:
            continue
    return found


def test_two_lanes_keep_their_renderers_and_never_share_one(
    http_server: PageServer, tmp_path: Path
) -> None:
    storage = LocalStorage(str(tmp_path))

    async def scenario() -> tuple[list[set[int]], int, int]:
        engine = PlaywrightEngine(EngineConfig(concurrency=2))
        await engine.open()
        try:
            # Given jobs two at a time: two lanes, each its own context and page
            seen: list[set[int]] = []
            for pair in range(5):
                jobs = [
                    capture_request(
                        request(f"{http_server.base}/simple.html?n={pair}-{n}", n), engine, storage
                    )
                    for n in range(2)
                ]
                results = await asyncio.gather(*jobs)
                assert all(r.status == "ok" for r in results), [r.error for r in results]
                seen.append(_renderers(engine))
            # and then two jobs at once whose pages stay loading (a slow image) while the
            # renderers are counted
            before = len(_renderers(engine))
            slow = [
                asyncio.ensure_future(
                    capture_request(
                        request(f"{http_server.base}/slow-image.html?ms=2500", n), engine, storage
                    )
                )
                for n in (10, 11)
            ]
            await until(
                lambda: http_server.seen.paths().count("/slow-image") >= 2,
                "both pages to be waiting for their image",
            )
            during = len(_renderers(engine))
            results = await asyncio.gather(*slow)
            assert all(r.status == "ok" for r in results), [r.error for r in results]
            return seen, before, during
        finally:
            await engine.close()

    seen, before, during = run(scenario())
    # Then the lanes' renderers lived on from job to job: no process was started per job
    # (a spare renderer made for the other lane's context was, before it was disabled)
    assert all(pids == seen[0] for pids in seen), seen
    # and with both pages loading each context still had a renderer of its own (at least
    # two, and no fewer than when idle)
    assert during >= before >= 2


def _argv(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")


def _disabled_features(argv: list[str]) -> set[str]:
    """What Chromium switches off: it reads only the last --disable-features."""
    values = [
        a.removeprefix("--disable-features=") for a in argv if a.startswith("--disable-features=")
    ]
    return set(values[-1].split(",")) if values else set()


def _playwrights_own_disabled_features() -> set[str]:
    """Launch Chromium through Playwright with no flags of ours and read what it switched off."""
    from playwright.async_api import async_playwright

    from distshot.testing.processes import browser_processes

    async def launch() -> set[str]:
        async with async_playwright() as p:
            browser = await p.chromium.launch(
                executable_path="/usr/bin/chromium", args=["--no-sandbox"]
            )
            try:
                # the browser process itself: of our descendants, the one with no --type=
                for pid in browser_processes():
                    argv = _argv(pid)
                    if argv[0].endswith("chromium") and not any(
                        a.startswith("--type=") for a in argv
                    ):
                        return _disabled_features(argv)
                raise AssertionError("the bare browser process was not found")
            finally:
                await browser.close()

    return run(launch())


def test_chromium_keeps_playwrights_disabled_features_and_merges_the_users(
    http_server: PageServer, tmp_path: Path
) -> None:
    from distshot.engines.chromium import _DISABLED_FEATURES

    storage = LocalStorage(str(tmp_path))
    playwrights = _playwrights_own_disabled_features()

    async def scenario() -> tuple[set[str], str | None]:
        # Given a user flag that switches one more feature off
        engine = PlaywrightEngine(EngineConfig(extra_args=("--disable-features=WebUSB",)))
        await engine.open()
        try:
            result = await capture_request(
                request(f"{http_server.base}/features.html"), engine, storage
            )
            assert result.status == "ok", result.error
            slot = engine.browsers._slot
            assert slot is not None and slot.pid is not None
            return _disabled_features(_argv(slot.pid)), result.title
        finally:
            await engine.close()

    effective, title = run(scenario())
    # Then what Chromium switches off holds Playwright's list (PaintHolding, HttpsUpgrades...),
    # ours and the user's: none of the three replaced another
    assert {"PaintHolding", "HttpsUpgrades"} <= playwrights
    assert playwrights - effective == set()
    assert set(_DISABLED_FEATURES) - effective == set()
    # and the user's feature is off in the page while one nobody named is still on
    assert title == "usb:no hid:yes"


def test_a_lane_whose_page_opened_a_pop_up_is_not_reused(
    http_server: PageServer, tmp_path: Path
) -> None:
    storage = LocalStorage(str(tmp_path))

    async def scenario() -> int:
        engine = PlaywrightEngine(EngineConfig(concurrency=1))
        await engine.open()
        try:
            # Given a job whose page opens pop-ups (whose requests the lane never saw),
            # then two plain jobs
            for n, path in enumerate(["popup.html", "simple.html", "simple.html"]):
                result = await capture_request(
                    request(f"{http_server.base}/{path}", n), engine, storage
                )
                assert result.status == "ok", result.error
            return engine.lanes_opened
        finally:
            await engine.close()

    # Then the pop-up's lane was closed and a new one opened, which the third job reused
    assert run(scenario()) == 2


def watch_lane_opens(engine: PlaywrightEngine) -> list[str]:
    """The names of the tasks that open the engine's lanes, in order: a job's own (the test
    names them ``job-N``) or a background one."""
    opened_by: list[str] = []
    open_lane = engine._open_lane

    async def watched(slot, request):  # type: ignore[no-untyped-def]
        task = asyncio.current_task()
        opened_by.append(task.get_name() if task else "?")
        return await open_lane(slot, request)

    engine._open_lane = watched  # type: ignore[method-assign]
    return opened_by


def test_a_worn_lane_is_replaced_in_the_background_not_in_a_jobs_time(
    http_server: PageServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tag: str
) -> None:
    from distshot.engines import lanes

    monkeypatch.setattr(lanes, "LANE_JOBS", 3)
    storage = LocalStorage(str(tmp_path))

    async def scenario() -> tuple[list[str], list[str], int, int]:
        engine = PlaywrightEngine(EngineConfig(concurrency=1))
        opened_by = watch_lane_opens(engine)
        await engine.open()
        try:
            statuses = []
            for n in range(10):
                job = capture_request(request(f"{http_server.base}/solid.html", n), engine, storage)
                result = await asyncio.create_task(job, name=f"job-{n}")
                statuses.append(result.status)
                await engine.settled()  # let a replacement open before the next job
            return statuses, opened_by, engine.lanes_opened, engine.lanes_discarded["jobs"]
        finally:
            await engine.close()

    statuses, opened_by, opened, worn = run(scenario())
    assert statuses == ["ok"] * 10
    # Given lanes worn after 3 jobs, 10 jobs wore out three of them...
    assert worn == 3 and opened == 4
    # ...and only the first job opened a lane in its own time: each replacement was opened
    # in the background while the worn lane still served
    jobs_that_opened = [name for name in opened_by if name.startswith("job-")]
    assert jobs_that_opened == ["job-0"]
    assert wait_no_processes(tag) == []


def test_an_answer_does_not_wait_for_its_lanes_reset_and_the_next_job_does(
    http_server: PageServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from distshot.engines import playwright

    storage = LocalStorage(str(tmp_path))
    # Given lane resets that hold until the test lets them go
    reset, released = playwright._Lane.reset, asyncio.Event()
    resets_started: list[object] = []
    resets_ended: list[object] = []

    async def held_reset(lane):  # type: ignore[no-untyped-def]
        resets_started.append(lane)
        try:
            await released.wait()
            await reset(lane)
        finally:
            resets_ended.append(lane)

    monkeypatch.setattr(playwright._Lane, "reset", held_reset)

    async def scenario() -> tuple[str | None, bool, list[str | None], int, bool]:
        engine = PlaywrightEngine(EngineConfig(concurrency=1))
        await engine.open()
        try:
            # When a job whose page sets a cookie and local and session storage ends, its
            # answer comes back while its lane's reset is still held
            first = await asyncio.wait_for(
                capture_request(request(f"{http_server.base}/set-cookie", 1), engine, storage),
                60,
            )
            await until(lambda: len(resets_started) == 1, "the first lane's reset to start")
            held = resets_ended == []
            # and the next job, sent now, waits for that reset rather than opening a lane
            second = asyncio.create_task(
                capture_request(request(f"{http_server.base}/cookies.html", 2), engine, storage)
            )
            await asyncio.sleep(1)
            waited = not second.done()
            released.set()
            results = [await second]
            results.append(
                await capture_request(
                    request(f"{http_server.base}/cookies.html", 3), engine, storage
                )
            )
            return first.status, held, [r.title for r in results], engine.lanes_opened, waited
        finally:
            released.set()
            await engine.close()

    first, held, titles, opened, waited = run(scenario())
    assert first == "ok" and held
    # Then the next jobs ran in the same lane, after its reset: they see nothing it left
    assert waited
    assert opened == 1
    assert titles == ["no-cookie no-local no-session"] * 2


def test_a_browser_launched_ahead_has_its_lanes_open_before_its_first_job(
    http_server: PageServer, tmp_path: Path, tag: str
) -> None:
    storage = LocalStorage(str(tmp_path))

    async def scenario() -> tuple[list[str], list[str], int]:
        engine = PlaywrightEngine(EngineConfig(concurrency=1, recycle_after=10))
        opened_by = watch_lane_opens(engine)
        await engine.open()
        try:
            statuses = []
            for n in range(14):
                job = capture_request(request(f"{http_server.base}/solid.html", n), engine, storage)
                result = await asyncio.create_task(job, name=f"job-{n}")
                statuses.append(result.status)
                await asyncio.sleep(0.3)  # time for the next browser to launch and warm up
            return statuses, opened_by, engine.launches
        finally:
            await engine.close()

    statuses, opened_by, launches = run(scenario())
    assert statuses == ["ok"] * 14
    # Given a browser replaced after 10 jobs, 14 jobs ran on two browsers...
    assert launches == 2
    # ...and only the very first job opened a lane in its own time: the second browser's
    # lane was opened when it was launched, ahead of its first job
    assert [name for name in opened_by if name.startswith("job-")] == ["job-0"]
    assert len(opened_by) == 2
    assert wait_no_processes(tag) == []
