"""Core claims for pinned worker processes, and the pin_cpu setting.

The workers themselves (pinned threads, free threads for browser engines) are tested
against RabbitMQ in test_distributed.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from distshot.actors.affinity import claim_core, should_pin
from distshot.core.config import load_settings
from distshot.core.errors import ConfigError
from distshot.plugins.manager import get_registry


def test_each_claim_gets_a_free_core_until_none_is_left(tmp_path: Path) -> None:
    first = claim_core({3, 1}, tmp_path)
    second = claim_core({3, 1}, tmp_path)
    assert first is not None and second is not None
    assert (first[0], second[0]) == (1, 3)  # lowest first
    assert claim_core({3, 1}, tmp_path) is None
    os.close(first[1])  # its holder is gone: the core is free again
    again = claim_core({3, 1}, tmp_path)
    assert again is not None and again[0] == 1
    for _, fd in (second, again):
        os.close(fd)


def test_a_killed_processs_core_is_free_again_and_its_children_hold_no_claim(
    tmp_path: Path,
) -> None:
    # The claimant starts a long-lived child that keeps every inheritable fd, then is
    # killed: the child must not hold the lock (it never gets the fd), or a crashed
    # worker's browser would keep its core claimed.
    script = (
        "import subprocess, sys, time\n"
        "from pathlib import Path\n"
        "from distshot.actors.affinity import claim_core\n"
        f"claim = claim_core({{0}}, Path({str(tmp_path)!r}))\n"
        "child = subprocess.Popen(['sleep', '60'], close_fds=False)\n"
        "print(claim[0], child.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    claimant = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert claimant.stdout is not None
    cpu, child = (int(word) for word in claimant.stdout.readline().split())
    try:
        assert cpu == 0
        assert claim_core({0}, tmp_path) is None  # held by the live claimant
        claimant.send_signal(signal.SIGKILL)
        claimant.wait(timeout=10)
        freed = claim_core({0}, tmp_path)
        assert freed is not None and freed[0] == 0
        os.close(freed[1])
    finally:
        claimant.kill()
        os.kill(child, signal.SIGKILL)  # not ours to wait for: init reaps it


def test_auto_pins_only_engines_that_start_no_processes() -> None:
    registry = get_registry()
    starts = {
        name: registry.engine_entry(name).capabilities.starts_processes
        for name in ("null", "playwright", "pyppeteer", "selenium")
    }
    assert starts == {"null": False, "playwright": True, "pyppeteer": True, "selenium": True}
    assert should_pin("auto", False) and not should_pin("auto", True)
    assert should_pin("on", True) and should_pin("on", False)
    assert not should_pin("off", False)


def test_pin_cpu_setting(tmp_path: Path) -> None:
    assert load_settings(env={}).pin_cpu == "auto"
    assert load_settings(env={"DISTSHOT_PIN_CPU": "OFF"}).pin_cpu == "off"
    config = tmp_path / "distshot.toml"
    config.write_text("pin_cpu = true\n")
    assert load_settings(str(config), env={}).pin_cpu == "on"
    with pytest.raises(ConfigError, match="pin_cpu must be one of auto, on, off, not 'yes'"):
        load_settings(env={"DISTSHOT_PIN_CPU": "yes"})
