"""Capture options, each declared once: name, type, range or choices, default, whether it
changes the image, help. Everything else is generated from these declarations: the parser
for CSV/JSONL/TOML/wire values, the CLI flags, ``distshot options``, the README's table and
the API's schema. Adding an option means one field here plus the engines that honour it.

Values arrive as text (CSV, environment), JSON values (JSONL, wire) or Python values (CLI);
``parse_options`` turns any of them into a validated, immutable ``CaptureOptions`` or raises
``InvalidOption`` naming the field and the accepted values.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from .devices import DEVICES, Device
from .errors import InvalidOption
from .identitykinds import (
    Cookie,
    Cookies,
    Credentials,
    CredentialsKind,
    Geolocation,
    Locale,
    StorageState,
    StorageStateKind,
)
from .optionkinds import (
    MAX_PIXELS,
    Choice,
    Choices,
    Clip,
    Code,
    DeviceName,
    Flag,
    Headers,
    Int,
    Kind,
    Number,
    ProxyUrl,
    Resolves,
    Selectors,
    Text,
    TimeZone,
    UrlPatterns,
)
from .secretvalues import REDACTED, SecretRef, is_secret_ref, keyed_hash, read_secret, scrub

__all__ = [
    "DEFAULT_OPTIONS",
    "OPTION_NAMES",
    "SPECS",
    "CaptureOptions",
    "Choice",
    "Flag",
    "Int",
    "Kind",
    "Number",
    "OptionSpec",
    "options_table",
    "parse_options",
]
#: A full page taller than this (CSS px) is cut there unless ``max_height`` says otherwise.
#: Measured (docs/benchmarks.md, "Tall pages"): Chromium renders a 1280 px wide page whole
#: far beyond this; the cap exists for the pages that would crash the browser.
DEFAULT_MAX_HEIGHT = 300_000

#: What ``block_resources`` accepts: Chromium's resource types, by the names users know
#: (the engines map them to CDP's; ``other`` is every type not named here).
RESOURCE_TYPES = ("image", "media", "font", "stylesheet", "script", "xhr", "websocket", "other")

#: Groups, in the order ``distshot options`` and the README show them.
GROUPS = (
    "Viewport and device",
    "What to capture",
    "Waiting",
    "Changing the page",
    "Emulation",
    "Identity",
    "Network",
    "Blocking",
    "Output",
)


# -- the declarations -----------------------------------------------------------------------

T = TypeVar("T")


@dataclass(frozen=True)
class OptionSpec:
    """One capture option's declaration."""

    name: str
    kind: Kind
    default: Any
    help: str
    group: str
    #: Changes the image: part of the image's name and of the cache key.
    image: bool = True
    #: The CLI flag, when it is not the option's name in kebab-case (``--header``).
    flag: str | None = None
    #: A secret (a cookie's value, a password): never shown in clear, not in the manifest,
    #: logs, errors, the API's answers nor the cache key (a keyed hash stands in for it);
    #: ``@secrets/NAME`` names one kept on the worker (``secretvalues``).
    secret: bool = False

    def to_json(self, value: Any) -> Any:
        """The value, JSON-ready: what the wire carries (a secret reference as its name)."""
        if isinstance(value, SecretRef):
            return value.text
        return self.kind.to_json(value)

    def shown(self, value: Any) -> Any:
        """The value as it may be shown anywhere (a secret's is hidden, its name is not)."""
        if self.secret and not isinstance(value, SecretRef):
            return REDACTED
        if self.kind.has_secret_part and not isinstance(value, SecretRef):
            return self.kind.key_json(value)
        return self.to_json(value)

    @property
    def cli_flag(self) -> str:
        return "--" + (self.flag or self.name.replace("_", "-"))

    @property
    def default_text(self) -> str:
        """The default as the docs show it."""
        if self.default is None or self.default == ():
            return ""
        if isinstance(self.default, bool):
            return "true" if self.default else "false"
        if isinstance(self.default, float) and self.default.is_integer():
            return str(int(self.default))
        if isinstance(self.default, int):
            return f"{self.default:,}" if self.default >= 10_000 else str(self.default)
        return str(self.default)


def option(
    default: T,
    kind: Kind,
    help: str,
    *,
    group: str,
    image: bool = True,
    flag: str | None = None,
    secret: bool = False,
) -> T:
    """Declare a ``CaptureOptions`` field as an option (the name is the field's)."""
    assert group in GROUPS, group
    spec = {
        "kind": kind,
        "help": help,
        "group": group,
        "image": image,
        "flag": flag,
        "secret": secret,
    }
    # (a value with a secret part, a proxy URL, is left out of the options' repr)
    result: T = field(default=default, metadata={"option": spec}, repr=not kind.has_secret_part)
    return result


@dataclass(frozen=True)
class CaptureOptions:
    """Every capture option, with its declaration. Each field is one option."""

    # Viewport and device
    width: int = option(
        1280, Int(1, MAX_PIXELS), "Viewport width in CSS px.", group="Viewport and device"
    )
    height: int = option(
        800, Int(1, MAX_PIXELS), "Viewport height in CSS px.", group="Viewport and device"
    )
    scale: float = option(
        1.0,
        Number(0.0, 5.0),  # device presets go up to 4.5 (Galaxy S9+)
        "Device scale factor: 2 doubles the pixels of the image.",
        group="Viewport and device",
    )
    device: str | None = option(
        None,
        DeviceName(),
        "A named phone, tablet or desktop (viewport, scale, user agent, mobile, touch); "
        "explicit width, height, scale and user_agent override it.",
        group="Viewport and device",
    )
    # What to capture
    full_page: bool = option(
        False, Flag(), "The whole scrollable page, not just the viewport.", group="What to capture"
    )
    max_height: int = option(
        DEFAULT_MAX_HEIGHT,
        Int(100, 1_000_000),
        "A full page taller than this (CSS px) is cut here; the record says truncated.",
        group="What to capture",
    )
    selector: str | None = option(
        None,
        Text(),
        "An image of the first element matching this CSS selector (waits for it).",
        group="What to capture",
    )
    padding: int = option(
        0,
        Int(0, 1000),
        "CSS px added around the selector's element.",
        group="What to capture",
    )
    clip: tuple[float, float, float, float] | None = option(
        None, Clip(), "Only this rectangle of the page: x,y,width,height.", group="What to capture"
    )
    # Waiting
    wait_until: str = option(
        "load",
        Choice(("load", "domcontentloaded", "networkidle")),
        "The navigation event to wait for.",
        group="Waiting",
    )
    wait_for: str | None = option(
        None, Text(), "A CSS selector that must be visible before the capture.", group="Waiting"
    )
    delay: int = option(
        0, Int(0, 60_000), "Extra milliseconds to wait before the capture.", group="Waiting"
    )
    timeout: float = option(
        30.0, Number(0.0, 600.0), "Seconds for the whole job.", group="Waiting", image=False
    )
    scroll_page: bool | None = option(
        None,
        Flag(),
        "Scroll through the page first, so lazy images load [on with full_page].",
        group="Waiting",
    )
    # Changing the page
    hide: tuple[str, ...] = option(
        (), Selectors(), "Elements made visibility: hidden.", group="Changing the page"
    )
    remove: tuple[str, ...] = option(
        (), Selectors(), "Elements made display: none.", group="Changing the page"
    )
    click: tuple[str, ...] = option(
        (),
        Selectors(),
        "Elements clicked in order (a consent button, a tab); a missing one fails the job.",
        group="Changing the page",
    )
    javascript: str | None = option(
        None,
        Code(),
        "Script run after load, before the capture (a returned promise is awaited).",
        group="Changing the page",
    )
    css: str | None = option(
        None, Code(), "Stylesheet added before the capture.", group="Changing the page"
    )
    animations: str = option(
        "allow",
        Choice(("allow", "disabled")),
        "disabled: CSS animations, transitions and Web Animations finished before the capture.",
        group="Changing the page",
    )
    # Emulation
    color_scheme: str | None = option(
        None,
        Choice(("light", "dark", "no-preference")),
        "prefers-color-scheme the page sees.",
        group="Emulation",
    )
    reduced_motion: str | None = option(
        None,
        Choice(("reduce", "no-preference")),
        "prefers-reduced-motion the page sees.",
        group="Emulation",
    )
    media: str | None = option(
        None, Choice(("screen", "print")), "CSS media type.", group="Emulation"
    )
    timezone: str | None = option(
        None, TimeZone(), "The time zone the page's clock runs in.", group="Emulation"
    )
    user_agent: str | None = option(
        None, Text(), "User-Agent header and navigator.userAgent.", group="Emulation"
    )
    headers: tuple[tuple[str, str], ...] = option(
        (), Headers(), "Extra request header 'Name: value'.", group="Emulation", flag="header"
    )
    # Identity (``option`` returns a dataclasses.field; these value types are frozen, which
    # ruff cannot see through the unions)
    cookies: tuple[Cookie, ...] | SecretRef = option(  # noqa: RUF009
        (),
        Cookies(),
        "Cookies the page gets: name, value, domain or url, path, expires, http_only, "
        "secure, same_site.",
        group="Identity",
        secret=True,
    )
    storage_state: StorageState | SecretRef | None = option(  # noqa: RUF009
        None,
        StorageStateKind(),
        "A logged-in session saved by Playwright: its cookies, and localStorage per origin.",
        group="Identity",
        secret=True,
    )
    http_credentials: Credentials | SecretRef | None = option(  # noqa: RUF009
        None,
        CredentialsKind(),
        "user:password for HTTP basic or digest authentication.",
        group="Identity",
        secret=True,
    )
    locale: str | None = option(
        None,
        Locale(),
        "The language the page sees: navigator.language and Accept-Language.",
        group="Identity",
    )
    geolocation: tuple[float, float, float] | None = option(
        None,
        Geolocation(),
        "The position the page reads, with the geolocation permission granted.",
        group="Identity",
    )
    javascript_enabled: bool = option(
        True,
        Flag(),
        "Run the page's scripts; false shows what a browser without JavaScript sees.",
        group="Identity",
    )
    # Network
    resolve: tuple[tuple[str, int, str], ...] = option(
        (),
        Resolves(),
        "Connect to this address for host:port instead of asking DNS (curl's --resolve); "
        "the address still passes the address policy.",
        group="Network",
    )
    proxy: str | None = option(
        None,
        ProxyUrl(),
        "Upstream proxy for every connection of the page (behind the egress guard; the "
        "address policy judges it and the target); its password is never shown.",
        group="Network",
    )
    block_resources: tuple[str, ...] = option(
        (),
        Choices(RESOURCE_TYPES),
        "Resource types not loaded (xhr includes fetch); refused inside the browser.",
        group="Network",
    )
    block_urls: tuple[str, ...] = option(
        (),
        UrlPatterns(),
        "URLs not loaded: a glob on the whole URL, or 're:' and a regex.",
        group="Network",
        flag="block-url",
    )
    # Blocking: filter lists and consent popups
    block_ads: bool = option(
        False,
        Flag(),
        "Requests EasyList matches are not loaded; ad slots hidden.",
        group="Blocking",
    )
    block_trackers: bool = option(
        False, Flag(), "Requests EasyPrivacy matches are not loaded.", group="Blocking"
    )
    block_cookie_banners: bool = option(
        False,
        Flag(),
        "Consent popups refused (opt-out) or hidden, by DuckDuckGo's autoconsent rules.",
        group="Blocking",
    )
    # Output
    format: str = option(
        "png",
        Choice(("png", "jpeg", "webp", "pdf"), aliases=(("jpg", "jpeg"),)),
        "Image format; pdf is Chromium's print to PDF.",
        group="Output",
    )
    quality: int | None = option(None, Int(0, 100), "JPEG and WebP quality.", group="Output")
    omit_background: bool = option(
        False, Flag(), "Transparent background where the page has none (png, webp).", group="Output"
    )
    pdf_paper: str = option(
        "A4",
        Choice(
            ("A3", "A4", "A5", "Legal", "Letter", "Tabloid"),
            aliases=tuple((p.lower(), p) for p in ("A3", "A4", "A5", "Legal", "Letter", "Tabloid")),
        ),
        "Paper size of a pdf.",
        group="Output",
    )
    landscape: bool = option(False, Flag(), "Landscape paper for a pdf.", group="Output")
    print_background: bool = option(
        True, Flag(), "Print background colours and images in a pdf.", group="Output"
    )

    #: Not an option: which options were given explicitly (at any layer), so that a device
    #: preset fills only the others.
    explicit: frozenset[str] = field(default=frozenset(), compare=False, repr=False)

    # -- derived values engines use ---------------------------------------------------------

    @property
    def device_preset(self) -> Device | None:
        return DEVICES[self.device] if self.device else None

    @property
    def is_mobile(self) -> bool:
        preset = self.device_preset
        return preset.mobile if preset else False

    @property
    def has_touch(self) -> bool:
        preset = self.device_preset
        return preset.touch if preset else False

    @property
    def scrolls(self) -> bool:
        """Whether to scroll through the page first: ``scroll_page``, else ``full_page``."""
        return self.full_page if self.scroll_page is None else self.scroll_page

    @property
    def blocks_requests(self) -> bool:
        """Whether some requests are refused (the engine intercepts every request)."""
        return bool(
            self.block_resources or self.block_urls or self.block_ads or self.block_trackers
        )

    @property
    def blocking(self) -> tuple[object, ...]:
        """The blocking options together: a reused page (a lane) serves only jobs that block
        the same way, since what one loaded may come from its memory cache for the next."""
        return (
            self.block_resources,
            self.block_urls,
            self.block_ads,
            self.block_trackers,
            self.block_cookie_banners,
        )

    @property
    def changes_page(self) -> bool:
        """Whether anything must be done to the page between load and capture."""
        return bool(
            self.hide
            or self.remove
            or self.click
            or self.javascript
            or self.css
            or self.animations != "allow"
        )

    # -- the wire and the cache -------------------------------------------------------------

    def to_wire(self) -> dict[str, Any]:
        """The options that differ from the defaults, JSON-ready; ``from_wire`` inverts it.

        Messages carry only these: a .txt batch then sends ``{}``, and the worker rebuilds
        the shared default object without parsing anything.
        """
        return {name: SPECS[name].to_json(getattr(self, name)) for name in self.non_default()}

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> CaptureOptions:
        return parse_options(data, DEFAULT_OPTIONS)

    def non_default(self) -> set[str]:
        """Names of options set to something other than their default."""
        if self is DEFAULT_OPTIONS:
            return set()
        return {name for name, spec in SPECS.items() if getattr(self, name) != spec.default}

    @functools.cached_property
    def digest(self) -> str:
        """A stable hash of the image-changing options that differ from their defaults
        (cached: every request of a .txt batch shares one options object). Only those: an
        option added later, at its default, changes no existing image's name. A secret
        counts by its keyed hash: two sessions never share an image, and the digest (part
        of every object name) reveals nothing of them."""
        data = {}
        for name in sorted(self.non_default()):
            spec = SPECS[name]
            if spec.image:
                value = getattr(self, name)
                data[name] = (
                    keyed_hash(json.dumps(spec.to_json(value), sort_keys=True))
                    if spec.secret
                    else spec.kind.key_json(value)
                )
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()

    def shown(self) -> dict[str, Any]:
        """The options that differ from the defaults, as they may be shown (logs, answers):
        secret values hidden."""
        return {name: SPECS[name].shown(getattr(self, name)) for name in sorted(self.non_default())}

    def resolve_secrets(self, directory: Path | None) -> CaptureOptions:
        """These options with every ``@secrets/NAME`` replaced by the secret, read from the
        worker's ``secrets_dir``: done on the worker, so the value never crossed the broker."""
        changes = {}
        for name, spec in SECRET_SPECS.items():  # (per request: only the few secret ones)
            value = getattr(self, name)
            if isinstance(value, SecretRef):
                text = read_secret(name, value, directory)
                changes[name] = _parse_secret(spec, name, text, value.text)
        if not changes:
            return self
        result = dataclasses.replace(self, **changes)
        check_combination(result)
        return result


SPECS: dict[str, OptionSpec] = {
    f.name: OptionSpec(name=f.name, default=f.default, **f.metadata["option"])
    for f in dataclasses.fields(CaptureOptions)
    if "option" in f.metadata
}
OPTION_NAMES = frozenset(SPECS)
#: The options marked secret: the only ones that may hold an ``@secrets/NAME`` reference.
SECRET_SPECS = {name: spec for name, spec in SPECS.items() if spec.secret}
#: The one default object: shared by every request without options, so its digest is
#: computed once per process.
DEFAULT_OPTIONS = CaptureOptions()
#: What a device preset sets, unless given explicitly.
_DEVICE_FIELDS = ("width", "height", "scale", "user_agent")


def parse_options(raw: Mapping[str, Any], base: CaptureOptions) -> CaptureOptions:
    """Validate ``raw`` (any source) and lay it over ``base``.

    Keys with a None value or an empty CSV cell are "not set" and keep ``base``'s value.
    Unknown keys are an error: a misspelt option must never be silently ignored.
    """
    changes: dict[str, Any] = {}
    for key, value in raw.items():
        name = key.strip().lower().replace("-", "_")
        spec = SPECS.get(name)
        if spec is None:
            raise InvalidOption(
                f"unknown option {key!r}; known options: {', '.join(sorted(OPTION_NAMES))}"
            )
        if value is None or (isinstance(value, str) and value.strip() == "" and name != "headers"):
            continue
        if spec.secret and is_secret_ref(value):
            changes[name] = SecretRef.parse(name, value)
        elif spec.secret:
            changes[name] = _parse_secret(spec, name, value, "")
        else:
            changes[name] = spec.kind.parse(name, value)
    if not changes:
        return base  # the common case for .txt input: no per-line options
    explicit = base.explicit | changes.keys()
    device = changes.get("device", base.device)
    if device is not None:
        preset = DEVICES[device]
        for name in _DEVICE_FIELDS:
            if name not in explicit:
                changes[name] = getattr(preset, name)
    result = dataclasses.replace(base, **changes, explicit=frozenset(explicit))
    check_combination(result)
    return result


def _parse_secret(spec: OptionSpec, name: str, value: Any, label: str) -> Any:
    """``spec.kind.parse`` for a secret: an error names the option (and the secret's name),
    never the value, even if a kind's message quoted part of it."""
    try:
        return spec.kind.parse(name, value)
    except InvalidOption as exc:
        texts = _texts(value)
        message = scrub(exc.message, *texts)
        raise InvalidOption(f"{message} ({label})" if label else message) from None


def _texts(value: Any) -> list[str]:
    """Every piece of text inside a raw option value (to scrub from a message)."""
    if isinstance(value, str):
        return [value, *value.replace(":", "\t").replace("=", "\t").split("\t")]
    if isinstance(value, Mapping):
        return [t for item in value.values() for t in _texts(item)]
    if isinstance(value, list | tuple):
        return [t for item in value for t in _texts(item)]
    return []


def options_json_schema() -> dict[str, Any]:
    """The JSON Schema of an ``options`` object (the service's API), from the declarations."""
    properties = {}
    for name, spec in SPECS.items():
        schema = dict(spec.kind.json_schema())
        if spec.secret:  # or the name of a secret the worker keeps
            ref = {"type": "string", "pattern": "^@secrets/"}
            schema = {"anyOf": [schema, ref]}
        schema["description"] = spec.help
        if spec.default is not None and spec.default != ():
            schema["default"] = spec.to_json(spec.default)
        properties[name] = schema
    return {"type": "object", "properties": properties, "additionalProperties": False}


def check_combination(opts: CaptureOptions) -> None:
    """Options that cannot go together: one clear message rather than a surprise image."""
    if opts.quality is not None and opts.format not in ("jpeg", "webp"):
        raise InvalidOption(f"quality applies to jpeg and webp only, not {opts.format}")
    if opts.selector is not None and opts.clip is not None:
        raise InvalidOption("selector and clip each choose the area: give one of them")
    if opts.padding and opts.selector is None:
        raise InvalidOption("padding applies to a selector's element: give a selector")
    if opts.omit_background and opts.format not in ("png", "webp"):
        raise InvalidOption(f"omit_background needs png or webp, not {opts.format}")
    pdf_only = [name for name in ("pdf_paper", "landscape", "print_background") if _set(opts, name)]
    if pdf_only and opts.format != "pdf":
        raise InvalidOption(f"{', '.join(pdf_only)} applies to format pdf only")
    if opts.format == "pdf":
        # (a device's scale is not the user's choice, and a pdf is always the whole page)
        area = [name for name in ("selector", "clip", "omit_background") if _set(opts, name)]
        if "scale" in opts.explicit and _set(opts, "scale"):
            area.append("scale")
        if area:
            raise InvalidOption(
                f"format pdf prints the whole page on paper; {', '.join(area)} does not apply"
            )


def _set(opts: CaptureOptions, name: str) -> bool:
    return bool(getattr(opts, name) != SPECS[name].default)


def specs_by_group() -> list[tuple[str, list[OptionSpec]]]:
    return [(group, [s for s in SPECS.values() if s.group == group]) for group in GROUPS]


def options_table() -> str:
    """The README's option table (Markdown), generated from the declarations."""
    lines = []
    for group, specs in specs_by_group():
        lines += [
            f"**{group}**",
            "",
            "| option | flag | default | accepts | |",
            "|---|---|---|---|---|",
        ]
        for spec in specs:
            accepts = spec.kind.accepts.replace("|", "\\|")
            lines.append(
                f"| `{spec.name}` | `{spec.cli_flag}` | {spec.default_text} | {accepts} "
                f"| {spec.help} |"
            )
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
