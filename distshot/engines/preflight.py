"""Start an engine once before a run, so that one that cannot start at all (no browser, no
driver, a library missing in a slim container) is one line and exit 2 at start-up, not a
failed record per URL after every retry."""

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
    except TimeoutError:
        raise ConfigError(f"engine {name!r} did not start within {timeout:g}s") from None
    except DistshotError as exc:
        raise ConfigError(f"engine {name!r} cannot start: {_first_line(exc.message)}") from None
    except Exception as exc:  # an engine plug-in's own error type: still one line
        raise ConfigError(
            f"engine {name!r} cannot start: {type(exc).__name__}: {_first_line(str(exc))}"
        ) from None


def _first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0] if lines else "no reason given"
