"""What an engine plug-in may import from distshot: the public, documented API.

Everything here keeps its name and meaning within a major version; anything else in
distshot is internal and may change in any release. The built-in engines use the same
pieces, so a plug-in written against this module behaves like them::

    from distshot import enginekit as kit

    class MyEngine(kit.Engine):
        name = "mine"
        capabilities = kit.Capabilities(options=kit.STEP_OPTIONS | {"width", "height"})

        async def capture(self, request: kit.ShotRequest) -> kit.Capture: ...

    @kit.hookimpl
    def distshot_engines(register):
        register("mine", MyEngine, MyEngine.capabilities)

The pieces:

- **The contract**: ``Engine``, ``Capabilities``, ``EngineConfig`` (its ``settings`` hold the
  ``[engines.NAME]`` table of distshot.toml), ``ShotRequest``, ``CaptureOptions``,
  ``Capture``, ``hookimpl``, and the errors an engine raises.
- **Launching Chromium**: ``launch_args`` (quiet, offline-safe flags, and the browser-wide
  safety-net egress guard as its proxy), ``translate_error`` (Chromium's net:: errors to
  ours), ``kill_process_tree`` and ``process_tree_rss``.
- **The egress guard**: ``job_egress(request)`` starts the guard for a job's address policy
  and gives the proxy its browser context must use; ``context_proxy(proxy)`` turns that into
  ``Target.createBrowserContext`` parameters. A context made without them still goes through
  the strict safety net, so forgetting fails closed. An engine whose contexts all use it
  honours ``EGRESS_OPTIONS`` (``resolve``: the guard connects to the pinned address).
- **The capture steps** (``cdp_capture``): every capture control written once as CDP calls.
  ``emulate_device`` (viewport, scale, mobile, touch) and ``emulate_media`` before
  navigation, ``prepare_page`` after it, ``capture`` for the image or PDF; run them with
  ``run_steps`` (async) or ``run_steps_blocking``. An engine that runs all of them honours
  ``STEP_OPTIONS``, ``STEP_FORMATS`` and the viewport options (width, height, scale,
  device: the user agent of a device is the engine's to set).
- **Recycling**: ``RecyclingBrowser`` (one shared browser, replaced after N jobs, past a
  memory limit or after a crash), ``BrowserSlot``, ``race_with_crash``.
- **Conformance**: ``distshot.testing.engine_suite.EngineConformance``, the pytest suite
  every engine passes.
"""

from __future__ import annotations

from .core.contracts import UNIVERSAL_OPTIONS, Capabilities, Engine, EngineConfig
from .core.egress import EgressGuard
from .core.errors import (
    AuthenticationRequired,
    BlockedAddress,
    BrowserCrashed,
    ConfigError,
    DistshotError,
    DownloadRefused,
    ElementNotFound,
    InvalidOption,
    NavigationTimeout,
    NetworkError,
    RedirectLoop,
    ScriptError,
)
from .core.models import Capture, ShotRequest
from .core.options import OPTION_NAMES, CaptureOptions
from .engines.cdp_capture import (
    FRESH,
    NO_VIEWPORT,
    STEP_FORMATS,
    STEP_OPTIONS,
    AsyncSend,
    BlockingSend,
    Call,
    Emulated,
    Shot,
    Steps,
    Viewport,
    capture,
    emulate_device,
    emulate_media,
    prepare_page,
    run_steps,
    run_steps_blocking,
)
from .engines.chromium import (
    DIRECT,
    EGRESS_OPTIONS,
    context_proxy,
    job_egress,
    kill_process_tree,
    launch_args,
    ms_since,
    process_tree_rss,
    translate_error,
)
from .engines.recycling import BrowserSlot, RecyclingBrowser, race_with_crash
from .plugins.hookspecs import hookimpl

__all__ = [
    "DIRECT",
    "EGRESS_OPTIONS",
    "FRESH",
    "NO_VIEWPORT",
    "OPTION_NAMES",
    "STEP_FORMATS",
    "STEP_OPTIONS",
    "UNIVERSAL_OPTIONS",
    "AsyncSend",
    "AuthenticationRequired",
    "BlockedAddress",
    "BlockingSend",
    "BrowserCrashed",
    "BrowserSlot",
    "Call",
    "Capabilities",
    "Capture",
    "CaptureOptions",
    "ConfigError",
    "DistshotError",
    "DownloadRefused",
    "EgressGuard",
    "ElementNotFound",
    "Emulated",
    "Engine",
    "EngineConfig",
    "InvalidOption",
    "NavigationTimeout",
    "NetworkError",
    "RecyclingBrowser",
    "RedirectLoop",
    "ScriptError",
    "Shot",
    "ShotRequest",
    "Steps",
    "Viewport",
    "capture",
    "context_proxy",
    "emulate_device",
    "emulate_media",
    "hookimpl",
    "job_egress",
    "kill_process_tree",
    "launch_args",
    "ms_since",
    "prepare_page",
    "process_tree_rss",
    "race_with_crash",
    "run_steps",
    "run_steps_blocking",
    "translate_error",
]
