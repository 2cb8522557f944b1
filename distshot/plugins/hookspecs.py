"""The hooks a distshot plug-in implements. Imports nothing of distshot.

A plug-in is a module (usually a package's entry point in the ``distshot`` group) with::

    from distshot.plugins.hookspecs import hookimpl

    @hookimpl
    def distshot_engines(register):
        register("myengine", factory, capabilities)

Factories are called only when that engine or storage is chosen, so a plug-in should import
its heavy library inside the factory.
"""

from __future__ import annotations

from typing import Any

import pluggy

PROJECT = "distshot"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def distshot_engines(register: Any) -> None:
    """Register engines: ``register(name, factory, capabilities)``.

    ``factory(config: EngineConfig) -> Engine``; ``capabilities`` is a ``Capabilities``.
    """


@hookspec
def distshot_storages(register: Any) -> None:
    """Register storages: ``register(scheme, factory)``.

    ``factory(url: str) -> Storage`` receives the whole storage URL (``s3://bucket/prefix``,
    ``file:///abs/dir``); a plain directory path is the ``file`` scheme.
    """
