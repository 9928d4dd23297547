"""Run every benchmark in bench/ with modest trial counts and print one summary table.

Each benchmark runs as its own process (``python bench/NAME.py --json``)
with the interpreter given (``--python``, default this one), one after the
other so they do not disturb each other. ``make bench`` runs this; the
whole takes about ten minutes on 2 cores. ``--quick`` uses the smallest
trial counts (a check that they all run, not a measurement).

    python bench/run_all.py [--python PATH] [--only NAME,...] [--quick] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib

BENCH = os.path.dirname(os.path.abspath(__file__))

# run name: (script in bench/, arguments for make bench, arguments for --quick or None:
# not run by --quick, the same script is covered by another entry)
PLAN: dict[str, tuple[str, list[str], list[str] | None]] = {
    "failover": ("failover", ["--trials", "30"], ["--trials", "2"]),
    "failover-100-pins": ("failover", ["--trials", "3", "--pins", "100"], None),
    "failover-500-pins": ("failover", ["--trials", "3", "--pins", "500"], None),
    "conntrack_cutover": ("conntrack_cutover", ["--trials", "3"],
                          ["--trials", "2", "--pins", "1,10", "--background", "50"]),
    "heartbeat_real": ("heartbeat_real", ["--trials", "60"], ["--trials", "2"]),
    "lan_failover": ("lan_failover", ["--trials", "10"], ["--trials", "1"]),
    "event_handoff": ("event_handoff", ["--trials", "50"], ["--trials", "3"]),
    "cli_status": ("cli_status", ["--trials", "20"], ["--trials", "2"]),
    "daemon_rss": ("daemon_rss", ["--trials", "5"], ["--trials", "2"]),
    "idle_cpu": ("idle_cpu", ["--trials", "6", "--seconds", "60"],
                 ["--trials", "2", "--seconds", "2"]),
}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--python", default=sys.executable)
    p.add_argument("--only", default="", help="comma-separated benchmark names")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json", metavar="FILE", help="also write every result to FILE")
    args = p.parse_args()
    names = [n for n in args.only.split(",") if n] or [
        n for n, plan in PLAN.items() if not args.quick or plan[2] is not None]
    unknown = [n for n in names if n not in PLAN]
    if unknown:
        print(f"run_all: unknown benchmark(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    results, failed = [], []
    for name in names:
        script, full, quick = PLAN[name]
        extra = quick if args.quick and quick is not None else full
        t0 = time.monotonic()
        print(f"-- {script} {' '.join(extra)}", file=sys.stderr, flush=True)
        done = subprocess.run([args.python, os.path.join(BENCH, f"{script}.py"), *extra, "--json"],
                              capture_output=True, text=True, timeout=900, check=False)
        if done.returncode != 0:
            failed.append(name)
            print(f"   failed ({done.returncode}): {done.stderr.strip()[-2000:]}",
                  file=sys.stderr)
            continue
        result = json.loads(done.stdout)
        result["seconds"] = round(time.monotonic() - t0, 1)
        result["run"] = name
        result["arguments"] = extra
        results.append(result)
    print(f"{'benchmark / figure':58} {'n':>4} {'median':>11} {'p95':>11} {'limit':>11} "
          f"{'ratio':>8}  target")
    for result in results:
        for f in result["figures"]:
            met = {True: "met", False: "NOT met", None: ""}[f["met"]]
            ratio = "-" if f["ratio"] is None else f"{f['ratio']:.2f}x"
            label = f"{result['run']}: {f['name']}"
            print(f"{label[:58]:58} {f['trials']:>4} {benchlib.fmt(f['median'], f['unit']):>11} "
                  f"{benchlib.fmt(f['p95'], f['unit']):>11} "
                  f"{benchlib.fmt(f['limit'], f['unit']):>11} {ratio:>8}  "
                  f"{f['target_text']} {met}".rstrip())
    if results:
        env = results[0]["environment"]
        print(f"\n{env['cpus']} CPUs, Linux {env['kernel']}, "
              + ", ".join(f"{k} {v}" for k, v in env["libraries"].items()))
    if args.json:
        with open(args.json, "w") as out:
            json.dump(results, out, indent=1)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
