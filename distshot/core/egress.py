"""A per-job SOCKS5 proxy that applies the URL policy to every connection a browser opens.

Checking the URL before navigation is not enough: redirects, sub-resources, iframes and a DNS
answer that changes between check and use (rebinding) all reach other hosts. Playwright's
request routing does not even see redirects. So each job's browser context talks through this
proxy: it resolves every host itself, refuses addresses the policy forbids, and connects to the
very address it checked. Engines read ``refusals`` to explain a failed navigation.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import struct

from .errors import BlockedAddress, DistshotError
from .policy import IPAddress, UrlPolicy

_SOCKS_VERSION = 5
_REPLY_OK, _REPLY_FAILURE, _REPLY_NOT_ALLOWED = 0, 1, 2
_REPLY_UNREACHABLE, _REPLY_REFUSED, _REPLY_BAD_COMMAND, _REPLY_BAD_ADDRESS = 4, 5, 7, 8
_CONNECT_TIMEOUT = 10.0
_CHUNK = 256 * 1024


class EgressGuard:
    """SOCKS5 proxy on 127.0.0.1 for one job (or one reused browser context)."""

    def __init__(self, policy: UrlPolicy) -> None:
        self.policy = policy
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
        if literal is not None:
            addresses: list[IPAddress] = [literal]
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
