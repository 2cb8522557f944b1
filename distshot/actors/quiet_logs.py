"""Keep request bodies out of Dramatiq's logs.

Dramatiq's worker logs a failed message as ``capture({...})``: the whole request, options
and all. A request may carry secrets (a proxy's password travels inside it), and the
failure is in the manifest anyway, so the worker's log names the message by its id.
"""

from __future__ import annotations

import logging

import dramatiq

#: The loggers of Dramatiq's worker that put a whole message in their records.
_LOGGERS = ("dramatiq.worker.WorkerThread",)


class HideMessageBodies(logging.Filter):
    """Replace every Dramatiq message among a record's arguments by its id."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(
            isinstance(arg, dramatiq.Message) for arg in record.args
        ):
            record.args = tuple(
                f"{arg.actor_name} message {arg.message_id}"
                if isinstance(arg, dramatiq.Message)
                else arg
                for arg in record.args
            )
        return True


_FILTER = HideMessageBodies()


def hide_message_bodies() -> None:
    """Install the filter (once, however often it is called)."""
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
