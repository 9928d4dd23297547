"""The grace guardian end to end: a wedged IoT modem brought back by the ladder.

Emulated modems with simulated reset lines, the lab network (router and cloud
namespaces) and a real IonMesh server: the IoT modem's AT port goes silent and
its carrier drops everything, a wedge that survives a USB re-authorisation
and only a reset pulse clears. The heartbeat must move to the primary at
once, the ladder must climb to the reset line, the heartbeat must come back
to the IoT modem, and the grace period must never run out.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from remsim_lab.gpiowatch import ResetWatcher
from remsim_lab.ionmesh_server import IonMeshServer
from remsim_lab.network import IONMESH, LabNetwork
from remsim_lab.rig import Rig
from tests.conftest import LAB_INTERVAL as INTERVAL

CLIENT = "rig-router"


@pytest.fixture
def rig(tmp_path: Path, net: LabNetwork) -> Iterator[Rig]:
    # Short expected durations so that a step that does not help is judged
    # within seconds (the defaults are a router's: tens of seconds).
    with Rig.for_lab(tmp_path / "rig", f"http://{IONMESH}:5000", extra_config=(
            "config routing 'routing'\n\toption failback_after '2'\n"
            "config escalation 'escalation'\n"
            "\tlist step_cost 'usb_reauth=4'\n\tlist step_cost 'gpio_reset=10'\n")) as r:
        yield r


def test_a_wedged_iot_modem_is_brought_back_by_the_ladder(
        net: LabNetwork, ionmesh: IonMeshServer, rig: Rig) -> None:
    rig.start_daemon(netns=net.router)
    rig.wait_for(lambda s: s["heartbeat"]["path"] == "modem2" and s["heartbeat"]["acked"] >= 2,
                 20, "heartbeats over the IoT modem")

    emulator = rig.emulator("modem2")
    healed: list[float] = []

    def reset_pulse_clears_the_wedge() -> None:
        emulator.set_silent(False)
        net.blackhole("iot", False)
        healed.append(time.monotonic())

    watcher = ResetWatcher(rig.gpio, rig.modems["modem2"].reset_line, reset_pulse_clears_the_wedge)
    try:
        emulator.set_silent(True, sticky=True)  # survives reboots and USB re-authorisation
        net.blackhole("iot", True)
        wedged = time.monotonic()

        lowest_grace = 300.0
        deadline = wedged + 90
        status = rig.status()
        while time.monotonic() < deadline:
            status = rig.status()
            lowest_grace = min(lowest_grace, status["grace"]["remaining_s"])
            if healed and status["heartbeat"]["path"] == "modem2" and \
                    rig.modem_status("modem2", status)["state"] in ("registered", "connected"):
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"the IoT modem never came back: {status}\n{rig.log()[-3000:]}")
    finally:
        watcher.stop()

    steps = [(r["modem"], r["step"], r["result"]) for r in reversed(status["recoveries"])]
    assert ("modem2", "usb_reauth", "failed") in steps
    assert ("modem2", "gpio_reset", "ok") in steps
    assert all(modem == "modem2" for modem, _s, _r in steps)  # the carrier was left alone
    assert all(r["grace_left_s"] > 200 for r in status["recoveries"])
    assert lowest_grace > 250  # the heartbeat moved to the primary at once

    # IonMesh never saw a gap anywhere near the grace period.
    acks = [r.time for r in ionmesh.heartbeats(CLIENT) if r.status == 200]
    assert max(b - a for a, b in itertools.pairwise(acks)) < 2 * INTERVAL + 2
    log = rig.log()
    assert "heartbeat path modem2 -> modem1" in log
    assert "modem2 (iot): recovery step usb_reauth" in log and "s of grace left" in log
    assert "modem2: recovery step gpio_reset worked" in log
    assert "heartbeat path modem1 -> modem2" in log
    assert rig.stop_daemon() == 0
