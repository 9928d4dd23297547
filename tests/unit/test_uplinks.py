"""The LAN failover's pure choice (core/uplinks.py) in simulated time, its facts
gathered and carried out (supervisor/lanfailover.py) with a kernel stand-in, and
the ``lan`` section's checks."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from remsim_supervisor.config import ConfigError, parse_config
from remsim_supervisor.config.types import LanConfig
from remsim_supervisor.core.uplinks import (
    Choice,
    DailyUsage,
    ProbeRecord,
    UplinkFacts,
    budget_left,
    choose,
    count_usage,
    probe_round,
    problem,
)
from remsim_supervisor.supervisor.lanfailover import LanFailover
from remsim_supervisor.supervisor.usage import ModemView

HOLD = 30.0


def good(name: str, kind: str = "device", **kw: Any) -> UplinkFacts:
    values: dict[str, Any] = {"device": name, "link": True, "address": True, "probe": True}
    if kind != "device":
        values["registered"] = True
    values.update(kw)
    return UplinkFacts(name=name, kind=kind, **values)


def test_the_first_usable_uplink_is_chosen_and_says_why() -> None:
    choice = choose([good("eth1"), good("wwan0", "primary")], Choice(), 0.0, HOLD)
    assert (choice.active, choice.reason) == ("eth1", "eth1 is the first usable uplink")
    choice = choose([good("eth1", link=False), good("wwan0", "primary")], Choice(), 0.0, HOLD)
    assert choice.active == "wwan0"


@pytest.mark.parametrize(("facts", "why"), [
    ({"device": None}, "no data device"),
    ({"link": None}, "link not known yet"),
    ({"link": False}, "link down"),
    ({"address": False}, "no address"),
    ({"registered": False}, "not registered"),
    ({"probe": False}, "probes unanswered"),
    ({"budget_left": 0}, "daily cap reached"),
])
def test_each_fact_that_makes_an_uplink_unusable(facts: dict[str, Any], why: str) -> None:
    assert problem(good("x", "iot", **{"budget_left": 1, **facts})) == why
    assert problem(good("x", "iot", budget_left=1)) is None
    assert problem(good("x", probe=None)) is None  # no verdict yet is no fault


def test_failover_at_once_and_failback_only_after_the_hold() -> None:
    wan, primary = good("eth1"), good("wwan0", "primary")
    c = choose([wan, primary], Choice(), 0.0, HOLD)
    c = choose([good("eth1", link=False), primary], c, 10.0, HOLD)
    assert (c.active, c.since, c.reason) == ("wwan0", 10.0, "failover: eth1: link down")
    # Back up: it waits out the hold, and a bad fact in between starts the wait again.
    c = choose([wan, primary], c, 20.0, HOLD)
    assert (c.active, c.waiting, c.failback_in(20.0, HOLD)) == ("wwan0", "eth1", HOLD)
    c = choose([wan, primary], c, 49.9, HOLD)
    assert c.active == "wwan0"
    c = choose([good("eth1", probe=False), primary], c, 50.0, HOLD)
    assert (c.active, c.waiting) == ("wwan0", None)
    c = choose([wan, primary], c, 51.0, HOLD)
    c = choose([wan, primary], c, 80.9, HOLD)
    assert c.active == "wwan0" and c.failback_in(80.9, HOLD) == pytest.approx(0.1)
    c = choose([wan, primary], c, 81.0, HOLD)
    assert (c.active, c.reason) == ("eth1", "failback: eth1 usable for 30 s")


def test_a_better_backup_does_not_wait_but_nothing_usable_gives_no_choice() -> None:
    wan, primary, iot = good("eth1"), good("wwan0", "primary"), good("wwan1", "iot")
    c = choose([wan, primary, iot], Choice(), 0.0, HOLD)
    c = choose([good("eth1", link=False), good("wwan0", "primary", link=False), iot], c, 1, HOLD)
    assert c.active == "wwan1"
    c = choose([good("eth1", link=False), good("wwan0", "primary", link=False),
                good("wwan1", "iot", budget_left=-5)], c, 2.0, HOLD)
    assert c.active is None and c.reason.startswith("no usable uplink (eth1: link down;")
    assert "wwan1: daily cap reached" in c.reason
    # From no choice, the first usable one is taken at once (no hold).
    c = choose([good("eth1", link=False), primary, iot], c, 3.0, HOLD)
    assert c.active == "wwan0"


def test_probe_verdicts_need_misses_in_a_row_and_answers_in_a_row() -> None:
    r = ProbeRecord()
    r = probe_round(r, True, 2, 2)
    assert r.verdict is True
    r = probe_round(r, False, 2, 2)
    assert r.verdict is True  # one miss is not a verdict
    r = probe_round(probe_round(r, True, 2, 2), False, 2, 2)
    assert r.verdict is True
    r = probe_round(r, False, 2, 2)
    assert (r.verdict, r.failures) == (False, 2)
    r = probe_round(r, True, 2, 2)
    assert r.verdict is False
    r = probe_round(r, True, 2, 2)
    assert r.verdict is True
    assert probe_round(ProbeRecord(), False, 1, 1).verdict is False


def test_daily_usage_across_a_counter_reset_and_midnight() -> None:
    u = count_usage(DailyUsage(), "2026-12-07", 1_000)
    assert u.used == 0  # the first reading is where counting starts
    u = count_usage(u, "2026-12-07", 6_000)
    assert u.used == 5_000
    u = count_usage(u, "2026-12-07", 300)  # the device was re-created
    assert u.used == 5_300
    u = count_usage(u, "2026-12-07", None)  # gone for now: the count stays
    assert (u.used, u.last) == (5_300, None)
    u = count_usage(u, "2026-12-07", 700)
    assert u.used == 5_300
    assert budget_left(10_000, u, "2026-12-07") == 4_700
    assert budget_left(10_000, u, "2026-12-08") == 10_000  # a new day, a new budget
    u = count_usage(u, "2026-12-08", 1_700)
    assert u.used == 1_000
    assert budget_left(None, u, "2026-12-08") is None


BASE = """config ionmesh 'i'
\toption url 'http://192.0.2.1:5000'
config modem 'modem1'
\toption role 'primary'
\toption usb_path '1-1'
"""


def test_the_lan_section_is_off_by_default_and_read() -> None:
    assert parse_config(BASE, "f").lan == LanConfig()
    lan = parse_config(BASE + "config lan 'lan'\n\toption enabled '1'\n\tlist uplink 'eth1'\n"
                       "\tlist uplink 'primary'\n\tlist probe '192.0.2.7'\n"
                       "\tlist probe '192.0.2.8:443'\n\toption iot_daily_cap_mb '20'\n"
                       "\toption failback_hold '10'\n", "f").lan
    assert (lan.enabled, lan.uplinks, lan.probes) == (
        True, ("eth1", "primary"), ("192.0.2.7", "192.0.2.8:443"))
    assert (lan.iot_daily_cap_mb, lan.failback_hold, lan.table, lan.priority) == (
        20.0, 10, 241, 95)


@pytest.mark.parametrize(("lines", "message"), [
    ("", "f:6: lan.uplink: required with enabled 1"),
    ("\tlist uplink 'eth1'\n\toption priority '90'\n",
     "lan.priority: must be above routing.priority (90)"),
    ("\tlist uplink 'eth1'\n\toption table '239'\n", "uses table 240: it is routing.table"),
    ("\tlist uplink 'eth1'\n\tlist probe 'example.com'\n", "lan.probe: must be an IPv4 address"),
    ("\tlist uplink 'eth1'\n\tlist probe '192.0.2.1:0'\n", "must be from 1 to 65535"),
    ("\tlist uplink 'a'\n\tlist uplink 'b'\n\toption probe_mark '0x8000000'\n",
     "uplink 2 the mark 0x10000000"),
    ("\tlist uplink 'eth1'\n\toption priority '9998'\n", "puts a rule at 10000: netifd"),
])
def test_lan_problems_are_one_line_each(lines: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(BASE + "config lan 'lan'\n\toption enabled '1'\n" + lines, "f")
    assert len(err.value.problems) == 1
    assert message in str(err.value.problems[0])


class FakeKernel:
    """The kernel side as the policy sees it: what it was told, and counters."""

    def __init__(self) -> None:
        self.applied: list[Any] = []
        self.probe_tables: list[list[Any]] = []
        self.counters: dict[str, int] = {"wwan1": 0}
        self.cleared = 0
        self.down: set[str] = set()

    def mark(self, n: int) -> int:
        return 0x01000000 << (n - 1)

    def apply(self, active: Any) -> None:
        self.applied.append(active)

    def apply_probes(self, paths: list[Any]) -> list[str]:
        self.probe_tables.append(paths)
        return []

    def clear(self) -> None:
        self.cleared += 1

    def read(self, devices: list[str]) -> dict[str, Any]:
        from remsim_supervisor.adapters.routing import LinkInfo

        return {d: (LinkInfo(d, True, d not in self.down, (f"10.0.{len(d)}.2",)), "10.0.0.1")
                for d in devices}

    def counter(self, device: str) -> int | None:
        return self.counters.get(device)

    def mwan3_rules(self) -> list[str]:
        return []


def test_policy_probes_moves_and_counts_the_cap_in_simulated_time() -> None:
    async def scenario() -> None:
        now = [0.0]
        answering = {"eth1": True, "wwan0": True, "wwan1": True}
        probed: list[tuple[str, int]] = []

        def prober(target: str, *, mark: int, device: str, timeout: float) -> bool:
            probed.append((device, mark))
            return answering[device]

        modems = [ModemView("modem1", "primary", "wwan0", None, {"state": "connected"}),
                  ModemView("modem2", "iot", "wwan1", None, {"state": "connected"})]
        kernel = FakeKernel()
        cfg = LanConfig(enabled=True, uplinks=("eth1", "primary", "iot"), probes=("192.0.2.9",),
                        probe_interval=1.0, failback_hold=5, iot_daily_cap_mb=0.001)
        lan = LanFailover(cfg, lambda: modems, kernel=kernel,  # type: ignore[arg-type]
                          clock=lambda: now[0],
                          wall=lambda: 1_800_000_000.0, prober=prober,
                          mwan3=lambda rules: None)
        task = asyncio.create_task(lan.run())

        async def settle() -> None:
            for _ in range(20):
                await asyncio.sleep(0.01)

        await settle()
        assert lan.status()["active"] == "eth1"
        assert kernel.applied[-1].device == "eth1"
        assert [p.device for p in kernel.probe_tables[-1]] == ["eth1", "wwan0", "wwan1"]
        # The IoT modem is not probed while others carry the LAN.
        assert {d for d, _m in probed} == {"eth1", "wwan0"}
        assert dict(probed)["wwan0"] == 0x02000000
        # A link event moves the LAN without waiting for a probe round.
        kernel.down.add("eth1")
        lan.links_changed("eth1", False)
        await asyncio.sleep(0.01)
        assert lan.status()["active"] == "primary"
        assert kernel.applied[-1].device == "wwan0"
        # The primary goes silent too: after two unanswered rounds the IoT modem takes over.
        answering["wwan0"] = False
        for _ in range(3):
            now[0] += 1.0
            lan._wake.set()
            await settle()
        status = lan.status()
        assert status["active"] == "iot" and status["reason"] == \
            "failover: primary: probes unanswered"
        # 1 kB cap: 2 kB through it, and the IoT modem stops carrying the LAN.
        kernel.counters["wwan1"] += 2_000
        now[0] += 1.0
        lan._wake.set()
        await settle()
        status = lan.status()
        assert status["active"] is None and status["state"] == "no usable uplink"
        iot = status["uplinks"][2]
        assert (iot["problem"], iot["used_today_mb"]) == ("daily cap reached", 0.002)
        assert kernel.applied[-1] is None
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert kernel.cleared == 1
        assert lan.status()["moves"] == 4

    asyncio.run(scenario())


def test_off_by_default_does_nothing_until_a_reload_turns_it_on_and_off() -> None:
    async def scenario() -> None:
        kernel = FakeKernel()
        lan = LanFailover(LanConfig(), lambda: [], kernel=kernel,  # type: ignore[arg-type]
                          prober=lambda *a, **k: True, mwan3=lambda rules: None)
        task = asyncio.create_task(lan.run())
        await asyncio.sleep(0.05)
        lan.links_changed("eth1", False)
        assert lan.status() == {"enabled": False, "state": "off"}
        assert kernel.applied == [] and kernel.probe_tables == []
        lan.configure(LanConfig(enabled=True, uplinks=("eth1",), probe_interval=0.05))
        for _ in range(50):
            await asyncio.sleep(0.01)
            if lan.status().get("active") == "eth1":
                break
        assert lan.status()["active"] == "eth1" and kernel.applied[-1].device == "eth1"
        lan.configure(LanConfig())
        await asyncio.sleep(0.05)
        assert lan.status() == {"enabled": False, "state": "off"}
        assert kernel.cleared == 1  # what it made is gone
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())


def test_mwan3_is_found_by_its_configuration_processes_or_rules(tmp_path: Any) -> None:
    from remsim_supervisor.adapters.lanroutes import mwan3_reason

    proc = tmp_path / "proc"
    (proc / "1").mkdir(parents=True)
    (proc / "1" / "cmdline").write_bytes(b"/sbin/procd\0")
    config = tmp_path / "mwan3"
    assert mwan3_reason(str(config), str(proc)) is None  # no file, no process, no rule
    config.write_text("config interface 'wan'\n\toption enabled '0'\n")
    assert mwan3_reason(str(config), str(proc)) is None  # installed, nothing enabled
    config.write_text("config interface 'wan'\n\toption enabled '1'\n"
                      "config interface 'wwan'\n\toption enabled '1'\n")
    assert mwan3_reason(str(config), str(proc)) == f"{config} enables wan, wwan"
    (proc / "77").mkdir()
    (proc / "77" / "cmdline").write_bytes(b"/bin/sh\0/usr/sbin/mwan3track\0wan\0")
    assert mwan3_reason(str(tmp_path / "none"), str(proc)) == "mwan3track running"
    assert mwan3_reason(str(tmp_path / "none"), str(tmp_path / "noproc"),
                        ["2001: fwmark 0x100/0x3f00"]) == \
        "mwan3's rules in place (2001: fwmark 0x100/0x3f00)"


def test_status_screen_shows_the_lan_line_only_when_on() -> None:
    from remsim_supervisor.supervisor.statusview import render

    base = {"version": "x", "pid": 1, "uptime_s": 1}
    assert "lan " not in render({**base, "lan": {"enabled": False, "state": "off"}})
    text = render({**base, "lan": {
        "enabled": True, "state": "active", "active": "primary", "device": "wwan0",
        "reason": "failover: eth1: link down", "failback_to": "eth1", "failback_in_s": 12.0,
        "uplinks": [{"name": "eth1", "problem": None},
                    {"name": "iot", "problem": "daily cap reached", "cap_mb": 50,
                     "used_today_mb": 50.2}]}})
    assert "lan       via primary (wwan0): failover: eth1: link down" in text
    assert "failback to eth1 in 12.0 s" in text
    assert "iot: daily cap reached; 50.2 of 50 MB today" in text
    assert "left to mwan3 (mwan3track running)" in render({**base, "lan": {
        "enabled": True, "state": "left to mwan3", "mwan3": "mwan3track running"}})
