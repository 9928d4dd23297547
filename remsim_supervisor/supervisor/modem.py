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
   holds is left alone and the modem's next AT port used (``atports.py``).
3. *Probe*: ``AT`` until it answers, echo off, verbose errors on, identify
   (``+CGMI``/``+CGMM``/``+CGMR``), choose the vendor profile, send its init
   commands, read IMEI, SIM state, IMSI and ICCID.
4. *Watch*: URCs arrive classified and parsed by the AT engine with the
   profile's URC table (until the modem is identified, every profile's):
   registration and signal reports are applied as they arrive; a SIM report
   refreshes the SIM state at once; a boot banner, or an unsolicited SIM
   ready while the SIM was ready already, means the modem rebooted: probe
   again. Registration, operator and signal are polled every
   ``poll_interval``.
5. The port failing (``EIO``, hang-up) ends the session: ``absent``, back to 1.

Every command has a timeout. A modem that stops answering turns ``failed``
after three timeouts in a row and is probed again with a capped backoff; it
never holds up another modem's task or the control socket. ``AT+COPS=?`` is
never sent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from remsim_supervisor import log as logsetup
from remsim_supervisor.adapters.discovery import Discovery, FoundModem
from remsim_supervisor.adapters.serialport import (
    DEFAULT_LOCK_DIR,
    AtChannel,
    AtTimeout,
    ByteBudget,
    PortError,
    PortGone,
    SerialPort,
)
from remsim_supervisor.config import ModemConfig
from remsim_supervisor.core import machine as m
from remsim_supervisor.core.at import Response
from remsim_supervisor.core.masking import mask
from remsim_supervisor.core.modemview import ModemSnapshot
from remsim_supervisor.core.parse.packet import Cgev
from remsim_supervisor.core.parse.registration import (
    Registration,
    parse_cops,
    parse_registration,
)
from remsim_supervisor.core.parse.signal import signal_values
from remsim_supervisor.core.parse.sim import (
    Cfun,
    identity_value,
    parse_cpin,
    parse_iccid,
    parse_imei,
    parse_imsi,
)
from remsim_supervisor.core.urc import Urc
from remsim_supervisor.supervisor.atports import PortPicker, port_order
from remsim_supervisor.vendors import (
    ANY_URCS,
    ModemProfile,
    choose_profile,
)


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
        self.ports = PortPicker(cfg.name, self.log, settings.lock_dir)

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
        f = self.facts
        if isinstance(event, m.NotFound) and before == "absent" and event.reason != f.reason:
            # Absent with a new reason (first look, port now held by another
            # program...): worth a line even though the state is unchanged.
            self.log.warning("%s (%s): absent: %s", self.name, self.cfg.role, event.reason)
        self.facts, actions = m.step(self.facts, event)
        if self.facts.state != before:
            self.since = time.monotonic()
        for action in actions:
            if isinstance(action, m.Log):
                self.log.log(logsetup.LEVELS.get(action.level, logging.INFO), "%s (%s): %s",
                             self.name, self.cfg.role, action.message)
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
                    self.ports.forget()
                    self.apply(m.NotFound(why))
                    await self._pause(self.settings.rescan_interval)
                    continue
                port, why = await self.ports.open(port_order(path, self.found))
                if port is None:  # held by other programs (atports.py), or unusable
                    self.apply(m.NotFound(why))
                    await self._pause(self.settings.busy_rescan_interval if self.ports.held
                                      else self.settings.rescan_interval)
                    continue
                self.port = port
                self.channel = AtChannel(port, on_urc=self._on_urc, budget=self.budget,
                                         name=self.name)
                # Until the modem says what it is, any profile's URC may come.
                self.channel.engine.use_urcs(ANY_URCS)
                self.apply(m.PortOpened(port.path))
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
        model = None if cfg.model in ("auto", "") else cfg.model
        try:
            self.found, path, why = self.discovery.locate(
                at_port=cfg.at_port, usb_path=cfg.usb_path, usb_id=cfg.usb_id, model=model)
        except Exception as exc:  # sysfs changing under our feet
            self.log.debug("%s: discovery failed: %s", self.name, exc)
            self.found, path, why = None, None, f"discovery failed: {exc}"
        return path, why

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
        manufacturer = identity_value(_lines(await self._cmd(ch, "AT+CGMI")))
        model_name = identity_value(_lines(await self._cmd(ch, "AT+CGMM")))
        revision = identity_value(_lines(await self._cmd(ch, "AT+CGMR")))
        found = self.found
        profile = choose_profile(
            self.cfg.model, " ".join(x for x in (manufacturer, model_name) if x),
            found.profile if found else None, found.usb_id if found else None)
        if self.cfg.reset_pulse_ms is not None:
            profile = profile.with_overrides(reset_pulse_ms=self.cfg.reset_pulse_ms)
        self.profile = profile
        ch.engine.use_urcs(profile.urcs)
        for command in profile.init_commands:
            if command.upper() in ("ATE0", "AT+CMEE=1"):
                continue
            await self._cmd(ch, command)
        imei_cmd = profile.identity_commands.get("imei", "AT+CGSN")
        imei = parse_imei(_lines(await self._cmd(ch, imei_cmd)))
        if self.facts.timeouts >= m.WEDGED_AFTER:
            return False
        self.apply(m.Identified(profile=profile.key, manufacturer=manufacturer,
                                model_name=model_name, revision=revision, imei=imei))
        self.log.info("%s (%s): %s %s, firmware %s, IMEI %s, on %s", self.name, self.cfg.role,
                      manufacturer or "?", model_name or "?", revision or "?", mask(imei),
                      ch.port.path)
        await self._check_sim(ch)
        if self.facts.sim_lock == "ready":
            await self._subscriber(ch)
            await self._poll_network(ch)
        return True

    async def _check_sim(self, ch: AtChannel) -> None:
        command = self.profile.sim_command if self.profile else "AT+CPIN?"
        r = await self._cmd(ch, command)
        if r is None:
            return
        lock = parse_cpin(r.lines if r.ok else r.final.text)
        if lock != self.facts.sim_lock:
            self.log.debug("%s: SIM %s", self.name, lock)
        self.apply(m.SimState(lock))

    async def _subscriber(self, ch: AtChannel) -> None:
        assert self.profile is not None
        commands = self.profile.identity_commands
        imsi = parse_imsi(_lines(await self._cmd(ch, commands.get("imsi", "AT+CIMI"))))
        r = await self._cmd(ch, commands.get("iccid", "AT+CCID"))
        iccid = next(filter(None, map(parse_iccid, _lines(r))), None)
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
                reg = parse_registration(line)
                if reg is None:
                    continue
                self.apply(m.RegistrationReport(reg))
                if reg.is_urc:
                    # A URC of the same family came in while the query was
                    # pending: which of the two is newer cannot be told, so
                    # ask again once everything has settled.
                    self._refresh_net = True
        r = await self._cmd(ch, self.profile.operator_command)
        if r is None:
            return
        cops = parse_cops(" ".join(_lines(r)))
        if cops is not None:
            self.apply(m.OperatorReport(cops.operator, _tech(cops.access_tech)))
        for command in self.profile.signal_commands:
            r = await self._cmd(ch, command)
            if r is None:
                return
            values = signal_values(self.profile.read_signal(command, _lines(r))) if r.ok else ()
            if values:
                self.apply(m.SignalReport(values))
                break

    # -- unsolicited ------------------------------------------------------

    def _on_urc(self, urc: Urc) -> None:
        """One URC, classified and parsed once by the engine's table: apply it.
        A URC that trips the handler is logged and survived."""
        try:
            kind, value = urc.kind, urc.value
            held = 0 if kind != "unknown" else self._unknown_lines.take()
            if held is not None:
                more = f"; {held} more unknown lines not logged" if held else ""
                known = f"{kind}: {value!r}" if kind != "unknown" else None  # None: no rule
                self.log.debug("%s: URC %r (%s)%s", self.name, urc.line, known, more)
            if isinstance(value, Registration):
                self.apply(m.RegistrationReport(value))
            elif kind == "boot" or (kind == "cpin" and value == "ready"
                                    and self.facts.sim_lock == "ready"):
                # A boot banner, or SIM ready again though it never went away:
                # the modem restarted and forgot its setup.
                if self._probing:
                    self._reprobe = True
                else:
                    self.apply(m.Rebooted(urc.line))
            elif kind in ("cpin", "sim"):
                self._refresh_sim = True
                self._wake.set()
            elif _moves_registration(urc):
                self._refresh_net = True
                self._wake.set()
            elif kind == "signal" and (values := signal_values(value)):
                self.apply(m.SignalReport(values))
        except Exception:
            self.log.exception("%s: could not handle URC %r", self.name, urc.line)

    # -- status -------------------------------------------------------------

    def snapshot(self) -> ModemSnapshot:
        """The modem as the status shows it, now."""
        return ModemSnapshot(
            name=self.name,
            role=self.cfg.role,
            model=self.facts.profile or self.cfg.model,
            facts=self.facts,
            since_s=time.monotonic() - self.since,
            usb_path=self.found.usb_path if self.found else self.cfg.usb_path,
            interface=self.cfg.interface,
            device=self.data_device,
            at_dropped_bytes=self.budget.dropped,
        )

    def status(self) -> dict[str, Any]:
        return {**self.snapshot().as_status(), **self.ports.status(self.facts.at_port)}


def _lines(r: Response | None) -> list[str]:
    return list(r.lines) if r is not None and r.ok else []


def _tech(value: object) -> str | None:
    if value in (None, "", "unknown"):
        return None
    return str(value)


def _moves_registration(urc: Urc) -> bool:
    """The network or the modem attached, detached or (de)activated a context
    (any packet-domain event but a modification or class change), or the
    radio turned off: registration may have changed."""
    if urc.kind == "cgev":
        value = urc.value
        return not (isinstance(value, Cgev) and value.type.endswith(("_modify", "_class")))
    return urc.kind == "radio" and isinstance(urc.value, Cfun) and urc.value.fun != 1
