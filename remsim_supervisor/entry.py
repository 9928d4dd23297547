"""The ``remsim-supervisor`` entry point: the command line, with a fast lane for events.

osmo-remsim-client starts a new ``remsim-supervisor event CAUSE`` process for
every event, several back to back, and each must return within a second on a
small router. That command needs neither click nor the rest of the command
line, so it is routed here straight to :func:`remsim_supervisor.cli.event.main`
(about a quarter less CPU per event). ``status`` with its usual arguments
goes straight to :func:`remsim_supervisor.cli.status.main` the same way
(it then costs little more than the interpreter's start). Everything else
goes to :mod:`remsim_supervisor.cli.commands`.
"""

from __future__ import annotations

import signal
import sys


def main() -> None:
    args = sys.argv[1:]
    if args[:1] == ["event"] and not {"-h", "--help"} & set(args):
        from remsim_supervisor.cli.event import main as event_main

        sys.exit(event_main(args[1:]))
    if args[:1] == ["status"]:
        from remsim_supervisor.cli.status import main as status_main

        code = status_main(args[1:])
        if code is not None:
            sys.exit(code)
    if args[:1] == ["run"]:
        # procd's reload sends SIGHUP; until the daemon's handler is in place
        # a SIGHUP would end the process (Python's default), so ignore it now.
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    from remsim_supervisor.cli.commands import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
