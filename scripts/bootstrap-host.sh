#!/bin/sh
# Installs the host tools the suite uses (iproute2 for network namespaces,
# nftables so that the kernel tracks connections in the conntrack tests,
# busybox for the init-script tests, shellcheck, promtool from prometheus for
# the metrics check, chromium for the LuCI app's browser test, pppd for the
# PPP modem's lab test, systemd's systemd-analyze and journald and libudev for
# the Linux-host tests, and what
# OpenWrt's userland needs to build: cmake, pkg-config, json-c and libbsd
# headers), when they are missing.
# Runs as root on Debian; elsewhere it only reports what is missing.
set -eu

missing=""
command -v ip >/dev/null 2>&1 || missing="$missing iproute2"
command -v nft >/dev/null 2>&1 || missing="$missing nftables"
command -v busybox >/dev/null 2>&1 || missing="$missing busybox"
command -v shellcheck >/dev/null 2>&1 || missing="$missing shellcheck"
command -v cmake >/dev/null 2>&1 || missing="$missing cmake"
command -v pkg-config >/dev/null 2>&1 || missing="$missing pkg-config"
[ -e /usr/include/json-c/json.h ] || missing="$missing libjson-c-dev"
[ -e /usr/include/bsd/string.h ] || missing="$missing libbsd-dev"
command -v promtool >/dev/null 2>&1 || missing="$missing prometheus"
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
[ -x /usr/sbin/pppd ] || missing="$missing ppp"
command -v systemd-analyze >/dev/null 2>&1 || missing="$missing systemd"
[ -x /lib/systemd/systemd-journald ] || missing="$missing systemd"
command -v unshare >/dev/null 2>&1 || missing="$missing util-linux"
ls /usr/lib/*/libudev.so.1 /lib/*/libudev.so.1 >/dev/null 2>&1 || missing="$missing libudev1"

[ -z "$missing" ] && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
	echo "installing:$missing"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >/dev/null
	# shellcheck disable=SC2086
	apt-get install -y -qq --no-install-recommends $missing >/dev/null
else
	echo "missing host tools:$missing (install them, as root: apt-get install$missing)" >&2
	exit 1
fi
