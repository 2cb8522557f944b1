"""The two plug-in contracts. Both are small on purpose: no queues, no CLI, no config files.

An engine turns a request into an encoded image; a storage puts bytes somewhere and says
where. ``core.service.capture_request`` is the only caller of either inside distshot.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import StorageError
from .models import CacheEntry, CacheHit, Capture, ShotRequest, StoredObject
from .options import OPTION_NAMES

#: Options every engine must honour, since the service applies them itself.
UNIVERSAL_OPTIONS = frozenset({"timeout"})


@dataclass(frozen=True)
class Capabilities:
    """What an engine honours. A request that needs anything else is rejected up front.

    ``options`` names every capture option the engine honours, explicitly: there is no
    "all", so an option added to distshot later is rejected by an engine until the engine
    says it honours it (never silently ignored). ``timeout`` is always honoured: the capture
    service enforces it.
    """

    options: frozenset[str]
    formats: frozenset[str] = frozenset({"png", "jpeg"})
    wait_until: frozenset[str] = frozenset({"load", "domcontentloaded", "networkidle"})
    description: str = ""
    #: Whether the engine starts processes on the worker's machine (a browser, a driver).
    #: Workers pin their threads to one core (``pin_cpu = "auto"``) only when it does not:
    #: children inherit the affinity of the thread that starts them.
    starts_processes: bool = True

    @property
    def honoured(self) -> frozenset[str]:
        """Every option a request to this engine may set."""
        return self.options | UNIVERSAL_OPTIONS

    def describe(self) -> str:
        """One line for ``distshot engines``: formats, then what is honoured and rejected."""
        missing = sorted(OPTION_NAMES - self.honoured)
        parts = [f"formats: {', '.join(sorted(self.formats))}"]
        if not missing:
            parts.append(f"honours every option ({len(OPTION_NAMES)})")
        else:
            parts.append(f"honours: {', '.join(sorted(self.honoured & OPTION_NAMES))}")
            parts.append(f"rejects: {', '.join(missing)}")
        return "; ".join(parts)


@dataclass(frozen=True)
class EngineConfig:
    """Settings every engine factory receives; an engine ignores what it does not use."""

    browser_path: str = "/usr/bin/chromium"
    driver_path: str = "/usr/bin/chromedriver"
    #: Relaunch the browser after this many jobs (bounds leaks in long-running workers).
    recycle_after: int = 500
    #: ... or as soon as its whole process tree's resident memory passes this (MiB; 0: never).
    recycle_memory_mb: int = 2048
    #: Jobs this process runs at once; engines size their pools from it.
    concurrency: int = 2
    extra_args: tuple[str, ...] = ()
    #: Reuse a cleaned browser context between jobs (warm caches) instead of a fresh one.
    reuse_contexts: bool = True
    #: Filter lists for block_ads and block_trackers that replace the installed EasyList and
    #: EasyPrivacy (paths; None: the installed ones).
    ad_filters: str | None = None
    tracker_filters: str | None = None
    #: The engine's own settings: the ``[engines.NAME]`` table of distshot.toml, as parsed.
    settings: Mapping[str, Any] = field(default_factory=dict)
    #: The worker's upstream proxy URL (``proxy`` setting) for jobs that name none: hand it
    #: to ``job_egress``. It may hold a password: never shown (``repr=False``).
    proxy: str | None = field(default=None, repr=False)
    #: Where this worker keeps the secrets requests name as ``@secrets/NAME`` (None: none).
    #: Carried here because every runtime (worker, embedded, service) already receives it;
    #: the capture service reads it, no engine does.
    secrets_dir: str | None = None


class Engine(abc.ABC):
    """A browser (or anything else) that renders a URL into an image.

    ``capture`` may be called concurrently from one event loop. It raises ``core.errors``
    errors only: permanent ones for what no retry can fix, transient ones otherwise.

    Time: a job ends within its ``timeout`` plus a few seconds of clean-up; a URL that runs
    out of time raises ``NavigationTimeout.for_url`` (one sentence on every engine). The
    capture service cancels a job still running 5 s past its timeout, so clean-up that must
    happen (releasing a shared browser) must survive cancellation.

    Recovery: after a page times out or its renderer crashes, the engine throws away exactly
    what is tainted (the page, its context, or the browser when it no longer answers) before
    the next job needs it, so that the next job gets a working browser on its first attempt,
    without waiting for a retry, on a loaded machine too. The conformance suite checks it
    (``test_after_a_wedged_page_the_next_page_works_at_once_under_load``).
    """

    name: str = "engine"
    capabilities: Capabilities = Capabilities(options=frozenset())

    async def open(self) -> None:  # noqa: B027 - optional hook
        """Start what is shared between jobs (a browser). Called once before capture."""

    @abc.abstractmethod
    async def capture(self, request: ShotRequest) -> Capture: ...

    async def settled(self) -> None:  # noqa: B027 - optional hook
        """Return once the work that finished jobs left running in the background (an
        engine may answer before it has cleaned up after the page) is done: what a test
        awaits before it looks at the engine between jobs."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Stop everything ``open`` started; no process may outlive this."""


class Storage(abc.ABC):
    """Where images go. Methods block (file or network I/O); the service runs them in threads,
    possibly several at once (or, below ``inline_write_limit``, on the event loop). They raise
    ``StorageError`` (naming the bucket or folder), never a library's own exception.

    ``put`` is the whole contract. ``remember`` and ``lookup`` make the capture cache work
    (``--cache-ttl``); a storage without them never answers from the cache. ``read`` lets
    ``distshot report`` and ``distshot diff`` open the images it stored.
    """

    scheme: str = "storage"
    #: Images up to this many bytes are stored from the event loop's own thread instead of
    #: a worker thread. Only for a storage whose ``put`` and ``remember`` of such an image
    #: take microseconds (a local file without fsync): handing a job to another thread and
    #: back costs a Python process more than that (measured: 0.5 ms of CPU per job, a third
    #: of a null-engine worker's). Network storages keep 0: every write goes to a thread.
    inline_write_limit: int = 0

    @abc.abstractmethod
    def put(
        self, name: str, data: bytes, content_type: str, metadata: dict[str, str]
    ) -> StoredObject:
        """Store ``data`` under ``name`` atomically: readers see all of it or none of it.

        ``name`` is ``batch/slug-hash.ext``, deterministic per request. ``metadata``
        (source-url, captured-at, engine) travels with the object where the storage can.
        """

    def check(self) -> None:  # noqa: B027 - optional hook
        """Fail fast (raise StorageError) if the destination is unusable: called at start-up."""

    def remember(self, cache_key: str, entry: CacheEntry) -> None:  # noqa: B027 - optional
        """Note that the image ``entry.name``, just ``put``, answers ``cache_key`` from now on.

        ``cache_key`` is an opaque hex digest of what determines the image (URL, options,
        engine). A later ``remember`` of the same key replaces the entry.
        """

    def lookup(
        self, cache_key: str, name: str, max_age: float, now: float | None = None
    ) -> CacheHit | None:
        """The image remembered for ``cache_key`` if it was stored at most ``max_age``
        seconds ago and still exists, made available under ``name`` (copied on the storage's
        side when it lives under another name); otherwise None. A hit must not make the
        entry younger: the age is that of the capture, however often it is reused.

        ``now`` is the moment to judge the age at, in seconds since the epoch. None, what
        the capture service always passes, means the storage's own present: its own clock,
        so that workers whose clocks disagree judge alike (S3 uses the server's). A caller
        that passes it, like the conformance suite, ages entries without waiting: the age
        is then ``now`` minus the time the storage recorded when it remembered the entry.
        (The service passes three arguments by position, so a storage written before
        ``now`` existed keeps working; only the suite needs it.)"""
        return None

    def read(self, location: str) -> bytes:
        """The bytes of an object this storage stored, given the ``location`` its ``put``
        returned (the manifest's ``location``). Optional: the report and ``distshot diff``
        open images through it; a storage without it cannot be reported on from its images
        (their records are still listed)."""
        raise StorageError(
            f"storage {self.scheme} cannot read back images ({location})", transient=False
        )

    def close(self) -> None:  # noqa: B027 - optional hook
        pass
