"""The ``selenium`` engine: Selenium WebDriver and chromedriver driving Debian's Chromium.

A bounded pool of driver slots, each one chromedriver and the Chromium it started. Selenium's
API blocks, so every slot has its own thread and every call to its driver runs there, never
on the event loop. What WebDriver has no command for goes through one more DevTools
connection per slot, to the browser itself (chromedriver's ``execute_cdp_cmd`` speaks to a
page, and a page may not create browser contexts); it also watches each job's page:
lifecycle events (``load``, ``DOMContentLoaded``, Chromium's own ``networkIdle``), the
document's status, failed navigations, downloads, dialogs (dismissed) and pop-ups (closed).
Screenshots are CDP's ``Page.captureScreenshot``, full pages with ``captureBeyondViewport``,
the viewport set by ``Emulation.setDeviceMetricsOverride`` with scrollbars hidden, so images
match the other engines' pixel for pixel.

The parts, each to be read on its own:

- ``pool.py``: ``SeleniumEngine``, the pool of slots on the event loop: taking and giving
  back slots, time limits (a stuck slot is killed), recycling, shutdown.
- ``driver.py``: one chromedriver and its Chromium: start, polite quit, kill, reap.
- ``pages.py``: the slot's kept page (a browser context and its page) and one job's run on
  it: reset and kept for the next job, or thrown away (``lanes.py`` says which).
- ``job.py``: one job's navigation, waits and capture, against its deadline.
- ``devtools.py``: the DevTools connection and its reader thread (``PageWatch``).
"""

from __future__ import annotations

import os

from ...core.contracts import EngineConfig
from ...core.errors import ConfigError
from ...plugins.hookspecs import hookimpl
from .pool import CAPABILITIES, SeleniumEngine

__all__ = ["CAPABILITIES", "SeleniumEngine", "create"]


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
