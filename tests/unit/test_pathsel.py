"""Heartbeat path choice: pure rules, event by event."""

from __future__ import annotations

from remsim_supervisor.core import paths as ps


def paths(iot_up: bool = True, primary_up: bool = True,
          iot_addr: bool = True) -> dict[str, ps.PathFacts]:
    return {
        "modem1": ps.PathFacts("modem1", "primary", "wwan0", up=primary_up, has_address=True),
        "modem2": ps.PathFacts("modem2", "iot", "wwan1", up=iot_up, has_address=iot_addr),
    }


def test_iot_is_chosen_first() -> None:
    state, move = ps.on_facts(ps.PathState(), paths())
    assert state.active == "modem2"
    assert move == ps.Move(None, "modem2", "modem2 path usable")


def test_primary_when_iot_is_unusable_from_the_start() -> None:
    state, move = ps.on_facts(ps.PathState(), paths(iot_up=False))
    assert state.active == "modem1" and move is not None


def test_iot_link_down_moves_at_once_and_no_address_too() -> None:
    state, _ = ps.on_facts(ps.PathState(), paths())
    down, move = ps.on_facts(state, paths(iot_up=False))
    assert down.active == "modem1"
    assert move is not None and "wwan1 down" in move.reason
    noaddr, move = ps.on_facts(state, paths(iot_addr=False))
    assert noaddr.active == "modem1" and move is not None and "no address" in move.reason


def test_nothing_usable_means_no_active_path() -> None:
    state, _ = ps.on_facts(ps.PathState(), paths())
    none, move = ps.on_facts(state, paths(iot_up=False, primary_up=False))
    assert none.active is None
    assert move is not None and "no other usable path" in move.reason


def test_blackhole_moves_to_the_other_path() -> None:
    state, _ = ps.on_facts(ps.PathState(), paths())
    moved, move = ps.on_heartbeat_failed(state, paths(), via=None)
    assert moved.active == "modem1"
    assert move is not None and "silent" in move.reason
    # With no other path the failure changes nothing.
    alone, move = ps.on_heartbeat_failed(state, paths(primary_up=False), via=None)
    assert alone.active == "modem2" and move is None


def test_failback_after_n_acks_with_hysteresis() -> None:
    state = ps.PathState(active="modem1")
    assert ps.failback_candidate(state, paths()) == "modem2"
    s1, m1 = ps.on_heartbeat_acked(state, paths(), via="modem2", failback_after=3)
    s2, m2 = ps.on_heartbeat_acked(s1, paths(), via="modem2", failback_after=3)
    assert (s2.active, s2.failback_ok, m1, m2) == ("modem1", 2, None, None)
    # One failure in between starts the count again.
    s3, _ = ps.on_heartbeat_failed(s2, paths(), via="modem2")
    assert s3.active == "modem1" and s3.failback_ok == 0
    s = s3
    for _ in range(2):
        s, m = ps.on_heartbeat_acked(s, paths(), via="modem2", failback_after=3)
        assert m is None
    s, m = ps.on_heartbeat_acked(s, paths(), via="modem2", failback_after=3)
    assert s.active == "modem2" and m is not None and "3 heartbeats" in m.reason


def test_no_failback_candidate_when_iot_active_or_unusable() -> None:
    assert ps.failback_candidate(ps.PathState(active="modem2"), paths()) is None
    assert ps.failback_candidate(ps.PathState(active="modem1"), paths(iot_up=False)) is None


def test_acks_over_the_active_path_change_nothing() -> None:
    state = ps.PathState(active="modem2")
    assert ps.on_heartbeat_acked(state, paths(), via=None, failback_after=3) == (state, None)
