"""`distshot serve` with the embedded backend: a real uvicorn on loopback, real Chromium,
httpx as the client."""

from __future__ import annotations

import hashlib
import json
import signal
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import run_cli
from servekit import LOOPBACK, Serve, poll
from standardwebhooks.webhooks import Webhook

from distshot.server.keys import add_key
from distshot.server.signing import sign_query
from distshot.testing.processes import tagged_processes, wait_no_processes
from distshot.testing.server import PageServer


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("keys")
    path = folder / "keys.jsonl"
    alice, _ = add_key(path, "alice", concurrency=1)
    bob, _ = add_key(path, "bob")
    return {"path": path, "alice": alice, "bob": bob}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, keys: dict[str, Any]) -> Iterator[Serve]:
    tmp = tmp_path_factory.mktemp("serve")
    serve = Serve(
        tmp,
        "--api-keys",
        str(keys["path"]),
        "--concurrency",
        "2",
        *LOOPBACK,
        env={"DISTSHOT_WEBHOOK_SCHEDULE": "0.2,0.4,0.8,1.6"},
    ).start()
    yield serve
    assert serve.stop() == 0


@pytest.fixture
def alice(service: Serve, keys: dict[str, Any]) -> Iterator[httpx.Client]:
    with service.client(keys["alice"]) as client:
        yield client


@pytest.fixture
def bob(service: Serve, keys: dict[str, Any]) -> Iterator[httpx.Client]:
    with service.client(keys["bob"]) as client:
        yield client


# -- shots ---------------------------------------------------------------------------------


def test_a_sync_shot_answers_its_record_and_the_image(
    alice: httpx.Client, pages: PageServer
) -> None:
    answer = alice.post("/v1/shots", json={"url": pages.base + "/tall?h=300"})
    assert answer.status_code == 200, answer.text
    record = answer.json()
    assert record["status"] == "ok" and record["format"] == "png"
    assert alice.get(f"/v1/shots/{record['id']}").json() == record
    image = alice.get(f"/v1/shots/{record['id']}/image")
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert hashlib.sha256(image.content).hexdigest() == record["sha256"]


def test_an_async_shot_answers_202_and_later_its_record(
    alice: httpx.Client, pages: PageServer
) -> None:
    answer = alice.post(
        "/v1/shots",
        json={"url": pages.base + "/slow?ms=1500", "wait": 0, "options": {"format": "jpeg"}},
    )
    assert answer.status_code == 202, answer.text
    shot_id = answer.json()["id"]
    assert answer.headers["location"] == f"/v1/shots/{shot_id}"
    assert answer.json()["status"] in ("queued", "running")
    early = alice.get(f"/v1/shots/{shot_id}/image")
    assert early.status_code == 409
    record = poll(alice, f"/v1/shots/{shot_id}", lambda b: "format" in b)
    assert record["status"] == "ok" and record["format"] == "jpeg"
    image = alice.get(f"/v1/shots/{shot_id}/image")
    assert image.headers["content-type"] == "image/jpeg" and image.content[:2] == b"\xff\xd8"


def test_bad_input_is_a_4xx_naming_the_field(alice: httpx.Client, pages: PageServer) -> None:
    url = pages.base + "/tall"
    cases: list[tuple[Any, int, str | None]] = [
        (b"{not json", 400, None),
        ({"url": url, "options": {"nope": 1}}, 422, "options.nope"),
        ({"url": url, "options": {"width": 0}}, 422, "options.width"),
        ({"url": url, "options": {"quality": 50}}, 422, "options"),
        ({"url": "http://10.0.0.1/"}, 422, "url"),
        ({"url": "http://169.254.169.254/latest/"}, 422, "url"),
        ({"url": "ftp://127.0.0.1/x"}, 422, "url"),
        ({"url": url, "wait": -1}, 422, "wait"),
        ({"url": url, "engine": "nope"}, 422, "engine"),
        ({"url": url, "colour": "red"}, 422, "colour"),
        ({"url": url, "webhook_url": "http://10.1.2.3/hook"}, 422, "webhook_url"),
        ([1, 2], 422, "body"),
    ]
    for body, status, field in cases:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        answer = alice.post("/v1/shots", content=content)
        assert answer.status_code == status, (body, answer.text)
        error = answer.json()["error"]
        assert error["field"] == field, (body, error)
        assert error["message"] and "Traceback" not in answer.text
    headless = alice.post("/v1/batches", content="a,b\n1,2\n", headers={"content-type": "text/csv"})
    assert headless.status_code == 422 and headless.json()["error"]["field"] == "body"
    assert "url" in headless.json()["error"]["message"]
    odd = alice.post("/v1/batches", content="x", headers={"content-type": "image/png"})
    assert odd.status_code == 415
    huge = {"url": url, "options": {"javascript": "x" * 2_000_000}}
    assert alice.post("/v1/shots", json=huge).status_code == 413


def test_keys_are_required_and_each_sees_only_its_own(
    service: Serve, alice: httpx.Client, bob: httpx.Client, pages: PageServer
) -> None:
    with service.client() as anonymous:
        answer = anonymous.post("/v1/shots", json={"url": pages.base + "/tall"})
        assert answer.status_code == 401 and answer.headers["www-authenticate"] == "Bearer"
    with service.client("dsk_not-a-key") as forged:
        assert forged.get("/v1/account").status_code == 401
    shot = alice.post("/v1/shots", json={"url": pages.base + "/tall?h=100"}).json()
    assert alice.get(f"/v1/shots/{shot['id']}").status_code == 200
    assert bob.get(f"/v1/shots/{shot['id']}").status_code == 404
    assert bob.get(f"/v1/shots/{shot['id']}/image").status_code == 404
    batch = alice.post(
        "/v1/batches", content=pages.base + "/tall\n", headers={"content-type": "text/plain"}
    ).json()
    assert bob.get(f"/v1/batches/{batch['id']}").status_code == 404
    assert bob.delete(f"/v1/batches/{batch['id']}").status_code == 404
    assert alice.get("/v1/account").json()["key_id"] == "alice"


def test_signed_urls_work_without_a_key_until_they_expire_or_change(
    service: Serve, keys: dict[str, Any], pages: PageServer
) -> None:
    params = [("url", pages.base + "/tall?h=200"), ("width", "400"), ("hide", "p")]
    good = sign_query(params, key_id="bob", key=keys["bob"], expires=int(time.time()) + 600)
    old = sign_query(params, key_id="bob", key=keys["bob"], expires=int(time.time()) - 1)
    wrong_key = sign_query(params, key_id="alice", key=keys["bob"], expires=int(time.time()) + 600)
    with service.client() as browser:
        image = browser.get("/v1/screenshot?" + good)
        assert image.status_code == 200, image.text
        assert image.headers["content-type"] == "image/png"
        assert image.content.startswith(b"\x89PNG")
        assert browser.get("/v1/screenshot?" + old).json()["error"]["message"].endswith("expired")
        tampered = good.replace("width=400", "width=401")
        for query in (tampered, wrong_key, good.replace("signature=", "signature=0")):
            answer = browser.get("/v1/screenshot?" + query)
            assert answer.status_code == 401, answer.text
        assert browser.get("/v1/screenshot", params={"url": pages.base}).status_code == 401


def test_screenshot_answers_the_image_or_an_error_that_says_which(
    bob: httpx.Client, pages: PageServer
) -> None:
    ok = bob.get("/v1/screenshot", params={"url": pages.base + "/tall", "format": "webp"})
    assert ok.status_code == 200 and ok.headers["content-type"] == "image/webp"
    missing = bob.get(
        "/v1/screenshot",
        params={"url": pages.base + "/tall", "selector": "#absent", "timeout": "5"},
    )
    assert missing.status_code == 422 and missing.json()["error"]["type"] == "ElementNotFound"
    hung = bob.get("/v1/screenshot", params={"url": pages.base + "/hang", "timeout": "2"})
    assert hung.status_code == 504 and hung.json()["error"]["type"] == "NavigationTimeout"
    twice = bob.get(f"/v1/screenshot?url={pages.base}/tall&width=1&width=2")
    assert twice.status_code == 422 and twice.json()["error"]["field"] == "width"


# -- batches -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("media", "body"),
    [
        ("text/plain", "{base}/tall?h=10\n# a comment\n\nnot a url\n{base}/status/404\n"),
        ("text/csv", "url,width\n{base}/tall?h=10,300\nnot a url,\n{base}/status/404,400\n"),
        (
            "application/x-ndjson",
            '{{"url": "{base}/tall?h=10", "format": "jpeg"}}\n{{broken\n'
            '{{"url": "{base}/status/404"}}\n',
        ),
    ],
)
def test_a_batch_in_each_format_records_every_line_once(
    alice: httpx.Client, pages: PageServer, media: str, body: str
) -> None:
    answer = alice.post(
        "/v1/batches", content=body.format(base=pages.base), headers={"content-type": media}
    )
    assert answer.status_code == 202, answer.text
    batch_id = answer.json()["id"]
    status = poll(alice, f"/v1/batches/{batch_id}", lambda b: b["status"] == "done")
    assert status["total"] == 3 and status["in_flight"] == 0
    records = [
        json.loads(line) for line in alice.get(f"/v1/batches/{batch_id}/manifest").text.splitlines()
    ]
    # an HTTP error page is still an image of what the page looks like
    assert any(r["status"] == "ok" and r["http_status"] == 404 for r in records)
    assert len(records) == 3 and len({r["line"] for r in records}) == 3
    by_status = {r["status"] for r in records}
    assert status["ok"] + status["rejected"] + status["failed"] == 3
    assert "rejected" in by_status and status["rejected"] >= 1


def test_follow_streams_records_until_the_batch_is_done(
    bob: httpx.Client, pages: PageServer
) -> None:
    lines = "".join(f"{pages.base}/slow?ms=300&n={n}\n" for n in range(6))
    batch = bob.post("/v1/batches", content=lines, headers={"content-type": "text/plain"}).json()
    arrivals: list[tuple[float, dict[str, Any]]] = []
    with bob.stream(
        "GET", f"/v1/batches/{batch['id']}/manifest", params={"follow": "true"}
    ) as stream:
        for line in stream.iter_lines():
            if line:
                arrivals.append((time.monotonic(), json.loads(line)))
    assert len(arrivals) == 6
    assert {r["status"] for _, r in arrivals} == {"ok"}
    # records arrived as they were written, not all at once at the end
    assert arrivals[-1][0] - arrivals[0][0] > 0.2
    assert bob.get(f"/v1/batches/{batch['id']}").json()["status"] == "done"


def test_cancel_starts_nothing_more_and_keeps_what_was_stored(
    alice: httpx.Client, pages: PageServer
) -> None:
    lines = "".join(f"{pages.base}/slow?ms=700&n={n}\n" for n in range(20))
    batch = alice.post("/v1/batches", content=lines, headers={"content-type": "text/plain"}).json()
    poll(alice, f"/v1/batches/{batch['id']}", lambda b: b["ok"] >= 1)
    assert alice.delete(f"/v1/batches/{batch['id']}").status_code == 202
    status = poll(alice, f"/v1/batches/{batch['id']}", lambda b: b["status"] == "cancelled")
    records = [
        json.loads(x) for x in alice.get(f"/v1/batches/{batch['id']}/manifest").text.splitlines()
    ]
    assert len(records) == 20 == status["total"]
    ok = [r for r in records if r["status"] == "ok"]
    cancelled = [r for r in records if r["error"] and r["error"]["type"] == "Cancelled"]
    assert 1 <= len(ok) < 10 and len(ok) + len(cancelled) == 20
    assert all(Path(r["location"].removeprefix("file://")).is_file() for r in ok)


# -- webhooks ------------------------------------------------------------------------------


class Receiver(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.received: list[tuple[dict[str, str], bytes, int]] = []
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), ReceiverHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"


class ReceiverHandler(BaseHTTPRequestHandler):
    server: Receiver

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        headers = {k.lower(): v for k, v in self.headers.items()}
        with self.server.lock:
            status = 500 if self.server.failures > 0 else 204
            self.server.failures -= 1
            self.server.received.append((headers, body, status))
        self.send_response(status)
        self.end_headers()


def test_webhooks_are_signed_retried_while_the_receiver_fails_and_none_lost(
    alice: httpx.Client, pages: PageServer
) -> None:
    receiver = Receiver(failures=2)
    try:
        secret = alice.get("/v1/account").json()["webhook_secret"]
        shots = [
            alice.post(
                "/v1/shots",
                json={"url": f"{pages.base}/tall?h={h}", "wait": 0, "webhook_url": receiver.url},
            ).json()["id"]
            for h in (11, 12, 13)
        ]
        batch = alice.post(
            "/v1/batches",
            params={"webhook_url": receiver.url},
            content=f"{pages.base}/tall?h=14\n",
            headers={"content-type": "text/plain"},
        ).json()["id"]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with receiver.lock:
                delivered = [r for r in receiver.received if r[2] == 204]
            if len(delivered) == 4:
                break
            time.sleep(0.2)
        assert len(delivered) == 4, receiver.received
        assert len(receiver.received) == 6  # two failed attempts before
        verifier = Webhook(secret)
        events: dict[str, Any] = {}
        for headers, body, _ in delivered:
            payload = verifier.verify(body, headers)
            events[payload["data"]["id"]] = payload
        assert set(events) == {*shots, batch}
        assert events[batch]["type"] == "batch.finished"
        assert {events[s]["type"] for s in shots} == {"shot.finished"}
        ids_of_failed = {h["webhook-id"] for h, _, s in receiver.received if s == 500}
        ids_delivered = {h["webhook-id"] for h, _, _ in delivered}
        assert ids_of_failed <= ids_delivered  # the retries were the same deliveries
    finally:
        receiver.shutdown()


# -- metrics, health -----------------------------------------------------------------------


def test_an_idle_keep_alive_connection_outlives_a_client_pools_idle_time(service: Serve) -> None:
    """httpx keeps idle connections 5 s, as uvicorn did: a client reusing one just as the
    server closed it got "server disconnected". The server now keeps them longer."""
    request = b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"
    with socket.create_connection(("127.0.0.1", service.port), timeout=10) as conn:
        reader = conn.makefile("rb")
        for _ in range(2):
            conn.sendall(request)
            status = reader.readline()
            assert status, "the server closed the idle connection"
            assert status.startswith(b"HTTP/1.1 200"), status
            length = 0
            while (line := reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            reader.read(length)
            time.sleep(6.5)


def test_metrics_count_requests_by_route_and_shots_by_status(
    service: Serve, alice: httpx.Client, pages: PageServer
) -> None:
    alice.post("/v1/shots", json={"url": pages.base + "/tall?h=50"})
    alice.get("/v1/shots/shot_nope")
    text = httpx.get(service.base + "/metrics").text
    assert 'distshot_http_requests_total{method="POST",route="/v1/shots",status="200"}' in text
    assert 'route="/v1/shots/{shot_id}",status="404"' in text
    assert 'distshot_shots_total{engine="playwright",status="ok"}' in text
    for name in (
        "distshot_queue_depth",
        "distshot_in_flight",
        "distshot_capture_seconds_bucket",
        "distshot_process_tree_rss_bytes",
    ):
        assert name in text
    assert httpx.get(service.base + "/readyz").json() == {"status": "ready"}
    assert "GET /v1/shots/shot_nope 404" in service.log.read_text()


# -- limits, drain, start-up ----------------------------------------------------------------


def test_overload_gets_429_with_retry_after_and_every_accepted_request_is_answered(
    tmp_path: Path, pages: PageServer
) -> None:
    serve = Serve(tmp_path, "--concurrency", "1", "--max-queue", "2", *LOOPBACK).start()
    try:
        with serve.client() as client, ThreadPoolExecutor(8) as pool:

            def send(n: int) -> httpx.Response:
                body = {"url": f"{pages.base}/slow?ms=1500&n={n}", "wait": 0}
                return client.post("/v1/shots", json=body)

            answers = list(pool.map(send, range(8)))
            codes = sorted(a.status_code for a in answers)
            assert codes == [202] * 3 + [429] * 5, [a.text for a in answers]
            assert httpx.get(serve.base + "/readyz").status_code == 503
            for answer in answers:
                if answer.status_code == 429:
                    assert int(answer.headers["retry-after"]) >= 1
                    assert answer.json()["error"]["type"] == "Overloaded"
            accepted = [a.json()["id"] for a in answers if a.status_code == 202]
            for shot_id in accepted:
                record = poll(client, f"/v1/shots/{shot_id}", lambda b: "format" in b)
                assert record["status"] == "ok"
            assert client.post("/v1/shots", json={"url": pages.base + "/tall"}).status_code == 200
            metrics = httpx.get(serve.base + "/metrics").text
            assert 'distshot_overloaded_total{reason="queue"} 5.0' in metrics
    finally:
        serve.stop()


def test_a_waiting_client_gets_429_rather_than_a_slow_answer_and_wait_0_is_queued(
    tmp_path: Path, pages: PageServer
) -> None:
    """One browser busy with a 2 s page and one request in line: a synchronous shot would
    wait two captures for its answer, so it is refused at once (the bound is one capture's
    time); the same shot with wait 0 is queued and done. With --max-queue-wait off, the
    same synchronous shot is accepted and answered, slowly."""
    slow = {"url": f"{pages.base}/slow?ms=2000", "wait": 0}
    for bound, refused in (("auto", True), ("off", False)):
        (tmp_path / bound).mkdir()
        serve = Serve(
            tmp_path / bound, "--concurrency", "1", "--max-queue-wait", bound, *LOOPBACK
        ).start()
        try:
            with serve.client() as client:
                assert (
                    client.post("/v1/shots", json={"url": pages.base + "/tall"}).status_code == 200
                )
                held = [client.post("/v1/shots", json=slow).json()["id"] for _ in range(2)]
                started = time.monotonic()
                answer = client.post("/v1/shots", json={"url": pages.base + "/tall?h=90"})
                took = time.monotonic() - started
                if refused:
                    assert answer.status_code == 429, answer.text
                    assert took < 1.0  # at once, not after the captures ahead of it
                    error = answer.json()["error"]
                    assert error["type"] == "Overloaded" and "wait 0" in error["message"]
                    assert int(answer.headers["retry-after"]) >= 1
                    image = client.get("/v1/screenshot", params={"url": pages.base + "/tall"})
                    assert image.status_code == 429
                    queued = client.post(
                        "/v1/shots", json={"url": pages.base + "/tall?h=91", "wait": 0}
                    )
                    assert queued.status_code == 202
                    held.append(queued.json()["id"])
                    metrics = client.get("/metrics").text
                    assert 'distshot_overloaded_total{reason="wait"} 2.0' in metrics
                else:
                    assert answer.status_code == 200 and answer.json()["status"] == "ok"
                for shot_id in held:
                    record = poll(client, f"/v1/shots/{shot_id}", lambda b: "format" in b)
                    assert record["status"] == "ok"
        finally:
            serve.stop()


def test_sigterm_drains_then_exits_with_no_browser_left(
    tmp_path: Path, pages: PageServer, tag: str
) -> None:
    serve = Serve(tmp_path, "--concurrency", "2", *LOOPBACK).start()
    with serve.client() as client:
        ids = [
            client.post(
                "/v1/shots", json={"url": f"{pages.base}/slow?ms=2500&n={n}", "wait": 0}
            ).json()["id"]
            for n in range(2)
        ]
        time.sleep(0.5)
        assert tagged_processes(tag), "the browser should be running"
        assert serve.process is not None
        serve.process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        assert client.get("/readyz").status_code == 503
        refused = client.post("/v1/shots", json={"url": pages.base + "/tall"})
        assert refused.status_code == 503 and refused.json()["error"]["type"] == "Draining"
    assert serve.process.wait(60) == 0  # one signal: a drain, then a clean exit
    book = [json.loads(x) for x in (serve.state / "shots.jsonl").read_text().splitlines()]
    finished = {e["id"]: e["record"] for e in book if "record" in e}
    assert all(finished[i]["status"] == "ok" for i in ids)
    assert wait_no_processes(tag) == []


def test_without_keys_it_refuses_to_listen_beyond_loopback(tmp_path: Path) -> None:
    result = run_cli("serve", "--host", "0.0.0.0", "--state-dir", str(tmp_path), timeout=60)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "without API keys" in result.stderr


def test_a_bad_queue_wait_bound_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = run_cli("serve", "--max-queue-wait", "soon", "--state-dir", str(tmp_path))
    assert result.returncode == 2
    assert "--max-queue-wait" in result.stderr and "Traceback" not in result.stderr


def test_a_browser_that_cannot_start_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = run_cli(
        "serve",
        "--port",
        "0",
        "--state-dir",
        str(tmp_path),
        env={"DISTSHOT_BROWSER_PATH": str(tmp_path / "no-chromium")},
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "distshot: error:" in result.stderr


def test_one_key_cannot_starve_another(
    alice: httpx.Client, bob: httpx.Client, pages: PageServer
) -> None:
    """alice's quota is one capture at once: with two browsers, bob's shot runs beside
    alice's backlog instead of behind it."""
    backlog = [
        alice.post("/v1/shots", json={"url": f"{pages.base}/slow?ms=1200&q={n}", "wait": 0}).json()[
            "id"
        ]
        for n in range(4)
    ]
    record = bob.post("/v1/shots", json={"url": pages.base + "/tall?h=77"}).json()
    assert record["status"] == "ok"
    waiting = [alice.get(f"/v1/shots/{i}").json()["status"] for i in backlog]
    assert waiting.count("queued") >= 2, waiting  # alice's backlog is still there
    for shot_id in backlog:
        poll(alice, f"/v1/shots/{shot_id}", lambda b: "format" in b)


def test_over_the_memory_bound_it_answers_429(tmp_path: Path, pages: PageServer) -> None:
    serve = Serve(tmp_path, "--max-memory", "1", *LOOPBACK).start()  # 1 MiB: always over
    try:
        with serve.client() as client:
            time.sleep(1.5)  # the memory is sampled twice a second
            answer = client.post("/v1/shots", json={"url": pages.base + "/tall"})
            assert answer.status_code == 429, answer.text
            assert "memory" in answer.json()["error"]["message"]
            assert client.get("/readyz").status_code == 503
            metrics = client.get("/metrics").text
            assert 'distshot_overloaded_total{reason="memory"} 1.0' in metrics
    finally:
        serve.stop()
