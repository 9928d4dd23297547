"""The IonMesh client against a hostile or broken server, over real sockets on 127.0.0.1.

A server that answers (an error, a redirect, nonsense, too much, too slowly)
is told apart from a path where nothing comes back; every number an answer
carries is bounded; a kept-alive connection that died idle is retried once on
a fresh one. Ends with a bounded fuzz test of the answer handling.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from remsim_lab.ionmesh_server import IonMeshServer
from remsim_supervisor.adapters.ionmesh import IonMeshClient
from remsim_supervisor.core.ionmesh import (
    MAX_KEPT_COMMANDS,
    MAX_RESPONSE_BYTES,
    Assignment,
    Exchange,
    IonMeshError,
    NotRegistered,
    decode_body,
    read_heartbeat_answer,
)
from tests.fuzzing import examples

MakeClient = Callable[..., IonMeshClient]


@pytest.fixture
def server() -> Iterator[IonMeshServer]:
    with IonMeshServer() as srv:
        yield srv


@pytest.fixture
def client(server: IonMeshServer) -> Iterator[IonMeshClient]:
    with IonMeshClient(server.url, "router-001", timeout=1.0) as c:
        yield c


# --- a server that answers is not a dead path --------------------------------------------------

@pytest.mark.parametrize("status", [500, 502, 503, 400, 401, 418])
def test_an_error_status_is_the_servers_failure(server: IonMeshServer, client: IonMeshClient,
                                                 status: int) -> None:
    client.register()
    server.set_fault("status", status=status)
    with pytest.raises(IonMeshError) as info:
        client.heartbeat()
    assert info.value.answered and info.value.status == status
    assert "\n" not in str(info.value)


def test_nothing_coming_back_may_be_the_path() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(IonMeshError) as info:
        IonMeshClient(f"http://127.0.0.1:{port}", "r", timeout=1).heartbeat()
    assert not info.value.answered


def test_a_redirect_is_not_followed_and_is_the_servers_failure(server: IonMeshServer,
                                                                client: IonMeshClient) -> None:
    client.register()
    server.set_fault("redirect", location="http://10.251.9.10:5000/elsewhere")
    with pytest.raises(IonMeshError) as info:
        client.heartbeat()
    assert info.value.answered and info.value.status == 302
    assert "answered 302 to heartbeat" in str(info.value)
    assert client.totals.connections == 1  # nothing opened towards the other host


def test_an_answer_that_is_not_json(server: IonMeshServer, client: IonMeshClient) -> None:
    server.set_fault("garbage", status=200)
    with pytest.raises(IonMeshError) as info:
        client.register()  # an assignment must be readable
    assert info.value.answered and "without a JSON object" in str(info.value)
    server.clear_fault()
    client.register()
    server.set_fault("garbage", status=200)
    # A heartbeat's 200 is what the grace counts, whatever its body.
    result = client.heartbeat()
    assert result.exchange.status == 200 and result.next_interval is None
    server.set_fault("garbage", status=500)
    with pytest.raises(IonMeshError) as info:
        client.heartbeat()
    assert info.value.answered and info.value.status == 500


@pytest.mark.parametrize("declared", [True, False])
def test_a_huge_answer_is_not_read_beyond_the_bound(server: IonMeshServer,
                                                    client: IonMeshClient,
                                                    declared: bool) -> None:
    client.register()
    before = client.totals.bytes_received
    server.set_fault("huge", size=200 * 1024 * 1024, declare_length=declared)
    started = time.monotonic()
    with pytest.raises(IonMeshError) as info:
        client.heartbeat()
    assert time.monotonic() - started < 1.0
    assert info.value.answered
    assert "left unread" in str(info.value)
    received = client.totals.bytes_received - before
    assert received <= MAX_RESPONSE_BYTES + 64 * 1024
    if declared:
        # The head said how large: only what came with it in one buffered read.
        assert received <= 8192
    server.clear_fault()
    assert client.heartbeat().exchange.status == 200  # and the next one is fine
    server.stop()  # the streaming thread ends with the client's close
    assert server.streamed_bytes < 64 * 1024 * 1024


def test_an_answer_dripping_a_byte_a_second_ends_at_the_timeout(
        server: IonMeshServer, client: IonMeshClient) -> None:
    client.register()
    server.set_fault("drip", rate=1.0)
    started = time.monotonic()
    with pytest.raises(IonMeshError) as info:
        client.heartbeat()
    took = time.monotonic() - started
    # Bytes came back: the server's failure, and never retried as a dead connection.
    assert info.value.answered and took < 1.5
    assert "did not answer heartbeat within 1 s" in str(info.value)


# --- numbers from the server ---------------------------------------------------------------------

@pytest.mark.parametrize(("value", "expected"), [
    (10**9, 10**9),  # bounded in digits; the heartbeat clamps it into its interval bounds
    ("60", 60),
    (60.0, 60),
    ("²", None),
    ("٣", None),  # another script's digit
    (10**400, None),
    ("9" * 400, None),
    (1e308, None),
    (0, None),
    (-5, None),
    (True, None),
    ([60], None),
    ({"s": 60}, None),
])
def test_a_heartbeat_interval_is_a_short_run_of_ascii_digits(
        server: IonMeshServer, client: IonMeshClient, value: Any, expected: int | None) -> None:
    server.heartbeat_interval = value
    server.next_interval = value
    assignment = client.register()  # accepted, whatever the interval says
    assert assignment.heartbeat_interval == expected and assignment.slot_id == 0
    result = client.heartbeat()
    assert result.next_interval == expected
    if expected is None:
        assert len(result.problems) == 1 and "ignored" in result.problems[0]
        assert len(result.problems[0]) < 200
        assert len(assignment.problems) == 1


def test_twenty_thousand_commands_are_counted_and_a_few_kept(server: IonMeshServer,
                                                              client: IonMeshClient) -> None:
    server.commands = [7] * 20_000  # 40 kB: inside the bound on an answer's size
    client.register()
    result = client.heartbeat()
    assert result.commands_total == 20_000
    assert result.commands == (7,) * MAX_KEPT_COMMANDS


def test_not_registered_carries_the_servers_answer(server: IonMeshServer,
                                                   client: IonMeshClient) -> None:
    client.register()
    server.set_fault("status", status=404, route="/heartbeat")
    with pytest.raises(NotRegistered) as info:
        client.heartbeat()
    assert info.value.answered
    client.register()  # registering still works: only heartbeats are refused


# --- a kept-alive connection that died idle ------------------------------------------------------

class ForgetfulServer:
    """Answers the first request on a connection; later ones vanish, as on a flow
    a carrier forgot (no reset, nothing back)."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self.listener.settimeout(0.05)
        held = []
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            self.connections += 1
            held.append(conn)
            conn.settimeout(2)
            request = conn.recv(65536)
            assert request.startswith(b"POST ")
            body = b'{"status":"ok","next_heartbeat_interval":60,"commands":[]}'
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        for conn in held:
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.listener.close()


def test_a_connection_dead_after_idling_is_retried_once_on_a_fresh_one() -> None:
    srv = ForgetfulServer()
    try:
        with IonMeshClient(f"http://127.0.0.1:{srv.port}", "r", timeout=0.5) as client:
            first = client.heartbeat()
            assert first.exchange.new_connection and first.exchange.stale_idle_s is None
            time.sleep(0.2)
            assert client.idle_s() is not None and client.idle_s() >= 0.2  # type: ignore[operator]
            started = time.monotonic()
            second = client.heartbeat()
            took = time.monotonic() - started
            assert second.exchange.status == 200 and second.exchange.new_connection
            stale = second.exchange.stale_idle_s
            assert stale is not None and 0.2 <= stale < 1.0
            assert 0.5 <= took < 1.0  # one timeout on the dead one, then at once
            assert srv.connections == 2
            client.close(abort=True)  # a reset, not a FIN into a forgotten flow
            assert client.idle_s() is None
    finally:
        srv.close()


# --- the answer handling, fuzzed ------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True)
    | st.text(max_size=30) | st.sampled_from(["²", "9" * 400, "60", " 60 ", "-1", "1e9"]),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner,
                                                                max_size=5),
    max_leaves=20)
FIELDS = st.sampled_from(["heartbeat_interval", "next_heartbeat_interval", "bank_id",
                          "slot_id", "iccid", "imsi", "bankd_endpoint", "mapping_mode",
                          "note", "commands", "status"])
ANSWERS = st.dictionaries(FIELDS | st.text(max_size=8), JSON, max_size=8)
LIMIT = 10**12


def exchange(body: dict[str, Any] | None) -> Exchange:
    return Exchange(200, 1.0, 100, 100, False, None, body)


def check_bounded(assignment: Assignment | None, answer: Any) -> None:
    if assignment is not None:
        for number in (assignment.bank_id, assignment.slot_id):
            assert number is None or -LIMIT < number < LIMIT
        assert assignment.heartbeat_interval is None or 0 < assignment.heartbeat_interval < LIMIT
        assert 0 < assignment.bankd_port < 65536
    if answer is not None:
        assert answer.next_interval is None or 0 < answer.next_interval < LIMIT
        assert len(answer.commands) <= MAX_KEPT_COMMANDS
        assert answer.commands_total >= len(answer.commands)


@pytest.mark.fuzz
@settings(max_examples=examples(300), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(ANSWERS)
def test_fuzz_answers_as_objects(body: dict[str, Any]) -> None:
    check_bounded(Assignment.from_json(body), read_heartbeat_answer(exchange(body)))
    repr(Assignment.from_json(body))


@pytest.mark.fuzz
@settings(max_examples=examples(300), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(
    st.binary(max_size=200),
    ANSWERS.map(lambda d: json.dumps(d).encode()),
    st.integers(1, 5000).map(lambda n: b"[" * n + b"]" * n),  # nesting too deep for json
    st.integers(1, 5000).map(lambda n: b'{"next_heartbeat_interval":' + b"9" * n + b"}"),
), st.sampled_from(["application/json", "text/html", ""]))
def test_fuzz_answers_as_bytes(raw: bytes, content_type: str) -> None:
    body = decode_body(raw, content_type)
    assert body is None or isinstance(body, dict)
    check_bounded(Assignment.from_json(body) if body is not None else None,
                  read_heartbeat_answer(exchange(body)))
