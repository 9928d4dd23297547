"""The path keeper with an IPv6-only IoT modem, on simulated time: no namespaces.

The routing executor is a stand-in behind the Router's interface
(``link_state`` answers real :class:`LinkInfo` values, ``path_of`` real
:class:`PathSpec` ones); blocking calls run inline. Shown: a modem whose data
device has only a global IPv6 address carries the heartbeat, the facts say
which IP versions each path carries, and a dual-stack IonMesh name is
reached at the address of the version the paths carry, also after a move.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from remsim_supervisor.adapters.resolve import Resolver
from remsim_supervisor.adapters.routing import LinkInfo, PathSpec
from remsim_supervisor.config import (
    Config,
    EscalationConfig,
    IonmeshConfig,
    ModemConfig,
    RoutingConfig,
    SupervisorConfig,
)
from remsim_supervisor.supervisor.pathkeeper import PathKeeper
from remsim_supervisor.supervisor.usage import ModemView

HOST = "ionmesh.example"
IONMESH4, IONMESH6 = "192.0.2.9", "2001:db8:9::9"
VIEWS = [ModemView("modem1", "primary", "wwan0", None, {}),
         ModemView("modem2", "iot", "wwan1", None, {})]


@dataclass
class Router:
    links: dict[str, LinkInfo] = field(default_factory=lambda: {
        "wwan0": LinkInfo("wwan0", True, True, ("10.251.1.2",), ("2001:db8:1::2",)),
        "wwan1": LinkInfo("wwan1", True, True, (), ("2001:db8:2::2",)),
    })
    tables: list[tuple[list[str], PathSpec | None, list[PathSpec]]] = field(default_factory=list)

    def link_state(self, device: str) -> LinkInfo:
        return self.links[device]

    def path_of(self, name: str, device: str) -> PathSpec:
        link = self.links[device]
        return PathSpec(name, device, "10.251.1.1" if link.ipv4 else None, ipv6=bool(link.ipv6),
                        gateway6="fe80::1" if link.ipv6 else None, ipv4=bool(link.ipv4))

    def reconcile(self, pins: Any, path: PathSpec | None, standby: Any) -> None:
        self.tables.append((list(pins), path, list(standby)))

    def owned(self) -> tuple[list[str], list[str]]:
        return [], []


async def inline(fn: Callable[..., Any], *args: Any) -> Any:
    return fn(*args)


def make_keeper(tmp_path: Path, router: Router) -> PathKeeper:
    cache = tmp_path / "resolved.json"
    cache.write_text(json.dumps({HOST: [IONMESH4, IONMESH6]}))
    config = Config(
        path="/dev/null", supervisor=SupervisorConfig(), escalation=EscalationConfig(),
        ionmesh=IonmeshConfig(url=f"http://{HOST}:5000", client_id="r"),
        modems=(ModemConfig("modem1", "primary", device="wwan0"),
                ModemConfig("modem2", "iot", device="wwan1")),
        routing=RoutingConfig())
    resolver = Resolver(cache_file=str(cache), clock=lambda: 1000.0)
    return PathKeeper(config, lambda: VIEWS, router=router, resolver=resolver,
                      clock=lambda: 1000.0, wall=lambda: 1.7e9, offload=inline)


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


def test_an_ipv6_only_iot_modem_carries_the_heartbeat(tmp_path: Path) -> None:
    async def go() -> None:
        router = Router()
        keeper = make_keeper(tmp_path, router)
        await keeper.refresh()
        assert keeper.facts["modem2"].usable and keeper.facts["modem2"].versions == (6,)
        assert keeper.facts["modem1"].versions == (4, 6)
        assert keeper.path.active == "modem2"
        pins, path, standby = router.tables[-1]
        assert sorted(pins) == [IONMESH4, IONMESH6]  # both of the name's addresses pinned
        assert path is not None and (path.device, path.versions) == ("wwan1", (6,))
        assert [s.device for s in standby] == ["wwan0"]
        # Over the IPv6-only path, and the dual-stack standby: the AAAA.
        assert keeper.ionmesh_address() == IONMESH6

        # Link down: the primary carries; it carries IPv6 too, so the address stays
        # (and stays through the failback over the IPv6-only modem).
        keeper.link_event("wwan1", False)
        await settle()
        assert keeper.path.active == "modem1" and keeper.ionmesh_address() == IONMESH6
        assert router.tables[-1][1] is not None and router.tables[-1][1].device == "wwan0"

    asyncio.run(go())


def test_an_ipv4_only_primary_takes_the_a_record(tmp_path: Path) -> None:
    async def go() -> None:
        router = Router()
        router.links["wwan0"] = LinkInfo("wwan0", True, True, ("10.251.1.2",), ())
        keeper = make_keeper(tmp_path, router)
        await keeper.refresh()
        assert keeper.path.active == "modem2"
        assert keeper.ionmesh_address() == IONMESH6  # the active path's version
        keeper.link_event("wwan1", False)
        await settle()
        assert keeper.path.active == "modem1" and keeper.ionmesh_address() == IONMESH4

    asyncio.run(go())


def test_a_device_with_no_address_at_all_is_not_usable(tmp_path: Path) -> None:
    async def go() -> None:
        router = Router()
        router.links["wwan1"] = LinkInfo("wwan1", True, True, (), ())
        keeper = make_keeper(tmp_path, router)
        await keeper.refresh()
        assert not keeper.facts["modem2"].usable and keeper.facts["modem2"].versions == ()
        assert keeper.path.active == "modem1"
        assert [p.device for p in router.tables[-1][1:2] if p is not None] == ["wwan0"]
        assert router.tables[-1][2] == []  # no standby through an address-less device

    asyncio.run(go())


def test_an_address_event_on_a_modem_device_asks_for_a_read(tmp_path: Path) -> None:
    async def go() -> None:
        router = Router()
        router.links["wwan1"] = LinkInfo("wwan1", True, True, (), ())  # up, no address yet
        keeper = make_keeper(tmp_path, router)
        woken: list[bool] = []
        keeper.on_stale = lambda: woken.append(True)
        await keeper.refresh()
        assert keeper.path.active == "modem1" and not keeper.stale
        keeper.address_event("br-lan")  # not a modem's device
        assert not keeper.stale and woken == []
        # The RA's address arrives (no link event): the next read finds it usable.
        router.links["wwan1"] = LinkInfo("wwan1", True, True, (), ("2001:db8:2::2",))
        keeper.address_event("wwan1")
        assert keeper.stale and woken == [True]
        await keeper.refresh()
        assert keeper.facts["modem2"].usable and keeper.failback_candidate() == "modem2"

    asyncio.run(go())
