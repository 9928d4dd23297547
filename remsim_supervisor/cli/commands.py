"""The ``remsim-supervisor`` command line.

Every command takes ``-c FILE`` (default ``/etc/config/remsim-supervisor``,
or ``$REMSIM_SUPERVISOR_CONFIG`` when set, which the lab and the hotplug
tests use). Commands that talk to the daemon find its control socket in that
file. Expected failures (bad configuration, no daemon, missing device, no
permission) print one line saying what to do and exit non-zero; tracebacks
are for bugs only, and even those are reduced to one line on the terminal
and logged in full.

Heavy imports (asyncio, pyserial, pyroute2) happen inside the commands that
need them: ``status`` and the hotplug hand-off must start fast on a router.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import click

from remsim_supervisor import __version__
from remsim_supervisor import log as logsetup
from remsim_supervisor.config import DEFAULT_PATH, ConfigError, Environment, HookError, load
from remsim_supervisor.core.planner import REROUTE, RUNGS
from remsim_supervisor.supervisor import control

F = TypeVar("F", bound=Callable[..., Any])

EXIT_NO_DAEMON = 3

HOTPLUG_VARS = (
    "ACTION",
    "INTERFACE",
    "DEVICE",
    "DEVICENAME",
    "DEVNAME",
    "DEVPATH",
    "DEVTYPE",
    "PRODUCT",
    "TYPE",
    "SUBSYSTEM",
    "BUSNUM",
    "DEVNUM",
    "SEQNUM",
)


def environment() -> Environment:
    """The ``REMSIM_SUPERVISOR_*`` hooks, read once per command; a bad one ends it."""
    ctx = click.get_current_context(silent=True)
    meta = ctx.find_root().meta if ctx is not None else {}
    if "remsim_supervisor.environment" not in meta:
        try:
            meta["remsim_supervisor.environment"] = Environment.from_environ(os.environ)
        except HookError as exc:
            fail(str(exc), 2)
    env: Environment = meta["remsim_supervisor.environment"]
    return env


def default_config() -> str:
    return environment().config


def config_option(f: F) -> F:
    return click.option(
        "-c",
        "--config",
        "config_path",
        metavar="FILE",
        default=default_config,
        show_default=DEFAULT_PATH,
        help="UCI configuration file.",
    )(f)


def fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"remsim-supervisor: {message}", err=True)
    sys.exit(code)


def socket_path(config_path: str) -> str:
    return control.socket_for_config(config_path)


def ask(config_path: str, message: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
    path = socket_path(config_path)
    try:
        return control.request(path, message, timeout=timeout)
    except control.DaemonNotRunning as exc:
        fail(str(exc), EXIT_NO_DAEMON)
    except control.ControlError as exc:
        fail(str(exc), EXIT_NO_DAEMON)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="remsim-supervisor")
def cli() -> None:
    """Supervisor for dual-modem remote-SIM routers: keeps the IonMesh heartbeat alive."""


@cli.command()
@config_option
@click.option("--log-stderr", is_flag=True, help="Also log to stderr (running in a terminal).")
def run(config_path: str, log_stderr: bool) -> None:
    """Run the daemon in the foreground (procd starts it)."""
    # procd's reload sends SIGHUP; until the daemon's handler is installed a
    # SIGHUP would kill the process (Python's default), so ignore it first.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    logsetup.setup("info", to_stderr=log_stderr)
    log = logging.getLogger("remsim_supervisor")
    env = environment()
    try:
        config = load(config_path, env.overrides)
    except ConfigError as exc:
        for problem in exc.problems:
            click.echo(str(problem), err=True)
            log.error("%s", problem)
        fail(
            f"{len(exc.problems)} problem(s) in {config_path}; not started "
            f"(check with: remsim-supervisor check-config -c {config_path})",
            2,
        )
    logsetup.set_level(config.supervisor.log_level)
    if not config.supervisor.enabled:
        log.info("disabled in %s (supervisor.enabled is 0); not starting", config_path)
        # Under systemd (Type=notify) an exit before READY=1 is a failed start.
        from remsim_supervisor.adapters.sdnotify import SdNotify

        SdNotify.from_environ(os.environ).ready("disabled in the configuration")
        return
    from remsim_supervisor.supervisor.daemon import StartupError, run_daemon

    try:
        code = run_daemon(config, env)
    except StartupError as exc:
        log.error("%s", exc)
        fail(str(exc), exc.exit_code)
    except PermissionError as exc:
        fail(f"{exc.strerror}: {exc.filename} (run as root)", 1)
    sys.exit(code)


@cli.command("check-config")
@config_option
def check_config(config_path: str) -> None:
    """Validate the configuration: one FILE:LINE line per problem."""
    try:
        load(config_path, environment().overrides)
    except ConfigError as exc:
        for problem in exc.problems:
            click.echo(str(problem))
        sys.exit(2)
    click.echo(f"{config_path}: OK")


@cli.command()
@config_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--show-identifiers", is_flag=True,
              help="Show IMEI, IMSI and ICCID in full (masked otherwise).")
def status(config_path: str, as_json: bool, show_identifiers: bool) -> None:
    """Show the running daemon's state."""
    from remsim_supervisor.cli.status import show

    sys.exit(show(config_path, as_json, show_identifiers))


@cli.group()
@click.argument("name")
@click.pass_context
def modem(ctx: click.Context, name: str) -> None:
    """Act on one modem through the daemon: modem NAME at "CMD"."""
    ctx.obj = name


@modem.command("at")
@config_option
@click.argument("command")
@click.option("--timeout", type=float, default=None, help="Seconds to wait for the answer.")
@click.pass_obj
def modem_at(name: str, config_path: str, command: str, timeout: float | None) -> None:
    """Send one AT command through the daemon's own port handling."""
    wait = (timeout or 10.0) + 5.0
    answer = ask(
        config_path,
        {"cmd": "at", "modem": name, "command": command, "timeout": timeout},
        timeout=wait,
    )
    if not answer.get("ok"):
        fail(str(answer.get("error")), 1)
    for line in answer.get("lines", []):
        click.echo(line)
    click.echo(answer.get("final", ""))
    sys.exit(1 if answer.get("error") else 0)


@cli.command("test-heartbeat")
@config_option
@click.option(
    "--via",
    default="iot",
    show_default=True,
    metavar="iot|primary|NAME",
    help="The modem to send over (a role or a modem name).",
)
@click.option(
    "--count",
    type=click.IntRange(1, 100),
    default=1,
    show_default=True,
    help="How many heartbeats.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def test_heartbeat(config_path: str, via: str, count: int, as_json: bool) -> None:
    """Send real heartbeats now over one modem; print RTT, HTTP status and bytes."""
    from remsim_supervisor.cli.testbeat import run_test_heartbeat

    sys.exit(run_test_heartbeat(config_path, via, count, as_json, environment()))


@cli.command("event")
@config_option
@click.argument("cause")
def event_command(config_path: str, cause: str) -> None:
    """Handle an osmo-remsim-client event (its -e script); reads REMSIM_*."""
    from remsim_supervisor.cli.event import run_event

    sys.exit(run_event(cause, config_path, os.environ))


@modem.command("reset")
@config_option
@click.option("--level", default="soft_reset", show_default=True,
              type=click.Choice([rung for rung in RUNGS if rung != REROUTE]),
              help="Which recovery step.")
@click.option("--timeout", type=float, default=None,
              help="Seconds to wait for the modem to come back (default: the step's cost).")
@click.pass_obj
def modem_reset(name: str, config_path: str, level: str, timeout: float | None) -> None:
    """One recovery step now; exit 0 if the modem came back (registered again)."""
    answer = ask(config_path, {"cmd": "reset", "modem": name, "level": level,
                               "timeout": timeout}, timeout=(timeout or 300.0) + 30.0)
    if not answer.get("ok"):
        fail(str(answer.get("error")), 1)
    if answer.get("came_back"):
        click.echo(f"{name}: {level} done, {answer.get('state')} again after "
                   f"{answer.get('took_s')} s")
        return
    fail(str(answer.get("message") or f"{name} did not come back"), 1)


@cli.command(hidden=True)
@config_option
@click.argument("subsystem")
def hotplug(config_path: str, subsystem: str) -> None:
    """Hand a hotplug event to the daemon (called by /etc/hotplug.d hooks)."""
    env = {k: os.environ[k] for k in HOTPLUG_VARS if k in os.environ}
    try:
        control.request(
            socket_path(config_path),
            {"cmd": "hotplug", "subsystem": subsystem, "env": env},
            timeout=2.0,
        )
    except control.ControlError:
        pass  # no daemon: nothing to tell, and a hook must not fail noisily


def main() -> None:
    logsetup.setup("warning")
    try:
        cli(prog_name="remsim-supervisor")
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # a bug: one line here, the whole story in the log
        logging.getLogger("remsim_supervisor").exception("unexpected error")
        fail(f"internal error: {type(exc).__name__}: {exc} (details in logread)", 70)


if __name__ == "__main__":
    main()
