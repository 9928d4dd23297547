"""The IonMesh client: register, heartbeat, unregister and discover (IONMESH.md).

A heartbeat rides an IoT SIM whose plan may be 10 MB a month, so the client
puts as few bytes on the wire as HTTP/1.1 allows:

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
* the request is one write of exactly ``Host``, ``Content-Type``,
  ``Content-Length`` and ``X-API-Key`` (when configured) plus compact JSON
  without empty fields. ``http.client.HTTPConnection`` would add
  ``Accept-Encoding`` and send headers and body as two TCP segments; so
  the request is built here and only the response goes through
  ``http.client.HTTPResponse``. ``User-Agent: remsim-supervisor/VERSION``
  rides on ``register-client`` and ``discover`` only, where the server
  operator learns the version at no monthly cost (see docs/heartbeat-bytes.md).
* no TCP keep-alive probes: they would cost bytes on a metered link.

The socket can be bound to a network device (``SO_BINDTODEVICE``, root
only) and/or a source address, carry a firewall mark (``SO_MARK``, root
only: the supervisor's policy rules route marked packets), and connected to an address the caller
resolved itself (``connect_address``) while Host, SNI and the certificate
check keep using the URL's host. HTTPS verifies the certificate and host
name against ``ca_file`` or the system store. ``timeout`` bounds a whole
call: connect, TLS handshake, request and response (a call that finds its
kept-alive connection dead gets a second timeout for the fresh one).

URLs: ``/api/backend/v1/remsim`` is appended to a URL without a path
(``http://ionmesh:5000``); a URL with a path (``https://h/ionmesh/v1``) is
used as the base as it stands. Without a port the scheme's (80, 443) is used.

Errors are :class:`IonMeshError` subclasses whose ``str()`` is one line
saying what to fix; ``answered`` tells a server's failure (it answered,
with an error, a redirect, nonsense, too much or too slowly: the path
works) from one that may be the path's (nothing came back). Numbers in
answers are integers of at most :data:`MAX_DIGITS` ASCII digits, anything
else is "not said". ``commands`` in a heartbeat answer are returned as
data and never executed here. The API key, and IMSI and ICCID in full, never
appear in a log line, an error or a repr.
"""

from __future__ import annotations

import errno
import http.client
import io
import json
import logging
import os
import re
import select
import socket
import struct
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import quote, urlsplit

from remsim_supervisor import __version__
from remsim_supervisor.log import mask

try:
    import ssl
except ImportError:  # pragma: no cover - python3-openssl not installed: http:// only
    ssl = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from remsim_supervisor.config import IonmeshConfig

__all__ = [
    "BASE_PATH",
    "DEFAULT_BANKD_PORT",
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

BASE_PATH = "/api/backend/v1/remsim"
DEFAULT_BANKD_PORT = 9999
SYSTEM_CA_FILE = "/etc/ssl/certs/ca-certificates.crt"
USER_AGENT = f"remsim-supervisor/{__version__}"
MAX_RESPONSE_BYTES = 64 * 1024  # IonMesh answers are tiny; more is not IonMesh
MAX_DIGITS = 12  # a number from the server longer than this is nonsense, not a number
MAX_KEPT_COMMANDS = 16  # of a heartbeat answer's ``commands``; the rest are only counted
_DEFAULT_PORTS = {"http": 80, "https": 443}
_SENSITIVE_KEYS = frozenset({"imsi", "iccid", "imei", "api_key"})


# --- what callers get ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Assignment:
    """The SIM-bank slot IonMesh assigned (``register-client``)."""

    bank_id: int | None
    slot_id: int | None
    iccid: str | None
    imsi: str | None
    bankd_host: str | None
    bankd_port: int
    mapping_mode: str | None
    heartbeat_interval: int | None
    note: str | None
    problems: tuple[str, ...] = ()  # fields present but unusable, for a warning

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Assignment:
        """Read a register-client answer; unknown fields are ignored, missing ones None,
        unusable ones None too (named in ``problems``)."""
        problems: list[str] = []
        host, port = parse_bankd_endpoint(_text(data.get("bankd_endpoint")))
        interval = _interval_field(data, "heartbeat_interval", problems)
        return cls(
            bank_id=_integer(data.get("bank_id")),
            slot_id=_integer(data.get("slot_id")),
            iccid=_text(data.get("iccid")),
            imsi=_text(data.get("imsi")),
            bankd_host=host,
            bankd_port=port,
            mapping_mode=_text(data.get("mapping_mode")),
            heartbeat_interval=interval,
            note=_text(data.get("note")),
            problems=tuple(problems),
        )

    def __repr__(self) -> str:
        return (f"Assignment(bank_id={self.bank_id!r}, slot_id={self.slot_id!r}, "
                f"iccid={mask(self.iccid)!r}, imsi={mask(self.imsi)!r}, "
                f"bankd_host={self.bankd_host!r}, bankd_port={self.bankd_port!r}, "
                f"mapping_mode={self.mapping_mode!r}, "
                f"heartbeat_interval={self.heartbeat_interval!r}, note={self.note!r})")


@dataclass(frozen=True)
class Exchange:
    """One HTTP request and its response as the socket saw them.

    ``bytes_sent``/``bytes_received`` count the HTTP messages, head and body
    (for HTTPS: before encryption), including a request that had to be sent
    again on a new connection. ``new_connection``: this call had to connect
    (TCP and, for HTTPS, TLS handshakes cost bytes beyond these counts).
    ``rtt_ms``: from sending the request to having the whole response,
    connecting excluded. ``local_address``: ``ip:port`` the socket used.
    ``stale_idle_s``: a kept-alive connection was found dead after this many
    seconds idle and the request went again on a fresh one (None: it was not).
    """

    status: int
    rtt_ms: float
    bytes_sent: int
    bytes_received: int
    new_connection: bool
    local_address: str | None
    body: dict[str, Any] | None
    stale_idle_s: float | None = None

    def __repr__(self) -> str:
        return (f"Exchange(status={self.status!r}, rtt_ms={self.rtt_ms:.1f}, "
                f"bytes_sent={self.bytes_sent!r}, bytes_received={self.bytes_received!r}, "
                f"new_connection={self.new_connection!r}, "
                f"local_address={self.local_address!r}, body={_masked(self.body)!r})")


@dataclass(frozen=True)
class HeartbeatResult:
    """An acknowledged heartbeat: ``next_interval`` (s) as the server asked, or None;
    ``commands`` as the server sent them (the first :data:`MAX_KEPT_COMMANDS`; how many
    there were in ``commands_total``), for the caller to log (never run); ``problems``:
    fields present but unusable, for a warning."""

    exchange: Exchange
    next_interval: int | None
    commands: tuple[Any, ...]
    commands_total: int = 0
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class Totals:
    """Counters since the client was created."""

    bytes_sent: int
    bytes_received: int
    connections: int
    requests: int


class IonMeshError(Exception):
    """IonMesh cannot be used; ``str()`` is one line saying what to fix.

    ``status`` is the HTTP status when the server answered; ``exchange`` the
    exchange that carried it (for its RTT and byte counts), when there was one.
    ``answered``: the server's bytes came back over the path (a status, or
    part of an answer too large, too slow or malformed): the path works and
    the trouble is the server's. False: nothing came back (no connection, a
    timeout or reset before any answer), which may be the path.
    """

    def __init__(self, message: str, *, status: int | None = None,
                 exchange: Exchange | None = None, answered: bool | None = None) -> None:
        super().__init__(_one_line(message))
        self.status = status
        self.exchange = exchange
        self.answered = status is not None if answered is None else answered


class NotRegistered(IonMeshError):
    """404 to a heartbeat: the server does not know this client; register again at once."""


class Unauthorized(IonMeshError):
    """401: the API key is missing or wrong."""


class IonMeshUnavailable(IonMeshError):
    """The path or the server is in trouble: no connection, timeout, reset, TLS
    failure, malformed answer, 5xx. Worth retrying, possibly over another path."""


# --- the protocol without I/O -------------------------------------------------------------------

def encode_json(payload: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON without None, empty strings and empty mappings/lists."""
    return json.dumps(_prune(payload), separators=(",", ":"), ensure_ascii=False).encode()


def encode_request(method: str, target: str, authority: str, body: bytes | None = None, *,
                   api_key: str | None = None, user_agent: str | None = None) -> bytes:
    """One HTTP/1.1 request, head and body, ready for a single write.

    HTTP/1.1 needs only Host; Content-Type tells the server the body is JSON
    (a Flask ``get_json()`` refuses it otherwise) and Content-Length frames it.
    """
    lines = [f"{method} {target} HTTP/1.1", f"Host: {authority}"]
    if user_agent:
        lines.append(f"User-Agent: {user_agent}")
    if body is not None:
        lines.append("Content-Type: application/json")
        lines.append(f"Content-Length: {len(body)}")
    if api_key:
        lines.append(f"X-API-Key: {api_key}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")
    return head + body if body is not None else head


def decode_body(raw: bytes, content_type: str) -> dict[str, Any] | None:
    """An answer's body as a JSON object, or None (empty, not JSON, not an object)."""
    if not raw or not ("json" in content_type.lower() or raw[:1] in (b"{", b"[")):
        return None
    try:
        parsed = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: "[[[[...": nesting too deep
        return None
    return parsed if isinstance(parsed, dict) else None


def read_heartbeat_answer(exchange: Exchange) -> HeartbeatResult:
    """An acknowledged heartbeat's answer, every field bounded; acknowledged even when
    the body is unreadable: the 200 is what counts."""
    body = exchange.body or {}
    problems: list[str] = []
    interval = _interval_field(body, "next_heartbeat_interval", problems)
    raw_commands = body.get("commands")
    if isinstance(raw_commands, list):
        # Data for the caller to log; nothing here ever runs server-supplied text.
        commands, total = tuple(raw_commands[:MAX_KEPT_COMMANDS]), len(raw_commands)
    else:
        commands, total = (), 0
        if raw_commands is not None:
            problems.append(f"commands is a {type(raw_commands).__name__}, not a list: ignored")
    return HeartbeatResult(exchange, interval, commands, total, tuple(problems))


def parse_bankd_endpoint(text: str | None) -> tuple[str | None, int]:
    """``http://host:port``, ``host:port``, ``host`` or ``[v6]:port`` -> (host, port).

    The port is 9999 when absent or unreadable; no host gives (None, 9999).
    """
    if not text or not text.strip():
        return None, DEFAULT_BANKD_PORT
    value = text.strip()
    if "://" not in value:
        value = "//" + value  # urlsplit reads host:port only after //
    try:
        parts = urlsplit(value)
        host = parts.hostname
        port = parts.port
    except ValueError:
        return None, DEFAULT_BANKD_PORT
    return (host or None), (port or DEFAULT_BANKD_PORT)


def _prune(value: Any) -> Any:
    if isinstance(value, Mapping):
        pruned = {str(k): _prune(v) for k, v in value.items()}
        return {k: v for k, v in pruned.items() if not _empty(v)}
    if isinstance(value, (list, tuple)):
        return [_prune(v) for v in value]
    return value


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, (str, dict, list)) and not value)


_DIGITS = re.compile(rf"-?[0-9]{{1,{MAX_DIGITS}}}")
_LIMIT = 10**MAX_DIGITS


def _integer(value: Any) -> int | None:
    """An integer of at most :data:`MAX_DIGITS` ASCII digits (a JSON number, an
    integral float, or such a string); anything else is None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if -_LIMIT < value < _LIMIT else None
    if isinstance(value, str):
        text = value.strip()
        return int(text) if len(text) <= MAX_DIGITS + 1 and _DIGITS.fullmatch(text) else None
    if isinstance(value, float) and value.is_integer() and -_LIMIT < value < _LIMIT:
        return int(value)
    return None


def _interval(value: Any) -> int | None:
    """A positive interval in seconds; anything else is "not said" (None)."""
    number = _integer(value)
    return number if number is not None and number > 0 else None


def _interval_field(data: Mapping[str, Any], key: str, problems: list[str]) -> int | None:
    """``data[key]`` as an interval; a value that is there but unusable is named in
    ``problems`` (shortened: the server chose it)."""
    if key not in data or data[key] is None:
        return None
    number = _interval(data[key])
    if number is None:
        problems.append(f"{key} {_one_line(repr(data[key]), 40)} is not a positive number "
                        f"of at most {MAX_DIGITS} digits: ignored")
    return number


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, (dict, list, bool)):
        return None
    text = str(value)
    return text if text else None


def _masked(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: (mask(v) if str(k).lower() in _SENSITIVE_KEYS else _masked(v))
                for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v) for v in value]
    return value


def _one_line(text: str, limit: int = 300) -> str:
    line = re.sub(r"\s+", " ", text).strip()
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _server_message(data: dict[str, Any] | None, reason: str) -> str:
    if data is not None:
        for key in ("message", "error", "detail"):
            if isinstance(data.get(key), str) and data[key].strip():
                return _one_line(data[key], 120)
    return _one_line(reason, 120)


def _header_safe(value: str, what: str) -> str:
    # A CR, LF or other control character would end the header early: refuse it.
    if not value.isascii() or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise IonMeshError(f"{what} holds characters an HTTP header cannot carry: "
                           f"use printable ASCII only")
    return value


def _format_address(address: Any) -> str | None:
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return None


# --- I/O ----------------------------------------------------------------------------------------

class _Meter:
    """Bytes one attempt put on and took off the socket."""

    def __init__(self) -> None:
        self.sent = 0
        self.received = 0


def _set_deadline(sock: socket.socket, deadline: float) -> None:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("timed out")
    sock.settimeout(remaining)


class _MeteredReader(io.RawIOBase):
    """The socket as ``HTTPResponse`` reads it: every byte counted, every read
    bounded by the call's deadline (a trickling server cannot stretch it)."""

    def __init__(self, sock: socket.socket, meter: _Meter, deadline: float) -> None:
        super().__init__()
        self._sock = sock
        self._meter = meter
        self._deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        _set_deadline(self._sock, self._deadline)
        n = self._sock.recv_into(buffer)
        self._meter.received += n
        return n


class _MeteredSocket:
    """Just enough of a socket for ``http.client.HTTPResponse`` (it calls ``makefile``)."""

    def __init__(self, sock: socket.socket, meter: _Meter, deadline: float) -> None:
        self._reader = _MeteredReader(sock, meter, deadline)

    def makefile(self, mode: str = "rb", *args: Any, **kwargs: Any) -> io.BufferedReader:
        return io.BufferedReader(self._reader)


class _Oversized(http.client.HTTPException):
    """The answer is larger than any IonMesh answer: not read to its end."""


# Errors by which a kept-alive connection shows that the server closed it.
_CLOSED_ERRORS: tuple[type[BaseException], ...] = (
    ConnectionResetError, BrokenPipeError, ConnectionAbortedError, http.client.RemoteDisconnected,
) + ((ssl.SSLEOFError, ssl.SSLZeroReturnError) if ssl is not None else ())


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
        if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
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
        self._api_key = _header_safe(api_key, "ionmesh.api_key") if api_key else None
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = port or _DEFAULT_PORTS[parts.scheme]
        host_text = f"[{self.host}]" if ":" in self.host else self.host
        self.authority = _header_safe(
            host_text if self.port == _DEFAULT_PORTS[self.scheme] else f"{host_text}:{self.port}",
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
                    reused = self._sock is not None and self._idle_connection_usable()
                    idle = self.idle_s() if reused else None
                    if not reused:
                        self._drop()
                        self._connect(deadline)
                        new_connection = True
                    assert self._sock is not None
                    local = _format_address(self._sock.getsockname())
                    meter = _Meter()
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
                    meter: _Meter) -> tuple[int, str, dict[str, Any] | None]:
        _set_deadline(sock, deadline)
        sock.sendall(request)
        meter.sent += len(request)
        response = http.client.HTTPResponse(
            _MeteredSocket(sock, meter, deadline), method=method)  # type: ignore[arg-type]
        try:
            response.begin()
            if response.length is not None and response.length > MAX_RESPONSE_BYTES:
                # Not read at all: every byte of it would be paid for on the IoT plan.
                raise _Oversized(f"an answer of {response.length} bytes, more than "
                                 f"{MAX_RESPONSE_BYTES}")
            raw = response.read(MAX_RESPONSE_BYTES + 1)
            complete = response.isclosed()
        finally:
            response.close()
        if len(raw) > MAX_RESPONSE_BYTES:
            raise _Oversized(f"an answer larger than {MAX_RESPONSE_BYTES} bytes")
        if ssl is not None and isinstance(sock, ssl.SSLSocket):
            # Kept for a short (resumed) handshake when we have to reconnect; it matters
            # most with a server that closes every connection.
            self._tls_session = sock.session
        if response.will_close or not complete:
            self._drop()  # the server ends the connection (or we left bytes unread on it)
        data = decode_body(raw, response.getheader("Content-Type") or "")
        return response.status, response.reason, data

    def _check(self, name: str, exchange: Exchange) -> None:
        status = exchange.status
        if 200 <= status < 300:
            return
        message = _server_message(exchange.body, http.client.responses.get(status, "error"))
        where = f"IonMesh at {self.origin}"
        kw: dict[str, Any] = {"status": status, "exchange": exchange}
        if status == 401:
            if self._api_key:
                raise Unauthorized(f"{where} refused the API key (401): check ionmesh.api_key",
                                   **kw)
            raise Unauthorized(f"{where} requires an API key (401): set ionmesh.api_key", **kw)
        if status == 404 and name == "heartbeat":
            raise NotRegistered(f"{where} does not know client {self.client_id!r} "
                                f"(404: {message}): register again", **kw)
        if status == 404 and name == "register-client" and self.mapping_mode == "KI_PROXY_SWSIM":
            raise IonMeshError(f"{where} has no KI pool for carrier {self.mcc_mnc} "
                               f"(404: {message}): check ionmesh.mcc_mnc", **kw)
        if status == 404 and name != "unregister":
            raise IonMeshError(f"{where} has no {name} endpoint under {self.base_path} "
                               f"(404: {message}): check the path of ionmesh.url", **kw)
        if status == 400:
            hint = {"register-client": "check ionmesh.mapping_mode, ionmesh.mcc_mnc and "
                                       "ionmesh.tenant_id",
                    "heartbeat": "check ionmesh.client_id"}.get(name, "check ionmesh.client_id")
            raise IonMeshError(f"{where} rejected {name} (400: {message}): {hint}", **kw)
        if status == 503 and name == "register-client":
            raise IonMeshUnavailable(f"{where} has no SIM slot free for {self.client_id!r} "
                                     f"(503: {message}): retrying later", **kw)
        if status >= 500:
            raise IonMeshUnavailable(f"{where} failed {name} ({status}: {message}): "
                                     "server trouble, retrying later", **kw)
        raise IonMeshError(f"{where} answered {status} to {name} ({message})", **kw)

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
        target = self.connect_address or self.host
        flags = socket.AI_NUMERICHOST if self.connect_address else 0
        try:
            infos = socket.getaddrinfo(target, self.port, 0, socket.SOCK_STREAM,
                                       socket.IPPROTO_TCP, flags)
        except socket.gaierror as e:
            if self.connect_address:
                raise IonMeshError(f"connect address {self.connect_address!r} is not an IP "
                                   "address") from None
            raise IonMeshUnavailable(f"cannot resolve {self.host} ({e.strerror}): check "
                                     "ionmesh.url and DNS") from None
        if self.source_address:
            try:
                family = socket.getaddrinfo(self.source_address, 0, 0, socket.SOCK_STREAM,
                                            socket.IPPROTO_TCP, socket.AI_NUMERICHOST)[0][0]
            except socket.gaierror:
                raise IonMeshError(f"source address {self.source_address!r} is not an IP "
                                   "address") from None
            infos = [info for info in infos if info[0] == family]
            if not infos:
                raise IonMeshUnavailable(f"{self.host} has no address of the family of "
                                         f"source address {self.source_address}")
        return infos

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
                _set_deadline(sock, deadline)
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
                      _format_address(sock.getsockname()), self._via())
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
        _set_deadline(sock, deadline)
        # The same context every time, so the session of the last connection always fits it.
        return self._tls_context.wrap_socket(  # type: ignore[no-any-return]
            sock, server_hostname=self.host, session=self._tls_session)

    def _idle_connection_usable(self) -> bool:
        """False when the server closed the idle connection (or sent anything at all,
        such as a 408 before closing): then we reconnect before sending."""
        sock = self._sock
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

    def _drop(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    def _transport_error(self, e: BaseException, name: str) -> IonMeshError:
        where = f"IonMesh at {self.origin}{self._via()}"
        if ssl is not None and isinstance(e, ssl.SSLCertVerificationError):
            return IonMeshUnavailable(
                f"{where} presented a certificate that does not verify "
                f"({(e.verify_message or str(e.reason)).rstrip('.')}): check ionmesh.ca_file "
                "and the host in ionmesh.url")
        if ssl is not None and isinstance(e, ssl.SSLError) and not isinstance(
                e, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):
            return IonMeshUnavailable(
                f"TLS with {where} failed ({e.reason or e}): check that the server speaks "
                f"https on port {self.port}")
        if isinstance(e, TimeoutError):
            if name == "connect":
                return IonMeshUnavailable(f"could not connect to {where} within "
                                          f"{self.timeout:g} s: check the path to it")
            return IonMeshUnavailable(f"{where} did not answer {name} within "
                                      f"{self.timeout:g} s")
        if isinstance(e, ConnectionRefusedError):
            return IonMeshUnavailable(f"{where} refused the connection: is IonMesh listening "
                                      f"on port {self.port}?")
        if isinstance(e, _CLOSED_ERRORS):
            return IonMeshUnavailable(f"{where} closed the connection without answering {name}")
        if isinstance(e, _Oversized):
            return IonMeshUnavailable(f"{where} sent {e} to {name}: not an IonMesh answer, "
                                      "left unread")
        if isinstance(e, http.client.HTTPException):
            return IonMeshUnavailable(f"{where} sent no valid HTTP answer to {name} "
                                      f"({type(e).__name__}: {e}): check ionmesh.url")
        if isinstance(e, OSError):
            if e.errno == errno.ENODEV:
                return IonMeshUnavailable(f"network device {self.bind_device!r} does not exist: "
                                          "is the modem's interface up?")
            if e.errno == errno.EPERM and (self.bind_device or self.mark):
                what = (f"binding to network device {self.bind_device!r}" if self.bind_device
                        else f"marking packets with {self.mark:#x}")
                return IonMeshError(f"{what} needs root (CAP_NET_RAW, CAP_NET_ADMIN): "
                                    "run as root")
            if e.errno == errno.EACCES:
                return IonMeshUnavailable(f"the routing policy refuses the way to {where} "
                                          "(prohibit route): check the heartbeat path")
            if e.errno == errno.EADDRNOTAVAIL and self.source_address:
                return IonMeshUnavailable(f"source address {self.source_address} is not on "
                                          "this host: is the modem's interface up?")
            if e.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
                return IonMeshUnavailable(f"no route to {where}: check the heartbeat path")
            return IonMeshUnavailable(f"talking to {where} failed during {name}: "
                                      f"{e.strerror or e}")
        return IonMeshUnavailable(f"talking to {where} failed during {name}: {e}")
