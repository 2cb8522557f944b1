"""`distshot shoot` end to end: records, exit codes, errors, config, concurrency, policy."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import PageServer, by_line, read_manifest, run_cli, start_server, stop_server


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_all_ok_exits_0_with_progress_and_summary(tmp_path: Path) -> None:
    urls = write(tmp_path / "u.txt", "https://a.test/1\nhttps://a.test/2\n")
    result = run_cli(
        "shoot", str(urls), "-o", str(tmp_path / "out"), "--engine", "null", "--allow-private"
    )
    assert result.returncode == 0, result.stderr
    assert "ok 0  failed 0  rejected 0" in result.stderr or "ok 1" in result.stderr  # progress
    summary = result.stderr.strip().splitlines()[-1]
    assert summary.startswith("2 done: 2 ok, 0 failed, 0 rejected")
    assert str(tmp_path / "out" / "manifest.jsonl") in summary
    records = read_manifest(tmp_path / "out" / "manifest.jsonl")
    assert {r["status"] for r in records} == {"ok"}
    for record in records:
        assert Path(record["location"].removeprefix("file://")).is_file()


def test_every_line_yields_exactly_one_record_with_a_unique_id(tmp_path: Path) -> None:
    lines = []
    for number in range(40):
        kind = number % 5
        if kind == 0:
            lines.append(json.dumps({"url": f"https://a.test/{number}", "width": 100 + number}))
        elif kind == 1:
            lines.append("{broken json")
        elif kind == 2:
            lines.append(json.dumps({"url": f"ftp://a.test/{number}"}))
        elif kind == 3:
            lines.append("")  # blank: no record
        else:
            lines.append(json.dumps({"url": f"https://a.test/{number}", "format": "gif"}))
    urls = write(tmp_path / "u.jsonl", "\n".join(lines) + "\n# trailing comment\n")
    result = run_cli(
        "shoot", str(urls), "-o", str(tmp_path / "out"), "--engine", "null", "--allow-private"
    )
    assert result.returncode == 1
    records = read_manifest(tmp_path / "out" / "manifest.jsonl")
    expected_lines = [n + 1 for n in range(40) if n % 5 != 3]
    assert sorted(r["line"] for r in records) == expected_lines
    assert len({r["id"] for r in records}) == len(records)
    statuses = {r["line"]: r["status"] for r in records}
    assert statuses[1] == "ok" and statuses[2] == statuses[3] == statuses[5] == "rejected"
    for record in records:
        assert set(record) >= {
            "id",
            "line",
            "url",
            "status",
            "engine",
            "location",
            "link",
            "final_url",
            "http_status",
            "title",
            "format",
            "width",
            "height",
            "bytes",
            "sha256",
            "cached",
            "attempts",
            "timings",
            "error",
        }
        if record["status"] == "rejected":
            assert record["error"]["message"]
            assert record["url"]  # the raw text of the line


def test_stdin_input(tmp_path: Path) -> None:
    result = run_cli(
        "shoot",
        "-",
        "-o",
        str(tmp_path / "out"),
        "--engine",
        "null",
        "--allow-private",
        input='{"url": "https://a.test/", "width": 64, "height": 32}\n',
    )
    assert result.returncode == 0, result.stderr
    (record,) = read_manifest(tmp_path / "out" / "manifest.jsonl")
    assert (record["width"], record["height"]) == (64, 32)


def test_loopback_spellings_are_rejected_before_any_browser_work(tmp_path: Path) -> None:
    hosts = ["localhost", "127.0.0.2", "[::1]", "2130706433", "0x7f.1", "169.254.169.254"]
    urls = write(tmp_path / "u.txt", "".join(f"http://{h}:9/x\n" for h in hosts))
    result = run_cli("shoot", str(urls), "-o", str(tmp_path / "out"))
    assert result.returncode == 1
    records = read_manifest(tmp_path / "out" / "manifest.jsonl")
    assert len(records) == len(hosts)
    for record in records:
        assert record["status"] == "rejected"
        assert record["error"]["type"] == "BlockedAddress"
        assert record["attempts"] == 1 and record["location"] is None


def one_line_error(result: object) -> str:
    stderr = result.stderr.strip()  # type: ignore[attr-defined]
    assert result.returncode == 2, stderr  # type: ignore[attr-defined]
    assert "Traceback" not in stderr
    return stderr


def test_usage_and_configuration_errors_are_one_line_and_exit_2(tmp_path: Path) -> None:
    urls = write(tmp_path / "u.txt", "https://a.test/\n")
    out = str(tmp_path / "out")
    message = one_line_error(run_cli("shoot", str(urls), "-o", out, "--engine", "warp"))
    assert "unknown engine 'warp'" in message and "playwright" in message
    assert len(message.splitlines()) == 1
    assert "no such file" in one_line_error(run_cli("shoot", str(tmp_path / "missing.txt")))
    assert "header" in one_line_error(run_cli("shoot", str(urls), "--header", "no-colon"))
    csv_file = write(tmp_path / "u.csv", "address\nhttps://a.test/\n")
    assert "'url' column" in one_line_error(run_cli("shoot", str(csv_file), "-o", out))
    config = write(tmp_path / "bad.toml", "widht = 3\n")
    assert "unknown setting 'widht'" in one_line_error(
        run_cli("shoot", str(urls), "--config", str(config))
    )
    blocker = write(tmp_path / "blocker", "file")
    message = one_line_error(
        run_cli("shoot", str(urls), "--engine", "null", "--storage", str(blocker / "sub"))
    )
    assert str(blocker / "sub") in message
    message = one_line_error(
        run_cli("shoot", str(urls), "--engine", "null", env={"DISTSHOT_CONCURRENCY": "lots"})
    )
    assert "concurrency" in message


def test_settings_precedence_flag_over_env_over_file(tmp_path: Path) -> None:
    urls = write(tmp_path / "u.txt", "https://a.test/\n")
    write(
        tmp_path / "distshot.toml",
        'engine = "playwright"\nallow_private = true\n[capture]\nwidth = 320\nheight = 200\n',
    )
    # env beats the file (engine), the file's capture defaults apply (width/height)
    result = run_cli("shoot", str(urls), "-o", "out", cwd=tmp_path, env={"DISTSHOT_ENGINE": "null"})
    assert result.returncode == 0, result.stderr
    (record,) = read_manifest(tmp_path / "out" / "manifest.jsonl")
    assert (record["engine"], record["width"], record["height"]) == ("null", 320, 200)
    # a flag beats both
    result = run_cli(
        "shoot",
        str(urls),
        "-o",
        "out",
        "--width",
        "100",
        "--engine",
        "null",
        cwd=tmp_path,
        env={"DISTSHOT_ENGINE": "playwright"},
    )
    assert result.returncode == 0, result.stderr
    (record,) = read_manifest(tmp_path / "out" / "manifest.jsonl")
    assert (record["engine"], record["width"], record["height"]) == ("null", 100, 200)


def test_concurrency_sets_the_number_of_jobs_in_flight(
    tmp_path: Path, http_server: PageServer
) -> None:
    urls = write(
        tmp_path / "u.txt", "".join(f"{http_server.base}/slow?ms=1500&n={n}\n" for n in range(9))
    )
    result = run_cli(
        "shoot", str(urls), "-o", str(tmp_path / "out"), "--allow-private", "--concurrency", "3"
    )
    assert result.returncode == 0, result.stderr
    slow = [r for r in http_server.seen.requests if r["path"] == "/slow"]
    assert len(slow) == 9
    assert http_server.seen.max_active == 3


def test_redirects_and_subresources_to_refused_addresses_are_blocked(tmp_path: Path) -> None:
    # Given a page server on 127.0.0.1 (allowed by config) and an "internal" one on
    # 127.0.0.2 (loopback, so refused), both on this machine.
    public, internal = start_server("127.0.0.1"), start_server("127.0.0.2")
    try:
        page = tmp_path / "page.html"
        write(page, f"<title>with image</title><img src='{internal.base}/secret.png'>")
        lines = [
            f"{public.base}/redirect?to={internal.base}/secret",
            f"{public.base}/solid.html",
        ]
        urls = write(tmp_path / "u.txt", "\n".join(lines) + "\n")
        write(tmp_path / "distshot.toml", 'allow_networks = ["127.0.0.1/32"]\nmax_attempts = 1\n')
        # When distshot follows the redirect, then the guard refuses the connection.
        result = run_cli("shoot", str(urls), "-o", "out", cwd=tmp_path)
        records = by_line(read_manifest(tmp_path / "out" / "manifest.jsonl"))
        assert records[1]["status"] == "failed", result.stderr
        assert records[1]["error"]["type"] == "BlockedAddress"
        assert "127.0.0.2" in records[1]["error"]["message"]
        assert records[2]["status"] == "ok", records[2]["error"]
        assert internal.seen.requests == []
        assert "/redirect" in public.seen.paths()
    finally:
        stop_server(public)
        stop_server(internal)
