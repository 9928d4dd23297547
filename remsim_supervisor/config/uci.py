"""Read UCI configuration files the way OpenWrt's libuci does, keeping line numbers.

The router's configuration lives in ``/etc/config/remsim-supervisor``; users
edit it by hand or with ``uci set``. ``python3-uci`` needs OpenWrt's C
libraries, so this module parses the file syntax itself, following libuci's
``file.c``:

* ``config TYPE ['NAME']`` opens a section (no name: an anonymous section,
  which libuci names ``cfgXXXXXX``; here its :attr:`UciSection.label` is
  ``@TYPE[INDEX]``, the form ``uci get`` accepts); ``option NAME 'VALUE'``
  sets a value, ``list NAME 'VALUE'`` adds one to a list; ``package NAME``
  is accepted and ignored. Like libuci, ``c``/``o``/``l``/``p`` abbreviate
  the keywords and an unquoted ``;`` ends a command, with libuci's in-place
  quirks: right after an unquoted value it ends the line too (the rest is
  ignored); after a quoted one another command must follow on the line; where
  an argument starts it is an empty argument.
* A value is unquoted, ``'single'`` or ``"double"`` quoted, and adjacent
  parts concatenate (``'a'"b"c`` is ``abc``). Outside single quotes a
  backslash takes the next character literally, and a backslash at the end
  of a line continues the value on the next one. Quoted values may span
  lines (the newline is kept, as libuci keeps it).
* ``#`` starts a comment where a token could start or continue, so
  ``option a x#y`` sets ``x``: libuci cuts the line there too.
* Section and option names are letters, digits and ``_``; a section type is
  any printable ASCII without spaces.

Merging follows libuci: ``option`` replaces an earlier value of the same
name (the replaced lines stay in :attr:`UciOption.replaced`, so a caller can
call the duplicate a mistake), ``list`` after ``option`` turns the value
into a list, ``option`` after ``list`` replaces the list. An empty
``option`` (``''`` or no value) sets nothing in libuci while it reads a file:
after a value of that name it is ignored here too; with none before, it is
kept with an empty value so that its name and line can still be checked:
read ``''`` as "not set". Two sections with the same name stay two sections
here, where libuci would merge them (or refuse the file, for another type):
the caller decides (the configuration calls it a mistake).

Syntax errors never stop the parse: each becomes a :class:`UciSyntaxProblem`
with its line, and parsing resumes on the next line (after a quote left open
until the end of the file, on the line after the one that opened it). The
options under a ``config`` line that failed are skipped without problems of
their own (libuci would pin them on the section before), and a section with a
broken line inside is marked :attr:`UciSection.damaged`, so that a caller
need not also report the option that line would have set as missing. The
module is pure: text in, sections and problems out, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["UciOption", "UciSection", "UciSyntaxProblem", "dump", "parse", "quote"]

# C's isspace() in the "C" locale: libuci splits tokens on exactly these.
_SPACE = frozenset(" \t\n\v\f\r")
_INLINE_SPACE = frozenset(" \t\v\f\r")
_NAME = re.compile(r"[A-Za-z0-9_]+")
_PACKAGE = re.compile(r"[A-Za-z0-9_-]+")
_TYPE = re.compile(r"[\x21-\x7e]+")
_KEYWORDS = {"config": "config", "c": "config", "option": "option", "o": "option",
             "list": "list", "l": "list", "package": "package", "p": "package"}


@dataclass
class UciOption:
    """One option or list of a section, with the line of every value."""

    name: str
    values: list[str]
    line: int  # where the option first appeared (after any replacement)
    is_list: bool
    lines: list[int] = field(default_factory=list)  # line of each value, parallel to values
    replaced: list[int] = field(default_factory=list)  # lines of earlier values it overrode

    def __post_init__(self) -> None:
        if not self.lines:
            self.lines = [self.line] * len(self.values)

    @property
    def value(self) -> str:
        """The value libuci's ``uci get`` would give for a scalar: the last one."""
        return self.values[-1] if self.values else ""

    @property
    def value_line(self) -> int:
        """The line of :attr:`value`."""
        return self.lines[-1] if self.lines else self.line


@dataclass
class UciSection:
    """One ``config`` block."""

    type: str
    name: str | None
    line: int
    options: dict[str, UciOption] = field(default_factory=dict)
    index: int = 0  # position among the sections of its type, as in @type[index]
    damaged: bool = False  # a syntax error inside it: some of its options may be missing

    @property
    def label(self) -> str:
        """How messages name the section: its name, else ``@type[index]``."""
        return self.name if self.name is not None else f"@{self.type}[{self.index}]"


@dataclass(frozen=True)
class UciSyntaxProblem:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


class _Error(Exception):
    """A syntax error; resume at the start of line ``resume_after + 1``."""

    def __init__(self, line: int, message: str, resume_after: int | None = None) -> None:
        super().__init__(message)
        self.line = line
        self.message = message
        self.resume_after = resume_after


class _Unterminated(Exception):
    def __init__(self, line: int, quote: str) -> None:
        super().__init__(quote)
        self.line = line
        self.quote = quote


class _Scanner:
    """A cursor over the whole text that counts lines as it moves."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.line = 1
        self.ended = False  # the rest of the line is gone (its end, a '#', or a cut ';')
        self._line_starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def peek(self, ahead: int = 0) -> str:
        i = self.pos + ahead
        return self.text[i] if i < len(self.text) else ""

    def advance(self) -> str:
        c = self.text[self.pos]
        self.pos += 1
        if c == "\n":
            self.line += 1
        return c

    def skip_inline_space(self) -> None:
        while self.peek() in _INLINE_SPACE:
            self.pos += 1

    def skip_to_eol(self) -> None:
        """Move to the newline ending the current line (not past it)."""
        end = self.text.find("\n", self.pos)
        self.pos = len(self.text) if end < 0 else end

    def goto_line_after(self, line: int) -> None:
        """Resume at the start of line ``line + 1`` (or at the end)."""
        if line < len(self._line_starts):
            self.pos, self.line = self._line_starts[line], line + 1
        else:
            self.pos, self.line = len(self.text), len(self._line_starts)
        self.ended = False

    def _quoted(self, quote: str, out: list[str]) -> int:
        """A quoted run from its opening ``quote`` to its closing one, into ``out``.

        Between double quotes a backslash escapes, between single quotes it is a
        plain character. Returns how many backslashes were dropped.
        """
        opened = self.line
        self.pos += 1
        dropped = 0
        while True:
            q = self.peek()
            if q == "":
                raise _Unterminated(opened, quote)
            if q == "\\" and quote == '"':
                dropped += 1
                escaped = self._backslash()
                if escaped is not None:
                    out.append(escaped)
                continue
            self.advance()
            if q == quote:
                return dropped
            out.append(q)

    def _backslash(self) -> str | None:
        """After a backslash: the escaped character, or None for a line continuation."""
        self.pos += 1  # the backslash itself
        c = self.peek()
        if c == "" or c == "\n" or (c == "\r" and self.peek(1) == "\n"):
            # libuci fetches the next line in place of the newline
            if c == "\r":
                self.pos += 1
            if self.peek() == "\n":
                self.advance()
            return None
        self.advance()
        return c

    def word(self) -> str:
        """The command keyword: up to the next space or tab (libuci's strtok), or the line's end.

        Any other whitespace stays in the word, which then names no command."""
        start = self.pos
        while self.peek() not in ("", " ", "\t", "\n"):
            self.pos += 1
        return self.text[start:self.pos]

    def token(self) -> tuple[str, int] | None:
        """The next argument of the current command and its line, or None when it ends."""
        if self.ended:
            return None
        self.skip_inline_space()
        c = self.peek()
        if c == "" or c == "\n":
            self.ended = True
            return None
        if c == ";":
            # libuci: an argument that starts with ';' is empty, and the command goes on
            self.pos += 1
            return "", self.line
        line = self.line
        out: list[str] = []
        # libuci parses in place, writing the argument over its own text: ``lag``
        # counts the quotes and backslashes dropped so far, and decides what an
        # unquoted ';' does (see below)
        lag = 0
        while True:
            c = self.peek()
            if c in ("'", '"'):
                lag += 2 + self._quoted(c, out)
            elif c == "#":
                # libuci overwrites '#' with the string end: the rest of the line is gone
                self.skip_to_eol()
                self.ended = True
                break
            elif c == ";":
                if lag == 0:
                    # libuci ends the argument by writing over the ';': the rest of
                    # the line is lost
                    self.skip_to_eol()
                    self.ended = True
                # else the ';' stays, and the next argument starts with it
                break
            elif c == "\\":
                lag += 1
                escaped = self._backslash()
                if escaped is not None:
                    out.append(escaped)
            elif c == "" or c in _SPACE:
                break
            else:
                out.append(c)
                self.pos += 1
            # libuci's do-while: a token ends at whitespace, also right after a continuation
            if self.peek() == "" or self.peek() in _SPACE:
                break
        # libuci steps over the one whitespace character that ended the argument
        if self.peek() in ("", "\n"):
            self.ended = True
        elif self.peek() in _SPACE and not self.ended:
            self.pos += 1
        return "".join(out), line


def parse(text: str) -> tuple[list[UciSection], list[UciSyntaxProblem]]:
    """Parse a UCI file into its sections, in file order, and its syntax problems."""
    sections: list[UciSection] = []
    problems: list[UciSyntaxProblem] = []
    per_type: dict[str, int] = {}
    current: UciSection | None = None
    broken_section = False  # after a bad 'config' line, skip its options quietly
    continuing = False  # the last command ended at a ';' with more of its line to read
    s = _Scanner(text)

    while True:
        s.ended = False
        if continuing:
            # libuci reads the next command of the line with strtok(" \t"): only
            # spaces and tabs are skipped, so nothing but the line's end after a
            # ';' is a command it cannot name
            continuing = False
            while s.peek() in (" ", "\t"):
                s.pos += 1
            c = s.peek()
            if c == "":
                break
            if c == "#":
                s.skip_to_eol()
                continue
            if c in _SPACE:
                problems.append(UciSyntaxProblem(s.line, "nothing after ';': remove the ';' "
                                                         "at the end of the line"))
                if current is not None:
                    current.damaged = True
                s.goto_line_after(s.line)
                continue
        else:
            s.skip_inline_space()
            c = s.peek()
            if c == "":
                break
            if c == "\n":
                s.advance()
                continue
            if c == "#":
                s.skip_to_eol()
                continue
        start_line = s.line
        keyword_text = s.word()
        keyword = _KEYWORDS.get(keyword_text)
        try:
            if keyword is None:
                raise _Error(start_line, f"unknown keyword {keyword_text!r}: a line starts with "
                                         "config, option, list or package (or # for a comment)")
            if keyword == "package":
                _package(s, start_line)
            elif keyword == "config":
                broken_section = True
                current = None
                kind, name = _config(s, start_line)
                index = per_type.get(kind, 0)
                per_type[kind] = index + 1
                current = UciSection(kind, name, start_line, {}, index)
                sections.append(current)
                broken_section = False
            else:
                _option(s, start_line, keyword == "list", current, broken_section)
        except _Unterminated as e:
            problems.append(UciSyntaxProblem(e.line, f"unterminated {e.quote} quote: "
                                                     f"add the closing {e.quote}"))
            if current is not None:
                current.damaged = True
            s.goto_line_after(e.line)
            continue
        except _Error as e:
            if e.message:  # an empty message: a quietly skipped line
                problems.append(UciSyntaxProblem(e.line, e.message))
            if current is not None:
                current.damaged = True
            s.goto_line_after(e.line if e.resume_after is None else e.resume_after)
            continue
        # another command may follow a ';' on the same line
        continuing = not s.ended
    return sections, problems


def _rest_is_empty(s: _Scanner, keyword: str) -> None:
    """libuci's assert_eol in strict mode (the default of the uci tool)."""
    extra = s.token()
    if extra is not None and extra[0] != "":
        raise _Error(extra[1], f"too many values after {keyword!r} ({extra[0]!r}): "
                               "quote a value that contains spaces", resume_after=s.line)


def _package(s: _Scanner, line: int) -> None:
    tok = s.token()
    if tok is None or tok[0] == "":
        raise _Error(line, "'package' needs a name")
    if not _PACKAGE.fullmatch(tok[0]):
        raise _Error(tok[1], f"invalid package name {tok[0]!r}: use letters, digits, _ and -")
    _rest_is_empty(s, "package")


def _config(s: _Scanner, line: int) -> tuple[str, str | None]:
    tok = s.token()
    if tok is None or tok[0] == "":
        raise _Error(line, "'config' needs a section type, as in: config modem 'modem1'")
    kind = tok[0]
    if not _TYPE.fullmatch(kind):
        raise _Error(tok[1], f"invalid section type {kind!r}: use printable characters "
                             "without spaces", resume_after=s.line)
    name_tok = s.token()
    name = name_tok[0] if name_tok is not None and name_tok[0] != "" else None
    if name is not None and name_tok is not None and not _NAME.fullmatch(name):
        raise _Error(name_tok[1], f"invalid section name {name!r}: use only letters, "
                                  "digits and _", resume_after=s.line)
    _rest_is_empty(s, "config")
    return kind, name


def _option(s: _Scanner, line: int, is_list: bool, section: UciSection | None,
            broken_section: bool) -> None:
    keyword = "list" if is_list else "option"
    if section is None:
        if broken_section:
            # the section's own line was reported; one mistake, one problem
            raise _Error(line, "")
        raise _Error(line, f"{keyword!r} before any 'config' line: put it under a section")
    tok = s.token()
    if tok is None or tok[0] == "":
        raise _Error(line, f"{keyword!r} needs a name and a value, as in: "
                           f"{keyword} role 'primary'")
    name = tok[0]
    if not _NAME.fullmatch(name):
        raise _Error(tok[1], f"invalid option name {name!r}: use only letters, digits and _",
                     resume_after=s.line)
    value_tok = s.token()
    value, value_line = value_tok if value_tok is not None else ("", line)
    _rest_is_empty(s, keyword)

    existing = section.options.get(name)
    if is_list:
        if existing is None or (not existing.is_list and existing.value == ""):
            # an empty 'option' is no option at all in libuci: the list starts afresh,
            # after the options set since
            section.options.pop(name, None)
            section.options[name] = UciOption(name, [value], line, True, [value_line])
        else:
            # libuci turns an 'option' into a list whose first item is its value
            existing.is_list = True
            existing.values.append(value)
            existing.lines.append(value_line)
    elif value == "" and existing is not None and (existing.is_list or existing.value != ""):
        # libuci sets nothing for an empty 'option' while it reads a file: the
        # earlier value, or list, stays
        return
    else:
        replaced = [] if existing is None else existing.replaced + existing.lines
        if existing is not None and not existing.is_list and existing.value == "":
            # libuci never made the empty one: this one comes after the options set since
            section.options.pop(name)
        section.options[name] = UciOption(name, [value], line, False, [value_line], replaced)


def quote(value: str) -> str:
    """Quote a value as libuci's export does: single quotes, ' written as '\\''."""
    return "'" + value.replace("'", "'\\''") + "'"


def dump(sections: Iterable[UciSection]) -> str:
    """Write sections back in UCI syntax (names and values quoted, comments lost)."""
    out: list[str] = []
    for section in sections:
        head = f"config {quote(section.type)}"
        if section.name is not None:
            head += f" {quote(section.name)}"
        out.append(head)
        for option in section.options.values():
            keyword = "list" if option.is_list else "option"
            out.extend(f"\t{keyword} {option.name} {quote(v)}" for v in option.values)
        out.append("")
    return "\n".join(out)
