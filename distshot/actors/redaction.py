"""Secrets out of the logs: a request message carries its options, secrets included (cookie
values, passwords: the README's "Secrets in a fleet"), and Dramatiq logs whole messages and
an actor's arguments (at DEBUG when one arrives, as a warning when one is skipped). Every log
record whose arguments hold a message shows its actor and id instead, and a request payload
shows its secret options as ``<secret>`` (a proxy without its password), in every process
that imports the worker side (``distshot shoot``, ``distshot worker``'s Dramatiq processes,
the service), whatever handlers the process configured: a record factory, not a handler's
filter.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any

import dramatiq
from dramatiq.broker import MessageProxy

from ..core.errors import InvalidOption
from ..core.options import SPECS
from ..core.secretvalues import REDACTED, is_secret_ref

_installed = False
_lock = threading.Lock()


class _Redacted:
    """What a log line shows of a message."""

    def __init__(self, message: dramatiq.Message[Any] | MessageProxy) -> None:
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
            if isinstance(record.args, tuple) and record.args:
                record.args = tuple(_redact(arg, 2) for arg in record.args)
            return record

        logging.setLogRecordFactory(factory)


def _hidden(name: str, value: Any) -> Any:
    """An option's wire value as a log may show it: a secret hidden, a secret part (a proxy's
    password) left out."""
    spec = SPECS.get(name)
    if spec is None or is_secret_ref(value):
        return value
    if spec.secret:
        return REDACTED
    if spec.kind.has_secret_part and isinstance(value, str):
        with contextlib.suppress(InvalidOption):
            return spec.kind.key_json(spec.kind.parse(name, value))
        return REDACTED
    return value


def _redact(arg: Any, depth: int) -> Any:
    """``arg`` as a log line may show it: a message by its id, a request payload (or a tuple
    of them: an actor's arguments) without its secrets. Anything else is left alone."""
    if isinstance(arg, dramatiq.Message | MessageProxy):
        return _Redacted(arg)
    if isinstance(arg, dict) and isinstance(arg.get("options"), dict):
        options = {name: _hidden(name, value) for name, value in arg["options"].items()}
        return {**arg, "options": options}
    if depth > 0 and isinstance(arg, tuple | list):
        return type(arg)(_redact(item, depth - 1) for item in arg)
    return arg
