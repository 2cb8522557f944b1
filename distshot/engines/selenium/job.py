"""One job's navigation and capture on the selenium engine's page (run in the slot's thread).

The driver navigates (``driver.get``; chromedriver does not wait, see ``page_load_strategy``)
and the job waits on what the DevTools reader saw (``PageWatch``): the lifecycle events its
``wait_until`` needs, or the reason the navigation cannot succeed. Every wait is against the
job's deadline and its ``stop`` event, never on the renderer, so a page stuck in a script
cannot hold the thread.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ...core.errors import (
    BrowserCrashed,
    DistshotError,
    DownloadRefused,
    InvalidOption,
    NavigationTimeout,
    NetworkError,
)
from ...core.models import Capture, ShotRequest
from .. import lanes
from ..blocking import Blocker, after_load
from ..cdp_capture import BlockingSend, capture, prepare_page, run_steps_blocking
from ..chromium import ms_since, translate_error
from .devtools import PageWatch

if TYPE_CHECKING:
    from .driver import Driver

#: A navigation aborted without a download event may still see one arrive this late.
_ABORT_SETTLE = 0.5
_SELECTOR_POLL = 0.1

#: Page states each ``wait_until`` needs, as Chromium's lifecycle events name them;
#: ``networkIdle`` is Chromium's own: no request in flight for 500 ms.
_LIFECYCLE = {
    "domcontentloaded": frozenset({"DOMContentLoaded"}),
    "load": frozenset({"load"}),
    "networkidle": frozenset({"load", "networkIdle"}),
}

#: chromedriver's words for a browser or page that went away under it.
_DRIVER_GONE = (
    "chrome not reachable",
    "not connected to DevTools",
    "disconnected",
    "invalid session id",
    "session deleted",
    "tab crashed",
    "target frame detached",
    "target window already closed",
    "no such window",
    "Max retries exceeded",
    "Connection refused",
    "Connection aborted",
    "RemoteDisconnected",
)


@dataclass
class Job:
    """One capture handed to a slot's thread, with what it needs to know of the engine."""

    request: ShotRequest
    proxy: str  # the egress guard's URL, or DIRECT (see chromium.job_egress)
    deadline: float
    #: What a page fixes for its lifetime; a kept page serves only jobs with the same key.
    key: tuple[object, ...] = ()
    #: ``reuse_contexts``: whether a page may be kept for the next job at all.
    reuse_contexts: bool = False
    #: What the job left in its page (``lanes.py``), written by the DevTools reader.
    traces: lanes.JobTraces = field(default_factory=lanes.JobTraces)
    #: Set when the engine gave up on the job (cancelled, or past its grace): stop waiting.
    stop: threading.Event = field(default_factory=threading.Event)
    #: The capture, as soon as it is taken (before the page is reset for the next job).
    outcome: Capture | None = None
    #: What the blocking options refuse (None: nothing); the DevTools reader asks it.
    blocker: Blocker | None = None

    def left(self) -> float:
        return self.deadline - time.monotonic()


def shoot(slot: Driver, job: Job, watch: PageWatch) -> Capture:
    """Navigate the slot's page to the job's URL, wait as the job asks, and take its image."""
    from selenium.common.exceptions import TimeoutException

    assert slot.cdp is not None and slot.driver is not None
    driver, opts, url = slot.driver, job.request.options, job.request.url
    started = time.monotonic()
    driver.set_page_load_timeout(max(0.1, job.left()))
    try:
        driver.get(url)
    except TimeoutException:
        # chromedriver gave up waiting for the response: a failure we saw explains it.
        _raise_failure(slot, job, watch)
        raise timed_out(job) from None
    wait_until(slot, job, watch)
    if opts.wait_for:
        _wait_for_selector(slot, job, opts.wait_for)
    if opts.delay:
        job.stop.wait(max(0.0, min(opts.delay / 1000, job.left())))
        if job.stop.is_set():
            raise timed_out(job)
    assert watch.session_id is not None
    send = sender(slot, job, watch.session_id)
    run_steps_blocking(after_load(opts, job.blocker, job.deadline), send)
    run_steps_blocking(prepare_page(opts, job.deadline), send)
    navigate_ms = ms_since(started)
    shot_started = time.monotonic()
    # A pop-up may have taken the foreground before it was closed: a background page
    # draws no frames, so a screenshot of it would wait in vain.
    send("Page.bringToFront", {})
    shot = run_steps_blocking(capture(opts, job.deadline), send)
    capture_ms = ms_since(shot_started)
    title = slot.cdp.call(
        "Runtime.evaluate",
        {"expression": "document.title", "returnByValue": True},
        session=watch.session_id,
        timeout=job.left(),
    )
    with watch.cond:
        final_url, status = watch.url, watch.status.get(watch.loader or "")
    return Capture(
        image=shot.image,
        truncated=shot.truncated,
        format=opts.format,
        final_url=final_url or url,
        http_status=status,
        title=str(title.get("result", {}).get("value", "")),
        navigate_ms=navigate_ms,
        capture_ms=capture_ms,
        blocked=job.blocker.blocked if job.blocker is not None else None,
    )


def wait_until(slot: Driver, job: Job, watch: PageWatch) -> None:
    wanted = _LIFECYCLE[job.request.options.wait_until]

    def settled() -> bool:
        if _verdict(slot, job, watch) is not None:
            return True
        return watch.loader is not None and wanted <= watch.lifecycle.get(watch.loader, set())

    done = watch.wait(settled, job.deadline, job.stop)
    _raise_failure(slot, job, watch)
    if not done:
        raise timed_out(job)


def _raise_failure(slot: Driver, job: Job, watch: PageWatch) -> None:
    with watch.cond:
        error = _verdict(slot, job, watch)
    if error is not None:
        raise error


def _verdict(slot: Driver, job: Job, watch: PageWatch) -> DistshotError | None:
    """Why the navigation cannot succeed, if it cannot (call with ``watch.cond`` held)."""
    url = job.request.url
    if watch.crashed:
        return BrowserCrashed(f"the page's renderer crashed while capturing {url}")
    if watch.closed:
        if slot.cdp is None or slot.cdp.closed:
            slot.broken = True
        return BrowserCrashed(f"the browser closed the page while capturing {url}")
    committed = watch.loader is not None
    if watch.download and not committed:
        return DownloadRefused(f"{url} is a file download, not a page; downloads are refused")
    failure = watch.failure
    if watch.error_page or (failure is not None and "ERR_ABORTED" not in failure):
        return translate_error(f"{failure or 'navigation failed'} at {url}", url)
    if failure is not None and not committed and time.monotonic() - watch.failed_at > _ABORT_SETTLE:
        # Aborted and nothing else came (no download event either): e.g. a 204.
        return NetworkError(f"navigation to {url} was aborted ({failure})")
    return None


def _wait_for_selector(slot: Driver, job: Job, selector: str) -> None:
    from selenium.common.exceptions import (
        InvalidSelectorException,
        StaleElementReferenceException,
    )
    from selenium.webdriver.common.by import By

    assert slot.driver is not None
    while True:
        try:
            found = slot.driver.find_elements(By.CSS_SELECTOR, selector)
            if found and found[0].is_displayed():
                return
        except InvalidSelectorException:
            raise InvalidOption(f"wait_for is not a valid CSS selector: {selector!r}") from None
        except StaleElementReferenceException:
            pass
        if job.left() <= 0 or job.stop.is_set():
            raise timed_out(job)
        job.stop.wait(min(_SELECTOR_POLL, max(0.0, job.left())))


def sender(slot: Driver, job: Job, session: str) -> BlockingSend:
    """CDP calls to the job's page within the job's time (the capture steps' transport)."""
    cdp = slot.cdp
    assert cdp is not None

    def send(method: str, params: dict[str, Any]) -> dict[str, Any]:
        return cdp.call(method, params, session=session, timeout=max(0.01, job.left()))

    return send


def driver_error(slot: Driver, exc: Exception, job: Job) -> DistshotError:
    message = str(getattr(exc, "msg", None) or exc)
    url = job.request.url
    if slot.cdp is None or slot.cdp.closed or any(m in message for m in _DRIVER_GONE):
        slot.broken = True
        return BrowserCrashed(f"the browser crashed or closed while capturing {url}")
    if job.left() <= 0 or job.stop.is_set():
        return timed_out(job)
    return translate_error(message, url)


def timed_out(job: Job) -> NavigationTimeout:
    return NavigationTimeout.for_url(job.request.url, job.request.options.timeout)
