"""One reachability probe through one uplink: an ICMP echo or a TCP connection.

A probe carries the uplink's firewall mark (SO_MARK: the LAN policy's rule
for that mark sends it to the uplink's own table) and is bound to the
uplink's device (SO_BINDTODEVICE: with no route there, it fails instead of
leaving through another uplink). So the primary uplink is tested while the
LAN's traffic is on the backup, and a probe never proves the wrong uplink.

* ``ADDRESS``: an ICMP echo request on a raw socket; answered when an echo
  reply with our identifier and sequence comes back from ADDRESS.
* ``ADDRESS:PORT``: a TCP connection; answered when it is accepted or
  refused (a reset proves the path as well as a handshake does).

Blocking, for a worker thread; never longer than ``timeout``. Needs root
(CAP_NET_RAW for the raw socket, CAP_NET_ADMIN for SO_MARK).
"""

from __future__ import annotations

import errno
import itertools
import os
import socket
import struct
import time

SO_MARK = getattr(socket, "SO_MARK", 36)
SO_BINDTODEVICE = getattr(socket, "SO_BINDTODEVICE", 25)
ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST = 0, 8
_sequence = itertools.count(1)  # next() is atomic: probes run on several threads


def probe(target: str, *, mark: int, device: str, timeout: float) -> bool:
    """Whether ``target`` answered through ``device`` within ``timeout`` seconds."""
    host, _, port = target.partition(":")
    try:
        if port:
            return _tcp(host, int(port), mark, device, timeout)
        return _icmp(host, mark, device, timeout)
    except OSError:
        return False  # no route, no device, not permitted: unanswered, all the same


def _socket(kind: int, proto: int, mark: int, device: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, kind | socket.SOCK_CLOEXEC, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_MARK, mark)
        sock.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, device.encode())
    except OSError:
        sock.close()
        raise
    return sock


def _tcp(host: str, port: int, mark: int, device: str, timeout: float) -> bool:
    with _socket(socket.SOCK_STREAM, 0, mark, device) as sock:
        sock.settimeout(timeout)
        try:
            code = sock.connect_ex((host, port))
        except TimeoutError:
            return False
        return code in (0, errno.ECONNREFUSED)


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def echo_request(ident: int, seq: int, payload: bytes) -> bytes:
    header = struct.pack("!BBHHH", ICMP_ECHO_REQUEST, 0, 0, ident, seq)
    return struct.pack("!BBHHH", ICMP_ECHO_REQUEST, 0, checksum(header + payload), ident,
                       seq) + payload


def _icmp(host: str, mark: int, device: str, timeout: float) -> bool:
    ident, seq = os.getpid() & 0xFFFF, next(_sequence) & 0xFFFF
    payload = b"remsim-supervisor lan probe"
    deadline = time.monotonic() + timeout
    with _socket(socket.SOCK_RAW, socket.IPPROTO_ICMP, mark, device) as sock:
        sock.sendto(echo_request(ident, seq, payload), (host, 0))
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            sock.settimeout(left)
            try:
                data, (source, _port) = sock.recvfrom(2048)
            except TimeoutError:
                return False
            if source != host or len(data) < 20:
                continue
            start = (data[0] & 0x0F) * 4  # a raw IPv4 socket hands us the IP header too
            if len(data) < start + 8:
                continue
            kind, _code, _sum, got_ident, got_seq = struct.unpack_from("!BBHHH", data, start)
            if kind == ICMP_ECHO_REPLY and got_ident == ident and got_seq == seq:
                return True


__all__ = ["probe"]
