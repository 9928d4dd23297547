#!/bin/sh
# Runs the suite under each library set at the same time (one per core),
# each with its own pytest temporary root, then prints both logs whole, one
# after the other, and fails if either failed. The first set runs the
# osmo-remsim event test's 50 rounds in full; the others 15 (that path uses
# the standard library only; REMSIM_EVENT_ROUNDS, see tests/lab/test_event.py).
# The last set runs the router tests, which use OpenWrt's own programs and not
# the set's libraries (REMSIM_ROUTER_TESTS=1, see tests/router.py); the others
# skip them (REMSIM_ROUTER_TESTS=0).
set -u
[ $# -ge 1 ] || { echo "usage: $0 VENV [VENV...] [-- PYTEST_ARGS]" >&2; exit 2; }

venvs=""
while [ $# -gt 0 ] && [ "$1" != "--" ]; do venvs="$venvs $1"; shift; done
[ "${1:-}" = "--" ] && shift

logdir=$(mktemp -d)
pids=""
rounds=50
last=""
for venv in $venvs; do last=$venv; done
for venv in $venvs; do
	name=$(basename "$venv")
	router=0
	[ "$venv" = "$last" ] && router=1
	REMSIM_EVENT_ROUNDS=$rounds REMSIM_ROUTER_TESTS=$router "$venv/bin/python" -m pytest \
		-p no:cacheprovider \
		--basetemp="$logdir/tmp-$name" "$@" >"$logdir/$name.log" 2>&1 &
	pids="$pids $!:$name"
	rounds=15
done

status=0
for entry in $pids; do
	pid=${entry%%:*}
	name=${entry#*:}
	if wait "$pid"; then result=passed; else result=failed; status=1; fi
	echo "== suite with the $name libraries: $result"
	cat "$logdir/$name.log"
done
rm -rf "$logdir"
exit $status
