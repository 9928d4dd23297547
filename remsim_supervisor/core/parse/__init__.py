"""Pure parsers for the 3GPP TS 27.007 answers a modem gives: text in, frozen dataclasses out.

One module per topic: :mod:`.registration` (+CxREG, +COPS), :mod:`.signal`
(+CSQ, +CESQ), :mod:`.sim` (+CPIN, +CFUN, ICCID, IMEI, IMSI), :mod:`.packet`
(+CGEV), on the field plumbing of :mod:`.common`. Vendor answers are read by
the vendor modules (``remsim_supervisor.vendors``). No parser raises on any
string: garbage in, ``None`` (or the documented "unknown" value) out.
"""
