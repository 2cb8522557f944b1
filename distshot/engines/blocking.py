"""Requests refused inside the browser, and consent popups handled: the Blocking options, once
for every engine that speaks CDP.

How a request is refused: the job's page enables the Fetch domain, so Chromium pauses every
request before it leaves the browser and asks; each engine hands the ``Fetch.requestPaused``
event to the job's ``Blocker`` and sends back what ``Blocker.answer`` says: fail it with
``BlockedByClient`` (as an extension's block would) or let it go. Only the options' types are
paused when nothing else needs a verdict, so ``block_resources`` alone costs no round trip per
other request. WebSockets are never paused by the Fetch domain, and on this Chromium
``Network.setBlockedURLs`` did not stop them either: a blocked page gets a WebSocket that
fails at once (a script added before the page's own, ``_NO_SOCKETS``).

The ad and tracker filters are EasyList and EasyPrivacy, matched by ``adblock`` (the Python
bindings of Brave's adblock-rust, MIT or Apache-2.0). Chosen over ``braveblock`` (also
adblock-rust, newer but network rules only, with its own copies of the lists): ``adblock``
also answers cosmetic rules (the selectors that hide an ad's empty slot), tells first from
third party from the page's URL, and installs from PyPI as one abi3 wheel for every Python 3.
Its last release is from 2022; the engine it binds is Brave's, and the lists' syntax has not
changed in ways its matcher misses (tested on the Debian lists). Each list is compiled once per
process, on the first job that asks for it (``filter_engine``), about 0.1 s (docs/benchmarks.md).

The lists come from Debian's ``webext-ublock-origin-chromium`` (uBlock Origin's bundled
copies), extracted by ``make filter-lists`` into ``DEFAULT_FILTER_DIR``; the worker settings
``ad_filters`` and ``tracker_filters`` name newer files to use instead.
"""

from __future__ import annotations

import fnmatch
import functools
import itertools
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.errors import ConfigError
from ..core.options import CaptureOptions
from .cdp_capture import Call, Steps, evaluate

if TYPE_CHECKING:
    import adblock

#: Where ``make filter-lists`` puts EasyList and EasyPrivacy (inside the environment that
#: runs distshot, so a container built with ``make venv filter-lists`` carries them).
DEFAULT_FILTER_DIR = Path(sys.prefix) / "share" / "distshot" / "filterlists"
DEFAULT_LISTS = {"ads": "easylist.txt", "trackers": "easyprivacy.txt"}

#: ``block_resources`` names -> CDP's resource types (Network.ResourceType).
CDP_TYPES = {
    "image": ("Image",),
    "media": ("Media",),
    "font": ("Font",),
    "stylesheet": ("Stylesheet",),
    "script": ("Script",),
    "xhr": ("XHR", "Fetch"),
    "websocket": ("WebSocket",),
}
#: What ``other`` covers: every type a page loads that has no name of its own above (never
#: a frame's document: that is the page).
OTHER_TYPES = (
    "TextTrack",
    "EventSource",
    "Manifest",
    "SignedExchange",
    "Ping",
    "CSPViolationReport",
    "Prefetch",
    "Other",
)
#: CDP's resource types -> the request types filter lists name ($script, $image...).
_ADBLOCK_TYPES = {
    "Document": "sub_frame",  # a main frame's document is never asked about
    "Stylesheet": "stylesheet",
    "Image": "image",
    "Media": "media",
    "Font": "font",
    "Script": "script",
    "XHR": "xmlhttprequest",
    "Fetch": "xmlhttprequest",
    "WebSocket": "websocket",
    "Ping": "ping",
    "CSPViolationReport": "csp_report",
}


@functools.cache
def filter_engine(path: str) -> adblock.Engine:
    """The compiled filter list at ``path``: once per worker process, never per job."""
    import adblock

    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ConfigError(
            f"cannot read the filter list {path}: {exc.strerror or exc} "
            "(run `make filter-lists`, or set ad_filters / tracker_filters)"
        ) from None
    filters = adblock.FilterSet()
    filters.add_filter_list(text)
    return adblock.Engine(filters, optimize=True)


def list_path(kind: str, configured: str | None) -> str:
    """The file of the ``kind`` ("ads", "trackers") list: the configured one, else Debian's."""
    return configured or str(DEFAULT_FILTER_DIR / DEFAULT_LISTS[kind])


@dataclass
class Blocker:
    """One job's blocking: which requests to refuse, and how many were refused."""

    opts: CaptureOptions
    #: The compiled lists the job's options ask for.
    lists: tuple[adblock.Engine, ...] = ()
    #: The page's URL: the first party for the lists, the page the cosmetic rules are for.
    page_url: str = ""
    #: The job's main frame (its document is the page: never refused).
    main_frame: str | None = None
    blocked: int = 0
    #: What ``start`` asked the Fetch domain to pause (cross-site frames get the same).
    patterns: list[dict[str, str]] = field(default_factory=list)
    #: ``block_urls``: globs, matched against the whole URL, and regexes, searched in it.
    _globs: tuple[re.Pattern[str], ...] = field(default=(), repr=False)
    _regexes: tuple[re.Pattern[str], ...] = field(default=(), repr=False)

    @classmethod
    def for_job(
        cls, opts: CaptureOptions, url: str, ad_filters: str | None, tracker_filters: str | None
    ) -> Blocker | None:
        """The job's blocker, or None when its options refuse nothing."""
        if not opts.blocks_requests:
            return None
        lists = []
        if opts.block_ads:
            lists.append(filter_engine(list_path("ads", ad_filters)))
        if opts.block_trackers:
            lists.append(filter_engine(list_path("trackers", tracker_filters)))
        globs = tuple(re.compile(fnmatch.translate(p)) for p in opts.block_urls if p[:3] != "re:")
        regexes = tuple(re.compile(p[3:]) for p in opts.block_urls if p[:3] == "re:")
        return cls(opts, tuple(lists), page_url=url, _globs=globs, _regexes=regexes)

    @functools.cached_property  # asked for every paused request
    def _types(self) -> frozenset[str]:
        names = self.opts.block_resources
        types = {t for name in names for t in CDP_TYPES.get(name, ())}
        if "other" in names:
            types.update(OTHER_TYPES)
        return frozenset(types)

    def start(
        self, first_on_page: bool = True, attach_frames: bool = True, handle_auth: bool = False
    ) -> Steps[None]:
        """Turn interception on for the job's page, and learn its main frame.
        ``first_on_page``: the page has not served a job with these options before.
        ``handle_auth``: the job has HTTP credentials, answered on ``Fetch.authRequired``
        (a session has one Fetch interception: a second ``Fetch.enable`` would replace this).
        ``attach_frames``: intercept in cross-site frames too, through the page's session
        (the engine then hands ``on_event`` the Target events); an engine that attaches to
        them itself passes False and runs ``child_calls`` on each new frame's session."""
        tree = yield Call("Page.getFrameTree", {})
        self.main_frame = tree["frameTree"]["frame"]["id"]
        types = self._types - {"WebSocket"}
        if self._globs or self._regexes or self.lists or handle_auth:
            patterns = [{"urlPattern": "*", "requestStage": "Request"}]
        else:  # only types: Chromium pauses those alone
            patterns = [
                {"urlPattern": "*", "resourceType": t, "requestStage": "Request"}
                for t in sorted(types)
            ]
        if patterns:
            auth = {"handleAuthRequests": True} if handle_auth else {}
            yield Call("Fetch.enable", {"patterns": patterns, **auth})
            self.patterns = patterns
            if attach_frames:
                # Cross-site frames (and workers) run in targets of their own, whose requests
                # this session's Fetch domain never sees: attach to each as it starts, held
                # until its own interception is on (``on_event``). Not flattened, so that the
                # page's one session carries them (Target.sendMessageToTarget) in any engine.
                yield Call(
                    "Target.setAutoAttach",
                    {"autoAttach": True, "waitForDebuggerOnStart": True, "flatten": False},
                )
        if "WebSocket" in self._types and first_on_page:
            # Neither the Fetch domain nor Network.setBlockedURLs stops a WebSocket (tried on
            # this Chromium: the handshake reached the server either way), so the page gets a
            # WebSocket that fails at once, as a blocked one does, before its scripts run.
            # Once per page: a kept page (a lane) serves only jobs that block alike.
            # (a script added on a session without the Page domain on never runs)
            yield Call("Page.enable", {})
            yield Call("Page.addScriptToEvaluateOnNewDocument", {"source": _NO_SOCKETS})

    def refuses(self, url: str, resource_type: str, frame_id: str | None) -> bool:
        """Whether the request for ``url`` is refused."""
        if resource_type == "Document" and (frame_id is None or frame_id == self.main_frame):
            self.page_url = url  # the page itself (or a redirect of it): the first party
            return False
        if resource_type in self._types:
            return True
        if any(g.match(url) for g in self._globs) or any(r.search(url) for r in self._regexes):
            return True
        kind = _ADBLOCK_TYPES.get(resource_type, "other")
        return any(
            engine.check_network_urls(url, self.page_url, kind).matched for engine in self.lists
        )

    def answer(self, params: dict[str, Any]) -> Call:
        """The call that answers a ``Fetch.requestPaused`` event."""
        request_type, frame = params.get("resourceType", ""), params.get("frameId")
        if self.refuses(params["request"]["url"], request_type, frame):
            self.blocked += 1
            return Call(
                "Fetch.failRequest",
                {"requestId": params["requestId"], "errorReason": "BlockedByClient"},
            )
        return Call("Fetch.continueRequest", {"requestId": params["requestId"]})

    def child_calls(self) -> list[Call]:
        """For a new cross-site frame's own session, held at its start: its interception on,
        then let it run."""
        calls = [Call("Fetch.enable", {"patterns": self.patterns})] if self.patterns else []
        return [*calls, Call("Runtime.runIfWaitingForDebugger", {})]

    def on_event(self, method: str, params: dict[str, Any]) -> list[Call]:
        """The calls, for the page's session, that answer one of its events: a paused request
        (``Fetch.requestPaused``), a cross-site frame attached to it (held until its own
        interception is on), or a message from such a frame (its paused requests)."""
        if method == "Fetch.requestPaused":
            return [self.answer(params)]
        if method == "Target.attachedToTarget":
            child = params["sessionId"]
            return [_to_child(child, call) for call in self.child_calls()]
        if method == "Target.receivedMessageFromTarget":
            message = json.loads(params.get("message", "{}"))
            if message.get("method") == "Fetch.requestPaused":
                return [_to_child(params["sessionId"], self.answer(message["params"]))]
        return []

    def count_sockets(self) -> Steps[None]:
        """Add the WebSockets the page's stub refused to ``blocked``."""
        if "WebSocket" in self._types:
            sockets = yield from evaluate("window.__distshotBlockedSockets || 0")
            self.blocked += int(sockets or 0)

    def cosmetic(self) -> Steps[None]:
        """Hide what the ad list's cosmetic rules name on this page (the empty slots): the
        page's own selectors, and the generic ones that match its classes and ids."""
        if not self.opts.block_ads or not self.lists:
            return
        engine = self.lists[0]
        names = yield from evaluate(_CLASSES_AND_IDS)
        resources = engine.url_cosmetic_resources(self.page_url)
        selectors = set(resources.hide_selectors)
        selectors.update(
            engine.hidden_class_id_selectors(
                names.get("classes", []), names.get("ids", []), resources.exceptions
            )
        )
        if not selectors:
            return
        # One rule per selector: a list with one selector Chromium cannot parse drops whole.
        css = "\n".join(f"{s} {{ display: none !important; }}" for s in sorted(selectors))
        yield from evaluate(f"({_ADD_STYLE})({json.dumps(css)})")


#: The Target events an engine hands ``Blocker.on_event`` besides Fetch.requestPaused.
FRAME_EVENTS = ("Target.attachedToTarget", "Target.receivedMessageFromTarget")
_child_ids = itertools.count(1)


def _to_child(session: str, call: Call) -> Call:
    """``call`` for an attached frame's session, sent through the page's own."""
    message = {"id": next(_child_ids), "method": call.method, "params": call.params}
    return Call(
        "Target.sendMessageToTarget", {"sessionId": session, "message": json.dumps(message)}
    )


def release_frame(params: dict[str, Any]) -> Call:
    """For an engine with no blocker at hand: let an attached frame run all the same."""
    return _to_child(params["sessionId"], Call("Runtime.runIfWaitingForDebugger", {}))


# A WebSocket as a blocked one behaves: closed, an error then a close event, nothing sent.
_NO_SOCKETS = """(() => {
  const Native = window.WebSocket;
  if (!Native) return;
  class WebSocket extends EventTarget {
    constructor(url) {
      super();
      window.__distshotBlockedSockets = (window.__distshotBlockedSockets || 0) + 1;
      Object.assign(this, {url: String(url), readyState: 3, protocol: "", extensions: "",
                           bufferedAmount: 0, binaryType: "blob", onopen: null,
                           onmessage: null, onerror: null, onclose: null});
      setTimeout(() => {
        const error = new Event("error");
        if (this.onerror) this.onerror(error);
        this.dispatchEvent(error);
        const close = new CloseEvent("close", {code: 1006, wasClean: false});
        if (this.onclose) this.onclose(close);
        this.dispatchEvent(close);
      });
    }
    send() {}
    close() {}
  }
  for (const state of ["CONNECTING", "OPEN", "CLOSING", "CLOSED"]) WebSocket[state] = Native[state];
  window.WebSocket = WebSocket;
})()"""

_CLASSES_AND_IDS = """(() => {
  const classes = new Set(), ids = new Set();
  for (const element of document.querySelectorAll("[class], [id]")) {
    if (element.id) ids.add(element.id);
    for (const name of element.classList) classes.add(name);
  }
  return {classes: [...classes], ids: [...ids]};
})()"""

_ADD_STYLE = """(css) => {
  const style = document.createElement("style");
  style.textContent = css;
  (document.head || document.documentElement).appendChild(style);
}"""


def after_load(opts: CaptureOptions, blocker: Blocker | None, deadline: float) -> Steps[None]:
    """What the Blocking options do to a loaded page, before the other changes to it: the
    consent popup refused, the ad slots hidden. No call for options at their defaults."""
    if opts.block_cookie_banners:
        from .consent import refuse_consent

        yield from refuse_consent(deadline)
    if blocker is not None:
        yield from blocker.count_sockets()
        yield from blocker.cosmetic()


#: The options this module carries out, for every engine that runs ``Blocker.start``,
#: answers ``Fetch.requestPaused`` with ``Blocker.answer`` and runs ``after_load``.
BLOCKING_OPTIONS = frozenset(
    {"block_resources", "block_urls", "block_ads", "block_trackers", "block_cookie_banners"}
)
