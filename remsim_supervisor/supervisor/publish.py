"""The owner's views, kept current: the status file, the metrics file, notifications.

When something pokes it (an acknowledged heartbeat, a failed one, a path
move, a modem's state change, a link change, a recovery step starting or
ending: the daemon pokes it on each), and otherwise every ``interval``
seconds (20), the publisher takes one status snapshot and:

- writes it, identifiers masked, to ``status.json`` in the state directory
  (``/var/run/remsim-supervisor``), replaced atomically. The rpcd plugin
  behind ``ubus call remsim-supervisor status`` and the LuCI page read this
  file, so neither starts Python; they call a file older than 30 s stale,
  which the 20 s refresh stays clear of;
- writes the Prometheus metrics to ``supervisor.metrics_file``;
- hands the events between this snapshot and the last to the notifier.

It sleeps between rounds: a quiet daemon wakes for it three times a minute,
not twelve, and a poke comes when the daemon is awake anyway. What changes
without a poke (the signal a poll read, an IonMesh error answer, the grace
running down between heartbeats) shows at the next round, at most
``interval`` later, with one exception that cannot wait: the grace left
falling below ``notify.grace_threshold`` is a notification, so when the
grace would cross it before the next round, the publisher wakes just after
the crossing instead (:func:`next_round`).

A failed write is logged once per cause and retried at the next round;
nothing here can stop the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from remsim_supervisor.adapters.notify import Notifier, Watcher
from remsim_supervisor.supervisor import metrics

log = logging.getLogger(__name__)

Snapshot = Callable[[], dict[str, Any]]
Sleep = Callable[[float], Awaitable[None]]
STATUS_FILE = "status.json"  # in the state directory
#: Seconds between rounds when nothing pokes the publisher; the rpcd plugin
#: calls a status file older than 30 s stale.
REFRESH_S = 20.0
#: How far past the grace threshold's crossing the publisher wakes: the
#: snapshot's ``remaining_s`` is rounded to 0.1 s and must be below it.
CROSSING_MARGIN_S = 0.2


def next_round(status: dict[str, Any], threshold: float, interval: float) -> float:
    """Seconds until the next round: ``interval``, or sooner when the grace left
    (``status["grace"]["remaining_s"]``, running down until the next acknowledged
    heartbeat) would fall below ``threshold`` before then."""
    remaining = (status.get("grace") or {}).get("remaining_s")
    if isinstance(remaining, bool) or not isinstance(remaining, (int, float)):
        return interval
    if remaining < threshold:
        return interval  # already below: notified once, nothing to wait for
    return max(0.0, min(interval, remaining - threshold + CROSSING_MARGIN_S))


class Publisher:
    def __init__(self, snapshot: Snapshot, *, status_file: str | None, metrics_file: str | None,
                 watcher: Watcher, notifier: Notifier | None,
                 mask: Callable[[dict[str, Any]], dict[str, Any]],
                 interval: float = REFRESH_S, sleep: Sleep = asyncio.sleep,
                 wall: Callable[[], float] = time.time) -> None:
        self.snapshot = snapshot
        self.status_file = status_file
        self.metrics_file = metrics_file
        self.watcher = watcher
        self.notifier = notifier
        self.mask = mask
        self.interval = interval
        self._sleep = sleep
        self._wall = wall
        self._poke = asyncio.Event()
        self._failing: dict[str, str] = {}

    def set_metrics_file(self, path: str | None) -> None:
        """Write metrics to ``path`` from now on (None: no metrics); an old file goes."""
        if self.metrics_file and self.metrics_file != path:
            with contextlib.suppress(OSError):
                os.unlink(self.metrics_file)
        self.metrics_file = path

    def withdraw(self) -> None:
        """Remove the files (an orderly stop): a reader then knows no daemon runs."""
        for path in (self.status_file, self.metrics_file):
            if path:
                with contextlib.suppress(OSError):
                    os.unlink(path)

    def poke(self) -> None:
        """Publish at once (from the event loop's thread)."""
        self._poke.set()

    async def run(self) -> None:
        while True:
            self._poke.clear()
            status = self.publish()
            await self._until_poked(
                next_round(status, self.watcher.grace_threshold, self.interval))

    async def _until_poked(self, seconds: float) -> None:
        if self._poke.is_set():
            return
        slept = asyncio.ensure_future(self._sleep(seconds))
        poked = asyncio.ensure_future(self._poke.wait())
        try:
            await asyncio.wait({slept, poked}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            slept.cancel()
            poked.cancel()

    def publish(self) -> dict[str, Any]:
        """One round: snapshot, notify, write; returns the snapshot."""
        status = self.snapshot()
        snapshot = status
        events = self.watcher.observe(status)
        if self.notifier is not None and events:
            self.notifier.notify(events)
        if self.status_file:
            status = dict(status, published_at=round(self._wall(), 1),
                          notifications=self.notifier.status() if self.notifier else None)
            self._write("status file", self.status_file,
                        json.dumps(self.mask(status), separators=(",", ":"), sort_keys=True))
        if self.metrics_file:
            self._write("metrics file", self.metrics_file,
                        metrics.render(status, self.watcher.recovery_steps))
        return snapshot

    def _write(self, what: str, path: str, text: str) -> None:
        try:
            metrics.write_atomic(path, text)
        except OSError as exc:
            cause = exc.strerror or str(exc)
            if self._failing.get(path) != cause:
                log.warning("%s %s not written: %s", what, path, cause)
            self._failing[path] = cause
            return
        if self._failing.pop(path, None) is not None:
            log.info("%s %s written again", what, path)
