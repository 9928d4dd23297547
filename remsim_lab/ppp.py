"""The lab's PPP dial-up: a modem whose data device is a PPP unit (``ppp0``).

A PPP modem (a USB stick dialled with pppd and a chat script, netifd's
``proto 3g`` or ``ppp``) has no network device of its own: pppd holds the
modem's first AT port, by its UUCP lock, and the kernel's PPP unit appears
as ``ppp0`` (netifd names it ``3g-wan`` or ``ppp-wan``) when the session is
up and vanishes when it ends. The device is point to point: a local address,
the peer's address, no gateway and no ARP.

:class:`PppSession` dials such a session between the lab's router and cloud
namespaces (:mod:`remsim_lab.network`) over a pty pair, and tears it down:

* ``pppd`` (:data:`PPPD`): the real pppd on both ends, the client in the
  router namespace on the pty's slave (``ifname ppp0``), the peer in the
  cloud namespace on its master (``notty``). It needs the kernel's PPP
  support (``/dev/ppp``); :func:`pppd_unavailable` says why it cannot run.
* ``tun`` (:data:`TUN`): where the kernel has no PPP (``CONFIG_PPP`` unset,
  no module to load), each end is a small process of this module that owns
  a point-to-point TUN device (``ppp0`` in the router, ``ppp0c`` in the
  cloud) configured as pppd configures its unit (``LOCAL peer REMOTE``,
  up, ``NOARP``/``POINTOPOINT``) and carries its packets over the same pty
  pair, framed as SLIP (RFC 1055). As with pppd, the device exists only
  while the process lives: killing the peer hangs the line up, the client
  ends, ``ppp0`` vanishes (``RTM_DELLINK``).

Either way the client end holds the modem's AT port that pppd dials on
(``port``) as pppd's ``lock`` option does: a UUCP lock file ``LCK..NAME``
(:func:`uucp_lock_path`) holding the client's pid as ten ASCII digits; the
TUN client also keeps the port open, as pppd keeps its tty. (The real pppd
of the lab dials on the session's own pty, so the lab writes that lock for it
with pppd's pid.)

``python -m remsim_lab.ppp redial STATE`` starts the session described by
the state file again (the lab's ``ifup`` for the PPP interface: netifd's
``ifup`` restarts pppd the same way). Everything a session starts is
recorded in its state directory and killed by :meth:`PppSession.close`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import shutil
import signal
import struct
import subprocess
import sys
import time
import tty
from dataclasses import asdict, dataclass
from pathlib import Path

PPPD = "pppd"
TUN = "tun"

LOCAL = "10.251.3.2"  # the router's address on ppp0
REMOTE = "10.251.3.1"  # the carrier's end of the link

_TUNSETIFF = 0x400454CA
_IFF_TUN, _IFF_NO_PI = 0x0001, 0x1000
_END, _ESC, _ESC_END, _ESC_ESC = 0xC0, 0xDB, 0xDC, 0xDD


def pppd_unavailable() -> str | None:
    """Why the real pppd cannot run here, or None when it can."""
    if shutil.which("pppd") is None and not os.path.exists("/usr/sbin/pppd"):
        return "pppd is not installed (apt-get install ppp)"
    devices = Path("/proc/devices").read_text()
    if not any(line.split()[1:] == ["ppp"] for line in devices.splitlines()):
        return ("the kernel has no PPP support (no 'ppp' in /proc/devices: CONFIG_PPP is "
                "not set and ppp_generic is not loaded; modprobe ppp_generic)")
    try:
        fd = os.open("/dev/ppp", os.O_RDWR)
    except OSError as exc:
        return f"cannot open /dev/ppp ({exc.strerror}); mknod /dev/ppp c 108 0"
    os.close(fd)
    return None


# Both pppd ends: in the foreground, no authentication or modem control lines,
# no compression, IPv4 only, messages to stderr (the end's log; the peer's stdout
# is the line); a peer that stops answering LCP echoes ends the session.
_PPPD_OPTIONS = ("nodetach", "noauth", "local", "nocrtscts", "noccp", "novj", "nobsdcomp",
                 "nodeflate", "nopcomp", "noaccomp", "lcp-echo-interval", "1",
                 "lcp-echo-failure", "3", "nodefaultroute", "noipv6", "logfd", "2")


# --- SLIP framing -------------------------------------------------------------------------

def slip_encode(packet: bytes) -> bytes:
    out = bytearray([_END])
    for byte in packet:
        if byte == _END:
            out += bytes([_ESC, _ESC_END])
        elif byte == _ESC:
            out += bytes([_ESC, _ESC_ESC])
        else:
            out.append(byte)
    out.append(_END)
    return bytes(out)


class SlipDecoder:
    """Bytes from the line in, whole packets out."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._escaped = False

    def feed(self, data: bytes) -> list[bytes]:
        packets = []
        for byte in data:
            if self._escaped:
                self._escaped = False
                self._buf.append({_ESC_END: _END, _ESC_ESC: _ESC}.get(byte, byte))
            elif byte == _ESC:
                self._escaped = True
            elif byte == _END:
                if self._buf:
                    packets.append(bytes(self._buf))
                self._buf.clear()
            else:
                self._buf.append(byte)
        return packets


# --- one end of the TUN link (runs as its own process, in its namespace) ------------------

def _open_tun(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    fcntl.ioctl(fd, _TUNSETIFF, struct.pack("16sH", name.encode(), _IFF_TUN | _IFF_NO_PI))
    return fd


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]


def uucp_lock_path(port: str, lock_dir: str) -> str:
    """The UUCP lock file of ``port``: ``LCK..`` and the device's name under /dev
    (``LCK..ttyUSB0``, as pppd, smsd and minicom name it for a USB serial port)."""
    real = os.path.realpath(port)
    name = real[len("/dev/"):] if real.startswith("/dev/") else os.path.basename(real)
    return os.path.join(lock_dir, "LCK.." + name.replace("/", "_"))


def _take_lock(lock: str, port: str) -> bool:
    """Take the UUCP lock as pppd does: refused while a live process holds it; a
    stale one (its pid gone) is removed and taken."""
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            try:
                pid = int(Path(lock).read_text().strip() or "0")
            except (OSError, ValueError):
                pid = -1
            if pid == -1 or _alive(pid):
                print(f"Device {os.path.basename(port)} is locked by pid {pid}", file=sys.stderr)
                return False
            Path(lock).unlink(missing_ok=True)
            continue
        os.write(fd, f"{os.getpid():10d}\n".encode())
        os.close(fd)
        return True
    return False


def run_end(ifname: str, local: str, remote: str, line: int, lock: str | None,
            route_metric: int | None, port: str | None = None) -> int:
    """Own ``ifname`` and carry its packets over the line ``line`` until it hangs up."""
    if lock and not _take_lock(lock, port or lock):
        return 8  # pppd's EXIT_LOCK_FAILED
    held = os.open(port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK) if port else None
    tun = _open_tun(ifname)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    try:
        subprocess.run(["ip", "addr", "add", local, "peer", f"{remote}/32", "dev", ifname],
                       check=True)
        subprocess.run(["ip", "link", "set", ifname, "up"], check=True)
        if route_metric is not None:  # pppd's defaultroute (netifd: the interface's route)
            subprocess.run(["ip", "route", "add", "default", "dev", ifname, "metric",
                            str(route_metric)], check=True)
        decoder = SlipDecoder()
        while not stop:
            try:
                ready, _, _ = select.select([tun, line], [], [], 0.5)
            except InterruptedError:
                continue
            if tun in ready:
                _write_all(line, slip_encode(os.read(tun, 65535)))
            if line in ready:
                try:
                    data = os.read(line, 65536)
                except OSError:  # EIO: the other end hung up
                    return 0
                if not data:
                    return 0
                for packet in decoder.feed(data):
                    with contextlib.suppress(OSError):  # a malformed packet is dropped
                        os.write(tun, packet)
        return 0
    finally:
        os.close(tun)  # the device vanishes with its last descriptor
        if held is not None:
            os.close(held)
        if lock:
            with contextlib.suppress(OSError):
                os.unlink(lock)


# --- the session --------------------------------------------------------------------------

@dataclass(frozen=True)
class SessionSpec:
    kind: str  # PPPD or TUN
    router: str  # namespace of the client (the router)
    carrier: str  # namespace of the peer (the carrier's side)
    state_dir: str
    port: str | None = None  # the modem's AT port the client dials on (held, locked)
    lock_dir: str | None = None  # where its UUCP lock goes
    ifname: str = "ppp0"
    peer_ifname: str = "ppp0c"
    local: str = LOCAL
    remote: str = REMOTE
    route_metric: int | None = 30  # the TUN client's default route in the main table


class PppSession:
    """One dial-up session between the router and the carrier; :meth:`dial` again after
    it ended. The pids of everything started are in ``state_dir`` until closed."""

    def __init__(self, spec: SessionSpec) -> None:
        self.spec = spec
        self.state = Path(spec.state_dir)
        self.state.mkdir(parents=True, exist_ok=True)
        (self.state / "session.json").write_text(json.dumps(asdict(spec)))

    @property
    def lock(self) -> str | None:
        """The UUCP lock file the client holds while it lives."""
        if self.spec.port is None or self.spec.lock_dir is None:
            return None
        return uucp_lock_path(self.spec.port, self.spec.lock_dir)

    @classmethod
    def load(cls, state_file: str) -> PppSession:
        return cls(SessionSpec(**json.loads(Path(state_file).read_text())))

    @property
    def state_file(self) -> str:
        return str(self.state / "session.json")

    def redial_command(self) -> list[str]:
        """The command that dials again; an interface name after it is ignored."""
        return [sys.executable, "-m", "remsim_lab.ppp", "redial", self.state_file]

    def pid(self, end: str) -> int | None:
        try:
            return int((self.state / f"{end}.pid").read_text())
        except (OSError, ValueError):
            return None

    def dial(self, timeout: float = 10.0) -> None:
        """Start both ends over a fresh pty pair (the ends that still run are ended first);
        return when the router's device is up with its address."""
        self.hang_up()
        spec = self.spec
        master, slave = os.openpty()
        try:
            tty.setraw(slave)  # a serial line: no echo, no line discipline
            if spec.kind == PPPD:
                peer = self._pppd_peer(master)
            else:
                peer = self._tun_end("peer", spec.carrier, spec.peer_ifname, spec.remote,
                                     spec.local, master, None, None)
            (self.state / "peer.pid").write_text(str(peer.pid))
            if spec.kind == PPPD:
                client = self._pppd_client(slave)
            else:
                client = self._tun_end("client", spec.router, spec.ifname, spec.local,
                                       spec.remote, slave, self.lock, spec.route_metric,
                                       spec.port)
            (self.state / "client.pid").write_text(str(client.pid))
        finally:
            os.close(master)
            os.close(slave)
        if spec.kind == PPPD and self.lock:
            # pppd locks the tty it dials on, here the session's pty: the modem's port
            # is locked for it, with its pid.
            Path(self.lock).write_text(f"{client.pid:10d}\n")
        self.wait_up(timeout)

    def wait_up(self, timeout: float = 10.0) -> None:
        """Until the router's device is up with its address (the session is up)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            shown = subprocess.run(["ip", "-n", self.spec.router, "-o", "-4", "addr", "show",
                                    "dev", self.spec.ifname, "up"],
                                   capture_output=True, text=True, check=False).stdout
            if f"inet {self.spec.local} " in shown:
                return
            time.sleep(0.05)
        logs = " / ".join((self.state / f"{end}.log").read_text(errors="replace")[-300:]
                          for end in ("client", "peer") if (self.state / f"{end}.log").exists())
        raise RuntimeError(f"the PPP session did not come up within {timeout:g} s: {logs}")

    def _log(self, end: str) -> int:
        return os.open(self.state / f"{end}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def _spawn(self, argv: list[str], end: str, *, stdin: int = subprocess.DEVNULL,
               stdout: int | None = None, pass_fds: tuple[int, ...] = ()
               ) -> subprocess.Popen[bytes]:
        log = self._log(end)
        try:
            return subprocess.Popen(argv, stdin=stdin, stdout=log if stdout is None else stdout,
                                    stderr=log, pass_fds=pass_fds, start_new_session=True)
        finally:
            os.close(log)

    def _tun_end(self, end: str, ns: str, ifname: str, local: str, remote: str, line: int,
                 lock: str | None, metric: int | None,
                 port: str | None = None) -> subprocess.Popen[bytes]:
        argv = ["ip", "netns", "exec", ns, sys.executable, "-m", "remsim_lab.ppp", "end",
                ifname, local, remote, str(line)]
        argv += ["--lock", lock] if lock else []
        argv += ["--port", port] if port else []
        argv += ["--metric", str(metric)] if metric is not None else []
        return self._spawn(argv, end, pass_fds=(line,))

    def _pppd_peer(self, master: int) -> subprocess.Popen[bytes]:
        spec = self.spec
        argv = ["ip", "netns", "exec", spec.carrier, "pppd", "notty", *_PPPD_OPTIONS,
                "ifname", spec.peer_ifname, f"{spec.remote}:{spec.local}"]
        return self._spawn(argv, "peer", stdin=master, stdout=master)

    def _pppd_client(self, slave: int) -> subprocess.Popen[bytes]:
        spec = self.spec
        argv = ["ip", "netns", "exec", spec.router, "pppd", os.ttyname(slave), "115200",
                *_PPPD_OPTIONS, "ifname", spec.ifname, f"{spec.local}:{spec.remote}"]
        return self._spawn(argv, "client")

    def kill(self, end: str) -> None:
        """Kill one end (``peer``: the carrier drops the call) and reap it."""
        pid = self.pid(end)
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
        (self.state / f"{end}.pid").unlink(missing_ok=True)

    def hang_up(self) -> None:
        """End the session: the client first (its device and lock go with it), then the peer."""
        ended = []
        for end in ("client", "peer"):
            pid = self.pid(end)
            if pid is None:
                continue
            ended.append(pid)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
            for _ in range(100):
                try:
                    done, _status = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:  # not ours (a redial started it): poll its life
                    done = pid if not _alive(pid) else 0
                if done:
                    break
                time.sleep(0.02)
            else:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
            (self.state / f"{end}.pid").unlink(missing_ok=True)
        lock = Path(self.lock) if self.lock else None
        if lock is not None:
            # A lock left by an end killed outright; never another program's.
            with contextlib.suppress(OSError, ValueError):
                if int(lock.read_text().strip()) in ended:
                    lock.unlink()

    close = hang_up

    def __enter__(self) -> PppSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _alive(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie, not yet reaped by its parent, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m remsim_lab.ppp")
    sub = parser.add_subparsers(dest="what", required=True)
    end = sub.add_parser("end", help="one end of a TUN point-to-point link (internal)")
    end.add_argument("ifname")
    end.add_argument("local")
    end.add_argument("remote")
    end.add_argument("fd", type=int)
    end.add_argument("--lock")
    end.add_argument("--metric", type=int)
    end.add_argument("--port")
    redial = sub.add_parser("redial", help="dial the session of STATE again")
    redial.add_argument("state")
    redial.add_argument("interface", nargs="?", help="ignored: the ifup rung names it")
    args = parser.parse_args(argv)
    if args.what == "end":
        return run_end(args.ifname, args.local, args.remote, args.fd, args.lock, args.metric,
                       args.port)
    PppSession.load(args.state).dial()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
