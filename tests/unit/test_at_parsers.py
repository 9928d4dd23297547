"""Response parsers: forms beyond the corpus, quirks, and hostile text."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from remsim_supervisor.core import parsers as P
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
    reg = P.parse_registration(text)
    assert reg is not None
    assert (reg.kind, reg.n, reg.stat, reg.lac, reg.ci, reg.access_tech) == (
        kind, n, stat, lac, ci, tech)
    assert reg.state == P.REG_STATES[stat]
    assert reg.is_urc is (n is None)


def test_registration_found_inside_a_whole_reply() -> None:
    reg = P.parse_registration("AT+CEREG?\r\r\n+CEREG: 2,1,\"1F00\",\"79D903\",7\r\n\r\nOK\r\n")
    assert reg is not None and reg.registered and reg.access_tech == "lte"


def test_registration_caller_knows_it_was_unsolicited() -> None:
    reg = P.parse_registration("+CEREG: 1, 2, 0001, 00000100, 7", unsolicited=True)
    assert reg is not None and reg.is_urc and reg.n == 1 and reg.stat == 2


@pytest.mark.parametrize(("stat", "registered"), [
    (0, False), (1, True), (2, False), (3, False), (4, False), (5, True), (6, True), (7, True),
    (8, False), (9, True), (10, True), (11, False)])
def test_registered_property(stat: int, registered: bool) -> None:
    reg = P.parse_registration(f"+CREG: {stat}")
    assert reg is not None and reg.registered is registered


@pytest.mark.parametrize("text", ["", "OK", "+CREG:", "+CREG: x", "+CREG: 12", "+CREG: 1,99",
                                  "+CREG: -1", "+CSQ: 1,2", "+CREG: ,,,,"])
def test_registration_garbage_is_none(text: str) -> None:
    assert P.parse_registration(text) is None


# --------------------------------------------------------------------------
# Signal


@pytest.mark.parametrize(("text", "rssi", "ber", "dbm"), [
    ("+CSQ: 0,0", 0, 0, -113), ("+CSQ: 31,99", 31, 99, -51), ("+CSQ: 99,99", 99, 99, None),
    ("+CSQ: 100,99", 100, 99, -116), ("+CSQ: 191,99", 191, 99, -25),
    ("+CSQ: 199,99", 199, 99, None), ("+CSQ:15", 15, None, -83)])
def test_csq(text: str, rssi: int, ber: int | None, dbm: int | None) -> None:
    assert P.parse_csq(text) == P.Csq(rssi, ber, dbm)


@pytest.mark.parametrize("text", ["+CSQ:", "+CSQ: -1,2", "+CSQ: a,b", "CSQ: 1,2", ""])
def test_csq_garbage(text: str) -> None:
    assert P.parse_csq(text) is None


def test_cesq_umts_values_and_rssi() -> None:
    x = P.parse_cesq("+CESQ: 99,99,41,29,255,255")
    assert x is not None
    assert (x.rscp_dbm, x.ecio_db, x.umts_rssi_dbm) == (-80.0, -10.0, -70.0)
    assert (x.has_gsm, x.has_umts, x.has_lte) == (False, True, False)


@pytest.mark.parametrize("text", ["+CESQ: 1,2,3", "+CESQ: a,b,c,d,e,f", "+CESQ: -1,2,3,4,5,6"])
def test_cesq_garbage(text: str) -> None:
    assert P.parse_cesq(text) is None


def test_xcesq_urc_form_without_n() -> None:
    x = P.parse_xcesq("+XCESQI: 99,99,255,255,20,80,10")
    assert x is not None and x.n is None
    assert (x.rsrq_db, x.rsrp_dbm, x.rssnr_db) == (-10.0, -61.0, 5.0)


def test_xcesq_needs_its_fields() -> None:
    assert P.parse_xcesq("+XCESQ: 0,99,99") is None
    assert P.parse_xcesq("+CESQ: 99,99,255,255,20,80") is None


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
    x = P.parse_qcsq(text)
    assert x is not None
    assert (x.access_tech, x.rssi_dbm, x.rsrp_dbm, x.sinr_db, x.rsrq_db, x.rscp_dbm,
            x.ecio_db) == (tech, rssi, rsrp, sinr_db, rsrq, rscp, ecio)


@pytest.mark.parametrize("text", ['+QCSQ: "LTE",-60', '+QCSQ: "FOO",1,2', "+QCSQ:", '+QCSQ: ""'])
def test_qcsq_garbage(text: str) -> None:
    assert P.parse_qcsq(text) is None


def test_hcsq_lte_values_decoded() -> None:
    x = P.parse_hcsq('^HCSQ:"LTE",30,19,66,0')
    assert x is not None and x.has_service
    assert (x.rssi_dbm, x.rsrp_dbm, x.sinr_db, x.rsrq_db) == (-90.0, -121.0, -6.8, -19.5)


def test_hcsq_noservice_parses_without_service() -> None:
    x = P.parse_hcsq("^HCSQ: NOSERVICE")
    assert x is not None and not x.has_service and x.values == (0, 0, 0, 0, 0)


@pytest.mark.parametrize("text", ["^HCSQ:", '^HCSQ: "LTE",x', '^HCSQ: "L T E",1', "^HCSQ: ,1"])
def test_hcsq_garbage(text: str) -> None:
    assert P.parse_hcsq(text) is None


def test_signal_values_are_dataclass_fields() -> None:
    # The modem runner collects every *_dbm / *_db field through asdict().
    x = P.parse_hcsq('^HCSQ: "WCDMA",30,30,58')
    assert x is not None
    fields = dataclasses.asdict(x)
    assert fields["rssi_dbm"] == -90.0 and fields["ecio_db"] == -3.0
    for parsed in (P.parse_csq("+CSQ: 1,2"), P.parse_cesq("+CESQ: 1,2,3,4,5,6"),
                   P.parse_qcsq('+QCSQ: "LTE",-60,-87,195,-7')):
        assert parsed is not None
        assert any(k.endswith(("_dbm", "_db")) for k in dataclasses.asdict(parsed))


# --------------------------------------------------------------------------
# Quectel serving cell


def test_qeng_lte_with_cqi_and_tx_power() -> None:
    x = P.parse_qeng_servingcell(
        '+QENG: "servingcell","CONNECT","LTE","FDD",262,01,1A2B3C4,123,1300,3,5,5,'
        '7E5,-95,-9,-65,15,12,200,40')
    assert x is not None
    assert (x.state, x.mcc, x.mnc, x.cell_id, x.tac, x.rsrp_dbm, x.sinr, x.srxlev) == (
        "CONNECT", "262", "01", 0x1A2B3C4, 0x7E5, -95, 15, 40)
    assert x.get("cqi") == "12" and x.get("tx_power") == "200"


def test_qeng_search_state_only() -> None:
    x = P.parse_qeng_servingcell('+QENG: "servingcell","SEARCH"')
    assert x == P.ServingCell("SEARCH")


def test_qeng_nsa_reads_the_lte_anchor() -> None:
    x = P.parse_qeng_servingcell(
        '+QENG: "servingcell","NOCONN"\r\n'
        '+QENG: "LTE","FDD",262,01,1A2B3C4,123,1300,3,5,5,7E5,-95,-9,-65,15,12,200,40\r\n'
        '+QENG: "NR5G-NSA",262,01,500,-90,20,-11,627264,78\r\n\r\nOK\r\n')
    assert x is not None and x.state == "NOCONN" and x.rat == "LTE" and x.pcid == 123


def test_qeng_gsm() -> None:
    x = P.parse_qeng_servingcell(
        '+QENG: "servingcell","NOCONN","GSM",262,02,1A2B,3C4D,32,62,0,-70,255,255,0,30,30,1,'
        '-,-,-,-,-,-,-,-,-,-')
    assert x is not None and (x.lac, x.cell_id, x.arfcn, x.rssi_dbm) == (0x1A2B, 0x3C4D, 62, -70)
    assert x.get("bsic") == "32" and x.get("gprs") == "1" and x.get("hsn") is None


@pytest.mark.parametrize("text", ['+QENG: "servingcell"', '+QENG: "neighbourcell intra"',
                                  '+QENG: "servingcell","NOCONN","LTE","FDD"', "+QENG:"])
def test_qeng_garbage(text: str) -> None:
    assert P.parse_qeng_servingcell(text) is None


# --------------------------------------------------------------------------
# Operator, SIM, functionality


def test_cops_forms() -> None:
    assert P.parse_cops("+COPS: 0") == P.Cops(0, None, None, None, "unknown")
    assert P.parse_cops('+COPS: 0,0,"Op, Inc.",13') == P.Cops(0, 0, "Op, Inc.", 13, "nr5g_nsa")
    assert P.parse_cops('+COPS: 0,2,"26201",7\r\nOK') == P.Cops(0, 2, "26201", 7, "lte")
    assert P.parse_cops("+COPS: x") is None
    assert P.parse_cops("OK") is None


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
    assert P.parse_cpin(text) == lock


def test_cpin_prefix_expectation() -> None:
    assert P.parse_cpin("   SIM PUK", prefix=False) == "sim_puk"
    assert P.parse_cpin("   SIM PUK", prefix=True) == "unknown"
    assert P.parse_cpin("+CPIN: SIM PIN", prefix=True) == "sim_pin"
    assert P.parse_cpin("+CPIN: SIM PIN", prefix=False) == "unknown"
    assert P.parse_cpin("+CME ERROR: 10", prefix=True) == "not_inserted"


def test_cfun() -> None:
    assert P.parse_cfun("+CFUN: 4,0") == P.Cfun(4, 0, "low")
    assert P.parse_cfun("+CFUN: 7") == P.Cfun(7, None, "unknown")
    assert P.parse_cfun("+CFUN:") is None


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
    assert P.parse_iccid(text) == iccid


def test_imei_and_imsi() -> None:
    assert P.parse_imei(["+CGSN: \"356938035643809\""]) == "356938035643809"
    assert P.parse_imei("\r\n356938035643809\r\n\r\nOK\r\n") == "356938035643809"
    assert P.parse_imei(["ERROR"]) is None
    assert P.parse_imei(["12345"]) is None
    assert P.parse_imsi(("262011234567890",)) == "262011234567890"
    assert P.parse_imsi(["at+cimi", "262011234567890", "OK"]) == "262011234567890"
    assert P.parse_imsi(["26201123456789012"]) is None


# --------------------------------------------------------------------------
# Packet data


def test_cgdcont_sorted_and_families() -> None:
    got = P.parse_cgdcont('+CGDCONT: 3,"IPV6","b"\r\n+CGDCONT: 1,"IPV4V6","a"\r\n'
                          '+CGDCONT: 2,"Non-IP",""\r\nOK')
    assert [(c.cid, c.ip_family, c.apn) for c in got] == [
        (1, "ipv4v6", "a"), (2, "non_ip", None), (3, "ipv6", "b")]
    assert P.parse_cgdcont("OK") == ()


def test_cgact() -> None:
    assert P.parse_cgact("+CGACT: 2,1\r\n+CGACT: 1,0\r\n+CGACT: x,1") == (
        P.Cgact(1, False), P.Cgact(2, True))


def test_cgact_and_cgdcont_strict_refuse_an_unreadable_line() -> None:
    assert P.parse_cgact("", strict=True) == ()
    assert P.parse_cgact("+CGACT: 1,1\r\nOK", strict=True) == (P.Cgact(1, True),)
    for bad in ("+CGACT: x,1", "+CGACT: 1,7", "+CGACT: 1"):
        with pytest.raises(ValueError, match="unreadable \\+CGACT line"):
            P.parse_cgact(f"+CGACT: 1,0\r\n{bad}\r\nOK", strict=True)
    assert P.parse_cgdcont('+CGDCONT: 1,"IP","a"', strict=True)[0].apn == "a"
    with pytest.raises(ValueError, match="unreadable \\+CGDCONT line"):
        P.parse_cgdcont('+CGDCONT: one,"IP","a"', strict=True)


def test_cgcontrdp_ipv6_with_mask_and_dual_stack() -> None:
    v6 = ".".join(["32", "1", "13", "184"] + ["0"] * 11 + ["1"])
    mask = ".".join(["255"] * 8 + ["0"] * 8)
    text = (f'+CGCONTRDP: 1,5,"internet","10.0.0.2.255.255.255.0","10.0.0.1","8.8.8.8"\r\n'
            f'+CGCONTRDP: 1,5,"internet","{v6}.{mask}","","2001:db8::53"\r\n')
    a, b = P.parse_cgcontrdp_all(text)
    assert (a.local_address, a.subnet, a.gateway_address, a.dns_primary_address) == (
        "10.0.0.2", "255.255.255.0", "10.0.0.1", "8.8.8.8")
    assert (b.local_address, b.subnet, b.gateway_address, b.dns_primary_address) == (
        "2001:db8::1", "ffff:ffff:ffff:ffff::", None, "2001:db8::53")
    assert P.parse_cgcontrdp(text) == a


def test_cgcontrdp_gateway_is_not_taken_for_a_mask() -> None:
    x = P.parse_cgcontrdp('+CGCONTRDP: 1,5,"apn","10.0.0.2","10.0.0.1","8.8.8.8"')
    assert x is not None and (x.subnet, x.gateway_address) == (None, "10.0.0.1")


@pytest.mark.parametrize("text", ['+CGCONTRDP: x,5,"apn"', '+CGCONTRDP: 1,5,"apn","1.2.3"',
                                  '+CGCONTRDP: 1,5,"apn","1.2.3.999"', "+CGCONTRDP:"])
def test_cgcontrdp_garbage(text: str) -> None:
    assert P.parse_cgcontrdp(text) is None


@pytest.mark.parametrize(("text", "want"), [
    ("+CGEV: NW MODIFY 1, 2, 0", P.Cgev("nw_modify", cid=1, event_type=0, detail="2")),
    ("+CGEV: ME PDN ACT 1, 0", P.Cgev("me_act_primary", cid=1, detail="0")),
    ("+CGEV: NW PDN ACT 5", P.Cgev("nw_act_primary", cid=5)),
    ("+CGEV: ME CLASS B", P.Cgev("me_class", detail="B")),
    ("+CGEV: NW DEACT IPV6, 2001:db8::1, 3",
     P.Cgev("nw_deact_pdp", pdp_type="IPV6", pdp_addr="2001:db8::1", cid=3)),
    ("+CGEV:  ME  DETACH ", P.Cgev("me_detach")),
])
def test_cgev_more_events(text: str, want: P.Cgev) -> None:
    assert P.parse_cgev(text) == want


@pytest.mark.parametrize("text", ["+CGEV: NW ACT IP, 1.2.3.4", "+CGEV: HELLO", "+CGEV:", "",
                                  "NW PDN ACT x", "ME DEACT 3", "REJECT"])
def test_cgev_garbage(text: str) -> None:
    assert P.parse_cgev(text) is None


# --------------------------------------------------------------------------
# Vendor status


def test_sysinfo_and_sysinfoex() -> None:
    assert P.parse_sysinfo("^SYSINFO:2,3,0,5,1,,4") == P.Sysinfo(2, 3, 0, 5, 1, None, 4)
    assert P.parse_sysinfo("^SYSINFO:2,3") is None
    x = P.parse_sysinfoex('^SYSINFOEX:2,3,0,1,,6,"LTE",101,"LTE"')
    assert x is not None and (x.sys_mode, x.sys_mode_name, x.sys_submode) == (6, "LTE", 101)
    assert P.parse_sysinfoex("^SYSINFOEX:2,3,0") is None


def test_gtrndis_with_addresses() -> None:
    x = P.parse_gtrndis('+GTRNDIS: 1,1,"10.1.2.3","8.8.8.8","8.8.4.4"')
    assert x is not None and x.connected and x.cid == 1
    assert x.addresses == ("10.1.2.3", "8.8.8.8", "8.8.4.4")
    assert P.parse_gtrndis("+GTRNDIS: x") is None


def test_ati_quectel() -> None:
    x = P.parse_ati(["Quectel", "EC25", "Revision: EC25EFAR06A06M4G"])
    assert x == P.Ati(("Quectel", "EC25", "Revision: EC25EFAR06A06M4G"), "Quectel", "EC25",
                      "EC25EFAR06A06M4G")
    assert P.parse_ati("ATI\r\r\nOK\r\n") is None


def test_qsimstat_and_qdsim() -> None:
    x = P.parse_qsimstat("+QSIMSTAT: 1,0")
    assert x is not None and x.enabled and x.inserted is False
    assert P.parse_qsimstat("+QSIMSTAT: 0,2") == P.Qsimstat(False, 2)
    assert P.parse_qdsim("+QDSIM: 1") == P.Qdsim(1)
    assert P.parse_qdsim("+QDSIM: a") is None


# --------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize(("text", "cls", "type_", "code", "message"), [
    ("+CME ERROR: 22\r\n", P.CmeError, "CME", 22, None),
    ("+CME ERROR: SIM busy", P.CmeError, "CME", None, "SIM busy"),
    ("\r\n+CMS ERROR: 310\r\n", P.CmsError, "CMS", 310, None),
    ("ERROR\r\n", P.CommandError, None, None, None),
    ("MODEM ERROR: 3", P.CommandError, "MODEM", 3, None),
    ("NO CARRIER", P.CommandError, None, None, None),
])
def test_parse_error(text: str, cls: type, type_: str | None, code: int | None,
                     message: str | None) -> None:
    err = P.parse_error(text)
    assert type(err) is cls
    assert isinstance(err, P.AtError) and isinstance(err, Exception)
    assert (err.type, err.code, err.message) == (type_, code, message)
    with pytest.raises(P.AtError):
        raise err


def test_parse_error_none_for_success_or_no_final() -> None:
    assert P.parse_error("OK") is None
    assert P.parse_error("+CSQ: 1,2") is None
    assert P.parse_error(["+CSQ: 1,2", "ERROR"]) is not None


# --------------------------------------------------------------------------
# URC classification


@pytest.mark.parametrize(("line", "kind"), [
    ("RDY", "rdy"), ("^SYSSTART", "rdy"), ("POWERED DOWN", "powered_down"),
    ("+CPIN: READY", "sim_ready"), ("+CPIN: SIM PIN", "cpin"),
    ("+CPIN: NOT INSERTED", "sim_removed"), ("+SIM READY", "sim_ready"),
    ("+SIM: Removed", "sim_removed"), ("+SIM: Inserted", "sim_inserted"),
    ("+SIM DROP", "sim_removed"), ("+QUSIM: 1", "sim_inserted"),
    ("+QSIMSTAT: 1,0", "sim_removed"), ("+QSIMSTAT: 1,1", "sim_inserted"),
    ("^SIMST: 255", "sim_removed"), ("^SIMST: 1", "sim_ready"), ("^SIMST: 4", "sim_status"),
    ("+CEREG: 1", "registration"), ("+C5GREG: 1", "registration"),
    ("+CGEV: ME DETACH", "cgev"), ("+CFUN: 1", "cfun"), ("^RSSI:19", "signal"),
    ("^HCSQ: \"LTE\",1,2,3,4", "signal"), ("^MODE:5,7", "mode"), ("^SRVST:2", "service"),
    ("+CTZV: 32", "nitz"), ("+NITZ: 1", "nitz"), ("+CMTI: \"ME\",1", "sms"),
    ("RING", "call"), ("+CRING: VOICE", "call"), ("NO CARRIER", "call"),
    ("+QIND: SMS DONE", "qind"), ("+STKPCI: 0,\"D0\"", "stk"), ("+QTONEDET: 49", "dtmf"),
    ("+QGPSURC: \"xtradata\"", "gnss"), ("+CIEV: 7,1", "indicator"),
    ("hello", None), ("", None), ("+CSQ: 1,2", None), ("OK", None),
])
def test_classify_urc(line: str, kind: str | None) -> None:
    assert P.classify_urc(line) == kind


def test_access_tech_names() -> None:
    assert P.access_tech_from_act(7) == "lte"
    assert P.access_tech_from_act(None) == "unknown"
    assert P.access_tech_from_act(99) == "unknown"
    assert P.access_tech_from_name("WCDMA") == "umts"
    assert P.access_tech_from_name('"CAT-M1"') == "lte_cat_m"
    assert P.access_tech_from_name("NR5G-NSA") == "nr5g_nsa"
    assert P.access_tech_from_name("warp") == "unknown"
    for n in range(14):
        assert P.access_tech_from_act(n) in P.ACCESS_TECH_NAMES


# --------------------------------------------------------------------------
# Hostile text: no parser ever raises


PARSERS: list[Callable[[Any], object]] = [
    P.parse_registration, P.parse_csq, P.parse_cesq, P.parse_xcesq, P.parse_qcsq,
    P.parse_hcsq, P.parse_qeng_servingcell, P.parse_cops, P.parse_cpin, P.parse_cfun,
    P.parse_iccid, P.parse_imei, P.parse_imsi, P.parse_cgdcont, P.parse_cgact,
    P.parse_cgcontrdp, P.parse_cgcontrdp_all, P.parse_cgev, P.parse_sysinfo,
    P.parse_sysinfoex, P.parse_gtrndis, P.parse_ati, P.parse_qsimstat, P.parse_qdsim,
    P.parse_error, P.classify_urc,
]
PREFIXES = ["+CREG: ", "+CGREG:", "+CEREG: ", "+C5GREG: ", "+CSQ: ", "+CESQ: ", "+XCESQ: ",
            "+XCESQI: ", "+QCSQ: ", "^HCSQ: ", '+QENG: "servingcell",', "+QENG: ", "+COPS: ",
            "+CPIN: ", "+CFUN: ", "+CCID: ", "+CRSM: ", "+CGSN: ", "+CGDCONT: ", "+CGACT: ",
            "+CGCONTRDP: ", "+CGEV: ", "^SYSINFO:", "^SYSINFOEX:", "+GTRNDIS: ", "+QSIMSTAT: ",
            "+QDSIM: ", "+CME ERROR: ", "^SIMST: ", "Revision: ", ""]
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
    assert P.parse_csq(f"+CSQ: {big},1") is None
    reg = P.parse_registration(f"+CREG: 1,{big},{big}")
    assert reg is not None and reg.lac is None and reg.ci is None
    assert P.parse_cpin(f"+CME ERROR: {big}") == "unknown"
