"""Which of a modem's AT ports its owner task talks on, beside the programs that hold some.

A modem publishes several AT ports (often ``ttyUSB2``, the main one, and
``ttyUSB3``). smsd, pppd or a terminal may hold one of them for itself,
by a UUCP lock file, an exclusive flock or ``TIOCEXCL``
(:mod:`~remsim_supervisor.adapters.portlock`). The rule, for any holder:

* The ports are tried in the order discovery gives
  (``FoundModem.at_ports``: the main port, the secondary, then the
  composition's other AT ports). A port another program holds is skipped
  and never fought over; one named by a live lock file is not even opened
  (opening a tty can toggle DTR and hang up the holder's session). The
  first free one is used; the status shows it as ``at_port`` and, when it
  is not the main port, why (``at_port_reason``: ``ttyUSB2 held by pid 1234
  (smsd)``, as it was when the port was chosen).
* A lock file whose pid no longer runs is stale, not a hold: the log says
  so and the port is used.
* **No churn.** When the holder of the main port goes away, the task stays
  on the alternate port: moving would drop a working session for nothing,
  and the holder may come back. The main port is tried first again the next
  time the port is opened (the modem rebooted or was re-plugged, a recovery
  step reset it, the port was lost).
* **Every AT port held** (or the rest unusable): the modem is ``absent``,
  its reason and ``at_port_reason`` name every holder, ``at_ports_held`` is
  true, and the log says what to do. The guardian takes no step on it
  (:meth:`~remsim_supervisor.supervisor.modems.Modems.snapshot` offers it
  none): the holder is working the modem, and a reset would cut its
  session. The ports are looked at again every ``busy_rescan_interval``.

A configured ``at_port`` is the one port of its modem: there is nothing to
fall back to.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass

from remsim_supervisor.adapters.discovery import FoundModem
from remsim_supervisor.adapters.serialport import (
    DEFAULT_LOCK_DIR,
    Holder,
    PortBusy,
    PortError,
    SerialPort,
)

__all__ = ["PortChoice", "PortPicker", "port_order"]


def port_order(path: str, found: FoundModem | None) -> tuple[str, ...]:
    """``path`` (the port discovery chose, or the configured one) first, then
    the modem's other AT ports in their order."""
    if found is None:
        return (path,)
    return (path, *(p for p in found.at_ports if p != path))


@dataclass(frozen=True)
class PortChoice:
    """The AT port in use and, when it is not the main one, why."""

    port: str
    main: str
    reason: str | None  #: ``ttyUSB2 held by pid 1234 (smsd)``; None on the main port


class PortPicker:
    """Opens the first AT port of a modem that no other program holds (module docstring)."""

    def __init__(self, name: str, log: logging.Logger,
                 lock_dir: str = DEFAULT_LOCK_DIR) -> None:
        self.name = name
        self.log = log
        self.lock_dir = lock_dir
        self.choice: PortChoice | None = None
        #: Every holder, while no AT port of the modem could be opened because of them.
        self.held: tuple[Holder, ...] = ()
        self._said: str | None = None  # the last held/alternate line logged
        self._held_why = ""

    @property
    def all_held(self) -> bool:
        return bool(self.held)

    def forget(self) -> None:
        """The modem is gone (no port to try): nothing is held, nothing chosen."""
        self.choice = None
        self.held = ()

    async def open(self, ports: Sequence[str]) -> tuple[SerialPort | None, str]:
        """(the opened port, "") or (None, why none): the first free port of ``ports``.

        A port that is gone or fails to open for another reason than a holder
        ends the search when it is the main port (the modem is away or
        rebooting: its other ports go with it); an alternate's failure is
        noted and the next one tried.
        """
        self.choice = None
        holders: list[Holder] = []
        troubles: list[str] = []
        for index, path in enumerate(ports):
            port = SerialPort(path, lock_dir=self.lock_dir)
            try:
                await port.open()
            except PortBusy as exc:
                holders.append(exc.holder or Holder(os.path.basename(path), None, None, str(exc)))
                continue
            except PortError as exc:
                if index == 0:
                    self.held = ()
                    return None, str(exc)
                troubles.append(str(exc))
                continue
            self.held = ()
            reason = "; ".join(h.describe() for h in holders) or None
            self.choice = PortChoice(path, ports[0], reason)
            if reason is not None:
                self._say(logging.WARNING, f"{reason} ({holders[0].how}): using "
                          f"{os.path.basename(path)} instead, and staying on it until the "
                          "port is next opened")
            elif holders == [] and self._said is not None:
                self._say(logging.INFO, f"{os.path.basename(path)}, the main AT port, is free "
                          "again: using it")
                self._said = None
            return port, ""
        self.held = tuple(holders)
        return None, self._all_held(ports, troubles)

    def _all_held(self, ports: Sequence[str], troubles: list[str]) -> str:
        named = "; ".join(h.describe() for h in self.held)
        if len(ports) == 1:
            why = f"AT port {named}"
            alone = ("it is the modem's only known AT port" if not troubles else troubles[0])
        elif troubles:
            why = f"no AT port is free: {named}; {'; '.join(troubles)}"
            alone = "no other AT port is usable"
        else:
            why = f"every AT port is held: {named}"
            alone = "no other AT port is free"
        self._held_why = why
        self._say(logging.WARNING, f"{why}; {alone}. The supervisor cannot watch this modem "
                  "and takes no reset step on it while the holder works it. To supervise "
                  "it, have the other program use one AT port only (smsd: its 'device' setting) "
                  "or stop it; the ports are tried again every few seconds")
        return why

    def _say(self, level: int, text: str) -> None:
        if text != self._said:
            self.log.log(level, "%s: %s", self.name, text)
            self._said = text

    def status(self, at_port: str | None) -> dict[str, object]:
        """What the status of a modem on ``at_port`` adds: nothing on the main port;
        ``at_port_reason`` on another; that and ``at_ports_held: true`` when no AT
        port could be opened because of holders."""
        if self.held and at_port is None:
            return {"at_port_reason": self._held_why, "at_ports_held": True}
        choice = self.choice
        if choice is not None and choice.reason is not None and choice.port == at_port:
            return {"at_port_reason": choice.reason}
        return {}
