"""`distshot serve --backend rabbitmq`: requests go to the workers' queues on the shared
RabbitMQ (a queue prefix of the test's own keeps it apart), replies to the instance's queue."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from servekit import Serve, poll

from distshot.testing.server import PageServer


@pytest.fixture
def fleet_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    env = {"DISTSHOT_QUEUE_PREFIX": f"t{uuid.uuid4().hex[:10]}"}
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "distshot.cli",
            "worker",
            "--engine",
            "playwright",
            "--processes",
            "1",
            "--threads",
            "2",
            "--storage",
            str(tmp_path / "shots"),
        ],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    yield env
    os.killpg(worker.pid, signal.SIGTERM)
    try:
        worker.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(10)


def test_shots_and_a_batch_go_through_the_fleet(
    tmp_path: Path, fleet_env: dict[str, str], http_server: PageServer
) -> None:
    serve = Serve(
        tmp_path, "--backend", "rabbitmq", "--allow-network", "127.0.0.0/8", env=fleet_env
    ).start()
    try:
        with serve.client() as client:
            record = client.post("/v1/shots", json={"url": http_server.base + "/tall?h=99"}).json()
            assert record["status"] == "ok" and record["engine"] == "playwright"
            image = client.get(f"/v1/shots/{record['id']}/image")
            assert image.content.startswith(b"\x89PNG")
            body = f"{http_server.base}/tall?h=5\nnot a url\n"
            batch = client.post(
                "/v1/batches", content=body, headers={"content-type": "text/plain"}
            ).json()
            done = poll(client, f"/v1/batches/{batch['id']}", lambda b: b["status"] == "done")
            assert (done["ok"], done["rejected"]) == (1, 1)
    finally:
        assert serve.stop() == 0


def test_a_restarted_service_finds_its_batch_again_and_records_each_line_once(
    tmp_path: Path, fleet_env: dict[str, str], http_server: PageServer
) -> None:
    args = ("--backend", "rabbitmq", "--allow-network", "127.0.0.0/8", "--instance", "one")
    serve = Serve(tmp_path, *args, env=fleet_env).start()
    lines = "".join(f"{http_server.base}/slow?ms=500&n={n}\n" for n in range(12))
    with serve.client() as client:
        batch = client.post(
            "/v1/batches", content=lines, headers={"content-type": "text/plain"}
        ).json()
        poll(client, f"/v1/batches/{batch['id']}", lambda b: b["ok"] >= 3)
    serve.kill()  # no drain: the process is gone mid-batch
    again = Serve(tmp_path, *args, env=fleet_env)
    again.port, again.base = serve.port, serve.base
    again.start()
    try:
        with again.client() as client:
            done = poll(
                client, f"/v1/batches/{batch['id']}", lambda b: b["status"] == "done", timeout=180
            )
            assert done["ok"] == 12 and done["total"] == 12
            text = client.get(f"/v1/batches/{batch['id']}/manifest").text
        records = [json.loads(line) for line in text.splitlines()]
        assert sorted(r["line"] for r in records) == list(range(1, 13))
    finally:
        assert again.stop() == 0


def test_two_instances_share_one_fleet_and_each_gets_its_own_replies(
    tmp_path: Path, fleet_env: dict[str, str], http_server: PageServer
) -> None:
    """Two services behind a (notional) load balancer, one worker: each instance's shots
    come back on its own reply queue, all of them, and none of the other's."""
    services = []
    for name in ("east", "west"):
        (tmp_path / name).mkdir()
        args = ("--backend", "rabbitmq", "--instance", name, "--allow-network", "127.0.0.0/8")
        services.append(Serve(tmp_path / name, *args, env=fleet_env).start())
    try:
        sent: dict[int, list[str]] = {}
        for n, serve in enumerate(services):
            with serve.client() as client:
                sent[n] = [
                    client.post(
                        "/v1/shots",
                        json={"url": f"{http_server.base}/tall?h={40 + n}&k={k}", "wait": 0},
                    ).json()["id"]
                    for k in range(3)
                ]
        for n, serve in enumerate(services):
            with serve.client() as client:
                for shot_id in sent[n]:
                    record = poll(client, f"/v1/shots/{shot_id}", lambda b: "format" in b)
                    assert record["status"] == "ok", record
                    assert f"h={40 + n}&" in record["url"]
                other = sent[1 - n][0]
                assert client.get(f"/v1/shots/{other}").status_code == 404
        for serve in services:
            book = (serve.state / "shots.jsonl").read_text().splitlines()
            finished = [json.loads(line) for line in book if '"record"' in line]
            assert len(finished) == 3  # each of its own, once
    finally:
        for serve in services:
            assert serve.stop() == 0
