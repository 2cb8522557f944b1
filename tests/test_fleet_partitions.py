"""Faults between hosts: a fleet on network namespaces (tests/netlab.py), the broker, two
workers and the dispatcher each on a "host" of its own, the pages on the machine's end
of the bridge. A host is cut off by taking its link down: packets vanish, nothing is
refused, and only heartbeats (4 s here) tell anyone.

Every address is on the lab's own bridge; NetLab.check_routes proves it before a packet
is sent.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import DISTSHOT, PageServer, start_server, stop_server, wait_for
from netlab import NetLab
from rabbit import PrivateRabbit, queue_state
from test_distributed import Fleet, lines_of, write_urls

pytestmark = pytest.mark.slow

#: Missed heartbeats are how a silent partition is noticed: RabbitMQ drops a connection
#: after two intervals without a frame, the clients likewise.
HEARTBEAT = 4


@pytest.fixture(scope="module")
def lab() -> Iterator[NetLab]:
    lab = NetLab()
    try:
        lab.start()
        for role in ("broker", "w1", "w2", "disp"):
            lab.add_host(role)
        lab.check_routes()
        yield lab
    finally:
        lab.close()
    assert lab.leftovers() == [], "the lab was not cleaned up"


@pytest.fixture(scope="module")
def broker(lab: NetLab) -> Iterator[PrivateRabbit]:
    host = lab.hosts["broker"]
    rabbit = PrivateRabbit(netns=host.name, address=host.address)
    try:
        rabbit.start()
        yield rabbit
    finally:
        rabbit.stop()


@pytest.fixture(scope="module")
def lab_pages(lab: NetLab) -> Iterator[PageServer]:
    server = start_server(host=lab.gateway)
    yield server
    stop_server(server)


class LabFleet(Fleet):
    """A Fleet whose workers and dispatcher run on the lab's hosts."""

    def __init__(self, tmp: Path, lab: NetLab, url: str) -> None:
        super().__init__(tmp, url=f"{url}?heartbeat={HEARTBEAT}")
        self.lab = lab
        self.plain_url = url  # for the test's own checks from the machine

    def worker_on(self, role: str) -> subprocess.Popen[str]:
        log = open(self.tmp / f"worker-{role}.log", "w")  # noqa: SIM115
        process = subprocess.Popen(
            [
                *self.lab.hosts[role].exec_prefix(),
                *DISTSHOT,
                "worker",
                "--engine",
                "playwright",
                "--threads",
                "2",
                "--storage",
                str(self.tmp / "shots"),
            ],
            env=self.env(DISTSHOT_LOG_LEVEL="INFO"),
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.processes.append(process)
        self.queues.add(self.queue)
        return process

    @property
    def queue(self) -> str:
        return f"{self.prefix}.playwright"

    def dispatch_on(self, role: str, urls: Path, batch: str, *extra: str) -> subprocess.Popen[str]:
        prefix = self.lab.hosts[role].exec_prefix()
        return self.dispatch_background(urls, batch, *extra, prefix=prefix)

    def consumers(self) -> int:
        state = queue_state(self.plain_url, self.queue)
        return state[1] if state else 0

    def check_once_each(self, batch: str, count: int) -> None:
        records = self.manifest(batch)
        lines = Counter(r["line"] for r in records)
        assert sorted(lines) == list(range(1, count + 1)), "a record is missing"
        assert set(lines.values()) == {1}, "a record is doubled"
        assert {r["status"] for r in records} == {"ok"}, [
            r["error"] for r in records if r["status"] != "ok"
        ]


@pytest.fixture
def fleet(tmp_path: Path, lab: NetLab, broker: PrivateRabbit) -> Iterator[LabFleet]:
    fleet = LabFleet(tmp_path, lab, broker.url)
    try:
        yield fleet
    finally:
        for role in lab.hosts:
            lab.mend(role)  # a failed test must not leave the next one cut off
        fleet.close()


def slow_pages(pages: PageServer, count: int, ms: int) -> list[str]:
    return [f"{pages.base}/slow?ms={ms}&n={n}" for n in range(count)]


def test_a_partitioned_workers_jobs_go_to_the_other_and_it_rejoins(
    fleet: LabFleet, lab: NetLab, lab_pages: PageServer
) -> None:
    # Given two workers on two hosts, busy with a batch
    partitioned = fleet.worker_on("w1")
    fleet.worker_on("w2")
    wait_for(lambda: fleet.consumers() == 2, 90, "two workers")
    count = 40
    urls = write_urls(fleet.tmp / "u.txt", slow_pages(lab_pages, count, 1500))
    manifest = fleet.tmp / "part-worker.jsonl"
    dispatcher = fleet.dispatch_on("disp", urls, "part-worker")
    wait_for(lambda: lines_of(manifest) >= 6, 120, "the batch under way")
    # When one worker's link goes down mid-batch
    lab.cut("w1")
    # Then the broker notices by heartbeat and drops its consumer
    wait_for(lambda: fleet.consumers() == 1, 60, "the broker to notice the partition")
    # And the batch completes on the other worker, every request answered exactly once,
    # while the partitioned one is still cut off (its unacked jobs were redelivered)
    _, stderr = dispatcher.communicate(timeout=300)
    assert dispatcher.returncode == 0, stderr
    fleet.check_once_each("part-worker", count)
    assert partitioned.poll() is None, "the partitioned worker gave up instead of waiting"
    # And when the link comes back, it rejoins
    lab.mend("w1")
    wait_for(lambda: fleet.consumers() == 2, 120, "the partitioned worker to rejoin")


def test_a_partitioned_dispatcher_resumes_and_its_replies_were_kept(
    fleet: LabFleet, lab: NetLab, lab_pages: PageServer
) -> None:
    fleet.worker_on("w1")
    fleet.worker_on("w2")
    wait_for(lambda: fleet.consumers() == 2, 90, "two workers")
    count = 40
    urls = write_urls(fleet.tmp / "u.txt", slow_pages(lab_pages, count, 1000))
    manifest = fleet.tmp / "part-disp.jsonl"
    # A small window: most of the batch is still to be sent when the link goes
    dispatcher = fleet.dispatch_on("disp", urls, "part-disp", "--window", "8")
    wait_for(lambda: lines_of(manifest) >= 4, 120, "the batch under way")
    # When the dispatcher's link goes down
    lab.cut("disp")
    written = lines_of(manifest)
    # Then the workers' replies wait in its reply queue, on the broker
    reply_queue = f"{fleet.prefix}.reply.part-disp"
    wait_for(
        lambda: (queue_state(fleet.plain_url, reply_queue) or (0, 0))[0] >= 3,
        60,
        "replies kept in the reply queue during the partition",
    )
    time.sleep(2 * HEARTBEAT)  # long enough for both ends to call the connection dead
    assert lines_of(manifest) == written, "nothing can arrive while cut off"
    assert dispatcher.poll() is None, "the dispatcher gave up instead of waiting"
    # And when the link returns, the window resumes and the batch completes, exactly once
    lab.mend("disp")
    _, stderr = dispatcher.communicate(timeout=300)
    assert dispatcher.returncode == 0, stderr
    fleet.check_once_each("part-disp", count)


def test_a_broker_host_gone_for_30_s_and_everyone_reconnects(
    fleet: LabFleet, lab: NetLab, lab_pages: PageServer, broker: PrivateRabbit
) -> None:
    fleet.worker_on("w1")
    fleet.worker_on("w2")
    wait_for(lambda: fleet.consumers() == 2, 90, "two workers")
    count = 30
    urls = write_urls(fleet.tmp / "u.txt", slow_pages(lab_pages, count, 1000))
    manifest = fleet.tmp / "broker-gone.jsonl"
    dispatcher = fleet.dispatch_on("disp", urls, "broker-gone", "--window", "10")
    wait_for(lambda: lines_of(manifest) >= 4, 120, "the batch under way")
    # When the broker's host is gone for 30 s
    lab.cut("broker")
    gone_at = time.monotonic()
    with pytest.raises(OSError):  # gone: not even refused (it would not time out)
        socket.create_connection((broker.address, broker.port), 3).close()
    time.sleep(max(0.0, 30 - (time.monotonic() - gone_at)))
    lab.mend("broker")
    # Then the workers and the dispatcher reconnect and the batch completes, exactly once
    wait_for(lambda: fleet.consumers() == 2, 120, "both workers back")
    _, stderr = dispatcher.communicate(timeout=300)
    assert dispatcher.returncode == 0, stderr
    fleet.check_once_each("broker-gone", count)


def test_the_lab_refuses_an_address_off_its_bridge(lab: NetLab) -> None:
    # TEST-NET-2 (RFC 5737): routed, if at all, through the machine's default gateway.
    # ``ip route get`` only asks the kernel: nothing is sent.
    with pytest.raises(AssertionError, match="not routed through"):
        lab.assert_routed("198.51.100.1")
    lab.assert_routed(lab.hosts["broker"].address)


def test_a_labs_cleanup_leaves_nothing_even_with_processes_inside() -> None:
    lab = NetLab()
    lab.start()
    try:
        host = lab.add_host("h")
        lab.check_routes()
        sleeper = subprocess.Popen([*host.exec_prefix(), "sleep", "300"], start_new_session=True)
        wait_for(lambda: sleeper.pid in host.pids(), 10, "a process inside the namespace")
        assert lab.leftovers() != []
    finally:
        lab.close()
    assert sleeper.wait(timeout=10) != 0  # killed with its namespace
    assert lab.leftovers() == []
