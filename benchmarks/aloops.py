"""Async twins of the measuring loops, for endpoints whose ``send``/``recv`` are coroutines.

The same four loops as ``loops.py``, with the same arguments, results, stamps and
checks (``stamp``, ``check``, ``packer``, ``check_chunk`` are shared; see that
module for what is verified and why the checks cost so little); only the calls
to the endpoint are awaited. They run inside the event loop an ``AsyncSubject``
keeps in each child, so every message costs what the async API costs and the
loop's own scheduling, and nothing else.

Left out, because no async subject needs them: batching endpoints
(``send_many``/``recv_many``) and lossy transports.
"""

from __future__ import annotations

import time
from array import array
from typing import Any, Awaitable, Callable

from .loops import BULK_MAX, CHUNK, MAGIC, STOP, IntegrityError, check, check_chunk, packer, stamp

_CLOCK_EVERY = 32


async def ping(ep: Any, size: int, budget: float, min_n: int, max_n: int, warmup: int) -> array:
    """Side A of a latency run: the round-trip times in ns (warm-up excluded)."""
    clock = time.perf_counter_ns
    msg = bytearray(size)
    send, recv = ep.send, ep.recv
    for seq in range(warmup):
        stamp(msg, seq)
        await send(msg)
        check(await recv(), seq, size)
    seq = warmup
    samples = array("q")
    deadline = clock() + int(budget * 1e9)
    n = 0
    while True:
        last = n + 1 >= max_n or (n + 1 >= min_n and clock() >= deadline)
        stamp(msg, seq, last)
        t0 = clock()
        await send(msg)
        reply = await recv()
        t1 = clock()
        check(reply, seq, size)
        samples.append(t1 - t0)
        seq += 1
        n += 1
        if last:
            return samples


async def echo(ep: Any, size: int) -> int:
    """Side B of a latency run: send every message back until the last one."""
    send, recv = ep.send, ep.recv
    seq = 0
    while True:
        msg = await recv()
        if len(msg) != size:
            raise IntegrityError(f"message {seq}: {len(msg)} bytes, expected {size}")
        last = msg[7] & 0x80
        await send(msg)
        seq += 1
        if last:
            return seq


async def stream_send(
    ep: Any, size: int, budget: float, min_n: int, max_n: int, lossy: bool = False, base: int = 0
) -> tuple[int, int]:
    """Side A of a throughput run: (start time in ns, messages sent)."""
    if lossy:
        raise NotImplementedError("async loops do not count lost datagrams")
    clock = time.perf_counter_ns
    send = ep.send
    small = size <= BULK_MAX
    pack = packer(size)
    buf = bytearray(size)
    n = 0
    t0 = clock()
    deadline = t0 + int(budget * 1e9)
    every = _CLOCK_EVERY if small else 1  # how often to look at the clock, as loops.stream_send does
    while n + 1 < max_n:
        if n + 1 >= min_n and n % every == 0 and clock() >= deadline:
            break
        seq = base + n
        if small:
            await send(pack(seq, seq ^ MAGIC))
        else:
            stamp(buf, seq)
            await send(buf)
        n += 1
    seq = base + n
    if small:
        await send(pack(seq | STOP, seq ^ MAGIC))
    else:
        stamp(buf, seq, last=True)
        await send(buf)
    return t0, n + 1


async def stream_recv(ep: Any, size: int, lossy: bool = False, base: int = 0) -> tuple[int, int, int]:
    """Side B of a throughput run: (time the last message arrived and was checked, in ns, received, 0)."""
    if lossy:
        raise NotImplementedError("async loops do not count lost datagrams")
    recv = ep.recv
    seq = base
    if size > BULK_MAX:
        while not check(await recv(), seq, size):
            seq += 1
        seq += 1
    else:
        last = False
        while not last:
            chunk: list = []
            while len(chunk) < CHUNK and not last:
                msg = await recv()
                chunk.append(msg if msg.__class__ is bytes else bytes(msg))
                last = len(msg) > 7 and bool(msg[7] & 0x80)
            check_chunk(chunk, seq, size, last)
            seq += len(chunk)
    return time.perf_counter_ns(), seq - base, 0


LOOPS: dict[str, Callable[..., Awaitable[Any]]] = {
    "ping": ping, "echo": echo, "send": stream_send, "recv": stream_recv,
}
