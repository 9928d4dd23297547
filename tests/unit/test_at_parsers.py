"""Response and URC parsers (27.007 and vendors'): forms beyond the corpus, quirks, hostile text."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from remsim_supervisor.core.parse import common, registration, signal, sim
from remsim_supervisor.core.parse import packet as cgev
from remsim_supervisor.core.parse.registration import Registration
from remsim_supervisor.vendors import ANY_URCS, PROFILES, get_profile, huawei, quectel
from remsim_supervisor.vendors import fibocom_intel as intel
from tests.fuzzing import examples

# --------------------------------------------------------------------------
# Registration

REG_CASES = [
    # text, kind, n, stat, lac, ci, access_tech
    ("+CREG: 5", "CREG", None, 5, None, None, "unknown"),
    ("+CREG: 0,1", "CREG", 0, 1, None, None, "unknown"),
    ('+CREG: 2,1,"1A2B","01C2D3E4",7', "CREG", 2, 1, 0x1A2B, 0x1C2D3E4, "lte"),
    ('+CREG: 1,"1A2B","01C2D3E4",2', "CREG", None, 1, 0x1A2B, 0x1C2D3E4, "umts"),
    ('+CGREG: 2,1,"8BE3","00002B5D",3,"00"', "CGREG", 2, 1, 0x8BE3, 0x2B5D, "edge"),
    # 27.007 n=3 URC with cause type and reject cause.
    ('+CEREG: 3,"1F00","79D903",7,0,15', "CEREG", None, 3, 0x1F00, 0x79D903, "lte"),
    # n=4 query with PSM timers after empty cause fields.
    ('+CEREG: 4,1,"1F00","79D903",7,,,"00100100","01000111"', "CEREG", 4, 1, 0x1F00,
     0x79D903, "lte"),
    ('+CEREG: 2,5,"1F00","79D903",9', "CEREG", 2, 5, 0x1F00, 0x79D903, "lte_nb_iot"),
    ('+CEREG: 2,1,"1F00","79D903",13', "CEREG", 2, 1, 0x1F00, 0x79D903, "nr5g_nsa"),
    ('+C5GREG: 2,1,"00A1B2","0123456789",11,0,""', "C5GREG", 2, 1, 0xA1B2, 0x123456789,
     "nr5g"),
    # Samsung Wave S8500: a non-numeric fifth field is not an access technology.
    ("+CREG: 2,1,000B,2816, B, C2816", "CREG", 2, 1, 0xB, 0x2816, "unknown"),
    ("+cereg: 1", "CEREG", None, 1, None, None, "unknown"),
]


@pytest.mark.parametrize(("text", "kind", "n", "stat", "lac", "ci", "tech"), REG_CASES)
def test_registration_forms(text: str, kind: str, n: int | None, stat: int, lac: int | None,
                            ci: int | None, tech: str) -> None:
    reg = registration.parse_registration(text)
    assert reg is not None
    assert (reg.kind, reg.n, reg.stat, reg.lac, reg.ci, reg.access_tech) == (
        kind, n, stat, lac, ci, tech)
    assert reg.state == registration.REG_STATES[stat]
    assert reg.is_urc is (n is None)


def test_registration_found_inside_a_whole_reply() -> None:
    reg = registration.parse_registration(
        "AT+CEREG?\r\r\n+CEREG: 2,1,\"1F00\",\"79D903\",7\r\n\r\nOK\r\n")
    assert reg is not None and reg.registered and reg.access_tech == "lte"


def test_registration_caller_knows_it_was_unsolicited() -> None:
    reg = registration.parse_registration("+CEREG: 1, 2, 0001, 00000100, 7", unsolicited=True)
    assert reg is not None and reg.is_urc and reg.n == 1 and reg.stat == 2


@pytest.mark.parametrize(("stat", "registered"), [
    (0, False), (1, True), (2, False), (3, False), (4, False), (5, True), (6, True), (7, True),
    (8, False), (9, True), (10, True), (11, False)])
def test_registered_property(stat: int, registered: bool) -> None:
    reg = registration.parse_registration(f"+CREG: {stat}")
    assert reg is not None and reg.registered is registered


@pytest.mark.parametrize("text", ["", "OK", "+CREG:", "+CREG: x", "+CREG: 12", "+CREG: 1,99",
                                  "+CREG: -1", "+CSQ: 1,2", "+CREG: ,,,,"])
def test_registration_garbage_is_none(text: str) -> None:
    assert registration.parse_registration(text) is None


# --------------------------------------------------------------------------
# Signal


@pytest.mark.parametrize(("text", "rssi", "ber", "dbm"), [
    ("+CSQ: 0,0", 0, 0, -113), ("+CSQ: 31,99", 31, 99, -51), ("+CSQ: 99,99", 99, 99, None),
    ("+CSQ: 100,99", 100, 99, -116), ("+CSQ: 191,99", 191, 99, -25),
    ("+CSQ: 199,99", 199, 99, None), ("+CSQ:15", 15, None, -83)])
def test_csq(text: str, rssi: int, ber: int | None, dbm: int | None) -> None:
    assert signal.parse_csq(text) == signal.Csq(rssi, ber, dbm)


@pytest.mark.parametrize("text", ["+CSQ:", "+CSQ: -1,2", "+CSQ: a,b", "CSQ: 1,2", ""])
def test_csq_garbage(text: str) -> None:
    assert signal.parse_csq(text) is None


def test_cesq_umts_values_and_rssi() -> None:
    x = signal.parse_cesq("+CESQ: 99,99,41,29,255,255")
    assert x is not None
    assert (x.rscp_dbm, x.ecio_db, x.umts_rssi_dbm) == (-80.0, -10.0, -70.0)
    assert (x.has_gsm, x.has_umts, x.has_lte) == (False, True, False)


@pytest.mark.parametrize("text", ["+CESQ: 1,2,3", "+CESQ: a,b,c,d,e,f", "+CESQ: -1,2,3,4,5,6"])
def test_cesq_garbage(text: str) -> None:
    assert signal.parse_cesq(text) is None


def test_xcesq_urc_form_without_n() -> None:
    x = intel.parse_xcesq("+XCESQI: 99,99,255,255,20,80,10")
    assert x is not None and x.n is None
    assert (x.rsrq_db, x.rsrp_dbm, x.rssnr_db) == (-10.0, -61.0, 5.0)


def test_xcesq_needs_its_fields() -> None:
    assert intel.parse_xcesq("+XCESQ: 0,99,99") is None
    assert intel.parse_xcesq("+CESQ: 99,99,255,255,20,80") is None


@pytest.mark.parametrize(("text", "tech", "rssi", "rsrp", "sinr_db", "rsrq", "rscp", "ecio"), [
    ('+QCSQ: "GSM",-70', "gsm", -70, None, None, None, None, None),
    ('+QCSQ: "WCDMA",-70,-80,-6', "umts", -70, None, None, None, -80, -6),
    ('+QCSQ: "LTE",-60,-87,195,-7', "lte", -60, -87, 19.0, -7, None, None),
    ('+QCSQ: "NR5G",-85,120,-11', "nr5g", None, -85, 4.0, -11, None, None),
    ('+QCSQ: "CAT-NB1",-91,-129,67,-20', "lte_nb_iot", -91, -129, -6.6, -20, None, None),
    ('+QCSQ: "NOSERVICE"', "unknown", None, None, None, None, None, None),
])
def test_qcsq_layouts(text: str, tech: str, rssi: int | None, rsrp: int | None,
                      sinr_db: float | None, rsrq: int | None, rscp: int | None,
                      ecio: int | None) -> None:
    x = quectel.parse_qcsq(text)
    assert x is not None
    assert (x.access_tech, x.rssi_dbm, x.rsrp_dbm, x.sinr_db, x.rsrq_db, x.rscp_dbm,
            x.ecio_db) == (tech, rssi, rsrp, sinr_db, rsrq, rscp, ecio)


@pytest.mark.parametrize("text", ['+QCSQ: "LTE",-60', '+QCSQ: "FOO",1,2', "+QCSQ:", '+QCSQ: ""'])
def test_qcsq_garbage(text: str) -> None:
    assert quectel.parse_qcsq(text) is None


def test_hcsq_lte_values_decoded() -> None:
    x = huawei.parse_hcsq('^HCSQ:"LTE",30,19,66,0')
    assert x is not None and x.has_service
    assert (x.rssi_dbm, x.rsrp_dbm, x.sinr_db, x.rsrq_db) == (-90.0, -121.0, -6.8, -19.5)


def test_hcsq_noservice_parses_without_service() -> None:
    x = huawei.parse_hcsq("^HCSQ: NOSERVICE")
    assert x is not None and not x.has_service and x.values == (0, 0, 0, 0, 0)


@pytest.mark.parametrize("text", ["^HCSQ:", '^HCSQ: "LTE",x', '^HCSQ: "L T E",1', "^HCSQ: ,1"])
def test_hcsq_garbage(text: str) -> None:
    assert huawei.parse_hcsq(text) is None


def test_signal_values_are_dataclass_fields() -> None:
    # The modem runner collects every *_dbm / *_db field through asdict().
    x = huawei.parse_hcsq('^HCSQ: "WCDMA",30,30,58')
    assert x is not None
    fields = dataclasses.asdict(x)
    assert fields["rssi_dbm"] == -90.0 and fields["ecio_db"] == -3.0
    for parsed in (signal.parse_csq("+CSQ: 1,2"), signal.parse_cesq("+CESQ: 1,2,3,4,5,6"),
                   quectel.parse_qcsq('+QCSQ: "LTE",-60,-87,195,-7')):
        assert parsed is not None
        assert any(k.endswith(("_dbm", "_db")) for k in dataclasses.asdict(parsed))


def test_signal_values_are_what_the_status_shows() -> None:
    qcsq = quectel.parse_qcsq('+QCSQ: "LTE",-60,-87,195,-7')
    assert signal.signal_values(qcsq) == (
        ("mode", "lte"), ("rsrp_dbm", -87), ("rsrq_db", -7), ("rssi_dbm", -60), ("sinr_db", 19.0))
    assert signal.signal_values(signal.parse_csq("+CSQ: 99,99")) == ()  # nothing known
    assert signal.signal_values(None) == ()


# --------------------------------------------------------------------------
# Operator, SIM, functionality


def test_cops_forms() -> None:
    assert registration.parse_cops("+COPS: 0") == registration.Cops(0, None, None, None, "unknown")
    Cops = registration.Cops
    assert registration.parse_cops('+COPS: 0,0,"Op, Inc.",13') == Cops(0, 0, "Op, Inc.", 13,
                                                                        "nr5g_nsa")
    assert registration.parse_cops('+COPS: 0,2,"26201",7\r\nOK') == Cops(0, 2, "26201", 7, "lte")
    assert registration.parse_cops("+COPS: x") is None
    assert registration.parse_cops("OK") is None


@pytest.mark.parametrize(("text", "lock"), [
    ("+CPIN: READY", "ready"), ("+CPIN: SIM PIN", "sim_pin"), ("+CPIN: SIM PUK", "sim_puk"),
    ("+CPIN: SIM PIN2", "sim_pin2"), ("+CPIN: PH-SIM PIN", "ph_sim_pin"),
    ("+CPIN: PH-NET PIN", "ph_net_pin"), ("+CPIN: PH-NETSUB PUK", "ph_netsub_puk"),
    ("+CPIN: EMPTY_EUICC", "empty_euicc"), ("+CPIN: NOT READY", "not_ready"),
    ("+CPIN: NOT INSERTED", "not_inserted"), ("+CME ERROR: 10", "not_inserted"),
    ("+CME ERROR: SIM not inserted", "not_inserted"), ("+CME ERROR: 14", "sim_busy"),
    ("+CME ERROR: 13", "sim_failure"), ("+CME ERROR: 100", "unknown"),
    ("AT+CPIN?\r\r\n+CPIN: READY\r\n\r\nOK\r\n", "ready"), ("READY", "ready"),
    ("+CPIN: WHATEVER", "unknown"), ("", "unknown"), ("ERROR", "unknown"),
])
def test_cpin(text: str, lock: str) -> None:
    assert sim.parse_cpin(text) == lock


def test_cpin_prefix_expectation() -> None:
    assert sim.parse_cpin("   SIM PUK", prefix=False) == "sim_puk"
    assert sim.parse_cpin("   SIM PUK", prefix=True) == "unknown"
    assert sim.parse_cpin("+CPIN: SIM PIN", prefix=True) == "sim_pin"
    assert sim.parse_cpin("+CPIN: SIM PIN", prefix=False) == "unknown"
    assert sim.parse_cpin("+CME ERROR: 10", prefix=True) == "not_inserted"


def test_cfun() -> None:
    assert sim.parse_cfun("+CFUN: 4,0") == sim.Cfun(4, 0, "low")
    assert sim.parse_cfun("+CFUN: 7") == sim.Cfun(7, None, "unknown")
    assert sim.parse_cfun("+CFUN:") is None


@pytest.mark.parametrize(("text", "iccid"), [
    ("+CCID: 89014103211118510720", "89014103211118510720"),
    ('+ICCID: "8901410321111851072F"', "8901410321111851072"),
    ("+QCCID: 89860318640220133897", "89860318640220133897"),
    ('+CRSM: 144,0,"98101430121181157002"', "89014103211118510720"),
    ("98101430121181157002", "89014103211118510720"),
    ("  89014103211118510720  ", "89014103211118510720"),
    ("8901410321111851072", "8901410321111851072"),
    ("9810143012118115700", None),            # swapped needs pairs
    ("89014103211118510720123", None),        # too long
    ("8901410321111851072G", None),           # not a hex digit
    ("ERROR", None), ("", None), ("+CCID:", None),
])
def test_iccid(text: str, iccid: str | None) -> None:
    assert sim.parse_iccid(text) == iccid


def test_iccid_from_vendor_answer_lines() -> None:
    for line in ("+QCCID: 89860318640220133897", "!ICCID: 89860318640220133897",
                 "^ICCID: 98683081462002318379", '+ICCID: "89860318640220133897"'):
        assert sim.parse_iccid(line) == "89860318640220133897", line


def test_identity_value() -> None:
    assert sim.identity_value(["+CGMI: Quectel"]) == "Quectel"
    assert sim.identity_value(['"EC25"', "OK"]) == "EC25"
    assert sim.identity_value(["OK"]) is None
    assert sim.identity_value([]) is None


def test_imei_and_imsi() -> None:
    assert sim.parse_imei(["+CGSN: \"356938035643809\""]) == "356938035643809"
    assert sim.parse_imei("\r\n356938035643809\r\n\r\nOK\r\n") == "356938035643809"
    assert sim.parse_imei(["ERROR"]) is None
    assert sim.parse_imei(["12345"]) is None
    assert sim.parse_imsi(("262011234567890",)) == "262011234567890"
    assert sim.parse_imsi(["at+cimi", "262011234567890", "OK"]) == "262011234567890"
    assert sim.parse_imsi(["26201123456789012"]) is None


# --------------------------------------------------------------------------
# Packet-domain events


@pytest.mark.parametrize(("text", "want"), [
    ("+CGEV: NW MODIFY 1, 2, 0", cgev.Cgev("nw_modify", cid=1, event_type=0, detail="2")),
    ("+CGEV: ME PDN ACT 1, 0", cgev.Cgev("me_act_primary", cid=1, detail="0")),
    ("+CGEV: NW PDN ACT 5", cgev.Cgev("nw_act_primary", cid=5)),
    ("+CGEV: ME CLASS B", cgev.Cgev("me_class", detail="B")),
    ("+CGEV: NW DEACT IPV6, 2001:db8::1, 3",
     cgev.Cgev("nw_deact_pdp", pdp_type="IPV6", pdp_addr="2001:db8::1", cid=3)),
    ("+CGEV:  ME  DETACH ", cgev.Cgev("me_detach")),
])
def test_cgev_more_events(text: str, want: cgev.Cgev) -> None:
    assert cgev.parse_cgev(text) == want


@pytest.mark.parametrize("text", ["+CGEV: NW ACT IP, 1.2.3.4", "+CGEV: HELLO", "+CGEV:", "",
                                  "NW PDN ACT x", "ME DEACT 3", "REJECT"])
def test_cgev_garbage(text: str) -> None:
    assert cgev.parse_cgev(text) is None


# --------------------------------------------------------------------------
# Vendor status


def test_qsimstat() -> None:
    x = quectel.parse_qsimstat("+QSIMSTAT: 1,0")
    assert x is not None and x.enabled and x.inserted is False
    assert quectel.parse_qsimstat("+QSIMSTAT: 0,2") == quectel.Qsimstat(False, 2)


# --------------------------------------------------------------------------
# URC classification


@pytest.mark.parametrize(("line", "kind"), [
    ("RDY", "boot"), ("^SYSSTART", "boot"), ("POWERED DOWN", "powered_down"),
    ("+CPIN: READY", "cpin"), ("+CPIN: SIM PIN", "cpin"),
    ("+CPIN: NOT INSERTED", "cpin"), ("+SIM READY", "sim"),
    ("+SIM: Removed", "sim"), ("+SIM: Inserted", "sim"),
    ("+SIM DROP", "sim"), ("+QUSIM: 1", "sim"),
    ("+QSIMSTAT: 1,0", "sim"), ("+QSIMSTAT: 1,1", "sim"),
    ("^SIMST: 255", "sim"), ("^SIMST: 1", "sim"), ("^SIMST: 4", "sim"),
    ("+CEREG: 1", "registration"), ("+C5GREG: 1", "registration"),
    ("+CGEV: ME DETACH", "cgev"), ("+CFUN: 1", "radio"), ("^RSSI:19", "signal"),
    ("^HCSQ: \"LTE\",1,2,3,4", "signal"), ("^MODE:5,7", "mode"), ("^SRVST:2", "service"),
    ("+CTZV: 32", "nitz"), ("+NITZ: 1", "nitz"), ("+CMTI: \"ME\",1", "sms"),
    ("RING", "call"), ("+CRING: VOICE", "call"), ("NO CARRIER", "call"),
    ("+QIND: SMS DONE", "indication"), ("+STKPCI: 0,\"D0\"", "stk"), ("+QTONEDET: 49", "dtmf"),
    ("+QGPSURC: \"xtradata\"", "gnss"), ("+CIEV: 7,1", "indicator"), ("+XCESQI: 1", "signal"),
    ("hello", "unknown"), ("", "unknown"), ("+CSQ: 1,2", "unknown"), ("OK", "unknown"),
])
def test_urc_kinds(line: str, kind: str) -> None:
    # Every profile's table at once, as the engine has it before identification.
    assert ANY_URCS.classify(line).kind == kind


@pytest.mark.parametrize(("line", "value"), [
    ("+CPIN: READY", "ready"), ("+CPIN: SIM PIN", "sim_pin"),
    ("+CPIN: NOT INSERTED", "not_inserted"),
    ("+SIM READY", "ready"), ("+SIM: Removed", "not_inserted"), ("+SIM: Inserted", "inserted"),
    ("+SIM DROP", "not_inserted"), ("+QUSIM: 1", "inserted"), ("+QSIMSTAT: 1,0", "not_inserted"),
    ("+QSIMSTAT: 1,1", "inserted"), ("+QSIMSTAT: 1,2", None), ("^SIMST: 255", "not_inserted"),
    ("^SIMST: 1", "ready"), ("^SIMST: 4", None),
    ("+CEREG: 5", Registration("CEREG", "roaming", is_urc=True)),
    ("+CGEV: ME DETACH", cgev.Cgev("me_detach")), ("+CFUN: 4", sim.Cfun(4, None, "low")),
    ("+CTZV: 32", None),
])
def test_urc_values_are_parsed_once_by_the_table(line: str, value: object) -> None:
    assert ANY_URCS.classify(line).value == value


def test_urc_signal_reports_carry_the_vendor_reading() -> None:
    hcsq = ANY_URCS.classify('^HCSQ: "LTE",50,40,100,20').value
    assert isinstance(hcsq, huawei.Hcsq) and hcsq.rsrp_dbm == -100.0
    xcesqi = ANY_URCS.classify("+XCESQI: 99,99,255,255,20,40,10").value
    assert isinstance(xcesqi, intel.Xcesq) and xcesqi.rsrp_dbm == -101.0


def test_each_profile_knows_only_its_own_vendor_urcs() -> None:
    assert get_profile("ec25").urcs.classify("RDY").kind == "boot"
    assert get_profile("me909s").urcs.classify("RDY").kind == "unknown"
    assert get_profile("me909s").urcs.classify("^SYSSTART").kind == "boot"
    assert get_profile("generic").urcs.classify("^SYSSTART").kind == "unknown"
    for profile in PROFILES.values():
        # 27.007's and the common SIM reports are everyone's.
        assert profile.urcs.classify("+CEREG: 1").kind == "registration"
        assert profile.urcs.classify("+SIM DROP").kind == "sim"


def test_access_tech_names() -> None:
    assert common.access_tech_from_act(7) == "lte"
    assert common.access_tech_from_act(None) == "unknown"
    assert common.access_tech_from_act(99) == "unknown"
    assert common.access_tech_from_name("WCDMA") == "umts"
    assert common.access_tech_from_name('"CAT-M1"') == "lte_cat_m"
    assert common.access_tech_from_name("NR5G-NSA") == "nr5g_nsa"
    assert common.access_tech_from_name("warp") == "unknown"
    for n in range(14):
        assert common.access_tech_from_act(n) in common.ACCESS_TECH_NAMES


# --------------------------------------------------------------------------
# Hostile text: no parser ever raises


def classify(text: Any) -> object:
    return ANY_URCS.classify(text if isinstance(text, str) else "\n".join(text))


PARSERS: list[Callable[[Any], object]] = [
    registration.parse_registration, signal.parse_csq, signal.parse_cesq, intel.parse_xcesq,
    quectel.parse_qcsq,
    huawei.parse_hcsq, registration.parse_cops, sim.parse_cpin, sim.parse_cfun,
    sim.parse_iccid, sim.parse_imei, sim.parse_imsi, cgev.parse_cgev, quectel.parse_qsimstat,
    sim.identity_value, classify,
]
PREFIXES = ["+CREG: ", "+CGREG:", "+CEREG: ", "+C5GREG: ", "+CSQ: ", "+CESQ: ", "+XCESQ: ",
            "+XCESQI: ", "+QCSQ: ", "^HCSQ: ", "+COPS: ", "+CPIN: ", "+CFUN: ", "+CCID: ",
            "+QCCID: ", "+CRSM: ", "+CGSN: ", "+CGMI: ", "+CGEV: ", "+QSIMSTAT: ", "+QUSIM: ",
            "+SIM: ", "+CME ERROR: ", "^SIMST: ", "RDY", ""]
# Text built from the characters AT answers are made of, so that the fuzzer
# reaches deep into the parsers instead of failing at the prefix.
AT_ALPHABET = st.text(alphabet='0123456789ABCDEFabcdef,"-.: \r\n+^NRLTEGSMWCD', max_size=80)


@pytest.mark.fuzz
@settings(max_examples=examples(300), deadline=None)
@given(st.sampled_from(PREFIXES), AT_ALPHABET)
def test_no_parser_raises_on_at_like_text(prefix: str, tail: str) -> None:
    for parse in PARSERS:
        parse(prefix + tail)
        parse([prefix + tail, tail])


@pytest.mark.fuzz
@settings(max_examples=examples(600), deadline=None)
@given(st.text(max_size=200))
def test_no_parser_raises_on_arbitrary_text(text: str) -> None:
    for parse in PARSERS:
        parse(text)


@pytest.mark.fuzz
@settings(max_examples=examples(200), deadline=None)
@given(st.sampled_from(PREFIXES), st.lists(st.integers(-10**25, 10**25), max_size=12))
def test_no_parser_raises_on_huge_numbers(prefix: str, numbers: list[int]) -> None:
    for parse in PARSERS:
        parse(prefix + ",".join(str(n) for n in numbers))


def test_huge_digit_strings_do_not_hit_int_limits() -> None:
    big = "9" * 5000
    assert signal.parse_csq(f"+CSQ: {big},1") is None
    reg = registration.parse_registration(f"+CREG: 1,{big},{big}")
    assert reg is not None and reg.lac is None and reg.ci is None
    assert sim.parse_cpin(f"+CME ERROR: {big}") == "unknown"
