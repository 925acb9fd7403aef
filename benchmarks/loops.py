"""The measuring loops that run inside the two child processes, shared by every subject.

An *endpoint* is whatever a subject opens in a child: an object with
``send(data)`` and ``recv() -> bytes-like``, and optionally ``send_many(list)``,
``recv_many() -> list`` and ``batch`` (the batch size) when it moves messages in
batches; the stream loops use those instead of ``send``/``recv`` when present.
Every subject runs the same four loops, so differences between subjects are
differences between the mechanisms.

What is verified
----------------
Every message is stamped: bytes 0..7 hold the sequence number (little-endian,
top bit set on the last message of a run) and the last 8 bytes hold
``seq ^ 0x5A5A5A5A5A5A5A5A``; the middle is zero. For **every** message the
receiver checks its length, its sequence number (so none is missing,
duplicated or out of order) and its trailer (a torn or truncated copy changes
it). It does not checksum the middle of the payload: that would measure the
checksum, not the IPC.

How, without the check costing more than the IPC (throughput)
-------------------------------------------------------------
A check in Python (two ``struct`` unpacks and compares) costs ~0.3-0.5 us, as
much as a whole 64-byte message through a fast channel. So:

* Messages up to ``BULK_MAX`` bytes are built by the sender one C call each
  (``struct.pack`` of the whole stamped message into a fresh ``bytes``, what a
  program sending small messages does). The receiver keeps each message it
  gets (copying it to ``bytes`` if the endpoint handed out anything else, such
  as a view into a buffer it reuses), looks at one byte per message for the
  last-message flag, and every ``CHUNK`` messages verifies the chunk at once:
  all lengths (the minimum is ``size`` and the joined total is ``CHUNK * size``,
  so every one is exactly ``size``), then with numpy the column of headers
  against ``arange(seq, seq + CHUNK)`` and the column of trailers against that
  ``^ MAGIC``. Any mismatch re-checks the chunk message by message to report
  the first bad one.
* Larger messages are stamped in place into a reused ``bytearray`` (one per
  batch slot for batching endpoints) and checked one by one as they arrive;
  at that size a check costs under 3% of moving the message.

Batching endpoints get lists of ``batch`` messages but at most ``BATCH_BYTES``
(1 MiB) per list: 64 B messages go 32 at a time, 1 MiB ones one at a time.
Batching is for small messages; 32 distinct 1 MiB buffers would measure the
cache misses of a 32 MiB working set on the sending side, not the IPC.

The clock runs from before the first message is built to after the last chunk
is verified, so building and verifying are inside the measured interval:
nothing is hidden, it is only cheaper. (Lossy transports are checked one by
one, because gaps must be counted as they come.)

Latency: the pinger checks every reply completely, outside the timed round
trip; the echo side checks only the length and the last-message flag before
sending the message straight back. A message corrupted, lost or reordered on
either leg reaches the pinger as a wrong reply, so every round trip is still
verified, and neither side's check is inside the round trip.

A run lasts ``budget`` seconds of measuring (after warm-up), but at least
``min_n`` and at most ``max_n`` messages; the sender decides (looking at the
clock every ``batch`` or 32 messages) and marks the last message, so both sides
stop together without a side channel.
"""

from __future__ import annotations

import struct
import time
from array import array
from typing import Any, Callable, Optional

import numpy as _np

STOP = 1 << 63
MAGIC = 0x5A5A5A5A5A5A5A5A
_Q = struct.Struct("<Q")
MIN_SIZE = 16
BULK_MAX = 4096  # messages up to this size are built by struct.pack and checked in chunks
CHUNK = 256  # messages per bulk check
BATCH_BYTES = 1 << 20  # a batch holds at most `batch` messages and this many bytes
_CLOCK_EVERY = 32  # the sender looks at the clock every this many messages (small, unbatched)
_is_bytes = bytes.__instancecheck__


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


def packer(size: int) -> Callable[[int, int], bytes]:
    """``pack(head, seq ^ MAGIC)`` -> a whole stamped message of ``size`` bytes (zero middle)."""
    return struct.Struct(f"<Q{size - 16}xQ").pack


def check_chunk(chunk: list, seq: int, size: int, last: bool, use_numpy: bool = True) -> None:
    """Verify ``chunk[i]`` is message ``seq + i`` of ``size`` bytes; only the final
    one may (and, if ``last``, must) carry the last-message flag."""
    k = len(chunk)
    if k == 0:
        return
    if use_numpy:
        data = b"".join(chunk)
        # Every length >= size and the total == k * size: every length is exactly size.
        if len(data) == k * size and min(map(len, chunk)) == size:
            heads = _np.ndarray((k,), "<u8", data, 0, (size,))
            tails = _np.ndarray((k,), "<u8", data, size - 8, (size,))
            want = _np.arange(seq, seq + k, dtype=_np.uint64)
            want_tails = want ^ _np.uint64(MAGIC)
            if last:
                want[-1] |= _np.uint64(STOP)
            if _np.array_equal(heads, want) and _np.array_equal(tails, want_tails):
                return
    # Asked to, or something is wrong: check one by one (and say which message).
    for i, msg in enumerate(chunk):
        flagged = check(msg, seq + i, size)
        if flagged != (last and i == k - 1):
            raise IntegrityError(f"message {seq + i}: last-message flag {'set' if flagged else 'missing'}")
    if use_numpy:  # pragma: no cover - the bulk check and check() disagree
        raise IntegrityError(f"messages {seq}..{seq + k - 1}: bulk check failed")


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
        check(reply, seq, size)  # the whole reply, outside the timed round trip
        samples.append(t1 - t0)
        seq += 1
        n += 1
        if last:
            break
    _finish(ep)
    return samples


def echo(ep: Any, size: int) -> int:
    """Side B of a latency run: send every message back until the last one.

    Only the length and the last-message flag are looked at here; the pinger
    checks the echoed message completely (see the module docstring)."""
    send, recv = ep.send, ep.recv
    seq = 0
    while True:
        msg = recv()
        if len(msg) != size:
            raise IntegrityError(f"message {seq}: {len(msg)} bytes, expected {size}")
        last = msg[7] & 0x80
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
    send = ep.send
    send_many: Optional[Callable[[list], Any]] = getattr(ep, "send_many", None)
    batch = int(getattr(ep, "batch", 1)) if send_many is not None else 0
    if batch:  # at most BATCH_BYTES per batch: big messages go one or a few at a time
        batch = max(1, min(batch, BATCH_BYTES // size))
    small = size <= BULK_MAX
    pack = packer(size)
    bufs = [] if small else [bytearray(b"\0" * size) for _ in range(max(batch, 1))]  # touched before t0
    step = batch or (_CLOCK_EVERY if small else 1)
    n = 0
    t0 = clock()
    deadline = t0 + int(budget * 1e9)
    while True:
        # Regular messages, `step` at a time; the final one (flagged) goes separately below.
        k = min(step, max_n - 1 - n)
        if k <= 0 or (n + 1 >= min_n and clock() >= deadline):
            break
        first = base + n
        if small:
            if send_many is not None:
                send_many([pack(s, s ^ MAGIC) for s in range(first, first + k)])
            else:
                for s in range(first, first + k):
                    send(pack(s, s ^ MAGIC))
        elif send_many is not None:
            for i in range(k):
                stamp(bufs[i], first + i)
            send_many(bufs[:k])
        else:
            buf = bufs[0]
            for s in range(first, first + k):
                stamp(buf, s)
                send(buf)
        n += k
    seq = base + n
    if small:
        final: Any = pack(seq | STOP, seq ^ MAGIC)
    else:
        final = bufs[0]
        stamp(final, seq, last=True)
    if send_many is not None:
        send_many([final])
    else:
        send(final)
    n += 1
    if lossy:
        # A datagram transport may drop the final message too: repeat it a few times
        # (the receiver stops at the first copy and ignores the rest).
        for _ in range(5):
            time.sleep(0.002)
            send(final)
    _finish(ep)
    return t0, n


def stream_recv(ep: Any, size: int, lossy: bool = False, base: int = 0) -> tuple[int, int, int]:
    """Side B of a throughput run: returns (time the last message arrived and was checked, in ns, received, lost).

    ``lossy`` transports (UDP) may skip sequence numbers; each gap is counted as lost
    instead of failing the run, and older numbers (copies of an earlier run's last
    message) are skipped. Everything else must arrive complete and in order.
    """
    if lossy:
        received, lost = _recv_lossy(ep, size, base)
    elif size <= BULK_MAX:
        received, lost = _recv_bulk(ep, size, base), 0
    else:
        received, lost = _recv_each(ep, size, base), 0
    t1 = time.perf_counter_ns()
    _finish(ep)
    return t1, received, lost


def _recv_bulk(ep: Any, size: int, base: int) -> int:
    """Small messages: keep them, verify every CHUNK at once (check_chunk)."""
    recv = ep.recv
    recv_many = getattr(ep, "recv_many", None)
    seq = base
    last = False
    slots = range(CHUNK)
    try:
        while not last:
            chunk: list = []
            if recv_many is None:
                append = chunk.append
                for _ in slots:
                    msg = recv()
                    if msg.__class__ is not bytes:  # the endpoint may reuse what it handed out
                        msg = bytes(msg)
                    append(msg)
                    if msg[7] & 0x80:
                        last = True
                        break
            else:
                while len(chunk) < CHUNK:
                    got = recv_many()
                    chunk += got if all(map(_is_bytes, got)) else [m if _is_bytes(m) else bytes(m) for m in got]
                    if got[-1][7] & 0x80:
                        last = True
                        break
            check_chunk(chunk, seq, size, last)
            seq += len(chunk)
    except IndexError:  # msg[7] of a message under 8 bytes, or an empty batch
        raise IntegrityError(f"message {seq}..: a message shorter than 8 bytes, or an empty batch") from None
    return seq - base


def _recv_each(ep: Any, size: int, base: int) -> int:
    """Large messages: check each on arrival (a few hundred ns against many us of copying)."""
    recv = ep.recv
    recv_many = getattr(ep, "recv_many", None)
    seq = base
    while True:
        for msg in (recv(),) if recv_many is None else recv_many():
            last = check(msg, seq, size)
            seq += 1
            if last:
                return seq - base


def _recv_lossy(ep: Any, size: int, base: int) -> tuple[int, int]:
    recv = ep.recv
    seq = base
    received = lost = 0
    while True:
        msg = recv()
        if len(msg) >= 8:
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
            return received, lost
