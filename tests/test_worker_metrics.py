"""A worker's Prometheus metrics: they move with the work, listen where they are told
(loopback by default), and a taken port is a clear answer, not a broken worker."""

from __future__ import annotations

import os
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import PageServer, run_cli
from prometheus_client.parser import text_string_to_metric_families
from rabbit import free_port
from test_distributed import DEFAULT, Fleet, wait_for, write_urls

from distshot.core.config import parse_listen
from distshot.core.errors import ConfigError
from distshot.engines.chromium import process_tree


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    fleet = Fleet(tmp_path)
    yield fleet
    fleet.close()


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> Samples:
    """Every sample of the worker's /metrics, by (name, labels)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def refused_url() -> str:
    with socket.socket() as closed:  # a loopback port nobody listens on
        closed.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{closed.getsockname()[1]}/"


def listening(pid: int) -> set[tuple[str, int]]:
    """The IPv4 TCP addresses a process tree listens on (its sockets' inodes, found in
    /proc/net/tcp in the LISTEN state)."""
    inodes = set()
    for member in process_tree(pid):
        fd_dir = Path(f"/proc/{member}/fd")
        try:
            links = [os.readlink(fd) for fd in fd_dir.iterdir()]
        except OSError:
            continue  # gone, or a link that went with it
        inodes |= {link[8:-1] for link in links if link.startswith("socket:[")}
    found = set()
    for row in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = row.split()
        local, state, inode = fields[1], fields[3], fields[9]
        if state == "0A" and inode in inodes:
            address, port = local.split(":")
            ip = socket.inet_ntoa(bytes.fromhex(address)[::-1])
            found.add((ip, int(port, 16)))
    return found


def test_worker_metrics_move_with_the_work(fleet: Fleet, http_server: PageServer) -> None:
    # Given a worker with metrics on a port of its own, recycling its browser every 2 jobs
    port = free_port()
    fleet.worker(
        "playwright",
        threads=2,
        DISTSHOT_METRICS=f"127.0.0.1:{port}",
        DISTSHOT_RECYCLE_AFTER="2",
        DISTSHOT_MAX_ATTEMPTS="2",
    )
    wait_for(lambda: _answers(port), 30, "the metrics endpoint")
    before = scrape(port)
    assert value(before, "distshot_worker_shots_total", status="ok", engine="playwright") == 0
    assert value(before, "distshot_worker_jobs_in_flight", engine="playwright") == 0
    # When it captures four slow pages and one that refuses (retried once, then failed)
    pages = [f"{http_server.base}/slow?ms=1500&n={n}" for n in range(4)]
    urls = write_urls(fleet.tmp / "u.txt", [*pages, refused_url()])
    dispatcher = fleet.dispatch_background(urls, "metrics")
    in_flight_seen = []

    def busy() -> bool:
        now = value(scrape(port), "distshot_worker_jobs_in_flight", engine="playwright")
        in_flight_seen.append(now)
        return now >= 1

    wait_for(busy, 60, "a job in flight on /metrics")
    _, stderr = dispatcher.communicate(timeout=180)
    assert dispatcher.returncode == 1, stderr  # the refused page failed
    # Then the numbers say what happened
    after = scrape(port)
    shots = {
        status: value(after, "distshot_worker_shots_total", status=status, engine="playwright")
        for status in ("ok", "failed", "rejected")
    }
    assert shots == {"ok": 4, "failed": 1, "rejected": 0}
    assert value(after, "distshot_worker_retries_total", engine="playwright") == 1
    # 4 pages + 2 attempts of the refused one; each attempt is one latency observation
    assert value(after, "distshot_worker_capture_seconds_count", engine="playwright") == 6
    slow_enough = value(
        after, "distshot_worker_capture_seconds_bucket", engine="playwright", le="1.0"
    )
    assert slow_enough <= 2, "the 1.5 s pages must land above the 1 s bucket"

    # 6 jobs on a browser retired every 2: three browsers, two of them retired for their
    # jobs, and a fourth launched ahead during the third's last job (it starts in the
    # background: wait for it)
    def launched() -> float:
        return value(scrape(port), "distshot_worker_browser_launches_total", engine="playwright")

    wait_for(lambda: launched() >= 4, 30, "the browser launched ahead")
    assert launched() == 4
    recycled = value(
        after, "distshot_worker_browser_recycles_total", engine="playwright", reason="jobs"
    )
    assert recycled == 2
    assert value(after, "distshot_worker_jobs_in_flight", engine="playwright") == 0


def _answers(port: int) -> bool:
    try:
        scrape(port)
    except OSError:
        return False
    return True


def test_metrics_listen_on_loopback_by_default_and_a_taken_default_is_a_warning(
    fleet: Fleet,
) -> None:
    # Given the default port free on this machine (a worker of the machine's own would hold it)
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", 9191))
        except OSError:
            pytest.fail("port 9191 is taken on this machine: this test needs it free")
    # When a worker starts without --metrics
    first, _ = fleet.worker("null", DISTSHOT_METRICS=DEFAULT)
    wait_for(lambda: _answers(9191), 30, "the default metrics endpoint")
    # Then its tree listens on 127.0.0.1:9191 only: not on every interface
    assert (("127.0.0.1", 9191)) in listening(first.pid)
    assert not any(port == 9191 and ip != "127.0.0.1" for ip, port in listening(first.pid))
    # And a second worker on the same machine runs without metrics, saying so in one line
    second, _ = fleet.worker("null", DISTSHOT_METRICS=DEFAULT)
    log = (fleet.tmp / "worker-1.log").read_text()
    assert "warning: metrics port 127.0.0.1:9191 is taken" in log
    assert second.poll() is None
    assert not any(port == 9191 for _, port in listening(second.pid))
    # And the first one's numbers are its own: it still answers
    assert _answers(9191)


def test_metrics_off_listens_nowhere(fleet: Fleet) -> None:
    worker, _ = fleet.worker("null", DISTSHOT_METRICS="off")
    assert worker.poll() is None
    assert listening(worker.pid) == set()


def test_a_bad_or_taken_metrics_address_is_one_line_and_exit_2(tmp_path: Path) -> None:
    bad = run_cli("worker", "--engine", "null", "--metrics", "localhost")
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0
    assert "metrics must be HOST:PORT" in bad.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        busy = run_cli("worker", "--engine", "null", "--metrics", f"127.0.0.1:{port}")
    assert busy.returncode == 2
    assert busy.stderr.strip().count("\n") == 0
    assert f"cannot listen on 127.0.0.1:{port}" in busy.stderr


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:9191", ("127.0.0.1", 9191)),
        ("0.0.0.0:9100", ("0.0.0.0", 9100)),
        ("[::1]:9191", ("::1", 9191)),
        ("off", None),
        (" OFF ", None),
    ],
)
def test_metrics_addresses_parse(text: str, expected: tuple[str, int] | None) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text", ["9191", "localhost:9191", "127.0.0.1:0", "1.2.3.4:70000", ""])
def test_bad_metrics_addresses_are_refused(text: str) -> None:
    with pytest.raises(ConfigError, match="metrics must be HOST:PORT"):
        parse_listen(text)
