"""The selenium engine's DevTools reader thread: the browser going away ends it quietly, a
frame that is not JSON is skipped, and a bug of ours is logged with its traceback (it used
to vanish into ``except Exception: pass`` and surface as a retried BrowserCrashed)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from websocket import WebSocketConnectionClosedException

from distshot.engines.selenium.devtools import Cdp


class Frames:
    """What the reader reads: the frames given, then the connection closing."""

    def __init__(self, frames: list[str]) -> None:
        self.frames: Iterator[str] = iter(frames)

    def recv(self) -> str:
        try:
            return next(self.frames)
        except StopIteration:
            raise WebSocketConnectionClosedException("closed") from None


def reader_over(frames: list[str], dispatch: Any = None) -> tuple[Cdp, list[dict[str, Any]]]:
    cdp = Cdp.__new__(Cdp)  # no browser: only the reading loop is under test
    cdp._ws = Frames(frames)  # type: ignore[assignment]
    cdp._lock = __import__("threading").Lock()
    cdp._replies = {}
    cdp._targets = {}
    cdp.closed = False
    cdp._closing = False
    lost: list[bool] = []
    cdp._on_lost = lambda: lost.append(True)
    seen: list[dict[str, Any]] = []
    cdp._dispatch = dispatch or seen.append  # type: ignore[method-assign]
    return cdp, seen


def test_the_browser_going_away_ends_the_reader_quietly(caplog: pytest.LogCaptureFixture) -> None:
    cdp, seen = reader_over(['{"method": "a"}', "not json", '{"method": "b"}'])
    with caplog.at_level(logging.WARNING, "distshot.engines.selenium"):
        cdp._read()
    assert [m["method"] for m in seen] == ["a", "b"]  # the bad frame skipped, not fatal
    assert cdp.closed
    assert [r.getMessage() for r in caplog.records] == [
        "DevTools sent a frame that is not JSON; ignored"
    ]


def test_a_bug_in_the_reader_is_logged_with_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def buggy(message: dict[str, Any]) -> None:
        raise KeyError("sessionId")

    cdp, _ = reader_over(['{"method": "a"}'], dispatch=buggy)
    with caplog.at_level(logging.ERROR, "distshot.engines.selenium"):
        cdp._read()
    assert cdp.closed  # treated as lost: its jobs fail, its browser is replaced
    (record,) = caplog.records
    assert "DevTools reader failed" in record.getMessage()
    assert record.exc_info is not None and record.exc_info[0] is KeyError
