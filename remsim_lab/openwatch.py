"""Who opened a file: inotify's IN_OPEN on one path, for tests that must prove a port untouched.

A tty held by another program (smsd, pppd) must not even be opened by the
supervisor: opening a tty can toggle DTR and hang up the holder's session.
:class:`OpenWatch` watches the device node (a ``/dev/pts/N`` in the lab) and
counts the opens since it was last asked. The kernel coalesces identical
unread events, so the count says "none" or "some", not how many.
"""

from __future__ import annotations

import ctypes
import os
import select
import struct

__all__ = ["OpenWatch"]

IN_OPEN = 0x20
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len (then len bytes of name)


class OpenWatch:
    """Every open(2) of one file from now on (a context manager; close() ends it)."""

    def __init__(self, path: str) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self.fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        if libc.inotify_add_watch(self.fd, os.fsencode(path), IN_OPEN) < 0:
            err = ctypes.get_errno()
            os.close(self.fd)
            raise OSError(err, f"inotify_add_watch {path}")

    def opens(self, wait_s: float = 0.2) -> int:
        """Open events since the last call, after waiting up to ``wait_s`` for one."""
        count = 0
        select.select([self.fd], [], [], wait_s)
        while True:
            try:
                data = os.read(self.fd, 4096)
            except BlockingIOError:
                return count
            offset = 0
            while offset < len(data):
                _wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
                count += bool(mask & IN_OPEN)
                offset += _EVENT.size + length

    def close(self) -> None:
        os.close(self.fd)

    def __enter__(self) -> OpenWatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
