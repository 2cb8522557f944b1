"""distshot-engine-cdp: an example third-party distshot engine.

distshot finds this module through the entry point in pyproject.toml::

    [project.entry-points.distshot]
    cdp = "distshot_engine_cdp"

and calls its ``distshot_engines`` hook, which registers the ``cdp`` engine. Nothing heavy is
imported here: ``distshot engines`` loads every plug-in just to list them, so the engine
module is imported only when a worker actually chooses ``cdp``.

Everything this package takes from distshot comes from ``distshot.enginekit``, the public
API for engine plug-ins; the rest of distshot is internal and may change in any release.
"""

from __future__ import annotations

from collections.abc import Callable

from distshot import enginekit as kit

__version__ = "0.1.0"

CAPABILITIES = kit.Capabilities(
    # Every option is listed explicitly (there is no "all"): an option distshot adds later
    # is rejected for this engine until the engine says it honours it. The capture steps'
    # options (emulate_media, prepare_page, capture) plus what the engine does itself:
    # viewport and device emulation, the wait, the user agent and extra headers; and the
    # egress guard's, since every job's context uses ``kit.job_egress``.
    options=kit.STEP_OPTIONS
    | kit.EGRESS_OPTIONS
    | {"width", "height", "scale", "device", "wait_until", "wait_for", "delay"}
    | {"user_agent", "headers"},
    # Page.captureScreenshot encodes WebP as well, and Page.printToPDF prints PDF.
    formats=kit.STEP_FORMATS,
    description="Chromium over its DevTools pipe, no client library",
)


def create(config: kit.EngineConfig) -> kit.Engine:
    from .engine import CdpEngine

    return CdpEngine(config)


@kit.hookimpl
def distshot_engines(
    register: Callable[[str, Callable[[kit.EngineConfig], kit.Engine], kit.Capabilities], None],
) -> None:
    register("cdp", create, CAPABILITIES)
