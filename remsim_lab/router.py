"""A router sandbox: OpenWrt's own userland (procd, ubusd, logd, rpcd) around the package.

:class:`RouterSandbox` starts ``router_sandbox.sh`` (beside this file) as PID
1 of private mount, pid and network namespaces (``unshare --kill-child``):
tmpfs over ``/run``, ``/tmp`` and ``/dev``, copy-on-write overlays over
``/etc`` and ``/usr`` with OpenWrt's base-files, busybox ash as ``/bin/sh``,
and ``ubusd``, ``logd``, ``procd`` (the service manager) and ``rpcd``
running. Commands run inside with ``nsenter``. On exit the sandbox's PID 1
stops the daemons; the kernel ends whatever is left with the pid namespace and
drops every mount with the mount namespace; the scratch directory is removed.
The host's files are never written.

The userland is what ``scripts/build-openwrt.sh`` builds from the kit in
``../shared`` (``make userland``); the router's ``python3`` is an interpreter
with the libraries the package needs (the OpenWrt 24.10 set). The tests
(tests/router.py) and ``make demo`` use it. Needs root.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, TypeVar

ROOT = Path(__file__).resolve().parents[1]
PREFIX = Path(os.environ.get("OPENWRT_PREFIX", ROOT / ".venv" / "openwrt-userland"))
KIT = Path(os.environ.get("OPENWRT_KIT", ROOT.parent / "shared" / "third_party" / "openwrt"))
ROUTER_PYTHON = Path(os.environ.get("ROUTER_PYTHON",
                                    ROOT / ".venv" / "openwrt-24.10" / "bin" / "python3"))
SANDBOX_SCRIPT = Path(__file__).resolve().parent / "router_sandbox.sh"
PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
T = TypeVar("T")


class SandboxError(Exception):
    """The sandbox cannot start: what is missing or what failed, in one line."""


def missing_parts() -> list[str]:
    """What the sandbox needs and does not find (empty when all is there)."""
    missing = [str(p) for p in (PREFIX / "sbin" / "procd", PREFIX / "bin" / "uci",
                                KIT / "base-files" / "etc" / "rc.common", ROUTER_PYTHON)
               if not p.exists()]
    missing += [tool for tool in ("unshare", "nsenter", "busybox") if shutil.which(tool) is None]
    return missing


def kept_under_tmp(workdir: Path) -> list[str]:
    """What must stay visible over the sandbox's own /tmp: the work directory, and
    the checkout, the userland and the kit where they live under /tmp (a CI clone
    may); a directory inside another one kept is kept with it."""
    paths = sorted({os.path.realpath(p) for p in (workdir, ROOT, PREFIX, KIT)})
    under = [p for p in paths if p.startswith("/tmp/")]
    return [p for p in under if not any(p.startswith(q + "/") for q in under if q != p)]


def wait_for(predicate: Callable[[], T], timeout: float = 15.0, interval: float = 0.05) -> T:
    """Poll ``predicate`` until it returns something true, or the timeout; return its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def _die_with_parent() -> None:
    """In the child, before exec: SIGKILL when the process that started it dies.

    unshare --kill-child then takes the sandbox down with it, so not even a
    killed test run leaves one behind."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


class RouterSandbox:
    """A running sandbox; :meth:`sh` runs a busybox ash command line inside it."""

    def __init__(self) -> None:
        missing = missing_parts()
        if missing:
            raise SandboxError(f"missing: {', '.join(missing)} (make userland venvs; "
                               "sh scripts/bootstrap-host.sh)")
        if os.geteuid() != 0:
            raise SandboxError("the router sandbox needs root (mount, pid and network namespaces)")
        self.unshare = shutil.which("unshare") or "unshare"
        self.nsenter = shutil.which("nsenter") or "nsenter"
        self.workdir = Path(tempfile.mkdtemp(prefix="router-"))
        self.proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self.pid = 0  # PID 1 of the sandbox, as the host sees it

    # -- life --------------------------------------------------------------------------------

    def start(self) -> RouterSandbox:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def _start(self) -> None:
        self._stderr = open(self.workdir / "sandbox.err", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [self.unshare, "--mount", "--propagation", "private", "--pid", "--net", "--fork",
             "--kill-child", "--mount-proc", "bash", str(SANDBOX_SCRIPT),
             os.path.realpath(PREFIX), os.path.realpath(KIT), str(self.workdir),
             str(ROUTER_PYTHON), *kept_under_tmp(self.workdir)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._stderr,
            preexec_fn=_die_with_parent)
        proc = self.proc
        ready = self.workdir / "ready"
        if not wait_for(lambda: ready.exists() or proc.poll() is not None, timeout=30):
            raise SandboxError("the router sandbox did not come up within 30 s")
        if not ready.exists():
            error = (self.workdir / "sandbox.err").read_text(errors="replace").strip()
            raise SandboxError(f"the router sandbox failed: {error}")
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        self.pid = int(children[0])

    def close(self) -> None:
        try:
            if self.proc is not None and self.proc.poll() is None:
                if self.pid:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(self.pid, signal.SIGTERM)
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    # --kill-child: the sandbox's PID 1 and with it everything inside dies
                    self.proc.kill()
                    self.proc.wait(timeout=10)
        finally:
            if self._stderr is not None:
                self._stderr.close()
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> RouterSandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- commands ----------------------------------------------------------------------------

    def run(self, argv: list[str], *, input: str | None = None, timeout: float = 60,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside the sandbox (its mounts, pids and network)."""
        if not self.pid:
            raise SandboxError("the sandbox is not running")
        full_env = {"PATH": PATH, "HOME": "/root", "LANG": "C", **(env or {})}
        return subprocess.run([self.nsenter, "-t", str(self.pid), "-m", "-p", "-n", "--", *argv],
                              input=input, env=full_env, cwd="/", check=False,
                              capture_output=True, text=True, timeout=timeout)

    def sh(self, script: str, *, check: bool = True, input: str | None = None, timeout: float = 60,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run a shell command line with the router's /bin/sh (busybox ash)."""
        result = self.run(["/bin/sh", "-c", script], input=input, timeout=timeout, env=env)
        if check and result.returncode != 0:
            raise AssertionError(f"`{script}` exited {result.returncode}:\n"
                                 f"{result.stdout}{result.stderr}")
        return result

    def write(self, path: str, text: str, mode: int = 0o644) -> None:
        self.sh(f"mkdir -p \"$(dirname '{path}')\" && cat > '{path}' && chmod {mode:o} '{path}'",
                input=text)

    def read(self, path: str) -> str:
        return self.sh(f"cat '{path}'").stdout

    def exists(self, path: str) -> bool:
        return self.sh(f"[ -e '{path}' ] || [ -L '{path}' ]", check=False).returncode == 0

    def share(self, host_file: Path) -> str:
        """Copy a host file into the scratch directory, which the sandbox sees at the same path."""
        target = self.workdir / "share" / host_file.name
        target.parent.mkdir(exist_ok=True)
        shutil.copy2(host_file, target)
        return str(target)

    def ubus(self, obj: str, method: str, args: dict[str, Any] | None = None) -> Any:
        result = self.sh(f"ubus call {obj} {method} '{json.dumps(args or {})}'")
        return json.loads(result.stdout) if result.stdout.strip() else {}

    def services(self, name: str) -> dict[str, Any]:
        """``ubus call service list`` for one service: {} when procd has none of that name."""
        listed = self.ubus("service", "list", {"name": name, "verbose": True})
        return dict(listed.get(name) or {})

    def alive(self, pid: int) -> bool:
        """Whether a process of the sandbox is running (not a zombie)."""
        stat = self.sh(f"cat /proc/{pid}/stat 2>/dev/null", check=False).stdout
        return bool(stat) and stat.rsplit(")", 1)[1].split()[0] != "Z"

    def logread(self, *args: str) -> str:
        return self.sh("logread " + " ".join(f"'{a}'" for a in args)).stdout


# -- the package on the router -------------------------------------------------------------------

SERVICE = "remsim-supervisor"
CONFIG_PATH = "/etc/config/remsim-supervisor"

# A configuration the daemon runs on in the sandbox: both modems configured but
# absent (nothing at those USB paths), IonMesh on a loopback port nobody
# listens on, and no recovery (nothing to reset).
DAEMON_CONFIG = """\
config supervisor 'main'
\toption enabled '1'
\toption log_level 'info'

config ionmesh 'ionmesh'
\toption url 'http://127.0.0.1:9'
\toption client_id 'router-test'

config modem 'modem1'
\toption role 'primary'
\toption usb_path '9-1'

config modem 'modem2'
\toption role 'iot'
\toption usb_path '9-2'

config escalation 'escalation'
\toption enabled '0'
"""


def mark_installed(router: RouterSandbox, packages: list[str]) -> None:
    """Record ``packages`` as installed in opkg's status file (the ipk's dependencies)."""
    status = "".join(f"Package: {name}\nVersion: 1.0-1\nStatus: install user installed\n"
                     f"Architecture: all\nInstalled-Time: 1700000000\n\n" for name in packages)
    router.write("/usr/lib/opkg/status", status)
    for name in packages:
        router.write(f"/usr/lib/opkg/info/{name}.list", "")


def install_package(router: RouterSandbox, ipk: Path, depends: list[str]) -> str:
    """``opkg install`` the package, ``depends`` recorded as installed first; opkg's output."""
    mark_installed(router, depends)
    result = router.sh(f"opkg install {router.share(ipk)}", check=False, timeout=120)
    if result.returncode != 0:
        raise AssertionError(result.stdout + result.stderr)
    return result.stdout + result.stderr


def instance(router: RouterSandbox) -> dict[str, Any]:
    """The daemon's procd instance ({} when there is none)."""
    instances = router.services(SERVICE).get("instances") or {}
    return dict(instances.get("instance1") or {})


def running_pid(router: RouterSandbox) -> int:
    """The pid procd runs the daemon as, once it answers on its control socket; else 0."""
    pid = int(instance(router).get("pid") or 0)
    if not pid or not router.alive(pid):
        return 0
    status = router.sh(f"{SERVICE} status --json", check=False)
    if status.returncode != 0:
        return 0
    return pid if json.loads(status.stdout).get("pid") == pid else 0


def start_daemon(router: RouterSandbox, config: str = DAEMON_CONFIG) -> int:
    """Write ``config`` and (re)start the service; the daemon's pid once it answers."""
    router.write(CONFIG_PATH, config, 0o600)
    router.sh(f"/etc/init.d/{SERVICE} restart")
    pid = wait_for(lambda: running_pid(router), timeout=30)
    if not pid:
        raise AssertionError("the daemon did not come up:\n" + router.logread("-e", SERVICE))
    return pid


def build_package(out: Path) -> tuple[Path, list[str]]:
    """``make ipk`` into ``out``: the package and its Depends (from the feed Makefile)."""
    script = ROOT / "scripts" / "build_ipk.py"
    result = subprocess.run([sys.executable, str(script), "--out", str(out)], check=False,
                            capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise SandboxError(f"make ipk failed: {result.stderr.strip()}")
    spec = importlib.util.spec_from_file_location("build_ipk", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("build_ipk", module)  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return Path(result.stdout.strip()), list(module.read_feed_package().depends)
