"""Which URLs and addresses a job may reach (the SSRF defence).

Two checks use this policy: ``check_url`` before any browser work (a refusal there is a
``rejected`` record), and the egress guard (``core.egress``) on every connection the browser
opens afterwards, which covers redirects, sub-resources and DNS answers that change.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

from .errors import BlockedAddress, InvalidUrl, NetworkError
from .optionkinds import Pin, pinned_address

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[str]]

ALLOWED_SCHEMES = ("http", "https")
_SPACE_OR_CONTROL = re.compile(r"[\s\x00-\x1f\x7f]")
MAX_URL_LENGTH = 8192

# Named for the message a user reads; checked in order, the first match wins.
_NAMED_RANGES: tuple[tuple[str, IPNetwork], ...] = tuple(
    (name, ipaddress.ip_network(net))
    for name, net in (
        ("cloud metadata", "169.254.169.254/32"),
        ("cloud metadata", "100.100.100.200/32"),
        ("cloud metadata", "fd00:ec2::254/128"),
        ("loopback", "127.0.0.0/8"),
        ("loopback", "::1/128"),
        ("unspecified", "0.0.0.0/8"),
        ("unspecified", "::/128"),
        ("private", "10.0.0.0/8"),
        ("private", "172.16.0.0/12"),
        ("private", "192.168.0.0/16"),
        ("carrier-grade NAT", "100.64.0.0/10"),
        ("link-local", "169.254.0.0/16"),
        ("link-local", "fe80::/10"),
        ("unique-local", "fc00::/7"),
        ("multicast", "224.0.0.0/4"),
        ("multicast", "ff00::/8"),
    )
)


def refusal_reason(address: IPAddress) -> str | None:
    """Why ``address`` is not a public destination, or None if it is."""
    if isinstance(address, ipaddress.IPv6Address):
        # ::ffff:127.0.0.1 and 64:ff9b::10.0.0.1 reach IPv4 hosts: judge the IPv4 inside.
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in ipaddress.ip_network("64:ff9b::/96"):
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return refusal_reason(embedded)
    for name, network in _NAMED_RANGES:
        if address.version == network.version and address in network:
            return name
    if not address.is_global:
        return "reserved"
    return None


def parse_ip_literal(host: str) -> IPAddress | None:
    """The address a host string denotes without DNS, in every spelling a browser accepts.

    Browsers read '2130706433', '0x7f.1' and '127.1' as 127.0.0.1 (the WHATWG IPv4
    parser, like inet_aton), so the policy must read them the same way.
    """
    text = host.strip("[]")
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    if text and all(c in "0123456789abcdefxABCDEFX." for c in text):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(text))
        except OSError:
            return None
    return None


def system_resolver(host: str, port: int) -> list[str]:
    """Addresses for ``host`` from the system resolver (/etc/hosts, then DNS)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise NetworkError(f"cannot resolve host {host!r}: {exc.strerror}") from None
    return [str(info[4][0]) for info in infos]


def pinned_resolver(pins: tuple[Pin, ...], fallback: Resolver) -> Resolver:
    """``fallback``, except for the ``host:port`` pairs ``pins`` give an address (the
    ``resolve`` option): those are answered without asking DNS."""
    if not pins:
        return fallback

    def resolve(host: str, port: int) -> list[str]:
        address = pinned_address(pins, host, port)
        return [address] if address is not None else fallback(host, port)

    return resolve


#: A bare host name, as recon and domain lists give them: ``example.com``,
#: ``api.example.com:8443/path``, ``localhost:8000``, ``10.0.0.1``, ``[::1]:80``. A dotted
#: name or an address, optional port, optional path; nothing that has a scheme of its own.
_BARE_HOST = re.compile(
    r"^(?:localhost|\[[0-9A-Fa-f:.]+\]|(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
    r"[A-Za-z0-9-]{1,63}\.?)(?::\d{1,5})?(?:[/?#]\S*)?$"
)


def with_default_scheme(text: str, scheme: str = "https") -> str:
    """``text`` with ``scheme://`` put in front when it is a bare host name; anything else
    (a URL, or a line that is not a URL at all) is returned as it is, for ``parse_url`` to
    judge."""
    stripped = text.strip()
    if "://" not in stripped and _BARE_HOST.match(stripped):
        return f"{scheme}://{stripped}"
    return text


def parse_url(url: str) -> SplitResult:
    """Check the URL's syntax and scheme, with no network access."""
    if not isinstance(url, str) or not url.strip():
        raise InvalidUrl("empty URL")
    if len(url) > MAX_URL_LENGTH:
        raise InvalidUrl(f"URL is longer than {MAX_URL_LENGTH} characters")
    if _SPACE_OR_CONTROL.search(url.strip()):
        raise InvalidUrl(f"URL contains whitespace or control characters: {url.strip()!r}")
    try:
        parts = urlsplit(url.strip())
    except ValueError as exc:  # an unbalanced [ or ], or a bracketed host that is no IP
        raise InvalidUrl(f"URL has an invalid host ({exc}): {url.strip()!r}") from None
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        shown = f"{scheme}:" if scheme else "no scheme"
        raise InvalidUrl(f"only http and https URLs can be captured, not {shown} ({url.strip()!r})")
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise InvalidUrl(f"URL has an invalid port: {url.strip()!r}") from None
    if not parts.hostname:
        raise InvalidUrl(f"URL has no host: {url.strip()!r}")
    return parts


@dataclass(frozen=True)
class UrlPolicy:
    """Refuses non-public destinations unless ``allow_private``; ``allow_networks``
    admits chosen ranges (say, a staging network) while refusing the rest."""

    allow_private: bool = False
    allow_networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def build(cls, allow_private: bool, allow_networks: Iterable[str] = ()) -> UrlPolicy:
        try:
            nets = tuple(ipaddress.ip_network(n, strict=False) for n in allow_networks)
        except ValueError as exc:
            raise BlockedAddress(f"allow_networks has a bad network: {exc}") from None
        return cls(allow_private=allow_private, allow_networks=nets)

    @property
    def enforcing(self) -> bool:
        return not self.allow_private

    def check_address(self, host: str, address: IPAddress) -> None:
        if self.allow_private:
            return
        reason = refusal_reason(address)
        if reason is None:
            return
        if any(address.version == n.version and address in n for n in self.allow_networks):
            return
        shown = host if host.strip("[]") == str(address) else f"{host} resolves to {address}"
        raise BlockedAddress(f"{shown}, a {reason} address; pass --allow-private to capture it")

    def check_host(
        self, host: str, port: int, resolve: Resolver = system_resolver
    ) -> list[IPAddress]:
        """Resolve ``host`` and check every address; returns the addresses (all allowed)."""
        literal = parse_ip_literal(host)
        if literal is not None:
            addresses: list[IPAddress] = [literal]
        elif self.allow_private:
            return []
        else:
            addresses = [ipaddress.ip_address(a.split("%", 1)[0]) for a in resolve(host, port)]
        # Any refused address refuses the host: a name that resolves to both a public
        # and a private address is the classic rebinding set-up.
        for address in addresses:
            self.check_address(host, address)
        return addresses

    def check_url(self, url: str, resolve: Resolver = system_resolver) -> SplitResult:
        parts = parse_url(url)
        assert parts.hostname is not None
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
        self.check_host(parts.hostname, port, resolve)
        return parts
