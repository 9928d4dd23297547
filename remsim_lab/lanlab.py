"""The lab network with a wired WAN and a LAN client: where the LAN failover is shown.

:class:`LanLabNetwork` is :class:`~remsim_lab.network.LabNetwork` (router and
cloud namespaces, the two modems' carriers) plus:

    router ns                              cloud ns
    eth1  10.251.3.2/24  <--   wan   -->  wgw 10.251.3.1/24
    lan0  192.168.251.1/24
      |
    client ns: eth0 192.168.251.2/24, default via 192.168.251.1

The router's main table gets a default route through ``eth1`` at metric 5,
ahead of the modems' (10 and 20), as netifd installs a wired WAN; the router
forwards and masquerades the client's traffic out of every uplink (an
nftables ``nat`` table, conntrack on), as OpenWrt's firewall does. The WAN
takes the same faults as the carriers (``link("wan", False)``,
``blackhole("wan", True)``). Everything is inside the lab's namespaces and
goes with them.
"""

from __future__ import annotations

import subprocess

from remsim_lab.network import Carrier, LabNetwork, _run

WAN = Carrier("wan", "eth1", "10.251.3.2", "wgw", "10.251.3.1", 5)
LAN_DEVICE, LAN_ROUTER, LAN_CLIENT = "lan0", "192.168.251.1", "192.168.251.2"


class LanLabNetwork(LabNetwork):
    def __init__(self, prefix: str = "rslan") -> None:
        super().__init__(prefix)
        self.client = self.router.replace(f"{prefix}-r-", f"{prefix}-l-", 1)
        self.carriers[WAN.role] = WAN

    def up(self) -> None:
        super().up()
        try:
            self._add_wan()
            self._add_client()
        except BaseException:
            self.close()
            raise

    def _add_wan(self) -> None:
        c = WAN
        _run("ip", "link", "add", c.device, "netns", self.router, "type", "veth",
             "peer", "name", c.peer, "netns", self.cloud)
        self.ip(self.router, "link", "set", c.device, "up")
        self.ip(self.cloud, "link", "set", c.peer, "up")
        self.ip(self.router, "addr", "add", f"{c.address}/24", "dev", c.device)
        self.ip(self.cloud, "addr", "add", f"{c.gateway}/24", "dev", c.peer)
        self.ip(self.router, "route", "add", "default", "via", c.gateway, "dev", c.device,
                "metric", str(c.metric))

    def _add_client(self) -> None:
        _run("ip", "netns", "add", self.client)
        self._made.insert(0, self.client)  # deleted last, after the router's end of the pair
        self.ip(self.client, "link", "set", "lo", "up")
        _run("ip", "link", "add", LAN_DEVICE, "netns", self.router, "type", "veth",
             "peer", "name", "eth0", "netns", self.client)
        self.ip(self.router, "link", "set", LAN_DEVICE, "up")
        self.ip(self.client, "link", "set", "eth0", "up")
        self.ip(self.router, "addr", "add", f"{LAN_ROUTER}/24", "dev", LAN_DEVICE)
        self.ip(self.client, "addr", "add", f"{LAN_CLIENT}/24", "dev", "eth0")
        self.ip(self.client, "route", "add", "default", "via", LAN_ROUTER)
        _run("ip", "netns", "exec", self.router, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
        uplinks = ", ".join(f'"{c.device}"' for c in self.carriers.values())
        script = (
            "table ip lab_nat {\n chain postrouting {\n"
            "  type nat hook postrouting priority 100;\n"
            f"  oifname {{ {uplinks} }} masquerade\n }}\n}}\n"
        )
        subprocess.run(["ip", "netns", "exec", self.router, "nft", "-f", "-"], input=script,
                       text=True, check=True, capture_output=True)

    def client_route(self, address: str) -> str:
        """Which uplink the router forwards the client's packets to ``address`` through."""
        return self.ip(self.router, "route", "get", address, "from", LAN_CLIENT, "iif",
                       LAN_DEVICE).splitlines()[0]

    def in_client(self, *argv: str, timeout: float = 10.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", self.client, *argv], capture_output=True,
                              text=True, timeout=timeout, check=False)


__all__ = ["LAN_CLIENT", "LAN_DEVICE", "LAN_ROUTER", "WAN", "LanLabNetwork"]
