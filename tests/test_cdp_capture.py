"""The capture steps without a browser: which CDP calls each option makes (the steps are
sans-IO generators, so a scripted ``send`` stands in for Chromium). The engines' conformance
suite shows the same options in real pixels."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from distshot.core.errors import ElementNotFound, ScriptError
from distshot.core.options import DEFAULT_OPTIONS, parse_options
from distshot.engines.cdp_capture import (
    FRESH,
    MAX_IMAGE_PIXELS,
    Shot,
    Steps,
    capture,
    emulate_media,
    prepare_page,
    run_steps_blocking,
)

FAR = 1e18  # a deadline that never comes


class Page:
    """Answers CDP calls as a page would, and records them."""

    def __init__(self, content_height: int = 800, evaluations: list[Any] | None = None) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.content_height = content_height
        self.evaluations = list(evaluations or [])

    def send(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self.calls.append((method, params))
        if method == "Page.getLayoutMetrics":
            size = {"width": 1280, "height": self.content_height}
            return {"cssContentSize": size, "cssVisualViewport": {"pageX": 0, "pageY": 0}}
        if method in ("Page.captureScreenshot", "Page.printToPDF"):
            return {"data": base64.b64encode(b"image").decode()}
        if method == "Runtime.evaluate":
            answer = self.evaluations.pop(0) if self.evaluations else {"result": {}}
            assert isinstance(answer, dict)
            return answer
        return {}

    def run(self, steps: Steps[Any]) -> Any:
        return run_steps_blocking(steps, self.send)

    @property
    def methods(self) -> list[str]:
        return [method for method, _ in self.calls]


def options(**raw: Any) -> Any:
    return parse_options(raw, DEFAULT_OPTIONS)


def test_default_options_cost_one_call_the_screenshot() -> None:
    page = Page()
    assert page.run(emulate_media(DEFAULT_OPTIONS, FRESH)) == FRESH
    page.run(prepare_page(DEFAULT_OPTIONS, FAR))
    shot = page.run(capture(DEFAULT_OPTIONS, FAR))
    assert shot == Shot(b"image", truncated=False)
    assert page.calls == [
        ("Page.captureScreenshot", {"format": "png", "fromSurface": True, "optimizeForSpeed": True})
    ]


def test_media_is_emulated_once_and_undone_for_the_next_job() -> None:
    page = Page()
    dark = page.run(emulate_media(options(color_scheme="dark"), FRESH))
    assert page.run(emulate_media(options(color_scheme="dark"), dark)) == dark  # no call
    assert page.run(emulate_media(DEFAULT_OPTIONS, dark)) == FRESH
    assert page.methods == ["Emulation.setEmulatedMedia"] * 2
    first, undo = (params for _, params in page.calls)
    assert {"name": "prefers-color-scheme", "value": "dark"} in first["features"]
    assert all(feature["value"] == "" for feature in undo["features"])


def test_a_full_page_is_cut_at_max_height() -> None:
    page = Page(content_height=5000)
    shot = page.run(capture(options(full_page=True, max_height=2000), FAR))
    clip = page.calls[-1][1]["clip"]
    assert (clip["width"], clip["height"], shot.truncated) == (1280, 2000, True)
    whole = Page(content_height=1999)
    assert not whole.run(capture(options(full_page=True, max_height=2000), FAR)).truncated


def test_an_area_too_big_for_chromium_is_cut_to_what_it_can_encode() -> None:
    # 1280 px wide at scale 2 and 300,000 px tall would be 1.5e9 pixels
    page = Page(content_height=300_000)
    shot = page.run(capture(options(full_page=True, scale=2), FAR))
    clip = page.calls[-1][1]["clip"]
    assert shot.truncated
    assert clip["width"] * clip["height"] * 4 <= MAX_IMAGE_PIXELS
    assert clip["height"] == MAX_IMAGE_PIXELS // (1280 * 4)


def test_page_changes_run_in_their_order_as_evaluations() -> None:
    found = {"result": {"value": None}}  # no invalid selector
    clicked = {"result": {"value": True}}
    page = Page(evaluations=[found, clicked, clicked, {"result": {}}, {"result": {}}])
    page.run(
        prepare_page(options(click=["#a", "#b"], javascript="1 + 1", hide=[".ad"], css="p {}"), FAR)
    )
    expressions = [params["expression"] for _, params in page.calls]
    assert len(expressions) == 5
    assert '"#a"' in expressions[1] and '"#b"' in expressions[2]
    assert expressions[3] == "1 + 1" and page.calls[3][1]["replMode"]
    assert ".ad { visibility: hidden !important; }" in expressions[4]
    assert "p {}" in expressions[4]


def test_a_missing_click_target_and_a_throwing_script_are_permanent_errors() -> None:
    missing = Page(evaluations=[{"result": {"value": None}}, {"result": {"value": False}}])
    with pytest.raises(ElementNotFound, match="'#gone'"):
        missing.run(prepare_page(options(click=["#gone"]), FAR))
    thrown = {"exceptionDetails": {"exception": {"description": "Error: nope\n    at x"}}}
    failing = Page(evaluations=[thrown])
    with pytest.raises(ScriptError, match=r"javascript threw: Error: nope$"):
        failing.run(prepare_page(options(javascript="throw new Error('nope')"), FAR))


def test_a_pdf_is_printed_on_its_paper() -> None:
    page = Page()
    page.run(capture(options(format="pdf", pdf_paper="Letter", landscape=True), FAR))
    method, params = page.calls[-1]
    assert method == "Page.printToPDF"
    assert (params["paperWidth"], params["paperHeight"], params["landscape"]) == (8.5, 11, True)
    assert params["printBackground"] is True


def test_a_transparent_background_is_undone_after_the_capture() -> None:
    # (a reused page must not hand its transparency to the next job)
    page = Page()
    page.run(capture(options(omit_background=True), FAR))
    assert page.methods == [
        "Emulation.setDefaultBackgroundColorOverride",
        "Page.captureScreenshot",
        "Emulation.setDefaultBackgroundColorOverride",
    ]
    assert page.calls[0][1]["color"]["a"] == 0 and page.calls[2][1] == {}


def test_a_time_zone_is_set_once_and_undone_for_the_next_job() -> None:
    page = Page()
    tokyo = page.run(emulate_media(options(timezone="Asia/Tokyo"), FRESH))
    page.run(emulate_media(options(timezone="Asia/Tokyo"), tokyo))
    page.run(emulate_media(DEFAULT_OPTIONS, tokyo))
    assert page.calls == [
        ("Emulation.setTimezoneOverride", {"timezoneId": "Asia/Tokyo"}),
        ("Emulation.setTimezoneOverride", {"timezoneId": ""}),
    ]
