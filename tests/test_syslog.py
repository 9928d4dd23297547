"""Log lines reach syslog through the real stdlib syslog module, whole.

A child process calls ``remsim_supervisor.log.setup()`` and logs; libc's
syslog(3) writes to ``/dev/log``, which in the child's private mount namespace
is a datagram socket this test bound (this machine has no syslog daemon and
keeps its /dev untouched). The datagram must carry the facility and priority,
a timestamp, the ident with the pid, and the message in full: OpenWrt's logd
(ubox log/syslog.c) strips 16 bytes when byte 15 after the priority is a
space, which is harmless only because that is where the timestamp ends.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.stubs.support import host_tool, require_root

DAEMON = 3  # LOG_DAEMON >> 3
INFO, WARNING = 6, 4

CHILD = """
import logging, os, sys
from remsim_supervisor import log
log.setup("info")
print(os.getpid(), flush=True)
logging.getLogger("remsim_supervisor.grace").info(sys.argv[1])
logging.getLogger("remsim_supervisor.grace").warning("path iot -> primary: 41 s of grace left")
logging.getLogger("remsim_supervisor.grace").debug("not at level info")
"""

# byte 15 is a space, as logd checks it; past 1 kB; both ends recognisable
MESSAGE = ("recovery rung 3 (radio off/on) on modem2 " + "x" * 1200 + " grace left 187 s END")
LINE = re.compile(r"<(\d+)>([A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d) remsim-supervisor\[(\d+)\]: (.*)",
                  re.DOTALL)


@pytest.fixture
def dev_log(tmp_path: Path) -> Iterator[tuple[Path, socket.socket]]:
    """A directory whose `log` is a bound datagram socket, to be mounted as /dev."""
    dev = tmp_path / "dev"
    dev.mkdir()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(dev / "log"))
    sock.settimeout(10)
    try:
        yield dev, sock
    finally:
        sock.close()


def log_in_child(dev: Path) -> int:
    """Run CHILD with `dev` as its /dev; return its pid."""
    unshare = host_tool("unshare")
    require_root()
    script = 'mount --bind "$1" /dev && shift && exec "$@"'
    result = subprocess.run(
        [unshare, "--mount", "--propagation", "private", "sh", "-c", script, "sh", str(dev),
         sys.executable, "-c", CHILD, MESSAGE],
        check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return int(result.stdout.strip())


def receive_parts(sock: socket.socket) -> list[str]:
    """The datagrams of one long message: "[1/N] ..." up to "[N/N] ..."."""
    first = sock.recv(65536).decode()
    found = re.search(r"\[1/(\d+)\] ", first)
    count = int(found[1]) if found else 1
    return [first] + [sock.recv(65536).decode() for _ in range(count - 1)]


def test_log_lines_arrive_with_ident_pid_priority_timestamp_and_in_full(
        dev_log: tuple[Path, socket.socket]) -> None:
    dev, sock = dev_log
    assert MESSAGE[15] == " " and len(MESSAGE.encode()) > 1024
    pid = log_in_child(dev)
    parts = receive_parts(sock)
    warning_raw = sock.recv(65536).decode()
    sock.settimeout(0.2)
    with pytest.raises(TimeoutError):  # the debug line stayed below the level
        sock.recv(65536)

    # musl's syslog(3) on the router cuts a datagram at 1024 bytes: a long
    # line goes out as numbered parts, each whole, that join to the message.
    assert len(parts) == 2
    bodies = []
    for n, raw in enumerate(parts, 1):
        assert len(raw.encode()) <= 1024
        info = LINE.fullmatch(raw.rstrip("\n"))
        assert info, raw[:200]
        assert int(info[1]) == DAEMON * 8 + INFO == 30
        assert int(info[3]) == pid
        prefix = f"[{n}/{len(parts)}] "
        assert info[4].startswith(prefix)
        bodies.append(info[4][len(prefix):])
    assert "".join(bodies) == MESSAGE

    warning = LINE.fullmatch(warning_raw.rstrip("\n"))
    assert warning and int(warning[1]) == DAEMON * 8 + WARNING == 28
    assert warning[4] == "path iot -> primary: 41 s of grace left"


def test_logd_keeps_the_message_when_it_strips_the_timestamp(
        dev_log: tuple[Path, socket.socket]) -> None:
    dev, sock = dev_log
    pid = log_in_child(dev)
    parts = receive_parts(sock)
    stored = []
    for raw in parts:
        # logd: drop "<PRI>", then 16 bytes if byte 15 is a space (ubox log/syslog.c)
        buf = re.sub(r"^<\d+>", "", raw)
        assert len(buf) > 16 and buf[15] == " "
        stored.append(buf[16:].rstrip("\n"))
    assert all(line.startswith(f"remsim-supervisor[{pid}]: [") for line in stored)
    assert "".join(line.split(" ", 2)[2] for line in stored) == MESSAGE


def test_nothing_is_left_behind(dev_log: tuple[Path, socket.socket]) -> None:
    dev, _sock = dev_log
    log_in_child(dev)
    assert not os.path.exists("/dev/log") or os.path.realpath("/dev/log") != str(dev / "log")
    with open("/proc/self/mountinfo") as mounts:
        assert str(dev) not in mounts.read()
