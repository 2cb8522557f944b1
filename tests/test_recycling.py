"""RecyclingBrowser's bookkeeping without a browser (the engines' suites cover it with one)."""

from __future__ import annotations

import asyncio

from distshot.core.contracts import EngineConfig
from distshot.engines.recycling import RecyclingBrowser


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
