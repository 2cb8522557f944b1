"""The ``playwright`` engine: Playwright's async API driving Debian's Chromium.

One browser per process, shared by concurrent jobs; each job gets its own browser context
(cookies, storage, cache, permissions) behind its own egress guard. The browser is replaced
after ``recycle_after`` jobs and after a crash; a replaced browser closes once its last job
is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
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
from ..plugins.hookspecs import hookimpl
from .chromium import launch_args, translate_error

if TYPE_CHECKING:
    from playwright.async_api import Browser, BrowserContext, Playwright

CAPABILITIES = Capabilities(
    formats=frozenset({"png", "jpeg"}),
    description="Chromium through Playwright (async)",
)
_CLOSE_TIMEOUT = 5.0


class _BrowserSlot:
    """One launched browser and the jobs using it."""

    def __init__(self, browser: Browser) -> None:
        self.browser = browser
        self.jobs = 0
        self.in_flight = 0
        self.retired = False
        self.crashed = False
        browser.on("disconnected", self._on_disconnect)

    def _on_disconnect(self, _browser: Any) -> None:
        self.crashed = True

    @property
    def usable(self) -> bool:
        return not (self.retired or self.crashed) and self.browser.is_connected()


class PlaywrightEngine(Engine):
    name = "playwright"
    capabilities = CAPABILITIES

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self._playwright: Playwright | None = None
        self._slot: _BrowserSlot | None = None
        self._lock = asyncio.Lock()
        self._closing: set[asyncio.Task[None]] = set()
        self.launches = 0  # observable for tests: recycling and crash recovery

    async def open(self) -> None:
        async with self._lock:
            if self._slot is None:
                self._slot = await self._launch()

    async def _launch(self) -> _BrowserSlot:
        """Launch a browser (starting Playwright's driver first if need be). Call under the lock."""
        if self._playwright is None:
            from playwright.async_api import async_playwright

            self._playwright = await async_playwright().start()
        try:
            browser = await self._playwright.chromium.launch(
                executable_path=self.config.browser_path,
                headless=True,
                args=launch_args(self.config.extra_args),
                # The worker owns shutdown; Playwright's own handlers would race it.
                handle_sigint=False,
                handle_sigterm=False,
                handle_sighup=False,
            )
        except Exception as exc:
            raise BrowserCrashed(
                f"cannot start Chromium at {self.config.browser_path}: {str(exc).splitlines()[0]}"
            ) from None
        self.launches += 1
        return _BrowserSlot(browser)

    async def _acquire(self) -> _BrowserSlot:
        async with self._lock:
            slot = self._slot
            if slot is not None and (not slot.usable or slot.jobs >= self.config.recycle_after):
                self._retire(slot)
                slot = self._slot = None
            if slot is None:
                slot = self._slot = await self._launch()
            slot.jobs += 1
            slot.in_flight += 1
            return slot

    def _release(self, slot: _BrowserSlot) -> None:
        slot.in_flight -= 1
        if slot.retired and slot.in_flight == 0:
            self._close_later(slot)

    def _retire(self, slot: _BrowserSlot) -> None:
        slot.retired = True
        if slot.in_flight == 0:
            self._close_later(slot)

    def _close_later(self, slot: _BrowserSlot) -> None:
        task = asyncio.get_running_loop().create_task(_close_browser(slot.browser))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def capture(self, request: ShotRequest) -> Capture:
        slot = await self._acquire()
        policy = request.policy()
        guard = EgressGuard(policy) if policy.enforcing else None
        context: BrowserContext | None = None
        try:
            proxy = {"server": await guard.start()} if guard else None
            try:
                context = await slot.browser.new_context(**_context_options(request, proxy))
            except Exception as exc:
                slot.crashed = True
                raise BrowserCrashed(f"the browser could not open a context: {exc}") from None
            return await self._capture_in(context, request, guard, slot)
        finally:
            if context is not None:
                await _close_context(context, slot)
            if guard is not None:
                await guard.close()
            self._release(slot)

    async def _capture_in(
        self,
        context: BrowserContext,
        request: ShotRequest,
        guard: EgressGuard | None,
        slot: _BrowserSlot,
    ) -> Capture:
        from playwright.async_api import Error as PlaywrightError

        opts = request.options
        deadline = time.monotonic() + opts.timeout

        def remaining_ms() -> float:
            return max(1.0, (deadline - time.monotonic()) * 1000)

        page = await context.new_page()
        # Pop-ups are closed, dialogs dismissed: nothing may wait for a human.
        context.on("page", lambda extra: extra.close() if extra is not page else None)
        page.on("dialog", lambda dialog: dialog.dismiss())

        started = time.monotonic()
        try:
            response = await page.goto(
                request.url,
                wait_until=opts.wait_until,  # type: ignore[arg-type]
                timeout=remaining_ms(),
            )
            if opts.wait_for:
                await page.wait_for_selector(opts.wait_for, state="visible", timeout=remaining_ms())
            if opts.delay:
                await asyncio.sleep(min(opts.delay / 1000, remaining_ms() / 1000))
            navigate_ms = _ms_since(started)
            shot_started = time.monotonic()
            image = await page.screenshot(
                type=opts.format,  # type: ignore[arg-type]
                quality=opts.quality,
                full_page=opts.full_page,
                timeout=remaining_ms(),
            )
            capture_ms = _ms_since(shot_started)
            title = await asyncio.wait_for(page.title(), remaining_ms() / 1000)
        except PlaywrightError as exc:
            raise self._explain(exc, request, guard, slot) from None
        except TimeoutError:
            raise NavigationTimeout(
                f"{request.url} did not finish within its {opts.timeout:g}s timeout"
            ) from None
        return Capture(
            image=image,
            format=opts.format,
            final_url=page.url,
            http_status=response.status if response is not None else None,
            title=title,
            navigate_ms=navigate_ms,
            capture_ms=capture_ms,
        )

    def _explain(
        self, exc: Exception, request: ShotRequest, guard: EgressGuard | None, slot: _BrowserSlot
    ) -> DistshotError:
        message = str(exc)
        opts = request.options
        if guard is not None and guard.refusals:
            refusal = guard.refusal_error()
            assert refusal is not None
            return refusal
        if "Timeout" in message and "exceeded" in message:
            if opts.wait_for and "wait_for_selector" in message:
                return NavigationTimeout(
                    f"element {opts.wait_for!r} did not appear within {opts.timeout:g}s"
                )
            return NavigationTimeout(
                f"{request.url} did not reach '{opts.wait_until}' within {opts.timeout:g}s"
            )
        if opts.wait_for and ("selector" in message.lower() and "parsing" in message.lower()):
            return InvalidOption(f"wait_for is not a valid CSS selector: {opts.wait_for!r}")
        error = translate_error(message, request.url)
        if isinstance(error, BrowserCrashed) or not slot.browser.is_connected():
            slot.crashed = True
            return BrowserCrashed(error.message)
        return error

    async def close(self) -> None:
        async with self._lock:
            slot, self._slot = self._slot, None
        if slot is not None:
            await _close_browser(slot.browser)
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
        if self._playwright is not None:
            # Stopping the driver also kills any browser it still owns.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._playwright.stop(), _CLOSE_TIMEOUT * 2)
            self._playwright = None


def _context_options(request: ShotRequest, proxy: dict[str, str] | None) -> dict[str, Any]:
    opts = request.options
    options: dict[str, Any] = {
        "viewport": {"width": opts.width, "height": opts.height},
        "device_scale_factor": opts.scale,
        "accept_downloads": False,
        "service_workers": "block",
    }
    if opts.user_agent:
        options["user_agent"] = opts.user_agent
    if opts.headers:
        options["extra_http_headers"] = dict(opts.headers)
    if proxy is not None:
        options["proxy"] = proxy
    return options


async def _close_context(context: BrowserContext, slot: _BrowserSlot) -> None:
    """Close a job's context; a renderer stuck in a JavaScript loop can make this hang,
    and then the whole browser is retired rather than the worker waiting on it."""
    try:
        await asyncio.wait_for(context.close(), _CLOSE_TIMEOUT)
    except Exception:
        slot.crashed = True


async def _close_browser(browser: Browser) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(browser.close(), _CLOSE_TIMEOUT)


def _ms_since(start: float) -> float:
    return round((time.monotonic() - start) * 1000, 1)


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
