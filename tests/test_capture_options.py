"""Every capture option changes the image as it should (real Chromium, local pages)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import PageServer, by_line, read_manifest, run_cli
from PIL import Image

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


def pixel(record: dict[str, Any], xy: tuple[int, int] | None = None) -> tuple[int, int, int]:
    with Image.open(Path(record["location"].removeprefix("file://"))) as image:
        rgb = image.convert("RGB")
        x, y = xy or (rgb.width // 2, rgb.height // 2)
        return rgb.getpixel((x, y))  # type: ignore[return-value]


def close(a: tuple[int, int, int], b: tuple[int, int, int], tolerance: int = 40) -> bool:
    return all(abs(x - y) <= tolerance for x, y in zip(a, b, strict=True))


@pytest.fixture(scope="module")
def shot_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[PageServer, dict[int, dict[str, Any]]]:
    from conftest import start_server, stop_server

    server = start_server()
    base = server.base
    lines = [
        {"url": f"{base}/solid.html"},
        {"url": f"{base}/solid.html", "width": 640, "height": 480},
        {"url": f"{base}/tall?h=3000", "full_page": True},
        {"url": f"{base}/solid.html", "format": "jpeg", "quality": 30},
        {"url": f"{base}/solid.html", "scale": 2, "width": 300, "height": 200},
        {"url": f"{base}/slow-image.html?ms=5000", "wait_until": "domcontentloaded"},
        {"url": f"{base}/slow-image.html", "wait_until": "load"},
        # The controls (no waiting) change only after 5 s, so a busy machine cannot blur them.
        {"url": f"{base}/idle.html?ms=5000", "wait_until": "load"},
        {"url": f"{base}/idle.html", "wait_until": "networkidle"},
        {"url": f"{base}/late.html?ms=5000"},
        {"url": f"{base}/late.html", "wait_for": "#late"},
        {"url": f"{base}/delayed-color.html?ms=5000"},
        {"url": f"{base}/delayed-color.html", "delay": 1500},
        {"url": f"{base}/echo?ua", "user_agent": "distshot-test/1.0"},
        {"url": f"{base}/echo?hdr", "headers": {"X-Distshot-Test": "yes"}},
        {"url": f"{base}/hang", "timeout": 2},
        {"url": f"{base}/status/404"},
        {"url": f"{base}/redirect?to=/solid.html"},
        {"url": f"{base}/solid.html", "format": "webp"},
        {"url": f"{base}/tall?h=3000"},
    ]
    work = tmp_path_factory.mktemp("options")
    urls = work / "urls.jsonl"
    urls.write_text("".join(json.dumps(line) + "\n" for line in lines))
    result = run_cli(
        "shoot",
        str(urls),
        "-o",
        str(work / "shots"),
        "--allow-private",
        "--concurrency",
        "4",
        env={"DISTSHOT_MAX_ATTEMPTS": "1"},
    )
    assert result.returncode == 1, result.stderr  # the hang and webp lines are not ok
    records = by_line(read_manifest(work / "shots" / "manifest.jsonl"))
    yield server, records
    stop_server(server)


def test_default_size_is_1280x800_png(shot_run: Any) -> None:
    _, records = shot_run
    record = records[1]
    assert record["status"] == "ok"
    assert (record["width"], record["height"], record["format"]) == (1280, 800, "png")
    with Image.open(record["location"].removeprefix("file://")) as image:
        assert image.format == "PNG" and image.size == (1280, 800)
    assert close(pixel(record), RED)


def test_width_and_height_set_the_viewport(shot_run: Any) -> None:
    record = shot_run[1][2]
    assert (record["width"], record["height"]) == (640, 480)


def test_full_page_captures_the_whole_height(shot_run: Any) -> None:
    full, viewport = shot_run[1][3], shot_run[1][20]
    assert full["height"] == 3000 and full["width"] == 1280
    assert viewport["height"] == 800


def test_jpeg_format_and_quality(shot_run: Any) -> None:
    record = shot_run[1][4]
    assert record["format"] == "jpeg"
    assert record["location"].endswith(".jpg")
    with Image.open(record["location"].removeprefix("file://")) as image:
        assert image.format == "JPEG"
    assert close(pixel(record), RED)


def test_scale_multiplies_pixels(shot_run: Any) -> None:
    record = shot_run[1][5]
    assert (record["width"], record["height"]) == (600, 400)


def test_wait_until_domcontentloaded_does_not_wait_for_images(shot_run: Any) -> None:
    assert close(pixel(shot_run[1][6]), WHITE)
    assert close(pixel(shot_run[1][7]), RED)


def test_wait_until_networkidle_waits_for_late_requests(shot_run: Any) -> None:
    assert close(pixel(shot_run[1][8]), WHITE)
    assert close(pixel(shot_run[1][9]), BLUE)


def test_wait_for_waits_for_the_element(shot_run: Any) -> None:
    assert close(pixel(shot_run[1][10]), WHITE)
    assert close(pixel(shot_run[1][11]), GREEN)


def test_delay_waits_before_capture(shot_run: Any) -> None:
    assert close(pixel(shot_run[1][12]), WHITE)
    assert close(pixel(shot_run[1][13]), BLUE)


def test_user_agent_and_headers_reach_the_server(shot_run: Any) -> None:
    server, records = shot_run
    assert records[14]["status"] == records[15]["status"] == "ok"
    echoes = {
        next(iter(r["query"]), ""): r["headers"]
        for r in server.seen.requests
        if r["path"] == "/echo"
    }
    assert echoes["ua"]["User-Agent"] == "distshot-test/1.0"
    assert "X-Distshot-Test" not in echoes["ua"]
    assert echoes["hdr"]["X-Distshot-Test"] == "yes"
    assert echoes["hdr"]["User-Agent"] != "distshot-test/1.0"


def test_timeout_fails_the_job_in_time(shot_run: Any) -> None:
    record = shot_run[1][16]
    assert record["status"] == "failed"
    assert record["error"]["type"] == "NavigationTimeout"
    assert record["timings"]["total_ms"] < 2000 + 5000  # the timeout plus clean-up grace


def test_http_error_page_is_captured_with_its_status(shot_run: Any) -> None:
    record = shot_run[1][17]
    assert record["status"] == "ok"
    assert record["http_status"] == 404
    assert record["title"] == "Status 404"


def test_redirect_metadata(shot_run: Any) -> None:
    record = shot_run[1][18]
    assert record["status"] == "ok"
    assert record["final_url"].endswith("/solid.html")
    assert record["http_status"] == 200
    assert record["title"] == "solid"
    assert len(record["sha256"]) == 64
    assert record["bytes"] == Path(record["location"].removeprefix("file://")).stat().st_size


def test_unsupported_format_is_rejected_with_reason(shot_run: Any) -> None:
    record = shot_run[1][19]
    assert record["status"] == "rejected"
    assert record["error"]["type"] == "UnsupportedOption"
    assert "webp" in record["error"]["message"]
