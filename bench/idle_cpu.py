"""Idle CPU and memory of the whole daemon on a healthy router.

Stands up the lab (router and cloud network namespaces, IonMesh asking for
a heartbeat every 60 s as a real one does, two emulated modems with their
data devices), runs ``remsim-supervisor run`` with everything on (modem
tasks, heartbeat and its policy routing, the guardian), waits until both
modems are connected and a heartbeat was acknowledged, then measures over a
quiet window (default 60 s) the CPU time every thread of the daemon used and
its memory (VmRSS, VmHWM). Needs root.

    python bench/idle_cpu.py [--seconds 60] [--json]

The emulators and IonMesh run in this process, so their CPU is not counted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from remsim_supervisor.lab.ionmesh_server import IonMeshServer
from remsim_supervisor.lab.network import IONMESH, LabNetwork, call_in_netns
from remsim_supervisor.lab.rig import Rig


def cpu_seconds(pid: int) -> float:
    """User and system time of the whole process, threads that already ended included.

    /proc/PID/stat counts in clock ticks (10 ms); per-thread schedstat is
    finer but forgets the short-lived worker threads (HTTP, netlink) that
    ended inside the window, so the process-wide counters are the honest ones.
    """
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_count(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/task").iterdir()))


def memory_kb(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, LabNetwork("rsbench") as net:
        ionmesh = call_in_netns(net.cloud, IonMeshServer, host=IONMESH, port=5000,
                                heartbeat_interval=60)
        ionmesh.start()
        with Rig.for_lab(Path(tmp) / "rig", f"http://{IONMESH}:5000") as rig:
            daemon = rig.start_daemon(netns=net.router)
            rig.wait_for(lambda s: all(m["state"] == "connected" for m in s["modems"])
                         and s["heartbeat"]["acked"] >= 1, 60, "both connected, one heartbeat")
            time.sleep(2.0)  # let start-up work settle
            cpu0, t0 = cpu_seconds(daemon.pid), time.monotonic()
            commands0 = sum(len(rig.emulator(n).commands) for n in ("modem1", "modem2"))
            beats0 = len(ionmesh.heartbeats("rig-router"))
            time.sleep(args.seconds)
            cpu1, t1 = cpu_seconds(daemon.pid), time.monotonic()
            commands1 = sum(len(rig.emulator(n).commands) for n in ("modem1", "modem2"))
            beats1 = len(ionmesh.heartbeats("rig-router"))
            mem = memory_kb(daemon.pid)
            threads = thread_count(daemon.pid)
            assert rig.stop_daemon() == 0
        ionmesh.stop()
        result = {
            "window_s": round(t1 - t0, 1),
            "cpu_s": round(cpu1 - cpu0, 4),
            "cpu_percent": round(100.0 * (cpu1 - cpu0) / (t1 - t0), 4),
            "threads": threads,
            "heartbeats_in_window": beats1 - beats0,
            "at_commands_in_window": commands1 - commands0,
            "rss_kb": mem.get("VmRSS"),
            "peak_rss_kb": mem.get("VmHWM"),
            "python": sys.version.split()[0],
        }
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:24} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
