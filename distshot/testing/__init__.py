"""Conformance suites and test helpers for distshot plug-in authors.

``distshot.testing.engine_suite.EngineConformance``: subclass it with ``engine = "name"`` to
prove an engine honours the contract. ``distshot.testing.server``: the local page server
the suites use; ``distshot.testing.processes``: finding leftover browser processes.
Needs ``pip install 'distshot[test]'`` (pytest, Pillow).

``distshot.testing.storage_suite.StorageConformance``: subclass it and provide a
``storage_factory`` fixture (and ``unusable_storage``) to prove a storage honours the
contract. Needs ``pip install 'distshot[test]'`` (pytest).
"""
