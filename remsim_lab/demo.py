"""``make demo``: the supervisor keeping the heartbeat alive through a scripted set of faults.

The simulated router: a router and a cloud network namespace joined by two
carriers (:mod:`remsim_lab.network`), IonMesh (the fake server)
in the cloud, an EC25 as the primary modem and an FM350-GL as the IoT modem
(emulators on pseudo-terminals behind a fake USB bus, with simulated SIM and
reset lines), and the real ``remsim-supervisor run`` in the router
namespace. Then, one after another: the IoT carrier drops its link, comes
back, turns into a silent blackhole while the IoT modem's AT port wedges
(only a reset pulse clears it), the primary modem is unplugged and plugged
back, and its SIM is pulled. After each step the demo prints the daemon's
log lines and ``status``; at the end, the longest time IonMesh went without
a heartbeat, against the 300 s grace period.

Last, the package on OpenWrt's own userland (:mod:`remsim_lab.router`):
``make ipk``'s package installed with opkg in a router sandbox, the daemon run
by procd (its modems absent there), a configuration change applied with
``uci commit`` and the event ``reload_config`` sends, and what a router owner
sees: ``ubus call service list`` and ``logread -e remsim-supervisor``.

Needs root (network namespaces), iproute2 and nftables, and OpenWrt's
userland built (``make userland``), as ``make test``.
"""

from __future__ import annotations

import itertools
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from remsim_lab.gpiowatch import ResetWatcher
from remsim_lab.ionmesh_server import IonMeshServer
from remsim_lab.network import IONMESH, LabNetwork, call_in_netns
from remsim_lab.rig import Rig
from remsim_supervisor.supervisor.statusview import render

INTERVAL = 5  # heartbeat interval the lab's IonMesh asks for (60 s on a real one)


class Demo:
    def __init__(self, rig: Rig) -> None:
        self.rig = rig
        self.log_offset = 0

    def show_log(self) -> None:
        text = self.rig.log()
        new, self.log_offset = text[self.log_offset :], len(text)
        for line in new.splitlines():
            if " INFO " in line or " WARNING " in line or " ERROR " in line:
                print("   log |", line.split(" ", 2)[-1][:150])

    def step(
        self,
        title: str,
        action: Callable[[], object],
        until: Callable[[dict[str, Any]], bool],
        timeout: float = 120.0,
    ) -> None:
        print(f"\n== {title}")
        action()
        started = time.monotonic()
        status = self.rig.wait_for(until, timeout, title)
        print(f"   ({time.monotonic() - started:.1f} s)")
        time.sleep(0.5)  # the daemon logs a decision just after it shows in status
        self.show_log()
        print("\n".join("   " + line for line in render(status).splitlines()))


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="remsim-demo-") as tmp, LabNetwork("rsdemo") as net:
        ionmesh = call_in_netns(
            net.cloud, IonMeshServer, host=IONMESH, port=5000, heartbeat_interval=INTERVAL
        )
        ionmesh.start()
        try:
            code = run(Path(tmp), net, ionmesh)
        finally:
            ionmesh.stop()
    return on_openwrt() or code


def on_openwrt() -> int:
    """The package under OpenWrt's opkg, procd, uci and logd; 0 when all went as it should."""
    from remsim_lab import router as owrt

    print("\n== on OpenWrt's own userland: opkg installs the package, procd runs it")
    try:
        with tempfile.TemporaryDirectory(prefix="remsim-demo-ipk-") as tmp, \
                owrt.RouterSandbox() as box:
            ipk, depends = owrt.build_package(Path(tmp))
            print(f"   $ opkg install {ipk.name}")
            for line in owrt.install_package(box, ipk, depends).splitlines():
                if line.strip():
                    print(f"   | {line}")
            pid = owrt.start_daemon(box)
            print(f"   (config: modems configured but absent, IonMesh unreachable; "
                  f"/etc/init.d/{owrt.SERVICE} restart -> pid {pid})")
            owrt.wait_for(lambda: "heartbeat over" in box.logread("-e", owrt.SERVICE), 15)

            print(f"   $ uci set {owrt.SERVICE}.main.log_level=debug; uci commit; reload_config")
            box.sh(f"uci set {owrt.SERVICE}.main.log_level=debug && uci commit {owrt.SERVICE}")
            box.ubus("service", "event",
                     {"type": "config.change", "data": {"package": owrt.SERVICE}})
            reloaded = owrt.wait_for(
                lambda: "configuration reloaded" in box.logread("-e", owrt.SERVICE), 15)
            same = owrt.running_pid(box) == pid

            print(f"\n   $ ubus call service list '{{\"name\": \"{owrt.SERVICE}\"}}'")
            listed = box.sh(f"ubus call service list '{{\"name\": \"{owrt.SERVICE}\"}}'").stdout
            for line in listed.splitlines():
                print(f"   | {line}")
            print(f"\n   $ logread -e {owrt.SERVICE}")
            for line in box.logread("-e", owrt.SERVICE).splitlines():
                print(f"   | {line}")
            box.sh(f"/etc/init.d/{owrt.SERVICE} stop")
            stopped = owrt.wait_for(lambda: not box.alive(pid), 10)
            print(f"\n   reload kept pid {pid}: {'yes' if same else 'NO'}; "
                  f"stop ended it: {'yes' if stopped else 'NO'}")
            return 0 if reloaded and same and stopped else 1
    except (owrt.SandboxError, AssertionError) as exc:
        print(f"   on OpenWrt: {exc}")
        return 1


def run(tmp: Path, net: LabNetwork, ionmesh: IonMeshServer) -> int:
    with Rig.for_lab(
        tmp / "rig",
        f"http://{IONMESH}:5000",
        timeout=2,
        extra_config=(
            "config routing 'routing'\n\toption failback_after '2'\n"
            "config escalation 'escalation'\n"
            "\tlist step_cost 'usb_reauth=5'\n\tlist step_cost 'gpio_reset=15'\n"
        ),
    ) as rig:
        demo = Demo(rig)
        hb = lambda key, value: lambda s: s["heartbeat"][key] == value  # noqa: E731
        state = lambda name, *wanted: lambda s: rig.modem_status(name, s)["state"] in wanted  # noqa: E731

        demo.step(
            "start: two modems, the heartbeat over the IoT modem",
            lambda: rig.start_daemon(
                netns=net.router, env={"REMSIM_SUPERVISOR_POLL_INTERVAL": "5"}
            ),
            lambda s: s["heartbeat"]["acked"] >= 1 and s["heartbeat"]["path"] == "modem2",
        )
        demo.step(
            "the IoT carrier loses its link", lambda: net.link("iot", False), hb("path", "modem1")
        )
        demo.step(
            "it comes back: two good heartbeats over it, then the path moves back",
            lambda: net.link("iot", True),
            hb("path", "modem2"),
        )

        emulator = rig.emulator("modem2")

        def heal() -> None:
            emulator.set_silent(False)
            net.blackhole("iot", False)

        watcher = ResetWatcher(rig.gpio, rig.modems["modem2"].reset_line, heal)
        try:

            def wedge() -> None:
                emulator.set_silent(True, sticky=True)
                net.blackhole("iot", True)

            demo.step(
                "the IoT modem wedges: AT silent, its traffic silently dropped "
                "(only a reset pulse clears it)",
                wedge,
                hb("path", "modem1"),
            )
            demo.step(
                "the guardian climbs the ladder in the background",
                lambda: None,
                lambda s: (
                    any(r["step"] == "gpio_reset" and r["result"] == "ok" for r in s["recoveries"])
                    and s["heartbeat"]["path"] == "modem2"
                ),
            )
        finally:
            watcher.stop()

        demo.step(
            "the primary modem is unplugged",
            lambda: rig.unplug("modem1"),
            state("modem1", "absent"),
        )
        demo.step(
            "and plugged back",
            lambda: rig.plug("modem1"),
            state("modem1", "registered", "connected"),
        )
        demo.step(
            "its SIM is pulled",
            lambda: rig.emulator("modem1").remove_sim(),
            state("modem1", "sim_wait"),
        )
        demo.step(
            "and put back",
            lambda: rig.emulator("modem1").insert_sim(),
            state("modem1", "registered", "connected"),
        )

        print("\n== stop (SIGTERM)")
        code = rig.stop_daemon()
        demo.show_log()
        acks = [r.time for r in ionmesh.heartbeats("rig-router") if r.status == 200]
        gap = max((b - a for a, b in itertools.pairwise(acks)), default=0.0)
        print(
            f"   daemon exited with {code}; IonMesh acknowledged {len(acks)} heartbeats, "
            f"the longest gap {gap:.1f} s (grace period 300 s)"
        )
        return 0 if code == 0 and gap < 300 else 1


if __name__ == "__main__":
    sys.exit(main())
