"""The capture controls, once, for every engine that can speak Chrome DevTools (CDP).

Every built-in engine drives Chromium, and each can send a CDP command to its job's page:
Playwright through a CDP session, pyppeteer through the page's client, Selenium through its
own DevTools connection (blocking, in a thread), the example plug-in through its pipe. So the
controls (emulated media, scrolling, clicks, scripts, styles, element and clip shots, full
pages with a height cap, PDF) are written here once, as *steps*: generators that yield the
CDP calls they need and receive the answers. An engine runs them with ``run_steps`` (async)
or ``run_steps_blocking`` (threads), and the engines cannot drift apart.

The default options yield no call at all beyond the screenshot itself: a plain shot costs
what it cost before these controls existed.
"""

from __future__ import annotations

import base64
import json
import math
import time
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ..core.errors import ElementNotFound, InvalidOption, ScriptError
from ..core.options import CaptureOptions
from .chromium import EGRESS_OPTIONS

T = TypeVar("T")

#: The options these steps carry out whole, on any page they can send CDP calls to. An
#: engine that runs ``emulate_media``, ``prepare_page`` and ``capture`` honours them; it
#: declares them with its own (navigation, viewport, headers), and a new option joins this
#: set only once a step here carries it out.
STEP_OPTIONS = frozenset(
    {
        "full_page",
        "max_height",
        "selector",
        "padding",
        "clip",
        "scroll_page",
        "hide",
        "remove",
        "click",
        "javascript",
        "css",
        "animations",
        "color_scheme",
        "reduced_motion",
        "media",
        "timezone",
        "format",
        "quality",
        "omit_background",
        "pdf_paper",
        "landscape",
        "print_background",
    }
)
#: The identity options ``identity`` carries out on a page's session, with the browser-level
#: grant of ``granted_permissions``. (``http_credentials`` is not among them: answering a
#: challenge needs the page's Fetch events, which each engine receives its own way; it
#: enables ``FETCH_AUTH`` and answers with ``auth_answer``.)
IDENTITY_OPTIONS = frozenset(
    {"cookies", "storage_state", "locale", "geolocation", "javascript_enabled"}
)
#: What an engine that drives a Chromium page honours: the steps' options, plus those each
#: engine does its own way (the viewport and device emulation, the wait, the user agent and
#: extra headers), and the egress guard's (their contexts all use ``job_egress``). The
#: built-in browser engines all honour exactly these.
PAGE_ENGINE_OPTIONS = (
    STEP_OPTIONS
    | EGRESS_OPTIONS
    | frozenset(
        {
            "width",
            "height",
            "scale",
            "device",
            "wait_until",
            "wait_for",
            "delay",
            "user_agent",
            "headers",
        }
    )
)
#: What an engine honours that also runs ``identity`` before it navigates.
IDENTITY_PAGE_OPTIONS = PAGE_ENGINE_OPTIONS | IDENTITY_OPTIONS
#: The largest image ``capture`` asks Chromium for (pixels); below its limit of 2^29.
MAX_IMAGE_PIXELS = 480_000_000
#: The formats ``capture`` produces.
STEP_FORMATS = frozenset({"png", "jpeg", "webp", "pdf"})


@dataclass(frozen=True)
class Call:
    """One CDP command for the job's page."""

    method: str
    params: dict[str, Any]


#: A sequence of CDP calls that ends with a value.
Steps = Generator[Call, dict[str, Any], T]
AsyncSend = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]
BlockingSend = Callable[[str, dict[str, Any]], dict[str, Any]]


async def run_steps(steps: Steps[T], send: AsyncSend) -> T:
    """Run ``steps``, sending each call with ``send(method, params)``."""
    step = _advance(steps, None)
    while isinstance(step, Call):
        step = _advance(steps, await send(step.method, step.params))
    return step.value


def run_steps_blocking(steps: Steps[T], send: BlockingSend) -> T:
    """``run_steps`` for an engine whose calls block (Selenium's thread per slot)."""
    step = _advance(steps, None)
    while isinstance(step, Call):
        step = _advance(steps, send(step.method, step.params))
    return step.value


@dataclass(frozen=True)
class _Done(Generic[T]):
    """What the steps returned once they have no call left."""

    value: T


def _advance(steps: Steps[T], answer: dict[str, Any] | None) -> Call | _Done[T]:
    """The next call of ``steps`` given the answer to the last one (None: none sent yet), or
    their result: the one place that drives the generator, for both ways of sending."""
    try:
        return steps.send(answer) if answer is not None else next(steps)
    except StopIteration as done:
        return _Done(done.value)


# -- evaluating in the page -----------------------------------------------------------------


def evaluate(expression: str, *, user_script: bool = False) -> Steps[Any]:
    """Evaluate ``expression`` in the page's main world; a promise is awaited. An exception
    is a ``ScriptError``, saying whether the user's script threw or the page broke ours."""
    answer = yield Call(
        "Runtime.evaluate",
        {
            "expression": expression,
            "awaitPromise": True,
            # A user's script may return anything (a DOM node): its value is not needed.
            "returnByValue": not user_script,
            # A user's script may use top-level await, as in the DevTools console.
            "replMode": user_script,
            "userGesture": True,
        },
    )
    result = answer.get("result", {})
    if user_script and "exceptionDetails" not in answer and result.get("subtype") == "promise":
        # In REPL mode (top-level await) a script's completion value comes back as it is: a
        # promise it ends with is awaited here.
        answer = yield Call(
            "Runtime.awaitPromise", {"promiseObjectId": result["objectId"], "returnByValue": False}
        )
        result = answer.get("result", {})
    details = answer.get("exceptionDetails")
    if details is not None:
        message = _exception_text(details)
        if user_script:
            raise ScriptError(f"javascript threw: {message}")
        # Our own scripts fail only when the page broke what they use (a page can replace
        # document.querySelector): no retry would do better.
        raise ScriptError(f"the page broke distshot's own script: {message}")
    return result.get("value")


def _exception_text(details: dict[str, Any]) -> str:
    exception = details.get("exception") or {}
    text = exception.get("description") or exception.get("value") or details.get("text")
    first = str(text or "an exception").strip().splitlines()
    return first[0][:500] if first else "an exception"


def _call(function: str, *args: Any) -> str:
    """A JavaScript call of ``function`` with JSON arguments, as an expression."""
    return f"({function})({', '.join(json.dumps(a) for a in args)})"


def _ms_left(deadline: float) -> int:
    return max(0, int((deadline - time.monotonic()) * 1000))


def _search_budget(deadline: float) -> int:
    """Milliseconds to look for an element: the job's time left, less a third (at most three
    seconds) kept back so that "no such element" is the answer, not a timeout, even on a
    loaded machine (two seconds were not always enough at a load average of 12 on 2 cores:
    a starved renderer's last poll and its answer came late)."""
    left = _ms_left(deadline)
    return left - min(3000, left // 3)


# -- before navigation: what the page sees of its device ------------------------------------


@dataclass(frozen=True)
class Emulated:
    """The emulation a page currently has (a reused page carries it between jobs)."""

    media: str = ""
    color_scheme: str = ""
    reduced_motion: str = ""
    timezone: str = ""


FRESH = Emulated()


def emulate_media(opts: CaptureOptions, current: Emulated = FRESH) -> Steps[Emulated]:
    """Set what the page sees of its surroundings: the CSS media type, the ``prefers-*``
    features and the time zone; no call for what the page already has (the defaults, on a
    fresh page). Returns the new state."""
    wanted = Emulated(
        opts.media or "", opts.color_scheme or "", opts.reduced_motion or "", opts.timezone or ""
    )
    media = (wanted.media, wanted.color_scheme, wanted.reduced_motion)
    if media != (current.media, current.color_scheme, current.reduced_motion):
        yield Call(
            "Emulation.setEmulatedMedia",
            {
                "media": wanted.media,
                "features": [
                    {"name": "prefers-color-scheme", "value": wanted.color_scheme},
                    {"name": "prefers-reduced-motion", "value": wanted.reduced_motion},
                ],
            },
        )
    if wanted.timezone != current.timezone:
        # An empty id goes back to the machine's own zone.
        yield Call("Emulation.setTimezoneOverride", {"timezoneId": wanted.timezone})
    return wanted


# Each origin's localStorage of a storage state, written before the page's own scripts run
# (the first document of that origin in this page; sessionStorage is untouched).
_LOCAL_STORAGE = """(origins) => {
  const items = origins[location.origin];
  if (!items) return;
  try { for (const [name, value] of items) localStorage.setItem(name, value); } catch (e) {}
}"""


def identity(opts: CaptureOptions) -> Steps[None]:
    """Who the browser is to the page, before it navigates: cookies (the option's and the
    storage state's), the storage state's localStorage, the locale (navigator.language and
    Accept-Language), the position, and whether scripts run. No call at the defaults.

    The engine grants the geolocation permission itself (``granted_permissions``): that is
    a call to the browser, not to the page. A page that ran this keeps the overrides: a lane
    key holds locale, geolocation and javascript_enabled, and a lane that held cookies or a
    storage state is discarded (``lanes``)."""
    from ..core.identitykinds import Cookie, StorageState

    cookies: list[Cookie] = list(opts.cookies) if isinstance(opts.cookies, tuple) else []
    state = opts.storage_state if isinstance(opts.storage_state, StorageState) else None
    if state is not None:
        cookies += state.cookies
    if cookies:
        yield Call("Network.setCookies", {"cookies": [c.to_browser() for c in cookies]})
    if state is not None and state.origins:
        origins = {origin: [list(pair) for pair in items] for origin, items in state.origins}
        yield Call(
            "Page.addScriptToEvaluateOnNewDocument",
            {"source": _call(_LOCAL_STORAGE, origins)},
        )
    if opts.locale:
        yield Call("Emulation.setLocaleOverride", {"locale": opts.locale})
        user_agent = opts.user_agent
        if not user_agent:
            version = yield Call("Browser.getVersion", {})
            user_agent = str(version["userAgent"])
        yield Call(
            "Network.setUserAgentOverride",
            {"userAgent": user_agent, "acceptLanguage": accept_language(opts.locale)},
        )
    if opts.geolocation is not None:
        latitude, longitude, accuracy = opts.geolocation
        yield Call(
            "Emulation.setGeolocationOverride",
            {"latitude": latitude, "longitude": longitude, "accuracy": accuracy},
        )
    if not opts.javascript_enabled:
        yield Call("Emulation.setScriptExecutionDisabled", {"value": True})


def accept_language(locale: str) -> str:
    """The languages of ``locale``'s Accept-Language header: Chromium adds the weights
    (``de-DE,de`` goes out as ``de-DE,de;q=0.9``)."""
    language = locale.split("-")[0]
    return locale if language == locale else f"{locale},{language}"


#: ``Fetch.enable`` for a job with ``http_credentials``: every request pauses (Chromium asks
#: for credentials only through the Fetch domain), and ``auth_answer`` answers challenges.
FETCH_AUTH = {"handleAuthRequests": True, "patterns": [{"urlPattern": "*"}]}


def auth_answer(opts: CaptureOptions, event: dict[str, Any]) -> dict[str, Any]:
    """The ``Fetch.continueWithAuth`` parameters for a ``Fetch.authRequired`` event: the
    job's credentials for the server that asks (basic or digest: Chromium computes the
    answer), never for a proxy, and a cancel once they were refused (no endless retry)."""
    from ..core.identitykinds import Credentials

    credentials = opts.http_credentials
    challenge = event.get("authChallenge", {})
    answer: dict[str, Any] = {"response": "CancelAuth"}
    if isinstance(credentials, Credentials) and challenge.get("source") != "Proxy":
        answer = {
            "response": "ProvideCredentials",
            "username": credentials.username,
            "password": credentials.password,
        }
    return {"requestId": event["requestId"], "authChallengeResponse": answer}


def granted_permissions(opts: CaptureOptions) -> list[str]:
    """Permissions the job's browser context is granted (``Browser.grantPermissions``)."""
    return ["geolocation"] if opts.geolocation is not None else []


@dataclass(frozen=True)
class Viewport:
    """The device metrics a page currently has (a reused page carries them between jobs)."""

    width: int = 0
    height: int = 0
    scale: float = 0.0
    mobile: bool = False
    touch: bool = False


NO_VIEWPORT = Viewport()


def emulate_device(opts: CaptureOptions, current: Viewport = NO_VIEWPORT) -> Steps[Viewport]:
    """Give the page the job's viewport, device scale factor, mobile layout and touch, on the
    session the screenshot is taken on (``capture(..., session_scales=True)``); no call for
    what the page has already. Returns the new state. (Playwright sets these through its
    own context options instead.)"""
    wanted = Viewport(opts.width, opts.height, opts.scale, opts.is_mobile, opts.has_touch)
    if (wanted.width, wanted.height, wanted.scale, wanted.mobile) != (
        current.width,
        current.height,
        current.scale,
        current.mobile,
    ):
        yield Call(
            "Emulation.setDeviceMetricsOverride",
            {
                "width": opts.width,
                "height": opts.height,
                "deviceScaleFactor": opts.scale,
                "mobile": opts.is_mobile,
            },
        )
    if wanted.touch != current.touch:
        yield Call(
            "Emulation.setTouchEmulationEnabled", {"enabled": wanted.touch, "maxTouchPoints": 1}
        )
    return wanted


# -- after load, before the capture: scrolling and changes to the page ----------------------

_SCROLL = """async (limit, budget) => {
  const started = performance.now();
  const frame = () => new Promise((done) => requestAnimationFrame(() => done()));
  const pause = (ms) => new Promise((done) => setTimeout(done, ms));
  const height = () => Math.max(document.documentElement.scrollHeight,
                                document.body ? document.body.scrollHeight : 0);
  const step = Math.max(100, Math.floor(window.innerHeight * 0.9));
  let y = 0;
  // Down a screen at a time, so that lazy images and infinite-scroll sections start
  // loading; stops at the bottom, at the height cap or when the time is up.
  while (y + window.innerHeight < Math.min(height(), limit) &&
         performance.now() - started < budget) {
    y += step;
    window.scrollTo(0, y);
    await frame();
    await pause(50);
  }
  window.scrollTo(0, 0);
  const pending = [...document.images].filter((img) => !img.complete);
  const loaded = pending.map((img) => new Promise((done) => {
    img.addEventListener("load", done, {once: true});
    img.addEventListener("error", done, {once: true});
  }));
  await Promise.race([Promise.all(loaded),
                      pause(Math.max(0, budget - (performance.now() - started)))]);
  await frame();
  await frame();
  return y;
}"""

_STYLE = """(css) => {
  const style = document.createElement("style");
  style.textContent = css;
  (document.head || document.documentElement).appendChild(style);
}"""

_VALID_SELECTORS = """(selectors) => {
  for (const selector of selectors) {
    try { document.createDocumentFragment().querySelector(selector); }
    catch (e) { return selector; }
  }
  return null;
}"""

# The first element matching the selector, looked for every 50 ms until the budget (ms) is
# spent: the start of the page functions below that act on an element.
_FIND_ELEMENT = """
  const started = performance.now();
  let element = document.querySelector(selector);
  while (!element && performance.now() - started < budget) {
    await new Promise((done) => setTimeout(done, 50));
    element = document.querySelector(selector);
  }
"""

_CLICK = (
    """async (selector, budget) => {"""
    + _FIND_ELEMENT
    + """  if (!element) return false;
  element.scrollIntoView({block: "center", inline: "center"});
  element.click();
  // Let the page react (a banner closes, a tab opens) before the next step.
  await new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)));
  await new Promise((done) => setTimeout(done, 100));
  return true;
}"""
)

# Finite animations end in their final state, endless ones go back to their start (as
# Playwright's animations="disabled"); transitions and animations that start later finish
# at once.
_NO_ANIMATIONS = """() => {
  const settle = (animation) => {
    const timing = animation.effect && animation.effect.getComputedTiming();
    if (timing && timing.endTime !== Infinity) animation.finish(); else animation.cancel();
  };
  for (const animation of document.getAnimations()) settle(animation);
  const later = () => { for (const animation of document.getAnimations()) settle(animation); };
  for (const kind of ["transitionrun", "transitionstart", "animationstart"])
    window.addEventListener(kind, later, true);
  const style = document.createElement("style");
  style.textContent = "*, *::before, *::after { transition: none !important; " +
                      "caret-color: transparent !important; }";
  (document.head || document.documentElement).appendChild(style);
}"""


def prepare_page(opts: CaptureOptions, deadline: float) -> Steps[None]:
    """Everything between load and capture, in this order: scroll through the page (lazy
    content), click, run the script, add the styles (css, hide, remove), settle animations.
    Nothing happens (and no call is made) for options at their defaults."""
    if opts.scrolls:
        budget = _ms_left(deadline) // 2  # the other half is for the capture
        yield from evaluate(_call(_SCROLL, opts.max_height, budget))
    selectors = [*opts.click, *opts.hide, *opts.remove]
    if opts.selector:
        selectors.append(opts.selector)
    if selectors:
        bad = yield from evaluate(_call(_VALID_SELECTORS, selectors))
        if bad is not None:
            raise InvalidOption(f"{bad!r} is not a valid CSS selector")
    for selector in opts.click:
        clicked = yield from evaluate(_call(_CLICK, selector, _search_budget(deadline)))
        if not clicked:
            raise ElementNotFound(
                f"click: no element matches {selector!r} within {opts.timeout:g}s"
            )
        if time.monotonic() >= deadline:
            raise TimeoutError  # the engine reports the job's timeout, with its URL
    if opts.javascript:
        yield from evaluate(opts.javascript, user_script=True)
    css = _stylesheet(opts)
    if css:
        yield from evaluate(_call(_STYLE, css))
    if opts.animations == "disabled":
        yield from evaluate(_call(_NO_ANIMATIONS))


def _stylesheet(opts: CaptureOptions) -> str:
    # One rule per selector: a rule with a selector list is dropped whole if one is invalid.
    rules = [f"{s} {{ visibility: hidden !important; }}" for s in opts.hide]
    rules += [f"{s} {{ display: none !important; }}" for s in opts.remove]
    return "\n".join([opts.css or "", *rules]).strip()


# -- the capture ----------------------------------------------------------------------------

#: Paper sizes in inches (Chromium's printToPDF takes inches).
PAPER = {
    "A3": (11.69, 16.54),
    "A4": (8.27, 11.69),
    "A5": (5.83, 8.27),
    "Legal": (8.5, 14.0),
    "Letter": (8.5, 11.0),
    "Tabloid": (11.0, 17.0),
}

# The element's box in page coordinates, after scrolling it into view (so that lazy content
# in it loads and sticky headers sit where a reader would see them); null until it exists.
_ELEMENT_BOX = (
    """async (selector, budget) => {"""
    + _FIND_ELEMENT
    + """  if (!element) return null;
  const box = element.getBoundingClientRect();
  if (box.top < 0 || box.bottom > window.innerHeight || box.left < 0 ||
      box.right > window.innerWidth) {
    element.scrollIntoView({block: "nearest", inline: "nearest"});
    await new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)));
  }
  const rect = element.getBoundingClientRect();
  return {x: rect.left + window.scrollX, y: rect.top + window.scrollY,
          width: rect.width, height: rect.height};
}"""
)


@dataclass(frozen=True)
class Shot:
    image: bytes
    truncated: bool = False


def capture(
    opts: CaptureOptions,
    deadline: float,
    *,
    session_scales: bool = True,
    optimize_for_speed: bool = True,
) -> Steps[Shot]:
    """Take the image (or print the PDF) the options ask for.

    ``session_scales``: whether the CDP session the calls go to applies the job's device
    scale factor itself (it set ``Emulation.setDeviceMetricsOverride`` with it; pyppeteer,
    Selenium). Chromium then multiplies a clip by it; a session that did not (Playwright
    emulates on a session of its own) gets the scale in the clip instead."""
    if opts.format == "pdf":
        return (yield from print_pdf(opts))
    params: dict[str, Any] = {"format": opts.format, "fromSurface": True}
    if opts.quality is not None:
        params["quality"] = opts.quality
    if optimize_for_speed:
        # zlib's fastest level for PNG: about half the encoding time for a quarter more bytes.
        params["optimizeForSpeed"] = True
    truncated = False
    clip: dict[str, float] | None = None
    if opts.selector:
        box = yield from evaluate(_call(_ELEMENT_BOX, opts.selector, _search_budget(deadline)))
        if box is None:
            raise ElementNotFound(
                f"selector: no element matches {opts.selector!r} within {opts.timeout:g}s"
            )
        if box["width"] <= 0 or box["height"] <= 0:
            raise ElementNotFound(f"selector: the element {opts.selector!r} has no size")
        pad = opts.padding
        x, y = max(0.0, box["x"] - pad), max(0.0, box["y"] - pad)
        clip = {
            "x": x,
            "y": y,
            "width": box["x"] + box["width"] + pad - x,
            "height": box["y"] + box["height"] + pad - y,
        }
    elif opts.clip:
        x, y, width, height = opts.clip
        clip = {"x": x, "y": y, "width": width, "height": height}
    elif opts.full_page:
        layout = yield Call("Page.getLayoutMetrics", {})
        size = layout.get("cssContentSize") or layout["contentSize"]
        content_height = math.ceil(size["height"])
        truncated = content_height > opts.max_height
        clip = {
            "x": 0,
            "y": 0,
            "width": max(opts.width, math.ceil(size["width"])),
            "height": min(max(opts.height, content_height), opts.max_height),
        }
    elif opts.scale != 1 and not session_scales:
        # The viewport at the job's scale: a clip is this session's only way to scale.
        layout = yield Call("Page.getLayoutMetrics", {})
        view = layout.get("cssVisualViewport", {})
        clip = {
            "x": view.get("pageX", 0),
            "y": view.get("pageY", 0),
            "width": opts.width,
            "height": opts.height,
        }
    if clip is not None:
        clip["scale"] = 1 if session_scales else opts.scale
        # Chromium cannot encode an image of 2^29 pixels or more ("Unable to capture
        # screenshot", measured: 1280x415,000 works, 1280x419,430 fails): a taller area is
        # cut to what fits, whatever its width and scale, and the record says so.
        pixels_per_row = clip["width"] * opts.scale * opts.scale
        if clip["height"] * pixels_per_row > MAX_IMAGE_PIXELS:
            clip["height"] = math.floor(MAX_IMAGE_PIXELS / pixels_per_row)
            truncated = True
        params["clip"] = clip
        # Draw what lies outside the viewport without resizing it (so vh units and the
        # image's width stay what the viewport gives).
        params["captureBeyondViewport"] = True
    if opts.omit_background:
        yield Call(
            "Emulation.setDefaultBackgroundColorOverride",
            {"color": {"r": 0, "g": 0, "b": 0, "a": 0}},
        )
    answer = yield Call("Page.captureScreenshot", params)
    if opts.omit_background:
        yield Call("Emulation.setDefaultBackgroundColorOverride", {})
    return Shot(base64.b64decode(answer["data"]), truncated)


def print_pdf(opts: CaptureOptions) -> Steps[Shot]:
    width, height = PAPER[opts.pdf_paper]
    answer = yield Call(
        "Page.printToPDF",
        {
            "landscape": opts.landscape,
            "printBackground": opts.print_background,
            "paperWidth": width,
            "paperHeight": height,
            "preferCSSPageSize": False,
        },
    )
    return Shot(base64.b64decode(answer["data"]))
