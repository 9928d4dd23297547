"""Watching simulated GPIO lines: the lab's modems notice resets and power cuts.

:class:`SimWatch` tails a :class:`~remsim_supervisor.adapters.gpio_sim.SimGpio`
bank's ``events`` log and calls back for each change of one line (or all);
:class:`ResetWatcher` turns a line's excursions from its resting level into
resets of a modem emulator. They read the log, not the level files, so even
a pulse shorter than their polling interval is seen, in this process or
another.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Self

from remsim_supervisor.adapters.gpio_sim import SimEvent, SimGpio, parse_event

__all__ = ["ResetWatcher", "SimWatch", "watch"]

log = logging.getLogger(__name__)


def watch(sim: SimGpio, line: str | None, callback: Callable[[SimEvent], object],
          poll_s: float = 0.01) -> SimWatch:
    """Call ``callback`` with each later change of ``line`` (None: every line),
    from a polling thread; returns a handle with ``stop()``."""
    return SimWatch(sim, line, callback, poll_s)


class SimWatch:
    """Tails ``events`` for one line (or all) and calls back in a thread.

    Starts at the end of the log: only changes after construction count.
    ``poll()`` delivers what is pending right now, from the caller's thread;
    ``stop()`` ends the thread after a last ``poll()``.
    """

    def __init__(self, sim: SimGpio, line: str | None, callback: Callable[[SimEvent], object],
                 poll_s: float) -> None:
        self._sim, self._line, self._callback = sim, line, callback
        self._poll_s = poll_s
        self._lock = threading.Lock()
        try:
            self._offset = sim.events_path.stat().st_size
        except FileNotFoundError:
            self._offset = 0
        self._partial = b""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"sim-gpio-watch-{line}",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._poll_s):
            self.poll()

    def poll(self) -> int:
        with self._lock:
            try:
                with open(self._sim.events_path, "rb") as f:
                    size = os.fstat(f.fileno()).st_size
                    if size < self._offset:  # the log was started afresh
                        self._offset, self._partial = 0, b""
                    f.seek(self._offset)
                    data = f.read()
            except FileNotFoundError:
                return 0
            self._offset += len(data)
            *complete, self._partial = (self._partial + data).split(b"\n")
            delivered = 0
            for raw in complete:
                event = parse_event(raw.decode(errors="replace"))
                if event is None or (self._line is not None and event.line != self._line):
                    continue
                try:
                    self._callback(event)
                except Exception:  # an observer's bug must not end the watch
                    log.exception("simulated GPIO observer failed on %s", event)
                delivered += 1
            return delivered

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join()
        self.poll()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


class ResetWatcher:
    """Calls ``on_reset()`` each time a simulated line left its resting level and came back.

    ``kind="reset"``: a reset line rests inactive, so a pulse is active then
    inactive. ``kind="power"``: a power line rests active, so a power cycle
    is inactive then active. ``active_low`` maps logical to physical levels as
    the supervisor's configuration does. Excursions shorter than ``min_ms``
    are ignored, as a modem ignores a pulse too short for its reset pin.
    ``count`` and ``durations_ms`` record what was seen.
    """

    def __init__(self, sim: SimGpio, line: str, on_reset: Callable[[], object], *,
                 active_low: bool = False, kind: str = "reset", min_ms: float = 0.0,
                 poll_s: float = 0.01) -> None:
        if kind not in ("reset", "power"):
            raise ValueError(f"kind must be 'reset' or 'power', not {kind!r}")
        self.line = line
        self.kind = kind
        self.count = 0
        self.durations_ms: list[float] = []
        self._on_reset = on_reset
        self._min_ms = min_ms
        rest_logical = kind == "power"
        self._rest = 1 if rest_logical != active_low else 0
        self._left_at: int | None = None
        self._watch = SimWatch(sim, line, self._event, poll_s)

    def _event(self, event: SimEvent) -> None:
        if event.level != self._rest:
            if self._left_at is None:
                self._left_at = event.at_ns
            return
        if self._left_at is None:
            return
        duration_ms = (event.at_ns - self._left_at) / 1e6
        self._left_at = None
        if duration_ms < self._min_ms:
            log.info("sim:%s: %.1f ms %s ignored (shorter than %.1f ms)", self.line,
                     duration_ms, "pulse" if self.kind == "reset" else "power cut",
                     self._min_ms)
            return
        self.count += 1
        self.durations_ms.append(duration_ms)
        self._on_reset()

    def poll(self) -> int:
        return self._watch.poll()

    def stop(self) -> None:
        self._watch.stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
