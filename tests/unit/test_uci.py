"""The UCI reader: libuci's syntax, line numbers, and problems that never stop the parse."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from remsim_supervisor.config import uci
from tests.fuzzing import examples
from tests.paths import DATA

DATA = DATA / "config"


def one(text: str) -> uci.UciSection:
    sections, problems = uci.parse(text)
    assert problems == []
    assert len(sections) == 1
    return sections[0]


def values(text: str) -> dict[str, list[str]]:
    return {name: o.values for name, o in one(text).options.items()}


# --- structure and line numbers ---------------------------------------------------------------

def test_example_file_sections_options_and_lines() -> None:
    sections, problems = uci.parse((DATA / "example.conf").read_text())
    assert problems == []
    assert [(s.type, s.name, s.line) for s in sections] == [
        ("supervisor", "main", 5), ("ionmesh", "ionmesh", 10), ("modem", "modem1", 20),
        ("modem", "modem2", 28), ("routing", "routing", 36)]
    modem1 = sections[2]
    assert modem1.options["usb_path"].value == "1-1"
    assert modem1.options["usb_path"].line == 23
    assert modem1.options["reset_gpio"].line == 26
    assert not modem1.options["role"].is_list
    pin = sections[4].options["pin"]
    assert (pin.is_list, pin.values, pin.lines) == (True, ["remsim.example.com"], [39])


def test_list_accumulates_with_a_line_per_value() -> None:
    section = one("config routing\n list pin a\n\n list pin 'b'\n#x\n list pin \"c\"\n")
    pin = section.options["pin"]
    assert pin.values == ["a", "b", "c"]
    assert pin.lines == [2, 4, 6]
    assert pin.line == 2
    assert pin.value == "c" and pin.value_line == 6


def test_sections_keep_file_order_and_index_per_type() -> None:
    sections, _ = uci.parse("config modem\nconfig routing\nconfig modem 'm'\nconfig modem\n")
    assert [s.label for s in sections] == ["@modem[0]", "@routing[0]", "m", "@modem[2]"]
    assert [s.index for s in sections] == [0, 0, 1, 2]
    assert sections[2].label == "m"


def test_package_line_is_accepted_and_ignored() -> None:
    sections, problems = uci.parse("package 'remsim-supervisor'\nconfig modem 'a'\n")
    assert problems == []
    assert [s.name for s in sections] == ["a"]


def test_keyword_abbreviations_and_semicolons_as_libuci() -> None:
    section = one("c modem 'a'; o role primary ; l pin x\n")
    assert section.name == "a"
    assert {n: o.values for n, o in section.options.items()} == {
        "role": ["primary"], "pin": ["x"]}


def test_tabs_spaces_blank_lines_and_crlf() -> None:
    text = "\r\n  config\tmodem \t 'a'  \r\n\t\toption  role\t'primary'\r\n\r\n"
    section = one(text)
    assert section.options["role"].value == "primary"
    assert section.options["role"].line == 3


def test_name_and_type_may_be_quoted() -> None:
    section = one("config \"modem\" 'modem1'\n\toption 'role' \"iot\"\n")
    assert (section.type, section.name, section.options["role"].value) == (
        "modem", "modem1", "iot")


# --- values: quoting, escapes, comments -------------------------------------------------------

def test_quoting_styles() -> None:
    assert values("config x\n option a plain\n option b 'sin gle'\n option c \"dou ble\"\n") \
        == {"a": ["plain"], "b": ["sin gle"], "c": ["dou ble"]}


def test_adjacent_parts_concatenate() -> None:
    assert values("config x\n option a 'a'\"b\"c\n")["a"] == ["abc"]


def test_backslash_escapes_outside_single_quotes_only() -> None:
    got = values("config x\n"
                 " option dq \"a\\\"b\\\\c\\n\"\n"   # libuci keeps the char after \ literally
                 " option uq a\\ b\\'c\n"
                 " option sq 'a\\b'\n")
    assert got == {"dq": ['a"b\\cn'], "uq": ["a b'c"], "sq": ["a\\b"]}


def test_backslash_at_end_of_line_continues_the_value() -> None:
    section = one("config x\n option a abc\\\ndef\n option b \"12\\\n34\"\n option c x\n")
    assert section.options["a"].value == "abcdef"
    assert section.options["b"].value == "1234"
    assert section.options["c"].line == 6


def test_quoted_value_may_span_lines_keeping_the_newline() -> None:
    section = one("config x\n option a 'one\ntwo'\n option b c\n")
    assert section.options["a"].value == "one\ntwo"
    assert section.options["b"].line == 4


def test_comments_whole_line_trailing_and_inside_values() -> None:
    section = one("# head\nconfig x 'n' # trailing\n"
                  "  # indented comment\n"
                  " option a 'v' # after a value\n"
                  " option b v#cut\n"
                  " option c 'keep # this'\n"
                  " option d 'q'#cut\n")
    assert {n: o.value for n, o in section.options.items()} == {
        "a": "v", "b": "v", "c": "keep # this", "d": "q"}


def test_missing_value_is_empty() -> None:
    assert values("config x\n option a\n option b ''\n") == {"a": [""], "b": [""]}


def test_quote_escapes_single_quotes_like_libuci_export() -> None:
    assert uci.quote("it's") == "'it'\\''s'"
    assert values(f"config x\n option a {uci.quote('it' + chr(39) + 's')}\n")["a"] == ["it's"]


# --- merging as libuci does -------------------------------------------------------------------

def test_option_twice_keeps_the_last_and_remembers_the_first() -> None:
    role = one("config modem\n option role primary\n option role iot\n").options["role"]
    assert (role.value, role.line, role.replaced) == ("iot", 3, [2])


def test_list_after_option_turns_it_into_a_list() -> None:
    pin = one("config r\n option pin a\n list pin b\n").options["pin"]
    assert (pin.is_list, pin.values, pin.lines, pin.replaced) == (True, ["a", "b"], [2, 3], [])


def test_option_after_list_replaces_the_list() -> None:
    pin = one("config r\n list pin a\n list pin b\n option pin c\n").options["pin"]
    assert (pin.is_list, pin.values, pin.replaced) == (False, ["c"], [2, 3])


def test_empty_option_then_list_starts_afresh() -> None:
    pin = one("config r\n option pin ''\n list pin b\n").options["pin"]
    assert (pin.is_list, pin.values) == (True, ["b"])


def test_sections_with_the_same_name_stay_apart() -> None:
    sections, problems = uci.parse("config modem 'a'\n option x 1\nconfig modem 'a'\n option y 2\n")
    assert problems == []
    assert [(s.line, list(s.options)) for s in sections] == [(1, ["x"]), (3, ["y"])]


# --- syntax problems --------------------------------------------------------------------------

def test_problems_are_collected_with_lines_and_parsing_resumes() -> None:
    text = ("option early 1\n"            # 1: before any section
            "config modem 'ok'\n"          # 2
            " optoin role primary\n"       # 3: unknown keyword
            " option role primary\n"       # 4
            " option bad-name 1\n"         # 5: invalid name
            " option usb_path 1 2\n"       # 6: too many values
            " option interface wwan0\n")   # 7
    sections, problems = uci.parse(text)
    assert [p.line for p in problems] == [1, 3, 5, 6]
    assert "before any 'config'" in problems[0].message
    assert "unknown keyword 'optoin'" in problems[1].message
    assert "invalid option name 'bad-name'" in problems[2].message
    assert "too many values" in problems[3].message and "quote" in problems[3].message
    assert list(sections[0].options) == ["role", "interface"]


def test_unterminated_quote_resumes_after_its_line() -> None:
    sections, problems = uci.parse("config x 'a'\n option a 'open\n option b fine\n")
    assert problems == [uci.UciSyntaxProblem(2, "unterminated ' quote: add the closing '")]
    assert {n: o.value for n, o in sections[0].options.items()} == {"b": "fine"}


def test_unterminated_double_quote() -> None:
    _, problems = uci.parse('config x\n option a "open\n')
    assert [(p.line, "unterminated \"" in p.message) for p in problems] == [(2, True)]


def test_bad_config_line_is_one_problem_and_its_options_are_skipped() -> None:
    text = "config modem 'bad name'\n option role primary\n option x y\nconfig modem 'good'\n"
    sections, problems = uci.parse(text)
    assert len(problems) == 1
    assert problems[0].line == 1 and "invalid section name 'bad name'" in problems[0].message
    assert [s.name for s in sections] == ["good"]
    assert sections[0].options == {}


def test_config_without_type_and_option_without_name() -> None:
    _, problems = uci.parse("config\nconfig ''\nconfig x\n option\n list '' v\n")
    assert [p.line for p in problems] == [1, 2, 4, 5]
    assert "needs a section type" in problems[0].message
    assert "needs a name" in problems[2].message


def test_invalid_type_and_package() -> None:
    _, problems = uci.parse("package\npackage 'a b'\nconfig 'mo dem'\n")
    assert [p.line for p in problems] == [1, 2, 3]
    assert "invalid section type" in problems[2].message


# --- where libuci's in-place parsing shows (tests/packaging/test_uci_libuci.py holds the two equal)

def test_an_empty_option_leaves_an_earlier_value_alone() -> None:
    # libuci sets nothing for an empty option while reading a file
    assert values("config t\n option a 'x'\n option a ''\n") == {"a": ["x"]}
    assert values("config t\n list a 'x'\n option a\n") == {"a": ["x"]}
    assert values("config t\n option a ''\n") == {"a": [""]}  # kept, to be reported


def test_semicolon_right_after_an_unquoted_value_drops_the_rest_of_the_line() -> None:
    assert values("config t\n o x a; o y b\n") == {"x": ["a"]}


def test_semicolon_after_a_quoted_value_starts_another_command() -> None:
    assert values("config t\n o x 'a'; o y b\n") == {"x": ["a"], "y": ["b"]}
    sections, problems = uci.parse("config t\n o x 'a';\n o y b\n")
    assert [p.line for p in problems] == [2]
    assert "nothing after ';'" in problems[0].message
    assert sections[0].options["y"].value == "b"
    # at the very end of the file there is no line end to read as a command
    assert uci.parse("config t\n o x 'a';")[1] == []


def test_semicolon_at_the_start_of_an_argument_is_an_empty_argument() -> None:
    _sections, problems = uci.parse("config t\n o 'x'; o y b\n")
    assert [p.line for p in problems] == [2] and "too many values" in problems[0].message


def test_only_spaces_and_tabs_end_a_keyword() -> None:
    _sections, problems = uci.parse("config\rt\n")
    assert len(problems) == 1 and "unknown keyword" in problems[0].message


# --- hostile input ----------------------------------------------------------------------------

UCI_ALPHABET = st.sampled_from(
    ["config ", "option ", "list ", "package ", "c ", "o ", "'", '"', "\\", "#", ";", " ",
     "\t", "\n", "\r\n", "modem", "a", "1", "-", "_", "\x00", "é"])


@pytest.mark.fuzz
@settings(max_examples=examples(1000), deadline=None)
@given(st.text())
def test_parse_never_raises_on_arbitrary_text(text: str) -> None:
    sections, problems = uci.parse(text)
    lines = text.count("\n") + 1
    assert all(1 <= p.line <= lines for p in problems)
    assert all(1 <= s.line <= lines for s in sections)


@pytest.mark.fuzz
@settings(max_examples=examples(500), deadline=None)
@given(st.lists(UCI_ALPHABET, max_size=60).map("".join))
def test_parse_never_raises_on_uci_like_text(text: str) -> None:
    sections, problems = uci.parse(text)
    lines = text.count("\n") + 1
    assert all(1 <= p.line <= lines for p in problems)
    for s in sections:
        for o in s.options.values():
            assert len(o.lines) == len(o.values)
            assert all(1 <= n <= lines for n in o.lines)


NAMES = st.from_regex(r"[A-Za-z0-9_]{1,8}", fullmatch=True)


@pytest.mark.fuzz
@settings(max_examples=examples(200), deadline=None)
@given(st.lists(st.tuples(
    st.sampled_from(["modem", "routing", "x-y.z"]), st.none() | NAMES,
    st.dictionaries(NAMES, st.lists(st.text(), min_size=1, max_size=3), max_size=4)),
    max_size=4))
def test_dump_then_parse_gives_the_same_sections(spec: list) -> None:
    original = []
    for kind, name, options in spec:
        section = uci.UciSection(kind, name, 1)
        for option, vals in options.items():
            section.options[option] = uci.UciOption(option, vals, 1, len(vals) > 1)
        original.append(section)
    sections, problems = uci.parse(uci.dump(original))
    assert problems == []
    assert [(s.type, s.name) for s in sections] == [(s.type, s.name) for s in original]
    for got, want in zip(sections, original):
        # a scalar '' is still an (empty) option; values round-trip exactly
        assert {n: o.values for n, o in got.options.items()} == {
            n: o.values for n, o in want.options.items()}
