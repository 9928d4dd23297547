"""The LAN flows' cut-over against the real kernel: entries deleted by the old uplink.

The LAN lab (remsim_lab.lanlab): a client masqueraded out of the router's
uplinks, conntrack on in the router (its nat table). Three flows: the
client to a cloud host (masqueraded out of ``eth1``), the client to the
pinned IonMesh (out of ``eth1`` too), and the router itself to the cloud out
of ``wwan0``. Cutting ``eth1`` over deletes the first only; the others go
when asked for, which shows they were there and were spared.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from remsim_lab.lanlab import LanLabNetwork
from remsim_lab.network import ELSEWHERE, IONMESH, call_in_netns
from remsim_supervisor.adapters.conntrack import ConntrackError
from remsim_supervisor.adapters.lanconntrack import cut_over

WAN_ADDR, PRIMARY_ADDR = "10.251.3.2", "10.251.1.2"


@pytest.fixture
def net() -> Iterator[LanLabNetwork]:
    with LanLabNetwork("rslct") as n:
        yield n


def udp(to: str, port: int, device: str | None = None) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        if device is not None:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, device.encode())
        s.sendto(b"flow", (to, port))


def test_only_the_flows_of_the_old_uplink_are_cut_and_pins_are_spared(
        net: LanLabNetwork) -> None:
    call_in_netns(net.client, udp, ELSEWHERE, 6001)
    call_in_netns(net.client, udp, IONMESH, 6002)
    call_in_netns(net.router, udp, ELSEWHERE, 6003, "wwan0")
    assert cut_over([WAN_ADDR], keep=[IONMESH], netns=net.router) == 1
    assert cut_over([WAN_ADDR], keep=[IONMESH], netns=net.router) == 0  # gone already
    assert cut_over([WAN_ADDR], netns=net.router) == 1  # the pinned host's, spared before
    assert cut_over([PRIMARY_ADDR], netns=net.router) == 1  # another uplink's, untouched
    assert cut_over([], netns=net.router) == 0
    assert cut_over(["fd00::1"], netns=net.router) == 0  # IPv4 only


def test_a_bad_address_is_one_line() -> None:
    with pytest.raises(ConntrackError, match="not an IP address: 'eth1'"):
        cut_over(["eth1"])
