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

Commands: ``AT^RESET`` resets; signal ``AT^HCSQ?`` (also sent unsolicited);
ICCID ``AT^ICCID?`` (some firmware returns it
nibble-swapped). Huawei's application guide documents a ``^SYSSTART``
start-up URC, reported on the UART (not promised on USB): listed, harmless
if it never comes. ``^BOOT`` is a periodic report on older Huawei parts,
not a boot indication, so it is deliberately absent.

Read here: ``^HCSQ`` (the signal poll, also sent unsolicited) and the URCs
``^SYSSTART`` (boot banner), ``^SIMST`` (SIM report) and the ``^MODE``,
``^SRVST``, call and data reports, as the profile's URC rules.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from remsim_supervisor.core.parse.common import (
    Text,
    access_tech_from_name,
    dec,
    fields_after,
    level,
)
from remsim_supervisor.core.parse.signal import parse_csq
from remsim_supervisor.core.urc import UrcRule
from remsim_supervisor.vendors.base import (
    ROLE_AT,
    ROLE_DIAG,
    ROLE_MODEM,
    ROLE_NMEA,
    Composition,
    ModemProfile,
    SignalQuery,
    Timings,
    data_port,
    net_port,
    rung_costs,
    serial_port,
)
from remsim_supervisor.vendors.generic import INIT_3GPP, REGISTRATION_3GPP, identity

__all__ = ["ME909S", "URC_RULES", "Hcsq", "parse_hcsq"]


# --- answers and URCs ------------------------------------------------------------


@dataclass(frozen=True)
class Hcsq:
    """Huawei ^HCSQ: sysmode, raw values (five, zero-filled) and their meaning.

    Huawei's scales: RSSI/RSCP -120 + v dBm, RSRP -140 + v dBm, SINR
    -20 + v/5 dB, RSRQ -19.5 + v/2 dB, Ec/Io -32 + v/2 dB; 255 = unknown.
    "NOSERVICE" parses, with ``has_service`` false and no values.
    """

    sysmode: str
    access_tech: str
    values: tuple[int, int, int, int, int]
    rssi_dbm: float | None
    rscp_dbm: float | None
    ecio_db: float | None
    rsrp_dbm: float | None
    sinr_db: float | None
    rsrq_db: float | None

    @property
    def has_service(self) -> bool:
        return self.access_tech != "unknown"


def parse_hcsq(text: Text) -> Hcsq | None:
    """^HCSQ: "<sysmode>"[,<v1>[,<v2>[,<v3>[,<v4>[,<v5>]]]]] (quotes optional)."""
    f = fields_after(text, "^HCSQ:")
    if f is None:
        return None
    mode = f[0].value
    if not mode or not re.fullmatch(r"[A-Za-z0-9+\-]+", mode):
        return None
    raw = [dec(x) for x in f[1:6]]
    if any(v is None for v in raw):
        return None
    v = [x for x in raw if x is not None] + [0] * (5 - len(raw))
    tech = access_tech_from_name(mode)
    vals = (v[0], v[1], v[2], v[3], v[4])
    out: dict[str, float | None] = dict.fromkeys(
        ("rssi_dbm", "rscp_dbm", "ecio_db", "rsrp_dbm", "sinr_db", "rsrq_db"))
    if tech in ("gsm", "umts", "lte", "tdscdma") and len(raw) >= 1:
        out["rssi_dbm"] = level(v[0], 96, -120.0, 1.0)
    if tech in ("umts", "tdscdma") and len(raw) >= 3:
        out["rscp_dbm"] = level(v[1], 96, -120.0, 1.0)
        out["ecio_db"] = level(v[2], 65, -32.0, 0.5)
    if tech == "lte" and len(raw) >= 4:
        out["rsrp_dbm"] = level(v[1], 97, -140.0, 1.0)
        out["sinr_db"] = level(v[2], 251, -20.0, 0.2)
        out["rsrq_db"] = level(v[3], 34, -19.5, 0.5)
    if out["sinr_db"] is not None:
        out["sinr_db"] = round(out["sinr_db"], 1)
    return Hcsq(sysmode=mode, access_tech=tech, values=vals, **out)


def _simst(line: str) -> str | None:
    """^SIMST: <state>[,<lock>]: 1 is a valid SIM, 255 none."""
    state = dec(line.partition(":")[2].split(",")[0])
    return {1: "ready", 255: "not_inserted"}.get(state if state is not None else -1)


URC_RULES: tuple[UrcRule, ...] = (
    UrcRule("^SYSSTART", "boot"),
    UrcRule("^SIMST:", "sim", _simst),
    UrcRule("^STIN:", "stk"),
    UrcRule("^MODE:", "mode"),
    UrcRule("^SRVST:", "service"),
    UrcRule("^HCSQ:", "signal", parse_hcsq),
    *(UrcRule(p, "signal") for p in ("^RSSI:", "^CSNR:", "^RSSILVL:", "^HRSSILVL:")),
    UrcRule("^NWTIME:", "nitz"),
    *(UrcRule(p, "call") for p in ("^ORIG:", "^CONF:", "^CONN:", "^CEND:")),
    UrcRule("^NDISSTAT:", "data"),
    UrcRule("^DSFLOWRPT:", "data"),
    UrcRule("^BOOT:", "heartbeat"),
)

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
    # interface numbers vary with firmware and AT^SETPORT; roles come from protocols
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
    signal=(SignalQuery("AT^HCSQ?", parse_hcsq), SignalQuery("AT+CSQ", parse_csq)),
    soft_reset="AT^RESET",
    urc_rules=URC_RULES,
    #          reroute ifup radio soft   usb  gpio   power
    rung_costs=rung_costs(10.0, 20.0, 45.0, 120.0, 30.0, 120.0, 130.0),
    timings=Timings(),  # nothing published for these steps: generic, configurable
)
