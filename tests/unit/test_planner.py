"""The recovery planner over simulated time: no clock, no I/O, hours in milliseconds."""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from remsim_supervisor.core.costs import FALLBACK_MODEL, CostModel
from remsim_supervisor.core.planner import (
    HOUR_S,
    RETRY_BASE_S,
    RETRY_MAX_S,
    RUNGS,
    Attempt,
    ModemHealth,
    Rung,
    Step,
    Wait,
    default_ladder,
    plan,
    retry_gap,
)
from remsim_supervisor.vendors import MODEL_KEYS, PROFILES, RUNG_COSTS

# The per-model defaults come from the vendor profiles.
DEFAULT_COSTS = RUNG_COSTS


def costs_model(**kwargs: object) -> CostModel:
    return CostModel(defaults=RUNG_COSTS, **kwargs)  # type: ignore[arg-type]

ALL = frozenset({"interface", "usb", "reset_gpio", "power_gpio"})
RESETS = {r.name for r in default_ladder(RUNG_COSTS["ec25"]) if r.resets_modem}
GRACE, MARGIN = 300.0, 30.0


def modem(name: str = "modem2", role: str = "iot", model: str = "ec25", ok: bool = False,
          caps: frozenset[str] = ALL, at: bool = True,
          down_since: float | None = None) -> ModemHealth:
    return ModemHealth(name, role, model, ok, caps, at, down_since)


IOT_DOWN = modem()
PRIMARY_OK = modem("modem1", "primary", ok=True)
PRIMARY_DOWN = modem("modem1", "primary")


def decide(now: float, modems: Sequence[ModemHealth], history: Sequence[Attempt] = (), *,
           last_ack: float = 0.0, cap: int = 6, costs: CostModel | None = None,
           path: str | None = None, ladder: Sequence[Rung] | None = None
           ) -> Step | Wait | None:
    return plan(now, last_ack, GRACE, MARGIN, modems, history, costs=costs or costs_model(),
                max_resets_per_hour=cap, ladder=ladder, path=path)


def failed(modem_name: str, rung: str, started: float, ended: float) -> Attempt:
    return Attempt(modem_name, rung, started, ended, False)


# --- the ladder and its costs ------------------------------------------------------------------

def test_default_ladder_is_the_seven_rungs_cheapest_first() -> None:
    ladder = default_ladder(costs_model().row("EC25"))
    assert tuple(r.name for r in ladder) == RUNGS == (
        "reroute", "ifup", "radio_cycle", "soft_reset", "usb_reauth", "gpio_reset",
        "power_cycle")
    assert {"soft_reset", "usb_reauth", "gpio_reset", "power_cycle"} == RESETS
    assert {r.name: r.requires for r in ladder} == {
        "reroute": "peer", "ifup": "interface", "radio_cycle": "at", "soft_reset": "at",
        "usb_reauth": "usb", "gpio_reset": "reset_gpio", "power_cycle": "power_gpio"}
    assert next(r for r in ladder if r.name == "soft_reset").cost_s == 120.0  # MODEMS.md
    # A stronger rung never recovers sooner than the soft reset it escalates from.
    for model in DEFAULT_COSTS:
        costs = DEFAULT_COSTS[model]
        assert costs["power_cycle"] >= costs["gpio_reset"] >= costs["soft_reset"] > costs["ifup"]


def test_unknown_and_unidentified_models_get_the_conservative_generic_costs() -> None:
    model = costs_model()
    assert FALLBACK_MODEL == "generic"
    assert model.row("auto") == model.row("generic") == model.row("nokia") == RUNG_COSTS["generic"]
    assert costs_model().expected("auto", "soft_reset") == 120.0


def test_fm350_and_l850_recover_faster_than_ec25_per_modems_md() -> None:
    costs = costs_model()
    assert costs.expected("fm350gl", "soft_reset") < costs.expected("ec25", "soft_reset")
    assert costs.expected("l850gl", "soft_reset") < costs.expected("ec25", "soft_reset")


def test_overrides_replace_defaults_model_specific_first() -> None:
    costs = costs_model(overrides={("*", "ifup"): 12.0, ("ec25", "ifup"): 8.0,
                                 ("EC25", "soft_reset"): 90.0})
    assert costs.expected("ec25", "ifup") == 8.0
    assert costs.expected("fm350gl", "ifup") == 12.0
    assert costs.expected("ec25", "soft_reset") == 90.0
    assert costs.expected("ec25", "my_rung", default=7.0) == 7.0
    with pytest.raises(KeyError):
        costs.expected("ec25", "my_rung")
    with pytest.raises(ValueError):
        costs_model(overrides={("ec25", "ifup"): -1.0})


def test_observed_recoveries_move_the_estimate_within_bounds() -> None:
    base = costs_model()
    once = base.observe("ec25", "soft_reset", 40.0)
    assert base.expected("ec25", "soft_reset") == 120.0  # immutable update
    assert once.expected("ec25", "soft_reset") == pytest.approx(120.0 + 0.3 * (40.0 - 120.0))
    fast = base
    for _ in range(50):
        fast = fast.observe("ec25", "soft_reset", 1.0)
    assert fast.expected("ec25", "soft_reset") == pytest.approx(30.0)  # 0.25 x 120
    slow = base
    for _ in range(50):
        slow = slow.observe("ec25", "usb_reauth", 10_000.0)
    assert slow.expected("ec25", "usb_reauth") == pytest.approx(120.0)  # 4 x 30
    assert slow.expected("fm350gl", "usb_reauth") == 30.0  # other models untouched
    assert base.observe("ec25", "ifup", math.nan) is base
    assert base.observe("ec25", "ifup", -5.0) is base


# --- the rules, one by one ---------------------------------------------------------------------

def test_nothing_to_do_while_every_modem_can_carry_the_heartbeat() -> None:
    iot_ok = replace(IOT_DOWN, heartbeat_ok=True)
    assert decide(100.0, [iot_ok, PRIMARY_OK]) is None


def test_reroute_first_when_the_other_modem_can_carry_the_heartbeat() -> None:
    step = decide(100.0, [IOT_DOWN, PRIMARY_OK])
    assert isinstance(step, Step)
    assert (step.modem, step.rung, step.urgent) == ("modem1", "reroute", True)
    assert step.grace_left_s == 200.0
    assert "modem2 cannot carry the heartbeat, modem1 can" in step.reason


def test_while_the_reroute_runs_the_broken_modem_is_repaired() -> None:
    history = [Attempt("modem1", "reroute", 100.0, None, None)]
    step = decide(100.0, [IOT_DOWN, PRIMARY_OK], history)
    assert isinstance(step, Step) and (step.modem, step.rung) == ("modem2", "ifup")


def test_a_failed_reroute_is_retried_only_after_the_retry_gap() -> None:
    history = [failed("modem1", "reroute", 100.0, 110.0),
               Attempt("modem2", "ifup", 100.0, None, None)]
    wait = decide(120.0, [IOT_DOWN, PRIMARY_OK], history)
    assert isinstance(wait, Wait) and wait.until == 110.0 + retry_gap(1)
    step = decide(wait.until, [IOT_DOWN, PRIMARY_OK], history)
    assert isinstance(step, Step) and step.rung == "reroute"


def test_background_repair_never_touches_the_carrier_and_is_not_urgent() -> None:
    step = decide(100.0, [IOT_DOWN, PRIMARY_OK], path="modem1", last_ack=90.0)
    assert isinstance(step, Step)
    assert (step.modem, step.rung, step.urgent, step.best_effort) == (
        "modem2", "ifup", False, False)
    assert "heartbeat rides modem1" in step.reason


def test_background_repair_climbs_the_whole_ladder_even_past_the_deadline_arithmetic() -> None:
    # The heartbeat is fine: a 130 s power cycle need not fit any deadline.
    history = [failed("modem2", r, 0.0, 1.0) for r in RUNGS[1:-1]]
    step = decide(2.0, [IOT_DOWN, PRIMARY_OK], history, path="modem1", last_ack=0.0)
    assert isinstance(step, Step) and step.rung == "power_cycle" and not step.best_effort


def test_climbs_one_rung_after_each_failure() -> None:
    history: list[Attempt] = []
    now, order = 0.0, []
    for _ in range(6):
        step = decide(now, [IOT_DOWN, PRIMARY_OK], history, path="modem1", last_ack=now)
        assert isinstance(step, Step)
        order.append(step.rung)
        history.append(failed(step.modem, step.rung, now, now + step.expected_s))
        now += step.expected_s
    assert order == list(RUNGS[1:])


def test_failure_noticed_late_goes_straight_to_a_step_that_still_fits() -> None:
    # 300 s grace, 30 s margin, 230 s gone: 40 s left to finish in. ifup was tried.
    history = [failed("modem2", "ifup", 200.0, 220.0)]
    step = decide(230.0, [IOT_DOWN], history)
    assert isinstance(step, Step)
    assert (step.rung, step.best_effort) == ("usb_reauth", False)
    assert step.expected_s == 30.0 and step.expected_s <= step.grace_left_s - MARGIN
    assert "skipped as too slow: radio_cycle, soft_reset" in step.reason


def test_noticed_at_once_the_same_modem_starts_at_the_bottom() -> None:
    step = decide(5.0, [IOT_DOWN])
    assert isinstance(step, Step) and step.rung == "ifup"


REPAIRS = [r for r in default_ladder(RUNG_COSTS["ec25"]) if r.name != "reroute"]
# What is chosen instead when a rung misses by half a second (all rungs below
# it failed once, at 0-1 s): the next untried rung that fits, else a retry of
# a cheaper one whose spacing has passed, else a best-effort try.
INSTEAD = {"ifup": ("ifup", True), "radio_cycle": ("usb_reauth", False),
           "soft_reset": ("usb_reauth", False), "usb_reauth": ("ifup", False),
           "gpio_reset": ("ifup", False), "power_cycle": ("ifup", False)}


@pytest.mark.parametrize("rung", REPAIRS, ids=[r.name for r in REPAIRS])
@pytest.mark.parametrize("spare", [0.0, -0.5], ids=["fits", "short"])
def test_each_rung_is_skipped_exactly_when_it_cannot_fit(rung: Rung, spare: float) -> None:
    below = REPAIRS[:REPAIRS.index(rung)]
    history = [failed("modem2", r.name, 0.0, 1.0) for r in below]
    # Now is chosen so that exactly rung.cost_s + spare seconds remain.
    now = GRACE - MARGIN - (rung.cost_s + spare)
    assert now >= 1.0
    result = decide(now, [IOT_DOWN], history)
    assert isinstance(result, Step)
    if spare >= 0:
        assert (result.rung, result.best_effort) == (rung.name, False)
        return
    assert (result.rung, result.best_effort) == INSTEAD[rung.name]
    if not result.best_effort:
        assert result.expected_s <= result.grace_left_s - MARGIN
    if result.rung != rung.name and result.rung != "ifup":
        assert rung.name in result.reason.partition("skipped as too slow: ")[2]


def test_rungs_without_their_capability_are_skipped() -> None:
    mute = modem(at=False, caps=frozenset({"interface", "usb"}))
    seen = []
    history: list[Attempt] = []
    now = 0.0
    for _ in range(2):
        step = decide(now, [mute, PRIMARY_OK], history, path="modem1", last_ack=now)
        assert isinstance(step, Step)
        seen.append(step.rung)
        history.append(failed("modem2", step.rung, now, now + 1))
        now += 1
    assert seen == ["ifup", "usb_reauth"]  # no AT: no radio cycle, no soft reset
    bare = modem(at=False, caps=frozenset())
    assert decide(0.0, [bare, PRIMARY_OK], path="modem1") is None


def test_a_modem_with_a_step_under_way_gets_no_second_one() -> None:
    history = [Attempt("modem2", "ifup", 10.0, None, None)]
    assert decide(12.0, [IOT_DOWN], history) is None


def test_both_failing_get_steps_on_both_cheapest_first() -> None:
    both = [IOT_DOWN, PRIMARY_DOWN]
    first = decide(10.0, both)
    assert isinstance(first, Step)
    # The iot modem carries the heartbeat: its ifup (20 s) beats the primary's
    # ifup plus the reroute that would have to follow (30 s).
    assert (first.modem, first.rung, first.expected_s) == ("modem2", "ifup", 20.0)
    history = [Attempt(first.modem, first.rung, 10.0, None, None)]
    second = decide(10.0, both, history)
    assert isinstance(second, Step)
    assert (second.modem, second.rung, second.expected_s) == ("modem1", "ifup", 30.0)


def test_both_failing_the_primary_wins_ties() -> None:
    no_reroute = [r for r in default_ladder(RUNG_COSTS["ec25"]) if r.name != "reroute"]
    step = decide(10.0, [IOT_DOWN, PRIMARY_DOWN], ladder=no_reroute)
    assert isinstance(step, Step) and step.modem == "modem1"


def test_deadline_out_of_reach_still_repairs_best_effort() -> None:
    step = decide(290.0, [IOT_DOWN])  # 10 s of grace left, 30 s margin
    assert isinstance(step, Step)
    assert step.best_effort and step.rung == "ifup"
    assert "best effort" in step.reason
    after = decide(5000.0, [IOT_DOWN])  # long past the deadline: still not abandoned
    assert isinstance(after, Step) and after.best_effort


def test_reset_cap_holds_back_until_the_oldest_reset_leaves_the_hour() -> None:
    history = [failed("modem2", r, t, t + 10) for r, t in (
        ("ifup", 0.0), ("radio_cycle", 10.0), ("soft_reset", 20.0), ("usb_reauth", 30.0))]
    iot = replace(IOT_DOWN, down_since=0.0)  # one incident all along

    def at(now: float) -> Step | Wait | None:
        return decide(now, [iot, PRIMARY_OK], history, last_ack=now, cap=2, path="modem1")
    # Two resets in the hour: gpio_reset and power_cycle are held back; the
    # retries of the non-resetting rungs come due first.
    wait = at(50.0)
    assert isinstance(wait, Wait) and wait.until == 40.0 + retry_gap(1)
    assert "retry spacing" in wait.reason
    meanwhile = at(20.0 + HOUR_S - 1)
    assert isinstance(meanwhile, Step) and meanwhile.rung == "ifup"
    released = at(20.0 + HOUR_S)
    assert isinstance(released, Step) and released.rung == "gpio_reset"


def test_reset_cap_alone_gives_a_wait_naming_it() -> None:
    history = [failed("modem2", r, t, t + 10) for r, t in (
        ("soft_reset", 20.0), ("usb_reauth", 30.0))]
    mute = modem(caps=frozenset({"usb", "reset_gpio"}), at=False)
    wait = decide(50.0, [mute, PRIMARY_OK], history, cap=2, path="modem1", last_ack=50.0)
    assert isinstance(wait, Wait)
    assert wait.until == 20.0 + HOUR_S and "at most 2 resets per hour" in wait.reason


def test_zero_cap_means_never_reset() -> None:
    history = [failed("modem2", r, 0.0, 1.0) for r in ("ifup", "radio_cycle")]
    result = decide(2.0, [IOT_DOWN], history, cap=0)
    assert isinstance(result, Wait)  # only the retries remain, after their gap
    assert result.until == 1.0 + retry_gap(1)


def test_down_since_starts_a_fresh_incident() -> None:
    old = [failed("modem2", "ifup", 0.0, 10.0)]
    inferred = decide(20.0, [IOT_DOWN], old)
    assert isinstance(inferred, Step) and inferred.rung == "radio_cycle"
    fresh = decide(20.0, [replace(IOT_DOWN, down_since=15.0)], old)
    assert isinstance(fresh, Step) and fresh.rung == "ifup"


def test_a_successful_attempt_closes_the_incident() -> None:
    history = [failed("modem2", "ifup", 0.0, 10.0),
               Attempt("modem2", "radio_cycle", 10.0, 40.0, True)]
    step = decide(50.0, [IOT_DOWN], history)
    assert isinstance(step, Step) and step.rung == "ifup"


def test_observed_durations_change_later_plans() -> None:
    history = [failed("modem2", "ifup", 160.0, 180.0), failed("modem2", "radio_cycle", 180, 181)]
    now = 170.0  # 100 s to finish in: a 120 s EC25 soft reset does not fit
    before = decide(now, [IOT_DOWN], history)
    assert isinstance(before, Step) and before.rung == "usb_reauth"
    costs = costs_model()
    for _ in range(3):  # this site's EC25s come back from a soft reset in 40 s
        costs = costs.observe("ec25", "soft_reset", 40.0)
    after = decide(now, [IOT_DOWN], history, costs=costs)
    assert isinstance(after, Step) and after.rung == "soft_reset"
    assert after.expected_s == pytest.approx(costs.expected("ec25", "soft_reset"))
    slow = costs_model()
    for _ in range(10):  # and USB re-authorisation turned out slow
        slow = slow.observe("ec25", "usb_reauth", 110.0)
    late = decide(now, [IOT_DOWN], history, costs=slow)
    assert not (isinstance(late, Step) and late.rung == "usb_reauth" and not late.best_effort)


def test_retry_spacing_doubles_up_to_its_ceiling() -> None:
    assert [retry_gap(k) for k in range(1, 8)] == [60, 120, 240, 480, 900, 900, 900]
    assert retry_gap(10_000) == RETRY_MAX_S


# --- simulated hours ---------------------------------------------------------------------------

@dataclass
class Sim:
    """Runs plan() against simulated modems and a simulated clock."""

    modems: dict[str, ModemHealth]
    cap: int = 6
    path: str = "modem2"
    last_ack: float = 0.0
    acks_via_healthy_path: bool = True
    outcome: Callable[[Attempt, float], bool] = lambda attempt, now: False
    duration: Callable[[Step], float] = lambda step: step.expected_s
    history: list[Attempt] | None = None
    waits: int = 0

    def run(self, until: float) -> list[Attempt]:
        history: list[Attempt] = self.history if self.history is not None else []
        running: dict[int, float] = {}
        now = 0.0
        costs = costs_model()
        while now < until:
            carrier = self.modems.get(self.path)
            if self.acks_via_healthy_path and carrier is not None and carrier.heartbeat_ok:
                self.last_ack = now - (now % 60.0)
            decision = plan(now, self.last_ack, GRACE, MARGIN, list(self.modems.values()),
                            history, costs=costs, max_resets_per_hour=self.cap,
                            path=self.path)
            if isinstance(decision, Step):
                running[len(history)] = now + self.duration(decision)
                history.append(Attempt(decision.modem, decision.rung, now, None, None))
                assert len(running) <= len(self.modems) + 1, "planner keeps issuing steps"
                continue
            if isinstance(decision, Wait):
                assert decision.until > now
                self.waits += 1
            times = list(running.values())
            times += [decision.until] if isinstance(decision, Wait) else []
            times += [now - (now % 60.0) + 60.0]  # the next heartbeat tick
            now = min(times)
            for index, end in sorted(running.items()):
                if end <= now:
                    del running[index]
                    attempt = history[index]
                    ok = self.outcome(attempt, end)
                    history[index] = replace(attempt, ended=end, ok=ok)
                    if ok and attempt.rung == "reroute":
                        self.path = attempt.modem
                        self.last_ack = end
                    elif ok:
                        self.modems[attempt.modem] = replace(
                            self.modems[attempt.modem], heartbeat_ok=True)
        return history


def resets_in_any_hour(history: Sequence[Attempt], modem_name: str) -> int:
    starts = sorted(a.started for a in history if a.modem == modem_name and a.rung in RESETS)
    return max((sum(1 for s in starts if t <= s < t + HOUR_S) for t in starts), default=0)


@pytest.mark.parametrize("down_since", [0.0, None], ids=["down_since", "inferred"])
@pytest.mark.parametrize("cap", [6, 2])
def test_six_hours_of_a_modem_failing_every_step_stay_under_the_cap(
        cap: int, down_since: float | None) -> None:
    iot = replace(IOT_DOWN, down_since=down_since)
    sim = Sim({"modem2": iot, "modem1": PRIMARY_OK}, cap=cap, path="modem1")
    history = sim.run(6 * HOUR_S)
    mine = [a for a in history if a.modem == "modem2"]
    assert resets_in_any_hour(history, "modem2") <= cap
    assert all(a.modem == "modem2" for a in history)  # the healthy carrier is never touched
    # Never abandoned: every hour sees at least one attempt.
    for hour in range(6):
        assert any(hour * HOUR_S <= a.started < (hour + 1) * HOUR_S for a in mine)
    # Spacing: a retry waits at least the first retry gap after the attempt
    # before it, and from the fourth hour on the full ceiling.
    tried: set[str] = set()
    for previous, attempt in itertools.pairwise(mine):
        tried.add(previous.rung)
        if attempt.rung not in tried:
            continue
        gap = attempt.started - (previous.ended or previous.started)
        assert gap >= (RETRY_MAX_S if attempt.started >= 3 * HOUR_S else RETRY_BASE_S)
    assert len(mine) <= 6 + 6 * HOUR_S / RETRY_BASE_S
    if cap == 2:
        assert sim.waits > 0


def test_six_hours_with_both_modems_dead_work_on_both_and_respect_the_cap() -> None:
    sim = Sim({"modem2": IOT_DOWN, "modem1": PRIMARY_DOWN}, cap=3)
    history = sim.run(6 * HOUR_S)
    for name in ("modem1", "modem2"):
        assert resets_in_any_hour(history, name) <= 3
        assert sum(a.modem == name for a in history) >= 12
    # Both are worked on at once: some step on one starts while the other's runs.
    overlaps = [(a, b) for a in history for b in history if a.modem != b.modem
                and a.started <= b.started < (a.ended or math.inf)]
    assert overlaps


def test_recovery_by_reroute_then_background_repair_of_the_iot_modem() -> None:
    def outcome(attempt: Attempt, now: float) -> bool:
        return attempt.rung in ("reroute", "soft_reset")
    sim = Sim({"modem2": IOT_DOWN, "modem1": PRIMARY_OK}, outcome=outcome)
    history = sim.run(HOUR_S)
    assert [(a.modem, a.rung) for a in history] == [
        ("modem1", "reroute"), ("modem2", "ifup"), ("modem2", "radio_cycle"),
        ("modem2", "soft_reset")]
    assert sim.path == "modem1" and sim.modems["modem2"].heartbeat_ok


# --- invariants over hostile inputs ------------------------------------------------------------

NAMES = ("modem1", "modem2")


@dataclass(frozen=True)
class Situation:
    now: float
    last_ack: float
    grace: float
    margin: float
    modems: list[ModemHealth]
    history: list[Attempt]
    cap: int
    path: str | None


@st.composite
def situations(draw: st.DrawFn) -> Situation:
    now = draw(st.floats(0, 20_000, allow_nan=False))
    count = draw(st.integers(1, 2))
    modems = []
    for i in range(count):
        modems.append(ModemHealth(
            NAMES[i], ("primary", "iot")[i], draw(st.sampled_from([*DEFAULT_COSTS, "auto"])),
            draw(st.sampled_from([False, False, True])),
            # Often nothing but the resetting rungs, so the cap is put to the test.
            draw(st.just(ALL) | st.just(ALL - {"interface"})
                 | st.frozensets(st.sampled_from(sorted(ALL)))),
            draw(st.sampled_from([True, True, False])),
            draw(st.none() | st.floats(now - 4000, now, allow_nan=False))))
    attempts = []
    for _ in range(draw(st.integers(0, 25))):
        started = draw(st.floats(now - 2 * HOUR_S, now, allow_nan=False))
        running = draw(st.integers(0, 19)) == 0  # a step under way is the exception
        ended = None if running else started + draw(st.floats(0, 300, allow_nan=False))
        attempts.append(Attempt(draw(st.sampled_from(NAMES[:count])), draw(st.sampled_from(RUNGS)),
                                started, ended, None if running else draw(st.booleans())))
    return Situation(
        now=now,
        last_ack=draw(st.floats(now - 600, now, allow_nan=False)),
        grace=draw(st.floats(60, 900, allow_nan=False)),
        margin=draw(st.floats(0, 60, allow_nan=False)),
        modems=modems,
        history=attempts,
        cap=draw(st.integers(0, 8)),
        path=draw(st.sampled_from([None, *NAMES[:count]])),
    )


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(situations())
def test_invariants_of_a_single_decision(s: Situation) -> None:
    now, last_ack, grace, margin = s.now, s.last_ack, s.grace, s.margin
    modems, history, cap, path = s.modems, s.history, s.cap, s.path
    result = plan(now, last_ack, grace, margin, modems, history, costs=costs_model(),
                  max_resets_per_hour=cap, path=path)
    by_name = {m.name: m for m in modems}
    if path is not None:
        carrier = by_name.get(path)
    else:  # the documented default: the iot modem, else the first
        carrier = next((m for m in modems if m.role == "iot"), modems[0])
    urgent = carrier is None or not carrier.heartbeat_ok
    if all(m.heartbeat_ok for m in modems):
        assert result is None
    if isinstance(result, Wait):
        assert result.until > now
    if not isinstance(result, Step):
        return
    left = last_ack + grace - now
    assert result.grace_left_s == pytest.approx(left)
    assert result.urgent == urgent
    # Never a step that cannot finish before deadline - margin, unless none could.
    if result.urgent and not result.best_effort:
        assert result.expected_s <= left - margin + 1e-6
    if result.best_effort:
        assert result.urgent and result.expected_s > left - margin
    target = by_name[result.modem]
    if result.rung == "reroute":
        assert urgent and target.heartbeat_ok and target is not carrier
        return
    assert not target.heartbeat_ok  # a modem that carries the heartbeat is left alone
    assert not any(a.modem == target.name and a.ended is None and a.rung != "reroute"
                   for a in history)
    rung = next(r for r in default_ladder(costs_model().row(target.model)) if r.name == result.rung)
    have = set(target.capabilities) | ({"at"} if target.at_responsive else set())
    assert rung.requires in have
    if rung.resets_modem:
        recent = [a for a in history if a.modem == target.name and a.rung in RESETS
                  and a.started > now - HOUR_S]
        assert len(recent) < cap


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cap=st.integers(1, 6), seed=st.randoms(use_true_random=False),
       success=st.floats(0, 0.6), iot_ok=st.booleans(), primary_ok=st.booleans(),
       slow=st.floats(0.2, 3.0))
def test_invariant_no_sliding_hour_exceeds_the_cap(cap: int, seed: random.Random,
                                                    success: float, iot_ok: bool,
                                                    primary_ok: bool, slow: float) -> None:
    def outcome(attempt: Attempt, now: float) -> bool:
        return seed.random() < success  # hypothesis-controlled, so failures shrink

    modems = {"modem2": replace(IOT_DOWN, heartbeat_ok=iot_ok),
              "modem1": replace(PRIMARY_DOWN, heartbeat_ok=primary_ok)}
    assume(not (iot_ok and primary_ok))
    sim = Sim(modems, cap=cap, outcome=outcome, duration=lambda step: step.expected_s * slow)
    history = sim.run(3 * HOUR_S)
    for name in NAMES:
        assert resets_in_any_hour(history, name) <= cap
    for attempt in history:
        assert attempt.rung in RUNGS


def test_default_costs_agree_with_the_vendor_profiles() -> None:
    # The vendor modules hold the same figures as timings; a change there
    # that makes a default cost optimistic must show up here.
    assert set(DEFAULT_COSTS) == set(PROFILES) == set(MODEL_KEYS)
    for key, profile in PROFILES.items():
        timings, costs = profile.timings, DEFAULT_COSTS[key]
        assert costs["soft_reset"] >= timings.ready_s, key
        assert costs["radio_cycle"] >= 2 * timings.radio_cycle_s, key
        assert costs["usb_reauth"] >= timings.usb_reauth_s, key
