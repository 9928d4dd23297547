"""Every response of the shared AT corpus through the project's parsers.

The corpus (``AT_CORPUS``, default ``../shared/data/at_corpus/public.jsonl``
relative to the repository root) holds real modem replies and the values the
source projects' own tests read from them. Field names are the sources'
(ModemManager, python-gsmmodem, opensync); :data:`CHECKS` maps each family to
ours. A held-out corpus with the same families goes through this same file,
so nothing here knows a case id or a value: every check derives the answer
from the parsers.

How the families that are not plain "field = value" are checked:

* ``final_result``: :func:`find_final` must find (or not) the final code and
  agree on ``is_error``; the engine, fed the bytes one at a time while
  ``AT`` is pending, must complete the command exactly when a final exists.
* ``echo``: :func:`strip_echo` without a command (ModemManager's rule).
* ``echo_final``, ``ati``: run through the engine; echo gone, lines and final
  as expected.
* ``urc`` carries ``mm_regex``, a ModemManager regex that the case says
  matches with ``groups``. The regex is applied first (it checks the case
  itself), then ours: every URC line must be recognised by the URC tables
  (every profile's, as the engine has them before the modem is identified)
  and stay a URC while an unrelated command is pending.
* ``registration_simple``: ``gsmmodem`` describes what python-gsmmodem does
  with the state ("stops waiting" = registered, "keep waiting" = searching,
  "not searching" = neither); it is checked against
  :attr:`Registration.registered` and ``state``.
* ``iccid``: ``error: true`` means :func:`parse_iccid` refuses the value;
  ``iccid_raw`` is the value as sent: it must be found in the reply and be
  accepted, the result being the raw value less its 'F' filler.
* ``cpin``: ``expect_prefix`` is an input of ModemManager's +CPIN parser,
  passed to ours as ``prefix``; ModemManager's lock "none" is our "ready".
* :data:`NOT_READ` families (PDP contexts, +GTRNDIS, ^SYSINFO(EX), +QENG,
  +QDSIM): the product never reads these answers, so it has no parser for
  them; the reply still goes through the engine (the transcript check below)
  and its exception notes are checked against its final result code.
* ``exception`` / ``raises`` (python-gsmmodem's exception notes), and
  ``error`` in a family without an error field of its own, are checked
  against what the reply means to our parsers (:func:`predicted_exception`):
  an error final is the CmeError/CmsError/CommandError it carries
  (+CME ERROR, +CMS ERROR, any other error code); for a
  registration, searching is gsmmodem's TimeoutException (it keeps
  waiting) and neither registered nor searching its InvalidStateException;
  a reply the family's parser cannot read is a CommandError; else none. A
  ``gsmmodem`` note naming an exception is checked the same way.
* Keys that only describe the case (``note``, ``layout``, ``table``) are not
  compared. Any other key without a mapping fails the case, so a held-out
  field cannot pass unseen.

Every case whose command is a real AT command and whose reply holds a final
result code is also replayed through :class:`AtEngine` one byte at a time;
the parsers must read the same from ``Response.lines`` as from the raw text.

Run ``python tests/unit/test_at_corpus.py [PATH] [-v]`` for a plain summary: the
last line is ``N passed, N failed`` and the exit status 1 if any failed.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import pytest

from remsim_supervisor.core.at import AtEngine, Response, Urc
from remsim_supervisor.core.atcodes import Final, command_prefixes, find_final, strip_echo
from remsim_supervisor.core.parse import packet, registration, signal, sim
from remsim_supervisor.vendors import ANY_URCS, huawei, quectel
from remsim_supervisor.vendors import fibocom_intel as intel

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CORPUS = "../shared/data/at_corpus/public.jsonl"
Case = dict[str, Any]


class CorpusMissing(Exception):
    pass


def corpus_path(arg: str | None = None) -> Path:
    raw = arg or os.environ.get("AT_CORPUS") or DEFAULT_CORPUS
    path = Path(raw)
    return path if path.is_absolute() else (ROOT / path).resolve()


def load_cases(path: Path) -> list[Case]:
    if not path.is_file():
        raise CorpusMissing(
            f"AT corpus not found at {path} (set AT_CORPUS to the corpus .jsonl file)")
    cases = []
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if line.strip():
                case = json.loads(line)
                case.setdefault("id", f"line{n}")
                cases.append(case)
    if not cases:
        raise CorpusMissing(f"AT corpus {path} holds no cases")
    return cases


# --------------------------------------------------------------------------
# Comparison helpers


class Mismatch(AssertionError):
    pass


def same(name: str, got: object, exp: object) -> None:
    if isinstance(exp, float) or isinstance(got, float):
        ok = (got is not None and exp is not None
              and math.isclose(float(got), float(exp), abs_tol=1e-6))  # type: ignore[arg-type]
    else:
        ok = got == exp
    if not ok:
        raise Mismatch(f"{name}: got {got!r}, expected {exp!r}")


def need(value: Any, what: str) -> Any:
    if value is None:
        raise Mismatch(f"{what}: parser returned None")
    return value


IGNORED = frozenset({"note", "layout", "table"})


def compare(exp: dict[str, Any], mapping: dict[str, Callable[[], object]]) -> None:
    for key, want in exp.items():
        if key in IGNORED:
            continue
        if key not in mapping:
            raise Mismatch(f"unmapped expected field {key!r}")
        same(key, mapping[key](), want)


def attrs(obj: object, *names: str) -> dict[str, Callable[[], object]]:
    """A mapping that reads each name as the same-named attribute of ``obj``."""
    def reader(name: str) -> Callable[[], object]:
        return lambda: getattr(obj, name)
    return {name: reader(name) for name in names}


def hexs(value: int | None) -> str:
    return f"{value or 0:X}"


# ModemManager prints access technologies as "lte", "5gnr", "lte, 5gnr"...
_MM_TECH = {"5gnr": "nr5g", "lte, 5gnr": "nr5g_nsa", "5gnr, lte": "nr5g_nsa",
            "lte-cat-m": "lte_cat_m", "lte-nb-iot": "lte_nb_iot", "gsm-compact": "gsm_compact",
            "hspa-plus": "hspa_plus"}


def mm_tech(name: str) -> str:
    return _MM_TECH.get(name, name.replace("-", "_"))


def is_unsolicited(case: Case) -> bool:
    return str(case.get("command", "")).startswith("(unsolicited")


def real_command(case: Case) -> str | None:
    cmd = str(case.get("command", ""))
    return cmd if re.match(r"(?i)AT", cmd) else None


def run_engine(command: str, response: str) -> tuple[list[Response], list[object]]:
    """Feed ``response`` one byte at a time with ``command`` pending."""
    engine = AtEngine(ANY_URCS)
    engine.command(command)
    events: list[object] = []
    for b in response.encode("utf-8"):
        events += engine.feed(bytes([b]))
    if engine.pending is not None:
        # Fixtures often lose the CRLF after the final code; a modem sends it.
        events += engine.feed(b"\r\n")
    return [e for e in events if isinstance(e, Response)], events


def engine_response(case: Case) -> Response:
    cmd = need(real_command(case), "command")
    responses, _ = run_engine(cmd, case["response"])
    if len(responses) != 1:
        raise Mismatch(f"engine completed {len(responses)} responses, expected 1")
    return responses[0]


def check_mm_regex(case: Case) -> re.Match[str] | None:
    exp = case["expected"]
    m = re.search(exp["mm_regex"], case["response"])
    same("mm_regex matches", m is not None, exp["matches"])
    if m is not None:
        same("mm_regex groups", list(m.groups()), exp["groups"])
    return m


# --------------------------------------------------------------------------
# Family checks


def check_final_result(case: Case) -> None:
    exp, resp = case["expected"], case["response"]
    final = find_final(resp)
    same("final_result_found", final is not None, exp["final_result_found"])
    same("is_error", bool(final and final.is_error), exp["is_error"])
    compare({k: v for k, v in exp.items()
             if k not in ("final_result_found", "is_error")}, {})
    responses, _ = run_engine("AT", resp)
    same("engine responses", len(responses), 1 if final else 0)
    if final:
        same("engine final", responses[0].final, final)


def check_echo(case: Case) -> None:
    compare(case["expected"], {"without_echo": lambda: strip_echo(case["response"])})


def check_echo_final(case: Case) -> None:
    resp, cmd = case["response"], need(real_command(case), "command")
    rest = strip_echo(resp, cmd)
    final = need(find_final(rest), "final")
    r = engine_response(case)
    same("engine lines", r.lines, ())
    same("engine final", r.final.text, final.text)
    compare(case["expected"], {
        "final": lambda: final.text,
        "echo": lambda: resp[:len(resp) - len(rest)].strip(),
    })


def error_final(response: str) -> Final | None:
    """The error final result code that ended a reply, if it ended in one."""
    final = find_final(response)
    return final if final is not None and final.is_error else None


def error_name(final: Final) -> str:
    """python-gsmmodem's exception for an error final."""
    return {"cme_error": "CmeError", "cms_error": "CmsError"}.get(final.kind, "CommandError")


def check_error_code(case: Case) -> None:
    err = error_final(case["response"])
    compare(case["expected"], {
        "error": lambda: error_name(err) if err is not None else None,
        "type": lambda: ({"cme_error": "CME", "cms_error": "CMS", "modem_error": "MODEM"}
                         .get(err.kind) if err is not None else None),
        "code": lambda: err.code if err is not None else None,
    })


def _registration_mapping(reg: registration.Registration) -> dict[str, Callable[[], object]]:
    return {
        "urc_or_query": lambda: "urc" if reg.is_urc else "query",
        "kind": lambda: reg.kind,
        "n": lambda: reg.n,
        "stat": lambda: reg.stat,
        "reg_state": lambda: reg.state,
        "lac": lambda: reg.lac or 0,
        "ci": lambda: reg.ci or 0,
        "lac_hex": lambda: hexs(reg.lac),
        "ci_hex": lambda: hexs(reg.ci),
        "access_tech": lambda: reg.access_tech,
    }


def check_registration(case: Case) -> None:
    exp = dict(case["expected"])
    if "access_tech" in exp:
        exp["access_tech"] = mm_tech(exp["access_tech"])
    reg = need(registration.parse_registration(case["response"], unsolicited=is_unsolicited(case)),
               "parse_registration")
    mapping = _registration_mapping(reg)

    def gsmmodem() -> str:
        note = str(case["expected"]["gsmmodem"])
        if "stops waiting" in note:
            return note if reg.registered else f"registered={reg.registered}"
        if "keep waiting" in note:
            return note if reg.state == "searching" else f"state={reg.state}"
        if "not searching" in note:
            ok = not reg.registered and reg.state != "searching"
            return note if ok else f"state={reg.state}"
        if _EXCEPTION_NAME.search(note):
            return note  # the exception it names is checked by check_exception_notes
        raise Mismatch(f"gsmmodem note not understood: {note!r}")

    mapping["gsmmodem"] = gsmmodem
    compare(exp, mapping)


def check_csq(case: Case) -> None:
    x = need(signal.parse_csq(case["response"]), "parse_csq")
    compare(case["expected"], {
        # python-gsmmodem reports the raw <rssi>, and -1 for 99 (unknown).
        "signalStrength": lambda: x.rssi if x.rssi != 99 else -1,
        "rssi": lambda: x.rssi, "ber": lambda: x.ber, "rssi_dbm": lambda: x.rssi_dbm,
    })


def _cesq_mapping(x: signal.Cesq) -> dict[str, Callable[[], object]]:
    m = attrs(x, "rxlev", "ber", "rscp_level", "ecn0_level", "rsrq_level", "rsrp_level",
              "ecio_db", "rsrq_db")
    m |= {
        "rssi_db": lambda: x.rssi_dbm, "rscp_db": lambda: x.rscp_dbm,
        "rsrp_db": lambda: x.rsrp_dbm, "gsm_info": lambda: x.has_gsm,
        "umts_info": lambda: x.has_umts, "lte_info": lambda: x.has_lte,
    }
    if isinstance(x, intel.Xcesq):
        m |= {"rssnr_level": lambda: x.rssnr_level, "rssnr_db": lambda: x.rssnr_db}
    return m


def check_cesq(case: Case) -> None:
    compare(case["expected"], _cesq_mapping(need(signal.parse_cesq(case["response"]), "cesq")))


def check_xcesq(case: Case) -> None:
    compare(case["expected"], _cesq_mapping(need(intel.parse_xcesq(case["response"]), "xcesq")))


def check_qcsq(case: Case) -> None:
    x = need(quectel.parse_qcsq(case["response"]), "parse_qcsq")
    compare(case["expected"], attrs(
        x, "sysmode", "rssi_raw", "rssi_dbm", "rsrp_dbm", "sinr_raw", "sinr_db", "rsrq_db",
        "rscp_dbm", "ecio_db"))


def check_hcsq(case: Case) -> None:
    exp = dict(case["expected"])
    if "access_tech" in exp:
        exp["access_tech"] = mm_tech(exp["access_tech"])
    x = huawei.parse_hcsq(case["response"])
    compare(exp, {
        # ModemManager fails the parse for NOSERVICE; ours reports no service.
        "ok": lambda: x is not None and x.has_service,
        "access_tech": lambda: need(x, "hcsq").access_tech,
        "values": lambda: list(need(x, "hcsq").values),
    })


def check_cops(case: Case) -> None:
    x = registration.parse_cops(case["response"])
    exp = dict(case["expected"])
    if "access_tech" in exp:
        exp["access_tech"] = mm_tech(exp["access_tech"])
    compare(exp, {
        "networkName": lambda: x.operator if x else None,
        "mode": lambda: need(x, "cops").mode, "format": lambda: need(x, "cops").format,
        "operator": lambda: need(x, "cops").operator, "act": lambda: need(x, "cops").act,
        "access_tech": lambda: need(x, "cops").access_tech,
    })


# ModemManager's lock names that differ from ours.
_MM_LOCK = {"none": "ready"}


def check_cpin(case: Case) -> None:
    exp = dict(case["expected"])
    # expect_prefix is an input of ModemManager's parser: ours takes it too.
    lock = sim.parse_cpin(case["response"], prefix=exp.pop("expect_prefix", None))
    if "lock" in exp:
        exp["lock"] = _MM_LOCK.get(str(exp["lock"]), exp["lock"])
    if "cpin_state" in exp:
        # The code as the modem printed it ("EMPTY_EUICC", "SIM PIN"): ours is
        # the same code lower-cased with '_' for blanks and dashes.
        exp["cpin_state"] = re.sub(r"[\s\-]", "_", str(exp["cpin_state"]).strip()).lower()
    compare(exp, {"lock": lambda: lock, "cpin_state": lambda: lock})


def check_cfun(case: Case) -> None:
    x = need(sim.parse_cfun(case["response"]), "parse_cfun")
    compare(case["expected"], {"fun": lambda: x.fun, "power_state": lambda: x.power_state})


def check_iccid(case: Case) -> None:
    resp, exp = case["response"], case["expected"]
    got = sim.parse_iccid(resp)
    m: dict[str, Callable[[], object]] = {
        "iccid": lambda: got,
        "error": lambda: got is None,
    }
    if "iccid_raw" in exp:
        raw = exp["iccid_raw"]
        found = re.search(r"[0-9A-Fa-f]{10,}", strip_echo(resp, real_command(case)))
        same("raw value in reply", found.group() if found else None, raw)
        m["iccid_raw"] = lambda: raw if got is not None and got == raw.rstrip("Ff") else got
    compare(exp, m)


def check_identity(parser: Callable[[Any], str | None], key: str) -> Callable[[Case], None]:
    def check(case: Case) -> None:
        compare(case["expected"], {key: lambda: parser(case["response"])})
    return check


def check_cgev(case: Case) -> None:
    x = need(packet.parse_cgev(case["response"]), "parse_cgev")
    # ModemManager reports 0 for the numbers an event does not carry.
    compare(case["expected"], {
        "type": lambda: x.type, "pdp_type": lambda: x.pdp_type, "pdp_addr": lambda: x.pdp_addr,
        "cid": lambda: x.cid or 0, "parent_cid": lambda: x.parent_cid or 0,
        "event_type": lambda: x.event_type or 0,
    })


def check_urc(case: Case) -> None:
    m = check_mm_regex(case)
    lines = [ln.strip() for ln in re.split(r"\r\n|\r|\n", case["response"]) if ln.strip()]
    if m is None or not lines:
        return
    for line in lines:
        same(f"URC {line!r} recognised", ANY_URCS.classify(line).kind != "unknown", True)
    # While an unrelated command runs, the line must come out as a URC.
    engine = AtEngine(ANY_URCS)
    engine.command("AT+CSQ")
    events = []
    for b in case["response"].encode("utf-8"):
        events += engine.feed(bytes([b]))
    same("engine URCs", [e.line for e in events if isinstance(e, Urc)], lines)
    same("command still pending", engine.pending, "AT+CSQ")
    same("own prefix", command_prefixes("AT+CSQ"), frozenset({"+CSQ"}))


def check_ati(case: Case) -> None:
    r = engine_response(case)
    compare(case["expected"], {"final": lambda: r.final.text, "lines": lambda: list(r.lines)})


def check_qsimstat(case: Case) -> None:
    x = need(quectel.parse_qsimstat(case["response"]), "parse_qsimstat")
    compare(case["expected"], {"enable": lambda: int(x.enabled),
                               "inserted_status": lambda: x.inserted_status})


CHECKS: dict[str, Callable[[Case], None]] = {
    "final_result": check_final_result,
    "echo": check_echo,
    "echo_final": check_echo_final,
    "error_code": check_error_code,
    "registration": check_registration,
    "registration_simple": check_registration,
    "csq": check_csq,
    "cesq": check_cesq,
    "xcesq": check_xcesq,
    "qcsq": check_qcsq,
    "hcsq": check_hcsq,
    "cops": check_cops,
    "cpin": check_cpin,
    "cfun": check_cfun,
    "iccid": check_iccid,
    "imei": check_identity(sim.parse_imei, "imei"),
    "imsi": check_identity(sim.parse_imsi, "imsi"),
    "cgev": check_cgev,
    "urc": check_urc,
    "ati": check_ati,
    "qsimstat": check_qsimstat,
}

# Families whose answers the product never reads (no parser): the engine
# transcript and the exception notes are what is checked of them.
NOT_READ = frozenset({"qeng_servingcell", "cgdcont", "cgact", "cgcontrdp", "sysinfo",
                      "sysinfoex", "gtrndis", "qdsim"})

# Parsers whose answer must not depend on reading the raw text or the lines
# the engine extracted from it (the transcript cross-check below).
LINE_PARSERS: dict[str, Callable[[Any], object]] = {
    "registration": registration.parse_registration,
    "registration_simple": registration.parse_registration,
    "csq": signal.parse_csq, "cesq": signal.parse_cesq, "xcesq": intel.parse_xcesq,
    "qcsq": quectel.parse_qcsq, "hcsq": huawei.parse_hcsq, "cops": registration.parse_cops,
    "cfun": sim.parse_cfun, "imei": sim.parse_imei, "imsi": sim.parse_imsi,
    "qsimstat": quectel.parse_qsimstat, "iccid": sim.parse_iccid,
}


def check_transcript(case: Case) -> None:
    """A real command whose reply has a final code must pass the engine."""
    cmd = real_command(case)
    final = find_final(case["response"])
    if cmd is None or final is None or case["family"] in ("final_result", "echo_final"):
        return
    responses, _ = run_engine(cmd, case["response"])
    if len(responses) != 1:
        raise Mismatch(f"engine completed {len(responses)} responses, expected 1")
    same("engine final", responses[0].final, final)
    parser = LINE_PARSERS.get(case["family"])
    if parser is not None and final.kind == "ok":
        same("parse(Response.lines) vs parse(text)",
             parser(responses[0].lines), parser(case["response"]))


# Families whose checks map ``error`` themselves.
OWN_ERROR_FIELD = frozenset({"error_code", "iccid"})
_EXCEPTION_NAME = re.compile(r"\b([A-Za-z_][A-Za-z0-9_]*(?:Error|Exception))\b")


def exception_name(value: object) -> str | None:
    """The exception a note names ("gsmmodem.exceptions.CmeError: 22" -> CmeError)."""
    if value in (None, False, "", "none", "None"):
        return None
    m = _EXCEPTION_NAME.search(str(value))
    if m is None:
        raise Mismatch(f"exception note names no exception: {value!r}")
    return m.group(1)


def predicted_exception(case: Case) -> str | None:
    """The exception python-gsmmodem raises for this reply, as our parsers read it."""
    response = case["response"]
    error = error_final(response)
    if error is not None:
        return error_name(error)
    family = case.get("family")
    if family in ("registration", "registration_simple"):
        reg = registration.parse_registration(response, unsolicited=is_unsolicited(case))
        if reg is None:
            return "CommandError"
        if reg.registered:
            return None
        return "TimeoutException" if reg.state == "searching" else "InvalidStateException"
    parser = LINE_PARSERS.get(str(family))
    if parser is not None:
        try:
            parsed = parser(response)
        except Exception:  # a parser that raises has not read it
            parsed = None
        if parsed is None or parsed == ():
            return "CommandError"
    return None


def check_exception_notes(case: Case) -> Case:
    """Check the exception-like fields; return the case without them."""
    exp = dict(case["expected"])
    family = str(case.get("family"))
    for key in ("exception", "raises"):
        if key in exp:
            same(key, predicted_exception(case), exception_name(exp.pop(key)))
    if "gsmmodem" in exp and family not in ("registration", "registration_simple"):
        same("gsmmodem", predicted_exception(case), exception_name(exp.pop("gsmmodem")))
    elif "gsmmodem" in exp and _EXCEPTION_NAME.search(str(exp["gsmmodem"])):
        # The registration check reads the note's words; the exception it
        # names must agree as well.
        same("gsmmodem exception", predicted_exception(case),
             exception_name(exp["gsmmodem"]))
    if "error" in exp and family not in OWN_ERROR_FIELD:
        same("error", predicted_exception(case) is not None, bool(exp.pop("error")))
    return {**case, "expected": exp}


def check_case(case: Case) -> None:
    family = case.get("family")
    if family in NOT_READ:
        # Their "error" is ModemManager's parse flag, for a parser we do not have.
        check_exception_notes({**case, "expected": {
            k: v for k, v in case["expected"].items() if k != "error"}})
        check_transcript(case)
        return
    check = CHECKS.get(str(family))
    if check is None:
        raise Mismatch(f"unhandled family {family!r}")
    reduced = check_exception_notes(case)
    if reduced["expected"] or predicted_exception(case) is None:
        # With only exception fields, a reply the parser refuses has been
        # checked in full above.
        check(reduced)
    check_transcript(case)


def run_all(cases: list[Case]) -> tuple[Counter[str], Counter[str], list[str]]:
    passed: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    failures = []
    for case in cases:
        origin = str(case.get("origin", "?"))
        try:
            check_case(case)
        except Exception as exc:
            failed[origin] += 1
            failures.append(f"FAIL {case.get('id')} [{case.get('family')}/{origin}]: "
                            f"{type(exc).__name__}: {exc}")
        else:
            passed[origin] += 1
    return passed, failed, failures


def summary(passed: Counter[str], failed: Counter[str]) -> str:
    return f"{sum(passed.values())} passed, {sum(failed.values())} failed"


# --------------------------------------------------------------------------
# pytest


def _params() -> Iterator[Any]:
    try:
        cases = load_cases(corpus_path())
    except CorpusMissing as exc:
        yield pytest.param(str(exc), id="corpus-missing")
        return
    for case in cases:
        yield pytest.param(case, id=f"{case['id']}-{case.get('family')}")


@pytest.mark.parametrize("case", list(_params()))
def test_corpus_case(case: Case | str) -> None:
    if isinstance(case, str):
        pytest.fail(case)
    check_case(case)


def test_unhandled_family_fails_loudly() -> None:
    with pytest.raises(Mismatch, match="unhandled family 'nonesuch'"):
        check_case({"id": "x", "family": "nonesuch", "response": "", "expected": {}})


def test_unmapped_field_fails_loudly() -> None:
    case = {"id": "x", "family": "csq", "command": "AT+CSQ", "response": "+CSQ: 1,2",
            "expected": {"rssi": 1, "surprise": 3}}
    with pytest.raises(Mismatch, match="unmapped expected field 'surprise'"):
        check_case(case)


@pytest.mark.parametrize("case", [
    {"family": "cgact", "command": "AT+CGACT?", "response": "+CME ERROR: 3\r\n",
     "expected": {"contexts": [], "exception": "CmeError"}},
    {"family": "csq", "command": "AT+CSQ", "response": "+CSQ: 18,99\r\nOK\r\n",
     "expected": {"rssi": 18, "exception": None}},
    {"family": "csq", "command": "AT+CSQ", "response": "GARBAGE\r\nOK\r\n",
     "expected": {"exception": "gsmmodem.exceptions.CommandError"}},
    {"family": "cops", "command": "AT+COPS?", "response": "+CME ERROR: 30\r\n",
     "expected": {"raises": "CmeError", "error": True}},
    {"family": "registration_simple", "command": "AT+CREG?", "response": "+CREG: 0,3\r\nOK\r\n",
     "expected": {"n": 0, "stat": 3, "gsmmodem": "InvalidStateException (denied)"}},
    {"family": "registration_simple", "command": "AT+CREG?", "response": "+CREG: 0,2\r\nOK\r\n",
     "expected": {"stat": 2, "exception": "TimeoutException"}},
    {"family": "imei", "command": "AT+CGSN", "response": "ERROR\r\n",
     "expected": {"gsmmodem": "raises CommandError"}},
], ids=lambda c: f"{c['family']}-{sorted(c['expected'])}")
def test_error_flags_and_exception_notes_are_mapped(case: Case) -> None:
    check_case({"id": "x", **case})


@pytest.mark.parametrize(("family", "expected", "message"), [
    ("csq", {"rssi": 1, "error": True}, "error: got False"),
    ("csq", {"rssi": 1, "exception": "CommandError"}, "exception: got None"),
    ("csq", {"rssi": 1, "exception": "a surprise"}, "names no exception"),
    ("cgact", {"contexts": [], "exception": "CommandError"}, "exception: got None"),
])
def test_wrong_error_flags_and_notes_fail(family: str, expected: dict[str, object],
                                          message: str) -> None:
    with pytest.raises(Mismatch, match=message):
        check_case({"id": "x", "family": family, "command": "AT", "response": "+CSQ: 1,2\r\n",
                    "expected": expected})


def test_missing_corpus_is_a_clear_failure(tmp_path: Path) -> None:
    with pytest.raises(CorpusMissing, match="AT corpus not found"):
        load_cases(tmp_path / "nope.jsonl")


def test_corpus_summary(capsys: pytest.CaptureFixture[str]) -> None:
    """The whole corpus at once: prints the summary line, and no case the
    sources' own tests assert may fail."""
    try:
        cases = load_cases(corpus_path())
    except CorpusMissing as exc:
        pytest.fail(str(exc))
    passed, failed, failures = run_all(cases)
    with capsys.disabled():
        print()
        for line in failures:
            print(line)
        print(summary(passed, failed))
    assert failed["source-test-assertion"] == 0, failures


def main(argv: list[str]) -> int:
    args = [a for a in argv if a != "-v"]
    try:
        cases = load_cases(corpus_path(args[0] if args else None))
    except CorpusMissing as exc:
        print(exc)
        print("0 passed, 1 failed")
        return 1
    passed, failed, failures = run_all(cases)
    for line in failures:
        print(line)
    if "-v" in argv:
        for origin in sorted(set(passed) | set(failed)):
            print(f"  {origin}: {passed[origin]} passed, {failed[origin]} failed")
    print(summary(passed, failed))
    return 1 if sum(failed.values()) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
