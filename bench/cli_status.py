"""The ``status`` command: wall time and peak memory against starting the interpreter.

The lab network, IonMesh in its cloud, two emulated modems and the real
``remsim-supervisor run`` in its router, both modems connected and the
heartbeat acknowledged, so ``status`` has everything to show; the package
laid out as on the router and run by this interpreter through its launcher
(``usr/bin/remsim-supervisor``). Each trial runs, interleaved so that load
from elsewhere hits all three alike:

* ``remsim-supervisor status`` (the daemon answers over its control socket);
* ``python -c pass`` (the limit: the interpreter with ``site``);
* ``python -S -c pass`` (the interpreter without ``site``).

Wall time from this process (spawn to exit); CPU time (user + system, from
``getrusage(RUSAGE_CHILDREN)`` around each run), which the machine's load
stretches far less than the wall time; peak RSS by ``/usr/bin/time`` (a few
runs each, after the timed ones).

    python bench/cli_status.py [--trials 20] [--json]
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib
from benchlib import Figure


def children_cpu_ms() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (usage.ru_utime + usage.ru_stime) * 1000


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall time, CPU time) of one run, in ms."""
    c0 = children_cpu_ms()
    t0 = time.perf_counter()
    done = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, timeout=30, check=False)
    elapsed = (time.perf_counter() - t0) * 1000
    cpu = children_cpu_ms() - c0
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {done.stderr.decode(errors='replace')}")
    return elapsed, cpu


def main() -> int:
    args = benchlib.parser(__doc__, trials=20).parse_args()
    benchlib.need_root("cli_status")
    commands = {}
    samples: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    rss: dict[str, list[float]] = {}
    with benchlib.interrupts_as_exit(), tempfile.TemporaryDirectory(prefix="rsbcli-") as tmp:
        root = Path(tmp)
        tree = benchlib.launcher_tree(root / "tree")
        with benchlib.lab_daemon("rsbcli", interval=1) as lab:
            rig = lab.rig
            env = {"PATH": f"{tree / 'usr/bin'}:/usr/sbin:/usr/bin:/sbin:/bin",
                   "REMSIM_SUPERVISOR_CONFIG": str(rig.config_path), "HOME": "/"}
            commands = {
                "status": [str(tree / "usr/bin/remsim-supervisor"), "status"],
                "python -c pass": [sys.executable, "-c", "pass"],
                "python -S -c pass": [sys.executable, "-S", "-c", "pass"],
            }
            for argv in commands.values():  # warm the page cache
                timed(argv, env)
            samples = {name: [] for name in commands}
            cpu = {name: [] for name in commands}
            for _ in range(args.trials):
                for name, argv in commands.items():
                    wall, used = timed(argv, env)
                    samples[name].append(wall)
                    cpu[name].append(used)
            rss = {name: [benchlib.peak_rss_mib(argv, env)
                          for _ in range(min(3, max(args.trials, 1)))]
                   for name, argv in commands.items()}
            json_out = subprocess.run([*commands["status"], "--json"], env=env, check=False,
                                      capture_output=True, text=True, timeout=30)
            status_ok = json_out.returncode == 0 and json_out.stdout.lstrip().startswith("{")
    figures = [
        Figure("`status` wall time", "ms", samples["status"], "python -c pass",
               samples["python -c pass"], target=100.0, target_text="<= 100 ms",
               extra={"python_S_ms": round(benchlib.percentile(samples["python -S -c pass"], 50),
                                           2),
                      "status_json_ok": status_ok}),
        Figure("`python -S -c pass` wall time", "ms", samples["python -S -c pass"],
               "python -c pass", samples["python -c pass"]),
        Figure("`status` CPU time (user + system)", "ms", cpu["status"], "python -c pass",
               cpu["python -c pass"],
               extra={"python_S_ms": round(benchlib.percentile(cpu["python -S -c pass"], 50),
                                           2)}),
        Figure("`status` peak RSS", "MiB", rss["status"], "python -c pass",
               rss["python -c pass"],
               extra={"python_S_mib": round(benchlib.percentile(rss["python -S -c pass"], 50),
                                            1)}),
    ]
    benchlib.emit("cli_status", figures, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
