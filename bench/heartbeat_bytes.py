"""What one heartbeat costs on the wire: our kept-alive client against curl's new
connection per heartbeat, both counted by the kernel on a veth pair.

The fake IonMesh runs in one network namespace (10.251.0.1), the clients in
another (10.251.0.2), joined by a veth pair; nothing else talks on it (IPv6
is off, neighbours are static, so no ARP, RS, MLD or DAD frames). The
client veth's counters (``/sys/class/net/IF/statistics``, read through
``ip netns exec``) are read before and after N heartbeats. They count whole
Ethernet frames: TCP handshakes, ACKs, FINs. The IP-level figure, what a
cellular carrier bills, is the same minus 14 bytes of Ethernet header per
frame. Between heartbeats the clients pause (``--gap``, longer than the
delayed-ACK timer and the minimum RTO), so every ACK the kernel would send
after a minute of silence is counted as it would be at a 60 s interval.

* ``ours``: ``IonMeshClient.heartbeat()`` N times on one connection, in a
  subprocess under ``ip netns exec``. Reported over the whole run (connect
  and close included, shared by the N heartbeats) and in steady state
  (heartbeats 2..N: what each further heartbeat of a month costs).
* ``curl``: ``/usr/bin/curl -s -X POST -H 'Content-Type: application/json'
  -d BODY URL`` N times, the same JSON body, a new connection each time.
* ``--fresh``: ours once more, but each heartbeat on a fresh connection, the
  idle one dropped with a reset first: what the supervisor does over a
  carrier it has seen forget idle flows (:mod:`remsim_supervisor.core.cadence`).

Run as root from the repository: ``python bench/heartbeat_bytes.py [--count
20] [--gap 0.5] [--tls] [--server-closes] [--fresh] [--json]``. Everything it
creates (two namespaces
and the veth pair, named after its pid) is removed on exit, also on failure.
``tests/lab/test_heartbeat_bytes.py`` runs :func:`measure` in CI.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import IO, Self

from remsim_supervisor.adapters.ionmesh import BASE_PATH, IonMeshClient, encode_json

SERVER_IP = "10.251.0.1"
CLIENT_IP = "10.251.0.2"
PORT = 5000
CLIENT_ID = "router-001"
ETHERNET_HEADER = 14
INTERVAL_S = 60
MONTH_S = 30 * 86400
PLAN_BYTES = 10_000_000  # "10 MB", decimal, as carriers sell it
CURL = "/usr/bin/curl"
SETTLE_S = 0.5  # for FINs and delayed ACKs to pass before a counter is read


@dataclass(frozen=True)
class Counters:
    """The four counters of one network device."""

    tx_bytes: int = 0
    rx_bytes: int = 0
    tx_packets: int = 0
    rx_packets: int = 0

    def __sub__(self, other: Counters) -> Counters:
        return Counters(self.tx_bytes - other.tx_bytes, self.rx_bytes - other.rx_bytes,
                        self.tx_packets - other.tx_packets, self.rx_packets - other.rx_packets)

    @property
    def frames(self) -> int:
        return self.tx_packets + self.rx_packets

    @property
    def ethernet_bytes(self) -> int:
        return self.tx_bytes + self.rx_bytes

    @property
    def ip_bytes(self) -> int:
        return self.ethernet_bytes - ETHERNET_HEADER * self.frames


@dataclass(frozen=True)
class Cost:
    """Bytes and frames, per heartbeat, over some number of heartbeats."""

    heartbeats: int
    ethernet_bytes: float
    ip_bytes: float
    frames: float

    @classmethod
    def of(cls, delta: Counters, heartbeats: int) -> Cost:
        n = max(heartbeats, 1)
        return cls(heartbeats, delta.ethernet_bytes / n, delta.ip_bytes / n, delta.frames / n)

    @property
    def month_bytes(self) -> float:
        """30 days of heartbeats at the 60 s interval."""
        return self.ip_bytes * MONTH_S / INTERVAL_S

    @property
    def interval_for_plan(self) -> float:
        """The shortest interval (s) at which 30 days fit the 10 MB plan."""
        return self.ip_bytes * MONTH_S / PLAN_BYTES


@dataclass(frozen=True)
class HttpSizes:
    """One heartbeat's HTTP messages: head and body of the request and of the answer."""

    request_head: int
    request_body: int
    response_head: int
    response_body: int


@dataclass(frozen=True)
class Run:
    name: str
    acked: int
    http: HttpSizes
    total: Cost  # connect and close included
    steady: Cost | None = None  # heartbeats 2..N on a connection already open
    setup_ip_bytes: float | None = None  # the first heartbeat's extra: TCP (+TLS) handshake
    close_ip_bytes: float | None = None  # FIN exchange


@dataclass(frozen=True)
class Report:
    count: int
    gap_s: float
    tls: bool
    body: str
    ours: Run
    curl: Run
    notes: list[str] = field(default_factory=list)
    fresh: Run | None = None  # ours, a fresh connection per heartbeat


# --- the namespaces -----------------------------------------------------------------------------

def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=check, capture_output=True, text=True)


class WireLab:
    """Two namespaces and a veth pair between them; everything removed on exit."""

    def __init__(self) -> None:
        tag = f"{os.getpid()}-{uuid.uuid4().hex[:4]}"
        self.server_ns = f"rshb-{tag}-s"
        self.client_ns = f"rshb-{tag}-c"
        short = f"{os.getpid() % 100000}{uuid.uuid4().hex[:3]}"
        self.server_if = f"hbs{short}"
        self.client_if = f"hbc{short}"
        self._created: list[str] = []

    def __enter__(self) -> Self:
        try:
            self._build()
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def _build(self) -> None:
        for ns in (self.server_ns, self.client_ns):
            _run("ip", "netns", "add", ns)
            self._created.append(ns)
            # No IPv6: its router solicitations, MLD reports and DAD would land in the counts.
            self.exec(ns, "sh", "-c", "for f in all default; do "
                      "echo 1 > /proc/sys/net/ipv6/conf/$f/disable_ipv6; done 2>/dev/null; true")
            _run("ip", "-n", ns, "link", "set", "lo", "up")
        # Both ends are born inside their namespaces: nothing appears in the caller's.
        _run("ip", "link", "add", self.server_if, "netns", self.server_ns, "type", "veth",
             "peer", "name", self.client_if, "netns", self.client_ns)
        ends = ((self.server_ns, self.server_if, SERVER_IP),
                (self.client_ns, self.client_if, CLIENT_IP))
        for ns, ifname, address in ends:
            _run("ip", "-n", ns, "addr", "add", f"{address}/30", "dev", ifname)
            _run("ip", "-n", ns, "link", "set", ifname, "up")
        # Static neighbours: no ARP frames in the counts.
        macs = {ns: json.loads(_run("ip", "-n", ns, "-j", "link", "show", ifname).stdout)[0]
                ["address"] for ns, ifname, _ in ends}
        _run("ip", "-n", self.server_ns, "neigh", "replace", CLIENT_IP, "lladdr",
             macs[self.client_ns], "dev", self.server_if, "nud", "permanent")
        _run("ip", "-n", self.client_ns, "neigh", "replace", SERVER_IP, "lladdr",
             macs[self.server_ns], "dev", self.client_if, "nud", "permanent")

    def remove(self) -> None:
        # Deleting a namespace deletes the veth end in it, and with it the pair.
        for ns in reversed(self._created):
            _run("ip", "netns", "del", ns, check=False)
        self._created.clear()

    @staticmethod
    def exec(ns: str, *argv: str) -> subprocess.CompletedProcess[str]:
        return _run("ip", "netns", "exec", ns, *argv)

    @staticmethod
    def command(ns: str, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", ns, *argv]

    def counters(self) -> Counters:
        base = f"/sys/class/net/{self.client_if}/statistics"
        names = ("tx_bytes", "rx_bytes", "tx_packets", "rx_packets")
        out = self.exec(self.client_ns, "cat", *(f"{base}/{n}" for n in names)).stdout.split()
        return Counters(*(int(v) for v in out))


@contextlib.contextmanager
def fake_ionmesh(lab: WireLab, pki_dir: str | None, keep_alive: bool = True) -> Iterator[str]:
    """The fake IonMesh in the server namespace (its command line); yields its URL."""
    argv = [sys.executable, "-m", "remsim_lab.ionmesh_server",
            "--listen", f"{SERVER_IP}:{PORT}", "--interval", str(INTERVAL_S)]
    if not keep_alive:
        argv.append("--no-keep-alive")
    if pki_dir:
        argv += ["--cert", f"{pki_dir}/server.pem", "--key", f"{pki_dir}/server.key"]
    proc = subprocess.Popen(lab.command(lab.server_ns, *argv), stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        url = _read_line(proc.stdout, 15.0, "the fake IonMesh did not start")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _read_line(stream: IO[str] | None, timeout: float, what: str) -> str:
    assert stream is not None
    ready, _, _ = select.select([stream], [], [], timeout)
    line = stream.readline() if ready else ""
    if not line:
        raise RuntimeError(what)
    return line.strip()


# --- the two ways of sending heartbeats ---------------------------------------------------------

def heartbeat_body() -> bytes:
    """The JSON body of a heartbeat without stats, byte for byte as the client sends it."""
    return encode_json({"client_id": CLIENT_ID, "status": "active"})


def _curl(lab: WireLab, url: str, body: bytes, path: str, ca_file: str | None) -> list[str]:
    argv = [CURL, "-s", "-X", "POST", "-H", "Content-Type: application/json",
            "-d", body.decode(), url + BASE_PATH + path,
            # output only, nothing on the wire: where the answer goes and its sizes
            "-o", "/dev/null",
            "-w", "%{http_code} %{size_request} %{size_upload} %{size_header} %{size_download}"]
    if ca_file:
        argv[1:1] = ["--cacert", ca_file]
    return lab.exec(lab.client_ns, *argv).stdout.split()


def measure_curl(lab: WireLab, url: str, count: int, gap: float, ca_file: str | None) -> Run:
    body = heartbeat_body()
    acked = 0
    sizes: list[str] = []
    before = lab.counters()
    for _ in range(count):
        sizes = _curl(lab, url, body, "/heartbeat", ca_file)
        acked += sizes[:1] == ["200"]
        time.sleep(gap)
    time.sleep(SETTLE_S)
    total = lab.counters() - before
    _, request, upload, header, download = (int(v) for v in sizes)
    return Run("curl, new connection each", acked,
               HttpSizes(request - upload, upload, header, download), Cost.of(total, count))


def measure_ours(lab: WireLab, url: str, count: int, gap: float, ca_file: str | None,
                 fresh: bool = False) -> Run:
    argv = [sys.executable, os.path.abspath(__file__), "client", "--url", url,
            "--count", str(count), "--gap", str(gap)]
    if ca_file:
        argv += ["--ca-file", ca_file]
    if fresh:
        argv.append("--fresh")
    proc = subprocess.Popen(lab.command(lab.client_ns, *argv), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdin is not None
    patience = count * (gap + 10.0) + 30.0  # a step is at most all heartbeats
    try:
        def step(word: str) -> str:
            try:
                line = _read_line(proc.stdout, patience, "no answer")
            except RuntimeError:
                died = proc.poll() is not None and proc.stderr is not None
                raise RuntimeError("the measured client did not answer: " + (
                    proc.stderr.read().strip() if died and proc.stderr else "timeout")) from None
            if not line.startswith(word):
                raise RuntimeError(f"the client said {line!r}, expected {word!r}")
            return line[len(word):].strip()

        step("ready")
        c0 = lab.counters()
        proc.stdin.write("go\n")
        proc.stdin.flush()
        step("first")
        c1 = lab.counters()
        proc.stdin.write("go\n")
        proc.stdin.flush()
        result = json.loads(step("done"))
        c2 = lab.counters()
        proc.stdin.write("close\n")
        proc.stdin.flush()
        step("closed")
        time.sleep(SETTLE_S)
        c3 = lab.counters()
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    steady = Cost.of(c2 - c1, count - 1)
    total = Cost.of(c3 - c0, count)
    name = "remsim-supervisor, fresh each" if fresh else "remsim-supervisor, kept alive"
    return Run(name, result["acked"], HttpSizes(**result["http"]),
               total, steady, setup_ip_bytes=(c1 - c0).ip_bytes - steady.ip_bytes,
               close_ip_bytes=(c3 - c2).ip_bytes)


def client_main(args: argparse.Namespace) -> int:
    """The ``client`` side of :func:`measure_ours`, inside the client namespace.

    Steps on a line protocol so the parent reads the counters between them:
    ready / go -> first heartbeat -> first / go -> the rest -> done / close -> closed.
    """
    def say(line: str) -> None:
        print(line, flush=True)

    def wait() -> None:
        sys.stdin.readline()

    client = IonMeshClient(args.url, CLIENT_ID, ca_file=args.ca_file, timeout=10)
    say("ready")
    wait()
    results = [client.heartbeat()]
    time.sleep(args.gap)
    say("first")
    wait()
    for _ in range(args.count - 1):
        if args.fresh:
            client.close(abort=True)  # as over a carrier that forgets idle flows
        results.append(client.heartbeat())
        time.sleep(args.gap)
    last = results[-1].exchange
    request_body = len(heartbeat_body())
    response_body = len(json.dumps(last.body, separators=(",", ":")).encode())
    http = HttpSizes(last.bytes_sent - request_body, request_body,
                     last.bytes_received - response_body, response_body)
    acked = sum(r.exchange.status == 200 for r in results)
    reconnects = sum(r.exchange.new_connection for r in results[1:])
    say("done " + json.dumps({"acked": acked, "http": asdict(http), "reconnects": reconnects}))
    wait()
    client.close()
    say("closed")
    return 0


def measure(count: int = 20, gap: float = 0.5, tls: bool = False,
            server_keep_alive: bool = True, fresh: bool = False) -> Report:
    """Both ways, same server, same body; root, ``ip`` and curl needed.
    ``server_keep_alive=False``: the server closes the connection after every answer.
    ``fresh``: also ours with a fresh connection per heartbeat (``Report.fresh``)."""
    if count < 2:
        raise ValueError("count must be at least 2 (steady state needs heartbeats 2..N)")
    with contextlib.ExitStack() as stack:
        pki_dir = None
        ca_file = None
        if tls:
            from remsim_lab.ionmesh_server import write_lab_pki

            pki_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="rshb-pki-"))
            ca_file = write_lab_pki(pki_dir, (SERVER_IP,)).ca_file
        lab = stack.enter_context(WireLab())
        url = stack.enter_context(fake_ionmesh(lab, pki_dir, server_keep_alive))
        # Registration (not counted): curl's re-registrations get the same slot.
        register = encode_json({"client_id": CLIENT_ID})
        if _curl(lab, url, register, "/register-client", ca_file)[:1] != ["200"]:
            raise RuntimeError("registration with the fake IonMesh failed")
        time.sleep(SETTLE_S)
        ours = measure_ours(lab, url, count, gap, ca_file)
        curl = measure_curl(lab, url, count, gap, ca_file)
        again = measure_ours(lab, url, count, gap, ca_file, fresh=True) if fresh else None
    notes = [] if server_keep_alive else ["the server closed the connection after every answer"]
    return Report(count, gap, tls, heartbeat_body().decode(), ours, curl, notes, again)


# --- the table ----------------------------------------------------------------------------------

def render(report: Report) -> str:
    scheme = "https" if report.tls else "http"
    rows = [("ours, steady state", report.ours.steady, report.ours.http),
            (f"ours, over {report.count} incl. connect+close", report.ours.total,
             report.ours.http),
            ("curl, new connection each", report.curl.total, report.curl.http)]
    if report.fresh is not None:
        rows.append(("ours, fresh each (steady)", report.fresh.steady, report.fresh.http))
    title = (f"Heartbeat bytes on the wire ({scheme}, {report.count} heartbeats each, "
             f"{report.gap_s:g} s apart)")
    head1 = (f"{'':34} {'Ethernet':>9} {'IP':>7} {'frames':>7} {'HTTP req':>13} "
             f"{'HTTP resp':>13} {'30 d @60 s':>11} {'fits 10 MB at':>13}")
    head2 = (f"{'per heartbeat':34} {'bytes':>9} {'bytes':>7} {'':>7} {'head+body':>13} "
             f"{'head+body':>13} {'MB (IP)':>11} {'interval':>13}")
    out = [title, f"JSON body: {len(report.body)} bytes  {report.body}", "", head1, head2]
    for name, cost, http in rows:
        if cost is None:
            continue
        out.append(f"{name:34} {cost.ethernet_bytes:9.1f} {cost.ip_bytes:7.1f} "
                   f"{cost.frames:7.2f} {f'{http.request_head}+{http.request_body}':>13} "
                   f"{f'{http.response_head}+{http.response_body}':>13} "
                   f"{cost.month_bytes / 1e6:11.2f} {f'>= {cost.interval_for_plan:.0f} s':>13}")
    out.append("")
    out.extend(f"note: {note}" for note in report.notes)
    out.append(f"ours: connection setup (first heartbeat's extra) "
               f"{report.ours.setup_ip_bytes:.0f} B IP, "
               f"close {report.ours.close_ip_bytes:.0f} B IP;"
               f" acknowledged {report.ours.acked}/{report.count}, curl {report.curl.acked}/"
               f"{report.count}")
    if report.ours.steady is not None:
        saving = 1 - report.ours.steady.ip_bytes / report.curl.total.ip_bytes
        out.append(f"steady state saves {saving:.0%} against curl; budget in IONMESH.md: "
                   f"~{PLAN_BYTES * INTERVAL_S / MONTH_S:.0f} B per heartbeat at 60 s")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    client = sub.add_parser("client", help="(internal) the measured client, in its namespace")
    client.add_argument("--url", required=True)
    client.add_argument("--count", type=int, required=True)
    client.add_argument("--gap", type=float, required=True)
    client.add_argument("--ca-file")
    client.add_argument("--fresh", action="store_true")
    parser.add_argument("--count", type=int, default=20, help="heartbeats per client")
    parser.add_argument("--gap", type=float, default=0.5,
                        help="seconds between heartbeats (> delayed ACK and min RTO)")
    parser.add_argument("--tls", action="store_true", help="https with a throw-away CA")
    parser.add_argument("--server-closes", action="store_true",
                        help="the server closes the connection after every answer")
    parser.add_argument("--fresh", action="store_true",
                        help="also ours with a fresh connection per heartbeat")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "client":
        return client_main(args)
    if os.geteuid() != 0:
        print("heartbeat_bytes: needs root (it creates network namespaces): run it with sudo",
              file=sys.stderr)
        return 2
    for tool in ("ip", CURL):
        if shutil.which(tool) is None:
            print(f"heartbeat_bytes: {tool} is missing: install iproute2 and curl",
                  file=sys.stderr)
            return 2
    report = measure(args.count, args.gap, args.tls, server_keep_alive=not args.server_closes,
                     fresh=args.fresh)
    print(json.dumps(asdict(report), indent=2) if args.json else render(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
