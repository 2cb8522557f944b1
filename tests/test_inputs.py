"""Input readers: formats, per-line options, rejections with line numbers, streaming."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator

import pytest

from distshot.core.errors import InvalidRequest
from distshot.core.inputs import Rejection, RequestReader
from distshot.core.models import ShotRequest
from distshot.core.options import CaptureOptions


def reader(**defaults: object) -> RequestReader:
    return RequestReader("b1", CaptureOptions(**defaults))  # type: ignore[arg-type]


def test_txt_skips_blanks_and_comments_and_numbers_lines() -> None:
    text = "# header\nhttps://a.test/\n\n   \nhttps://b.test/x\n# end\nftp://c.test/\n"
    items = list(reader().read_stream(io.StringIO(text), "txt"))
    assert [(i.line, type(i).__name__) for i in items] == [
        (2, "ShotRequest"),
        (5, "ShotRequest"),
        (7, "Rejection"),
    ]
    assert [i.id for i in items] == ["b1:2", "b1:5", "b1:7"]
    rejection = items[2]
    assert isinstance(rejection, Rejection)
    assert rejection.raw == "ftp://c.test/"
    assert "ftp:" in rejection.error.message


def test_csv_columns_are_options_and_override_defaults() -> None:
    text = "url,width,full_page,headers\nhttps://a.test/,800,true,X-A: 1\nhttps://b.test/,,,\n"
    items = list(reader(width=1000, height=500).read_stream(io.StringIO(text), "csv"))
    first, second = items
    assert isinstance(first, ShotRequest) and isinstance(second, ShotRequest)
    assert (first.options.width, first.options.height, first.options.full_page) == (800, 500, True)
    assert first.options.headers == (("X-A", "1"),)
    assert (second.options.width, second.options.full_page) == (1000, False)
    assert (first.line, second.line) == (2, 3)


def test_csv_without_url_column_is_a_usage_error() -> None:
    with pytest.raises(InvalidRequest, match="url"):
        list(reader().read_stream(io.StringIO("address\nhttps://a.test/\n"), "csv"))


def test_jsonl_options_and_every_kind_of_bad_line() -> None:
    lines = [
        '{"url": "https://a.test/", "width": 320, "format": "jpeg", "quality": 50}',
        "not json",
        "[1, 2]",
        '{"width": 100}',
        '{"url": "https://a.test/", "widht": 100}',
        '{"url": "https://a.test/", "width": 0}',
        '{"url": "https://a.test/", "format": "gif"}',
        '{"url": "https://a.test/", "quality": 50}',
        '{"url": "https://a.test/", "wait_until": "never"}',
        '{"url": "https://a.test/", "timeout": -1}',
        '{"url": "javascript:alert(1)"}',
    ]
    items = list(reader().read_stream(io.StringIO("\n".join(lines)), "jsonl"))
    assert len(items) == len(lines)
    first = items[0]
    assert isinstance(first, ShotRequest)
    assert (first.options.width, first.options.format, first.options.quality) == (320, "jpeg", 50)
    reasons = [i.error.message for i in items[1:] if isinstance(i, Rejection)]
    assert len(reasons) == len(lines) - 1
    assert "not valid JSON" in reasons[0]
    assert "JSON object" in reasons[1]
    assert "missing 'url'" in reasons[2]
    assert "unknown option 'widht'" in reasons[3]
    assert "width must be between 1" in reasons[4]
    assert "format must be one of" in reasons[5]
    assert "quality applies to jpeg and webp only" in reasons[6]
    assert "wait_until must be one of" in reasons[7]
    assert "timeout must be above 0" in reasons[8]
    assert "javascript:" in reasons[9]


def test_stdin_format_is_sniffed() -> None:
    jsonl = list(reader().read_stream(io.StringIO('\n{"url": "https://a.test/", "width": 5}\n')))
    assert isinstance(jsonl[0], ShotRequest) and jsonl[0].options.width == 5
    csv_items = list(reader().read_stream(io.StringIO("url,height\nhttps://a.test/,7\n")))
    assert isinstance(csv_items[0], ShotRequest) and csv_items[0].options.height == 7
    txt = list(reader().read_stream(io.StringIO("https://a.test/\n")))
    assert isinstance(txt[0], ShotRequest)


def endless_lines(count: int) -> Iterator[str]:
    for number in range(count):
        yield f"https://site{number}.test/page/{number}\n"


def current_rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.parametrize(("fmt", "count"), [("txt", 1_000_000), ("jsonl", 200_000)])
def test_input_streams_in_constant_memory(fmt: str, count: int) -> None:
    lines: Iterator[str] = endless_lines(count)
    if fmt == "jsonl":
        lines = (f'{{"url": "{line.strip()}", "width": 800}}\n' for line in endless_lines(count))
    baseline = current_rss()
    peak = baseline
    seen = 0
    for item in reader().read_stream(lines, fmt):
        seen += 1
        assert isinstance(item, ShotRequest)
        if seen % 50_000 == 0:
            peak = max(peak, current_rss())
    assert seen == count
    # Keeping the requests would cost hundreds of MB (about 500 bytes each); streaming
    # must stay flat, whatever the count.
    assert peak - baseline < 20 * 1024 * 1024, f"RSS grew by {(peak - baseline) >> 20} MiB"
