"""Huawei ME909s (12d1:15c1, LTE).

Huawei renumbers interfaces between firmware versions and port modes
(``AT^SETPORT``), so ports are found by descriptor, never by number, as
ModemManager's Huawei rules do: on a vendor-class (ff) interface,
``bInterfaceProtocol`` names the function. Two numbering schemes exist:

===========  =======  ============  =====================================
function     old      "1x" scheme   notes
===========  =======  ============  =====================================
Modem (PPP)  01       10            answers AT; kept as the second port
PCUI (AT)    02       12            the primary AT port
Diagnostics  03       13            never open
GPS (NMEA)   05       14            not an AT port; excluded
===========  =======  ============  =====================================

Sources: ModemManager's Huawei rules (ff/01/02 and ff/02/02 = AT primary,
ff/xx/01 = PPP, ff/01/05 and ff/01/14 = GPS) and a published ME909u-521
descriptor dump (ff/01/10 "Modem", ff/01/12 "PC UI Interface", ff/01/14 "GPS
Interface"). The 13 diag value follows the same scheme but is inferred. The
network interface (cdc_ether, huawei_cdc_ncm or cdc_mbim depending on the
port mode) is taken from whatever net device the device carries.

The example layout below (ECM on if 0/1, then modem, diag, PCUI, GPS)
models the ME909u dump; it is for the lab, discovery does not rely on it.

Commands: ``AT^RESET`` resets; signal ``AT^HCSQ?``; system info
``AT^SYSINFOEX``; ICCID ``AT^ICCID?`` (some firmware returns it
nibble-swapped). Huawei's application guide documents a ``^SYSSTART``
start-up URC, reported on the UART (not promised on USB): listed, harmless
if it never comes. ``^BOOT`` is a periodic report on older Huawei parts,
not a boot indication, so it is deliberately absent.
"""

from __future__ import annotations

from remsim_supervisor.vendors.base import (
    INIT_3GPP,
    REGISTRATION_3GPP,
    ROLE_AT,
    ROLE_DIAG,
    ROLE_MODEM,
    ROLE_NMEA,
    Composition,
    ModemProfile,
    Timings,
    data_port,
    identity,
    net_port,
    serial_port,
)

__all__ = ["ME909S"]

VID = 0x12D1
PID_ME909S = 0x15C1

PCUI_PROTOCOLS = (0x02, 0x12)
MODEM_PROTOCOLS = (0x01, 0x10)
DIAG_PROTOCOLS = (0x03, 0x13)
GPS_PROTOCOLS = (0x05, 0x14)

ME909S_USB = Composition(
    vid=VID,
    pid=PID_ME909S,
    label="PCUI by interface protocol",
    at_interface=None,
    secondary_at_interface=None,
    net_interfaces=(),  # depends on the port mode: any net device of the modem
    at_protocols=PCUI_PROTOCOLS,
    secondary_protocols=MODEM_PROTOCOLS,
    never_open_protocols=DIAG_PROTOCOLS + GPS_PROTOCOLS,
    ports_exact=False,
    ports=(
        net_port(0, "cdc_ether", (0x02, 0x06, 0x00)),
        data_port(1, "cdc_ether"),
        serial_port(2, ROLE_MODEM, cls=(0xFF, 0x01, 0x10)),
        serial_port(3, ROLE_DIAG, cls=(0xFF, 0x01, 0x13)),
        serial_port(4, ROLE_AT, cls=(0xFF, 0x01, 0x12)),
        serial_port(5, ROLE_NMEA, cls=(0xFF, 0x01, 0x14)),
    ),
    note="interface numbers vary with firmware and AT^SETPORT; roles come from protocols",
)

ME909S = ModemProfile(
    key="me909s",
    vendor="Huawei",
    name="Huawei ME909s",
    compositions=(ME909S_USB,),
    # ATI: "Manufacturer: Huawei Technologies Co., Ltd." / "Model: ME909s-120"
    model_patterns=(r"\bME909",),
    init_commands=INIT_3GPP,
    identity_commands=identity(iccid="AT^ICCID?"),
    registration_commands=REGISTRATION_3GPP,
    signal_commands=("AT^HCSQ?", "AT+CSQ"),
    system_info_command="AT^SYSINFOEX",
    soft_reset="AT^RESET",
    boot_urcs=("^SYSSTART", "+CPIN: READY"),
    timings=Timings(),  # nothing published for these steps: generic, configurable
)
