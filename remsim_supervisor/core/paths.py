"""Choosing the heartbeat path: which modem carries IonMesh, remsim-server and bankd.

Pure logic, no I/O and no clock: facts and outcomes come in, the path that
should be active comes out, with the reason for the log.

Rules (PRODUCT.md, "The heartbeat path"):

* The ``iot`` modem is preferred; the ``primary`` modem is the fallback.
* A path is *usable* when its data device exists, is up with carrier and has
  an address: IPv4, IPv6 or both (its gateway is known, or it is a point-to-point
  link). An IPv6-only modem path is as usable as an IPv4 one; which of a pinned
  host's addresses the heartbeat connects to follows the IP versions the paths
  carry (:func:`address_for`).
* The path moves to the other modem at once when the active one becomes
  unusable (link down, address or gateway gone), and when a heartbeat over
  it failed (a silent blackhole: link up, packets dropped) while the other
  is usable. The caller then retries the failed heartbeat over the new path
  at once.
* While the fallback carries the heartbeat, each heartbeat is first tried
  over the preferred modem, bound to its device (a real heartbeat, not an
  extra probe). After ``failback_after`` acknowledged ones in a row the path
  moves back; one failure resets the count (hysteresis).
* With no usable path there is no active path: pinned traffic then follows
  the main table, which may still have a way out (a wired WAN).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

PREFERRED = "iot"


@dataclass(frozen=True)
class PathFacts:
    """What the kernel says about one modem's data path."""

    modem: str
    role: str
    device: str | None
    up: bool = False
    has_address: bool = False  # an IPv4 or a global IPv6 address
    versions: tuple[int, ...] = ()  # the IP versions the path carries (4, 6), as last read

    @property
    def usable(self) -> bool:
        return bool(self.device) and self.up and self.has_address


@dataclass(frozen=True)
class PathState:
    active: str | None = None  # modem name
    failback_ok: int = 0  # consecutive acknowledged heartbeats over the preferred path
    reason: str = "no path yet"


@dataclass(frozen=True)
class Move:
    old: str | None
    new: str | None
    reason: str


def _preferred(paths: dict[str, PathFacts]) -> PathFacts | None:
    for p in paths.values():
        if p.role == PREFERRED:
            return p
    return None


def _fallback(paths: dict[str, PathFacts], besides: str | None) -> PathFacts | None:
    for p in sorted(paths.values(), key=lambda p: (p.role == PREFERRED, p.modem)):
        if p.modem != besides and p.usable:
            return p
    return None


def _move(state: PathState, new: str | None, reason: str) -> tuple[PathState, Move | None]:
    if new == state.active:
        return replace(state, reason=reason), None
    return PathState(active=new, failback_ok=0, reason=reason), Move(state.active, new, reason)


def on_facts(state: PathState, paths: dict[str, PathFacts]) -> tuple[PathState, Move | None]:
    """Links or addresses changed: keep, move or drop the active path."""
    active = paths.get(state.active) if state.active else None
    if active is not None and active.usable:
        return state, None
    preferred = _preferred(paths)
    why = (
        f"{active.modem} path down ({_down_why(active)})"
        if active is not None
        else "choosing a path"
    )
    if state.active is None and preferred is not None and preferred.usable:
        return _move(state, preferred.modem, f"{preferred.modem} path usable")
    other = _fallback(paths, besides=state.active)
    if other is not None:
        return _move(state, other.modem, f"{why}; {other.modem} takes over")
    if state.active is None:
        return state, None
    return _move(state, None, f"{why}; no other usable path")


def with_link(paths: dict[str, PathFacts], device: str, up: bool) -> dict[str, PathFacts]:
    """The facts after a link event: ``device`` is now ``up`` (or not), as the event said.

    Its address is left as last read: a link that goes down is unusable
    whatever it holds, and one that comes up is usable once a read finds
    its address.
    """
    return {name: (replace(p, up=up) if p.device == device else p) for name, p in paths.items()}


def address_for(addresses: Sequence[str], paths: Iterable[PathFacts]) -> str | None:
    """Which of a host's ``addresses`` to connect to over ``paths`` (the active one first,
    then the others): the first address of an IP version every path carries (paths
    not read yet do not count), else of one the first path carries, else the first
    address. None without any.

    A dual-stack host reached over an IPv6-only IoT path is reached over IPv6; if the
    primary also carries IPv6, a move and the failback keep the same address (and the
    kept-alive connection's destination) on both.
    """
    if not addresses:
        return None
    carried = [set(p.versions) for p in paths if p.versions]
    for wanted in (set.intersection(*carried) if carried else set(),
                   carried[0] if carried else set()):
        for address in addresses:
            if ip_version(address) in wanted:
                return address
    return addresses[0]


def ip_version(address: str) -> int | None:
    """4 or 6 for an IP address (IPv6 with or without a ``%scope``), None for anything else."""
    try:
        return ipaddress.ip_address(address.strip("[]").split("%", 1)[0]).version
    except ValueError:
        return None


def _down_why(p: PathFacts) -> str:
    if not p.device:
        return "no data device"
    if not p.up:
        return f"{p.device} down"
    return f"{p.device} has no address"


def on_heartbeat_failed(
    state: PathState, paths: dict[str, PathFacts], via: str | None
) -> tuple[PathState, Move | None]:
    """A heartbeat over ``via`` (a modem, or None for the active path) was not acknowledged."""
    if via is not None and via != state.active:
        # A failback attempt over the preferred path failed: stay, start counting again.
        return replace(state, failback_ok=0, reason=f"heartbeat over {via} failed; staying"), None
    other = _fallback(paths, besides=state.active)
    if other is None:
        return replace(state, reason="heartbeat failed; no other usable path"), None
    return _move(
        state,
        other.modem,
        f"heartbeat over {state.active} failed (silent path); {other.modem} takes over",
    )


def on_heartbeat_acked(
    state: PathState, paths: dict[str, PathFacts], via: str | None, failback_after: int
) -> tuple[PathState, Move | None]:
    """A heartbeat over ``via`` (None: the active path) was acknowledged."""
    if via is None or via == state.active:
        return state, None
    count = state.failback_ok + 1
    if count >= failback_after:
        return _move(state, via, f"{via} path healthy again ({count} heartbeats acknowledged)")
    return replace(state, failback_ok=count, reason=f"{via} healthy {count}/{failback_after}"), None


def failback_candidate(state: PathState, paths: dict[str, PathFacts]) -> str | None:
    """The preferred modem, when it is usable but not active: try the heartbeat over it first."""
    preferred = _preferred(paths)
    if preferred is None or preferred.modem == state.active or not preferred.usable:
        return None
    return preferred.modem
