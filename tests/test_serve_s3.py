"""`distshot serve` with S3 storage (moto_server over HTTP): an image's endpoints answer a
redirect to the object's presigned link, and the link serves the recorded bytes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
from s3server import MotoServer
from servekit import LOOPBACK, Serve, poll

from distshot.testing.server import PageServer


def test_images_in_s3_are_a_redirect_to_a_link_that_serves_the_recorded_bytes(
    s3: MotoServer, tmp_path: Path, pages: PageServer
) -> None:
    bucket = s3.new_bucket()
    serve = Serve(tmp_path, "--storage", f"s3://{bucket}/serve", *LOOPBACK).start()
    try:
        with serve.client() as client:
            record = client.post("/v1/shots", json={"url": pages.base + "/tall?h=300"}).json()
            assert record["status"] == "ok", record
            assert record["location"].startswith(f"s3://{bucket}/serve/")
            queued = client.post("/v1/shots", json={"url": pages.base + "/tall", "wait": 0})
            later = poll(client, queued.headers["location"], lambda b: "format" in b)
            for done in (record, later):
                image = client.get(f"/v1/shots/{done['id']}/image", follow_redirects=False)
                assert image.status_code == 307
                assert image.headers["location"] == done["link"]
                body = httpx.get(done["link"], trust_env=False).content
                assert hashlib.sha256(body).hexdigest() == done["sha256"]
                assert body.startswith(b"\x89PNG")
            direct = client.get(
                "/v1/screenshot", params={"url": pages.base + "/tall?h=301"}, follow_redirects=True
            )
            assert direct.status_code == 200 and direct.content.startswith(b"\x89PNG")
            assert str(direct.url).startswith(s3.endpoint)  # it came from the bucket
    finally:
        assert serve.stop() == 0
