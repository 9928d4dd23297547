"""Logging to syslog the way OpenWrt's logd expects it.

Every process of the supervisor (the daemon and the short commands alike)
logs through Python's ``logging`` into the stdlib ``syslog`` module with
facility ``daemon``, ident ``remsim-supervisor`` and the pid, so that
``logread -e remsim-supervisor`` shows it. The libc ``syslog()`` behind that
module writes a complete RFC 3164 header with a timestamp; we deliberately do
not use ``logging.handlers.SysLogHandler``, which sends no timestamp and makes
logd cut 16 bytes off any message with a space at offset 15.

``--log-stderr`` adds a plain stderr handler for running in a terminal.

Under systemd, ``$JOURNAL_STREAM`` names the journal stream that stderr is
connected to (its device and inode). There, every line goes to stderr with
its syslog priority as a ``<N>`` prefix (journald's ``SyslogLevelPrefix``),
without a timestamp of our own (the journal keeps one), and only there: a
syslog copy, or a second stderr handler for ``--log-stderr``, would put each
line in the journal twice.

Identities (IMSI, ICCID, IMEI) and API keys never appear in full in a log
line: :func:`mask` keeps only their last four characters.
"""

from __future__ import annotations

import logging
import os
import sys
import syslog
import time
from collections.abc import Callable, Mapping

IDENT = "remsim-supervisor"

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}

_SYSLOG_PRIORITY = {
    logging.DEBUG: syslog.LOG_DEBUG,
    logging.INFO: syslog.LOG_INFO,
    logging.WARNING: syslog.LOG_WARNING,
    logging.ERROR: syslog.LOG_ERR,
    logging.CRITICAL: syslog.LOG_CRIT,
}


# musl's syslog(3), OpenWrt's libc, cuts a message at 1024 bytes including
# its header (priority, timestamp, ident, pid): longer lines are sent in parts.
MAX_PART = 900


def split_for_syslog(line: str, limit: int = MAX_PART) -> list[str]:
    """Cut one line into parts of at most ``limit`` UTF-8 bytes, never inside a character."""
    data = line.encode("utf-8", "replace")
    if len(data) <= limit:
        return [line]
    parts = []
    while data:
        cut = min(limit, len(data))
        while cut < len(data) and (data[cut] & 0xC0) == 0x80:
            cut -= 1  # back off to a character boundary
        parts.append(data[:cut].decode("utf-8", "replace"))
        data = data[cut:]
    total = len(parts)
    return [f"[{i}/{total}] {part}" for i, part in enumerate(parts, 1)]


class SyslogHandler(logging.Handler):
    """Hands each record to libc syslog(3); one record is one syslog line."""

    def __init__(self, ident: str = IDENT, facility: int = syslog.LOG_DAEMON) -> None:
        super().__init__()
        syslog.openlog(ident, syslog.LOG_PID, facility)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = self.format(record)
            priority = _SYSLOG_PRIORITY.get(record.levelno, syslog.LOG_INFO)
            # A record is one line in logread: fold any embedded newlines.
            for line in message.splitlines() or [""]:
                for part in split_for_syslog(line):
                    syslog.syslog(priority, part)
        except Exception:  # pragma: no cover - logging must never kill the caller
            self.handleError(record)


def journal_stream(environ: Mapping[str, str] | None = None, fd: int = 2) -> bool:
    """Whether ``fd`` (stderr) is the journal stream ``$JOURNAL_STREAM`` names."""
    value = (os.environ if environ is None else environ).get("JOURNAL_STREAM", "")
    device, _, inode = value.partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        st = os.fstat(fd)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == (int(device), int(inode))


class JournalHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """One ``<N>message`` line per line of a record, N its syslog priority."""

    def format(self, record: logging.LogRecord) -> str:
        priority = _SYSLOG_PRIORITY.get(record.levelno, syslog.LOG_INFO)
        lines = super().format(record).splitlines() or [""]
        return "\n".join(f"<{priority}>{line}" for line in lines)


def _quiet_libraries(record: logging.LogRecord) -> bool:
    """Libraries' debug chatter (pyroute2 logs every netlink message) stays out."""
    if record.levelno >= logging.WARNING:
        return True
    return record.name.startswith("remsim_supervisor") or record.name == "root"


def setup(level: str = "info", to_stderr: bool = False, to_syslog: bool = True) -> None:
    """Configure the root logger for this process (idempotent)."""
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.setLevel(LEVELS.get(level, logging.INFO))
    if (to_syslog or to_stderr) and journal_stream():
        journal = JournalHandler(sys.stderr)
        journal.setFormatter(logging.Formatter("%(message)s"))
        journal.addFilter(_quiet_libraries)
        root.addHandler(journal)
        return
    if to_syslog:
        handler: logging.Handler = SyslogHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler.addFilter(_quiet_libraries)
        root.addHandler(handler)
    if to_stderr:
        stream = logging.StreamHandler(sys.stderr)
        stream.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        stream.addFilter(_quiet_libraries)
        root.addHandler(stream)


def set_level(level: str) -> None:
    logging.getLogger().setLevel(LEVELS.get(level, logging.INFO))


class Budget:
    """At most ``count`` lines of one kind per ``window`` seconds, for lines an
    outsider can multiply (a modem spraying garbage, a server's list).

    :meth:`take` answers None when this line must stay unlogged, else how many
    were held back since the last one logged (0 normally), so the line that
    gets through can say so. ``clock`` is injectable for tests.
    """

    def __init__(self, count: int, window: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.count = count
        self.window = window
        self.clock = clock
        self._start = -window
        self._used = 0
        self._held = 0

    def take(self) -> int | None:
        now = self.clock()
        if now - self._start >= self.window:
            self._start, self._used = now, 0
        if self._used >= self.count:
            self._held += 1
            return None
        self._used += 1
        held, self._held = self._held, 0
        return held
