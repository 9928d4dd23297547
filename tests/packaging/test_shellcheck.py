"""shellcheck passes on every shell file: the repository's and the package's scripts.

Shell files are found by their ``#!`` line (sh, ash, dash, bash, and
``/bin/sh /etc/rc.common`` init scripts), outside virtual environments and
build output; the control scripts come out of a freshly built ipk.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.stubs.support import ROOT, build_ipk, host_tool, open_ipk

SKIP_DIRS = {".git", ".venv", "dist", "build", "node_modules", "__pycache__", ".pytest_cache",
             ".mypy_cache", ".ruff_cache", ".hypothesis"}
SHEBANG = re.compile(rb"^#!\s*(/usr/bin/env\s+)?/?(\S*/)?(sh|ash|dash|bash)(\s|$)")

# The files this project must never lose from the check.
EXPECTED = {
    "files/etc/init.d/remsim-supervisor",
    "files/etc/hotplug.d/iface/90-remsim-supervisor",
    "files/etc/hotplug.d/usb/90-remsim-supervisor",
    "files/usr/libexec/remsim-supervisor/remsim-event",
    "scripts/bootstrap-host.sh",
    "scripts/build-openwrt.sh",
    "scripts/run-suites.sh",
    "remsim_lab/router_sandbox.sh",
}


def shell_files() -> list[str]:
    found = []
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        for name in sorted(filenames):
            path = Path(dirpath) / name
            try:
                with path.open("rb") as f:
                    first = f.readline(200)
            except OSError:
                continue
            if SHEBANG.match(first):
                found.append(path.relative_to(ROOT).as_posix())
    return found


SHELL_FILES = shell_files()


def shellcheck(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([host_tool("shellcheck"), "--format=gcc", *map(str, paths)],
                          check=False, capture_output=True, text=True, timeout=120)


def test_every_expected_shell_file_is_checked() -> None:
    assert set(SHELL_FILES) >= EXPECTED, sorted(EXPECTED - set(SHELL_FILES))


@pytest.mark.parametrize("relative", SHELL_FILES)
def test_shellcheck_passes(relative: str) -> None:
    result = shellcheck(ROOT / relative)
    assert result.returncode == 0, result.stdout + result.stderr


def test_shellcheck_passes_on_the_package_control_scripts(tmp_path: Path) -> None:
    ipk = open_ipk(build_ipk(tmp_path / "out"))
    scripts = []
    for name in ("postinst", "prerm", "postinst-pkg", "prerm-pkg"):
        path = tmp_path / name
        path.write_text(ipk.control_text(name))
        scripts.append(path)
    result = shellcheck(*scripts)
    assert result.returncode == 0, result.stdout + result.stderr


def test_shellcheck_does_find_problems(tmp_path: Path) -> None:
    # the check is live: an unquoted variable in a test is reported
    bad = tmp_path / "bad"
    bad.write_text('#!/bin/sh\n[ -n $1 ] && echo "$1"\n')
    result = shellcheck(bad)
    assert result.returncode != 0 and "SC2070" in result.stdout + result.stderr
