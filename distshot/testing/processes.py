"""Finding browser processes: leftovers after a run, or victims for a crash test.

Tests mark every process they start with ``DISTSHOT_TEST_TAG`` in the environment (children
inherit it, Chromium's included), so a leak is found by its tag even after its parent died.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from ..engines.chromium import process_tree

__all__ = ["browser_processes", "tagged_processes", "wait_no_processes"]

TAG_VARIABLE = "DISTSHOT_TEST_TAG"


def _stat(pid: str) -> tuple[str, str, int] | None:
    """(comm, state, ppid) of a live process, or None if it is gone."""
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return comm, fields[0], int(fields[1])


def tagged_processes(value: str, name: str = "chrom") -> list[int]:
    """Live (non-zombie) processes whose environment carries the tag and whose name matches
    (``chrom`` matches chromium and chromedriver)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        stat = _stat(entry.name)
        if stat is None or stat[1] == "Z" or name not in stat[0]:
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if f"{TAG_VARIABLE}={value}".encode() in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def wait_no_processes(value: str, timeout: float = 10.0, name: str = "chrom") -> list[int]:
    """Wait until no tagged process is left; return the survivors (empty if none)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not tagged_processes(value, name):
            return []
        time.sleep(0.2)
    return tagged_processes(value, name)


def browser_processes(root: int | None = None, name: str = "chrom") -> list[int]:
    """Live descendants of ``root`` (this process by default) whose name matches."""
    root = os.getpid() if root is None else root
    found = []
    for pid in process_tree(root)[1:]:
        stat = _stat(str(pid))
        if stat is not None and stat[1] != "Z" and name in stat[0]:
            found.append(pid)
    return sorted(found)
