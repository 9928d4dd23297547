"""The supervisor's configuration: read, checked, typed, with environment overrides.

:func:`load` reads ``/etc/config/remsim-supervisor`` (UCI, see ``uci.py``);
:func:`parse_config` turns its text into a frozen :class:`Config` or raises
:class:`ConfigError` holding *every* problem found, one line each, in the form
``check-config`` prints::

    /etc/config/remsim-supervisor:14: modem1.role: must be 'primary' or 'iot', not 'prim'
    /etc/config/remsim-supervisor:9: modem1: no way to find the modem: add option usb_path ...
    /etc/config/remsim-supervisor:3: unterminated ' quote: add the closing '
    environment: MODEM1_SIM_GPIO -> modem1.sim_gpio: write gpiochipN:OFFSET (gpiochip0:21), ...

(``FILE:LINE: section.option: problem``; a problem with a whole section or
the file leaves out ``.option`` or ``section.option``; line 0 means "nowhere
in the file", e.g. a missing section; an override names its variable.)

The checks, driven by the ``_SECTIONS`` table (one table serves the unknown-
name check, the typo suggestions and the conversions): syntax
as libuci reads it; section types and option names (with the closest known
name); numbers and their ranges (the routing table and rule preference must
stay clear of the kernel's, mwan3's and netifd's); UCI booleans; enums
(case-insensitive, stored canonical); URLs, USB paths and ids, paths, GPIO
lines, pins; options given twice (UCI silently keeps the last); sections
given twice; the roles (``primary``, ``iot``) at most once each; a modem
needs a role and a way to be found; resources (ports, USB paths, GPIO lines,
interfaces) used by two modems; ``heartbeat_interval`` and ``margin`` shorter
than ``grace_period``; ``mcc_mnc`` with ``KI_PROXY_SWSIM``.

Leniency, as UCI allows it: ``''`` means "not set" (libuci deletes such an
option); a scalar given as a one-item ``list`` is taken; ``pin`` may be an
``option`` and its values may hold several names split by spaces, as shell
scripts using ``config_get`` read them.

Environment overrides come from osmo-remsim-client-openwrt so an existing
setup moves over unchanged; empty variables count as unset. ``MODEM1`` is
the section named ``modem1``, else the one with role ``primary``; ``MODEM2``
is ``modem2``, else the ``iot`` one. ``MODEMn_DEVICE`` sets ``at_port`` and,
when no such section exists, creates ``modemN`` with the matching role.
``MODEMn_SIM_GPIO``/``_RESET_GPIO`` read a bare number as a legacy sysfs GPIO
number, as the fork does. ``IONMESH_HOST``/``IONMESH_PORT`` rebuild the URL,
keeping the scheme, path and port of a configured one (port 5000 when no
URL is configured). ``OPENWRT_DUAL_MODEM=0`` supervises the primary modem only: the
``iot`` modem is dropped (and ``MODEM2_*`` ignored); ``1`` requires an iot
modem. :func:`parse_config` is pure (``environ=None``: no overrides);
:func:`load` reads ``os.environ`` unless given a mapping.

``api_key`` never appears in full: not in a repr, not in a problem.
"""

from __future__ import annotations

import difflib
import errno
import ipaddress
import os
import re
import socket
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import urlsplit

from remsim_supervisor.config import uci

__all__ = [
    "DEFAULT_PATH",
    "ENVIRONMENT",
    "LOG_LEVELS",
    "MAPPING_MODES",
    "MODELS",
    "ROLES",
    "Config",
    "ConfigError",
    "EscalationConfig",
    "GpioSpec",
    "IonmeshConfig",
    "ModemConfig",
    "Problem",
    "RoutingConfig",
    "SupervisorConfig",
    "load",
    "mask_secret",
    "parse_config",
]

DEFAULT_PATH = "/etc/config/remsim-supervisor"
ENVIRONMENT = "environment"  # Problem.file of a problem with an environment override

ROLES = ("primary", "iot")
MODELS = ("auto", "ec25", "fm350gl", "l850gl", "mc7455", "me909s", "generic")
MAPPING_MODES = ("ONE_TO_ONE_SWSIM", "ONE_TO_ONE_VSIM", "KI_PROXY_SWSIM")
LOG_LEVELS = ("debug", "info", "warning", "error")


# --- what callers see -------------------------------------------------------------------------

@dataclass(frozen=True)
class Problem:
    """One thing to fix, located in the file or in an environment variable."""

    file: str
    line: int
    section: str
    option: str
    message: str
    variable: str = ""  # the environment variable that gave the value, if one did

    def __str__(self) -> str:
        where = ".".join(part for part in (self.section, self.option) if part)
        if self.variable:
            head = f"{self.file}: {self.variable}" + (f" -> {where}" if where else "")
        else:
            head = f"{self.file}:{self.line}" + (f": {where}" if where else "")
        return f"{head}: {self.message}"


class ConfigError(Exception):
    """The configuration cannot be used; ``problems`` says every reason, in file order."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems: list[Problem] = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)


_GPIO_CHIP = re.compile(r"(?:/dev/)?(gpiochip[0-9]+):([0-9]+)")
_GPIO_DEV_PATH = re.compile(r"(/dev/[^\s:]+):([0-9]+)")
_GPIO_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_GPIO_MAX = 65535
_GPIO_HINT = ("write gpiochipN:OFFSET (gpiochip0:21), a line name (5g2), "
              "sysfs:NUMBER or sim:NAME")


@dataclass(frozen=True)
class GpioSpec:
    """A GPIO line as configured.

    ``kind`` is ``chip`` (``chip`` + ``offset``; ``chip`` is ``gpiochipN`` or a
    ``/dev`` path), ``name`` (a line name libgpiod looks up), ``sysfs``
    (``offset`` is the legacy global number) or ``sim`` (``name`` of a
    simulated line, for the lab and tests). ``text`` is what was written.
    """

    kind: str
    chip: str | None
    offset: int | None
    name: str | None
    text: str

    @property
    def chip_path(self) -> str | None:
        """The character device of a ``chip`` line."""
        if self.chip is None:
            return None
        return self.chip if self.chip.startswith("/") else f"/dev/{self.chip}"

    def same_line(self, other: GpioSpec) -> bool:
        return (self.kind, self.chip, self.offset, self.name) == (
            other.kind, other.chip, other.offset, other.name)

    def __str__(self) -> str:
        return self.text

    @classmethod
    def parse(cls, text: str, *, legacy: bool = False) -> GpioSpec:
        """Parse a line spec; ``legacy`` reads a bare number as sysfs (the fork's
        variables). Raises ValueError with a message saying what to write."""
        t = text.strip()
        if m := _GPIO_CHIP.fullmatch(t):
            return cls("chip", m[1], _gpio_number(m[2], text), None, text)
        if m := _GPIO_DEV_PATH.fullmatch(t):
            return cls("chip", m[1], _gpio_number(m[2], text), None, text)
        if t.startswith("sysfs:"):
            number = t[len("sysfs:"):]
            if not number.isdigit() or not number.isascii():
                raise ValueError(f"sysfs needs a GPIO number, as in sysfs:21, not {text!r}")
            return cls("sysfs", None, _gpio_number(number, text), None, text)
        if t.startswith("sim:"):
            name = t[len("sim:"):]
            if not _GPIO_NAME.fullmatch(name):
                raise ValueError(f"sim needs a line name, as in sim:modem1-sim, not {text!r}")
            return cls("sim", None, None, name, text)
        if t.isascii() and t.isdigit():
            if legacy:
                return cls("sysfs", None, _gpio_number(t, text), None, text)
            raise ValueError(f"a bare number is ambiguous: write sysfs:{t} for a legacy sysfs "
                             f"GPIO number or gpiochipN:{t} for a line of a chip")
        if ":" not in t and _GPIO_NAME.fullmatch(t):
            return cls("name", None, None, t, text)
        raise ValueError(f"{_GPIO_HINT}, not {text!r}")


def _gpio_number(digits: str, text: str) -> int:
    n = int(digits)
    if n > _GPIO_MAX:
        raise ValueError(f"GPIO number {n} is too large (at most {_GPIO_MAX}) in {text!r}")
    return n


@dataclass(frozen=True)
class SupervisorConfig:
    enabled: bool = True
    grace_period: int = 300
    log_level: str = "info"
    control_socket: str = "/var/run/remsim-supervisor.sock"
    data_budget_mb: float | None = None
    metrics: bool = True  # keep metrics_file current
    metrics_file: str = "/var/prometheus/remsim_supervisor.prom"


def mask_secret(secret: str | None) -> str | None:
    """A secret as logs and reprs may show it: at most its last 4 characters."""
    if secret is None:
        return None
    return "****" + secret[-4:] if len(secret) >= 12 else "****"


@dataclass(frozen=True)
class IonmeshConfig:
    url: str
    client_id: str = field(default_factory=lambda: socket.gethostname())
    tenant_id: int = 1
    mapping_mode: str = "ONE_TO_ONE_SWSIM"
    mcc_mnc: str | None = None
    api_key: str | None = None
    heartbeat_interval: int = 60
    # the shortest interval taken from the server (a shorter one is clamped up to it)
    min_heartbeat_interval: int = 10
    timeout: float = 10.0
    ca_file: str | None = None  # None: the system store

    def __repr__(self) -> str:
        # dataclass leaves a __repr__ defined here alone: the key stays masked
        shown = {f.name: getattr(self, f.name) for f in fields(self)}
        shown["api_key"] = mask_secret(self.api_key)
        return "IonmeshConfig(" + ", ".join(f"{k}={v!r}" for k, v in shown.items()) + ")"


@dataclass(frozen=True)
class ModemConfig:
    name: str  # the section name; "@modem[N]" for an anonymous section
    role: str
    model: str = "auto"
    usb_path: str | None = None
    usb_id: tuple[int, int] | None = None
    at_port: str | None = None  # None: discover it
    interface: str | None = None  # netifd's logical interface
    device: str | None = None  # None: netifd's l3_device, else interface
    sim_gpio: GpioSpec | None = None
    reset_gpio: GpioSpec | None = None
    power_gpio: GpioSpec | None = None
    sim_active_low: bool = False
    reset_active_low: bool = False
    power_active_low: bool = False
    sim_remote_value: int = 1
    reset_pulse_ms: int | None = None  # None: the model's own
    # of its 'config' line, for messages only; 0 when the environment created it.
    # Not compared: `uci commit` moves sections, and a moved section is the same modem.
    line: int = field(default=0, compare=False)


@dataclass(frozen=True)
class RoutingConfig:
    table: int = 240
    priority: int = 90
    pins: tuple[str, ...] = ()
    failback_after: int = 3
    mark: int = 0x10000000  # on the supervisor's own packets: they follow its table
    resolve_interval: int = 300  # seconds between lookups of the pinned names


@dataclass(frozen=True)
class EscalationConfig:
    enabled: bool = True  # 0: watch and report only, never act on a modem
    margin: int = 30
    max_resets_per_hour: int = 6
    # (model or "*", rung, seconds): what a recovery step is expected to take
    step_costs: tuple[tuple[str, str, float], ...] = ()


@dataclass(frozen=True)
class NotifyConfig:
    directory: str = "/etc/remsim-supervisor/notify.d"  # executable scripts, run per event
    webhook: str | None = None  # a URL the events are POSTed to as JSON
    webhook_via_iot: bool = False  # 1: the webhook may leave through the IoT modem
    grace_threshold: int = 120  # seconds of grace left below which grace_low fires
    timeout: float = 10.0  # seconds a script or the webhook may take


@dataclass(frozen=True)
class Config:
    path: str
    supervisor: SupervisorConfig
    ionmesh: IonmeshConfig
    modems: tuple[ModemConfig, ...]
    routing: RoutingConfig
    escalation: EscalationConfig
    notify: NotifyConfig = field(default_factory=NotifyConfig)

    def modem(self, name: str) -> ModemConfig | None:
        return next((m for m in self.modems if m.name == name), None)

    def by_role(self, role: str) -> ModemConfig | None:
        return next((m for m in self.modems if m.role == role), None)


# --- conversions: text in, value out, or _Bad saying what to write ----------------------------

class _Bad(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


Convert = Callable[[str], Any]


def _integer(low: int | None = None, high: int | None = None, unit: str = "") -> Convert:
    units = f" {unit}" if unit else ""

    def convert(text: str) -> int:
        if not re.fullmatch(r"-?[0-9]+", text):
            raise _Bad(f"must be a whole number{' of ' + unit if unit else ''}, not {text!r}")
        n = int(text)
        if low is not None and high is not None and not low <= n <= high:
            raise _Bad(f"must be between {low} and {high}{units}, not {n}")
        if low is not None and n < low:
            if low == 1 and unit:
                raise _Bad(f"must be more than 0 {unit}, not {n}")
            raise _Bad(f"must be at least {low}{units}, not {n}")
        return n
    return convert


def _positive(unit: str) -> Convert:
    def convert(text: str) -> float:
        if not re.fullmatch(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)", text):
            raise _Bad(f"must be a number of {unit}, not {text!r}")
        n = float(text)
        if n <= 0:
            raise _Bad(f"must be more than 0 {unit}, not {text}")
        return n
    return convert


_TRUE = ("1", "yes", "on", "true", "enabled")
_FALSE = ("0", "no", "off", "false", "disabled")


def _boolean(text: str) -> bool:
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    raise _Bad(f"must be 1 or 0 (or yes/no, on/off, true/false, enabled/disabled), not {text!r}")


def _choice(choices: Sequence[str], fold: Callable[[str], str] = str.lower) -> Convert:
    if len(choices) == 2:
        listed = f"'{choices[0]}' or '{choices[1]}'"
    else:
        listed = "one of " + ", ".join(choices)

    def convert(text: str) -> str:
        for choice in choices:
            if fold(choice) == fold(text):
                return choice
        raise _Bad(f"must be {listed}, not {text!r}")
    return convert


def _model_key(text: str) -> str:
    # "FM350-GL" and "fm350gl" name the same modem
    return re.sub(r"[^a-z0-9]", "", text.lower())


def _url(text: str) -> str:
    example = "as in 'http://ionmesh.example.com:5000'"
    if any(c.isspace() for c in text):
        raise _Bad(f"must not contain spaces, {example}")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as e:
        raise _Bad(f"is not a valid URL ({e}): write it {example}") from None
    if parts.scheme not in ("http", "https"):
        raise _Bad(f"must start with http:// or https://, {example}, not {text!r}")
    if not parts.hostname:
        raise _Bad(f"has no host: write it {example}")
    if parts.username is not None or parts.password is not None:
        raise _Bad("must not hold credentials: put the key in option api_key")
    if parts.query or parts.fragment:
        raise _Bad(f"must not have a ?query or #fragment: write the base URL, {example}")
    if port == 0:
        raise _Bad(f"has port 0: use the server's port, {example}")
    return text


def _mcc_mnc(text: str) -> str:
    if not re.fullmatch(r"[0-9]{5,6}", text):
        raise _Bad(f"must be 5 or 6 digits (MCC and MNC, as in '26201'), not {text!r}")
    return text


def _text(text: str) -> str:
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise _Bad("must not contain control characters")
    return text


def _secret(text: str) -> str:
    # never echo the value: a problem line ends up in logs and bug reports
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in text):
        raise _Bad("must not contain spaces or control characters (value not shown)")
    return text


def _webhook(text: str) -> str:
    """A webhook URL: http(s) and a host; a path or query may carry its token."""
    example = "as in 'https://hooks.example.net/remsim'"
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 (raises on a bad port)
    except ValueError as e:
        raise _Bad(f"is not a valid URL ({e}): write it {example}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname \
            or any(c.isspace() for c in text):
        raise _Bad(f"must be an http:// or https:// URL with a host, {example}")
    return text


def _absolute_path(example: str) -> Convert:
    def convert(text: str) -> str:
        if not text.startswith("/") or any(c.isspace() for c in text):
            raise _Bad(f"must be an absolute path such as {example}, not {text!r}")
        return text
    return convert


def _at_port(text: str) -> str | None:
    if text.lower() == "auto":
        return None
    if not text.startswith("/") or any(c.isspace() for c in text):
        raise _Bad(f"must be an absolute path such as /dev/ttyUSB2, or auto, not {text!r}")
    return text


def _usb_path(text: str) -> str:
    if not re.fullmatch(r"[0-9]+-[0-9]+(?:\.[0-9]+)*", text):
        raise _Bad("must be a USB device path such as '1-1' or '1-1.2' "
                   f"(a name under /sys/bus/usb/devices), not {text!r}")
    return text


def _usb_id(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"([0-9a-fA-F]{4}):([0-9a-fA-F]{4})", text)
    if not m:
        raise _Bad(f"must be VID:PID in hex, such as '2c7c:0125', not {text!r}")
    return int(m[1], 16), int(m[2], 16)


def _interface(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_]+", text):
        raise _Bad("must be a netifd interface name (a section name in /etc/config/network: "
                   f"letters, digits and _), not {text!r}")
    return text


def _device(text: str) -> str:
    if not re.fullmatch(r"[^\s/:]{1,15}", text) or text in (".", ".."):
        raise _Bad("must be a Linux network device name (at most 15 characters, "
                   f"no spaces, '/' or ':'), such as 'wwan0', not {text!r}")
    return text


def _gpio(text: str) -> GpioSpec:
    try:
        return GpioSpec.parse(text)
    except ValueError as e:
        raise _Bad(str(e)) from None


def _legacy_gpio(text: str) -> GpioSpec:
    try:
        return GpioSpec.parse(text, legacy=True)
    except ValueError as e:
        raise _Bad(str(e)) from None


def _level(text: str) -> int:
    if text not in ("0", "1"):
        raise _Bad(f"must be 0 or 1 (the SIM line level that selects the remote SIM), "
                   f"not {text!r}")
    return int(text)


def _table(text: str) -> int:
    n = int(_integer(1, 4294967295)(text))
    if n in (253, 254, 255):
        raise _Bad(f"must not be {n}: 253, 254 and 255 are the kernel's default, main and "
                   "local tables; use a table of the supervisor's own, such as 240")
    if 1 <= n <= 60:
        raise _Bad(f"must not be {n}: mwan3 numbers its interface tables 1-60; "
                   "use one outside, such as 240")
    return n


def _priority(text: str) -> int:
    if re.fullmatch(r"[0-9]+", text) and int(text) in (0, 32766, 32767):
        raise _Bad(f"must not be {int(text)}: 0, 32766 and 32767 are the kernel's local, main "
                   "and default rules; use one such as 90")
    n = int(_integer(1, 32765)(text))
    if 1001 <= n <= 3062:
        raise _Bad(f"must not be {n}: mwan3 owns rule preferences 1001-3062 and deletes them "
                   "when it stops; use one below 1001, such as 90")
    if n in (10000, 20000):
        raise _Bad(f"must not be {n}: netifd puts its source rules there; use one such as 90")
    return n


MWAN3_MARK_MASK = 0x3F00
RUNG_NAMES = ("reroute", "ifup", "radio_cycle", "soft_reset", "usb_reauth", "gpio_reset",
              "power_cycle")


def _step_cost(text: str) -> tuple[str, str, float]:
    """'RUNG=SECONDS' or 'MODEL:RUNG=SECONDS'."""
    head, sep, seconds = text.partition("=")
    model, colon, rung = head.rpartition(":")
    model = model.strip().lower() if colon else "*"
    rung = rung.strip()
    if not sep or rung not in RUNG_NAMES or (model != "*" and model not in MODELS):
        raise _Bad(f"must be RUNG=SECONDS or MODEL:RUNG=SECONDS with a rung among "
                   f"{', '.join(RUNG_NAMES)}, not {text!r}")
    try:
        value = float(seconds)
    except ValueError:
        raise _Bad(f"the seconds in {text!r} are not a number") from None
    if not 0 < value <= 3600:
        raise _Bad(f"the seconds in {text!r} must be above 0 and at most 3600")
    return (model, rung, value)



def _mark(text: str) -> int:
    try:
        n = int(text, 0)
    except ValueError:
        raise _Bad(f"must be a firewall mark such as 0x10000000, not {text!r}") from None
    if not 0 < n <= 0xFFFFFFFF:
        raise _Bad(f"must be from 0x1 to 0xffffffff, not {text!r}")
    if n & MWAN3_MARK_MASK:
        raise _Bad(f"must not use the bits 0x3f00: mwan3 marks its traffic with them; "
                   f"use one such as 0x10000000, not {text!r}")
    return n


_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")


def _pin(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    if "/" in text:
        raise _Bad(f"must be a host name or one address, not a network ({text!r})")
    name = text.removesuffix(".")
    labels = name.split(".")
    if len(name) <= 253 and all(_HOST_LABEL.fullmatch(label) for label in labels) \
            and not labels[-1].isdigit():
        return name.lower()  # DNS ignores case; one spelling lets duplicates fold
    hint = " (without a port)" if ":" in text else ""
    raise _Bad(f"must be a host name or an IP address{hint}, not {text!r}")


# --- the table: section type -> option -> how to read it --------------------------------------

@dataclass(frozen=True)
class _Opt:
    convert: Convert
    attribute: str | None = None  # the dataclass field, when it differs from the option
    is_list: bool = False
    from_environment: Convert | None = None  # when an override reads differently


_SECONDS = "seconds"
_SECTIONS: dict[str, dict[str, _Opt]] = {
    "supervisor": {
        "enabled": _Opt(_boolean),
        "grace_period": _Opt(_integer(1, None, _SECONDS)),
        "log_level": _Opt(_choice(LOG_LEVELS)),
        "control_socket": _Opt(_absolute_path("/var/run/remsim-supervisor.sock")),
        "data_budget_mb": _Opt(_positive("megabytes")),
        "metrics": _Opt(_boolean),
        "metrics_file": _Opt(_absolute_path("/var/prometheus/remsim_supervisor.prom")),
    },
    "ionmesh": {
        "url": _Opt(_url),
        "client_id": _Opt(_text),
        "tenant_id": _Opt(_integer(1)),
        "mapping_mode": _Opt(_choice(MAPPING_MODES, str.upper)),
        "mcc_mnc": _Opt(_mcc_mnc),
        "api_key": _Opt(_secret),
        "heartbeat_interval": _Opt(_integer(10, 3600, _SECONDS)),
        "min_heartbeat_interval": _Opt(_integer(1, 3600, _SECONDS)),
        "timeout": _Opt(_positive(_SECONDS)),
        "ca_file": _Opt(_absolute_path("/etc/ssl/certs/ca-certificates.crt")),
    },
    "modem": {
        "role": _Opt(_choice(ROLES)),
        "model": _Opt(_choice(MODELS, _model_key)),
        "usb_path": _Opt(_usb_path),
        "usb_id": _Opt(_usb_id),
        "at_port": _Opt(_at_port),
        "interface": _Opt(_interface),
        "device": _Opt(_device),
        "sim_gpio": _Opt(_gpio, from_environment=_legacy_gpio),
        "reset_gpio": _Opt(_gpio, from_environment=_legacy_gpio),
        "power_gpio": _Opt(_gpio, from_environment=_legacy_gpio),
        "sim_active_low": _Opt(_boolean),
        "reset_active_low": _Opt(_boolean),
        "power_active_low": _Opt(_boolean),
        "sim_remote_value": _Opt(_level),
        "reset_pulse_ms": _Opt(_integer(1, 10000, "milliseconds")),
    },
    "routing": {
        "table": _Opt(_table),
        "priority": _Opt(_priority),
        "pin": _Opt(_pin, attribute="pins", is_list=True),
        "failback_after": _Opt(_integer(1, None, "heartbeats")),
        "mark": _Opt(_mark),
        "resolve_interval": _Opt(_integer(30, 86400, _SECONDS)),
    },
    "escalation": {
        "enabled": _Opt(_boolean),
        "step_cost": _Opt(_step_cost, attribute="step_costs", is_list=True),
        "margin": _Opt(_integer(0, None, _SECONDS)),
        "max_resets_per_hour": _Opt(_integer(1)),
    },
}
_SECTIONS["notify"] = {
    "directory": _Opt(_absolute_path("/etc/remsim-supervisor/notify.d")),
    "webhook": _Opt(_webhook),
    "webhook_via_iot": _Opt(_boolean),
    "grace_threshold": _Opt(_integer(1, None, _SECONDS)),
    "timeout": _Opt(_positive(_SECONDS)),
}
_SINGLETONS = ("supervisor", "ionmesh", "routing", "escalation", "notify")


# --- the reading ------------------------------------------------------------------------------

@dataclass
class _Setting:
    """Values of one option and where they came from."""

    values: list[str]
    lines: list[int]  # per value; 0 for the environment
    variable: str = ""  # the environment variable that gave it


@dataclass
class _Section:
    type: str
    label: str
    name: str | None
    line: int
    settings: dict[str, _Setting] = field(default_factory=dict)
    variable: str = ""  # the environment variable that created it
    damaged: bool = False  # a syntax error inside: "missing" may mean "on the broken line"
    rejected: set[str] = field(default_factory=set)  # given, but reported and dropped


def _close(word: str, known: Iterable[str]) -> str:
    match = difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    return f"did you mean {match[0]!r}?" if match else ""


class _Reader:
    def __init__(self, path: str) -> None:
        self.path = path
        self.problems: list[Problem] = []

    def report(self, line: int, section: str, option: str, message: str,
               variable: str = "") -> None:
        if variable:
            self.problems.append(Problem(ENVIRONMENT, 0, section, option, message, variable))
        else:
            self.problems.append(Problem(self.path, line, section, option, message))

    def report_at(self, setting: _Setting, section: _Section, option: str, message: str,
                  line: int | None = None) -> None:
        where = setting.lines[-1] if line is None else line
        self.report(where, section.label, option, message, setting.variable)

    # -- the file

    def collect(self, text: str) -> dict[str, list[_Section]]:
        parsed, syntax = uci.parse(text)
        for p in syntax:
            self.report(p.line, "", "", p.message)
        groups: dict[str, list[_Section]] = {kind: [] for kind in _SECTIONS}
        named: dict[str, int] = {}
        for s in parsed:
            if s.name is not None:
                if s.name in named:
                    self.report(s.line, s.label, "", f"section name {s.name!r} is already used "
                                f"on line {named[s.name]} (UCI would merge the two): rename one")
                    continue
                named[s.name] = s.line
            if s.type not in _SECTIONS:
                hint = _close(s.type, _SECTIONS) or "known types: " + ", ".join(_SECTIONS)
                self.report(s.line, s.label, "", f"unknown section type {s.type!r}: {hint}")
                continue
            if s.type in _SINGLETONS and groups[s.type]:
                first = groups[s.type][0].line
                self.report(s.line, s.label, "", f"a second {s.type!r} section (the first is "
                            f"on line {first}): merge them into one")
                continue
            groups[s.type].append(self._section(s))
        return groups

    def _section(self, s: uci.UciSection) -> _Section:
        specs = _SECTIONS[s.type]
        out = _Section(s.type, s.label, s.name, s.line, damaged=s.damaged)
        for name, option in s.options.items():
            spec = specs.get(name)
            if spec is None:
                hint = _close(name, specs) or f"{s.type} sections know " + ", ".join(specs)
                self.report(option.line, s.label, name, f"unknown option: {hint}")
                continue
            if option.replaced:
                self.report(option.line, s.label, name, f"set twice (also on line "
                            f"{option.replaced[0]}): UCI keeps only the last; delete one")
            if any("\n" in v for v in option.values):
                self.report(option.line, s.label, name, "the value runs on over several lines: "
                            "a closing quote is probably missing")
                out.rejected.add(name)
                continue
            if not spec.is_list and len(option.values) > 1:
                lines = ", ".join(str(n) for n in option.lines)
                self.report(option.line, s.label, name, f"takes one value, but 'list' gives it "
                            f"{len(option.values)} (lines {lines}): use one 'option'")
                out.rejected.add(name)
                continue
            out.settings[name] = _Setting(list(option.values), list(option.lines))
        return out

    # -- the environment

    def apply_environment(self, groups: dict[str, list[_Section]],
                          environ: Mapping[str, str]) -> bool | None:
        """Apply overrides; returns OPENWRT_DUAL_MODEM as a bool, None if unset or bad."""
        env = {k: v.strip() for k, v in environ.items() if isinstance(v, str) and v.strip()}
        dual: bool | None = None
        if "OPENWRT_DUAL_MODEM" in env:
            try:
                dual = _boolean(env["OPENWRT_DUAL_MODEM"])
            except _Bad:
                self.report(0, "", "", "must be 1 (supervise both modems) or 0 (the primary "
                            f"modem only), not {env['OPENWRT_DUAL_MODEM']!r}",
                            "OPENWRT_DUAL_MODEM")
        modems = groups["modem"]
        targets: dict[int, _Section] = {}
        for n, role in ((1, "primary"), (2, "iot")):
            if n == 2 and dual is False:
                continue  # a single-modem setup: MODEM2_* describe nothing supervised
            given = {var: option for var, option in (
                (f"MODEM{n}_DEVICE", "at_port"), (f"MODEM{n}_SIM_GPIO", "sim_gpio"),
                (f"MODEM{n}_RESET_GPIO", "reset_gpio")) if var in env}
            if not given:
                continue
            section = next((s for s in modems if s.name == f"modem{n}"), None) or next(
                (s for s in modems if _raw(s, "role").lower() == role), None)
            if section is None:
                device_var = f"MODEM{n}_DEVICE"
                if device_var not in given:
                    first = next(iter(given))
                    self.report(0, f"modem{n}", "", f"no modem{n} section (nor one with role "
                                f"{role!r}) to apply it to: add the section or set "
                                f"{device_var} too", first)
                    continue
                section = _Section("modem", f"modem{n}", f"modem{n}", 0, variable=device_var)
                section.settings["role"] = _Setting([role], [0], device_var)
                modems.append(section)
            if any(section is t for t in targets.values()):
                self.report(0, section.label, "", "MODEM1_* and MODEM2_* both apply to this "
                            "section: name the sections modem1 and modem2",
                            next(iter(given)))
                continue
            targets[n] = section
            for var, option in given.items():
                section.settings[option] = _Setting([env[var]], [0], var)

        self._ionmesh_environment(groups, env)
        return dual

    def _ionmesh_environment(self, groups: dict[str, list[_Section]],
                             env: Mapping[str, str]) -> None:
        names = ("IONMESH_HOST", "IONMESH_PORT", "IONMESH_TENANT_ID", "IONMESH_MAPPING_MODE",
                 "IONMESH_MCC_MNC")
        if not any(n in env for n in names):
            return
        if not groups["ionmesh"]:
            groups["ionmesh"].append(_Section("ionmesh", "ionmesh", None, 0))
        section = groups["ionmesh"][0]
        for var, option in (("IONMESH_TENANT_ID", "tenant_id"),
                            ("IONMESH_MAPPING_MODE", "mapping_mode"),
                            ("IONMESH_MCC_MNC", "mcc_mnc")):
            if var in env:
                section.settings[option] = _Setting([env[var]], [0], var)
        if "IONMESH_HOST" not in env and "IONMESH_PORT" not in env:
            return
        scheme, host, port, path = "http", "", "", ""
        configured = section.settings.get("url")
        if configured is not None and configured.values[-1].strip():
            try:
                parts = urlsplit(configured.values[-1].strip())
                if parts.scheme in ("http", "https"):
                    scheme, path = parts.scheme, parts.path
                    host = parts.netloc.rpartition("@")[2]
                    host, port = _split_host_port(host)
            except ValueError:
                pass  # the file's URL is wrong; the override stands alone
        variable = "IONMESH_HOST" if "IONMESH_HOST" in env else "IONMESH_PORT"
        if "IONMESH_HOST" in env:
            given = env["IONMESH_HOST"]
            if any(c.isspace() or c in "/@?#" for c in given):
                self.report(0, section.label, "url", f"must be a host name or address, not "
                            f"{given!r}", "IONMESH_HOST")
                return
            host = f"[{given}]" if ":" in given and not given.startswith("[") else given
            if configured is None:
                port = "5000"  # IONMESH.md: the server's default port
        if "IONMESH_PORT" in env:
            given = env["IONMESH_PORT"]
            if not (given.isascii() and given.isdigit() and 1 <= int(given) <= 65535):
                self.report(0, section.label, "url", f"must be a port number 1-65535, not "
                            f"{given!r}", "IONMESH_PORT")
                return
            port = str(int(given))
        if not host:
            self.report(0, section.label, "url", "IONMESH_PORT needs a host: set IONMESH_HOST "
                        "or option url", "IONMESH_PORT")
            return
        url = f"{scheme}://{host}{':' + port if port else ''}{path}"
        section.settings["url"] = _Setting([url], [0], variable)

    # -- conversion

    def convert(self, section: _Section) -> tuple[dict[str, Any], set[str]]:
        """Typed values by dataclass field, and the options found wrong."""
        specs = _SECTIONS[section.type]
        values: dict[str, Any] = {}
        wrong: set[str] = set()
        for name, setting in section.settings.items():
            spec = specs[name]
            convert = spec.convert
            if setting.variable and spec.from_environment is not None:
                convert = spec.from_environment
            attribute = spec.attribute or name
            if spec.is_list:
                items: list[Any] = []
                for value, line in zip(setting.values, setting.lines):
                    for piece in value.split():
                        try:
                            item = convert(piece)
                        except _Bad as e:
                            self.report_at(setting, section, name, e.message, line)
                            wrong.add(name)
                        else:
                            if item not in items:
                                items.append(item)
                values[attribute] = tuple(items)
                continue
            text = setting.values[-1].strip()
            if not text:
                continue  # '' is how UCI unsets an option
            try:
                values[attribute] = convert(text)
            except _Bad as e:
                self.report_at(setting, section, name, e.message)
                wrong.add(name)
        return values, wrong | section.rejected


def _raw(section: _Section, option: str) -> str:
    setting = section.settings.get(option)
    return setting.values[-1].strip() if setting is not None and setting.values else ""


def _split_host_port(netloc: str) -> tuple[str, str]:
    if netloc.startswith("["):
        host, _, rest = netloc.partition("]")
        return host + "]", rest[1:] if rest.startswith(":") else ""
    host, _, port = netloc.partition(":")
    return host, port


def parse_config(text: str, path: str, environ: Mapping[str, str] | None = None) -> Config:
    """Check and type a configuration's text; ``path`` only names it in problems.

    ``environ`` holds the override variables; None applies none (this function
    reads nothing but its arguments). Raises ConfigError with every problem.
    """
    r = _Reader(path)
    groups = r.collect(text)
    dual = r.apply_environment(groups, environ or {})

    def single(kind: str) -> tuple[_Section | None, dict[str, Any], set[str]]:
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
    return Config(path, supervisor, ionmesh, modems, routing, escalation, notify)


def _check_shorter(r: _Reader, kind: str, section: _Section | None, option: str, value: int,
                   sup_section: _Section | None, grace: int) -> None:
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


def _modems(r: _Reader, sections: list[_Section], dual: bool | None) -> tuple[ModemConfig, ...]:
    modems: list[ModemConfig] = []
    taken: dict[str, _Section] = {}  # role -> section
    used: dict[tuple[str, Any], tuple[_Section, str]] = {}  # resource -> first holder
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
                    or (_raw(section, o) and _raw(section, o).lower() != "auto")]
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
