"""Log lines reach OpenWrt's logd whole, and ``logread`` shows them with ident and pid.

In the router sandbox (tests/router.py) logd owns ``/dev/log``. A child
process calls ``remsim_supervisor.log.setup()`` and logs through the stdlib
syslog module (libc ``syslog(3)``); ``logread`` must show facility and
priority, the ident with the child's pid, and the message in full: logd (ubox
log/syslog.c) strips 16 bytes when byte 15 after the priority is a space,
which is harmless only because that is where the timestamp ends, and it reads
at most 1 kB per datagram, so a long message goes out as numbered parts. Then
the daemon itself, installed with opkg and run by procd: its state-change
lines in ``logread -e remsim-supervisor``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest

from remsim_supervisor import __version__
from tests.router import (
    SERVICE,
    Router,
    install_package,
    log_lines,
    router_sandbox,
    start_daemon,
    wait_for,
    wait_for_log,
)
from tests.stubs.support import build_ipk

CHILD = """
import logging, os, sys
from remsim_supervisor import log
log.setup("info")
print(os.getpid(), flush=True)
logging.getLogger("remsim_supervisor.grace").info(sys.argv[1])
logging.getLogger("remsim_supervisor.grace").warning("path iot -> primary: 41 s of grace left")
logging.getLogger("remsim_supervisor.grace").debug("not at level info")
"""

# byte 15 is a space, as logd checks it; past 1 kB; both ends recognisable
MESSAGE = ("recovery rung 3 (radio off/on) on modem2 " + "x" * 1200 + " grace left 187 s END")
# logread: "Fri Dec  4 17:36:24 2026 daemon.warn remsim-supervisor[262]: message"
LINE = re.compile(r"[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4} "
                  r"(\w+)\.(\w+) remsim-supervisor\[(\d+)\]: (.*)")


@pytest.fixture(scope="module")
def router() -> Iterator[Router]:
    with router_sandbox() as r:
        yield r


def child_lines(router: Router) -> tuple[int, list[re.Match[str]]]:
    """Run CHILD in the sandbox; its pid and its lines as logread shows them."""
    result = router.run(["python3", "-c", CHILD, MESSAGE])
    assert result.returncode == 0, result.stderr
    pid = int(result.stdout.strip())
    def of_child() -> list[re.Match[str]]:
        return [m for m in map(LINE.fullmatch, router.logread().splitlines())
                if m and int(m[3]) == pid]

    wait_for(lambda: any("41 s of grace" in m[4] for m in of_child()))
    return pid, of_child()


def test_log_lines_arrive_with_facility_priority_ident_pid_and_in_full(router: Router) -> None:
    assert MESSAGE[15] == " " and len(MESSAGE.encode()) > 1024
    _pid, lines = child_lines(router)
    assert [(m[1], m[2]) for m in lines] == [("daemon", "info")] * 2 + [("daemon", "warn")]
    # musl's syslog(3) on the router cuts a datagram at 1024 bytes, logd reads
    # at most that much: a long line goes out as numbered parts, each whole,
    # that join to the message
    parts = [m[4] for m in lines[:2]]
    bodies = []
    for n, part in enumerate(parts, 1):
        prefix = f"[{n}/2] "
        assert part.startswith(prefix), part[:80]
        bodies.append(part[len(prefix):])
    assert "".join(bodies) == MESSAGE
    assert lines[2][4] == "path iot -> primary: 41 s of grace left"
    # the debug line stayed below the level
    assert "not at level info" not in router.logread()


def test_logread_e_selects_the_lines_by_ident(router: Router) -> None:
    pid, _lines = child_lines(router)
    router.sh("logger -t other-daemon 'remsim supervisor mentioned, not its ident'")
    selected = router.logread("-e", SERVICE).splitlines()
    assert selected and all(f" {SERVICE}[" in line for line in selected)
    assert any(f" {SERVICE}[{pid}]: path iot -> primary" in line for line in selected)


def test_the_daemons_state_changes_in_logread(router: Router,
                                              tmp_path_factory: pytest.TempPathFactory) -> None:
    install_package(router, build_ipk(tmp_path_factory.mktemp("ipk")))
    pid = start_daemon(router)
    for priority, text in [
            ("daemon.info",
             f"remsim-supervisor {__version__} running: modem1 (primary), modem2 (iot)"),
            ("daemon.warn", "modem1 (primary): absent: no modem at USB path 9-1"),
            ("daemon.warn", "modem2 (iot): absent: no modem at USB path 9-2")]:
        found = wait_for_log(router, text, pid)
        assert found, (text, log_lines(router))
        match = LINE.fullmatch(found[0])
        assert match and f"{match[1]}.{match[2]}" == priority and int(match[3]) == pid
        assert match[4] == text  # the whole message, nothing before or after it
    # the heartbeat's failure, as long as a log line gets here: whole, with the
    # error the status reports word for word
    failure = wait_for_log(router, "heartbeat over main table failed", pid)
    assert failure
    error = json.loads(router.sh(f"{SERVICE} status --json").stdout)["heartbeat"]["last_error"]
    match = LINE.fullmatch(failure[0])
    assert match and match[2] == "warn"
    assert re.fullmatch(rf"heartbeat over main table failed: {re.escape(error.split(': ', 1)[1])}"
                        r" \(\d+ s of grace left\)", match[4]), (match[4], error)


def test_a_log_budget_lets_count_lines_a_window_through_and_says_how_many_it_held() -> None:
    from remsim_supervisor.log import Budget

    now = [0.0]
    budget = Budget(3, 60.0, clock=lambda: now[0])
    assert [budget.take() for _ in range(5)] == [0, 0, 0, None, None]
    now[0] = 59.9
    assert budget.take() is None
    now[0] = 60.0
    assert budget.take() == 3  # the first line of the new window says what was held
    assert budget.take() == 0
