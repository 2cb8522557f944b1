"""The README's picture of a report, taken by distshot itself (`make report-screenshot`).

Serves examples/site/ on 127.0.0.1, shoots its pages at three widths plus one URL that
refuses (so the report has look-alikes and a failure), builds the report, serves the report
folder on 127.0.0.1 and shoots its page into docs/report.png. Everything stays on loopback.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import sys
import tempfile
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WIDTHS = (1280, 1024, 800)


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def serve(folder: Path) -> tuple[ThreadingHTTPServer, str]:
    handler = functools.partial(QuietHandler, directory=str(folder))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def distshot(*args: str) -> None:
    command = [str(Path(sys.executable).with_name("distshot")), *args]
    print("$ distshot " + " ".join(args), flush=True)
    status = subprocess.call(command)
    if status not in (0, 1):  # 1: the refused URL is a failed record, as intended
        raise SystemExit(f"distshot {args[0]} exited with {status}")


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="distshot-report-shot-"))
    site, base = serve(HERE / "site")
    try:
        pages = [
            line.replace("{base}", base)
            for line in (HERE / "urls-demo.txt").read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.startswith("#")
        ]
        rows = ["url,width"] + [f"{url},{width}" for width in WIDTHS for url in pages]
        rows.append("http://127.0.0.1:9/unreachable,1280")
        (work / "urls.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
        distshot("shoot", str(work / "urls.csv"), "-o", str(work / "shots"), "--allow-private")
        distshot(
            "report",
            str(work / "shots" / "manifest.jsonl"),
            "-o",
            str(work / "report"),
            "--title",
            "examples/site at three widths",
        )
        report, report_base = serve(work / "report")
        try:
            _shoot_report(work, report_base)
        finally:
            report.shutdown()
    finally:
        site.shutdown()
    shutil.rmtree(work, ignore_errors=True)
    return 0


def _shoot_report(work: Path, report_base: str) -> None:
    urls = work / "report-url.txt"
    urls.write_text(f"{report_base}/index.html\n", encoding="utf-8")
    out = work / "picture"
    distshot(
        "shoot", str(urls), "-o", str(out), "--allow-private", "--width", "1280",
        "--height", "860", "--wait-for", ".card img", "--delay", "500",
    )  # fmt: skip
    images = sorted(out.glob("*/*.png"))
    if len(images) != 1:
        raise SystemExit(f"expected one picture of the report, found {len(images)}")
    dest = ROOT / "docs" / "report.png"
    shutil.copyfile(images[0], dest)
    print(f"wrote {dest.relative_to(ROOT)}")


if __name__ == "__main__":
    sys.exit(main())
