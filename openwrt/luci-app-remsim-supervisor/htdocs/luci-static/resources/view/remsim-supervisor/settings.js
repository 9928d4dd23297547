'use strict';
'require view';
'require form';
'require uci';

/*
 * /etc/config/remsim-supervisor as a form. Each option shown is checked as
 * `remsim-supervisor check-config` checks it (remsim_supervisor/config.py),
 * with the same wording, so that what the form accepts the daemon accepts.
 * An empty field means the option's default.
 */

var CONFIG = 'remsim-supervisor';
var MODELS = [ 'auto', 'ec25', 'fm350gl', 'l850gl', 'mc7455', 'me909s', 'generic' ];
var RUNGS = [ 'reroute', 'ifup', 'radio_cycle', 'soft_reset', 'usb_reauth', 'gpio_reset', 'power_cycle' ];
var GPIO_HINT = 'write gpiochipN:OFFSET (gpiochip0:21), a line name (5g2), sysfs:NUMBER or sim:NAME';

/* Python's repr() of a string, as check-config quotes values. */
function repr(s) {
	return (s.indexOf("'") >= 0 && s.indexOf('"') < 0) ? '"' + s + '"' : "'" + s.replace(/'/g, "\\'") + "'";
}

function unset(value) {
	return value == null || String(value).trim() === '';
}

function integer(low, high, unit) {
	var units = unit ? ' ' + unit : '';
	return function(text) {
		if (!/^-?[0-9]+$/.test(text))
			return 'must be a whole number' + (unit ? ' of ' + unit : '') + ', not ' + repr(text);
		var n = parseInt(text, 10);
		if (low != null && high != null && (n < low || n > high))
			return 'must be between %d and %d%s, not %d'.format(low, high, units, n);
		if (low != null && n < low)
			return (low == 1 && unit) ? 'must be more than 0 %s, not %d'.format(unit, n)
				: 'must be at least %d%s, not %d'.format(low, units, n);
		return true;
	};
}

function positive(unit) {
	return function(text) {
		if (!/^-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)$/.test(text))
			return 'must be a number of %s, not %s'.format(unit, repr(text));
		if (parseFloat(text) <= 0)
			return 'must be more than 0 %s, not %s'.format(unit, text);
		return true;
	};
}

function url(text) {
	var example = "as in 'http://ionmesh.example.com:5000'";
	if (/\s/.test(text))
		return 'must not contain spaces, ' + example;
	var m = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/([^\/?#]*)([^?#]*)(\?[^#]*)?(#.*)?$/.exec(text);
	if (!m || (m[1] != 'http' && m[1] != 'https'))
		return 'must start with http:// or https://, %s, not %s'.format(example, repr(text));
	var netloc = m[2], at = netloc.lastIndexOf('@');
	if (at >= 0)
		return 'must not hold credentials: put the key in option api_key';
	var hp = /^(\[[^\]]*\]|[^:]*)(?::(.*))?$/.exec(netloc), host = hp[1], port = hp[2];
	if (port !== undefined && port !== '' && !/^[0-9]+$/.test(port))
		return 'is not a valid URL (Port could not be cast to integer value as %s): write it %s'.format(repr(port), example);
	if (port !== undefined && port !== '' && parseInt(port, 10) > 65535)
		return 'is not a valid URL (Port out of range 0-65535): write it ' + example;
	if (!host || host == '[]')
		return 'has no host: write it ' + example;
	if (m[4] || m[5])
		return 'must not have a ?query or #fragment: write the base URL, ' + example;
	if (port !== undefined && port !== '' && parseInt(port, 10) == 0)
		return 'has port 0: use the server\'s port, ' + example;
	return true;
}

function webhook(text) {
	var example = "as in 'https://hooks.example.net/remsim'";
	var m = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/([^\/?#]*)/.exec(text), host = '';
	if (m) {
		var netloc = m[2].substring(m[2].lastIndexOf('@') + 1);
		var hp = /^(\[[^\]]*\]|[^:]*)(?::(.*))?$/.exec(netloc), port = hp ? hp[2] : undefined;
		if (port !== undefined && port !== '' && !/^[0-9]+$/.test(port))
			return 'is not a valid URL (Port could not be cast to integer value as %s): write it %s'.format(repr(port), example);
		if (port !== undefined && port !== '' && parseInt(port, 10) > 65535)
			return 'is not a valid URL (Port out of range 0-65535): write it ' + example;
		host = hp ? hp[1] : '';
	}
	var scheme = m ? m[1].toLowerCase() : '';
	if ((scheme != 'http' && scheme != 'https') || !host || host == '[]' || /\s/.test(text))
		return 'must be an http:// or https:// URL with a host, ' + example;
	return true;
}

function text(value) {
	return /[\x00-\x1f\x7f]/.test(value) ? 'must not contain control characters' : true;
}

function secret(value) {
	return /[\s\x00-\x1f\x7f]/.test(value) ? 'must not contain spaces or control characters (value not shown)' : true;
}

function absolutePath(example) {
	return function(value) {
		return (value.charAt(0) != '/' || /\s/.test(value))
			? 'must be an absolute path such as %s, not %s'.format(example, repr(value)) : true;
	};
}

function atPort(value) {
	if (value.toLowerCase() == 'auto')
		return true;
	return (value.charAt(0) != '/' || /\s/.test(value))
		? 'must be an absolute path such as /dev/ttyUSB2, or auto, not ' + repr(value) : true;
}

function usbPath(value) {
	return /^[0-9]+-[0-9]+(?:\.[0-9]+)*$/.test(value) ? true
		: "must be a USB device path such as '1-1' or '1-1.2' (a name under /sys/bus/usb/devices), not " + repr(value);
}

function usbId(value) {
	return /^[0-9a-fA-F]{4}:[0-9a-fA-F]{4}$/.test(value) ? true
		: "must be VID:PID in hex, such as '2c7c:0125', not " + repr(value);
}

function netifdInterface(value) {
	return /^[A-Za-z0-9_]+$/.test(value) ? true
		: 'must be a netifd interface name (a section name in /etc/config/network: letters, digits and _), not ' + repr(value);
}

function device(value) {
	return (/^[^\s\/:]{1,15}$/.test(value) && value != '.' && value != '..') ? true
		: "must be a Linux network device name (at most 15 characters, no spaces, '/' or ':'), such as 'wwan0', not " + repr(value);
}

function gpioNumber(digits, value) {
	var n = parseInt(digits, 10);
	return n > 65535 ? 'GPIO number %d is too large (at most 65535) in %s'.format(n, repr(value)) : true;
}

function gpio(value) {
	var t = value.trim(), m;
	if ((m = /^(?:\/dev\/)?(gpiochip[0-9]+):([0-9]+)$/.exec(t)) || (m = /^(\/dev\/[^\s:]+):([0-9]+)$/.exec(t)))
		return gpioNumber(m[2], value);
	if (t.indexOf('sysfs:') == 0) {
		var number = t.substr(6);
		return /^[0-9]+$/.test(number) ? gpioNumber(number, value)
			: 'sysfs needs a GPIO number, as in sysfs:21, not ' + repr(value);
	}
	if (t.indexOf('sim:') == 0)
		return /^[A-Za-z0-9_.-]+$/.test(t.substr(4)) ? true
			: 'sim needs a line name, as in sim:modem1-sim, not ' + repr(value);
	if (/^[0-9]+$/.test(t))
		return 'a bare number is ambiguous: write sysfs:%s for a legacy sysfs GPIO number or gpiochipN:%s for a line of a chip'.format(t, t);
	if (t.indexOf(':') < 0 && /^[A-Za-z0-9_.-]+$/.test(t))
		return true;
	return GPIO_HINT + ', not ' + repr(value);
}

function table(value) {
	var r = integer(1, 4294967295)(value);
	if (r !== true)
		return r;
	var n = parseInt(value, 10);
	if (n == 253 || n == 254 || n == 255)
		return 'must not be %d: 253, 254 and 255 are the kernel\'s default, main and local tables; use a table of the supervisor\'s own, such as 240'.format(n);
	if (n >= 1 && n <= 60)
		return 'must not be %d: mwan3 numbers its interface tables 1-60; use one outside, such as 240'.format(n);
	return true;
}

function priority(value) {
	if (/^[0-9]+$/.test(value) && [ 0, 32766, 32767 ].indexOf(parseInt(value, 10)) >= 0)
		return 'must not be %d: 0, 32766 and 32767 are the kernel\'s local, main and default rules; use one such as 90'.format(parseInt(value, 10));
	var r = integer(1, 32765)(value);
	if (r !== true)
		return r;
	var n = parseInt(value, 10);
	if (n >= 1001 && n <= 3062)
		return 'must not be %d: mwan3 owns rule preferences 1001-3062 and deletes them when it stops; use one below 1001, such as 90'.format(n);
	if (n == 10000 || n == 20000)
		return 'must not be %d: netifd puts its source rules there; use one such as 90'.format(n);
	return true;
}

function mark(value) {
	var n = /^0[xX][0-9a-fA-F]+$/.test(value) ? parseInt(value, 16)
		: /^0[oO][0-7]+$/.test(value) ? parseInt(value.substr(2), 8)
		: /^0[bB][01]+$/.test(value) ? parseInt(value.substr(2), 2)
		: /^(?:0|[1-9][0-9]*)$/.test(value) ? parseInt(value, 10) : NaN;
	if (isNaN(n))
		return 'must be a firewall mark such as 0x10000000, not ' + repr(value);
	if (!(n > 0 && n <= 0xFFFFFFFF))
		return 'must be from 0x1 to 0xffffffff, not ' + repr(value);
	if (n & 0x3F00)
		return 'must not use the bits 0x3f00: mwan3 marks its traffic with them; use one such as 0x10000000, not ' + repr(value);
	return true;
}

function ip4(value) {
	return /^(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])$/.test(value);
}

function ip6(value) {
	var halves = value.split('::');
	if (halves.length > 2)
		return false;
	var groups = function(part) {
		if (part === '')
			return [];
		var g = part.split(':');
		if (g.length && ip4(g[g.length - 1]))
			g.splice(g.length - 1, 1, '0', '0');
		return g;
	};
	var head = groups(halves[0]), tail = halves.length == 2 ? groups(halves[1]) : [],
	    all = head.concat(tail);
	if (!all.every(function(g) { return /^[0-9a-fA-F]{1,4}$/.test(g); }))
		return false;
	return halves.length == 2 ? all.length < 8 : all.length == 8;
}

function pin(value) {
	if (ip4(value) || ip6(value))
		return true;
	if (value.indexOf('/') >= 0)
		return 'must be a host name or one address, not a network (%s)'.format(repr(value));
	var name = value.replace(/\.$/, ''), labels = name.split('.');
	var ok = name.length <= 253 && labels.every(function(l) {
		return /^(?!-)[A-Za-z0-9_-]{1,63}$/.test(l) && !/-$/.test(l);
	}) && !/^[0-9]+$/.test(labels[labels.length - 1]);
	if (ok)
		return true;
	return 'must be a host name or an IP address%s, not %s'.format(value.indexOf(':') >= 0 ? ' (without a port)' : '', repr(value));
}

function stepCost(value) {
	var eq = value.indexOf('='), head = eq >= 0 ? value.substr(0, eq) : value,
	    seconds = eq >= 0 ? value.substr(eq + 1) : '',
	    colon = head.lastIndexOf(':'),
	    model = colon >= 0 ? head.substr(0, colon).trim().toLowerCase() : '*',
	    rung = (colon >= 0 ? head.substr(colon + 1) : head).trim();
	if (eq < 0 || RUNGS.indexOf(rung) < 0 || (model != '*' && MODELS.indexOf(model) < 0))
		return 'must be RUNG=SECONDS or MODEL:RUNG=SECONDS with a rung among %s, not %s'.format(RUNGS.join(', '), repr(value));
	var v = Number(seconds.trim());
	if (seconds.trim() === '' || isNaN(v))
		return 'the seconds in %s are not a number'.format(repr(value));
	if (!(v > 0 && v <= 3600))
		return 'the seconds in %s must be above 0 and at most 3600'.format(repr(value));
	return true;
}

/* An option's check as LuCI calls it: empty is the default; lists are
 * checked word by word as the daemon splits them. */
function check(fn, required) {
	return function(section_id, value) {
		if (unset(value))
			return required || true;
		var words = Array.isArray(value) ? value : [ String(value).trim() ];
		for (var i = 0; i < words.length; i++) {
			var r = fn.call(this, words[i], section_id);
			if (r !== true)
				return r;
		}
		return true;
	};
}

function listCheck(fn) {
	return function(section_id, value) {
		if (unset(value))
			return true;
		var words = String(value).split(/\s+/).filter(function(w) { return w.length; });
		for (var i = 0; i < words.length; i++) {
			var r = fn(words[i]);
			if (r !== true)
				return r;
		}
		return true;
	};
}

/* The grace period as the form holds it now (its default when unset). */
function graceNow(map) {
	var sid = (uci.sections(CONFIG, 'supervisor')[0] || {})['.name'],
	    found = sid ? map.lookupOption('grace_period', sid) : null,
	    v = found ? found[0].formvalue(found[1]) : null;
	return (!unset(v) && /^[0-9]+$/.test(String(v).trim())) ? parseInt(v, 10) : 300;
}

function shorterThanGrace(checkFirst) {
	return function(value, section_id) {
		var r = checkFirst(value);
		if (r !== true)
			return r;
		var grace = graceNow(this.map), n = parseInt(value, 10);
		return n < grace ? true
			: 'must be shorter than supervisor.grace_period (%d s), not %d s'.format(grace, n);
	};
}

return view.extend({
	load: function() {
		return uci.load(CONFIG);
	},

	render: function() {
		var m, s, o;

		m = new form.Map(CONFIG, _('Remote SIM supervisor'),
			_('Settings of remsim-supervisor (/etc/config/remsim-supervisor), checked as <code>remsim-supervisor check-config</code> checks them. An empty field keeps the default. The daemon re-reads the file on apply and keeps running on the old one if the new one is broken.'));

		s = m.section(form.TypedSection, 'supervisor', _('Supervisor'));
		s.anonymous = true;
		s.addremove = false;

		o = s.option(form.Flag, 'enabled', _('Enabled'));
		o.default = '1';
		o.rmempty = false;

		o = s.option(form.Value, 'grace_period', _('Grace period'), _('Seconds IonMesh tolerates without an acknowledged heartbeat (default 300).'));
		o.placeholder = '300';
		o.validate = check(integer(1, null, 'seconds'));

		o = s.option(form.ListValue, 'log_level', _('Log level'));
		o.value('', _('default (info)'));
		o.value('debug'); o.value('info'); o.value('warning'); o.value('error');

		o = s.option(form.Value, 'data_budget_mb', _('Data plan of the IoT SIM (MB/month)'), _('Warns when the heartbeat\'s projected monthly data exceeds it. Empty: none.'));
		o.validate = check(positive('megabytes'));

		o = s.option(form.Flag, 'metrics', _('Prometheus metrics'), _('Keep a metrics file for the node exporter\'s textfile collector.'));
		o.default = '1';

		o = s.option(form.Value, 'metrics_file', _('Metrics file'), _('Default: /var/prometheus/remsim_supervisor.prom.'));
		o.placeholder = '/var/prometheus/remsim_supervisor.prom';
		o.validate = check(absolutePath('/var/prometheus/remsim_supervisor.prom'));
		o.depends('metrics', '1');

		s = m.section(form.TypedSection, 'ionmesh', _('IonMesh'));
		s.anonymous = true;
		s.addremove = false;

		o = s.option(form.Value, 'url', _('URL'), _('http:// or https://, with the port.'));
		o.placeholder = 'http://ionmesh.example.com:5000';
		o.validate = check(url, "required: add option url 'http://HOST:5000'");

		o = s.option(form.Value, 'client_id', _('Client ID'), _('Default: the router\'s hostname.'));
		o.validate = check(text);

		o = s.option(form.Value, 'tenant_id', _('Tenant ID'));
		o.placeholder = '1';
		o.validate = check(integer(1));

		/* an empty choice keeps an unset option unset (a saved form writes no defaults) */
		o = s.option(form.ListValue, 'mapping_mode', _('Mapping mode'));
		o.value('', _('default (ONE_TO_ONE_SWSIM)'));
		o.value('ONE_TO_ONE_SWSIM'); o.value('ONE_TO_ONE_VSIM'); o.value('KI_PROXY_SWSIM');

		o = s.option(form.Value, 'mcc_mnc', _('MCC/MNC'), _('Required with KI_PROXY_SWSIM: the SIM carrier\'s MCC and MNC.'));
		o.validate = function(section_id, value) {
			if (unset(value)) {
				var mode = this.section.formvalue(section_id, 'mapping_mode');
				return (mode == 'KI_PROXY_SWSIM')
					? 'required with mapping_mode KI_PROXY_SWSIM: the MCC and MNC of the SIM\'s carrier, as in \'26201\'' : true;
			}
			return /^[0-9]{5,6}$/.test(value.trim()) ? true
				: "must be 5 or 6 digits (MCC and MNC, as in '26201'), not " + repr(value.trim());
		};

		o = s.option(form.Value, 'api_key', _('API key'), _('Never logged in full.'));
		o.password = true;
		o.validate = check(secret);

		o = s.option(form.Value, 'heartbeat_interval', _('Heartbeat interval'), _('Seconds between heartbeats until the server says otherwise (default 60).'));
		o.placeholder = '60';
		o.validate = check(shorterThanGrace(integer(10, 3600, 'seconds')));

		o = s.option(form.Value, 'min_heartbeat_interval', _('Shortest interval'), _('The shortest interval taken from the server (default 10).'));
		o.placeholder = '10';
		o.validate = check(integer(1, 3600, 'seconds'));

		o = s.option(form.Value, 'timeout', _('Request timeout'), _('Seconds per request (default 10).'));
		o.placeholder = '10';
		o.validate = check(positive('seconds'));

		o = s.option(form.Value, 'ca_file', _('CA bundle'), _('For https. Default: the system store.'));
		o.validate = check(absolutePath('/etc/ssl/certs/ca-certificates.crt'));

		s = m.section(form.TypedSection, 'modem', _('Modems'), _('A role and a way to find the modem (USB path or USB ID) are required.'));
		s.anonymous = false;
		s.addremove = true;

		o = s.option(form.ListValue, 'role', _('Role'), _('primary: on the remote SIM; iot: the local IoT SIM, carries the heartbeat.'));
		o.value('primary'); o.value('iot');
		o.rmempty = false;
		o.validate = function(section_id, value) {
			var taken = this.section.cfgsections().filter(function(other) {
				return other != section_id && this.section.formvalue(other, 'role') == value;
			}, this);
			return taken.length ? 'role %s is already %s\'s: each role belongs to one modem'.format(repr(value), taken[0]) : true;
		};

		o = s.option(form.ListValue, 'model', _('Model'));
		o.value('', _('default (auto)'));
		MODELS.forEach(function(name) { o.value(name); });

		o = s.option(form.Value, 'usb_path', _('USB path'), _('As in /sys/bus/usb/devices, such as 1-1.'));
		o.validate = check(usbPath);

		o = s.option(form.Value, 'usb_id', _('USB ID'), _('VID:PID, such as 2c7c:0125.'));
		o.validate = check(function(value, section_id) {
			return usbId(value);
		});

		o = s.option(form.Value, 'at_port', _('AT port'), _('A tty overriding the discovery. Default: auto.'));
		o.placeholder = 'auto';
		o.validate = check(atPort);

		o = s.option(form.Value, 'interface', _('Interface'), _('netifd\'s logical interface.'));
		o.validate = check(netifdInterface);

		o = s.option(form.Value, 'device', _('Network device'), _('Default: netifd\'s l3_device, else the interface.'));
		o.validate = check(device);

		[ [ 'sim_gpio', _('SIM select GPIO') ], [ 'reset_gpio', _('Reset GPIO') ], [ 'power_gpio', _('Power GPIO') ] ].forEach(function(g) {
			o = s.option(form.Value, g[0], g[1], _('CHIP:OFFSET, a line name, or sysfs:N.'));
			o.validate = check(gpio);
		});

		o = s.option(form.Value, 'reset_pulse_ms', _('Reset pulse (ms)'), _('Default: the model\'s own.'));
		o.validate = check(integer(1, 10000, 'milliseconds'));

		s = m.section(form.TypedSection, 'routing', _('Heartbeat routing'));
		s.anonymous = true;
		s.addremove = false;

		o = s.option(form.Value, 'table', _('Routing table'), _('Clear of main/local (253-255) and mwan3 (1-60). Default 240.'));
		o.placeholder = '240';
		o.validate = check(table);

		o = s.option(form.Value, 'priority', _('Rule preference'), _('Clear of mwan3 (1001-3062) and netifd (10000, 20000). Default 90.'));
		o.placeholder = '90';
		o.validate = check(priority);

		o = s.option(form.DynamicList, 'pin', _('More pinned hosts'), _('IonMesh, remsim-server and bankd are pinned anyway.'));
		o.validate = listCheck(pin);

		o = s.option(form.Value, 'failback_after', _('Fail back after'), _('Good heartbeats over the IoT modem before the path moves back (default 3).'));
		o.placeholder = '3';
		o.validate = check(integer(1, null, 'heartbeats'));

		o = s.option(form.Value, 'mark', _('Firewall mark'), _('On the supervisor\'s own packets; clear of mwan3\'s bits 0x3f00. Default 0x10000000.'));
		o.placeholder = '0x10000000';
		o.validate = check(mark);

		o = s.option(form.Value, 'resolve_interval', _('Resolve interval'), _('Seconds between lookups of the pinned names (default 300).'));
		o.placeholder = '300';
		o.validate = check(integer(30, 86400, 'seconds'));

		s = m.section(form.TypedSection, 'escalation', _('Recovery'));
		s.anonymous = true;
		s.addremove = false;

		o = s.option(form.Flag, 'enabled', _('Recover modems'), _('Off: watch and report only; never reset a modem.'));
		o.default = '1';

		o = s.option(form.Value, 'margin', _('Margin'), _('Seconds kept in hand before the deadline (default 30).'));
		o.placeholder = '30';
		o.validate = check(shorterThanGrace(integer(0, null, 'seconds')));

		o = s.option(form.Value, 'max_resets_per_hour', _('Resets per hour'), _('Of one modem, at most (default 6).'));
		o.placeholder = '6';
		o.validate = check(integer(1));

		o = s.option(form.DynamicList, 'step_cost', _('Step durations'), _('RUNG=SECONDS or MODEL:RUNG=SECONDS, instead of the built-in figures.'));
		o.validate = listCheck(stepCost);

		s = m.section(form.TypedSection, 'notify', _('Notifications'), _('Path changes, failed and recovered modems, recovery steps, low grace and server errors: scripts in the directory run once per event with REMSIM_* variables; ubus listeners hear remsim-supervisor.EVENT.'));
		s.anonymous = true;
		s.addremove = false;

		o = s.option(form.Value, 'directory', _('Script directory'), _('Executable scripts run per event (default /etc/remsim-supervisor/notify.d).'));
		o.placeholder = '/etc/remsim-supervisor/notify.d';
		o.validate = check(absolutePath('/etc/remsim-supervisor/notify.d'));

		o = s.option(form.Value, 'grace_threshold', _('Low grace'), _('Seconds of grace left below which a grace_low event fires (default 120).'));
		o.placeholder = '120';
		o.validate = check(integer(1, null, 'seconds'));

		o = s.option(form.Value, 'timeout', _('Time limit'), _('Seconds a script or the webhook may take (default 10).'));
		o.placeholder = '10';
		o.validate = check(positive('seconds'));

		o = s.option(form.Value, 'webhook', _('Webhook'), _('A URL each event is POSTed to as JSON. Empty: none.'));
		o.validate = check(webhook);

		o = s.option(form.Flag, 'webhook_via_iot', _('Webhook over the IoT modem'), _('Allow the webhook to leave through the IoT modem (its plan is for the heartbeat).'));
		o.default = '0';

		return m.render();
	}
});
