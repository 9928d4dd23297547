"""The hotplug hooks and the osmo-remsim-client event script, run for real.

The hooks run under busybox ash with the environment of real netifd and
kernel events. Each runs as the leader of a new session, so that whatever it
starts in the background is still to be found in that session when the hook
has returned: the tests see whether a hand-off was started, with which
arguments and with which file descriptors, without waiting on the clock.
A stand-in daemon (a Unix socket at the control_socket of a test
configuration, which REMSIM_SUPERVISOR_CONFIG selects) checks that the event
arrives through the real launcher and CLI.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

from tests.stubs.support import CONFIG_FILE, EVENT_SCRIPT, IFACE_HOOK, LAUNCHER, USB_HOOK, host_tool

HOOK_BUDGET_S = 0.1
T = TypeVar("T")

IFUP = {"ACTION": "ifup", "INTERFACE": "wwan", "DEVICE": "wwan0"}
USB_ADD = {
    "ACTION": "add", "SUBSYSTEM": "usb", "DEVTYPE": "usb_device",
    "DEVPATH": "/devices/platform/soc/1e1c0000.xhci/usb1/1-1",
    "DEVICENAME": "1-1", "DEVNAME": "bus/usb/001/003", "PRODUCT": "2c7c/125/318",
    "TYPE": "239/2/1", "BUSNUM": "001", "DEVNUM": "003", "SEQNUM": "1234",
    "MAJOR": "189", "MINOR": "2",
}


@dataclass
class HookRun:
    returncode: int
    elapsed: float
    session: int  # the hook's pid, its session and process group
    stdout: str


def session_members(sid: int) -> list[int]:
    """Live processes of a session (zombies excluded)."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[3]) == sid and fields[0] != "Z":
            members.append(int(entry))
    return members


@contextlib.contextmanager
def hook_session() -> Iterator[list[HookRun]]:
    """Collects hook runs; on exit kills whatever they left running."""
    runs: list[HookRun] = []
    try:
        yield runs
    finally:
        for run in runs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(run.session, signal.SIGKILL)


def run_hook(runs: list[HookRun], argv: list[str], env: dict[str, str]) -> HookRun:
    start = time.monotonic()
    proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True, text=True)
    run = HookRun(-1, 0.0, proc.pid, "")
    runs.append(run)  # its session is cleaned up whatever happens next
    try:
        # a background child still holding our pipe would stall this
        run.stdout, _ = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail("the hook, or something it left holding its output, did not finish")
    run.returncode = proc.returncode
    run.elapsed = time.monotonic() - start
    return run


def wait_for(predicate: Callable[[], T], timeout: float = 10.0) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    return predicate()


@pytest.fixture
def busybox() -> str:
    return host_tool("busybox")


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """The packaged configuration with the control socket moved into tmp_path."""
    text = CONFIG_FILE.read_text()
    socket_line = f"\toption control_socket '{tmp_path / 'ctl.sock'}'\n"
    text = text.replace("\toption enabled '0'\n", "\toption enabled '0'\n" + socket_line)
    path = tmp_path / "remsim-supervisor"
    path.write_text(text)
    return path


@pytest.fixture
def listening(tmp_path: Path, config: Path) -> Iterator[Path]:
    """A socket file at the control socket: the hooks only look at whether it is there."""
    path = tmp_path / "ctl.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen(8)
    try:
        yield path
    finally:
        sock.close()


@pytest.fixture
def slow_cli(tmp_path: Path) -> Path:
    """A `remsim-supervisor` that records its arguments and then takes its time."""
    bin_dir = tmp_path / "slow-bin"
    bin_dir.mkdir()
    cli = bin_dir / "remsim-supervisor"
    cli.write_text(f'#!/bin/sh\necho "$*" >> {tmp_path / "cli.log"}\nexec sleep 30\n')
    cli.chmod(0o755)
    return bin_dir


def hook_env(bin_dir: Path, config: Path, event: dict[str, str]) -> dict[str, str]:
    return {"PATH": f"{bin_dir}:/usr/bin:/bin", "REMSIM_SUPERVISOR_CONFIG": str(config), **event}


# --- the hooks hand off and return at once ---------------------------------------------------

@pytest.mark.parametrize(("hook", "event", "subsystem"),
                         [(IFACE_HOOK, IFUP, "iface"), (USB_HOOK, USB_ADD, "usb")])
def test_hook_starts_the_hand_off_and_returns_without_waiting(
        busybox: str, slow_cli: Path, config: Path, listening: Path, tmp_path: Path,
        hook: Path, event: dict[str, str], subsystem: str) -> None:
    with hook_session() as runs:
        run = run_hook(runs, [busybox, "ash", str(hook)], hook_env(slow_cli, config, event))
        assert run.returncode == 0 and run.stdout == ""
        # The hand-off (sleeping for 30 s) did not hold the hook up...
        assert run.elapsed < HOOK_BUDGET_S, f"{run.elapsed:.3f} s"
        # ...yet it was started, detached from the hook's input and output.
        members = session_members(run.session)
        assert len(members) == 1, members
        for fd in (0, 1, 2):
            assert os.readlink(f"/proc/{members[0]}/fd/{fd}") == "/dev/null"
        log = tmp_path / "cli.log"
        assert wait_for(lambda: log.exists() and log.read_text()) == f"hotplug {subsystem}\n"


@pytest.mark.parametrize(("hook", "event"), [
    (IFACE_HOOK, {**IFUP, "ACTION": "free"}),
    (IFACE_HOOK, {**IFUP, "ACTION": "iflink"}),
    (IFACE_HOOK, {**IFUP, "ACTION": "create"}),
    (IFACE_HOOK, {**IFUP, "ACTION": "reload"}),
    (IFACE_HOOK, {"ACTION": "ifup", "INTERFACE": "loopback", "DEVICE": "lo"}),
    (USB_HOOK, {**USB_ADD, "DEVTYPE": "usb_interface", "DEVPATH": USB_ADD["DEVPATH"] + "/1-1:1.2"}),
    (USB_HOOK, {**USB_ADD, "ACTION": "change"}),
    (USB_HOOK, {**USB_ADD, "ACTION": "move"}),
], ids=["free", "iflink", "create", "reload", "loopback", "usb_interface", "change", "move"])
def test_hook_ignores_events_the_daemon_does_not_need(
        busybox: str, slow_cli: Path, config: Path, listening: Path,
        hook: Path, event: dict[str, str]) -> None:
    with hook_session() as runs:
        run = run_hook(runs, [busybox, "ash", str(hook)], hook_env(slow_cli, config, event))
        assert run.returncode == 0 and run.stdout == ""
        assert session_members(run.session) == []


@pytest.mark.parametrize(("hook", "event"), [(IFACE_HOOK, IFUP), (USB_HOOK, USB_ADD)])
def test_hook_does_nothing_without_a_daemon(busybox: str, slow_cli: Path, config: Path,
                                            hook: Path, event: dict[str, str]) -> None:
    # no socket at control_socket: no Python started for nothing
    with hook_session() as runs:
        run = run_hook(runs, [busybox, "ash", str(hook)], hook_env(slow_cli, config, event))
        assert run.returncode == 0 and run.stdout == ""
        assert session_members(run.session) == []


@pytest.mark.parametrize(("hook", "event"), [(IFACE_HOOK, IFUP), (USB_HOOK, USB_ADD)])
def test_hook_finds_the_socket_at_the_default_place_when_the_config_names_none(
        busybox: str, slow_cli: Path, tmp_path: Path, hook: Path, event: dict[str, str]) -> None:
    config = tmp_path / "no-socket-option"
    config.write_text(CONFIG_FILE.read_text())
    # the default socket is absent on this machine: the hook must look there and stop
    assert not os.path.exists("/var/run/remsim-supervisor.sock")
    with hook_session() as runs:
        run = run_hook(runs, [busybox, "ash", str(hook)], hook_env(slow_cli, config, event))
        assert run.returncode == 0 and session_members(run.session) == []


def test_hooks_work_when_sourced_as_hotplug_call_does(busybox: str, slow_cli: Path,
                                                      config: Path, listening: Path,
                                                      tmp_path: Path) -> None:
    # hotplug-call sources each script in a subshell: an `exit` in one ends only it
    harness = 'for script in "$@"; do ( . "$script" ); done; echo after'
    with hook_session() as runs:
        env = hook_env(slow_cli, config, {**IFUP, "ACTION": "free"})
        run = run_hook(runs, [busybox, "ash", "-c", harness, "hotplug-call", str(IFACE_HOOK)], env)
        assert (run.returncode, run.stdout) == (0, "after\n")
        env = hook_env(slow_cli, config, IFUP)
        run = run_hook(runs, [busybox, "ash", "-c", harness, "hotplug-call", str(IFACE_HOOK)], env)
        assert (run.returncode, run.stdout) == (0, "after\n")
        assert run.elapsed < HOOK_BUDGET_S
        log = tmp_path / "cli.log"
        assert wait_for(lambda: log.exists() and log.read_text()) == "hotplug iface\n"


# --- end to end: hook -> launcher -> CLI -> the daemon's socket -------------------------------

class StandInDaemon:
    """Answers control requests like the daemon and keeps them."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.received: list[dict[str, object]] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                data = b""
                while not data.endswith(b"\n"):
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                self.received.append(json.loads(data))
                conn.sendall(b'{"ok":true}\n')

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=5)
        self.sock.close()


@pytest.fixture
def daemon(tmp_path: Path, config: Path) -> Iterator[StandInDaemon]:
    stand_in = StandInDaemon(tmp_path / "ctl.sock")
    try:
        yield stand_in
    finally:
        stand_in.close()


@pytest.fixture
def real_cli(tmp_path: Path) -> Path:
    """PATH entry with the packaged launcher, run by this interpreter (which has the libs)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    cli = bin_dir / "remsim-supervisor"
    cli.write_text(f'#!/bin/sh\nexec {sys.executable} {LAUNCHER} "$@"\n')
    cli.chmod(0o755)
    return bin_dir


@pytest.mark.parametrize(("hook", "event", "subsystem"),
                         [(IFACE_HOOK, IFUP, "iface"), (USB_HOOK, USB_ADD, "usb")])
def test_the_daemon_receives_the_event(busybox: str, real_cli: Path, config: Path,
                                       daemon: StandInDaemon, hook: Path,
                                       event: dict[str, str], subsystem: str) -> None:
    with hook_session() as runs:
        run = run_hook(runs, [busybox, "ash", str(hook)], hook_env(real_cli, config, event))
        assert run.returncode == 0 and run.stdout == ""
        assert run.elapsed < HOOK_BUDGET_S, f"{run.elapsed:.3f} s"
        assert wait_for(lambda: daemon.received, timeout=20), "no event reached the daemon"
    message = daemon.received[0]
    assert message["cmd"] == "hotplug" and message["subsystem"] == subsystem
    env = message["env"]
    assert isinstance(env, dict)
    for key in ("ACTION", "INTERFACE", "DEVICE", "DEVPATH", "DEVTYPE", "PRODUCT", "DEVNAME",
                "SUBSYSTEM", "TYPE"):
        assert env.get(key) == event.get(key), key
    assert "PATH" not in env and "REMSIM_SUPERVISOR_CONFIG" not in env
    assert len(daemon.received) == 1


# --- the event script for osmo-remsim-client -e -----------------------------------------------

@pytest.fixture
def event_tree(tmp_path: Path) -> Path:
    """The event script in a package tree whose launcher records what it is given."""
    libexec = tmp_path / "usr" / "libexec" / "remsim-supervisor"
    libexec.mkdir(parents=True)
    script = libexec / "remsim-event"
    script.write_bytes(EVENT_SCRIPT.read_bytes())
    script.chmod(0o755)
    bindir = tmp_path / "usr" / "bin"
    bindir.mkdir(parents=True)
    recorder = bindir / "remsim-supervisor"
    recorder.write_text(f"#!{sys.executable}\nimport json, os, sys\n"
                        f"json.dump({{'argv': sys.argv[1:], 'env': dict(os.environ)}},"
                        f" open({str(tmp_path / 'got.json')!r}, 'w'))\n")
    recorder.chmod(0o755)
    return script


def test_event_script_passes_the_cause_and_environment_as_data(event_tree: Path,
                                                               tmp_path: Path) -> None:
    hostile = {
        "REMSIM_CAUSE": "event-config-bankd",
        "REMSIM_BANKD_ADDR": f"$(touch {tmp_path}/pwned):9999",
        "REMSIM_CLIENT_SLOT": f"`touch {tmp_path}/pwned`",
        "REMSIM_SERVER_ADDR": f"x; touch {tmp_path}/pwned",
    }
    env = {"PATH": "/usr/bin:/bin", "HOME": "/", **hostile}
    # exactly how the client runs it: /bin/sh -c "PATH CAUSE", not waited for
    result = subprocess.run(["/bin/sh", "-c", f"{event_tree} event-config-bankd"], env=env,
                            check=False, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    got = json.loads((tmp_path / "got.json").read_text())
    assert got["argv"] == ["event", "--", "event-config-bankd"]
    for key, value in hostile.items():
        assert got["env"][key] == value
    assert not (tmp_path / "pwned").exists()


def test_event_script_keeps_a_cause_starting_with_a_dash_an_argument(event_tree: Path,
                                                                     tmp_path: Path) -> None:
    subprocess.run([str(event_tree), "--help"], env={"PATH": "/usr/bin:/bin"}, check=True,
                   timeout=30)
    assert json.loads((tmp_path / "got.json").read_text())["argv"] == ["event", "--", "--help"]


def test_event_script_without_a_cause_says_how_to_call_it(event_tree: Path) -> None:
    result = subprocess.run([str(event_tree)], env={"PATH": "/usr/bin:/bin"},
                            check=False, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert result.stderr == "usage: remsim-event CAUSE\n"
