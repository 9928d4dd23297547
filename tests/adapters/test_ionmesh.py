"""The IonMesh client against the fake IonMesh, over real sockets on 127.0.0.1.

Round trips, the errors a user must be able to act on (one line each),
the kept-alive connection and its recovery, HTTPS with a CA made here,
timeouts, binding to a device, and the rule that server commands are data.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from remsim_lab.ionmesh_server import IonMeshServer, LabPki, write_lab_pki
from remsim_supervisor import __version__
from remsim_supervisor.adapters import ionmesh
from remsim_supervisor.adapters.ionmesh import (
    BASE_PATH,
    Assignment,
    IonMeshClient,
    IonMeshError,
    IonMeshUnavailable,
    NotRegistered,
    Unauthorized,
    encode_json,
    encode_request,
    parse_bankd_endpoint,
)
from remsim_supervisor.config import IonmeshConfig
from tests.netns import exec_in, ip, netns

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="needs root (SO_BINDTODEVICE, netns)")
needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")

MakeClient = Callable[..., IonMeshClient]


@pytest.fixture
def server() -> Iterator[IonMeshServer]:
    with IonMeshServer() as srv:
        yield srv


@pytest.fixture
def make_client(server: IonMeshServer) -> Iterator[MakeClient]:
    clients: list[IonMeshClient] = []

    def make(client_id: str = "router-001", url: str | None = None, **kw: Any) -> IonMeshClient:
        kw.setdefault("timeout", 3.0)
        client = IonMeshClient(url or server.url, client_id, **kw)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def one_line(error: BaseException) -> str:
    text = str(error)
    assert text and "\n" not in text, f"not one line: {text!r}"
    return text


# --- the protocol without I/O -------------------------------------------------------------------

def test_json_is_compact_and_drops_empty_fields_but_keeps_zero() -> None:
    payload = {"client_id": "r1", "mcc_mnc": None, "note": "", "hardware_info": {},
               "stats": {"data_rx_bytes": 0, "signal_rssi": None, "roaming": False}}
    assert encode_json(payload) == b'{"client_id":"r1","stats":{"data_rx_bytes":0,"roaming":false}}'


def test_request_is_exactly_the_headers_http_needs() -> None:
    body = encode_json({"client_id": "router-001", "status": "active"})
    request = encode_request("POST", BASE_PATH + "/heartbeat", "ionmesh.example.com:5000", body)
    assert request == (b"POST /api/backend/v1/remsim/heartbeat HTTP/1.1\r\n"
                       b"Host: ionmesh.example.com:5000\r\n"
                       b"Content-Type: application/json\r\n"
                       b"Content-Length: 44\r\n\r\n"
                       b'{"client_id":"router-001","status":"active"}')
    # no body: no Content-Type, no Content-Length (RFC 9110 8.6)
    assert encode_request("GET", "/d", "h") == b"GET /d HTTP/1.1\r\nHost: h\r\n\r\n"


@pytest.mark.parametrize(("text", "expected"), [
    ("http://bankd.example.com:9998", ("bankd.example.com", 9998)),
    ("bankd.example.com:7777", ("bankd.example.com", 7777)),
    ("10.0.0.5", ("10.0.0.5", 9999)),
    ("http://10.0.0.5", ("10.0.0.5", 9999)),
    ("[2001:db8::1]:9000", ("2001:db8::1", 9000)),
    ("host:notaport", (None, 9999)),
    ("", (None, 9999)),
    (None, (None, 9999)),
])
def test_bankd_endpoint_forms(text: str | None, expected: tuple[str | None, int]) -> None:
    assert parse_bankd_endpoint(text) == expected


def test_assignment_ignores_unknown_fields_and_leaves_missing_ones_none() -> None:
    a = Assignment.from_json({"status": "ok", "slot_id": 0, "bank_id": "2", "future": [1],
                              "heartbeat_interval": -5, "imsi": 262011234567890})
    assert (a.slot_id, a.bank_id, a.iccid, a.bankd_host, a.bankd_port, a.note) == (
        0, 2, None, None, 9999, None)
    assert a.heartbeat_interval is None  # nonsense is "not said", never 0 or negative
    assert a.imsi == "262011234567890"
    assert "262011234567890" not in repr(a) and "7890" in repr(a)


def test_url_base_path_default_and_explicit() -> None:
    assert IonMeshClient("http://h:5000", "r").base_url == "http://h:5000/api/backend/v1/remsim"
    assert IonMeshClient("http://h:5000/", "r").base_path == BASE_PATH
    explicit = IonMeshClient("https://h/ionmesh/v2/", "r")
    assert (explicit.base_path, explicit.port, explicit.authority) == ("/ionmesh/v2", 443, "h")
    assert IonMeshClient("http://[2001:db8::1]:5000", "r").authority == "[2001:db8::1]:5000"
    assert IonMeshClient("http://h:5000/a b/", "r").base_path == "/a%20b"


def test_bad_settings_are_refused_in_one_line() -> None:
    for url in ("ftp://h:21", "h:5000", "http://h:99999"):
        with pytest.raises(IonMeshError) as info:
            IonMeshClient(url, "r")
        assert "ionmesh.url" in one_line(info.value)
    with pytest.raises(IonMeshError) as info:
        IonMeshClient("http://h:5000", "r", api_key="abc\r\nX-Evil: 1")
    assert "ionmesh.api_key" in one_line(info.value) and "Evil" not in str(info.value)


# --- round trips --------------------------------------------------------------------------------

def test_register_heartbeat_unregister_discover(server: IonMeshServer,
                                                make_client: MakeClient) -> None:
    client = make_client()
    assignment = client.register({"modem_vendor": "Quectel", "modem_model": "EC25"})
    assert (assignment.bank_id, assignment.slot_id, assignment.bankd_host,
            assignment.bankd_port) == (1, 0, "127.0.0.1", 9999)
    assert assignment.mapping_mode == "ONE_TO_ONE_SWSIM" and assignment.heartbeat_interval == 60
    assert assignment.iccid and len(assignment.iccid) == 20 and assignment.note is None
    sent = server.requests[-1]
    assert sent.body == {"client_id": "router-001", "mapping_mode": "ONE_TO_ONE_SWSIM",
                         "tenant_id": 1,
                         "hardware_info": {"modem_vendor": "Quectel", "modem_model": "EC25"}}
    assert sent.header("User-Agent") == f"remsim-supervisor/{__version__}"

    result = client.heartbeat("warning", stats={"uptime_seconds": 12, "signal_rssi": None},
                              modem_info={"vendor": "Quectel"})
    assert result.exchange.status == 200 and result.next_interval == 60
    assert result.commands == ()
    assert server.heartbeats("router-001")[-1].body == {
        "client_id": "router-001", "status": "warning", "stats": {"uptime_seconds": 12},
        "modem_info": {"vendor": "Quectel"}}
    assert server.last_ack("router-001") is not None and server.online("router-001")

    info = client.discover()
    assert "KI_PROXY_SWSIM" in info["supported_mapping_modes"]
    assert info["heartbeat_interval"] == 60

    assert client.unregister() is True
    assert server.registered() == []
    assert client.unregister() is False  # 404: nothing to unregister


def test_reregistration_returns_the_same_assignment(make_client: MakeClient) -> None:
    first = make_client("router-a").register()
    again = make_client("router-a").register()
    other = make_client("router-b").register()
    assert (again.slot_id, again.iccid, again.imsi) == (first.slot_id, first.iccid, first.imsi)
    assert again.note and "already registered" in again.note
    assert other.slot_id != first.slot_id


def test_unregister_url_encodes_the_client_id(server: IonMeshServer,
                                              make_client: MakeClient) -> None:
    client = make_client("router 7/lab")
    client.register()
    assert client.unregister() is True
    assert server.requests[-1].path == BASE_PATH + "/unregister/router%207%2Flab"


def test_server_interval_and_nonsense_interval(server: IonMeshServer,
                                               make_client: MakeClient) -> None:
    client = make_client()
    client.register()
    server.next_interval = 45
    assert client.heartbeat().next_interval == 45
    server.next_interval = None
    server.heartbeat_interval = 0
    assert client.heartbeat().next_interval is None


def test_ki_proxy_needs_mcc_mnc_and_a_pool(make_client: MakeClient) -> None:
    with pytest.raises(IonMeshError) as info:
        make_client("ki-1", mapping_mode="KI_PROXY_SWSIM").register()
    text = one_line(info.value)
    assert info.value.status == 400 and "mcc_mnc is required" in text
    assert "ionmesh.mcc_mnc" in text

    ki = make_client("ki-2", mapping_mode="KI_PROXY_SWSIM", mcc_mnc="26201").register()
    assert ki.slot_id is not None and 900 <= ki.slot_id <= 999
    assert ki.imsi and ki.imsi.startswith("26201") and len(ki.imsi) == 15


def test_no_ki_pool_for_the_carrier_says_so() -> None:
    with IonMeshServer(ki_pools={"26202"}) as srv, IonMeshClient(
            srv.url, "ki", mapping_mode="KI_PROXY_SWSIM", mcc_mnc="26201") as client, \
            pytest.raises(IonMeshError) as info:
        client.register()
    assert info.value.status == 404 and "no KI pool for carrier 26201" in one_line(info.value)


def test_no_slot_free_is_unavailable() -> None:
    with IonMeshServer(slots=1) as srv:
        IonMeshClient(srv.url, "first").register()
        with pytest.raises(IonMeshUnavailable) as info:
            IonMeshClient(srv.url, "second").register()
    assert info.value.status == 503 and "no SIM slot free" in one_line(info.value)


def test_not_registered_then_register_again(server: IonMeshServer,
                                            make_client: MakeClient) -> None:
    client = make_client()
    client.register()
    client.heartbeat()
    assert server.forget("router-001")
    with pytest.raises(NotRegistered) as info:
        client.heartbeat()
    assert info.value.status == 404
    assert "Client not registered" in one_line(info.value) and "register again" in str(info.value)
    client.register()
    assert client.heartbeat().exchange.status == 200
    assert [r.status for r in server.heartbeats("router-001")] == [200, 404, 200]


def test_bad_heartbeat_status_is_a_400_in_one_line(make_client: MakeClient) -> None:
    client = make_client()
    client.register()
    with pytest.raises(IonMeshError) as info:
        client.heartbeat("sleepy")
    assert not isinstance(info.value, IonMeshUnavailable)
    assert info.value.status == 400 and "Invalid status" in one_line(info.value)


def test_from_config(server: IonMeshServer) -> None:
    server.api_key = "cfg-key-0042"
    cfg = IonmeshConfig(url=server.url, client_id="cfg-router", api_key="cfg-key-0042",
                        timeout=3.0, heartbeat_interval=30)
    with IonMeshClient.from_config(cfg, source_address="127.0.0.1") as client:
        assert (client.client_id, client.timeout, client.source_address) == (
            "cfg-router", 3.0, "127.0.0.1")
        client.register()
        assert client.heartbeat().exchange.status == 200
    assert server.requests[-1].header("X-API-Key") == "cfg-key-0042"


# --- the API key --------------------------------------------------------------------------------

def test_api_key_sent_and_refusals_in_one_line(server: IonMeshServer,
                                               make_client: MakeClient) -> None:
    server.api_key = "right-key-1234"
    good = make_client(api_key="right-key-1234")
    good.register()
    assert good.heartbeat().exchange.status == 200
    assert server.requests[-1].header("X-API-Key") == "right-key-1234"

    with pytest.raises(Unauthorized) as wrong:
        make_client(api_key="wrong-key-9876").heartbeat()
    text = one_line(wrong.value)
    assert text == f"IonMesh at {server.url} refused the API key (401): check ionmesh.api_key"
    assert wrong.value.exchange is not None and wrong.value.exchange.bytes_received > 0

    with pytest.raises(Unauthorized) as missing:
        make_client().discover()
    assert "set ionmesh.api_key" in one_line(missing.value)


def test_secrets_and_identities_stay_out_of_logs_and_reprs(
        server: IonMeshServer, make_client: MakeClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    server.api_key = "very-secret-key-5555"
    client = make_client(api_key="very-secret-key-5555")
    assignment = client.register()
    result = client.heartbeat()
    with pytest.raises(Unauthorized) as info:
        make_client(api_key="other-secret-key-6666").heartbeat()
    shown = caplog.text + repr(client) + repr(assignment) + repr(result) + str(info.value)
    assert "very-secret-key" not in shown and "other-secret-key" not in shown
    assert assignment.imsi and assignment.iccid
    assert assignment.imsi not in shown and assignment.iccid not in shown
    assert assignment.imsi[-4:] in caplog.text  # masked, not dropped


# --- one kept-alive connection ------------------------------------------------------------------

def test_twenty_heartbeats_share_one_connection(server: IonMeshServer,
                                                make_client: MakeClient) -> None:
    client = make_client()
    client.register()
    before = client.totals
    results = [client.heartbeat() for _ in range(20)]
    assert {r.client for r in server.requests} == {server.requests[0].client}
    assert client.totals.connections == 1 and client.totals.requests == 21
    assert not any(r.exchange.new_connection for r in results)
    # the byte counts are the HTTP messages, to the byte
    body = encode_json({"client_id": "router-001", "status": "active"})
    assert results[-1].exchange.bytes_sent == len(encode_request(
        "POST", BASE_PATH + "/heartbeat", f"127.0.0.1:{server.port}", body))
    after = client.totals
    assert after.bytes_sent - before.bytes_sent == sum(r.exchange.bytes_sent for r in results)
    assert after.bytes_received - before.bytes_received == sum(
        r.exchange.bytes_received for r in results)


def test_heartbeat_carries_no_header_beyond_need(server: IonMeshServer,
                                                 make_client: MakeClient) -> None:
    client = make_client()
    client.register()
    client.heartbeat()
    names = [name.lower() for name, _ in server.requests[-1].headers]
    assert names == ["host", "content-type", "content-length"]


def test_reconnects_after_the_server_dropped_the_connection(
        server: IonMeshServer, make_client: MakeClient) -> None:
    client = make_client()
    client.register()
    first = client.heartbeat()
    assert server.drop_connections() == 1
    after = client.heartbeat()
    assert after.exchange.status == 200 and after.exchange.new_connection
    assert after.exchange.local_address != first.exchange.local_address
    assert len({r.client for r in server.requests}) == 2
    assert client.totals.connections == 2


def test_idle_connection_closed_by_the_server_is_noticed_before_sending() -> None:
    with IonMeshServer(keepalive_timeout=0.2) as srv, IonMeshClient(srv.url, "r") as client:
        client.register()
        time.sleep(0.5)
        result = client.heartbeat()
        assert result.exchange.new_connection and result.exchange.status == 200
        # noticed before sending: the request went out once
        assert len(srv.heartbeats("r")) == 1


def test_server_without_keep_alive_gets_a_new_connection_each_time() -> None:
    with IonMeshServer(keep_alive=False) as srv, IonMeshClient(srv.url, "r") as client:
        client.register()
        results = [client.heartbeat() for _ in range(3)]
        assert all(r.exchange.new_connection and r.exchange.status == 200 for r in results)
        assert client.totals.connections == 4
        assert len(srv.heartbeats("r")) == 3  # never sent twice


def test_request_resent_once_when_a_reused_connection_dies_under_it(
        server: IonMeshServer, make_client: MakeClient) -> None:
    client = make_client()
    client.register()
    server.hangup_next(1)
    result = client.heartbeat()
    assert result.exchange.status == 200 and result.exchange.new_connection
    assert [r.status for r in server.heartbeats("router-001")] == [0, 200]

    server.hangup_next(2)  # the second try fails too: reported, not retried again
    with pytest.raises(IonMeshUnavailable) as info:
        client.heartbeat()
    assert "closed the connection without answering heartbeat" in one_line(info.value)
    assert [r.status for r in server.heartbeats("router-001")] == [0, 200, 0, 0]


def test_failure_on_a_fresh_connection_is_not_retried(server: IonMeshServer,
                                                      make_client: MakeClient) -> None:
    server.hangup_next(1)
    with pytest.raises(IonMeshUnavailable):
        make_client().discover()
    assert len(server.requests) == 1


def test_server_trouble_is_unavailable_and_keeps_the_connection(
        server: IonMeshServer, make_client: MakeClient) -> None:
    client = make_client()
    client.register()
    server.fail_next(1, status=503)
    with pytest.raises(IonMeshUnavailable) as info:
        client.heartbeat()
    assert info.value.status == 503 and "server trouble" in one_line(info.value)
    after = client.heartbeat()
    assert after.exchange.status == 200 and not after.exchange.new_connection


def test_connection_refused_is_unavailable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(IonMeshUnavailable) as info:
        IonMeshClient(f"http://127.0.0.1:{port}", "r", timeout=2).heartbeat()
    assert "refused the connection" in one_line(info.value)


def test_concurrent_calls_are_serialised_on_the_connection(
        server: IonMeshServer, make_client: MakeClient) -> None:
    client = make_client()
    client.register()
    statuses: list[int] = []

    def beat() -> None:
        for _ in range(10):
            statuses.append(client.heartbeat().exchange.status)

    threads = [threading.Thread(target=beat) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200] * 40 and client.totals.connections == 1


# --- timeouts -----------------------------------------------------------------------------------

def test_read_timeout_then_recovery(server: IonMeshServer, make_client: MakeClient) -> None:
    client = make_client(timeout=0.2)
    client.register()
    server.set_delay(1.0)
    started = time.monotonic()
    with pytest.raises(IonMeshUnavailable) as info:
        client.heartbeat()
    assert time.monotonic() - started < 0.8
    assert "did not answer heartbeat within 0.2 s" in one_line(info.value)
    server.set_delay(0)
    result = client.heartbeat()
    assert result.exchange.status == 200 and result.exchange.new_connection


def test_connect_timeout() -> None:
    # A listener whose accept queue is full drops further SYNs: connect() hangs.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = []
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            try:
                filler.connect(("127.0.0.1", port))
            except BlockingIOError:
                pass
            fillers.append(filler)
        try:
            started = time.monotonic()
            with pytest.raises(IonMeshUnavailable) as info:
                IonMeshClient(f"http://127.0.0.1:{port}", "r", timeout=0.3).heartbeat()
            assert time.monotonic() - started < 1.0
            assert "could not connect" in one_line(info.value)
        finally:
            for filler in fillers:
                filler.close()


def test_close_from_another_thread_cuts_a_call_short(server: IonMeshServer,
                                                     make_client: MakeClient) -> None:
    client = make_client(timeout=5.0)
    client.register()
    server.set_delay(0.8)
    errors: list[BaseException] = []

    def beat() -> None:
        try:
            client.heartbeat()
        except IonMeshError as e:
            errors.append(e)

    worker = threading.Thread(target=beat)
    started = time.monotonic()
    worker.start()
    time.sleep(0.1)
    client.close()
    worker.join(timeout=3)
    assert not worker.is_alive() and time.monotonic() - started < 0.6
    assert len(errors) == 1 and isinstance(errors[0], IonMeshUnavailable)
    time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))  # the server's delay is over
    assert len(server.heartbeats("router-001")) == 1  # not sent again


# --- HTTPS --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[LabPki, LabPki]:
    if shutil.which("openssl") is None:
        pytest.skip("needs openssl")
    base = tmp_path_factory.mktemp("pki")
    good = write_lab_pki(base / "good", ("127.0.0.1", "localhost", "ionmesh.test"))
    other = write_lab_pki(base / "other", ("127.0.0.1",))
    return good, other


@pytest.fixture
def tls_server(pki: tuple[LabPki, LabPki]) -> Iterator[IonMeshServer]:
    with IonMeshServer(tls=(pki[0].cert_file, pki[0].key_file)) as srv:
        yield srv


@needs_openssl
def test_https_verified_against_the_ca(tls_server: IonMeshServer,
                                       pki: tuple[LabPki, LabPki]) -> None:
    with IonMeshClient(tls_server.url, "tls-1", ca_file=pki[0].ca_file, timeout=3) as client:
        assert client.register().slot_id == 0
        assert client.heartbeat().exchange.status == 200
        tls_server.drop_connections()
        again = client.heartbeat()
        assert again.exchange.new_connection and again.exchange.status == 200
        # the reconnect resumed the TLS session: a short handshake
        assert tls_server.requests[-1].tls_resumed is True


@needs_openssl
def test_https_with_the_wrong_ca_fails_cleanly(tls_server: IonMeshServer,
                                               pki: tuple[LabPki, LabPki]) -> None:
    for ca_file in (pki[1].ca_file, None):  # another CA; the system store
        with pytest.raises(IonMeshUnavailable) as info:
            IonMeshClient(tls_server.url, "tls-2", ca_file=ca_file, timeout=3).heartbeat()
        text = one_line(info.value)
        assert "certificate that does not verify" in text and "ionmesh.ca_file" in text
    assert tls_server.requests == []  # nothing was sent to an unverified server


@needs_openssl
def test_https_name_checked_while_connecting_to_a_pinned_address(
        tls_server: IonMeshServer, pki: tuple[LabPki, LabPki]) -> None:
    url = f"https://ionmesh.test:{tls_server.port}"
    with IonMeshClient(url, "tls-3", ca_file=pki[0].ca_file, connect_address="127.0.0.1",
                       timeout=3) as client:
        assert client.discover()["heartbeat_interval"] == 60
    assert tls_server.requests[-1].header("Host") == f"ionmesh.test:{tls_server.port}"
    wrong = f"https://not-in-cert.test:{tls_server.port}"
    with pytest.raises(IonMeshUnavailable) as info:
        IonMeshClient(wrong, "tls-3", ca_file=pki[0].ca_file, connect_address="127.0.0.1",
                      timeout=3).discover()
    assert "not-in-cert.test" in one_line(info.value)


def test_unreadable_ca_file_names_the_option(tmp_path: Path) -> None:
    with IonMeshServer() as srv:
        url = srv.url.replace("http://", "https://")
        with pytest.raises(IonMeshError) as info:
            IonMeshClient(url, "r", ca_file=str(tmp_path / "missing.pem")).heartbeat()
    assert "check ionmesh.ca_file" in one_line(info.value)


# --- binding to a device ------------------------------------------------------------------------

@needs_root
def test_bind_device_lo_and_source_address(server: IonMeshServer,
                                           make_client: MakeClient) -> None:
    client = make_client(bind_device="lo", source_address="127.0.0.2")
    client.register()
    result = client.heartbeat()
    assert result.exchange.status == 200
    assert result.exchange.local_address and result.exchange.local_address.startswith(
        "127.0.0.2:")
    assert server.requests[-1].client[0] == "127.0.0.2"
    with pytest.raises(IonMeshUnavailable) as info:
        make_client(bind_device="nosuchdev0").heartbeat()
    assert "network device 'nosuchdev0' does not exist" in one_line(info.value)


@needs_root
def test_bind_device_and_mark_really_apply() -> None:
    # In a namespace of its own. Bound to lo the client reaches its server; bound to a
    # veth end with no route to it, it cannot: only the binding explains that. Marked
    # 0x99, its packets meet a rule (ahead of the local table here) whose table prohibits
    # everything: only the mark explains that failure.
    script = textwrap.dedent("""
        import json
        from remsim_supervisor.adapters.ionmesh import IonMeshClient, IonMeshError
        from remsim_lab.ionmesh_server import IonMeshServer
        out = {}
        with IonMeshServer() as srv:
            for name, kw in (("lo", {"bind_device": "lo"}), ("rsv0", {"bind_device": "rsv0"}),
                             ("unmarked", {}), ("marked", {"mark": 0x99})):
                try:
                    IonMeshClient(srv.url, "r", timeout=0.3, **kw).discover()
                    out[name] = "ok"
                except IonMeshError as e:
                    out[name] = type(e).__name__
        print(json.dumps(out))
    """)
    with netns("rsim") as ns:
        ip("-n", ns, "link", "add", "rsv0", "type", "veth", "peer", "name", "rsv1")
        ip("-n", ns, "addr", "add", "10.251.9.1/30", "dev", "rsv0")
        ip("-n", ns, "link", "set", "rsv0", "up")
        ip("-n", ns, "link", "set", "rsv1", "up")
        ip("-n", ns, "rule", "add", "pref", "50", "fwmark", "0x99", "lookup", "99")
        ip("-n", ns, "route", "add", "prohibit", "default", "table", "99")
        ip("-n", ns, "rule", "add", "pref", "100", "lookup", "local")
        ip("-n", ns, "rule", "del", "pref", "0", "lookup", "local")
        done = subprocess.run(exec_in(ns, sys.executable, "-c", script), capture_output=True,
                              text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"lo": "ok", "rsv0": "IonMeshUnavailable",
                                       "unmarked": "ok", "marked": "IonMeshUnavailable"}


# --- commands are data --------------------------------------------------------------------------

def test_server_commands_are_returned_never_executed(server: IonMeshServer,
                                                     make_client: MakeClient,
                                                     tmp_path: Path) -> None:
    target = tmp_path / "x"
    server.commands = [f"touch {target}", {"action": "shell", "cmd": f"touch {target}-2"},
                       "reboot"]
    client = make_client()
    client.register()
    result = client.heartbeat()
    assert result.commands == (f"touch {target}", {"action": "shell",
                                                   "cmd": f"touch {target}-2"}, "reboot")
    time.sleep(0.1)
    assert list(tmp_path.iterdir()) == []
    assert not hasattr(ionmesh, "subprocess")  # nothing in the client could run them


# --- the fake server itself ---------------------------------------------------------------------

def test_stop_is_prompt_with_kept_alive_connections() -> None:
    srv = IonMeshServer().start()
    client = IonMeshClient(srv.url, "r", timeout=2)
    client.register()
    client.heartbeat()
    started = time.monotonic()
    srv.stop()
    assert time.monotonic() - started < 1.0
    with pytest.raises(IonMeshUnavailable):
        client.heartbeat()  # the connection is gone and nobody listens
    client.close()


def test_server_command_line_serves_logs_and_stops_on_sigterm() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "remsim_lab.ionmesh_server", "--listen",
         "127.0.0.1:0", "--api-key", "lab-key-7777", "--interval", "30"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        with IonMeshClient(url, "lab-router", api_key="lab-key-7777", timeout=3) as client:
            assert client.register().heartbeat_interval == 30
            assert client.heartbeat().next_interval == 30
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=5)
        assert proc.returncode == 0 and time.monotonic() - started < 3
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "POST /api/backend/v1/remsim/heartbeat from 127.0.0.1:" in err
    assert "-> 200 (lab-router)" in err
    assert "lab-key-7777" not in err
