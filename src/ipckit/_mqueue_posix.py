"""backend="posix": POSIX message queues (``mq_open``/``mq_send``/``mq_receive``) through cffi.

Why the C library and not posix_ipc. posix_ipc loses what ipckit has to tell the
user: it raises EMFILE and ENOSPC as ``OSError`` without an errno, EINVAL as
``ValueError``, EINTR as its own class, and its timed calls take a wall-clock
deadline. ``csrc/posixmq.c`` is a few lines per call and returns ``-errno``, so
every failure goes through ``_errors`` by its errno (posix_ipc stays a test peer).

Waiting. ``timeout=None`` is one blocking ``mq_send``/``mq_receive``. Every other
wait is ``_wait.retry`` over a non-blocking *attempt* (``mq_timedsend`` /
``mq_timedreceive`` with a deadline already past, which fails at once instead of
blocking, without touching the descriptor's ``O_NONBLOCK`` that other threads
share) and the *waiter* ``ReadyFd(mqd, POLLOUT/POLLIN)``: an mqueue descriptor
is pollable on Linux. Waiting on the monotonic ``Deadline`` this way, no
wall-clock jump can end a wait early or stretch it. Losing a race to another
receiver just means polling again; ``Timeout`` only after the deadline has passed
and a last attempt failed. EINTR is an attempt that would block (PEP 475).

The hot path. A 64-byte send or receive costs the kernel about a microsecond, so
the Python around it is kept to one C call: ``send`` of ``bytes`` with
``timeout=None`` checks size and priority inline and calls ``mq_send``; anything
else (other bytes-like objects, timeouts, errors) takes the general path, which
checks everything again in the documented order. Closing sets the descriptor to
-1, so a closed handle costs the hot path nothing: its call fails with EBADF and
the general path raises ``ClosedError``. ``recv`` receives into a buffer taken
from a small per-queue pool (a deque: pop/append are atomic under the GIL, so threads
sharing a queue never share a buffer) and copies the message out once, by slicing
the buffer's ``ffi.buffer`` (cheaper than ``ffi.unpack``).

Closing while another thread waits in ``mq_receive`` on the same handle leaves
that thread waiting (the kernel keeps the queue open under it) until a message
comes; it never touches freed memory.

Mode: ``mq_open`` applies the umask, so the mode is set again with ``fchmod`` on
the descriptor (an mqueue descriptor is an inode on Linux), making it exact.
"""

from __future__ import annotations

import collections
import errno
import os
import resource
from typing import Any, Optional

from . import _ffi
from ._data import byte_view
from ._errors import As, ClosedError, ExistsError, IPCError, NotFoundError, closed_error, error_from_errno
from ._mqueue import PRIORITY_MAX, Message, MessageQueue, MessageQueueStat, check_priority, too_large
from ._procfs import open_fd_count, read_int
from ._timeouts import Deadline
from ._wait import NO_WAIT, POLLIN, POLLOUT, WOULD_BLOCK, Attempt, ReadyFd, Waiter, retry

_PROC = "/proc/sys/fs/mqueue/"
MSG_MAX_FILE = _PROC + "msg_max"
MSGSIZE_MAX_FILE = _PROC + "msgsize_max"
MSG_DEFAULT_FILE = _PROC + "msg_default"
MSGSIZE_DEFAULT_FILE = _PROC + "msgsize_default"
QUEUES_MAX_FILE = _PROC + "queues_max"

ffi, lib = _ffi.ffi, _ffi.lib
_send = lib.ipckit_mq_send
_receive = lib.ipckit_mq_receive
_send_wait = lib.ipckit_mq_send_wait
_receive_wait = lib.ipckit_mq_receive_wait
_alloc = ffi.new_allocator(should_clear_after_alloc=False)
_EAGAIN = -errno.EAGAIN
_EINTR = -errno.EINTR
_C_INT_MAX = 2**31 - 1  # the kernel keeps the limits as ints

# A call on a handle closed under it (EBADF) is ClosedError.
_ON_HANDLE = {errno.EBADF: As(ClosedError, "the queue handle is closed")}


def _queue_bytes(max_messages: int, max_message_size: int) -> int:
    """Roughly what the kernel charges to RLIMIT_MSGQUEUE for a queue (ipc/mqueue.c:
    the message space plus a pointer and a priority-tree node per message)."""
    return max_messages * (max_message_size + 8) + min(max_messages, PRIORITY_MAX + 1) * 40


def _limit_error(max_messages: int, max_message_size: int) -> ValueError:
    """mq_open said EINVAL: name the kernel limit the request went over."""
    msg_max = read_int(MSG_MAX_FILE)
    msgsize_max = read_int(MSGSIZE_MAX_FILE)
    problems = []
    if msg_max is not None and max_messages > msg_max:
        problems.append(f"max_messages={max_messages} is over the kernel limit msg_max={msg_max} ({MSG_MAX_FILE})")
    if msgsize_max is not None and max_message_size > msgsize_max:
        problems.append(f"max_message_size={max_message_size} is over the kernel limit msgsize_max={msgsize_max} ({MSGSIZE_MAX_FILE})")
    if not problems:
        problems.append(f"the kernel refused max_messages={max_messages}, max_message_size={max_message_size} (EINVAL)")
    hint = "; use smaller values, or raise the limit with sysctl (needs root, and a kernel that allows it)"
    return ValueError("; ".join(problems) + hint)


def _emfile_error(max_messages: int, max_message_size: int) -> IPCError:
    """mq_open(O_CREAT) said EMFILE. That is usually not too many open files but the
    per-user RLIMIT_MSGQUEUE byte budget, which the kernel reports with the same errno."""
    soft_files = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    open_files = open_fd_count() or 0
    if soft_files != resource.RLIM_INFINITY and open_files >= soft_files - 1:
        return IPCError(errno.EMFILE, f"mq_open: this process has too many open files ({open_files}, RLIMIT_NOFILE {soft_files})")
    budget = resource.getrlimit(resource.RLIMIT_MSGQUEUE)[0]
    need = _queue_bytes(max_messages, max_message_size)
    return IPCError(
        errno.EMFILE,
        f"mq_open: creating a queue of {max_messages} x {max_message_size} bytes (about {need} bytes) would exceed "
        f"this user's POSIX message queue budget RLIMIT_MSGQUEUE ({budget} bytes, `ulimit -q`), which counts every "
        "queue this user owns until it is unlinked and closed everywhere. The kernel reports this as EMFILE "
        "('too many open files'), which it is not. Unlink queues no longer used, create smaller ones, "
        "or raise RLIMIT_MSGQUEUE (resource.setrlimit before creating; raising the hard limit needs root).",
    )


def _create_overrides(name: str) -> dict[int, As]:
    return {
        errno.EEXIST: As(ExistsError, f"a POSIX message queue named {name!r} exists"),
        errno.ENOSPC: As(
            IPCError,
            f"the system-wide number of POSIX message queues is at its limit "
            f"queues_max={read_int(QUEUES_MAX_FILE)} ({QUEUES_MAX_FILE}); unlink unused queues",
        ),
    }


def _getattr(mqd: int) -> Any:
    attr = ffi.new("struct ipckit_mq_attr *")
    _ffi.check(lib.ipckit_mq_getattr(mqd, attr), "mq_getattr", _ON_HANDLE)
    return attr


def check_no_type(type: object) -> None:
    """A POSIX receive's *type*, which must be 0 (also ``ipckit.aio``'s)."""
    if isinstance(type, bool) or not isinstance(type, int):
        raise TypeError(f"type must be an int, not {type.__class__.__name__}")
    if type != 0:
        raise ValueError(f"POSIX queues have no message types (they order by priority): type must be 0, got {type}")


class PosixMessageQueue(MessageQueue):
    """A POSIX message queue (``backend="posix"``). Its descriptor is pollable:
    ``fileno()`` works with ``selectors`` and asyncio (readable when a message
    waits, writable when there is room)."""

    backend = "posix"
    _mqd = -1
    _msgsize = -1  # -1 once closed: every message is then "too large" for the fast path

    def __init__(self, mqd: int, name: str) -> None:
        self._mqd = mqd
        self.name = name
        try:
            attr = _getattr(mqd)
        except BaseException:
            lib.ipckit_mq_close(mqd)
            raise
        self._maxmsg: int = attr.maxmsg
        self._size: int = attr.msgsize
        self._msgsize = self._size
        self._buffers: collections.deque = collections.deque()
        self._closed = False

    # --- creation -----------------------------------------------------------------

    @classmethod
    def _create(cls, name: str, *, max_messages: Optional[int], max_message_size: Optional[int], mode: int) -> "PosixMessageQueue":
        if max_messages is None:
            max_messages = read_int(MSG_DEFAULT_FILE) or 10
        if max_message_size is None:
            max_message_size = read_int(MSGSIZE_DEFAULT_FILE) or 8192
        if max_messages > _C_INT_MAX or max_message_size > _C_INT_MAX:
            raise _limit_error(max_messages, max_message_size)
        encoded = name.encode()
        rc = lib.ipckit_mq_open(encoded, os.O_CREAT | os.O_EXCL, mode, max_messages, max_message_size)
        if rc == -errno.EINVAL:
            raise _limit_error(max_messages, max_message_size)
        if rc == -errno.EMFILE:
            raise _emfile_error(max_messages, max_message_size)
        mqd = _ffi.check(rc, "mq_open", _create_overrides(name))
        try:
            os.fchmod(mqd, mode)  # mq_open applied the umask; make the mode exact
        except OSError as exc:
            lib.ipckit_mq_close(mqd)
            lib.ipckit_mq_unlink(encoded)
            raise error_from_errno(exc.errno, "fchmod", name) from exc
        try:
            return cls(mqd, name)  # closes mqd if it fails
        except BaseException:
            lib.ipckit_mq_unlink(encoded)
            raise

    @classmethod
    def _open(cls, name: str) -> "PosixMessageQueue":
        rc = lib.ipckit_mq_open(name.encode(), 0, 0, 0, 0)
        mqd = _ffi.check(rc, "mq_open", {errno.ENOENT: As(NotFoundError, f"no POSIX message queue named {name!r}")})
        return cls(mqd, name)

    @classmethod
    def _open_id(cls, id: int) -> "PosixMessageQueue":  # pragma: no cover - the facade refuses id= for posix
        raise ValueError("POSIX queues have no id: open them by name")

    # --- the hot path -----------------------------------------------------------

    def send(self, data: Any, *, priority: int = 0, type: int = 1, timeout: Optional[float] = None) -> None:
        """Enqueue *data* with *priority* (0..32767; higher is received first, FIFO
        within a priority). ``type`` is for SysV queues and is ignored here.
        A full queue waits up to *timeout*, then ``Timeout``; nothing is enqueued."""
        if data.__class__ is bytes and priority.__class__ is int and timeout is None:
            n = len(data)
            if n <= self._msgsize and 0 <= priority <= 32767:  # PRIORITY_MAX, as a constant
                if _send_wait(self._mqd, data, n, priority) == 0:
                    return
        self._send(data, priority, timeout)

    def _send(self, data: Any, priority: Any, timeout: Any) -> None:
        """The general path: every check in order, then the wait loop."""
        attempt, waiter = self._send_op(data, priority)
        deadline = Deadline.from_user(timeout)
        retry(attempt, deadline, "send", NO_WAIT if deadline.blocking else waiter)

    def _send_op(self, data: Any, priority: Any = 0, type: Any = 1) -> tuple[Attempt, Waiter]:
        """Check a send's arguments (``ClosedError``, ``TypeError``, ``MessageTooLarge``,
        ``ValueError``, in that order) and return ``(attempt, waiter)`` for ``_wait``:
        the attempt is one mq_send that blocks in the kernel only when its limit is
        forever (never for ``_wait.NOW``) and says ``WOULD_BLOCK`` when the queue is full
        or the call was interrupted; the waiter is the descriptor becoming writable."""
        self._check_open()
        view = byte_view(data)
        n = view.nbytes
        if n > self._size:
            raise too_large(n, self._size, self)
        check_priority(priority)
        buf = data if data.__class__ is bytes else ffi.from_buffer(view)

        def attempt(limit: Deadline) -> Any:
            rc = _send(self._mqd, buf, n, priority, 0 if limit.blocking else 1)
            if rc == 0:
                return None
            if rc == _EAGAIN or rc == _EINTR:
                return WOULD_BLOCK
            raise self._error(rc, "mq_send")

        return attempt, ReadyFd(self._mqd, POLLOUT)

    def recv(self, *, timeout: Optional[float] = None) -> bytes:
        """Dequeue the oldest message of the highest priority; ``Timeout`` if none
        arrived within *timeout*."""
        if timeout is None:
            buffers = self._buffers
            try:
                slot = buffers.pop()
            except IndexError:
                slot = self._new_buffer()
            n = _receive_wait(self._mqd, slot[0], self._size)
            if n >= 0:
                data = slot[2][:n]
                buffers.append(slot)
                return data  # type: ignore[no-any-return]
            buffers.append(slot)
        return self._receive(timeout)[0]  # type: ignore[no-any-return]

    def receive(self, *, type: int = 0, timeout: Optional[float] = None) -> Message:
        """Like ``recv()`` but returns ``Message(data, priority, None)``. POSIX
        queues have no types: *type* must be 0."""
        if type != 0 or type.__class__ is not int:
            check_no_type(type)
        data, priority = self._receive(timeout)
        return Message(data, priority, None)

    def _receive(self, timeout: Any) -> tuple:
        attempt, waiter = self._recv_op()
        deadline = Deadline.from_user(timeout)
        return retry(attempt, deadline, "recv", NO_WAIT if deadline.blocking else waiter)  # type: ignore[no-any-return]

    def _recv_op(self, type: Any = 0) -> tuple[Attempt, Waiter]:
        """``(attempt, waiter)`` for a receive (see ``_send_op``): the attempt is one
        mq_receive returning ``(data, priority)``, or ``WOULD_BLOCK`` when the queue is
        empty or the call was interrupted; the waiter is the descriptor becoming readable.
        *type* must be 0 (``receive()`` checks it)."""
        self._check_open()

        def attempt(limit: Deadline) -> Any:
            buffers = self._buffers
            try:
                slot = buffers.pop()
            except IndexError:
                slot = self._new_buffer()
            try:
                n = _receive(self._mqd, slot[0], self._size, slot[1], 0 if limit.blocking else 1)
                if n >= 0:
                    return slot[2][:n], int(slot[1][0])
            finally:
                buffers.append(slot)
            if n == _EAGAIN or n == _EINTR:
                return WOULD_BLOCK
            raise self._error(n, "mq_receive")

        return attempt, ReadyFd(self._mqd, POLLIN)

    def _new_buffer(self) -> tuple:
        """(message buffer, priority, the buffer as a Python buffer: slicing it copies out)."""
        buf = _alloc("char[]", self._size)
        return (buf, ffi.new("unsigned int *"), ffi.buffer(buf))

    def _error(self, rc: int, what: str) -> BaseException:
        if self._closed:
            return closed_error(self)
        return error_from_errno(-rc, what, overrides=_ON_HANDLE)

    # --- the rest ---------------------------------------------------------------

    def fileno(self) -> int:
        """The queue descriptor (``mqd_t`` is an fd on Linux), for selectors and asyncio."""
        self._check_open()
        return self._mqd

    def __len__(self) -> int:
        self._check_open()
        return int(_getattr(self._mqd).curmsgs)

    @property
    def max_messages(self) -> int:
        """Capacity in messages (``mq_maxmsg`` from ``mq_getattr``)."""
        self._check_open()
        return self._maxmsg

    @property
    def max_message_size(self) -> int:
        """Largest message in bytes (``mq_msgsize`` from ``mq_getattr``)."""
        self._check_open()
        return self._size

    def stat(self) -> MessageQueueStat:
        """``mq_getattr`` plus the descriptor's inode (owner, mode, last change).
        ``bytes`` is the QSIZE the kernel reports when the descriptor is read (the
        line an mqueue mount shows). POSIX queues record no sender/receiver pids and
        no separate send/receive times (those fields are None)."""
        self._check_open()
        messages = int(_getattr(self._mqd).curmsgs)
        try:
            st = os.fstat(self._mqd)
            status = os.pread(self._mqd, 128, 0)
        except OSError as exc:
            raise error_from_errno(exc.errno, "mq stat") from exc
        return MessageQueueStat(
            backend="posix",
            messages=messages,
            bytes=_qsize(status),
            max_messages=self._maxmsg,
            max_message_size=self._size,
            max_bytes=None,
            last_send_pid=None,
            last_receive_pid=None,
            last_send_time=None,
            last_receive_time=None,
            last_change_time=st.st_mtime,
            uid=st.st_uid,
            mode=st.st_mode & 0o7777,
            gid=st.st_gid,
        )

    def unlink(self) -> None:
        """Remove the name (works on a closed handle too). Handles still open keep
        working until closed; ``NotFoundError`` if the name is already gone."""
        rc = lib.ipckit_mq_unlink(self.name.encode())
        _ffi.check(rc, "mq_unlink", {errno.ENOENT: As(NotFoundError, f"no POSIX message queue named {self.name!r}")})

    def _close(self) -> None:
        mqd, self._mqd, self._msgsize = self._mqd, -1, -1
        lib.ipckit_mq_close(mqd)


def _qsize(status: bytes) -> Optional[int]:
    """The QSIZE field of an mqueue descriptor's status line ("QSIZE:12  NOTIFY:0 ...")."""
    fields = status.split()
    if fields and fields[0].startswith(b"QSIZE:"):
        try:
            return int(fields[0][6:])
        except ValueError:
            pass
    return None


__all__ = ["PosixMessageQueue"]
