"""Notifications: events from status snapshots, and their delivery."""

from __future__ import annotations

import asyncio
import copy
import http.server
import json
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from remsim_supervisor.adapters.notify import Event, Notifier, Watcher


def base() -> dict[str, Any]:
    return {
        "grace": {"period_s": 300, "remaining_s": 290},
        "heartbeat": {"path": "modem2", "path_reason": "iot modem usable", "interface": "wwan1",
                      "server_error": None},
        "modems": [{"name": "modem1", "role": "primary", "state": "connected", "reason": ""},
                   {"name": "modem2", "role": "iot", "state": "connected", "reason": ""}],
        "recoveries": [],
    }


def names(events: list[Event]) -> list[str]:
    return [e.name for e in events]


# -- the watcher -------------------------------------------------------------------


def test_first_snapshot_is_quiet_and_an_unchanged_one_too() -> None:
    w = Watcher(grace_threshold=120)
    assert w.observe(base()) == []
    assert w.observe(base()) == []


def test_path_change() -> None:
    w = Watcher(grace_threshold=120)
    w.observe(base())
    s = base()
    s["heartbeat"].update(path="modem1", path_reason="modem2: link down", interface="wwan0")
    [event] = w.observe(s)
    assert event.name == "path_changed"
    assert event.fields == {"from": "modem2", "to": "modem1", "reason": "modem2: link down",
                            "interface": "wwan0"}
    assert w.observe(s) == []


def test_modem_failed_then_recovered_and_other_moves_are_quiet() -> None:
    w = Watcher(grace_threshold=120)
    w.observe(base())
    s = base()
    s["modems"][1].update(state="searching")
    assert w.observe(s) == []
    s = copy.deepcopy(s)
    s["modems"][1].update(state="failed", reason="no answer to AT")
    [failed] = w.observe(s)
    assert failed.name == "modem_failed" and failed.fields["modem"] == "modem2"
    assert failed.fields["from"] == "searching" and failed.fields["reason"] == "no answer to AT"
    s = copy.deepcopy(s)
    s["modems"][1].update(state="probing")
    [back] = w.observe(s)
    assert back.name == "modem_recovered" and back.fields["state"] == "probing"


def test_recovery_step_started_and_finished_counted_once() -> None:
    w = Watcher(grace_threshold=120)
    w.observe(base())
    s = base()
    record = {"modem": "modem2", "step": "radio_cycle", "started": 1000.0, "result": "running",
              "grace_left_s": 240.0, "reason": "no heartbeat over modem2"}
    s["recoveries"] = [record]
    [started] = w.observe(s)
    assert started.name == "recovery_step" and started.fields["result"] == "running"
    assert w.observe(copy.deepcopy(s)) == []
    s = copy.deepcopy(s)
    s["recoveries"][0]["result"] = "failed"
    [finished] = w.observe(s)
    assert finished.fields["result"] == "failed" and "finished: failed" in finished.message
    assert w.observe(copy.deepcopy(s)) == []
    assert w.recovery_steps == {("modem2", "radio_cycle", "failed"): 1}
    # a second step appears in front (the list is newest first)
    s = copy.deepcopy(s)
    s["recoveries"].insert(0, {**record, "step": "gpio_reset", "started": 1100.0, "result": "ok"})
    [second] = w.observe(s)
    assert second.fields["step"] == "gpio_reset"
    assert w.recovery_steps[("modem2", "gpio_reset", "ok")] == 1
    assert sum(w.recovery_steps.values()) == 2


def test_grace_low_once_per_dip() -> None:
    w = Watcher(grace_threshold=120)
    w.observe(base())
    s = base()
    s["grace"]["remaining_s"] = 119.6
    [low] = w.observe(s)
    assert low.name == "grace_low" and low.fields == {"grace_left": "120", "threshold": "120"}
    s = copy.deepcopy(s)
    s["grace"]["remaining_s"] = 60
    assert w.observe(s) == []
    s = copy.deepcopy(s)
    s["grace"]["remaining_s"] = 300
    assert w.observe(s) == []
    s = copy.deepcopy(s)
    s["grace"]["remaining_s"] = 10
    assert names(w.observe(s)) == ["grace_low"]


def test_server_error_once_per_spell() -> None:
    w = Watcher(grace_threshold=120)
    w.observe(base())
    s = base()
    s["heartbeat"]["server_error"] = {"error": "HTTP 500", "count": 1, "since": 1.0}
    [event] = w.observe(s)
    assert event.name == "server_error" and event.fields == {"error": "HTTP 500"}
    s = copy.deepcopy(s)
    s["heartbeat"]["server_error"]["count"] = 5
    assert w.observe(s) == []
    assert w.observe(base()) == []
    assert names(w.observe(s)) == ["server_error"]


# -- delivery ----------------------------------------------------------------------


def script(directory: Path, name: str, body: str, executable: bool = True) -> Path:
    path = directory / name
    path.write_text("#!/bin/sh\n" + body)
    if executable:
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


EVENT = Event("path_changed", "heartbeat path modem2 -> modem1: $(touch pwned)",
              {"from": "modem2", "to": "modem1", "reason": "`touch pwned`; link down"})


def test_scripts_run_in_order_with_the_event_in_the_environment(tmp_path: Path) -> None:
    out = tmp_path / "out"
    d = tmp_path / "notify.d"
    d.mkdir()
    script(d, "20-second", f'echo "second $REMSIM_EVENT" >> {out}\n')
    script(d, "10-first", f'env | grep ^REMSIM_ | sort >> {out}\n')
    script(d, "30-not-executable", f"echo never >> {out}\n", executable=False)
    script(d, ".hidden", f"echo never >> {out}\n")
    n = Notifier(str(d), ubus="")
    asyncio.run(n.deliver(EVENT))
    lines = out.read_text().splitlines()
    assert lines == [
        "REMSIM_EVENT=path_changed",
        "REMSIM_FROM=modem2",
        "REMSIM_MESSAGE=heartbeat path modem2 -> modem1: $(touch pwned)",
        "REMSIM_REASON=`touch pwned`; link down",
        "REMSIM_TO=modem1",
        "second path_changed",
    ]
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()
    assert n.delivered == {"10-first": 1, "20-second": 1}


def test_a_hanging_script_is_stopped_at_the_time_limit(tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    d = tmp_path / "notify.d"
    d.mkdir()
    script(d, "hang", "sleep 60 &\nsleep 60\n")
    script(d, "fails", "echo 'no token' >&2\nexit 3\n")
    n = Notifier(str(d), ubus="", timeout=0.3)
    started = time.monotonic()
    asyncio.run(n.deliver(EVENT))
    assert time.monotonic() - started < 5
    assert n.failures == {"hang": 1, "fails": 1}
    assert "hang was stopped after 0 s" in caplog.text
    assert "fails exited with status 3: no token" in caplog.text


def test_notify_never_waits_and_a_full_queue_drops_and_counts(tmp_path: Path) -> None:
    d = tmp_path / "notify.d"
    d.mkdir()
    script(d, "slow", "sleep 60\n")

    async def main() -> None:
        n = Notifier(str(d), ubus="", timeout=0.2)
        task = asyncio.create_task(n.run())
        started = time.monotonic()
        n.notify([EVENT] * (Notifier.QUEUE + 10))
        assert time.monotonic() - started < 0.1
        assert n.dropped == 10
        await asyncio.sleep(0.5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            received.append(json.loads(self.rfile.read(length)))
            self.send_response(204 if self.path == "/ok" else 500)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()


def test_webhook_posts_json(webhook: tuple[str, list[dict[str, Any]]]) -> None:
    url, received = webhook
    n = Notifier(None, ubus="", webhook=url + "/ok")
    asyncio.run(n.deliver(EVENT))
    assert n.delivered == {"webhook": 1}
    [body] = received
    assert body["event"] == "path_changed" and body["to"] == "modem1"
    assert isinstance(body["time"], float)


def test_webhook_error_is_counted_and_logged(webhook: tuple[str, list[dict[str, Any]]],
                                             caplog: pytest.LogCaptureFixture) -> None:
    url, received = webhook
    n = Notifier(None, ubus="", webhook=url + "/broken")
    asyncio.run(n.deliver(EVENT))
    assert n.failures == {"webhook": 1} and len(received) == 1
    assert "the webhook answered HTTP 500" in caplog.text


def test_webhook_not_sent_over_the_iot_modem(webhook: tuple[str, list[dict[str, Any]]],
                                             caplog: pytest.LogCaptureFixture) -> None:
    url, received = webhook
    n = Notifier(None, ubus="", webhook=url + "/ok", webhook_allowed=lambda: False)
    asyncio.run(n.deliver(EVENT))
    assert received == [] and n.failures == {"webhook": 1}
    assert "leaves through the IoT modem" in caplog.text


def test_ubus_send_carries_the_event_as_json(tmp_path: Path) -> None:
    # ubus itself runs in the router sandbox tests; here a recorder stands at its path.
    out = tmp_path / "args"
    ubus = script(tmp_path, "ubus", f'printf "%s\\n" "$@" > {out}\n')
    n = Notifier(None, ubus=str(ubus))
    asyncio.run(n.deliver(EVENT))
    args = out.read_text().splitlines()
    assert args[:2] == ["send", "remsim-supervisor.path_changed"]
    assert json.loads(args[2]) == EVENT.as_json()


def test_the_first_path_after_start_is_no_change_but_losing_it_is() -> None:
    w = Watcher(grace_threshold=120)
    s = base()
    s["heartbeat"]["path"] = None
    w.observe(s)
    assert w.observe(base()) == []  # none -> modem2 at start
    s = copy.deepcopy(s)
    s["heartbeat"].update(path=None, path_reason="no usable modem")
    [lost] = w.observe(s)
    assert lost.fields["from"] == "modem2" and lost.fields["to"] == ""
    [back] = w.observe(base())
    assert back.fields["to"] == "modem2"


def test_route_device_asks_the_kernel(tmp_path: Path) -> None:
    from remsim_supervisor.adapters.notify import route_device
    from tests.netns import call_in_netns, ip, netns

    with netns("rsnt") as ns:
        # veth pairs stand for the devices (no dummy driver in every kernel)
        ip("-n", ns, "link", "add", "wwan1", "type", "veth", "peer", "name", "wwan1p")
        ip("-n", ns, "link", "set", "wwan1p", "up")
        ip("-n", ns, "addr", "add", "10.77.0.1/24", "dev", "wwan1")
        ip("-n", ns, "link", "set", "wwan1", "up")
        ip("-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p")
        ip("-n", ns, "link", "set", "eth0p", "up")
        ip("-n", ns, "addr", "add", "10.78.0.1/24", "dev", "eth0")
        ip("-n", ns, "link", "set", "eth0", "up")
        assert call_in_netns(ns, route_device, "http://10.77.0.9:8080/hook") == "wwan1"
        assert call_in_netns(ns, route_device, "https://10.78.0.20/x?token=1") == "eth0"
        assert call_in_netns(ns, route_device, "http://192.0.2.1/") is None  # no route
        ip("-n", ns, "route", "add", "default", "dev", "wwan1")
        assert call_in_netns(ns, route_device, "http://192.0.2.1/") == "wwan1"


CONFIG = """config ionmesh 'ionmesh'
\toption url 'http://ionmesh.example.com:5000'
config modem 'modem1'
\toption role 'primary'
\toption usb_path '1-1'
config modem 'modem2'
\toption role 'iot'
\toption usb_path '1-2'
"""


def test_notify_and_metrics_options() -> None:
    from remsim_supervisor.config import parse_config

    config = parse_config(CONFIG + """config notify 'notify'
\toption directory '/etc/remsim-supervisor/notify.d'
\toption webhook 'https://hooks.example.net/remsim?token=abc'
\toption webhook_via_iot '1'
\toption grace_threshold '90'
\toption timeout '5'
config supervisor 'main'
\toption metrics '0'
""", "/etc/config/remsim-supervisor")
    assert config.notify.webhook == "https://hooks.example.net/remsim?token=abc"
    assert (config.notify.webhook_via_iot, config.notify.grace_threshold,
            config.notify.timeout) == (True, 90, 5.0)
    assert config.supervisor.metrics is False
    defaults = parse_config(CONFIG, "f")
    assert defaults.notify.webhook is None and defaults.notify.grace_threshold == 120
    assert defaults.supervisor.metrics_file == "/var/prometheus/remsim_supervisor.prom"


def test_bad_notify_options_one_line_each() -> None:
    from remsim_supervisor.config import ConfigError, parse_config

    with pytest.raises(ConfigError) as caught:
        parse_config(CONFIG + """config notify 'notify'
\toption webhook 'ftp://hooks.example.net/x'
\toption grace_threshold 'soon'
\toption directory 'notify.d'
""", "f")
    assert [str(p) for p in caught.value.problems] == [
        "f:10: notify.webhook: must be an http:// or https:// URL with a host, "
        "as in 'https://hooks.example.net/remsim'",
        "f:11: notify.grace_threshold: must be a whole number of seconds, not 'soon'",
        "f:12: notify.directory: must be an absolute path such as "
        "/etc/remsim-supervisor/notify.d, not 'notify.d'",
    ]


DELIVER = """
import asyncio
from remsim_supervisor.adapters.notify import Event, Notifier
event = Event("path_changed", "heartbeat path modem2 -> modem1: link down",
              {"from": "modem2", "to": "modem1", "reason": "link down"})
notifier = Notifier(None)
assert notifier.ubus, "no ubus on PATH"
asyncio.run(notifier.deliver(event))
assert notifier.delivered["ubus"] == 1, notifier.status()
"""


def test_ubus_send_reaches_a_listener_on_openwrts_ubus() -> None:
    """The notifier's `ubus send`, heard by `ubus listen` on OpenWrt's own ubusd."""
    from tests.router import router_sandbox, wait_for

    with router_sandbox() as router:
        router.sh("ubus listen 'remsim-supervisor.*' > /tmp/heard 2>&1 &")

        def heard() -> str | None:
            result = router.run(["python3", "-c", DELIVER])
            assert result.returncode == 0, result.stderr
            text = router.sh("cat /tmp/heard").stdout
            return text if "remsim-supervisor.path_changed" in text else None

        text = wait_for(heard, timeout=10, interval=0.2)
        assert text, "ubus listen heard nothing"
        event = json.loads(text.splitlines()[0])["remsim-supervisor.path_changed"]
        assert event == {"event": "path_changed", "from": "modem2", "to": "modem1",
                         "reason": "link down",
                         "message": "heartbeat path modem2 -> modem1: link down"}
