"""Sans-I/O AT command engine: bytes from the modem in, events out.

The engine never touches a port and never reads a clock (the h11 pattern).
The caller writes what :meth:`AtEngine.command` returns, hands every byte it
reads to :meth:`AtEngine.feed`, and gets back a list of events:

* :class:`Response` -- the pending command finished: its information lines
  and the :class:`Final` result code that ended it;
* :class:`Urc` -- an unsolicited result code line (``RDY``, ``+CEREG: 1``...);
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
begins with a URC prefix is a :class:`Urc` *unless* it carries the pending
command's own prefix (``+CEREG: 2,1`` answers ``AT+CEREG?``); a final result
code (see :func:`parse_final_line`) completes the :class:`Response`; every
other line is an information line. With nothing pending every line is a URC,
except a stray ``OK``/``ERROR``-type final, which is noise.

Timeouts are the caller's: when its timer fires it calls :meth:`abandon`.
The abandoned command becomes an *orphan*: the first final result code that
arrives afterwards, together with the information lines before it, is
swallowed as :class:`Noise` instead of being credited to the next command --
unless the next command's echo is seen first, which proves the orphan's reply
is not coming. If the next command also times out after having swallowed a
final, that final was probably its own, so no new orphan is recorded; this
stops a lost final from shifting every later reply by one. A boot URC
(``RDY``, ``^SYSSTART``) also clears the orphan: a rebooted modem answers
nothing it was asked before. :meth:`reset` drops all state (port
reopened); :meth:`gap` says that bytes were lost (the caller dropped them):
the partial line around the gap is noise.

Out of scope: V0 (numeric) result codes, the ``>`` prompt of ``AT+CMGS``, and
data mode after ``CONNECT`` (the caller stops feeding the engine).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeAlias

__all__ = [
    "DEFAULT_URC_PREFIXES",
    "ERROR_KINDS",
    "FINAL_KINDS",
    "MAX_LINE",
    "MAX_RESPONSE_BYTES",
    "MAX_RESPONSE_LINES",
    "AtBusy",
    "AtEngine",
    "Event",
    "Final",
    "Noise",
    "Overflow",
    "Response",
    "Urc",
    "command_prefixes",
    "find_final",
    "is_urc_line",
    "parse_final_line",
    "split_lines",
    "strip_echo",
]

#: Longest line kept while waiting for its terminator. ``AT+COPS=?`` answers
#: run to about 1 KiB; anything far beyond that is a runaway binary stream.
MAX_LINE = 8192

#: Most information lines one response may carry. The longest real answers
#: (``AT+CLAC`` lists a few hundred commands) stay well inside it.
MAX_RESPONSE_LINES = 1024

#: Most bytes (of information lines) one response may carry.
MAX_RESPONSE_BYTES = 64 * 1024

#: Every value of :attr:`Final.kind`.
FINAL_KINDS = frozenset({
    "ok",             # OK
    "connect",        # CONNECT [text]; the port switches to data mode
    "error",          # ERROR
    "cme_error",      # +CME ERROR: <n> | <text>
    "cms_error",      # +CMS ERROR: <n> | <text>
    "no_carrier",     # NO CARRIER
    "busy",           # BUSY
    "no_answer",      # NO ANSWER
    "no_dialtone",    # NO DIALTONE (also the spelling NO DIAL TONE)
    "not_supported",  # COMMAND NOT SUPPORT (Huawei, ZTE), COMMAND NOT SUPPORTED
    "modem_error",    # MODEM ERROR: <n> (Option/Sierra legacy)
})

#: The kinds that are not errors; :attr:`Final.is_error` is true for the rest.
_SUCCESS_KINDS = frozenset({"ok", "connect"})
ERROR_KINDS = FINAL_KINDS - _SUCCESS_KINDS

# Whole-line final result codes (V.250 verbose form, plus vendor spellings).
_FINAL_WORDS = {
    "OK": "ok",
    "ERROR": "error",
    "NO CARRIER": "no_carrier",
    "BUSY": "busy",
    "NO ANSWER": "no_answer",
    "NO DIALTONE": "no_dialtone",
    "NO DIAL TONE": "no_dialtone",
    "COMMAND NOT SUPPORT": "not_supported",
    "COMMAND NOT SUPPORTED": "not_supported",
}

# Finals that, arriving with nothing pending, are leftovers rather than news.
# NO CARRIER, BUSY, RING-like codes stay URCs: V.250 sends them unsolicited.
_STRAY_KINDS = frozenset({"ok", "error", "cme_error", "cms_error", "modem_error",
                          "not_supported", "connect"})

#: Lines that begin with one of these are unsolicited while a command is
#: pending (unless the command carries the same prefix). Sources: 3GPP TS
#: 27.007 and ModemManager's plugins; the vendor ones are for the modems in
#: spec/MODEMS.md. Prefixes with no colon match a whole word (``RDY``).
#: ``+GTSIMINS:`` (Fibocom SIM insertion) and ``+ESIMS:``/``+XSIM:`` (MediaTek,
#: Intel SIM status) are unverified against a manual: listing them is harmless
#: because a command's own prefix always wins. ``+QSTAT`` is left out: no
#: public source shows Quectel sending it unsolicited.
DEFAULT_URC_PREFIXES: tuple[str, ...] = (
    # boot and power
    "RDY", "^SYSSTART", "POWERED DOWN",
    # registration and packet domain (27.007)
    "+CREG:", "+CGREG:", "+CEREG:", "+C5GREG:", "+CGEV:",
    # SIM
    "+CPIN:", "+QUSIM:", "+QSIMSTAT:", "+SIM READY", "+SIM:", "+SIM DROP",
    "^SIMST:", "+GTSIMINS:", "+ESIMS:", "+XSIM:",
    "+CFUN:", "+QIND:", "+STKPCI:", "^STIN:",
    # signal and mode (Huawei, Intel)
    "^MODE:", "^RSSI:", "^HCSQ:", "^SRVST:", "^CSNR:", "^RSSILVL:", "^HRSSILVL:",
    "+XCESQI:", "+CIEV:",
    # time
    "+CTZV:", "+CTZE:", "+CTZDST:", "+NITZ", "^NWTIME:", "+XNITZINFO:",
    # messages and calls
    "+CMTI:", "+CDSI:", "+CMT:", "+CDS:", "+CBM:", "+CUSD:",
    "+CRING:", "RING", "+CLIP:", "+CCWA:", "^ORIG:", "^CONF:", "^CONN:", "^CEND:",
    # data path and housekeeping
    "^NDISSTAT:", "^DSFLOWRPT:", "^BOOT:", "+QNETDEVSTATUS:", "+QIURC:",
    "+QGPSURC:", "+QTONEDET:",
)

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_LINE_BREAK_B = re.compile(rb"\r\n|\r|\n")
# Characters that never belong in an AT text line (tab is tolerated).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_PREFIX_OF_PART = re.compile(r"\s*([+^$!%#*@&][A-Za-z0-9_]+)")
_BOOT_URCS = frozenset({"RDY", "^SYSSTART"})
# Longest decimal code accepted: keeps int() far from huge-string limits.
_MAX_DIGITS = 9


@dataclass(frozen=True)
class Final:
    """The final result code that ended a command."""

    text: str            #: the line as received, stripped: "+CME ERROR: 10", "OK"
    kind: str            #: one of :data:`FINAL_KINDS`
    code: int | None     #: numeric code of +CME/+CMS/MODEM ERROR when numeric
    message: str | None  #: text of a verbose +CME/+CMS ERROR, or CONNECT's text

    @property
    def is_error(self) -> bool:
        return self.kind not in _SUCCESS_KINDS


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
class Urc:
    """An unsolicited result code line, stripped."""

    line: str


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


def _decimal(text: str) -> int | None:
    t = text.strip()
    if t and len(t) <= _MAX_DIGITS and t.isascii() and t.isdigit():
        return int(t)
    return None


def parse_final_line(line: str) -> Final | None:
    """The final result code on this one line, or None if it is not one.

    ``+CME ERROR:`` / ``+CMS ERROR:`` with nothing at all after the colon is
    not a final result (as in ModemManager's parser); with a space and no text
    it is, with neither code nor message. ``MODEM ERROR:`` needs a number.
    """
    # Trailing blanks matter for "+CME ERROR: " versus "+CME ERROR:".
    s = line.lstrip(" \t\r\n")
    t = s.rstrip(" \t\r\n")
    kind = _FINAL_WORDS.get(t)
    if kind is not None:
        return Final(t, kind, None, None)
    if t == "CONNECT" or t.startswith("CONNECT "):
        return Final(t, "connect", None, t[8:].strip() or None)
    for prefix, err_kind in (("+CME ERROR:", "cme_error"), ("+CMS ERROR:", "cms_error")):
        if s.startswith(prefix):
            rest = s[len(prefix):]
            if not rest:
                return None
            body = rest.strip()
            code = _decimal(body)
            if code is not None:
                return Final(t, err_kind, code, None)
            return Final(t, err_kind, None, body or None)
    if t.startswith("MODEM ERROR:"):
        code = _decimal(t[len("MODEM ERROR:"):])
        if code is not None:
            return Final(t, "modem_error", code, None)
    return None


def split_lines(text: str) -> list[str]:
    """Lines of ``text`` split at \\r\\n, \\r or \\n, stripped, empty ones dropped."""
    return [s for s in (p.strip() for p in _LINE_BREAK.split(text)) if s]


def find_final(text: str) -> Final | None:
    """The first final result code in ``text`` (which ends the command), if any.

    Anything after it (URCs, stray text) belongs to nobody's response.
    """
    for part in _LINE_BREAK.split(text):
        final = parse_final_line(part)
        if final is not None:
            return final
    return None


def strip_echo(text: str, command: str | None = None) -> str:
    """``text`` without the command echo at its start.

    With ``command``: only an exact echo (case-insensitive) is removed, with
    the ``\\r`` characters the modem repeats after it; the line break that
    follows is kept. Without ``command`` (ModemManager's rule): everything
    before the first ``\\r\\n`` is taken for echo or garbage and removed,
    unless the text starts with a line break (then nothing precedes it).
    """
    if command is not None:
        n = len(command)
        if n and text[:n].lower() == command.lower():
            rest = text[n:]
            # The echo ends with the \r we sent; keep one line break after it.
            while rest.startswith("\r") and not rest.startswith("\r\n"):
                rest = rest[1:]
            return rest
        return text
    if len(text) <= 2 or text[0] in "\r\n":
        # A reply that starts with a line break has nothing in front of it.
        return text
    i = text.find("\r\n")
    return text[i:] if i > 0 else text


def command_prefixes(command: str) -> frozenset[str]:
    """Response prefixes of a command line: ``AT+CEREG?`` -> {"+CEREG"}.

    Concatenated commands (``AT+CSQ;+CREG?``) give one prefix per command;
    basic commands (``ATI``, ``ATE0``) have none.
    """
    body = command.strip()
    if body[:2].upper() == "AT":
        body = body[2:]
    out = set()
    for part in body.split(";"):
        m = _PREFIX_OF_PART.match(part)
        if m:
            out.add(m.group(1).upper())
    return frozenset(out)


def _line_head(line: str) -> str:
    return line.split(":", 1)[0].strip().upper()


def is_urc_line(line: str, prefixes: Iterable[str] = DEFAULT_URC_PREFIXES,
                own: frozenset[str] = frozenset()) -> bool:
    """Whether ``line`` is unsolicited while a command with prefixes ``own`` runs."""
    s = line.strip()
    if not s:
        return False
    if own and _line_head(s) in own:
        return False
    return _matches(s.upper(), tuple(p.upper() for p in prefixes))


def _matches(upper_line: str, prefixes: tuple[str, ...]) -> bool:
    for p in prefixes:
        if upper_line.startswith(p):
            if p.endswith(":") or len(upper_line) == len(p):
                return True
            # A word prefix ("RDY", "RING") must not match "RINGTONE".
            nxt = upper_line[len(p)]
            if not (nxt.isalnum() or nxt == "_"):
                return True
    return False


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

    def __init__(self, urc_prefixes: Iterable[str] = DEFAULT_URC_PREFIXES, *,
                 max_lines: int = MAX_RESPONSE_LINES,
                 max_bytes: int = MAX_RESPONSE_BYTES) -> None:
        prefixes = tuple(p.strip().upper() for p in urc_prefixes)
        if any(not p for p in prefixes):
            raise ValueError("empty URC prefix")
        if max_lines < 1 or max_bytes < 1:
            raise ValueError("the response caps must be positive")
        self._urc_prefixes = prefixes
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
            if self._is_urc(line, frozenset()):
                self._urc(line, events)
            else:
                events.append(Noise(line.encode("utf-8", "replace")))
            return
        if final is not None and final.kind in _STRAY_KINDS:
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
        if self._is_urc(line, self._own):
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

    def _is_urc(self, line: str, own: frozenset[str]) -> bool:
        if own and _line_head(line) in own:
            return False
        return _matches(line.upper(), self._urc_prefixes)

    def _urc(self, line: str, events: list[Event]) -> None:
        if line.upper() in _BOOT_URCS:
            # A rebooted modem will not answer what it was asked before.
            self._orphan = None
        events.append(Urc(line))
