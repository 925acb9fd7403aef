"""The measuring loops that run inside the two child processes, shared by every subject.

An *endpoint* is whatever a subject opens in a child: an object with
``send(data)`` and ``recv() -> bytes-like``. Every subject runs the same four
loops, so differences between subjects are differences between the mechanisms.

Every message is stamped: bytes 0..7 hold the sequence number (little-endian,
top bit set on the last message of a run) and the last 8 bytes hold
``seq ^ 0x5A5A5A5A5A5A5A5A``. The receiver checks the length, the order (the
sequence number is the one expected) and both ends (a torn or truncated copy
changes the trailer). It does not checksum the middle of the payload: that would
measure the checksum, not the IPC.

A run lasts ``budget`` seconds of measuring (after warm-up), but at least
``min_n`` and at most ``max_n`` messages; the sender decides and marks the last
message, so both sides stop together without a side channel.
"""

from __future__ import annotations

import struct
import time
from array import array
from typing import Any

STOP = 1 << 63
MAGIC = 0x5A5A5A5A5A5A5A5A
_Q = struct.Struct("<Q")
MIN_SIZE = 16


class IntegrityError(Exception):
    """A message arrived corrupt, truncated, or out of order."""


def stamp(buf: bytearray, seq: int, last: bool = False) -> None:
    _Q.pack_into(buf, 0, seq | STOP if last else seq)
    _Q.pack_into(buf, len(buf) - 8, seq ^ MAGIC)


def check(msg: Any, seq: int, size: int) -> bool:
    """Verify one message; return True if it is the last of the run."""
    if len(msg) != size:
        raise IntegrityError(f"message {seq}: {len(msg)} bytes, expected {size}")
    head = _Q.unpack_from(msg, 0)[0]
    if head & ~STOP != seq or _Q.unpack_from(msg, size - 8)[0] != seq ^ MAGIC:
        raise IntegrityError(f"message {seq}: corrupt or out of order (header says {head & ~STOP})")
    return bool(head & STOP)


def _finish(ep: Any) -> None:
    # Endpoints that hand out views into shared memory release the last one here.
    flush = getattr(ep, "flush", None)
    if flush is not None:
        flush()


def ping(ep: Any, size: int, budget: float, min_n: int, max_n: int, warmup: int) -> array:
    """Side A of a latency run: returns the round-trip times in ns (warm-up excluded)."""
    clock = time.perf_counter_ns
    msg = bytearray(size)
    send, recv = ep.send, ep.recv
    seq = 0
    for seq in range(warmup):
        stamp(msg, seq)
        send(msg)
        check(recv(), seq, size)
    seq = warmup
    samples = array("q")
    deadline = clock() + int(budget * 1e9)
    n = 0
    while True:
        last = n + 1 >= max_n or (n + 1 >= min_n and clock() >= deadline)
        stamp(msg, seq, last)
        t0 = clock()
        send(msg)
        reply = recv()
        t1 = clock()
        check(reply, seq, size)
        samples.append(t1 - t0)
        seq += 1
        n += 1
        if last:
            break
    _finish(ep)
    return samples


def echo(ep: Any, size: int) -> int:
    """Side B of a latency run: send every message back until the last one."""
    send, recv = ep.send, ep.recv
    seq = 0
    while True:
        msg = recv()
        last = check(msg, seq, size)
        send(msg)
        seq += 1
        if last:
            break
    _finish(ep)
    return seq


def stream_send(
    ep: Any, size: int, budget: float, min_n: int, max_n: int, lossy: bool = False, base: int = 0
) -> tuple[int, int]:
    """Side A of a throughput run: returns (start time in ns, messages sent).

    Sequence numbers start at ``base``, different for every run of a pair, so a
    stray datagram from an earlier run can be told apart.
    """
    clock = time.perf_counter_ns
    msg = bytearray(size)
    send = ep.send
    n = 0
    t0 = clock()
    deadline = t0 + int(budget * 1e9)
    while True:
        last = n + 1 >= max_n or (n + 1 >= min_n and clock() >= deadline)
        stamp(msg, base + n, last)
        send(msg)
        n += 1
        if last:
            break
    if lossy:
        # A datagram transport may drop the final message too: repeat it a few times
        # (the receiver stops at the first copy and ignores the rest).
        for _ in range(5):
            time.sleep(0.002)
            send(msg)
    _finish(ep)
    return t0, n


def stream_recv(ep: Any, size: int, lossy: bool = False, base: int = 0) -> tuple[int, int, int]:
    """Side B of a throughput run: returns (time the last message arrived in ns, received, lost).

    ``lossy`` transports (UDP) may skip sequence numbers; each gap is counted as lost
    instead of failing the run, and older numbers (copies of an earlier run's last
    message) are skipped. Everything else must arrive complete and in order.
    """
    recv = ep.recv
    seq = base
    received = lost = 0
    while True:
        msg = recv()
        if lossy and len(msg) >= 8:
            got = _Q.unpack_from(msg, 0)[0] & ~STOP
            if got < seq:
                continue  # a copy of an earlier run's last message
            if got > seq:
                lost += got - seq
                seq = got
        last = check(msg, seq, size)
        seq += 1
        received += 1
        if last:
            break
    t1 = time.perf_counter_ns()
    _finish(ep)
    return t1, received, lost
