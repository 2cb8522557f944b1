"""The stack test's figures (build time, image size, drain times) are recorded with
``record_property``; this prints them after the run, where `make test-deploy` shows them."""

from __future__ import annotations

import pytest


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    lines = []
    for outcome in ("passed", "failed"):
        for report in terminalreporter.stats.get(outcome, []):
            if getattr(report, "when", "call") != "call":
                continue
            for name, value in getattr(report, "user_properties", []):
                lines.append(f"{name}: {value}")
    if lines:
        terminalreporter.section("container stack figures")
        for line in lines:
            terminalreporter.write_line(line)
