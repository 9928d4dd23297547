"""The route diff with IPv6: ``-6`` pins and routes added, repaired and removed like
IPv4 ones, IPv6-only and dual-stack paths, link-local gateways; no namespaces.

The kernel model is the one of ``test_routes.py`` (``replace`` keyed as the
kernel keys routes, rules appended, deletes of the first equal entry).
"""

from __future__ import annotations

import socket
from dataclasses import replace

from remsim_supervisor.core.routes import (
    RT_PROTO,
    Desired,
    Route,
    Rule,
    default_route,
    diff,
    mark_rule,
    pin_rule,
)
from tests.unit.test_routes import FOREIGN_ROUTES, FOREIGN_RULES, Kernel, texts

V4, V6 = socket.AF_INET, socket.AF_INET6
TABLE, PREF = 240, 90
WWAN0, WWAN1 = 5, 6
PIN4, PIN6, OTHER6 = "203.0.113.20", "2001:db8:9::9", "2001:db8:9::10"
LL = "fe80::1"  # every carrier's gateway: link-local, told apart by the device

IOT6 = default_route(V6, TABLE, LL, WWAN1, "wwan1")
PRIMARY4 = default_route(V4, TABLE, "10.251.1.1", WWAN0, "wwan0")
PRIMARY6 = default_route(V6, TABLE, LL, WWAN0, "wwan0")
IOT4 = default_route(V4, TABLE, "10.251.2.1", WWAN1, "wwan1")


def standby(route: Route) -> Route:
    return replace(route, metric=route.metric + 1)


def want(pins: tuple[tuple[int, str], ...], *routes: Route, mark: int | None = None) -> Desired:
    return Desired(TABLE, PREF, pins, routes, mark)


def test_an_ipv6_only_path_gets_a_minus_6_route_and_host_128_pins_only() -> None:
    ops = diff(want(((V6, PIN6),), IOT6), [], [])
    assert texts(ops) == [
        "put route -6 default via fe80::1 dev wwan1 table 240",
        f"add rule to {PIN6} lookup 240 pref 90",
    ]
    rule = ops[1].item
    assert isinstance(rule, Rule)
    assert (rule.family, rule.dst_len, rule.protocol, rule.pin) == (V6, 128, RT_PROTO, PIN6)


def test_an_ipv6_only_path_beside_a_dual_stack_standby() -> None:
    # IoT (IPv6 only) carries; the primary stands by in both families, so IPv4
    # pins find the standby's route and IPv6 ones the IoT modem's.
    pins = ((V4, PIN4), (V6, PIN6))
    kernel = Kernel(FOREIGN_RULES, FOREIGN_ROUTES)
    kernel.settle(want(pins, IOT6, standby(PRIMARY4), standby(PRIMARY6)))
    rules, routes = kernel.ours()
    assert sorted((r.family, r.dst) for r in rules) == [(V4, PIN4), (V6, PIN6)]
    assert [r.text() for r in routes] == [
        "route -6 default via fe80::1 dev wwan1 table 240",
        "route default via 10.251.1.1 dev wwan0 table 240 metric 1",
        "route -6 default via fe80::1 dev wwan0 table 240 metric 1025",
    ]
    assert not [r for r in routes if r.family == V4 and r.oif == WWAN1]


def test_a_dual_stack_move_replaces_both_families_first_then_nothing_is_left() -> None:
    pins = ((V4, PIN4), (V6, PIN6))
    on_iot = (IOT4, IOT6, standby(PRIMARY4), standby(PRIMARY6))
    on_primary = (PRIMARY4, PRIMARY6, standby(IOT4), standby(IOT6))
    kernel = Kernel()
    kernel.settle(want(pins, *on_iot))
    rounds = kernel.settle(want(pins, *on_primary))
    # The first look only puts: each replace swaps one route in place, so no
    # family is ever without its default route; the rules do not change.
    assert {op.action for op in rounds[0]} == {"put"}
    assert texts(rounds[0])[:2] == ["put route default via 10.251.1.1 dev wwan0 table 240",
                                    "put route -6 default via fe80::1 dev wwan0 table 240"]
    rules, routes = kernel.ours()
    assert sorted(r.text() for r in routes) == sorted(r.text() for r in on_primary)
    assert sorted((r.family, r.dst) for r in rules) == [(V4, PIN4), (V6, PIN6)]
    assert kernel.settle(want(pins, *on_primary)) == []


def test_the_same_link_local_gateway_on_two_devices_is_two_routes() -> None:
    assert PRIMARY6.gateway == IOT6.gateway and not PRIMARY6.same(IOT6)
    kernel = Kernel([pin_rule(V6, PIN6, TABLE, PREF)], [PRIMARY6])
    ops = diff(want(((V6, PIN6),), IOT6), kernel.rules, kernel.routes)
    assert texts(ops) == ["put route -6 default via fe80::1 dev wwan1 table 240"]


def test_minus_6_leftovers_of_a_crash_are_repaired() -> None:
    ours = pin_rule(V6, PIN6, TABLE, PREF)
    leftovers_rules = [
        ours, ours,  # a duplicate
        pin_rule(V6, "2001:db8:9::77", TABLE, PREF),  # a stale pin
        Rule(V6, PREF, TABLE, PIN6, 64, RT_PROTO),  # not a host prefix
        Rule(V6, PREF, TABLE, PIN6, 128, 4),  # proto static, by hand
        Rule(V6, PREF, TABLE, None, 0, None, text_parts=("iif br-lan",),
             selectors=(("iifname", "br-lan"),)),
    ]
    leftover_routes = [
        replace(IOT6, dst="2001:db8:77::", dst_len=64),  # a prefix route in our table
        replace(IOT6, metric=2000),  # another metric
        replace(IOT6, type=7, gateway=None, oif=None, device=None),  # unreachable
    ]
    kernel = Kernel([*FOREIGN_RULES, *leftovers_rules], [*FOREIGN_ROUTES, *leftover_routes])
    kernel.settle(want(((V6, PIN6),), IOT6))
    assert kernel.ours() == ([ours], [IOT6])
    assert [r for r in kernel.rules if r in FOREIGN_RULES] == FOREIGN_RULES
    assert [r for r in kernel.routes if r in FOREIGN_ROUTES] == FOREIGN_ROUTES


def test_a_stale_minus_6_pin_goes_and_the_ipv4_ones_stay() -> None:
    kernel = Kernel([pin_rule(V4, PIN4, TABLE, PREF), pin_rule(V6, PIN6, TABLE, PREF),
                     pin_rule(V6, OTHER6, TABLE, PREF)], [PRIMARY4, PRIMARY6])
    ops = diff(want(((V4, PIN4), (V6, PIN6)), PRIMARY4, PRIMARY6), kernel.rules, kernel.routes)
    assert texts(ops) == [f"remove rule to {OTHER6} lookup 240 pref 90"]


def test_stop_removes_every_minus_6_rule_and_route_and_nothing_else() -> None:
    kernel = Kernel([*FOREIGN_RULES, pin_rule(V6, PIN6, TABLE, PREF),
                     mark_rule(V6, 0x10000000, TABLE, PREF), pin_rule(V4, PIN4, TABLE, PREF)],
                    [*FOREIGN_ROUTES, IOT6, standby(PRIMARY6), standby(PRIMARY4)])
    kernel.settle(Desired(TABLE, PREF))
    assert kernel.ours() == ([], [])
    assert kernel.rules == FOREIGN_RULES and kernel.routes == FOREIGN_ROUTES


def test_an_ipv6_pin_and_its_rule_text_as_ip_writes_it() -> None:
    rule = pin_rule(V6, PIN6, TABLE, PREF)
    assert rule.text() == f"rule to {PIN6} lookup 240 pref 90"
    assert mark_rule(V6, 0x10, TABLE, PREF).text() == "rule -6 fwmark 0x10/0x10 lookup 240 pref 90"
    assert standby(IOT6).text() == "route -6 default via fe80::1 dev wwan1 table 240 metric 1025"
    assert default_route(V6, TABLE, None, WWAN1, "wwan1").text() == (
        "route -6 default dev wwan1 table 240")
