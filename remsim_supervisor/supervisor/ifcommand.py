"""The ``ifup`` recovery step's commands: restart a modem's network interface.

The command lines come from ``escalation.ifup_command`` and
``escalation.ifdown_command`` (:mod:`remsim_supervisor.config.hosts`) as
words with ``{interface}`` in them, or, by default, OpenWrt's ``ifup`` (or
the ``REMSIM_SUPERVISOR_IFUP`` hook) with the interface appended. No shell
runs: the interface name is one word whatever it holds. ``ifdown`` runs
first when configured (ifupdown's ``ifup`` leaves an interface that is
already up alone); its failure is logged and ``ifup`` runs anyway. Each
command has its own time limit and is killed when it runs over.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

__all__ = ["PLACEHOLDER", "argv", "restart_interface", "run_command"]

log = logging.getLogger("remsim_supervisor.supervisor.ifcommand")

PLACEHOLDER = "{interface}"


def argv(template: Sequence[str], interface: str) -> list[str]:
    """The command line for ``interface``: the placeholder replaced, else the name appended."""
    if not any(PLACEHOLDER in word for word in template):
        return [*template, interface]
    return [word.replace(PLACEHOLDER, interface) for word in template]


async def run_command(command: Sequence[str], timeout: float) -> bool:
    """Run one command; True when it exited 0 within ``timeout`` seconds."""
    shown = " ".join(command)
    try:
        proc = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as exc:
        log.warning("%s failed: %s", shown, exc)
        return False
    try:
        _out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        log.warning("%s took longer than %.0f s", shown, timeout)
        proc.kill()
        await proc.wait()
        return False
    if proc.returncode != 0:
        log.warning("%s exited with %s: %s", shown, proc.returncode,
                    err.decode(errors="replace").strip()[:200])
    return proc.returncode == 0


async def restart_interface(up: Sequence[str], down: Sequence[str] | None, interface: str,
                            timeout: float) -> bool:
    """``down`` (when given) then ``up`` for ``interface``; True when ``up`` succeeded."""
    if down:
        await run_command(argv(down, interface), timeout)
    return await run_command(argv(up, interface), timeout)
