"""distshot's engine conformance suite, run against the ``cdp`` engine.

The suite creates the engine by name through distshot's plug-in registry, so passing it also
proves the entry point is installed. Run: ``pytest examples/distshot-engine-example/tests``.
"""

from __future__ import annotations

from distshot.testing.engine_suite import EngineConformance


class TestCdpEngine(EngineConformance):
    engine = "cdp"
