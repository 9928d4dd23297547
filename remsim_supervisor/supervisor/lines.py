"""A modem's GPIO lines as the daemon holds them: SIM switch, reset, power.

The daemon requests each configured line once, at start, and keeps it for
its lifetime, so no other program can flip a SIM or reset a modem behind its
back, and so that the levels it leaves are the levels it meant:

* **reset** is driven inactive at once: a supervisor that crashed in the
  middle of a reset pulse must not leave the modem held in reset.
* **power** is driven active (on) at once, for the same reason.
* **sim** keeps its present level for the primary modem (osmo-remsim's events
  decide it; a restart must not flip the user's SIM), and is driven to the
  *local* SIM for the IoT modem, which always runs on its own SIM.

A line that cannot be had (busy, missing, wrong name) is logged in one line
and that capability is simply absent: the modem is still supervised.

``sim_remote_value`` is the logical level (``active_low`` applied by the GPIO
layer) that selects the remote SIM. Two rules live here once, for the daemon
and the no-daemon event worker alike: :func:`reset_pulse_ms` (the reset
pulse's width) and :func:`hold_local` (the IoT modem back on its own SIM).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from remsim_supervisor.adapters.gpio import GpioError, Line, open_line, settle_levels
from remsim_supervisor.config import GpioSpec, ModemConfig

if TYPE_CHECKING:
    from remsim_supervisor.vendors.base import ModemProfile

log = logging.getLogger(__name__)

DEFAULT_PULSE_MS = 300  # a reset pulse when neither the section nor the model names one


def sim_level(cfg: ModemConfig, remote: bool) -> bool:
    """The logical SIM-line level that selects the remote (True) or local SIM."""
    return remote if cfg.sim_remote_value == 1 else not remote


def is_remote(cfg: ModemConfig, level: bool) -> bool:
    return level if cfg.sim_remote_value == 1 else not level


def reset_pulse_ms(cfg: ModemConfig, profile: ModemProfile | None) -> int:
    """The reset pulse's width: the section's ``reset_pulse_ms``, else the model's, else 300."""
    if cfg.reset_pulse_ms:
        return cfg.reset_pulse_ms
    return (profile.timings.reset_pulse_ms if profile else None) or DEFAULT_PULSE_MS


def hold_local(cfg: ModemConfig, line: Line) -> bool:
    """Drive ``cfg``'s SIM line to its local SIM; True if it was elsewhere.

    For the IoT modem, at start and after every reset: it only ever runs on
    its own SIM, whatever flipped the line meanwhile.
    """
    if not settle_levels({"sim": line}, {"sim": sim_level(cfg, remote=False)}):
        return False
    log.warning(
        "%s (%s): SIM line %s was on the remote SIM; back on the local SIM",
        cfg.name,
        cfg.role,
        cfg.sim_gpio,
    )
    return True


@dataclass
class ModemLines:
    sim: Line | None = None
    reset: Line | None = None
    power: Line | None = None

    def release(self) -> None:
        for line in (self.sim, self.reset, self.power):
            if line is not None:
                try:
                    line.release()
                except Exception as exc:  # releasing must never stop a shutdown
                    log.debug("releasing %s: %s", line.spec, exc)

    @property
    def capabilities(self) -> frozenset[str]:
        caps = set()
        if self.reset is not None:
            caps.add("reset_gpio")
        if self.power is not None:
            caps.add("power_gpio")
        return frozenset(caps)


def _open(
    cfg: ModemConfig,
    what: str,
    spec: GpioSpec | None,
    active_low: bool,
    initial: bool | None,
    quiet: bool = False,
) -> Line | None:
    if spec is None:
        return None
    try:
        return open_line(
            spec, active_low=active_low, initial=initial, consumer=f"remsim-supervisor {cfg.name}"
        )
    except GpioError as exc:
        if not quiet:
            log.error("%s (%s): %s_gpio not available: %s", cfg.name, cfg.role, what, exc)
        return None


def _wanted(cfg: ModemConfig) -> dict[str, tuple[GpioSpec | None, bool, bool | None]]:
    sim_initial = sim_level(cfg, remote=False) if cfg.role == "iot" else None
    return {
        "sim": (cfg.sim_gpio, cfg.sim_active_low, sim_initial),
        "reset": (cfg.reset_gpio, cfg.reset_active_low, False),
        "power": (cfg.power_gpio, cfg.power_active_low, True),
    }


def missing_lines(cfg: ModemConfig, lines: ModemLines) -> list[str]:
    """The configured lines the daemon could not get (busy, not there yet)."""
    return [what for what, (spec, _low, _init) in _wanted(cfg).items()
            if spec is not None and getattr(lines, what) is None]


def fill_missing(cfg: ModemConfig, lines: ModemLines) -> list[str]:
    """Try the missing lines again (another program held one a moment ago); what is missing."""
    for what in missing_lines(cfg, lines):
        spec, active_low, initial = _wanted(cfg)[what]
        line = _open(cfg, what, spec, active_low, initial, quiet=True)
        if line is not None:
            setattr(lines, what, line)
            log.info("%s (%s): %s_gpio %s is available now", cfg.name, cfg.role, what, spec)
    return missing_lines(cfg, lines)


def open_modem_lines(cfg: ModemConfig) -> ModemLines:
    lines = ModemLines(**{what: _open(cfg, what, spec, low, initial)
                          for what, (spec, low, initial) in _wanted(cfg).items()})
    if lines.sim is not None and cfg.role == "iot":
        log.info("%s (iot): SIM line %s held on the local SIM", cfg.name, cfg.sim_gpio)
    return lines
