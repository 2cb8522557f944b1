"""S3 storage end to end, against a real S3 API over HTTP (moto_server on loopback).

distshot is told about the server only through AWS_ENDPOINT_URL (boto3's own chain).
"""

from __future__ import annotations

import hashlib
import re
import signal
import subprocess
import threading
import time
import urllib.request
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from conftest import DISTSHOT, PageServer, by_line, read_manifest, run_cli
from rabbit import kill_group
from s3server import MotoServer, free_port
from test_distributed import Fleet, write_urls

from distshot.core.errors import StorageError
from distshot.storage import s3 as s3_module
from distshot.storage.s3 import S3Storage

SHA_NAME = re.compile(r"^a-test-(\d)-[0-9a-f]{16}\.png$")


def shoot(storage: str, urls: Path, out: Path, *extra: str, **kw: Any) -> Any:
    return run_cli(
        "shoot", str(urls), "-o", str(out), "--storage", storage, "--allow-private", *extra, **kw
    )


def split_location(location: str) -> tuple[str, str]:
    parts = urlsplit(location)
    assert parts.scheme == "s3", location
    return parts.netloc, parts.path.lstrip("/")


def fetch(url: str) -> bytes:
    assert urlsplit(url).hostname == "127.0.0.1", url  # no packet leaves this machine
    with urllib.request.urlopen(url, timeout=30) as response:
        return bytes(response.read())


def one_line_exit_2(result: subprocess.CompletedProcess[str]) -> str:
    stderr = result.stderr.strip()
    assert result.returncode == 2, (result.returncode, stderr)
    assert "\n" not in stderr and "Traceback" not in stderr, stderr
    return stderr


def test_objects_are_private_typed_with_metadata_under_prefix_batch_hash(
    s3: MotoServer, tmp_path: Path
) -> None:
    bucket = s3.new_bucket()
    urls = write_urls(tmp_path / "u.txt", ["https://a.test/1", "https://a.test/2"])
    started = datetime.now().astimezone()
    result = shoot(f"s3://{bucket}/team/shots", urls, tmp_path / "out", "--engine", "null")
    assert result.returncode == 0, result.stderr
    records = read_manifest(tmp_path / "out" / "manifest.jsonl")
    client = s3.client()
    batches = set()
    for record in records:
        found_bucket, key = split_location(record["location"])
        assert found_bucket == bucket
        # prefix / batch / slug-hash.ext: deterministic per request, batch first
        prefix1, prefix2, batch, name = key.split("/")
        assert (prefix1, prefix2) == ("team", "shots")
        assert batch == record["id"].split(":")[0]
        match = SHA_NAME.match(name)
        assert match and match.group(1) == str(record["line"])
        batches.add(batch)
        head = client.head_object(Bucket=bucket, Key=key)
        assert head["ContentType"] == "image/png"
        assert head["ContentLength"] == record["bytes"]
        meta = head["Metadata"]
        assert meta["source-url"] == record["url"] and meta["engine"] == "null"
        assert datetime.fromisoformat(meta["captured-at"]) >= started.replace(microsecond=0)
        # Private: the owner's grant and nothing else (no public-read, no AllUsers).
        grants = client.get_object_acl(Bucket=bucket, Key=key)["Grants"]
        assert [(g["Grantee"]["Type"], g["Permission"]) for g in grants] == [
            ("CanonicalUser", "FULL_CONTROL")
        ]
    assert len(batches) == 1
    # A second run of the same URLs: same names, in the new batch's folder.
    again = shoot(f"s3://{bucket}/team/shots", urls, tmp_path / "out2", "--engine", "null")
    assert again.returncode == 0, again.stderr
    first = {r["line"]: split_location(r["location"])[1] for r in records}
    second = {
        r["line"]: split_location(r["location"])[1]
        for r in read_manifest(tmp_path / "out2" / "manifest.jsonl")
    }
    for line in (1, 2):
        assert first[line].split("/")[-1] == second[line].split("/")[-1]
        assert first[line].split("/")[2] != second[line].split("/")[2]


def test_links_are_presigned_urls_that_serve_the_manifest_bytes(
    s3: MotoServer, tmp_path: Path
) -> None:
    bucket = s3.new_bucket()
    urls = write_urls(tmp_path / "u.txt", ["https://a.test/1"])
    result = shoot(f"s3://{bucket}/p", urls, tmp_path / "out", "--engine", "null")
    assert result.returncode == 0, result.stderr
    (record,) = read_manifest(tmp_path / "out" / "manifest.jsonl")
    query = parse_qs(urlsplit(record["link"]).query)
    assert query["X-Amz-Expires"] == ["604800"]  # 7 days by default
    assert "X-Amz-Signature" in query
    body = fetch(record["link"])
    assert hashlib.sha256(body).hexdigest() == record["sha256"]
    assert len(body) == record["bytes"]

    # --link-ttl, DISTSHOT_LINK_TTL and the config file set the expiry (flag first).
    (tmp_path / "distshot.toml").write_text('link_ttl = "2h"\n')
    for extra, env, expires in (
        ([], {}, "7200"),
        ([], {"DISTSHOT_LINK_TTL": "90m"}, "5400"),
        (["--link-ttl", "1h"], {"DISTSHOT_LINK_TTL": "90m"}, "3600"),
    ):
        out = tmp_path / f"out-{expires}"
        result = shoot(
            f"s3://{bucket}/p", urls, out, "--engine", "null", *extra, env=env, cwd=tmp_path
        )
        assert result.returncode == 0, result.stderr
        (record,) = read_manifest(out / "manifest.jsonl")
        assert parse_qs(urlsplit(record["link"]).query)["X-Amz-Expires"] == [expires]
        assert hashlib.sha256(fetch(record["link"])).hexdigest() == record["sha256"]

    message = one_line_exit_2(
        shoot(f"s3://{bucket}/p", urls, tmp_path / "o", "--engine", "null", "--link-ttl", "8d")
    )
    assert "7 days at most" in message


def test_public_base_url_makes_links_base_plus_key(s3: MotoServer, tmp_path: Path) -> None:
    bucket = s3.new_bucket()
    urls = write_urls(tmp_path / "u.txt", ["https://a.test/1"])
    result = shoot(
        f"s3://{bucket}/site",
        urls,
        tmp_path / "out",
        "--engine",
        "null",
        "--public-base-url",
        "https://cdn.example/shots/",
    )
    assert result.returncode == 0, result.stderr
    (record,) = read_manifest(tmp_path / "out" / "manifest.jsonl")
    _, key = split_location(record["location"])
    assert record["link"] == f"https://cdn.example/shots/{key}"
    message = one_line_exit_2(
        shoot(f"s3://{bucket}/site", urls, tmp_path / "o", "--public-base-url", "ftp://x/")
    )
    assert "public_base_url must be an http(s) URL" in message


@pytest.mark.slow
def test_a_tall_full_page_png_uploads_in_parts_and_round_trips(
    s3: MotoServer, tmp_path: Path, http_server: PageServer
) -> None:
    # Given a 1280x30000 page of noise (its PNG does not compress: tens of MB)
    bucket = s3.new_bucket()
    urls = write_urls(tmp_path / "u.txt", [f"{http_server.base}/noise.html?h=30000"])
    result = shoot(f"s3://{bucket}/big", urls, tmp_path / "out", "--full-page", timeout=300)
    assert result.returncode == 0, result.stderr
    (record,) = read_manifest(tmp_path / "out" / "manifest.jsonl")
    assert (record["width"], record["height"]) == (1280, 30000)
    assert record["bytes"] > 2 * s3_module.MULTIPART_THRESHOLD
    # Then it went up as a multipart upload (an ETag with a part count) ...
    _, key = split_location(record["location"])
    head = s3.client().head_object(Bucket=bucket, Key=key)
    parts = -(-record["bytes"] // s3_module.MULTIPART_CHUNK)
    assert head["ETag"].strip('"').endswith(f"-{parts}")
    assert head["ContentType"] == "image/png"
    # ... and the link serves exactly the bytes the manifest describes.
    assert hashlib.sha256(fetch(record["link"])).hexdigest() == record["sha256"]
    print(f"{record['bytes'] / 2**20:.1f} MiB stored in {record['timings']['store_ms']} ms")


class Throttling(BaseHTTPRequestHandler):
    """An S3 endpoint that answers every request with 503 SlowDown."""

    protocol_version = "HTTP/1.1"
    hits = 0

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def answer(self) -> None:
        type(self).hits += 1
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        body = (
            b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>SlowDown</Code>"
            b"<Message>Please reduce your request rate.</Message></Error>"
        )
        self.send_response(503)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_PUT = do_HEAD = do_POST = answer


def test_throttling_is_retried_a_bounded_number_of_times_then_a_transient_error(
    monkeypatch: pytest.MonkeyPatch, s3: MotoServer
) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Throttling)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{server.server_address[1]}")
        storage = S3Storage("s3://busy-bucket/p")
        started = time.monotonic()
        with pytest.raises(StorageError) as info:
            storage.put("b/x.png", b"data", "image/png", {})
        elapsed = time.monotonic() - started
    finally:
        server.shutdown()
        server.server_close()
    assert info.value.transient  # the actor retries it with its own backoff
    assert "'busy-bucket'" in info.value.message and "SlowDown" in info.value.message
    assert Throttling.hits == s3_module.ATTEMPTS  # botocore's bounded retries, no more
    assert elapsed < 30


@pytest.mark.slow
def test_an_s3_outage_mid_run_fails_the_rest_with_storage_error_naming_the_bucket(
    private_s3: MotoServer, tmp_path: Path, http_server: PageServer
) -> None:
    bucket = private_s3.new_bucket()
    count = 6
    urls = write_urls(
        tmp_path / "u.txt", [f"{http_server.base}/slow?ms=1500&n={n}" for n in range(count)]
    )
    manifest = tmp_path / "out" / "manifest.jsonl"
    process = subprocess.Popen(
        [
            *DISTSHOT,
            "shoot",
            str(urls),
            "-o",
            str(tmp_path / "out"),
            "--storage",
            f"s3://{bucket}/p",
            "--allow-private",
            "--concurrency",
            "2",
        ],
        env={**__import__("os").environ, "DISTSHOT_MAX_ATTEMPTS": "2"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        # Given a run that has stored its first images
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if manifest.exists() and len(manifest.read_text().splitlines()) >= 2:
                break
            time.sleep(0.1)
        else:
            raise AssertionError("no records within 120 s")
        # When the S3 server goes away
        private_s3.stop()
        stopped = time.monotonic()
        # Then the run ends on its own, well within the retries' bounds
        _, stderr = process.communicate(timeout=150)
        after_stop = time.monotonic() - stopped
    finally:
        kill_group(process, signal.SIGKILL)
        process.wait(timeout=30)
    assert process.returncode == 1, stderr
    records = read_manifest(manifest)  # every line is one whole JSON record
    assert sorted(r["line"] for r in records) == list(range(1, count + 1))
    ok = [r for r in records if r["status"] == "ok"]
    failed = [r for r in records if r["status"] == "failed"]
    assert len(ok) >= 2 and failed and len(ok) + len(failed) == count
    for record in failed:
        assert record["error"]["type"] == "StorageError"
        assert f"'{bucket}'" in record["error"]["message"]
        assert "unreachable" in record["error"]["message"]
        assert record["attempts"] == 2  # retried, then answered: bounded
        assert record["location"] is None
    print(f"{len(failed)} requests failed within {after_stop:.1f}s of the outage")
    assert after_stop < 120


def test_start_up_fails_in_one_line_for_a_missing_bucket_or_unreachable_endpoint(
    s3: MotoServer, tmp_path: Path
) -> None:
    urls = write_urls(tmp_path / "u.txt", ["https://a.test/1"])
    missing = "s3://no-such-bucket-anywhere/p"
    for args in (
        ["shoot", str(urls), "-o", str(tmp_path / "out"), "--engine", "null"],
        ["dispatch", str(urls), "--batch", "b1", "--manifest", str(tmp_path / "m.jsonl")],
        ["worker", "--engine", "null"],
    ):
        message = one_line_exit_2(run_cli(*args, "--storage", missing, timeout=60))
        assert "'no-such-bucket-anywhere'" in message and "does not exist" in message
    assert not (tmp_path / "m.jsonl").exists()
    # Link settings travel inside the storage URL: without one they are an error, not ignored.
    message = one_line_exit_2(
        run_cli("dispatch", str(urls), "--batch", "b2", "--link-ttl", "1h", cwd=tmp_path)
    )
    assert "need --storage" in message
    # An endpoint nobody listens on: one line, quickly (bounded retries, no hang).
    started = time.monotonic()
    closed = f"http://127.0.0.1:{free_port()}"
    message = one_line_exit_2(
        run_cli(
            "shoot",
            str(urls),
            "-o",
            str(tmp_path / "out"),
            "--engine",
            "null",
            "--storage",
            f"s3://{s3.new_bucket()}/p",
            env={"AWS_ENDPOINT_URL": closed},
            timeout=60,
        )
    )
    assert closed in message and "unreachable" in message
    assert time.monotonic() - started < 30


def test_start_up_fails_in_one_line_for_bad_or_missing_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A moto_server that checks credentials once the bucket exists (its first action).
    server = MotoServer(tmp_path, extra_env={"INITIAL_NO_AUTH_ACTION_COUNT": "1"}).start()
    try:
        for name, value in server.env.items():
            monkeypatch.setenv(name, value)
        bucket = server.new_bucket()
        urls = write_urls(tmp_path / "u.txt", ["https://a.test/1"])
        args = ["shoot", str(urls), "-o", str(tmp_path / "out"), "--engine", "null"]
        message = one_line_exit_2(run_cli(*args, "--storage", f"s3://{bucket}/p", timeout=60))
        assert f"'{bucket}'" in message and "InvalidAccessKeyId" in message
        # No credentials at all (and no metadata service asked: it is disabled).
        message = one_line_exit_2(
            run_cli(
                *args,
                "--storage",
                f"s3://{bucket}/p",
                env={"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""},
                timeout=60,
            )
        )
        assert "no usable AWS credentials" in message
        assert not (tmp_path / "out" / "manifest.jsonl").exists()
    finally:
        server.stop()


def test_a_distributed_run_writes_to_s3_and_answers_from_its_cache(
    s3: MotoServer, tmp_path: Path
) -> None:
    bucket = s3.new_bucket()
    fleet = Fleet(tmp_path)
    try:
        # Given a worker whose own default storage is a folder, and requests that name S3
        fleet.worker("null")
        urls = write_urls(tmp_path / "u.txt", [f"https://a.test/{n}" for n in range(5)])
        storage = f"s3://{bucket}/fleet"
        result = fleet.dispatch(urls, "first", "--engine", "null", "--storage", storage)
        assert result.returncode == 0, result.stderr
        records = by_line(fleet.manifest("first"))
        client = s3.client()
        for record in records.values():
            found, key = split_location(record["location"])
            assert found == bucket and key.startswith("fleet/first/")
            assert not record["cached"]
            body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
            assert hashlib.sha256(body).hexdigest() == record["sha256"]
            assert hashlib.sha256(fetch(record["link"])).hexdigest() == record["sha256"]
        # Nothing went to the worker's default storage (a folder its start-up check made).
        assert not [p for p in (tmp_path / "shots").rglob("*") if p.is_file()]
        # When a later batch asks with a cache TTL, the images come from the first batch
        result = fleet.dispatch(
            urls, "second", "--engine", "null", "--storage", storage, "--cache-ttl", "1h"
        )
        assert result.returncode == 0, result.stderr
        for line, record in by_line(fleet.manifest("second")).items():
            assert record["cached"] is True
            assert record["sha256"] == records[line]["sha256"]
            _, key = split_location(record["location"])
            assert key.startswith("fleet/second/")  # each batch's folder is complete
            assert hashlib.sha256(fetch(record["link"])).hexdigest() == record["sha256"]
    finally:
        fleet.close()


def test_storage_urls_carry_the_link_settings_and_refuse_what_they_do_not_know(
    tmp_path: Path,
) -> None:
    from distshot.core.config import Settings, with_storage_options
    from distshot.core.errors import ConfigError
    from distshot.storage.local import LocalStorage
    from distshot.storage.s3 import S3Location

    location = S3Location.parse("s3://my-bucket//team/shots/?link_ttl=1h")
    assert (location.bucket, location.prefix, location.link_ttl) == (
        "my-bucket",
        "team/shots",
        3600,
    )
    assert location.key("b1/x.png") == "team/shots/b1/x.png"
    assert S3Location.parse("s3://my-bucket").key("b1/x.png") == "b1/x.png"
    for bad in ("s3://", "s3://a/p", "s3://bucket/../p", "s3://bucket/p?ttl=1", "s3://b_/p"):
        with pytest.raises(ConfigError):
            S3Location.parse(bad)
    # The CLI folds its settings into the URL the requests carry; they win over the URL's own.
    settings = Settings(link_ttl=600.0, public_base_url="https://cdn.example/")
    folded = settings.storage_url("s3://bucket/p?link_ttl=60")
    assert folded is not None
    assert S3Location.parse(folded) == S3Location("bucket", "p", 600, "https://cdn.example/")
    assert Settings().storage_url("s3://bucket/p") == "s3://bucket/p"
    # A folder path becomes a file:// URL when something must be folded into it.
    local = with_storage_options(str(tmp_path / "shots"), public_base_url="https://x.test/s")
    storage = LocalStorage(local)
    assert storage.root == tmp_path / "shots"
    assert storage.put("b/x.png", b"x", "image/png", {}).link == "https://x.test/s/b/x.png"
    with pytest.raises(ConfigError, match="link_ttl"):
        LocalStorage(with_storage_options(str(tmp_path), link_ttl=60.0))
