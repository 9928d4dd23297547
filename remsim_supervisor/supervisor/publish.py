"""The owner's views, kept current: the status file, the metrics file, notifications.

Every ``interval`` seconds, and at once when something pokes it (a path
move, a recovery step), the publisher takes one status snapshot and:

- writes it, identifiers masked, to ``status.json`` in the state directory
  (``/var/run/remsim-supervisor``), replaced atomically. The rpcd plugin
  behind ``ubus call remsim-supervisor status`` and the LuCI page read this
  file, so neither starts Python;
- writes the Prometheus metrics to ``supervisor.metrics_file``;
- hands the events between this snapshot and the last to the notifier.

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
from collections.abc import Callable
from typing import Any

from remsim_supervisor.adapters.notify import Notifier, Watcher
from remsim_supervisor.supervisor import metrics

log = logging.getLogger(__name__)

Snapshot = Callable[[], dict[str, Any]]
STATUS_FILE = "status.json"  # in the state directory


class Publisher:
    def __init__(self, snapshot: Snapshot, *, status_file: str | None, metrics_file: str | None,
                 watcher: Watcher, notifier: Notifier | None,
                 mask: Callable[[dict[str, Any]], dict[str, Any]],
                 interval: float = 5.0) -> None:
        self.snapshot = snapshot
        self.status_file = status_file
        self.metrics_file = metrics_file
        self.watcher = watcher
        self.notifier = notifier
        self.mask = mask
        self.interval = interval
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
            self.publish()
            try:
                await asyncio.wait_for(self._poke.wait(), self.interval)
            except TimeoutError:
                pass
            self._poke.clear()

    def publish(self) -> None:
        status = self.snapshot()
        events = self.watcher.observe(status)
        if self.notifier is not None and events:
            self.notifier.notify(events)
        if self.status_file:
            status = dict(status, published_at=round(time.time(), 1),
                          notifications=self.notifier.status() if self.notifier else None)
            self._write("status file", self.status_file,
                        json.dumps(self.mask(status), separators=(",", ":"), sort_keys=True))
        if self.metrics_file:
            self._write("metrics file", self.metrics_file,
                        metrics.render(status, self.watcher.recovery_steps))

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
