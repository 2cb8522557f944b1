"""The service's state and operations, apart from HTTP: shots, batches, webhooks, drain.

``app.py`` maps routes onto these; tests and the rabbitmq backend's restart logic use them
directly.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.config import DEFAULT_QUEUE_PREFIX
from ..core.inputs import RequestReader
from ..core.models import ShotRequest
from ..core.options import CaptureOptions
from ..core.policy import UrlPolicy
from .backend import Backend
from .batches import Batch, BatchRunner, BatchStore
from .keys import LOCAL_ID, ApiKey, KeyRing, new_webhook_secret
from .shots import Shot, ShotBook
from .webhooks import WebhookSender

logger = logging.getLogger("distshot.serve")

SHOTS_BATCH = "shots"


@dataclass
class ServeSettings:
    host: str = "127.0.0.1"
    port: int = 8000
    backend: str = "embedded"
    broker_url: str = "amqp://guest:guest@127.0.0.1:5672/%2F"
    storage: str = "shots"
    engine: str = "playwright"
    concurrency: int = 2
    max_queue: int = 100
    #: Seconds a waiting client's request may be predicted to wait for a browser
    #: (None: one smoothed capture time; math.inf: only the queue bounds it).
    max_queue_wait: float | None = None
    #: 429 while the process tree's resident memory is above this many bytes.
    memory_limit: int | None = None
    #: embedded: how much nicer (``nice(2)``) the capture process and its browsers run
    #: than the API's process.
    capture_nice: int = 5
    state_dir: Path = field(default_factory=lambda: Path(".distshot-serve"))
    keys_file: Path | None = None
    allow_private: bool = False
    allow_networks: tuple[str, ...] = ()
    default_wait: float = 30.0
    cache_ttl: float | None = None
    default_scheme: str = "https"
    drain_timeout: float = 60.0
    max_body: int = 1 << 20
    max_batch_body: int = 1 << 30
    upload_threads: int = 4
    webhook_schedule: tuple[float, ...] | None = None
    queue_prefix: str = DEFAULT_QUEUE_PREFIX
    instance: str = "serve"
    #: rabbitmq backend: a request with no reply within this many seconds is failed.
    reply_timeout: float = 900.0


class Service:
    def __init__(self, settings: ServeSettings, backend: Backend, keys: KeyRing) -> None:
        self.settings = settings
        self.backend = backend
        self.keys = keys
        self.metrics = backend.admission.metrics
        self.policy = UrlPolicy.build(settings.allow_private, settings.allow_networks)
        state = settings.state_dir
        self.shots = ShotBook(state / "shots.jsonl")
        self.batches = BatchStore(state / "batches")
        schedule = settings.webhook_schedule
        kwargs: dict[str, Any] = {} if schedule is None else {"schedule": schedule}
        self.webhooks = WebhookSender(state, self.policy, **kwargs)
        self.local_key = ApiKey(LOCAL_ID, "0" * 64, _local_webhook_secret(state))
        self.draining = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._sampler: asyncio.Task[None] | None = None

    # -- life cycle -------------------------------------------------------------------

    async def start(self) -> None:
        self.settings.state_dir.mkdir(parents=True, exist_ok=True)
        await self.backend.start()
        self.shots.open()
        await self.webhooks.start()
        self._sampler = asyncio.create_task(self._sample_memory())
        # What an earlier run accepted and did not finish is taken up again.
        for shot in self.shots.pending():
            request = shot.request
            if request is not None:
                ticket = self.backend.admission.admit(shot.owner, force=True)
                self._spawn(self._run_shot(shot, ShotRequest.from_wire(request), ticket))
        for batch in self.batches.load():
            logger.info("resuming batch %s", batch.id)
            defaults, engine = _saved_defaults(batch)
            self._spawn(self._run_batch(batch, self._reader_for(batch, defaults, engine)))

    async def drain(self) -> None:
        """Refuse new work, let accepted work finish (up to ``drain_timeout``)."""
        self.draining = True
        pending = [task for task in self._tasks if not task.done()]
        if pending:
            logger.info("draining: waiting for %d accepted jobs", len(pending))
            _, late = await asyncio.wait(pending, timeout=self.settings.drain_timeout)
            if late:
                logger.warning("drain timeout: %d jobs did not finish", len(late))

    async def close(self) -> None:
        self.draining = True
        for task in list(self._tasks):
            task.cancel()
        if self._sampler is not None:
            self._sampler.cancel()
        await self.webhooks.close()
        await self.backend.close()
        self.shots.close()

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _sample_memory(self) -> None:
        memory = self.backend.admission.memory
        while True:
            rss = await asyncio.to_thread(memory.sample)
            self.metrics.memory_bytes.set(rss)
            self.metrics.webhooks_pending.set(self.webhooks.pending)
            await asyncio.sleep(0.5)

    # -- shots ------------------------------------------------------------------------

    def policy_fields(self) -> dict[str, Any]:
        return {
            "allow_private": self.settings.allow_private,
            "allow_networks": self.settings.allow_networks,
            "cache_ttl": self.settings.cache_ttl,
        }

    def submit_shot(
        self,
        key: ApiKey,
        url: str,
        options: CaptureOptions,
        engine: str | None,
        webhook_url: str | None,
        *,
        waiting_client: bool = False,
    ) -> Shot:
        """Admit (or raise Overloaded) and start one shot. ``waiting_client``: the client
        waits on the connection for the answer (see ``Admission.predicted_wait``)."""
        ticket = self.backend.admission.admit(
            key.id,
            quota=key.concurrency,
            max_queue=key.max_queue,
            waiting_client=waiting_client,
        )
        shot = self.shots.reserve(key.id, url, webhook_url)
        request = ShotRequest(
            id=shot.id,
            line=0,
            url=url,
            options=options,
            batch=SHOTS_BATCH,
            engine=engine,
            **self.policy_fields(),
        )
        self.shots.add(shot, request.to_wire())
        self._spawn(self._run_shot(shot, request, ticket))
        return shot

    async def _run_shot(self, shot: Shot, request: ShotRequest, ticket: Any) -> None:
        shot.status = "queued"
        started = time.monotonic()

        async def job() -> dict[str, Any]:
            shot.status = "running"
            return await self.backend.execute(request)

        record = await self.backend.admission.run(ticket, job)
        self.metrics.capture_seconds.observe(time.monotonic() - started)
        self.metrics.shots.labels(record.get("status"), record.get("engine") or "").inc()
        self.shots.finish(shot, record)
        if shot.webhook_url:
            secret = self.key_for(shot.owner).webhook_secret
            await asyncio.to_thread(
                self.webhooks.enqueue, shot.webhook_url, secret, "shot.finished", record
            )

    def key_for(self, owner: str) -> ApiKey:
        return self.keys.by_id(owner) or self.local_key

    # -- batches ----------------------------------------------------------------------

    def _reader_for(
        self, batch: Batch, defaults: CaptureOptions, engine: str | None
    ) -> RequestReader:
        return RequestReader(
            batch.id,
            defaults,
            engine=engine,
            allow_private=self.settings.allow_private,
            allow_networks=self.settings.allow_networks,
            cache_ttl=self.settings.cache_ttl,
            default_scheme=self.settings.default_scheme,
        )

    def check_batch_input(self, batch: Batch) -> None:
        """Raise the reader's whole-file error (a CSV without a url column) now, so the
        client gets a 422 instead of a batch that cannot start. Blocking: run in a thread."""
        items = self._reader_for(batch, CaptureOptions(), None).read_path(
            str(batch.input_path), batch.fmt
        )
        next(iter(items), None)

    def start_batch(self, batch: Batch, defaults: CaptureOptions, engine: str | None) -> None:
        reader = self._reader_for(batch, defaults, engine)
        _save_defaults(batch, defaults, engine)
        batch.status = "running"
        batch.save()
        self._spawn(self._run_batch(batch, reader))

    async def _run_batch(self, batch: Batch, reader: RequestReader) -> None:
        key = self.key_for(batch.owner)
        admission = self.backend.admission

        async def execute(request: ShotRequest) -> dict[str, Any]:
            ticket = admission.admit(key.id, quota=key.concurrency, force=True)
            started = time.monotonic()
            record = await admission.run(ticket, lambda: self.backend.execute(request))
            self.metrics.capture_seconds.observe(time.monotonic() - started)
            self.metrics.shots.labels(record.get("status"), record.get("engine") or "").inc()
            return record

        window = min(key.concurrency or admission.concurrency, admission.concurrency) * 2
        runner = BatchRunner(batch, reader, execute, window=window, stopping=lambda: self.draining)
        finished = await runner.run()
        if finished and batch.webhook_url:
            await asyncio.to_thread(
                self.webhooks.enqueue,
                batch.webhook_url,
                key.webhook_secret,
                "batch.finished",
                batch.summary(),
            )


def _local_webhook_secret(state: Path) -> str:
    """The webhook secret of a service without keys: made once, kept in the state folder."""
    path = state / "webhook_secret"
    try:
        return path.read_text("utf-8").strip()
    except FileNotFoundError:
        state.mkdir(parents=True, exist_ok=True)
        secret = new_webhook_secret()
        path.write_text(secret + "\n", "utf-8")
        path.chmod(0o600)
        return secret


def _save_defaults(batch: Batch, defaults: CaptureOptions, engine: str | None) -> None:
    data = {"options": defaults.to_wire(), "engine": engine}
    (batch.folder / "defaults.json").write_text(json.dumps(data), "utf-8")


def _saved_defaults(batch: Batch) -> tuple[CaptureOptions, str | None]:
    """The options and engine a batch was sent with (for a resumed batch)."""
    try:
        data = json.loads((batch.folder / "defaults.json").read_text("utf-8"))
    except (OSError, ValueError):
        return CaptureOptions(), None
    engine = data.get("engine")
    return CaptureOptions.from_wire(data.get("options") or {}), engine if engine else None
