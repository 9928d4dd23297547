"""The data-budget projection: the mean of one whole round of the cadence rule.

A steady router's heartbeats, chosen by :func:`remsim_supervisor.core.cadence.report`
(``stats`` with every 10th, ``modem_info`` with every 60th), are recorded one
by one; at every point after the first round the projection is the long-run
average, where a 20-heartbeat window swung with the one ``modem_info``
heartbeat it held one time in three.
"""

from __future__ import annotations

import json
import statistics

from remsim_supervisor.core import cadence
from remsim_supervisor.core.ionmesh import Exchange
from remsim_supervisor.supervisor.usage import MONTH_S, TCP_IP_OVERHEAD, WireUsage

BARE = 330  # HTTP request and answer of a heartbeat with neither
STATS = {"uptime_seconds": 86400, "signal_rssi": -65, "signal_rsrp": -95,
         "data_rx_bytes": 123456789, "data_tx_bytes": 98765432}
INFO = {"vendor": "V", "model": "M", "firmware": "F1", "network": "Lab Mobile"}


def steady_day(beats: int) -> list[Exchange]:
    out, last = [], None
    for _ in range(beats):
        stats, info = cadence.report(STATS, INFO, "modem2", last)
        extra = sum(len(json.dumps(part)) + 12 for part in (stats, info) if part)
        out.append(Exchange(200, 1.0, BARE + extra, 200, False, None, None))
        last = cadence.reported(last, stats, info, "modem2")
    return out


def test_the_projection_is_the_long_run_mean_at_every_point_of_a_steady_day() -> None:
    exchanges = steady_day(1440)
    wire = [e.bytes_sent + e.bytes_received + TCP_IP_OVERHEAD for e in exchanges]
    day_mean = statistics.fmean(wire)
    assert max(wire) - min(wire) > 200  # the modem_info heartbeat weighs
    usage = WireUsage()
    seen = []
    for i, exchange in enumerate(exchanges):
        usage.record(exchange, 60.0)
        if i >= cadence.INFO_EVERY - 1:
            per_beat = usage.per_beat()
            assert per_beat is not None
            seen.append(per_beat)
    assert max(seen) - min(seen) <= 1  # rounding only
    assert abs(seen[-1] - day_mean) <= 1
    assert usage.projected_30d(60.0) == round(seen[-1] * MONTH_S / 60.0)
    assert usage.total == sum(wire)


def test_a_20_heartbeat_window_swung_with_the_modem_info_heartbeat() -> None:
    """What the round-long window replaced: one heartbeat in 60 carries modem_info,
    so a 20-heartbeat mean was high for a third of the hour and low for the rest."""
    wire = [e.bytes_sent + e.bytes_received + TCP_IP_OVERHEAD for e in steady_day(1440)]
    info_extra = len(json.dumps(INFO)) + 12
    window = [statistics.fmean(wire[i - 20:i]) for i in range(120, len(wire))]
    assert max(window) - min(window) >= info_extra / 20 - 0.01


def test_each_recorded_heartbeat_is_told_to_the_listener() -> None:
    usage = WireUsage()
    told: list[int] = []
    usage.on_record = lambda: told.append(usage.total)
    for exchange in steady_day(3):
        usage.record(exchange, 60.0)
    assert len(told) == 3 and told[-1] == usage.total  # told after the bytes are counted
