"""The egress guard as a SOCKS5 proxy, spoken to directly: what it relays, how it half-closes,
what it refuses and what its closing cuts. (The engines' tests drive it through Chromium.)"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import ssl
import struct
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from conftest import PageServer
from tlskit import self_signed

from distshot.core.egress import EgressGuard
from distshot.core.errors import ProxyError
from distshot.core.policy import UrlPolicy
from distshot.core.proxy import Proxy
from distshot.testing.proxies import TestProxy, start_proxy, stop_proxy

LOOPBACK_ALLOWED = UrlPolicy.build(False, ["127.0.0.0/8"])
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _socks_connect(
    proxy: str, host: str, port: int
) -> tuple[int, asyncio.StreamReader, asyncio.StreamWriter]:
    """A minimal SOCKS5 client: CONNECT by IPv4 address; returns the reply code."""
    proxy_port = int(proxy.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy_port)
    writer.write(b"\x05\x01\x00")
    assert await reader.readexactly(2) == b"\x05\x00"
    address = bytes(int(part) for part in host.split("."))
    writer.write(b"\x05\x01\x00\x01" + address + struct.pack("!H", port))
    reply = await reader.readexactly(10)
    return reply[1], reader, writer


async def _socks_connect_name(
    proxy: str, host: str, port: int
) -> tuple[int, asyncio.StreamReader, asyncio.StreamWriter]:
    """CONNECT by host name, as Chromium asks a SOCKS5 proxy; returns the reply code."""
    reader, writer = await asyncio.open_connection("127.0.0.1", int(proxy.rsplit(":", 1)[1]))
    writer.write(b"\x05\x01\x00")
    assert await reader.readexactly(2) == b"\x05\x00"
    name = host.encode()
    writer.write(b"\x05\x01\x00\x03" + bytes([len(name)]) + name + struct.pack("!H", port))
    reply = await reader.readexactly(10)
    return reply[1], reader, writer


async def _with_server(
    handler: Handler, policy: UrlPolicy, body: Callable[..., Awaitable[None]]
) -> None:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    guard = EgressGuard(policy)
    proxy = await guard.start()
    try:
        await asyncio.wait_for(body(guard, proxy, port), 30)
    finally:
        await guard.close()
        server.close()


def test_relays_megabytes_both_ways_and_half_closes() -> None:
    """8 MiB up, the client half-closes, the server answers with the digest and 8 MiB down:
    back-pressure holds nothing back and the half-close reaches the server."""
    upload = bytes(range(256)) * (32 * 1024)  # 8 MiB

    async def server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received = await reader.read()  # to EOF: only a relayed half-close ends this
        writer.write(hashlib.sha256(received).digest())
        writer.write(received[::-1])
        await writer.drain()
        writer.close()

    async def body(guard: EgressGuard, proxy: str, port: int) -> None:
        code, reader, writer = await _socks_connect(proxy, "127.0.0.1", port)
        assert code == 0
        writer.write(upload)
        await writer.drain()
        writer.write_eof()
        answer = await reader.read()
        assert answer[:32] == hashlib.sha256(upload).digest()
        assert answer[32:] == upload[::-1]
        writer.close()

    asyncio.run(_with_server(server, LOOPBACK_ALLOWED, body))


def test_a_server_that_speaks_first_is_heard() -> None:
    async def server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 hello\r\n")
        await writer.drain()
        line = await reader.readline()
        writer.write(b"you said " + line)
        await writer.drain()
        writer.close()

    async def body(guard: EgressGuard, proxy: str, port: int) -> None:
        code, reader, writer = await _socks_connect(proxy, "127.0.0.1", port)
        assert code == 0
        assert await reader.readline() == b"220 hello\r\n"
        writer.write(b"hi\r\n")
        assert await reader.read() == b"you said hi\r\n"
        writer.close()

    asyncio.run(_with_server(server, LOOPBACK_ALLOWED, body))


def test_a_refused_address_gets_not_allowed_and_no_connection() -> None:
    connections = 0

    async def server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        writer.close()

    async def body(guard: EgressGuard, proxy: str, port: int) -> None:
        code, _, writer = await _socks_connect(proxy, "127.0.0.1", port)
        writer.close()
        assert code == 2  # connection not allowed by ruleset
        assert guard.refusals and "127.0.0.1" in guard.refusals[0]
        await asyncio.sleep(0.2)
        assert connections == 0

    asyncio.run(_with_server(server, UrlPolicy.build(False), body))


def test_a_pinned_name_connects_to_its_address_and_the_policy_judges_that_address() -> None:
    # Given a guard that admits 127.0.0.1 only, with shop.example and ads.example pinned
    # (the names are never looked up: a lookup would fail, these are made-up names)
    connections = 0

    async def server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        writer.write(b"pinned\r\n")
        await writer.drain()
        writer.close()

    async def scenario() -> None:
        srv = await asyncio.start_server(server, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        pins = (("ads.example", port, "127.0.0.2"), ("shop.example", port, "127.0.0.1"))
        guard = EgressGuard(UrlPolicy.build(False, ["127.0.0.1/32"]), pins)
        proxy = await guard.start()
        try:
            # When the browser asks for the names
            code, reader, writer = await _socks_connect_name(proxy, "Shop.Example", port)
            assert code == 0
            assert await reader.readline() == b"pinned\r\n"
            writer.close()
            code, _, writer = await _socks_connect_name(proxy, "ads.example", port)
            writer.close()
            # Then the first reached the server at its pinned address, and the second,
            # pinned to an address the policy refuses, was refused and connected nowhere
            assert code == 2
            assert guard.refusals == [
                "ads.example resolves to 127.0.0.2, a loopback address; "
                "pass --allow-private to capture it"
            ]
            assert connections == 1
        finally:
            await guard.close()
            srv.close()

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_closing_the_guard_cuts_open_relays() -> None:
    """A job's end closes its guard: a connection the page left open must not outlive it."""

    async def scenario() -> None:
        closed = asyncio.Event()

        async def server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read()  # until the relay is cut
            closed.set()
            writer.close()

        srv = await asyncio.start_server(server, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        guard = EgressGuard(LOOPBACK_ALLOWED)
        proxy = await guard.start()
        code, reader, writer = await _socks_connect(proxy, "127.0.0.1", port)
        assert code == 0
        writer.write(b"still talking")
        await writer.drain()
        await asyncio.wait_for(guard.close(), 5)
        try:
            data = await asyncio.wait_for(reader.read(), 5)
        except ConnectionError:  # cut with a reset rather than a FIN: just as cut
            data = b""
        assert data == b""
        await asyncio.wait_for(closed.wait(), 5)
        writer.close()
        srv.close()

    asyncio.run(scenario())


def test_the_safety_net_guard_refuses_private_addresses_for_any_thread() -> None:
    # Given the process's safety-net guard, asked for from two threads
    from concurrent.futures import ThreadPoolExecutor

    from distshot.core.egress import browser_guard_url

    with ThreadPoolExecutor(2) as pool:
        urls = set(pool.map(lambda _: browser_guard_url(), range(4)))
    assert len(urls) == 1  # one guard per process
    (proxy,) = urls

    async def scenario() -> int:
        server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            code, _, writer = await _socks_connect(proxy, "127.0.0.1", port)
            writer.close()
            return code
        finally:
            server.close()

    # Then a connection to a loopback address through it is refused (reply 2: not allowed)
    assert asyncio.run(scenario()) == 2


def test_a_context_without_a_proxy_of_its_own_goes_through_the_safety_net(
    http_server: PageServer,
) -> None:
    from playwright.async_api import Error, async_playwright

    from distshot.engines.chromium import DIRECT, launch_args

    async def scenario() -> tuple[str, int | None]:
        async with async_playwright() as driver:
            # Given a browser launched with distshot's flags
            browser = await driver.chromium.launch(
                executable_path="/usr/bin/chromium", args=launch_args()
            )
            try:
                # When an engine forgets to give a context the job's proxy
                forgot = await browser.new_context()
                page = await forgot.new_page()
                try:
                    await page.goto(f"{http_server.base}/solid.html?forgot", timeout=10_000)
                    refused = "reached the page"
                except Error as exc:
                    refused = str(exc).splitlines()[0]
                # and another job's context says "direct" on purpose (allow_private)
                direct = await browser.new_context(proxy={"server": DIRECT, "bypass": "*"})
                response = await (await direct.new_page()).goto(f"{http_server.base}/solid.html")
                return refused, response.status if response else None
            finally:
                await browser.close()

    refused, status = asyncio.run(scenario())
    # Then the forgetful context's navigation to a loopback page was refused by the strict
    # guard, the page server never saw it, and the deliberate direct context got through
    assert "ERR_" in refused, refused
    assert "forgot" not in str(http_server.seen.requests)
    assert status == 200


# -- through an upstream proxy -------------------------------------------------------------


@pytest.fixture(scope="module")
def upstreams() -> Iterator[dict[str, TestProxy]]:
    """An HTTP CONNECT and a SOCKS5 proxy that want user:s3cret, and one of each that
    refuses every tunnel."""
    proxies = {
        "http": start_proxy("http", ("user", "s3cret")),
        "socks5": start_proxy("socks5", ("user", "s3cret")),
        "http-refusing": start_proxy("http", refuse=True),
        "socks5-refusing": start_proxy("socks5", refuse=True),
    }
    yield proxies
    for proxy in proxies.values():
        stop_proxy(proxy)


async def _get_through(guard: EgressGuard, host: str, port: int) -> tuple[int, bytes]:
    """An HTTP GET of / on ``host:port`` through the guard: the SOCKS reply code and the
    answer (empty when the guard refused)."""
    proxy = await guard.start()
    try:
        if host[0].isdigit():
            code, reader, writer = await _socks_connect(proxy, host, port)
        else:
            code, reader, writer = await _socks_connect_name(proxy, host, port)
        if code != 0:
            writer.close()
            return code, b""
        writer.write(
            f"GET /solid.html HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
        )
        answer = await reader.read()
        writer.close()
        return code, answer
    finally:
        await guard.close()


@pytest.mark.parametrize("kind", ["http", "socks5"])
def test_the_guard_reaches_the_page_through_an_upstream_proxy_with_credentials(
    kind: str, upstreams: dict[str, TestProxy], pages: PageServer
) -> None:
    proxy, port = upstreams[kind], pages.server_address[1]
    before = len(proxy.tunnels.opened)
    # Given a guard whose upstream is the proxy, with the right user and password
    guard = EgressGuard(LOOPBACK_ALLOWED, (), Proxy.parse(proxy.url("user", "s3cret")))
    # When a page is fetched through the guard
    code, answer = asyncio.run(asyncio.wait_for(_get_through(guard, "127.0.0.1", port), 30))
    # Then it came, through a tunnel the proxy opened to the page server
    assert code == 0 and answer.split(b" ", 2)[1] == b"200", answer[:200]
    assert proxy.tunnels.opened[before:] == [f"127.0.0.1:{port}"]


@pytest.mark.parametrize(
    ("kind", "password", "mentions"),
    [
        ("http", "wrong-pw", "rejected the credentials"),
        ("socks5", "wrong-pw", "rejected the credentials"),
        ("http", None, "requires credentials"),
        ("http-refusing", None, "refused to connect to 127.0.0.1"),
        ("socks5-refusing", None, "refused to connect to 127.0.0.1"),
    ],
)
def test_a_proxy_that_refuses_or_rejects_the_credentials_is_a_proxy_error(
    kind: str, password: str | None, mentions: str, upstreams: dict[str, TestProxy]
) -> None:
    proxy = upstreams[kind]
    url = proxy.url("user", password) if password else proxy.url()
    guard = EgressGuard(LOOPBACK_ALLOWED, (), Proxy.parse(url))
    code, _ = asyncio.run(asyncio.wait_for(_get_through(guard, "127.0.0.1", 9), 30))
    assert code == 1  # general failure: the browser's navigation fails
    error = guard.refusal_error()
    assert isinstance(error, ProxyError) and error.transient
    assert mentions in error.message
    assert f"127.0.0.1:{proxy.port}" in error.message  # it names the proxy
    assert "wrong-pw" not in error.message  # but never its password


def test_an_unreachable_proxy_is_a_proxy_error() -> None:
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    guard = EgressGuard(LOOPBACK_ALLOWED, (), Proxy.parse(f"http://u:pw@127.0.0.1:{port}"))
    code, _ = asyncio.run(asyncio.wait_for(_get_through(guard, "127.0.0.1", 9), 30))
    error = guard.refusal_error()
    assert code == 1 and isinstance(error, ProxyError)
    assert error.message.startswith(f"proxy http://u@127.0.0.1:{port} is unreachable")


def test_the_policy_judges_a_requests_proxy_and_the_target_behind_any_proxy(
    upstreams: dict[str, TestProxy],
) -> None:
    proxy = upstreams["socks5"]
    admits_127_0_0_1 = UrlPolicy.build(False, ["127.0.0.1/32"])
    before = len(proxy.tunnels.opened)
    # A target the policy refuses is refused, and the proxy is never asked for it
    guard = EgressGuard(admits_127_0_0_1, (), Proxy.parse(proxy.url("user", "s3cret")))
    code, _ = asyncio.run(asyncio.wait_for(_get_through(guard, "127.0.0.2", 80), 30))
    assert code == 2 and guard.refusals == [
        "127.0.0.2, a loopback address; pass --allow-private to capture it"
    ]
    assert len(proxy.tunnels.opened) == before
    # A request's proxy is a destination too: one the policy refuses is never contacted
    guard = EgressGuard(UrlPolicy.build(False), (), Proxy.parse(proxy.url("user", "s3cret")))
    code, _ = asyncio.run(asyncio.wait_for(_get_through(guard, "127.0.0.1", 80), 30))
    assert code == 2 and guard.refusals[0].startswith(f"proxy socks5://user@127.0.0.1:{proxy.port}")
    # while the worker's own proxy (trusted) is not judged; the target still is
    guard = EgressGuard(
        admits_127_0_0_1,
        (),
        Proxy.parse(upstreams["socks5-refusing"].url()),
        upstream_trusted=True,
    )
    code, _ = asyncio.run(asyncio.wait_for(_get_through(guard, "127.0.0.1", 80), 30))
    assert code == 1 and "refused to connect" in str(guard.refusal_error())


def test_the_proxy_gets_the_checked_address_or_the_name_when_nothing_is_judged(
    upstreams: dict[str, TestProxy],
) -> None:
    proxy = upstreams["socks5-refusing"]  # its refusal names what it was asked for
    url = Proxy.parse(proxy.url())
    # pinned: the proxy is asked for the pinned address (even with allow_private)
    pinned = EgressGuard(UrlPolicy.build(True), (("shop.example", 80, "127.0.0.1"),), url)
    asyncio.run(asyncio.wait_for(_get_through(pinned, "shop.example", 80), 30))
    assert "refused to connect to 127.0.0.1:80" in str(pinned.refusal_error())
    # allow_private and no pin: the proxy gets the name, and the guard asks no DNS
    # (shop.example is made up: this guard never looks it up)
    named = EgressGuard(UrlPolicy.build(True), (), url)
    asyncio.run(asyncio.wait_for(_get_through(named, "shop.example", 80), 30))
    assert "refused to connect to shop.example:80" in str(named.refusal_error())


def test_an_https_proxy_is_spoken_to_over_tls_and_its_certificate_checked(
    tmp_path: Path, pages: PageServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an https:// proxy on 127.0.0.1 whose certificate (for that address) the
    # machine trusts (SSL_CERT_FILE, as an operator would add a private CA)
    cert_file, key_file = self_signed(tmp_path, ip="127.0.0.1")
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert_file, key_file)
    proxy = start_proxy("https", ("user", "s3cret"), tls=server_tls)
    try:
        url = Proxy.parse(proxy.url("user", "s3cret"))
        port = pages.server_address[1]
        # When the machine does not trust its certificate, then the guard will not use it
        untrusted = EgressGuard(LOOPBACK_ALLOWED, (), url)
        code, _ = asyncio.run(asyncio.wait_for(_get_through(untrusted, "127.0.0.1", port), 30))
        assert code == 1 and "TLS failed" in str(untrusted.refusal_error())
        assert proxy.tunnels.opened == []
        # and when it does, the page comes through the proxy
        monkeypatch.setenv("SSL_CERT_FILE", str(cert_file))
        trusted = EgressGuard(LOOPBACK_ALLOWED, (), url)
        code, answer = asyncio.run(asyncio.wait_for(_get_through(trusted, "127.0.0.1", port), 30))
        assert code == 0 and answer.split(b" ", 2)[1] == b"200", trusted.refusal_error()
        assert proxy.tunnels.opened == [f"127.0.0.1:{port}"]
    finally:
        stop_proxy(proxy)


def test_a_job_that_pins_or_proxies_gets_a_guard_even_when_every_address_is_admitted() -> None:
    from distshot.core.models import ShotRequest
    from distshot.core.options import DEFAULT_OPTIONS, parse_options
    from distshot.engines.chromium import job_guard

    def guard(default_proxy: str | None = None, **options: object) -> EgressGuard | None:
        opts = parse_options(options, DEFAULT_OPTIONS)
        request = ShotRequest("g:1", 1, "http://shop.example/", opts, allow_private=True)
        return job_guard(request, default_proxy)

    # Nothing to judge, pin or relay: the context may go direct
    assert guard() is None
    # a pin: without a guard Chromium would ask DNS for the name itself
    pinned = guard(resolve=["shop.example:80:127.0.0.1"])
    assert pinned is not None and pinned.pins == (("shop.example", 80, "127.0.0.1"),)
    # a request's proxy (judged), or the worker's (trusted); the request's wins
    worker = "socks5://fleet:pw@10.0.0.5:1080"
    own = guard(worker, proxy="http://me:pw@127.0.0.1:3128")
    assert own is not None and own.upstream is not None and not own.upstream_trusted
    assert own.upstream.shown == "http://me@127.0.0.1:3128"
    default = guard(worker)
    assert default is not None and default.upstream_trusted
    assert default.upstream is not None and default.upstream.url == worker
