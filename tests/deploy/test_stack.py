"""The container stack of compose.yaml, for real, with Podman: images built from this tree,
RabbitMQ (Debian's, with the management UI), an S3 store (moto_server), workers, `distshot
serve`, and the example site served from a container of the stack.

`make test-deploy` runs this file (after deploy/podman/setup.sh); plain `make test` does not
collect it (pyproject: norecursedirs). The tests run in order on one stack: health and the
service, 1 worker then 3 (drain times), a 200-URL batch with a worker killed in the middle,
and the tear-down, which must leave no container, pod, network or volume behind. Every
podman-compose call has a time limit, and the stack is removed even when a test fails.
Traffic stays on the stack's own network and on loopback ports published on 127.0.0.1.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
PODMAN_DIR = ROOT / "deploy" / "podman"
PROJECT_PREFIX = "dstest"
#: podman-compose hangs when a container fails to start: no call may wait longer.
COMPOSE_TIMEOUT = 240.0
SITE_IP = "10.89.170.80"  # compose.yaml's default DISTSHOT_SITE_IP, in its fixed subnet
PAGES = ("index.html", "gallery.html", "long.html", "i18n.html", "fonts.html")
QUEUE = "distshot.playwright"
S3_KEY, S3_SECRET, BUCKET = "distshot", "distshot-secret", "shots"
RABBIT_USER, RABBIT_PASSWORD = "distshot", "distshot-secret"
#: Small captures keep a 200-URL batch within minutes on two cores.
CAPTURE_FLAGS = ("--width", "640", "--height", "480")
WORKER_CPUS = "0.5"

pytestmark = pytest.mark.timeout(1800)


def podman_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("CONTAINERS_CONF", str(PODMAN_DIR / "containers.conf"))
    return env


def run_bounded(
    cmd: Sequence[str], *, timeout: float, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` in a session of its own; past ``timeout`` the whole session is killed
    (podman-compose leaves podman children behind otherwise) and TimeoutError raised."""
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=env or podman_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        raise TimeoutError(f"{' '.join(cmd)} took over {timeout:.0f} s:\n{out[-3000:]}") from None
    return subprocess.CompletedProcess(cmd, proc.returncode, out, "")


def podman(*args: str, timeout: float = 60.0) -> str:
    done = run_bounded(["podman", *args], timeout=timeout)
    if done.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} failed:\n{done.stdout[-3000:]}")
    return done.stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def compose_binary() -> str:
    found = shutil.which("podman-compose") or str(ROOT / ".venv" / "bin" / "podman-compose")
    if not Path(found).exists() or shutil.which("podman") is None:
        pytest.fail(
            "podman or podman-compose is missing: run `make test-deploy`, which installs them"
        )
    return found


def http_json(
    url: str, *, auth: tuple[str, str] | None = None, timeout: float = 10, **kwargs: Any
) -> Any:
    request = urllib.request.Request(url, **kwargs)
    if auth is not None:
        token = f"{auth[0]}:{auth[1]}".encode()
        request.add_header("Authorization", "Basic " + base64.b64encode(token).decode())
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read() or b"null")


@dataclass
class Batch:
    name: str
    returncode: int
    output: str
    records: list[dict[str, Any]]

    @property
    def seconds(self) -> float:
        """The dispatcher's own time from first send to last reply (its summary line)."""
        match = re.search(r"\d+ done: .* in ([\d.]+)s", self.output)
        assert match, f"no summary line in the dispatcher's output:\n{self.output[-2000:]}"
        return float(match.group(1))


@dataclass
class Stack:
    project: str
    batch_dir: Path
    api_key: str
    ports: dict[str, int]
    compose_cmd: str
    figures: dict[str, str] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        env = podman_env()
        env.update(
            DISTSHOT_RABBITMQ_IMAGE="localhost/rabbitmq-debian:3.10",
            DISTSHOT_S3_IMAGE="localhost/moto-s3:latest",
            DISTSHOT_IMAGE="localhost/distshot:latest",
            DISTSHOT_API_KEYS=f"test={self.api_key}",
            # The site's one address, not the subnet (which holds the broker and the store).
            DISTSHOT_ALLOW_NETWORKS=f"{SITE_IP}/32",
            DISTSHOT_RABBITMQ_PORT=f"127.0.0.1:{self.ports['amqp']}",
            DISTSHOT_RABBITMQ_UI_PORT=f"127.0.0.1:{self.ports['ui']}",
            DISTSHOT_S3_PORT=f"127.0.0.1:{self.ports['s3']}",
            DISTSHOT_SERVE_PORT=f"127.0.0.1:{self.ports['serve']}",
            DISTSHOT_BATCH_DIR=str(self.batch_dir),
            # One job at a time and half a core per worker: a worker is a fixed unit of
            # capacity, as on a fleet of machines, and the fleet's size is what the drain
            # test varies. (Unlimited, one worker alone already spreads over both cores of
            # this two-core host, and more workers on it add no capacity; with two thirds of
            # a core each, three filled the host and the gain drowned in other load.)
            DISTSHOT_WORKER_THREADS="1",
            DISTSHOT_WORKER_CPUS=WORKER_CPUS,
        )
        return env

    def compose(
        self, *args: str, profiles: Sequence[str] = ("demo",), timeout: float = COMPOSE_TIMEOUT
    ) -> str:
        cmd = [self.compose_cmd, "-p", self.project]
        for profile in profiles:
            cmd += ["--profile", profile]
        done = run_bounded([*cmd, *args], timeout=timeout, env=self.env)
        if done.returncode != 0:
            raise AssertionError(
                f"podman-compose {' '.join(args)} exited {done.returncode}:\n{done.stdout[-4000:]}"
            )
        return done.stdout

    def container(self, service: str, index: int = 1) -> str:
        return f"{self.project}_{service}_{index}"

    # -- readiness ---------------------------------------------------------------------

    def rabbit(self, path: str) -> Any:
        return http_json(
            f"http://127.0.0.1:{self.ports['ui']}/api/{path}", auth=(RABBIT_USER, RABBIT_PASSWORD)
        )

    def wait_for_consumers(self, count: int, timeout: float = 180.0) -> None:
        """Until the engine's queue has ``count`` consumers: that many workers are up."""
        deadline = time.monotonic() + timeout
        seen: Any = None
        while time.monotonic() < deadline:
            try:
                seen = self.rabbit(f"queues/%2F/{QUEUE}").get("consumers")
                if seen == count:
                    return
            except (OSError, urllib.error.HTTPError, ValueError) as exc:
                seen = exc
            time.sleep(1)
        raise AssertionError(f"{QUEUE} has {seen!r} consumers after {timeout:.0f} s, not {count}")

    def wait_for_serve(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        error: object = None
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{self.ports['serve']}/readyz", timeout=5
                ) as response:
                    if response.status == 200:
                        return
            except OSError as exc:
                error = exc
            time.sleep(1)
        raise AssertionError(f"serve was not ready after {timeout:.0f} s: {error}")

    # -- batches -----------------------------------------------------------------------

    def urls(self, batch: str, count: int) -> list[str]:
        return [
            f"http://site:8000/{PAGES[n % len(PAGES)]}?batch={batch}&n={n}" for n in range(count)
        ]

    def dispatch_command(self, batch: str, urls: list[str]) -> list[str]:
        (self.batch_dir / f"{batch}.txt").write_text("\n".join(urls) + "\n")
        cmd = [self.compose_cmd, "-p", self.project, "--profile", "dispatch"]
        return [
            *cmd,
            *("run", "--rm", "--no-deps", "-T", "dispatch"),
            *("dispatch", f"{batch}.txt", "--batch", batch, "--wait-timeout", "300"),
            *CAPTURE_FLAGS,
        ]

    def records(self, batch: str) -> list[dict[str, Any]]:
        path = self.batch_dir / f"{batch}.jsonl"
        if not path.exists():
            return []
        lines = path.read_text().splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def dispatch(self, batch: str, urls: list[str], timeout: float = 600.0) -> Batch:
        done = run_bounded(self.dispatch_command(batch, urls), timeout=timeout, env=self.env)
        return Batch(batch, done.returncode, done.stdout, self.records(batch))

    # -- tear-down ---------------------------------------------------------------------

    def leftovers(self) -> dict[str, list[str]]:
        """What podman still has of this project: containers, pods, networks, volumes."""
        label = f"label=io.podman.compose.project={self.project}"

        def names(*args: str) -> list[str]:
            return [line for line in podman(*args).splitlines() if line.strip()]

        return {
            "containers": names("ps", "-a", "--filter", label, "--format", "{{.Names}}"),
            "pods": [p for p in names("pod", "ls", "--format", "{{.Name}}") if self.project in p],
            "networks": [
                n for n in names("network", "ls", "--format", "{{.Name}}") if self.project in n
            ],
            "volumes": [
                v for v in names("volume", "ls", "--format", "{{.Name}}") if self.project in v
            ],
        }

    def down(self) -> None:
        # --remove-orphans: the workers that `up --scale` added beyond the file's one.
        self.compose("down", "-v", "--remove-orphans", "-t", "10", profiles=("demo", "dispatch"))


def remove_everything_of(project_prefix: str) -> None:
    """Forced clean-up of what this test (this run or a killed earlier one) created."""
    env = podman_env()

    def names(*args: str) -> list[str]:
        done = run_bounded(["podman", *args], timeout=60, env=env)
        return [n for n in done.stdout.splitlines() if n.startswith(project_prefix)]

    for name in names("ps", "-a", "--format", "{{.Names}}"):
        run_bounded(["podman", "rm", "-f", "-v", "-t", "0", name], timeout=60, env=env)
    for name in names("pod", "ls", "--format", "{{.Name}}"):
        run_bounded(["podman", "pod", "rm", "-f", name], timeout=60, env=env)
    for name in names("network", "ls", "--format", "{{.Name}}"):
        run_bounded(["podman", "network", "rm", "-f", name], timeout=60, env=env)
    for name in names("volume", "ls", "--format", "{{.Name}}"):
        run_bounded(["podman", "volume", "rm", "-f", name], timeout=60, env=env)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    compose_cmd = compose_binary()
    # podman's pods are named pod_PROJECT; an earlier run killed before its clean-up left
    # names starting with PROJECT_PREFIX or pod_PROJECT_PREFIX.
    remove_everything_of(PROJECT_PREFIX)
    remove_everything_of(f"pod_{PROJECT_PREFIX}")

    started = time.monotonic()
    built = run_bounded([str(PODMAN_DIR / "build-images.sh")], timeout=1200)
    assert built.returncode == 0, f"building the images failed:\n{built.stdout[-4000:]}"
    build_seconds = time.monotonic() - started

    batch_dir = tmp_path_factory.mktemp("batches")
    batch_dir.chmod(0o777)  # the dispatcher runs as uid 10001 and writes its manifest here
    ports = {name: free_port() for name in ("amqp", "ui", "s3", "serve")}
    stack = Stack(
        project=f"{PROJECT_PREFIX}{os.getpid()}",
        batch_dir=batch_dir,
        api_key="dsk_" + secrets.token_urlsafe(24),
        ports=ports,
        compose_cmd=compose_cmd,
    )
    stack.figures["images built (s)"] = f"{build_seconds:.0f}"
    for line in built.stdout.splitlines():
        if line.startswith("built "):
            stack.figures[line.split(" in ")[0]] = line.split(" in ", 1)[1]
    try:
        started = time.monotonic()
        stack.compose("up", "-d")
        stack.wait_for_consumers(1)
        stack.wait_for_serve()
        stack.figures["stack up, 1 worker ready (s)"] = f"{time.monotonic() - started:.0f}"
        yield stack
    finally:
        # The last test checks that `down` alone removes everything; here, whatever
        # happened, nothing of the stack survives the run.
        try:
            stack.down()
        except (AssertionError, TimeoutError) as exc:
            print(f"podman-compose down failed, removing the stack by force: {exc}")
        remove_everything_of(stack.project)
        remove_everything_of(f"pod_{stack.project}")


def process_table(container: str) -> list[tuple[str, str]]:
    """(user id, command line) of every process in a running container."""
    # "if", not "[ -n ] && echo": a process gone by the time its turn came (the loop's
    # own awk and tr are) left an empty line, a false test, and so a failed exit status
    # whenever it was the last in the list.
    script = (
        "for p in /proc/[0-9]*; do u=$(awk '/^Uid:/{print $2}' $p/status 2>/dev/null); "
        'c=$(tr "\\0" " " < $p/cmdline 2>/dev/null); if [ -n "$c" ]; then echo "$u $c"; fi; '
        "done"
    )
    out = podman("exec", container, "bash", "-c", script)
    rows = []
    for line in out.splitlines():
        uid, _, cmdline = line.partition(" ")
        rows.append((uid, cmdline))
    return rows


def has_browser(container: str) -> bool:
    return any("chromium" in cmd for _, cmd in process_table(container))


def test_stack_is_healthy_and_serve_captures_through_the_fleet(
    stack: Stack, record_property: Any
) -> None:
    size = int(podman("image", "inspect", "localhost/distshot:latest", "--format", "{{.Size}}"))
    stack.figures["distshot image size (MB)"] = f"{size / 1e6:.0f}"
    for name, value in stack.figures.items():
        record_property(name, value)

    # The images' HEALTHCHECKs: serve probes its /healthz, the worker its main process.
    for container in (stack.container("worker"), stack.container("serve")):
        out = podman("healthcheck", "run", container)
        assert "unhealthy" not in out, f"{container}: {out}"

    # The management UI answers with the stack's user; the broker's data is on a volume.
    assert stack.rabbit("whoami")["name"] == RABBIT_USER
    volumes = stack.leftovers()["volumes"]
    assert f"{stack.project}_rabbitmq-data" in volumes

    # One shot through serve (rabbitmq backend) -> a worker -> S3.
    base = f"http://127.0.0.1:{stack.ports['serve']}"
    headers = {"Authorization": f"Bearer {stack.api_key}", "Content-Type": "application/json"}
    body = json.dumps({"url": "http://site:8000/index.html?via=serve", "wait": 60}).encode()
    # The client waits longer than the service may (wait 60): the first shot also starts
    # the worker's browser, and a loaded machine made that 10.3 s once, past a 10 s timeout.
    record = http_json(f"{base}/v1/shots", data=body, headers=headers, method="POST", timeout=90)
    deadline = time.monotonic() + 120
    while record.get("status") in ("queued", "running") and time.monotonic() < deadline:
        time.sleep(1)
        record = http_json(f"{base}/v1/shots/{record['id']}", headers=headers)
    assert record["status"] == "ok", record
    assert record["location"].startswith(f"s3://{BUCKET}/"), record

    # Chromium runs as the image's user, with its sandbox (no --no-sandbox).
    browsers = [
        (uid, cmd) for uid, cmd in process_table(stack.container("worker")) if "chromium" in cmd
    ]
    assert browsers, "the worker has no Chromium running after a capture"
    assert all(uid == "10001" for uid, _ in browsers), browsers
    assert not [cmd for _, cmd in browsers if "--no-sandbox" in cmd], browsers


def timings(batch: Batch) -> list[tuple[object, ...]]:
    """Each record's attempts, queue and total ms, in the order they came back: what a
    slow drain was made of."""
    return [
        (r["attempts"], r["timings"]["queue_ms"], r["timings"]["total_ms"]) for r in batch.records
    ]


def test_three_workers_drain_a_batch_faster_than_one(stack: Stack, record_property: Any) -> None:
    size = 16  # worker 1 started its browser for the first test's shot
    one = stack.dispatch("drain1", stack.urls("drain1", size))
    assert one.returncode == 0, one.output[-2000:]
    assert len(one.records) == size and all(r["status"] == "ok" for r in one.records)

    stack.compose("up", "-d", "--scale", "worker=3")
    stack.wait_for_consumers(3)
    # A new worker's first jobs are slow (its browser starts) or retried: not part of the
    # drain time. Warm-up batches until every worker has its browser running and a batch
    # has no retried job and none slower than three times the median.
    deadline = time.monotonic() + 300
    for round_ in range(100):
        warm = stack.dispatch(f"warm3-{round_}", stack.urls(f"warm3-{round_}", 6))
        assert warm.returncode == 0, warm.output[-2000:]
        totals = sorted(r["timings"]["total_ms"] for r in warm.records)
        steady = all(r["attempts"] == 1 for r in warm.records) and totals[-1] < 3 * totals[2]
        ready = [has_browser(stack.container("worker", i)) for i in (1, 2, 3)]
        if steady and all(ready):
            break
        assert time.monotonic() < deadline, f"no steady warm-up batch in 300 s: {ready} {totals}"
    three = stack.dispatch("drain3", stack.urls("drain3", size))
    assert three.returncode == 0, three.output[-2000:]
    assert len(three.records) == size and all(r["status"] == "ok" for r in three.records)

    record_property(f"drain {size} URLs, 1 worker (s)", f"{one.seconds:.1f}")
    record_property(f"drain {size} URLs, 3 workers (s)", f"{three.seconds:.1f}")
    record_property("speed-up 1 -> 3 workers", f"{one.seconds / three.seconds:.2f}x")
    record_property("CPUs per worker", WORKER_CPUS)
    assert three.seconds < one.seconds, (one.seconds, three.seconds, timings(one), timings(three))


def test_a_200_url_batch_survives_a_killed_worker(stack: Stack, record_property: Any) -> None:
    stack.compose("up", "-d", "--scale", "worker=3")
    stack.wait_for_consumers(3)
    total, batch = 200, "kill200"
    urls = stack.urls(batch, total)
    proc = subprocess.Popen(
        stack.dispatch_command(batch, urls),
        cwd=ROOT,
        env=stack.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300
        while len(stack.records(batch)) < 30:
            assert proc.poll() is None, f"the dispatcher ended early:\n{proc.stdout}"
            assert time.monotonic() < deadline, "30 records did not arrive within 300 s"
            time.sleep(0.2)
        in_flight = stack.rabbit(f"queues/%2F/{QUEUE}")["messages_unacknowledged"]
        recorded_at_kill = len(stack.records(batch))
        victim = stack.container("worker", 1)
        podman("kill", victim)
        out, _ = proc.communicate(timeout=900)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    record_property("200-URL batch: records when a worker was killed", str(recorded_at_kill))
    record_property("200-URL batch: jobs held by the fleet at the kill", str(in_flight))
    assert recorded_at_kill < total and in_flight > 0, "the kill did not land mid-batch"
    assert proc.returncode == 0, out[-3000:]
    done = Batch(batch, proc.returncode, out, stack.records(batch))
    record_property("200-URL batch with a kill (s)", f"{done.seconds:.1f}")

    # Nothing lost, nothing doubled: one record per line, per id and per URL; all ok.
    records = done.records
    assert len(records) == total, len(records)
    assert len({r["id"] for r in records}) == total
    assert sorted(r["url"] for r in records) == sorted(urls)
    failures = [r for r in records if r["status"] != "ok"]
    assert not failures, failures[:3]

    # Every image is in the store, whole (its sha256) and openable at its recorded size.
    s3 = boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{stack.ports['s3']}",
        aws_access_key_id=S3_KEY,
        aws_secret_access_key=S3_SECRET,
        region_name="us-east-1",
    )
    for record in records:
        bucket, key = record["location"].removeprefix("s3://").split("/", 1)
        data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert hashlib.sha256(data).hexdigest() == record["sha256"], record["url"]
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            assert image.size == (record["width"], record["height"]), record["url"]


def test_tear_down_leaves_nothing_behind(stack: Stack) -> None:
    stack.down()
    assert stack.leftovers() == {"containers": [], "pods": [], "networks": [], "volumes": []}
