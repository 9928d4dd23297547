"""Quectel EC25 family (EC25/EG25/EC20 R2.1, plus EC21 and EG95 which share the layout).

USB compositions come from ``AT+QCFG="usbnet",<n>`` and all keep PID 0125:
0 QMI (default), 1 ECM, 2 MBIM, 3 RNDIS. The serial ports are ``option``
ttyUSB ports; which interface carries AT depends on the composition:

====  ===========  ======  ========  ================  ======================
mode  net (driver) AT      second    never open        source
====  ===========  ======  ========  ================  ======================
QMI   if 4 qmi_wwan  if 2  if 3      0 diag, 1 NMEA    ModemManager rules
ECM   if 4/5 cdc_ether if 2  if 3    0 diag            inferred; a field report
                                                       saw AT move: probe
MBIM  if 4/5 cdc_mbim  if 2  if 3    0 diag, 1 NMEA    MODEMS.md
RNDIS if 0/1 rndis_host if 4 if 5    2 diag, 3 NMEA    MODEMS.md (ports shift)
====  ===========  ======  ========  ================  ======================

The compositions share a PID, so discovery tells them apart by the driver
bound to the net interface (or its class triple when the driver is missing).
qmi_wwan on the EC25 needs DTR raised on the control channel before data
flows; that is the QMI adapter's business, noted here because it bites.

EC21 (2c7c:0121) and EG95 (2c7c:0195) use the QMI layout (ModemManager's
Quectel rules); their other compositions are not listed in public sources.

Read here: ``+QCSQ`` (the signal poll) and ``+QSIMSTAT`` answers; the URCs
``RDY`` (boot banner: re-probe), ``POWERED DOWN``, ``+QUSIM``/``+QSIMSTAT``
(SIM reports) and the housekeeping ones, as the profile's URC rules.
"""

from __future__ import annotations

from dataclasses import dataclass

from remsim_supervisor.core.parse.common import (
    Text,
    access_tech_from_name,
    dec,
    field_at,
    fields_after,
    norm_mode,
    sint,
)
from remsim_supervisor.core.parse.signal import parse_csq
from remsim_supervisor.core.urc import UrcRule
from remsim_supervisor.vendors.base import (
    ROLE_AT,
    ROLE_AT_SECONDARY,
    ROLE_DIAG,
    ROLE_NMEA,
    Composition,
    ModemProfile,
    Port,
    SignalQuery,
    Timings,
    data_port,
    net_port,
    rung_costs,
    serial_port,
)
from remsim_supervisor.vendors.generic import INIT_3GPP, REGISTRATION_3GPP, identity

__all__ = ["EC25", "URC_RULES", "Qcsq", "Qsimstat", "parse_qcsq", "parse_qsimstat"]


# --- answers and URCs ------------------------------------------------------------


@dataclass(frozen=True)
class Qcsq:
    """Quectel +QCSQ: the system mode and its values in dBm / dB.

    Layouts by sysmode: GSM <rssi>; WCDMA/TDSCDMA <rssi>,<rscp>,<ecio>;
    LTE/CAT-M1/CAT-NB1/eMTC/NBIoT <rssi>,<rsrp>,<sinr>,<rsrq>; NR5G
    <rsrp>,<sinr>,<rsrq>. SINR is reported raw: dB = raw/5 - 20 (Quectel).
    Some firmwares (EG21-G) print the LTE RSSI as a positive magnitude; it is
    negated, since no received power is above 0 dBm.
    """

    sysmode: str
    access_tech: str
    values: tuple[int, ...]
    rssi_dbm: int | None
    rsrp_dbm: int | None
    sinr_raw: int | None
    sinr_db: float | None
    rsrq_db: int | None
    rscp_dbm: int | None
    ecio_db: int | None
    rssi_raw: int | None  #: RSSI as printed (positive on some firmwares)


_LTE_QCSQ = ("rssi", "rsrp", "sinr", "rsrq")
_QCSQ_LAYOUT = {
    "GSM": ("rssi",), "WCDMA": ("rssi", "rscp", "ecio"), "TDSCDMA": ("rssi", "rscp", "ecio"),
    "LTE": _LTE_QCSQ, "CATM1": _LTE_QCSQ, "CATM": _LTE_QCSQ, "CATNB1": _LTE_QCSQ,
    "CATNB": _LTE_QCSQ, "EMTC": _LTE_QCSQ, "NBIOT": _LTE_QCSQ,
    "NR5G": ("rsrp", "sinr", "rsrq"), "NOSERVICE": (),
}


def parse_qcsq(text: Text) -> Qcsq | None:
    """+QCSQ: "<sysmode>"[,<values>...] (see :class:`Qcsq`)."""
    f = fields_after(text, "+QCSQ:")
    if f is None:
        return None
    mode = f[0].value
    layout = _QCSQ_LAYOUT.get(norm_mode(mode))
    if not mode or layout is None:
        return None
    values = tuple(sint(x) for x in f[1:])
    if any(v is None for v in values[:len(layout)]) or len(values) < len(layout):
        return None
    got = {name: values[i] for i, name in enumerate(layout)}
    rssi = got.get("rssi")
    if rssi is not None and rssi > 0:
        rssi = -rssi
    sinr = got.get("sinr")
    return Qcsq(
        sysmode=mode, access_tech=access_tech_from_name(mode),
        values=tuple(v for v in values if v is not None),
        rssi_dbm=rssi, rsrp_dbm=got.get("rsrp"), sinr_raw=sinr,
        sinr_db=round(sinr / 5 - 20, 2) if sinr is not None else None,
        rsrq_db=got.get("rsrq"), rscp_dbm=got.get("rscp"), ecio_db=got.get("ecio"),
        rssi_raw=got.get("rssi"),
    )


@dataclass(frozen=True)
class Qsimstat:
    """Quectel +QSIMSTAT: report setting and SIM-inserted status."""

    enabled: bool
    inserted_status: int   #: 0 removed, 1 inserted, 2 unknown

    @property
    def inserted(self) -> bool | None:
        return {0: False, 1: True}.get(self.inserted_status)


def parse_qsimstat(text: Text) -> Qsimstat | None:
    """+QSIMSTAT: <enable>,<inserted_status> (query answer and URC)."""
    f = fields_after(text, "+QSIMSTAT:")
    if f is None:
        return None
    en, st = dec(field_at(f, 0)), dec(field_at(f, 1))
    if en is None or st is None:
        return None
    return Qsimstat(en == 1, st)


def _qsimstat_report(line: str) -> str | None:
    got = parse_qsimstat(line)
    if got is None or got.inserted is None:
        return None
    return "inserted" if got.inserted else "not_inserted"


URC_RULES: tuple[UrcRule, ...] = (
    UrcRule("RDY", "boot"),
    UrcRule("POWERED DOWN", "powered_down"),
    UrcRule("+QUSIM:", "sim", lambda line: "inserted"),
    UrcRule("+QSIMSTAT:", "sim", _qsimstat_report),
    UrcRule("+QIND:", "indication"),
    UrcRule("+STKPCI:", "stk"),
    UrcRule("+QNETDEVSTATUS:", "data"),
    UrcRule("+QIURC:", "data"),
    UrcRule("+QGPSURC:", "gnss"),
    UrcRule("+QTONEDET:", "dtmf"),
)

VID = 0x2C7C
PID_EC25 = 0x0125
PID_EC21 = 0x0121
PID_EG95 = 0x0195

# Qualcomm diag is vendor class ff/ff/ff; the NMEA, AT and modem ports are ff/00/00.
_PLAIN = (0xFF, 0x00, 0x00)


def _serial_block(first: int) -> tuple[Port, ...]:
    """diag, NMEA, AT, AT-secondary on four consecutive interfaces."""
    return (
        serial_port(first, ROLE_DIAG),
        serial_port(first + 1, ROLE_NMEA, cls=_PLAIN),
        serial_port(first + 2, ROLE_AT, cls=_PLAIN),
        serial_port(first + 3, ROLE_AT_SECONDARY, cls=_PLAIN),
    )


def _qmi(pid: int) -> Composition:
    return Composition(
        vid=VID,
        pid=pid,
        label="usbnet 0 (QMI)",
        at_interface=2,
        secondary_at_interface=3,
        net_interfaces=(4,),
        never_open=(0, 1),
        net_drivers=("qmi_wwan",),
        net_class=(0xFF, 0xFF, 0xFF),
        ports=(*_serial_block(0), net_port(4, "qmi_wwan", (0xFF, 0xFF, 0xFF))),
        # qmi_wwan needs DTR set on the control channel before data flows
    )


EC25_QMI = _qmi(PID_EC25)

EC25_ECM = Composition(
    vid=VID,
    pid=PID_EC25,
    label="usbnet 1 (ECM)",
    at_interface=2,  # inferred from the other compositions; not published for ECM
    secondary_at_interface=3,
    net_interfaces=(4, 5),
    # Only diag is excluded: if the AT port moved, it may be on any other tty.
    never_open=(0,),
    probe_at=(2, 3),
    net_drivers=("cdc_ether",),
    net_class=(0x02, 0x06, 0x00),
    ports=(
        *_serial_block(0),
        net_port(4, "cdc_ether", (0x02, 0x06, 0x00)),
        data_port(5, "cdc_ether"),
    ),
    # a field report saw the AT port move in ECM mode: probe before trusting if 2
)

EC25_MBIM = Composition(
    vid=VID,
    pid=PID_EC25,
    label="usbnet 2 (MBIM)",
    at_interface=2,
    secondary_at_interface=3,
    net_interfaces=(4, 5),
    never_open=(0, 1),
    net_drivers=("cdc_mbim",),
    net_class=(0x02, 0x0E, 0x00),
    ports=(
        *_serial_block(0),
        net_port(4, "cdc_mbim", (0x02, 0x0E, 0x00)),
        data_port(5, "cdc_mbim", protocol=0x02),
    ),
)

EC25_RNDIS = Composition(
    vid=VID,
    pid=PID_EC25,
    label="usbnet 3 (RNDIS)",
    at_interface=4,  # RNDIS takes if 0/1 and shifts every serial port by two
    secondary_at_interface=5,
    net_interfaces=(0, 1),
    never_open=(2, 3),
    net_drivers=("rndis_host",),
    # Wireless controller / RF / RNDIS: the class Linux's rndis_host matches.
    net_class=(0xE0, 0x01, 0x03),
    ports=(
        net_port(0, "rndis_host", (0xE0, 0x01, 0x03)),
        data_port(1, "rndis_host"),
        *_serial_block(2),
    ),
)

EC25 = ModemProfile(
    key="ec25",
    vendor="Quectel",
    name="Quectel EC25/EG25/EC20 R2 (also EC21, EG95)",
    # QMI first: it is the factory default and wins when nothing else decides.
    compositions=(EC25_QMI, EC25_ECM, EC25_MBIM, EC25_RNDIS, _qmi(PID_EC21), _qmi(PID_EG95)),
    # ATI answers "Quectel\r\nEC25\r\nRevision: EC25EFAR06A09M4G"; CGMM just "EC25".
    model_patterns=(r"\bE[CG]2[015]\b", r"\bE[CG]2[015][A-Z]{2,}", r"\bEG9[15]\b"),
    init_commands=INIT_3GPP,
    identity_commands=identity(iccid="AT+QCCID"),
    registration_commands=REGISTRATION_3GPP,
    # QCSQ: RSRP/SINR/RSRQ; SINR dB = raw/5 - 20
    signal=(SignalQuery("AT+QCSQ", parse_qcsq), SignalQuery("AT+CSQ", parse_csq)),
    soft_reset="AT+CFUN=1,1",
    urc_rules=URC_RULES,
    #          reroute ifup radio soft   usb  gpio   power
    rung_costs=rung_costs(10.0, 20.0, 45.0, 120.0, 30.0, 120.0, 130.0),
    timings=Timings(
        soft_reset_answer_s=15.0,  # CFUN=1,1 answers within 15 s
        reboot_to_usb_s=12.0,  # RDY about 12 s after reset
        ready_s=120.0,  # up to 120 s until fully operational
        reset_pulse_ms=300,  # low pulse 150-460 ms, 300 typical (2nd-hand)
        radio_cycle_s=15.0,  # CFUN max response time, network dependent (2nd-hand)
    ),
    # Composition set by AT+QCFG="usbnet",<n>, effective after AT+CFUN=1,1; SIM slot by
    # AT+QUIMSLOT=1|2 where supported.
)
