"""Who holds a modem's port, told without fighting over it.

Programs that share a modem's ttys (smsd, pppd, minicom, chat scripts) say
that a port is theirs in one of three ways, and each is honoured:

* a UUCP lock file, ``LCK..ttyUSB2`` in ``/var/lock``, holding the owner's
  pid in ASCII (:class:`UucpLock`). A live pid is a hold, and the port is
  not even opened (opening a tty can toggle DTR and hang up the holder's
  session). A lock file whose pid no longer runs is *stale*: not a hold; it
  is logged and replaced. A binary or garbled lock file is a hold by a
  program that cannot be named: another program's lock is never deleted.
* an exclusive ``flock`` on the tty (pyserial's ``exclusive=True``, ours
  too): its owner is read from ``/proc/locks``;
* ``TIOCEXCL`` on the tty (the kernel refuses further opens with EBUSY): its
  owner is a process with the tty open in ``/proc/*/fd``.

:class:`Holder` says who (pid, ``/proc/PID/comm``) and how, in one line
(``ttyUSB2 held by pid 1234 (smsd)``); :class:`PortBusy` carries it.
"""

from __future__ import annotations

import errno
import logging
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DEFAULT_LOCK_DIR", "Holder", "PortBusy", "PortError", "UucpLock", "exclusive_holder",
    "pid_alive", "process_name", "tiocexcl_holder",
]

log = logging.getLogger("remsim_supervisor.adapters.serialport")

DEFAULT_LOCK_DIR = "/var/lock"


class PortError(Exception):
    """The port cannot be used; the message is one line that says why."""


class PortBusy(PortError):
    """Another program holds the port (a UUCP lock file, an exclusive flock or TIOCEXCL).

    ``holder`` says who, as far as can be told (:class:`Holder`).
    """

    def __init__(self, message: str, holder: Holder | None = None) -> None:
        super().__init__(message)
        self.holder = holder


@dataclass(frozen=True)
class Holder:
    """Who holds a port: ``pid`` None when it cannot be told (a binary lock file,
    an exclusive open whose owner is not visible), ``program`` from /proc/PID/comm."""

    port: str  #: the port as configured or discovered, e.g. ``ttyUSB2``
    pid: int | None
    program: str | None
    how: str  #: ``lock file /var/lock/LCK..ttyUSB2``, ``exclusive lock``, ``exclusive open``

    def describe(self) -> str:
        """``ttyUSB2 held by pid 1234 (smsd)``: one line for the status and the log."""
        who = (f"pid {self.pid} ({self.program or '?'})" if self.pid is not None
               else "an unknown program")
        return f"{self.port} held by {who}"

    def suffix(self) -> str:
        """``: pid 1234 (smsd)`` when the pid is known, else nothing."""
        return f": pid {self.pid} ({self.program or '?'})" if self.pid is not None else ""


def pid_alive(pid: int) -> bool:
    """Is a process with this pid alive (also when it is another user's)?"""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def process_name(pid: int, proc: str = "/proc") -> str:
    try:
        return Path(proc, str(pid), "comm").read_text().strip()
    except OSError:
        return "?"


class UucpLock:
    """A UUCP-style lock file (``LCK..ttyUSB2`` holding the owner's pid).

    The lock name follows the device the path finally points at, so a lab
    symlink and the pty it names share one lock, as minicom and smsd see it.
    """

    def __init__(self, device: str, lock_dir: str = DEFAULT_LOCK_DIR) -> None:
        real = os.path.realpath(device)
        name = real[len("/dev/") :] if real.startswith("/dev/") else os.path.basename(real)
        self.path = os.path.join(lock_dir, "LCK.." + name.replace("/", "_"))
        self.port_name = os.path.basename(device)
        self.held = False

    def read(self) -> tuple[int | None, bool]:
        """(pid named in the lock file, whether it runs): (None, False) without a
        lock file; (-1, True) for a binary or garbled one, whose owner cannot be told."""
        try:
            text = Path(self.path).read_bytes()[:64]
        except OSError:
            return None, False
        try:
            pid = int(text.decode("ascii", "replace").strip() or "0")
        except ValueError:
            # Binary (old-style) or garbage lock: treat it as held by somebody
            # we cannot name, rather than deleting another program's lock.
            return -1, True
        return pid, pid_alive(pid)

    def owner(self) -> int | None:
        """The live pid holding the lock (possibly ours), or None (no lock, or stale)."""
        pid, alive = self.read()
        return pid if alive else None

    def holder(self) -> Holder | None:
        """Another live program's hold on the port by this lock file, else None.

        Reads the lock file only: the port itself is not opened (opening a
        tty can toggle DTR and hang up the holder's session)."""
        pid, alive = self.read()
        return self._holder(pid) if alive and pid != os.getpid() else None

    def _holder(self, pid: int | None) -> Holder:
        known = pid is not None and pid > 0
        return Holder(self.port_name, pid if known else None,
                      process_name(pid) if known and pid is not None else None,
                      f"lock file {self.path}")

    def acquire(self) -> None:
        pid, alive = self.read()
        if alive:
            if pid == os.getpid():
                raise PortBusy(f"held by this process: lock file {self.path}")
            holder = self._holder(pid)
            who = holder.describe().split(" held by ", 1)[1]
            raise PortBusy(f"held by {who}: lock file {self.path}", holder)
        try:
            # A stale lock (dead owner) is replaced; O_EXCL would refuse it.
            if os.path.exists(self.path):
                if pid is not None:
                    log.info("stale lock file %s names pid %d, which is not running: "
                             "not a hold; replaced", self.path, pid)
                os.unlink(self.path)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError as exc:
            raise PortBusy(f"lock file {self.path} appeared while opening") from exc
        except OSError as exc:
            # No writable lock directory (a bare test machine): carry on without
            # one; flock still keeps two openers of ours apart.
            log.debug("no UUCP lock at %s: %s", self.path, exc)
            return
        with os.fdopen(fd, "w") as f:
            f.write(f"{os.getpid():10d}\n")
        self.held = True

    def release(self) -> None:
        if self.held:
            self.held = False
            try:
                if self.owner() == os.getpid():
                    os.unlink(self.path)
            except OSError:
                pass


def exclusive_holder(path: str, how: str, proc: str = "/proc") -> Holder:
    """Who holds ``path`` by an exclusive flock or open, as far as /proc tells.

    The flock's owner is in ``/proc/locks`` (by device and inode); failing
    that, a process other than this one with the tty open. Best effort: a
    holder in another pid namespace, or no /proc, gives a Holder without pid.
    """
    name = os.path.basename(path)
    try:
        st = os.stat(path)
    except OSError:
        return Holder(name, None, None, how)
    pid = _flock_owner(st, proc) if how == "exclusive lock" else None
    if pid is None:
        pid = _opener(os.path.realpath(path), proc)
    return Holder(name, pid, process_name(pid, proc) if pid is not None else None, how)


def _ior_int(kind: str, number: int) -> int:
    """``_IOR(kind, number, int)`` for this machine's ioctl encoding."""
    machine = os.uname().machine
    dir_shift = 29 if machine.startswith(("mips", "ppc", "powerpc", "sparc", "alpha")) else 30
    return (2 << dir_shift) | (4 << 16) | (ord(kind) << 8) | number


TIOCGEXCL = _ior_int("T", 0x40)


def tiocexcl_holder(path: str, proc: str = "/proc") -> Holder | None:
    """The holder of ``path`` if another program set TIOCEXCL on it, else None.

    The kernel refuses a second open of such a tty with EBUSY, except to
    root: so as root (the daemon on a router) the flag is asked for with
    TIOCGEXCL on a bare open that changes no line setting, and honoured.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno == errno.EBUSY:
            return exclusive_holder(path, "exclusive open", proc)
        return None  # the real open says what is wrong
    try:
        import fcntl
        import struct

        flag = struct.unpack("i", fcntl.ioctl(fd, TIOCGEXCL, b"\0" * 4))[0]
    except OSError:
        return None  # a kernel or device without TIOCGEXCL
    finally:
        os.close(fd)
    return exclusive_holder(path, "exclusive open", proc) if flag else None


def _flock_owner(st: os.stat_result, proc: str) -> int | None:
    """The pid of an FLOCK on the file ``st`` in ``/proc/locks`` (dev as "MAJ:MIN:INODE", hex)."""
    key = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        lines = Path(proc, "locks").read_text().splitlines()[:4096]
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 1234 00:05:87 0 EOF"; "->" marks a waiter
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == key:
            try:
                pid = int(fields[4])
            except ValueError:
                continue
            if pid != os.getpid():
                return pid
    return None


def _opener(real: str, proc: str, limit: int = 4096) -> int | None:
    """A process other than this one with ``real`` open (bounded scan of /proc/*/fd)."""
    seen = 0
    try:
        pids = sorted((int(e) for e in os.listdir(proc) if e.isdigit()), reverse=True)
    except OSError:
        return None
    for pid in pids:
        if pid == os.getpid():
            continue
        fd_dir = os.path.join(proc, str(pid), "fd")
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            seen += 1
            if seen > limit:
                return None
            try:
                if os.readlink(os.path.join(fd_dir, fd)) == real:
                    return pid
            except OSError:
                continue
    return None
