"""The rtnetlink link monitor against a real kernel, inside a test namespace."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from remsim_supervisor.adapters import netlink
from tests.netns import exec_in, ip, netns

MONITOR = r"""
import asyncio, json, sys
from remsim_supervisor.adapters.netlink import LinkMonitor

async def main():
    def changed(name, up):
        print(json.dumps([name, up]), flush=True)
    mon = LinkMonitor(changed)
    mon.start()
    print(json.dumps(["ready", True]), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    mon.stop()

asyncio.run(main())
"""


def read_until(proc: subprocess.Popen[str], wanted: list[object],
               timeout: float = 5.0) -> list[list[object]]:
    seen: list[list[object]] = []
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        item = json.loads(line)
        seen.append(item)
        if item == wanted:
            return seen
    raise AssertionError(f"never saw {wanted}; saw {seen}")


def test_link_changes_are_reported_from_the_kernel() -> None:
    with netns() as ns:
        proc = subprocess.Popen(exec_in(ns, sys.executable, "-c", MONITOR),
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            read_until(proc, ["lo", True])  # the initial dump, answered after start()
            ip("-n", ns, "link", "add", "wwan0", "type", "veth", "peer", "name", "carrier0")
            ip("-n", ns, "link", "set", "wwan0", "up")
            # Up on our side but the peer is down: no carrier, not usable.
            ip("-n", ns, "link", "set", "carrier0", "up")
            read_until(proc, ["wwan0", True])
            ip("-n", ns, "link", "set", "carrier0", "down")
            read_until(proc, ["wwan0", False])
            ip("-n", ns, "link", "del", "carrier0")
        finally:
            assert proc.stdin is not None
            proc.stdin.write("\n")
            proc.stdin.close()
            proc.wait(timeout=5)


def test_parse_ignores_truncated_messages() -> None:
    body = netlink.IFINFOMSG.pack(0, 1, 7, netlink.IFF_UP | netlink.IFF_LOWER_UP, 0)
    name = b"wwan0\0\0\0"
    attr = netlink.RTATTR.pack(4 + 6, netlink.IFLA_IFNAME) + name
    msg = (netlink.NLMSGHDR.pack(16 + len(body) + len(attr), netlink.RTM_NEWLINK, 0, 1, 0)
           + body + attr)
    assert netlink.parse_links(msg) == [(netlink.RTM_NEWLINK, "wwan0", True, False)]
    assert netlink.parse_links(msg[:20]) == []
    assert netlink.parse_links(b"\xff" * 7) == []
