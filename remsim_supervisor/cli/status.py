"""``remsim-supervisor status``: the running daemon's state, asked over its control socket.

The command people (and scripts polling a router) run most, so it starts
about as fast as the interpreter does: it needs neither click nor the
checked configuration. The control socket's path is read from the file
with the UCI reader alone (:func:`socket_path`): the first ``supervisor``
section's ``control_socket``, else the default. That is the path the
checked configuration gives whenever the file is valid, and the one a
broken file still names (the daemon runs from the file it last accepted).

:mod:`remsim_supervisor.entry` sends ``status`` here straight away when its
arguments are the usual ones (:func:`parse_args`: ``-c FILE``/``--config``,
``--json``, ``--show-identifiers``); anything else (``--help``, a mistake)
goes through the whole command line, whose ``status`` calls :func:`show`
too. Like the event script, the fast lane reads only the one environment
hook it uses, ``REMSIM_SUPERVISOR_CONFIG``.

Exit status: 0; 1 when the daemon refuses; 3 when no daemon answers.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from typing import TextIO

from remsim_supervisor.supervisor import control

EXIT_NO_DAEMON = 3

# The same values as config.types' DEFAULT_PATH and SupervisorConfig's
# control_socket and config.env's CONFIG (tests/unit/test_cli_status.py holds
# them equal): importing those modules would cost this command a third of its time.
DEFAULT_CONFIG = "/etc/config/remsim-supervisor"
DEFAULT_SOCKET = "/var/run/remsim-supervisor.sock"
CONFIG_VARIABLE = "REMSIM_SUPERVISOR_CONFIG"


def default_config(environ: Mapping[str, str]) -> str:
    value = environ.get(CONFIG_VARIABLE)
    return value if value is not None and value.strip() else DEFAULT_CONFIG


def socket_path(config_path: str) -> str:
    """The control socket ``config_path`` names; the default when it names none."""
    from remsim_supervisor.config import uci

    try:
        with open(config_path, encoding="utf-8", errors="replace") as f:
            sections, _problems = uci.parse(f.read())
    except OSError:
        return DEFAULT_SOCKET
    for section in sections:
        option = section.options.get("control_socket") if section.type == "supervisor" else None
        if option is not None:
            return option.value or DEFAULT_SOCKET  # '' is "not set" in UCI
    return DEFAULT_SOCKET


def show(config_path: str, as_json: bool, show_identifiers: bool,
         out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Ask the daemon for its status and print it; the exit status."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        answer = control.request(socket_path(config_path), {"cmd": "status"}, timeout=10.0)
    except control.ControlError as exc:
        print(f"remsim-supervisor: {exc}", file=err)
        return EXIT_NO_DAEMON
    if not answer.get("ok"):
        print(f"remsim-supervisor: {answer.get('error', 'the daemon refused the request')}",
              file=err)
        return 1
    from remsim_supervisor.supervisor.statusview import mask_identifiers, render

    state = answer["status"]
    if not show_identifiers:
        state = mask_identifiers(state)
    if as_json:
        import json

        print(json.dumps(state, indent=2, sort_keys=True), file=out)
    else:
        print(render(state), file=out)
    return 0


def parse_args(args: Sequence[str]) -> tuple[str | None, bool, bool] | None:
    """(config file or None, --json, --show-identifiers) for the usual arguments of
    ``status``; None for anything else, which the whole command line handles."""
    config: str | None = None
    as_json = show_identifiers = False
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        if arg == "--json":
            as_json = True
        elif arg == "--show-identifiers":
            show_identifiers = True
        elif arg in ("-c", "--config"):
            if not rest:
                return None
            config = rest.pop(0)
        elif arg.startswith("--config="):
            config = arg.split("=", 1)[1]
        elif arg.startswith("-c") and not arg.startswith("--"):
            config = arg[2:]
        else:
            return None
    return config, as_json, show_identifiers


def main(args: Sequence[str]) -> int | None:
    """``status ARGS`` without click; None when the arguments are not the usual ones."""
    parsed = parse_args(args)
    if parsed is None:
        return None
    config, as_json, show_identifiers = parsed
    try:
        return show(config or default_config(os.environ), as_json, show_identifiers)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug: one line here, the whole story in the log
        import logging

        from remsim_supervisor import log as logsetup

        logsetup.setup("warning")
        logging.getLogger("remsim_supervisor").exception("unexpected error")
        print(f"remsim-supervisor: internal error: {type(exc).__name__}: {exc} "
              "(details in logread)", file=sys.stderr)
        return 70
