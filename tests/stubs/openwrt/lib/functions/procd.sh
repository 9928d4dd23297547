#!/bin/sh
# Stand-in for OpenWrt's /lib/functions/procd.sh in the tests: each call is
# appended to $PROCD_LOG (name and arguments separated by \037, one call a
# line) instead of going to procd. Like the real procd_set_param it knows the
# parameter types procd takes and rejects others (recorded as procd_error).

procd_record() {
	{
		printf '%s' "$1"
		shift
		for procd_arg in "$@"; do
			printf '\037%s' "$procd_arg"
		done
		printf '\n'
	} >> "$PROCD_LOG"
}

procd_open_service() { procd_record procd_open_service "$@"; }
procd_close_service() {
	service_triggers
	procd_record procd_close_service "$@"
}
procd_open_instance() { procd_record procd_open_instance "$@"; }
procd_close_instance() { procd_record procd_close_instance "$@"; }
procd_set_param() {
	case "$1" in
		command|respawn|env|data|file|netdev|limits|user|group|pidfile|stdout|stderr|\
		facility|nice|term_timeout|reload_signal|watch|watchdog|error|seccomp|\
		capabilities|no_new_privs|extroot|overlaydir|tmpoverlaysize|vrf)
			procd_record procd_set_param "$@" ;;
		*) procd_record procd_error "unknown parameter type" "$@" ;;
	esac
}
procd_append_param() { procd_record procd_append_param "$@"; }
procd_add_reload_trigger() { procd_record procd_add_reload_trigger "$@"; }
procd_add_interface_trigger() { procd_record procd_add_interface_trigger "$@"; }
procd_add_config_trigger() { procd_record procd_add_config_trigger "$@"; }
procd_add_raw_trigger() { procd_record procd_add_raw_trigger "$@"; }
procd_kill() { procd_record procd_kill "$@"; }
procd_send_signal() {
	# the real one turns a signal name into its number with kill -l, or fails
	if [ -n "$3" ] && ! kill -l "$3" >/dev/null 2>&1; then
		procd_record procd_error "unknown signal" "$@"
		return 1
	fi
	procd_record procd_send_signal "$@"
}
procd_running() {
	procd_record procd_running "$@"
	[ "${PROCD_STUB_RUNNING:-0}" = 1 ]
}
