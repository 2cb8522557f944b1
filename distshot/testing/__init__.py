"""Conformance suites and test helpers for distshot plug-in authors.

``distshot.testing.engine_suite.EngineConformance``: subclass it with ``engine = "name"`` to
prove an engine honours the contract. ``distshot.testing.server``: the local page server
the suites use; ``distshot.testing.processes``: finding leftover browser processes.
Needs ``pip install 'distshot[test]'`` (pytest, Pillow).
"""
