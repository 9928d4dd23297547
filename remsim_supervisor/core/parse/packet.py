"""Packet-domain events: +CGEV (3GPP TS 27.007 10.1.19)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from remsim_supervisor.core.parse.common import (
    Text,
    after_prefix,
    dec,
    field_at,
    field_text,
    split_fields,
    text_lines,
)

__all__ = ["Cgev", "parse_cgev"]

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
    lines = text_lines(text)
    if not lines:
        return None
    found = after_prefix(lines, "+CGEV:")
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
        f = split_fields(m.group(3))
        cid = dec(field_at(f, 0))
        if cid is None:
            return None
        kind = "act" if m.group(2).upper() == "ACT" else "deact"
        me_act = m.group(1).upper() == "ME" and kind == "act"
        reason = field_text(field_at(f, 1)) if me_act else None
        return Cgev(f"{m.group(1).lower()}_{kind}_primary", cid=cid, detail=reason)
    m = _CGEV_MOD.fullmatch(s)
    if m:
        f = split_fields(m.group(2))
        cid = dec(field_at(f, 0))
        if cid is None:
            return None
        return Cgev(f"{m.group(1).lower()}_modify", cid=cid, event_type=dec(field_at(f, 2)),
                    detail=field_text(field_at(f, 1)))
    m = _CGEV_PDP.fullmatch(s)
    if m:
        return _cgev_pdp("reject" if m.group(1).upper() == "REJECT" else "nw_react",
                         m.group(2))
    m = _CGEV_CTX.fullmatch(s)
    if m:
        who, what = m.group(1).lower(), m.group(2).lower()
        f = split_fields(m.group(3))
        if dec(field_at(f, 0)) is not None:
            # <p_cid>,<cid>,<event_type>: a secondary context.
            p_cid, cid = dec(field_at(f, 0)), dec(field_at(f, 1))
            if cid is None:
                return None
            return Cgev(f"{who}_{what}_secondary", cid=cid, parent_cid=p_cid,
                        event_type=dec(field_at(f, 2)))
        if what == "deact":
            return _cgev_pdp(f"{who}_deact_pdp", m.group(3))
    return None


def _cgev_pdp(kind: str, args: str) -> Cgev | None:
    f = split_fields(args)
    ptype, addr = field_text(field_at(f, 0)), field_text(field_at(f, 1))
    if ptype is None or not re.fullmatch(r"[A-Za-z0-9.\-]+", ptype):
        return None
    return Cgev(kind, pdp_type=ptype, pdp_addr=addr, cid=dec(field_at(f, 2)))
