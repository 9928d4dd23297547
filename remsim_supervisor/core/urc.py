"""Unsolicited result codes: one table per modem, one classification per line.

A :class:`UrcTable` maps line prefixes to a kind and, where the line carries
news worth reading, a parser. The AT engine is given the active modem
profile's table; for every unsolicited line it hands out one :class:`Urc`
with its kind and parsed value, so nothing after the engine looks at the
text again.

:data:`BASIC_URCS` holds what 3GPP TS 27.007 (and V.250) send unsolicited;
the vendor profiles add their own rules (boot banners, SIM reports, signal
reports) on top of it.

Prefix matching: a prefix ending in ``:`` matches any line starting with
it; any other prefix is a word and must not run on into letters or digits
(``RING`` is not ``RINGTONE``). Case does not matter. While a command is
pending, a line carrying that command's own prefix is its answer, never a
URC (``+CEREG: 2,1`` answers ``AT+CEREG?``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from remsim_supervisor.core.parse.packet import parse_cgev
from remsim_supervisor.core.parse.registration import Registration, parse_registration
from remsim_supervisor.core.parse.sim import parse_cfun, parse_cpin

__all__ = ["BASIC_URCS", "URC_KINDS", "Urc", "UrcParser", "UrcRule", "UrcTable"]

#: Every kind a URC can have, with the value its parser gives:
#: boot (the modem started: re-probe it), powered_down, registration
#: (:class:`~remsim_supervisor.core.parse.registration.Registration`), cpin
#: (a +CPIN lock name: "ready", "not_inserted", "sim_pin"...), sim (a vendor
#: SIM report: "ready", "inserted", "not_inserted", or None), cgev
#: (:class:`~remsim_supervisor.core.parse.packet.Cgev`), radio
#: (:class:`~remsim_supervisor.core.parse.sim.Cfun`), signal (the vendor's
#: signal result), and kinds nothing reads a value of: mode, service, nitz,
#: sms, ussd, call, stk, indicator, indication, data, heartbeat, gnss, dtmf;
#: "unknown" for a line no rule names.
URC_KINDS = frozenset({
    "boot", "powered_down", "registration", "cpin", "sim", "cgev", "radio", "signal",
    "mode", "service", "nitz", "sms", "ussd", "call", "stk", "indicator", "indication",
    "data", "heartbeat", "gnss", "dtmf", "unknown",
})

#: Reads one URC line into its value (None when the line says nothing readable).
UrcParser = Callable[[str], object]


@dataclass(frozen=True)
class Urc:
    """An unsolicited result code: the line (stripped), its kind and parsed value.

    Two URCs are equal when their lines are: kind and value follow from the
    line and the table that classified it.
    """

    line: str
    kind: str = field(default="unknown", compare=False)
    value: object = field(default=None, compare=False)


@dataclass(frozen=True)
class UrcRule:
    """Lines starting with ``prefix`` are URCs of ``kind``, read by ``parse``."""

    prefix: str
    kind: str
    parse: UrcParser | None = None

    def __post_init__(self) -> None:
        if not self.prefix.strip():
            raise ValueError("empty URC prefix")
        if self.kind not in URC_KINDS:
            raise ValueError(f"unknown URC kind {self.kind!r}")
        object.__setattr__(self, "prefix", self.prefix.strip().upper())


def _head(line: str) -> str:
    return line.split(":", 1)[0].strip().upper()


class UrcTable:
    """The URC rules of one modem; a later rule for the same prefix wins."""

    def __init__(self, rules: Iterable[UrcRule]) -> None:
        by_prefix: dict[str, UrcRule] = {}
        for rule in rules:
            by_prefix.pop(rule.prefix, None)
            by_prefix[rule.prefix] = rule
        self.rules: tuple[UrcRule, ...] = tuple(by_prefix.values())
        # A line is looked up by what precedes its colon ("+CEREG: 1" under
        # "+CEREG:"), so a flood of lines costs a dictionary lookup each; the
        # few word prefixes are tried in turn, longest first.
        self._by_head = {r.prefix[:-1]: r for r in self.rules if r.prefix.endswith(":")}
        self._by_word = {r.prefix: r for r in self.rules if not r.prefix.endswith(":")}
        words = sorted(self._by_word, key=len, reverse=True)
        # A word must not run on into letters or digits ("RING" is not "RINGTONE").
        self._word = re.compile(
            "(" + "|".join(map(re.escape, words)) + r")(?![A-Z0-9_])") if words else None

    def __add__(self, other: UrcTable | Iterable[UrcRule]) -> UrcTable:
        more = other.rules if isinstance(other, UrcTable) else tuple(other)
        return UrcTable((*self.rules, *more))

    def __repr__(self) -> str:
        return f"UrcTable({len(self.rules)} rules)"

    @property
    def prefixes(self) -> tuple[str, ...]:
        return tuple(r.prefix for r in self.rules)

    def rule_for(self, line: str, own: frozenset[str] = frozenset()) -> UrcRule | None:
        """The rule ``line`` falls under while a command with prefixes ``own`` runs."""
        s = line.strip()
        if not s or (own and _head(s) in own):
            return None
        upper = s.upper()
        head, colon, _ = upper.partition(":")
        if colon and head in self._by_head:
            return self._by_head[head]
        m = self._word.match(upper) if self._word is not None else None
        return self._by_word[m.group(1)] if m else None

    def is_urc(self, line: str, own: frozenset[str] = frozenset()) -> bool:
        """Whether ``line`` is unsolicited while a command with prefixes ``own`` runs."""
        return self.rule_for(line, own) is not None

    def classify(self, line: str) -> Urc:
        """``line`` as a :class:`Urc`: its rule's kind and parsed value."""
        s = line.strip()
        rule = self.rule_for(s)
        if rule is None:
            return Urc(s)
        return Urc(s, rule.kind, rule.parse(s) if rule.parse is not None else None)


def _registration(line: str) -> Registration | None:
    return parse_registration(line, unsolicited=True)


def _rules(kind: str, *prefixes: str, parse: UrcParser | None = None) -> list[UrcRule]:
    return [UrcRule(p, kind, parse) for p in prefixes]


#: What 3GPP TS 27.007 and V.250 modems send unsolicited.
BASIC_URCS = UrcTable([
    *_rules("registration", "+CREG:", "+CGREG:", "+CEREG:", "+C5GREG:", parse=_registration),
    *_rules("cpin", "+CPIN:", parse=parse_cpin),
    *_rules("cgev", "+CGEV:", parse=parse_cgev),
    *_rules("radio", "+CFUN:", parse=parse_cfun),
    *_rules("indicator", "+CIEV:"),
    *_rules("nitz", "+CTZV:", "+CTZE:", "+CTZDST:", "+NITZ"),
    *_rules("sms", "+CMTI:", "+CDSI:", "+CMT:", "+CDS:", "+CBM:"),
    *_rules("ussd", "+CUSD:"),
    *_rules("call", "+CRING:", "RING", "+CLIP:", "+CCWA:", "NO CARRIER"),
])
