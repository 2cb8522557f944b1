"""A per-job SOCKS5 proxy that applies the URL policy to every connection a browser opens.

Checking the URL before navigation is not enough: redirects, sub-resources, iframes and a DNS
answer that changes between check and use (rebinding) all reach other hosts. Playwright's
request routing does not even see redirects. So each job's browser context talks through this
proxy: it resolves every host itself (or takes the address the job pins with ``resolve``),
refuses addresses the policy forbids, and connects to the very address it checked. Engines
read ``refusals`` to explain a failed navigation.

Behind the per-job guards sits a safety net: ``browser_guard_url`` is one more guard, for the
whole process, with the strictest policy (no private address at all), and every browser is
launched with it as its proxy (``engines.chromium.launch_args``). A context an engine makes
without a proxy of its own therefore still goes through a guard; only a context made with
an explicit direct connection (for a job whose policy admits every address) bypasses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import queue
import socket
import struct
import threading

from .errors import BlockedAddress, DistshotError
from .optionkinds import Pin, pinned_address
from .policy import IPAddress, UrlPolicy

_SOCKS_VERSION = 5
_REPLY_OK, _REPLY_FAILURE, _REPLY_NOT_ALLOWED = 0, 1, 2
_REPLY_UNREACHABLE, _REPLY_REFUSED, _REPLY_BAD_COMMAND, _REPLY_BAD_ADDRESS = 4, 5, 7, 8
_CONNECT_TIMEOUT = 10.0
_CHUNK = 256 * 1024


class EgressGuard:
    """SOCKS5 proxy on 127.0.0.1 for one job (or one reused browser context).

    ``pins`` (the ``resolve`` option) give the address to connect to for a ``host:port``:
    the guard connects there without asking DNS, and the policy still judges the address."""

    def __init__(self, policy: UrlPolicy, pins: tuple[Pin, ...] = ()) -> None:
        self.policy = policy
        self.pins = pins
        self.refusals: list[str] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> str:
        """Listen on a free loopback port; returns the proxy URL for the browser."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"socks5://127.0.0.1:{port}"

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def refusal_error(self) -> BlockedAddress | None:
        """The first refusal as an error, for a navigation that failed because of it."""
        return BlockedAddress(self.refusals[0]) if self.refusals else None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._handle(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError, OSError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        version, n_methods = await reader.readexactly(2)
        await reader.readexactly(n_methods)
        if version != _SOCKS_VERSION:
            return
        writer.write(bytes([_SOCKS_VERSION, 0]))  # no authentication
        version, command, _, address_type = await reader.readexactly(4)
        if command != 1:  # only CONNECT; no BIND, no UDP
            return await _reply(writer, _REPLY_BAD_COMMAND)
        if address_type == 1:
            host = str(ipaddress.IPv4Address(await reader.readexactly(4)))
        elif address_type == 4:
            host = str(ipaddress.IPv6Address(await reader.readexactly(16)))
        elif address_type == 3:
            (length,) = await reader.readexactly(1)
            host = (await reader.readexactly(length)).decode("idna")
        else:
            return await _reply(writer, _REPLY_BAD_ADDRESS)
        (port,) = struct.unpack("!H", await reader.readexactly(2))

        try:
            addresses = await self._resolve_and_check(host, port)
        except BlockedAddress as exc:
            self.refusals.append(exc.message)
            return await _reply(writer, _REPLY_NOT_ALLOWED)
        except DistshotError:
            return await _reply(writer, _REPLY_UNREACHABLE)

        upstream = None
        for address in addresses:
            with contextlib.suppress(OSError, TimeoutError):
                upstream = await asyncio.wait_for(
                    asyncio.open_connection(str(address), port), _CONNECT_TIMEOUT
                )
                break
        if upstream is None:
            return await _reply(writer, _REPLY_REFUSED)
        up_reader, up_writer = upstream
        await _reply(writer, _REPLY_OK)
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            up_writer.close()

    async def _resolve_and_check(self, host: str, port: int) -> list[IPAddress]:
        literal = _ip_or_none(host)
        pinned = pinned_address(self.pins, host, port) if literal is None else None
        if pinned is not None:
            addresses: list[IPAddress] = [ipaddress.ip_address(pinned)]
        elif literal is not None:
            addresses = [literal]
        else:
            loop = asyncio.get_running_loop()
            try:
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except socket.gaierror as exc:
                raise DistshotError(f"cannot resolve {host}: {exc}") from None
            addresses = [ipaddress.ip_address(str(i[4][0]).split("%", 1)[0]) for i in infos]
        for address in addresses:
            self.policy.check_address(host, address)
        return addresses


def _ip_or_none(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


async def _reply(writer: asyncio.StreamWriter, code: int) -> None:
    writer.write(bytes([_SOCKS_VERSION, code, 0, 1, 0, 0, 0, 0, 0, 0]))
    await writer.drain()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.close()


# -- the browser-wide safety net ---------------------------------------------------------------

_net_lock = threading.Lock()
_net: tuple[int, str] | None = None  # (pid, proxy URL) of this process's safety-net guard


def browser_guard_url() -> str:
    """The proxy URL of this process's safety-net guard (the strictest policy), started on
    first use in a thread of its own, so that any code can ask for it before launching a
    browser, on any thread. A forked child starts its own."""
    global _net
    with _net_lock:
        if _net is None or _net[0] != os.getpid():
            _net = (os.getpid(), _start_net())
        return _net[1]


def _start_net() -> str:
    started: queue.Queue[str | BaseException] = queue.Queue()

    def serve() -> None:
        loop = asyncio.new_event_loop()
        try:
            guard = EgressGuard(UrlPolicy.build(False, ()))
            started.put(loop.run_until_complete(guard.start()))
        except BaseException as exc:  # reported to the caller
            started.put(exc)
            return
        loop.run_forever()

    threading.Thread(target=serve, name="distshot-egress-net", daemon=True).start()
    result = started.get(timeout=30)
    if isinstance(result, BaseException):
        raise result
    return result
