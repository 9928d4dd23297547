"""``make demo``: the supervisor over emulated modems, through a scripted set of faults.

Plugs an EC25 (primary) and an FM350-GL (IoT) into a fake USB bus, starts the
real daemon over them, then unplugs, wedges and un-SIMs the modems one after
another, showing after each step what ``remsim-supervisor status`` says and
the log lines the daemon wrote. Needs no hardware and no root.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from remsim_supervisor.lab.rig import Rig
from remsim_supervisor.statusview import render


class Demo:
    def __init__(self, rig: Rig) -> None:
        self.rig = rig
        self.log_offset = 0

    def show_log(self) -> None:
        text = self.rig.log()
        new, self.log_offset = text[self.log_offset:], len(text)
        for line in new.splitlines():
            if " INFO " in line or " WARNING " in line or " ERROR " in line:
                print("   log |", line.split(" ", 2)[-1])

    def step(self, title: str, action: Callable[[], None],
             until: Callable[[dict[str, Any]], bool], timeout: float = 60.0) -> None:
        print(f"\n== {title}")
        action()
        started = time.monotonic()
        status = self.rig.wait_for(until, timeout, title)
        print(f"   ({time.monotonic() - started:.1f} s)")
        self.show_log()
        print("\n".join("   " + line for line in render(status).splitlines()))


def state(rig: Rig, name: str, wanted: str) -> Callable[[dict[str, Any]], bool]:
    return lambda s: rig.modem_status(name, s)["state"] == wanted


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="remsim-demo-") as tmp, Rig(Path(tmp) / "rig") as rig:
        demo = Demo(rig)
        rig.plug("modem1")
        rig.plug("modem2")
        # Registration is polled every 5 s here (30 s on a router) so that a
        # wedge that only a poll can notice shows up within the demo.
        start = lambda: rig.start_daemon(env={"REMSIM_SUPERVISOR_POLL_INTERVAL": "5"})  # noqa: E731
        demo.step("start the daemon over two emulated modems", start,
                  lambda s: all(m["state"] == "registered" for m in s["modems"]))
        demo.step("unplug the IoT modem (USB gone)", lambda: rig.unplug("modem2"),
                  state(rig, "modem2", "absent"))
        demo.step("plug it back", lambda: (rig.plug("modem2"), None)[1],
                  state(rig, "modem2", "registered"))
        demo.step("pull the primary modem's SIM", lambda: rig.emulator("modem1").remove_sim(),
                  state(rig, "modem1", "sim_wait"))
        demo.step("put it back", lambda: rig.emulator("modem1").insert_sim(),
                  state(rig, "modem1", "registered"))
        demo.step("the IoT modem loses the network", lambda: rig.emulator("modem2").deregister(),
                  state(rig, "modem2", "searching"))
        demo.step("and finds it again", lambda: rig.emulator("modem2").register("roaming"),
                  state(rig, "modem2", "registered"))
        demo.step("the IoT modem's AT port wedges (silent)",
                  lambda: rig.emulator("modem2").set_silent(True),
                  state(rig, "modem2", "failed"))
        demo.step("the wedge clears", lambda: rig.emulator("modem2").set_silent(False),
                  state(rig, "modem2", "registered"))
        print("\n== stop (SIGTERM)")
        code = rig.stop_daemon()
        demo.show_log()
        print(f"   daemon exited with {code}")
        return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
