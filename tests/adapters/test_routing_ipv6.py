"""The routing executor on an IPv6-only device, in real namespaces.

A router namespace with one IPv6-only device (a global address from a
documentation prefix, the gateway link-local and learned as a router
advertisement leaves it: ``proto ra``, with an expiry) beside a dual-stack
one: ``path_of`` describes the IPv6-only device as such, ``reconcile`` puts
a ``-6`` route and ``/128`` pins and no IPv4 route through it, ``clear``
removes them, and an address still in duplicate address detection does not
count.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from remsim_supervisor.adapters.routing import PathSpec, Router
from tests.netns import exec_in, ip, netns

PIN6, PIN4 = "2001:db8:9::9", "10.251.9.9"


@dataclass
class Lab:
    router: str
    cloud: str

    def ip(self, *args: str) -> str:
        return ip("-n", self.router, *args).stdout

    def route_get(self, address: str) -> str:
        return self.ip("route", "get", address).splitlines()[0]

    def table(self, family: str) -> list[str]:
        return [line for line in self.ip(family, "route", "show", "table", "all").splitlines()
                if "table 240 " in line]

    def rules(self, family: str) -> list[str]:
        return [line for line in self.ip(family, "rule").splitlines() if line.startswith("90:")]


@pytest.fixture
def lab() -> Iterator[Lab]:
    with netns("rs6r") as router, netns("rs6c") as cloud:
        for ns in (router, cloud):
            subprocess.run(exec_in(ns, "sysctl", "-q", "-w", "net.ipv6.conf.all.accept_dad=0",
                                   "net.ipv6.conf.default.accept_dad=0"),
                           check=True, capture_output=True)
        for dev, peer in (("wwan0", "gw0"), ("wwan1", "gw1")):
            ip("link", "add", dev, "netns", router, "type", "veth", "peer", "name", peer,
               "netns", cloud)
            ip("-n", router, "link", "set", dev, "up")
            ip("-n", cloud, "link", "set", peer, "up")
            ip("-n", cloud, "-6", "addr", "add", "fe80::1/64", "dev", peer, "nodad")
        r = Lab(router, cloud)
        r.ip("addr", "add", "10.251.1.2/24", "dev", "wwan0")
        r.ip("route", "add", "default", "via", "10.251.1.1", "dev", "wwan0", "metric", "10")
        r.ip("-6", "addr", "add", "2001:db8:1::2/64", "dev", "wwan0", "nodad")
        r.ip("-6", "route", "add", "default", "via", "fe80::1", "dev", "wwan0", "metric", "10")
        r.ip("-6", "addr", "add", "2001:db8:2::2/64", "dev", "wwan1", "nodad")  # IPv6 only
        r.ip("-6", "route", "add", "default", "via", "fe80::1", "dev", "wwan1", "metric", "20",
             "proto", "ra", "expires", "1800")
        yield r


@pytest.fixture
def router(lab: Lab) -> Iterator[Router]:
    with Router(netns=lab.router, mark=0x10000000) as r:
        yield r


def test_path_of_an_ipv6_only_device(router: Router) -> None:
    spec = router.path_of("iot", "wwan1")
    assert spec == PathSpec("iot", "wwan1", None, ipv6=True, gateway6="fe80::1", ipv4=False)
    assert spec.versions == (6,)
    assert router.path_of("primary", "wwan0").versions == (4, 6)
    state = router.link_state("wwan1")
    assert (state.up, state.ipv4, state.ipv6) == (True, (), ("2001:db8:2::2",))


def test_openwrt_source_specific_default_route_gives_the_gateway(lab: Lab, router: Router) -> None:
    # netifd installs IPv6 defaults as "default from PREFIX via GW dev DEV".
    lab.ip("-6", "route", "del", "default", "dev", "wwan1")
    assert router.gateway_of("wwan1", socket.AF_INET6) is None
    lab.ip("-6", "route", "add", "default", "from", "2001:db8:2::/64", "via", "fe80::2",
           "dev", "wwan1", "metric", "512")
    assert router.path_of("iot", "wwan1").gateway6 == "fe80::2"


def test_an_ipv6_only_path_gets_minus_6_routes_and_pins_and_no_ipv4_route(
        lab: Lab, router: Router) -> None:
    iot, primary = router.path_of("iot", "wwan1"), router.path_of("primary", "wwan0")
    changes = router.reconcile([PIN6, PIN4], iot, [primary])

    assert lab.table("-6") == [
        "default via fe80::1 dev wwan1 table 240 proto 253 metric 1024 pref medium",
        "default via fe80::1 dev wwan0 table 240 proto 253 metric 1025 pref medium"]
    # IPv4 only through the dual-stack standby: nothing IPv4 through wwan1.
    assert lab.table("-4") == ["default via 10.251.1.1 dev wwan0 table 240 proto 253 metric 1 "]
    assert lab.rules("-6") == [
        f"90:\tfrom all to {PIN6} lookup 240 proto 253",
        "90:\tfrom all fwmark 0x10000000/0x10000000 lookup 240 proto 253"]
    assert f"rule to {PIN6} lookup 240 pref 90" in changes.added
    assert "dev wwan1 table 240" in lab.route_get(PIN6)
    assert "src 2001:db8:2::2" in lab.route_get(PIN6)
    assert "dev wwan0 table 240" in lab.route_get(PIN4)
    assert not router.reconcile([PIN6, PIN4], iot, [primary])  # a second run changes nothing

    # The path moves to the primary: the -6 route follows, with one look.
    router.reconcile([PIN6, PIN4], primary, [iot])
    assert "dev wwan0 table 240" in lab.route_get(PIN6)
    assert "src 2001:db8:1::2" in lab.route_get(PIN6)

    # Stop: every -6 rule and route of ours goes, the main table's stay.
    removed = router.clear().removed
    assert "route -6 default via fe80::1 dev wwan0 table 240" in removed
    assert lab.rules("-6") == [] and lab.table("-6") == [] and lab.table("-4") == []
    assert "proto ra" in lab.ip("-6", "route", "show", "default", "dev", "wwan1")


def test_a_tentative_ipv6_address_does_not_count_until_dad_is_done(
        lab: Lab, router: Router) -> None:
    lab.ip("link", "add", "wwan5", "type", "veth", "peer", "name", "gw5")
    subprocess.run(exec_in(lab.router, "sysctl", "-q", "-w",
                           "net.ipv6.conf.wwan5.accept_dad=1"), check=True, capture_output=True)
    lab.ip("link", "set", "wwan5", "up")  # its peer down: no carrier, DAD cannot run
    lab.ip("-6", "addr", "add", "2001:db8:5::2/64", "dev", "wwan5")
    assert "tentative" in lab.ip("-6", "addr", "show", "dev", "wwan5")
    assert router.link_state("wwan5").ipv6 == ()
    lab.ip("link", "set", "gw5", "up")
    deadline = time.monotonic() + 10
    while router.link_state("wwan5").ipv6 == () and time.monotonic() < deadline:
        time.sleep(0.1)
    assert router.link_state("wwan5").ipv6 == ("2001:db8:5::2",)
