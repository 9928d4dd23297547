"""SMS beside the supervisor: a program holding a modem's main AT port means the other one.

The rig's emulated EC25 answers on both of its AT ports (``ttyUSB2``, the
main one, and ``ttyUSB3``), each on its own pseudo-terminal. A stand-in for
smsd, a separate process named ``smsd``, takes the main port as smsd does:
it writes the UUCP lock file with its pid, opens the tty and talks AT on it.
The real daemon must then work the modem over ``ttyUSB3``, never open
``ttyUSB2`` at all (watched with inotify on the pty itself), and say in its
status which port it uses and why. A lock file whose pid is dead is no hold.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from remsim_lab.openwatch import OpenWatch
from remsim_lab.rig import Rig, RigModem
from tests.polling import wait

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the rig's daemon runs as root")

#: A small smsd: lock the port the UUCP way (its own code, not the supervisor's),
#: open it, check it answers, then hold it; its process name is "smsd".
SMSD = r"""
import ctypes, os, select, signal, sys, time
ctypes.CDLL(None).prctl(15, b"smsd", 0, 0, 0)  # PR_SET_NAME: /proc/PID/comm
tty, lock_dir = sys.argv[1], sys.argv[2]
real = os.path.realpath(tty)
name = real[len("/dev/"):] if real.startswith("/dev/") else os.path.basename(real)
lock = os.path.join(lock_dir, "LCK.." + name.replace("/", "_"))
fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
os.write(fd, b"%10d\n" % os.getpid())
os.close(fd)
signal.signal(signal.SIGTERM, lambda *a: (os.unlink(lock), os._exit(0)))
port = os.open(tty, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
os.write(port, b"AT\r")
seen, deadline = b"", time.monotonic() + 5
while b"OK" not in seen and time.monotonic() < deadline:
    select.select([port], [], [], 0.2)
    try:
        seen += os.read(port, 256)
    except BlockingIOError:
        pass
print("ready" if b"OK" in seen else f"no answer: {seen!r}", flush=True)
while True:
    time.sleep(1)
"""


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    modem = RigModem("modem1", "primary", "ec25", "1-1", 0x2C7C, 0x0125, all_at_ports=True)
    with Rig(tmp_path / "rig", [modem]) as r:
        yield r


@pytest.fixture
def smsd(rig: Rig) -> Iterator[subprocess.Popen[str]]:
    main = rig.plug("modem1")
    assert rig.emulator("modem1").wait_booted(5)
    proc = subprocess.Popen([sys.executable, "-c", SMSD, main, str(rig.lock_dir)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready", "the smsd stand-in got no answer"
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(5)


def cli_status(rig: Rig, *args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "remsim_supervisor", "status", *args,
                          "-c", str(rig.config_path)],
                         capture_output=True, text=True, timeout=30, env=rig.environment())
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_smsd_on_the_main_port_means_the_daemon_talks_on_the_second(
        rig: Rig, smsd: subprocess.Popen[str]) -> None:
    emu = rig.emulator("modem1")
    main = emu.slave_path
    assert main is not None and set(emu.extra_slave_paths) == {1}
    watch = OpenWatch(main)
    try:
        rig.start_daemon()
        status = rig.wait_for(
            lambda s: rig.modem_status("modem1", s)["state"] == "registered", 30,
            "modem1 registered beside smsd")
        m1 = rig.modem_status("modem1", status)
        assert m1["at_port"] == os.path.join(rig.sysfs.dev_root, "ttyUSB3")
        assert m1["at_port_reason"] == f"ttyUSB2 held by pid {smsd.pid} (smsd)"
        assert "at_ports_held" not in m1
        assert m1["model"] == "ec25" and m1["registration"] == "home"

        # The daemon worked the modem on port 1 only; on the main port only smsd spoke.
        by_port = list(emu.model.commands_by_port)
        assert ("AT+CGMI" in {c for p, c in by_port if p == 1}), by_port
        assert [c for p, c in by_port if p == 0] == ["AT"], by_port

        # Every face of the status says it: JSON, the screen, the status file.
        shown = json.loads(cli_status(rig, "--json"))
        assert rig.modem_status("modem1", shown)["at_port_reason"] == m1["at_port_reason"]
        screen = cli_status(rig)
        assert f"AT port not the main one: ttyUSB2 held by pid {smsd.pid} (smsd)" in screen
        status_file = rig.root / "state" / "status.json"
        wait("the status file to name the reason", lambda: status_file.exists() and any(
            m.get("at_port_reason") == m1["at_port_reason"]
            for m in json.loads(status_file.read_text() or "{}").get("modems", [])))
        log = rig.log()
        assert (f"modem1: ttyUSB2 held by pid {smsd.pid} (smsd) (lock file "
                f"{rig.lock_dir}/LCK..") in log
        assert "using ttyUSB3 instead" in log

        # smsd goes: the daemon stays where it is (no churn), still never touching ttyUSB2.
        smsd.terminate()
        smsd.wait(5)
        assert not any(rig.lock_dir.glob(f"LCK..{main[len('/dev/'):].replace('/', '_')}"))
        time.sleep(1.0)
        m1 = rig.modem_status("modem1")
        assert (m1["state"], m1["at_port"]) == (
            "registered", os.path.join(rig.sysfs.dev_root, "ttyUSB3"))
        assert watch.opens() == 0, "the daemon opened the port smsd held"
        assert [c for p, c in emu.model.commands_by_port if p == 0] == ["AT"]
        assert rig.stop_daemon() == 0
        os.close(os.open(main, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK))
        assert watch.opens() == 1  # the watch sees an open when there is one
    finally:
        watch.close()


def test_a_stale_lock_file_is_no_hold(rig: Rig) -> None:
    main = rig.plug("modem1")
    dead = subprocess.Popen(["true"])
    dead.wait()
    real = os.path.realpath(main)
    lock = rig.lock_dir / ("LCK.." + real[len("/dev/"):].replace("/", "_"))
    lock.write_text(f"{dead.pid:10d}\n")
    rig.start_daemon()
    m1 = rig.wait_state("modem1", "registered", 30)
    assert m1["at_port"] == main
    assert "at_port_reason" not in m1
    assert f"stale lock file {lock} names pid {dead.pid}, which is not running: not a hold" \
        in rig.log()
    daemon = rig.daemon
    assert daemon is not None
    assert lock.read_text() == f"{daemon.pid:10d}\n"  # ours now, while we hold the port
    assert [c for p, c in rig.emulator("modem1").model.commands_by_port if p == 1] == []
    assert rig.stop_daemon() == 0
    assert not lock.exists()


def test_every_at_port_held_is_reported_and_left_alone(
        rig: Rig, smsd: subprocess.Popen[str]) -> None:
    second = os.path.join(rig.sysfs.dev_root, "ttyUSB3")
    other = subprocess.Popen([sys.executable, "-c", SMSD, second, str(rig.lock_dir)],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout is not None and other.stdout.readline().strip() == "ready"
        rig.start_daemon()
        held = (f"every AT port is held: ttyUSB2 held by pid {smsd.pid} (smsd); "
                f"ttyUSB3 held by pid {other.pid} (smsd)")
        status = rig.wait_for(
            lambda s: rig.modem_status("modem1", s).get("at_port_reason") == held, 30,
            "modem1 reported as held on every port")
        m1 = rig.modem_status("modem1", status)
        assert (m1["state"], m1["at_port"], m1["at_ports_held"]) == ("absent", None, True)
        assert m1["reason"] == held
        assert "takes no reset step on it while the holder works it" in rig.log()
        assert "AT ports held: every AT port is held" in cli_status(rig)
        emu = rig.emulator("modem1")
        assert {c for p, c in emu.model.commands_by_port if p == 1} == {"AT"}

        # The second holder leaves: the daemon takes that port within its rescan.
        other.terminate()
        other.wait(5)
        m1 = rig.wait_state("modem1", "registered", 30)
        assert m1["at_port"] == second
        assert m1["at_port_reason"] == f"ttyUSB2 held by pid {smsd.pid} (smsd)"
        assert rig.stop_daemon() == 0
    finally:
        if other.poll() is None:
            other.terminate()
            other.wait(5)


def test_the_stand_in_locks_as_the_supervisor_reads(rig: Rig) -> None:
    """The stand-in's lock file is the one the supervisor's reader names (no drift)."""
    from remsim_supervisor.adapters.serialport import UucpLock

    main = rig.plug("modem1")
    assert rig.emulator("modem1").wait_booted(5)
    proc = subprocess.Popen([sys.executable, "-c", SMSD, main, str(rig.lock_dir)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        holder = UucpLock(main, str(rig.lock_dir)).holder()
        assert holder is not None and (holder.pid, holder.program) == (proc.pid, "smsd")
    finally:
        proc.terminate()
        proc.wait(5)
    assert UucpLock(main, str(rig.lock_dir)).holder() is None
