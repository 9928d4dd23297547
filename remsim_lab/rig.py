"""A bench rig: emulated modems on a fake USB bus, and the real daemon over them.

The rig puts together what the end-to-end tests, the benchmarks and the lab
all need (run as root: the daemon runs in a network namespace of the rig's
own unless it is given one, so its rules never touch the host): a fake
sysfs tree (:mod:`remsim_lab.fakesysfs`) where each modem is
plugged at a USB path with its vendor's interface layout, a
modem emulator (:mod:`remsim_lab.emulator`) on a real
pseudo-terminal behind the AT tty that layout names, a UCI configuration
naming the modems by USB path only, and ``remsim-supervisor run`` started as
a real process pointed at the fake tree through its environment hooks
(``REMSIM_SUPERVISOR_SYSFS``, ``_DEV``, ``_LOCK_DIR``).

Unplugging a modem closes its pty and removes its sysfs device, as a USB
unplug does; plugging it back re-creates both, possibly under another tty
name. Everything the rig makes lives under one directory it is given.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from remsim_lab.emulator import ModemEmulator
from remsim_lab.fakesysfs import FakeSysfs
from remsim_lab.gpiowatch import ResetWatcher
from remsim_supervisor.adapters.discovery import Discovery
from remsim_supervisor.adapters.gpio import SIM_GPIO_ENV, SimGpio
from remsim_supervisor.supervisor import control


@dataclass
class RigModem:
    name: str
    role: str
    dialect: str
    usb_path: str
    vid: int
    pid: int
    options: dict[str, str] = field(default_factory=dict)
    emulator: ModemEmulator | None = None
    tty: str | None = None
    reset_watcher: ResetWatcher | None = None
    #: Every AT port of the modem's layout answers (the main one and, e.g. on
    #: an EC25, ttyUSB3), not only the main one.
    all_at_ports: bool = False

    @property
    def sim_line(self) -> str:
        return f"{self.name}_sim"

    @property
    def reset_line(self) -> str:
        return f"{self.name}_reset"


def default_modems() -> list[RigModem]:
    return [
        RigModem("modem1", "primary", "ec25", "1-1", 0x2C7C, 0x0125),
        RigModem("modem2", "iot", "fm350gl", "1-2", 0x0E8D, 0x7126),
    ]


class Rig:
    def __init__(
        self,
        root: str | os.PathLike[str],
        modems: list[RigModem] | None = None,
        *,
        emulator_options: Mapping[str, Any] | None = None,
        ionmesh_url: str = "http://127.0.0.1:5000",
        ionmesh_options: Mapping[str, str] | None = None,
        guardian: bool = False,
    ) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.sysfs = FakeSysfs(self.root / "fs")
        self.lock_dir = self.root / "lock"
        self.lock_dir.mkdir(exist_ok=True)
        self.socket = str(self.root / "ctl.sock")
        self.config_path = self.root / "remsim-supervisor.conf"
        self.log_path = self.root / "daemon.log"
        self.modems = {m.name: m for m in (modems or default_modems())}
        self.emulator_options = dict(emulator_options or {})
        self.ionmesh_url = ionmesh_url
        self.ionmesh_options = dict(ionmesh_options or {})
        # Without the lab network no path ever works, and after its start-up
        # minute the guardian would rightly reset the modems: off unless asked.
        self.guardian = guardian
        self.daemon: subprocess.Popen[bytes] | None = None
        self._log_file: Any = None
        self._own_netns: str | None = None
        # Simulated SIM-switch and reset lines, one pair per modem: a reset
        # pulse on a modem's line reboots its emulator, as the pin would.
        self.gpio_root = self.root / "gpio"
        self.gpio = SimGpio(str(self.gpio_root))

    @classmethod
    def for_lab(
        cls,
        root: str | os.PathLike[str],
        ionmesh_url: str,
        *,
        timeout: float = 1.5,
        min_interval: int = 2,
        extra_config: str = "",
    ) -> Rig:
        """A rig for the lab network: the modems' data devices are its carriers'
        (``wwan0`` primary, ``wwan1`` IoT; :mod:`remsim_lab.network`).
        The lab's IonMesh asks for heartbeats every few seconds: ``min_interval``
        (``ionmesh.min_heartbeat_interval``) lets it."""
        rig = cls(root, ionmesh_url=ionmesh_url,
                  ionmesh_options={"timeout": f"{timeout:g}",
                                   "min_heartbeat_interval": str(min_interval)},
                  guardian=True)
        rig.modems["modem1"].options["device"] = "wwan0"
        rig.modems["modem2"].options["device"] = "wwan1"
        rig.write_config(extra_config)
        rig.plug("modem1")
        rig.plug("modem2")
        return rig

    # -- modems -------------------------------------------------------------

    def plug(self, name: str, **emulator_options: Any) -> str:
        """Plug the modem into the fake bus and start (or re-plug) its emulator."""
        modem = self.modems[name]
        self.sysfs.add_usb_modem(modem.usb_path, modem.vid, modem.pid)
        found = Discovery(self.sysfs.sysfs_root, self.sysfs.dev_root).find(usb_path=modem.usb_path)
        if found is None or found.at_tty is None:
            raise RuntimeError(f"fake sysfs has no AT tty for {name} at {modem.usb_path}")
        modem.tty = found.at_tty
        link = os.path.join(self.sysfs.dev_root, found.at_tty)
        extra = [p for p in found.at_ports if p != link] if modem.all_at_ports else []
        if modem.emulator is None:
            options = {**self.emulator_options, **emulator_options}
            modem.emulator = ModemEmulator(modem.dialect, link=link, extra_links=extra, **options)
            modem.emulator.start()
            emulator = modem.emulator
            modem.reset_watcher = ResetWatcher(
                self.gpio, modem.reset_line, lambda: emulator.hardware_reset()
            )
        else:
            modem.emulator.extra_links = extra
            modem.emulator.plug(new_link=link)
        return link

    def unplug(self, name: str) -> None:
        modem = self.modems[name]
        if modem.emulator is not None:
            modem.emulator.unplug()
        self.sysfs.remove_usb_device(modem.usb_path)
        modem.tty = None

    def emulator(self, name: str) -> ModemEmulator:
        emulator = self.modems[name].emulator
        assert emulator is not None, f"{name} was never plugged"
        return emulator

    # -- configuration and daemon --------------------------------------------

    def write_config(self, extra: str = "") -> Path:
        lines = [
            "config supervisor 'main'",
            "\toption log_level 'debug'",
            f"\toption control_socket '{self.socket}'",
            f"\toption metrics_file '{self.root / 'metrics' / 'remsim_supervisor.prom'}'",
            "",
            "config ionmesh 'ionmesh'",
            f"\toption url '{self.ionmesh_url}'",
            "\toption client_id 'rig-router'",
            *[f"\toption {k} '{v}'" for k, v in self.ionmesh_options.items()],
            "",
        ]
        for modem in self.modems.values():
            lines += [
                f"config modem '{modem.name}'",
                f"\toption role '{modem.role}'",
                f"\toption usb_path '{modem.usb_path}'",
                f"\toption sim_gpio 'sim:{modem.sim_line}'",
                f"\toption reset_gpio 'sim:{modem.reset_line}'",
            ]
            lines += [f"\toption {k} '{v}'" for k, v in modem.options.items()]
            lines.append("")
        if not self.guardian:
            lines += ["config escalation 'watch_only'", "\toption enabled '0'", ""]
        self.config_path.write_text("\n".join(lines) + "\n" + extra)
        return self.config_path

    def environment(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("MODEM1_", "MODEM2_", "IONMESH_", "OPENWRT_"))
            # a CI runner inside a systemd service must not hand its own
            # manager's sockets to the daemon under test
            and k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM")
        }
        env.update(
            {
                "REMSIM_SUPERVISOR_SYSFS": self.sysfs.sysfs_root,
                "REMSIM_SUPERVISOR_DEV": self.sysfs.dev_root,
                "REMSIM_SUPERVISOR_LOCK_DIR": str(self.lock_dir),
                "REMSIM_SUPERVISOR_STATE_DIR": str(self.root / "state"),
                SIM_GPIO_ENV: str(self.gpio_root),
                "PYTHONUNBUFFERED": "1",
            }
        )
        return env

    def start_daemon(
        self, *extra_args: str, env: Mapping[str, str] | None = None, netns: str | None = None
    ) -> subprocess.Popen[bytes]:
        """Start ``remsim-supervisor run``; inside network namespace ``netns`` if given."""
        if not self.config_path.exists():
            self.write_config()
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 (open for the daemon's life)
        full_env = self.environment()
        full_env.update(env or {})
        if netns is None:
            netns = self._private_netns()
        prefix = ["ip", "netns", "exec", netns]
        self.daemon = subprocess.Popen(
            [
                *prefix,
                sys.executable,
                "-m",
                "remsim_supervisor",
                "run",
                "-c",
                str(self.config_path),
                "--log-stderr",
                *extra_args,
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=full_env,
        )
        return self.daemon

    def _private_netns(self) -> str:
        """A network namespace of the rig's own, so the daemon's rules never touch the host."""
        if self._own_netns is None:
            name = f"rig-{os.getpid()}-{uuid.uuid4().hex[:6]}"
            subprocess.run(["ip", "netns", "add", name], check=True)
            self._own_netns = name
            subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        return self._own_netns

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def request(self, message: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
        return control.request(self.socket, message, timeout=timeout)

    def status(self, timeout: float = 10.0) -> dict[str, Any]:
        answer = self.request({"cmd": "status"}, timeout)
        assert answer.get("ok"), answer
        return answer["status"]

    def modem_status(self, name: str, status: dict[str, Any] | None = None) -> dict[str, Any]:
        for modem in (status or self.status())["modems"]:
            if modem["name"] == name:
                return modem
        raise KeyError(name)

    def wait_for(
        self,
        predicate: Callable[[dict[str, Any]], bool],
        timeout: float = 20.0,
        what: str = "condition",
    ) -> dict[str, Any]:
        """Poll the daemon's status until ``predicate`` holds; fail with the last status."""
        deadline = time.monotonic() + timeout
        last: dict[str, Any] | None = None
        while time.monotonic() < deadline:
            if self.daemon is not None and self.daemon.poll() is not None:
                raise AssertionError(
                    f"daemon exited with {self.daemon.returncode}:\n{self.log()[-4000:]}"
                )
            try:
                last = self.status(timeout=2.0)
            except control.ControlError:
                last = None
            if last is not None and predicate(last):
                return last
            time.sleep(0.05)
        raise AssertionError(
            f"timed out waiting for {what}; last status: {last}\n"
            f"daemon log tail:\n{self.log()[-4000:]}"
        )

    def wait_state(self, name: str, state: str, timeout: float = 20.0) -> dict[str, Any]:
        status = self.wait_for(
            lambda s: self.modem_status(name, s)["state"] == state, timeout, f"{name} to be {state}"
        )
        return self.modem_status(name, status)

    def stop_daemon(self, timeout: float = 10.0) -> int | None:
        daemon, self.daemon = self.daemon, None
        if daemon is None:
            return None
        if daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(timeout)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        return daemon.returncode

    def close(self) -> None:
        try:
            self.stop_daemon()
        finally:
            for modem in self.modems.values():
                if modem.reset_watcher is not None:
                    modem.reset_watcher.stop()
                    modem.reset_watcher = None
                if modem.emulator is not None:
                    modem.emulator.stop()
                    modem.emulator = None
            if self._own_netns is not None:
                subprocess.run(["ip", "netns", "del", self._own_netns], check=False)
                self._own_netns = None

    def __enter__(self) -> Rig:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
