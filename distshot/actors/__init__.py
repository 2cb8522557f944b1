"""The worker side: the capture actor, the reply middleware, and the broker set-up.

Callers (the embedded runner, tests) declare the actors on a broker of their own with
``install_worker``.
"""

from __future__ import annotations

from .capture import CAPTURE_ACTOR, CaptureFailed, queue_for
from .reply import REPLY_ACTOR, ReplyMiddleware, reply_queue_for, send_reply
from .runtime import WorkerRuntime
from .setup import install_worker, worker_middleware

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
