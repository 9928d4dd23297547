"""Watching network links over rtnetlink, without polling.

A modem counts as ``connected`` when it is registered *and* its data
interface (``wwan0``, ``wwan_4``, ``usb0``...) is up. The kernel announces
every link change on the ``RTMGRP_LINK`` multicast group; this module
listens there with a plain ``AF_NETLINK`` socket driven by the event loop.

Why not pyroute2 here: its synchronous ``IPRoute`` cannot be used inside a
running asyncio loop from 0.9 on, while 0.7.9 (OpenWrt 24.10) has no async
API at all. Link state needs only the ``ifinfomsg`` header and the interface
name, which the stdlib parses in a few lines and the same way on every
version. Routing (issue of the heartbeat path) uses pyroute2 in a worker.

A link is *up* when it is administratively up and its lower layer is up
(``IFF_UP`` and ``IFF_LOWER_UP``, or ``IFF_RUNNING`` on drivers that do not
report ``IFF_LOWER_UP``).

Given ``on_address``, the monitor also listens on the IPv4 and IPv6 address
groups and names the device whose address appeared, changed or went
(``RTM_NEWADDR``/``RTM_DELADDR``): an IPv6 address arrives after the link
is up (a router advertisement, DHCPv6), becomes usable when duplicate
address detection ends, and can expire with its prefix, all without a link
event.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import struct
from collections.abc import Callable

log = logging.getLogger(__name__)

NETLINK_ROUTE = 0
RTMGRP_LINK = 0x1
RTMGRP_IPV4_IFADDR, RTMGRP_IPV6_IFADDR = 0x10, 0x100
RTM_NEWADDR, RTM_DELADDR = 20, 21
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
IFF_UP, IFF_RUNNING, IFF_LOWER_UP = 0x1, 0x40, 0x10000
IFLA_IFNAME = 3

NLMSGHDR = struct.Struct("=LHHLL")
IFINFOMSG = struct.Struct("=BxHiII")
IFADDRMSG = struct.Struct("=BBBBI")  # family, prefix length, flags, scope, index
RTATTR = struct.Struct("=HH")


def _align(n: int) -> int:
    return (n + 3) & ~3


def parse_links(data: bytes) -> list[tuple[int, str | None, bool, bool]]:
    """Parse rtnetlink link messages: (type, name, up, deleted) for each."""
    out: list[tuple[int, str | None, bool, bool]] = []
    offset = 0
    while offset + NLMSGHDR.size <= len(data):
        length, mtype, _flags, _seq, _pid = NLMSGHDR.unpack_from(data, offset)
        if length < NLMSGHDR.size or offset + length > len(data):
            break
        if mtype in (RTM_NEWLINK, RTM_DELLINK):
            body = offset + NLMSGHDR.size
            _family, _type, _index, flags, _change = IFINFOMSG.unpack_from(data, body)
            name = None
            attr = body + IFINFOMSG.size
            end = offset + length
            while attr + RTATTR.size <= end:
                alen, atype = RTATTR.unpack_from(data, attr)
                if alen < RTATTR.size:
                    break
                if atype == IFLA_IFNAME:
                    raw = data[attr + RTATTR.size : attr + alen]
                    name = raw.split(b"\0", 1)[0].decode("utf-8", "replace")
                attr += _align(alen)
            up = bool(flags & IFF_UP) and bool(flags & (IFF_LOWER_UP | IFF_RUNNING))
            out.append((mtype, name, up, mtype == RTM_DELLINK))
        elif mtype == NLMSG_DONE:
            out.append((mtype, None, False, False))
        offset += _align(length)
    return out


def parse_addresses(data: bytes) -> list[tuple[int, int, int]]:
    """Parse rtnetlink address messages: (type, family, interface index) for each."""
    out: list[tuple[int, int, int]] = []
    offset = 0
    while offset + NLMSGHDR.size <= len(data):
        length, mtype, _flags, _seq, _pid = NLMSGHDR.unpack_from(data, offset)
        if length < NLMSGHDR.size or offset + length > len(data):
            break
        if mtype in (RTM_NEWADDR, RTM_DELADDR) and length >= NLMSGHDR.size + IFADDRMSG.size:
            family, _plen, _flags, _scope, index = IFADDRMSG.unpack_from(
                data, offset + NLMSGHDR.size)
            out.append((mtype, family, index))
        offset += _align(length)
    return out


class LinkMonitor:
    """Keeps ``name -> up`` for every link and reports changes to a callback.

    ``on_change(name, up)`` is called in the event loop, straight from the
    socket's reader callback, with the state the kernel's message carried:
    whoever listens (the heartbeat's path, the modem tasks) acts on it as it
    stands, without asking the kernel again.
    """

    def __init__(self, on_change: Callable[[str, bool], None] | None = None, *,
                 on_address: Callable[[str], None] | None = None) -> None:
        self.on_change = on_change
        self.on_address = on_address  # a device's addresses changed (IPv4 or IPv6)
        self.links: dict[str, bool] = {}
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._seq = 0

    def is_up(self, name: str | None) -> bool | None:
        """True/False for a known link, None when there is no such link."""
        if not name:
            return None
        return self.links.get(name)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        sock = socket.socket(
            socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE
        )
        sock.setblocking(False)
        groups = RTMGRP_LINK
        if self.on_address is not None:
            groups |= RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR
        sock.bind((0, groups))
        self._sock = sock
        self._dump()
        self._loop.add_reader(sock.fileno(), self._readable)

    def stop(self) -> None:
        if self._sock is not None:
            if self._loop is not None:
                self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None

    def _dump(self) -> None:
        assert self._sock is not None
        self._seq += 1
        body = IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
        header = NLMSGHDR.pack(
            NLMSGHDR.size + len(body), RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, self._seq, 0
        )
        try:
            self._sock.send(header + body)
        except OSError as exc:
            log.warning("cannot ask the kernel for its links: %s", exc)

    def _readable(self) -> None:
        assert self._sock is not None
        while True:
            try:
                data = self._sock.recv(65536)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    # We fell behind and the kernel dropped events: re-read all.
                    log.debug("netlink overrun; dumping links again")
                    self._dump()
                    continue
                log.warning("netlink read failed: %s", os.strerror(exc.errno or 0))
                return
            for _mtype, name, up, deleted in parse_links(data):
                if name is None:
                    continue
                if deleted:
                    if self.links.pop(name, None) is not None and self.on_change:
                        self.on_change(name, False)
                    continue
                before = self.links.get(name)
                self.links[name] = up
                if before != up and self.on_change:
                    self.on_change(name, up)
            if self.on_address is not None:
                self._addresses_changed(data)

    def _addresses_changed(self, data: bytes) -> None:
        assert self.on_address is not None
        for index in dict.fromkeys(index for _t, _f, index in parse_addresses(data)):
            try:
                name = socket.if_indextoname(index)
            except OSError:
                continue  # the device went meanwhile: its link event says so
            self.on_address(name)
