"""Idle CPU, wakeups and memory of the whole daemon on a healthy router.

Stands up the lab (router and cloud network namespaces, IonMesh asking for
a heartbeat every 60 s as a real one does, two emulated modems with their
data devices), runs ``remsim-supervisor run`` with everything on (modem
tasks, heartbeat and its policy routing, the guardian), waits until both
modems are connected and a heartbeat was acknowledged, then measures a quiet
window (``--seconds``, default 60) cut into ``--trials`` equal parts:

* CPU: the user and system time of every thread of the daemon
  (``/proc/PID/stat``, threads that ended inside the window included);
* wakeups: voluntary context switches summed over the daemon's threads
  (``/proc/PID/task/*/status``; a thread that started and ended inside a
  part is not seen, one that started is counted whole): each is the daemon
  going to sleep and so being woken again. Involuntary switches (a thread
  preempted while it ran) are counted beside them: they grow with the
  machine's load, not with what the daemon does;
* memory at the end (VmRSS, VmHWM).

The limit, beside it over the same window: an idle asyncio loop with a
60 s timer (``python -c 'asyncio.run(...)'``), the same counters. Needs root.

    python bench/idle_cpu.py [--seconds 60] [--trials 6] [--json]

The emulators and IonMesh run in this process, so their CPU is not counted.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib
from benchlib import Figure

IDLE_LOOP = ("import asyncio\nasync def main():\n    while True:\n"
             "        await asyncio.sleep(60)\nasyncio.run(main())\n")


def cpu_seconds(pid: int) -> float:
    """User and system time of the whole process, threads that already ended included.

    /proc/PID/stat counts in clock ticks (10 ms); per-thread schedstat is
    finer but forgets the short-lived worker threads (HTTP, netlink) that
    ended inside the window, so the process-wide counters are the honest ones.
    """
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def switches(pid: int, kinds: tuple[str, ...] = ("voluntary_ctxt_switches",)
             ) -> dict[str, int]:
    """Context switches of ``kinds`` (voluntary: the wake-ups) per live thread."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            text = (task / "status").read_text()
        except OSError:
            continue  # ended meanwhile
        n = 0
        for line in text.splitlines():
            if line.startswith(kinds):
                n += int(line.split()[1])
        out[task.name] = n
    return out


PREEMPTED = ("nonvoluntary_ctxt_switches",)


def woke(before: dict[str, int], after: dict[str, int]) -> int:
    return sum(n - before.get(tid, 0) for tid, n in after.items())


def thread_count(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/task").iterdir()))


def main() -> int:
    parser = benchlib.parser(__doc__, trials=6)
    parser.add_argument("--seconds", type=float, default=60.0, help="the whole quiet window")
    args = parser.parse_args()
    benchlib.need_root("idle_cpu")
    trials = max(args.trials, 1)
    part = args.seconds / trials
    cpu, wakeups, ref_cpu, ref_wakeups, preempted = [], [], [], [], []
    with benchlib.interrupts_as_exit(), benchlib.lab_daemon("rsbidle", interval=60) as lab:
        ref = subprocess.Popen([sys.executable, "-c", IDLE_LOOP])
        try:
            pid = lab.pid
            time.sleep(2.0)  # let start-up work settle
            commands0 = sum(len(lab.rig.emulator(n).commands) for n in ("modem1", "modem2"))
            beats0 = len(lab.ionmesh.heartbeats("rig-router"))
            t_start = time.monotonic()
            for _ in range(trials):
                c0, s0, t0 = cpu_seconds(pid), switches(pid), time.monotonic()
                p0 = switches(pid, PREEMPTED)
                r0, rs0 = cpu_seconds(ref.pid), switches(ref.pid)
                time.sleep(part)
                c1, s1, t1 = cpu_seconds(pid), switches(pid), time.monotonic()
                p1 = switches(pid, PREEMPTED)
                r1, rs1 = cpu_seconds(ref.pid), switches(ref.pid)
                cpu.append(100.0 * (c1 - c0) / (t1 - t0))
                wakeups.append(woke(s0, s1) / (t1 - t0))
                preempted.append(woke(p0, p1) / (t1 - t0))
                ref_cpu.append(100.0 * (r1 - r0) / (t1 - t0))
                ref_wakeups.append(woke(rs0, rs1) / (t1 - t0))
            window = time.monotonic() - t_start
            commands1 = sum(len(lab.rig.emulator(n).commands) for n in ("modem1", "modem2"))
            beats1 = len(lab.ionmesh.heartbeats("rig-router"))
            mem = benchlib.proc_status(pid, ("VmRSS", "VmHWM"))
            threads = thread_count(pid)
            stopped = lab.rig.stop_daemon()
        finally:
            ref.kill()
            ref.wait()
    context = {"window_s": round(window, 1), "threads": threads,
               "heartbeats_in_window": beats1 - beats0,
               "at_commands_in_window": commands1 - commands0,
               "rss_kb": mem.get("VmRSS"), "peak_rss_kb": mem.get("VmHWM"),
               "exit_status": stopped}
    figures = [
        Figure(f"idle CPU share ({part:g} s parts)", "%", cpu,
               "an idle asyncio loop, same window", ref_cpu, target=0.1, target_on_mean=True,
               target_text="mean <= 0.1 %", extra=context),
        Figure(f"idle wakeups per second ({part:g} s parts)", "/s", wakeups,
               "an idle asyncio loop, same window", ref_wakeups, target=1.0,
               target_on_mean=True, target_text="mean <= 1 /s"),
        Figure(f"involuntary switches per second ({part:g} s parts)", "/s", preempted,
               note="preemptions: they follow the machine's load, not the daemon"),
    ]
    benchlib.emit("idle_cpu", figures, args.json, **context)
    return 0


if __name__ == "__main__":
    sys.exit(main())
