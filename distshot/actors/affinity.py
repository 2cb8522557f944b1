"""Pin a worker process's threads to one CPU core that no other worker process has claimed.

Why: a worker process is one interpreter. Its threads (Dramatiq's consumer and worker
threads, the event loop) pass every job along under one GIL, so together they never use
more than one core; left to float, they run on different cores, and every hand-off wakes a
thread on another core. With the null engine, a floating worker process spent 33% more CPU
per job than a pinned one (docs/benchmarks.md, "Pipeline: worker CPU pinning").

Each process claims a core by locking one file per core for its whole life; the kernel
drops the lock when the process dies, however it dies, so a crashed worker's core is free
for the next one. A process that finds every core claimed stays unpinned: with more worker
processes than cores, the scheduler must be free to share them out.

Only the worker's own threads are pinned, never its children's: a child inherits the
affinity of the thread that starts it, which is why ``pin_cpu = "auto"`` pins only workers
whose engine starts no processes (a browser would be held to one core).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

logger = logging.getLogger("distshot.worker")

#: The claimed core's lock file, open (and so locked) until this process exits.
_held: int | None = None


def lock_folder() -> Path:
    """One folder per user (another user's lock files may not be ours to open)."""
    override = os.environ.get("DISTSHOT_CPU_LOCK_DIR")
    if override:
        return Path(override)
    return Path(tempfile.gettempdir()) / f"distshot-cpus-{os.getuid()}"


def claim_core(cpus: Iterable[int], folder: Path) -> tuple[int, int] | None:
    """(core, lock fd) for the first of ``cpus`` no live process holds, or None.

    Children do not inherit the fd (Python opens files non-inheritable, PEP 446): a
    browser holding it would keep the core claimed after its worker died."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    for cpu in sorted(cpus):
        fd = os.open(folder / f"cpu{cpu}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return cpu, fd
    return None


def pin_threads(cpu: int) -> None:
    """Pin every thread of this process to ``cpu`` (Linux affinity is per thread; threads
    started later inherit it from the thread that starts them)."""
    for tid in os.listdir("/proc/self/task"):
        with contextlib.suppress(ProcessLookupError):  # a thread that just ended
            os.sched_setaffinity(int(tid), {cpu})


def pin_to_own_core() -> int | None:
    """Claim a free core and pin this process's threads to it; the core, or None."""
    global _held
    if _held is not None:
        return None  # already pinned
    if not hasattr(os, "sched_setaffinity"):
        return None  # not Linux
    allowed = os.sched_getaffinity(0)
    if len(allowed) < 2:
        return None  # nothing to gain on one core
    try:
        claim = claim_core(allowed, lock_folder())
    except OSError as exc:
        logger.warning("not pinning this worker to a core: %s", exc)
        return None
    if claim is None:
        logger.info("every core has a worker process pinned to it; this one floats")
        return None
    cpu, _held = claim
    pin_threads(cpu)
    return cpu


def should_pin(setting: str, engine_starts_processes: bool) -> bool:
    if setting == "auto":
        return not engine_starts_processes
    return setting == "on"
