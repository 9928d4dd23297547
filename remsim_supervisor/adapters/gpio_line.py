"""A GPIO output line as the supervisor sees it: the interface every backend offers.

:class:`Line` speaks *logical* levels (``active_low`` applied): ``set(True)``
asserts the line, ``get()`` reads it back, ``release()`` lets it go. Every
failure is a :class:`GpioError` whose text says what to fix.
"""

from __future__ import annotations

from types import TracebackType
from typing import Protocol, Self

from remsim_supervisor.config import GpioSpec


class GpioError(Exception):
    """A line cannot be opened or driven; the message says what to fix."""


class Fallback(GpioError):
    """The gpiod backend cannot serve a name that sysfs may still offer."""


class Line(Protocol):
    """An output line driven at logical levels (``active_low`` applied)."""

    spec: GpioSpec
    active_low: bool

    def set(self, active: bool) -> None: ...

    def get(self) -> bool: ...

    def release(self) -> None: ...


class LineBase:
    """Context-manager plumbing shared by the backends."""

    spec: GpioSpec
    active_low: bool

    def release(self) -> None:  # pragma: no cover - every backend overrides it
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
