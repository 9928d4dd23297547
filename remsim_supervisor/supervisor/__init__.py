"""The running daemon: one task group owning the modem tasks, the heartbeat, the guardian."""
