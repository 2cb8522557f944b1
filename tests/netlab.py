"""Several "hosts" on one machine: a bridge, a network namespace per host, veth pairs, and
a private /24 on that bridge that the lab itself creates.

Traffic safety: every address the lab hands out lives on an interface it created, and
before anything is sent the lab checks with ``ip route get`` that the route to each
address goes through its own bridge (from the machine) or its own veth (from a host),
never through a default gateway; otherwise it fails. ``close`` removes the namespaces,
veths and bridge, and kills every process left in a namespace, even after a failure.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import random
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

#: The lab's /24s are picked from here (RFC 1918); one that any interface already uses is
#: never taken.
LAB_RANGE = ipaddress.ip_network("10.231.0.0/16")


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise AssertionError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done


@dataclass
class Host:
    name: str  # the namespace
    address: str
    veth: str  # the machine's end, on the bridge: taking it down cuts the host off

    def exec_prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.name]

    def pids(self) -> list[int]:
        done = ip("netns", "pids", self.name, check=False)
        return [int(pid) for pid in done.stdout.split()]


@dataclass
class NetLab:
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    hosts: dict[str, Host] = field(default_factory=dict)
    bridge: str = ""
    gateway: str = ""  # the machine's own address on the bridge
    network: ipaddress.IPv4Network | None = None

    def start(self) -> None:
        if os.geteuid() != 0:
            raise AssertionError("the network lab needs root (ip netns, veth, bridge)")
        self.network = self._free_network()
        self.bridge = f"dsb{self.tag}"
        self.gateway = str(self.network[1])
        ip("link", "add", self.bridge, "type", "bridge")
        ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")

    def _free_network(self) -> ipaddress.IPv4Network:
        used = []
        for line in ip("-o", "-4", "addr", "show").stdout.splitlines():
            used.append(ipaddress.ip_interface(line.split()[3]).network)
        routes = ip("-4", "route", "show").stdout.split()
        candidates = list(LAB_RANGE.subnets(new_prefix=24))
        random.shuffle(candidates)
        for net in candidates:
            if any(net.overlaps(u) for u in used) or str(net) in routes:
                continue
            return net
        raise AssertionError(f"no free /24 in {LAB_RANGE}")

    def add_host(self, role: str) -> Host:
        assert self.network is not None, "start the lab first"
        index = len(self.hosts)
        name = f"ds-{self.tag}-{role}"
        host = Host(name, str(self.network[10 + index]), f"dsv{self.tag}{index}")
        inside = f"dsi{self.tag}{index}"
        ip("netns", "add", name)
        self.hosts[role] = host
        ip("link", "add", host.veth, "type", "veth", "peer", "name", inside)
        ip("link", "set", inside, "netns", name)
        ip("-n", name, "link", "set", inside, "name", "eth0")
        ip("-n", name, "addr", "add", f"{host.address}/24", "dev", "eth0")
        ip("-n", name, "link", "set", "eth0", "up")
        ip("-n", name, "link", "set", "lo", "up")
        ip("link", "set", host.veth, "master", self.bridge)
        ip("link", "set", host.veth, "up")
        return host

    def check_routes(self) -> None:
        """Fail unless every lab address is reached through the lab's own links: from the
        machine through the bridge, from each host through its eth0 (a host has no default
        route at all)."""
        addresses = [self.gateway, *(h.address for h in self.hosts.values())]
        for address in addresses[1:]:
            self.assert_routed(address)
        for host in self.hosts.values():
            if ip("-n", host.name, "route", "show", "default").stdout.strip():
                raise AssertionError(f"{host.name} has a default route")
            for address in addresses:
                if address == host.address:
                    continue
                route = ip("-n", host.name, "route", "get", address).stdout
                if "dev eth0" not in route or " via " in route:
                    raise AssertionError(f"{host.name} reaches {address} otherwise: {route}")

    def assert_routed(self, address: str) -> None:
        """Fail unless the machine reaches ``address`` through the lab's bridge, directly.
        (``ip route get`` asks the kernel; it sends nothing.)"""
        route = ip("route", "get", address).stdout
        if f"dev {self.bridge}" not in route or " via " in route:
            raise AssertionError(f"{address} is not routed through {self.bridge}: {route}")

    def cut(self, role: str) -> None:
        """Partition a host: its link goes down (both directions drop, nothing is refused)."""
        ip("link", "set", self.hosts[role].veth, "down")

    def mend(self, role: str) -> None:
        ip("link", "set", self.hosts[role].veth, "up")

    def close(self) -> None:
        for host in self.hosts.values():
            for _ in range(3):
                pids = host.pids()
                if not pids:
                    break
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                time.sleep(0.5)
            ip("netns", "del", host.name, check=False)
            ip("link", "del", host.veth, check=False)
        if self.bridge:
            ip("link", "del", self.bridge, check=False)

    def leftovers(self) -> list[str]:
        """Whatever of this lab still exists (for the cleanup test)."""
        found = [n for n in ip("netns", "list").stdout.split() if self.tag in n]
        links = ip("-o", "link", "show").stdout
        found += [word.rstrip(":@") for word in links.split() if self.tag in word]
        netns_dir = Path("/run/netns")
        if netns_dir.exists():
            found += [p.name for p in netns_dir.iterdir() if self.tag in p.name]
        return found
