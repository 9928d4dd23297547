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
"""

from __future__ import annotations

from remsim_supervisor.vendors.base import (
    INIT_3GPP,
    REGISTRATION_3GPP,
    ROLE_AT,
    ROLE_AT_SECONDARY,
    ROLE_DIAG,
    ROLE_NMEA,
    Composition,
    ModemProfile,
    Port,
    Timings,
    data_port,
    identity,
    net_port,
    serial_port,
)

__all__ = ["EC25"]

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
        note="qmi_wwan needs DTR set on the control channel before data flows",
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
    note="a field report saw the AT port move in ECM mode: probe before trusting if 2",
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
    signal_commands=("AT+QCSQ", "AT+CSQ"),  # QCSQ: RSRP/SINR/RSRQ; SINR dB = raw/5 - 20
    serving_cell_command='AT+QENG="servingcell"',
    soft_reset="AT+CFUN=1,1",
    power_off="AT+QPOWD=1",
    shutdown_urcs=("POWERED DOWN",),
    boot_urcs=("RDY", "+CPIN: READY"),
    timings=Timings(
        soft_reset_answer_s=15.0,  # CFUN=1,1 answers within 15 s
        reboot_to_usb_s=12.0,  # RDY about 12 s after reset
        ready_s=120.0,  # up to 120 s until fully operational
        reset_pulse_ms=300,  # low pulse 150-460 ms, 300 typical (2nd-hand)
        power_key_ms=500,  # low at least 500 ms to start (2nd-hand)
        radio_cycle_s=15.0,  # CFUN max response time, network dependent (2nd-hand)
        power_off_s=60.0,  # QPOWD=1: wait up to 60 s for POWERED DOWN
    ),
    notes=(
        'Composition set by AT+QCFG="usbnet",<n>, effective after AT+CFUN=1,1; '
        "SIM slot by AT+QUIMSLOT=1|2 where supported."
    ),
)
