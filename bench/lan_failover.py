"""LAN failover: how soon the LAN's default route leaves a failed WAN (link event, silence).

The lab network with a wired WAN and a LAN client (``remsim_lab/lanlab.py``),
IonMesh in the cloud, two emulated modems and the real ``remsim-supervisor
run`` in the router with ``config lan`` enabled (uplinks ``eth1``, the
primary modem, the IoT modem; ICMP probes to the cloud every
``--probe-interval`` seconds, ``probe_failures 2``, ``failback_hold 1``; the
LAN's table 230, so the reference below has 229 to itself). A raw
``NETLINK_ROUTE`` socket in the router namespace, subscribed to
``RTMGRP_LINK`` and ``RTMGRP_IPV4_ROUTE`` with ``SO_TIMESTAMPNS``: every
message carries the kernel's receive time. Each trial, with the LAN on
``eth1`` and quiet:

1. **link event**: the WAN's far side goes down (``eth1`` loses carrier);
   from the kernel's link message for ``eth1`` without ``IFF_LOWER_UP`` to
   its message for the LAN's route via ``wwan0`` in table 230. The limit: a
   reference reactor on the listening thread answers the same message at
   once with a route via ``wwan0`` in table 229; its kernel-timestamped
   interval is what reacting to the event costs here. Carrier back, failback
   awaited.
2. **silent failure**: everything the router sends over the WAN is dropped
   in the cloud (nftables), the link stays up; from the moment ``nft``
   returned to the kernel's message for the route via ``wwan0`` in table
   230 (so it includes up to one probe interval of waiting for the next
   round, by design). The floor: ``probe_failures`` rounds of the probe
   timeout, ``(failures - 1) * interval + timeout``. Drop removed, failback
   awaited.

The seeds' figures are quoted beside them in docs/PERFORMANCE.md (a
one-minute timer pinging 8.8.8.8: up to 60 s; an IPFire multi-WAN daemon:
90 s).

    python bench/lan_failover.py [--trials 10] [--probe-interval 1] [--json]
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib
from benchlib import Figure
from nlwatch import IFF_LOWER_UP, RTM_NEWLINK, RTM_NEWROUTE, Listener, Message

LAN_TABLE, REFERENCE = 230, 229
TIMEOUT = 0.5


def lan_config(interval: float) -> str:
    from remsim_lab.network import ELSEWHERE

    return ("config lan 'lan'\n\toption enabled '1'\n\tlist uplink 'eth1'\n"
            "\tlist uplink 'primary'\n\tlist uplink 'iot'\n"
            f"\tlist probe '{ELSEWHERE}'\n\toption probe_interval '{interval:g}'\n"
            f"\toption probe_timeout '{TIMEOUT:g}'\n\toption probe_failures '2'\n"
            f"\toption failback_hold '1'\n\toption table '{LAN_TABLE}'\n")


def main() -> int:
    p = benchlib.parser(__doc__, trials=10)
    p.add_argument("--probe-interval", type=float, default=1.0)
    args = p.parse_args()
    benchlib.need_root("lan_failover")
    from remsim_lab.ionmesh_server import IonMeshServer
    from remsim_lab.lanlab import LanLabNetwork
    from remsim_lab.network import IONMESH, call_in_netns
    from remsim_lab.rig import Rig

    link: list[float] = []
    reference: list[float] = []
    silent: list[float] = []
    skipped = 0
    interval = args.probe_interval
    with benchlib.interrupts_as_exit(), tempfile.TemporaryDirectory(prefix="rsblan-") as tmp, \
            LanLabNetwork("rsblan") as net:
        ionmesh = call_in_netns(net.cloud, IonMeshServer, host=IONMESH, port=5000,
                                heartbeat_interval=3)
        ionmesh.start()
        try:
            with Rig.for_lab(Path(tmp) / "rig", f"http://{IONMESH}:5000",
                             extra_config=lan_config(interval)) as rig:
                rig.start_daemon(netns=net.router)
                links = json.loads(net.ip(net.router, "-j", "link", "show"))
                index = {x["ifname"]: x["ifindex"] for x in links}
                listener = Listener(net.router, watch=index["eth1"], oif=index["wwan0"],
                                    gateway=net.carriers["primary"].gateway,
                                    reference=REFERENCE, down=IFF_LOWER_UP)

                def on(device: str) -> bool:
                    return f"dev {device}" in " ".join(net.table(LAN_TABLE))

                def moved(n0: int, after: float) -> Message | None:
                    return next((m for m in listener.since(n0) if m.kind == RTM_NEWROUTE
                                 and m.table == LAN_TABLE and m.index == index["wwan0"]
                                 and m.kernel >= after), None)

                try:
                    rig.wait_for(lambda s: s["lan"].get("active") == "eth1", 60,
                                 "the LAN on eth1")
                    for _trial in range(args.trials):
                        benchlib.wait_until(lambda: on("eth1"), 60, "the LAN on eth1", 0.05)
                        time.sleep(max(0.3, interval))
                        # 1. link event
                        n0 = listener.count()
                        listener.react = True
                        net.link("wan", False)
                        try:
                            down = benchlib.wait_until(lambda n0=n0: next(
                                (m for m in listener.since(n0) if m.kind == RTM_NEWLINK
                                 and m.index == index["eth1"] and not m.lower_up), None),
                                10, "eth1's carrier loss")
                            ours = benchlib.wait_until(
                                lambda n0=n0, down=down: moved(n0, down.kernel), 10,
                                "the LAN's route via wwan0")
                            ref = benchlib.wait_until(lambda n0=n0, down=down: next(
                                (m for m in listener.since(n0) if m.kind == RTM_NEWROUTE
                                 and m.table == REFERENCE and m.kernel >= down.kernel), None),
                                10, "the reference route")
                        except TimeoutError:
                            skipped += 1
                        else:
                            link.append((ours.kernel - down.kernel) * 1000)
                            reference.append((ref.kernel - down.kernel) * 1000)
                        net.link("wan", True)
                        net.ip(net.router, "route", "flush", "table", str(REFERENCE),
                               check=False)
                        benchlib.wait_until(lambda: on("eth1"), 60, "failback", 0.05)
                        time.sleep(max(0.3, interval))
                        # 2. silent failure
                        n0 = listener.count()
                        net.blackhole("wan", True)
                        t0 = time.time()
                        try:
                            ours = benchlib.wait_until(lambda n0=n0, t0=t0: moved(n0, t0),
                                                       30, "the LAN off the silent WAN")
                        except TimeoutError:
                            skipped += 1
                        else:
                            silent.append(ours.kernel - t0)
                        net.blackhole("wan", False)
                except TimeoutError:
                    print(f"daemon log tail:\n{rig.log()[-4000:]}\ntable {LAN_TABLE}: "
                          f"{net.table(LAN_TABLE)}", file=sys.stderr)
                    raise
                finally:
                    listener.close()
                log = rig.log()
        finally:
            ionmesh.stop()
    floor = TIMEOUT + interval  # two rounds: one timeout, then an interval and a timeout
    figures = [
        Figure("LAN failover on a link event: carrier loss -> LAN route via primary", "ms",
               link, "a stdlib reactor on the same event: a route in table 229 "
               "(kernel timestamps)", reference, target=100.0,
               target_text="milliseconds (<= 100 ms median); seeds: 60 s, 90 s"),
        Figure(f"LAN failover on a silent WAN: drop on -> LAN route via primary "
               f"(probes every {interval:g} s, timeout {TIMEOUT:g} s, 2 misses)", "s",
               silent, "two probe rounds: (2 - 1) x interval + timeout",
               [floor] * len(silent), target=5.0,
               target_text="seconds (<= 5 s median); seeds: 60 s, 90 s"),
    ]
    benchlib.emit("lan_failover", figures, args.json, skipped=skipped,
                  probe_interval=interval, tracebacks=log.count("Traceback"),
                  moves=[line.split(" WARNING ", 1)[-1] for line in log.splitlines()
                         if "lan: default route" in line and "WARNING" in line][-4:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
