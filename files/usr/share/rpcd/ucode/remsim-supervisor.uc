// remsim-supervisor on ubus: the rpcd ucode plugin behind
// `ubus call remsim-supervisor ...` and the LuCI app.
//
//   status           the daemon's status file as it is (no Python started);
//                    when the file is missing, stale or unreadable, an answer
//                    that says so ({ "running": false, "error": ... })
//   test_heartbeat   { via: iot|primary|NAME, count: 1-5 }
//                    remsim-supervisor test-heartbeat --via VIA --count N --json
//   reset            { modem: NAME, level: ifup|radio_cycle|soft_reset|
//                      usb_reauth|gpio_reset|power_cycle }
//                    remsim-supervisor modem NAME reset --level LEVEL --timeout 15
//
// The two commands run without blocking rpcd: the reply is deferred until the
// command ends, its output is captured in unlinked temporary files, and the
// arguments reach it as an argv array (the one shell involved runs a fixed
// script that only redirects). A command that has not ended after
// DEADLINE_MS is answered as such (it goes on; its outcome is in the log),
// so the caller gets an answer before LuCI's RPC timeout (20 s) and the
// ubus CLI's (30 s). Access is the ACL's business
// (/usr/share/rpcd/acl.d/luci-app-remsim-supervisor.json).

'use strict';

import { stat, open, mkstemp } from 'fs';
import * as uloop from 'uloop';

const CLI = '/usr/bin/remsim-supervisor';
const STATE_DIR = getenv('REMSIM_SUPERVISOR_STATE_DIR') || '/var/run/remsim-supervisor';
const STATUS_FILE = STATE_DIR + '/status.json';
const STALE_AFTER_S = 30;       // the daemon rewrites the file every 20 s at least
const STATUS_MAX_BYTES = 1048576;
const OUTPUT_MAX_BYTES = 65536;
const RESET_TIMEOUT_S = 15;     // the CLI's --timeout: below DEADLINE_MS
// 18 s; REMSIM_SUPERVISOR_RPC_DEADLINE_MS in rpcd's environment (tests) sets it
// from 100 ms to 25 s
const DEADLINE_MS = min(max(+(getenv('REMSIM_SUPERVISOR_RPC_DEADLINE_MS') ?? 18000) || 18000, 100), 25000);
const MAX_RUNNING = 4;
const MAX_COUNT = 5;
const LEVELS = [ 'ifup', 'radio_cycle', 'soft_reset', 'usb_reauth', 'gpio_reset', 'power_cycle' ];
const NAME = regexp('^[A-Za-z0-9_]{1,32}$');   // a UCI section name; never an option
// fixed: redirects stdout/stderr to the inherited descriptors $1 and $2, then
// runs the argv that follows; nothing from the request is ever parsed by it
const RUN_SCRIPT = 'o=$1; e=$2; shift 2; exec "$@" >&"$o" 2>&"$e"';

let running = 0;

function env() {
	let e = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C' };
	for (let name in [ 'REMSIM_SUPERVISOR_CONFIG', 'REMSIM_SUPERVISOR_STATE_DIR' ])
		if (getenv(name))
			e[name] = getenv(name);
	return e;
}

function read_all(file) {
	file.seek(0);
	let text = file.read(OUTPUT_MAX_BYTES) ?? '';
	file.close();
	return text;
}

// The last meaningful line of a command's error output, without the program prefix.
function error_line(text) {
	let lines = filter(map(split(text ?? '', '\n'), (l) => trim(l)), (l) => length(l));
	if (!length(lines))
		return null;
	let line = lines[length(lines) - 1];
	return replace(line, regexp('^remsim-supervisor: '), '');
}

function invalid(request, message) {
	request.reply({ ok: false, error: message }, 2 /* UBUS_STATUS_INVALID_ARGUMENT */);
	return null;
}

// Runs the CLI with `args`; `done(code, stdout, stderr)` builds the reply.
function run_cli(request, args, done) {
	if (running >= MAX_RUNNING)
		return { ok: false, error: `busy: ${running} commands are still running` };

	let out = mkstemp('/tmp/remsim-supervisor-rpcd-XXXXXX');
	let err = mkstemp('/tmp/remsim-supervisor-rpcd-XXXXXX');
	if (!out || !err) {
		out?.close();
		err?.close();
		return { ok: false, error: 'cannot create a temporary file in /tmp' };
	}

	let replied = false;
	let timer = null;
	let argv = [ '-c', RUN_SCRIPT, 'sh', '' + out.fileno(), '' + err.fileno(), CLI, ...args ];
	let proc = uloop.process('/bin/sh', argv, env(), (code) => {
		running--;
		timer?.cancel();
		let stdout = read_all(out), stderr = read_all(err);
		if (replied)
			return;
		replied = true;
		request.reply(done(code, stdout, stderr));
	});

	if (!proc) {
		out.close();
		err.close();
		return { ok: false, error: `cannot start ${CLI}` };
	}

	running++;
	timer = uloop.timer(DEADLINE_MS, () => {
		if (replied)
			return;
		replied = true;
		request.reply({
			ok: false,
			running: true,
			error: `no answer within ${DEADLINE_MS / 1000.0} s; the command goes on, its outcome is in the log (logread -e remsim-supervisor)`
		});
	});

	return request.defer();
}

function status_reply() {
	let st = stat(STATUS_FILE);
	if (!st)
		return { running: false, error: `remsim-supervisor is not running (no ${STATUS_FILE})` };

	let age = time() - st.mtime;
	if (st.size > STATUS_MAX_BYTES)
		return { running: false, error: `${STATUS_FILE} is too large (${st.size} bytes)` };

	let f = open(STATUS_FILE, 'r');
	let text = f ? f.read(STATUS_MAX_BYTES) : null;
	f?.close();
	let data = null;
	try {
		data = json(text ?? '');
	}
	catch (e) {
		data = null;
	}
	if (type(data) != 'object')
		return { running: false, error: `${STATUS_FILE} is not a status (unreadable or garbled)` };

	if (age > STALE_AFTER_S)
		return {
			running: false,
			stale: true,
			age_s: age,
			error: `the status is ${age} s old: remsim-supervisor has stopped updating it (not running?)`,
			last: data
		};

	return data;
}

return {
	'remsim-supervisor': {
		status: {
			call: function() {
				return status_reply();
			}
		},

		test_heartbeat: {
			args: { via: 'iot', count: 1 },
			call: function(request) {
				let via = request.args.via ?? 'iot';
				let count = request.args.count ?? 1;
				if (!match(via, NAME))
					return invalid(request, `via must be iot, primary or a modem name (letters, digits, _), not '${via}'`);
				if (type(count) != 'int' || count < 1 || count > MAX_COUNT)
					return invalid(request, `count must be a whole number from 1 to ${MAX_COUNT}, not ${count}`);

				return run_cli(request,
					[ 'test-heartbeat', '--via', via, '--count', '' + count, '--json' ],
					(code, stdout, stderr) => {
						let result = null;
						try { result = json(stdout); } catch (e) { result = null; }
						let reply = { ok: code == 0, exit_code: code };
						if (type(result) == 'object')
							reply.result = result;
						if (code != 0)
							reply.error = error_line(stderr) ??
								(type(result) == 'object' ? 'not every heartbeat was acknowledged'
								                          : `test-heartbeat exited with ${code}`);
						return reply;
					});
			}
		},

		reset: {
			args: { modem: 'modem1', level: 'soft_reset' },
			call: function(request) {
				let modem = request.args.modem;
				let level = request.args.level ?? 'soft_reset';
				if (!match(modem ?? '', NAME))
					return invalid(request, `modem must be a modem's section name (letters, digits, _), not '${modem ?? ''}'`);
				if (!(level in LEVELS))
					return invalid(request, `level must be one of ${join(', ', LEVELS)}, not '${level}'`);

				return run_cli(request,
					[ 'modem', modem, 'reset', '--level', level, '--timeout', '' + RESET_TIMEOUT_S ],
					(code, stdout, stderr) => {
						let reply = { ok: code == 0, exit_code: code, modem: modem, level: level };
						if (code == 0)
							reply.message = error_line(stdout) ?? `${modem}: ${level} done`;
						else
							reply.error = error_line(stderr) ?? `reset exited with ${code}`;
						return reply;
					});
			}
		}
	}
};
