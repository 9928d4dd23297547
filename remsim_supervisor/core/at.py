"""Sans-I/O AT command engine: bytes from the modem in, events out.

The engine never touches a port and never reads a clock (the h11 pattern).
The caller writes what :meth:`AtEngine.command` returns, hands every byte it
reads to :meth:`AtEngine.feed`, and gets back a list of events:

* :class:`Response` -- the pending command finished: its information lines
  and the :class:`~remsim_supervisor.core.atcodes.Final` result code that
  ended it;
* :class:`~remsim_supervisor.core.urc.Urc` -- an unsolicited result code,
  classified once by the :class:`~remsim_supervisor.core.urc.UrcTable` the
  engine was given (the active modem profile's): its kind and parsed value;
* :class:`Noise` -- bytes that were discarded: binary garbage, a fragment
  that was cut off, or the late reply of a command the caller gave up on.

Framing. Lines end in ``\\r\\n``, ``\\n`` or ``\\r``; empty lines are dropped.
Bytes that are not text (NUL, other control characters, invalid UTF-8) are
removed from the line and reported as :class:`Noise`, so a modem that sprays
garbage while rebooting never corrupts the next response. A line longer than
:data:`MAX_LINE` without a terminator is dropped as noise.

Caps. A pending command collects at most ``max_lines`` information lines
and ``max_bytes`` bytes of them (:data:`MAX_RESPONSE_LINES`,
:data:`MAX_RESPONSE_BYTES` by default). A reply that grows past either ends
the command with an :class:`Overflow` event instead of a :class:`Response`,
and the engine resynchronises as after :meth:`AtEngine.abandon`: the rest of
that reply, up to its final result code, is noise. So a modem that streams
lines without ever sending a final code holds a bounded amount of memory.

Classification while a command is pending: the command's echo (equal to the
command, case-insensitive; echo may be on or off) is removed; a line that
begins with a prefix of the URC table is a URC *unless* it carries the
pending command's own prefix (``+CEREG: 2,1`` answers ``AT+CEREG?``); a final
result code (see :func:`~remsim_supervisor.core.atcodes.parse_final_line`)
completes the :class:`Response`; every other line is an information line.
With nothing pending every line is a URC (of kind "unknown" when the table
has no rule for it), except a stray ``OK``/``ERROR``-type final, which is
noise. :meth:`AtEngine.use_urcs` swaps the table once the modem is known.

Timeouts are the caller's: when its timer fires it calls :meth:`abandon`.
The abandoned command becomes an *orphan*: the first final result code that
arrives afterwards, together with the information lines before it, is
swallowed as :class:`Noise` instead of being credited to the next command --
unless the next command's echo is seen first, which proves the orphan's reply
is not coming. If the next command also times out after having swallowed a
final, that final was probably its own, so no new orphan is recorded; this
stops a lost final from shifting every later reply by one. A URC of kind
"boot" (the profile's start-up banner) also clears the orphan: a rebooted
modem answers nothing it was asked before. :meth:`reset` drops all state (port
reopened); :meth:`gap` says that bytes were lost (the caller dropped them):
the partial line around the gap is noise.

Out of scope: V0 (numeric) result codes, the ``>`` prompt of ``AT+CMGS``, and
data mode after ``CONNECT`` (the caller stops feeding the engine).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TypeAlias

from remsim_supervisor.core.atcodes import (
    STRAY_KINDS,
    Final,
    command_prefixes,
    parse_final_line,
)
from remsim_supervisor.core.urc import BASIC_URCS, Urc, UrcTable

__all__ = [
    "MAX_LINE",
    "MAX_RESPONSE_BYTES",
    "MAX_RESPONSE_LINES",
    "AtBusy",
    "AtEngine",
    "Event",
    "Noise",
    "Overflow",
    "Response",
    "Urc",
]


#: Longest line kept while waiting for its terminator. ``AT+COPS=?`` answers
#: run to about 1 KiB; anything far beyond that is a runaway binary stream.
MAX_LINE = 8192

#: Most information lines one response may carry. The longest real answers
#: (``AT+CLAC`` lists a few hundred commands) stay well inside it.
MAX_RESPONSE_LINES = 1024

#: Most bytes (of information lines) one response may carry.
MAX_RESPONSE_BYTES = 64 * 1024

_LINE_BREAK_B = re.compile(rb"\r\n|\r|\n")
# Characters that never belong in an AT text line (tab is tolerated).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


@dataclass(frozen=True)
class Response:
    """A completed command: information lines and the final result code."""

    command: str             #: the command as sent, without the trailing \r
    lines: tuple[str, ...]   #: information lines, stripped, empty lines dropped
    final: Final

    @property
    def ok(self) -> bool:
        return self.final.kind == "ok"


@dataclass(frozen=True)
class Noise:
    """Bytes that were discarded (garbage, cut-off fragments, late replies)."""

    data: bytes


@dataclass(frozen=True)
class Overflow:
    """The pending command's reply grew past the engine's caps: it is given up."""

    command: str   #: the command as sent, without the trailing \r
    lines: int     #: information lines received before giving up
    size: int      #: their bytes

    @property
    def message(self) -> str:
        return (f"{self.command}: the reply grew to {self.lines} lines / {self.size} bytes "
                "without a final result code; given up")


Event: TypeAlias = Response | Urc | Noise | Overflow


class AtBusy(Exception):
    """:meth:`AtEngine.command` was called while another command is pending."""


def _clean(raw: bytes) -> tuple[str, bytes]:
    """Split one raw line into its text and the garbage bytes removed from it."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        # Not UTF-8: keep printable ASCII, the rest is garbage.
        keep = bytes(b for b in raw if 0x20 <= b < 0x7F or b == 0x09)
        junk = bytes(b for b in raw if not (0x20 <= b < 0x7F or b == 0x09))
        return keep.decode("ascii"), junk
    if not _CONTROL.search(text):
        return text, b""
    junk = "".join(_CONTROL.findall(text)).encode("ascii")
    return _CONTROL.sub("", text), junk


class AtEngine:
    """The AT conversation on one port, one command at a time (see module doc)."""

    def __init__(self, urcs: UrcTable = BASIC_URCS, *,
                 max_lines: int = MAX_RESPONSE_LINES,
                 max_bytes: int = MAX_RESPONSE_BYTES) -> None:
        if max_lines < 1 or max_bytes < 1:
            raise ValueError("the response caps must be positive")
        self.urcs = urcs
        self.max_lines = max_lines
        self.max_bytes = max_bytes
        self.reset()

    # -- state -------------------------------------------------------------

    def reset(self) -> None:
        """Forget everything: buffered bytes, the pending command, orphans."""
        self._buf = bytearray()
        self._pending: str | None = None
        self._own: frozenset[str] = frozenset()
        self._lines: list[str] = []
        self._size = 0  # bytes of self._lines
        self._echo_possible = False
        self._orphan: str | None = None
        self._swallowed = False
        self._carry_is_idle = False
        self._skip_to_eol = False
        self._queued: list[Event] = []

    @property
    def pending(self) -> str | None:
        """The command awaiting its final result code, if any."""
        return self._pending

    @property
    def orphan(self) -> str | None:
        """An abandoned command whose late reply is still expected, if any."""
        return self._orphan

    # -- caller actions ----------------------------------------------------

    def use_urcs(self, urcs: UrcTable) -> None:
        """Classify URCs with ``urcs`` from now on (the modem was identified)."""
        self.urcs = urcs

    def command(self, cmd: str) -> bytes:
        """Start ``cmd`` (e.g. ``"AT+CSQ"``) and return the bytes to write."""
        if self._pending is not None:
            raise AtBusy(f"{self._pending!r} is still pending")
        if "\r" in cmd or "\n" in cmd:
            raise ValueError("a command must not contain \\r or \\n")
        if not cmd.strip():
            raise ValueError("empty command")
        data = cmd.encode("ascii") + b"\r"  # UnicodeEncodeError is a ValueError
        # Bytes already buffered arrived before the command was written: the
        # line they start belongs to nobody's response.
        self._carry_is_idle = bool(self._buf)
        self._pending = cmd
        self._own = command_prefixes(cmd)
        self._lines = []
        self._size = 0
        self._echo_possible = True
        self._swallowed = False
        return data

    def abandon(self) -> None:
        """The caller's timeout fired: give up on the pending command."""
        if self._pending is None:
            return
        for line in self._lines:
            self._queued.append(Noise(line.encode("utf-8", "replace")))
        # If this command already swallowed a final as the previous orphan's,
        # that final was most likely its own: expect nothing more.
        self._orphan = None if self._swallowed else self._pending
        self._forget_pending()

    def _forget_pending(self) -> None:
        self._pending = None
        self._own = frozenset()
        self._lines = []
        self._size = 0
        self._echo_possible = False
        self._swallowed = False

    def _overflow(self, events: list[Event]) -> None:
        """The reply outgrew the caps: end the command, treat the rest as an orphan's."""
        assert self._pending is not None
        events.append(Overflow(self._pending, len(self._lines), self._size))
        # Whether or not this command swallowed an earlier orphan's final,
        # the lines were its own and its final code is still to come.
        self._orphan = self._pending
        self._forget_pending()

    def gap(self) -> None:
        """Bytes from the port were lost here (the caller dropped them).

        The line in progress is cut off, and whatever arrives up to the next
        line break is the tail of a line whose start is gone: both are noise,
        so two halves of different lines never join into one.
        """
        if self._buf:
            self._queued.append(Noise(bytes(self._buf)))
            self._buf = bytearray()
        self._carry_is_idle = False
        self._skip_to_eol = True

    def feed(self, data: bytes) -> list[Event]:
        """Consume bytes read from the port; return the events they complete."""
        events, self._queued = self._queued, []
        if self._skip_to_eol and data:
            m = _LINE_BREAK_B.search(data)
            if m is None:
                events.append(Noise(bytes(data)))
                return events
            if m.start():
                events.append(Noise(bytes(data[:m.start()])))
            data = data[m.end():]
            self._skip_to_eol = False
        self._buf += data
        if not self._buf:
            return events
        if b"\r" not in data and b"\n" not in data:
            # No line ended (the buffer never holds a terminator): just wait,
            # unless the line has grown past anything a modem sends.
            if len(self._buf) > MAX_LINE:
                events.append(Noise(bytes(self._buf)))
                self._buf = bytearray()
                self._carry_is_idle = False
            return events
        parts = _LINE_BREAK_B.split(bytes(self._buf))
        # The last part has no terminator yet: keep it for the next read.
        rest = parts.pop()
        for raw in parts:
            self._on_raw_line(raw, events)
        if len(rest) > MAX_LINE:
            events.append(Noise(rest))
            rest = b""
            self._carry_is_idle = False
        self._buf = bytearray(rest)
        return events

    # -- line handling -----------------------------------------------------

    def _on_raw_line(self, raw: bytes, events: list[Event]) -> None:
        carried = self._carry_is_idle
        self._carry_is_idle = False
        text, junk = _clean(raw)
        if junk:
            events.append(Noise(junk))
        if not text.strip():
            return
        if self._pending is None or carried:
            self._idle_line(text, events)
        else:
            self._pending_line(text, events)

    def _idle_line(self, text: str, events: list[Event]) -> None:
        line = text.strip()
        final = parse_final_line(text)
        if self._orphan is not None:
            if final is not None:
                events.append(Noise(line.encode("utf-8", "replace")))
                self._orphan = None
                return
            if self.urcs.rule_for(line) is not None:
                self._urc(line, events)
            else:
                events.append(Noise(line.encode("utf-8", "replace")))
            return
        if final is not None and final.kind in STRAY_KINDS:
            events.append(Noise(line.encode("utf-8", "replace")))
            return
        self._urc(line, events)

    def _pending_line(self, text: str, events: list[Event]) -> None:
        assert self._pending is not None
        line = text.strip()
        if self._echo_possible:
            cmd = self._pending.strip()
            head = line[:len(cmd)]
            if head.upper() == cmd.upper():
                self._echo_seen(events)
                line = line[len(cmd):].strip()
                if not line:
                    return
                text = line
        final = parse_final_line(text)
        if final is not None:
            if self._orphan is not None:
                # The abandoned command's final: it and the lines before it
                # are the orphan's, not ours.
                for old in self._lines:
                    events.append(Noise(old.encode("utf-8", "replace")))
                events.append(Noise(line.encode("utf-8", "replace")))
                self._lines = []
                self._size = 0
                self._orphan = None
                self._swallowed = True
                return
            events.append(Response(self._pending, tuple(self._lines), final))
            self._forget_pending()
            return
        if self.urcs.rule_for(line, self._own) is not None:
            self._urc(line, events)
            return
        # Our echo may still follow an orphan's late lines; otherwise the
        # first information line means the echo is off or already passed.
        if self._orphan is None:
            self._echo_possible = False
        self._lines.append(line)
        self._size += len(line.encode("utf-8", "replace"))
        if len(self._lines) > self.max_lines or self._size > self.max_bytes:
            self._overflow(events)

    def _echo_seen(self, events: list[Event]) -> None:
        self._echo_possible = False
        if self._orphan is not None:
            # Our echo proves the modem moved on: earlier lines were the
            # orphan's and its final is not coming any more.
            for old in self._lines:
                events.append(Noise(old.encode("utf-8", "replace")))
            self._lines = []
            self._size = 0
            self._orphan = None

    def _urc(self, line: str, events: list[Event]) -> None:
        urc = self.urcs.classify(line)
        if urc.kind == "boot":
            # A rebooted modem will not answer what it was asked before.
            self._orphan = None
        events.append(urc)
