"""Daemon memory: its RSS against the bare interpreter's, and what each import adds.

1. The lab network, IonMesh in its cloud, two emulated modems and the real
   ``remsim-supervisor run`` in its router, both modems connected and the
   heartbeat acknowledged (so the routing reconciler has loaded pyroute2).
   ``VmRSS`` sampled once a second, ``--trials`` times; ``VmHWM`` at the end;
   whether ``_sqlite3`` is mapped into the daemon (``/proc/PID/maps``).
2. The limit, in the same run: the interpreter that runs the daemon, idle
   (``python -c 'sleep'``), its ``VmRSS``; and the same with ``-S``.
3. Per import: a fresh interpreter per module reads its own ``VmRSS``
   before and after ``import X`` (each alone, so each delta includes what X
   pulls in), and which of ``sqlite3`` / ``pyroute2.ndb`` got loaded.
4. Step by step, in one fresh interpreter, in the order the daemon loads
   them (``STEPS``): what each adds on top of the ones before, so the parts
   add up to the daemon's own figure (shared dependencies such as ``ssl``,
   which ``asyncio`` and ``http.client`` both load, are counted once).
5. Whether ``pyroute2`` loads without ``sqlite3``: ``from pyroute2 import
   IPRoute`` with ``sqlite3`` blocked, then an ``IPRoute()`` dump of links in
   a throw-away namespace; and the submodule path
   ``pyroute2.iproute.linux``.

    python bench/daemon_rss.py [--trials 5] [--json]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib
from benchlib import Figure

IMPORTS = {
    "asyncio": "import asyncio",
    "json": "import json",
    "http.client": "import http.client",
    "serial (pyserial)": "import serial",
    "click": "import click",
    "gpiod": "import gpiod",
    "sqlite3": "import sqlite3",
    "pyroute2 IPRoute": "from pyroute2 import IPRoute",
    "pyroute2.iproute.linux IPRoute": "from pyroute2.iproute.linux import IPRoute",
    "remsim_supervisor.adapters.routing": "import remsim_supervisor.adapters.routing",
    "remsim_supervisor.supervisor.daemon": "import remsim_supervisor.supervisor.daemon",
    "remsim_supervisor.supervisor.daemon + pyroute2": (
        "import remsim_supervisor.supervisor.daemon; from pyroute2 import IPRoute"),
}

# In the daemon's order: the command line, the event loop (which loads ssl),
# the daemon's modules (http.client comes with the IonMesh client), pyroute2
# (with the first routing call), pyserial and the rest at the first port.
STEPS = {
    "click (the command line)": "import click",
    "asyncio (and ssl)": "import asyncio",
    "http.client (and email)": "import http.client",
    "remsim_supervisor.supervisor.daemon": "import remsim_supervisor.supervisor.daemon",
    "pyroute2 IPRoute (and sqlite3, ndb)": "from pyroute2 import IPRoute",
    "serial (pyserial)": "import serial",
}

STEP_PROBE = r"""
import json, sys
def rss():
    for line in open('/proc/self/status'):
        if line.startswith('VmRSS:'):
            return int(line.split()[1])
out = [["the interpreter (site included)", rss()]]
for name, code in json.loads(sys.argv[1]):
    before = rss()
    exec(code)
    out.append([name, rss() - before])
print(json.dumps(out))
"""

PROBE = r"""
import json, sys
def rss():
    for line in open('/proc/self/status'):
        if line.startswith('VmRSS:'):
            return int(line.split()[1])
before = rss()
exec(sys.argv[1])
after = rss()
print(json.dumps({"before_kb": before, "after_kb": after,
                  "sqlite3": 'sqlite3' in sys.modules,
                  "ndb": any(m.startswith('pyroute2.ndb') for m in sys.modules),
                  "modules": len(sys.modules)}))
"""

NO_SQLITE = r"""
import json, sys
sys.modules['sqlite3'] = None  # any import of it fails
out = {}
try:
    from pyroute2 import IPRoute
    with IPRoute() as ipr:
        out["links"] = len(ipr.get_links())
    out["works"] = True
except Exception as exc:
    out["works"] = False
    out["error"] = f"{type(exc).__name__}: {exc}"[:200]
print(json.dumps(out))
"""


def rss_of(pid: int) -> dict[str, int]:
    return benchlib.proc_status(pid, ("VmRSS", "VmHWM"))


def idle_interpreter_kb(flags: list[str]) -> float:
    proc = subprocess.Popen([sys.executable, *flags, "-c", "import time; time.sleep(30)"])
    try:
        time.sleep(0.5)
        return rss_of(proc.pid)["VmRSS"]
    finally:
        proc.kill()
        proc.wait()


def import_deltas() -> dict[str, dict[str, Any]]:
    out = {}
    for name, code in IMPORTS.items():
        done = subprocess.run([sys.executable, "-c", PROBE, code], capture_output=True,
                              text=True, timeout=60, cwd=benchlib.REPO, check=False)
        if done.returncode != 0:
            out[name] = {"error": (done.stderr.strip().splitlines() or ["failed"])[-1][:200]}
            continue
        got = json.loads(done.stdout)
        got["delta_mb"] = round((got["after_kb"] - got["before_kb"]) / 1000, 1)
        out[name] = got
    return out


def cumulative_steps() -> list[tuple[str, float]]:
    done = subprocess.run([sys.executable, "-c", STEP_PROBE, json.dumps(list(STEPS.items()))],
                          capture_output=True, text=True, timeout=60, cwd=benchlib.REPO,
                          check=False)
    if done.returncode != 0:
        return [("error: " + (done.stderr.strip().splitlines() or ["failed"])[-1][:200], 0.0)]
    return [(name, round(kb / 1000, 1)) for name, kb in json.loads(done.stdout)]


def without_sqlite() -> dict[str, Any]:
    ns = f"rsbrss-{os.getpid()}-{uuid.uuid4().hex[:5]}"
    subprocess.run(["ip", "netns", "add", ns], check=True, capture_output=True)
    try:
        done = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", NO_SQLITE],
                              capture_output=True, text=True, timeout=60, check=False)
        return json.loads(done.stdout) if done.returncode == 0 else {
            "works": False, "error": done.stderr.strip()[-200:]}
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)


def main() -> int:
    args = benchlib.parser(__doc__, trials=5).parse_args()
    benchlib.need_root("daemon_rss")
    samples: list[float] = []
    with benchlib.interrupts_as_exit(), benchlib.lab_daemon("rsbrss", interval=1) as lab:
        time.sleep(1.0)
        for i in range(args.trials):
            if i:
                time.sleep(1.0)
            samples.append(rss_of(lab.pid)["VmRSS"] / 1000)
        hwm = rss_of(lab.pid)["VmHWM"] / 1000
        maps = Path(f"/proc/{lab.pid}/maps").read_text()
        sqlite_mapped = "_sqlite3" in maps or "libsqlite3" in maps
    interp = [idle_interpreter_kb([]) / 1000 for _ in range(3)]
    interp_s = [idle_interpreter_kb(["-S"]) / 1000 for _ in range(3)]
    deltas = import_deltas()
    steps = cumulative_steps()
    no_sqlite = without_sqlite()
    figures = [
        Figure("daemon RSS (lab, heartbeat running)", "MB", samples,
               "the interpreter idle (python -c sleep)", interp, target=30.0,
               target_text="<= 30 MB",
               extra={"peak_rss_mb": round(hwm, 1), "sqlite3_mapped": sqlite_mapped,
                      "interpreter_S_mb": round(benchlib.percentile(interp_s, 50), 1)}),
    ]
    for name, got in deltas.items():
        if "delta_mb" in got:
            figures.append(Figure(f"import {name}: RSS delta", "MB", [float(got["delta_mb"])],
                                  note=f"sqlite3 loaded: {got['sqlite3']}, "
                                       f"pyroute2.ndb loaded: {got['ndb']}"))
    for name, mb in steps:
        figures.append(Figure(f"step: {name}", "MB", [mb],
                              note="in one interpreter, on top of the steps above"))
    benchlib.emit("daemon_rss", figures, args.json, imports=deltas, steps=steps,
                  steps_total_mb=round(sum(mb for _name, mb in steps), 1),
                  pyroute2_without_sqlite3=no_sqlite)
    return 0


if __name__ == "__main__":
    sys.exit(main())
