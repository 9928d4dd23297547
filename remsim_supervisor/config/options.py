"""The option table: for each section type, its options and how to read each.

One table serves the unknown-name check, the typo suggestions and the
conversions. An :class:`Opt` names the converter, the :class:`Config`
dataclass field when it differs from the option's name, whether the option is
a UCI ``list``, and a converter of its own for an environment override when
the override reads differently (the fork's bare sysfs GPIO numbers).
"""

from __future__ import annotations

from dataclasses import dataclass

from remsim_supervisor.config import convert as cv
from remsim_supervisor.config import hosts
from remsim_supervisor.config.lan import options as lan_options
from remsim_supervisor.config.types import LOG_LEVELS, MAPPING_MODES, ROLES, models


@dataclass(frozen=True)
class Opt:
    convert: cv.Convert
    attribute: str | None = None  # the dataclass field, when it differs from the option
    is_list: bool = False
    from_environment: cv.Convert | None = None  # when an override reads differently


SECONDS = "seconds"
SECTIONS: dict[str, dict[str, Opt]] = {
    "supervisor": {
        "enabled": Opt(cv.boolean),
        "grace_period": Opt(cv.integer(1, None, SECONDS)),
        "log_level": Opt(cv.choice(LOG_LEVELS)),
        "control_socket": Opt(cv.absolute_path("/var/run/remsim-supervisor.sock")),
        "data_budget_mb": Opt(cv.positive("megabytes")),
        "metrics": Opt(cv.boolean),
        "metrics_file": Opt(cv.absolute_path("/var/prometheus/remsim_supervisor.prom")),
        "usb_monitor": Opt(cv.choice(hosts.USB_MONITORS)),
    },
    "ionmesh": {
        "url": Opt(cv.url),
        "client_id": Opt(cv.plain_text),
        "tenant_id": Opt(cv.integer(1)),
        "mapping_mode": Opt(cv.choice(MAPPING_MODES, str.upper)),
        "mcc_mnc": Opt(cv.mcc_mnc),
        "api_key": Opt(cv.secret),
        "heartbeat_interval": Opt(cv.integer(10, 3600, SECONDS)),
        "min_heartbeat_interval": Opt(cv.integer(1, 3600, SECONDS)),
        "timeout": Opt(cv.positive(SECONDS)),
        "ca_file": Opt(cv.absolute_path("/etc/ssl/certs/ca-certificates.crt")),
    },
    "modem": {
        "role": Opt(cv.choice(ROLES)),
        "model": Opt(cv.choice(models, cv.model_key)),
        "usb_path": Opt(cv.usb_path),
        "usb_id": Opt(cv.usb_id),
        "at_port": Opt(cv.at_port),
        "interface": Opt(cv.interface),
        "device": Opt(cv.device),
        "sim_gpio": Opt(cv.gpio, from_environment=cv.legacy_gpio),
        "reset_gpio": Opt(cv.gpio, from_environment=cv.legacy_gpio),
        "power_gpio": Opt(cv.gpio, from_environment=cv.legacy_gpio),
        "sim_active_low": Opt(cv.boolean),
        "reset_active_low": Opt(cv.boolean),
        "power_active_low": Opt(cv.boolean),
        "sim_remote_value": Opt(cv.level),
        "reset_pulse_ms": Opt(cv.integer(1, 10000, "milliseconds")),
    },
    "routing": {
        "table": Opt(cv.table),
        "priority": Opt(cv.priority),
        "pin": Opt(cv.pin, attribute="pins", is_list=True),
        "failback_after": Opt(cv.integer(1, None, "heartbeats")),
        "mark": Opt(cv.mark),
        "resolve_interval": Opt(cv.integer(30, 86400, SECONDS)),
    },
    "escalation": {
        "enabled": Opt(cv.boolean),
        "step_cost": Opt(cv.step_cost, attribute="step_costs", is_list=True),
        "margin": Opt(cv.integer(0, None, SECONDS)),
        "max_resets_per_hour": Opt(cv.integer(1)),
        "ifup_command": Opt(hosts.command_template),
        "ifdown_command": Opt(hosts.command_template),
    },
    "notify": {
        "directory": Opt(cv.absolute_path("/etc/remsim-supervisor/notify.d")),
        "webhook": Opt(cv.webhook),
        "webhook_via_iot": Opt(cv.boolean),
        "grace_threshold": Opt(cv.integer(1, None, SECONDS)),
        "timeout": Opt(cv.positive(SECONDS)),
    },
    "lan": {name: Opt(convert, attribute, is_list)
            for name, (convert, attribute, is_list) in lan_options().items()},
}
SINGLETONS = ("supervisor", "ionmesh", "routing", "escalation", "notify", "lan")
