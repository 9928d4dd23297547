"""Which of a modem's ports to use: a composition's port rules applied to what sysfs shows."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from remsim_supervisor.vendors.base import VENDOR_CLASS, Composition, InterfaceLike

__all__ = ["PortRoles", "PortedInterface", "assign_roles"]


class PortedInterface(InterfaceLike, Protocol):
    """A USB interface with the kernel names of the ports hanging off it."""

    @property
    def at_ports(self) -> tuple[str, ...]: ...


@dataclass(frozen=True)
class PortRoles:
    """What ``assign_roles`` decided, as kernel port names."""

    at: str | None
    secondary: str | None
    candidates: tuple[str, ...]  # kernel names
    never_open: tuple[str, ...]
    #: The ports that speak AT, in the order to use them: ``at``, ``secondary``,
    #: then the composition's other named AT candidates (``probe_at``). When
    #: a program holds one (smsd, pppd), the next free one is used. Ports that
    #: are only a guess (an unknown device, "any usable interface") are not
    #: here: writing AT text to an unknown port is not a fallback.
    at_ports: tuple[str, ...] = ()


def assign_roles(composition: Composition | None,
                 interfaces: Iterable[PortedInterface]) -> PortRoles:
    """Which port is AT, which is second, which to probe, which never to touch.

    Pure: sysfs facts in, names out. ``at_ports`` is the order to fall back
    in when a port is held by another program. Interfaces are matched by number, or
    (compositions with ``at_protocols``) by vendor-class protocol; never-open
    interfaces are excluded from every role even if the data elsewhere
    disagreed. Without a composition (unknown device, or a layout that
    contradicts every known one) there is no AT port, and every port is a
    candidate in interface order.
    """
    ifaces = sorted(interfaces, key=lambda i: i.number)
    if composition is None:
        return PortRoles(None, None, tuple(p for i in ifaces for p in i.at_ports[:1]), ())

    if composition.bus == "pci":
        at_ports = tuple(p for i in ifaces for p in i.at_ports)
        return PortRoles(
            at_ports[0] if at_ports else None,
            at_ports[1] if len(at_ports) > 1 else None,
            at_ports,
            (),
            at_ports,
        )

    never = set(composition.never_open) | {
        i.number
        for i in ifaces
        if i.klass == VENDOR_CLASS and i.protocol in composition.never_open_protocols
    }
    usable = [i for i in ifaces if i.at_ports and i.number not in never]
    by_number = {i.number: i for i in usable}

    def by_protocol(protocols: tuple[int, ...]) -> PortedInterface | None:
        return next(
            (i for i in usable if i.klass == VENDOR_CLASS and i.protocol in protocols), None
        )

    def pick(number: int | None, protocols: tuple[int, ...]) -> PortedInterface | None:
        if number is not None:
            return by_number.get(number)
        return by_protocol(protocols) if protocols else None

    at_iface = pick(composition.at_interface, composition.at_protocols)
    secondary_iface = pick(composition.secondary_at_interface, composition.secondary_protocols)
    if secondary_iface is at_iface:
        secondary_iface = None

    ordered: list[PortedInterface | None] = [at_iface]
    ordered.extend(by_number.get(n) for n in composition.probe_at)
    ordered.append(secondary_iface)
    if composition.needs_probe or at_iface is None:
        # The layout is a guess: any port not known to be dangerous may be the one.
        ordered.extend(usable)
    candidates: list[str] = []
    for iface in ordered:
        if iface is not None and iface.at_ports[0] not in candidates:
            candidates.append(iface.at_ports[0])

    never_ports = tuple(p for i in ifaces if i.number in never for p in i.at_ports)
    named = [at_iface, secondary_iface, *(by_number.get(n) for n in composition.probe_at)]
    speaking: list[str] = []
    for iface in named:
        if iface is not None and iface.at_ports[0] not in speaking:
            speaking.append(iface.at_ports[0])
    return PortRoles(
        at_iface.at_ports[0] if at_iface else None,
        secondary_iface.at_ports[0] if secondary_iface else None,
        tuple(candidates),
        never_ports,
        tuple(speaking),
    )
