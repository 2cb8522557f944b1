"""The engine's own setting, ``start_timeout`` in the ``[engines.cdp]`` table of distshot.toml
(``EngineConfig.settings``): checked when the engine is created, and used at launch."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from distshot_engine_cdp import create
from distshot_engine_cdp.engine import CdpEngine

from distshot import enginekit as kit
from distshot.testing.processes import browser_processes


def _engine(**settings: Any) -> CdpEngine:
    engine = create(kit.EngineConfig(settings=settings))
    assert isinstance(engine, CdpEngine)
    return engine


@pytest.mark.parametrize(
    "value", ["20", "20s", 0, -1, True, None, float("nan"), float("inf"), [20]]
)
def test_a_bad_start_timeout_is_a_config_error(value: Any) -> None:
    with pytest.raises(kit.ConfigError) as caught:
        _engine(start_timeout=value)
    message = str(caught.value)
    assert "[engines.cdp] start_timeout" in message and repr(value) in message
    assert "\n" not in message


def test_an_unknown_setting_is_a_config_error() -> None:
    with pytest.raises(kit.ConfigError, match=r"\[engines.cdp\] has no setting 'start_timout'"):
        _engine(start_timout=5)


def test_a_good_start_timeout_is_used() -> None:
    assert _engine().settings.start_timeout == 20.0
    assert _engine(start_timeout=7.5).settings.start_timeout == 7.5
    assert _engine(start_timeout=3).settings.start_timeout == 3.0

    # Far too short for any Chromium to answer: the launch fails as a crash naming the
    # setting, and leaves no process behind.
    engine = _engine(start_timeout=0.001)

    async def scenario() -> None:
        try:
            with pytest.raises(kit.BrowserCrashed, match=r"start_timeout"):
                await engine.open()
        finally:
            await engine.close()

    asyncio.run(scenario())
    deadline = time.monotonic() + 10
    while browser_processes() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert browser_processes() == []
