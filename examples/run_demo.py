"""`make demo`: serve examples/site/ on 127.0.0.1, capture every page into shots/, and
build the run's report (shots/report/index.html).

The page list is examples/urls-demo.txt (every page, full page), then
examples/urls-options.jsonl (capture controls: the home page in dark mode and on a phone,
one element of the gallery), with ``{base}`` replaced by the local server's address, in
one JSON Lines batch. Loopback is a private address, so the demo passes --allow-private.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> int:
    handler = functools.partial(QuietHandler, directory=str(HERE / "site"))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    out = ROOT / "shots"
    out.mkdir(exist_ok=True)
    urls = out / "demo-urls.jsonl"
    pages = [
        json.dumps({"url": line.replace("{base}", base), "full_page": True})
        for line in (HERE / "urls-demo.txt").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    options = (HERE / "urls-options.jsonl").read_text(encoding="utf-8").replace("{base}", base)
    urls.write_text("\n".join(pages) + "\n" + options, encoding="utf-8")
    print(f"serving examples/site/ at {base}", flush=True)
    distshot = Path(sys.executable).with_name("distshot")
    command = [str(distshot), "shoot", str(urls), "-o", str(out), "--allow-private"]
    print(
        "$ " + " ".join(command[:1] + [a.replace(str(ROOT) + "/", "") for a in command[1:]]),
        flush=True,
    )
    try:
        status = subprocess.call(command)
    finally:
        server.shutdown()
    manifest = out / "manifest.jsonl"
    lines = manifest.read_text(encoding="utf-8").splitlines() if manifest.exists() else []
    folders = sorted(
        {
            str(Path(record["location"].removeprefix("file://")).parent)
            for record in map(json.loads, lines)
            if record.get("location")
        }
    )
    asked = [json.loads(line) for line in urls.read_text(encoding="utf-8").splitlines()]
    for record in sorted(map(json.loads, lines), key=lambda r: r["line"]):
        options = {k: v for k, v in asked[record["line"] - 1].items() if k != "url"}
        where = Path(record["location"]).name if record.get("location") else record["error"]
        page = record["url"].replace(base, "")
        print(f"  {record['status']:<6} {page:<14} {json.dumps(options):<44} {where}")
    print(f"\nimages:   {', '.join(folders) or out}/  (one folder per run)")
    print(f"manifest: {manifest}")
    if lines:
        # The run's gallery: thumbnails, search, look-alike groups, every field.
        report = out / "report"
        subprocess.call([str(distshot), "report", str(manifest), "-o", str(report)])
    return status


if __name__ == "__main__":
    sys.exit(main())
