"""The procd init script, run for real under busybox ash.

OpenWrt's /etc/rc.common, /lib/functions.sh and /lib/functions/procd.sh are
stood in by tests/stubs/openwrt (same semantics, but procd_* calls are
recorded instead of sent to procd over ubus), the configuration is a UCI file
in a temporary directory, and every test looks at what the script asked procd
for: the instance (command, respawn, env, stdout/stderr, term_timeout), the
reload trigger, and what reload, stop and enable do.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.stubs.support import (
    CONFIG_FILE,
    INIT_SCRIPT,
    OPENWRT_STUB_ROOT,
    build_ipk_module,
    host_tool,
)

NAME = "remsim-supervisor"
DAEMON_STOP_BUDGET_S = 5  # `run` stops within 5 s of SIGTERM

Call = list[str]


class Init:
    """Runs the init script against a private copy of the stand-in OpenWrt root."""

    def __init__(self, tmp_path: Path) -> None:
        self.busybox = host_tool("busybox")
        self.root = tmp_path / "root"
        shutil.copytree(OPENWRT_STUB_ROOT, self.root)
        self.config_dir = tmp_path / "config"
        self.config_dir.mkdir()
        self.log = tmp_path / "procd.log"

    def configure(self, text: str | None) -> None:
        path = self.config_dir / NAME
        if text is None:
            path.unlink(missing_ok=True)
        else:
            path.write_text(text)

    def run(self, action: str, running: bool = False) -> list[Call]:
        self.log.write_text("")
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "IPKG_INSTROOT": str(self.root),
               "UCI_CONFIG_DIR": str(self.config_dir), "PROCD_LOG": str(self.log),
               "PROCD_STUB_RUNNING": "1" if running else "0"}
        result = subprocess.run([self.busybox, "ash", str(self.root / "etc" / "rc.common"),
                                 str(INIT_SCRIPT), action],
                                env=env, check=False, capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
        assert result.stderr == "", result.stderr
        calls = [line.split("\x1f") for line in self.log.read_text().splitlines()]
        assert not [c for c in calls if c[0] == "procd_error"], calls
        return calls


def shipped_config(enabled: str | None) -> str:
    """The packaged configuration with supervisor.enabled set (None: the line removed)."""
    text = CONFIG_FILE.read_text()
    line = "\toption enabled '0'\n"
    assert line in text
    return text.replace(line, "" if enabled is None else f"\toption enabled '{enabled}'\n")


@pytest.fixture
def init(tmp_path: Path) -> Init:
    return Init(tmp_path)


def instance(calls: list[Call]) -> dict[str, list[str]]:
    """The one instance's parameters, by type."""
    opens = [i for i, c in enumerate(calls) if c[0] == "procd_open_instance"]
    assert len(opens) == 1, calls
    closes = [i for i, c in enumerate(calls) if c[0] == "procd_close_instance"]
    assert len(closes) == 1 and closes[0] > opens[0], calls
    params: dict[str, list[str]] = {}
    for call in calls[opens[0] + 1:closes[0]]:
        assert call[0] == "procd_set_param", call
        assert call[1] not in params, f"{call[1]} set twice"
        params[call[1]] = call[2:]
    return params


def test_start_opens_the_service_with_one_instance(init: Init) -> None:
    init.configure(shipped_config("1"))
    calls = init.run("start")
    assert calls[0] == ["procd_open_service", NAME, str(INIT_SCRIPT)]
    assert calls[-1] == ["procd_close_service"]
    params = instance(calls)
    assert params["command"] == ["/usr/bin/remsim-supervisor", "run", "-c",
                                 "/etc/config/remsim-supervisor"]
    assert params["env"] == ["PYTHONUNBUFFERED=1"]
    assert params["stdout"] == ["1"] and params["stderr"] == ["1"]
    assert set(params) == {"command", "env", "respawn", "term_timeout", "stdout", "stderr"}


def test_the_command_is_the_packaged_launcher_so_procd_logs_under_its_name(init: Init) -> None:
    init.configure(shipped_config("1"))
    command = instance(init.run("start"))["command"]
    # procd's ident for stdout/stderr is basename(argv0): an executable of our name,
    # not `python3 script`.
    assert os.path.basename(command[0]) == NAME
    installed = {e.dest: e.mode for e in build_ipk_module().read_manifest()}
    assert installed[command[0]] == 0o755


def test_respawn_stops_a_crash_loop_and_term_timeout_covers_the_stop(init: Init) -> None:
    init.configure(shipped_config("1"))
    params = instance(init.run("start"))
    threshold, timeout, retry = (int(v) for v in params["respawn"])
    assert threshold >= 60, "a run shorter than this counts as a crash"
    assert 1 <= timeout <= 30
    assert retry > 0, "0 would respawn a daemon that exits 2 on a bad config forever"
    (term_timeout,) = (int(v) for v in params["term_timeout"])
    assert term_timeout > DAEMON_STOP_BUDGET_S, "procd must not SIGKILL an orderly stop"
    assert term_timeout <= 30


def test_reload_trigger_on_the_configuration(init: Init) -> None:
    init.configure(shipped_config("1"))
    calls = init.run("start")
    triggers = [c for c in calls if c[0].startswith("procd_add_")]
    assert triggers == [["procd_add_reload_trigger", NAME]]
    # procd reads the triggers when the service is closed, after the instance
    assert calls.index(triggers[0]) > calls.index(["procd_close_instance"])


@pytest.mark.parametrize("value", ["0", "no", "off", "false", "disabled"])
def test_enabled_0_starts_no_instance_but_keeps_the_trigger(init: Init, value: str) -> None:
    init.configure(shipped_config(value))
    calls = init.run("start")
    assert not [c for c in calls if c[0] in ("procd_open_instance", "procd_set_param")], calls
    # The service is still registered with its trigger, so that setting enabled to 1
    # and running reload_config (LuCI's apply) starts it.
    assert calls == [["procd_open_service", NAME, str(INIT_SCRIPT)],
                     ["procd_add_reload_trigger", NAME], ["procd_close_service"]]


@pytest.mark.parametrize("value", [None, "1", "yes", "on"])
def test_enabled_absent_or_true_starts(init: Init, value: str | None) -> None:
    init.configure(shipped_config(value))
    assert instance(init.run("start"))["command"][0] == "/usr/bin/remsim-supervisor"


def test_enabled_is_read_from_an_anonymous_supervisor_section_too(init: Init) -> None:
    text = re.sub(r"^config supervisor 'main'$", "config supervisor", shipped_config("0"),
                  flags=re.MULTILINE)
    init.configure(text)
    assert not [c for c in init.run("start") if c[0] == "procd_open_instance"]


def test_reload_of_a_running_daemon_is_sighup_not_a_restart(init: Init) -> None:
    init.configure(shipped_config("1"))
    calls = init.run("reload", running=True)
    assert calls == [["procd_running", NAME], ["procd_send_signal", NAME, "*", "HUP"]]


def test_reload_of_a_stopped_daemon_starts_it(init: Init) -> None:
    init.configure(shipped_config("1"))
    calls = init.run("reload", running=False)
    assert ["procd_send_signal", NAME, "*", "HUP"] not in calls
    assert instance(calls)["command"][1] == "run"


def test_reload_after_disabling_drops_the_instance(init: Init) -> None:
    init.configure(shipped_config("0"))
    calls = init.run("reload", running=True)
    # a service set again without instances: procd stops the running one
    assert calls == [["procd_open_service", NAME, str(INIT_SCRIPT)],
                     ["procd_add_reload_trigger", NAME], ["procd_close_service"]]


def test_stop_kills_the_service(init: Init) -> None:
    init.configure(shipped_config("1"))
    # rc.common passes the instance argument on; empty means every instance
    assert init.run("stop") == [["procd_kill", NAME, ""]]


def test_enable_links_start_late_and_stop_early(init: Init) -> None:
    init.configure(shipped_config("1"))
    init.run("enable")
    links = sorted(p.name for p in (init.root / "etc" / "rc.d").iterdir())
    assert links == [f"K10{NAME}", f"S95{NAME}"]
    for link in links:
        assert os.readlink(init.root / "etc" / "rc.d" / link) == f"../init.d/{NAME}"


def test_script_is_an_executable_rc_common_script() -> None:
    assert INIT_SCRIPT.read_text().splitlines()[0] == "#!/bin/sh /etc/rc.common"
    assert INIT_SCRIPT.stat().st_mode & 0o777 == 0o755
    assert re.search(r"^USE_PROCD=1$", INIT_SCRIPT.read_text(), re.MULTILINE)
