"""The report's page (distshot/report/assets) in a real Chromium, as a user sees it: report
folders written from the folder contract by tests/reportkit.py, opened from file:// (and
over http on 127.0.0.1 for the live gallery). One browser for the module."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright
from reportkit import Record, make_image, manifest_record, synthetic_report, write_report

from distshot.engines.chromium import chromium_flags

TIMES = "\N{MULTIPLICATION SIGN}"  # how the page writes sizes (1280 x 800) and group sizes

# ---- fixtures: one browser; a page per test that fails the test on any script error ----


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    driver: Playwright = sync_playwright().start()
    browser = driver.chromium.launch(
        executable_path="/usr/bin/chromium", args=chromium_flags(("--no-sandbox",))
    )
    yield browser
    browser.close()
    driver.stop()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert errors == [], errors


def open_report(page: Page, index: Path, hash: str = "") -> None:
    page.goto(index.as_uri() + hash)
    expect(page.locator("html")).to_have_attribute("data-state", "ready")


# ---- the data: a small report, a diff, 10,000 records ----

SMALL = [
    # (url, status, http_status, title, group, error)
    ("https://alpha.example/", "ok", 200, "Alpha home", 0, None),
    ("https://alpha.example/about", "ok", 200, "Alpha about", 0, None),
    ("https://beta.example/", "ok", 301, "Beta shop", 0, None),
    ("https://gamma.example/missing", "ok", 404, "Not Found", 1, None),
    ("https://delta.example/", "ok", 500, "Delta down", 1, None),
    ("https://epsilon.example/", "ok", 200, "Epsilon", None, None),
    ("https://zeta.example/", "ok", None, "<b>Zeta</b>", None, None),
    ("https://slow.example/", "failed", None, None, None, ("NavigationTimeout", "took over 30 s")),
    ("https://down.example/", "failed", None, None, None, ("NetworkError", "ERR_REFUSED")),
    ("javascript:alert(1)", "rejected", None, None, None, ("InvalidUrl", "only http(s)")),
]


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Record]]:
    out = tmp_path_factory.mktemp("small")
    records = []
    for i, (url, status, http, title, group, error) in enumerate(SMALL):
        record = manifest_record(i + 1, url, status)
        record.update(http_status=http, title=title, _group=group, _source=0)
        if error:
            record["error"] = {"type": error[0], "message": error[1]}
        record["_thumb"] = record["_image"] = None
        if status == "ok":
            record["_thumb"] = f"thumbs/{i:06d}.webp"
            record["_image"] = f"shots/{i:06d}.png"
            make_image(out / record["_thumb"], (40 * i, 120, 200))
            make_image(out / record["_image"], (40 * i, 120, 200), size=(640, 400))
        records.append(record)
    groups = [
        {"id": 0, "phash": "c3d4c3d4c3d4c3d4", "size": 3, "members": [0, 1, 2]},
        {"id": 1, "phash": "0f0f0f0f0f0f0f0f", "size": 2, "members": [3, 4]},
    ]
    return write_report(out, records, groups=groups, title="small report"), records


# (change, changed_ratio, phash_distance) in the page's order: changed (largest ratio
# first), failed, new, gone, unchanged
DIFF = [
    ("changed", 0.2, 6),
    ("changed", 0.05, 2),
    ("failed", None, None),
    ("new", None, None),
    ("gone", None, None),
    ("unchanged", 0.0, 0),
]


@pytest.fixture(scope="module")
def diff(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("diff")
    rows: list[Record] = []
    for i, (change, ratio, distance) in enumerate(DIFF):
        url = f"https://{change}-{i}.example/"
        old = None if change == "new" else manifest_record(i + 1, url)
        new = None if change == "gone" else manifest_record(i + 1, url, bytes=30_000 + i)
        error = None
        if change == "failed" and new is not None:
            error = {"type": "NavigationTimeout", "message": "the new shot timed out"}
            new = manifest_record(i + 1, url, "failed", error=error)
        if i == 0 and new is not None:
            new["height"] = 960
        row: Record = {
            "url": url,
            "image_key": f"{i:06d}.png",
            "change": change,
            "changed_ratio": ratio,
            "phash_distance": distance,
            "size_changed": i == 0,
            "old": old,
            "new": new,
            "diff_image": f"diffs/{i:06d}.png" if change == "changed" else None,
            "error": error,
        }
        for side, record in (("old", old), ("new", new)):
            ok = record is not None and record["status"] == "ok"
            row[f"_{side}_thumb"] = f"thumbs/{side}-{i:06d}.webp" if ok else None
            row[f"_{side}_image"] = f"shots/{side}-{i:06d}.png" if ok else None
            if ok:
                make_image(out / f"thumbs/{side}-{i:06d}.webp", (200, 60 * i, 60))
                make_image(out / f"shots/{side}-{i:06d}.png", (200, 60 * i, 60), (640, 400))
        row["_diff_image"] = row["diff_image"]
        if row["diff_image"]:
            make_image(out / row["diff_image"], (255, 0, 0))
        rows.append(row)
    return write_report(out, rows, kind="diff", title="old vs new")


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic_report(tmp_path_factory.mktemp("big"), 10_000)


def chip(page: Page, facet: str, value: str) -> Any:
    return page.locator(f'.chip[data-facet="{facet}"][data-value="{value}"]')


# ---- the report ----


def test_a_report_opens_from_disk_with_a_card_per_record_and_its_counts(
    page: Page, small: tuple[Path, list[Record]]
) -> None:
    index, records = small
    open_report(page, index)
    cards = page.locator(".card")
    expect(cards).to_have_count(len(records))
    expected = {
        ("status", "ok"): 7,
        ("status", "failed"): 2,
        ("status", "rejected"): 1,
        ("http", "2xx"): 3,
        ("http", "3xx"): 1,
        ("http", "4xx"): 1,
        ("http", "5xx"): 1,
        ("http", "none"): 4,
    }
    for (facet, value), n in expected.items():
        expect(chip(page, facet, value).locator(".n")).to_have_text(str(n))
    expect(page.locator("#shown")).to_have_text("10 shots")
    # every card names its URL; an ok one shows its thumbnail, lazily, with the URL as alt
    for record, card in zip(records, cards.all(), strict=True):
        assert card.get_attribute("title") == record["url"]
        expect(card.locator(".badge")).to_have_text(record["status"])
    first = cards.first.locator("img")
    assert first.get_attribute("src") == records[0]["_thumb"]
    assert first.get_attribute("alt") == records[0]["url"]
    assert first.get_attribute("loading") == "lazy"
    expect(cards.nth(7)).to_contain_text("NavigationTimeout")
    # on a phone-sized screen: one column, nothing wider than the screen
    page.set_viewport_size({"width": 390, "height": 800})
    page.wait_for_function("document.querySelectorAll('.card')[1].getBoundingClientRect().x < 50")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390


def test_status_http_and_search_filter_the_cards_and_stay_in_the_hash(
    page: Page, small: tuple[Path, list[Record]]
) -> None:
    index, _ = small
    open_report(page, index)
    cards = page.locator(".card")
    chip(page, "status", "failed").click()
    expect(cards).to_have_count(2)
    chip(page, "status", "rejected").click()
    expect(cards).to_have_count(3)
    expect(chip(page, "status", "rejected")).to_have_attribute("aria-pressed", "true")
    page.locator("#clear").click()
    chip(page, "http", "4xx").click()
    expect(cards).to_have_count(1)
    expect(cards.first).to_contain_text("gamma.example/missing")
    chip(page, "http", "5xx").click()
    expect(cards).to_have_count(2)
    page.locator("#clear").click()
    expect(cards).to_have_count(10)
    # search: URL or title, as you type
    page.locator("#q").press_sequentially("alpha")
    expect(cards).to_have_count(2)
    page.locator("#q").fill("not found")
    expect(cards).to_have_count(1)
    expect(cards.first).to_contain_text("Not Found")
    page.locator("#q").fill("beta")
    expect(cards).to_have_count(1)
    chip(page, "status", "ok").click()
    expect(page).to_have_url(re.compile(r"#q=beta&status=ok$"))
    expect(page.locator("#shown")).to_have_text("1 of 10 shown")
    # a reload (or a shared link) shows the same
    page.reload()
    expect(page.locator("html")).to_have_attribute("data-state", "ready")
    expect(page.locator("#q")).to_have_value("beta")
    expect(chip(page, "status", "ok")).to_have_attribute("aria-pressed", "true")
    expect(cards).to_have_count(1)


def flat_fields(record: Record) -> dict[str, Any]:
    fields = {}
    for key, value in record.items():
        if key.startswith("_"):
            continue
        if isinstance(value, dict):
            fields.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            fields[key] = value
    return fields


def test_the_detail_view_shows_every_field_and_the_full_image(
    page: Page, small: tuple[Path, list[Record]]
) -> None:
    index, records = small
    open_report(page, index)
    page.locator(".card").first.click()
    dialog = page.locator("dialog#detail")
    expect(dialog).to_be_visible()
    expect(dialog.locator("h2")).to_have_text(records[0]["url"])
    for name, value in flat_fields(records[0]).items():
        row = dialog.locator(f'tr[data-field="{name}"] td')
        expect(row).to_have_count(1)
        if isinstance(value, str) and value:
            expect(row).to_contain_text(value)
    expect(dialog.locator('tr[data-field="timings.navigate_ms"] td')).to_have_text("341 ms")
    image = dialog.locator("img.full")
    assert image.get_attribute("src") == records[0]["_image"]
    page.wait_for_function("document.querySelector('img.full').naturalWidth === 640")
    assert dialog.locator("a.open").get_attribute("href") == records[0]["_image"]
    expect(page).to_have_url(re.compile(r"#open=0$"))
    # the next shot with the arrow key; Esc closes, and the hash forgets it
    page.keyboard.press("ArrowRight")
    expect(dialog.locator("h2")).to_have_text(records[1]["url"])
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(page).not_to_have_url(re.compile("open="))
    # a failed shot: its error, flattened
    page.locator(".card").nth(7).click()
    expect(dialog.locator('tr[data-field="error.type"] td')).to_have_text("NavigationTimeout")
    expect(dialog.locator('tr[data-field="error.message"] td')).to_have_text("took over 30 s")
    expect(dialog.locator("img.full")).to_have_count(0)
    page.keyboard.press("Escape")
    # what the pages shot wrote is text, never markup, and never a javascript: link
    expect(page.locator(".card").nth(6).locator(".title")).to_have_text("<b>Zeta</b>")
    assert page.locator(".card b").count() == 0
    page.locator(".card").nth(9).click()
    expect(dialog.locator('tr[data-field="url"] td')).to_have_text("javascript:alert(1)")
    expect(dialog.locator('tr[data-field="url"] a')).to_have_count(0)


def test_a_lookalike_group_opens_as_its_members(
    page: Page, small: tuple[Path, list[Record]]
) -> None:
    index, records = small
    open_report(page, index)
    page.locator('.tab[data-view="groups"]').click()
    stacks = page.locator(".card.stack")
    expect(stacks).to_have_count(2)
    expect(stacks.first.locator(".count")).to_have_text(f"{TIMES}3")
    expect(stacks.nth(1).locator(".count")).to_have_text(f"{TIMES}2")
    assert stacks.first.locator("img").get_attribute("src") == records[0]["_thumb"]
    stacks.first.click()
    members = page.locator(".card")
    expect(members).to_have_count(3)
    assert [m.get_attribute("title") for m in members.all()] == [r["url"] for r in records[:3]]
    members.nth(2).click()
    expect(page.locator("dialog#detail h2")).to_have_text(records[2]["url"])
    # back closes the detail, back again is the list of groups
    page.go_back()
    expect(page.locator("dialog#detail")).to_be_hidden()
    page.go_back()
    expect(page.locator(".card.stack")).to_have_count(2)


def test_the_failures_view_lists_error_type_and_message(
    page: Page, small: tuple[Path, list[Record]]
) -> None:
    index, _ = small
    open_report(page, index)
    page.locator('.tab[data-view="failures"]').click()
    rows = page.locator("table.failures tbody tr")
    expect(rows).to_have_count(3)
    expected = [
        ("https://slow.example/", "failed", "NavigationTimeout", "took over 30 s"),
        ("https://down.example/", "failed", "NetworkError", "ERR_REFUSED"),
        ("javascript:alert(1)", "rejected", "InvalidUrl", "only http(s)"),
    ]
    for row, (url, status, kind, message) in zip(rows.all(), expected, strict=True):
        cells = row.locator("td").all_inner_texts()
        assert cells[1:5] == [url, status, kind, message]
    expect(page.locator(".errsum")).to_contain_text("NavigationTimeout 1")
    rows.nth(1).click()
    expect(page.locator("dialog#detail h2")).to_have_text("https://down.example/")


# ---- the diff ----


def test_a_diff_shows_changed_first_side_by_side_with_a_slider(page: Page, diff: Path) -> None:
    open_report(page, diff)
    cards = page.locator(".card")
    expect(cards).to_have_count(6)
    for change in ["changed", "failed", "new", "gone", "unchanged"]:
        n = 2 if change == "changed" else 1
        expect(chip(page, "change", change).locator(".n")).to_have_text(str(n))
    changes = [c.locator(".badge").inner_text() for c in cards.all()]
    assert changes == ["changed", "changed", "failed", "new", "gone", "unchanged"]
    srcs = [img.get_attribute("src") for img in cards.first.locator(".slot img").all()]
    assert srcs == ["thumbs/old-000000.webp", "thumbs/new-000000.webp", "diffs/000000.png"]
    expect(cards.first).to_contain_text("20.00 %")
    expect(cards.nth(3).locator(".slot img")).to_have_count(1)  # new: only the new side
    chip(page, "change", "new").click()
    expect(cards).to_have_count(1)
    page.locator("#clear").click()
    # the detail of a changed pair: old and new under a divider, the diff image, the figures
    cards.first.click()
    dialog = page.locator("dialog#detail")
    expect(dialog.locator(".ratio")).to_have_text("20.00 %")
    expect(dialog.locator(".phash")).to_have_text("6")
    expect(dialog.locator(".size")).to_have_text(f"1280{TIMES}800 → 1280{TIMES}960 (changed)")
    assert dialog.locator(".compare img.old").get_attribute("src") == "shots/old-000000.png"
    assert dialog.locator(".compare img.new").get_attribute("src") == "shots/new-000000.png"
    assert dialog.locator(".diffimg img").get_attribute("src") == "diffs/000000.png"
    clip = "getComputedStyle(document.querySelector('.compare img.old')).clipPath"
    assert page.evaluate(clip) == "inset(0px 50% 0px 0px)"
    dialog.locator(".divider-range").fill("20")
    assert page.evaluate(clip) == "inset(0px 80% 0px 0px)"
    box = dialog.locator(".compare").bounding_box()
    assert box is not None
    page.mouse.click(box["x"] + box["width"] * 0.75, box["y"] + 20)  # drag the divider
    expect(dialog.locator(".divider-range")).to_have_value("75")
    dialog.locator("button.mode", has_text="Old").click()
    visible = "getComputedStyle(document.querySelector('.compare img.{}')).visibility"
    assert page.evaluate(visible.format("new")) == "hidden"
    assert page.evaluate(visible.format("old")) == "visible"
    assert page.evaluate(clip) == "none"
    # old | new for every field, the differing ones marked
    expect(dialog.locator('tr.differs[data-field="height"] td')).to_have_text(["800", "960"])


# ---- scale, and what the page may fetch ----


def test_ten_thousand_records_keep_the_dom_small_and_search_works(page: Page, big: Path) -> None:
    open_report(page, big)
    expect(page.locator("#shown")).to_have_text("10,000 shots")
    expect(chip(page, "status", "failed").locator(".n")).to_have_text("1,000")
    counts = "[document.querySelectorAll('img').length, document.querySelectorAll('.card').length]"
    images, cards = page.evaluate(counts)
    assert 0 < images <= 200 and 0 < cards <= 200
    # the end of the list: its last card, and still a bounded DOM
    page.evaluate("window.scrollTo(0, document.documentElement.scrollHeight)")
    expect(page.locator('.card[title="https://site-09999.example/"]')).to_be_visible()
    images, cards = page.evaluate(counts)
    assert images <= 200 and cards <= 200
    page.locator("#q").fill("item 04321")
    expect(page.locator(".card")).to_have_count(1)
    expect(page.locator(".card")).to_have_attribute("title", "https://site-04321.example/")
    page.locator("#q").fill("site-0999")
    expect(page.locator(".card")).to_have_count(10)


def test_no_request_leaves_the_report_folder(
    page: Page, small: tuple[Path, list[Record]], diff: Path
) -> None:
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    for index, views in ((small[0], ["groups", "failures"]), (diff, ["failures"])):
        folder = index.parent.as_uri() + "/"
        requests.clear()
        open_report(page, index)
        page.locator(".card").first.click()
        expect(page.locator("dialog#detail img").first).to_be_visible()
        page.keyboard.press("Escape")
        for view in views:
            page.locator(f'.tab[data-view="{view}"]').click()
            expect(page.locator(f'.tab[data-view="{view}"]')).to_have_attribute(
                "aria-current", "page"
            )
        assert any("/thumbs/" in url for url in requests)
        assert any("/data/records-0000.js" in url for url in requests)
        outside = [url for url in requests if not url.startswith(folder)]
        assert outside == []


# ---- the live gallery ----


class LiveBatch:
    """A batch in progress: each poll of the manifest returns more records; the last one
    says done. It ignores ?offset= and sends every record each time, as a server may."""

    def __init__(self, stages: list[list[Record]]) -> None:
        self.stages = stages
        self.polls: list[str] = []

    def respond(self, path: str) -> tuple[bytes, dict[str, str]]:
        self.polls.append(path)
        stage = min(len(self.polls), len(self.stages)) - 1
        body = "".join(json.dumps(r) + "\n" for r in self.stages[stage])
        final = stage == len(self.stages) - 1
        return body.encode(), {"X-Distshot-Batch-Status": "done" if final else "running"}


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[tuple[str, LiveBatch]]:
    def record(line: int, status: str = "ok", **fields: Any) -> Record:
        return manifest_record(line, f"https://live-{line}.example/", status, **fields)

    first = record(1, _i=0, _thumb="thumbs/000000.webp", _image=None, _group=None)
    make_image(tmp_path / "thumbs/000000.webp", (10, 200, 10))
    make_image(tmp_path / "shots/000003.png", (10, 10, 200))
    # as the service sends them: "_" fields when it has them, none at all for line 2
    second = record(2)
    third = record(3, "failed", _i=2, error={"type": "NetworkError", "message": "refused"})
    fourth = record(4, _i=3, _thumb=None, _image="shots/000003.png")
    fifth = record(5, _i=4, _thumb=None, _image=None)
    batch = LiveBatch(
        [[first, second], [first, second, third, fourth], [first, second, third, fourth, fifth]]
    )
    live = {"manifest_url": "api/manifest.jsonl", "poll_ms": 50}
    write_report(tmp_path, [first], live=live, title="live batch")

    class Handler(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            if not self.path.startswith("/api/manifest.jsonl"):
                return super().do_GET()
            body, headers = batch.respond(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ndjson")
            self.send_header("Content-Length", str(len(body)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(tmp_path)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", batch
    server.shutdown()
    server.server_close()


def test_the_live_gallery_adds_records_as_they_come_and_stops_when_done(
    page: Page, live_server: tuple[str, LiveBatch]
) -> None:
    base, batch = live_server
    # a filter set before the records come stays set
    page.goto(base + "index.html#status=ok")
    status = page.locator("#live-status")
    expect(status).to_have_attribute("data-status", "done")
    cards = page.locator(".card")
    expect(cards).to_have_count(4)  # five records, one failed (filtered out), none twice
    expect(chip(page, "status", "ok").locator(".n")).to_have_text("4")
    expect(chip(page, "status", "failed").locator(".n")).to_have_text("1")
    titles = [c.get_attribute("title") for c in cards.all()]
    assert titles == [f"https://live-{n}.example/" for n in (1, 2, 4, 5)]
    # no thumbnail yet but an image: the image, scaled
    assert cards.nth(2).locator("img").get_attribute("src") == "shots/000003.png"
    assert batch.polls[0] == "/api/manifest.jsonl?offset=0"
    assert batch.polls[1] == "/api/manifest.jsonl?offset=2"
    # and no poll after "done" (ten poll intervals)
    polls = len(batch.polls)
    page.wait_for_timeout(500)
    assert len(batch.polls) == polls == 3
