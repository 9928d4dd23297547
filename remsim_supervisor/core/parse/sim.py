"""SIM and equipment answers of 3GPP TS 27.007: +CPIN, +CFUN, ICCID, IMEI, IMSI."""

from __future__ import annotations

import re
from dataclasses import dataclass

from remsim_supervisor.core.atcodes import parse_final_line
from remsim_supervisor.core.parse.common import (
    Text,
    dec,
    field_at,
    field_text,
    fields_after,
    split_fields,
    text_lines,
)

__all__ = ["Cfun", "identity_value", "parse_cfun", "parse_cpin", "parse_iccid", "parse_imei",
           "parse_imsi"]

# 27.007 <code> of +CPIN, by our names.
_CPIN_CODES = {
    "READY": "ready", "SIM PIN": "sim_pin", "SIM PUK": "sim_puk", "SIM PIN2": "sim_pin2",
    "SIM PUK2": "sim_puk2", "PH-SIM PIN": "ph_sim_pin", "PH-FSIM PIN": "ph_fsim_pin",
    "PH-FSIM PUK": "ph_fsim_puk", "PH-NET PIN": "ph_net_pin", "PH-NET PUK": "ph_net_puk",
    "PH-NETSUB PIN": "ph_netsub_pin", "PH-NETSUB PUK": "ph_netsub_puk",
    "PH-SP PIN": "ph_sp_pin", "PH-SP PUK": "ph_sp_puk", "PH-CORP PIN": "ph_corp_pin",
    "PH-CORP PUK": "ph_corp_puk",
    # Not 27.007, but what modems say when there is no usable SIM.
    "NOT INSERTED": "not_inserted", "SIM REMOVED": "not_inserted",
    "NOT READY": "not_ready", "EMPTY_EUICC": "empty_euicc", "EMPTY EUICC": "empty_euicc",
}
# +CME ERROR codes (27.007 9.2.1) and their verbose texts that answer AT+CPIN?.
_CPIN_CME = {
    10: "not_inserted", 11: "sim_pin", 12: "sim_puk", 13: "sim_failure", 14: "sim_busy",
    15: "sim_wrong", 17: "sim_pin2", 18: "sim_puk2",
}
_CPIN_CME_TEXT = {
    "SIM NOT INSERTED": "not_inserted", "SIM PIN REQUIRED": "sim_pin",
    "SIM PUK REQUIRED": "sim_puk", "SIM FAILURE": "sim_failure", "SIM BUSY": "sim_busy",
    "SIM WRONG": "sim_wrong", "SIM PIN2 REQUIRED": "sim_pin2", "SIM PUK2 REQUIRED": "sim_puk2",
}


def parse_cpin(text: Text, *, prefix: bool | None = None) -> str:
    """SIM lock state from a +CPIN answer, a bare code ("SIM PUK2") or the
    +CME ERROR that answered AT+CPIN? (10 / "SIM not inserted" ->
    "not_inserted", 14 -> "sim_busy", ...).

    Names: "ready", "sim_pin", "sim_puk", "sim_pin2", "sim_puk2",
    "ph_sim_pin", "ph_net_pin" (every 27.007 code, lower-cased, '-' and ' '
    -> '_'), "not_inserted", "not_ready", "empty_euicc" (an eUICC without a
    profile), "sim_failure", "sim_busy", "sim_wrong"; "unknown" otherwise.

    ``prefix`` (ModemManager's ``expect_cpin_prefix``): True reads only a
    "+CPIN:" line, False only a bare code, None (default) either.
    """
    lines = text_lines(text)
    for line in lines:
        final = parse_final_line(line)
        if final is not None:
            if final.kind == "cme_error":
                if final.code is not None:
                    return _CPIN_CME.get(final.code, "unknown")
                return _CPIN_CME_TEXT.get((final.message or "").upper(), "unknown")
            continue
        has_prefix = line[:6].upper() == "+CPIN:"
        if prefix is not None and has_prefix is not prefix:
            continue
        code = (line[6:] if has_prefix else line).strip().strip('"').strip().upper()
        if has_prefix:
            return _CPIN_CODES.get(code, "unknown")
        if code in _CPIN_CODES:
            return _CPIN_CODES[code]
    return "unknown"


@dataclass(frozen=True)
class Cfun:
    """+CFUN? answer: functionality level and ModemManager's power state."""

    fun: int
    extra: int | None   #: second number some firmwares add ("+CFUN: 1,0")
    power_state: str    #: "off" (0), "on" (1), "low" (4), "unknown" otherwise


_POWER = {0: "off", 1: "on", 4: "low"}


def parse_cfun(text: Text) -> Cfun | None:
    """+CFUN: <fun>[,<n>]."""
    f = fields_after(text, "+CFUN:")
    if f is None:
        return None
    fun = dec(field_at(f, 0))
    if fun is None:
        return None
    return Cfun(fun=fun, extra=dec(field_at(f, 1)), power_state=_POWER.get(fun, "unknown"))


# "+CCID:", "+ICCID:" and the vendors' spellings of an ICCID answer (a word
# ending in CCID, with or without a leading +, ^ or !), and +CRSM.
_ICCID_LINE = re.compile(r"\s*((?:[+^!]?[A-Z]*CCID|\+CRSM):)", re.IGNORECASE)


def parse_iccid(value: Text) -> str | None:
    """A valid ICCID from a raw value (or a +CCID/+ICCID/+CRSM reply line, or
    a vendor's ``...CCID:`` line), following ModemManager's mm_3gpp_parse_iccid: quotes and
    blanks around it are ignored; 19 or 20 characters of digits, where hex
    letters are allowed after the issuer prefix (operators such as CMCC use
    them); it must start with "89" (plain) or "98" (BCD nibbles swapped, as
    EF_ICCID is stored: the pairs are swapped back); a trailing 'F' filler is
    removed. None for anything else."""
    raw: str | None = None
    found = next((m for m in map(_ICCID_LINE.match, text_lines(value)) if m), None)
    if found is not None:
        prefix, body = found.group(1), found.string[found.end():]
        f = split_fields(body)
        # +CRSM: <sw1>,<sw2>,"<response>" (READ BINARY of EF_ICCID).
        raw = field_text(field_at(f, 2 if prefix.upper() == "+CRSM:" else 0))
    else:
        for line in text_lines(value):
            if parse_final_line(line) is None and not line.upper().startswith("AT"):
                raw = line
                break
    if raw is None:
        return None
    s = raw.strip().strip('"').strip().upper()
    if not 19 <= len(s) <= 20 or not s.isascii() or not s.isalnum():
        return None
    if any(c not in "0123456789ABCDEF" for c in s):
        return None
    if s.startswith("89"):
        out = s
    elif s.startswith("98"):
        if len(s) % 2:
            return None
        out = "".join(s[i + 1] + s[i] for i in range(0, len(s), 2))
    else:
        return None
    return out.removesuffix("F")


def _digits_line(lines: Text, prefixes: tuple[str, ...], lo: int, hi: int) -> str | None:
    for line in text_lines(lines):
        s = line
        for p in prefixes:
            if s[:len(p)].upper() == p:
                s = s[len(p):]
                break
        s = s.strip().strip('"').strip()
        if lo <= len(s) <= hi and s.isascii() and s.isdigit():
            return s
    return None


def parse_imei(lines: Text) -> str | None:
    """The IMEI (14-16 digits: with or without check digit, or IMEISV) from the
    reply of AT+CGSN / AT+GSN, with or without a "+CGSN:" prefix."""
    return _digits_line(lines, ("+CGSN:", "+GSN:", "+IMEI:"), 14, 16)


def parse_imsi(lines: Text) -> str | None:
    """The IMSI (6-15 digits) from the reply of AT+CIMI."""
    return _digits_line(lines, ("+CIMI:",), 6, 15)


def identity_value(lines: Text) -> str | None:
    """The value an identification command (AT+CGMI, AT+CGMM, AT+CGMR)
    answered: its first information line, without the "+CGMI:"-style prefix
    some firmwares put before it and without quotes; None when empty."""
    got = [ln for ln in text_lines(lines) if parse_final_line(ln) is None]
    if not got:
        return None
    line = got[0]
    if line.startswith("+") and ":" in line:
        line = line.split(":", 1)[1]
    return line.strip().strip('"').strip() or None
