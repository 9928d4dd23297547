"""Pure parsers for modem answers: text in, frozen dataclasses out.

Each ``parse_*`` function takes either one line, a whole reply (echo, blank
lines and the final ``OK`` included) or the information lines of a
:class:`~remsim_supervisor.core.at.Response`, finds the line carrying its
prefix (``+CEREG:``, ``^HCSQ:``...) and returns a frozen dataclass -- or
``None`` when the text is not something it can read. No parser raises on any
string: garbage in, ``None`` (or the documented "unknown" value) out.

Conventions, so that callers can rely on them:

* LAC, TAC and cell ids are hexadecimal in the text and ints here.
* Signal values derived from raw levels are dataclass *fields* named
  ``*_dbm`` / ``*_db`` (``None`` when the raw value means "not known"), so
  ``dataclasses.asdict`` of any signal result lists them.
* Access technologies use one vocabulary (:data:`ACCESS_TECH_NAMES`): gsm,
  gsm_compact, umts, edge, hsdpa, hsupa, hspa, lte, lte_cat_m, lte_nb_iot,
  nr5g, nr5g_nsa (E-UTRA-NR dual connectivity), cdma, evdo, tdscdma, unknown.
* Registration states use ModemManager's names (:data:`REG_STATES`).

The mappings follow 3GPP TS 27.007 and, where modems bend it, ModemManager's
helpers (registration field layouts, +CESQ levels, ICCID validation, +CGEV
event names) and the vendors' manuals (Quectel +QCSQ/+QENG, Huawei ^HCSQ/
^SYSINFO(EX), Intel +XCESQ, Fibocom +GTRNDIS). Each parser's docstring says
which quirks it absorbs.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, TypeAlias

from remsim_supervisor.core.at import Final, find_final, parse_final_line, split_lines

__all__ = [
    "ACCESS_TECH_NAMES", "REG_STATES", "AtError", "Ati", "Cesq", "Cfun", "Cgact",
    "Cgcontrdp", "Cgev", "CmeError", "CmsError", "CommandError", "Cops", "Csq",
    "Gtrndis", "Hcsq", "PdpContext", "Qcsq", "Qdsim", "Qsimstat", "Registration",
    "ServingCell", "Sysinfo", "Sysinfoex", "Xcesq", "access_tech_from_act",
    "access_tech_from_name", "classify_urc", "parse_ati", "parse_cesq", "parse_cfun",
    "parse_cgact", "parse_cgcontrdp", "parse_cgcontrdp_all", "parse_cgdcont",
    "parse_cgev", "parse_cops", "parse_cpin", "parse_csq", "parse_error", "parse_gtrndis",
    "parse_hcsq", "parse_iccid", "parse_imei", "parse_imsi", "parse_qcsq", "parse_qdsim",
    "parse_qeng_servingcell", "parse_qsimstat", "parse_registration", "parse_sysinfo",
    "parse_sysinfoex", "parse_xcesq",
]

#: A whole reply, one line, or the information lines of a Response.
Text: TypeAlias = "str | Sequence[str]"

_MAX_DIGITS = 18  # far below int()'s string-length limit, above any AT value


# --------------------------------------------------------------------------
# Field plumbing shared by the parsers


class _Field(NamedTuple):
    value: str    # stripped, quotes removed
    quoted: bool  # the field had quotes: a string, never a bare number


def _lines(text: Text) -> list[str]:
    if isinstance(text, str):
        return split_lines(text)
    out: list[str] = []
    for item in text:
        if isinstance(item, str):
            out.extend(split_lines(item))
    return out


def _after_prefix(text: Text, *prefixes: str) -> tuple[str, str] | None:
    """(prefix as given, rest of line) for the first line starting with a prefix."""
    for line in _lines(text):
        for prefix in prefixes:
            if line[:len(prefix)].upper() == prefix.upper():
                return prefix, line[len(prefix):].strip()
    return None


def _fields(body: str) -> list[_Field]:
    """Split at commas outside double quotes; strip blanks and quotes."""
    out: list[_Field] = []
    cur: list[str] = []
    in_quotes = quoted = False
    for ch in body:
        if ch == '"':
            in_quotes = not in_quotes
            quoted = True
        elif ch == "," and not in_quotes:
            out.append(_Field("".join(cur).strip(), quoted))
            cur, quoted = [], False
        else:
            cur.append(ch)
    out.append(_Field("".join(cur).strip(), quoted))
    return out


def _dec(f: _Field | str | None) -> int | None:
    """A non-negative decimal integer (quoted fields accepted), else None."""
    if f is None:
        return None
    s = f.value if isinstance(f, _Field) else f.strip().strip('"').strip()
    if s and len(s) <= _MAX_DIGITS and s.isascii() and s.isdigit():
        return int(s)
    return None


def _sint(f: _Field | str | None) -> int | None:
    """A signed decimal integer, else None ('-' alone = not available)."""
    if f is None:
        return None
    s = f.value if isinstance(f, _Field) else f.strip().strip('"').strip()
    neg = s.startswith("-")
    digits = s[1:] if neg or s.startswith("+") else s
    if digits and len(digits) <= _MAX_DIGITS and digits.isascii() and digits.isdigit():
        return -int(digits) if neg else int(digits)
    return None


_HEX_RUN = re.compile(r"[0-9A-Fa-f]+")


def _hex(f: _Field | str | None) -> int | None:
    """Leading hex digits of a field ("0 5" -> 0, like strtoul), else None."""
    if f is None:
        return None
    s = f.value if isinstance(f, _Field) else f.strip().strip('"').strip()
    m = _HEX_RUN.match(s)
    if not m or len(m.group()) > _MAX_DIGITS:
        return None
    return int(m.group(), 16)


def _str(f: _Field | None) -> str | None:
    return f.value if f is not None and f.value else None


def _at(fields: Sequence[_Field | None], i: int) -> _Field | None:
    return fields[i] if 0 <= i < len(fields) else None


# --------------------------------------------------------------------------
# Access technologies

#: The access technology vocabulary used by every parser.
ACCESS_TECH_NAMES = frozenset({
    "gsm", "gsm_compact", "gprs", "umts", "edge", "hsdpa", "hsupa", "hspa", "hspa_plus",
    "lte", "lte_cat_m", "lte_nb_iot", "nr5g", "nr5g_nsa", "cdma", "evdo", "tdscdma",
    "unknown",
})

# 27.007 <AcT>. 8 (EC-GSM-IoT) is GSM and 10 (E-UTRA on a 5G core) is LTE, as
# ModemManager maps them; 13 is E-UTRA-NR dual connectivity (5G NSA).
_ACT = {
    0: "gsm", 1: "gsm_compact", 2: "umts", 3: "edge", 4: "hsdpa", 5: "hsupa",
    6: "hspa", 7: "lte", 8: "gsm", 9: "lte_nb_iot", 10: "lte", 11: "nr5g",
    12: "nr5g", 13: "nr5g_nsa",
}


def access_tech_from_act(act: int | None) -> str:
    """27.007 ``<AcT>`` number to our name; "unknown" when absent or unlisted."""
    return _ACT.get(act, "unknown") if act is not None else "unknown"


# Names modems print (^HCSQ, +QCSQ, +QENG, ^SYSINFOEX, +COPS?): upper-cased,
# with blanks, dashes and underscores removed before the lookup.
_TECH_NAMES = {
    "GSM": "gsm", "GPRS": "gprs", "EDGE": "edge", "UMTS": "umts", "WCDMA": "umts",
    "HSDPA": "hsdpa", "HSUPA": "hsupa", "HSPA": "hspa", "HSPA+": "hspa_plus",
    "DCHSPA+": "hspa_plus", "HSPAP": "hspa_plus", "LTE": "lte", "4G": "lte", "FDDLTE": "lte",
    "TDDLTE": "lte", "CATM": "lte_cat_m", "CATM1": "lte_cat_m", "EMTC": "lte_cat_m",
    "CATNB": "lte_nb_iot", "CATNB1": "lte_nb_iot", "NBIOT": "lte_nb_iot",
    "NR5G": "nr5g", "NR5GSA": "nr5g", "NR": "nr5g", "5G": "nr5g", "NR5GNSA": "nr5g_nsa",
    "ENDC": "nr5g_nsa", "TDSCDMA": "tdscdma", "CDMA": "cdma", "CDMA1X": "cdma",
    "EVDO": "evdo", "HDR": "evdo",
}


def access_tech_from_name(name: str | None) -> str:
    """A technology name as modems print it ("WCDMA", "CAT-M1") to ours."""
    if not name:
        return "unknown"
    key = re.sub(r"[\s_\-]", "", name.strip().strip('"')).upper()
    return _TECH_NAMES.get(key, "unknown")


# --------------------------------------------------------------------------
# Registration: +CREG / +CGREG / +CEREG / +C5GREG

#: 27.007 <stat> 0..11 by ModemManager's names.
REG_STATES = (
    "idle", "home", "searching", "denied", "unknown", "roaming", "home_sms_only",
    "roaming_sms_only", "emergency_only", "home_csfb_not_preferred",
    "roaming_csfb_not_preferred", "attached_rlos",
)
_REGISTERED = frozenset({
    "home", "roaming", "home_sms_only", "roaming_sms_only",
    "home_csfb_not_preferred", "roaming_csfb_not_preferred",
})


@dataclass(frozen=True)
class Registration:
    """One +CREG/+CGREG/+CEREG/+C5GREG report (query answer or URC)."""

    kind: str            #: "CREG", "CGREG", "CEREG" or "C5GREG"
    n: int | None        #: the <n> setting, present only in query answers
    stat: int            #: 27.007 <stat>
    state: str           #: :data:`REG_STATES` name of ``stat``
    lac: int | None      #: LAC (CREG/CGREG) or TAC (CEREG/C5GREG)
    ci: int | None       #: cell id
    act: int | None      #: raw <AcT>
    access_tech: str     #: name of ``act``, "unknown" when absent
    is_urc: bool         #: unsolicited (see :func:`parse_registration`)

    @property
    def registered(self) -> bool:
        """Home or roaming, SMS-only and CSFB-not-preferred variants included."""
        return self.state in _REGISTERED


_REG_PREFIXES = ("+CREG:", "+CGREG:", "+CEREG:", "+C5GREG:")


def _unquoted_dec(f: _Field | None, top: int) -> int | None:
    if f is None or f.quoted:
        return None
    v = _dec(f)
    return v if v is not None and v <= top else None


def _stat_ok(f: _Field | None) -> bool:
    return _unquoted_dec(f, 11) is not None


def _n_ok(f: _Field | None) -> bool:
    return _unquoted_dec(f, 5) is not None


def _act_ok(f: _Field | None) -> bool:
    return _unquoted_dec(f, 13) is not None


def _looks_like_stat(f: _Field) -> bool:
    # A <stat> is a short bare decimal; "0001" or "1F00" is a LAC.
    return _stat_ok(f) and len(f.value) <= 3


# (n, stat, lac, ci, act) positions; None = absent.
_Layout = tuple[int | None, int, int | None, int | None, int | None]


def _reg_layout(kind: str, f: list[_Field]) -> _Layout | None:
    """Which field is which. The text does not say whether <n> is there, so
    both readings are tried: a reading is possible when its <n> is 0..5 and
    its <stat> 0..11 (bare decimals), and its <AcT>, if any, a bare 0..13.
    When both are possible a short bare decimal in the second field is a
    <stat> ("2,1,..."), a longer or quoted one a LAC ("1,0001,...")."""
    count = len(f)
    if count == 1:
        return (None, 0, None, None, None)
    if count == 2:
        return (0, 1, None, None, None)
    if count == 3:
        return (None, 0, 1, 2, None)
    # Readings with and without <n>: (n, stat, lac, ci, act) index tuples.
    with_n: _Layout = (0, 1, 2, 3, 4 if count > 4 else None)
    without: _Layout = (None, 0, 1, 2, 3)
    if kind == "CEREG" and count == 5:
        # Some modems put a RAC before the cell id: <stat>,<tac>,<rac>,<ci>,<AcT>.
        without = (None, 0, 1, 3, 4)
    if kind == "CEREG" and count == 6:
        # ... and, in query answers, <n>,<stat>,<tac>,<rac>,<ci>,<AcT>.
        with_n = (0, 1, 2, 4, 5)
    ok_with = _n_ok(f[0]) and _stat_ok(f[1])
    act_i = without[4]
    ok_without = _stat_ok(f[0]) and (act_i is None or _act_ok(_at(f, act_i)))
    if ok_with and ok_without:
        return with_n if _looks_like_stat(f[1]) else without
    if ok_with:
        return with_n
    if ok_without:
        return without
    return None


def parse_registration(text: Text, *, unsolicited: bool | None = None) -> Registration | None:
    """The first +CREG/+CGREG/+CEREG/+C5GREG report in ``text``.

    All <n> forms of query answers and URCs are read, with quoted or bare hex
    LAC/TAC/CI, blanks around fields, zero-padded numbers, the CEREG "RAC"
    variant and C5GREG's NSSAI fields. ``is_urc`` cannot always be told from
    the text (some modems send <n> in URCs): pass ``unsolicited`` when the
    caller knows; otherwise a report without <n> counts as a URC.
    """
    found = _after_prefix(text, *_REG_PREFIXES)
    if found is None:
        return None
    prefix, body = found
    kind = prefix[1:-1].upper()
    f = _fields(body)
    if not f or not f[0].value:
        return None
    layout = _reg_layout(kind, f)
    if layout is None:
        return None
    i_n, i_stat, i_lac, i_ci, i_act = layout
    stat = _dec(_at(f, i_stat))
    if stat is None or stat > 11:
        return None
    n = _dec(_at(f, i_n)) if i_n is not None else None
    lac = _hex(_at(f, i_lac)) if i_lac is not None else None
    ci = _hex(_at(f, i_ci)) if i_ci is not None else None
    act_f = _at(f, i_act) if i_act is not None else None
    act = _unquoted_dec(act_f, 99) if act_f is not None else None
    return Registration(
        kind=kind, n=n, stat=stat, state=REG_STATES[stat], lac=lac, ci=ci, act=act,
        access_tech=access_tech_from_act(act),
        is_urc=(n is None) if unsolicited is None else unsolicited,
    )


# --------------------------------------------------------------------------
# Signal quality


@dataclass(frozen=True)
class Csq:
    """+CSQ: raw <rssi>/<ber> and the RSSI in dBm (None when unknown)."""

    rssi: int
    ber: int | None
    rssi_dbm: int | None


def parse_csq(text: Text) -> Csq | None:
    """+CSQ: <rssi>,<ber>. 0..31 -> -113 + 2*rssi dBm; 100..191 (TD-SCDMA)
    -> rssi - 216 dBm; 99 and 199 are "not known"."""
    found = _after_prefix(text, "+CSQ:")
    if found is None:
        return None
    f = _fields(found[1])
    rssi = _dec(_at(f, 0))
    if rssi is None:
        return None
    if rssi <= 31:
        dbm: int | None = -113 + 2 * rssi
    elif 100 <= rssi <= 191:
        dbm = rssi - 216
    else:
        dbm = None
    return Csq(rssi=rssi, ber=_dec(_at(f, 1)), rssi_dbm=dbm)


def _level(value: int | None, top: int, base: float, step: float) -> float | None:
    if value is None or value < 0 or value > top:
        return None
    return base + value * step


@dataclass(frozen=True)
class Cesq:
    """+CESQ levels and the values they stand for (3GPP TS 27.007 8.69).

    Derived values follow ModemManager: RSSI = -111 + rxlev dBm, RSCP = -121 +
    level dBm, Ec/No = -24.5 + level/2 dB, RSRQ = -20 + level/2 dB, RSRP = -141
    + level dBm; the UMTS RSSI is RSCP - Ec/No. 99/255 give None.
    """

    rxlev: int
    ber: int
    rscp_level: int
    ecn0_level: int
    rsrq_level: int
    rsrp_level: int
    rssi_dbm: float | None       #: GSM RSSI
    rscp_dbm: float | None
    ecio_db: float | None
    umts_rssi_dbm: float | None
    rsrq_db: float | None
    rsrp_dbm: float | None

    @property
    def has_gsm(self) -> bool:
        return self.rssi_dbm is not None

    @property
    def has_umts(self) -> bool:
        return self.rscp_dbm is not None or self.ecio_db is not None

    @property
    def has_lte(self) -> bool:
        return self.rsrq_db is not None or self.rsrp_dbm is not None


def _cesq_values(levels: Sequence[int]) -> dict[str, float | None]:
    rxlev, _ber, rscp_l, ecn0_l, rsrq_l, rsrp_l = levels
    rscp = _level(rscp_l, 96, -121.0, 1.0)
    ecio = _level(ecn0_l, 49, -24.5, 0.5)
    return {
        "rssi_dbm": _level(rxlev, 63, -111.0, 1.0),
        "rscp_dbm": rscp,
        "ecio_db": ecio,
        "umts_rssi_dbm": rscp - ecio if rscp is not None and ecio is not None else None,
        "rsrq_db": _level(rsrq_l, 34, -20.0, 0.5),
        "rsrp_dbm": _level(rsrp_l, 97, -141.0, 1.0),
    }


def parse_cesq(text: Text) -> Cesq | None:
    """+CESQ: <rxlev>,<ber>,<rscp>,<ecno>,<rsrq>,<rsrp> (blank after ':' optional)."""
    found = _after_prefix(text, "+CESQ:")
    if found is None:
        return None
    levels = [_dec(x) for x in _fields(found[1])]
    if len(levels) < 6 or any(v is None for v in levels[:6]):
        return None
    vals = [v for v in levels[:6] if v is not None]
    return Cesq(vals[0], vals[1], vals[2], vals[3], vals[4], vals[5], **_cesq_values(vals))


@dataclass(frozen=True)
class Xcesq(Cesq):
    """Intel/Fibocom L850 +XCESQ: +CESQ's levels plus <n> and the LTE RS-SNR.

    RS-SNR level -100..100 is in half dB (ModemManager's rule); 255 = unknown.
    """

    n: int | None = None
    rssnr_level: int | None = None
    rssnr_db: float | None = None


def parse_xcesq(text: Text) -> Xcesq | None:
    """+XCESQ: <n>,<rxlev>,<ber>,<rscp>,<ecno>,<rsrq>,<rsrp>,<rssnr> (query) or
    +XCESQI: the same without <n> (URC)."""
    found = _after_prefix(text, "+XCESQ:", "+XCESQI:")
    if found is None:
        return None
    prefix, body = found
    raw = [_sint(x) for x in _fields(body)]
    n: int | None = None
    if prefix.upper() == "+XCESQ:":
        if len(raw) < 8:
            return None
        n, raw = raw[0], raw[1:]
    if len(raw) < 7 or any(v is None or v < 0 for v in raw[:6]) or raw[6] is None:
        return None
    vals = [v for v in raw[:6] if v is not None]
    snr = raw[6]
    snr_db = snr / 2.0 if snr is not None and -100 <= snr <= 100 else None
    return Xcesq(vals[0], vals[1], vals[2], vals[3], vals[4], vals[5], **_cesq_values(vals),
                 n=n, rssnr_level=snr, rssnr_db=snr_db)


@dataclass(frozen=True)
class Qcsq:
    """Quectel +QCSQ: the system mode and its values in dBm / dB.

    Layouts by sysmode: GSM <rssi>; WCDMA/TDSCDMA <rssi>,<rscp>,<ecio>;
    LTE/CAT-M1/CAT-NB1/eMTC/NBIoT <rssi>,<rsrp>,<sinr>,<rsrq>; NR5G
    <rsrp>,<sinr>,<rsrq>. SINR is reported raw: dB = raw/5 - 20 (Quectel).
    Some firmwares (EG21-G) print the LTE RSSI as a positive magnitude; it is
    negated, since no received power is above 0 dBm.
    """

    sysmode: str
    access_tech: str
    values: tuple[int, ...]
    rssi_dbm: int | None
    rsrp_dbm: int | None
    sinr_raw: int | None
    sinr_db: float | None
    rsrq_db: int | None
    rscp_dbm: int | None
    ecio_db: int | None
    rssi_raw: int | None  #: RSSI as printed (positive on some firmwares)


_LTE_QCSQ = ("rssi", "rsrp", "sinr", "rsrq")
_QCSQ_LAYOUT = {
    "GSM": ("rssi",), "WCDMA": ("rssi", "rscp", "ecio"), "TDSCDMA": ("rssi", "rscp", "ecio"),
    "LTE": _LTE_QCSQ, "CATM1": _LTE_QCSQ, "CATM": _LTE_QCSQ, "CATNB1": _LTE_QCSQ,
    "CATNB": _LTE_QCSQ, "EMTC": _LTE_QCSQ, "NBIOT": _LTE_QCSQ,
    "NR5G": ("rsrp", "sinr", "rsrq"), "NOSERVICE": (),
}


def _norm_mode(mode: str) -> str:
    return re.sub(r"[\s_\-]", "", mode).upper()


def parse_qcsq(text: Text) -> Qcsq | None:
    """+QCSQ: "<sysmode>"[,<values>...] (see :class:`Qcsq`)."""
    found = _after_prefix(text, "+QCSQ:")
    if found is None:
        return None
    f = _fields(found[1])
    mode = f[0].value
    layout = _QCSQ_LAYOUT.get(_norm_mode(mode))
    if not mode or layout is None:
        return None
    values = tuple(_sint(x) for x in f[1:])
    if any(v is None for v in values[:len(layout)]) or len(values) < len(layout):
        return None
    got = {name: values[i] for i, name in enumerate(layout)}
    rssi = got.get("rssi")
    if rssi is not None and rssi > 0:
        rssi = -rssi
    sinr = got.get("sinr")
    return Qcsq(
        sysmode=mode, access_tech=access_tech_from_name(mode),
        values=tuple(v for v in values if v is not None),
        rssi_dbm=rssi, rsrp_dbm=got.get("rsrp"), sinr_raw=sinr,
        sinr_db=round(sinr / 5 - 20, 2) if sinr is not None else None,
        rsrq_db=got.get("rsrq"), rscp_dbm=got.get("rscp"), ecio_db=got.get("ecio"),
        rssi_raw=got.get("rssi"),
    )


@dataclass(frozen=True)
class Hcsq:
    """Huawei ^HCSQ: sysmode, raw values (five, zero-filled) and their meaning.

    Huawei's scales: RSSI/RSCP -120 + v dBm, RSRP -140 + v dBm, SINR
    -20 + v/5 dB, RSRQ -19.5 + v/2 dB, Ec/Io -32 + v/2 dB; 255 = unknown.
    "NOSERVICE" parses, with ``has_service`` false and no values.
    """

    sysmode: str
    access_tech: str
    values: tuple[int, int, int, int, int]
    rssi_dbm: float | None
    rscp_dbm: float | None
    ecio_db: float | None
    rsrp_dbm: float | None
    sinr_db: float | None
    rsrq_db: float | None

    @property
    def has_service(self) -> bool:
        return self.access_tech != "unknown"


def parse_hcsq(text: Text) -> Hcsq | None:
    """^HCSQ: "<sysmode>"[,<v1>[,<v2>[,<v3>[,<v4>[,<v5>]]]]] (quotes optional)."""
    found = _after_prefix(text, "^HCSQ:")
    if found is None:
        return None
    f = _fields(found[1])
    mode = f[0].value
    if not mode or not re.fullmatch(r"[A-Za-z0-9+\-]+", mode):
        return None
    raw = [_dec(x) for x in f[1:6]]
    if any(v is None for v in raw):
        return None
    v = [x for x in raw if x is not None] + [0] * (5 - len(raw))
    tech = access_tech_from_name(mode)
    vals = (v[0], v[1], v[2], v[3], v[4])
    out: dict[str, float | None] = dict.fromkeys(
        ("rssi_dbm", "rscp_dbm", "ecio_db", "rsrp_dbm", "sinr_db", "rsrq_db"))
    if tech in ("gsm", "umts", "lte", "tdscdma") and len(raw) >= 1:
        out["rssi_dbm"] = _level(v[0], 96, -120.0, 1.0)
    if tech in ("umts", "tdscdma") and len(raw) >= 3:
        out["rscp_dbm"] = _level(v[1], 96, -120.0, 1.0)
        out["ecio_db"] = _level(v[2], 65, -32.0, 0.5)
    if tech == "lte" and len(raw) >= 4:
        out["rsrp_dbm"] = _level(v[1], 97, -140.0, 1.0)
        out["sinr_db"] = _level(v[2], 251, -20.0, 0.2)
        out["rsrq_db"] = _level(v[3], 34, -19.5, 0.5)
    if out["sinr_db"] is not None:
        out["sinr_db"] = round(out["sinr_db"], 1)
    return Hcsq(sysmode=mode, access_tech=tech, values=vals, **out)


@dataclass(frozen=True)
class ServingCell:
    """Quectel +QENG: "servingcell" (EC2x/EG2x/BG9x, RM50x NR5G-SA).

    ``state`` is SEARCH, LIMSRV, NOCONN or CONNECT; a '-' field is None. Ids
    printed in hex (cell id, TAC, LAC) are ints here; MCC/MNC stay strings so
    that "01" and "001" remain different networks. ``sinr`` is as printed
    (LTE: raw 0..250, dB = raw/5 - 20 on EC2x). Fields beyond the common ones
    are in ``extra`` under the manual's names (see :meth:`get`). For SEARCH
    only ``state`` is set.
    """

    state: str
    rat: str | None = None
    access_tech: str = "unknown"
    duplex: str | None = None
    mcc: str | None = None
    mnc: str | None = None
    cell_id: int | None = None
    pcid: int | None = None
    lac: int | None = None
    tac: int | None = None
    arfcn: int | None = None
    band: int | None = None
    ul_bandwidth: int | None = None
    dl_bandwidth: int | None = None
    rsrp_dbm: int | None = None
    rsrq_db: int | None = None
    rssi_dbm: int | None = None
    sinr: int | None = None
    srxlev: int | None = None
    rscp_dbm: int | None = None
    ecio_db: int | None = None
    psc: int | None = None
    rac: int | None = None
    extra: tuple[tuple[str, str | None], ...] = ()

    def get(self, name: str) -> str | None:
        """A field of ``extra`` by the manual's name ('-' gives None)."""
        return dict(self.extra).get(name)


def _dash(f: _Field | None) -> _Field | None:
    return None if f is None or f.value in ("", "-") else f


_LTE_RATS = frozenset({"LTE", "CATM", "CATM1", "CATNB", "CATNB1", "EMTC"})
_GSM_EXTRA = ("txp", "rla", "drx", "c1", "c2", "gprs", "tch", "ts", "ta", "maio", "hsn",
              "rxlevsub", "rxlevfull", "rxqualsub", "rxqualfull", "voicecodec")


def parse_qeng_servingcell(text: Text) -> ServingCell | None:
    """+QENG: "servingcell",<state>,"<rat>",... for LTE (and CAT-M/NB, whose
    layout is the same; 17 or 19 values, the longer one with CQI and tx power
    before srxlev), NR5G-SA, WCDMA and GSM. RM50x NSA answers are split over
    lines ("servingcell" + state, then an "LTE" line, then "NR5G-NSA"): the
    cell is read from the LTE line. Blanks after commas are tolerated."""
    head: list[_Field] | None = None
    follow: list[list[_Field]] = []
    for line in _lines(text):
        if line[:6].upper() != "+QENG:":
            continue
        f = _fields(line[6:])
        if f[0].value.lower() == "servingcell":
            head = f
        elif head is not None:
            follow.append(f)
    if head is None or len(head) < 2 or not head[1].value:
        return None
    state = head[1].value.upper()
    body = head[2:] or (follow[0] if follow else [])
    if not body or not body[0].value:
        return ServingCell(state)
    rat = body[0].value
    tech = access_tech_from_name(rat)
    g = [_dash(x) for x in body]

    def hx(i: int) -> int | None:
        return _hex(_at(g, i))

    def num(i: int) -> int | None:
        return _sint(_at(g, i))

    def txt(i: int) -> str | None:
        return _str(_at(g, i))

    def extra(names: Sequence[str], start: int) -> tuple[tuple[str, str | None], ...]:
        return tuple((name, txt(start + k)) for k, name in enumerate(names))

    key = _norm_mode(rat)
    if key in _LTE_RATS:
        # "LTE",<is_tdd>,<MCC>,<MNC>,<cellID>,<PCID>,<earfcn>,<band>,<UL_bw>,
        # <DL_bw>,<TAC>,<RSRP>,<RSRQ>,<RSSI>,<SINR>[,<CQI>,<tx_power>],<srxlev>
        if len(g) < 13:
            return None
        cqi = len(g) >= 18
        return ServingCell(
            state, rat, tech, duplex=txt(1), mcc=txt(2), mnc=txt(3), cell_id=hx(4),
            pcid=num(5), arfcn=num(6), band=num(7), ul_bandwidth=num(8), dl_bandwidth=num(9),
            tac=hx(10), rsrp_dbm=num(11), rsrq_db=num(12), rssi_dbm=num(13), sinr=num(14),
            srxlev=num(17 if cqi else 15), extra=extra(("cqi", "tx_power"), 15) if cqi else ())
    if key == "NR5GSA":
        # "NR5G-SA",<duplex>,<MCC>,<MNC>,<cellID>,<PCID>,<TAC>,<ARFCN>,<band>,
        # <NR_DL_bandwidth>,<RSRP>,<RSRQ>,<SINR>,<scs>,<srxlev> (RM50x manual;
        # positions past <PCID> vary between firmwares).
        if len(g) < 6:
            return None
        return ServingCell(
            state, rat, tech, duplex=txt(1), mcc=txt(2), mnc=txt(3), cell_id=hx(4),
            pcid=num(5), tac=hx(6), arfcn=num(7), band=num(8), dl_bandwidth=num(9),
            rsrp_dbm=num(10), rsrq_db=num(11), sinr=num(12), srxlev=num(14),
            extra=extra(("scs",), 13))
    if key == "WCDMA":
        # "WCDMA",<MCC>,<MNC>,<LAC>,<cellID>,<uarfcn>,<PSC>,<RAC>,<RSCP>,<ecio>,
        # <phych>,<SF>,<slot>,<speech_code>,<comMod>
        if len(g) < 10:
            return None
        return ServingCell(
            state, rat, tech, mcc=txt(1), mnc=txt(2), lac=hx(3), cell_id=hx(4), arfcn=num(5),
            psc=num(6), rac=num(7), rscp_dbm=num(8), ecio_db=num(9),
            extra=extra(("phych", "sf", "slot", "speech_code", "com_mod"), 10))
    if key == "GSM":
        # "GSM",<mcc>,<mnc>,<lac>,<cellid>,<bsic>,<arfcn>,<band>,<rxlev>,<txp>,...
        if len(g) < 9:
            return None
        return ServingCell(
            state, rat, tech, mcc=txt(1), mnc=txt(2), lac=hx(3), cell_id=hx(4), arfcn=num(6),
            band=num(7), rssi_dbm=num(8), extra=extra(("bsic",), 5) + extra(_GSM_EXTRA, 9))
    # A RAT this parser does not know: the state and the RAT are still news.
    return ServingCell(state, rat, tech)


# --------------------------------------------------------------------------
# Operator, SIM, functionality


@dataclass(frozen=True)
class Cops:
    """+COPS? answer: selection mode, name format, operator and technology."""

    mode: int
    format: int | None
    operator: str | None
    act: int | None
    access_tech: str


def parse_cops(text: Text) -> Cops | None:
    """+COPS: <mode>[,<format>,<oper>[,<AcT>]]; a reply without +COPS is None."""
    found = _after_prefix(text, "+COPS:")
    if found is None:
        return None
    f = _fields(found[1])
    mode = _unquoted_dec(_at(f, 0), 99)
    if mode is None:
        return None
    fmt = _dec(_at(f, 1))
    oper = _str(_at(f, 2))
    act = _unquoted_dec(_at(f, 3), 99)
    return Cops(mode=mode, format=fmt, operator=oper, act=act,
                access_tech=access_tech_from_act(act))


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
    -> '_'), "not_inserted", "not_ready", "empty_euicc" (FM350 eUICC without
    a profile), "sim_failure", "sim_busy", "sim_wrong"; "unknown" otherwise.

    ``prefix`` (ModemManager's ``expect_cpin_prefix``): True reads only a
    "+CPIN:" line, False only a bare code, None (default) either.
    """
    lines = _lines(text)
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
    found = _after_prefix(text, "+CFUN:")
    if found is None:
        return None
    f = _fields(found[1])
    fun = _dec(_at(f, 0))
    if fun is None:
        return None
    return Cfun(fun=fun, extra=_dec(_at(f, 1)), power_state=_POWER.get(fun, "unknown"))


_ICCID_PREFIXES = ("+CCID:", "+ICCID:", "+QCCID:", "^ICCID:", "+CRSM:", "ICCID:")


def parse_iccid(value: Text) -> str | None:
    """A valid ICCID from a raw value (or a +CCID/+ICCID/+QCCID/^ICCID/+CRSM
    reply line), following ModemManager's mm_3gpp_parse_iccid: quotes and
    blanks around it are ignored; 19 or 20 characters of digits, where hex
    letters are allowed after the issuer prefix (operators such as CMCC use
    them); it must start with "89" (plain) or "98" (BCD nibbles swapped, as
    EF_ICCID is stored: the pairs are swapped back); a trailing 'F' filler is
    removed. None for anything else."""
    raw: str | None = None
    found = _after_prefix(value, *_ICCID_PREFIXES)
    if found is not None:
        prefix, body = found
        f = _fields(body)
        # +CRSM: <sw1>,<sw2>,"<response>" (READ BINARY of EF_ICCID).
        raw = _str(_at(f, 2)) if prefix.upper() == "+CRSM:" else (_str(_at(f, 0)))
    else:
        for line in _lines(value):
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
    for line in _lines(lines):
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


# --------------------------------------------------------------------------
# Packet data contexts


@dataclass(frozen=True)
class PdpContext:
    """One +CGDCONT context. ``pdp_type`` is as sent ("IP", "IPV4V6"...);
    ``ip_family`` is ModemManager's reading: ipv4, ipv6, ipv4v6, non_ip or
    unknown."""

    cid: int
    pdp_type: str
    apn: str | None
    ip_family: str


_IP_FAMILY = {"IP": "ipv4", "IPV4": "ipv4", "IPV6": "ipv6", "IPV4V6": "ipv4v6",
              "NONIP": "non_ip", "NON-IP": "non_ip"}


def parse_cgdcont(text: Text, *, strict: bool = False) -> tuple[PdpContext, ...]:
    """All +CGDCONT: <cid>,"<type>","<apn>",... lines, sorted by cid; empty
    when there are none. An empty APN is None.

    A +CGDCONT line without a readable cid and type is skipped, or, with
    ``strict``, raises ValueError (ModemManager's parse error)."""
    out = []
    for line in _lines(text):
        if line[:9].upper() != "+CGDCONT:":
            continue
        f = _fields(line[9:])
        cid = _dec(_at(f, 0))
        ptype = _str(_at(f, 1))
        if cid is None or ptype is None:
            if strict:
                raise ValueError(f"unreadable +CGDCONT line: {line[:80]!r}")
            continue
        out.append(PdpContext(cid, ptype, _str(_at(f, 2)),
                              _IP_FAMILY.get(ptype.upper(), "unknown")))
    return tuple(sorted(out, key=lambda c: c.cid))


@dataclass(frozen=True)
class Cgact:
    """One +CGACT context state."""

    cid: int
    active: bool


def parse_cgact(text: Text, *, strict: bool = False) -> tuple[Cgact, ...]:
    """All +CGACT: <cid>,<state> lines, sorted by cid; empty when none.

    A +CGACT line without a readable cid and a state of 0 or 1 is skipped,
    or, with ``strict``, raises ValueError (ModemManager's parse error)."""
    out = []
    for line in _lines(text):
        if line[:7].upper() != "+CGACT:":
            continue
        f = _fields(line[7:])
        cid, state = _dec(_at(f, 0)), _dec(_at(f, 1))
        if cid is None or state not in (0, 1):
            if strict:
                raise ValueError(f"unreadable +CGACT line: {line[:80]!r}")
            continue
        out.append(Cgact(cid, state == 1))
    return tuple(sorted(out, key=lambda c: c.cid))


@dataclass(frozen=True)
class Cgcontrdp:
    """+CGCONTRDP dynamic parameters of one context (addresses as strings)."""

    cid: int
    bearer_id: int | None
    apn: str | None
    local_address: str | None
    subnet: str | None
    gateway_address: str | None
    dns_primary_address: str | None
    dns_secondary_address: str | None


def _ip_octets(s: str) -> list[int] | None:
    parts = s.split(".")
    vals = [_dec(p) for p in parts]
    if any(v is None or v > 255 for v in vals):
        return None
    return [v for v in vals if v is not None]


def _addr(s: str | None) -> tuple[str | None, str | None] | None:
    """(address, mask) of a +CGCONTRDP address field; None if unreadable.

    27.007 prints addresses as dotted decimals: 4 (IPv4) or 16 (IPv6) octets,
    doubled when a subnet mask follows in the same field. Colon-form IPv6
    (+CGPIAF) is accepted too."""
    if not s:
        return (None, None)
    if ":" in s:
        try:
            return (str(ipaddress.IPv6Address(s)), None)
        except ValueError:
            return None
    octets = _ip_octets(s)
    if octets is None:
        return None
    if len(octets) == 4:
        return (str(ipaddress.IPv4Address(bytes(octets))), None)
    if len(octets) == 8:
        return (str(ipaddress.IPv4Address(bytes(octets[:4]))),
                str(ipaddress.IPv4Address(bytes(octets[4:]))))
    if len(octets) == 16:
        return (str(ipaddress.IPv6Address(bytes(octets))), None)
    if len(octets) == 32:
        return (str(ipaddress.IPv6Address(bytes(octets[:16]))),
                str(ipaddress.IPv6Address(bytes(octets[16:]))))
    return None


def _is_netmask(s: str | None) -> bool:
    """A plausible subnet mask: contiguous ones, at least /8."""
    if not s:
        return False
    got = _addr(s)
    if got is None or got[0] is None or got[1] is not None:
        return False
    packed = ipaddress.ip_address(got[0]).packed
    bits = int.from_bytes(packed, "big")
    width = len(packed) * 8
    ones = width - (~bits & ((1 << width) - 1)).bit_length()
    return ones >= 8 and bits == ((1 << width) - 1) ^ ((1 << (width - ones)) - 1)


def _contrdp_line(line: str) -> Cgcontrdp | None:
    f = _fields(line)
    cid = _dec(_at(f, 0))
    if cid is None:
        return None
    rest = [x.value for x in f[3:]]
    local = _addr(rest[0]) if rest else (None, None)
    if local is None:
        return None
    address, subnet = local
    i = 1
    if address is not None and subnet is None and len(rest) > 1 and _is_netmask(rest[1]):
        # Some modems print the mask in its own field after the address.
        subnet, i = rest[1], 2

    def field(k: int) -> str | None:
        got = _addr(rest[k]) if k < len(rest) else None
        return got[0] if got else None

    return Cgcontrdp(
        cid=cid, bearer_id=_dec(_at(f, 1)), apn=_str(_at(f, 2)), local_address=address,
        subnet=subnet, gateway_address=field(i), dns_primary_address=field(i + 1),
        dns_secondary_address=field(i + 2))


def parse_cgcontrdp_all(text: Text) -> tuple[Cgcontrdp, ...]:
    """Every +CGCONTRDP line (dual-stack contexts answer with two)."""
    out = []
    for line in _lines(text):
        if line[:11].upper() == "+CGCONTRDP:":
            got = _contrdp_line(line[11:])
            if got is not None:
                out.append(got)
    return tuple(out)


def parse_cgcontrdp(text: Text) -> Cgcontrdp | None:
    """The first +CGCONTRDP: <cid>,<bearer>,<apn>,<local addr[.mask]>,<gw>,
    <dns1>,<dns2>,... line. Addresses are normalised (IPv6 from 16 dotted
    octets to colon form); a missing or empty field is None. When the local
    address comes without its mask and the next field is a netmask, that
    field is the mask and the rest shift by one (seen on real modems)."""
    got = parse_cgcontrdp_all(text)
    return got[0] if got else None


@dataclass(frozen=True)
class Cgev:
    """A +CGEV packet-domain event (27.007 10.1.19), ModemManager's type names:
    me_detach, nw_detach, me_class, nw_class, reject, nw_react, nw_deact_pdp,
    me_deact_pdp, nw_act_primary, me_act_primary, nw_deact_primary,
    me_deact_primary, nw_act_secondary, me_act_secondary, nw_deact_secondary,
    me_deact_secondary, nw_modify, me_modify."""

    type: str
    pdp_type: str | None = None
    pdp_addr: str | None = None
    cid: int | None = None
    parent_cid: int | None = None
    event_type: int | None = None
    detail: str | None = None   #: CLASS value, ME PDN ACT <reason>, MODIFY reason


_CGEV_PDN = re.compile(r"(NW|ME)\s+PDN\s+(ACT|DEACT)\s+(.*)", re.IGNORECASE)
_CGEV_CTX = re.compile(r"(NW|ME)\s+(ACT|DEACT)\s+(.*)", re.IGNORECASE)
_CGEV_PDP = re.compile(r"(REJECT|NW\s+REACT)\s+(.*)", re.IGNORECASE)
_CGEV_MOD = re.compile(r"(NW|ME)\s+MODIFY\s+(.*)", re.IGNORECASE)
_CGEV_CLASS = re.compile(r"(NW|ME)\s+CLASS\s+(.*)", re.IGNORECASE)


def parse_cgev(text: Text) -> Cgev | None:
    """A +CGEV event line, with or without its "+CGEV:" prefix."""
    lines = _lines(text)
    if not lines:
        return None
    found = _after_prefix(lines, "+CGEV:")
    s = found[1] if found is not None else lines[0]
    s = s.strip()
    up = re.sub(r"\s+", " ", s.upper())
    if up in ("NW DETACH", "ME DETACH"):
        return Cgev(up.replace(" ", "_").lower())
    m = _CGEV_CLASS.fullmatch(s)
    if m:
        return Cgev(f"{m.group(1).lower()}_class", detail=m.group(2).strip().strip('"'))
    m = _CGEV_PDN.fullmatch(s)
    if m:
        f = _fields(m.group(3))
        cid = _dec(_at(f, 0))
        if cid is None:
            return None
        kind = "act" if m.group(2).upper() == "ACT" else "deact"
        reason = _str(_at(f, 1)) if m.group(1).upper() == "ME" and kind == "act" else None
        return Cgev(f"{m.group(1).lower()}_{kind}_primary", cid=cid, detail=reason)
    m = _CGEV_MOD.fullmatch(s)
    if m:
        f = _fields(m.group(2))
        cid = _dec(_at(f, 0))
        if cid is None:
            return None
        return Cgev(f"{m.group(1).lower()}_modify", cid=cid, event_type=_dec(_at(f, 2)),
                    detail=_str(_at(f, 1)))
    m = _CGEV_PDP.fullmatch(s)
    if m:
        return _cgev_pdp("reject" if m.group(1).upper() == "REJECT" else "nw_react",
                         m.group(2))
    m = _CGEV_CTX.fullmatch(s)
    if m:
        who, what = m.group(1).lower(), m.group(2).lower()
        f = _fields(m.group(3))
        if _dec(_at(f, 0)) is not None:
            # <p_cid>,<cid>,<event_type>: a secondary context.
            p_cid, cid = _dec(_at(f, 0)), _dec(_at(f, 1))
            if cid is None:
                return None
            return Cgev(f"{who}_{what}_secondary", cid=cid, parent_cid=p_cid,
                        event_type=_dec(_at(f, 2)))
        if what == "deact":
            return _cgev_pdp(f"{who}_deact_pdp", m.group(3))
    return None


def _cgev_pdp(kind: str, args: str) -> Cgev | None:
    f = _fields(args)
    ptype, addr = _str(_at(f, 0)), _str(_at(f, 1))
    if ptype is None or not re.fullmatch(r"[A-Za-z0-9.\-]+", ptype):
        return None
    return Cgev(kind, pdp_type=ptype, pdp_addr=addr, cid=_dec(_at(f, 2)))


# --------------------------------------------------------------------------
# Huawei, Fibocom, Quectel specifics


@dataclass(frozen=True)
class Sysinfo:
    """Huawei ^SYSINFO. ``sys_submode`` only when all seven fields are there."""

    srv_status: int
    srv_domain: int
    roam_status: int
    sys_mode: int
    sim_state: int
    lock_state: int | None
    sys_submode: int | None


def parse_sysinfo(text: Text) -> Sysinfo | None:
    """^SYSINFO:<srv_status>,<srv_domain>,<roam>,<sys_mode>,<sim_state>
    [,<lock_state>,<sys_submode>]."""
    found = _after_prefix(text, "^SYSINFO:")
    if found is None:
        return None
    f = _fields(found[1])
    head = [_dec(x) for x in f[:5]]
    if len(head) < 5 or any(v is None for v in head):
        return None
    a = [v for v in head if v is not None]
    submode = _dec(_at(f, 6)) if len(f) >= 7 else None
    return Sysinfo(a[0], a[1], a[2], a[3], a[4], _dec(_at(f, 5)), submode)


@dataclass(frozen=True)
class Sysinfoex:
    """Huawei ^SYSINFOEX (service, SIM and mode, with the modes' names)."""

    srv_status: int
    srv_domain: int
    roam_status: int
    sim_state: int
    lock_state: int | None
    sys_mode: int
    sys_mode_name: str | None
    sys_submode: int | None
    sys_submode_name: str | None


def parse_sysinfoex(text: Text) -> Sysinfoex | None:
    """^SYSINFOEX:<srv_status>,<srv_domain>,<roam>,<sim_state>,<lock_state>,
    <sysmode>,"<name>",<submode>,"<name>"."""
    found = _after_prefix(text, "^SYSINFOEX:")
    if found is None:
        return None
    f = _fields(found[1])
    need = [_dec(_at(f, i)) for i in (0, 1, 2, 3, 5)]
    if any(v is None for v in need):
        return None
    a = [v for v in need if v is not None]
    return Sysinfoex(a[0], a[1], a[2], a[3], _dec(_at(f, 4)), a[4], _str(_at(f, 6)),
                     _dec(_at(f, 7)), _str(_at(f, 8)))


@dataclass(frozen=True)
class Gtrndis:
    """Fibocom +GTRNDIS? answer: data-connection state, context, addresses."""

    state: int
    cid: int | None
    addresses: tuple[str, ...]

    @property
    def connected(self) -> bool:
        return self.state == 1


def parse_gtrndis(text: Text) -> Gtrndis | None:
    """+GTRNDIS: <state>[,<cid>[,"<ip>","<dns1>","<dns2>"...]]."""
    found = _after_prefix(text, "+GTRNDIS:")
    if found is None:
        return None
    f = _fields(found[1])
    state = _dec(_at(f, 0))
    if state is None:
        return None
    return Gtrndis(state, _dec(_at(f, 1)), tuple(x.value for x in f[2:] if x.value))


@dataclass(frozen=True)
class Ati:
    """ATI identification: the lines, and what they usually are."""

    lines: tuple[str, ...]
    manufacturer: str | None
    model: str | None
    revision: str | None


_ECHO_ATI = re.compile(r"AT\s*I\d*", re.IGNORECASE)


def parse_ati(lines: Text) -> Ati | None:
    """ATI reply: manufacturer and model on the first lines, "Revision: x"."""
    got = [ln for ln in _lines(lines)
           if not _ECHO_ATI.fullmatch(ln) and parse_final_line(ln) is None]
    if not got:
        return None
    revision = None
    rest = []
    for ln in got:
        if ln[:9].upper() == "REVISION:":
            revision = ln[9:].strip() or None
        else:
            rest.append(ln)
    return Ati(tuple(got), rest[0] if rest else None, rest[1] if len(rest) > 1 else None,
               revision)


@dataclass(frozen=True)
class Qsimstat:
    """Quectel +QSIMSTAT: report setting and SIM-inserted status."""

    enabled: bool
    inserted_status: int   #: 0 removed, 1 inserted, 2 unknown

    @property
    def inserted(self) -> bool | None:
        return {0: False, 1: True}.get(self.inserted_status)


def parse_qsimstat(text: Text) -> Qsimstat | None:
    """+QSIMSTAT: <enable>,<inserted_status> (query answer and URC)."""
    found = _after_prefix(text, "+QSIMSTAT:")
    if found is None:
        return None
    f = _fields(found[1])
    en, st = _dec(_at(f, 0)), _dec(_at(f, 1))
    if en is None or st is None:
        return None
    return Qsimstat(en == 1, st)


@dataclass(frozen=True)
class Qdsim:
    """Quectel +QDSIM: the SIM slot in use (0 or 1)."""

    slot: int


def parse_qdsim(text: Text) -> Qdsim | None:
    """+QDSIM: <n>."""
    found = _after_prefix(text, "+QDSIM:")
    if found is None:
        return None
    slot = _dec(_at(_fields(found[1]), 0))
    return Qdsim(slot) if slot is not None else None


# --------------------------------------------------------------------------
# Errors


class AtError(Exception):
    """An error final result code, as an exception callers may raise.

    ``type`` is "CME", "CMS", "MODEM" or None (plain ERROR and the call
    codes); ``code`` the number when there is one; ``message`` the verbose
    text of +CME/+CMS ERROR."""

    def __init__(self, final: Final) -> None:
        super().__init__(final.text)
        self.final = final
        self.type: str | None = {"cme_error": "CME", "cms_error": "CMS",
                                 "modem_error": "MODEM"}.get(final.kind)
        self.code: int | None = final.code
        self.message: str | None = final.message


class CmeError(AtError):
    """+CME ERROR (mobile equipment)."""


class CmsError(AtError):
    """+CMS ERROR (SMS service)."""


class CommandError(AtError):
    """Any other error final: ERROR, MODEM ERROR, COMMAND NOT SUPPORT, NO CARRIER..."""


def parse_error(text: Text) -> AtError | None:
    """The error that ended a reply, as a CmeError/CmsError/CommandError; None
    when the reply has no final result code or it is OK/CONNECT."""
    joined = text if isinstance(text, str) else "\n".join(x for x in text if isinstance(x, str))
    final = find_final(joined)
    if final is None or not final.is_error:
        return None
    if final.kind == "cme_error":
        return CmeError(final)
    if final.kind == "cms_error":
        return CmsError(final)
    return CommandError(final)


# --------------------------------------------------------------------------
# Unsolicited result codes


def _sim_flag(value: int | None, inserted: int = 1, removed: int = 0) -> str:
    return {inserted: "sim_inserted", removed: "sim_removed"}.get(
        value if value is not None else -1, "sim_status")


def classify_urc(line: str) -> str | None:
    """A short kind for a URC line, or None when not recognised.

    rdy (modem booted: RDY, ^SYSSTART), powered_down, sim_ready (+CPIN: READY,
    +SIM READY, ^SIMST: 1), sim_removed (+SIM: Removed, +SIM DROP, ^SIMST:
    255, +CPIN: NOT INSERTED, +QSIMSTAT: x,0), sim_inserted (+SIM: Inserted,
    +QUSIM, +QSIMSTAT: x,1), sim_status (other SIM reports: +GTSIMINS, +ESIMS,
    +XSIM, other ^SIMST), cpin (other +CPIN), registration, cgev, cfun,
    signal (^RSSI, ^HCSQ, ^CSNR, ^RSSILVL, ^HRSSILVL, +XCESQI), mode (^MODE),
    service (^SRVST), nitz (+CTZV, +CTZE, +CTZDST, +NITZ, ^NWTIME,
    +XNITZINFO), sms (+CMTI, +CDSI, +CMT, +CDS, +CBM), ussd, call (RING,
    +CRING, +CLIP, +CCWA, NO CARRIER, ^ORIG, ^CONF, ^CONN, ^CEND), stk
    (+STKPCI, ^STIN), qind (+QIND), indicator (+CIEV), data (^NDISSTAT,
    ^DSFLOWRPT, +QNETDEVSTATUS, +QIURC), heartbeat (^BOOT), gnss (+QGPSURC),
    dtmf (+QTONEDET).
    """
    if not isinstance(line, str):
        return None
    s = line.strip()
    up = s.upper()
    if not s:
        return None
    if up in ("RDY", "^SYSSTART") or up.startswith("^SYSSTART "):
        return "rdy"
    if up == "POWERED DOWN":
        return "powered_down"
    if up in ("+SIM READY", "+SIM: READY"):
        return "sim_ready"
    if up in ("+SIM DROP", "+SIM: REMOVED"):
        return "sim_removed"
    if up == "+SIM: INSERTED":
        return "sim_inserted"
    head, _, rest = up.partition(":")
    rest = rest.strip()
    if head in ("+CREG", "+CGREG", "+CEREG", "+C5GREG"):
        return "registration"
    if head == "+CPIN":
        state = parse_cpin(s)
        if state == "ready":
            return "sim_ready"
        return "sim_removed" if state == "not_inserted" else "cpin"
    if head == "+QUSIM":
        return "sim_inserted"
    if head == "+QSIMSTAT":
        got = parse_qsimstat(s)
        return _sim_flag(got.inserted_status if got else None)
    if head == "^SIMST":
        v = _dec(rest.split(",")[0])
        return {1: "sim_ready", 255: "sim_removed"}.get(v if v is not None else -1,
                                                          "sim_status")
    if head in ("+GTSIMINS", "+ESIMS", "+XSIM"):
        return "sim_status"
    simple = {
        "+CGEV": "cgev", "+CFUN": "cfun", "^RSSI": "signal", "^HCSQ": "signal",
        "^CSNR": "signal", "^RSSILVL": "signal", "^HRSSILVL": "signal", "+XCESQI": "signal",
        "^MODE": "mode", "^SRVST": "service", "+CTZV": "nitz", "+CTZE": "nitz",
        "+CTZDST": "nitz", "+NITZ": "nitz", "^NWTIME": "nitz", "+XNITZINFO": "nitz",
        "+CMTI": "sms", "+CDSI": "sms", "+CMT": "sms", "+CDS": "sms", "+CBM": "sms",
        "+CUSD": "ussd", "+CRING": "call", "+CLIP": "call", "+CCWA": "call", "^ORIG": "call",
        "^CONF": "call", "^CONN": "call", "^CEND": "call", "+STKPCI": "stk", "^STIN": "stk",
        "+QIND": "qind", "+CIEV": "indicator", "^NDISSTAT": "data", "^DSFLOWRPT": "data",
        "+QNETDEVSTATUS": "data", "+QIURC": "data", "^BOOT": "heartbeat",
        "+QGPSURC": "gnss", "+QTONEDET": "dtmf",
    }
    if head in simple and (":" in s or head == "+NITZ"):
        return simple[head]
    if up.startswith("+NITZ"):
        return "nitz"
    if up in ("RING", "NO CARRIER"):
        return "call"
    return None

