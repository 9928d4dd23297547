"""GPIO lines: the libgpiod v2 backend against a fake ``gpiod`` module (this
host has no /dev/gpiochip*, no gpio-sim and no configfs), checked against
the real installed bindings so the fake cannot drift; the sysfs backend
against a fake /sys/class/gpio that behaves as the kernel does on writes;
the simulated lines across threads and processes; pulses on no wall clock.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import errno
import functools
import inspect
import os
import subprocess
import sys
import textwrap
import time
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Self

import pytest

from remsim_lab.gpiowatch import ResetWatcher, watch
from remsim_supervisor.adapters import gpio, gpio_sysfs
from remsim_supervisor.adapters.gpio import (
    GpioError,
    SimEvent,
    SimGpio,
    open_line,
    power_cycle,
    pulse,
)
from remsim_supervisor.config import GpioSpec
from tests.paths import REPO

REAL_GPIOD = pytest.importorskip("gpiod")


def spec(text: str) -> GpioSpec:
    return GpioSpec.parse(text)


# --- a fake kernel and a fake gpiod module with the real one's interface -----------------------

@dataclass
class KLine:
    """One line as the kernel holds it: physical level, direction, holder."""

    name: str = ""
    used: bool = False
    consumer: str = ""
    direction: str = "input"
    active_low: bool = False
    physical: int = 0
    changes: list[int] = field(default_factory=list)

    def drive(self, physical: int) -> None:
        if physical != self.physical:
            self.changes.append(physical)
        self.physical = physical


@dataclass
class KChip:
    name: str
    label: str
    lines: list[KLine]
    denied: bool = False  # opening it gives EACCES


class FakeKernel:
    """The GPIO character devices of a machine, as a fake ``gpiod`` sees them."""

    def __init__(self, dev_root: Path) -> None:
        self.dev_root = dev_root
        dev_root.mkdir(parents=True, exist_ok=True)
        self.chips: dict[str, KChip] = {}
        self.before_request: Callable[[KChip, int], None] | None = None

    def add_chip(self, name: str, lines: int | list[str], label: str = "pinctrl") -> KChip:
        names = [""] * lines if isinstance(lines, int) else list(lines)
        chip = KChip(name, label, [KLine(name=n) for n in names])
        self.chips[str(self.dev_root / name)] = chip
        (self.dev_root / name).touch()  # so /dev/gpiochip* globbing finds it
        return chip

    def line(self, chip: str, offset: int) -> KLine:
        return self.chips[str(self.dev_root / chip)].lines[offset]


def build_fake_gpiod(kernel: FakeKernel) -> types.ModuleType:
    """A ``gpiod`` module: the subset the backend uses, under the real names,
    raising what the real bindings raise (OSError with the kernel's errno:
    ENOENT for a missing chip or name, ENOTTY/ENODEV for a non-chip, EBUSY
    for a line another request holds, EACCES without permission).

    Every call is recorded in ``module.calls`` as (qualified name, args,
    kwargs) so a test can replay the signatures against the real module;
    top-level attribute reads are recorded in ``module.attributes``.
    """
    calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
    attributes: set[str] = set()

    def recorded(name: str, *, bound: bool | None = None
                 ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        # Methods and constructors get self first: it is not part of the call.
        has_self = "." in name if bound is None else bound

        def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
            @functools.wraps(fn)
            def inner(*args: Any, **kwargs: Any) -> Any:
                calls.append((name, args[1:] if has_self else args, dict(kwargs)))
                return fn(*args, **kwargs)
            return inner
        return wrap

    line_mod = types.ModuleType("gpiod.line")

    class Value(enum.Enum):  # no __bool__, as in 2.1.3: INACTIVE is truthy
        INACTIVE = 0
        ACTIVE = 1

    class Direction(enum.Enum):
        AS_IS = 1
        INPUT = 2
        OUTPUT = 3

    class Bias(enum.Enum):
        AS_IS = 1
        UNKNOWN = 2
        DISABLED = 3
        PULL_UP = 4
        PULL_DOWN = 5

    class Drive(enum.Enum):
        PUSH_PULL = 1
        OPEN_DRAIN = 2
        OPEN_SOURCE = 3

    class Edge(enum.Enum):
        NONE = 1
        RISING = 2
        FALLING = 3
        BOTH = 4

    class Clock(enum.Enum):
        MONOTONIC = 1
        REALTIME = 2
        HTE = 3

    for cls in (Value, Direction, Bias, Drive, Edge, Clock):
        setattr(line_mod, cls.__name__, cls)

    class ChipClosedError(Exception):
        def __init__(self) -> None:
            super().__init__("I/O operation on closed chip")

    class RequestReleasedError(Exception):
        def __init__(self) -> None:
            super().__init__("GPIO lines have been released")

    @dataclass(frozen=True)
    class ChipInfo:
        name: str
        label: str
        num_lines: int

    @dataclass(frozen=True)
    class LineInfo:
        offset: int
        name: str
        used: bool
        consumer: str
        direction: Direction
        active_low: bool
        bias: Bias
        drive: Drive
        edge_detection: Edge
        event_clock: Clock
        debounced: bool
        debounce_period: timedelta

    @dataclass
    class LineSettings:
        direction: Direction = Direction.AS_IS
        edge_detection: Edge = Edge.NONE
        bias: Bias = Bias.AS_IS
        drive: Drive = Drive.PUSH_PULL
        active_low: bool = False
        debounce_period: timedelta = timedelta()
        event_clock: Clock = Clock.MONOTONIC
        output_value: Value = Value.INACTIVE

    LineSettings.__init__ = recorded(  # type: ignore[method-assign]
        "LineSettings", bound=True)(LineSettings.__init__)

    def apply(kline: KLine, settings: LineSettings) -> None:
        kline.active_low = settings.active_low
        if settings.direction == Direction.OUTPUT:
            kline.direction = "output"
            kline.drive(int((settings.output_value == Value.ACTIVE) != settings.active_low))
        elif settings.direction == Direction.INPUT:
            kline.direction = "input"

    class LineRequest:
        def __init__(self, chip: KChip, offsets: list[int]) -> None:
            self._chip: KChip | None = chip
            self._offsets = offsets

        def _live(self) -> KChip:
            if self._chip is None:
                raise RequestReleasedError()
            return self._chip

        @recorded("LineRequest.set_value")
        def set_value(self, line: int, value: Value) -> None:
            kline = self._live().lines[line]
            kline.drive(int((value == Value.ACTIVE) != kline.active_low))

        @recorded("LineRequest.get_value")
        def get_value(self, line: int) -> Value:
            kline = self._live().lines[line]
            return Value.ACTIVE if (kline.physical == 1) != kline.active_low else Value.INACTIVE

        @recorded("LineRequest.reconfigure_lines")
        def reconfigure_lines(self, config: dict[Any, LineSettings]) -> None:
            chip = self._live()
            for offset, settings in config.items():
                apply(chip.lines[offset], settings or LineSettings())

        @recorded("LineRequest.release")
        def release(self) -> None:
            chip = self._live()
            for offset in self._offsets:  # the kernel keeps the level on release
                chip.lines[offset].used = False
                chip.lines[offset].consumer = ""
            self._chip = None

    class Chip:
        @recorded("Chip", bound=True)
        def __init__(self, path: str) -> None:
            if path not in kernel.chips:
                if not os.path.exists(path):
                    raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT))
                raise OSError(errno.ENOTTY, os.strerror(errno.ENOTTY))
            if kernel.chips[path].denied:
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
            self._chip: KChip | None = kernel.chips[path]
            self._path = path

        def _live(self) -> KChip:
            if self._chip is None:
                raise ChipClosedError()
            return self._chip

        @recorded("Chip.__enter__")
        def __enter__(self) -> Self:
            self._live()
            return self

        @recorded("Chip.__exit__")
        def __exit__(self, *exc: object) -> None:
            self.close()

        @recorded("Chip.close")
        def close(self) -> None:
            self._live()
            self._chip = None

        @recorded("Chip.get_info")
        def get_info(self) -> ChipInfo:
            chip = self._live()
            return ChipInfo(chip.name, chip.label, len(chip.lines))

        @recorded("Chip.line_offset_from_id")
        def line_offset_from_id(self, id: str | int) -> int:
            chip = self._live()
            if not isinstance(id, int):
                for offset, kline in enumerate(chip.lines):
                    if kline.name and kline.name == id:
                        return offset
                try:
                    id = int(id)
                except ValueError:
                    raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT)) from None
            if id >= len(chip.lines):
                raise ValueError("line offset of out range")
            return id

        @recorded("Chip.get_line_info")
        def get_line_info(self, line: int | str) -> LineInfo:
            chip = self._live()
            offset = self.line_offset_from_id(line)
            k = chip.lines[offset]
            return LineInfo(offset, k.name, k.used, k.consumer,
                            Direction.OUTPUT if k.direction == "output" else Direction.INPUT,
                            k.active_low, Bias.UNKNOWN, Drive.PUSH_PULL, Edge.NONE,
                            Clock.MONOTONIC, False, timedelta())

        @recorded("Chip.request_lines")
        def request_lines(self, config: dict[Any, LineSettings | None],
                          consumer: str | None = None, event_buffer_size: int | None = None,
                          output_values: dict[Any, Value] | None = None) -> LineRequest:
            chip = self._live()
            offsets = [self.line_offset_from_id(key) for key in config]
            for offset in offsets:
                if kernel.before_request is not None:
                    kernel.before_request(chip, offset)
                if chip.lines[offset].used:
                    raise OSError(errno.EBUSY, os.strerror(errno.EBUSY))
            for key, offset in zip(config, offsets, strict=True):
                kline = chip.lines[offset]
                kline.used, kline.consumer = True, consumer or "?"
                apply(kline, config[key] or LineSettings())
            return LineRequest(chip, offsets)

        @property
        def path(self) -> str:
            return self._path

    @recorded("request_lines")
    def request_lines(path: str, config: dict[Any, LineSettings | None],
                      consumer: str | None = None, event_buffer_size: int | None = None,
                      output_values: dict[Any, Value] | None = None) -> LineRequest:
        with Chip(path) as chip:
            request: LineRequest = chip.request_lines(
                config=config, consumer=consumer, event_buffer_size=event_buffer_size,
                output_values=output_values)
            return request

    class FakeModule(types.ModuleType):
        def __getattribute__(self, name: str) -> Any:
            if not name.startswith("__") and name not in ("calls", "attributes"):
                attributes.add(name)
            return super().__getattribute__(name)

    mod = FakeModule("gpiod")
    exception_mod = types.ModuleType("gpiod.exception")
    exception_mod.ChipClosedError = ChipClosedError  # type: ignore[attr-defined]
    exception_mod.RequestReleasedError = RequestReleasedError  # type: ignore[attr-defined]
    for name, value in {
        "__version__": "2.5.0-fake", "line": line_mod, "exception": exception_mod,
        "Chip": Chip, "ChipInfo": ChipInfo, "LineInfo": LineInfo, "LineSettings": LineSettings,
        "LineRequest": LineRequest, "ChipClosedError": ChipClosedError,
        "RequestReleasedError": RequestReleasedError, "request_lines": request_lines,
        "calls": calls, "attributes": attributes,
    }.items():
        setattr(mod, name, value)
    return mod


@pytest.fixture
def kernel(tmp_path: Path) -> FakeKernel:
    return FakeKernel(tmp_path / "dev")


@pytest.fixture
def fake_gpiod(kernel: FakeKernel, monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    mod = build_fake_gpiod(kernel)
    monkeypatch.setitem(sys.modules, "gpiod", mod)
    return mod


@pytest.fixture
def sysroot(tmp_path: Path) -> Path:
    return tmp_path / "sys"


def gopen(text: str, kernel: FakeKernel, sysroot: Path, **kw: Any) -> gpio.Line:
    kw.setdefault("dev_root", str(kernel.dev_root))
    kw.setdefault("sysfs_root", str(sysroot))
    return open_line(spec(text), **kw)


# --- gpiod backend -----------------------------------------------------------------------------

def test_chip_line_is_driven_at_logical_levels_and_named_as_ours(
        kernel: FakeKernel, fake_gpiod: types.ModuleType, sysroot: Path) -> None:
    kernel.add_chip("gpiochip0", 32)
    line = gopen("gpiochip0:21", kernel, sysroot, initial=False, active_low=True)
    k = kernel.line("gpiochip0", 21)
    assert isinstance(line, gpio.GpiodLine)
    assert (k.used, k.consumer, k.direction) == (True, "remsim-supervisor", "output")
    assert k.physical == 1  # inactive on an active-low line is high
    assert line.get() is False  # INACTIVE is truthy in gpiod 2.1.3: must not read as True
    line.set(True)
    assert (k.physical, line.get()) == (0, True)
    line.release()
    assert (k.used, k.physical) == (False, 0)  # released, level kept
    line.release()  # twice is harmless
    with pytest.raises(GpioError, match="released"):
        line.set(False)


def test_fake_value_keeps_the_2_1_3_truthiness_trap(fake_gpiod: types.ModuleType) -> None:
    # The backend compares with Value.ACTIVE; the fake keeps the trap to prove it.
    assert bool(fake_gpiod.line.Value.INACTIVE) is True


def test_initial_none_keeps_the_present_level_without_a_glitch(
        kernel: FakeKernel, fake_gpiod: types.ModuleType, sysroot: Path) -> None:
    kernel.add_chip("gpiochip0", 32)
    k = kernel.line("gpiochip0", 5)
    k.direction, k.physical = "output", 1  # left powered on by the previous run
    line = gopen("gpiochip0:5", kernel, sysroot, initial=None)
    assert line.get() is True
    assert (k.physical, k.changes, k.direction) == (1, [], "output")
    settings = [c for c in fake_gpiod.calls if c[0] == "LineSettings"]
    assert [s[2]["direction"].name for s in settings] == ["AS_IS", "OUTPUT"]


def test_busy_line_names_the_holder(kernel: FakeKernel, fake_gpiod: types.ModuleType,
                                    sysroot: Path) -> None:
    kernel.add_chip("gpiochip0", 32)
    k = kernel.line("gpiochip0", 21)
    k.used, k.consumer = True, "sms-tool"
    with pytest.raises(GpioError) as err:
        gopen("gpiochip0:21", kernel, sysroot, initial=False)
    assert str(err.value) == "gpiochip0:21 is busy: held by consumer 'sms-tool'"


def test_line_taken_between_check_and_request_names_the_new_holder(
        kernel: FakeKernel, fake_gpiod: types.ModuleType, sysroot: Path) -> None:
    kernel.add_chip("gpiochip0", 32)

    def race(chip: KChip, offset: int) -> None:
        chip.lines[offset].used, chip.lines[offset].consumer = True, "gpioset"
    kernel.before_request = race
    with pytest.raises(GpioError, match=r"gpiochip0:3 is busy: held by consumer 'gpioset'"):
        gopen("gpiochip0:3", kernel, sysroot, initial=False)


def test_line_held_by_a_sysfs_export_says_how_to_free_it(
        kernel: FakeKernel, fake_gpiod: types.ModuleType, sysroot: Path) -> None:
    kernel.add_chip("gpiochip0", 32)
    k = kernel.line("gpiochip0", 7)
    k.used, k.consumer = True, "sysfs"
    with pytest.raises(GpioError, match=r"unexport it, or use sysfs:N$"):
        gopen("gpiochip0:7", kernel, sysroot, initial=False)
    FakeSysfs(sysroot).add_chip("gpiochip0", base=512, ngpio=32)
    with pytest.raises(GpioError, match=r"unexport it, or use sysfs:519$"):
        gopen("gpiochip0:7", kernel, sysroot, initial=False)
    k.consumer = "sim1"  # a device tree's gpio-export labels it with its name
    (sysroot / "class/gpio/sim1").mkdir(parents=True)
    with pytest.raises(GpioError, match="exports it as /sys/class/gpio/sim1: configure 'sim1'"):
        gopen("gpiochip0:7", kernel, sysroot, initial=False)


def test_line_found_by_name_on_any_chip(kernel: FakeKernel, fake_gpiod: types.ModuleType,
                                        sysroot: Path) -> None:
    kernel.add_chip("gpiochip0", ["", "reset", "x"])
    kernel.add_chip("gpiochip1", ["pcie_power", "5g1", "5g2"])
    line = gopen("5g2", kernel, sysroot, initial=True)
    assert isinstance(line, gpio.GpiodLine)
    assert (Path(line.chip_path).name, line.offset) == ("gpiochip1", 2)
    assert kernel.line("gpiochip1", 2).physical == 1
    assert kernel.line("gpiochip1", 2).consumer == "remsim-supervisor"


def test_unknown_name_and_ambiguous_name(kernel: FakeKernel, fake_gpiod: types.ModuleType,
                                         sysroot: Path) -> None:
    kernel.add_chip("gpiochip0", ["a", "b"])
    kernel.add_chip("gpiochip1", ["b"])
    with pytest.raises(GpioError) as err:
        gopen("5g2", kernel, sysroot)
    assert str(err.value).startswith("no GPIO line named '5g2' on any chip "
                                     "(searched gpiochip0, gpiochip1)")
    with pytest.raises(GpioError, match=r"'b' is ambiguous \(gpiochip0:1, gpiochip1:0\)"):
        gopen("b", kernel, sysroot)


def test_name_search_reports_chips_it_could_not_open(
        kernel: FakeKernel, fake_gpiod: types.ModuleType, sysroot: Path) -> None:
    kernel.add_chip("gpiochip0", ["a"]).denied = True
    with pytest.raises(GpioError, match="could not search gpiochip0: Permission denied"):
        gopen("5g2", kernel, sysroot)


def test_missing_chip_non_chip_offset_and_permission(
        kernel: FakeKernel, fake_gpiod: types.ModuleType, sysroot: Path) -> None:
    kernel.add_chip("gpiochip0", 32)
    kernel.add_chip("gpiochip1", 8)
    with pytest.raises(GpioError) as err:
        gopen("gpiochip3:1", kernel, sysroot)
    assert str(err.value) == (f"no GPIO chip {kernel.dev_root}/gpiochip3 "
                              f"(chips here: gpiochip0, gpiochip1)")
    with pytest.raises(GpioError, match="gpiochip1 has 8 lines \\(0-7\\): there is no offset 9"):
        gopen("gpiochip1:9", kernel, sysroot)
    (kernel.dev_root / "null").touch()
    with pytest.raises(GpioError, match="null is not a GPIO chip"):
        open_line(GpioSpec("chip", "/dev/null", 1, None, "/dev/null:1"),
                  dev_root=str(kernel.dev_root), sysfs_root=str(sysroot))
    kernel.chips[str(kernel.dev_root / "gpiochip0")].denied = True
    with pytest.raises(GpioError, match="permission denied: run as root"):
        gopen("gpiochip0:1", kernel, sysroot)


def test_missing_gpiod_says_what_to_install(kernel: FakeKernel, sysroot: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gpiod", None)  # import now fails, as on a bare router
    with pytest.raises(GpioError) as err:
        gopen("5g2", kernel, sysroot)
    assert str(err.value) == ("gpiod (libgpiod v2 Python bindings) is not installed: "
                              "opkg install python3-gpiod, or use sysfs:N")
    # With sysfs telling the chip's base, the hint gives the number to write.
    FakeSysfs(sysroot).add_chip("gpiochip0", base=512, ngpio=32)
    with pytest.raises(GpioError, match=r"or use sysfs:533$"):
        gopen("gpiochip0:21", kernel, sysroot)


def test_v1_bindings_are_refused_with_the_fix(kernel: FakeKernel, sysroot: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    v1 = types.ModuleType("gpiod")
    v1.__version__ = "1.6.4"  # type: ignore[attr-defined]
    v1.chip = object  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "gpiod", v1)
    with pytest.raises(GpioError, match=r"gpiod 1\.6\.4 has the libgpiod v1 API"):
        gopen("gpiochip0:1", kernel, sysroot)


def test_name_exported_by_the_device_tree_falls_back_to_sysfs(
        kernel: FakeKernel, fake_gpiod: types.ModuleType, sysroot: Path) -> None:
    kernel.add_chip("gpiochip0", 32)  # no line names: the export is the only way in
    fs = FakeSysfs(sysroot)
    fs.add_chip("gpiochip0", base=512, ngpio=32)
    fs.export_named("sim1", 519, level=0)
    line = gopen("sim1", kernel, sysroot, initial=True, sysfs_write=fs.write)
    assert isinstance(line, gpio.SysfsLine)
    assert fs.raw[519] == 1
    line.release()
    assert (sysroot / "class/gpio/sim1").is_dir()  # never unexport what we did not export


def test_without_gpiod_a_device_tree_export_still_works(
        kernel: FakeKernel, sysroot: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gpiod", None)
    fs = FakeSysfs(sysroot)
    fs.add_chip("gpiochip0", base=512, ngpio=32)
    fs.export_named("5g1", 516, level=1)
    line = gopen("5g1", kernel, sysroot, sysfs_write=fs.write)
    assert isinstance(line, gpio.SysfsLine) and line.get() is True


def test_named_line_held_by_its_export_falls_back_to_sysfs(
        kernel: FakeKernel, fake_gpiod: types.ModuleType, sysroot: Path) -> None:
    chip = kernel.add_chip("gpiochip0", ["", "", "5g2"])
    chip.lines[2].used, chip.lines[2].consumer = True, "5g2"
    fs = FakeSysfs(sysroot)
    fs.add_chip("gpiochip0", base=0, ngpio=3)
    fs.export_named("5g2", 2, level=1)
    line = gopen("5g2", kernel, sysroot, sysfs_write=fs.write)
    assert isinstance(line, gpio.SysfsLine)
    assert line.get() is True and fs.raw[2] == 1  # initial None: left powered


def test_gpiod_backend_refuses_a_sysfs_number(kernel: FakeKernel, fake_gpiod: types.ModuleType,
                                              sysroot: Path) -> None:
    with pytest.raises(GpioError, match="needs gpiochipN:OFFSET or a line name"):
        gopen("sysfs:21", kernel, sysroot, backend="gpiod")
    with pytest.raises(ValueError, match="unknown GPIO backend"):
        gopen("sysfs:21", kernel, sysroot, backend="spi")


# --- the fake against the real bindings --------------------------------------------------------

def _exercise_backend(kernel: FakeKernel, sysroot: Path) -> None:
    """Every path through the gpiod backend, so every call it makes is recorded."""
    kernel.add_chip("gpiochip0", ["", "5g2", "", ""])
    kernel.add_chip("gpiochip1", 4)
    for text, initial in (("gpiochip0:0", True), ("5g2", False), ("gpiochip1:2", None)):
        line = gopen(text, kernel, sysroot, initial=initial, active_low=True)
        line.set(True)
        line.get()
        line.release()
    kernel.line("gpiochip0", 3).used = True
    with pytest.raises(GpioError):
        gopen("gpiochip0:3", kernel, sysroot)

    def race(chip: KChip, offset: int) -> None:
        chip.lines[offset].used = True
    kernel.before_request = race
    with pytest.raises(GpioError):
        gopen("gpiochip0:2", kernel, sysroot)


def _real(qualname: str) -> Any:
    target: Any = REAL_GPIOD
    for part in qualname.split("."):
        target = getattr(target, part)
    return target


def test_every_call_the_backend_makes_exists_on_the_real_gpiod_with_that_signature(
        kernel: FakeKernel, fake_gpiod: types.ModuleType, sysroot: Path) -> None:
    _exercise_backend(kernel, sysroot)
    calls = fake_gpiod.calls
    names = {c[0] for c in calls}
    # The backend's whole vocabulary, so a new call cannot slip past this test.
    assert names == {"Chip", "Chip.__enter__", "Chip.__exit__", "Chip.close", "Chip.get_info",
                     "Chip.line_offset_from_id", "Chip.get_line_info", "Chip.request_lines",
                     "request_lines", "LineSettings", "LineRequest.set_value",
                     "LineRequest.get_value", "LineRequest.reconfigure_lines",
                     "LineRequest.release"}
    for name, args, kwargs in calls:
        target = _real(name)
        method = "." in name
        signature = inspect.signature(target)
        try:
            signature.bind(*((object(),) if method else ()), *args, **kwargs)
        except TypeError as exc:  # pragma: no cover - the failure message is the point
            pytest.fail(f"gpiod {REAL_GPIOD.__version__}: {name}{signature} rejects "
                        f"args={args!r} kwargs={kwargs!r}: {exc}")
        # The fake accepts exactly what it was given too (it was called), and its
        # parameter names match the real ones for every keyword used.
        real_params = set(signature.parameters)
        if not any(p.kind == p.VAR_KEYWORD for p in signature.parameters.values()):
            assert set(kwargs) <= real_params, name
    for attribute in fake_gpiod.attributes:
        assert hasattr(REAL_GPIOD, attribute), f"gpiod has no {attribute}"


def test_fake_types_have_the_real_fields_and_members(fake_gpiod: types.ModuleType) -> None:
    for enum_name in ("Value", "Direction", "Bias", "Drive", "Edge", "Clock"):
        real = [m.name for m in getattr(REAL_GPIOD.line, enum_name)]
        fake = [m.name for m in getattr(fake_gpiod.line, enum_name)]
        assert fake == real, enum_name
    # 2.1.3 exports LineInfo only from its submodule; both versions have the submodules.
    for module, cls in (("chip_info", "ChipInfo"), ("line_info", "LineInfo"),
                        ("line_settings", "LineSettings")):
        real_cls = getattr(getattr(REAL_GPIOD, module), cls)
        real_fields = [f.name for f in dataclasses.fields(real_cls)]
        fake_fields = [f.name for f in dataclasses.fields(getattr(fake_gpiod, cls))]
        assert fake_fields == real_fields, cls
    real_settings = inspect.signature(REAL_GPIOD.LineSettings).parameters
    fake_settings = inspect.signature(fake_gpiod.LineSettings).parameters
    assert list(fake_settings) == list(real_settings)
    for name in ("ChipClosedError", "RequestReleasedError"):
        assert issubclass(getattr(REAL_GPIOD, name), Exception)
        assert issubclass(getattr(fake_gpiod, name), Exception)
    for method in ("__enter__", "__exit__"):
        assert callable(getattr(REAL_GPIOD.Chip, method))


@pytest.mark.parametrize("what", ["missing", "regular file", "directory"])
def test_fake_and_real_fail_alike_on_what_is_not_a_chip(
        what: str, kernel: FakeKernel, tmp_path: Path) -> None:
    fake = build_fake_gpiod(kernel)
    target = tmp_path / "target"
    if what == "regular file":
        target.touch()
    elif what == "directory":
        target.mkdir()
    outcomes = []
    for mod in (REAL_GPIOD, fake):
        with pytest.raises(OSError) as err:
            mod.Chip(str(target))
        outcomes.append((type(err.value), err.value.errno))
    assert outcomes[0] == outcomes[1]


# --- sysfs backend -----------------------------------------------------------------------------

class FakeSysfs:
    """/sys/class/gpio as the kernel keeps it, behind an injectable writer.

    ``write`` does what the kernel does on a write: export creates gpioN,
    unexport removes it, ``direction`` takes in/out/high/low (high/low raw),
    ``value`` is logical (``active_low`` applied), refused on an input.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.klass = root / "class/gpio"
        self.klass.mkdir(parents=True, exist_ok=True)
        for name in ("export", "unexport"):
            (self.klass / name).touch()
        self.ranges: list[tuple[int, int]] = []
        self.raw: dict[int, int] = {}
        self.active_low: dict[int, bool] = {}
        self.direction: dict[int, str] = {}
        self.dirs: dict[Path, int] = {}
        self.busy: set[int] = set()
        self.writes: list[tuple[str, str]] = []

    def add_chip(self, devname: str, *, base: int, ngpio: int) -> None:
        parent = self.root / "devices/platform/soc/pio"
        (parent / devname).mkdir(parents=True, exist_ok=True)
        class_dev = parent / "gpio" / f"gpiochip{base}"
        class_dev.mkdir(parents=True)
        (class_dev / "base").write_text(f"{base}\n")
        (class_dev / "ngpio").write_text(f"{ngpio}\n")
        (class_dev / "label").write_text("pinctrl\n")
        (self.klass / f"gpiochip{base}").symlink_to(class_dev)
        self.ranges.append((base, ngpio))

    def _create(self, directory: Path, n: int, *, direction_may_change: bool,
                level: int = 0, direction: str = "in") -> None:
        directory.mkdir()
        self.dirs[directory] = n
        self.raw.setdefault(n, level)
        self.active_low[n] = False
        self.direction[n] = direction
        if direction_may_change:
            (directory / "direction").write_text(direction + "\n")
        self._sync(n, directory)

    def _sync(self, n: int, directory: Path) -> None:
        (directory / "value").write_text(f"{self.raw[n] ^ self.active_low[n]}\n")
        (directory / "active_low").write_text(f"{int(self.active_low[n])}\n")
        if (directory / "direction").exists():
            (directory / "direction").write_text(self.direction[n] + "\n")

    def export_named(self, name: str, n: int, *, level: int,
                     direction_may_change: bool = False) -> None:
        """A device tree's gpio-export: a named output, direction fixed."""
        self._create(self.klass / name, n, direction_may_change=direction_may_change,
                     level=level, direction="out")

    def preexport(self, n: int, *, direction: str = "in", level: int = 0) -> None:
        self._create(self.klass / f"gpio{n}", n, direction_may_change=True, level=level,
                     direction=direction)

    def write(self, path: str, text: str) -> None:
        self.writes.append((os.path.relpath(path, self.root), text))
        p = Path(path)
        if p == self.klass / "export":
            n = int(text)
            if not any(b <= n < b + c for b, c in self.ranges):
                raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
            if n in self.busy or (self.klass / f"gpio{n}").exists():
                raise OSError(errno.EBUSY, os.strerror(errno.EBUSY))
            self._create(self.klass / f"gpio{n}", n, direction_may_change=True)
            return
        if p == self.klass / "unexport":
            directory = self.klass / f"gpio{int(text)}"
            for child in directory.iterdir():
                child.unlink()
            directory.rmdir()
            del self.dirs[directory]
            return
        n = self.dirs[p.parent]
        if p.name == "direction":
            if text not in ("in", "out", "high", "low"):
                raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
            self.direction[n] = "in" if text == "in" else "out"
            if text != "in":
                self.raw[n] = 1 if text == "high" else 0
        elif p.name == "value":
            if self.direction[n] != "out":
                raise OSError(errno.EPERM, os.strerror(errno.EPERM))
            self.raw[n] = int(text != "0") ^ self.active_low[n]
        elif p.name == "active_low":
            self.active_low[n] = text != "0"
        else:
            raise OSError(errno.EACCES, os.strerror(errno.EACCES))
        self._sync(n, p.parent)


@pytest.fixture
def fs(sysroot: Path) -> FakeSysfs:
    fake = FakeSysfs(sysroot)
    fake.add_chip("gpiochip0", base=512, ngpio=32)
    return fake


def sopen(text: str, fs: FakeSysfs, **kw: Any) -> gpio.Line:
    return open_line(spec(text), sysfs_root=str(fs.root), sysfs_write=fs.write, **kw)


@pytest.mark.parametrize(("initial", "active_low", "raw"),
                         [(False, False, 0), (True, False, 1), (False, True, 1), (True, True, 0)])
def test_sysfs_exports_and_sets_direction_and_level_in_one_write(
        fs: FakeSysfs, initial: bool, active_low: bool, raw: int) -> None:
    line = sopen("sysfs:533", fs, initial=initial, active_low=active_low)
    assert isinstance(line, gpio.SysfsLine)
    assert fs.writes == [("class/gpio/export", "533"),
                         ("class/gpio/gpio533/active_low", str(int(active_low))),
                         ("class/gpio/gpio533/direction", "high" if raw else "low")]
    assert fs.raw[533] == raw and line.get() is initial
    line.set(not initial)
    assert fs.raw[533] == 1 - raw and line.get() is (not initial)
    line.release()
    assert fs.writes[-1] == ("class/gpio/unexport", "533")
    assert not (fs.klass / "gpio533").exists()


def test_sysfs_keeps_an_existing_export_and_its_level(fs: FakeSysfs) -> None:
    fs.preexport(520, direction="out", level=1)
    line = sopen("sysfs:520", fs)
    assert line.get() is True and fs.raw[520] == 1
    assert ("class/gpio/export", "520") not in fs.writes
    assert not any(path.endswith("direction") for path, _ in fs.writes)
    line.release()
    assert (fs.klass / "gpio520").is_dir()  # not ours to unexport


def test_sysfs_input_becomes_an_output_at_its_present_level(fs: FakeSysfs) -> None:
    fs.preexport(521, direction="in", level=1)
    line = sopen("sysfs:521", fs, active_low=True)
    assert fs.direction[521] == "out" and fs.raw[521] == 1
    assert line.get() is False  # high on an active-low line is inactive


def test_sysfs_errors_say_what_to_fix(fs: FakeSysfs, tmp_path: Path) -> None:
    with pytest.raises(GpioError) as err:
        sopen("sysfs:21", fs)
    assert str(err.value) == "no GPIO number 21: the chips here cover 512-543"
    fs.busy.add(530)
    with pytest.raises(GpioError, match="sysfs:530 is busy: the kernel refused to export"):
        sopen("sysfs:530", fs)
    with pytest.raises(GpioError, match="no /sys/class/gpio: kernel without CONFIG_GPIO_SYSFS"):
        open_line(spec("sysfs:21"), sysfs_root=str(tmp_path / "nosys"))
    with pytest.raises(GpioError, match="no GPIO line named 'nope' in /sys/class/gpio"):
        sopen("nope", fs, backend="sysfs")


def test_sysfs_reaches_a_chip_line_through_the_chip_base(fs: FakeSysfs) -> None:
    line = sopen("gpiochip0:21", fs, backend="sysfs", initial=True)
    assert fs.raw[533] == 1
    line.release()
    with pytest.raises(GpioError, match="sysfs does not say which numbers gpiochip7 has"):
        sopen("gpiochip7:1", fs, backend="sysfs")


def test_named_export_without_direction_attribute_is_driven_by_value(fs: FakeSysfs) -> None:
    fs.export_named("sim2", 530, level=0)
    line = sopen("sim2", fs, backend="sysfs", initial=True)
    assert fs.raw[530] == 1
    assert not any(path.endswith("direction") for path, _ in fs.writes)
    line.set(False)
    assert fs.raw[530] == 0


def test_default_sysfs_writer_is_one_write_to_the_attribute(tmp_path: Path) -> None:
    target = tmp_path / "value"
    target.write_text("")
    gpio_sysfs.sysfs_write(str(target), "1")
    assert target.read_text() == "1"
    with pytest.raises(FileNotFoundError):
        gpio_sysfs.sysfs_write(str(tmp_path / "absent"), "1")


# --- simulated lines ---------------------------------------------------------------------------

@pytest.fixture
def sim(tmp_path: Path) -> SimGpio:
    return SimGpio(tmp_path / "simgpio")


def test_sim_line_levels_files_and_event_log(sim: SimGpio) -> None:
    line = open_line(spec("sim:modem1-sim"), sim=sim, initial=False, active_low=True)
    assert isinstance(line, gpio.SimLine)
    assert (sim.root / "modem1-sim").read_text() == "1"
    line.set(True)
    line.set(True)  # no change, no event
    assert sim.level("modem1-sim") == 0 and line.get() is True
    events = sim.events("modem1-sim")
    assert [e.level for e in events] == [1, 0]
    assert all(isinstance(e, SimEvent) and e.at_ns > 0 for e in events)
    raw = (sim.root / "events").read_text().splitlines()
    assert raw[0].split()[1:] == ["modem1-sim", "1"] and raw[0].split()[0].isdigit()
    assert sim.lines() == ["modem1-sim"]  # no temporary or owner files show up as lines


def test_sim_line_is_held_exclusively_and_freed_on_release(sim: SimGpio) -> None:
    first = open_line(spec("sim:reset"), sim=sim, initial=False)
    with pytest.raises(GpioError, match=r"sim:reset is busy: held by consumer 'remsim-supervisor'"):
        open_line(spec("sim:reset"), sim=sim, consumer="other")
    first.release()
    open_line(spec("sim:reset"), sim=sim, consumer="other").release()


def test_sim_line_left_by_a_dead_process_is_taken_over(sim: SimGpio) -> None:
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)
    (sim.root / ".reset.owner").write_text(f"{child.stdout.strip()} crashed\n")
    open_line(spec("sim:reset"), sim=sim, initial=False).release()


def test_sim_directory_comes_from_the_environment(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(gpio.SIM_GPIO_ENV, raising=False)
    with pytest.raises(GpioError, match="REMSIM_SUPERVISOR_SIM_GPIO"):
        open_line(spec("sim:x"))
    monkeypatch.setenv(gpio.SIM_GPIO_ENV, str(tmp_path / "lab"))
    line = open_line(spec("sim:x"), initial=True)
    assert SimGpio(tmp_path / "lab").level("x") == 1
    line.release()


def test_sim_backend_can_stand_in_for_a_real_line_spec(sim: SimGpio) -> None:
    line = open_line(spec("gpiochip0:21"), backend="sim", sim=sim, initial=True)
    assert sim.level("gpiochip0-21") == 1
    line.release()


def test_sim_rejects_names_that_are_not_plain_files(sim: SimGpio) -> None:
    for bad in ("events", ".hidden", "../x"):
        with pytest.raises(GpioError, match="invalid simulated line name"):
            sim.set_level(bad, 1)
    with pytest.raises(KeyError):
        sim.level("never-driven")


class FakeClock:
    """A monotonic ns clock that only the injected sleep moves."""

    def __init__(self) -> None:
        self.ns = 1_000_000_000
        self.slept: list[float] = []

    def __call__(self) -> int:
        return self.ns

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.ns += int(seconds * 1e9)


def test_pulse_on_a_sim_line_is_seen_as_one_reset(tmp_path: Path) -> None:
    clock = FakeClock()
    sim = SimGpio(tmp_path / "g", clock=clock)
    line = open_line(spec("sim:m1-reset"), sim=sim, initial=False, active_low=True)
    seen: list[str] = []
    with ResetWatcher(sim, "m1-reset", lambda: seen.append("reset"), active_low=True,
                      poll_s=3600) as watcher:
        asyncio.run(pulse(line, 300, sleep=clock.sleep))
        watcher.poll()
        assert seen == ["reset"] and watcher.count == 1
        assert watcher.durations_ms == [300.0]
    assert clock.slept == [0.3]
    assert [e.level for e in sim.events("m1-reset")] == [1, 0, 1]  # idle high, low pulse
    assert line.get() is False


def test_reset_watcher_ignores_pulses_too_short_for_the_modem(tmp_path: Path) -> None:
    clock = FakeClock()
    sim = SimGpio(tmp_path / "g", clock=clock)
    line = open_line(spec("sim:m1-reset"), sim=sim, initial=False)
    seen: list[int] = []
    with ResetWatcher(sim, "m1-reset", lambda: seen.append(1), min_ms=150,
                      poll_s=3600) as watcher:
        asyncio.run(pulse(line, 100, sleep=clock.sleep))
        watcher.poll()
        assert seen == []
        asyncio.run(pulse(line, 300, sleep=clock.sleep))
        watcher.poll()
        assert seen == [1] and watcher.durations_ms == [300.0]


def test_power_cycle_is_seen_by_a_power_watcher_and_power_stays_on(tmp_path: Path) -> None:
    clock = FakeClock()
    sim = SimGpio(tmp_path / "g", clock=clock)
    line = open_line(spec("sim:m1-power"), sim=sim, initial=True)
    cycles: list[int] = []
    resets: list[int] = []
    with ResetWatcher(sim, "m1-power", lambda: cycles.append(1), kind="power",
                      poll_s=3600) as power, \
         ResetWatcher(sim, "m1-power", lambda: resets.append(1), poll_s=3600) as as_reset:
        asyncio.run(power_cycle(line, 2000, sleep=clock.sleep))
        power.poll()
        as_reset.poll()
    assert cycles == [1] and power.durations_ms == [2000.0]
    assert resets == []  # off-then-on is no reset pulse on a line that rests active
    assert line.get() is True and sim.level("m1-power") == 1


def test_cancelled_pulse_and_power_cycle_restore_the_resting_level(sim: SimGpio) -> None:
    reset = open_line(spec("sim:r"), sim=sim, initial=False)
    power = open_line(spec("sim:p"), sim=sim, initial=True)

    async def forever(_seconds: float) -> None:
        await asyncio.Event().wait()

    async def main() -> None:
        for job in (pulse(reset, 300, sleep=forever), power_cycle(power, 2000, sleep=forever)):
            task = asyncio.create_task(job)
            await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
    asyncio.run(main())
    assert (reset.get(), power.get()) == (False, True)
    assert [e.level for e in sim.events("r")] == [0, 1, 0]
    assert [e.level for e in sim.events("p")] == [1, 0, 1]


def test_pulse_and_power_cycle_refuse_non_positive_times(sim: SimGpio) -> None:
    line = open_line(spec("sim:r"), sim=sim, initial=False)
    with pytest.raises(ValueError):
        asyncio.run(pulse(line, 0))
    with pytest.raises(ValueError):
        asyncio.run(power_cycle(line, -1))
    assert [e.level for e in sim.events("r")] == [0]  # nothing was driven


def test_settle_levels_writes_only_the_lines_that_differ(sim: SimGpio) -> None:
    lines = {
        "sim": open_line(spec("sim:s"), sim=sim, initial=True, active_low=True),
        "reset": open_line(spec("sim:r"), sim=sim, initial=True),
        "power": open_line(spec("sim:p"), sim=sim, initial=True),
    }
    writes = gpio.settle_levels(lines, {"sim": None, "reset": False, "power": True})
    assert writes == [gpio.LevelWrite("reset", False)]
    assert [e.level for e in sim.events("r")] == [1, 0]
    # Again, with everything in place: not one edge on any line.
    before = sim.events()
    assert gpio.settle_levels(lines, {"sim": True, "reset": False, "power": True}) == []
    assert sim.events() == before
    assert (lines["sim"].get(), sim.level("s")) == (True, 0)  # logical, active low


def test_settle_levels_leaves_unheld_and_unreadable_lines_alone(sim: SimGpio) -> None:
    reset = open_line(spec("sim:r"), sim=sim, initial=False)
    blind = open_line(spec("sim:b"), sim=sim, initial=True)
    blind.release()  # reading it now fails: its level cannot be kept, only driven
    assert gpio.settle_levels({"reset": reset, "blind": blind},
                              {"reset": None, "blind": None, "power": True}) == []
    with pytest.raises(GpioError, match="was released"):
        gpio.settle_levels({"blind": blind}, {"blind": False})


def test_watch_thread_delivers_changes_without_polling_by_hand(sim: SimGpio) -> None:
    got: list[SimEvent] = []
    handle = watch(sim, "w", got.append, poll_s=0.001)
    try:
        sim.set_level("w", 1)
        sim.set_level("other", 1)
        sim.set_level("w", 0)
        deadline = time.monotonic() + 5
        while len(got) < 2 and time.monotonic() < deadline:
            time.sleep(0.001)
    finally:
        handle.stop()
    assert [(e.line, e.level) for e in got] == [("w", 1), ("w", 0)]


def test_watch_survives_a_failing_observer(sim: SimGpio) -> None:
    calls: list[int] = []

    def bad(event: SimEvent) -> None:
        calls.append(event.level)
        raise RuntimeError("observer bug")
    with watch(sim, "w", bad, poll_s=3600) as handle:
        sim.set_level("w", 1)
        sim.set_level("w", 0)
        assert handle.poll() == 2
    assert calls == [1, 0]


def test_reset_is_seen_by_an_emulator_in_another_process(sim: SimGpio, tmp_path: Path) -> None:
    ready, seen = tmp_path / "ready", tmp_path / "seen"
    code = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from remsim_lab.gpiowatch import ResetWatcher
        from remsim_supervisor.adapters.gpio import SimGpio
        sim = SimGpio({str(sim.root)!r})
        hits = []
        with ResetWatcher(sim, "m2-reset", lambda: hits.append(1), poll_s=0.005):
            Path({str(ready)!r}).touch()
            end = time.monotonic() + 20
            while not hits and time.monotonic() < end:
                time.sleep(0.005)
        Path({str(seen)!r}).write_text(str(len(hits)))
    """)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    child = subprocess.Popen([sys.executable, "-c", code], env=env)
    try:
        deadline = time.monotonic() + 20
        while not ready.exists() and time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.01)
        assert ready.exists(), "the emulator-side process did not start"
        line = open_line(spec("sim:m2-reset"), sim=sim, initial=False)

        async def no_wait(_seconds: float) -> None:
            return None
        asyncio.run(pulse(line, 300, sleep=no_wait))
        assert child.wait(timeout=20) == 0
    finally:
        if child.poll() is None:
            child.kill()
    assert seen.read_text() == "1"


def test_reset_watcher_drives_a_modem_emulator(sim: SimGpio, tmp_path: Path) -> None:
    emulator = pytest.importorskip("remsim_lab.emulator")
    with emulator.ModemEmulator("ec25", tmp_path / "ttyUSB2") as emu:
        line = open_line(spec("sim:modem1-reset"), sim=sim, initial=False)
        before = emu.resets
        with ResetWatcher(sim, "modem1-reset", emu.hardware_reset, poll_s=3600) as watcher:
            async def no_wait(_seconds: float) -> None:
                return None
            asyncio.run(pulse(line, 300, sleep=no_wait))
            watcher.poll()
        assert emu.resets == before + 1
