"""The Blocking options end to end through `distshot shoot` and real Chromium, plus the request
matcher alone. (Every engine's pixels are the conformance suite's: test_engine_conformance.)

Made-up and real ad and tracker host names are given the page server's address with
``resolve``: no name is ever looked up in DNS."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from conftest import by_line, read_manifest, run_cli
from PIL import Image

from distshot.core.options import DEFAULT_OPTIONS, parse_options
from distshot.engines.blocking import Blocker
from distshot.testing.engine_checks import close
from distshot.testing.server import PageServer

RED, GREEN = (255, 0, 0), (0, 255, 0)
AD_HOSTS = ("news.example", "ib.adnxs.com", "sb.scorecardresearch.com")


def _pixels(record: dict[str, Any], points: list[tuple[int, int]]) -> list[tuple[int, ...]]:
    path = Path(str(record["location"]).removeprefix("file://"))
    image = Image.open(io.BytesIO(path.read_bytes())).convert("RGB")
    return [image.getpixel(p) for p in points]


def _shoot(
    tmp_path: Path, lines: list[dict[str, object]], *args: str, **env: str
) -> dict[int, dict[str, Any]]:
    urls = tmp_path / "urls.jsonl"
    urls.write_text("".join(json.dumps(line) + "\n" for line in lines))
    result = run_cli(
        "shoot",
        str(urls),
        "-o",
        str(tmp_path / "out"),
        "--allow-private",
        *args,
        env={"DISTSHOT_MAX_ATTEMPTS": "1", **env},
    )
    assert result.returncode in (0, 1), result.stderr
    return by_line(read_manifest(tmp_path / "out" / "manifest.jsonl"))


def test_shoot_blocks_ads_trackers_and_banners_and_the_manifest_counts_them(
    tmp_path: Path, pages: PageServer
) -> None:
    port = pages.server_address[1]
    pins = [arg for host in AD_HOSTS for arg in ("--resolve", f"{host}:{port}:127.0.0.1")]
    records = _shoot(
        tmp_path,
        [
            {
                "url": f"http://news.example:{port}/ads.html?case=cli",
                "block_ads": True,
                "block_trackers": True,
            },
            {"url": f"{pages.base}/consent.html", "block_cookie_banners": True},
            {"url": f"{pages.base}/solid.html"},
            # a popup with no way to refuse: hidden, never accepted, the page unlocked
            {
                "url": f"{pages.base}/consent.html?accept-only",
                "block_cookie_banners": True,
                "javascript": "document.title += ' ' + getComputedStyle(document.body).overflowY",
            },
        ],
        *pins,
    )
    ads, consent, plain, accept_only = records[1], records[2], records[3], records[4]
    # the ad iframe, the ad script and the tracker pixel: refused, counted, never requested
    assert ads["status"] == "ok", ads["error"]
    assert ads["blocked"] == 3
    assert all(close(p, GREEN) for p in _pixels(ads, [(640, 200), (640, 600)]))
    assert not [r for r in pages.seen.requests if r["path"] == "/p"]
    # the consent popup refused (its "Reject All" clicked), gone from the image
    assert consent["status"] == "ok", consent["error"]
    assert consent["title"] == "consent rejected"
    assert all(close(p, GREEN) for p in _pixels(consent, [(100, 700), (640, 400)]))
    assert consent["blocked"] is None and plain["blocked"] is None
    assert accept_only["status"] == "ok", accept_only["error"]
    assert accept_only["title"] == "consent auto"  # not "consent accepted"; scrolls again
    assert all(close(p, GREEN) for p in _pixels(accept_only, [(100, 700), (640, 400)]))


def test_requests_inside_an_allowed_cross_site_frame_are_blocked_too(
    tmp_path: Path, pages: PageServer
) -> None:
    # widgets.example is in no list: its frame loads (in a process of its own, site
    # isolation) and asks for a tracker's pixel, which block_trackers refuses all the same
    port = pages.server_address[1]
    pages.variants["outer"] = (
        "<title>outer</title><script>document.write(`<iframe "
        "src='http://widgets.example:${location.port}/v/inner'></iframe>`)</script>"
    )
    pages.variants["inner"] = (
        "<title>inner</title><script>document.write(`<img "
        "src='http://sb.scorecardresearch.com:${location.port}/p?c1=2&in-frame'>`)</script>"
    )
    hosts = ("news.example", "widgets.example", "sb.scorecardresearch.com")
    pins = [arg for host in hosts for arg in ("--resolve", f"{host}:{port}:127.0.0.1")]
    url = f"http://news.example:{port}/v/outer"
    records = _shoot(tmp_path, [{"url": url, "block_trackers": True}], *pins)
    assert records[1]["status"] == "ok", records[1]["error"]
    assert records[1]["blocked"] == 1
    paths = [r["path"] for r in pages.seen.requests]
    assert "/v/inner" in paths  # the frame itself loaded
    assert not [r for r in pages.seen.requests if "in-frame" in r["query"]]


def test_a_filter_list_of_the_users_replaces_easylist_and_websockets_are_blocked(
    tmp_path: Path, pages: PageServer
) -> None:
    # A list of one rule of the user's, given to the worker by its setting
    rules = tmp_path / "my-list.txt"
    rules.write_text("[Adblock Plus 2.0]\n! my own\n/blocking.css$stylesheet\n")
    socket_page = (
        "<title>ws</title><script>new WebSocket(`ws://${location.host}/ws?${location.hash.slice(1)}`)"
        "</script>"
    )
    pages.variants["ws"] = socket_page
    records = _shoot(
        tmp_path,
        [
            {"url": f"{pages.base}/blocking.html", "block_ads": True, "wait_for": "#done"},
            {"url": f"{pages.base}/v/ws#blocked", "block_resources": ["websocket"], "delay": 500},
            {"url": f"{pages.base}/v/ws#open", "delay": 500},
        ],
        DISTSHOT_AD_FILTERS=str(rules),
    )
    # only the stylesheet, which the user's list names, is refused
    styled = records[1]
    assert styled["status"] == "ok", styled["error"]
    assert styled["blocked"] == 1
    image, style, script, fetch = _pixels(styled, [(160, 400), (480, 400), (800, 400), (1120, 400)])
    assert close(style, GREEN)
    assert close(image, RED) and close(script, RED) and close(fetch, RED)
    # a WebSocket never reaches the server when websocket is blocked; it does otherwise
    sockets = [r["query"] for r in pages.seen.requests if r["path"] == "/ws"]
    assert {"open": ""} in sockets
    assert {"blocked": ""} not in sockets
    assert records[2]["blocked"] == 1 and records[3]["blocked"] is None


def test_a_filter_list_that_cannot_be_read_is_one_line_at_start(tmp_path: Path) -> None:
    urls = tmp_path / "urls.txt"
    urls.write_text("http://127.0.0.1:9/\n")
    missing = tmp_path / "nope.txt"
    result = run_cli(
        "shoot", str(urls), "-o", str(tmp_path / "out"), env={"DISTSHOT_AD_FILTERS": str(missing)}
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"distshot: error: ad_filters: {str(missing)!r} is not a readable file"
    ]


def test_the_matcher_globs_whole_urls_searches_regexes_and_never_refuses_the_page() -> None:
    opts = parse_options(
        {"block_urls": ["*://cdn.example/*.mp4", "re:/ads?/"], "block_resources": ["font"]},
        DEFAULT_OPTIONS,
    )
    blocker = Blocker.for_job(opts, "http://site.example/", None, None)
    assert blocker is not None
    blocker.main_frame = "main"
    refuses = blocker.refuses
    assert refuses("http://cdn.example/v/clip.mp4", "Media", "main")
    assert not refuses("http://cdn.example/v/clip.mp4?x", "Media", "main")  # a glob is whole
    assert refuses("http://site.example/ad/1.png", "Image", "main")  # a regex is searched
    assert refuses("http://site.example/f.woff2", "Font", "main")
    assert not refuses("http://site.example/f.css", "Stylesheet", "main")
    # the page's own document is never refused, whatever matches it; a frame's may be
    assert not refuses("http://site.example/ads/", "Document", "main")
    assert refuses("http://site.example/ads/", "Document", "child")
    assert Blocker.for_job(DEFAULT_OPTIONS, "http://site.example/", None, None) is None
