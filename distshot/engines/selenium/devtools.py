"""The selenium engine's second channel to Chromium: one browser-level DevTools websocket.

chromedriver's ``execute_cdp_cmd`` speaks to one page, and a page may not create browser
contexts, so the engine keeps a connection of its own to the browser (websocket-client,
blocking calls from any thread). Its reader thread answers calls, feeds each job's page its
events (``PageWatch``), dismisses dialogs and closes pop-ups.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ...core.options import CaptureOptions
from ..cdp_capture import auth_answer
from ..lanes import JobTraces

if TYPE_CHECKING:
    from ..blocking import Blocker

logger = logging.getLogger("distshot.engines.selenium")


class CdpError(Exception):
    """A DevTools command failed (the message is Chromium's)."""


class CdpClosed(CdpError):
    """The DevTools connection is gone: the browser died or is being shut down."""


@dataclass
class _Reply:
    done: threading.Event = field(default_factory=threading.Event)
    message: dict[str, Any] | None = None


@dataclass
class _Pending:
    cdp: Cdp
    method: str
    ident: int
    reply: _Reply

    def result(self, timeout: float) -> dict[str, Any]:
        if not self.reply.done.wait(max(0.0, timeout)):
            self.cdp._drop(self.ident)
            raise TimeoutError(f"DevTools {self.method} did not answer within {timeout:.1f}s")
        message = self.reply.message or {}
        if "error" in message:
            error = message["error"]
            if error.get("code") == "closed":
                raise CdpClosed(f"DevTools connection closed during {self.method}")
            raise CdpError(f"{self.method}: {error.get('message', error)}")
        result: dict[str, Any] = message.get("result", {})
        return result


class PageWatch:
    """What one job's page did, from DevTools events (written by the reader thread)."""

    def __init__(self, target_id: str, traces: JobTraces, blocker: Blocker | None = None) -> None:
        self.target_id = target_id
        #: Answers the page's paused requests (the reader thread asks it; None: let go).
        self.blocker = blocker
        self.session_id: str | None = None
        self.cond = threading.Condition()
        self.lifecycle: dict[str, set[str]] = {}  # loader id -> lifecycle events seen
        self.status: dict[str, int] = {}  # loader id -> the document's HTTP status
        self.documents: set[str] = set()  # request ids of main-frame document loads
        self.loader: str | None = None  # the committed document's loader id
        self.url: str | None = None
        self.error_page = False
        self.failure: str | None = None
        self.failed_at = 0.0
        self.download: str | None = None
        self.crashed = False
        self.closed = False
        #: What the job leaves in its page: what a reset must undo, or what forbids keeping
        #: the page (``lanes.why_not_reuse``). Read with ``cond`` held.
        self.traces = traces
        self.blank = False  # the page shows about:blank (after a reset)
        #: The job's options when it has ``http_credentials``: the reader answers its Fetch
        #: events (``fetch_reply``). Requests whose challenge was answered once already.
        self.auth: CaptureOptions | None = None
        self.answered: set[str] = set()

    def fetch_reply(self, method: str, params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """The answer to a Fetch event of a job with ``http_credentials`` (reader thread):
        a paused request goes on; a challenge gets the credentials once, then is cancelled
        (they were refused), as the pyppeteer engine does."""
        if method == "Fetch.requestPaused" or self.auth is None:
            return "Fetch.continueRequest", {"requestId": params["requestId"]}
        answer = auth_answer(self.auth, params)
        if params["requestId"] in self.answered:
            answer["authChallengeResponse"] = {"response": "CancelAuth"}
        self.answered.add(params["requestId"])
        return "Fetch.continueWithAuth", answer

    def on_event(self, method: str, params: dict[str, Any]) -> None:
        with self.cond:
            self._apply(method, params)
            self.cond.notify_all()

    def _apply(self, method: str, params: dict[str, Any]) -> None:
        main = params.get("frameId") == self.target_id
        if method == "Network.requestWillBeSent":
            self.traces.saw_request(
                params["request"]["url"],
                document=params.get("type") == "Document",
                main_frame=main,
                top_url=self.url,
            )
        elif method == "Network.responseReceived":
            self.traces.saw_response(params["response"]["status"])
        elif method == "Target.attachedToTarget" and params["targetInfo"]["type"] == "iframe":
            # Cross-site frames run in processes of their own; their events go to sessions
            # nobody watches, so what they stored is unknown.
            self.traces.cross_site_frame = True
        if method == "Page.lifecycleEvent" and main:
            self.lifecycle.setdefault(params["loaderId"], set()).add(params["name"])
        elif method == "Page.frameNavigated":
            frame = params["frame"]
            if frame.get("parentId") or frame["id"] != self.target_id:
                return
            url = frame["url"] + frame.get("urlFragment", "")
            self.blank = url == "about:blank"
            if url.startswith("chrome-error:"):
                self.error_page = True
            elif not self.blank:
                self.loader, self.url = frame["loaderId"], url
                self.error_page, self.failure = False, None
        elif method == "Page.navigatedWithinDocument" and main:
            self.url = params["url"]
        elif method == "Network.requestWillBeSent" and main and params.get("type") == "Document":
            self.documents.add(params["requestId"])
            if "redirectResponse" not in params:
                self.failure = None  # a new navigation supersedes an aborted one
        elif method == "Network.responseReceived" and main and params.get("type") == "Document":
            self.status[params["loaderId"]] = params["response"]["status"]
        elif method == "Network.loadingFailed" and params["requestId"] in self.documents:
            self.failure = params.get("errorText") or "net::ERR_FAILED"
            self.failed_at = time.monotonic()
        elif method == "Browser.downloadWillBegin":
            self.download = params.get("url") or "?"
        elif method in ("Inspector.targetCrashed", "Target.targetCrashed"):
            self.crashed = True
        elif method in ("Inspector.detached", "Target.detachedFromTarget"):
            self.closed = True

    def saw_popup(self) -> None:
        with self.cond:
            self.traces.popup = True

    def wait(self, ready: Callable[[], bool], deadline: float, stop: threading.Event) -> bool:
        """Wait until ``ready()`` (checked under the lock) or the deadline; False on time out."""
        with self.cond:
            while not ready():
                left = deadline - time.monotonic()
                if left <= 0 or stop.is_set():
                    return False
                self.cond.wait(min(left, 0.25))
            return True


class Cdp:
    """A browser-level DevTools connection (websocket-client, blocking calls) with a reader
    thread that answers calls, feeds job pages their events, dismisses dialogs and closes
    pop-ups. Calls may come from any thread."""

    def __init__(self, address: str, on_lost: Callable[[], None]) -> None:
        import websocket

        # The browser is on loopback: never through an HTTP proxy from the environment.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"http://{address}/json/version", timeout=10) as answer:
            url = json.load(answer)["webSocketDebuggerUrl"]
        self._ws = websocket.create_connection(
            url, timeout=10, suppress_origin=True, enable_multithread=True
        )
        self._ws.settimeout(None)
        self._on_lost = on_lost
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._replies: dict[int, _Reply | None] = {}
        self._sessions: dict[str, PageWatch] = {}
        self._targets: dict[str, PageWatch] = {}
        #: Sessions of blocking pages' cross-site frames -> their page's watch (its blocker).
        self._frames: dict[str, PageWatch] = {}
        #: browser context id -> its job's page (None until that page exists): any other
        #: page in the context is a pop-up and is closed.
        self._contexts: dict[str, str | None] = {}
        self.closed = False
        self._closing = False
        self._reader = threading.Thread(target=self._read, name="distshot-cdp", daemon=True)
        self._reader.start()

    # calls

    def call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        timeout: float,
        session: str | None = None,
    ) -> dict[str, Any]:
        return self.begin(method, params, session=session).result(timeout)

    def begin(
        self, method: str, params: dict[str, Any] | None = None, *, session: str | None = None
    ) -> _Pending:
        """Send now, read the answer later: lets the browser work while we do something else."""
        reply = _Reply()
        ident = self._send(method, params, session, reply)
        return _Pending(self, method, ident, reply)

    def _drop(self, ident: int) -> None:
        with self._lock:
            self._replies.pop(ident, None)

    def post(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None
    ) -> None:
        """Send without waiting for the answer (from the reader thread too)."""
        with contextlib.suppress(Exception):
            self._send(method, params, session, None)

    def _send(
        self, method: str, params: dict[str, Any] | None, session: str | None, reply: _Reply | None
    ) -> int:
        message: dict[str, Any] = {"method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        with self._lock:
            if self.closed:
                raise CdpClosed(f"DevTools connection closed before {method}")
            ident = message["id"] = next(self._ids)
            self._replies[ident] = reply
        try:
            self._ws.send(json.dumps(message))
        except Exception as exc:
            with self._lock:
                self._replies.pop(ident, None)
            raise CdpClosed(f"DevTools connection lost during {method}: {exc}") from None
        return ident

    # job pages

    def expect_context(self, context_id: str) -> None:
        with self._lock:
            self._contexts[context_id] = None

    def watch(self, watch: PageWatch, session_id: str) -> None:
        with self._lock:
            watch.session_id = session_id
            self._sessions[session_id] = watch
            self._targets[watch.target_id] = watch

    def forget(self, target_id: str, session_id: str, context_id: str) -> None:
        with self._lock:
            self._sessions.pop(session_id, None)
            for frame in [s for s, w in self._frames.items() if w.session_id == session_id]:
                del self._frames[frame]
            self._targets.pop(target_id, None)
            self._contexts.pop(context_id, None)

    # reading

    def _read(self) -> None:
        from websocket import WebSocketException

        try:
            while True:
                try:
                    raw = self._ws.recv()
                except (WebSocketException, OSError):
                    break  # the browser, or its DevTools socket, went away
                if not raw:
                    break
                try:
                    message = json.loads(raw)
                except ValueError:
                    logger.warning("DevTools sent a frame that is not JSON; ignored")
                    continue
                self._dispatch(message)
        except Exception:
            # A bug of ours, not the browser's end: say so loudly. The connection is then
            # treated as lost (its jobs fail and the browser is replaced), as it must be:
            # nobody reads its events any more.
            logger.exception("the DevTools reader failed; treating the browser as lost")
        finally:
            self._lost()

    def _dispatch(self, message: dict[str, Any]) -> None:
        if "id" in message:
            with self._lock:
                reply = self._replies.pop(message["id"], None)
            if reply is not None:
                reply.message = message
                reply.done.set()
            return
        method: str = message.get("method", "")
        params: dict[str, Any] = message.get("params", {})
        session = message.get("sessionId")
        if method == "Page.javascriptDialogOpening" and session:
            self.post("Page.handleJavaScriptDialog", {"accept": False}, session)
        elif method == "Target.targetCreated":
            self._close_popup(params["targetInfo"])
        with self._lock:
            if session is not None:
                watch = self._sessions.get(session)
            elif method == "Browser.downloadWillBegin":
                watch = self._targets.get(params.get("frameId", ""))
            elif method == "Target.targetCrashed":
                watch = self._targets.get(params.get("targetId", ""))
            elif method == "Target.detachedFromTarget":
                watch = self._sessions.get(params.get("sessionId", ""))
            else:
                watch = None
        if method == "Target.attachedToTarget" and params.get("waitingForDebugger"):
            self._hold_frame(watch, params["sessionId"])
        elif method == "Target.detachedFromTarget":
            with self._lock:
                self._frames.pop(params.get("sessionId", ""), None)
        if method == "Fetch.authRequired" and watch is not None and session is not None:
            self.post(*watch.fetch_reply(method, params), session)  # a job's credentials
            return
        if method == "Fetch.requestPaused" and session is not None:
            # Answered from this thread at once: the page waits for every paused request.
            if watch is None:
                with self._lock:
                    watch = self._frames.get(session)  # a blocking page's cross-site frame
            blocker = watch.blocker if watch is not None else None
            if blocker is not None:
                call = blocker.answer(params)
                self.post(call.method, call.params, session)
            else:
                self.post("Fetch.continueRequest", {"requestId": params["requestId"]}, session)
            return
        if watch is not None:
            watch.on_event(method, params)

    def _hold_frame(self, watch: PageWatch | None, child: str) -> None:
        """A cross-site frame of a blocking page, held at its start (the page's auto-attach
        waits for the debugger only then): its own interception on, then let it run."""
        blocker = watch.blocker if watch is not None else None
        if watch is None or blocker is None:
            self.post("Runtime.runIfWaitingForDebugger", {}, child)
            return
        with self._lock:
            self._frames[child] = watch
        for call in blocker.child_calls():
            self.post(call.method, call.params, child)

    def _close_popup(self, info: dict[str, Any]) -> None:
        """Close any page but the job's own in a job's context, and tell the job's page:
        the pop-up's requests and storage went unwatched, so its context is not reused."""
        if info.get("type") != "page":
            return
        with self._lock:
            context = info.get("browserContextId", "")
            if context not in self._contexts:
                return
            page = self._contexts[context]
            if page is None:  # the job's own page: the first one
                self._contexts[context] = info["targetId"]
                return
            if page == info["targetId"]:
                return
            opener = self._targets.get(page)
        self.post("Target.closeTarget", {"targetId": info["targetId"]})
        if opener is not None:
            opener.saw_popup()

    def _lost(self) -> None:
        with self._lock:
            self.closed = True
            replies = [r for r in self._replies.values() if r is not None]
            self._replies.clear()
            watches = list(self._targets.values())
        for reply in replies:
            reply.message = {"error": {"code": "closed"}}
            reply.done.set()
        for watch in watches:
            with watch.cond:
                watch.closed = True
                watch.cond.notify_all()
        if not self._closing:
            self._on_lost()

    def expect_close(self) -> None:
        self._closing = True

    def close(self) -> None:
        self._closing = True
        with contextlib.suppress(Exception):
            self._ws.abort()  # type: ignore[no-untyped-call]
        with contextlib.suppress(Exception):
            self._ws.shutdown()  # type: ignore[no-untyped-call]
