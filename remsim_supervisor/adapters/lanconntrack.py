"""Cutting the LAN's flows over when its uplink moves: delete their conntrack entries.

When the LAN's default route moves from one uplink to another, flows already
open keep their conntrack entries, and with them the masquerade mapping of
the old uplink: their packets keep leaving with the old uplink's address
and, on an uplink that is up but silently dropping, hang until the clients
give up. The kernel forgets such entries when the old interface goes down or
loses its address, not when only the route moves. Deleting them makes each
flow's next packet new: routed and masqueraded for the new uplink, and a TCP
peer that sees the new address answers with a reset, so clients reconnect at
once.

:func:`cut_over` deletes the IPv4 entries whose *reply-direction
destination* is one of the old uplink's addresses: the LAN flows masqueraded
out of it and the router's own flows from it, and only those. Entries going
to the heartbeat path's pinned hosts are left alone (that path has its own
rules and its own cut-over). It reuses the ctnetlink socket of
:mod:`remsim_supervisor.adapters.conntrack`: one dump, deletes by exact
entry (tuple, zone and id), all zones.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable

from remsim_supervisor.adapters.conntrack import (
    CTA_ID,
    CTA_IP_V4_DST,
    CTA_TUPLE_IP,
    CTA_TUPLE_ORIG,
    CTA_ZONE,
    IPCTNL_MSG_CT_GET,
    NFGENMSG,
    NLATTR,
    NLM_F_DUMP,
    NLM_F_REQUEST,
    ConntrackError,
    _align,
    _Ctnetlink,
    _explain,
    _find,
    _KernelSays,
)

CTA_TUPLE_REPLY = 2


def _destination(data: bytes, start: int, end: int, tuple_kind: int) -> bytes | None:
    span = _find(data, start, end, tuple_kind)
    if span is None:
        return None
    ip = _find(data, span[0] + NLATTR.size, span[1], CTA_TUPLE_IP)
    if ip is None:
        return None
    dst = _find(data, ip[0] + NLATTR.size, ip[1], CTA_IP_V4_DST)
    return None if dst is None else data[dst[0] + NLATTR.size : dst[1]]


def cut_over(old_addresses: Iterable[str], keep: Iterable[str] = (), *,
             netns: str | None = None) -> int:
    """Delete the entries masqueraded out of (or sent from) ``old_addresses``.

    Entries whose original destination is in ``keep`` (the pinned hosts)
    stay. Returns how many were deleted.
    """
    def packed(texts: Iterable[str]) -> set[bytes]:
        out = set()
        for text in texts:
            try:
                address = ipaddress.ip_address(text)
            except ValueError:
                raise ConntrackError(f"not an IP address: {text!r}") from None
            if address.version == 4:
                out.add(address.packed)
        return out

    old, spared = packed(old_addresses), packed(keep)
    if not old:
        return 0
    with _Ctnetlink(netns) as nl:
        payloads = []
        try:
            seq = nl._send(IPCTNL_MSG_CT_GET, NLM_F_REQUEST | NLM_F_DUMP, socket.AF_INET, b"")
            for data, start, end in nl._replies(seq):
                if data[start] != socket.AF_INET:
                    continue
                body = start + NFGENMSG.size
                if _destination(data, body, end, CTA_TUPLE_REPLY) not in old:
                    continue
                if _destination(data, body, end, CTA_TUPLE_ORIG) in spared:
                    continue
                keep_parts = []
                for kind in (CTA_TUPLE_ORIG, CTA_ZONE, CTA_ID):
                    span = _find(data, body, end, kind)
                    if span is not None:
                        keep_parts.append(data[span[0] : span[1]])
                if keep_parts and _find(data, body, end, CTA_TUPLE_ORIG) is not None:
                    payloads.append(b"".join(
                        part + b"\0" * (_align(len(part)) - len(part)) for part in keep_parts))
        except _KernelSays as exc:
            raise ConntrackError(_explain("read conntrack entries", exc.code)) from None
        return sum(nl.delete(socket.AF_INET, payload) for payload in payloads)


__all__ = ["cut_over"]
