"""The selenium engine's kept page: a browser context and its one page, on one driver, that
serves job after job (run in the slot's thread).

A job runs in a browser context of its own (cookies, storage, cache, permissions, HTTP auth)
whose proxy is the slot's egress guard for the job's address policy, with downloads denied,
and in that context's one page: chromedriver's window handles are target ids, so the driver
switches to the page and navigates it. After a job the page is reset (blank page, history,
cookies, storage of every origin it touched, permissions, ``window.name``) and kept for the
next job with the same user agent and address policy, as the playwright engine keeps its
lanes: a new context and page cost about 0.35 s, a reset 0.06 s. Whether it may be kept is
``lanes.why_not_reuse``'s to say, from what the DevTools reader saw the job do.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from ...core.errors import BrowserCrashed, DistshotError, NetworkError
from ...core.models import Capture
from .. import lanes
from ..cdp_capture import (
    FETCH_AUTH,
    FRESH,
    NO_VIEWPORT,
    Emulated,
    Viewport,
    emulate_device,
    emulate_media,
    granted_permissions,
    identity,
    run_steps_blocking,
)
from ..chromium import context_proxy
from .devtools import CdpClosed, CdpError, PageWatch
from .driver import Driver
from .job import Job, driver_error, sender, shoot, timed_out

logger = logging.getLogger("distshot.engines.selenium")

#: Bounds for DevTools calls that are not part of a job's own time budget.
_CLEANUP_CALL_TIMEOUT = 3.0

#: Nothing may wait for a human: dialogs answer at once (as a dismissal would), before any
#: page script runs. Dialogs that slip through (beforeunload) are dismissed over CDP.
_NO_DIALOGS = """(() => {
  const w = window;
  w.alert = function alert() {};
  w.confirm = function confirm() { return false; };
  w.prompt = function prompt() { return null; };
  w.print = function print() {};
})();"""


@dataclass
class KeptPage:
    """A browser context and its one page, kept between clean jobs."""

    key: tuple[object, ...]
    context_id: str
    target_id: str = ""
    session_id: str = ""
    jobs: int = 0
    # What the last job left, so that an unchanged setting costs no call:
    viewport: Viewport = NO_VIEWPORT
    emulated: Emulated = FRESH
    headers: tuple[tuple[str, str], ...] = ()


class Pages:
    """The driver's kept page, and jobs run on it (only the slot's thread touches it)."""

    def __init__(self, slot: Driver) -> None:
        self.slot = slot
        self.page: KeptPage | None = None
        self.lanes_opened = 0
        self.lanes_discarded: Counter[str] = Counter()  # at the end of a job, by reason

    def run(self, job: Job) -> Capture:
        """Capture ``job`` on the slot's clean page or a new one; raises DistshotError only.

        After a clean job the page is reset and kept for the next job with the same settings
        (``reuse_contexts``); any other outcome disposes of its context."""
        assert self.slot.cdp is not None and self.slot.driver is not None
        try:
            watch: PageWatch | None = None
            try:
                page = self._page_for(job)
                watch = self._start_job(job, page)
                capture = shoot(self.slot, job, watch)
            except BaseException:
                job.traces.failed = True
                self._finish(job, watch)
                raise
            job.outcome = capture  # the capture stands, whatever the clean-up below does
            self._finish(job, watch)
            return capture
        except DistshotError:
            raise
        except CdpClosed:
            self.slot.broken = True
            raise BrowserCrashed(
                f"the browser crashed or closed while capturing {job.request.url}"
            ) from None
        except (CdpError, TimeoutError) as exc:
            if job.left() <= 0 or job.stop.is_set():
                raise timed_out(job) from None
            raise NetworkError(f"{job.request.url}: {exc}") from None
        except Exception as exc:
            raise driver_error(self.slot, exc, job) from None

    # pages: a browser context and its one page

    def _page_for(self, job: Job) -> KeptPage:
        page = self.page
        if page is not None and page.key == job.key:
            return page
        self._discard_page()
        page = self.page = self._new_page(job)
        return page

    def _new_page(self, job: Job) -> KeptPage:
        assert self.slot.cdp is not None and self.slot.driver is not None
        cdp, opts = self.slot.cdp, job.request.options
        params: dict[str, Any] = {"disposeOnDetach": True, **context_proxy(job.proxy)}
        context_id = cdp.call("Target.createBrowserContext", params, timeout=job.left())[
            "browserContextId"
        ]
        cdp.expect_context(context_id)
        page = KeptPage(job.key, context_id)
        self.page = page  # from here on, _discard_page() disposes of the context
        self.lanes_opened += 1
        cdp.call(
            "Browser.setDownloadBehavior",
            {"behavior": "deny", "browserContextId": context_id, "eventsEnabled": True},
            timeout=job.left(),
        )
        page.target_id = cdp.call(
            "Target.createTarget",
            {"url": "about:blank", "browserContextId": context_id},
            timeout=job.left(),
        )["targetId"]
        page.session_id = session = cdp.call(
            "Target.attachToTarget",
            {"targetId": page.target_id, "flatten": True},
            timeout=job.left(),
        )["sessionId"]
        setup: list[tuple[str, dict[str, Any]]] = [
            ("Page.enable", {}),
            ("Page.setLifecycleEventsEnabled", {"enabled": True}),
            ("Network.enable", {}),
            ("Page.addScriptToEvaluateOnNewDocument", {"source": _NO_DIALOGS}),
            # As Playwright does: the page believes it has focus, whatever else is open.
            ("Emulation.setFocusEmulationEnabled", {"enabled": True}),
            # Cross-site frames run in their own processes: being told of them is how a
            # page that had one (its storage is partitioned elsewhere) is not reused.
            (
                "Target.setAutoAttach",
                # A blocking page holds each new frame until its interception is on
                # (devtools.py: _hold_frame); the key keeps a page's blocking fixed.
                {
                    "autoAttach": True,
                    "waitForDebuggerOnStart": opts.blocks_requests,
                    "flatten": True,
                },
            ),
        ]
        if opts.user_agent:
            setup.append(("Network.setUserAgentOverride", {"userAgent": opts.user_agent}))
        pending = [cdp.begin(method, args, session=session) for method, args in setup]
        # launch_args hide scrollbars too; this makes sure of it, where supported.
        optional = cdp.begin("Emulation.setScrollbarsHidden", {"hidden": True}, session=session)
        # chromedriver attaches to the new page meanwhile (its window handle is the target id).
        self.slot.driver.switch_to.window(page.target_id)
        for call in pending:
            call.result(job.left())
        with contextlib.suppress(CdpError, TimeoutError):
            optional.result(min(job.left(), _CLEANUP_CALL_TIMEOUT))
        return page

    def _start_job(self, job: Job, page: KeptPage) -> PageWatch:
        """The job's own settings on the page, and a fresh record of what it does."""
        assert self.slot.cdp is not None
        opts = job.request.options
        watch = PageWatch(page.target_id, job.traces, job.blocker)
        if opts.http_credentials:
            watch.auth = opts  # before Fetch pauses a request: the reader answers it
        self.slot.cdp.watch(watch, page.session_id)
        page.jobs += 1
        send = sender(self.slot, job, page.session_id)
        if job.blocker is not None:
            # (one Fetch interception a session: with credentials it answers challenges too)
            start = job.blocker.start(
                first_on_page=page.jobs == 1,
                attach_frames=False,
                handle_auth=bool(opts.http_credentials),
            )
            run_steps_blocking(start, send)
        page.viewport = run_steps_blocking(emulate_device(opts, page.viewport), send)
        page.emulated = run_steps_blocking(emulate_media(opts, page.emulated), send)
        if opts.headers != page.headers:
            send("Network.setExtraHTTPHeaders", {"headers": dict(opts.headers)})
            page.headers = opts.headers
        # The overrides stay on the page: its key holds locale, geolocation and JavaScript,
        # and a page given cookies or a storage state is not kept (lanes.holds_identity).
        run_steps_blocking(identity(opts), send)
        if opts.http_credentials and job.blocker is None:  # (not kept: holds_identity)
            send("Fetch.enable", FETCH_AUTH)
        permissions = granted_permissions(opts)
        if permissions:  # taken back by the reset (Browser.resetPermissions)
            self.slot.cdp.call(
                "Browser.grantPermissions",
                {"permissions": permissions, "browserContextId": page.context_id},
                timeout=job.left(),
            )
        return watch

    def _finish(self, job: Job, watch: PageWatch | None) -> None:
        """Reset the page for the next job, or dispose of it if it cannot be trusted clean
        (``lanes.why_not_reuse``). Never raises: a failed job's own error stands, and a good
        job's capture is taken already."""
        page = self.page
        if page is None or watch is None:  # it failed before its page was ready
            if page is not None:
                self.lanes_discarded[lanes.FAILED] += 1
            self._discard_page()
            return
        try:
            reason = self._why_not_reuse(job, page, watch)
            if reason is None:
                if self._reset(page, watch):
                    return
                reason = lanes.RESET_FAILED
        except (CdpError, TimeoutError) as exc:  # would not reset: not worth keeping
            logger.info("discarding a page that would not reset: %s", exc)
            reason = lanes.RESET_FAILED
        except Exception:
            # A bug of ours: logged, and the page thrown away, which is always safe. The
            # job's capture is already taken, so it must not fail (nor be retried) for it.
            logger.exception("resetting a page failed; discarding it")
            reason = lanes.RESET_FAILED
        self.lanes_discarded[reason] += 1
        self._discard_page()

    def _why_not_reuse(self, job: Job, page: KeptPage, watch: PageWatch) -> str | None:
        assert self.slot.cdp is not None

        def verdict() -> str | None:
            with watch.cond:
                return lanes.why_not_reuse(
                    job.traces, jobs=page.jobs, reuse_contexts=job.reuse_contexts
                )

        if (reason := verdict()) is not None:
            return reason
        answer = self.slot.cdp.call(
            "Runtime.evaluate",
            {
                "expression": f"({lanes.PERMISSIONS_UNTOUCHED})()",
                "awaitPromise": True,
                "returnByValue": True,
            },
            session=watch.session_id,
            timeout=_CLEANUP_CALL_TIMEOUT,
        )
        with watch.cond:
            job.traces.permissions_touched = answer.get("result", {}).get("value") is not True
        return verdict()

    def _reset(self, page: KeptPage, watch: PageWatch) -> bool:
        assert self.slot.cdp is not None
        cdp, session = self.slot.cdp, page.session_id
        # Unload the page first, so that none of its timers can write anything again; the
        # blank page may live in another process: wait until the page is back on it.
        with watch.cond:
            watch.blank = False
        cdp.call(
            "Page.navigate", {"url": "about:blank"}, session=session, timeout=_CLEANUP_CALL_TIMEOUT
        )
        if not watch.wait(
            lambda: watch.blank, time.monotonic() + _CLEANUP_CALL_TIMEOUT, threading.Event()
        ):
            return False
        with watch.cond:
            origins = sorted(watch.traces.origins)
        calls = [
            cdp.begin(
                "Storage.clearDataForOrigin",
                {"origin": origin, "storageTypes": lanes.LANE_STORAGE_TYPES},
                session=session,
            )
            for origin in origins
        ]
        calls += [
            cdp.begin("Storage.clearCookies", {"browserContextId": page.context_id}),
            cdp.begin("Browser.resetPermissions", {"browserContextId": page.context_id}),
            cdp.begin("Runtime.evaluate", {"expression": "window.name = ''"}, session=session),
        ]
        for call in calls:
            call.result(_CLEANUP_CALL_TIMEOUT)
        # Back and forward must not lead to the last job's pages. Right after a change of
        # renderer the browser side of the session may not have caught up: try again.
        for _ in range(20):
            try:
                cdp.call(
                    "Page.resetNavigationHistory", session=session, timeout=_CLEANUP_CALL_TIMEOUT
                )
                return True
            except CdpClosed:
                return False
            except CdpError:
                time.sleep(0.05)
        return False

    def _discard_page(self) -> None:
        """Dispose of the page's context (and with it any pop-up it opened)."""
        page, self.page = self.page, None
        cdp = self.slot.cdp
        if page is None or cdp is None or cdp.closed:
            return
        cdp.forget(page.target_id, page.session_id, page.context_id)
        try:
            cdp.call(
                "Target.disposeBrowserContext",
                {"browserContextId": page.context_id},
                timeout=_CLEANUP_CALL_TIMEOUT,
            )
        except (CdpError, TimeoutError):
            # A context that will not go away is state the next job must not inherit.
            self.slot.broken = True
