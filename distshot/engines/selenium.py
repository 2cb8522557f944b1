"""The ``selenium`` engine: Selenium WebDriver and chromedriver driving Debian's Chromium.

A bounded pool of driver slots (``config.concurrency``), each one chromedriver and the one
Chromium it started; ``open`` starts them all, replacements start on demand. Selenium's
API blocks, so every slot has its own thread and every call to its driver runs there, never
on the event loop. chromedriver is always started from ``config.driver_path`` and Chromium
from ``config.browser_path``, so Selenium Manager never runs (it would try to download both).

What WebDriver has no command for goes through one more DevTools connection per slot, to the
browser itself (``selenium_devtools.py``; chromedriver's ``execute_cdp_cmd`` speaks to a
page, and a page may not create browser contexts). A job runs in a browser context of its
own (cookies, storage, cache, permissions, HTTP auth) whose proxy is the slot's egress guard
for the job's address policy, with downloads denied, and in that context's one page:
chromedriver's window handles are target ids, so the driver switches to the page and
navigates it. The same connection watches the page: lifecycle events (``load``,
``DOMContentLoaded``, Chromium's own ``networkIdle``), the document's status, failed
navigations, downloads, dialogs (dismissed) and pop-ups (closed). Screenshots are CDP's
``Page.captureScreenshot``, full pages with ``captureBeyondViewport``, the viewport set by
``Emulation.setDeviceMetricsOverride`` with scrollbars hidden, so images match the other
engines' pixel for pixel.

After a clean job the page is reset (blank page, history, cookies, storage of every origin
it touched, permissions, ``window.name``) and kept for the slot's next job with the same user
agent and address policy, as the playwright engine keeps its lanes: a new context and page
cost about 0.35 s, a reset 0.06 s. Whether a page may be kept is decided by the rules both
engines share (``lanes.py``); ``reuse_contexts = false`` gives every job a new one.

Time: each job runs against its deadline in its slot's thread, and a page stuck in a
JavaScript loop cannot hold it, since waits are on DevTools events, not on the renderer.
Should a driver call still not return (chromedriver waiting on a hung renderer), or the job
be cancelled from outside, the slot is killed, whole process group, and replaced: no thread
stays busy and no process outlives the job's slot. A slot is replaced too after
``recycle_after`` jobs, when its browser's memory passes ``recycle_memory_mb``, and after a
crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.contracts import Capabilities, Engine, EngineConfig
from ..core.egress import EgressGuard
from ..core.errors import (
    BrowserCrashed,
    ConfigError,
    DistshotError,
    DownloadRefused,
    InvalidOption,
    NavigationTimeout,
    NetworkError,
)
from ..core.models import Capture, ShotRequest
from ..plugins.hookspecs import hookimpl
from . import lanes
from .cdp_capture import (
    FRESH,
    NO_VIEWPORT,
    STEP_FORMATS,
    STEP_OPTIONS,
    BlockingSend,
    Emulated,
    Viewport,
    capture,
    emulate_device,
    emulate_media,
    prepare_page,
    run_steps_blocking,
)
from .chromium import (
    DIRECT,
    context_proxy,
    kill_process_tree,
    launch_args,
    ms_since,
    translate_error,
)
from .reaper import Reaper, start_time
from .recycling import Recycler
from .selenium_devtools import Cdp, CdpClosed, CdpError, PageWatch

logger = logging.getLogger("distshot.engines.selenium")

if TYPE_CHECKING:
    from selenium.webdriver.chrome.webdriver import WebDriver

CAPABILITIES = Capabilities(
    options=STEP_OPTIONS
    | {
        "width",
        "height",
        "scale",
        "device",
        "wait_until",
        "wait_for",
        "delay",
        "user_agent",
        "headers",
    },
    formats=STEP_FORMATS,
    description="Chromium through Selenium WebDriver (chromedriver) and CDP",
)

#: Time a job's thread gets past the job's deadline to clean up (close its context) before
#: the slot is killed; well inside the capture service's own 5 s backstop.
_THREAD_GRACE = 2.5
#: A polite driver quit may take this long before the slot's processes are killed.
_QUIT_TIMEOUT = 5.0
#: chromedriver plus Chromium normally start in 1-2 s; this bounds a start that hangs.
_START_TIMEOUT = 60.0
_START_ATTEMPTS = 2
#: Bounds for DevTools calls that are not part of a job's own time budget.
_CLEANUP_CALL_TIMEOUT = 3.0
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

#: Nothing may wait for a human: dialogs answer at once (as a dismissal would), before any
#: page script runs. Dialogs that slip through (beforeunload) are dismissed over CDP.
_NO_DIALOGS = """(() => {
  const w = window;
  w.alert = function alert() {};
  w.confirm = function confirm() { return false; };
  w.prompt = function prompt() { return null; };
  w.print = function print() {};
})();"""

#: Playwright and pyppeteer pass these too: a page that lost the foreground to a pop-up
#: (or any page, on a loaded machine) must not be throttled into missing its deadline.
_FOREGROUND_ARGS = (
    "--disable-background-timer-throttling",
    "--disable-backgrounding-occluded-windows",
    "--disable-renderer-backgrounding",
)

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
class _Job:
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

    def left(self) -> float:
        return self.deadline - time.monotonic()


@dataclass
class _Page:
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


class _Slot:
    """One chromedriver, the Chromium it started, and the thread that talks to them."""

    def __init__(self, number: int, reaper: Reaper) -> None:
        self.number = number
        self.reaper = reaper  # kills chromedriver and Chromium should the worker die
        self.executor = ThreadPoolExecutor(1, thread_name_prefix=f"distshot-selenium-{number}")
        self.driver: WebDriver | None = None
        self.service: Any = None  # selenium's Service: it holds chromedriver's process
        self.browser_pid: int | None = None
        self.browser_started: str | None = None  # /proc start time, against pid reuse
        self.tmp: str | None = None
        self.cdp: Cdp | None = None
        self.page: _Page | None = None  # the kept page (only the slot's thread touches it)
        self.lanes_opened = 0
        self.lanes_discarded: Counter[str] = Counter()  # at the end of a job, by reason
        #: Egress guards, one per address policy, each the proxy of the contexts made for
        #: that policy (a kept page serves only jobs with the same policy).
        self.guards: dict[tuple[object, ...], tuple[EgressGuard, str]] = {}
        self.jobs = 0
        self.busy = False
        self.broken = False  # do not reuse: a crash, or state we cannot vouch for
        self.checked_memory_at = time.monotonic()
        self.lost: Callable[[], None] = lambda: None
        self.teardown: asyncio.Task[None] | None = None

    # start and stop

    def start(self, config: EngineConfig) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        options = webdriver.ChromeOptions()
        options.binary_location = config.browser_path
        for arg in launch_args(config.extra_args):
            options.add_argument(arg)
        options.add_argument("--headless=new")
        for arg in _FOREGROUND_ARGS:
            options.add_argument(arg)
        # chromedriver turns Chromium's pop-up blocker off; the other engines leave it on.
        options.add_experimental_option("excludeSwitches", ["disable-popup-blocking"])
        # We wait for DevTools lifecycle events ourselves, with the job's deadline.
        options.page_load_strategy = "none"
        options.set_capability("unhandledPromptBehavior", "dismiss")
        # chromedriver and Chromium keep their temporary folders (profile, singleton socket,
        # chromedriver's own) in one folder of ours, removed whole however the slot ends.
        self.tmp = tempfile.mkdtemp(prefix="distshot-selenium-")
        service = Service(
            executable_path=config.driver_path,
            log_output=subprocess.DEVNULL,
            env={**os.environ, "TMPDIR": self.tmp},
            # Its own process group: one killpg() reaches chromedriver and every Chromium
            # process, even those whose parent already died; and a terminal's Ctrl-C goes to
            # the worker, which closes the engine, not straight to the browsers.
            popen_kw={"start_new_session": True},
        )
        self.service = service
        driver = webdriver.Chrome(service=service, options=options)
        self.driver = driver
        if self.process is not None:
            self.reaper.watch(self.process.pid)
        caps = driver.capabilities
        pid = caps.get("goog:processID")
        self.browser_pid = int(pid) if pid else None
        if self.browser_pid is not None:
            self.browser_started = start_time(self.browser_pid)
            # Watched on its own too: should chromedriver die first, Chromium leaves its tree.
            self.reaper.watch(self.browser_pid)
        address = caps["goog:chromeOptions"]["debuggerAddress"]
        self.cdp = Cdp(address, lambda: self.lost())
        self.cdp.call("Target.setDiscoverTargets", {"discover": True}, timeout=10)

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        """chromedriver's process, once started."""
        return getattr(self.service, "process", None)

    def quit(self) -> None:
        """Politely: Chromium closes (and removes its own temporary files), then chromedriver,
        which has nothing left to drive, is stopped."""
        cdp = self.cdp
        if cdp is not None and not cdp.closed:
            cdp.expect_close()  # the connection dropping now is no crash
            with contextlib.suppress(Exception):
                cdp.call("Browser.close", timeout=_QUIT_TIMEOUT)
            deadline = time.monotonic() + _QUIT_TIMEOUT
            while self._browser_alive() and time.monotonic() < deadline:
                time.sleep(0.05)
        if cdp is not None:
            cdp.close()
        process = self.process
        if process is not None and process.poll() is None:
            process.terminate()

    def _browser_alive(self) -> bool:
        pid = self.browser_pid
        if pid is None or start_time(pid) != self.browser_started:
            return False
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return False
        return state != "Z"

    def kill(self) -> None:
        """SIGKILL chromedriver and every Chromium process (safe to call from any thread)."""
        if self.cdp is not None:
            self.cdp.close()
        process = self.process
        if process is not None and process.returncode is None:
            # Not reaped yet, so its pid (and group id) cannot have been reused.
            with contextlib.suppress(OSError):
                if os.getpgid(process.pid) == process.pid:  # it leads its own group
                    os.killpg(process.pid, signal.SIGKILL)
            kill_process_tree(process.pid)
        pid = self.browser_pid
        if pid is not None and start_time(pid) == self.browser_started:
            kill_process_tree(pid)

    def reap(self) -> None:
        """Wait for chromedriver (no zombie) and remove the slot's temporary folder."""
        if self.process is not None:
            try:
                self.process.wait(_QUIT_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.process.wait(_QUIT_TIMEOUT)
        if self.process is not None:
            self.reaper.forget(self.process.pid)
        if self.browser_pid is not None:
            self.reaper.forget(self.browser_pid)
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)

    @property
    def pid(self) -> int | None:
        """The browser's process id (for the recycling policy's memory check)."""
        return self.browser_pid

    # one job

    def run(self, job: _Job) -> Capture:
        """Capture ``job`` on the slot's clean page or a new one; raises DistshotError only.

        After a clean job the page is reset and kept for the next job with the same settings
        (``reuse_contexts``); any other outcome disposes of its context."""
        assert self.cdp is not None and self.driver is not None
        try:
            watch: PageWatch | None = None
            try:
                page = self._page_for(job)
                watch = self._start_job(job, page)
                capture = self._capture(job, watch)
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
            self.broken = True
            raise BrowserCrashed(
                f"the browser crashed or closed while capturing {job.request.url}"
            ) from None
        except (CdpError, TimeoutError) as exc:
            if job.left() <= 0 or job.stop.is_set():
                raise _timed_out(job) from None
            raise NetworkError(f"{job.request.url}: {exc}") from None
        except Exception as exc:
            raise self._driver_error(exc, job) from None

    # pages: a browser context and its one page

    def _page_for(self, job: _Job) -> _Page:
        page = self.page
        if page is not None and page.key == job.key:
            return page
        self._discard_page()
        page = self.page = self._new_page(job)
        return page

    def _new_page(self, job: _Job) -> _Page:
        assert self.cdp is not None and self.driver is not None
        cdp, opts = self.cdp, job.request.options
        params: dict[str, Any] = {"disposeOnDetach": True, **context_proxy(job.proxy)}
        context_id = cdp.call("Target.createBrowserContext", params, timeout=job.left())[
            "browserContextId"
        ]
        cdp.expect_context(context_id)
        page = _Page(job.key, context_id)
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
                {"autoAttach": True, "waitForDebuggerOnStart": False, "flatten": True},
            ),
        ]
        if opts.user_agent:
            setup.append(("Network.setUserAgentOverride", {"userAgent": opts.user_agent}))
        pending = [cdp.begin(method, args, session=session) for method, args in setup]
        # launch_args hide scrollbars too; this makes sure of it, where supported.
        optional = cdp.begin("Emulation.setScrollbarsHidden", {"hidden": True}, session=session)
        # chromedriver attaches to the new page meanwhile (its window handle is the target id).
        self.driver.switch_to.window(page.target_id)
        for call in pending:
            call.result(job.left())
        with contextlib.suppress(CdpError, TimeoutError):
            optional.result(min(job.left(), _CLEANUP_CALL_TIMEOUT))
        return page

    def _start_job(self, job: _Job, page: _Page) -> PageWatch:
        """The job's own settings on the page, and a fresh record of what it does."""
        assert self.cdp is not None
        opts = job.request.options
        watch = PageWatch(page.target_id, job.traces)
        self.cdp.watch(watch, page.session_id)
        page.jobs += 1
        send = self._sender(job, page.session_id)
        page.viewport = run_steps_blocking(emulate_device(opts, page.viewport), send)
        page.emulated = run_steps_blocking(emulate_media(opts, page.emulated), send)
        if opts.headers != page.headers:
            send("Network.setExtraHTTPHeaders", {"headers": dict(opts.headers)})
            page.headers = opts.headers
        return watch

    def _finish(self, job: _Job, watch: PageWatch | None) -> None:
        """Reset the page for the next job, or dispose of it if it cannot be trusted clean
        (``lanes.why_not_reuse``). Never raises: a failed job's own error stands, and a good
        job's capture is taken already."""
        page = self.page
        if page is None or watch is None:  # it failed before its page was ready
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

    def _why_not_reuse(self, job: _Job, page: _Page, watch: PageWatch) -> str | None:
        assert self.cdp is not None

        def verdict() -> str | None:
            with watch.cond:
                return lanes.why_not_reuse(
                    job.traces, jobs=page.jobs, reuse_contexts=job.reuse_contexts
                )

        if (reason := verdict()) is not None:
            return reason
        answer = self.cdp.call(
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

    def _reset(self, page: _Page, watch: PageWatch) -> bool:
        assert self.cdp is not None
        cdp, session = self.cdp, page.session_id
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
        cdp = self.cdp
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
            self.broken = True

    def _capture(self, job: _Job, watch: PageWatch) -> Capture:
        from selenium.common.exceptions import TimeoutException

        assert self.cdp is not None and self.driver is not None
        driver, opts, url = self.driver, job.request.options, job.request.url
        started = time.monotonic()
        driver.set_page_load_timeout(max(0.1, job.left()))
        try:
            driver.get(url)
        except TimeoutException:
            # chromedriver gave up waiting for the response: a failure we saw explains it.
            self._raise_failure(job, watch)
            raise _timed_out(job) from None
        self._wait_until(job, watch)
        if opts.wait_for:
            self._wait_for_selector(job, opts.wait_for)
        if opts.delay:
            job.stop.wait(max(0.0, min(opts.delay / 1000, job.left())))
            if job.stop.is_set():
                raise _timed_out(job)
        assert watch.session_id is not None
        send = self._sender(job, watch.session_id)
        run_steps_blocking(prepare_page(opts, job.deadline), send)
        navigate_ms = ms_since(started)
        shot_started = time.monotonic()
        # A pop-up may have taken the foreground before it was closed: a background page
        # draws no frames, so a screenshot of it would wait in vain.
        send("Page.bringToFront", {})
        shot = run_steps_blocking(capture(opts, job.deadline), send)
        capture_ms = ms_since(shot_started)
        title = self.cdp.call(
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
        )

    def _wait_until(self, job: _Job, watch: PageWatch) -> None:
        wanted = _LIFECYCLE[job.request.options.wait_until]

        def settled() -> bool:
            if self._verdict(job, watch) is not None:
                return True
            return watch.loader is not None and wanted <= watch.lifecycle.get(watch.loader, set())

        done = watch.wait(settled, job.deadline, job.stop)
        self._raise_failure(job, watch)
        if not done:
            raise _timed_out(job)

    def _raise_failure(self, job: _Job, watch: PageWatch) -> None:
        with watch.cond:
            error = self._verdict(job, watch)
        if error is not None:
            raise error

    def _verdict(self, job: _Job, watch: PageWatch) -> DistshotError | None:
        """Why the navigation cannot succeed, if it cannot (call with ``watch.cond`` held)."""
        url = job.request.url
        if watch.crashed:
            return BrowserCrashed(f"the page's renderer crashed while capturing {url}")
        if watch.closed:
            if self.cdp is None or self.cdp.closed:
                self.broken = True
            return BrowserCrashed(f"the browser closed the page while capturing {url}")
        committed = watch.loader is not None
        if watch.download and not committed:
            return DownloadRefused(f"{url} is a file download, not a page; downloads are refused")
        failure = watch.failure
        if watch.error_page or (failure is not None and "ERR_ABORTED" not in failure):
            return translate_error(f"{failure or 'navigation failed'} at {url}", url)
        if (
            failure is not None
            and not committed
            and time.monotonic() - watch.failed_at > _ABORT_SETTLE
        ):
            # Aborted and nothing else came (no download event either): e.g. a 204.
            return NetworkError(f"navigation to {url} was aborted ({failure})")
        return None

    def _wait_for_selector(self, job: _Job, selector: str) -> None:
        from selenium.common.exceptions import (
            InvalidSelectorException,
            StaleElementReferenceException,
        )
        from selenium.webdriver.common.by import By

        assert self.driver is not None
        while True:
            try:
                found = self.driver.find_elements(By.CSS_SELECTOR, selector)
                if found and found[0].is_displayed():
                    return
            except InvalidSelectorException:
                raise InvalidOption(f"wait_for is not a valid CSS selector: {selector!r}") from None
            except StaleElementReferenceException:
                pass
            if job.left() <= 0 or job.stop.is_set():
                raise _timed_out(job)
            job.stop.wait(min(_SELECTOR_POLL, max(0.0, job.left())))

    def _sender(self, job: _Job, session: str) -> BlockingSend:
        """CDP calls to the job's page within the job's time (the capture steps' transport)."""
        cdp = self.cdp
        assert cdp is not None

        def send(method: str, params: dict[str, Any]) -> dict[str, Any]:
            return cdp.call(method, params, session=session, timeout=max(0.01, job.left()))

        return send

    def _driver_error(self, exc: Exception, job: _Job) -> DistshotError:
        message = str(getattr(exc, "msg", None) or exc)
        url = job.request.url
        if self.cdp is None or self.cdp.closed or any(m in message for m in _DRIVER_GONE):
            self.broken = True
            return BrowserCrashed(f"the browser crashed or closed while capturing {url}")
        if job.left() <= 0 or job.stop.is_set():
            return _timed_out(job)
        return translate_error(message, url)


def _timed_out(job: _Job) -> NavigationTimeout:
    return NavigationTimeout.for_url(job.request.url, job.request.options.timeout)


def _swallow(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


# -- the engine: a pool of slots on the event loop ---------------------------------------


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
        return self._lanes_of_stopped_slots + sum(s.lanes_opened for s in self._slots)

    @property
    def lanes_discarded(self) -> Counter[str]:
        """Why pages were thrown away at the end of a job, by reason (observable for tests)."""
        return sum((s.lanes_discarded for s in self._slots), self._discards_of_stopped_slots)

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
            job: _Job | None = None
            guard: EgressGuard | None = None
            try:
                guard, proxy = await self._guard(slot, request)
                job = _Job(
                    request,
                    proxy,
                    deadline,
                    # Size, scale and headers are set per job.
                    key=lanes.lane_key(request),
                    reuse_contexts=self.config.reuse_contexts,
                    traces=lanes.JobTraces.start(request.url),
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
        """The slot's egress guard for the request's address policy (None and a direct
        connection: not enforcing), started on first use, with the refusals of earlier jobs
        forgotten."""
        policy = request.policy()
        if not policy.enforcing:
            return None, DIRECT
        key = (request.allow_private, request.allow_networks)
        if key not in slot.guards:
            guard = EgressGuard(policy)
            slot.guards[key] = (guard, await guard.start())
        guard, proxy = slot.guards[key]
        guard.refusals.clear()
        return guard, proxy

    async def _run(self, slot: _Slot, job: _Job) -> Capture:
        """Run the job in the slot's thread; kill the slot if the thread overstays."""
        running: Future[Capture] = slot.executor.submit(slot.run, job)
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
            raise _timed_out(job)
        return result.result()

    def _abandon(self, slot: _Slot, job: _Job, running: Future[Capture]) -> None:
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
                        loop.run_in_executor(slot.executor, slot.quit), _QUIT_TIMEOUT
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
                self._lanes_of_stopped_slots += slot.lanes_opened
                self._discards_of_stopped_slots += slot.lanes_discarded

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


def create(config: EngineConfig) -> SeleniumEngine:
    try:
        import selenium.webdriver  # noqa: F401
        import websocket  # noqa: F401  (websocket-client, a dependency of selenium)
    except ImportError:
        raise ConfigError(
            "the selenium engine needs selenium: pip install 'distshot[selenium]'"
        ) from None
    for what, path in (("chromedriver", config.driver_path), ("Chromium", config.browser_path)):
        if not os.access(path, os.X_OK):
            raise ConfigError(
                f"the selenium engine needs {what} at {path} (Debian: apt-get install "
                "chromium chromium-driver); Selenium Manager is never used to download it"
            )
    return SeleniumEngine(config)


@hookimpl
def distshot_engines(register):  # type: ignore[no-untyped-def]
    register("selenium", create, CAPABILITIES)
