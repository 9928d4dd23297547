"""The router called from a new worker thread each time, as the daemon calls it.

pyroute2 0.9 ties its netlink socket to the thread that opened it; used from
other threads it opened one more socket per thread and never closed it, and
grew by tens of kilobytes per call: a daemon heartbeating every minute held
thousands more descriptors a day. The router now opens its socket in the
thread that uses it; this holds it to that, with the real kernel, in a
namespace of the test's own.
"""

from __future__ import annotations

import gc
import os
import threading
from collections.abc import Callable

import pytest

from remsim_supervisor.adapters.routing import Router
from tests.netns import ip, netns

CALLS = 60


def in_new_thread(fn: Callable[[], object]) -> None:
    thread = threading.Thread(target=fn)
    thread.start()
    thread.join(10)
    assert not thread.is_alive()


def open_fds() -> int:
    gc.collect()
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (a network namespace)")
def test_a_new_thread_per_call_leaves_no_socket_behind() -> None:
    with netns("rsrt") as ns:
        ip("-n", ns, "link", "add", "wwan0", "type", "veth", "peer", "name", "gw0")
        ip("-n", ns, "link", "set", "gw0", "up")
        ip("-n", ns, "link", "set", "wwan0", "up")
        ip("-n", ns, "addr", "add", "10.251.2.2/24", "dev", "wwan0")
        router = Router(240, 90, netns=ns)
        seen: list[bool] = []
        try:
            in_new_thread(lambda: seen.append(router.link_state("wwan0").up))  # warm up
            before = open_fds()
            for _ in range(CALLS):
                in_new_thread(lambda: seen.append(router.link_state("wwan0").up))
            grown = open_fds() - before
        finally:
            in_new_thread(router.close)
        assert seen == [True] * (CALLS + 1)
        # One socket per thread was the leak (CALLS more); a few may await collection.
        assert grown < CALLS // 4, f"{grown} more descriptors after {CALLS} calls"
