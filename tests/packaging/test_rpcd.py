"""The ubus object ``remsim-supervisor``: the rpcd ucode plugin, in OpenWrt's own rpcd.

The router sandbox (tests/router.py) runs ubusd and rpcd with the plugin
(``files/usr/share/rpcd/ucode/remsim-supervisor.uc``) and the LuCI app's
ACL; the status file is the fixture in ``tests/data``; the command line the
control methods run is a stand-in at ``/usr/bin/remsim-supervisor`` that
records its argv and answers as the real one does (the real one needs a
running daemon and modems). :func:`rpcd_router` is shared with
tests/packaging/test_luci.py.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.paths import DATA, REPO
from tests.router import Router, wait_for

ROOT = REPO
PLUGIN = ROOT / "files" / "usr" / "share" / "rpcd" / "ucode" / "remsim-supervisor.uc"
LUCI_APP = ROOT / "openwrt" / "luci-app-remsim-supervisor"
ACL = LUCI_APP / "root" / "usr" / "share" / "rpcd" / "acl.d" / "luci-app-remsim-supervisor.json"
DATA = DATA
STATUS_IOT = DATA / "status-iot.json"
STATUS_PRIMARY = DATA / "status-primary.json"
STATUS_FILE = "/var/run/remsim-supervisor/status.json"
CLI = "/usr/bin/remsim-supervisor"
CALLS = "/tmp/cli-calls"

# What luci-base grants every LuCI login on a router (the part of its ACL the
# pages use), the unauthenticated login, and the `luci` object LuCI's boot
# asks for features: luci-base's, which is not part of the kit.
LUCI_BASE_ACL = {
    "unauthenticated": {
        "description": "login",
        "read": {"ubus": {"session": ["access", "login"]}},
    },
    "luci-base": {
        "description": "what every LuCI page uses",
        "read": {"ubus": {"luci": ["getFeatures"], "session": ["access"],
                          "uci": ["changes", "get"]}},
        "write": {"ubus": {"uci": ["add", "apply", "confirm", "delete", "order", "rename",
                                   "revert", "rollback", "set"]}},
    },
}
LUCI_STUB = """'use strict';
return { luci: { getFeatures: { call: function() { return {}; } } } };
"""

# The command line, as the plugin runs it: records each argv (one argument a
# line, then a line "--"), and answers as remsim-supervisor does.
# /tmp/cli-sleep (seconds) holds it up first.
CLI_STANDIN = r"""#!/bin/sh
for a in "$@"; do printf '%s\n' "$a"; done >>/tmp/cli-calls
echo -- >>/tmp/cli-calls
[ -s /tmp/cli-sleep ] && sleep "$(cat /tmp/cli-sleep)"
case "$1" in
test-heartbeat)
    via=$3 count=$5
    case "$via" in
    iot) name=modem2 dev=wwan1 ;;
    primary) name=modem1 dev=wwan0 ;;
    *) echo "remsim-supervisor: no modem '$via': use iot, primary or a modem name" \
            "(modem1, modem2)" >&2
        exit 2 ;;
    esac
    printf '{"via": "%s", "device": "%s", "results": [' "$name" "$dev"
    n=1
    while [ "$n" -le "$count" ]; do
        [ "$n" -gt 1 ] && printf ','
        printf '{"n": %d, "via": "%s", "device": "%s", "address": "198.51.100.20", ' \
            "$n" "$name" "$dev"
        printf '"status": 200, "rtt_ms": 181.5, "http_bytes": 421, "bytes_on_wire": 531, '
        printf '"new_connection": false, "acknowledged": true}'
        n=$((n + 1))
    done
    printf ']}\n'
    ;;
modem)
    if [ "$2" = modem1 ]; then
        echo "modem1: $5 done, registered again after 12.4 s"
    else
        echo "remsim-supervisor: $2 did not come back" >&2
        exit 1
    fi
    ;;
esac
"""


def prepare(router: Router, *, www: bool = False) -> None:
    """Lay out rpcd's plugin dir and ACLs (and a web root) before the sandbox starts."""
    rpcd = router.workdir / "rpcd"
    (rpcd / "ucode").mkdir(parents=True)
    (rpcd / "acl.d").mkdir()
    shutil.copy(PLUGIN, rpcd / "ucode" / PLUGIN.name)
    (rpcd / "ucode" / "luci.uc").write_text(LUCI_STUB)
    shutil.copy(ACL, rpcd / "acl.d" / ACL.name)
    (rpcd / "acl.d" / "luci-base.json").write_text(json.dumps(LUCI_BASE_ACL))
    if www:
        (router.workdir / "www").mkdir()


@contextlib.contextmanager
def rpcd_router(*, www: bool = False) -> Iterator[Router]:
    """The sandbox with the plugin loaded, the stand-in CLI, and no status file yet."""
    router = Router()
    try:
        prepare(router, www=www)
        router.start()
        if not wait_for(lambda: router.sh("ubus list remsim-supervisor", check=False)
                        .returncode == 0, timeout=10):
            log = (router.workdir / "log" / "rpcd.log").read_text(errors="replace")
            pytest.fail(f"rpcd did not load the plugin {PLUGIN.name}:\n{log}", pytrace=False)
        router.write(CLI, CLI_STANDIN, 0o755)
        router.sh(f"mkdir -p /var/run/remsim-supervisor && : > {CALLS}")
        yield router
    finally:
        router.close()


def put_status(router: Router, source: Path | str, age_s: float = 0) -> None:
    """Replace the status file atomically, as the daemon does (``age_s``: back-dated)."""
    text = source.read_text() if isinstance(source, Path) else source
    router.sh(f"cat > {STATUS_FILE}.tmp && mv {STATUS_FILE}.tmp {STATUS_FILE}", input=text)
    if age_s:
        router.run(["python3", "-c", "import os,sys,time; t=time.time()-float(sys.argv[2]); "
                    "os.utime(sys.argv[1], (t, t))", STATUS_FILE, str(age_s)])


def ubus(router: Router, method: str, args: dict[str, Any] | None = None,
         ) -> subprocess.CompletedProcess[str]:
    return router.run(["ubus", "call", "remsim-supervisor", method, json.dumps(args or {})])


def call(router: Router, method: str, args: dict[str, Any] | None = None) -> Any:
    result = ubus(router, method, args)
    assert result.returncode == 0, f"ubus call {method} exited {result.returncode}: " \
                                   f"{result.stdout}{result.stderr}"
    return json.loads(result.stdout)


def recorded(router: Router) -> list[list[str]]:
    """Each argv the stand-in CLI was run with."""
    calls: list[list[str]] = [[]]
    for line in router.read(CALLS).splitlines():
        if line == "--":
            calls.append([])
        else:
            calls[-1].append(line)
    return calls[:-1]


def close_to(a: Any, b: Any) -> bool:
    """JSON equality, with floats compared to 6 significant digits (blobmsg's doubles)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(close_to(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(close_to(x, y) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) \
            and abs(a - b) <= 1e-6 * max(1.0, abs(a), abs(b))
    return bool(a == b)


@pytest.fixture(scope="module")
def router() -> Iterator[Router]:
    with rpcd_router() as r:
        yield r


@pytest.fixture
def clean(router: Router) -> Router:
    router.sh(f": > {CALLS}; rm -f /tmp/cli-sleep {STATUS_FILE}")
    return router


# -- status --------------------------------------------------------------------------------------

def test_status_is_the_status_file_as_it_is(clean: Router) -> None:
    put_status(clean, STATUS_IOT)
    answer = call(clean, "status")
    assert close_to(answer, json.loads(STATUS_IOT.read_text()))
    assert [m["name"] for m in answer["modems"]] == ["modem1", "modem2"]
    assert answer["heartbeat"]["server_error"] is None


def test_status_without_a_daemon_says_so(clean: Router) -> None:
    answer = call(clean, "status")
    assert answer["running"] is False
    assert answer["error"] == f"remsim-supervisor is not running (no {STATUS_FILE})"


def test_a_stale_status_file_is_reported_stale_with_the_last_status(clean: Router) -> None:
    put_status(clean, STATUS_IOT, age_s=45)
    answer = call(clean, "status")
    assert answer["running"] is False and answer["stale"] is True
    assert 44 <= answer["age_s"] <= 50
    assert "has stopped updating it" in answer["error"]
    assert answer["last"]["heartbeat"]["path"] == "modem2"


def test_a_garbled_status_file_gets_an_answer_not_an_error(clean: Router) -> None:
    put_status(clean, '{"version": "0.9.0", "modems": [')
    answer = call(clean, "status")
    assert answer == {"running": False,
                      "error": f"{STATUS_FILE} is not a status (unreadable or garbled)"}
    put_status(clean, "[1, 2]")
    assert call(clean, "status")["running"] is False


def test_status_latency(clean: Router) -> None:
    """`ubus call remsim-supervisor status`, 40 times, timed inside the router."""
    put_status(clean, STATUS_IOT)
    script = ("import json,statistics,subprocess,time\n"
              "t=[]\n"
              "for _ in range(40):\n"
              "    s=time.perf_counter()\n"
              "    out=subprocess.run(['ubus','call','remsim-supervisor','status'],"
              "capture_output=True,check=True).stdout\n"
              "    t.append((time.perf_counter()-s)*1000)\n"
              "    assert json.loads(out)['heartbeat']['path']=='modem2'\n"
              "t.sort()\n"
              "print(json.dumps({'median':statistics.median(t),'p95':t[int(len(t)*0.95)-1],"
              "'max':t[-1]}))\n")
    result = clean.run(["python3", "-c", script])
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    print(f"ubus call remsim-supervisor status: median {figures['median']:.1f} ms, "
          f"p95 {figures['p95']:.1f} ms, max {figures['max']:.1f} ms (40 calls)")
    assert figures["median"] <= 50 and figures["p95"] <= 50, figures


# -- test_heartbeat ------------------------------------------------------------------------------

def test_test_heartbeat_runs_the_cli_and_answers_with_its_json(clean: Router) -> None:
    answer = call(clean, "test_heartbeat", {"via": "primary", "count": 2})
    assert recorded(clean) == [["test-heartbeat", "--via", "primary", "--count", "2", "--json"]]
    assert answer["ok"] is True and answer["exit_code"] == 0
    assert answer["result"]["via"] == "modem1"
    assert [r["n"] for r in answer["result"]["results"]] == [1, 2]
    assert all(r["acknowledged"] for r in answer["result"]["results"])


def test_test_heartbeat_defaults_to_one_over_the_iot_modem(clean: Router) -> None:
    answer = call(clean, "test_heartbeat")
    assert recorded(clean) == [["test-heartbeat", "--via", "iot", "--count", "1", "--json"]]
    assert answer["result"]["device"] == "wwan1"


def test_test_heartbeat_failure_carries_the_cli_error_line(clean: Router) -> None:
    answer = call(clean, "test_heartbeat", {"via": "modem7"})
    assert answer == {"ok": False, "exit_code": 2, "error": "no modem 'modem7': use iot, "
                      "primary or a modem name (modem1, modem2)"}


def test_a_running_command_does_not_block_rpcd(clean: Router) -> None:
    clean.sh("echo 2 > /tmp/cli-sleep")
    put_status(clean, STATUS_IOT)
    slow = subprocess.Popen(
        [clean.nsenter, "-t", str(clean.pid), "-m", "-p", "-n", "--", "ubus", "call",
         "remsim-supervisor", "test_heartbeat", '{"via": "iot"}'],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: "test-heartbeat" in clean.read(CALLS), timeout=10)
        started = time.monotonic()
        assert call(clean, "status")["heartbeat"]["path"] == "modem2"
        assert time.monotonic() - started < 1.0  # answered while the command sleeps
        assert slow.poll() is None
        out, err = slow.communicate(timeout=15)
    finally:
        if slow.poll() is None:
            slow.kill()
            slow.wait()
    assert slow.returncode == 0, err
    assert json.loads(out)["ok"] is True


# -- reset ---------------------------------------------------------------------------------------

def test_reset_runs_one_step_with_a_timeout_below_rpcds(clean: Router) -> None:
    answer = call(clean, "reset", {"modem": "modem1", "level": "radio_cycle"})
    assert recorded(clean) == [["modem", "modem1", "reset", "--level", "radio_cycle",
                                "--timeout", "15"]]
    assert answer == {"ok": True, "exit_code": 0, "modem": "modem1", "level": "radio_cycle",
                      "message": "modem1: radio_cycle done, registered again after 12.4 s"}


def test_reset_defaults_to_a_soft_reset_and_reports_failure(clean: Router) -> None:
    answer = call(clean, "reset", {"modem": "modem2"})
    assert recorded(clean) == [["modem", "modem2", "reset", "--level", "soft_reset",
                                "--timeout", "15"]]
    assert answer["ok"] is False and answer["exit_code"] == 1
    assert answer["error"] == "modem2 did not come back"


# -- refusals ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("method", "args"), [
    ("test_heartbeat", {"via": "iot; reboot"}),
    ("test_heartbeat", {"via": "--config=/tmp/x"}),
    ("test_heartbeat", {"via": ""}),
    ("test_heartbeat", {"count": 0}),
    ("test_heartbeat", {"count": 6}),
    ("test_heartbeat", {"count": "3"}),
    ("test_heartbeat", {"via": 5}),
    ("reset", {}),
    ("reset", {"modem": "modem1 $(reboot)"}),
    ("reset", {"modem": "-h"}),
    ("reset", {"modem": "modem1", "level": "nuke"}),
    ("reset", {"modem": "modem1", "level": "soft_reset --timeout 300"}),
])
def test_bad_arguments_are_refused_and_nothing_runs(clean: Router, method: str,
                                                    args: dict[str, Any]) -> None:
    result = ubus(clean, method, args)
    # the ubus CLI exits with -UBUS_STATUS_INVALID_ARGUMENT
    assert result.returncode == 254, result.stdout + result.stderr
    assert "(Invalid argument)" in result.stderr
    assert recorded(clean) == []


def test_the_refusal_says_what_is_wrong(clean: Router) -> None:
    result = ubus(clean, "reset", {"modem": "modem1", "level": "nuke"})
    # ubus prints the reply that came with the error status
    assert "level must be one of ifup, radio_cycle, soft_reset, usb_reauth, gpio_reset, " \
           "power_cycle, not 'nuke'" in result.stdout + result.stderr



def test_a_command_past_the_deadline_is_answered_and_left_to_finish() -> None:
    """rpcd restarted with a 1 s deadline; the command takes 3 s."""
    with rpcd_router() as router:
        router.sh("kill $(pidof rpcd)")
        assert wait_for(lambda: router.sh("ubus list remsim-supervisor", check=False)
                        .returncode != 0, timeout=10)
        rpcd = subprocess.Popen(
            [router.nsenter, "-t", str(router.pid), "-m", "-p", "-n", "--", "env",
             "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "REMSIM_SUPERVISOR_RPC_DEADLINE_MS=1000",
             "rpcd", "-s", "/var/run/ubus/ubus.sock"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            assert wait_for(lambda: router.sh("ubus list remsim-supervisor", check=False)
                            .returncode == 0, timeout=10)
            router.sh("echo 3 > /tmp/cli-sleep")
            started = time.monotonic()
            answer = call(router, "reset", {"modem": "modem1", "level": "ifup"})
            took = time.monotonic() - started
            assert answer == {"ok": False, "running": True, "error": "no answer within 1 s; the "
                              "command goes on, its outcome is in the log "
                              "(logread -e remsim-supervisor)"}
            assert 0.9 <= took < 2.5, took
            assert recorded(router) == [["modem", "modem1", "reset", "--level", "ifup",
                                         "--timeout", "15"]]
            # the command ends later; rpcd stays well and answers the next ones
            assert router.sh("pgrep -f '^sleep 3$'", check=False).returncode == 0
            assert wait_for(lambda: router.sh("pgrep -f '^sleep 3$'", check=False)
                            .returncode != 0, timeout=10)
            router.sh("rm /tmp/cli-sleep")
            assert call(router, "test_heartbeat")["ok"] is True
            assert call(router, "status")["running"] is False
        finally:
            rpcd.kill()
            rpcd.wait(timeout=10)
