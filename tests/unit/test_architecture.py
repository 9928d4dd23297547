"""The package's layout as rules (docs/architecture.md): each rule read from the source.

- No import cycle among the package's modules. Every import counts: at module
  level, inside a function, and under ``if TYPE_CHECKING:``. Importing
  ``a.b.c`` runs ``a/__init__.py`` and ``a/b/__init__.py`` first, so those
  count too (except the importer's own packages, which are already running).
- No module over MAX_LINES lines, but for the pure data tables in DATA_TABLES.
- What stays home stays home: the package never imports the lab (remsim_lab),
  the tests, the benchmarks or the scripts; the wheel's packages (setup.cfg)
  are the package's own and no others; the ipk's files
  (openwrt/remsim-supervisor/manifest) come from none of those.
- Vendors live in vendors/: no vendor's name, model or proprietary AT command
  anywhere else in the package, comments and docstrings included.

Each test fails with the whole list of what breaks its rule, to fix in one go.
"""

from __future__ import annotations

import ast
import configparser
import re
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import setuptools

from tests.paths import REPO
from tests.stubs.support import build_ipk_module

PACKAGE = "remsim_supervisor"
PACKAGE_DIR = REPO / PACKAGE
VENDORS_DIR = PACKAGE_DIR / "vendors"
# Top-level names beside the package that never ship.
STAYS_HOME = ("remsim_lab", "tests", "bench", "scripts")

MAX_LINES = 500
# Modules allowed past MAX_LINES because they are pure data (tables of
# constants, no logic to split out): dotted name -> what the table is.
DATA_TABLES: dict[str, str] = {}

# Vendor names, matched as whole words ("intelligent" is no hit). A new vendor
# family adds its name, models and proprietary commands here.
VENDOR_NAMES = ("quectel", "huawei", "sierra", "fibocom", "intel", "mediatek")
# Matched at the start of a word, so variants count too (ME909s, ^SYSINFOEX):
# the models the vendor modules define, and proprietary AT commands and URCs
# (3GPP's are +C...): Quectel +Q..., Huawei ^..., Sierra !..., Fibocom +GT...,
# Intel +X....
VENDOR_PREFIXES = ("EC25", "ME909", "MC7455", "L850", "FM350",
                   "QENG", "QCSQ", "QCFG", "QCCID", "QPOWD", "QUIMSLOT",
                   "^SYSINFO", "^HCSQ", "^SYSSTART", "^SETPORT", "^ICCID", "^RESET", "^BOOT",
                   "!RESET", "!ICCID", "!USBCOMP", "GTRNDIS", "GTUSBMODE", "XCESQ")


def _word_start(word: str) -> str:
    """A pattern for ``word`` at the start of a word (``^`` and ``!`` start one themselves)."""
    return re.escape(word) if not word[0].isalnum() else rf"(?<![a-z0-9]){re.escape(word)}"


VENDOR_WORD = re.compile(
    "|".join([*(rf"{_word_start(w)}(?![a-z0-9])" for w in VENDOR_NAMES),
              *(_word_start(w) for w in VENDOR_PREFIXES)]),
    re.IGNORECASE)


def _modules() -> dict[str, Path]:
    """Dotted module name -> source file, for every module of the package."""
    found = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        parts = path.relative_to(REPO).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _where(path: Path, line: int) -> str:
    return f"{path.relative_to(REPO)}:{line}"


@dataclass(frozen=True)
class Import:
    """One module an import statement names, and where it says so."""

    target: str
    path: Path
    line: int

    @property
    def where(self) -> str:
        return _where(self.path, self.line)


def imports_of(name: str, path: Path, source: str | None = None) -> Iterator[Import]:
    """Every module that ``name``'s source (``path``'s) imports, wherever the statement stands.

    ``from X import Y`` names X, and X.Y too when that is a module.
    """
    if source is None:
        source = path.read_text(encoding="utf-8")
    tree = ast.parse(source, filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(alias.name, path, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            yield Import(module, path, node.lineno)
            for alias in node.names:
                if f"{module}.{alias.name}" in MODULES:
                    yield Import(f"{module}.{alias.name}", path, node.lineno)


def _packages_of(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:n]) for n in range(1, len(parts))]


def import_graph() -> dict[str, dict[str, str]]:
    """Module -> {module it imports: where it says so}, within the package."""
    graph: dict[str, dict[str, str]] = {name: {} for name in MODULES}
    for name, path in MODULES.items():
        running = {name, *_packages_of(name)}
        for imp in imports_of(name, path):
            if imp.target != PACKAGE and not imp.target.startswith(PACKAGE + "."):
                continue
            target = imp.target
            while target not in MODULES:  # a name that is no module: its nearest module
                target = target.rpartition(".")[0]
            for module in (*_packages_of(target), target):
                if module in running:
                    continue
                how = imp.where if module == target else f"{imp.where}, by importing {target}"
                graph[name].setdefault(module, how)
    return graph


def strongly_connected(graph: dict[str, dict[str, str]]) -> list[list[str]]:
    """Tarjan's components of the graph, each sorted; only those that hold a cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph[node]:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(components)


def shortest_cycle(graph: dict[str, dict[str, str]], start: str) -> list[str]:
    """The shortest way from ``start`` back to itself, or [] when there is none."""
    came_from: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for nxt in sorted(graph[node]):
            if nxt in came_from:
                continue
            came_from[nxt] = node
            if nxt == start:
                path = [start, node]
                while path[-1] != start:
                    path.append(came_from[path[-1]])
                return path[::-1]
            queue.append(nxt)
    return []


def test_no_import_cycle() -> None:
    graph = import_graph()
    reports = []
    for members in strongly_connected(graph):
        reports.append(f"  {len(members)} modules import each other: {', '.join(members)}")
        seen: list[set[str]] = []
        for member in members:  # the shortest cycle through each, once each
            cycle = shortest_cycle(graph, member)
            if set(cycle) in seen:
                continue
            seen.append(set(cycle))
            reports.append(f"    {' -> '.join(cycle)}")
            reports.extend(f"      {a} -> {b}: {graph[a][b]}" for a, b in pairwise(cycle))
    assert not reports, "import cycles in the package:\n" + "\n".join(reports)


def test_the_cycle_check_sees_every_kind_of_import() -> None:
    """A relative, a TYPE_CHECKING and a function-local import are all edges."""
    source = ("from typing import TYPE_CHECKING\n"
              "from . import machine\n"
              "if TYPE_CHECKING:\n    from ..vendors.base import Profile\n"
              "def f():\n    import remsim_supervisor.config.uci\n")
    targets = {i.target for i in imports_of(f"{PACKAGE}.core.probe",
                                            PACKAGE_DIR / "core" / "probe.py", source)}
    assert {f"{PACKAGE}.core.machine", f"{PACKAGE}.vendors.base",
            f"{PACKAGE}.config.uci"} <= targets


def test_the_cycle_check_finds_a_cycle() -> None:
    graph = {"a": {"b": "a.py:1"}, "b": {"c": "b.py:1"}, "c": {"a": "c.py:1", "d": "c.py:2"},
             "d": {}, "e": {"e": "e.py:1"}}
    assert strongly_connected(graph) == [["a", "b", "c"], ["e"]]
    assert shortest_cycle(graph, "b") == ["b", "c", "a", "b"]
    assert shortest_cycle(graph, "e") == ["e", "e"]
    assert shortest_cycle(graph, "d") == []


def test_no_module_is_too_long() -> None:
    too_long = {}
    for name, path in MODULES.items():
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_LINES and name not in DATA_TABLES:
            too_long[name] = lines
    assert not too_long, (f"modules over {MAX_LINES} lines (split them by job, or list a pure "
                          "data table in DATA_TABLES):\n"
                          + "\n".join(f"  {n}: {k}" for n, k in sorted(too_long.items())))


def test_the_data_table_allowance_is_still_needed() -> None:
    stale = [name for name in DATA_TABLES if name not in MODULES
             or len(MODULES[name].read_text(encoding="utf-8").splitlines()) <= MAX_LINES]
    assert not stale, f"DATA_TABLES lists modules that are gone or short now: {stale}"


def test_the_package_never_imports_what_stays_home() -> None:
    offenders = [f"{imp.where}: {imp.target}"
                 for name, path in MODULES.items() for imp in imports_of(name, path)
                 if imp.target.split(".")[0] in STAYS_HOME]
    assert not offenders, "the package imports what never ships:\n  " + "\n  ".join(offenders)


def test_the_wheel_holds_the_package_and_nothing_else() -> None:
    setup = configparser.ConfigParser()
    setup.read(REPO / "setup.cfg", encoding="utf-8")

    def listed(option: str) -> list[str]:
        # setuptools' list syntax: separated by commas or by lines
        text = setup.get("options.packages.find", option, fallback="")
        return [item.strip() for item in re.split(r"[,\n]", text) if item.strip()]

    assert setup.get("options", "packages").strip() == "find:"
    assert not setup.has_option("options", "py_modules")
    where = REPO / setup.get("options.packages.find", "where", fallback=".")
    shipped = set(setuptools.find_packages(str(where), include=listed("include") or ("*",),
                                           exclude=listed("exclude")))
    # every directory that holds a module, so one without __init__.py shows as missing
    packages = {".".join(path.parent.relative_to(REPO).parts) for path in MODULES.values()}
    assert shipped == packages, (f"the wheel's packages are not the package's own: "
                                 f"extra {sorted(shipped - packages)}, "
                                 f"missing {sorted(packages - shipped)}")


def test_the_ipk_holds_nothing_that_stays_home() -> None:
    entries = build_ipk_module().read_manifest()
    assert any(e.dest.endswith(f"/{PACKAGE}/__init__.py") for e in entries)
    offenders = [f"{e.source.relative_to(REPO)} -> {e.dest}" for e in entries
                 if e.source.relative_to(REPO).parts[0] in STAYS_HOME
                 or any(home in e.dest.split("/") for home in STAYS_HOME)]
    assert not offenders, "the ipk ships what stays home:\n  " + "\n  ".join(offenders)


def test_no_vendor_word_outside_vendors() -> None:
    hits = []
    for path in MODULES.values():
        if VENDORS_DIR in path.parents:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            words = sorted({m.group(0) for m in VENDOR_WORD.finditer(line)})
            if words:
                hits.append(f"{_where(path, number)}: {', '.join(words)}")
    assert not hits, ("vendor words outside vendors/ (a vendor's rule belongs in its module "
                      "there, asked for through the profile):\n  " + "\n  ".join(hits))


def test_the_vendor_word_pattern() -> None:
    """Words and their variants hit wherever they stand; 3GPP and plain English do not."""
    assert not VENDOR_WORD.search("intelligent +CESQ ^OK sierras AT+CSQ"), "false hits"
    assert VENDOR_WORD.search("a ME909s-120 says ^SYSINFOEX"), "a variant missed"
    assert VENDOR_WORD.search('"AT^SETPORT?"'), "a command after AT missed"
    assert VENDOR_WORD.search("from .fibocom_intel import"), "a module name missed"


# The layers from the bottom up (docs/architecture.md): a module may import
# its own layer and those below it, never one above. log.py serves every
# layer but core; entry.py is the console script, above the CLI.
LAYERS = ("core", "vendors", "config", "adapters", "supervisor", "cli")
BESIDE = {"log": 1, "entry": len(LAYERS)}  # rank of the top-level modules


def _rank(module: str) -> int | None:
    """The layer rank of a module of the package; None for the package itself."""
    parts = module.split(".")
    if len(parts) < 2:
        return None
    if parts[1] in LAYERS:
        return LAYERS.index(parts[1])
    return BESIDE.get(parts[1], len(LAYERS))


def test_imports_point_down_the_layers() -> None:
    upward = []
    for name, targets in import_graph().items():
        mine = _rank(name)
        for target, where in targets.items():
            theirs = _rank(target)
            if mine is None or theirs is None or target.endswith(".log"):
                continue
            if theirs > mine:
                upward.append(f"{name} imports {target} ({where})")
    assert not upward, "imports that point up the layers:\n" + "\n".join(sorted(upward))


def test_the_core_does_no_io_and_reads_no_environment() -> None:
    """core/ takes bytes, facts and times as arguments (socket's constants are fine)."""
    banned = ("os", "subprocess", "serial", "pyroute2", "gpiod", "asyncio", "threading",
              "time", "remsim_supervisor.log")
    found = [f"{name} imports {imp.target} ({imp.where})"
             for name, path in MODULES.items() if _rank(name) == 0
             for imp in imports_of(name, path)
             if any(imp.target == b or imp.target.startswith(b + ".") for b in banned)]
    assert not found, "the core is pure: no I/O, no clock, no environment:\n" + "\n".join(found)
