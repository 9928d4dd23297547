"""Resolving the pinned host names, also while the router's default route is down.

IonMesh, remsim-server and ``pin`` entries may be host names. Their addresses
become ip rules, so they must be known exactly when things go wrong: the
router's own default route (the primary modem, the remote SIM) may be down
at that very moment, and with it the path of dnsmasq's upstream queries.

Each name is resolved, in this order, until one answers:

1. **The system resolver** (``getaddrinfo``: dnsmasq on OpenWrt), in a
   thread given a deadline so that a resolver without a route never stalls
   the supervisor.
2. **A direct query** (a small stdlib DNS client, A and AAAA) to the
   upstream servers dnsmasq itself uses (``/tmp/resolv.conf.d/resolv.conf.auto``
   on OpenWrt, else the non-loopback servers of ``/etc/resolv.conf``), sent
   with the supervisor's firewall mark: the mark rule sends it through the
   supervisor's table, that is over the working heartbeat path, not over
   the broken default route. Only the supervisor's own queries take that
   way; the LAN's DNS is left alone.
3. **The last known addresses**, kept in memory and in a small file under
   ``/var/run/remsim-supervisor/`` (tmpfs: no flash wear) so that a restart
   in the middle of an outage still knows where IonMesh is.

Names are resolved at start, again after a failure of their service, and
when their TTL (direct answers) or the re-resolve period runs out.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import random
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

RESOLV_FILES = ("/tmp/resolv.conf.d/resolv.conf.auto", "/tmp/resolv.conf.auto", "/etc/resolv.conf")
DEFAULT_PERIOD_S = 300.0
MIN_TTL_S = 30.0


def is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return False
    return True


def literal(text: str) -> str:
    """An address written in a URL or a ``pin`` (``[2001:DB8::1]``), as the kernel lists
    it (``2001:db8::1``): the pins, their rules and conntrack's entries then compare equal."""
    return str(ipaddress.ip_address(text.strip("[]")))


# -- a minimal DNS client --------------------------------------------------------


def build_query(name: str, qtype: int, ident: int) -> bytes:
    header = struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0)  # RD set
    labels = b"".join(bytes([len(p)]) + p for p in name.rstrip(".").encode("idna").split(b"."))
    return header + labels + b"\0" + struct.pack("!HH", qtype, 1)


def _skip_name(data: bytes, offset: int) -> int:
    while True:
        if offset >= len(data):
            raise ValueError("truncated name")
        length = data[offset]
        if length & 0xC0 == 0xC0:
            return offset + 2
        if length == 0:
            return offset + 1
        offset += 1 + length


def parse_answer(data: bytes, ident: int) -> tuple[list[str], float | None]:
    """Addresses (A/AAAA) and the smallest TTL from a DNS response."""
    if len(data) < 12:
        raise ValueError("short DNS answer")
    rid, flags, qd, an, _ns, _ar = struct.unpack_from("!HHHHHH", data)
    if rid != ident or not flags & 0x8000:
        raise ValueError("not the answer to our query")
    if flags & 0x000F not in (0, 3):  # NOERROR, NXDOMAIN
        raise ValueError(f"DNS error code {flags & 0xF}")
    offset = 12
    for _ in range(qd):
        offset = _skip_name(data, offset) + 4
    addresses: list[str] = []
    ttl: float | None = None
    for _ in range(an):
        offset = _skip_name(data, offset)
        rtype, _rclass, rttl, length = struct.unpack_from("!HHIH", data, offset)
        offset += 10
        rdata = data[offset : offset + length]
        offset += length
        if rtype == 1 and length == 4:
            addresses.append(socket.inet_ntop(socket.AF_INET, rdata))
        elif rtype == 28 and length == 16:
            addresses.append(socket.inet_ntop(socket.AF_INET6, rdata))
        else:
            continue
        ttl = rttl if ttl is None else min(ttl, rttl)
    return addresses, ttl


def upstream_servers(files: Iterable[str] = RESOLV_FILES) -> list[str]:
    """The DNS servers dnsmasq forwards to (loopback ones are dnsmasq itself)."""
    for path in files:
        try:
            text = Path(path).read_text()
        except OSError:
            continue
        servers = []
        for line in text.splitlines():
            words = line.split()
            if len(words) >= 2 and words[0] == "nameserver":
                address = words[1].split("%", 1)[0]
                if is_address(address) and not ipaddress.ip_address(address).is_loopback:
                    servers.append(words[1])
        if servers:
            return servers
    return []


def query(
    name: str, server: str, *, port: int = 53, mark: int | None = None, timeout: float = 2.0
) -> tuple[list[str], float | None]:
    """Ask one server for A and AAAA records of ``name`` (``server`` may be ``ADDR#PORT``)."""
    if "#" in server:  # dnsmasq's notation for a server on another port
        server, _, port_text = server.partition("#")
        port = int(port_text)
    family = socket.AF_INET6 if ":" in server else socket.AF_INET
    addresses: list[str] = []
    ttl: float | None = None
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        if mark:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, mark)
        sock.settimeout(timeout)
        sock.connect((server, port))
        for qtype in (1, 28):
            ident = random.randrange(1 << 16)
            sock.send(build_query(name, qtype, ident))
            deadline = time.monotonic() + timeout
            while True:
                sock.settimeout(max(0.01, deadline - time.monotonic()))
                try:
                    found, answer_ttl = parse_answer(sock.recv(4096), ident)
                except ValueError:
                    if time.monotonic() >= deadline:
                        raise
                    continue  # a stray or late datagram: wait for ours
                break
            addresses += found
            if answer_ttl is not None:
                ttl = answer_ttl if ttl is None else min(ttl, answer_ttl)
    return addresses, ttl


def system_resolve(name: str, timeout: float) -> list[str]:
    """getaddrinfo with a deadline: it runs in a daemon thread we may abandon."""
    result: list[str] = []
    error: list[BaseException] = []
    done = threading.Event()

    def run() -> None:
        try:
            infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
            for info in infos:
                address = str(info[4][0])
                if address not in result:
                    result.append(address)
        except BaseException as exc:
            error.append(exc)
        finally:
            done.set()

    threading.Thread(target=run, name=f"resolve {name}", daemon=True).start()
    if not done.wait(timeout):
        raise TimeoutError(f"the system resolver did not answer for {name} in {timeout:g} s")
    if error:
        raise error[0]
    return result


# -- the resolver with its cache ---------------------------------------------------


@dataclass
class Entry:
    addresses: list[str]
    expires: float  # monotonic
    source: str
    wall: float = field(default_factory=time.time)


class Resolver:
    def __init__(
        self,
        *,
        cache_file: str | None = None,
        period_s: float = DEFAULT_PERIOD_S,
        mark: int | None = None,
        timeout: float = 2.0,
        servers: Callable[[], list[str]] = upstream_servers,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cache_file = cache_file
        self.period_s = period_s
        self.mark = mark
        self.timeout = timeout
        self.servers = servers
        self.clock = clock
        self.entries: dict[str, Entry] = {}
        self._load()

    def _load(self) -> None:
        if not self.cache_file:
            return
        try:
            data = json.loads(Path(self.cache_file).read_text())
        except (OSError, ValueError):
            return
        now = self.clock()
        for name, addresses in data.items() if isinstance(data, dict) else ():
            if isinstance(addresses, list) and all(
                isinstance(a, str) and is_address(a) for a in addresses
            ):
                # Known, but due for a fresh look at once.
                self.entries[name] = Entry(list(addresses), now, "saved")

    def _save(self) -> None:
        if not self.cache_file:
            return
        data = {name: e.addresses for name, e in self.entries.items() if e.addresses}
        try:
            os.makedirs(os.path.dirname(self.cache_file) or ".", exist_ok=True)
            tmp = f"{self.cache_file}.tmp"
            Path(tmp).write_text(json.dumps(data, sort_keys=True))
            os.replace(tmp, self.cache_file)
        except OSError as exc:
            log.debug("cannot save resolved names to %s: %s", self.cache_file, exc)

    def due(self, name: str) -> bool:
        entry = self.entries.get(name)
        return entry is None or self.clock() >= entry.expires

    def forget(self, name: str) -> None:
        """Its service failed: look the name up again at the next chance."""
        entry = self.entries.get(name)
        if entry is not None:
            entry.expires = self.clock()

    def known(self, name: str) -> list[str]:
        if is_address(name):
            return [literal(name)]
        entry = self.entries.get(name)
        return list(entry.addresses) if entry else []

    def resolve(self, name: str) -> list[str]:
        """Blocking: the addresses of ``name`` now (run it in a worker thread)."""
        if is_address(name):
            return [literal(name)]
        now = self.clock()
        try:
            addresses = system_resolve(name, self.timeout)
            if addresses:
                return self._store(name, addresses, now + self.period_s, "system resolver")
        except (OSError, TimeoutError, UnicodeError) as exc:
            log.debug("system resolver failed for %s: %s", name, exc)
        for server in self.servers():
            try:
                addresses, ttl = query(name, server, mark=self.mark, timeout=self.timeout)
            except (OSError, ValueError, UnicodeError) as exc:
                log.debug("DNS server %s failed for %s: %s", server, name, exc)
                continue
            if addresses:
                keep = max(MIN_TTL_S, min(ttl or self.period_s, self.period_s))
                return self._store(name, addresses, now + keep, f"DNS server {server}")
        entry = self.entries.get(name)
        if entry is not None and entry.addresses:
            # Keep what we had; try again soon rather than at the next period.
            entry.expires = now + MIN_TTL_S
            log.warning("cannot resolve %s now; keeping %s", name, ", ".join(entry.addresses))
            return list(entry.addresses)
        log.warning("cannot resolve %s and no address is known for it", name)
        return []

    def _store(self, name: str, addresses: list[str], expires: float, source: str) -> list[str]:
        before = self.entries.get(name)
        self.entries[name] = Entry(addresses, expires, source)
        if before is None or sorted(before.addresses) != sorted(addresses):
            log.info("%s is %s (%s)", name, ", ".join(addresses), source)
            self._save()
        return addresses
