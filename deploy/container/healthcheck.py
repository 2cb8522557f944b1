#!/usr/bin/python3
"""The image's HEALTHCHECK. Exit 0 healthy, 1 unhealthy (one line on stdout says why).

With DISTSHOT_HEALTH_URL set (serve: http://127.0.0.1:8000/healthz; a worker with a metrics
endpoint: its /metrics), a GET must answer 2xx within DISTSHOT_HEALTH_TIMEOUT seconds (5).
Without it, the container's main process (tini's child: distshot, or the Dramatiq worker it
became) must be alive and neither a zombie nor stopped.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request


def probe(url: str, timeout: float) -> tuple[bool, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return 200 <= response.status < 300, f"{url}: HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        return False, f"{url}: HTTP {exc.code}"
    except (OSError, ValueError) as exc:
        return False, f"{url}: {exc}"


def stat(pid: str) -> tuple[str, str, int] | None:
    """(command name, state letter, parent pid) of a process, None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        return None
    name = text[text.index("(") + 1 : text.rindex(")")]
    state, ppid = text[text.rindex(")") + 2 :].split()[:2]
    return name, state, int(ppid)


def main_process() -> tuple[bool, str]:
    init = stat("1")
    if init is None:
        return False, "no process 1"
    if init[0] != "tini":
        return init[1] not in "ZXT", f"process 1 ({init[0]}) state {init[1]}"
    me = str(os.getpid())
    for pid in filter(str.isdigit, os.listdir("/proc")):
        info = stat(pid)
        if info is not None and info[2] == 1 and pid != me:
            return info[1] not in "ZXT", f"main process {pid} ({info[0]}) state {info[1]}"
    return False, "tini has no child: the main process is gone"


def main() -> int:
    url = os.environ.get("DISTSHOT_HEALTH_URL", "").strip()
    if url:
        ok, why = probe(url, float(os.environ.get("DISTSHOT_HEALTH_TIMEOUT", "5")))
    else:
        ok, why = main_process()
    print(("healthy: " if ok else "unhealthy: ") + why)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
