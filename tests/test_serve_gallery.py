"""A batch's live gallery in `distshot serve` (``/batches/{id}/``): the report's page, fed
by the service; opened with a signed link when the service has keys."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from conftest import run_cli
from PIL import Image
from servekit import LOOPBACK, Serve, poll

from distshot.server.keys import add_key
from distshot.server.signing import sign_query
from distshot.testing.server import PageServer


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    path = tmp_path_factory.mktemp("keys") / "keys.jsonl"
    alice, _ = add_key(path, "alice")
    bob, _ = add_key(path, "bob")
    return {"path": path, "alice": alice, "bob": bob}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, keys: dict[str, Any]) -> Iterator[Serve]:
    tmp = tmp_path_factory.mktemp("serve")
    serve = Serve(tmp, "--api-keys", str(keys["path"]), "--concurrency", "2", *LOOPBACK).start()
    yield serve
    assert serve.stop() == 0


@pytest.fixture(scope="module")
def batch(service: Serve, keys: dict[str, Any], pages: PageServer) -> dict[str, Any]:
    """Alice's finished batch: two pages, an HTTP 404 page, a refused port, a bad line."""
    body = (
        f"{pages.base}/tall\n{pages.base}/echo?text=hello\n{pages.base}/missing\n"
        "http://127.0.0.1:1/refused\nnot a url\n"
    )
    with service.client(keys["alice"]) as alice:
        answer = alice.post("/v1/batches", content=body, headers={"content-type": "text/plain"})
        assert answer.status_code == 202, answer.text
        batch_id = answer.json()["id"]
        poll(alice, f"/v1/batches/{batch_id}", lambda b: b["status"] == "done")
    return {"id": batch_id, "lines": 5}


def signed_link(service: Serve, keys: dict[str, Any], batch_id: str, who: str = "alice") -> str:
    result = run_cli(
        "keys", "gallery", batch_id, "--base", service.base, "--key-id", who, "--key", keys[who]
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_a_signed_link_opens_the_gallery_and_its_cookie_reads_only_that_batch(
    service: Serve, keys: dict[str, Any], batch: dict[str, Any]
) -> None:
    base = f"/batches/{batch['id']}/"
    with httpx.Client(base_url=service.base) as browser:
        # Given no key: the page, its data and its images are refused
        for path in ("", "data/meta.js", "records.ndjson", "images/1"):
            assert browser.get(base + path).status_code == 401
        # When the signed link is opened
        link = signed_link(service, keys, batch["id"])
        page = browser.get(link)
        assert page.status_code == 200 and "gallery.js" in page.text
        assert page.headers["set-cookie"].startswith("distshot_gallery=")
        assert f"path={base}" in page.headers["set-cookie"].lower()
        # Then the cookie reads the batch's data
        meta = browser.get(base + "data/meta.js")
        assert meta.status_code == 200 and '"manifest_url": "records.ndjson"' in meta.text
        records = browser.get(base + "records.ndjson")
        assert records.headers["x-distshot-batch-status"] == "done"
        rows = [json.loads(line) for line in records.text.splitlines()]
        assert len(rows) == batch["lines"] and [r["_i"] for r in rows] == list(range(5))
        # and only from where the page says it is
        later = browser.get(base + "records.ndjson", params={"offset": 3}).text.splitlines()
        assert [json.loads(line)["_i"] for line in later] == [3, 4]
        ok = [r for r in rows if r["status"] == "ok"]
        assert len(ok) == 3 and all(r["_thumb"] and r["_image"] for r in ok)
        assert all(r["_thumb"] is None for r in rows if r["status"] != "ok")
        image = browser.get(base + ok[0]["_image"])
        assert image.status_code == 200 and image.content.startswith(b"\x89PNG")
        thumb = browser.get(base + ok[0]["_thumb"])
        assert thumb.headers["content-type"] == "image/webp"
        picture = Image.open(io.BytesIO(thumb.content))
        assert picture.format == "WEBP" and picture.width <= 400
        # The assets are the report's own files
        assert browser.get(base + "assets/gallery.js").status_code == 200


def test_another_key_a_tampered_or_expired_link_sees_nothing(
    service: Serve, keys: dict[str, Any], batch: dict[str, Any]
) -> None:
    base = f"/batches/{batch['id']}/"
    bobs = signed_link(service, keys, batch["id"], who="bob")
    with httpx.Client(base_url=service.base) as browser:
        assert browser.get(bobs).status_code == 404  # alice's batch does not exist for bob
        assert browser.get(base + "records.ndjson").status_code == 401  # and set no cookie
        link = signed_link(service, keys, batch["id"])
        query = dict(parse_qsl(urlsplit(link).query))
        tampered = {**query, "expires": str(int(query["expires"]) + 10)}
        assert browser.get(base, params=tampered).status_code == 403
        past = sign_query([], key_id="alice", key=keys["alice"], expires=int(time.time()) - 1,
                          path=base)  # fmt: skip
        assert browser.get(f"{base}?{past}").status_code == 403
    # A Bearer key reads the data as a program would; bob's is a 404
    with service.client(keys["bob"]) as bob:
        assert bob.get(base + "records.ndjson").status_code == 404


def test_a_cookie_for_one_batch_does_not_open_another(
    service: Serve, keys: dict[str, Any], batch: dict[str, Any], pages: PageServer
) -> None:
    with service.client(keys["alice"]) as alice:
        other = alice.post(
            "/v1/batches", content=f"{pages.base}/tall\n", headers={"content-type": "text/plain"}
        ).json()["id"]
    with httpx.Client(base_url=service.base) as browser:
        browser.get(signed_link(service, keys, batch["id"]))
        cookie = browser.cookies.get("distshot_gallery")
        assert cookie
        answer = browser.get(
            f"/batches/{other}/records.ndjson", headers={"cookie": f"distshot_gallery={cookie}"}
        )
        assert answer.status_code == 401


def test_without_keys_the_gallery_is_open_on_loopback(tmp_path: Path, pages: PageServer) -> None:
    serve = Serve(tmp_path, *LOOPBACK).start()
    try:
        with serve.client() as client:
            batch_id = client.post(
                "/v1/batches",
                content=f"{pages.base}/tall\n",
                headers={"content-type": "text/plain"},
            ).json()["id"]
            poll(client, f"/v1/batches/{batch_id}", lambda b: b["status"] == "done")
            redirect = client.get(f"/batches/{batch_id}", follow_redirects=False)
            assert redirect.status_code == 307
            assert redirect.headers["location"] == f"/batches/{batch_id}/"
            assert client.get(f"/batches/{batch_id}/").status_code == 200
            rows = client.get(f"/batches/{batch_id}/records.ndjson").text.splitlines()
            assert len(rows) == 1
    finally:
        assert serve.stop() == 0


def test_the_gallery_shows_the_batch_in_a_browser_and_loads_nothing_from_elsewhere(
    service: Serve, keys: dict[str, Any], batch: dict[str, Any]
) -> None:
    from playwright.sync_api import expect, sync_playwright

    from distshot.engines.chromium import chromium_flags

    link = signed_link(service, keys, batch["id"])
    requests: list[str] = []
    driver = sync_playwright().start()
    try:
        browser = driver.chromium.launch(
            executable_path="/usr/bin/chromium", args=chromium_flags(("--no-sandbox",))
        )
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("request", lambda request: requests.append(request.url))
        page.goto(link)
        expect(page.locator("html")).to_have_attribute("data-state", "ready")
        # Every line of the batch is a card, the failures are listed, the polling stopped
        expect(page.locator(".card")).to_have_count(batch["lines"])
        expect(page.locator("#live-status")).to_contain_text("done")
        # The thumbnails are the service's, and they load
        page.wait_for_function(
            "[...document.querySelectorAll('.card img')].filter(i => i.naturalWidth > 0)"
            ".length === 3"
        )
        page.locator(".card").first.click()
        expect(page.locator("dialog#detail")).to_be_visible()
        assert errors == []
        browser.close()
    finally:
        driver.stop()
    assert requests and all(url.startswith(service.base + "/batches/") for url in requests)
