"""The supervisor's environment hooks, the model list and the rung names: each written once."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from remsim_supervisor.cli import commands as cli
from remsim_supervisor.config import DEFAULT_PATH, ConfigError, models, parse_config
from remsim_supervisor.config import env as hooks
from remsim_supervisor.config.env import Environment, HookError
from remsim_supervisor.config.options import SECTIONS
from remsim_supervisor.config.overrides import VARIABLES
from remsim_supervisor.core.planner import REROUTE, RUNGS
from remsim_supervisor.vendors import MODEL_KEYS

# --- Environment ---------------------------------------------------------------------------------


def test_nothing_set_gives_a_routers_defaults() -> None:
    env = Environment.from_environ({})
    assert env == Environment()
    assert (env.sysfs, env.dev, env.state_dir, env.lock_dir) == (
        "/sys", "/dev", "/var/run/remsim-supervisor", "/var/lock")
    assert (env.poll_interval, env.sim_gpio, env.ifup, env.ubus) == (30.0, None, ("ifup",), None)
    assert (env.event_settle, env.config, dict(env.overrides)) == (0.5, DEFAULT_PATH, {})


def test_every_hook_is_read() -> None:
    env = Environment.from_environ({
        "REMSIM_SUPERVISOR_SYSFS": "/lab/sys",
        "REMSIM_SUPERVISOR_DEV": "/lab/dev",
        "REMSIM_SUPERVISOR_STATE_DIR": "/lab/state",
        "REMSIM_SUPERVISOR_LOCK_DIR": "/lab/lock",
        "REMSIM_SUPERVISOR_POLL_INTERVAL": "2.5",
        "REMSIM_SUPERVISOR_SIM_GPIO": "/lab/gpio",
        "REMSIM_SUPERVISOR_IFUP": "/lab/bin/ifup --quiet",
        "REMSIM_SUPERVISOR_UBUS": "/lab/bin/ubus",
        "REMSIM_SUPERVISOR_EVENT_SETTLE": "0.05",
        "REMSIM_SUPERVISOR_CONFIG": "/lab/remsim.conf",
    })
    assert env == Environment(
        sysfs="/lab/sys", dev="/lab/dev", state_dir="/lab/state", lock_dir="/lab/lock",
        poll_interval=2.5, sim_gpio="/lab/gpio", ifup=("/lab/bin/ifup", "--quiet"),
        ubus="/lab/bin/ubus", event_settle=0.05, config="/lab/remsim.conf")


def test_the_names_are_the_ones_the_lab_sets() -> None:
    names = (hooks.SYSFS, hooks.DEV, hooks.STATE_DIR, hooks.LOCK_DIR, hooks.POLL_INTERVAL,
             hooks.SIM_GPIO, hooks.IFUP, hooks.UBUS, hooks.EVENT_SETTLE, hooks.CONFIG)
    assert all(name.startswith(hooks.PREFIX) for name in names)
    assert hooks.SIM_GPIO == "REMSIM_SUPERVISOR_SIM_GPIO"
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("name", ["REMSIM_SUPERVISOR_SYSFS", "REMSIM_SUPERVISOR_STATE_DIR",
                                  "REMSIM_SUPERVISOR_LOCK_DIR", "REMSIM_SUPERVISOR_IFUP",
                                  "REMSIM_SUPERVISOR_UBUS", "REMSIM_SUPERVISOR_SIM_GPIO",
                                  "REMSIM_SUPERVISOR_CONFIG", "REMSIM_SUPERVISOR_POLL_INTERVAL"])
@pytest.mark.parametrize("value", ["", "  "])
def test_an_empty_variable_counts_as_unset(name: str, value: str) -> None:
    assert Environment.from_environ({name: value}) == Environment()


@pytest.mark.parametrize("value", ["abc", "0", "-5", "nan", "inf", "30s"])
def test_a_bad_poll_interval_is_one_line_naming_the_variable(value: str) -> None:
    with pytest.raises(HookError) as caught:
        Environment.from_environ({"REMSIM_SUPERVISOR_POLL_INTERVAL": value})
    message = str(caught.value)
    assert message == (f"REMSIM_SUPERVISOR_POLL_INTERVAL: must be a number of seconds above 0, "
                       f"not {value!r}")
    assert isinstance(caught.value, ValueError) and "\n" not in message


@pytest.mark.parametrize(("value", "expected"), [
    ("0.1", 0.1), ("60", 60.0), ("abc", 0.5), ("-1", 0.5), ("0", 0.5), ("61", 0.5),
    ("1e9", 0.5), ("nan", 0.5)])
def test_the_settle_window_falls_back_rather_than_fail(value: str, expected: float) -> None:
    env = Environment.from_environ({"REMSIM_SUPERVISOR_EVENT_SETTLE": value})
    assert env.event_settle == expected


def test_the_overrides_are_osmo_remsims_variables_only() -> None:
    environ = {"MODEM1_DEVICE": "/dev/ttyUSB2", "IONMESH_HOST": "10.0.0.1",
               "OPENWRT_DUAL_MODEM": "0", "MODEM3_DEVICE": "/dev/x", "PATH": "/bin",
               "REMSIM_SUPERVISOR_CONFIG": "/c"}
    env = Environment.from_environ(environ)
    assert dict(env.overrides) == {"MODEM1_DEVICE": "/dev/ttyUSB2", "IONMESH_HOST": "10.0.0.1",
                                   "OPENWRT_DUAL_MODEM": "0"}
    with pytest.raises(TypeError):
        env.overrides["MODEM2_DEVICE"] = "/dev/ttyUSB5"  # type: ignore[index]
    hash(env)  # frozen, and usable as a key


def test_the_overrides_apply_as_the_whole_environment_would() -> None:
    text = ("config ionmesh 'ionmesh'\n\toption url 'http://ionmesh.example.com:5000'\n"
            "config modem 'modem1'\n\toption role 'primary'\n\toption usb_path '1-1'\n")
    environ = {"MODEM1_DEVICE": "/dev/ttyUSB2", "MODEM2_DEVICE": "/dev/ttyUSB7",
               "IONMESH_PORT": "6000", "HOME": "/root", "REMSIM_SUPERVISOR_SYSFS": "/lab"}
    overrides = Environment.from_environ(environ).overrides
    assert parse_config(text, "/c", overrides) == parse_config(text, "/c", environ)
    assert set(VARIABLES) >= set(overrides)


# --- one list of models, one of rungs ----------------------------------------------------------


def test_the_model_choices_are_the_vendor_profiles_and_auto() -> None:
    assert ("auto", *MODEL_KEYS) == models()
    assert set(MODEL_KEYS) <= set(models())


def test_every_rung_of_the_ladder_has_a_step_cost_and_no_other_name_does() -> None:
    base = ("config ionmesh 'ionmesh'\n\toption url 'http://ionmesh.example.com:5000'\n"
            "config modem 'modem1'\n\toption role 'primary'\n\toption usb_path '1-1'\n"
            "config escalation\n")
    text = base + "".join(f"\tlist step_cost '{rung}=7'\n" for rung in RUNGS)
    cfg = parse_config(text, "/c")
    assert [rung for _model, rung, _s in cfg.escalation.step_costs] == list(RUNGS)
    with pytest.raises(ConfigError) as caught:
        parse_config(base + "\tlist step_cost 'reboot=7'\n", "/c")
    assert f"a rung among {', '.join(RUNGS)}," in str(caught.value)
    assert "step_cost" in SECTIONS["escalation"]


def test_the_reset_command_offers_every_rung_that_acts_on_a_modem() -> None:
    command = cli.cli.commands["modem"].commands["reset"]  # type: ignore[attr-defined]
    level = next(p for p in command.params if p.name == "level")
    assert list(level.type.choices) == [rung for rung in RUNGS if rung != REROUTE]


# --- the command line reads the hooks once ------------------------------------------------------


def test_the_cli_takes_its_default_file_from_the_environment() -> None:
    result = CliRunner().invoke(cli.cli, ["check-config"],
                                env={"REMSIM_SUPERVISOR_CONFIG": "/nonexistent/lab.conf"})
    assert result.exit_code == 2
    assert "/nonexistent/lab.conf:0:" in result.output


def test_a_bad_hook_ends_a_command_with_one_line() -> None:
    result = CliRunner().invoke(cli.cli, ["check-config", "-c", "/nonexistent/x.conf"],
                                env={"REMSIM_SUPERVISOR_POLL_INTERVAL": "soon"})
    assert result.exit_code == 2
    assert result.output.strip() == ("remsim-supervisor: REMSIM_SUPERVISOR_POLL_INTERVAL: must be "
                                     "a number of seconds above 0, not 'soon'")
