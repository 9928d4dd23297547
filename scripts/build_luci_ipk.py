#!/usr/bin/env python3
"""Build ``luci-app-remsim-supervisor``'s ``.ipk`` without an SDK.

The package is what LuCI's ``luci.mk`` makes of
``openwrt/luci-app-remsim-supervisor`` (its feed Makefile): ``htdocs/`` under
``/www``, ``root/`` under ``/``, every file 0644, ``Architecture: all``, the
name, title, description and dependencies from the Makefile, and luci.mk's
postinst (drop LuCI's caches, make rpcd re-read its ACLs and plugins). The
pages call the ``remsim-supervisor`` ubus object, whose rpcd ucode plugin
(``/usr/share/rpcd/ucode/remsim-supervisor.uc``) the remsim-supervisor
package ships.

The version is the daemon's (``remsim_supervisor.__version__``) with
``-rPKG_RELEASE`` (default 1). The archive layout, ownership, ordering and
dating are those of ``scripts/build_ipk.py`` (reproducible builds, standard
library only), whose functions this script uses.

    usage: scripts/build_luci_ipk.py [--out DIR]      (default: dist/)
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "openwrt" / "luci-app-remsim-supervisor"

# luci.mk's postinst for every LuCI package
POSTINST = """#!/bin/sh
[ -n "${IPKG_INSTROOT}" ] || {
	rm -f /tmp/luci-indexcache.*
	rm -rf /tmp/luci-modulecache/
	killall -HUP rpcd 2>/dev/null
	exit 0
}
"""


def _build_ipk() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_ipk", ROOT / "scripts" / "build_ipk.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("build_ipk", module)
    spec.loader.exec_module(module)
    return module


def makefile_fields(makefile: Path) -> dict[str, str]:
    """``NAME:=value`` lines of the feed Makefile."""
    return {m[1]: m[2].strip() for m in
            re.finditer(r"^([A-Z_]+)\s*:=\s*(.*)$", makefile.read_text(encoding="utf-8"),
                        re.MULTILINE)}


def entries(bi: ModuleType) -> list:  # list[build_ipk.Entry]
    found = []
    for top, dest in ((APP / "htdocs", "/www"), (APP / "root", "")):
        for path in sorted(p for p in top.rglob("*") if p.is_file()):
            found.append(bi.Entry(path, f"{dest}/{path.relative_to(top).as_posix()}", 0o644))
    return sorted(found, key=lambda e: e.dest)


def build(out_dir: Path, bi: ModuleType | None = None) -> Path:
    bi = bi or _build_ipk()
    fields = makefile_fields(APP / "Makefile")
    name = APP.name
    depends = []
    for token in fields.get("LUCI_DEPENDS", "").split():
        if not re.fullmatch(r"\+[a-z0-9][a-z0-9.+-]*", token):
            raise bi.BuildError(f"{APP / 'Makefile'}: LUCI_DEPENDS entry {token!r}: only plain "
                                "+package entries can go into a hand-built ipk")
        depends.append(token[1:])
    files = entries(bi)
    version = f"{bi.read_version()}-r{fields.get('PKG_RELEASE', '1')}"
    epoch = bi.source_date_epoch(ROOT, [e.source for e in files])
    size = sum(e.source.stat().st_size for e in files)
    control = "".join(f"{line}\n" for line in (
        f"Package: {name}",
        f"Version: {version}",
        f"Depends: {', '.join(depends)}",
        f"Source: {APP.relative_to(ROOT).as_posix()}",
        f"SourceName: {name}",
        f"License: {fields.get('PKG_LICENSE', '')}",
        "Section: luci",
        f"SourceDateEpoch: {epoch}",
        f"Architecture: {fields.get('LUCI_PKGARCH', 'all')}",
        f"Installed-Size: {size}",
        f"Description: {fields.get('LUCI_TITLE', name)}",
        f" {fields.get('LUCI_DESCRIPTION', '')}",
    ))
    members = [(bi._info("./", epoch, 0o755, kind=bi.tarfile.DIRTYPE), None)]
    for member, mode, text in (("control", 0o644, control), ("postinst", 0o755, POSTINST)):
        data = text.encode()
        members.append((bi._info(f"./{member}", epoch, mode, len(data)), data))
    control_gz = bi._gzip(bi._tar(members))
    data_gz = bi._gzip(bi.data_tar(files, epoch))
    outer = bi._tar([
        (bi._info("./debian-binary", epoch, 0o644, 4), b"2.0\n"),
        (bi._info("./data.tar.gz", epoch, 0o644, len(data_gz)), data_gz),
        (bi._info("./control.tar.gz", epoch, 0o644, len(control_gz)), control_gz),
    ])
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{name}_{version}_{fields.get('LUCI_PKGARCH', 'all')}.ipk"
    target.write_bytes(bi._gzip(outer))
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist",
                        help="directory for the .ipk (default: dist/)")
    args = parser.parse_args(argv)
    bi = _build_ipk()
    try:
        print(build(args.out, bi))
    except (bi.BuildError, OSError) as exc:
        print(f"build_luci_ipk: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
