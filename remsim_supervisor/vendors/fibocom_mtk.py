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
(``Timings.close_stall_s``). Data state is queried with ``AT+GTRNDIS?``.
"""

from __future__ import annotations

from remsim_supervisor.vendors.base import (
    INIT_3GPP_5G,
    REGISTRATION_3GPP_5G,
    ROLE_ADB,
    ROLE_AT,
    ROLE_UNKNOWN,
    Composition,
    ModemProfile,
    Port,
    Timings,
    data_port,
    identity,
    net_port,
    serial_port,
)

__all__ = ["FM350GL"]

VID_USB = 0x0E8D
PID_MODE40 = 0x7126
PID_MODE41 = 0x7127
VID_PCI = 0x14C3
PID_PCI = 0x4D75

# RNDIS class triple as rndis_host matches it. The FM350's own descriptors are
# not published: the triple only shapes the lab tree, it is no fingerprint.
_RNDIS = (0xE0, 0x01, 0x03)

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
        net_port(0, "rndis_host", _RNDIS),
        data_port(1, "rndis_host"),
        serial_port(2, ROLE_UNKNOWN),
        serial_port(3, ROLE_UNKNOWN),
        serial_port(4, ROLE_AT),
        serial_port(5, ROLE_UNKNOWN),
    ),
    note="serial ports bind to option only after new_id on kernels < 6.11",
)

FM350_MODE41 = Composition(
    vid=VID_USB,
    pid=PID_MODE41,
    label="GTUSBMODE 41 (RNDIS + ADB)",
    at_interface=6,
    secondary_at_interface=None,
    net_interfaces=(0, 1),
    net_drivers=("rndis_host",),
    ports_exact=False,  # only if 0/1 and the AT interface are published
    ports=(
        net_port(0, "rndis_host", _RNDIS),
        data_port(1, "rndis_host"),
        serial_port(2, ROLE_UNKNOWN),
        serial_port(3, ROLE_UNKNOWN),
        serial_port(4, ROLE_UNKNOWN),
        Port(5, ROLE_ADB, None, 0xFF, 0x42, 0x01),  # ADB: no kernel driver, no tty
        serial_port(6, ROLE_AT),
    ),
    note="AT is the 4th ttyUSB (if 2, 3, 4, 6 are serial); serial needs new_id on kernels < 6.11",
)

FM350_PCIE = Composition(
    vid=VID_PCI,
    pid=PID_PCI,
    label="PCIe (mtk_t7xx, wwan ports)",
    at_interface=None,  # the AT port is the wwan character device of type AT
    secondary_at_interface=None,
    net_interfaces=(),  # the wwan0 netdev hangs off the WWAN device, not an interface
    bus="pci",
    note="AT over /dev/wwan0at0, control over /dev/wwan0mbim0, data on wwan0",
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
    signal_commands=("AT+CESQ", "AT+CSQ"),
    data_state_command="AT+GTRNDIS?",
    soft_reset="AT+CFUN=15",
    # No vendor boot banner is published; unsolicited SIM ready is the sign.
    boot_urcs=("+CPIN: READY",),
    timings=Timings(
        soft_reset_answer_s=15.0,  # not published: the generic value
        reboot_to_usb_s=2.0,  # about 2 s back on USB after a crash
        ready_s=60.0,  # not published: a guess, override from configuration
        reset_pulse_ms=None,  # unknown: must be configured before GPIO resets
        power_key_ms=None,
        close_stall_s=30.0,  # close() of a dead FM350 tty blocks about 30 s
    ),
    notes=(
        "AT+GTUSBMODE 40/41 RNDIS, 29 MBIM (29 not listed: ids unpublished); "
        "+CPIN: EMPTY_EUICC with an empty eUICC."
    ),
)
