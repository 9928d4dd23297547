"""Reading a configuration's sections: the text parsed, the names checked, the values converted.

:class:`Reader` collects the problems as it goes, each located in the file
(``FILE:LINE``) or in the environment variable that gave the value. It keeps
what libuci keeps and reports what libuci would silently drop or merge: an
unknown section type or option (with the closest known name), an option set
twice, a section name used twice, a second section of a type that takes one,
a value that runs on over several lines, a ``list`` given to a scalar.
Leniency, as UCI allows it: ``''`` means "not set" (libuci deletes such an
option); a scalar given as a one-item ``list`` is taken; a list's values may
hold several items split by spaces, as shell scripts using ``config_get``
read them.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from remsim_supervisor.config import uci
from remsim_supervisor.config.convert import Bad
from remsim_supervisor.config.options import SECTIONS, SINGLETONS
from remsim_supervisor.config.types import ENVIRONMENT, Problem


@dataclass
class Setting:
    """Values of one option and where they came from."""

    values: list[str]
    lines: list[int]  # per value; 0 for the environment
    variable: str = ""  # the environment variable that gave it


@dataclass
class Section:
    type: str
    label: str
    name: str | None
    line: int
    settings: dict[str, Setting] = field(default_factory=dict)
    variable: str = ""  # the environment variable that created it
    damaged: bool = False  # a syntax error inside: "missing" may mean "on the broken line"
    rejected: set[str] = field(default_factory=set)  # given, but reported and dropped


def close(word: str, known: Iterable[str]) -> str:
    match = difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    return f"did you mean {match[0]!r}?" if match else ""


class Reader:
    def __init__(self, path: str) -> None:
        self.path = path
        self.problems: list[Problem] = []

    def report(self, line: int, section: str, option: str, message: str,
               variable: str = "") -> None:
        if variable:
            self.problems.append(Problem(ENVIRONMENT, 0, section, option, message, variable))
        else:
            self.problems.append(Problem(self.path, line, section, option, message))

    def report_at(self, setting: Setting, section: Section, option: str, message: str,
                  line: int | None = None) -> None:
        where = setting.lines[-1] if line is None else line
        self.report(where, section.label, option, message, setting.variable)

    # -- the file

    def collect(self, text: str) -> dict[str, list[Section]]:
        parsed, syntax = uci.parse(text)
        for p in syntax:
            self.report(p.line, "", "", p.message)
        groups: dict[str, list[Section]] = {kind: [] for kind in SECTIONS}
        named: dict[str, int] = {}
        for s in parsed:
            if s.name is not None:
                if s.name in named:
                    self.report(s.line, s.label, "", f"section name {s.name!r} is already used "
                                f"on line {named[s.name]} (UCI would merge the two): rename one")
                    continue
                named[s.name] = s.line
            if s.type not in SECTIONS:
                hint = close(s.type, SECTIONS) or "known types: " + ", ".join(SECTIONS)
                self.report(s.line, s.label, "", f"unknown section type {s.type!r}: {hint}")
                continue
            if s.type in SINGLETONS and groups[s.type]:
                first = groups[s.type][0].line
                self.report(s.line, s.label, "", f"a second {s.type!r} section (the first is "
                            f"on line {first}): merge them into one")
                continue
            groups[s.type].append(self._section(s))
        return groups

    def _section(self, s: uci.UciSection) -> Section:
        specs = SECTIONS[s.type]
        out = Section(s.type, s.label, s.name, s.line, damaged=s.damaged)
        for name, option in s.options.items():
            spec = specs.get(name)
            if spec is None:
                hint = close(name, specs) or f"{s.type} sections know " + ", ".join(specs)
                self.report(option.line, s.label, name, f"unknown option: {hint}")
                continue
            if option.replaced:
                self.report(option.line, s.label, name, f"set twice (also on line "
                            f"{option.replaced[0]}): UCI keeps only the last; delete one")
            if any("\n" in v for v in option.values):
                self.report(option.line, s.label, name, "the value runs on over several lines: "
                            "a closing quote is probably missing")
                out.rejected.add(name)
                continue
            if not spec.is_list and len(option.values) > 1:
                lines = ", ".join(str(n) for n in option.lines)
                self.report(option.line, s.label, name, f"takes one value, but 'list' gives it "
                            f"{len(option.values)} (lines {lines}): use one 'option'")
                out.rejected.add(name)
                continue
            out.settings[name] = Setting(list(option.values), list(option.lines))
        return out


    # -- conversion

    def convert(self, section: Section) -> tuple[dict[str, Any], set[str]]:
        """Typed values by dataclass field, and the options found wrong."""
        specs = SECTIONS[section.type]
        values: dict[str, Any] = {}
        wrong: set[str] = set()
        for name, setting in section.settings.items():
            spec = specs[name]
            convert = spec.convert
            if setting.variable and spec.from_environment is not None:
                convert = spec.from_environment
            attribute = spec.attribute or name
            if spec.is_list:
                items: list[Any] = []
                for value, line in zip(setting.values, setting.lines):
                    for piece in value.split():
                        try:
                            item = convert(piece)
                        except Bad as e:
                            self.report_at(setting, section, name, e.message, line)
                            wrong.add(name)
                        else:
                            if item not in items:
                                items.append(item)
                values[attribute] = tuple(items)
                continue
            text = setting.values[-1].strip()
            if not text:
                continue  # '' is how UCI unsets an option
            try:
                values[attribute] = convert(text)
            except Bad as e:
                self.report_at(setting, section, name, e.message)
                wrong.add(name)
        return values, wrong | section.rejected



def raw(section: Section, option: str) -> str:
    setting = section.settings.get(option)
    return setting.values[-1].strip() if setting is not None and setting.values else ""
