"""Distributed mode's client: a dispatcher on RabbitMQ, with resume after a crash."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pika
from dramatiq.common import dq_name, xq_name

from ..actors.rabbitmq import DistshotBroker
from ..core.config import Settings
from ..core.errors import ConfigError
from ..core.inputs import InputItem
from ..core.manifest import ManifestWriter, recorded_lines
from ..core.models import BATCH_ID_RE, BATCH_ID_RULE
from .dispatcher import Counts, Dispatcher, ProgressCallback
from .journal import LineSet, SentJournal

logger = logging.getLogger("distshot.dispatch")


@dataclass
class DispatchJob:
    items: Iterable[InputItem]
    batch: str
    manifest: Path
    resume: bool
    settings: Settings


def connect(url: str) -> DistshotBroker:
    """A dispatcher-side broker (no worker middleware); fails fast on a bad URL."""
    broker = DistshotBroker(url, middleware=[])
    try:
        broker.connection  # noqa: B018 - opens the connection now, not mid-run
    except (pika.exceptions.AMQPError, OSError, ValueError) as exc:
        shown = re.sub(r"//[^@/]*@", "//***@", url)
        reason = _connect_reason(exc)
        raise ConfigError(f"cannot connect to the broker at {shown}: {reason}") from None
    return broker


def _connect_reason(exc: BaseException) -> str:
    text = repr(exc)
    for needle, reason in (
        ("ConnectionRefused", "connection refused (is RabbitMQ running there?)"),
        ("ProbableAuthentication", "authentication failed (check user and password)"),
        ("ProbableAccessDenied", "access denied (check the vhost and permissions)"),
        ("gaierror", "host name not found"),
        ("TimeoutError", "timed out"),
    ):
        if needle in text:
            return reason
    return text


def run_dispatch(job: DispatchJob, *, on_progress: ProgressCallback | None = None) -> Counts:
    if not BATCH_ID_RE.match(job.batch):
        raise ConfigError(f"batch id must be {BATCH_ID_RULE}, not {job.batch!r}")
    journal_path = job.manifest.with_name(job.manifest.name + ".sent")
    if job.resume and not job.manifest.exists() and not journal_path.exists():
        raise ConfigError(f"nothing to resume: neither {job.manifest} nor {journal_path} exists")
    if not job.resume and (job.manifest.exists() or journal_path.exists()):
        raise ConfigError(
            f"{job.manifest} already exists; resume with --resume {job.batch}, "
            "or choose another --manifest"
        )
    done = LineSet()
    for line in recorded_lines(job.manifest):
        done.add(line)

    broker = connect(job.settings.broker_url)
    journal = SentJournal(journal_path)
    finished = False
    try:
        with ManifestWriter(job.manifest) as manifest:
            dispatcher = Dispatcher(
                broker,
                batch=job.batch,
                manifest=manifest,
                default_engine=job.settings.engine,
                window=job.settings.window,
                wait_timeout=job.settings.wait_timeout,
                done_lines=done,
                journal=journal,
                on_progress=on_progress,
                queue_prefix=job.settings.queue_prefix,
            )
            counts = dispatcher.run(job.items)
            finished = True
    finally:
        if finished:
            journal.remove()
            _delete_reply_queues(broker, dispatcher.reply_queue)
        else:
            journal.close()  # kept, with the reply queue, for --resume
        broker.close()
    return counts


def _delete_reply_queues(broker: DistshotBroker, queue: str) -> None:
    """Every reply is recorded: the batch's queues have nothing left to keep."""
    try:
        for name in (queue, dq_name(queue), xq_name(queue)):
            broker.channel.queue_delete(name)
    except pika.exceptions.AMQPError:
        logger.warning("could not delete reply queue %s", queue, exc_info=True)
