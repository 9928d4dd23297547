"""The lab's modem emulator, driven the way the daemon drives a modem: real
ptys, pyserial as the client. Timings are tiny; no test sleeps long."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import serial

from remsim_lab.dialects import DIALECTS, get_dialect
from remsim_lab.emulator import ModemEmulator, ModemModel, _split_commands
from tests.paths import REPO, SHARED

CORPUS = SHARED / "data" / "at_corpus" / "public.jsonl"
REPO = REPO
FINAL = re.compile(rb"\r\n(OK|ERROR|\+CME ERROR:[^\r]*)\r\n")
MAIN = ("ec25", "fm350gl", "l850gl")
ALL = tuple(DIALECTS)

# The vendor's ICCID command and its reply prefix.
ICCID_CMD = {
    "ec25": ("AT+QCCID", "+QCCID: "),
    "fm350gl": ("AT+ICCID", "+ICCID: "),
    "l850gl": ("AT+ICCID", "+ICCID: "),
    "mc7455": ("AT+CCID", "+CCID: "),
    "me909s": ("AT^ICCID?", "^ICCID: "),
    "generic": ("AT+CCID", "+CCID: "),
}


# ------------------------------------------------------------------ helpers


def read_until(ser: serial.Serial, done: Callable[[bytes], bool], timeout: float = 1.0) -> bytes:
    buf = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        buf += ser.read(max(1, ser.in_waiting))
        if done(buf):
            break
    return buf


def read_for(ser: serial.Serial, seconds: float) -> bytes:
    """Everything that arrives within ``seconds`` (to prove silence)."""
    return read_until(ser, lambda _: False, seconds)


def at(ser: serial.Serial, command: str, timeout: float = 1.0) -> str:
    """Send one command line, return the raw text up to its final result."""
    ser.write(command.encode() + b"\r")
    raw = read_until(ser, lambda b: FINAL.search(b) is not None, timeout)
    assert FINAL.search(raw), f"no final result for {command!r}: {raw!r}"
    return raw.decode("latin-1")


def wait_for_text(ser: serial.Serial, text: str, timeout: float = 1.0) -> str:
    raw = read_until(ser, lambda b: text.encode() in b, timeout)
    assert text.encode() in raw, f"{text!r} not seen in {raw!r}"
    return raw.decode("latin-1")


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Callable[..., tuple[ModemEmulator, serial.Serial]]]:
    """Start an emulator (link in tmp_path) and open a client on it once booted."""
    emus: list[ModemEmulator] = []
    clients: list[serial.Serial] = []

    def factory(dialect: str = "ec25", *, client: bool = True, **kw: object
                ) -> tuple[ModemEmulator, serial.Serial]:
        emu = ModemEmulator(dialect, tmp_path / f"ttyUSB{len(emus)}", **kw)  # type: ignore[arg-type]
        emus.append(emu)
        emu.start()
        assert emu.wait_booted(2.0)
        ser = serial.Serial(emu.port, 115200, timeout=0.02)
        clients.append(ser)
        return emu, ser

    yield factory
    for ser in clients:
        ser.close()
    for emu in emus:
        emu.stop()


def open_on_plug(emu: ModemEmulator) -> list[serial.Serial]:
    """Open a client the moment a new port appears (before it boots), as
    the daemon does on a hotplug event: the boot URCs then cannot be missed."""
    opened: list[serial.Serial] = []
    emu.on_plug = lambda path: opened.append(serial.Serial(path, 115200, timeout=0.02))
    return opened


def wait_until(cond: Callable[[], bool], timeout: float = 1.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.005)
    return cond()


# ---------------------------------------------------------- identification


def test_ec25_ati_is_byte_exact_with_echo(make) -> None:
    _emu, ser = make("ec25")
    assert at(ser, "ATI") == "ATI\r\r\nQuectel\r\nEC25\r\nRevision: EC25EFAR06A09M4G\r\n\r\nOK\r\n"


@pytest.mark.parametrize("name", ALL)
def test_identification(make, name: str) -> None:
    _emu, ser = make(name, imei="354174400124199", imsi="250015499041814",
                    iccid="89701010054990418149")
    d = get_dialect(name)
    assert d.revision in at(ser, "ATI")
    assert d.manufacturer in at(ser, "AT+CGMI")
    assert d.model in at(ser, "AT+CGMM")
    assert d.revision in at(ser, "AT+CGMR")
    assert "354174400124199" in at(ser, "AT+CGSN")
    assert "250015499041814" in at(ser, "AT+CIMI")
    command, prefix = ICCID_CMD[name]
    assert f"{prefix}89701010054990418149\r\n" in at(ser, command)
    assert "+CCID: 89701010054990418149" in at(ser, "AT+CCID")


def test_fm350_captured_query_forms(make) -> None:
    _emu, ser = make("fm350gl")
    assert '+CGMM: "FM350-GL"' in at(ser, "AT+CGMM?")
    assert '+GTPKGVER: "81600.' in at(ser, "AT+GTPKGVER?")


# -------------------------------------------------------------- framing


def test_echo_on_off_and_lowercase(make) -> None:
    _emu, ser = make("ec25")
    assert at(ser, "AT") == "AT\r\r\nOK\r\n"
    assert at(ser, "at") == "at\r\r\nOK\r\n"
    assert at(ser, "ATE0") == "ATE0\r\r\nOK\r\n"    # the echo of ATE0 itself still comes
    assert at(ser, "AT") == "\r\nOK\r\n"
    assert at(ser, "at+csq").startswith("\r\n+CSQ: ")
    assert at(ser, "ATE1") == "\r\nOK\r\n"
    assert at(ser, "AT") == "AT\r\r\nOK\r\n"


def test_echo_can_start_off(make) -> None:
    _emu, ser = make("fm350gl", echo=False)
    assert at(ser, "AT") == "\r\nOK\r\n"


def test_split_writes_and_several_commands_per_write(make) -> None:
    emu, ser = make("ec25", echo=False)
    for piece in (b"AT+C", b"S", b"Q\r"):
        ser.write(piece)
        time.sleep(0.02)
    assert read_until(ser, lambda b: b.endswith(b"OK\r\n")) == b"\r\n+CSQ: 24,99\r\n\r\nOK\r\n"
    ser.write(b"AT\rAT+CPIN?\r\nAT+CFUN?\n")
    raw = read_until(ser, lambda b: b.count(b"OK\r\n") == 3)
    assert raw == (b"\r\nOK\r\n" b"\r\n+CPIN: READY\r\n\r\nOK\r\n" b"\r\n+CFUN: 1\r\n\r\nOK\r\n")
    assert emu.commands[-3:] == ["AT", "AT+CPIN?", "AT+CFUN?"]


def test_compound_command_line(make) -> None:
    _emu, ser = make("fm350gl", echo=False)
    out = at(ser, "AT+CMEE=2;+CPIN?;+CSQ")
    assert out == "\r\n+CPIN: READY\r\n\r\n+CSQ: 24, 99\r\n\r\nOK\r\n"
    # The first failing sub-command ends the line with its error.
    assert at(ser, "AT+CSQ;+NOPE;+CPIN?").endswith("\r\n+CME ERROR: unknown\r\n")


def test_unknown_command_per_dialect_and_cmee(make) -> None:
    _emu, ser = make("ec25", echo=False)
    at(ser, "AT+CMEE=2")
    assert at(ser, "AT+NOPE") == "\r\nERROR\r\n"          # Quectel: plain ERROR
    _emu2, ser2 = make("fm350gl", echo=False)
    assert at(ser2, "AT+NOPE") == "\r\nERROR\r\n"
    at(ser2, "AT+CMEE=1")
    assert at(ser2, "AT+NOPE") == "\r\n+CME ERROR: 100\r\n"
    at(ser2, "AT+CMEE=2")
    assert at(ser2, "AT+NOPE") == "\r\n+CME ERROR: unknown\r\n"   # as captured


def test_numeric_result_codes(make) -> None:
    _emu, ser = make("generic", echo=False)
    ser.write(b"ATV0\r")
    assert read_until(ser, lambda b: b.endswith(b"0\r")) == b"0\r"
    ser.write(b"AT+NOPE\r")
    assert read_until(ser, lambda b: b.endswith(b"4\r")) == b"4\r"


# ---------------------------------------------------------- registration


@pytest.mark.parametrize("name", ALL)
def test_registration_query_and_urcs(make, name: str) -> None:
    emu, ser = make(name, echo=False)
    assert emu.wait_registered()
    d = get_dialect(name)
    assert at(ser, "AT+CEREG?") == "\r\n+CEREG: 0,1\r\n\r\nOK\r\n"
    at(ser, "AT+CEREG=2")
    ci = f"{0x671F98A:0{d.ci_digits}X}"
    assert at(ser, "AT+CEREG?") == f'\r\n+CEREG: 2,1,"1F00","{ci}",7\r\n\r\nOK\r\n'

    emu.deregister()
    assert read_until(ser, lambda b: b.endswith(b"\r\n")) == b"\r\n+CEREG: 2\r\n"
    assert at(ser, "AT+CEREG?") == "\r\n+CEREG: 2,2\r\n\r\nOK\r\n"
    emu.register("roaming")
    assert wait_for_text(ser, "+CEREG: 5,") == f'\r\n+CEREG: 5,"1F00","{ci}",7\r\n'

    at(ser, "AT+CEREG=1")
    emu.deregister(3)
    assert read_until(ser, lambda b: b.endswith(b"\r\n")) == b"\r\n+CEREG: 3\r\n"

    at(ser, "AT+CEREG=0")
    emu.register()
    assert read_for(ser, 0.1) == b""                    # n=0: no URC
    assert at(ser, "AT+CEREG?") == "\r\n+CEREG: 0,1\r\n\r\nOK\r\n"


def test_creg_and_cgreg_forms(make) -> None:
    emu, ser = make("fm350gl", echo=False)
    assert emu.wait_registered()
    at(ser, "AT+CREG=2;+CGREG=2")
    assert '+CREG: 2,1,"1F00","0671F98A",7\r\n' in at(ser, "AT+CREG?")
    # As captured from an FM350-GL: the routing area code follows <AcT>.
    assert '+CGREG: 2,1,"1F00","0671F98A",7,"FF"\r\n' in at(ser, "AT+CGREG?")
    at(ser, "AT+CREG=1")
    emu.set_cell(tac=0x2B5D, cell_id=0x1234567)
    # n=2 reports a cell change; n=1 does not (same <stat>).
    raw = read_until(ser, lambda b: b"+CGREG" in b and b.endswith(b"\r\n"))
    assert b'+CGREG: 1,"2B5D","01234567",7,"FF"' in raw
    assert b"+CREG" not in raw + read_for(ser, 0.05)


def test_c5greg_on_standalone_5g(make) -> None:
    emu, ser = make("fm350gl", echo=False, access_tech="nr5g")
    assert emu.wait_registered()
    at(ser, "AT+C5GREG=2")
    assert '+C5GREG: 2,1,"001F00","00671F98A",11' in at(ser, "AT+C5GREG?")
    assert "+CEREG: 0,0" in at(ser, "AT+CEREG?")         # not on EPS
    assert '+COPS:0,0,"Lab Mobile",11' in at(ser, "AT+COPS?")
    assert "ERROR" in at(ser, "AT+C5GREG?".replace("C5", "C6"))


def test_cops_formats_and_detach(make) -> None:
    emu, ser = make("ec25", echo=False)
    assert emu.wait_registered()
    assert '+COPS: 0,0,"Lab Mobile",7' in at(ser, "AT+COPS?")
    assert '+COPS: 0,2,"00101",7' in at(ser, "AT+COPS=3,2;+COPS?")
    at(ser, "AT+CEREG=1")
    ser.write(b"AT+COPS=2\r")
    # The URC follows the command's OK, as real modems hold URCs back.
    assert read_until(ser, lambda b: b"+CEREG" in b) == b"\r\nOK\r\n\r\n+CEREG: 0\r\n"
    assert at(ser, "AT+COPS?") == "\r\n+COPS: 2\r\n\r\nOK\r\n"
    at(ser, "AT+COPS=0")
    assert emu.wait_registered()
    assert "+CGATT: 1" in at(ser, "AT+CGATT?")


def test_cfun_radio_off_and_on(make) -> None:
    emu, ser = make("ec25", echo=False, register_delay=0.1)
    assert emu.wait_registered()
    at(ser, "AT+CEREG=1")
    ser.write(b"AT+CFUN=0\r")
    raw = read_until(ser, lambda b: b"+CEREG: 0" in b)
    assert raw == b"\r\nOK\r\n\r\n+CEREG: 0\r\n"         # result first, then the URC
    assert "+CFUN: 0" in at(ser, "AT+CFUN?")
    assert "+CSQ: 99,99" in at(ser, "AT+CSQ")
    ser.write(b"AT+CFUN=1\r")
    raw = read_until(ser, lambda b: b"+CEREG: 1" in b)
    assert raw == b"\r\nOK\r\n\r\n+CEREG: 2\r\n\r\n+CEREG: 1\r\n"   # searching, then home
    assert "ERROR" in at(ser, "AT+CFUN=7")


def test_l850_radio_stuck_in_flight_mode(make) -> None:
    emu, ser = make("l850gl", echo=False)
    emu.set_radio_stuck(True)
    at(ser, "AT+CFUN=4")
    assert at(ser, "AT+CFUN=1") == "\r\nOK\r\n"
    assert "+CFUN: 4,0" in at(ser, "AT+CFUN?")
    assert not emu.model.registered


# ---------------------------------------------------------------- signal


@pytest.mark.parametrize("name, command, expected", [
    ("ec25", "AT+QCSQ", '+QCSQ: "LTE",-70,-100,110,-12'),
    ("ec25", 'AT+QENG="servingcell"',
     '+QENG: "servingcell","NOCONN","LTE","FDD",001,01,671F98A,310,1300,3,5,5,1F00,'
     '-100,-12,-70,110,24'),
    ("fm350gl", "AT+CESQ", "+CESQ: 99,99,255,255,16,41"),
    ("l850gl", "AT+XCESQ?", "+XCESQ: 0,99,99,255,255,16,41,4"),
    ("mc7455", "AT+CESQ", "+CESQ: 99,99,255,255,16,41"),
    ("me909s", "AT^HCSQ?", '^HCSQ: "LTE",50,41,110,16'),
    ("me909s", "AT^SYSINFOEX", '^SYSINFOEX:2,3,0,1,,6,"LTE",101,"LTE"'),
])
def test_vendor_signal(make, name: str, command: str, expected: str) -> None:
    emu, ser = make(name, echo=False)
    assert emu.wait_registered()
    emu.set_signal(rssi_dbm=-70, rsrp_dbm=-100, sinr_db=2.0, rsrq_db=-12.0)
    assert at(ser, command) == f"\r\n{expected}\r\n\r\nOK\r\n"


@pytest.mark.parametrize("name", MAIN)
def test_csq_follows_signal_and_coverage(make, name: str) -> None:
    emu, ser = make(name, echo=False)
    sep = get_dialect(name).csq_separator
    assert f"+CSQ: 24{sep}99" in at(ser, "AT+CSQ")           # -65 dBm
    emu.set_signal(rssi_dbm=-51)
    assert f"+CSQ: 31{sep}99" in at(ser, "AT+CSQ")
    emu.set_signal(rssi_dbm=None)
    assert f"+CSQ: 99{sep}99" in at(ser, "AT+CSQ")
    emu.set_signal(rssi_dbm=-90)
    emu.deregister(2)                                        # no cell heard
    assert f"+CSQ: 99{sep}99" in at(ser, "AT+CSQ")


def test_quectel_no_service(make) -> None:
    emu, ser = make("ec25", echo=False)
    emu.deregister(2)
    assert '+QCSQ: "NOSERVICE"' in at(ser, "AT+QCSQ")
    assert '+QENG: "servingcell","SEARCH"\r\n' in at(ser, 'AT+QENG="servingcell"')


def _corpus_case(case_id: str) -> str:
    if not CORPUS.exists():
        pytest.fail(f"AT corpus not found at {CORPUS} (expected ../shared beside the repo)")
    for line in CORPUS.read_text().splitlines():
        case = json.loads(line)
        if case["id"] == case_id:
            return str(case["response"]).strip()
    pytest.fail(f"corpus case {case_id} missing")


@pytest.mark.parametrize("name, command, case_id, signal", [
    # The values the corpus says these real lines encode give the same lines back.
    ("l850gl", "AT+XCESQ?", "9eb9939481de", {"rsrp_dbm": -95, "rsrq_db": -10.5, "sinr_db": -16.0}),
    ("fm350gl", "AT+CESQ", "0da23471fb30", {"rsrp_dbm": -61, "rsrq_db": -10.0}),
])
def test_signal_encoding_matches_real_replies(make, name: str, command: str, case_id: str,
                                              signal: dict[str, float]) -> None:
    emu, ser = make(name, echo=False)
    emu.set_signal(**signal)  # type: ignore[arg-type]
    assert at(ser, command) == f"\r\n{_corpus_case(case_id)}\r\n\r\nOK\r\n"


# ------------------------------------------------------------------- SIM


@pytest.mark.parametrize("name, removed, inserted", [
    ("ec25", "+CPIN: NOT READY", "+CPIN: READY"),
    ("fm350gl", "+SIM: Removed", "+SIM: Inserted"),
    ("l850gl", "+SIM: Removed", "+SIM: Inserted"),
    ("me909s", "^SIMST: 255", "^SIMST: 1"),
])
def test_sim_removal_per_cmee(make, name: str, removed: str, inserted: str) -> None:
    emu, ser = make(name, echo=False)
    assert "+CPIN: READY" in at(ser, "AT+CPIN?")
    at(ser, "AT+CEREG=1")
    emu.remove_sim()
    raw = wait_for_text(ser, removed)
    assert "+CEREG: 0" in raw + read_for(ser, 0.05).decode()
    assert at(ser, "AT+CPIN?") == "\r\nERROR\r\n"
    at(ser, "AT+CMEE=1")
    assert at(ser, "AT+CPIN?") == "\r\n+CME ERROR: 10\r\n"
    assert at(ser, "AT+CIMI") == "\r\n+CME ERROR: 10\r\n"
    at(ser, "AT+CMEE=2")
    assert at(ser, "AT+CPIN?") == "\r\n+CME ERROR: SIM not inserted\r\n"
    emu.insert_sim()
    wait_for_text(ser, inserted)
    assert "+CPIN: READY" in at(ser, "AT+CPIN?")
    assert emu.wait_registered()


def test_quectel_qsimstat_reports_only_when_enabled(make) -> None:
    emu, ser = make("ec25", echo=False)
    assert "+QSIMSTAT: 0,1" in at(ser, "AT+QSIMSTAT?")
    emu.remove_sim()
    assert b"QSIMSTAT" not in read_until(ser, lambda b: b"NOT READY\r\n" in b)
    at(ser, "AT+QSIMSTAT=1")
    emu.insert_sim()
    wait_for_text(ser, "+QSIMSTAT: 1,1")


def test_boot_without_sim(make) -> None:
    _emu, ser = make("ec25", echo=False, sim_present=False)
    at(ser, "AT+CMEE=1")
    assert at(ser, "AT+CPIN?") == "\r\n+CME ERROR: 10\r\n"
    assert at(ser, "AT+QCCID") == "\r\n+CME ERROR: 10\r\n"
    assert "+CEREG: 0,0" in at(ser, "AT+CEREG?")
    assert "+COPS: 0\r\n" in at(ser, "AT+COPS?")


def test_pin_then_puk(make) -> None:
    emu, ser = make("ec25", echo=False, pin_locked=True, pin="4321", puk="87654321")
    at(ser, "AT+CMEE=2")
    assert "+CPIN: SIM PIN" in at(ser, "AT+CPIN?")
    assert at(ser, "AT+CIMI") == "\r\n+CME ERROR: SIM PIN required\r\n"
    for _ in range(3):                       # a supervisor must never guess: 3 strikes
        assert at(ser, 'AT+CPIN="0000"') == "\r\n+CME ERROR: incorrect password\r\n"
    assert "+CPIN: SIM PUK" in at(ser, "AT+CPIN?")
    ser.write(b'AT+CPIN="87654321","1111"\r')
    raw = read_until(ser, lambda b: b"+QUSIM: 1" in b)
    assert raw.startswith(b"\r\nOK\r\n\r\n+CPIN: READY\r\n")   # the URC after the result
    assert emu.wait_registered()


def test_correct_pin(make) -> None:
    emu, ser = make("fm350gl", echo=False, pin_locked=True)
    assert not emu.model.registered
    ser.write(b"AT+CPIN=1234\r")
    assert read_until(ser, lambda b: b"+SIM READY" in b) == b"\r\nOK\r\n\r\n+SIM READY\r\n"
    assert emu.wait_registered()


# ---------------------------------------------------------------- faults


def test_silent_modem_reads_but_never_answers(make) -> None:
    emu, ser = make("ec25")
    emu.set_silent(True)
    ser.write(b"AT\r")
    emu.deregister()                          # not even URCs get out
    assert emu.wait_for_command("AT")
    assert read_for(ser, 0.2) == b""
    emu.set_silent(False)
    assert at(ser, "AT") == "AT\r\r\nOK\r\n"
    assert emu.commands.count("AT") == 2


def test_reset_clears_silence_unless_sticky(make) -> None:
    emu, ser = make("ec25", echo=False)
    emu.set_silent(True)
    emu.reboot()
    assert emu.wait_booted()
    assert read_until(ser, lambda b: b"PB DONE" in b).startswith(b"\r\nRDY\r\n")
    at(ser, "ATE0")
    assert at(ser, "AT") == "\r\nOK\r\n"
    emu.set_silent(True, sticky=True)
    emu.reboot()
    assert emu.wait_booted()
    ser.write(b"AT\r")
    assert read_for(ser, 0.15) == b""         # no RDY, no answer: still wedged


def test_delay_holds_the_reply_not_the_echo(make) -> None:
    emu, ser = make("ec25")
    emu.set_delay(0.3)
    t0 = time.monotonic()
    ser.write(b"AT\r")
    assert read_until(ser, lambda b: b == b"AT\r", 0.2) == b"AT\r"
    assert read_until(ser, lambda b: b.endswith(b"OK\r\n"), 1.0) == b"\r\nOK\r\n"
    assert time.monotonic() - t0 >= 0.28


def test_commands_queue_behind_a_delayed_reply(make) -> None:
    emu, ser = make("ec25", echo=False)
    emu.set_delay(0.1)
    ser.write(b"AT+CPIN?\rAT+CFUN?\r")
    raw = read_until(ser, lambda b: b.count(b"OK") == 2, 1.0)
    assert raw == b"\r\n+CPIN: READY\r\n\r\nOK\r\n\r\n+CFUN: 1\r\n\r\nOK\r\n"


def test_garbage_then_normal_service(make) -> None:
    emu, ser = make("ec25", echo=False)
    emu.send_garbage()
    assert read_until(ser, lambda b: b.endswith(b"\x1b[")) == b"\x00\xff\xfe garbage \x1b["
    emu.send_garbage(b"\xff\xff")
    emu.send_urc("+QIND: SMS DONE")
    assert read_until(ser, lambda b: b.endswith(b"DONE\r\n")) == b"\xff\xff\r\n+QIND: SMS DONE\r\n"
    assert at(ser, "AT") == "\r\nOK\r\n"


def test_flood_at_a_set_rate_with_answers_in_between(make) -> None:
    emu, ser = make("ec25", echo=False)
    emu.set_flood(200_000, b"\x00junk\r\n")
    t0 = time.monotonic()
    got = read_until(ser, lambda _: False, 0.5)
    elapsed = time.monotonic() - t0
    assert 0.5 * 200_000 * elapsed < len(got) < 1.5 * 200_000 * elapsed + 20_000, len(got)
    assert set(got.split(b"\r\n")[1:-1]) == {b"\x00junk"}
    # The modem still answers; its reply arrives whole among the flood.
    ser.write(b"AT+CSQ\r")
    raw = read_until(ser, lambda b: b"OK\r\n" in b, 1.0)
    assert b"\r\n+CSQ: " in raw and b"OK\r\n" in raw
    emu.set_flood(0)
    time.sleep(0.05)
    ser.reset_input_buffer()
    taken = emu.flood_bytes
    assert read_for(ser, 0.1) == b"" and emu.flood_bytes == taken
    assert taken >= len(got)


def test_line_noise_from_the_host_is_ignored(make) -> None:
    _emu, ser = make("ec25", echo=False)
    ser.write(b"\x00\xff junk\r")
    assert read_for(ser, 0.1) == b""          # no AT prefix: no answer
    ser.write(b"\x00AT\r")                     # leading junk before AT is skipped
    assert read_until(ser, lambda b: b.endswith(b"OK\r\n")) == b"\r\nOK\r\n"


def test_cops_scan_blocks_the_port_and_is_recorded(make) -> None:
    emu, ser = make("ec25", echo=False)
    ser.write(b"AT+COPS=?\r")
    ser.write(b"AT\r")
    assert read_for(ser, 0.2) == b""          # blocked, and AT waits behind it
    assert "AT+COPS=?" in emu.commands and emu.was_sent("at+cops=?")
    t0 = time.monotonic()
    emu.stop()
    assert time.monotonic() - t0 < 0.5


def test_cops_scan_answers_after_scan_duration(make) -> None:
    _emu, ser = make("ec25", echo=False, scan_duration=0.15)
    ser.write(b"AT+COPS=?\rAT\r")
    raw = read_until(ser, lambda b: b.count(b"OK") == 2, 1.0)
    assert raw.startswith(b'\r\n+COPS: (2,"Lab Mobile",')
    assert raw.endswith(b"\r\nOK\r\n\r\nOK\r\n")


def test_stop_is_prompt_while_a_reply_is_delayed(tmp_path: Path) -> None:
    emu = ModemEmulator("ec25", tmp_path / "ttyUSB2")
    emu.start()
    assert emu.wait_booted()
    ser = serial.Serial(emu.port, 115200, timeout=0.02)
    try:
        emu.set_delay(30.0)
        ser.write(b"AT\r")
        assert emu.wait_for_command("AT")
        t0 = time.monotonic()
        emu.stop()
        emu.stop()                            # idempotent
        assert time.monotonic() - t0 < 0.5
        assert not os.path.lexists(tmp_path / "ttyUSB2")
    finally:
        ser.close()


def test_thread_survives_a_failing_handler(make, caplog: pytest.LogCaptureFixture) -> None:
    emu, ser = make("ec25", echo=False)

    def boom(command: str) -> list[str]:
        raise RuntimeError("handler bug")

    emu.set_reply("AT+BOOM", boom)
    with caplog.at_level(logging.ERROR, logger="remsim_lab.emulator"):
        assert at(ser, "AT+BOOM") == "\r\nERROR\r\n"
    assert "handler bug" in caplog.text
    assert at(ser, "AT") == "\r\nOK\r\n"


def test_set_reply_overrides(make) -> None:
    emu, ser = make("ec25", echo=False)
    emu.set_reply("AT+CGDCONT?", ['+CGDCONT: 1,"IP","internet"'])
    emu.set_reply("at+cimi", error=13)
    at(ser, "AT+CMEE=1")
    assert '+CGDCONT: 1,"IP","internet"' in at(ser, "AT+CGDCONT?")
    assert at(ser, "AT+CIMI") == "\r\n+CME ERROR: 13\r\n"


def test_nobody_listening_never_blocks(tmp_path: Path) -> None:
    emu = ModemEmulator("ec25", tmp_path / "ttyUSB2")
    emu.start()
    try:
        assert emu.wait_booted()
        t0 = time.monotonic()
        for _ in range(2000):                  # far more than a pty buffers
            emu.send_urc("+QIND: " + "x" * 100)
        assert time.monotonic() - t0 < 2.0
        ser = serial.Serial(emu.port, 115200, timeout=0.02)   # flushes stale input
        try:
            assert at(ser, "AT") == "AT\r\r\nOK\r\n"
        finally:
            ser.close()
    finally:
        emu.stop()


# --------------------------------------------------------------- USB side


def test_unplug_hangs_the_client_up_and_plug_brings_a_new_port(make, tmp_path: Path) -> None:
    emu, ser = make("ec25", echo=False)
    events: list[str] = []
    emu.on_unplug = lambda: events.append("unplug")
    old_link, old_slave = emu.port, emu.slave_path
    assert os.readlink(old_link) == old_slave

    emu.unplug()
    assert events == ["unplug"]
    assert not os.path.lexists(old_link) and emu.slave_path is None
    # Linux: with the master closed the slave reads EOF (pyserial raises)
    # and writes fail with EIO, like a real USB serial hang-up.
    with pytest.raises(serial.SerialException):
        ser.read(1)
    with pytest.raises(serial.SerialException, match="Errno 5"):
        ser.write(b"AT\r")
    emu.unplug()                               # idempotent
    assert events == ["unplug"]

    new_link = tmp_path / "moved" / "ttyUSB7"
    opened = open_on_plug(emu)
    emu.plug(str(new_link))
    assert len(opened) == 1 and emu.port == str(new_link)
    assert os.readlink(new_link) == emu.slave_path
    assert emu.wait_booted()
    new = opened[0]
    try:
        assert "RDY" in read_until(new, lambda b: b"PB DONE" in b).decode()
        assert at(new, "AT") == "\r\nOK\r\n"     # echo=False is a setting, it stays
    finally:
        new.close()


def test_reboot_with_port_drop_sends_boot_urcs_on_new_port(make, tmp_path: Path) -> None:
    emu, ser = make("ec25", boot_delay=0.05)
    at(ser, "ATE0")                           # volatile: the reset forgets it
    gone: list[bool] = []
    emu.on_unplug = lambda: gone.append(not os.path.lexists(emu.port))
    opened = open_on_plug(emu)
    old_slave = emu.slave_path
    link2 = tmp_path / "ttyUSB9"
    emu.reboot(down_s=0.1, new_link=str(link2))
    assert gone == [True] and emu.slave_path is None
    with pytest.raises(serial.SerialException):
        ser.read(1)
    assert emu.wait_plugged(1.0) and emu.port == str(link2)
    assert emu.slave_path != old_slave        # the old pts is still held by the client
    assert emu.resets == 1
    new = opened[0]
    try:
        raw = read_until(new, lambda b: b"+QIND: PB DONE" in b)
        assert raw == (b"\r\nRDY\r\n\r\n+CFUN: 1\r\n\r\n+CPIN: READY\r\n\r\n+QUSIM: 1\r\n"
                       b"\r\n+QIND: SMS DONE\r\n\r\n+QIND: PB DONE\r\n")
        assert at(new, "AT") == "AT\r\r\nOK\r\n"   # echo back on: power-on default
    finally:
        new.close()


def test_reboot_in_place(make) -> None:
    emu, ser = make("ec25", echo=False)
    slave = emu.slave_path
    at(ser, "AT+CMEE=2")
    emu.reboot()
    assert emu.slave_path == slave and emu.resets == 1
    raw = read_until(ser, lambda b: b"PB DONE" in b)
    assert raw.startswith(b"\r\nRDY\r\n")
    at(ser, "ATE0")
    assert "+CMEE: 0" in at(ser, "AT+CMEE?")     # the reboot forgot CMEE=2


@pytest.mark.parametrize("name, command", [
    ("ec25", "AT+CFUN=1,1"),
    ("fm350gl", "AT+CFUN=15"),
    ("l850gl", "AT+CFUN=16"),
    ("l850gl", "AT+CFUN=15"),
    ("mc7455", "AT!RESET"),
    ("me909s", "AT^RESET"),
    ("generic", "AT+CFUN=1,1"),
])
def test_soft_reset_commands(make, name: str, command: str) -> None:
    emu, ser = make(name, echo=False)
    opened = open_on_plug(emu)
    ser.write(command.encode() + b"\r")
    assert read_until(ser, lambda b: b.endswith(b"OK\r\n")) == b"\r\nOK\r\n"
    assert wait_until(lambda: emu.resets == 1)
    assert emu.wait_plugged(1.0) and emu.wait_booted(1.0)
    d = get_dialect(name)
    boot = b"".join(b"\r\n" + u.encode() + b"\r\n" for u in d.boot_urcs + d.sim_ready_urcs)
    new = opened[0]
    try:
        if boot:
            assert read_until(new, lambda b: b == boot) == boot
        assert at(new, "AT") == "\r\nOK\r\n"
    finally:
        new.close()


def test_hardware_reset_and_a_modem_gone_for_good(make) -> None:
    emu, _ser = make("ec25", echo=False)
    emu.hardware_reset()
    assert not emu.plugged
    assert emu.wait_plugged(1.0) and emu.resets == 1
    emu.drop_off_usb()
    emu.hardware_reset()                     # the reset line does not help now
    assert not emu.wait_plugged(0.2) and emu.resets == 1
    emu.power_off()
    emu.power_on()                           # only a power cycle does
    assert emu.plugged and emu.wait_booted() and emu.resets == 2


def test_quectel_power_down_command(make) -> None:
    emu, ser = make("ec25", echo=False)
    ser.write(b"AT+QPOWD=1\r")
    raw = read_until(ser, lambda b: b"POWERED DOWN" in b)
    assert raw == b"\r\nOK\r\n\r\nPOWERED DOWN\r\n"
    assert wait_until(lambda: not emu.plugged)
    emu.hardware_reset()
    assert not emu.wait_plugged(0.1)
    emu.power_on()
    assert emu.wait_booted()


def test_link_never_clobbers_a_real_file(tmp_path: Path) -> None:
    real = tmp_path / "ttyUSB2"
    real.write_text("not a tty")
    emu = ModemEmulator("ec25", real)
    with pytest.raises(FileExistsError):
        emu.start()
    emu.stop()
    assert real.read_text() == "not a tty"


# ---------------------------------------------------------- the pure model


class FakeHost:
    """A ModemHost with a hand-turned clock: the model needs no pty."""

    def __init__(self) -> None:
        self.out = b""
        self.timers: list[tuple[float, Callable[[], None]]] = []
        self.resets = 0

    def write(self, data: bytes) -> None:
        self.out += data

    def call_later(self, delay: float, fn: Callable[[], None]) -> None:
        self.timers.append((delay, fn))

    def run_timers(self) -> None:
        while self.timers:
            self.timers.pop(0)[1]()

    def reset(self) -> None:
        self.resets += 1

    def power_off(self) -> None:
        pass


def test_model_runs_without_io() -> None:
    host = FakeHost()
    model = ModemModel(get_dialect("ec25"), host, echo=False)
    model.power_up()
    model.receive(b"AT\r")
    assert host.out == b""                    # not booted yet: dropped
    host.run_timers()                         # boot, then register
    assert host.out.startswith(b"\r\nRDY\r\n") and model.registered
    host.out = b""
    model.receive(b"AT+CFUN=1,1\r")
    assert host.out == b"\r\nOK\r\n" and host.resets == 1


def test_split_commands() -> None:
    assert _split_commands("E0V1") == ["E0", "V1"]
    assert _split_commands('+CMEE=2;+QENG="a;b";I') == ["+CMEE=2", '+QENG="a;b"', "I"]
    assert _split_commands("") == []
    with pytest.raises(ValueError):
        _split_commands('+COPS="x')


def test_unknown_dialect_is_refused() -> None:
    assert get_dialect("FM350-GL").name == "fm350gl"
    with pytest.raises(ValueError, match="known"):
        ModemEmulator("nokia3310")


# -------------------------------------------------------------------- CLI


def test_cli_runs_obeys_stdin_and_stops_on_sigterm(tmp_path: Path) -> None:
    link = tmp_path / "lab" / "ttyUSB2"
    proc = subprocess.Popen(
        [sys.executable, "-m", "remsim_lab.emulator", "--dialect", "fm350gl",
         "--link", str(link), "--boot-delay", "0.05", "--log-level", "WARNING"],
        cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        ready = proc.stdout.readline()
        assert ready.startswith(f"ready port={link} slave=/dev/pts/")
        assert os.path.islink(link)
        time.sleep(0.1)                        # let it boot (0.05 s)
        ser = serial.Serial(str(link), 115200, timeout=0.02)
        try:
            assert at(ser, "AT+CGMM") == "AT+CGMM\r\r\nFM350-GL\r\n\r\nOK\r\n"
            proc.stdin.write("silent on\n")
            proc.stdin.flush()
            assert proc.stdout.readline() == "ok silent on\n"
            ser.write(b"AT\r")
            assert read_for(ser, 0.15) == b""
            proc.stdin.write("silent off\nstatus\nbogus\n")
            proc.stdin.flush()
            assert proc.stdout.readline() == "ok silent off\n"
            status = json.loads(proc.stdout.readline())
            assert status["dialect"] == "fm350gl" and status["commands"] == 2
            assert proc.stdout.readline().startswith("error unknown command")
        finally:
            ser.close()
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=3) == 0
        assert time.monotonic() - t0 < 2.0
        assert not os.path.lexists(link)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
