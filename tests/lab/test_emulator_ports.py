"""The emulator's further AT ports: one modem, several ptys, each with its own V.250 setup."""

from __future__ import annotations

import os
import time
from pathlib import Path

import serial

from remsim_lab.emulator import ModemEmulator


def converse(port: serial.Serial, command: bytes, until: bytes = b"OK\r\n",
             timeout: float = 2.0) -> bytes:
    port.reset_input_buffer()
    port.write(command + b"\r")
    got, deadline = b"", time.monotonic() + timeout
    while until not in got and time.monotonic() < deadline:
        got += port.read(256)
    return got


def drain(port: serial.Serial, wait_s: float = 0.2) -> bytes:
    got, deadline = b"", time.monotonic() + wait_s
    while time.monotonic() < deadline:
        got += port.read(256)
    return got


def test_a_second_at_port_answers_on_itself_and_urcs_stay_on_the_main_one(
        tmp_path: Path) -> None:
    emu = ModemEmulator("ec25", tmp_path / "ttyUSB2", extra_links=[tmp_path / "ttyUSB3"])
    emu.start()
    try:
        assert emu.wait_booted(2.0)
        assert set(emu.extra_slave_paths) == {1}
        assert os.path.realpath(tmp_path / "ttyUSB3") == emu.extra_slave_paths[1]
        main = serial.Serial(str(tmp_path / "ttyUSB2"), 115200, timeout=0.02)
        second = serial.Serial(str(tmp_path / "ttyUSB3"), 115200, timeout=0.02)
        try:
            drain(main)
            # Echo off on the second port only: the main one still echoes.
            assert converse(second, b"ATE0").endswith(b"OK\r\n")
            assert converse(second, b"AT+CGMI") == b"\r\nQuectel\r\n\r\nOK\r\n"
            assert drain(main) == b""  # nothing of that conversation on the main port
            assert converse(main, b"AT").startswith(b"AT\r")
            # Unsolicited lines go to the main port only.
            emu.send_urc("+CMTI: \"SM\",3")
            assert b"+CMTI" in drain(main) and drain(second) == b""
            assert emu.model.commands_by_port[-3:] == [(1, "ATE0"), (1, "AT+CGMI"), (0, "AT")]
        finally:
            main.close()
            second.close()
        emu.unplug()
        assert not os.path.lexists(tmp_path / "ttyUSB3") and emu.extra_slave_paths == {}
        emu.plug()
        assert os.path.lexists(tmp_path / "ttyUSB3")
    finally:
        emu.stop()
    assert not os.path.lexists(tmp_path / "ttyUSB3")
