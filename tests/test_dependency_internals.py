"""The private parts of Dramatiq and pika that the exactly-once reply path stands on.

``actors/reply_consumer.py`` extends Dramatiq's private ``_RabbitmqConsumer`` (its ``known_tags``,
``channel`` and ``connection``, a message's ``_tag``) and publishes on pika's callback
channel under the blocking one (``BlockingChannel._impl``): no public extension point
lets a consumer publish a reply and settle the request only once the broker confirmed
it. pyproject.toml pins the minor versions this was verified with; this test is what to
run when raising a pin, and it names the internal that moved.
"""

from __future__ import annotations

import inspect
import tomllib
from pathlib import Path

import dramatiq
import pika
import pika.channel
from dramatiq.brokers import rabbitmq as dramatiq_rabbitmq
from rabbit import SHARED_URL, new_prefix, publish_raw

ROOT = Path(__file__).resolve().parents[1]


def internal(condition: bool, what: str) -> None:
    """Fail naming the internal and the file that relies on it."""
    assert condition, f"dependency internal changed: {what} (relied on by distshot/actors/)"


def test_dramatiq_consumer_has_the_shape_the_replying_consumer_extends() -> None:
    consumer_class = getattr(dramatiq_rabbitmq, "_RabbitmqConsumer", None)
    internal(consumer_class is not None, "dramatiq.brokers.rabbitmq._RabbitmqConsumer is gone")
    assert consumer_class is not None
    params = list(inspect.signature(consumer_class.__init__).parameters)
    internal(
        params == ["self", "broker", "queue_name", "prefetch", "timeout"],
        f"_RabbitmqConsumer.__init__ takes {params}",
    )
    for method in ("__next__", "ack", "nack", "close"):
        internal(callable(getattr(consumer_class, method, None)), f"_RabbitmqConsumer.{method}")
    internal(
        isinstance(
            inspect.getattr_static(dramatiq_rabbitmq.RabbitmqBroker, "consumer_class"), property
        ),
        "RabbitmqBroker.consumer_class is no longer a property a subclass can override",
    )


def test_a_live_consumer_exposes_known_tags_channel_and_message_tags() -> None:
    from distshot.actors.rabbitmq import DistshotBroker
    from distshot.actors.reply_consumer import ReplyingConsumer

    broker = DistshotBroker(SHARED_URL)
    queue = f"{new_prefix()}.internals"
    broker.declare_queue(queue, ensure=True)
    consumer = broker.consume(queue, prefetch=1, timeout=2000)
    try:
        internal(
            isinstance(consumer, ReplyingConsumer), "RabbitmqBroker.consume ignores consumer_class"
        )
        message = dramatiq.Message(queue_name=queue, actor_name="x", args=(), kwargs={}, options={})
        publish_raw(SHARED_URL, queue, message.encode())
        delivered = next(consumer)
        for _ in range(5):
            if delivered is not None:
                break
            delivered = next(consumer)
        assert delivered is not None, "no delivery within 10 s"
        tag = getattr(delivered, "_tag", None)
        internal(isinstance(tag, int), "a delivered message's _tag (its delivery tag)")
        internal(tag in getattr(consumer, "known_tags", ()), "_RabbitmqConsumer.known_tags")
        internal(
            isinstance(consumer.channel, pika.adapters.blocking_connection.BlockingChannel),
            "_RabbitmqConsumer.channel is a pika BlockingChannel",
        )
        impl = getattr(consumer.channel, "_impl", None)
        internal(isinstance(impl, pika.channel.Channel), "pika BlockingChannel._impl")
        for method in ("confirm_delivery", "add_on_return_callback", "basic_publish", "basic_ack"):
            internal(callable(getattr(impl, method, None)), f"pika Channel.{method}")
        internal(
            callable(getattr(consumer.connection, "add_callback_threadsafe", None)),
            "pika BlockingConnection.add_callback_threadsafe",
        )
        consumer.ack(delivered)
    finally:
        consumer.close()
        broker.channel.queue_delete(queue)
        for suffix in (".DQ", ".XQ"):
            broker.channel.queue_delete(queue + suffix)
        broker.close()


def test_the_pins_cover_the_installed_versions_and_no_more() -> None:
    """The pins are the guard: an upgrade past them is a decision, made with this test."""
    from importlib.metadata import version

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert any(d.startswith("dramatiq[rabbitmq]>=2.2,<2.3") for d in deps), deps
    assert any(d.startswith("pika>=1.3,<1.5") for d in deps), deps
    assert version("dramatiq").startswith("2.2."), version("dramatiq")
    major, minor = (int(part) for part in version("pika").split(".")[:2])
    assert (1, 3) <= (major, minor) < (1, 5), version("pika")


def test_pyppeteer_is_marked_unmaintained_where_users_choose_an_engine() -> None:
    from conftest import run_cli

    listing = run_cli("engines").stdout
    (line,) = [n for n in listing.splitlines() if "Chromium through pyppeteer" in n]
    assert "UNMAINTAINED" in line
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert extras["optional-dependencies"]["pyppeteer"] == ["pyppeteer==2.0.0"]
