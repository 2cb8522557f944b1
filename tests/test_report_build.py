"""`distshot report`: the report folder's data built from a real `distshot shoot` run (one
Chromium run for the module), and the look-alike grouping on its own."""

from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import PageServer, run_cli
from PIL import Image, ImageChops
from reportdata import load_groups, load_meta, load_records, manifest_records, strip_manifest
from s3server import MotoServer

from distshot.core.perceptual import hamming, phash_hex
from distshot.report.groups import look_alike_groups
from distshot.report.thumbnails import open_top, save_thumbnail


def order_page(number: int, note: str) -> str:
    """One layout (header, sidebar, three boxes); only the small text differs."""
    return (
        f"<title>Order {number}</title><style>body{{margin:0;font:16px sans-serif}}"
        "header{background:#1d4ed8;color:#fff;height:120px;padding:20px;font-size:40px}"
        "aside{float:left;width:260px;height:640px;background:#e5e7eb}"
        "main{margin-left:300px;padding:20px}.box{height:90px;margin:16px 0;background:#fde68a}"
        f"</style><header>Shop</header><aside></aside><main><h1>Order {number}</h1>"
        f"<p>{note}</p><div class=box></div><div class=box></div><div class=box></div></main>"
    )


#: A title that would end an inline script, with a JavaScript line separator in it.
TRICKY_TITLE = "Circle </script><b> \u2028 end"
PAGES_HTML = {
    "order-1": order_page(1041, "Shipped on Monday."),
    "order-2": order_page(1042, "Shipped on Tuesday."),
    "order-3": order_page(1043, "Waiting for stock."),
    "stripes": "<title>Stripes</title><style>body{margin:0;background:repeating-linear-"
    "gradient(90deg,#000 0 80px,#fff 80px 160px)}</style><div style='height:800px'></div>",
    "circle": f"<title>{TRICKY_TITLE}</title><style>body{{margin:0;background:#111}}</style>"
    "<div style='margin:100px auto;width:600px;height:600px;border-radius:50%;"
    "background:#e11d48'></div>",
}
ORDERS = {"order-1", "order-2", "order-3"}


@pytest.fixture(scope="module")
def shot(pages: PageServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The manifest of one `distshot shoot` run: 5 ok pages, a failed one, a rejected line."""
    pages.variants.update(PAGES_HTML)
    folder = tmp_path_factory.mktemp("shots")
    urls = folder / "urls.txt"
    lines = [f"{pages.base}/v/{name}" for name in PAGES_HTML]
    lines += [f"{pages.base}/download", "ftp://127.0.0.1/not-a-page"]
    urls.write_text("\n".join(lines) + "\n")
    result = run_cli("shoot", str(urls), "-o", str(folder / "out"), "--allow-private")
    assert result.returncode == 1, result.stderr  # one failed, one rejected
    return folder / "out" / "manifest.jsonl"


@pytest.fixture(scope="module")
def report(shot: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report")
    result = run_cli("report", str(shot), "-o", str(out))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    assert "7 records, 5 thumbnails, 1 look-alike groups (3 records)" in lines[0]
    assert str(out / "index.html") in lines[0]
    return out


def name_of(record: dict[str, Any]) -> str:
    return str(record["url"]).rsplit("/", 1)[-1]


def test_near_duplicate_pages_form_one_group_and_different_pages_do_not(report: Path) -> None:
    records = load_records(report)
    groups = load_groups(report)
    assert len(groups) == 1
    group = groups[0]
    members = {name_of(records[i]) for i in group["members"]}
    assert members == ORDERS
    assert group["size"] == 3
    assert group["phash"] == records[group["members"][0]]["phash"]
    for record in records:
        expected = group["id"] if name_of(record) in ORDERS else None
        assert record["_group"] == expected, record["url"]
    meta = load_meta(report)
    assert meta["groups"] is True and meta["threshold"] == 10


def test_every_record_appears_once_with_its_report_fields(shot: Path, report: Path) -> None:
    records = load_records(report)
    manifest = manifest_records(shot)
    assert [r["_i"] for r in records] == list(range(len(manifest)))
    assert sorted(r["id"] for r in records) == sorted(r["id"] for r in manifest)
    assert {r["_source"] for r in records} == {0}
    meta = load_meta(report)
    assert meta["kind"] == "report" and meta["sources"] == [str(shot)]
    assert meta["counts"] == {"ok": 5, "failed": 1, "rejected": 1}
    assert meta["live"] is None and re.match(
        r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", meta["generated_at"]
    )
    for record in records:
        if record["status"] == "ok":
            # Relative to the report folder, and it leads to the image.
            assert (report / record["_image"]).resolve() == Path(
                record["location"].removeprefix("file://")
            )
        else:
            assert record["_image"] is None and record["_thumb"] is None


def test_thumbnails_are_small_webp_tops_of_the_page(report: Path) -> None:
    for record in load_records(report):
        if record["status"] != "ok":
            continue
        thumb = report / record["_thumb"]
        assert thumb.read_bytes()[8:12] == b"WEBP"
        assert thumb.stat().st_size < 30_000
        with Image.open(thumb) as image:
            # The top of a 1280x800 shot, 320 px wide: at most 4:3 (a shorter shot whole).
            assert image.size == (320, 200)


def test_titles_cannot_break_out_of_the_chunk_scripts(report: Path) -> None:
    text = (report / "data" / "records-0000.js").read_text(encoding="ascii")
    assert "</script" not in text and "\u2028" not in text
    titles = {r["title"] for r in load_records(report)}
    assert TRICKY_TITLE in titles


def test_chunks_hold_1000_records_and_each_record_once_over_several_sources(
    shot: Path, tmp_path: Path
) -> None:
    # A second manifest of 2,300 rejected lines (no images: no thumbnail work) after the
    # real one: three chunks, records numbered across both sources.
    many = tmp_path / "many.jsonl"
    with many.open("w") as stream:
        for line in range(1, 2301):
            error = {"type": "InvalidUrl", "message": "not an http(s) URL"}
            record = {"id": f"b:{line}", "line": line, "url": f"x{line}", "status": "rejected"}
            stream.write(json.dumps({**record, "error": error}) + "\n")
        stream.write('{"id": "b:torn", "line"')  # a torn last line is skipped
    out = tmp_path / "report"
    result = run_cli("report", str(shot), str(many), "-o", str(out), "--title", "Two batches")
    assert result.returncode == 0, result.stderr
    meta = load_meta(out)
    assert (meta["total"], meta["chunks"]) == (2307, 3)
    assert meta["title"] == "Two batches" and meta["sources"] == [str(shot), str(many)]
    records = load_records(out)
    assert [r["_i"] for r in records] == list(range(2307))
    assert [r["_source"] for r in records] == [0] * 7 + [1] * 2300
    assert len({(r["_source"], r["id"]) for r in records}) == 2307
    assert len(list((out / "thumbs").iterdir())) == 5


def test_an_older_manifest_gets_its_phash_and_image_key_computed(
    shot: Path, tmp_path: Path
) -> None:
    old = tmp_path / "old.jsonl"
    originals = {r["id"]: r for r in manifest_records(shot)}
    strip_manifest(shot, old, "phash", "image_key")
    out = tmp_path / "report"
    assert run_cli("report", str(old), "-o", str(out)).returncode == 0
    for record in load_records(out):
        original = originals[record["id"]]
        if record["status"] != "ok":
            assert record["phash"] is None
            continue
        image = Path(record["location"].removeprefix("file://")).read_bytes()
        # The same hash as the worker's function, bit for bit.
        assert record["phash"] == phash_hex(image)
        assert record["image_key"] == re.findall(r"-([0-9a-f]{16})\.png$", record["location"])[0]
        for name in ("phash", "image_key"):
            if original.get(name) is not None:  # a manifest that has them: the same values
                assert record[name] == original[name]
    assert len(load_groups(out)) == 1


def test_records_with_the_same_bytes_share_one_thumbnail_and_hash(
    shot: Path, tmp_path: Path
) -> None:
    # The same older manifest twice: every image is there twice, none has a phash.
    old = tmp_path / "old.jsonl"
    strip_manifest(shot, old, "phash")
    out = tmp_path / "report"
    result = run_cli("report", str(old), str(old), "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert "14 records, 10 thumbnails" in result.stdout
    assert len(list((out / "thumbs").iterdir())) == 5  # one file per distinct image
    records = load_records(out)
    first, second = records[:7], records[7:]
    for a, b in zip(first, second, strict=True):
        assert (a["_thumb"], a["phash"]) == (b["_thumb"], b["phash"])
        assert (a["phash"] is not None) == (a["status"] == "ok")
    # The order pages, both copies of each, then each other page with its copy.
    assert [g["size"] for g in load_groups(out)] == [6, 2, 2]


def test_a_missing_image_gives_a_null_thumbnail_not_a_failed_build(
    shot: Path, tmp_path: Path
) -> None:
    records = manifest_records(shot)
    lost = next(r for r in records if r["status"] == "ok")
    copy = tmp_path / "lost.png"
    shutil.copyfile(lost["location"].removeprefix("file://"), copy)
    lost["location"] = copy.as_uri()
    copy.unlink()  # the manifest names an image that is no longer there
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in records))
    out = tmp_path / "report"
    result = run_cli("report", str(manifest), "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert "4 thumbnails" in result.stdout and "1 images unreadable" in result.stdout
    assert "lost.png" in result.stderr  # a warning that names it
    built = {r["id"]: r for r in load_records(out)}
    assert built[lost["id"]]["_thumb"] is None
    assert sum(r["_thumb"] is not None for r in built.values()) == 4


def test_a_manifest_in_s3_is_read_with_its_images_through_the_storage(
    shot: Path, s3: MotoServer, tmp_path: Path
) -> None:
    bucket = s3.new_bucket()
    client = s3.client()
    records = manifest_records(shot)
    for record in records:
        if record["status"] == "ok":
            key = "batch/" + record["location"].rsplit("/", 1)[1]
            body = Path(record["location"].removeprefix("file://")).read_bytes()
            client.put_object(Bucket=bucket, Key=key, Body=body)
            record["location"] = f"s3://{bucket}/{key}"
            record["link"] = f"https://signed.invalid/{key}"
    body = "".join(json.dumps(r) + "\n" for r in records)
    client.put_object(Bucket=bucket, Key="batch.jsonl", Body=body.encode())
    out = tmp_path / "report"
    result = run_cli("report", f"s3://{bucket}/batch.jsonl", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert "5 thumbnails" in result.stdout
    built = load_records(out)
    for record in built:
        if record["status"] == "ok":
            assert (out / record["_thumb"]).is_file()
            assert record["_image"] == record["link"]  # not on this disk: the link
    assert len(load_groups(out)) == 1
    assert not list((out / "data").glob(".*"))  # no copy of the manifest left behind


def test_a_missing_manifest_is_one_line_and_exit_2(shot: Path, tmp_path: Path) -> None:
    result = run_cli("report", str(shot), str(tmp_path / "nope.jsonl"), "-o", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"distshot: error: no such manifest: {tmp_path / 'nope.jsonl'}"
    ]
    assert not (tmp_path / "data").exists()  # nothing written


# -- look-alike groups ----------------------------------------------------------------------


def flip(phash: str, *bits: int) -> str:
    value = int(phash, 16)
    for bit in bits:
        value ^= 1 << bit
    return f"{value:016x}"


A = "c3d4a5b6e7f80912"


def test_a_chain_does_not_merge_pages_that_are_far_apart() -> None:
    # a-b and b-c are 8 bits apart, a-c 16: single linkage would make one group of three.
    b = flip(A, *range(8))
    c = flip(b, *range(8, 16))
    assert (hamming(A, b), hamming(b, c), hamming(A, c)) == (8, 8, 16)
    groups = look_alike_groups([(0, A), (1, b), (2, c)], threshold=10)
    assert [g.members for g in groups] == [(0, 1)]
    # When b is the most frequent hash it leads, and both a and c are within 10 of it.
    groups = look_alike_groups([(0, A), (1, b), (2, c), (3, b)], threshold=10)
    assert [(g.phash, g.members) for g in groups] == [(b, (1, 0, 2, 3))]


def test_exact_duplicates_collapse_and_the_largest_group_comes_first() -> None:
    far = flip(A, *range(0, 64, 2))  # 32 bits away
    pairs = [(i, A) for i in (5, 9, 2, 7)] + [(1, far), (4, far), (3, flip(far, 60))]
    groups = look_alike_groups(pairs)
    assert [(g.id, g.phash, g.members) for g in groups] == [
        (0, A, (2, 5, 7, 9)),
        (1, far, (1, 3, 4)),
    ]
    assert groups[0].to_json() == {"id": 0, "phash": A, "size": 4, "members": [2, 5, 7, 9]}


def test_the_threshold_is_inclusive() -> None:
    at, past = flip(A, *range(10)), flip(A, *range(11))
    assert [g.members for g in look_alike_groups([(0, A), (1, at)], threshold=10)] == [(0, 1)]
    assert look_alike_groups([(0, A), (1, past)], threshold=10) == []
    assert look_alike_groups([(0, A), (1, flip(A, 3))], threshold=0) == []
    assert [g.members for g in look_alike_groups([(0, A), (1, A)], threshold=0)] == [(0, 1)]


def test_groups_are_deterministic_whatever_the_order_of_the_pairs() -> None:
    rng = random.Random(7)
    bases = [f"{rng.getrandbits(64):016x}" for _ in range(20)]
    pairs = [(i, flip(bases[i % 20], rng.randrange(64))) for i in range(400)]
    expected = look_alike_groups(pairs, threshold=6)
    assert expected and sum(len(g.members) for g in expected) <= 400
    rng.shuffle(pairs)
    assert look_alike_groups(pairs, threshold=6) == expected
    assert look_alike_groups([]) == []


# -- decoding no more than the thumbnail shows ----------------------------------------------


def test_a_tall_png_decodes_only_its_top_and_that_top_is_exact(tmp_path: Path) -> None:
    tall = Image.effect_noise((400, 3000), 60).convert("RGB")
    data_path = tmp_path / "tall.png"
    tall.save(data_path)
    data = data_path.read_bytes()
    top = open_top(data)
    assert top.size == (400, 300)  # the top 4:3 of the width
    assert ImageChops.difference(top, tall.crop((0, 0, 400, 300))).getbbox() is None
    short = tmp_path / "short.png"
    tall.crop((0, 0, 400, 200)).save(short)
    assert open_top(short.read_bytes()).size == (400, 200)  # shorter than 4:3: whole
    save_thumbnail(open_top(data), tmp_path / "thumb.webp")
    with Image.open(tmp_path / "thumb.webp") as thumb:
        assert thumb.size == (320, 240)


def test_the_built_report_opens_in_chromium_with_its_cards_and_group_and_nothing_else(
    report: Path,
) -> None:
    """The folder `distshot report` wrote, as a user opens it: from disk, in Chromium."""
    from playwright.sync_api import expect, sync_playwright

    from distshot.engines.chromium import chromium_flags

    requests: list[str] = []
    errors: list[str] = []
    driver = sync_playwright().start()
    try:
        browser = driver.chromium.launch(
            executable_path="/usr/bin/chromium", args=chromium_flags(("--no-sandbox",))
        )
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("request", lambda request: requests.append(request.url))
        page.goto((report / "index.html").as_uri())
        expect(page.locator("html")).to_have_attribute("data-state", "ready")
        expect(page.locator(".card")).to_have_count(7)
        # the five thumbnails load from the folder
        page.wait_for_function(
            "[...document.querySelectorAll('.card img')].filter(i => i.naturalWidth > 0)"
            ".length === 5"
        )
        # the look-alike group is the three order pages
        page.locator('.tab[data-view="groups"]').click()
        page.locator(".stack").first.click()
        expect(page.locator(".card")).to_have_count(3)
        for n in (1041, 1042, 1043):
            expect(page.locator(".card", has_text=f"Order {n}")).to_have_count(1)
        browser.close()
    finally:
        driver.stop()
    assert errors == []
    folder = report.as_uri()
    assert requests and all(url.startswith(folder + "/") for url in requests), requests
