"""The hotplug hooks and the osmo-remsim-client event script, run for real.

The hooks run under busybox ash with the environment of real netifd and
kernel events. Each runs as the leader of a new session, so that whatever it
starts in the background is still to be found in that session when the hook
has returned: the tests see whether a hand-off was started, with which
arguments and with which file descriptors, without waiting on the clock.
End to end, in the router sandbox (tests/router.py): OpenWrt's own
``/sbin/hotplug-call`` runs the installed hooks with the event's environment,
returns within 100 ms, and the daemon, installed with opkg and run by procd,
receives the event through the launcher, the CLI and its control socket.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

from tests.router import (
    DAEMON_CONFIG,
    Router,
    install_package,
    log_lines,
    router_sandbox,
    running_pid,
    start_daemon,
    wait_for_log,
)
from tests.stubs.support import (
    CONFIG_FILE,
    EVENT_SCRIPT,
    IFACE_HOOK,
    USB_HOOK,
    build_ipk,
    host_tool,
)

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


# --- end to end: OpenWrt's hotplug-call -> hook -> launcher -> CLI -> the daemon -------------

@pytest.fixture(scope="module")
def router(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Router]:
    """The router sandbox with the package installed and the daemon running at debug level."""
    with router_sandbox() as r:
        install_package(r, build_ipk(tmp_path_factory.mktemp("ipk")))
        start_daemon(r, DAEMON_CONFIG.replace("log_level 'info'", "log_level 'debug'"))
        yield r


def handoffs_done(router: Router) -> bool:
    return router.sh("pgrep -f 'remsim-supervisor hotplug'", check=False).returncode != 0


def hotplug_call(router: Router, subsystem: str, event: dict[str, str]) -> float:
    """Run the real /sbin/hotplug-call SUBSYSTEM with the event's environment; its seconds.

    Timed inside the sandbox, once the hand-offs of earlier calls have finished
    (each is a Python process taking the CPU for a while)."""
    assert wait_for(lambda: handoffs_done(router), timeout=20)
    env = " ".join(f"{k}='{v}'" for k, v in event.items())
    out = router.sh(f"s=$(date +%s%N); env -i {env} /sbin/hotplug-call {subsystem} "
                    "</dev/null >/dev/null 2>&1; r=$?; e=$(date +%s%N); echo $r $((e - s))").stdout
    code, nanoseconds = out.split()
    assert code == "0"
    return int(nanoseconds) / 1e9


def hotplug_count(router: Router) -> int:
    return int(json.loads(router.sh("remsim-supervisor status --json").stdout)["events"]["hotplug"])


@pytest.mark.parametrize(("subsystem", "event"), [("iface", IFUP), ("usb", USB_ADD)])
def test_hotplug_call_runs_the_hook_and_the_daemon_receives_the_event(
        router: Router, subsystem: str, event: dict[str, str]) -> None:
    pid = running_pid(router)
    assert pid
    before, seen = hotplug_count(router), len(log_lines(router))
    elapsed = hotplug_call(router, subsystem, event)
    assert elapsed < HOOK_BUDGET_S, f"{elapsed:.3f} s"
    assert wait_for(lambda: hotplug_count(router) == before + 1, timeout=20), \
        "no event reached the daemon"
    lines = wait_for_log(router, f"hotplug {subsystem} ", pid, after=seen)
    assert len(lines) == 1, lines
    received = dict(item.split("=", 1) for item in
                    lines[0].split(f"hotplug {subsystem} ", 1)[1].split(" ") if "=" in item)
    for key in ("ACTION", "INTERFACE", "DEVICE", "DEVPATH", "DEVTYPE", "PRODUCT", "DEVNAME",
                "SUBSYSTEM", "TYPE"):
        assert received.get(key) == event.get(key), key
    # hotplug-call's own PATH and its DEVICENAME, not the router's other variables
    assert "PATH" not in received and "REMSIM_SUPERVISOR_CONFIG" not in received
    assert hotplug_count(router) == before + 1


@pytest.mark.parametrize(("subsystem", "event"), [
    ("iface", {**IFUP, "ACTION": "free"}),
    ("iface", {"ACTION": "ifup", "INTERFACE": "loopback", "DEVICE": "lo"}),
    ("usb", {**USB_ADD, "DEVTYPE": "usb_interface", "DEVPATH": USB_ADD["DEVPATH"] + "/1-1:1.2"}),
], ids=["free", "loopback", "usb_interface"])
def test_hotplug_call_with_an_event_the_daemon_does_not_need(
        router: Router, subsystem: str, event: dict[str, str]) -> None:
    before = hotplug_count(router)
    assert hotplug_call(router, subsystem, event) < HOOK_BUDGET_S
    # a needed event after it arrives, the ignored one never did
    hotplug_call(router, "iface", IFUP)
    assert wait_for(lambda: hotplug_count(router) == before + 1, timeout=20)
    assert hotplug_count(router) == before + 1


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
