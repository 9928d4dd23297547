"""The modem task's choice of AT port beside other programs, over real ptys and lock files;
and what the guardian is offered for a modem whose every AT port is held."""

from __future__ import annotations

import asyncio
import logging
import os
import pty
import subprocess
import tty
from collections.abc import Iterator
from pathlib import Path

import pytest

from remsim_lab.openwatch import OpenWatch
from remsim_supervisor.adapters.discovery import Discovery
from remsim_supervisor.adapters.portlock import Holder, UucpLock
from remsim_supervisor.config import ModemConfig
from remsim_supervisor.core import machine as m
from remsim_supervisor.core.costs import CostModel
from remsim_supervisor.core.planner import Step, plan
from remsim_supervisor.supervisor.actions import BeatFacts
from remsim_supervisor.supervisor.atports import PortPicker, port_order
from remsim_supervisor.supervisor.guardian import STARTUP_S, Guardian, GuardianSettings
from remsim_supervisor.supervisor.lines import ModemLines
from remsim_supervisor.supervisor.modem import ModemRunner
from remsim_supervisor.supervisor.modems import Modems
from remsim_supervisor.vendors import RUNG_COSTS

log = logging.getLogger("test.atports")


@pytest.fixture
def ports(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """ttyUSB2 and ttyUSB3: links to two real ptys."""
    masters, links = [], []
    for name in ("ttyUSB2", "ttyUSB3"):
        master, slave = pty.openpty()
        tty.setraw(slave)
        link = tmp_path / name
        link.symlink_to(os.ttyname(slave))
        os.close(slave)
        masters.append(master)
        links.append(str(link))
    yield links[0], links[1]
    for master in masters:
        os.close(master)


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "60"])
    comm = Path(f"/proc/{proc.pid}/comm")
    while comm.read_text().strip() != "sleep":
        pass
    yield proc
    proc.kill()
    proc.wait()


def lock(path: str, lock_dir: Path, pid: int) -> None:
    Path(UucpLock(path, str(lock_dir)).path).write_text(f"{pid:10d}\n")


def test_a_held_main_port_means_the_next_one(ports: tuple[str, str], tmp_path: Path,
                                             sleeper: subprocess.Popen[bytes],
                                             caplog: pytest.LogCaptureFixture) -> None:
    main, second = ports
    lock(main, tmp_path, sleeper.pid)
    picker = PortPicker("modem1", log, str(tmp_path))

    async def go() -> None:
        for _ in range(2):  # the same choice twice: one log line
            port, why = await picker.open([main, second])
            assert port is not None and why == ""
            assert port.path == second
            await port.close()

    with caplog.at_level(logging.INFO), OpenWatch(os.path.realpath(main)) as watch:
        asyncio.run(go())
        assert watch.opens() == 0
    reason = f"ttyUSB2 held by pid {sleeper.pid} (sleep)"
    assert picker.choice is not None and picker.choice.reason == reason
    assert picker.status(second) == {"at_port_reason": reason}
    assert picker.status(None) == {}  # away from the port: no reason shown
    assert not picker.all_held
    assert caplog.text.count("using ttyUSB3 instead") == 1


def test_every_port_held(ports: tuple[str, str], tmp_path: Path,
                         sleeper: subprocess.Popen[bytes]) -> None:
    main, second = ports
    lock(main, tmp_path, sleeper.pid)
    lock(second, tmp_path, sleeper.pid)
    picker = PortPicker("modem1", log, str(tmp_path))
    port, why = asyncio.run(picker.open([main, second]))
    held = (f"every AT port is held: ttyUSB2 held by pid {sleeper.pid} (sleep); "
            f"ttyUSB3 held by pid {sleeper.pid} (sleep)")
    assert (port, why) == (None, held)
    assert picker.all_held
    assert picker.status(None) == {"at_port_reason": held, "at_ports_held": True}
    picker.forget()
    assert not picker.all_held and picker.status(None) == {}


def test_a_gone_main_port_is_not_stepped_past(ports: tuple[str, str], tmp_path: Path) -> None:
    _main, second = ports
    picker = PortPicker("modem1", log, str(tmp_path))
    with OpenWatch(os.path.realpath(second)) as watch:
        port, why = asyncio.run(picker.open([str(tmp_path / "ttyUSB9"), second]))
        assert watch.opens() == 0
    assert port is None and why.endswith("ttyUSB9 does not exist")
    assert not picker.all_held


def test_port_order_puts_the_chosen_port_first(tmp_path: Path) -> None:
    from remsim_lab.fakesysfs import FakeSysfs, InterfaceSpec

    fake = FakeSysfs(tmp_path / "fs")
    fake.add_usb_modem("1-1", 0x2C7C, 0x0125)
    found = Discovery(fake.sysfs_root, fake.dev_root).find(usb_path="1-1")
    assert found is not None
    dev = fake.dev_root
    assert found.at_ports == (f"{dev}/ttyUSB2", f"{dev}/ttyUSB3")
    assert port_order(f"{dev}/ttyUSB2", found) == found.at_ports
    assert port_order(f"{dev}/ttyUSB3", found) == (f"{dev}/ttyUSB3", f"{dev}/ttyUSB2")
    assert port_order("/dev/ttyS1", None) == ("/dev/ttyS1",)

    # An unknown device's ports are only guesses: none is a fallback.
    fake.add_usb_modem("1-3", 0x1E0E, 0x9001, {n: InterfaceSpec() for n in range(3)})
    unknown = Discovery(fake.sysfs_root, fake.dev_root).find(usb_path="1-3")
    assert unknown is not None and len(unknown.at_candidates) == 3 and unknown.at_ports == ()
    chosen = unknown.at_candidates[0]
    assert port_order(chosen, unknown) == (chosen,)
    # A layout that names probe candidates (ECM) lists them after main and secondary.
    fake.add_usb_modem("1-4", 0x2C7C, 0x0125, profile_key="ec25",
                       composition_label="usbnet 1 (ECM)")
    ecm = Discovery(fake.sysfs_root, fake.dev_root).find(usb_path="1-4")
    assert ecm is not None and [Path(p).name for p in ecm.at_ports] == [
        fake.tty_for("1-4", 2), fake.tty_for("1-4", 3)]


class _Line:
    def release(self) -> None:
        pass


class _Beat:
    def __init__(self) -> None:
        self.now = 0.0

    def facts(self) -> BeatFacts:
        return BeatFacts(last_ack=0.0, path=None, last_attempt_end=self.now,
                         in_flight_since=None, interval=60.0, schedule_fault=None,
                         grace_left_s=300.0 - self.now)

    def modem_ok(self, name: str) -> bool:
        return False

    def acked_over_since(self, name: str, since: float) -> bool:
        return False

    def beat_now(self) -> None:
        pass

    def note_schedule_fault(self, reason: str | None) -> None:
        pass


def test_a_modem_held_on_every_port_is_offered_no_step(tmp_path: Path) -> None:
    async def go() -> None:
        cfg = ModemConfig("modem1", "primary", interface="wwan", usb_path="1-1")
        runner = ModemRunner(cfg, Discovery(str(tmp_path), str(tmp_path)))
        modems = Modems(reroute=lambda name, why: asyncio.sleep(0, True))
        modems.put(runner, ModemLines(reset=_Line(), power=_Line()))  # type: ignore[arg-type]
        beat = _Beat()
        guardian = Guardian(modems, beat, GuardianSettings(300.0, 30.0, 4, 10.0),
                            clock=lambda: beat.now)
        beat.now = STARTUP_S + 1  # stranded: a modem that never worked is worked on

        free = guardian.health()[0]
        assert {"reset_gpio", "power_gpio"} <= free.capabilities

        runner.ports.held = (Holder("ttyUSB2", 1234, "smsd", "lock file"),)
        snap = modems.snapshot("modem1")
        assert snap is not None and snap.capabilities == frozenset() and snap.interface is None
        (held,) = guardian.health()
        assert held.capabilities == frozenset() and not held.at_responsive
        decision = plan(now=beat.now, last_ack=0.0, grace_s=300.0, margin_s=30.0,
                        modems=[held], history=[], costs=CostModel(defaults=RUNG_COSTS),
                        max_resets_per_hour=4, path=None)
        assert not isinstance(decision, Step), decision
        # Its data link down, there is no session to cut: ifup (which restarts it) is offered.
        runner.apply(m.LinkChanged(False))
        snap = modems.snapshot("modem1")
        assert snap is not None and (snap.capabilities, snap.interface) == (frozenset(), "wwan")
        runner.apply(m.LinkChanged(True))
        snap = modems.snapshot("modem1")
        assert snap is not None and snap.interface is None
        freed = plan(now=beat.now, last_ack=0.0, grace_s=300.0, margin_s=30.0,
                     modems=[free], history=[], costs=CostModel(defaults=RUNG_COSTS),
                     max_resets_per_hour=4, path=None)
        assert isinstance(freed, Step)  # the same modem, free: a step (ifup or gpio_reset)

    asyncio.run(go())
