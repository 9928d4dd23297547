"""``remsim-supervisor event CAUSE`` started the way osmo-remsim-client starts it.

Every event runs as ``/bin/sh -c "SCRIPT CAUSE"`` with a whitelisted
environment, started back to back and not waited for (REMSIM-EVENTS.md);
``SCRIPT`` is a wrapper doing what /usr/libexec/remsim-supervisor/remsim-event
does. The sequences of remsim-events.json are shuffled and replayed 50 times
against the real daemon over the rig's emulated modems, and 50 times with no
daemon at all (the journal and its worker drive the simulated GPIO lines);
each time the SIM line must end on the right side with exactly one modem
reset per transition, and every invocation must return within a second.

A small control server hosting a :class:`SimSwitcher` over simulated lines
stands in for the daemon where the test needs to see what was pinned.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import pytest

from remsim_lab.rig import Rig
from remsim_supervisor import log as logsetup
from remsim_supervisor.adapters.gpio import SIM_GPIO_ENV, SimGpio, open_line, pulse
from remsim_supervisor.cli import event_worker
from remsim_supervisor.cli.event import (
    MAX_VALUE,
    MAX_VARIABLES,
    event_environment,
    process_origin,
)
from remsim_supervisor.cli.event import main as event_main
from remsim_supervisor.config import GpioSpec
from remsim_supervisor.config.env import EVENT_SETTLE as SETTLE_ENV
from remsim_supervisor.config.env import STATE_DIR as STATE_DIR_ENV
from remsim_supervisor.config.env import settle_window
from remsim_supervisor.core.simplan import KNOWN_CAUSES
from remsim_supervisor.supervisor import control
from remsim_supervisor.supervisor.simswitch import SimSwitcher
from tests.paths import REPO, SHARED

SPEC = SHARED / "spec" / "remsim-events.json"
FIXTURES: dict[str, Any] = json.loads(SPEC.read_text())
ENTER: list[dict[str, Any]] = FIXTURES["enter_operation"]
LEAVE: list[dict[str, Any]] = FIXTURES["leave_operation"]

# The 50 rounds; REMSIM_EVENT_ROUNDS lowers it for a second pass under
# another library set (scripts/run-suites.sh): the event path uses the
# standard library only, so the full count under one set is the proof.
ROUNDS = int(os.environ.get("REMSIM_EVENT_ROUNDS", "50"))
SETTLE_S = 0.15  # short for the tests: the arrivals of one burst spread over < 0.1 s here
PULSE_MS = 20
BUDGET_S = 1.0  # "returns within a second"
# What osmo_system_nowait2() keeps of the client's environment.
WHITELIST = ("PATH", "HOME", "LANG", "TZ", "USER", "LOGNAME", "PWD", "SHELL", "TERM", "TMPDIR")


# `make test` runs the two library sets side by side on the same cores: each
# test here takes this lock, so one set's bursts of event processes, each held
# to the one-second budget, never run at the same moment as the other's.
TURNS = (REPO / ".venv" if (REPO / ".venv").is_dir() else Path("/tmp")) / "event-tests.lock"
pytestmark = pytest.mark.timeout(600)  # a turn may wait for the other set's longest test


@pytest.fixture(autouse=True)
def one_set_at_a_time() -> Iterator[None]:
    with open(TURNS, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


# --- starting events as the client does -----------------------------------------------------------

def write_script(directory: Path, config: Path) -> Path:
    """A stand-in for /usr/libexec/remsim-supervisor/remsim-event, using this interpreter."""
    script = directory / "remsim-event"
    script.write_text(
        "#!/bin/sh\n"
        "# as files/usr/libexec/remsim-supervisor/remsim-event: the cause is one argument\n"
        'if [ $# -lt 1 ]; then echo "usage: ${0##*/} CAUSE" >&2; exit 2; fi\n'
        # A test may hold an event back to make it arrive out of the client's order.
        'if [ -n "$LAB_EVENT_DELAY" ]; then sleep "$LAB_EVENT_DELAY"; fi\n'
        f'exec "{sys.executable}" -m remsim_supervisor event -c "{config}" -- "$1"\n')
    script.chmod(0o755)
    return script


def client_env(fixture: Mapping[str, str], cause: str,
               harness: Mapping[str, str]) -> dict[str, str]:
    env = {k: os.environ[k] for k in WHITELIST if k in os.environ}
    env.update({k: v for k, v in os.environ.items() if k.startswith("LC_")})
    env.update(fixture)
    env["REMSIM_CAUSE"] = cause
    env.update(harness)
    return env


@dataclass
class Started:
    cause: str
    process: subprocess.Popen[bytes]
    at: float
    took: float | None = None


@dataclass
class Client:
    """Starts events; remembers how long each invocation took."""

    script: Path
    harness: dict[str, str]
    durations: list[float] = field(default_factory=list)

    def start(self, events: Sequence[Mapping[str, Any]],
              extra: Mapping[str, str] | None = None) -> list[Started]:
        started = []
        for event in events:
            env = client_env(event["env"], event["cause"], {**self.harness, **(extra or {})})
            started.append(Started(event["cause"], subprocess.Popen(
                ["/bin/sh", "-c", f"{self.script} {event['cause']}"], env=env,
                start_new_session=True, stdin=subprocess.DEVNULL), time.monotonic()))
        return started

    def reap(self, started: Sequence[Started], timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        waiting = list(started)
        while waiting and time.monotonic() < deadline:
            for s in list(waiting):
                code = s.process.poll()
                if code is not None:
                    s.took = time.monotonic() - s.at
                    self.durations.append(s.took)
                    assert code == 0, f"{s.cause} exited with {code}"
                    waiting.remove(s)
            time.sleep(0.005)
        for s in waiting:
            s.process.kill()
            s.process.wait()
        assert not waiting, f"still running after {timeout} s: {[s.cause for s in waiting]}"

    def run(self, events: Sequence[Mapping[str, Any]], extra: Mapping[str, str] | None = None
            ) -> list[Started]:
        started = self.start(events, extra)
        self.reap(started)
        return started


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.005)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


# --- the three ways events are handled ------------------------------------------------------------

def write_config(path: Path, socket: Path) -> Path:
    path.write_text(
        "config supervisor 'main'\n"
        f"\toption control_socket '{socket}'\n\n"
        "config ionmesh 'ionmesh'\n\toption url 'http://127.0.0.1:5000'\n\n"
        "config modem 'modem1'\n\toption role 'primary'\n\toption usb_path '1-1'\n"
        "\toption sim_gpio 'sim:modem1_sim'\n\toption reset_gpio 'sim:modem1_reset'\n"
        f"\toption reset_pulse_ms '{PULSE_MS}'\n\n"
        "config modem 'modem2'\n\toption role 'iot'\n\toption usb_path '1-2'\n"
        "\toption sim_gpio 'sim:modem2_sim'\n\toption reset_gpio 'sim:modem2_reset'\n")
    return path


class Bench:
    """A configuration, simulated lines and a state directory; no daemon."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.gpio_root = root / "gpio"
        self.gpio = SimGpio(self.gpio_root)
        self.state = root / "state"
        self.socket = root / "ctl.sock"
        self.config = write_config(root / "remsim-supervisor.conf", self.socket)
        self.client = Client(write_script(root, self.config), {
            "REMSIM_SUPERVISOR_CONFIG": str(self.config), SIM_GPIO_ENV: str(self.gpio_root),
            STATE_DIR_ENV: str(self.state), SETTLE_ENV: str(SETTLE_S)})

    def pulses(self, line: str = "modem1_reset") -> int:
        return sum(1 for e in self.gpio.events(line) if e.level == 1)

    def sim_level(self) -> int:
        return self.gpio.level("modem1_sim", default=0)

    def worker_idle(self) -> bool:
        """No worker alive and nothing journaled (only asked between bursts)."""
        lock = self.state / event_worker.WORKER_LOCK
        return (not lock.exists() or bench_idle_lock(lock)) and not (
            self.state / event_worker.JOURNAL).exists()


class HostedSwitcher:
    """A SimSwitcher behind a control socket, over the bench's simulated lines."""

    def __init__(self, bench: Bench, settle_s: float = SETTLE_S) -> None:
        self.bench = bench
        self.settle_s = settle_s
        self.pins: list[tuple[str, str]] = []
        self.answers: list[dict[str, Any]] = []
        self.switcher: SimSwitcher | None = None
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        assert self._ready.wait(10), "hosted switcher did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        gpio = self.bench.gpio
        sim = open_line(GpioSpec.parse("sim:modem1_sim"), sim=gpio, consumer="hosted")
        reset = open_line(GpioSpec.parse("sim:modem1_reset"), sim=gpio, initial=False,
                          consumer="hosted")

        async def set_sim(remote: bool) -> None:
            sim.set(remote)

        async def reset_modem(reason: str) -> bool:
            await pulse(reset, PULSE_MS)
            return True

        async def pin(kind: str, hostport: str) -> None:
            self.pins.append((kind, hostport))

        self.switcher = SimSwitcher(set_sim=set_sim, get_sim=sim.get, reset_modem=reset_modem,
                                    pin=pin, settle_s=self.settle_s)
        server = await asyncio.start_unix_server(self._serve, path=str(self.bench.socket))
        task = asyncio.create_task(self.switcher.run())
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            task.cancel()
            server.close()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            sim.release()
            reset.release()
            self.bench.socket.unlink(missing_ok=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = control.decode(await reader.readline())
        assert self.switcher is not None
        if request.get("cmd") == "event":
            answer = await self.switcher.submit(str(request.get("cause")), request.get("env") or {},
                                                request.get("origin"))
            self.answers.append(answer)
        else:
            answer = {"ok": True, "status": self.switcher.status()}
        writer.write(control.encode(answer))
        await writer.drain()
        writer.close()

    def busy(self) -> bool:
        return self.switcher is None or bool(self.switcher.status()["busy"])


@pytest.fixture
def bench(tmp_path: Path) -> Bench:
    return Bench(tmp_path)


# --- the 50 random orders -------------------------------------------------------------------------

def fifty_rounds(client: Client, resets: Callable[[], int], sim_level: Callable[[], int],
                 idle: Callable[[], bool], seed: int,
                 explain: Callable[[], str] = lambda: "") -> None:
    """Shuffle and replay enter and leave ROUNDS times; check level and resets each time."""
    rng = random.Random(seed)
    base = resets()
    transitions = 0
    for n in range(ROUNDS):
        for events, level in ((ENTER, 1), (LEAVE, 0)):
            order = rng.sample(events, len(events))
            started = client.run(order)
            transitions += 1

            def reached(wanted: int = base + transitions) -> bool:
                return resets() >= wanted

            wait_until(reached, 15, f"round {n}: reset {transitions}")
            seen = [(s.cause, round(s.took or 0, 3)) for s in started]
            assert resets() - base == transitions, (
                f"round {n}: {resets() - base} resets for {transitions} transitions; "
                f"took {seen}\n{explain()}")
            assert sim_level() == level, (
                f"round {n}: SIM line {sim_level()}; took {seen}\n{explain()}")
    # Any late extra reset would show up here.
    wait_until(idle, 10, "quiet")
    time.sleep(2 * SETTLE_S + 0.2)
    assert resets() - base == transitions
    assert max(client.durations) < BUDGET_S, sorted(client.durations)[-5:]


def rig_story(rig: Rig) -> str:
    lines = [line for line in rig.log().splitlines()
             if "osmo-remsim" in line or "reset" in line or "SIM line" in line]
    return "\n".join(lines[-30:])


@contextlib.contextmanager
def running_rig(root: Path, settle_s: float) -> Iterator[Rig]:
    """The rig with the real daemon, both modems registered, a short reset pulse."""
    with Rig(root) as r:
        r.modems["modem1"].options["reset_pulse_ms"] = str(PULSE_MS)
        r.plug("modem1")
        r.plug("modem2")
        r.write_config()
        r.start_daemon(env={SETTLE_ENV: str(settle_s)})
        r.wait_for(lambda s: all(m["state"] == "registered" for m in s["modems"]), 30,
                   "both modems registered")
        answer = r.request({"cmd": "event", "cause": "event-modem-status", "env": {}})
        assert answer == {"ok": True, "cause": "event-modem-status"}, answer
        yield r


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    with running_rig(tmp_path / "rig", SETTLE_S) as r:
        yield r


def rig_client(rig: Rig, tmp_path: Path) -> Client:
    return Client(write_script(tmp_path, rig.config_path), {
        "REMSIM_SUPERVISOR_CONFIG": str(rig.config_path), SIM_GPIO_ENV: str(rig.gpio_root),
        STATE_DIR_ENV: str(tmp_path / "state"), SETTLE_ENV: str(SETTLE_S)})


@pytest.mark.timeout(400)
def test_fifty_random_orders_with_the_real_daemon(rig: Rig, tmp_path: Path) -> None:
    client = rig_client(rig, tmp_path)
    emulator = rig.emulator("modem1")
    watcher = rig.modems["modem1"].reset_watcher
    assert watcher is not None
    base_pulses = watcher.count
    fifty_rounds(client, resets=lambda: emulator.resets,
                 sim_level=lambda: rig.gpio.level("modem1_sim", default=0),
                 idle=lambda: True, seed=1, explain=lambda: rig_story(rig))
    assert watcher.count - base_pulses == 2 * ROUNDS  # each reset was one pulse of the line
    # The IoT modem never left its own SIM, and nothing went around the daemon.
    assert rig.gpio.level("modem2_sim") == 0
    assert all(e.level == 0 for e in rig.gpio.events("modem2_sim"))
    assert rig.emulator("modem2").resets == 0
    assert not (tmp_path / "state" / event_worker.JOURNAL).exists()
    assert "Traceback" not in rig.log()


@pytest.mark.timeout(400)
def test_fifty_random_orders_with_no_daemon(bench: Bench) -> None:
    assert not bench.socket.exists()
    fifty_rounds(bench.client, resets=bench.pulses, sim_level=bench.sim_level,
                 idle=bench.worker_idle, seed=2)
    wait_until(bench.worker_idle, 5, "the worker to finish")
    assert all(e.level == 0 for e in bench.gpio.events("modem2_sim"))  # never touched
    assert bench.pulses("modem2_reset") == 0
    assert not list(bench.state.glob(".*"))  # no temporary files left behind


def test_a_few_random_orders_with_a_hosted_switcher(bench: Bench) -> None:
    with HostedSwitcher(bench) as hosted:
        rounds = 2
        rng = random.Random(3)
        for _n in range(rounds):
            for events, level in ((ENTER, 1), (LEAVE, 0)):
                bench.client.run(rng.sample(events, len(events)))
                wait_until(lambda: not hosted.busy(), 10, "the batch")
                assert bench.sim_level() == level
        assert bench.pulses() == 2 * rounds
        assert sorted(set(hosted.pins)) == [("bankd", "203.0.113.30:9999"),
                                            ("server", "203.0.113.20:9998")]
        assert len(hosted.pins) == 2  # pinned once, not once per round
    assert not (bench.state / event_worker.JOURNAL).exists()


# --- order across transitions: the origin ---------------------------------------------------------

def leave_then_enter_arriving_reversed(client: Client) -> None:
    # A reconfiguration: the client leaves, then enters again at once. The
    # leave's events are held back, so they arrive after the enter's.
    held = client.start(LEAVE, extra={"LAB_EVENT_DELAY": "0.3"})
    client.reap(held + client.start(ENTER[2:]))


def test_the_clients_order_wins_over_arrival_with_a_hosted_switcher(bench: Bench) -> None:
    with HostedSwitcher(bench, settle_s=0.8) as hosted:
        leave_then_enter_arriving_reversed(bench.client)
        wait_until(lambda: not hosted.busy(), 10, "the batch")
        assert bench.sim_level() == 1
        assert bench.pulses() == 1
        assert len(hosted.answers) == len(LEAVE) + len(ENTER[2:])


def test_the_clients_order_wins_over_arrival_with_no_daemon(bench: Bench) -> None:
    bench.client.harness[SETTLE_ENV] = "0.8"
    leave_then_enter_arriving_reversed(bench.client)
    wait_until(bench.worker_idle, 10, "the worker")
    assert bench.sim_level() == 1
    assert bench.pulses() == 1


def test_the_clients_order_wins_over_arrival_with_the_real_daemon(tmp_path: Path) -> None:
    with running_rig(tmp_path / "rig", 0.8) as rig:
        client = rig_client(rig, tmp_path)
        emulator = rig.emulator("modem1")
        leave_then_enter_arriving_reversed(client)
        wait_until(lambda: emulator.resets >= 1, 10, "the reset")
        time.sleep(2 * 0.8)
        assert rig.gpio.level("modem1_sim") == 1
        assert emulator.resets == 1


# --- the command's contract -----------------------------------------------------------------------

def run_once(client: Client, cause: str, env: Mapping[str, str] | None = None
             ) -> subprocess.CompletedProcess[str]:
    full = client_env(env or {}, cause, client.harness)
    t0 = time.monotonic()
    result = subprocess.run(["/bin/sh", "-c", f"{client.script} {cause}"], env=full,
                            capture_output=True, text=True, timeout=10, check=False)
    client.durations.append(time.monotonic() - t0)
    return result


@pytest.mark.parametrize("daemon", [False, True], ids=["no-daemon", "daemon"])
def test_an_unknown_cause_exits_2_with_one_line_within_a_second(bench: Bench,
                                                                daemon: bool) -> None:
    with HostedSwitcher(bench) if daemon else contextlib.nullcontext():
        result = run_once(bench.client, "request-sim-elsewhere")
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1
    assert "unknown event cause 'request-sim-elsewhere'" in result.stderr
    assert bench.client.durations[-1] < BUDGET_S
    assert not bench.state.exists()  # nothing was recorded


def test_every_known_cause_exits_0_within_a_second_without_a_config(tmp_path: Path) -> None:
    client = Client(write_script(tmp_path, tmp_path / "missing.conf"), {
        STATE_DIR_ENV: str(tmp_path / "state"), SIM_GPIO_ENV: str(tmp_path / "gpio")})
    for cause in sorted(KNOWN_CAUSES):
        result = run_once(client, cause)
        assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert max(client.durations) < BUDGET_S


def test_a_stuck_daemon_costs_less_than_a_second(bench: Bench) -> None:
    # Something listens on the socket but never answers.
    import socket as sockets

    listener = sockets.socket(sockets.AF_UNIX, sockets.SOCK_STREAM)
    listener.bind(str(bench.socket))
    listener.listen(16)
    try:
        started = bench.client.start(ENTER[2:5])
        bench.client.reap(started)
        assert max(bench.client.durations) < BUDGET_S
    finally:
        listener.close()
        bench.socket.unlink()
    # The worker hands nothing to a socket that does not answer: it drives the lines.
    wait_until(lambda: bench.pulses() == 1 and bench.worker_idle(), 10, "the direct switch")
    assert bench.sim_level() == 1


HOSTILE = ("$(touch {d}/pwned-1)", "`touch {d}/pwned-2`", "203.0.113.30:9999; touch {d}/pwned-3",
           "203.0.113.30:9999 && touch {d}/pwned-4 #", "'; touch {d}/pwned-5; '",
           "203.0.113.30:9999\ntouch {d}/pwned-6")


@pytest.mark.parametrize("daemon", [False, True], ids=["no-daemon", "daemon"])
def test_shell_text_in_the_environment_is_never_run_and_never_pinned(
        bench: Bench, tmp_path: Path, daemon: bool) -> None:
    trap = tmp_path / "trap"
    trap.mkdir()
    with HostedSwitcher(bench) if daemon else contextlib.nullcontext() as hosted:
        for value in HOSTILE:
            text = value.format(d=trap)
            env = {"REMSIM_BANKD_ADDR": text, "REMSIM_SERVER_ADDR": text,
                   "REMSIM_CLIENT_SLOT": text, "REMSIM_BANKD_SLOT": text}
            result = run_once(bench.client, "event-config-bankd", env)
            assert result.returncode == 0, result.stderr
        if isinstance(hosted, HostedSwitcher):
            assert hosted.pins == []
            assert len(hosted.answers) == len(HOSTILE)
            for answer in hosted.answers:
                assert any(note.startswith("REMSIM_BANKD_ADDR: not an address")
                           for note in answer["rejected"])
        else:
            wait_until(bench.worker_idle, 5, "the worker")
    time.sleep(0.2)
    assert list(trap.iterdir()) == []
    assert bench.pulses() == 0


def test_hostile_addresses_with_the_real_daemon(rig: Rig, tmp_path: Path) -> None:
    trap = tmp_path / "trap"
    trap.mkdir()
    client = rig_client(rig, tmp_path)
    for value in HOSTILE:
        text = value.format(d=trap)
        result = run_once(client, "event-config-bankd", {"REMSIM_BANKD_ADDR": text})
        assert result.returncode == 0
    good = run_once(client, "event-config-bankd", {"REMSIM_BANKD_ADDR": "203.0.113.30:9999"})
    assert good.returncode == 0
    wait_until(lambda: "203.0.113.30" in rig.log(), 5, "the pin")
    time.sleep(0.2)
    assert list(trap.iterdir()) == []
    lines = rig.log().splitlines()
    rejected = [line for line in lines if "REMSIM_BANKD_ADDR" in line and "rejected" in line]
    assert len(rejected) >= len(HOSTILE)
    assert not any("pwned" in line for line in lines if "heartbeat path" in line)


# --- the fallback's repairs -----------------------------------------------------------------------

def test_a_dead_workers_leftovers_are_repaired_by_the_next_event(bench: Bench) -> None:
    bench.state.mkdir(mode=0o700)
    # A worker killed mid-pulse: reset line held, a stale journal, the lock files.
    bench.gpio.set_level("modem1_reset", 1)
    stale = {"cause": "request-sim-remote", "at": time.monotonic() - 600, "origin": None,
             "env": {}}
    (bench.state / event_worker.JOURNAL).write_text(json.dumps(stale) + "\n{\"cause\": \"req")
    (bench.state / event_worker.WORKER_LOCK).touch()
    (bench.state / event_worker.JOURNAL_LOCK).touch()
    before = bench.pulses()
    bench.client.run([{"cause": "request-modem-reset", "env": {}}])
    wait_until(lambda: bench.pulses() > before and bench.worker_idle(), 10, "the repair")
    assert bench.gpio.level("modem1_reset") == 0
    assert bench.pulses() == before + 1
    assert bench.sim_level() == 0  # the stale request was dropped, not applied
    assert not (bench.state / event_worker.JOURNAL).exists()


def test_a_worker_killed_mid_batch_does_not_break_the_next_burst(bench: Bench) -> None:
    bench.client.harness[SETTLE_ENV] = "5"
    bench.client.run(ENTER[2:5])
    holder = _lock_holder(bench.state / event_worker.WORKER_LOCK)
    assert holder is not None, "no worker holds the worker lock"
    os.kill(holder, signal.SIGKILL)
    wait_until(lambda: _lock_holder(bench.state / event_worker.WORKER_LOCK) is None, 5, "its death")
    assert bench.pulses() == 0
    # The next burst's worker takes the journal over, dead worker's events included.
    bench.client.harness[SETTLE_ENV] = str(SETTLE_S)
    bench.client.run([ENTER[5]])
    wait_until(lambda: bench.pulses() == 1 and bench.worker_idle(), 10, "the next worker")
    assert bench.sim_level() == 1


def _lock_holder(path: Path) -> int | None:
    """A process with ``path`` open other than us (/proc/locks names the process that
    took a flock, which for the worker's lock is the event that started it, long gone)."""
    if bench_idle_lock(path):
        return None
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        with contextlib.suppress(OSError):
            for fd in fd_dir.iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) == str(path) and int(fd_dir.parent.name) != os.getpid():
                        return int(fd_dir.parent.name)
    return None


def bench_idle_lock(path: Path) -> bool:
    fd = os.open(path, os.O_RDWR)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(fd, fcntl.LOCK_UN)
        return True
    finally:
        os.close(fd)


@pytest.mark.parametrize(("argv", "expected"), [
    (["request-sim-remote"], ("request-sim-remote", "/etc/env.conf")),
    (["-c", "/x.conf", "--", "request-sim-remote"], ("request-sim-remote", "/x.conf")),
    (["--config=/x.conf", "request-modem-reset"], ("request-modem-reset", "/x.conf")),
    (["request-modem-reset", "-c/x.conf"], ("request-modem-reset", "/x.conf")),
    (["--", "-c"], ("-c", "/etc/env.conf")),
    ([], None), (["a", "b"], None), (["-x", "request-sim-remote"], None), (["-c"], None),
])
def test_the_command_line_without_click(monkeypatch: pytest.MonkeyPatch, argv: list[str],
                                        expected: tuple[str, str] | None,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[tuple[str, str]] = []
    monkeypatch.setenv("REMSIM_SUPERVISOR_CONFIG", "/etc/env.conf")
    def run_event(cause: str, config_path: str, environ: Mapping[str, str]) -> int:
        seen.append((cause, config_path))
        return 0

    # The click command named "event" hides the module of that name on its package.
    command_module = sys.modules["remsim_supervisor.cli.event"]
    monkeypatch.setattr(command_module, "run_event", run_event)
    monkeypatch.setattr(logsetup, "setup", lambda *a, **k: None)
    code = event_main(argv)
    if expected is None:
        assert code == 2 and seen == []
        assert capsys.readouterr().err.startswith("usage: remsim-supervisor event")
    else:
        assert code == 0 and seen == [expected]


# --- pieces ---------------------------------------------------------------------------------------

def test_the_environment_is_taken_as_capped_plain_strings() -> None:
    env = event_environment({
        "REMSIM_BANKD_ADDR": "203.0.113.30:9999\n\x1b[31mred\x7f",
        "REMSIM_CLIENT_SLOT": "7:0" + "x" * 1000,
        "REMSIM_SUPERVISOR_SIM_GPIO": "/tmp/gpio",
        "OPENWRT_MODEM_DEVICE": "/dev/ttyUSB2",
        "MODEM1_SIM_GPIO": "21",
        "IONMESH_HOST": "x",
        "PATH": "/bin",
        "REMSIM_BAD\nNAME": "x",
        "REMSIM_SURROGATE": "a\udcffb",
    })
    assert env == {
        "REMSIM_BANKD_ADDR": "203.0.113.30:9999[31mred",
        "REMSIM_CLIENT_SLOT": ("7:0" + "x" * 1000)[:MAX_VALUE],
        "OPENWRT_MODEM_DEVICE": "/dev/ttyUSB2",
        "REMSIM_SURROGATE": "ab",
    }
    many = event_environment({f"REMSIM_X{i:03}": "v" for i in range(100)})
    assert len(many) == MAX_VARIABLES


@pytest.mark.parametrize(("value", "expected"), [
    (None, 0.5), ("", 0.5), ("0.1", 0.1), ("abc", 0.5), ("-1", 0.5), ("1e9", 0.5)])
def test_the_settle_window_comes_from_the_environment(value: str | None,
                                                      expected: float) -> None:
    env = {} if value is None else {SETTLE_ENV: value}
    assert settle_window(env) == expected


def _fake_proc(root: Path, pid: int, ppid: int, ticks: int, cmdline: list[str],
               comm: str = "x") -> None:
    d = root / str(pid)
    d.mkdir(parents=True)
    rest = ["S", str(ppid)] + ["0"] * 17 + [str(ticks)] + ["0"] * 10
    (d / "stat").write_text(f"{pid} ({comm}) " + " ".join(rest) + "\n")
    (d / "cmdline").write_bytes(b"\0".join(a.encode() for a in cmdline) + b"\0")


def test_the_origin_is_the_process_the_client_started(tmp_path: Path) -> None:
    me = os.getpid()
    proc = tmp_path / "proc"
    # client (900) -> sh -c "SCRIPT CAUSE" (901, forked) -> sh SCRIPT CAUSE (902) -> us
    _fake_proc(proc, 900, 1, 100, ["osmo-remsim-client-openwrt", "-e", "/x/remsim-event"])
    _fake_proc(proc, 901, 900, 500, ["sh", "-c", "/x/remsim-event request-sim-remote"])
    _fake_proc(proc, 902, 901, 501, ["/bin/sh", "/x/remsim-event", "request-sim-remote"],
               comm="weird) name (")
    _fake_proc(proc, me, 902, 502, ["python3", "-m", "remsim_supervisor", "event", "--",
                                    "request-sim-remote"])
    origin = process_origin("request-sim-remote", str(proc))
    assert origin is not None and (origin["pid"], origin["ticks"]) == (901, 500)
    assert origin["age_s"] >= 0
    # Run by hand from a shell: the shell is not the origin.
    origin = process_origin("request-modem-reset", str(proc))
    assert origin is not None and (origin["pid"], origin["ticks"]) == (me, 502)


def test_the_origin_of_this_process_is_real() -> None:
    origin = process_origin("no-such-cause")
    assert origin is not None and origin["pid"] == os.getpid()
    assert 0 <= origin["age_s"] < 24 * 3600
