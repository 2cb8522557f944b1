"""Local storage writes atomically; the manifest survives a torn last line."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from distshot.core.errors import StorageError
from distshot.core.manifest import ManifestWriter, recorded_lines
from distshot.core.models import Capture, ShotRequest
from distshot.core.options import CaptureOptions
from distshot.core.service import capture_request
from distshot.engines.null import NullEngine
from distshot.storage.local import LocalStorage


def test_put_writes_the_file_and_returns_file_urls(tmp_path: Path) -> None:
    storage = LocalStorage(f"file://{tmp_path}/out")
    storage.check()
    stored = storage.put("a/b.png", b"\x89PNG-data", "image/png", {})
    target = tmp_path / "out" / "a" / "b.png"
    assert target.read_bytes() == b"\x89PNG-data"
    assert stored.location == stored.link == target.as_uri()
    assert not [p for p in target.parent.iterdir() if p.name.endswith(".part")]


@pytest.mark.parametrize("url_suffix", ["", "?fsync=1"])
def test_a_crash_mid_write_never_leaves_a_partial_file_under_the_final_name(
    tmp_path: Path, url_suffix: str
) -> None:
    # Given an existing image, when a process dies (SIGKILL) after writing the new bytes
    # but before the rename, then the final name still holds the complete old image.
    (tmp_path / "shot.png").write_bytes(b"old-complete-image")
    script = textwrap.dedent(f"""
        import os, signal
        from distshot.storage import local
        def die(*args):
            os.kill(os.getpid(), signal.SIGKILL)
        local.os.replace = die
        storage = local.LocalStorage("file://{tmp_path}{url_suffix}")
        assert storage.fsync == {url_suffix == "?fsync=1"}
        storage.put("shot.png", b"new" * 1_000_000, "image/png", {{}})
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert result.returncode == -9, result.stderr
    assert (tmp_path / "shot.png").read_bytes() == b"old-complete-image"
    leftovers = [p for p in tmp_path.iterdir() if p.name != "shot.png"]
    assert len(leftovers) == 1
    assert leftovers[0].name.startswith(".shot.png.") and leftovers[0].name.endswith(".part")
    assert leftovers[0].stat().st_size == 3_000_000  # fully written, never renamed


def test_names_outside_the_folder_are_refused(tmp_path: Path) -> None:
    with pytest.raises(StorageError):
        LocalStorage(str(tmp_path)).put("../escape.png", b"x", "image/png", {})


def test_unwritable_folder_fails_at_check_naming_the_folder(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(StorageError) as info:
        LocalStorage(str(blocker / "sub")).check()
    assert str(blocker / "sub") in info.value.message


def test_object_names_are_deterministic_and_collision_free() -> None:
    def name(url: str, **opts: object) -> str:
        return ShotRequest("b:1", 1, url, CaptureOptions(**opts)).object_name()  # type: ignore[arg-type]

    assert name("https://a.test/x") == name("https://a.test/x")
    assert name("https://a.test/x", timeout=5) == name("https://a.test/x")  # same image
    names = {
        name("https://a.test/x"),
        name("https://a.test/y"),
        name("https://a.test/x?q=1"),
        name("https://a.test/x", width=800),
        name("https://a.test/x", format="jpeg"),
        name("https://a.test/x", full_page=True),
    }
    assert len(names) == 6
    assert name("https://a.test/x", format="jpeg").endswith(".jpg")


def test_manifest_cuts_a_torn_last_line_before_appending(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text('{"id": "b:1", "line": 1, "status": "ok"}\n{"id": "b:2", "line": 2, "sta')
    assert list(recorded_lines(path)) == [1]
    with ManifestWriter(path) as writer:
        writer.write({"id": "b:3", "line": 3, "status": "ok"})
    lines = path.read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == ["b:1", "b:3"]


class ThreadRecordingStorage(LocalStorage):
    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.put_threads: list[str] = []

    def put(self, name: str, data: bytes, content_type: str, metadata: dict[str, str]) -> Any:
        self.put_threads.append(threading.current_thread().name)
        return super().put(name, data, content_type, metadata)


class LargeImageEngine(NullEngine):
    """Answers with 2 MiB of bytes, above local storage's inline limit (1 MiB)."""

    async def capture(self, request: ShotRequest) -> Capture:
        capture = await super().capture(request)
        return dataclasses.replace(capture, image=capture.image + os.urandom(2 << 20))


@pytest.mark.parametrize(
    ("url_suffix", "large", "on_loop"),
    [
        ("", False, True),  # a small image without fsync: written from the loop's thread
        ("", True, False),  # above the inline limit: a worker thread
        ("?fsync=1", False, False),  # a disk flush never runs on the loop
    ],
)
def test_only_small_unsynced_writes_run_on_the_event_loop(
    tmp_path: Path, url_suffix: str, large: bool, on_loop: bool
) -> None:
    storage = ThreadRecordingStorage(f"file://{tmp_path}{url_suffix}")
    engine = LargeImageEngine() if large else NullEngine()

    async def shoot() -> str:
        await engine.open()
        try:
            request = ShotRequest(id="b:1", line=1, url="https://a.test/", allow_private=True)
            result = await capture_request(request, engine, storage)
            assert result.status == "ok", result.error
            return threading.current_thread().name
        finally:
            await engine.close()

    loop_thread = asyncio.run(shoot())
    assert (storage.put_threads == [loop_thread]) is on_loop, storage.put_threads


def test_a_batch_folder_removed_between_writes_is_made_again(tmp_path: Path) -> None:
    # The storage remembers the folders it made; one deleted meanwhile must not fail a write.
    storage = LocalStorage(str(tmp_path))
    storage.put("batch/a.png", b"first", "image/png", {})
    shutil.rmtree(tmp_path / "batch")
    storage.put("batch/b.png", b"second", "image/png", {})
    assert (tmp_path / "batch" / "b.png").read_bytes() == b"second"


class DeafEngine(NullEngine):
    """Ignores its timeout, like a renderer stuck in a script loop: only cancelling helps."""

    def __init__(self) -> None:
        self.cancelled = 0

    async def capture(self, request: ShotRequest) -> Capture:
        try:
            await asyncio.Event().wait()  # forever
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        raise AssertionError("unreachable")


def test_the_service_cuts_off_an_engine_that_ignores_its_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("distshot.core.service._CLEANUP_GRACE", 0.2)
    storage, engine = LocalStorage(str(tmp_path)), DeafEngine()
    options = CaptureOptions(timeout=0.3)

    async def scenario() -> tuple[Any, Any, bool]:
        stuck = ShotRequest(
            id="b:1", line=1, url="https://a.test/", options=options, allow_private=True
        )
        cut_off = await capture_request(stuck, engine, storage)
        # An outside cancel (Dramatiq interrupting the job) stays a cancel, not a timeout.
        task = asyncio.create_task(capture_request(stuck, engine, storage))
        await asyncio.sleep(0.05)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            return cut_off, None, True
        return cut_off, task.result(), False

    cut_off, answered, cancelled = asyncio.run(scenario())
    assert cut_off.status == "failed" and cut_off.transient
    assert cut_off.error == {
        "type": "NavigationTimeout",
        "message": "https://a.test/ did not finish within its 0.3s timeout",
    }
    assert cancelled, answered
    assert engine.cancelled == 2  # the engine's coroutine was cancelled both times
