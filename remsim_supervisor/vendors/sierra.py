"""Sierra Wireless MC7455 / MC7430 (1199:9071) and EM7455 (1199:9079).

Qualcomm MDM9x30 parts driven by ``qcserial`` (ttyUSB) and ``qmi_wwan``.
ModemManager's Sierra rules give the layout: if 0 diag/QCDM and if 2 raw
NMEA (never open either for AT), if 3 the primary AT port; QMI network
interfaces on if 8 and if 10. There is no secondary AT port in this
composition. Other ``AT!USBCOMP`` compositions (MBIM) exist but their
interface numbers are not in the sources used here.

Commands: ``AT!RESET`` resets; the ICCID comes from ``AT!ICCID?`` (what
ModemManager's Sierra SIM code sends). Timings are not published: generic
values, to be overridden from configuration.
"""

from __future__ import annotations

from remsim_supervisor.vendors.base import (
    ROLE_AT,
    ROLE_DIAG,
    ROLE_NMEA,
    Composition,
    ModemProfile,
    Timings,
    net_port,
    rung_costs,
    serial_port,
)
from remsim_supervisor.vendors.generic import INIT_3GPP, REGISTRATION_3GPP, SIGNAL_3GPP, identity

__all__ = ["MC7455"]

VID = 0x1199
PID_MC74XX = 0x9071
PID_EM7455 = 0x9079

_VENDOR = (0xFF, 0xFF, 0xFF)


def _qmi(pid: int, label: str) -> Composition:
    return Composition(
        vid=VID,
        pid=pid,
        label=label,
        at_interface=3,
        secondary_at_interface=None,
        net_interfaces=(8, 10),
        never_open=(0, 2),  # diag and NMEA
        net_drivers=("qmi_wwan",),
        net_class=_VENDOR,
        ports=(
            serial_port(0, ROLE_DIAG, driver="qcserial"),
            serial_port(2, ROLE_NMEA, driver="qcserial"),
            serial_port(3, ROLE_AT, driver="qcserial"),
            net_port(8, "qmi_wwan", _VENDOR),
            net_port(10, "qmi_wwan", _VENDOR),
        ),
    )


MC7455 = ModemProfile(
    key="mc7455",
    vendor="Sierra Wireless",
    name="Sierra Wireless MC7455/MC7430/EM7455",
    compositions=(_qmi(PID_MC74XX, "MC74xx (QMI)"), _qmi(PID_EM7455, "EM7455 (QMI)")),
    # ATI: "Manufacturer: Sierra Wireless, Incorporated" / "Model: MC7455"
    model_patterns=(r"\b(?:MC|EM)74\d\d\b",),
    init_commands=INIT_3GPP,
    identity_commands=identity(iccid="AT!ICCID?"),
    registration_commands=REGISTRATION_3GPP,
    signal=SIGNAL_3GPP,
    soft_reset="AT!RESET",
    #          reroute ifup radio soft   usb  gpio   power
    rung_costs=rung_costs(10.0, 20.0, 45.0, 120.0, 30.0, 120.0, 130.0),
    timings=Timings(),  # nothing published for these steps: generic, configurable
)
