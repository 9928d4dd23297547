"""Network namespaces for tests: created with a unique name, always removed."""

from __future__ import annotations

import contextlib
import os
import subprocess
import uuid
from collections.abc import Iterator


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


@contextlib.contextmanager
def netns(prefix: str = "rsst") -> Iterator[str]:
    """A fresh network namespace (loopback up); deleted on exit, also on failure."""
    name = f"{prefix}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    ip("netns", "add", name)
    try:
        ip("-n", name, "link", "set", "lo", "up")
        yield name
    finally:
        ip("netns", "del", name, check=False)


def exec_in(ns: str, *argv: str) -> list[str]:
    return ["ip", "netns", "exec", ns, *argv]


# Entering a namespace from the test process lives in the lab package (the demo uses it too).
from remsim_lab.network import call_in_netns  # noqa: E402,F401
