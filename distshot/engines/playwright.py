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
from .chromium import kill_process_tree, launch_args, translate_error
from .recycling import BrowserSlot, RecyclingBrowser, race_with_crash

if TYPE_CHECKING:
    from playwright.async_api import Browser, BrowserContext, Playwright

CAPABILITIES = Capabilities(
    formats=frozenset({"png", "jpeg"}),
    description="Chromium through Playwright (async)",
)
_CLOSE_TIMEOUT = 5.0


class PlaywrightEngine(Engine):
    name = "playwright"
    capabilities = CAPABILITIES

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self._playwright: Playwright | None = None
        self._driver_lock = asyncio.Lock()
        self.browsers: RecyclingBrowser[Browser] = RecyclingBrowser(
            config,
            self._launch,
            _close_browser,
            connected=lambda browser: browser.is_connected(),
            on_disconnect=lambda browser, gone: browser.on("disconnected", lambda _: gone()),
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
        browser = slot.browser
        policy = request.policy()
        guard = EgressGuard(policy) if policy.enforcing else None
        context: BrowserContext | None = None
        try:
            proxy = {"server": await guard.start()} if guard else None
            try:
                context = await browser.new_context(**_context_options(request, proxy))
            except Exception as exc:
                slot.crashed = True
                raise BrowserCrashed(f"the browser could not open a context: {exc}") from None
            return await race_with_crash(
                self._capture_in(context, request, guard, slot), slot, request.url
            )
        finally:
            if context is not None:
                await _close_context(context, slot)
            if guard is not None:
                await guard.close()
            self.browsers.release(slot)

    async def _capture_in(
        self,
        context: BrowserContext,
        request: ShotRequest,
        guard: EgressGuard | None,
        slot: BrowserSlot[Browser],
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
        self,
        exc: Exception,
        request: ShotRequest,
        guard: EgressGuard | None,
        slot: BrowserSlot[Browser],
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
        if not slot.browser.is_connected():
            slot.mark_crashed()
            return BrowserCrashed(error.message)
        if isinstance(error, BrowserCrashed):  # a renderer died; the browser may be unwell
            slot.crashed = True
        return error

    async def close(self) -> None:
        await self.browsers.close()
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


async def _close_context(context: BrowserContext, slot: BrowserSlot[Browser]) -> None:
    """Close a job's context; a renderer stuck in a JavaScript loop can make this hang,
    and then the whole browser is retired rather than the worker waiting on it."""
    try:
        await asyncio.wait_for(context.close(), _CLOSE_TIMEOUT)
    except Exception:
        slot.crashed = True  # retire it, but let its other jobs finish


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
