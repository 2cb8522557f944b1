"""The engine conformance suite: what every distshot engine must do, as pytest tests.

An engine package runs it by subclassing ``EngineConformance`` in one of its test files::

    from distshot.testing.engine_suite import EngineConformance

    class TestMyEngine(EngineConformance):
        engine = "my-engine"          # the name the plug-in registers

The suite creates the engine through the plug-in registry (so the entry point is tested too),
serves its pages from 127.0.0.1 (``distshot.testing.server``) and goes through the capture
service, exactly as a worker does. Options the engine does not declare in its capabilities must
be rejected with a reason; options it declares must visibly change the image. It needs pytest
and Pillow (``pip install 'distshot[test]'``).

Each class runs its jobs in a few batches (class-scoped fixtures), not one engine per test,
so the whole suite costs about half a minute per engine.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from ..core.contracts import Engine, EngineConfig
from ..core.models import ShotRequest, ShotResult
from ..core.options import DEFAULT_OPTIONS, OPTION_NAMES, parse_options
from ..core.service import capture_request
from ..plugins.manager import get_registry
from ..storage.local import LocalStorage
from .engine_cases import (
    BLUE,
    GRACE_S,
    GREEN,
    HOSTILE_CASES,
    HOSTILE_TIMEOUT,
    OPTION_CASES,
    OPTION_COVERAGE,
    PINNED_HOST,
    PROXY_CASES,
    PROXY_PASSWORD,
    PROXY_USER,
    RED,
    WEDGE_TIMEOUT,
    WHITE,
    WORKER_PROXY_CASES,
    WRONG_PASSWORD,
    Case,
)
from .engine_checks import (
    assert_no_browser_left,
    close,
    cpu_load,
    failed_permanently,
    file_of,
    fills,
    image_of,
    ok,
    paper_is,
    pixel_difference,
    pixel_of,
    request_for,
    run_batch,
)
from .processes import browser_processes
from .proxies import TestProxy, start_proxy, stop_proxy
from .server import PageServer, start_server, stop_server

__all__ = ["EngineConformance"]


class EngineConformance:
    """Subclass with ``engine = "name"``; every test below must pass for that engine."""

    engine: ClassVar[str]
    #: The engine whose image of a simple page this one must nearly match (None: skip).
    reference_engine: ClassVar[str | None] = "playwright"
    concurrency: ClassVar[int] = 4

    # -- fixtures: one engine per batch, shared by the tests that read the batch ------------

    @pytest.fixture(scope="class")
    @classmethod
    def page_server(cls) -> Iterator[PageServer]:
        server = start_server()
        yield server
        stop_server(server)

    @pytest.fixture(scope="class")
    @classmethod
    def workdir(cls) -> Iterator[Path]:
        with tempfile.TemporaryDirectory(prefix="distshot-conformance-") as folder:
            yield Path(folder)

    @classmethod
    def make_engine(cls, name: str | None = None, **config: Any) -> Engine:
        settings = {"concurrency": cls.concurrency, **config}
        return get_registry().create_engine(name or cls.engine, EngineConfig(**settings))

    @classmethod
    def supports(cls, case: Case) -> bool:
        caps = get_registry().engine_entry(cls.engine).capabilities
        options = parse_options(case.at(1).options, DEFAULT_OPTIONS)
        return (
            case.needs() <= caps.options
            and options.format in caps.formats
            and options.wait_until in caps.wait_until
        )

    @classmethod
    def _batch(
        cls,
        server: PageServer,
        workdir: Path,
        cases: dict[str, Case],
        label: str,
        concurrency: int | None = None,
        values: dict[str, str] | None = None,
        **config: Any,
    ) -> dict[str, ShotResult]:
        storage = LocalStorage(str(workdir / label))
        storage.check()

        async def scenario() -> dict[str, ShotResult]:
            engine = cls.make_engine(**config)
            await engine.open()
            try:
                return await run_batch(
                    engine, server, cases, storage, concurrency or cls.concurrency, values
                )
            finally:
                await engine.close()

        results = asyncio.run(scenario())
        assert_no_browser_left()
        return results

    @pytest.fixture(scope="class")
    @classmethod
    def options_run(cls, page_server: PageServer, workdir: Path) -> dict[str, ShotResult]:
        return cls._batch(page_server, workdir, OPTION_CASES, "options")

    @pytest.fixture(scope="class")
    @classmethod
    def hostile_run(cls, page_server: PageServer, workdir: Path) -> dict[str, ShotResult]:
        cases = {**HOSTILE_CASES, "after": Case("/solid.html", {})}
        return cls._batch(page_server, workdir, cases, "hostile", concurrency=2)

    @pytest.fixture(scope="class")
    @classmethod
    def proxies(cls) -> Iterator[dict[str, TestProxy]]:
        """The suite's upstream proxies on 127.0.0.1: an HTTP CONNECT and a SOCKS5 one
        wanting a user and password, and one that refuses every tunnel."""
        credentials = (PROXY_USER, PROXY_PASSWORD)
        running = {
            "http": start_proxy("http", credentials),
            "socks5": start_proxy("socks5", credentials),
            "refusing": start_proxy("socks5", refuse=True),
        }
        yield running
        for proxy in running.values():
            stop_proxy(proxy)

    @pytest.fixture(scope="class")
    @classmethod
    def proxy_run(
        cls, page_server: PageServer, workdir: Path, proxies: dict[str, TestProxy]
    ) -> dict[str, ShotResult]:
        values = {
            "http_proxy": proxies["http"].url(PROXY_USER, PROXY_PASSWORD),
            "socks_proxy": proxies["socks5"].url(PROXY_USER, PROXY_PASSWORD),
            "bad_password_proxy": proxies["http"].url(PROXY_USER, WRONG_PASSWORD),
            "refusing_proxy": proxies["refusing"].url(),
        }
        return cls._batch(page_server, workdir, PROXY_CASES, "proxies", values=values)

    @pytest.fixture(scope="class")
    @classmethod
    def worker_proxy_run(
        cls, page_server: PageServer, workdir: Path, proxies: dict[str, TestProxy]
    ) -> tuple[dict[str, ShotResult], list[str]] | None:
        """An engine made with a worker's default proxy (the HTTP one): its results and the
        tunnels that proxy opened for them. None for an engine that does not honour
        ``proxy`` at all."""
        caps = get_registry().engine_entry(cls.engine).capabilities
        if "proxy" not in caps.options:
            return None
        default = proxies["http"]
        before = len(default.tunnels.opened)
        results = cls._batch(
            page_server,
            workdir,
            WORKER_PROXY_CASES,
            "worker-proxy",
            proxy=default.url(PROXY_USER, PROXY_PASSWORD),
        )
        return results, default.tunnels.opened[before:]

    def option_result(self, run: dict[str, ShotResult], name: str) -> ShotResult | None:
        """The case's result if the engine supports it; else assert it was rejected."""
        result, case = run[name], {**OPTION_CASES, **PROXY_CASES}[name]
        if self.supports(case):
            return result
        assert result.status == "rejected", f"{name}: unsupported option was not rejected"
        assert result.error is not None and result.error["type"] == "UnsupportedOption"
        assert self.engine in result.error["message"]
        return None

    # -- capture options -----------------------------------------------------------------

    def test_default_is_a_1280x800_png_of_the_page(self, options_run: Any) -> None:
        result = ok(options_run["default"])
        assert (result.width, result.height, result.format) == (1280, 800, "png")
        image = image_of(result)
        assert image.format == "PNG" and image.size == (1280, 800)
        assert close(pixel_of(result), RED)

    def test_width_and_height_set_the_viewport(self, options_run: Any) -> None:
        if result := self.option_result(options_run, "size"):
            assert (ok(result).width, result.height) == (640, 480)

    def test_full_page_captures_the_whole_height(self, options_run: Any) -> None:
        if result := self.option_result(options_run, "full_page"):
            assert (ok(result).width, result.height) == (1280, 3000)
        assert ok(options_run["viewport_only"]).height == 800

    def test_jpeg_with_quality(self, options_run: Any) -> None:
        if result := self.option_result(options_run, "jpeg"):
            assert ok(result).format == "jpeg" and image_of(result).format == "JPEG"
            assert result.location is not None and result.location.endswith(".jpg")
            assert close(pixel_of(result), RED)

    def test_webp_is_webp_or_rejected(self, options_run: Any) -> None:
        if result := self.option_result(options_run, "webp"):
            assert ok(result).format == "webp" and image_of(result).format == "WEBP"

    def test_scale_multiplies_pixels(self, options_run: Any) -> None:
        if result := self.option_result(options_run, "scale"):
            assert (ok(result).width, result.height) == (600, 400)

    def test_wait_until_domcontentloaded_does_not_wait_for_images(self, options_run: Any) -> None:
        if result := self.option_result(options_run, "dcl"):
            assert close(pixel_of(ok(result)), WHITE)
        assert close(pixel_of(ok(options_run["load"])), RED)

    def test_wait_until_networkidle_waits_for_late_requests(self, options_run: Any) -> None:
        if result := self.option_result(options_run, "networkidle"):
            assert close(pixel_of(ok(result)), BLUE)
        assert close(pixel_of(ok(options_run["idle_control"])), WHITE)

    def test_wait_for_waits_for_the_element(self, options_run: Any) -> None:
        if result := self.option_result(options_run, "wait_for"):
            assert close(pixel_of(ok(result)), GREEN)
        assert close(pixel_of(ok(options_run["late_control"])), WHITE)

    def test_invalid_selector_is_a_permanent_invalid_option(self, options_run: Any) -> None:
        if result := self.option_result(options_run, "bad_selector"):
            assert result.status == "failed"
            assert result.error is not None and result.error["type"] == "InvalidOption"
            assert not result.transient

    def test_delay_waits_before_capture(self, options_run: Any) -> None:
        if result := self.option_result(options_run, "delay"):
            assert close(pixel_of(ok(result)), BLUE)
        assert close(pixel_of(ok(options_run["delay_control"])), WHITE)

    def test_user_agent_and_headers_reach_the_server(
        self, options_run: Any, page_server: PageServer
    ) -> None:
        ua = self.option_result(options_run, "user_agent")
        hdr = self.option_result(options_run, "headers")
        # Header names are case-insensitive (some clients lower-case them).
        echoes = {
            next(iter(r["query"]), ""): {k.lower(): v for k, v in r["headers"].items()}
            for r in page_server.seen.requests
            if r["path"] == "/echo"
        }
        if ua:
            ok(ua)
            assert echoes["ua"]["user-agent"] == "distshot-conformance/1.0"
            assert "x-distshot-conformance" not in echoes["ua"]
        if hdr:
            ok(hdr)
            assert echoes["hdr"]["x-distshot-conformance"] == "yes"
            assert echoes["hdr"].get("user-agent") != "distshot-conformance/1.0"

    def test_timeout_fails_the_job_in_time(self, options_run: Any) -> None:
        result = options_run["timeout"]
        assert result.status == "failed"
        assert result.error["type"] == "NavigationTimeout"
        assert result.transient
        assert (result.timings["total_ms"] or 0) < (2 + GRACE_S) * 1000

    def test_resolve_connects_a_made_up_name_to_its_pinned_address(
        self, options_run: Any, page_server: PageServer
    ) -> None:
        # shop.example is never looked up: only the pinned address can have reached the server
        if result := self.option_result(options_run, "resolve"):
            assert ok(result).title == "echo"
            hosts = [
                {k.lower(): v for k, v in r["headers"].items()}.get("host")
                for r in page_server.seen.requests
                if r["path"] == "/echo" and "resolve" in r["query"]
            ]
            assert hosts == [f"{PINNED_HOST}:{page_server.server_address[1]}"]
            assert result.final_url is not None and PINNED_HOST in result.final_url

    def test_proxy_carries_the_pages_connections_with_its_credentials(
        self, proxy_run: Any, page_server: PageServer, proxies: dict[str, TestProxy]
    ) -> None:
        port = page_server.server_address[1]
        for kind in ("http", "socks5"):
            if result := self.option_result(proxy_run, f"proxy_{kind}"):
                assert ok(result).title == "echo"
                # the page server saw the request, and the proxy opened the tunnel for it
                assert any(
                    r["path"] == "/echo" and r["query"].get("via") == kind
                    for r in page_server.seen.requests
                )
                assert f"127.0.0.1:{port}" in proxies[kind].tunnels.opened, kind

    def test_a_proxy_that_refuses_or_rejects_the_credentials_is_a_proxy_error(
        self, proxy_run: Any, page_server: PageServer, proxies: dict[str, TestProxy]
    ) -> None:
        for name, mentions in (
            ("proxy_bad_password", "rejected the credentials"),
            ("proxy_refusing", "refused to connect"),
        ):
            if result := self.option_result(proxy_run, name):
                assert result.status == "failed", (name, result)
                assert result.error is not None and result.error["type"] == "ProxyError", name
                assert result.transient
                assert mentions in result.error["message"], result.error
                assert (
                    f"127.0.0.1:{proxies['http' if 'bad' in name else 'refusing'].port}"
                    in (result.error["message"])
                )
                assert WRONG_PASSWORD not in json.dumps(result.to_record()), name
        assert not any(
            r["query"].get("via") in ("bad", "refusing") for r in page_server.seen.requests
        )

    def test_a_job_without_a_proxy_goes_through_the_workers_default(
        self,
        worker_proxy_run: tuple[dict[str, ShotResult], list[str]] | None,
        page_server: PageServer,
    ) -> None:
        # an engine that honours proxy passes EngineConfig.proxy to job_egress: else the
        # worker's proxy would be silently skipped for every job that names none
        if worker_proxy_run is None:
            return
        results, tunnels = worker_proxy_run
        assert ok(results["proxy_worker_default"]).title == "echo"
        assert f"127.0.0.1:{page_server.server_address[1]}" in tunnels
        assert any(
            r["path"] == "/echo" and r["query"].get("via") == "worker"
            for r in page_server.seen.requests
        )

    # -- blocking -----------------------------------------------------------------------

    def _quarters(self, result: ShotResult) -> list[tuple[int, int, int]]:
        image = image_of(ok(result)).convert("RGB")
        return [image.getpixel((image.width * n // 8, image.height // 2)) for n in (1, 3, 5, 7)]

    def _halves(self, result: ShotResult) -> list[tuple[int, int, int]]:
        image = image_of(ok(result)).convert("RGB")
        return [image.getpixel((image.width // 2, y)) for y in (200, 600)]

    def test_block_resources_refuses_those_types(
        self, options_run: Any, page_server: PageServer
    ) -> None:
        # image, stylesheet, script and fetch each paint a quarter red: blocked, all green;
        # the page's WebSocket never reaches the server
        if result := self.option_result(options_run, "block_resources"):
            assert all(close(p, GREEN) for p in self._quarters(result))
            assert result.blocked == 5
            sockets = [r["query"] for r in page_server.seen.requests if r["path"] == "/ws"]
            assert {"open": ""} in sockets and {"blocked": ""} not in sockets
            control = options_run["blocking_control"]
            assert all(close(p, RED) for p in self._quarters(control))
            assert control.blocked is None

    def test_block_urls_refuses_matching_urls(self, options_run: Any) -> None:
        # a glob for the stylesheet, a regex for the image; the script and fetch still load
        if result := self.option_result(options_run, "block_urls"):
            image, style, script, fetch = self._quarters(result)
            assert close(image, GREEN) and close(style, GREEN)
            assert close(script, RED) and close(fetch, RED)
            assert result.blocked == 2

    def test_block_ads_leaves_the_ad_slots_empty(self, options_run: Any) -> None:
        # an ad server's iframe and script (pinned with resolve): refused, the page stays green
        if result := self.option_result(options_run, "block_ads"):
            halves = self._halves(result)
            assert all(close(p, GREEN) for p in halves), (halves, result.blocked)
            assert (result.blocked or 0) >= 2
            control = self._halves(options_run["ads_control"])
            assert all(close(p, RED) for p in control), control

    def test_block_trackers_never_requests_the_pixel(
        self, options_run: Any, page_server: PageServer
    ) -> None:
        if result := self.option_result(options_run, "block_trackers"):
            pixels = [
                r["query"].get("case") for r in page_server.seen.requests if r["path"] == "/p"
            ]
            assert "trackers" not in pixels
            assert "control" in pixels  # the same page without the option asks for it
            assert result.blocked == 1
            # trackers only: the ads are still there
            assert all(close(p, RED) for p in self._halves(result))

    def test_block_cookie_banners_refuses_consent_and_unlocks_the_page(
        self, options_run: Any
    ) -> None:
        # a CookieYes-style banner over a red overlay that locks scrolling: autoconsent clicks
        # "Reject All" (consent.html writes the choice in the title), the page scrolls again
        if result := self.option_result(options_run, "block_cookie_banners"):
            assert all(close(p, GREEN) for p in self._quarters(result))
            assert ok(result).title == "consent rejected visible"
            control = ok(options_run["consent_control"])
            assert all(close(p, RED) for p in self._quarters(control))
            assert control.title == "consent hidden"

    # -- what to capture ------------------------------------------------------------------

    def test_every_declared_option_has_a_case(self) -> None:
        assert set(OPTION_COVERAGE) == set(OPTION_NAMES), "options without a conformance case"
        every_case = {**OPTION_CASES, **PROXY_CASES}
        for name, cases in OPTION_COVERAGE.items():
            for case in cases:
                options = parse_options(every_case[case].at(1).options, DEFAULT_OPTIONS)
                assert name in options.non_default(), f"case {case!r} does not set {name}"

    def test_selector_is_the_elements_box_plus_padding(self, options_run: Any) -> None:
        if result := self.option_result(options_run, "selector"):
            image = image_of(ok(result)).convert("RGB")
            # the 240x120 element, 10 px around it, far below the first screen
            assert image.size == (260, 140)
            assert close(image.getpixel((130, 70)), GREEN)
            assert close(image.getpixel((3, 3)), WHITE)

    def test_selector_without_a_match_is_element_not_found(self, options_run: Any) -> None:
        if result := self.option_result(options_run, "selector_missing"):
            failed_permanently(result, "ElementNotFound", "#nope")

    def test_clip_is_that_rectangle_of_the_page(self, options_run: Any) -> None:
        if result := self.option_result(options_run, "clip"):
            assert (ok(result).width, result.height) == (200, 100)
            assert close(pixel_of(result), RED)

    def test_max_height_cuts_a_full_page_and_says_so(self, options_run: Any) -> None:
        if result := self.option_result(options_run, "max_height"):
            assert (ok(result).width, result.height, result.truncated) == (1280, 2000, True)
        assert ok(options_run["full_page"]).truncated is False

    def test_scroll_page_loads_lazy_images(self, options_run: Any, page_server: PageServer) -> None:
        lazy = [r["query"].get("lazy") for r in page_server.seen.requests]
        # full_page scrolls by default: the lazy image far down was loaded and is in the image
        scrolled = image_of(ok(options_run["scroll_page"])).convert("RGB")
        assert "scrolled" in lazy
        assert close(scrolled.getpixel((150, 4150)), RED)
        if result := self.option_result(options_run, "no_scroll"):
            unscrolled = image_of(ok(result)).convert("RGB")
            assert "unscrolled" not in lazy
            assert close(unscrolled.getpixel((150, 4150)), WHITE)

    def test_scrolling_an_endless_page_ends_in_time(self, options_run: Any) -> None:
        if result := self.option_result(options_run, "endless"):
            # it scrolled (the page grew past its first 2000 px) and stopped by itself: a
            # scroll without a budget runs into the job's 8 s timeout and fails. Hashing and
            # storing the tall image come after the engine's deadline, so the engine's own
            # time is what the timeout bounds (total_ms reached 8.1 s on a loaded machine).
            assert (ok(result).title or "").startswith("endless ")
            engine_ms = (result.timings["navigate_ms"] or 0) + (result.timings["capture_ms"] or 0)
            assert engine_ms < 8000

    # -- changing the page ------------------------------------------------------------------

    def test_hide_keeps_the_space_and_remove_takes_it(self, options_run: Any) -> None:
        # #spacer (600 px, white) sits above a green block: hidden it still pushes the block
        # out of the 300 px viewport; removed, the block moves up into it.
        if result := self.option_result(options_run, "hide"):
            assert close(pixel_of(ok(result)), WHITE)
        if result := self.option_result(options_run, "remove"):
            assert close(pixel_of(ok(result)), GREEN)

    def test_clicks_run_in_order_and_wait_for_their_element(self, options_run: Any) -> None:
        if result := self.option_result(options_run, "click"):
            assert close(pixel_of(ok(result)), BLUE)
        if result := self.option_result(options_run, "click_missing"):
            failed_permanently(result, "ElementNotFound", "#nope")

    def test_javascript_runs_and_its_promise_is_awaited(self, options_run: Any) -> None:
        if result := self.option_result(options_run, "javascript"):
            assert close(pixel_of(ok(result)), GREEN)

    def test_javascript_that_throws_is_a_script_error(self, options_run: Any) -> None:
        if result := self.option_result(options_run, "javascript_error"):
            failed_permanently(result, "ScriptError", "conformance boom")

    def test_css_is_applied(self, options_run: Any) -> None:
        if result := self.option_result(options_run, "css"):
            assert close(pixel_of(ok(result)), BLUE)

    def test_animations_disabled_shows_their_end(self, options_run: Any) -> None:
        # a 60 s fade from red to green: at its start without, finished with
        if result := self.option_result(options_run, "animations"):
            assert close(pixel_of(ok(result)), GREEN)
        assert close(pixel_of(ok(options_run["animations_control"])), RED, tolerance=60)

    # -- emulation ----------------------------------------------------------------------

    def _thirds(self, result: ShotResult) -> list[tuple[int, int, int]]:
        image = image_of(ok(result)).convert("RGB")
        return [image.getpixel((image.width * n // 6, image.height // 2)) for n in (1, 3, 5)]

    def test_media_features_are_emulated(self, options_run: Any) -> None:
        # media.html's thirds: colour scheme (white/black), reduced motion (red/green),
        # media type (red/blue)
        control = self._thirds(options_run["media_control"])
        assert all(close(a, b) for a, b in zip(control, (WHITE, RED, RED), strict=True))
        if result := self.option_result(options_run, "color_scheme"):
            assert close(self._thirds(result)[0], (0, 0, 0))
        if result := self.option_result(options_run, "reduced_motion"):
            assert close(self._thirds(result)[1], GREEN)
        if result := self.option_result(options_run, "media"):
            assert close(self._thirds(result)[2], BLUE)

    def test_timezone_sets_the_pages_clock(self, options_run: Any) -> None:
        if result := self.option_result(options_run, "timezone"):
            assert ok(result).title == "timezone Asia/Tokyo"
            assert close(pixel_of(result), GREEN)

    # -- identity ---------------------------------------------------------------------------

    def test_cookies_log_the_page_in(self, options_run: Any) -> None:
        if result := self.option_result(options_run, "cookies"):
            assert ok(result).title == "account alice"
            assert close(pixel_of(result), GREEN)
        assert ok(options_run["cookies_control"]).title == "login required"

    def test_storage_state_gives_cookies_and_local_storage(self, options_run: Any) -> None:
        if result := self.option_result(options_run, "storage_state"):
            assert ok(result).title == "lang=en-US cookie=yes storage=dark"

    def test_http_credentials_answer_basic_and_digest(self, options_run: Any) -> None:
        if result := self.option_result(options_run, "http_credentials"):
            assert (ok(result).title, result.http_status) == ("authed", 200)
        if result := self.option_result(options_run, "http_digest"):
            assert (ok(result).title, result.http_status) == ("digest authed", 200)
        # with a blocking option too (one interception answers both)
        if result := self.option_result(options_run, "http_credentials_blocking"):
            assert (ok(result).title, result.http_status) == ("digest authed", 200)
            assert result.blocked == 0

    def test_locale_sets_the_language_and_accept_language(
        self, options_run: Any, page_server: PageServer
    ) -> None:
        if result := self.option_result(options_run, "locale"):
            assert ok(result).title == "lang=de-DE cookie=no storage=none"
            sent = {
                next(iter(r["query"]), ""): r["headers"].get("Accept-Language", "")
                for r in page_server.seen.requests
                if r["path"] == "/identity.html"
            }
            assert sent["locale"].startswith("de-DE"), sent
            assert sent["state"].startswith("en-US"), sent  # no other job's locale

    def test_geolocation_is_read_by_the_page(self, options_run: Any) -> None:
        if result := self.option_result(options_run, "geolocation"):
            assert ok(result).title == "geo 35.68,139.69"
            assert close(pixel_of(result), GREEN)
        # Without the option the permission is not granted: no job's position leaks.
        assert str(ok(options_run["geolocation_control"]).title).startswith("geo refused")

    def test_javascript_disabled_shows_the_noscript_content(self, options_run: Any) -> None:
        if result := self.option_result(options_run, "javascript_disabled"):
            assert ok(result).title == "noscript"
            assert close(pixel_of(result), GREEN)
        control = ok(options_run["javascript_control"])
        assert control.title == "script ran" and close(pixel_of(control), RED)

    def test_device_is_a_touch_phone_at_its_scale(self, options_run: Any) -> None:
        if result := self.option_result(options_run, "device"):
            # iPhone 13: 390x664 CSS px at 3x, touch, mobile, its user agent
            assert (ok(result).width, result.height, result.device) == (1170, 1992, "iPhone 13")
            assert result.title == "device 390x664 phone"
            assert close(pixel_of(result), GREEN)
        control = ok(options_run["device_control"])
        assert control.title == "device 1280x800" and control.device is None

    def test_device_emulation_holds_from_job_to_job(
        self, page_server: PageServer, workdir: Path
    ) -> None:
        # Given three phone jobs, one after another on one job slot (a reused page, if the
        # engine keeps pages between jobs), then a desktop one
        phone, desktop = OPTION_CASES["device"], OPTION_CASES["device_control"]
        results = self._sequence(page_server, workdir, [phone, phone, phone, desktop])
        # Then every phone job sees a touch phone, and the desktop job a desktop
        assert [ok(r).title for r in results] == [
            *["device 390x664 phone"] * 3,
            "device 1280x800",
        ]

    # -- output -------------------------------------------------------------------------

    def test_omit_background_is_transparent(self, options_run: Any) -> None:
        if result := self.option_result(options_run, "omit_background"):
            image = image_of(ok(result)).convert("RGBA")
            assert image.getpixel((10, 10))[3] == 0
            assert image.getpixel((600, 400)) == (255, 0, 0, 255)
        control = image_of(ok(options_run["background_control"])).convert("RGBA")
        assert control.getpixel((10, 10)) == (255, 255, 255, 255)

    def test_pdf_is_a_pdf_on_the_paper_asked_for(self, options_run: Any) -> None:
        if result := self.option_result(options_run, "pdf"):
            data = file_of(ok(result))
            assert result.format == "pdf" and data.startswith(b"%PDF-")
            assert result.location is not None and result.location.endswith(".pdf")
            assert (result.width, result.height) == (None, None)
            assert paper_is(data, (595, 842))  # A4 in points
            assert fills(data, "1 0 0 rg")  # the red background is printed
        if result := self.option_result(options_run, "pdf_paper"):
            data = file_of(ok(result))
            assert paper_is(data, (792, 612))  # Letter, landscape
            assert not fills(data, "1 0 0 rg")  # no background

    # -- metadata ------------------------------------------------------------------------

    def test_error_pages_are_captured_with_status_and_title(self, options_run: Any) -> None:
        result = ok(options_run["status_404"])
        assert (result.http_status, result.title) == (404, "Status 404")

    def test_redirect_reports_the_final_url(self, options_run: Any) -> None:
        result = ok(options_run["redirect"])
        assert result.final_url is not None and result.final_url.endswith("/solid.html")
        assert (result.http_status, result.title) == (200, "solid")
        assert result.sha256 is not None and len(result.sha256) == 64
        assert result.location is not None
        assert result.bytes == Path(result.location.removeprefix("file://")).stat().st_size

    def test_image_nearly_matches_the_reference_engine(
        self, options_run: Any, page_server: PageServer, workdir: Path
    ) -> None:
        if self.reference_engine is None or self.reference_engine == self.engine:
            pytest.skip("this engine is the reference")
        ours = image_of(ok(options_run["simple"])).convert("RGB")
        storage = LocalStorage(str(workdir / "reference"))

        async def reference() -> ShotResult:
            engine = self.make_engine(self.reference_engine)
            await engine.open()
            try:
                request = request_for(page_server, 1, OPTION_CASES["simple"])
                return await capture_request(request, engine, storage)
            finally:
                await engine.close()

        theirs = image_of(ok(asyncio.run(reference()))).convert("RGB")
        assert ours.size == theirs.size
        differing, total = pixel_difference(ours, theirs)
        # Text anti-aliasing may differ by a few pixels; layout and colours may not.
        assert differing / total < 0.01, f"{differing} of {total} pixels differ"

    # -- hostile pages -------------------------------------------------------------------

    def _hostile_failed_in_time(self, result: ShotResult, *types: str) -> None:
        assert result.status == "failed", result
        assert result.error is not None and result.error["type"] in types, result.error
        assert (result.timings["total_ms"] or 0) < (HOSTILE_TIMEOUT + GRACE_S) * 1000

    def test_server_that_never_answers_times_out(self, hostile_run: Any) -> None:
        self._hostile_failed_in_time(hostile_run["hang"], "NavigationTimeout")

    def test_page_that_never_finishes_loading_times_out(self, hostile_run: Any) -> None:
        self._hostile_failed_in_time(hostile_run["never_loads"], "NavigationTimeout")

    def test_endless_javascript_loop_is_cut_off(self, hostile_run: Any) -> None:
        self._hostile_failed_in_time(hostile_run["jsloop"], "NavigationTimeout", "BrowserCrashed")

    def test_dialogs_are_dismissed(self, hostile_run: Any) -> None:
        result = ok(hostile_run["dialogs"])
        assert result.title == "dialogs done"

    def test_popups_are_closed_and_the_opener_captured(self, hostile_run: Any) -> None:
        assert ok(hostile_run["popups"]).title == "popup"

    def test_downloads_are_refused(
        self, hostile_run: Any, page_server: PageServer, workdir: Path
    ) -> None:
        self._hostile_failed_in_time(hostile_run["download"], "DownloadRefused")
        assert not hostile_run["download"].transient
        assert "/download" in page_server.seen.paths()
        # and the file was not saved anywhere we can see
        assert not list(Path.cwd().glob("file.bin*"))
        assert not list(workdir.rglob("file.bin*"))
        assert not list((Path.home() / "Downloads").glob("file.bin*"))

    def test_redirect_loop_fails_as_such(self, hostile_run: Any) -> None:
        self._hostile_failed_in_time(hostile_run["redirect_loop"], "RedirectLoop")

    def test_next_job_after_hostile_pages_works(self, hostile_run: Any) -> None:
        assert ok(hostile_run["after"]).title == "solid"

    def test_starting_the_browser_leaves_the_event_loop_free(self) -> None:
        # A worker's jobs share one event loop: a launch (at start, and every relaunch after
        # a crash, a wedge or recycling) that blocks it stops every other job's clock.
        async def scenario() -> tuple[float, float]:
            engine = self.make_engine()
            stalls: list[float] = []
            running = True

            async def tick() -> None:
                last = time.monotonic()
                while running:
                    await asyncio.sleep(0.01)
                    now = time.monotonic()
                    stalls.append(now - last)
                    last = now

            ticker = asyncio.create_task(tick())
            await asyncio.sleep(0.05)
            started = time.monotonic()
            try:
                await engine.open()
                took = time.monotonic() - started
            finally:
                running = False
                await ticker
                await engine.close()
            return took, max(stalls)

        # One wall-clock sample on a busy machine can catch the whole process scheduled out
        # for a moment; a launch that blocks the loop stands it for most of the launch every
        # time, so the best of three tries tells the two apart.
        tries = []
        for _ in range(3):
            took, stall = asyncio.run(scenario())
            tries.append(f"open() took {took:.2f}s, the loop stood {stall:.2f}s")
            if stall < max(0.5, took / 2):
                return
        raise AssertionError("; ".join(tries))

    def test_after_a_wedged_page_the_next_page_works_at_once_under_load(
        self, page_server: PageServer, workdir: Path
    ) -> None:
        wedged = Case("/jsloop.html", {"timeout": WEDGE_TIMEOUT})
        ordinary = Case("/solid.html", {"timeout": WEDGE_TIMEOUT})
        # Given a machine whose every core is busy with other work
        with cpu_load():
            # When one job slot gets a page whose script never yields, then that page again
            # (its retry), then an ordinary page
            first, retry, after = self._sequence(page_server, workdir, [wedged, wedged, ordinary])
        # Then the wedged page fails as a timeout, the same on every engine, never as a
        # crash, and in time
        for result in (first, retry):
            assert result.status == "failed", result
            assert result.error == {
                "type": "NavigationTimeout",
                "message": f"{page_server.base}/jsloop.html did not finish within its "
                f"{WEDGE_TIMEOUT:g}s timeout",
            }
            assert (result.timings["total_ms"] or 0) < (WEDGE_TIMEOUT + GRACE_S) * 1000
        # and the ordinary page after it comes out right on its first attempt
        assert ok(after).title == "solid" and after.attempts == 1
        assert close(pixel_of(after), RED)

    # -- isolation, address policy, crash ----------------------------------------------

    def test_jobs_cannot_see_each_others_cookies_or_storage(
        self, page_server: PageServer, workdir: Path
    ) -> None:
        storage = LocalStorage(str(workdir / "isolation"))

        async def scenario() -> list[str | None]:
            engine = self.make_engine(concurrency=2)
            await engine.open()
            try:
                # Given a job whose page sets a cookie, localStorage and sessionStorage
                setter = request_for(page_server, 1, Case("/set-cookie", {}))
                ok(await capture_request(setter, engine, storage))
                # When later jobs on the same engine, one after another and at once, read them
                readers = [
                    request_for(page_server, n, Case("/cookies.html", {})) for n in (2, 3, 4)
                ]
                first = await capture_request(readers[0], engine, storage)
                rest = await asyncio.gather(
                    *(capture_request(r, engine, storage) for r in readers[1:])
                )
                return [ok(r).title for r in (first, *rest)]
            finally:
                await engine.close()

        # Then none of them sees anything
        assert asyncio.run(scenario()) == ["no-cookie no-local no-session"] * 3
        cookies = [
            r["headers"].get("Cookie")
            for r in page_server.seen.requests
            if r["path"] == "/cookies.html"
        ]
        assert cookies and set(cookies) == {None}

    def _sequence(self, server: PageServer, workdir: Path, cases: list[Case]) -> list[ShotResult]:
        """Run ``cases`` one after another on one engine with a single job slot, so that a
        reused browser state would be handed from each job to the next."""
        storage = LocalStorage(str(workdir / "sequence"))

        async def scenario() -> list[ShotResult]:
            engine = self.make_engine(concurrency=1)
            await engine.open()
            try:
                return [
                    await capture_request(request_for(server, n, case), engine, storage)
                    for n, case in enumerate(cases, 1)
                ]
            finally:
                await engine.close()

        results = asyncio.run(scenario())
        assert_no_browser_left()
        return results

    def test_http_auth_does_not_carry_over_to_the_next_job(
        self, page_server: PageServer, workdir: Path
    ) -> None:
        # Given a job that logs in with HTTP Basic credentials in its URL, between two that
        # do not, all on one engine with a single job slot
        host = page_server.base.removeprefix("http://")
        storage = LocalStorage(str(workdir / "auth"))

        async def scenario() -> list[ShotResult]:
            engine = self.make_engine(concurrency=1)
            await engine.open()
            try:
                urls = [
                    f"{page_server.base}/auth",
                    f"http://user:secret@{host}/auth",
                    f"{page_server.base}/auth",
                ]
                out = []
                for n, url in enumerate(urls, 1):
                    request = ShotRequest(
                        id=f"conformance:{n}", line=n, url=url, allow_private=True
                    )
                    out.append(await capture_request(request, engine, storage))
                return out
            finally:
                await engine.close()

        before, authed, after = asyncio.run(scenario())
        assert before.status == "failed" and not before.transient
        assert before.error is not None and before.error["type"] == "AuthenticationRequired"
        assert (ok(authed).http_status, authed.title) == (200, "authed")
        # Then the next job on the same engine is not logged in
        assert after.status == "failed"
        assert after.error is not None and after.error["type"] == "AuthenticationRequired"

    def test_http_auth_from_a_pages_script_does_not_carry_over(
        self, page_server: PageServer, workdir: Path
    ) -> None:
        auth, login = Case("/auth", {}), Case("/xhr-auth.html", {"wait_for": "#done"})
        # Given a job whose page logs in from script (XMLHttpRequest with a user and a
        # password), between two jobs that load /auth without credentials
        before, logged_in, after = self._sequence(page_server, workdir, [auth, login, auth])
        assert before.error is not None and before.error["type"] == "AuthenticationRequired"
        assert ok(logged_in).title == "xhr:200"
        # Then the next job on the same engine is not logged in
        assert after.status == "failed"
        assert after.error is not None and after.error["type"] == "AuthenticationRequired"

    def test_permissions_do_not_carry_over_to_the_next_job(
        self, page_server: PageServer, workdir: Path
    ) -> None:
        report = Case("/permissions.html", {"wait_for": "#done"})
        ask = Case("/permissions.html?ask=1", {"wait_for": "#done"})
        # Given the states a first job sees, and a job that asks for permissions
        first, asked, after = self._sequence(page_server, workdir, [report, ask, report])
        ok(asked)
        # Then the next job sees exactly what the first one saw
        assert ok(first).title == ok(after).title, (first.title, after.title)
        assert first.title is not None and "geolocation=" in first.title

    def test_redirect_to_a_refused_address_sends_it_nothing(self, workdir: Path) -> None:
        # Given a page server on 127.0.0.1 (admitted) and an "internal" one on 127.0.0.2
        public, internal = start_server("127.0.0.1"), start_server("127.0.0.2")
        storage = LocalStorage(str(workdir / "policy"))

        async def scenario() -> ShotResult:
            engine = self.make_engine()
            await engine.open()
            try:
                request = ShotRequest(
                    id="conformance:1",
                    line=1,
                    url=f"{public.base}/redirect?to={internal.base}/secret",
                    options=parse_options({"timeout": 10}, DEFAULT_OPTIONS),
                    allow_networks=("127.0.0.1/32",),
                )
                return await capture_request(request, engine, storage)
            finally:
                await engine.close()

        try:
            # When the engine follows the redirect
            result = asyncio.run(scenario())
        finally:
            stop_server(public)
            stop_server(internal)
        # Then the egress guard refused it and the internal server saw no request
        assert result.status == "failed"
        assert result.error is not None and result.error["type"] == "BlockedAddress"
        assert "127.0.0.2" in result.error["message"]
        assert internal.seen.requests == []
        assert "/redirect" in public.seen.paths()

    def test_browser_crash_mid_job_is_transient_and_the_next_job_works(
        self, page_server: PageServer, workdir: Path
    ) -> None:
        storage = LocalStorage(str(workdir / "crash"))

        async def scenario() -> tuple[ShotResult, ShotResult]:
            engine = self.make_engine(concurrency=1)
            await engine.open()
            try:
                slow = request_for(page_server, 1, Case("/slow?ms=4000&crash=1", {"timeout": 15}))
                job = asyncio.create_task(capture_request(slow, engine, storage))
                deadline = time.monotonic() + 15
                # (other tests of the class requested /slow too: wait for this job's request)
                while not any(
                    r["path"] == "/slow" and "crash" in r["query"]
                    for r in list(page_server.seen.requests)
                ):
                    assert time.monotonic() < deadline, "the slow page was never requested"
                    await asyncio.sleep(0.05)
                # When every browser process is killed mid-job (a driver, if any, survives)
                victims = browser_processes(name="chromium")
                assert victims, "no browser process found under this test process"
                for pid in victims:
                    os.kill(pid, signal.SIGKILL)
                crashed = await job
                after = await capture_request(
                    request_for(page_server, 2, Case("/solid.html", {})), engine, storage
                )
                return crashed, after
            finally:
                await engine.close()

        crashed, after = asyncio.run(scenario())
        # Then the job fails as a crash, which is worth retrying, and the engine recovers
        assert crashed.status == "failed"
        assert crashed.error is not None and crashed.error["type"] == "BrowserCrashed"
        assert crashed.transient
        assert ok(after).title == "solid"
        assert browser_processes() == []

    def test_capabilities_are_declared(self) -> None:
        entry = get_registry().engine_entry(self.engine)
        assert entry.capabilities.formats, "an engine must encode at least one format"
        assert "png" in entry.capabilities.formats
        json.dumps(entry.capabilities.describe())
