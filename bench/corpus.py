"""The benchmark page corpus, served on 127.0.0.1: a real documentation site plus synthetic pages.

The real pages are Debian's python3.11-doc (Sphinx HTML: stylesheets, nine scripts, images);
60 of its library/*.html pages are picked deterministically (evenly spaced through the sorted
list), so every contender and every run shoots the same pages. The synthetic pages are
distshot's conformance pages (distshot/testing/pages), under /synthetic/.

The server is a threaded HTTP/1.1 server (keep-alive, no request log) running in its own
process, so that serving pages never competes for the GIL with a contender measured in the
benchmark's own process.

    .venv/bin/python bench/corpus.py                  # install if missing, serve, list the URLs
    .venv/bin/python bench/corpus.py --pages 10 --write urls.txt   # serve, and write a urls file
    .venv/bin/python bench/corpus.py --install        # only make sure python3.11-doc is there
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import shutil
import subprocess
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DOC_PACKAGE = "python3.11-doc"
DOC_ROOT = Path("/usr/share/doc/python3.11/html")
SYNTHETIC_ROOT = ROOT / "distshot" / "testing" / "pages"
#: Static conformance pages that render the same every time (no timers, dialogs or pop-ups).
SYNTHETIC_PAGES = ("simple.html", "solid.html", "cookies.html")
DEFAULT_PAGES = 60


def ensure_installed() -> None:
    """Install the documentation package with apt-get when its pages are missing."""
    if (DOC_ROOT / "library").is_dir():
        return
    print(f"installing {DOC_PACKAGE} (apt-get)", file=sys.stderr, flush=True)
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [*sudo, "apt-get", "install", "-y", "-q", DOC_PACKAGE]
    if subprocess.run(install, env=env, stdout=subprocess.DEVNULL).returncode != 0:
        subprocess.run([*sudo, "apt-get", "update", "-q"], env=env, stdout=subprocess.DEVNULL)
        subprocess.run(install, env=env, stdout=subprocess.DEVNULL, check=True)
    if not (DOC_ROOT / "library").is_dir():
        raise SystemExit(f"{DOC_PACKAGE} is installed but {DOC_ROOT}/library is missing")


def doc_version() -> str:
    """The installed package version, for the benchmark's header."""
    if shutil.which("dpkg-query") is None:
        return "unknown"
    result = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Version}", DOC_PACKAGE], capture_output=True, text=True
    )
    return result.stdout.strip() or "not installed"


def select_pages(count: int = DEFAULT_PAGES) -> list[str]:
    """``count`` paths under the doc root, evenly spaced through sorted library/*.html."""
    pages = sorted(p.name for p in (DOC_ROOT / "library").glob("*.html"))
    if count > len(pages):
        raise SystemExit(f"only {len(pages)} pages in {DOC_ROOT}/library, asked for {count}")
    step = len(pages) / count
    return [f"library/{pages[int(i * step)]}" for i in range(count)]


class Handler(SimpleHTTPRequestHandler):
    """Static files from the doc root, and /synthetic/* from distshot's conformance pages."""

    protocol_version = "HTTP/1.1"  # keep-alive, as a real web server

    def translate_path(self, path: str) -> str:
        if path.startswith("/synthetic/"):
            name = Path(path.split("?", 1)[0].split("#", 1)[0]).name
            return str(SYNTHETIC_ROOT / name)
        return super().translate_path(path)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128


def serve_forever(port: int = 0, watch_stdin: bool = False) -> None:
    """Serve until killed; print the base URL on the first line of stdout."""
    handler = functools.partial(Handler, directory=str(DOC_ROOT))
    server = Server(("127.0.0.1", port), handler)
    print(f"http://127.0.0.1:{server.server_address[1]}", flush=True)
    if watch_stdin:
        # The parent holds our stdin open: when it goes (even killed), so do we.
        threading.Thread(target=_exit_on_eof, daemon=True).start()
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


def _exit_on_eof() -> None:
    sys.stdin.read()
    os._exit(0)


class Corpus:
    """The corpus server in a child process: ``with Corpus() as corpus: corpus.urls()``."""

    def __init__(self, port: int = 0) -> None:
        self.port = port
        self.process: subprocess.Popen[str] | None = None
        self.base = ""

    def __enter__(self) -> Corpus:
        ensure_installed()
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--serve", "--port", str(self.port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.base = self.process.stdout.readline().strip()
        if not self.base.startswith("http://"):
            self.close()
            raise SystemExit("the corpus server did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            for stream in (self.process.stdin, self.process.stdout):
                if stream is not None:
                    stream.close()
            self.process = None

    def urls(self, count: int = DEFAULT_PAGES) -> list[str]:
        return [f"{self.base}/{path}" for path in select_pages(count)]

    def synthetic_urls(self) -> list[str]:
        return [f"{self.base}/synthetic/{name}" for name in SYNTHETIC_PAGES]


def write_urls(path: Path, urls: list[str]) -> Path:
    path.write_text("".join(f"{url}\n" for url in urls))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=DEFAULT_PAGES, help="real pages [60]")
    parser.add_argument("--port", type=int, default=0, help="listen port [any free one]")
    parser.add_argument("--write", type=Path, help="write the URLs (real + synthetic) here")
    parser.add_argument("--install", action="store_true", help="install the package and exit")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)  # the child
    args = parser.parse_args()
    if args.serve:
        serve_forever(args.port, watch_stdin=True)
        return
    ensure_installed()
    if args.install:
        print(f"{DOC_PACKAGE} {doc_version()} at {DOC_ROOT}")
        return
    with Corpus(args.port) as corpus:
        urls = corpus.urls(args.pages) + corpus.synthetic_urls()
        if args.write:
            write_urls(args.write, urls)
        print("\n".join(urls))
        print(f"serving {corpus.base} ({DOC_PACKAGE} {doc_version()}); Ctrl-C stops", flush=True)
        try:
            assert corpus.process is not None
            corpus.process.wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
