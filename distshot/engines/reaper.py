"""Kills the browsers of a worker that died without closing them.

Playwright's Chromium exits by itself when its driver's pipe closes. A Chromium started by
chromedriver (the selenium engine) or by pyppeteer does not: when the worker process is
killed with SIGKILL (or by the kernel's OOM killer) nothing closes them, and chromedriver,
Chromium and its renderers run on, orphaned, until the machine restarts.

The reaper is a small process started by the engine, in a session of its own so that a
signal to the worker's process group does not take it along. The engine registers every
browser (or driver) process it starts on the reaper's stdin (``+PID START``) and unregisters
it once it has closed it (``-PID``). When the reaper's stdin ends, the worker is gone,
however it ended (the kernel closes the pipe of a dead process), and the reaper kills the
process tree of everything still registered, then exits. The start time guards against a
recycled pid: a process that is not the one registered is left alone.

    python -m distshot.engines.reaper        # run by ``Reaper``, not by hand
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
from collections.abc import Iterable
from pathlib import Path

from .chromium import kill_process_tree

_EXIT_WAIT = 5.0


def start_time(pid: int) -> str | None:
    """A process's start time (clock ticks since boot), or None if it is gone: with the pid,
    it names one process for good."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


class Reaper:
    """The engine's side: started on first ``watch``, stopped by ``close``. Thread-safe."""

    def __init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    def watch(self, pid: int) -> None:
        started = start_time(pid)
        if started is not None:
            self._send(f"+{pid} {started}\n", start=True)

    def forget(self, pid: int) -> None:
        self._send(f"-{pid}\n", start=False)

    def close(self) -> None:
        """Stop the reaper; it kills whatever is still registered (nothing, after a clean
        close) and exits."""
        with self._lock:
            process, self._process = self._process, None
        if process is None:
            return
        with contextlib.suppress(OSError):
            assert process.stdin is not None
            process.stdin.close()
        try:
            process.wait(_EXIT_WAIT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def _send(self, line: str, *, start: bool) -> None:
        with self._lock:
            if self._process is None or self._process.poll() is not None:
                if not start:
                    return
                self._process = subprocess.Popen(
                    [sys.executable, "-m", "distshot.engines.reaper"],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                    close_fds=True,
                )
            stdin = self._process.stdin
            assert stdin is not None
            try:
                stdin.write(line.encode())
                stdin.flush()
            except OSError:
                # The reaper died (killed by hand?): the next watch starts another one.
                self._process = None


def serve(commands: Iterable[str]) -> None:
    """The reaper process: follow the registrations until the pipe ends, then kill."""
    watched: dict[int, str] = {}
    for line in commands:
        op, fields = line[:1], line[1:].split()
        if not fields or not fields[0].isdigit():
            continue
        if op == "+" and len(fields) == 2:
            watched[int(fields[0])] = fields[1]
        elif op == "-":
            watched.pop(int(fields[0]), None)
    for pid, started in watched.items():
        if start_time(pid) == started:
            kill_process_tree(pid)


if __name__ == "__main__":
    serve(sys.stdin)
