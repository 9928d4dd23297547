'use strict';
'require view';
'require poll';
'require rpc';
'require uci';
'require ui';
'require dom';

/*
 * The remote SIM supervisor at a glance: the grace left, the heartbeat path
 * and its recent changes, one card per modem, the pinned routes, the recent
 * recovery steps and the heartbeat's data against the IoT SIM's plan; polled
 * live. "Test heartbeat" and "Reset modem" need write access to the
 * luci-app-remsim-supervisor ACL; a read-only login sees them disabled.
 */

var callStatus = rpc.declare({
	object: 'remsim-supervisor',
	method: 'status'
});

var callTestHeartbeat = rpc.declare({
	object: 'remsim-supervisor',
	method: 'test_heartbeat',
	params: [ 'via', 'count' ]
});

var callReset = rpc.declare({
	object: 'remsim-supervisor',
	method: 'reset',
	params: [ 'modem', 'level' ]
});

var callSessionAccess = rpc.declare({
	object: 'session',
	method: 'access',
	params: [ 'scope', 'object', 'function' ],
	expect: { 'access': false }
});

var LEVELS = [
	[ 'ifup', _('Restart its network interface (ifup)') ],
	[ 'radio_cycle', _('Radio off and on') ],
	[ 'soft_reset', _('AT soft reset') ],
	[ 'usb_reauth', _('USB re-authorisation') ],
	[ 'gpio_reset', _('GPIO reset pulse') ],
	[ 'power_cycle', _('GPIO power cycle') ]
];

var TECH = {
	gsm: 'GSM', gsm_compact: 'GSM', gprs: 'GPRS', edge: 'EDGE', umts: 'UMTS',
	hsdpa: 'HSDPA', hsupa: 'HSUPA', hspa: 'HSPA', hspa_plus: 'HSPA+',
	lte: 'LTE', lte_cat_m: 'LTE-M', lte_nb_iot: 'NB-IoT', nr5g: '5G NR',
	nr5g_nsa: '5G NSA', cdma: 'CDMA', evdo: 'EV-DO', tdscdma: 'TD-SCDMA'
};

function dash(v) {
	return (v === null || v === undefined || v === '') ? '-' : String(v);
}

function seconds(v) {
	return (typeof v == 'number') ? '%.0f s'.format(v) : '-';
}

function when(epoch) {
	if (typeof epoch != 'number')
		return '-';
	var d = new Date(epoch * 1000);
	return '%04d-%02d-%02d %02d:%02d:%02d'.format(d.getFullYear(), d.getMonth() + 1,
		d.getDate(), d.getHours(), d.getMinutes(), d.getSeconds());
}

function megabytes(bytes) {
	return (typeof bytes == 'number') ? '%.1f MB'.format(bytes / 1e6) : '-';
}

function signalText(signal) {
	var order = [ 'rssi_dbm', 'rsrp_dbm', 'rsrq_db', 'sinr_db', 'rscp_dbm', 'ecio_db' ],
	    parts = [];
	if (!L.isObject(signal))
		return '-';
	Object.keys(signal).sort().forEach(function(k) {
		if (order.indexOf(k) < 0 && k != 'mode')
			order.push(k);
	});
	order.forEach(function(k) {
		if (signal[k] === null || signal[k] === undefined)
			return;
		var unit = /_dbm$/.test(k) ? 'dBm' : 'dB',
		    name = k.replace(/_[^_]+$/, '').toUpperCase();
		parts.push(typeof signal[k] == 'number' ? '%s %s %s'.format(name, signal[k], unit)
			: '%s %s'.format(name, signal[k]));
	});
	return parts.length ? parts.join(', ') : '-';
}

function bar(value, total, text, id) {
	var pc = (total > 0 && typeof value == 'number') ? Math.max(0, Math.min(100, value / total * 100)) : 0;
	return E('div', { 'class': 'cbi-progressbar', 'id': id, 'title': text, 'data-percent': '%.0f'.format(pc) },
		E('div', { 'style': 'width:%.2f%%'.format(pc) }));
}

function rows(data) {
	return E('table', { 'class': 'table' }, data.map(function(row) {
		return E('tr', { 'class': 'tr' }, [
			E('td', { 'class': 'td left', 'width': '33%' }, [ row[0] ]),
			E('td', { 'class': 'td left' }, Array.isArray(row[1]) ? row[1] : [ dash(row[1]) ])
		]);
	}));
}

function grid(headers, data, empty, id) {
	var table = E('table', { 'class': 'table', 'id': id }, [
		E('tr', { 'class': 'tr table-titles' }, headers.map(function(h) {
			return E('th', { 'class': 'th' }, [ h ]);
		}))
	]);
	if (!data.length)
		table.appendChild(E('tr', { 'class': 'tr placeholder' },
			E('td', { 'class': 'td', 'colspan': headers.length }, [ E('em', {}, [ empty ]) ])));
	data.forEach(function(row) {
		table.appendChild(E('tr', { 'class': 'tr' }, row.map(function(cell) {
			return E('td', { 'class': 'td' }, [ (cell instanceof Node) ? cell : dash(cell) ]);
		})));
	});
	return table;
}

function section(title, id, children) {
	return E('div', { 'class': 'cbi-section', 'id': id }, [ E('h3', {}, [ title ]) ].concat(children));
}

return view.extend({
	load: function() {
		return Promise.all([
			L.resolveDefault(callStatus(), null),
			L.resolveDefault(callSessionAccess('ubus', 'remsim-supervisor', 'reset'), false),
			L.resolveDefault(callSessionAccess('ubus', 'remsim-supervisor', 'test_heartbeat'), false),
			L.resolveDefault(uci.load('remsim-supervisor'), null)
		]);
	},

	/* True when this login may run the commands: the menu node is writable
	 * (the dispatcher says so from the ACL) and rpcd grants the methods. */
	mayAct: function(which) {
		return L.hasViewPermission() === true && !!this.access[which];
	},

	budgetMB: function() {
		var v = parseFloat(uci.get('remsim-supervisor', '@supervisor[0]', 'data_budget_mb'));
		return (isFinite(v) && v > 0) ? v : null;
	},

	renderDaemon: function(st) {
		if (!L.isObject(st))
			return E('div', { 'class': 'alert-message warning' }, [ _('No answer from the remsim-supervisor ubus object (is rpcd-mod-ucode installed?)') ]);
		if (st.running === false)
			return E('div', { 'class': 'alert-message warning' }, [ st.error || _('remsim-supervisor is not running') ]);
		return E('p', {}, [ _('remsim-supervisor %s, pid %d, up %s').format(dash(st.version), st.pid || 0, '%t'.format(st.uptime_s || 0)) ]);
	},

	renderGrace: function(st) {
		var g = st.grace || {}, left = g.remaining_s, period = g.period_s,
		    age = g.last_ack_age_s,
		    text = _('%s of %s left').format(seconds(left), seconds(period));
		var children = [
			bar(left, period, text, 'rs-grace-bar'),
			E('p', { 'id': 'rs-grace-text' }, [
				(typeof age == 'number') ? _('Last acknowledged heartbeat %s ago').format(seconds(age))
					: _('No heartbeat acknowledged yet') ])
		];
		if (g.at_risk)
			children.push(E('div', { 'class': 'alert-message warning' }, [ g.at_risk ]));
		return children;
	},

	renderHeartbeat: function(st) {
		var hb = st.heartbeat || {},
		    modems = Array.isArray(st.modems) ? st.modems : [],
		    active = modems.filter(function(m) { return m.name == hb.path; })[0],
		    path = hb.path ? '%s (%s, %s)'.format(hb.path, active ? active.role : '?', dash(hb.interface)) : _('no path');
		var server = hb.server_error;
		var moves = (Array.isArray(hb.moves) ? hb.moves.slice() : []).reverse();
		return [
			rows([
				[ _('Path'), [ E('strong', { 'id': 'rs-path' }, [ path ]) ] ],
				[ _('Why'), hb.path_reason ],
				[ _('Interval'), seconds(hb.interval_s) ],
				[ _('Sent / acknowledged / failed'), '%d / %d / %d'.format(hb.sent || 0, hb.acked || 0, hb.failed || 0) ],
				[ _('Last round trip'), (typeof hb.last_rtt_ms == 'number') ? '%.0f ms'.format(hb.last_rtt_ms) : '-' ],
				[ _('Last error'), hb.last_error ],
				[ _('Server'), L.isObject(server)
					? _('%s (%d errors in a row, for %s)').format(dash(server.message), server.count || 0, seconds(server.since_s))
					: _('answering') ]
			]),
			E('h4', {}, [ _('Recent path changes') ]),
			grid([ _('When'), _('From'), _('To'), _('Reason'), _('Grace left') ],
				moves.map(function(m) {
					return [ when(m.at), m.from, m.to, m.reason, seconds(m.grace_left_s) ];
				}), _('The path has not changed since the start.'), 'rs-moves')
		];
	},

	renderData: function(st) {
		var hb = st.heartbeat || {}, budget = this.budgetMB(),
		    projected = hb.projected_bytes_30d;
		var data = [
			[ _('Per heartbeat'), (typeof hb.bytes_per_heartbeat == 'number') ? _('%d bytes on the wire').format(hb.bytes_per_heartbeat) : '-' ],
			[ _('Projected per 30 days'), megabytes(projected) ],
			[ _('Plan of the IoT SIM'), budget ? '%.1f MB'.format(budget) : _('not set (option data_budget_mb)') ]
		];
		var children = [ rows(data) ];
		if (budget && typeof projected == 'number') {
			var text = _('%s of %s projected').format(megabytes(projected), '%.1f MB'.format(budget));
			children.push(bar(projected, budget * 1e6, text, 'rs-data-bar'));
			if (projected > budget * 1e6)
				children.push(E('div', { 'class': 'alert-message warning' }, [ _('The projection exceeds the plan.') ]));
		}
		return children;
	},

	renderModem: function(m, hbPath) {
		var sim = m.sim || {},
		    canReset = this.mayAct('reset');
		var btn = E('button', {
			'class': 'cbi-button cbi-button-reset',
			'data-modem': m.name,
			'disabled': canReset ? null : '',
			'title': canReset ? _('Run one recovery step on this modem now') : _('Needs write access'),
			'click': ui.createHandlerFn(this, 'handleModemReset', m.name)
		}, [ _('Reset modem') ]);
		return E('div', { 'class': 'rs-modem', 'data-modem': m.name,
		                  'style': 'flex:1 1 24em;min-width:0' }, [
			E('h4', {}, [ '%s (%s)%s'.format(dash(m.name), dash(m.role), m.name == hbPath ? ' ' + _('carries the heartbeat') : '') ]),
			rows([
				[ _('Model'), m.model ],
				[ _('State'), [ E('strong', { 'class': 'rs-state' }, [ dash(m.state) ]) ] ],
				[ _('Detail'), m.reason ],
				[ _('Registration'), m.registration ],
				[ _('Technology'), m.access_tech ? (TECH[m.access_tech] || m.access_tech) : '-' ],
				[ _('Operator'), m.operator ],
				[ _('Signal'), signalText(m.signal) ],
				[ _('SIM'), '%s (%s)'.format(dash(sim.slot), dash(sim.state)) ],
				[ _('Data'), '%s %s'.format(dash(m.device), dash(m.link)) ],
				[ _('AT port'), m.at_port_reason ? '%s (%s)'.format(dash(m.at_port), m.at_port_reason) : m.at_port ]
			]),
			E('div', { 'class': 'right' }, [ btn ])
		]);
	},

	renderRoutes: function(st) {
		var r = st.routes || {}, pinned = Array.isArray(r.pinned) ? r.pinned : [];
		return [
			E('p', {}, [ _('Table %s, rule preference %s').format(dash(r.table), dash(r.priority)) ]),
			grid([ _('Host'), _('Address'), _('For'), _('Via') ], pinned.map(function(p) {
				return [ p.host, p.address, p.what, p.via ];
			}), _('Nothing pinned.'), 'rs-pinned')
		];
	},

	renderRecoveries: function(st) {
		var rec = Array.isArray(st.recoveries) ? st.recoveries : [];
		return grid([ _('Started'), _('Modem'), _('Step'), _('Result'), _('Grace left'), _('Reason') ],
			rec.map(function(r) {
				return [ when(r.started), r.modem, r.step, r.result, seconds(r.grace_left_s), r.reason ];
			}), _('No recovery step so far.'), 'rs-recoveries');
	},

	/* Everything that follows the status; rebuilt on each poll. */
	renderBody: function(st) {
		var daemon = this.renderDaemon(st);
		if (!L.isObject(st) || st.running === false)
			return [ daemon ];
		var hbPath = (st.heartbeat || {}).path,
		    modems = Array.isArray(st.modems) ? st.modems : [];
		return [
			daemon,
			section(_('Grace period'), 'rs-grace', this.renderGrace(st)),
			section(_('Heartbeat'), 'rs-heartbeat', this.renderHeartbeat(st)),
			section(_('Modems'), 'rs-modems', modems.length
				? [ E('div', { 'style': 'display:flex;flex-wrap:wrap;gap:0 2em;align-items:flex-start' },
					modems.map(L.bind(function(m) { return this.renderModem(m, hbPath); }, this))) ]
				: [ E('em', {}, [ _('No modem configured.') ]) ]),
			section(_('Pinned routes'), 'rs-routes', this.renderRoutes(st)),
			section(_('Recent recovery steps'), 'rs-recovery', [ this.renderRecoveries(st) ]),
			section(_('Heartbeat data'), 'rs-data', this.renderData(st))
		];
	},

	refresh: function() {
		return L.resolveDefault(callStatus(), null).then(L.bind(function(st) {
			this.status = st;
			var body = document.getElementById('rs-body');
			if (body)
				dom.content(body, this.renderBody(st));
		}, this));
	},

	render: function(data) {
		this.status = data[0];
		this.access = { reset: data[1], test_heartbeat: data[2] };
		var canTest = this.mayAct('test_heartbeat');
		var via = E('select', { 'class': 'cbi-input-select', 'id': 'rs-via' }, [
			E('option', { 'value': 'iot' }, [ _('over the IoT modem') ]),
			E('option', { 'value': 'primary' }, [ _('over the primary modem') ])
		]);
		var view = E([], [
			E('h2', {}, [ _('Remote SIM supervisor') ]),
			E('div', { 'class': 'cbi-map-descr' }, [ _('Keeps the IonMesh heartbeat alive so that the remote SIM stays active.') ]),
			E('div', { 'class': 'cbi-section', 'id': 'rs-actions' }, [
				E('button', {
					'class': 'cbi-button cbi-button-action',
					'id': 'rs-test-heartbeat',
					'disabled': canTest ? null : '',
					'title': canTest ? _('Send one heartbeat now') : _('Needs write access'),
					'click': ui.createHandlerFn(this, 'handleTestHeartbeat')
				}, [ _('Test heartbeat') ]), ' ', via
			]),
			E('div', { 'id': 'rs-body' }, this.renderBody(this.status))
		]);
		poll.add(L.bind(this.refresh, this));
		return view;
	},

	handleTestHeartbeat: function(ev) {
		var via = (document.getElementById('rs-via') || {}).value || 'iot';
		return callTestHeartbeat(via, 1).then(function(res) {
			var results = (L.isObject(res) && L.isObject(res.result) && Array.isArray(res.result.results)) ? res.result.results : [];
			var lines = results.map(function(r) {
				return r.acknowledged
					? _('Heartbeat via %s (%s): HTTP %s in %.0f ms, %d bytes on the wire').format(r.via, r.device, r.status, r.rtt_ms, r.bytes_on_wire)
					: _('Heartbeat via %s (%s): not acknowledged: %s').format(r.via, r.device, dash(r.error));
			});
			if (L.isObject(res) && res.error)
				lines.push(res.error);
			ui.addNotification(null, lines.map(function(l) { return E('p', {}, [ l ]); }), null,
				(L.isObject(res) && res.ok) ? 'info' : 'warning');
		}).catch(function(err) {
			ui.addNotification(null, E('p', {}, [ _('Test heartbeat failed: %s').format(err.message || err) ]), null, 'danger');
		});
	},

	handleModemReset: function(name, ev) {
		var level = E('select', { 'class': 'cbi-input-select', 'id': 'rs-reset-level' },
			LEVELS.map(function(l) {
				return E('option', { 'value': l[0], 'selected': l[0] == 'soft_reset' ? '' : null }, [ l[1] ]);
			}));
		ui.showModal(_('Reset modem %s?').format(name), [
			E('p', {}, [ _('Runs one recovery step on %s now. While it runs the modem carries no data; if it carries the heartbeat, the heartbeat moves to the other modem.').format(name) ]),
			E('p', {}, [ level ]),
			E('div', { 'class': 'right' }, [
				E('button', { 'class': 'cbi-button', 'click': ui.hideModal }, [ _('Cancel') ]), ' ',
				E('button', {
					'class': 'cbi-button cbi-button-negative important',
					'id': 'rs-reset-confirm',
					'click': ui.createHandlerFn(this, function() {
						var chosen = level.value;
						ui.showModal(_('Resetting %s…').format(name), [
							E('p', { 'class': 'spinning' }, [ _('Waiting for the modem to come back (at most 15 s)') ])
						]);
						return callReset(name, chosen).then(function(res) {
							ui.hideModal();
							var ok = L.isObject(res) && res.ok;
							ui.addNotification(null, E('p', {}, [ ok ? dash(res.message) : dash(L.isObject(res) ? res.error : res) ]), null, ok ? 'info' : 'warning');
						}).catch(function(err) {
							ui.hideModal();
							ui.addNotification(null, E('p', {}, [ _('Reset failed: %s').format(err.message || err) ]), null, 'danger');
						});
					})
				}, [ _('Reset') ])
			])
		]);
	},

	handleSave: null,
	handleSaveApply: null,
	handleReset: null
});
