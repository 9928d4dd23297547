"""The router sandbox for the tests: OpenWrt's own userland running around the package.

The sandbox itself is :class:`remsim_lab.router.RouterSandbox` (``make
demo`` uses it too): private mount, pid and network namespaces, overlays over
``/etc`` and ``/usr`` with OpenWrt's base-files, busybox as ``/bin/sh``, and
``ubusd``, ``logd``, ``procd`` and ``rpcd`` running; everything it started
ends, and its scratch directory goes, when the ``with`` block ends, also when
a test fails. Here: whether this run has the router tests, and helpers.

The userland is what ``scripts/build-openwrt.sh`` builds from the kit in
``../shared`` (``make test`` does it). ``REMSIM_ROUTER_TESTS`` says whether
this run has the router tests: ``1`` runs them and fails in one line when a
part is missing, ``0`` skips them (``scripts/run-suites.sh`` runs them under
one library set only); unset, they run when the build is there.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from remsim_lab import router as lab
from remsim_lab.router import (
    CONFIG_PATH,
    DAEMON_CONFIG,
    KIT,
    PREFIX,
    ROUTER_PYTHON,
    SERVICE,
    instance,
    mark_installed,
    running_pid,
    start_daemon,
    wait_for,
)

__all__ = ["CONFIG_PATH", "DAEMON_CONFIG", "KIT", "PREFIX", "ROUTER_PYTHON", "SERVICE", "Router",
           "config_changed",
           "has_rule", "install_package", "instance", "log_lines", "mark_installed",
           "require_userland", "router_sandbox", "running_pid", "start_daemon", "wait_for",
           "wait_for_log"]


def require_userland() -> None:
    """Skip or fail as REMSIM_ROUTER_TESTS says; fail in one line if a part is missing."""
    wanted = os.environ.get("REMSIM_ROUTER_TESTS", "")
    if wanted == "0":
        pytest.skip("router tests run under the other library set (REMSIM_ROUTER_TESTS=0)")
    missing = lab.missing_parts()
    if missing:
        message = (f"OpenWrt userland missing ({', '.join(missing)}): run `sh "
                   "scripts/build-openwrt.sh` (make test does), ../shared beside the repository")
        if wanted == "1":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    if os.geteuid() != 0:
        pytest.fail("the router tests need root (namespaces); run the suite as root",
                    pytrace=False)


class Router(lab.RouterSandbox):
    """The sandbox, skipped or failed in one line as REMSIM_ROUTER_TESTS says."""

    def __init__(self) -> None:
        require_userland()
        try:
            super().__init__()
        except lab.SandboxError as exc:
            pytest.fail(str(exc), pytrace=False)

    def start(self) -> Router:
        try:
            super().start()
        except lab.SandboxError as exc:
            pytest.fail(str(exc), pytrace=False)
        return self


@contextlib.contextmanager
def router_sandbox() -> Iterator[Router]:
    router = Router().start()
    try:
        yield router
    finally:
        router.close()


def has_rule(router: Router) -> bool:
    """Whether the daemon's policy rules (table 240) are in place."""
    return router.sh("ip rule | grep -q 'lookup 240'", check=False).returncode == 0


def install_package(router: Router, ipk: Path) -> None:
    """``opkg install`` the package, its dependencies recorded as installed first."""
    from tests.stubs.support import build_ipk_module

    lab.install_package(router, ipk, list(build_ipk_module().read_feed_package().depends))


def config_changed(router: Router, package: str = SERVICE) -> None:
    """The event ``reload_config`` sends for a configuration whose contents changed."""
    router.ubus("service", "event", {"type": "config.change", "data": {"package": package}})


def log_lines(router: Router, pid: int | None = None, after: int = 0) -> list[str]:
    """``logread -e remsim-supervisor`` past the first ``after`` lines (``pid``'s only if given)."""
    lines = router.logread("-e", SERVICE).splitlines()[after:]
    if pid is not None:
        lines = [line for line in lines if f" {SERVICE}[{pid}]: " in line]
    return lines


def wait_for_log(router: Router, needle: str, pid: int | None = None, after: int = 0,
                 timeout: float = 30) -> list[str]:
    """The daemon's log lines past the first ``after`` that contain ``needle``, once there are."""
    return wait_for(lambda: [line for line in log_lines(router, pid, after) if needle in line],
                    timeout=timeout)
