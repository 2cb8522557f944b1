"""A Chromium process and a Chrome DevTools Protocol (CDP) connection to it, over a pipe.

With ``--remote-debugging-pipe`` Chromium reads commands from its fd 3 and writes replies and
events to its fd 4, one JSON object per message, each ended by a NUL byte. No port is opened,
so no other process on the machine can drive the browser, and no client library is needed:
this module is the whole protocol client (asyncio and the standard library only).

One connection carries every job: ``Target.attachToTarget(flatten=True)`` gives each page a
``sessionId`` that commands carry and events come back with (:class:`Session`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
Message = dict[str, Any]
Handler = Callable[[Message], None]

#: The largest message we accept. A full-page screenshot arrives as one base64 string in one
#: message, so this must be far above asyncio's 64 KiB default; memory is used only as needed.
MAX_MESSAGE = 1 << 30

# Python's subprocess can keep a pipe open in the child (pass_fds) but cannot renumber it to
# 3 and 4, and a preexec_fn that calls dup2 is unsafe in a threaded worker. subprocess *can*
# set the child's stdin and stdout, so the pipes arrive as fds 0 and 1 and this one-line shell
# moves them to 3 and 4; ``exec`` replaces the shell, so the process we hold is Chromium itself.
_MOVE_FDS = 'exec "$@" 3<&0 4>&1 0</dev/null 1>/dev/null'


class CdpError(Exception):
    """Chromium answered a command with an error."""


class ConnectionLost(Exception):
    """The browser (or, for a session, its page) went away before answering."""


class Browser:
    """One Chromium process driven over its DevTools pipe."""

    def __init__(self, process: asyncio.subprocess.Process, user_data_dir: str) -> None:
        self.process = process
        self.user_data_dir = user_data_dir
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Message]] = {}
        self._sessions: dict[str, Session] = {}
        self._handlers: dict[str, Handler] = {}
        self._posted: set[asyncio.Task[Message]] = set()
        self.closed: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._reader = asyncio.create_task(self._read_loop())

    @classmethod
    async def launch(cls, path: str, args: list[str]) -> Browser:
        """Start ``path`` headless with ``args`` and its own temporary profile."""
        profile = tempfile.mkdtemp(prefix="distshot-cdp-")
        argv = [path, *args, "--headless", "--remote-debugging-pipe", f"--user-data-dir={profile}"]
        argv.append("--no-startup-window")  # jobs open their own pages; no idle default tab
        try:
            process = await asyncio.create_subprocess_exec(
                "/bin/sh",
                "-c",
                _MOVE_FDS,
                "sh",
                *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,  # Chromium logs a lot; nothing we act on
                limit=MAX_MESSAGE,
            )
        except BaseException:
            shutil.rmtree(profile, ignore_errors=True)
            raise
        return cls(process, profile)

    @property
    def alive(self) -> bool:
        return not self.closed.done()

    async def send(
        self, method: str, params: Message | None = None, session_id: str | None = None
    ) -> Message:
        """Send one command and wait for its result (``CdpError`` if Chromium refuses it)."""
        if not self.alive:
            raise ConnectionLost(self.closed.result())
        message_id = next(self._ids)
        message: Message = {"id": message_id, "method": method, "params": params or {}}
        if session_id is not None:
            message["sessionId"] = session_id
        reply = self._pending[message_id] = asyncio.get_running_loop().create_future()
        try:
            assert self.process.stdin is not None
            self.process.stdin.write(json.dumps(message).encode() + b"\0")
            await self.process.stdin.drain()
            result = await reply
        except (BrokenPipeError, ConnectionResetError):
            raise ConnectionLost("the browser closed its pipe") from None
        finally:
            # On cancellation (a job's timeout) the reply may still come; it is then dropped.
            self._pending.pop(message_id, None)
        if "error" in result:
            raise CdpError(f"{method}: {result['error'].get('message', result['error'])}")
        return dict(result.get("result", {}))

    def post(
        self, method: str, params: Message | None = None, session_id: str | None = None
    ) -> None:
        """Send a command without waiting for it: for event handlers, which must not block
        the reader. Its failure is of no interest (the target may be gone already)."""
        task = asyncio.ensure_future(self.send(method, params, session_id))
        self._posted.add(task)  # a reference, so the task is not garbage-collected
        task.add_done_callback(self._posted.discard)
        task.add_done_callback(lambda done: done.cancelled() or done.exception())

    def on(self, method: str, handler: Handler) -> None:
        """Call ``handler(params)`` for each browser-level event ``method`` (one per method)."""
        self._handlers[method] = handler

    async def attach(self, target_id: str) -> Session:
        result = await self.send("Target.attachToTarget", {"targetId": target_id, "flatten": True})
        session = self._sessions[result["sessionId"]] = Session(self, result["sessionId"])
        return session

    async def _read_loop(self) -> None:
        assert self.process.stdout is not None
        reason = "the browser closed its pipe"
        try:
            while True:
                data = await self.process.stdout.readuntil(b"\0")
                self._dispatch(json.loads(data[:-1]))
        except asyncio.IncompleteReadError:
            pass  # EOF: Chromium exited or crashed
        except (asyncio.LimitOverrunError, ValueError) as exc:
            reason = f"unreadable message from the browser: {exc}"
        finally:
            self._lost(reason)

    def _dispatch(self, message: Message) -> None:
        if "id" in message:
            reply = self._pending.get(message["id"])
            if reply is not None and not reply.done():
                reply.set_result(message)
            return
        method, params = message.get("method", ""), message.get("params", {})
        session_id = message.get("sessionId")
        if session_id is None:
            if method == "Target.detachedFromTarget":
                session = self._sessions.pop(params.get("sessionId", ""), None)
                if session is not None:
                    session.end("the page was closed")
            elif (handler := self._handlers.get(method)) is not None:
                handler(params)
        elif (session := self._sessions.get(session_id)) is not None:
            session.dispatch(method, params)

    def _lost(self, reason: str) -> None:
        """The connection is gone: fail every waiter so no job waits for its own timeout."""
        if not self.closed.done():
            self.closed.set_result(reason)
        for reply in self._pending.values():
            if not reply.done():
                reply.set_exception(ConnectionLost(reason))
        for session in self._sessions.values():
            session.end(reason)
        self._sessions.clear()

    async def close(self, grace: float = 5.0) -> None:
        """Ask Chromium to quit, then terminate, then kill; reap it; delete its profile."""
        if self.alive:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.send("Browser.close"), grace)
        # Quit (Browser.close), then SIGTERM, then SIGKILL, each given ``grace`` seconds.
        for stop in (None, self.process.terminate, self.process.kill):
            if stop is not None and self.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    stop()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.process.wait(), grace)  # and reap it
                break
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        self._lost("the browser was closed")
        await _reap_helpers(self.user_data_dir, grace)
        await asyncio.to_thread(shutil.rmtree, self.user_data_dir, True)


async def _reap_helpers(profile: str, grace: float) -> None:
    """Wait until Chromium's helper processes (zygote, GPU, renderers) have followed the
    browser out, killing any still there after ``grace`` seconds. Until then they may write
    to the profile, and deleting it under them would leave a folder behind."""
    deadline = time.monotonic() + grace
    while pids := await asyncio.to_thread(_helpers, profile):
        if time.monotonic() > deadline + grace:
            return  # not even SIGKILL worked (stuck in the kernel): nothing more to do
        if time.monotonic() > deadline:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        await asyncio.sleep(0.1)


def _helpers(profile: str) -> list[int]:
    """Live processes of the browser that uses ``profile``: each names it on its command line
    (/proc, so Linux only; elsewhere this finds nothing)."""
    marker = f"--user-data-dir={profile}".encode()
    found = []
    with contextlib.suppress(OSError):
        for entry in Path("/proc").iterdir():
            with contextlib.suppress(OSError):
                if entry.name.isdigit() and marker in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
    return found


class Session:
    """One attached target: its commands carry its ``sessionId``, its events come back here."""

    def __init__(self, browser: Browser, session_id: str) -> None:
        self.browser = browser
        self.id = session_id
        self._handlers: dict[str, Handler] = {}
        #: Done (with the reason) when the page or the whole browser is gone.
        self.gone: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def on(self, method: str, handler: Handler) -> None:
        self._handlers[method] = handler

    def dispatch(self, method: str, params: Message) -> None:
        if method == "Inspector.targetCrashed":
            self.end("the page's renderer process crashed (Target crashed)")
        elif (handler := self._handlers.get(method)) is not None:
            handler(params)

    def end(self, reason: str) -> None:
        if not self.gone.done():
            self.gone.set_result(reason)

    async def send(self, method: str, params: Message | None = None) -> Message:
        return await self.until(self.browser.send(method, params, self.id))

    def post(self, method: str, params: Message | None = None) -> None:
        self.browser.post(method, params, self.id)

    async def until(self, awaitable: Awaitable[T]) -> T:
        """Await ``awaitable``, or raise ``ConnectionLost`` as soon as the page is gone: a
        crashed renderer answers nothing, and a job must not wait for its timeout to learn it."""
        task = asyncio.ensure_future(awaitable)
        try:
            waiters: set[asyncio.Future[Any]] = {task, self.gone}
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not task.done():
                task.cancel()
        if task.done() and not task.cancelled():
            return task.result()
        raise ConnectionLost(self.gone.result())
