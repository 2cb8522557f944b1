"""Distributed mode against a real RabbitMQ: workers, dispatcher, replies, faults.

Every test uses its own queue prefix (so its own queues) and deletes them afterwards.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import dramatiq
import pytest
from conftest import DISTSHOT, PageServer, read_manifest, run_cli, wait_for, wait_no_processes
from rabbit import (
    SHARED_URL,
    PrivateRabbit,
    delete_queues,
    kill_group,
    new_prefix,
    publish_raw,
    queue_state,
    wait_for_consumers,
)

from distshot.engines.chromium import process_tree

#: A ``Fleet.env`` value that removes the variable.
DEFAULT = "\0default"


class Fleet:
    """Workers and dispatchers of one test, isolated by queue prefix."""

    def __init__(self, tmp: Path, url: str = SHARED_URL) -> None:
        self.tmp = tmp
        self.url = url
        self.prefix = new_prefix()
        self.processes: list[subprocess.Popen[str]] = []
        #: (worker, its engine, its worker processes)
        self.workers: list[tuple[subprocess.Popen[str], str, int]] = []
        self.queues: set[str] = set()
        self.tags: list[str] = []

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of this test's processes; a variable given as ``DEFAULT`` is
        removed, so that the setting's own default applies."""
        env = {
            **os.environ,
            "DISTSHOT_QUEUE_PREFIX": self.prefix,
            "DISTSHOT_BROKER_URL": self.url,
            "DISTSHOT_DRAMATIQ_LOG_LEVEL": "INFO",
            # Core claims of this test's workers only (see distshot.actors.affinity).
            "DISTSHOT_CPU_LOCK_DIR": str(self.tmp / "cpu-claims"),
            **extra,
        }
        return {name: value for name, value in env.items() if value != DEFAULT}

    def worker(
        self, engine: str = "null", threads: int = 2, processes: int = 1, **env: str
    ) -> tuple[subprocess.Popen[str], str]:
        tag = uuid.uuid4().hex
        self.tags.append(tag)
        log = open(self.tmp / f"worker-{len(self.processes)}.log", "w")  # noqa: SIM115
        process = subprocess.Popen(
            [
                *DISTSHOT,
                "worker",
                "--engine",
                engine,
                "--threads",
                str(threads),
                "--processes",
                str(processes),
                "--storage",
                str(self.tmp / "shots"),
            ],
            env=self.env(DISTSHOT_TEST_TAG=tag, DISTSHOT_LOG_LEVEL="INFO", **env),
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.processes.append(process)
        self.workers.append((process, engine, processes))
        queue = f"{self.prefix}.{engine}"
        self.queues.add(queue)
        alive = sum(n for p, e, n in self.workers if e == engine and p.poll() is None)
        wait_for_consumers(self.url, queue, count=alive)
        return process, tag

    def dispatch_args(self, urls: Path, batch: str, *extra: str) -> list[str]:
        self.queues.add(f"{self.prefix}.reply.{batch}")
        return [
            "dispatch",
            str(urls),
            "--broker",
            self.url,
            "--batch",
            batch,
            "--manifest",
            str(self.tmp / f"{batch}.jsonl"),
            "--allow-private",
            *extra,
        ]

    def dispatch(
        self, urls: Path, batch: str, *extra: str, timeout: float = 240
    ) -> subprocess.CompletedProcess[str]:
        return run_cli(*self.dispatch_args(urls, batch, *extra), timeout=timeout, env=self.env())

    def dispatch_background(
        self, urls: Path, batch: str, *extra: str, prefix: Sequence[str] = ()
    ) -> subprocess.Popen[str]:
        """``prefix``: a command to run it under (``ip netns exec HOST`` for a lab host)."""
        process = subprocess.Popen(
            [*prefix, *DISTSHOT, *self.dispatch_args(urls, batch, *extra)],
            env=self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.processes.append(process)
        return process

    def manifest(self, batch: str) -> list[dict[str, Any]]:
        return read_manifest(self.tmp / f"{batch}.jsonl")

    def close(self) -> None:
        for process in self.processes:
            kill_group(process, signal.SIGKILL)
            process.wait(timeout=30)
        for tag in self.tags:
            wait_no_processes(tag, timeout=10)
        with contextlib.suppress(Exception):
            delete_queues(self.url, self.prefix, sorted(self.queues))


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    fleet = Fleet(tmp_path)
    yield fleet
    fleet.close()


def write_urls(path: Path, urls: list[str]) -> Path:
    path.write_text("".join(u + "\n" for u in urls))
    return path


def lines_of(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_two_workers_answer_every_request_exactly_once(fleet: Fleet) -> None:
    fleet.worker("null")
    fleet.worker("null")
    urls = [f"https://a.test/{n}" for n in range(300)] + ["ftp://bad/", "not a url"]
    result = fleet.dispatch(write_urls(fleet.tmp / "u.txt", urls), "two", "--engine", "null")
    assert result.returncode == 1, result.stderr  # the two bad lines
    records = fleet.manifest("two")
    assert sorted(r["line"] for r in records) == list(range(1, 303))
    assert Counter(r["status"] for r in records) == {"ok": 300, "rejected": 2}
    assert len({r["id"] for r in records}) == 302
    # The batch is over: its reply queue and journal are gone.
    assert queue_state(fleet.url, f"{fleet.prefix}.reply.two") is None
    assert not (fleet.tmp / "two.jsonl.sent").exists()


def test_requests_sent_before_any_worker_exists_are_kept(fleet: Fleet) -> None:
    urls = write_urls(fleet.tmp / "u.txt", [f"https://a.test/{n}" for n in range(20)])
    fleet.queues.add(f"{fleet.prefix}.null")
    dispatcher = fleet.dispatch_background(urls, "early", "--engine", "null")
    # the requests wait in the durable queue: no worker yet
    queue = f"{fleet.prefix}.null"
    wait_for(lambda: (queue_state(fleet.url, queue) or (0, 0))[0] == 20, 60, "20 queued requests")
    assert dispatcher.poll() is None
    fleet.worker("null")
    _, stderr = dispatcher.communicate(timeout=120)
    assert dispatcher.returncode == 0, stderr
    assert len(fleet.manifest("early")) == 20


def test_a_request_for_an_engine_no_worker_serves_is_reported(fleet: Fleet) -> None:
    fleet.worker("null")
    fleet.queues.add(f"{fleet.prefix}.playwright")
    urls = fleet.tmp / "u.jsonl"
    urls.write_text(
        json.dumps({"url": "https://a.test/1"})
        + "\n"
        + json.dumps({"url": "https://a.test/2", "engine": "playwright"})
        + "\n"
    )
    # The silence that ends the wait must outlast the served line's answer, which a worker's
    # first job on a loaded CI machine has taken more than 3 s to give.
    result = fleet.dispatch(urls, "unserved", "--engine", "null", "--wait-timeout", "10")
    assert result.returncode == 1, result.stderr
    records = {r["line"]: r for r in fleet.manifest("unserved")}
    assert records[1]["status"] == "ok"
    assert records[2]["status"] == "failed"
    assert records[2]["error"]["type"] == "ReplyTimeout"
    assert f"{fleet.prefix}.playwright" in records[2]["error"]["message"]


def test_a_requests_engine_field_routes_it_to_that_engines_workers(
    fleet: Fleet, http_server: PageServer
) -> None:
    # Given one worker per engine on the same broker
    fleet.worker("null")
    fleet.worker("pyppeteer")
    urls = fleet.tmp / "u.jsonl"
    page = f"{http_server.base}/solid.html"
    urls.write_text(
        json.dumps({"url": page}) + "\n" + json.dumps({"url": page, "engine": "pyppeteer"}) + "\n"
    )
    # When a batch whose default engine is null names pyppeteer on one line
    result = fleet.dispatch(urls, "routed", "--engine", "null")
    assert result.returncode == 0, result.stderr
    records = {r["line"]: r for r in fleet.manifest("routed")}
    # Then each line was captured by the engine it asked for
    assert records[1]["engine"] == "null" and records[1]["title"] is None
    assert records[2]["engine"] == "pyppeteer" and records[2]["title"] == "solid"
    assert (records[2]["width"], records[2]["height"]) == (1280, 800)


def test_malformed_messages_are_dead_lettered_and_the_worker_keeps_going(fleet: Fleet) -> None:
    fleet.worker("null")
    queue = f"{fleet.prefix}.null"
    # Given a message that is not JSON and one with the wrong fields
    publish_raw(fleet.url, queue, b"this is not json")
    wrong = dramatiq.Message(
        queue_name=queue,
        actor_name="distshot.capture",
        args=("just a string",),
        kwargs={},
        options={},
    )
    publish_raw(fleet.url, queue, wrong.encode())
    # When good requests follow, then they are answered
    urls = write_urls(fleet.tmp / "u.txt", [f"https://a.test/{n}" for n in range(5)])
    result = fleet.dispatch(urls, "afterbad", "--engine", "null")
    assert result.returncode == 0, result.stderr
    assert len(fleet.manifest("afterbad")) == 5
    # and both bad messages sit in the dead-letter queue, with the reason logged
    wait_for(
        lambda: (queue_state(fleet.url, queue + ".XQ") or (0, 0))[0] == 2, 30, "2 dead letters"
    )
    log = (fleet.tmp / "worker-0.log").read_text()
    assert "Failed to decode message" in log
    assert "cannot answer a message without an id" in log


def test_final_failures_are_retried_answered_once_and_dead_lettered(
    fleet: Fleet, http_server: PageServer
) -> None:
    fleet.worker("playwright", threads=2)
    urls = fleet.tmp / "u.jsonl"
    with socket.socket() as closed:  # a loopback port nobody listens on: refused
        closed.bind(("127.0.0.1", 0))
        refused = f"http://127.0.0.1:{closed.getsockname()[1]}/"
    lines = [
        {"url": f"{http_server.base}/hang", "timeout": 1},
        {"url": refused},
        {"url": f"{http_server.base}/loop"},
        {"url": f"{http_server.base}/solid.html"},
    ]
    urls.write_text("".join(json.dumps(line) + "\n" for line in lines))
    result = fleet.dispatch(urls, "retries")
    assert result.returncode == 1, result.stderr
    records = {r["line"]: r for r in fleet.manifest("retries")}
    assert len(fleet.manifest("retries")) == 4
    # A timeout is tried twice (TIMEOUT_RETRIES), another transient error max_attempts
    # times (3), a permanent one once
    assert (records[1]["error"]["type"], records[1]["attempts"]) == ("NavigationTimeout", 2)
    assert (records[2]["error"]["type"], records[2]["attempts"]) == ("NetworkError", 3)
    assert (records[3]["error"]["type"], records[3]["attempts"]) == ("RedirectLoop", 1)
    assert (records[4]["status"], records[4]["attempts"]) == ("ok", 1)
    assert http_server.seen.paths().count("/hang") == 2
    queue = f"{fleet.prefix}.playwright.XQ"
    wait_for(lambda: (queue_state(fleet.url, queue) or (0, 0))[0] == 3, 30, "3 dead letters")


@pytest.mark.slow
def test_worker_killed_mid_job_loses_no_request(fleet: Fleet, http_server: PageServer) -> None:
    # Given a worker busy with slow pages
    victim, victim_tag = fleet.worker("playwright", threads=2)
    urls = write_urls(
        fleet.tmp / "u.txt", [f"{http_server.base}/slow?ms=2500&n={n}" for n in range(8)]
    )
    dispatcher = fleet.dispatch_background(urls, "killw")
    wait_for(lambda: len(http_server.seen.requests) >= 2, 60, "the victim to start jobs")
    # When it is killed with SIGKILL, together with its browser
    kill_group(victim, signal.SIGKILL)
    for pid in __import__("conftest").tagged_processes(victim_tag):
        os.kill(pid, signal.SIGKILL)
    victim.wait(timeout=10)
    fleet.worker("playwright", threads=2)
    # Then its unacked jobs go to the other worker and every request finishes once
    _, stderr = dispatcher.communicate(timeout=180)
    assert dispatcher.returncode == 0, stderr
    records = fleet.manifest("killw")
    assert sorted(r["line"] for r in records) == list(range(1, 9))
    assert {r["status"] for r in records} == {"ok"}
    assert wait_no_processes(victim_tag, timeout=10) == []


@pytest.mark.slow
def test_dispatcher_killed_and_resumed_loses_and_doubles_nothing(
    fleet: Fleet, http_server: PageServer
) -> None:
    fleet.worker("playwright", threads=2)
    count = 30
    urls = write_urls(
        fleet.tmp / "u.txt", [f"{http_server.base}/slow?ms=300&n={n}" for n in range(count)]
    )
    manifest = fleet.tmp / "resume.jsonl"
    # Given a dispatcher killed with SIGKILL mid-batch
    dispatcher = fleet.dispatch_background(urls, "resume", "--window", "6")
    wait_for(lambda: lines_of(manifest) >= 8, 120, "8 records")
    kill_group(dispatcher, signal.SIGKILL)
    dispatcher.wait(timeout=10)
    before = {r["line"] for r in read_manifest_tolerant(manifest)}
    assert 8 <= len(before) < count
    # When it is resumed
    result = run_cli(
        "dispatch",
        str(urls),
        "--broker",
        fleet.url,
        "--resume",
        "resume",
        "--manifest",
        str(manifest),
        "--allow-private",
        env=fleet.env(),
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    assert "already in the manifest" in result.stderr
    # Then every line has exactly one record, and nothing recorded before was captured again
    records = fleet.manifest("resume")
    assert sorted(r["line"] for r in records) == list(range(1, count + 1))
    hits = Counter(r["query"]["n"] for r in http_server.seen.requests if r["path"] == "/slow")
    for line in before:
        assert hits[str(line - 1)] == 1, f"line {line} captured {hits[str(line - 1)]} times"
    assert sum(hits.values()) <= count + 1  # at most one publish-journal race


def read_manifest_tolerant(path: Path) -> list[dict[str, Any]]:
    out = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(json.JSONDecodeError):  # a torn last line: resume cuts it
            out.append(json.loads(line))
    return out


@pytest.mark.slow
def test_rabbitmq_restart_mid_batch_completes(tmp_path: Path, http_server: PageServer) -> None:
    rabbit = PrivateRabbit()
    rabbit.start()
    fleet = Fleet(tmp_path, rabbit.url)
    try:
        fleet.worker("playwright", threads=2)
        count = 24
        urls = write_urls(
            tmp_path / "u.txt", [f"{http_server.base}/slow?ms=300&n={n}" for n in range(count)]
        )
        manifest = tmp_path / "restart.jsonl"
        dispatcher = fleet.dispatch_background(urls, "restart", "--window", "6")
        wait_for(lambda: lines_of(manifest) >= 5, 120, "5 records")
        # When the broker restarts mid-batch
        rabbit.stop_app()
        time.sleep(3)  # the outage itself: what the test is about, not a wait for a condition
        rabbit.start_app()
        # Then workers and dispatcher reconnect and the batch completes, each line once
        _, stderr = dispatcher.communicate(timeout=240)
        assert dispatcher.returncode == 0, stderr
        records = fleet.manifest("restart")
        assert sorted(r["line"] for r in records) == list(range(1, count + 1))
        assert {r["status"] for r in records} == {"ok"}
    finally:
        fleet.close()
        rabbit.stop()


@pytest.mark.slow
@pytest.mark.parametrize("target", ["main process", "process group"])
def test_sigterm_worker_hands_back_its_jobs_and_closes_its_browser(
    fleet: Fleet, http_server: PageServer, target: str
) -> None:
    first, first_tag = fleet.worker("playwright", threads=2)
    urls = write_urls(
        fleet.tmp / "u.txt", [f"{http_server.base}/slow?ms=2000&n={n}" for n in range(6)]
    )
    dispatcher = fleet.dispatch_background(urls, "term")
    wait_for(lambda: len(http_server.seen.requests) >= 2, 60, "jobs in flight")
    fleet.worker("playwright", threads=2)
    if target == "main process":
        # `kill PID`: Dramatiq passes one SIGTERM on to its worker processes: a graceful stop
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=60) == 0
    else:
        # systemd's default: every process gets SIGTERM, so the worker sees it twice
        kill_group(first, signal.SIGTERM)
        first.wait(timeout=60)
    _, stderr = dispatcher.communicate(timeout=180)
    assert dispatcher.returncode == 0, stderr
    records = fleet.manifest("term")
    assert sorted(r["line"] for r in records) == list(range(1, 7))
    assert {r["status"] for r in records} == {"ok"}
    assert wait_no_processes(first_tag, timeout=10) == []


def test_dramatiq_cli_runs_the_same_worker(fleet: Fleet) -> None:
    # `dramatiq distshot.actors`, configured from the environment like `distshot worker`
    log = open(fleet.tmp / "dramatiq.log", "w")  # noqa: SIM115
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dramatiq",
            "distshot.actors",
            "--processes",
            "1",
            "--threads",
            "2",
            "--queues",
            f"{fleet.prefix}.null",
        ],
        env=fleet.env(DISTSHOT_ENGINE="null", DISTSHOT_STORAGE=str(fleet.tmp / "shots")),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        text=True,
    )
    fleet.processes.append(process)
    fleet.queues.add(f"{fleet.prefix}.null")
    wait_for_consumers(fleet.url, f"{fleet.prefix}.null")
    urls = write_urls(fleet.tmp / "u.txt", [f"https://a.test/{n}" for n in range(10)])
    result = fleet.dispatch(urls, "viadramatiq", "--engine", "null")
    assert result.returncode == 0, result.stderr
    records = fleet.manifest("viadramatiq")
    assert len(records) == 10 and {r["engine"] for r in records} == {"null"}
    assert all(Path(r["location"].removeprefix("file://")).is_file() for r in records)


def test_an_unreachable_or_refusing_broker_is_one_line_and_exit_2(tmp_path: Path) -> None:
    urls = write_urls(tmp_path / "u.txt", ["https://a.test/"])
    closed = f"amqp://guest:guest@127.0.0.1:{__import__('rabbit').free_port()}/%2F"
    for url, reason in (
        (closed, "connection refused"),
        (SHARED_URL.replace("guest:guest", "guest:wrong"), "authentication failed"),
    ):
        result = run_cli(
            "dispatch",
            str(urls),
            "--broker",
            url,
            "--batch",
            "nobroker",
            "--manifest",
            str(tmp_path / "m.jsonl"),
        )
        assert result.returncode == 2
        assert result.stderr.strip().count("\n") == 0, result.stderr
        assert reason in result.stderr and "Traceback" not in result.stderr
        assert "wrong" not in result.stderr  # the password is not echoed


def test_default_manifest_is_batch_jsonl_and_a_rerun_must_say_resume(fleet: Fleet) -> None:
    fleet.worker("null")
    fleet.queues.add(f"{fleet.prefix}.reply.plain")
    urls = write_urls(fleet.tmp / "u.txt", ["https://a.test/1", "https://a.test/2"])
    args = [
        "dispatch",
        str(urls),
        "--broker",
        fleet.url,
        "--batch",
        "plain",
        "--engine",
        "null",
        "--allow-private",
    ]
    # Given no --manifest, the records go to BATCH.jsonl in the working directory
    result = run_cli(*args, env=fleet.env(), cwd=fleet.tmp)
    assert result.returncode == 0, result.stderr
    assert len(read_manifest(fleet.tmp / "plain.jsonl")) == 2
    # Running the same batch again must not append a second set of records silently
    again = run_cli(*args, env=fleet.env(), cwd=fleet.tmp)
    assert again.returncode == 2
    assert "--resume plain" in again.stderr and "Traceback" not in again.stderr
    assert len(read_manifest(fleet.tmp / "plain.jsonl")) == 2
    # and resuming a batch that never ran says there is nothing to resume
    missing = run_cli(
        "dispatch",
        str(urls),
        "--broker",
        fleet.url,
        "--resume",
        "never",
        env=fleet.env(),
        cwd=fleet.tmp,
    )
    assert missing.returncode == 2 and "nothing to resume" in missing.stderr


# -- pinning worker processes to cores (distshot.actors.affinity) ---------------------------


def thread_affinities(pid: int) -> set[frozenset[int]]:
    """The distinct CPU sets of a process's threads."""
    found = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            found.add(frozenset(os.sched_getaffinity(int(task.name))))
    return found


#: For counting a worker's processes: with metrics on, their exposition is one more child.
NO_METRICS = {"DISTSHOT_METRICS": "off"}


def worker_processes(worker: subprocess.Popen[str], count: int) -> list[int]:
    """The Dramatiq worker processes under a ``distshot worker`` (which became Dramatiq's
    main process) started with ``NO_METRICS``."""
    wait_for(lambda: len(process_tree(worker.pid)) == count + 1, what=f"{count} processes")
    return process_tree(worker.pid)[1:]


def test_each_null_engine_worker_process_pins_its_threads_to_a_core_of_its_own(
    fleet: Fleet,
) -> None:
    cores = os.sched_getaffinity(0)
    if len(cores) < 2:
        pytest.skip("pinning to a core of its own needs two cores")
    worker, _ = fleet.worker("null", threads=4, processes=2, **NO_METRICS)
    children = worker_processes(worker, 2)
    pins = [thread_affinities(pid) for pid in children]
    # every thread of a process on the same single core, the two processes on different ones
    assert all(len(pin) == 1 and len(next(iter(pin))) == 1 for pin in pins), pins
    assert pins[0] != pins[1]
    urls = write_urls(fleet.tmp / "u.txt", [f"https://a.test/{n}" for n in range(40)])
    result = fleet.dispatch(urls, "pinned", "--engine", "null")
    assert result.returncode == 0, result.stderr
    assert {r["status"] for r in fleet.manifest("pinned")} == {"ok"}

    # A killed process's claim dies with it: the next worker gets a core, not "all taken".
    kill_group(worker, signal.SIGKILL)
    worker.wait(timeout=30)
    # (the worker processes die a moment after the main one: a claim is released when its
    # process is gone, not before)
    wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in children), what="exit")
    again, _ = fleet.worker("null", processes=1, **NO_METRICS)
    (pid,) = worker_processes(again, 1)
    assert thread_affinities(pid) == {frozenset({min(cores)})}


def test_browser_engine_workers_and_pin_cpu_off_leave_threads_free(fleet: Fleet) -> None:
    """A browser started by a pinned thread would inherit its one core."""
    cores = frozenset(os.sched_getaffinity(0))
    browser, _ = fleet.worker("playwright", **NO_METRICS)  # no browser before a job
    switched_off, _ = fleet.worker("null", DISTSHOT_PIN_CPU="off", **NO_METRICS)
    for worker in (browser, switched_off):
        (pid,) = worker_processes(worker, 1)
        assert thread_affinities(pid) == {cores}


def test_pin_cpu_on_pins_even_a_browser_engines_worker(fleet: Fleet) -> None:
    cores = os.sched_getaffinity(0)
    if len(cores) < 2:
        pytest.skip("pinning to a core of its own needs two cores")
    worker, _ = fleet.worker("playwright", DISTSHOT_PIN_CPU="on", **NO_METRICS)
    (pid,) = worker_processes(worker, 1)
    assert thread_affinities(pid) == {frozenset({min(cores)})}
