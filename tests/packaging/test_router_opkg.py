"""The ipk under OpenWrt's own opkg, in the router sandbox (tests/router.py).

``make ipk``'s package is installed, upgraded and removed by the real opkg,
its control scripts run by the router's own ``default_postinst`` and
``default_prerm`` (base-files' /lib/functions.sh), the service run by the real
procd. The package's OpenWrt dependencies are recorded as installed in opkg's
status file. What the package leaves on the router is read from the overlays'
upper layers: everything the sandbox's /etc and /usr gained or lost.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from remsim_supervisor import __version__
from tests.router import (
    CONFIG_PATH,
    DAEMON_CONFIG,
    SERVICE,
    Router,
    has_rule,
    instance,
    mark_installed,
    router_sandbox,
    running_pid,
    start_daemon,
    wait_for,
)
from tests.stubs.support import CONFIG_FILE, EPOCH, ROOT, build_ipk, build_ipk_module, open_ipk

NEWER = f"{__version__}.1"  # what the upgrade installs: opkg orders it after __version__
TERM_TIMEOUT_S = 10  # the init script's term_timeout


@pytest.fixture(scope="module")
def router() -> Iterator[Router]:
    with router_sandbox() as r:
        mark_installed(r, list(build_ipk_module().read_feed_package().depends))
        yield r


@pytest.fixture(scope="module")
def ipk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_ipk(tmp_path_factory.mktemp("ipk"))


@pytest.fixture(scope="module")
def newer_ipk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same package from a copy of the tree whose __version__ is NEWER."""
    tree = tmp_path_factory.mktemp("tree")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for part in ("scripts", "openwrt", "files", "remsim_supervisor"):
        shutil.copytree(ROOT / part, tree / part, ignore=ignore, symlinks=True)
    init = tree / "remsim_supervisor" / "__init__.py"
    text = init.read_text()
    assert f'__version__ = "{__version__}"' in text
    init.write_text(text.replace(f'__version__ = "{__version__}"', f'__version__ = "{NEWER}"'))
    out = tmp_path_factory.mktemp("newer")
    script = tree / "scripts" / "build_ipk.py"
    result = subprocess.run([sys.executable, str(script), "--out", str(out)],
                            env={**os.environ, "SOURCE_DATE_EPOCH": str(EPOCH)}, check=False,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return Path(result.stdout.strip())


Snapshot = dict[str, object]


def snapshot(router: Router) -> Snapshot:
    """What the sandbox's /etc and /usr hold beyond the host's, and its runtime state."""
    state: Snapshot = {}
    for layer in ("etc", "usr"):
        top = router.workdir / f"{layer}.up"
        for path in sorted(top.rglob("*")):
            rel = f"/{layer}/{path.relative_to(top).as_posix()}"
            if rel == "/usr/lib/opkg/status":
                continue
            st = path.lstat()
            if path.is_dir() and not path.is_symlink() and Path(rel).is_dir():
                continue  # a directory of the host's, copied up by the overlay
            if path.is_symlink():
                state[rel] = ("link", os.readlink(path))
            elif path.is_dir():
                state[rel] = ("dir", st.st_mode & 0o7777)
            elif path.is_file():
                state[rel] = ("file", st.st_mode & 0o7777,
                              hashlib.sha256(path.read_bytes()).hexdigest())
            else:
                state[rel] = ("other", st.st_mode)
    status = router.read("/usr/lib/opkg/status")
    state["opkg packages"] = sorted(re.findall(r"^Package: (\S+)$", status, re.MULTILINE))
    state["ip rule"] = router.sh("ip rule; ip -6 rule").stdout
    state["ip route"] = router.sh("ip route show table all; ip -6 route show table all").stdout
    # (rc.common's procd_lock leaves its lock file for every service it ran;
    # rpcd, told to load and then forget the ubus object's plugin, keeps its
    # login sessions under /run/rpcd as it does on any reload)
    state["/run, /tmp"] = router.sh(
        f"find /run /tmp ! -path '/run/opkg*' ! -path '{router.workdir}*' "
        "! -path '/run/rpcd/*' ! -name 'procd_*.lock' | sort").stdout
    state["procd"] = router.ubus("service", "list", {})
    return state


def diff(before: Snapshot, after: Snapshot) -> dict[str, tuple[object, object]]:
    return {key: (before.get(key), after.get(key)) for key in sorted(set(before) | set(after))
            if before.get(key) != after.get(key)}


def opkg(router: Router, *args: str) -> str:
    result = router.sh("opkg " + " ".join(args), check=False, timeout=120)
    assert result.returncode == 0, f"opkg {' '.join(args)}: {result.stdout}{result.stderr}"
    return result.stdout + result.stderr


FEED_CONF = "/etc/opkg/customfeeds.conf"


def publish_feed(router: Router, package: Path) -> None:
    """A package feed with ``package`` in it (an index of its control fields), in opkg's conf."""
    feed = router.workdir / "feed"
    feed.mkdir(exist_ok=True)
    blob = package.read_bytes()
    (feed / package.name).write_bytes(blob)
    control = open_ipk(package).control_text("control").rstrip("\n")
    (feed / "Packages").write_text(f"{control}\nFilename: {package.name}\nSize: {len(blob)}\n"
                                   f"SHA256sum: {hashlib.sha256(blob).hexdigest()}\n\n")
    router.write(FEED_CONF, f"src remsim file://{feed}\n")


def daemon_version(router: Router) -> str:
    return str(json.loads(router.sh(f"{SERVICE} status --json").stdout)["version"])


def test_install_puts_every_file_where_the_manifest_says_and_runs_postinst(
        router: Router, ipk: Path) -> None:
    before = snapshot(router)
    out = opkg(router, "install", router.share(ipk))
    assert f"Installing {SERVICE} ({__version__}-r1) to root" in out
    assert f"Configuring {SERVICE}." in out
    try:
        entries = build_ipk_module().read_manifest()
        for entry in entries:
            st = router.sh(f"stat -c '%a %u:%g %s' '{entry.dest}'").stdout.split()
            assert st == [f"{entry.mode:o}", "0:0", str(entry.source.stat().st_size)], entry.dest
            assert router.sh(f"sha256sum '{entry.dest}'").stdout.split()[0] == \
                hashlib.sha256(entry.source.read_bytes()).hexdigest(), entry.dest
        listed = router.read(f"/usr/lib/opkg/info/{SERVICE}.list").split()
        assert sorted(listed) == sorted(e.dest for e in entries)
        # the conffile is registered, with the checksum of the shipped file
        assert router.read(f"/usr/lib/opkg/info/{SERVICE}.conffiles").split() == [CONFIG_PATH]
        status = opkg(router, "status", SERVICE)
        shipped = hashlib.sha256(CONFIG_FILE.read_bytes()).hexdigest()
        assert re.search(rf"^ {CONFIG_PATH} {shipped}$", status, re.MULTILINE), status
        assert "Status: install user installed" in status
        # postinst ran: default_postinst enabled and started the service (registered
        # with procd, no instance: the shipped file says enabled '0'), and the
        # package's own part compiled the sources with the router's python3
        links = router.sh("ls /etc/rc.d").stdout.split()
        assert links == [f"K10{SERVICE}", f"S95{SERVICE}"]
        service = router.services(SERVICE)
        assert service and not service.get("instances"), service
        assert router.sh("find /usr/lib/remsim-supervisor -name '*.pyc' | head -1").stdout.strip()
    finally:
        opkg(router, "remove", SERVICE)
    left = diff(before, snapshot(router))
    assert left == {}, f"the package left something behind: {left}"


def test_remove_leaves_nothing_behind(router: Router, ipk: Path) -> None:
    before = snapshot(router)
    opkg(router, "install", router.share(ipk))
    # the service starts, runs (routes and rules of its own) and is stopped by prerm
    pid = start_daemon(router)
    router.write(CONFIG_PATH, CONFIG_FILE.read_text(), 0o600)  # unmodified again
    assert wait_for(lambda: has_rule(router))
    out = opkg(router, "remove", SERVICE)
    assert f"Removing package {SERVICE} from root" in out
    assert "Not deleting" not in out
    assert wait_for(lambda: not router.alive(pid), timeout=TERM_TIMEOUT_S), "the daemon still runs"
    # no file, no directory (opkg records files only: the package removes its own
    # directories), no rc.d link, no procd service, no rule, route or socket
    left = diff(before, snapshot(router))
    assert left == {}, f"the package left something behind: {left}"


def test_upgrade_keeps_the_users_configuration_and_runs_the_new_code(
        router: Router, ipk: Path, newer_ipk: Path) -> None:
    before = snapshot(router)
    opkg(router, "install", router.share(ipk))
    old_pid = start_daemon(router)
    assert daemon_version(router) == __version__
    # the newer version in a package feed, as a router gets it
    publish_feed(router, newer_ipk)
    try:
        opkg(router, "update")
        assert opkg(router, "list-upgradable").split() == \
            [SERVICE, "-", f"{__version__}-r1", "-", f"{NEWER}-r1"]
        out = opkg(router, "upgrade", SERVICE)
    finally:
        router.sh(f"rm -rf {FEED_CONF} /var/run/opkg/lists")
    assert f"Upgrading {SERVICE} on root from {__version__}-r1 to {NEWER}-r1" in out, out
    # the user's edit stays; opkg puts the package's new file beside it
    assert router.read(CONFIG_PATH) == DAEMON_CONFIG
    assert router.read(CONFIG_PATH + "-opkg") == CONFIG_FILE.read_text()
    assert opkg(router, "list-installed", SERVICE).split() == [SERVICE, "-", f"{NEWER}-r1"]
    # postinst restarted the service: a new process, running the new code
    new_pid = wait_for(lambda: (p := running_pid(router)) != old_pid and p, timeout=30)
    assert new_pid and not router.alive(old_pid)
    assert daemon_version(router) == NEWER
    assert router.sh(f"{SERVICE} --version").stdout.split()[-1] == NEWER
    assert instance(router)["command"][0] == f"/usr/bin/{SERVICE}"

    out = opkg(router, "remove", SERVICE)
    # the modified conffile stays, and opkg says so
    assert f"Not deleting modified conffile {CONFIG_PATH}." in out
    assert wait_for(lambda: not router.alive(new_pid), timeout=TERM_TIMEOUT_S)
    left = diff(before, snapshot(router))
    assert set(left) == {CONFIG_PATH, CONFIG_PATH + "-opkg"}, left
    router.sh(f"rm {CONFIG_PATH} {CONFIG_PATH}-opkg")
    left = diff(before, snapshot(router))
    assert left == {}, f"the package left something behind: {left}"
