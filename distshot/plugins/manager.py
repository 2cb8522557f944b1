"""Load engine and storage plug-ins (built-ins first, then entry points) into registries.

Built-ins register through the same hooks as third-party packages. Entry points are loaded
once, lazily. Set DISTSHOT_TRACE_PLUGINS=1 to print which plug-in registered what.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pluggy

from ..core.contracts import Capabilities, Engine, EngineConfig, Storage
from ..core.errors import ConfigError, DuplicatePlugin, UnknownPlugin
from . import hookspecs

BUILTIN_PLUGINS = (
    "distshot.engines.null",
    "distshot.engines.playwright",
    "distshot.engines.pyppeteer",
    "distshot.engines.selenium",
    "distshot.storage.local",
    "distshot.storage.s3",
)

EngineFactory = Callable[[EngineConfig], Engine]
StorageFactory = Callable[[str], Storage]


@dataclass(frozen=True)
class EngineEntry:
    name: str
    factory: EngineFactory
    capabilities: Capabilities
    plugin: str


@dataclass(frozen=True)
class StorageEntry:
    scheme: str
    factory: StorageFactory
    plugin: str


class Registry:
    """Engines and storages by name, as the installed plug-ins registered them."""

    def __init__(
        self, *, entry_points: bool = True, extra_plugins: tuple[object, ...] = ()
    ) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        for module_name in BUILTIN_PLUGINS:
            __import__(module_name)
            self.pm.register(sys.modules[module_name], name=module_name)
        if entry_points:
            self.pm.load_setuptools_entrypoints(hookspecs.PROJECT)
        for plugin in extra_plugins:
            self.pm.register(plugin)
        self.engines: dict[str, EngineEntry] = {}
        self.storages: dict[str, StorageEntry] = {}
        self._collect()

    def _collect(self) -> None:
        trace = bool(os.environ.get("DISTSHOT_TRACE_PLUGINS"))
        for impl in self.pm.hook.distshot_engines.get_hookimpls():
            plugin = impl.plugin_name

            def register_engine(
                name: str, factory: EngineFactory, capabilities: Capabilities, _p: str = plugin
            ) -> None:
                if name in self.engines:
                    raise DuplicatePlugin(
                        f"engine {name!r} is registered twice: by {self.engines[name].plugin} "
                        f"and by {_p}"
                    )
                self.engines[name] = EngineEntry(name, factory, capabilities, _p)
                if trace:
                    print(f"distshot: engine {name!r} from {_p}", file=sys.stderr)

            impl.function(register=register_engine)
        for impl in self.pm.hook.distshot_storages.get_hookimpls():
            plugin = impl.plugin_name

            def register_storage(scheme: str, factory: StorageFactory, _p: str = plugin) -> None:
                if scheme in self.storages:
                    raise DuplicatePlugin(
                        f"storage {scheme!r} is registered twice: by "
                        f"{self.storages[scheme].plugin} and by {_p}"
                    )
                self.storages[scheme] = StorageEntry(scheme, factory, _p)
                if trace:
                    print(f"distshot: storage {scheme!r} from {_p}", file=sys.stderr)

            impl.function(register=register_storage)

    def engine_entry(self, name: str) -> EngineEntry:
        try:
            return self.engines[name]
        except KeyError:
            raise UnknownPlugin(
                f"unknown engine {name!r}; installed engines: {', '.join(sorted(self.engines))}"
            ) from None

    def create_engine(self, name: str, config: EngineConfig) -> Engine:
        return self.engine_entry(name).factory(config)

    def storage_entry(self, url: str) -> StorageEntry:
        scheme = storage_scheme(url)
        try:
            return self.storages[scheme]
        except KeyError:
            raise UnknownPlugin(
                f"unknown storage {scheme!r} in {url!r}; installed storages: "
                f"{', '.join(sorted(self.storages))}"
            ) from None

    def create_storage(self, url: str) -> Storage:
        return self.storage_entry(url).factory(url)


def storage_scheme(url: str) -> str:
    """'s3://b/p' -> 's3'; a plain path (even 'C:/x' style) -> 'file'."""
    if not url:
        raise ConfigError("empty storage URL")
    scheme = urlsplit(url).scheme.lower()
    if len(scheme) <= 1 or (Path(url).is_absolute() and "://" not in url):
        return "file"
    return scheme


_default: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, built on first use."""
    global _default
    if _default is None:
        _default = Registry()
    return _default
