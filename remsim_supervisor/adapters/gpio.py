"""GPIO lines: the SIM switch, reset and power lines of the modems.

:func:`open_line` turns a configured :class:`~remsim_supervisor.config.GpioSpec`
into a :class:`Line` that speaks *logical* levels (``active_low`` applied):
``set(True)`` asserts the line (reset held, power on, remote SIM selected when
so configured), ``get()`` reads it back, ``release()`` lets it go.

Three backends, one interface (:mod:`~remsim_supervisor.adapters.gpio_line`):

* **gpiod** (default for ``gpiochip0:21`` and line names such as ``5g2``):
  the character device through the libgpiod v2 Python bindings
  (:mod:`~remsim_supervisor.adapters.gpio_gpiod`).
* **sysfs** (``sysfs:21``, and a name a device tree already exported as
  ``/sys/class/gpio/<name>`` when no chip offers that name or the export
  holds it): legacy ``/sys/class/gpio``
  (:mod:`~remsim_supervisor.adapters.gpio_sysfs`).
* **sim** (``sim:NAME``): :class:`SimGpio`, a directory of one file per line
  shared with modem emulators in other processes, with an ``events`` log for
  the lab's observers (:mod:`~remsim_supervisor.adapters.gpio_sim`).

``initial=None`` keeps whatever level the line has, so a supervisor that
procd restarts never pulses a power or SIM line on its way up.
:func:`settle_levels` brings lines already held to the levels wanted,
writing only those that differ (the diff is
:func:`remsim_supervisor.core.gpiolevels.level_writes`).

:func:`pulse` and :func:`power_cycle` are the two timed operations; their
sleep is injectable and the line is always put back in its resting level,
even when the task is cancelled: a modem is never left in reset or unpowered.

Every failure is a :class:`GpioError` whose text says what to fix.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

from remsim_supervisor.adapters.gpio_gpiod import GpiodLine, open_gpiod
from remsim_supervisor.adapters.gpio_line import Fallback, GpioError, Line
from remsim_supervisor.adapters.gpio_sim import SIM_GPIO_ENV, SimEvent, SimGpio, SimLine, open_sim
from remsim_supervisor.adapters.gpio_sysfs import (
    SysfsLine,
    SysfsWrite,
    gpio_class,
    open_sysfs,
)
from remsim_supervisor.adapters.gpio_sysfs import sysfs_write as _sysfs_write
from remsim_supervisor.config import GpioSpec
from remsim_supervisor.core.gpiolevels import LevelWrite, level_writes

__all__ = [
    "BACKENDS",
    "SIM_GPIO_ENV",
    "GpioError",
    "GpiodLine",
    "LevelWrite",
    "Line",
    "SimEvent",
    "SimGpio",
    "SimLine",
    "SysfsLine",
    "open_line",
    "power_cycle",
    "pulse",
    "settle_levels",
]

BACKENDS = ("gpiod", "sysfs", "sim")

Sleep = Callable[[float], Awaitable[object]]


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
        return open_sim(spec, sim, active_low, initial, consumer)
    if chosen == "sysfs":
        return open_sysfs(spec, active_low, initial, sysfs_root, write)
    if spec.kind not in ("chip", "name"):
        raise GpioError(f"{spec}: the gpiod backend needs gpiochipN:OFFSET or a line name")
    # A device tree's gpio-export (OpenWrt's ZBT-Z8102AX names sim1, 5g1, ...)
    # shows a name only under /sys/class/gpio and holds the chip line itself.
    exported = (spec.kind == "name" and backend is None and spec.name is not None
                and (gpio_class(sysfs_root) / spec.name).is_dir())
    try:
        return open_gpiod(spec, active_low, initial, consumer, dev_root, sysfs_root,
                           fallback=exported)
    except Fallback:
        return open_sysfs(spec, active_low, initial, sysfs_root, write)


# --- levels -----------------------------------------------------------------------------------

def settle_levels(lines: Mapping[str, Line], wanted: Mapping[str, bool | None]) -> list[LevelWrite]:
    """Bring held ``lines`` to the ``wanted`` logical levels, writing only where they differ.

    The writes come from :func:`~remsim_supervisor.core.gpiolevels.level_writes`
    (None keeps a line's level), in the order ``wanted`` names the lines. A
    line that cannot be read is written only when a level is wanted: a level
    that cannot be read cannot be kept. Returns what was written.
    """
    current: dict[str, bool | None] = {}
    targets: dict[str, bool | None] = {}
    for name, level in wanted.items():
        if name not in lines:
            continue
        try:
            current[name] = lines[name].get()
        except GpioError:
            if level is None:
                continue
            current[name] = None
        targets[name] = level
    writes = level_writes(targets, current)
    for write in writes:
        lines[write.line].set(write.level)
    return writes


# --- timed operations ---------------------------------------------------------------------------

async def pulse(line: Line, ms: int, *, sleep: Sleep = asyncio.sleep) -> None:
    """Assert ``line`` for ``ms`` milliseconds, then release it to inactive.

    The line goes back to inactive even if the task is cancelled mid-pulse: a
    modem held in reset is worse than a pulse cut short.
    """
    if ms <= 0:
        raise ValueError(f"a pulse needs a positive width, not {ms} ms")
    await _hold(line, True, ms, sleep)


async def power_cycle(line: Line, off_ms: int, *, sleep: Sleep = asyncio.sleep) -> None:
    """Drive a power-enable ``line`` inactive for ``off_ms``, then active again.

    Power comes back even if the task is cancelled: never leave a modem off.
    """
    if off_ms <= 0:
        raise ValueError(f"a power cycle needs a positive off time, not {off_ms} ms")
    await _hold(line, False, off_ms, sleep)


async def _hold(line: Line, level: bool, ms: int, sleep: Sleep) -> None:
    """``line`` at ``level`` for ``ms``, then at the other level, cancelled or not."""
    line.set(level)
    try:
        await sleep(ms / 1000)
    finally:
        line.set(not level)
