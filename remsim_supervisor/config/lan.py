"""The ``lan`` section: its options, and the checks across them and the routing section.

``config lan 'lan'`` turns on the LAN failover policy (docs/lan-failover.md).
Beyond each value's own check: an enabled policy needs at least one
``uplink``; its rules (``priority`` to
``priority + 2``) must come after the heartbeat's own (``routing.priority``),
so the heartbeat path always wins, and be clear of the kernel's, mwan3's and
netifd's; its tables (``table`` to ``table + uplinks``) clear of the
heartbeat's table and of the reserved ones; each uplink's probe mark
(``probe_mark << N``) a single bit of its own, clear of ``routing.mark`` and
of mwan3's bits.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from remsim_supervisor.config import convert as cv
from remsim_supervisor.config.types import LanConfig, RoutingConfig


def probe(text: str) -> str:
    """'ADDRESS' (an ICMP echo) or 'ADDRESS:PORT' (a TCP connection), IPv4."""
    host, colon, port = text.rpartition(":") if ":" in text else (text, "", "")
    try:
        address = ipaddress.IPv4Address(host)
    except ValueError:
        raise cv.Bad(f"must be an IPv4 address, optionally with :PORT (such as '1.1.1.1' "
                     f"or '1.1.1.1:443'), not {text!r}") from None
    if colon:
        if not port.isdigit() or not 1 <= int(port) <= 65535:
            raise cv.Bad(f"the port in {text!r} must be from 1 to 65535")
        return f"{address}:{int(port)}"
    return str(address)


def options() -> dict[str, tuple[cv.Convert, str | None, bool]]:
    """(converter, dataclass field, is a list) per option of the section."""
    seconds = "seconds"
    return {
        "enabled": (cv.boolean, None, False),
        "uplink": (cv.device, "uplinks", True),
        "probe": (probe, "probes", True),
        "probe_interval": (cv.positive(seconds), None, False),
        "probe_timeout": (cv.positive(seconds), None, False),
        "probe_failures": (cv.integer(1, 100, "rounds"), None, False),
        "failback_hold": (cv.integer(0, 86400, seconds), None, False),
        "iot_daily_cap_mb": (cv.positive("megabytes"), None, False),
        "table": (cv.table, None, False),
        "priority": (cv.priority, None, False),
        "probe_mark": (cv.mark, None, False),
    }


def check(r: Any, section: Any, lan: LanConfig, routing: RoutingConfig,
          wrong: set[str]) -> None:
    """Report what cannot work together; a value its own check rejected is not looked at.

    ``r`` is the :class:`~remsim_supervisor.config.sections.Reader` and ``section``
    the ``lan`` :class:`~remsim_supervisor.config.sections.Section` or None (not
    imported here: the option table imports this module, and sections that table).
    """
    if section is None or not lan.enabled:
        return

    def report(option: str, message: str) -> None:
        setting = section.settings.get(option)
        if setting is not None:
            r.report_at(setting, section, option, message)
        else:
            r.report(section.line, section.label, option, message, section.variable)

    if not lan.uplinks and "uplink" not in wrong:
        report("uplink", "required with enabled 1: add list uplink 'wan' (a device such as "
               "'eth1', or a modem's name or role, such as 'primary'), in order of preference")
    if "priority" not in wrong:
        from remsim_supervisor.core.routes import reserved_priority

        if lan.priority <= routing.priority:
            report("priority", f"must be above routing.priority ({routing.priority}): the "
                   f"heartbeat path's rules come first, not {lan.priority}")
        for n in (lan.priority + 1, lan.priority + 2):
            reason = reserved_priority(n) if n <= 32765 else "past 32765"
            if reason is not None:
                report("priority", f"{lan.priority} puts a rule at {n}: {reason}")
    if "table" not in wrong:
        from remsim_supervisor.core.routes import reserved_table

        for n in range(lan.table, lan.table + len(lan.uplinks) + 1):
            reason = reserved_table(n) if n <= 0xFFFFFFFF else "past 4294967295"
            if n == routing.table:
                reason = "it is routing.table, the heartbeat path's"
            if reason is not None:
                report("table", f"{lan.table} with {len(lan.uplinks)} uplink(s) uses table "
                       f"{n}: {reason}")
                break
    if "probe_mark" not in wrong:
        for i in range(len(lan.uplinks)):
            mark = lan.probe_mark << i
            if mark > 0xFFFFFFFF or mark & (routing.mark | cv.MWAN3_MARK_MASK) \
                    or mark & (mark - 1):
                report("probe_mark", f"{lan.probe_mark:#x} gives uplink {i + 1} the mark "
                       f"{mark:#x}: each uplink needs one bit of its own, clear of "
                       f"routing.mark and of mwan3's 0x3f00, such as 0x01000000")
                break


__all__ = ["check", "options", "probe"]
