"""`distshot diff`: two real `distshot shoot` runs of pages the test changes in between (two
Chromium runs for the module), compared; and the pixel comparison on its own."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import PageServer, run_cli
from PIL import Image
from reportdata import load_meta, load_records, manifest_records

from distshot.core.errors import ConfigError
from distshot.report.diff import parse_ratio
from distshot.report.pixels import compare


def prices(total: str, banner: str = "") -> str:
    return (
        "<title>Prices</title><style>body{margin:0;font:18px sans-serif}"
        "h1{background:#0f766e;color:#fff;margin:0;padding:30px}td{padding:10px 40px}"
        ".banner{background:#facc15;height:120px}</style><h1>Prices</h1>"
        f"{banner}<table><tr><td>Tea</td><td>3.10</td></tr><tr><td>Total</td>"
        f"<td>{total}</td></tr></table>"
    )


def tall(height: int) -> str:
    return (
        "<title>Tall</title><style>body{margin:0}</style>"
        f"<div style='height:{height}px;background:linear-gradient(#1e3a8a,#93c5fd)'></div>"
    )


SAME = "<title>Same</title><h1 style='font:40px serif'>Nothing changes here</h1>"
OTHER = "<title>Other</title><div style='height:300px;background:#7c2d12'></div>"


def shoot(pages: PageServer, folder: Path, names: list[str]) -> Path:
    """One `distshot shoot` run of these pages (tall ones full page), plus a URL that fails
    and a line that is rejected; returns its manifest."""
    lines = [
        {"url": f"{pages.base}/v/{name}", **({"full_page": True} if name == "tall" else {})}
        for name in names
    ]
    lines += [{"url": f"{pages.base}/download"}, {"url": "ftp://127.0.0.1/rejected"}]
    folder.mkdir(parents=True)
    urls = folder / "urls.jsonl"
    urls.write_text("".join(json.dumps(line) + "\n" for line in lines))
    result = run_cli("shoot", str(urls), "-o", str(folder / "shots"), "--allow-private")
    assert result.returncode == 1, result.stderr  # the download fails, the ftp line is rejected
    return folder / "shots" / "manifest.jsonl"


@pytest.fixture(scope="module")
def batches(pages: PageServer, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("batches")
    pages.variants.update(flip=prices("9.30"), same=SAME, gone=OTHER, tall=tall(1000))
    old = shoot(pages, root / "old", ["flip", "same", "gone", "tall"])
    pages.variants.update(flip=prices("12.40", "<div class=banner></div>"), new=OTHER)
    pages.variants.update(tall=tall(1400))
    new = shoot(pages, root / "new", ["flip", "same", "new", "tall"])
    return old, new


@pytest.fixture(scope="module")
def diffed(batches: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("diff")
    result = run_cli("diff", str(batches[0]), str(batches[1]), "-o", str(out))
    assert result.returncode == 1, result.stderr  # things changed
    (line,) = result.stdout.splitlines()
    assert line.startswith("diff: 1 unchanged, 2 changed, 1 new, 1 gone, 2 failed; in ")
    assert line.endswith(f"s; open {out / 'index.html'}")
    return out


def lines(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "diff.jsonl").read_text().split("\n") if line]


def by_name(out: Path) -> dict[str, dict[str, Any]]:
    return {str(r["url"]).rsplit("/", 1)[-1]: r for r in lines(out)}


def test_each_url_gets_its_change(diffed: Path) -> None:
    changes = {name: r["change"] for name, r in by_name(diffed).items()}
    assert changes == {
        "flip": "changed",
        "tall": "changed",
        "download": "failed",
        "rejected": "failed",
        "new": "new",
        "gone": "gone",
        "same": "unchanged",
    }
    meta = load_meta(diffed)
    assert meta["kind"] == "diff" and meta["total"] == 7
    assert meta["counts"] == {"unchanged": 1, "changed": 2, "new": 1, "gone": 1, "failed": 2}


def test_a_changed_page_has_its_ratio_and_a_picture_of_what_changed(diffed: Path) -> None:
    flip = by_name(diffed)["flip"]
    assert flip["changed_ratio"] > 0.001 and flip["size_changed"] is False
    assert isinstance(flip["phash_distance"], int)
    assert flip["old"]["status"] == flip["new"]["status"] == "ok"
    assert flip["image_key"] and flip["image_key"] in flip["new"]["location"]
    with Image.open(diffed / flip["diff_image"]) as picture:
        assert picture.format == "PNG"
        assert picture.size == (flip["new"]["width"], flip["new"]["height"])
        colours = picture.convert("RGB").getcolors(1 << 20)
    assert colours is not None
    # What changed is red; the rest is faded to grey.
    assert any(r - max(g, b) > 100 for _, (r, g, b) in colours)
    record = next(r for r in load_records(diffed) if r["url"] == flip["url"])
    assert record["_diff_image"] == flip["diff_image"]
    with Image.open(diffed / record["_diff_thumb"]) as thumb:  # what the card shows
        assert thumb.format == "WEBP" and thumb.width <= 320
    for side in ("old", "new"):
        with Image.open(diffed / record[f"_{side}_thumb"]) as thumb:
            assert thumb.format == "WEBP" and thumb.width == 320
        assert (diffed / record[f"_{side}_image"]).resolve() == Path(
            flip[side]["location"].removeprefix("file://")
        )


def test_a_page_that_grew_is_changed_with_size_changed(diffed: Path) -> None:
    grown = by_name(diffed)["tall"]
    assert grown["change"] == "changed" and grown["size_changed"] is True
    assert (grown["old"]["height"], grown["new"]["height"]) == (1000, 1400)
    with Image.open(diffed / grown["diff_image"]) as picture:
        assert picture.size == (1280, 1400)


def test_failures_new_and_gone_carry_what_there_is(diffed: Path) -> None:
    rows = by_name(diffed)
    assert rows["download"]["error"]["type"] == "DownloadRefused"
    assert rows["rejected"]["error"]["type"] == "InvalidUrl"
    assert rows["new"]["old"] is None and rows["new"]["new"]["status"] == "ok"
    assert rows["gone"]["new"] is None and rows["gone"]["old"]["status"] == "ok"
    assert rows["same"]["changed_ratio"] == 0.0 and rows["same"]["phash_distance"] == 0
    records = {r["url"]: r for r in load_records(diffed)}
    assert records[rows["new"]["url"]]["_old_thumb"] is None
    assert (diffed / records[rows["new"]["url"]]["_new_thumb"]).is_file()
    assert records[rows["gone"]["url"]]["_new_thumb"] is None
    assert records[rows["download"]["url"]]["_new_thumb"] is None


def test_the_order_is_changed_by_ratio_then_failed_new_gone_unchanged(diffed: Path) -> None:
    rows = lines(diffed)
    order = ["changed", "failed", "new", "gone", "unchanged"]
    assert [order.index(r["change"]) for r in rows] == sorted(
        order.index(r["change"]) for r in rows
    )
    ratios = [r["changed_ratio"] for r in rows if r["change"] == "changed"]
    assert ratios == sorted(ratios, reverse=True)
    records = load_records(diffed)
    assert [r["_i"] for r in records] == list(range(len(rows)))
    assert [r["url"] for r in records] == [r["url"] for r in rows]
    assert not any(name.startswith("_") for row in rows for name in row)


def only(manifest: Path, dest: Path, name: str) -> dict[str, Any]:
    record = next(r for r in manifest_records(manifest) if r["url"].endswith(f"/v/{name}"))
    dest.write_text(json.dumps(record) + "\n")
    return record


def test_identical_pages_exit_0_even_when_the_files_differ(
    batches: tuple[Path, Path], tmp_path: Path
) -> None:
    old = tmp_path / "old.jsonl"
    only(batches[0], old, "same")
    new_record = only(batches[1], tmp_path / "new.jsonl", "same")
    # The same pixels in another PNG encoding: other bytes, so they are compared pixel by pixel.
    copy = tmp_path / "reencoded.png"
    with Image.open(new_record["location"].removeprefix("file://")) as image:
        image.save(copy, compress_level=0)
    new_record.update(location=copy.as_uri(), sha256="0" * 64)
    new = tmp_path / "new.jsonl"
    new.write_text(json.dumps(new_record) + "\n")
    result = run_cli("diff", str(old), str(new), "-o", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr + result.stdout
    assert "1 unchanged, 0 changed" in result.stdout
    assert lines(tmp_path / "out")[0]["changed_ratio"] == 0.0


def test_records_pair_by_url_when_an_older_manifest_has_no_image_key(
    batches: tuple[Path, Path], tmp_path: Path
) -> None:
    # The old batch's failed record has no image key (older manifest, no location); the
    # new one has one: they still pair up. And an ok record whose image is gone is failed.
    old_records = manifest_records(batches[0])
    new_records = manifest_records(batches[1])
    for record in old_records:
        record.pop("image_key", None)
    for record in new_records:
        if record["url"].endswith("/download"):
            record["image_key"] = "0123456789abcdef"
        if record["url"].endswith("/v/same"):
            copy = tmp_path / "gone-soon.png"
            shutil.copyfile(record["location"].removeprefix("file://"), copy)
            record.update(location=copy.as_uri(), sha256="0" * 64)
            copy.unlink()
    for name, records in (("old", old_records), ("new", new_records)):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    out = tmp_path / "out"
    result = run_cli(
        "diff", str(tmp_path / "old.jsonl"), str(tmp_path / "new.jsonl"), "-o", str(out)
    )
    assert result.returncode == 1, result.stderr
    rows = by_name(out)
    assert rows["download"]["change"] == "failed" and rows["download"]["old"] is not None
    assert rows["same"]["change"] == "failed"
    assert rows["same"]["error"]["type"] == "StorageError"
    assert "gone-soon.png" in rows["same"]["error"]["message"]


def test_a_missing_manifest_is_one_line_and_exit_2(
    batches: tuple[Path, Path], tmp_path: Path
) -> None:
    result = run_cli("diff", str(batches[0]), str(tmp_path / "nope.jsonl"), "-o", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"distshot: error: no such manifest: {tmp_path / 'nope.jsonl'}"
    ]


# -- pixels and thresholds ---------------------------------------------------------------------


def test_differences_within_the_tolerance_are_not_changes() -> None:
    old = Image.new("RGB", (100, 100), (120, 120, 120))
    new = Image.new("RGB", (100, 100), (130, 110, 136))  # every channel within 16
    assert compare(old, new).ratio == 0.0
    new.paste((200, 120, 120), (0, 0, 10, 10))  # 100 pixels of 10,000 clearly differ
    result = compare(old, new)
    assert result.ratio == pytest.approx(0.01) and not result.size_changed
    assert result.mask is not None and result.mask.getbbox() == (0, 0, 10, 10)


def test_different_sizes_compare_their_common_area() -> None:
    old = Image.new("RGB", (100, 100), "white")
    new = Image.new("RGB", (100, 150), "white")
    result = compare(old, new)
    assert result.size_changed and result.ratio == 0.0


@pytest.mark.parametrize(
    ("text", "value"), [("0.1%", 0.001), ("0.001", 0.001), ("5%", 0.05), ("0", 0.0), ("1", 1.0)]
)
def test_thresholds_are_shares_or_percentages(text: str, value: float) -> None:
    assert parse_ratio(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["2", "150%", "-1%", "abc", ""])
def test_a_threshold_out_of_range_is_a_config_error(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_ratio(text)
