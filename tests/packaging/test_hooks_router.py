"""On the router: the installed hooks and event script reach procd's daemon over OpenWrt's ubus.

In the router sandbox (tests/router.py: busybox as /bin/sh, ubusd, procd,
the package installed with opkg), the daemon listens on the system bus; the
real ``/sbin/hotplug-call`` runs the installed hooks, and the installed
event script runs as osmo-remsim-client runs it. Both must arrive through
the daemon's ubus listener (its ``received_*`` counters, which the control
socket's path never touches), and with the daemon stopped the hooks must
leave quietly and the event script take the Python path.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.router import (
    DAEMON_CONFIG,
    SERVICE,
    Router,
    install_package,
    router_sandbox,
    start_daemon,
    wait_for,
)
from tests.stubs.support import build_ipk

EVENT = "/usr/libexec/remsim-supervisor/remsim-event"


@pytest.fixture(scope="module")
def router(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Router]:
    with router_sandbox() as r:
        install_package(r, build_ipk(tmp_path_factory.mktemp("ipk")))
        start_daemon(r, DAEMON_CONFIG.replace("log_level 'info'", "log_level 'debug'"))
        yield r


def events(router: Router) -> dict[str, Any]:
    answer = router.sh("remsim-supervisor status --json", check=False)
    if answer.returncode != 0:
        return {}
    found: dict[str, Any] = json.loads(answer.stdout)["events"]
    return found


def listener(router: Router) -> dict[str, Any]:
    return events(router).get("ubus") or {}


def test_hooks_and_events_arrive_over_the_routers_ubus(router: Router) -> None:
    assert wait_for(lambda: listener(router).get("ready"), timeout=30), events(router)
    assert router.sh("cat /var/run/remsim-supervisor.ubus").stdout.splitlines()[1:] == [
        router.sh("command -v ubus").stdout.strip(), ""]  # the system bus, its own socket
    before = listener(router)
    router.sh("env -i ACTION=ifup INTERFACE=wwan DEVICE=wwan0 /sbin/hotplug-call iface")
    router.sh("env -i ACTION=add DEVTYPE=usb_device DEVPATH=/devices/usb1/1-1 "
              "PRODUCT=2c7c/125/318 /sbin/hotplug-call usb")
    router.sh(f"env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin REMSIM_BANKD_ADDR=203.0.113.30:9999 "
              f"/bin/sh -c '{EVENT} event-config-bankd'")
    after = wait_for(lambda: (s := listener(router)).get("received_event", 0) >
                     before["received_event"] and s, timeout=10)
    assert after, listener(router)
    assert after["received_hotplug"] == before["received_hotplug"] + 2
    assert after["received_event"] == before["received_event"] + 1
    assert wait_for(lambda: events(router)["osmo_remsim"]["pinned"].get("bankd"), timeout=10) \
        == "203.0.113.30:9999"
    assert after["malformed"] == 0 and after["starts"] == 1


def test_with_the_daemon_stopped_the_event_script_starts_python(router: Router) -> None:
    router.sh(f"/etc/init.d/{SERVICE} stop")
    assert wait_for(lambda: router.sh("test -e /var/run/remsim-supervisor.ubus",
                                      check=False).returncode != 0, timeout=10)
    assert router.sh("pgrep -f 'ubus listen remsim-supervisor.hook'", check=False).returncode != 0
    # hotplug-call: nothing listens, nothing to start
    router.sh("env -i ACTION=ifup INTERFACE=wwan DEVICE=wwan0 /sbin/hotplug-call iface")
    assert router.sh("pgrep -f 'remsim-supervisor hotplug'", check=False).returncode != 0
    # the event script: the Python path, which logs that no daemon handled the bankd
    result = router.sh(f"env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "
                       f"REMSIM_BANKD_ADDR=203.0.113.31:9999 /bin/sh -c "
                       f"'{EVENT} event-config-bankd'; echo $?")
    assert result.stdout.strip() == "0"
    assert wait_for(lambda: "203.0.113.31:9999 assigned with no daemon running" in
                    router.logread("-e", SERVICE), timeout=20)
