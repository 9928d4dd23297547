"""Our UCI reader against OpenWrt's libuci, the reference.

``uci -c DIR export`` (the real ``uci`` CLI, libuci underneath, built by
``scripts/build-openwrt.sh``) reads a directory of files in one call: it
prints each file it accepts as ``package NAME`` and its sections in canonical
form, and skips each file it refuses. ``remsim_supervisor.config.uci.parse`` must
agree on every file: the same sections in the same order, with the same
types, names, options and lists, or both refuse it. Every UCI file of the
repository, and 10,000 generated ones (hypothesis, in batches of 250 files per
``uci`` call).

Where the two differ on purpose (docs/openwrt.md, "UCI syntax: libuci's
rules"): an option set to ``''`` with nothing before it is no option in
libuci, so the comparison leaves it out of ours; a file that reuses a section
name is compared only in that libuci merges the sections or refuses the file,
where our reader keeps both (and the configuration refuses the name).
"""

from __future__ import annotations

import random
import re
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from remsim_supervisor.config import uci
from tests.fuzzing import examples
from tests.router import PREFIX, require_userland
from tests.stubs.support import ROOT

# (type, name or None for an anonymous section, [(option, is_list, values)])
Section = tuple[str, "str | None", list[tuple[str, bool, list[str]]]]
FILES_PER_CALL = 250


@pytest.fixture(scope="module")
def uci_cli() -> str:
    require_userland()
    return str(PREFIX / "bin" / "uci")


# --- libuci's side --------------------------------------------------------------------------

_QUOTED = re.compile(r"(?:'[^']*'|\\')+")


def _unquote(token: str) -> str:
    """A value as export writes it: 'single quoted', a ' inside written as '\\''."""
    return "".join(part[1:-1] if part.startswith("'") else "'"
                   for part in re.findall(r"'[^']*'|\\'", token))


def parse_export(text: str) -> dict[str, list[Section]]:
    """``uci export``'s output: package name -> its sections."""
    packages: dict[str, list[Section]] = {}
    sections: list[Section] = []
    pos = 0
    while pos < len(text):
        end = text.find("\n", pos)
        end = len(text) if end < 0 else end
        line = text[pos:end]
        if not line:
            pos = end + 1
            continue
        if line.startswith("package "):
            sections = packages.setdefault(line[len("package "):], [])
            pos = end + 1
        elif line.startswith("config "):
            # config TYPE ['NAME']: the type is written unquoted, the name quoted
            match = re.match(r"config (\S+)(?: '([^']*)')?$", line)
            assert match, line
            # (a ' in the type is written as '\'' without quotes around it)
            sections.append((match[1].replace("'\\''", "'"), match[2], []))
            pos = end + 1
        else:
            match = re.compile(r"\t(option|list) ([A-Za-z0-9_]+) ").match(text, pos)
            assert match, text[pos:pos + 80]
            value = _QUOTED.match(text, match.end())
            assert value, text[match.end():match.end() + 80]
            options = sections[-1][2]
            name, is_list = match[2], match[1] == "list"
            if is_list and options and options[-1][0] == name and options[-1][1]:
                options[-1][2].append(_unquote(value[0]))
            else:
                options.append((name, is_list, [_unquote(value[0])]))
            pos = value.end() + 1
    return packages


def libuci(uci_cli: str, directory: Path) -> dict[str, list[Section]]:
    """Every file of ``directory`` that libuci accepts, as it reads it."""
    # bytes: text mode would turn the \r\n inside a value into \n
    result = subprocess.run([uci_cli, "-c", str(directory), "export"], check=False,
                            capture_output=True, timeout=120,
                            env={"PATH": "/usr/bin:/bin", "LANG": "C"})
    assert result.returncode == 0, result.stderr
    return parse_export(result.stdout.decode("utf-8", errors="surrogateescape"))


# --- our side, with libuci's rules for the documented differences ---------------------------

def ours(text: str) -> list[Section] | None:
    """Our reader's sections as libuci would keep them; None when it reports a problem."""
    parsed, problems = uci.parse(text)
    if problems:
        return None
    return [(section.type, section.name,
             [(o.name, o.is_list, list(o.values)) for o in section.options.values()
              if o.is_list or o.value != ""])  # libuci has no option set to ''
            for section in parsed]


def reuses_a_name(text: str) -> bool:
    """Whether two sections of the file have the same name (the deliberate difference)."""
    names = [s.name for s in uci.parse(text)[0] if s.name is not None]
    return len(names) != len(set(names))


def compare(uci_cli: str, files: list[str], directory: Path) -> int:
    """Hold our reader to libuci on every file; how many libuci read options from."""
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.iterdir():
        old.unlink()
    names = [f"f{i}" for i in range(len(files))]
    for name, text in zip(names, files):
        (directory / name).write_bytes(text.encode("utf-8"))
    reference = libuci(uci_cli, directory)
    for name, text in zip(names, files):
        theirs = reference.get(name)
        mine = ours(text)
        if mine is not None and reuses_a_name(text):
            # we keep both sections (the configuration refuses the name); libuci
            # merges them, or refuses the file when the types differ
            assert theirs is None or len({s[1] for s in theirs if s[1]}) == \
                len([s for s in theirs if s[1]]) < len([s for s in mine if s[1]]), text
            continue
        assert (mine is None) == (theirs is None), \
            (f"libuci {'refuses' if theirs is None else 'accepts'} what we "
             f"{'refuse' if mine is None else 'accept'}: {text!r} -> {theirs} / {uci.parse(text)}")
        assert mine == theirs, f"{text!r}: libuci {theirs}, ours {mine}"
    return sum(1 for name in names if any(options for _t, _n, options in reference.get(name, [])))


# --- the repository's files -----------------------------------------------------------------

def repository_uci_files() -> list[Path]:
    found = sorted((ROOT / "files" / "etc" / "config").iterdir())
    found += sorted((ROOT / "tests" / "data" / "config").glob("*.conf"))
    return found


def test_every_uci_file_of_the_repository(uci_cli: str, tmp_path: Path) -> None:
    files = repository_uci_files()
    assert len(files) >= 4
    texts = [p.read_text() for p in files]
    # the shipped file with every option uncommented, as test_ipk checks it
    texts.append(re.sub(r"^(\s*)#(option|list) ", r"\1\2 ", texts[0], flags=re.MULTILINE))
    compare(uci_cli, texts, tmp_path / "repo")
    accepted = libuci(uci_cli, ROOT / "files" / "etc" / "config")
    assert set(accepted) == {"remsim-supervisor"}


def test_the_comparison_can_fail(uci_cli: str, tmp_path: Path) -> None:
    # the same text, told apart: a different value, and a file only libuci refuses
    (tmp_path / "a").write_text("config t 'n'\n\toption o 'v'\n")
    (tmp_path / "b").write_text("config t 'n'\n\toption o 'v\n")
    reference = libuci(uci_cli, tmp_path)
    assert reference == {"a": [("t", "n", [("o", False, ["v"])])]}
    assert ours("config t 'n'\n\toption o 'w'\n") != reference["a"]
    assert ours("config t 'n'\n\toption o 'v\n") is None


# --- generated files ------------------------------------------------------------------------

WORDS = ["modem", "a", "b_1", "x-y", "role", "1", "é", "a.b", ""]
RAW_CHARS = list("ab 1_-\t#;'\"\\\n$é.")
ODD = ["\\'", "\\\\", "\\\n", "\\ ", "#x", ";", "'", '"', "''", '""']


def raw(rng: random.Random) -> str:
    return "".join(rng.choice(RAW_CHARS) for _ in range(rng.randint(0, 8)))


def token(rng: random.Random) -> str:
    """One argument: plain, quoted either way, escaped, concatenated, or broken."""
    parts = []
    for _ in range(rng.randint(1, 3)):
        kind = rng.randrange(4)
        if kind == 0:
            parts.append(rng.choice(WORDS))
        elif kind == 1:
            parts.append("'" + raw(rng).replace("'", "") + "'")
        elif kind == 2:
            parts.append('"' + raw(rng).replace('"', '\\"') + '"')
        else:
            parts.append(rng.choice(ODD))
    return "".join(parts)


def pick(rng: random.Random, usual: list[str]) -> str:
    """Mostly one of the usual words, sometimes any token."""
    return rng.choice(usual) if rng.randrange(3) else token(rng)


def uci_line(rng: random.Random) -> str:
    kind = rng.choice(["config", "config", "option", "option", "option", "list", "list",
                       "package", "comment", "blank", "raw"])
    space = rng.choice([" ", "\t", "  ", " \t"])
    if kind == "config":
        args = [pick(rng, ["modem", "routing", "x-y.z", "t"])]
        if rng.randrange(2):
            args.append(pick(rng, ["'m1'", "m2", "main", f"s{rng.randrange(50)}",
                                   f"'s{rng.randrange(50)}'"]))
        line = rng.choice(["config", "c"]) + space + space.join(args)
    elif kind in ("option", "list"):
        args = [pick(rng, ["role", "pin", "usb_path", "x"])]
        if rng.randrange(10):
            args.append(token(rng))
        if not rng.randrange(8):
            args.append(token(rng))  # one too many
        line = rng.choice(["", "\t", "  "]) + rng.choice([kind, kind[0]]) + space + space.join(args)
    elif kind == "package":
        line = "package" + space + pick(rng, ["p", "remsim-supervisor"])
    elif kind == "comment":
        line = rng.choice(["#", " # ", "\t#"]) + raw(rng)
    elif kind == "blank":
        line = rng.choice(["", " ", "\t"])
    else:
        line = raw(rng)
    return line + rng.choice(["", "", "", " ", "\r", ";", " # c"])


def clean_value(rng: random.Random) -> str:
    """A value libuci accepts: plain, quoted either way (with #, ; and newlines inside)."""
    parts = []
    for _ in range(rng.randint(1, 2)):
        kind = rng.randrange(3)
        if kind == 0:
            parts.append(rng.choice(["a", "1-1", "x_y", "2c7c:0125", "é", "a.b"]))
        elif kind == 1:
            parts.append("'" + raw(rng).replace("'", "") + "'")
        else:
            parts.append('"' + raw(rng).replace("\\", "\\\\").replace('"', '\\"') + '"')
    return "".join(parts)


def clean_line(rng: random.Random) -> str:
    """A well-formed line, mostly: the files that read into sections and options."""
    kind = rng.choice(["config", "option", "option", "option", "list", "list", "comment"])
    if kind == "config":
        number = rng.randrange(50)
        name = rng.choice(["", " 'm1'", " m2", f" s{number}", f" 's{number}'"])
        return f"config {rng.choice(['modem', 'routing', 't', 'x-y.z'])}{name}"
    if kind == "comment":
        return "# " + raw(rng).replace("\n", " ")
    name = rng.choice(["role", "pin", "usb_path", "x", "empty"])
    value = "''" if name == "empty" else clean_value(rng)
    return f"\t{kind} {name} {value}" + rng.choice(["", "", "", "", "", " # c", ";"])


def uci_file(rng: random.Random) -> str:
    """Half of them well-formed but for a rare slip, half of them noisy."""
    if rng.randrange(2):
        lines = [clean_line(rng) for _ in range(rng.randint(0, 12))]
        lines.insert(0, "config " + rng.choice(["modem 'm1'", "t", "routing"]))
        return "\n".join(lines) + "\n"
    lines = [uci_line(rng) for _ in range(rng.randint(0, 12))]
    if lines and rng.randrange(2):
        lines.insert(0, "config " + rng.choice(["modem 'm1'", "t", "routing"]))
    return "\n".join(lines) + rng.choice(["\n", "", "\n\n"])


# Hypothesis draws the seed of each batch (drawing every character through it is
# far too slow for this many files); a failure names the one file that differs.
@pytest.mark.fuzz
@settings(max_examples=examples(40), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_generated_files_read_as_libuci_reads_them(uci_cli: str, tmp_path: Path,
                                                   seed: int) -> None:
    rng = random.Random(seed)
    with_options = compare(uci_cli, [uci_file(rng) for _ in range(FILES_PER_CALL)],
                           tmp_path / "gen")
    assert with_options >= FILES_PER_CALL // 10, "the generator makes too few readable files"
