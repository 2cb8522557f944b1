"""The Network options end to end, through `distshot shoot` and real Chromium: ``resolve``
(made-up names given loopback addresses, never looked up in DNS) and ``proxy``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import by_line, read_manifest, run_cli, start_server, stop_server

from distshot.core.config import load_settings
from distshot.core.errors import ConfigError
from distshot.testing.proxies import start_proxy, stop_proxy


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


SECRET, WORKER_SECRET, WRONG = "req-s3cret-9f2", "worker-s3cret-4c1", "wrong-s3cret-77a"


def test_proxies_per_request_and_the_workers_default_keep_their_passwords(
    tmp_path: Path,
) -> None:
    # Given a page server on 127.0.0.1, an HTTP CONNECT proxy on 127.0.0.1 and, as the
    # worker's default, a SOCKS5 proxy on 127.0.0.2, both wanting a user and password;
    # the policy admits 127.0.0.1 only
    pages = start_server("127.0.0.1")
    http = start_proxy("http", ("shooter", SECRET))
    worker = start_proxy("socks5", ("fleet", WORKER_SECRET), host="127.0.0.2")
    try:
        page = f"{pages.base}/echo"
        lines = [
            {"url": f"{page}?via=worker"},
            {"url": f"{page}?via=request", "proxy": http.url("shooter", SECRET)},
            {"url": f"{page}?via=wrong", "proxy": http.url("shooter", WRONG)},
            # a request's proxy is a destination the policy judges: 127.0.0.2 is refused
            {"url": f"{page}?via=refused", "proxy": f"http://shooter:{SECRET}@127.0.0.2:9"},
        ]
        urls = tmp_path / "u.jsonl"
        urls.write_text("".join(json.dumps(line) + "\n" for line in lines))
        # When they are shot
        result = run_cli(
            "shoot",
            str(urls),
            "-o",
            str(tmp_path / "out"),
            env={
                "DISTSHOT_ALLOW_NETWORKS": "127.0.0.1/32",
                "DISTSHOT_MAX_ATTEMPTS": "1",
                "DISTSHOT_PROXY": worker.url("fleet", WORKER_SECRET),
            },
        )
        manifest = (tmp_path / "out" / "manifest.jsonl").read_text()
        records = by_line(read_manifest(tmp_path / "out" / "manifest.jsonl"))
        # Then a line without a proxy went through the worker's (trusted: not judged), a
        # line with its own through that one, each with its credentials
        # (the error first: a whole record and stderr get cut short in CI's summary)
        for line in (1, 2):
            assert records[line]["status"] == "ok", (line, records[line]["error"], result.stderr)
        assert worker.tunnels.opened == [f"127.0.0.1:{pages.server_address[1]}"]
        assert http.tunnels.opened == [f"127.0.0.1:{pages.server_address[1]}"]
        vias = [r["query"].get("via") for r in pages.seen.requests if r["path"] == "/echo"]
        assert sorted(vias) == ["request", "worker"]
        # a wrong password is a ProxyError naming the proxy, and the refused proxy is
        # refused before any browser work
        assert records[3]["status"] == "failed"
        assert records[3]["error"]["type"] == "ProxyError"
        assert (
            f"proxy http://shooter@127.0.0.1:{http.port} rejected the credentials"
            in (records[3]["error"]["message"])
        )
        assert http.tunnels.auth_failures >= 1
        assert records[4]["status"] == "rejected"
        assert records[4]["error"]["type"] == "BlockedAddress"
        assert records[4]["error"]["message"].startswith("proxy http://shooter@127.0.0.2:9: ")
        # and no password is anywhere in what distshot wrote or printed
        for secret in (SECRET, WORKER_SECRET, WRONG):
            for name, text in (
                ("manifest", manifest),
                ("stdout", result.stdout),
                ("stderr", result.stderr),
            ):
                assert secret not in text, (secret, name)
    finally:
        stop_server(pages)
        stop_proxy(http)
        stop_proxy(worker)


def test_the_workers_proxy_setting_is_checked_and_never_shown() -> None:
    env = {"DISTSHOT_PROXY": f"socks5://fleet:{WORKER_SECRET}@proxy.internal:1080"}
    settings = load_settings(env=env)
    assert settings.engine_config().proxy == env["DISTSHOT_PROXY"]
    assert WORKER_SECRET not in repr(settings) + repr(settings.engine_config())
    with pytest.raises(ConfigError) as info:
        load_settings(env={"DISTSHOT_PROXY": f"gopher://fleet:{WORKER_SECRET}@proxy.internal"})
    assert WORKER_SECRET not in info.value.message
    assert "gopher://fleet:***@proxy.internal" in info.value.message


def test_a_failed_messages_log_line_names_it_by_id_not_by_its_body(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import logging

    import dramatiq

    from distshot.actors import redaction

    # Given a request message carrying a proxy password, and the worker's log redaction
    redaction.install()
    options = {"proxy": f"http://shooter:{SECRET}@127.0.0.1:3128"}
    message = dramatiq.Message(
        queue_name="distshot.playwright",
        actor_name="capture",
        args=({"id": "b:1", "line": 1, "url": "https://a.test/", "options": options},),
        kwargs={},
        options={},
    )
    # When Dramatiq's worker logs the message's failure, as it does
    with caplog.at_level(logging.ERROR, logger="dramatiq"):
        logging.getLogger("dramatiq.worker.WorkerThread").error(
            "Failed to process message %s with unhandled exception.", message
        )
    # Then the line names the message by its id, and holds no password
    assert message.message_id in caplog.text
    assert SECRET not in caplog.text
