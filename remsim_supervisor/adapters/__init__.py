"""The outside world behind narrow interfaces: serial ports, sysfs, netlink, GPIO, HTTP."""
