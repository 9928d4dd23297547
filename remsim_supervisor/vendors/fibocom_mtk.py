"""Fibocom FM350-GL (MediaTek T700, 5G), on USB or PCIe.

USB compositions come from ``AT+GTUSBMODE``: 40 enumerates as 0e8d:7126 with
the AT port on if 4, 41 as 0e8d:7127 with the AT port on if 6 (if 5 is ADB);
both put RNDIS on if 0/1. ModemManager has no port rules for these ids, and
kernels before 6.11 need the id written to the ``option`` driver's
``new_id`` before any ttyUSB appears (OpenWrt packages do it from hotplug).
What the other serial interfaces carry is not published: they are laid out
as "unknown" and never probed.

On PCIe the modem is 14c3:4d75 driven by ``mtk_t7xx``; there are no ttys: the
WWAN core exposes character devices (``/dev/wwan0at0``, ``/dev/wwan0mbim0``)
and a ``wwan0`` network device. Discovery finds them through
``/sys/class/wwan`` (see ``discovery``).

Behaviour worth knowing (MODEMS.md): ``AT+CFUN=15`` resets; after a crash the
modem is back on USB in about 2 s; with an empty eUICC ``AT+CPIN?`` answers
``+CPIN: EMPTY_EUICC``; writes to a dead FM350 tty can make ``close()`` block
for about 30 s, so port I/O must never run where it can stall the supervisor
(the serial adapter closes ports off-thread).

URC rules: ``+GTSIMINS`` and ``+ESIMS`` SIM reports (unverified against a
manual; harmless, since a command's own prefix always wins).
"""

from __future__ import annotations

from dataclasses import replace

from remsim_supervisor.core.urc import UrcRule
from remsim_supervisor.vendors.base import (
    ROLE_ADB,
    ROLE_AT,
    ROLE_UNKNOWN,
    Composition,
    ModemProfile,
    Port,
    Timings,
    data_port,
    net_port,
    rung_costs,
    serial_port,
)
from remsim_supervisor.vendors.generic import (
    INIT_3GPP_5G,
    REGISTRATION_3GPP_5G,
    SIGNAL_3GPP,
    identity,
)

__all__ = ["FM350GL", "URC_RULES"]


#: SIM reports (unverified against a manual: a command's own prefix always wins).
URC_RULES: tuple[UrcRule, ...] = (
    UrcRule("+GTSIMINS:", "sim"),
    UrcRule("+ESIMS:", "sim"),
)

VID_USB = 0x0E8D
PID_MODE40 = 0x7126
PID_MODE41 = 0x7127
VID_PCI = 0x14C3
PID_PCI = 0x4D75

# RNDIS class triple as rndis_host matches it. The FM350's own descriptors are
# not published: the triple only shapes the lab tree, it is no fingerprint.
_RNDIS = (0xE0, 0x01, 0x03)

#: The RNDIS function and the two serial ports before the AT port, in either mode.
_RNDIS_HEAD: tuple[Port, ...] = (
    net_port(0, "rndis_host", _RNDIS),
    data_port(1, "rndis_host"),
    serial_port(2, ROLE_UNKNOWN),
    serial_port(3, ROLE_UNKNOWN),
)

FM350_MODE40 = Composition(
    vid=VID_USB,
    pid=PID_MODE40,
    label="GTUSBMODE 40 (RNDIS)",
    at_interface=4,
    secondary_at_interface=None,
    net_interfaces=(0, 1),
    net_drivers=("rndis_host",),
    ports_exact=False,  # only if 0/1 and the AT interface are published
    ports=(
        *_RNDIS_HEAD,
        serial_port(4, ROLE_AT),
        serial_port(5, ROLE_UNKNOWN),
    ),
    # serial ports bind to option only after new_id on kernels < 6.11
)

# AT is the 4th ttyUSB (if 2, 3, 4, 6 are serial); serial needs new_id on kernels < 6.11
FM350_MODE41 = replace(
    FM350_MODE40,
    pid=PID_MODE41,
    label="GTUSBMODE 41 (RNDIS + ADB)",
    at_interface=6,
    ports=(
        *_RNDIS_HEAD,
        serial_port(4, ROLE_UNKNOWN),
        Port(5, ROLE_ADB, None, 0xFF, 0x42, 0x01),  # ADB: no kernel driver, no tty
        serial_port(6, ROLE_AT),
    ),
)

FM350_PCIE = Composition(
    vid=VID_PCI,
    pid=PID_PCI,
    label="PCIe (mtk_t7xx, wwan ports)",
    at_interface=None,  # the AT port is the wwan character device of type AT
    secondary_at_interface=None,
    net_interfaces=(),  # the wwan0 netdev hangs off the WWAN device, not an interface
    bus="pci",
    # AT over /dev/wwan0at0, control over /dev/wwan0mbim0, data on wwan0
)

FM350GL = ModemProfile(
    key="fm350gl",
    vendor="Fibocom",
    name="Fibocom FM350-GL",
    compositions=(FM350_MODE40, FM350_MODE41, FM350_PCIE),
    # ATI: "Manufacturer: Fibocom Wireless Inc." / "Model: FM350-GL"
    model_patterns=(r"\bFM350\b",),
    init_commands=INIT_3GPP_5G,
    # +ICCID is the usual Fibocom form; not confirmed for the FM350 (2nd-hand):
    # fall back to base.ICCID_CRSM_FALLBACK when it errors.
    identity_commands=identity(iccid="AT+ICCID"),
    registration_commands=REGISTRATION_3GPP_5G,
    signal=SIGNAL_3GPP,
    soft_reset="AT+CFUN=15",
    # No vendor boot banner is published: an unsolicited SIM ready while the
    # SIM was ready already is the sign of a restart (the modem task's rule).
    urc_rules=URC_RULES,
    #          reroute ifup radio soft   usb  gpio   power
    rung_costs=rung_costs(10.0, 20.0, 45.0, 60.0, 30.0, 60.0, 70.0),
    timings=Timings(
        soft_reset_answer_s=15.0,  # not published: the generic value
        reboot_to_usb_s=2.0,  # about 2 s back on USB after a crash
        ready_s=60.0,  # not published: a guess, override from configuration
        reset_pulse_ms=None,  # unknown: must be configured before GPIO resets
    ),
    # AT+GTUSBMODE 40/41 RNDIS, 29 MBIM (29 not listed: ids unpublished); +CPIN: EMPTY_EUICC with
    # an empty eUICC.
)
