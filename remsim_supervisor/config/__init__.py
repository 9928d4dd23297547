"""The supervisor's configuration: read, checked, typed, with environment overrides.

:func:`load` reads ``/etc/config/remsim-supervisor`` (UCI, see ``uci.py``);
:func:`parse_config` turns its text into a frozen :class:`Config` or raises
:class:`ConfigError` holding *every* problem found, one line each, in the form
``check-config`` prints::

    /etc/config/remsim-supervisor:14: modem1.role: must be 'primary' or 'iot', not 'prim'
    /etc/config/remsim-supervisor:9: modem1: no way to find the modem: add option usb_path ...
    /etc/config/remsim-supervisor:3: unterminated ' quote: add the closing '
    environment: MODEM1_SIM_GPIO -> modem1.sim_gpio: write gpiochipN:OFFSET (gpiochip0:21), ...

(``FILE:LINE: section.option: problem``; a problem with a whole section or
the file leaves out ``.option`` or ``section.option``; line 0 means "nowhere
in the file", e.g. a missing section; an override names its variable.)

The parts, one job each:

* ``types.py``: the frozen values callers see (:class:`Config` and its
  sections, :class:`GpioSpec`) and :class:`Problem`/:class:`ConfigError`;
* ``convert.py``: one converter per kind of value, text in, value out;
* ``options.py``: the option table, section type -> option -> converter;
* ``uci.py``: the UCI syntax, as libuci reads it;
* ``sections.py``: the sections read and their names and values checked;
* ``overrides.py``: osmo-remsim-client-openwrt's variables applied;
* ``loader.py``: the cross-checks, :func:`parse_config` and :func:`load`;
* ``env.py``: the supervisor's own ``REMSIM_SUPERVISOR_*`` hooks for the lab
  and tests, never read from the file (:class:`Environment`).

``api_key`` never appears in full: not in a repr, not in a problem.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from remsim_supervisor.config.env import Environment, HookError
    from remsim_supervisor.config.loader import load, parse_config
    from remsim_supervisor.config.options import SECTIONS
    from remsim_supervisor.config.types import (
        DEFAULT_PATH,
        ENVIRONMENT,
        LOG_LEVELS,
        MAPPING_MODES,
        ROLES,
        Config,
        ConfigError,
        EscalationConfig,
        GpioSpec,
        IonmeshConfig,
        ModemConfig,
        NotifyConfig,
        Problem,
        RoutingConfig,
        SupervisorConfig,
        mask_secret,
        models,
    )

# The names above load their module when first asked for, not when the package
# is imported: a command that needs one part (``status`` reads the control
# socket's path with ``uci.py`` alone) does not pay for all of them.
_HOMES = {
    "Environment": "env", "HookError": "env",
    "load": "loader", "parse_config": "loader",
    "SECTIONS": "options",
    **{name: "types" for name in (
        "DEFAULT_PATH", "ENVIRONMENT", "LOG_LEVELS", "MAPPING_MODES", "ROLES", "Config",
        "ConfigError", "EscalationConfig", "GpioSpec", "IonmeshConfig", "ModemConfig",
        "NotifyConfig", "Problem", "RoutingConfig", "SupervisorConfig", "mask_secret",
        "models")},
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


__all__ = [
    "DEFAULT_PATH",
    "ENVIRONMENT",
    "LOG_LEVELS",
    "MAPPING_MODES",
    "ROLES",
    "SECTIONS",
    "Config",
    "ConfigError",
    "Environment",
    "EscalationConfig",
    "GpioSpec",
    "HookError",
    "IonmeshConfig",
    "ModemConfig",
    "NotifyConfig",
    "Problem",
    "RoutingConfig",
    "SupervisorConfig",
    "load",
    "mask_secret",
    "models",
    "parse_config",
]

