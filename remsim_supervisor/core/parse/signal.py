"""Signal quality answers of 3GPP TS 27.007: +CSQ and +CESQ.

Derived values are dataclass fields named ``*_dbm`` / ``*_db`` (``None`` when
the raw value means "not known"); :func:`signal_values` turns any such
result, a vendor's included, into the figures the status shows.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from remsim_supervisor.core.parse.common import (
    Text,
    dec,
    field_at,
    fields_after,
    level,
)

__all__ = ["Cesq", "Csq", "cesq_values", "parse_cesq", "parse_csq", "signal_values"]

@dataclass(frozen=True)
class Csq:
    """+CSQ: raw <rssi>/<ber> and the RSSI in dBm (None when unknown)."""

    rssi: int
    ber: int | None
    rssi_dbm: int | None


def parse_csq(text: Text) -> Csq | None:
    """+CSQ: <rssi>,<ber>. 0..31 -> -113 + 2*rssi dBm; 100..191 (TD-SCDMA)
    -> rssi - 216 dBm; 99 and 199 are "not known"."""
    f = fields_after(text, "+CSQ:")
    if f is None:
        return None
    rssi = dec(field_at(f, 0))
    if rssi is None:
        return None
    if rssi <= 31:
        dbm: int | None = -113 + 2 * rssi
    elif 100 <= rssi <= 191:
        dbm = rssi - 216
    else:
        dbm = None
    return Csq(rssi=rssi, ber=dec(field_at(f, 1)), rssi_dbm=dbm)


@dataclass(frozen=True)
class Cesq:
    """+CESQ levels and the values they stand for (3GPP TS 27.007 8.69).

    Derived values follow ModemManager: RSSI = -111 + rxlev dBm, RSCP = -121 +
    level dBm, Ec/No = -24.5 + level/2 dB, RSRQ = -20 + level/2 dB, RSRP = -141
    + level dBm; the UMTS RSSI is RSCP - Ec/No. 99/255 give None.
    """

    rxlev: int
    ber: int
    rscp_level: int
    ecn0_level: int
    rsrq_level: int
    rsrp_level: int
    rssi_dbm: float | None       #: GSM RSSI
    rscp_dbm: float | None
    ecio_db: float | None
    umts_rssi_dbm: float | None
    rsrq_db: float | None
    rsrp_dbm: float | None

    @property
    def has_gsm(self) -> bool:
        return self.rssi_dbm is not None

    @property
    def has_umts(self) -> bool:
        return self.rscp_dbm is not None or self.ecio_db is not None

    @property
    def has_lte(self) -> bool:
        return self.rsrq_db is not None or self.rsrp_dbm is not None


def cesq_values(levels: Sequence[int]) -> dict[str, float | None]:
    """The derived values of the six +CESQ levels (also of vendor reports that reuse them)."""
    rxlev, _ber, rscp_l, ecn0_l, rsrq_l, rsrp_l = levels
    rscp = level(rscp_l, 96, -121.0, 1.0)
    ecio = level(ecn0_l, 49, -24.5, 0.5)
    return {
        "rssi_dbm": level(rxlev, 63, -111.0, 1.0),
        "rscp_dbm": rscp,
        "ecio_db": ecio,
        "umts_rssi_dbm": rscp - ecio if rscp is not None and ecio is not None else None,
        "rsrq_db": level(rsrq_l, 34, -20.0, 0.5),
        "rsrp_dbm": level(rsrp_l, 97, -141.0, 1.0),
    }


def parse_cesq(text: Text) -> Cesq | None:
    """+CESQ: <rxlev>,<ber>,<rscp>,<ecno>,<rsrq>,<rsrp> (blank after ':' optional)."""
    f = fields_after(text, "+CESQ:")
    if f is None:
        return None
    levels = [dec(x) for x in f]
    if len(levels) < 6 or any(v is None for v in levels[:6]):
        return None
    vals = [v for v in levels[:6] if v is not None]
    return Cesq(vals[0], vals[1], vals[2], vals[3], vals[4], vals[5], **cesq_values(vals))


def signal_values(parsed: object) -> tuple[tuple[str, Any], ...]:
    """The figures of a signal result for the status: its ``*_dbm`` / ``*_db``
    fields that are known, and ``mode`` (its ``sysmode``, else its
    ``access_tech``), sorted by name; empty when nothing is known."""
    if parsed is None or not dataclasses.is_dataclass(parsed) or isinstance(parsed, type):
        return ()
    values: dict[str, Any] = {
        k: v
        for k, v in dataclasses.asdict(parsed).items()
        if (k.endswith("_dbm") or k.endswith("_db")) and v is not None
    }
    for key in ("sysmode", "access_tech"):
        v = getattr(parsed, key, None)
        if isinstance(v, str) and v:
            values["mode"] = v
    if not values:
        return ()
    return tuple(sorted(values.items()))

