"""RabbitMQ helpers for tests: queue isolation by prefix, workers, and a private node."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pika

SHARED_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def new_prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


def queue_state(url: str, queue: str) -> tuple[int, int] | None:
    """(messages, consumers) of a queue, or None if it does not exist."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        try:
            frame = channel.queue_declare(queue, passive=True)
        except pika.exceptions.ChannelClosedByBroker:
            return None
        return frame.method.message_count, frame.method.consumer_count
    finally:
        if connection.is_open:
            connection.close()


def delete_queues(url: str, prefix: str, names: list[str]) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        for name in names:
            assert name.startswith(prefix + ".")
            for suffix in ("", ".DQ", ".XQ"):
                channel.queue_delete(name + suffix)
    finally:
        connection.close()


def publish_raw(url: str, queue: str, body: bytes) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        connection.channel().basic_publish("", queue, body, pika.BasicProperties(delivery_mode=2))
    finally:
        connection.close()


def wait_for_consumers(url: str, queue: str, count: int = 1, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = queue_state(url, queue)
        if state is not None and state[1] >= count:
            return
        time.sleep(0.3)
    raise AssertionError(f"no {count} consumer(s) on {queue} after {timeout}s")


def kill_group(process: subprocess.Popen[bytes] | subprocess.Popen[str], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signum)


class PrivateRabbit:
    """A RabbitMQ node of the test's own, on free ports with its own data directory, so a
    test can stop and restart a broker without touching the shared one."""

    def __init__(self, *, netns: str | None = None, address: str = "127.0.0.1") -> None:
        """``netns``: run the node in that network namespace (a host of a NetLab),
        listening on ``address`` there."""
        self.dir = Path(tempfile.mkdtemp(prefix="distshot-rabbit-"))
        self.prefix = ["ip", "netns", "exec", netns] if netns else []
        self.address = address
        self.port = free_port()
        self.node = f"distshot{self.port}@localhost"
        self.url = f"amqp://guest:guest@{address}:{self.port}/%2F"
        (self.dir / "enabled_plugins").write_text("")
        (self.dir / "env.conf").write_text("")
        (self.dir / "rabbitmq.conf").write_text(
            f"listeners.tcp.local = {address}:{self.port}\nloopback_users = none\n"
        )
        self.env = {
            **os.environ,
            "HOME": "/var/lib/rabbitmq"
            if Path("/var/lib/rabbitmq/.erlang.cookie").exists()
            else os.environ.get("HOME", "/root"),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(free_port()),
            "RABBITMQ_CONF_ENV_FILE": str(self.dir / "env.conf"),
            "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq.conf"),
            "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.dir / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(self.dir / "pid"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }

    def ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [*self.prefix, str(RABBIT_BIN / "rabbitmqctl"), "-n", self.node, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check and done.returncode != 0:
            # rabbitmqctl's own words, not just its exit status: the node's side of a failure.
            output = (done.stdout + done.stderr).strip().replace("\n", " | ")
            raise AssertionError(f"rabbitmqctl {' '.join(args)}: exit {done.returncode}: {output}")
        return done

    def start(self) -> None:
        subprocess.run(
            [*self.prefix, str(RABBIT_BIN / "rabbitmq-server"), "-detached"],
            env=self.env,
            check=True,
            timeout=60,
        )
        self.wait_port(up=True)

    def wait_port(self, up: bool, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                socket.create_connection((self.address, self.port), 1).close()
                if up:
                    return
            except OSError:
                if not up:
                    return
            time.sleep(0.2)
        raise AssertionError(f"private RabbitMQ port {self.port} not {'up' if up else 'down'}")

    def stop_app(self) -> None:
        self.ctl("stop_app")
        self.wait_port(up=False)

    def start_app(self) -> None:
        # rabbitmqctl start_app can fail with "unavailable" (exit 69) while the node is still
        # settling after stop_app on a busy machine (seen once in a full run). The broker
        # coming back is the test's premise, not what it tests: try again, then give up loudly.
        for attempt in range(3):
            done = self.ctl("start_app", check=attempt == 2)
            if done.returncode == 0:
                break
            time.sleep(5)
        self.wait_port(up=True)

    def stop(self) -> None:
        self.ctl("stop", check=False)
        pid_file = self.dir / "pid"
        if pid_file.exists():
            with contextlib.suppress(ValueError, ProcessLookupError):
                os.kill(int(pid_file.read_text().strip()), signal.SIGKILL)
        shutil.rmtree(self.dir, ignore_errors=True)
