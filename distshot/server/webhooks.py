"""Durable, signed, retried webhook delivery (Standard Webhooks).

A delivery is on disk before ``enqueue`` returns (``state_dir/webhooks/queue.jsonl``), so a
crash or restart loses none: ``start`` reloads every delivery that was neither acknowledged
nor given up and goes on where the attempts log says it stopped. Every attempt is signed
afresh (new timestamp, same ``webhook-id``, so receivers can deduplicate) and recorded in
``state_dir/webhooks/attempts.jsonl``. Delivery is at least once: a crash between a receiver's
2xx and its record on disk sends that delivery again after the restart.

The URL policy is applied at every attempt, not only when the webhook was registered: the
host is resolved and checked again, and the connection goes to the very address that was
checked (TLS keeps the name for SNI and certificate checks), so a DNS answer that changes
between check and connect (rebinding) cannot reach a refused address.

queue.jsonl holds each pending delivery's signing secret (a restarted process must sign its
retries); the file is created 0600 and compacted at every start. The attempts log, the log
messages and ``repr`` never show a secret.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import heapq
import itertools
import json
import logging
import os
import secrets
import ssl
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal, TypeVar

import httpx
from standardwebhooks.webhooks import Webhook

from distshot.core.errors import DistshotError, InvalidRequest
from distshot.core.manifest import read_records
from distshot.core.policy import Resolver, UrlPolicy, parse_url, system_resolver

__all__ = ["DEFAULT_SCHEDULE", "USER_AGENT", "WebhookSender"]

logger = logging.getLogger(__name__)

#: Seconds between attempts: 9 attempts over about 1 h 33 min, so a receiver that is down for
#: an hour's deploy or outage still gets its deliveries.
DEFAULT_SCHEDULE: tuple[float, ...] = (5, 30, 120, 300, 600, 900, 1800, 1800)
USER_AGENT = "distshot-webhooks"
#: Attempts in flight at once, in all and per receiver (scheme, host, port): a slow receiver
#: holds at most ``per_receiver`` slots, so the others' deliveries go on.
MAX_IN_FLIGHT = 8
PER_RECEIVER = 2

Outcome = Literal["delivered", "retrying", "given_up"]
Receiver = tuple[str, str, int]
_T = TypeVar("_T")


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _dumps(value: Any) -> str:
    # allow_nan=False: NaN and Infinity are not JSON, and a receiver's parser may reject them.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _check_secret(secret: str) -> None:
    """Refuses a secret ``Webhook`` cannot use, without the secret in the message."""
    if not isinstance(secret, str) or not secret:
        raise InvalidRequest("webhook secret is empty")
    try:
        Webhook(secret)
    except Exception:
        raise InvalidRequest("webhook secret is not whsec_<base64>") from None


@dataclass
class _Delivery:
    id: str
    url: str
    event_type: str
    #: The JSON text as sent, kept verbatim so every attempt signs and sends the same bytes.
    body: str
    secret: str = field(repr=False)
    #: Attempts made so far (restored from the attempts log at start).
    attempts: int = 0
    receiver: Receiver = field(init=False, repr=False)

    def __post_init__(self) -> None:
        parts = parse_url(self.url)
        scheme = parts.scheme.lower()
        port = parts.port or (443 if scheme == "https" else 80)
        self.receiver = (scheme, parts.hostname or "", port)

    def to_record(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "url": self.url,
            "type": self.event_type,
            "body": self.body,
            "secret": self.secret,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> _Delivery:
        fields = (record["id"], record["url"], record["type"], record["body"], record["secret"])
        if not all(isinstance(value, str) for value in fields):
            raise TypeError("queue record field is not a string")
        return cls(*fields)


@dataclass
class _History:
    attempts: int = 0
    last_at: str = ""
    last_outcome: str = ""


class _JsonlFile:
    """An append-only JSON-lines file; each line is flushed and fsynced before ``append``
    returns. Not thread-safe: the sender serialises writers with its lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[bytes] | None = None

    def append(self, line: str) -> None:
        if self._file is None:
            self._file = self._open()
        self._file.write(line.encode() + b"\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _open(self) -> IO[bytes]:
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        file = os.fdopen(fd, "a+b")
        # A crash mid-write leaves a last line without its newline: end it, or the next
        # record would be glued onto the torn one and be lost with it.
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            file.write(b"\n")
        return file


def _replace_atomically(path: Path, lines: Iterable[str]) -> None:
    """Rewrites ``path`` so that a crash leaves either the old file or the new one."""
    temp = path.with_name(path.name + ".tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as file:
        for line in lines:
            file.write(line.encode() + b"\n")
        file.flush()
        os.fsync(file.fileno())
    os.replace(temp, path)
    # The rename itself is only durable once the directory is.
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _seconds_since(iso: str) -> float | None:
    try:
        then = datetime.fromisoformat(iso)
    except (TypeError, ValueError):
        return None
    return (datetime.now(UTC) - then).total_seconds()


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@dataclass(frozen=True)
class _Target:
    """Where one try of an attempt connects: the URL (its host replaced by a checked address)
    with the Host header and TLS name of the original."""

    url: httpx.URL
    headers: dict[str, str]
    extensions: dict[str, Any]


@dataclass(frozen=True)
class _Result:
    status_code: int | None = None
    error: str | None = None
    #: A refusal no retry can change (the policy refused the address).
    permanent: bool = False

    @property
    def acknowledged(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class WebhookSender:
    """Sends webhooks, signed, retried on ``schedule`` and kept on disk until acknowledged.

    ``enqueue`` may be called from any thread, before or after ``start``; ``start`` and
    ``close`` run on the event loop the deliveries should use.
    """

    def __init__(
        self,
        state_dir: Path,
        policy: UrlPolicy,
        *,
        schedule: Sequence[float] = DEFAULT_SCHEDULE,
        resolver: Resolver = system_resolver,
        timeout: float = 10.0,
        max_in_flight: int = MAX_IN_FLIGHT,
        per_receiver: int = PER_RECEIVER,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        if any(interval < 0 for interval in schedule):
            raise ValueError("schedule intervals must not be negative")
        if timeout <= 0 or max_in_flight < 1 or per_receiver < 1:
            raise ValueError("timeout, max_in_flight and per_receiver must be positive")
        self._policy = policy
        self._schedule = tuple(float(interval) for interval in schedule)
        self._resolver = resolver
        self._timeout = timeout
        self._max_in_flight = max_in_flight
        self._per_receiver = per_receiver
        self._tls_context = tls_context
        directory = Path(state_dir) / "webhooks"
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._queue = _JsonlFile(directory / "queue.jsonl")
        self._attempts_log = _JsonlFile(directory / "attempts.jsonl")

        # Shared with enqueue's threads: the two files, the pending set and the loop to wake.
        self._lock = threading.Lock()
        self._pending: dict[str, _Delivery] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

        # Touched on the event loop only.
        self._wake: asyncio.Event | None = None
        self._runner: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None
        self._io: ThreadPoolExecutor | None = None
        self._due: list[tuple[float, int, _Delivery]] = []
        self._order = itertools.count()
        self._ready: collections.deque[_Delivery] = collections.deque()
        self._scheduled: set[str] = set()
        self._busy: collections.Counter[Receiver] = collections.Counter()
        self._tasks: set[asyncio.Task[None]] = set()

    # -- the caller's side --------------------------------------------------------------------

    def check_url(self, url: str) -> None:
        """Raises InvalidUrl or BlockedAddress (or NetworkError when DNS fails) for a URL no
        webhook may be sent to. Resolves the host: call it in a thread."""
        self._policy.check_url(url, self._resolver)

    def enqueue(self, url: str, secret: str, event_type: str, data: dict[str, Any]) -> str:
        """Queues one delivery, on disk before it returns; returns its webhook id."""
        parse_url(url)
        _check_secret(secret)
        if not isinstance(event_type, str) or not event_type:
            raise InvalidRequest("webhook event type is empty")
        payload = {"type": event_type, "timestamp": _now_iso(), "data": data}
        try:
            body = _dumps(payload)
        except (TypeError, ValueError) as exc:
            raise InvalidRequest(f"webhook data is not JSON: {exc}") from None
        delivery = _Delivery(
            id=f"msg_{secrets.token_urlsafe(18)}",
            url=url.strip(),
            event_type=event_type,
            body=body,
            secret=secret,
        )
        line = _dumps(delivery.to_record())
        with self._lock:
            self._queue.append(line)
            self._pending[delivery.id] = delivery
            if self._loop is not None:
                # A closed loop: the delivery is on disk and the next start sends it.
                with contextlib.suppress(RuntimeError):
                    self._loop.call_soon_threadsafe(self._admit, delivery, 0.0)
        return delivery.id

    def attempts(self, webhook_id: str) -> list[dict[str, Any]]:
        """The recorded attempts of one delivery, oldest first. Reads the whole attempts log."""
        return [
            r
            for r in read_records(self._attempts_log.path, missing_ok=True)
            if r.get("webhook_id") == webhook_id
        ]

    @property
    def pending(self) -> int:
        """Deliveries neither acknowledged nor given up (before ``start``: only those
        enqueued by this sender)."""
        with self._lock:
            return len(self._pending)

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Reloads the pending deliveries from disk and starts delivering on this loop."""
        if self._runner is not None:
            raise RuntimeError("WebhookSender already started")
        loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._due.clear()
        self._ready.clear()
        self._scheduled.clear()
        self._busy.clear()
        # One writer thread: records stay in order, and close() can wait for the last one.
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="distshot-webhooks")
        reloaded = await loop.run_in_executor(self._io, self._reload, loop)
        self._client = httpx.AsyncClient(
            headers={"user-agent": USER_AGENT},
            timeout=self._timeout,
            follow_redirects=False,
            # Each connection goes to a pinned address under one name's TLS check; a kept
            # connection could be reused for another name at the same address.
            limits=httpx.Limits(max_keepalive_connections=0),
            # An environment proxy would resolve and connect by name, out of the policy's reach.
            trust_env=False,
            verify=self._tls_context if self._tls_context is not None else True,
        )
        self._runner = loop.create_task(self._run(), name="distshot-webhooks")
        for delivery, delay in reloaded:
            self._admit(delivery, delay)
        logger.info("webhooks: %d pending deliveries reloaded", len(reloaded))

    async def close(self) -> None:
        """Stops delivering; attempts in flight are abandoned unrecorded, and every pending
        delivery stays on disk for the next start."""
        with self._lock:
            self._loop = None
        self._wake = None
        tasks = [*self._tasks, *([self._runner] if self._runner is not None else [])]
        self._runner = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        if self._io is not None:
            # A cancelled attempt's record may still be being written.
            await asyncio.to_thread(self._io.shutdown, wait=True)
            self._io = None
        with self._lock:
            self._queue.close()
            self._attempts_log.close()

    def _reload(self, loop: asyncio.AbstractEventLoop) -> list[tuple[_Delivery, float]]:
        """(In the writer thread.) The pending deliveries with their delays; compacts the
        queue file to them and makes ``enqueue`` wake ``loop`` from now on."""
        with self._lock:
            entries = self._read_queue()
            history = self._read_history(set(entries))
            for webhook_id, past in history.items():
                if past.last_outcome in ("delivered", "given_up"):
                    # Recorded as finished, but the crash came before the queue's done line.
                    entries.pop(webhook_id, None)
            self._queue.close()
            _replace_atomically(self._queue.path, (_dumps(d.to_record()) for d in entries.values()))
            self._pending = dict(entries)
            self._loop = loop
        result: list[tuple[_Delivery, float]] = []
        for delivery in entries.values():
            past = history.get(delivery.id, _History())
            delivery.attempts = past.attempts
            result.append((delivery, self._resume_delay(past)))
        return result

    def _read_queue(self) -> dict[str, _Delivery]:
        entries: dict[str, _Delivery] = {}
        for number, record in enumerate(read_records(self._queue.path, missing_ok=True), 1):
            if record.get("done") is True:
                entries.pop(str(record.get("id")), None)
                continue
            try:
                delivery = _Delivery.from_record(record)
            except (KeyError, TypeError, DistshotError):
                # The line itself holds a secret: say where it is, not what it says.
                logger.warning("webhooks: skipping malformed queue record %d", number)
                continue
            entries[delivery.id] = delivery
        return entries

    def _read_history(self, ids: set[str]) -> dict[str, _History]:
        history: dict[str, _History] = {}
        for record in read_records(self._attempts_log.path, missing_ok=True):
            webhook_id = record.get("webhook_id")
            if webhook_id not in ids:
                continue
            past = history.setdefault(str(webhook_id), _History())
            past.attempts += 1
            past.last_at = str(record.get("at", ""))
            past.last_outcome = str(record.get("outcome", ""))
        return history

    def _resume_delay(self, past: _History) -> float:
        """What is left of the interval after the last attempt (at most the interval, so a
        clock set back cannot postpone a delivery indefinitely)."""
        if past.attempts == 0:
            return 0.0
        interval = self._interval(past.attempts)
        elapsed = _seconds_since(past.last_at)
        if elapsed is None:
            return interval
        return min(interval, max(0.0, interval - elapsed))

    def _interval(self, attempts_made: int) -> float:
        if not self._schedule:
            return 0.0
        return self._schedule[min(attempts_made, len(self._schedule)) - 1]

    # -- scheduling (on the event loop) -------------------------------------------------------

    def _admit(self, delivery: _Delivery, delay: float) -> None:
        # A stale wake-up (from before a close, or for a delivery reloaded meanwhile) is
        # dropped: one delivery must never have two attempts in flight.
        if self._wake is None or delivery.id in self._scheduled:
            return
        self._scheduled.add(delivery.id)
        self._push(delivery, delay)

    def _push(self, delivery: _Delivery, delay: float) -> None:
        loop = asyncio.get_running_loop()
        heapq.heappush(self._due, (loop.time() + delay, next(self._order), delivery))
        if self._wake is not None:
            self._wake.set()

    async def _run(self) -> None:
        wake = self._wake
        assert wake is not None
        loop = asyncio.get_running_loop()
        while True:
            # Cleared before looking, so a wake-up that comes while launching is not lost.
            wake.clear()
            now = loop.time()
            while self._due and self._due[0][0] <= now:
                self._ready.append(heapq.heappop(self._due)[2])
            self._launch_ready()
            timeout = self._due[0][0] - now if self._due else None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await wake.wait()

    def _launch_ready(self) -> None:
        """Starts every due delivery that has a free slot; the rest wait, in order, for an
        attempt to finish."""
        waiting: collections.deque[_Delivery] = collections.deque()
        while self._ready:
            delivery = self._ready.popleft()
            receiver = delivery.receiver
            if (
                len(self._tasks) >= self._max_in_flight
                or self._busy[receiver] >= self._per_receiver
            ):
                waiting.append(delivery)
                continue
            self._busy[receiver] += 1
            task = asyncio.create_task(self._attempt(delivery), name=f"webhook {delivery.id}")
            self._tasks.add(task)
            task.add_done_callback(functools.partial(self._attempt_done, receiver))
        self._ready = waiting

    def _attempt_done(self, receiver: Receiver, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._busy[receiver] -= 1
        if self._busy[receiver] <= 0:
            del self._busy[receiver]
        if not task.cancelled() and task.exception() is not None:
            logger.error("webhooks: attempt failed unexpectedly", exc_info=task.exception())
        if self._wake is not None:
            self._wake.set()

    # -- one attempt --------------------------------------------------------------------------

    async def _attempt(self, delivery: _Delivery) -> None:
        delivery.attempts += 1
        at = _now_iso()
        try:
            result = await self._deliver(delivery)
        except Exception as exc:
            # A bug here must not strand the delivery: it counts as a failed attempt.
            logger.exception("webhooks: attempt %s of %s failed", delivery.attempts, delivery.id)
            result = _Result(error=_describe(exc))
        outcome = self._outcome(delivery, result)
        record = {
            "webhook_id": delivery.id,
            "url": delivery.url,
            "event_type": delivery.event_type,
            "attempt": delivery.attempts,
            "at": at,
            "status_code": result.status_code,
            "error": result.error,
            "outcome": outcome,
        }
        try:
            await self._in_io(functools.partial(self._record, delivery.id, record, outcome))
        except OSError:
            # Carry on in memory; the worst a lost record costs is one more send after a restart.
            logger.exception("webhooks: cannot record attempt of %s", delivery.id)
        self._settle(delivery, outcome, result)

    def _outcome(self, delivery: _Delivery, result: _Result) -> Outcome:
        if result.acknowledged:
            return "delivered"
        if result.permanent or delivery.attempts > len(self._schedule):
            return "given_up"
        return "retrying"

    def _settle(self, delivery: _Delivery, outcome: Outcome, result: _Result) -> None:
        if outcome == "retrying":
            self._push(delivery, self._interval(delivery.attempts))
            return
        self._scheduled.discard(delivery.id)
        with self._lock:
            self._pending.pop(delivery.id, None)
        if outcome == "given_up":
            shown = result.error or f"HTTP {result.status_code}"
            logger.warning(
                "webhooks: %s to %s given up after %d attempts: %s",
                delivery.id,
                "://".join(delivery.receiver[:2]),
                delivery.attempts,
                shown,
            )

    def _record(self, webhook_id: str, record: dict[str, Any], outcome: Outcome) -> None:
        with self._lock:
            self._attempts_log.append(_dumps(record))
            if outcome != "retrying":
                self._queue.append(_dumps({"id": webhook_id, "done": True}))

    async def _in_io(self, call: Callable[[], _T]) -> _T:
        assert self._io is not None
        return await asyncio.get_running_loop().run_in_executor(self._io, call)

    async def _deliver(self, delivery: _Delivery) -> _Result:
        """One POST, its policy check included, within ``timeout``."""
        try:
            async with asyncio.timeout(self._timeout):
                targets = await self._targets(delivery.url)
                status_code = await self._send(targets, self._signed_headers(delivery), delivery)
        except DistshotError as exc:
            return _Result(error=_describe(exc), permanent=not exc.transient)
        except TimeoutError:
            return _Result(error=f"timed out after {self._timeout:g}s")
        except httpx.HTTPError as exc:
            return _Result(error=_describe(exc))
        return _Result(status_code=status_code)

    async def _targets(self, url: str) -> list[_Target]:
        """The checked addresses to try, in the resolver's order. Raises BlockedAddress when
        the host now resolves to a refused address."""
        parts = parse_url(url)
        assert parts.hostname is not None
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
        addresses = await asyncio.to_thread(
            self._policy.check_host, parts.hostname, port, self._resolver
        )
        target = httpx.URL(url)
        if not addresses:
            # The policy admits every address (allow_private) and so did not resolve.
            return [_Target(target, {}, {})]
        # Connect to the checked address, never to the name: a second lookup by the HTTP
        # client could get another answer. Host and the TLS name (SNI, certificate check)
        # stay the original's.
        headers = {"host": target.netloc.decode("ascii")}
        extensions: dict[str, Any] = {}
        if target.scheme == "https":
            extensions["sni_hostname"] = target.raw_host.decode("ascii")
        unique = dict.fromkeys(str(address) for address in addresses)
        return [_Target(target.copy_with(host=address), headers, extensions) for address in unique]

    def _signed_headers(self, delivery: _Delivery) -> dict[str, str]:
        now = datetime.now(UTC)
        return {
            "content-type": "application/json",
            "webhook-id": delivery.id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": Webhook(delivery.secret).sign(delivery.id, now, delivery.body),
        }

    async def _send(
        self, targets: list[_Target], headers: dict[str, str], delivery: _Delivery
    ) -> int:
        """POSTs to the first address that accepts a connection; returns the status code."""
        failure: httpx.ConnectError | None = None
        for target in targets:
            try:
                return await self._post(target, headers, delivery.body)
            except httpx.ConnectError as exc:
                # Nothing was sent: another address of the same host may answer.
                failure = exc
        assert failure is not None
        raise failure

    async def _post(self, target: _Target, headers: dict[str, str], body: str) -> int:
        assert self._client is not None
        request = self._client.build_request(
            "POST",
            target.url,
            headers={**headers, **target.headers},
            content=body.encode(),
            extensions=target.extensions,
        )
        # Streamed and closed unread: only the status matters, and a receiver's large or
        # endless answer must not be downloaded.
        response = await self._client.send(request, stream=True)
        await response.aclose()
        return response.status_code
