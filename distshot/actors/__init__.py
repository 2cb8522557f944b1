"""The worker side: the capture actor, the reply middleware, and the broker set-up.

``dramatiq distshot.actors`` imports this package inside Dramatiq's worker processes; then,
and only then, the RabbitMQ broker is built from configuration (DISTSHOT_BROKER_URL,
DISTSHOT_ENGINE, distshot.toml) and the capture actor declared on it. Other importers (the
embedded runner, tests) declare the actor on a broker of their own with ``install_worker``.
"""

from __future__ import annotations

import sys

from . import redaction
from .capture import CAPTURE_ACTOR, CaptureFailed, queue_for
from .reply_middleware import REPLY_ACTOR, ReplyMiddleware, reply_queue_for, send_reply
from .runtime import WorkerRuntime
from .worker_stack import install_worker, worker_middleware

__all__ = [
    "CAPTURE_ACTOR",
    "REPLY_ACTOR",
    "CaptureFailed",
    "ReplyMiddleware",
    "WorkerRuntime",
    "install_worker",
    "queue_for",
    "reply_queue_for",
    "send_reply",
    "worker_middleware",
]

redaction.install()

if "dramatiq.cli" in sys.modules and __name__ == "distshot.actors":
    from .rabbitmq import configure_from_environment

    broker = configure_from_environment()
