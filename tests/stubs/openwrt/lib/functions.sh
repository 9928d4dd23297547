#!/bin/sh
# Stand-in for OpenWrt's /lib/functions.sh in the tests: the UCI helpers an
# init script uses, reading ${UCI_CONFIG_DIR:-/etc/config}/PACKAGE with a tiny
# parser (config, option, list; '...' and "..." quoting; no escapes) instead
# of /sbin/uci. Values live in CONFIG_<section>_<option> like the real ones.

config_load() {
	CONFIG_SECTIONS=
	cfg_count=0
	cfg_section=
	cfg_file="${UCI_CONFIG_DIR:-/etc/config}/$1"
	[ -f "$cfg_file" ] || return 1
	while read -r cfg_kw cfg_name cfg_value; do
		cfg_name=$(cfg_unquote "$cfg_name")
		cfg_value=$(cfg_unquote "$cfg_value")
		case "$cfg_kw" in
			config)
				cfg_count=$((cfg_count + 1))
				cfg_section=${cfg_value:-cfg$cfg_count}
				CONFIG_SECTIONS="$CONFIG_SECTIONS $cfg_section"
				eval "CONFIG_${cfg_section}_TYPE=\$cfg_name"
				;;
			option|list)
				[ -n "$cfg_section" ] && eval "CONFIG_${cfg_section}_${cfg_name}=\$cfg_value"
				;;
		esac
	done < "$cfg_file"
	return 0
}

cfg_unquote() {
	cfg_v=$1
	case "$cfg_v" in
		\'*\') cfg_v=${cfg_v#\'}; cfg_v=${cfg_v%\'} ;;
		\"*\") cfg_v=${cfg_v#\"}; cfg_v=${cfg_v%\"} ;;
	esac
	printf '%s' "$cfg_v"
}

# config_get VAR SECTION OPTION [DEFAULT]: an empty or absent option gives DEFAULT.
config_get() {
	eval "$1=\${CONFIG_${2}_${3}:-\$4}"
}

# config_get_bool VAR SECTION OPTION [DEFAULT]: 1 or 0, DEFAULT for anything else.
config_get_bool() {
	config_get cfg_bool "$2" "$3" "$4"
	case "$cfg_bool" in
		1|on|true|yes|enabled) cfg_bool=1 ;;
		0|off|false|no|disabled) cfg_bool=0 ;;
		*) cfg_bool=$4 ;;
	esac
	eval "$1=\$cfg_bool"
}

# config_foreach FUNCTION [TYPE [ARGS...]]: FUNCTION SECTION ARGS for each section of TYPE.
config_foreach() {
	cfg_function=$1
	cfg_type=$2
	shift
	[ $# -gt 0 ] && shift
	for cfg_each in $CONFIG_SECTIONS; do
		cfg_each_type=
		eval "cfg_each_type=\${CONFIG_${cfg_each}_TYPE}"
		[ -z "$cfg_type" ] || [ "$cfg_each_type" = "$cfg_type" ] || continue
		"$cfg_function" "$cfg_each" "$@"
	done
}
