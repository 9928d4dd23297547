"""The rtnetlink monitor's address events against a real kernel, inside a test namespace:
an IPv6 (or IPv4) address appearing, leaving duplicate address detection and going
names its device, without any link event."""

from __future__ import annotations

import struct
import subprocess
import sys
import time

from remsim_supervisor.adapters import netlink
from tests.adapters.test_netlink import read_until
from tests.netns import exec_in, ip, netns

MONITOR = r"""
import asyncio, json, sys
from remsim_supervisor.adapters.netlink import LinkMonitor

async def main():
    def changed(name, up):
        print(json.dumps(["link", name, up]), flush=True)
    def addressed(name):
        print(json.dumps(["address", name]), flush=True)
    mon = LinkMonitor(changed, on_address=addressed)
    mon.start()
    print(json.dumps(["ready"]), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    mon.stop()

asyncio.run(main())
"""


def test_address_changes_name_their_device() -> None:
    with netns() as ns:
        ip("-n", ns, "link", "add", "wwan1", "type", "veth", "peer", "name", "carrier1")
        ip("-n", ns, "link", "set", "carrier1", "up")
        ip("-n", ns, "link", "set", "wwan1", "up")
        subprocess.run(exec_in(ns, "sysctl", "-q", "-w", "net.ipv6.conf.wwan1.accept_dad=1"),
                       check=True, capture_output=True)
        proc = subprocess.Popen(exec_in(ns, sys.executable, "-c", MONITOR),
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            read_until(proc, ["ready"])
            read_until(proc, ["link", "wwan1", True])  # the initial dump
            # A global IPv6 address, as an RA or DHCPv6 gives it: tentative first.
            ip("-n", ns, "-6", "addr", "add", "2001:db8:2::2/64", "dev", "wwan1")
            read_until(proc, ["address", "wwan1"])
            # DAD ends about a second later: that is an address event too. (An
            # address on lo afterwards marks where to stop reading.)
            deadline = time.monotonic() + 5
            while "tentative" in ip("-n", ns, "-6", "addr", "show", "dev", "wwan1").stdout:
                assert time.monotonic() < deadline, "DAD never ended"
                time.sleep(0.1)
            ip("-n", ns, "addr", "add", "127.0.0.2/8", "dev", "lo")
            assert ["address", "wwan1"] in read_until(proc, ["address", "lo"])[:-1]
            ip("-n", ns, "-6", "addr", "del", "2001:db8:2::2/64", "dev", "wwan1")
            read_until(proc, ["address", "wwan1"])
            ip("-n", ns, "addr", "add", "10.251.2.2/24", "dev", "wwan1")
            seen = read_until(proc, ["address", "wwan1"])
            assert not [item for item in seen if item[0] == "link"]
        finally:
            assert proc.stdin is not None
            proc.stdin.write("\n")
            proc.stdin.close()
            proc.wait(timeout=5)


def test_parse_addresses_reads_family_and_index_and_skips_the_rest() -> None:
    body = netlink.IFADDRMSG.pack(10, 64, 0, 0, 7)
    msg = netlink.NLMSGHDR.pack(netlink.NLMSGHDR.size + len(body), netlink.RTM_NEWADDR,
                                0, 0, 0) + body
    other = netlink.NLMSGHDR.pack(netlink.NLMSGHDR.size + 4, netlink.RTM_NEWLINK, 0, 0, 0) \
        + struct.pack("=I", 0)
    assert netlink.parse_addresses(other + msg) == [(netlink.RTM_NEWADDR, 10, 7)]
    assert netlink.parse_addresses(msg[:20]) == []
    short = netlink.NLMSGHDR.pack(netlink.NLMSGHDR.size, netlink.RTM_DELADDR, 0, 0, 0)
    assert netlink.parse_addresses(short) == []
