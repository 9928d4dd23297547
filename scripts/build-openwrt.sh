#!/bin/sh
# Builds OpenWrt's own userland (ubusd, procd, logd/logread, rpcd, uci, opkg,
# jsonfilter, ...) from the kit in ../shared/third_party/openwrt into PREFIX
# (default .venv/openwrt-userland), for the router sandbox of the tests and
# `make demo`. The kit's build.sh does the work; this script only decides
# whether a build is needed: PREFIX/.kit-hash holds a hash of every file of the
# kit, and a build runs when it is missing or differs (a changed kit is built
# afresh). The kit is only read, never written.
#
#   usage: scripts/build-openwrt.sh [KIT [PREFIX]]
set -eu

cd "$(dirname "$0")/.."
KIT=${1:-${OPENWRT_KIT:-../shared/third_party/openwrt}}
PREFIX=${2:-${OPENWRT_PREFIX:-.venv/openwrt-userland}}

if [ ! -x "$KIT/build.sh" ]; then
	echo "build-openwrt: OpenWrt userland kit not found at $KIT (expected ../shared beside the repository)" >&2
	exit 1
fi
KIT=$(cd "$KIT" && pwd)
mkdir -p "$PREFIX"
PREFIX=$(cd "$PREFIX" && pwd)

# sha256 over the kit's file names and contents, in a fixed order
hash=$(cd "$KIT" && find . -type f | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -d' ' -f1)
if [ -x "$PREFIX/sbin/procd" ] && [ "$(cat "$PREFIX/.kit-hash" 2>/dev/null)" = "$hash" ]; then
	exit 0
fi

echo "build-openwrt: building OpenWrt's userland from $KIT into $PREFIX (about 40 s)"
rm -rf "$PREFIX"
mkdir -p "$PREFIX"
log="$PREFIX/build.log"
if ! "$KIT/build.sh" "$PREFIX" >"$log" 2>&1; then
	tail -n 30 "$log" >&2
	echo "build-openwrt: the build failed (whole log: $log); host packages: sh scripts/bootstrap-host.sh" >&2
	exit 1
fi
# the build's scratch tree (sources, objects) is not needed to run
rm -rf "$PREFIX/.build"
echo "$hash" >"$PREFIX/.kit-hash"
echo "build-openwrt: done"
