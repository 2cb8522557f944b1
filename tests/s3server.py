"""A real S3 API for tests: ``moto_server`` on a free loopback port, as its own process.

boto3 is never mocked in-process: the storage talks HTTP to this server exactly as it would
to AWS, MinIO or R2, and tests can stop the server to cut the storage off mid-run.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

MOTO_SERVER = str(Path(sys.executable).with_name("moto_server"))
#: Credentials moto accepts (it checks none unless told to); never real ones.
FAKE_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class MotoServer:
    """One moto_server process. ``env`` is what a distshot process needs to use it:
    AWS_ENDPOINT_URL (boto3's own setting: distshot is not told the endpoint in any other
    way), fake credentials, and nothing from the developer's ~/.aws or a metadata service."""

    def __init__(self, log_dir: Path, *, extra_env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / f"moto-{self.port}.log"
        self.extra_env = extra_env or {}
        self.process: subprocess.Popen[bytes] | None = None
        self.env = {
            **FAKE_ENV,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_SHARED_CREDENTIALS_FILE": str(log_dir / "no-aws-credentials"),
            "AWS_CONFIG_FILE": str(log_dir / "no-aws-config"),
        }

    def start(self) -> MotoServer:
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child writes to it
        self.process = subprocess.Popen(
            [MOTO_SERVER, "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.extra_env},
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"moto_server exited: {self.log_path.read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.5).close()
                return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"moto_server did not listen on {self.port} within 60 s")

    def stop(self) -> None:
        """Stop the server (an outage, from the storage's point of view)."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        self.process = None

    def client(self, **env: str) -> Any:
        """A boto3 client for the test's own look at the server (not distshot's)."""
        merged = {**self.env, **env}
        return boto3.session.Session(
            aws_access_key_id=merged["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=merged["AWS_SECRET_ACCESS_KEY"],
            region_name=merged["AWS_DEFAULT_REGION"],
        ).client(
            "s3",
            endpoint_url=self.endpoint,
            config=Config(connect_timeout=5, read_timeout=30, retries={"total_max_attempts": 1}),
        )

    def new_bucket(self) -> str:
        name = f"shots-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name
