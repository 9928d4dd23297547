'use strict';
'require baseclass';
'require rpc';

/* The remote SIM supervisor on LuCI's Status > Overview page: grace left,
 * heartbeat path and each modem's state, refreshed with the page. */

var callStatus = rpc.declare({
	object: 'remsim-supervisor',
	method: 'status'
});

function dash(v) {
	return (v === null || v === undefined || v === '') ? '-' : String(v);
}

return baseclass.extend({
	title: _('Remote SIM supervisor'),

	load: function() {
		return L.resolveDefault(callStatus(), null);
	},

	render: function(st) {
		var table = E('table', { 'class': 'table', 'id': 'rs-overview' });
		var add = function(label, value) {
			table.appendChild(E('tr', { 'class': 'tr' }, [
				E('td', { 'class': 'td left', 'width': '33%' }, [ label ]),
				E('td', { 'class': 'td left' }, [ dash(value) ])
			]));
		};

		if (!L.isObject(st)) {
			add(_('Status'), _('no answer from the remsim-supervisor ubus object'));
			return table;
		}
		if (st.running === false) {
			add(_('Status'), st.error || _('not running'));
			return table;
		}

		var grace = st.grace || {}, hb = st.heartbeat || {},
		    modems = Array.isArray(st.modems) ? st.modems : [];
		add(_('Grace left'), (typeof grace.remaining_s == 'number')
			? '%.0f s / %.0f s'.format(grace.remaining_s, grace.period_s || 0) : null);
		add(_('Heartbeat path'), hb.path ? '%s (%s)'.format(hb.path, dash(hb.interface)) : _('no path'));
		modems.forEach(function(m) {
			add('%s (%s)'.format(dash(m.name), dash(m.role)),
				'%s, %s, %s'.format(dash(m.state), dash(m.operator), dash(m.registration)));
		});
		return table;
	}
});
