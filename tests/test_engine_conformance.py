"""The built-in browser engines pass the same conformance suite third-party engines run."""

from __future__ import annotations

from distshot.testing.engine_suite import EngineConformance


class TestPlaywrightConformance(EngineConformance):
    engine = "playwright"
    # Playwright is the usual reference; its own images are compared with pyppeteer's.
    reference_engine = "pyppeteer"


class TestPyppeteerConformance(EngineConformance):
    engine = "pyppeteer"


class TestSeleniumConformance(EngineConformance):
    engine = "selenium"
