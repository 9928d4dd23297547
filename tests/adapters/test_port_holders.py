"""Who holds a port, over real pseudo-terminals and real holder processes.

Each holder is a separate process named as the program it stands for
(``/proc/PID/comm`` set with prctl), holding a pty's slave the way that
program does: a UUCP lock file, an exclusive flock, TIOCEXCL. The
supervisor's port must report it by pid and name, never fight for it, and
never open a port a live lock file names.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pty
import subprocess
import sys
import termios
import tty
from collections.abc import Iterator
from pathlib import Path

import pytest

from remsim_lab.openwatch import OpenWatch
from remsim_supervisor.adapters.portlock import Holder, UucpLock
from remsim_supervisor.adapters.serialport import PortBusy, SerialPort

#: A holder: its name, then how it holds argv[1] ("flock", "excl" or "open").
HOLDER = r"""
import ctypes, fcntl, os, sys, termios, time
ctypes.CDLL(None).prctl(15, sys.argv[3].encode(), 0, 0, 0)
fd = os.open(sys.argv[1], os.O_RDWR | os.O_NOCTTY)
if sys.argv[2] == "flock":
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
elif sys.argv[2] == "excl":
    fcntl.ioctl(fd, termios.TIOCEXCL)
print("holding", flush=True)
time.sleep(60)
"""


@pytest.fixture
def slave(tmp_path: Path) -> Iterator[str]:
    master, slave_fd = pty.openpty()
    tty.setraw(slave_fd)
    path = os.ttyname(slave_fd)
    os.close(slave_fd)
    link = tmp_path / "ttyUSB2"
    link.symlink_to(path)
    yield str(link)
    os.close(master)


def hold(path: str, how: str, name: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, path, how, name],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "holding"
    return proc


def open_port(path: str, lock_dir: Path) -> PortBusy:
    async def main() -> PortBusy:
        port = SerialPort(path, lock_dir=str(lock_dir))
        try:
            await port.open()
        except PortBusy as exc:
            return exc
        await port.close()
        raise AssertionError(f"{path} opened though it is held")

    return asyncio.run(main())


def test_a_flock_holder_is_named_from_proc_locks(slave: str, tmp_path: Path) -> None:
    proc = hold(slave, "flock", "minicom")
    try:
        busy = open_port(slave, tmp_path)
        assert "exclusively" in str(busy)
        assert busy.holder == Holder("ttyUSB2", proc.pid, "minicom", "exclusive lock")
        assert busy.holder.describe() == f"ttyUSB2 held by pid {proc.pid} (minicom)"
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.skipif(os.geteuid() != 0, reason="the root case: the kernel does not stop root")
def test_tiocexcl_is_honoured_also_by_root_and_the_line_left_as_it_was(
        slave: str, tmp_path: Path) -> None:
    proc = hold(slave, "excl", "pppd")
    try:
        fd = os.open(slave, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)  # root passes TIOCEXCL
        try:
            attrs = termios.tcgetattr(fd)
            attrs[4] = attrs[5] = termios.B9600
            termios.tcsetattr(fd, termios.TCSANOW, attrs)
            busy = open_port(slave, tmp_path)
            assert "TIOCEXCL" in str(busy)
            assert busy.holder is not None
            assert (busy.holder.pid, busy.holder.program) == (proc.pid, "pppd")
            # Asked without configuring: the holder's line speed is untouched.
            assert termios.tcgetattr(fd)[4] == termios.B9600
        finally:
            os.close(fd)
    finally:
        proc.kill()
        proc.wait()


def test_a_port_a_live_lock_file_names_is_never_opened(slave: str, tmp_path: Path) -> None:
    proc = hold(slave, "open", "smsd")
    lock = UucpLock(slave, str(tmp_path))
    Path(lock.path).write_text(f"{proc.pid:10d}\n")
    try:
        with OpenWatch(os.path.realpath(slave)) as watch:
            busy = open_port(slave, tmp_path)
            assert watch.opens() == 0
            os.close(os.open(slave, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK))
            assert watch.opens() == 1  # the watch does see an open
        assert busy.holder == Holder("ttyUSB2", proc.pid, "smsd", f"lock file {lock.path}")
        assert str(busy) == f"held by pid {proc.pid} (smsd): lock file {lock.path}"
        assert lock.holder() == busy.holder
    finally:
        proc.kill()
        proc.wait()
    assert lock.holder() is None  # its pid is gone: a stale lock holds nothing


def test_a_stale_lock_is_said_to_be_no_hold(slave: str, tmp_path: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    lock = UucpLock(slave, str(tmp_path))
    Path(lock.path).write_text(f"{dead.pid:10d}\n")
    assert lock.read() == (dead.pid, False)

    async def main() -> None:
        port = SerialPort(slave, lock_dir=str(tmp_path))
        await port.open()
        assert Path(lock.path).read_text() == f"{os.getpid():10d}\n"
        await port.close()

    with caplog.at_level(logging.INFO):
        asyncio.run(main())
    assert (f"stale lock file {lock.path} names pid {dead.pid}, which is not running: "
            "not a hold; replaced") in caplog.text


def test_a_binary_lock_file_is_a_hold_by_an_unknown_program(slave: str, tmp_path: Path) -> None:
    lock = UucpLock(slave, str(tmp_path))
    Path(lock.path).write_bytes(b"\x39\x30\x00\x00")  # old-style binary pid
    busy = open_port(slave, tmp_path)
    assert busy.holder is not None and busy.holder.pid is None
    assert busy.holder.describe() == "ttyUSB2 held by an unknown program"
    assert Path(lock.path).read_bytes() == b"\x39\x30\x00\x00"  # never deleted
