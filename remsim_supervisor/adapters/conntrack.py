"""Cutting pinned connections over: delete their conntrack entries, by destination.

When the heartbeat path moves, the route of our table changes at once, but
connections already open keep their conntrack entries: on OpenWrt the NAT
(masquerade) mapping chosen for the old interface stays attached to them, so
their packets keep leaving with the old source address and are dropped, and
the client hangs until its own timeout, maybe beyond the grace period. The
kernel drops masquerade entries when an interface goes down or loses its
address, but not when a route moves while the old interface stays up, which
is exactly the case of a modem that is up and silently dropping traffic.
Deleting the entries makes the next packet of each connection look new: it is
routed and NATed for the new path, and a TCP peer that sees the new address
answers with a reset, so the client reconnects at once instead of waiting.

:func:`flush_conntrack` deletes the entries whose *original-direction
destination* is one of the given addresses, and only those: the connections
we opened to the pinned hosts (and those LAN clients opened to them), never
an inbound connection from such a host, nor any other flow. All zones are
covered (the zone is sent back with each delete) and each delete names the
entry's id, so a new connection that reuses the tuple meanwhile is left
alone.

It speaks ctnetlink directly over an ``AF_NETLINK`` socket (the stdlib is
enough): pyroute2's ``Conntrack`` differs between 0.7.9 and 0.9 (0.7.9's
``delete()`` fails with a TypeError, 0.9 opens its socket lazily and so not
in the namespace it was created in), and the ``conntrack`` tool needs the same
kernel support (``kmod-nf-conntrack-netlink``) while being one more package.
Linux 5.8+ filters an IPv4 dump by destination in the kernel; older kernels
ignore the filter, and the check here decides in every case. IPv6 dumps are
not filtered by the kernel: its IPv6 address filter is inverted (it returns
the entries that do *not* match) from 5.8 to at least 6.18.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Self

from remsim_supervisor.adapters.routing import RoutingError

NETLINK_NETFILTER = 12
NFNL_SUBSYS_CTNETLINK = 1
IPCTNL_MSG_CT_NEW, IPCTNL_MSG_CT_GET, IPCTNL_MSG_CT_DELETE = 0, 1, 2
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP = 0x1, 0x4, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLA_F_NESTED = 0x8000
NLA_TYPE_MASK = 0x3FFF
CTA_TUPLE_ORIG, CTA_ID, CTA_ZONE, CTA_FILTER = 1, 12, 18, 25
CTA_TUPLE_IP = 1
CTA_IP_V4_DST, CTA_IP_V6_DST = 2, 4
CTA_FILTER_ORIG_FLAGS = 1
CTA_FILTER_FLAG_IP_DST = 1 << 1
CLONE_NEWNET = 0x40000000

NLMSGHDR = struct.Struct("=LHHLL")
NFGENMSG = struct.Struct("=BBH")
NLATTR = struct.Struct("=HH")
_DST_ATTR: dict[int, int] = {socket.AF_INET: CTA_IP_V4_DST, socket.AF_INET6: CTA_IP_V6_DST}
_TIMEOUT_S = 5.0  # the kernel answers at once; this only bounds a wedged socket
_MISSING = "the kernel has no conntrack netlink (install kmod-nf-conntrack-netlink)"


class ConntrackError(RoutingError):
    """Conntrack entries could not be read or deleted; one line saying why."""


def flush_conntrack(addresses: Iterable[str], *, netns: str | None = None) -> int:
    """Delete the conntrack entries whose original destination is one of ``addresses``.

    Returns how many were deleted. ``netns`` names a network namespace
    (``ip netns``) to work in instead of our own.
    """
    if isinstance(addresses, str):  # one address, not its characters
        addresses = [addresses]
    targets: dict[int, set[bytes]] = {}
    for text in addresses:
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            raise ConntrackError(f"not an IP address: {text!r}") from None
        family: int = socket.AF_INET if address.version == 4 else socket.AF_INET6
        targets.setdefault(family, set()).add(address.packed)
    if not targets:
        return 0
    with _Ctnetlink(netns) as nl:
        deleted = 0
        for family, wanted in targets.items():
            for entry in nl.entries_to(family, wanted):
                deleted += nl.delete(family, entry)
    return deleted


def _align(n: int) -> int:
    return (n + 3) & ~3


def _attr(kind: int, payload: bytes, nested: bool = False) -> bytes:
    header = NLATTR.pack(NLATTR.size + len(payload), kind | (NLA_F_NESTED if nested else 0))
    raw = header + payload
    return raw + b"\0" * (_align(len(raw)) - len(raw))


def _attrs(data: bytes, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(type, offset of the attribute, offset past it) for each attribute in data[start:end]."""
    offset = start
    while offset + NLATTR.size <= end:
        length, kind = NLATTR.unpack_from(data, offset)
        if length < NLATTR.size or offset + length > end:
            return
        yield kind & NLA_TYPE_MASK, offset, offset + length
        offset += _align(length)


def _find(data: bytes, start: int, end: int, kind: int) -> tuple[int, int] | None:
    for found, begin, stop in _attrs(data, start, end):
        if found == kind:
            return begin, stop
    return None


def _original_destination(data: bytes, start: int, end: int) -> tuple[bytes, bytes] | None:
    """(raw CTA_TUPLE_ORIG attribute, its destination address) of one entry."""
    orig = _find(data, start, end, CTA_TUPLE_ORIG)
    if orig is None:
        return None
    ip = _find(data, orig[0] + NLATTR.size, orig[1], CTA_TUPLE_IP)
    if ip is None:
        return None
    for kind in (CTA_IP_V4_DST, CTA_IP_V6_DST):
        dst = _find(data, ip[0] + NLATTR.size, ip[1], kind)
        if dst is not None:
            return data[orig[0] : orig[1]], data[dst[0] + NLATTR.size : dst[1]]
    return None


class _Ctnetlink:
    """One ctnetlink socket: filtered dumps and deletes by exact entry."""

    def __init__(self, netns: str | None) -> None:
        self.sock = _open_socket(netns)
        self.sock.settimeout(_TIMEOUT_S)
        self.seq = 0
        self.kernel_filter = True

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def entries_to(self, family: int, wanted: set[bytes]) -> list[bytes]:
        """The delete payloads (tuple, zone, id) of the entries going to any of ``wanted``.

        One dump whatever the number of addresses: the kernel filters it when
        there is one IPv4 address, the check here decides in every case."""
        # The kernel's IPv6 address filter is inverted (ctnetlink_filter_match_tuple
        # skips the entries that *do* match, measured on 6.18): IPv6 is filtered here.
        if self.kernel_filter and family == socket.AF_INET and len(wanted) == 1:
            try:
                return self._dump(family, wanted, kernel_filter=True)
            except _KernelSays as exc:
                if exc.code not in (errno.EINVAL, errno.EOPNOTSUPP):
                    raise ConntrackError(_explain("read conntrack entries", exc.code)) from None
                self.kernel_filter = False  # before 5.8, or a kernel that rejects it
        try:
            return self._dump(family, wanted, kernel_filter=False)
        except _KernelSays as exc:
            raise ConntrackError(_explain("read conntrack entries", exc.code)) from None

    def delete(self, family: int, payload: bytes) -> int:
        """1 when the entry was deleted, 0 when it had gone already."""
        seq = self._send(IPCTNL_MSG_CT_DELETE, NLM_F_REQUEST | NLM_F_ACK, family, payload)
        try:
            for _ in self._replies(seq):
                pass
        except _KernelSays as exc:
            if exc.code == errno.ENOENT:  # expired, or its id no longer matches
                return 0
            raise ConntrackError(_explain("delete a conntrack entry", exc.code)) from None
        return 1

    def _dump(self, family: int, wanted: set[bytes], *, kernel_filter: bool) -> list[bytes]:
        payload = b""
        if kernel_filter:
            [packed] = wanted
            ip = _attr(CTA_TUPLE_IP, _attr(_DST_ATTR[family], packed), nested=True)
            payload = _attr(CTA_TUPLE_ORIG, ip, nested=True) + _attr(
                CTA_FILTER,
                _attr(CTA_FILTER_ORIG_FLAGS, struct.pack("=I", CTA_FILTER_FLAG_IP_DST)),
                nested=True,
            )
        seq = self._send(IPCTNL_MSG_CT_GET, NLM_F_REQUEST | NLM_F_DUMP, family, payload)
        out: list[bytes] = []
        for data, start, end in self._replies(seq):
            if data[start] != family:  # nfgen_family: the kernel filters, we make sure
                continue
            body = start + NFGENMSG.size
            found = _original_destination(data, body, end)
            if found is None or found[1] not in wanted:
                continue
            keep = [found[0]]
            for kind in (CTA_ZONE, CTA_ID):
                span = _find(data, body, end, kind)
                if span is not None:
                    keep.append(data[span[0] : span[1]])
            out.append(b"".join(part + b"\0" * (_align(len(part)) - len(part)) for part in keep))
        return out

    def _send(self, command: int, flags: int, family: int, payload: bytes) -> int:
        self.seq += 1
        body = NFGENMSG.pack(family, 0, 0) + payload
        kind = (NFNL_SUBSYS_CTNETLINK << 8) | command
        try:
            self.sock.send(
                NLMSGHDR.pack(NLMSGHDR.size + len(body), kind, flags, self.seq, 0) + body
            )
        except OSError as exc:
            raise ConntrackError(_explain("talk to conntrack", exc.errno or 0)) from None
        return self.seq

    def _replies(self, seq: int) -> Iterator[tuple[bytes, int, int]]:
        """(buffer, start, end) of each reply payload to ``seq``, until done or acked."""
        while True:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                raise ConntrackError(
                    f"the kernel did not answer a conntrack request within {_TIMEOUT_S:g} s"
                ) from None
            except OSError as exc:
                raise ConntrackError(_explain("read conntrack replies", exc.errno or 0)) from None
            offset = 0
            while offset + NLMSGHDR.size <= len(data):
                length, kind, _flags, got_seq, _pid = NLMSGHDR.unpack_from(data, offset)
                if length < NLMSGHDR.size or offset + length > len(data):
                    break
                start, end = offset + NLMSGHDR.size, offset + length
                offset += _align(length)
                if got_seq != seq:
                    continue  # a late answer to an earlier request
                if kind == NLMSG_DONE:
                    return
                if kind == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", data, start)[0]
                    if code:
                        raise _KernelSays(code)
                    return  # the acknowledgement of a delete
                yield data, start, end


class _KernelSays(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def _explain(what: str, code: int) -> str:
    return f"cannot {what}: {_reason(code)}"


def _reason(code: int) -> str:
    if code in (errno.EPERM, errno.EACCES):
        return "not permitted (run as root)"
    if code in (errno.EPROTONOSUPPORT, errno.EINVAL):
        return _MISSING
    return os.strerror(code) if code else "netlink error"


def _new_socket() -> socket.socket:
    try:
        sock = socket.socket(
            socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_NETFILTER
        )
        sock.bind((0, 0))
    except OSError as exc:
        raise ConntrackError(_explain("open a conntrack socket", exc.errno or 0)) from None
    return sock


def _open_socket(netns: str | None) -> socket.socket:
    """A ctnetlink socket, in ``netns`` when given.

    A socket stays in the namespace it was created in, and setns() moves only
    the calling thread; so a short-lived thread enters the namespace, creates
    the socket and ends, and the rest of the process never changes namespace.
    """
    if netns is None:
        return _new_socket()
    path = next(
        (
            os.path.join(d, netns)
            for d in ("/run/netns", "/var/run/netns")
            if os.path.exists(os.path.join(d, netns))
        ),
        None,
    )
    if path is None:
        raise ConntrackError(f"no network namespace {netns!r}")

    def enter_and_open() -> socket.socket:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                _setns(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            reason = (
                "not permitted (run as root)"
                if exc.errno in (errno.EPERM, errno.EACCES)
                else exc.strerror or str(exc)
            )
            raise ConntrackError(f"cannot enter network namespace {netns!r}: {reason}") from None
        return _new_socket()

    # A pool of one: its thread ends with the pool, and result() hands any
    # exception back to this thread.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="netns") as pool:
        return pool.submit(enter_and_open).result()


def _setns(fd: int) -> None:
    setns = getattr(os, "setns", None)  # Python 3.12+
    if setns is not None:
        setns(fd, CLONE_NEWNET)
        return
    import ctypes  # only for namespaces (the lab and tests); OpenWrt's python3 has it

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


__all__ = ["ConntrackError", "flush_conntrack"]
