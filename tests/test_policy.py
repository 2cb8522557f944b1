"""The address policy as a function: schemes, ranges, loopback spellings, DNS answers.

No packet leaves this machine: resolvers are functions, literals need no DNS.
"""

from __future__ import annotations

import ipaddress

import pytest

from distshot.core.errors import BlockedAddress, InvalidUrl
from distshot.core.policy import UrlPolicy, parse_ip_literal, parse_url, refusal_reason


def no_dns(host: str, port: int) -> list[str]:
    raise AssertionError(f"unexpected DNS lookup of {host}")


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/x",
        "javascript:alert(1)",
        "file:///etc/passwd",
        "data:text/html,hi",
        "example.com/no-scheme",
        "http://",
        "http://exa mple.com/",
        "https://example.com:99999/",
        # urlsplit's own ValueErrors (found by schemathesis: a 500, not a 422)
        "http://a]b.com/x",
        "http://[::1/",
        "http://[x]/",
    ],
)
def test_only_http_and_https_urls_with_a_host_pass(url: str) -> None:
    with pytest.raises(InvalidUrl):
        parse_url(url)


@pytest.mark.parametrize(
    "host",
    [
        "localhost.",
        "127.0.0.1",
        "127.0.0.2",
        "[::1]",
        "2130706433",
        "0x7f000001",
        "0177.0.0.1",
        "127.1",
        "0.0.0.0",
        "[::ffff:127.0.0.1]",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "[fd00::1]",
        "[fe80::1]",
        "100.64.0.1",
        "[64:ff9b::a00:1]",
        "224.0.0.1",
        "100.100.100.200",
    ],
)
def test_loopback_private_and_metadata_spellings_are_refused(host: str) -> None:
    policy = UrlPolicy()

    def resolve(name: str, port: int) -> list[str]:
        assert name == "localhost."
        return ["127.0.0.1", "::1"]

    with pytest.raises(BlockedAddress) as info:
        policy.check_url(f"http://{host}/", resolve)
    assert "--allow-private" in info.value.message


def test_numeric_spellings_are_read_like_a_browser_reads_them() -> None:
    assert parse_ip_literal("2130706433") == ipaddress.ip_address("127.0.0.1")
    assert parse_ip_literal("0x7f.1") == ipaddress.ip_address("127.0.0.1")
    assert parse_ip_literal("[::1]") == ipaddress.ip_address("::1")
    assert parse_ip_literal("example.com") is None


def test_public_addresses_pass() -> None:
    policy = UrlPolicy()
    policy.check_url("https://93.184.216.34/", no_dns)
    policy.check_url("http://[2606:2800:220:1::1]/", no_dns)
    policy.check_url("https://example.test/", lambda h, p: ["93.184.216.34"])


def test_a_name_resolving_to_any_private_address_is_refused() -> None:
    # The classic DNS-rebinding set-up: one public and one private answer.
    with pytest.raises(BlockedAddress) as info:
        UrlPolicy().check_url("https://rebind.test/", lambda h, p: ["93.184.216.34", "10.0.0.5"])
    assert "rebind.test resolves to 10.0.0.5" in info.value.message
    assert "private" in info.value.message


def test_metadata_address_is_named_as_such() -> None:
    assert refusal_reason(ipaddress.ip_address("169.254.169.254")) == "cloud metadata"
    assert refusal_reason(ipaddress.ip_address("::ffff:169.254.169.254")) == "cloud metadata"


def test_allow_private_admits_everything_without_dns() -> None:
    UrlPolicy(allow_private=True).check_url("http://localhost/", no_dns)
    UrlPolicy(allow_private=True).check_url("http://10.0.0.1/", no_dns)


def test_allow_networks_admits_only_the_listed_range() -> None:
    policy = UrlPolicy.build(False, ["127.0.0.1/32"])
    policy.check_url("http://127.0.0.1:8080/", no_dns)
    with pytest.raises(BlockedAddress):
        policy.check_url("http://127.0.0.2/", no_dns)
    with pytest.raises(BlockedAddress):
        policy.check_url("http://10.0.0.1/", no_dns)
