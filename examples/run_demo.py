"""`make demo`: serve examples/site/ on 127.0.0.1 and capture every page into shots/.

The page list is examples/urls-demo.txt with ``{base}`` replaced by the local server's
address. Loopback is a private address, so the demo passes --allow-private.
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
    urls = out / "demo-urls.txt"
    template = (HERE / "urls-demo.txt").read_text(encoding="utf-8")
    urls.write_text(template.replace("{base}", base), encoding="utf-8")
    print(f"serving examples/site/ at {base}", flush=True)
    distshot = Path(sys.executable).with_name("distshot")
    command = [str(distshot), "shoot", str(urls), "-o", str(out), "--allow-private", "--full-page"]
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
    print(f"\nimages:   {', '.join(folders) or out}/  (one folder per run)")
    print(f"manifest: {manifest}")
    return status


if __name__ == "__main__":
    sys.exit(main())
