"""What a configuration is once read: the frozen values callers see, and its problems.

:class:`Config` holds one section each of :class:`SupervisorConfig`,
:class:`IonmeshConfig`, :class:`RoutingConfig`, :class:`EscalationConfig` and
:class:`NotifyConfig`, and the modems (:class:`ModemConfig`, their GPIO lines
as :class:`GpioSpec`). A configuration that cannot be used raises
:class:`ConfigError`, one :class:`Problem` per thing to fix.

``api_key`` never appears in full: not in a repr, not in a problem.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field, fields

DEFAULT_PATH = "/etc/config/remsim-supervisor"
ENVIRONMENT = "environment"  # Problem.file of a problem with an environment override

ROLES = ("primary", "iot")


def models() -> tuple[str, ...]:
    """The models a modem section may name: "auto" (the profile is chosen from the
    modem's USB id or its own answers) and the vendor profiles' keys. Asked for
    only when a file names a model, so the osmo-remsim event path, which reads
    the file on every event, does not load every vendor profile."""
    from remsim_supervisor.vendors import MODEL_KEYS

    return ("auto", *MODEL_KEYS)

MAPPING_MODES = ("ONE_TO_ONE_SWSIM", "ONE_TO_ONE_VSIM", "KI_PROXY_SWSIM")
LOG_LEVELS = ("debug", "info", "warning", "error")


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
    usb_monitor: str = "auto"  # USB events in-process: auto, udev, kernel or off


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
    # the ifup step's command lines, "{interface}" replaced; None: the built-in ifup
    ifup_command: tuple[str, ...] | None = None
    ifdown_command: tuple[str, ...] | None = None  # run before ifup_command when set
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
class LanConfig:
    """The LAN failover policy (docs/lan-failover.md): off unless ``enabled``."""

    enabled: bool = False
    uplinks: tuple[str, ...] = ()  # in order of preference: a modem's name or role, or a device
    probes: tuple[str, ...] = ()  # "ADDRESS" (ICMP echo) or "ADDRESS:PORT" (TCP connect)
    probe_interval: float = 5.0  # seconds between probe rounds
    probe_timeout: float = 1.0  # seconds a probe may take
    probe_failures: int = 2  # unanswered rounds in a row that fail an uplink (answered: back)
    failback_hold: int = 30  # seconds a preferred uplink must stay usable before failback
    iot_daily_cap_mb: float | None = None  # the IoT modem carries the LAN only within this
    table: int = 241  # the LAN's table; uplink N's probe table is table + N
    priority: int = 95  # probe rules here, main without its default at +1, the LAN's at +2
    probe_mark: int = 0x01000000  # uplink N's probes carry probe_mark << (N - 1)


@dataclass(frozen=True)
class Config:
    path: str
    supervisor: SupervisorConfig
    ionmesh: IonmeshConfig
    modems: tuple[ModemConfig, ...]
    routing: RoutingConfig
    escalation: EscalationConfig
    notify: NotifyConfig = field(default_factory=NotifyConfig)
    lan: LanConfig = field(default_factory=LanConfig)

    def modem(self, name: str) -> ModemConfig | None:
        return next((m for m in self.modems if m.name == name), None)

    def by_role(self, role: str) -> ModemConfig | None:
        return next((m for m in self.modems if m.role == role), None)
