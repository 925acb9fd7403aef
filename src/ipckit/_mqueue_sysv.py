"""backend="sysv": System V message queues (``msgget``/``msgsnd``/``msgrcv``) through cffi.

Why the C library and not sysv_ipc. sysv_ipc reports EINTR as its base ``Error``
with a text only (so telling it from other failures meant reading the message),
and it has neither ``MSG_NOERROR`` nor ``msg_cbytes``. ``csrc/sysvmsg.c`` is a few
lines per call and returns ``-errno``; "the queue was removed" (EIDRM, or EINVAL
for an id that no longer exists) is then decided once, by ``_errors.SYSV_REMOVED``,
for every call on the queue. sysv_ipc stays a test peer.

Limits. The kernel has no per-queue message size or count: a message may be up to
``msgmax`` bytes (/proc/sys/kernel/msgmax) and a queue holds up to ``msg_qbytes``
bytes (default ``msgmnb``, /proc/sys/kernel/msgmnb) and at most ``msg_qbytes``
messages. So ``create(max_messages=N, max_message_size=S)`` sets the queue's byte
capacity ``msg_qbytes = N * S`` (S defaults to msgmax): room for at least N messages
of S bytes. Values over msgmax, or a product over msgmnb, raise ``ValueError``
naming the limit and its /proc file (raising msg_qbytes over msgmnb needs
CAP_SYS_RESOURCE, which even root may lack in a container). ``max_message_size``
reports ``min(msgmax, msg_qbytes)`` -- a larger message could never fit -- and
``max_messages`` is ``None``. ``set(max_bytes=...)`` is ``IPC_SET`` of msg_qbytes.

Timeouts. There is no timed ``msgrcv``/``msgsnd``. ``timeout=None`` is a plain
blocking call (no latency cost); every other wait is ``_wait.retry`` over an
``IPC_NOWAIT`` attempt and the waiter ``Backoff(50 µs .. 2 ms)``, never napping
past the monotonic ``Deadline``. A timed wait therefore notices a message up to
~2 ms late and costs a few hundred wake-ups a second while idle; ``Timeout`` is
raised only after the deadline has passed and a last attempt failed (never early).
Polling was chosen over interrupting a blocking ``msgrcv`` with a timer signal,
which would disturb the application's signals. The waiter's ``observe`` looks at
``msg_qnum`` (receive) or the free bytes (send) with ``IPC_STAT``, which consumes
nothing, so an event loop can watch for readiness from a thread.

Truncation. ``receive(max_size=n)`` takes at most *n* bytes: a longer message
raises ``MessageTooLarge`` and stays queued (``msgrcv`` E2BIG), unless
``truncate=True``, which takes it cut to *n* bytes (``MSG_NOERROR``).

Removal. ``unlink()`` (``IPC_RMID``) destroys the queue at once: calls blocked on
it in any process, and every later call on any handle, raise ``ClosedError``.

No ``fileno()``: a SysV queue is not a file descriptor (``hasattr(q, "fileno")``
is False), so it cannot be used with selectors; use the POSIX backend for that.
"""

from __future__ import annotations

import collections
import errno
from typing import Any, NamedTuple, Optional

from . import _ffi
from ._data import byte_view
from ._errors import SYSV_GONE, SYSV_REMOVED, As, ExistsError, IPCError, MessageTooLarge, NotFoundError, closed_error, error_from_errno
from ._mqueue import TYPE_MAX, Message, MessageQueue, MessageQueueStat, check_receive_type, check_send_type, too_large
from ._naming import check_ipc_set, check_positive_int, check_sysv_key, describe_sysv, sysv_key_to_c
from ._procfs import read_int
from ._timeouts import Deadline
from ._wait import NO_WAIT, WOULD_BLOCK, Attempt, Backoff, Waiter, retry

MSGMAX_FILE = "/proc/sys/kernel/msgmax"
MSGMNB_FILE = "/proc/sys/kernel/msgmnb"
MSGMNI_FILE = "/proc/sys/kernel/msgmni"

QBYTES_MAX = 2**63 - 1  # msg_qbytes is a C unsigned long; IPC_SET over msgmnb needs CAP_SYS_RESOURCE
FIRST_NAP = 50e-6
MAX_NAP = 2e-3

ffi, lib = _ffi.ffi, _ffi.lib
_msgsnd = lib.ipckit_msgsnd
_msgrcv = lib.ipckit_msgrcv
_msgsnd_wait = lib.ipckit_msgsnd_wait
_msgrcv_wait = lib.ipckit_msgrcv_wait
_alloc = ffi.new_allocator(should_clear_after_alloc=False)
_NOWAIT = lib.IPC_NOWAIT
_NOERROR = lib.MSG_NOERROR
_EAGAIN, _ENOMSG, _EINTR, _E2BIG = -errno.EAGAIN, -errno.ENOMSG, -errno.EINTR, -errno.E2BIG
_LONG = ffi.sizeof("long")


def _msgmax() -> int:
    return read_int(MSGMAX_FILE) or 8192


class SysvMsgStat(NamedTuple):
    """Everything ``msgctl(IPC_STAT)`` says about a queue (``q.stat()`` gives the
    backend-neutral ``MessageQueueStat``)."""

    key: Optional[int]
    uid: int
    gid: int
    cuid: int
    cgid: int
    mode: int
    messages: int
    max_bytes: int
    bytes: int
    last_send_pid: int
    last_receive_pid: int
    last_send_time: int
    last_receive_time: int
    last_change_time: int


def _stat(msqid: int, what: str, overrides: Any = SYSV_REMOVED) -> SysvMsgStat:
    out = ffi.new("struct ipckit_msg_stat *")
    _ffi.check(lib.ipckit_msgctl_stat(msqid, out), what, overrides)
    key = out.key & 0xFFFFFFFF
    return SysvMsgStat(
        key or None, out.uid, out.gid, out.cuid, out.cgid, out.mode, out.qnum, out.qbytes, out.cbytes,
        out.lspid, out.lrpid, out.stime, out.rtime, out.ctime,
    )


def check_receive_args(type: object, max_size: object, truncate: object) -> None:
    """``receive``'s arguments (also ``ipckit.aio``'s): the type, then *max_size* and *truncate*."""
    if type.__class__ is not int or not -TYPE_MAX <= type <= TYPE_MAX:  # type: ignore[operator]
        check_receive_type(type)
    if max_size is not None:
        check_positive_int(max_size, "max_size", minimum=0)
    elif truncate:
        raise ValueError("truncate=True needs max_size=: the length to cut a longer message to")
    if not isinstance(truncate, bool):
        raise TypeError(f"truncate must be a bool, not {truncate.__class__.__name__}")


class SysvMessageQueue(MessageQueue):
    """A System V message queue (``backend="sysv"``), named by an integer key
    (``None``: private); ``id`` is its msqid.

    ``send(type=...)`` tags a message with a type >= 1; ``receive(type=...)``
    selects as ``msgrcv`` does. ``max_bytes`` is the byte capacity (``msg_qbytes``).
    ``set(...)`` is ``IPC_SET``, ``stat()`` ``IPC_STAT``.
    """

    backend = "sysv"
    id: int = -1
    _qid = -1  # the id the hot path uses: -1 once closed
    _limit = -1

    def __init__(self, msqid: int, key: Optional[int]) -> None:
        self.name = key
        self.id = msqid
        self._qid = msqid
        self._msgmax = _msgmax()
        self._limit = min(self._msgmax, _stat(msqid, "msgctl(IPC_STAT)").max_bytes)
        self._cap = self._msgmax  # receive buffers hold this many data bytes
        self._buffers: collections.deque = collections.deque()
        self._closed = False

    @classmethod
    def _check_name(cls, name: Any) -> Optional[int]:
        # None is a private queue (IPC_PRIVATE) for create(); _open() refuses it.
        return check_sysv_key(name, allow_private=True)

    # --- creation -----------------------------------------------------------------

    @classmethod
    def _create(cls, name: Optional[int], *, max_messages: Optional[int], max_message_size: Optional[int], mode: int) -> "SysvMessageQueue":
        if mode > 0o777:
            raise ValueError(f"mode must be in 0..0o777 for a SysV queue (it has no setuid/sticky bits), got {oct(mode)}")
        msgmax = _msgmax()
        if max_message_size is not None and max_message_size > msgmax:
            raise ValueError(
                f"max_message_size={max_message_size} is over the kernel's per-message limit msgmax={msgmax} ({MSGMAX_FILE})"
            )
        qbytes = None
        if max_messages is not None:
            qbytes = max_messages * (max_message_size or msgmax)
            msgmnb = read_int(MSGMNB_FILE)
            if (msgmnb is not None and qbytes > msgmnb) or qbytes > QBYTES_MAX:
                raise ValueError(
                    f"max_messages={max_messages} x max_message_size={max_message_size or msgmax} = {qbytes} bytes is over "
                    f"the kernel's queue capacity limit msgmnb={msgmnb} ({MSGMNB_FILE}); SysV queues are sized in bytes"
                )
        ckey = lib.IPC_PRIVATE if name is None else sysv_key_to_c(name)
        overrides = {
            errno.EEXIST: As(ExistsError, f"a SysV message queue {describe_sysv(name)} exists"),
            errno.ENOSPC: As(
                IPCError,
                f"the system-wide number of SysV message queues is at its limit msgmni="
                f"{read_int(MSGMNI_FILE)} ({MSGMNI_FILE}); remove unused queues (ipcs -q / ipcrm)",
            ),
        }
        msqid = _ffi.check(lib.ipckit_msgget(ckey, lib.IPC_CREAT | lib.IPC_EXCL | mode), "msgget", overrides)
        try:
            if qbytes is not None:  # IPC_SET msg_qbytes (lowering it needs no privilege)
                _ffi.check(lib.ipckit_msgctl_set(msqid, -1, -1, -1, qbytes), "msgctl(IPC_SET)", SYSV_REMOVED)
            return cls(msqid, name)
        except BaseException:
            lib.ipckit_msgctl_rmid(msqid)
            raise

    @classmethod
    def _open(cls, name: Optional[int]) -> "SysvMessageQueue":
        if name is None:
            raise TypeError("name must be an int key to open a SysV queue: a private (None) queue has no key to be opened by")
        overrides = {errno.ENOENT: As(NotFoundError, f"no SysV message queue with key {name:#x}")}
        msqid = _ffi.check(lib.ipckit_msgget(sysv_key_to_c(name), 0), "msgget", overrides)
        return cls(msqid, name)

    @classmethod
    def _open_id(cls, id: int) -> "SysvMessageQueue":
        key = _stat(id, f"msgctl({id}, IPC_STAT)", SYSV_GONE).key
        return cls(id, key)

    # --- the hot path -----------------------------------------------------------

    def send(self, data: Any, *, priority: int = 0, type: int = 1, timeout: Optional[float] = None) -> None:
        """Enqueue *data* tagged with *type* (1..2**31-1). ``priority`` is for
        POSIX queues and is ignored here. A full queue (``msg_qbytes`` reached)
        waits up to *timeout*, then ``Timeout``; nothing is enqueued."""
        if data.__class__ is bytes and type.__class__ is int and timeout is None:
            n = len(data)
            if n <= self._limit and 1 <= type <= 2147483647:  # TYPE_MAX, as a constant
                if _msgsnd_wait(self._qid, type, data, n) == 0:
                    return
        self._send(data, type, timeout)

    def _send(self, data: Any, type_: Any, timeout: Any) -> None:
        """The general path: every check in order, then the wait loop."""
        attempt, waiter = self._send_op(data, 0, type_)
        deadline = Deadline.from_user(timeout)
        retry(attempt, deadline, "send", NO_WAIT if deadline.blocking else waiter)

    def _send_op(self, data: Any, priority: Any = 0, type: Any = 1) -> tuple[Attempt, Waiter]:
        """Check a send's arguments (``ClosedError``, ``TypeError``, ``MessageTooLarge``,
        ``ValueError``, in that order) and return ``(attempt, waiter)`` for ``_wait``:
        the attempt is one msgsnd (``IPC_NOWAIT`` unless its limit is forever) that says
        ``WOULD_BLOCK`` when the queue is full or the call was interrupted; the waiter
        naps (50 µs doubling to 2 ms), and its ``observe()`` says whether the message
        fits now (IPC_STAT: no side effect), for an event loop watching from a thread."""
        self._check_open()
        view = byte_view(data)
        n = view.nbytes
        if n > self._limit:
            raise too_large(n, self._limit, self)
        check_send_type(type)
        buf = data if data.__class__ is bytes else ffi.from_buffer(view)

        def attempt(limit: Deadline) -> Any:
            rc = _msgsnd(self._qid, type, buf, n, 0 if limit.blocking else _NOWAIT)
            if rc == 0:
                return None
            if rc == _EAGAIN or rc == _EINTR:
                return WOULD_BLOCK
            raise self._error(rc, "msgsnd")

        def observe() -> bool:
            st = _stat(self._qid, "msgctl(IPC_STAT)")
            return st.bytes + n <= st.max_bytes and st.messages + 1 <= st.max_bytes

        return attempt, Backoff(FIRST_NAP, MAX_NAP, observe=observe)

    def recv(self, *, timeout: Optional[float] = None) -> bytes:
        """Dequeue the first message (any type); ``Timeout`` if none within *timeout*."""
        if timeout is None:  # inline, as in _mqueue_posix: a helper call would cost as much as the rest
            buffers = self._buffers
            try:
                slot = buffers.pop()
            except IndexError:
                slot = self._new_buffer()
            n = _msgrcv_wait(self._qid, slot[1], slot[0])
            if n >= 0:
                data = slot[2][:n]
                buffers.append(slot)
                return data  # type: ignore[no-any-return]
            buffers.append(slot)
        return self._receive(0, timeout, None, False)[0]  # type: ignore[no-any-return]

    def receive(
        self, *, type: int = 0, timeout: Optional[float] = None, max_size: Optional[int] = None, truncate: bool = False
    ) -> Message:
        """Dequeue a message selected by *type* as ``msgrcv`` does: 0 the first
        message, >0 the first of that type, <0 the first of the lowest type
        <= |type|. Returns ``Message(data, None, type)``.

        *max_size* (SysV only) takes at most that many bytes: a longer message
        raises ``MessageTooLarge`` and stays queued, or with ``truncate=True`` is
        taken cut short to *max_size* bytes (``MSG_NOERROR``)."""
        check_receive_args(type, max_size, truncate)
        data, mtype = self._receive(type, timeout, max_size, truncate)
        return Message(data, None, mtype)

    def _receive(self, type_: int, timeout: Any, max_size: Optional[int], truncate: bool) -> tuple:
        attempt, waiter = self._recv_op(type_, max_size, truncate)
        deadline = Deadline.from_user(timeout)
        return retry(attempt, deadline, "recv", NO_WAIT if deadline.blocking else waiter)  # type: ignore[no-any-return]

    def _recv_op(self, type: int = 0, max_size: Optional[int] = None, truncate: bool = False) -> tuple[Attempt, Waiter]:
        """``(attempt, waiter)`` for a receive of checked arguments (see ``_send_op``):
        the attempt is one msgrcv selecting *type* (``IPC_NOWAIT`` unless its limit is
        forever) returning ``(data, type)``, or ``WOULD_BLOCK`` when nothing matches or
        the call was interrupted; the waiter's ``observe()`` says whether any message is
        queued (a receive selecting a type may still find none of that type)."""
        self._check_open()
        type_ = type

        def attempt(limit: Deadline) -> Any:
            flags = (0 if limit.blocking else _NOWAIT) | (_NOERROR if truncate else 0)
            while True:
                buffers = self._buffers
                try:
                    slot = buffers.pop()
                except IndexError:
                    slot = self._new_buffer()
                cap = slot[0] if max_size is None else min(max_size, slot[0])
                n = _msgrcv(self._qid, slot[1], cap, type_, flags)
                if n >= 0:
                    result = slot[2][:n], int(slot[3][0])
                    buffers.append(slot)
                    return result
                buffers.append(slot)
                if n == _ENOMSG or n == _EINTR:
                    return WOULD_BLOCK
                if n != _E2BIG:
                    raise self._error(n, "msgrcv")
                if cap == max_size:  # longer than the caller takes: it stays queued
                    raise MessageTooLarge(
                        errno.E2BIG, f"msgrcv: the message is longer than max_size={max_size}; it stays queued "
                        "(truncate=True takes it cut short)"
                    )
                self._grow()  # msgmax was raised since: make room and try again

        return attempt, Backoff(FIRST_NAP, MAX_NAP, observe=lambda: _stat(self._qid, "msgctl(IPC_STAT)").messages > 0)

    def _new_buffer(self) -> tuple:
        """(data capacity, msgbuf for msgrcv, its data part as a Python buffer (slicing it
        copies out), its type part)."""
        buf = _alloc("char[]", _LONG + self._cap)
        return (self._cap, buf, ffi.buffer(buf + _LONG, self._cap), ffi.cast("long *", buf))

    def _grow(self) -> None:
        self._cap = max(self._cap * 2, _msgmax())
        self._buffers.clear()

    def _error(self, rc: int, what: str) -> BaseException:
        if self._closed:
            return closed_error(self)
        return error_from_errno(-rc, f"{what} on the SysV message queue {describe_sysv(self.name)}", overrides=SYSV_REMOVED)

    # --- the rest ---------------------------------------------------------------

    def _sysv_stat(self) -> SysvMsgStat:
        """Every field of ``msgctl(IPC_STAT)``, as the kernel has them."""
        self._check_open()
        return _stat(self._qid, "msgctl(IPC_STAT)")

    def set(self, *, mode: Optional[int] = None, uid: Optional[int] = None, gid: Optional[int] = None, max_bytes: Optional[int] = None) -> None:
        """``msgctl(IPC_SET)``: change the permission *mode*, the owner *uid*/*gid*,
        and the byte capacity *max_bytes* (``msg_qbytes``; raising it over msgmnb
        needs CAP_SYS_RESOURCE). Arguments left None stay as they are."""
        c_mode, c_uid, c_gid = check_ipc_set(mode, uid, gid, required=max_bytes is None)
        qbytes = -1 if max_bytes is None else check_positive_int(max_bytes, "max_bytes")
        if qbytes > QBYTES_MAX:
            raise ValueError(f"max_bytes must be <= {QBYTES_MAX}, got {qbytes}")
        self._check_open()
        _ffi.check(lib.ipckit_msgctl_set(self._qid, c_uid, c_gid, c_mode, qbytes), "msgctl(IPC_SET)", SYSV_REMOVED)
        self._limit = min(self._msgmax, _stat(self._qid, "msgctl(IPC_STAT)").max_bytes)

    def __len__(self) -> int:
        return int(self._sysv_stat().messages)

    @property
    def max_messages(self) -> None:
        """Always None: SysV queues are bounded in bytes (``max_bytes``), not messages."""
        self._check_open()
        return None

    @property
    def max_message_size(self) -> int:
        """The largest message that can be sent: ``msgmax`` (/proc/sys/kernel/msgmax),
        or the queue's ``msg_qbytes`` if that is smaller."""
        self._limit = min(self._msgmax, int(self._sysv_stat().max_bytes))
        return self._limit

    @property
    def max_bytes(self) -> int:
        """The queue's byte capacity, ``msg_qbytes``."""
        return int(self._sysv_stat().max_bytes)

    def stat(self) -> MessageQueueStat:
        """``msgctl(IPC_STAT)``: counts, limits, last sender/receiver pids and times
        (None until the first send/receive), owner and mode."""
        st = self._sysv_stat()
        return MessageQueueStat(
            backend="sysv",
            messages=st.messages,
            bytes=st.bytes,
            max_messages=None,
            max_message_size=min(self._msgmax, st.max_bytes),
            max_bytes=st.max_bytes,
            last_send_pid=st.last_send_pid or None,
            last_receive_pid=st.last_receive_pid or None,
            last_send_time=float(st.last_send_time) if st.last_send_time else None,
            last_receive_time=float(st.last_receive_time) if st.last_receive_time else None,
            last_change_time=float(st.last_change_time) if st.last_change_time else None,
            uid=st.uid,
            mode=st.mode,
            gid=st.gid,
        )

    def __reduce__(self) -> tuple:
        if self.name is None:
            raise TypeError("a private (IPC_PRIVATE) SysV queue has no key to be opened by: it cannot be pickled")
        return super().__reduce__()

    def unlink(self) -> None:
        """Remove the queue now (``IPC_RMID``), whether or not this handle is closed.
        Every handle's later calls raise ``ClosedError``; ``NotFoundError`` if it was
        already removed."""
        _ffi.check(lib.ipckit_msgctl_rmid(self.id), f"msgctl(IPC_RMID) of the SysV message queue {describe_sysv(self.name)}", SYSV_GONE)

    def _close(self) -> None:
        self._qid, self._limit = -1, -1  # nothing to release: a SysV queue id is not a descriptor


__all__ = ["SysvMessageQueue", "SysvMsgStat"]
