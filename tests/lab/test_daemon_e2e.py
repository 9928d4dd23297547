"""End to end: the real daemon over emulated modems on pseudo-terminals.

Each test stands up a rig (fake USB bus in sysfs, one emulator per modem on a
real pty, a UCI file naming the modems by USB path only) and runs
``remsim-supervisor run`` as a process, talking to it through its control
socket and the ``status``/``modem`` commands, as a user would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from remsim_lab.fakesysfs import InterfaceSpec
from remsim_lab.rig import Rig


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    with Rig(tmp_path / "rig") as r:
        yield r


def cli(rig: Rig, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "remsim_supervisor", *args],
                          capture_output=True, text=True, timeout=30, env=rig.environment())


def test_two_modems_register_unplug_and_come_back(rig: Rig) -> None:
    rig.plug("modem1")
    rig.plug("modem2")
    rig.start_daemon()
    # Registration is published as soon as it is known; the signal of the same
    # poll follows a moment later.
    status = rig.wait_for(
        lambda s: all(m["state"] == "registered" and m["signal"] and m["operator"]
                      for m in s["modems"]), 30, "both registered, with signal")

    m1, m2 = rig.modem_status("modem1", status), rig.modem_status("modem2", status)
    assert (m1["role"], m1["model"], m2["role"], m2["model"]) == (
        "primary", "ec25", "iot", "fm350gl")
    for m in (m1, m2):
        assert m["registration"] == "home"
        assert m["access_tech"] == "lte"
        assert m["sim"]["state"] == "ready"
        assert any(k.endswith("_dbm") for k in m["signal"]), m["signal"]
        assert m["operator"]
        assert m["at_port"].startswith(rig.sysfs.dev_root)
    pid = status["pid"]

    # The CLI shows the same, as JSON and on one screen.
    shown = cli(rig, "status", "--json", "-c", str(rig.config_path))
    assert shown.returncode == 0, shown.stderr
    assert '"state": "registered"' in shown.stdout
    human = cli(rig, "status", "-c", str(rig.config_path))
    assert human.returncode == 0 and "modem2" in human.stdout and "registered" in human.stdout

    # Unplug the IoT modem: absent, the other one untouched.
    rig.unplug("modem2")
    status = rig.wait_for(lambda s: rig.modem_status("modem2", s)["state"] == "absent", 10,
                          "modem2 absent")
    assert rig.modem_status("modem1", status)["state"] == "registered"
    old_port = m2["at_port"]

    # Another USB serial device takes its tty name meanwhile, so the modem
    # comes back under a different one, as happens on a real bus.
    rig.sysfs.add_usb_modem("1-3", 0x0403, 0x6001,
                            {0: InterfaceSpec(driver="ftdi_sio", tty="usbserial")})
    rig.plug("modem2")
    back = rig.wait_state("modem2", "registered", 30)
    assert back["at_port"] != old_port
    assert rig.status()["pid"] == pid  # the same daemon, never restarted

    # One AT command through the daemon's own port handling.
    at = cli(rig, "modem", "modem1", "at", "AT+CSQ", "-c", str(rig.config_path))
    assert at.returncode == 0, at.stderr
    assert at.stdout.splitlines()[0].startswith("+CSQ:")
    assert at.stdout.splitlines()[-1] == "OK"
    bad = cli(rig, "modem", "modem1", "at", "AT+NOSUCH", "-c", str(rig.config_path))
    assert bad.returncode == 1

    for name in ("modem1", "modem2"):
        assert not any("COPS=?" in c.upper().replace(" ", "") for c in rig.emulator(name).commands)

    assert rig.stop_daemon() == 0
    assert not os.path.exists(rig.socket)
    log = rig.log()
    assert "modem2 (iot): registered -> absent: AT port lost" in log
    assert "modem2 (iot): absent -> probing" in log


def test_silent_modem_delays_neither_the_other_nor_status(rig: Rig) -> None:
    rig.plug("modem1")
    rig.plug("modem2")
    rig.emulator("modem2").set_silent(True)
    started = time.monotonic()
    rig.start_daemon()
    rig.wait_state("modem1", "registered", 30)
    command_timeout = 5.0  # the profiles' ordinary AT timeout
    assert time.monotonic() - started < command_timeout + 3.0  # interpreter start included

    # Status is served from memory while modem2's commands hang.
    worst = 0.0
    for _ in range(20):
        t0 = time.monotonic()
        status = rig.status()
        worst = max(worst, time.monotonic() - t0)
        time.sleep(0.05)
    assert worst < 1.0, worst
    assert rig.modem_status("modem2", status)["state"] in ("probing", "failed")

    failed = rig.wait_state("modem2", "failed", 30)
    assert "silent" in failed["reason"]

    # The wedge clears: the backoff re-probe brings it back.
    rig.emulator("modem2").set_silent(False)
    rig.wait_state("modem2", "registered", 40)

    # SIGTERM while everything runs: an orderly stop well within 5 s.
    assert rig.daemon is not None
    t0 = time.monotonic()
    rig.daemon.send_signal(signal.SIGTERM)
    assert rig.daemon.wait(10) == 0
    assert time.monotonic() - t0 < 5.0


def test_sim_registration_and_reboot_events(rig: Rig) -> None:
    rig.plug("modem1")
    rig.plug("modem2")
    rig.start_daemon()
    rig.wait_state("modem1", "registered", 30)

    emu = rig.emulator("modem1")
    emu.deregister(stat=2)
    rig.wait_state("modem1", "searching", 10)
    emu.register("roaming")
    assert rig.wait_state("modem1", "registered", 10)["registration"] == "roaming"

    emu.remove_sim()
    assert rig.wait_state("modem1", "sim_wait", 10)["sim"]["state"] == "not_inserted"
    emu.insert_sim()
    rig.wait_state("modem1", "registered", 20)

    resets = emu.resets
    emu.reboot(down_s=0.0)  # RDY on the same port: probe again
    rig.wait_for(lambda s: emu.resets > resets, 5, "reboot")
    rig.wait_state("modem1", "registered", 20)
    assert "rebooted" in rig.log() or "probing" in rig.log()
    assert rig.stop_daemon() == 0


def test_broken_reload_keeps_running_state_and_good_reload_applies(rig: Rig) -> None:
    rig.plug("modem1")
    rig.plug("modem2")
    rig.start_daemon()
    rig.wait_for(lambda s: all(m["state"] == "registered" for m in s["modems"]), 30, "registered")
    good = rig.config_path.read_text()

    rig.config_path.write_text(good.replace("option role 'iot'", "option role 'iott'"))
    answer = rig.request({"cmd": "reload"})
    assert answer["ok"] is False and "running state unchanged" in answer["error"]
    assert [m["state"] for m in rig.status()["modems"]] == ["registered", "registered"]

    # As `uci commit` writes it: a blank first line moves every section, and an
    # option outside the modem sections changes. No modem restarts for that.
    rig.config_path.write_text("\n" + good.replace("option log_level 'debug'",
                                                   "option log_level 'info'"))
    answer = rig.request({"cmd": "reload"})
    assert answer["ok"] is True, answer
    assert "restarted: nothing" in answer["message"], answer
    rig.config_path.write_text(good)
    assert rig.request({"cmd": "reload"})["ok"] is True

    # SIGHUP, as procd's reload sends it, with a valid change to one modem.
    rig.config_path.write_text(good.replace("option usb_path '1-2'",
                                            "option usb_path '1-2'\n\toption interface 'wwan1'"))
    assert rig.daemon is not None
    rig.daemon.send_signal(signal.SIGHUP)
    status = rig.wait_for(lambda s: rig.modem_status("modem2", s)["interface"] == "wwan1", 10,
                          "reloaded modem2")
    assert rig.modem_status("modem1", status)["state"] == "registered"
    rig.wait_state("modem2", "registered", 30)
    assert "restarted: modem2" in rig.log()
    assert rig.stop_daemon() == 0


def test_crash_leftovers_are_repaired_and_a_second_daemon_refused(rig: Rig) -> None:
    rig.plug("modem1")
    rig.plug("modem2")
    first = rig.start_daemon()
    rig.wait_state("modem1", "registered", 30)

    second = subprocess.run(
        [sys.executable, "-m", "remsim_supervisor", "run", "-c", str(rig.config_path)],
        capture_output=True, text=True, timeout=30, env=rig.environment())
    assert second.returncode == 1
    assert "another remsim-supervisor answers" in second.stderr
    assert "Traceback" not in second.stderr

    first.kill()  # kill -9: socket file and UUCP locks stay behind
    first.wait()
    assert os.path.exists(rig.socket)
    assert any(rig.lock_dir.iterdir())
    rig.daemon = None
    rig.start_daemon()
    rig.wait_for(lambda s: all(m["state"] == "registered" for m in s["modems"]), 30,
                 "registered after restart")
    assert rig.stop_daemon() == 0
    assert not any(rig.lock_dir.iterdir())


def test_a_registration_urc_racing_a_query_is_settled_by_asking_again(rig: Rig) -> None:
    rig.plug("modem1")
    rig.plug("modem2")
    emu = rig.emulator("modem1")
    emu.deregister(stat=2)
    answers: list[str] = []

    def cgreg(_command: str) -> list[str]:
        # The first times (the probe asks twice), the network's "searching"
        # URC lands inside the query's answer, ahead of a stale "home"
        # computed a moment before.
        answers.append(_command)
        if len(answers) <= 2:
            return ["+CGREG: 2", '+CGREG: 2,1,"1A2B","01C3D4E",7']
        return ["+CGREG: 2,2"]

    emu.set_reply("AT+CGREG?", cgreg)
    rig.start_daemon()
    rig.wait_for(lambda s: len(answers) >= 3, 20, "a CGREG query after the racy ones")
    status = rig.wait_state("modem1", "searching", 10)
    assert status["registration"] == "searching"
    assert rig.stop_daemon() == 0


def test_modem_reset_on_demand_by_at_and_by_the_reset_line(rig: Rig) -> None:
    rig.plug("modem1")
    rig.plug("modem2")
    rig.start_daemon()
    rig.wait_for(lambda s: all(m["state"] == "registered" for m in s["modems"]), 30, "registered")
    emu = rig.emulator("modem1")
    before = emu.resets

    soft = cli(rig, "modem", "modem1", "reset", "-c", str(rig.config_path), "--timeout", "20")
    assert soft.returncode == 0, soft.stderr
    assert "soft_reset done, registered again" in soft.stdout
    assert "AT+CFUN=1,1" in emu.commands  # the EC25's own reset command
    assert emu.resets == before + 1

    pulse = cli(rig, "modem", "modem1", "reset", "--level", "gpio_reset", "-c",
                str(rig.config_path), "--timeout", "20")
    assert pulse.returncode == 0, pulse.stderr
    assert emu.resets == before + 2
    assert "reset pulse" in rig.log() and "on demand" in rig.log()

    unknown = cli(rig, "modem", "modem9", "reset", "-c", str(rig.config_path))
    assert unknown.returncode == 1 and "no modem named 'modem9'" in unknown.stderr
    assert rig.stop_daemon() == 0


def test_data_device_from_netifd_then_from_iface_hotplug(rig: Rig, tmp_path: Path) -> None:
    ubus = tmp_path / "ubus"
    ubus.write_text('#!/bin/sh\n[ "$1 $2 $3" = "call network.interface.iotwan status" ] || exit 4\n'
                    'echo \'{"up": true, "l3_device": "wwan_iot", "device": "wwan0"}\'\n')
    ubus.chmod(0o755)
    rig.modems["modem2"].options["interface"] = "iotwan"
    rig.write_config()
    rig.plug("modem1")
    rig.plug("modem2")
    rig.start_daemon(env={"REMSIM_SUPERVISOR_UBUS": str(ubus)})
    rig.wait_for(lambda s: rig.modem_status("modem2", s)["device"] == "wwan_iot", 20,
                 "the l3 device from ubus")

    def iface(action: str, device: str) -> None:
        env = {**rig.environment(), "ACTION": action, "INTERFACE": "iotwan", "DEVICE": device}
        done = subprocess.run([sys.executable, "-m", "remsim_supervisor", "hotplug", "iface",
                               "-c", str(rig.config_path)], env=env, timeout=30)
        assert done.returncode == 0

    iface("ifup", "wwan9")
    rig.wait_for(lambda s: rig.modem_status("modem2", s)["device"] == "wwan9", 10, "ifup's device")
    iface("ifdown", "wwan9")
    # Down: back to what the modem's USB device shows (the FM350's RNDIS net interface).
    status = rig.wait_for(lambda s: rig.modem_status("modem2", s)["device"] != "wwan9", 10,
                          "the device after ifdown")
    assert rig.modem_status("modem2", status)["device"] == "usb0"
    assert rig.status()["events"]["hotplug"] == 2
    assert rig.stop_daemon() == 0


def test_a_line_held_at_start_is_taken_once_it_is_free(rig: Rig) -> None:
    rig.plug("modem1")
    rig.plug("modem2")
    rig.gpio.claim(rig.modems["modem1"].sim_line, "remsim-event worker")
    try:
        rig.start_daemon()
        status = rig.wait_state("modem1", "registered", 30)
        assert status["sim"]["slot"] is None  # no line, no SIM side to tell
        assert "modem1 (primary): sim_gpio not available" in rig.log()
    finally:
        rig.gpio.unclaim(rig.modems["modem1"].sim_line)
    status = rig.wait_for(lambda s: rig.modem_status("modem1", s)["sim"]["slot"] is not None, 10,
                          "the SIM line taken after all")
    assert "sim_gpio sim:modem1_sim is available now" in rig.log()
    assert rig.stop_daemon() == 0


def test_status_masks_identifiers_unless_asked(rig: Rig) -> None:
    rig.plug("modem1")
    rig.plug("modem2")
    rig.start_daemon()
    status = rig.wait_for(
        lambda s: all(m["identity"]["imei"] and m["identity"]["iccid"] and m["identity"]["imsi"]
                      for m in s["modems"]), 30, "identities read")
    full = [v for m in status["modems"] for v in
            (m["identity"]["imei"], m["identity"]["imsi"], m["identity"]["iccid"])]
    assert all(len(v) >= 14 for v in full), full

    shown = cli(rig, "status", "--json", "-c", str(rig.config_path))
    assert shown.returncode == 0, shown.stderr
    masked = json.loads(shown.stdout)
    for m in masked["modems"]:
        for key in ("imei", "imsi", "iccid"):
            value = m["identity"][key]
            assert set(value[:-4]) == {"*"} and len(value) >= 14, value
    human = cli(rig, "status", "-c", str(rig.config_path))
    assert human.returncode == 0, human.stderr
    assert "IMEI ***" in human.stdout
    for value in full:
        assert value not in shown.stdout and value not in human.stdout
        assert value[-4:] in shown.stdout and value[-4:] in human.stdout

    revealed = cli(rig, "status", "--json", "--show-identifiers", "-c", str(rig.config_path))
    assert revealed.returncode == 0, revealed.stderr
    for value in full:
        assert value in revealed.stdout
