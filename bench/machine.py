"""What the benchmarks ran on, as markdown lines: CPU, memory, load, Chromium, Python, packages.

throughput.py and memory.py print this before their figures; docs/benchmarks.md quotes it.

    .venv/bin/python bench/machine.py
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path

BROKER = os.environ.get("DISTSHOT_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024 / 1024
    return 0.0


def _command(*args: str) -> str:
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return (out.stdout.strip() or out.stderr.strip() or "unknown").splitlines()[-1]


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _debian() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return platform.platform()


def rabbitmq_version() -> str:
    try:
        import pika

        connection = pika.BlockingConnection(pika.URLParameters(BROKER))
        version = connection._impl.server_properties.get("version", b"?")
        connection.close()
        return version.decode() if isinstance(version, bytes) else str(version)
    except Exception:
        return "not reachable"


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f}"


def describe(browser: str = "/usr/bin/chromium") -> list[str]:
    from corpus import DOC_PACKAGE, doc_version

    return [
        f"- CPU: {_cpu_model()}, {os.cpu_count()} cores; memory {_memory_gib():.1f} GiB",
        f"- OS: {_debian()}, kernel {platform.release()}",
        f"- load average at start (1, 5, 15 min): {load()}",
        f"- browser: {_command(browser, '--version')} ({browser})",
        f"- Python {platform.python_version()}; playwright {_version('playwright')}, "
        f"dramatiq {_version('dramatiq')}, pika {_version('pika')}, "
        f"distshot {_version('distshot')}",
        f"- RabbitMQ {rabbitmq_version()}; corpus {DOC_PACKAGE} {doc_version()}",
    ]


if __name__ == "__main__":
    print("\n".join(describe()))
