"""The ``cdp`` engine: distshot's engine contract on top of :mod:`.pipe`.

One Chromium per worker process, shared by concurrent jobs. Each job gets a fresh browser
context (cookies, storage, cache) whose connections go through the job's egress guard, one
page in it, and that context is disposed afterwards. Recycling the browser (after
``recycle_after`` jobs, past ``recycle_memory_mb``, or once it died) is distshot's own
``RecyclingBrowser``, as in the built-in engines. The capture controls (media emulation,
scrolling, clicks, scripts, styles, element and clip shots, full pages, PDF) are distshot's
capture steps, sent over this engine's own pipe.

Everything from distshot comes through ``distshot.enginekit``, its public plug-in API.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from typing import Any

from distshot import enginekit as kit

from . import CAPABILITIES
from .pipe import Browser, CdpError, ConnectionLost, Message, Session

# Concurrent jobs' pages share one browser, and Chromium treats all but one of them as
# background tabs: timers throttled to once a second, renderers at low priority. That would
# stretch every ``delay`` and ``wait_for`` poll, so it is switched off (Playwright does too).
_FLAGS = (
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
)
_DISPOSE_TIMEOUT = 3.0  # seconds to dispose of a job's context before retiring the browser
_IDLE_S = 0.5  # networkidle: this long without a request in flight (as Playwright)
_POLL_S = 0.1  # how often wait_for checks the selector and networkidle the traffic

# Visible means: in the document, with a non-empty box, and not visibility:hidden (as
# Playwright's "visible"). An invalid selector makes querySelector throw a SyntaxError.
_VISIBLE_JS = """(selector => {
  const element = document.querySelector(selector);
  if (!element) return false;
  const box = element.getBoundingClientRect();
  return box.width > 0 && box.height > 0 && getComputedStyle(element).visibility !== 'hidden';
})(%s)"""


@dataclass(frozen=True)
class Settings:
    """The engine's own settings: the ``[engines.cdp]`` table of distshot.toml."""

    #: Seconds a freshly launched Chromium has to answer its first command.
    start_timeout: float = 20.0

    @classmethod
    def parse(cls, table: Mapping[str, Any]) -> Settings:
        """Check the table; a bad or unknown key is a ``ConfigError`` naming it."""
        unknown = sorted(set(table) - {"start_timeout"})
        if unknown:
            raise kit.ConfigError(
                f"[engines.cdp] has no setting {unknown[0]!r}; known: start_timeout"
            )
        value = table.get("start_timeout", cls.start_timeout)
        # (bool is an int in Python: `start_timeout = true` is a mistake, not 1 second)
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise kit.ConfigError(
                f"[engines.cdp] start_timeout must be a number of seconds above 0, not {value!r}"
            )
        if not math.isfinite(value):
            raise kit.ConfigError(f"[engines.cdp] start_timeout must be finite, not {value!r}")
        return cls(start_timeout=float(value))


class CdpEngine(kit.Engine):
    name = "cdp"
    capabilities = CAPABILITIES

    def __init__(self, config: kit.EngineConfig) -> None:
        self.config = config
        self.settings = Settings.parse(config.settings)  # checked before any browser work
        # distshot's own helper for "one browser per process": it hands each job a slot and
        # replaces the browser after recycle_after jobs, past recycle_memory_mb, or once it
        # died; a replaced browser is closed when its last job ends.
        self.browsers: kit.RecyclingBrowser[Browser] = kit.RecyclingBrowser(
            config,
            self._launch,
            lambda browser, _pid: browser.close(),
            connected=lambda browser: browser.alive,
            on_disconnect=lambda browser, gone: browser.closed.add_done_callback(lambda _: gone()),
        )
        self._disposals: set[asyncio.Task[None]] = set()

    @property
    def launches(self) -> int:  # observable for tests: recycling and crash recovery
        return self.browsers.launches

    async def open(self) -> None:
        await self.browsers.open()

    async def close(self) -> None:
        await asyncio.gather(*self._disposals, return_exceptions=True)
        await self.browsers.close()

    async def _launch(self) -> tuple[Browser, int]:
        path = self.config.browser_path
        try:
            args = kit.launch_args((*_FLAGS, *self.config.extra_args))
            browser = await Browser.launch(path, args)
        except OSError as exc:
            raise kit.BrowserCrashed(f"cannot start Chromium at {path}: {exc}") from None
        # Pop-ups (pages with an opener) are closed as soon as Chromium announces them.
        browser.on("Target.targetCreated", lambda event: _close_popup(browser, event))
        try:
            discover = browser.send("Target.setDiscoverTargets", {"discover": True})
            await asyncio.wait_for(discover, self.settings.start_timeout)
        except BaseException as exc:  # failed, or the job was cancelled while we waited
            await browser.close()  # either way no process may be left behind
            if isinstance(exc, TimeoutError):
                raise kit.BrowserCrashed(
                    f"Chromium at {path} did not answer within {self.settings.start_timeout:g}s "
                    "([engines.cdp] start_timeout)"
                ) from None
            if isinstance(exc, ConnectionLost | CdpError):
                raise kit.BrowserCrashed(f"Chromium at {path} did not start: {exc}") from None
            raise
        return browser, browser.process.pid  # the pid lets the helper measure its memory

    async def capture(self, request: kit.ShotRequest) -> kit.Capture:
        # The guard for the job's address policy, and the proxy its context must use (the
        # guard's address, or DIRECT when the policy admits every address: no guard then).
        guard, proxy = await kit.job_egress(request, self.config.proxy)
        try:
            slot = await self.browsers.acquire()
            job = _Job(slot.browser, request, proxy)
            try:
                async with asyncio.timeout(request.options.timeout):
                    return await job.run()
            except TimeoutError:
                raise kit.NavigationTimeout.for_url(request.url, request.options.timeout) from None
            except ConnectionLost as exc:
                raise kit.BrowserCrashed(
                    f"the browser crashed while capturing {request.url}: {exc}"
                ) from None
            except CdpError as exc:
                if guard is not None and (refusal := guard.refusal_error()) is not None:
                    raise refusal from None  # the guard refused a connection: that is the cause
                raise kit.translate_error(str(exc), request.url) from None
            finally:
                # The result does not wait for the context's disposal, which takes seconds on
                # a busy machine; the slot is released (and may be recycled) once it is done.
                task = asyncio.get_running_loop().create_task(self._dispose(slot, job.context))
                self._disposals.add(task)
                task.add_done_callback(self._disposals.discard)
        finally:
            if guard is not None:
                await guard.close()

    async def _dispose(self, slot: kit.BrowserSlot[Browser], context: str | None) -> None:
        """Dispose of a job's context (and its pages). A browser that cannot do even that
        promptly is retired rather than shared with later jobs."""
        try:
            if context is not None:
                params = {"browserContextId": context}
                dispose = slot.browser.send("Target.disposeBrowserContext", params)
                await asyncio.wait_for(dispose, _DISPOSE_TIMEOUT)
        except (TimeoutError, ConnectionLost, CdpError):
            slot.mark_crashed()
        finally:
            self.browsers.release(slot)


def _close_popup(browser: Browser, event: Message) -> None:
    info = event["targetInfo"]
    if info["type"] == "page" and info.get("openerId"):
        browser.post("Target.closeTarget", {"targetId": info["targetId"]})


class _Job:
    """One capture: its own context and page, and what that page's events have told us."""

    def __init__(self, browser: Browser, request: kit.ShotRequest, proxy: str) -> None:
        self.browser, self.request, self.proxy = browser, request, proxy
        self.deadline = time.monotonic() + request.options.timeout
        self.context: str | None = None  # the browser context, once created
        self.target_id = ""  # the page, once created (also its main frame's id)
        self.loaded, self.dom_ready = asyncio.Event(), asyncio.Event()
        self.http_status: int | None = None
        self.in_flight: set[str] = set()  # request ids, for networkidle
        self.last_traffic = time.monotonic()

    async def _open(self) -> Session:
        """A fresh context behind the job's proxy, with one configured page."""
        # context_proxy: the guard's address with "<-loopback>" (so loopback addresses are
        # judged too), or a direct connection when the policy admits everything. A context
        # made without it would go through the browser's strict safety-net guard.
        params: Message = {"disposeOnDetach": True, **kit.context_proxy(self.proxy)}
        created = await self.browser.send("Target.createBrowserContext", params)
        self.context = context = str(created["browserContextId"])
        deny = {"behavior": "deny", "browserContextId": context}
        await self.browser.send("Browser.setDownloadBehavior", deny)
        target = {"url": "about:blank", "browserContextId": context}
        self.target_id = str((await self.browser.send("Target.createTarget", target))["targetId"])
        session = await self.browser.attach(self.target_id)

        # Event handlers run in the pipe's reader, so they only note things down, or post.
        session.on("Page.loadEventFired", lambda _: self.loaded.set())
        session.on("Page.domContentEventFired", lambda _: self.dom_ready.set())
        session.on(
            "Page.javascriptDialogOpening",
            lambda _: session.post("Page.handleJavaScriptDialog", {"accept": False}),
        )
        session.on("Network.requestWillBeSent", self._request_started)
        session.on("Network.loadingFinished", self._request_ended)
        session.on("Network.loadingFailed", self._request_ended)
        session.on("Network.responseReceived", self._response)

        opts = self.request.options
        setup: list[Awaitable[Any]] = [
            session.send("Page.enable"),
            session.send("Network.enable"),
            # The viewport, scale, mobile layout and touch (a device preset has filled them).
            kit.run_steps(kit.emulate_device(opts), session.send),
        ]
        if opts.user_agent:
            setup.append(
                session.send("Network.setUserAgentOverride", {"userAgent": opts.user_agent})
            )
        if opts.headers:
            setup.append(
                session.send("Network.setExtraHTTPHeaders", {"headers": dict(opts.headers)})
            )
        # Media type and prefers-* features, before navigation (no call for the defaults).
        setup.append(kit.run_steps(kit.emulate_media(opts), session.send))
        # A session runs its commands in order, so they can all be in flight at once.
        for result in await asyncio.gather(*setup, return_exceptions=True):
            if isinstance(result, BaseException):
                raise result
        return session

    def _request_started(self, event: Message) -> None:
        self.in_flight.add(event["requestId"])  # a redirect keeps its request id
        self.last_traffic = time.monotonic()

    def _request_ended(self, event: Message) -> None:
        self.in_flight.discard(event["requestId"])
        self.last_traffic = time.monotonic()

    def _response(self, event: Message) -> None:
        # The main frame's id is its target's id; redirect responses never reach this event.
        if event["type"] == "Document" and event.get("frameId") == self.target_id:
            self.http_status = int(event["response"]["status"])

    async def run(self) -> kit.Capture:
        self.session = session = await self._open()
        opts, url = self.request.options, self.request.url
        started = time.monotonic()
        navigation = await session.send("Page.navigate", {"url": url})
        if navigation.get("isDownload"):  # an attachment: denied by setDownloadBehavior
            raise kit.DownloadRefused(f"{url} is a file download, not a page")
        if navigation.get("errorText"):  # e.g. net::ERR_TOO_MANY_REDIRECTS
            raise CdpError(f"{navigation['errorText']} at {url}")
        ready = self.dom_ready if opts.wait_until == "domcontentloaded" else self.loaded
        await session.until(ready.wait())
        while opts.wait_until == "networkidle" and (
            self.in_flight or time.monotonic() - self.last_traffic < _IDLE_S
        ):
            await session.until(asyncio.sleep(_POLL_S))
        if opts.wait_for:
            while not await self._visible(opts.wait_for):
                await asyncio.sleep(_POLL_S)
        if opts.delay:
            await session.until(asyncio.sleep(opts.delay / 1000))
        # Scrolling, clicks, the job's script and styles, animations (nothing by default).
        await kit.run_steps(kit.prepare_page(opts, self.deadline), session.send)
        navigate_ms = kit.ms_since(started)

        started = time.monotonic()
        # session_scales: this session set the device scale factor itself (setDeviceMetrics-
        # Override above), and Chromium applies it to a clip taken through the same session.
        capture = kit.capture(opts, self.deadline, session_scales=True)
        shot = await kit.run_steps(capture, session.send)
        capture_ms = kit.ms_since(started)
        title, final_url = await self._evaluate("[document.title, location.href]")
        return kit.Capture(
            image=shot.image,
            format=opts.format,
            final_url=final_url,
            http_status=self.http_status,
            title=title,
            navigate_ms=navigate_ms,
            capture_ms=capture_ms,
            truncated=shot.truncated,
        )

    async def _visible(self, selector: str) -> bool:
        try:
            return bool(await self._evaluate(_VISIBLE_JS % json.dumps(selector)))
        except CdpError as exc:
            if str(exc).startswith("SyntaxError"):
                raise kit.InvalidOption(
                    f"wait_for is not a valid CSS selector: {selector!r}"
                ) from None
            return False  # e.g. the page navigated meanwhile: try its next document

    async def _evaluate(self, expression: str) -> Any:
        reply = await self.session.send(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True}
        )
        if "exceptionDetails" in reply:
            error = reply["exceptionDetails"].get("exception", {}).get("description", "")
            raise CdpError(error or "the page's script failed")
        return reply["result"].get("value")
