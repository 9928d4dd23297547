"""Rules and routes as rtnetlink messages: decoding pyroute2's dumps, naming them back.

:func:`rule_from` and :func:`route_from` turn one message of a rule or route
dump into the plain :class:`~remsim_supervisor.core.routes.Rule` and
:class:`~remsim_supervisor.core.routes.Route` values the route diff works
on; :func:`rule_args` and :func:`route_args` are the keyword arguments of
pyroute2's ``rule()`` and ``route()`` that name exactly such a value, for
adding or deleting it. Only what pyroute2 0.7.9 (OpenWrt 24.10) and 0.9 name
alike is used.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

from remsim_supervisor.core.routes import FAMILIES, HOST_LEN, Route, Rule

_FR_ACT_TO_TBL = 1
_FIB_RULE_INVERT = 0x2
_UNSET32 = 0xFFFFFFFF  # FRA_SUPPRESS_* "not set"


def rule_from(msg: Any) -> Rule | None:
    """The rule of one FIB rule message; None for families other than IPv4 and IPv6."""
    family = msg["family"]
    if family not in FAMILIES:
        return None  # ipmr/ip6mr rules (families 128/129) are never ours
    attr = msg.get_attr
    table = attr("FRA_TABLE")
    selectors: list[tuple[str, Any]] = []
    text: list[str] = []
    if msg["flags"] & _FIB_RULE_INVERT:
        selectors.append(("flags", msg["flags"]))
        text.append("not")
    if attr("FRA_SRC") is not None:
        selectors += [("src", attr("FRA_SRC")), ("src_len", msg["src_len"])]
        full = msg["src_len"] == HOST_LEN[family]
        text.append(f"from {canonical(attr('FRA_SRC'))}" + ("" if full else f"/{msg['src_len']}"))
    if msg["tos"]:
        selectors.append(("tos", msg["tos"]))
        text.append(f"tos {msg['tos']:#x}")
    if attr("FRA_FWMARK") is not None:
        selectors.append(("fwmark", attr("FRA_FWMARK")))
        if attr("FRA_FWMASK") is not None:
            selectors.append(("fwmask", attr("FRA_FWMASK")))
        text.append(f"fwmark {attr('FRA_FWMARK'):#x}/{attr('FRA_FWMASK') or _UNSET32:#x}")
    for name, kw, word in (("FRA_IIFNAME", "iifname", "iif"), ("FRA_OIFNAME", "oifname", "oif")):
        if attr(name) is not None:
            selectors.append((kw, attr(name)))
            text.append(f"{word} {attr(name)}")
    # Rarer selectors make the rule "not one we would add" and are shown, but
    # are not sent on delete: a twin may then be hit first, which the next
    # pass of the reconciler repairs.
    for name, word in (("FRA_UID_RANGE", "uidrange"), ("FRA_IP_PROTO", "ipproto"),
                       ("FRA_SPORT_RANGE", "sport"), ("FRA_DPORT_RANGE", "dport"),
                       ("FRA_L3MDEV", "l3mdev"), ("FRA_GOTO", "goto")):
        if attr(name) is not None:
            text.append(f"{word} {attr(name)}")
    for name, word in (("FRA_SUPPRESS_PREFIXLEN", "suppress_prefixlength"),
                       ("FRA_SUPPRESS_IFGROUP", "suppress_ifgroup")):
        value = attr(name)
        if value is not None and value != _UNSET32:
            text.append(f"{word} {value}")
    if msg["action"] != _FR_ACT_TO_TBL:
        text.append(f"action {msg['action']}")
    return Rule(
        family=family,
        priority=attr("FRA_PRIORITY") or 0,
        table=table if table is not None else msg["table"],
        dst=canonical(attr("FRA_DST")),
        dst_len=msg["dst_len"],
        protocol=attr("FRA_PROTOCOL"),
        selectors=tuple(selectors),
        text_parts=tuple(text),
    )


def route_from(msg: Any, names: dict[int, str]) -> Route:
    """The route of one route message; ``names`` gives device names by index."""
    attr = msg.get_attr
    table = attr("RTA_TABLE")
    oif = attr("RTA_OIF")
    return Route(
        family=msg["family"],
        table=table if table is not None else msg["table"],
        dst=canonical(attr("RTA_DST")),
        dst_len=msg["dst_len"],
        gateway=canonical(attr("RTA_GATEWAY")),
        oif=oif,
        device=names.get(oif) if oif is not None else None,
        metric=attr("RTA_PRIORITY") or 0,
        proto=msg["proto"],
        scope=msg["scope"],
        type=msg["type"],
        tos=msg["tos"],
        multipath=attr("RTA_MULTIPATH") is not None,
    )


def canonical(address: str | None) -> str | None:
    return None if address is None else str(ipaddress.ip_address(address))


def rule_args(rule: Rule) -> dict[str, Any]:
    """pyroute2 rule() arguments naming ``rule``.

    The kernel deletes the first rule matching every field given, so we give
    all we know; a rule with our pref/table but a selector we do not decode
    may still hit a twin first, which the next pass repairs.
    """
    args: dict[str, Any] = {"family": rule.family, "priority": rule.priority,
                            "table": rule.table}
    if rule.dst is not None:
        args.update(dst=rule.dst, dst_len=rule.dst_len)
    if rule.protocol is not None:
        args["protocol"] = rule.protocol
    args.update(dict(rule.selectors))
    return args


def route_args(route: Route) -> dict[str, Any]:
    """pyroute2 route() arguments naming exactly ``route``."""
    family = route.family
    dst = route.dst or ("0.0.0.0" if family == socket.AF_INET else "::")
    args: dict[str, Any] = {
        "family": family, "dst": f"{dst}/{route.dst_len}", "table": route.table,
        "priority": route.metric, "proto": route.proto, "type": route.type,
    }
    if family == socket.AF_INET:
        # IPv6 ignores scope; IPv4 matches it on delete, so say it.
        args["scope"] = route.scope
    if route.tos:
        args["tos"] = route.tos
    if route.oif is not None and not route.multipath:
        args["oif"] = route.oif
    if route.gateway and not route.multipath:
        args["gateway"] = route.gateway
    return args


def next_hops(msg: Any) -> list[tuple[int | None, str | None]]:
    """(oif, gateway) of a route, one per next hop of a multipath route."""
    multipath = msg.get_attr("RTA_MULTIPATH")
    if not multipath:
        return [(msg.get_attr("RTA_OIF"), msg.get_attr("RTA_GATEWAY"))]
    return [(hop["oif"], hop.get_attr("RTA_GATEWAY")) for hop in multipath]
