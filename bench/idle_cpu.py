"""Idle CPU and memory of the daemon supervising two registered modems.

Stands up the rig (two emulated modems on ptys behind a fake USB bus), runs
``remsim-supervisor run``, waits until both modems are registered, then
measures over a quiet window (default 60 s) the CPU time the daemon process
used (utime + stime from /proc/PID/stat) and its memory (VmRSS, VmHWM).

    python bench/idle_cpu.py [--seconds 60] [--json]

The emulators run in this process, so their CPU is not counted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from remsim_supervisor.lab.rig import Rig


def cpu_seconds(pid: int) -> float:
    """CPU time of every thread of ``pid``, in seconds, at nanosecond resolution.

    /proc/PID/stat counts in clock ticks (10 ms), too coarse for an idle
    daemon; schedstat's first field is the time each thread ran, in ns.
    """
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pass  # a thread that ended meanwhile
    return total / 1e9


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

    with tempfile.TemporaryDirectory() as tmp, Rig(Path(tmp) / "rig") as rig:
        rig.plug("modem1")
        rig.plug("modem2")
        daemon = rig.start_daemon()
        rig.wait_for(lambda s: all(m["state"] == "registered" for m in s["modems"]), 60,
                     "both modems registered")
        time.sleep(2.0)  # let start-up work settle
        cpu0, t0 = cpu_seconds(daemon.pid), time.monotonic()
        commands0 = sum(len(rig.emulator(n).commands) for n in ("modem1", "modem2"))
        time.sleep(args.seconds)
        cpu1, t1 = cpu_seconds(daemon.pid), time.monotonic()
        commands1 = sum(len(rig.emulator(n).commands) for n in ("modem1", "modem2"))
        mem = memory_kb(daemon.pid)
        result = {
            "window_s": round(t1 - t0, 1),
            "cpu_s": round(cpu1 - cpu0, 4),
            "cpu_percent": round(100.0 * (cpu1 - cpu0) / (t1 - t0), 4),
            "threads": thread_count(daemon.pid),
            "at_commands_in_window": commands1 - commands0,
            "rss_kb": mem.get("VmRSS"),
            "peak_rss_kb": mem.get("VmHWM"),
            "python": sys.version.split()[0],
        }
        assert rig.stop_daemon() == 0
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:24} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
