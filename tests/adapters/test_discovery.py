"""Discovery over a fake sysfs: the right ports, whatever else is plugged in."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pytest_mock import MockerFixture

from remsim_lab.fakesysfs import AUTO, FakeSysfs, InterfaceSpec
from remsim_supervisor.adapters import discovery
from remsim_supervisor.adapters.discovery import Discovery, FoundModem, UsbInterface
from remsim_supervisor.vendors import PROFILES, get_profile
from remsim_supervisor.vendors.base import ROLE_AT, Composition, ModemProfile
from remsim_supervisor.vendors.ports import assign_roles

EC25_ID = (0x2C7C, 0x0125)
EVERY_COMPOSITION = [(p, c) for p in PROFILES.values() for c in p.compositions]


@pytest.fixture
def fake(tmp_path: Path) -> FakeSysfs:
    return FakeSysfs(tmp_path)


@pytest.fixture
def disc(fake: FakeSysfs) -> Discovery:
    return Discovery(fake.sysfs_root, fake.dev_root)


def plug(fake: FakeSysfs, usb_path: str, profile: ModemProfile, comp: Composition) -> None:
    fake.add_usb_modem(
        usb_path, comp.vid, comp.pid, profile_key=profile.key, composition_label=comp.label
    )


def expected_at_interface(comp: Composition) -> int:
    if comp.at_interface is not None:
        return comp.at_interface
    at = comp.port(ROLE_AT)  # Huawei: the port the protocol marks
    assert at is not None
    return at.number


# --- every composition ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("profile", "comp"),
    [pc for pc in EVERY_COMPOSITION if pc[1].bus == "usb"],
    ids=[c.describe() for _, c in EVERY_COMPOSITION if c.bus == "usb"],
)
def test_every_usb_composition_is_found_with_its_ports(
    fake: FakeSysfs, disc: Discovery, profile: ModemProfile, comp: Composition
) -> None:
    # Something else holds ttyUSB0/ttyACM0 first, as on a real router.
    fake.add_usb_modem("1-1.1", 0x0403, 0x6001, {0: InterfaceSpec(driver="ftdi_sio")})
    plug(fake, "1-1.2", profile, comp)

    found = disc.find(usb_path="1-1.2")

    assert found is not None
    assert found.profile is not None and found.profile.key == profile.key
    assert found.composition == comp
    at_tty = fake.tty_for("1-1.2", expected_at_interface(comp))
    assert at_tty is not None
    assert found.at_tty == at_tty
    assert found.at_device == os.path.join(fake.dev_root, at_tty)
    assert found.at_candidates[0] == found.at_device
    if comp.secondary_at_interface is not None:
        assert found.secondary_tty == fake.tty_for("1-1.2", comp.secondary_at_interface)
    never = {fake.tty_for("1-1.2", n) for n in comp.never_open} - {None}
    assert never <= set(found.never_open_ttys)
    chosen = {found.at_tty, found.secondary_tty} | {Path(p).name for p in found.at_candidates}
    assert not chosen & set(found.never_open_ttys)
    for number in comp.net_interfaces:
        net = fake.net_for("1-1.2", number)
        if net is not None:
            assert net in found.net_ifaces
    assert found.net_ifaces, "every composition carries a network device"
    assert Path(found.sysfs_device, "authorized").read_text() == "1\n"
    assert found.needs_probe is comp.needs_probe


def test_pcie_fm350_is_found_through_its_wwan_ports(fake: FakeSysfs, disc: Discovery) -> None:
    fake.add_pci_modem("0000:01:00.0", 0x14C3, 0x4D75, ports=("mbim", "at"))

    found = disc.find(usb_path="0000:01:00.0")
    listed = disc.list_modems()

    assert found is not None
    assert found.bus == "pci"
    assert found.profile is not None and found.profile.key == "fm350gl"
    assert found.composition is not None and found.composition.bus == "pci"
    assert found.at_tty == "wwan0at0"
    assert found.at_device == os.path.join(fake.dev_root, "wwan0at0")
    assert found.net_ifaces == ("wwan0",)
    assert "wwan0mbim0" in found.control_devices
    assert found.interfaces[0].driver == "mtk_t7xx"
    assert [m.usb_path for m in listed] == ["0000:01:00.0"]
    assert disc.find(usb_id=(0x14C3, 0x4D75)) == found


def test_pcie_ports_are_found_through_the_class_index_too(fake: FakeSysfs, disc: Discovery) -> None:
    devdir = Path(fake.add_pci_modem("0000:02:00.0", ports=("at",)))
    # A kernel that places the WWAN device elsewhere: only /sys/class/wwan knows.
    elsewhere = devdir / "elsewhere"
    (devdir / "wwan").rename(elsewhere)
    link = Path(fake.sysfs_root, "class/wwan/wwan0at0")
    link.unlink()
    link.symlink_to(elsewhere / "wwan0" / "wwan0at0")

    found = disc.find(usb_path="0000:02:00.0")

    assert found is not None
    assert found.at_tty == "wwan0at0"


# --- selection ----------------------------------------------------------------------------


def test_usb_path_and_usb_id_selection(fake: FakeSysfs, disc: Discovery) -> None:
    fake.add_usb_modem("1-1.10", *EC25_ID, profile_key="ec25")
    fake.add_usb_modem("1-1.2", *EC25_ID, profile_key="ec25")
    fake.add_usb_modem("1-1.3", 0x2CB7, 0x0007, profile_key="l850gl")

    by_id = disc.find(usb_id=EC25_ID)
    by_path = disc.find(usb_path="1-1.10")
    path_wins = disc.find(usb_path="1-1.10", usb_id=(0x2CB7, 0x0007), model="l850gl")

    assert by_id is not None and by_id.usb_path == "1-1.2"  # natural order: 1.2 before 1.10
    assert by_path is not None and by_path.usb_path == "1-1.10"
    assert path_wins is not None and path_wins.usb_path == "1-1.10"
    assert by_path.at_tty != by_id.at_tty
    assert [m.usb_path for m in disc.list_modems()] == ["1-1.2", "1-1.3", "1-1.10"]
    assert disc.find(usb_id=(0x1199, 0x9071)) is None


def test_find_by_model_key_or_text(fake: FakeSysfs, disc: Discovery) -> None:
    fake.add_usb_modem("2-1", *EC25_ID, profile_key="ec25")
    fake.add_usb_modem("2-2", 0x0E8D, 0x7127, profile_key="fm350gl")

    by_key = disc.find(model="fm350gl")
    by_text = disc.find(model="FM350-GL")
    first = disc.find()

    assert by_key is not None and by_key.usb_path == "2-2"
    assert by_text == by_key
    assert first is not None and first.usb_path == "2-1"
    assert disc.find(model="ME909s-120") is None  # known model, not plugged
    assert disc.find(model="no such modem") is None


def test_ec25_rndis_puts_at_on_interface_4(fake: FakeSysfs, disc: Discovery) -> None:
    fake.add_usb_modem("1-1", *EC25_ID, profile_key="ec25", composition_label="usbnet 3 (RNDIS)")

    found = disc.find(usb_path="1-1")

    assert found is not None
    assert found.composition is not None and found.composition.label == "usbnet 3 (RNDIS)"
    assert found.at_tty == fake.tty_for("1-1", 4) == "ttyUSB2"
    assert found.secondary_tty == fake.tty_for("1-1", 5)
    assert fake.tty_for("1-1", 2) in found.never_open_ttys  # diag moved to if 2
    assert found.net_ifaces == ("usb0",)


def test_ec25_rndis_without_the_rndis_driver_is_told_by_class(
    fake: FakeSysfs, disc: Discovery
) -> None:
    serial = InterfaceSpec(driver="option", klass=0xFF, subclass=0x00, protocol=0x00)
    fake.add_usb_modem(
        "1-1",
        *EC25_ID,
        {
            0: InterfaceSpec(driver=None, klass=0xE0, subclass=0x01, protocol=0x03, tty=None),
            1: InterfaceSpec(driver=None, klass=0x0A, subclass=0x00, protocol=0x00, tty=None),
            2: InterfaceSpec(),
            3: serial,
            4: serial,
            5: serial,
        },
    )

    found = disc.find(usb_path="1-1")

    assert found is not None
    assert found.composition is not None and found.composition.label == "usbnet 3 (RNDIS)"
    assert found.at_tty == fake.tty_for("1-1", 4)
    assert found.net_ifaces == ()


def test_ec25_qmi_is_the_default_and_names_follow_the_kernel(
    fake: FakeSysfs, disc: Discovery
) -> None:
    fake.add_usb_modem("1-1", *EC25_ID, profile_key="ec25")

    found = disc.find(usb_path="1-1")

    assert found is not None
    assert found.composition is not None and found.composition.label == "usbnet 0 (QMI)"
    assert (found.at_tty, found.secondary_tty) == ("ttyUSB2", "ttyUSB3")
    assert found.never_open_ttys == ("ttyUSB0", "ttyUSB1")
    assert found.net_ifaces == ("wwan0",)
    assert found.control_devices == ("cdc-wdm0",)
    assert not found.needs_probe
    assert found.manufacturer == "Quectel"


def test_ec25_ecm_offers_probe_candidates(fake: FakeSysfs, disc: Discovery) -> None:
    fake.add_usb_modem("1-1", *EC25_ID, profile_key="ec25", composition_label="usbnet 1 (ECM)")

    found = disc.find(usb_path="1-1")

    assert found is not None
    assert found.needs_probe
    names = [Path(p).name for p in found.at_candidates]
    assert names[:2] == [fake.tty_for("1-1", 2), fake.tty_for("1-1", 3)]
    assert fake.tty_for("1-1", 0) not in names  # diag is never a candidate
    assert found.net_ifaces == ("usb0",)


def test_numbers_move_when_other_devices_come_first(fake: FakeSysfs, disc: Discovery) -> None:
    fake.add_usb_modem("1-2", 0x0403, 0x6001, {0: InterfaceSpec(driver="ftdi_sio")})
    fake.add_usb_modem("1-3", 0x0403, 0x6001, {0: InterfaceSpec(driver="ftdi_sio")})
    fake.add_usb_modem("1-1", *EC25_ID, profile_key="ec25")
    fake.remove_usb_device("1-2")
    fake.add_usb_modem("1-4", 0x1199, 0x9071, profile_key="mc7455")

    ec25 = disc.find(usb_path="1-1")
    sierra = disc.find(usb_path="1-4")

    assert ec25 is not None and ec25.at_tty == "ttyUSB4"  # 0 and 1 were taken at plug time
    assert sierra is not None
    assert sierra.never_open_ttys == ("ttyUSB0", "ttyUSB6")  # lowest free: 0 reused, then 6
    assert sierra.at_tty == "ttyUSB7"


# --- Huawei ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pcui", "modem", "diag"),
    [
        ((0xFF, 0x01, 0x12), (0xFF, 0x01, 0x10), (0xFF, 0x01, 0x13)),  # "1x" scheme (ME909u dump)
        ((0xFF, 0x02, 0x02), (0xFF, 0x02, 0x01), (0xFF, 0x02, 0x03)),  # old scheme
    ],
)
def test_huawei_at_port_is_found_by_protocol_not_number(
    fake: FakeSysfs,
    disc: Discovery,
    pcui: tuple[int, int, int],
    modem: tuple[int, int, int],
    diag: tuple[int, int, int],
) -> None:
    def spec(cls: tuple[int, int, int]) -> InterfaceSpec:
        return InterfaceSpec(driver="option", klass=cls[0], subclass=cls[1], protocol=cls[2])

    # Renumbered on purpose: diag first, PCUI in the middle, modem last.
    fake.add_usb_modem(
        "1-1",
        0x12D1,
        0x15C1,
        {
            0: spec(diag),
            1: spec(pcui),
            2: InterfaceSpec(
                driver="huawei_cdc_ncm",
                klass=0x02,
                subclass=0x0D,
                protocol=0x00,
                tty=None,
                net=AUTO,
                control=True,
            ),
            3: spec(modem),
        },
    )

    found = disc.find(usb_path="1-1")

    assert found is not None
    assert found.profile is not None and found.profile.key == "me909s"
    assert found.at_tty == fake.tty_for("1-1", 1)
    assert found.secondary_tty == fake.tty_for("1-1", 3)
    assert found.never_open_ttys == (fake.tty_for("1-1", 0),)
    assert found.net_ifaces == ("wwan0",)
    assert not found.needs_probe


def test_huawei_without_a_pcui_port_has_no_at_port_but_candidates(
    fake: FakeSysfs, disc: Discovery
) -> None:
    fake.add_usb_modem(
        "1-1",
        0x12D1,
        0x15C1,
        {
            0: InterfaceSpec(klass=0xFF, subclass=0x01, protocol=0x13),
            1: InterfaceSpec(klass=0xFF, subclass=0x01, protocol=0x10),
        },
    )

    found = disc.find(usb_path="1-1")

    assert found is not None
    assert found.at_tty is None
    assert found.needs_probe
    assert [Path(p).name for p in found.at_candidates] == [fake.tty_for("1-1", 1)]


# --- L850 ------------------------------------------------------------------------------------


def test_l850_debug_port_is_never_chosen(fake: FakeSysfs, disc: Discovery) -> None:
    fake.add_usb_modem("1-1", 0x2CB7, 0x0007, profile_key="l850gl")

    found = disc.find(usb_path="1-1")

    assert found is not None
    debug = fake.tty_for("1-1", 4)
    assert debug == "ttyACM1"
    assert found.at_tty == "ttyACM0" and found.secondary_tty == "ttyACM2"
    assert found.never_open_ttys == (debug,)
    assert os.path.join(fake.dev_root, debug) not in found.at_candidates
    assert found.net_ifaces == ("wwan0",)


def test_l850_debug_port_is_not_chosen_even_when_the_at_port_is_missing(
    fake: FakeSysfs, disc: Discovery
) -> None:
    acm = InterfaceSpec(driver="cdc_acm", klass=0x02, subclass=0x02, protocol=0x01, tty="acm")
    fake.add_usb_modem(
        "1-1",
        0x2CB7,
        0x0007,
        {
            0: InterfaceSpec(
                driver="cdc_mbim", klass=0x02, subclass=0x0E, protocol=0, tty=None, net=AUTO
            ),
            2: InterfaceSpec(driver=None, klass=0x02, subclass=0x02, protocol=0x01, tty=None),
            4: acm,
        },
    )

    found = disc.find(usb_path="1-1")

    assert found is not None
    assert found.at_tty is None
    assert found.needs_probe
    assert found.at_candidates == ()
    assert found.never_open_ttys == (fake.tty_for("1-1", 4),)


def test_l850_ncm_reports_every_ncm_interface(fake: FakeSysfs, disc: Discovery) -> None:
    fake.add_usb_modem("1-1", 0x8087, 0x095A, profile_key="l850gl")

    found = disc.find(usb_path="1-1")

    assert found is not None
    assert found.at_tty == fake.tty_for("1-1", 0)
    assert found.secondary_tty == fake.tty_for("1-1", 4)
    assert found.never_open_ttys == (fake.tty_for("1-1", 2),)
    assert found.net_ifaces == ("usb0", "usb1", "usb2")


def test_configured_850l_id_is_found_with_an_injected_profile(fake: FakeSysfs) -> None:
    l850 = get_profile("l850gl").with_usb_id(0x2CB7, 0x0A0A, like="GTUSBMODE 7 (MBIM)")
    profiles = [l850 if p.key == "l850gl" else p for p in PROFILES.values()]
    fake.add_usb_modem(
        "1-1", 0x2CB7, 0x0A0A, profile_key="l850gl", composition_label="GTUSBMODE 7 (MBIM)"
    )

    default = Discovery(fake.sysfs_root, fake.dev_root)
    configured = Discovery(fake.sysfs_root, fake.dev_root, profiles=profiles)
    found = configured.find(usb_id=(0x2CB7, 0x0A0A))

    assert default.list_modems() == []
    assert found is not None
    assert found.at_tty == fake.tty_for("1-1", 2)
    assert found.needs_probe


# --- unknown and vanishing devices --------------------------------------------------------------


def test_unknown_device_is_ignored_by_list_but_scanned_by_path(
    fake: FakeSysfs, disc: Discovery
) -> None:
    fake.add_usb_modem(
        "1-3",
        0x1E0E,
        0x9001,
        {n: InterfaceSpec() for n in range(3)}
        | {5: InterfaceSpec(driver="qmi_wwan", tty=None, net=AUTO)},
    )
    fake.add_usb_modem("1-1", *EC25_ID, profile_key="ec25")

    listed = disc.list_modems()
    found = disc.find(usb_path="1-3")

    assert [m.usb_path for m in listed] == ["1-1"]
    assert found is not None
    assert found.usb_id == (0x1E0E, 0x9001)
    assert found.profile is None and found.composition is None
    assert found.at_tty is None and found.at_device is None
    assert [i.number for i in found.interfaces] == [0, 1, 2, 5]
    assert found.interfaces[0].driver == "option"
    assert found.interfaces[0].klass == 0xFF
    assert [Path(p).name for p in found.at_candidates] == [fake.tty_for("1-3", n) for n in range(3)]
    assert found.net_ifaces == ("wwan0",)  # plugged first
    assert listed[0].net_ifaces == ("wwan1",)
    assert found.needs_probe


def test_root_hubs_and_interface_links_are_not_devices(fake: FakeSysfs, disc: Discovery) -> None:
    fake.add_usb_modem("1-1", *EC25_ID, profile_key="ec25")

    entries = os.listdir(Path(fake.sysfs_root, "bus/usb/devices"))

    assert "usb1" in entries and "1-1:1.2" in entries  # the fake is realistic...
    assert [m.usb_path for m in disc.list_modems()] == ["1-1"]  # ...and they are skipped
    assert disc.find(usb_path="usb1") is None
    assert disc.find(usb_path="1-1:1.2") is None


def test_device_vanishing_mid_scan_returns_none(
    fake: FakeSysfs, disc: Discovery, mocker: MockerFixture
) -> None:
    devdir = fake.add_usb_modem("1-1", *EC25_ID, profile_key="ec25")
    fake.add_usb_modem("1-2", 0x2CB7, 0x0007, profile_key="l850gl")
    real_listdir = discovery._listdir

    def unplug_while_listing(path: str) -> list[str]:
        entries = real_listdir(path)
        if path == devdir and fake.device_dir("1-1") is not None:
            fake.remove_usb_device("1-1")  # gone between listing and reading
        return entries

    # A USB unplug cannot happen here: the sysfs read is patched to play one.
    listdir = mocker.patch.object(discovery, "_listdir", side_effect=unplug_while_listing)

    assert disc.find(usb_path="1-1") is None
    listdir.assert_any_call(devdir)
    fake.add_usb_modem("1-1", *EC25_ID, profile_key="ec25")  # replug, vanish again during list
    listed = disc.list_modems()

    assert [m.usb_path for m in listed] == ["1-2"]
    assert listed[0].at_tty == fake.tty_for("1-2", 2)


def test_device_vanishing_after_its_interfaces_were_read_returns_none(
    fake: FakeSysfs, disc: Discovery, mocker: MockerFixture
) -> None:
    fake.add_usb_modem("1-1", *EC25_ID, profile_key="ec25")
    real_read = discovery._read

    def unplug_on_product(path: str) -> str | None:
        value = real_read(path)
        if path.endswith(os.sep + "product") and fake.device_dir("1-1") is not None:
            fake.remove_usb_device("1-1")
        return value

    read = mocker.patch.object(discovery, "_read", side_effect=unplug_on_product)

    assert disc.find(usb_path="1-1") is None
    assert any(c.args[0].endswith(os.sep + "product") for c in read.call_args_list)
    assert disc.list_modems() == []


def test_garbage_and_missing_roots_never_raise(tmp_path: Path) -> None:
    nowhere = Discovery(str(tmp_path / "no-sys"), str(tmp_path / "no-dev"))
    fake = FakeSysfs(tmp_path / "root")
    devdir = Path(fake.add_usb_modem("1-1", *EC25_ID, profile_key="ec25"))
    (devdir / "idVendor").write_text("not hex\n")
    (devdir / "1-1:1.2" / "bInterfaceNumber").unlink()  # the name still says 2

    disc = Discovery(fake.sysfs_root, fake.dev_root)

    assert nowhere.list_modems() == []
    assert nowhere.find() is None
    assert nowhere.find(usb_path="1-1") is None
    assert disc.list_modems() == []
    (devdir / "idVendor").write_text("2c7c\n")
    found = disc.find(usb_path="1-1")
    assert found is not None and found.at_tty == fake.tty_for("1-1", 2)


def test_unsafe_paths_are_refused(fake: FakeSysfs, disc: Discovery) -> None:
    fake.add_usb_modem("1-1", *EC25_ID, profile_key="ec25")

    assert disc.find(usb_path="../../devices") is None
    assert disc.find(usb_path="1-1/..") is None
    assert disc.usb_device_dir("..") is None
    assert disc.usb_device_dir("") is None


# --- helpers and the fake itself ------------------------------------------------------------------


def test_device_paths_and_device_dir(fake: FakeSysfs, disc: Discovery) -> None:
    devdir = fake.add_usb_modem("3-1.4", *EC25_ID, profile_key="ec25")

    assert disc.device_for_tty("ttyUSB2") == os.path.join(fake.dev_root, "ttyUSB2")
    assert disc.usb_device_dir("3-1.4") == os.path.realpath(devdir)
    assert Path(devdir, "power", "control").read_text() == "auto\n"
    assert disc.usb_device_dir("3-9") is None
    fake.remove_usb_device("3-1.4")
    assert disc.usb_device_dir("3-1.4") is None
    assert disc.find(usb_path="3-1.4") is None


def test_unplug_frees_names_and_removes_dev_links(fake: FakeSysfs, disc: Discovery) -> None:
    fake.add_usb_modem("1-1", *EC25_ID, profile_key="ec25")
    target = Path(fake.root, "pts-5")
    target.write_text("")
    link = fake.link_dev("ttyUSB2", str(target))

    assert os.path.realpath(link) == str(target)
    fake.remove_usb_device("1-1")
    assert not os.path.lexists(link)  # devtmpfs would drop the node with the device
    assert not Path(fake.sysfs_root, "class/tty/ttyUSB2").exists()

    fake.add_usb_modem("1-2", *EC25_ID, profile_key="ec25")
    again = disc.find(usb_path="1-2")
    assert again is not None and again.at_tty == "ttyUSB2"  # lowest free numbers reused
    assert again.net_ifaces == ("wwan0",)
    fake.link_dev("ttyUSB2", str(target))
    fake.unlink_dev("ttyUSB2")
    assert not os.path.lexists(Path(fake.dev_root, "ttyUSB2"))


def test_fake_refuses_double_plug_and_unknown_unplug(fake: FakeSysfs) -> None:
    fake.add_usb_modem("1-1", *EC25_ID, profile_key="ec25")

    with pytest.raises(ValueError):
        fake.add_usb_modem("1-1", *EC25_ID, profile_key="ec25")
    with pytest.raises(KeyError):
        fake.remove_usb_device("9-9")
    with pytest.raises(ValueError):
        fake.add_usb_modem("1-2", 0x1234, 0x5678, profile_key="ec25")
    assert fake.tty_for("9-9", 2) is None


def test_assign_roles_is_pure_and_never_picks_a_never_open_port() -> None:
    comp = get_profile("ec25").compositions[0]  # QMI: AT 2, never 0/1
    # A broken layout: the AT interface itself declared as diag class, plus a net.
    interfaces = [
        UsbInterface(0, 0xFF, 0xFF, 0xFF, "option", ("ttyUSB0",), ()),
        UsbInterface(1, 0xFF, 0x00, 0x00, "option", ("ttyUSB1",), ()),
        UsbInterface(4, 0xFF, 0xFF, 0xFF, "qmi_wwan", (), ("wwan0",)),
    ]

    roles = assign_roles(comp, interfaces)

    assert roles.at is None
    assert roles.candidates == ()
    assert roles.never_open == ("ttyUSB0", "ttyUSB1")


def test_found_modem_is_frozen(fake: FakeSysfs, disc: Discovery) -> None:
    fake.add_usb_modem("1-1", *EC25_ID, profile_key="ec25")
    found = disc.find(usb_path="1-1")

    assert isinstance(found, FoundModem)
    with pytest.raises(AttributeError):
        found.at_tty = "ttyUSB0"  # type: ignore[misc]
