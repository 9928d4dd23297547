"""What each emulated modem model says: the reply data behind lab.emulator.

The emulator (``remsim_lab.emulator``) speaks 3GPP TS 27.007 and
ITU-T V.250 for every model; a :class:`Dialect` holds what differs between
models, as data: identification strings, the vendor's ICCID/signal/reset
commands, the unsolicited lines sent at boot and on SIM events, and the small
formatting quirks seen in real captures (a missing space after ``+COPS:``, a
padded cell id). No ``if model == ...`` lives in the emulator; it asks the
dialect.

Where the data comes from (and how sure it is):

* ``/work/shared/data/at_corpus/public.jsonl`` and ``spec/MODEMS.md``: reply
  shapes (``+QCSQ``, ``+QENG``, ``+XCESQ``, ``^HCSQ``, ``+GTRNDIS``, the URCs
  ``RDY``, ``+QUSIM: 1``, ``+SIM READY``, ``+SIM: Removed``), reset commands.
* Public captures from users of the modems (OpenWrt forum, luci-app-3ginfo-lite
  and mrhaav/openwrt-packages issues): FM350-GL's ``+CGMI: "Fibocom Wireless
  Inc."``, ``+COPS:0,2,"25001",7``, ``+CSQ: 9, 99``, ``+CGREG: ...,7,"FF"``;
  L850-GL's ``L850 LTE Module`` and ``18500.5001.00.05.27.xx`` firmware.
* Quectel's EC25/EC21 AT manual and EC25 logs posted on Quectel's forum: the
  ATI layout, the boot URC order, ``+QCCID``.
* Marked ``UNCERTAIN`` below: values chosen from general knowledge of the
  vendor family without a capture of that exact model. Keep the supervisor's
  logic independent of them (e.g. poll ``AT+CPIN?`` rather than trust a URC).

Replace a field with ``dataclasses.replace(DIALECTS["ec25"], ...)`` to model
another firmware; the emulator accepts a Dialect as well as a name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

__all__ = ["DIALECTS", "Dialect", "get_dialect"]


@dataclass(frozen=True)
class Dialect:
    """One modem model's replies. Commands are keyed in upper case, without
    the leading ``AT`` (``"+CGMI"``, ``"+QCFG=\\"USBNET\\""``, ``"I"``)."""

    name: str
    manufacturer: str
    model: str
    revision: str
    # Fixed answers (identity and vendor queries). Lines are str.format
    # templates over imei, imsi, iccid, manufacturer, model, revision.
    replies: Mapping[str, tuple[str, ...]]
    # Same, but the answer needs a readable SIM (IMSI, ICCID): without one the
    # modem answers +CME ERROR: 10, with a PIN pending +CME ERROR: 11.
    sim_replies: Mapping[str, tuple[str, ...]]
    # Vendor commands the dialect understands beyond plain 27.007 (the
    # emulator has one handler per name): CESQ, QCSQ, QENG, QSIMSTAT, QPOWD,
    # XCESQ, HCSQ, SYSINFOEX, GTRNDIS, C5GREG.
    features: frozenset[str]
    # Sent once the port is up and the firmware is ready ("RDY" on Quectel).
    boot_urcs: tuple[str, ...]
    # Sent when the SIM becomes readable (at boot, on insertion, after PIN).
    sim_ready_urcs: tuple[str, ...]
    # Sent when the SIM asks for its PIN (at boot or on insertion).
    sim_pin_urcs: tuple[str, ...]
    sim_removed_urcs: tuple[str, ...]
    sim_inserted_urcs: tuple[str, ...]
    # Commands (upper case, no "AT") that answer OK and then reset the modem.
    soft_reset: tuple[str, ...]
    # Formatting quirks of real firmware.
    cops_prefix: str = "+COPS: "
    csq_separator: str = ","
    cfun_query: str = "+CFUN: {fun}"
    reg_act: bool = True            # +CxREG with <n>=2 carries <AcT>
    ci_digits: int = 0              # pad the cell id to this many hex digits
    cgreg_rac: str | None = None    # routing area code appended to +CGREG
    unknown_is_cme: bool = False    # unknown command -> +CME ERROR when CMEE>0
    # Real timings, used by the CLI's --realistic (tests use tiny values).
    typical_reset_down_s: float = 5.0   # port absent during a reset
    typical_boot_s: float = 5.0         # port present -> boot URCs
    typical_register_s: float = 10.0    # radio on -> registered
    notes: str = ""


def _ro(d: dict[str, tuple[str, ...]]) -> Mapping[str, tuple[str, ...]]:
    return MappingProxyType(d)


# The 27.007/V.250 identity commands every dialect answers the same way
# unless it overrides them.
_STD_REPLIES: dict[str, tuple[str, ...]] = {
    "+CGMI": ("{manufacturer}",),
    "+GMI": ("{manufacturer}",),
    "+CGMM": ("{model}",),
    "+GMM": ("{model}",),
    "+CGMR": ("{revision}",),
    "+GMR": ("{revision}",),
    "+CGSN": ("{imei}",),
    "+GSN": ("{imei}",),
}
_STD_SIM_REPLIES: dict[str, tuple[str, ...]] = {
    "+CIMI": ("{imsi}",),
    "+CCID": ("+CCID: {iccid}",),
}


EC25 = Dialect(
    name="ec25",
    manufacturer="Quectel",
    model="EC25",
    revision="EC25EFAR06A09M4G",
    replies=_ro({
        **_STD_REPLIES,
        # ATI layout as in Quectel's manual and RIL logs:
        # Quectel / EC25 / Revision: <fw>.
        "I": ("{manufacturer}", "{model}", "Revision: {revision}"),
        "I0": ("{manufacturer}", "{model}", "Revision: {revision}"),
        '+QCFG="USBNET"': ('+QCFG: "usbnet",0',),
        "+QUIMSLOT?": ("+QUIMSLOT: 1",),
        "+QDSIM?": ("+QDSIM: 0",),
    }),
    sim_replies=_ro({
        **_STD_SIM_REPLIES,
        "+QCCID": ("+QCCID: {iccid}",),
    }),
    features=frozenset({"QCSQ", "QENG", "QSIMSTAT", "QPOWD"}),
    # The order seen in EC25 boot logs: RDY when the AT port is ready, then
    # +CFUN: 1, +CPIN: READY, +QUSIM: 1, then SMS/phonebook done (on a real
    # modem spread over seconds; sent together here).
    boot_urcs=("RDY", "+CFUN: 1"),
    sim_ready_urcs=("+CPIN: READY", "+QUSIM: 1", "+QIND: SMS DONE", "+QIND: PB DONE"),
    sim_pin_urcs=("+CPIN: SIM PIN",),
    # UNCERTAIN: with SIM hot-plug detection (AT+QSIMDET=1,x) Quectel reports
    # "+CPIN: NOT READY" on removal; +QSIMSTAT is only sent when enabled with
    # AT+QSIMSTAT=1 (the emulator gates it).
    sim_removed_urcs=("+CPIN: NOT READY",),
    sim_inserted_urcs=(),
    soft_reset=("+CFUN=1,1",),
    # LTE cell ids as 7 hex digits, TAC/LAC as 4, <AcT> present: the shape
    # ModemManager's tests carry for Quectel.
    typical_reset_down_s=5.0,
    typical_boot_s=7.0,      # RDY ~12 s after the reset (MODEMS.md)
    typical_register_s=10.0,
    notes="Qualcomm MDM9207; AT on USB if 2 (usbnet 0/1/2) or if 4 (RNDIS).",
)

FM350GL = Dialect(
    name="fm350gl",
    manufacturer="Fibocom Wireless Inc.",
    model="FM350-GL",
    revision="81600.0000.00.29.22.40",
    replies=_ro({
        **_STD_REPLIES,
        # Captured (luci-app-3ginfo-lite PR #70): the "?" forms answer with a
        # quoted, prefixed value. UNCERTAIN: that the bare forms answer
        # plainly (27.007 style), as here.
        "+CGMI?": ('+CGMI: "{manufacturer}"',),
        "+CGMM?": ('+CGMM: "{model}"',),
        "+CGMR?": ('+CGMR: "{revision}"',),
        "+CGSN?": ('+CGSN: "{imei}"',),
        "+GTPKGVER?": ('+GTPKGVER: "{revision}_5000.0000.050.000.046_E41"',),
        # UNCERTAIN: ATI layout of the MediaTek T700 firmware.
        "I": ("{manufacturer}", "{model}", "Revision: {revision}"),
        "I0": ("{manufacturer}", "{model}", "Revision: {revision}"),
        "+GTUSBMODE?": ("+GTUSBMODE: 40",),
    }),
    sim_replies=_ro({
        **_STD_SIM_REPLIES,
        "+CIMI?": ('+CIMI: "{imsi}"',),
        "+ICCID": ("+ICCID: {iccid}",),
    }),
    features=frozenset({"CESQ", "GTRNDIS", "C5GREG"}),
    # UNCERTAIN: no RDY on Fibocom; ModemManager's Fibocom plugin swallows
    # "+SIM READY" as noise, so the modems do send it when the SIM is up.
    boot_urcs=(),
    sim_ready_urcs=("+SIM READY",),
    sim_pin_urcs=(),
    # From ModemManager's Fibocom SIM hot-swap handler (+SIM: Inserted /
    # +SIM: Removed / +SIM DROP); not confirmed for the FM350 specifically.
    sim_removed_urcs=("+SIM: Removed",),
    sim_inserted_urcs=("+SIM: Inserted",),
    soft_reset=("+CFUN=15",),
    # Captured quirks: "+COPS:0,2,..." (no space) and "+CSQ: 9, 99".
    cops_prefix="+COPS:",
    csq_separator=", ",
    ci_digits=8,          # +CEREG: 2,1,"1234","00123456",7
    cgreg_rac="FF",       # +CGREG: 2,1,"1234","00123456",7,"FF"
    # Captured: an unknown command answers "+CME ERROR: unknown" (CMEE=2).
    unknown_is_cme=True,
    typical_reset_down_s=2.0,   # "about 2 s after a crash" (MODEMS.md)
    typical_boot_s=3.0,
    typical_register_s=10.0,
    notes="MediaTek T700 5G; AT on USB if 4 (mode 40) or if 6 (mode 41).",
)

L850GL = Dialect(
    name="l850gl",
    manufacturer="Fibocom",
    model="L850 LTE Module",
    revision="18500.5001.00.05.27.12",
    replies=_ro({
        **_STD_REPLIES,
        # mrhaav's L850 script strips an optional "+CGMI:" prefix and quotes
        # and expects "Fibocom" / "L850 LTE Module": the Intel firmware
        # prefixes and quotes. UNCERTAIN for CGMR/CGSN; chosen the same way.
        "+CGMI": ('+CGMI: "{manufacturer}"',),
        "+CGMM": ('+CGMM: "{model}"',),
        "+CGMR": ('+CGMR: "{revision}"',),
        "+CGSN": ('+CGSN: "{imei}"',),
        # Captured (luci-app-3ginfo-lite #82).
        "+GMM?": ("+GMM: L850 LTE Module,L850",),
        "+GTPKGVER?": ("+GTPKGVER: {revision}_5001.05.001.033",),
        # UNCERTAIN: ATI layout of the Intel XMM7360 firmware.
        "I": ("FIBOCOM", "L850", "Revision: {revision}"),
        "I0": ("FIBOCOM", "L850", "Revision: {revision}"),
        "+GTUSBMODE?": ("+GTUSBMODE: 7",),
    }),
    sim_replies=_ro({
        **_STD_SIM_REPLIES,
        "+ICCID": ("+ICCID: {iccid}",),
    }),
    features=frozenset({"CESQ", "XCESQ", "GTRNDIS"}),
    boot_urcs=(),
    # UNCERTAIN: as for the FM350 (ModemManager's Fibocom plugin, shared by
    # the XMM-based modules).
    sim_ready_urcs=("+SIM READY",),
    sim_pin_urcs=(),
    sim_removed_urcs=("+SIM: Removed",),
    sim_inserted_urcs=("+SIM: Inserted",),
    # CFUN=16 resets the modem; CFUN=15 (full reset) is what applies a new
    # GTUSBMODE (MODEMS.md). Both drop the USB device.
    soft_reset=("+CFUN=16", "+CFUN=15"),
    # XMM answers the query with two fields and is known to stick at
    # "+CFUN: 4,0" (MODEMS.md); see ModemEmulator.set_radio_stuck().
    cfun_query="+CFUN: {fun},0",
    ci_digits=8,
    typical_reset_down_s=5.0,   # back on USB 5-10 s after reset (MODEMS.md)
    typical_boot_s=3.0,
    typical_register_s=10.0,
    notes="Intel XMM7360; AT on ttyACM (USB if 2 in MBIM mode 7, if 0 in NCM).",
)

MC7455 = Dialect(
    name="mc7455",
    manufacturer="Sierra Wireless, Incorporated",
    model="MC7455",
    revision="SWI9X30C_02.24.05.06",
    replies=_ro({
        **_STD_REPLIES,
        # Sierra's ATI block (Manufacturer:/Model:/Revision:/IMEI:), as seen in
        # many public logs of MC74xx modules.
        "I": ("Manufacturer: {manufacturer}", "Model: {model}",
              "Revision: {revision} r7040 CARMD-EV-FRMWR2 2017/05/19 06:23:09",
              "IMEI: {imei}", "IMEI SV: 18", "+GCAP: +CGSM"),
        "I0": ("Manufacturer: {manufacturer}", "Model: {model}",
               "Revision: {revision} r7040 CARMD-EV-FRMWR2 2017/05/19 06:23:09",
               "IMEI: {imei}", "IMEI SV: 18", "+GCAP: +CGSM"),
    }),
    sim_replies=_ro({
        **_STD_SIM_REPLIES,
        "+ICCID": ("ICCID: {iccid}",),   # UNCERTAIN: prefix without "+"
    }),
    features=frozenset({"CESQ"}),
    # UNCERTAIN: Sierra's Qualcomm firmware sends no RDY on the AT port.
    boot_urcs=(),
    sim_ready_urcs=(),
    sim_pin_urcs=(),
    sim_removed_urcs=(),
    sim_inserted_urcs=(),
    soft_reset=("!RESET", "+CFUN=1,1"),
    notes="Qualcomm MDM9230; AT on USB if 3.",
)

ME909S = Dialect(
    name="me909s",
    manufacturer="Huawei Technologies Co., Ltd.",
    model="ME909s-120",
    revision="11.617.01.00.00",
    replies=_ro({
        **_STD_REPLIES,
        "I": ("Manufacturer: {manufacturer}", "Model: {model}",
              "Revision: {revision}", "IMEI: {imei}", "+GCAP: +CGSM,+DS,+ES"),
        "I0": ("Manufacturer: {manufacturer}", "Model: {model}",
               "Revision: {revision}", "IMEI: {imei}", "+GCAP: +CGSM,+DS,+ES"),
    }),
    sim_replies=_ro({
        **_STD_SIM_REPLIES,
        "^ICCID?": ("^ICCID: {iccid}",),
    }),
    features=frozenset({"HCSQ", "SYSINFOEX"}),
    # UNCERTAIN: ^SYSSTART at power-up and ^SIMST: <state> (1 valid, 255
    # absent) on SIM changes are Huawei's long-standing URCs.
    boot_urcs=("^SYSSTART",),
    sim_ready_urcs=("^SIMST: 1",),
    sim_pin_urcs=("^SIMST: 1",),
    sim_removed_urcs=("^SIMST: 255",),
    sim_inserted_urcs=(),
    soft_reset=("^RESET",),
    notes="Balong; AT port found by interface protocol ff/xx/02 (PCUI).",
)

GENERIC = Dialect(
    name="generic",
    manufacturer="Generic",
    model="3GPP Modem",
    revision="1.0.0",
    replies=_ro({
        **_STD_REPLIES,
        "I": ("{manufacturer}", "{model}", "Revision: {revision}"),
        "I0": ("{manufacturer}", "{model}", "Revision: {revision}"),
    }),
    sim_replies=_ro(dict(_STD_SIM_REPLIES)),
    features=frozenset({"CESQ"}),
    boot_urcs=(),
    sim_ready_urcs=(),
    sim_pin_urcs=(),
    sim_removed_urcs=(),
    sim_inserted_urcs=(),
    soft_reset=("+CFUN=1,1",),
    notes="Plain 27.007, no vendor commands.",
)

DIALECTS: Mapping[str, Dialect] = MappingProxyType(
    {d.name: d for d in (EC25, FM350GL, L850GL, MC7455, ME909S, GENERIC)}
)


def get_dialect(name: str | Dialect) -> Dialect:
    """The dialect called ``name`` (case and ``-``/``_`` insensitive:
    ``"FM350-GL"`` works), or ``name`` itself if it already is one."""
    if isinstance(name, Dialect):
        return name
    key = name.lower().replace("-", "").replace("_", "")
    try:
        return DIALECTS[key]
    except KeyError:
        raise ValueError(
            f"unknown modem dialect {name!r}; known: {', '.join(sorted(DIALECTS))}"
        ) from None
