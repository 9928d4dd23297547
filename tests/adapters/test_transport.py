"""The serial transport over real pseudo-terminals: locks, timeouts, vanishing ports."""

from __future__ import annotations

import asyncio
import os
import pty
import subprocess
import time
import tty
from collections.abc import Iterator
from pathlib import Path

import pytest

from remsim_supervisor.adapters.serialport import (
    AtChannel,
    AtOverflow,
    AtTimeout,
    ByteBudget,
    PortBusy,
    PortGone,
    SerialPort,
    UucpLock,
)
from remsim_supervisor.core.at import Urc


@pytest.fixture
def pair() -> Iterator[tuple[int, str]]:
    master, slave = pty.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    os.close(slave)
    os.set_blocking(master, False)
    yield master, path
    try:
        os.close(master)
    except OSError:
        pass


def read_master(master: int, until: bytes, timeout: float = 2.0) -> bytes:
    deadline = time.monotonic() + timeout
    data = b""
    while until not in data and time.monotonic() < deadline:
        try:
            data += os.read(master, 4096)
        except BlockingIOError:
            time.sleep(0.005)
    return data


async def answer(master: int, expect: bytes, reply: bytes, delay: float = 0.0) -> bytes:
    loop = asyncio.get_running_loop()
    got = await loop.run_in_executor(None, read_master, master, expect)
    if delay:
        await asyncio.sleep(delay)
    os.write(master, reply)
    return got


def test_command_round_trip_with_urc_in_between(pair: tuple[int, str], tmp_path: Path) -> None:
    master, path = pair
    urcs: list[Urc] = []

    async def main() -> None:
        port = SerialPort(path, lock_dir=str(tmp_path))
        await port.open()
        ch = AtChannel(port, on_urc=urcs.append)
        responder = asyncio.create_task(answer(
            master, b"AT+CSQ\r", b"\r\n+CEREG: 1\r\n\r\n+CSQ: 18,99\r\n\r\nOK\r\n"))
        response = await ch.command("AT+CSQ", timeout=2.0)
        assert await responder == b"AT+CSQ\r"
        assert response.ok and response.lines == ("+CSQ: 18,99",)
        await port.close()

    asyncio.run(main())
    assert [u.line for u in urcs] == ["+CEREG: 1"]
    assert urcs[0].kind == "registration"  # classified once, by the engine


def test_timeout_then_late_reply_does_not_confuse_the_next_command(pair: tuple[int, str],
                                                                    tmp_path: Path) -> None:
    master, path = pair

    async def main() -> None:
        port = SerialPort(path, lock_dir=str(tmp_path))
        await port.open()
        ch = AtChannel(port)
        started = time.monotonic()
        with pytest.raises(AtTimeout):
            await ch.command("AT+CGMM", timeout=0.2)
        assert time.monotonic() - started < 1.0
        # The late answer to the abandoned command, then the real exchange.
        read_master(master, b"AT+CGMM\r")
        os.write(master, b"\r\nEC25\r\n\r\nOK\r\n")
        await asyncio.sleep(0.05)
        responder = asyncio.create_task(answer(master, b"AT\r", b"\r\nOK\r\n"))
        response = await ch.command("AT", timeout=2.0)
        await responder
        assert response.ok and response.lines == ()
        await port.close()

    asyncio.run(main())


def test_master_closing_is_port_gone_within_the_command(pair: tuple[int, str],
                                                        tmp_path: Path) -> None:
    master, path = pair

    async def main() -> None:
        port = SerialPort(path, lock_dir=str(tmp_path))
        await port.open()
        ch = AtChannel(port)
        loop = asyncio.get_running_loop()
        loop.call_later(0.1, os.close, master)
        started = time.monotonic()
        with pytest.raises(PortGone):
            await ch.command("AT", timeout=5.0)
        assert time.monotonic() - started < 1.0
        assert port.lost.is_set()
        await port.close()

    asyncio.run(main())


def test_write_to_a_port_that_never_drains_times_out(pair: tuple[int, str], tmp_path: Path) -> None:
    _master, path = pair

    async def main() -> None:
        port = SerialPort(path, lock_dir=str(tmp_path))
        await port.open()
        started = time.monotonic()
        with pytest.raises(AtTimeout):
            await port.write(b"x" * (4 << 20), timeout=0.3)  # far more than a tty buffers
        assert time.monotonic() - started < 1.5
        await port.close()

    asyncio.run(main())


def test_uucp_lock_of_a_live_program_is_honoured(pair: tuple[int, str], tmp_path: Path) -> None:
    _master, path = pair
    holder = subprocess.Popen(["sleep", "30"])
    deadline = time.monotonic() + 5
    while Path(f"/proc/{holder.pid}/comm").read_text().strip() != "sleep":
        assert time.monotonic() < deadline, "sleep did not start"
        time.sleep(0.01)
    try:
        lock = UucpLock(path, str(tmp_path))
        Path(lock.path).write_text(f"{holder.pid:10d}\n")

        async def main() -> None:
            port = SerialPort(path, lock_dir=str(tmp_path))
            with pytest.raises(PortBusy, match=rf"pid {holder.pid} \(sleep\)"):
                await port.open()

        asyncio.run(main())
        assert Path(lock.path).read_text().strip() == str(holder.pid)  # not fought over
    finally:
        holder.kill()
        holder.wait()


def test_stale_lock_is_replaced_and_ours_removed_on_close(pair: tuple[int, str],
                                                          tmp_path: Path) -> None:
    _master, path = pair
    dead = subprocess.Popen(["true"])
    dead.wait()
    lock = UucpLock(path, str(tmp_path))
    Path(lock.path).write_text(f"{dead.pid:10d}\n")

    async def main() -> None:
        port = SerialPort(path, lock_dir=str(tmp_path))
        await port.open()
        assert Path(lock.path).read_text() == f"{os.getpid():10d}\n"
        # A second opener in this process is refused, and leaves our lock alone.
        with pytest.raises(PortBusy):
            await SerialPort(path, lock_dir=str(tmp_path)).open()
        assert Path(lock.path).exists()
        await port.close()

    asyncio.run(main())
    assert not Path(lock.path).exists()


def test_exclusive_flock_of_another_opener_is_reported(pair: tuple[int, str],
                                                       tmp_path: Path) -> None:
    import fcntl

    _master, path = pair
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        async def main() -> None:
            with pytest.raises(PortBusy, match="exclusively"):
                await SerialPort(path, lock_dir=str(tmp_path / "none")).open()

        asyncio.run(main())
    finally:
        os.close(fd)


def test_missing_port_is_gone(tmp_path: Path) -> None:
    async def main() -> None:
        with pytest.raises(PortGone):
            await SerialPort(str(tmp_path / "ttyUSB9"), lock_dir=str(tmp_path)).open()

    asyncio.run(main())


def test_network_scan_is_refused(pair: tuple[int, str], tmp_path: Path) -> None:
    master, path = pair

    async def main() -> None:
        port = SerialPort(path, lock_dir=str(tmp_path))
        await port.open()
        with pytest.raises(ValueError, match="never sent"):
            await AtChannel(port).command("at+cops=?", timeout=1.0)
        await asyncio.sleep(0.05)
        with pytest.raises(BlockingIOError):
            os.read(master, 100)  # nothing was written to the modem
        await port.close()

    asyncio.run(main())


# --------------------------------------------------------------------------
# Caps: an endless reply, a flooding port


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_byte_budget_passes_the_burst_then_the_rate_and_counts_the_rest() -> None:
    clock = FakeClock()
    budget = ByteBudget(rate=1000, burst=2000, clock=clock, log_interval=60)
    assert budget.admit(1500) == 1500
    assert budget.admit(1500) == 500
    assert budget.dropped == 1000
    clock.now += 0.5
    assert budget.admit(1000) == 500
    assert budget.dropped == 1500
    clock.now += 100          # a quiet spell refills only up to the burst
    assert budget.admit(5000) == 2000
    assert budget.dropped == 4500


def test_byte_budget_reports_drops_at_most_once_a_minute() -> None:
    clock = FakeClock()
    budget = ByteBudget(rate=100, burst=100, clock=clock, log_interval=60)
    assert budget.report() is None            # nothing dropped: nothing to say
    budget.admit(300)
    assert budget.report() == 200
    budget.admit(300)
    clock.now += 30
    budget.admit(50)
    assert budget.report() is None            # too soon
    clock.now += 31
    assert budget.report() == 300             # what was dropped since the last line
    assert budget.report() is None
    assert budget.dropped == 500


def test_overlong_reply_is_an_error_and_the_channel_recovers(pair: tuple[int, str],
                                                            tmp_path: Path) -> None:
    master, path = pair

    async def main() -> None:
        port = SerialPort(path, lock_dir=str(tmp_path))
        await port.open()
        ch = AtChannel(port)
        ch.engine.max_lines = 50
        spray = asyncio.create_task(answer(master, b"AT+CLAC\r",
                                           b"".join(b"+LINE %d\r\n" % i for i in range(200))))
        started = time.monotonic()
        with pytest.raises(AtOverflow, match="AT\\+CLAC: the reply grew to 51 lines"):
            await ch.command("AT+CLAC", timeout=5.0)
        assert time.monotonic() - started < 2.0   # ended by the cap, not the timeout
        await spray
        os.write(master, b"OK\r\n")                # the flood's own final: swallowed
        await asyncio.sleep(0.05)
        responder = asyncio.create_task(answer(master, b"AT\r", b"\r\nOK\r\n"))
        response = await ch.command("AT", timeout=2.0)
        await responder
        assert response.ok and response.lines == ()
        await port.close()

    asyncio.run(main())


def test_flooding_port_is_cut_to_its_budget_and_still_answers(
        pair: tuple[int, str], tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    master, path = pair
    clock = FakeClock()

    async def main() -> None:
        port = SerialPort(path, lock_dir=str(tmp_path))
        await port.open()
        budget = ByteBudget(rate=1000, burst=1000, clock=clock)
        ch = AtChannel(port, budget=budget, name="modem1")
        garbage = b"\x00\xffjunk junk junk\r\n" * 400   # ~8 kB at once
        os.write(master, garbage)
        await asyncio.sleep(0.2)
        assert budget.dropped >= len(garbage) - 1000
        dropped = budget.dropped
        clock.now += 5                                   # the budget refills
        responder = asyncio.create_task(answer(master, b"AT+CSQ\r",
                                               b"\r\n+CSQ: 18,99\r\n\r\nOK\r\n"))
        response = await ch.command("AT+CSQ", timeout=2.0)
        await responder
        assert response.lines == ("+CSQ: 18,99",)
        assert budget.dropped == dropped
        await port.close()

    with caplog.at_level("WARNING", logger="remsim_supervisor.adapters.serialport"):
        asyncio.run(main())
    warnings = [r.getMessage() for r in caplog.records if "bytes/s" in r.getMessage()]
    assert len(warnings) == 1, warnings          # once, not once per read
    assert warnings[0].startswith("modem1: ") and "dropped" in warnings[0]
