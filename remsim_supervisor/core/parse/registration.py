"""Registration (+CREG / +CGREG / +CEREG / +C5GREG) and operator (+COPS?) answers.

The field layouts follow 3GPP TS 27.007 and, where modems bend it,
ModemManager's helpers. Registration states use ModemManager's names
(:data:`REG_STATES`).
"""

from __future__ import annotations

from dataclasses import dataclass

from remsim_supervisor.core.parse.common import (
    Field,
    Text,
    access_tech_from_act,
    after_prefix,
    dec,
    field_at,
    field_text,
    fields_after,
    hexnum,
    split_fields,
    unquoted_dec,
)

__all__ = ["REGISTERED_STATES", "REG_STATES", "Cops", "Registration", "parse_cops",
           "parse_registration"]

#: 27.007 <stat> 0..11 by ModemManager's names.
REG_STATES = (
    "idle", "home", "searching", "denied", "unknown", "roaming", "home_sms_only",
    "roaming_sms_only", "emergency_only", "home_csfb_not_preferred",
    "roaming_csfb_not_preferred", "attached_rlos",
)
#: The states that count as registered (home or roaming, every variant).
REGISTERED_STATES = frozenset({
    "home", "roaming", "home_sms_only", "roaming_sms_only",
    "home_csfb_not_preferred", "roaming_csfb_not_preferred",
})


@dataclass(frozen=True)
class Registration:
    """One +CREG/+CGREG/+CEREG/+C5GREG report (query answer or URC): the one
    registration type, from the parser through the state machine to the status."""

    kind: str                    #: "CREG", "CGREG", "CEREG" or "C5GREG"
    state: str                   #: :data:`REG_STATES` name of the 27.007 <stat>
    access_tech: str = "unknown"  #: name of ``act``, "unknown" when absent
    lac: int | None = None       #: LAC (CREG/CGREG) or TAC (CEREG/C5GREG)
    ci: int | None = None        #: cell id
    act: int | None = None       #: raw <AcT>
    n: int | None = None         #: the <n> setting, present only in query answers
    is_urc: bool = False         #: unsolicited (see :func:`parse_registration`)

    @property
    def stat(self) -> int | None:
        """27.007 <stat> of ``state``."""
        return REG_STATES.index(self.state) if self.state in REG_STATES else None

    @property
    def registered(self) -> bool:
        """Home or roaming, SMS-only and CSFB-not-preferred variants included."""
        return self.state in REGISTERED_STATES


_REG_PREFIXES = ("+CREG:", "+CGREG:", "+CEREG:", "+C5GREG:")


def _stat_ok(f: Field | None) -> bool:
    return unquoted_dec(f, 11) is not None


def _n_ok(f: Field | None) -> bool:
    return unquoted_dec(f, 5) is not None


def _act_ok(f: Field | None) -> bool:
    return unquoted_dec(f, 13) is not None


def _looks_like_stat(f: Field) -> bool:
    # A <stat> is a short bare decimal; "0001" or "1F00" is a LAC.
    return _stat_ok(f) and len(f.value) <= 3


# (n, stat, lac, ci, act) positions; None = absent.
_Layout = tuple[int | None, int, int | None, int | None, int | None]


def _reg_layout(kind: str, f: list[Field]) -> _Layout | None:
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
    ok_without = _stat_ok(f[0]) and (act_i is None or _act_ok(field_at(f, act_i)))
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
    found = after_prefix(text, *_REG_PREFIXES)
    if found is None:
        return None
    prefix, body = found
    kind = prefix[1:-1].upper()
    f = split_fields(body)
    if not f or not f[0].value:
        return None
    layout = _reg_layout(kind, f)
    if layout is None:
        return None
    i_n, i_stat, i_lac, i_ci, i_act = layout
    stat = dec(field_at(f, i_stat))
    if stat is None or stat > 11:
        return None
    n = dec(field_at(f, i_n)) if i_n is not None else None
    lac = hexnum(field_at(f, i_lac)) if i_lac is not None else None
    ci = hexnum(field_at(f, i_ci)) if i_ci is not None else None
    act_f = field_at(f, i_act) if i_act is not None else None
    act = unquoted_dec(act_f, 99) if act_f is not None else None
    return Registration(
        kind=kind, n=n, state=REG_STATES[stat], lac=lac, ci=ci, act=act,
        access_tech=access_tech_from_act(act),
        is_urc=(n is None) if unsolicited is None else unsolicited,
    )


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
    f = fields_after(text, "+COPS:")
    if f is None:
        return None
    mode = unquoted_dec(field_at(f, 0), 99)
    if mode is None:
        return None
    fmt = dec(field_at(f, 1))
    oper = field_text(field_at(f, 2))
    act = unquoted_dec(field_at(f, 3), 99)
    return Cops(mode=mode, format=fmt, operator=oper, act=act,
                access_tech=access_tech_from_act(act))

