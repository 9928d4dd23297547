"""Vendor profiles and the registry: the facts of MODEMS.md, encoded once."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from types import SimpleNamespace
from typing import Any

import pytest

from remsim_supervisor.core.planner import RUNGS
from remsim_supervisor.vendors import (
    MODEL_KEYS,
    PROFILES,
    RUNG_COSTS,
    choose_profile,
    get_profile,
    identify,
    known_pci_ids,
    known_usb_ids,
    profile_for_usb_id,
)
from remsim_supervisor.vendors.base import (
    ROLE_AT,
    ROLE_AT_SECONDARY,
    Composition,
    ModemProfile,
    Timings,
    serial_port,
)
from remsim_supervisor.vendors.generic import GENERIC

ALL_IDS = [
    (0x2C7C, 0x0125, "ec25"),
    (0x2C7C, 0x0121, "ec25"),  # EC21 (ModemManager rules)
    (0x2C7C, 0x0195, "ec25"),  # EG95
    (0x0E8D, 0x7126, "fm350gl"),
    (0x0E8D, 0x7127, "fm350gl"),
    (0x14C3, 0x4D75, "fm350gl"),  # PCIe, mtk_t7xx
    (0x2CB7, 0x0007, "l850gl"),
    (0x8087, 0x095A, "l850gl"),
    (0x2CB7, 0x01A0, "l850gl"),  # the design's "850L"
    (0x1199, 0x9071, "mc7455"),
    (0x1199, 0x9079, "mc7455"),  # EM7455
    (0x12D1, 0x15C1, "me909s"),
]


def iface(number: int, driver: str | None = None, cls: tuple[int, int, int] | None = None) -> Any:
    klass, subclass, protocol = cls if cls else (None, None, None)
    return SimpleNamespace(
        number=number, driver=driver, klass=klass, subclass=subclass, protocol=protocol
    )


def strings(value: object) -> Iterator[str]:
    """Every string anywhere inside a profile, however deeply nested."""
    if isinstance(value, str):
        yield value
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            yield from strings(getattr(value, f.name))
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from strings(k)
            yield from strings(v)
    elif isinstance(value, (tuple, list, set, frozenset)):
        for item in value:
            yield from strings(item)


# --- registry ---------------------------------------------------------------------


def test_registry_has_one_profile_per_family_plus_generic() -> None:
    assert set(PROFILES) == {"ec25", "fm350gl", "l850gl", "mc7455", "me909s", "generic"}
    assert all(key == p.key for key, p in PROFILES.items())


def test_get_profile_is_case_insensitive() -> None:
    assert get_profile("EC25") is PROFILES["ec25"]
    assert get_profile(" me909s ") is PROFILES["me909s"]


def test_get_profile_unknown_names_the_known_keys() -> None:
    with pytest.raises(KeyError) as excinfo:
        get_profile("sim7600")
    message = str(excinfo.value)
    assert "sim7600" in message
    assert "ec25" in message and "fm350gl" in message


@pytest.mark.parametrize(("vid", "pid", "key"), ALL_IDS)
def test_profile_for_usb_id_knows_every_id_of_modems_md(vid: int, pid: int, key: str) -> None:
    profile = profile_for_usb_id(vid, pid)
    assert profile is not None
    assert profile.key == key


def test_profile_for_usb_id_unknown_is_none() -> None:
    assert profile_for_usb_id(0x0403, 0x6001) is None  # an FTDI cable
    assert profile_for_usb_id(0x1D6B, 0x0002) is None  # a root hub


def test_known_ids_split_usb_from_pci() -> None:
    usb = known_usb_ids()
    assert {(v, p) for v, p, _ in ALL_IDS} - {(0x14C3, 0x4D75)} <= usb
    assert (0x14C3, 0x4D75) not in usb
    assert known_pci_ids() == {(0x14C3, 0x4D75)}


# --- identify -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("Quectel\r\nEC25\r\nRevision: EC25EFAR06A09M4G", "ec25"),
        ("EC25EFAR06A09M4G", "ec25"),
        ("Quectel\r\nEG25\r\nRevision: EG25GGBR07A08M2G", "ec25"),
        ("EG25-G", "ec25"),
        ("Quectel\r\nEC21\r\nRevision: EC21EUXGAR08A03M1G", "ec25"),
        ("EG95", "ec25"),
        (
            (
                "Manufacturer: Fibocom Wireless Inc.\r\nModel: FM350-GL\r\n"
                "Revision: 81600.0000.00.29.19.16"
            ),
            "fm350gl",
        ),
        ("FM350-GL", "fm350gl"),
        ('+CGMM: "L850 LTE Module"', "l850gl"),
        ("Fibocom\r\nL850 LTE Module", "l850gl"),
        ("L850-GL", "l850gl"),
        ("Fibocom 850L", "l850gl"),
        (
            (
                "Manufacturer: Sierra Wireless, Incorporated\r\nModel: MC7455\r\n"
                "Revision: SWI9X30C_02.24.05.06"
            ),
            "mc7455",
        ),
        ("MC7430", "mc7455"),
        ("EM7455", "mc7455"),
        (
            (
                "Manufacturer: Huawei Technologies Co., Ltd.\r\nModel: ME909s-120\r\n"
                "Revision: 11.617.01.00.00"
            ),
            "me909s",
        ),
        ("ME909s-120", "me909s"),
    ],
)
def test_identify_real_strings(text: str, key: str) -> None:
    assert identify(text).key == key


@pytest.mark.parametrize(
    "text",
    ["", "SIMCOM_SIM7600E-H", "Quectel\r\nRM500Q-GL", "EC200T-CN", "L860-GL", "Fibocom FM150"],
)
def test_identify_unknown_falls_back_to_generic(text: str) -> None:
    assert identify(text) is GENERIC


# --- commands -----------------------------------------------------------------------


def test_no_profile_anywhere_contains_a_network_scan() -> None:
    for profile in PROFILES.values():
        every = list(strings(profile))
        assert every, profile.key
        assert not [s for s in every if "COPS=?" in s.upper().replace(" ", "")], profile.key
        assert profile.operator_command == "AT+COPS?"


def test_a_profile_with_a_network_scan_is_refused() -> None:
    with pytest.raises(ValueError, match="forbidden"):
        dataclasses.replace(GENERIC, key="bad", init_commands=("ATE0", "AT+COPS=?"))
    with pytest.raises(ValueError, match="forbidden"):
        GENERIC.with_overrides(operator_command="at+cops = ?")


@pytest.mark.parametrize(
    ("key", "command"),
    [
        ("ec25", "AT+CFUN=1,1"),
        ("fm350gl", "AT+CFUN=15"),
        ("l850gl", "AT+CFUN=16"),
        ("mc7455", "AT!RESET"),
        ("me909s", "AT^RESET"),
        ("generic", "AT+CFUN=1,1"),
    ],
)
def test_soft_reset_by_vendor(key: str, command: str) -> None:
    assert get_profile(key).soft_reset == command


@pytest.mark.parametrize(
    ("key", "commands"),
    [
        ("ec25", ("AT+QCSQ", "AT+CSQ")),
        ("fm350gl", ("AT+CESQ", "AT+CSQ")),
        ("l850gl", ("AT+XCESQ?", "AT+CSQ")),
        ("mc7455", ("AT+CESQ", "AT+CSQ")),
        ("me909s", ("AT^HCSQ?", "AT+CSQ")),
        ("generic", ("AT+CESQ", "AT+CSQ")),
    ],
)
def test_signal_commands_by_vendor(key: str, commands: tuple[str, ...]) -> None:
    assert get_profile(key).signal_commands == commands


@pytest.mark.parametrize("profile", list(PROFILES.values()), ids=list(PROFILES))
def test_every_profile_speaks_3gpp_basics(profile: ModemProfile) -> None:
    for command in ("ATE0", "AT+CMEE=1", "AT+CREG=2", "AT+CGREG=2", "AT+CEREG=2"):
        assert command in profile.init_commands
    assert set(profile.identity_commands) == {
        "manufacturer",
        "model",
        "revision",
        "imei",
        "imsi",
        "iccid",
    }
    assert profile.identity_commands["imei"] == "AT+CGSN"
    assert profile.registration_commands[-3:] == ("AT+CEREG?", "AT+CGREG?", "AT+CREG?")
    ready = profile.urcs.classify("+CPIN: READY")
    assert (ready.kind, ready.value) == ("cpin", "ready")  # unsolicited: a restart when ready
    assert (profile.radio_off, profile.radio_on) == ("AT+CFUN=0", "AT+CFUN=1")
    assert profile.sim_command == "AT+CPIN?"


def test_only_the_5g_part_asks_for_5g_registration() -> None:
    for profile in PROFILES.values():
        is_5g = profile.key == "fm350gl"
        assert ("AT+C5GREG=2" in profile.init_commands) is is_5g, profile.key
        assert ("AT+C5GREG?" in profile.registration_commands) is is_5g, profile.key


def test_vendor_specific_commands() -> None:
    ec25, fm350, l850 = get_profile("ec25"), get_profile("fm350gl"), get_profile("l850gl")
    huawei, sierra = get_profile("me909s"), get_profile("mc7455")
    assert ec25.urcs.classify("POWERED DOWN").kind == "powered_down"
    assert ec25.urcs.classify("RDY").kind == "boot"
    assert huawei.urcs.classify("^SYSSTART").kind == "boot"
    assert ec25.identity_commands["iccid"] == "AT+QCCID"
    assert fm350.urcs.classify("+GTSIMINS: 1").kind == "sim"
    assert l850.identity_commands["iccid"] == "AT+CCID"
    assert l850.urcs.classify("+XCESQI: 99,99,255,255,20,40,10").kind == "signal"
    assert huawei.identity_commands["iccid"] == "AT^ICCID?"
    assert sierra.identity_commands["iccid"] == "AT!ICCID?"
    # A vendor's banner means nothing from another vendor's modem.
    assert all(p.urcs.classify("RDY").kind == "unknown" for p in (fm350, l850, huawei, sierra))


# --- timings ------------------------------------------------------------------------


def test_timings_from_modems_md() -> None:
    ec25 = get_profile("ec25").timings
    assert ec25.soft_reset_answer_s == 15.0
    assert ec25.reboot_to_usb_s == 12.0
    assert ec25.ready_s == 120.0
    assert ec25.reset_pulse_ms == 300
    fm350 = get_profile("fm350gl").timings
    assert fm350.reset_pulse_ms is None  # unknown: must be configured
    assert fm350.reboot_to_usb_s == 2.0
    assert get_profile("l850gl").timings.reboot_to_usb_s == 10.0
    assert all(p.timings.command_timeout_s == 5.0 for p in PROFILES.values())


def test_with_overrides_replaces_timing_and_profile_fields() -> None:
    fm350 = get_profile("fm350gl")
    tuned = fm350.with_overrides(reset_pulse_ms=250, ready_s=90.0, soft_reset="AT+CFUN=1,1")
    assert tuned.timings.reset_pulse_ms == 250
    assert tuned.timings.ready_s == 90.0
    assert tuned.soft_reset == "AT+CFUN=1,1"
    assert tuned.timings.reboot_to_usb_s == fm350.timings.reboot_to_usb_s
    assert fm350.timings.reset_pulse_ms is None  # the registry's copy is untouched
    assert tuned.key == "fm350gl"
    # A soft reset is never expected to finish before the modem is ready again.
    assert tuned.rung_costs["soft_reset"] == 90.0 > fm350.rung_costs["soft_reset"]


def test_with_overrides_applies_fields_on_top_of_a_whole_timings() -> None:
    tuned = GENERIC.with_overrides(timings=Timings(ready_s=10.0), reset_pulse_ms=700)
    assert tuned.timings.ready_s == 10.0
    assert tuned.timings.reset_pulse_ms == 700


def test_with_overrides_rejects_unknown_names() -> None:
    with pytest.raises(TypeError, match="reset_pulse"):
        GENERIC.with_overrides(reset_pulse=300)


def test_profiles_are_frozen_and_hashable() -> None:
    ec25 = get_profile("ec25")
    with pytest.raises(dataclasses.FrozenInstanceError):
        ec25.soft_reset = "AT"  # type: ignore[misc]
    with pytest.raises(TypeError):
        ec25.identity_commands["iccid"] = "AT+CCID"  # type: ignore[index]
    assert len({hash(p) for p in PROFILES.values()}) == len(PROFILES)
    assert ec25 == get_profile("ec25")


# --- compositions -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("facts", "label"),
    [
        ([iface(n, "option") for n in range(4)] + [iface(4, "qmi_wwan")], "usbnet 0 (QMI)"),
        (
            [iface(n, "option") for n in range(4)] + [iface(4, "cdc_ether"), iface(5, "cdc_ether")],
            "usbnet 1 (ECM)",
        ),
        (
            [iface(n, "option") for n in range(4)] + [iface(4, "cdc_mbim"), iface(5, "cdc_mbim")],
            "usbnet 2 (MBIM)",
        ),
        (
            [iface(0, "rndis_host"), iface(1, "rndis_host")]
            + [iface(n, "option") for n in range(2, 6)],
            "usbnet 3 (RNDIS)",
        ),
        # OpenWrt without kmod-usb-net-rndis: no driver on if 0/1, the class still tells.
        (
            [iface(0, None, (0xE0, 0x01, 0x03)), iface(1, None, (0x0A, 0x00, 0x00))]
            + [iface(n, "option", (0xFF, 0x00, 0x00)) for n in range(2, 6)],
            "usbnet 3 (RNDIS)",
        ),
        (range(5), "usbnet 0 (QMI)"),  # numbers only: the 5-interface layout is QMI
        ((), "usbnet 0 (QMI)"),  # nothing known: the factory default
    ],
)
def test_ec25_composition_is_told_apart_by_its_net_interface(facts: Any, label: str) -> None:
    comp = get_profile("ec25").composition_for(0x2C7C, 0x0125, facts)
    assert comp is not None
    assert comp.label == label


def test_ec25_rndis_shifts_the_at_port_to_interface_4() -> None:
    comp = get_profile("ec25").composition_for(
        0x2C7C, 0x0125, [iface(0, "rndis_host"), iface(1, "rndis_host")]
    )
    assert comp is not None
    assert (comp.at_interface, comp.secondary_at_interface) == (4, 5)
    assert set(comp.never_open) == {2, 3}


def test_shared_pid_with_contradicting_facts_gives_no_composition() -> None:
    facts = [iface(0, "cdc_ncm"), iface(1, "cdc_ncm"), iface(2, "cdc_ncm")]
    assert get_profile("ec25").composition_for(0x2C7C, 0x0125, facts) is None


def test_a_pid_of_its_own_wins_over_layout_details() -> None:
    comp = get_profile("fm350gl").composition_for(0x0E8D, 0x7127, range(9))
    assert comp is not None
    assert comp.at_interface == 6


def test_composition_for_another_id_is_none() -> None:
    assert get_profile("ec25").composition_for(0x0E8D, 0x7126) is None


def test_ec25_ecm_and_850l_are_marked_for_probing() -> None:
    ecm = get_profile("ec25").composition_for(0x2C7C, 0x0125, [iface(4, "cdc_ether")])
    l850l = get_profile("l850gl").composition_for(0x2CB7, 0x01A0)
    assert ecm is not None and ecm.needs_probe and ecm.probe_at[0] == 2
    assert l850l is not None and l850l.needs_probe
    assert l850l.at_interface == 2 and 4 in l850l.never_open
    assert set(l850l.probe_at) >= {2, 3, 6}


def test_fixed_layouts_from_modems_md() -> None:
    l850 = get_profile("l850gl")
    mbim = l850.composition_for(0x2CB7, 0x0007)
    ncm = l850.composition_for(0x8087, 0x095A)
    sierra = get_profile("mc7455").composition_for(0x1199, 0x9071)
    fm40 = get_profile("fm350gl").composition_for(0x0E8D, 0x7126)
    pcie = get_profile("fm350gl").composition_for(0x14C3, 0x4D75)
    huawei = get_profile("me909s").composition_for(0x12D1, 0x15C1)
    assert mbim is not None
    assert (mbim.at_interface, mbim.secondary_at_interface, mbim.never_open) == (2, 6, (4,))
    assert ncm and (ncm.at_interface, ncm.secondary_at_interface) == (0, 4)
    assert ncm.net_interfaces == (6, 8, 10)
    assert sierra and sierra.at_interface == 3 and set(sierra.never_open) == {0, 2}
    assert fm40 and fm40.at_interface == 4 and fm40.net_interfaces == (0, 1)
    assert pcie and pcie.bus == "pci" and pcie.at_interface is None
    assert huawei and huawei.at_interface is None
    assert 0x02 in huawei.at_protocols and 0x01 in huawei.secondary_protocols


@pytest.mark.parametrize(
    "comp",
    [c for p in PROFILES.values() for c in p.compositions],
    ids=lambda c: c.describe(),
)
def test_published_ports_agree_with_roles(comp: Composition) -> None:
    assert comp.at_interface not in comp.never_open
    if comp.bus == "pci":
        assert comp.ports == ()
        return
    at = comp.port(ROLE_AT)
    assert at is not None and at.tty is not None
    if comp.at_interface is not None:
        assert at.number == comp.at_interface
    else:
        assert at.protocol in comp.at_protocols
    if comp.secondary_at_interface is not None:
        secondary = comp.port(ROLE_AT_SECONDARY)
        assert secondary is not None and secondary.number == comp.secondary_at_interface
    assert all(n in {p.number for p in comp.ports} for n in comp.net_interfaces)


def test_inconsistent_composition_is_refused() -> None:
    bad = Composition(
        vid=0x1234,
        pid=0x5678,
        label="bad",
        at_interface=3,
        secondary_at_interface=None,
        net_interfaces=(),
        ports=(serial_port(2, ROLE_AT),),
    )
    with pytest.raises(ValueError, match="interface 3"):
        dataclasses.replace(GENERIC, key="bad", compositions=(bad,))
    never = dataclasses.replace(bad, never_open=(3,), ports=())
    with pytest.raises(ValueError, match="never-open"):
        dataclasses.replace(GENERIC, key="bad", compositions=(never,))


def test_with_usb_id_adds_a_configured_id_marked_for_probing() -> None:
    l850 = get_profile("l850gl")
    configured = l850.with_usb_id(0x2CB7, 0x0A0A, like="GTUSBMODE 7 (MBIM)")
    comp = configured.composition_for(0x2CB7, 0x0A0A)
    assert comp is not None
    assert comp.at_interface == 2 and comp.never_open == (4,)
    assert comp.needs_probe
    assert (0x2CB7, 0x0A0A) not in l850.usb_ids()  # the registry's copy is untouched
    with pytest.raises(KeyError):
        l850.with_usb_id(0x2CB7, 0x0A0B, like="no such mode")


# --- the one model list, rung costs, signal parsers ----------------------------------


def test_model_keys_are_the_profile_keys_in_order() -> None:
    assert MODEL_KEYS == ("ec25", "fm350gl", "l850gl", "mc7455", "me909s", "generic")
    assert tuple(PROFILES) == MODEL_KEYS
    assert set(RUNG_COSTS) == set(MODEL_KEYS)
    for key, costs in RUNG_COSTS.items():
        assert tuple(costs) == RUNGS, key  # every rung, in the planner's order


def test_a_profile_must_cost_every_rung() -> None:
    with pytest.raises(ValueError, match="rung costs"):
        dataclasses.replace(GENERIC, rung_costs={"reroute": 10.0})


@pytest.mark.parametrize(("key", "command", "answer", "field", "value"), [
    ("ec25", "AT+QCSQ", ['+QCSQ: "LTE",-60,-87,195,-7'], "rsrp_dbm", -87),
    ("l850gl", "AT+XCESQ?", ["+XCESQ: 0,99,99,255,255,20,40,10"], "rsrp_dbm", -101.0),
    ("me909s", "AT^HCSQ?", ['^HCSQ: "LTE",50,40,100,20'], "rsrp_dbm", -100.0),
    ("generic", "AT+CESQ", ["+CESQ: 99,99,255,255,20,40"], "rsrp_dbm", -101.0),
    ("mc7455", "AT+CSQ", ["+CSQ: 18,99"], "rssi_dbm", -77),
])
def test_each_signal_command_is_read_by_its_own_parser(key: str, command: str, answer: list[str],
                                                        field: str, value: float) -> None:
    got = get_profile(key).read_signal(command, answer)
    assert getattr(got, field) == value
    assert get_profile(key).read_signal("AT+NOSUCH", answer) is None


def test_choose_profile_configured_then_described_then_by_device() -> None:
    assert choose_profile("me909s", "Quectel EC25").key == "me909s"
    assert choose_profile("auto", "Quectel EC25").key == "ec25"
    assert choose_profile("auto", "Acme Turbo", get_profile("mc7455")).key == "mc7455"
    assert choose_profile("", "Acme Turbo", usb_id=(0x12D1, 0x15C1)).key == "me909s"
    assert choose_profile("auto", "Acme Turbo").key == "generic"
