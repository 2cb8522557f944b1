"""Messages out of the logs: a request message carries its options, secrets included (cookie
values, passwords: the README's "Secrets in a fleet"), and Dramatiq logs whole messages (at
DEBUG when one arrives, as a warning when one is skipped). Every log record whose arguments
hold a message shows its actor and id instead, in every process that imports the worker side
(``distshot shoot``, ``distshot worker``'s Dramatiq processes, the service), whatever
handlers the process configured: a record factory, not a handler's filter.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import dramatiq

_installed = False
_lock = threading.Lock()


class _Redacted:
    """What a log line shows of a message."""

    def __init__(self, message: dramatiq.Message[Any]) -> None:
        self.text = f"{message.actor_name}(message {message.message_id})"

    def __str__(self) -> str:
        return self.text

    __repr__ = __str__


def install() -> None:
    """Wrap the log record factory once per process."""
    global _installed
    with _lock:
        if _installed:
            return
        _installed = True
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            if isinstance(record.args, tuple) and any(
                isinstance(arg, dramatiq.Message) for arg in record.args
            ):
                record.args = tuple(
                    _Redacted(arg) if isinstance(arg, dramatiq.Message) else arg
                    for arg in record.args
                )
            return record

        logging.setLogRecordFactory(factory)
