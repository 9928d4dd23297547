"""Waiting in lab tests: poll a condition until it holds, or fail saying what never came."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait(what: str, predicate: Callable[[], T], timeout: float = 15.0,
         interval: float = 0.05) -> T:
    """``predicate()``'s first true value within ``timeout`` s; else fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")
