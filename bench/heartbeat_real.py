"""Bytes per real heartbeat: the daemon's heartbeats, counted on the wire, against the floor.

The lab network, IonMesh in its cloud asking for a heartbeat every second,
two emulated modems and the real ``remsim-supervisor run`` in the router,
sending its heartbeats as it does (``stats`` and ``modem_info`` included
whenever it includes them). nftables counters in the cloud namespace count
every IP packet to and from IonMesh's port (``tcp dport 5000`` in
prerouting, ``tcp sport 5000`` in output: IP bytes, what a carrier bills;
SYNs, ACKs and FINs included). After each heartbeat arrives and its answer
and ACK have passed, the counters are read: one sample per heartbeat.

The floor, in the same run over the same path and the same server: once the
daemon is killed (still registered), a minimal client in the router namespace, bound to
``wwan1``, sends the smallest heartbeat the contract allows
(``{"client_id":...,"status":"active"}`` with Host, Content-Type and
Content-Length, one ``send()``) on one kept-alive connection, as many times;
its steady-state samples (the connection's first excluded) are the HTTP/TCP
floor with this server's answer.

The target is for the average over a day (1,440 heartbeats at 60 s); the
lab runs ``--trials`` heartbeats at 1 s, so a daemon that sends ``stats``
every Nth heartbeat needs ``--trials`` well above N for the mean to show it.

The daemon's own account, checked against the wire in the same run: its
``status`` (``heartbeat.bytes_per_heartbeat``, the mean of its last 60
heartbeats, and ``projected_bytes_30d``) read right after the last sample,
beside the wire's mean over the same last heartbeats and that mean scaled
to 30 days at the daemon's interval.

    python bench/heartbeat_real.py [--trials 60] [--json]
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib
from benchlib import Figure

TABLE = "rsbench_hb"
SETTLE_S = 0.4  # answer and ACK have passed; the next heartbeat is 1 s after the last


def counters_on(cloud: str) -> None:
    script = (f"table inet {TABLE} {{\n"
              " chain pre {\n  type filter hook prerouting priority -400;\n"
              "  tcp dport 5000 counter\n }\n"
              " chain out {\n  type filter hook output priority -400;\n"
              "  tcp sport 5000 counter\n }\n}\n")
    subprocess.run(["ip", "netns", "exec", cloud, "nft", "-f", "-"], input=script, text=True,
                   check=True, capture_output=True)


def ip_bytes(cloud: str) -> tuple[int, int]:
    """(bytes, packets) both ways so far."""
    out = benchlib.run(["ip", "netns", "exec", cloud, "nft", "-j", "list", "table", "inet",
                        TABLE]).stdout
    total, packets = 0, 0
    for item in json.loads(out)["nftables"]:
        for expr in item.get("rule", {}).get("expr", []):
            if "counter" in expr:
                total += expr["counter"]["bytes"]
                packets += expr["counter"]["packets"]
    return total, packets


def minimal_request(host: str, path: str, client_id: str) -> bytes:
    body = json.dumps({"client_id": client_id, "status": "active"},
                      separators=(",", ":")).encode()
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    return head + body


def read_answer(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("IonMesh closed the connection")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("IonMesh closed the connection")
        rest += chunk
    return head.split(b"\r\n", 1)[0]


def main() -> int:
    args = benchlib.parser(__doc__, trials=60).parse_args()
    benchlib.need_root("heartbeat_real")
    from remsim_lab.network import IONMESH, call_in_netns
    from remsim_supervisor.adapters.ionmesh import BASE_PATH

    ours: list[float] = []
    floor: list[float] = []
    bodies: list[int] = []
    with_stats = 0
    floor_body = 0
    with benchlib.interrupts_as_exit(), benchlib.lab_daemon("rsbhb", interval=1) as lab:
        net, server = lab.net, lab.ionmesh
        counters_on(net.cloud)

        def beats() -> list[Any]:
            return [r for r in server.heartbeats("rig-router") if r.status == 200]

        def after(n: int) -> Any:
            return benchlib.wait_until(lambda: len(b := beats()) > n and b, 10,
                                       "the next heartbeat")

        n = len(after(0))
        time.sleep(SETTLE_S)
        last = ip_bytes(net.cloud)[0]
        for _ in range(args.trials):
            got = after(n)
            n = len(got)
            time.sleep(SETTLE_S)
            now = ip_bytes(net.cloud)[0]
            ours.append(now - last)
            last = now
            body = got[-1].raw_body
            bodies.append(len(body))
            with_stats += b'"stats"' in body or b'"modem_info"' in body
        account = lab.rig.status()["heartbeat"]
        behind = len(beats()) - n  # heartbeats the daemon counted after the last sample
        # Killed, not stopped: an orderly stop would unregister the client the floor uses.
        daemon = lab.rig.daemon
        daemon.kill()
        daemon.wait()
        time.sleep(SETTLE_S)

        request = minimal_request(f"{IONMESH}:5000", BASE_PATH + "/heartbeat", "rig-router")
        floor_body = len(request.partition(b"\r\n\r\n")[2])

        def floor_client() -> socket.socket:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"wwan1")
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.settimeout(10)
            return s

        sock = call_in_netns(net.router, floor_client)
        try:
            sock.connect((IONMESH, 5000))
            last = ip_bytes(net.cloud)[0]
            for i in range(args.trials + 1):
                sock.sendall(request)
                status = read_answer(sock)
                if b" 200 " not in status:
                    raise RuntimeError(f"the floor's heartbeat was answered {status!r}")
                time.sleep(SETTLE_S)
                now = ip_bytes(net.cloud)[0]
                if i:  # the first carried the handshake
                    floor.append(now - last)
                last = now
        finally:
            sock.close()
        tracebacks = lab.rig.log().count("Traceback")
    figure = Figure("bytes per real heartbeat (IP, both ways)", "B", ours,
                    "the HTTP/TCP floor: minimal heartbeat, same path and server", floor,
                    target=1.1 * benchlib.percentile(floor, 50), target_on_mean=True,
                    target_text="mean <= 1.1x the floor",
                    note=f"mean {benchlib.Figure('', '', ours).mean:.0f} B; "
                         f"{with_stats}/{len(bodies)} heartbeats carried stats or modem_info",
                    extra={"mean_json_body": round(sum(bodies) / max(len(bodies), 1), 1),
                           "floor_json_body": floor_body,
                           "with_stats_or_modem_info": with_stats})
    # The daemon's window (its last 60) against the wire's mean over the same heartbeats.
    window = ours[-60:] if behind == 0 and len(ours) >= 60 else []
    wire_mean = sum(window) / len(window) if window else float("nan")
    interval = float(account.get("interval_s") or 1.0)
    own = Figure("the daemon's bytes_per_heartbeat (status)", "B",
                 [float(account.get("bytes_per_heartbeat") or 0)],
                 f"the wire's mean over the same {len(window)} heartbeats" if window else "",
                 [wire_mean] if window else [],
                 note=("" if window else "not compared: a heartbeat came in meanwhile, "
                       "or fewer than 60 trials"),
                 extra={"projected_bytes_30d": account.get("projected_bytes_30d"),
                        "wire_projected_30d": (round(wire_mean * 30 * 86400 / interval)
                                               if window else None),
                        "interval_s": interval})
    benchlib.emit("heartbeat_real", [figure, own], args.json, tracebacks=tracebacks)
    return 0


if __name__ == "__main__":
    sys.exit(main())
