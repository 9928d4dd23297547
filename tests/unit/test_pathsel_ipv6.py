"""Heartbeat path choice with IPv6: an IPv6-only modem path is usable, and the
address a dual-stack IonMesh is reached at follows what the paths carry."""

from __future__ import annotations

import pytest

from remsim_supervisor.core import paths as ps

DUAL = ["192.0.2.9", "2001:db8:9::9"]


def facts(modem: str, role: str, versions: tuple[int, ...], up: bool = True) -> ps.PathFacts:
    return ps.PathFacts(modem, role, f"wwan{modem[-1]}", up=up, has_address=bool(versions),
                        versions=versions)


def test_an_ipv6_only_iot_path_is_usable_and_chosen() -> None:
    paths = {"modem1": facts("modem1", "primary", (4, 6)), "modem2": facts("modem2", "iot", (6,))}
    assert paths["modem2"].usable
    state, move = ps.on_facts(ps.PathState(), paths)
    assert state.active == "modem2" and move == ps.Move(None, "modem2", "modem2 path usable")
    down = {**paths, "modem2": facts("modem2", "iot", (6,), up=False)}
    state, move = ps.on_facts(state, down)
    assert state.active == "modem1" and move is not None and "wwan2 down" in move.reason


def test_a_path_without_any_address_is_not_usable() -> None:
    assert not facts("modem2", "iot", ()).usable


@pytest.mark.parametrize(("carried", "expected"), [
    ([(6,)], "2001:db8:9::9"),  # an IPv6-only active path: the AAAA
    ([(4,)], "192.0.2.9"),
    ([(6,), (4, 6)], "2001:db8:9::9"),  # both carry IPv6: a move keeps the address
    ([(4, 6), (6,)], "2001:db8:9::9"),  # the dual-stack active one and an IPv6-only standby
    ([(4, 6), (4, 6)], "192.0.2.9"),  # both carry both: the resolver's order
    ([(4,), (6,)], "192.0.2.9"),  # nothing in common: the active path's
    ([], "192.0.2.9"),  # no path known: the first
])
def test_address_for_follows_what_the_paths_carry(carried: list[tuple[int, ...]],
                                                 expected: str) -> None:
    paths = [facts(f"modem{n}", "iot", v) for n, v in enumerate(carried, 1)]
    assert ps.address_for(DUAL, paths) == expected


def test_address_for_without_addresses_or_with_one_family_only() -> None:
    assert ps.address_for([], [facts("modem2", "iot", (6,))]) is None
    assert ps.address_for(["192.0.2.9"], [facts("modem2", "iot", (6,))]) == "192.0.2.9"


@pytest.mark.parametrize(("text", "version"), [
    ("192.0.2.1", 4), ("2001:db8::1", 6), ("[2001:db8::1]", 6), ("fe80::1%wwan1", 6),
    ("ionmesh.example", None), ("", None)])
def test_ip_version(text: str, version: int | None) -> None:
    assert ps.ip_version(text) == version
