"""The heartbeat path's default route, written in one rtnetlink message from the event loop.

When the active path's link goes down, the first thing the supervisor does
is put the default route of the path it moves to into its table: one
``RTM_NEWROUTE`` with ``NLM_F_CREATE | NLM_F_REPLACE`` per address family,
built in advance and sent on a non-blocking ``AF_NETLINK`` socket straight
from the link event's callback, with no thread hop and no pyroute2 on the
way. The full reconcile (:class:`~remsim_supervisor.adapters.routing.Router`)
follows in a worker thread as on every move; the routes written here are
exactly the ones it wants for the new path (:meth:`Router.routes_of
<remsim_supervisor.adapters.routing.Router.routes_of>` gives them, as
:class:`~remsim_supervisor.core.routes.Route` values), so it finds them in
place and only removes what the move left stale.

* :func:`route_message` lays one route out as the kernel reads it (pure:
  bytes from a ``Route``);
* :class:`Prepared` is a path's messages, built whenever its facts are read;
* :class:`FastRoute` owns the socket: :meth:`FastRoute.write` sends a
  prepared batch and reads the kernel's acknowledgements back at once (the
  kernel handles an rtnetlink request inside the ``send`` call, so they are
  queued by the time it returns), returning None or one line saying what
  failed. It never waits: a full socket buffer or a missing answer is
  reported as such, and the reconcile that follows repairs whatever the
  write did not do.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from remsim_supervisor.core.routes import Route

NETLINK_ROUTE = 0
RTM_NEWROUTE = 24
NLMSG_ERROR = 2
NLM_F_REQUEST, NLM_F_ACK, NLM_F_REPLACE, NLM_F_CREATE = 0x1, 0x4, 0x100, 0x400
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_TABLE = 1, 4, 5, 6, 15
RT_TABLE_COMPAT = 252  # rtm_table when the table number does not fit in a byte

NLMSGHDR = struct.Struct("=LHHLL")
RTMSG = struct.Struct("=BBBBBBBBI")
RTATTR = struct.Struct("=HH")
U32 = struct.Struct("=I")
NLMSGERR = struct.Struct("=i")
_FLAGS = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE


def _attr(kind: int, payload: bytes) -> bytes:
    data = RTATTR.pack(RTATTR.size + len(payload), kind) + payload
    return data + b"\0" * (-len(data) % 4)


def route_message(route: Route, seq: int = 0) -> bytes:
    """``ip route replace ROUTE``, as one rtnetlink request asking for an acknowledgement.

    The same fields the reconcile compares (family, table, destination,
    gateway, device index, metric, protocol, scope, type, TOS), so the route
    the kernel then lists is equal to ``route`` for :meth:`Route.same`.
    """
    if route.multipath:
        raise ValueError("a multipath route is not written in one message")
    family = route.family
    body = RTMSG.pack(family, route.dst_len, 0, route.tos,
                      route.table if route.table < 256 else RT_TABLE_COMPAT,
                      route.proto, route.scope, route.type, 0)
    body += _attr(RTA_TABLE, U32.pack(route.table))
    if route.dst is not None:
        body += _attr(RTA_DST, socket.inet_pton(family, route.dst))
    if route.gateway is not None:
        body += _attr(RTA_GATEWAY, socket.inet_pton(family, route.gateway))
    if route.oif is not None:
        body += _attr(RTA_OIF, U32.pack(route.oif))
    body += _attr(RTA_PRIORITY, U32.pack(route.metric))
    return NLMSGHDR.pack(NLMSGHDR.size + len(body), RTM_NEWROUTE, _FLAGS, seq, 0) + body


@dataclass(frozen=True)
class Prepared:
    """A path's default routes as the active path, and the one batch that writes them."""

    name: str  # the modem whose path this is
    routes: tuple[Route, ...]
    data: bytes

    @classmethod
    def of(cls, name: str, routes: Sequence[Route]) -> Prepared:
        data = b"".join(route_message(r, seq) for seq, r in enumerate(routes, 1))
        return cls(name, tuple(routes), data)

    def text(self) -> str:
        return "; ".join(r.text() for r in self.routes)


def open_rtnetlink() -> socket.socket:
    """A non-blocking rtnetlink socket in our network namespace, bound to no group."""
    sock = socket.socket(socket.AF_NETLINK,
                         socket.SOCK_RAW | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK,
                         NETLINK_ROUTE)
    sock.bind((0, 0))
    return sock


class FastRoute:
    """One non-blocking rtnetlink socket that writes prepared routes and never waits.

    ``open_socket`` makes the socket (default: ``AF_NETLINK`` in our own
    network namespace); it is opened on first use, again after it failed, or
    in advance by :meth:`open`.
    """

    def __init__(self, open_socket: Callable[[], socket.socket] = open_rtnetlink) -> None:
        self._open_socket = open_socket
        self._sock: socket.socket | None = None

    def open(self) -> str | None:
        """Open the socket now (before it is needed); None, or why it cannot be."""
        try:
            self._socket()
        except OSError as exc:
            return _reason(exc)
        return None

    def write(self, prepared: Prepared) -> str | None:
        """Send ``prepared``'s messages; None when the kernel acknowledged every one,
        else one line saying what went wrong."""
        expected = len(prepared.routes)
        try:
            sock = self._socket()
            self._drain(sock)  # answers to an earlier write that did not wait for them
            sent = sock.send(prepared.data)
            if sent != len(prepared.data):
                return f"only {sent} of {len(prepared.data)} bytes went out"
        except OSError as exc:
            self.close()
            return _reason(exc)
        errors: list[str] = []
        acked = 0
        while acked < expected:
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                break
            except OSError as exc:
                self.close()
                errors.append(_reason(exc))
                break
            for seq, code in _acks(data):
                if not 1 <= seq <= expected:
                    continue
                acked += 1
                if code:
                    errors.append(f"{prepared.routes[seq - 1].text()}: {os.strerror(code)}")
        if not errors and acked < expected:
            errors.append(f"the kernel acknowledged {acked} of {expected} route(s) at once")
        return "; ".join(errors) or None

    def close(self) -> None:
        if self._sock is not None:
            sock, self._sock = self._sock, None
            sock.close()

    def _socket(self) -> socket.socket:
        if self._sock is None:
            sock = self._open_socket()
            sock.setblocking(False)
            self._sock = sock
        return self._sock

    @staticmethod
    def _drain(sock: socket.socket) -> None:
        while True:
            try:
                sock.recv(65536)
            except BlockingIOError:
                return


def _acks(data: bytes) -> list[tuple[int, int]]:
    """(sequence number, errno) of each acknowledgement in ``data``; errno 0: done."""
    out = []
    offset = 0
    while offset + NLMSGHDR.size <= len(data):
        length, kind, _flags, seq, _pid = NLMSGHDR.unpack_from(data, offset)
        if length < NLMSGHDR.size or offset + length > len(data):
            break
        if kind == NLMSG_ERROR and length >= NLMSGHDR.size + NLMSGERR.size:
            (code,) = NLMSGERR.unpack_from(data, offset + NLMSGHDR.size)
            out.append((seq, -code))
        offset += (length + 3) & ~3
    return out


def _reason(exc: OSError) -> str:
    code = exc.errno or 0
    if code in (errno.EPERM, errno.EACCES):
        return "not permitted (run as root)"
    return os.strerror(code) if code else str(exc) or type(exc).__name__


__all__ = ["FastRoute", "Prepared", "open_rtnetlink", "route_message"]
