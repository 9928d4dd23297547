"""Environment overrides: the variables of osmo-remsim-client-openwrt, applied to the file.

They let an existing setup move over unchanged; empty variables count as
unset. ``MODEM1`` is the section named ``modem1``, else the one with role
``primary``; ``MODEM2`` is ``modem2``, else the ``iot`` one.
``MODEMn_DEVICE`` sets ``at_port`` and, when no such section exists, creates
``modemN`` with the matching role. ``MODEMn_SIM_GPIO``/``_RESET_GPIO`` read a
bare number as a legacy sysfs GPIO number, as the fork does.
``IONMESH_HOST``/``IONMESH_PORT`` rebuild the URL, keeping the scheme, path
and port of a configured one (port 5000 when no URL is configured).
``OPENWRT_DUAL_MODEM=0`` supervises the primary modem only: the ``iot`` modem
is dropped (and ``MODEM2_*`` ignored); ``1`` requires an iot modem.

:data:`VARIABLES` names every variable read here; the supervisor's own
hooks (``REMSIM_SUPERVISOR_*``) are not overrides and live in ``env.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from remsim_supervisor.config.convert import Bad, boolean
from remsim_supervisor.config.sections import Reader, Section, Setting, raw

DUAL_MODEM = "OPENWRT_DUAL_MODEM"
# MODEMn_<suffix> -> the option it sets, for n = 1 (primary) and 2 (iot)
_MODEM_OPTIONS = (("DEVICE", "at_port"), ("SIM_GPIO", "sim_gpio"),
                  ("RESET_GPIO", "reset_gpio"))
_IONMESH_OPTIONS = (("IONMESH_TENANT_ID", "tenant_id"), ("IONMESH_MAPPING_MODE", "mapping_mode"),
                    ("IONMESH_MCC_MNC", "mcc_mnc"))
_IONMESH_VARIABLES = ("IONMESH_HOST", "IONMESH_PORT", *(var for var, _ in _IONMESH_OPTIONS))
VARIABLES = (DUAL_MODEM, *(f"MODEM{n}_{suffix}" for n in (1, 2) for suffix, _ in _MODEM_OPTIONS),
             *_IONMESH_VARIABLES)


def apply_environment(reader: Reader, groups: dict[str, list[Section]],
                      environ: Mapping[str, str]) -> bool | None:
    """Apply overrides; returns OPENWRT_DUAL_MODEM as a bool, None if unset or bad."""
    env = {k: v.strip() for k, v in environ.items() if isinstance(v, str) and v.strip()}
    dual: bool | None = None
    if "OPENWRT_DUAL_MODEM" in env:
        try:
            dual = boolean(env["OPENWRT_DUAL_MODEM"])
        except Bad:
            reader.report(0, "", "", "must be 1 (supervise both modems) or 0 (the primary "
                          f"modem only), not {env['OPENWRT_DUAL_MODEM']!r}",
                          "OPENWRT_DUAL_MODEM")
    modems = groups["modem"]
    targets: dict[int, Section] = {}
    for n, role in ((1, "primary"), (2, "iot")):
        if n == 2 and dual is False:
            continue  # a single-modem setup: MODEM2_* describe nothing supervised
        given = {var: option for var, option in (
            (f"MODEM{n}_{suffix}", option) for suffix, option in _MODEM_OPTIONS) if var in env}
        if not given:
            continue
        section = next((s for s in modems if s.name == f"modem{n}"), None) or next(
            (s for s in modems if raw(s, "role").lower() == role), None)
        if section is None:
            device_var = f"MODEM{n}_DEVICE"
            if device_var not in given:
                first = next(iter(given))
                reader.report(0, f"modem{n}", "", f"no modem{n} section (nor one with role "
                              f"{role!r}) to apply it to: add the section or set "
                              f"{device_var} too", first)
                continue
            section = Section("modem", f"modem{n}", f"modem{n}", 0, variable=device_var)
            section.settings["role"] = Setting([role], [0], device_var)
            modems.append(section)
        if any(section is t for t in targets.values()):
            reader.report(0, section.label, "", "MODEM1_* and MODEM2_* both apply to this "
                          "section: name the sections modem1 and modem2",
                          next(iter(given)))
            continue
        targets[n] = section
        for var, option in given.items():
            section.settings[option] = Setting([env[var]], [0], var)

    _ionmesh_environment(reader, groups, env)
    return dual


def _ionmesh_environment(reader: Reader, groups: dict[str, list[Section]],
                         env: Mapping[str, str]) -> None:
    if not any(n in env for n in _IONMESH_VARIABLES):
        return
    if not groups["ionmesh"]:
        groups["ionmesh"].append(Section("ionmesh", "ionmesh", None, 0))
    section = groups["ionmesh"][0]
    for var, option in _IONMESH_OPTIONS:
        if var in env:
            section.settings[option] = Setting([env[var]], [0], var)
    if "IONMESH_HOST" not in env and "IONMESH_PORT" not in env:
        return
    scheme, host, port, path = "http", "", "", ""
    configured = section.settings.get("url")
    if configured is not None and configured.values[-1].strip():
        try:
            parts = urlsplit(configured.values[-1].strip())
            if parts.scheme in ("http", "https"):
                scheme, path = parts.scheme, parts.path
                host = parts.netloc.rpartition("@")[2]
                host, port = split_host_port(host)
        except ValueError:
            pass  # the file's URL is wrong; the override stands alone
    variable = "IONMESH_HOST" if "IONMESH_HOST" in env else "IONMESH_PORT"
    if "IONMESH_HOST" in env:
        given = env["IONMESH_HOST"]
        if any(c.isspace() or c in "/@?#" for c in given):
            reader.report(0, section.label, "url", f"must be a host name or address, not "
                          f"{given!r}", "IONMESH_HOST")
            return
        host = f"[{given}]" if ":" in given and not given.startswith("[") else given
        if configured is None:
            port = "5000"  # IONMESH.md: the server's default port
    if "IONMESH_PORT" in env:
        given = env["IONMESH_PORT"]
        if not (given.isascii() and given.isdigit() and 1 <= int(given) <= 65535):
            reader.report(0, section.label, "url", f"must be a port number 1-65535, not "
                          f"{given!r}", "IONMESH_PORT")
            return
        port = str(int(given))
    if not host:
        reader.report(0, section.label, "url", "IONMESH_PORT needs a host: set IONMESH_HOST "
                      "or option url", "IONMESH_PORT")
        return
    url = f"{scheme}://{host}{':' + port if port else ''}{path}"
    section.settings["url"] = Setting([url], [0], variable)


def split_host_port(netloc: str) -> tuple[str, str]:
    if netloc.startswith("["):
        host, _, rest = netloc.partition("]")
        return host + "]", rest[1:] if rest.startswith(":") else ""
    host, _, port = netloc.partition(":")
    return host, port
