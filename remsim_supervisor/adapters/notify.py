"""Notifications: what changed between two status snapshots, and telling the owner.

:class:`Watcher` is pure: fed one status snapshot after another, it names
the events between them and counts finished recovery steps (for the
metrics). The events:

``path_changed``
    the heartbeat moved to another modem (or to none); the first path found
    after the start is no change;
``modem_failed`` / ``modem_recovered``
    a modem entered ``failed``, or left it;
``recovery_step``
    the guardian started a recovery step, and again when it finished;
``grace_low``
    the grace left fell below ``grace_threshold`` (once, until it is back
    above);
``server_error``
    IonMesh started answering with errors (once per spell).

:class:`Notifier` delivers each event three ways, none of which can block
the daemon: every executable file in the notify directory runs with the
event in ``REMSIM_*`` environment variables (no shell, no arguments built
from the event, a time limit, one script at a time, a bounded queue);
``ubus send remsim-supervisor.EVENT`` where ubus runs; and, when configured,
a JSON POST to a webhook.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import logging
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

EVENTS = ("path_changed", "modem_failed", "modem_recovered", "recovery_step", "grace_low",
          "server_error")


@dataclass(frozen=True)
class Event:
    name: str
    message: str
    fields: Mapping[str, str] = field(default_factory=dict)

    def environment(self) -> dict[str, str]:
        """The event as ``REMSIM_*`` variables for a notify script."""
        env = {"REMSIM_EVENT": self.name, "REMSIM_MESSAGE": self.message}
        env.update({f"REMSIM_{key.upper()}": value for key, value in self.fields.items()})
        return env

    def as_json(self) -> dict[str, Any]:
        return {"event": self.name, "message": self.message, **self.fields}


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _recovery_key(record: Mapping[str, Any]) -> tuple[str, str, str]:
    return (_text(record.get("modem")), _text(record.get("step")), _text(record.get("started")))


class Watcher:
    """Events between consecutive status snapshots; pure, no clock."""

    def __init__(self, grace_threshold: float) -> None:
        self.grace_threshold = grace_threshold
        self.previous: Mapping[str, Any] | None = None
        self.recovery_steps: Counter[tuple[str, str, str]] = Counter()
        self._seen_steps: dict[tuple[str, str, str], str] = {}
        self._grace_low = False
        self._path_seen = False  # the first path after start is no change

    def observe(self, status: Mapping[str, Any]) -> list[Event]:
        before = self.previous
        self.previous = status
        events: list[Event] = []
        events += self._path(before, status)
        events += self._modems(before, status)
        events += self._recoveries(status)
        events += self._grace(status)
        events += self._server(before, status)
        return events

    def _path(self, before: Mapping[str, Any] | None, now: Mapping[str, Any]) -> list[Event]:
        old = ((before or {}).get("heartbeat") or {}).get("path")
        hb = now.get("heartbeat") or {}
        new = hb.get("path")
        first = not self._path_seen
        self._path_seen = self._path_seen or bool(new)
        if before is None or old == new or first:
            return []
        reason = _text(hb.get("path_reason"))
        return [Event("path_changed",
                      f"heartbeat path {old or 'none'} -> {new or 'none'}: {reason}",
                      {"from": _text(old), "to": _text(new), "reason": reason,
                       "interface": _text(hb.get("interface"))})]

    @staticmethod
    def _modems(before: Mapping[str, Any] | None, now: Mapping[str, Any]) -> list[Event]:
        if before is None:
            return []
        old_states = {m.get("name"): m.get("state") for m in before.get("modems") or []}
        events = []
        for m in now.get("modems") or []:
            name, state = m.get("name"), m.get("state")
            old = old_states.get(name)
            if old is None or old == state or "failed" not in (old, state):
                continue
            kind = "modem_failed" if state == "failed" else "modem_recovered"
            reason = _text(m.get("reason"))
            events.append(Event(kind, f"{name} ({m.get('role')}) {old} -> {state}: {reason}",
                                {"modem": _text(name), "role": _text(m.get("role")),
                                 "from": _text(old), "state": _text(state),
                                 "reason": reason}))
        return events

    def _recoveries(self, now: Mapping[str, Any]) -> list[Event]:
        events = []
        records = [r for r in now.get("recoveries") or [] if isinstance(r, Mapping)]
        for record in reversed(records):  # oldest first
            key = _recovery_key(record)
            result = _text(record.get("result"))
            if self._seen_steps.get(key) == result:
                continue
            self._seen_steps[key] = result
            if result != "running":
                self.recovery_steps[(key[0], key[1], result)] += 1
            what = "started" if result == "running" else f"finished: {result}"
            events.append(Event(
                "recovery_step",
                f"{key[0]}: recovery step {key[1]} {what} "
                f"({_text(record.get('grace_left_s'))} s of grace left at start)",
                {"modem": key[0], "step": key[1], "result": result,
                 "grace_left": _text(record.get("grace_left_s")),
                 "reason": _text(record.get("reason"))}))
        live = {_recovery_key(r) for r in records}
        for key in [k for k in self._seen_steps if k not in live]:
            del self._seen_steps[key]
        return events

    def _grace(self, now: Mapping[str, Any]) -> list[Event]:
        remaining = (now.get("grace") or {}).get("remaining_s")
        if not isinstance(remaining, (int, float)) or isinstance(remaining, bool):
            return []
        if remaining >= self.grace_threshold:
            self._grace_low = False
            return []
        if self._grace_low:
            return []
        self._grace_low = True
        return [Event("grace_low",
                      f"{remaining:.0f} s of grace left (threshold {self.grace_threshold:.0f} s)",
                      {"grace_left": f"{remaining:.0f}",
                       "threshold": f"{self.grace_threshold:.0f}"})]

    @staticmethod
    def _server(before: Mapping[str, Any] | None, now: Mapping[str, Any]) -> list[Event]:
        error = (now.get("heartbeat") or {}).get("server_error")
        old = ((before or {}).get("heartbeat") or {}).get("server_error")
        if not error or old:
            return []
        text = _text(error.get("error") if isinstance(error, Mapping) else error)
        return [Event("server_error", f"IonMesh answers with errors: {text}",
                      {"error": text})]


# -- delivery ----------------------------------------------------------------------


def scripts(directory: str) -> list[str]:
    """The executable regular files in ``directory``, in name order."""
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return []
    out = []
    for name in names:
        path = os.path.join(directory, name)
        if name.startswith(".") or not os.path.isfile(path) or not os.access(path, os.X_OK):
            continue
        out.append(path)
    return out


WebhookSender = Callable[[str, bytes, float], None]


def route_device(url: str) -> str | None:
    """The device the kernel's routes send ``url``'s host through (None: unknown).

    Blocking (a name lookup and a netlink request): call it from a worker thread.
    """
    import socket

    from pyroute2 import IPRoute

    host = urlsplit(url).hostname
    if not host:
        return None
    try:
        address = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)[0][4][0]
        with IPRoute() as ipr:
            routes = ipr.route("get", dst=address)
            oif = routes[0].get_attr("RTA_OIF") if routes else None
            if oif is None:
                return None
            links = ipr.get_links(oif)
            return links[0].get_attr("IFLA_IFNAME") if links else None
    except Exception:  # OSError, pyroute2's NetlinkError, an empty answer: unknown
        return None


def post_json(url: str, body: bytes, timeout: float) -> None:
    """POST ``body`` to ``url``; raises OSError (or ValueError) when it was not accepted."""
    parts = urlsplit(url)
    conn_class = (http.client.HTTPSConnection if parts.scheme == "https"
                  else http.client.HTTPConnection)
    conn = conn_class(parts.hostname or "", parts.port, timeout=timeout)
    try:
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn.request("POST", path, body=body,
                     headers={"Content-Type": "application/json",
                              "User-Agent": "remsim-supervisor"})
        answer = conn.getresponse()
        answer.read(4096)
        if not 200 <= answer.status < 300:
            raise OSError(f"the webhook answered HTTP {answer.status}")
    finally:
        conn.close()


class Notifier:
    """Delivers events without ever holding up the caller."""

    QUEUE = 64  # events waiting; beyond this the newest are dropped and counted

    def __init__(self, directory: str | None, *, timeout: float = 10.0,
                 webhook: str | None = None, webhook_allowed: Callable[[], bool] | None = None,
                 ubus: str | None = None, send: WebhookSender = post_json,
                 base_env: Mapping[str, str] | None = None) -> None:
        self.directory = directory
        self.timeout = timeout
        self.webhook = webhook
        self.webhook_allowed = webhook_allowed or (lambda: True)
        self.ubus = ubus if ubus is not None else shutil.which("ubus")
        self.send = send
        self.base_env = dict(base_env) if base_env is not None else {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")}
        self.queue: asyncio.Queue[Event] = asyncio.Queue(self.QUEUE)
        self.dropped = 0
        self.delivered: Counter[str] = Counter()
        self.failures: Counter[str] = Counter()

    def notify(self, events: Iterable[Event]) -> None:
        for event in events:
            log.info("notify %s: %s", event.name, event.message)
            try:
                self.queue.put_nowait(event)
            except asyncio.QueueFull:
                self.dropped += 1

    async def run(self) -> None:
        """Deliver queued events, one at a time, until cancelled."""
        while True:
            event = await self.queue.get()
            await self.deliver(event)

    async def deliver(self, event: Event) -> None:
        for path in scripts(self.directory) if self.directory else []:
            await self._script(path, event)
        if self.ubus:
            await self._run([self.ubus, "send", f"remsim-supervisor.{event.name}",
                             json.dumps(event.as_json())], "ubus")
        if self.webhook:
            await self._webhook(event)

    async def _script(self, path: str, event: Event) -> None:
        await self._run([path], os.path.basename(path), {**self.base_env, **event.environment()})

    async def _run(self, argv: list[str], what: str, env: Mapping[str, str] | None = None) -> None:
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE, env=dict(env) if env is not None else None,
                start_new_session=True)
        except OSError as exc:
            self.failures[what] += 1
            log.warning("notify: %s could not start: %s", what, exc.strerror or exc)
            return
        try:
            _, err = await asyncio.wait_for(proc.communicate(), self.timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 9)
            await proc.wait()
            self.failures[what] += 1
            log.warning("notify: %s was stopped after %.0f s", what, self.timeout)
            return
        if proc.returncode == 0:
            self.delivered[what] += 1
            return
        self.failures[what] += 1
        detail = err.decode(errors="replace").strip().splitlines()
        log.warning("notify: %s exited with status %s%s", what, proc.returncode,
                    f": {detail[-1][:200]}" if detail else "")

    async def _webhook(self, event: Event) -> None:
        assert self.webhook is not None
        try:
            allowed = await asyncio.wait_for(asyncio.to_thread(self.webhook_allowed),
                                             self.timeout)
        except TimeoutError:
            allowed = False
        if not allowed:
            self.failures["webhook"] += 1
            log.warning("notify: webhook not sent: its route leaves through the IoT modem "
                        "(set notify.webhook_via_iot '1' to allow it)")
            return
        body = json.dumps({**event.as_json(), "time": round(time.time(), 1)}).encode()
        try:
            await asyncio.wait_for(asyncio.to_thread(self.send, self.webhook, body, self.timeout),
                                   self.timeout + 1)
        except (TimeoutError, OSError, ValueError, http.client.HTTPException) as exc:
            self.failures["webhook"] += 1
            log.warning("notify: webhook failed: %s", str(exc) or type(exc).__name__)
            return
        self.delivered["webhook"] += 1

    def status(self) -> dict[str, Any]:
        return {"delivered": dict(self.delivered), "failed": dict(self.failures),
                "dropped": self.dropped, "waiting": self.queue.qsize()}
