"""The conformance suite's cases: one job each, a page of ``distshot.testing.pages`` and the
options it is sent with, and which case shows which capture option."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..core.contracts import UNIVERSAL_OPTIONS
from ..core.options import DEFAULT_OPTIONS, parse_options

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)
#: Time an engine may take beyond a job's timeout (the service's clean-up grace).
GRACE_S = 5.0
#: Generous enough that an ordinary page (dialogs, pop-ups) loads beside a JS loop burning
#: a core on a 2-core machine; the hostile batch runs two jobs at a time for the same reason.
HOSTILE_TIMEOUT = 6.0
#: The wedged-page case's timeout, on a machine whose cores are all busy.
WEDGE_TIMEOUT = 8.0


#: A made-up host name that cases give the page server's address with ``resolve``: the
#: name is never looked up (no test may send a DNS query off the machine).
PINNED_HOST = "shop.example"
#: ads.html: a news page with an ad server's iframe and script (ib.adnxs.com, in EasyList) and
#: a tracker's pixel (sb.scorecardresearch.com, in EasyPrivacy), all pinned to the page
#: server. ``case=`` tells the pixel requests of the cases apart.
AD_PAGE = "http://news.example:{port}/ads.html?case="
AD_PINS = [
    f"{host}:{{port}}:127.0.0.1"
    for host in ("news.example", "ib.adnxs.com", "sb.scorecardresearch.com")
]
#: The consent case's script: the title says whether the page may scroll again.
CONSENT_SCROLL = "document.title += ' ' + getComputedStyle(document.body).overflowY"


#: What a case's ``{name}`` placeholders stand for when no batch fills them in: values
#: of the right shape, for reading which options a case sets.
PLACEHOLDERS = {
    "port": "1",
    "http_proxy": "http://127.0.0.1:1",
    "socks_proxy": "socks5://127.0.0.1:1",
    "bad_password_proxy": "http://u:p@127.0.0.1:1",
    "refusing_proxy": "socks5://127.0.0.1:1",
}


@dataclass(frozen=True)
class Case:
    """One job of a batch: a path on the page server (or a whole URL) and the options it is
    sent with. ``{port}`` in either stands for the page server's port, ``{http_proxy}`` and
    the like for the suite's proxies (``at``)."""

    path: str
    options: dict[str, Any]

    def at(self, port: int, **values: str) -> Case:
        """The case for a page server on ``port`` (and these placeholder values)."""
        filled = {**PLACEHOLDERS, **values, "port": str(port)}
        return Case(_fill(self.path, filled), _fill(self.options, filled))

    def needs(self) -> set[str]:
        options = parse_options(self.at(1).options, DEFAULT_OPTIONS)
        return options.non_default() - UNIVERSAL_OPTIONS


def _fill(value: Any, values: dict[str, str]) -> Any:
    if isinstance(value, str):
        for name, text in values.items():
            value = value.replace("{" + name + "}", text)
        return value
    if isinstance(value, dict):
        return {key: _fill(item, values) for key, item in value.items()}
    if isinstance(value, list):
        return [_fill(item, values) for item in value]
    return value


#: The cookie the page server's ``/account`` takes for a logged-in session.
SESSION_COOKIE = {"name": "sid", "value": "conformance-session", "domain": "127.0.0.1"}

# Controls (no waiting) change colour only after 5 s, so a busy machine cannot blur them.
OPTION_CASES: dict[str, Case] = {
    "default": Case("/solid.html", {}),
    "size": Case("/solid.html", {"width": 640, "height": 480}),
    "full_page": Case("/tall?h=3000", {"full_page": True}),
    "viewport_only": Case("/tall?h=3000", {}),
    "jpeg": Case("/solid.html", {"format": "jpeg", "quality": 30}),
    "webp": Case("/solid.html", {"format": "webp"}),
    "scale": Case("/solid.html", {"scale": 2, "width": 300, "height": 200}),
    "dcl": Case("/slow-image.html?ms=5000", {"wait_until": "domcontentloaded"}),
    "load": Case("/slow-image.html", {"wait_until": "load"}),
    "idle_control": Case("/idle.html?ms=5000", {"wait_until": "load"}),
    "networkidle": Case("/idle.html", {"wait_until": "networkidle"}),
    "late_control": Case("/late.html?ms=5000", {}),
    "wait_for": Case("/late.html", {"wait_for": "#late"}),
    "bad_selector": Case("/solid.html", {"wait_for": "#["}),
    "delay_control": Case("/delayed-color.html?ms=5000", {}),
    "delay": Case("/delayed-color.html", {"delay": 1500}),
    "user_agent": Case("/echo?ua", {"user_agent": "distshot-conformance/1.0"}),
    "headers": Case("/echo?hdr", {"headers": {"X-Distshot-Conformance": "yes"}}),
    # network: a made-up name given the page server's address
    "resolve": Case(
        f"http://{PINNED_HOST}:{{port}}/echo?resolve",
        {"resolve": [f"{PINNED_HOST}:{{port}}:127.0.0.1"]},
    ),
    "timeout": Case("/hang", {"timeout": 2}),
    # network and blocking: blocking.html's quarters are red by an image, a stylesheet, a
    # script and a fetch; ads.html's halves by an ad iframe and an ad script
    "blocking_control": Case("/blocking.html?open", {"wait_for": "#done"}),
    "block_resources": Case(
        "/blocking.html?blocked",
        {
            "wait_for": "#done",
            "block_resources": ["image", "stylesheet", "script", "xhr", "websocket"],
        },
    ),
    "block_urls": Case(
        "/blocking.html", {"wait_for": "#done", "block_urls": ["*/blocking.css", "re:slow-im"]}
    ),
    "ads_control": Case(AD_PAGE + "control", {"resolve": AD_PINS}),
    "block_ads": Case(AD_PAGE + "ads", {"resolve": AD_PINS, "block_ads": True}),
    "block_trackers": Case(AD_PAGE + "trackers", {"resolve": AD_PINS, "block_trackers": True}),
    "consent_control": Case("/consent.html", {"javascript": CONSENT_SCROLL}),
    "block_cookie_banners": Case(
        "/consent.html", {"block_cookie_banners": True, "javascript": CONSENT_SCROLL}
    ),
    # what to capture
    "selector": Case("/controls.html", {"selector": "#element", "padding": 10}),
    # (a missing element is looked for until a third of the job's time is left, so that the
    # answer is "not found", not a timeout; 10 s leaves room for a loaded machine's page load)
    "selector_missing": Case("/controls.html", {"selector": "#nope", "timeout": 10}),
    "clip": Case("/controls.html", {"clip": "100,100,200,100"}),
    "max_height": Case("/tall?h=5000", {"full_page": True, "max_height": 2000}),
    "scroll_page": Case("/lazy.html?scrolled", {"full_page": True}),
    "no_scroll": Case("/lazy.html?unscrolled", {"full_page": True, "scroll_page": False}),
    # an infinite-scroll page: scrolling stops when half the job's time is spent
    "endless": Case("/endless.html", {"scroll_page": True, "timeout": 8}),
    # changing the page
    "hide": Case("/flow.html", {"hide": ["#spacer"], "width": 400, "height": 300}),
    "remove": Case("/flow.html", {"remove": ["#spacer"], "width": 400, "height": 300}),
    "click": Case("/click.html", {"click": ["#first", "#second"]}),
    "click_missing": Case("/click.html", {"click": ["#nope"], "timeout": 10}),
    "javascript": Case(
        "/solid.html",
        {
            "javascript": "new Promise((done) => setTimeout(() => {"
            "document.documentElement.style.background = '#00ff00'; done(); }, 300))"
        },
    ),
    "javascript_error": Case("/solid.html", {"javascript": "throw new Error('conformance boom')"}),
    "css": Case("/solid.html", {"css": "html, body { background: #0000ff !important; }"}),
    "animations": Case("/animation.html", {"animations": "disabled"}),
    "animations_control": Case("/animation.html", {}),
    # emulation
    "media_control": Case("/media.html", {}),
    "color_scheme": Case("/media.html", {"color_scheme": "dark"}),
    "reduced_motion": Case("/media.html", {"reduced_motion": "reduce"}),
    "media": Case("/media.html", {"media": "print"}),
    "timezone": Case("/timezone.html", {"timezone": "Asia/Tokyo"}),
    "device": Case("/device.html", {"device": "iPhone 13"}),
    "device_control": Case("/device.html", {}),
    # identity (SESSION is the page server's default session cookie for /account)
    "cookies": Case("/account", {"cookies": [SESSION_COOKIE]}),
    "cookies_control": Case("/account", {}),
    "storage_state": Case(
        "/identity.html?state",
        {
            "storage_state": {
                "cookies": [SESSION_COOKIE],
                "origins": [
                    {
                        "origin": "http://127.0.0.1:{port}",
                        "localStorage": [{"name": "theme", "value": "dark"}],
                    }
                ],
            }
        },
    ),
    "http_credentials": Case("/auth", {"http_credentials": "user:secret"}),
    "http_digest": Case("/digest-auth", {"http_credentials": "user:secret"}),
    # credentials and blocking share one Fetch interception in the CDP engines
    "http_credentials_blocking": Case(
        "/digest-auth", {"http_credentials": "user:secret", "block_urls": ["*/never-loaded*"]}
    ),
    "locale": Case("/identity.html?locale", {"locale": "de-DE"}),
    "geolocation": Case("/geolocation.html", {"geolocation": "35.68,139.69,10"}),
    "geolocation_control": Case("/geolocation.html", {}),
    "javascript_disabled": Case("/noscript.html", {"javascript_enabled": False}),
    "javascript_control": Case("/noscript.html", {}),
    # output
    "omit_background": Case("/transparent.html", {"omit_background": True}),
    "background_control": Case("/transparent.html", {}),
    "pdf": Case("/solid.html", {"format": "pdf"}),
    "pdf_paper": Case(
        "/solid.html",
        {"format": "pdf", "pdf_paper": "Letter", "landscape": True, "print_background": False},
    ),
    "status_404": Case("/status/404", {}),
    "redirect": Case("/redirect?to=/solid.html", {}),
    "simple": Case("/simple.html", {}),
}

#: Every declared capture option and the cases above that show it. The suite fails when an
#: option has none (``test_every_declared_option_has_a_case``): a new option comes with its
#: case, so every engine must show it honoured or reject it.
OPTION_COVERAGE: dict[str, tuple[str, ...]] = {
    "width": ("size",),
    "height": ("size",),
    "scale": ("scale",),
    "device": ("device",),
    "full_page": ("full_page",),
    "max_height": ("max_height",),
    "selector": ("selector", "selector_missing"),
    "padding": ("selector",),
    "clip": ("clip",),
    "wait_until": ("dcl", "networkidle"),
    "wait_for": ("wait_for", "bad_selector"),
    "delay": ("delay",),
    "timeout": ("timeout",),
    "scroll_page": ("no_scroll", "endless"),
    "hide": ("hide",),
    "remove": ("remove",),
    "click": ("click", "click_missing"),
    "javascript": ("javascript", "javascript_error"),
    "css": ("css",),
    "animations": ("animations",),
    "color_scheme": ("color_scheme",),
    "reduced_motion": ("reduced_motion",),
    "media": ("media",),
    "timezone": ("timezone",),
    "user_agent": ("user_agent",),
    "headers": ("headers",),
    "resolve": ("resolve",),
    "proxy": ("proxy_http", "proxy_socks5"),
    "block_resources": ("block_resources",),
    "block_urls": ("block_urls",),
    "block_ads": ("block_ads",),
    "block_trackers": ("block_trackers",),
    "block_cookie_banners": ("block_cookie_banners",),
    "format": ("jpeg", "webp", "pdf"),
    "quality": ("jpeg",),
    "omit_background": ("omit_background",),
    "pdf_paper": ("pdf_paper",),
    "landscape": ("pdf_paper",),
    "print_background": ("pdf_paper",),
    "cookies": ("cookies",),
    "storage_state": ("storage_state",),
    "http_credentials": ("http_credentials", "http_digest", "http_credentials_blocking"),
    "locale": ("locale",),
    "geolocation": ("geolocation",),
    "javascript_enabled": ("javascript_disabled",),
}

#: Jobs through the suite's own proxies on 127.0.0.1 (``distshot.testing.proxies``), which
#: want user:password (``PROXY_USER``, ``PROXY_PASSWORD``): ``{http_proxy}`` and
#: ``{socks_proxy}`` come with them, ``{bad_password_proxy}`` with a wrong password,
#: ``{refusing_proxy}`` refuses every tunnel.
PROXY_USER, PROXY_PASSWORD, WRONG_PASSWORD = "shooter", "pr0xy-s3cret", "not-the-s3cret"
PROXY_CASES: dict[str, Case] = {
    # a made-up name, pinned: the proxy is asked for the pinned address
    "proxy_http": Case(
        f"http://{PINNED_HOST}:{{port}}/echo?via=http",
        {"proxy": "{http_proxy}", "resolve": [f"{PINNED_HOST}:{{port}}:127.0.0.1"]},
    ),
    "proxy_socks5": Case("/echo?via=socks5", {"proxy": "{socks_proxy}"}),
    "proxy_bad_password": Case("/solid.html?via=bad", {"proxy": "{bad_password_proxy}"}),
    "proxy_refusing": Case("/solid.html?via=refusing", {"proxy": "{refusing_proxy}"}),
}

#: Run by an engine made with the worker's default proxy (``EngineConfig.proxy``): a job that
#: names no proxy of its own goes through that one.
WORKER_PROXY_CASES: dict[str, Case] = {
    "proxy_worker_default": Case("/echo?via=worker", {}),
}

HOSTILE_CASES: dict[str, Case] = {
    name: Case(path, {"timeout": HOSTILE_TIMEOUT})
    for name, path in {
        "hang": "/hang",  # accepts the connection, never answers
        "never_loads": "/never-loads",  # an image that never arrives: 'load' never fires
        "jsloop": "/jsloop.html",  # while(true){}
        "dialogs": "/dialog.html",  # alert, confirm, prompt
        "popups": "/popup.html",  # window.open twice
        "download": "/download",  # Content-Disposition: attachment
        "redirect_loop": "/loop",  # redirects to itself forever
    }.items()
}
