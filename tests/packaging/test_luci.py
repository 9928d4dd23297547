"""The LuCI app in a real browser against OpenWrt's own uhttpd, rpcd and ubusd.

The router sandbox (tests/router.py) runs ubusd, rpcd with the ubus object's
ucode plugin and the app's ACL, and uhttpd serving LuCI 24.10's client JS
(the kit's ``luci/openwrt-24.10.tar.gz``) with the app's views. Headless
Chromium runs in the sandbox's network namespace and is driven over the
DevTools protocol on a pipe (``--remote-debugging-pipe``: no port, no
library). Each page is the one LuCI's header template would emit for the
view, with a session from a real ``session login`` through uhttpd's /ubus.

Screenshots go to pytest's tmp dir; the status page's is copied to
docs/luci-status.png.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from remsim_lab.ionmesh_server import IonMeshServer
from remsim_lab.network import IONMESH, LabNetwork
from remsim_lab.rig import Rig
from tests.packaging.test_rpcd import (
    CALLS,
    LUCI_APP,
    ROOT,
    STATUS_IOT,
    STATUS_PRIMARY,
    put_status,
    recorded,
    rpcd_router,
)
from tests.router import KIT, Router, wait_for

LUCI_JS = KIT / "luci" / "openwrt-24.10.tar.gz"
SHIPPED_CONFIG = ROOT / "files" / "etc" / "config" / "remsim-supervisor"
SCREENSHOT_DOC = ROOT / "docs" / "luci-status.png"
POLL_INTERVAL = 2  # L.env.pollinterval of the test pages (LuCI's default is 5)
PASSWORD = "secret"
# openssl passwd -1 -salt remsim secret
PASSWORD_HASH = "$1$remsim$2FfLaG/QsXHjtbeJbG87B."
LOGINS = f"""
config login
	option username 'root'
	option password '{PASSWORD_HASH}'
	list read '*'
	list write '*'

config login
	option username 'viewer'
	option password '{PASSWORD_HASH}'
	list read '*'
"""

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<link rel="stylesheet" href="/luci-static/bootstrap/cascade.css">
<script>
window.__errors = [];
window.addEventListener('error', function(ev) {{
	window.__errors.push('error: ' + ev.message + ' @ ' + ev.filename + ':' + ev.lineno);
}});
window.addEventListener('unhandledrejection', function(ev) {{
	var r = ev.reason;
	window.__errors.push('unhandled rejection: ' + (r && (r.message || r) || r));
}});
</script>
<script src="/luci-static/resources/cbi.js"></script>
<script src="/luci-static/resources/luci.js"></script>
<script>
L = new LuCI({env});
</script>
</head>
<body class="lang_en">
<div id="maincontent" class="container">
<div id="tabmenu"></div>
<div id="view">
<div class="spinning">Loading view…</div>
<script>
{boot}
</script>
</div>
</div>
</body>
</html>
"""
BOOT_VIEW = """L.require('ui').then(function(ui) {{
	return ui.instantiateView('{view}');
}}).catch(function(e) {{
	window.__errors.push('instantiateView: ' + (e && (e.stack || e.message) || e));
}});"""
BOOT_INCLUDE = """L.require('view.status.include.60_remsim').then(function(widget) {
	return Promise.resolve(widget.load()).then(function(data) {
		var view = document.getElementById('view');
		view.innerHTML = '';
		view.appendChild(E('div', { 'class': 'cbi-section', 'id': 'widget' }, [
			E('h3', {}, [ widget.title ]), widget.render(data) ]));
	});
}).catch(function(e) {
	window.__errors.push('include: ' + (e && (e.stack || e.message) || e));
});"""


# -- the browser ---------------------------------------------------------------------------------

class Browser:
    """Headless Chromium in the sandbox's network namespace, driven over a DevTools pipe."""

    def __init__(self, router: Router, profile: Path) -> None:
        chrome = shutil.which("chromium") or shutil.which("chromium-browser")
        if chrome is None:
            pytest.fail("chromium is not installed: apt-get install -y chromium "
                        "(sh scripts/bootstrap-host.sh installs it)", pytrace=False)
        profile.mkdir(parents=True, exist_ok=True)
        self.profile = profile / "data"
        self.log = profile / "chromium.log"
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()
        args = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--disable-dev-shm-usage", "--hide-scrollbars",
                f"--user-data-dir={self.profile}", "--remote-debugging-pipe",
                "--window-size=1280,1024", "about:blank"]
        # the DevTools pipe is fds 3 (commands in) and 4 (answers out) of chromium
        self.proc = subprocess.Popen(
            [router.nsenter, "-t", str(router.pid), "-n", "--", "bash", "-c",
             f'exec "$0" "$@" 3<&{to_chrome_r} 4>&{from_chrome_w} '
             f'{to_chrome_r}<&- {from_chrome_w}>&-',
             chrome, *args],
            pass_fds=(to_chrome_r, from_chrome_w), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=open(self.log, "wb"),  # noqa: SIM115
            env={"PATH": "/usr/bin:/bin", "HOME": str(profile), "LANG": "C"},
            start_new_session=True)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._next = 0
        self._answers: dict[int, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.session: str | None = None

    def _read(self) -> None:
        buffer = b""
        while True:
            try:
                chunk = os.read(self._from_chrome, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                with self._cond:
                    self._answers[-1] = {"error": {"message": "chromium closed its pipe"}}
                    self._cond.notify_all()
                return
            buffer += chunk
            while b"\0" in buffer:
                raw, buffer = buffer.split(b"\0", 1)
                message = json.loads(raw)
                with self._cond:
                    if "id" in message:
                        self._answers[message["id"]] = message
                    else:
                        self.events.append(message)
                    self._cond.notify_all()

    def send(self, method: str, params: dict[str, Any] | None = None, *,
             session: bool = True, timeout: float = 30) -> dict[str, Any]:
        with self._cond:
            self._next += 1
            ident = self._next
        message: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
        if session and self.session:
            message["sessionId"] = self.session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        with self._cond:
            while ident not in self._answers and -1 not in self._answers:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"chromium did not answer {method} within {timeout} s")
                self._cond.wait(left)
            answer = self._answers.pop(ident, None) or self._answers[-1]
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error']}")
        return dict(answer.get("result") or {})

    def open(self, url: str) -> None:
        """A fresh tab on ``url`` (the previous one is closed)."""
        if self.session is not None:
            self.send("Target.closeTarget", {"targetId": self.target}, session=False)
        self.target = self.send("Target.createTarget", {"url": "about:blank"},
                                session=False)["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": self.target,
                                                           "flatten": True},
                                 session=False)["sessionId"]
        with self._cond:
            self.events.clear()
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable")
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": 1280, "height": 1024, "deviceScaleFactor": 1, "mobile": False})
        self.send("Page.navigate", {"url": url})

    def eval(self, expression: str, *, await_promise: bool = False) -> Any:
        result = self.send("Runtime.evaluate", {"expression": expression,
                                                "awaitPromise": await_promise,
                                                "returnByValue": True})
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise RuntimeError(f"{expression[:200]}: "
                               f"{(details.get('exception') or {}).get('description', details)}")
        return result["result"].get("value")

    def wait(self, expression: str, timeout: float = 15) -> Any:
        """Poll ``expression`` in the page until it is truthy; its value."""
        value = wait_for(lambda: self.eval(expression), timeout=timeout, interval=0.05)
        assert value, f"not within {timeout} s: {expression}\npage errors: {self.errors()}\n" \
                      f"page text: {self.text()[:2000]}"
        return value

    def text(self, selector: str = "body") -> str:
        return str(self.eval(f"(document.querySelector({json.dumps(selector)}) || {{}})"
                             ".innerText || ''"))

    def click(self, selector: str) -> None:
        assert self.eval(f"(function(){{ var e = document.querySelector({json.dumps(selector)});"
                         f" if (!e) return false; e.click(); return true; }})()"), selector

    def errors(self) -> list[str]:
        """Uncaught errors and rejections, and console errors, in the page so far."""
        found = list(self.eval("window.__errors || []") or [])
        with self._cond:
            events = list(self.events)
        for event in events:
            if event.get("method") == "Runtime.exceptionThrown":
                details = event["params"]["exceptionDetails"]
                found.append("exception: " + str((details.get("exception") or {})
                                                 .get("description") or details.get("text")))
            elif event.get("method") == "Log.entryAdded":
                entry = event["params"]["entry"]
                if entry.get("level") == "error" and "favicon.ico" not in entry.get("url", ""):
                    found.append(f"log: {entry.get('text')} {entry.get('url', '')}")
            elif event.get("method") == "Runtime.consoleAPICalled" \
                    and event["params"].get("type") == "error":
                found.append("console: " + " ".join(
                    str(a.get("value", a.get("description"))) for a in event["params"]["args"]))
        return found

    def screenshot(self, path: Path) -> Path:
        data = self.send("Page.captureScreenshot", {"format": "png",
                                                    "captureBeyondViewport": True})["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                with contextlib.suppress(OSError, RuntimeError, TimeoutError):
                    self.send("Browser.close", session=False, timeout=5)
                try:
                    self.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait(timeout=5)
        finally:
            # chromium's helpers, should any outlive it (its own session, started here)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            for fd in (self._to_chrome, self._from_chrome):
                with contextlib.suppress(OSError):
                    os.close(fd)
            shutil.rmtree(self.profile, ignore_errors=True)  # the log and screenshots stay


# -- the router with uhttpd, LuCI and the app ----------------------------------------------------

def rpc(router: Router, sid: str, obj: str, method: str, args: dict[str, Any]) -> dict[str, Any]:
    """One JSON-RPC call to uhttpd's /ubus inside the sandbox."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "call",
                       "params": [sid, obj, method, args]})
    script = ("import sys,urllib.request; r=urllib.request.Request('http://127.0.0.1/ubus', "
              "data=sys.stdin.read().encode(), headers={'Content-Type':'application/json'}); "
              "print(urllib.request.urlopen(r, timeout=20).read().decode())")
    result = router.run(["python3", "-c", script], input=body)
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def login(router: Router, user: str) -> str:
    answer = rpc(router, "0" * 32, "session", "login", {"username": user, "password": PASSWORD})
    assert answer["result"][0] == 0, answer
    return str(answer["result"][1]["ubus_rpc_session"])


def page(router: Router, name: str, title: str, boot: str, sid: str, *,
         readonly: bool = False) -> str:
    path = "/".join(["admin", "services", "remsim-supervisor", name])
    env = {
        "media": "/luci-static/bootstrap", "resource": "/luci-static/resources",
        "scriptname": "/cgi-bin/luci", "pathinfo": "/" + path, "documentroot": "/www",
        "requestpath": path.split("/"), "dispatchpath": path.split("/"), "lang": "en",
        "sessionid": sid, "token": "0123456789abcdef0123456789abcdef",
        "nodespec": {"satisfied": True, "readonly": readonly},
        "apply_rollback": 90, "apply_holdoff": 4, "apply_timeout": 5, "apply_display": 1.5,
        "rollback_token": None, "ubuspath": "/ubus/", "pollinterval": POLL_INTERVAL,
    }
    file = f"{name}-{sid[:8]}.html"
    (router.workdir / "www" / file).write_text(PAGE.format(title=title, env=json.dumps(env),
                                                           boot=boot))
    return f"http://127.0.0.1/{file}"


@pytest.fixture(scope="module")
def luci() -> Iterator[Router]:
    if not LUCI_JS.exists():
        pytest.fail(f"LuCI's JS is missing: {LUCI_JS} (../shared beside the repository)",
                    pytrace=False)
    with rpcd_router(www=True) as router:
        www = router.workdir / "www"
        with tarfile.open(LUCI_JS) as tar:
            if hasattr(tarfile, "data_filter"):  # 3.11.4 and later
                tar.extractall(router.workdir / "luci", filter="data")
            else:  # pragma: no cover
                tar.extractall(router.workdir / "luci")
        shutil.copytree(router.workdir / "luci" / "openwrt-24.10" / "luci-static",
                        www / "luci-static")
        shutil.copytree(LUCI_APP / "htdocs" / "luci-static", www / "luci-static",
                        dirs_exist_ok=True)
        router.sh("cat >> /etc/config/rpcd", input=LOGINS)
        config = SHIPPED_CONFIG.read_text().replace("#option data_budget_mb '100'",
                                                    "option data_budget_mb '100'")
        router.write("/etc/config/remsim-supervisor", config, 0o600)
        yield router


@pytest.fixture
def browser(luci: Router, tmp_path: Path) -> Iterator[Browser]:
    luci.sh(f": > {CALLS}; rm -f /tmp/cli-sleep")
    put_status(luci, STATUS_IOT)
    b = Browser(luci, tmp_path / "chromium")
    try:
        yield b
    finally:
        b.close()


MODEM_CARDS = "document.querySelectorAll('.rs-modem').length"


def card(browser: Browser, name: str) -> str:
    return browser.text(f".rs-modem[data-modem='{name}']")


# -- the status page -----------------------------------------------------------------------------

def test_status_page_shows_both_modems_and_follows_the_path(luci: Router, browser: Browser,
                                                            tmp_path: Path) -> None:
    sid = login(luci, "root")
    browser.open(page(luci, "status", "Remote SIM supervisor", BOOT_VIEW.format(
        view="remsim-supervisor/status"), sid))
    browser.wait(f"{MODEM_CARDS} == 2")

    primary, iot = card(browser, "modem1"), card(browser, "modem2")
    for text in ("modem1 (primary)", "connected", "home", "LTE", "Telekom.de",
                 "RSSI -65 dBm, RSRP -94 dBm, RSRQ -11 dB, SINR 13.2 dB", "remote (ready)",
                 "wwan0 up", "/dev/ttyUSB2"):
        assert text in primary, (text, primary)
    for text in ("modem2 (iot) carries the heartbeat", "roaming", "LTE-M", "1NCE",
                 "RSRP -107 dBm", "local (ready)"):
        assert text in iot, (text, iot)
    assert browser.text("#rs-path") == "modem2 (iot, wwan1)"
    assert browser.eval("document.getElementById('rs-grace-bar').dataset.percent") == "94"
    assert browser.eval("document.getElementById('rs-grace-bar').title") == "281 s of 300 s left"
    assert browser.text("#rs-grace-text") == "Last acknowledged heartbeat 19 s ago"
    moves = browser.text("#rs-moves")
    assert "modem2 path down (link wwan1 down)" in moves
    assert "back to modem2 after 3 acknowledged heartbeats" in moves
    assert "ionmesh.example.com\t198.51.100.20\tionmesh\tmodem2" in browser.text("#rs-pinned")
    recovery = browser.text("#rs-recoveries")
    assert "modem2\tradio_cycle\tok\t255 s" in recovery
    data = browser.text("#rs-data")
    assert "531 bytes on the wire" in data and "Projected per 30 days\t22.9 MB" in data
    # a progress bar's text is its title (the theme shows it)
    assert browser.eval("document.getElementById('rs-data-bar').title") == \
        "22.9 MB of 100.0 MB projected"
    assert browser.eval("document.getElementById('rs-data-bar').dataset.percent") == "23"
    # an administrator may act
    assert browser.eval("document.getElementById('rs-test-heartbeat').disabled") is False
    assert browser.eval("document.querySelector('.rs-modem button').disabled") is False
    shot = browser.screenshot(tmp_path / "luci-status.png")
    if os.environ.get("REMSIM_UPDATE_SCREENSHOT") == "1":  # the picture in docs/luci.md
        shutil.copy(shot, SCREENSHOT_DOC)

    # the daemon moves the heartbeat to the primary modem: the page follows within one poll
    put_status(luci, STATUS_PRIMARY)
    moved = time.monotonic()
    browser.wait("document.getElementById('rs-path').innerText == 'modem1 (primary, wwan0)'",
                 timeout=POLL_INTERVAL + 5)
    took = time.monotonic() - moved
    assert took <= POLL_INTERVAL + 1.0, f"the page showed the move after {took:.1f} s"
    assert "modem1 (primary) carries the heartbeat" in card(browser, "modem1")
    assert "searching" in card(browser, "modem2")
    assert "heartbeats not acknowledged over wwan1" in browser.text("#rs-moves")
    browser.screenshot(tmp_path / "luci-status-primary.png")
    assert browser.errors() == []


def test_status_page_over_the_real_daemon_in_the_lab(
        luci: Router, browser: Browser, net: LabNetwork, ionmesh: IonMeshServer,
        tmp_path: Path) -> None:
    """The daemon in the lab (real modems on ptys, real routing, a real IonMesh)
    keeps the status file; the page in the sandbox reads it through rpcd and
    follows the heartbeat to the primary when the lab drops the IoT link."""
    with Rig.for_lab(luci.workdir / "rig", f"http://{IONMESH}:5000") as rig:
        state = rig.root / "state"
        rig.start_daemon(netns=net.router)
        wait_for(lambda: '"path":"modem2"' in (state / "status.json").read_text()
                 if (state / "status.json").exists() else False, timeout=20)
        luci.sh(f"mount --bind {state} /var/run/remsim-supervisor")
        try:
            sid = login(luci, "root")
            browser.open(page(luci, "status", "Remote SIM supervisor", BOOT_VIEW.format(
                view="remsim-supervisor/status"), sid))
            browser.wait(f"{MODEM_CARDS} == 2")
            assert "modem2 (iot) carries the heartbeat" in card(browser, "modem2")
            assert "modem1 (primary)" in card(browser, "modem1")
            assert browser.text("#rs-path") == "modem2 (iot, wwan1)"

            net.link("iot", False)
            moved = time.monotonic()
            browser.wait("document.getElementById('rs-path').innerText == "
                         "'modem1 (primary, wwan0)'", timeout=POLL_INTERVAL + 10)
            took = time.monotonic() - moved
            browser.screenshot(tmp_path / "luci-status-lab.png")
            # the daemon writes the file at once on a move; the page polls
            assert took <= POLL_INTERVAL + 2.0, f"the page showed the move after {took:.1f} s"
            assert "modem1 (primary) carries the heartbeat" in card(browser, "modem1")
            assert browser.errors() == []
        finally:
            luci.sh("umount /var/run/remsim-supervisor", check=False)
        assert rig.stop_daemon() == 0


def test_test_heartbeat_button(luci: Router, browser: Browser, tmp_path: Path) -> None:
    sid = login(luci, "root")
    browser.open(page(luci, "status", "Remote SIM supervisor", BOOT_VIEW.format(
        view="remsim-supervisor/status"), sid))
    browser.wait(f"{MODEM_CARDS} == 2")
    browser.eval("document.getElementById('rs-via').value = 'primary'")
    browser.click("#rs-test-heartbeat")
    note = browser.wait("(function(){ var n = document.querySelector('.alert-message.info');"
                        " return n && n.innerText; })()")
    assert "Heartbeat via modem1 (wwan0): HTTP 200 in 182 ms, 531 bytes on the wire" in note
    assert recorded(luci) == [["test-heartbeat", "--via", "primary", "--count", "1", "--json"]]
    assert browser.errors() == []


def test_reset_modem_asks_first(luci: Router, browser: Browser, tmp_path: Path) -> None:
    sid = login(luci, "root")
    browser.open(page(luci, "status", "Remote SIM supervisor", BOOT_VIEW.format(
        view="remsim-supervisor/status"), sid))
    browser.wait(f"{MODEM_CARDS} == 2")
    browser.click(".rs-modem[data-modem='modem1'] button")
    browser.wait("!!document.getElementById('rs-reset-confirm')")
    assert "Reset modem modem1?" in browser.text(".modal")
    browser.screenshot(tmp_path / "luci-reset-confirm.png")
    assert recorded(luci) == []  # nothing before the confirmation
    browser.eval("document.getElementById('rs-reset-level').value = 'radio_cycle'")
    browser.click("#rs-reset-confirm")
    note = browser.wait("(function(){ var n = document.querySelector('.alert-message.info');"
                        " return n && n.innerText; })()")
    assert "modem1: radio_cycle done, registered again after 12.4 s" in note
    assert recorded(luci) == [["modem", "modem1", "reset", "--level", "radio_cycle",
                               "--timeout", "15"]]
    assert browser.errors() == []


def test_a_read_only_login_cannot_reset(luci: Router, browser: Browser, tmp_path: Path) -> None:
    sid = login(luci, "viewer")
    # the page as if the menu node were writable: the buttons follow rpcd's ACL all the same
    browser.open(page(luci, "status", "Remote SIM supervisor", BOOT_VIEW.format(
        view="remsim-supervisor/status"), sid, readonly=False))
    browser.wait(f"{MODEM_CARDS} == 2")
    assert browser.eval("document.getElementById('rs-test-heartbeat').disabled") is True
    assert browser.eval("Array.prototype.every.call(document.querySelectorAll('.rs-modem button'),"
                        " function(b) { return b.disabled; })") is True
    assert browser.eval("document.querySelectorAll('.rs-modem button').length") == 2
    browser.screenshot(tmp_path / "luci-status-readonly.png")
    assert browser.errors() == []

    # and rpcd refuses the calls themselves
    for method, args in (("reset", {"modem": "modem1", "level": "soft_reset"}),
                         ("test_heartbeat", {"via": "iot", "count": 1})):
        answer = rpc(luci, sid, "remsim-supervisor", method, args)
        assert answer["error"] == {"code": -32002, "message": "Access denied"}, answer
    assert recorded(luci) == []
    status = rpc(luci, sid, "remsim-supervisor", "status", {})
    assert status["result"][0] == 0 and status["result"][1]["heartbeat"]["path"] == "modem2"

    # an administrator on a menu node the dispatcher marked read-only: disabled too
    browser.open(page(luci, "status", "Remote SIM supervisor", BOOT_VIEW.format(
        view="remsim-supervisor/status"), login(luci, "root"), readonly=True))
    browser.wait(f"{MODEM_CARDS} == 2")
    assert browser.eval("document.getElementById('rs-test-heartbeat').disabled") is True
    assert browser.eval("document.querySelector('.rs-modem button').disabled") is True
    assert browser.errors() == []


# -- the settings page ---------------------------------------------------------------------------

def field(option: str, section: str) -> str:
    """The input of an option of the settings form (LuCI names it by its cbid)."""
    return f"document.getElementById('widget.cbid.remsim-supervisor.{section}.{option}')"


def test_settings_page_renders_the_config_and_refuses_an_invalid_value(
        luci: Router, browser: Browser, tmp_path: Path) -> None:
    sid = login(luci, "root")
    browser.open(page(luci, "settings", "Remote SIM supervisor - Settings", BOOT_VIEW.format(
        view="remsim-supervisor/settings"), sid))
    browser.wait("!!document.querySelector('.cbi-page-actions')")
    assert browser.eval(f"{field('url', 'ionmesh')}.value") == "http://ionmesh.example.com:5000"
    assert browser.eval(f"{field('usb_path', 'modem1')}.value") == "1-1"
    assert browser.eval(f"{field('usb_path', 'modem2')}.value") == "1-2"
    assert browser.eval(f"{field('data_budget_mb', 'main')}.value") == "100"
    assert browser.eval(f"{field('table', 'routing')}.placeholder") == "240"

    # the main table is refused with check-config's words, and the form is not saved
    browser.eval(f"(function(){{ var i = {field('table', 'routing')}; i.value = '254';"
                 " i.dispatchEvent(new Event('input', { bubbles: true }));"
                 " i.dispatchEvent(new Event('blur', { bubbles: true })); })()")
    browser.wait(f"{field('table', 'routing')}.classList.contains('cbi-input-invalid')")
    browser.click(".cbi-page-actions .cbi-button-save")
    modal = browser.wait("(function(){ var m = document.querySelector('.modal');"
                         " return m && m.innerText; })()")
    assert 'Option "Routing table" contains an invalid input value.' in modal
    assert "must not be 254: 253, 254 and 255 are the kernel's default, main and local " \
           "tables; use a table of the supervisor's own, such as 240" in modal
    browser.screenshot(tmp_path / "luci-settings-invalid.png")
    assert rpc(luci, sid, "uci", "changes", {"config": "remsim-supervisor"})["result"] == \
        [0, {"changes": []}]
    assert "option table" not in luci.read("/etc/config/remsim-supervisor").replace(
        "#option table", "")
    # LuCI's own Save button rejects the invalid form: that rejection is the only error
    assert [e for e in browser.errors()
            if "contains an invalid input value" not in e] == []

    # a valid value is staged as a UCI change
    browser.eval("document.querySelector('.modal .cbi-button').click()")
    browser.eval(f"(function(){{ var i = {field('table', 'routing')}; i.value = '241';"
                 " i.dispatchEvent(new Event('input', { bubbles: true }));"
                 " i.dispatchEvent(new Event('blur', { bubbles: true })); })()")
    browser.wait(f"!{field('table', 'routing')}.classList.contains('cbi-input-invalid')")
    browser.click(".cbi-page-actions .cbi-button-save")
    changes = wait_for(lambda: rpc(luci, sid, "uci", "changes", {"config": "remsim-supervisor"})
                       ["result"][1].get("changes"), timeout=10)
    assert changes == [["set", "routing", "table", "241"]], changes
    rpc(luci, sid, "uci", "revert", {"config": "remsim-supervisor"})


# -- the Status > Overview widget ----------------------------------------------------------------

def test_overview_widget(luci: Router, browser: Browser, tmp_path: Path) -> None:
    sid = login(luci, "viewer")
    browser.open(page(luci, "overview", "Status", BOOT_INCLUDE, sid, readonly=True))
    text = browser.wait("(function(){ var w = document.getElementById('rs-overview');"
                        " return w && w.innerText; })()")
    assert "Grace left\t281 s / 300 s" in text
    assert "Heartbeat path\tmodem2 (wwan1)" in text
    assert "modem1 (primary)\tconnected, Telekom.de, home" in text
    assert "modem2 (iot)\tconnected, 1NCE, roaming" in text
    browser.screenshot(tmp_path / "luci-overview.png")
    assert browser.errors() == []

    luci.sh("rm -f /var/run/remsim-supervisor/status.json")
    browser.open(page(luci, "overview", "Status", BOOT_INCLUDE, sid, readonly=True))
    text = browser.wait("(function(){ var w = document.getElementById('rs-overview');"
                        " return w && w.innerText; })()")
    assert "remsim-supervisor is not running" in text
    assert browser.errors() == []


# -- the settings form checks as check-config does -----------------------------------------------

PARITY_CONFIG = """\
config supervisor 'main'

config ionmesh 'ionmesh'
\toption url 'http://ionmesh.example.com:5000'

config modem 'modem1'
\toption role 'primary'
\toption usb_path '1-1'

config modem 'modem2'
\toption role 'iot'
\toption usb_path '1-2'

config routing 'routing'

config escalation 'escalation'

config notify 'notify'
"""
LISTS = ("pin", "step_cost")
PARITY_CASES: list[tuple[str, str, str]] = [
    ("main", "metrics_file", v) for v in ("/var/prometheus/remsim.prom", "remsim.prom", "/a b")
] + [
    ("notify", "directory", v) for v in ("/etc/remsim-supervisor/notify.d", "notify.d")
] + [
    ("notify", "grace_threshold", v) for v in ("120", "0", "soon")
] + [
    ("notify", "timeout", v) for v in ("10", "2.5", "0", "-1", "x")
] + [
    ("notify", "webhook", v) for v in (
        "https://hooks.example.net/remsim?token=abc", "HTTP://hooks.example.net",
        "http://user:pw@hooks.example.net/x", "ftp://hooks.example.net/x", "hooks.example.net",
        "https://hooks.example.net:x/", "https://hooks.example.net:70000/", "http://",
        "https://[::1]:8080/hook", "https://hooks example.net/")
] + [
    ("main", "grace_period", v) for v in ("300", "0", "-3", "x", "1.5")
] + [
    ("main", "data_budget_mb", v) for v in ("100", "0.5", "0", "-1", "lots")
] + [
    ("ionmesh", "url", v) for v in (
        "http://ionmesh.example.com:5000", "https://10.0.0.1", "ftp://ionmesh.example.com",
        "http://user:pw@ionmesh.example.com", "http://ionmesh.example.com:0",
        "http://ionmesh.example.com/?q=1", "http://ionmesh.example.com/#top", "http://",
        "ionmesh.example.com:5000", "http://ionmesh.example.com:port")
] + [
    ("ionmesh", "client_id", v) for v in ("router-001", "a\tb")
] + [
    ("ionmesh", "tenant_id", v) for v in ("1", "0", "x")
] + [
    ("ionmesh", "heartbeat_interval", v) for v in ("60", "9", "3601", "300", "299", "1m")
] + [
    ("ionmesh", "min_heartbeat_interval", v) for v in ("10", "0", "3601")
] + [
    ("ionmesh", "timeout", v) for v in ("10", "2.5", "0", "-1", "ten")
] + [
    ("ionmesh", "mcc_mnc", v) for v in ("26201", "310410", "2620", "26201x")
] + [
    ("ionmesh", "api_key", v) for v in ("k3y-abc", "a key")
] + [
    ("ionmesh", "ca_file", v) for v in ("/etc/ssl/certs/ca.crt", "certs/ca.crt")
] + [
    ("modem1", "usb_path", v) for v in ("1-1.2", "2-1", "1_1", "usb1")
] + [
    ("modem1", "usb_id", v) for v in ("2c7c:0125", "2C7C:0125", "2c7c0125", "2c7c:125")
] + [
    ("modem1", "at_port", v) for v in ("auto", "/dev/ttyUSB2", "ttyUSB2")
] + [
    ("modem1", "interface", v) for v in ("wwan", "wwan_2", "ww-an")
] + [
    ("modem1", "device", v) for v in ("wwan0", "a/b", "eth0:1", "0123456789abcdef")
] + [
    ("modem1", "sim_gpio", v) for v in ("gpiochip0:20", "/dev/gpiochip1:3", "5g2", "sysfs:21",
                                        "sim:modem1-sim", "21", "sysfs:x", "gpiochip0:70000",
                                        "sim:a!", "chip:x:y")
] + [
    ("modem1", "reset_pulse_ms", v) for v in ("500", "0", "10001")
] + [
    ("routing", "table", v) for v in ("240", "254", "253", "55", "0", "4294967296", "abc")
] + [
    ("routing", "priority", v) for v in ("90", "0", "32766", "2000", "10000", "40000", "x")
] + [
    ("routing", "pin", v) for v in ("remsim.example.com", "192.0.2.1", "2001:db8::1",
                                    "10.0.0.0/8", "host.example.com:80", "bad_host-",
                                    "1.2.3")
] + [
    ("routing", "failback_after", v) for v in ("3", "0", "-1", "x")
] + [
    ("routing", "mark", v) for v in ("0x10000000", "268435456", "0x100", "0", "zz",
                                     "0x1ffffffff")
] + [
    ("routing", "resolve_interval", v) for v in ("300", "29", "86401")
] + [
    ("escalation", "margin", v) for v in ("30", "0", "-1", "300")
] + [
    ("escalation", "max_resets_per_hour", v) for v in ("6", "0")
] + [
    ("escalation", "step_cost", v) for v in ("soft_reset=40", "fm350gl:soft_reset=40",
                                             "reboot=5", "soft_reset=x", "soft_reset=0",
                                             "soft_reset=3601", "nokia:ifup=3", "soft_reset")
]


def check_config_verdict(section: str, option: str, value: str) -> str | bool:
    """What check-config says of ``option`` set to ``value``: True, or its message."""
    from remsim_supervisor.config import ConfigError, parse_config

    keyword = "list" if option in LISTS else "option"
    lines = PARITY_CONFIG.splitlines()
    at = lines.index(next(line for line in lines if line.endswith(f"'{section}'")))
    end = lines.index("", at) if "" in lines[at:] else len(lines)
    body = [line for line in lines[at + 1:end] if not line.startswith(f"\toption {option} ")]
    lines[at + 1:end] = [f"\t{keyword} {option} '{value}'", *body]
    try:
        parse_config("\n".join(lines) + "\n", "/etc/config/remsim-supervisor")
    except ConfigError as exc:
        messages = [p.message for p in exc.problems if p.option == option]
        assert len(messages) == len(exc.problems), exc.problems  # nothing else is wrong
        return messages[0]
    return True


def test_settings_checks_match_check_config(luci: Router, browser: Browser) -> None:
    """Every case through the form's own check in the page, and through check-config."""
    sid = login(luci, "root")
    browser.open(page(luci, "settings", "Remote SIM supervisor - Settings", BOOT_VIEW.format(
        view="remsim-supervisor/settings"), sid))
    browser.wait("!!document.querySelector('.cbi-page-actions')")
    verdicts = browser.eval(
        "(function(cases) { var m = L.dom.findClassInstance(document.querySelector('.cbi-map'));"
        " return cases.map(function(c) { var found = m.lookupOption(c[1], c[0]);"
        " return found ? found[0].validate(c[0], c[2]) : 'no such option'; }); })"
        f"({json.dumps(PARITY_CASES)})")
    differences = []
    for (section, option, value), form_says in zip(PARITY_CASES, verdicts):
        expected = check_config_verdict(section, option, value)
        if form_says != expected:
            differences.append(f"{section}.{option}={value!r}: form {form_says!r}, "
                               f"check-config {expected!r}")
    assert not differences, "\n".join(differences)
    assert sum(v is True for v in verdicts) >= 30 and sum(v is not True for v in verdicts) >= 60
    assert browser.errors() == []


# -- the package ---------------------------------------------------------------------------------

def test_luci_ipk_installs_with_opkg(tmp_path: Path) -> None:
    """scripts/build_luci_ipk.py's package: LuCI's layout, and the kit's opkg installs it."""
    from tests.router import PREFIX, require_userland
    from tests.stubs.support import EPOCH, open_ipk

    require_userland()
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "build_luci_ipk.py"), "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "SOURCE_DATE_EPOCH": str(EPOCH)})
    assert result.returncode == 0, result.stderr
    path = Path(result.stdout.strip())
    assert path.name.startswith("luci-app-remsim-supervisor_") and path.name.endswith("_all.ipk")
    ipk = open_ipk(path)
    fields = ipk.fields()
    assert fields["Package"] == "luci-app-remsim-supervisor"
    assert fields["Architecture"] == "all"
    assert fields["Depends"] == "luci-base, rpcd-mod-ucode, remsim-supervisor"
    expected = {f"/www/{p.relative_to(LUCI_APP / 'htdocs').as_posix()}"
                for p in (LUCI_APP / "htdocs").rglob("*") if p.is_file()}
    expected |= {f"/{p.relative_to(LUCI_APP / 'root').as_posix()}"
                 for p in (LUCI_APP / "root").rglob("*") if p.is_file()}
    assert "/usr/share/rpcd/ucode/remsim-supervisor.uc" not in expected  # the main package's
    files = ipk.files()
    assert set(files) == expected
    assert {m.info.mode for m in files.values()} == {0o644}
    assert "/www/luci-static/resources/view/remsim-supervisor/status.js" in files
    assert "killall -HUP rpcd" in ipk.control_text("postinst")
    # the same bytes again: a reproducible build
    again = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "build_luci_ipk.py"), "--out",
         str(tmp_path / "again")], capture_output=True, text=True, timeout=60, check=True,
        env={**os.environ, "SOURCE_DATE_EPOCH": str(EPOCH)})
    assert Path(again.stdout.strip()).read_bytes() == path.read_bytes()

    root = tmp_path / "root"
    (root / "usr" / "lib" / "opkg" / "info").mkdir(parents=True)
    (root / "var" / "lock").mkdir(parents=True)
    (root / "etc" / "opkg").mkdir(parents=True)
    opkg = [str(PREFIX / "bin" / "opkg"), "--offline-root", str(root)]
    refused = subprocess.run([*opkg, "install", str(path)], capture_output=True, text=True,
                             timeout=60, check=False)
    assert refused.returncode != 0  # its dependencies are not there
    assert not (root / "www").exists()
    (root / "usr" / "lib" / "opkg" / "status").write_text("".join(
        f"Package: {name}\nVersion: 1.0-1\nStatus: install user installed\n"
        f"Architecture: all\nInstalled-Time: {EPOCH}\n\n"
        for name in ("luci-base", "rpcd-mod-ucode", "remsim-supervisor")))
    installed = subprocess.run([*opkg, "install", str(path)], capture_output=True, text=True,
                               timeout=60, check=False)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    for dest in expected:
        assert (root / dest.lstrip("/")).is_file(), dest
