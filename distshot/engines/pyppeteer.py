"""The ``pyppeteer`` engine: pyppeteer (a Python port of Puppeteer) on Debian's Chromium.

Same shape as the playwright engine: one browser per process shared by concurrent jobs, a
fresh browser context per job behind the job's own egress guard (its proxy is a parameter
of CDP's ``Target.createBrowserContext``, which pyppeteer does not expose, so the context is
made with a raw CDP call), recycling and crash relaunch through ``RecyclingBrowser``.

pyppeteer's launcher is not used: it would download a Chromium, register exit and signal
handlers, and wait for the browser with blocking polls that freeze the event loop (every
other job of the worker with it). Chromium is started here with pyppeteer's default flags,
pyppeteer connects to it, and we close (and, if need be, kill) it ourselves. Each browser
gets its own user-data folder, removed when it closes. Screenshots go through CDP directly
(``cdp_capture``), so full-page images match the other engines' pixel for pixel instead of
resizing the viewport as pyppeteer's own ``fullPage`` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import tempfile
import time
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
)
from ..core.models import Capture, ShotRequest
from ..core.options import CaptureOptions
from ..plugins.hookspecs import hookimpl
from .blocking import BLOCKING_OPTIONS, Blocker, after_load
from .cdp_capture import (
    FETCH_AUTH,
    IDENTITY_PAGE_OPTIONS,
    STEP_FORMATS,
    auth_answer,
    capture,
    emulate_media,
    granted_permissions,
    identity,
    prepare_page,
    run_steps,
)
from .chromium import (
    context_proxy,
    job_egress,
    kill_process_tree,
    launch_args,
    ms_since,
    translate_error,
)
from .reaper import Reaper
from .recycling import BrowserSlot, RecyclingBrowser, race_with_crash

if TYPE_CHECKING:
    from pyppeteer.browser import Browser, BrowserContext
    from pyppeteer.network_manager import Response
    from pyppeteer.page import Page

CAPABILITIES = Capabilities(
    options=IDENTITY_PAGE_OPTIONS | {"http_credentials"} | BLOCKING_OPTIONS,
    formats=STEP_FORMATS,
    description=(
        "Chromium through pyppeteer (async, CDP); pyppeteer is UNMAINTAINED "
        "(last release 2024): prefer playwright"
    ),
)
_CLOSE_TIMEOUT = 5.0
_WAIT_UNTIL = {
    "load": "load",
    "domcontentloaded": "domcontentloaded",
    "networkidle": "networkidle0",
}


class PyppeteerEngine(Engine):
    name = "pyppeteer"
    capabilities = CAPABILITIES

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self._profiles: dict[int, str] = {}  # browser pid -> its user-data folder
        self._processes: dict[int, subprocess.Popen[bytes]] = {}  # browser pid -> process
        # pyppeteer's Chromium does not exit when the worker dies: the reaper kills it then.
        self._reaper = Reaper()
        self._background: set[asyncio.Future[Any]] = set()  # held so they are not collected
        self.browsers: RecyclingBrowser[Browser] = RecyclingBrowser(
            config,
            self._launch,
            self._close_browser,
            connected=lambda browser: bool(browser._connection._connected),
            on_disconnect=lambda browser, gone: browser.on("disconnected", gone),
        )

    @property
    def launches(self) -> int:
        return self.browsers.launches

    async def open(self) -> None:
        await self.browsers.open()

    async def _launch(self) -> tuple[Browser, int | None]:
        """Start Chromium ourselves and connect pyppeteer to it. pyppeteer's own ``launch``
        waits for the browser with blocking HTTP polls and sleeps (``get_ws_endpoint``):
        measured, it froze the event loop for the whole start, 4.4 s on a loaded machine,
        during which every other job of the worker stood still and ran out of time (the
        ordinary page after a wedged one needed 2 or 3 attempts). Here the wait is async,
        and Chromium picks its own debugging port (no race for a port chosen in advance)."""
        from pyppeteer import connect
        from pyppeteer.launcher import DEFAULT_ARGS

        profile = tempfile.mkdtemp(prefix="distshot-pyppeteer-")
        # pyppeteer's defaults, as its launch() would pass them (its --disable-features is
        # left out: launch_args carries the one Chromium reads, and site isolation stays on).
        flags = [a for a in DEFAULT_ARGS if not a.startswith("--disable-features=")]
        flags += ["--headless", "--hide-scrollbars", "--mute-audio"]
        flags += launch_args(self.config.extra_args)
        flags += [f"--user-data-dir={profile}", "--remote-debugging-port=0", "about:blank"]
        try:
            process = subprocess.Popen(
                [self.config.browser_path, *flags],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        except OSError as exc:
            shutil.rmtree(profile, ignore_errors=True)
            raise BrowserCrashed(
                f"cannot start Chromium at {self.config.browser_path}: {exc}"
            ) from None
        self._reaper.watch(process.pid)
        self._processes[process.pid] = process
        self._profiles[process.pid] = profile
        try:
            endpoint = await _devtools_endpoint(process, profile)
            browser = await connect(browserWSEndpoint=endpoint, defaultViewport=None)
        except BaseException as exc:
            await self._stop_process(process.pid)
            if isinstance(exc, Exception):
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise BrowserCrashed(
                    f"cannot start Chromium at {self.config.browser_path}: {first}"
                ) from None
            raise
        return browser, process.pid

    async def _close_browser(self, browser: Browser, pid: int | None) -> None:
        """Ask politely, then make sure: wait for the process, kill its tree if it lingers,
        reap it (no zombie) and remove its user-data folder."""
        with contextlib.suppress(Exception):
            await asyncio.wait_for(browser.close(), _CLOSE_TIMEOUT)
        with contextlib.suppress(Exception):
            await browser._connection.dispose()
        if pid is not None:
            await self._stop_process(pid)

    async def _stop_process(self, pid: int) -> None:
        """Wait for a browser process, kill its tree if it lingers, reap it (no zombie) and
        remove its user-data folder."""
        process = self._processes.pop(pid, None)
        if process is not None:
            try:
                await asyncio.wait_for(asyncio.to_thread(process.wait), _CLOSE_TIMEOUT)
            except TimeoutError:
                kill_process_tree(pid)
                await asyncio.to_thread(process.wait)
        self._reaper.forget(pid)
        if profile := self._profiles.pop(pid, None):
            await asyncio.to_thread(shutil.rmtree, profile, True)

    async def capture(self, request: ShotRequest) -> Capture:
        slot = await self.browsers.acquire()
        guard: EgressGuard | None = None
        context: BrowserContext | None = None
        try:
            guard, proxy = await job_egress(request, self.config.proxy)
            try:
                context = await race_with_crash(
                    _new_context(slot.browser, proxy), slot, request.url
                )
            except DistshotError:
                raise
            except Exception as exc:
                slot.crashed = True
                raise BrowserCrashed(f"the browser could not open a context: {exc}") from None
            return await race_with_crash(
                self._capture_in(context, request, guard, slot), slot, request.url
            )
        finally:
            await self.browsers.finish_job(self._end_job(slot, context, guard))

    async def _end_job(
        self, slot: BrowserSlot[Browser], context: BrowserContext | None, guard: EgressGuard | None
    ) -> None:
        try:
            if context is not None:
                await slot.close_context(context.close)
            if guard is not None:
                await guard.close()
        finally:
            self.browsers.release(slot)

    async def _capture_in(
        self,
        context: BrowserContext,
        request: ShotRequest,
        guard: EgressGuard | None,
        slot: BrowserSlot[Browser],
    ) -> Capture:
        from pyppeteer.errors import PyppeteerError
        from pyppeteer.errors import TimeoutError as PyppeteerTimeout

        opts = request.options
        deadline = time.monotonic() + opts.timeout

        def remaining_ms() -> float:
            return max(1.0, (deadline - time.monotonic()) * 1000)

        page = await context.newPage()
        documents: list[Response] = []
        self._guard_page(slot.browser, context, page, documents)
        await page.setViewport(
            {
                "width": opts.width,
                "height": opts.height,
                "deviceScaleFactor": opts.scale,
                "isMobile": opts.is_mobile,
                "hasTouch": opts.has_touch,
            }
        )
        await run_steps(emulate_media(opts), page._client.send)
        if opts.user_agent:
            await page.setUserAgent(opts.user_agent)
        if opts.headers:
            await page.setExtraHTTPHeaders(dict(opts.headers))
        # The context is the job's own and closed after it: nothing here outlives the job.
        await run_steps(identity(opts), page._client.send)
        permissions = granted_permissions(opts)
        if permissions:
            await slot.browser._connection.send(
                "Browser.grantPermissions",
                {"permissions": permissions, "browserContextId": context._id},
            )
        config = self.config
        blocker = Blocker.for_job(opts, request.url, config.ad_filters, config.tracker_filters)
        if blocker is not None:
            self._intercept(page, blocker)
            # Not its cross-site frames: pyppeteer's page session is itself a nested one, and
            # a frame attached below it answered "No session with given id" to every message
            # sent to it (tried); such a frame's own requests are not intercepted here.
            # (One Fetch.enable a session: with credentials it answers challenges too.)
            steps = blocker.start(attach_frames=False, handle_auth=bool(opts.http_credentials))
            await run_steps(steps, page._client.send)
        if opts.http_credentials:
            await self._answer_challenges(page, opts, pause=blocker is None)

        started = time.monotonic()
        try:
            # pyppeteer bounds only the wait after Page.navigate, not Page.navigate itself,
            # which a server that never answers holds forever: bound the whole call.
            response = await asyncio.wait_for(
                page.goto(
                    request.url,
                    {"waitUntil": _WAIT_UNTIL[opts.wait_until], "timeout": remaining_ms()},
                ),
                remaining_ms() / 1000,
            )
            if opts.wait_for:
                await _check_selector(page, opts.wait_for)
                await page.waitForSelector(
                    opts.wait_for, {"visible": True, "timeout": remaining_ms()}
                )
            if opts.delay:
                await asyncio.sleep(min(opts.delay / 1000, remaining_ms() / 1000))
            await asyncio.wait_for(
                run_steps(after_load(opts, blocker, deadline), page._client.send),
                remaining_ms() / 1000,
            )
            await asyncio.wait_for(
                run_steps(prepare_page(opts, deadline), page._client.send), remaining_ms() / 1000
            )
            navigate_ms = ms_since(started)
            shot_started = time.monotonic()
            shot = await asyncio.wait_for(
                run_steps(capture(opts, deadline), page._client.send), remaining_ms() / 1000
            )
            capture_ms = ms_since(shot_started)
            title = await asyncio.wait_for(page.title(), remaining_ms() / 1000)
        except (PyppeteerTimeout, TimeoutError):
            raise self._timeout(request, guard) from None
        except DistshotError:
            raise
        except PyppeteerError as exc:
            raise self._explain(exc, request, guard, documents) from None
        return Capture(
            image=shot.image,
            truncated=shot.truncated,
            format=opts.format,
            final_url=page.url,
            http_status=response.status if response is not None else None,
            title=title,
            navigate_ms=navigate_ms,
            capture_ms=capture_ms,
            blocked=blocker.blocked if blocker is not None else None,
        )

    async def _answer_challenges(self, page: Page, opts: CaptureOptions, pause: bool) -> None:
        """HTTP credentials through CDP's Fetch domain (pyppeteer's own ``authenticate``
        goes through its request interception): each challenge gets the job's credentials
        once; a second challenge for the same request (they were refused) is cancelled,
        which fails the job with ``AuthenticationRequired``. ``pause``: turn interception on
        here, every paused request going on (else a blocker paused them and answers them)."""
        client = page._client
        answered: set[str] = set()

        def on_paused(event: dict[str, Any]) -> None:
            self._spawn(client.send("Fetch.continueRequest", {"requestId": event["requestId"]}))

        def on_auth(event: dict[str, Any]) -> None:
            answer = auth_answer(opts, event)
            if event["requestId"] in answered:
                answer["authChallengeResponse"] = {"response": "CancelAuth"}
            answered.add(event["requestId"])
            self._spawn(client.send("Fetch.continueWithAuth", answer))

        client.on("Fetch.authRequired", on_auth)
        if pause:
            client.on("Fetch.requestPaused", on_paused)
            await client.send("Fetch.enable", FETCH_AUTH)

    def _intercept(self, page: Page, blocker: Blocker) -> None:
        """Answer the page's paused requests (``Blocker.start`` pauses them)."""

        def on_paused(params: dict[str, Any]) -> None:
            call = blocker.answer(params)
            self._spawn(page._client.send(call.method, call.params))

        page._client.on("Fetch.requestPaused", on_paused)

    def _spawn(self, awaitable: Any) -> None:
        task = asyncio.ensure_future(awaitable)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        # A dialog or pop-up that vanished first makes these fail; that is fine.
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    def _guard_page(
        self, browser: Browser, context: BrowserContext, page: Page, documents: list[Response]
    ) -> None:
        """Nothing may wait for a human: dialogs are dismissed and pop-ups closed. Main-frame
        document responses are kept to tell a refused download from other aborts."""

        def on_dialog(dialog: Any) -> None:
            self._spawn(dialog.dismiss())

        def on_response(response: Response) -> None:
            if response.request.resourceType == "document" and response.request.frame is (
                page.mainFrame
            ):
                documents.append(response)

        def on_target(target: Any) -> None:
            if (
                target.type == "page"
                and target.browserContext is context
                and target is not (page.target)
            ):
                self._spawn(
                    browser._connection.send("Target.closeTarget", {"targetId": target._targetId})
                )

        page.on("dialog", on_dialog)
        page.on("response", on_response)
        context.on("targetcreated", on_target)

    def _timeout(self, request: ShotRequest, guard: EgressGuard | None) -> DistshotError:
        if guard is not None and (refusal := guard.refusal_error()) is not None:
            return refusal
        return NavigationTimeout.for_url(request.url, request.options.timeout)

    def _explain(
        self,
        exc: Exception,
        request: ShotRequest,
        guard: EgressGuard | None,
        documents: list[Response],
    ) -> DistshotError:
        message = str(exc)
        if guard is not None and (refusal := guard.refusal_error()) is not None:
            return refusal
        if "ERR_ABORTED" in message and documents and _is_download(documents[-1]):
            return DownloadRefused(
                f"{request.url} is a file download, not a page; downloads are refused"
            )
        return translate_error(message, request.url)

    async def close(self) -> None:
        await self.browsers.close()
        await asyncio.to_thread(self._reaper.close)


async def _new_context(browser: Browser, proxy: str) -> BrowserContext:
    """A fresh incognito context (own cookies, storage, cache, permissions) whose every
    connection goes through ``proxy``; downloads are denied at the browser level."""
    from pyppeteer.browser import BrowserContext

    created = await browser._connection.send("Target.createBrowserContext", context_proxy(proxy))
    context_id = created["browserContextId"]
    context = BrowserContext(browser, context_id)
    browser._contexts[context_id] = context
    await browser._connection.send(
        "Browser.setDownloadBehavior", {"behavior": "deny", "browserContextId": context_id}
    )
    return context


async def _check_selector(page: Page, selector: str) -> None:
    valid = await page.evaluate(
        "s => { try { document.createDocumentFragment().querySelector(s); return true }"
        " catch (e) { return false } }",
        selector,
    )
    if not valid:
        raise InvalidOption(f"wait_for is not a valid CSS selector: {selector!r}")


#: A fresh Chromium writes its debugging port here once it listens; this bounds the wait.
_START_TIMEOUT = 30.0


async def _devtools_endpoint(process: subprocess.Popen[bytes], profile: str) -> str:
    """The browser's DevTools websocket URL, from ``DevToolsActivePort`` in its profile
    (``--remote-debugging-port=0``: the port is Chromium's choice), waited for without
    blocking the event loop."""
    marker = Path(profile) / "DevToolsActivePort"
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"Chromium exited at start with status {process.returncode}")
        with contextlib.suppress(OSError):
            lines = marker.read_text().split()
            if len(lines) >= 2:
                return f"ws://127.0.0.1:{lines[0]}{lines[1]}"
        await asyncio.sleep(0.05)
    raise RuntimeError(f"Chromium did not open its DevTools port within {_START_TIMEOUT:g}s")


def _is_download(response: Response) -> bool:
    disposition = response.headers.get("content-disposition", "").lower()
    content_type = response.headers.get("content-type", "").lower()
    renderable = content_type.startswith(("text/", "image/", "application/xhtml"))
    return "attachment" in disposition or (200 <= response.status < 300 and not renderable)


def create(config: EngineConfig) -> PyppeteerEngine:
    try:
        import pyppeteer  # noqa: F401
    except ImportError:
        raise ConfigError(
            "the pyppeteer engine needs pyppeteer: pip install 'distshot[pyppeteer]'"
        ) from None
    return PyppeteerEngine(config)


@hookimpl
def distshot_engines(register):  # type: ignore[no-untyped-def]
    register("pyppeteer", create, CAPABILITIES)
