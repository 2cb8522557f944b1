"""The isolation rules for reusing a lane (``distshot/engines/lanes.py``), as one table: each
row is a rule, what a job leaves that triggers it, and a real page that leaves exactly that.
The table is checked against the pure rules, then row by row against both engines that reuse
lanes (playwright, selenium) with real Chromium: a rule changed in lanes.py changes both
engines, and this file shows it."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from distshot.core.contracts import EngineConfig
from distshot.core.models import ShotRequest, ShotResult
from distshot.core.options import DEFAULT_OPTIONS, parse_options
from distshot.core.service import capture_request
from distshot.engines import lanes
from distshot.engines.lanes import JobTraces, why_not_reuse
from distshot.plugins.manager import get_registry
from distshot.storage.local import LocalStorage
from distshot.testing.engine_checks import assert_no_browser_left
from distshot.testing.server import PageServer, start_server, stop_server

HERE, OTHER = "http://127.0.0.1:8001", "http://127.0.0.2:8002"


def traces(*requests: tuple[str, str], **flags: bool) -> JobTraces:
    """The traces of a job whose page sent ``requests`` (url, kind: "top" for a top-level
    document, "frame" for a frame's, "sub" for anything else) in that order."""
    recorded = JobTraces.start(requests[0][0])
    top: str | None = None
    for url, kind in requests:
        recorded.saw_request(url, document=kind != "sub", main_frame=kind == "top", top_url=top)
        if kind == "top":
            top = url
    for name, value in flags.items():
        setattr(recorded, name, value)
    return recorded


@dataclass(frozen=True)
class Rule:
    """One row: the reason (None: the lane is reset and kept), what the job left, and a page
    of the test server that leaves it (``{here}`` and ``{other}`` are the two servers)."""

    name: str
    reason: str | None
    left: Callable[[], JobTraces]
    path: str
    options: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    lane_jobs: int = lanes.LANE_JOBS
    ok: bool = True


RULES = [
    Rule("clean", None, lambda: traces((f"{HERE}/solid.html", "top")), "/solid.html"),
    Rule(
        "same-origin frame",
        None,
        lambda: traces((f"{HERE}/frame.html", "top"), (f"{HERE}/solid.html", "frame")),
        "/frame.html?src=/solid.html",
    ),
    Rule(
        "reuse off",
        lanes.REUSE_OFF,
        lambda: traces((f"{HERE}/solid.html", "top")),
        "/solid.html",
        config={"reuse_contexts": False},
    ),
    Rule(
        "failed",
        lanes.FAILED,
        lambda: traces((f"{HERE}/download", "top"), failed=True),
        "/download",
        ok=False,
    ),
    Rule(
        "credentials in the job's URL",
        lanes.CREDENTIALS,
        lambda: traces(("http://user:secret@127.0.0.1:8001/auth", "top")),
        "http://user:secret@{host}/auth",
    ),
    Rule(
        "credentials from the page's script",
        lanes.CREDENTIALS,
        lambda: traces(
            (f"{HERE}/xhr-auth.html", "top"), ("http://user:secret@127.0.0.1:8001/auth", "sub")
        ),
        "/xhr-auth.html",
        {"wait_for": "#done"},
    ),
    Rule(
        "a 401 challenge",
        lanes.CREDENTIALS,
        lambda: traces(
            (f"{HERE}/challenge.html", "top"), (f"{OTHER}/auth", "sub"), credentials=True
        ),
        "/challenge.html?src={other}/auth",
        {"wait_for": "#done"},
    ),
    Rule(
        "pop-up",
        lanes.POPUP,
        lambda: traces((f"{HERE}/popup.html", "top"), popup=True),
        "/popup.html",
        {"click": ["#open"]},
    ),
    Rule(
        "cross-site frame",
        lanes.CROSS_SITE_FRAME,
        lambda: traces((f"{HERE}/frame.html", "top"), (f"{OTHER}/solid.html", "frame")),
        "/frame.html?src={other}/solid.html",
    ),
    Rule(
        "several top-level origins",
        lanes.TOP_LEVEL_ORIGINS,
        lambda: traces((f"{HERE}/redirect", "top"), (f"{OTHER}/solid.html", "top")),
        "/redirect?to={other}/solid.html",
    ),
    Rule(
        "jobs",
        lanes.WORN,
        lambda: traces((f"{HERE}/solid.html", "top")),
        "/solid.html",
        lane_jobs=1,
    ),
    Rule(
        "permissions",
        lanes.PERMISSIONS,
        lambda: traces((f"{HERE}/permissions.html", "top"), permissions_touched=True),
        "/permissions.html?ask=1",
        {"wait_for": "#done"},
    ),
]

by_name = pytest.mark.parametrize("rule", RULES, ids=[r.name for r in RULES])


# -- the rules, pure -------------------------------------------------------------------


@by_name
def test_the_rules_say_why_a_lane_is_not_reused(
    rule: Rule, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lanes, "LANE_JOBS", rule.lane_jobs)
    reuse = rule.config.get("reuse_contexts", True)
    assert why_not_reuse(rule.left(), jobs=1, reuse_contexts=reuse) == rule.reason


def test_a_lane_serves_lane_jobs_jobs_then_goes() -> None:
    clean = traces((f"{HERE}/solid.html", "top"))
    assert why_not_reuse(clean, jobs=lanes.LANE_JOBS - 1, reuse_contexts=True) is None
    assert why_not_reuse(clean, jobs=lanes.LANE_JOBS, reuse_contexts=True) == lanes.WORN


@pytest.mark.parametrize(
    ("frame", "cross"),
    [
        ("http://127.0.0.1:9/x", False),  # same host, another port: not another site
        ("http://127.0.0.2:8001/x", True),
        ("http://sub.example.com/x", True),  # same site, other host: thrown away all the same
        ("about:blank", False),
        ("data:text/html,x", False),
    ],
)
def test_a_frame_on_another_host_is_cross_site(frame: str, cross: bool) -> None:
    left = traces((f"{HERE}/frame.html", "top"), (frame, "frame"))
    assert left.cross_site_frame is cross


def test_every_origin_a_page_touched_is_recorded_for_the_reset() -> None:
    left = traces(
        (f"{HERE}/page.html", "top"),
        ("http://user:pw@127.0.0.3:7/api", "sub"),
        (f"{OTHER}/img.png", "sub"),
        ("data:image/png,x", "sub"),
    )
    assert left.origins == {HERE, OTHER, "http://127.0.0.3:7"}
    assert left.top_origins == {HERE}


@pytest.mark.parametrize(
    ("status", "asked"), [(200, False), (401, True), (407, True), (403, False)]
)
def test_a_challenge_for_credentials_counts_as_credentials(status: int, asked: bool) -> None:
    left = JobTraces()
    left.saw_response(status)
    assert left.credentials is asked


def test_the_rules_are_asked_in_order_and_permissions_last() -> None:
    # Permissions cost a round trip into the page: any other reason comes first.
    left = JobTraces(failed=True, popup=True, permissions_touched=True)
    assert why_not_reuse(left, jobs=1, reuse_contexts=True) == lanes.FAILED
    left = JobTraces(permissions_touched=True)
    assert why_not_reuse(left, jobs=lanes.LANE_JOBS, reuse_contexts=True) == lanes.WORN


def test_lanes_never_mix_address_policies_or_user_agents() -> None:
    def key(**fields: Any) -> tuple[object, ...]:
        given = {k: v for k, v in fields.items() if k in ("user_agent", "resolve", "proxy")}
        options = parse_options(given, DEFAULT_OPTIONS)
        rest = {k: v for k, v in fields.items() if k not in given}
        return lanes.lane_key(ShotRequest("k:1", 1, f"{HERE}/", options, **rest))

    base = key()
    assert key() == base
    assert key(user_agent="other/1") != base
    assert key(allow_private=True) != base
    assert key(allow_networks=("127.0.0.1/32",)) != base
    # a lane whose guard connects shop.example to one address never serves a job that pins
    # it to another (or not at all)
    pinned = key(resolve=["shop.example:80:127.0.0.1"])
    assert pinned not in (base, key(resolve=["shop.example:80:127.0.0.2"]))
    assert pinned == key(resolve=["SHOP.example:80:127.0.0.1"])
    # nor does a lane behind one upstream proxy serve a job for another (or for none)
    proxied = key(proxy="socks5://a:b@127.0.0.1:1080")
    assert proxied not in (base, key(proxy="socks5://a:c@127.0.0.1:1080"))


# -- the same table, on both engines that reuse lanes ------------------------------------


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[PageServer, PageServer]]:
    here, other = start_server("127.0.0.1"), start_server("127.0.0.2")
    yield here, other
    stop_server(here)
    stop_server(other)


@pytest.mark.parametrize("engine_name", ["playwright", "selenium"])
@by_name
def test_both_engines_keep_or_throw_away_a_lane_by_the_same_rules(
    engine_name: str,
    rule: Rule,
    servers: tuple[PageServer, PageServer],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    here, other = servers
    monkeypatch.setattr(lanes, "LANE_JOBS", rule.lane_jobs)
    storage = LocalStorage(str(tmp_path))
    path = rule.path.format(other=other.base, host=here.base.removeprefix("http://"))
    url = path if path.startswith("http") else here.base + path

    def request(number: int, url: str, options: dict[str, Any]) -> ShotRequest:
        opts = parse_options({"timeout": 15, **options}, DEFAULT_OPTIONS)
        return ShotRequest(f"lanes:{number}", number, url, opts, allow_private=True)

    async def scenario() -> tuple[ShotResult, Counter[str], ShotResult, int]:
        config = EngineConfig(concurrency=1, **rule.config)
        engine: Any = get_registry().create_engine(engine_name, config)
        await engine.open()
        try:
            # Given a job that leaves what the rule is about, on an engine with one job slot
            first = await capture_request(request(1, url, rule.options), engine, storage)
            await engine.settled()  # the lane's reset (or its end) may run after the answer
            discarded = Counter(engine.lanes_discarded)
            opened = None
            if rule.reason == lanes.WORN and engine_name == "playwright":
                # playwright opens a worn lane's replacement in the background (the worn
                # one, reset, serves until it is open): wait for it, and count it now (the
                # next job wears its lane out too, and its replacement opens after it)
                for _ in range(600):
                    if engine.lanes_opened >= 2:
                        break
                    await asyncio.sleep(0.05)
                opened = engine.lanes_opened
            # When the next job comes
            plain = request(2, f"{here.base}/solid.html", {})
            after = await capture_request(plain, engine, storage)
            return first, discarded, after, opened or engine.lanes_opened
        finally:
            await engine.close()

    first, discarded, after, opened = asyncio.run(scenario())
    assert (first.status == "ok") is rule.ok, first.error
    # Then the lane was thrown away for the rule's reason and the next job got a new one,
    # or (no reason) the next job ran in the same lane, reset
    assert discarded == (Counter({rule.reason: 1}) if rule.reason else Counter())
    assert after.status == "ok", after.error
    assert opened == (2 if rule.reason else 1)
    assert_no_browser_left()


def test_lanes_never_mix_blocking_options() -> None:
    # A page that loaded an ad may serve it from its memory cache to the next job: a job that
    # blocks ads never shares a lane with one that does not, nor with one that blocks else.
    def key(**options: object) -> tuple[object, ...]:
        request = ShotRequest(
            id="x", line=1, url="http://a.test/", options=parse_options(options, DEFAULT_OPTIONS)
        )
        return lanes.lane_key(request)

    assert key() == key()
    assert len({key(), key(block_ads=True), key(block_trackers=True)}) == 3
    assert key(block_resources=["image"]) != key(block_resources=["font"])
    assert key(block_urls=["*ads*"]) != key()
    assert key(block_cookie_banners=True) != key()
