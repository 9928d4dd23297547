"""A kernel-timestamped rtnetlink listener, and the reference reactor beside it.

The failover benchmarks (``failover.py``, ``lan_failover.py``) time the
daemon against the kernel's own clock: a raw ``NETLINK_ROUTE`` socket in the
router namespace, subscribed to link, IPv4 route and IPv4 rule messages with
``SO_TIMESTAMPNS``, so every message carries the time the kernel queued it;
nothing is polled. Armed per trial (``react``), the listening thread itself
answers the next link-down of the watched device with a route of its own in
a reference table: the kernel-timestamped interval between the two is what
reacting to that event costs on this machine, the limit beside the daemon's
figure.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from dataclasses import dataclass

NETLINK_ROUTE = 0
RTMGRP_LINK, RTMGRP_IPV4_ROUTE, RTMGRP_IPV4_RULE = 0x1, 0x40, 0x80
RTM_NEWLINK, RTM_NEWROUTE, RTM_DELROUTE = 16, 24, 25
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
IFF_UP, IFF_LOWER_UP = 0x1, 0x10000
RTA_GATEWAY, RTA_OIF, RTA_PRIORITY, RTA_TABLE = 5, 4, 6, 15
NLM_F_REQUEST, NLM_F_ACK, NLM_F_CREATE, NLM_F_REPLACE = 0x1, 0x4, 0x400, 0x100
NLMSGHDR = struct.Struct("=LHHLL")
IFINFOMSG = struct.Struct("=BxHiII")
RTMSG = struct.Struct("=BBBBBBBBI")
RTATTR = struct.Struct("=HH")


def _attrs(data: bytes, start: int, end: int) -> dict[int, bytes]:
    out = {}
    while start + RTATTR.size <= end:
        length, kind = RTATTR.unpack_from(data, start)
        if length < RTATTR.size:
            break
        out[kind & 0x3FFF] = data[start + RTATTR.size:start + length]
        start += (length + 3) & ~3
    return out


def _u32(attrs: dict[int, bytes], kind: int, default: int = 0) -> int:
    return struct.unpack("=I", attrs[kind])[0] if kind in attrs else default


@dataclass
class Message:
    kernel: float  # SO_TIMESTAMPNS, CLOCK_REALTIME seconds
    user: float  # time.time() when this process read it
    kind: int
    index: int = 0  # link: ifindex; route: oif
    up: bool = False  # link: IFF_UP
    lower_up: bool = True  # link: IFF_LOWER_UP (carrier)
    table: int = 0
    metric: int = 0


class Listener:
    """Every message, timestamped; ``react`` answers the next down of ``watch``.

    ``down`` is the link flag whose loss counts as down: ``IFF_UP`` for
    ``ip link set DEV down``, ``IFF_LOWER_UP`` for a lost carrier. The answer
    is ``ip route replace default via GATEWAY dev OIF table REFERENCE``,
    written by hand on the listening thread.
    """

    def __init__(self, netns: str, *, watch: int, oif: int, gateway: str, reference: int,
                 down: int = IFF_UP) -> None:
        from remsim_lab.network import call_in_netns

        def make() -> socket.socket:
            s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            s.bind((0, RTMGRP_LINK | RTMGRP_IPV4_ROUTE | RTMGRP_IPV4_RULE))
            return s

        self.sock = call_in_netns(netns, make)
        self.cmd = call_in_netns(netns, lambda: socket.socket(
            socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE))
        self.cmd.bind((0, 0))
        self.watch, self.oif, self.down = watch, oif, down
        self.gateway, self.reference = socket.inet_aton(gateway), reference
        self.messages: list[Message] = []
        self.lock = threading.Lock()
        self.react = False  # armed per trial
        self._stop = False
        self.thread = threading.Thread(target=self._loop, name="netlink listener", daemon=True)
        self.thread.start()

    def close(self) -> None:
        self._stop = True
        self.thread.join(timeout=2)
        self.sock.close()
        self.cmd.close()

    def _reference_route(self) -> None:
        body = RTMSG.pack(socket.AF_INET, 0, 0, 0, self.reference, 4, 0, 1, 0)  # boot, universe
        body += RTATTR.pack(8, RTA_GATEWAY) + self.gateway
        body += RTATTR.pack(8, RTA_OIF) + struct.pack("=I", self.oif)
        flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE
        self.cmd.send(NLMSGHDR.pack(NLMSGHDR.size + len(body), RTM_NEWROUTE, flags, 1, 0) + body)

    def _loop(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                data, ancdata, _flags, _addr = self.sock.recvmsg(1 << 16, 64)
            except TimeoutError:
                continue
            except OSError:
                if self._stop:
                    return
                raise
            user = time.time()
            kernel = user
            for level, kind, payload in ancdata:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    sec, nsec = struct.unpack("=qq", payload[:16])
                    kernel = sec + nsec / 1e9
            pos = 0
            while pos + NLMSGHDR.size <= len(data):
                length, kind, _f, _seq, _pid = NLMSGHDR.unpack_from(data, pos)
                if length < NLMSGHDR.size:
                    break
                self._one(Message(kernel, user, kind), data, pos + NLMSGHDR.size, pos + length)
                pos += (length + 3) & ~3

    def _one(self, msg: Message, data: bytes, body: int, end: int) -> None:
        if msg.kind == RTM_NEWLINK:
            _fam, _type, index, flags, _change = IFINFOMSG.unpack_from(data, body)
            msg.index, msg.up = index, bool(flags & IFF_UP)
            msg.lower_up = bool(flags & IFF_LOWER_UP)
            if self.react and index == self.watch and not flags & self.down:
                self.react = False
                self._reference_route()
        elif msg.kind in (RTM_NEWROUTE, RTM_DELROUTE):
            rt = RTMSG.unpack_from(data, body)
            attrs = _attrs(data, body + RTMSG.size, end)
            msg.table = _u32(attrs, RTA_TABLE, rt[4])
            msg.index, msg.metric = _u32(attrs, RTA_OIF), _u32(attrs, RTA_PRIORITY)
        with self.lock:
            self.messages.append(msg)

    def since(self, n: int) -> list[Message]:
        with self.lock:
            return self.messages[n:]

    def count(self) -> int:
        with self.lock:
            return len(self.messages)
