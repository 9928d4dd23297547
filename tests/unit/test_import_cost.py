"""What the daemon and its parts leave unimported until they need it.

Each check runs in a fresh interpreter and reads ``sys.modules``: memory on
a router is counted in megabytes, and a module imported once stays. No
timing is asserted (``bench/daemon_rss.py`` measures what each costs).
"""

from __future__ import annotations

import json
import subprocess
import sys

from tests.paths import REPO


def loaded_after(code: str) -> set[str]:
    probe = f"import json, sys\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=60, cwd=REPO, check=True)
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def test_the_daemon_module_leaves_the_heavy_libraries_for_when_they_are_used() -> None:
    loaded = loaded_after("import remsim_supervisor.supervisor.daemon")
    assert "remsim_supervisor.supervisor.daemon" in loaded
    # pyroute2 (and sqlite3 with it) comes with the first routing call, pyserial with
    # the first port, gpiod with the first line; click is the command line's
    for name in ("click", "pyroute2", "sqlite3", "serial", "gpiod", "pyudev", "ctypes",
                 "unittest", "remsim_supervisor.cli.commands"):
        assert name not in loaded, name


def test_no_udev_daemon_means_pyudev_is_not_imported() -> None:
    loaded = loaded_after("from remsim_supervisor.adapters import udevmon\n"
                          "print(udevmon.choose_source('auto', '/nonexistent/udev/control'))")
    assert "remsim_supervisor.adapters.udevmon" in loaded
    assert "pyudev" not in loaded


def test_the_configuration_package_loads_its_parts_when_asked() -> None:
    loaded = loaded_after("from remsim_supervisor.config import uci")
    assert "remsim_supervisor.config.uci" in loaded
    for part in ("types", "loader", "convert", "env", "options"):
        assert f"remsim_supervisor.config.{part}" not in loaded, part
    loaded = loaded_after("from remsim_supervisor.config import load, Config")
    assert {"remsim_supervisor.config.loader", "remsim_supervisor.config.types"} <= loaded
