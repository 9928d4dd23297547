"""The benchmarks in bench/ keep running: each with its smallest trial count.

No timing is asserted here (timing belongs to the benchmarks); each must
finish, print its figures in ``--json``, every figure with its samples and,
where it names a limit, the limit measured beside it. ``bench/run_all.py``'s
``--quick`` arguments are the ones used, so ``make bench`` runs what this
checks.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
from types import ModuleType

import pytest

from tests.paths import REPO

BENCH = REPO / "bench"


def load(name: str) -> ModuleType:
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCH))


PLAN = load("run_all").PLAN
benchlib = load("benchlib")

needs_lab = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)"),
    pytest.mark.skipif(shutil.which("ip") is None or shutil.which("nft") is None,
                       reason="needs iproute2 and nftables"),
    pytest.mark.skipif(not os.access("/usr/bin/time", os.X_OK), reason="needs /usr/bin/time"),
]


def namespaces(pid: int) -> set[str]:
    """The namespaces a benchmark with this pid would make: rsb* and its rig's."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    names = {line.split()[0] for line in out.stdout.splitlines() if line.strip()}
    return {n for n in names if n.startswith(("rsb", f"rig-{pid}-")) and str(pid) in n}


QUICK = {script: quick for script, _full, quick in PLAN.values() if quick is not None}


@pytest.mark.parametrize("name", sorted(QUICK))
@pytest.mark.timeout(120)
def test_each_benchmark_produces_its_figures(name: str) -> None:
    for mark in needs_lab:
        if mark.args[0]:
            pytest.skip(mark.kwargs["reason"])
    proc = subprocess.Popen([sys.executable, str(BENCH / f"{name}.py"), *QUICK[name],
                             "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = proc.communicate(timeout=110)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr[-3000:]
    result = json.loads(stdout)
    assert result["bench"] == name
    assert result["environment"]["libraries"]["python"]
    assert result["figures"], "no figures"
    for figure in result["figures"]:
        assert figure["trials"] >= 1 and len(figure["samples"]) == figure["trials"], figure
        assert all(isinstance(v, float | int) and math.isfinite(v) for v in figure["samples"])
        if figure["limit_name"]:
            assert figure["limit_samples"] and figure["limit"] is not None, figure
        if figure["target"] is not None:
            assert figure["met"] in (True, False), figure
    assert result.get("tracebacks", 0) == 0
    assert not namespaces(proc.pid), "the benchmark left network namespaces behind"


def test_percentile_and_the_verdict_against_a_target() -> None:
    assert benchlib.percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert benchlib.percentile([1.0, 2.0, 3.0, 4.0], 95) == pytest.approx(3.85)
    assert math.isnan(benchlib.percentile([], 50))
    f = benchlib.Figure("x", "ms", [1.0, 2.0, 9.0], "limit", [0.5], target=2.0, target_p95=5.0)
    assert f.median == 2.0 and f.ratio == 4.0
    assert f.met is False  # the median is within its target, the p95 is not
    f.target_p95 = None
    assert f.met is True
    mean = benchlib.Figure("y", "B", [500.0, 500.0, 800.0], target=550.0, target_on_mean=True)
    assert mean.median == 500.0 and mean.met is False  # 600 on average
    assert benchlib.Figure("z", "ms", [1.0]).met is None  # no target, no verdict
