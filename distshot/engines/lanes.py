"""When a lane (a browser context and its one page, cleaned between jobs) may serve the next
job: the isolation rules of every engine that reuses contexts (playwright, selenium).

Each engine records what a job left behind in a ``JobTraces`` (from its own events: Playwright's
request, response and page events, or the selenium engine's DevTools reader), and asks
``why_not_reuse`` at the end of the job. A reason means the lane is thrown away; None means it
is reset (``LANE_STORAGE_TYPES`` for every origin in ``traces.origins``, cookies, permissions,
history, ``window.name``) and kept. What a reset cannot undo is a reason:

==================  ==========================================================================
reason              what it guards against
==================  ==========================================================================
reuse-off           ``reuse_contexts = false``: every job gets a fresh context
failed              a job that failed may have left anything behind, half-done
credentials         Chromium keeps accepted HTTP credentials in the context's auth cache, which
                    no DevTools call clears: a URL with a user or password (the job's, or one
                    ``XMLHttpRequest.open`` built), or a 401/407 challenge; and a job given an
                    identity (cookies, storage_state, http_credentials): a session's cookie
                    set again by a response, or a script's copy of it, must not outlive it
pop-up              a pop-up shared the context, but its requests and storage were not watched
cross-site-frame    a frame on another host: its storage and requests were not all seen (an
                    out-of-process frame's events go to a session of its own)
top-level-origins   several top-level origins: permission decisions are kept per origin, and
                    only the last one's can be read
jobs                ``LANE_JOBS`` jobs served: bounds what piles up that nothing here sees
permissions         a permission decision (even a dismissed prompt) that no CDP call resets
==================  ==========================================================================

Lanes never mix user agents or what their egress guard depends on (``lane_key``): address
policies, pinned addresses (``resolve``), upstream proxies (``proxy``): a connection the egress
guard admitted under one policy, opened to one pinned address or through one proxy must never
be pooled into a job with another.
Nor locales, positions or JavaScript on and off: the emulation overrides that set them stay
on a page, and no reset undoes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ..core.models import ShotRequest
from ..core.options import CaptureOptions
from .chromium import egress_key

REUSE_OFF = "reuse-off"
FAILED = "failed"
CREDENTIALS = "credentials"
POPUP = "pop-up"
CROSS_SITE_FRAME = "cross-site-frame"
TOP_LEVEL_ORIGINS = "top-level-origins"
WORN = "jobs"
PERMISSIONS = "permissions"
#: Not a rule: the engine could not reset the lane, so it is not trusted clean.
RESET_FAILED = "reset-failed"

#: A lane serves this many jobs, then gets a fresh context.
LANE_JOBS = 100

#: HTTP statuses that ask for credentials (a server's, a proxy's).
_CHALLENGES = (401, 407)

#: Storage a page can leave behind for an origin, for ``Storage.clearDataForOrigin``. Not the
#: HTTP cache: keeping it warm is the point of reusing a context.
LANE_STORAGE_TYPES = ",".join(
    [
        "local_storage",  # clears sessionStorage too
        "indexeddb",
        "websql",
        "service_workers",
        "cache_storage",
        "file_systems",
        "shared_storage",
        "storage_buckets",
    ]
)

#: A page function: true when every permission a page can ask for is still "prompt".
#: Chromium keeps a dismissed request as "denied" for the origin and no CDP call resets that,
#: so a context whose page asked is closed rather than cleaned (on an insecure origin they
#: read "denied" from the start, so contexts for http:// sites are never reused).
PERMISSIONS_UNTOUCHED = """async () => {
  const names = ["geolocation", "notifications", "camera", "microphone", "midi",
    "clipboard-read", "persistent-storage", "idle-detection", "window-management",
    "local-fonts", "display-capture"];
  if (window.Notification && Notification.permission !== "default") return false;
  for (const name of names) {
    try {
      if ((await navigator.permissions.query({name})).state !== "prompt") return false;
    } catch (e) {}
  }
  return true;
}"""


def lane_key(request: ShotRequest, *fixed: object) -> tuple[object, ...]:
    """What a lane fixes for its lifetime: the user agent and its egress guard's key (address
    policy, pins, proxy), the locale, position and JavaScript (emulation overrides no reset
    undoes), the blocking options (a page that loaded an ad may hand it to the next job from
    its memory cache, past a blocking job's interception), plus what the engine cannot change
    on a live context (``fixed``). A lane serves only jobs with the same key."""
    opts = request.options
    return (
        opts.user_agent,
        *egress_key(request),
        opts.locale,
        opts.geolocation,
        opts.javascript_enabled,
        opts.blocking,
        *fixed,
    )


@dataclass
class JobTraces:
    """What one job left in its lane, as its engine observed it."""

    #: Every origin a request of the page went to: what the reset clears.
    origins: set[str] = field(default_factory=set)
    #: Origins of the top-level documents (redirects included).
    top_origins: set[str] = field(default_factory=set)
    credentials: bool = False
    popup: bool = False
    cross_site_frame: bool = False
    failed: bool = False
    #: Read from the page last, only for a lane that passes every other rule (a round trip).
    permissions_touched: bool = False

    @classmethod
    def start(cls, url: str, options: CaptureOptions | None = None) -> JobTraces:
        """The traces of a job for ``url``, before it sends anything (its own credentials,
        in its URL or its options, count even if its request never goes out)."""
        return cls(credentials=has_credentials(url) or holds_identity(options))

    def saw_request(
        self, url: str, *, document: bool, main_frame: bool, top_url: str | None
    ) -> None:
        """A request of the page: ``document`` for a frame's document, ``main_frame`` for the
        top-level frame's, ``top_url`` the page's URL when it was sent."""
        if has_credentials(url):
            # The job's URL or the page's script sent credentials. (Chromium answers a 401
            # to them inside the network stack: this request may be the only sign.)
            self.credentials = True
        origin = origin_of(url)
        if origin is None:
            return
        self.origins.add(origin)
        if not document:
            return
        if main_frame:
            self.top_origins.add(origin)
            return
        top = origin_of(top_url) if top_url else None
        if top is not None and urlsplit(top).hostname != urlsplit(origin).hostname:
            self.cross_site_frame = True

    def saw_response(self, status: int) -> None:
        if status in _CHALLENGES:
            self.credentials = True


def why_not_reuse(traces: JobTraces, *, jobs: int, reuse_contexts: bool) -> str | None:
    """Why the lane that ran this job (its ``jobs``-th) must be thrown away, or None when a
    reset makes it as good as new. ``traces.permissions_touched`` is read last: an engine
    reads it from the page only when everything else passes, then asks again."""
    if not reuse_contexts:
        return REUSE_OFF
    if traces.failed:
        return FAILED
    if traces.credentials:
        return CREDENTIALS
    if traces.popup:
        return POPUP
    if traces.cross_site_frame:
        return CROSS_SITE_FRAME
    if len(traces.top_origins) > 1:
        return TOP_LEVEL_ORIGINS
    if jobs >= LANE_JOBS:
        return WORN
    if traces.permissions_touched:
        return PERMISSIONS
    return None


def holds_identity(options: CaptureOptions | None) -> bool:
    """Whether a job was given credentials of some kind: cookies, a stored session, a
    password. Its lane is discarded after it, whatever else it did."""
    if options is None:
        return False
    return bool(options.cookies or options.storage_state or options.http_credentials)


def origin_of(url: str) -> str | None:
    """``scheme://host[:port]`` of an http(s) URL (credentials dropped), else None."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def has_credentials(url: str) -> bool:
    """Whether a request carries a user or password in its URL. Chromium puts the ones a
    page gives ``XMLHttpRequest.open`` there too, and keeps accepted ones in the context's
    HTTP auth cache, which no DevTools call clears: a context that sent one is not reused."""
    try:
        parts = urlsplit(url)
        return bool(parts.username or parts.password)
    except ValueError:
        return False
