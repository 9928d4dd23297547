"""AT result codes and line plumbing: what ends a command, how replies split.

Pure text functions the AT engine and the parsers share: the final result
codes of V.250 and 3GPP TS 27.007 (:class:`Final`, :func:`parse_final_line`),
line splitting, echo removal and a command's response prefixes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "ERROR_KINDS",
    "FINAL_KINDS",
    "STRAY_KINDS",
    "Final",
    "command_prefixes",
    "find_final",
    "parse_final_line",
    "split_lines",
    "strip_echo",
]

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
    "not_supported",  # COMMAND NOT SUPPORT (some vendors' spelling), COMMAND NOT SUPPORTED
    "modem_error",    # MODEM ERROR: <n> (older vendor firmwares)
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

#: Finals that, arriving with nothing pending, are leftovers rather than news.
#: NO CARRIER, BUSY, RING-like codes stay URCs: V.250 sends them unsolicited.
STRAY_KINDS = frozenset({"ok", "error", "cme_error", "cms_error", "modem_error",
                          "not_supported", "connect"})

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_PREFIX_OF_PART = re.compile(r"\s*([+^$!%#*@&][A-Za-z0-9_]+)")
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

