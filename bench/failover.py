"""Path failover: the IoT link goes down, how soon the heartbeat table routes via the primary.

The lab network (router and cloud namespaces, two veth "carriers"), IonMesh
in the cloud asking for a heartbeat every second, two emulated modems and the
real ``remsim-supervisor run`` in the router. A raw ``NETLINK_ROUTE`` socket
in the router namespace, subscribed to ``RTMGRP_LINK``,
``RTMGRP_IPV4_ROUTE`` and ``RTMGRP_IPV4_RULE``, with ``SO_TIMESTAMPNS``:
every message carries the kernel's receive time. Each trial:

1. the heartbeat path is on the IoT modem (table 240's lowest-metric route is
   ``dev wwan1``) and quiet;
2. ``ip -n ROUTER link set wwan1 down``;
3. **failover**: from the kernel's link-down message to its message for the
   new route via ``wwan0`` in table 240 at the active metric (the daemon's);
4. **heartbeat over the primary**: from the same link-down message to the
   fake IonMesh's receipt of the next heartbeat from the primary's address;
5. ``wwan1`` up again, its main-table route back, and wait for failback.

The limits, in the same run: a reference reactor in this process (stdlib,
the same socket) answers the same link-down message at once with a route via
``wwan0`` in a scratch table (241); its kernel-timestamped interval is what
reacting to the event costs here. The link event's arrival after ``ip``
returns is reported beside it. For the heartbeat, one RTT: a TCP handshake
to IonMesh bound to ``wwan0``, timed in the router namespace each trial.

Conntrack is on in the router namespace (an nftables ``ct`` rule), as on an
OpenWrt router, so the daemon's cut-over on the move has the heartbeat's own
connection to find. ``--pins N`` adds N pinned destinations (``list pin``
in the routing section, addresses in 10.252.0.0/16) and, before each trial,
one tracked UDP flow to each: the conntrack cut-over at the daemon level.

    python bench/failover.py [--trials 30] [--pins N] [--json]
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from datetime import datetime
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib
from benchlib import Figure
from nlwatch import RTM_NEWLINK, RTM_NEWROUTE, Listener, Message

TABLE, SCRATCH = 240, 241
PRIMARY_ADDR = "10.251.1.2"


def table_routes(net: Any, table: int) -> list[dict[str, Any]]:
    out = net.ip(net.router, "-4", "-j", "route", "show", "table", str(table), check=False)
    return json.loads(out) if out.strip() else []


def active_route(net: Any) -> dict[str, Any] | None:
    routes = table_routes(net, TABLE)
    return min(routes, key=lambda r: r.get("metric", 0)) if routes else None


def rtt_ms(netns: str, address: str, port: int) -> float:
    """One TCP handshake to ``address`` bound to wwan0, in ``netns``: one RTT."""
    from remsim_lab.network import call_in_netns

    def connect() -> float:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"wwan0")
            t0 = time.perf_counter()
            s.connect((address, port))
            return (time.perf_counter() - t0) * 1000
        finally:
            s.close()

    return call_in_netns(netns, connect)


LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) ")
# What the daemon logs on the way: (stage, text in its log line)
STAGES = (
    ("daemon logs the link down", "link wwan1 down"),
    ("route written first", "routed via modem1 first"),
    ("daemon decides the move", "heartbeat path modem2 -> modem1"),
    ("daemon's reconcile done", "DEBUG routing: "),
    ("conntrack cut-over done", "tracked connection(s) to the pinned hosts"),
    ("daemon has the ack", "heartbeat acknowledged over modem1"),
)


def stage_times(log: str, since: float) -> dict[str, float]:
    """Wall time of each stage's log line: the first line of its kind at or after
    ``since`` (the stages need not come in the order listed: the heartbeat goes
    before the reconcile and the cut-over)."""
    lines = []
    for line in log.splitlines():
        m = LOG_TIME.match(line)
        if m:
            at = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S").timestamp() + \
                int(m.group(2)) / 1000
            lines.append((at, line))
    out: dict[str, float] = {}
    start = since - 0.001  # log stamps are truncated to the millisecond
    for stage, text in STAGES:
        at = next((at for at, line in lines if at >= start and text in line), None)
        if at is not None:
            out[stage] = at
    return out


def pin_addresses(n: int) -> list[str]:
    import ipaddress

    return [str(a) for a in list(ipaddress.ip_network("10.252.0.0/16").hosts())[:n]]


def track(netns: str, addresses: list[str]) -> None:
    """One tracked UDP flow from the router to each address."""
    from remsim_lab.network import call_in_netns

    def send() -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            for a in addresses:
                s.sendto(b"x", (a, 9))
        finally:
            s.close()

    call_in_netns(netns, send)


def main() -> int:
    p = benchlib.parser(__doc__, trials=30)
    p.add_argument("--pins", type=int, default=0, help="extra pinned destinations")
    args = p.parse_args()
    benchlib.need_root("failover")
    from remsim_lab.network import IONMESH

    failover: list[float] = []
    reference: list[float] = []
    arrival: list[float] = []
    heartbeat: list[float] = []
    rtts: list[float] = []
    stages: dict[str, list[float]] = {stage: [] for stage, _ in STAGES}
    skipped = 0
    pins = pin_addresses(args.pins)
    extra = "config routing 'routing'\n\toption failback_after '1'\n" + "".join(
        f"\tlist pin '{a}'\n" for a in pins)
    with benchlib.interrupts_as_exit(), benchlib.lab_daemon("rsbfo", interval=1,
                                                           extra_config=extra) as lab:
        net = lab.net
        links = json.loads(net.ip(net.router, "-j", "link", "show"))
        ifindex = {link["ifname"]: link["ifindex"] for link in links}
        gw_primary = net.carriers["primary"].gateway
        gw_iot = net.carriers["iot"].gateway
        # Conntrack on in the router, as on every OpenWrt router (fw4): the cut-over
        # has the heartbeat's own connection to find, and the pins' flows.
        subprocess.run(["ip", "netns", "exec", net.router, "nft", "-f", "-"], check=True,
                       capture_output=True, text=True, input=(
                           "table inet rsbench_ct {\n chain out {\n"
                           "  type filter hook output priority 0;\n"
                           "  ct state new counter\n }\n}\n"))
        listener = Listener(net.router, watch=ifindex["wwan1"], oif=ifindex["wwan0"],
                            gateway=gw_primary, reference=SCRATCH)
        try:
            for _trial in range(args.trials):
                # 1. on the IoT path and quiet
                benchlib.wait_until(lambda: (r := active_route(net)) is not None
                                    and r.get("dev") == "wwan1"
                                    and lab.rig.status()["heartbeat"]["path"] == "modem2",
                                    60, "the heartbeat path on the IoT modem", step=0.05)
                metric = active_route(net).get("metric", 0)  # type: ignore[union-attr]
                if pins:
                    track(net.router, pins)
                time.sleep(0.3)
                rtts.append(rtt_ms(net.router, IONMESH, 5000))
                seen_beats = len(lab.ionmesh.heartbeats("rig-router"))
                log_at = len(lab.rig.log())
                n0 = listener.count()
                listener.react = True
                # 2. the link goes down
                t_ip0 = time.time()
                net.ip(net.router, "link", "set", "wwan1", "down")
                t_ip1 = time.time()

                def found(n0: int = n0, metric: int = metric
                          ) -> tuple[Message, Message, Message] | None:
                    msgs = listener.since(n0)
                    down = next((m for m in msgs if m.kind == RTM_NEWLINK and not m.up
                                 and m.index == ifindex["wwan1"]), None)
                    if down is None:
                        return None
                    ours = next((m for m in msgs if m.kind == RTM_NEWROUTE and m.table == TABLE
                                 and m.index == ifindex["wwan0"] and m.metric == metric
                                 and m.kernel >= down.kernel), None)
                    ref = next((m for m in msgs if m.kind == RTM_NEWROUTE
                                and m.table == SCRATCH and m.kernel >= down.kernel), None)
                    return (down, ours, ref) if ours and ref else None

                try:
                    down, ours, ref = benchlib.wait_until(found, 30, "the route via the primary")
                    beat = benchlib.wait_until(
                        lambda seen_beats=seen_beats: next(
                            (r for r in lab.ionmesh.heartbeats("rig-router")[seen_beats:]
                             if r.client[0] == PRIMARY_ADDR and r.status == 200), None),
                        30, "a heartbeat over the primary")
                except TimeoutError:
                    skipped += 1
                else:
                    # IonMesh stamps with time.monotonic() in this process
                    beat_wall = beat.time + (time.time() - time.monotonic())
                    failover.append((ours.kernel - down.kernel) * 1000)
                    reference.append((ref.kernel - down.kernel) * 1000)
                    arrival.append((down.user - t_ip1) * 1000)
                    heartbeat.append((beat_wall - down.kernel) * 1000)
                    _ = t_ip0
                    time.sleep(0.1)  # for the daemon to log the acknowledgement
                    for stage, at in stage_times(lab.rig.log()[log_at:], down.kernel).items():
                        stages[stage].append((at - down.kernel) * 1000)
                # 5. back up, and the main table's route that the kernel removed with it
                net.ip(net.router, "link", "set", "wwan1", "up")
                net.ip(net.router, "route", "replace", "default", "via", gw_iot, "dev", "wwan1",
                       "metric", str(net.carriers["iot"].metric))
                net.ip(net.router, "route", "flush", "table", str(SCRATCH), check=False)
        finally:
            listener.close()
        log = lab.rig.log()
    rtt = benchlib.percentile(rtts, 50) if rtts else 0.0
    with_pins = f", {len(pins)} extra pins" if pins else ""
    figures = [
        Figure(f"failover: link down -> table 240 via primary{with_pins}", "ms", failover,
               "a stdlib reactor on the same event: route in table 241 (kernel timestamps)",
               reference, target=2.0, target_p95=5.0,
               target_text="<= 2 ms median, <= 5 ms p95"),
        Figure("link event arrival after `ip` returns", "ms", arrival, note=(
            "negative: the event was queued before `ip` returned")),
        Figure(f"heartbeat acknowledged over the primary{with_pins}", "ms", heartbeat,
               "one RTT (TCP handshake to IonMesh over wwan0)", rtts, target=20.0 + rtt,
               target_text=f"<= 20 ms + 1 RTT ({20.0 + rtt:.2f} ms)"),
    ]
    figures += [Figure(f"  after the link event: {stage}", "ms", values, note=(
        "from the daemon's log (millisecond stamps), for the trials that logged it"))
        for stage, values in stages.items() if values]
    flush_lines = [line.split(" WARNING ", 1)[-1] for line in log.splitlines()
                   if "could not flush conntrack" in line]
    cut_over = [line.split(" INFO ", 1)[-1] for line in log.splitlines()
                if "tracked connection(s) to the pinned hosts" in line]
    not_routed = [line.split(" ", 3)[-1] for line in log.splitlines()
                 if "could not route via" in line or "routing failed" in line]
    benchlib.emit("failover", figures, args.json, skipped=skipped, pins=len(pins),
                  routing_failures=not_routed[-3:], routing_failure_count=len(not_routed),
                  flush_failures=flush_lines[-3:], flush_failure_count=len(flush_lines),
                  cut_over_lines=cut_over[-3:], tracebacks=log.count("Traceback"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
