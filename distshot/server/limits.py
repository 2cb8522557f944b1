"""Admission control: the service takes a request only when it can answer it in time.

Browser work is bounded by ``concurrency``, each key's by its own quota, and the requests
waiting for a browser by ``max_queue`` (each key's by its own). Beyond that, or while the
process tree's memory is over its bound, ``admit`` raises ``Overloaded`` at once, and the
API answers 429 with Retry-After instead of letting latency grow. Nothing admitted is
dropped: an admitted request waits for its turn and runs.

A request whose client waits for the answer (a synchronous shot, ``GET /v1/screenshot``)
has one more bound: its *predicted wait*. A queue length alone cannot keep answers fast: six
requests waiting for two browsers is three rounds of captures, fine for 100 ms pages and
far too slow for 5 s ones. So the service predicts how long the request would wait for a
browser (when the captures running now end, going by how long they have run and the
smoothed capture time, then the requests ahead of it) and refuses it when that exceeds
``max_wait`` seconds.

By default (``max_wait`` None) the bound follows the load, like the adaptive queue timeouts
of "Fail at Scale" (Maurer, ACM Queue, 2015). A service that has refused nobody for a second
lets a waiting client wait up to one capture's time: a page with three ``<img>`` shots on a
two-browser service gets its third image a capture later, not a 429. Once it refuses
anybody it is over capacity, and a queue then only adds each accepted answer's wait to its
latency without adding a shot a second (there is always a next arrival to fill a browser).
So for a second after any refusal the bound is a quarter of a capture: a request is taken
when a browser is free or about to be. Under a flood at 3x capacity that kept the accepted
answers' p99 near the capture time's (bench/serve.py part 3). Asynchronous
requests (``wait: 0``) and batch lines are bounded by the queue only: nobody is waiting on
the connection for them.

Fairness: a request first takes a slot of its key's quota, then a browser slot. A key with
a long queue therefore has at most ``quota`` requests in line for browsers, and another
key's request waits behind at most those, not behind the whole backlog.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from .metrics import Metrics

T = TypeVar("T")

#: Seconds after a refusal during which the service counts as over capacity (``auto``).
OVERLOAD_WINDOW = 1.0
#: The bound on a waiting client's wait over capacity, in smoothed capture times (``auto``).
OVERLOAD_WAIT = 0.25


class Overloaded(Exception):
    def __init__(self, reason: str, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.retry_after = retry_after


@dataclass
class _KeyState:
    quota: int
    max_queue: int
    slots: asyncio.Semaphore
    waiting: int = 0
    running: int = 0


@dataclass
class Ticket:
    """An admitted request: counted as waiting until it runs."""

    key: str
    state: _KeyState
    used: bool = field(default=False)


class Admission:
    def __init__(
        self,
        concurrency: int,
        max_queue: int,
        *,
        memory_limit: int | None = None,
        max_wait: float | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.concurrency = concurrency
        self.max_queue = max_queue
        self.memory_limit = memory_limit
        #: Seconds a waiting client's request may be predicted to wait for a browser;
        #: None: one smoothed capture time; math.inf: no bound but the queue's.
        self.max_wait = max_wait
        self.metrics = metrics or Metrics()
        self.memory = ProcessTreeMemory()
        self.waiting = 0
        self.running = 0
        self._browsers = asyncio.Semaphore(concurrency)
        self._keys: dict[str, _KeyState] = {}
        #: Seconds a capture takes, smoothed: the basis of Retry-After.
        self._latency = 5.0
        #: When each running capture started (``time.monotonic()``).
        self._starts: list[float] = []
        #: When a request was last refused, for any reason (``time.monotonic()``).
        self._refused_at = -math.inf

    @property
    def saturated(self) -> bool:
        return self.waiting >= self.max_queue or self.memory_over

    @property
    def memory_over(self) -> bool:
        return self.memory_limit is not None and self.memory.rss > self.memory_limit

    def retry_after(self) -> int:
        rounds = (self.waiting + self.running) / max(1, self.concurrency)
        return max(1, math.ceil(rounds * self._latency))

    def _key_state(self, key: str, quota: int | None, max_queue: int | None) -> _KeyState:
        state = self._keys.get(key)
        if state is None:
            limit = min(quota or self.concurrency, self.concurrency)
            state = _KeyState(limit, max_queue or self.max_queue, asyncio.Semaphore(limit))
            self._keys[key] = state
        return state

    def predicted_wait(self, state: _KeyState | None) -> float:
        """Seconds a new request of this key would wait for a browser, from what is ahead
        of it: the captures running now (each ends a smoothed capture time after it began),
        then requests of any key that hold their key's slot and wait for a browser (the
        others wait behind their own key's quota, not in front of this one), each taking the
        first browser to come free; and this key's own backlog, which it must wait out at
        its quota's pace."""
        latency, now = self._latency, time.monotonic()
        ahead = sum(
            min(other.waiting, max(0, other.quota - other.running)) for other in self._keys.values()
        )
        # When each browser comes free: now for an idle one, else when its capture should end
        # (a running capture counted but not timed, as tests set it up, has just begun).
        untimed = max(0, self.running - len(self._starts))
        free_at = [max(0.0, latency - (now - start)) for start in self._starts]
        free_at += [latency] * untimed + [0.0] * max(0, self.concurrency - self.running)
        heapq.heapify(free_at)
        for _ in range(ahead):
            heapq.heappush(free_at, heapq.heappop(free_at) + latency)
        wait = free_at[0] if free_at else 0.0
        if state is not None:
            own = max(0, state.waiting + state.running + 1 - state.quota) / state.quota
            wait = max(wait, own * latency)
        return wait

    def wait_budget(self) -> float:
        """Seconds a waiting client's request may be predicted to wait (for ``auto``, see
        the module's docstring)."""
        if self.max_wait is not None:
            return self.max_wait
        if time.monotonic() - self._refused_at < OVERLOAD_WINDOW:
            return OVERLOAD_WAIT * self._latency
        return self._latency

    def check(self, key: str, *, waiting_client: bool = False) -> None:
        """Raise Overloaded now if ``admit`` would: called before a request's body is read
        and parsed, so that a refusal costs as little as possible."""
        self._check(self._keys.get(key), waiting_client)

    def _check(self, state: _KeyState | None, waiting_client: bool) -> None:
        if self.memory_over:
            self._refuse("memory", "the service is out of memory for new work")
        if self.waiting >= self.max_queue:
            self._refuse("queue", f"{self.waiting} requests are waiting for a browser")
        if state is not None and state.waiting >= state.max_queue:
            self._refuse("key_queue", f"this key has {state.waiting} requests waiting")
        if waiting_client:
            budget = self.wait_budget()
            wait = self.predicted_wait(state)
            if wait > budget:
                self._refuse(
                    "wait",
                    f"the answer would wait {wait:.1f} s for a browser (bound {budget:.1f} s)",
                    "retry later, or send it with wait 0 to be queued",
                )

    def admit(
        self,
        key: str,
        *,
        quota: int | None = None,
        max_queue: int | None = None,
        waiting_client: bool = False,
        force: bool = False,
    ) -> Ticket:
        """A ticket, or Overloaded. ``waiting_client``: somebody waits on the connection for
        the answer, so the predicted wait is bounded too. ``force`` admits regardless (a
        batch's next line: the batch was accepted as a whole and waits for its turn)."""
        state = self._key_state(key, quota, max_queue)
        if not force:
            self._check(state, waiting_client)
        self.waiting += 1
        state.waiting += 1
        self._publish()
        return Ticket(key, state)

    def _refuse(self, reason: str, message: str, hint: str = "retry later") -> None:
        self._refused_at = time.monotonic()
        self.metrics.overloaded.labels(reason).inc()
        raise Overloaded(reason, f"{message}; {hint}", self.retry_after())

    async def run(self, ticket: Ticket, job: Callable[[], Awaitable[T]]) -> T:
        """Wait for the key's slot and a browser slot, then run ``job``."""
        assert not ticket.used, "a ticket runs one job"
        ticket.used = True
        state = ticket.state
        started: float | None = None
        try:
            async with state.slots, self._browsers:
                self.waiting -= 1
                state.waiting -= 1
                self.running += 1
                state.running += 1
                self._publish()
                started = time.monotonic()
                self._starts.append(started)
                try:
                    return await job()
                finally:
                    self._starts.remove(started)
                    self.running -= 1
                    state.running -= 1
                    elapsed = time.monotonic() - started
                    self._latency = 0.8 * self._latency + 0.2 * elapsed
                    self._publish()
        finally:
            if started is None:  # cancelled while waiting
                self.waiting -= 1
                state.waiting -= 1
                self._publish()

    def _publish(self) -> None:
        self.metrics.queue_depth.set(self.waiting)
        self.metrics.in_flight.set(self.running)


class ProcessTreeMemory:
    """Resident memory of this process and its descendants (the browsers), sampled in the
    background: reading /proc on every request would cost more than the answer."""

    def __init__(self, root: int | None = None) -> None:
        self.root = root or os.getpid()
        self.rss = 0
        self._page = os.sysconf("SC_PAGE_SIZE")

    def sample(self) -> int:
        children: dict[int, list[int]] = {}
        rss_pages: dict[int, int] = {}
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            pid = int(name)
            try:
                with open(f"/proc/{pid}/stat", "rb") as stat:
                    fields = stat.read().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(pid)
            rss_pages[pid] = int(fields[21])
        total, todo = 0, [self.root]
        while todo:
            pid = todo.pop()
            total += rss_pages.get(pid, 0)
            todo.extend(children.get(pid, ()))
        self.rss = total * self._page
        return self.rss
