#!/usr/bin/env bash
# PID 1 of the router sandbox (remsim_lab/router.py starts it under
# `unshare --mount --pid --net --fork --kill-child --mount-proc`).
#
#   router_sandbox.sh PREFIX KIT WORKDIR PYTHON [KEEP...]
#
# PREFIX: OpenWrt's userland as scripts/build-openwrt.sh built it; KIT: the
# kit it came from (base-files); WORKDIR: a scratch directory on the host,
# which holds the overlays' upper layers and stays visible at its own path;
# PYTHON: the interpreter that stands as the router's /usr/bin/python3; KEEP:
# directories under /tmp that must stay visible at their paths (WORKDIR, and
# the checkout, the userland and the kit when they live there, as a CI clone
# may), since the sandbox has a /tmp of its own.
#
# In its private mount namespace it lays out an OpenWrt root over the host's:
# tmpfs over /run, /tmp and /dev, copy-on-write overlays over /etc and /usr
# with OpenWrt's base-files at their router paths, the userland's programs in
# /usr/bin and /usr/sbin, busybox ash as /bin/sh. In its private network
# namespace only loopback is up. It starts ubusd, logd, procd (as the service
# manager) and rpcd, touches WORKDIR/ready, and then waits, reaping orphans,
# until SIGTERM: then it stops them, newest first. Everything it started dies
# with the pid namespace anyway, and every mount with the mount namespace.
set -u

PREFIX=$1
KIT=$2
W=$3
PYTHON=$4
shift 4
KEEP=("$@")
BUSYBOX=$(command -v busybox)
SOCK=/var/run/ubus/ubus.sock
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
PIDS=()

fail() {
	echo "router sandbox: $*" >&2
	exit 1
}

stop_all() {
	local rc=$? i
	trap - TERM INT EXIT
	for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
		kill -TERM "${PIDS[i]}" 2>/dev/null
	done
	exit "$rc"
}
trap stop_all TERM INT EXIT

start_bg() { # start_bg NAME CMD...: output in WORKDIR/log/NAME.log
	local name=$1
	shift
	"$@" >"$W/log/$name.log" 2>&1 &
	PIDS+=("$!")
}

wait_for() { # wait_for SECONDS CMD...
	local t=$(($1 * 20))
	shift
	while [ "$t" -gt 0 ]; do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.05
		t=$((t - 1))
	done
	return 1
}

[ -n "$BUSYBOX" ] || fail "busybox is not installed (sh scripts/bootstrap-host.sh)"
mkdir -p "$W/log" "$W/etc.up" "$W/etc.wk" "$W/usr.up" "$W/usr.wk" || fail "cannot write $W"

ip link set lo up || fail "cannot bring loopback up"

# /run (so /var/run, /var/lock) and /tmp private; what KEEP names stays at its path
mount -t tmpfs -o mode=755 router-run /run || fail "mount /run"
mkdir -p /run/lock /run/ubus
for i in "${!KEEP[@]}"; do
	mkdir -p "/run/keep/$i"
	mount --bind "${KEEP[i]}" "/run/keep/$i" || fail "bind ${KEEP[i]}"
done
mount -t tmpfs -o mode=1777 router-tmp /tmp || fail "mount /tmp"
for i in "${!KEEP[@]}"; do
	mkdir -p "${KEEP[i]}"
	mount --move "/run/keep/$i" "${KEEP[i]}" || fail "move ${KEEP[i]}"
done
rm -rf /run/keep

# /dev private: logd makes /dev/log here
mkdir -p /run/hostdev
mount --rbind /dev /run/hostdev
mount -t tmpfs -o mode=755 router-dev /dev || fail "mount /dev"
for n in null zero full random urandom tty; do
	touch "/dev/$n"
	mount --bind "/run/hostdev/$n" "/dev/$n"
done
mkdir -p /dev/pts /dev/shm
mount --rbind /run/hostdev/pts /dev/pts
mount -t tmpfs -o mode=1777 router-shm /dev/shm
ln -s /proc/self/fd /dev/fd
ln -s fd/0 /dev/stdin
ln -s fd/1 /dev/stdout
ln -s fd/2 /dev/stderr
ln -s pts/ptmx /dev/ptmx
umount -l /run/hostdev
rmdir /run/hostdev
# sysfs of this network namespace
mount -t sysfs router-sys /sys 2>/dev/null || true

# /etc and /usr: copy-on-write overlays (/bin, /sbin and /lib point into /usr)
for d in etc usr; do
	mount -t overlay -o "lowerdir=/$d,upperdir=$W/$d.up,workdir=$W/$d.wk" "router-$d" "/$d" ||
		fail "overlay over /$d"
done

BF="$KIT/base-files"
install -D -m 0755 "$BF/etc/rc.common" /etc/rc.common
install -D -m 0644 "$BF/lib/functions.sh" /lib/functions.sh
install -D -m 0644 "$BF/lib/functions/procd.sh" /lib/functions/procd.sh
install -D -m 0644 "$BF/lib/functions/service.sh" /lib/functions/service.sh
install -D -m 0644 "$BF/lib/config/uci.sh" /lib/config/uci.sh
install -D -m 0644 "$BF/usr/share/libubox/jshn.sh" /usr/share/libubox/jshn.sh
# %PATH% is substituted by OpenWrt's base-files Makefile when it builds the image
sed "s#%PATH%#$PATH#" "$BF/sbin/hotplug-call" >/sbin/hotplug-call
chmod 0755 /sbin/hotplug-call
# the userland's programs in /bin and /sbin both (a router has uci in /sbin,
# ubus in /bin, and scripts call them by absolute path), never over a host program
for f in "$PREFIX"/bin/* "$PREFIX"/sbin/*; do
	for d in /usr/bin /usr/sbin; do
		[ -e "$d/${f##*/}" ] || ln -s "$f" "$d/${f##*/}"
	done
done
ln -sf "$PREFIX/lib/libsetlbf.so" /lib/libsetlbf.so
# OpenWrt's /bin/sh is busybox ash (rc.common and procd.sh rely on it)
ln -sf "$BUSYBOX" /usr/bin/sh
# the router's python3: an interpreter with the packages' python3-* libraries
rm -f /usr/bin/python3
printf '#!/bin/sh\nexec %s "$@"\n' "$PYTHON" >/usr/bin/python3
chmod 0755 /usr/bin/python3

# as on a router: the hotplug directories netifd and procd's hotplug use
mkdir -p /etc/opkg /etc/rc.d /etc/config /etc/hotplug.d/iface /etc/hotplug.d/usb /usr/lib/opkg/info /var/run/opkg
# Debian's own init scripts are no router's: an empty /etc/init.d
rm -rf /etc/init.d && mkdir /etc/init.d
cat >/etc/opkg.conf <<'EOF'
dest root /
lists_dir ext /var/run/opkg/lists
option tmp_dir /var/run/opkg
option overlay_root /overlay
EOF
: >/usr/lib/opkg/status
cat >/etc/config/rpcd <<EOF
config rpcd
	option socket $SOCK
	option timeout 30
EOF

start_bg ubusd ubusd -s "$SOCK"
wait_for 10 test -S "$SOCK" || fail "ubusd did not come up"
start_bg logd logd -S 256
start_bg procd procd -s "$SOCK" -S
# rpcd's ACLs and ucode plugins a test laid out in WORKDIR/rpcd (acl.d/, ucode/)
# stand in for the userland's own share/rpcd
if [ -d "$W/rpcd" ]; then
	mount --bind "$W/rpcd" "$PREFIX/share/rpcd" || fail "bind $W/rpcd"
fi
start_bg rpcd rpcd -s "$SOCK"
for object in log service session; do
	wait_for 10 ubus list "$object" || fail "no '$object' object on ubus"
done

# a web root a test laid out in WORKDIR/www: uhttpd serves it and /ubus on 127.0.0.1:80
if [ -d "$W/www" ]; then
	start_bg uhttpd uhttpd -f -p 127.0.0.1:80 -h "$W/www" -u /ubus -U "$SOCK" -t 30
	wait_for 10 bash -c 'exec 3<>/dev/tcp/127.0.0.1/80' || fail "uhttpd did not come up"
fi
: >"$W/ready"
while :; do
	sleep 3600 &
	wait $!
done
