"""The modem state machine, event by event (pure: no ports, no clock)."""

from __future__ import annotations

from remsim_supervisor.core import machine as m
from remsim_supervisor.core.parse.registration import parse_registration


def run(*events: m.Event, facts: m.ModemFacts | None = None) -> tuple[m.ModemFacts, list[m.Action]]:
    f = facts or m.ModemFacts()
    actions: list[m.Action] = []
    for event in events:
        f, new = m.step(f, event)
        actions.extend(new)
    return f, actions


HOME_LTE = m.RegistrationReport(m.Registration("CEREG", "home", "lte", 0x1A2B, 0x1234567))
PROBED = (m.PortOpened("/dev/ttyUSB2"),
          m.Identified("ec25", "Quectel", "EC25", "R06", "123456789012345"))


def logs(actions: list[m.Action]) -> list[str]:
    return [a.message for a in actions if isinstance(a, m.Log)]


def test_starts_absent_and_walks_to_registered_with_one_log_line_per_change() -> None:
    f, actions = run(*PROBED, m.SimState("ready"), HOME_LTE)
    assert f.state == "registered"
    assert f.access_tech == "lte"
    assert logs(actions) == [
        "absent -> probing: port /dev/ttyUSB2 open",
        "probing -> searching: SIM ready, registration unknown",
        "searching -> registered: CEREG home, lte",
    ]


def test_sim_ready_asks_for_a_registration_refresh() -> None:
    _f, actions = run(*PROBED, m.SimState("ready"))
    assert any(isinstance(a, m.RefreshRegistration) for a in actions)


def test_missing_sim_and_locked_sim() -> None:
    f, _ = run(*PROBED, m.SimState("not_inserted"))
    assert f.state == "sim_wait"
    assert f.reason == "SIM not inserted"
    f, _ = run(*PROBED, m.SimState("sim_pin"))
    assert f.state == "locked"
    assert "SIM PIN" in f.reason
    f, _ = run(*PROBED, m.SimState("empty_euicc"))
    assert (f.state, f.reason) == ("sim_wait", "eUICC has no profile")


def test_sim_removed_drops_registration() -> None:
    f, _ = run(*PROBED, m.SimState("ready"), HOME_LTE, m.SimState("not_inserted"))
    assert f.state == "sim_wait"
    assert f.registrations == ()


def test_denied_registration_is_searching_with_the_reason() -> None:
    f, _ = run(*PROBED, m.SimState("ready"),
               m.RegistrationReport(m.Registration("CEREG", "denied")))
    assert f.state == "searching"
    assert f.reason == "registration denied (CEREG)"


def test_any_registered_ps_domain_counts_and_decides_the_access_tech() -> None:
    f, _ = run(*PROBED, m.SimState("ready"),
               m.RegistrationReport(m.Registration("CREG", "searching")),
               m.RegistrationReport(m.Registration("C5GREG", "roaming", "nr5g")))
    assert f.state == "registered"
    assert f.registration_state == "roaming"
    assert f.access_tech == "nr5g"


def test_deregistration_returns_to_searching() -> None:
    f, actions = run(*PROBED, m.SimState("ready"), HOME_LTE,
                     m.RegistrationReport(m.Registration("CEREG", "searching")))
    assert f.state == "searching"
    assert logs(actions)[-1] == "registered -> searching: CEREG searching"


def test_data_link_makes_connected_and_back() -> None:
    f, _ = run(*PROBED, m.SimState("ready"), HOME_LTE, m.LinkChanged(True))
    assert f.state == "connected"
    f, actions = run(m.LinkChanged(False), facts=f)
    assert f.state == "registered"
    assert logs(actions) == ["connected -> registered: CEREG home, lte, data link down"]


def test_link_up_without_registration_is_not_connected() -> None:
    f, _ = run(*PROBED, m.SimState("ready"), m.LinkChanged(True))
    assert f.state == "searching"


def test_three_timeouts_in_a_row_mean_failed_and_an_answer_heals() -> None:
    f, _ = run(*PROBED, m.SimState("ready"), HOME_LTE,
               m.TimedOut("AT+CSQ"), m.TimedOut("AT+CSQ"))
    assert f.state == "registered"
    f, _ = run(m.TimedOut("AT+CSQ"), facts=f)
    assert f.state == "failed"
    assert "3 commands in a row" in f.reason
    f, _ = run(m.Answered(), facts=f)
    assert f.state == "registered"


def test_reboot_urc_forgets_the_network_and_asks_for_a_reprobe() -> None:
    f, actions = run(*PROBED, m.SimState("ready"), HOME_LTE, m.Rebooted("RDY"))
    assert f.state == "probing"
    assert f.registrations == ()
    assert any(isinstance(a, m.Reprobe) for a in actions)
    assert "rebooted" in f.reason


def test_port_lost_is_absent_and_forgets_what_the_port_said() -> None:
    f, actions = run(*PROBED, m.SimState("ready"), HOME_LTE, m.PortLost("AT port lost: hang-up"))
    assert f.state == "absent"
    assert f.reason == "AT port lost: hang-up"
    assert f.sim_lock is None and f.registrations == () and f.at_port is None
    assert logs(actions)[-1] == "registered -> absent: AT port lost: hang-up"


def test_not_found_stays_absent_without_repeating_the_log() -> None:
    f, actions = run(m.NotFound("no modem at USB path 1-1"), m.NotFound("no modem at USB path 1-1"))
    assert f.state == "absent"
    # The initial facts are already absent: no change, no log line at all.
    assert logs(actions) == []
    assert f.reason == "no modem at USB path 1-1"


def test_recovery_overrides_and_ends() -> None:
    f, _ = run(*PROBED, m.SimState("ready"), HOME_LTE, m.RecoveryStarted("radio_cycle"))
    assert f.state == "recovering"
    f, _ = run(m.RecoveryEnded("radio_cycle", True), facts=f)
    assert f.state == "registered"


def test_every_state_is_reachable() -> None:
    seen = set()
    sequences: list[tuple[m.Event, ...]] = [
        (),
        (m.PortOpened("/dev/x"),),
        (*PROBED, m.SimState("not_inserted")),
        (*PROBED, m.SimState("sim_puk")),
        (*PROBED, m.SimState("ready")),
        (*PROBED, m.SimState("ready"), HOME_LTE),
        (*PROBED, m.SimState("ready"), HOME_LTE, m.LinkChanged(True)),
        (*PROBED, m.RecoveryStarted("usb_reauth")),
        (*PROBED, m.TimedOut("AT"), m.TimedOut("AT"), m.TimedOut("AT")),
    ]
    for events in sequences:
        f, _ = run(*events)
        seen.add(f.state)
    assert seen == set(m.STATES)


def test_an_absent_modem_keeps_its_identity_for_status() -> None:
    f, _ = run(*PROBED, m.SimState("ready"), HOME_LTE, m.PortLost("hang-up"),
               m.NotFound("no modem at USB path 1-2"))
    assert (f.state, f.profile, f.model_name, f.imei) == (
        "absent", "ec25", "EC25", "123456789012345")


def test_one_registration_type_from_parser_to_status() -> None:
    reg = parse_registration('+CEREG: 1,"1A2B","01234567",7', unsolicited=True)
    assert isinstance(reg, m.Registration)
    f, _ = run(*PROBED, m.SimState("ready"), m.RegistrationReport(reg))
    assert f.best_registration is reg
    assert (f.state, f.registration_state, f.access_tech) == ("registered", "home", "lte")
