"""Browsers replaced when they have done enough, grown too big or died.

``Recycler`` is the policy every engine uses (``RecyclingBrowser`` and the selenium engine's
pool of drivers): a browser is retired after ``recycle_after`` jobs, when its process tree
passes ``recycle_memory_mb`` or after a crash, and the worker's metrics hear of every launch
and every retirement with its reason.

Engines that drive one browser for many concurrent jobs (playwright, pyppeteer) hand
``RecyclingBrowser`` two coroutines, launch and close, and take a ``BrowserSlot`` per job; a
retired browser closes once its last job is done, so recycling never cuts a job short.

A planned replacement costs the jobs nothing (make before break): the successor is launched
in the background while the old browser still serves. It starts a twentieth of ``recycle_after``
before a browser's last allowed job (the limit stays hard) or when its memory passes the limit
(memory is a soft bound, read once a second: the old browser takes jobs for the second or so
the launch needs). Launching inside a job's ``acquire`` held that job, and every job behind
the lock, for a whole browser start: under steady load, the slowest 1% of a service's answers
were exactly those (bench/serve.py, docs/benchmarks.md). Only a crash still makes a job wait
for a launch: there is no browser left to serve it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Generic, Protocol, TypeVar

from ..core import telemetry
from ..core.contracts import EngineConfig
from .chromium import process_tree_rss

B = TypeVar("B")
logger = logging.getLogger(__name__)

#: Reading a process tree's memory walks /proc; once a second is plenty for a trend.
_MEMORY_CHECK_INTERVAL = 1.0
#: A context that does not close within this is held by a wedged renderer: its browser is
#: retired. Short enough that a timed-out job's clean-up ends inside the capture service's
#: grace (5 s), so the engine, not the backstop, ends the job.
CONTEXT_CLOSE_TIMEOUT = 3.0


class Worn(Protocol):
    """What the policy reads and keeps of one browser."""

    #: Jobs the browser has taken.
    jobs: int
    #: When its memory was last read (``time.monotonic()``).
    checked_memory_at: float

    @property
    def pid(self) -> int | None:
        """The browser's process id, whose process tree's memory counts; None: unknown."""


class Recycler:
    """Why a browser must be replaced ("crash", "jobs", "memory", or None), and the
    telemetry of launches and retirements: the one policy of every engine that recycles."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.launches = 0  # observable for tests: recycling and crash recovery
        self.memory_recycles = 0

    def launched(self) -> None:
        """A browser (or a driver with its browser) was started."""
        self.launches += 1
        telemetry.emit(telemetry.BROWSER_LAUNCH)

    def worn_out(self, browser: Worn, *, crashed: bool) -> bool:
        """Whether ``browser`` must be retired now; a retirement is reported with its reason."""
        reason = self.reason(browser, crashed=crashed)
        if reason is not None:
            self.report(reason)
        return reason is not None

    def report(self, reason: str) -> None:
        """Tell the metrics a browser is being retired, and why."""
        telemetry.emit(telemetry.BROWSER_RECYCLE, reason=reason)

    def reason(self, browser: Worn, *, crashed: bool) -> str | None:
        """Why ``browser`` must be replaced (crash, jobs, memory), or None. The memory is
        read at most once a second per browser."""
        if crashed:
            return "crash"
        if browser.jobs >= self.config.recycle_after:
            return "jobs"
        limit = self.config.recycle_memory_mb
        now = time.monotonic()
        pid = browser.pid
        if limit and pid and now - browser.checked_memory_at >= _MEMORY_CHECK_INTERVAL:
            browser.checked_memory_at = now
            if process_tree_rss(pid) > limit * 1024 * 1024:
                self.memory_recycles += 1
                return "memory"
        return None


class BrowserSlot(Generic[B]):
    """One launched browser and the jobs using it."""

    def __init__(self, browser: B, pid: int | None) -> None:
        self.browser = browser
        self.pid = pid
        self.jobs = 0
        self.in_flight = 0
        self.retired = False
        #: Over its memory limit: still serving until its successor is up.
        self.retiring = False
        #: Set when the browser died, or is too wedged to trust (a context that would not
        #: close): no new job gets it, and it is closed when its last job ends.
        self.crashed = False
        self.checked_memory_at = time.monotonic()
        #: Resolved when the browser goes away, so in-flight jobs can stop waiting at once.
        self.gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def close_context(self, close: Callable[[], Awaitable[None]]) -> None:
        """Close one job's browser context with ``close()``. A renderer stuck in a JavaScript
        loop can make that hang: past ``CONTEXT_CLOSE_TIMEOUT`` the browser is retired (its
        other jobs finish first) rather than the worker waiting on it. Once the browser is
        gone there is nothing left to close."""
        if self.gone.done():
            return
        try:
            await asyncio.wait_for(close(), CONTEXT_CLOSE_TIMEOUT)
        except Exception:
            self.crashed = True

    def mark_crashed(self) -> None:
        """The browser is gone: fail its in-flight jobs now and never reuse it."""
        self.crashed = True
        if not self.gone.done():
            self.gone.set_result(None)


class RecyclingBrowser(Generic[B]):
    def __init__(
        self,
        config: EngineConfig,
        launch: Callable[[], Awaitable[tuple[B, int | None]]],
        close: Callable[[B, int | None], Coroutine[Any, Any, None]],
        connected: Callable[[B], bool],
        on_disconnect: Callable[[B, Callable[[], None]], None],
        warm: Callable[[BrowserSlot[B]], Awaitable[None]] | None = None,
    ) -> None:
        """``warm``, if given, readies a successor launched ahead before it takes jobs (the
        playwright engine opens its lanes there); a failure in it leaves the browser cold,
        not unusable."""
        self.config = config
        self._launch, self._close, self._connected = launch, close, connected
        self._warm = warm
        self._on_disconnect = on_disconnect
        self._slot: BrowserSlot[B] | None = None
        self._lock = asyncio.Lock()
        self._closing: set[asyncio.Task[None]] = set()
        #: The next browser, launching (or up) in the background while the current one
        #: still serves.
        self._successor: asyncio.Task[BrowserSlot[B]] | None = None
        self.recycler = Recycler(config)

    @property
    def launches(self) -> int:
        """Browsers started so far (observable for tests: recycling and crash recovery)."""
        return self.recycler.launches

    @property
    def memory_recycles(self) -> int:
        return self.recycler.memory_recycles

    @property
    def successor_starting(self) -> bool:
        """Whether a successor is still launching or opening its lanes (observable for
        tests: until it is up, jobs stay on the browser it replaces)."""
        return self._successor is not None and not self._successor.done()

    async def open(self) -> None:
        async with self._lock:
            if self._slot is None:
                self._slot = await self._start()

    async def _start(self) -> BrowserSlot[B]:
        browser, pid = await self._launch()
        self.recycler.launched()
        slot = BrowserSlot(browser, pid)
        self._on_disconnect(browser, slot.mark_crashed)
        return slot

    async def acquire(self) -> BrowserSlot[B]:
        async with self._lock:
            # A promoted successor is checked too: it may have died while it waited.
            slot = self._usable(self._promote(self._usable(self._slot)))
            if slot is None:
                if self._successor is not None:  # already launching: wait for that one
                    await asyncio.wait({self._successor})
                    slot = self._promote(None)
                if slot is None:
                    slot = await self._start()
            self._slot = slot
            slot.jobs += 1
            slot.in_flight += 1
            if slot.jobs >= self._launch_ahead_at():
                self._prepare_successor()
            return slot

    def _launch_ahead_at(self) -> int:
        """The job of a browser that launches its successor: a twentieth of
        ``recycle_after`` before the last (25 of the default 500, about 2.5 s at ten shots a
        second), so that a launch and its lanes (a second or so on a busy machine) are ready
        before the last job ends. Not much earlier: until then both browsers hold memory
        (some 400 MiB more for the service's tree, bench/serve.py)."""
        limit = self.config.recycle_after
        return limit - max(1, limit // 20)

    def _usable(self, slot: BrowserSlot[B] | None) -> BrowserSlot[B] | None:
        """``slot`` if it may take another job, retiring it otherwise. A browser over its
        memory limit stays usable until its successor is up (see the module's docstring)."""
        if slot is None or slot.retired:
            return None
        crashed = slot.crashed or not self._connected(slot.browser)
        if slot.retiring and not crashed and slot.jobs < self.config.recycle_after:
            # The memory was read: it goes as soon as its successor is up (launched again
            # here if the last launch failed).
            self._prepare_successor()
            return slot
        reason = self.recycler.reason(slot, crashed=crashed)
        if reason == "memory":
            slot.retiring = True
            self.recycler.report(reason)
            self._prepare_successor()
            return slot
        if reason is not None:
            if not slot.retiring:  # a memory retirement was reported already
                self.recycler.report(reason)
            self._retire(slot)
            return None
        return slot

    def _prepare_successor(self) -> None:
        if self._successor is None:
            self._successor = asyncio.get_running_loop().create_task(self._start_warm())

    async def _start_warm(self) -> BrowserSlot[B]:
        slot = await self._start()
        if self._warm is not None:
            with contextlib.suppress(Exception):
                await self._warm(slot)
        return slot

    def _promote(self, slot: BrowserSlot[B] | None) -> BrowserSlot[B] | None:
        """The successor, retiring ``slot``, if one is up and ``slot`` is going (over its
        memory) or gone; else ``slot``. A successor that failed to start is dropped then (the
        next need launches again, in the open)."""
        successor = self._successor
        if successor is None or not successor.done():
            return slot
        if slot is not None and not slot.retiring:
            return slot  # launched ahead of its last jobs: those stay on the current one
        self._successor = None
        if successor.cancelled() or successor.exception() is not None:
            return slot
        if slot is not None:
            self._retire(slot)
        return successor.result()

    def release(self, slot: BrowserSlot[B]) -> None:
        slot.in_flight -= 1
        if slot.retired and slot.in_flight == 0:
            self._close_later(slot)

    def _retire(self, slot: BrowserSlot[B]) -> None:
        if slot.retired:
            return
        slot.retired = True
        if slot.in_flight == 0:
            self._close_later(slot)

    def _close_later(self, slot: BrowserSlot[B]) -> None:
        self._track(asyncio.get_running_loop().create_task(self._close(slot.browser, slot.pid)))

    def _track(self, task: asyncio.Task[None]) -> asyncio.Task[None]:
        """Keep ``task`` among the clean-ups ``close`` waits for, until it ends."""
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
        return task

    async def finish_job(self, cleanup: Awaitable[None]) -> None:
        """Run a job's clean-up (closing or resetting its context, releasing its slot) to
        the end even when the job is cancelled: the capture service cancels a job that
        overran its timeout, and a clean-up cut short would hold its browser slot, and so
        its browser, for good. ``close`` waits for clean-ups still running."""
        await asyncio.shield(self.finish_job_soon(cleanup))

    def finish_job_soon(self, cleanup: Awaitable[None]) -> asyncio.Task[None]:
        """``finish_job`` without waiting for it: the clean-up runs on while the job's
        answer goes back. Its failure is logged (nobody awaits it); ``close`` waits for it."""
        task = self._track(asyncio.ensure_future(cleanup))
        task.add_done_callback(_log_failure)
        return task

    async def close(self) -> None:
        async with self._lock:
            slot, self._slot = self._slot, None
            successor, self._successor = self._successor, None
        if successor is not None:  # let its launch finish, then close it like the others
            await asyncio.wait({successor})
            if not successor.cancelled() and successor.exception() is None:
                spare = successor.result()
                spare.retired = True
                await self._close(spare.browser, spare.pid)
        if slot is not None:
            slot.retired = True
            await self._close(slot.browser, slot.pid)
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        logger.error("a job's clean-up failed: %s: %s", type(exc).__name__, exc)


async def race_with_crash(job: Awaitable[B], slot: BrowserSlot[Any], what: str) -> B:
    """Await ``job`` unless the browser dies first: a CDP call to a dead browser can wait
    forever, so every in-flight job stops as soon as the browser is gone."""
    from ..core.errors import BrowserCrashed

    task = asyncio.ensure_future(job)
    waiters: set[asyncio.Future[Any]] = {task, slot.gone}
    try:
        done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:  # cancelled by the service's backstop: stop the job too
        task.cancel()
        raise
    if task in done:
        return task.result()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    raise BrowserCrashed(f"the browser crashed or closed while capturing {what}")
