"""backend="shm": a message queue in a POSIX shared-memory segment.

Why
---
Kernel queues are small (POSIX: 10 x 8 KiB here) and slow to wake; pipes copy
twice through the kernel. This queue is a ring buffer in ``/dev/shm/<name>``:
a message is copied once into the segment by the sender and once out by the
receiver (or not at all with ``recv_view``), and a waiting process that spins
briefly sees it without any system call. The whole enqueue (claim a slot, copy,
publish, wake) and dequeue are one C call each (``_ffi/csrc/shmqueue.c``, a unit
of its own with the header ``shmqueue.h``).

Segment layout (version 2)
--------------------------
::

    offset 0     header (1024 bytes)
                   magic "IPCKSHMQ", version, header size, capacity, slot stride,
                   max message size, segment size, check (a hash of the layout
                   fields and creator_ns), abandoned-slot counter, creator_ns (the
                   creator's pid namespace), foreign_ns flag, dropped counter [line 0]
                   tail: next position to write                          [+128]
                   head: next position to read                           [+256]
                   not_empty: futex seq, sleepers flag                   [+384]
                   not_full:  futex seq, sleepers flag                   [+512]
    offset 1024  slot 0, slot 1, ... slot capacity-1; each slot is a 64-byte header
                   word | length | owner record: tag, start time, pid namespace,
                   time namespace | spare
                 then the data (max message size, rounded up to 64)

Positions ``pos`` count up from 0 (64-bit, never wrap in practice); position
``pos`` lives in slot ``pos % capacity`` on lap ``pos // capacity``. The segment is
built unnamed (``O_TMPFILE`` in /dev/shm) and linked under its name only when
its header is complete, so an opener never sees a half-made queue, ``link()``'s
EEXIST gives ``create()`` its O_EXCL meaning, and a creator killed part-way
leaves nothing behind. Opening anything whose magic or version does not match
raises ``ValueError``; a header of ours whose size or layout hash disagrees is
corrupt (``CorruptError``, also a ``ValueError`` as it was before). ``attach``
reads the header once: the layout it validated is kept in the process-local
handle, and the segment's layout fields are never read again. The segment gets
its mode with ``fchmod`` (exact, whatever the umask), and is backed with
``posix_fallocate`` so a full ``/dev/shm`` is an ``IPCError(ENOSPC)`` at
``create()``, never a SIGBUS later. ``multiprocessing.shared_memory`` is not
used: its resource tracker unlinks segments at exit. ``ipckit ls`` recognises a
queue by the magic at offset 0, whatever its version.

The slot protocol
-----------------
Each slot's first word is the only synchronisation state of that slot::

    word = lap:40 | state:2 | pid:22        state: FREE, WRITING, FULL, READING

and it only ever changes by compare-and-swap (seq_cst). For position ``pos`` on
lap ``L``:

* producer: read ``tail``; if the slot's word is ``(L, FREE, 0)`` CAS it to
  ``(L, WRITING, me)`` -- that CAS *is* the claim, unique per position because
  ``(slot, lap)`` names one position. Then record who it is (below), CAS ``tail``
  from ``pos`` to ``pos+1`` (helping), copy the data and length in, and publish
  with CAS ``(L, WRITING, me) -> (L, FULL, 0)``. A word already claimed for ``L``
  means ``tail`` is stale: help it on and retry. A word of lap ``L-1`` means the
  ring is full at ``pos``.
* consumer: read ``head``; if the word is ``(L, FULL, 0)``, CAS it to
  ``(L, READING, me)``, record, help ``head`` on, read the length, copy out, and
  release with CAS ``(L, READING, me) -> (L+1, FREE, 0)``, which makes the slot
  free for the producer of ``pos + capacity``. ``(L, FREE)`` or ``(L-1, READING)``
  means empty; ``(L, WRITING)`` means a producer is mid-copy: wait for it.

``head``/``tail`` are hints that are never ahead of the truth (a position is
passed only after its slot was seen claimed), so any process can repair them,
and no process ever needs to finish another's step for the ring to move on --
except the step of an owner that is gone.

Exactly once and FIFO: a message is taken by the one consumer whose CAS moved
its word from FULL to READING; positions are claimed in order, so with one
producer the order is total, and with many each producer's order is kept.

What is checked (the segment is input)
--------------------------------------
Every process that opened the queue can write anything anywhere in the segment,
so nothing read from it is used before it is checked. A finding raises
``CorruptError`` (errno EBADMSG) naming what and where (the C side leaves the
details in a thread-local record, ``ipckit_shmq_last_problem``, so the hot calls
keep their few arguments); the handle stays usable and closable.

* Lengths: a message's length is read after its slot is claimed (it is stable
  then) and must be at most the ``max_message_size`` attach validated -- so no
  copy ever leaves the slot, let alone the mapping. A bad length is a
  ``CorruptError`` and that message is dropped (``ring_info()["dropped"]``), so the
  queue goes on. Every result (a length, a position, an offset) comes back in a
  named struct and every error as ``-errno``, never one in the other.
* Words: the fast path of a claim compares the whole word with the one expected.
  Any other word is judged against the hint it was reached by, and is legal only
  as some sequence of protocol steps leaves it: for the writer at ``tail = pos``,
  ``(L, taken)`` (tail lags by one), ``(L-1, not FREE)`` (full) or ``(L+1, FREE)``
  (the position was claimed and its owner recovered before tail moved); for the
  reader at ``head = pos``, ``(L, READING)``, ``(L, FREE)``, ``(L, WRITING)``,
  ``(L-1, READING)``, or a later lap for a position that ``tail`` has already
  passed. A FREE or FULL word carries no pid, a WRITING or READING word one. A
  word that breaks these rules is corrupt only if ``hint`` and word read again are
  unchanged (a consistent snapshot; laps and hints only grow), else it was a
  stale look and is looked at again. So a lap far ahead (the 2**40-lap spin of
  issue 9) is one ``CorruptError``, not 2**40 steps of "help tail on". A corrupt
  word stays where it is: every call that reaches it fails again, until the
  queue is made anew. A reader that sleeps on an empty position checks that
  ``head`` is not past ``tail + 1``.
* Loops: one look follows the hint at most 64 positions, then the caller checks
  ``closing``, its deadline and (sleeping) interrupts before looking again; no
  futex sleep is longer than 200 ms, so a lost wake-up (a peer scribbling on the
  event words) costs at most that; ``deadline=0`` gives up after 64 looks
  without ever sleeping. ``close()`` waits only for calls that each return
  within one such step.
* A shrunken file: a peer that ``ftruncate``\\ s the segment takes the pages
  from under every mapping, and the next access raises SIGBUS. The first queue
  a process opens installs a SIGBUS handler (chaining to the previous one) that
  recognises a fault inside a mapped queue, maps anonymous zero pages over the
  rest of that mapping and marks the handle broken: the access completes
  (reading zeros), whether it was C's copy or Python's (``recv`` of a large
  message, a ``recv_view``), and the call fails with ``CorruptError``. What
  cannot be prevented: a SIGBUS handler installed later that does not chain
  to this one (``faulthandler.enable()`` after the first queue was opened)
  ends the protection, and an array a user made from a ``recv_view`` and kept
  after ``close()`` is the user's own read.
* What no check can catch: a peer can write a plausible length or word, or
  overwrite data, and a reader then gets those bytes (never more than a slot);
  a hint moved by a whole multiple of 2**40 laps looks like the one it replaced
  (laps are 40 bits). Exactly-once and order are promises between honest
  processes.

Liveness: taking over a slot only from an owner provably gone
-------------------------------------------------------------
Killing a process can leave words it owned in WRITING or READING. A waiter that
finds the word it waits on unchanged for 2 ms asks, every 5 ms, whether the
owner is provably gone -- the same pid with the same start time no longer exists
-- and only then CASes that exact word to ``(L+1, FREE, 0)``: the slot counts as
consumed and ``ring_info()["abandoned"]`` goes up. The 22 pid bits leave no room
in the word for more, so right after its claim CAS an owner records in its slot
header its start time (``/proc/self/stat`` field 22), pid namespace and time
namespace (``/proc/self/ns/*`` inodes), then a tag: the claim word those belong
to. The judgement (``shmq_owner_gone``; ``csrc/procid.c`` reads /proc):

* ``kill(pid, 0)`` says ESRCH, or the process is a zombie with no live thread: gone.
  EPERM means it exists. A zombie leader whose other threads still run is alive.
* /proc does not show it (``hidepid``, a /proc of another pid namespace): alive.
* The record's pid namespace differs from the checker's: alive -- a pid means a
  process only in the namespace it was taken in. (Unknown namespaces, 0 on a
  system without ``/proc/self/ns``, compare equal.)
* Recorded start time (same time namespace) differs from the pid's current one:
  gone -- the pid was reused, so a reused pid never blocks a slot.
* The owner died between its claim CAS and its record (a few instructions): the
  tag does not match. Then its namespace is the creator's unless a process of
  another namespace ever attached (``foreign_ns``; then nothing can be proven and
  the slot stays held -- documented, and the only case where a dead owner holds a
  slot for good); and a process now holding the pid is gone-proof only if it
  started after the checker first saw the claim (its start time, in boot clock
  ticks, is later than the checker's ``CLOCK_BOOTTIME`` at that moment), since
  the owner existed before that.

Every doubt is "alive": a live owner wrongly taken for dead would have two
processes in one slot, a slot held too long only delays. A record is read
against the word it is for, and the recovery CAS names the exact word, so a
record read while a new owner writes it can only be used for a word that is no
longer there (the CAS fails). Publish and release are CAS from the owner's own
word, so even an owner wrongly judged dead cannot overwrite the slot's new life:
its CAS fails and its call raises ``IPCError(ESTALE)`` (a receiver then discards
what it copied).

* A producer killed before its claim CAS left nothing; after it, before its
  publish CAS, the slot is WRITING: a half-written message is never FULL, so it
  is never delivered; it is dropped by recovery.
* A consumer killed after its claim CAS took the message with it (it was
  delivered to that process, at most once); the slot is freed by recovery.
* A waiter killed while asleep leaves at most a stale ``sleepers`` flag, which
  costs one spurious wake-up.

Pids fit 22 bits (Linux's maximum ``pid_max`` is 2**22).

Waiting without burning a CPU
-----------------------------
A blocked call spins (with ``pause``) for ``spin_time`` (default 20 us, enough
to catch a Python peer's reply in a ping-pong; adaptive: a spin that ends in a
sleep anyway halves the next one, down to none with a full probe every 16th
wait, because when both processes share one CPU the spinner only delays the
peer it waits for), then sleeps on the event's futex word (shared, not PRIVATE)
with a relative timeout recomputed from an absolute CLOCK_MONOTONIC deadline: it
sets ``sleepers``, re-checks the ring, and waits on the ``seq`` value it read
before. Whoever makes progress does a seq_cst CAS, then reads ``sleepers``; only
if it is set does it clear it, bump ``seq`` and ``FUTEX_WAKE`` -- so the
uncontended path makes no system call, and by the seq_cst order either the
sleeper sees the progress or the waker sees the flag. While spinning, a waiter
pauses longer and longer (1 to 16 ``pause``) between looks: each look pulls the
slot's cache line away from the process about to write it. cffi releases the
GIL around every call, spins and sleeps included.

Timed calls, ``_wait.retry`` and ``ipckit.aio``
-----------------------------------------------
Each operation is one C call with a deadline, ``_try_send`` / ``_try_recv*`` (the
opening thread's receive, ``_try_recv_scratch``), returning the result or
``WOULD_BLOCK`` (deadline passed, would block, EINTR) and raising anything else.
An *attempt* is that call with the attempt's limit as its deadline:
``_attempt_send(data)``, ``_attempt_recv()``, ``_attempt_recv_into(buffer)``,
``_attempt_recv_view()``, ``_attempt_recv_many(max_count)``,
``_attempt_send_many(messages)`` (a ``_SendBatch``, which counts ``sent`` across
attempts). The C call waits on the futex itself, so the synchronous waiter is
``NO_WAIT``: a call makes its first try directly (with ``-1``, no deadline, when
``timeout=None``; the first try of send and recv is written out in full, the hot
path) and hands the attempt to ``_wait.retry`` only if that try did not complete:
EINTR, or a deadline that passed. With ``limit=NOW`` an attempt never blocks (no
spin, no sleep, at most 64 looks at the ring).

``ipckit.aio`` drives the same attempts with ``NOW`` and, between them, waits in a
worker thread with ``_send_waiter()`` / ``_recv_waiter()`` (``_Ready.wait(deadline)``):
``ipckit_shmq_wait_ready`` sleeps as a blocked claim would -- registered as a
sleeper, so that senders or receivers wake it -- recovers slots of owners proven
gone, and returns as soon as a claim may succeed, claiming nothing; so a cancelled
wait has consumed nothing, and ``_Ready.interrupt()`` ends a pending wait at once.
An attempt must be called in the thread that made it (the opening thread's
attempts use its private buffers).

The Python hot paths
--------------------
A 64-byte ``send`` or ``recv`` costs a few hundred nanoseconds, nearly all of
it interpreter and cffi call overhead, so each does one C call: ``send`` passes
``bytes`` as they are (cffi hands C their storage) and other buffers through
one ``ffi.from_buffer``; ``recv`` in the thread that opened the handle calls
``ipckit_shmq_recv_scratch(h, deadline)``, which copies the message into the
handle's buffer and its length into the handle's result struct, and makes the
result with one slice of an ``ffi.buffer`` over it (other threads pass a
buffer of their own). ``send_many``/``recv_many`` move a batch in one C call:
a list of ``bytes`` is checked and measured in C-level loops and joined once;
``recv_many`` copies the batch out with one ``tobytes`` and cuts it with bytes
slices. Across two CPUs the ring itself moves ~10 M messages/s from C, single
calls and batches alike; from Python a single call per message stays near
1-2 M/s (see docs/shm_queue.md), which is what batches are for.

Default sizing
--------------
Every slot is ``max_message_size`` bytes whatever the message, and positions cycle
through all slots, so a stream of messages of size ``m`` touches ``capacity x m``
bytes of the segment; once that falls out of the caches, both sides pay for it
(issue 11 measured one-way 1 MiB messages at 3.9-4.3 GB/s with 64 slots of 1 MiB and
6.2-7.4 GB/s with 8). The defaults are a byte budget of 8 MiB per queue: 8 slots of
1 MiB, so a default queue carries a 1 MiB message and its working set stays 8 MiB
for large messages and 8 x 128 bytes (a slot's header line and first data line) for
small ones. The cost: at most 8 messages in flight, which limits ``send_many`` /
``recv_many`` batches to 8 and costs small-message streams some throughput (here
~1.0-1.3 M/s single calls either way; batches of 64-byte messages ~3.8 M/s with 1024
slots, ~1.3 M/s with 8). A ring for many small messages is
``max_messages=1024, max_message_size=8192`` (the defaults before). Variable-length
records (below) would serve both with one default.

Threads and close
-----------------
A handle may be used from several threads. ``close()`` marks the handle closed,
wakes its blocked calls (they raise ``ClosedError``), waits until none of its
calls is inside C, releases any ``recv_view`` still held, and only then unmaps,
so closing from another thread never makes a call touch unmapped memory. If a
``recv_view`` memoryview was exported further (``numpy.frombuffer``), the
mapping stays until that export is dropped.

Growing the protocol
--------------------
A later layout can carry a message over several consecutive slots (a record of
k positions): the producer claims k positions in order, each by the same CAS,
marking all but the first as continuations, and publishes the first last; a
consumer claims the first and then the rest, which no other consumer can take
because their words say "continuation of a READING record". The checks above
extend to it: a continuation's lap and the record's total length are input like
any other. A new layout means a new ``IPCKIT_SHMQ_VERSION``.
"""

from __future__ import annotations

import array
import errno
import io
import itertools
import mmap
import os
import stat as _stat
import threading
from typing import Any, Callable, Iterable, Optional

from ._data import byte_view
from ._errors import CorruptError, ExistsError, IPCError, MessageTooLarge, Timeout, closed_error, error_from_errno, translate_oserror
from ._ffi import ffi, lib
from ._mqueue import Message, MessageQueue, MessageQueueStat, check_priority, check_receive_type, check_send_type, too_large
from ._naming import check_positive_int
from ._resource import FdHolder
from ._timeouts import FOREVER, Deadline, check_timeout
from ._wait import NOW, WOULD_BLOCK, Waiter, retry

SHM_DIR = "/dev/shm"
# A byte budget of 8 MiB: see "Default sizing" above.
DEFAULT_MAX_MESSAGES = 8
DEFAULT_MAX_MESSAGE_SIZE = 1 << 20
DEFAULT_SPIN_TIME = 20e-6
# recv() copies messages up to this size through a per-handle buffer in one C
# call; larger ones are copied straight from the slot into the new bytes object.
_SMALL = 64 * 1024
_BATCH = 256 * 1024
# Prefault the mapping (MAP_POPULATE) for segments up to this size.
_POPULATE_LIMIT = 256 * 1024 * 1024

_EINTR, _EAGAIN, _ETIMEDOUT, _EBADF, _EMSGSIZE, _ESTALE, _EBADMSG = (
    -errno.EINTR, -errno.EAGAIN, -errno.ETIMEDOUT, -errno.EBADF, -errno.EMSGSIZE, -errno.ESTALE, -errno.EBADMSG)
# What an attempt reports as WOULD_BLOCK: it could not complete within its limit.
_NOT_YET = frozenset((_EINTR, _EAGAIN, _ETIMEDOUT))

_get_ident = threading.get_ident
_send = lib.ipckit_shmq_send
_recv = lib.ipckit_shmq_recv
_recv_scratch = lib.ipckit_shmq_recv_scratch
_recv_many = lib.ipckit_shmq_recv_many
_from_buffer = ffi.from_buffer
_accumulate = itertools.accumulate
_is_bytes = bytes.__instancecheck__
_NULL = ffi.NULL


def _path(name: str) -> str:
    # What glibc's shm_open does: the name is a file in /dev/shm.
    return SHM_DIR + name


def _limit_ns(limit: Deadline) -> int:
    """The C deadline for an attempt's *limit*: -1 none, 0 never block (``NOW``,
    ``timeout=0``), else an absolute CLOCK_MONOTONIC time in ns."""
    if limit is FOREVER:
        return -1
    if limit is NOW or limit.timeout == 0:
        return 0
    return limit.end_ns()


def _pointer(data: Any, argument: str = "data", writable: bool = False) -> tuple:
    """``(pointer, nbytes)`` for C over any C-contiguous bytes-like object, no copy.

    Anything but bytes and bytearray is checked through a memoryview that is
    released at once, and then pointed at directly: a memoryview of ours that a
    cffi pointer holds a buffer of must not be left to the garbage collector (in a
    reference cycle -- through a traceback, say -- its tp_clear fails on the live
    export, and the interpreter crashes)."""
    cls = data.__class__
    if cls is bytes and not writable:  # cffi passes the bytes' own storage: no buffer to acquire
        return data, len(data)
    if cls is not bytearray:
        with byte_view(data, argument) as view:
            if writable and view.readonly:
                raise TypeError(f"{argument} must be writable")
            return _from_buffer(data, require_writable=writable), view.nbytes
    return _from_buffer(data), len(data)


# The fields of a result struct (ipckit_shmq_result), read from Python through a
# memoryview of its 64-bit words by these indexes: an item of a memoryview costs a
# third of a named field's look-up through cffi, which the hot paths notice.
_R_LEN, _R_COUNT, _R_USED, _R_POS, _R_OFFSET, _R_HELD = (
    ffi.offsetof("ipckit_shmq_result", field) // 8 for field in ("len", "count", "used", "pos", "offset", "held"))
assert ffi.sizeof("ipckit_shmq_result") == 48 and _R_LEN == 0


def _words(res: Any) -> memoryview:
    return memoryview(ffi.buffer(res)).cast("Q")


def _result() -> tuple:
    """A fresh result struct and the view of its words."""
    res = ffi.new("ipckit_shmq_result *")
    return res, _words(res)


class _CorruptHeader(CorruptError, ValueError):
    """A segment with our magic and version whose header disagrees with itself or
    with its size: corrupt content, and (as ``open()`` always said) a ``ValueError``."""


class _HeldMessage:
    """A message read in place (``recv_view``): a read-only memoryview of its
    slot, which stays claimed until ``release()`` / the end of the ``with``."""

    __slots__ = ("_queue", "_pos", "_view", "__weakref__")

    def __init__(self, queue: "ShmMessageQueue", pos: int, view: memoryview) -> None:
        self._queue = queue
        self._pos = pos
        self._view: Optional[memoryview] = view

    def __enter__(self) -> memoryview:
        if self._view is None:
            raise ValueError("this message view was already released")
        return self._view

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def release(self) -> None:
        """Free the slot; the view raises ``ValueError`` on any use afterwards."""
        view, self._view = self._view, None
        if view is None:
            return
        queue = self._queue
        queue._held.discard(self)
        try:
            view.release()
        except BufferError:
            queue._release_slot(self._pos)
            raise BufferError(
                "a buffer made from the recv_view memoryview (numpy.frombuffer, say) is still alive: "
                "copy the data before leaving the with block; the slot was freed anyway"
            ) from None
        queue._release_slot(self._pos)

    def __del__(self) -> None:
        try:
            self.release()
        except Exception:  # pragma: no cover - never raise from a finaliser
            pass


class _Ready(Waiter):
    """Wait, claiming nothing, until a send (*writer*) or a receive on *queue* may
    succeed, or the deadline passes: ``ipckit_shmq_wait_ready``, which sleeps on the
    ring's futex as a blocked claim would (with the GIL released). For ``ipckit.aio``,
    which calls ``wait()`` in a worker thread; ``interrupt()`` (from any thread) makes
    a pending ``wait()`` return at once. A closed queue returns at once too: the
    next attempt raises ``ClosedError``."""

    __slots__ = ("_queue", "_writer")

    def __init__(self, queue: "ShmMessageQueue", writer: bool) -> None:
        self._queue = queue
        self._writer = 1 if writer else 0

    @property
    def key(self) -> tuple:
        """What it watches: ``ipckit.aio`` keeps one observer per key."""
        return (self._queue, self._writer)

    def wait(self, deadline: Deadline) -> None:
        queue = self._queue
        rc = lib.ipckit_shmq_wait_ready(queue._h, self._writer, _limit_ns(deadline), _NULL)
        if rc and rc not in _NOT_YET and rc != _EBADF:
            raise queue._error(rc, "wait")

    def interrupt(self) -> None:
        lib.ipckit_shmq_interrupt(self._queue._h)

    def __repr__(self) -> str:
        return f"_Ready({self._queue.name!r}, {'send' if self._writer else 'recv'})"


class _SendBatch:
    """The attempt of ``send_many``: sends what is left of a checked batch -- joined,
    in one C call, or (too big to join: that would cost a copy each) one
    ``_try_send`` per message -- counting in ``sent`` across attempts."""

    __slots__ = ("_queue", "_items", "_data", "_lens", "_lens_ptr", "_res", "_rv", "sent")

    def __init__(self, queue: "ShmMessageQueue", items: list, lens: array.array) -> None:
        self._queue = queue
        self._lens = lens
        self.sent = 0
        self._items: Optional[list] = items
        if sum(lens) > _BATCH:
            self._data = None
            return
        self._items = None
        self._data = _from_buffer(b"".join(items))
        self._lens_ptr = ffi.from_buffer("uint64_t[]", lens)
        self._res, self._rv = (queue._res, queue._rv) if _get_ident() == queue._tid else _result()

    def __call__(self, limit: Deadline) -> Any:
        queue, lens, sent = self._queue, self._lens, self.sent
        deadline_ns = _limit_ns(limit)
        if self._data is None:
            items = self._items
            while sent < len(lens):
                try:
                    done = queue._try_send(_pointer(items[sent])[0], lens[sent], deadline_ns)  # type: ignore[index]
                except IPCError as failed:
                    failed.sent = sent  # type: ignore[attr-defined]
                    raise
                if done is WOULD_BLOCK:
                    self.sent = sent
                    return WOULD_BLOCK
                sent += 1
            self.sent = sent
            return sent
        if sent:
            rc = lib.ipckit_shmq_send_many(queue._h, self._data + sum(lens[:sent]), self._lens_ptr + sent, len(lens) - sent,
                                           deadline_ns, self._res)
        else:
            rc = lib.ipckit_shmq_send_many(queue._h, self._data, self._lens_ptr, len(lens), deadline_ns, self._res)
        if not rc:
            self.sent = len(lens)
            return self.sent
        self.sent = sent + self._rv[_R_COUNT]
        if rc in _NOT_YET:
            return WOULD_BLOCK
        exc = queue._error(rc, "send_many")
        exc.sent = self.sent  # type: ignore[attr-defined]
        raise exc


class ShmMessageQueue(MessageQueue):
    """``MessageQueue(backend="shm")``: a FIFO ring in POSIX shared memory.

    Any number of processes may send and receive; each message is delivered
    exactly once, in order per sender. Limits are only what ``/dev/shm`` holds:
    ``max_messages`` defaults to 8 and ``max_message_size`` to 1 MiB (see "Default
    sizing" in the module notes; pass ``max_messages=1024, max_message_size=8192`` for
    a ring tuned to many small messages).
    ``priority`` must be 0 (the queue is FIFO; anything else is ``ValueError``);
    ``type`` is checked and ignored, as on POSIX queues. There is no file
    descriptor to poll: ``fileno()`` raises ``io.UnsupportedOperation``. Content
    of the segment that no honest peer writes raises ``CorruptError``.
    """

    backend = "shm"

    def __init__(self, name: str, fd: int, mm: mmap.mmap, size: int) -> None:
        self.name = name
        self._fd = FdHolder(fd)
        self._mm = mm
        self._base = ffi.from_buffer(mm)
        h = ffi.new("ipckit_shmq *")
        self._h = h
        if lib.ipckit_shmq_attach(h, self._base, size) != 0:
            error = self._attach_error()
            self._unmap()
            self._fd.close()
            raise error
        h.spin_ns = h.spin_cur = int(DEFAULT_SPIN_TIME * 1e9)
        info = ffi.new("ipckit_shmq_info *")
        lib.ipckit_shmq_stat(h, info)
        self._capacity = int(info.capacity)
        self._max = int(info.max_msg)
        self._size = size
        self._mv = memoryview(mm)
        self._tid = _get_ident()
        self._small = max(1, min(self._max, _SMALL))
        # The creating thread's receive buffer and result: recv() copies a message
        # into it in the C call and makes the bytes from it (self._fb[0:n], one more
        # copy, cheaper than any per-call buffer). Other threads never touch them.
        self._scratch = bytearray(self._small)
        self._scratch_ptr = ffi.from_buffer(self._scratch)
        self._scratch_mv = memoryview(self._scratch)
        self._fb = ffi.buffer(self._scratch_ptr, self._small)
        h.scratch = self._scratch_ptr
        h.scratch_cap = self._small
        self._res = ffi.addressof(h, "res")
        self._rv = _words(self._res)
        self._batch: Optional[tuple] = None
        self._held: set = set()
        self._closed = False

    # ------------------------------------------------------------ create / open

    @classmethod
    def _create(cls, name: str, *, max_messages: Optional[int], max_message_size: Optional[int], mode: int) -> "ShmMessageQueue":
        capacity = DEFAULT_MAX_MESSAGES if max_messages is None else max_messages
        max_size = DEFAULT_MAX_MESSAGE_SIZE if max_message_size is None else max_message_size
        layout = ffi.new("ipckit_shmq_info *")
        if capacity >= 1 << 64 or max_size >= 1 << 64 or lib.ipckit_shmq_layout(capacity, max_size, layout) != 0:
            raise ValueError(
                f"max_messages={capacity} x max_message_size={max_size} is too large for a shm queue "
                "(max_message_size <= 2**48, max_messages <= 2**38, segment <= 2**56 bytes)"
            )
        size = int(layout.size)
        _check_space(size, capacity, max_size)
        path = _path(name)
        if os.path.lexists(path):  # early and cheap; link() below decides races
            raise ExistsError(errno.EEXIST, f"shm_open: {os.strerror(errno.EEXIST)}", name)
        # The segment is built as an unnamed O_TMPFILE and linked under its name
        # only once its header is complete, so no opener ever sees it half made
        # and a creator that dies part-way leaves nothing behind.
        fd = -1
        try:
            with translate_oserror("shm_open", filename=name):
                fd = os.open(SHM_DIR, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
                os.fchmod(fd, mode)
                os.ftruncate(fd, size)
                # Back every page now: ENOSPC here, not SIGBUS on a later write.
                os.posix_fallocate(fd, 0, size)
                mm = _map(fd, size)
            base = ffi.from_buffer(mm)
            rc = lib.ipckit_shmq_init(base, size, capacity, max_size)
            ffi.release(base)
            if rc != 0:  # pragma: no cover - layout() and init() agree by construction
                raise error_from_errno(-rc, "init shm queue")
            queue = cls(name, fd, mm, size)
        except BaseException:
            if fd >= 0:
                os.close(fd)
            raise
        try:
            rc = lib.ipckit_shmq_link_tmpfile(fd, os.fsencode(path))  # EEXIST if taken: O_EXCL
            if rc:
                raise error_from_errno(-rc, "shm_open", name)
        except BaseException:
            queue.close()
            raise
        return queue

    @classmethod
    def _open(cls, name: str) -> "ShmMessageQueue":
        with translate_oserror("shm_open", filename=name):
            fd = os.open(_path(name), os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        try:
            st = os.fstat(fd)
            if not _stat.S_ISREG(st.st_mode):
                raise ValueError(f"{name!r} is not an ipckit shm queue (not a shared-memory segment)")
            if st.st_size < lib.IPCKIT_SHMQ_HEADER_SIZE:
                raise ValueError(f"{name!r} is not an ipckit shm queue: the segment is only {st.st_size} bytes")
            with translate_oserror("mmap", filename=name):
                mm = _map(fd, st.st_size)
        except BaseException:
            os.close(fd)
            raise
        return cls(name, fd, mm, st.st_size)

    # ------------------------------------------------------------ send

    def send(self, data: Any, *, priority: int = 0, type: int = 1, timeout: Optional[float] = None) -> None:
        """Copy *data* (any C-contiguous bytes-like object) into the queue as one
        message. Blocks while the queue is full, up to *timeout*, then
        ``Timeout`` (nothing is enqueued). ``MessageTooLarge`` over
        ``max_message_size``, before anything is copied; ``ClosedError`` after
        ``close()``."""
        if priority or type != 1:
            self._check_send_extras(priority, type)
        if data.__class__ is bytes:
            ptr, n = data, len(data)
        else:
            ptr, n = _pointer(data)
        # The first attempt (_try_send), written out: one C call, which checks the
        # size first; its deadline is _limit_ns(deadline).
        if timeout is None:
            rc = _send(self._h, ptr, n, -1)
            if not rc:
                return
            deadline = FOREVER
        else:
            deadline = Deadline.from_user(timeout)
            rc = _send(self._h, ptr, n, deadline.end_ns() if timeout else 0)
            if not rc:
                return
        if rc not in _NOT_YET:
            raise self._send_error(rc, n, "send")
        retry(self._sender(ptr, n), deadline, "send")

    def _try_send(self, ptr: Any, n: int, deadline_ns: int) -> Any:
        rc = _send(self._h, ptr, n, deadline_ns)
        if not rc:
            return None
        if rc in _NOT_YET:
            return WOULD_BLOCK
        raise self._send_error(rc, n, "send")

    def _attempt_send(self, data: Any) -> Callable[[Deadline], Any]:
        """The attempt of ``send(data)`` (see the module notes)."""
        return self._sender(*_pointer(data))

    # The attempts are made here, not in the calls that retry them: a closure in a
    # method makes its captured locals cells, built on every call of the method.
    def _sender(self, ptr: Any, n: int) -> Callable[[Deadline], Any]:
        return lambda limit: self._try_send(ptr, n, _limit_ns(limit))

    def _send_waiter(self) -> _Ready:
        return _Ready(self, writer=True)

    def _send_op(self, data: Any, priority: Any = 0, type: Any = 1) -> tuple:
        """Check a send's arguments (``ClosedError``, ``TypeError``, ``MessageTooLarge``,
        ``ValueError``, in that order) and return ``(attempt, waiter)`` -- the pair every
        queue backend gives ``ipckit.aio`` (see ``_mqueue``)."""
        self._check_open()
        ptr, n = _pointer(data)
        if n > self._max:
            raise too_large(n, self._max, self)
        self._check_send_extras(priority, type)
        return self._sender(ptr, n), self._send_waiter()

    def send_many(self, messages: Iterable[Any], *, timeout: Optional[float] = None) -> None:
        """Send each of *messages* in order, in one C call for small ones.

        *timeout* bounds the whole batch. If it expires, ``Timeout`` is raised
        with ``exc.sent`` = how many messages were enqueued (the rest were not).
        Every message is checked (type, ``MessageTooLarge``) before any is sent.
        """
        batch = self._attempt_send_many(messages)
        deadline = FOREVER if timeout is None else Deadline.from_user(timeout)
        if batch is None or batch(deadline) is not WOULD_BLOCK:
            return
        try:
            retry(batch, deadline, "send_many")
        except Timeout as exc:
            exc.sent = batch.sent  # type: ignore[attr-defined]
            raise

    def _attempt_send_many(self, messages: Iterable[Any]) -> Optional[_SendBatch]:
        """Check every message of a batch, then its attempt (None: nothing to send)."""
        items = messages if messages.__class__ is list else list(messages)
        limit = self._max
        if all(map(_is_bytes, items)):  # the common case, in C-level loops
            lens = array.array("Q", map(len, items))
            biggest = max(lens, default=0)
            if biggest > limit:
                self._check_open()
                raise too_large(biggest, limit, self)
        else:
            lens = array.array("Q")
            for i, item in enumerate(items):
                if isinstance(item, bytes):
                    n = len(item)
                else:
                    with byte_view(item, "messages[%d]" % i) as view:
                        n = view.nbytes
                if n > limit:
                    self._check_open()
                    raise too_large(n, limit, self)
                lens.append(n)
        self._check_open()
        return _SendBatch(self, items, lens) if items else None

    def _check_send_extras(self, priority: object, type_: object) -> None:
        # One send() signature serves every backend, and each ignores the argument it
        # has no use for (SysV ignores priority, POSIX ignores type): code written for
        # one backend runs on another. Both are still checked.
        check_send_type(type_)
        check_priority(priority)

    # ------------------------------------------------------------ receive

    def recv(self, *, timeout: Optional[float] = None) -> bytes:
        """Take the next message; ``Timeout`` if none arrives within *timeout*."""
        if _get_ident() == self._tid:
            # The first attempt (_try_recv_scratch), written out: into
            # self._scratch, the result in h.res.
            if timeout is None:
                rc = _recv_scratch(self._h, -1)
                if not rc:
                    n = self._rv[0]  # _R_LEN; longer than the buffer: held in its slot
                    if n <= self._small:
                        return self._fb[0:n]
                    return self._take_held(self._rv)
                if rc not in _NOT_YET:
                    raise self._error(rc, "recv")
                deadline = FOREVER
            else:
                deadline = Deadline.from_user(timeout)
                result = self._try_recv_scratch(deadline.end_ns() if timeout else 0)  # _limit_ns(deadline)
                if result is not WOULD_BLOCK:
                    return result  # type: ignore[no-any-return]
        else:
            deadline = Deadline.from_user(timeout)
        return retry(self._attempt_recv(), deadline, "recv")  # type: ignore[no-any-return]

    def _try_recv_scratch(self, deadline_ns: int) -> Any:
        rc = _recv_scratch(self._h, deadline_ns)
        if not rc:
            n = self._rv[_R_LEN]
            return self._fb[0:n] if n <= self._small else self._take_held(self._rv)
        if rc in _NOT_YET:
            return WOULD_BLOCK
        raise self._error(rc, "recv")

    def _try_recv(self, res: Any, rv: memoryview, deadline_ns: int) -> Any:
        rc = _recv(self._h, _NULL, 0, 0, deadline_ns, res)
        if not rc:
            return self._take_held(rv) if rv[_R_HELD] else b""  # b"": an empty message
        if rc in _NOT_YET:
            return WOULD_BLOCK
        raise self._error(rc, "recv")

    def _attempt_recv(self) -> Callable[[Deadline], Any]:
        """The attempt of ``recv()``; call it in the thread that made it."""
        if _get_ident() == self._tid:
            return lambda limit: self._try_recv_scratch(_limit_ns(limit))
        return self._receiver(*_result())  # the handle's buffer and result belong to the opening thread

    def _receiver(self, res: Any, rv: memoryview) -> Callable[[Deadline], Any]:
        return lambda limit: self._try_recv(res, rv, _limit_ns(limit))

    def _recv_waiter(self) -> _Ready:
        return _Ready(self, writer=False)

    def _recv_op(self, type: Any = 0) -> tuple:
        """``(attempt, waiter)`` for a receive (see ``_send_op``); the attempt returns
        ``(data, None)`` as the other backends return ``(data, priority or type)``."""
        self._check_open()
        if check_receive_type(type) != 0:
            raise ValueError(f"shm queues have no message types: type must be 0, got {type}")
        recv = self._attempt_recv()

        def attempt(limit: Deadline) -> Any:
            data = recv(limit)
            return data if data is WOULD_BLOCK else (data, None)

        return attempt, self._recv_waiter()

    def receive(self, *, type: int = 0, timeout: Optional[float] = None) -> Message:
        """``Message(data)``; shm queues have no types, so *type* must be 0."""
        if check_receive_type(type) != 0:
            raise ValueError(f"shm queues have no message types: type must be 0, got {type}")
        return Message(self.recv(timeout=timeout))

    def recv_into(self, buffer: Any, *, timeout: Optional[float] = None) -> int:
        """Copy the next message into *buffer* (writable, C-contiguous) and return
        its length. A message longer than *buffer* raises ``MessageTooLarge`` and
        stays queued."""
        ptr, n, res, rv = self._into_args(buffer)
        if timeout is None:
            rc = _recv(self._h, ptr, n, 1, -1, res)  # the attempt, inlined
            if not rc:
                return rv[0]  # type: ignore[no-any-return]
            self._into_failed(rc, n, rv)
            deadline = FOREVER
        else:
            deadline = Deadline.from_user(timeout)
            result = self._try_recv_into(ptr, n, res, rv, _limit_ns(deadline))
            if result is not WOULD_BLOCK:
                return result  # type: ignore[no-any-return]
        return retry(self._receiver_into(ptr, n, res, rv), deadline, "recv_into")  # type: ignore[no-any-return]

    def _into_args(self, buffer: Any) -> tuple:
        ptr, n = _pointer(buffer, "buffer", writable=True)
        res, rv = (self._res, self._rv) if _get_ident() == self._tid else _result()
        return ptr, n, res, rv

    def _try_recv_into(self, ptr: Any, n: int, res: Any, rv: memoryview, deadline_ns: int) -> Any:
        rc = _recv(self._h, ptr, n, 1, deadline_ns, res)
        if not rc:
            return rv[_R_LEN]
        self._into_failed(rc, n, rv)
        return WOULD_BLOCK

    def _into_failed(self, rc: int, n: int, rv: memoryview) -> None:
        """Raise what a failed recv_into means, unless it just did not complete yet."""
        if rc in _NOT_YET:
            return
        if rc == _EMSGSIZE:
            raise MessageTooLarge(
                errno.EMSGSIZE, f"recv_into: the next message is {rv[_R_LEN]} bytes, over the {n}-byte buffer; it stays queued")
        raise self._error(rc, "recv_into")

    def _attempt_recv_into(self, buffer: Any) -> Callable[[Deadline], Any]:
        return self._receiver_into(*self._into_args(buffer))

    def _receiver_into(self, ptr: Any, n: int, res: Any, rv: memoryview) -> Callable[[Deadline], Any]:
        return lambda limit: self._try_recv_into(ptr, n, res, rv, _limit_ns(limit))

    def recv_view(self, *, timeout: Optional[float] = None) -> _HeldMessage:
        """Take the next message without copying it::

            with q.recv_view(timeout=1) as view:   # a read-only memoryview
                total = sum(view)

        The slot stays claimed (the ring cannot reuse it) until the ``with`` block
        ends; the view is released then and raises ``ValueError`` on any use.
        ``Timeout`` as for ``recv``. Another process with write access to the
        segment could change the bytes under the view: it is shared memory."""
        res, rv = _result()
        deadline = FOREVER if timeout is None else Deadline.from_user(timeout)
        result = self._try_recv_view(res, rv, _limit_ns(deadline))
        if result is WOULD_BLOCK:
            result = retry(self._viewer(res, rv), deadline, "recv_view")
        return result  # type: ignore[no-any-return]

    def _try_recv_view(self, res: Any, rv: memoryview, deadline_ns: int) -> Any:
        rc = _recv(self._h, _NULL, 0, 0, deadline_ns, res)
        if rc:
            if rc in _NOT_YET:
                return WOULD_BLOCK
            raise self._error(rc, "recv_view")
        if not rv[_R_HELD]:  # an empty message: nothing to hold
            return _HeldMessage(self, -1, memoryview(b""))
        offset, n = rv[_R_OFFSET], rv[_R_LEN]
        held = _HeldMessage(self, rv[_R_POS], self._mv[offset : offset + n].toreadonly())
        self._held.add(held)
        return held

    def _attempt_recv_view(self) -> Callable[[Deadline], Any]:
        return self._viewer(*_result())

    def _viewer(self, res: Any, rv: memoryview) -> Callable[[Deadline], Any]:
        return lambda limit: self._try_recv_view(res, rv, _limit_ns(limit))

    def recv_many(self, max_count: int = 128, *, timeout: Optional[float] = None) -> list:
        """Wait up to *timeout* for one message, then take up to *max_count*
        without waiting more; returns a non-empty list of ``bytes``."""
        check_positive_int(max_count, "max_count")
        batch = self._many_args(max_count)
        if timeout is None:
            deadline = FOREVER
            result = self._try_recv_many(batch, max_count, -1)
        else:
            deadline = Deadline.from_user(timeout)
            result = self._try_recv_many(batch, max_count, _limit_ns(deadline))
        if result is WOULD_BLOCK:
            result = retry(self._batcher(batch, max_count), deadline, "recv_many")
        return result  # type: ignore[no-any-return]

    def _many_args(self, max_count: int) -> tuple:
        """``(memoryview, pointer, capacity, lens, lens pointer, result, its view)``:
        the opening thread keeps one batch buffer; others get their own."""
        if _get_ident() == self._tid:
            if self._batch is None or len(self._batch[3]) < max_count:
                buf = bytearray(max(_BATCH, self._small))
                lens = array.array("Q", bytes(8 * max(max_count, 128)))
                self._batch = (memoryview(buf), _from_buffer(buf), len(buf), lens, ffi.from_buffer("uint64_t[]", lens),
                               self._res, self._rv)
            return self._batch
        buf = bytearray(max(_BATCH, self._small))
        lens = array.array("Q", bytes(8 * max_count))
        return (memoryview(buf), _from_buffer(buf), len(buf), lens, ffi.from_buffer("uint64_t[]", lens), *_result())

    def _try_recv_many(self, batch: tuple, max_count: int, deadline_ns: int) -> Any:
        mv, ptr, cap, lens, lens_ptr, res, rv = batch
        rc = _recv_many(self._h, ptr, cap, lens_ptr, max_count, deadline_ns, res)
        if rc:
            if rc in _NOT_YET:
                return WOULD_BLOCK
            raise self._error(rc, "recv_many")
        if rv[_R_HELD]:
            return [self._take_held(rv)]
        # One copy of the whole batch out of the buffer, then cut (bytes slicing is
        # cheaper than a memoryview slice + tobytes per message).
        blob = mv[: rv[_R_USED]].tobytes()
        result: list = []
        append = result.append
        start = 0
        for end in _accumulate(lens[: rv[_R_COUNT]]):
            append(blob[start:end])
            start = end
        return result

    def _attempt_recv_many(self, max_count: int) -> Callable[[Deadline], Any]:
        return self._batcher(self._many_args(max_count), max_count)

    def _batcher(self, batch: tuple, max_count: int) -> Callable[[Deadline], Any]:
        return lambda limit: self._try_recv_many(batch, max_count, _limit_ns(limit))

    def _take_held(self, rv: memoryview) -> bytes:
        """Copy a message that a receive left claimed in its slot, then free the slot."""
        pos, offset, n = rv[_R_POS], rv[_R_OFFSET], rv[_R_LEN]
        try:
            data = self._mv[offset : offset + n].tobytes()
        finally:
            self._release_slot(pos)
        return data

    def _release_slot(self, pos: int) -> None:
        if pos < 0:
            return
        rc = lib.ipckit_shmq_release(self._h, pos)
        if rc:
            raise self._error(rc, "release")

    # ------------------------------------------------------------ state

    def __len__(self) -> int:
        self._check_open()
        count = ffi.new("uint64_t *")
        if lib.ipckit_shmq_count(self._h, count):
            raise closed_error(self)
        return int(count[0])

    @property
    def max_messages(self) -> int:
        self._check_open()
        return self._capacity

    @property
    def max_message_size(self) -> int:
        self._check_open()
        return self._max

    @property
    def spin_time(self) -> float:
        """Seconds a blocked call may spin before sleeping (default 20 us). 0 sleeps at once.

        The spin adapts: while spins end without the wanted message (a peer on
        the same CPU cannot run while we spin), each halves the next one, down to
        none with an occasional full probe; a spin that pays restores this value."""
        self._check_open()
        return self._h.spin_ns / 1e9

    @spin_time.setter
    def spin_time(self, seconds: float) -> None:
        self._check_open()
        value = check_timeout(seconds, "spin_time")
        self._h.spin_ns = self._h.spin_cur = int((value or 0.0) * 1e9)

    def stat(self) -> MessageQueueStat:
        self._check_open()
        with translate_oserror("fstat", filename=self.name):
            st = os.fstat(self._fd.fd)
        return MessageQueueStat(
            backend="shm", messages=len(self), bytes=None, max_messages=self._capacity,
            max_message_size=self._max, max_bytes=None, last_send_pid=None, last_receive_pid=None,
            last_send_time=None, last_receive_time=None, last_change_time=None,
            uid=st.st_uid, mode=_stat.S_IMODE(st.st_mode),
        )

    def ring_info(self) -> dict:
        """The ring's internals: ``capacity``, ``slot_size`` (bytes per slot),
        ``segment_size``, ``head``/``tail`` positions, ``abandoned`` (slots
        recovered from processes that died holding them), ``dropped`` (messages
        dropped for a corrupt length), ``version``."""
        self._check_open()
        info = ffi.new("ipckit_shmq_info *")
        if lib.ipckit_shmq_stat(self._h, info):
            raise closed_error(self)
        return {
            "capacity": int(info.capacity), "slot_size": int(info.stride), "max_message_size": int(info.max_msg),
            "segment_size": int(info.size), "head": int(info.head), "tail": int(info.tail),
            "abandoned": int(info.abandoned), "dropped": int(info.dropped), "version": int(info.version),
        }

    def fileno(self) -> int:
        """A shm queue has no file descriptor to poll: ``io.UnsupportedOperation``."""
        self._check_open()
        raise io.UnsupportedOperation("a shm MessageQueue has no pollable file descriptor; use timeouts (or a posix queue)")

    def unlink(self) -> None:
        """Remove the name; handles already open keep working until closed."""
        with translate_oserror("shm_unlink", filename=self.name):
            os.unlink(_path(self.name))

    # ------------------------------------------------------------ errors and close

    def _send_error(self, rc: int, n: int, what: str) -> IPCError:
        if rc == _EMSGSIZE:
            return too_large(n, self._max, self)
        return self._error(rc, what)

    def _error(self, rc: int, what: str) -> IPCError:
        if rc == _EBADF:
            return closed_error(self)
        if rc == _EBADMSG:
            return CorruptError(f"{what}: shm queue {self.name!r} is corrupt: {_problem(self._max)}")
        if rc == _ESTALE:
            return IPCError(errno.ESTALE, f"{what}: the slot was reclaimed: another process judged this one dead")
        return error_from_errno(-rc, what)

    def _attach_error(self) -> Exception:
        problem = _last_problem()
        name = self.name
        if problem.reason == lib.IPCKIT_SHMQ_NOT_READY:
            return ValueError(f"{name!r} is not an ipckit shm queue (no magic number)")
        if problem.reason == lib.IPCKIT_SHMQ_BAD_MAGIC:
            return ValueError(f"{name!r} is not an ipckit shm queue (bad magic number)")
        if problem.reason == lib.IPCKIT_SHMQ_BAD_VERSION:
            return ValueError(
                f"{name!r} is an ipckit shm queue of layout version {problem.value}; "
                f"this ipckit reads version {lib.IPCKIT_SHMQ_VERSION}")
        if problem.reason == lib.IPCKIT_SHMQ_SHRUNK:
            return CorruptError(f"{name!r}: {_problem(0, problem)}")
        return _CorruptHeader(errno.EBADMSG, f"{name!r} is not a valid ipckit shm queue (inconsistent header or size)")

    def _close(self) -> None:
        for held in list(self._held):
            try:
                held.release()
            except (BufferError, IPCError):
                pass
        lib.ipckit_shmq_close(self._h)  # no call of this handle is inside C after this
        self._unmap()
        self._fd.close()

    def _unmap(self) -> None:
        for view in (getattr(self, "_mv", None), getattr(self, "_scratch_mv", None), getattr(self, "_rv", None)):
            if view is not None:
                view.release()
        self._batch = None
        ffi.release(self._base)
        try:
            self._mm.close()
        except BufferError:
            pass  # a user's export of a recv_view is alive; the mapping goes with it
        lib.ipckit_shmq_detach(self._h)


def _last_problem() -> Any:
    problem = ffi.new("ipckit_shmq_problem *")
    lib.ipckit_shmq_last_problem(problem)
    return problem


_STATES = ("FREE", "WRITING", "FULL", "READING")


def _problem(max_size: int, problem: Any = None) -> str:
    """What the last -EBADMSG of this thread found, in words."""
    if problem is None:
        problem = _last_problem()
    reason, value, where = problem.reason, int(problem.value), int(problem.where)
    if reason == lib.IPCKIT_SHMQ_BAD_LENGTH:
        return f"slot {where} holds a message length of {value} bytes, over max_message_size={max_size} (the message was dropped)"
    if reason == lib.IPCKIT_SHMQ_BAD_WORD:
        return (f"slot {where} has the control word {value:#018x} (lap {value >> 24}, {_STATES[value >> 22 & 3]}, "
                f"pid {value & 0x3FFFFF}), which no step of the protocol leaves there")
    if reason == lib.IPCKIT_SHMQ_BAD_POSITION:
        return f"the read position {value} is past the write position {where}"
    if reason == lib.IPCKIT_SHMQ_SHRUNK:
        return f"its file was truncated below the {where} bytes mapped (by another process)"
    return f"reason {reason}, value {value}, at {where}"  # pragma: no cover - every reason is named above


def _map(fd: int, size: int) -> mmap.mmap:
    flags = mmap.MAP_SHARED
    if size <= _POPULATE_LIMIT:
        flags |= getattr(mmap, "MAP_POPULATE", 0)
    return mmap.mmap(fd, size, flags=flags, prot=mmap.PROT_READ | mmap.PROT_WRITE)


def _check_space(size: int, capacity: int, max_size: int) -> None:
    try:
        st = os.statvfs(SHM_DIR)
    except OSError:  # pragma: no cover
        return
    free = st.f_bavail * st.f_frsize
    if size > free:
        raise IPCError(
            errno.ENOSPC,
            f"a shm queue of max_messages={capacity} x max_message_size={max_size} needs {size} bytes "
            f"but {SHM_DIR} has {free} bytes free",
        )


__all__ = ["ShmMessageQueue"]
