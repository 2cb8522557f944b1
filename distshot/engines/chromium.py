"""What every Chromium-driving engine shares: launch flags and error translation."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

from ..core.egress import EgressGuard, browser_guard_url
from ..core.errors import (
    AuthenticationRequired,
    BrowserCrashed,
    DistshotError,
    DownloadRefused,
    NavigationTimeout,
    NetworkError,
    RedirectLoop,
)
from ..core.models import ShotRequest

# Features off in every engine's Chromium. Chromium reads only the LAST --disable-features
# on its command line (checked: a later one re-enables what an earlier one turned off), and
# the driver libraries put their own list before ours, so this list carries theirs too.
_DISABLED_FEATURES = (
    # Ours. No back/forward cache: a reused page must not keep the previous job's page alive.
    # No spare renderer: Chromium keeps one process started ahead for the next navigation,
    # but for one browser context only; with a context per job slot each navigation found
    # the spare made for the other context, so it was thrown away and another started: a
    # renderer process start for every job (measured: 30 renderers for 30 shots on two
    # lanes, 4 without the spare).
    "Translate",
    "MediaRouter",
    "OptimizationHints",
    "BackForwardCache",
    "SpareRendererForSitePerProcess",
    # No new renderer-side frame (and page) for every navigation: with RenderDocument each
    # same-site navigation builds a fresh RenderFrame and WebView and swaps it in, in the
    # renderer and in the browser process. Measured with browsers side by side, shots
    # alternating on the bench corpus (bench/browser_flags.py): 323 -> 279 ms of CPU per
    # shot, and 382 -> 300 with the lanes' about:blank between jobs (docs/benchmarks.md).
    # Site isolation is unchanged: cross-site navigations still swap processes.
    "RenderDocument",
    # Playwright 1.65's own list (chromiumSwitches.ts), which ours used to switch back on:
    # paint holding can leave a same-origin navigation showing the previous page, HTTPS
    # upgrades would rewrite http:// jobs, storage partitioning and the beforeunload check
    # change what pages see, and the rest are requests to Google at start.
    "AvoidUnnecessaryBeforeUnloadCheckSync",
    "DestroyProfileOnBrowserClose",
    "HttpsUpgrades",
    "HttpsFirstBalancedModeAutoEnable",
    "LensOverlay",
    "PaintHolding",
    "ThirdPartyStoragePartitioning",
    "AvoidCorsURLLoaderRestartOnRedirect",
    "NetworkTimeServiceQuerying",
    "AimEnabled",
    "PreconnectToSearch",
    # (and three for Edge and Windows, which this Chromium ignores, kept so the list stays
    # Playwright's whole list and a test can tell when a new Playwright adds one)
    "TcpPortRandomizationWin",
    "msForceBrowserSignIn",
    "msEdgeUpdateLaunchServicesPreferredVersion",
)
_FEATURES_FLAG = "--disable-features="


def launch_args(extra: tuple[str, ...] = ()) -> list[str]:
    """Flags for a quiet, offline-safe headless Chromium (``chromium_flags``) whose traffic
    goes through the process's safety-net egress guard unless a context says otherwise
    (``context_proxy``). What every engine launches with."""
    return [
        *chromium_flags(extra),
        # Every context an engine makes without a proxy of its own goes through the strict
        # guard; "<-loopback>" stops Chromium sending localhost around the proxy.
        f"--proxy-server={browser_guard_url()}",
        "--proxy-bypass-list=<-loopback>",
    ]


def chromium_flags(extra: tuple[str, ...] = ()) -> list[str]:
    """The flags alone, without the safety-net proxy: for a browser distshot does not drive
    (the benchmarks' raw Playwright loop and shot-scraper, which reach loopback pages
    directly and must run with the same flags).

    A ``--disable-features`` among ``extra`` is merged into ours rather than replacing it.
    (pyppeteer's own default, ``site-per-process``, is deliberately not carried: site
    isolation stays on.)"""
    features = list(_DISABLED_FEATURES)
    rest = []
    for arg in extra:
        if arg.startswith(_FEATURES_FLAG):
            features.extend(f for f in arg[len(_FEATURES_FLAG) :].split(",") if f)
        else:
            rest.append(arg)
    args = [
        # Without these Chromium phones home at start (updates, field trials, sync):
        # on a closed network that means a burst of refused connections per launch.
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-domain-reliability",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-gpu",
        "--disable-quic",  # QUIC would bypass the SOCKS egress guard; TCP only.
        "--mute-audio",
        "--hide-scrollbars",
        _FEATURES_FLAG + ",".join(dict.fromkeys(features)),
    ]
    if os.geteuid() == 0:
        # Chromium's setuid/namespace sandbox refuses to start as root.
        args.append("--no-sandbox")
    args.extend(rest)
    return args


#: Chromium's net errors that another attempt cannot fix: the site's certificate or TLS
#: set-up is wrong, or the URL is one Chromium will not load. Every other net error (refused,
#: reset, timed out, unreachable, a name that did not resolve: the egress guard resolves
#: names, and a resolver outage passes) is transient.
_PERMANENT_NETWORK_CODES = (
    "ERR_CERT_",
    "ERR_SSL_PROTOCOL_ERROR",
    "ERR_SSL_VERSION_OR_CIPHER_MISMATCH",
    "ERR_BAD_SSL_CLIENT_AUTH_CERT",
    "ERR_UNSAFE_PORT",
    "ERR_INVALID_URL",
    "ERR_DISALLOWED_URL_SCHEME",
)
_CRASH_MARKERS = (
    "Target crashed",
    "Target closed",
    "has been closed",
    "Browser closed",
    "browser has disconnected",
    "Connection closed",
    "Session closed",
    "Page crashed",
)


def translate_error(message: str, url: str) -> DistshotError:
    """Map a browser-side failure text to our error tree (first line kept for the user)."""
    first = message.strip().splitlines()[0] if message.strip() else "unknown browser error"
    if "ERR_INVALID_AUTH_CREDENTIALS" in message or "ERR_UNEXPECTED_PROXY_AUTH" in message:
        # Headless Chromium has no one to ask for a password: a 401 without (or with wrong)
        # credentials in the URL ends the navigation. No retry can fix that.
        return AuthenticationRequired(
            f"{url} requires HTTP authentication; give credentials in the URL "
            "(https://user:password@host/...)"
        )
    if "ERR_TOO_MANY_REDIRECTS" in message:
        return RedirectLoop(f"too many redirects from {url}")
    if "Download is starting" in message or (
        "ERR_ABORTED" in message and "download" in message.lower()
    ):
        return DownloadRefused(f"{url} is a file download, not a page; downloads are refused")
    if "Timeout" in message and "exceeded" in message:
        return NavigationTimeout(first)
    for marker in _CRASH_MARKERS:
        if marker in message:
            return BrowserCrashed(f"the browser crashed or closed while capturing {url}: {first}")
    permanent = any(code in message for code in _PERMANENT_NETWORK_CODES)
    return NetworkError(first, transient=not permanent)


def process_tree(root: int) -> list[int]:
    """``root`` and its live descendants (Chromium's zygote, renderers, GPU and utility
    processes), read from /proc; empty if ``root`` is gone."""
    children: dict[int, list[int]] = {}
    alive: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            alive.add(int(entry.name))
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    if root not in alive:
        return []
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    return tree


_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def process_tree_rss(root: int) -> int:
    """Resident memory of a browser's whole process tree, in bytes.

    RSS counts pages shared between Chromium's processes once per process, so this
    overstates the true footprint a little; as a recycle trigger that errs on the safe side,
    and it costs one small read per process (PSS from smaps_rollup costs far more)."""
    total = 0
    for pid in process_tree(root):
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE_SIZE
        except (OSError, IndexError, ValueError):
            continue
    return total


def kill_process_tree(root: int) -> None:
    """SIGKILL a browser (or driver) and everything it started: the last resort when a
    polite close does not return, so that no process outlives its engine."""
    for pid in process_tree(root):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


#: The options the egress guard implements (``job_egress``): an engine whose contexts use
#: the job's guard as their proxy honours them without any code of its own.
EGRESS_OPTIONS = frozenset({"resolve"})

#: Chromium's proxy setting for a direct connection: only for a job whose address policy
#: admits every address (``allow_private``) and that pins no address, where a guard would
#: have nothing to do.
DIRECT = "direct://"


def egress_key(request: ShotRequest) -> tuple[object, ...]:
    """What a job's egress guard depends on: jobs with equal keys may share a guard (and a
    browser context behind it); jobs with different ones never do."""
    return (request.allow_private, request.allow_networks, request.options.resolve)


def job_guard(request: ShotRequest) -> EgressGuard | None:
    """A new (not started) egress guard for the job, or None when the job may go DIRECT.
    A job that pins addresses always gets one, even when its policy admits every address:
    without it Chromium would ask DNS for the name itself."""
    policy = request.policy()
    if not policy.enforcing and not request.options.resolve:
        return None
    return EgressGuard(policy, request.options.resolve)


async def job_egress(request: ShotRequest) -> tuple[EgressGuard | None, str]:
    """The egress guard for a job's (or a lane's) address policy and pins, started, and the
    proxy its browser context must use: the guard's URL, or ``DIRECT`` (no guard then, see
    ``job_guard``). The caller closes the guard."""
    guard = job_guard(request)
    if guard is None:
        return None, DIRECT
    return guard, await guard.start()


def context_proxy(proxy: str) -> dict[str, str]:
    """``Target.createBrowserContext`` parameters for a context behind ``proxy`` (from
    ``job_egress``). A context made without them stays on the browser's own proxy, the
    strict safety-net guard, so forgetting them fails closed."""
    if proxy == DIRECT:
        return {"proxyServer": DIRECT}
    # Chromium sends loopback traffic around any proxy unless told "<-loopback>": without it
    # a redirect to 127.0.0.1 would skip the guard.
    return {"proxyServer": proxy, "proxyBypassList": "<-loopback>"}


def ms_since(start: float) -> float:
    """Milliseconds since a ``time.monotonic()`` reading, as the manifest's timings give them."""
    return round((time.monotonic() - start) * 1000, 1)
