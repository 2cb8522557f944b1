"""The ``playwright`` engine: Playwright's async API driving Debian's Chromium.

One browser per process, shared by concurrent jobs; each job gets its own browser context
(cookies, storage, cache, permissions) behind its own egress guard. The browser is replaced
after ``recycle_after`` jobs and after a crash; a replaced browser closes once its last job
is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

from ..core.contracts import Capabilities, Engine, EngineConfig
from ..core.egress import EgressGuard
from ..core.errors import (
    BrowserCrashed,
    ConfigError,
    DistshotError,
    InvalidOption,
    NavigationTimeout,
)
from ..core.models import Capture, ShotRequest
from ..core.options import CaptureOptions
from ..plugins.hookspecs import hookimpl
from . import lanes
from .blocking import BLOCKING_OPTIONS, FRAME_EVENTS, Blocker, after_load, release_frame
from .cdp_capture import (
    FRESH,
    IDENTITY_OPTIONS,
    PAGE_ENGINE_OPTIONS,
    STEP_FORMATS,
    Call,
    Shot,
    capture,
    emulate_media,
    prepare_page,
    run_steps,
)
from .chromium import (
    DIRECT,
    job_egress,
    kill_process_tree,
    launch_args,
    ms_since,
    translate_error,
)
from .recycling import BrowserSlot, RecyclingBrowser, race_with_crash

if TYPE_CHECKING:
    from playwright.async_api import (
        Browser,
        BrowserContext,
        CDPSession,
        Page,
        Playwright,
        Request,
        Response,
    )

CAPABILITIES = Capabilities(
    options=PAGE_ENGINE_OPTIONS | IDENTITY_OPTIONS | {"http_credentials"} | BLOCKING_OPTIONS,
    formats=STEP_FORMATS,
    description="Chromium through Playwright (async)",
)
_CLOSE_TIMEOUT = 5.0

#: Run in the page before its image is taken, as ``page.screenshot`` does: web fonts that
#: started loading after the load event have arrived, and no blinking caret shows in a
#: focused field. The caret style goes in only when something has focus: a style rule for
#: every element makes the renderer recalculate the whole document's style. Returns the
#: title, saving a round trip of its own. Together 8-12% less CPU per shot on the bench
#: corpus (docs/benchmarks.md). The page is reset after the job: the style is never removed.
_PREPARE_SCREENSHOT = """async () => {
  const active = document.activeElement;
  if (document.designMode === "on" ||
      (active && active !== document.body && active !== document.documentElement)) {
    try {
      const style = document.createElement("style");
      style.textContent = "* { caret-color: transparent !important; }";
      (document.head || document.documentElement).appendChild(style);
    } catch (e) {}
  }
  // The web fonts that are loading, after a layout that starts any the page needs (free:
  // the capture needs that layout anyway). Not document.fonts.ready: without RenderDocument
  // (chromium.py) it also waits for the document's load event, which a job with
  // wait_until=domcontentloaded must not wait for (the conformance suite's dcl case).
  void document.documentElement.offsetHeight;
  await Promise.all([...document.fonts].filter((font) => font.status === "loading")
                                       .map((font) => font.loaded.catch(() => null)));
  return document.title;
}"""


def _lane_key(request: ShotRequest) -> tuple[object, ...]:
    """What a context fixes for its lifetime (``lanes.lane_key``): here the scale and the
    mobile and touch emulation too, which Playwright sets when it makes the context."""
    opts = request.options
    # A stored session and HTTP credentials are given when the context is made: a job with
    # one never matches an idle lane (lanes with one are discarded), so it gets a new one.
    fresh = bool(opts.storage_state or opts.http_credentials)
    return lanes.lane_key(request, opts.scale, opts.is_mobile, opts.has_touch, fresh)


class _Lane:
    """A browser context with its one page, reused by jobs that share its settings.

    Reusing the page keeps the HTTP cache and the renderer warm: a fresh context per job
    fetches and compiles every stylesheet and script again and starts a new renderer
    process (measured in docs/benchmarks.md). Between jobs ``reset`` removes what a page
    can leave for the next one: cookies, local/session storage, IndexedDB, caches, service
    workers, permissions, history. What the job did is recorded in ``traces``; whether a
    reset is enough is ``lanes.why_not_reuse``'s to say.
    """

    def __init__(
        self,
        key: tuple[object, ...],
        slot: BrowserSlot[Browser],
        context: BrowserContext,
        page: Page,
        cdp: CDPSession,
        guard: EgressGuard | None,
    ) -> None:
        self.key, self.slot, self.context, self.page, self.cdp = key, slot, context, page, cdp
        self.guard = guard
        self.jobs = 0
        self.traces = lanes.JobTraces()  # the current job's, from Playwright's events
        self.viewport: tuple[int, int] | None = None  # what the page was last given
        self.headers: tuple[tuple[str, str], ...] = ()
        self.emulated = FRESH
        #: The current job's blocker: answers the page's paused requests (None: lets them go).
        self.blocker: Blocker | None = None
        #: The last job's request: what a replacement lane is opened for.
        self.request: ShotRequest | None = None
        #: Worn out, with its replacement opening in the background: it serves meanwhile.
        self.replacing = False
        #: Its replacement is open: it closes at once if idle, else when its job ends.
        self.superseded = False

    def blocking_event(self, method: str) -> Callable[[dict[str, Any]], Awaitable[None]]:
        """The handler of one of the events ``Blocker.start`` asks for: a paused request
        (refused or let go), a cross-site frame attached or a message from one."""

        async def handle(params: dict[str, Any]) -> None:
            blocker = self.blocker
            if blocker is not None:
                calls = blocker.on_event(method, params)
            elif method == "Fetch.requestPaused":
                calls = [Call("Fetch.continueRequest", {"requestId": params["requestId"]})]
            else:
                calls = [release_frame(params)] if method == "Target.attachedToTarget" else []
            # A page that went away meanwhile makes these fail; nothing waits for them then.
            for call in calls:
                with contextlib.suppress(Exception):
                    await self.cdp.send(call.method, call.params)

        return handle

    def saw_request(self, request: Request) -> None:
        document = request.resource_type == "document"
        self.traces.saw_request(
            request.url,
            document=document,
            main_frame=document and request.frame.parent_frame is None,
            top_url=self.page.url,
        )

    def saw_response(self, response: Response) -> None:
        self.traces.saw_response(response.status)

    async def permissions_untouched(self) -> bool:
        """Whether the page left every permission as a fresh context has it."""
        return bool(await self.page.evaluate(lanes.PERMISSIONS_UNTOUCHED))

    def saw_page(self, extra: Page) -> Awaitable[None] | None:
        """A pop-up is closed (Playwright's emitter runs the returned coroutine), and the
        lane with it: its requests are not the lane's page's, so what it did is unknown."""
        if extra is self.page:
            return None
        self.traces.popup = True
        return extra.close()

    async def reset(self) -> None:
        await self.page.goto("about:blank")  # unloads the page: its timers cannot write again
        # Independent of each other once the page is gone: one round trip's wait, not six.
        await asyncio.gather(
            self.cdp.send("Page.resetNavigationHistory"),
            *(
                self.cdp.send(
                    "Storage.clearDataForOrigin",
                    {"origin": origin, "storageTypes": lanes.LANE_STORAGE_TYPES},
                )
                for origin in self.traces.origins
            ),
            self.context.clear_cookies(),
            self.context.clear_permissions(),
            self.page.evaluate("window.name = ''"),
        )

    async def send(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """One CDP call to the lane's page (the capture steps' transport)."""
        answer: dict[str, Any] = await self.cdp.send(method, params)
        return answer

    async def screenshot(self, opts: CaptureOptions, deadline: float) -> tuple[Shot, str]:
        """The image, straight from ``Page.captureScreenshot`` (``cdp_capture.capture``).
        Playwright's ``page.screenshot`` spends several round trips preparing and restoring
        every frame (one evaluate here does what a page loaded for one image needs), and it
        encodes PNG at full compression; ``optimizeForSpeed`` uses zlib's fastest level
        instead. Together about half the time per image for files about a quarter bigger
        (docs/benchmarks.md). Returns the image and the page's title."""
        title = await self.page.evaluate(_PREPARE_SCREENSHOT)
        # Playwright emulates the scale on a CDP session of its own, not on this one.
        shot = await run_steps(capture(opts, deadline, session_scales=False), self.send)
        return shot, str(title)

    async def fit(self, opts: CaptureOptions) -> None:
        """Give the page this job's viewport, headers and emulated media; unchanged ones
        cost no round trip."""
        self.emulated = await run_steps(emulate_media(opts, self.emulated), self.send)
        if opts.has_touch and self.jobs > 1:
            # Playwright's own touch emulation does not survive the reset between jobs (the
            # second job on a lane saw `pointer: coarse` false): set it again on ours.
            await self.send(
                "Emulation.setTouchEmulationEnabled", {"enabled": True, "maxTouchPoints": 1}
            )
        viewport = (opts.width, opts.height)
        if viewport != self.viewport:
            await self.page.set_viewport_size({"width": opts.width, "height": opts.height})
            self.viewport = viewport
        if opts.headers != self.headers:
            await self.page.set_extra_http_headers(dict(opts.headers))
            self.headers = opts.headers


class PlaywrightEngine(Engine):
    name = "playwright"
    capabilities = CAPABILITIES

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self._playwright: Playwright | None = None
        self._driver_lock = asyncio.Lock()
        self._idle: list[_Lane] = []  # clean lanes waiting for a job, least recently used first
        self._replacing: set[asyncio.Task[None]] = set()  # lanes opening in the background
        #: Lanes whose job has answered and that are being reset (or closed) behind it.
        self._resetting: dict[_Lane, asyncio.Task[None]] = {}
        self._busy: set[_Lane] = set()  # lanes with a job running
        #: Lanes opened in a browser launched ahead, before it takes jobs (``_warm``).
        self._spares: list[_Lane] = []
        self._closing = False
        self.lanes_opened = 0  # observable for tests: how often a context was created
        #: Why lanes were thrown away at the end of a job, by reason (observable for tests).
        self.lanes_discarded: Counter[str] = Counter()
        self.browsers: RecyclingBrowser[Browser] = RecyclingBrowser(
            config,
            self._launch,
            _close_browser,
            connected=lambda browser: browser.is_connected(),
            on_disconnect=lambda browser, gone: browser.on("disconnected", lambda _: gone()),
            warm=self._warm,
        )

    @property
    def launches(self) -> int:
        return self.browsers.launches

    async def open(self) -> None:
        await self.browsers.open()

    async def _launch(self) -> tuple[Browser, int | None]:
        """Launch a browser, starting Playwright's driver first if need be."""
        async with self._driver_lock:
            if self._playwright is None:
                from playwright.async_api import async_playwright

                self._playwright = await async_playwright().start()
        try:
            browser = await self._playwright.chromium.launch(
                executable_path=self.config.browser_path,
                headless=True,
                args=launch_args(self.config.extra_args),
                # Playwright adds --no-sandbox unless asked for the sandbox: keep Chromium's
                # sandbox except as root, where it cannot start (launch_args says so then).
                chromium_sandbox=os.geteuid() != 0,
                # The worker owns shutdown; Playwright's own handlers would race it.
                handle_sigint=False,
                handle_sigterm=False,
                handle_sighup=False,
            )
        except Exception as exc:
            raise BrowserCrashed(
                f"cannot start Chromium at {self.config.browser_path}: {str(exc).splitlines()[0]}"
            ) from None
        return browser, await _browser_pid(browser)

    async def capture(self, request: ShotRequest) -> Capture:
        slot = await self.browsers.acquire()
        lane: _Lane | None = None
        try:
            key = _lane_key(request)
            lane = (
                self._take_idle(slot, key)
                or await self._after_reset(slot, key)
                or await self._open_lane(slot, request)
            )
            self._busy.add(lane)
            lane.jobs += 1
            lane.request = request
            lane.traces = lanes.JobTraces.start(request.url, request.options)
            if lane.guard is not None:
                lane.guard.forget()
            return await race_with_crash(self._capture_in(lane, request), slot, request.url)
        except BaseException:
            if lane is not None:
                lane.traces.failed = True
            raise
        finally:
            self._busy.discard(lane)
            if lane is None or lane.traces.failed:
                # A failed job's lane is thrown away, and that can show the browser is
                # wedged (a context that will not close): known before the next job picks
                # a browser (``Engine``'s recovery rule).
                await self.browsers.finish_job(self._end_job(slot, lane))
            else:
                # A good job's answer does not wait for its lane's reset (about:blank, then
                # cookies, storage and history cleared: 20-40 ms a job, several times that
                # on a busy machine). The next job for the lane waits for it instead
                # (``_after_reset``); the browser slot is held until it is done.
                self._track_reset(lane, self.browsers.finish_job_soon(self._end_job(slot, lane)))

    def _track_reset(self, lane: _Lane, cleanup: asyncio.Task[None]) -> None:
        self._resetting[lane] = cleanup
        cleanup.add_done_callback(lambda _: self._resetting.pop(lane, None))

    async def _after_reset(
        self, slot: BrowserSlot[Browser], key: tuple[object, ...]
    ) -> _Lane | None:
        """A lane for ``key`` whose reset after the job before is still running, once it is
        clean: waiting for it costs less than a second context opened beside it (and its
        cold renderer). None when no such lane is being reset or none came back clean."""
        while pending := [
            task
            for lane, task in self._resetting.items()
            if lane.slot is slot and lane.key == key and not task.done()
        ]:
            await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            if (lane := self._take_idle(slot, key)) is not None:
                return lane
        return None

    async def settled(self) -> None:
        while pending := {*self._resetting.values(), *self._replacing}:
            await asyncio.wait(pending)

    async def _end_job(self, slot: BrowserSlot[Browser], lane: _Lane | None) -> None:
        try:
            if lane is not None:
                await self._finish_lane(lane)
        finally:
            self.browsers.release(slot)

    # -- lanes: a context and its page, reused by jobs with the same settings ------------

    def _take_idle(self, slot: BrowserSlot[Browser], key: tuple[object, ...]) -> _Lane | None:
        for lane in reversed(self._idle):  # most recently used first: its caches are warm
            if lane.slot is slot and lane.key == key:
                self._idle.remove(lane)
                return lane
        for lane in self._spares:
            if lane.slot is slot and lane.key == key:
                self._spares.remove(lane)
                return lane
        return None

    async def _warm(self, slot: BrowserSlot[Browser]) -> None:
        """Open lanes in a browser launched ahead of need, like the idle ones of the browser
        it replaces: otherwise its first jobs each open a context (200-300 ms on a busy
        machine) in their own time. They wait in ``_spares``, outside the idle lanes' bound,
        so the browser still serving keeps its own."""
        for stale in [lane for lane in self._spares if lane.slot.retired or lane.slot.crashed]:
            self._spares.remove(stale)  # a browser launched ahead that died unused
            await self._close_lane(stale)
        # the idle lanes, least recently used first, then those whose jobs just answered and
        # those with a job running: every lane in use, whatever it is doing at the launch
        # (once each: a reset task ends a moment after its lane is back with the idle ones)
        recent = dict.fromkeys(
            [
                *self._idle,
                *(lane for lane in (*self._resetting, *self._busy) if lane.slot is not slot),
            ]
        )
        for lane in list(reversed(recent))[: self.config.concurrency]:
            if lane.request is not None and not self._closing:
                self._spares.append(await self._open_lane(slot, lane.request))

    async def _open_lane(self, slot: BrowserSlot[Browser], request: ShotRequest) -> _Lane:
        guard, proxy = await job_egress(request, self.config.proxy)
        try:
            context = await slot.browser.new_context(**_context_options(request, proxy))
            page = await context.new_page()
            cdp = await context.new_cdp_session(page)
        except Exception as exc:
            if guard is not None:
                await guard.close()
            slot.crashed = True
            raise BrowserCrashed(f"the browser could not open a context: {exc}") from None
        self.lanes_opened += 1
        lane = _Lane(_lane_key(request), slot, context, page, cdp, guard)
        if request.options.geolocation is not None:
            # Granted per job: the reset takes every permission back, and a lane whose page
            # read it is not kept (lanes.PERMISSIONS).
            await context.grant_permissions(["geolocation"])
        # Pop-ups are closed, dialogs dismissed: nothing may wait for a human.
        context.on("page", lane.saw_page)
        page.on("dialog", lambda dialog: dialog.dismiss())
        # Every event Playwright delivers costs the driver and Python CPU (each response
        # about as much as a request); responses are listened to for one rule only
        # (lanes.py: a 401/407 challenge means the lane is not reused).
        page.on("request", lane.saw_request)
        page.on("response", lane.saw_response)
        for event in ("Fetch.requestPaused", *FRAME_EVENTS):
            cdp.on(event, lane.blocking_event(event))
        return lane

    async def _finish_lane(self, lane: _Lane) -> None:
        """Clean the lane for the next job, or close it if it cannot be trusted clean."""
        slot = lane.slot
        if slot.crashed or slot.retired or lane.superseded:
            # its browser is going away (and its contexts too), or its replacement is open
            await self._close_lane(lane)
            return
        try:
            reason = await self._why_not_reuse(lane)
            if reason in (None, lanes.WORN):
                await asyncio.wait_for(lane.reset(), _CLOSE_TIMEOUT)
        except Exception:
            reason = lanes.RESET_FAILED
        if reason == lanes.WORN:
            # Make before break: a worn lane is clean once reset, so it serves on while its
            # replacement opens in the background. Closing it here and opening a context in
            # the next job put a context's start and a cold renderer into one job in every
            # LANE_JOBS, twice with two lanes in step: the slowest 1% of a busy service.
            if not lane.replacing:
                lane.replacing = True
                self.lanes_discarded[reason] += 1
                self._background(self._replace_lane(lane))
            reason = None
        if reason is not None:
            self.lanes_discarded[reason] += 1
            await self._close_lane(lane)
            return
        await self._keep_idle(lane)

    async def _keep_idle(self, lane: _Lane) -> None:
        """Put a clean lane with the idle ones: enough for every job slot; beyond that, the
        least recently used goes."""
        self._idle.append(lane)
        while len(self._idle) > self.config.concurrency:
            await self._close_lane(self._idle.pop(0))

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._replacing.add(task)
        task.add_done_callback(self._replacing.discard)

    async def _replace_lane(self, old: _Lane) -> None:
        """Open a lane like ``old`` (same browser, same settings) and put it in old's place:
        old closes now if idle, else when its job ends. If the browser cannot open it, old
        goes at its next job's end and a job opens the next lane as usual."""
        assert old.request is not None
        try:
            new = await self._open_lane(old.slot, old.request)
        except Exception:
            old.superseded = True
            return
        old.superseded = True
        if old.slot.crashed or old.slot.retired or self._closing:
            await self._close_lane(new)
            return
        if old in self._idle:
            await self._close_lane(old)
        await self._keep_idle(new)

    async def _why_not_reuse(self, lane: _Lane) -> str | None:
        def verdict() -> str | None:
            return lanes.why_not_reuse(
                lane.traces, jobs=lane.jobs, reuse_contexts=self.config.reuse_contexts
            )

        if (reason := verdict()) is not None:
            return reason
        untouched = await asyncio.wait_for(lane.permissions_untouched(), _CLOSE_TIMEOUT)
        lane.traces.permissions_touched = not untouched
        return verdict()

    async def _close_lane(self, lane: _Lane) -> None:
        if lane in self._idle:
            self._idle.remove(lane)
        await lane.slot.close_context(lane.context.close)
        if lane.guard is not None:
            await lane.guard.close()

    async def _capture_in(self, lane: _Lane, request: ShotRequest) -> Capture:
        from playwright.async_api import Error as PlaywrightError

        opts = request.options
        page = lane.page
        deadline = time.monotonic() + opts.timeout

        def remaining_ms() -> float:
            return max(1.0, (deadline - time.monotonic()) * 1000)

        started = time.monotonic()
        config = self.config
        lane.blocker = blocker = Blocker.for_job(
            opts, request.url, config.ad_filters, config.tracker_filters
        )
        try:
            await lane.fit(opts)
            if isinstance(opts.cookies, tuple) and opts.cookies:
                # The lane is discarded after this job (lanes.holds_identity).
                await lane.context.add_cookies([c.to_browser() for c in opts.cookies])  # type: ignore[misc]
            if blocker is not None:
                await run_steps(blocker.start(first_on_page=lane.jobs == 1), lane.send)
            response = await page.goto(
                request.url,
                wait_until=opts.wait_until,  # type: ignore[arg-type]
                timeout=remaining_ms(),
            )
            if opts.wait_for:
                await page.wait_for_selector(opts.wait_for, state="visible", timeout=remaining_ms())
            if opts.delay:
                await asyncio.sleep(min(opts.delay / 1000, remaining_ms() / 1000))
            await asyncio.wait_for(
                run_steps(after_load(opts, blocker, deadline), lane.send), remaining_ms() / 1000
            )
            await asyncio.wait_for(
                run_steps(prepare_page(opts, deadline), lane.send), remaining_ms() / 1000
            )
            navigate_ms = ms_since(started)
            shot_started = time.monotonic()
            shot, title = await asyncio.wait_for(
                lane.screenshot(opts, deadline), remaining_ms() / 1000
            )
            capture_ms = ms_since(shot_started)
        except PlaywrightError as exc:
            raise self._explain(exc, request, lane.guard, lane.slot) from None
        except TimeoutError:
            raise NavigationTimeout.for_url(request.url, opts.timeout) from None
        return Capture(
            image=shot.image,
            format=opts.format,
            final_url=page.url,
            http_status=response.status if response is not None else None,
            title=title,
            navigate_ms=navigate_ms,
            capture_ms=capture_ms,
            truncated=shot.truncated,
            blocked=blocker.blocked if blocker is not None else None,
        )

    def _explain(
        self,
        exc: Exception,
        request: ShotRequest,
        guard: EgressGuard | None,
        slot: BrowserSlot[Browser],
    ) -> DistshotError:
        message = str(exc)
        opts = request.options
        if guard is not None and (refusal := guard.refusal_error()) is not None:
            return refusal
        if "Timeout" in message and "exceeded" in message:
            return NavigationTimeout.for_url(request.url, opts.timeout)
        if opts.wait_for and ("selector" in message.lower() and "parsing" in message.lower()):
            return InvalidOption(f"wait_for is not a valid CSS selector: {opts.wait_for!r}")
        error = translate_error(message, request.url)
        if not slot.browser.is_connected():
            slot.mark_crashed()
            return BrowserCrashed(error.message)
        if isinstance(error, BrowserCrashed):  # a renderer died; the browser may be unwell
            slot.crashed = True
        return error

    async def close(self) -> None:
        if self._resetting:  # the last jobs' resets (which may start lane replacements)
            await asyncio.wait(set(self._resetting.values()), timeout=_CLOSE_TIMEOUT * 2)
        self._closing = True
        if self._replacing:  # lanes opening in the background: let them end first
            _, late = await asyncio.wait(set(self._replacing), timeout=_CLOSE_TIMEOUT)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        idle, self._idle = self._idle + self._spares, []
        self._spares = []
        for lane in idle:
            if lane.guard is not None:
                await lane.guard.close()
        await self.browsers.close()  # closing a browser closes its contexts
        if self._playwright is not None:
            # Stopping the driver also kills any browser it still owns.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._playwright.stop(), _CLOSE_TIMEOUT * 2)
            self._playwright = None


def _context_options(request: ShotRequest, proxy: str) -> dict[str, Any]:
    opts = request.options
    options: dict[str, Any] = {
        "viewport": {"width": opts.width, "height": opts.height},
        "device_scale_factor": opts.scale,
        "accept_downloads": False,
        "service_workers": "block",
    }
    if opts.user_agent:
        options["user_agent"] = opts.user_agent
    if opts.is_mobile:
        options["is_mobile"] = True
    if opts.has_touch:
        options["has_touch"] = True
    options.update(_identity_options(opts))
    # Playwright turns a bare "direct://" into a proxy of that name: a bypass of every host
    # is its way to say "no proxy" (a context with none would use the browser's own, the
    # strict safety-net guard).
    options["proxy"] = {"server": proxy, **({"bypass": "*"} if proxy == DIRECT else {})}
    return options


def _identity_options(opts: CaptureOptions) -> dict[str, Any]:
    """The context options of the identity a job asks for (Playwright sets the locale's
    Accept-Language, answers basic and digest challenges, and loads the storage state)."""
    from ..core.identitykinds import Credentials, StorageState

    options: dict[str, Any] = {}
    if opts.locale:
        options["locale"] = opts.locale
    if opts.geolocation is not None:
        latitude, longitude, accuracy = opts.geolocation
        options["geolocation"] = {
            "latitude": latitude,
            "longitude": longitude,
            "accuracy": accuracy,
        }
    if not opts.javascript_enabled:
        options["java_script_enabled"] = False
    if isinstance(opts.http_credentials, Credentials):
        credentials = opts.http_credentials
        options["http_credentials"] = {
            "username": credentials.username,
            "password": credentials.password,
        }
    if isinstance(opts.storage_state, StorageState):
        options["storage_state"] = opts.storage_state.to_playwright()
    return options


async def _close_browser(browser: Browser, pid: int | None) -> None:
    """Close politely; a browser that does not go within the grace period is killed, so a
    long-lived worker never accumulates hung browsers."""
    try:
        await asyncio.wait_for(browser.close(), _CLOSE_TIMEOUT)
    except Exception:
        if pid is not None:
            kill_process_tree(pid)


async def _browser_pid(browser: Browser) -> int | None:
    """The Chromium process id, for memory checks and the kill fallback. Playwright keeps it
    inside its driver (node) process, but the browser itself tells it over CDP."""
    try:
        session = await browser.new_browser_cdp_session()
        info = await session.send("SystemInfo.getProcessInfo")
        await session.detach()
    except Exception:
        return None
    for process in info.get("processInfo", []):
        if process.get("type") == "browser":
            return int(process["id"])
    return None


def create(config: EngineConfig) -> PlaywrightEngine:
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        raise ConfigError(
            "the playwright engine needs the playwright package: pip install distshot"
        ) from None
    return PlaywrightEngine(config)


@hookimpl
def distshot_engines(register):  # type: ignore[no-untyped-def]
    register("playwright", create, CAPABILITIES)
