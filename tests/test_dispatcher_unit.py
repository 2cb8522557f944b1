"""The dispatcher's message contract, on Dramatiq's StubBroker (no worker attached)."""

from __future__ import annotations

import json
from pathlib import Path

from dramatiq import Message
from dramatiq.brokers.stub import StubBroker

from distshot.core.inputs import RequestReader
from distshot.core.manifest import ManifestWriter
from distshot.core.options import DEFAULT_OPTIONS, parse_options
from distshot.dispatch.dispatcher import Dispatcher


def test_messages_carry_reply_queue_and_a_time_limit_below_rabbitmqs_consumer_timeout(
    tmp_path: Path,
) -> None:
    # Given a broker with the engine queue but no worker
    broker = StubBroker(middleware=[])
    broker.declare_queue("distshot.null")
    defaults = parse_options({"timeout": 600}, DEFAULT_OPTIONS)  # the largest timeout allowed
    reader = RequestReader("b1", defaults, allow_private=True)
    lines = ["https://a.test/1", "https://a.test/2"]
    # When the dispatcher sends them and nobody answers
    with ManifestWriter(tmp_path / "m.jsonl") as manifest:
        counts = Dispatcher(
            broker,
            batch="b1",
            manifest=manifest,
            default_engine="null",
            wait_timeout=0.5,
            poll_ms=50,
        ).run(reader.read_stream(iter(line + "\n" for line in lines), "txt"))
    # Then each message names the batch's reply queue and a time limit of timeout + 60 s,
    # well under RabbitMQ's 30-minute consumer_timeout
    queued = [Message.decode(body) for body in list(broker.queues["distshot.null"].queue)]
    assert len(queued) == 2
    for message in queued:
        assert message.options["reply_to"] == "distshot.reply.b1"
        assert message.options["time_limit"] == 660_000 < 30 * 60 * 1000
        assert message.args[0]["options"] == {"timeout": 600.0}
    # and the unanswered requests are recorded as such, once each
    records = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert sorted(r["line"] for r in records) == [1, 2]
    assert {r["error"]["type"] for r in records} == {"ReplyTimeout"}
    assert counts.failed == 2


def test_the_dispatcher_and_a_request_share_one_batch_id_rule(tmp_path: Path) -> None:
    """A batch id names a reply queue and a manifest: what the dispatcher accepts, a worker
    accepts in a request, and the other way round."""
    from distshot.core.config import load_settings
    from distshot.core.errors import ConfigError, InvalidRequest
    from distshot.core.models import ShotRequest
    from distshot.dispatch.distributed import DispatchJob, run_dispatch

    # A port nobody listens on: an accepted id gets as far as connecting, and fails there.
    settings = load_settings(env={"DISTSHOT_BROKER_URL": "amqp://guest:guest@127.0.0.1:1/%2F"})

    def request_accepts(batch: str) -> bool:
        wire = {"id": "r1", "line": 1, "url": "https://example.test/", "batch": batch}
        try:
            ShotRequest.from_wire(wire)
        except InvalidRequest:
            return False
        return True

    def dispatcher_refusal(batch: str) -> str | None:
        job = DispatchJob([], batch, tmp_path / "m.jsonl", False, settings)
        try:
            run_dispatch(job)
        except ConfigError as exc:
            return None if "cannot connect to the broker" in str(exc) else str(exc)
        raise AssertionError("a dispatch to port 1 cannot succeed")

    for batch in ["a", "crawl-0142_x", "x" * 100]:
        assert request_accepts(batch), batch
        assert dispatcher_refusal(batch) is None, batch
    for batch in ["x" * 101, "a b", "a/b", "\u00e4"]:
        assert not request_accepts(batch), batch
        assert "batch id must be 1-100 of [A-Za-z0-9_-]" in (dispatcher_refusal(batch) or ""), batch
