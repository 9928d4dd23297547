"""The modem task's side of a URC: typed by the engine once, applied without re-reading."""

from __future__ import annotations

from pathlib import Path

import pytest

from remsim_supervisor.adapters.discovery import Discovery
from remsim_supervisor.config import ModemConfig
from remsim_supervisor.core import machine as m
from remsim_supervisor.core.at import AtEngine, Urc
from remsim_supervisor.core.parse.registration import Registration
from remsim_supervisor.supervisor.modem import ModemRunner
from remsim_supervisor.vendors import get_profile


@pytest.fixture
def runner(tmp_path: Path) -> ModemRunner:
    r = ModemRunner(ModemConfig("modem1", "primary"), Discovery(str(tmp_path), str(tmp_path)))
    for event in (m.PortOpened("/dev/ttyUSB2"), m.Identified("ec25"), m.SimState("ready")):
        r.apply(event)
    return r


def urcs(profile: str, data: bytes) -> list[Urc]:
    return [e for e in AtEngine(get_profile(profile).urcs).feed(data) if isinstance(e, Urc)]


def test_a_registration_urc_reaches_the_status_as_parsed(runner: ModemRunner) -> None:
    [urc] = urcs("ec25", b'\r\n+CEREG: 5,"1A2B","01234567",7\r\n')
    runner._on_urc(urc)
    reg = runner.facts.best_registration
    assert reg is urc.value and isinstance(reg, Registration)  # the engine's object, not a copy
    status = runner.status()
    assert (status["state"], status["registration"], status["access_tech"]) == (
        "registered", "roaming", "lte")


def test_the_status_layout_is_kept(runner: ModemRunner) -> None:
    assert list(runner.status()) == [
        "name", "role", "model", "state", "reason", "since_s", "at_port", "usb_path",
        "interface", "device", "link", "registration", "access_tech", "operator", "signal",
        "sim", "at_dropped_bytes", "identity"]
    assert runner.status()["sim"] == {"slot": None, "state": "ready"}
    assert runner.snapshot().facts is runner.facts


def test_a_boot_banner_means_a_reboot(runner: ModemRunner) -> None:
    [rdy] = urcs("ec25", b"\r\nRDY\r\n")
    runner._on_urc(rdy)
    assert runner.facts.state == "probing" and runner._reprobe


def test_sim_ready_again_while_ready_means_a_reboot(runner: ModemRunner) -> None:
    [ready] = urcs("fm350gl", b"\r\n+CPIN: READY\r\n")
    runner._on_urc(ready)
    assert runner.facts.state == "probing" and runner._reprobe


def test_other_sim_reports_ask_for_the_sim_state(runner: ModemRunner) -> None:
    runner.apply(m.SimState("not_inserted"))
    for line in (b"+CPIN: READY", b"+QSIMSTAT: 1,1"):
        runner._refresh_sim = False
        [urc] = urcs("ec25", b"\r\n" + line + b"\r\n")
        runner._on_urc(urc)
        assert runner._refresh_sim and not runner._reprobe, line


def test_radio_off_and_packet_events_ask_for_registration(runner: ModemRunner) -> None:
    for line, refresh in ((b"+CFUN: 1", False), (b"+CFUN: 4", True), (b"+CGEV: NW DETACH", True),
                          (b"+CGEV: NW MODIFY 1, 2, 0", False), (b"+CGEV: HELLO", True)):
        runner._refresh_net = False
        [urc] = urcs("ec25", b"\r\n" + line + b"\r\n")
        runner._on_urc(urc)
        assert runner._refresh_net is refresh, line


def test_a_vendor_signal_report_updates_the_signal(runner: ModemRunner) -> None:
    [hcsq] = urcs("me909s", b'\r\n^HCSQ: "LTE",50,40,100,20\r\n')
    runner._on_urc(hcsq)
    assert runner.status()["signal"]["rsrp_dbm"] == -100.0

