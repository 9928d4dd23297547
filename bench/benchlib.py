"""What every benchmark in bench/ shares: its command line, its figures, its output.

Each benchmark measures one or more *figures*. A figure carries its trials
(median and p95), the *limit* measured in the same run (the best the
machine does for the same job: a stdlib reactor on the same netlink event,
``python -c pass``, a shell hand-off, the HTTP/TCP floor over the same
path), the ratio of the two, and the product's target with met / not met.

    python bench/NAME.py [--trials N] [--json]

``--json`` prints one JSON object: ``{"bench": NAME, "figures": [...],
"environment": {...}}``; without it, a table. ``bench/run_all.py`` (``make
bench``) runs them all and prints one summary.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linear between the two nearest ranks."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100.0
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


@dataclass
class Figure:
    """One measured figure beside its limit and its target."""

    name: str
    unit: str
    samples: list[float]
    limit_name: str = ""
    limit_samples: list[float] = field(default_factory=list)
    target: float | None = None  # in ``unit``; None: no target, informative only
    target_text: str = ""
    target_p95: float | None = None  # a second target, on the p95
    target_on_mean: bool = False  # the target is for the mean (an average over a day)
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def trials(self) -> int:
        return len(self.samples)

    @property
    def median(self) -> float:
        return statistics.median(self.samples) if self.samples else float("nan")

    @property
    def mean(self) -> float:
        return statistics.fmean(self.samples) if self.samples else float("nan")

    @property
    def p95(self) -> float:
        return percentile(self.samples, 95)

    @property
    def limit(self) -> float | None:
        return statistics.median(self.limit_samples) if self.limit_samples else None

    @property
    def ratio(self) -> float | None:
        limit = self.limit
        if limit is None or limit == 0:
            return None
        return self.median / limit

    @property
    def met(self) -> bool | None:
        if self.target is None or not self.samples:
            return None
        met = (self.mean if self.target_on_mean else self.median) <= self.target
        if self.target_p95 is not None:
            met = met and self.p95 <= self.target_p95
        return met

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(trials=self.trials, median=_round(self.median), p95=_round(self.p95),
                   mean=_round(self.mean),
                   limit=_round(self.limit), ratio=_round(self.ratio), met=self.met)
        out["samples"] = [_round(v) for v in self.samples]
        out["limit_samples"] = [_round(v) for v in self.limit_samples]
        return out


def _round(value: float | None) -> float | None:
    if value is None or value != value:  # None or NaN
        return None
    return round(value, 4)


def library_versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for name in ("pyroute2", "gpiod", "click", "pyserial"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def environment() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "kernel": platform.release(),
            "libraries": library_versions(), "interpreter": sys.executable,
            "load_average": [round(v, 2) for v in os.getloadavg()],
            "at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}


def parser(doc: str | None, trials: int) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    p.add_argument("--trials", type=int, default=trials, help=f"trials (default {trials})")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    return p


def need_root(name: str) -> None:
    if os.geteuid() != 0:
        print(f"{name}: needs root (it creates network namespaces)", file=sys.stderr)
        raise SystemExit(2)


def fmt(value: float | None, unit: str) -> str:
    if value is None or value != value:
        return "-"
    if unit == "ms":
        return f"{value:.2f} ms" if value < 10 else f"{value:.1f} ms"
    if unit == "%":
        return f"{value:.3f} %"
    if unit in ("MB", "MiB"):
        return f"{value:.1f} {unit}"
    return f"{value:.1f} {unit}" if value < 100 else f"{value:.0f} {unit}"


def render(bench: str, figures: list[Figure]) -> str:
    head = (f"{'figure':44} {'trials':>6} {'median':>11} {'p95':>11} {'limit':>11} "
            f"{'ratio':>7}  target")
    lines = [f"== {bench}", head]
    for f in figures:
        met = {True: "met", False: "NOT met", None: ""}[f.met]
        ratio = "-" if f.ratio is None else f"{f.ratio:.2f}x"
        lines.append(f"{f.name[:44]:44} {f.trials:>6} {fmt(f.median, f.unit):>11} "
                     f"{fmt(f.p95, f.unit):>11} {fmt(f.limit, f.unit):>11} {ratio:>7}  "
                     f"{f.target_text} {met}".rstrip())
        if f.limit_name:
            lines.append(f"{'':6}limit: {f.limit_name}")
        if f.note:
            lines.append(f"{'':6}{f.note}")
    return "\n".join(lines)


def emit(bench: str, figures: list[Figure], as_json: bool, **extra: Any) -> None:
    if as_json:
        print(json.dumps({"bench": bench, "figures": [f.as_dict() for f in figures],
                          "environment": environment(), **extra}))
    else:
        print(render(bench, figures))
        for key, value in extra.items():
            print(f"{key}: {json.dumps(value)}")


@contextlib.contextmanager
def interrupts_as_exit() -> Iterator[None]:
    """SIGTERM (and SIGINT) unwind through every ``finally``: namespaces get removed."""
    def stop(signum: int, _frame: object) -> None:
        # Once: a second signal must not cut the clean-up short.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt(f"signal {signum}")

    old = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def run(argv: Sequence[str], timeout: float = 30.0,
        **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                          check=True, **kwargs)


def launcher_tree(root: Path) -> Path:
    """The package laid out as on the router, run by this interpreter.

    ``usr/bin/remsim-supervisor`` (the launcher, its ``#!`` line pointing at
    ``sys.executable``), ``usr/lib/remsim-supervisor/remsim_supervisor`` (a
    link to the package sources), ``usr/libexec/remsim-supervisor/remsim-event``
    and the hotplug hooks under ``etc/hotplug.d``. Returns ``root``.
    """
    files = REPO / "files"
    bindir = root / "usr" / "bin"
    libdir = root / "usr" / "lib" / "remsim-supervisor"
    libexec = root / "usr" / "libexec" / "remsim-supervisor"
    for d in (bindir, libdir, libexec, root / "etc" / "hotplug.d" / "iface",
              root / "etc" / "hotplug.d" / "usb"):
        d.mkdir(parents=True, exist_ok=True)
    launcher = (files / "usr" / "bin" / "remsim-supervisor").read_text().splitlines()
    (bindir / "remsim-supervisor").write_text(
        "\n".join([f"#!{sys.executable}", *launcher[1:]]) + "\n")
    (libdir / "remsim_supervisor").symlink_to(REPO / "remsim_supervisor")
    for rel in ("usr/libexec/remsim-supervisor/remsim-event",
                "etc/hotplug.d/iface/90-remsim-supervisor",
                "etc/hotplug.d/usb/90-remsim-supervisor"):
        (root / rel).write_bytes((files / rel).read_bytes())
    for path in (bindir / "remsim-supervisor", libexec / "remsim-event"):
        path.chmod(0o755)
    return root


def wait_until(predicate: Any, timeout: float, what: str, step: float = 0.01) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise TimeoutError(f"timed out waiting for {what}")


@dataclass
class Lab:
    net: Any  # remsim_lab.network.LabNetwork
    ionmesh: Any  # remsim_lab.ionmesh_server.IonMeshServer
    rig: Any  # remsim_lab.rig.Rig
    root: Path

    @property
    def pid(self) -> int:
        assert self.rig.daemon is not None
        return int(self.rig.daemon.pid)


@contextlib.contextmanager
def lab_daemon(prefix: str, *, interval: int = 1, extra_config: str = "",
               start_daemon: bool = True) -> Iterator[Lab]:
    """The lab network, IonMesh in its cloud, two emulated modems and the real
    daemon in its router, both modems connected and one heartbeat acknowledged.
    Everything is removed on exit, also on failure or Ctrl-C."""
    import tempfile

    from remsim_lab.ionmesh_server import IonMeshServer
    from remsim_lab.network import IONMESH, LabNetwork, call_in_netns
    from remsim_lab.rig import Rig

    with tempfile.TemporaryDirectory(prefix=f"{prefix}-") as tmp, LabNetwork(prefix) as net:
        ionmesh = call_in_netns(net.cloud, IonMeshServer, host=IONMESH, port=5000,
                                heartbeat_interval=interval)
        ionmesh.start()
        try:
            with Rig.for_lab(Path(tmp) / "rig", f"http://{IONMESH}:5000",
                             min_interval=interval, extra_config=extra_config) as rig:
                lab = Lab(net, ionmesh, rig, Path(tmp))
                if start_daemon:
                    rig.start_daemon(netns=net.router)
                    rig.wait_for(lambda s: all(m["state"] == "connected" for m in s["modems"])
                                 and s["heartbeat"]["acked"] >= 1, 60,
                                 "both modems connected, one heartbeat acknowledged")
                try:
                    yield lab
                finally:
                    rig.stop_daemon()
        finally:
            ionmesh.stop()


def proc_status(pid: int, keys: Sequence[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in keys:
            out[key] = int(value.split()[0])
    return out


def peak_rss_mib(argv: Sequence[str], env: dict[str, str] | None = None,
                 timeout: float = 30.0) -> float:
    """The peak RSS (MiB) of ``argv`` and what it waited for, by ``/usr/bin/time``.

    Not ``wait4`` from here: a child forked from this (large) process starts
    with this process's peak, which ``ru_maxrss`` keeps across ``exec``.
    """
    import tempfile

    with tempfile.NamedTemporaryFile("r", suffix=".time") as out:
        subprocess.run(["/usr/bin/time", "-f", "%M", "-o", out.name, *argv], env=env,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=timeout, check=False)
        return int(out.read().split()[-1]) / 1024
