"""The heartbeat's IonMesh clients, and what IonMesh's answers ask of it, logged once each.

:class:`Clients`: one client for the active path (its packets marked for the
supervisor's table) and one per modem bound to its device (a failback
attempt); all of them are dropped when IonMesh's address changes.

The interval the server asks for is clamped (:func:`remsim_supervisor.core.cadence.clamp_interval`)
and each clamp logged once; a problem in an answer (a field present but
unusable) is warned of once.
"""

from __future__ import annotations

import logging

from remsim_supervisor.adapters.ionmesh import IonMeshClient
from remsim_supervisor.config import Config
from remsim_supervisor.core import cadence

log = logging.getLogger("remsim_supervisor.supervisor.heartbeat")


class Clients:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.main: IonMeshClient | None = None
        self.bound: dict[str, IonMeshClient] = {}
        self.address: str | None = None

    def get(self, modem: str | None, device: str | None, address: str | None) -> IonMeshClient:
        """The client for the active path (``modem`` None) or bound to ``modem``'s device."""
        if address != self.address:
            # IonMesh moved: every kept connection points at the old address.
            self.close_all()
            self.main, self.bound = None, {}
            self.address = address
        if modem is None:
            if self.main is None:
                self.main = self._make(None)
            return self.main
        client = self.bound.get(modem)
        if client is None or client.bind_device != device:
            if client is not None:
                client.close()
            client = self.bound[modem] = self._make(device)
        return client

    def close_all(self) -> None:
        for c in [self.main, *self.bound.values()]:
            if c is not None:
                c.close()

    def _make(self, device: str | None) -> IonMeshClient:
        return IonMeshClient.from_config(self.config.ionmesh, bind_device=device,
                                         mark=self.config.routing.mark,
                                         connect_address=self.address)


class AnswerLog:
    def __init__(self) -> None:
        self._clamped: float | None = None  # the last server value logged as clamped
        self._problems_seen: set[str] = set()

    def interval(self, asked: int, bounds: tuple[float, float], where: str) -> float:
        """The interval to use when IonMesh asked for ``asked`` s; a clamp is logged once."""
        low, high = bounds
        value = cadence.clamp_interval(asked, low, high)
        if value != asked:
            if self._clamped != asked:
                self._clamped = asked
                bound = (
                    "ionmesh.min_heartbeat_interval"
                    if value == low and asked < low
                    else "grace_period - margin - timeout"
                )
                log.warning(
                    "IonMesh asked %s for a heartbeat every %.20s s: using %g s (%s)",
                    where,
                    str(asked),
                    value,
                    bound,
                )
        else:
            self._clamped = None
        return value

    def problems(self, problems: tuple[str, ...]) -> None:
        """Warn of each problem in an answer once (of the last 32 seen)."""
        for problem in problems:
            if problem not in self._problems_seen:
                if len(self._problems_seen) >= 32:
                    self._problems_seen.clear()
                self._problems_seen.add(problem)
                log.warning("IonMesh answer: %s", problem)
