"""The command line: ``commands`` (click) for people and init scripts, ``event``
for osmo-remsim-client's event script, which must not pay for click."""
