"""Start an engine once before a run, so that one that cannot start at all (no browser, no
driver, a library missing in a slim container) is one line and exit 2 at start-up, not a
failed record per URL after every retry. ``distshot worker`` starts and closes one before it
becomes Dramatiq; the embedded mode opens its own engine up front instead (no second
launch) and words a failure with ``start_failure``."""

from __future__ import annotations

import asyncio
import dataclasses

from ..core.contracts import EngineConfig
from ..core.errors import ConfigError, DistshotError
from ..plugins.manager import Registry, get_registry

#: A cold Chromium starts in 1-3 s here; a busy machine can take far longer.
START_TIMEOUT = 90.0


def check_engine_starts(
    name: str,
    config: EngineConfig,
    *,
    registry: Registry | None = None,
    timeout: float = START_TIMEOUT,
) -> None:
    """Open the engine (one browser: concurrency 1) and close it again. Raises
    ``ConfigError`` naming the cause when it cannot start."""
    registry = registry or get_registry()
    try:
        engine = registry.create_engine(name, dataclasses.replace(config, concurrency=1))
    except DistshotError as exc:
        raise ConfigError(f"engine {name!r} cannot start: {exc.message}") from None

    async def start_and_stop() -> None:
        try:
            await asyncio.wait_for(engine.open(), timeout)
        finally:
            await engine.close()

    try:
        asyncio.run(start_and_stop())
    except Exception as exc:
        raise start_failure(name, exc, timeout) from None


def start_failure(name: str, exc: BaseException, timeout: float = START_TIMEOUT) -> ConfigError:
    """The one line for an engine that could not start."""
    if isinstance(exc, TimeoutError):
        return ConfigError(f"engine {name!r} did not start within {timeout:g}s")
    if isinstance(exc, DistshotError):
        return ConfigError(f"engine {name!r} cannot start: {_first_line(exc.message)}")
    # An engine plug-in's own error type: still one line.
    return ConfigError(
        f"engine {name!r} cannot start: {type(exc).__name__}: {_first_line(str(exc))}"
    )


def _first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0] if lines else "no reason given"
