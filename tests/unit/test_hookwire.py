"""core/hookwire.py: what the daemon takes of a ``ubus listen remsim-supervisor.hook`` line."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from remsim_supervisor.core.hookwire import (
    HOOK_EVENT,
    MAX_LINE,
    MAX_VALUE,
    MAX_VARIABLES,
    EventHook,
    HotplugHook,
    Probe,
    WireError,
    event_environment,
    parse_line,
)
from remsim_supervisor.supervisor.hooklisten import origin_of, ready_file_for


def line(body: Any) -> bytes:
    # as `ubus listen` prints it: { "TYPE": BODY }
    return f'{{ "{HOOK_EVENT}": {json.dumps(body)} }}'.encode()


def test_an_event_with_its_origin() -> None:
    got = parse_line(line({"hook": "event", "cause": "request-sim-remote",
                           "env": {"REMSIM_BANKD_ADDR": "203.0.113.30:9999",
                                   "REMSIM_SUPERVISOR_STATE_DIR": "/tmp/x", "PATH": "/bin",
                                   "OPENWRT_MODEM_DEVICE": "wwan0"},
                           "origin": {"pid": "4242", "ticks": "9876543210123"}}))
    assert got == EventHook("request-sim-remote",
                            {"OPENWRT_MODEM_DEVICE": "wwan0",
                             "REMSIM_BANKD_ADDR": "203.0.113.30:9999"}, 4242, 9876543210123)


def test_an_event_without_origin_and_a_hotplug_and_a_probe() -> None:
    assert parse_line(line({"hook": "event", "cause": "event-modem-status"})) == \
        EventHook("event-modem-status", {}, None, None)
    assert parse_line(line({"hook": "hotplug", "subsystem": "usb",
                            "env": {"ACTION": "add", "DEVPATH": "/devices/x\x01y"}})) == \
        HotplugHook("usb", {"ACTION": "add", "DEVPATH": "/devices/xy"})
    assert parse_line(line({"probe": "0123abcd"})) == Probe("0123abcd")


@pytest.mark.parametrize(("raw", "why"), [
    (b"Command failed", "not JSON"),
    (b"\xff\xfe", "not JSON"),
    (b'{ "other.event": {} }', "not a remsim-supervisor.hook event"),
    (line([1, 2]), "the message is not an object"),
    (line({"hook": "bogus"}), "hook is neither"),
    (line({"hook": "event", "cause": "Request; reboot"}), "no cause"),
    (line({"hook": "event", "cause": "request-sim-remote", "env": []}), "env is not an object"),
    (line({"hook": "event", "cause": "request-sim-remote", "env": {"REMSIM_X": 1}}),
     "not strings"),
    (line({"hook": "event", "cause": "request-sim-remote", "origin": {"pid": "0", "ticks": "1"}}),
     "not a process"),
    (line({"hook": "event", "cause": "request-sim-remote", "origin": {"pid": 7, "ticks": "1"}}),
     "pid is not a number"),
    (line({"hook": "event", "cause": "request-sim-remote", "origin": "now"}), "not an object"),
    (line({"hook": "hotplug", "subsystem": "pci"}), "subsystem"),
    (line({"hook": "hotplug", "subsystem": "iface", "env": {"a b": "x"}}), "NAME_LIKE_THIS"),
    (line({"hook": "hotplug", "subsystem": "iface",
           "env": {f"V{i}": "x" for i in range(MAX_VARIABLES + 1)}}), "more than"),
    (line({"probe": "a b"}), "without a token"),
    (b"x" * (MAX_LINE + 1), "longer than"),
])
def test_what_is_not_a_message_says_why_in_one_line(raw: bytes, why: str) -> None:
    with pytest.raises(WireError) as caught:
        parse_line(raw)
    assert why in str(caught.value) and "\n" not in str(caught.value)


def test_the_variable_rule_caps_and_cleans() -> None:
    env = {f"REMSIM_V{i:02}": "x" * (MAX_VALUE + 5) for i in range(MAX_VARIABLES + 3)}
    env["REMSIM_CLIENT_SLOT"] = "0:1\x1b[31m\x85"
    got = event_environment(env)
    assert len(got) == MAX_VARIABLES
    assert got["REMSIM_CLIENT_SLOT"] == "0:1[31m"
    assert all(len(v) <= MAX_VALUE for v in got.values())


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=300),
                 st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                              lambda kids: st.lists(kids, max_size=4)
                              | st.dictionaries(st.text(max_size=12), kids, max_size=4),
                              max_leaves=12).map(lambda body: line({"hook": "event", **body}
                                                                   if isinstance(body, dict)
                                                                   else body))))
def test_hostile_lines_are_a_message_or_a_wire_error(raw: bytes) -> None:
    try:
        message = parse_line(raw)
    except WireError:
        return
    assert isinstance(message, EventHook | HotplugHook | Probe)


def test_the_ready_file_sits_beside_the_control_socket() -> None:
    assert ready_file_for("/var/run/remsim-supervisor.sock") == "/var/run/remsim-supervisor.ubus"
    assert ready_file_for("/tmp/ctl") == "/tmp/ctl.ubus"


def test_the_origin_gets_its_age_on_arrival() -> None:
    assert origin_of(4242, 1000, now_boottime=10.25, hz=100) == \
        {"pid": 4242, "ticks": 1000, "age_s": 0.25}
    assert origin_of(4242, 2000, now_boottime=10.0, hz=100)["age_s"] == 0.0  # type: ignore[index]
    assert origin_of(None, 1000, 10.0, 100) is None
