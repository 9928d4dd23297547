"""GPIO levels reconciled: which writes bring held lines to the levels wanted.

Pure logic, no I/O: :func:`level_writes` takes the logical level wanted for
each line (``True`` asserted, ``False`` inactive, ``None`` "keep what it
has") and the level each line has now (``None``: it has none yet, or it
cannot be read), and returns the writes that make them agree, nothing for a
line already right. Driving only the differences is what lets a reload
re-assert the SIM-switch, reset and power lines without a single edge on a
line that is already where it should be: an edge on a reset or SIM line is a
modem reset or a SIM swap.

A line wanted "as it is" that has no level yet is driven inactive, the
resting level of a reset line. Lines that are not wanted are not ours to
drive and are left alone. Writes come in the order the wanted lines are
listed, so the caller decides which line moves first.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class LevelWrite:
    """Drive ``line`` to the logical ``level``."""

    line: str
    level: bool


def level_write(wanted: bool | None, current: bool | None) -> bool | None:
    """The level to write to one line, or None when it is already right."""
    target = wanted if wanted is not None else current
    if target is None:
        target = False  # nothing to keep: the resting (inactive) level
    return None if current is not None and current == target else target


def level_writes(wanted: Mapping[str, bool | None],
                 current: Mapping[str, bool | None]) -> list[LevelWrite]:
    """The writes that bring every wanted line from its ``current`` level to the wanted one."""
    writes = []
    for line, level in wanted.items():
        write = level_write(level, current.get(line))
        if write is not None:
            writes.append(LevelWrite(line, write))
    return writes


__all__ = ["LevelWrite", "level_write", "level_writes"]
