"""The parts for generic Linux hosts, each against the real thing it talks to.

sd_notify over a real AF_UNIX datagram socket (a path and the abstract
namespace), its watchdog pinged from the event loop (a blocked loop sends
nothing), the journal stream recognised by the device and inode of stderr,
the USB monitor's choice of source and its filter, the ``ifup`` step's
command lines, and their options as ``check-config`` reads them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from remsim_supervisor import log as logsetup
from remsim_supervisor.adapters import udevmon
from remsim_supervisor.adapters.sdnotify import SdNotify
from remsim_supervisor.config import ConfigError, parse_config
from remsim_supervisor.supervisor.hostservice import HostService, summary
from remsim_supervisor.supervisor.ifcommand import argv, restart_interface

# --- sd_notify ------------------------------------------------------------------------------


class Manager:
    """The service manager's end of $NOTIFY_SOCKET: datagrams with the sender's pid."""

    def __init__(self, address: str | bytes) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(address)
        self.sock.setblocking(False)

    def drain(self) -> list[tuple[int, list[str]]]:
        out = []
        while True:
            try:
                data, ancillary, _flags, _addr = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
            except BlockingIOError:
                return out
            pid = -1
            for level, kind, payload in ancillary:
                if (level, kind) == (socket.SOL_SOCKET, socket.SCM_CREDENTIALS):
                    pid = struct.unpack("iII", payload[:12])[0]
            out.append((pid, data.decode().split("\n")))

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[Manager]:
    m = Manager(str(tmp_path / "notify"))
    yield m
    m.close()


def lines(messages: list[tuple[int, list[str]]]) -> list[str]:
    return [line for _pid, ls in messages for line in ls]


def test_notifications_reach_a_path_socket_with_our_pid(tmp_path: Path, manager: Manager) -> None:
    n = SdNotify.from_environ({"NOTIFY_SOCKET": str(tmp_path / "notify")})
    assert n.active and n.watchdog_s is None
    n.ready("up")
    n.status("a  status\nwith a newline")
    n.status("a status with a newline")  # unchanged: not sent again
    n.reloading()
    n.stopping()
    got = manager.drain()
    n.close()
    assert {pid for pid, _ in got} == {os.getpid()}
    assert [ls[0] for _pid, ls in got] == ["READY=1", "STATUS=a status with a newline",
                                           "RELOADING=1", "STOPPING=1"]
    assert got[0][1] == ["READY=1", "STATUS=up"]
    assert got[2][1][1].startswith("MONOTONIC_USEC=") and got[2][1][1][15:].isdigit()


def test_an_abstract_socket_name_starts_with_at() -> None:
    name = f"remsim-test-{uuid.uuid4().hex}"
    m = Manager(b"\0" + name.encode())
    try:
        n = SdNotify.from_environ({"NOTIFY_SOCKET": "@" + name})
        n.ready()
        assert lines(m.drain()) == ["READY=1"]
        n.close()
    finally:
        m.close()


def test_no_socket_no_notifications_and_a_vanished_manager_is_survived(tmp_path: Path) -> None:
    assert not SdNotify.from_environ({}).active
    assert SdNotify.from_environ({}).notify("READY=1") is False
    assert not SdNotify.from_environ({"NOTIFY_SOCKET": "vsock:2:9"}).active
    gone = SdNotify.from_environ({"NOTIFY_SOCKET": str(tmp_path / "nobody")})
    assert gone.notify("READY=1") is False  # logged once, never raised
    assert gone.notify("READY=1") is False


@pytest.mark.parametrize(("environ", "expected"), [
    ({"WATCHDOG_USEC": "30000000"}, 30.0),
    ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 30.0),
    ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),  # another process's
    ({"WATCHDOG_USEC": "0"}, None),
    ({"WATCHDOG_USEC": "soon"}, None),
    ({}, None),
])
def test_the_watchdog_is_ours_only_when_its_pid_is(environ: dict[str, str],
                                                   expected: float | None) -> None:
    n = SdNotify.from_environ({"NOTIFY_SOCKET": "/run/x", **environ})
    assert n.watchdog_s == expected


def test_a_blocked_event_loop_misses_the_watchdog(tmp_path: Path, manager: Manager) -> None:
    """The pings come from the event loop: while a callback blocks it, none goes out."""
    environ = {"NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "100000"}
    status = {"heartbeat": {"path": "modem2"}, "grace": {"remaining_s": 290.0},
              "modems": [{"name": "modem2", "state": "connected"}]}
    host = HostService(environ, lambda s, e: None, lambda: status)
    seen: dict[str, Any] = {}

    async def scenario() -> None:
        task = asyncio.create_task(host.run())
        while lines(seen.setdefault("before", [])).count("WATCHDOG=1") < 3:
            await asyncio.sleep(0.05)
            seen["before"] += manager.drain()
        seen["before"] += manager.drain()
        time.sleep(0.6)  # the loop is stuck: six ping intervals pass in this call
        seen["during"] = manager.drain()
        while not lines(seen.setdefault("after", [])).count("WATCHDOG=1"):
            await asyncio.sleep(0.05)
            seen["after"] += manager.drain()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(asyncio.wait_for(scenario(), 10))
    host.close()
    first = lines(seen["before"])
    assert first[:2] == ["READY=1", "STATUS=heartbeat via modem2, 290 s of grace left; "
                                    "modem2 connected"]
    assert seen["during"] == []
    assert "WATCHDOG=1" in lines(seen["after"])


def test_the_status_line_says_path_grace_and_modems() -> None:
    assert summary({}) == "heartbeat via no path, grace ?; no modems"
    assert summary({"heartbeat": {"path": None}, "grace": {"remaining_s": 12.4},
                    "modems": [{"name": "m1", "state": "absent"},
                               {"name": "m2", "state": "registered"}]}) == (
        "heartbeat via no path, 12 s of grace left; m1 absent, m2 registered")


# --- the journal ------------------------------------------------------------------------------


def test_stderr_is_the_journal_only_when_device_and_inode_match(tmp_path: Path) -> None:
    target = tmp_path / "stream"
    with open(target, "w") as f:
        st = os.fstat(f.fileno())
        fd = f.fileno()
        assert logsetup.journal_stream({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}, fd)
        assert not logsetup.journal_stream({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino + 1}"},
                                           fd)
        assert not logsetup.journal_stream({"JOURNAL_STREAM": "garbage"}, fd)
        assert not logsetup.journal_stream({}, fd)


def test_journal_lines_carry_their_priority_and_no_timestamp(tmp_path: Path) -> None:
    """A child process whose stderr is the stream $JOURNAL_STREAM names, as systemd runs it."""
    out = tmp_path / "journal"
    code = (
        "import logging\n"
        "from remsim_supervisor import log\n"
        "log.setup('debug', to_stderr=True)\n"
        "l = logging.getLogger('remsim_supervisor.x')\n"
        "l.debug('d'); l.info('i'); l.warning('w'); l.error('e\\nsecond line')\n"
        "print(len(logging.getLogger().handlers), type(logging.getLogger().handlers[0]).__name__)\n"
    )
    with open(out, "w") as f:
        st = os.fstat(f.fileno())
        env = {**os.environ, "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        done = subprocess.run([sys.executable, "-c", code], stderr=f, stdout=subprocess.PIPE,
                              text=True, env=env, timeout=30, check=True)
    # one handler, the journal's: no syslog copy, no second stderr line
    assert done.stdout.split() == ["1", "JournalHandler"]
    assert out.read_text().splitlines() == ["<7>d", "<6>i", "<4>w", "<3>e", "<3>second line"]


# --- the USB monitor ---------------------------------------------------------------------------


def test_the_source_follows_the_setting_and_udev_s_presence(tmp_path: Path) -> None:
    control = tmp_path / "control"
    assert udevmon.choose_source("off", str(control))[0] is None
    source, why = udevmon.choose_source("auto", str(control))
    assert source is None and "no udev daemon runs" in why
    control.touch()
    assert udevmon.choose_source("auto", str(control))[0] == "udev"
    assert udevmon.choose_source("kernel", str(control))[0] == "kernel"
    assert udevmon.choose_source("udev", str(control))[0] == "udev"


def test_without_pyudev_there_is_no_monitor_and_one_line_says_why(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setitem(sys.modules, "pyudev", None)  # as on OpenWrt: import fails
    assert udevmon.choose_source("auto")[0] is None
    source, why = udevmon.choose_source("kernel")
    assert source is None and why.startswith("pyudev is not installed")
    monitor = udevmon.UeventMonitor(lambda s, e: None)
    with caplog.at_level(logging.DEBUG, "remsim_supervisor.adapters.udevmon"):
        assert monitor.start("kernel") is False
        assert monitor.start("kernel") is False  # the same setting again: nothing new said
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", "no in-process USB monitor: pyudev is not installed (the hotplug hooks "
                    "hand USB events over)")]
    assert monitor.status()["source"] is None


class Event:
    def __init__(self, **properties: str) -> None:
        self.properties = properties


@pytest.mark.parametrize(("props", "passed"), [
    ({"SUBSYSTEM": "usb", "DEVTYPE": "usb_device", "ACTION": "add"}, True),
    ({"SUBSYSTEM": "usb", "DEVTYPE": "usb_device", "ACTION": "unbind"}, True),
    ({"SUBSYSTEM": "usb", "DEVTYPE": "usb_interface", "ACTION": "add"}, False),
    ({"SUBSYSTEM": "usb", "DEVTYPE": "usb_device", "ACTION": "change"}, False),
    ({"SUBSYSTEM": "tty", "ACTION": "add"}, True),
    ({"SUBSYSTEM": "tty", "ACTION": "remove"}, True),
    ({"SUBSYSTEM": "tty", "ACTION": "change"}, False),
    ({"SUBSYSTEM": "net", "ACTION": "add"}, False),
    ({"ACTION": "add"}, False),
])
def test_whole_usb_devices_and_ttys_are_passed_on(props: dict[str, str], passed: bool) -> None:
    got: list[tuple[str, dict[str, str]]] = []
    monitor = udevmon.UeventMonitor(lambda s, e: got.append((s, e)))
    monitor._deliver(Event(DEVPATH="/devices/x", SEQNUM="7", MAJOR="4", **props))
    assert bool(got) == passed
    if passed:
        subsystem, env = got[0]
        assert subsystem == props["SUBSYSTEM"]
        assert env["DEVPATH"] == "/devices/x" and "MAJOR" not in env
        assert monitor.status()["passed"] == 1


def test_the_kernel_monitor_hears_a_real_uevent_in_the_event_loop() -> None:
    """A tty's own ``uevent`` file: writing ``add`` makes the kernel announce it again."""
    device = "/sys/devices/virtual/tty/tty63"
    if not os.access(f"{device}/uevent", os.W_OK):
        pytest.skip(f"{device}/uevent is not writable here")
    got: list[dict[str, str]] = []

    async def scenario() -> None:
        monitor = udevmon.UeventMonitor(lambda s, e: got.append(e))
        assert monitor.start("kernel")
        try:
            Path(f"{device}/uevent").write_text("add")
            while not any(e.get("DEVPATH") == "/devices/virtual/tty/tty63" for e in got):
                await asyncio.sleep(0.02)
        finally:
            monitor.stop()

    asyncio.run(asyncio.wait_for(scenario(), 10))
    event = next(e for e in got if e.get("DEVPATH") == "/devices/virtual/tty/tty63")
    assert event["ACTION"] == "add" and event["SUBSYSTEM"] == "tty"
    assert event["DEVNAME"] == "/dev/tty63" and event["SEQNUM"].isdigit()


# --- the ifup step ------------------------------------------------------------------------------


def test_the_interface_takes_the_placeholder_s_place_or_is_appended() -> None:
    assert argv(("nmcli", "connection", "up", "{interface}"), "iot") == [
        "nmcli", "connection", "up", "iot"]
    assert argv(("ifup",), "wwan") == ["ifup", "wwan"]  # OpenWrt's, and the lab hook's
    assert argv(("tool", "--if={interface}"), "a b") == ["tool", "--if=a b"]  # one word


def test_ifdown_runs_before_ifup_and_only_ifup_decides(tmp_path: Path) -> None:
    record = tmp_path / "record"
    script = tmp_path / "ifscript"
    script.write_text(f"#!/bin/sh\necho \"$@\" >> {record}\n[ \"$1\" = up ]\n")
    script.chmod(0o755)
    up = (str(script), "up", "{interface}")
    down = (str(script), "down", "{interface}")
    assert asyncio.run(restart_interface(up, down, "wwan_iot", 10)) is True
    assert record.read_text().splitlines() == ["down wwan_iot", "up wwan_iot"]
    assert asyncio.run(restart_interface(down, None, "x", 10)) is False  # exits 1: failed
    assert asyncio.run(restart_interface((str(tmp_path / "missing"),), None, "x", 10)) is False


BASE = ("config ionmesh 'ionmesh'\n\toption url 'http://h:5000'\n"
        "config modem 'm'\n\toption role 'primary'\n\toption usb_path '1-1'\n")


def test_the_options_are_read_as_command_lines_and_sources() -> None:
    config = parse_config(
        "config supervisor 'main'\n\toption usb_monitor 'Kernel'\n" + BASE
        + "config escalation 'escalation'\n"
        "\toption ifup_command \"nmcli connection up '{interface}'\"\n"
        "\toption ifdown_command 'ifdown {interface}'\n", "/c")
    assert config.supervisor.usb_monitor == "kernel"
    assert config.escalation.ifup_command == ("nmcli", "connection", "up", "{interface}")
    assert config.escalation.ifdown_command == ("ifdown", "{interface}")
    default = parse_config(BASE, "/c")
    assert (default.supervisor.usb_monitor, default.escalation.ifup_command,
            default.escalation.ifdown_command) == ("auto", None, None)


@pytest.mark.parametrize(("value", "problem"), [
    ("ifup", "must name the interface as {interface}, as in 'nmcli connection up {interface}'"),
    ("ifup {iface}", "unknown placeholder {iface}: only {interface} is replaced"),
    ("{interface} up", "must start with the program, not {interface}"),
    ("ifup \"{interface}", "cannot be split into words (No closing quotation)"),
    ("   ", None),  # '' unsets, as UCI does
])
def test_a_bad_command_line_is_one_line_naming_the_option(value: str, problem: str | None) -> None:
    text = BASE + f"config escalation 'escalation'\n\toption ifup_command '{value}'\n"
    if problem is None:
        assert parse_config(text, "/c").escalation.ifup_command is None
        return
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "/c")
    assert len(caught.value.problems) == 1
    assert str(caught.value).startswith(f"/c:7: escalation.ifup_command: {problem}")
    assert "\n" not in str(caught.value)


def test_a_wrong_monitor_source_names_the_choices() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config("config supervisor 'main'\n\toption usb_monitor 'pyudev'\n" + BASE, "/c")
    assert str(caught.value) == ("/c:2: main.usb_monitor: must be one of auto, udev, "
                                 "kernel, off, not 'pyudev'")


@pytest.fixture(autouse=True)
def _quiet_root_logger() -> Iterator[None]:
    yield
    logging.getLogger().handlers.clear()
