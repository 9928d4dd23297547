"""Event and hotplug hand-off: a burst of osmo-remsim events and hotplug events to a running daemon.

Two emulated modems and the real ``remsim-supervisor run`` (its own network
namespace) listening on OpenWrt's own ``ubusd`` (a private socket,
remsim_lab/ubus.py), the package laid out as on the router (``usr/bin``
launcher, ``usr/libexec/remsim-supervisor/remsim-event``, ``etc/hotplug.d``
hooks), run by this interpreter. Then bursts of ``--trials`` (50) events,
launched back to back without waiting, as osmo-remsim-client and procd
launch them:

* **event**: ``/bin/sh -c "remsim-event event-modem-status"`` (the event
  script: one ``ubus send remsim-supervisor.hook`` while the daemon listens);
* **hotplug**: ``/bin/sh -c ". 90-remsim-supervisor"`` with netifd's
  ``ACTION=ifup INTERFACE=... DEVICE=...`` (the hook's ``ubus send``);
* **event, one at a time**: 20 events, each launched once the one before
  has reached the bus, to show the hand-off's latency without the burst's
  queue for the CPU;
* **event, Python path**: the same burst with the daemon's ready file moved
  aside, so the script takes the fallback (``remsim-supervisor event``, a
  Python start, the control socket), for comparison.

Per event: from its launch to the daemon's log line for it (``osmo-remsim:
... queued``, ``hotplug iface ...``; the log's millisecond timestamps), the
n-th line matched with the n-th launch; and to a plain ``ubus listen`` of
the benchmark's own (the bus alone, without the daemon's share). Also the
burst's wall time, and the event script's peak RSS (``/usr/bin/time``, three runs after the burst).

The limit, in the same run: the same burst through a shell hand-off, ``sh
-c 'printf ... > FIFO'`` (event) and a hook that filters the same way and
backgrounds the ``printf`` (hotplug), received by a reader in this process
and timestamped there.

    python bench/event_handoff.py [--trials 50] [--json]
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib
from benchlib import Figure

CAUSE = "event-modem-status"
IFUP = {"ACTION": "ifup", "INTERFACE": "benchwan", "DEVICE": "wwan9"}
SHELL_HOOK = """case "$ACTION" in
	ifup|ifdown|ifup-failed|ifupdate) ;;
	*) exit 0 ;;
esac
[ "$INTERFACE" = loopback ] && exit 0
printf '%s %s %s\\n' "$ACTION" "$INTERFACE" "$DEVICE" > "$BENCH_FIFO" &
"""
LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) ")


class FifoReader:
    """Lines written into a FIFO, each stamped when read here."""

    def __init__(self, path: Path) -> None:
        os.mkfifo(path)
        self.path = path
        self.times: list[float] = []
        # Held open for writing too, so the reader never sees an end between writers.
        self._fd = os.open(path, os.O_RDWR)
        self._stop = False
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        import select

        buf = b""
        while not self._stop:
            ready, _, _ = select.select([self._fd], [], [], 0.1)
            if not ready:
                continue
            chunk = os.read(self._fd, 65536)
            now = time.time()
            buf += chunk
            while b"\n" in buf:
                _line, _, buf = buf.partition(b"\n")
                self.times.append(now)

    def close(self) -> None:
        self._stop = True
        self._thread.join(timeout=1)
        os.close(self._fd)


class BusTap:
    """A ``ubus listen remsim-supervisor.hook`` of the benchmark's own: every line the
    bus delivers, stamped when read here, with whether it was an event or a hotplug."""

    def __init__(self, ubus: Path, bus: Any) -> None:
        self.lines: list[tuple[float, str]] = []
        self._proc = subprocess.Popen([str(ubus), "-s", str(bus.socket), "listen",
                                       "remsim-supervisor.hook"], stdout=subprocess.PIPE,
                                      stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            kind = "event" if b'"hook":"event"' in line else "hotplug"
            self.lines.append((time.time(), kind))

    def times(self, kind: str, since: float) -> list[float]:
        return [t for t, k in list(self.lines) if k == kind and t >= since]

    def close(self) -> None:
        self._proc.kill()
        self._proc.wait()
        self._thread.join(timeout=1)


def log_times(log: str, marker: str) -> list[float]:
    out = []
    for line in log.splitlines():
        if marker not in line:
            continue
        m = LOG_TIME.match(line)
        if m:
            stamp = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S").timestamp()
            out.append(stamp + int(m.group(2)) / 1000)
    return out


def burst(argv: list[str], env: dict[str, str], n: int) -> list[float]:
    """Launch ``n`` back to back without waiting, then reap them; the launch times."""
    launched, procs = [], []
    try:
        for _ in range(n):
            launched.append(time.time())
            procs.append(subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    finally:
        for p in procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    return launched


def latencies(launched: list[float], received: list[float]) -> list[float]:
    received = sorted(received)[: len(launched)]
    return [(r - t) * 1000 for t, r in zip(launched, received, strict=False)]


def main() -> int:
    args = benchlib.parser(__doc__, trials=50).parse_args()
    benchlib.need_root("event_handoff")
    from remsim_lab.rig import Rig
    from remsim_lab.ubus import UBUS, Bus, missing
    from remsim_supervisor.supervisor.hooklisten import ready_file_for

    n = args.trials
    if missing():
        print(f"event_handoff: OpenWrt's ubus is not built ({', '.join(missing())}): run "
              "sh scripts/build-openwrt.sh", file=sys.stderr)
        return 2
    with benchlib.interrupts_as_exit(), tempfile.TemporaryDirectory(prefix="rsbev-") as tmp:
        root = Path(tmp)
        tree = benchlib.launcher_tree(root / "tree")
        script = tree / "usr/libexec/remsim-supervisor/remsim-event"
        hook = tree / "etc/hotplug.d/iface/90-remsim-supervisor"
        shell_hook = root / "shell-hook"
        shell_hook.write_text(SHELL_HOOK)
        with Bus(root) as bus, Rig(root / "rig") as rig:
            rig.plug("modem1")
            rig.plug("modem2")
            rig.start_daemon(env=bus.environment())
            rig.wait_for(lambda s: (s["events"].get("ubus") or {}).get("ready"), 30,
                         "the daemon's hook listener")
            ready = Path(ready_file_for(rig.socket))
            tap = BusTap(UBUS, bus)
            base_env = {"PATH": f"{tree / 'usr/bin'}:/usr/sbin:/usr/bin:/sbin:/bin",
                        "REMSIM_SUPERVISOR_CONFIG": str(rig.config_path),
                        "REMSIM_SUPERVISOR_STATE_DIR": str(root / "state"), "HOME": "/"}
            time.sleep(1.0)
            results: dict[str, tuple[list[float], list[float], float, float]] = {}

            def run_ours(name: str, argv: list[str], env: dict[str, str], marker: str) -> None:
                seen = rig.log().count(marker)
                launched = burst(argv, env, n)
                # Counted, not parsed, while waiting: the benchmark's own CPU stays off the burst.
                benchlib.wait_until(lambda: rig.log().count(marker) >= seen + n, 120,
                                    f"{n} {name} events in the daemon's log", step=0.05)
                got = log_times(rig.log(), marker)[seen:seen + n]
                kind = name.split("-")[0]
                with contextlib.suppress(TimeoutError):  # the Python path never reaches the bus
                    benchlib.wait_until(lambda: len(tap.times(kind, launched[0])) >= n,
                                        0.2 if name.endswith("python") else 10, "the tap")
                on_bus = tap.times(kind, launched[0])[:n]
                if len(on_bus) == n and not name.endswith("python"):
                    results[f"{name}-bus"] = (latencies(launched, on_bus), [], launched[0],
                                              max(on_bus))
                rss = [benchlib.peak_rss_mib(argv, env) for _ in range(3)]
                results[name] = (latencies(launched, got), rss, launched[0], max(got))

            def run_shell(name: str, argv: list[str], env: dict[str, str]) -> None:
                reader = FifoReader(root / f"{name}.fifo")
                try:
                    env = {**env, "BENCH_FIFO": str(reader.path)}
                    launched = burst(argv, env, n)
                    benchlib.wait_until(lambda: len(reader.times) >= n, 30, "the shell burst")
                    rss = [benchlib.peak_rss_mib(argv, env) for _ in range(3)]
                    results[name] = (latencies(launched, reader.times), rss, launched[0],
                                     max(reader.times))
                finally:
                    reader.close()

            event_marker = f"osmo-remsim: {CAUSE} queued"
            run_ours("event", ["/bin/sh", "-c", f"{script} {CAUSE}"], base_env, event_marker)
            time.sleep(0.5)
            run_shell("event-shell", ["/bin/sh", "-c", 'printf "%s\\n" "$0" > "$BENCH_FIFO"',
                                      CAUSE], base_env)
            time.sleep(0.5)
            run_ours("hotplug", ["/bin/sh", "-c", f". {hook}"], {**base_env, **IFUP},
                     "hotplug iface ")
            time.sleep(0.5)
            run_shell("hotplug-shell", ["/bin/sh", "-c", f". {shell_hook}"],
                      {**base_env, **IFUP})
            # One at a time: the hand-off's own latency, with no burst queueing behind it.
            time.sleep(0.5)
            seen = rig.log().count(event_marker)
            launched_one = []
            for _ in range(min(n, 20)):
                on_bus = len(tap.times("event", 0.0))
                launched_one.append(time.time())
                burst(["/bin/sh", "-c", f"{script} {CAUSE}"], base_env, 1)
                benchlib.wait_until(lambda c=on_bus: len(tap.times("event", 0.0)) > c, 10,
                                    "the event on the bus", step=0.001)
                time.sleep(0.03)
            benchlib.wait_until(lambda: rig.log().count(event_marker) >= seen + len(launched_one),
                                10, "the single events in the daemon's log")
            got = log_times(rig.log(), event_marker)[seen:seen + len(launched_one)]
            results["event-single"] = ([(r - t) * 1000 for t, r in zip(launched_one, got,
                                                                        strict=True)],
                                       [], launched_one[0], max(got))
            over_ubus = rig.status()["events"]["ubus"]
            # The fallback, for comparison: the ready file aside, the script starts Python.
            aside = ready.with_name(ready.name + ".aside")
            ready.rename(aside)
            try:
                time.sleep(0.5)
                run_ours("event-python", ["/bin/sh", "-c", f"{script} {CAUSE}"], base_env,
                         event_marker)
            finally:
                aside.rename(ready)
            counts = rig.status()["events"]
            tracebacks = rig.log().count("Traceback")
            tap.close()
    figures = []
    for name, title in (("event", "osmo-remsim event -> daemon over ubus"),
                        ("hotplug", "hotplug hook -> daemon over ubus")):
        ours, _rss, first, last = results[name]
        floor, _floor_rss, ffirst, flast = results[f"{name}-shell"]
        figures.append(Figure(f"{title}, burst of {n}", "ms", ours,
                              "the same burst handed off by the shell (sh -c printf > FIFO)",
                              floor, target=10.0, target_text="<= 10 ms per event",
                              extra={"burst_wall_ms": round((last - first) * 1000, 1),
                                     "shell_burst_wall_ms": round((flast - ffirst) * 1000, 1)}))
        figures.append(Figure(f"{name}: whole burst of {n}, wall", "ms",
                              [(last - first) * 1000], "the shell burst's wall time",
                              [(flast - ffirst) * 1000]))
    for name in ("event", "hotplug"):
        if f"{name}-bus" in results:
            figures.append(Figure(f"{name}: launch -> a plain `ubus listen` (the bus alone)", "ms",
                                  results[f"{name}-bus"][0], "the daemon's log line, same burst",
                                  results[name][0]))
    figures.append(Figure("osmo-remsim event -> daemon over ubus, one at a time", "ms",
                          results["event-single"][0], "the burst's shell hand-off",
                          results["event-shell"][0], target=10.0,
                          target_text="<= 10 ms per event"))
    python, _rss, pfirst, plast = results["event-python"]
    figures.append(Figure(f"osmo-remsim event -> daemon, Python path (no listener), burst of {n}",
                          "ms", python, "the ubus path, same run", results["event"][0],
                          extra={"burst_wall_ms": round((plast - pfirst) * 1000, 1)}))
    figures.append(Figure("event script peak RSS (ubus path)", "MiB", results["event"][1],
                          "sh -c printf (the shell hand-off)", results["event-shell"][1]))
    figures.append(Figure("event script peak RSS (Python path)", "MiB",
                          results["event-python"][1], "the ubus path", results["event"][1]))
    benchlib.emit("event_handoff", figures, args.json, daemon_counts=counts,
                  received_over_ubus=over_ubus, tracebacks=tracebacks)
    return 0


if __name__ == "__main__":
    sys.exit(main())
