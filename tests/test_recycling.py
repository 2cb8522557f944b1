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
    # closed too (without it, it would stay open, held by a job long gone)
    assert in_flight == 0
    assert sorted(closed) == ["browser-0", "browser-1"]


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
