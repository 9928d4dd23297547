"""The no-daemon path of ``remsim-supervisor event``: the journal and its worker.

With no daemon answering, an event is appended to a journal in the state
directory (``/var/run/remsim-supervisor``, or ``$REMSIM_SUPERVISOR_STATE_DIR``)
under ``flock``, and the first event of a burst starts a detached worker
(double fork, new session, stdio on ``/dev/null``). The worker waits for the
batch to settle, applies the same rule as the daemon
(:func:`remsim_supervisor.core.simplan.plan`) directly to the primary modem's
``sim_gpio`` and ``reset_gpio`` lines, and exits when the journal is empty.
Later events of the burst only append. If a daemon has come up meanwhile, the
worker hands it the events instead of touching its lines.

Crash safety: the worker is alive exactly while it holds ``event.worker``'s
flock (the kernel drops it with the process), and it gives that up only while
holding the journal's lock with the journal empty, so an event is never
stranded. A worker that died leaves a journal the next burst's worker picks
up; entries older than ``JOURNAL_MAX_AGE_S`` are dropped as stale, and every
worker first drives the reset line to rest, in case one died mid-pulse.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from remsim_supervisor import log as logsetup
from remsim_supervisor.config import Config, ConfigError, ModemConfig, load
from remsim_supervisor.core.simplan import KNOWN_CAUSES, Event, Memory, plan, remember, settle_due
from remsim_supervisor.supervisor import control

if TYPE_CHECKING:
    from remsim_supervisor.adapters.gpio import Line

__all__ = [
    "DEFAULT_STATE_DIR",
    "JOURNAL",
    "JOURNAL_LOCK",
    "STATE",
    "WORKER_LOCK",
    "append_event",
]

log = logging.getLogger("remsim_supervisor.cli.event")

DEFAULT_STATE_DIR = "/var/run/remsim-supervisor"

LOCK_WAIT_S = 0.25  # the journal lock is held for an append, never across GPIO work
JOURNAL_MAX_AGE_S = 30.0  # far beyond any burst: older entries are a dead worker's leftovers
JOURNAL_MAX_LINES = 256
WORKER_LOCK_WAIT_S = 5.0

JOURNAL, JOURNAL_LOCK, WORKER_LOCK, STATE = (
    "event.journal",
    "event.lock",
    "event.worker",
    "event.state",
)


@contextlib.contextmanager
def _locked(path: Path, wait_s: float) -> Iterator[int | None]:
    """flock ``path`` for at most ``wait_s``; yields the descriptor, or None if it stayed busy."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    deadline = time.monotonic() + wait_s
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    yield None
                    return
                time.sleep(0.005)
        try:
            yield fd
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def append_event(state_dir: Path, record: dict[str, Any], config_path: str,
                 settle_s: float) -> None:
    """Journal one event; the first of a burst starts the worker that applies it."""
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    with _locked(state_dir / JOURNAL_LOCK, LOCK_WAIT_S) as lock:
        if lock is None:
            log.error(
                "osmo-remsim: %s is busy; %s dropped", state_dir / JOURNAL_LOCK, record["cause"]
            )
            return
        _append(state_dir / JOURNAL, record)
        worker = os.open(state_dir / WORKER_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            try:
                fcntl.flock(worker, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return  # a worker is alive: it reads the journal before it may exit
            _spawn_worker(worker, lock, state_dir, config_path, settle_s)
        finally:
            # Only our descriptor closes: the worker's copy keeps the lock held.
            os.close(worker)


def _append(path: Path, record: dict[str, Any]) -> None:
    line = (json.dumps(record, separators=(",", ":"), sort_keys=True) + "\n").encode()
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = b"\n" + line  # a record cut short by a crash must not swallow this one
        os.write(fd, line)  # one write: a reader never sees half a record
    finally:
        os.close(fd)


def _read_journal(path: Path, now: float) -> list[Event]:
    try:
        lines = path.read_bytes().splitlines()[-JOURNAL_MAX_LINES:]
    except FileNotFoundError:
        return []
    events = []
    for seq, raw in enumerate(lines):
        try:
            record = json.loads(raw)
            cause, at = str(record["cause"]), float(record["at"])
        except (ValueError, KeyError, TypeError):
            continue  # a line a crash cut short
        if cause not in KNOWN_CAUSES:
            continue
        if not 0.0 <= now - at <= JOURNAL_MAX_AGE_S:
            log.warning(
                "osmo-remsim: stale %s in the journal dropped (%.0f s old)", cause, now - at
            )
            continue
        origin = record.get("origin") or {}
        order, started = None, None
        if isinstance(origin, dict) and all(
            isinstance(origin.get(k), (int, float)) for k in ("ticks", "pid", "age_s")
        ):
            order = (int(origin["ticks"]), int(origin["pid"]))
            started = at - float(origin["age_s"])
        env = record.get("env") if isinstance(record.get("env"), dict) else {}
        events.append(
            Event(cause, at, seq, order, started, {str(k): str(v) for k, v in (env or {}).items()})
        )
    return events


def _spawn_worker(
    worker_fd: int, lock_fd: int, state_dir: Path, config_path: str, settle_s: float
) -> None:
    """Start the detached worker holding ``worker_fd``'s lock; returns at once."""
    try:
        child = os.fork()
    except OSError as exc:
        log.error("osmo-remsim: cannot start the event worker: %s", exc)
        return
    if child:
        os.waitpid(child, 0)  # the middle process exits at once
        return
    # The middle process: a new session, then the worker as its orphan, so
    # neither the client nor its process group ever waits for it or kills it.
    try:
        os.setsid()
        if os.fork():
            os._exit(0)
        _detach(keep=worker_fd, drop=lock_fd)
        logsetup.setup("info")
        _worker(state_dir, config_path, settle_s, worker_fd)
    except BaseException:
        with contextlib.suppress(Exception):
            log.exception("osmo-remsim: event worker failed")
    finally:
        os._exit(0)


def _detach(keep: int, drop: int) -> None:
    import syslog

    syslog.closelog()  # its socket is among the descriptors closed below
    os.close(drop)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    if null > 2:
        os.close(null)
    os.closerange(3, keep)
    os.closerange(keep + 1, 1024)
    os.umask(0o077)
    # No chdir("/"): the worker lives for a batch, and relative paths in the
    # lab's environment must keep meaning what they meant to the caller.


def _worker(state_dir: Path, config_path: str, settle_s: float, worker_fd: int) -> None:
    poll = min(0.05, max(0.01, settle_s / 8))
    journal = state_dir / JOURNAL
    rested = False
    while True:
        time.sleep(poll)
        with _locked(state_dir / JOURNAL_LOCK, WORKER_LOCK_WAIT_S) as lock:
            if lock is None:
                continue
            now = time.monotonic()
            batch = _read_journal(journal, now)
            if not batch:
                journal.unlink(missing_ok=True)
                # Under the journal lock: an event appended after this sees no worker.
                fcntl.flock(worker_fd, fcntl.LOCK_UN)
                return
            if now < settle_due(batch, settle_s):
                continue
            journal.unlink()
        config = _config(config_path)
        if config is None:
            continue
        if _forward(config, batch):
            continue
        if not rested:
            _rest_reset_line(config)
            rested = True
        _apply_direct(config, state_dir, batch)


def _config(path: str) -> Config | None:
    try:
        return load(path, {})
    except ConfigError as exc:
        log.error("osmo-remsim: no SIM switch without the daemon: %s", exc.problems[0])
        return None


def _forward(config: Config, batch: list[Event]) -> bool:
    """Hand the batch to a daemon that came up meanwhile: it holds the lines now."""
    path = config.supervisor.control_socket
    if not os.path.exists(path):
        return False
    for n, event in enumerate(sorted(batch, key=lambda e: (e.order or (0, 0), e.seq))):
        origin = None
        if event.order is not None and event.started is not None:
            origin = {
                "ticks": event.order[0],
                "pid": event.order[1],
                "age_s": round(max(0.0, time.monotonic() - event.started), 3),
            }
        try:
            control.request(
                path,
                {"cmd": "event", "cause": event.cause, "env": dict(event.env), "origin": origin},
                timeout=2.0,
            )
        except (control.ControlError, OSError):
            if n == 0:
                return False
            log.error("osmo-remsim: the daemon stopped taking events; %s lost", event.cause)
    log.info("osmo-remsim: %d event(s) handed to the daemon that started meanwhile", len(batch))
    return True


def _load_memory(path: Path) -> Memory:
    try:
        data = json.loads(path.read_text())
        order = data.get("applied_order")
        return Memory(
            last_reset_at=float(data["last_reset_at"]) if data.get("last_reset_at") else None,
            applied_order=(int(order[0]), int(order[1])) if order else None,
        )
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return Memory()


def _save_memory(path: Path, memory: Memory) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(
        json.dumps({"last_reset_at": memory.last_reset_at, "applied_order": memory.applied_order})
    )
    os.replace(tmp, path)


def _primary(config: Config) -> ModemConfig | None:
    primary = config.by_role("primary")
    if primary is None:
        log.error("osmo-remsim: no primary modem in %s: nothing to switch", config.path)
    return primary


def _pulse_ms(modem: ModemConfig) -> int:
    from remsim_supervisor.supervisor.lines import reset_pulse_ms
    from remsim_supervisor.vendors import get_profile, profile_for_usb_id

    profile = None
    if modem.model != "auto":
        with contextlib.suppress(KeyError):
            profile = get_profile(modem.model)
    elif modem.usb_id is not None:
        profile = profile_for_usb_id(*modem.usb_id)
    return reset_pulse_ms(modem, profile)


def _rest_reset_line(config: Config) -> None:
    # A worker killed mid-pulse leaves the modem held in reset: release it first.
    modem = _primary(config)
    if modem is None:
        return
    line = _open_reset_line(modem)
    if line is not None:
        line.release()


def _open_reset_line(modem: ModemConfig) -> Line | None:
    """The primary's reset line, opened inactive; None (logged) without one or when it fails."""
    from remsim_supervisor.adapters.gpio import GpioError, open_line

    if modem.reset_gpio is None:
        return None
    try:
        return open_line(
            modem.reset_gpio,
            active_low=modem.reset_active_low,
            initial=False,
            consumer="remsim-supervisor event",
        )
    except GpioError as exc:
        log.error("osmo-remsim: %s (primary): reset_gpio: %s", modem.name, exc)
        return None


def _apply_direct(config: Config, state_dir: Path, batch: list[Event]) -> None:
    from remsim_supervisor.adapters.gpio import GpioError, open_line
    from remsim_supervisor.supervisor.lines import is_remote, sim_level

    modem = _primary(config)
    if modem is None:
        return
    memory = _load_memory(state_dir / STATE)
    sim: Line | None = None
    current: bool | None = None
    if modem.sim_gpio is None:
        log.error("osmo-remsim: %s (primary) has no sim_gpio: nothing can be switched", modem.name)
    else:
        try:
            sim = open_line(
                modem.sim_gpio,
                active_low=modem.sim_active_low,
                initial=None,
                consumer="remsim-supervisor event",
            )
            current = is_remote(modem, sim.get())
        except GpioError as exc:
            log.error("osmo-remsim: %s (primary): sim_gpio: %s", modem.name, exc)
    try:
        decided = plan(batch, current, memory)
        switched = False
        if decided.switch and decided.side is not None and sim is not None:
            sim.set(sim_level(modem, decided.side))
            switched = True
        reset_at = None
        if switched or decided.requested_reset:
            reset_at = time.monotonic()
            # Written before the pulse: a worker that dies during it must not
            # make the next one pulse again for the same requests.
            _save_memory(state_dir / STATE, Memory(reset_at, memory.applied_order))
            _reset(modem)
        remember(memory, decided, reset_at)
        _save_memory(state_dir / STATE, memory)
        log.info("osmo-remsim, no daemon: %s (%s)", decided.describe(), ", ".join(decided.causes))
    finally:
        if sim is not None:
            sim.release()


def _reset(modem: ModemConfig) -> None:
    import asyncio

    from remsim_supervisor.adapters.gpio import pulse

    if modem.reset_gpio is None:
        log.error(
            "osmo-remsim: %s (primary) has no reset_gpio: it cannot be reset without the daemon",
            modem.name,
        )
        return
    width = _pulse_ms(modem)
    line = _open_reset_line(modem)
    if line is None:
        return
    try:
        log.info(
            "osmo-remsim, no daemon: %s (primary): reset pulse %d ms on %s",
            modem.name,
            width,
            modem.reset_gpio,
        )
        asyncio.run(pulse(line, width))
    finally:
        line.release()
