"""remsim-supervisor: keeps the heartbeat of a dual-modem remote-SIM router alive."""

__version__ = "0.1.0"
