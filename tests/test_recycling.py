"""The recycling policy and RecyclingBrowser's bookkeeping without a browser (the engines'
suites cover them with one)."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import pytest

from distshot.core import telemetry
from distshot.core.contracts import EngineConfig
from distshot.engines.recycling import Recycler, RecyclingBrowser


def test_a_cancelled_jobs_clean_up_still_releases_its_browser() -> None:
    closed: list[str] = []
    launched: list[str] = []

    async def launch() -> tuple[str, int | None]:
        launched.append(f"browser-{len(launched)}")
        return launched[-1], None

    async def close(browser: str, pid: int | None) -> None:
        closed.append(browser)

    async def scenario() -> tuple[int, list[str]]:
        browsers: RecyclingBrowser[str] = RecyclingBrowser(
            EngineConfig(recycle_after=1), launch, close, lambda b: True, lambda b, gone: None
        )
        slot = await browsers.acquire()

        async def clean_up() -> None:
            await asyncio.sleep(0.2)  # a context that takes its time to close
            browsers.release(slot)

        # Given a job cancelled (the service's backstop) while its clean-up runs
        job = asyncio.create_task(browsers.finish_job(clean_up()))
        await asyncio.sleep(0.05)
        job.cancel()
        await asyncio.gather(job, return_exceptions=True)
        # When the next job comes (the browser did its one job: it is retired) and all close
        await browsers.acquire()
        await browsers.close()
        return slot.in_flight, closed

    in_flight, closed = asyncio.run(scenario())
    # Then the clean-up ran to its end: the slot was released, so the retired browser was
    # closed too (without it, it would stay open, held by a job long gone); browser-2 is the
    # one launched ahead for the job after browser-1's only one, closed with the rest
    assert in_flight == 0
    assert sorted(closed) == ["browser-0", "browser-1", "browser-2"]


class _Browser:
    """What the recycling policy reads of a browser: its jobs, its pid, its last check."""

    def __init__(self, jobs: int = 0, pid: int | None = None, checked_ago: float = 0.0) -> None:
        self.jobs = jobs
        self.pid = pid
        self.checked_memory_at = time.monotonic() - checked_ago


#: Stands for this process's pid in the table (a literal pid would name the tests differently
#: in every process, and pytest-xdist's workers must collect the same tests).
SELF = -1


@pytest.mark.parametrize(
    ("crashed", "jobs", "pid", "memory_mb", "checked_ago", "reason"),
    [
        (False, 0, None, 0, 5.0, None),
        (True, 0, None, 0, 0.0, "crash"),
        (True, 99, SELF, 1, 5.0, "crash"),  # a crash is said first
        (False, 3, None, 0, 0.0, "jobs"),  # recycle_after=3
        (False, 3, SELF, 1, 5.0, "jobs"),
        (False, 0, SELF, 1, 5.0, "memory"),  # this process is bigger than 1 MB
        (False, 0, SELF, 1, 0.2, None),  # memory read at most once a second
        (False, 0, SELF, 100_000, 5.0, None),
        (False, 0, None, 1, 5.0, None),  # no pid, no memory to read
        (False, 0, SELF, 0, 5.0, None),  # no memory limit
    ],
)
def test_the_recycling_policy_names_why_a_browser_goes_and_tells_the_metrics(
    crashed: bool, jobs: int, pid: int | None, memory_mb: int, checked_ago: float, reason: str
) -> None:
    events: list[tuple[str, dict[str, Any]]] = []

    def listen(event: str, **fields: Any) -> None:
        events.append((event, fields))

    recycler = Recycler(EngineConfig(recycle_after=3, recycle_memory_mb=memory_mb))
    browser = _Browser(jobs, os.getpid() if pid == SELF else pid, checked_ago)
    telemetry.subscribe(listen)
    try:
        recycler.launched()
        worn = recycler.worn_out(browser, crashed=crashed)
    finally:
        telemetry.unsubscribe(listen)
    assert worn == (reason is not None)
    assert recycler.launches == 1
    assert recycler.memory_recycles == (reason == "memory")
    retired = [(telemetry.BROWSER_RECYCLE, {"reason": reason})] if reason else []
    assert events == [(telemetry.BROWSER_LAUNCH, {}), *retired]


class _Launches:
    """A fake browser launcher the test holds back: each launch waits for ``go``."""

    def __init__(self, pid: int | None = None) -> None:
        self.started: list[str] = []
        self.closed: list[str] = []
        self.go = asyncio.Event()
        self.pid = pid

    async def launch(self) -> tuple[str, int | None]:
        name = f"browser-{len(self.started)}"
        self.started.append(name)
        if len(self.started) > 1:  # the first one opens the engine; the rest wait for go
            await self.go.wait()
        return name, self.pid

    async def close(self, browser: str, pid: int | None) -> None:
        self.closed.append(browser)

    def browsers(self, config: EngineConfig) -> RecyclingBrowser[str]:
        return RecyclingBrowser(config, self.launch, self.close, lambda b: True, lambda b, g: None)


def test_a_browser_over_its_memory_keeps_serving_until_its_successor_is_up() -> None:
    launches = _Launches(pid=os.getpid())  # this process: far over a 1 MB limit

    async def scenario() -> list[object]:
        browsers = launches.browsers(EngineConfig(recycle_after=1000, recycle_memory_mb=1))
        first = await browsers.acquire()
        first.checked_memory_at -= 5  # a second has passed: the next acquire reads memory
        browsers.release(first)
        # When the next job comes, the memory is over: a successor starts launching...
        during = await browsers.acquire()
        await asyncio.sleep(0)
        seen: list[object] = [during.browser, list(launches.started)]
        # ...and while it launches, jobs still get the old browser at once (no wait)
        also = await asyncio.wait_for(browsers.acquire(), 1.0)
        seen += [also.browser, list(launches.closed)]
        browsers.release(during)
        browsers.release(also)
        # Once it is up, the next job gets it and the old one closes (its jobs are done)
        launches.go.set()
        await asyncio.sleep(0.01)
        after = await browsers.acquire()
        await asyncio.sleep(0.01)
        seen += [after.browser, list(launches.closed), browsers.memory_recycles]
        browsers.release(after)
        await browsers.close()
        return seen

    seen = asyncio.run(scenario())
    assert seen == [
        "browser-0",
        ["browser-0", "browser-1"],
        "browser-0",
        [],
        "browser-1",
        ["browser-0"],
        1,
    ]


def test_the_next_browser_launches_ahead_of_the_last_job_and_close_closes_it() -> None:
    launches = _Launches()
    launches.go.set()

    async def scenario() -> tuple[list[str], list[int], list[str]]:
        browsers = launches.browsers(EngineConfig(recycle_after=10))
        used, started = [], []
        for _ in range(12):
            slot = await browsers.acquire()
            used.append(slot.browser)
            browsers.release(slot)
            await asyncio.sleep(0.001)
            started.append(len(launches.started))
        await browsers.close()
        return used, started, launches.closed

    used, started, closed = asyncio.run(scenario())
    # ten jobs on the first browser (the limit holds), then the next one
    assert used == ["browser-0"] * 10 + ["browser-1"] * 2
    # its launch began at the ninth job, ahead of need: the eleventh job did not launch
    assert started == [1] * 8 + [2] * 4
    assert sorted(closed) == ["browser-0", "browser-1"]


def test_a_spare_launched_ahead_is_closed_with_the_engine() -> None:
    launches = _Launches()
    launches.go.set()

    async def scenario() -> tuple[list[str], list[str]]:
        browsers = launches.browsers(EngineConfig(recycle_after=1))
        slot = await browsers.acquire()  # its only job: the next browser launches now
        browsers.release(slot)
        await browsers.close()  # right away, while the spare may still be launching
        return launches.started, launches.closed

    started, closed = asyncio.run(scenario())
    assert started == ["browser-0", "browser-1"]
    assert sorted(closed) == ["browser-0", "browser-1"]


def test_a_successor_that_failed_to_launch_is_launched_again_for_a_browser_over_its_memory() -> (
    None
):
    attempts: list[str] = []

    async def launch() -> tuple[str, int | None]:
        attempts.append(f"browser-{len(attempts)}")
        if len(attempts) == 2:
            raise RuntimeError("the first successor cannot start")
        return attempts[-1], os.getpid()

    async def close(browser: str, pid: int | None) -> None:
        pass

    async def scenario() -> list[str]:
        config = EngineConfig(recycle_after=1000, recycle_memory_mb=1)
        browsers = RecyclingBrowser(config, launch, close, lambda b: True, lambda b, g: None)
        used = []
        first = await browsers.acquire()
        first.checked_memory_at -= 5  # over 1 MB at the next read: a successor launches
        for _ in range(4):
            slot = await browsers.acquire()
            used.append(slot.browser)
            browsers.release(slot)
            await asyncio.sleep(0.01)
        browsers.release(first)
        await browsers.close()
        return used

    used = asyncio.run(scenario())
    # the first successor failed; the old browser went on serving and a second one launched
    assert attempts == ["browser-0", "browser-1", "browser-2"]
    assert used[0] == "browser-0" and used[-1] == "browser-2"
