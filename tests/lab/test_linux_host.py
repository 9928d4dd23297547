"""The real daemon as systemd and udev see it on a generic Linux host.

Each test runs ``remsim-supervisor run`` in the rig (emulated modems on
ptys, a network namespace of its own) with what systemd would hand it:

* ``$NOTIFY_SOCKET`` bound by the test (a path, and an ``@`` name in the
  daemon's own network namespace): READY=1 from the daemon's pid once its
  control socket answers, STATUS= lines, WATCHDOG=1 at half of
  ``$WATCHDOG_USEC`` (none when ``$WATCHDOG_PID`` names another process),
  RELOADING=1 then READY=1 around a reload run as the unit's ``ExecReload``
  runs it (a broken file too), STOPPING=1 at SIGTERM;
* ``$JOURNAL_STREAM`` naming its stderr: every line with its ``<N>``
  priority, no timestamp, once; and into a real systemd-journald (of the
  test's own, in a private mount namespace, its journal on tmpfs) over a
  stream connected as systemd connects a service's, read back with
  ``journalctl``: each line once, with its priority;
* a real kernel uevent: writing ``add`` to a tty's ``uevent`` file (a virtual
  console nobody uses; the kernel only announces it again) reaches the
  daemon's pyudev monitor and its hotplug handler, with
  ``supervisor.usb_monitor`` set, and turned on by a reload;
* the ``ifup`` step running the configured ``ifdown_command`` and
  ``ifup_command``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from remsim_lab.rig import Rig
from tests.adapters.test_linux_host_parts import Manager, lines
from tests.netns import call_in_netns, netns
from tests.polling import wait

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "files/etc/systemd/system/remsim-supervisor.service"
TTY = "/devices/virtual/tty/tty63"


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    with Rig(tmp_path / "rig") as r:
        r.plug("modem1")
        r.plug("modem2")
        yield r


class Received:
    """Everything the daemon sent to the manager's socket, in order, with its pid."""

    def __init__(self, manager: Manager) -> None:
        self.manager = manager
        self.messages: list[tuple[int, list[str]]] = []

    def lines(self) -> list[str]:
        self.messages += self.manager.drain()
        return lines(self.messages)

    def wait(self, line: str, after: int = 0, timeout: float = 20.0) -> int:
        """The index (in :meth:`lines`) of ``line``'s first appearance after index ``after``."""
        def found() -> int | None:
            got = self.lines()
            return next((i + 1 for i in range(after, len(got)) if got[i] == line), None)
        return wait(f"{line} after line {after}", found, timeout) - 1

    def pids(self) -> set[int]:
        self.lines()
        return {pid for pid, _ in self.messages}


def exec_reload(pid: int) -> None:
    """The unit's ExecReload, run as systemd runs it ($MAINPID given)."""
    line = next(line for line in UNIT.read_text().splitlines() if line.startswith("ExecReload="))
    argv = [word.replace("$MAINPID", str(pid)) for word in shlex.split(line.split("=", 1)[1])]
    subprocess.run(argv, check=True, timeout=10)


def test_ready_status_watchdog_reload_and_stop_reach_systemd(rig: Rig, tmp_path: Path) -> None:
    address = str(tmp_path / "notify")
    manager = Manager(address)
    try:
        got = Received(manager)
        daemon = rig.start_daemon(env={"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "400000"})
        ready = got.wait("READY=1")
        assert rig.status()["pid"] == daemon.pid  # the control socket answers at READY=1
        assert got.pids() == {daemon.pid}
        assert "STATUS=starting" in got.lines()[:ready]
        status = got.lines()[ready + 1]
        assert status.startswith("STATUS=heartbeat via ") and "modem1" in status, status

        # WATCHDOG=1, again and again, at half of the 0.4 s asked for
        first = got.wait("WATCHDOG=1", ready)
        second = got.wait("WATCHDOG=1", first + 1)
        got.wait("WATCHDOG=1", second + 1)
        assert "systemd watchdog: 0.4 s, pinged every 0.2 s" in rig.log()

        # a frozen daemon pings no more (systemd would kill and restart it); thawed, it does
        daemon.send_signal(signal.SIGSTOP)
        try:
            wait("the daemon stopped", lambda: Path(f"/proc/{daemon.pid}/stat").read_text()
                 .rsplit(")", 1)[1].split()[0] == "T")
            frozen = len(got.lines())  # all it sent before it stopped is in
            time.sleep(1.0)  # two and a half watchdog intervals
            assert got.lines()[frozen:] == []
        finally:
            daemon.send_signal(signal.SIGCONT)
        got.wait("WATCHDOG=1", frozen)

        # systemctl reload: RELOADING=1, the file applied, READY=1
        mark = len(got.lines())
        exec_reload(daemon.pid)
        reloading = got.wait("RELOADING=1", mark)
        assert got.lines()[reloading + 1].startswith("MONOTONIC_USEC=")
        got.wait("READY=1", reloading)
        wait("the reload logged", lambda: "configuration reloaded" in rig.log())

        # a broken file: still RELOADING=1 ... READY=1, running on the old one
        good = rig.config_path.read_text()
        rig.config_path.write_text(good + "config modem 'modem3'\n\toption role 'boss'\n")
        mark = len(got.lines())
        exec_reload(daemon.pid)
        got.wait("READY=1", got.wait("RELOADING=1", mark))
        wait("the refusal logged", lambda: "configuration not applied" in rig.log()
             or "reload: " in rig.log())
        assert {m["name"] for m in rig.status()["modems"]} == {"modem1", "modem2"}
        rig.config_path.write_text(good)

        # systemctl stop: STOPPING=1, then an orderly exit
        mark = len(got.lines())
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(15) == 0
        got.wait("STOPPING=1", mark)
        assert got.pids() == {daemon.pid}
    finally:
        manager.close()


def test_an_abstract_socket_and_another_process_s_watchdog(tmp_path: Path) -> None:
    name = f"remsim-test-{uuid.uuid4().hex[:12]}"
    with netns("rsho") as ns, Rig(tmp_path / "rig") as rig:
        rig.plug("modem1")
        rig.plug("modem2")
        # An abstract name lives in a network namespace: bound in the daemon's.
        manager = call_in_netns(ns, Manager, b"\0" + name.encode())
        try:
            got = Received(manager)
            # WATCHDOG_PID names another process: pings every 0.1 s would be wrong.
            daemon = rig.start_daemon(netns=ns, env={
                "NOTIFY_SOCKET": "@" + name, "WATCHDOG_USEC": "200000", "WATCHDOG_PID": "1"})
            got.wait("READY=1")
            # a reload's READY=1 proves time passed with the daemon's loop turning
            for _ in range(3):
                mark = len(got.lines())
                daemon.send_signal(signal.SIGHUP)
                got.wait("READY=1", got.wait("RELOADING=1", mark))
            rig.wait_for(lambda s: s["uptime_s"] >= 1.0, 10, "a second of uptime")
            assert "WATCHDOG=1" not in got.lines()
            assert got.pids() == {daemon.pid}
            assert "systemd watchdog" not in rig.log()
        finally:
            rig.stop_daemon()
            manager.close()


def test_journal_lines_carry_their_priority_once_and_no_timestamp(rig: Rig) -> None:
    rig.log_path.touch()
    st = os.stat(rig.log_path)
    daemon = rig.start_daemon(env={"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
    rig.wait_for(lambda s: all(m["state"] == "registered" for m in s["modems"]), 30,
                 "both registered")
    rig.config_path.write_text(rig.config_path.read_text() + "config bogus 'x'\n")
    assert rig.request({"cmd": "reload"})["ok"] is False  # logged as an error
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(15) == 0
    log = rig.log().splitlines()
    running = [line for line in log if " running: modem1 (primary), modem2 (iot)" in line]
    assert len(running) == 1 and re.fullmatch(r"<6>remsim-supervisor \S+ running: .*",
                                              running[0]), running
    assert any(line.startswith("<7>") for line in log)  # log_level debug
    assert any(line.startswith("<3>reload: ") and "bogus" in line for line in log)
    assert "<6>stopped" in log
    # --log-stderr (the rig's) adds no second, timestamped copy
    assert not [line for line in log if re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", line)]


JOURNALD = "/lib/systemd/systemd-journald"
# journald's sockets and journal on tmpfs, in a mount namespace of its own: the
# host's journal (if any) is not touched, and all of it goes when journald ends.
PRIVATE_JOURNAL = ("mount --make-rprivate / && mount -t tmpfs tmpfs /run/systemd && "
                   "mkdir /run/systemd/journal && mount -t tmpfs tmpfs /run/log && "
                   "mount -t tmpfs tmpfs /var/log && exec " + JOURNALD)


@pytest.fixture
def journald(tmp_path: Path) -> Iterator[str]:
    """A real systemd-journald of the test's own; yields its root as seen from here."""
    if not (os.access(JOURNALD, os.X_OK) and shutil.which("unshare")
            and shutil.which("journalctl")):
        pytest.skip("systemd-journald, journalctl or unshare not installed")
    with open(tmp_path / "journald.out", "wb") as out:
        proc = subprocess.Popen(["unshare", "-m", "sh", "-c", PRIVATE_JOURNAL],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    root = f"/proc/{proc.pid}/root"
    try:
        wait("journald's stdout socket", lambda: proc.poll() is not None
             or os.path.exists(root + "/run/systemd/journal/stdout"), 15)
        assert proc.poll() is None, (tmp_path / "journald.out").read_text()
        yield root
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def journal_stream(root: str, identifier: str) -> socket.socket:
    """A stream to journald as systemd connects a service's stderr: the header, then lines."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(root + "/run/systemd/journal/stdout")
    # identifier, unit, priority, level prefix, forward to syslog, kmsg, console
    sock.sendall(f"{identifier}\n\n6\n1\n0\n0\n0\n".encode())
    sock.shutdown(socket.SHUT_RD)
    return sock


def test_the_real_journal_gets_each_line_once_with_its_priority(journald: str,
                                                                tmp_path: Path) -> None:
    with netns("rshj") as ns, Rig(tmp_path / "rig") as rig:
        rig.plug("modem1")
        rig.plug("modem2")
        rig.write_config()
        stream = journal_stream(journald, "remsim-supervisor")
        st = os.fstat(stream.fileno())
        env = {**rig.environment(), "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        # as the unit runs it: stdout and stderr the journal stream, --log-stderr or not
        rig.daemon = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-m", "remsim_supervisor", "run",
             "-c", str(rig.config_path), "--log-stderr"],
            stdin=subprocess.DEVNULL, stdout=stream.fileno(), stderr=stream.fileno(), env=env)
        stream.close()
        rig.wait_for(lambda s: all(m["state"] == "registered" for m in s["modems"]), 30,
                     "both registered")
        rig.config_path.write_text(rig.config_path.read_text() + "config bogus 'x'\n")
        assert rig.request({"cmd": "reload"})["ok"] is False
        assert rig.stop_daemon() == 0

        def entries() -> list[dict[str, Any]]:
            shown = subprocess.run(["journalctl", "-D", journald + "/run/log/journal", "-o",
                                    "json", "-t", "remsim-supervisor"],
                                   capture_output=True, text=True, timeout=30)
            got = [json.loads(line) for line in shown.stdout.splitlines()]
            return got if any(e["MESSAGE"] == "stopped" for e in got) else []
        got = wait("the daemon's lines in the journal", entries, 15)
    by_priority = {e["MESSAGE"]: e["PRIORITY"] for e in got}
    running = [e for e in got if " running: modem1 (primary), modem2 (iot)" in e["MESSAGE"]]
    assert len(running) == 1 and running[0]["PRIORITY"] == "6"  # once: --log-stderr adds none
    assert running[0]["MESSAGE"].startswith("remsim-supervisor ")  # no prefix, no timestamp
    assert "7" in by_priority.values()  # log_level debug
    errors = [m for m, p in by_priority.items() if p == "3"]
    assert any(m.startswith("reload: ") and "bogus" in m for m in errors), errors
    assert by_priority["stopped"] == "6"
    assert {e["_TRANSPORT"] for e in got} == {"stdout"}
    assert not [e for e in got if re.match(r"\d{4}-\d\d-\d\d |<\d>", e["MESSAGE"])]


def with_usb_monitor(rig: Rig, setting: str) -> None:
    text = rig.config_path.read_text() if rig.config_path.exists() \
        else rig.write_config().read_text()
    text = re.sub(r"\toption usb_monitor '[a-z]+'\n", "", text)
    head = "config supervisor 'main'\n"
    rig.config_path.write_text(text.replace(head, f"{head}\toption usb_monitor '{setting}'\n"))


def uevents(status: dict[str, Any]) -> dict[str, Any]:
    events: dict[str, Any] = status["events"]["uevents"]
    return events


def test_a_real_kernel_uevent_reaches_the_daemon_s_monitor(rig: Rig) -> None:
    uevent = Path("/sys" + TTY + "/uevent")
    if not os.access(uevent, os.W_OK):
        pytest.skip(f"{uevent} is not writable here")
    with_usb_monitor(rig, "off")
    rig.start_daemon()
    status = rig.wait_for(lambda s: all(m["state"] == "registered" for m in s["modems"]), 30,
                          "both registered")
    assert uevents(status)["source"] is None
    assert "no in-process USB monitor: supervisor.usb_monitor is off" in rig.log()

    # turned on by a reload
    with_usb_monitor(rig, "kernel")
    assert rig.request({"cmd": "reload"})["ok"] is True
    rig.wait_for(lambda s: uevents(s)["source"] == "kernel", 10, "the kernel monitor")
    assert "USB events from the kernel monitor (supervisor.usb_monitor is kernel)" in rig.log()
    before = int(Path("/sys/kernel/uevent_seqnum").read_text())
    hotplugs = rig.status()["events"]["hotplug"]

    uevent.write_text("add")

    def heard(s: dict[str, Any]) -> bool:
        last = uevents(s)["last"] or {}
        return last.get("DEVPATH") == TTY and int(last.get("SEQNUM", 0)) > before
    status = rig.wait_for(heard, 10, "the tty's add event")
    assert uevents(status)["last"]["ACTION"] == "add"
    assert status["events"]["hotplug"] > hotplugs  # the hotplug hooks' handler took it
    wait("the hotplug line", lambda: re.search(
        rf"hotplug tty ACTION=add DEVNAME=/dev/tty63 DEVPATH={TTY} SEQNUM=\d+ SUBSYSTEM=tty",
        rig.log()))
    assert re.search(rf"uevent tty add {TTY} \(seq \d+\)", rig.log())
    # harmless: the modems stay as they were
    assert all(m["state"] == "registered" for m in rig.status()["modems"])


def test_the_ifup_step_runs_the_configured_commands(rig: Rig, tmp_path: Path) -> None:
    record = tmp_path / "record"
    script = tmp_path / "ifscript"
    script.write_text(f"#!/bin/sh\necho \"$@\" >> {record}\n")
    script.chmod(0o755)
    rig.modems["modem2"].options["interface"] = "wwan_iot"
    rig.modems["modem2"].options["device"] = "wwan1"
    rig.write_config("config escalation 'ladder'\n"
                     f"\toption ifdown_command '{script} down {{interface}}'\n"
                     f"\toption ifup_command \"{script} up '{{interface}}'\"\n")
    text = rig.config_path.read_text().replace("config escalation 'watch_only'\n"
                                               "\toption enabled '0'\n", "")
    rig.config_path.write_text(text.replace("config escalation 'ladder'\n",
                                            "config escalation 'ladder'\n\toption enabled '0'\n"))
    check = subprocess.run([sys.executable, "-m", "remsim_supervisor", "check-config", "-c",
                            str(rig.config_path)], capture_output=True, text=True,
                           env=rig.environment(), timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr
    rig.start_daemon()
    rig.wait_state("modem2", "registered", 30)
    answer = rig.request({"cmd": "reset", "modem": "modem2", "level": "ifup", "timeout": 3},
                         timeout=30)
    assert answer["ok"] is True, answer
    assert record.read_text().splitlines() == ["down wwan_iot", "up wwan_iot"]


def test_a_disabled_configuration_is_a_clean_start_and_exit_for_systemd(tmp_path: Path) -> None:
    """`enabled 0` under Type=notify: READY=1 before the exit 0, so no failed start."""
    config = tmp_path / "remsim-supervisor"  # the shipped file says enabled '0'
    config.write_text((REPO / "files/etc/config/remsim-supervisor").read_text())
    manager = Manager(str(tmp_path / "notify"))
    try:
        env = {k: v for k, v in os.environ.items()
               if k not in ("JOURNAL_STREAM", "WATCHDOG_USEC", "WATCHDOG_PID")}
        env["NOTIFY_SOCKET"] = str(tmp_path / "notify")
        proc = subprocess.Popen([sys.executable, "-m", "remsim_supervisor", "run", "-c",
                                 str(config)], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        _out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        got = Received(manager)
        assert "READY=1" in got.lines()
        assert "STATUS=disabled in the configuration" in got.lines()
        assert got.pids() == {proc.pid}
    finally:
        manager.close()
