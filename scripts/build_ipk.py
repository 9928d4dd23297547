#!/usr/bin/env python3
"""Build remsim-supervisor's ``.ipk`` for OpenWrt's opkg without an SDK (``make ipk``).

The package is the one the feed Makefile (``openwrt/remsim-supervisor/Makefile``)
describes, and this script reads it from there so that the two cannot drift:

- the files and their modes come from ``openwrt/remsim-supervisor/manifest``,
  which the feed Makefile installs from too;
- name, release, license, section, ``DEPENDS``, the description, ``conffiles``
  and the package's own ``postinst``/``prerm``/``postrm`` come from the feed
  Makefile;
- the version is ``__version__`` of the Python package, plus ``-rRELEASE``.

An ``.ipk`` is what opkg reads: a gzip'd tar (not an ``ar`` archive like a
``.deb``) of ``./debian-binary`` (``2.0``), ``./data.tar.gz`` (the files, rooted
at ``/``) and ``./control.tar.gz``. The control scripts are laid out as an
OpenWrt SDK lays them out: ``postinst``/``prerm`` hand over to the router's
``default_postinst``/``default_prerm`` (which enable and start, and stop, every
init script the package ships), and those run the package's own scripts,
shipped as ``postinst-pkg``/``prerm-pkg``; ``postrm`` is shipped as it is.

The build is reproducible: every entry is owned by 0:0, entries are sorted,
mtimes are ``SOURCE_DATE_EPOCH`` or else the time of the last git commit (or,
in a tree without history, the newest source file), and the gzip streams carry
no name and no time. Standard library only: it runs on any build host.
"""

from __future__ import annotations

import argparse
import gzip
import io
import os
import re
import subprocess
import sys
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FEED_DIR = ROOT / "openwrt" / "remsim-supervisor"
MANIFEST = FEED_DIR / "manifest"
FEED_MAKEFILE = FEED_DIR / "Makefile"
PACKAGE_INIT = ROOT / "remsim_supervisor" / "__init__.py"

KINDS = ("file", "conffile", "tree", "omit")
SKIPPED_DIRS = ("__pycache__",)
SKIPPED_SUFFIXES = (".pyc", ".pyo")


class BuildError(Exception):
    """Something in the inputs that the build cannot use, said in one line."""


@dataclass(frozen=True)
class Entry:
    """One file of the package: where it comes from, where it goes, its mode."""

    source: Path
    dest: str  # absolute path on the router
    mode: int
    conffile: bool = False


@dataclass(frozen=True)
class FeedPackage:
    """What the feed Makefile says about the package."""

    name: str
    release: str
    license: str
    section: str
    arch: str
    depends: tuple[str, ...]
    description: str
    conffiles: tuple[str, ...]
    postinst: str
    prerm: str
    postrm: str = ""


# ---------------------------------------------------------------------------
# Inputs


def read_manifest(root: Path = ROOT, manifest: Path = MANIFEST) -> list[Entry]:
    """Expand the manifest into the package's files, sorted by destination."""
    rows: list[tuple[int, str, str, str, str]] = []
    for number, raw in enumerate(manifest.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        if len(fields) != 4 or fields[0] not in KINDS:
            raise BuildError(f"{manifest}:{number}: expected KIND MODE SOURCE DEST with KIND "
                             f"one of {', '.join(KINDS)}, got: {raw.strip()}")
        kind, mode_text, src, dest = fields
        rows.append((number, kind, mode_text, src, dest))
    omitted = [root / src for _n, kind, _m, src, _d in rows if kind == "omit"]
    entries: list[Entry] = []
    for number, kind, mode_text, src, dest in rows:
        if kind == "omit":
            continue
        try:
            mode = int(mode_text, 8)
        except ValueError:
            raise BuildError(f"{manifest}:{number}: mode {mode_text!r} is not octal") from None
        if not dest.startswith("/"):
            raise BuildError(f"{manifest}:{number}: destination {dest!r} is not absolute")
        source = root / src
        if kind in ("file", "conffile"):
            if not source.is_file():
                raise BuildError(f"{manifest}:{number}: {src} is missing")
            entries.append(Entry(source, dest, mode, conffile=kind == "conffile"))
            continue
        if not source.is_dir():
            raise BuildError(f"{manifest}:{number}: {src} is not a directory")
        for path in sorted(_tree_files(source, omitted)):
            rel = path.relative_to(source).as_posix()
            entries.append(Entry(path, f"{dest.rstrip('/')}/{rel}", mode))
    dests = [e.dest for e in entries]
    if len(set(dests)) != len(dests):
        raise BuildError(f"{manifest}: a destination is listed twice")
    return sorted(entries, key=lambda e: e.dest)


def _tree_files(top: Path, omitted: Iterable[Path]) -> Iterable[Path]:
    skip = set(omitted)
    for dirpath, dirnames, filenames in os.walk(top):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames
                       if d not in SKIPPED_DIRS and here / d not in skip]
        for name in filenames:
            if not name.endswith(SKIPPED_SUFFIXES):
                yield here / name


def read_version(init: Path = PACKAGE_INIT) -> str:
    match = re.search(r'^__version__ = "([^"]+)"$', init.read_text(encoding="utf-8"), re.MULTILINE)
    if not match:
        raise BuildError(f"{init}: no __version__ = \"...\" line")
    return match.group(1)


def _makefile_defines(text: str) -> dict[str, str]:
    defines: dict[str, str] = {}
    for match in re.finditer(r"^define ([^\n]+)\n(.*?)^endef$", text, re.MULTILINE | re.DOTALL):
        defines[match.group(1).strip()] = match.group(2)
    return defines


def _makefile_assignments(text: str) -> dict[str, str]:
    """``NAME:=value`` lines (continuations joined), outside and inside defines."""
    joined = re.sub(r"\\\n\s*", " ", text)
    values: dict[str, str] = {}
    for match in re.finditer(r"^\s*([A-Z_]+)\s*:?=\s*(.*)$", joined, re.MULTILINE):
        values.setdefault(match.group(1), match.group(2).strip())
    return values


def _unescape_script(name: str, body: str) -> str:
    """A Makefile script as the shell sees it: ``$$`` is ``$``; no make references."""
    if re.search(r"\$(?!\$)", body.replace("$$", "")):
        raise BuildError(f"{FEED_MAKEFILE}: {name} uses a make variable; "
                         "this build only knows plain shell (write $$ for $)")
    return body.replace("$$", "$")


def read_feed_package(makefile: Path = FEED_MAKEFILE) -> FeedPackage:
    text = makefile.read_text(encoding="utf-8")
    top = _makefile_assignments(text)
    defines = _makefile_defines(text)
    name = top.get("PKG_NAME", "")
    package = defines.get(f"Package/{name}")
    if not name or package is None:
        raise BuildError(f"{makefile}: no PKG_NAME with a define Package/PKG_NAME")
    fields = _makefile_assignments(package)
    depends: list[str] = []
    for token in fields.get("DEPENDS", "").split():
        if not re.fullmatch(r"\+[a-z0-9][a-z0-9.+-]*", token):
            raise BuildError(f"{makefile}: DEPENDS entry {token!r}: only plain +package "
                             "entries can go into a hand-built ipk")
        depends.append(token[1:])
    description = "\n".join(line.strip() for line in
                            defines.get(f"Package/{name}/description", "").strip().splitlines())
    conffiles = tuple(line.strip() for line in
                      defines.get(f"Package/{name}/conffiles", "").splitlines() if line.strip())
    return FeedPackage(
        name=name,
        release=top.get("PKG_RELEASE", "1"),
        license=top.get("PKG_LICENSE", ""),
        section=fields.get("SECTION", "opt"),
        arch=fields.get("PKGARCH", "all"),
        depends=tuple(depends),
        description=description,
        conffiles=conffiles,
        postinst=_unescape_script("postinst", defines.get(f"Package/{name}/postinst", "")),
        prerm=_unescape_script("prerm", defines.get(f"Package/{name}/prerm", "")),
        postrm=_unescape_script("postrm", defines.get(f"Package/{name}/postrm", "")),
    )


def source_date_epoch(root: Path = ROOT, sources: Iterable[Path] = ()) -> int:
    """SOURCE_DATE_EPOCH, else the last commit's time, else the newest source."""
    env = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if env:
        if not env.isdigit():
            raise BuildError(f"SOURCE_DATE_EPOCH={env!r} is not a number of seconds")
        return int(env)
    try:
        out = subprocess.run(["git", "-C", str(root), "log", "-1", "--format=%ct"],
                             check=False, capture_output=True, text=True, timeout=30)
        if out.returncode == 0 and out.stdout.strip().isdigit():
            return int(out.stdout.strip())
    except (OSError, subprocess.TimeoutExpired):
        pass
    mtimes = [int(p.stat().st_mtime) for p in sources]
    if not mtimes:
        raise BuildError("no SOURCE_DATE_EPOCH, no git history and no sources to date the build")
    print("build_ipk: no SOURCE_DATE_EPOCH and no git history: dating files by the newest source",
          file=sys.stderr)
    return max(mtimes)


# ---------------------------------------------------------------------------
# Archives


def _gzip(data: bytes) -> bytes:
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0, compresslevel=9) as gz:
        gz.write(data)
    return buffer.getvalue()


def _info(name: str, mtime: int, mode: int, size: int = 0,
          kind: bytes = tarfile.REGTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.size = size
    info.mtime = mtime
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def _tar(members: Iterable[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def data_tar(entries: list[Entry], mtime: int) -> bytes:
    """``./``-rooted tar of the files and every directory above them, sorted."""
    dirs: set[str] = set()
    for entry in entries:
        parts = entry.dest.strip("/").split("/")[:-1]
        dirs.update("/".join(parts[:i]) for i in range(1, len(parts) + 1))
    members: list[tuple[tuple[str, ...], tarfile.TarInfo, bytes | None]] = []
    for d in dirs:
        members.append((tuple(d.split("/")), _info(f"./{d}", mtime, 0o755,
                                                   kind=tarfile.DIRTYPE), None))
    for entry in entries:
        data = entry.source.read_bytes()
        rel = entry.dest.strip("/")
        members.append((tuple(rel.split("/")), _info(f"./{rel}", mtime, entry.mode, len(data)),
                        data))
    members.sort(key=lambda m: m[0])
    return _tar((info, data) for _key, info, data in members)


POSTINST = """#!/bin/sh
[ "${IPKG_NO_SCRIPT}" = "1" ] && exit 0
[ -s "${IPKG_INSTROOT}/lib/functions.sh" ] || exit 0
# shellcheck source=/dev/null  # the router's own
. "${IPKG_INSTROOT}/lib/functions.sh"
default_postinst "$0" "$@"
"""

PRERM = """#!/bin/sh
[ -s "${IPKG_INSTROOT}/lib/functions.sh" ] || exit 0
# shellcheck source=/dev/null  # the router's own
. "${IPKG_INSTROOT}/lib/functions.sh"
default_prerm "$0" "$@"
"""


def control_text(pkg: FeedPackage, version: str, installed_size: int, epoch: int) -> str:
    lines = [
        f"Package: {pkg.name}",
        f"Version: {version}",
        f"Depends: {', '.join(pkg.depends)}",
        f"Source: {FEED_DIR.relative_to(ROOT).as_posix()}",
        f"SourceName: {pkg.name}",
        f"License: {pkg.license}",
        f"Section: {pkg.section}",
        f"SourceDateEpoch: {epoch}",
        f"Architecture: {pkg.arch}",
        f"Installed-Size: {installed_size}",
    ]
    first, *rest = pkg.description.splitlines() or [""]
    lines.append(f"Description: {first}")
    lines.extend(f" {line}" if line else " ." for line in rest)
    return "\n".join(lines) + "\n"


def control_tar(pkg: FeedPackage, entries: list[Entry], version: str, mtime: int) -> bytes:
    conffiles = [e.dest for e in entries if e.conffile]
    if sorted(conffiles) != sorted(pkg.conffiles):
        raise BuildError(f"conffiles differ: the manifest has {conffiles}, "
                         f"{FEED_MAKEFILE.name} has {list(pkg.conffiles)}")
    size = sum(e.source.stat().st_size for e in entries)
    files: dict[str, tuple[int, str]] = {
        "control": (0o644, control_text(pkg, version, size, mtime)),
        "conffiles": (0o644, "".join(f"{c}\n" for c in conffiles)),
        "postinst": (0o755, POSTINST),
        "prerm": (0o755, PRERM),
    }
    if pkg.postinst.strip():
        files["postinst-pkg"] = (0o755, pkg.postinst)
    if pkg.prerm.strip():
        files["prerm-pkg"] = (0o755, pkg.prerm)
    if pkg.postrm.strip():
        # as an SDK ships it: as it is (no default_postrm wraps it)
        files["postrm"] = (0o755, pkg.postrm)
    members: list[tuple[tarfile.TarInfo, bytes | None]] = [
        (_info("./", mtime, 0o755, kind=tarfile.DIRTYPE), None)]
    for name in sorted(files):
        mode, text = files[name]
        data = text.encode()
        members.append((_info(f"./{name}", mtime, mode, len(data)), data))
    return _tar(members)


def build(out_dir: Path, root: Path = ROOT) -> Path:
    """Build the package into ``out_dir`` and return its path."""
    pkg = read_feed_package()
    entries = read_manifest(root)
    version = f"{read_version()}-r{pkg.release}"
    epoch = source_date_epoch(root, [e.source for e in entries])
    data = _gzip(data_tar(entries, epoch))
    control = _gzip(control_tar(pkg, entries, version, epoch))
    outer = _tar([
        (_info("./debian-binary", epoch, 0o644, 4), b"2.0\n"),
        (_info("./data.tar.gz", epoch, 0o644, len(data)), data),
        (_info("./control.tar.gz", epoch, 0o644, len(control)), control),
    ])
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{pkg.name}_{version}_{pkg.arch}.ipk"
    target.write_bytes(_gzip(outer))
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist",
                        help="directory for the .ipk (default: dist/)")
    args = parser.parse_args(argv)
    try:
        print(build(args.out))
    except (BuildError, OSError) as exc:
        print(f"build_ipk: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
