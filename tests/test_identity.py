"""Identity options (cookies, storage_state, http_credentials, locale, geolocation,
javascript_enabled) and the secrets rules: a secret never shows in anything distshot writes,
two sessions never share a cached image, ``@secrets/NAME`` is read on the worker, and a lane
that held an identity is not reused. (Each option's effect on every engine is in the
conformance suite.)"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from pathlib import Path
from typing import Any

import pytest
from conftest import PageServer, read_manifest, run_cli

from distshot.actors import redaction
from distshot.core import secretvalues
from distshot.core.contracts import EngineConfig
from distshot.core.errors import InvalidOption
from distshot.core.identitykinds import Cookie, Credentials, StorageState
from distshot.core.models import ShotRequest
from distshot.core.options import DEFAULT_OPTIONS, options_json_schema, parse_options
from distshot.core.secretvalues import SecretRef
from distshot.core.service import capture_request
from distshot.engines import lanes
from distshot.plugins.manager import get_registry
from distshot.storage.local import LocalStorage

SESSION = "sess-" + uuid.uuid4().hex
PASSWORD = "pw-" + uuid.uuid4().hex


def _cookies_txt(session: str) -> str:
    return (
        "# Netscape HTTP Cookie File\n"
        f"127.0.0.1\tFALSE\t/\tFALSE\t0\tsid\t{session}\n"
        f"#HttpOnly_127.0.0.1\tFALSE\t/\tFALSE\t0\tother\t{session}-2\n"
    )


def _parse(raw: dict[str, Any]) -> Any:
    return parse_options(raw, DEFAULT_OPTIONS)


# -- reading the options (no browser) -------------------------------------------------------


def test_cookies_read_from_cookies_txt_and_from_a_storage_state() -> None:
    from_txt = _parse({"cookies": _cookies_txt(SESSION)}).cookies
    assert from_txt == (
        Cookie("sid", SESSION, domain="127.0.0.1", path="/"),
        Cookie("other", f"{SESSION}-2", domain="127.0.0.1", path="/", http_only=True),
    )
    saved = {"name": "sid", "value": SESSION, "domain": "a.test", "path": "/", "expires": -1,
             "httpOnly": True, "secure": True, "sameSite": "Lax"}  # fmt: skip
    state = {
        "cookies": [saved],
        "origins": [{"origin": "https://a.test", "localStorage": [{"name": "k", "value": "v"}]}],
    }
    # --cookies FILE takes a storage-state file's cookies; storage_state takes it whole.
    (cookie,) = _parse({"cookies": json.dumps(state)}).cookies
    assert (cookie.value, cookie.http_only, cookie.same_site, cookie.expires) == (
        SESSION,
        True,
        "Lax",
        None,
    )
    whole = _parse({"storage_state": json.dumps(state)}).storage_state
    assert isinstance(whole, StorageState)
    assert whole.origins == (("https://a.test", (("k", "v"),)),)
    assert whole.cookies == (cookie,)


def test_identity_values_are_checked() -> None:
    opts = _parse({"locale": "de_DE", "geolocation": "35.68, 139.69", "javascript_enabled": "0"})
    assert (opts.locale, opts.geolocation, opts.javascript_enabled) == (
        "de-DE",
        (35.68, 139.69, 0.0),
        False,
    )
    assert _parse({"http_credentials": "bob:a:b"}).http_credentials == Credentials("bob", "a:b")
    for bad in (
        {"locale": "german please"},
        {"geolocation": "91,0"},
        {"geolocation": "1"},
        {"http_credentials": "no-colon"},
        {"cookies": [{"name": "a", "value": "b"}]},  # no domain nor url
        {"cookies": "not\ta\tcookies.txt line"},
        {"storage_state": {"origins": [{"origin": "a.test/x"}]}},
        {"cookies": "@secrets/../etc/passwd"},
    ):
        with pytest.raises(InvalidOption):
            _parse(bad)


def test_no_error_message_quotes_a_secret() -> None:
    for bad in (
        {"cookies": [{"name": "sid", "value": f"{SESSION};x", "domain": "a.test"}]},
        {"cookies": [{"name": f"{SESSION} x", "value": "v", "domain": "a.test"}]},
        {"cookies": f"{{not json {SESSION}"},
        {"cookies": f"a.test\tFALSE\t/\tFALSE\tsoon\tsid\t{SESSION}\n"},
        {"cookies": SESSION},
        {"http_credentials": SESSION},
        {"http_credentials": {"username": "u", "password": 7}},
        {"storage_state": {"origins": [{"origin": SESSION}]}},
    ):
        with pytest.raises(InvalidOption) as caught:
            _parse(bad)
        assert SESSION not in str(caught.value), caught.value


def test_a_secret_is_hidden_from_repr_and_shown_values(caplog: pytest.LogCaptureFixture) -> None:
    opts = _parse(
        {
            "cookies": _cookies_txt(SESSION),
            "http_credentials": f"user:{PASSWORD}",
            "storage_state": {"origins": [{"origin": "https://a.test",
                                           "localStorage": [{"name": "t", "value": SESSION}]}]},
            "locale": "fr-FR",
            "proxy": f"http://me:{PASSWORD}@proxy.test:3128",
        }
    )  # fmt: skip
    request = ShotRequest(id="b:1", line=1, url="https://a.test/", options=opts)
    for text in (repr(opts), repr(request), str(opts.shown())):
        assert SESSION not in text and PASSWORD not in text
    assert opts.shown() == {
        "cookies": "<secret>",
        "http_credentials": "<secret>",
        "storage_state": "<secret>",
        "locale": "fr-FR",
        "proxy": "http://me@proxy.test:3128",  # the proxy is named, its password is not
    }
    # And a log line given the request's payload (Dramatiq logs an actor's arguments) shows
    # neither the secrets nor the proxy's password
    redaction.install()
    with caplog.at_level(logging.INFO, logger="distshot.test"):
        logging.getLogger("distshot.test").info("args %r", (request.to_wire(),))
    assert "<secret>" in caplog.text and "proxy.test" in caplog.text
    assert SESSION not in caplog.text and PASSWORD not in caplog.text
    # The wire carries them (documented: use @secrets to keep them off the broker).
    assert SESSION in json.dumps(request.to_wire())


def test_the_cache_key_is_a_keyed_hash_of_the_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    def digest(session: str, key: str) -> str:
        monkeypatch.setattr(secretvalues, "_key", key.encode())
        return str(_parse({"cookies": _cookies_txt(session)}).digest)

    one, same, other = digest(SESSION, "k1"), digest(SESSION, "k1"), digest("x" + SESSION, "k1")
    assert one == same and one != other  # two sessions never share an image
    # Keyed: without the key, a guess of the value cannot be checked against the digest.
    assert digest(SESSION, "k2") != one
    assert one != DEFAULT_OPTIONS.digest


def test_the_hmac_key_comes_from_the_environment_or_is_generated_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(secretvalues, "_key", None)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    monkeypatch.setenv(secretvalues.KEY_ENV, "fleet-key")
    assert secretvalues.hmac_key() == b"fleet-key"
    monkeypatch.setattr(secretvalues, "_key", None)
    monkeypatch.delenv(secretvalues.KEY_ENV)
    first = secretvalues.hmac_key()
    monkeypatch.setattr(secretvalues, "_key", None)
    assert secretvalues.hmac_key() == first and len(first) == 64
    key_file = tmp_path / "distshot" / "secret-key"
    assert key_file.stat().st_mode & 0o777 == 0o600


def test_a_secret_reference_travels_as_a_name_and_is_read_on_the_worker(tmp_path: Path) -> None:
    opts = _parse({"cookies": "@secrets/site-a.txt", "http_credentials": "@secrets/site-a.pw"})
    assert opts.cookies == SecretRef("site-a.txt")
    request = ShotRequest(id="b:1", line=1, url="https://a.test/", options=opts)
    assert request.to_wire()["options"] == {
        "cookies": "@secrets/site-a.txt",
        "http_credentials": "@secrets/site-a.pw",
    }
    assert ShotRequest.from_wire(request.to_wire()).options == opts
    (tmp_path / "site-a.txt").write_text(_cookies_txt(SESSION))
    (tmp_path / "site-a.pw").write_text(f"user:{PASSWORD}")
    resolved = opts.resolve_secrets(tmp_path)
    assert resolved.cookies[0].value == SESSION  # type: ignore[union-attr]
    assert resolved.http_credentials == Credentials("user", PASSWORD)
    assert resolved.digest != opts.digest
    with pytest.raises(InvalidOption, match="no secrets_dir"):
        opts.resolve_secrets(None)
    with pytest.raises(InvalidOption, match=r"no readable secret @secrets/nope\.txt"):
        _parse({"cookies": "@secrets/nope.txt"}).resolve_secrets(tmp_path)
    (tmp_path / "bad.txt").write_text(f"{SESSION} is not a cookie jar")
    with pytest.raises(InvalidOption) as caught:
        _parse({"cookies": "@secrets/bad.txt"}).resolve_secrets(tmp_path)
    assert SESSION not in str(caught.value) and "@secrets/bad.txt" in str(caught.value)


def test_the_api_schema_takes_a_value_or_a_secret_name() -> None:
    schema = options_json_schema()["properties"]
    assert schema["cookies"]["anyOf"][1] == {"type": "string", "pattern": "^@secrets/"}
    assert schema["javascript_enabled"]["default"] is True


def test_lanes_are_kept_apart_by_locale_position_and_javascript() -> None:
    def key(**options: Any) -> tuple[object, ...]:
        request = ShotRequest(id="b:1", line=1, url="https://a.test/", options=_parse(options))
        return lanes.lane_key(request)

    plain = key()
    assert (
        len({plain, key(locale="de-DE"), key(geolocation="1,2"), key(javascript_enabled=False)})
        == 4
    )
    assert key(cookies=_cookies_txt(SESSION)) == plain  # its lane is discarded after it instead
    held = lanes.JobTraces.start("https://a.test/", _parse({"cookies": _cookies_txt(SESSION)}))
    assert lanes.why_not_reuse(held, jobs=1, reuse_contexts=True) == lanes.CREDENTIALS
    clean = lanes.JobTraces.start("https://a.test/", _parse({"locale": "de-DE"}))
    assert lanes.why_not_reuse(clean, jobs=1, reuse_contexts=True) is None


# -- real Chromium ----------------------------------------------------------------------------


@pytest.mark.parametrize("engine_name", ["playwright", "selenium"])
def test_nothing_of_one_job_reaches_the_next_on_a_reused_lane(
    engine_name: str, pages: PageServer, tmp_path: Path
) -> None:
    """One job slot, so every job runs on the lane the last one left (where kept)."""
    pages.session, pages.password = SESSION, "secret"
    storage = LocalStorage(str(tmp_path))
    jobs = [
        ("/account", {"cookies": _cookies_txt(SESSION)}, "account alice"),
        ("/account", {}, "login required"),
        ("/identity.html", {"locale": "de-DE"}, "lang=de-DE cookie=no storage=none"),
        ("/identity.html", {}, "lang=en-US cookie=no storage=none"),
        ("/geolocation.html", {"geolocation": "35.68,139.69"}, "geo 35.68,139.69"),
        ("/geolocation.html", {}, "geo refused 1"),
        ("/noscript.html", {"javascript_enabled": False}, "noscript"),
        ("/noscript.html", {}, "script ran"),
        ("/auth", {"http_credentials": "user:secret"}, "authed"),
        ("/auth", {}, None),  # AuthenticationRequired: no password of the last job's
    ]

    async def scenario() -> tuple[list[str | None], Any]:
        engine = get_registry().create_engine(engine_name, EngineConfig(concurrency=1))
        await engine.open()
        titles = []
        try:
            for number, (path, options, _) in enumerate(jobs, 1):
                request = ShotRequest(
                    id=f"lane:{number}",
                    line=number,
                    url=pages.base + path,
                    options=_parse(options),
                    allow_private=True,
                )
                result = await capture_request(request, engine, storage)
                if result.status == "ok":
                    titles.append(result.title)
                else:
                    assert result.error is not None
                    assert result.error["type"] == "AuthenticationRequired", result.error
                    titles.append(None)
            return titles, engine.lanes_discarded  # type: ignore[attr-defined]
        finally:
            await engine.close()

    titles, discarded = asyncio.run(scenario())
    assert titles == [title for _, _, title in jobs]
    # The lanes that held the session cookie (and the password): thrown away, not cleaned.
    assert discarded[lanes.CREDENTIALS] == 2


def test_shoot_behind_a_login_and_no_output_holds_the_secret(
    pages: PageServer, tmp_path: Path
) -> None:
    """Everything distshot writes (manifest, stdout, stderr with debug logs, stored object
    names, cache files) is searched for the cookie's value and the password."""
    pages.session, pages.password = SESSION, PASSWORD
    jar = tmp_path / "cookies.txt"
    jar.write_text(_cookies_txt(SESSION))
    urls = tmp_path / "urls.jsonl"
    bad_cookie = [{"name": "sid", "value": f"{SESSION};", "domain": "127.0.0.1"}]
    urls.write_text(
        "\n".join(
            json.dumps(line)
            for line in (
                {"url": pages.base + "/account"},
                {"url": pages.base + "/auth"},
                {"url": pages.base + "/account", "cookies": bad_cookie},
                {"cookies": bad_cookie},
            )
        )
    )
    env = {
        "DISTSHOT_LOG_LEVEL": "DEBUG",
        "DISTSHOT_DRAMATIQ_LOG_LEVEL": "DEBUG",
        "DISTSHOT_SECRET_KEY": "test-key",
    }
    out = tmp_path / "out"

    def shoot(cookies: Path) -> tuple[list[dict[str, Any]], str]:
        done = run_cli(
            "shoot", str(urls), "-o", str(out), "--allow-private", "--cache-ttl", "1h",
            "--cookies", str(cookies), "--http-credentials", f"user:{PASSWORD}", env=env,
        )  # fmt: skip
        assert done.returncode == 1, done.stderr  # the two bad lines are rejected
        assert "Received message" in done.stderr  # Dramatiq's debug log was on
        return read_manifest(out / "manifest.jsonl"), done.stdout + done.stderr

    records, printed = shoot(jar)
    by_line = {r["line"]: r for r in records}
    assert (by_line[1]["title"], by_line[2]["title"]) == ("account alice", "authed")
    assert by_line[3]["status"] == by_line[4]["status"] == "rejected"
    assert by_line[3]["error"]["type"] == "InvalidOption"

    # The same session again: from the cache; another session: never the first one's image.
    again, printed_again = shoot(jar)
    assert {r["line"]: r["cached"] for r in again if r["status"] == "ok"} == {1: True, 2: True}
    other = tmp_path / "other.txt"
    other.write_text(_cookies_txt("another-" + SESSION))
    third, printed_third = shoot(other)
    third_by_line = {r["line"]: r for r in third}
    assert third_by_line[1]["cached"] is False
    assert third_by_line[1]["title"] == "login required"
    assert third_by_line[1]["image_key"] != by_line[1]["image_key"]

    texts = [printed, printed_again, printed_third]
    for path in out.rglob("*"):
        texts.append(str(path.relative_to(out)))
        if path.is_file():
            texts.append(path.read_bytes().decode("latin-1"))
    assert len(texts) > 6
    for text in texts:
        assert SESSION not in text and PASSWORD not in text


def test_a_worker_reads_secrets_by_name_from_its_secrets_dir(
    pages: PageServer, tmp_path: Path
) -> None:
    pages.session = SESSION
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    (secrets_dir / "site-a.txt").write_text(_cookies_txt(SESSION))
    urls = tmp_path / "urls.txt"
    urls.write_text(pages.base + "/account\n")
    done = run_cli(
        "shoot", str(urls), "-o", str(tmp_path / "out"), "--allow-private",
        "--cookies", "@secrets/site-a.txt",
        env={"DISTSHOT_SECRETS_DIR": str(secrets_dir), "DISTSHOT_SECRET_KEY": "test-key"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (record,) = read_manifest(tmp_path / "out" / "manifest.jsonl")
    assert record["title"] == "account alice"
    # A worker without the secret: a clear, permanent rejection naming it.
    done = run_cli(
        "shoot", str(urls), "-o", str(tmp_path / "out2"), "--allow-private",
        "--cookies", "@secrets/site-b.txt",
        env={"DISTSHOT_SECRETS_DIR": str(secrets_dir), "DISTSHOT_SECRET_KEY": "test-key"},
    )  # fmt: skip
    (record,) = read_manifest(tmp_path / "out2" / "manifest.jsonl")
    assert record["status"] == "rejected"
    assert "@secrets/site-b.txt" in record["error"]["message"]


def test_the_service_answers_and_logs_without_the_secret(pages: PageServer, tmp_path: Path) -> None:
    from servekit import LOOPBACK, Serve

    pages.session = SESSION
    env = {"DISTSHOT_SECRET_KEY": "test-key", "DISTSHOT_LOG_LEVEL": "DEBUG"}
    serve = Serve(tmp_path, *LOOPBACK, env=env).start()
    try:
        with serve.client() as client:
            cookies = [{"name": "sid", "value": SESSION, "url": pages.base}]
            shot = {"url": pages.base + "/account", "options": {"cookies": cookies}}
            answer = client.post("/v1/shots", json=shot)
            assert answer.status_code == 200, answer.text
            assert answer.json()["title"] == "account alice"
            again = client.get(f"/v1/shots/{answer.json()['id']}")
            cookies[0]["value"] = SESSION + ";"
            refused = client.post("/v1/shots", json=shot)
            assert refused.status_code == 422
            assert "cookies[0].value" in refused.text
            texts = [answer.text, again.text, refused.text]
    finally:
        assert serve.stop() == 0
    texts.append(serve.log.read_text())
    assert "DEBUG" in texts[-1]
    for text in texts:
        assert SESSION not in text
