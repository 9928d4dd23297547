"""The serial transport: one modem AT port, opened so that it can never stall us.

A modem's AT port is a tty (``/dev/ttyUSB2``, ``/dev/ttyACM0``, a wwan char
device, or a pseudo-terminal in the lab). Ports misbehave in ways that would
freeze a naive daemon: some modems' dead ttys block ``close()`` for about
30 s, a wedged modem never drains its output buffer, a USB unplug turns every
read into ``EIO``. So:

* pyserial opens and configures the port (raw, 115200, DTR set, which some
  modems' QMI interfaces need) with ``exclusive=True`` (``flock``), and UUCP
  lock files in ``/var/lock`` are honoured: a port that smsd, a dialler or
  another program holds is reported, not fought over (with who holds it:
  :mod:`~remsim_supervisor.adapters.portlock`; a port a live lock file names
  is never opened). Our own lock file is written while we hold the port.
* After opening, the file descriptor is non-blocking. Reads come through the
  event loop's ``add_reader``; writes are non-blocking and wait for the fd to
  become writable only up to the command's timeout.
* ``close()`` runs in a throw-away daemon thread and is awaited for at most a
  second: if the kernel blocks it, the thread is abandoned, not the modem task.
* A read that fails (``EIO``, hang-up, zero bytes) marks the port *lost*: the
  modem's owner task sees it and turns the modem ``absent``.

:class:`AtChannel` joins a port and the sans-I/O :class:`~remsim_supervisor.core.at.AtEngine`:
one command at a time (an ``asyncio.Lock``), each with a timeout, URCs handed
to a callback as they arrive.

A port that floods (a modem spraying garbage at 1 MB/s) must not starve the
event loop: a :class:`ByteBudget` lets at most :data:`MAX_BYTES_PER_S` bytes
a second (bursts up to :data:`BURST_BYTES`) through to the engine. The rest
is read and dropped, counted, and logged at most once a minute; the engine
is told of the gap so that no line is stitched together across it. No real
AT conversation comes near the rate: a serial line at 115200 baud carries
11.5 kB/s, and the longest AT answers are a few kB.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from remsim_supervisor.adapters.portlock import DEFAULT_LOCK_DIR as DEFAULT_LOCK_DIR
from remsim_supervisor.adapters.portlock import Holder as Holder
from remsim_supervisor.adapters.portlock import PortBusy as PortBusy
from remsim_supervisor.adapters.portlock import PortError as PortError
from remsim_supervisor.adapters.portlock import UucpLock as UucpLock
from remsim_supervisor.adapters.portlock import exclusive_holder, tiocexcl_holder
from remsim_supervisor.adapters.portlock import pid_alive as pid_alive
from remsim_supervisor.core.at import AtEngine, Noise, Overflow, Response, Urc

log = logging.getLogger(__name__)

T = TypeVar("T")

CLOSE_WAIT_S = 1.0
OPEN_TIMEOUT_S = 5.0
READ_SIZE = 16384

#: Bytes a second one AT port may feed the engine; the excess is dropped.
MAX_BYTES_PER_S = 32 * 1024
#: Bytes the port may send at once before the rate applies (one maximal reply).
BURST_BYTES = 64 * 1024
#: Least seconds between two log lines about one port's dropped bytes.
DROP_LOG_INTERVAL_S = 60.0


class PortGone(PortError):
    """The port vanished (USB unplug, modem reboot)."""


class AtTimeout(Exception):
    """No final result code arrived within the command's timeout."""


class AtOverflow(AtTimeout):
    """The reply grew past the engine's caps without a final result code.

    To the caller this is a command that got no usable answer, as a timeout
    is: a modem that babbles endlessly counts towards being wedged.
    """


class ByteBudget:
    """A token bucket of bytes per second for one port; the clock is injected.

    :meth:`admit` says how many of the bytes just read may go on; the rest are
    dropped and counted in :attr:`dropped`. :meth:`report` returns the bytes
    dropped since the last report at most once per ``log_interval``
    seconds, so the caller logs a flood once a minute, not once a read.
    """

    def __init__(self, rate: float = MAX_BYTES_PER_S, burst: float = BURST_BYTES,
                 clock: Callable[[], float] = time.monotonic,
                 log_interval: float = DROP_LOG_INTERVAL_S) -> None:
        if rate <= 0 or burst <= 0:
            raise ValueError("rate and burst must be positive")
        self.rate = float(rate)
        self.burst = float(burst)
        self.clock = clock
        self.log_interval = log_interval
        self.dropped = 0
        self._tokens = float(burst)
        self._last = clock()
        self._unreported = 0
        self._reported_at: float | None = None

    def admit(self, size: int) -> int:
        now = self.clock()
        elapsed = max(0.0, now - self._last)
        self._last = now
        self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
        passed = min(size, int(self._tokens))
        self._tokens -= passed
        if passed < size:
            self.dropped += size - passed
            self._unreported += size - passed
        return passed

    def report(self) -> int | None:
        """Bytes dropped since the last report, when a report is due; else None."""
        if not self._unreported:
            return None
        now = self.clock()
        if self._reported_at is not None and now - self._reported_at < self.log_interval:
            return None
        self._reported_at = now
        count, self._unreported = self._unreported, 0
        return count


def _open_serial(path: str, baudrate: int) -> object:
    import serial  # pyserial; imported here so short commands do not pay for it

    if os.geteuid() == 0 and (held := tiocexcl_holder(path)) is not None:
        raise PortBusy(f"another program has {path} open exclusively (TIOCEXCL)"
                       f"{held.suffix()}", held)
    try:
        port = serial.Serial(path, baudrate=baudrate, timeout=0, write_timeout=0, exclusive=True)
    except serial.SerialException as exc:
        text = str(exc)
        if "exclusively lock" in text or "Resource temporarily unavailable" in text:
            holder = exclusive_holder(path, "exclusive lock")
            raise PortBusy(f"another program has {path} open exclusively"
                           f"{holder.suffix()}", holder) from exc
        if getattr(exc, "errno", None) == errno.EBUSY or "Device or resource busy" in text:
            # TIOCEXCL: the kernel refuses every further open of the tty.
            holder = exclusive_holder(path, "exclusive open")
            raise PortBusy(f"another program has {path} open exclusively (TIOCEXCL)"
                           f"{holder.suffix()}", holder) from exc
        if isinstance(exc.__context__, FileNotFoundError) or "No such file" in text:
            raise PortGone(f"{path} does not exist") from exc
        raise PortError(f"cannot open {path}: {text.splitlines()[0] if text else exc!r}") from exc
    return port


def in_daemon_thread(fn: Callable[..., T], *args: object) -> asyncio.Future[T]:
    """Run a call that may block in the kernel in its own daemon thread.

    Unlike the loop's default executor, an abandoned thread here never holds
    up the daemon's exit (asyncio.run waits for executor threads).
    """
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[T] = loop.create_future()

    def deliver(result: T | None, error: BaseException | None) -> None:
        if fut.done():
            # The caller gave up (timeout): do not leak what arrived late.
            closer = getattr(result, "close", None)
            if callable(closer):
                _close_in_background(closer, "late result")
            return
        if error is not None:
            fut.set_exception(error)
        else:
            fut.set_result(result)  # type: ignore[arg-type]  # fn returned a T

    def run() -> None:
        try:
            result = fn(*args)
        except BaseException as exc:  # handed to the awaiting task
            if not loop.is_closed():
                loop.call_soon_threadsafe(deliver, None, exc)
            return
        if not loop.is_closed():
            loop.call_soon_threadsafe(deliver, result, None)

    threading.Thread(target=run, name=getattr(fn, "__name__", "io"), daemon=True).start()
    return fut


def _close_in_background(closer: Callable[[], None], name: str) -> threading.Event:
    """Run ``closer`` in a daemon thread; the returned event is set when it returns."""
    done = threading.Event()

    def run() -> None:
        try:
            closer()
        except Exception as exc:  # the port is going away anyway
            log.debug("closing %s: %s", name, exc)
        finally:
            done.set()

    threading.Thread(target=run, name=f"close {name}", daemon=True).start()
    return done


def _resolve_once(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class SerialPort:
    """One open AT port, read through the event loop and written without blocking."""

    def __init__(
        self, path: str, *, baudrate: int = 115200, lock_dir: str = DEFAULT_LOCK_DIR
    ) -> None:
        self.path = path
        self.baudrate = baudrate
        self.lock = UucpLock(path, lock_dir)
        self._serial: object | None = None
        self._fd: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.lost = asyncio.Event()
        self.lost_reason = ""
        self.on_data: Callable[[bytes], None] | None = None

    @property
    def is_open(self) -> bool:
        return self._fd is not None and not self.lost.is_set()

    async def open(self, timeout: float = OPEN_TIMEOUT_S) -> None:
        self._loop = asyncio.get_running_loop()
        if not os.path.exists(self.path):
            raise PortGone(f"{self.path} does not exist")
        self.lock.acquire()
        try:
            # tcsetattr on a half-gone USB tty can block: open in a worker
            # thread and give up after ``timeout`` (the thread is abandoned).
            fut = in_daemon_thread(_open_serial, self.path, self.baudrate)
            self._serial = await asyncio.wait_for(fut, timeout)
        except TimeoutError as exc:
            self.lock.release()
            raise PortError(f"opening {self.path} did not finish within {timeout:g} s") from exc
        except BaseException:
            self.lock.release()
            raise
        fd = self._serial.fileno()  # type: ignore[attr-defined]
        os.set_blocking(fd, False)
        self._fd = fd
        self.lost.clear()
        self._loop.add_reader(fd, self._readable)

    def _readable(self) -> None:
        assert self._fd is not None
        try:
            data = os.read(self._fd, READ_SIZE)
        except BlockingIOError:
            return
        except OSError as exc:
            self._mark_lost(f"read failed: {os.strerror(exc.errno or errno.EIO)}")
            return
        if not data:
            self._mark_lost("hang-up")
            return
        if self.on_data is not None:
            self.on_data(data)

    def _mark_lost(self, reason: str) -> None:
        if self._loop is not None and self._fd is not None:
            self._loop.remove_reader(self._fd)
        if not self.lost.is_set():
            self.lost_reason = reason
            self.lost.set()

    async def write(self, data: bytes, timeout: float) -> None:
        if self._fd is None or self.lost.is_set():
            raise PortGone(f"{self.path} is gone ({self.lost_reason or 'closed'})")
        assert self._loop is not None
        deadline = self._loop.time() + timeout
        view = memoryview(data)
        while view:
            try:
                written = os.write(self._fd, view)
                view = view[written:]
                continue
            except BlockingIOError:
                pass
            except OSError as exc:
                self._mark_lost(f"write failed: {os.strerror(exc.errno or errno.EIO)}")
                raise PortGone(f"{self.path}: write failed") from exc
            # The modem is not draining its input: wait for room, not forever.
            remaining = deadline - self._loop.time()
            if remaining <= 0:
                raise AtTimeout(f"{self.path}: the port does not accept data")
            ready: asyncio.Future[None] = self._loop.create_future()
            fd = self._fd
            self._loop.add_writer(fd, _resolve_once, ready)
            try:
                await asyncio.wait_for(ready, min(remaining, 0.5))
            except TimeoutError:
                pass
            finally:
                self._loop.remove_writer(fd)

    async def close(self) -> None:
        """Close without ever blocking the caller for more than a second."""
        serial_port, self._serial = self._serial, None
        fd, self._fd = self._fd, None
        if fd is not None and self._loop is not None:
            self._loop.remove_reader(fd)
        if not self.lost.is_set():
            self.lost_reason = "closed"
            self.lost.set()
        if serial_port is not None:
            done = _close_in_background(serial_port.close, self.path)  # type: ignore[attr-defined]
            loop = asyncio.get_running_loop()
            # Poll the event rather than parking an executor thread on it.
            deadline = loop.time() + CLOSE_WAIT_S
            while not done.is_set() and loop.time() < deadline:
                await asyncio.sleep(0.05)
            if not done.is_set():
                log.warning(
                    "closing %s blocks in the kernel; left to finish in the background", self.path
                )
        self.lock.release()


class AtChannel:
    """AT commands over one :class:`SerialPort`, one at a time, each with a timeout."""

    def __init__(self, port: SerialPort, on_urc: Callable[[Urc], None] | None = None,
                 budget: ByteBudget | None = None, name: str | None = None) -> None:
        self.port = port
        self.engine = AtEngine()
        self.on_urc = on_urc
        self.budget = budget if budget is not None else ByteBudget()
        self.name = name or port.path
        self._lock = asyncio.Lock()
        self._waiter: asyncio.Future[Response] | None = None
        self._cut = False  # bytes were dropped since the last admitted ones
        port.on_data = self._on_data

    def _on_data(self, data: bytes) -> None:
        passed = self.budget.admit(len(data))
        if passed and self._cut:
            self._cut = False
            self.engine.gap()
        if passed < len(data):
            data = data[:passed]
            self._cut = True
            dropped = self.budget.report()
            if dropped is not None:
                log.warning(
                    "%s: %s sends more than %d bytes/s; dropped %d bytes (%d in all)",
                    self.name, self.port.path, self.budget.rate, dropped, self.budget.dropped,
                )
            if not data:
                return
        try:
            events = self.engine.feed(data)
        except Exception:  # the engine must never take the port down with it
            log.exception("%s: AT engine failed on %r", self.port.path, data[:64])
            self.engine.reset()
            return
        for event in events:
            if isinstance(event, Response):
                if self._waiter is not None and not self._waiter.done():
                    self._waiter.set_result(event)
            elif isinstance(event, Overflow):
                if self._waiter is not None and not self._waiter.done():
                    self._waiter.set_exception(AtOverflow(event.message))
            elif isinstance(event, Urc):
                if self.on_urc is not None:
                    self.on_urc(event)  # classified once, by the engine's table
            elif isinstance(event, Noise):
                log.debug(
                    "%s: discarded %d bytes of noise: %r",
                    self.port.path,
                    len(event.data),
                    event.data[:32],
                )

    async def command(self, command: str, timeout: float) -> Response:
        """Send one command and return its response; AtTimeout or PortGone otherwise."""
        async with self._lock:
            if "AT+COPS=?" in command.upper().replace(" ", ""):
                # A network scan holds the only AT port for minutes.
                raise ValueError("AT+COPS=? (network scan) is never sent: it blocks the port")
            loop = asyncio.get_running_loop()
            waiter: asyncio.Future[Response] = loop.create_future()
            self._waiter = waiter
            data = self.engine.command(command)
            lost_wait: asyncio.Future[Any] = asyncio.ensure_future(self.port.lost.wait())
            try:
                await self.port.write(data, timeout)
                done, _ = await asyncio.wait(
                    {waiter, lost_wait},
                    timeout=timeout,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if waiter in done:
                    return waiter.result()
                if lost_wait in done:
                    raise PortGone(f"{self.port.path} vanished ({self.port.lost_reason})")
                raise AtTimeout(f"{command}: no answer within {timeout:g} s")
            except BaseException:
                if self.engine.pending is not None:
                    self.engine.abandon()
                raise
            finally:
                lost_wait.cancel()
                self._waiter = None
