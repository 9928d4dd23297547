"""The sysfs GPIO backend: the legacy ``/sys/class/gpio`` interface.

Used for ``sysfs:N``, and for a name a device tree already exported as
``/sys/class/gpio/<name>`` when no chip offers that name or the export holds
it. Exports the number if needed (and unexports on release only what it
exported), writes ``active_low``, and sets direction and first level in one
write (``high``/``low``) so an output never glitches through the wrong level.
Writes go through an injectable ``write(path, text)`` so tests can stand in
for the kernel.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Callable
from pathlib import Path

from remsim_supervisor.adapters.gpio_line import GpioError, LineBase
from remsim_supervisor.config import GpioSpec

log = logging.getLogger(__name__)

SysfsWrite = Callable[[str, str], None]


def gpio_class(sysfs_root: str) -> Path:
    return Path(sysfs_root, "class", "gpio")


def sysfs_write(path: str, text: str) -> None:
    # One write(2): sysfs attributes take a whole value per call.
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def sysfs_base(chip: str, sysfs_root: str) -> int | None:
    """The global number of line 0 of ``chip`` (gpiochipN), if sysfs tells it.

    /sys/class/gpio/gpiochip<base> sits in <parent>/gpio/, beside the chip's
    own <parent>/gpiochipN device (or inside it when the chip has no parent).
    """
    name = Path(chip).name
    bases: set[int] = set()
    for entry in gpio_class(sysfs_root).glob("gpiochip*"):
        real = entry.resolve()
        owner = real.parent.parent
        if owner.name == name or (owner / name).is_dir():
            try:
                bases.add(int((entry / "base").read_text().strip()))
            except (OSError, ValueError):
                continue
    # Two chips of one parent device cannot be told apart this way.
    return bases.pop() if len(bases) == 1 else None


def sysfs_hint(spec: GpioSpec, sysfs_root: str) -> str:
    if spec.kind == "chip" and spec.chip is not None and spec.offset is not None:
        base = sysfs_base(spec.chip, sysfs_root)
        if base is not None:
            return f"sysfs:{base + spec.offset}"
    return "sysfs:N"


def sysfs_ranges(sysfs_root: str) -> str:
    ranges = []
    for entry in sorted(gpio_class(sysfs_root).glob("gpiochip*")):
        try:
            base = int((entry / "base").read_text())
            count = int((entry / "ngpio").read_text())
        except (OSError, ValueError):
            continue
        ranges.append(f"{base}-{base + count - 1}")
    return ", ".join(ranges) or "none listed"


def open_sysfs(spec: GpioSpec, active_low: bool, initial: bool | None, sysfs_root: str,
                write: SysfsWrite) -> SysfsLine:
    klass = gpio_class(sysfs_root)
    number: int | None = None
    if spec.kind == "name":
        directory = klass / (spec.name or "")
        if not directory.is_dir():
            raise GpioError(f"no GPIO line named '{spec.name}' in /sys/class/gpio")
    else:
        if spec.kind == "sysfs":
            number = spec.offset
        elif spec.kind == "chip" and spec.chip is not None and spec.offset is not None:
            base = sysfs_base(spec.chip, sysfs_root)
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


class SysfsLine(LineBase):
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
                                f"{sysfs_ranges(str(klass.parent.parent))}") from None
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
