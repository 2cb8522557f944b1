"""The selenium engine on the event loop: a bounded pool of driver slots.

``config.concurrency`` slots, each one chromedriver and the one Chromium it started
(``driver.py``) with its kept page (``pages.py``); ``open`` starts them all, replacements
start on demand. A job takes an idle slot and runs in the slot's thread against its deadline.
Should a driver call not return (chromedriver waiting on a hung renderer), or the job be
cancelled from outside, the slot is killed, whole process group, and replaced: no thread stays
busy and no process outlives the job's slot. A slot is replaced too when the recycling policy
says so (``recycling.Recycler``: after ``recycle_after`` jobs, past ``recycle_memory_mb``,
after a crash).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import Counter
from concurrent.futures import Future
from typing import Any

from ...core.contracts import Capabilities, Engine, EngineConfig
from ...core.egress import EgressGuard
from ...core.errors import BrowserCrashed, DistshotError, InvalidOption
from ...core.models import Capture, ShotRequest
from .. import lanes
from ..blocking import BLOCKING_OPTIONS, Blocker
from ..cdp_capture import IDENTITY_PAGE_OPTIONS, STEP_FORMATS
from ..chromium import DIRECT, egress_key, job_guard
from ..reaper import Reaper
from ..recycling import Recycler
from .driver import QUIT_TIMEOUT, Driver
from .job import Job, timed_out
from .pages import Pages

CAPABILITIES = Capabilities(
    options=IDENTITY_PAGE_OPTIONS | {"http_credentials"} | BLOCKING_OPTIONS,
    formats=STEP_FORMATS,
    description="Chromium through Selenium WebDriver (chromedriver) and CDP",
)

#: Time a job's thread gets past the job's deadline to clean up (close its context) before
#: the slot is killed; well inside the capture service's own 5 s backstop.
_THREAD_GRACE = 2.5
#: chromedriver plus Chromium normally start in 1-2 s; this bounds a start that hangs.
_START_TIMEOUT = 60.0
_START_ATTEMPTS = 2


class _Slot(Driver):
    """A driver of the pool: its kept page, and what the pool keeps of it."""

    def __init__(self, number: int, reaper: Reaper) -> None:
        super().__init__(number, reaper)
        self.pages = Pages(self)
        #: Egress guards, one per ``egress_key`` (address policy and pins), each the proxy
        #: of the contexts made for it (a kept page serves only jobs with the same key).
        self.guards: dict[tuple[object, ...], tuple[EgressGuard, str]] = {}
        self.jobs = 0
        self.busy = False
        self.checked_memory_at = time.monotonic()
        self.teardown: asyncio.Task[None] | None = None


class SeleniumEngine(Engine):
    name = "selenium"
    capabilities = CAPABILITIES

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self._size = max(1, config.concurrency)
        self._permits: asyncio.Semaphore | None = None
        self._idle: list[_Slot] = []
        self._slots: set[_Slot] = set()  # every slot whose processes may be alive
        self._background: set[asyncio.Task[None]] = set()
        self._numbers = itertools.count(1)
        self._closed = False
        self._reaper = Reaper()
        self._recycler = Recycler(config)
        self._lanes_of_stopped_slots = 0
        self._discards_of_stopped_slots: Counter[str] = Counter()

    @property
    def launches(self) -> int:
        """Drivers started so far (observable for tests: recycling and crash recovery)."""
        return self._recycler.launches

    @property
    def memory_recycles(self) -> int:
        return self._recycler.memory_recycles

    @property
    def lanes_opened(self) -> int:
        """Browser contexts made so far (observable for tests: reuse between clean jobs)."""
        return self._lanes_of_stopped_slots + sum(s.pages.lanes_opened for s in self._slots)

    @property
    def lanes_discarded(self) -> Counter[str]:
        """Why pages were thrown away at the end of a job, by reason (observable for tests)."""
        return sum((s.pages.lanes_discarded for s in self._slots), self._discards_of_stopped_slots)

    @property
    def _gate(self) -> asyncio.Semaphore:
        if self._permits is None:
            self._permits = asyncio.Semaphore(self._size)
        return self._permits

    async def open(self) -> None:
        """Start the whole pool, all at once: a launch inside ``capture`` counts against the
        service's backstop (timeout + 5 s), and several launches at once on a busy machine
        take longer than that. Replacements (recycling, crashes) start on demand."""
        missing = self._size - len(self._slots)
        if self._slots or missing <= 0:
            return
        started = await asyncio.gather(
            *(self._start_slot() for _ in range(missing)), return_exceptions=True
        )
        slots = [s for s in started if isinstance(s, _Slot)]
        errors = [e for e in started if not isinstance(e, _Slot)]
        if errors:
            # The caller will not close an engine whose open() failed: stop what started.
            await asyncio.gather(*(self._shutdown(s, polite=True) for s in slots))
            raise errors[0]
        self._idle.extend(slots)

    async def _start_slot(self) -> _Slot:
        """Start a driver; a failed start is tried once more (Selenium picks chromedriver's
        port by binding and releasing it, and on a busy machine another process can take it
        in between)."""
        for attempt in range(_START_ATTEMPTS):
            try:
                return await self._start_slot_once()
            except BrowserCrashed:
                if attempt == _START_ATTEMPTS - 1 or self._closed:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def _start_slot_once(self) -> _Slot:
        slot = _Slot(next(self._numbers), self._reaper)
        loop = asyncio.get_running_loop()
        self._slots.add(slot)

        def lost() -> None:  # from the DevTools reader thread: the browser went away
            slot.broken = True
            with contextlib.suppress(RuntimeError):  # the loop may be closed already
                loop.call_soon_threadsafe(self._on_lost, slot)

        slot.lost = lost
        starting = loop.run_in_executor(slot.executor, slot.start, self.config)
        try:
            await asyncio.wait_for(asyncio.shield(starting), _START_TIMEOUT)
        except asyncio.CancelledError:
            # The start goes on in its thread: whatever it makes must still be stopped.
            self._spawn(self._discard_start(slot, starting))
            raise
        except Exception as exc:
            self._spawn(self._discard_start(slot, starting))
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise BrowserCrashed(
                f"cannot start chromedriver {self.config.driver_path} with Chromium "
                f"{self.config.browser_path}: {first}"
            ) from None
        self._recycler.launched()
        return slot

    async def _discard_start(self, slot: _Slot, starting: asyncio.Future[None]) -> None:
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(asyncio.shield(starting), _START_TIMEOUT)
        await self._shutdown(slot, polite=False)

    def _on_lost(self, slot: _Slot) -> None:
        """The browser died: kill chromedriver too, so that a driver call waiting on the dead
        browser returns at once and the job fails as a crash now, not at its deadline."""
        slot.broken = True
        slot.kill()
        if slot in self._idle:  # nobody is using it: clean up now
            self._idle.remove(slot)
            self._spawn(self._shutdown(slot, polite=False))
        # A busy slot's job fails (its calls do) and hands the slot back broken.

    async def _take_slot(self) -> _Slot:
        """An idle, healthy slot, or a new one (the caller holds a permit, so slots in use
        never outnumber ``concurrency``)."""
        while self._idle:
            slot = self._idle.pop()
            crashed = slot.broken or (slot.cdp is not None and slot.cdp.closed)
            if not self._recycler.worn_out(slot, crashed=crashed):
                return slot
            self._spawn(self._shutdown(slot, polite=not slot.broken))
        return await self._start_slot()

    async def capture(self, request: ShotRequest) -> Capture:
        if self._closed:
            raise BrowserCrashed("the selenium engine is closed")
        async with self._gate:
            if self._closed:  # closed while this job waited for a slot
                raise BrowserCrashed("the selenium engine is closed")
            slot = await self._take_slot()
            # The job's time starts once it has a browser, as with the other engines (a
            # launch is not the page's fault); the service's backstop still bounds it all.
            deadline = time.monotonic() + request.options.timeout
            slot.jobs += 1
            slot.busy = True
            job: Job | None = None
            guard: EgressGuard | None = None
            try:
                guard, proxy = await self._guard(slot, request)
                job = Job(
                    request,
                    proxy,
                    deadline,
                    # Size, scale and headers are set per job.
                    key=lanes.lane_key(request),
                    reuse_contexts=self.config.reuse_contexts,
                    traces=lanes.JobTraces.start(request.url, request.options),
                    blocker=Blocker.for_job(
                        request.options,
                        request.url,
                        self.config.ad_filters,
                        self.config.tracker_filters,
                    ),
                )
                try:
                    return await self._run(slot, job)
                except DistshotError as exc:
                    # A navigation that failed because the guard refused a connection is
                    # explained by the refusal (it may look like a timeout or a proxy error).
                    refusal = guard.refusal_error() if guard else None
                    if refusal is not None and not isinstance(exc, InvalidOption):
                        raise refusal from None
                    raise
            finally:
                slot.busy = False
                if job is not None:
                    job.stop.set()
                self._give_back(slot)

    async def _guard(self, slot: _Slot, request: ShotRequest) -> tuple[EgressGuard | None, str]:
        """The slot's egress guard for the request's address policy, pins and proxy (None and a
        direct connection when it needs none: ``job_guard``), started on first use, with
        the refusals of earlier jobs forgotten."""
        key = egress_key(request)
        if key not in slot.guards:
            guard = job_guard(request, self.config.proxy)
            if guard is None:
                return None, DIRECT
            slot.guards[key] = (guard, await guard.start())
        guard, proxy = slot.guards[key]
        guard.forget()
        return guard, proxy

    async def _run(self, slot: _Slot, job: Job) -> Capture:
        """Run the job in the slot's thread; kill the slot if the thread overstays."""
        running: Future[Capture] = slot.executor.submit(slot.pages.run, job)
        result = asyncio.wrap_future(running)
        try:
            done, _ = await asyncio.wait([result], timeout=max(0.0, job.left()) + _THREAD_GRACE)
        except asyncio.CancelledError:
            self._abandon(slot, job, running)
            result.add_done_callback(_swallow)
            raise
        if not done:
            self._abandon(slot, job, running)
            result.add_done_callback(_swallow)  # its outcome no longer matters
            if job.outcome is not None:  # stuck resetting the page after a good capture
                return job.outcome
            raise timed_out(job)
        return result.result()

    def _abandon(self, slot: _Slot, job: Job, running: Future[Capture]) -> None:
        """The job's thread may be stuck in a driver call: kill the slot's processes now
        (that ends the call), and finish the clean-up in the background."""
        job.stop.set()
        if running.done():
            return
        slot.broken = True
        slot.kill()

    def _give_back(self, slot: _Slot) -> None:
        if slot.broken or self._closed or (slot.cdp is not None and slot.cdp.closed):
            self._spawn(self._shutdown(slot, polite=False))
        else:
            self._idle.append(slot)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _shutdown(self, slot: _Slot, *, polite: bool) -> None:
        """Stop a slot for good (once, however many callers ask)."""
        if slot.teardown is None:
            slot.teardown = asyncio.get_running_loop().create_task(self._stop(slot, polite))
        await asyncio.shield(slot.teardown)

    async def _stop(self, slot: _Slot, polite: bool) -> None:
        loop = asyncio.get_running_loop()
        try:
            if polite and not slot.busy:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(
                        loop.run_in_executor(slot.executor, slot.quit), QUIT_TIMEOUT
                    )
            slot.kill()
            await asyncio.to_thread(slot.reap)
        finally:
            guards, slot.guards = list(slot.guards.values()), {}
            for guard, _ in guards:
                await guard.close()
            slot.executor.shutdown(wait=False, cancel_futures=True)
            if slot in self._slots:
                self._slots.discard(slot)
                self._lanes_of_stopped_slots += slot.pages.lanes_opened
                self._discards_of_stopped_slots += slot.pages.lanes_discarded

    async def close(self) -> None:
        self._closed = True
        slots, self._idle = list(self._slots), []
        await asyncio.gather(
            *(self._shutdown(slot, polite=not slot.busy) for slot in slots),
            return_exceptions=True,
        )
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)
        # Anything a background task started meanwhile (a start cancelled mid-way).
        for slot in list(self._slots):
            await self._shutdown(slot, polite=False)
        await asyncio.to_thread(self._reaper.close)


def _swallow(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
