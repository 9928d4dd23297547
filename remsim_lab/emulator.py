"""A cellular modem's AT port, emulated on a real pseudo-terminal.

Tests and the simulated lab point the supervisor at ``ModemEmulator.port``
(a symlink such as ``/tmp/lab/ttyUSB2`` to a ``/dev/pts/N``) and it talks to
what looks like an EC25, FM350-GL, L850-GL, MC7455 or ME909s: V.250 framing
(``AT\\r`` -> ``AT\\r\\r\\nOK\\r\\n`` with echo on), 27.007 registration,
signal, SIM and CFUN state, the vendor's ICCID/signal/reset commands, and the
URCs a real modem sends at boot and on SIM or network events. Per-model
strings live in :mod:`remsim_lab.dialects`.

Two layers, as STYLE.md asks:

* :class:`ModemModel` is the modem without I/O: bytes in, bytes out through a
  small host interface (``write``, ``call_later``, ``reset``, ``power_off``).
  It never reads the clock or touches a file descriptor.
* :class:`ModemEmulator` is the adapter: a pty pair (slave raw, master
  non-blocking so a port nobody reads never blocks the emulator), the
  symlink, one daemon thread that polls the master and runs timers, and the
  fault controls a test calls from its own thread (everything under one
  lock, user callbacks run outside it).

Faults: :meth:`~ModemEmulator.set_silent` (wedged: input read and dropped,
nothing answered), :meth:`~ModemEmulator.set_delay`, garbage, a garbage
flood at a set byte rate (:meth:`~ModemEmulator.set_flood`), SIM removal,
network loss, ``AT+COPS=?`` blocking the port for ``scan_duration`` seconds,
an L850-style radio stuck at CFUN 4, and the USB side: :meth:`unplug` closes
the master (a client's read then sees EOF and pyserial raises
SerialException; its writes fail with EIO, as with a real USB hang-up),
:meth:`reboot` and soft-reset commands re-enumerate on a new ``/dev/pts/N``,
:meth:`drop_off_usb` leaves only a power cycle as the cure.

``python -m remsim_lab.emulator --dialect ec25 --link PATH`` runs
one emulator until SIGTERM/SIGINT and, when stdin is not a terminal, obeys
fault commands read from it line by line (see :data:`CLI_COMMANDS`).
"""

from __future__ import annotations

import argparse
import codecs
import contextlib
import enum
import errno
import fcntl
import heapq
import itertools
import json
import logging
import os
import re
import select
import signal
import sys
import termios
import threading
import time
import tty
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any, ClassVar, Protocol, Self

from remsim_lab.dialects import DIALECTS, Dialect, get_dialect

__all__ = [
    "ACCESS_TECH",
    "CLI_COMMANDS",
    "REG_STATES",
    "UNCHANGED",
    "ModemEmulator",
    "ModemHost",
    "ModemModel",
    "main",
]

log = logging.getLogger(__name__)

# 3GPP TS 27.007 <stat> of +CREG/+CGREG/+CEREG/+C5GREG.
REG_STATES: dict[str, int] = {
    "idle": 0,
    "home": 1,
    "searching": 2,
    "denied": 3,
    "unknown": 4,
    "roaming": 5,
}
# <AcT> of +COPS and +CxREG.
ACCESS_TECH: dict[str, int] = {"gsm": 0, "umts": 2, "lte": 7, "nr5g": 11, "nr5g_nsa": 13}

# +CME ERROR codes the emulator produces, with the verbose text (CMEE=2).
CME_TEXT: dict[int, str] = {
    3: "operation not allowed",
    4: "operation not supported",
    10: "SIM not inserted",
    11: "SIM PIN required",
    12: "SIM PUK required",
    13: "SIM failure",
    16: "incorrect password",
    30: "no network service",
    50: "Incorrect parameters",
    100: "unknown",
}

_AT_PREFIX = re.compile(r"AT", re.IGNORECASE)
_BASIC = re.compile(r"D.*|S\d+(?:=\d*|\?)?|&[A-Z]\d*|[A-Z]\d*(?:=\d*|\?)?", re.IGNORECASE)
_EXTENDED_NAME = re.compile(r"([+^!$%*#][A-Z0-9]+)(.*)\Z", re.DOTALL)
_MAX_LINE = 2048  # longer lines are truncated, as a modem's buffer would
_MAX_QUEUED = 64  # lines waiting while the modem is busy
_MAX_COMMANDS = 100_000  # history kept; a lab run of days drops the oldest half
_DEFAULT_GARBAGE = b"\x00\xff\xfe garbage \x1b["
# What a firmware stuck in a debug dump sprays: binary, escape codes, text
# that looks like nothing a supervisor knows, a line break now and then.
_FLOOD_PATTERN = (b"\x00\xff\xfe\x1b[0m DBG 0x1f2e3d4c rrc_meas sfn=512 \xc3\x28 "
                  b"garbage garbage\r\n\x07\x7f dump without a line break \xa0\xa1 "
                  b"0123456789abcdef" * 2)
_FLOOD_TICK_S = 0.01


class _Unchanged(enum.Enum):
    UNCHANGED = 0


#: Sentinel for :meth:`ModemEmulator.set_signal`: leave this value as it is.
UNCHANGED = _Unchanged.UNCHANGED


class ModemHost(Protocol):
    """What the model needs from its surroundings."""

    def write(self, data: bytes) -> None:
        """Send bytes to the client; dropped when nobody can take them."""

    def call_later(self, delay: float, fn: Callable[[], None]) -> None:
        """Run ``fn`` after ``delay`` s, unless the modem loses power first."""

    def reset(self) -> None:
        """The modem resets itself (a soft-reset command was answered)."""

    def power_off(self) -> None:
        """The modem switched itself off (AT+QPOWD)."""


@dataclass
class _Outcome:
    """One sub-command's result."""

    lines: tuple[str, ...] = ()
    ok: bool = True
    cme: int | None = None  # with ok False: None -> plain ERROR
    busy_s: float = 0.0  # the port stays blocked this long first
    then: Callable[[], None] | None = None  # after the final result is out


def _ok(*lines: str) -> _Outcome:
    return _Outcome(lines=tuple(lines))


def _error(cme: int | None = None) -> _Outcome:
    return _Outcome(ok=False, cme=cme)


def _split_commands(body: str) -> list[str]:
    """Split what follows ``AT`` into sub-commands: basic ones run together
    (``E0V1``), extended ones separated by ``;`` (``+CMEE=2;+CPIN?``)."""
    out: list[str] = []
    i, n = 0, len(body)
    while i < n:
        c = body[i]
        if c in " ;":
            i += 1
        elif c in "+^!$%*#":
            j, quoted = i, False
            while j < n and (quoted or body[j] != ";"):
                if body[j] == '"':
                    quoted = not quoted
                j += 1
            if quoted:
                raise ValueError("unbalanced quote")
            out.append(body[i:j].strip())
            i = j + 1
        else:
            m = _BASIC.match(body, i)
            if m is None:
                raise ValueError(f"bad basic command at {body[i:]!r}")
            out.append(m.group(0))
            i = m.end()
    return out


def _int_args(args: str) -> list[int | None]:
    """``"2,,1"`` -> ``[2, None, 1]``; ValueError on anything else."""
    return [int(a) if a.strip() else None for a in args.split(",")] if args else []


def _clamp(value: float, low: int, high: int) -> int:
    return max(low, min(high, round(value)))


def _normalise(command: str) -> str:
    """Upper case, no ``AT`` prefix: how the dialect tables key commands."""
    key = command.strip().upper()
    return key.removeprefix("AT")


class ModemModel:
    """The modem's AT behaviour without I/O (see the module docstring).

    Public attributes are the modem's configuration and state; change them
    through :class:`ModemEmulator` (which holds the lock) rather than directly
    while the emulator runs.
    """

    def __init__(
        self,
        dialect: Dialect,
        host: ModemHost,
        *,
        echo: bool = True,
        boot_delay: float = 0.05,
        register_delay: float = 0.05,
        scan_duration: float = 90.0,
        sim_present: bool = True,
        pin_locked: bool = False,
        pin: str = "1234",
        puk: str = "12345678",
        registration: str = "home",
        access_tech: str = "lte",
        operator: str = "Lab Mobile",
        mcc_mnc: str = "00101",
        imei: str = "867698041234561",
        imsi: str = "001010123456789",
        iccid: str = "8944000012345678904",
        tac: int = 0x1F00,
        cell_id: int = 0x671F98A,  # 28-bit E-UTRAN cell id, as in the corpus
    ) -> None:
        if registration not in REG_STATES:
            raise ValueError(f"registration must be one of {sorted(REG_STATES)}")
        if access_tech not in ACCESS_TECH:
            raise ValueError(f"access_tech must be one of {sorted(ACCESS_TECH)}")
        self.dialect = dialect
        self._host = host
        self.echo_default = echo
        self.boot_delay = boot_delay
        self.register_delay = register_delay
        self.scan_duration = scan_duration
        self.sim_present = sim_present
        self.pin_enabled = pin_locked
        self.pin = pin
        self.puk = puk
        self.network_stat = REG_STATES[registration]
        self.access_tech = access_tech
        self.operator = operator
        self.mcc_mnc = mcc_mnc
        self.imei = imei
        self.imsi = imsi
        self.iccid = iccid
        self.tac = tac
        self.cell_id = cell_id
        self.rssi_dbm: int | None = -65
        self.rsrp_dbm: int | None = -95
        self.sinr_db: float | None = 12.0
        self.rsrq_db: float | None = -10.0
        self.reply_delay = 0.0
        self.silent = False
        self.silent_sticky = False
        self.radio_stuck = False
        self.commands: list[str] = []
        self.overrides: dict[str, Callable[[str], _Outcome]] = {}
        self.booted = False
        self._sim_blocked = False  # PUK needed; survives reboots like a real SIM
        self._line = bytearray()
        self._queue: deque[tuple[bytes, int]] = deque()  # (line, AT port)
        # Further AT ports (1, 2, ...) share the modem but keep their own line
        # buffer and V.250 settings; their replies go back on them, while URCs
        # stay on the main port (0), as a modem's URC port setting does.
        self._lines: dict[int, bytearray] = {}
        self._port_settings: dict[int, tuple[bool, bool, bool, int]] = {}
        self._serving = 0
        #: Every command line received, with the port (0: main) it came on.
        self.commands_by_port: list[tuple[int, str]] = []
        self._busy = False
        self._held: list[str] | None = None
        self._power_gen = 0
        self._reset_volatile()

    # ----------------------------------------------------------- lifecycle

    def _reset_volatile(self) -> None:
        """Power-on defaults: what a reboot forgets."""
        self.booted = False
        self._power_gen += 1
        self.echo = self.echo_default
        self.verbose = True
        self.quiet = False
        self.cmee = 0
        self.reg_n: dict[str, int] = {"CREG": 0, "CGREG": 0, "CEREG": 0, "C5GREG": 0}
        self.cfun = 1
        self.cops_mode = 0
        self.cops_format = 0
        self.detached = False
        self.attached = False
        self._attach_gen = 0
        self.sim_state = "absent"
        self._pin_attempts = 3
        self.data_cid: int | None = None
        self.qsimstat_enabled = False
        self.xcesq_n = 0
        self._last_reg: dict[str, tuple[int, str]] = {}
        self._line.clear()
        self._queue.clear()
        self._lines.clear()
        self._port_settings.clear()
        self._serving = 0
        self._busy = False
        self._held = None

    def power_up(self) -> None:
        """Power arrived (or a reset ended): boot after ``boot_delay``."""
        self._reset_volatile()
        if not self.silent_sticky:
            self.silent = False
        self._host.call_later(self.boot_delay, self._boot)

    def power_loss(self) -> None:
        """Power or USB went away: everything in flight is lost."""
        self._reset_volatile()

    def _boot(self) -> None:
        self.booted = True
        log.debug("%s booted", self.dialect.name)
        self._urcs(self.dialect.boot_urcs)
        self._sim_came_up()
        self._update_registration()

    @property
    def idle(self) -> bool:
        """Booted, nothing queued and no reply pending."""
        return self.booted and not self._busy and not self._queue

    # --------------------------------------------------------------- input

    def receive(self, data: bytes, port: int = 0) -> None:
        """Bytes from the client on AT port ``port`` (0: the main one), in any pieces."""
        gen = self._power_gen
        buf = self._line if port == 0 else self._lines.setdefault(port, bytearray())
        for byte in data:
            if gen != self._power_gen:
                return  # a command reset the modem: the rest is lost
            if byte in (0x0D, 0x0A):  # CR ends a line; so does a lone LF
                if buf:
                    line = bytes(buf)
                    buf.clear()
                    self._line_received(line, port)
            elif byte == 0x08:  # backspace edits the line (S5)
                if buf:
                    buf.pop()
            elif len(buf) < _MAX_LINE:
                buf.append(byte)

    def _line_received(self, raw: bytes, port: int = 0) -> None:
        text = raw.decode("latin-1").strip()
        if len(self.commands) >= _MAX_COMMANDS:
            del self.commands[: _MAX_COMMANDS // 2]
            del self.commands_by_port[: len(self.commands_by_port) // 2]
        self.commands.append(text)
        self.commands_by_port.append((port, text))
        if self.silent or not self.booted:
            log.debug(
                "%s dropped %r (silent=%s booted=%s)",
                self.dialect.name,
                text,
                self.silent,
                self.booted,
            )
        elif self._busy:
            # A real modem handles one command at a time; what arrives while
            # it works waits (and, behind AT+COPS=?, waits a long time).
            if len(self._queue) < _MAX_QUEUED:
                self._queue.append((raw, port))
        else:
            self._execute(raw, port)

    def _pump(self) -> None:
        while not self._busy and self._queue and self.booted:
            self._execute(*self._queue.popleft())

    def _execute(self, raw: bytes, port: int = 0) -> None:
        if port == 0:
            self._execute_on_main(raw)
            return
        # Another AT port: its own V.250 settings, its replies back on it.
        main = (self.echo, self.verbose, self.quiet, self.cmee)
        self.echo, self.verbose, self.quiet, self.cmee = self._port_settings.get(
            port, (self.echo_default, True, False, 0))
        self._serving = port
        try:
            self._execute_on_main(raw)
        finally:
            self._serving = 0
            self._port_settings[port] = (self.echo, self.verbose, self.quiet, self.cmee)
            self.echo, self.verbose, self.quiet, self.cmee = main

    def _execute_on_main(self, raw: bytes) -> None:
        if self.echo:
            self._write(raw + b"\r")
        text = raw.decode("latin-1")
        m = _AT_PREFIX.search(text)
        if m is None:
            return  # not a command: V.250 ignores it
        self._held = []  # URCs raised by the command follow its result
        out = bytearray()
        busy = 0.0
        thens: list[Callable[[], None]] = []
        ok, cme = True, None
        try:
            subs = _split_commands(text[m.end() :])
        except ValueError:
            subs, ok = [], False
        for sub in subs:
            outcome = self._dispatch(sub)
            out += self._frame_info(outcome.lines)
            busy = max(busy, outcome.busy_s)
            if outcome.then is not None:
                thens.append(outcome.then)
            if not outcome.ok:
                ok, cme = False, outcome.cme
                break
        out += self._frame_final(ok, cme)
        held, self._held = self._held, None
        urcs = b"".join(self._frame_urc(line) for line in held)
        if self._serving == 0:
            out, urcs = out + urcs, b""
        log.debug("%s %r -> %r", self.dialect.name, text, bytes(out))
        self._respond(bytes(out), max(self.reply_delay, busy), thens)
        if urcs:
            self._write(urcs, 0)  # URCs go to the main port, whoever asked

    def _respond(self, out: bytes, delay: float, thens: list[Callable[[], None]]) -> None:
        port = self._serving
        if delay <= 0:
            self._write(out, port)
            for fn in thens:
                fn()
            return
        self._busy = True

        def finish() -> None:
            self._busy = False
            self._write(out, port)
            for fn in thens:
                fn()
            self._pump()

        self._host.call_later(delay, finish)

    # ------------------------------------------------------------- framing

    def _frame_info(self, lines: Sequence[str]) -> bytes:
        if not lines:
            return b""
        if self.verbose:
            return ("\r\n" + "\r\n".join(lines) + "\r\n").encode("latin-1")
        return "".join(f"{line}\r\n" for line in lines).encode("latin-1")

    def _frame_final(self, ok: bool, cme: int | None) -> bytes:
        if self.quiet:
            return b""
        if ok:
            text, code = "OK", "0"
        elif cme is None or self.cmee == 0:
            text, code = "ERROR", "4"
        else:
            text = f"+CME ERROR: {CME_TEXT.get(cme, 'unknown') if self.cmee == 2 else cme}"
            code = ""
        if self.verbose:
            return f"\r\n{text}\r\n".encode("latin-1")
        return f"{code}\r".encode() if code else f"{text}\r\n".encode("latin-1")

    def _frame_urc(self, line: str) -> bytes:
        return (f"\r\n{line}\r\n" if self.verbose else f"{line}\r\n").encode("latin-1")

    def _write(self, data: bytes, port: int | None = None) -> None:
        """To the port whose command is served (``port``), else the main one."""
        if data and not self.silent:
            port = self._serving if port is None else port
            if port == 0:
                self._host.write(data)
            else:
                write_port = getattr(self._host, "write_port", None)
                if write_port is not None:
                    write_port(port, data)

    def send_raw(self, data: bytes) -> None:
        """Bytes on the line as they are (garbage, line noise)."""
        self._write(data)

    def urc(self, line: str) -> None:
        """Send an unsolicited line (held back while a command executes)."""
        if self._held is not None:
            self._held.append(line)
        else:
            self._write(self._frame_urc(line), 0)  # the URC port: the main one

    def _urcs(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.urc(line)

    # ------------------------------------------------------------ dispatch

    def _fmt(self, lines: Iterable[str]) -> tuple[str, ...]:
        d = self.dialect
        return tuple(
            line.format(
                imei=self.imei,
                imsi=self.imsi,
                iccid=self.iccid,
                manufacturer=d.manufacturer,
                model=d.model,
                revision=d.revision,
            )
            for line in lines
        )

    def _sim_error(self) -> int | None:
        """The +CME code for "the SIM can't be read now", or None if it can."""
        return {"ready": None, "pin": 11, "puk": 12}.get(self.sim_state, 10)

    def _dispatch(self, sub: str) -> _Outcome:
        key = sub.upper()
        d = self.dialect
        try:
            if key in self.overrides:
                return self.overrides[key](sub)
            if key in d.soft_reset:
                return _Outcome(then=self._host.reset)
            if key in d.replies:
                return _ok(*self._fmt(d.replies[key]))
            if key in d.sim_replies:
                code = self._sim_error()
                return _error(code) if code else _ok(*self._fmt(d.sim_replies[key]))
            if sub[0] in "+^!$%*#":
                return self._extended(sub, key)
            return self._basic(key)
        except ValueError:
            return _error()
        except Exception:
            # A bug in the emulator must not leave the client waiting forever.
            log.exception("%s: error handling %r", d.name, sub)
            return _error()

    def _unknown(self) -> _Outcome:
        return _error(100 if self.dialect.unknown_is_cme else None)

    def _basic(self, key: str) -> _Outcome:
        if key.startswith("&"):
            letter, rest = key[:2], key[2:]
        else:
            letter, rest = key[:1], key[1:]
        value = int(rest) if rest.isdigit() else (0 if rest == "" else None)
        if letter in ("E", "V", "Q") and value in (0, 1):
            if letter == "E":
                self.echo = value == 1
            elif letter == "V":
                self.verbose = value == 1
            else:
                self.quiet = value == 1
            return _ok()
        if letter in ("Z", "&F") and value == 0:
            self.echo, self.verbose, self.quiet, self.cmee = self.echo_default, True, False, 0
            for name in self.reg_n:
                self.reg_n[name] = 0
            return _ok()
        if letter == "S":
            return _ok("013") if key.endswith("?") else _ok()
        if letter in ("&D", "&C", "&K", "&W", "X", "L", "M", "H"):
            return _ok()
        return self._unknown()  # ATI<n> not in the dialect, ATD, ATA, ...

    def _extended(self, sub: str, key: str) -> _Outcome:
        m = _EXTENDED_NAME.match(key)
        if m is None:
            return self._unknown()
        name, rest = m.groups()
        if rest == "":
            kind, args = "exec", ""
        elif rest == "?":
            kind, args = "read", ""
        elif rest == "=?":
            kind, args = "test", ""
        elif rest.startswith("="):
            kind, args = "set", sub[len(name) + 1 :].strip()
        else:
            return self._unknown()
        entry = self._HANDLERS.get(name)
        if entry is None:
            return self._unknown()
        feature, handler = entry
        if feature is not None and feature not in self.dialect.features:
            return self._unknown()
        return handler(self, kind, args)

    # ----------------------------------------------------- SIM and network

    def _sim_came_up(self) -> None:
        """The SIM was powered (boot, insertion): report and maybe attach."""
        d = self.dialect
        if not self.sim_present:
            self.sim_state = "absent"
        elif self._sim_blocked:
            self.sim_state = "puk"
        elif self.pin_enabled:
            self.sim_state = "pin"
            self._urcs(d.sim_pin_urcs)
        else:
            self._sim_ready()

    def _sim_ready(self) -> None:
        self.sim_state = "ready"
        self._urcs(self.dialect.sim_ready_urcs)
        self._start_attach()

    def remove_sim(self) -> None:
        if not self.sim_present:
            return
        self.sim_present = False
        if not self.booted:
            return
        self.sim_state = "absent"
        self._urcs(self.dialect.sim_removed_urcs)
        if self.qsimstat_enabled:
            self.urc("+QSIMSTAT: 1,0")
        self._radio_down()

    def insert_sim(self) -> None:
        if self.sim_present:
            return
        self.sim_present = True
        if not self.booted:
            return
        self._urcs(self.dialect.sim_inserted_urcs)
        if self.qsimstat_enabled:
            self.urc("+QSIMSTAT: 1,1")
        self._sim_came_up()
        self._update_registration()

    def _can_attach(self) -> bool:
        return self.booted and self.cfun == 1 and self.sim_state == "ready" and not self.detached

    def _start_attach(self) -> None:
        """Radio and SIM are up: the network answers after register_delay."""
        self._attach_gen += 1
        self.attached = False
        if not self._can_attach():
            return
        gen = self._attach_gen

        def attach() -> None:
            if gen == self._attach_gen and self._can_attach():
                self.attached = True
                self._update_registration()

        self._host.call_later(self.register_delay, attach)
        self._update_registration()

    def _radio_down(self) -> None:
        self._attach_gen += 1
        self.attached = False
        self._update_registration()

    def register(self, state: str = "home") -> None:
        """The network accepts the modem again (at once if it can attach)."""
        if state not in REG_STATES:
            raise ValueError(f"state must be one of {sorted(REG_STATES)}")
        self.network_stat = REG_STATES[state]
        if self._can_attach():
            self._attach_gen += 1
            self.attached = True
        self._update_registration()

    def deregister(self, stat: int = 2) -> None:
        """The network drops the modem: <stat> 2 searching, 3 denied, 0 idle."""
        if stat not in REG_STATES.values():
            raise ValueError("stat must be a 27.007 <stat> 0..5")
        self.network_stat = stat
        self._update_registration()

    def _base_stat(self) -> int:
        if not self._can_attach():
            return 0
        return self.network_stat if self.attached else 2

    def _domains(self) -> tuple[str, ...]:
        if "C5GREG" in self.dialect.features:
            return ("CREG", "CGREG", "CEREG", "C5GREG")
        return ("CREG", "CGREG", "CEREG")

    def _stat(self, domain: str) -> int:
        stat = self._base_stat()
        if stat in (1, 5):
            # Registered: the domain of the other radio generation says "not
            # registered" (EPS on 3G/5G SA, 5GS on LTE and NSA).
            if domain == "CEREG" and self.access_tech not in ("lte", "nr5g_nsa"):
                return 0
            if domain == "C5GREG" and self.access_tech != "nr5g":
                return 0
        return stat

    @property
    def registered(self) -> bool:
        return self._base_stat() in (1, 5)

    def _location(self, domain: str) -> str:
        """``"tac","ci",act[,"rac"]`` as the dialect writes it."""
        d = self.dialect
        if domain == "C5GREG":
            tac, ci = f'"{self.tac:06X}"', f'"{self.cell_id:09X}"'
        else:
            tac, ci = f'"{self.tac:04X}"', f'"{self.cell_id:0{d.ci_digits}X}"'
        parts = [tac, ci]
        if d.reg_act:
            parts.append(str(ACCESS_TECH[self.access_tech]))
        if domain == "CGREG" and d.cgreg_rac is not None and d.reg_act:
            parts.append(f'"{d.cgreg_rac}"')
        return ",".join(parts)

    def _update_registration(self) -> None:
        """Emit +CxREG URCs for what changed, at the level the host chose."""
        if not self.registered:
            self.data_cid = None  # no network, no data session
        for domain in self._domains():
            stat = self._stat(domain)
            loc = self._location(domain) if stat in (1, 5) else ""
            prev = self._last_reg.get(domain)
            if prev == (stat, loc):
                continue
            self._last_reg[domain] = (stat, loc)
            n = self.reg_n[domain]
            if n == 1 and (prev is None or prev[0] != stat):
                self.urc(f"+{domain}: {stat}")
            elif n >= 2:
                self.urc(f"+{domain}: {stat}" + (f",{loc}" if loc else ""))

    def set_cell(
        self, tac: int | None = None, cell_id: int | None = None, access_tech: str | None = None
    ) -> None:
        if access_tech is not None and access_tech not in ACCESS_TECH:
            raise ValueError(f"access_tech must be one of {sorted(ACCESS_TECH)}")
        self.tac = self.tac if tac is None else tac
        self.cell_id = self.cell_id if cell_id is None else cell_id
        self.access_tech = access_tech or self.access_tech
        self._update_registration()

    def _coverage(self) -> bool:
        """A cell is heard: signal values are reported."""
        return self.booted and self.cfun == 1 and self.network_stat not in (0, 2)

    def _mcc_mnc(self) -> tuple[str, str]:
        return self.mcc_mnc[:3], self.mcc_mnc[3:]

    # ------------------------------------------------------------ handlers
    # Each takes (kind, args) with kind in exec/read/test/set.

    def _h_cmee(self, kind: str, args: str) -> _Outcome:
        if kind == "read":
            return _ok(f"+CMEE: {self.cmee}")
        if kind == "test":
            return _ok("+CMEE: (0-2)")
        value = _int_args(args)
        if kind == "set" and len(value) == 1 and value[0] in (0, 1, 2):
            self.cmee = value[0]
            return _ok()
        return _error()

    def _h_cpin(self, kind: str, args: str) -> _Outcome:
        if kind == "read":
            text = {"ready": "READY", "pin": "SIM PIN", "puk": "SIM PUK"}.get(self.sim_state)
            return _ok(f"+CPIN: {text}") if text else _error(10)
        if kind == "test":
            return _ok()
        if kind != "set":
            return _error()
        codes = [a.strip().strip('"') for a in args.split(",")]
        if self.sim_state == "absent":
            return _error(10)
        if self.sim_state == "ready":
            return _error(3)
        if self.sim_state == "pin" and codes[0] == self.pin:
            self._pin_attempts = 3
            return _Outcome(then=self._sim_ready)
        if self.sim_state == "puk" and codes[0] == self.puk and len(codes) > 1:
            self._sim_blocked = False
            self.pin = codes[1]
            self._pin_attempts = 3
            return _Outcome(then=self._sim_ready)
        if self.sim_state == "pin":
            # Three wrong PINs block the SIM: the supervisor must never guess.
            self._pin_attempts -= 1
            if self._pin_attempts <= 0:
                self._sim_blocked = True
                self.sim_state = "puk"
        return _error(16)

    def _h_cfun(self, kind: str, args: str) -> _Outcome:
        if kind == "read":
            return _ok(self.dialect.cfun_query.format(fun=self.cfun))
        if kind == "test":
            return _ok("+CFUN: (0,1,4),(0-1)")
        values = _int_args(args)
        if kind != "set" or not values or values[0] not in (0, 1, 4):
            return _error()
        fun = values[0]
        if len(values) > 1 and values[1] == 1:
            return _Outcome(then=self._host.reset)  # 27.007 <rst>=1
        if fun == 1 and self.radio_stuck:
            return _ok()  # L850: OK, but stays at 4
        if fun != self.cfun:
            self.cfun = fun
            if fun == 1:
                self._start_attach()
            else:
                self._radio_down()
        return _ok()

    def _h_reg(self, domain: str, max_n: int, kind: str, args: str) -> _Outcome:
        if kind == "test":
            return _ok(f"+{domain}: (0-{max_n})")
        if kind == "read":
            n, stat = self.reg_n[domain], self._stat(domain)
            text = f"+{domain}: {n},{stat}"
            if n >= 2 and stat in (1, 5):
                text += "," + self._location(domain)
            return _ok(text)
        values = _int_args(args)
        if kind == "set" and len(values) == 1 and values[0] is not None and 0 <= values[0] <= max_n:
            self.reg_n[domain] = values[0]
            return _ok()
        return _error()

    def _h_creg(self, kind: str, args: str) -> _Outcome:
        return self._h_reg("CREG", 3, kind, args)

    def _h_cgreg(self, kind: str, args: str) -> _Outcome:
        return self._h_reg("CGREG", 3, kind, args)

    def _h_cereg(self, kind: str, args: str) -> _Outcome:
        return self._h_reg("CEREG", 5, kind, args)

    def _h_c5greg(self, kind: str, args: str) -> _Outcome:
        return self._h_reg("C5GREG", 2, kind, args)

    def _h_cops(self, kind: str, args: str) -> _Outcome:
        prefix = self.dialect.cops_prefix
        if kind == "test":
            # A real modem scans every band first: the port is blocked for
            # over a minute (MODEMS.md). The supervisor must never send this.
            return _Outcome(
                lines=(
                    (
                        f'{prefix}(2,"{self.operator}","{self.operator[:8]}",'
                        f'"{self.mcc_mnc}",{ACCESS_TECH[self.access_tech]}),,'
                        "(0,1,2,3,4),(0,1,2)"
                    ),
                ),
                busy_s=self.scan_duration,
            )
        mode = 2 if self.detached else self.cops_mode
        if kind == "read":
            if not self.registered:
                return _ok(f"{prefix}{mode}")
            oper = (self.operator, self.operator[:8], self.mcc_mnc)[self.cops_format]
            return _ok(
                f'{prefix}{mode},{self.cops_format},"{oper}",{ACCESS_TECH[self.access_tech]}'
            )
        if kind != "set":
            return _error()
        parts = args.split(",")
        new_mode = int(parts[0])
        if len(parts) > 1 and parts[1].strip():
            fmt = int(parts[1])
            if fmt not in (0, 1, 2):
                return _error()
            self.cops_format = fmt
        if new_mode == 3:
            return _ok()
        if new_mode == 2:
            self.detached = True
            return _Outcome(then=self._radio_down)
        if new_mode in (0, 1, 4):
            self.cops_mode = 0 if new_mode == 0 else 1
            if self.detached:
                self.detached = False
                return _Outcome(then=self._start_attach)
            return _ok()
        return _error()

    def _h_cgatt(self, kind: str, args: str) -> _Outcome:
        if kind == "read":
            return _ok(f"+CGATT: {1 if self.registered else 0}")
        if kind == "test":
            return _ok("+CGATT: (0,1)")
        values = _int_args(args)
        if kind == "set" and values in ([0], [1]):
            return self._h_cops("set", "2" if values[0] == 0 else "0")
        return _error()

    def _h_csq(self, kind: str, args: str) -> _Outcome:
        if kind == "test":
            return _ok("+CSQ: (0-31,99),(0-7,99)")
        if kind != "exec":
            return _error()
        rssi = 99
        if self._coverage() and self.rssi_dbm is not None:
            rssi = _clamp((self.rssi_dbm + 113) / 2, 0, 31)
        return _ok(f"+CSQ: {rssi}{self.dialect.csq_separator}99")

    def _h_cesq(self, kind: str, args: str) -> _Outcome:
        if kind == "test":
            return _ok("+CESQ: (0-63,99),(0-7,99),(0-96,255),(0-49,255),(0-34,255),(0-97,255)")
        if kind != "exec":
            return _error()
        tech = self.access_tech
        rxlev, rscp, ecno, rsrq, rsrp = 99, 255, 255, 255, 255
        nr = ["255", "255", "255"]
        if self._coverage():
            if tech == "gsm" and self.rssi_dbm is not None:
                rxlev = _clamp(self.rssi_dbm + 111, 0, 63)
            elif tech == "umts":
                if self.rsrp_dbm is not None:
                    rscp = _clamp(self.rsrp_dbm + 121, 0, 96)
                if self.rsrq_db is not None:
                    ecno = _clamp((self.rsrq_db + 24.5) * 2, 0, 49)
            if tech in ("lte", "nr5g_nsa"):
                if self.rsrq_db is not None:
                    rsrq = _clamp((self.rsrq_db + 20) * 2, 0, 34)
                if self.rsrp_dbm is not None:
                    rsrp = _clamp(self.rsrp_dbm + 141, 0, 97)
            if tech in ("nr5g", "nr5g_nsa"):
                nr = [
                    str(_clamp((self.rsrq_db + 43) * 2, 0, 127))
                    if self.rsrq_db is not None
                    else "255",
                    str(_clamp(self.rsrp_dbm + 156, 0, 126))
                    if self.rsrp_dbm is not None
                    else "255",
                    str(_clamp((self.sinr_db + 23) * 2, 0, 127))
                    if self.sinr_db is not None
                    else "255",
                ]
        text = f"+CESQ: {rxlev},99,{rscp},{ecno},{rsrq},{rsrp}"
        if tech in ("nr5g", "nr5g_nsa"):
            text += "," + ",".join(nr)  # 27.007 Rel-15 ss_rsrq, ss_rsrp, ss_sinr
        return _ok(text)

    def _h_xcesq(self, kind: str, args: str) -> _Outcome:
        if kind == "set":
            values = _int_args(args)
            if values in ([0], [1]):
                self.xcesq_n = values[0] or 0
                return _ok()
            return _error()
        if kind == "test":
            return _ok("+XCESQ: (0,1)")
        if kind != "read":
            return _error()
        rsrq = rsrp = snr = 255
        if self._coverage() and self.access_tech in ("lte", "nr5g_nsa"):
            if self.rsrq_db is not None:
                rsrq = _clamp((self.rsrq_db + 20) * 2, 0, 34)
            if self.rsrp_dbm is not None:
                rsrp = _clamp(self.rsrp_dbm + 141, 0, 97)
            if self.sinr_db is not None:
                snr = _clamp(self.sinr_db * 2, -60, 60)  # 0.5 dB steps
        return _ok(f"+XCESQ: {self.xcesq_n},99,99,255,255,{rsrq},{rsrp},{snr}")

    def _quectel_sinr(self) -> int:
        # Quectel: SINR dB = raw / 5 - 20 (MODEMS.md), raw 0..250.
        return _clamp(((self.sinr_db if self.sinr_db is not None else -20) + 20) * 5, 0, 250)

    def _h_qcsq(self, kind: str, args: str) -> _Outcome:
        if kind == "test":
            return _ok('+QCSQ: ("NOSERVICE","GSM","WCDMA","LTE")')
        if kind != "exec":
            return _error()
        if not self._coverage() or self.rssi_dbm is None:
            return _ok('+QCSQ: "NOSERVICE"')
        rssi = self.rssi_dbm
        rsrp = self.rsrp_dbm if self.rsrp_dbm is not None else -140
        rsrq = round(self.rsrq_db if self.rsrq_db is not None else -20)
        if self.access_tech == "gsm":
            return _ok(f'+QCSQ: "GSM",{rssi}')
        if self.access_tech == "umts":
            return _ok(f'+QCSQ: "WCDMA",{rssi},{rsrp},{rsrq * 10}')
        return _ok(f'+QCSQ: "LTE",{rssi},{rsrp},{self._quectel_sinr()},{rsrq}')

    def _h_qeng(self, kind: str, args: str) -> _Outcome:
        if kind == "test":
            return _ok('+QENG: "servingcell","neighbourcell"')
        if kind != "set":
            return _error()
        what = args.strip().strip('"').lower()
        if what == "neighbourcell":
            return _ok()
        if what != "servingcell":
            return _error()
        if not self._coverage():
            return _ok('+QENG: "servingcell","SEARCH"')
        if self.data_cid is not None:
            state = "CONNECT"
        elif self.registered:
            state = "NOCONN"
        else:
            state = "LIMSRV"
        mcc, mnc = self._mcc_mnc()
        rssi = self.rssi_dbm if self.rssi_dbm is not None else -113
        rsrp = self.rsrp_dbm if self.rsrp_dbm is not None else -140
        rsrq = round(self.rsrq_db if self.rsrq_db is not None else -20)
        if self.access_tech == "umts":
            return _ok(
                f'+QENG: "servingcell","{state}","WCDMA",{mcc},{mnc},'
                f"{self.tac:X},{self.cell_id:X},10700,84,254,{rsrp},{rsrq},"
                "-,-,-,-,-"
            )
        if self.access_tech == "gsm":
            # Approximate: the GSM line carries many more fields on a real EC25.
            return _ok(
                f'+QENG: "servingcell","{state}","GSM",{mcc},{mnc},'
                f"{self.tac:X},{self.cell_id:X},63,62,-,{rssi}"
            )
        srxlev = max(0, rsrp + 124)
        return _ok(
            f'+QENG: "servingcell","{state}","LTE","FDD",{mcc},{mnc},'
            f"{self.cell_id:X},310,1300,3,5,5,{self.tac:X},{rsrp},{rsrq},"
            f"{rssi},{self._quectel_sinr()},{srxlev}"
        )

    def _h_qsimstat(self, kind: str, args: str) -> _Outcome:
        if kind == "read":
            return _ok(f"+QSIMSTAT: {int(self.qsimstat_enabled)},{int(self.sim_present)}")
        if kind == "test":
            return _ok("+QSIMSTAT: (0,1)")
        values = _int_args(args)
        if kind == "set" and values in ([0], [1]):
            self.qsimstat_enabled = values[0] == 1
            return _ok()
        return _error()

    def _h_qpowd(self, kind: str, args: str) -> _Outcome:
        if kind == "test":
            return _ok("+QPOWD: (0,1)")
        values = _int_args(args) if kind == "set" else [1]
        if kind not in ("exec", "set") or values not in ([0], [1]):
            return _error()

        def down() -> None:
            if values[0] == 1:  # orderly: says goodbye first
                self._write(self._frame_urc("POWERED DOWN"))
            self._host.power_off()

        return _Outcome(then=down)

    def _h_hcsq(self, kind: str, args: str) -> _Outcome:
        if kind != "read":
            return _error() if kind != "test" else _ok('^HCSQ: "NOSERVICE","GSM","WCDMA","LTE"')
        if not self._coverage() or self.rssi_dbm is None:
            return _ok('^HCSQ: "NOSERVICE"')
        rssi = _clamp(self.rssi_dbm + 120, 0, 96)
        if self.access_tech == "gsm":
            return _ok(f'^HCSQ: "GSM",{rssi}')
        rsrp = self.rsrp_dbm if self.rsrp_dbm is not None else -140
        rsrq = self.rsrq_db if self.rsrq_db is not None else -20.0
        if self.access_tech == "umts":
            return _ok(
                f'^HCSQ: "WCDMA",{rssi},{_clamp(rsrp + 120, 0, 96)},'
                f"{_clamp((rsrq + 32) * 2, 0, 65)}"
            )
        sinr = self.sinr_db if self.sinr_db is not None else -20.0
        return _ok(
            f'^HCSQ: "LTE",{rssi},{_clamp(rsrp + 141, 0, 97)},'
            f"{_clamp((sinr + 20) * 5, 0, 251)},{_clamp((rsrq + 20) * 2, 0, 34)}"
        )

    def _h_sysinfoex(self, kind: str, args: str) -> _Outcome:
        if kind != "exec":
            return _error()
        sim = {"ready": 1, "absent": 255}.get(self.sim_state, 1)
        if self.registered:
            srv, domain = 2, 3
        elif self._coverage():
            srv, domain = 1, 0  # limited service
        else:
            srv, domain = 0, 0
        roam = 1 if self._base_stat() == 5 else 0
        mode = {"gsm": '3,"GSM",1,"GSM"', "umts": '3,"WCDMA",41,"HSPA+"'}.get(
            self.access_tech, '6,"LTE",101,"LTE"'
        )
        if srv == 0:
            mode = '0,"NO SERVICE",0,"NO SERVICE"'
        return _ok(f"^SYSINFOEX:{srv},{domain},{roam},{sim},,{mode}")

    def _h_gtrndis(self, kind: str, args: str) -> _Outcome:
        if kind == "read":
            return _ok("+GTRNDIS: 0" if self.data_cid is None else f"+GTRNDIS: 1,{self.data_cid}")
        if kind == "test":
            return _ok("+GTRNDIS: (0-1),(1-8)")
        values = _int_args(args)
        if kind != "set" or not values or values[0] not in (0, 1):
            return _error()
        if values[0] == 0:
            self.data_cid = None
            return _ok()
        if not self.registered:
            return _error(30)
        self.data_cid = values[1] if len(values) > 1 and values[1] else 1
        return _ok()

    # name -> (dialect feature that enables it, or None for 27.007, handler)
    _HANDLERS: ClassVar[
        dict[str, tuple[str | None, Callable[[ModemModel, str, str], _Outcome]]]
    ] = {
        "+CMEE": (None, _h_cmee),
        "+CPIN": (None, _h_cpin),
        "+CFUN": (None, _h_cfun),
        "+CREG": (None, _h_creg),
        "+CGREG": (None, _h_cgreg),
        "+CEREG": (None, _h_cereg),
        "+C5GREG": ("C5GREG", _h_c5greg),
        "+COPS": (None, _h_cops),
        "+CGATT": (None, _h_cgatt),
        "+CSQ": (None, _h_csq),
        "+CESQ": ("CESQ", _h_cesq),
        "+XCESQ": ("XCESQ", _h_xcesq),
        "+QCSQ": ("QCSQ", _h_qcsq),
        "+QENG": ("QENG", _h_qeng),
        "+QSIMSTAT": ("QSIMSTAT", _h_qsimstat),
        "+QPOWD": ("QPOWD", _h_qpowd),
        "^HCSQ": ("HCSQ", _h_hcsq),
        "^SYSINFOEX": ("SYSINFOEX", _h_sysinfoex),
        "+GTRNDIS": ("GTRNDIS", _h_gtrndis),
    }


class _PtyHost:
    """The model's view of the emulator (ModemHost), called under its lock."""

    def __init__(self, emulator: ModemEmulator) -> None:
        self._emu = emulator

    def write(self, data: bytes) -> None:
        self._emu._write_locked(data)

    def write_port(self, port: int, data: bytes) -> None:
        self._emu._write_port_locked(port, data)

    def call_later(self, delay: float, fn: Callable[[], None]) -> None:
        self._emu._call_later_locked(delay, fn)

    def reset(self) -> None:
        self._emu._after_answer_locked(self._emu._soft_reset_locked)

    def power_off(self) -> None:
        self._emu._after_answer_locked(self._emu._power_off_locked)


class ModemEmulator:
    """One emulated modem on a pseudo-terminal (see the module docstring).

    Every public method is thread-safe and returns promptly; the effects on
    the port (URCs, a closed master) have happened when it returns, except
    what is scheduled (boot, registration, delayed replies, re-plug).
    """

    def __init__(
        self,
        dialect: str | Dialect = "ec25",
        link: str | os.PathLike[str] | None = None,
        *,
        echo: bool = True,
        boot_delay: float = 0.05,
        register_delay: float = 0.05,
        reset_down_s: float = 0.05,
        scan_duration: float = 90.0,
        sim_present: bool = True,
        pin_locked: bool = False,
        pin: str = "1234",
        puk: str = "12345678",
        registration: str = "home",
        access_tech: str = "lte",
        operator: str = "Lab Mobile",
        mcc_mnc: str = "00101",
        imei: str = "867698041234561",
        imsi: str = "001010123456789",
        iccid: str = "8944000012345678904",
        extra_links: Sequence[str | os.PathLike[str]] = (),
    ) -> None:
        self.dialect: Dialect = get_dialect(dialect)
        self._link: str | None = os.fspath(link) if link is not None else None
        #: Further AT ports of the same modem (1, 2, ...), each on its own pty
        #: behind these links: replies come back on the port asked, URCs only
        #: on the main one (``ModemModel.commands_by_port`` says which asked).
        self.extra_links: list[str] = [os.fspath(x) for x in extra_links]
        self._extra: dict[int, tuple[int, int, str]] = {}  # port -> (master, slave, path)
        #: Port absence on soft reset / hardware_reset() (real: dialect.typical_reset_down_s).
        self.reset_down_s = reset_down_s
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._model = ModemModel(
            self.dialect,
            _PtyHost(self),
            echo=echo,
            boot_delay=boot_delay,
            register_delay=register_delay,
            scan_duration=scan_duration,
            sim_present=sim_present,
            pin_locked=pin_locked,
            pin=pin,
            puk=puk,
            registration=registration,
            access_tech=access_tech,
            operator=operator,
            mcc_mnc=mcc_mnc,
            imei=imei,
            imsi=imsi,
            iccid=iccid,
        )
        #: Every command line received, in order, as sent (CR/LF stripped).
        self.commands: list[str] = self._model.commands
        #: Reboots so far: soft-reset commands, reboot(), hardware_reset(), power_on().
        self.resets = 0
        #: Called with the new slave path after each (re)plug, before the
        #: modem boots, outside the lock, often in the emulator's thread: it
        #: may call the emulator but must not wait_*() for it.
        self.on_plug: Callable[[str], None] | None = None
        #: Called after the port vanished (same rules as on_plug).
        self.on_unplug: Callable[[], None] | None = None
        self._master: int | None = None
        self._slave: int | None = None
        self._slave_path: str | None = None
        self._last_slave_path: str | None = None
        self._timers: list[tuple[float, int, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._epoch = 0  # bumped on power loss: stale timers die
        self._deferred: list[Callable[[], None]] = []
        self._callbacks_running = 0
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._wake_r: int | None = None
        self._wake_w: int | None = None
        self._powered = True
        self._usb_stuck = False
        self._flood_rate = 0.0
        self._flood_data = _FLOOD_PATTERN
        self._flood_thread: threading.Thread | None = None
        #: Flood bytes the port took so far (bytes it could not take are not counted).
        self.flood_bytes = 0

    # --------------------------------------------------------- properties

    @property
    def port(self) -> str:
        """What a client opens: the link if given, else the slave path."""
        if self._link is not None:
            return self._link
        path = self._slave_path or self._last_slave_path
        if path is None:
            raise RuntimeError("emulator not started")
        return path

    @property
    def link(self) -> str | None:
        return self._link

    @property
    def extra_slave_paths(self) -> dict[int, str]:
        """The /dev/pts/N of each further AT port (1, 2, ...) while plugged."""
        with self._lock:
            return {port: path for port, (_m, _s, path) in self._extra.items()}

    @property
    def slave_path(self) -> str | None:
        """The current /dev/pts/N, None while unplugged."""
        return self._slave_path

    @property
    def plugged(self) -> bool:
        return self._master is not None

    @property
    def booted(self) -> bool:
        return self._model.booted

    @property
    def model(self) -> ModemModel:
        """The state machine (read it; change it through the methods here)."""
        return self._model

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Open the pty, make the link, start the thread, boot."""
        with self._lock:
            if self._thread is not None:
                return
            self._stopping = False
            self._wake_r, self._wake_w = os.pipe()
            os.set_blocking(self._wake_r, False)
            os.set_blocking(self._wake_w, False)
            try:
                self._plug_locked()
            except BaseException:
                for fd in (self._wake_r, self._wake_w):
                    _close_quietly(fd)
                self._wake_r = self._wake_w = None
                raise
            self._thread = threading.Thread(
                target=self._run, name=f"modem-emulator-{self.dialect.name}", daemon=True
            )
            self._thread.start()
        self._run_deferred()

    def stop(self) -> None:
        """Stop the thread, close everything, remove the link. Idempotent."""
        with self._lock:
            thread = self._thread
            flood, self._flood_rate = self._flood_thread, 0.0
            self._stopping = True
            self._wake_locked()
        if flood is not None and flood is not threading.current_thread():
            flood.join(timeout=1.0)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2.0)
            if thread.is_alive():
                log.error("%s: emulator thread did not stop", self.dialect.name)
        with self._lock:
            self._epoch += 1
            self._timers.clear()
            self._close_port_locked(notify=False)
            for fd in (self._wake_r, self._wake_w):
                if fd is not None:
                    _close_quietly(fd)
            self._wake_r = self._wake_w = None
            self._thread = None
            self._deferred.clear()
            self._cond.notify_all()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------- faults

    def set_silent(self, silent: bool, *, sticky: bool = False) -> None:
        """Wedge the AT service: input is read and dropped, nothing is sent.
        A reboot or re-plug clears it unless ``sticky``."""
        with self._op():
            self._model.silent = silent
            self._model.silent_sticky = silent and sticky

    def set_delay(self, seconds: float) -> None:
        """Delay every reply (not the echo, not URCs) by ``seconds``."""
        with self._op():
            self._model.reply_delay = max(0.0, seconds)

    def set_radio_stuck(self, stuck: bool) -> None:
        """AT+CFUN=1 answers OK but the radio stays at CFUN 4 (L850 habit)."""
        with self._op():
            self._model.radio_stuck = stuck

    def send_garbage(self, data: bytes = _DEFAULT_GARBAGE) -> None:
        """Raw bytes on the line, as from a confused firmware or line noise."""
        with self._op():
            self._model.send_raw(data)

    def send_urc(self, line: str) -> None:
        with self._op():
            self._model.urc(line)

    def set_flood(self, bytes_per_s: float, data: bytes = _FLOOD_PATTERN) -> None:
        """Spray ``data``, repeated, at ``bytes_per_s`` onto the port (0 stops it).

        The modem still answers commands in between, as a firmware stuck in
        a debug dump does; its replies are never cut by the flood, but flood
        lines may run into them. What the port cannot take (the client reads
        too slowly) is dropped, as on a USB tty, and not counted in
        :attr:`flood_bytes`. The flood survives resets and re-plugs.
        """
        if not data:
            raise ValueError("a flood needs bytes")
        with self._op():
            self._flood_rate = max(0.0, float(bytes_per_s))
            self._flood_data = data
            if self._flood_rate and self._flood_thread is None and not self._stopping:
                self._flood_thread = threading.Thread(
                    target=self._flood_loop, name=f"modem-flood-{self.dialect.name}", daemon=True
                )
                self._flood_thread.start()

    def _flood_loop(self) -> None:
        last = time.monotonic()
        offset = 0
        while True:
            time.sleep(_FLOOD_TICK_S)
            with self._lock:
                if self._stopping or self._flood_rate <= 0:
                    self._flood_thread = None
                    return
                now = time.monotonic()
                # Never more than a tenth of a second's worth at once (a stall
                # of this thread is not made up for with a burst).
                due = int(self._flood_rate * min(now - last, 0.1))
                last = now
                if due <= 0 or self._master is None:
                    continue
                data = self._flood_data
                reps = (offset + due) // len(data) + 1
                chunk = (data * (reps + 1))[offset:offset + due]
                offset = (offset + due) % len(data)
                self.flood_bytes += self._write_locked(chunk)

    def remove_sim(self) -> None:
        with self._op():
            self._model.remove_sim()

    def insert_sim(self) -> None:
        with self._op():
            self._model.insert_sim()

    def deregister(self, stat: int = 2) -> None:
        """Lose the network (27.007 <stat>: 2 searching, 3 denied, 0 idle)."""
        with self._op():
            self._model.deregister(stat)

    def register(self, state: str = "home") -> None:
        """Regain the network: home / roaming / searching / denied / idle."""
        with self._op():
            self._model.register(state)

    def set_cell(
        self, tac: int | None = None, cell_id: int | None = None, access_tech: str | None = None
    ) -> None:
        """Move to another cell or radio technology (URCs at <n> = 2)."""
        with self._op():
            self._model.set_cell(tac, cell_id, access_tech)

    def set_signal(
        self,
        rssi_dbm: int | _Unchanged | None = UNCHANGED,
        rsrp_dbm: int | _Unchanged | None = UNCHANGED,
        sinr_db: float | _Unchanged | None = UNCHANGED,
        rsrq_db: float | _Unchanged | None = UNCHANGED,
    ) -> None:
        """Set what the signal commands report; None = not measurable."""
        with self._op():
            m = self._model
            if not isinstance(rssi_dbm, _Unchanged):
                m.rssi_dbm = rssi_dbm
            if not isinstance(rsrp_dbm, _Unchanged):
                m.rsrp_dbm = rsrp_dbm
            if not isinstance(sinr_db, _Unchanged):
                m.sinr_db = sinr_db
            if not isinstance(rsrq_db, _Unchanged):
                m.rsrq_db = rsrq_db

    def set_reply(
        self,
        command: str,
        lines: Sequence[str] | Callable[[str], Sequence[str]] = (),
        *,
        error: int | bool | None = False,
    ) -> None:
        """Answer ``command`` (e.g. ``"AT+CGDCONT?"``, matched case-blind)
        with ``lines`` and OK, or with an error: ``error=True`` plain ERROR,
        ``error=<n>`` +CME ERROR n. ``lines`` may be a callable taking the
        command as sent. Takes precedence over everything else."""
        key = _normalise(command)

        def reply(sub: str) -> _Outcome:
            if error is True:
                return _error()
            if error is not False and error is not None:
                return _error(int(error))
            return _ok(*(lines(sub) if callable(lines) else lines))

        with self._op():
            self._model.overrides[key] = reply

    # ------------------------------------------------------- USB and power

    def reboot(self, down_s: float = 0.0, new_link: str | None = None) -> None:
        """Reset the modem. ``down_s`` > 0 (or a ``new_link``): the port
        vanishes like a USB re-enumeration and a new pty appears after
        ``down_s``; 0: it boots again on the same port."""
        with self._op():
            self._reboot_locked(down_s, new_link)

    def hardware_reset(self) -> None:
        """A reset-line pulse: like reboot(reset_down_s). Does nothing to a
        modem without power or one that dropped off USB for good."""
        with self._op():
            if not self._powered or self._usb_stuck:
                log.info(
                    "%s: reset pulse ignored (powered=%s, off USB=%s)",
                    self.dialect.name,
                    self._powered,
                    self._usb_stuck,
                )
                return
            self._reboot_locked(self.reset_down_s, None)

    def unplug(self) -> None:
        """The port is gone (master closed, link removed) until plug()."""
        with self._op():
            self._epoch += 1
            self._close_port_locked()

    def plug(self, new_link: str | None = None) -> None:
        """A fresh pty appears (at ``new_link`` if given) and boots."""
        with self._op():
            if self._master is not None and new_link is None:
                return
            self._epoch += 1
            self._close_port_locked()
            if new_link is not None:
                self._link = os.fspath(new_link)
            self._powered, self._usb_stuck = True, False
            self._plug_locked()

    def power_off(self) -> None:
        """Power rail off: the port vanishes and stays gone."""
        with self._op():
            self._power_off_locked()

    def power_on(self) -> None:
        """Power rail on (after power_off() or drop_off_usb()): plug and boot."""
        with self._op():
            if self._powered and not self._usb_stuck and self._master is not None:
                return
            self._powered, self._usb_stuck = True, False
            self._epoch += 1
            self._close_port_locked()
            self.resets += 1
            self._plug_locked()

    def drop_off_usb(self) -> None:
        """The modem falls off USB for good: neither AT nor the reset line
        bring it back, only power_on() after power_off() (or plug())."""
        with self._op():
            self._usb_stuck = True
            self._epoch += 1
            self._close_port_locked()

    # -------------------------------------------------------------- waits

    def wait_booted(self, timeout: float = 2.0) -> bool:
        """Until the modem answers AT (boot URCs sent)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._model.booted, timeout)

    def wait_idle(self, timeout: float = 2.0) -> bool:
        """Until booted with no reply pending and nothing queued."""
        with self._cond:
            return self._cond.wait_for(lambda: self._model.idle, timeout)

    def wait_registered(self, timeout: float = 2.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._model.registered, timeout)

    def wait_plugged(self, timeout: float = 2.0) -> bool:
        """Until the port is up and on_plug has returned."""
        with self._cond:
            return self._cond.wait_for(
                lambda: (
                    self._master is not None and not self._deferred and not self._callbacks_running
                ),
                timeout,
            )

    def wait_for_command(self, command: str, timeout: float = 2.0) -> bool:
        """Until ``command`` (case-blind, with or without ``AT``) arrived."""
        with self._cond:
            return self._cond.wait_for(lambda: self.was_sent(command), timeout)

    def was_sent(self, command: str) -> bool:
        key = _normalise(command)
        return any(_normalise(c) == key for c in list(self.commands))

    def status(self) -> dict[str, Any]:
        """A JSON-able snapshot, for the lab and for debugging tests."""
        with self._lock:
            m = self._model
            return {
                "dialect": self.dialect.name,
                "port": self._link or self._slave_path,
                "slave": self._slave_path,
                "plugged": self._master is not None,
                "powered": self._powered,
                "booted": m.booted,
                "silent": m.silent,
                "delay": m.reply_delay,
                "cfun": m.cfun,
                "sim": m.sim_state if m.booted else ("present" if m.sim_present else "absent"),
                "registration": {d: m._stat(d) for d in m._domains()},
                "access_tech": m.access_tech,
                "resets": self.resets,
                "commands": len(m.commands),
            }

    # ----------------------------------------------- host side of the model

    def _write_port_locked(self, port: int, data: bytes) -> int:
        """Push bytes into a further AT port's master (see _write_locked)."""
        extra = self._extra.get(port)
        return self._write_locked(data, extra[0]) if extra is not None else 0

    def _write_locked(self, data: bytes, fd: int | None = None) -> int:
        """Push bytes into the master; never block. Returns the bytes it took."""
        fd = self._master if fd is None else fd
        if fd is None:
            return 0
        view = memoryview(data)
        while view:
            try:
                n = os.write(fd, view)
            except BlockingIOError:
                # Nobody reads the slave and its buffer is full: a USB tty
                # would drop these bytes too.
                log.debug("%s: dropped %d bytes (port buffer full)", self.dialect.name, len(view))
                break
            except OSError as e:
                log.debug("%s: write failed: %s", self.dialect.name, e)
                break
            view = view[n:]
        return len(data) - len(view)

    def _call_later_locked(self, delay: float, fn: Callable[[], None]) -> None:
        """Run ``fn`` in the emulator thread after ``delay`` s, unless the
        modem loses power first (the epoch moves on)."""
        heapq.heappush(
            self._timers, (time.monotonic() + max(0.0, delay), next(self._seq), self._epoch, fn)
        )
        self._wake_locked()

    def _soft_reset_locked(self) -> None:
        self._reboot_locked(self.reset_down_s, None)

    def _after_answer_locked(
        self, fn: Callable[[], None], grace: float = 0.03, max_wait: float = 0.5
    ) -> None:
        """Run ``fn`` (a reset, a power-down) once the client has read the
        modem's last words, or after ``max_wait`` if nobody reads.

        Closing a pty master flushes what the slave has not read yet, so an
        immediate reset would swallow the OK a real modem gets out before it
        resets. Bytes written to the master reach the slave's queue a moment
        later (the kernel's flip buffer), hence the ``grace`` before trusting
        an empty queue. Meanwhile the modem takes no more commands.
        """
        self._model.power_loss()
        deadline = time.monotonic() + max_wait

        def check() -> None:
            slave = self._slave
            if slave is None or _unread(slave) == 0 or time.monotonic() >= deadline:
                fn()
            else:
                self._call_later_locked(0.005, check)

        self._call_later_locked(grace, check)

    @contextlib.contextmanager
    def _op(self) -> Iterator[ModemModel]:
        """A public operation: under the lock, then wake the waiters, then
        run user callbacks with the lock released."""
        with self._cond:
            try:
                yield self._model
            finally:
                self._cond.notify_all()
        self._run_deferred()

    # ------------------------------------------------------------ internals

    def _reboot_locked(self, down_s: float, new_link: str | None) -> None:
        self.resets += 1
        self._epoch += 1  # pending replies and timers die with the reset
        relink = new_link is not None and os.fspath(new_link) != self._link
        if down_s > 0 or relink or self._master is None:
            self._close_port_locked()
            if new_link is not None:
                self._link = os.fspath(new_link)
            self._call_later_locked(down_s, self._replug_locked)
        else:
            self._model.power_up()
        self._cond.notify_all()

    def _replug_locked(self) -> None:
        if self._stopping or not self._powered or self._usb_stuck or self._master is not None:
            return
        self._plug_locked()

    def _power_off_locked(self) -> None:
        self._powered = False
        self._epoch += 1
        self._close_port_locked()

    def _plug_locked(self) -> None:
        master, slave = os.openpty()
        try:
            # Raw: the client must see exactly the modem's bytes, and the
            # slave must never echo them back to us as if they were commands.
            tty.setraw(slave)
            os.set_blocking(master, False)
            path = os.ttyname(slave)
            if self._link is not None:
                _make_link(self._link, path)
        except BaseException:
            _close_quietly(master)
            _close_quietly(slave)
            raise
        # We keep the slave open ourselves: with no client a pty master reads
        # EIO and polls HUP in a loop; holding it makes "nobody listening"
        # look like a USB tty nobody opened (output simply goes nowhere).
        self._master, self._slave, self._slave_path = master, slave, path
        self._last_slave_path = path
        for port, extra_link in enumerate(self.extra_links, 1):
            self._extra[port] = _open_pty(extra_link)
        log.info(
            "%s: port up at %s%s",
            self.dialect.name,
            path,
            f" (link {self._link})" if self._link else "",
        )
        self._model.power_up()
        if self.on_plug is not None:
            callback = self.on_plug
            self._deferred.append(lambda: callback(path))
        self._wake_locked()
        self._cond.notify_all()

    def _close_port_locked(self, notify: bool = True) -> None:
        if self._master is None:
            return
        self._model.power_loss()
        path = self._slave_path
        # Closing the master hangs the slave up: a client's read returns EOF
        # (pyserial raises SerialException) and its write fails with EIO.
        for fd in (self._master, self._slave):
            if fd is not None:
                _close_quietly(fd)
        self._master = self._slave = None
        self._slave_path = None
        if self._link is not None and path is not None:
            _remove_link(self._link, path)
        for port, (extra_master, extra_slave, extra_path) in sorted(self._extra.items()):
            _close_quietly(extra_master)
            _close_quietly(extra_slave)
            _remove_link(self.extra_links[port - 1], extra_path)
        self._extra.clear()
        log.info("%s: port %s gone", self.dialect.name, path)
        if notify and self.on_unplug is not None:
            self._deferred.append(self.on_unplug)
        self._wake_locked()
        self._cond.notify_all()

    def _wake_locked(self) -> None:
        if self._wake_w is None:
            return
        try:
            os.write(self._wake_w, b"!")
        except (BlockingIOError, OSError):
            pass  # already awake (pipe full) or stopping

    def _run_deferred(self) -> None:
        """Run user callbacks outside the lock, so they may call us back."""
        with self._lock:
            todo, self._deferred = self._deferred, []
            if not todo:
                return
            self._callbacks_running += 1
        try:
            for fn in todo:
                try:
                    fn()
                except Exception:
                    log.exception("%s: callback failed", self.dialect.name)
        finally:
            with self._cond:
                self._callbacks_running -= 1
                self._cond.notify_all()

    def _next_timeout_locked(self) -> float:
        while self._timers and self._timers[0][2] != self._epoch:
            heapq.heappop(self._timers)  # stale: from before a power loss
        if not self._timers:
            return 1.0
        return min(1.0, max(0.0, self._timers[0][0] - time.monotonic()))

    def _fire_timers_locked(self) -> None:
        now = time.monotonic()
        while self._timers and self._timers[0][0] <= now:
            _, _, epoch, fn = heapq.heappop(self._timers)
            if epoch != self._epoch:
                continue
            try:
                fn()
            except Exception:
                log.exception("%s: timer failed", self.dialect.name)

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException:
            log.exception("%s: emulator thread crashed", self.dialect.name)
            raise

    def _loop(self) -> None:
        while True:
            with self._lock:
                if self._stopping:
                    return
                timeout = self._next_timeout_locked()
                master, wake = self._master, self._wake_r
                extras = {m: port for port, (m, _s, _p) in self._extra.items()}
            if wake is None:
                return
            poller = select.poll()
            poller.register(wake, select.POLLIN)
            if master is not None:
                poller.register(master, select.POLLIN)
            for fd in extras:
                poller.register(fd, select.POLLIN)
            try:
                events = dict(poller.poll(timeout * 1000.0))
            except OSError as e:  # EINTR or an fd closed under us
                log.debug("%s: poll: %s", self.dialect.name, e)
                events = {}
            with self._lock:
                if self._stopping:
                    return
                try:
                    if wake in events and self._wake_r is not None:
                        _drain(self._wake_r)
                    self._fire_timers_locked()
                    # Only read the fd if it is still our master (not closed
                    # and reused by someone else since poll returned).
                    if master is not None and master == self._master and master in events:
                        data = _read_nonblocking(master)
                        if data:
                            self._model.receive(data)
                    for fd, port in extras.items():
                        now = self._extra.get(port)
                        if fd in events and now is not None and now[0] == fd:
                            data = _read_nonblocking(fd)
                            if data:
                                self._model.receive(data, port)
                except Exception:
                    log.exception("%s: emulator error", self.dialect.name)
                self._cond.notify_all()
            self._run_deferred()


# ----------------------------------------------------------------- helpers


def _open_pty(link: str) -> tuple[int, int, str]:
    """A raw pty pair behind ``link``, its master non-blocking: (master, slave, path)."""
    master, slave = os.openpty()
    try:
        tty.setraw(slave)
        os.set_blocking(master, False)
        path = os.ttyname(slave)
        _make_link(link, path)
    except BaseException:
        _close_quietly(master)
        _close_quietly(slave)
        raise
    return master, slave, path


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 512):
            pass
    except (BlockingIOError, OSError):
        pass


def _unread(fd: int) -> int:
    """Bytes waiting in a tty's input queue (what the client has not read)."""
    try:
        buf = fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0")
    except OSError:
        return 0
    return int.from_bytes(buf, sys.byteorder, signed=True)


def _read_nonblocking(fd: int) -> bytes:
    try:
        return os.read(fd, 4096)
    except BlockingIOError:
        return b""
    except OSError as e:
        if e.errno != errno.EIO:
            log.debug("master read: %s", e)
        return b""


def _make_link(link: str, target: str) -> None:
    """Point ``link`` at ``target`` atomically; never clobber a real file."""
    parent = os.path.dirname(link)
    if parent:
        os.makedirs(parent, exist_ok=True)
    if os.path.lexists(link) and not os.path.islink(link):
        raise FileExistsError(errno.EEXIST, "not a symlink, refusing to replace", link)
    tmp = f"{link}.emu-{os.getpid()}-{threading.get_ident()}"
    os.symlink(target, tmp)
    os.replace(tmp, link)


def _remove_link(link: str, target: str) -> None:
    """Remove ``link`` if it still points at our ``target`` (not someone else's)."""
    try:
        if os.path.islink(link) and os.readlink(link) == target:
            os.unlink(link)
    except OSError as e:
        log.debug("removing %s: %s", link, e)


# --------------------------------------------------------------------- CLI

#: Fault commands the CLI reads from stdin, one per line.
CLI_COMMANDS: dict[str, str] = {
    "silent on|off|sticky": "wedge / un-wedge the AT service (sticky survives resets)",
    "delay SECONDS": "delay every reply",
    "garbage [TEXT]": "send raw bytes (Python escapes allowed, e.g. \\x00)",
    "flood BYTES_PER_S": "spray garbage at that rate (0 stops)",
    "urc LINE": "send an unsolicited line",
    "sim remove|insert": "pull or insert the SIM",
    "deregister [STAT]": "lose the network (2 searching, 3 denied, 0 idle)",
    "register [STATE]": "regain it: home, roaming, searching, denied, idle",
    "signal KEY=VALUE...": "rssi=, rsrp=, sinr=, rsrq= (a number or none)",
    "cell TAC CI [TECH]": "move to another cell (hex) and radio technology",
    "radio-stuck on|off": "AT+CFUN=1 answers OK but the radio stays off",
    "unplug": "the port vanishes",
    "plug [LINK]": "a new port appears (optionally at another link)",
    "reboot [DOWN_S] [LINK]": "reset; the port vanishes for DOWN_S seconds",
    "reset": "reset-line pulse (hardware_reset)",
    "power off|on": "power rail off / on",
    "usb-drop": "fall off USB until a power cycle",
    "status": "print the state as JSON",
    "quit": "stop the emulator and exit",
}


def _cli_command(emu: ModemEmulator, line: str) -> str | None:
    """Apply one stdin command; return what to print (None: quit)."""
    words = line.split()
    if not words:
        return ""
    cmd, args = words[0].lower(), words[1:]
    on_off = {"on": True, "off": False}
    if cmd in ("quit", "exit", "stop"):
        return None
    if cmd == "silent" and args and args[0] in ("on", "off", "sticky"):
        emu.set_silent(args[0] != "off", sticky=args[0] == "sticky")
    elif cmd == "delay" and len(args) == 1:
        emu.set_delay(float(args[0]))
    elif cmd == "flood" and len(args) == 1:
        emu.set_flood(float(args[0]))
    elif cmd == "garbage":
        text = line.split(None, 1)[1] if args else ""
        emu.send_garbage(
            codecs.decode(text, "unicode_escape").encode("latin-1") if text else _DEFAULT_GARBAGE
        )
    elif cmd == "urc" and args:
        emu.send_urc(line.split(None, 1)[1])
    elif cmd == "sim" and args and args[0] in ("remove", "insert"):
        emu.remove_sim() if args[0] == "remove" else emu.insert_sim()
    elif cmd == "deregister":
        emu.deregister(int(args[0]) if args else 2)
    elif cmd == "register":
        emu.register(args[0] if args else "home")
    elif cmd == "signal" and args:
        values: dict[str, Any] = {}
        for item in args:
            key, _, value = item.partition("=")
            if key not in ("rssi", "rsrp", "sinr", "rsrq"):
                raise ValueError(f"unknown signal value {key!r}")
            values[f"{key}_{'db' if key in ('sinr', 'rsrq') else 'dbm'}"] = (
                None if value.lower() == "none" else float(value)
            )
        for key in ("rssi_dbm", "rsrp_dbm"):
            if values.get(key) is not None:
                values[key] = int(values[key])
        emu.set_signal(**values)
    elif cmd == "cell" and len(args) >= 2:
        emu.set_cell(int(args[0], 16), int(args[1], 16), args[2] if len(args) > 2 else None)
    elif cmd == "radio-stuck" and args and args[0] in on_off:
        emu.set_radio_stuck(on_off[args[0]])
    elif cmd == "unplug":
        emu.unplug()
    elif cmd == "plug":
        emu.plug(args[0] if args else None)
    elif cmd == "reboot":
        emu.reboot(float(args[0]) if args else 0.0, args[1] if len(args) > 1 else None)
    elif cmd == "reset":
        emu.hardware_reset()
    elif cmd == "power" and args and args[0] in on_off:
        emu.power_on() if on_off[args[0]] else emu.power_off()
    elif cmd == "usb-drop":
        emu.drop_off_usb()
    elif cmd == "status":
        return json.dumps(emu.status())
    else:
        raise ValueError(f"unknown command {line.strip()!r}")
    return f"ok {line.strip()}"


def _read_stdin_commands(emu: ModemEmulator, done: threading.Event) -> None:
    for line in sys.stdin:
        try:
            reply = _cli_command(emu, line)
        except (ValueError, TypeError) as e:
            reply = f"error {e}"
        if reply is None:
            done.set()
            return
        if reply:
            print(reply, flush=True)
    # EOF: keep running; the lab may start us with stdin closed.


def main(argv: Sequence[str] | None = None) -> int:
    """Run one emulator until SIGTERM/SIGINT (or ``quit`` on stdin)."""
    parser = argparse.ArgumentParser(
        prog="python -m remsim_lab.emulator",
        description="Emulate a cellular modem's AT port on a pseudo-terminal.",
        epilog="stdin commands (when stdin is not a terminal): "
        + "; ".join(f"{k}: {v}" for k, v in CLI_COMMANDS.items()),
    )
    parser.add_argument("--dialect", default="ec25", choices=sorted(DIALECTS))
    parser.add_argument("--link", help="symlink to create to the pty (e.g. /tmp/lab/ttyUSB2)")
    parser.add_argument("--boot-delay", type=float, default=None, metavar="S")
    parser.add_argument("--register-delay", type=float, default=None, metavar="S")
    parser.add_argument(
        "--reset-down",
        type=float,
        default=None,
        metavar="S",
        help="port absence on soft/hardware reset",
    )
    parser.add_argument(
        "--realistic",
        action="store_true",
        help="use the dialect's real timings unless given explicitly",
    )
    parser.add_argument("--no-sim", action="store_true")
    parser.add_argument("--pin-locked", action="store_true")
    parser.add_argument("--registration", default="home", choices=sorted(REG_STATES))
    parser.add_argument("--access-tech", default="lte", choices=sorted(ACCESS_TECH))
    parser.add_argument("--operator", default="Lab Mobile")
    parser.add_argument("--mcc-mnc", default="00101")
    parser.add_argument("--imei")
    parser.add_argument("--imsi")
    parser.add_argument("--iccid")
    parser.add_argument("--log-level", default="INFO")
    ns = parser.parse_args(argv)
    logging.basicConfig(
        level=ns.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )

    dialect = get_dialect(ns.dialect)

    def timing(given: float | None, real: float) -> float:
        return given if given is not None else (real if ns.realistic else 0.05)

    identity = {k: v for k, v in (("imei", ns.imei), ("imsi", ns.imsi), ("iccid", ns.iccid)) if v}
    emu = ModemEmulator(
        dialect,
        ns.link,
        boot_delay=timing(ns.boot_delay, dialect.typical_boot_s),
        register_delay=timing(ns.register_delay, dialect.typical_register_s),
        reset_down_s=timing(ns.reset_down, dialect.typical_reset_down_s),
        sim_present=not ns.no_sim,
        pin_locked=ns.pin_locked,
        registration=ns.registration,
        access_tech=ns.access_tech,
        operator=ns.operator,
        mcc_mnc=ns.mcc_mnc,
        **identity,
    )
    done = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    emu.start()
    try:
        print(f"ready port={emu.port} slave={emu.slave_path}", flush=True)
        if not sys.stdin.isatty():
            threading.Thread(
                target=_read_stdin_commands, args=(emu, done), name="emulator-stdin", daemon=True
            ).start()
        while not done.wait(0.5):  # short waits: signals are handled between them
            pass
    finally:
        emu.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
