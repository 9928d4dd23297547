"""The procd init script under OpenWrt's own procd, in the router sandbox.

The package is installed with the real opkg (tests/router.py), so the script
runs as on a router: /etc/rc.common and /lib/functions/procd.sh from
OpenWrt's base-files, procd as the service manager over ubus, the real ``uci``
behind ``config_load``. The tests look at what procd made of it (``ubus call
service list``: the instance, its parameters, the reload trigger) and at the
daemon it runs: respawned when killed, reloaded with the same pid after
``uci commit`` and the event ``reload_config`` sends, kept on its running
state when the new file is broken, stopped within the term timeout.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.router import (
    CONFIG_PATH,
    DAEMON_CONFIG,
    SERVICE,
    Router,
    config_changed,
    has_rule,
    install_package,
    instance,
    log_lines,
    router_sandbox,
    running_pid,
    start_daemon,
    wait_for,
    wait_for_log,
)
from tests.stubs.support import CONFIG_FILE, INIT_SCRIPT, build_ipk, build_ipk_module

INIT = f"/etc/init.d/{SERVICE}"
DAEMON_STOP_BUDGET_S = 5  # `run` stops within 5 s of SIGTERM
RELOAD_TRIGGER = ["config.change",
                  ["if", ["eq", "package", SERVICE], ["run_script", INIT, "reload"]], 1000]


@pytest.fixture(scope="module")
def router(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Router]:
    with router_sandbox() as r:
        install_package(r, build_ipk(tmp_path_factory.mktemp("ipk")))
        yield r


def shipped_config(enabled: str | None) -> str:
    """The packaged configuration with supervisor.enabled set (None: the line removed)."""
    text = CONFIG_FILE.read_text()
    line = "\toption enabled '0'\n"
    assert line in text
    return text.replace(line, "" if enabled is None else f"\toption enabled '{enabled}'\n")


def daemon_config(enabled: str | None = "1") -> str:
    line = "\toption enabled '1'\n"
    assert line in DAEMON_CONFIG
    return DAEMON_CONFIG.replace(line, "" if enabled is None else f"\toption enabled '{enabled}'\n")


def rc(router: Router, action: str) -> None:
    result = router.sh(f"{INIT} {action}", check=False)
    assert result.returncode == 0 and result.stderr == "", result.stderr


def stopped(router: Router) -> None:
    rc(router, "stop")
    assert wait_for(lambda: not router.services(SERVICE)), "the service is still registered"


def uci(router: Router, *commands: str) -> None:
    for command in commands:
        router.sh(f"uci {command}")


# --- what procd is given --------------------------------------------------------------------

def test_start_gives_procd_one_instance_with_its_parameters(router: Router) -> None:
    pid = start_daemon(router)
    service = router.services(SERVICE)
    assert list(service["instances"]) == ["instance1"]
    params = service["instances"]["instance1"]
    assert params["running"] is True and params["pid"] == pid
    assert params["command"] == [f"/usr/bin/{SERVICE}", "run", "-c", CONFIG_PATH]
    assert params["env"] == {"PYTHONUNBUFFERED": "1"}
    assert params["respawn"] == {"threshold": 3600, "timeout": 5, "retry": 5}
    assert params["term_timeout"] == 10
    assert service["triggers"] == [RELOAD_TRIGGER]
    # the process is the packaged launcher under the router's python3
    cmdline = router.read(f"/proc/{pid}/cmdline").split("\0")
    assert cmdline[1:5] == [f"/usr/bin/{SERVICE}", "run", "-c", CONFIG_PATH], cmdline


def test_the_command_is_the_packaged_launcher_so_procd_logs_under_its_name(router: Router) -> None:
    start_daemon(router)
    command = instance(router)["command"]
    # procd's ident for stdout/stderr is basename(argv0): an executable of our name,
    # not `python3 script`
    assert command[0].rsplit("/", 1)[-1] == SERVICE
    installed = {e.dest: e.mode for e in build_ipk_module().read_manifest()}
    assert installed[command[0]] == 0o755
    assert router.sh(f"stat -c %a {command[0]}").stdout.strip() == "755"


def test_what_escapes_the_daemon_on_stderr_reaches_syslog(router: Router) -> None:
    # a broken file: `run` says so on stderr (and exits 2), which only procd's
    # `stderr 1` carries to logd, under the launcher's name
    stopped(router)
    seen = len(log_lines(router))
    router.write(CONFIG_PATH, daemon_config().replace("option role 'iot'", "option role 'spare'"),
                 0o600)
    rc(router, "start")
    try:
        lines = wait_for_log(router, "not started (check with: remsim-supervisor check-config",
                             after=seen)
        assert lines and " daemon.err remsim-supervisor[" in lines[0], lines
        assert wait_for(lambda: instance(router).get("exit_code") == 2)
    finally:
        stopped(router)


def test_respawn_stops_a_crash_loop_and_term_timeout_covers_the_stop(router: Router) -> None:
    start_daemon(router)
    params = instance(router)
    respawn = params["respawn"]
    assert respawn["threshold"] >= 60, "a run shorter than this counts as a crash"
    assert 1 <= respawn["timeout"] <= 30
    assert respawn["retry"] > 0, "0 would respawn a daemon that exits 2 on a bad config forever"
    assert DAEMON_STOP_BUDGET_S < params["term_timeout"] <= 30, \
        "procd must not SIGKILL an orderly stop"


@pytest.mark.parametrize("value", ["0", "no", "off", "false", "disabled"])
def test_enabled_0_starts_no_instance_but_keeps_the_trigger(router: Router, value: str) -> None:
    stopped(router)
    router.write(CONFIG_PATH, shipped_config(value), 0o600)
    rc(router, "start")
    # registered with its trigger, so that setting enabled to 1 and running
    # reload_config (LuCI's apply) starts it
    service = wait_for(lambda: router.services(SERVICE))
    assert service.get("triggers") == [RELOAD_TRIGGER]
    assert not service.get("instances"), service


@pytest.mark.parametrize("value", [None, "1", "yes", "on"])
def test_enabled_absent_or_true_starts(router: Router, value: str | None) -> None:
    stopped(router)
    router.write(CONFIG_PATH, daemon_config(value), 0o600)
    rc(router, "start")
    assert wait_for(lambda: running_pid(router), timeout=30)


def test_enabled_is_read_from_an_anonymous_supervisor_section_too(router: Router) -> None:
    stopped(router)
    text = re.sub(r"^config supervisor 'main'$", "config supervisor", shipped_config("0"),
                  flags=re.MULTILINE)
    router.write(CONFIG_PATH, text, 0o600)
    rc(router, "start")
    service = wait_for(lambda: router.services(SERVICE))
    assert service and not service.get("instances"), service


def test_enable_links_start_late_and_stop_early(router: Router) -> None:
    rc(router, "disable")
    assert router.sh("ls /etc/rc.d").stdout.split() == []
    rc(router, "enable")
    links = router.sh("ls /etc/rc.d").stdout.split()
    assert links == [f"K10{SERVICE}", f"S95{SERVICE}"]
    for link in links:
        assert router.sh(f"readlink /etc/rc.d/{link}").stdout.strip() == f"../init.d/{SERVICE}"
    assert router.sh(f"{INIT} enabled", check=False).returncode == 0


def test_script_is_an_executable_rc_common_script() -> None:
    assert INIT_SCRIPT.read_text().splitlines()[0] == "#!/bin/sh /etc/rc.common"
    assert INIT_SCRIPT.stat().st_mode & 0o777 == 0o755
    assert re.search(r"^USE_PROCD=1$", INIT_SCRIPT.read_text(), re.MULTILINE)


# --- the daemon procd runs ------------------------------------------------------------------

def test_a_killed_daemon_is_respawned(router: Router) -> None:
    pid = start_daemon(router)
    router.sh(f"kill -KILL {pid}")
    # procd waits its respawn timeout (5 s), then starts a new one
    new = wait_for(lambda: (p := running_pid(router)) != pid and p, timeout=30)
    assert new and new != pid
    assert instance(router)["running"] is True


def test_uci_commit_and_reload_config_reload_with_the_same_pid_restarting_nothing(
        router: Router) -> None:
    pid = start_daemon(router)
    assert router.sh(f"uci get {SERVICE}.main.log_level").stdout.strip() == "info"
    seen = len(log_lines(router))
    uci(router, f"set {SERVICE}.main.log_level=debug", f"commit {SERVICE}")
    assert "option log_level 'debug'" in router.read(CONFIG_PATH)
    config_changed(router)
    # procd runs `reload` (after its trigger delay): SIGHUP, not a restart
    lines = wait_for_log(router, "configuration reloaded", pid, after=seen)
    assert lines and lines[-1].endswith("configuration reloaded; restarted: nothing"), lines
    assert running_pid(router) == pid
    # the new level is in effect: a link event is logged at debug now
    router.sh("ip link add rtest0 type veth peer name rtest1 && ip link set rtest1 up "
              "&& ip link set rtest0 up")
    try:
        debug = wait_for_log(router, "link rtest0 up", pid, after=seen)
        assert debug and " daemon.debug " in debug[-1], debug
    finally:
        router.sh("ip link del rtest0")
        uci(router, f"set {SERVICE}.main.log_level=info", f"commit {SERVICE}")


def test_an_edit_inside_one_modem_restarts_that_modem_only(router: Router) -> None:
    pid = start_daemon(router)
    seen = len(log_lines(router))
    uci(router, f"set {SERVICE}.modem2.usb_path=9-7", f"commit {SERVICE}")
    config_changed(router)
    lines = wait_for_log(router, "configuration reloaded", pid, after=seen)
    assert lines and lines[-1].endswith("configuration reloaded; restarted: modem2"), lines
    assert running_pid(router) == pid
    assert wait_for_log(router, "modem2 (iot): absent: no modem at USB path 9-7", pid, after=seen)


def test_a_broken_file_on_reload_keeps_the_running_state(router: Router) -> None:
    pid = start_daemon(router)
    seen = len(log_lines(router))
    router.write(CONFIG_PATH, DAEMON_CONFIG.replace("option role 'iot'", "option role 'iot") +
                 "config modem 'modem3'\n\toption role 'spare'\n", 0o600)
    config_changed(router)
    errors = wait_for_log(router, "reload: ", pid, after=seen)
    assert errors and all(" daemon.err " in line for line in errors), errors
    assert not [line for line in log_lines(router, pid, seen) if "configuration reloaded" in line]
    assert running_pid(router) == pid
    status = router.sh(f"{SERVICE} status").stdout
    assert "modem2" in status and "modem3" not in status
    # fixed and reloaded: applied
    router.write(CONFIG_PATH, DAEMON_CONFIG, 0o600)
    config_changed(router)
    assert wait_for_log(router, "configuration reloaded", pid, after=seen)
    assert running_pid(router) == pid


def test_reload_of_a_stopped_daemon_starts_it(router: Router) -> None:
    stopped(router)
    router.write(CONFIG_PATH, DAEMON_CONFIG, 0o600)
    rc(router, "reload")
    assert wait_for(lambda: running_pid(router), timeout=30)


def test_reload_after_disabling_stops_the_daemon(router: Router) -> None:
    pid = start_daemon(router)
    uci(router, f"set {SERVICE}.main.enabled=0", f"commit {SERVICE}")
    config_changed(router)
    # the service is set again without an instance: procd stops the daemon
    assert wait_for(lambda: not router.alive(pid), timeout=20)
    service = router.services(SERVICE)
    assert service.get("triggers") == [RELOAD_TRIGGER] and not service.get("instances"), service


def test_stop_ends_the_daemon_within_the_term_timeout(router: Router) -> None:
    pid = start_daemon(router)
    assert wait_for(lambda: has_rule(router))
    rc(router, "stop")
    # SIGTERM: the daemon unregisters and removes its rules, well before procd's SIGKILL
    assert wait_for(lambda: not router.alive(pid), timeout=DAEMON_STOP_BUDGET_S)
    assert not router.services(SERVICE)
    assert "lookup 240" not in router.sh("ip rule").stdout
    assert not router.exists("/var/run/remsim-supervisor.sock")
    assert not [line for line in log_lines(router, pid) if "Traceback" in line]


def test_installed_init_script_is_the_repositorys(router: Router) -> None:
    assert router.read(INIT) == INIT_SCRIPT.read_text()
    assert Path(INIT_SCRIPT).read_text().startswith("#!/bin/sh /etc/rc.common")
