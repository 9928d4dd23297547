"""The route diff: desired rules and routes against what the kernel lists, no namespaces.

A small model of the kernel applies the operations (``replace`` keyed as the
kernel keys routes, rules appended, deletes of the first equal entry), so
each case also shows that applying and asking again converges and that a
second run changes nothing.
"""

from __future__ import annotations

import socket
from dataclasses import replace

import pytest

from remsim_supervisor.core.routes import (
    RT_PROTO,
    Changes,
    Desired,
    Operation,
    Route,
    Rule,
    changes,
    default_route,
    diff,
    mark_rule,
    pin_rule,
    reserved_priority,
    reserved_table,
)

V4, V6 = socket.AF_INET, socket.AF_INET6
TABLE, PREF = 240, 90
PIN, OTHER, PIN6 = "203.0.113.20", "203.0.113.21", "2001:db8::20"
WWAN0, WWAN1 = 5, 6

ROUTE = default_route(V4, TABLE, "10.0.0.1", WWAN0, "wwan0")
ROUTE6 = default_route(V6, TABLE, "fd00::1", WWAN0, "wwan0")
STANDBY = default_route(V4, TABLE, "10.1.0.1", WWAN1, "wwan1", metric_offset=1)

# Not ours, whatever they look like: mwan3, netifd, our preference with another
# table, our table at another preference, and routes of other tables.
FOREIGN_RULES = [
    Rule(V4, 1001, 1, None, 0, None, text_parts=("iif wwan0",), selectors=(("iifname", "wwan0"),)),
    Rule(V4, 2001, 1, None, 0, None, text_parts=("fwmark 0x100/0x3f00",),
         selectors=(("fwmark", 0x100), ("fwmask", 0x3F00))),
    Rule(V4, 10000, 100, None, 0, 3, text_parts=("from 10.1.0.2",)),
    Rule(V6, 1001, 1, None, 0, None, text_parts=("iif wwan0",)),
    Rule(V4, PREF, 241, "203.0.113.77", 32, None),
    Rule(V4, 91, TABLE, "203.0.113.78", 32, None),
    Rule(V4, PREF, 241, PIN, 32, RT_PROTO),
]
FOREIGN_ROUTES = [
    replace(ROUTE, table=1, proto=3),
    replace(ROUTE, table=100, gateway="10.1.0.1", oif=WWAN1, device="wwan1", proto=4),
    replace(ROUTE6, table=254, proto=9),
]


def desired(pins: tuple[tuple[int, str], ...] = ((V4, PIN),),
            routes: tuple[Route, ...] = (ROUTE,), mark: int | None = None) -> Desired:
    return Desired(TABLE, PREF, pins, routes, mark)


def route_key(route: Route) -> tuple[object, ...]:
    return (route.family, route.table, route.dst, route.dst_len, route.tos, route.metric)


class Kernel:
    """Rules and routes as lists, changed the way the kernel changes them."""

    def __init__(self, rules: list[Rule] | None = None, routes: list[Route] | None = None) -> None:
        self.rules = list(rules or [])
        self.routes = list(routes or [])

    def apply(self, ops: list[Operation]) -> None:
        for op in ops:
            item = op.item
            if isinstance(item, Route):
                if op.action == "put":
                    self.routes = [r for r in self.routes if route_key(r) != route_key(item)]
                    self.routes.append(item)
                else:
                    self.routes.remove(item)
            elif op.action == "add":
                self.rules.append(item)
            else:
                self.rules.remove(item)

    def settle(self, want: Desired, passes: int = 5) -> list[list[Operation]]:
        rounds = []
        for _ in range(passes):
            ops = diff(want, self.rules, self.routes)
            if not ops:
                return rounds
            self.apply(ops)
            rounds.append(ops)
        raise AssertionError(f"did not settle after {passes} passes: {rounds}")

    def ours(self) -> tuple[list[Rule], list[Route]]:
        return ([r for r in self.rules if (r.priority, r.table) == (PREF, TABLE)],
                [r for r in self.routes if r.table == TABLE])


def texts(ops: list[Operation]) -> list[str]:
    return [op.text() for op in ops]


# --- from nothing, and in agreement ----------------------------------------------------------

def test_from_an_empty_kernel_the_route_goes_in_before_the_rule() -> None:
    ops = diff(desired(), [], [])
    assert texts(ops) == [
        "put route default via 10.0.0.1 dev wwan0 table 240",
        f"add rule to {PIN} lookup 240 pref 90",
    ]
    assert ops[1].item == pin_rule(V4, PIN, TABLE, PREF)


def test_in_agreement_there_is_nothing_to_do() -> None:
    kernel = Kernel([pin_rule(V4, PIN, TABLE, PREF)], [ROUTE])
    assert diff(desired(), kernel.rules, kernel.routes) == []


def test_applying_the_diff_converges_and_a_second_run_changes_nothing() -> None:
    kernel = Kernel(FOREIGN_RULES, FOREIGN_ROUTES)
    want = desired(pins=((V4, PIN), (V4, OTHER), (V6, PIN6)), routes=(ROUTE, ROUTE6, STANDBY))
    assert len(kernel.settle(want)) == 1
    rules, routes = kernel.ours()
    assert sorted(r.dst or "" for r in rules) == sorted([PIN, OTHER, PIN6])
    assert routes == [ROUTE, ROUTE6, STANDBY]
    assert kernel.settle(want) == []


def test_a_kernel_without_fra_protocol_reports_no_tag_and_the_rule_is_still_ours() -> None:
    # Before Linux 4.17 rules carry no FRA_PROTOCOL: protocol None.
    untagged = Rule(V4, PREF, TABLE, PIN, 32, None)
    assert untagged.pin == PIN
    assert diff(desired(), [untagged], [ROUTE]) == []


# --- what is not ours ----------------------------------------------------------------------------

def test_foreign_rules_and_routes_are_never_touched() -> None:
    for want in (desired(), desired(pins=(), routes=()), desired(mark=0x10000)):
        kernel = Kernel(FOREIGN_RULES, FOREIGN_ROUTES)
        for ops in kernel.settle(want):
            for op in ops:
                assert op.item not in FOREIGN_RULES and op.item not in FOREIGN_ROUTES, op
        assert [r for r in kernel.rules if r in FOREIGN_RULES] == FOREIGN_RULES
        assert [r for r in kernel.routes if r in FOREIGN_ROUTES] == FOREIGN_ROUTES


def test_a_pin_rule_in_another_table_does_not_count_as_ours() -> None:
    ops = diff(desired(), [Rule(V4, PREF, 241, PIN, 32, RT_PROTO)], [ROUTE])
    assert texts(ops) == [f"add rule to {PIN} lookup 240 pref 90"]


# --- what a crash or a hand left behind ----------------------------------------------------------

def test_duplicates_and_stale_pins_are_removed_and_one_rule_per_pin_stays() -> None:
    ours = pin_rule(V4, PIN, TABLE, PREF)
    stale = pin_rule(V4, "198.51.100.9", TABLE, PREF)
    ops = diff(desired(), [ours, ours, stale], [ROUTE])
    assert texts(ops) == [f"remove rule to {PIN} lookup 240 pref 90",
                          "remove rule to 198.51.100.9 lookup 240 pref 90"]


def test_rules_of_a_shape_we_would_not_add_are_removed_even_at_a_pin() -> None:
    by_hand = [
        Rule(V4, PREF, TABLE, PIN, 32, 4),  # proto static
        Rule(V4, PREF, TABLE, PIN, 24, RT_PROTO),  # not a host prefix
        Rule(V4, PREF, TABLE, PIN, 32, RT_PROTO, text_parts=("iif br-lan",),
             selectors=(("iifname", "br-lan"),)),
        Rule(V4, PREF, TABLE, None, 0, None),  # from all
    ]
    kernel = Kernel(by_hand, [ROUTE])
    rounds = kernel.settle(desired())
    assert texts(rounds[0]) == [
        f"add rule to {PIN} lookup 240 pref 90",
        f"remove rule to {PIN} lookup 240 pref 90 proto static",
        f"remove rule to {PIN}/24 lookup 240 pref 90",
        f"remove rule iif br-lan to {PIN} lookup 240 pref 90",
        "remove rule from all lookup 240 pref 90",
    ]
    assert kernel.ours()[0] == [pin_rule(V4, PIN, TABLE, PREF)]


def test_a_stale_route_is_replaced_first_and_leftovers_removed_on_the_next_look() -> None:
    old_path = replace(ROUTE, gateway="10.1.0.1", oif=WWAN1, device="wwan1")
    leftover = replace(ROUTE, dst="198.51.100.0", dst_len=24, scope=253, gateway=None)
    kernel = Kernel([pin_rule(V4, PIN, TABLE, PREF)], [old_path, leftover])
    rounds = kernel.settle(desired())
    # First look: only the put, which swaps the path without an empty instant.
    assert texts(rounds[0]) == ["put route default via 10.0.0.1 dev wwan0 table 240"]
    assert texts(rounds[1]) == ["remove route 198.51.100.0/24 dev wwan0 table 240"]
    assert kernel.ours()[1] == [ROUTE]


def test_a_route_that_differs_only_in_its_device_label_is_kept() -> None:
    renamed = replace(ROUTE, device=None)
    assert diff(desired(), [pin_rule(V4, PIN, TABLE, PREF)], [renamed]) == []


def test_twin_routes_keep_one_and_remove_the_other() -> None:
    twin = replace(ROUTE, device="if5")
    ops = diff(desired(), [pin_rule(V4, PIN, TABLE, PREF)], [ROUTE, twin])
    assert [op.item for op in ops] == [twin] and ops[0].action == "remove"


def test_removals_wait_while_a_route_is_put() -> None:
    stale = pin_rule(V4, OTHER, TABLE, PREF)
    ops = diff(desired(), [stale], [])
    assert [op.action for op in ops] == ["put", "add"]


# --- IPv6, marks, standbys, no path ---------------------------------------------------------

def test_ipv6_pins_and_route_are_separate_from_ipv4() -> None:
    ops = diff(desired(pins=((V4, PIN), (V6, PIN6)), routes=(ROUTE, ROUTE6)), [], [])
    assert texts(ops) == [
        "put route default via 10.0.0.1 dev wwan0 table 240",
        "put route -6 default via fd00::1 dev wwan0 table 240",
        f"add rule to {PIN} lookup 240 pref 90",
        f"add rule to {PIN6} lookup 240 pref 90",
    ]
    assert ops[3].item == Rule(V6, PREF, TABLE, PIN6, 128, RT_PROTO)
    assert ROUTE6.metric == 1024 and ROUTE.metric == 0


def test_an_ipv6_route_by_device_alone_keeps_universe_scope() -> None:
    p2p4 = default_route(V4, TABLE, None, WWAN1, "wwan2")
    p2p6 = default_route(V6, TABLE, None, WWAN1, "wwan2")
    assert (p2p4.scope, p2p6.scope) == (253, 0)
    assert p2p4.text() == "route default dev wwan2 table 240"


def test_mark_rules_one_per_family() -> None:
    mark = 0x10000
    ops = diff(desired(mark=mark), [pin_rule(V4, PIN, TABLE, PREF)], [ROUTE])
    assert texts(ops) == ["add rule fwmark 0x10000/0x10000 lookup 240 pref 90",
                          "add rule -6 fwmark 0x10000/0x10000 lookup 240 pref 90"]
    kernel = Kernel([pin_rule(V4, PIN, TABLE, PREF), mark_rule(V4, 0x20000, TABLE, PREF)], [ROUTE])
    kernel.settle(desired(mark=mark))
    assert sorted(r.text() for r in kernel.ours()[0] if r.dst is None) == [
        "rule -6 fwmark 0x10000/0x10000 lookup 240 pref 90",
        "rule fwmark 0x10000/0x10000 lookup 240 pref 90"]
    # Without a mark, the mark rules are not ours to keep.
    kernel.settle(desired())
    assert kernel.ours()[0] == [pin_rule(V4, PIN, TABLE, PREF)]


def test_standby_routes_sit_beside_the_path_with_higher_metrics() -> None:
    kernel = Kernel()
    kernel.settle(desired(routes=(ROUTE, STANDBY)))
    assert [r.metric for r in kernel.ours()[1]] == [0, 1]
    assert STANDBY.text() == "route default via 10.1.0.1 dev wwan1 table 240 metric 1"
    # The standby becomes the path: its route moves to metric 0, the old one goes.
    promoted = replace(STANDBY, metric=0)
    kernel.settle(desired(routes=(promoted,)))
    assert kernel.ours()[1] == [promoted]


def test_no_path_empties_the_table_but_keeps_the_pins() -> None:
    kernel = Kernel([pin_rule(V4, PIN, TABLE, PREF)], [ROUTE, ROUTE6])
    ops = diff(desired(routes=()), kernel.rules, kernel.routes)
    assert [op.action for op in ops] == ["remove", "remove"]
    kernel.apply(ops)
    assert kernel.ours() == ([pin_rule(V4, PIN, TABLE, PREF)], [])


def test_nothing_desired_removes_everything_ours_rules_first() -> None:
    kernel = Kernel([*FOREIGN_RULES, pin_rule(V4, PIN, TABLE, PREF),
                     mark_rule(V6, 1, TABLE, PREF)], [*FOREIGN_ROUTES, ROUTE])
    ops = diff(Desired(TABLE, PREF), kernel.rules, kernel.routes)
    assert [type(op.item).__name__ for op in ops] == ["Rule", "Rule", "Route"]
    kernel.apply(ops)
    assert kernel.ours() == ([], []) and kernel.rules == FOREIGN_RULES


# --- texts and changes ---------------------------------------------------------------------------

@pytest.mark.parametrize(("item", "text"), [
    (Rule(V4, PREF, TABLE, PIN, 32, RT_PROTO), f"rule to {PIN} lookup 240 pref 90"),
    (Rule(V4, PREF, TABLE, PIN, 32, 4), f"rule to {PIN} lookup 240 pref 90 proto static"),
    (Rule(V6, PREF, TABLE, None, 0, None), "rule -6 from all lookup 240 pref 90"),
    (replace(ROUTE, type=6, gateway=None, oif=None), "route blackhole default table 240"),
    (replace(ROUTE6, proto=9, metric=5), "route -6 default via fd00::1 dev wwan0 table 240 "
                                         "metric 5 proto ra"),
    (replace(ROUTE, multipath=True, gateway=None), "route default multipath dev wwan0 table 240"),
])
def test_texts_read_as_ip_writes_them(item: Rule | Route, text: str) -> None:
    assert item.text() == text


def test_changes_count_duplicates() -> None:
    change = changes(["a", "a", "b"], ["a", "c"])
    assert change == Changes(added=("c",), removed=("a", "b"))
    assert str(change) == "+c; -a; -b"
    assert not changes(["a"], ["a"]) and str(Changes()) == "no change"


# --- tables and preferences that are never ours --------------------------------------------------

@pytest.mark.parametrize(("table", "whose"), [
    (253, "kernel"), (254, "kernel"), (255, "kernel"), (1, "mwan3"), (60, "mwan3"),
    (61, None), (240, None), (1000, None)])
def test_reserved_tables(table: int, whose: str | None) -> None:
    reason = reserved_table(table)
    assert (reason is None) if whose is None else (whose in (reason or ""))


@pytest.mark.parametrize(("priority", "whose"), [
    (0, "kernel"), (32766, "kernel"), (32767, "kernel"), (1001, "mwan3"), (3062, "mwan3"),
    (10000, "netifd"), (20000, "netifd"), (90, None), (1000, None), (3063, None)])
def test_reserved_priorities(priority: int, whose: str | None) -> None:
    reason = reserved_priority(priority)
    assert (reason is None) if whose is None else (whose in (reason or ""))
