"""The control socket: request checks, limits, and what sits at its path.

Pure checks first (:func:`parse_request`, :func:`json_depth`, the socket
path), then the real daemon over the rig answering hostile clients.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from remsim_lab.rig import Rig
from remsim_supervisor.supervisor import control
from remsim_supervisor.supervisor.control import (
    MAX_CONNECTIONS,
    MAX_DEPTH,
    MAX_REQUEST,
    BadRequest,
    NotASocket,
    clear_stale_socket,
    json_depth,
    parse_request,
)
from tests.fuzzing import examples

# --------------------------------------------------------------------------
# Requests


def test_good_requests_pass_unchanged() -> None:
    for request in ({"cmd": "status"}, {"cmd": "reload"},
                    {"cmd": "at", "modem": "modem1", "command": "AT+CSQ", "timeout": 5},
                    {"cmd": "at", "modem": "modem1", "command": "AT", "timeout": None},
                    {"cmd": "reset", "modem": "modem1", "level": "soft_reset", "timeout": 2.5},
                    {"cmd": "hotplug", "subsystem": "iface", "env": {"ACTION": "ifup"}},
                    {"cmd": "event", "cause": "event-modem-status", "env": {},
                     "origin": {"pid": 1}}):
        assert parse_request(control.encode(request)) == request


@pytest.mark.parametrize(("line", "message"), [
    (b"", "empty request"),
    (b"\xff\xfe\n", "not UTF-8"),
    (b"{nope\n", "not JSON"),
    (b"[1, 2]\n", "must be a JSON object"),
    (b'{"cmd": 7}\n', '"cmd" as a string'),
    (b'{"cmd": "format-disk"}\n', "unknown request 'format-disk'"),
    (b'{"cmd": "at", "modem": ["modem1"], "command": "AT"}\n', "'modem' must be a string"),
    (b'{"cmd": "at", "modem": "m", "command": "AT", "timeout": "5"}\n',
     "'timeout' must be a number"),
    (b'{"cmd": "at", "modem": "m", "command": "AT", "timeout": true}\n',
     "'timeout' must be a number"),
    (b'{"cmd": "at", "modem": "m", "command": "AT", "timeout": -1}\n', "more than 0"),
    (b'{"cmd": "at", "modem": "m", "command": "AT", "timeout": 1e400}\n', "at most 600"),
    (b'{"cmd": "at", "modem": "m", "command": "AT", "timeout": NaN}\n', "more than 0"),
    (b'{"cmd": "at", "modem": "m"}\n', "'command' is required"),
    (b'{"cmd": "hotplug", "env": [1]}\n', "'env' must be an object"),
    (b'{"cmd": "hotplug", "env": {"ACTION": {"x": 1}}}\n', "env 'ACTION' must be a string"),
    (b'{"cmd": "event", "cause": "x", "origin": "me"}\n', "'origin' must be an object"),
    (b'{"cmd": "reset", "modem": "m", "timeout": 10000}\n', "at most 3600"),
])
def test_bad_requests_get_one_line_each(line: bytes, message: str) -> None:
    with pytest.raises(BadRequest, match=message.replace("(", r"\(")) as caught:
        parse_request(line)
    assert "\n" not in str(caught.value)


def test_deep_nesting_is_refused_before_the_decoder_recurses() -> None:
    deep = b'{"cmd": "status", "x": ' + b"[" * 200_00 + b"]" * 200_00 + b"}"
    with pytest.raises(BadRequest, match=f"deeper than {MAX_DEPTH}"):
        parse_request(deep)
    nested = b'{"cmd": "status", "x": ' + b"[" * (MAX_DEPTH - 1) + b"]" * (MAX_DEPTH - 1) + b"}"
    assert parse_request(nested)["cmd"] == "status"


def test_json_depth_ignores_brackets_in_strings() -> None:
    assert json_depth('{"a": "[[[{{{", "b": [1, {"c": "\\"]]"}]}', 50) == 3
    assert json_depth("[" * 100, 5) == 6  # stops counting past the limit


def test_oversized_request_is_refused() -> None:
    line = control.encode({"cmd": "hotplug", "env": {"X": "y" * MAX_REQUEST}})
    with pytest.raises(BadRequest, match=f"larger than {MAX_REQUEST} bytes"):
        parse_request(line)


@pytest.mark.fuzz
@settings(max_examples=examples(1000), deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_are_a_request_or_one_bad_request_line(line: bytes) -> None:
    try:
        request = parse_request(line)
    except BadRequest as exc:
        assert str(exc) and "\n" not in str(exc)
    else:
        assert isinstance(request, dict) and isinstance(request["cmd"], str)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=3),
    max_leaves=12)


@pytest.mark.fuzz
@settings(max_examples=examples(300), deadline=None)
@given(st.sampled_from(sorted(control._FIELDS)),
       st.dictionaries(st.sampled_from(["modem", "command", "timeout", "level", "env",
                                        "subsystem", "cause", "origin", "other"]), JSON,
                       max_size=5))
def test_any_json_fields_are_checked_or_refused(cmd: str, fields: dict[str, object]) -> None:
    line = json.dumps({**fields, "cmd": cmd}).encode()
    try:
        request = parse_request(line)
    except BadRequest as exc:
        assert "\n" not in str(exc)
        return
    for name, types in control._FIELDS[cmd].items():
        value = request.get(name)
        assert value is None or (isinstance(value, types) and not isinstance(value, bool))
    if "timeout" in control._FIELDS[cmd] and request.get("timeout") is not None:
        assert 0 < request["timeout"] <= control.MAX_TIMEOUT_S[cmd]


# --------------------------------------------------------------------------
# The socket's path


def test_stale_socket_is_removed(tmp_path: Path) -> None:
    path = str(tmp_path / "ctl.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.close()  # bound, never listening: what a crash leaves
    clear_stale_socket(path)
    assert not os.path.exists(path)


@pytest.mark.parametrize("kind", ["file", "directory", "symlink"])
def test_anything_but_a_socket_is_left_alone(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "ctl.sock"
    if kind == "file":
        path.write_text("precious\n")
    elif kind == "directory":
        path.mkdir()
    else:
        (tmp_path / "target").write_text("precious\n")
        path.symlink_to(tmp_path / "target")
    with pytest.raises(NotASocket, match="not a socket: left untouched") as caught:
        clear_stale_socket(str(path))
    assert "\n" not in str(caught.value)
    assert os.path.lexists(path)
    if kind == "file":
        assert path.read_text() == "precious\n"
    control.remove_socket(str(path))  # the stop's removal spares it too
    assert os.path.lexists(path)


# --------------------------------------------------------------------------
# The real daemon


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    with Rig(tmp_path / "rig") as r:
        yield r


def raw(path: str, data: bytes, timeout: float = 10.0) -> bytes:
    """Send ``data`` as is and read the answer line."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        try:
            sock.sendall(data)
        except BrokenPipeError:
            pass  # the daemon answered and closed before reading it all
        buffer = b""
        while not buffer.endswith(b"\n"):
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            buffer += chunk
    return buffer


def error_of(answer: bytes) -> str:
    assert answer.count(b"\n") == 1, answer
    message = json.loads(answer)
    assert message["ok"] is False, message
    error = str(message["error"])
    assert "\n" not in error
    return error


def test_hostile_clients_get_one_line_and_the_daemon_still_answers(rig: Rig) -> None:
    rig.plug("modem1")
    rig.plug("modem2")
    rig.start_daemon()
    rig.wait_state("modem1", "registered", 30)

    deep = b'{"cmd": "status", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n"
    assert "request larger than" in error_of(raw(rig.socket, deep))
    nested = b'{"cmd": "status", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}\n"
    assert "deeper than" in error_of(raw(rig.socket, nested))
    assert "'timeout' must be a number" in error_of(raw(rig.socket, (
        b'{"cmd": "at", "modem": "modem1", "command": "AT", "timeout": [1]}\n')))
    assert "'env' must be an object" in error_of(raw(rig.socket, (
        b'{"cmd": "event", "cause": "event-modem-status", "env": "x"}\n')))
    assert "'modem' must be a string" in error_of(raw(rig.socket, (
        b'{"cmd": "reset", "modem": {"a": 1}}\n')))
    assert "not JSON" in error_of(raw(rig.socket, b'{"cmd": "status"\n'))
    big = b'{"cmd": "hotplug", "env": {"X": "' + b"y" * (2 * MAX_REQUEST) + b'"}}\n'
    assert "request larger than" in error_of(raw(rig.socket, big))

    # Idle connections: the first MAX_CONNECTIONS are held until their idle
    # timeout, every one beyond is told at once.
    idle = []
    try:
        for _ in range(MAX_CONNECTIONS):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(10)
            sock.connect(rig.socket)
            idle.append(sock)
        time.sleep(0.3)
        t0 = time.monotonic()
        busy = raw(rig.socket, control.encode({"cmd": "status"}))
        assert "busy: more than" in error_of(busy)
        assert time.monotonic() - t0 < 1.0
        # The held ones are answered and closed after the idle timeout.
        answers = []
        for sock in idle:
            buffer = b""
            while not buffer.endswith(b"\n"):
                chunk = sock.recv(4096)
                if not chunk:
                    break
                buffer += chunk
            answers.append(buffer)
        assert time.monotonic() - t0 < control.IDLE_TIMEOUT_S + 3
        for answer in answers:
            assert "no complete request within" in error_of(answer)
    finally:
        for sock in idle:
            sock.close()

    # The daemon answers as before, and none of this is a failure of its own.
    assert rig.status()["modems"]
    log = rig.log()
    assert "Traceback" not in log and "internal error" not in log
    assert "control request" not in log


def test_regular_file_at_control_socket_survives_and_start_is_refused(rig: Rig) -> None:
    Path(rig.socket).write_text("not a socket\n")
    rig.write_config()
    daemon = rig.start_daemon()
    assert daemon.wait(30) == 2
    rig.stop_daemon()
    assert Path(rig.socket).read_text() == "not a socket\n"
    log = rig.log()
    refusals = [ln for ln in log.splitlines() if ln.startswith("remsim-supervisor: ")]
    assert len(refusals) == 1, log
    assert "is a regular file, not a socket: left untouched" in refusals[0]
    assert "Traceback" not in log
