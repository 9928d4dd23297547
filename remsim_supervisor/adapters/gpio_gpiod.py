"""The gpiod GPIO backend: the character device through the libgpiod v2 Python bindings.

The default for ``gpiochip0:21`` and line names such as ``5g2``, using only
what both OpenWrt 24.10's 2.1.3 and the newest release offer. A name is
looked up on every ``/dev/gpiochip*``. A line held by another program is
refused with the holder's name (and, when it is a sysfs or device-tree
export, how to use that instead). ``gpiod`` is imported on first use: a
router that only has sysfs never pays for it. :class:`Fallback` tells the
caller that sysfs may still serve a name this backend cannot.
"""

from __future__ import annotations

import errno
import importlib
import re
from pathlib import Path
from types import ModuleType
from typing import Any

from remsim_supervisor.adapters.gpio_line import Fallback, GpioError, LineBase
from remsim_supervisor.adapters.gpio_sysfs import gpio_class, sysfs_hint
from remsim_supervisor.config import GpioSpec


def _import_gpiod(spec: GpioSpec, sysfs_root: str) -> ModuleType:
    try:
        gpiod = importlib.import_module("gpiod")
    except ImportError:
        raise GpioError(
            "gpiod (libgpiod v2 Python bindings) is not installed: opkg install python3-gpiod, "
            f"or use {sysfs_hint(spec, sysfs_root)}") from None
    if not hasattr(gpiod, "request_lines") or not hasattr(gpiod, "LineSettings"):
        # OpenWrt 23.05's python3-gpiod 1.6.x has the v1 API (gpiod.chip, line.request)
        version = getattr(gpiod, "__version__", "1.x")
        raise GpioError(
            f"gpiod {version} has the libgpiod v1 API; install the v2 bindings "
            f"(python3-gpiod of OpenWrt 24.10 or later), or use {sysfs_hint(spec, sysfs_root)}")
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
                f"{sysfs_hint(spec, sysfs_root)}")
    elif consumer and re.fullmatch(r"[A-Za-z0-9_.-]+", consumer) and (
            gpio_class(sysfs_root) / consumer).is_dir():
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


def open_gpiod(spec: GpioSpec, active_low: bool, initial: bool | None, consumer: str,
                dev_root: str, sysfs_root: str, *, fallback: bool) -> GpiodLine:
    try:
        gpiod = _import_gpiod(spec, sysfs_root)
    except GpioError as exc:
        if fallback:
            raise Fallback(str(exc)) from None
        raise
    name = spec.name or ""
    if spec.kind == "name":
        found, unsearched = _locate_name(gpiod, name, dev_root)
        if not found:
            if fallback:
                raise Fallback(name)
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
                raise Fallback(name)
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


class GpiodLine(LineBase):
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
