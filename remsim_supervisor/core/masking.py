"""Identities and secrets as logs and status may show them."""

from __future__ import annotations

__all__ = ["mask"]


def mask(value: object, keep: int = 4) -> str:
    """Hide all but the last ``keep`` characters of an identity or secret."""
    text = "" if value is None else str(value)
    if not text:
        return ""
    if len(text) <= keep:
        return "*" * len(text)
    return "*" * (len(text) - keep) + text[-keep:]
