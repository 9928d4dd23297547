"""The IonMesh protocol without sockets (IONMESH.md): requests, answers, errors.

What goes on the wire and what comes back, as bytes and values: the HTTP/1.1
request as one write (:func:`encode_request`, :func:`encode_json`), an
answer's body (:func:`decode_body`), the register and heartbeat answers
(:class:`Assignment`, :func:`read_heartbeat_answer`) and the error an HTTP
status means (:func:`status_error`). :mod:`remsim_supervisor.adapters.ionmesh`
carries these over a socket.

* the request is exactly ``Host``, ``Content-Type``, ``Content-Length`` and
  ``X-API-Key`` (when configured) plus compact JSON without empty fields;
  ``User-Agent: remsim-supervisor/VERSION`` rides on ``register-client`` and
  ``discover`` only, where the server operator learns the version at no
  monthly cost (see docs/heartbeat-bytes.md).
* numbers in answers are integers of at most :data:`MAX_DIGITS` ASCII
  digits, anything else is "not said"; ``commands`` in a heartbeat answer
  are returned as data (the first :data:`MAX_KEPT_COMMANDS`) and never run.
* errors are :class:`IonMeshError` subclasses whose ``str()`` is one line
  saying what to fix; ``answered`` tells a server's failure (it answered,
  with an error, a redirect, nonsense, too much or too slowly: the path
  works) from one that may be the path's (nothing came back).

The API key, and IMSI and ICCID in full, never appear in a log line, an
error or a repr.
"""

from __future__ import annotations

import http.client
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from remsim_supervisor import __version__
from remsim_supervisor.core.masking import mask

__all__ = [
    "BASE_PATH",
    "DEFAULT_BANKD_PORT",
    "DEFAULT_PORTS",
    "MAX_DIGITS",
    "MAX_KEPT_COMMANDS",
    "MAX_RESPONSE_BYTES",
    "USER_AGENT",
    "Assignment",
    "Exchange",
    "HeartbeatResult",
    "IonMeshError",
    "IonMeshUnavailable",
    "NotRegistered",
    "Peer",
    "Totals",
    "Unauthorized",
    "decode_body",
    "encode_json",
    "encode_request",
    "header_safe",
    "parse_bankd_endpoint",
    "read_heartbeat_answer",
    "status_error",
]

BASE_PATH = "/api/backend/v1/remsim"
DEFAULT_BANKD_PORT = 9999
USER_AGENT = f"remsim-supervisor/{__version__}"
MAX_RESPONSE_BYTES = 64 * 1024  # IonMesh answers are tiny; more is not IonMesh
MAX_DIGITS = 12  # a number from the server longer than this is nonsense, not a number
MAX_KEPT_COMMANDS = 16  # of a heartbeat answer's ``commands``; the rest are only counted
DEFAULT_PORTS = {"http": 80, "https": 443}
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


def header_safe(value: str, what: str) -> str:
    # A CR, LF or other control character would end the header early: refuse it.
    if not value.isascii() or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise IonMeshError(f"{what} holds characters an HTTP header cannot carry: "
                           f"use printable ASCII only")
    return value


@dataclass(frozen=True)
class Peer:
    """Who a call talked to, as the errors of :func:`status_error` name it."""

    origin: str
    base_path: str
    client_id: str
    mapping_mode: str
    mcc_mnc: str | None
    has_api_key: bool


def status_error(name: str, exchange: Exchange, peer: Peer) -> IonMeshError | None:
    """The error an answer to call ``name`` (``heartbeat``, ``register-client``, ...)
    means, or None for a 2xx."""
    status = exchange.status
    if 200 <= status < 300:
        return None
    message = _server_message(exchange.body, http.client.responses.get(status, "error"))
    where = f"IonMesh at {peer.origin}"
    kw: dict[str, Any] = {"status": status, "exchange": exchange}
    if status == 401:
        if peer.has_api_key:
            return Unauthorized(f"{where} refused the API key (401): check ionmesh.api_key", **kw)
        return Unauthorized(f"{where} requires an API key (401): set ionmesh.api_key", **kw)
    if status == 404 and name == "heartbeat":
        return NotRegistered(f"{where} does not know client {peer.client_id!r} "
                             f"(404: {message}): register again", **kw)
    if status == 404 and name == "register-client" and peer.mapping_mode == "KI_PROXY_SWSIM":
        return IonMeshError(f"{where} has no KI pool for carrier {peer.mcc_mnc} "
                            f"(404: {message}): check ionmesh.mcc_mnc", **kw)
    if status == 404 and name != "unregister":
        return IonMeshError(f"{where} has no {name} endpoint under {peer.base_path} "
                            f"(404: {message}): check the path of ionmesh.url", **kw)
    if status == 400:
        hint = {"register-client": "check ionmesh.mapping_mode, ionmesh.mcc_mnc and "
                                   "ionmesh.tenant_id",
                "heartbeat": "check ionmesh.client_id"}.get(name, "check ionmesh.client_id")
        return IonMeshError(f"{where} rejected {name} (400: {message}): {hint}", **kw)
    if status == 503 and name == "register-client":
        return IonMeshUnavailable(f"{where} has no SIM slot free for {peer.client_id!r} "
                                  f"(503: {message}): retrying later", **kw)
    if status >= 500:
        return IonMeshUnavailable(f"{where} failed {name} ({status}: {message}): "
                                  "server trouble, retrying later", **kw)
    return IonMeshError(f"{where} answered {status} to {name} ({message})", **kw)
