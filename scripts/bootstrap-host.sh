#!/bin/sh
# Installs the host tools the suite uses (iproute2 for network namespaces,
# nftables so that the kernel tracks connections in the conntrack tests,
# busybox for the init-script tests, shellcheck), when they are missing.
# Runs as root on Debian; elsewhere it only reports what is missing.
set -eu

missing=""
command -v ip >/dev/null 2>&1 || missing="$missing iproute2"
command -v nft >/dev/null 2>&1 || missing="$missing nftables"
command -v busybox >/dev/null 2>&1 || missing="$missing busybox"
command -v shellcheck >/dev/null 2>&1 || missing="$missing shellcheck"

[ -z "$missing" ] && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
	echo "installing:$missing"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >/dev/null
	# shellcheck disable=SC2086
	apt-get install -y -qq $missing >/dev/null
else
	echo "missing host tools:$missing (install them, as root: apt-get install$missing)" >&2
	exit 1
fi
