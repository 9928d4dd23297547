"""The generic 3GPP profile and the 27.007 command sets every vendor profile starts from."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from remsim_supervisor.core.parse.signal import parse_cesq, parse_csq
from remsim_supervisor.vendors.base import ModemProfile, SignalQuery, Timings

__all__ = [
    "GENERIC",
    "IDENTITY_3GPP",
    "INIT_3GPP",
    "INIT_3GPP_5G",
    "REGISTRATION_3GPP",
    "REGISTRATION_3GPP_5G",
    "SIGNAL_3GPP",
    "identity",
]


INIT_3GPP: tuple[str, ...] = (
    "ATE0",  # no echo: the AT engine matches responses, not our own text
    "AT+CMEE=1",  # numeric +CME ERROR codes
    "AT+CREG=2",  # registration URCs with LAC/CI
    "AT+CGREG=2",
    "AT+CEREG=2",
)
INIT_3GPP_5G: tuple[str, ...] = (*INIT_3GPP, "AT+C5GREG=2")

REGISTRATION_3GPP: tuple[str, ...] = ("AT+CEREG?", "AT+CGREG?", "AT+CREG?")
REGISTRATION_3GPP_5G: tuple[str, ...] = ("AT+C5GREG?", *REGISTRATION_3GPP)

IDENTITY_3GPP: Mapping[str, str] = MappingProxyType(
    {
        "manufacturer": "AT+CGMI",
        "model": "AT+CGMM",
        "revision": "AT+CGMR",
        "imei": "AT+CGSN",
        "imsi": "AT+CIMI",
        "iccid": "AT+CCID",
    }
)


SIGNAL_3GPP: tuple[SignalQuery, ...] = (
    SignalQuery("AT+CESQ", parse_cesq),
    SignalQuery("AT+CSQ", parse_csq),
)


def identity(**overrides: str) -> Mapping[str, str]:
    """The 3GPP identity commands with vendor replacements (usually the ICCID)."""
    return MappingProxyType({**IDENTITY_3GPP, **overrides})


GENERIC = ModemProfile(
    key="generic",
    vendor="generic",
    name="Generic 3GPP modem",
    compositions=(),
    model_patterns=(),
    init_commands=INIT_3GPP,
    identity_commands=IDENTITY_3GPP,
    registration_commands=REGISTRATION_3GPP,
    signal=SIGNAL_3GPP,
    soft_reset="AT+CFUN=1,1",  # 27.007 "full functionality, reset first"
    timings=Timings(),
    # Fallback when identify() recognises nothing; conservative timings.
)
