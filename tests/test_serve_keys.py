"""The service's keys, signatures and listening rule, as functions (no network)."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import parse_qsl

import pytest

from distshot.core.errors import ConfigError
from distshot.server.keys import add_key, hash_key, keys_from_env, load_keys, read_keys_file
from distshot.server.run import is_loopback
from distshot.server.signing import SignatureError, sign_query, verify


def test_a_keys_file_keeps_only_hashes_and_authenticates_the_key(tmp_path: Path) -> None:
    path = tmp_path / "keys.jsonl"
    token, key = add_key(path, "alice", concurrency=2)
    text = path.read_text()
    assert token not in text and hash_key(token) in text
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    ring = load_keys(path, env={})
    assert ring.authenticate(token) == key and key.concurrency == 2
    assert ring.authenticate(token + "x") is None and ring.authenticate("") is None
    with pytest.raises(ConfigError, match="already has a key 'alice'"):
        add_key(path, "alice")


def test_keys_from_the_environment_are_hashed_and_checked() -> None:
    keys = keys_from_env("a=one, b=two")
    assert [k.id for k in keys] == ["a", "b"] and keys[0].sha256 == hash_key("one")
    assert keys[0].webhook_secret.startswith("whsec_")
    assert keys_from_env("a=one")[0].webhook_secret == keys[0].webhook_secret  # stable
    with pytest.raises(ConfigError, match="id=KEY"):
        keys_from_env("justakey")
    ring = load_keys(None, env={"DISTSHOT_API_KEYS": "a=one"})
    assert ring.authenticate("one") is not None


def test_a_broken_keys_file_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "keys.jsonl"
    path.write_text('# comment\n{"id": "a", "sha256": "abc"}\n')
    with pytest.raises(ConfigError, match=r"keys.jsonl:2: 'sha256'"):
        read_keys_file(path)
    path.write_text("not json\n")
    with pytest.raises(ConfigError, match=r"keys.jsonl:1: not a JSON object"):
        read_keys_file(path)


def test_signatures_verify_and_refuse_tampering_expiry_and_other_keys(tmp_path: Path) -> None:
    path = tmp_path / "keys.jsonl"
    alice, _ = add_key(path, "alice")
    add_key(path, "bob")
    ring = load_keys(path, env={})
    now = int(time.time())
    params = [("url", "https://example.com/a b"), ("hide", "p"), ("hide", ".x")]
    query = sign_query(params, key_id="alice", key=alice, expires=now + 60)
    signed = parse_qsl(query)
    assert verify(ring, signed, "/v1/screenshot").id == "alice"
    reordered = list(reversed(signed))
    assert verify(ring, reordered, "/v1/screenshot").id == "alice"  # canonical order
    for changed in (
        [(k, v + "x") if k == "url" else (k, v) for k, v in signed],
        [(k, "bob") if k == "key_id" else (k, v) for k, v in signed],
        [*signed, ("width", "10")],
        [(k, v) for k, v in signed if k != "signature"],
    ):
        with pytest.raises(SignatureError):
            verify(ring, changed, "/v1/screenshot")
    with pytest.raises(SignatureError, match="expired"):
        verify(ring, signed, "/v1/screenshot", now=now + 61)
    with pytest.raises(SignatureError):
        verify(ring, signed, "/v1/other")


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.1", False),
        ("example.com", False),
    ],
)
def test_only_loopback_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
