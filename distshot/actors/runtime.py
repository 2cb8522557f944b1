"""What one worker process holds between jobs: its engine (one browser) and its storages."""

from __future__ import annotations

import asyncio
import threading

from ..core.config import DEFAULT_QUEUE_PREFIX
from ..core.contracts import Engine, EngineConfig, Storage
from ..core.errors import StorageError
from ..plugins.manager import Registry, get_registry


class WorkerRuntime:
    """Creates the engine on first use, inside the worker's event loop, and closes it once."""

    def __init__(
        self,
        engine_name: str,
        engine_config: EngineConfig,
        *,
        default_storage: str | None = None,
        queue_prefix: str = DEFAULT_QUEUE_PREFIX,
        registry: Registry | None = None,
        hash_images: bool = True,
    ) -> None:
        self.registry = registry or get_registry()
        self.engine_name = engine_name
        self.engine_config = engine_config
        self.default_storage = default_storage
        self.queue_prefix = queue_prefix
        #: Whether records carry the image's perceptual hash (``phash``).
        self.hash_images = hash_images
        # Fail at start-up, not per job, when the name is wrong.
        self.registry.engine_entry(engine_name)
        self._engine: Engine | None = None
        self._engine_lock: asyncio.Lock | None = None
        self._storages: dict[str, Storage] = {}
        self._storage_lock = threading.Lock()

    async def engine(self) -> Engine:
        if self._engine_lock is None:
            self._engine_lock = asyncio.Lock()
        async with self._engine_lock:
            if self._engine is None:
                engine = self.registry.create_engine(self.engine_name, self.engine_config)
                await engine.open()
                self._engine = engine
            return self._engine

    def storage(self, url: str | None) -> Storage:
        """The storage for ``url`` (the request's, else the worker's default), made and
        checked once; a storage that fails its check is not kept, so the next request
        checks again (a bucket created meanwhile is then found)."""
        url = url or self.default_storage
        if not url:
            raise StorageError("no storage given: pass --storage to the dispatcher or the worker")
        with self._storage_lock:
            storage = self._storages.get(url)
            if storage is None:
                storage = self.registry.create_storage(url)
                try:
                    storage.check()
                except BaseException:
                    storage.close()
                    raise
                self._storages[url] = storage
            return storage

    async def close(self) -> None:
        engine, self._engine = self._engine, None
        if engine is not None:
            await engine.close()
        with self._storage_lock:
            storages, self._storages = list(self._storages.values()), {}
        for storage in storages:
            storage.close()
