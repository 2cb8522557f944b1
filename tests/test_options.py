"""Capture options declared once: the parser, the wire, the CLI, the README and the engines'
declarations all come from the same declarations."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest
from conftest import PageServer, by_line, read_manifest, run_cli

from distshot.core.contracts import Capabilities, Engine
from distshot.core.errors import InvalidOption
from distshot.core.models import Capture, ShotRequest
from distshot.core.options import (
    DEFAULT_OPTIONS,
    OPTION_NAMES,
    SPECS,
    CaptureOptions,
    options_table,
    parse_options,
)
from distshot.core.service import capture_request
from distshot.plugins.manager import get_registry
from distshot.storage.local import LocalStorage

ROOT = Path(__file__).resolve().parent.parent

#: A value other than the default for every option, as a JSONL line would give it. A new
#: option without one here fails test_every_option_survives_the_wire.
SAMPLES: dict[str, Any] = {
    "width": 640,
    "height": 480,
    "scale": 2,
    "device": "Pixel 7",
    "full_page": True,
    "max_height": 5000,
    "selector": "main > h1",
    "padding": 8,
    "clip": [0, 10, 300, 200],
    "wait_until": "networkidle",
    "wait_for": "#ready",
    "delay": 250,
    "timeout": 12.5,
    "scroll_page": False,
    "hide": [".ad", "#cookie-banner"],
    "remove": ["footer"],
    "click": ["#accept", ".tab:nth-child(2)"],
    "javascript": "document.body.dataset.shot = '1';\nawait new Promise(r => setTimeout(r, 10))",
    "css": "body { font-size: 20px; }",
    "animations": "disabled",
    "color_scheme": "dark",
    "reduced_motion": "reduce",
    "media": "print",
    "timezone": "America/New_York",
    "user_agent": "distshot-test/1.0",
    "headers": {"X-One": "1"},
    "resolve": ["shop.example:443:203.0.113.7", "cdn.example:80:[2001:db8::1]"],
    "proxy": "socks5://user:pa%40ss@proxy.example:1080",
    "block_resources": ["image", "font"],
    "block_urls": ["*://ads.example/*", "re:/banners?/"],
    "block_ads": True,
    "block_trackers": True,
    "block_cookie_banners": True,
    "format": "webp",
    "quality": 70,
    "omit_background": True,
    "pdf_paper": "Letter",
    "landscape": True,
    "print_background": False,
    "cookies": [{"name": "sid", "value": "v", "domain": "a.test", "path": "/", "secure": True}],
    "storage_state": {
        "cookies": [{"name": "sid", "value": "v", "url": "https://a.test"}],
        "origins": [{"origin": "https://a.test", "localStorage": [{"name": "k", "value": "v"}]}],
    },
    "http_credentials": "user:pass:word",
    "locale": "de-DE",
    "geolocation": [35.68, 139.69, 10.0],
    "javascript_enabled": False,
}
#: Options that only make sense together with another one.
COMPANIONS: dict[str, dict[str, Any]] = {
    "padding": {"selector": "#x"},
    "quality": {"format": "jpeg"},
    "pdf_paper": {"format": "pdf"},
    "landscape": {"format": "pdf"},
    "print_background": {"format": "pdf"},
}


def test_every_option_is_declared_with_help_group_and_accepted_values() -> None:
    assert set(SAMPLES) == set(OPTION_NAMES), "every option needs a sample value here"
    for spec in SPECS.values():
        assert spec.help.endswith((".", "]")), spec.name
        assert spec.kind.accepts, spec.name
        assert spec.cli_flag.startswith("--") and "_" not in spec.cli_flag


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_option_survives_the_wire(name: str) -> None:
    # Given a request line setting this option (and what it needs)
    raw = {**COMPANIONS.get(name, {}), name: SAMPLES[name]}
    options = parse_options(raw, DEFAULT_OPTIONS)
    assert name in options.non_default()
    # When it crosses the broker as JSON
    wire = json.loads(json.dumps(options.to_wire()))
    back = CaptureOptions.from_wire(wire)
    # Then the worker has the same options, and the same image name
    assert back == options
    assert back.digest == options.digest


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_option_given_as_csv_text_parses_to_the_same_value(name: str) -> None:
    value = SAMPLES[name]
    if name in ("cookies", "storage_state"):
        text = json.dumps(value)  # a CSV cell holds them as JSON
    elif isinstance(value, list):
        comma = name in ("clip", "geolocation")
        text = ",".join(map(str, value)) if comma else ";".join(str(v) for v in value)
    elif isinstance(value, dict):
        text = "; ".join(f"{k}: {v}" for k, v in value.items())
    else:
        text = str(value)
    companions = COMPANIONS.get(name, {})
    assert parse_options({**companions, name: text}, DEFAULT_OPTIONS) == parse_options(
        {**companions, name: value}, DEFAULT_OPTIONS
    )


@pytest.mark.parametrize(
    ("raw", "mentions"),
    [
        ({"color_scheme": "sepia"}, "color_scheme must be one of light, dark, no-preference"),
        ({"animations": "off"}, "animations must be one of allow, disabled"),
        ({"timezone": "Mars/Olympus"}, "timezone must be an IANA time zone"),
        ({"device": "Nokia 3310"}, "not a known device; `distshot devices`"),
        ({"clip": "1,2,3"}, "clip must be x,y,width,height"),
        ({"clip": "0,0,0,10"}, "width and height must be 1-16384"),
        ({"max_height": 50}, "max_height must be between 100 and 1000000"),
        ({"width": float("inf")}, "width must be a whole number"),  # 1e999 in a JSONL line
        ({"width": 2.5}, "width must be a whole number"),
        ({"width": True}, "width must be a whole number"),
        ({"scale": "big"}, "scale must be a number"),
        ({"hide": 5}, "hide must be a list of CSS selectors"),
        ({"block_urls": ["re:(ads"]}, "block_urls: 're:(ads' is not a valid regex"),
        ({"block_resources": "images"}, "block_resources takes image, media, font"),
        ({"click": ["#a", "two\nlines"]}, "click must be one line"),
        ({"padding": 5}, "padding applies to a selector's element"),
        ({"selector": "#a", "clip": "0,0,5,5"}, "give one of them"),
        ({"omit_background": True, "format": "jpeg"}, "omit_background needs png or webp"),
        ({"landscape": True}, "landscape applies to format pdf only"),
        ({"format": "pdf", "selector": "#a"}, "selector does not apply"),
        ({"quality": 50}, "quality applies to jpeg and webp only, not png"),
        ({"colour_scheme": "dark"}, "unknown option 'colour_scheme'"),
        ({"resolve": "shop.example:443"}, "resolve must be host:port:address"),
        ({"proxy": "ftp://user:pw@proxy.example"}, "ftp://user:***@proxy.example"),
        ({"proxy": "http://user:p@ss/word@proxy.example:99999"}, "http://user:***@proxy"),
        ({"proxy": "proxy.example:3128"}, "a proxy must be http://, https:// or socks5://"),
        ({"resolve": "shop.example:http:203.0.113.7"}, "resolve must be host:port:address"),
        ({"resolve": "shop.example:443:shop.test"}, "resolve must be host:port:address"),
        ({"resolve": "shop.example:0:203.0.113.7"}, "resolve must be host:port:address"),
        (
            {"resolve": ["a.example:80:203.0.113.7", "A.example:80:203.0.113.8"]},
            "resolve gives a.example:80 two addresses",
        ),
    ],
)
def test_bad_values_are_refused_naming_the_field_and_what_it_accepts(
    raw: dict[str, Any], mentions: str
) -> None:
    with pytest.raises(InvalidOption) as info:
        parse_options(raw, DEFAULT_OPTIONS)
    assert mentions in info.value.message


def test_a_device_sets_its_viewport_unless_given_explicitly() -> None:
    phone = parse_options({"device": "iphone 13"}, DEFAULT_OPTIONS)  # any case
    assert (phone.device, phone.width, phone.height, phone.scale) == ("iPhone 13", 390, 664, 3)
    assert phone.is_mobile and phone.has_touch and "iPhone" in (phone.user_agent or "")
    # A line's own width wins over the command line's device, the rest stays the device's
    wide = parse_options({"width": 500}, phone)
    assert (wide.width, wide.height, wide.device) == (500, 664, "iPhone 13")
    # and an explicit width on the command line wins over a line's device
    explicit = parse_options(
        {"device": "iPad Mini"}, parse_options({"width": 1000}, DEFAULT_OPTIONS)
    )
    assert (explicit.width, explicit.height) == (1000, 1024)
    assert CaptureOptions.from_wire(json.loads(json.dumps(wide.to_wire()))) == wide


def test_image_changing_options_change_the_name_and_the_timeout_does_not() -> None:
    def name(**options: Any) -> str:
        request = ShotRequest("b:1", 1, "https://a.test/", parse_options(options, DEFAULT_OPTIONS))
        return request.object_name()

    assert name() == name(timeout=5)
    assert len({name(), name(color_scheme="dark"), name(color_scheme="light")}) == 3
    assert name(hide=["#a"]) != name(remove=["#a"])
    assert name(format="pdf").endswith(".pdf")


def test_a_proxy_password_is_in_the_request_but_never_in_the_key_or_a_message() -> None:
    def options(proxy: str) -> CaptureOptions:
        return parse_options({"proxy": proxy}, DEFAULT_OPTIONS)

    given = options("HTTP://shooter:s3cret@Proxy.Example:3128")
    # the worker needs it: it travels in the request
    assert given.proxy == "http://shooter:s3cret@proxy.example:3128"
    assert CaptureOptions.from_wire(given.to_wire()) == given
    # the password cannot change the image: the key leaves it out (no digest of a secret)
    assert given.digest == options("http://shooter:other@proxy.example:3128").digest
    assert given.digest != options("http://shooter:s3cret@proxy.example:8080").digest
    assert given.digest != DEFAULT_OPTIONS.digest
    with pytest.raises(InvalidOption) as info:
        options("http://shooter:s3cret@proxy.example:3128/path")
    assert "s3cret" not in info.value.message and "shooter:***@" in info.value.message


def test_the_readme_table_is_generated_from_the_declarations() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"<!-- options:start -->\n(.*?)<!-- options:end -->", readme, re.DOTALL)
    assert match is not None, "README.md has no generated options table"
    assert match.group(1) == options_table(), (
        "README.md's option table is out of date: paste `distshot options --markdown`"
    )


def test_cli_has_a_flag_for_every_option_and_lists_them() -> None:
    for command in ("shoot", "dispatch"):
        help_text = run_cli(command, "--help").stdout
        for spec in SPECS.values():
            assert spec.cli_flag in help_text, (command, spec.cli_flag)
    listing = run_cli("options")
    assert listing.returncode == 0
    for name in OPTION_NAMES:
        assert re.search(rf"^  {name} ", listing.stdout, re.MULTILINE), name
    assert run_cli("options", "--markdown").stdout == options_table()
    devices = run_cli("devices", "iphone 13")
    assert devices.returncode == 0 and "iPhone 13 " in devices.stdout
    assert "390x664 @3x  mobile, touch" in devices.stdout


def test_capabilities_name_their_options_there_is_no_all() -> None:
    # An engine must list what it honours: a Capabilities without options cannot be made
    with pytest.raises(TypeError):
        Capabilities()  # type: ignore[call-arg]
    for entry in get_registry().engines.values():
        assert entry.capabilities.options <= OPTION_NAMES, entry.name


class _WidthOnly(Engine):
    name = "width-only"
    capabilities = Capabilities(options=frozenset({"width"}))

    async def capture(self, request: ShotRequest) -> Capture:
        raise AssertionError("a request with an option not honoured must not reach capture")


def test_an_option_the_engine_does_not_list_is_rejected_naming_both(tmp_path: Path) -> None:
    request = ShotRequest(
        "b:1",
        1,
        "http://127.0.0.1/",
        parse_options({"width": 300, "color_scheme": "dark"}, DEFAULT_OPTIONS),
        allow_private=True,
    )
    result = asyncio.run(capture_request(request, _WidthOnly(), LocalStorage(str(tmp_path))))
    assert result.status == "rejected"
    assert result.error is not None and result.error["type"] == "UnsupportedOption"
    assert "'width-only'" in result.error["message"]
    assert "color_scheme" in result.error["message"] and "width," not in result.error["message"]


def test_bare_host_lines_are_shot_as_https_or_the_default_scheme(tmp_path: Path) -> None:
    urls = tmp_path / "hosts.txt"
    urls.write_text("example.com\napi.example.com:8443/path?q=1\nhttp://x.test/\nnot a url\n")
    for extra, scheme in (((), "https"), (("--default-scheme", "http"), "http")):
        out = tmp_path / scheme
        result = run_cli("shoot", str(urls), "-o", str(out), "--engine", "null", *extra)
        records = by_line(read_manifest(out / "manifest.jsonl"))
        assert result.returncode == 1  # the last line is rejected
        assert records[1]["url"] == f"{scheme}://example.com"
        assert records[2]["url"] == f"{scheme}://api.example.com:8443/path?q=1"
        assert records[3]["url"] == "http://x.test/"
        assert records[4]["status"] == "rejected" and records[4]["url"] == "not a url"


def test_lists_come_from_jsonl_lists_and_semicolon_separated_csv_cells(tmp_path: Path) -> None:
    from distshot.core.inputs import RequestReader

    reader = RequestReader("b", DEFAULT_OPTIONS)
    csv_lines = ["url,hide,click\n", "https://a.test/,.ad; #banner,#accept\n"]
    jsonl = ['{"url": "https://a.test/", "hide": [".ad", "#banner"], "click": ["#accept"]}\n']
    (from_csv,) = reader.read_stream(csv_lines, "csv")
    (from_jsonl,) = reader.read_stream(jsonl, "jsonl")
    assert isinstance(from_csv, ShotRequest) and isinstance(from_jsonl, ShotRequest)
    assert from_csv.options.hide == from_jsonl.options.hide == (".ad", "#banner")
    assert from_csv.options.click == ("#accept",)


def test_javascript_and_css_flags_read_at_files(tmp_path: Path, http_server: PageServer) -> None:
    script = tmp_path / "title.js"
    script.write_text("document.title = 'from a file: ' + document.title;\n")
    urls = tmp_path / "u.txt"
    urls.write_text(f"{http_server.base}/solid.html\n")
    out = tmp_path / "out"
    result = run_cli(
        "shoot", str(urls), "-o", str(out), "--allow-private", "--javascript", f"@{script}"
    )
    assert result.returncode == 0, result.stderr
    (record,) = read_manifest(out / "manifest.jsonl")
    assert record["title"] == "from a file: solid"
    missing = run_cli("shoot", str(urls), "-o", str(out), "--css", "@/no/such/file.css")
    assert missing.returncode == 2
    assert "cannot read /no/such/file.css" in missing.stderr and "Traceback" not in missing.stderr


def test_an_engines_own_table_reaches_its_factory_and_only_its_own(tmp_path: Path) -> None:
    from distshot.core.config import load_settings
    from distshot.core.errors import ConfigError

    config = tmp_path / "distshot.toml"
    config.write_text(
        'engine = "cdp"\n'
        '[capture]\ncolor_scheme = "dark"\n'
        "[engines.cdp]\nstart_timeout = 45\n"
        "[engines.selenium]\nsomething = true\n"
    )
    settings = load_settings(str(config), env={})
    assert settings.engine_config().settings == {"start_timeout": 45}
    assert settings.capture.color_scheme == "dark"
    other = load_settings(str(config), env={}, overrides={"engine": "selenium"})
    assert other.engine_config().settings == {"something": True}
    config.write_text("[engines]\ncdp = 3\n")
    with pytest.raises(ConfigError, match=r"engines.cdp must be a table"):
        load_settings(str(config), env={})


def test_every_device_preset_survives_the_wire() -> None:
    """A device fills width, height, scale and user agent; the message a worker (or the
    service's capture process) gets must parse back to the same options. Galaxy S9+ has a
    scale of 4.5, which the scale option's bound once refused on the far side."""
    from distshot.core.devices import DEVICES

    for name in DEVICES:
        options = parse_options({"device": name}, DEFAULT_OPTIONS)
        assert CaptureOptions.from_wire(options.to_wire()) == options, name
