"""The systemd unit for generic Linux hosts, as systemd itself reads it.

``systemd-analyze verify`` loads the unit the way the service manager does,
in a root of the test's own (systemd's unit directory copied in, the
package's launcher at /usr/bin and ``kill`` at /bin, which the unit names):
every key known, every value parsed, every command found. Then what the unit
must say: the daemon's notifications (``Type=notify``, a watchdog),
restarts on failure but not for a broken configuration, reload as procd's
reload does it, and the same configuration file as on OpenWrt.
"""

from __future__ import annotations

import configparser
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "files/etc/systemd/system/remsim-supervisor.service"
LAUNCHER = REPO / "files/usr/bin/remsim-supervisor"
INIT_SCRIPT = REPO / "files/etc/init.d/remsim-supervisor"
SYSTEMD_UNITS = Path("/usr/lib/systemd/system")

analyze = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(analyze is None or not SYSTEMD_UNITS.is_dir(),
                                   reason="systemd-analyze (and systemd's units) not installed")


def host_root(tmp_path: Path, unit_text: str, *, launcher: bool = True) -> Path:
    root = tmp_path / "root"
    shutil.copytree(SYSTEMD_UNITS, root / "usr/lib/systemd/system", symlinks=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    (root / "etc/config").mkdir(parents=True)
    (root / "etc/systemd/system/remsim-supervisor.service").write_text(unit_text)
    (root / "bin").mkdir()
    kill = shutil.which("kill")
    assert kill is not None
    shutil.copy(kill, root / "bin/kill")
    if launcher:
        (root / "usr/bin").mkdir(parents=True)
        shutil.copy(LAUNCHER, root / "usr/bin/remsim-supervisor")
        (root / "usr/bin/remsim-supervisor").chmod(0o755)
    return root


def verify(root: Path) -> subprocess.CompletedProcess[str]:
    assert analyze is not None
    return subprocess.run([analyze, f"--root={root}", "verify", "remsim-supervisor.service"],
                          capture_output=True, text=True, timeout=60)


@needs_analyze
def test_systemd_analyze_verifies_the_unit(tmp_path: Path) -> None:
    done = verify(host_root(tmp_path, UNIT.read_text()))
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


@needs_analyze
@pytest.mark.parametrize(("change", "complaint"), [
    (("Type=notify", "Typ=notify"), "Unknown key 'Typ' in section [Service]"),
    (("WatchdogSec=30", "WatchdogSec=thirty"), "Failed to parse sec value"),
    (("Restart=on-failure", "Restart=on-failures"), "Failed to parse service restart"),
])
def test_the_check_catches_a_broken_unit(tmp_path: Path, change: tuple[str, str],
                                         complaint: str) -> None:
    text = UNIT.read_text()
    assert change[0] in text
    done = verify(host_root(tmp_path, text.replace(change[0], change[1])))
    assert complaint in done.stderr


@needs_analyze
def test_the_check_catches_a_missing_command(tmp_path: Path) -> None:
    done = verify(host_root(tmp_path, UNIT.read_text(), launcher=False))
    assert done.returncode != 0
    assert "Command remsim-supervisor is not executable" in done.stderr


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text())
    return parser


def test_the_unit_says_notify_watchdog_restart_reload_and_the_same_file() -> None:
    service = unit()["Service"]
    assert service["Type"] == "notify"
    assert service["NotifyAccess"] == "main"  # a notify script it runs cannot speak for it
    assert int(service["WatchdogSec"]) >= 10
    assert service["Restart"] == "on-failure"
    assert service["RestartPreventExitStatus"] == "2"  # a broken file: restarting cannot help
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"  # as procd_send_signal HUP
    config_file = next(line.split("=", 1)[1] for line in INIT_SCRIPT.read_text().splitlines()
                       if line.startswith("CONFIG_FILE="))
    assert service["ExecStart"] == f"remsim-supervisor run -c {config_file}"
    assert unit()["Unit"]["ConditionPathExists"] == config_file
    assert service["SyslogIdentifier"] == "remsim-supervisor"
    assert unit()["Install"]["WantedBy"] == "multi-user.target"
    # the daemon stops within 5 s (unregistering, removing its routes): room for it
    assert int(service["TimeoutStopSec"]) >= 5


def test_the_launcher_the_unit_runs_is_executable_in_the_tree() -> None:
    assert LAUNCHER.stat().st_mode & stat.S_IXUSR
