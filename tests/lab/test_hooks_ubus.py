"""Hooks and osmo-remsim events over OpenWrt's own ubusd, into the real daemon.

The rig's daemon listens on a private ``ubusd`` (remsim_lab/ubus.py); the
real event script and hotplug hooks from ``files/`` run as the client and
hotplug-call run them, in a package tree whose launcher notes every Python
start. While the daemon listens, events and hotplug events must reach it
through ``ubus send`` alone, coalesced and in the client's order; stopped or
killed, the hooks must take the Python path; garbage on the bus is survived;
a killed listener child is replaced and reaped.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from remsim_lab import ubus as labubus
from remsim_lab.rig import Rig
from remsim_supervisor.adapters.gpio import SIM_GPIO_ENV
from remsim_supervisor.config.env import EVENT_SETTLE, STATE_DIR
from remsim_supervisor.core.hookwire import HOOK_EVENT, MAX_LINE
from remsim_supervisor.core.simplan import KNOWN_CAUSES
from remsim_supervisor.supervisor.hooklisten import ready_file_for
from tests.paths import REPO, SHARED

FIXTURES: dict[str, Any] = json.loads((SHARED / "spec" / "remsim-events.json").read_text())
ENTER: list[dict[str, Any]] = FIXTURES["enter_operation"]
LEAVE: list[dict[str, Any]] = FIXTURES["leave_operation"]
SETTLE_S = 0.6  # long enough for a held-back leave (0.3 s) to join its enter's batch
PULSE_MS = 20
ROUNDS = 5
EVENT_SCRIPT = REPO / "files/usr/libexec/remsim-supervisor/remsim-event"
IFACE_HOOK = REPO / "files/etc/hotplug.d/iface/90-remsim-supervisor"
USB_HOOK = REPO / "files/etc/hotplug.d/usb/90-remsim-supervisor"
WHITELIST = ("PATH", "HOME", "LANG", "TZ", "USER", "LOGNAME", "PWD", "SHELL", "TERM", "TMPDIR")
HOTPLUG_LINE = re.compile(r"hotplug (iface|usb) (.*)$")


@pytest.fixture(scope="module", autouse=True)
def _userland() -> None:
    missing = labubus.missing()
    if missing:
        message = f"OpenWrt's ubus not built ({', '.join(missing)}): sh scripts/build-openwrt.sh"
        if os.environ.get("REMSIM_ROUTER_TESTS") == "1":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


class Tree:
    """The event script and the hooks as packaged, with a launcher that notes Python starts."""

    def __init__(self, root: Path, rig: Rig) -> None:
        self.root = root
        self.rig = rig
        self.starts = root / "python-starts"
        libexec = root / "usr/libexec/remsim-supervisor"
        self.bin = root / "usr/bin"
        libexec.mkdir(parents=True)
        self.bin.mkdir(parents=True)
        self.script = libexec / "remsim-event"
        self.script.write_bytes(EVENT_SCRIPT.read_bytes())
        self.script.chmod(0o755)
        launcher = self.bin / "remsim-supervisor"
        launcher.write_text(f'#!/bin/sh\necho "$*" >> "{self.starts}"\n'
                            f'exec "{sys.executable}" -m remsim_supervisor "$@"\n')
        launcher.chmod(0o755)
        self.harness = {"REMSIM_SUPERVISOR_CONFIG": str(rig.config_path),
                        SIM_GPIO_ENV: str(rig.gpio_root), STATE_DIR: str(root / "state"),
                        EVENT_SETTLE: str(SETTLE_S), "PYTHONPATH": str(REPO)}

    def python_starts(self) -> list[str]:
        return self.starts.read_text().splitlines() if self.starts.exists() else []

    def start_events(self, events: Sequence[Mapping[str, Any]],
                     hold_s: float = 0.0) -> list[subprocess.Popen[bytes]]:
        """Each event as the client starts it: ``/bin/sh -c "SCRIPT CAUSE"``, not waited for."""
        procs = []
        for event in events:
            env = {k: os.environ[k] for k in WHITELIST if k in os.environ}
            env.update(event["env"])
            env.update({"REMSIM_CAUSE": event["cause"], **self.harness})
            command = f"{self.script} {event['cause']}"
            if hold_s:  # arrives late, though started now
                command = f"sleep {hold_s}; exec {command}"
            procs.append(subprocess.Popen(["/bin/sh", "-c", command], env=env,
                                          stdin=subprocess.DEVNULL, start_new_session=True))
        return procs

    def hook(self, hook: Path, event: Mapping[str, str]) -> None:
        """One hook run as hotplug-call runs it (sourced by busybox ash), waited for."""
        env = {"PATH": f"{self.bin}:/usr/sbin:/usr/bin:/sbin:/bin", **self.harness, **event}
        result = subprocess.run(["busybox", "ash", "-c", f". {hook}"], env=env, check=False,
                                stdin=subprocess.DEVNULL, capture_output=True, timeout=10)
        assert result.returncode == 0 and result.stdout == b"", result


def reap(procs: Sequence[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        try:
            assert p.wait(20) == 0
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()


def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def ready_pids(rig: Rig) -> tuple[int, int] | None:
    try:
        first = Path(ready_file_for(rig.socket)).read_text().splitlines()[0]
    except (OSError, IndexError):
        return None
    daemon, child = first.split()
    return int(daemon), int(child)


def hotplug_lines(rig: Rig) -> list[tuple[str, dict[str, str]]]:
    out = []
    for line in rig.log().splitlines():
        m = HOTPLUG_LINE.search(line)
        if m:
            out.append((m.group(1), dict(kv.split("=", 1) for kv in m.group(2).split()
                                         if "=" in kv)))
    return out


def ubus_status(rig: Rig) -> dict[str, Any]:
    status: dict[str, Any] = rig.status()["events"]["ubus"]
    return status


@contextlib.contextmanager
def listening_rig(root: Path) -> Iterator[tuple[Rig, labubus.Bus, Tree]]:
    root.mkdir(parents=True, exist_ok=True)
    with labubus.Bus(root) as bus, Rig(root / "rig") as rig:
        rig.modems["modem1"].options["reset_pulse_ms"] = str(PULSE_MS)
        rig.plug("modem1")
        rig.plug("modem2")
        rig.write_config()
        rig.start_daemon(env={EVENT_SETTLE: str(SETTLE_S), **bus.environment()})
        rig.wait_for(lambda s: all(m["state"] == "registered" for m in s["modems"])
                     and (s["events"]["ubus"] or {}).get("ready"), 30,
                     "both modems registered and the hook listener ready")
        yield rig, bus, Tree(root / "tree", rig)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Rig, labubus.Bus, Tree]]:
    with listening_rig(tmp_path_factory.mktemp("hooks")) as parts:
        yield parts


def test_the_scripts_know_the_daemons_causes() -> None:
    text = EVENT_SCRIPT.read_text()
    block = text[text.index("\tcase $remsim_cause in"):text.index("\t\t*) return 1 ;;")]
    listed = set(re.findall(r"[a-z]+(?:-[a-z]+)+", block))
    assert listed == set(KNOWN_CAUSES)


def test_the_hooks_share_one_hand_off() -> None:
    def shared(path: Path) -> str:
        text = path.read_text()
        return text[text.index("# --- shared by the hooks: begin"):
                    text.index("# --- shared by the hooks: end")]
    assert shared(IFACE_HOOK) == shared(USB_HOOK) == shared(EVENT_SCRIPT)


def test_events_reach_the_daemon_over_ubus_coalesced(lab: tuple[Rig, labubus.Bus, Tree]) -> None:
    rig, _bus, tree = lab
    emulator = rig.emulator("modem1")
    before = ubus_status(rig)["received_event"]
    resets = emulator.resets
    rng = random.Random(7)
    for n in range(ROUNDS):
        for events, level in ((ENTER, 1), (LEAVE, 0)):
            reap(tree.start_events(rng.sample(events, len(events))))
            resets += 1
            wait_until(lambda want=resets: emulator.resets >= want, 15, f"round {n}: reset")
            assert emulator.resets == resets, rig.log()[-3000:]
            assert rig.gpio.level("modem1_sim", default=0) == level
    time.sleep(2 * SETTLE_S)
    assert emulator.resets == resets  # no late extra reset
    assert ubus_status(rig)["received_event"] - before == ROUNDS * (len(ENTER) + len(LEAVE))
    pinned = rig.status()["events"]["osmo_remsim"]["pinned"]
    assert pinned == {"bankd": "203.0.113.30:9999", "server": "203.0.113.20:9998"}
    assert tree.python_starts() == []  # not one Python start for an event
    assert "Traceback" not in rig.log()


def test_the_clients_order_wins_over_arrival_over_ubus(lab: tuple[Rig, labubus.Bus, Tree]) -> None:
    rig, _bus, tree = lab
    emulator = rig.emulator("modem1")
    wait_until(lambda: not rig.status()["events"]["osmo_remsim"]["busy"], 10, "quiet")
    if rig.gpio.level("modem1_sim", default=0) != 0:
        reap(tree.start_events(LEAVE))
        wait_until(lambda: rig.gpio.level("modem1_sim", default=0) == 0, 10, "local SIM")
        wait_until(lambda: not rig.status()["events"]["osmo_remsim"]["busy"], 10, "quiet")
    resets = emulator.resets
    # A reconfiguration: leave, then enter at once; the leave's events arrive last.
    held = tree.start_events(LEAVE, hold_s=0.3)
    reap(held + tree.start_events(ENTER[2:]))
    wait_until(lambda: emulator.resets > resets, 15, "the reset")
    wait_until(lambda: not rig.status()["events"]["osmo_remsim"]["busy"], 10, "quiet")
    assert rig.gpio.level("modem1_sim", default=0) == 1  # the enter, issued last, won
    assert emulator.resets == resets + 1
    assert tree.python_starts() == []


def test_hotplug_events_reach_the_daemon_over_ubus_in_order(
        lab: tuple[Rig, labubus.Bus, Tree]) -> None:
    rig, _bus, tree = lab
    seen = len(hotplug_lines(rig))
    names = [f"lan{i}" for i in range(12)]
    for i, name in enumerate(names):
        action = "ifdown" if i % 3 == 2 else "ifup"
        tree.hook(IFACE_HOOK, {"ACTION": action, "INTERFACE": name, "DEVICE": f"eth{i}"})
    tree.hook(USB_HOOK, {"ACTION": "add", "DEVTYPE": "usb_device", "SUBSYSTEM": "usb",
                         "DEVPATH": "/devices/platform/usb1/1-1", "PRODUCT": "2c7c/125/318"})
    tree.hook(IFACE_HOOK, {"ACTION": "ifup", "INTERFACE": "loopback", "DEVICE": "lo"})  # filtered
    got = wait_until(lambda: len(hotplug_lines(rig)) >= seen + len(names) + 1 and
                     hotplug_lines(rig)[seen:], 10, "the hotplug events")
    assert [env.get("INTERFACE") for kind, env in got if kind == "iface"] == names
    assert got[-1] == ("usb", {"ACTION": "add", "DEVPATH": "/devices/platform/usb1/1-1",
                               "DEVTYPE": "usb_device", "PRODUCT": "2c7c/125/318",
                               "SUBSYSTEM": "usb"})
    assert got[2][1] == {"ACTION": "ifdown", "DEVICE": "eth2", "INTERFACE": "lan2"}
    time.sleep(0.2)
    assert len(hotplug_lines(rig)) == seen + len(names) + 1  # loopback never came
    assert tree.python_starts() == []


def test_a_value_the_shell_cannot_send_takes_the_python_path(
        lab: tuple[Rig, labubus.Bus, Tree]) -> None:
    rig, _bus, tree = lab
    seen = len(hotplug_lines(rig))
    tree.hook(IFACE_HOOK, {"ACTION": "ifup", "INTERFACE": 'we"ird', "DEVICE": "eth9"})
    got = wait_until(lambda: hotplug_lines(rig)[seen:], 15, "the hotplug event")
    assert got == [("iface", {"ACTION": "ifup", "DEVICE": "eth9", "INTERFACE": 'we"ird'})]
    assert wait_until(tree.python_starts, 5, "the Python hand-off") == ["hotplug iface"]
    tree.starts.unlink()


def test_garbage_on_the_bus_is_survived(lab: tuple[Rig, labubus.Bus, Tree]) -> None:
    rig, bus, tree = lab
    before = ubus_status(rig)
    garbage = [
        {"hook": "bogus"},
        {"hook": "event", "cause": "request-sim-remote; reboot"},
        {"hook": "event", "cause": "request-sim-remote", "origin": {"pid": "1x", "ticks": "2"}},
        {"hook": "event", "cause": "request-sim-remote", "env": {"REMSIM_X": 5}},
        {"hook": "hotplug", "subsystem": "pci", "env": {}},
        {"hook": "hotplug", "subsystem": "iface", "env": {"lower": "x"}},
        {"hook": "hotplug", "subsystem": "iface", "env": {"ACTION": "x" * (MAX_LINE + 10)}},
        {"probe": "not a token!"},
        {"hook": "event", "cause": "request-sim-remote", "env": "REMSIM_X=1"},
        {"hook": "event", "cause": "request-sim-remote", "origin": "now"},
    ]
    for message in garbage:
        result = bus.send(HOOK_EVENT, json.dumps(message))
        assert result.returncode == 0, result.stderr
    seen = len(hotplug_lines(rig))
    tree.hook(IFACE_HOOK, {"ACTION": "ifup", "INTERFACE": "after", "DEVICE": "eth7"})
    wait_until(lambda: hotplug_lines(rig)[seen:], 10, "the event after the garbage")
    after = ubus_status(rig)
    assert after["malformed"] - before["malformed"] == len(garbage)
    assert after["starts"] == before["starts"] and after["ready"]
    assert after["received_event"] == before["received_event"]
    ignored = [line for line in rig.log().splitlines() if "message was ignored" in line]
    assert len(ignored) == 1, ignored  # logged once, then counted
    assert "Traceback" not in rig.log()


def gone(pid: int) -> bool:
    """No such process, or only its zombie (an orphan waiting for init to reap it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def zombies_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid and fields[0] == "Z":
                    found.append(int(entry))
    return found


def test_a_killed_listener_is_restarted_and_reaped(lab: tuple[Rig, labubus.Bus, Tree]) -> None:
    rig, _bus, tree = lab
    pids = ready_pids(rig)
    assert pids is not None
    daemon, child = pids
    starts = ubus_status(rig)["starts"]
    os.kill(child, signal.SIGKILL)
    new = wait_until(lambda: (p := ready_pids(rig)) is not None and p[1] != child and p, 10,
                     "a new listener")
    assert new[0] == daemon
    assert ubus_status(rig)["starts"] == starts + 1
    assert not Path(f"/proc/{child}").exists()  # reaped, not a zombie
    assert zombies_of(daemon) == []
    seen = len(hotplug_lines(rig))
    tree.hook(IFACE_HOOK, {"ACTION": "ifup", "INTERFACE": "again", "DEVICE": "eth8"})
    wait_until(lambda: hotplug_lines(rig)[seen:], 10, "an event through the new listener")
    assert tree.python_starts() == []


def test_without_a_listening_daemon_the_python_path_runs(tmp_path: Path) -> None:
    with listening_rig(tmp_path) as (rig, bus, tree):
        ready = Path(ready_file_for(rig.socket))
        pids = ready_pids(rig)
        assert pids is not None
        # Killed outright: the ready file stays, naming a dead daemon.
        assert rig.daemon is not None
        rig.daemon.kill()
        rig.stop_daemon()
        assert ready.exists()
        reap(tree.start_events([e for e in ENTER if e["cause"] == "request-sim-remote"]))
        assert tree.python_starts() == ["event -- request-sim-remote"]
        # The journal's worker switched the line without the daemon.
        wait_until(lambda: rig.gpio.level("modem1_sim", default=0) == 1, 10, "the worker")
        # The next start ends the killed daemon's listener and listens again.
        rig.start_daemon(env={EVENT_SETTLE: str(SETTLE_S), **bus.environment()})
        rig.wait_for(lambda s: (s["events"]["ubus"] or {}).get("ready"), 30, "the listener")
        wait_until(lambda: gone(pids[1]), 5, "the old listener's end")
        # Stopped in order: the ready file and the listener go with the daemon.
        new = ready_pids(rig)
        assert new is not None and rig.stop_daemon() == 0
        assert not ready.exists()
        assert not Path(f"/proc/{new[1]}").exists()  # ended and reaped
        tree.starts.unlink()
        reap(tree.start_events([e for e in LEAVE if e["cause"] == "request-sim-local"]))
        assert tree.python_starts() == ["event -- request-sim-local"]
        wait_until(lambda: rig.gpio.level("modem1_sim", default=0) == 0, 10, "the worker")
