"""One modem's owner task: find it, open its AT port, probe it, watch it.

Each configured modem gets exactly one :class:`ModemRunner` task, and that
task is the only thing that ever touches the modem's AT port (the ``modem NAME
at`` command goes through it too, never through a second opener). The
runner turns what happens on the port into events for the pure state machine
in :mod:`remsim_supervisor.core.machine` and carries out its actions.

The loop, per modem:

1. *Locate*: the configured ``at_port``, or sysfs discovery from ``usb_path``
   / ``usb_id`` to the AT tty by interface number. Nothing there: ``absent``,
   look again after ``rescan_interval`` or at once on a hotplug event.
2. *Open* the port (exclusive, lock files honoured); a port another program
   holds is reported and left alone.
3. *Probe*: ``AT`` until it answers, echo off, verbose errors on, identify
   (``+CGMI``/``+CGMM``/``+CGMR``), choose the vendor profile, send its init
   commands, read IMEI, SIM state, IMSI and ICCID.
4. *Watch*: registration URCs are applied as they arrive; registration,
   operator and signal are polled every ``poll_interval``; a SIM URC refreshes
   the SIM state at once; ``RDY`` or an unsolicited ``+CPIN: READY`` means the
   modem rebooted: probe again.
5. The port failing (``EIO``, hang-up) ends the session: ``absent``, back to 1.

Every command has a timeout. A modem that stops answering turns ``failed``
after three timeouts in a row and is probed again with a capped backoff; it
never holds up another modem's task or the control socket. ``AT+COPS=?`` is
never sent.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from dataclasses import dataclass
from typing import Any

from remsim_supervisor import log as logsetup
from remsim_supervisor.core import parsers
from remsim_supervisor.core.at import Response
from remsim_supervisor.config import ModemConfig
from remsim_supervisor.adapters.discovery import Discovery, FoundModem
from remsim_supervisor.log import mask
from remsim_supervisor.core import machine as m
from remsim_supervisor.adapters.serialport import (
    DEFAULT_LOCK_DIR,
    AtChannel,
    AtTimeout,
    ByteBudget,
    PortBusy,
    PortError,
    PortGone,
    SerialPort,
)
from remsim_supervisor.vendors import ModemProfile, get_profile, identify, profile_for_usb_id

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


@dataclass(frozen=True)
class RunnerSettings:
    poll_interval: float = 30.0
    rescan_interval: float = 2.0
    busy_rescan_interval: float = 10.0
    probe_backoff_max: float = 30.0
    command_timeout: float | None = None  # None: the vendor profile's
    lock_dir: str = DEFAULT_LOCK_DIR


class ModemRunner:
    def __init__(
        self, cfg: ModemConfig, discovery: Discovery, settings: RunnerSettings = RunnerSettings()
    ) -> None:
        self.cfg = cfg
        self.discovery = discovery
        self.settings = settings
        self.facts = m.ModemFacts()
        self.profile: ModemProfile | None = None
        self.found: FoundModem | None = None
        self.channel: AtChannel | None = None
        self.port: SerialPort | None = None
        # One budget for the modem's life, so the dropped count survives reopens.
        self.budget = ByteBudget()
        self.since = time.monotonic()
        self.log = logging.getLogger(f"remsim_supervisor.modem.{cfg.name}")
        # lines no URC table knows: a flooding port must not flood the log at debug
        self._unknown_lines = logsetup.Budget(20, 60.0)
        self.link_state: dict[str, bool] = {}
        self.l3_device: str | None = None  # netifd's, for cfg.interface
        self._wake = asyncio.Event()
        self._reprobe = False
        self._refresh_sim = False
        self._refresh_net = False
        self._probing = False

    # -- facts and actions ------------------------------------------------

    @property
    def name(self) -> str:
        return self.cfg.name

    @property
    def data_device(self) -> str | None:
        """The Linux network device that carries this modem's data.

        ``option device``, else netifd's layer-3 device of ``interface`` (as
        ubus or an iface hotplug event told it), else the network interface
        the modem's USB device has, else ``interface`` itself.
        """
        if self.cfg.device:
            return self.cfg.device
        if self.l3_device:
            return self.l3_device
        if self.found is not None and self.found.net_ifaces:
            return self.found.net_ifaces[0]
        return self.cfg.interface

    def apply(self, event: m.Event) -> None:
        before = self.facts.state
        if (
            isinstance(event, m.NotFound)
            and before == "absent"
            and event.reason != self.facts.reason
        ):
            # Absent with a new reason (first look, port now held by another
            # program...): worth a line even though the state is unchanged.
            self.log.warning("%s (%s): absent: %s", self.name, self.cfg.role, event.reason)
        self.facts, actions = m.step(self.facts, event)
        if self.facts.state != before:
            self.since = time.monotonic()
        for action in actions:
            if isinstance(action, m.Log):
                self.log.log(
                    LEVELS.get(action.level, logging.INFO),
                    "%s (%s): %s",
                    self.name,
                    self.cfg.role,
                    action.message,
                )
            elif isinstance(action, m.Reprobe):
                self._reprobe = True
                self._wake.set()
            elif isinstance(action, m.RefreshSim):
                self._refresh_sim = True
                self._wake.set()
            elif isinstance(action, m.RefreshRegistration):
                self._refresh_net = True
                self._wake.set()

    def set_l3_device(self, device: str | None) -> None:
        """netifd says which device carries ``interface`` (None: it went down)."""
        if device == self.l3_device:
            return
        self.l3_device = device
        self.log.info("%s (%s): interface %s is on device %s", self.name, self.cfg.role,
                      self.cfg.interface, device or "none")
        up = self.link_state.get(device) if device else None
        if up is not None and self.facts.link_up != up:
            self.apply(m.LinkChanged(up))

    def link_changed(self, name: str, up: bool) -> None:
        self.link_state[name] = up
        if name == self.data_device and self.facts.link_up != up:
            self.apply(m.LinkChanged(up))

    def check_now(self) -> None:
        """Something suggests the modem is in trouble (a heartbeat over it was lost):
        poll it now, so a wedged AT port shows within seconds, not at the next poll."""
        self._refresh_net = True
        self._wake.set()

    def hotplug(self) -> None:
        """Something changed on USB or netifd: look again now."""
        self._wake.set()

    # -- the owner loop ---------------------------------------------------

    async def run(self) -> None:
        try:
            while True:
                path, why = self._locate()
                if path is None:
                    self.apply(m.NotFound(why))
                    await self._pause(self.settings.rescan_interval)
                    continue
                port = SerialPort(path, lock_dir=self.settings.lock_dir)
                try:
                    await port.open()
                except PortBusy as exc:
                    self.apply(m.NotFound(f"AT port {path} {exc}"))
                    await self._pause(self.settings.busy_rescan_interval)
                    continue
                except PortError as exc:
                    self.apply(m.NotFound(str(exc)))
                    await self._pause(self.settings.rescan_interval)
                    continue
                self.port = port
                self.channel = AtChannel(port, on_urc=self._on_urc, budget=self.budget,
                                         name=self.name)
                self.apply(m.PortOpened(path))
                device = self.data_device
                if device and device in self.link_state:
                    self.apply(m.LinkChanged(self.link_state[device]))
                reason = "port closed"
                try:
                    await self._session(self.channel)
                except PortGone as exc:
                    reason = f"AT port lost: {port.lost_reason or exc}"
                finally:
                    self.channel = None
                    self.port = None
                    await port.close()
                self.apply(m.PortLost(reason))
        except asyncio.CancelledError:
            if self.port is not None:
                await asyncio.shield(self.port.close())
            raise

    def _locate(self) -> tuple[str | None, str]:
        cfg = self.cfg
        if cfg.at_port:
            self.found = None
            import os.path

            if os.path.exists(cfg.at_port):
                return cfg.at_port, ""
            return None, f"AT port {cfg.at_port} does not exist"
        model = None if cfg.model in ("auto", "") else cfg.model
        try:
            found = self.discovery.find(usb_path=cfg.usb_path, usb_id=cfg.usb_id, model=model)
        except Exception as exc:  # sysfs changing under our feet
            self.log.debug("%s: discovery failed: %s", self.name, exc)
            found = None
        self.found = found
        where = (
            (cfg.usb_path and f"USB path {cfg.usb_path}")
            or (cfg.usb_id and f"USB id {cfg.usb_id[0]:04x}:{cfg.usb_id[1]:04x}")
            or "any known modem"
        )
        if found is None:
            return None, f"no modem at {where}"
        if found.at_device:
            return found.at_device, ""
        if found.at_candidates:
            return found.at_candidates[0], ""
        return None, f"modem at {where} has no AT port (yet)"

    async def _pause(self, seconds: float) -> None:
        """Sleep until woken (hotplug, URC) or ``seconds`` pass; PortGone if the port dies."""
        self._wake.clear()
        waits: set[asyncio.Future[Any]] = {asyncio.ensure_future(self._wake.wait())}
        lost = None
        if self.port is not None:
            lost = asyncio.ensure_future(self.port.lost.wait())
            waits.add(lost)
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
        if lost is not None and self.port is not None and self.port.lost.is_set():
            raise PortGone(self.port.lost_reason)

    async def _session(self, ch: AtChannel) -> None:
        backoff = 1.0
        while True:
            self._reprobe = False
            self._probing = True
            try:
                ok = await self._probe(ch)
            finally:
                self._probing = False
            if not ok:
                await self._pause(backoff)
                backoff = min(backoff * 2, self.settings.probe_backoff_max)
                continue
            backoff = 1.0
            while not self._reprobe:
                if not (self._refresh_sim or self._refresh_net):
                    await self._pause(self.settings.poll_interval)
                if self._reprobe:
                    break
                if self.facts.timeouts >= m.WEDGED_AFTER:
                    break  # wedged: probe again, with backoff
                if self._refresh_sim or self.facts.sim_lock != "ready":
                    self._refresh_sim = False
                    await self._check_sim(ch)
                if self.facts.sim_lock == "ready" and not self.facts.timeouts:
                    self._refresh_net = False
                    await self._poll_network(ch)
                else:
                    self._refresh_net = False
                await self._confirm_alive(ch)
            if not self._reprobe:
                await self._pause(backoff)
                backoff = min(backoff * 2, self.settings.probe_backoff_max)

    # -- commands -----------------------------------------------------------

    def _timeout(self) -> float:
        if self.settings.command_timeout is not None:
            return self.settings.command_timeout
        if self.profile is not None:
            return self.profile.timings.command_timeout_s
        return 5.0

    async def _cmd(
        self, ch: AtChannel, command: str, timeout: float | None = None
    ) -> Response | None:
        try:
            response = await ch.command(command, timeout or self._timeout())
        except AtTimeout as exc:
            self.log.debug("%s: %s", self.name, exc)
            self.apply(m.TimedOut(command))
            return None
        self.apply(m.Answered())
        if response.final.is_error:
            self.log.debug("%s: %s -> %s", self.name, command, response.final.text)
        return response

    async def at(self, command: str, timeout: float | None = None) -> Response:
        """One AT command on behalf of the control socket (same port, same lock)."""
        ch = self.channel
        if ch is None:
            raise PortError(f"{self.name} is {self.facts.state}: {self.facts.reason}")
        return await ch.command(command, timeout or self._timeout())

    async def _probe(self, ch: AtChannel) -> bool:
        for _ in range(3):
            if await self._cmd(ch, "AT", timeout=min(self._timeout(), 3.0)) is not None:
                break
        else:
            return False
        await self._cmd(ch, "ATE0")
        await self._cmd(ch, "AT+CMEE=1")
        manufacturer = _first_line(await self._cmd(ch, "AT+CGMI"))
        model_name = _first_line(await self._cmd(ch, "AT+CGMM"))
        revision = _first_line(await self._cmd(ch, "AT+CGMR"))
        profile = self._choose_profile(manufacturer, model_name)
        self.profile = profile
        for command in profile.init_commands:
            if command.upper() in ("ATE0", "AT+CMEE=1"):
                continue
            await self._cmd(ch, command)
        imei_cmd = profile.identity_commands.get("imei", "AT+CGSN")
        imei = parsers.parse_imei(_lines(await self._cmd(ch, imei_cmd)))
        if self.facts.timeouts >= m.WEDGED_AFTER:
            return False
        self.apply(
            m.Identified(
                profile=profile.key,
                manufacturer=_clean(manufacturer),
                model_name=_clean(model_name),
                revision=_clean(revision),
                imei=imei,
            )
        )
        self.log.info(
            "%s (%s): %s %s, firmware %s, IMEI %s, on %s",
            self.name,
            self.cfg.role,
            manufacturer or "?",
            model_name or "?",
            revision or "?",
            mask(imei),
            ch.port.path,
        )
        await self._check_sim(ch)
        if self.facts.sim_lock == "ready":
            await self._subscriber(ch)
            await self._poll_network(ch)
        return True

    def _choose_profile(self, manufacturer: str | None, model_name: str | None) -> ModemProfile:
        cfg = self.cfg
        if cfg.model not in ("auto", ""):
            profile = get_profile(cfg.model)
        else:
            text = " ".join(x for x in (manufacturer, model_name) if x)
            profile = identify(text)
            if profile.key == "generic" and self.found is not None:
                by_id = self.found.profile or profile_for_usb_id(self.found.vid, self.found.pid)
                if by_id is not None:
                    profile = by_id
        if cfg.reset_pulse_ms is not None:
            profile = profile.with_overrides(reset_pulse_ms=cfg.reset_pulse_ms)
        return profile

    async def _check_sim(self, ch: AtChannel) -> None:
        command = self.profile.sim_command if self.profile else "AT+CPIN?"
        r = await self._cmd(ch, command)
        if r is None:
            return
        if r.ok:
            text = next(
                (ln for ln in r.lines if "CPIN" in ln.upper()), r.lines[0] if r.lines else ""
            )
            lock = parsers.parse_cpin(text) if text else "unknown"
        else:
            lock = parsers.parse_cpin(r.final.text)
        if lock != self.facts.sim_lock:
            self.log.debug("%s: SIM %s", self.name, lock)
        self.apply(m.SimState(lock))

    async def _subscriber(self, ch: AtChannel) -> None:
        assert self.profile is not None
        imsi = parsers.parse_imsi(
            _lines(await self._cmd(ch, self.profile.identity_commands.get("imsi", "AT+CIMI")))
        )
        iccid = None
        r = await self._cmd(ch, self.profile.identity_commands.get("iccid", "AT+CCID"))
        for line in _lines(r):
            value = line.split(":", 1)[1] if ":" in line else line
            iccid = parsers.parse_iccid(value.strip().strip('"'))
            if iccid:
                break
        self.apply(m.SubscriberIds(imsi=imsi, iccid=iccid))

    async def _confirm_alive(self, ch: AtChannel) -> None:
        """After a timeout, ask plain ``AT`` until it answers or the modem counts as wedged.

        The rest of a poll cycle is not worth waiting out command by command:
        a short liveness check decides within seconds whether the port is dead.
        """
        while 0 < self.facts.timeouts < m.WEDGED_AFTER:
            await self._cmd(ch, "AT", timeout=min(self._timeout(), 3.0))

    async def _poll_network(self, ch: AtChannel) -> None:
        assert self.profile is not None
        for command in self.profile.registration_commands:
            r = await self._cmd(ch, command)
            if r is None:
                return  # timed out: the caller checks the port is alive
            for line in _lines(r):
                reg = self._apply_registration(line)
                if reg is not None and reg.is_urc:
                    # A URC of the same family came in while the query was
                    # pending: which of the two is newer cannot be told, so
                    # ask again once everything has settled.
                    self._refresh_net = True
        r = await self._cmd(ch, self.profile.operator_command)
        if r is None:
            return
        cops = parsers.parse_cops(" ".join(_lines(r)))
        if cops is not None:
            self.apply(m.OperatorReport(cops.operator, _tech(cops.access_tech)))
        for command in self.profile.signal_commands:
            r = await self._cmd(ch, command)
            if r is None:
                return
            values = _signal_values(_lines(r)) if r is not None and r.ok else ()
            if values:
                self.apply(m.SignalReport(values))
                break

    def _apply_registration(self, line: str) -> parsers.Registration | None:
        reg = parsers.parse_registration(line)
        if reg is None:
            return None
        self.apply(
            m.RegistrationReport(
                m.Registration(
                    kind=reg.kind,
                    state=reg.state,
                    access_tech=reg.access_tech or "unknown",
                    lac=reg.lac,
                    ci=reg.ci,
                )
            )
        )
        return reg

    # -- unsolicited ------------------------------------------------------

    def _on_urc(self, line: str) -> None:
        try:
            self._handle_urc(line)
        except Exception:  # a garbled URC is logged and survived
            self.log.exception("%s: could not handle URC %r", self.name, line)

    def _handle_urc(self, line: str) -> None:
        kind = parsers.classify_urc(line)
        held = 0 if kind is not None else self._unknown_lines.take()
        if held is not None:
            more = f"; {held} more unknown lines not logged" if held else ""
            self.log.debug("%s: URC %r (%s)%s", self.name, line, kind, more)
        if kind == "registration":
            self._apply_registration(line)
            return
        booted = kind == "rdy" or (
            self.profile is not None
            and any(
                line.strip().upper() == u.upper()
                for u in self.profile.boot_urcs
                if u.upper() != "+CPIN: READY"
            )
        )
        cpin_ready = kind in ("cpin", "sim_ready") and parsers.parse_cpin(line) == "ready"
        if booted or (cpin_ready and self.facts.sim_lock == "ready"):
            if self._probing:
                self._reprobe = True
            else:
                self.apply(m.Rebooted(line))
            return
        if kind in ("cpin", "sim_ready", "sim_removed", "sim_inserted"):
            self._refresh_sim = True
            self._wake.set()
        elif kind == "cgev":
            self._refresh_net = True
            self._wake.set()

    # -- status -------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        f = self.facts
        device = self.data_device
        return {
            "name": self.name,
            "role": self.cfg.role,
            "model": f.profile or self.cfg.model,
            "state": f.state,
            "reason": f.reason,
            "since_s": round(time.monotonic() - self.since, 1),
            "at_port": f.at_port,
            "usb_path": self.found.usb_path if self.found else self.cfg.usb_path,
            "interface": self.cfg.interface,
            "device": device,
            "link": None if f.link_up is None else ("up" if f.link_up else "down"),
            "registration": f.registration_state,
            "access_tech": f.access_tech,
            "operator": f.operator,
            "signal": f.signal_dict,
            "sim": {"slot": None, "state": f.sim_lock},
            "at_dropped_bytes": self.budget.dropped,
            "identity": {
                "manufacturer": f.manufacturer,
                "model": f.model_name,
                "revision": f.revision,
                "imei": f.imei,
                "imsi": f.imsi,
                "iccid": f.iccid,
            },
        }


def _lines(r: Response | None) -> list[str]:
    return list(r.lines) if r is not None and r.ok else []


def _first_line(r: Response | None) -> str | None:
    lines = _lines(r)
    if not lines:
        return None
    line = lines[0]
    # Some firmwares prefix the value: "+CGMI: Quectel".
    if line.startswith("+") and ":" in line:
        line = line.split(":", 1)[1]
    return line.strip().strip('"') or None


def _clean(text: str | None) -> str | None:
    return text.strip() if text else None


def _tech(value: object) -> str | None:
    if value in (None, "", "unknown"):
        return None
    return str(value)


def _signal_values(lines: list[str]) -> tuple[tuple[str, Any], ...]:
    """Signal figures from whichever vendor command answered, in dBm / dB."""
    for line in lines:
        for parse in (
            parsers.parse_qcsq,
            parsers.parse_xcesq,
            parsers.parse_cesq,
            parsers.parse_hcsq,
            parsers.parse_csq,
        ):
            try:
                parsed = parse(line)
            except Exception:
                parsed = None
            if parsed is None or not dataclasses.is_dataclass(parsed):
                continue
            values = {
                k: v
                for k, v in dataclasses.asdict(parsed).items()
                if (k.endswith("_dbm") or k.endswith("_db")) and v is not None
            }
            for key in ("sysmode", "access_tech"):
                v = getattr(parsed, key, None)
                if isinstance(v, str) and v:
                    values["mode"] = v
            if values:
                return tuple(sorted(values.items()))
    return ()
