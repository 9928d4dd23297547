"""A modem flooding its AT port at 1 MB/s, during a failover of the heartbeat path.

The lab of ``test_heartbeat_e2e``: the real daemon in a router namespace,
two emulated modems on ptys, the IoT carrier and IonMesh over veth. The IoT
modem's firmware goes haywire (1 MB/s of garbage on its AT port) and its
link drops, so the heartbeat path fails over to the primary. Throughout, the
primary's AT replies and ``status`` must stay fast, and the daemon's memory
bounded: the port's byte budget drops the flood before it reaches the AT
engine, and the engine's caps bound what a reply may hold.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from remsim_lab.ionmesh_server import IonMeshServer
from remsim_lab.network import IONMESH, LabNetwork
from remsim_lab.rig import Rig

TIMEOUT = 1.5
FLOOD_BYTES_PER_S = 1_000_000
FLOOD_S = 12.0
#: Short lines are the hardest case: every line is work for the AT engine.
FLOOD_DATA = b"\x00\xff\xfe DBG 1f2e\r\n\x1b[0m ~ junk\r\n\x07x\r\n"
#: Median a reply may take while the other modem floods.
MEDIAN_LIMIT_S = 0.100
#: The daemon's resident memory may not grow by more than this while flooded
#: (its AT engine holds at most 64 kB per reply; the rest is the interpreter's).
RSS_GROWTH_LIMIT = 8 * 1024 * 1024
#: Nor exceed this in all (measured: about 42 MiB before and during the flood).
RSS_LIMIT = 64 * 1024 * 1024
PRIMARY_ADDR = "10.251.1.2"


@pytest.fixture
def rig(tmp_path: Path, net: LabNetwork) -> Iterator[Rig]:
    with Rig.for_lab(tmp_path / "rig", f"http://{IONMESH}:5000", timeout=TIMEOUT) as r:
        yield r


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def timed(fn: object) -> tuple[float, object]:
    t0 = time.monotonic()
    result = fn()  # type: ignore[operator]
    return time.monotonic() - t0, result


def test_flood_on_one_port_during_failover_leaves_the_other_modem_and_status_fast(
        net: LabNetwork, ionmesh: IonMeshServer, rig: Rig) -> None:
    rig.start_daemon(netns=net.router)
    status = rig.wait_for(
        lambda s: s["heartbeat"]["acked"] >= 1 and s["heartbeat"]["path"] == "modem2"
        and all(m["state"] in ("registered", "connected") for m in s["modems"]),
        30, "both modems up and a heartbeat over the IoT modem")
    pid = status["pid"]
    rss_before = rss(pid)
    at_primary = {"cmd": "at", "modem": "modem1", "command": "AT+CSQ", "timeout": 5}

    flooder = rig.emulator("modem2")
    flooder.set_flood(FLOOD_BYTES_PER_S, FLOOD_DATA)
    flood_start = time.monotonic()
    taken_before = flooder.flood_bytes
    net.link("iot", False)  # the IoT modem's data path goes down with it

    status_s: list[float] = []
    at_s: list[float] = []
    rss_max = rss_before
    failed_over = False
    while time.monotonic() - flood_start < FLOOD_S:
        took, answer = timed(lambda: rig.request({"cmd": "status"}))
        assert answer["ok"], answer  # type: ignore[index]
        status_s.append(took)
        failed_over = failed_over or answer["status"]["heartbeat"]["path"] == "modem1"  # type: ignore[index]
        took, answer = timed(lambda: rig.request(at_primary))
        assert answer["ok"] and answer["final"] == "OK", answer  # type: ignore[index]
        at_s.append(took)
        rss_max = max(rss_max, rss(pid))
        time.sleep(0.05)
    flood_s = time.monotonic() - flood_start
    taken = flooder.flood_bytes - taken_before
    # Commands on the flooded modem end within their timeout, however the
    # flood cuts into their replies: a clean reply (the budget let it
    # through), a reply the engine's caps ended, or none; never a hang.
    outcomes = []
    for _ in range(3):
        took, answer = timed(lambda: rig.request(
            {"cmd": "at", "modem": "modem2", "command": "AT+CSQ", "timeout": 2}))
        assert took < 3.0, took
        assert answer["ok"] or "\n" not in answer["error"], answer  # type: ignore[index]
        outcomes.append(answer.get("final") or answer.get("error"))  # type: ignore[union-attr]
    flooder.set_flood(0)

    final = rig.status()
    flooded = rig.modem_status("modem2", final)
    hb = final["heartbeat"]
    log = rig.log()
    print(f"\nflood {taken / flood_s / 1e6:.2f} MB/s for {flood_s:.1f} s; "
          f"status median {statistics.median(status_s) * 1000:.1f} ms "
          f"(max {max(status_s) * 1000:.0f}, n={len(status_s)}); "
          f"modem1 AT+CSQ median {statistics.median(at_s) * 1000:.1f} ms "
          f"(max {max(at_s) * 1000:.0f}, n={len(at_s)}); "
          f"RSS {rss_before / 2**20:.1f} -> max {rss_max / 2**20:.1f} MiB; "
          f"dropped {flooded['at_dropped_bytes']} bytes; modem2 AT+CSQ: {outcomes}")

    # The flood was real: the daemon read it off the port as fast as it came
    # (0.73 to 0.99 MB/s measured; on a loaded machine the emulator thread
    # itself falls behind) and dropped nearly all of it before the AT engine.
    # Without the byte budget the daemon saturates here: it reads 0.15 MB/s
    # and status takes 175 ms.
    assert taken / flood_s > 0.5 * FLOOD_BYTES_PER_S
    assert flooded["at_dropped_bytes"] > 0.8 * taken
    assert log.count("sends more than") == 1  # once a minute, not once a read
    # At the rig's debug level, the garbage lines the budget let through are
    # logged 20 a minute, not one log line per line of garbage.
    unknown = [ln for ln in log.splitlines() if "modem2: URC" in ln and "(None)" in ln]
    assert 1 <= len(unknown) <= 20, len(unknown)
    # The heartbeat failed over to the primary and kept being acknowledged.
    assert failed_over and hb["path"] == "modem1"
    assert any(r.client[0] == PRIMARY_ADDR and r.status == 200
               for r in ionmesh.heartbeats("rig-router"))
    # The other modem and the control socket stayed fast.
    assert len(status_s) >= 40 and len(at_s) >= 40
    assert statistics.median(status_s) < MEDIAN_LIMIT_S
    assert statistics.median(at_s) < MEDIAN_LIMIT_S
    # Memory stayed bounded.
    assert rss_max - rss_before < RSS_GROWTH_LIMIT
    assert rss_max < RSS_LIMIT
    assert "Traceback" not in log
    assert rig.stop_daemon() == 0
