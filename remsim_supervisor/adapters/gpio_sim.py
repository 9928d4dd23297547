"""The simulated GPIO backend (``sim:NAME``): lines in a directory shared between processes.

:class:`SimGpio` is the stand-in the lab and the tests use behind the same
:class:`~remsim_supervisor.adapters.gpio_line.Line` interface: one file per
line holding its physical level, an ``events`` log with one record per
change (read by the lab's observers, see ``remsim_lab.gpiowatch``), and an
owner mark per held line so two holders are refused as on a real chip.
The directory comes from ``$REMSIM_SUPERVISOR_SIM_GPIO`` unless given.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from remsim_supervisor.adapters.gpio_line import GpioError, LineBase
from remsim_supervisor.adapters.serialport import pid_alive
from remsim_supervisor.config import GpioSpec
from remsim_supervisor.config.env import SIM_GPIO as SIM_GPIO_ENV
from remsim_supervisor.config.env import Environment
from remsim_supervisor.core.gpiolevels import level_write


class SimEvent(NamedTuple):
    """One change of a simulated line: when (CLOCK_MONOTONIC ns), which, new physical level."""

    at_ns: int
    line: str
    level: int


_SIM_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")


class SimGpio:
    """Simulated GPIO lines in a directory, visible to every process on the host.

    ``<root>/<line>`` holds the line's physical level, ``0`` or ``1``,
    replaced atomically (write a temporary file, rename); ``<root>/events``
    gets one ``<monotonic_ns> <line> <0|1>`` line per change, appended in a
    single write so writers in several processes never interleave. Observers
    read the log, not the level files, so even a pulse shorter than their
    polling interval is seen. ``<root>/.<line>.owner`` marks the process
    holding a line as output (like a chip's consumer).
    """

    def __init__(self, root: str | os.PathLike[str] | None = None, *,
                 clock: Callable[[], int] = time.monotonic_ns) -> None:
        if root is None:
            root = Environment.from_environ(os.environ, strict=False).sim_gpio
        if root is None:
            raise GpioError(f"simulated GPIO lines need ${SIM_GPIO_ENV} set to the lab's "
                            f"GPIO directory")
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._clock = clock
        self._lock = threading.Lock()

    @property
    def events_path(self) -> Path:
        return self.root / "events"

    def _path(self, line: str) -> Path:
        if not _SIM_NAME.fullmatch(line) or line == "events":
            raise GpioError(f"invalid simulated line name {line!r}")
        return self.root / line

    def lines(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir()
                      if p.is_file() and p.name != "events" and not p.name.startswith("."))

    def level(self, line: str, default: int | None = None) -> int:
        """The physical level of ``line``; KeyError if it never had one and no default."""
        try:
            return 1 if self._path(line).read_text().strip() == "1" else 0
        except FileNotFoundError:
            if default is None:
                raise KeyError(f"simulated line {line!r} has no level yet") from None
            return default

    def set_level(self, line: str, level: int) -> None:
        """Drive ``line`` to a physical level; logs an event only when it changes."""
        value = 1 if level else 0
        path = self._path(line)
        with self._lock:
            if self.level(line, default=-1) == value:
                return
            tmp = self.root / f".{line}.{os.getpid()}.{threading.get_ident()}.tmp"
            tmp.write_text(str(value))
            os.replace(tmp, path)
            record = f"{self._clock()} {line} {value}\n".encode()
            fd = os.open(self.events_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, record)
            finally:
                os.close(fd)

    def events(self, line: str | None = None) -> list[SimEvent]:
        try:
            text = self.events_path.read_text()
        except FileNotFoundError:
            return []
        out = [e for e in map(parse_event, text.splitlines()) if e is not None]
        return [e for e in out if line is None or e.line == line]

    # owner marks: which process holds a line, so two holders are refused as on a chip

    def _owner_path(self, line: str) -> Path:
        self._path(line)
        return self.root / f".{line}.owner"

    def claim(self, line: str, consumer: str) -> None:
        path = self._owner_path(line)
        mark = f"{os.getpid()} {consumer}\n"
        for _ in range(2):
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                pid, holder = self._owner(path)
                if pid is not None and pid_alive(pid):
                    raise GpioError(f"sim:{line} is busy: held by consumer '{holder}'"
                                    f" (pid {pid})") from None
                path.unlink(missing_ok=True)  # left by a process that died
                continue
            try:
                os.write(fd, mark.encode())
            finally:
                os.close(fd)
            return
        raise GpioError(f"sim:{line}: cannot claim {path}")

    def unclaim(self, line: str) -> None:
        self._owner_path(line).unlink(missing_ok=True)

    @staticmethod
    def _owner(path: Path) -> tuple[int | None, str]:
        try:
            pid_text, _, holder = path.read_text().strip().partition(" ")
            return int(pid_text), holder
        except (OSError, ValueError):
            return None, ""


def parse_event(text: str) -> SimEvent | None:
    parts = text.split()
    if len(parts) != 3 or not parts[0].isdigit() or parts[2] not in ("0", "1"):
        return None
    return SimEvent(int(parts[0]), parts[1], int(parts[2]))


def _sim_name(spec: GpioSpec) -> str:
    if spec.kind == "sim" or spec.kind == "name":
        return spec.name or ""
    if spec.kind == "chip":
        return f"{Path(spec.chip or 'chip').name}-{spec.offset}"
    return f"sysfs-{spec.offset}"


def open_sim(spec: GpioSpec, sim: SimGpio | None, active_low: bool, initial: bool | None,
              consumer: str) -> SimLine:
    bank = sim if sim is not None else SimGpio()
    return SimLine(spec, bank, _sim_name(spec), active_low, initial, consumer)


class SimLine(LineBase):
    """A line of a :class:`SimGpio`, held (claimed) while open."""

    def __init__(self, spec: GpioSpec, sim: SimGpio, name: str, active_low: bool,
                 initial: bool | None, consumer: str) -> None:
        self.spec = spec
        self.active_low = active_low
        self.sim = sim
        self.name = name
        sim.claim(name, consumer)
        self._released = False
        physical = sim.level(name, default=-1)
        current = None if physical == -1 else (physical == 1) != active_low
        # A line nobody drove yet has no level: kept "as it is", it starts inactive.
        write = level_write(initial, current)
        if write is not None:
            self.set(write)

    def set(self, active: bool) -> None:
        if self._released:
            raise GpioError(f"{self.spec} was released")
        self.sim.set_level(self.name, int(active != self.active_low))

    def get(self) -> bool:
        if self._released:
            raise GpioError(f"{self.spec} was released")
        return (self.sim.level(self.name, default=0) == 1) != self.active_low

    def release(self) -> None:
        if not self._released:
            self._released = True
            self.sim.unclaim(self.name)

    def __repr__(self) -> str:
        return f"SimLine({self.spec.text!r}, {self.sim.root / self.name})"
