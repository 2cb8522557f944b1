"""Chromium's failure texts become distshot's error types, transient or not (so the worker
retries what may pass and nothing else)."""

from __future__ import annotations

from pathlib import Path

import pytest

from distshot.core.errors import BrowserCrashed, NavigationTimeout, NetworkError, RedirectLoop
from distshot.engines.chromium import translate_error

URL = "https://site.test/"


@pytest.mark.parametrize(
    "code",
    [
        "ERR_CONNECTION_REFUSED",
        "ERR_CONNECTION_RESET",
        "ERR_CONNECTION_TIMED_OUT",
        "ERR_NAME_NOT_RESOLVED",
        "ERR_ADDRESS_UNREACHABLE",
        "ERR_EMPTY_RESPONSE",
        "ERR_TUNNEL_CONNECTION_FAILED",
        "ERR_SOMETHING_NEW",
    ],
)
def test_network_failures_that_may_pass_are_transient(code: str) -> None:
    error = translate_error(f"net::{code} at {URL}", URL)
    assert type(error) is NetworkError
    assert error.transient
    assert error.message == f"net::{code} at {URL}"


@pytest.mark.parametrize(
    "code",
    [
        "ERR_CERT_AUTHORITY_INVALID",
        "ERR_CERT_DATE_INVALID",
        "ERR_CERT_COMMON_NAME_INVALID",
        "ERR_SSL_PROTOCOL_ERROR",
        "ERR_SSL_VERSION_OR_CIPHER_MISMATCH",
        "ERR_UNSAFE_PORT",
    ],
)
def test_a_sites_broken_certificate_or_tls_is_permanent(code: str) -> None:
    error = translate_error(f"page.goto: net::{code} at {URL}\nCall log: ...", URL)
    assert type(error) is NetworkError
    assert not error.transient
    assert error.message == f"page.goto: net::{code} at {URL}"


def test_other_failures_keep_their_own_types() -> None:
    assert isinstance(translate_error("net::ERR_TOO_MANY_REDIRECTS", URL), RedirectLoop)
    assert isinstance(translate_error("Timeout 5000ms exceeded.", URL), NavigationTimeout)
    assert isinstance(translate_error("Target crashed", URL), BrowserCrashed)


def test_a_self_signed_site_fails_once_not_three_times(tmp_path: Path) -> None:
    """End to end: Chromium refuses the certificate; the record says so after one attempt
    (a transient error would have been tried max_attempts times, with backoff)."""
    import http.server
    import threading

    from conftest import read_manifest, run_cli
    from test_webhooks import _self_signed

    server_tls, _ = _self_signed(tmp_path)
    httpd = http.server.HTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    httpd.socket = server_tls.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        urls = tmp_path / "u.txt"
        urls.write_text(f"https://127.0.0.1:{httpd.server_address[1]}/\n")
        out = tmp_path / "out"
        result = run_cli("shoot", str(urls), "-o", str(out), "--allow-private")
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert result.returncode == 1, result.stderr
    (record,) = read_manifest(out / "manifest.jsonl")
    assert record["status"] == "failed"
    assert record["error"]["type"] == "NetworkError"
    assert "ERR_CERT" in record["error"]["message"]
    assert record["attempts"] == 1
