"""Modem profiles: the types every vendor module fills in, plus the generic 3GPP profile.

A profile is data about one modem family, in the spirit of ModemManager's
plugins: which USB ids it enumerates with, which USB interface carries the AT
port in each composition (and which must never be opened), which commands to
send and poll and which parser reads the signal answers, which unsolicited
lines it sends (its URC table), how to reset it, how long each step takes and
what each recovery rung costs. Nothing here does I/O: the AT engine sends the
commands named here and classifies URCs with the profile's table; the 3GPP
parsers live in ``remsim_supervisor.core.parse``, the vendor ones in the
vendor modules.

Types (the generic 3GPP profile and the 27.007 command sets are in ``generic``)
    ``Port``         one USB interface as the vendor publishes it (role, driver,
                     class triple, tty kind). Used by ``lab.fakesysfs`` to build
                     realistic trees and as documentation; discovery does not
                     need it.
    ``Composition``  one USB (or PCIe) personality of a modem: VID:PID, the
                     interface numbers of the AT ports, net interfaces, ports
                     never to open, candidates to probe when the layout is not
                     certain, and a fingerprint (net driver / class) to tell
                     compositions that share a PID apart (Quectel ``usbnet``).
                     Huawei ports are found by ``bInterfaceProtocol`` instead
                     of numbers (``at_protocols``).
    ``Timings``      how long things take; 2nd-hand numbers are commented and
                     can be overridden from the configuration.
    ``SignalQuery``  a signal command and the parser of its answer.
    ``ModemProfile`` everything above plus commands, URC rules and rung costs;
                     ``with_overrides`` applies configuration,
                     ``composition_for`` picks the composition that fits
                     what sysfs shows.

Rules the data obeys (checked in ``ModemProfile.__post_init__``): every
recovery rung is costed (never below the timings it waits on: a longer
timing raises the cost); no command
anywhere is a network scan (``AT+COPS=?`` blocks the only AT port for over a
minute), model patterns compile, and every composition's port list agrees with
its role fields.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

from remsim_supervisor.core.planner import RUNGS
from remsim_supervisor.core.urc import BASIC_URCS, UrcRule, UrcTable

__all__ = [
    "COMMON_URCS",
    "ICCID_CRSM_FALLBACK",
    "Composition",
    "InterfaceLike",
    "ModemProfile",
    "Port",
    "SignalQuery",
    "Timings",
    "acm_port",
    "data_port",
    "net_port",
    "rung_costs",
    "serial_port",
]

VENDOR_CLASS = 0xFF

# Port roles (Port.role). Free strings would do; constants keep the data honest.
ROLE_AT = "at"  # primary AT port
ROLE_AT_SECONDARY = "at-secondary"  # second AT port (also the PPP/modem port on Qualcomm parts)
ROLE_MODEM = "modem"  # PPP data port that also speaks AT (Huawei "Modem")
ROLE_DIAG = "diag"  # QCDM / diagnostics: binary, never write AT text to it
ROLE_NMEA = "nmea"  # GPS sentences
ROLE_DEBUG = "debug"  # vendor debug/log port: never open (L850 if 4)
ROLE_ADB = "adb"
ROLE_NET = "net"  # the interface a network device hangs off (control interface)
ROLE_NET_DATA = "net-data"  # the CDC data interface paired with it
ROLE_CONTROL = "control"  # QMI/MBIM control only (cdc-wdm), no tty
ROLE_UNKNOWN = "unknown"  # present, function not published

# 3GPP TS 27.007 +CRSM READ BINARY of EF_ICCID (0x2FE2): works on every modem,
# but the answer is nibble-swapped BCD. The caller's fallback when the vendor
# ICCID command errors.
ICCID_CRSM_FALLBACK = "AT+CRSM=176,12258,0,0,10"

# Network scans block the AT port for minutes; no profile may contain one.
_FORBIDDEN_COMMANDS = re.compile(r"\+COPS\s*=\s*\?", re.IGNORECASE)


class InterfaceLike(Protocol):
    """What ``composition_for`` needs to know about a USB interface.

    ``discovery.UsbInterface`` satisfies it; tests may pass plain numbers.
    """

    @property
    def number(self) -> int: ...
    @property
    def klass(self) -> int | None: ...
    @property
    def subclass(self) -> int | None: ...
    @property
    def protocol(self) -> int | None: ...
    @property
    def driver(self) -> str | None: ...


@dataclass(frozen=True)
class Port:
    """One USB interface as published for a composition."""

    number: int
    role: str
    driver: str | None
    klass: int
    subclass: int
    protocol: int
    tty: str | None = None  # "usbserial" (ttyUSBn, option/qcserial) or "acm" (ttyACMn)
    net: bool = False  # a network device hangs off this interface


def serial_port(
    number: int,
    role: str,
    *,
    driver: str = "option",
    cls: tuple[int, int, int] = (0xFF, 0xFF, 0xFF),
) -> Port:
    """A usb-serial port (ttyUSBn)."""
    return Port(number, role, driver, *cls, tty="usbserial")


def acm_port(number: int, role: str, *, cls: tuple[int, int, int] = (0x02, 0x02, 0x01)) -> Port:
    """A CDC-ACM control interface (ttyACMn hangs off it)."""
    return Port(number, role, "cdc_acm", *cls, tty="acm")


def net_port(number: int, driver: str, cls: tuple[int, int, int]) -> Port:
    """The interface a network device hangs off."""
    return Port(number, ROLE_NET, driver, *cls, net=True)


def data_port(number: int, driver: str | None, *, protocol: int = 0x00) -> Port:
    """A CDC data interface (class 0a): claimed by the driver, no tty, no net."""
    return Port(number, ROLE_NET_DATA, driver, 0x0A, 0x00, protocol)


@dataclass(frozen=True)
class Composition:
    """One USB (or PCIe) personality of a modem."""

    vid: int
    pid: int
    label: str  # e.g. "usbnet 0 (QMI)", "GTUSBMODE 40 (RNDIS)"
    at_interface: int | None  # bInterfaceNumber of the primary AT port; None: by protocol/wwan
    secondary_at_interface: int | None
    net_interfaces: tuple[int, ...]
    never_open: tuple[int, ...] = ()  # diag, debug ports: writing AT text there can wedge them
    probe_at: tuple[int, ...] = ()  # candidates, in order, when the layout is not certain
    # Huawei: vendor-class (ff) interfaces whose bInterfaceProtocol names the function,
    # because Huawei renumbers interfaces between firmware and port modes.
    at_protocols: tuple[int, ...] = ()
    secondary_protocols: tuple[int, ...] = ()
    never_open_protocols: tuple[int, ...] = ()
    # Fingerprint to tell compositions sharing one PID apart (Quectel usbnet 0-3):
    # the driver bound to the first net interface, or failing that its class triple.
    net_drivers: tuple[str, ...] = ()
    net_class: tuple[int, int, int] | None = None
    bus: str = "usb"  # "usb", or "pci" (AT port is a wwan character device)
    ports: tuple[Port, ...] = ()  # the full published layout (lab + documentation)
    ports_exact: bool = True  # False: ``ports`` is an example, not a fingerprint (Huawei)

    @property
    def usb_id(self) -> tuple[int, int]:
        return (self.vid, self.pid)

    @property
    def needs_probe(self) -> bool:
        """The AT port is a best guess: probe ``probe_at`` candidates before trusting it."""
        return bool(self.probe_at)

    def describe(self) -> str:
        return f"{self.vid:04x}:{self.pid:04x} {self.label}"

    def score(self, interfaces: Mapping[int, InterfaceLike | None]) -> int:
        """How well what sysfs shows fits this composition (higher is better, < 0 contradicts).

        ``interfaces`` maps interface numbers to their facts, or to None when
        only the numbers are known. Drivers are the strongest evidence (they
        are what the kernel bound), class triples the next (a driver may be
        missing: OpenWrt without kmod-usb-net-rndis), presence the weakest.
        """
        if not interfaces:
            return 0
        score = 0
        for position, number in enumerate(self.net_interfaces):
            if number not in interfaces:
                score -= 2
                continue
            facts = interfaces[number]
            driver = facts.driver if facts is not None else None
            if driver and self.net_drivers:
                score += 4 if driver in self.net_drivers else -4
            elif position == 0 and facts is not None and self.net_class and facts.klass is not None:
                triple = (facts.klass, facts.subclass, facts.protocol)
                score += 3 if triple == self.net_class else -3
            else:
                score += 1
        if self.at_interface is not None:
            score += 1 if self.at_interface in interfaces else -2
        detailed = any(
            f is not None and (f.driver or f.klass is not None) for f in interfaces.values()
        )
        if self.ports and self.ports_exact and not detailed:
            # With numbers only, the published layout is the last fingerprint
            # left: QMI (if 0-4) and RNDIS (if 0-5) differ by one interface.
            published = {p.number for p in self.ports}
            score -= 2 * len(published - interfaces.keys())
            score -= len(interfaces.keys() - published)
        if self.at_protocols:
            known = [f for f in interfaces.values() if f is not None]
            if known:
                hit = any(
                    f.klass == VENDOR_CLASS and f.protocol in self.at_protocols for f in known
                )
                score += 2 if hit else -2
        return score

    def port(self, role: str) -> Port | None:
        """The first published port with ``role``."""
        return next((p for p in self.ports if p.role == role), None)


@dataclass(frozen=True)
class Timings:
    """How long things take. Nominal values; callers add their own slack.

    Values marked (2nd-hand) come from third-party code or reports quoting a
    vendor document; ``None`` means unknown and must come from configuration
    before anything depends on it (a wrong reset pulse can power a modem off).
    ``ready_s``, ``radio_cycle_s``, ``usb_reauth_s`` and ``reboot_to_usb_s``
    are also the floors of the profile's recovery rung costs.
    """

    command_timeout_s: float = 5.0  # ordinary AT command
    soft_reset_answer_s: float = 15.0  # until the reset command's OK
    reboot_to_usb_s: float = 30.0  # back on USB after a reset (generic: conservative guess)
    ready_s: float = 120.0  # until fully operational (SIM, registration possible)
    reset_pulse_ms: int | None = None  # GPIO reset pulse width
    radio_cycle_s: float = 15.0  # expected duration of CFUN=0 or CFUN=1 (network detach/attach)
    usb_reauth_s: float = 10.0  # re-enumeration after authorized 0 -> 1 (guess)


@dataclass(frozen=True)
class SignalQuery:
    """A signal command and the parser that reads its information lines."""

    command: str
    parse: Callable[[Sequence[str]], object]


def _sim_word(line: str) -> str | None:
    """+SIM READY / +SIM: Removed / +SIM DROP / +SIM: Inserted as a SIM report."""
    up = " ".join(line.upper().split())
    if up in ("+SIM READY", "+SIM: READY"):
        return "ready"
    if up in ("+SIM DROP", "+SIM: REMOVED"):
        return "not_inserted"
    return "inserted" if up == "+SIM: INSERTED" else None


#: SIM reports outside 27.007 that modems of several vendors send.
COMMON_URCS: tuple[UrcRule, ...] = tuple(
    UrcRule(p, "sim", _sim_word) for p in ("+SIM READY", "+SIM:", "+SIM DROP"))


def _proxy(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping))


def rung_costs(reroute: float, ifup: float, radio_cycle: float, soft_reset: float,
               usb_reauth: float, gpio_reset: float, power_cycle: float) -> Mapping[str, float]:
    """Seconds from the start of each recovery rung until the modem can carry the
    heartbeat again (upper figures where a source gives a range), in the order of
    ``core.planner.RUNGS``. Sources and uncertainty per cell: docs/guardian.md,
    "Default step costs"."""
    values = (reroute, ifup, radio_cycle, soft_reset, usb_reauth, gpio_reset, power_cycle)
    return MappingProxyType(dict(zip(RUNGS, values, strict=True)))


#: The conservative costs of a modem nobody published figures for.
GENERIC_COSTS = rung_costs(10.0, 20.0, 45.0, 120.0, 30.0, 120.0, 130.0)


@dataclass(frozen=True, kw_only=True)
class ModemProfile:
    """Everything the supervisor knows about one modem family."""

    key: str  # "ec25", "fm350gl", "l850gl", "mc7455", "me909s", "generic"
    vendor: str
    name: str
    compositions: tuple[Composition, ...]
    model_patterns: tuple[str, ...]  # regexes, case-insensitive, on CGMI/CGMM/ATI text
    init_commands: tuple[str, ...]
    # Hashing skips the mapping (mappings are unhashable); equality still compares it.
    identity_commands: Mapping[str, str] = field(hash=False)
    registration_commands: tuple[str, ...]
    signal: tuple[SignalQuery, ...]  # tried in order until one answers with figures
    soft_reset: str
    timings: Timings
    # Recovery rung -> expected seconds (see ``rung_costs``); the planner's defaults.
    rung_costs: Mapping[str, float] = field(default_factory=lambda: GENERIC_COSTS, hash=False)
    operator_command: str = "AT+COPS?"  # never the scan form
    sim_command: str = "AT+CPIN?"
    radio_off: str = "AT+CFUN=0"
    radio_on: str = "AT+CFUN=1"
    # The vendor's unsolicited lines (boot banner, SIM and signal reports), on top
    # of 27.007's and COMMON_URCS; ``urcs`` is the whole table the AT engine uses.
    urc_rules: tuple[UrcRule, ...] = ()
    urcs: UrcTable = field(init=False, compare=False, hash=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "identity_commands", _proxy(self.identity_commands))
        object.__setattr__(self, "rung_costs", _floored(self.key, self.rung_costs, self.timings))
        object.__setattr__(self, "urcs", BASIC_URCS + COMMON_URCS + self.urc_rules)
        for pattern in self.model_patterns:
            re.compile(pattern)  # fail at import, not at the first identify()
        for command in self.all_commands():
            if _FORBIDDEN_COMMANDS.search(command):
                raise ValueError(f"profile {self.key}: network scan {command!r} is forbidden")
        for comp in self.compositions:
            _check_composition(self.key, comp)

    # -- identification -------------------------------------------------------

    def matches(self, text: str) -> bool:
        """Does the modem's own description (CGMI/CGMM/ATI output) name this family?"""
        return any(re.search(p, text, re.IGNORECASE) for p in self.model_patterns)

    @property
    def signal_commands(self) -> tuple[str, ...]:
        return tuple(q.command for q in self.signal)

    def read_signal(self, command: str, lines: Sequence[str]) -> object:
        """The answer to signal command ``command`` as its parser reads it (None: unreadable)."""
        query = next((q for q in self.signal if q.command == command), None)
        return query.parse(lines) if query is not None else None

    def usb_ids(self) -> set[tuple[int, int]]:
        return {c.usb_id for c in self.compositions}

    # -- compositions ---------------------------------------------------------

    def composition_for(
        self,
        vid: int,
        pid: int,
        interface_numbers: Collection[int] | Collection[InterfaceLike] = (),
    ) -> Composition | None:
        """The composition that fits a device with this id and these interfaces.

        ``interface_numbers`` may be plain numbers or objects with number,
        klass/subclass/protocol and driver (``discovery.UsbInterface``); the
        richer the facts, the surer the pick. With no interface facts the first
        declared composition for the id wins (the vendor default). When facts
        are given and every candidate contradicts them, None: better to probe
        than to write AT text into a diagnostics port.
        """
        candidates = [c for c in self.compositions if c.vid == vid and c.pid == pid]
        if not candidates:
            return None
        facts = _normalise(interface_numbers)
        if not facts or len(candidates) == 1:
            # A PID of its own is stronger evidence than any layout detail; if
            # the AT interface turns out to have no tty, discovery probes.
            return candidates[0]
        # max() keeps the first of equal scores: declaration order breaks ties.
        best = max(candidates, key=lambda c: c.score(facts))
        return best if best.score(facts) >= 0 else None

    # -- configuration --------------------------------------------------------

    def with_overrides(self, **overrides: Any) -> ModemProfile:
        """A copy with profile and/or timing fields replaced (from configuration).

        ``profile.with_overrides(reset_pulse_ms=250, soft_reset="AT+CFUN=1,1")``;
        a whole ``timings=Timings(...)`` is accepted too, and individual timing
        fields are then applied on top of it. Unknown names raise TypeError.
        """
        timing_names = {f.name for f in dataclasses.fields(Timings)}
        profile_names = {f.name for f in dataclasses.fields(ModemProfile)}
        unknown = set(overrides) - timing_names - profile_names
        if unknown:
            raise TypeError(f"unknown profile/timing override(s): {', '.join(sorted(unknown))}")
        timing_kw = {k: v for k, v in overrides.items() if k in timing_names}
        profile_kw = {k: v for k, v in overrides.items() if k in profile_names}
        base_timings = profile_kw.get("timings", self.timings)
        if timing_kw:
            profile_kw["timings"] = dataclasses.replace(base_timings, **timing_kw)
        return dataclasses.replace(self, **profile_kw)

    def with_usb_id(self, vid: int, pid: int, *, like: str | None = None) -> ModemProfile:
        """A copy that also accepts ``vid:pid``, laid out like composition ``like``.

        For ids the configuration supplies (the design's "850L" may enumerate
        with an id public sources never listed). The copy is marked for probing:
        an id nobody published is a layout nobody confirmed.
        """
        usb = [c for c in self.compositions if c.bus == "usb"]
        template = next((c for c in usb if like is None or c.label == like), None)
        if template is None:
            raise KeyError(f"profile {self.key} has no USB composition labelled {like!r}")
        probe = template.probe_at or tuple(
            n for n in (template.at_interface, template.secondary_at_interface) if n is not None
        )
        extra = dataclasses.replace(
            template, vid=vid, pid=pid, label=f"{template.label} (configured id)", probe_at=probe
        )
        return dataclasses.replace(self, compositions=(*self.compositions, extra))

    # -- introspection --------------------------------------------------------

    def all_commands(self) -> Iterator[str]:
        """Every AT command the profile may send (for checks like "no scans")."""
        yield from self.init_commands
        yield from self.identity_commands.values()
        yield from self.registration_commands
        yield from self.signal_commands
        for single in (
            self.operator_command,
            self.sim_command,
            self.radio_off,
            self.radio_on,
            self.soft_reset,
        ):
            if single is not None:
                yield single


def _normalise(
    interfaces: Collection[int] | Collection[InterfaceLike],
) -> dict[int, InterfaceLike | None]:
    facts: dict[int, InterfaceLike | None] = {}
    for item in interfaces:
        if isinstance(item, int):
            facts[item] = None
        else:
            facts[item.number] = item
    return facts


def _floored(key: str, costs: Mapping[str, float], timings: Timings) -> Mapping[str, float]:
    """Every rung costed, and no cost shorter than the timings the rung waits on
    (a configured ``ready_s`` of 200 s makes a soft reset cost at least that)."""
    if set(costs) != set(RUNGS):
        raise ValueError(f"profile {key}: rung costs must name exactly {RUNGS}")
    floors = {"soft_reset": timings.ready_s, "radio_cycle": 2 * timings.radio_cycle_s,
              "usb_reauth": timings.usb_reauth_s, "gpio_reset": timings.reboot_to_usb_s}
    return _proxy({rung: max(cost, floors.get(rung, 0.0)) for rung, cost in costs.items()})


def _check_composition(key: str, comp: Composition) -> None:
    """Published ports and role fields must tell the same story."""
    if comp.bus not in ("usb", "pci"):
        raise ValueError(f"profile {key}: {comp.describe()}: unknown bus {comp.bus!r}")
    if comp.at_interface is not None and comp.at_interface in comp.never_open:
        raise ValueError(f"profile {key}: {comp.describe()}: AT interface is marked never-open")
    if not comp.ports:
        return
    by_number = {p.number: p for p in comp.ports}
    roles = ((comp.at_interface, ROLE_AT), (comp.secondary_at_interface, ROLE_AT_SECONDARY))
    for number, role in roles:
        if number is not None and (number not in by_number or by_number[number].role != role):
            raise ValueError(f"profile {key}: {comp.describe()}: interface {number} is not {role}")
    for number in comp.net_interfaces:
        if number not in by_number or by_number[number].role not in (ROLE_NET, ROLE_NET_DATA):
            raise ValueError(f"profile {key}: {comp.describe()}: interface {number} is not net")
