"""The egress guard as a SOCKS5 proxy, spoken to directly: what it relays, how it half-closes,
what it refuses and what its closing cuts. (The engines' tests drive it through Chromium.)"""

from __future__ import annotations

import asyncio
import hashlib
import struct
from collections.abc import Awaitable, Callable

from conftest import PageServer

from distshot.core.egress import EgressGuard
from distshot.core.policy import UrlPolicy

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
