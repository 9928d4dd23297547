"""The .ipk as opkg sees it, and the feed Makefile that builds the same package.

``make ipk`` (scripts/build_ipk.py) is opened here with tarfile like opkg
opens it: the outer gzip'd tar, ``control.tar.gz`` (every control field,
conffiles, the scripts) and ``data.tar.gz`` (the layout, modes, owners, fixed
mtimes). The data unpacked into a scratch root runs ``remsim-supervisor
--help`` from the package's own files. The feed Makefile is evaluated by
``make`` against a stand-in SDK (tests/stubs/sdk) and must install exactly
what the ipk holds. ``Depends`` is checked against what the shipped code
imports.
"""

from __future__ import annotations

import ast
import configparser
import json
import os
import pickle
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from remsim_supervisor import __version__
from tests.stubs.support import (
    CONFIG_FILE,
    EPOCH,
    FEED_DIR,
    FILES,
    ROOT,
    SDK_STUB,
    Ipk,
    build_ipk,
    build_ipk_module,
    host_tool,
    open_ipk,
    require_root,
    site_packages,
    unpack_data,
)

PKG = "remsim-supervisor"
LIB = "/usr/lib/remsim-supervisor/remsim_supervisor"

# Everything but the Python package itself, with the mode opkg must give it.
FIXED_FILES = {
    "/usr/bin/remsim-supervisor": 0o755,
    "/etc/init.d/remsim-supervisor": 0o755,
    "/etc/config/remsim-supervisor": 0o600,
    "/etc/hotplug.d/iface/90-remsim-supervisor": 0o644,
    "/etc/hotplug.d/usb/90-remsim-supervisor": 0o644,
    "/usr/libexec/remsim-supervisor/remsim-event": 0o755,
    "/usr/share/rpcd/ucode/remsim-supervisor.uc": 0o644,
}

# The parts of the standard library that OpenWrt splits out of python3-light
# (lang/python/python3/files/python3-package-*.mk in openwrt/packages), by the
# top-level module that needs them. http.client parses headers with email.
STDLIB_SPLIT = {
    "asyncio": "python3-asyncio", "cgi": "python3-cgi", "cgitb": "python3-cgi",
    "ctypes": "python3-ctypes", "curses": "python3-ncurses", "dbm": "python3-dbm",
    "decimal": "python3-decimal", "distutils": "python3-distutils", "email": "python3-email",
    "http": "python3-email", "lib2to3": "python3-lib2to3", "logging": "python3-logging",
    "lzma": "python3-lzma", "multiprocessing": "python3-multiprocessing",
    "pydoc": "python3-pydoc", "readline": "python3-readline", "sqlite3": "python3-sqlite3",
    "ssl": "python3-openssl", "unittest": "python3-unittest", "urllib": "python3-urllib",
    "uuid": "python3-uuid", "venv": "python3-venv", "webbrowser": "python3-webbrowser",
    "xml": "python3-xml", "xmlrpc": "python3-xml",
}
# setup.cfg's requirements: PyPI name -> (import name, OpenWrt package or None).
THIRD_PARTY = {
    "pyserial": ("serial", "python3-pyserial"),
    "pyroute2": ("pyroute2", "python3-pyroute2"),
    "gpiod": ("gpiod", "python3-gpiod"),  # built by libs/libgpiod/Makefile
    "requests": ("requests", "python3-requests"),
    "click": ("click", "python3-click"),
    "pyudev": ("pyudev", None),  # optional (extras: udev); OpenWrt has none before snapshot
}
# Needed although no shipped module imports it by name.
IMPLIED = {
    "python3-light": "the interpreter and the unsplit standard library (json, socket, syslog...)",
    # Not a Python import: conntrack.py speaks the kernel's ctnetlink, which
    # OpenWrt builds as a module of its own.
    "kmod-nf-conntrack-netlink": "conntrack.py deletes the pinned hosts' entries over ctnetlink",
}


@pytest.fixture(scope="module")
def ipk(tmp_path_factory: pytest.TempPathFactory) -> Ipk:
    return open_ipk(build_ipk(tmp_path_factory.mktemp("ipk")))


@pytest.fixture(scope="module")
def scratch(ipk: Ipk, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return unpack_data(ipk, tmp_path_factory.mktemp("root"))


def shipped_modules(ipk: Ipk) -> dict[str, bytes]:
    return {path: m.data or b"" for path, m in ipk.files().items()
            if path.startswith(LIB + "/") and path.endswith(".py")}


def repo_modules() -> set[str]:
    """The package's modules in the repository that the router gets (lab/ stays home)."""
    package = ROOT / "remsim_supervisor"
    return {f"{LIB}/{p.relative_to(package).as_posix()}" for p in package.rglob("*.py")
            if "__pycache__" not in p.parts and p.relative_to(package).parts[0] != "lab"}


# --- the container --------------------------------------------------------------------------

def test_outer_archive_is_a_gzipped_tar_of_three_members(ipk: Ipk) -> None:
    assert ipk.path.name == f"{PKG}_{__version__}-r1_all.ipk"
    assert ipk.path.read_bytes()[:2] == b"\x1f\x8b"  # gzip, not an ar archive like a .deb
    assert list(ipk.outer) == ["./debian-binary", "./data.tar.gz", "./control.tar.gz"]
    assert ipk.outer["./debian-binary"].data == b"2.0\n"
    for member in ipk.outer.values():
        assert member.info.isfile() and member.info.mode == 0o644
        assert (member.info.uid, member.info.gid, member.info.mtime) == (0, 0, EPOCH)
    for name in ("./data.tar.gz", "./control.tar.gz"):
        blob = ipk.outer[name].data
        assert blob is not None and blob[:2] == b"\x1f\x8b"


def test_every_control_field(ipk: Ipk) -> None:
    fields = ipk.fields()
    data_bytes = sum(len(m.data or b"") for m in ipk.files().values())
    assert fields["Package"] == PKG
    assert fields["Version"] == f"{__version__}-r1"
    assert fields["Depends"] == ", ".join(feed_depends())
    assert fields["Source"] == "openwrt/remsim-supervisor"
    assert fields["SourceName"] == PKG
    assert fields["License"] == "GPL-2.0-or-later"
    assert fields["Section"] == "net"
    assert fields["Architecture"] == "all"
    assert fields["Installed-Size"] == str(data_bytes)
    assert fields["SourceDateEpoch"] == str(EPOCH)
    summary, *more = fields["Description"].splitlines()
    assert summary and more, "a summary line and continuation lines"
    order = list(fields)
    assert order[0] == "Package" and order[-1] == "Description"
    assert set(fields) == {"Package", "Version", "Depends", "Source", "SourceName", "License",
                           "Section", "SourceDateEpoch", "Architecture", "Installed-Size",
                           "Description"}


def test_control_archive_holds_conffiles_and_the_scripts(ipk: Ipk) -> None:
    names = {name for name, m in ipk.control.items() if m.info.isfile()}
    assert names == {"./control", "./conffiles", "./postinst", "./prerm", "./postinst-pkg",
                     "./prerm-pkg", "./postrm"}
    modes = {name: ipk.control[name].info.mode for name in names}
    assert modes == {"./control": 0o644, "./conffiles": 0o644, "./postinst": 0o755,
                     "./prerm": 0o755, "./postinst-pkg": 0o755, "./prerm-pkg": 0o755,
                     "./postrm": 0o755}
    assert ipk.control_text("conffiles") == "/etc/config/remsim-supervisor\n"
    # As an SDK lays them out: the router's default_postinst enables and starts every
    # init script the package ships, default_prerm stops it; both run the *-pkg scripts.
    assert ipk.control_text("postinst").splitlines()[-1] == 'default_postinst "$0" "$@"'
    assert ipk.control_text("prerm").splitlines()[-1] == 'default_prerm "$0" "$@"'
    assert "IPKG_NO_SCRIPT" in ipk.control_text("postinst")
    for member in ipk.control.values():
        assert (member.info.uid, member.info.gid, member.info.mtime) == (0, 0, EPOCH)


# --- the files ------------------------------------------------------------------------------

def test_data_layout_modes_and_owners(ipk: Ipk) -> None:
    files = ipk.files()
    shipped_py = {p for p in files if p.startswith(LIB + "/")}
    assert {p: files[p].info.mode for p in FIXED_FILES} == FIXED_FILES
    assert set(files) == set(FIXED_FILES) | shipped_py
    assert shipped_py == repo_modules(), "every module of the package, sources only"
    assert all(files[p].info.mode == 0o644 for p in shipped_py)
    assert not [p for p in ipk.data if "__pycache__" in p or p.endswith((".pyc", ".pyo"))]
    assert not [p for p in ipk.data if "/remsim_supervisor/lab" in p], "the lab stays home"
    dirs = {name for name, m in ipk.data.items() if m.info.isdir()}
    assert {m.info.mode for name, m in ipk.data.items() if name in dirs} == {0o755}
    for path in files:  # every parent directory is in the archive, before its contents
        parent = "." + os.path.dirname(path)
        assert parent in dirs and list(ipk.data).index(parent) < list(ipk.data).index("." + path)
    for member in ipk.data.values():
        assert member.info.name.startswith("./")
        assert (member.info.uid, member.info.gid, member.info.uname, member.info.gname) == \
            (0, 0, "root", "root")
        assert member.info.mtime == EPOCH
    names = list(ipk.data)
    assert names == sorted(names, key=lambda n: n.rstrip("/").split("/"))


def test_data_is_the_repository_files(ipk: Ipk) -> None:
    files = ipk.files()
    for dest in FIXED_FILES:
        assert files[dest].data == (FILES / dest.lstrip("/")).read_bytes(), dest
    for dest in repo_modules():
        source = ROOT / "remsim_supervisor" / dest[len(LIB) + 1:]
        assert files[dest].data == source.read_bytes(), dest
    launcher = files["/usr/bin/remsim-supervisor"].data
    assert launcher is not None and launcher.startswith(b"#!/usr/bin/python3\n")


def test_build_is_reproducible(tmp_path: Path) -> None:
    first = build_ipk(tmp_path / "a").read_bytes()
    second = build_ipk(tmp_path / "b").read_bytes()
    later = build_ipk(tmp_path / "c", epoch=EPOCH + 86400).read_bytes()
    assert first == second
    assert first != later  # the mtimes are the only input that changed


def test_help_runs_from_the_package_files(scratch: Path, tmp_path: Path) -> None:
    # -S: no site processing, so the editable install of the repository is out of
    # reach; PYTHONPATH gives only the third-party libraries (python3-* on a router).
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": site_packages(), "PYTHONDONTWRITEBYTECODE": "1"}
    launcher = scratch / "usr" / "bin" / "remsim-supervisor"
    alias = tmp_path / "elsewhere" / "remsim-supervisor"
    alias.parent.mkdir()
    alias.symlink_to(launcher)  # found through its real location, not the link's
    for program in (launcher, alias):
        result = subprocess.run([sys.executable, "-S", str(program), "--help"], env=env,
                                cwd=tmp_path, check=False, capture_output=True, text=True,
                                timeout=60)
        assert result.returncode == 0, result.stderr
        for command in ("run", "status", "check-config"):
            assert re.search(rf"^\s+{command}\s", result.stdout, re.MULTILINE), result.stdout
    probe = subprocess.run([sys.executable, "-S", "-c", "import remsim_supervisor"], env=env,
                           cwd=tmp_path, check=False, capture_output=True, text=True, timeout=60)
    assert probe.returncode != 0, "the package must come from the scratch root only"
    where = subprocess.run(
        [sys.executable, "-S", "-c",
         ("import runpy, sys; sys.argv = ['remsim-supervisor', '--version'];"
          f"runpy.run_path({str(launcher)!r}, run_name='not-main');"
          "import remsim_supervisor; print(remsim_supervisor.__file__)")],
        env=env, cwd=tmp_path, check=False, capture_output=True, text=True, timeout=60)
    assert where.stdout.strip() == str(scratch / LIB.lstrip("/") / "__init__.py"), where.stderr


def test_shipped_configuration_passes_check_config(scratch: Path, tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": site_packages(), "PYTHONDONTWRITEBYTECODE": "1"}
    launcher = str(scratch / "usr" / "bin" / "remsim-supervisor")
    shipped = scratch / "etc" / "config" / "remsim-supervisor"
    # Every option is in the file, commented out with its default: uncommented, all
    # of them must still be accepted.
    uncommented = tmp_path / "all-options"
    uncommented.write_text(re.sub(r"^(\s*)#(option|list) ", r"\1\2 ", shipped.read_text(),
                                  flags=re.MULTILINE))
    for path in (shipped, uncommented):
        result = subprocess.run([sys.executable, "-S", launcher, "check-config", "-c", str(path)],
                                env=env, check=False, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr
    from remsim_supervisor import config

    text = uncommented.read_text()
    for section, options in config.SECTIONS.items():
        assert re.search(rf"^config {section}\b", text, re.MULTILINE), section
        for option in options:
            assert re.search(rf"^\s*(option|list) {option} ", text, re.MULTILINE), (
                f"{section}.{option}")
    assert "option enabled '0'" in CONFIG_FILE.read_text(), "ships disabled until configured"


# --- the control scripts on a router --------------------------------------------------------

def test_postinst_and_prerm_hand_over_to_the_routers_defaults(ipk: Ipk, tmp_path: Path) -> None:
    busybox = host_tool("busybox")
    root = tmp_path / "root"
    (root / "lib").mkdir(parents=True)
    log = tmp_path / "calls"
    (root / "lib" / "functions.sh").write_text(
        f'default_postinst() {{ echo "postinst $*" >> {log}; }}\n'
        f'default_prerm() {{ echo "prerm $*" >> {log}; }}\n')
    info = tmp_path / "info"
    info.mkdir()
    for name in ("postinst", "prerm"):
        script = info / f"{PKG}.{name}"  # where opkg keeps them: /usr/lib/opkg/info
        script.write_text(ipk.control_text(name))
        script.chmod(0o755)
        env = {"PATH": "/usr/bin:/bin", "IPKG_INSTROOT": str(root)}
        subprocess.run([busybox, "ash", str(script), "configure"], env=env, check=True)
    # opkg's --noscripts-like switch, honoured by postinst as the SDK's is
    subprocess.run([busybox, "ash", str(info / f"{PKG}.postinst"), "configure"],
                   env={**env, "IPKG_NO_SCRIPT": "1"}, check=True)
    assert log.read_text().splitlines() == [f"postinst {info}/{PKG}.postinst configure",
                                            f"prerm {info}/{PKG}.prerm configure"]
    # no functions.sh (not OpenWrt): nothing to do, and no failure
    (root / "lib" / "functions.sh").unlink()
    for name in ("postinst", "prerm"):
        subprocess.run([busybox, "ash", str(info / f"{PKG}.{name}")], env=env, check=True)


def test_postinst_compiles_and_prerm_removes_the_byte_code(ipk: Ipk, tmp_path: Path) -> None:
    busybox = host_tool("busybox")
    root = unpack_data(ipk, tmp_path / "root")
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    for name in ("postinst-pkg", "prerm-pkg"):
        (scripts / name).write_text(ipk.control_text(name))
    lib = root / "usr" / "lib" / "remsim-supervisor"
    # Building an image (IPKG_INSTROOT set) runs no target python.
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "python3").write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/python3.log\n')
    (fake / "python3").chmod(0o755)
    env = {"PATH": f"{fake}:/usr/bin:/bin", "IPKG_INSTROOT": str(root)}
    subprocess.run([busybox, "ash", str(scripts / "postinst-pkg")], env=env, check=True)
    assert not (tmp_path / "python3.log").exists()
    # On the router: the router's python3 compiles the sources where they are.
    env = {"PATH": f"{fake}:/usr/bin:/bin"}
    subprocess.run([busybox, "ash", str(scripts / "postinst-pkg")], env=env, check=True)
    assert (tmp_path / "python3.log").read_text() == \
        "-m compileall -q -f /usr/lib/remsim-supervisor\n"
    # That command compiles every shipped module (this machine's python3 standing in).
    subprocess.run([sys.executable, "-m", "compileall", "-q", "-f", str(lib)], check=True,
                   timeout=120)
    assert list(lib.rglob("__pycache__/*.pyc"))
    # prerm takes all of it away again.
    subprocess.run([busybox, "ash", str(scripts / "prerm-pkg")],
                   env={"PATH": "/usr/bin:/bin", "IPKG_INSTROOT": str(root)}, check=True)
    assert not list(lib.rglob("__pycache__"))
    assert (lib / "remsim_supervisor" / "cli" / "__init__.py").is_file()


def own_directories() -> list[str]:
    """The package's own directories: the topmost ones of the manifest named after it."""
    tops = set()
    for entry in build_ipk_module().read_manifest():
        parts = entry.dest.strip("/").split("/")[:-1]
        for i, part in enumerate(parts):
            if part == PKG:
                tops.add("/" + "/".join(parts[:i + 1]))
                break
    return sorted(tops)


def test_postrm_removes_the_packages_own_directories_when_empty(ipk: Ipk, tmp_path: Path) -> None:
    busybox = host_tool("busybox")
    assert own_directories() == ["/usr/lib/remsim-supervisor", "/usr/libexec/remsim-supervisor"]
    script = ipk.control_text("postrm")
    loop = re.search(r"^for remsim_dir in (.*); do$", script, re.MULTILINE)
    assert loop and loop[1].split() == own_directories()
    root = tmp_path / "root"
    (root / "etc" / "hotplug.d" / "usb").mkdir(parents=True)  # the system's: stays
    for own in own_directories():
        (root / own.lstrip("/") / "a" / "b").mkdir(parents=True)  # what opkg leaves
    kept = root / "usr" / "lib" / "remsim-supervisor" / "mine"
    kept.mkdir()
    (kept / "notes").write_text("the user's\n")
    (tmp_path / "postrm").write_text(script)
    env = {"PATH": "/usr/bin:/bin", "IPKG_INSTROOT": str(root)}
    subprocess.run([busybox, "ash", str(tmp_path / "postrm"), "remove"], env=env, check=True)
    left = sorted("/" + p.relative_to(root).as_posix() for p in root.rglob("*"))
    assert left == ["/etc", "/etc/hotplug.d", "/etc/hotplug.d/usb", "/usr", "/usr/lib",
                    "/usr/lib/remsim-supervisor", "/usr/lib/remsim-supervisor/mine",
                    "/usr/lib/remsim-supervisor/mine/notes", "/usr/libexec"]
    # nothing there at all (removed before, or never installed): no error either
    subprocess.run([busybox, "ash", str(tmp_path / "postrm"), "remove"],
                   env={**env, "IPKG_INSTROOT": str(tmp_path / "empty")}, check=True)


def test_postinst_restarts_the_service_after_an_upgrade_only(ipk: Ipk, tmp_path: Path) -> None:
    busybox = host_tool("busybox")
    host_tool("unshare")
    require_root()
    script = tmp_path / "postinst-pkg"
    script.write_text(ipk.control_text("postinst-pkg"))
    log = tmp_path / "init.log"
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "python3").write_text("#!/bin/sh\nexit 0\n")
    (fake / "python3").chmod(0o755)
    # /etc/init.d/remsim-supervisor is a recorder, in a private mount namespace.
    shell = (f'mkdir -p /etc/init.d && mount -t tmpfs remsim-test /etc/init.d && '
             f'printf "#!/bin/sh\\necho \\"\\$@\\" >> {log}\\n" > /etc/init.d/remsim-supervisor && '
             f'chmod 755 /etc/init.d/remsim-supervisor && exec {busybox} ash {script}')
    for upgrade in ("", "1"):
        env = {"PATH": f"{fake}:/usr/bin:/bin", "PKG_UPGRADE": upgrade}
        result = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                                 shell], env=env, check=False, capture_output=True, text=True,
                                timeout=60)
        assert result.returncode == 0, result.stderr
    assert log.read_text() == "restart\n"


# --- the feed Makefile ------------------------------------------------------------------------

def feed_depends() -> list[str]:
    return list(build_ipk_module().read_feed_package().depends)


@pytest.fixture(scope="module")
def sdk_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    make = host_tool("make")
    out = tmp_path_factory.mktemp("sdk")
    result = subprocess.run(
        [make, "-s", "-C", str(FEED_DIR), f"TOPDIR={SDK_STUB}", f"BUILD_DIR={out / 'build'}",
         f"STAGE={out / 'stage'}", f"DUMP={out / 'dump'}", "install"],
        check=False, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def test_feed_makefile_defines_the_package(sdk_build: Path) -> None:
    text = (FEED_DIR / "Makefile").read_text()
    assert re.search(r"^include \$\(TOPDIR\)/rules\.mk$", text, re.MULTILINE)
    assert re.search(r"^include \$\(INCLUDE_DIR\)/package\.mk$", text, re.MULTILINE)
    assert re.search(r"^\$\(eval \$\(call BuildPackage,remsim-supervisor\)\)$", text, re.MULTILINE)
    for define in ("", "/description", "/conffiles", "/postinst", "/prerm", "/install"):
        assert f"define Package/remsim-supervisor{define}\n" in text, define
    dumped = dict(line.split("=", 1) for line in
                  (sdk_build / "dump" / "vars").read_text().splitlines())
    assert dumped["PKG_NAME"] == PKG
    assert dumped["PKG_VERSION"] == __version__  # read from the package, not repeated
    assert dumped["PKG_RELEASE"] == "1"
    assert dumped["PKG_LICENSE"] == "GPL-2.0-or-later"
    assert dumped["PKGARCH"] == "all"
    assert dumped["SECTION"] == "net" and dumped["CATEGORY"] and dumped["TITLE"]
    assert [d.lstrip("+") for d in dumped["DEPENDS"].split()] == feed_depends()


def test_feed_makefile_installs_what_the_ipk_holds(sdk_build: Path, ipk: Ipk) -> None:
    stage = sdk_build / "stage"
    installed = {"/" + p.relative_to(stage).as_posix(): p for p in stage.rglob("*")
                 if p.is_file()}
    files = ipk.files()
    assert set(installed) == set(files)
    for dest, path in installed.items():
        assert path.stat().st_mode & 0o7777 == files[dest].info.mode, dest
        assert path.read_bytes() == files[dest].data, dest
    dirs = {"/" + p.relative_to(stage).as_posix() for p in stage.rglob("*") if p.is_dir()}
    assert dirs == {name[1:].rstrip("/") for name, m in ipk.data.items() if m.info.isdir()}


def test_feed_scripts_and_conffiles_are_the_ipks(sdk_build: Path, ipk: Ipk) -> None:
    dump = sdk_build / "dump"
    # The SDK expands these defines once, as build_ipk.py does ($$ -> $).
    assert (dump / "postinst").read_text().strip() == ipk.control_text("postinst-pkg").strip()
    assert (dump / "prerm").read_text().strip() == ipk.control_text("prerm-pkg").strip()
    assert (dump / "postrm").read_text().strip() == ipk.control_text("postrm").strip()
    assert (dump / "conffiles").read_text().split() == ipk.control_text("conffiles").split()
    assert "${IPKG_INSTROOT}" in ipk.control_text("postinst-pkg")


# --- Depends ------------------------------------------------------------------------------------

_TOP_MODULES = """
import ast, json, sys
found = {}
for path, source in json.load(sys.stdin).items():
    for node in ast.walk(ast.parse(source, filename=path)):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        for name in names:
            found.setdefault(name.split(".")[0], []).append(path)
json.dump(found, sys.stdout)
"""


_PARSE = """
import ast, pickle, sys
sources = pickle.load(sys.stdin.buffer)
pickle.dump({p: ast.parse(s, filename=p) for p, s in sources.items()}, sys.stdout.buffer)
"""


def parsed_in_a_fresh_interpreter(sources: dict[str, bytes]) -> dict[str, ast.Module]:
    """Each source's AST, parsed in a fresh interpreter (see imported_top_modules)."""
    out = subprocess.run([sys.executable, "-c", _PARSE], input=pickle.dumps(sources),
                         check=True, capture_output=True, timeout=60)
    trees: dict[str, ast.Module] = pickle.loads(out.stdout)
    return trees


def imported_top_modules(sources: dict[str, bytes]) -> dict[str, set[str]]:
    """Top-level module -> the shipped files importing it (lazy imports included).

    Parsed in a fresh interpreter: CPython 3.11's AST constructor can report a
    false recursion-depth mismatch deep inside a long test session."""
    out = subprocess.run(
        [sys.executable, "-c", _TOP_MODULES], check=True, capture_output=True, timeout=60,
        input=json.dumps({p: s.decode() for p, s in sources.items()}).encode())
    return {name: set(paths) for name, paths in json.loads(out.stdout).items()}


def requirements() -> tuple[set[str], set[str]]:
    """setup.cfg's install_requires and its optional extras, as PyPI names."""
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")

    def names(text: str) -> set[str]:
        return {re.split(r"[<>=!~ \[;]", line.strip())[0].lower()
                for line in text.splitlines() if line.strip()}

    required = names(parser["options"]["install_requires"])
    optional = names(parser["options.extras_require"].get("udev", ""))
    return required, optional


def test_depends_is_exactly_what_the_code_needs(ipk: Ipk) -> None:
    required, optional = requirements()
    assert required <= set(THIRD_PARTY), f"map the new requirement: {required - set(THIRD_PARTY)}"
    imports = imported_top_modules(shipped_modules(ipk))
    third_party_imports = {THIRD_PARTY[name][0]: name for name in required | optional}
    unknown = {m: sorted(paths) for m, paths in imports.items()
               if m not in sys.stdlib_module_names and m not in third_party_imports
               and m not in ("remsim_supervisor", "__future__")}
    assert not unknown, f"imported but neither stdlib nor a declared requirement: {unknown}"
    needed = dict(IMPLIED)
    for module, paths in imports.items():
        if module in STDLIB_SPLIT:
            needed.setdefault(STDLIB_SPLIT[module], f"import {module} in {min(paths)}")
    for name in sorted(required):
        package = THIRD_PARTY[name][1]
        assert package is not None, name
        needed[package] = f"{name} in setup.cfg install_requires"
        if THIRD_PARTY[name][0] not in imports:
            warnings.warn(f"setup.cfg requires {name} (so Depends has {package}), but no shipped "
                          "module imports it yet", stacklevel=1)
    depends = ipk.fields()["Depends"].split(", ")
    missing = {p: why for p, why in needed.items() if p not in depends}
    extra = [p for p in depends if p not in needed]
    assert not missing, f"Depends lacks: {missing}"
    assert not extra, f"Depends has packages nothing needs: {extra}"
    assert len(depends) == len(set(depends))


def test_no_shipped_module_reaches_into_what_stays_home(ipk: Ipk) -> None:
    sources = shipped_modules(ipk)
    offenders = []
    for path, tree in parsed_in_a_fresh_interpreter(sources).items():
        package_parts = path[len(LIB) + 1:].split("/")[:-1]
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = ["remsim_supervisor", *package_parts][
                        :len(package_parts) + 2 - node.level]
                    module = ".".join([*base, *(node.module or "").split(".")]).strip(".")
                else:
                    module = node.module or ""
                targets = [module, *(f"{module}.{a.name}" for a in node.names)]
            if any(t == "remsim_supervisor.lab" or t.startswith("remsim_lab.")
                   for t in targets):
                offenders.append(f"{path}:{node.lineno}")
    assert not offenders, f"the lab is not on the router, yet these import it: {offenders}"
