"""The Network options end to end, through `distshot shoot` and real Chromium: ``resolve``
(made-up names given loopback addresses, never looked up in DNS) and ``proxy``."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import by_line, read_manifest, run_cli, start_server, stop_server


def test_resolve_shoots_made_up_names_from_their_pinned_addresses(tmp_path: Path) -> None:
    # Given a page server on 127.0.0.1 (admitted by the policy) and one on 127.0.0.2
    # (loopback, refused), and names no DNS knows: shop.example, cdn.example, ads.example
    public, internal = start_server("127.0.0.1"), start_server("127.0.0.2")
    port, internal_port = public.server_address[1], internal.server_address[1]
    try:
        public.variants["page"] = (
            f"<title>shop</title><img src='http://cdn.example:{port}/solid.html?cdn'>"
        )
        lines = [
            json.dumps({"url": f"http://shop.example:{port}/v/page"}),
            # a line of its own pins ads.example to the refused address
            json.dumps(
                {
                    "url": f"http://ads.example:{internal_port}/secret",
                    "resolve": [f"ads.example:{internal_port}:127.0.0.2"],
                }
            ),
        ]
        urls = tmp_path / "u.jsonl"
        urls.write_text("\n".join(lines) + "\n")
        # When they are shot with --resolve and a policy that admits 127.0.0.1 only
        result = run_cli(
            "shoot",
            str(urls),
            "-o",
            str(tmp_path / "out"),
            "--resolve",
            f"shop.example:{port}:127.0.0.1",
            "--resolve",
            f"cdn.example:{port}:127.0.0.1",
            env={"DISTSHOT_ALLOW_NETWORKS": "127.0.0.1/32", "DISTSHOT_MAX_ATTEMPTS": "1"},
        )
        records = by_line(read_manifest(tmp_path / "out" / "manifest.jsonl"))
        # Then the page and its sub-resource came from the pinned address, under their names
        assert records[1]["status"] == "ok", (records[1], result.stderr)
        assert records[1]["title"] == "shop"
        hosts = {
            r["path"]: {k.lower(): v for k, v in r["headers"].items()}["host"]
            for r in public.seen.requests
        }
        assert hosts["/v/page"] == f"shop.example:{port}"
        assert hosts["/solid.html"] == f"cdn.example:{port}"
        # and a pinned address the policy refuses is refused before any browser work
        assert records[2]["status"] == "rejected"
        assert records[2]["error"]["type"] == "BlockedAddress"
        assert "ads.example resolves to 127.0.0.2" in records[2]["error"]["message"]
        assert internal.seen.requests == []
    finally:
        stop_server(public)
        stop_server(internal)
