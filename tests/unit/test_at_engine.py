"""The sans-I/O AT engine: framing, echo, finals, URCs, timeouts, garbage."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from remsim_supervisor.core.at import (
    MAX_LINE,
    MAX_RESPONSE_BYTES,
    MAX_RESPONSE_LINES,
    AtBusy,
    AtEngine,
    Event,
    Noise,
    Overflow,
    Response,
    Urc,
)
from remsim_supervisor.core.atcodes import (
    Final,
    command_prefixes,
    find_final,
    parse_final_line,
    strip_echo,
)
from remsim_supervisor.core.parse.registration import Registration
from remsim_supervisor.core.urc import BASIC_URCS, UrcRule, UrcTable
from remsim_supervisor.vendors import ANY_URCS, get_profile
from tests.fuzzing import examples

# Every profile's URCs: what the engine knows while the modem is not identified yet.
URCS = ANY_URCS

CSQ_REPLY = b"\r\n+CSQ: 18,99\r\n\r\nOK\r\n"
CSQ_RESPONSE = Response("AT+CSQ", ("+CSQ: 18,99",), Final("OK", "ok", None, None))


def run(engine: AtEngine, data: bytes, chunks: list[int] | None = None) -> list[Event]:
    """Feed ``data`` split at the given offsets (or whole)."""
    events: list[Event] = []
    cuts = [0, *(chunks or []), len(data)]
    for a, b in itertools.pairwise(cuts):
        events += engine.feed(data[a:b])
    return events


def send(engine: AtEngine, cmd: str, reply: bytes) -> list[Event]:
    engine.command(cmd)
    return engine.feed(reply)


def only(events: list[Event]) -> Response:
    """The single event, which must be a Response."""
    assert len(events) == 1, events
    assert isinstance(events[0], Response), events
    return events[0]


def responses(events: list[Event]) -> list[Response]:
    return [e for e in events if isinstance(e, Response)]


def urcs(events: list[Event]) -> list[str]:
    return [e.line for e in events if isinstance(e, Urc)]


# --------------------------------------------------------------------------
# Commands


def test_command_returns_bytes_to_write_and_is_pending() -> None:
    engine = AtEngine(URCS)
    assert engine.command("AT+CSQ") == b"AT+CSQ\r"
    assert engine.pending == "AT+CSQ"


def test_simple_exchange_completes_and_clears_pending() -> None:
    engine = AtEngine(URCS)
    events = send(engine, "AT+CSQ", CSQ_REPLY)
    assert events == [CSQ_RESPONSE]
    assert only(events).ok
    assert engine.pending is None


def test_second_command_while_pending_is_busy() -> None:
    engine = AtEngine(URCS)
    engine.command("AT")
    with pytest.raises(AtBusy):
        engine.command("AT+CSQ")
    assert engine.pending == "AT"


@pytest.mark.parametrize("bad", ["AT\r", "AT\nATI", "AT+COPS=\r\n", "", "   ", "AT+CPIN=\"ü\""])
def test_malformed_commands_are_rejected(bad: str) -> None:
    engine = AtEngine(URCS)
    with pytest.raises(ValueError):
        engine.command(bad)
    assert engine.pending is None


def test_command_prefixes() -> None:
    assert command_prefixes("AT+CEREG?") == {"+CEREG"}
    assert command_prefixes("at+qeng=\"servingcell\"") == {"+QENG"}
    assert command_prefixes("AT^SYSINFOEX") == {"^SYSINFOEX"}
    assert command_prefixes("AT+CSQ;+CREG?") == {"+CSQ", "+CREG"}
    assert command_prefixes("ATI") == frozenset()
    assert command_prefixes("AT!GSTATUS?") == {"!GSTATUS"}


# --------------------------------------------------------------------------
# Framing


TRANSCRIPT = (b"AT+CGDCONT?\r\r\n+CGDCONT: 1,\"IP\",\"internet\"\r\n"
              b"\r\n+CEREG: 1,\"1F00\",\"79D903\",7\r\n"
              b"+CGDCONT: 2,\"IPV4V6\",\"ims\"\r\n\r\nOK\r\n\r\nRDY\r\n")


def expected_transcript() -> list[Event]:
    return [
        Urc('+CEREG: 1,"1F00","79D903",7'),
        Response("AT+CGDCONT?", ('+CGDCONT: 1,"IP","internet"', '+CGDCONT: 2,"IPV4V6","ims"'),
                 Final("OK", "ok", None, None)),
        Urc("RDY"),
    ]


def test_urc_in_the_middle_of_a_multiline_response() -> None:
    engine = AtEngine(URCS)
    engine.command("AT+CGDCONT?")
    assert run(engine, TRANSCRIPT) == expected_transcript()


def test_one_byte_at_a_time() -> None:
    engine = AtEngine(URCS)
    engine.command("AT+CGDCONT?")
    assert run(engine, TRANSCRIPT, list(range(1, len(TRANSCRIPT)))) == expected_transcript()


@pytest.mark.parametrize("cut", range(1, len(TRANSCRIPT)))
def test_split_at_every_byte_boundary(cut: int) -> None:
    engine = AtEngine(URCS)
    engine.command("AT+CGDCONT?")
    assert run(engine, TRANSCRIPT, [cut]) == expected_transcript()


def test_split_at_every_pair_of_boundaries() -> None:
    data = b"AT+CSQ\r\r\n+CSQ: 18,99\r\n\r\n+CREG: 5\r\nOK\r\n"
    want = [Urc("+CREG: 5"), CSQ_RESPONSE]
    for i in range(1, len(data)):
        for j in range(i + 1, len(data)):
            engine = AtEngine(URCS)
            engine.command("AT+CSQ")
            assert run(engine, data, [i, j]) == want, (i, j)


@pytest.mark.parametrize("eol", [b"\r\n", b"\n", b"\r", b"\r\r\n"])
def test_any_line_ending(eol: bytes) -> None:
    engine = AtEngine(URCS)
    reply = eol + b"+CSQ: 18,99" + eol + eol + b"OK" + eol
    assert send(engine, "AT+CSQ", reply) == [CSQ_RESPONSE]


def test_mixed_line_endings_in_one_reply() -> None:
    engine = AtEngine(URCS)
    reply = b"at+cgdcont?\r\n+CGDCONT: 1,\"IP\",\"a\"\n+CGDCONT: 2,\"IP\",\"b\"\r\r\nOK\r"
    r = only(send(engine, "at+cgdcont?", reply))
    assert r.lines == ('+CGDCONT: 1,"IP","a"', '+CGDCONT: 2,"IP","b"') and r.ok


def test_final_without_terminator_waits_for_it() -> None:
    engine = AtEngine(URCS)
    assert send(engine, "AT", b"\r\nOK") == []
    assert engine.pending == "AT"
    assert engine.feed(b"\r\n") == [Response("AT", (), Final("OK", "ok", None, None))]


def test_empty_feed_is_harmless() -> None:
    engine = AtEngine(URCS)
    assert engine.feed(b"") == []
    engine.command("AT")
    assert engine.feed(b"") == []
    assert engine.pending == "AT"


# --------------------------------------------------------------------------
# Echo


@pytest.mark.parametrize("echo", [b"", b"AT+CSQ\r", b"AT+CSQ\r\r\n", b"AT+CSQ\r\n", b"at+csq\r\n"])
def test_echo_on_or_off_gives_the_same_response(echo: bytes) -> None:
    engine = AtEngine(URCS)
    assert send(engine, "AT+CSQ", echo + CSQ_REPLY) == [CSQ_RESPONSE]


def test_echo_followed_directly_by_data() -> None:
    engine = AtEngine(URCS)
    assert send(engine, "AT+CSQ", b"AT+CSQ+CSQ: 18,99\r\nOK\r\n") == [CSQ_RESPONSE]


def test_echo_after_a_urc_is_still_removed() -> None:
    engine = AtEngine(URCS)
    events = send(engine, "AT+CSQ", b"\r\n+CREG: 1\r\nAT+CSQ\r\r\n+CSQ: 18,99\r\nOK\r\n")
    assert events == [Urc("+CREG: 1"), CSQ_RESPONSE]


def test_a_line_equal_to_the_command_later_is_data() -> None:
    engine = AtEngine(URCS)
    r = only(send(engine, "ATI", b"\r\nQuectel\r\nATI\r\nOK\r\n"))
    assert r.lines == ("Quectel", "ATI")


def test_strip_echo_with_and_without_command() -> None:
    assert strip_echo("at\r\r\nOK\r\n", "AT") == "\r\nOK\r\n"
    assert strip_echo("AT+CSQ\r\n+CSQ: 1,2", "at+csq") == "\r\n+CSQ: 1,2"
    assert strip_echo("\r\nOK\r\n", "AT") == "\r\nOK\r\n"  # echo off: untouched
    assert strip_echo("+CSQ: 1,2\r\nOK\r\n", "AT+CSQ") == "+CSQ: 1,2\r\nOK\r\n"
    assert strip_echo("junk\r\nOK\r\n") == "\r\nOK\r\n"
    assert strip_echo("\nNO CARRIER\r\n") == "\nNO CARRIER\r\n"
    assert strip_echo("a\r\n") == "\r\n"


# --------------------------------------------------------------------------
# Final result codes

FINALS = [
    ("OK", "ok", None, None, False),
    ("CONNECT", "connect", None, None, False),
    ("CONNECT 150000000", "connect", None, "150000000", False),
    ("ERROR", "error", None, None, True),
    ("+CME ERROR: 10", "cme_error", 10, None, True),
    ("+CME ERROR:10", "cme_error", 10, None, True),
    ("+CME ERROR: SIM not inserted", "cme_error", None, "SIM not inserted", True),
    ("+CMS ERROR: 310", "cms_error", 310, None, True),
    ("+CMS ERROR: bananas", "cms_error", None, "bananas", True),
    ("NO CARRIER", "no_carrier", None, None, True),
    ("BUSY", "busy", None, None, True),
    ("NO ANSWER", "no_answer", None, None, True),
    ("NO DIALTONE", "no_dialtone", None, None, True),
    ("NO DIAL TONE", "no_dialtone", None, None, True),
    ("COMMAND NOT SUPPORT", "not_supported", None, None, True),
    ("MODEM ERROR: 5", "modem_error", 5, None, True),
]


@pytest.mark.parametrize(("text", "kind", "code", "message", "is_error"), FINALS)
def test_each_final_code_ends_the_command(text: str, kind: str, code: int | None,
                                          message: str | None, is_error: bool) -> None:
    engine = AtEngine(URCS)
    r = only(send(engine, "AT+X", b"\r\n+X: 1\r\n\r\n" + text.encode() + b"\r\n"))
    assert r.final == Final(text, kind, code, message)
    assert r.final.is_error is is_error
    assert r.ok is (kind == "ok")
    assert r.lines == ("+X: 1",)
    assert engine.pending is None


@pytest.mark.parametrize("text", ["+CME ERROR:", "+CMS ERROR:", "MODEM ERROR:",
                                  "MODEM ERROR: apple", "OKAY", "ERRORS", "CONNECTED"])
def test_near_finals_are_information_lines(text: str) -> None:
    assert parse_final_line(text) is None
    engine = AtEngine(URCS)
    r = only(send(engine, "AT", b"\r\n" + text.encode() + b"\r\n\r\nERROR\r\n"))
    assert r.lines == (text,) and r.final.kind == "error"


def test_cme_error_with_blank_text_is_final_without_code() -> None:
    assert parse_final_line("+CME ERROR: ") == Final("+CME ERROR:", "cme_error", None, None)


def test_huge_error_number_does_not_crash() -> None:
    final = parse_final_line("+CME ERROR: " + "9" * 5000)
    assert final is not None and final.kind == "cme_error" and final.code is None


def test_find_final_takes_the_first_final() -> None:
    found = find_final("\r\nOK\r\n\r\n+CMTI: \"ME\",1\r\n\r\nERROR\r\n")
    assert found == Final("OK", "ok", None, None)
    assert find_final("\r\n+CSQ: 1,2\r\n") is None


# --------------------------------------------------------------------------
# URCs


def test_with_nothing_pending_every_line_is_a_urc() -> None:
    engine = AtEngine(URCS)
    events = engine.feed(b"\r\nRDY\r\n\r\n+CPIN: READY\r\n\r\n+QIND: PB DONE\r\nhello\r\n")
    assert events == [Urc("RDY"), Urc("+CPIN: READY"), Urc("+QIND: PB DONE"), Urc("hello")]


def test_stray_finals_with_nothing_pending_are_noise_but_call_codes_are_urcs() -> None:
    engine = AtEngine(URCS)
    events = engine.feed(b"\r\nOK\r\n\r\n+CME ERROR: 3\r\n\r\nNO CARRIER\r\n\r\nRING\r\n")
    assert events == [Noise(b"OK"), Noise(b"+CME ERROR: 3"), Urc("NO CARRIER"), Urc("RING")]


def test_own_prefix_is_a_response_line_other_prefixes_are_urcs() -> None:
    engine = AtEngine(URCS)
    events = send(engine, "AT+CEREG?",
                  b"\r\n+CGREG: 1\r\n+CEREG: 2,1,\"1F00\",\"79D903\",7\r\n\r\nOK\r\n")
    assert urcs(events) == ["+CGREG: 1"]
    assert responses(events)[0].lines == ('+CEREG: 2,1,"1F00","79D903",7',)


def test_cpin_answer_is_a_response_line_while_cpin_is_pending() -> None:
    engine = AtEngine(URCS)
    r = only(send(engine, "AT+CPIN?", b"\r\n+CPIN: READY\r\n\r\nOK\r\n"))
    assert r.lines == ("+CPIN: READY",)


def test_urc_between_echo_and_final() -> None:
    engine = AtEngine(URCS)
    events = send(engine, "AT+CFUN=1,1", b"AT+CFUN=1,1\r\r\nOK\r\n\r\nRDY\r\n")
    assert events == [Response("AT+CFUN=1,1", (), Final("OK", "ok", None, None)), Urc("RDY")]


def test_word_prefix_does_not_match_longer_words() -> None:
    assert URCS.is_urc("RING")
    assert not URCS.is_urc("RINGTONE: 3")
    assert URCS.is_urc("+SIM: Removed")
    assert not URCS.is_urc("+CEREG: 1", own=frozenset({"+CEREG"}))


def test_custom_urc_prefixes() -> None:
    engine = AtEngine(UrcTable([UrcRule("+FOO:", "unknown")]))
    events = send(engine, "AT+X", b"\r\n+FOO: 1\r\n+CREG: 1\r\nOK\r\n")
    assert urcs(events) == ["+FOO: 1"]
    assert responses(events)[0].lines == ("+CREG: 1",)
    with pytest.raises(ValueError):
        UrcRule("", "unknown")
    with pytest.raises(ValueError):
        UrcRule("+FOO:", "no such kind")


def test_urcs_come_out_classified_once_with_their_parsed_value() -> None:
    engine = AtEngine(get_profile("ec25").urcs)
    events = engine.feed(b'\r\n+CEREG: 1,"1A2B","01234567",7\r\n+CPIN: READY\r\nRDY\r\nhello\r\n')
    kinds = [(e.kind, e.value) for e in events if isinstance(e, Urc)]
    assert kinds == [
        ("registration", Registration("CEREG", "home", "lte", 0x1A2B, 0x1234567, act=7,
                                      is_urc=True)),
        ("cpin", "ready"), ("boot", None), ("unknown", None)]


def test_the_table_decides_what_a_boot_is_and_can_be_swapped() -> None:
    engine = AtEngine()  # 27.007 only: no vendor banner is known
    assert engine.urcs is BASIC_URCS
    engine.command("AT+CSQ")
    engine.abandon()
    [rdy] = engine.feed(b"\r\nRDY\r\n")
    assert isinstance(rdy, Noise)  # unknown text while an orphan is expected
    assert engine.orphan == "AT+CSQ"
    engine.use_urcs(get_profile("me909s").urcs)
    [banner] = engine.feed(b"\r\n^SYSSTART\r\n")
    assert isinstance(banner, Urc) and banner.kind == "boot"
    assert engine.orphan is None


def test_urc_equality_is_by_line() -> None:
    assert Urc("RDY") == Urc("RDY", "boot") == ANY_URCS.classify(" RDY ")


def test_default_prefixes_cover_the_brief() -> None:
    must = ["RDY", "+CREG:", "+CGREG:", "+CEREG:", "+C5GREG:", "+CPIN:", "+CFUN:", "+QIND:",
            "+QUSIM:", "+SIM READY", "+SIM:", "+SIM DROP", "POWERED DOWN", "+CGEV:",
            "^SYSSTART", "^SIMST:", "^MODE:", "^RSSI:", "^HCSQ:", "^SRVST:", "+XCESQI:",
            "+CIEV:", "+CTZV:", "+CTZE:", "+NITZ", "+QSIMSTAT:", "+STKPCI:", "+CRING:", "RING",
            "+CMTI:", "+CDSI:"]
    assert set(must) <= set(URCS.prefixes)


# --------------------------------------------------------------------------
# Timeouts and late replies


def test_abandon_forgets_the_command_and_late_final_is_noise() -> None:
    engine = AtEngine(URCS)
    engine.command("AT+COPS?")
    assert engine.feed(b"\r\n+COPS: 0,0,\"X\"\r\n") == []
    engine.abandon()
    assert engine.pending is None and engine.orphan == "AT+COPS?"
    # The partial reply is handed back as noise at the next feed.
    assert engine.feed(b"") == [Noise(b'+COPS: 0,0,"X"')]
    assert engine.feed(b"\r\nOK\r\n") == [Noise(b"OK")]
    assert engine.orphan is None
    assert send(engine, "AT+CSQ", CSQ_REPLY) == [CSQ_RESPONSE]


def test_late_final_is_not_credited_to_the_next_command() -> None:
    engine = AtEngine(URCS)
    engine.command("AT+COPS?")
    engine.abandon()
    engine.command("AT+CSQ")
    late = b"\r\n+COPS: 0,0,\"Late\",7\r\n\r\nOK\r\n"
    events = engine.feed(late)
    assert responses(events) == []
    assert Noise(b"OK") in events and Noise(b'+COPS: 0,0,"Late",7') in events
    assert engine.pending == "AT+CSQ"
    assert engine.feed(CSQ_REPLY) == [CSQ_RESPONSE]


def test_late_error_final_is_swallowed_too() -> None:
    engine = AtEngine(URCS)
    engine.command("AT+COPS=0")
    engine.abandon()
    engine.command("AT")
    assert responses(engine.feed(b"\r\n+CME ERROR: 30\r\n")) == []
    assert responses(engine.feed(b"\r\nOK\r\n")) == [Response("AT", (), Final("OK", "ok",
                                                                                None, None))]


def test_our_echo_ends_the_orphan_window() -> None:
    engine = AtEngine(URCS)
    engine.command("AT+COPS?")
    engine.abandon()
    engine.command("AT+CSQ")
    events = engine.feed(b"\r\n+COPS: 0\r\nAT+CSQ\r\r\n+CSQ: 18,99\r\n\r\nOK\r\n")
    assert responses(events) == [CSQ_RESPONSE]
    assert Noise(b"+COPS: 0") in events
    assert engine.orphan is None


def test_a_lost_final_costs_one_timeout_not_all_later_replies() -> None:
    # The abandoned command never answers; the next command's final is taken
    # for the orphan's, so it times out too -- but the one after that works.
    engine = AtEngine(URCS)
    engine.command("AT+A")
    engine.abandon()
    events = send(engine, "AT+B", b"\r\nOK\r\n")
    assert responses(events) == []
    engine.abandon()
    assert engine.orphan is None
    assert responses(send(engine, "AT+C", b"\r\nOK\r\n")) == [
        Response("AT+C", (), Final("OK", "ok", None, None))]


def test_boot_urc_clears_the_orphan() -> None:
    engine = AtEngine(URCS)
    engine.command("AT+CSQ")
    engine.abandon()
    assert engine.feed(b"\r\nRDY\r\n") == [Urc("RDY")]
    assert engine.orphan is None
    assert send(engine, "AT+CSQ", CSQ_REPLY) == [CSQ_RESPONSE]


def test_urcs_still_flow_during_the_orphan_window() -> None:
    engine = AtEngine(URCS)
    engine.command("AT+CSQ")
    engine.abandon()
    events = engine.feed(b"\r\n+CEREG: 1\r\nlate line\r\n")
    assert events == [Urc("+CEREG: 1"), Noise(b"late line")]
    assert engine.orphan == "AT+CSQ"


def test_abandon_without_pending_is_a_no_op() -> None:
    engine = AtEngine(URCS)
    engine.abandon()
    assert engine.pending is None and engine.orphan is None


def test_reset_drops_everything() -> None:
    engine = AtEngine(URCS)
    engine.command("AT+CSQ")
    engine.feed(b"\r\n+CSQ: 1")
    engine.abandon()
    engine.reset()
    assert engine.pending is None and engine.orphan is None
    assert engine.feed(b"") == []
    assert send(engine, "AT+CSQ", CSQ_REPLY) == [CSQ_RESPONSE]


# --------------------------------------------------------------------------
# Garbage


def test_garbage_bytes_are_noise_and_response_survives() -> None:
    engine = AtEngine(URCS)
    engine.command("AT+CSQ")
    events = engine.feed(b"\x00\xff\xfe\r\n+CSQ: 18,99\r\n\x00\r\nOK\r\n")
    assert responses(events) == [CSQ_RESPONSE]
    noise = b"".join(e.data for e in events if isinstance(e, Noise))
    assert noise == b"\x00\xff\xfe\x00"


def test_garbage_inside_a_line_is_removed() -> None:
    engine = AtEngine(URCS)
    events = engine.feed(b"\x00\x00R\x01DY\r\n")
    assert events == [Noise(b"\x00\x00\x01"), Urc("RDY")]


def test_partial_garbage_before_a_command_is_not_part_of_its_reply() -> None:
    engine = AtEngine(URCS)
    assert engine.feed(b"\xff\xfegarbage") == []
    engine.command("AT+CSQ")
    events = engine.feed(CSQ_REPLY)
    assert responses(events) == [CSQ_RESPONSE]
    assert Urc("garbage") in events


def test_partial_urc_at_command_time_stays_a_urc() -> None:
    engine = AtEngine(URCS)
    engine.feed(b"\r\n+CEREG: 1")
    engine.command("AT+CEREG?")
    events = engine.feed(b"\r\n\r\n+CEREG: 2,1\r\n\r\nOK\r\n")
    assert events == [Urc("+CEREG: 1"),
                      Response("AT+CEREG?", ("+CEREG: 2,1",), Final("OK", "ok", None, None))]


def test_runaway_line_is_dropped_as_noise() -> None:
    engine = AtEngine(URCS)
    engine.command("AT+CSQ")
    events = engine.feed(b"x" * (MAX_LINE + 10))
    assert events == [Noise(b"x" * (MAX_LINE + 10))]
    assert engine.feed(CSQ_REPLY) == [CSQ_RESPONSE]


def test_non_utf8_line_keeps_its_ascii() -> None:
    engine = AtEngine(URCS)
    events = send(engine, "AT+COPS?", b"\r\n+COPS: 0,0,\"Caf\xe9\"\r\nOK\r\n")
    assert events == [Noise(b"\xe9"), Response("AT+COPS?", ('+COPS: 0,0,"Caf"',),
                                                Final("OK", "ok", None, None))]


def test_utf8_text_is_kept() -> None:
    engine = AtEngine(URCS)
    r = only(send(engine, "AT+COPS?", "\r\n+COPS: 0,0,\"Café\"\r\nOK\r\n".encode()))
    assert r.lines == ('+COPS: 0,0,"Café"',)


# --------------------------------------------------------------------------
# Hostile input


@pytest.mark.fuzz
@settings(max_examples=examples(300), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400), st.lists(st.integers(0, 400), max_size=8))
def test_feed_never_raises_and_a_clean_command_still_completes(data: bytes,
                                                               cuts: list[int]) -> None:
    engine = AtEngine(URCS)
    for event in run(engine, data, sorted(c for c in cuts if c <= len(data))):
        assert isinstance(event, Response | Urc | Noise | Overflow)
    assert engine.pending is None
    # V.250 frames every reply "\r\n...\r\n": the partial garbage line ends there.
    assert responses(send(engine, "AT+CSQ", CSQ_REPLY)) == [CSQ_RESPONSE]


@pytest.mark.fuzz
@settings(max_examples=examples(800), deadline=None)
@given(st.binary(max_size=400))
def test_garbage_while_pending_never_raises_and_reset_recovers(data: bytes) -> None:
    engine = AtEngine(URCS)
    engine.command("AT+CSQ")
    for event in engine.feed(data):
        assert isinstance(event, Response | Urc | Noise | Overflow)
    if engine.pending is not None:
        engine.abandon()
    engine.reset()
    assert responses(send(engine, "AT+CSQ", CSQ_REPLY)) == [CSQ_RESPONSE]


LINES = st.sampled_from([b"OK", b"ERROR", b"+CME ERROR: 10", b"+CSQ: 1,2", b"RDY",
                         b"+CEREG: 1", b"AT+CSQ", b"", b"\x00\xff", b"+CME ERROR:", b"junk"])
EOLS = st.sampled_from([b"\r\n", b"\r", b"\n", b"\r\r\n"])


@pytest.mark.fuzz
@settings(max_examples=examples(300), deadline=None)
@given(st.lists(st.tuples(LINES, EOLS), max_size=12), st.data())
def test_events_do_not_depend_on_how_reads_are_split(lines: list[tuple[bytes, bytes]],
                                                     data: st.DataObject) -> None:
    stream = b"".join(a + b for a, b in lines)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    whole, split = AtEngine(URCS), AtEngine(URCS)
    whole.command("AT+CSQ")
    split.command("AT+CSQ")
    assert run(whole, stream) == run(split, stream, cuts)
    assert whole.pending == split.pending


@pytest.mark.fuzz
@settings(max_examples=examples(200), deadline=None)
@given(st.lists(st.tuples(LINES, EOLS), max_size=12))
def test_every_command_gets_at_most_one_response(lines: list[tuple[bytes, bytes]]) -> None:
    engine = AtEngine(URCS)
    engine.command("AT+CSQ")
    events = engine.feed(b"".join(a + b for a, b in lines))
    assert len(responses(events)) <= 1
    if responses(events):
        assert engine.pending is None


# --------------------------------------------------------------------------
# Caps on a response


def test_reply_past_the_line_cap_ends_the_command_and_resynchronises() -> None:
    engine = AtEngine(max_lines=3, max_bytes=10_000)
    engine.command("AT+CLAC")
    events = engine.feed(b"".join(b"+X%d\r\n" % i for i in range(6)))
    overflows = [e for e in events if isinstance(e, Overflow)]
    assert overflows == [Overflow("AT+CLAC", 4, len(b"+X0+X1+X2+X3"))]
    assert "AT+CLAC" in overflows[0].message and "given up" in overflows[0].message
    assert engine.pending is None
    assert engine.orphan == "AT+CLAC"
    # The rest of that reply, up to its final code, is noise; then all is well.
    late = engine.feed(b"+X6\r\nOK\r\n")
    assert not responses(late) and all(isinstance(e, Noise) for e in late)
    assert engine.orphan is None
    assert responses(send(engine, "AT+CSQ", CSQ_REPLY)) == [CSQ_RESPONSE]


def test_reply_past_the_byte_cap_ends_the_command() -> None:
    engine = AtEngine(max_lines=1000, max_bytes=100)
    engine.command("AT+CSQ")
    events = engine.feed(b"x" * 60 + b"\r\n" + b"y" * 60 + b"\r\n")
    assert [e for e in events if isinstance(e, Overflow)] == [Overflow("AT+CSQ", 2, 120)]
    # The final of the overflowed reply is swallowed, not credited to the next.
    engine.feed(b"OK\r\n")
    assert responses(send(engine, "AT+CSQ", CSQ_REPLY)) == [CSQ_RESPONSE]


def test_overflowed_command_stays_orphaned_until_the_next_echo() -> None:
    engine = AtEngine(max_lines=2)
    engine.command("AT+CSQ")
    engine.feed(b"a\r\nb\r\nc\r\n")
    assert engine.orphan == "AT+CSQ"
    # No final ever came; the next command's echo proves the modem moved on.
    engine.command("AT+CREG?")
    r = only(engine.feed(b"AT+CREG?\r\r\n+CREG: 0,1\r\nOK\r\n"))
    assert r == Response("AT+CREG?", ("+CREG: 0,1",), Final("OK", "ok", None, None))


def test_a_long_real_reply_fits_the_caps() -> None:
    engine = AtEngine(URCS)
    engine.command("AT+CLAC")
    body = b"".join(b"AT+CMD%d\r\n" % i for i in range(500))
    r = only(responses(engine.feed(body + b"OK\r\n")))
    assert len(r.lines) == 500 and MAX_RESPONSE_LINES > 500 and len(body) < MAX_RESPONSE_BYTES


def test_200_mb_without_a_final_code_holds_bounded_memory() -> None:
    """A modem streaming 200 MB of lines and never a final code: the engine
    holds at most its caps, however long the stream runs."""
    import tracemalloc

    line = b"G" * 4000 + b"\r\n"
    chunk = line * 64                       # 256 KB per read
    total = 200 * 1024 * 1024
    engine = AtEngine(URCS)
    engine.command("AT+CSQ")
    overflows = 0
    held_max = 0
    tracemalloc.start()
    try:
        fed = 0
        while fed < total:
            for event in engine.feed(chunk):
                overflows += isinstance(event, Overflow)
            fed += len(chunk)
            held_max = max(held_max, len(engine._buf) + sum(len(x) for x in engine._lines))
            if engine.pending is None and overflows and fed < total // 2:
                engine.command("AT+CSQ")  # the caller retries into the same flood
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert overflows >= 2
    assert held_max <= MAX_RESPONSE_BYTES + len(line)
    # Peak Python allocations while streaming: one read, its split, and the caps.
    assert peak < 3 * len(chunk) + 2 * MAX_RESPONSE_BYTES + (1 << 20), peak


def test_gap_discards_the_partial_line_on_both_sides() -> None:
    engine = AtEngine(URCS)
    engine.command("AT+CSQ")
    first = engine.feed(b"\r\n+CSQ: 1")
    engine.gap()
    events = first + engine.feed(b"8,99 tail of another line\r\n+CSQ: 18,99\r\nOK\r\n")
    assert responses(events) == [CSQ_RESPONSE]
    noise = b"".join(e.data for e in events if isinstance(e, Noise))
    assert b"+CSQ: 1" in noise and b"tail of another line" in noise


def test_gap_without_a_line_break_yet_keeps_skipping() -> None:
    engine = AtEngine(URCS)
    engine.gap()
    assert engine.feed(b"half a line") == [Noise(b"half a line")]
    assert engine.feed(b" still\r\nRDY\r\n") == [Noise(b" still"), Urc("RDY")]


@pytest.mark.fuzz
@settings(max_examples=examples(200), deadline=None)
@given(st.lists(st.tuples(LINES, EOLS), max_size=40), st.integers(1, 6), st.integers(1, 64))
def test_caps_hold_for_any_stream(lines: list[tuple[bytes, bytes]], max_lines: int,
                                  max_bytes: int) -> None:
    engine = AtEngine(max_lines=max_lines, max_bytes=max_bytes)
    engine.command("AT+CSQ")
    for a, b in lines:
        for event in engine.feed(a + b):
            if isinstance(event, Response):
                assert len(event.lines) <= max_lines
                assert sum(len(x.encode()) for x in event.lines) <= max_bytes
        assert len(engine._lines) <= max_lines
        if engine.pending is None:
            engine.command("AT+CSQ")
