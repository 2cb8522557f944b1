"""Webhook delivery against real HTTP receivers on loopback: signed, retried, durable across a
restart, given up, checked against the URL policy at every attempt.

No packet leaves loopback: made-up host names go through fake resolvers, and the refused
addresses they answer are refused before any connection.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import socket
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks import Webhook
from tlskit import self_signed

from distshot.core.errors import BlockedAddress, InvalidUrl
from distshot.core.policy import UrlPolicy
from distshot.server.webhooks import DEFAULT_SCHEDULE, USER_AGENT, WebhookSender

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
LOOPBACK = UrlPolicy.build(allow_private=False, allow_networks=["127.0.0.0/8"])
FAST = (0.05, 0.1, 0.2)


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A webhook receiver: records every request; answers 500 to the first ``fail_first``
    (or to all, with ``fail_first=-1``), after ``delay`` seconds."""

    host: str = "127.0.0.1"
    port: int = 0
    fail_first: int = 0
    delay: float = 0.0
    redirect: bool = False
    tls: ssl.SSLContext | None = None
    requests: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    def url(self, path: str = "/hook", host: str | None = None) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{host or self.host}:{self.port}{path}"

    def answer(self, request: Request) -> int:
        with self.lock:
            self.requests.append(request)
            count = len(self.requests)
        time.sleep(self.delay)
        if self.redirect:
            return 307
        return 500 if self.fail_first < 0 or count <= self.fail_first else 204

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                status = receiver.answer(Request(self.path, headers, body))
                self.send_response(status)
                if status == 307:
                    self.send_header("location", "/elsewhere")
                self.send_header("content-length", "0")
                self.end_headers()

        server = ThreadingHTTPServer((self.host, self.port), Handler)
        server.daemon_threads = True
        if self.tls is not None:
            server.socket = self.tls.wrap_socket(server.socket, server_side=True)
        self.port = server.server_address[1]
        threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
        self.server = server
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def count(self) -> int:
        with self.lock:
            return len(self.requests)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver().start()
    yield running
    running.stop()


def sender(state: Path, **kwargs: Any) -> WebhookSender:
    kwargs.setdefault("schedule", FAST)
    kwargs.setdefault("policy", LOOPBACK)
    return WebhookSender(state, **kwargs)


def run(body: Callable[[], Awaitable[None]], limit: float = 5.0) -> None:
    async def bounded() -> None:
        await asyncio.wait_for(body(), limit)

    asyncio.run(bounded())


async def until(condition: Callable[[], bool], limit: float = 3.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def outcomes(webhooks: WebhookSender, webhook_id: str) -> list[str]:
    return [a["outcome"] for a in webhooks.attempts(webhook_id)]


def test_default_schedule_retries_for_more_than_an_hour() -> None:
    assert sum(DEFAULT_SCHEDULE) > 3600


def test_delivery_arrives_signed(
    receiver: Receiver, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    webhooks = sender(tmp_path)

    async def body() -> None:
        await webhooks.start()
        try:
            webhook_id = webhooks.enqueue(receiver.url(), SECRET, "shot.done", {"n": 1, "é": "ü"})
            assert webhook_id.startswith("msg_")
            await until(lambda: webhooks.pending == 0)
        finally:
            await webhooks.close()
        [request] = receiver.requests
        payload = Webhook(SECRET).verify(request.body, request.headers)
        assert payload["type"] == "shot.done"
        assert payload["data"] == {"n": 1, "é": "ü"}
        assert payload["timestamp"].endswith("Z")
        datetime.datetime.fromisoformat(payload["timestamp"])
        headers = {k.lower(): v for k, v in request.headers.items()}
        assert headers["webhook-id"] == webhook_id
        assert headers["content-type"] == "application/json"
        assert headers["user-agent"] == USER_AGENT
        assert outcomes(webhooks, webhook_id) == ["delivered"]
        assert webhooks.attempts(webhook_id)[0]["status_code"] == 204

    run(body)
    # The secret is in the queue (a restart must sign), nowhere else.
    secret_key = SECRET.removeprefix("whsec_")
    assert secret_key not in (tmp_path / "webhooks" / "attempts.jsonl").read_text()
    assert secret_key not in caplog.text
    assert (tmp_path / "webhooks" / "queue.jsonl").stat().st_mode & 0o077 == 0


def test_retried_while_receiver_fails_then_delivered_once(tmp_path: Path) -> None:
    receiver = Receiver(fail_first=3).start()
    webhooks = sender(tmp_path)

    async def body() -> None:
        await webhooks.start()
        try:
            webhook_id = webhooks.enqueue(receiver.url(), SECRET, "shot.done", {"n": 2})
            await until(lambda: webhooks.pending == 0)
            await asyncio.sleep(0.3)  # longer than any interval: no send after the ack
        finally:
            await webhooks.close()
        assert receiver.count() == 4
        assert {r.headers["webhook-id"] for r in receiver.requests} == {webhook_id}
        for request in receiver.requests:
            Webhook(SECRET).verify(request.body, request.headers)
        attempts = webhooks.attempts(webhook_id)
        assert [a["outcome"] for a in attempts] == ["retrying"] * 3 + ["delivered"]
        assert [a["status_code"] for a in attempts] == [500, 500, 500, 204]
        assert [a["attempt"] for a in attempts] == [1, 2, 3, 4]

    try:
        run(body)
    finally:
        receiver.stop()


def test_none_lost_across_a_restart(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    down = Receiver(port=port)
    url = down.url()
    first = sender(tmp_path, schedule=(30,))

    async def before_restart() -> str:
        await first.start()
        try:
            webhook_id = first.enqueue(url, SECRET, "shot.done", {"n": 3})
            await until(lambda: outcomes(first, webhook_id) == ["retrying"])
        finally:
            await first.close()
        return webhook_id

    webhook_id = asyncio.run(before_restart())
    assert first.attempts(webhook_id)[0]["error"].startswith("ConnectError")
    receiver = down.start()
    second = sender(tmp_path)

    async def after_restart() -> None:
        await second.start()
        try:
            assert second.pending == 1
            await until(lambda: second.pending == 0)
        finally:
            await second.close()

    try:
        run(after_restart)
    finally:
        receiver.stop()
    [request] = receiver.requests
    assert request.headers["webhook-id"] == webhook_id
    assert json.loads(request.body)["data"] == {"n": 3}
    assert [a["attempt"] for a in second.attempts(webhook_id)] == [1, 2]
    assert outcomes(second, webhook_id) == ["retrying", "delivered"]


def test_given_up_after_the_schedule(tmp_path: Path) -> None:
    receiver = Receiver(fail_first=-1).start()
    webhooks = sender(tmp_path)

    async def body() -> None:
        await webhooks.start()
        try:
            webhook_id = webhooks.enqueue(receiver.url(), SECRET, "shot.done", {})
            await until(lambda: webhooks.pending == 0)
            await asyncio.sleep(0.3)
        finally:
            await webhooks.close()
        assert outcomes(webhooks, webhook_id) == ["retrying"] * 3 + ["given_up"]
        assert receiver.count() == len(FAST) + 1

    try:
        run(body)
    finally:
        receiver.stop()
    # Given up for good: a restart does not send it again.
    restarted = sender(tmp_path)

    async def again() -> None:
        await restarted.start()
        await restarted.close()

    run(again)
    assert restarted.pending == 0
    assert (tmp_path / "webhooks" / "queue.jsonl").read_text() == ""


def test_redirect_not_followed_and_timeout_is_a_failed_attempt(tmp_path: Path) -> None:
    redirecting = Receiver(redirect=True).start()
    slow = Receiver(delay=0.6).start()
    webhooks = sender(tmp_path, schedule=(0.05,), timeout=0.3)

    async def body() -> None:
        await webhooks.start()
        try:
            redirected = webhooks.enqueue(redirecting.url(), SECRET, "shot.done", {})
            timed_out = webhooks.enqueue(slow.url(), SECRET, "shot.done", {})
            await until(lambda: webhooks.pending == 0)
        finally:
            await webhooks.close()
        assert [a["status_code"] for a in webhooks.attempts(redirected)] == [307, 307]
        assert {r.path for r in redirecting.requests} == {"/hook"}
        errors = [a["error"] for a in webhooks.attempts(timed_out)]
        assert errors == ["timed out after 0.3s"] * 2
        assert outcomes(webhooks, timed_out) == ["retrying", "given_up"]

    try:
        run(body)
    finally:
        redirecting.stop()
        slow.stop()


def test_check_url_refuses_what_the_policy_refuses(receiver: Receiver, tmp_path: Path) -> None:
    def fake_resolver(host: str, port: int) -> list[str]:
        return {"hooks.example.test": ["10.1.2.3"], "ok.example.test": ["127.0.0.1"]}[host]

    strict = sender(tmp_path, policy=UrlPolicy.build(False), resolver=fake_resolver)
    for url in ("http://127.0.0.1:9/x", "http://10.0.0.1/x", "http://hooks.example.test/x"):
        with pytest.raises(BlockedAddress):
            strict.check_url(url)
    with pytest.raises(InvalidUrl):
        strict.check_url("ftp://127.0.0.1/x")
    loopback = sender(tmp_path, resolver=fake_resolver)
    loopback.check_url(receiver.url())
    loopback.check_url(receiver.url(host="ok.example.test"))
    with pytest.raises(BlockedAddress):
        loopback.check_url("http://hooks.example.test/x")
    with pytest.raises(InvalidUrl):
        loopback.enqueue("ftp://127.0.0.1/x", SECRET, "shot.done", {})
    assert receiver.count() == 0


def test_connects_to_the_checked_address(tmp_path: Path) -> None:
    """'localhost' is answered as 127.0.0.2 by the sender's resolver; only a sender that
    connects to the checked address (not to the name, which the system resolves to
    127.0.0.1) reaches the receiver, with the original Host."""
    receiver = Receiver(host="127.0.0.2").start()
    webhooks = sender(tmp_path, resolver=lambda host, port: ["127.0.0.2"])

    async def body() -> None:
        await webhooks.start()
        try:
            webhooks.enqueue(receiver.url(host="localhost"), SECRET, "shot.done", {})
            await until(lambda: webhooks.pending == 0)
        finally:
            await webhooks.close()

    try:
        run(body)
    finally:
        receiver.stop()
    [request] = receiver.requests
    assert request.headers["host"] == f"localhost:{receiver.port}"


def _self_signed(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server, client) TLS contexts for a certificate naming 'localhost' only."""
    cert_file, key_file = self_signed(tmp_path, dns="localhost")
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert_file, key_file)
    client = ssl.create_default_context(cafile=str(cert_file))
    return server, client


def test_https_connects_to_the_checked_address_under_its_name(tmp_path: Path) -> None:
    """As above over TLS: the connection goes to 127.0.0.2 and the certificate, which names
    'localhost' and no address, is checked against the name."""
    server_tls, client_tls = _self_signed(tmp_path)
    receiver = Receiver(host="127.0.0.2", tls=server_tls).start()
    webhooks = sender(
        tmp_path / "state", resolver=lambda host, port: ["127.0.0.2"], tls_context=client_tls
    )

    async def body() -> None:
        await webhooks.start()
        try:
            webhook_id = webhooks.enqueue(receiver.url(host="localhost"), SECRET, "shot.done", {})
            await until(lambda: webhooks.pending == 0)
        finally:
            await webhooks.close()
        assert outcomes(webhooks, webhook_id) == ["delivered"]

    try:
        run(body)
    finally:
        receiver.stop()
    [request] = receiver.requests
    assert request.headers["host"] == f"localhost:{receiver.port}"


def test_rebinding_refused_at_delivery_time(receiver: Receiver, tmp_path: Path) -> None:
    answers = iter([["127.0.0.1"]])

    def rebinding(host: str, port: int) -> list[str]:
        assert host == "localhost"
        return next(answers, ["10.9.9.9"])

    webhooks = sender(tmp_path, resolver=rebinding)
    url = receiver.url(host="localhost")
    webhooks.check_url(url)

    async def body() -> None:
        await webhooks.start()
        try:
            webhook_id = webhooks.enqueue(url, SECRET, "shot.done", {})
            await until(lambda: webhooks.pending == 0)
        finally:
            await webhooks.close()
        [attempt] = webhooks.attempts(webhook_id)
        assert attempt["outcome"] == "given_up"
        assert attempt["status_code"] is None
        assert attempt["error"].startswith("BlockedAddress")
        assert "10.9.9.9" in attempt["error"]

    run(body)
    assert receiver.count() == 0


def test_torn_trailing_line_in_queue_is_ignored(receiver: Receiver, tmp_path: Path) -> None:
    before_crash = sender(tmp_path)
    first = before_crash.enqueue(receiver.url(), SECRET, "shot.done", {"n": 1})
    queue = tmp_path / "webhooks" / "queue.jsonl"
    with queue.open("ab") as file:
        file.write(b'{"id": "msg_torn", "url": "http://127.0.0.1:9/x", "typ')
    after_crash = sender(tmp_path)
    # Enqueued before start: must not be glued onto the torn line.
    second = after_crash.enqueue(receiver.url(), SECRET, "shot.done", {"n": 2})

    async def body() -> None:
        await after_crash.start()
        try:
            assert after_crash.pending == 2
            await until(lambda: after_crash.pending == 0)
        finally:
            await after_crash.close()

    run(body)
    assert sorted(r.headers["webhook-id"] for r in receiver.requests) == sorted([first, second])


def test_slow_receiver_does_not_hold_back_others(tmp_path: Path) -> None:
    slow = Receiver(delay=1.5).start()
    fast = Receiver().start()
    webhooks = sender(tmp_path)

    async def body() -> None:
        await webhooks.start()
        try:
            for n in range(12):
                webhooks.enqueue(slow.url(), SECRET, "shot.done", {"n": n})
            await until(lambda: slow.count() >= 1)
            started = time.monotonic()
            fast_id = webhooks.enqueue(fast.url(), SECRET, "shot.done", {})
            await until(lambda: fast.count() == 1)
            assert time.monotonic() - started < 1.0  # the slow ones take 1.5 s
            assert slow.count() <= 2  # its per-receiver share, the rest queued behind it
            # and the sender settles it as delivered (its answer may be read a moment after
            # the receiver counted it: poll, on a busy machine that moment is long)
            await until(
                lambda: any(a["outcome"] == "delivered" for a in webhooks.attempts(fast_id))
            )
            await until(lambda: webhooks.pending <= 12)  # settled right after it is recorded
            assert webhooks.pending >= 10  # the slow ones still wait (2 at most answered)
        finally:
            await webhooks.close()

    try:
        run(body)
    finally:
        slow.stop()
        fast.stop()


def test_enqueue_from_another_thread_wakes_the_loop(receiver: Receiver, tmp_path: Path) -> None:
    webhooks = sender(tmp_path)

    async def body() -> None:
        await webhooks.start()
        try:
            ids = await asyncio.gather(
                *(
                    asyncio.to_thread(webhooks.enqueue, receiver.url(), SECRET, "t", {"n": n})
                    for n in range(5)
                )
            )
            await until(lambda: webhooks.pending == 0)
        finally:
            await webhooks.close()
        assert sorted(r.headers["webhook-id"] for r in receiver.requests) == sorted(ids)

    run(body)
