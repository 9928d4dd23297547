"""The typed configuration: defaults, every check, one-line problems, environment overrides."""

from __future__ import annotations

import socket
from collections.abc import Mapping
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from remsim_supervisor import config as c
from remsim_supervisor.config import ConfigError, GpioSpec, Problem, uci
from tests.fuzzing import examples
from tests.paths import DATA

DATA = DATA / "config"
PATH = "/etc/config/remsim-supervisor"

BASE = """\
config ionmesh 'ionmesh'
	option url 'http://ionmesh.example.com:5000'

config modem 'modem1'
	option role 'primary'
	option usb_path '1-1'

config modem 'modem2'
	option role 'iot'
	option usb_path '1-2'
"""


def parse(text: str, environ: Mapping[str, str] | None = None) -> c.Config:
    return c.parse_config(text, PATH, environ)


def problems(text: str, environ: Mapping[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        c.parse_config(text, PATH, environ)
    return [str(p) for p in info.value.problems]


def only_problem(text: str, environ: Mapping[str, str] | None = None) -> str:
    found = problems(text, environ)
    assert len(found) == 1, found
    return found[0]


def with_option(section: str, option: str, value: str) -> str:
    """BASE plus one option in a section (added as its own section when BASE lacks it)."""
    if section == "modem1":
        return BASE.replace("option usb_path '1-1'",
                            f"option usb_path '1-1'\n\toption {option} '{value}'")
    if section == "ionmesh":
        return BASE.replace("config ionmesh 'ionmesh'\n",
                            f"config ionmesh 'ionmesh'\n\toption {option} '{value}'\n")
    return BASE + f"\nconfig {section} '{section}'\n\toption {option} '{value}'\n"


def line_of(text: str, fragment: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if fragment in line)


# --- the files ------------------------------------------------------------------------------

def test_example_file_reads_completely() -> None:
    cfg = c.load(str(DATA / "example.conf"), {})
    assert cfg.path.endswith("example.conf")
    assert cfg.supervisor == c.SupervisorConfig(enabled=True, grace_period=300, log_level="info")
    ion = cfg.ionmesh
    assert (ion.url, ion.client_id, ion.tenant_id, ion.mapping_mode, ion.mcc_mnc, ion.api_key,
            ion.heartbeat_interval, ion.timeout) == (
        "http://ionmesh.example.com:5000", "router-001", 1, "KI_PROXY_SWSIM", "26201", None,
        60, 10.0)
    assert [(m.name, m.role, m.model, m.usb_path, m.interface, m.line) for m in cfg.modems] == [
        ("modem1", "primary", "auto", "1-1", "wwan0", 20),
        ("modem2", "iot", "auto", "1-2", "wwan1", 28)]
    assert cfg.modem("modem1").sim_gpio == GpioSpec("chip", "gpiochip0", 20, None,
                                                     "gpiochip0:20")
    assert cfg.by_role("iot").reset_gpio.offset == 23
    assert cfg.modem("nope") is None
    assert cfg.routing == c.RoutingConfig(table=240, priority=90,
                                          pins=("remsim.example.com",), failback_after=3)


def test_product_example_verbatim_lacks_only_mcc_mnc() -> None:
    # PRODUCT.md's example pairs KI_PROXY_SWSIM with an empty mcc_mnc
    text = (DATA / "example.conf").read_text().replace("'26201'", "''")
    assert only_problem(text) == (
        f"{PATH}:15: ionmesh.mcc_mnc: required with mapping_mode KI_PROXY_SWSIM: the MCC and "
        "MNC of the SIM's carrier, as in '26201'")


def test_three_mistakes_on_three_lines_give_exactly_three_problems() -> None:
    path = str(DATA / "three-mistakes.conf")
    with pytest.raises(ConfigError) as info:
        c.load(path, {})
    assert [(p.line, p.section, p.option) for p in info.value.problems] == [
        (4, "main", "grace_period"), (10, "modem1", "role"), (14, "routing", "tabel")]
    assert str(info.value).splitlines() == [
        f"{path}:4: main.grace_period: must be a whole number of seconds, not '5m'",
        f"{path}:10: modem1.role: must be 'primary' or 'iot', not 'prim'",
        f"{path}:14: routing.tabel: unknown option: did you mean 'table'?",
    ]


def test_every_default_of_the_product_table(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "gethostname", lambda: "router-xyz")
    cfg = c.load(str(DATA / "minimal.conf"), {})
    s = cfg.supervisor
    assert (s.enabled, s.grace_period, s.log_level, s.control_socket, s.data_budget_mb) == (
        True, 300, "info", "/var/run/remsim-supervisor.sock", None)
    i = cfg.ionmesh
    assert (i.client_id, i.tenant_id, i.mapping_mode, i.mcc_mnc, i.api_key,
            i.heartbeat_interval, i.timeout, i.ca_file) == (
        "router-xyz", 1, "ONE_TO_ONE_SWSIM", None, None, 60, 10.0, None)
    (m,) = cfg.modems
    assert (m.model, m.usb_path, m.at_port, m.interface, m.device) == (
        "auto", None, None, None, None)
    assert (m.sim_gpio, m.reset_gpio, m.power_gpio) == (None, None, None)
    assert (m.sim_active_low, m.reset_active_low, m.power_active_low) == (False, False, False)
    assert (m.sim_remote_value, m.reset_pulse_ms) == (1, None)
    assert m.usb_id == (0x2C7C, 0x0125)
    assert cfg.routing == c.RoutingConfig(240, 90, (), 3)
    assert cfg.escalation == c.EscalationConfig(enabled=True, margin=30, max_resets_per_hour=6)
    assert c.DEFAULT_PATH == "/etc/config/remsim-supervisor"


def test_every_option_can_be_set() -> None:
    text = """\
config supervisor
	option enabled 'no'
	option grace_period '600'
	option log_level 'DEBUG'
	option control_socket '/tmp/rs.sock'
	option data_budget_mb '10.5'
config ionmesh
	option url 'https://ion.example.net/api/backend/v1/remsim'
	option client_id 'r 1'
	option tenant_id '7'
	option mapping_mode 'one_to_one_vsim'
	option mcc_mnc '310410'
	option api_key 'abcdefghijklmnop'
	option heartbeat_interval '30'
	option timeout '2.5'
	option ca_file '/etc/ssl/my.pem'
config modem 'm'
	option role 'iot'
	option model 'FM350-GL'
	option usb_path '2-1.4.3'
	option usb_id '0e8d:7126'
	option at_port '/dev/ttyUSB4'
	option interface 'wwan_iot'
	option device 'usb0'
	option sim_gpio 'sim1'
	option reset_gpio '/dev/gpiochip2:3'
	option power_gpio 'sysfs:512'
	option sim_active_low 'on'
	option reset_active_low 'true'
	option power_active_low 'enabled'
	option sim_remote_value '0'
	option reset_pulse_ms '300'
config routing
	option table '1000'
	option priority '500'
	list pin '192.0.2.1'
	list pin 'Bankd.Example.com 2001:db8::1'
	option failback_after '5'
config escalation
	option margin '0'
	option max_resets_per_hour '2'
"""
    cfg = parse(text)
    assert cfg.supervisor == c.SupervisorConfig(False, 600, "debug", "/tmp/rs.sock", 10.5)
    assert cfg.ionmesh.url == "https://ion.example.net/api/backend/v1/remsim"
    assert (cfg.ionmesh.client_id, cfg.ionmesh.tenant_id, cfg.ionmesh.mapping_mode) == (
        "r 1", 7, "ONE_TO_ONE_VSIM")
    assert (cfg.ionmesh.mcc_mnc, cfg.ionmesh.api_key, cfg.ionmesh.heartbeat_interval,
            cfg.ionmesh.timeout, cfg.ionmesh.ca_file) == (
        "310410", "abcdefghijklmnop", 30, 2.5, "/etc/ssl/my.pem")
    m = cfg.modem("m")
    assert (m.role, m.model, m.usb_path, m.usb_id, m.at_port, m.interface, m.device) == (
        "iot", "fm350gl", "2-1.4.3", (0x0E8D, 0x7126), "/dev/ttyUSB4", "wwan_iot", "usb0")
    assert m.sim_gpio == GpioSpec("name", None, None, "sim1", "sim1")
    assert m.reset_gpio == GpioSpec("chip", "gpiochip2", 3, None, "/dev/gpiochip2:3")
    assert m.power_gpio == GpioSpec("sysfs", None, 512, None, "sysfs:512")
    assert (m.sim_active_low, m.reset_active_low, m.power_active_low) == (True, True, True)
    assert (m.sim_remote_value, m.reset_pulse_ms) == (0, 300)
    assert cfg.routing == c.RoutingConfig(1000, 500, ("192.0.2.1", "bankd.example.com",
                                                      "2001:db8::1"), 5)
    assert cfg.escalation == c.EscalationConfig(margin=0, max_resets_per_hour=2)


# --- problem lines --------------------------------------------------------------------------

def test_problem_formats() -> None:
    assert str(Problem("F", 14, "modem1", "role", "bad")) == "F:14: modem1.role: bad"
    assert str(Problem("F", 9, "modem1", "", "bad")) == "F:9: modem1: bad"
    assert str(Problem("F", 3, "", "", "bad")) == "F:3: bad"
    assert str(Problem("environment", 0, "modem1", "sim_gpio", "bad", "MODEM1_SIM_GPIO")) \
        == "environment: MODEM1_SIM_GPIO -> modem1.sim_gpio: bad"
    assert str(Problem("environment", 0, "", "", "bad", "OPENWRT_DUAL_MODEM")) \
        == "environment: OPENWRT_DUAL_MODEM: bad"


def test_config_error_lists_problems_one_per_line() -> None:
    err = ConfigError([Problem("F", 1, "a", "b", "x"), Problem("F", 2, "", "", "y")])
    assert str(err) == "F:1: a.b: x\nF:2: y"
    assert len(err.problems) == 2


def test_syntax_problems_are_reported_beside_the_others() -> None:
    text = BASE + "config routing\n\tlist pin 'x\n"  # runs to the end of the file
    text = text.replace("option role 'iot'", "option role 'iot' extra")
    text = text.replace("option role 'primary'", "option role 'primary'\n\toption bad")
    # modem2 lost its role to the broken line: that is not reported as a second problem
    assert problems(text) == [
        (f"{PATH}:6: modem1.bad: unknown option: modem sections know role, model, usb_path, "
        "usb_id, at_port, interface, device, sim_gpio, reset_gpio, power_gpio, sim_active_low, "
        "reset_active_low, power_active_low, sim_remote_value, reset_pulse_ms"),
        (f"{PATH}:10: too many values after 'option' ('extra'): quote a value that contains "
        "spaces"),
        f"{PATH}:13: unterminated ' quote: add the closing '",
    ]


def test_value_over_several_lines_points_at_a_missing_quote() -> None:
    text = BASE.replace("option usb_path '1-2'", "option usb_path '1-2\n\toption interface x'")
    assert only_problem(text) == (
        f"{PATH}:10: modem2.usb_path: the value runs on over several lines: a closing quote "
        "is probably missing")


# --- sections -------------------------------------------------------------------------------

def test_unknown_section_type_suggests_the_closest() -> None:
    assert only_problem(BASE + "config modme 'x'\n\toption role 'iot'\n") == (
        f"{PATH}:11: x: unknown section type 'modme': did you mean 'modem'?")
    assert "known types: supervisor, ionmesh, modem, routing, escalation" in only_problem(
        BASE + "config zzz\n")


def test_unknown_option_suggests_the_closest_or_lists_them() -> None:
    text = BASE.replace("option usb_path '1-1'",
                        "option usbpath '1-1'\n\toption usb_id '1234:abcd'")
    assert only_problem(text) == f"{PATH}:6: modem1.usbpath: unknown option: did you mean " \
                                 "'usb_path'?"
    message = only_problem(BASE + "config escalation\n\toption qqq '1'\n")
    assert message.startswith(f"{PATH}:12: @escalation[0].qqq: unknown option: escalation "
                              "sections know enabled, step_cost, margin, max_resets_per_hour")


def test_missing_ionmesh_section_is_one_problem() -> None:
    text = BASE.replace("config ionmesh 'ionmesh'\n\toption url 'http://ionmesh.example.com:5000'\n",
                        "")
    found = only_problem(text)
    assert found.startswith(f"{PATH}:0: ionmesh.url: required")


def test_ionmesh_section_without_url() -> None:
    text = BASE.replace("\toption url 'http://ionmesh.example.com:5000'\n", "")
    assert only_problem(text) == f"{PATH}:1: ionmesh.url: required: add option url " \
                                 "'http://HOST:5000'"


def test_optional_sections_may_be_missing_or_anonymous() -> None:
    cfg = parse(BASE.replace("config ionmesh 'ionmesh'", "config ionmesh")
                + "config supervisor\n\toption grace_period '200'\n")
    assert cfg.supervisor.grace_period == 200
    assert cfg.ionmesh.url == "http://ionmesh.example.com:5000"


def test_second_singleton_section() -> None:
    text = BASE + "config routing 'a'\nconfig routing 'b'\n"
    assert only_problem(text) == f"{PATH}:12: b: a second 'routing' section (the first is on " \
                                 "line 11): merge them into one"


def test_section_name_used_twice() -> None:
    text = BASE + "config modem 'modem1'\n\toption role 'iot'\n"
    assert only_problem(text) == f"{PATH}:11: modem1: section name 'modem1' is already used " \
                                 "on line 4 (UCI would merge the two): rename one"


def test_no_modem_section() -> None:
    text = "config ionmesh\n\toption url 'http://h'\n"
    assert only_problem(text).startswith(f"{PATH}:0: no modem section: add one")


# --- options: given twice, list/option leniency -----------------------------------------------

def test_option_given_twice_is_a_problem() -> None:
    text = BASE.replace("option usb_path '1-1'", "option usb_path '1-1'\n\toption usb_path '1-3'")
    assert only_problem(text) == f"{PATH}:7: modem1.usb_path: set twice (also on line 6): " \
                                 "UCI keeps only the last; delete one"


def test_scalar_as_one_item_list_is_accepted_but_not_two() -> None:
    cfg = parse(BASE + "config routing\n\tlist table '300'\n")
    assert cfg.routing.table == 300
    assert only_problem(BASE + "config routing\n\tlist table '300'\n\tlist table '301'\n") == (
        f"{PATH}:12: @routing[0].table: takes one value, but 'list' gives it 2 (lines 12, 13): "
        "use one 'option'")


def test_pin_as_option_and_space_separated_values() -> None:
    cfg = parse(BASE + "config routing\n\toption pin 'a.example b.example'\n"
                       "\tlist pin 'A.example'\n\tlist pin ''\n")
    assert cfg.routing.pins == ("a.example", "b.example")


def test_empty_value_means_unset() -> None:
    cfg = parse(with_option("modem1", "model", "") + "config supervisor\n\toption log_level ''\n")
    assert cfg.modem("modem1").model == "auto"
    assert cfg.supervisor.log_level == "info"


# --- values ---------------------------------------------------------------------------------

BAD_VALUES = [
    ("supervisor", "enabled", "maybe", ("must be 1 or 0 (or yes/no, on/off, true/false, "
                                       "enabled/disabled), not 'maybe'")),
    ("supervisor", "grace_period", "0", "must be more than 0 seconds, not 0"),
    ("supervisor", "grace_period", "1.5", "must be a whole number of seconds, not '1.5'"),
    ("supervisor", "log_level", "warn", ("must be one of debug, info, warning, error, "
                                        "not 'warn'")),
    ("supervisor", "control_socket", "rs.sock", "must be an absolute path"),
    ("supervisor", "data_budget_mb", "0", "must be more than 0 megabytes"),
    ("supervisor", "data_budget_mb", "ten", "must be a number of megabytes, not 'ten'"),
    ("ionmesh", "heartbeat_interval", "5", "must be between 10 and 3600 seconds, not 5"),
    ("ionmesh", "heartbeat_interval", "3601", "must be between 10 and 3600 seconds, not 3601"),
    ("ionmesh", "timeout", "0", "must be more than 0 seconds"),
    ("ionmesh", "timeout", "-1", "must be more than 0 seconds"),
    ("ionmesh", "tenant_id", "0", "must be at least 1, not 0"),
    ("ionmesh", "mapping_mode", "KI", ("must be one of ONE_TO_ONE_SWSIM, ONE_TO_ONE_VSIM, "
                                      "KI_PROXY_SWSIM, not 'KI'")),
    ("ionmesh", "mcc_mnc", "2620", "must be 5 or 6 digits"),
    ("ionmesh", "mcc_mnc", "26201a", "must be 5 or 6 digits"),
    ("ionmesh", "ca_file", "certs.pem", "must be an absolute path"),
    ("modem1", "model", "ec21", ("must be one of auto, ec25, fm350gl, l850gl, mc7455, me909s, "
                                "generic, not 'ec21'")),
    ("modem1", "usb_id", "2c7c-0125", "must be VID:PID in hex, such as '2c7c:0125'"),
    ("modem1", "usb_id", "2c7c:125", "must be VID:PID in hex"),
    ("modem1", "at_port", "ttyUSB2", "must be an absolute path such as /dev/ttyUSB2, or auto"),
    ("modem1", "interface", "wan-4", "must be a netifd interface name"),
    ("modem1", "device", "a/b", "must be a Linux network device name"),
    ("modem1", "device", "abcdefghijklmnop", "must be a Linux network device name"),
    ("modem1", "sim_gpio", "20", "a bare number is ambiguous: write sysfs:20"),
    ("modem1", "reset_gpio", "gpio0:21", "write gpiochipN:OFFSET"),
    ("modem1", "power_gpio", "sysfs:x", "sysfs needs a GPIO number"),
    ("modem1", "sim_gpio", "sim:", "sim needs a line name"),
    ("modem1", "sim_active_low", "2", "must be 1 or 0"),
    ("modem1", "sim_remote_value", "2", ("must be 0 or 1 (the SIM line level that selects the "
                                        "remote SIM), not '2'")),
    ("modem1", "reset_pulse_ms", "0", "must be between 1 and 10000 milliseconds, not 0"),
    ("modem1", "reset_pulse_ms", "20000", "must be between 1 and 10000 milliseconds"),
    ("routing", "table", "0", "must be between 1 and 4294967295, not 0"),
    ("routing", "table", "4294967296", "must be between 1 and 4294967295"),
    ("routing", "table", "254", ("must not be 254: 253, 254 and 255 are the kernel's default, "
                                "main and local tables")),
    ("routing", "table", "253", "must not be 253"),
    ("routing", "table", "255", "must not be 255"),
    ("routing", "table", "1", "must not be 1: mwan3 numbers its interface tables 1-60"),
    ("routing", "table", "60", "mwan3"),
    ("routing", "priority", "0", ("must not be 0: 0, 32766 and 32767 are the kernel's local, "
                                 "main and default rules")),
    ("routing", "priority", "32766", "must not be 32766"),
    ("routing", "priority", "32767", "must not be 32767"),
    ("routing", "priority", "40000", "must be between 1 and 32765, not 40000"),
    ("routing", "priority", "1001", "mwan3 owns rule preferences 1001-3062"),
    ("routing", "priority", "3062", "mwan3 owns rule preferences 1001-3062"),
    ("routing", "priority", "10000", "netifd puts its source rules there"),
    ("routing", "priority", "20000", "netifd"),
    ("routing", "pin", "10.0.0.0/8", "must be a host name or one address, not a network"),
    ("routing", "pin", "host:9998", "must be a host name or an IP address (without a port)"),
    ("routing", "pin", "-bad-.example", "must be a host name or an IP address"),
    ("routing", "failback_after", "0", "must be more than 0 heartbeats, not 0"),
    ("escalation", "margin", "-1", "must be at least 0 seconds, not -1"),
    ("escalation", "max_resets_per_hour", "0", "must be at least 1, not 0"),
]


@pytest.mark.parametrize(("section", "option", "value", "message"), BAD_VALUES,
                         ids=[f"{s}.{o}={v}" for s, o, v, _ in BAD_VALUES])
def test_bad_value_is_one_problem_at_its_line(section: str, option: str, value: str,
                                              message: str) -> None:
    text = with_option(section, option, value)
    expected = f"{PATH}:{line_of(text, f'option {option} ')}: {section}.{option}: "
    found = only_problem(text)
    assert found.startswith(expected), found
    assert message in found


@pytest.mark.parametrize("value", ["1", "0", "yes", "no", "on", "off", "true", "false",
                                   "enabled", "disabled", "YES", "True"])
def test_uci_booleans(value: str) -> None:
    cfg = parse(with_option("supervisor", "enabled", value))
    assert cfg.supervisor.enabled is (value.lower() in ("1", "yes", "on", "true", "enabled"))


@pytest.mark.parametrize("value", ["1-1", "1-1.2", "2-1.4.3", "10-12"])
def test_usb_paths(value: str) -> None:
    text = BASE.replace("option usb_path '1-1'", f"option usb_path '{value}'")
    assert parse(text).modem("modem1").usb_path == value


@pytest.mark.parametrize("value", ["1", "1-", "-1", "1-1.", "1.1-1", "usb1-1", "1-1:1.0"])
def test_bad_usb_paths(value: str) -> None:
    text = BASE.replace("option usb_path '1-1'", f"option usb_path '{value}'")
    assert "modem1.usb_path: must be a USB device path such as '1-1' or '1-1.2'" in \
        only_problem(text)


@pytest.mark.parametrize(("url", "message"), [
    ("ionmesh.example.com:5000", "must start with http:// or https://"),
    ("ftp://ionmesh.example.com", "must start with http:// or https://"),
    ("http://", "has no host"),
    ("http://:5000", "has no host"),
    ("http://h:99999", "is not a valid URL"),
    ("http://h:0", "has port 0"),
    ("http://user:pw@h", "must not hold credentials"),
    ("http://h/x?y=1", "must not have a ?query or #fragment"),
    ("http://h x", "must not contain spaces"),
])
def test_bad_urls(url: str, message: str) -> None:
    text = BASE.replace("http://ionmesh.example.com:5000", url)
    found = only_problem(text)
    assert found.startswith(f"{PATH}:2: ionmesh.url: ")
    assert message in found


@pytest.mark.parametrize("url", ["http://h", "https://h:8443", "http://10.0.0.1:5000/api",
                                 "http://[2001:db8::1]:5000"])
def test_good_urls(url: str) -> None:
    assert parse(BASE.replace("http://ionmesh.example.com:5000", url)).ionmesh.url == url


def test_ki_proxy_needs_mcc_mnc_at_the_mapping_mode_line() -> None:
    text = with_option("ionmesh", "mapping_mode", "KI_PROXY_SWSIM")
    assert only_problem(text) == f"{PATH}:2: ionmesh.mcc_mnc: required with mapping_mode " \
                                 "KI_PROXY_SWSIM: the MCC and MNC of the SIM's carrier, as in " \
                                 "'26201'"
    cfg = parse(text.replace("\toption url", "\toption mcc_mnc '26201'\n\toption url"))
    assert cfg.ionmesh.mcc_mnc == "26201"


def test_heartbeat_interval_and_margin_must_fit_in_the_grace_period() -> None:
    text = with_option("ionmesh", "heartbeat_interval", "300")
    assert only_problem(text) == f"{PATH}:2: ionmesh.heartbeat_interval: must be shorter " \
                                 "than supervisor.grace_period (300 s), not 300 s"
    text = BASE + "config supervisor 'main'\n\toption grace_period '50'\n"
    assert only_problem(text) == f"{PATH}:12: main.grace_period: must be longer than " \
                                 "ionmesh.heartbeat_interval (60 s)"
    text = with_option("escalation", "margin", "300")
    assert "escalation.margin: must be shorter than supervisor.grace_period (300 s)" in \
        only_problem(text)


def test_a_rejected_value_is_not_cross_checked_again_with_its_default() -> None:
    # heartbeat_interval '3' is below its range; the default 60 that stands in
    # for it must not then be found too long for grace_period 50.
    text = with_option("ionmesh", "heartbeat_interval", "3") \
        + "config supervisor 'main'\n\toption grace_period '50'\n"
    assert only_problem(text) == f"{PATH}:2: ionmesh.heartbeat_interval: must be between " \
                                 "10 and 3600 seconds, not 3"
    # A rejected grace_period stands for nothing either.
    text = with_option("ionmesh", "heartbeat_interval", "400") \
        + "config supervisor 'main'\n\toption grace_period 'soon'\n"
    assert only_problem(text).startswith(f"{PATH}:13: main.grace_period: must be a whole")
    text = with_option("escalation", "margin", "-5") \
        + "\nconfig supervisor 'main'\n\toption grace_period '20'\n"
    found = problems(text)
    assert len(found) == 2, found  # margin's own line, and grace 20 < heartbeat 60
    assert "escalation.margin: must be" in found[0] and "shorter" not in found[0]
    assert "main.grace_period: must be longer than ionmesh.heartbeat_interval" in found[1]


# --- GPIO specs -----------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "kind", "chip", "offset", "name"), [
    ("gpiochip0:21", "chip", "gpiochip0", 21, None),
    ("/dev/gpiochip0:21", "chip", "gpiochip0", 21, None),
    ("/dev/gpio/special:3", "chip", "/dev/gpio/special", 3, None),
    ("5g2", "name", None, None, "5g2"),
    ("sim1", "name", None, None, "sim1"),
    ("modem-reset_1", "name", None, None, "modem-reset_1"),
    ("sysfs:21", "sysfs", None, 21, None),
    ("sim:modem1-sim", "sim", None, None, "modem1-sim"),
])
def test_gpio_specs(text: str, kind: str, chip: str | None, offset: int | None,
                    name: str | None) -> None:
    spec = GpioSpec.parse(text)
    assert (spec.kind, spec.chip, spec.offset, spec.name, spec.text) == (
        kind, chip, offset, name, text)
    assert str(spec) == text


def test_gpio_chip_path_and_legacy_numbers() -> None:
    assert GpioSpec.parse("gpiochip1:2").chip_path == "/dev/gpiochip1"
    assert GpioSpec.parse("/dev/gpio/x:2").chip_path == "/dev/gpio/x"
    assert GpioSpec.parse("5g2").chip_path is None
    assert GpioSpec.parse("20", legacy=True) == GpioSpec("sysfs", None, 20, None, "20")
    for bad in ("20", "a b", "chip:1:2", "gpiochip0:99999", ""):
        with pytest.raises(ValueError):
            GpioSpec.parse(bad)


# --- modems ---------------------------------------------------------------------------------

def test_each_role_at_most_once() -> None:
    text = BASE.replace("option role 'iot'", "option role 'primary'")
    assert only_problem(text) == f"{PATH}:9: modem2.role: role 'primary' is already modem1's " \
                                 "(line 4): each role belongs to one modem"


def test_modem_needs_a_role_and_a_way_to_be_found() -> None:
    text = BASE + "config modem 'modem3'\n\toption model 'ec25'\n\toption at_port 'auto'\n"
    assert problems(text) == [
        f"{PATH}:11: modem3.role: required: add option role 'primary' or 'iot'",
        (f"{PATH}:11: modem3: no way to find the modem: add option usb_path (as in '1-1'), "
        "usb_id (as in '2c7c:0125') or at_port"),
    ]


@pytest.mark.parametrize("locator", ["usb_path '1-4'", "usb_id '2c7c:0125'",
                                     "at_port '/dev/ttyUSB2'"])
def test_any_one_locator_is_enough(locator: str) -> None:
    text = BASE.replace("option usb_path '1-1'", f"option {locator}")
    assert parse(text).modem("modem1").role == "primary"


def test_anonymous_modem_is_named_by_its_label() -> None:
    cfg = parse(BASE.replace("config modem 'modem2'", "config modem"))
    assert cfg.by_role("iot").name == "@modem[1]"


@pytest.mark.parametrize(("option", "first", "second", "what"), [
    ("usb_path", "1-1", "1-1", "USB device"),
    ("at_port", "/dev/ttyUSB2", "/dev/ttyUSB2", "AT port"),
    ("interface", "wwan", "wwan", "interface"),
    ("device", "wwan0", "wwan0", "network device"),
    ("sim_gpio", "gpiochip0:20", "/dev/gpiochip0:20", "GPIO line"),
])
def test_a_resource_serves_one_modem(option: str, first: str, second: str, what: str) -> None:
    text = BASE.replace("option usb_path '1-1'", f"option usb_path '1-1'\n\toption {option} "
                        f"'{first}'")
    text = text.replace("option usb_path '1-2'", f"option usb_path '1-2'\n\toption {option} "
                        f"'{second}'")
    if option == "usb_path":
        text = BASE.replace("'1-2'", "'1-1'")
    found = only_problem(text)
    assert f"modem2.{option}: '" in found
    assert f"is already modem1.{option}: one {what} cannot serve twice" in found


def test_one_gpio_line_for_two_uses_in_one_modem() -> None:
    text = BASE.replace("option usb_path '1-1'", "option usb_path '1-1'\n\toption sim_gpio "
                        "'5g1'\n\toption reset_gpio '5g1'")
    assert only_problem(text) == f"{PATH}:8: modem1.reset_gpio: '5g1' is already " \
                                 "modem1.sim_gpio: one GPIO line cannot serve twice"


def test_two_identical_modems_found_by_usb_id_alone() -> None:
    text = BASE.replace("usb_path '1-1'", "usb_id '2c7c:0125'").replace(
        "usb_path '1-2'", "usb_id '2c7c:0125'")
    assert only_problem(text) == f"{PATH}:10: modem2.usb_id: another modem has the same " \
                                 "usb_id: add usb_path to tell them apart"


# --- environment overrides ------------------------------------------------------------------

def test_parse_config_without_environ_reads_no_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEM1_DEVICE", "/dev/ttyUSB9")
    assert parse(BASE).modem("modem1").at_port is None


def test_load_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch,
                                          tmp_path: Path) -> None:
    path = tmp_path / "remsim-supervisor"
    path.write_text(BASE)
    monkeypatch.setenv("MODEM1_DEVICE", "/dev/ttyUSB9")
    assert c.load(str(path)).modem("modem1").at_port == "/dev/ttyUSB9"
    assert c.load(str(path), {}).modem("modem1").at_port is None


def test_modem_overrides_apply_to_named_sections() -> None:
    cfg = parse(BASE, {"MODEM1_DEVICE": "/dev/ttyUSB2", "MODEM1_SIM_GPIO": "20",
                       "MODEM1_RESET_GPIO": "gpiochip0:21", "MODEM2_DEVICE": "/dev/ttyACM0",
                       "MODEM2_SIM_GPIO": "sysfs:22", "MODEM2_RESET_GPIO": "5g2"})
    m1, m2 = cfg.modem("modem1"), cfg.modem("modem2")
    assert (m1.at_port, m1.sim_gpio.kind, m1.sim_gpio.offset, m1.reset_gpio.chip) == (
        "/dev/ttyUSB2", "sysfs", 20, "gpiochip0")
    assert (m2.at_port, m2.sim_gpio.offset, m2.reset_gpio.name) == ("/dev/ttyACM0", 22, "5g2")


def test_modem_overrides_fall_back_to_the_role() -> None:
    text = BASE.replace("'modem1'", "'lte'").replace("'modem2'", "'iotm'")
    cfg = parse(text, {"MODEM1_DEVICE": "/dev/ttyUSB2", "MODEM2_DEVICE": "/dev/ttyUSB5"})
    assert cfg.modem("lte").at_port == "/dev/ttyUSB2"
    assert cfg.modem("iotm").at_port == "/dev/ttyUSB5"


def test_modem_device_creates_missing_sections() -> None:
    text = "config ionmesh\n\toption url 'http://h:5000'\n"
    cfg = parse(text, {"MODEM1_DEVICE": "/dev/ttyUSB2", "MODEM1_SIM_GPIO": "20",
                       "MODEM2_DEVICE": "/dev/ttyUSB6"})
    assert [(m.name, m.role, m.at_port, m.line) for m in cfg.modems] == [
        ("modem1", "primary", "/dev/ttyUSB2", 0), ("modem2", "iot", "/dev/ttyUSB6", 0)]
    assert cfg.modem("modem1").sim_gpio.offset == 20


def test_modem_gpio_without_a_section_or_device() -> None:
    text = BASE.replace("config modem 'modem2'\n\toption role 'iot'\n\toption usb_path '1-2'\n",
                        "")
    assert only_problem(text, {"MODEM2_SIM_GPIO": "22"}) == (
        "environment: MODEM2_SIM_GPIO -> modem2: no modem2 section (nor one with role 'iot') "
        "to apply it to: add the section or set MODEM2_DEVICE too")


@pytest.mark.parametrize(("variable", "value", "expected"), [
    ("MODEM1_DEVICE", "ttyUSB2", ("environment: MODEM1_DEVICE -> modem1.at_port: must be an "
                                 "absolute path such as /dev/ttyUSB2, or auto, not 'ttyUSB2'")),
    ("MODEM1_SIM_GPIO", "gpio 20", ("environment: MODEM1_SIM_GPIO -> modem1.sim_gpio: write "
                                   "gpiochipN:OFFSET")),
    ("MODEM2_RESET_GPIO", "x:y", "environment: MODEM2_RESET_GPIO -> modem2.reset_gpio: "),
    ("IONMESH_TENANT_ID", "0", ("environment: IONMESH_TENANT_ID -> ionmesh.tenant_id: must be "
                               "at least 1, not 0")),
    ("IONMESH_MAPPING_MODE", "X", ("environment: IONMESH_MAPPING_MODE -> ionmesh.mapping_mode: "
                                  "must be one of")),
    ("IONMESH_MCC_MNC", "1", ("environment: IONMESH_MCC_MNC -> ionmesh.mcc_mnc: must be 5 or 6 "
                             "digits")),
    ("IONMESH_PORT", "http", ("environment: IONMESH_PORT -> ionmesh.url: must be a port number "
                             "1-65535, not 'http'")),
    ("IONMESH_HOST", "a/b", ("environment: IONMESH_HOST -> ionmesh.url: must be a host name or "
                            "address, not 'a/b'")),
    ("OPENWRT_DUAL_MODEM", "2", ("environment: OPENWRT_DUAL_MODEM: must be 1 (supervise both "
                                "modems) or 0 (the primary modem only), not '2'")),
])
def test_bad_override_is_one_problem_naming_the_variable(variable: str, value: str,
                                                         expected: str) -> None:
    found = only_problem(BASE, {variable: value})
    assert found.startswith(expected), found


def test_override_problems_follow_the_file_problems() -> None:
    text = BASE.replace("'iot'", "'iota'")
    assert problems(text, {"IONMESH_TENANT_ID": "x"}) == [
        f"{PATH}:9: modem2.role: must be 'primary' or 'iot', not 'iota'",
        "environment: IONMESH_TENANT_ID -> ionmesh.tenant_id: must be a whole number, not 'x'",
    ]


def test_empty_variables_count_as_unset() -> None:
    cfg = parse(BASE, {"MODEM1_DEVICE": "", "IONMESH_HOST": " ", "OPENWRT_DUAL_MODEM": ""})
    assert cfg.modem("modem1").at_port is None
    assert cfg.ionmesh.url == "http://ionmesh.example.com:5000"
    assert len(cfg.modems) == 2


def test_ionmesh_overrides() -> None:
    cfg = parse(BASE, {"IONMESH_TENANT_ID": "4", "IONMESH_MAPPING_MODE": "KI_PROXY_SWSIM",
                       "IONMESH_MCC_MNC": "26202"})
    assert (cfg.ionmesh.tenant_id, cfg.ionmesh.mapping_mode, cfg.ionmesh.mcc_mnc) == (
        4, "KI_PROXY_SWSIM", "26202")


def test_ki_proxy_from_the_environment_needs_mcc_mnc() -> None:
    assert only_problem(BASE, {"IONMESH_MAPPING_MODE": "KI_PROXY_SWSIM"}) == (
        "environment: IONMESH_MAPPING_MODE -> ionmesh.mcc_mnc: required with mapping_mode "
        "KI_PROXY_SWSIM: the MCC and MNC of the SIM's carrier, as in '26201'")


@pytest.mark.parametrize(("url", "environ", "expected"), [
    ("http://ionmesh.example.com:5000", {"IONMESH_HOST": "10.1.1.1"}, "http://10.1.1.1:5000"),
    ("https://ion.example.com/api/v1", {"IONMESH_HOST": "h2", "IONMESH_PORT": "8443"},
     "https://h2:8443/api/v1"),
    ("https://ion.example.com", {"IONMESH_HOST": "h2"}, "https://h2"),
    ("http://ion.example.com:5000", {"IONMESH_PORT": "6000"}, "http://ion.example.com:6000"),
    ("http://[2001:db8::1]:5000", {"IONMESH_PORT": "6000"}, "http://[2001:db8::1]:6000"),
    (None, {"IONMESH_HOST": "10.1.1.1"}, "http://10.1.1.1:5000"),
    (None, {"IONMESH_HOST": "2001:db8::2", "IONMESH_PORT": "80"}, "http://[2001:db8::2]:80"),
])
def test_ionmesh_host_and_port_build_the_url(url: str | None, environ: dict[str, str],
                                             expected: str) -> None:
    text = BASE.replace("http://ionmesh.example.com:5000", url) if url else BASE.replace(
        "config ionmesh 'ionmesh'\n\toption url 'http://ionmesh.example.com:5000'\n", "")
    assert parse(text, environ).ionmesh.url == expected


def test_ionmesh_port_without_any_host() -> None:
    text = BASE.replace("\toption url 'http://ionmesh.example.com:5000'\n", "")
    found = problems(text, {"IONMESH_PORT": "5000"})
    assert found == [
        f"{PATH}:1: ionmesh.url: required: add option url 'http://HOST:5000'",
        ("environment: IONMESH_PORT -> ionmesh.url: IONMESH_PORT needs a host: set "
        "IONMESH_HOST or option url"),
    ]


def test_single_modem_mode_drops_the_iot_modem() -> None:
    cfg = parse(BASE, {"OPENWRT_DUAL_MODEM": "0", "MODEM2_DEVICE": "/dev/ttyUSB6",
                       "MODEM2_SIM_GPIO": "nonsense value"})
    assert [m.name for m in cfg.modems] == ["modem1"]
    assert cfg.by_role("iot") is None


def test_single_modem_mode_still_checks_the_whole_file() -> None:
    text = BASE.replace("option usb_path '1-2'", "option usb_path 'x'")
    assert "modem2.usb_path" in only_problem(text, {"OPENWRT_DUAL_MODEM": "0"})


def test_single_modem_mode_with_only_an_iot_modem() -> None:
    text = BASE.replace("config modem 'modem1'\n\toption role 'primary'\n\toption usb_path "
                        "'1-1'\n", "")
    assert only_problem(text, {"OPENWRT_DUAL_MODEM": "0"}).startswith(
        "environment: OPENWRT_DUAL_MODEM: with 0 no modem is left to supervise")


def test_dual_modem_mode_needs_an_iot_modem() -> None:
    text = BASE.replace("config modem 'modem2'\n\toption role 'iot'\n\toption usb_path '1-2'\n",
                        "")
    assert only_problem(text, {"OPENWRT_DUAL_MODEM": "1"}).startswith(
        "environment: OPENWRT_DUAL_MODEM: asks for two modems but none has role 'iot'")
    assert len(parse(BASE, {"OPENWRT_DUAL_MODEM": "1"}).modems) == 2


def test_override_creating_a_conflict_is_reported_at_the_variable() -> None:
    text = BASE.replace("option usb_path '1-2'", "option usb_path '1-2'\n\toption at_port "
                        "'/dev/ttyUSB2'")
    # the later modem in file order is the one blamed, wherever its value came from
    assert only_problem(text, {"MODEM1_DEVICE": "/dev/ttyUSB2"}) == (
        f"{PATH}:11: modem2.at_port: '/dev/ttyUSB2' is already modem1.at_port: one AT port "
        "cannot serve twice")


# --- secrets --------------------------------------------------------------------------------

SECRET = "s3cr3t-key-0123456789-WXYZ"


def test_api_key_is_masked_in_reprs() -> None:
    cfg = parse(with_option("ionmesh", "api_key", SECRET))
    assert cfg.ionmesh.api_key == SECRET
    for shown in (repr(cfg), str(cfg), repr(cfg.ionmesh), f"{cfg.ionmesh}"):
        assert SECRET not in shown
        assert "s3cr3t" not in shown
        assert "api_key='****WXYZ'" in shown


def test_mask_secret() -> None:
    assert c.mask_secret(None) is None
    assert c.mask_secret("short") == "****"
    assert c.mask_secret("abcdefghijkl") == "****ijkl"


def test_bad_api_key_problem_does_not_show_it() -> None:
    bad = "s3cr3t key with spaces"
    found = only_problem(with_option("ionmesh", "api_key", bad))
    assert "ionmesh.api_key: must not contain spaces" in found
    assert "s3cr3t" not in found


# --- load -----------------------------------------------------------------------------------

def test_load_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(ConfigError) as info:
        c.load(str(missing), {})
    assert str(info.value) == f"{missing}:0: cannot read: No such file or directory " \
                              "(create it or pass -c FILE)"


def test_load_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        c.load(str(tmp_path), {})
    assert len(info.value.problems) == 1
    assert "cannot read: Is a directory (pass the file, not a directory)" in str(info.value)


def test_load_tolerates_non_utf8_bytes_in_comments(tmp_path: Path) -> None:
    path = tmp_path / "conf"
    path.write_bytes(b"# caf\xe9\n" + BASE.encode())
    assert len(c.load(str(path), {}).modems) == 2


@pytest.mark.fuzz
@settings(max_examples=examples(300), deadline=None)
@given(st.text(), st.dictionaries(st.sampled_from([
    "OPENWRT_DUAL_MODEM", "MODEM1_DEVICE", "MODEM2_DEVICE", "MODEM1_SIM_GPIO",
    "MODEM2_RESET_GPIO", "IONMESH_HOST", "IONMESH_PORT", "IONMESH_TENANT_ID"]), st.text()))
def test_parse_config_raises_only_config_error(text: str, environ: dict[str, str]) -> None:
    try:
        c.parse_config(BASE + text, PATH, environ)
    except ConfigError as e:
        assert e.problems
        # one line per problem, whatever the input held
        assert all("\n" not in str(p) and "\r" not in str(p) for p in e.problems)


OPTION_NAMES = sorted({name for options in c.SECTIONS.values() for name in options}
                      | {"usbpath", "tabel"})
VALUES = st.sampled_from([
    "", "0", "1", "-1", "60", "240", "300", "32766", "1-1", "1-1.2", "2c7c:0125", "auto",
    "/dev/ttyUSB2", "gpiochip0:20", "sysfs:21", "sim:x", "5g2", "20", "primary", "iot", "ec25",
    "KI_PROXY_SWSIM", "http://h:5000", "https://[::1]", "http://", "26201", "a b", "x'y",
    "10.0.0.0/8", "1.5", "yes", "é"])


SKELETON = [("ionmesh", "'ionmesh'", ["option url 'http://h:5000'"]),
            ("modem", "'modem1'", ["option role 'primary'", "option usb_path '1-1'"]),
            ("modem", "'modem2'", ["option role 'iot'", "option usb_path '1-2'"]),
            ("routing", "", []), ("supervisor", "", []), ("escalation", "", [])]


@pytest.mark.fuzz
@settings(max_examples=examples(400), deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(SKELETON) - 1), st.sampled_from(["option", "list"]),
                          st.sampled_from(OPTION_NAMES), VALUES), max_size=4),
       st.dictionaries(st.sampled_from([
           "OPENWRT_DUAL_MODEM", "MODEM1_DEVICE", "MODEM2_DEVICE", "MODEM1_SIM_GPIO",
           "MODEM2_RESET_GPIO", "IONMESH_HOST", "IONMESH_PORT", "IONMESH_MAPPING_MODE"]),
           VALUES, max_size=2))
def test_plausible_configurations_give_a_config_or_located_problems(
        changes: list[tuple[int, str, str, str]], environ: dict[str, str]) -> None:
    """A working skeleton with a few options added: either a sane Config comes out, or
    problems, each one line, located in the file or at a variable."""
    bodies = [list(body) for _, _, body in SKELETON]
    for index, keyword, option, value in changes:
        bodies[index].append(f"{keyword} {option} {uci.quote(value)}")
    lines = []
    for (kind, name, _), body in zip(SKELETON, bodies):
        lines.append(f"config {kind} {name}".rstrip())
        lines.extend(f"\t{entry}" for entry in body)
    text = "\n".join(lines) + "\n"
    try:
        cfg = c.parse_config(text, PATH, environ)
    except ConfigError as e:
        assert e.problems
        for p in e.problems:
            assert "\n" not in str(p)
            if p.variable:
                assert (p.file, p.line) == ("environment", 0)
            else:
                assert p.file == PATH and 0 <= p.line <= len(lines)
    else:
        assert cfg.ionmesh.url.startswith(("http://", "https://"))
        assert cfg.modems and cfg.by_role("primary") is not None
        assert len({m.role for m in cfg.modems}) == len(cfg.modems)
        assert cfg.supervisor.grace_period > cfg.ionmesh.heartbeat_interval
        assert cfg.routing.table not in (253, 254, 255)


def test_routing_mark_and_resolve_interval() -> None:
    from remsim_supervisor.config import ConfigError, parse_config

    base = ("config ionmesh 'ionmesh'\n\toption url 'http://127.0.0.1:5000'\n"
            "config modem 'm'\n\toption role 'iot'\n\toption usb_path '1-1'\n")
    cfg = parse_config(base, "/c")
    assert (cfg.routing.mark, cfg.routing.resolve_interval) == (0x10000000, 300)
    cfg = parse_config(base + "config routing 'routing'\n\toption mark '0x20000'\n"
                       "\toption resolve_interval '60'\n", "/c")
    assert (cfg.routing.mark, cfg.routing.resolve_interval) == (0x20000, 60)
    try:
        parse_config(base + "config routing 'routing'\n\toption mark '0x100'\n", "/c")
    except ConfigError as exc:
        assert len(exc.problems) == 1 and "mwan3" in str(exc.problems[0])
        assert exc.problems[0].line == 7
    else:
        raise AssertionError("a mark in mwan3's bits must be refused")


def test_escalation_step_costs() -> None:
    from remsim_supervisor.config import ConfigError, parse_config

    base = ("config ionmesh 'ionmesh'\n\toption url 'http://127.0.0.1:5000'\n"
            "config modem 'm'\n\toption role 'iot'\n\toption usb_path '1-1'\n"
            "config escalation 'escalation'\n")
    cfg = parse_config(base + "\tlist step_cost 'usb_reauth=5'\n"
                       "\tlist step_cost 'fm350gl:gpio_reset=8.5'\n", "/c")
    assert cfg.escalation.step_costs == (("*", "usb_reauth", 5.0), ("fm350gl", "gpio_reset", 8.5))
    for bad in ("reboot=5", "usb_reauth", "ec99:ifup=3", "ifup=-1"):
        try:
            parse_config(base + f"\tlist step_cost '{bad}'\n", "/c")
        except ConfigError as exc:
            assert len(exc.problems) == 1 and exc.problems[0].line == 7, exc.problems
        else:
            raise AssertionError(f"{bad!r} must be refused")
