#!/bin/sh
# Runs the suite under each library set at the same time (one per core),
# each with its own pytest temporary root, then prints every log whole, one
# after the other, and fails if any job failed. The first set runs the
# osmo-remsim event test's 50 rounds in full; the others 15 (that path uses
# the standard library only; REMSIM_EVENT_ROUNDS, see tests/lab/test_event.py).
# The last set runs the router tests, which use OpenWrt's own programs and not
# the set's libraries (REMSIM_ROUTER_TESTS=1, see tests/router.py); the others
# skip them (REMSIM_ROUTER_TESTS=0).
#
# With --lint VENV, a lint job runs beside the suites with VENV's pinned tools
# (requirements-lint.txt): ruff on everything written in Python here (the
# package, the tests, the lab, the benchmarks, the scripts) and mypy on the
# package. Both always run, so one log shows every finding; its log prints
# first (it is short) and its failure fails the run. `make lint` is this job
# alone.
set -u
usage="usage: $0 [--lint VENV] [VENV...] [-- PYTEST_ARGS]"

lint=""
if [ "${1:-}" = "--lint" ]; then
	[ $# -ge 2 ] || { echo "$usage" >&2; exit 2; }
	lint=$2
	shift 2
fi
venvs=""
while [ $# -gt 0 ] && [ "$1" != "--" ]; do venvs="$venvs $1"; shift; done
[ "${1:-}" = "--" ] && shift
[ -n "$lint$venvs" ] || { echo "$usage" >&2; exit 2; }

RUFF_PATHS="remsim_supervisor tests remsim_lab bench scripts"
MYPY_PATHS="remsim_supervisor"

logdir=$(mktemp -d)
lint_pid=""
pids=""
jobs=0

if [ -n "$lint" ]; then
	(
		status=0
		echo "-- $("$lint/bin/ruff" --version) check $RUFF_PATHS"
		# shellcheck disable=SC2086 # the paths are words
		# At the lowest priority: the suites' timing tests (an event script
		# returning within a second, say) must not share their cores with it.
		nice -n 19 "$lint/bin/ruff" check $RUFF_PATHS || status=1
		echo "-- $("$lint/bin/mypy" --version) $MYPY_PATHS"
		# shellcheck disable=SC2086 # the paths are words
		nice -n 19 "$lint/bin/mypy" $MYPY_PATHS || status=1
		exit $status
	) >"$logdir/lint.log" 2>&1 &
	lint_pid=$!
	jobs=1
fi

rounds=50
last=""
for venv in $venvs; do last=$venv; done
for venv in $venvs; do
	name=$(basename "$venv")
	router=0
	[ "$venv" = "$last" ] && router=1
	# --tb=native: CPython 3.11.7's AST constructor can fail with a false
	# "recursion depth mismatch" when pytest parses a test file to draw a
	# failure, which ends the whole session; Python's own traceback needs no AST.
	# With no tests named, the last set takes the layers in another order, so
	# the two sets' bursts of event processes (tests/lab/test_event.py, each
	# event held to a second) do not fall on the same two cores at once.
	order=""
	[ "$router" = 1 ] && [ $# -eq 0 ] && order="tests/packaging tests/unit tests/adapters tests/lab"
	# shellcheck disable=SC2086 # the layers are words
	REMSIM_EVENT_ROUNDS=$rounds REMSIM_ROUTER_TESTS=$router "$venv/bin/python" -m pytest \
		-p no:cacheprovider --tb=native \
		--basetemp="$logdir/tmp-$name" $order "$@" >"$logdir/$name.log" 2>&1 &
	pids="$pids $!:$name"
	jobs=$((jobs + 1))
	rounds=15
done

status=0
summary=""
if [ -n "$lint_pid" ]; then
	if wait "$lint_pid"; then result=passed; else result=failed; status=1; fi
	echo "== lint: $result"
	cat "$logdir/lint.log"
	summary="lint $result"
fi
for entry in $pids; do
	pid=${entry%%:*}
	name=${entry#*:}
	if wait "$pid"; then result=passed; else result=failed; status=1; fi
	echo "== suite with the $name libraries: $result"
	cat "$logdir/$name.log"
	summary="$summary${summary:+, }$name $result"
done
# Every job's result again where the logs end, since the first logs are long.
[ "$jobs" -le 1 ] || echo "== $summary"
rm -rf "$logdir"
exit $status
