"""Field plumbing every AT answer parser shares, and the access-technology names.

Parsers take either one line, a whole reply (echo, blank lines and the final
``OK`` included) or the information lines of a
:class:`~remsim_supervisor.core.at.Response` (:data:`Text`), find the line
carrying their prefix (:func:`after_prefix`) and split its fields
(:func:`split_fields`). No helper raises on any string.

Conventions the parsers keep, so that callers can rely on them:

* LAC, TAC and cell ids are hexadecimal in the text and ints in results.
* Signal values derived from raw levels are dataclass *fields* named
  ``*_dbm`` / ``*_db`` (``None`` when the raw value means "not known").
* Access technologies use one vocabulary (:data:`ACCESS_TECH_NAMES`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import NamedTuple, TypeAlias

from remsim_supervisor.core.atcodes import split_lines

__all__ = [
    "ACCESS_TECH_NAMES", "Field", "Text", "access_tech_from_act", "access_tech_from_name",
    "after_prefix", "dec", "field_at", "field_text", "fields_after", "hexnum", "level",
    "norm_mode", "sint", "split_fields", "text_lines", "unquoted_dec",
]

#: A whole reply, one line, or the information lines of a Response.
Text: TypeAlias = "str | Sequence[str]"

_MAX_DIGITS = 18  # far below int()'s string-length limit, above any AT value


class Field(NamedTuple):
    """One comma-separated field of an AT answer."""

    value: str    # stripped, quotes removed
    quoted: bool  # the field had quotes: a string, never a bare number


def text_lines(text: Text) -> list[str]:
    """The non-empty stripped lines of ``text``."""
    if isinstance(text, str):
        return split_lines(text)
    out: list[str] = []
    for item in text:
        if isinstance(item, str):
            out.extend(split_lines(item))
    return out


def after_prefix(text: Text, *prefixes: str) -> tuple[str, str] | None:
    """(prefix as given, rest of line) for the first line starting with a prefix."""
    for line in text_lines(text):
        for prefix in prefixes:
            if line[:len(prefix)].upper() == prefix.upper():
                return prefix, line[len(prefix):].strip()
    return None


def split_fields(body: str) -> list[Field]:
    """Split at commas outside double quotes; strip blanks and quotes."""
    out: list[Field] = []
    cur: list[str] = []
    in_quotes = quoted = False
    for ch in body:
        if ch == '"':
            in_quotes = not in_quotes
            quoted = True
        elif ch == "," and not in_quotes:
            out.append(Field("".join(cur).strip(), quoted))
            cur, quoted = [], False
        else:
            cur.append(ch)
    out.append(Field("".join(cur).strip(), quoted))
    return out


def fields_after(text: Text, prefix: str) -> list[Field] | None:
    """The fields of the first line starting with ``prefix``, None without one."""
    found = after_prefix(text, prefix)
    return None if found is None else split_fields(found[1])


def dec(f: Field | str | None) -> int | None:
    """A non-negative decimal integer (quoted fields accepted), else None."""
    if f is None:
        return None
    s = f.value if isinstance(f, Field) else f.strip().strip('"').strip()
    if s and len(s) <= _MAX_DIGITS and s.isascii() and s.isdigit():
        return int(s)
    return None


def sint(f: Field | str | None) -> int | None:
    """A signed decimal integer, else None ('-' alone = not available)."""
    if f is None:
        return None
    s = f.value if isinstance(f, Field) else f.strip().strip('"').strip()
    neg = s.startswith("-")
    digits = s[1:] if neg or s.startswith("+") else s
    if digits and len(digits) <= _MAX_DIGITS and digits.isascii() and digits.isdigit():
        return -int(digits) if neg else int(digits)
    return None


_HEX_RUN = re.compile(r"[0-9A-Fa-f]+")


def hexnum(f: Field | str | None) -> int | None:
    """Leading hex digits of a field ("0 5" -> 0, like strtoul), else None."""
    if f is None:
        return None
    s = f.value if isinstance(f, Field) else f.strip().strip('"').strip()
    m = _HEX_RUN.match(s)
    if not m or len(m.group()) > _MAX_DIGITS:
        return None
    return int(m.group(), 16)


def field_text(f: Field | None) -> str | None:
    """A field's text, None when absent or empty."""
    return f.value if f is not None and f.value else None


def field_at(fields: Sequence[Field | None], i: int) -> Field | None:
    """The ``i``-th field, None past the end."""
    return fields[i] if 0 <= i < len(fields) else None


def unquoted_dec(f: Field | None, top: int) -> int | None:
    """A bare (unquoted) decimal 0..``top``, else None."""
    if f is None or f.quoted:
        return None
    v = dec(f)
    return v if v is not None and v <= top else None


def level(value: int | None, top: int, base: float, step: float) -> float | None:
    """``base + value * step`` for a raw level 0..``top``; None outside (unknown)."""
    if value is None or value < 0 or value > top:
        return None
    return base + value * step


def norm_mode(mode: str) -> str:
    """A mode name without blanks, dashes and underscores, upper-cased."""
    return re.sub(r"[\s_\-]", "", mode).upper()


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


# Names modems print (vendor signal and system reports, +COPS?): upper-cased,
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

