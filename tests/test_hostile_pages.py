"""Pages that try to wedge a run fail or succeed within their timeout, and the next URL works."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import PageServer, by_line, read_manifest, run_cli, start_server, stop_server

TIMEOUT = 4


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory: pytest.TempPathFactory) -> Any:
    server = start_server()
    base = server.base
    lines = [
        f"{base}/hang",  # 1: accepts the connection, never answers
        f"{base}/never-loads",  # 2: an image that never arrives, so 'load' never fires
        f"{base}/jsloop.html",  # 3: while(true){}
        f"{base}/dialog.html",  # 4: alert, confirm, prompt
        f"{base}/popup.html",  # 5: window.open twice
        f"{base}/download",  # 6: Content-Disposition: attachment
        f"{base}/loop",  # 7: redirects to itself forever
        f"{base}/solid.html",  # 8: an ordinary page after all of that
    ]
    work = tmp_path_factory.mktemp("hostile")
    urls = work / "urls.jsonl"
    urls.write_text("".join(json.dumps({"url": u, "timeout": TIMEOUT}) + "\n" for u in lines))
    # One job at a time, so a wedged job would visibly delay the next one.
    result = run_cli(
        "shoot",
        str(urls),
        "-o",
        str(work / "shots"),
        "--allow-private",
        "--concurrency",
        "1",
        env={"DISTSHOT_MAX_ATTEMPTS": "1"},
    )
    yield server, result, by_line(read_manifest(work / "shots" / "manifest.jsonl"))
    stop_server(server)


def within_timeout(record: dict[str, Any]) -> bool:
    return record["timings"]["total_ms"] < (TIMEOUT + 5) * 1000


def test_every_line_has_a_record_and_the_run_exits_1(hostile_run: Any) -> None:
    _, result, records = hostile_run
    assert sorted(records) == list(range(1, 9))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr


def test_server_that_never_answers_times_out(hostile_run: Any) -> None:
    record = hostile_run[2][1]
    assert record["status"] == "failed"
    assert record["error"]["type"] == "NavigationTimeout"
    assert within_timeout(record)


def test_page_that_never_finishes_loading_times_out(hostile_run: Any) -> None:
    record = hostile_run[2][2]
    assert record["status"] == "failed"
    assert record["error"]["type"] == "NavigationTimeout"
    assert within_timeout(record)


def test_endless_javascript_loop_is_cut_off(hostile_run: Any) -> None:
    record = hostile_run[2][3]
    assert record["status"] == "failed"
    assert record["error"]["type"] in ("NavigationTimeout", "BrowserCrashed")
    assert within_timeout(record)


def test_dialogs_are_dismissed(hostile_run: Any) -> None:
    record = hostile_run[2][4]
    assert record["status"] == "ok"
    assert record["title"] == "dialogs done"
    assert within_timeout(record)


def test_popups_are_closed_and_the_opener_captured(hostile_run: Any) -> None:
    record = hostile_run[2][5]
    assert record["status"] == "ok"
    assert record["title"] == "popup"


def test_downloads_are_refused(hostile_run: Any) -> None:
    record = hostile_run[2][6]
    assert record["status"] == "failed"
    assert record["error"]["type"] == "DownloadRefused"
    assert within_timeout(record)


def test_redirect_loop_fails_as_such(hostile_run: Any) -> None:
    record = hostile_run[2][7]
    assert record["status"] == "failed"
    assert record["error"]["type"] == "RedirectLoop"


def test_next_url_still_works(hostile_run: Any) -> None:
    record = hostile_run[2][8]
    assert record["status"] == "ok"
    assert record["title"] == "solid"
    assert Path(record["location"].removeprefix("file://")).is_file()


def test_no_download_was_written_anywhere(hostile_run: Any, tmp_path: Path) -> None:
    server: PageServer = hostile_run[0]
    assert "/download" in server.seen.paths()
    assert not list(Path.cwd().glob("file.bin"))
