"""The IonMesh client: register, heartbeat, unregister and discover over HTTP (IONMESH.md).

What the requests and answers hold is :mod:`remsim_supervisor.core.ionmesh`;
this module carries them over a socket. A heartbeat rides an IoT SIM whose
plan may be 10 MB a month, so the client puts as few bytes on the wire as
HTTP/1.1 allows:

* one persistent connection (keep-alive), reused for every call: a new TCP
  connection costs a handshake and a teardown (~400 bytes), a TLS one
  several kB more. An idle connection the server closed is noticed before
  it is used (and a TLS session is resumed on reconnect); one that dies
  while a request is on it, before any byte of an answer came back (the
  server closed it, or a carrier forgot the idle flow and the request
  vanished), is re-opened and the request sent once more with a timeout of
  its own (every IonMesh call is safe to resend: re-registration returns the
  same assignment); ``Exchange.stale_idle_s`` says how long it had been
  idle. A failure on a fresh connection is reported, not retried.
* an answer is read only up to :data:`MAX_RESPONSE_BYTES` (a larger
  ``Content-Length`` is not read at all), within the call's timeout.
* the request is one write (:func:`encode_request`; ``HTTPConnection`` would
  send two segments); only the response goes through ``HTTPResponse``.
* no TCP keep-alive probes: they would cost bytes on a metered link.

The socket can be bound to a device (``SO_BINDTODEVICE``) and/or a source
address, carry a firewall mark (``SO_MARK``: the supervisor's rules route
marked packets), and connect to an address resolved by the caller
(``connect_address``) while Host, SNI and the certificate check use the
URL's host; HTTPS verifies against ``ca_file`` or the system store.
``timeout`` bounds a whole call (one that finds its kept-alive connection
dead gets a second timeout for the fresh one).

URLs: ``/api/backend/v1/remsim`` is appended to a URL without a path
(``http://ionmesh:5000``); a URL with a path (``https://h/ionmesh/v1``) is
used as the base as it stands. Without a port the scheme's (80, 443) is used.
The protocol's names are importable from here too, for the client's callers.
"""

from __future__ import annotations

import errno
import http.client
import logging
import os
import socket
import struct
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import quote, urlsplit

from remsim_supervisor.adapters.ionmesh_socket import (
    Meter,
    MeteredSocket,
    Oversized,
    format_address,
    idle_connection_usable,
    resolve_addresses,
    set_deadline,
    transport_error,
)
from remsim_supervisor.core.ionmesh import (
    BASE_PATH,
    DEFAULT_BANKD_PORT,
    DEFAULT_PORTS,
    MAX_DIGITS,
    MAX_KEPT_COMMANDS,
    MAX_RESPONSE_BYTES,
    USER_AGENT,
    Assignment,
    Exchange,
    HeartbeatResult,
    IonMeshError,
    IonMeshUnavailable,
    NotRegistered,
    Peer,
    Totals,
    Unauthorized,
    decode_body,
    encode_json,
    encode_request,
    header_safe,
    parse_bankd_endpoint,
    read_heartbeat_answer,
    status_error,
)
from remsim_supervisor.core.masking import mask

try:
    import ssl
except ImportError:  # pragma: no cover - python3-openssl not installed: http:// only
    ssl = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from remsim_supervisor.config import IonmeshConfig

__all__ = [
    "BASE_PATH",
    "DEFAULT_BANKD_PORT",
    "MAX_DIGITS",
    "MAX_KEPT_COMMANDS",
    "MAX_RESPONSE_BYTES",
    "SYSTEM_CA_FILE",
    "Assignment",
    "Exchange",
    "HeartbeatResult",
    "IonMeshClient",
    "IonMeshError",
    "IonMeshUnavailable",
    "NotRegistered",
    "Totals",
    "Unauthorized",
    "decode_body",
    "encode_json",
    "encode_request",
    "parse_bankd_endpoint",
    "read_heartbeat_answer",
]

log = logging.getLogger(__name__)

SYSTEM_CA_FILE = "/etc/ssl/certs/ca-certificates.crt"


class IonMeshClient:
    """One router's conversation with IonMesh over one kept-alive connection.

    Thread-safe: calls are serialised on the connection. ``close()`` may be
    called from another thread; it cuts a call in progress short.
    """

    def __init__(self, url: str, client_id: str, *, tenant_id: int = 1,
                 mapping_mode: str = "ONE_TO_ONE_SWSIM", mcc_mnc: str | None = None,
                 api_key: str | None = None, timeout: float = 10.0, ca_file: str | None = None,
                 bind_device: str | None = None, source_address: str | None = None,
                 connect_address: str | None = None, mark: int | None = None) -> None:
        try:
            parts = urlsplit(url.strip())
            port = parts.port
        except ValueError as e:
            raise IonMeshError(f"ionmesh.url {url!r} is not a valid URL ({e}): "
                               "write it as http://HOST:5000") from None
        if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
            raise IonMeshError(f"ionmesh.url {url!r} must be http://HOST:PORT or "
                               "https://HOST:PORT")
        if parts.scheme == "https" and ssl is None:  # pragma: no cover - router without ssl
            raise IonMeshError("https needs the Python ssl module: install python3-openssl")
        if not client_id:
            raise IonMeshError("ionmesh.client_id is empty: set it (default: the hostname)")
        if timeout <= 0:
            raise IonMeshError(f"ionmesh.timeout must be positive, not {timeout}")
        self.client_id = client_id
        self.tenant_id = tenant_id
        self.mapping_mode = mapping_mode
        self.mcc_mnc = mcc_mnc or None
        self.timeout = float(timeout)
        self.ca_file = ca_file or None
        self.bind_device = bind_device or None
        self.source_address = source_address or None
        self.connect_address = connect_address or None
        self.mark = mark or None
        self._api_key = header_safe(api_key, "ionmesh.api_key") if api_key else None
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = port or DEFAULT_PORTS[parts.scheme]
        host_text = f"[{self.host}]" if ":" in self.host else self.host
        self.authority = header_safe(
            host_text if self.port == DEFAULT_PORTS[self.scheme] else f"{host_text}:{self.port}",
            "ionmesh.url")
        self.origin = f"{self.scheme}://{host_text}:{self.port}"
        # percent-encoded as a request line needs it; '%' kept for a path already encoded
        path = quote(parts.path.rstrip("/"), safe="/%:@!$&'()*+,;=-._~")
        self.base_path = path if path else BASE_PATH
        self.base_url = self.origin + self.base_path

        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._tls_context: Any = None
        self._tls_session: Any = None
        self._generation = 0  # close() bumps it: a call it cut short is not retried
        self._bytes_sent = 0
        self._bytes_received = 0
        self._connections = 0
        self._requests = 0
        self._last_used: float | None = None  # when the connection last carried an answer

    @classmethod
    def from_config(cls, cfg: IonmeshConfig, **kw: Any) -> IonMeshClient:
        """A client for the ``ionmesh`` section; ``kw`` adds or overrides arguments
        (``bind_device``, ``source_address``, ``connect_address``, ...)."""
        args: dict[str, Any] = {
            "tenant_id": cfg.tenant_id, "mapping_mode": cfg.mapping_mode,
            "mcc_mnc": cfg.mcc_mnc, "api_key": cfg.api_key, "timeout": cfg.timeout,
            "ca_file": cfg.ca_file,
        }
        args.update(kw)
        return cls(cfg.url, cfg.client_id, **args)

    def __repr__(self) -> str:
        key = mask(self._api_key) if self._api_key else None
        return (f"IonMeshClient(url={self.base_url!r}, client_id={self.client_id!r}, "
                f"api_key={key!r}, bind_device={self.bind_device!r})")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def totals(self) -> Totals:
        return Totals(self._bytes_sent, self._bytes_received, self._connections, self._requests)

    # --- the four calls -------------------------------------------------------------------------

    def register(self, hardware_info: Mapping[str, str] | None = None) -> Assignment:
        """POST /register-client; raises IonMeshError (400, 404: no KI pool),
        IonMeshUnavailable (503: no slot free; transport), Unauthorized."""
        payload: dict[str, Any] = {
            "client_id": self.client_id,
            "mapping_mode": self.mapping_mode,
            "tenant_id": self.tenant_id,
            "mcc_mnc": self.mcc_mnc,
            "hardware_info": dict(hardware_info) if hardware_info else None,
        }
        exchange = self._call("POST", "/register-client", payload, user_agent=True)
        if exchange.body is None:
            raise IonMeshUnavailable(
                f"IonMesh at {self.origin} answered register-client without a JSON object: "
                "check that ionmesh.url points to IonMesh", status=exchange.status,
                exchange=exchange)
        try:
            assignment = Assignment.from_json(exchange.body)
        except Exception as e:  # a shape nobody foresaw: the server's fault, not ours
            raise IonMeshUnavailable(
                f"IonMesh at {self.origin} answered register-client with an unreadable "
                f"assignment ({type(e).__name__})", status=exchange.status,
                exchange=exchange) from None
        log.debug("registered %s: bank %s slot %s, ICCID %s, IMSI %s, bankd %s:%s%s",
                  self.client_id, assignment.bank_id, assignment.slot_id,
                  mask(assignment.iccid), mask(assignment.imsi), assignment.bankd_host,
                  assignment.bankd_port, f" ({assignment.note})" if assignment.note else "")
        return assignment

    def heartbeat(self, status: str = "active", stats: Mapping[str, Any] | None = None,
                  modem_info: Mapping[str, Any] | None = None) -> HeartbeatResult:
        """POST /heartbeat; an HTTP 200 is the acknowledgement the grace period counts.

        Raises NotRegistered on 404 (register again at once), Unauthorized,
        IonMeshUnavailable (transport, 5xx), IonMeshError (400 and the rest).
        """
        payload = {"client_id": self.client_id, "status": status, "stats": stats,
                   "modem_info": modem_info}
        exchange = self._call("POST", "/heartbeat", payload)
        return read_heartbeat_answer(exchange)

    def unregister(self) -> bool:
        """DELETE /unregister/<client_id>: True when done, False when the server
        did not know this client (404; also what a resent DELETE may get when the
        first one was carried out but its answer lost)."""
        try:
            self._call("DELETE", "/unregister/" + quote(self.client_id, safe=""))
        except IonMeshError as e:
            if e.status == 404:
                return False
            raise
        return True

    def discover(self) -> dict[str, Any]:
        """GET /discover: service, version, capabilities, supported_mapping_modes, ..."""
        exchange = self._call("GET", "/discover", user_agent=True)
        if exchange.body is None:
            raise IonMeshUnavailable(
                f"IonMesh at {self.origin} answered discover without a JSON object: "
                "check that ionmesh.url points to IonMesh", status=exchange.status,
                exchange=exchange)
        return exchange.body

    def idle_s(self) -> float | None:
        """Seconds since the kept-alive connection last carried an answer; None without one."""
        if self._sock is None or self._last_used is None:
            return None
        return time.monotonic() - self._last_used

    def close(self, *, abort: bool = False) -> None:
        """Close the connection (the next call opens a new one). ``abort``: with a single
        reset rather than a FIN the kernel would keep sending into a flow the carrier
        forgot (it costs bytes on a metered link)."""
        sock = self._sock
        self._generation += 1
        if sock is not None and abort:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        elif sock is not None:
            # shutdown() wakes a call blocked in recv() on another thread; close() would not.
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        with self._lock:
            self._drop()

    # --- one call: request, answer, status ------------------------------------------------------

    def _call(self, method: str, path: str, payload: Mapping[str, Any] | None = None, *,
              user_agent: bool = False) -> Exchange:
        body = encode_json(payload) if payload is not None else None
        request = encode_request(method, self.base_path + path, self.authority, body,
                                 api_key=self._api_key,
                                 user_agent=USER_AGENT if user_agent else None)
        name = path.strip("/").split("/")[0]
        exchange = self._exchange(method, request, name)
        self._check(name, exchange)
        return exchange

    def _exchange(self, method: str, request: bytes, name: str) -> Exchange:
        with self._lock:
            deadline = time.monotonic() + self.timeout
            generation = self._generation
            sent = received = 0
            new_connection = False
            stale_idle: float | None = None
            self._requests += 1
            try:
                while True:
                    reused = self._sock is not None and idle_connection_usable(self._sock)
                    idle = self.idle_s() if reused else None
                    if not reused:
                        self._drop()
                        self._connect(deadline)
                        new_connection = True
                    assert self._sock is not None
                    local = format_address(self._sock.getsockname())
                    meter = Meter()
                    started = time.monotonic()
                    try:
                        status, reason, data = self._round_trip(self._sock, request, method,
                                                                deadline, meter)
                    except (OSError, http.client.HTTPException, ValueError) as e:
                        sent, received = sent + meter.sent, received + meter.received
                        self._drop()
                        if reused and meter.received == 0 and generation == self._generation:
                            # A kept-alive connection that died idle: the server closed
                            # it, or a carrier forgot the flow (then the request vanished
                            # and timed out). Once more on a fresh connection, with a
                            # timeout of its own, before anyone judges the path.
                            log.debug("%s: the kept-alive connection is dead (%s after %.0f s "
                                      "idle); sending again on a new one", name,
                                      type(e).__name__, idle or 0.0)
                            stale_idle = idle
                            deadline = time.monotonic() + self.timeout
                            continue
                        error = self._transport_error(e, name)
                        error.answered = meter.received > 0
                        raise error from e
                    rtt_ms = (time.monotonic() - started) * 1000.0
                    sent, received = sent + meter.sent, received + meter.received
                    self._last_used = time.monotonic()
                    break
            finally:
                self._bytes_sent += sent
                self._bytes_received += received
        exchange = Exchange(status, rtt_ms, sent, received, new_connection, local, data,
                            stale_idle)
        log.debug("%s: %d %s in %.1f ms, %d bytes out, %d in%s", name, status, reason, rtt_ms,
                  sent, received, " (new connection)" if new_connection else "")
        return exchange

    def _round_trip(self, sock: socket.socket, request: bytes, method: str, deadline: float,
                    meter: Meter) -> tuple[int, str, dict[str, Any] | None]:
        set_deadline(sock, deadline)
        sock.sendall(request)
        meter.sent += len(request)
        response = http.client.HTTPResponse(
            MeteredSocket(sock, meter, deadline), method=method)  # type: ignore[arg-type]
        try:
            response.begin()
            if response.length is not None and response.length > MAX_RESPONSE_BYTES:
                # Not read at all: every byte of it would be paid for on the IoT plan.
                raise Oversized(f"an answer of {response.length} bytes, more than "
                                 f"{MAX_RESPONSE_BYTES}")
            raw = response.read(MAX_RESPONSE_BYTES + 1)
            complete = response.isclosed()
        finally:
            response.close()
        if len(raw) > MAX_RESPONSE_BYTES:
            raise Oversized(f"an answer larger than {MAX_RESPONSE_BYTES} bytes")
        if ssl is not None and isinstance(sock, ssl.SSLSocket):
            # Kept for a short (resumed) handshake when we have to reconnect; it matters
            # most with a server that closes every connection.
            self._tls_session = sock.session
        if response.will_close or not complete:
            self._drop()  # the server ends the connection (or we left bytes unread on it)
        data = decode_body(raw, response.getheader("Content-Type") or "")
        return response.status, response.reason, data


    def _check(self, name: str, exchange: Exchange) -> None:
        error = status_error(name, exchange, Peer(
            self.origin, self.base_path, self.client_id, self.mapping_mode, self.mcc_mnc,
            self._api_key is not None))
        if error is not None:
            raise error

    # --- the connection -------------------------------------------------------------------------

    def _via(self) -> str:
        parts = []
        if self.connect_address:
            parts.append(f"at {self.connect_address}")
        if self.bind_device:
            parts.append(f"via {self.bind_device}")
        if self.mark:
            parts.append(f"mark {self.mark:#x}")
        if self.source_address:
            parts.append(f"from {self.source_address}")
        return f" ({' '.join(parts)})" if parts else ""

    def _addresses(self) -> list[tuple[Any, ...]]:
        return resolve_addresses(self.host, self.port, self.connect_address, self.source_address)

    def _connect(self, deadline: float) -> None:
        last: OSError | None = None
        for family, type_, proto, _, sockaddr in self._addresses():
            sock = socket.socket(family, type_, proto)
            try:
                if self.bind_device:
                    option = getattr(socket, "SO_BINDTODEVICE", 25)
                    sock.setsockopt(socket.SOL_SOCKET, option, self.bind_device.encode())
                if self.mark:
                    sock.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_MARK", 36),
                                    self.mark)
                if self.source_address:
                    sock.bind((self.source_address, 0))
                # One write per request: never let it wait for an ACK (Nagle).
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                set_deadline(sock, deadline)
                sock.connect(sockaddr)
                if self.scheme == "https":
                    sock = self._wrap_tls(sock, deadline)
            except OSError as e:
                sock.close()
                if (ssl is not None and isinstance(e, ssl.SSLError)) or e.errno in (
                        errno.EPERM, errno.ENODEV, errno.EADDRNOTAVAIL):
                    # the next address would fail the same way
                    raise self._transport_error(e, "connect") from e
                last = e
                continue
            except BaseException:
                sock.close()
                raise
            self._sock = sock
            self._connections += 1
            log.debug("connected to IonMesh at %s from %s%s", self.origin,
                      format_address(sock.getsockname()), self._via())
            return
        assert last is not None
        raise self._transport_error(last, "connect") from last

    def _wrap_tls(self, sock: socket.socket, deadline: float) -> socket.socket:
        if self._tls_context is None:
            cafile = self.ca_file or (SYSTEM_CA_FILE if os.path.exists(SYSTEM_CA_FILE) else None)
            try:
                self._tls_context = ssl.create_default_context(cafile=cafile)
            except (OSError, ssl.SSLError) as e:
                raise IonMeshError(f"cannot read CA certificates from {cafile} ({e}): "
                                   "check ionmesh.ca_file") from None
        set_deadline(sock, deadline)
        # The same context every time, so the session of the last connection always fits it.
        return self._tls_context.wrap_socket(  # type: ignore[no-any-return]
            sock, server_hostname=self.host, session=self._tls_session)

    def _drop(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    def _transport_error(self, e: BaseException, name: str) -> IonMeshError:
        return transport_error(e, name, where=f"IonMesh at {self.origin}{self._via()}",
                               timeout=self.timeout, port=self.port,
                               bind_device=self.bind_device, mark=self.mark,
                               source_address=self.source_address)
