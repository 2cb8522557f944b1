"""Benchmark: what the blocking options cost, and what they save.

1. **The filter lists** (EasyList for block_ads, EasyPrivacy for block_trackers): for each,
   in a fresh Python process, the seconds to compile it (``engines.blocking.filter_engine``)
   and the resident memory it adds: what each worker process pays once, on the first job
   that asks for the list.
2. **The corpus** (bench/corpus.py: real pages of Python's docs, on 127.0.0.1): shots/s of
   the playwright engine at concurrency 2 with ``block_ads`` off and on, in rounds that
   alternate (off on on off), after a warm-up shot of each so that the list's compile is
   not counted. Every request of these pages is matched and let go: the cost of matching.
3. **Third-party requests**: a local page that loads scripts and images from 12 ad and
   tracker hosts (real names that EasyList and EasyPrivacy list, given the page server's
   address with ``resolve``: none is looked up), each answered after ``--latency-ms`` as a
   remote server would be. Shots/s with ``block_ads`` + ``block_trackers`` off and on.

    .venv/bin/python bench/blocking.py                    # about a minute and a half
    .venv/bin/python bench/blocking.py --jobs 30 --latency-ms 200
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

from corpus import Corpus
from machine import describe

from distshot.core.contracts import Engine, EngineConfig
from distshot.core.models import ShotRequest
from distshot.core.options import DEFAULT_OPTIONS, parse_options
from distshot.engines.blocking import DEFAULT_LISTS, list_path
from distshot.plugins.manager import get_registry

#: (host, what it serves): the ad hosts are in EasyList, the trackers in EasyPrivacy. None is
#: on Chromium's HSTS preload list (whose http:// would become https://, which this server
#: does not speak): the "off" run's request count shows every one answered.
THIRD_PARTIES = (
    ("ib.adnxs.com", "/ut/v3/prebid.js"),
    ("c.amazon-adsystem.com", "/aax2/apstag.js"),
    ("ads.pubmatic.com", "/AdServer/js/pwt.js"),
    ("cdn.taboola.com", "/libtrc/site/loader.js"),
    ("widgets.outbrain.com", "/outbrain.js"),
    ("sb.scorecardresearch.com", "/beacon.js"),
    ("static.chartbeat.com", "/js/chartbeat.js"),
    ("mc.yandex.ru", "/metrika/tag.js"),
    ("www.clarity.ms", "/tag/abc"),
    ("static.criteo.net", "/js/ld/publishertag.js"),
    ("cdn.segment.com", "/analytics.js/v1/x/analytics.min.js"),
    ("js.hs-analytics.net", "/analytics/1/1.js"),
)
FIRST_PARTY = "news.example"
#: Per host: scripts and images, each with its own query (no cache hit between them).
SCRIPTS_PER_HOST, IMAGES_PER_HOST = 3, 2

_MEASURE_LIST = """
import json, resource, sys, time
from distshot.engines.blocking import filter_engine
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20
before = rss(); started = time.perf_counter()
filter_engine(sys.argv[1])
print(json.dumps({"seconds": time.perf_counter() - started, "rss_mib": rss() - before}))
"""


def measure_lists() -> dict[str, dict[str, float]]:
    figures = {}
    for kind in DEFAULT_LISTS:
        path = list_path(kind, None)
        out = subprocess.run(
            [sys.executable, "-c", _MEASURE_LIST, path], capture_output=True, text=True, check=True
        )
        figures[kind] = json.loads(out.stdout)
    return figures


class _ThirdParty(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    latency: ClassVar[float] = 0.1
    served: ClassVar[dict[str, int]] = {}
    lock: ClassVar[threading.Lock] = threading.Lock()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        host = self.headers.get("Host", "").rsplit(":", 1)[0]
        if host == FIRST_PARTY:
            body, ctype = page(self.server.server_address[1]).encode(), "text/html"
        else:
            with self.lock:
                self.served[host] = self.served.get(host, 0) + 1
            time.sleep(self.latency)  # a remote server's answer
            if "img" in self.path:
                body, ctype = _GIF, "image/gif"
            else:
                body, ctype = b"void 0;\n", "text/javascript"
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)


_GIF = bytes.fromhex(
    "47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b"
)


def page(port: int) -> str:
    parts = ["<!doctype html><title>news</title><h1>A news page</h1><p>Text.</p>"]
    for host, path in THIRD_PARTIES:
        for n in range(SCRIPTS_PER_HOST):
            parts.append(f"<script async src='http://{host}:{port}{path}?n={n}'></script>")
        for n in range(IMAGES_PER_HOST):
            parts.append(f"<img src='http://{host}:{port}/img/p.gif?n={n}' width=1 height=1>")
    return "\n".join(parts)


async def shots_per_second(
    engine: Engine, requests: list[ShotRequest], concurrency: int = 2
) -> tuple[float, int]:
    """Shots/s of ``requests`` at ``concurrency``, and how many requests were blocked."""
    gate = asyncio.Semaphore(concurrency)
    blocked = 0

    async def one(request: ShotRequest) -> None:
        nonlocal blocked
        async with gate:
            capture = await engine.capture(request)
            blocked += capture.blocked or 0

    started = time.perf_counter()
    await asyncio.gather(*(one(r) for r in requests))
    return len(requests) / (time.perf_counter() - started), blocked


def requests_for(urls: list[str], options: dict[str, Any]) -> list[ShotRequest]:
    opts = parse_options(options, DEFAULT_OPTIONS)
    return [
        ShotRequest(id=f"b{i}", line=i, url=url, options=opts, allow_private=True)
        for i, url in enumerate(urls)
    ]


async def alternate(
    engine: Engine, urls: list[str], base: dict[str, Any], on: dict[str, Any]
) -> dict[str, Any]:
    """off, on, on, off rounds; shots/s of each mode over its two rounds."""
    modes = {"off": base, "on": {**base, **on}}
    for options in modes.values():  # warm-up: the browser, the lane, the list's compile
        await engine.capture(requests_for(urls[:1], options)[0])
    rates: dict[str, list[float]] = {"off": [], "on": []}
    blocked = {"off": 0, "on": 0}
    for mode in ("off", "on", "on", "off"):
        rate, count = await shots_per_second(engine, requests_for(urls, modes[mode]))
        rates[mode].append(rate)
        blocked[mode] += count
    return {
        mode: {
            "shots_per_s": round(sum(r) / len(r), 2),
            "rounds": [round(x, 2) for x in r],
            "blocked_per_shot": round(blocked[mode] / (2 * len(urls)), 1),
        }
        for mode, r in rates.items()
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {"lists": measure_lists()}
    engine = get_registry().create_engine("playwright", EngineConfig(concurrency=2))
    await engine.open()
    try:
        with Corpus() as corpus:
            results["machine"] = describe()
            urls = corpus.urls(args.pages)
            results["corpus"] = await alternate(engine, urls, {}, {"block_ads": True})
        _ThirdParty.latency = args.latency_ms / 1000
        server = ThreadingHTTPServer(("127.0.0.1", 0), _ThirdParty)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        port = server.server_address[1]
        hosts = [FIRST_PARTY, *(host for host, _ in THIRD_PARTIES)]
        pins = {"resolve": [f"{host}:{port}:127.0.0.1" for host in hosts]}
        urls = [f"http://{FIRST_PARTY}:{port}/?job={i}" for i in range(args.jobs)]
        on = {"block_ads": True, "block_trackers": True}
        results["third_party"] = await alternate(engine, urls, pins, on)
        results["third_party"]["requests_per_page"] = len(THIRD_PARTIES) * (
            SCRIPTS_PER_HOST + IMAGES_PER_HOST
        )
        results["third_party"]["hosts_answered"] = len(_ThirdParty.served)
        results["third_party"]["latency_ms"] = args.latency_ms
        server.shutdown()
    finally:
        await engine.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=20, help="corpus pages per round [20]")
    parser.add_argument("--jobs", type=int, default=12, help="third-party page shots per round")
    parser.add_argument("--latency-ms", type=int, default=100, help="third parties' latency")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args)), indent=2))


if __name__ == "__main__":
    main()
