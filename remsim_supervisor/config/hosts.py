"""Options for generic Linux hosts: the ``ifup`` step's commands and the USB monitor.

``escalation.ifup_command`` (and ``escalation.ifdown_command``, run first
when set) is the command line the ``ifup`` recovery step runs, split into
words as a shell would split it (quotes allowed, no shell run), with
``{interface}`` standing for the modem's ``interface``. OpenWrt's default is
``ifup {interface}`` (netifd restarts the interface); Debian's ifupdown
wants ``ifdown {interface}`` then ``ifup {interface}``; NetworkManager
``nmcli connection up {interface}``; systemd-networkd
``networkctl reconfigure {interface}``.

``supervisor.usb_monitor`` (``auto``, ``udev``, ``kernel``, ``off``) chooses
where USB events come from on a host with udev
(:mod:`remsim_supervisor.adapters.udevmon`).
"""

from __future__ import annotations

import re
import shlex

from remsim_supervisor.config.convert import Bad

__all__ = ["PLACEHOLDER", "USB_MONITORS", "command_template"]

PLACEHOLDER = "{interface}"
USB_MONITORS = ("auto", "udev", "kernel", "off")
_BRACED = re.compile(r"\{[^{}]*\}")


def command_template(text: str) -> tuple[str, ...]:
    """A command line with ``{interface}``, as its words; Bad saying what to write."""
    example = "as in 'nmcli connection up {interface}'"
    try:
        words = tuple(shlex.split(text))
    except ValueError as exc:  # an unclosed quote
        raise Bad(f"cannot be split into words ({exc}): {example}") from None
    if not words:
        raise Bad(f"must be a command, {example}")
    for word in words:
        for braced in _BRACED.findall(word):
            if braced != PLACEHOLDER:
                raise Bad(f"unknown placeholder {braced}: only {PLACEHOLDER} is replaced, "
                          f"{example}")
    if PLACEHOLDER in words[0]:
        raise Bad(f"must start with the program, not {PLACEHOLDER}, {example}")
    if not any(PLACEHOLDER in word for word in words):
        raise Bad(f"must name the interface as {PLACEHOLDER}, {example}")
    return words
