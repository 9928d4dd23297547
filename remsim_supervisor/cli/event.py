"""``remsim-supervisor event CAUSE``: osmo-remsim-client's event script.

The client runs ``/bin/sh -c "SCRIPT CAUSE"`` for every event, with a
whitelisted environment, and does not wait (see REMSIM-EVENTS.md). This
command therefore does little and returns fast, exit status 0 whatever
happens (the client discards it) except 2 for an unknown cause:

1. It takes the ``REMSIM_*`` variables (and ``OPENWRT_MODEM_DEVICE``) as
   plain strings: length-capped, control characters dropped, never
   evaluated, never passed to a shell.
2. It notes its **origin**: the process the client started for this event
   (itself, or the ``sh -c`` above it when a shell forked rather than
   exec'd), as start tick, pid and age. Processes the client starts back to
   back get increasing ticks and pids, so the daemon can put concurrent
   events back in the client's order.
3. It hands the event to the daemon over the control socket
   (``{"cmd": "event", ...}``) with a short timeout; the daemon's
   :class:`~remsim_supervisor.supervisor.simswitch.SimSwitcher` coalesces and applies.
4. With no daemon answering, it is degraded but safe: the event goes to a
   journal whose detached worker applies the same rule to the primary
   modem's lines (:mod:`remsim_supervisor.cli.event_worker`).

``$REMSIM_SUPERVISOR_EVENT_SETTLE`` shortens the settle window for tests.
:func:`main` parses ``[-c FILE] [--] CAUSE`` without click, for a launcher
that wants to skip the CLI's imports: every event starts a new interpreter.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from remsim_supervisor import log as logsetup
from remsim_supervisor.cli.event_worker import DEFAULT_STATE_DIR, append_event
from remsim_supervisor.config import Config, ConfigError, Environment, load
from remsim_supervisor.core.hookvars import (
    EXTRA_VARIABLES,
    MAX_NAME,
    MAX_VALUE,
    MAX_VARIABLES,
    event_environment,
)
from remsim_supervisor.core.hookvars import clean as _clean
from remsim_supervisor.core.simplan import (
    BANKD_PORT,
    KNOWN_CAUSES,
    format_hostport,
    parse_hostport,
)
from remsim_supervisor.supervisor import control

__all__ = [
    "DEFAULT_STATE_DIR",
    "EXTRA_VARIABLES",
    "MAX_NAME",
    "MAX_VALUE",
    "MAX_VARIABLES",
    "event_environment",
    "main",
    "process_origin",
    "run_event",
]

log = logging.getLogger(__name__)

CONTROL_TIMEOUT_S = 0.4  # the daemon answers from memory; a stuck one must not cost the second

# --- where this event came from ---


def _stat(pid: int, proc: str) -> tuple[int, int] | None:
    """(parent pid, start tick) of ``pid``."""
    try:
        with open(f"{proc}/{pid}/stat", "rb") as f:
            text = f.read().decode("ascii", "replace")
    except OSError:
        return None
    # The command name is in parentheses and may hold anything: split after the last ')'.
    fields = text[text.rfind(")") + 2 :].split()
    try:
        return int(fields[1]), int(fields[19])
    except (IndexError, ValueError):
        return None


def _cmdline(pid: int, proc: str) -> list[str]:
    try:
        with open(f"{proc}/{pid}/cmdline", "rb") as f:
            return f.read().decode("utf-8", "replace").split("\0")[:-1]
    except OSError:
        return []


def process_origin(cause: str, proc: str = "/proc") -> dict[str, Any] | None:
    """``{"pid", "ticks", "age_s"}`` of the process the client started for this event.

    Shells and launchers usually exec, so that is this process; when one
    forked instead, its command line ends with the cause (``sh -c "SCRIPT
    CAUSE"``, ``sh SCRIPT CAUSE``), and that ancestor is the origin.
    """
    pid = os.getpid()
    stat = _stat(pid, proc)
    if stat is None:
        return None
    for _ in range(4):
        parent = stat[0]
        if parent <= 1:
            break
        words = " ".join(_cmdline(parent, proc)).split()
        if not words or words[-1] != cause:
            break
        parent_stat = _stat(parent, proc)
        if parent_stat is None:
            break
        pid, stat = parent, parent_stat
    ticks = stat[1]
    try:
        hz = os.sysconf("SC_CLK_TCK")
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / hz
    except (ValueError, OSError, AttributeError):
        return None
    return {"pid": pid, "ticks": ticks, "age_s": round(max(0.0, age), 3)}


# --- the command ---


def run_event(cause: str, config_path: str, environ: Mapping[str, str]) -> int:
    """Handle one event; the exit status (0, or 2 for an unknown cause)."""
    if cause not in KNOWN_CAUSES:
        shown = _clean(cause, 64)
        print(
            f"remsim-supervisor: unknown event cause {shown!r} (known: "
            f"{', '.join(sorted(KNOWN_CAUSES))})",
            file=sys.stderr,
        )
        log.warning("osmo-remsim: unknown event cause %r", shown)
        return 2
    try:
        _handle(cause, config_path, environ)
    except Exception:  # the client discards the status anyway: keep the story in the log
        log.exception("osmo-remsim: handling %s failed", cause)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``event [-c FILE] [--] CAUSE`` as the CLI takes it; 2 and one line on a usage error."""
    args = list(sys.argv[1:] if argv is None else argv)
    config_path = Environment.from_environ(os.environ, strict=False).config
    causes: list[str] = []
    while args:
        arg = args.pop(0)
        if arg == "--":
            causes += args
            break
        if arg in ("-c", "--config") and args:
            config_path = args.pop(0)
        elif arg.startswith("--config="):
            config_path = arg.partition("=")[2]
        elif arg.startswith("-c") and len(arg) > 2:
            config_path = arg[2:]
        elif arg.startswith("-"):
            causes = []
            break
        else:
            causes.append(arg)
    if len(causes) != 1:
        print("usage: remsim-supervisor event [-c FILE] [--] CAUSE", file=sys.stderr)
        return 2
    logsetup.setup("warning")
    return run_event(causes[0], config_path, os.environ)


def _handle(cause: str, config_path: str, environ: Mapping[str, str]) -> None:
    env = event_environment(environ)
    origin = process_origin(cause)
    config: Config | None
    try:
        config = load(config_path, {})  # the file only: the client's environment is not ours
        socket_path = config.supervisor.control_socket
        logsetup.set_level(config.supervisor.log_level)
    except ConfigError:
        config = None
        socket_path = control.socket_for_config(config_path)
    message = {"cmd": "event", "cause": cause, "env": env, "origin": origin}
    try:
        answer = control.request(socket_path, message, timeout=CONTROL_TIMEOUT_S)
    except control.DaemonNotRunning:
        log.info("osmo-remsim: no daemon on %s: %s handled without it", socket_path, cause)
    except (control.ControlError, OSError) as exc:
        log.warning("osmo-remsim: %s: %s handled without the daemon", exc, cause)
    else:
        if not answer.get("ok"):
            log.warning(
                "osmo-remsim: the daemon refused %s: %s",
                cause,
                _clean(str(answer.get("error")), 200),
            )
        return
    if cause == "event-config-bankd":
        _note_bankd(env)
    if config is None:
        log.error(
            "osmo-remsim: %s is not usable: %s not handled (no daemon, and no "
            "configuration to find the SIM line)",
            config_path,
            cause,
        )
        return
    hooks = Environment.from_environ(environ, strict=False)
    state_dir = Path(hooks.state_dir).absolute()
    record = {"cause": cause, "at": time.monotonic(), "origin": origin, "env": env}
    append_event(state_dir, record, os.path.abspath(config_path), hooks.event_settle)


def _note_bankd(env: Mapping[str, str]) -> None:
    value = env.get("REMSIM_BANKD_ADDR")
    try:
        peer = parse_hostport(value, BANKD_PORT)
    except ValueError as exc:
        log.warning("osmo-remsim: REMSIM_BANKD_ADDR %r rejected: %s", (value or "")[:80], exc)
        return
    if peer is not None:
        log.warning(
            "osmo-remsim: bankd %s assigned with no daemon running: it is not pinned "
            "to the heartbeat path",
            format_hostport(*peer),
        )
