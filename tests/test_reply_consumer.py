"""The worker's consumer publishes each reply itself and settles the request only once the
broker has confirmed that reply (distshot/actors/reply_consumer.py), against the shared RabbitMQ.

Each test has its own queues (a fresh prefix) and deletes them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import dramatiq
import pika
import pytest
from rabbit import SHARED_URL, delete_queues, new_prefix, publish_raw, queue_state

from distshot.actors.rabbitmq import DistshotBroker
from distshot.actors.reply_consumer import ReplyingConsumer, attach_reply


class Queues:
    def __init__(self) -> None:
        self.prefix = new_prefix()
        self.requests = f"{self.prefix}.null"
        self.replies = f"{self.prefix}.reply.b1"
        self.broker = DistshotBroker(SHARED_URL, middleware=[])
        self.broker.declare_queue(self.requests, ensure=True)  # with its .DQ and .XQ

    def declare_replies(self, **arguments: Any) -> None:
        connection = pika.BlockingConnection(pika.URLParameters(SHARED_URL))
        connection.channel().queue_declare(self.replies, durable=True, arguments=arguments)
        connection.close()

    def send_request(self) -> None:
        message: dramatiq.Message[Any] = dramatiq.Message(
            queue_name=self.requests,
            actor_name="distshot.capture",
            args=({"id": "b1:1"},),
            kwargs={},
            options={},
        )
        publish_raw(SHARED_URL, self.requests, message.encode())

    def consume(self, prefetch: int = 4) -> ReplyingConsumer:
        consumer = self.broker.consume(self.requests, prefetch=prefetch, timeout=100)
        assert isinstance(consumer, ReplyingConsumer)
        return consumer

    def one_request(self) -> tuple[ReplyingConsumer, Any]:
        """Send one request and receive it: (the consumer, the delivered message)."""
        self.send_request()
        consumer = self.consume()
        return consumer, receive(consumer)

    def count(self, queue: str) -> int:
        state = queue_state(SHARED_URL, queue)
        return state[0] if state else -1

    def reply_bodies(self) -> list[bytes]:
        connection = pika.BlockingConnection(pika.URLParameters(SHARED_URL))
        channel = connection.channel()
        bodies = []
        while True:
            method, _, body = channel.basic_get(self.replies, auto_ack=True)
            if method is None:
                break
            bodies.append(body)
        connection.close()
        return bodies


@pytest.fixture
def queues() -> Iterator[Queues]:
    made = Queues()
    yield made
    made.broker.close()
    delete_queues(SHARED_URL, made.prefix, [made.requests, made.replies])


def receive(consumer: ReplyingConsumer) -> Any:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        message = next(consumer)
        if message is not None:
            return message
    raise AssertionError("no request delivered")


def pump_until(consumer: ReplyingConsumer, done: Callable[[], bool], what: str) -> None:
    """Drive the consumer (its callbacks run on this thread) until ``done``."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        next(consumer)
        if done():
            return
    raise AssertionError(f"timed out waiting for {what}")


def settle_from_worker_thread(consumer: ReplyingConsumer, message: Any, *, ack: bool) -> None:
    # As in a Dramatiq worker: the worker thread settles, the consumer thread does the I/O.
    thread = threading.Thread(target=consumer.ack if ack else consumer.nack, args=(message,))
    thread.start()
    thread.join()


def test_the_reply_is_published_and_then_the_request_acked(queues: Queues) -> None:
    queues.declare_replies()
    consumer, message = queues.one_request()
    attach_reply(message, queues.replies, b"the reply")
    settle_from_worker_thread(consumer, message, ack=True)
    pump_until(consumer, lambda: not consumer._unconfirmed, "the reply's confirm")
    consumer.close()
    assert queues.reply_bodies() == [b"the reply"]
    assert queues.count(queues.requests) == 0  # acked: not redelivered after the close
    assert queues.count(queues.requests + ".XQ") == 0


def test_a_failed_request_is_answered_and_then_dead_lettered(queues: Queues) -> None:
    queues.declare_replies()
    consumer, message = queues.one_request()
    message.fail()
    attach_reply(message, queues.replies, b"final failure")
    settle_from_worker_thread(consumer, message, ack=False)
    pump_until(
        consumer, lambda: queues.count(queues.requests + ".XQ") == 1, "the dead-lettered request"
    )
    consumer.close()
    assert queues.reply_bodies() == [b"final failure"]
    assert queues.count(queues.requests) == 0


def test_a_reply_the_broker_refuses_hands_the_request_back(queues: Queues) -> None:
    # Given a reply queue that refuses every message (so the broker nacks the publish)
    queues.declare_replies(**{"x-max-length": 0, "x-overflow": "reject-publish"})
    consumer, message = queues.one_request()
    attach_reply(message, queues.replies, b"refused")
    settle_from_worker_thread(consumer, message, ack=True)
    # Then the request is not acked but requeued, to be answered again
    redelivered = receive(consumer)
    assert redelivered.message_id == message.message_id
    assert redelivered.redelivered
    consumer.close()


def test_a_reply_to_a_deleted_queue_is_logged_and_the_request_still_settled(
    queues: Queues, caplog: pytest.LogCaptureFixture
) -> None:
    # No reply queue: the dispatcher finished and deleted it.
    consumer, message = queues.one_request()
    attach_reply(message, queues.replies, b"nobody waits")
    with caplog.at_level(logging.ERROR, logger="distshot.reply"):
        settle_from_worker_thread(consumer, message, ack=True)
        pump_until(consumer, lambda: not consumer._unconfirmed, "the reply's confirm")
        consumer.close()
    assert f"reply queue {queues.replies} is gone" in caplog.text
    assert queues.count(queues.requests) == 0


def test_closing_waits_for_the_confirms_of_replies_already_handed_over(queues: Queues) -> None:
    queues.declare_replies()
    for _ in range(20):
        queues.send_request()
    consumer = queues.consume(prefetch=20)
    messages = [receive(consumer) for _ in range(20)]
    for n, message in enumerate(messages):
        attach_reply(message, queues.replies, f"reply {n}".encode())
        settle_from_worker_thread(consumer, message, ack=True)
    # Closed at once, as a stopping worker does after its last job: nothing pumped before.
    consumer.close()
    assert sorted(queues.reply_bodies()) == sorted(f"reply {n}".encode() for n in range(20))
    assert queues.count(queues.requests) == 0  # every answered request was acked


def test_a_group_of_received_replies_is_acked_with_one_multiple_ack(queues: Queues) -> None:
    # The dispatcher's side: it acks everything it has received, in groups.
    for _ in range(10):
        queues.send_request()
    consumer = queues.consume(prefetch=10)
    first = [receive(consumer) for _ in range(6)]
    consumer.ack_all_received(first)
    consumer.close()
    # Exactly the six received are acked; the four never received come back.
    assert queues.count(queues.requests) == 4


def test_a_stale_delivery_settled_on_a_new_connection_acks_nothing(queues: Queues) -> None:
    # Given a request delivered on a connection that is then replaced (a broker restart)
    queues.declare_replies()
    old, stale = queues.one_request()
    old.close()
    new = queues.consume()
    fresh = receive(new)  # the same request, redelivered, with the same delivery tag
    assert fresh._tag == stale._tag
    # When the stale copy is settled on the new consumer (as Dramatiq retries a failed ack)
    attach_reply(stale, queues.replies, b"stale")
    settle_from_worker_thread(new, stale, ack=True)
    pump_until(new, lambda: True, "one pump")
    new.close()
    # Then the new delivery is not acked in its place: the request is still there
    assert queues.count(queues.requests) == 1
    assert queues.reply_bodies() == []
