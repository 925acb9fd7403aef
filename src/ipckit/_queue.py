"""ipckit.Queue / SimpleQueue / JoinableQueue: Python objects through shared memory.

What it is
----------
A drop-in for ``multiprocessing.Queue`` and friends: the same methods, blocking rules
and exceptions, over the shm ring of ``_mqueue_shm`` instead of a pipe, a lock and a
feeder thread. An object is pickled with protocol 5 at ``put()``; its buffers (numpy
arrays, and bytes / bytearray / memoryview when they are large or when the object does
not pickle otherwise) travel *out of band*: copied once into shared memory by the
producer and once out by the consumer, never serialised.

The segment
-----------
One file, built as an unnamed ``O_TMPFILE`` in /dev/shm (never linked for an unnamed
queue, so nothing is left on the host even when every process is SIGKILLed; linked
under its name once complete for ``Queue.create``)::

    offset 0      the header (4096 bytes, csrc/objqueue.h): magic "IPCKOBJQ", layout,
                  the reader token Rd and its state (r_seq, r_busy, r_skip), the
                  writer token W and its state (w_seq, w_busy, next_seq), the
                  JoinableQueue task count
    ring_off      the main ring R: a shm ring (``_mqueue_shm``) of records; capacity
                  = maxsize (0: 1024), record size = max_message_size (default 4096)
    lane_off      the lane L: a second shm ring, 8 records of 1 MiB + 32 bytes

Each part is mapped on its own (page-aligned offsets), so each ring is an ordinary
``ShmMessageQueue`` with its own checks, crash recovery and SIGBUS guard.

Records of R::

    0x80 ...      a plain pickle (PROTO 5 is its first byte): the object, no buffers
    'B' frame     an object with out-of-band buffers, framed (below), all in the record
    'M' seq total a marker: object ``seq`` of ``total`` framed bytes is in the lane

A frame: ``'B' pad3 nbuf:u32 pickle_len:u64 len[nbuf]:u64`` then the pickle, then
each buffer at the next 64-byte boundary (aligned for numpy). A lane chunk:
``seq:u64 offset:u64 total:u64 flags:u64`` then the bytes of the frame at ``offset``.

Objects of any size: the lane
-----------------------------
An object whose frame does not fit one record goes through the lane; the design
keeps the rings' crash-safety without a heap allocator in shared memory (which would
need its own crash recovery: who freed what when a process died mid-free):

* put(big): take W; if ``w_busy`` says the previous object was left incomplete (its
  writer died or timed out), first stream an ABORT chunk for it; then ``seq =
  next_seq++``, ``w_seq = seq``, ``w_busy = 1``; push the marker to R; stream the
  chunks (each copied straight from the source buffer into a lane slot: one copy);
  ``w_busy = 0``; release W. Markers are pushed under W, so markers sit in R in
  ``seq`` order and each object's chunks are contiguous in the lane, in that order.
* get(): every get pops R holding Rd (one C call takes Rd, pops, and releases it
  unless the record is a marker). Holding Rd while popping makes the pop order of
  markers the order of lane reads, so a reader never meets a chunk of a later object
  before the end (or ABORT) of its own. With the marker of ``S``: ``r_seq = S``,
  ``r_busy = 1``; discard chunks of objects ``< S`` (their reader died, or their
  writer); copy the chunks of ``S`` straight into the destination (one copy); an
  ABORT chunk of ``S`` drops it. If the lane stays empty, try W without waiting:
  when W is free (or its holder died) nothing more can come for ``S``; if it is
  incomplete it is dropped (and ``w_busy`` cleared) and get() moves on to the next
  record.
* The tokens are process-shared robust pthread mutexes: the kernel marks one whose
  holding thread died, however it died (SIGKILL included), and the next taker gets
  ``EOWNERDEAD`` and makes it consistent. So a holder is taken for dead only when the
  kernel says so: never a live process of another user or of another pid namespace.
  An Rd holder that died reading ``r_seq`` leaves ``r_skip = r_seq`` (the taker sets
  it): that object is lost with the consumer that took it, and its writer, still
  streaming into a lane nobody reads, sees ``r_skip`` (it tries Rd itself while it
  waits for room) and stops. A producer killed inside put() leaves W marked; its
  object is never delivered. A consumer killed inside get() loses at most the object
  it was taking.

What this costs: consumers are serialised on Rd (the ring's head is one cache line
anyway); a consumer reading a big object holds up the others until it has it; a big
put holds up other big puts (small puts never wait for W). A timed put() of a big
object that cannot finish streaming before its deadline aborts it and raises
``queue.Full``: the marker is in R but the consumer drops it, so nothing was put.
Once a get() has popped a marker it reads the object to its end even past its
timeout -- a live writer is streaming it -- or drops it as soon as the writer is
gone.

What is checked: every record and chunk header is input. Lengths, offsets, totals and
sequence numbers are checked before use (a marker or chunk announcing more than this
machine's memory, 2**62 bytes say, is a ``CorruptError`` and allocates nothing); a
malformed record is dropped with ``CorruptError``. A peer can still write plausible
bytes, and the tokens are pthread mutexes in memory every opener can write: a peer
that scribbles on them can make lock calls fail (``CorruptError``) or, in the worst
case, corrupt glibc's list of robust mutexes held by a thread of ours. Everyone who
can open a queue can also make ``pickle.loads`` run code of their choice: queues are
0600 and that is the trust boundary.

Unbounded queues (``maxsize=0``)
--------------------------------
As in multiprocessing, ``put()`` never blocks: when R is full (or the object is big,
which would wait for a consumer) the pickled object waits in a process-local buffer
that a feeder thread, started only then, drains in order; once objects are buffered,
later puts go behind them, so each producer's order holds. ``close()`` lets the feeder
flush and exit, ``join_thread()`` waits for it, ``cancel_join_thread()`` stops the
exit-time join (buffered objects may then be lost), and the same
``multiprocessing.util.Finalize`` hooks as multiprocessing's flush at exit. A buffered
object's out-of-band buffers are referenced, not copied, until the feeder sends them.
With ``maxsize > 0``, R has exactly ``maxsize`` records, so the bound is exact and
needs no counter; ``put()`` blocks while it is full.

Hand-over
---------
Fork children inherit the mappings. Spawn and forkserver children (and
``ProcessPoolExecutor(initializer=, initargs=(q,))``) get the segment's descriptor
through multiprocessing's own reduction (``reduction.DupFd`` while spawning), as
multiprocessing's queues do; outside of spawning an unnamed queue refuses to pickle
(``RuntimeError``, as multiprocessing says), a named one pickles by name.

For ipckit.aio
--------------
``Queue._put_op(obj)`` and ``Queue._get_op()`` return ``(attempt, waiter)`` like the
rings' ``_send_op`` / ``_recv_op``: ``attempt(limit)`` returns the result (``None`` for
a put, the object for a get) or ``WOULD_BLOCK`` and never blocks past *limit* --
except that a get attempt which popped a marker reads the rest of that object
(bounded: a live writer is streaming it, a dead one ends it), and a put attempt of a
big object streams it to the end once its marker is in (bounded by consumers
reading). The waiter's ``wait(deadline)`` sleeps until R may accept (put) or hold
(get) a record, claiming nothing; ``interrupt()`` ends a pending wait at once.
"""

from __future__ import annotations

import collections
import errno
import mmap
import os
import pickle
import pickletools
import queue as _queue_mod
import stat as _stat
import struct
import threading
import weakref
from multiprocessing import context as _mp_context
from multiprocessing import reduction as _reduction
from multiprocessing import util as _mp_util
from typing import Any, Callable, Optional

from ._errors import ClosedError, CorruptError, ExistsError, IPCError, error_from_errno, translate_oserror
from ._ffi import ffi, lib
from ._mqueue_shm import _EBADF, _NOT_YET, SHM_DIR, ShmMessageQueue, _limit_ns, _path
from ._naming import check_mode, check_posix_name
from ._timeouts import FOREVER, Deadline
from ._wait import NOW, WOULD_BLOCK, Waiter, retry

Empty = _queue_mod.Empty
Full = _queue_mod.Full

DEFAULT_CAPACITY = 1024  # records of R when maxsize=0
DEFAULT_RECORD_SIZE = 4096
LANE_SLOTS = 8
LANE_CHUNK = 1 << 20  # frame bytes per lane chunk
_PAGE = 4096
_HEADER = lib.IPCKIT_OBJQ_HEADER_SIZE
# R of a large maxsize gets smaller records, so that a queue stays within this many
# bytes of /dev/shm (objects over a record travel through the lane anyway).
_RING_BUDGET = 64 << 20
_MIN_RECORD = 256

_CHUNK = struct.Struct("<QQQQ")  # seq, offset, total, flags
_CHUNK_SIZE = _CHUNK.size
_ABORT = 1
_MARKER = struct.Struct("<c7xQQ")  # b"M", seq, total
_FRAME_LEN = struct.Struct("<Q")  # a pickle FRAME's argument
_FRAME = struct.Struct("<c3xIQ")  # b"B", nbuf, pickle_len
_PROTO = 0x80
_KIND_FRAME, _KIND_MARKER = ord("B"), ord("M")
# Re-pickle with large bytes / bytearray out of band when a plain pickle is over this.
_INBAND_LIMIT = 64 * 1024
_OOB_MIN = 4096
# The lane waits of a reader: how long before it asks whether the writer is gone.
_LANE_SLICE = 0.02
_LANE_SLICE_NS = int(_LANE_SLICE * 1e9)

_GOT_MARKER = lib.IPCKIT_OBJQ_MARKER

_dumps = pickle.dumps
_loads = pickle.loads
_objq_get = lib.ipckit_objq_get
_shmq_send = lib.ipckit_shmq_send
_alloc = ffi.new_allocator(should_clear_after_alloc=False)
_NULL = ffi.NULL


def _memory_bytes() -> int:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):  # pragma: no cover
        return 1 << 40


_MAX_OBJECT = _memory_bytes()


def _align(n: int, to: int = 64) -> int:
    return (n + to - 1) & -to


class QueueClosed(ClosedError, ValueError):
    """A call on a closed ``Queue`` / ``JoinableQueue``: what multiprocessing raises
    there is ``ValueError``, so this is one too."""


# ---------------------------------------------------------------- pickling


def _rebuild_memoryview(data: Any, fmt: str, shape: tuple) -> memoryview:
    view = memoryview(data)
    try:
        return view.cast("B").cast(fmt, shape)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return view


class _OutOfBand(pickle.Pickler):
    """A pickler that also sends large bytes / bytearray and any memoryview out of band
    (plain pickle copies the first two into the stream and refuses the third)."""

    def reducer_override(self, obj: Any) -> Any:
        cls = obj.__class__
        if cls is bytes or cls is bytearray:
            if len(obj) >= _OOB_MIN:
                return cls, (pickle.PickleBuffer(obj),)
        elif cls is memoryview:
            data = pickle.PickleBuffer(obj) if obj.contiguous else obj.tobytes()
            return _rebuild_memoryview, (data, obj.format, obj.shape)
        return NotImplemented


def _pickle(obj: Any, data: Optional[bytes] = None, buffers: Optional[list] = None) -> tuple:
    """``(pickle, raw buffers)`` of *obj*, protocol 5, buffers out of band. *data*,
    *buffers*: a plain pickle already made (None: it failed, or none was made)."""
    if buffers is None:
        buffers = []
        try:
            data = _dumps(obj, 5, buffer_callback=buffers.append)
        except TypeError:
            data = None  # a memoryview, say: the pickler below handles it, or raises
    if data is not None and len(data) <= _INBAND_LIMIT:
        return data, buffers
    buffers = []
    sink = _Sink()
    _OutOfBand(sink, 5, buffer_callback=buffers.append).dump(obj)
    return b"".join(sink.parts), buffers


class _Sink:
    __slots__ = ("parts", "write")

    def __init__(self) -> None:
        self.parts: list = []
        self.write = self.parts.append


def _writable(data: bytes) -> bytes:
    """*data* without its READONLY_BUFFER opcodes, so that the buffers of a read-only
    source (``numpy.frombuffer(bytes)``, say) arrive writable, as multiprocessing's do
    (the receiver's buffers are its own copies). FRAME lengths are fixed to match."""
    cuts: list[int] = []
    frames: list[tuple[int, int, int]] = []  # (position of the length argument, frame start, frame end)
    for op, arg, at in pickletools.genops(data):
        pos = int(at or 0)  # genops gives every position of a bytes pickle
        if op.name == "READONLY_BUFFER":
            cuts.append(pos)
        elif op.name == "FRAME":
            frames.append((pos + 1, pos + 9, pos + 9 + int(arg or 0)))
    if not cuts:
        return data
    out = bytearray(data)
    for arg_at, start, end in frames:
        inside = sum(1 for c in cuts if start <= c < end)
        if inside:
            _FRAME_LEN.pack_into(out, arg_at, end - start - inside)
    for pos in reversed(cuts):
        del out[pos]
    return bytes(out)


def _raw(buffer: pickle.PickleBuffer) -> memoryview:
    try:
        return buffer.raw()
    except BufferError:  # not contiguous: numpy never passes one, but be safe
        return memoryview(memoryview(buffer).tobytes())


class _Encoded:
    """A pickled object ready to send: a small record, or a frame's parts."""

    __slots__ = ("record", "parts", "total")

    def __init__(self, record: Optional[bytes], parts: list, total: int) -> None:
        self.record = record  # the whole R record, or None: lane
        self.parts = parts  # [(offset, memoryview)] of the frame
        self.total = total


def _encode(obj: Any, record_size: int, data: Optional[bytes] = None, buffers: Optional[list] = None) -> _Encoded:
    data, buffers = _pickle(obj, data, buffers)
    if not buffers:
        if len(data) <= record_size:
            return _Encoded(data, [], len(data))
        head = _FRAME.pack(b"B", 0, len(data)) + data
        return _Encoded(None, [(0, memoryview(head))], len(head))
    raws = [_raw(b) for b in buffers]
    if any(raw.readonly for raw in raws):
        data = _writable(data)
    head = b"".join((_FRAME.pack(b"B", len(raws), len(data)), struct.pack(f"<{len(raws)}Q", *(r.nbytes for r in raws)), data))
    parts = [(0, memoryview(head))]
    end = len(head)
    for raw in raws:
        start = _align(end)
        parts.append((start, raw))
        end = start + raw.nbytes
    if end <= record_size:
        out = bytearray(end)
        for start, view in parts:
            out[start : start + view.nbytes] = view
        _release(parts)
        return _Encoded(bytes(out), [], end)
    return _Encoded(None, parts, end)


def _release(parts: list) -> None:
    for _, view in parts:
        view.release()


def _decode_frame(blob: memoryview, what: str) -> Any:
    """Unpickle a frame held in the writable *blob*: its buffers are views of it."""
    total = blob.nbytes
    if total < _FRAME.size:
        raise CorruptError(errno.EBADMSG, f"{what}: a frame of {total} bytes is shorter than its header")
    kind, nbuf, pickle_len = _FRAME.unpack_from(blob)
    lens_end = _FRAME.size + 8 * nbuf
    if kind != b"B" or lens_end > total or pickle_len > total - lens_end:
        raise CorruptError(errno.EBADMSG, f"{what}: a frame header announces {nbuf} buffers and a {pickle_len}-byte pickle in {total} bytes")
    lens = struct.unpack_from(f"<{nbuf}Q", blob, _FRAME.size)
    end = lens_end + pickle_len
    views = []
    for n in lens:
        start = _align(end)
        if n > total or start + n > total:
            raise CorruptError(errno.EBADMSG, f"{what}: a frame's buffer of {n} bytes at {start} runs past its {total} bytes")
        views.append(blob[start : start + n])
        end = start + n
    return _loads(blob[lens_end : lens_end + pickle_len], buffers=views)


# ---------------------------------------------------------------- the segment


def _layout(maxsize: int, record_size: Optional[int]) -> tuple:
    capacity = maxsize or DEFAULT_CAPACITY
    if record_size is None:
        record_size = DEFAULT_RECORD_SIZE
        if capacity * (record_size + 64) > _RING_BUDGET:
            record_size = max(_MIN_RECORD, (_RING_BUDGET // capacity - 64) & -64)
    if record_size < _MARKER.size:
        raise ValueError(f"max_message_size must be at least {_MARKER.size} bytes, not {record_size}")
    ring = ffi.new("ipckit_shmq_info *")
    lane = ffi.new("ipckit_shmq_info *")
    if capacity >= 1 << 64 or record_size >= 1 << 64 or lib.ipckit_shmq_layout(capacity, record_size, ring):
        raise ValueError(f"maxsize={maxsize} x max_message_size={record_size} is too large for a queue")
    lib.ipckit_shmq_layout(LANE_SLOTS, LANE_CHUNK + _CHUNK_SIZE, lane)
    ring_off = _HEADER
    ring_size = _align(int(ring.size), _PAGE)
    lane_off = ring_off + ring_size
    lane_size = _align(int(lane.size), _PAGE)
    return (capacity, record_size, ring_off, int(ring.size), lane_off, int(lane.size), lane_off + lane_size)


class _Segment:
    """The mapped parts of one queue's segment: the header, R and L."""

    def __init__(self, fd: int, name: Optional[str]) -> None:
        self.fd = fd
        self.name = name
        label = name or "<unnamed queue>"
        st = os.fstat(fd)
        if not _stat.S_ISREG(st.st_mode) or st.st_size < _HEADER:
            raise ValueError(f"{label!r} is not an ipckit queue")
        self.size = st.st_size
        self.hmm = mmap.mmap(fd, _HEADER, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE)
        self.hbuf = ffi.from_buffer(self.hmm)
        self.q = ffi.cast("ipckit_objq_header *", self.hbuf)
        rc = lib.ipckit_objq_validate(self.q, self.size)
        if rc:
            self._unmap_header()
            if rc == -errno.EPROTO:
                raise ValueError(f"{label!r} is not an ipckit queue (bad magic number or version)")
            raise CorruptError(errno.EBADMSG, f"{label!r} is not a valid ipckit queue (inconsistent header)")
        q = self.q
        self.maxsize = int(q.maxsize)
        self.ring: Optional[ShmMessageQueue] = None
        self.lane: Optional[ShmMessageQueue] = None
        try:
            self.ring = self._attach(label, int(q.ring_off), int(q.ring_size))
            self.lane = self._attach(label + " lane", int(q.lane_off), int(q.lane_size))
        except BaseException:
            self.close()
            raise
        self.record_size = self.ring.max_message_size

    def _attach(self, label: str, offset: int, size: int) -> ShmMessageQueue:
        with translate_oserror("mmap", filename=label):
            mm = mmap.mmap(self.fd, size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE, offset=offset)
        fd = os.dup(self.fd)
        return ShmMessageQueue(label, fd, mm, size)

    q: Any = None
    fd = -1
    ring: Optional[ShmMessageQueue] = None
    lane: Optional[ShmMessageQueue] = None

    def _unmap_header(self) -> None:
        self.q = None
        ffi.release(self.hbuf)
        self.hmm.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # pragma: no cover
            pass

    def close(self) -> None:
        for ring in (self.ring, self.lane):
            if ring is not None:
                ring.close()
        # The header stays mapped until this object is collected: another thread may be
        # inside a C call on it (a join, a lane token wait, an aio observer), each bounded
        # by one sleep slice; unmapping under it would be a crash, not an error.
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)


def _make_segment(maxsize: int, record_size: Optional[int], mode: int, path: Optional[str]) -> int:
    """A new segment's descriptor: an O_TMPFILE in /dev/shm, linked at *path* if given."""
    capacity, record_size, ring_off, ring_size, lane_off, lane_size, size = _layout(maxsize, record_size)
    fd = -1
    try:
        with translate_oserror("shm_open", filename=path):
            fd = os.open(SHM_DIR, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
            os.fchmod(fd, mode)
            os.ftruncate(fd, size)
            os.posix_fallocate(fd, 0, size)  # ENOSPC now, never SIGBUS later
        for offset, length, cap, rec in ((ring_off, ring_size, capacity, record_size),
                                         (lane_off, lane_size, LANE_SLOTS, LANE_CHUNK + _CHUNK_SIZE)):
            mm = mmap.mmap(fd, length, flags=mmap.MAP_SHARED, offset=offset)
            base = ffi.from_buffer(mm)
            rc = lib.ipckit_shmq_init(base, length, cap, rec)
            ffi.release(base)
            mm.close()
            if rc:  # pragma: no cover - _layout and init agree
                raise error_from_errno(-rc, "init queue")
        mm = mmap.mmap(fd, _HEADER, flags=mmap.MAP_SHARED)
        base = ffi.from_buffer(mm)
        rc = lib.ipckit_objq_init(ffi.cast("ipckit_objq_header *", base), maxsize, ring_off, ring_size, lane_off, lane_size, size)
        ffi.release(base)
        mm.close()
        if rc:  # pragma: no cover
            raise error_from_errno(-rc, "init queue")
        if path is not None:
            rc = lib.ipckit_shmq_link_tmpfile(fd, os.fsencode(path))  # EEXIST if taken: O_EXCL
            if rc:
                raise error_from_errno(-rc, "shm_open", path[len(SHM_DIR):])
    except BaseException:
        if fd >= 0:
            os.close(fd)
        raise
    return fd


def _open_segment(name: str) -> int:
    with translate_oserror("shm_open", filename=name):
        return os.open(_path(name), os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)


# ---------------------------------------------------------------- the core


class _Local(threading.local):
    """Each thread's receive buffer and result struct for R."""

    def __init__(self, cap: int) -> None:
        buf = bytearray(cap)
        ptr = ffi.from_buffer(buf)
        res = ffi.new("ipckit_shmq_result *")
        # One attribute for the hot path: (pointer, capacity, result, its words, buffer, ffi buffer).
        self.mine = (ptr, cap, res, memoryview(ffi.buffer(res)).cast("Q"), buf, ffi.buffer(ptr, cap))


class _Core:
    """Moving encoded objects through one segment; no buffering, no feeder."""

    def __init__(self, seg: _Segment, closed_cls: type) -> None:
        self.seg = seg
        self.q = seg.q
        self.ring = seg.ring
        self.lane = seg.lane
        self.rh = seg.ring._h  # type: ignore[union-attr]
        self.lh = seg.lane._h  # type: ignore[union-attr]
        self.record_size = seg.record_size
        self.local = _Local(self.record_size)
        self.closed_cls = closed_cls
        self.lane_res = ffi.new("ipckit_shmq_result *")
        self.lane_lock = threading.Lock()  # the lane result struct is shared by this process's threads

    # -------------------------------------------------- errors

    def closed(self, owner: object) -> Exception:
        return self.closed_cls(errno.EBADF, f"{type(owner).__name__} {owner!r} is closed")

    def _ring_error(self, ring: Any, rc: int, what: str) -> Exception:
        return ring._error(rc, what)

    def _token_error(self, rc: int, what: str) -> Exception:
        if rc in (-errno.EINVAL, -errno.ENOTRECOVERABLE, -errno.EPERM, -errno.EDEADLK):
            return CorruptError(errno.EBADMSG, f"{what}: the queue's token is not a working lock ({os.strerror(-rc)}): the segment is corrupt")
        return error_from_errno(-rc, what)

    # -------------------------------------------------- put

    def send(self, enc: _Encoded, deadline: Deadline, owner: object) -> bool:
        """Put one encoded object; False if *deadline* passed first (nothing put)."""
        if enc.record is not None:
            return self.send_record(enc.record, deadline)
        return self.send_big(enc, deadline)

    def send_record(self, record: bytes, deadline: Deadline) -> bool:
        while True:
            rc = _shmq_send(self.rh, record, len(record), _limit_ns(deadline))
            if not rc:
                return True
            if rc not in _NOT_YET:
                raise self._ring_error(self.ring, rc, "put")
            if deadline.expired():
                return False

    def _lock(self, rd: int, deadline: Deadline, what: str) -> Optional[int]:
        """Take a token: 0 / OWNER_DIED, or None once *deadline* passed."""
        while True:
            rc = lib.ipckit_objq_lock(self.q, rd, _limit_ns(deadline))
            if rc >= 0:
                return rc
            if rc not in _NOT_YET:
                raise self._token_error(rc, what)
            if deadline.expired():
                return None

    def send_big(self, enc: _Encoded, deadline: Deadline) -> bool:
        q = self.q
        if self._lock(0, deadline, "put") is None:
            return False
        try:
            if q.w_busy:
                # The previous big object was left incomplete (its writer died or
                # timed out): end it in the lane before anything of ours (unless its
                # reader is gone too: then nobody waits for the end).
                if self._lane_send(_CHUNK.pack(q.w_seq, 0, 0, _ABORT), None, q.w_seq, deadline) is False:
                    return False
                q.w_busy = 0
            seq = q.next_seq
            q.next_seq = seq + 1
            q.w_seq = seq
            q.w_busy = 1
            if not self.send_record(_MARKER.pack(b"M", seq, enc.total), deadline):
                q.w_busy = 0
                return False
            total = enc.total
            for start, view in enc.parts:
                n = view.nbytes
                done = 0
                while done < n:
                    piece = min(LANE_CHUNK, n - done)
                    sent = self._lane_send(_CHUNK.pack(seq, start + done, total, 0), view[done : done + piece], seq, deadline)
                    if sent is None:  # its reader died: the object went with it
                        q.w_busy = 0
                        return True
                    if not sent:
                        # Out of time mid-object: end it if there is room now, else the
                        # next writer (or its reader) does.
                        if self._lane_send(_CHUNK.pack(seq, 0, 0, _ABORT), None, seq, NOW):
                            q.w_busy = 0
                        return False
                    done += piece
            q.w_busy = 0
            return True
        finally:
            lib.ipckit_objq_unlock(q, 0)

    def _lane_send(self, header: bytes, data: Optional[memoryview], seq: int, deadline: Deadline) -> Optional[bool]:
        """One chunk into the lane: True, False (deadline), None (the object's reader died)."""
        if data is None:
            ptr, n = _NULL, 0
        else:
            ptr, n = ffi.from_buffer(data), data.nbytes
        try:
            while True:
                # Wait in slices, asking in between whether the reader is still there.
                if deadline is NOW or (deadline is not FOREVER and deadline.remaining_ns() <= _LANE_SLICE_NS):
                    limit = deadline
                else:
                    limit = Deadline(_LANE_SLICE)
                rc = lib.ipckit_shmq_send2(self.lh, header, len(header), ptr, n, _limit_ns(limit))
                if not rc:
                    return True
                if rc not in _NOT_YET:
                    raise self._ring_error(self.lane, rc, "put")
                if self._reader_gone(seq):
                    return None
                if deadline.expired():
                    return False
        finally:
            if data is not None:
                ffi.release(ptr)

    def _reader_gone(self, seq: int) -> bool:
        """Whether the consumer that took object *seq* died with it (see the essay)."""
        q = self.q
        if q.r_skip >= seq:
            return True
        rc = lib.ipckit_objq_lock(q, 1, 0)  # a dead holder's r_skip is set by this
        if rc >= 0:
            lib.ipckit_objq_unlock(q, 1)
        return bool(q.r_skip >= seq)

    # -------------------------------------------------- get

    def recv(self, deadline: Deadline, owner: object) -> Any:
        """The next object, or WOULD_BLOCK once *deadline* passed."""
        ptr, cap, res, rv, buf, fb = self.local.mine
        q, rh = self.q, self.rh
        limit = -1 if deadline is FOREVER else _limit_ns(deadline)
        while True:
            rc = _objq_get(q, rh, ptr, cap, limit, res)
            if rc == 0:
                n = rv[0]  # res.len
                if n and buf[0] == _PROTO:
                    return _loads(buf)  # a pickle ends at its STOP: what follows is ignored
                return self._decode_record(fb[0:n])
            if rc == _GOT_MARKER:
                obj = self._recv_big(fb[0 : rv[0]])
                if obj is not _DROPPED:
                    return obj
                continue
            if rc in _NOT_YET:
                if deadline.expired():
                    return WOULD_BLOCK
                continue
            if rc == _EBADF:
                raise self.closed(owner)
            if rc < 0 and rc in (-errno.EINVAL, -errno.ENOTRECOVERABLE):
                raise self._token_error(rc, "get")
            raise self._ring_error(self.ring, rc, "get")

    def _decode_record(self, data: bytes) -> Any:
        if not data:
            raise CorruptError(errno.EBADMSG, "get: an empty record (no ipckit producer sends one); dropped")
        if data[0] == _KIND_FRAME:
            return _decode_frame(memoryview(bytearray(data)), "get")
        raise CorruptError(errno.EBADMSG, f"get: a record of kind {data[0]:#04x}, which no ipckit producer sends; dropped")

    def _recv_big(self, marker: bytes) -> Any:
        """Read the object of *marker* from the lane, holding Rd (released here)."""
        q = self.q
        try:
            if len(marker) != _MARKER.size:
                raise CorruptError(errno.EBADMSG, f"get: a marker record of {len(marker)} bytes (not {_MARKER.size}); dropped")
            _, seq, total = _MARKER.unpack(marker)
            if total > _MAX_OBJECT or total < _FRAME.size:
                raise CorruptError(errno.EBADMSG, f"get: a marker announces an object of {total} bytes; dropped")
            q.r_seq = seq
            q.r_busy = 1
            with self.lane_lock:
                blob = self._read_lane(seq, total)
            if blob is None:
                return _DROPPED
        finally:
            q.r_busy = 0
            lib.ipckit_objq_unlock(q, 1)
        return _decode_frame(blob, "get")

    def _read_lane(self, seq: int, total: int) -> Optional[memoryview]:
        q = self.q
        mem = _alloc("char[]", total + 64)
        shift = -int(ffi.cast("uintptr_t", mem)) & 63
        blob = memoryview(ffi.buffer(mem, total + 64))[shift : shift + total]
        got = 0
        while got < total:
            got_now = self._take_chunk(seq, total, got, blob, Deadline(_LANE_SLICE))
            if got_now is None:
                return None  # aborted
            if got_now >= 0:
                got = got_now
                continue
            # Nothing came for a while: is anyone still streaming it?
            rc = lib.ipckit_objq_lock(q, 0, 0)
            if rc < 0:
                if rc not in _NOT_YET:
                    raise self._token_error(rc, "get")
                continue  # a live writer holds W: it streams ours, or ends it before its own
            try:
                # W is ours: nothing more can arrive. Take what is there, then judge.
                while got < total:
                    got_now = self._take_chunk(seq, total, got, blob, NOW)
                    if got_now is None or got_now < 0:
                        break
                    got = got_now
                if got < total:
                    if q.w_busy and q.w_seq == seq:
                        q.w_busy = 0
                    return None
            finally:
                lib.ipckit_objq_unlock(q, 0)
        return blob

    def _take_chunk(self, seq: int, total: int, got: int, blob: memoryview, limit: Deadline) -> Optional[int]:
        """Take one lane chunk: the new ``got``, -1 (none within *limit*), None (ABORT)."""
        res = self.lane_res
        lane = self.lane
        while True:
            rc = lib.ipckit_shmq_recv(self.lh, _NULL, 0, 0, _limit_ns(limit), res)
            if rc:
                if rc in _NOT_YET:
                    return -1
                raise self._ring_error(lane, rc, "get")
            n = int(res.len)
            if not res.held:
                raise CorruptError(errno.EBADMSG, "get: an empty lane chunk; the object was dropped")
            pos, off = int(res.pos), int(res.offset)
            try:
                if n < _CHUNK_SIZE:
                    raise CorruptError(errno.EBADMSG, f"get: a lane chunk of {n} bytes; the object was dropped")
                mv = lane._mv  # type: ignore[union-attr]
                cseq, coff, ctotal, flags = _CHUNK.unpack_from(mv, off)
                if cseq < seq or cseq <= self.q.r_skip:
                    continue  # left by a dead reader or writer
                if cseq > seq:
                    raise CorruptError(errno.EBADMSG, f"get: a chunk of object {cseq} before the end of object {seq}; dropped")
                if flags & _ABORT:
                    return None
                size = n - _CHUNK_SIZE
                if ctotal != total or coff < got or coff > _align(got) or size > total - coff or size == 0:
                    raise CorruptError(
                        errno.EBADMSG,
                        f"get: a chunk of object {seq} at {coff}+{size} of {ctotal} does not follow {got} of {total}; dropped")
                blob[coff : coff + size] = mv[off + _CHUNK_SIZE : off + n]
                return coff + size
            finally:
                lane._release_slot(pos)  # type: ignore[union-attr]

    def count(self) -> int:
        return len(self.ring)  # type: ignore[arg-type]

    def close(self) -> None:
        self.seg.close()


_DROPPED = object()


class _GetWaiter(Waiter):
    """For ipckit.aio: until R holds a record and Rd is free (claiming neither)."""

    __slots__ = ("_core", "_ready", "key")

    def __init__(self, core: _Core) -> None:
        self._core = core
        self._ready = core.ring._recv_waiter()  # type: ignore[union-attr]
        self.key = (core, "get")  # ipckit.aio keeps one observer per key

    def wait(self, deadline: Deadline) -> None:
        self._ready.wait(deadline)
        core = self._core
        left = deadline.remaining()
        rc = lib.ipckit_objq_lock(core.q, 1, _limit_ns(Deadline(_LANE_SLICE if left is None else min(_LANE_SLICE, left))))
        if rc >= 0:
            lib.ipckit_objq_unlock(core.q, 1)

    def interrupt(self) -> None:
        self._ready.interrupt()


# ---------------------------------------------------------------- the feeder


class _Feeder:
    """The process-local buffer of an unbounded queue and the thread draining it."""

    def __init__(self, core: _Core) -> None:
        self.core = core
        self.buffer: collections.deque = collections.deque()
        self.cond = threading.Condition(threading.Lock())
        self.thread: Optional[threading.Thread] = None
        self.closing = False
        self.release_core = False  # close() came: the feeder closes the core when done
        self.error: Optional[BaseException] = None

    def start(self, owner: Any) -> None:
        self.thread = threading.Thread(target=self.run, name="ipckit.Queue feeder", daemon=True)
        self.thread.start()
        _mp_util.Finalize(owner, _Feeder.finalize_close, (self,), exitpriority=10)
        if not owner._joincancelled:
            # Tied to the thread, not the queue (as multiprocessing does): a queue
            # dropped with objects still buffered does not block its collector.
            owner._jointhread = _mp_util.Finalize(self.thread, _Feeder.finalize_join, (weakref.ref(self.thread),),
                                                  exitpriority=-5)

    @staticmethod
    def finalize_close(feeder: "_Feeder") -> None:
        with feeder.cond:
            feeder.closing = True
            feeder.cond.notify()

    @staticmethod
    def finalize_join(ref: Any) -> None:
        thread = ref()
        if thread is not None and thread.is_alive():
            thread.join()

    def run(self) -> None:
        buffer, cond, core = self.buffer, self.cond, self.core
        try:
            while True:
                with cond:
                    while not buffer and not self.closing:
                        cond.wait()
                    if not buffer:
                        return
                    enc = buffer[0]
                if not core.send(enc, FOREVER, self):
                    continue  # pragma: no cover - FOREVER never expires
                with cond:
                    buffer.popleft()
        except ClosedError:
            pass  # closed under us (cancel_join_thread + close): the rest is lost
        except BaseException as exc:  # pragma: no cover - reported as multiprocessing does
            self.error = exc
            import traceback

            traceback.print_exc()
        finally:
            with cond:
                release = self.release_core
                self.thread = None
            if release:
                core.close()


# ---------------------------------------------------------------- the queues


def _check_maxsize(maxsize: object) -> int:
    if isinstance(maxsize, bool) or not isinstance(maxsize, int):
        raise TypeError(f"maxsize must be an int, not {type(maxsize).__name__}")
    return max(0, maxsize)  # multiprocessing: <= 0 is unbounded


def _check_record_size(max_message_size: object) -> Optional[int]:
    if max_message_size is None:
        return None
    if isinstance(max_message_size, bool) or not isinstance(max_message_size, int):
        raise TypeError(f"max_message_size must be None or an int, not {type(max_message_size).__name__}")
    if max_message_size < _MARKER.size:
        raise ValueError(f"max_message_size must be at least {_MARKER.size} bytes, not {max_message_size}")
    return max_message_size


def _deadline(block: bool, timeout: Optional[float]) -> Deadline:
    if not block:
        return NOW
    if isinstance(timeout, (int, float)) and not isinstance(timeout, bool) and timeout < 0:
        timeout = 0  # multiprocessing takes a negative timeout for 0
    return Deadline.from_user(timeout)


_queues: "weakref.WeakSet[Any]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for q in list(_queues):
        q._after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


class Queue:
    """A process-shared FIFO of Python objects: ``multiprocessing.Queue`` in shared memory.

    ``Queue(maxsize=0, *, max_message_size=None)``: ``maxsize`` counts objects (``0``:
    unbounded -- ``put()`` never blocks; objects wait in a process-local buffer that a
    feeder thread drains when the ring is full). ``max_message_size`` is the size of
    one record in shared memory (default 4096 bytes); it never limits what can be
    sent: larger objects stream through the queue's lane. ``put()`` pickles at once
    (protocol 5; numpy arrays and large bytes travel out of band, copied once into
    shared memory), so an object that cannot be pickled raises from ``put()``.

    Methods, blocking and exceptions are multiprocessing's: ``put`` / ``get`` with
    ``block`` and ``timeout`` (``queue.Full`` / ``queue.Empty``), ``put_nowait``,
    ``get_nowait``, ``qsize``, ``empty``, ``full``, ``close``, ``join_thread``,
    ``cancel_join_thread``. After ``close()`` calls raise ``QueueClosed``, an
    ``ipckit.ClosedError`` that is also a ``ValueError``.

    Pass it to ``multiprocessing.Process`` (fork, spawn, forkserver) or a
    ``ProcessPoolExecutor`` initializer like a multiprocessing queue. An unnamed queue
    leaves nothing behind once its processes are gone, even SIGKILLed ones. Named
    queues: ``Queue.create(name)`` / ``Queue.open(name)``, removed with ``unlink()``.

    **Unpickling runs code chosen by whoever can put into the queue.** Queues are
    created ``0o600``; give others access only if you would run their code.

    For ``ipckit.aio``: ``_put_op(obj)`` and ``_get_op()`` return ``(attempt, waiter)``
    as the shm ring's ``_send_op`` / ``_recv_op`` do (see the module essay: a get
    attempt that has popped a big object's marker reads the rest of it, a bounded wait
    while it is streamed).
    """

    _closed_cls: type = QueueClosed
    _joincancelled = False
    _jointhread: Any = None
    _core: Optional[_Core] = None
    _feeder: Optional[_Feeder] = None

    def __init__(self, maxsize: int = 0, *, max_message_size: Optional[int] = None, ctx: Any = None) -> None:
        maxsize = _check_maxsize(maxsize)
        fd = _make_segment(maxsize, _check_record_size(max_message_size), 0o600, None)
        self._setup(fd, None)

    def _setup(self, fd: int, name: Optional[str]) -> None:
        try:
            seg = _Segment(fd, name)
        except BaseException:
            os.close(fd)
            raise
        self.name = name
        self._maxsize = seg.maxsize
        self._core = _Core(seg, self._closed_cls)
        self._closed = False
        self._joincancelled = False
        self._feeder = _Feeder(self._core) if self._maxsize == 0 and self._buffered else None
        self._opid = os.getpid()
        _queues.add(self)

    _buffered = True  # SimpleQueue: put() blocks instead

    # -------------------------------------------------- named queues

    @classmethod
    def create(cls, name: str, maxsize: int = 0, *, max_message_size: Optional[int] = None, mode: int = 0o600) -> Any:
        """A new named queue (``ExistsError`` if *name* is taken); *mode* is exact."""
        name = check_posix_name(name)
        maxsize = _check_maxsize(maxsize)
        mode = check_mode(mode)
        path = _path(name)
        if os.path.lexists(path):
            raise ExistsError(errno.EEXIST, f"shm_open: {os.strerror(errno.EEXIST)}", name)
        fd = _make_segment(maxsize, _check_record_size(max_message_size), mode, path)
        self = cls.__new__(cls)
        self._setup(fd, name)
        return self

    @classmethod
    def open(cls, name: str) -> Any:
        """Open an existing named queue (``NotFoundError`` if there is none)."""
        name = check_posix_name(name)
        fd = _open_segment(name)
        self = cls.__new__(cls)
        self._setup(fd, name)
        return self

    def unlink(self) -> None:
        """Remove the name; handles already open keep working until closed."""
        if self.name is None:
            raise ValueError("an unnamed queue has no name to unlink")
        with translate_oserror("shm_unlink", filename=self.name):
            os.unlink(_path(self.name))

    # -------------------------------------------------- pickling (hand-over)

    def __getstate__(self) -> dict:
        core = self._live_core()
        popen = _mp_context.get_spawning_popen()
        if popen is None:
            if self.name is None:
                _mp_context.assert_spawning(self)  # RuntimeError, as multiprocessing's queues
            return {"name": self.name, "fd": None, "cancelled": self._joincancelled}
        return {"name": self.name, "fd": _reduction.DupFd(core.seg.fd), "cancelled": self._joincancelled}

    def __setstate__(self, state: dict) -> None:
        if state["fd"] is None:
            fd = _open_segment(state["name"])
        else:
            fd = state["fd"].detach()
        self._setup(fd, state["name"])
        self._joincancelled = state["cancelled"]

    def _after_fork(self) -> None:
        # A forked child shares the segment; the parent's buffer and feeder are the parent's.
        if self._feeder is not None and self._core is not None:
            self._feeder = _Feeder(self._core)
        if self._core is not None:
            self._core.local = _Local(self._core.record_size)
            self._core.lane_lock = threading.Lock()
        self._jointhread = None

    # -------------------------------------------------- put / get

    def _live_core(self) -> _Core:
        core = self._core
        if self._closed or core is None:
            raise self._closed_error()
        return core

    def put(self, obj: Any, block: bool = True, timeout: Optional[float] = None) -> None:
        """Put *obj* into the queue; ``queue.Full`` if it stays full past *timeout*
        (or at once with ``block=False``). Unbounded queues never block."""
        core = self._core
        if self._closed or core is None:
            raise self._closed_error()
        buffers: list = []
        try:
            data = _dumps(obj, 5, buffer_callback=buffers.append)
        except TypeError:
            data = None  # a memoryview, say: _encode's other pickler takes it, or raises
        if data is not None and not buffers and len(data) <= core.record_size:
            # The hot path: a small object, one C call.
            feeder = self._feeder
            if feeder is None:
                if block and timeout is None:
                    rc = _shmq_send(core.rh, data, len(data), -1)
                    if not rc:
                        return
                enc = _Encoded(data, [], len(data))
            else:
                if not feeder.buffer:  # once objects are buffered, the rest go behind them
                    if not _shmq_send(core.rh, data, len(data), 0):
                        return
                enc = _Encoded(data, [], len(data))
        else:
            enc = _encode(obj, core.record_size, data, buffers)
        if not self._deliver(core, enc, _deadline(block, timeout)):
            raise Full

    def _closed_error(self) -> Exception:
        return self._closed_cls(errno.EBADF, f"{type(self).__name__} {self!r} is closed")

    def _counted(self, core: _Core, enc: _Encoded, deadline: Deadline) -> bool:
        return self._deliver(core, enc, deadline)

    def _deliver(self, core: _Core, enc: _Encoded, deadline: Deadline) -> bool:
        """Put one encoded object (or buffer it): False if *deadline* passed first."""
        feeder = self._feeder
        if feeder is None:
            return core.send(enc, deadline, self)
        self._put_unbounded(core, feeder, enc)
        return True

    def _put_unbounded(self, core: _Core, feeder: _Feeder, enc: _Encoded) -> None:
        with feeder.cond:
            if not feeder.buffer:
                if enc.record is not None and core.send_record(enc.record, NOW):
                    return
            feeder.buffer.append(enc)
            if feeder.thread is None:
                feeder.closing = False
                feeder.start(self)
            feeder.cond.notify()

    def put_nowait(self, obj: Any) -> None:
        self.put(obj, False)

    def get(self, block: bool = True, timeout: Optional[float] = None) -> Any:
        """Remove and return the next object; ``queue.Empty`` if none arrives within
        *timeout* (or at once with ``block=False``)."""
        core = self._core
        if self._closed or core is None:
            raise self._closed_error()
        obj = core.recv(FOREVER if block and timeout is None else _deadline(block, timeout), self)
        if obj is WOULD_BLOCK:
            raise Empty
        return obj

    def get_nowait(self) -> Any:
        return self.get(False)

    # -------------------------------------------------- the aio hooks

    def _put_op(self, obj: Any) -> tuple:
        """``(attempt, waiter)`` of ``put(obj)`` for ipckit.aio (see the class docstring)."""
        core = self._live_core()
        enc = _encode(obj, core.record_size)

        def attempt(limit: Deadline) -> Any:
            if enc.record is None and limit is NOW:
                limit = FOREVER  # a big object streams to its end (see the essay)
            return None if self._counted(core, enc, limit) else WOULD_BLOCK

        return attempt, core.ring._send_waiter()  # type: ignore[union-attr]

    def _get_op(self) -> tuple:
        """``(attempt, waiter)`` of ``get()`` for ipckit.aio (see the class docstring)."""
        core = self._live_core()
        return (lambda limit: core.recv(limit, self)), _GetWaiter(core)

    # -------------------------------------------------- state

    def qsize(self) -> int:
        """Objects in the queue, counting this process's buffered ones (approximate
        while others put and get, as in multiprocessing)."""
        core = self._live_core()
        feeder = self._feeder
        return core.count() + (len(feeder.buffer) if feeder is not None else 0)

    def empty(self) -> bool:
        return self.qsize() == 0

    def full(self) -> bool:
        return self._maxsize > 0 and self.qsize() >= self._maxsize

    @property
    def maxsize(self) -> int:
        return self._maxsize

    def close(self) -> None:
        """No more puts or gets from this process (they raise ``QueueClosed``); objects
        still buffered are flushed by the feeder thread, which then exits."""
        if self._closed:
            return
        self._closed = True
        core, feeder = self._core, self._feeder
        if core is None:
            return
        if feeder is not None:
            with feeder.cond:
                if feeder.thread is not None:
                    feeder.closing = True
                    feeder.release_core = True
                    feeder.cond.notify()
                    return
        core.close()

    def join_thread(self) -> None:
        """Wait for the feeder thread to flush and exit; only after ``close()``."""
        assert self._closed, f"Queue {self!r} not closed"
        if self._jointhread is not None:
            self._jointhread()

    def cancel_join_thread(self) -> None:
        """Do not wait for the feeder at exit: buffered objects may be lost."""
        self._joincancelled = True
        try:
            self._jointhread.cancel()
        except AttributeError:
            pass

    def __repr__(self) -> str:
        what = "unnamed" if getattr(self, "name", None) is None else repr(self.name)
        return f"<ipckit.{type(self).__name__} {what} maxsize={getattr(self, '_maxsize', '?')}>"

    def __del__(self) -> None:
        try:
            if not self._closed and self._feeder is None and self._core is not None:
                self._core.close()
        except Exception:  # pragma: no cover
            pass


class JoinableQueue(Queue):
    """``multiprocessing.JoinableQueue``: a ``Queue`` with ``task_done()`` and ``join()``.

    The count of unfinished tasks lives in the segment: every ``put`` adds one,
    ``task_done`` takes one off (``ValueError`` if called more often than ``put``),
    ``join`` waits for it to reach zero, in any process."""

    def __init__(self, maxsize: int = 0, *, max_message_size: Optional[int] = None, ctx: Any = None) -> None:
        super().__init__(maxsize, max_message_size=max_message_size)

    def put(self, obj: Any, block: bool = True, timeout: Optional[float] = None) -> None:
        core = self._live_core()
        self._tasks(core, 1)  # before the object can be got (and marked done)
        try:
            super().put(obj, block, timeout)
        except BaseException:
            self._tasks(core, -1)
            raise

    def _counted(self, core: _Core, enc: _Encoded, deadline: Deadline) -> bool:
        self._tasks(core, 1)
        try:
            done = super()._counted(core, enc, deadline)
        except BaseException:
            self._tasks(core, -1)
            raise
        if not done:
            self._tasks(core, -1)
        return done

    def _tasks(self, core: _Core, delta: int) -> int:
        now = ffi.new("int64_t *")
        if lib.ipckit_objq_tasks_add(core.q, delta, now):
            if delta < 0:
                raise ValueError("task_done() called too many times")
            raise OverflowError("too many unfinished tasks")  # pragma: no cover
        return int(now[0])

    def task_done(self) -> None:
        """One object got from the queue has been dealt with."""
        self._tasks(self._live_core(), -1)

    def join(self, timeout: Optional[float] = None) -> None:
        """Block until every object put has been got and marked ``task_done()``.
        (*timeout*, an ipckit extension, raises ``ipckit.Timeout`` when it passes.)"""
        attempt, _ = self._join_op()
        retry(attempt, Deadline.from_user(timeout), "join")

    def _join_op(self) -> tuple:
        """``(attempt, waiter)`` of ``join()`` for ipckit.aio: the attempt waits in the
        kernel up to its limit (``NOW``: only looks); the waiter observes the same
        count from a thread. Joining takes nothing, so observing is the whole wait."""
        core = self._live_core()

        def attempt(limit: Deadline) -> Any:
            if self._closed:
                raise self._closed_error()
            rc = lib.ipckit_objq_tasks_wait(core.q, _limit_ns(limit))
            if rc == 0:
                return None
            if rc in _NOT_YET:
                return WOULD_BLOCK
            raise error_from_errno(-rc, "join")  # pragma: no cover

        return attempt, _JoinWaiter(self, attempt)


class _JoinWaiter(Waiter):
    """For ipckit.aio: until the unfinished-task count is zero (observed, not claimed)."""

    __slots__ = ("key", "_attempt")

    def __init__(self, queue: "JoinableQueue", attempt: Callable[[Deadline], Any]) -> None:
        self.key = (queue, "join")
        self._attempt = attempt

    def wait(self, deadline: Deadline) -> None:
        self._attempt(deadline)


class _SimpleClosed(ClosedError):
    """A call on a closed ``SimpleQueue``: multiprocessing raises ``OSError`` there."""


class SimpleQueue(Queue):
    """``multiprocessing.SimpleQueue``: ``put``, ``get``, ``empty``, ``close``.

    ``put`` blocks while the ring is full (as a pipe's writer does), ``get`` until an
    object arrives. After ``close()`` calls raise ``ipckit.ClosedError`` (an
    ``OSError``, as multiprocessing's)."""

    _closed_cls = _SimpleClosed
    _buffered = False

    def __init__(self, *, ctx: Any = None) -> None:
        super().__init__(0)

    def put(self, obj: Any) -> None:  # type: ignore[override]
        super().put(obj)

    def get(self) -> Any:  # type: ignore[override]
        return super().get()

    def empty(self) -> bool:
        return self._live_core().count() == 0


__all__ = ["JoinableQueue", "Queue", "QueueClosed", "SimpleQueue"]
