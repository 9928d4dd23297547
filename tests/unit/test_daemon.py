"""The daemon's own rules that need no modem and no namespace: reloads one at a time."""

from __future__ import annotations

import asyncio
from pathlib import Path

from remsim_supervisor.config import (
    Config,
    EscalationConfig,
    IonmeshConfig,
    ModemConfig,
    RoutingConfig,
    SupervisorConfig,
)
from remsim_supervisor.config.env import Environment
from remsim_supervisor.supervisor.daemon import Daemon


def make_daemon(tmp_path: Path) -> Daemon:
    config = Config(
        path=str(tmp_path / "remsim-supervisor"),
        supervisor=SupervisorConfig(control_socket=str(tmp_path / "control.sock")),
        ionmesh=IonmeshConfig(url="http://10.9.9.9:5000", client_id="r"),
        modems=(ModemConfig("modem1", "primary", device="wwan0"),
                ModemConfig("modem2", "iot", device="wwan1")),
        routing=RoutingConfig(),
        escalation=EscalationConfig(),
    )
    return Daemon(config, environment=Environment(state_dir=str(tmp_path)))


def test_two_reloads_at_once_run_one_after_the_other(tmp_path: Path) -> None:
    daemon = make_daemon(tmp_path)
    seen: list[str] = []

    async def slow_reload() -> tuple[bool, str]:
        seen.append("begin")
        await asyncio.sleep(0.01)  # a modem being stopped and started again
        seen.append("end")
        return True, "configuration reloaded"

    daemon._reload = slow_reload  # type: ignore[method-assign]

    async def both() -> list[tuple[bool, str]]:
        # SIGHUP and the control socket's reload, at the same moment.
        return list(await asyncio.gather(daemon.reload(), daemon.reload()))

    answers = asyncio.run(both())
    assert seen == ["begin", "end", "begin", "end"]
    assert answers == [(True, "configuration reloaded")] * 2


def test_a_broken_file_changes_nothing(tmp_path: Path) -> None:
    daemon = make_daemon(tmp_path)
    (tmp_path / "remsim-supervisor").write_text("config nonsense\n")
    before = daemon.config
    ok, message = asyncio.run(daemon.reload())
    assert not ok and message.startswith("configuration not applied, running state unchanged")
    assert daemon.config is before
