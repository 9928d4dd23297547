"""The configuration as a whole: read, converted, cross-checked, typed.

:func:`load` reads the file (libuci reads bytes: a stray non-UTF-8 byte in a
comment must not stop it) and hands it to :func:`parse_config`, which is
pure (``environ=None``: no overrides). Beyond what each value's own check
finds, the cross-checks: the roles (``primary``, ``iot``) at most once each;
a modem needs a role and a way to be found; resources (ports, USB paths,
GPIO lines, interfaces) used by two modems; two modems told apart by
``usb_id`` alone; ``heartbeat_interval`` and ``margin`` shorter than
``grace_period``; ``mcc_mnc`` with ``KI_PROXY_SWSIM``; ``OPENWRT_DUAL_MODEM``
against the modems there are. A value its own check rejected stands in for
nothing: neither it nor the default in its place is cross-checked.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Mapping
from typing import Any

from remsim_supervisor.config.lan import check as lan_check
from remsim_supervisor.config.overrides import apply_environment
from remsim_supervisor.config.sections import Reader, Section, raw
from remsim_supervisor.config.types import (
    DEFAULT_PATH,
    ENVIRONMENT,
    Config,
    ConfigError,
    EscalationConfig,
    IonmeshConfig,
    LanConfig,
    ModemConfig,
    NotifyConfig,
    Problem,
    RoutingConfig,
    SupervisorConfig,
)


def parse_config(text: str, path: str, environ: Mapping[str, str] | None = None) -> Config:
    """Check and type a configuration's text; ``path`` only names it in problems.

    ``environ`` holds the override variables; None applies none (this function
    reads nothing but its arguments). Raises ConfigError with every problem.
    """
    r = Reader(path)
    groups = r.collect(text)
    dual = apply_environment(r, groups, environ or {})

    def single(kind: str) -> tuple[Section | None, dict[str, Any], set[str]]:
        sections = groups[kind]
        if not sections:
            return None, {}, set()
        values, wrong = r.convert(sections[0])
        return sections[0], values, wrong

    _, sup_values, sup_wrong = single("supervisor")
    supervisor = SupervisorConfig(**sup_values)
    ion_section, ion_values, ion_wrong = single("ionmesh")
    if "url" not in ion_values and "url" not in ion_wrong:
        if ion_section is None:
            r.report(0, "ionmesh", "url", "required: add a section "
                     "\"config ionmesh 'ionmesh'\" with \"option url 'http://HOST:5000'\"")
        elif not ion_section.damaged:
            r.report(ion_section.line, ion_section.label, "url",
                     "required: add option url 'http://HOST:5000'")
    ionmesh = IonmeshConfig(**{"url": "", **ion_values})
    if ion_section is not None and ionmesh.mapping_mode == "KI_PROXY_SWSIM" \
            and ionmesh.mcc_mnc is None and "mcc_mnc" not in ion_wrong:
        anchor = ion_section.settings.get("mcc_mnc") or ion_section.settings["mapping_mode"]
        r.report_at(anchor, ion_section, "mcc_mnc", "required with mapping_mode "
                    "KI_PROXY_SWSIM: the MCC and MNC of the SIM's carrier, as in '26201'")
    _, routing_values, _ = single("routing")
    routing = RoutingConfig(**routing_values)
    esc_section, esc_values, esc_wrong = single("escalation")
    escalation = EscalationConfig(**esc_values)
    _, notify_values, _ = single("notify")
    notify = NotifyConfig(**notify_values)
    lan_section, lan_values, lan_wrong = single("lan")
    lan = LanConfig(**lan_values)
    lan_check(r, lan_section, lan, routing, lan_wrong)

    sup_section = groups["supervisor"][0] if groups["supervisor"] else None
    # One mistake, one line: a value its own check rejected stands in for
    # nothing, so neither it nor the default in its place is cross-checked.
    if "grace_period" not in sup_wrong:
        if "heartbeat_interval" not in ion_wrong:
            _check_shorter(r, "ionmesh", ion_section, "heartbeat_interval",
                           ionmesh.heartbeat_interval, sup_section, supervisor.grace_period)
        if "margin" not in esc_wrong:
            _check_shorter(r, "escalation", esc_section, "margin", escalation.margin,
                           sup_section, supervisor.grace_period)

    modems = _modems(r, groups["modem"], dual)
    r.problems.sort(key=lambda p: (p.file == ENVIRONMENT, p.line))
    if r.problems:
        raise ConfigError(r.problems)
    return Config(path, supervisor, ionmesh, modems, routing, escalation, notify, lan)


def _check_shorter(r: Reader, kind: str, section: Section | None, option: str, value: int,
                   sup_section: Section | None, grace: int) -> None:
    """``value`` (seconds) must leave room inside the grace period."""
    if value < grace:
        return
    what = f"{kind}.{option}" if section is None else f"{section.label}.{option}"
    if section is not None and option in section.settings:
        r.report_at(section.settings[option], section, option, f"must be shorter than "
                    f"supervisor.grace_period ({grace} s), not {value} s")
    elif sup_section is not None and "grace_period" in sup_section.settings:
        r.report_at(sup_section.settings["grace_period"], sup_section, "grace_period",
                    f"must be longer than {what} ({value} s)")


_RESOURCE = {"at_port": "AT port", "usb_path": "USB device", "interface": "interface",
             "device": "network device", "sim_gpio": "GPIO line", "reset_gpio": "GPIO line",
             "power_gpio": "GPIO line"}


def _modems(r: Reader, sections: list[Section], dual: bool | None) -> tuple[ModemConfig, ...]:
    modems: list[ModemConfig] = []
    taken: dict[str, Section] = {}  # role -> section
    used: dict[tuple[str, Any], tuple[Section, str]] = {}  # resource -> first holder
    for section in sections:
        values, wrong = r.convert(section)
        role = values.get("role")
        if role is None and "role" not in wrong and not section.damaged:
            r.report(section.line, section.label, "role",
                     "required: add option role 'primary' or 'iot'", section.variable)
        if role is not None:
            if role in taken:
                r.report_at(section.settings["role"], section, "role",
                            f"role {role!r} is already {taken[role].label}'s "
                            f"(line {taken[role].line}): each role belongs to one modem")
            else:
                taken[role] = section
        locators = [o for o in ("usb_path", "usb_id", "at_port") if o in wrong
                    or (raw(section, o) and raw(section, o).lower() != "auto")]
        if not locators and not section.damaged:
            r.report(section.line, section.label, "", "no way to find the modem: add option "
                     "usb_path (as in '1-1'), usb_id (as in '2c7c:0125') or at_port",
                     section.variable)
        for option in ("at_port", "usb_path", "interface", "device", "sim_gpio", "reset_gpio",
                       "power_gpio"):
            value = values.get(option)
            if value is None:
                continue
            if option == "usb_path" or not option.endswith("gpio"):
                key: tuple[str, Any] = (option, value)
            else:
                key = ("gpio", (value.kind, value.chip, value.offset, value.name))
            if key in used:
                holder, holder_option = used[key]
                r.report_at(section.settings[option], section, option,
                            f"'{value}' is already {holder.label}.{holder_option}: "
                            f"one {_RESOURCE[option]} cannot serve twice")
            else:
                used[key] = (section, option)
        name = section.name if section.name is not None else section.label
        modems.append(ModemConfig(name=name, role=role or "", line=section.line, **{
            k: v for k, v in values.items() if k != "role"}))

    by_id = [(m, s) for m, s in zip(modems, sections) if m.usb_id and not m.usb_path
             and not m.at_port]
    for i, (modem, section) in enumerate(by_id):
        if any(other.usb_id == modem.usb_id for other, _ in by_id[:i]):
            r.report_at(section.settings["usb_id"], section, "usb_id", "another modem has the "
                        "same usb_id: add usb_path to tell them apart")

    if dual is True and "iot" not in taken:
        r.report(0, "", "", "asks for two modems but none has role 'iot': add a modem section "
                 "with option role 'iot', or set MODEM2_DEVICE", "OPENWRT_DUAL_MODEM")
    if dual is False:
        modems = [m for m in modems if m.role != "iot"]
    if not sections:
        r.report(0, "", "", "no modem section: add one, as in \"config modem 'modem1'\" with "
                 "\"option role 'primary'\" and \"option usb_path '1-1'\"")
    elif not modems:
        r.report(0, "", "", "with 0 no modem is left to supervise: the only modem has role "
                 "'iot'", "OPENWRT_DUAL_MODEM")
    return tuple(modems)


def load(path: str = DEFAULT_PATH, environ: Mapping[str, str] | None = None) -> Config:
    """Read and check the configuration file, with overrides from ``environ``
    (``os.environ`` when None). Raises ConfigError, also when it cannot read."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        fix = {errno.ENOENT: "create it or pass -c FILE",
               errno.EACCES: "run as root or make it readable",
               errno.EISDIR: "pass the file, not a directory"}.get(e.errno or 0, "pass -c FILE")
        raise ConfigError([Problem(path, 0, "", "", f"cannot read: {e.strerror or e} "
                                                    f"({fix})")]) from None
    # libuci reads bytes; a stray non-UTF-8 byte in a comment must not stop us
    text = data.decode("utf-8", errors="replace")
    return parse_config(text, path, os.environ if environ is None else environ)
