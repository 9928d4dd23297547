"""The command line as a user meets it: exit codes and one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.paths import DATA

DATA = DATA / "config"


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items()
                if not k.startswith(("MODEM", "IONMESH_", "OPENWRT_"))}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "remsim_supervisor", *args],
                          capture_output=True, text=True, timeout=60, env=full_env)


def test_check_config_names_three_mistakes_with_their_lines() -> None:
    path = DATA / "three-mistakes.conf"
    result = cli("check-config", "-c", str(path))
    assert result.returncode == 2
    lines = result.stdout.splitlines()
    assert len(lines) == 3, lines
    assert lines[0].startswith(f"{path}:4: main.grace_period: ")
    assert lines[1].startswith(f"{path}:10: modem1.role: ")
    assert lines[2].startswith(f"{path}:14: routing.tabel: ")
    assert "table" in lines[2]  # the typo gets a suggestion
    assert "Traceback" not in result.stdout + result.stderr


def test_check_config_accepts_the_example() -> None:
    path = DATA / "example.conf"
    result = cli("check-config", "-c", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == f"{path}: OK"


def test_missing_file_is_one_line() -> None:
    result = cli("check-config", "-c", "/nonexistent/remsim.conf")
    assert result.returncode == 2
    assert len(result.stdout.splitlines()) == 1
    assert "/nonexistent/remsim.conf:0:" in result.stdout


def test_run_refuses_a_bad_file_with_exit_2_and_no_traceback() -> None:
    result = cli("run", "-c", str(DATA / "three-mistakes.conf"))
    assert result.returncode == 2
    assert result.stderr.count("three-mistakes.conf:") >= 3
    assert "not started" in result.stderr
    assert "Traceback" not in result.stderr


def test_status_without_daemon_exits_3(tmp_path: Path) -> None:
    config = tmp_path / "c.conf"
    config.write_text(
        "config supervisor 'main'\n"
        f"\toption control_socket '{tmp_path}/sock'\n"
        "config ionmesh 'ionmesh'\n\toption url 'http://127.0.0.1:5000'\n"
        "config modem 'modem1'\n\toption role 'iot'\n\toption usb_path '1-1'\n"
    )
    result = cli("status", "-c", str(config))
    assert result.returncode == 3
    assert result.stderr.strip().startswith("remsim-supervisor: no daemon answers on")
    assert len(result.stderr.strip().splitlines()) == 1


def test_modem_at_without_daemon_exits_3_and_env_selects_the_config(tmp_path: Path) -> None:
    config = tmp_path / "c.conf"
    config.write_text(
        "config supervisor 'main'\n"
        f"\toption control_socket '{tmp_path}/sock'\n"
        "config ionmesh 'ionmesh'\n\toption url 'http://127.0.0.1:5000'\n"
        "config modem 'modem1'\n\toption role 'iot'\n\toption usb_path '1-1'\n"
    )
    result = cli("modem", "modem1", "at", "AT+CSQ", env={"REMSIM_SUPERVISOR_CONFIG": str(config)})
    assert result.returncode == 3
    assert f"{tmp_path}/sock" in result.stderr


def test_help_lists_the_commands() -> None:
    result = cli("--help")
    assert result.returncode == 0
    for command in ("run", "status", "check-config", "modem"):
        assert command in result.stdout
    assert "hotplug" not in result.stdout  # internal, for the hooks only


def test_hotplug_without_daemon_is_quiet_and_succeeds(tmp_path: Path) -> None:
    config = tmp_path / "c.conf"
    config.write_text(f"config supervisor 'main'\n\toption control_socket '{tmp_path}/sock'\n")
    result = cli("hotplug", "usb", "-c", str(config), env={"ACTION": "add"})
    assert result.returncode == 0
    assert result.stdout == result.stderr == ""


def test_long_log_lines_are_split_for_musl_syslog() -> None:
    from remsim_supervisor.log import MAX_PART, split_for_syslog

    assert split_for_syslog("short") == ["short"]
    line = "é" * 1000  # 2000 bytes of two-byte characters
    parts = split_for_syslog(line)
    assert len(parts) == 3
    assert all(len(p.encode()) <= MAX_PART + len("[1/3] ") for p in parts)
    assert "".join(p.split(" ", 1)[1] for p in parts) == line


def test_mask_identifiers_masks_every_identity_wherever_it_is() -> None:
    from remsim_supervisor.supervisor.statusview import mask_identifiers, render

    status = {
        "modems": [{"name": "modem1", "identity": {"imei": "867698041234567", "IMSI": None,
                                                   "iccid": "89490200001234567890",
                                                   "model": "EC25"}}],
        "heartbeat": {"assignment": {"imsi": "262011234567890", "slot": 3}},
    }
    masked = mask_identifiers(status)
    assert masked["modems"][0]["identity"] == {
        "imei": "***********4567", "IMSI": None, "iccid": "****************7890",
        "model": "EC25"}
    assert masked["heartbeat"]["assignment"] == {"imsi": "***********7890", "slot": 3}
    assert status["modems"][0]["identity"]["imei"] == "867698041234567"  # a copy
    screen = render(masked)
    assert "IMEI ***********4567" in screen and "ICCID ****************7890" in screen
    assert "867698041234567" not in screen


def test_check_config_says_one_mistake_once(tmp_path: Path) -> None:
    text = (DATA / "example.conf").read_text()
    assert "option heartbeat_interval '60'" in text
    path = tmp_path / "one-mistake.conf"
    path.write_text(text.replace("option heartbeat_interval '60'",
                                 "option heartbeat_interval '3'"))
    result = cli("check-config", "-c", str(path))
    assert result.returncode == 2
    lines = result.stdout.splitlines()
    assert len(lines) == 1, lines
    assert "ionmesh.heartbeat_interval: must be between 10 and 3600 seconds, not 3" in lines[0]
