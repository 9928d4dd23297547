"""The value converters: an option's text in, its typed value out, or :class:`Bad`
saying what to write instead.

Each converter checks one kind of value (numbers and their ranges, UCI
booleans, enums folded case-insensitively to their canonical spelling, URLs,
USB paths and ids, paths, GPIO lines, pins, the routing table and rule
preference clear of the kernel's, mwan3's and netifd's, recovery step costs).
A message never repeats a secret.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

from remsim_supervisor.config.types import GpioSpec, models


class Bad(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


Convert = Callable[[str], Any]


def integer(low: int | None = None, high: int | None = None, unit: str = "") -> Convert:
    units = f" {unit}" if unit else ""

    def convert(text: str) -> int:
        if not re.fullmatch(r"-?[0-9]+", text):
            raise Bad(f"must be a whole number{' of ' + unit if unit else ''}, not {text!r}")
        n = int(text)
        if low is not None and high is not None and not low <= n <= high:
            raise Bad(f"must be between {low} and {high}{units}, not {n}")
        if low is not None and n < low:
            if low == 1 and unit:
                raise Bad(f"must be more than 0 {unit}, not {n}")
            raise Bad(f"must be at least {low}{units}, not {n}")
        return n
    return convert


def positive(unit: str) -> Convert:
    def convert(text: str) -> float:
        if not re.fullmatch(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)", text):
            raise Bad(f"must be a number of {unit}, not {text!r}")
        n = float(text)
        if n <= 0:
            raise Bad(f"must be more than 0 {unit}, not {text}")
        return n
    return convert


_TRUE = ("1", "yes", "on", "true", "enabled")
_FALSE = ("0", "no", "off", "false", "disabled")


def boolean(text: str) -> bool:
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    raise Bad(f"must be 1 or 0 (or yes/no, on/off, true/false, enabled/disabled), not {text!r}")


def choice(choices: Sequence[str] | Callable[[], Sequence[str]],
           fold: Callable[[str], str] = str.lower) -> Convert:
    """One of ``choices`` (or of what the callable gives, asked when a value comes)."""
    def convert(text: str) -> str:
        known = choices() if callable(choices) else choices
        for choice in known:
            if fold(choice) == fold(text):
                return choice
        listed = (f"'{known[0]}' or '{known[1]}'" if len(known) == 2
                  else "one of " + ", ".join(known))
        raise Bad(f"must be {listed}, not {text!r}")
    return convert


def model_key(text: str) -> str:
    # a model written with capitals, dashes or spaces names the same profile key
    return re.sub(r"[^a-z0-9]", "", text.lower())


def url(text: str) -> str:
    example = "as in 'http://ionmesh.example.com:5000'"
    if any(c.isspace() for c in text):
        raise Bad(f"must not contain spaces, {example}")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as e:
        raise Bad(f"is not a valid URL ({e}): write it {example}") from None
    if parts.scheme not in ("http", "https"):
        raise Bad(f"must start with http:// or https://, {example}, not {text!r}")
    if not parts.hostname:
        raise Bad(f"has no host: write it {example}")
    if parts.username is not None or parts.password is not None:
        raise Bad("must not hold credentials: put the key in option api_key")
    if parts.query or parts.fragment:
        raise Bad(f"must not have a ?query or #fragment: write the base URL, {example}")
    if port == 0:
        raise Bad(f"has port 0: use the server's port, {example}")
    return text


def mcc_mnc(text: str) -> str:
    if not re.fullmatch(r"[0-9]{5,6}", text):
        raise Bad(f"must be 5 or 6 digits (MCC and MNC, as in '26201'), not {text!r}")
    return text


def plain_text(text: str) -> str:
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise Bad("must not contain control characters")
    return text


def secret(text: str) -> str:
    # never echo the value: a problem line ends up in logs and bug reports
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in text):
        raise Bad("must not contain spaces or control characters (value not shown)")
    return text


def webhook(text: str) -> str:
    """A webhook URL: http(s) and a host; a path or query may carry its token."""
    example = "as in 'https://hooks.example.net/remsim'"
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 (raises on a bad port)
    except ValueError as e:
        raise Bad(f"is not a valid URL ({e}): write it {example}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname \
            or any(c.isspace() for c in text):
        raise Bad(f"must be an http:// or https:// URL with a host, {example}")
    return text


def absolute_path(example: str) -> Convert:
    def convert(text: str) -> str:
        if not text.startswith("/") or any(c.isspace() for c in text):
            raise Bad(f"must be an absolute path such as {example}, not {text!r}")
        return text
    return convert


def at_port(text: str) -> str | None:
    if text.lower() == "auto":
        return None
    if not text.startswith("/") or any(c.isspace() for c in text):
        raise Bad(f"must be an absolute path such as /dev/ttyUSB2, or auto, not {text!r}")
    return text


def usb_path(text: str) -> str:
    if not re.fullmatch(r"[0-9]+-[0-9]+(?:\.[0-9]+)*", text):
        raise Bad("must be a USB device path such as '1-1' or '1-1.2' "
                   f"(a name under /sys/bus/usb/devices), not {text!r}")
    return text


def usb_id(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"([0-9a-fA-F]{4}):([0-9a-fA-F]{4})", text)
    if not m:
        raise Bad(f"must be VID:PID in hex, such as '2c7c:0125', not {text!r}")
    return int(m[1], 16), int(m[2], 16)


def interface(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_]+", text):
        raise Bad("must be a netifd interface name (a section name in /etc/config/network: "
                   f"letters, digits and _), not {text!r}")
    return text


def device(text: str) -> str:
    if not re.fullmatch(r"[^\s/:]{1,15}", text) or text in (".", ".."):
        raise Bad("must be a Linux network device name (at most 15 characters, "
                   f"no spaces, '/' or ':'), such as 'wwan0', not {text!r}")
    return text


def gpio(text: str) -> GpioSpec:
    try:
        return GpioSpec.parse(text)
    except ValueError as e:
        raise Bad(str(e)) from None


def legacy_gpio(text: str) -> GpioSpec:
    try:
        return GpioSpec.parse(text, legacy=True)
    except ValueError as e:
        raise Bad(str(e)) from None


def level(text: str) -> int:
    if text not in ("0", "1"):
        raise Bad(f"must be 0 or 1 (the SIM line level that selects the remote SIM), "
                   f"not {text!r}")
    return int(text)


def table(text: str) -> int:
    from remsim_supervisor.core.routes import reserved_table  # only when a file sets one

    n = int(integer(1, 4294967295)(text))
    reason = reserved_table(n)
    if reason is not None:
        raise Bad(f"must not be {n}: {reason}")
    return n


def priority(text: str) -> int:
    from remsim_supervisor.core.routes import reserved_priority  # only when a file sets one

    if re.fullmatch(r"[0-9]+", text) and int(text) in (0, 32766, 32767):
        raise Bad(f"must not be {int(text)}: {reserved_priority(int(text))}")
    n = int(integer(1, 32765)(text))
    reason = reserved_priority(n)
    if reason is not None:
        raise Bad(f"must not be {n}: {reason}")
    return n


MWAN3_MARK_MASK = 0x3F00


def step_cost(text: str) -> tuple[str, str, float]:
    """'RUNG=SECONDS' or 'MODEL:RUNG=SECONDS'."""
    from remsim_supervisor.core.planner import RUNGS  # only when a file sets one

    head, sep, seconds = text.partition("=")
    model, colon, rung = head.rpartition(":")
    model = model.strip().lower() if colon else "*"
    rung = rung.strip()
    if not sep or rung not in RUNGS or (model != "*" and model not in models()):
        raise Bad(f"must be RUNG=SECONDS or MODEL:RUNG=SECONDS with a rung among "
                   f"{', '.join(RUNGS)}, not {text!r}")
    try:
        value = float(seconds)
    except ValueError:
        raise Bad(f"the seconds in {text!r} are not a number") from None
    if not 0 < value <= 3600:
        raise Bad(f"the seconds in {text!r} must be above 0 and at most 3600")
    return (model, rung, value)


def mark(text: str) -> int:
    try:
        n = int(text, 0)
    except ValueError:
        raise Bad(f"must be a firewall mark such as 0x10000000, not {text!r}") from None
    if not 0 < n <= 0xFFFFFFFF:
        raise Bad(f"must be from 0x1 to 0xffffffff, not {text!r}")
    if n & MWAN3_MARK_MASK:
        raise Bad(f"must not use the bits 0x3f00: mwan3 marks its traffic with them; "
                   f"use one such as 0x10000000, not {text!r}")
    return n


_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")


def pin(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    if "/" in text:
        raise Bad(f"must be a host name or one address, not a network ({text!r})")
    name = text.removesuffix(".")
    labels = name.split(".")
    if len(name) <= 253 and all(_HOST_LABEL.fullmatch(label) for label in labels) \
            and not labels[-1].isdigit():
        return name.lower()  # DNS ignores case; one spelling lets duplicates fold
    hint = " (without a port)" if ":" in text else ""
    raise Bad(f"must be a host name or an IP address{hint}, not {text!r}")
