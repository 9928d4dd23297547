"""Prometheus metrics: the text from a status snapshot, checked by promtool."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from remsim_supervisor.supervisor.metrics import render, write_atomic
from tests.fuzzing import examples


def snapshot() -> dict[str, Any]:
    return {
        "version": "1.2.3",
        "grace": {"period_s": 300, "remaining_s": 287.5, "last_ack_age_s": 12.5},
        "heartbeat": {"path": "modem2", "sent": 40, "acked": 38, "failed": 2,
                      "bytes_total": 21080, "interval_s": 60},
        "modems": [
            {"name": "modem1", "role": "primary", "state": "connected",
             "signal": {"rsrp_dbm": -95, "rsrq_db": -11},
             "identity": {"imei": "351234567890123", "imsi": "262011234567890",
                          "iccid": "8949020000001234567"}},
            {"name": "modem2", "role": "iot", "state": "failed", "signal": {}},
        ],
    }


def promtool(text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    if tool is None:
        pytest.fail("promtool is missing: make bootstrap installs it (Debian package prometheus)")
    return subprocess.run([tool, "check", "metrics"], input=text, capture_output=True,
                          text=True, timeout=30)


def samples(text: str) -> dict[str, float]:
    out = {}
    for line in text.rstrip("\n").split("\n"):
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def test_the_families_and_their_values() -> None:
    text = render(snapshot(), {("modem2", "radio_cycle", "failed"): 1,
                               ("modem2", "gpio_reset", "ok"): 2})
    got = samples(text)
    assert got['remsim_supervisor_info{version="1.2.3"}'] == 1
    assert got["remsim_grace_remaining_seconds"] == 287.5
    assert got["remsim_heartbeat_sent_total"] == 40
    assert got["remsim_heartbeat_acked_total"] == 38
    assert got["remsim_heartbeat_failed_total"] == 2
    assert got["remsim_heartbeat_bytes_total"] == 21080
    assert got['remsim_heartbeat_path{modem="modem2"}'] == 1
    assert got['remsim_heartbeat_path{modem="modem1"}'] == 0
    assert got['remsim_modem_state{modem="modem1",state="connected"}'] == 1
    assert got['remsim_modem_state{modem="modem1",state="failed"}'] == 0
    assert got['remsim_modem_state{modem="modem2",state="failed"}'] == 1
    # one-hot: exactly one state per modem
    for modem in ("modem1", "modem2"):
        assert sum(v for k, v in got.items()
                   if k.startswith(f'remsim_modem_state{{modem="{modem}"')) == 1
    assert got['remsim_modem_signal_rsrp_dbm{modem="modem1"}'] == -95
    assert not any("modem2" in k for k in got if k.startswith("remsim_modem_signal"))
    assert got['remsim_recovery_steps_total{modem="modem2",step="gpio_reset",result="ok"}'] == 2


def test_no_identifier_reaches_a_label() -> None:
    text = render(snapshot())
    for secret in ("351234567890123", "262011234567890", "8949020000001234567"):
        assert secret not in text


def test_promtool_accepts_the_text(tmp_path: Path) -> None:
    text = render(snapshot(), {("modem1", "soft_reset", "ok"): 1})
    result = promtool(text, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == ""


def test_promtool_accepts_an_empty_daemon(tmp_path: Path) -> None:
    # Just started: no grace known, no modems yet.
    text = render({"version": "1.2.3"})
    result = promtool(text, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "remsim_grace_remaining_seconds" not in samples(text)


hostile = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                max_size=4),
    max_leaves=20)


@pytest.mark.fuzz
@settings(max_examples=examples(200), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.fixed_dictionaries({}, optional={
    "version": hostile, "grace": hostile, "heartbeat": hostile,
    "modems": st.lists(st.fixed_dictionaries({"name": st.text(max_size=12)}, optional={
        "state": hostile, "signal": hostile}), max_size=3)}))
def test_any_snapshot_renders_valid_lines(status: dict[str, Any]) -> None:
    text = render(status)
    for line in text.rstrip("\n").split("\n"):
        assert line.startswith("# ") or " " in line
        if not line.startswith("#"):
            value = float(line.rsplit(" ", 1)[1])
            assert value == value  # no NaN


def test_write_atomic_readers_never_see_a_partial_file(tmp_path: Path) -> None:
    target = tmp_path / "prometheus" / "remsim_supervisor.prom"
    texts = [render(snapshot()) * n for n in (1, 40)]
    write_atomic(str(target), texts[0])
    seen: set[str] = set()
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            seen.add(target.read_text())

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(300):
            write_atomic(str(target), texts[i % 2])
    finally:
        stop.set()
        thread.join()
    assert seen <= set(texts)
    assert oct(target.stat().st_mode & 0o777) == "0o644"
    assert [p.name for p in target.parent.iterdir()] == [target.name]
    assert not os.path.exists(str(target) + ".tmp")
