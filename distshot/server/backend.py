"""What the API needs from a backend: admit a request, then run it to one record."""

from __future__ import annotations

import abc
from typing import Any

from ..core.models import ShotRequest
from .limits import Admission


class Backend(abc.ABC):
    name: str
    #: Bounds the work the backend takes on; the API asks it before accepting anything.
    admission: Admission

    @abc.abstractmethod
    async def start(self) -> None:
        """Open what the backend needs (a browser, a broker connection); raises
        ConfigError with one clear line when it cannot."""

    @abc.abstractmethod
    async def execute(self, request: ShotRequest) -> dict[str, Any]:
        """Run ``request`` (its ticket already taken) to its final manifest record. Never
        raises for the request's own failure: that is a ``failed``/``rejected`` record."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop everything ``start`` opened; no browser may outlive this."""
