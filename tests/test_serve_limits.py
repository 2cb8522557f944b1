"""Admission's arithmetic, without a service: what is ahead of a request, and when a
waiting client is refused. The end-to-end behaviour is in test_serve.py."""

from __future__ import annotations

import asyncio
import math
import time

import pytest

from distshot.server.limits import Admission, Overloaded


def started(admission: Admission, key: str, count: int, quota: int | None = None) -> None:
    """``count`` admitted requests of ``key`` that hold a browser (as ``run`` counts them)."""
    for _ in range(count):
        ticket = admission.admit(key, quota=quota, force=True)
        admission.waiting -= 1
        ticket.state.waiting -= 1
        admission.running += 1
        ticket.state.running += 1


def queued(admission: Admission, key: str, count: int, quota: int | None = None) -> None:
    for _ in range(count):
        admission.admit(key, quota=quota, force=True)


def test_an_idle_service_predicts_no_wait() -> None:
    admission = Admission(2, 100)
    assert admission.predicted_wait(None) == 0.0
    started(admission, "a", 1)
    assert admission.predicted_wait(None) == 0.0  # a browser is still free


def test_the_prediction_counts_rounds_of_smoothed_capture_time() -> None:
    admission = Admission(2, 100)
    admission._latency = 0.4
    started(admission, "a", 2)
    queued(admission, "a", 2)
    # a's two running and two waiting behind its quota of two: a's next is fifth in line
    assert admission.predicted_wait(admission._key_state("a", None, None)) == pytest.approx(0.6)
    # another key's request waits only for the first browser to come free: both captures
    # have just begun, so one capture's time
    assert admission.predicted_wait(None) == pytest.approx(0.4, abs=0.01)


def test_the_prediction_counts_how_long_the_running_captures_have_run() -> None:
    admission = Admission(2, 100)
    admission._latency = 1.0
    now = time.monotonic()
    admission.running, admission._starts = 2, [now - 0.9, now - 0.2]
    # the first browser frees in about 0.1 s (its capture is 0.9 s into a 1 s capture)
    assert admission.predicted_wait(None) == pytest.approx(0.1, abs=0.02)
    queued(admission, "a", 1)
    # one request ahead takes that browser; the next frees 0.8 s from now
    assert admission.predicted_wait(None) == pytest.approx(0.8, abs=0.02)
    # a capture past its expected time is taken to end now, not to owe negative time
    # (the request ahead takes that one, this one the other, 0.8 s from now)
    admission._starts = [now - 3.0, now - 0.2]
    assert admission.predicted_wait(None) == pytest.approx(0.8, abs=0.02)


def test_auto_lets_a_waiting_client_wait_a_capture_until_the_service_refuses_someone() -> None:
    admission = Admission(2, 100)
    admission._latency = 1.0
    now = time.monotonic()
    admission.running, admission._starts = 2, [now - 0.5, now - 0.4]
    # Given both browsers busy, the first free in about 0.5 s: on a service that refused
    # nobody, a waiting client may wait up to one capture, so it is taken
    assert admission.wait_budget() == 1.0
    ticket = admission.admit("a", waiting_client=True)
    admission.waiting -= 1  # (it leaves the queue again: only the bound is looked at here)
    ticket.state.waiting -= 1
    # When the service refuses somebody (here: a queue that is full)
    full = Admission(2, 0)
    with pytest.raises(Overloaded):
        full.admit("x")
    admission._refused_at = full._refused_at
    # Then for a second the bound is a quarter of a capture: the same request is refused
    assert admission.wait_budget() == pytest.approx(0.25)
    with pytest.raises(Overloaded) as refused:
        admission.admit("a", waiting_client=True)
    assert refused.value.reason == "wait"
    # ...while one that finds a browser about to come free is still taken
    admission._starts = [now - 0.9, time.monotonic() - 0.95]
    admission.admit("b", waiting_client=True)
    # And a second after the last refusal, the service waits a capture for a client again
    admission._refused_at -= 1.0
    assert admission.wait_budget() == 1.0
    # An explicit bound is kept as given, whatever the load
    assert Admission(2, 100, max_wait=0.5).wait_budget() == 0.5


def test_another_keys_backlog_behind_its_quota_is_not_ahead() -> None:
    admission = Admission(2, 100)
    admission._latency = 1.0
    started(admission, "alice", 1, quota=1)
    queued(admission, "alice", 5, quota=1)
    bob = admission._key_state("bob", None, None)
    assert admission.predicted_wait(bob) == 0.0  # alice holds one browser, the other is free
    alice = admission._key_state("alice", 1, None)
    assert admission.predicted_wait(alice) == pytest.approx(6.0)  # her own six, one at a time


def test_a_waiting_client_is_refused_beyond_one_capture_but_an_async_one_is_queued() -> None:
    admission = Admission(1, 100)
    started(admission, "a", 1)
    admission.admit("a", waiting_client=True)  # next in line: one round
    with pytest.raises(Overloaded) as refused:
        admission.admit("a", waiting_client=True)
    assert refused.value.reason == "wait" and refused.value.retry_after >= 1
    assert "wait 0" in refused.value.message
    admission.admit("a")  # nobody waits on the connection: only the queue bounds it
    with pytest.raises(Overloaded):
        admission.check("a", waiting_client=True)
    admission.check("a")


def test_an_explicit_bound_in_seconds_and_off() -> None:
    strict = Admission(1, 100, max_wait=0.5)
    strict._latency = 1.0
    started(strict, "a", 1)
    with pytest.raises(Overloaded):
        strict.admit("a", waiting_client=True)  # one round of 1 s > 0.5 s
    free_only = Admission(2, 100, max_wait=0.0)
    free_only.admit("a", waiting_client=True)  # a browser is free: no wait predicted
    started(free_only, "b", 2)
    with pytest.raises(Overloaded):
        free_only.admit("c", waiting_client=True)
    off = Admission(1, 3, max_wait=math.inf)
    started(off, "a", 1)
    for _ in range(3):
        off.admit("a", waiting_client=True)
    with pytest.raises(Overloaded) as refused:
        off.admit("a", waiting_client=True)
    assert refused.value.reason == "queue"  # the queue still bounds it


def test_run_moves_a_ticket_from_waiting_to_running_and_back() -> None:
    async def scenario() -> None:
        admission = Admission(1, 10)
        ticket = admission.admit("a", waiting_client=True)
        seen: list[tuple[int, int]] = []

        async def job() -> str:
            seen.append((admission.waiting, admission.running))
            return "done"

        assert await admission.run(ticket, job) == "done"
        assert seen == [(0, 1)] and (admission.waiting, admission.running) == (0, 0)

    asyncio.run(scenario())
