"""GPIO lines: the SIM switch, reset and power lines of the modems.

:func:`open_line` turns a configured :class:`~remsim_supervisor.config.GpioSpec`
into a :class:`Line` that speaks *logical* levels (``active_low`` applied):
``set(True)`` asserts the line (reset held, power on, remote SIM selected when
so configured), ``get()`` reads it back, ``release()`` lets it go.

Three backends, one interface:

* **gpiod** (default for ``gpiochip0:21`` and line names such as ``5g2``):
  the character device through the libgpiod v2 Python bindings, using only
  what both OpenWrt 24.10's 2.1.3 and the newest release offer. A name is
  looked up on every ``/dev/gpiochip*``. A line held by another program is
  refused with the holder's name. ``gpiod`` is imported on first use: a
  router that only has sysfs never pays for it.
* **sysfs** (``sysfs:21``, and a name a device tree already exported as
  ``/sys/class/gpio/<name>`` when no chip offers that name or the export
  holds it): legacy ``/sys/class/gpio``. Exports the number if needed (and
  unexports on release only what it exported), writes ``active_low``, and
  sets direction and first level in one write (``high``/``low``) so an
  output never glitches through the wrong level.
* **sim** (``sim:NAME``): :class:`SimGpio`, a directory of one file per line
  shared with modem emulators in other processes, with an ``events`` log and
  observers (:meth:`SimGpio.watch`, :class:`ResetWatcher`) for the lab.

``initial=None`` keeps whatever level the line has, so a supervisor that
procd restarts never pulses a power or SIM line on its way up.

:func:`pulse` and :func:`power_cycle` are the two timed operations; their
sleep is injectable and the line is always put back in its resting level,
even when the task is cancelled: a modem is never left in reset or unpowered.

Every failure is a :class:`GpioError` whose text says what to fix.
"""

from __future__ import annotations

import asyncio
import errno
import importlib
import logging
import os
import re
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any, NamedTuple, Protocol, Self

from remsim_supervisor.config import GpioSpec
from remsim_supervisor.adapters.serialport import pid_alive

__all__ = [
    "BACKENDS",
    "SIM_GPIO_ENV",
    "GpioError",
    "GpiodLine",
    "Line",
    "ResetWatcher",
    "SimEvent",
    "SimGpio",
    "SimLine",
    "SimWatch",
    "SysfsLine",
    "open_line",
    "power_cycle",
    "pulse",
]

log = logging.getLogger(__name__)

BACKENDS = ("gpiod", "sysfs", "sim")
SIM_GPIO_ENV = "REMSIM_SUPERVISOR_SIM_GPIO"

Sleep = Callable[[float], Awaitable[object]]
SysfsWrite = Callable[[str, str], None]


class GpioError(Exception):
    """A line cannot be opened or driven; the message says what to fix."""


class _Fallback(GpioError):
    """The gpiod backend cannot serve a name that sysfs may still offer."""


class Line(Protocol):
    """An output line driven at logical levels (``active_low`` applied)."""

    spec: GpioSpec
    active_low: bool

    def set(self, active: bool) -> None: ...

    def get(self) -> bool: ...

    def release(self) -> None: ...


class _LineBase:
    """Context-manager plumbing shared by the backends."""

    spec: GpioSpec
    active_low: bool

    def release(self) -> None:  # pragma: no cover - every backend overrides it
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


# --- opening ----------------------------------------------------------------------------------

def open_line(
    spec: GpioSpec,
    *,
    active_low: bool = False,
    initial: bool | None = None,
    consumer: str = "remsim-supervisor",
    backend: str | None = None,
    sysfs_root: str = "/sys",
    dev_root: str = "/dev",
    sim: SimGpio | None = None,
    sysfs_write: SysfsWrite | None = None,
) -> Line:
    """Request ``spec`` as an output and return it.

    ``initial`` is the logical level to drive from the first instant; None
    keeps the line's present level. ``backend`` forces one of
    :data:`BACKENDS` (None: chosen by ``spec.kind``). ``sysfs_write`` writes
    one sysfs attribute (tests substitute a fake kernel); ``sim`` is the
    simulated bank (None: from ``$REMSIM_SUPERVISOR_SIM_GPIO``).
    """
    if backend is not None and backend not in BACKENDS:
        raise ValueError(f"unknown GPIO backend {backend!r}: use one of {', '.join(BACKENDS)}")
    write = sysfs_write or _sysfs_write
    chosen = backend or {"chip": "gpiod", "name": "gpiod", "sysfs": "sysfs", "sim": "sim"}.get(
        spec.kind)
    if chosen is None:
        raise GpioError(f"{spec}: unknown GPIO kind {spec.kind!r}")
    if chosen == "sim":
        return _open_sim(spec, sim, active_low, initial, consumer)
    if chosen == "sysfs":
        return _open_sysfs(spec, active_low, initial, sysfs_root, write)
    if spec.kind not in ("chip", "name"):
        raise GpioError(f"{spec}: the gpiod backend needs gpiochipN:OFFSET or a line name")
    # A device tree's gpio-export (OpenWrt's ZBT-Z8102AX names sim1, 5g1, ...)
    # shows a name only under /sys/class/gpio and holds the chip line itself.
    exported = (spec.kind == "name" and backend is None and spec.name is not None
                and (_gpio_class(sysfs_root) / spec.name).is_dir())
    try:
        return _open_gpiod(spec, active_low, initial, consumer, dev_root, sysfs_root,
                           fallback=exported)
    except _Fallback:
        return _open_sysfs(spec, active_low, initial, sysfs_root, write)


# --- gpiod: libgpiod v2 over the character device ---------------------------------------------

def _import_gpiod(spec: GpioSpec, sysfs_root: str) -> ModuleType:
    try:
        gpiod = importlib.import_module("gpiod")
    except ImportError:
        raise GpioError(
            "gpiod (libgpiod v2 Python bindings) is not installed: opkg install python3-gpiod, "
            f"or use {_sysfs_hint(spec, sysfs_root)}") from None
    if not hasattr(gpiod, "request_lines") or not hasattr(gpiod, "LineSettings"):
        # OpenWrt 23.05's python3-gpiod 1.6.x has the v1 API (gpiod.chip, line.request)
        version = getattr(gpiod, "__version__", "1.x")
        raise GpioError(
            f"gpiod {version} has the libgpiod v1 API; install the v2 bindings "
            f"(python3-gpiod of OpenWrt 24.10 or later), or use {_sysfs_hint(spec, sysfs_root)}")
    return gpiod


def _chip_paths(dev_root: str) -> list[str]:
    def number(path: Path) -> tuple[int, str]:
        digits = path.name[len("gpiochip"):]
        return (int(digits) if digits.isdigit() else 1 << 30, path.name)
    return [str(p) for p in sorted(Path(dev_root).glob("gpiochip*"), key=number)]


def _chip_path(spec: GpioSpec, dev_root: str) -> str:
    chip = spec.chip or ""
    if chip.startswith("/dev/"):
        return str(Path(dev_root, chip[len("/dev/"):]))
    if chip.startswith("/"):
        return chip
    return str(Path(dev_root, chip))


def _open_chip(gpiod: ModuleType, path: str, dev_root: str) -> Any:
    try:
        return gpiod.Chip(path)
    except FileNotFoundError:
        chips = ", ".join(Path(p).name for p in _chip_paths(dev_root)) or "none"
        raise GpioError(f"no GPIO chip {path} (chips here: {chips})") from None
    except PermissionError:
        raise GpioError(f"cannot open {path}: permission denied: run as root") from None
    except OSError as exc:
        if exc.errno in (errno.ENOTTY, errno.ENODEV):
            raise GpioError(f"{path} is not a GPIO chip") from None
        raise GpioError(f"cannot open {path}: {exc.strerror or exc}") from None


def _busy(what: str, consumer: str, sysfs_root: str, spec: GpioSpec) -> GpioError:
    holder = f"consumer '{consumer}'" if consumer else "the kernel (no consumer name)"
    hint = ""
    if consumer == "sysfs":
        hint = (f"; it is exported under /sys/class/gpio: unexport it, or use "
                f"{_sysfs_hint(spec, sysfs_root)}")
    elif consumer and re.fullmatch(r"[A-Za-z0-9_.-]+", consumer) and (
            _gpio_class(sysfs_root) / consumer).is_dir():
        hint = (f"; the device tree exports it as /sys/class/gpio/{consumer}: "
                f"configure '{consumer}' to use that export")
    return GpioError(f"{what} is busy: held by {holder}{hint}")


def _locate_name(gpiod: ModuleType, name: str,
                 dev_root: str) -> tuple[list[tuple[str, int]], list[str]]:
    """Every (chip path, offset) whose line is called ``name``, and the chips
    that could not be searched (with why)."""
    found: list[tuple[str, int]] = []
    unsearched: list[str] = []
    for path in _chip_paths(dev_root):
        try:
            chip = gpiod.Chip(path)
        except OSError as exc:
            unsearched.append(f"{Path(path).name}: {exc.strerror or exc}")
            continue
        with chip:
            try:
                found.append((path, chip.line_offset_from_id(name)))
            except OSError as exc:
                if exc.errno != errno.ENOENT:
                    raise GpioError(f"looking for line '{name}' on {path}: "
                                    f"{exc.strerror or exc}") from None
    return found, unsearched


def _open_gpiod(spec: GpioSpec, active_low: bool, initial: bool | None, consumer: str,
                dev_root: str, sysfs_root: str, *, fallback: bool) -> GpiodLine:
    try:
        gpiod = _import_gpiod(spec, sysfs_root)
    except GpioError as exc:
        if fallback:
            raise _Fallback(str(exc)) from None
        raise
    name = spec.name or ""
    if spec.kind == "name":
        found, unsearched = _locate_name(gpiod, name, dev_root)
        if not found:
            if fallback:
                raise _Fallback(name)
            searched = ", ".join(Path(p).name for p in _chip_paths(dev_root)) or "no chips"
            skipped = f"; could not search {'; '.join(unsearched)}" if unsearched else ""
            raise GpioError(f"no GPIO line named '{name}' on any chip (searched {searched}) "
                            f"and no /sys/class/gpio/{name} export{skipped}")
        if len(found) > 1:
            places = ", ".join(f"{Path(p).name}:{o}" for p, o in found)
            raise GpioError(f"line name '{name}' is ambiguous ({places}): "
                            f"configure CHIP:OFFSET instead")
        path, offset = found[0]
        what = f"'{name}' ({Path(path).name}:{offset})"
    else:
        path, offset = _chip_path(spec, dev_root), spec.offset or 0
        what = spec.text

    with _open_chip(gpiod, path, dev_root) as chip:
        lines = chip.get_info().num_lines
        if offset >= lines:
            raise GpioError(f"{Path(path).name} has {lines} lines (0-{lines - 1}): "
                            f"there is no offset {offset}")
        info = chip.get_line_info(offset)
        if info.used:
            if fallback:
                raise _Fallback(name)
            raise _busy(what, info.consumer, sysfs_root, spec)

    Direction, Value = gpiod.line.Direction, gpiod.line.Value
    try:
        if initial is None:
            # As-is first, so the present level can be read and then kept.
            request = gpiod.request_lines(path, consumer=consumer, config={
                offset: gpiod.LineSettings(direction=Direction.AS_IS, active_low=active_low)})
        else:
            request = gpiod.request_lines(path, consumer=consumer, config={
                offset: gpiod.LineSettings(direction=Direction.OUTPUT, active_low=active_low,
                                           output_value=_value(Value, initial))})
    except OSError as exc:
        if exc.errno == errno.EBUSY:
            # Taken between the check and the request: name the new holder.
            with _open_chip(gpiod, path, dev_root) as chip:
                holder = chip.get_line_info(offset).consumer
            raise _busy(what, holder, sysfs_root, spec) from None
        raise GpioError(f"cannot request {what}: {exc.strerror or exc}") from None
    try:
        if initial is None:
            # Value has no __bool__ in gpiod 2.1.3 (INACTIVE is truthy): compare.
            level = request.get_value(offset) == Value.ACTIVE
            request.reconfigure_lines({offset: gpiod.LineSettings(
                direction=Direction.OUTPUT, active_low=active_low,
                output_value=_value(Value, level))})
    except OSError as exc:
        request.release()
        raise GpioError(f"cannot make {what} an output: {exc.strerror or exc}") from None
    return GpiodLine(spec, active_low, path, offset, request, Value)


def _value(value_enum: Any, active: bool) -> Any:
    return value_enum.ACTIVE if active else value_enum.INACTIVE


class GpiodLine(_LineBase):
    """A line held through a libgpiod v2 line request."""

    def __init__(self, spec: GpioSpec, active_low: bool, chip_path: str, offset: int,
                 request: Any, value_enum: Any) -> None:
        self.spec = spec
        self.active_low = active_low
        self.chip_path = chip_path
        self.offset = offset
        self._request: Any = request
        self._value = value_enum

    def _live(self) -> Any:
        if self._request is None:
            raise GpioError(f"{self.spec} was released")
        return self._request

    def set(self, active: bool) -> None:
        try:
            self._live().set_value(self.offset, _value(self._value, active))
        except OSError as exc:
            raise GpioError(f"cannot set {self.spec}: {exc.strerror or exc}") from None

    def get(self) -> bool:
        try:
            return bool(self._live().get_value(self.offset) == self._value.ACTIVE)
        except OSError as exc:
            raise GpioError(f"cannot read {self.spec}: {exc.strerror or exc}") from None

    def release(self) -> None:
        if self._request is not None:
            request, self._request = self._request, None
            request.release()

    def __repr__(self) -> str:
        return f"GpiodLine({self.spec.text!r}, {self.chip_path}:{self.offset})"


# --- sysfs: the legacy /sys/class/gpio interface ----------------------------------------------

def _gpio_class(sysfs_root: str) -> Path:
    return Path(sysfs_root, "class", "gpio")


def _sysfs_write(path: str, text: str) -> None:
    # One write(2): sysfs attributes take a whole value per call.
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _sysfs_base(chip: str, sysfs_root: str) -> int | None:
    """The global number of line 0 of ``chip`` (gpiochipN), if sysfs tells it.

    /sys/class/gpio/gpiochip<base> sits in <parent>/gpio/, beside the chip's
    own <parent>/gpiochipN device (or inside it when the chip has no parent).
    """
    name = Path(chip).name
    bases: set[int] = set()
    for entry in _gpio_class(sysfs_root).glob("gpiochip*"):
        real = entry.resolve()
        owner = real.parent.parent
        if owner.name == name or (owner / name).is_dir():
            try:
                bases.add(int((entry / "base").read_text().strip()))
            except (OSError, ValueError):
                continue
    # Two chips of one parent device cannot be told apart this way.
    return bases.pop() if len(bases) == 1 else None


def _sysfs_hint(spec: GpioSpec, sysfs_root: str) -> str:
    if spec.kind == "chip" and spec.chip is not None and spec.offset is not None:
        base = _sysfs_base(spec.chip, sysfs_root)
        if base is not None:
            return f"sysfs:{base + spec.offset}"
    return "sysfs:N"


def _sysfs_ranges(sysfs_root: str) -> str:
    ranges = []
    for entry in sorted(_gpio_class(sysfs_root).glob("gpiochip*")):
        try:
            base = int((entry / "base").read_text())
            count = int((entry / "ngpio").read_text())
        except (OSError, ValueError):
            continue
        ranges.append(f"{base}-{base + count - 1}")
    return ", ".join(ranges) or "none listed"


def _open_sysfs(spec: GpioSpec, active_low: bool, initial: bool | None, sysfs_root: str,
                write: SysfsWrite) -> SysfsLine:
    klass = _gpio_class(sysfs_root)
    number: int | None = None
    if spec.kind == "name":
        directory = klass / (spec.name or "")
        if not directory.is_dir():
            raise GpioError(f"no GPIO line named '{spec.name}' in /sys/class/gpio")
    else:
        if spec.kind == "sysfs":
            number = spec.offset
        elif spec.kind == "chip" and spec.chip is not None and spec.offset is not None:
            base = _sysfs_base(spec.chip, sysfs_root)
            if base is None:
                raise GpioError(f"{spec}: sysfs does not say which numbers {spec.chip} has: "
                                f"use sysfs:N (see /sys/kernel/debug/gpio)")
            number = base + spec.offset
        if number is None:
            raise GpioError(f"{spec}: the sysfs backend needs sysfs:N, CHIP:OFFSET or a name")
        if not klass.is_dir():
            raise GpioError("legacy sysfs GPIO is not available (no /sys/class/gpio: kernel "
                            "without CONFIG_GPIO_SYSFS): use gpiochipN:OFFSET")
        directory = klass / f"gpio{number}"
    return SysfsLine(spec, active_low, initial, directory, number, write)


class SysfsLine(_LineBase):
    """A line driven through /sys/class/gpio/<gpioN or name>/value."""

    def __init__(self, spec: GpioSpec, active_low: bool, initial: bool | None,
                 directory: Path, number: int | None, write: SysfsWrite) -> None:
        self.spec = spec
        self.active_low = active_low
        self.directory = directory
        self._number = number
        self._write = write
        self._exported = False
        self._released = False
        if not directory.is_dir():
            self._export()
        try:
            self._configure(initial)
        except GpioError:
            self.release()
            raise

    def _attr(self, name: str, text: str) -> None:
        path = self.directory / name
        try:
            self._write(str(path), text)
        except PermissionError:
            raise GpioError(f"cannot write {path}: permission denied: run as root") from None
        except OSError as exc:
            raise GpioError(f"{self.spec}: writing {text!r} to {path}: "
                            f"{exc.strerror or exc}") from None

    def _read(self, name: str) -> str:
        path = self.directory / name
        try:
            return path.read_text().strip()
        except OSError as exc:
            raise GpioError(f"{self.spec}: reading {path}: {exc.strerror or exc}") from None

    def _export(self) -> None:
        klass = self.directory.parent
        n = self._number
        try:
            self._write(str(klass / "export"), str(n))
        except PermissionError:
            raise GpioError(f"cannot export GPIO {n}: permission denied: run as root") from None
        except OSError as exc:
            if exc.errno == errno.EBUSY:
                raise GpioError(f"{self.spec} is busy: the kernel refused to export GPIO {n} "
                                f"(a driver or another program holds it; see "
                                f"/sys/kernel/debug/gpio)") from None
            if exc.errno == errno.EINVAL:
                raise GpioError(f"no GPIO number {n}: the chips here cover "
                                f"{_sysfs_ranges(str(klass.parent.parent))}") from None
            raise GpioError(f"cannot export GPIO {n}: {exc.strerror or exc}") from None
        self._exported = True
        if not self.directory.is_dir():
            raise GpioError(f"exporting GPIO {n} did not create {self.directory}")

    def _configure(self, initial: bool | None) -> None:
        if (self.directory / "active_low").exists():
            # The value attribute then reads and writes logical levels.
            self._attr("active_low", "1" if self.active_low else "0")
        elif self.active_low:
            raise GpioError(f"{self.spec}: {self.directory} has no active_low attribute")
        direction = self.directory / "direction"
        if not direction.exists():
            # An export without direction_may_change: fixed, usually an output.
            if initial is not None:
                self.set(initial)
            return
        if initial is None:
            if self._read("direction") == "out":
                return
            initial = self.get()
        # "high"/"low" set direction and raw level in one step (no glitch).
        self._attr("direction", "high" if initial != self.active_low else "low")

    def set(self, active: bool) -> None:
        self._check()
        self._attr("value", "1" if active else "0")

    def get(self) -> bool:
        self._check()
        return self._read("value") == "1"

    def _check(self) -> None:
        if self._released:
            raise GpioError(f"{self.spec} was released")

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        if self._exported:
            # Only what this line exported goes back; a device tree's exports stay.
            try:
                self._write(str(self.directory.parent / "unexport"), str(self._number))
            except OSError as exc:
                log.warning("unexporting GPIO %s: %s", self._number, exc)

    def __repr__(self) -> str:
        return f"SysfsLine({self.spec.text!r}, {self.directory})"


# --- sim: simulated lines shared through a directory ------------------------------------------

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
            root = os.environ.get(SIM_GPIO_ENV) or None
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
        out = [e for e in map(_parse_event, text.splitlines()) if e is not None]
        return [e for e in out if line is None or e.line == line]

    def watch(self, line: str | None, callback: Callable[[SimEvent], object],
              poll_s: float = 0.01) -> SimWatch:
        """Call ``callback`` with each later change of ``line`` (None: every line),
        from a polling thread; returns a handle with ``stop()``."""
        return SimWatch(self, line, callback, poll_s)

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


def _parse_event(text: str) -> SimEvent | None:
    parts = text.split()
    if len(parts) != 3 or not parts[0].isdigit() or parts[2] not in ("0", "1"):
        return None
    return SimEvent(int(parts[0]), parts[1], int(parts[2]))


class SimWatch:
    """Tails ``events`` for one line (or all) and calls back in a thread.

    Starts at the end of the log: only changes after construction count.
    ``poll()`` delivers what is pending right now, from the caller's thread;
    ``stop()`` ends the thread after a last ``poll()``.
    """

    def __init__(self, sim: SimGpio, line: str | None, callback: Callable[[SimEvent], object],
                 poll_s: float) -> None:
        self._sim, self._line, self._callback = sim, line, callback
        self._poll_s = poll_s
        self._lock = threading.Lock()
        try:
            self._offset = sim.events_path.stat().st_size
        except FileNotFoundError:
            self._offset = 0
        self._partial = b""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"sim-gpio-watch-{line}",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._poll_s):
            self.poll()

    def poll(self) -> int:
        with self._lock:
            try:
                with open(self._sim.events_path, "rb") as f:
                    size = os.fstat(f.fileno()).st_size
                    if size < self._offset:  # the log was started afresh
                        self._offset, self._partial = 0, b""
                    f.seek(self._offset)
                    data = f.read()
            except FileNotFoundError:
                return 0
            self._offset += len(data)
            *complete, self._partial = (self._partial + data).split(b"\n")
            delivered = 0
            for raw in complete:
                event = _parse_event(raw.decode(errors="replace"))
                if event is None or (self._line is not None and event.line != self._line):
                    continue
                try:
                    self._callback(event)
                except Exception:  # an observer's bug must not end the watch
                    log.exception("simulated GPIO observer failed on %s", event)
                delivered += 1
            return delivered

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join()
        self.poll()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


class ResetWatcher:
    """Calls ``on_reset()`` each time a simulated line left its resting level and came back.

    ``kind="reset"``: a reset line rests inactive, so a pulse is active then
    inactive. ``kind="power"``: a power line rests active, so a power cycle
    is inactive then active. ``active_low`` maps logical to physical levels as
    the supervisor's configuration does. Excursions shorter than ``min_ms``
    are ignored, as a modem ignores a pulse too short for its reset pin.
    ``count`` and ``durations_ms`` record what was seen.
    """

    def __init__(self, sim: SimGpio, line: str, on_reset: Callable[[], object], *,
                 active_low: bool = False, kind: str = "reset", min_ms: float = 0.0,
                 poll_s: float = 0.01) -> None:
        if kind not in ("reset", "power"):
            raise ValueError(f"kind must be 'reset' or 'power', not {kind!r}")
        self.line = line
        self.kind = kind
        self.count = 0
        self.durations_ms: list[float] = []
        self._on_reset = on_reset
        self._min_ms = min_ms
        rest_logical = kind == "power"
        self._rest = 1 if rest_logical != active_low else 0
        self._left_at: int | None = None
        self._watch = sim.watch(line, self._event, poll_s)

    def _event(self, event: SimEvent) -> None:
        if event.level != self._rest:
            if self._left_at is None:
                self._left_at = event.at_ns
            return
        if self._left_at is None:
            return
        duration_ms = (event.at_ns - self._left_at) / 1e6
        self._left_at = None
        if duration_ms < self._min_ms:
            log.info("sim:%s: %.1f ms %s ignored (shorter than %.1f ms)", self.line,
                     duration_ms, "pulse" if self.kind == "reset" else "power cut",
                     self._min_ms)
            return
        self.count += 1
        self.durations_ms.append(duration_ms)
        self._on_reset()

    def poll(self) -> int:
        return self._watch.poll()

    def stop(self) -> None:
        self._watch.stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def _sim_name(spec: GpioSpec) -> str:
    if spec.kind == "sim" or spec.kind == "name":
        return spec.name or ""
    if spec.kind == "chip":
        return f"{Path(spec.chip or 'chip').name}-{spec.offset}"
    return f"sysfs-{spec.offset}"


def _open_sim(spec: GpioSpec, sim: SimGpio | None, active_low: bool, initial: bool | None,
              consumer: str) -> SimLine:
    bank = sim if sim is not None else SimGpio()
    return SimLine(spec, bank, _sim_name(spec), active_low, initial, consumer)


class SimLine(_LineBase):
    """A line of a :class:`SimGpio`, held (claimed) while open."""

    def __init__(self, spec: GpioSpec, sim: SimGpio, name: str, active_low: bool,
                 initial: bool | None, consumer: str) -> None:
        self.spec = spec
        self.active_low = active_low
        self.sim = sim
        self.name = name
        sim.claim(name, consumer)
        self._released = False
        if initial is not None:
            self.set(initial)
        elif sim.level(name, default=-1) == -1:
            self.set(False)  # a line nobody drove yet starts inactive

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


# --- timed operations ---------------------------------------------------------------------------

async def pulse(line: Line, ms: int, *, sleep: Sleep = asyncio.sleep) -> None:
    """Assert ``line`` for ``ms`` milliseconds, then release it to inactive.

    The line goes back to inactive even if the task is cancelled mid-pulse: a
    modem held in reset is worse than a pulse cut short.
    """
    if ms <= 0:
        raise ValueError(f"a pulse needs a positive width, not {ms} ms")
    line.set(True)
    try:
        await sleep(ms / 1000)
    finally:
        line.set(False)


async def power_cycle(line: Line, off_ms: int, *, sleep: Sleep = asyncio.sleep) -> None:
    """Drive a power-enable ``line`` inactive for ``off_ms``, then active again.

    Power comes back even if the task is cancelled: never leave a modem off.
    """
    if off_ms <= 0:
        raise ValueError(f"a power cycle needs a positive off time, not {off_ms} ms")
    line.set(False)
    try:
        await sleep(off_ms / 1000)
    finally:
        line.set(True)
