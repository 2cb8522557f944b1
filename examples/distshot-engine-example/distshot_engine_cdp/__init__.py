"""distshot-engine-cdp: an example third-party distshot engine.

distshot finds this module through the entry point in pyproject.toml::

    [project.entry-points.distshot]
    cdp = "distshot_engine_cdp"

and calls its ``distshot_engines`` hook, which registers the ``cdp`` engine. Nothing heavy is
imported here: ``distshot engines`` loads every plug-in just to list them, so the engine
module is imported only when a worker actually chooses ``cdp``.
"""

from __future__ import annotations

from collections.abc import Callable

from distshot.core.contracts import Capabilities, Engine, EngineConfig
from distshot.plugins.hookspecs import hookimpl

__version__ = "0.1.0"

CAPABILITIES = Capabilities(
    # Page.captureScreenshot encodes WebP as well, so this engine offers it; every option is
    # honoured (the default Capabilities list all of them, networkidle included).
    formats=frozenset({"png", "jpeg", "webp"}),
    description="Chromium over its DevTools pipe, no client library",
)


def create(config: EngineConfig) -> Engine:
    from .engine import CdpEngine

    return CdpEngine(config)


@hookimpl
def distshot_engines(
    register: Callable[[str, Callable[[EngineConfig], Engine], Capabilities], None],
) -> None:
    register("cdp", create, CAPABILITIES)
