"""``remsim-supervisor test-heartbeat``: real heartbeats now, over one chosen modem.

The heartbeats are sent bound to the chosen modem's data device
(SO_BINDTODEVICE) and carry the supervisor's firewall mark, so they leave
through that modem whatever the routing says for other traffic. With a
daemon running, its table already holds a route for every usable path (the
active one and the standby); without one, this command installs the same
rule and route for the duration of the test and removes them afterwards.

For each heartbeat it prints the HTTP status, the round-trip time and the
bytes on the wire (the HTTP exchange as counted on the socket, plus the
TCP/IP headers of its segments, plus the handshake when a connection had to
be opened). A client IonMesh does not know is registered first (and, when
no daemon runs, unregistered again at the end, leaving IonMesh as it was).

Exit status: 0 when every heartbeat was acknowledged, 1 otherwise, 2 for a
bad configuration or an unknown modem.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any
from urllib.parse import urlsplit

from remsim_supervisor.adapters.ionmesh import IonMeshClient, IonMeshError, NotRegistered
from remsim_supervisor.adapters.resolve import Resolver
from remsim_supervisor.config import Config, ConfigError, Environment, ModemConfig, load
from remsim_supervisor.supervisor import control
from remsim_supervisor.supervisor.heartbeat import NEW_CONNECTION_OVERHEAD, TCP_IP_OVERHEAD


class Refused(Exception):
    """A one-line reason to stop, with its exit status."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def choose_modem(config: Config, via: str) -> ModemConfig:
    modem = config.by_role(via) if via in ("iot", "primary") else config.modem(via)
    if modem is None:
        names = ", ".join(m.name for m in config.modems)
        raise Refused(f"no modem {via!r}: use iot, primary or a modem name ({names})", 2)
    return modem


def data_device(config: Config, modem: ModemConfig, daemon: dict[str, Any] | None,
                sysfs_root: str = "/sys") -> str:
    if daemon is not None:
        for m in daemon.get("modems", []):
            if m.get("name") == modem.name and m.get("device"):
                return str(m["device"])
    if modem.device:
        return modem.device
    if modem.usb_path or modem.usb_id:
        from remsim_supervisor.adapters.discovery import Discovery

        found = Discovery(sysfs_root).find(
            usb_path=modem.usb_path, usb_id=modem.usb_id
        )
        if found is not None and found.net_ifaces:
            return found.net_ifaces[0]
    if modem.interface:
        return modem.interface
    raise Refused(f"{modem.name} has no data device: set 'option device' in its section", 2)


def daemon_status(config: Config) -> dict[str, Any] | None:
    try:
        answer = control.request(config.supervisor.control_socket, {"cmd": "status"}, timeout=3.0)
    except control.ControlError:
        return None
    return answer.get("status") if answer.get("ok") else None


def run_test_heartbeat(config_path: str, via: str, count: int, as_json: bool,
                       env: Environment | None = None) -> int:
    hooks = env if env is not None else Environment.from_environ(os.environ)
    try:
        config = load(config_path, hooks.overrides)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 2
    try:
        return _run(config, via, count, as_json, hooks)
    except Refused as exc:
        print(f"remsim-supervisor: {exc}", file=sys.stderr)
        return exc.code


def _run(config: Config, via: str, count: int, as_json: bool, hooks: Environment) -> int:
    modem = choose_modem(config, via)
    status = daemon_status(config)
    device = data_device(config, modem, status, hooks.sysfs)
    host = urlsplit(config.ionmesh.url).hostname or ""
    state_dir = hooks.state_dir
    resolver = Resolver(
        cache_file=os.path.join(state_dir, "resolved.json"), mark=config.routing.mark
    )
    addresses = resolver.resolve(host)
    if not addresses:
        raise Refused(f"cannot resolve {host}: check ionmesh.url and DNS", 1)
    router = None
    if status is None and os.geteuid() == 0:
        router = _temporary_route(config, modem, device, addresses[0])
    registered_here = False
    results: list[dict[str, Any]] = []
    client = IonMeshClient.from_config(
        config.ionmesh, bind_device=device, mark=config.routing.mark, connect_address=addresses[0]
    )
    try:
        for n in range(1, count + 1):
            result: dict[str, Any] = {
                "n": n,
                "via": modem.name,
                "device": device,
                "address": addresses[0],
            }
            try:
                try:
                    beat = client.heartbeat("active")
                except NotRegistered:
                    client.register()
                    registered_here = status is None
                    result["registered"] = True
                    beat = client.heartbeat("active")
                ex = beat.exchange
                result.update(
                    status=ex.status,
                    rtt_ms=round(ex.rtt_ms, 1),
                    http_bytes=ex.bytes_sent + ex.bytes_received,
                    bytes_on_wire=_wire(ex.bytes_sent + ex.bytes_received, ex.new_connection),
                    new_connection=ex.new_connection,
                    acknowledged=True,
                )
            except IonMeshError as exc:
                failed = exc.exchange
                result.update(status=exc.status, acknowledged=False, error=str(exc))
                if failed is not None:
                    result.update(
                        rtt_ms=round(failed.rtt_ms, 1),
                        bytes_on_wire=_wire(
                            failed.bytes_sent + failed.bytes_received, failed.new_connection
                        ),
                    )
            results.append(result)
            if not as_json:
                print(_line(result, count))
        if registered_here:
            try:
                client.unregister()
            except IonMeshError:
                pass
    finally:
        client.close()
        if router is not None:
            router.clear()
            router.close()
    if as_json:
        print(json.dumps({"via": modem.name, "device": device, "results": results}, indent=2))
    return 0 if all(r.get("acknowledged") for r in results) else 1


def _wire(http_bytes: int, new_connection: bool) -> int:
    return http_bytes + TCP_IP_OVERHEAD + (NEW_CONNECTION_OVERHEAD if new_connection else 0)


def _line(r: dict[str, Any], count: int) -> str:
    head = f"heartbeat {r['n']}/{count} via {r['via']} ({r['device']}) to {r['address']}: "
    if r.get("acknowledged"):
        return (
            head + f"HTTP {r['status']} in {r['rtt_ms']:.1f} ms, {r['bytes_on_wire']} bytes "
            f"on the wire{' (new connection)' if r['new_connection'] else ''}"
            f"{' (registered first)' if r.get('registered') else ''}"
        )
    return head + f"not acknowledged: {r.get('error')}"


def _temporary_route(config: Config, modem: ModemConfig, device: str, address: str) -> Any:
    """Without a daemon: pin IonMesh to this modem for the test, as the daemon would."""
    from remsim_supervisor.adapters.routing import Router, RoutingError

    router = Router(config.routing.table, config.routing.priority, mark=config.routing.mark)
    try:
        router.reconcile([address], router.path_of(modem.name, device))
    except RoutingError as exc:
        router.close()
        raise Refused(f"cannot route over {device}: {exc}", 1) from None
    return router
