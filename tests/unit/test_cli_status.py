"""``status`` without click: the socket it finds, what it prints, and what it
leaves unimported (checked in a fresh interpreter, not timed).

A real Unix socket in ``tmp_path`` plays the daemon: one thread answers one
canned status per connection, in the control socket's wire format.
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from remsim_supervisor.cli import status as cli_status
from remsim_supervisor.config import DEFAULT_PATH, SupervisorConfig
from remsim_supervisor.config.env import CONFIG
from remsim_supervisor.supervisor import control
from tests.paths import REPO

STATUS = {"version": "x", "grace": {"remaining_s": 250.0},
          "modems": [{"name": "modem1", "identity": {"imei": "867698041234567"}}]}


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[str]:
    """A control socket answering ``status`` (anything else: an error)."""
    path = str(tmp_path / "ctl.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(4)
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                request = json.loads(conn.makefile("rb").readline())
                answer: dict[str, Any] = (
                    {"ok": True, "status": STATUS} if request.get("cmd") == "status"
                    else {"ok": False, "error": "no such command"})
                conn.sendall(control.encode(answer))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield path
    finally:
        stop.set()
        thread.join(2)
        server.close()


def config_naming(tmp_path: Path, sock: str, name: str = "c.conf") -> Path:
    path = tmp_path / name
    path.write_text("config supervisor 'main'\n"
                    f"\toption control_socket '{sock}'\n"
                    "config ionmesh 'ionmesh'\n\toption url 'http://127.0.0.1:5000'\n"
                    "config modem 'modem1'\n\toption role 'iot'\n\toption usb_path '1-1'\n")
    return path


def test_its_defaults_are_the_configurations() -> None:
    assert cli_status.DEFAULT_CONFIG == DEFAULT_PATH
    assert SupervisorConfig().control_socket == cli_status.DEFAULT_SOCKET
    assert cli_status.CONFIG_VARIABLE == CONFIG
    assert cli_status.default_config({CONFIG: "/x.conf"}) == "/x.conf"
    assert cli_status.default_config({CONFIG: " "}) == DEFAULT_PATH


@pytest.mark.parametrize("text", [
    "config supervisor 'main'\n\toption control_socket '/run/a.sock'\n",  # valid
    "config supervisor 'main'\n\toption log_level 'info'\n",  # no control_socket
    "config supervisor 'main'\n\toption control_socket 'relative.sock'\n",  # rejected value
    "config supervisor 'a'\n\toption log_level 'x'\nconfig supervisor 'b'\n"
    "\toption control_socket '/run/b.sock'\n",  # two sections: the file is broken
    "config supervisor 'main'\n\toption control_socket '/run/c.sock\n",  # unterminated quote
    "",
])
def test_the_socket_is_the_one_the_checked_configuration_names(tmp_path: Path,
                                                              text: str) -> None:
    path = tmp_path / "c.conf"
    path.write_text(text)
    assert cli_status.socket_path(str(path)) == control.socket_for_config(str(path))


def test_a_missing_file_means_the_default_socket(tmp_path: Path) -> None:
    missing = str(tmp_path / "nothing.conf")
    assert cli_status.socket_path(missing) == cli_status.DEFAULT_SOCKET
    assert control.socket_for_config(missing) == cli_status.DEFAULT_SOCKET


def test_usual_arguments_take_the_fast_lane_and_the_rest_do_not() -> None:
    parse = cli_status.parse_args
    assert parse([]) == (None, False, False)
    assert parse(["--json", "-c", "/f"]) == ("/f", True, False)
    assert parse(["--config=/f", "--show-identifiers"]) == ("/f", False, True)
    assert parse(["-c/f", "--config", "/g"]) == ("/g", False, False)
    for other in (["--help"], ["-h"], ["-c"], ["--jsn"], ["extra"], ["--version"]):
        assert parse(other) is None, other


def test_status_prints_the_daemons_answer_with_identities_masked(tmp_path: Path,
                                                                 daemon: str) -> None:
    config = config_naming(tmp_path, daemon)
    out, err = io.StringIO(), io.StringIO()
    assert cli_status.show(str(config), True, False, out, err) == 0
    shown = json.loads(out.getvalue())
    assert shown["modems"][0]["identity"]["imei"] != "867698041234567"
    assert shown["modems"][0]["identity"]["imei"].endswith("4567")
    out = io.StringIO()
    assert cli_status.show(str(config), True, True, out, err) == 0
    assert json.loads(out.getvalue())["modems"][0]["identity"]["imei"] == "867698041234567"
    assert err.getvalue() == ""


def test_no_daemon_is_one_line_and_exit_3(tmp_path: Path) -> None:
    config = config_naming(tmp_path, str(tmp_path / "none.sock"))
    out, err = io.StringIO(), io.StringIO()
    assert cli_status.show(str(config), False, False, out, err) == 3
    assert err.getvalue().startswith("remsim-supervisor: no daemon answers on")
    assert len(err.getvalue().splitlines()) == 1


PROBE = """
import sys
sys.argv = ["remsim-supervisor", "status", "--json", "-c", sys.argv[1]]
from remsim_supervisor import entry
try:
    entry.main()
except SystemExit as done:
    code = done.code
print(code, " ".join(sorted(sys.modules)), file=sys.stderr)
"""


def test_status_loads_neither_click_nor_asyncio_nor_the_checked_configuration(
        tmp_path: Path, daemon: str) -> None:
    config = config_naming(tmp_path, daemon)
    done = subprocess.run([sys.executable, "-c", PROBE, str(config)], capture_output=True,
                          text=True, timeout=30, cwd=REPO,
                          env={k: v for k, v in os.environ.items() if k != CONFIG})
    assert json.loads(done.stdout)["version"] == "x"
    code, modules = done.stderr.strip().splitlines()[-1].split(" ", 1)
    assert code == "0"
    loaded = set(modules.split())
    assert "remsim_supervisor.cli.status" in loaded  # it did take the fast lane
    for heavy in ("click", "asyncio", "logging", "http.client", "pyroute2",
                  "remsim_supervisor.config.loader", "remsim_supervisor.config.types",
                  "remsim_supervisor.cli.commands"):
        assert heavy not in loaded, heavy
