"""A fake IonMesh: the API of IONMESH.md on a real HTTP/1.1 server, for tests and the lab.

It speaks real HTTP over real sockets (stdlib ``ThreadingHTTPServer`` with
``protocol_version = "HTTP/1.1"``, so connections are kept alive), optionally
over TLS, so a client is tested down to its bytes on the wire:

* ``POST /register-client``: validates as the real server documents it
  (client_id, mapping_mode, tenant_id, ``mcc_mnc`` required for
  ``KI_PROXY_SWSIM``, optional KI pools per carrier -> 404), assigns a slot
  per client (bank 1, slots 0..N-1; virtual slots 900-999 in KI mode; 503
  when none is free); re-registration returns the same assignment with a
  ``note``.
* ``POST /heartbeat``: 404 "Client not registered" for unknown clients, else
  ``next_heartbeat_interval`` and ``commands``.
* ``DELETE /unregister/<client_id>``, ``GET /discover``.
* ``X-API-Key`` enforced (401) when the server has a key.

Test knobs, all thread-safe: :meth:`forget`, :meth:`fail_next`,
:meth:`hangup_next` (read a request, close without answering),
:meth:`set_delay`, :meth:`drop_connections`, :meth:`set_fault` (a hostile
or broken server until :meth:`clear_fault`: a status such as 500 or a 404
to every heartbeat, a redirect, an answer that is not JSON, a huge answer
streamed without ever being held in memory, an answer dripping out a byte
at a time), ``keepalive_timeout`` (close
idle connections as a reverse proxy would), ``keep_alive=False`` (close after
every answer, as a server without keep-alive does), and the attributes
``heartbeat_interval``, ``next_interval`` and ``commands``. Every request is
recorded (:class:`Recorded`: method, path, client address, headers, JSON
body, arrival time on the monotonic clock, the status answered);
:meth:`heartbeats` and :meth:`last_ack` read them per client.

A response goes out in one write (head and body together, as nginx sends
it), with the ``Server`` and ``Date`` headers Python's server adds.

:func:`write_lab_pki` makes a throw-away CA and server certificate with the
``openssl`` command line for the https cases.

Lab use: ``python -m remsim_lab.ionmesh_server --listen
HOST:PORT [--api-key K] [--interval 60] [--cert F --key F]`` prints its URL
on stdout, logs each request on stderr and runs until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import hmac
import ipaddress
import json
import logging
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import unquote, urlsplit

log = logging.getLogger(__name__)

BASE_PATH = "/api/backend/v1/remsim"
MAPPING_MODES = ("ONE_TO_ONE_SWSIM", "ONE_TO_ONE_VSIM", "KI_PROXY_SWSIM")
STATUSES = ("active", "warning", "error")
KI_SLOTS = range(900, 1000)
MAX_BODY = 1024 * 1024
BANK_ID = 1


@dataclass(frozen=True)
class Recorded:
    """One request as the server received it. ``status`` is what it answered
    (0: it hung up without answering)."""

    method: str
    path: str
    client: tuple[str, int]
    headers: tuple[tuple[str, str], ...]
    body: dict[str, Any] | None
    time: float
    status: int
    raw_body: bytes = b""
    tls_resumed: bool | None = None

    def header(self, name: str) -> str | None:
        """The value of a header (case-insensitive), or None."""
        wanted = name.lower()
        return next((v for k, v in self.headers if k.lower() == wanted), None)


@dataclass(frozen=True)
class Fault:
    """A lasting misbehaviour of the server (:meth:`IonMeshServer.set_fault`)."""

    kind: str  # "status", "redirect", "garbage", "huge", "drip"
    status: int = 500
    route: str | None = None  # "/heartbeat": only there; None: every request
    location: str | None = None  # of a redirect
    size: int = 200 * 1024 * 1024  # of a huge answer
    declare_length: bool = False  # a huge answer with its Content-Length (else until close)
    rate: float = 1.0  # bytes per second of a drip


FAULT_KINDS = ("status", "redirect", "garbage", "huge", "drip")


@dataclass
class _Client:
    client_id: str
    mapping_mode: str
    tenant_id: int
    mcc_mnc: str | None
    slot_id: int
    iccid: str
    imsi: str
    hardware_info: dict[str, Any] | None = None
    last_status: str | None = None
    last_stats: dict[str, Any] = field(default_factory=dict)


def _luhn_digit(digits: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return str((10 - total % 10) % 10)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Buffered writes: the head and the body leave in one send(), one TCP segment.
    wbufsize = 64 * 1024
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        # The idle keep-alive limit (None: wait for the client); set even when None, to
        # clear the handshake timeout a TLS connection arrives with.
        self.connection.settimeout(self.server.owner.keepalive_timeout)
        self.server.owner._track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.owner._untrack(self.connection)

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s: " + format, self.address_string(), *args)

    def _serve(self) -> None:
        owner = self.server.owner
        arrived = time.monotonic()
        raw, problem = self._read_body()
        body: dict[str, Any] | None = None
        if raw:
            try:
                parsed = json.loads(raw)
                body = parsed if isinstance(parsed, dict) else None
            except ValueError:
                body = None
        fault = owner._take_fault()
        delay = owner._delay
        if delay > 0:
            owner._stopping.wait(delay)
        lasting = owner._lasting_fault(self.path)
        if lasting is not None and problem is None and fault is None:
            self._misbehave(lasting, raw, body, arrived)
            return
        if fault == "hangup":
            self.close_connection = True
            owner._record(self, raw, body, arrived, 0)
            return
        if not owner.keep_alive:
            self.close_connection = True
        if problem is not None:
            status, payload = problem
            self.close_connection = True
        elif isinstance(fault, int):
            status, payload = fault, {"status": "error", "message": "Injected failure"}
        else:
            status, payload = owner._dispatch(self.command, self.path, self.headers, raw, body)
        # Recorded before answering: a client that has its answer finds its request here.
        owner._record(self, raw, body, arrived, status)
        self._answer(status, payload)

    def _read_body(self) -> tuple[bytes, tuple[int, dict[str, Any]] | None]:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return b"", (501, {"status": "error", "message": "Chunked bodies not supported"})
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            return b"", None
        try:
            length = int(length_text)
        except ValueError:
            return b"", (400, {"status": "error", "message": "Invalid Content-Length"})
        if length < 0 or length > MAX_BODY:
            return b"", (413, {"status": "error", "message": "Body too large"})
        return self.rfile.read(length), None

    def _misbehave(self, fault: Fault, raw: bytes, body: dict[str, Any] | None,
                   arrived: float) -> None:
        owner = self.server.owner
        if fault.kind == "status":
            owner._record(self, raw, body, arrived, fault.status)
            message = "Client not registered" if fault.status == 404 else "Injected failure"
            self._answer(fault.status, {"status": "error", "message": message})
            return
        if fault.kind == "redirect":
            owner._record(self, raw, body, arrived, 302)
            self.send_response(302)
            self.send_header("Location", fault.location or "http://10.251.9.10:5000/")
            self.send_header("Content-Length", "0")
            self.end_headers()
            self.wfile.flush()
            return
        if fault.kind == "garbage":
            owner._record(self, raw, body, arrived, fault.status)
            data = b"<html><body>Service temporarily unavailable{</body></html>"
            self.send_response(fault.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
            return
        if fault.kind == "huge":
            # Streamed in blocks of zeros: never held in memory, however large.
            owner._record(self, raw, body, arrived, 200)
            self.close_connection = True
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            if fault.declare_length:
                self.send_header("Content-Length", str(fault.size))
            self.send_header("Connection", "close")
            self.end_headers()
            block = b"0" * 65536
            left = fault.size
            try:
                self.wfile.write(b"[")
                while left > 0 and not owner._stopping.is_set():
                    chunk = block[: min(left, len(block))]
                    self.wfile.write(chunk)
                    left -= len(chunk)
                self.wfile.flush()
            except OSError:
                pass  # the client stopped reading and closed: as it should
            owner._streamed(fault.size - left)
            return
        if fault.kind == "drip":
            owner._record(self, raw, body, arrived, 200)
            status, payload = owner._dispatch(self.command, self.path, self.headers, raw, body)
            data = json.dumps(payload, separators=(",", ":")).encode()
            head = (f"HTTP/1.1 {status} OK\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(data)}\r\n\r\n").encode()
            self.close_connection = True
            try:
                for i in range(len(head + data)):
                    self.wfile.write((head + data)[i:i + 1])
                    self.wfile.flush()
                    if owner._stopping.wait(1.0 / fault.rate):
                        break
            except OSError:
                pass  # the client gave up: as it should
            return
        raise ValueError(f"unknown fault {fault.kind!r}")

    def _answer(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, owner: IonMeshServer, address: tuple[str, int],
                 tls: ssl.SSLContext | None) -> None:
        self.owner = owner
        self.tls = tls
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        # Answers leave at once, as from nginx; without it Nagle holds an answer back
        # behind unacknowledged TLS session tickets for a delayed-ACK period.
        request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.tls is None:
            super().finish_request(request, client_address)
            return
        # The handshake runs here, in the connection's own thread, never in the accept loop.
        request.settimeout(10.0)
        try:
            wrapped = self.tls.wrap_socket(request, server_side=True)
        except (OSError, ValueError) as e:
            log.debug("TLS handshake with %s failed: %s", client_address, e)
            return
        try:
            super().finish_request(wrapped, client_address)
        finally:
            wrapped.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        kind = sys.exc_info()[0]
        if kind is not None and issubclass(kind, (ConnectionError, TimeoutError, ssl.SSLError)):
            log.debug("connection from %s ended: %s", client_address, kind.__name__)
            return
        log.exception("fake IonMesh failed on a request from %s", client_address)


class IonMeshServer:
    """The fake IonMesh; ``start()``/``stop()`` or use it as a context manager."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, api_key: str | None = None,
                 tls: tuple[str, str] | None = None, *, heartbeat_interval: int = 60,
                 base_path: str = BASE_PATH, bankd_endpoint: str = "127.0.0.1:9999",
                 slots: int = 8, ki_pools: set[str] | None = None,
                 keepalive_timeout: float | None = None, keep_alive: bool = True) -> None:
        self.host = host
        self.api_key = api_key or None
        self.base_path = "/" + base_path.strip("/") if base_path.strip("/") else ""
        self.bankd_endpoint = bankd_endpoint
        self.slots = slots
        self.ki_pools = ki_pools  # None: every carrier has a pool
        self.keepalive_timeout = keepalive_timeout
        self.keep_alive = keep_alive  # False: "Connection: close" on every answer
        self.heartbeat_interval = heartbeat_interval  # said at registration and discover
        # said in heartbeat answers (None: the above); any JSON value, to test clients with
        self.next_interval: Any = None
        self.commands: list[Any] = []  # sent in heartbeat answers
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._clients: dict[str, _Client] = {}
        self._requests: list[Recorded] = []
        self._faults: deque[int | str] = deque()
        self._fault: Fault | None = None
        self.streamed_bytes = 0  # of huge answers, what actually left the server
        self._delay = 0.0
        self._connections: set[socket.socket] = set()
        self._thread: threading.Thread | None = None
        context = None
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
        self._httpd = _HTTPServer(self, (host, port), context)
        self.port: int = self._httpd.server_address[1]
        self.scheme = "https" if context is not None else "http"

    # --- life cycle ------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    def start(self) -> Self:
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,),
                                        name="fake-ionmesh", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every connection, kept-alive ones included."""
        self._stopping.set()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self.drop_connections()
        self._httpd.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # --- test knobs ------------------------------------------------------------------------------

    def forget(self, client_id: str) -> bool:
        """Drop a client (its next heartbeat gets 404); False if it was unknown."""
        with self._lock:
            return self._clients.pop(client_id, None) is not None

    def fail_next(self, n: int = 1, status: int = 503) -> None:
        """Answer the next ``n`` requests with ``status`` instead of serving them."""
        with self._lock:
            self._faults.extend([status] * n)

    def hangup_next(self, n: int = 1) -> None:
        """Read the next ``n`` requests and close their connection without answering."""
        with self._lock:
            self._faults.extend(["hangup"] * n)

    def set_fault(self, kind: str, **options: Any) -> Fault:
        """Misbehave on every request (or on ``route`` only) until :meth:`clear_fault`:
        ``status`` (answer ``status=``), ``redirect`` (302 to ``location=``),
        ``garbage`` (``status=`` 200 with a body that is not JSON), ``huge`` (a 200
        of ``size=`` bytes, streamed; ``declare_length=``), ``drip`` (the real answer,
        ``rate=`` bytes per second)."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"fault kind must be one of {', '.join(FAULT_KINDS)}, not {kind!r}")
        fault = Fault(kind, **options)
        with self._lock:
            self._fault = fault
        return fault

    def clear_fault(self) -> None:
        with self._lock:
            self._fault = None

    def set_delay(self, seconds: float) -> None:
        """Wait this long before answering each request (0: answer at once)."""
        self._delay = max(0.0, float(seconds))

    def drop_connections(self) -> int:
        """Close every open client connection from the server side; how many there were."""
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                # socket.socket's own shutdown: on a TLS socket it ends the TCP stream
                # under the handler thread without tearing the TLS object away from it.
                socket.socket.shutdown(conn, socket.SHUT_RDWR)
            except OSError:
                pass
        return len(connections)

    # --- what happened ---------------------------------------------------------------------------

    @property
    def requests(self) -> list[Recorded]:
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def heartbeats(self, client_id: str) -> list[Recorded]:
        """Every heartbeat request of that client, answered or not."""
        suffix = self.base_path + "/heartbeat"
        return [r for r in self.requests
                if r.method == "POST" and r.path == suffix and r.body is not None
                and r.body.get("client_id") == client_id]

    def last_ack(self, client_id: str) -> float | None:
        """Monotonic time of the client's last acknowledged (200) heartbeat, or None."""
        acked = [r.time for r in self.heartbeats(client_id) if r.status == 200]
        return acked[-1] if acked else None

    def online(self, client_id: str, grace: float = 300.0, now: float | None = None) -> bool:
        """Whether the client's virtual SIM would still be active (IONMESH.md grace period)."""
        last = self.last_ack(client_id)
        now = time.monotonic() if now is None else now
        return last is not None and now - last < grace

    def registered(self) -> list[str]:
        with self._lock:
            return sorted(self._clients)

    # --- serving (handler threads) ---------------------------------------------------------------

    def _track(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections.add(conn)
        if self._stopping.is_set():
            self.drop_connections()

    def _untrack(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections.discard(conn)

    def _lasting_fault(self, target: str) -> Fault | None:
        with self._lock:
            fault = self._fault
        if fault is None:
            return None
        path = urlsplit(target).path
        if fault.route is not None and path != self.base_path + fault.route:
            return None
        return fault

    def _streamed(self, n: int) -> None:
        with self._lock:
            self.streamed_bytes += n

    def _take_fault(self) -> int | str | None:
        with self._lock:
            return self._faults.popleft() if self._faults else None

    def _record(self, handler: _Handler, raw: bytes, body: dict[str, Any] | None,
                arrived: float, status: int) -> None:
        ip, port = handler.client_address[0], handler.client_address[1]
        recorded = Recorded(
            method=handler.command, path=urlsplit(handler.path).path,
            client=(str(ip), int(port)), headers=tuple(handler.headers.items()), body=body,
            time=arrived, status=status, raw_body=raw,
            tls_resumed=getattr(handler.connection, "session_reused", None))
        with self._lock:
            self._requests.append(recorded)
        who = f" ({body['client_id']})" if body and isinstance(body.get("client_id"), str) else ""
        log.info("%s %s from %s:%s -> %s%s", recorded.method, recorded.path, ip, port,
                 status or "hung up", who)

    def _dispatch(self, method: str, target: str, headers: Any, raw: bytes,
                  body: dict[str, Any] | None) -> tuple[int, dict[str, Any]]:
        path = urlsplit(target).path
        if not path.startswith(self.base_path + "/"):
            return 404, {"status": "error", "message": "Not found"}
        route = path[len(self.base_path):]
        if self.api_key is not None:
            given = headers.get("X-API-Key") or ""
            if not hmac.compare_digest(given.encode(), self.api_key.encode()):
                return 401, {"status": "error", "message": "Invalid or missing API key"}
        if route == "/register-client":
            return self._register(body, raw) if method == "POST" else _not_allowed()
        if route == "/heartbeat":
            return self._heartbeat(body, raw) if method == "POST" else _not_allowed()
        if route.startswith("/unregister/"):
            if method != "DELETE":
                return _not_allowed()
            return self._unregister(unquote(route[len("/unregister/"):]))
        if route == "/discover":
            return self._discover() if method == "GET" else _not_allowed()
        return 404, {"status": "error", "message": "Not found"}

    def _register(self, body: dict[str, Any] | None, raw: bytes) -> tuple[int, dict[str, Any]]:
        if body is None:
            return _bad("Invalid JSON body" if raw else "JSON body required")
        client_id = body.get("client_id")
        if not isinstance(client_id, str) or not client_id.strip():
            return _bad("client_id is required")
        mode = body.get("mapping_mode", "ONE_TO_ONE_SWSIM")
        if mode not in MAPPING_MODES:
            return _bad(f"Invalid mapping_mode: {mode}")
        tenant_id = body.get("tenant_id", 1)
        if not isinstance(tenant_id, int) or isinstance(tenant_id, bool) or tenant_id < 1:
            return _bad("tenant_id must be a positive integer")
        mcc_mnc = body.get("mcc_mnc")
        if mode == "KI_PROXY_SWSIM":
            if not mcc_mnc:
                return _bad("mcc_mnc is required for KI_PROXY_SWSIM")
            if not (isinstance(mcc_mnc, str) and mcc_mnc.isdigit() and len(mcc_mnc) in (5, 6)):
                return _bad("mcc_mnc must be 5 or 6 digits")
        hardware_info = body.get("hardware_info")
        if hardware_info is not None and not isinstance(hardware_info, dict):
            return _bad("hardware_info must be an object")
        with self._lock:
            known = self._clients.get(client_id)
            if known is not None:
                return 200, self._assignment(known, "Client already registered; "
                                                    "returning existing assignment")
            if mode == "KI_PROXY_SWSIM" and self.ki_pools is not None \
                    and mcc_mnc not in self.ki_pools:
                return 404, {"status": "error", "message": f"No KI pool for carrier {mcc_mnc}"}
            virtual = mode == "KI_PROXY_SWSIM"
            taken = {c.slot_id for c in self._clients.values()
                     if (c.mapping_mode == "KI_PROXY_SWSIM") == virtual}
            pool = KI_SLOTS if virtual else range(self.slots)
            slot = next((s for s in pool if s not in taken), None)
            if slot is None:
                return 503, {"status": "error", "message": "No SIM slot available"}
            iccid_body = f"8949{BANK_ID:03d}{tenant_id % 10**6:06d}{slot:06d}"  # 19 + Luhn
            if virtual:
                assert isinstance(mcc_mnc, str)
                imsi = mcc_mnc + f"{slot:0{15 - len(mcc_mnc)}d}"
            else:
                imsi = f"00101{BANK_ID:03d}{slot:07d}"
            client = _Client(client_id, mode, tenant_id, mcc_mnc if virtual else None, slot,
                             iccid_body + _luhn_digit(iccid_body), imsi, hardware_info)
            self._clients[client_id] = client
            return 200, self._assignment(client, None)

    def _assignment(self, client: _Client, note: str | None) -> dict[str, Any]:
        answer: dict[str, Any] = {
            "status": "ok", "client_id": client.client_id, "bank_id": BANK_ID,
            "slot_id": client.slot_id, "iccid": client.iccid, "imsi": client.imsi,
            "bankd_endpoint": self.bankd_endpoint, "mapping_mode": client.mapping_mode,
            "heartbeat_interval": self.heartbeat_interval,
        }
        if note:
            answer["note"] = note
        return answer

    def _heartbeat(self, body: dict[str, Any] | None, raw: bytes) -> tuple[int, dict[str, Any]]:
        if body is None:
            return _bad("Invalid JSON body" if raw else "JSON body required")
        client_id = body.get("client_id")
        if not isinstance(client_id, str) or not client_id:
            return _bad("client_id is required")
        status = body.get("status", "active")
        if status not in STATUSES:
            return _bad(f"Invalid status: {status}")
        for name in ("stats", "modem_info"):
            if name in body and not isinstance(body[name], dict):
                return _bad(f"{name} must be an object")
        with self._lock:
            client = self._clients.get(client_id)
            if client is None:
                return 404, {"status": "error", "message": "Client not registered"}
            client.last_status = status
            client.last_stats = dict(body.get("stats") or {})
            interval = self.heartbeat_interval if self.next_interval is None \
                else self.next_interval
            return 200, {"status": "ok", "next_heartbeat_interval": interval,
                         "commands": list(self.commands)}

    def _unregister(self, client_id: str) -> tuple[int, dict[str, Any]]:
        with self._lock:
            if self._clients.pop(client_id, None) is None:
                return 404, {"status": "error", "message": "Client not registered"}
        return 200, {"status": "ok", "message": "Client unregistered"}

    def _discover(self) -> tuple[int, dict[str, Any]]:
        return 200, {"service": "IonMesh RemSIM (lab)", "version": "1.0",
                     "capabilities": ["register", "heartbeat", "unregister", "discover"],
                     "supported_mapping_modes": list(MAPPING_MODES),
                     "heartbeat_interval": self.heartbeat_interval}


def _bad(message: str) -> tuple[int, dict[str, Any]]:
    return 400, {"status": "error", "message": message}


def _not_allowed() -> tuple[int, dict[str, Any]]:
    return 405, {"status": "error", "message": "Method not allowed"}


# --- certificates for the lab's https -----------------------------------------------------------

@dataclass(frozen=True)
class LabPki:
    """A throw-away CA and a server certificate signed by it (PEM files)."""

    ca_file: str
    cert_file: str
    key_file: str


def write_lab_pki(directory: str | os.PathLike[str], hosts: Sequence[str] = ("127.0.0.1",
                  "localhost"), *, days: int = 2) -> LabPki:
    """Make a CA and a certificate for ``hosts`` (IP addresses and DNS names) with the
    ``openssl`` command line; small P-256 keys, so it takes milliseconds."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    names = ",".join(f"IP:{h}" if _is_ip(h) else f"DNS:{h}" for h in hosts)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", out / "ca.key", "-out", out / "ca.pem",
             "-days", str(days), "-subj", "/CN=remsim-supervisor lab CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    _openssl("req", *ec, "-keyout", out / "server.key", "-out", out / "server.csr",
             "-subj", f"/CN={hosts[0]}")
    (out / "server.ext").write_text(
        f"subjectAltName={names}\nbasicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n")
    _openssl("x509", "-req", "-in", out / "server.csr", "-CA", out / "ca.pem",
             "-CAkey", out / "ca.key", "-CAcreateserial", "-out", out / "server.pem",
             "-days", str(days), "-extfile", out / "server.ext")
    return LabPki(str(out / "ca.pem"), str(out / "server.pem"), str(out / "server.key"))


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _openssl(*args: object) -> None:
    done = subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {done.stderr.strip()}")


# --- the lab's command line ---------------------------------------------------------------------

def _split_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"write HOST:PORT (127.0.0.1:5000, [::1]:5000), "
                                         f"not {text!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m remsim_lab.ionmesh_server",
        description="A fake IonMesh server for the lab and tests (IONMESH.md).")
    parser.add_argument("--listen", type=_split_listen, default=("127.0.0.1", 5000),
                        metavar="HOST:PORT", help="address to listen on (port 0: any free)")
    parser.add_argument("--api-key", help="require this X-API-Key")
    parser.add_argument("--interval", type=int, default=60, metavar="S",
                        help="heartbeat interval the server asks for")
    parser.add_argument("--cert", help="TLS certificate (PEM): serve https")
    parser.add_argument("--key", help="TLS private key (PEM), with --cert")
    parser.add_argument("--bankd", default="127.0.0.1:9999", metavar="HOST:PORT",
                        help="bankd endpoint handed out at registration")
    parser.add_argument("--slots", type=int, default=8, help="SIM slots in the bank")
    parser.add_argument("--keepalive-timeout", type=float, metavar="S",
                        help="close connections idle this long")
    parser.add_argument("--no-keep-alive", action="store_true",
                        help="close the connection after every answer")
    args = parser.parse_args(argv)
    if bool(args.cert) != bool(args.key):
        parser.error("--cert and --key go together")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s ionmesh-fake %(message)s")
    host, port = args.listen
    try:
        server = IonMeshServer(host, port, api_key=args.api_key,
                               tls=(args.cert, args.key) if args.cert else None,
                               heartbeat_interval=args.interval, bankd_endpoint=args.bankd,
                               slots=args.slots, keepalive_timeout=args.keepalive_timeout,
                               keep_alive=not args.no_keep_alive)
    except OSError as e:
        print(f"ionmesh-fake: cannot listen on {host}:{port}: {e.strerror or e}",
              file=sys.stderr)
        return 1
    done = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: done.set())
    server.start()
    print(server.url, flush=True)  # the first line on stdout: the lab waits for it
    log.info("listening on %s%s", server.url, " (API key required)" if args.api_key else "")
    while not done.wait(0.5):
        pass
    server.stop()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
