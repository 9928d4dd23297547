"""Fibocom L850-GL (Intel XMM7360, LTE) and the design's "Fibocom 850L".

The L850 exposes CDC-ACM ports (``ttyACMn``); ``AT+GTUSBMODE`` picks the
composition and ``AT+CFUN=15`` applies it:

=====================  =========  ====  ======  ==========  ==================
mode                   id         AT    second  never open  net
=====================  =========  ====  ======  ==========  ==================
GTUSBMODE 7 (MBIM)     2cb7:0007  if 2  if 6    if 4 debug  if 0/1 cdc_mbim
GTUSBMODE 0 (NCM)      8087:095a  if 0  if 4    if 2 mute   if 6/8/10 cdc_ncm
=====================  =========  ====  ======  ==========  ==================

Source: ModemManager's Fibocom port rules. Interface 4 of 2cb7:0007 is a
debug port that must never be opened; interface 2 of 8087:095a does not
answer AT (ModemManager ignores it). In NCM mode three cdc_ncm interfaces
appear; only one carries data (OpenWrt scripts pick it by MAC
00:00:11:12:13:14), so all are reported in interface order.

The dual-modem design calls its IoT modem "Fibocom 850L" with id 2cb7:01a0.
Public sources do not confirm that: ModemManager assigns 2cb7:01a0 to the
Fibocom NL668-AM (Qualcomm; AT on if 2, second AT on if 3, if 4 ignored). As
MODEMS.md asks, the id is treated like the L850 MBIM layout, and both
readings agree on AT if 2 and never-open if 4, but the composition is marked
for probing (if 2, then 3, then 6) and ``identify()`` on the modem's own
answer has the last word. The configuration can add further ids
(``ModemProfile.with_usb_id``).

Behaviour worth knowing: ``AT+CFUN=16`` resets; back on USB after 5-10 s;
``AT+CFUN=1`` can leave the modem stuck at ``+CFUN: 4,0`` (the radio cycle
must verify the state it reached). Signal comes from ``AT+XCESQ?``.

Read here: ``+XCESQ`` (the signal poll) and its unsolicited form ``+XCESQI``;
``+XSIM`` SIM reports and ``+XNITZINFO`` as the profile's URC rules.
"""

from __future__ import annotations

from dataclasses import dataclass

from remsim_supervisor.core.parse.common import Text, after_prefix, sint, split_fields
from remsim_supervisor.core.parse.signal import Cesq, cesq_values, parse_csq
from remsim_supervisor.core.urc import UrcRule
from remsim_supervisor.vendors.base import (
    ROLE_AT,
    ROLE_AT_SECONDARY,
    ROLE_DEBUG,
    ROLE_UNKNOWN,
    Composition,
    ModemProfile,
    Port,
    SignalQuery,
    Timings,
    acm_port,
    data_port,
    net_port,
    rung_costs,
)
from remsim_supervisor.vendors.generic import INIT_3GPP, REGISTRATION_3GPP, identity

__all__ = ["L850GL", "URC_RULES", "Xcesq", "parse_xcesq"]


# --- answers and URCs ------------------------------------------------------------


@dataclass(frozen=True)
class Xcesq(Cesq):
    """Intel/Fibocom L850 +XCESQ: +CESQ's levels plus <n> and the LTE RS-SNR.

    RS-SNR level -100..100 is in half dB (ModemManager's rule); 255 = unknown.
    """

    n: int | None = None
    rssnr_level: int | None = None
    rssnr_db: float | None = None


def parse_xcesq(text: Text) -> Xcesq | None:
    """+XCESQ: <n>,<rxlev>,<ber>,<rscp>,<ecno>,<rsrq>,<rsrp>,<rssnr> (query) or
    +XCESQI: the same without <n> (URC)."""
    found = after_prefix(text, "+XCESQ:", "+XCESQI:")
    if found is None:
        return None
    prefix, body = found
    raw = [sint(x) for x in split_fields(body)]
    n: int | None = None
    if prefix.upper() == "+XCESQ:":
        if len(raw) < 8:
            return None
        n, raw = raw[0], raw[1:]
    if len(raw) < 7 or any(v is None or v < 0 for v in raw[:6]) or raw[6] is None:
        return None
    vals = [v for v in raw[:6] if v is not None]
    snr = raw[6]
    snr_db = snr / 2.0 if snr is not None and -100 <= snr <= 100 else None
    return Xcesq(vals[0], vals[1], vals[2], vals[3], vals[4], vals[5], **cesq_values(vals),
                 n=n, rssnr_level=snr, rssnr_db=snr_db)


URC_RULES: tuple[UrcRule, ...] = (
    UrcRule("+XSIM:", "sim"),
    UrcRule("+XCESQI:", "signal", parse_xcesq),
    UrcRule("+XNITZINFO:", "nitz"),
)

VID_FIBOCOM = 0x2CB7
VID_INTEL = 0x8087
PID_MBIM = 0x0007
PID_NCM = 0x095A
PID_850L = 0x01A0  # the design's "850L"; ModemManager: NL668-AM

_MBIM = (0x02, 0x0E, 0x00)
_NCM = (0x02, 0x0D, 0x00)
# CDC-ACM "modem" subclass; protocol 1 = AT commands, 0 = none declared.
_ACM_AT = (0x02, 0x02, 0x01)
_ACM_NONE = (0x02, 0x02, 0x00)

_MBIM_PORTS: tuple[Port, ...] = (
    net_port(0, "cdc_mbim", _MBIM),
    data_port(1, "cdc_mbim", protocol=0x02),
    acm_port(2, ROLE_AT, cls=_ACM_AT),
    data_port(3, "cdc_acm"),
    acm_port(4, ROLE_DEBUG, cls=_ACM_NONE),
    data_port(5, "cdc_acm"),
    acm_port(6, ROLE_AT_SECONDARY, cls=_ACM_AT),
    data_port(7, "cdc_acm"),
)

L850_MBIM = Composition(
    vid=VID_FIBOCOM,
    pid=PID_MBIM,
    label="GTUSBMODE 7 (MBIM)",
    at_interface=2,
    secondary_at_interface=6,
    net_interfaces=(0, 1),
    never_open=(4,),  # debug port: never open it
    net_drivers=("cdc_mbim",),
    net_class=_MBIM,
    ports=_MBIM_PORTS,
)

L850_NCM = Composition(
    vid=VID_INTEL,
    pid=PID_NCM,
    label="GTUSBMODE 0 (NCM)",
    at_interface=0,
    secondary_at_interface=4,
    net_interfaces=(6, 8, 10),
    never_open=(2,),  # does not answer AT; ModemManager ignores it
    net_drivers=("cdc_ncm",),
    net_class=_NCM,
    ports=(
        acm_port(0, ROLE_AT, cls=_ACM_AT),
        data_port(1, "cdc_acm"),
        acm_port(2, ROLE_UNKNOWN, cls=_ACM_NONE),
        data_port(3, "cdc_acm"),
        acm_port(4, ROLE_AT_SECONDARY, cls=_ACM_NONE),
        data_port(5, "cdc_acm"),
        net_port(6, "cdc_ncm", _NCM),
        data_port(7, "cdc_ncm", protocol=0x01),
        net_port(8, "cdc_ncm", _NCM),
        data_port(9, "cdc_ncm", protocol=0x01),
        net_port(10, "cdc_ncm", _NCM),
        data_port(11, "cdc_ncm", protocol=0x01),
        Port(12, ROLE_UNKNOWN, None, 0xFF, 0xFF, 0xFF),  # vendor specific, unbound
    ),
)

L850_850L = Composition(
    vid=VID_FIBOCOM,
    pid=PID_850L,
    label="850L (assumed L850 MBIM layout)",
    at_interface=2,
    secondary_at_interface=6,
    net_interfaces=(0, 1),
    never_open=(4,),
    probe_at=(2, 3, 6),  # L850 MBIM says AT 2 / 6; the NL668-AM rules say AT 2 / 3
    net_drivers=("cdc_mbim",),
    net_class=_MBIM,
    ports=_MBIM_PORTS,
    ports_exact=False,  # assumed layout: no fingerprint
    # layout unconfirmed by public sources (ModemManager lists 2cb7:01a0 as NL668-AM): probe
)

L850GL = ModemProfile(
    key="l850gl",
    vendor="Fibocom",
    name="Fibocom L850-GL / 850L",
    compositions=(L850_MBIM, L850_NCM, L850_850L),
    # AT+CGMI "Fibocom..."; AT+CGMM "L850 LTE Module" (OpenWrt atc scripts), "L850-GL" in docs.
    model_patterns=(r"\bL850\b", r"\b850L\b"),
    init_commands=INIT_3GPP,
    identity_commands=identity(iccid="AT+CCID"),  # +CCID in Fibocom's L8-family manual
    registration_commands=REGISTRATION_3GPP,
    signal=(SignalQuery("AT+XCESQ?", parse_xcesq), SignalQuery("AT+CSQ", parse_csq)),
    soft_reset="AT+CFUN=16",
    urc_rules=URC_RULES,
    #          reroute ifup radio soft   usb  gpio   power
    rung_costs=rung_costs(10.0, 20.0, 60.0, 60.0, 30.0, 60.0, 70.0),
    timings=Timings(
        soft_reset_answer_s=15.0,  # not published: the generic value
        reboot_to_usb_s=10.0,  # 5-10 s: the upper end
        ready_s=60.0,  # not published: a guess, override from configuration
        reset_pulse_ms=None,  # unknown: must be configured
    ),
    # AT+CFUN=1 can stick at '+CFUN: 4,0': verify the radio state after a cycle.
)
