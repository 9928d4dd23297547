"""Shared helpers for the OpenWrt packaging tests: paths, host tools, the built ipk.

The host tools (busybox, shellcheck, unshare) come from
``scripts/bootstrap-host.sh``; a test that needs one and does not find it
fails with the command that installs it, rather than skipping.
"""

from __future__ import annotations

import importlib.util
import io
import os
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
FILES = ROOT / "files"
STUBS = Path(__file__).resolve().parent
SDK_STUB = STUBS / "sdk"
FEED_DIR = ROOT / "openwrt" / "remsim-supervisor"
INIT_SCRIPT = FILES / "etc" / "init.d" / "remsim-supervisor"
CONFIG_FILE = FILES / "etc" / "config" / "remsim-supervisor"
LAUNCHER = FILES / "usr" / "bin" / "remsim-supervisor"
EVENT_SCRIPT = FILES / "usr" / "libexec" / "remsim-supervisor" / "remsim-event"
IFACE_HOOK = FILES / "etc" / "hotplug.d" / "iface" / "90-remsim-supervisor"
USB_HOOK = FILES / "etc" / "hotplug.d" / "usb" / "90-remsim-supervisor"

EPOCH = 1700000000  # SOURCE_DATE_EPOCH of the test builds


def host_tool(name: str) -> str:
    """The path of a host tool, or a test failure that says how to install it."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed on this machine: run `sh scripts/bootstrap-host.sh` "
                    f"(as root) or install it with your package manager", pytrace=False)
    return path


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("this test needs root (mount namespaces); run the suite as root",
                    pytrace=False)


def build_ipk_module() -> ModuleType:
    """scripts/build_ipk.py as a module (it is a script, not part of the package)."""
    spec = importlib.util.spec_from_file_location("build_ipk", ROOT / "scripts" / "build_ipk.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("build_ipk", module)
    spec.loader.exec_module(module)
    return module


def build_ipk(out: Path, epoch: int = EPOCH) -> Path:
    """Run ``scripts/build_ipk.py --out OUT`` as ``make ipk`` does; return the package."""
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(epoch)}
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "build_ipk.py"), "--out",
                             str(out)], check=False, capture_output=True, text=True, env=env,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    path = Path(result.stdout.strip())
    assert path.parent == out and path.is_file(), result.stdout
    return path


@dataclass
class Member:
    info: tarfile.TarInfo
    data: bytes | None


def read_tar(blob: bytes) -> dict[str, Member]:
    """A gzip'd tar's members, in archive order, by name."""
    members: dict[str, Member] = {}
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
        for info in tar.getmembers():
            f = tar.extractfile(info) if info.isfile() else None
            members[info.name] = Member(info, f.read() if f else None)
    return members


@dataclass
class Ipk:
    path: Path
    outer: dict[str, Member]
    control: dict[str, Member]
    data: dict[str, Member]

    def control_text(self, name: str) -> str:
        member = self.control[f"./{name}"]
        assert member.data is not None
        return member.data.decode()

    def fields(self) -> dict[str, str]:
        """The control file's fields; continuation lines joined with newlines."""
        fields: dict[str, str] = {}
        key = ""
        for line in self.control_text("control").splitlines():
            if line.startswith(" ") and key:
                fields[key] += "\n" + line[1:]
            else:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        return fields

    def files(self) -> dict[str, Member]:
        """Regular files of data.tar.gz by their path on the router."""
        return {name[1:]: m for name, m in self.data.items() if m.info.isfile()}


def open_ipk(path: Path) -> Ipk:
    outer = read_tar(path.read_bytes())
    control = outer["./control.tar.gz"].data
    data = outer["./data.tar.gz"].data
    assert control is not None and data is not None
    return Ipk(path, outer, read_tar(control), read_tar(data))


def unpack_data(ipk: Ipk, root: Path) -> Path:
    """Unpack data.tar.gz into ``root`` as opkg would, modes included."""
    blob = ipk.outer["./data.tar.gz"].data
    assert blob is not None
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
        if hasattr(tarfile, "fully_trusted_filter"):  # 3.11.4 and later
            tar.extractall(root, filter="fully_trusted")
        else:  # pragma: no cover
            tar.extractall(root)
    return root


def site_packages() -> str:
    """This interpreter's site-packages: the third-party libraries, not our package."""
    import sysconfig

    return sysconfig.get_paths()["purelib"]
