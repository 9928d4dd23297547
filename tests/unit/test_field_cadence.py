"""The heartbeat's cadence rules on simulated time: interval bounds, backoff after
server errors, what a carrier's forgetting of idle flows teaches, the schedule watch."""

from __future__ import annotations

from typing import Any

import pytest

from remsim_supervisor.config import ConfigError, parse_config
from remsim_supervisor.core import cadence
from remsim_supervisor.core.cadence import (
    RELEARN_S,
    IdleLimit,
    ServerTrouble,
    clamp_interval,
    command_summary,
    interval_bounds,
    schedule_fault,
    server_trouble,
)

# --- the interval --------------------------------------------------------------------------------

def test_bounds_keep_a_whole_timeout_and_the_margin_inside_the_grace() -> None:
    assert interval_bounds(10, 300, 30, 10) == (10.0, 260.0)
    low, high = interval_bounds(10, 300, 30, 10)
    assert clamp_interval(10**9, low, high) == 260.0  # a server's nonsense
    assert clamp_interval(1, low, high) == 10.0  # a server spending the IoT plan
    assert clamp_interval(0, low, high) == 10.0
    assert clamp_interval(60, low, high) == 60.0  # a sane request is taken as it is


def test_when_the_bounds_cross_the_sim_wins() -> None:
    # A short grace with a long minimum: the heartbeat must still beat the deadline.
    low, high = interval_bounds(60, 40, 10, 10)
    assert (low, high) == (20.0, 20.0)
    assert clamp_interval(10**9, low, high) == 20.0
    assert interval_bounds(1, 5, 4, 10) == (1.0, 1.0)  # never below one second


def test_with_the_clamped_interval_the_grace_never_falls_below_the_margin() -> None:
    grace, margin, timeout = 300.0, 30.0, 10.0
    low, high = interval_bounds(10, grace, margin, timeout)
    interval = clamp_interval(10**9, low, high)
    # The next heartbeat goes out an interval after the last ack and takes at most
    # a timeout: the grace left when it is acknowledged.
    assert grace - (interval + timeout) >= margin


# --- server errors ------------------------------------------------------------------------------

def test_backoff_after_server_errors_doubles_and_never_exceeds_the_interval() -> None:
    trouble = server_trouble(None, "500", now=100.0)
    delays = []
    for i in range(6):
        delays.append(trouble.retry_in(60.0))
        trouble = server_trouble(trouble, f"500 #{i}", now=200.0)
    assert delays == [15.0, 30.0, 60.0, 60.0, 60.0, 60.0]
    assert trouble.count == 7 and trouble.since == 100.0  # since the first of the run
    assert trouble.status(now=160.0) == {"message": "500 #5", "count": 7, "since_s": 60.0}
    # A lab interval: never sooner than a second.
    assert ServerTrouble("x", 1, 0.0).retry_in(2.0) == 1.0


# --- carriers forgetting idle flows --------------------------------------------------------------

def test_idle_limit_learned_per_modem_and_used_with_slack() -> None:
    limit = IdleLimit()
    assert not limit.fresh("modem2", 500.0, now=0.0)  # nothing learned: keep the connection
    limit = limit.forgot("modem2", 300.0, now=10.0)  # dead after 300 s idle
    assert limit.learned("modem2", 10.0) == 300.0
    assert limit.fresh("modem2", 300.0, now=20.0)
    assert limit.fresh("modem2", 240.0, now=20.0)  # coarse carrier timers: a fifth of slack
    assert not limit.fresh("modem2", 200.0, now=20.0)
    assert not limit.fresh("modem2", None, now=20.0)  # no connection to judge
    assert not limit.fresh("modem1", 1000.0, now=20.0)  # the other carrier taught nothing
    limit = limit.forgot("modem2", 120.0, now=30.0)
    assert limit.learned("modem2", 30.0) == 120.0  # the shortest seen wins
    limit = limit.forgot("modem2", 400.0, now=40.0)
    assert limit.learned("modem2", 40.0) == 120.0
    assert limit.status(40.0) == {"modem2": 120.0}


def test_idle_limit_is_learned_again_after_a_while() -> None:
    limit = IdleLimit().forgot("modem2", 30.0, now=0.0)
    assert limit.fresh("modem2", 60.0, now=RELEARN_S - 1)
    # One unlucky loss must not cost a fresh connection per heartbeat for ever.
    assert not limit.fresh("modem2", 60.0, now=RELEARN_S)
    assert limit.status(RELEARN_S) == {}
    limit = limit.forgot("modem2", 90.0, now=RELEARN_S + 1)
    assert limit.learned("modem2", RELEARN_S + 1) == 90.0


# --- the schedule ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("now", "in_flight", "fault"), [
    (100.0 + 60 + 10, None, False),  # exactly interval + timeout after the last one
    (100.0 + 60 + 10.5, None, True),
    (100.0 + 500, 100.0 + 470, False),  # under way for 30 s: not (yet) a fault
    (100.0 + 500, 100.0 + 440, True),  # under way for a minute: stuck
])
def test_schedule_fault(now: float, in_flight: float | None, fault: bool) -> None:
    reason = schedule_fault(now, 100.0, in_flight, 60.0, 10.0)
    assert (reason is not None) == fault
    if reason is not None:
        assert "\n" not in reason and " s" in reason


def test_commands_summary_is_bounded() -> None:
    commands = [{"action": "x" * 500}, *range(19_999)]
    line = command_summary(commands[:16], 20_000)
    assert line.endswith(" and 19997 more") and len(line) < 300
    assert command_summary(["reboot"], 1) == "'reboot'"
    assert command_summary([], 0) == ""
    assert cadence.SHOWN_COMMANDS == 3


# --- the option ----------------------------------------------------------------------------------

def test_the_minimum_interval_is_an_option() -> None:
    base = ("config ionmesh 'ionmesh'\n\toption url 'http://h:5000'\n{extra}"
            "config modem 'm1'\n\toption role 'primary'\n\toption usb_path '1-1'\n")
    assert parse_config(base.format(extra=""), "/c").ionmesh.min_heartbeat_interval == 10
    cfg = parse_config(base.format(extra="\toption min_heartbeat_interval '2'\n"), "/c")
    assert cfg.ionmesh.min_heartbeat_interval == 2
    with pytest.raises(ConfigError) as info:
        parse_config(base.format(extra="\toption min_heartbeat_interval '0'\n"), "/c")
    assert [str(p) for p in info.value.problems] == [
        "/c:3: ionmesh.min_heartbeat_interval: must be between 1 and 3600 seconds, not 0"]


# -- what a heartbeat tells about the router ------------------------------------------

STATS = {"uptime_seconds": 100, "signal_rssi": -71, "signal_rsrp": -101,
         "data_rx_bytes": 1000, "data_tx_bytes": 2000}
INFO = {"vendor": "Quectel", "model": "EC25", "firmware": "EC25EFAR06A08M4G",
        "network": "1NCE"}


def beat(last: cadence.Reported | None, stats: dict[str, Any] = STATS,
         info: dict[str, Any] = INFO, carrier: str = "modem2",
         ) -> tuple[tuple[Any, Any], cadence.Reported]:
    sent = cadence.report(dict(stats), dict(info), carrier, last)
    return sent, cadence.reported(last, sent[0], sent[1], carrier)


def test_the_first_heartbeat_tells_everything_then_only_news_or_every_tenth() -> None:
    (stats, info), last = beat(None)
    assert stats == STATS and info == INFO
    carried = []
    for n in range(1, 25):
        growing = {**STATS, "uptime_seconds": 100 + 60 * n, "data_rx_bytes": 1000 + n}
        (stats, info), last = beat(last, growing)
        carried.append((stats is not None, info is not None))
    # counters and uptime only grow: no news; stats every 10th, modem_info not yet
    assert [n for n, (s, _) in enumerate(carried, 1) if s] == [10, 20]
    assert not any(i for _, i in carried)


def test_news_goes_at_once() -> None:
    _, last = beat(None)
    (stats, _), _ = beat(last, {**STATS, "signal_rsrp": -103})  # 2 dB: no news
    assert stats is None
    (stats, _), last = beat(last, {**STATS, "signal_rsrp": -108})  # 7 dB
    assert stats is not None and stats["signal_rsrp"] == -108
    (stats, _), last = beat(last, {**STATS, "signal_rsrp": -108}, carrier="modem1")
    assert stats is not None  # another modem carries the heartbeat now
    (stats, _), last = beat(last, {k: v for k, v in STATS.items() if k != "signal_rsrp"},
                            carrier="modem1")
    assert stats is not None  # the signal reading went away
    (_, info), last = beat(last, carrier="modem1", info={**INFO, "network": "Telekom.de"})
    assert info == {**INFO, "network": "Telekom.de"}


def test_modem_info_every_sixtieth_and_an_unacknowledged_heartbeat_sends_again() -> None:
    _, last = beat(None)
    infos = []
    for _ in range(120):
        (_, info), last = beat(last)
        infos.append(info is not None)
    assert [n for n, sent in enumerate(infos, 1) if sent] == [60, 120]
    # a heartbeat that was not acknowledged leaves `last` as it was: the next
    # one decides anew (here: stats are due, so they go)
    for _ in range(9):
        _, last = beat(last)
    due = cadence.report(dict(STATS), dict(INFO), "modem2", last)
    assert due[0] is not None
    assert cadence.report(dict(STATS), dict(INFO), "modem2", last) == due


def test_a_day_of_heartbeats_costs_close_to_the_bare_one() -> None:
    # 1,440 heartbeats at 60 s with a signal wandering by up to 4 dB: the average
    # JSON body is within 20 bytes of a heartbeat that carries nothing.
    from remsim_supervisor.adapters.ionmesh import encode_json

    bare = len(encode_json({"client_id": "router-001", "status": "active"}))
    last = None
    total = 0
    for n in range(1440):
        stats = {**STATS, "uptime_seconds": 60 * n, "data_rx_bytes": 5000 * n,
                 "signal_rsrp": -101 + (n % 5) - 2}
        sent = cadence.report(stats, dict(INFO), "modem2", last)
        last = cadence.reported(last, sent[0], sent[1], "modem2")
        total += len(encode_json({"client_id": "router-001", "status": "active",
                                  "stats": sent[0], "modem_info": sent[1]}))
    assert total / 1440 - bare < 20, total / 1440 - bare
