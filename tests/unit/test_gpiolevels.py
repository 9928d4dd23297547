"""GPIO levels reconciled: (wanted, current) -> the writes, and only those."""

from __future__ import annotations

import pytest

from remsim_supervisor.core.gpiolevels import LevelWrite, level_write, level_writes


@pytest.mark.parametrize(("wanted", "current", "write"), [
    (True, True, None),  # already right: no edge
    (False, False, None),
    (True, False, True),
    (False, True, False),
    (True, None, True),  # no level yet: drive the wanted one
    (False, None, False),
    (None, True, None),  # keep: whatever it has stays
    (None, False, None),
    (None, None, False),  # keep, but nothing to keep: the resting (inactive) level
])
def test_one_line(wanted: bool | None, current: bool | None, write: bool | None) -> None:
    assert level_write(wanted, current) == write


def test_start_of_a_modem_drives_reset_and_power_and_keeps_the_sim() -> None:
    # procd restarted the supervisor in the middle of a reset pulse, with power on.
    wanted = {"sim": None, "reset": False, "power": True}
    current = {"sim": True, "reset": True, "power": True}
    assert level_writes(wanted, current) == [LevelWrite("reset", False)]


def test_a_reload_with_everything_in_place_writes_nothing() -> None:
    wanted = {"sim": False, "reset": False, "power": True}
    assert level_writes(wanted, dict(wanted)) == []


def test_writes_follow_the_order_of_the_wanted_lines() -> None:
    wanted = {"power": True, "reset": False, "sim": False}
    current = {"sim": True, "reset": True, "power": False}
    assert [w.line for w in level_writes(wanted, current)] == ["power", "reset", "sim"]
    reordered = {"sim": False, "power": True, "reset": False}
    assert [w.line for w in level_writes(reordered, current)] == ["sim", "power", "reset"]


def test_lines_not_wanted_are_left_alone_and_missing_ones_count_as_levelless() -> None:
    assert level_writes({"sim": True}, {"reset": True, "power": False}) == [
        LevelWrite("sim", True)]
    assert level_writes({}, {"reset": True}) == []
    assert level_writes({"reset": None}, {}) == [LevelWrite("reset", False)]


def test_the_iot_modem_is_put_back_on_its_local_sim() -> None:
    # After a power cycle the IoT modem's SIM line reads remote (logical 1 here).
    assert level_writes({"sim": False}, {"sim": True}) == [LevelWrite("sim", False)]
    assert level_writes({"sim": False}, {"sim": False}) == []
