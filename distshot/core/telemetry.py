"""Events an engine reports about its browsers, for whoever counts them.

Engines must not depend on a metrics library (a third-party engine knows nothing of
Prometheus), and the worker's metrics live in another module that engines must not import.
So an engine calls ``emit``; the worker's metrics middleware subscribes. With nobody
subscribed (``distshot shoot``, tests), an event costs one empty loop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("distshot.telemetry")

#: A browser (or a driver with its browser) was started.
BROWSER_LAUNCH = "browser_launch"
#: A browser was retired; ``reason`` says why: jobs, memory or crash.
BROWSER_RECYCLE = "browser_recycle"

Listener = Callable[..., None]
_listeners: list[Listener] = []


def subscribe(listener: Listener) -> None:
    _listeners.append(listener)


def unsubscribe(listener: Listener) -> None:
    if listener in _listeners:
        _listeners.remove(listener)


def emit(event: str, **fields: Any) -> None:
    """Tell every listener; a listener's bug is logged, never the engine's failure."""
    for listener in list(_listeners):
        try:
            listener(event, **fields)
        except Exception:
            logger.exception("telemetry listener failed on %s", event)
