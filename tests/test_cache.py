"""The capture cache: a request answered from storage opens no browser, for local and S3."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import PageServer, read_manifest, run_cli, wait_for
from s3server import MotoServer

from distshot.core.config import load_settings, parse_duration
from distshot.core.contracts import Engine, Storage
from distshot.core.errors import ConfigError, InvalidRequest
from distshot.core.models import Capture, ShotRequest
from distshot.core.options import CaptureOptions
from distshot.core.service import capture_request
from distshot.engines.null import CAPABILITIES, NullEngine
from distshot.storage.local import LocalStorage
from distshot.storage.s3 import S3Storage


class CountingEngine(Engine):
    """The null engine's image, counting its captures."""

    capabilities = CAPABILITIES

    def __init__(self, name: str = "null") -> None:
        self.name = name
        self.calls = 0

    async def capture(self, request: ShotRequest) -> Capture:
        self.calls += 1
        return await NullEngine().capture(request)


def request(batch: str, ttl: float | None = None, **options: Any) -> ShotRequest:
    return ShotRequest(
        id=f"{batch}:1",
        line=1,
        url="https://a.test/page",
        options=CaptureOptions(**options),
        batch=batch,
        cache_ttl=ttl,
        allow_private=True,
    )


def capture(req: ShotRequest, engine: Engine, storage: Storage) -> Any:
    return asyncio.run(capture_request(req, engine, storage)).to_record()


def test_a_hit_in_a_later_batch_answers_without_calling_the_engine(tmp_path: Path) -> None:
    storage = LocalStorage(str(tmp_path))
    engine = CountingEngine()
    first = capture(request("one"), engine, storage)
    assert first["status"] == "ok" and not first["cached"] and engine.calls == 1
    # When batch two asks for the same image with a TTL
    second = capture(request("two", ttl=60), engine, storage)
    # Then the engine is not called, and the record describes the stored image
    assert engine.calls == 1
    assert second["cached"] is True and second["status"] == "ok"
    for field in ("sha256", "bytes", "width", "height", "format", "final_url", "http_status"):
        assert second[field] == first[field], field
    path = Path(second["location"].removeprefix("file://"))
    assert path.parent.name == "two" and path.name == Path(first["location"]).name
    assert hashlib.sha256(path.read_bytes()).hexdigest() == first["sha256"]
    assert second["timings"]["navigate_ms"] is None and second["timings"]["store_ms"] is not None


def test_no_ttl_other_options_other_engine_or_an_old_entry_is_a_miss(tmp_path: Path) -> None:
    storage = LocalStorage(str(tmp_path))
    engine = CountingEngine()
    capture(request("one"), engine, storage)
    assert not capture(request("two"), engine, storage)["cached"]  # cache off by default
    assert not capture(request("three", ttl=60, width=640), engine, storage)["cached"]
    other = CountingEngine("other")
    assert not capture(request("four", ttl=60), other, storage)["cached"]
    assert engine.calls == 3 and other.calls == 1
    # Every index entry is as old as its capture: age them all by two hours.
    for index in (tmp_path / ".cache").iterdir():
        past = time.time() - 7200
        os.utime(index, (past, past))
    assert not capture(request("five", ttl=3600), engine, storage)["cached"]
    assert capture(request("six", ttl=3600), engine, storage)["cached"]  # five renewed it
    assert engine.calls == 4


def test_an_image_deleted_since_it_was_stored_is_a_miss(tmp_path: Path) -> None:
    storage, engine = LocalStorage(str(tmp_path)), CountingEngine()
    first = capture(request("one"), engine, storage)
    Path(first["location"].removeprefix("file://")).unlink()
    again = capture(request("two", ttl=60), engine, storage)
    assert not again["cached"] and again["status"] == "ok" and engine.calls == 2


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_shoot_answers_a_later_batch_from_the_cache_until_the_ttl_passes(
    kind: str, tmp_path: Path, http_server: PageServer, request: pytest.FixtureRequest
) -> None:
    if kind == "s3":
        s3: MotoServer = request.getfixturevalue("s3")
        storage = f"s3://{s3.new_bucket()}/cache"
    else:
        storage = f"file://{tmp_path}/shots"
    urls = tmp_path / "u.txt"
    urls.write_text(f"{http_server.base}/solid.html\n")

    def shoot(run: str, *extra: str) -> dict[str, Any]:
        out = tmp_path / run
        result = run_cli(
            "shoot", str(urls), "-o", str(out), "--storage", storage, "--allow-private", *extra
        )
        assert result.returncode == 0, result.stderr
        (record,) = read_manifest(out / "manifest.jsonl")
        return record

    def page_hits() -> int:
        return http_server.seen.paths().count("/solid.html")

    first = shoot("first")
    assert page_hits() == 1 and not first["cached"]
    # A later batch with a TTL: answered from storage, the page is not loaded again
    second = shoot("second", "--cache-ttl", "1h")
    assert page_hits() == 1
    assert second["cached"] is True
    assert (second["sha256"], second["title"], second["http_status"]) == (
        first["sha256"],
        first["title"],
        first["http_status"],
    )
    assert second["location"] != first["location"]
    if kind == "local":
        copy = Path(second["location"].removeprefix("file://")).read_bytes()
    else:
        s3_client = request.getfixturevalue("s3").client()
        bucket, _, key = second["location"].removeprefix("s3://").partition("/")
        copy = s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert hashlib.sha256(copy).hexdigest() == first["sha256"]
    # Once the TTL has passed, the page is captured again. Rather than sleep past a TTL,
    # take a short one and poll the storage, by the clock shoot will use (the server's for
    # S3, which counts whole seconds), until the entry has outlived it.
    probe = LocalStorage(storage) if kind == "local" else S3Storage(storage)
    (key,) = cache_keys(probe)
    wait_for(
        lambda: probe.lookup(key, "probe/page.png", 0.5) is None, 30, "the entry to outlive 0.5s"
    )
    third = shoot("third", "--cache-ttl", "0.5s")
    assert page_hits() == 2 and third["cached"] is False


def cache_keys(storage: LocalStorage | S3Storage) -> list[str]:
    """The keys a storage has remembered entries for (``.cache/KEY.json``)."""
    if isinstance(storage, LocalStorage):
        return [index.stem for index in (storage.root / ".cache").glob("*.json")]
    prefix = storage.location.key(".cache") + "/"
    listed = storage.client.list_objects_v2(Bucket=storage.bucket, Prefix=prefix)
    return [item["Key"].removeprefix(prefix).removesuffix(".json") for item in listed["Contents"]]


def test_cache_ttl_comes_from_flag_env_or_config_file(tmp_path: Path) -> None:
    urls = tmp_path / "u.txt"
    urls.write_text("https://a.test/1\n")
    common = ["--engine", "null", "--allow-private", "--storage", str(tmp_path / "shots")]

    def cached(*extra: str, env: dict[str, str] | None = None) -> bool:
        result = run_cli("shoot", str(urls), "-o", "out", *common, *extra, env=env, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        (record,) = read_manifest(tmp_path / "out" / "manifest.jsonl")
        return bool(record["cached"])

    assert not cached()  # stores it
    assert not cached()  # off by default
    assert cached(env={"DISTSHOT_CACHE_TTL": "10m"})
    (tmp_path / "distshot.toml").write_text('cache_ttl = "1d"\n')
    assert cached()
    result = run_cli("shoot", str(urls), *common, "--cache-ttl", "soon", cwd=tmp_path)
    assert result.returncode == 2 and "cache_ttl must be a duration" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_durations() -> None:
    assert parse_duration("90") == parse_duration("90s") == 90
    assert parse_duration("30m") == 1800
    assert parse_duration("12h") == 43200
    assert parse_duration("7d") == 604800
    assert parse_duration("1.5h") == 5400
    for bad in ("0", "-1s", "1w", "", "h", "1 hour", True):
        with pytest.raises(ConfigError):
            parse_duration(bad)
    assert load_settings(env={"DISTSHOT_CACHE_TTL": "2h"}).cache_ttl == 7200
    assert load_settings(env={}).cache_ttl is None


def test_cache_ttl_travels_on_the_wire_and_the_wire_stays_strict() -> None:
    sent = request("b1", ttl=3600.0)
    assert ShotRequest.from_wire(sent.to_wire()) == sent
    assert ShotRequest.from_wire(request("b1").to_wire()).cache_ttl is None
    for bad in ("1h", True, 0, -5, float("nan"), float("inf"), 1e12):
        with pytest.raises(InvalidRequest):
            ShotRequest.from_wire({**sent.to_wire(), "cache_ttl": bad})
    # The batch becomes a folder in every storage: nothing that could leave it.
    for batch in ("../up", "a/b", "a.b", "x" * 101):
        with pytest.raises(InvalidRequest):
            ShotRequest.from_wire({**sent.to_wire(), "batch": batch})
