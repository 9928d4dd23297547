"""The registry of modem profiles: one module per vendor family, looked up here.

``PROFILES`` maps a profile key to its ``ModemProfile``; lookups go by key
(``get_profile``, from configuration), by USB or PCI id (``profile_for_usb_id``,
from sysfs) or by what the modem says about itself (``identify``, from
``AT+CGMI``/``AT+CGMM``/``ATI`` text, falling back to the generic 3GPP
profile). Everything vendor-specific lives in the vendor modules -- port
layouts, commands, the parsers of vendor answers, URC rules, timings and
recovery rung costs; callers only ever ask the profile. ``MODEL_KEYS`` is
the one list of models (configuration and planner use it), ``RUNG_COSTS``
the planner's default costs, ``ANY_URCS`` the URC table while a modem has
not said what it is.

=========  =========================  ======================================
key        module                     ids
=========  =========================  ======================================
ec25       quectel                    2c7c:0125 (usbnet 0-3), 2c7c:0121, 2c7c:0195
fm350gl    fibocom_mtk                0e8d:7126, 0e8d:7127, PCIe 14c3:4d75
l850gl     fibocom_intel              2cb7:0007, 8087:095a, 2cb7:01a0 ("850L")
mc7455     sierra                     1199:9071, 1199:9079
me909s     huawei                     12d1:15c1
generic    generic                    none: fallback for identify()
=========  =========================  ======================================
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from remsim_supervisor.core.urc import UrcTable
from remsim_supervisor.vendors.base import (
    Composition,
    ModemProfile,
    Port,
    Timings,
)
from remsim_supervisor.vendors.fibocom_intel import L850GL
from remsim_supervisor.vendors.fibocom_mtk import FM350GL
from remsim_supervisor.vendors.generic import GENERIC
from remsim_supervisor.vendors.huawei import ME909S
from remsim_supervisor.vendors.quectel import EC25
from remsim_supervisor.vendors.sierra import MC7455

__all__ = [
    "ANY_URCS",
    "MODEL_KEYS",
    "PROFILES",
    "RUNG_COSTS",
    "Composition",
    "ModemProfile",
    "Port",
    "Timings",
    "choose_profile",
    "get_profile",
    "identify",
    "known_pci_ids",
    "known_usb_ids",
    "profile_for_usb_id",
]

# Order matters for identify(): specific families first, generic never matches by pattern.
PROFILES: Mapping[str, ModemProfile] = MappingProxyType(
    {p.key: p for p in (EC25, FM350GL, L850GL, MC7455, ME909S, GENERIC)}
)

#: Every profile key, "generic" last: the one list of modem models.
MODEL_KEYS: tuple[str, ...] = tuple(PROFILES)

#: Every profile's URC rules at once: the AT engine's table until the modem
#: has said what it is (a boot banner during the probe must still be seen).
ANY_URCS: UrcTable = UrcTable(r for p in PROFILES.values() for r in p.urcs.rules)

#: Each model's recovery rung costs (rung -> seconds): the planner's defaults.
RUNG_COSTS: Mapping[str, Mapping[str, float]] = MappingProxyType(
    {key: p.rung_costs for key, p in PROFILES.items()}
)


def get_profile(key: str) -> ModemProfile:
    """The profile called ``key`` (case-insensitive); KeyError names the known keys."""
    try:
        return PROFILES[key.strip().lower()]
    except KeyError:
        known = ", ".join(PROFILES)
        raise KeyError(f"unknown modem profile {key!r}; known profiles: {known}") from None


def profile_for_usb_id(vid: int, pid: int) -> ModemProfile | None:
    """The profile that lists ``vid:pid`` in one of its compositions (USB or PCI id)."""
    for profile in PROFILES.values():
        if any(c.vid == vid and c.pid == pid for c in profile.compositions):
            return profile
    return None


def identify(text: str) -> ModemProfile:
    """The profile whose model patterns match the modem's own description.

    ``text`` is whatever identification the modem returned (``ATI``,
    ``AT+CGMI``, ``AT+CGMM``, concatenated or alone). Unknown text gives the
    generic 3GPP profile, never an exception: an unrecognised modem is still
    a modem.
    """
    for profile in PROFILES.values():
        if profile.matches(text):
            return profile
    return GENERIC


def choose_profile(model: str, text: str, by_device: ModemProfile | None = None,
                   usb_id: tuple[int, int] | None = None) -> ModemProfile:
    """The profile for a modem: the configured ``model`` key unless it is "auto"
    (or empty), else what the modem's own description ``text`` names, else
    the profile of the device it was found as (``by_device``, or its
    ``usb_id``), else the generic one."""
    if model not in ("auto", ""):
        return get_profile(model)
    profile = identify(text)
    if profile.key == "generic":
        by_id = by_device or (profile_for_usb_id(*usb_id) if usb_id is not None else None)
        if by_id is not None:
            return by_id
    return profile


def known_usb_ids() -> set[tuple[int, int]]:
    """Every USB VID:PID some profile knows (e.g. to filter hotplug events)."""
    return {c.usb_id for p in PROFILES.values() for c in p.compositions if c.bus == "usb"}


def known_pci_ids() -> set[tuple[int, int]]:
    """Every PCI vendor:device some profile knows (mtk_t7xx FM350)."""
    return {c.usb_id for p in PROFILES.values() for c in p.compositions if c.bus == "pci"}
