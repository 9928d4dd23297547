"""The supervisor's own environment hooks, read in one place.

The lab and the tests point the supervisor at fake hardware and tools with
``REMSIM_SUPERVISOR_*`` variables; the configuration file never sets them.
:meth:`Environment.from_environ` reads them all at once (the daemon and each
command do so once, at start) and the parts are handed what they need:

* ``REMSIM_SUPERVISOR_SYSFS``, ``_DEV``: the roots discovery reads (``/sys``, ``/dev``);
* ``_STATE_DIR``: status, journal and caches (``/var/run/remsim-supervisor``);
* ``_LOCK_DIR``: the UUCP lock files of the AT ports (``/var/lock``);
* ``_POLL_INTERVAL``: seconds between registration polls (30);
* ``_SIM_GPIO``: the directory of the simulated GPIO lines (``sim:NAME``);
* ``_IFUP``: the command that brings a netifd interface up (``ifup``);
* ``_UBUS``: the ``ubus`` that netifd is asked through (the one on PATH);
* ``_UBUS_SOCKET``: the ubus socket the hooks' listener uses (``ubus -s``;
  unset: ubus's own default);
* ``_EVENT_SETTLE``: seconds a burst of osmo-remsim events settles (0.5);
* ``_CONFIG``: the configuration file (``/etc/config/remsim-supervisor``).

Empty variables count as unset. A poll interval that is not a number of
seconds above 0 is a :class:`HookError` with one line naming the variable; a
settle window that is not a number from above 0 to 60 falls back to 0.5 s,
as an event must be handled whatever its environment says.

The same snapshot keeps osmo-remsim-client-openwrt's override variables
(:data:`~remsim_supervisor.config.overrides.VARIABLES`) as ``overrides``, so a
reload applies what the start applied.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from remsim_supervisor.config.overrides import VARIABLES
from remsim_supervisor.config.types import DEFAULT_PATH
from remsim_supervisor.core.hookvars import OWN_PREFIX

__all__ = [
    "CONFIG",
    "DEV",
    "EVENT_SETTLE",
    "IFUP",
    "LOCK_DIR",
    "POLL_INTERVAL",
    "PREFIX",
    "SIM_GPIO",
    "STATE_DIR",
    "SYSFS",
    "UBUS",
    "UBUS_SOCKET",
    "Environment",
    "HookError",
    "settle_window",
]

PREFIX = OWN_PREFIX  # "REMSIM_SUPERVISOR_"
SYSFS = PREFIX + "SYSFS"
DEV = PREFIX + "DEV"
STATE_DIR = PREFIX + "STATE_DIR"
LOCK_DIR = PREFIX + "LOCK_DIR"
POLL_INTERVAL = PREFIX + "POLL_INTERVAL"
SIM_GPIO = PREFIX + "SIM_GPIO"
IFUP = PREFIX + "IFUP"
UBUS = PREFIX + "UBUS"
UBUS_SOCKET = PREFIX + "UBUS_SOCKET"
EVENT_SETTLE = PREFIX + "EVENT_SETTLE"
CONFIG = PREFIX + "CONFIG"

DEFAULT_POLL_INTERVAL_S = 30.0
DEFAULT_SETTLE_S = 0.5
MAX_SETTLE_S = 60.0


class HookError(ValueError):
    """A hook's value cannot be used; the message is one line naming the variable."""


@dataclass(frozen=True)
class Environment:
    """The hooks' values; the defaults are a router's."""

    sysfs: str = "/sys"
    dev: str = "/dev"
    state_dir: str = "/var/run/remsim-supervisor"
    lock_dir: str = "/var/lock"
    poll_interval: float = DEFAULT_POLL_INTERVAL_S
    sim_gpio: str | None = None  # None: no simulated lines
    ifup: tuple[str, ...] = ("ifup",)
    ubus: str | None = None  # None: the ubus on PATH, if any
    ubus_socket: str | None = None  # None: ubus's default socket
    event_settle: float = DEFAULT_SETTLE_S
    config: str = DEFAULT_PATH
    # osmo-remsim-client-openwrt's variables, as the configuration applies them
    overrides: Mapping[str, str] = field(
        default_factory=lambda: MappingProxyType({}), hash=False)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], *, strict: bool = True) -> Environment:
        """Read every hook from ``environ``; HookError when one cannot be used.

        ``strict=False`` is for the osmo-remsim event path, which must hand its
        event on whatever else is wrong: a hook it does not use falls back to
        its default there instead of failing the event."""
        def given(name: str) -> str | None:
            value = environ.get(name)
            return value if value is not None and value.strip() else None

        defaults = cls()
        ifup = given(IFUP)
        return cls(
            sysfs=given(SYSFS) or defaults.sysfs,
            dev=given(DEV) or defaults.dev,
            state_dir=given(STATE_DIR) or defaults.state_dir,
            lock_dir=given(LOCK_DIR) or defaults.lock_dir,
            poll_interval=_poll_interval(given(POLL_INTERVAL), strict),
            sim_gpio=given(SIM_GPIO),
            ifup=tuple(ifup.split()) if ifup is not None else defaults.ifup,
            ubus=given(UBUS),
            ubus_socket=given(UBUS_SOCKET),
            event_settle=_settle(given(EVENT_SETTLE)),
            config=given(CONFIG) or defaults.config,
            overrides=MappingProxyType(
                {name: environ[name] for name in VARIABLES if name in environ}),
        )


def _poll_interval(text: str | None, strict: bool = True) -> float:
    if text is None:
        return DEFAULT_POLL_INTERVAL_S
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        if not strict:
            return DEFAULT_POLL_INTERVAL_S
        raise HookError(f"{POLL_INTERVAL}: must be a number of seconds above 0, not {text!r}")
    return value


def settle_window(environ: Mapping[str, str]) -> float:
    """The osmo-remsim settle window alone (``$REMSIM_SUPERVISOR_EVENT_SETTLE``)."""
    value = environ.get(EVENT_SETTLE)
    return _settle(value if value is not None and value.strip() else None)


def _settle(text: str | None) -> float:
    try:
        value = float(text or DEFAULT_SETTLE_S)
    except ValueError:
        return DEFAULT_SETTLE_S
    return value if 0.0 < value <= MAX_SETTLE_S else DEFAULT_SETTLE_S
