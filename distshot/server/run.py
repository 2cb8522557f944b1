"""``distshot serve``: build the service from settings and run it on uvicorn.

SIGTERM (or Ctrl-C) drains: readiness turns 503, new requests get 503, accepted work
finishes (for at most ``drain_timeout`` seconds), then uvicorn stops and the backend closes
its browsers. A second signal stops at once.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from dataclasses import replace
from typing import Any

import uvicorn

from ..core.config import Settings
from ..core.errors import ConfigError
from ..plugins.manager import get_registry
from .app import create_app
from .backend import Backend
from .capturer import CaptureSpec
from .embedded import EmbeddedBackend
from .keys import load_keys
from .limits import Admission
from .metrics import Metrics
from .service import ServeSettings, Service

logger = logging.getLogger("distshot.serve")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def build_backend(serve: ServeSettings, settings: Settings) -> Backend:
    admission = Admission(
        serve.concurrency,
        serve.max_queue,
        memory_limit=serve.memory_limit,
        max_wait=serve.max_queue_wait,
        metrics=Metrics(),
    )
    registry = get_registry()
    if serve.backend == "embedded":
        registry.engine_entry(serve.engine)
        config = replace(settings, engine=serve.engine, concurrency=serve.concurrency)
        spec = CaptureSpec(
            engine=serve.engine,
            engine_config=config.engine_config(),
            storage=serve.storage,
            upload_threads=serve.upload_threads,
            max_attempts=settings.max_attempts,
            log_level=logging.getLogger().getEffectiveLevel(),
            hash_images=settings.phash,
            nice=serve.capture_nice,
        )
        return EmbeddedBackend(spec, admission)
    if serve.backend == "rabbitmq":
        from .rabbitmq import RabbitBackend

        return RabbitBackend(serve, admission)
    raise ConfigError(f"unknown backend {serve.backend!r}; choose embedded or rabbitmq")


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, service: Service) -> None:
        super().__init__(config)
        self.service = service
        self._loop: asyncio.AbstractEventLoop | None = None
        self._draining: asyncio.Task[None] | None = None

    async def serve(self, sockets: Any = None) -> None:
        """Start the service before listening (a browser that cannot start is one error
        line and exit status 2, not a half-up server), and close it after."""
        self._loop = asyncio.get_running_loop()
        try:
            await self.service.start()
            await super().serve(sockets)
        finally:
            await self.service.close()

    def handle_exit(self, sig: int, frame: Any) -> None:
        if self._loop is None or self._draining is not None or self.should_exit:
            super().handle_exit(sig, frame)  # a second signal: stop now
            return
        self._loop.call_soon_threadsafe(self._begin_drain)

    def _begin_drain(self) -> None:
        if self._draining is None:
            logger.info("draining: new requests get 503; accepted work finishes")
            self._draining = asyncio.ensure_future(self._drain())

    async def _drain(self) -> None:
        await self.service.drain()
        self.should_exit = True


def serve(serve_settings: ServeSettings, settings: Settings) -> None:
    keys = load_keys(serve_settings.keys_file)
    if not keys and not is_loopback(serve_settings.host):
        raise ConfigError(
            f"refusing to listen on {serve_settings.host} without API keys: give --api-keys "
            "FILE (distshot keys add) or DISTSHOT_API_KEYS, or listen on 127.0.0.1"
        )
    backend = build_backend(serve_settings, settings)
    service = Service(serve_settings, backend, keys)
    app = create_app(service, get_registry())
    # The access log and the service's own events are the point of a service's stderr,
    # whatever the CLI's level for the rest (DISTSHOT_LOG_LEVEL).
    for name in ("distshot.access", "distshot.serve", "distshot.webhooks"):
        logging.getLogger(name).setLevel(logging.INFO)
    config = uvicorn.Config(
        app,
        host=serve_settings.host,
        port=serve_settings.port,
        access_log=False,  # AccessLog writes one line per request, with the route
        log_config=None,
        lifespan="off",
        # No websockets: the API has none, and pyppeteer pins a websockets too old for
        # uvicorn's implementation.
        ws="none",
        # A query may carry a script or a stylesheet option (up to 100,000 characters).
        h11_max_incomplete_event_size=1 << 20,
        # Longer than a load balancer's or client pool's idle timeout (60 s on most; httpx
        # and uvicorn both default to 5 s, so a client reusing a connection as the server
        # closes it got "server disconnected" under load): the side that reuses a
        # connection must be the one that closes it first.
        timeout_keep_alive=75,
        timeout_graceful_shutdown=5,
    )
    server = DrainingServer(config, service)
    server.run()
    if not server.started:
        raise ConfigError(
            f"could not listen on {serve_settings.host}:{serve_settings.port}; "
            "the lines above say why"
        )
