"""The LuCI status page says which AT port a modem is worked over, and why, from status.json."""

from __future__ import annotations

import json

from tests.packaging import test_luci
from tests.packaging.test_luci import (
    BOOT_VIEW,
    MODEM_CARDS,
    STATUS_IOT,
    Browser,
    card,
    login,
    page,
)
from tests.packaging.test_rpcd import put_status
from tests.router import Router

# The LuCI sandbox and the browser, as the status page's own tests have them.
luci = test_luci.luci
browser = test_luci.browser


def test_the_modem_card_names_the_other_at_port_and_why(luci: Router, browser: Browser) -> None:
    status = json.loads(STATUS_IOT.read_text())
    modem1 = next(m for m in status["modems"] if m["name"] == "modem1")
    modem1["at_port"] = "/dev/ttyUSB3"
    modem1["at_port_reason"] = "ttyUSB2 held by pid 1234 (smsd)"
    put_status(luci, json.dumps(status))
    sid = login(luci, "root")
    browser.open(page(luci, "status", "Remote SIM supervisor", BOOT_VIEW.format(
        view="remsim-supervisor/status"), sid))
    browser.wait(f"{MODEM_CARDS} == 2")
    assert "/dev/ttyUSB3 (ttyUSB2 held by pid 1234 (smsd))" in card(browser, "modem1")
    assert "held by" not in card(browser, "modem2")  # on its main port: the port alone
    assert browser.errors() == []
