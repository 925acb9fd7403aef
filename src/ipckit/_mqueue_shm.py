"""backend="shm": a message queue in a POSIX shared-memory segment.

Why
---
Kernel queues are small (POSIX: 10 x 8 KiB here) and slow to wake; pipes copy
twice through the kernel. This queue is a ring buffer in ``/dev/shm/<name>``:
a message is copied once into the segment by the sender and once out by the
receiver (or not at all with ``recv_view``), and a waiting process that spins
briefly sees it without any system call. The whole enqueue (claim a slot, copy,
publish, wake) and dequeue are one C call each (``_ffi/csrc/shmqueue.c``).

Segment layout
--------------
::

    offset 0     header (1024 bytes)
                   magic "IPCKSHMQ", version, header size, capacity, slot stride,
                   max message size, segment size, check (a hash of the layout
                   fields), abandoned-slot counter                       [line 0]
                   tail: next position to write                          [+128]
                   head: next position to read                           [+256]
                   not_empty: futex seq, sleepers flag                   [+384]
                   not_full:  futex seq, sleepers flag                   [+512]
    offset 1024  slot 0, slot 1, ... slot capacity-1; each slot is
                   word (u64) | length (u64) | padding to 64 | data (max size, 64-aligned)

Positions ``pos`` count up from 0 (64-bit, never wrap in practice); position
``pos`` lives in slot ``pos % capacity`` on lap ``pos // capacity``. The segment is
built unnamed (``O_TMPFILE`` in /dev/shm) and linked under its name only when
its header is complete, so an opener never sees a half-made queue, ``link()``'s
EEXIST gives ``create()`` its O_EXCL meaning, and a creator killed part-way
leaves nothing behind. Opening anything whose magic,
version, size or layout hash does not match raises ``ValueError`` and maps
nothing further. The segment gets its mode with ``fchmod`` (exact, whatever the umask), and is backed with ``posix_fallocate``
so a full ``/dev/shm`` is an ``IPCError(ENOSPC)`` at ``create()``, never a
SIGBUS later. ``multiprocessing.shared_memory`` is not used: its resource
tracker unlinks segments at exit.

The slot protocol
-----------------
Each slot's first word is the only synchronisation state of that slot::

    word = lap:40 | state:2 | pid:22        state: FREE, WRITING, FULL, READING

and it only ever changes by compare-and-swap (seq_cst). For position ``pos`` on
lap ``L``:

* producer: read ``tail``; if the slot's word is ``(L, FREE, 0)`` CAS it to
  ``(L, WRITING, me)`` -- that CAS *is* the claim, unique per position because
  ``(slot, lap)`` names one position. Then CAS ``tail`` from ``pos`` to ``pos+1``
  (helping), copy the data and length in, and publish with CAS
  ``(L, WRITING, me) -> (L, FULL, 0)``. A word already claimed for ``L`` (or a
  later lap) means ``tail`` is stale: help it on and retry. A word of lap ``L-1``
  means the ring is full at ``pos``.
* consumer: read ``head``; if the word is ``(L, FULL, 0)``, read the length, CAS
  to ``(L, READING, me)``, help ``head`` on, copy out, and release with CAS
  ``(L, READING, me) -> (L+1, FREE, 0)``, which makes the slot free for the
  producer of ``pos + capacity``. ``(L, FREE)`` or a lap ``L-1`` word means
  empty; ``(L, WRITING)`` means a producer is mid-copy: wait for it.

``head``/``tail`` are hints that are never ahead of the truth (a position is
passed only after its slot was seen claimed), so any process can repair them,
and no process ever needs to finish another's step for the ring to move on --
except the step of an owner that died.

Exactly once and FIFO: a message is taken by the one consumer whose CAS moved
its word from FULL to READING; positions are claimed in order, so with one
producer the order is total, and with many each producer's order is kept.

Crash safety (SIGKILL at any instruction)
-----------------------------------------
Killing a process can only leave words it owned in WRITING or READING, each
naming its pid, and ``head``/``tail`` one step behind (which the next caller
repairs). A waiter that finds the word it waits on unchanged for 2 ms checks
the owner (``kill(pid, 0)``, then ``/proc/pid/stat`` for zombies) every 5 ms;
if the owner is dead it CASes that exact word to ``(L+1, FREE, 0)``: the slot
counts as consumed and ``stat``'s ``abandoned`` counter goes up.

* A producer killed before its claim CAS left nothing; after it, before its
  publish CAS, the slot is WRITING: a half-written message is never FULL, so it
  is never delivered; it is dropped by recovery.
* A consumer killed after its claim CAS took the message with it (it was
  delivered to that process, at most once); the slot is freed by recovery.
* Publish and release are CAS from the owner's own word, so even an owner
  wrongly judged dead cannot overwrite the slot's new life: its CAS fails and
  its call raises ``IPCError(ESTALE)`` (a receiver then discards what it copied,
  which might be torn).
* A waiter killed while asleep leaves at most a stale ``sleepers`` flag, which
  costs one spurious wake-up.

Assumptions: every user of a queue is in one pid namespace (pids are compared);
a dead owner's pid reused by a new process looks alive, so the slot waits until
that process exits too (no corruption, a delay); a process whose main thread
exits while others run looks like a zombie. Pids must fit 22 bits (Linux's
maximum ``pid_max`` is 2**22).

Waiting without burning a CPU
-----------------------------
A blocked call spins (with ``pause``) for ``spin_time`` (default 20 us, enough
to catch a Python peer's reply in a ping-pong; adaptive: a spin that ends in a
sleep anyway halves the next one, down to none with a full probe every 16th
wait, because when both processes share one CPU the spinner only delays the
peer it waits for), then sleeps on the event's
futex word (shared, not PRIVATE) with a relative timeout recomputed from an
absolute CLOCK_MONOTONIC deadline: it sets ``sleepers``, re-checks the ring,
and waits on the ``seq`` value it read before. Whoever makes progress does a
seq_cst CAS, then reads ``sleepers``; only if it is set does it clear it, bump
``seq`` and ``FUTEX_WAKE`` -- so the uncontended path makes no system call, and
by the seq_cst order either the sleeper sees the progress or the waker sees the
flag. While spinning, a waiter pauses longer and longer (1 to 16 ``pause``)
between looks: each look pulls the slot's cache line away from the process
about to write it. cffi releases the GIL around every call, spins and sleeps
included; it has no per-function switch, and the release costs ~30-50 ns of
the ~150 ns a non-blocking call costs, so the hot paths instead keep the
number of calls and arguments down.

The Python hot paths
--------------------
A 64-byte ``send`` or ``recv`` costs a few hundred nanoseconds, nearly all of
it interpreter and cffi call overhead, so each does one C call: ``send`` passes
``bytes`` as they are (cffi hands C their storage) and other buffers through
one ``ffi.from_buffer``; ``recv`` in the thread that opened the handle calls
``ipckit_shmq_recv_scratch(h, deadline)``, which copies the message into the
handle's buffer, and makes the result with one slice of an ``ffi.buffer`` over
it (other threads pass a buffer of their own). A deadline is computed only if
a timeout was given. ``send_many``/``recv_many`` move a batch in one C call:
a list of ``bytes`` is checked and measured in C-level loops and joined once;
``recv_many`` copies the batch out with one ``tobytes`` and cuts it with bytes
slices. Across two CPUs the ring itself moves ~10 M messages/s from C, single
calls and batches alike; from Python a single call per message stays near
1-2 M/s (see docs/shm_queue.md), which is what batches are for.

Threads and close
-----------------
A handle may be used from several threads. ``close()`` marks the handle closed,
wakes its blocked calls (they raise ``ClosedError``), waits until none of its
calls is inside C, releases any ``recv_view`` still held, and only then unmaps,
so closing from another thread never makes a call touch unmapped memory. If a
``recv_view`` memoryview was exported further (``numpy.frombuffer``), the
mapping stays until that export is dropped.
"""

from __future__ import annotations

import array
import errno
import io
import itertools
import math
import mmap
import os
import stat as _stat
import threading
import time
from typing import Any, Iterable, Optional

from ._data import byte_view
from ._errors import ExistsError, IPCError, MessageTooLarge, Timeout, closed_error, error_from_errno, translate_oserror
from ._ffi import ffi, lib
from ._mqueue import Message, MessageQueue, MessageQueueStat, check_priority, check_receive_type, check_send_type, too_large
from ._naming import check_positive_int
from ._resource import FdHolder
from ._timeouts import check_timeout

SHM_DIR = "/dev/shm"
DEFAULT_MAX_MESSAGES = 1024
DEFAULT_MAX_MESSAGE_SIZE = 8192
DEFAULT_SPIN_TIME = 20e-6
# recv() copies messages up to this size through a per-handle buffer in one C
# call; larger ones are copied straight from the slot into the new bytes object.
_SMALL = 64 * 1024
_BATCH = 256 * 1024
# Prefault the mapping (MAP_POPULATE) for segments up to this size.
_POPULATE_LIMIT = 256 * 1024 * 1024

_EINTR, _EAGAIN, _ETIMEDOUT, _EBADF, _EMSGSIZE, _ESTALE = (
    -errno.EINTR, -errno.EAGAIN, -errno.ETIMEDOUT, -errno.EBADF, -errno.EMSGSIZE, -errno.ESTALE)

_get_ident = threading.get_ident
_monotonic_ns = time.monotonic_ns  # CLOCK_MONOTONIC on Linux: the clock the C side uses
_send = lib.ipckit_shmq_send
_recv = lib.ipckit_shmq_recv
_recv_scratch = lib.ipckit_shmq_recv_scratch
_recv_many = lib.ipckit_shmq_recv_many
_from_buffer = ffi.from_buffer
_HELD = lib.IPCKIT_SHMQ_HELD
_accumulate = itertools.accumulate
_is_bytes = bytes.__instancecheck__


def _path(name: str) -> str:
    # What glibc's shm_open does: the name is a file in /dev/shm.
    return SHM_DIR + name


def _deadline_ns(timeout: object) -> int:
    """The absolute CLOCK_MONOTONIC deadline for the C side: -1 none, 0 don't block."""
    seconds = check_timeout(timeout)
    if seconds is None:
        return -1
    if seconds == 0:
        return 0
    return _monotonic_ns() + max(1, math.ceil(seconds * 1e9))


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


class ShmMessageQueue(MessageQueue):
    """``MessageQueue(backend="shm")``: a FIFO ring in POSIX shared memory.

    Any number of processes may send and receive; each message is delivered
    exactly once, in order per sender. Limits are only what ``/dev/shm`` holds:
    ``max_messages`` defaults to 1024 and ``max_message_size`` to 8192.
    ``priority`` must be 0 (the queue is FIFO; anything else is ``ValueError``);
    ``type`` is checked and ignored, as on POSIX queues. There is no file
    descriptor to poll: ``fileno()`` raises ``io.UnsupportedOperation``.
    """

    backend = "shm"

    def __init__(self, name: str, fd: int, mm: mmap.mmap, size: int) -> None:
        self.name = name
        self._fd = FdHolder(fd)
        self._mm = mm
        self._base = ffi.from_buffer(mm)
        h = ffi.new("ipckit_shmq *")
        version = ffi.new("uint32_t *")
        rc = lib.ipckit_shmq_attach(h, self._base, size, version)
        if rc != 0:
            self._unmap()
            self._fd.close()
            raise _attach_error(rc, name, version[0])
        h.spin_ns = h.spin_cur = int(DEFAULT_SPIN_TIME * 1e9)
        self._h = h
        info = ffi.new("uint64_t[8]")
        lib.ipckit_shmq_stat(h, info)
        self._capacity = int(info[0])
        self._max = int(info[2])
        self._size = size
        self._mv = memoryview(mm)
        self._tid = _get_ident()
        self._small = max(1, min(self._max, _SMALL))
        # The creating thread's receive buffer: recv() copies a message into it in
        # the C call and makes the bytes from it (self._fb[0:n], one more copy,
        # cheaper than any per-call buffer). Other threads never touch it.
        self._scratch = bytearray(self._small)
        self._scratch_ptr = ffi.from_buffer(self._scratch)
        self._scratch_mv = memoryview(self._scratch)
        self._fb = ffi.buffer(self._scratch_ptr, self._small)
        h.scratch = self._scratch_ptr
        h.scratch_cap = self._small
        self._out = h.out
        self._batch: Optional[tuple] = None
        self._held: set = set()
        self._closed = False

    # ------------------------------------------------------------ create / open

    @classmethod
    def _create(cls, name: str, *, max_messages: Optional[int], max_message_size: Optional[int], mode: int) -> "ShmMessageQueue":
        capacity = DEFAULT_MAX_MESSAGES if max_messages is None else max_messages
        max_size = DEFAULT_MAX_MESSAGE_SIZE if max_message_size is None else max_message_size
        stride = ffi.new("uint64_t *")
        size = lib.ipckit_shmq_layout(capacity, max_size, stride)
        if size == 0:
            raise ValueError(
                f"max_messages={capacity} x max_message_size={max_size} is too large for a shm queue "
                "(max_message_size <= 2**48, max_messages <= 2**38, segment <= 2**56 bytes)"
            )
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
            fd = os.open(_path(name), os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
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
        cls = data.__class__
        if cls is bytes:  # cffi passes the bytes' own storage: no buffer to acquire
            n = len(data)
            ptr = data
        elif cls is bytearray:
            n = len(data)
            ptr = _from_buffer(data)
        elif cls is memoryview and data.c_contiguous:
            n = data.nbytes
            ptr = _from_buffer(data)
        else:
            view = byte_view(data)
            n = view.nbytes
            ptr = _from_buffer(view)
        deadline = -1 if timeout is None else _deadline_ns(timeout)
        rc = _send(self._h, ptr, n, deadline)  # checks the size before anything else
        if not rc:
            return
        while rc == _EINTR:  # a Python signal handler runs here; same deadline
            rc = _send(self._h, ptr, n, deadline)
        if rc:
            if rc == _EMSGSIZE:
                raise too_large(n, self._max, self)
            raise self._error(rc, "send", timeout)

    def send_many(self, messages: Iterable[Any], *, timeout: Optional[float] = None) -> None:
        """Send each of *messages* in order, in one C call for small ones.

        *timeout* bounds the whole batch. If it expires, ``Timeout`` is raised
        with ``exc.sent`` = how many messages were enqueued (the rest were not).
        Every message is checked (type, ``MessageTooLarge``) before any is sent.
        """
        items = messages if messages.__class__ is list else list(messages)
        limit = self._max
        if all(map(_is_bytes, items)):  # the common case, in C-level loops
            lens = array.array("Q", map(len, items))
            biggest = max(lens, default=0)
            if biggest > limit:
                self._check_open()
                raise too_large(biggest, limit, self)
        else:
            views: list = []
            lens = array.array("Q")
            for item in items:
                if not isinstance(item, bytes):
                    item = byte_view(item, "messages[%d]" % len(views))
                n = len(item) if isinstance(item, bytes) else item.nbytes
                if n > limit:
                    self._check_open()
                    raise too_large(n, limit, self)
                views.append(item)
                lens.append(n)
            items = views
        deadline = -1 if timeout is None else _deadline_ns(timeout)
        self._check_open()
        if not items:
            return
        if sum(lens) > _BATCH:  # big messages: joining them would cost a copy each
            self._send_each(items, lens, deadline, timeout)
            return
        data = b"".join(items)
        err = ffi.new("int64_t *")
        data_ptr = ffi.from_buffer(data)
        lens_ptr = ffi.from_buffer("uint64_t[]", lens)
        count = len(items)
        sent = 0
        while True:
            sent += lib.ipckit_shmq_send_many(self._h, data_ptr, lens_ptr + sent, count - sent, deadline, err)
            if err[0] != _EINTR:
                break
            data_ptr = ffi.from_buffer(data) + sum(lens[:sent])
        if err[0]:
            exc = self._error(err[0], "send_many", timeout)
            exc.sent = sent  # type: ignore[attr-defined]
            raise exc

    def _send_each(self, items: list, lens: array.array, deadline: int, timeout: object) -> None:
        for sent, item in enumerate(items):
            ptr = item if item.__class__ is bytes else _from_buffer(item)
            rc = _send(self._h, ptr, lens[sent], deadline)
            while rc == _EINTR:
                rc = _send(self._h, ptr, lens[sent], deadline)
            if rc:
                exc = self._error(rc, "send_many", timeout)
                exc.sent = sent  # type: ignore[attr-defined]
                raise exc

    def _check_send_extras(self, priority: object, type_: object) -> None:
        # One send() signature serves every backend, and each ignores the argument it
        # has no use for (SysV ignores priority, POSIX ignores type): code written for
        # one backend runs on another. Both are still checked.
        check_send_type(type_)
        check_priority(priority)

    # ------------------------------------------------------------ receive

    def recv(self, *, timeout: Optional[float] = None) -> bytes:
        """Take the next message; ``Timeout`` if none arrives within *timeout*."""
        deadline = -1 if timeout is None else _deadline_ns(timeout)
        if _get_ident() == self._tid:
            rc = _recv_scratch(self._h, deadline)  # into self._scratch, result words in h.out
            if 0 <= rc < _HELD:
                return self._fb[0:rc]
            out = self._out
        else:  # the per-handle buffer belongs to the creating thread
            out = ffi.new("int64_t[4]")
            rc = _recv(self._h, ffi.NULL, 0, 0, deadline, out)
        while rc == _EINTR:
            rc = _recv(self._h, ffi.NULL, 0, 0, deadline, out)
        if rc < 0:
            raise self._error(rc, "recv", timeout)
        if rc >= _HELD:
            return self._take_held(out)
        return b""  # an empty message, taken without a buffer

    def receive(self, *, type: int = 0, timeout: Optional[float] = None) -> Message:
        """``Message(data)``; shm queues have no types, so *type* must be 0."""
        if check_receive_type(type) != 0:
            raise ValueError(f"shm queues have no message types: type must be 0, got {type}")
        return Message(self.recv(timeout=timeout))

    def recv_into(self, buffer: Any, *, timeout: Optional[float] = None) -> int:
        """Copy the next message into *buffer* (writable, C-contiguous) and return
        its length. A message longer than *buffer* raises ``MessageTooLarge`` and
        stays queued."""
        view = byte_view(buffer, "buffer")
        if view.readonly:
            raise TypeError("buffer must be writable")
        deadline = -1 if timeout is None else _deadline_ns(timeout)
        out = self._out if _get_ident() == self._tid else ffi.new("int64_t[4]")
        ptr = ffi.from_buffer(view)
        n = view.nbytes
        rc = _recv(self._h, ptr, n, 1, deadline, out)
        while rc == _EINTR:
            rc = _recv(self._h, ptr, n, 1, deadline, out)
        if rc == _EMSGSIZE:
            raise MessageTooLarge(
                errno.EMSGSIZE, f"recv_into: the next message is {out[2]} bytes, over the {n}-byte buffer; it stays queued")
        if rc < 0:
            raise self._error(rc, "recv_into", timeout)
        return rc

    def recv_view(self, *, timeout: Optional[float] = None) -> _HeldMessage:
        """Take the next message without copying it::

            with q.recv_view(timeout=1) as view:   # a read-only memoryview
                total = sum(view)

        The slot stays claimed (the ring cannot reuse it) until the ``with`` block
        ends; the view is released then and raises ``ValueError`` on any use.
        ``Timeout`` as for ``recv``."""
        deadline = -1 if timeout is None else _deadline_ns(timeout)
        out = ffi.new("int64_t[4]")
        rc = _recv(self._h, ffi.NULL, 0, 0, deadline, out)
        while rc == _EINTR:
            rc = _recv(self._h, ffi.NULL, 0, 0, deadline, out)
        if rc < 0:
            raise self._error(rc, "recv_view", timeout)
        if rc < _HELD:  # an empty message: nothing to hold
            return _HeldMessage(self, -1, memoryview(b""))
        offset, n = int(out[1]), int(out[2])
        held = _HeldMessage(self, int(out[0]) - 1, self._mv[offset : offset + n].toreadonly())
        self._held.add(held)
        return held

    def recv_many(self, max_count: int = 128, *, timeout: Optional[float] = None) -> list:
        """Wait up to *timeout* for one message, then take up to *max_count*
        without waiting more; returns a non-empty list of ``bytes``."""
        check_positive_int(max_count, "max_count")
        deadline = -1 if timeout is None else _deadline_ns(timeout)
        if _get_ident() == self._tid:
            if self._batch is None or len(self._batch[3]) < max_count:
                buf = bytearray(max(_BATCH, self._small))
                lens = array.array("Q", bytes(8 * max(max_count, 128)))
                self._batch = (memoryview(buf), ffi.from_buffer(buf), len(buf), lens, ffi.from_buffer("uint64_t[]", lens))
            mv, ptr, cap, lens, lens_ptr = self._batch
            out = self._out
        else:
            buf = bytearray(max(_BATCH, self._small))
            lens = array.array("Q", bytes(8 * max_count))
            mv, ptr, cap, lens_ptr = memoryview(buf), ffi.from_buffer(buf), len(buf), ffi.from_buffer("uint64_t[]", lens)
            out = ffi.new("int64_t[4]")
        rc = _recv_many(self._h, ptr, cap, lens_ptr, max_count, deadline, out)
        while rc == _EINTR:
            rc = _recv_many(self._h, ptr, cap, lens_ptr, max_count, deadline, out)
        if rc < 0:
            raise self._error(rc, "recv_many", timeout)
        if out[0]:
            return [self._take_held(out)]
        # One copy of the whole batch out of the buffer, then cut (bytes slicing is
        # cheaper than a memoryview slice + tobytes per message).
        blob = mv[: out[3]].tobytes()
        result: list = []
        append = result.append
        start = 0
        for end in _accumulate(lens[:rc]):
            append(blob[start:end])
            start = end
        return result

    def _take_held(self, out: Any) -> bytes:
        """Copy a message that recv() left claimed in its slot, then free the slot."""
        pos, offset, n = int(out[0]) - 1, int(out[1]), int(out[2])
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
        return int(lib.ipckit_shmq_count(self._h))

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
        recovered from processes that died holding them), ``version``."""
        self._check_open()
        info = ffi.new("uint64_t[8]")
        lib.ipckit_shmq_stat(self._h, info)
        keys = ("capacity", "slot_size", "max_message_size", "segment_size", "head", "tail", "abandoned", "version")
        return {k: int(info[i]) for i, k in enumerate(keys)}

    def fileno(self) -> int:
        """A shm queue has no file descriptor to poll: ``io.UnsupportedOperation``."""
        self._check_open()
        raise io.UnsupportedOperation("a shm MessageQueue has no pollable file descriptor; use timeouts (or a posix queue)")

    def unlink(self) -> None:
        """Remove the name; handles already open keep working until closed."""
        with translate_oserror("shm_unlink", filename=self.name):
            os.unlink(_path(self.name))

    # ------------------------------------------------------------ close

    def _error(self, rc: int, what: str, timeout: object = None) -> IPCError:
        if rc == _EAGAIN or rc == _ETIMEDOUT:
            return Timeout(errno.ETIMEDOUT, f"{what} timed out after {timeout} s")
        if rc == _EBADF:
            return closed_error(self)
        if rc == _ESTALE:
            return IPCError(errno.ESTALE, f"{what}: the slot was reclaimed: another process judged this one dead (are all users in one pid namespace?)")
        return error_from_errno(-rc, what)

    def _close(self) -> None:
        for held in list(self._held):
            try:
                held.release()
            except BufferError:
                pass
        lib.ipckit_shmq_close(self._h)  # no call of this handle is inside C after this
        self._unmap()
        self._fd.close()

    def _unmap(self) -> None:
        for view in (getattr(self, "_mv", None), getattr(self, "_scratch_mv", None)):
            if view is not None:
                view.release()
        self._batch = None
        ffi.release(self._base)
        try:
            self._mm.close()
        except BufferError:
            pass  # a user's export of a recv_view is alive; the mapping goes with it


def _attach_error(rc: int, name: str, version: int) -> Exception:
    if rc == -2:
        return ValueError(f"{name!r} is not an ipckit shm queue (no magic number)")
    if rc == -1:
        return ValueError(f"{name!r} is not an ipckit shm queue (bad magic number)")
    if rc == -3:
        return ValueError(f"{name!r} is an ipckit shm queue of layout version {version}; this ipckit reads version {lib.IPCKIT_SHMQ_VERSION}")
    return ValueError(f"{name!r} is not a valid ipckit shm queue (inconsistent header or size)")


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
