"""The modem state machine: (facts, event) -> (facts, actions), with no I/O.

A modem's state is not stored and then nudged by hand-written transitions;
it is *derived* from what we know about the modem (:class:`ModemFacts`):
whether its port is open, whether it answered the probe, its SIM lock state,
its registrations and its data link. Each event updates the facts; the
state is recomputed; a change of state yields a log action saying why. This
keeps every state reachable only for a reason that can be read off the
facts, and makes the machine trivially testable: feed events, look at the
state.

States, in the order a healthy modem walks them (PRODUCT.md):

``absent``      no device or no AT port (unplugged, rebooting, held by another program)
``probing``     port open, identifying and initialising the modem
``sim_wait``    no usable SIM (not inserted, empty eUICC, unreadable)
``locked``      the SIM wants a PIN/PUK
``searching``   SIM ready, not registered (searching, denied, idle)
``registered``  registered on a network (home or roaming)
``connected``   registered and its data interface is up
``recovering``  a recovery step is running on it
``failed``      the AT port stopped answering (wedged) or the modem is unusable

The modem task (``supervisor/modem.py``) owns the I/O: it turns AT replies,
typed URCs, netlink link changes and timeouts into the events below and
executes the actions it gets back. Registrations are the parsers' own
:class:`~remsim_supervisor.core.parse.registration.Registration`, from the
URC or query answer to the status, never converted.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from remsim_supervisor.core.parse.registration import REGISTERED_STATES, Registration

__all__ = [
    "LOCKED_SIM", "PS_KINDS", "REGISTERED_STATES", "STATES", "WEDGED_AFTER", "Action", "Answered",
    "Event", "Identified", "LinkChanged", "Log", "ModemFacts", "NotFound", "OperatorReport",
    "PortLost", "PortOpened", "Rebooted", "RecoveryEnded", "RecoveryStarted", "RefreshRegistration",
    "RefreshSim", "Registration", "RegistrationReport", "Reprobe", "SignalReport", "SimState",
    "SubscriberIds", "TimedOut", "derive_state", "step",
]

STATES = (
    "absent",
    "probing",
    "sim_wait",
    "locked",
    "searching",
    "registered",
    "connected",
    "recovering",
    "failed",
)

# Consecutive command timeouts after which a modem counts as wedged.
WEDGED_AFTER = 3

# CxREG kinds that speak for the packet domain: data needs one of these.
PS_KINDS = ("CEREG", "C5GREG", "CGREG")

LOCKED_SIM = frozenset(
    {
        "sim_pin",
        "sim_puk",
        "sim_pin2",
        "sim_puk2",
        "ph_sim_pin",
        "ph_sim_puk",
        "ph_fsim_pin",
        "ph_fsim_puk",
        "ph_net_pin",
        "ph_net_puk",
        "ph_netsub_pin",
        "ph_netsub_puk",
        "ph_sp_pin",
        "ph_sp_puk",
        "ph_corp_pin",
        "ph_corp_puk",
    }
)


@dataclass(frozen=True)
class ModemFacts:
    state: str = "absent"
    reason: str = "not looked for yet"
    at_port: str | None = None
    probed: bool = False
    profile: str | None = None
    manufacturer: str | None = None
    model_name: str | None = None
    revision: str | None = None
    imei: str | None = None
    imsi: str | None = None
    iccid: str | None = None
    sim_lock: str | None = None
    registrations: tuple[Registration, ...] = ()
    operator: str | None = None
    operator_tech: str | None = None
    signal: tuple[tuple[str, Any], ...] = ()
    link_up: bool | None = None
    timeouts: int = 0
    recovering: str | None = None
    changes: int = 0

    # -- derived views ------------------------------------------------------

    def registration(self, kind: str) -> Registration | None:
        for reg in self.registrations:
            if reg.kind == kind:
                return reg
        return None

    @property
    def best_registration(self) -> Registration | None:
        """The registration that decides: a registered PS kind first, then any."""
        ordered = sorted(
            self.registrations,
            key=lambda r: (
                r.state not in REGISTERED_STATES,
                r.kind not in PS_KINDS,
                PS_KINDS.index(r.kind) if r.kind in PS_KINDS else 9,
            ),
        )
        return ordered[0] if ordered else None

    @property
    def registered(self) -> bool:
        best = self.best_registration
        return best is not None and best.state in REGISTERED_STATES

    @property
    def registration_state(self) -> str | None:
        best = self.best_registration
        return best.state if best else None

    @property
    def access_tech(self) -> str | None:
        best = self.best_registration
        if best is not None and best.access_tech not in ("unknown", ""):
            return best.access_tech
        return self.operator_tech

    @property
    def signal_dict(self) -> dict[str, Any]:
        return dict(self.signal)


# -- events -------------------------------------------------------------------


@dataclass(frozen=True)
class NotFound:
    reason: str


@dataclass(frozen=True)
class PortOpened:
    at_port: str


@dataclass(frozen=True)
class PortLost:
    reason: str


@dataclass(frozen=True)
class Answered:
    """A command got a final result code (any): the port is alive."""


@dataclass(frozen=True)
class TimedOut:
    command: str


@dataclass(frozen=True)
class Identified:
    profile: str
    manufacturer: str | None = None
    model_name: str | None = None
    revision: str | None = None
    imei: str | None = None


@dataclass(frozen=True)
class SubscriberIds:
    imsi: str | None = None
    iccid: str | None = None


@dataclass(frozen=True)
class SimState:
    lock: str  # parse_cpin's names: ready, sim_pin, not_inserted, empty_euicc, unknown ...


@dataclass(frozen=True)
class RegistrationReport:
    registration: Registration


@dataclass(frozen=True)
class OperatorReport:
    operator: str | None
    access_tech: str | None = None


@dataclass(frozen=True)
class SignalReport:
    values: tuple[tuple[str, Any], ...]


@dataclass(frozen=True)
class LinkChanged:
    up: bool


@dataclass(frozen=True)
class Rebooted:
    urc: str


@dataclass(frozen=True)
class RecoveryStarted:
    step: str


@dataclass(frozen=True)
class RecoveryEnded:
    step: str
    ok: bool


Event = (
    NotFound
    | PortOpened
    | PortLost
    | Answered
    | TimedOut
    | Identified
    | SubscriberIds
    | SimState
    | RegistrationReport
    | OperatorReport
    | SignalReport
    | LinkChanged
    | Rebooted
    | RecoveryStarted
    | RecoveryEnded
)


# -- actions ------------------------------------------------------------------


@dataclass(frozen=True)
class Log:
    level: str
    message: str


@dataclass(frozen=True)
class Reprobe:
    """Identify and initialise the modem again (it rebooted)."""


@dataclass(frozen=True)
class RefreshSim:
    """Ask for the SIM state now (a SIM URC arrived)."""


@dataclass(frozen=True)
class RefreshRegistration:
    """Query registration, operator and signal now."""


Action = Log | Reprobe | RefreshSim | RefreshRegistration


# -- the machine --------------------------------------------------------------


def derive_state(f: ModemFacts) -> str:
    if f.at_port is None:
        return "absent"
    if f.recovering is not None:
        return "recovering"
    if f.timeouts >= WEDGED_AFTER:
        return "failed"
    if not f.probed or f.sim_lock is None:
        return "probing"
    if f.sim_lock in LOCKED_SIM:
        return "locked"
    if f.sim_lock != "ready":
        return "sim_wait"
    if not f.registered:
        return "searching"
    return "connected" if f.link_up else "registered"


def _why(f: ModemFacts, event: Event) -> str:
    """A short human reason for the state the facts are now in."""
    state = derive_state(f)
    if state == "absent":
        return f.reason
    if state == "failed":
        return f"AT port silent: {f.timeouts} commands in a row unanswered"
    if state == "recovering":
        return f"recovery step {f.recovering}"
    if state == "probing":
        return (
            "rebooted, probing again" if isinstance(event, Rebooted) else f"port {f.at_port} open"
        )
    if state == "locked":
        return f"SIM wants {f.sim_lock.upper().replace('_', ' ')}" if f.sim_lock else "SIM locked"
    if state == "sim_wait":
        return {
            "not_inserted": "SIM not inserted",
            "empty_euicc": "eUICC has no profile",
        }.get(f.sim_lock or "", f"SIM not ready ({f.sim_lock})")
    best = f.best_registration
    if state == "searching":
        if best is None:
            return "SIM ready, registration unknown"
        if best.state == "denied":
            return f"registration denied ({best.kind})"
        return f"{best.kind} {best.state}"
    tech = f.access_tech or "unknown"
    where = f"{best.kind} {best.state}, {tech}" if best else tech
    if f.operator:
        where += f", {f.operator}"
    if state == "connected":
        return f"{where}, data link up"
    if isinstance(event, LinkChanged) and not event.up:
        return f"{where}, data link down"
    return where


def _merge_registration(
    regs: tuple[Registration, ...], new: Registration
) -> tuple[Registration, ...]:
    kept = tuple(r for r in regs if r.kind != new.kind)
    return tuple(sorted((*kept, new), key=lambda r: r.kind))


def _without_port(f: ModemFacts, reason: str) -> ModemFacts:
    """No port: everything learnt over it is stale, but what the modem is
    stays known while it is away (status shows it)."""
    return replace(
        ModemFacts(),
        reason=reason,
        link_up=f.link_up,
        state=f.state,
        changes=f.changes,
        profile=f.profile,
        manufacturer=f.manufacturer,
        model_name=f.model_name,
        revision=f.revision,
        imei=f.imei,
    )


def step(f: ModemFacts, event: Event) -> tuple[ModemFacts, list[Action]]:
    """Apply one event; return the new facts and what the runner should do."""
    actions: list[Action] = []
    g = f
    if isinstance(event, NotFound):
        g = _without_port(f, event.reason)
    elif isinstance(event, PortLost):
        # A recovery step in progress (a reset drops the port) stays on.
        g = replace(_without_port(f, event.reason), recovering=f.recovering)
    elif isinstance(event, PortOpened):
        g = replace(
            f,
            at_port=event.at_port,
            probed=False,
            sim_lock=None,
            registrations=(),
            timeouts=0,
            reason="",
        )
    elif isinstance(event, Answered):
        if f.timeouts:
            g = replace(f, timeouts=0)
    elif isinstance(event, TimedOut):
        g = replace(f, timeouts=f.timeouts + 1)
    elif isinstance(event, Identified):
        g = replace(
            f,
            probed=True,
            profile=event.profile,
            manufacturer=event.manufacturer or f.manufacturer,
            model_name=event.model_name or f.model_name,
            revision=event.revision or f.revision,
            imei=event.imei or f.imei,
            timeouts=0,
        )
    elif isinstance(event, SubscriberIds):
        g = replace(f, imsi=event.imsi or f.imsi, iccid=event.iccid or f.iccid)
    elif isinstance(event, SimState):
        g = replace(f, sim_lock=event.lock)
        if event.lock != "ready":
            # Without a SIM no registration report is meaningful.
            g = replace(g, registrations=(), operator=None, operator_tech=None)
        if event.lock == "ready" and f.sim_lock != "ready":
            actions.append(RefreshRegistration())
    elif isinstance(event, RegistrationReport):
        g = replace(f, registrations=_merge_registration(f.registrations, event.registration))
    elif isinstance(event, OperatorReport):
        g = replace(f, operator=event.operator, operator_tech=event.access_tech)
    elif isinstance(event, SignalReport):
        g = replace(f, signal=event.values)
    elif isinstance(event, LinkChanged):
        g = replace(f, link_up=event.up)
    elif isinstance(event, Rebooted):
        g = replace(
            f,
            probed=False,
            sim_lock=None,
            registrations=(),
            operator=None,
            operator_tech=None,
            signal=(),
            timeouts=0,
        )
        actions.append(Reprobe())
    elif isinstance(event, RecoveryStarted):
        g = replace(f, recovering=event.step)
    elif isinstance(event, RecoveryEnded):
        g = replace(f, recovering=None)

    new_state = derive_state(g)
    if new_state != f.state:
        reason = _why(g, event)
        level = "warning" if new_state in ("absent", "failed", "sim_wait", "locked") else "info"
        g = replace(g, state=new_state, reason=reason, changes=f.changes + 1)
        actions.insert(0, Log(level, f"{f.state} -> {new_state}: {reason}"))
    else:
        g = replace(g, state=new_state)
        if new_state not in ("absent",):
            g = replace(g, reason=_why(g, event))
    return g, actions
