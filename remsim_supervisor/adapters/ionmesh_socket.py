"""The socket under the IonMesh client: byte meters, deadlines and what a failure means.

Every read and write of a call is bounded by the call's deadline and counted
(the heartbeat's bytes are paid for on the IoT plan); a failed socket
operation becomes one :class:`~remsim_supervisor.core.ionmesh.IonMeshError`
line saying what to fix.
"""

from __future__ import annotations

import errno
import http.client
import io
import select
import socket
import time
from typing import Any

from remsim_supervisor.core.ionmesh import IonMeshError, IonMeshUnavailable

try:
    import ssl
except ImportError:  # pragma: no cover - python3-openssl not installed: http:// only
    ssl = None  # type: ignore[assignment]


def format_address(address: Any) -> str | None:
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return None


class Meter:
    """Bytes one attempt put on and took off the socket."""

    def __init__(self) -> None:
        self.sent = 0
        self.received = 0


def set_deadline(sock: socket.socket, deadline: float) -> None:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("timed out")
    sock.settimeout(remaining)


class MeteredReader(io.RawIOBase):
    """The socket as ``HTTPResponse`` reads it: every byte counted, every read
    bounded by the call's deadline (a trickling server cannot stretch it)."""

    def __init__(self, sock: socket.socket, meter: Meter, deadline: float) -> None:
        super().__init__()
        self._sock = sock
        self._meter = meter
        self._deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        set_deadline(self._sock, self._deadline)
        n = self._sock.recv_into(buffer)
        self._meter.received += n
        return n


class MeteredSocket:
    """Just enough of a socket for ``http.client.HTTPResponse`` (it calls ``makefile``)."""

    def __init__(self, sock: socket.socket, meter: Meter, deadline: float) -> None:
        self._reader = MeteredReader(sock, meter, deadline)

    def makefile(self, mode: str = "rb", *args: Any, **kwargs: Any) -> io.BufferedReader:
        return io.BufferedReader(self._reader)


class Oversized(http.client.HTTPException):
    """The answer is larger than any IonMesh answer: not read to its end."""


# Errors by which a kept-alive connection shows that the server closed it.
CLOSED_ERRORS: tuple[type[BaseException], ...] = (
    ConnectionResetError, BrokenPipeError, ConnectionAbortedError, http.client.RemoteDisconnected,
) + ((ssl.SSLEOFError, ssl.SSLZeroReturnError) if ssl is not None else ())



def idle_connection_usable(sock: socket.socket | None) -> bool:
    """False when the server closed the idle connection (or sent anything at all,
    such as a 408 before closing): then we reconnect before sending."""
    if sock is None:
        return False
    try:
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        if not poller.poll(0):
            return True
    except (OSError, ValueError):
        return False
    if ssl is not None and isinstance(sock, ssl.SSLSocket):
        # TLS 1.3 session tickets may arrive late; a record without application
        # data is not a reason to give the connection up.
        try:
            sock.setblocking(False)
            sock.recv(1)  # data or end of stream: either way not ours to reuse
        except ssl.SSLWantReadError:
            return True
        except (OSError, ValueError):
            return False
    return False


def transport_error(e: BaseException, name: str, *, where: str, timeout: float, port: int,
                    bind_device: str | None, mark: int | None,
                    source_address: str | None) -> IonMeshError:
    """The one-line error a failed socket operation during call ``name`` means."""
    if ssl is not None and isinstance(e, ssl.SSLCertVerificationError):
        return IonMeshUnavailable(
            f"{where} presented a certificate that does not verify "
            f"({(e.verify_message or str(e.reason)).rstrip('.')}): check ionmesh.ca_file "
            "and the host in ionmesh.url")
    if ssl is not None and isinstance(e, ssl.SSLError) and not isinstance(
            e, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):
        return IonMeshUnavailable(
            f"TLS with {where} failed ({e.reason or e}): check that the server speaks "
            f"https on port {port}")
    if isinstance(e, TimeoutError):
        if name == "connect":
            return IonMeshUnavailable(f"could not connect to {where} within "
                                      f"{timeout:g} s: check the path to it")
        return IonMeshUnavailable(f"{where} did not answer {name} within "
                                  f"{timeout:g} s")
    if isinstance(e, ConnectionRefusedError):
        return IonMeshUnavailable(f"{where} refused the connection: is IonMesh listening "
                                  f"on port {port}?")
    if isinstance(e, CLOSED_ERRORS):
        return IonMeshUnavailable(f"{where} closed the connection without answering {name}")
    if isinstance(e, Oversized):
        return IonMeshUnavailable(f"{where} sent {e} to {name}: not an IonMesh answer, "
                                  "left unread")
    if isinstance(e, http.client.HTTPException):
        return IonMeshUnavailable(f"{where} sent no valid HTTP answer to {name} "
                                  f"({type(e).__name__}: {e}): check ionmesh.url")
    if isinstance(e, OSError):
        if e.errno == errno.ENODEV:
            return IonMeshUnavailable(f"network device {bind_device!r} does not exist: "
                                      "is the modem's interface up?")
        if e.errno == errno.EPERM and (bind_device or mark):
            what = (f"binding to network device {bind_device!r}" if bind_device
                    else f"marking packets with {mark:#x}")
            return IonMeshError(f"{what} needs root (CAP_NET_RAW, CAP_NET_ADMIN): "
                                "run as root")
        if e.errno == errno.EACCES:
            return IonMeshUnavailable(f"the routing policy refuses the way to {where} "
                                      "(prohibit route): check the heartbeat path")
        if e.errno == errno.EADDRNOTAVAIL and source_address:
            return IonMeshUnavailable(f"source address {source_address} is not on "
                                      "this host: is the modem's interface up?")
        if e.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
            return IonMeshUnavailable(f"no route to {where}: check the heartbeat path")
        return IonMeshUnavailable(f"talking to {where} failed during {name}: "
                                  f"{e.strerror or e}")
    return IonMeshUnavailable(f"talking to {where} failed during {name}: {e}")


def resolve_addresses(host: str, port: int, connect_address: str | None,
                      source_address: str | None) -> list[tuple[Any, ...]]:
    """Where to connect: ``connect_address`` or ``host``'s addresses, of the family of
    ``source_address`` when there is one."""
    target = connect_address or host
    flags = socket.AI_NUMERICHOST if connect_address else 0
    try:
        infos = socket.getaddrinfo(target, port, 0, socket.SOCK_STREAM,
                                   socket.IPPROTO_TCP, flags)
    except socket.gaierror as e:
        if connect_address:
            raise IonMeshError(f"connect address {connect_address!r} is not an IP "
                               "address") from None
        raise IonMeshUnavailable(f"cannot resolve {host} ({e.strerror}): check "
                                 "ionmesh.url and DNS") from None
    if source_address:
        try:
            family = socket.getaddrinfo(source_address, 0, 0, socket.SOCK_STREAM,
                                        socket.IPPROTO_TCP, socket.AI_NUMERICHOST)[0][0]
        except socket.gaierror:
            raise IonMeshError(f"source address {source_address!r} is not an IP "
                               "address") from None
        infos = [info for info in infos if info[0] == family]
        if not infos:
            raise IonMeshUnavailable(f"{host} has no address of the family of "
                                     f"source address {source_address}")
    return infos
