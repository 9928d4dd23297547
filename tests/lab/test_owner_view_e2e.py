"""The owner's view over the real daemon in the lab: the status file, the
Prometheus file (checked by promtool) and a notify script hearing a path move."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from remsim_lab.ionmesh_server import IonMeshServer
from remsim_lab.network import IONMESH, LabNetwork
from remsim_lab.rig import Rig
from tests.polling import wait


@pytest.fixture
def rig(tmp_path: Path, net: LabNetwork) -> Iterator[Rig]:
    notify = tmp_path / "notify.d"
    notify.mkdir()
    record = tmp_path / "events"
    hook = notify / "10-record"
    # One line per event: what a chat or push script would send.
    hook.write_text('#!/bin/sh\necho "$REMSIM_EVENT|$REMSIM_FROM|$REMSIM_TO|$REMSIM_MESSAGE"'
                    f' >> {record}\n')
    hook.chmod(0o755)
    extra = f"config notify 'notify'\n\toption directory '{notify}'\n"
    with Rig.for_lab(tmp_path / "rig", f"http://{IONMESH}:5000", extra_config=extra) as r:
        yield r




def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def test_status_file_metrics_and_a_path_change_notification(
        net: LabNetwork, ionmesh: IonMeshServer, rig: Rig, tmp_path: Path) -> None:
    status_file = rig.root / "state" / "status.json"
    metrics_file = rig.root / "metrics" / "remsim_supervisor.prom"
    events = tmp_path / "events"
    rig.start_daemon(netns=net.router)
    rig.wait_for(lambda s: s["heartbeat"]["acked"] >= 1, 15, "an acknowledged heartbeat")

    published = wait("a status file with the heartbeat on modem2",
                     lambda: (s := read_json(status_file)) and s["heartbeat"]["path"] == "modem2"
                     and s)
    assert [m["name"] for m in published["modems"]] == ["modem1", "modem2"]
    assert abs(published["published_at"] - time.time()) < 30
    imeis = [m["identity"]["imei"] for m in rig.status()["modems"]]  # the socket: in full
    assert all(imei and len(imei) == 15 for imei in imeis)
    for modem, imei in zip(published["modems"], imeis):
        assert modem["identity"]["imei"] != imei and modem["identity"]["imei"].endswith(imei[-4:])
    assert oct(status_file.stat().st_mode & 0o777) == "0o644"

    def counted() -> str | None:
        text = metrics_file.read_text() if metrics_file.exists() else ""
        wire = [ln for ln in text.splitlines() if ln.startswith("remsim_heartbeat_bytes_total ")]
        return text if wire and int(wire[0].split()[1]) > 200 else None

    text = wait("metrics counting the heartbeat's bytes", counted)
    assert 'remsim_heartbeat_path{modem="modem2"} 1' in text
    assert 'remsim_modem_state{modem="modem1",state="registered"} 1' in text \
        or 'remsim_modem_state{modem="modem1",state="connected"} 1' in text
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is missing: make bootstrap installs it (Debian package prometheus)")
    check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                           text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr

    net.link("iot", False)
    line = wait("a path_changed notification",
                lambda: events.exists() and next(
                    (ln for ln in events.read_text().splitlines()
                     if ln.startswith("path_changed|")), None), timeout=10)
    _event, old, new, message = line.split("|", 3)
    assert (old, new) == ("modem2", "modem1")
    assert "heartbeat path modem2 -> modem1" in message
    wait("the status file on modem1",
         lambda: (s := read_json(status_file)) and s["heartbeat"]["path"] == "modem1")
    wait("the metrics on modem1",
         lambda: 'remsim_heartbeat_path{modem="modem1"} 1' in metrics_file.read_text())

    assert rig.stop_daemon() == 0
    assert not status_file.exists() and not metrics_file.exists()
