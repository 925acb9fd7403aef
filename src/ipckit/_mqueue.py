"""MessageQueue: the public class, its argument checks, and dispatch to a backend.

``MessageQueue.create(...)`` / ``open(...)`` validate what every backend shares and
return an instance of the backend's subclass, so ``isinstance(q, MessageQueue)``
holds and the send/recv hot path is the subclass's own method, with no facade
in between::

    backend="posix"  ->  _mqueue_posix.PosixMessageQueue   (mq_* through cffi, csrc/posixmq.c)
    backend="sysv"   ->  _mqueue_sysv.SysvMessageQueue     (msg* through cffi, csrc/sysvmsg.c)
    backend="shm"    ->  _mqueue_shm.ShmMessageQueue       (a ring in POSIX shared memory)

The contract a backend subclass implements
------------------------------------------

* ``backend`` (class attribute): ``"posix"``, ``"sysv"`` or ``"shm"``.
* ``_check_name(name)`` (classmethod): validate *name* before anything else;
  defaults to the POSIX name rule (``_naming.check_posix_name``).
* ``_create(name, *, max_messages, max_message_size, mode)`` (classmethod): make
  the queue (O_EXCL; ``ExistsError`` if taken) and return an open instance. It gets
  a *name* already checked by ``_check_name``, limits that are ``None`` or ints
  >= 1, and a checked *mode* that must end up on the object exactly (no umask).
  It checks the limits against the backend's own maxima (``ValueError`` naming the
  limit) and leaves nothing behind when it fails.
* ``_open(name)`` (classmethod): open an existing queue (``NotFoundError`` if none).
* ``_open_id(id)`` (classmethod, SysV only): open the queue with that (checked) id.
* Instance: ``send``, ``recv``, ``receive``, ``__len__``, ``max_messages``,
  ``max_message_size``, ``max_bytes``, ``stat``, ``unlink``, and ``_close`` (from
  ``Resource``). Every method except ``close``/``unlink`` raises ``ClosedError``
  after ``close()``. ``name`` is set on the instance. ``fileno()`` only where
  the queue really is a file descriptor.
* ``_send_op(data, priority, type)`` / ``_recv_op(type)`` (POSIX and SysV): check
  the arguments and return ``(attempt, waiter)`` for ``_wait``; an attempt given
  ``_wait.NOW`` never blocks. ``ipckit.aio`` drives these, as ``send``/``recv`` do
  through ``_wait.retry``.
* Shared checks live here: ``check_priority``, ``check_send_type``,
  ``check_receive_type``, ``too_large``. Pickling (``__reduce__``) reopens by
  name, so a queue can be handed to a ``spawn`` child.
"""

from __future__ import annotations

import errno
from typing import Any, NamedTuple, Optional

from ._errors import MessageTooLarge
from ._naming import backend_class, check_mode, check_open_target, check_positive_int, check_posix_name
from ._resource import Resource

_BACKEND_CLASSES = {
    "posix": ("._mqueue_posix", "PosixMessageQueue"),
    "sysv": ("._mqueue_sysv", "SysvMessageQueue"),
    "shm": ("._mqueue_shm", "ShmMessageQueue"),
}

# POSIX: priorities are 0 .. MQ_PRIO_MAX-1 (Linux: sysconf(_SC_MQ_PRIO_MAX) == 32768).
PRIORITY_MAX = 32767
# SysV: msgsnd's mtype is a C long; ipckit keeps the range sysv_ipc has always allowed
# (a C int), so that queues shared with sysv_ipc programs see the same types.
TYPE_MAX = 2**31 - 1


class Message(NamedTuple):
    """A received message: ``data``, and ``priority`` (POSIX) or ``type`` (SysV)."""

    data: bytes
    priority: Optional[int] = None
    type: Optional[int] = None


class MessageQueueStat(NamedTuple):
    """What the kernel knows about a queue (``q.stat()``); ``None`` where the
    backend does not record a field. Times are seconds since the epoch."""

    backend: str
    messages: int  # messages waiting now
    bytes: Optional[int]  # bytes of message data waiting now
    max_messages: Optional[int]
    max_message_size: int
    max_bytes: Optional[int]  # byte capacity (SysV msg_qbytes)
    last_send_pid: Optional[int]
    last_receive_pid: Optional[int]
    last_send_time: Optional[float]
    last_receive_time: Optional[float]
    last_change_time: Optional[float]
    uid: int  # owner
    mode: int  # permission bits, e.g. 0o600
    gid: Optional[int] = None  # owner's group


def check_priority(priority: object) -> int:
    """A POSIX message priority: an int in 0..32767 (higher is received first)."""
    if priority.__class__ is not int:
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise TypeError(f"priority must be an int, not {type(priority).__name__}")
    if not 0 <= priority <= PRIORITY_MAX:  # type: ignore[operator]
        raise ValueError(f"priority must be in 0..{PRIORITY_MAX}, got {priority}")
    return priority  # type: ignore[return-value]


def check_send_type(type_: object) -> int:
    """A SysV message type for ``send``: an int in 1..2**31-1."""
    if type_.__class__ is not int:
        if isinstance(type_, bool) or not isinstance(type_, int):
            raise TypeError(f"type must be an int, not {type(type_).__name__}")
    if not 1 <= type_ <= TYPE_MAX:  # type: ignore[operator]
        raise ValueError(f"type must be in 1..{TYPE_MAX} to send (SysV message types are > 0), got {type_}")
    return type_  # type: ignore[return-value]


def check_receive_type(type_: object) -> int:
    """A SysV selector for ``receive``: 0 (any), >0 (that type), <0 (lowest type <= |type|)."""
    if type_.__class__ is not int:
        if isinstance(type_, bool) or not isinstance(type_, int):
            raise TypeError(f"type must be an int, not {type(type_).__name__}")
    if not -TYPE_MAX <= type_ <= TYPE_MAX:  # type: ignore[operator]
        raise ValueError(f"type must be in -{TYPE_MAX}..{TYPE_MAX}, got {type_}")
    return type_  # type: ignore[return-value]


def too_large(size: int, limit: int, queue: object) -> MessageTooLarge:
    """The error for a *size*-byte message over *limit*; the caller sends nothing."""
    return MessageTooLarge(errno.EMSGSIZE, f"a {size}-byte message is over the {limit}-byte max_message_size of {queue!r}; nothing was sent")


def _backend_class(backend: object) -> "type[MessageQueue]":
    return backend_class(_BACKEND_CLASSES, backend)  # type: ignore[no-any-return]


def _reopen(name: Any, backend: str) -> "MessageQueue":
    """Unpickle a queue: open it again by name in this process."""
    return MessageQueue.open(name, backend=backend)


class MessageQueue(Resource):
    """A named kernel (or shared-memory) message queue. See docs/reference/contract.md, "MessageQueue".

    Use ``MessageQueue.create()`` / ``MessageQueue.open()``; the class is not
    instantiated directly. ``close()`` releases this handle; ``unlink()`` removes
    the name (a POSIX queue lives on until every handle is closed; a SysV queue
    vanishes at once and every handle's next call raises ``ClosedError``).

    A queue pickles as its name and backend: unpickling (in a ``spawn`` child,
    say) opens it again, so ``NotFoundError`` if it was unlinked meanwhile.
    """

    backend: str = ""
    name: Any = None

    @classmethod
    def create(
        cls,
        name: Any,
        *,
        max_messages: Optional[int] = None,
        max_message_size: Optional[int] = None,
        mode: int = 0o600,
        backend: str = "posix",
    ) -> "MessageQueue":
        """Create a new queue; ``ExistsError`` if *name* is taken.

        Limits left ``None`` take the backend's defaults; limits over what the
        kernel allows raise ``ValueError`` naming the limit and its /proc file.
        The queue gets *mode* exactly, whatever the umask.
        """
        impl = _backend_class(backend)
        name = impl._check_name(name)
        check_positive_int(max_messages, "max_messages", allow_none=True)
        check_positive_int(max_message_size, "max_message_size", allow_none=True)
        return impl._create(name, max_messages=max_messages, max_message_size=max_message_size, mode=check_mode(mode))

    @classmethod
    def open(cls, name: Any = None, *, backend: str = "posix", id: Optional[int] = None) -> "MessageQueue":
        """Open an existing queue; ``NotFoundError`` if there is none by *name*.

        ``id=`` (SysV only) opens the queue with that msqid instead of looking up a
        key: ``MessageQueue.open(id=q.id, backend="sysv")``."""
        impl = _backend_class(backend)
        by_id = check_open_target(name, id, backend)
        if by_id is not None:
            return impl._open_id(by_id)
        return impl._open(impl._check_name(name))

    # --- what each backend implements -------------------------------------------

    @classmethod
    def _check_name(cls, name: Any) -> Any:
        return check_posix_name(name)

    @classmethod
    def _create(cls, name: Any, *, max_messages: Optional[int], max_message_size: Optional[int], mode: int) -> "MessageQueue":
        raise NotImplementedError

    @classmethod
    def _open(cls, name: Any) -> "MessageQueue":
        raise NotImplementedError

    @classmethod
    def _open_id(cls, id: int) -> "MessageQueue":
        raise NotImplementedError

    def send(self, data: Any, *, priority: int = 0, type: int = 1, timeout: Optional[float] = None) -> None:
        """Enqueue *data* (any bytes-like object) as one message.

        ``priority`` is used by POSIX queues (0..32767, highest received first),
        ``type`` (>= 1) by SysV queues; each backend ignores the other's argument.
        A full queue blocks up to *timeout* seconds, then ``Timeout`` (nothing is
        enqueued). A message over ``max_message_size`` raises ``MessageTooLarge``
        and enqueues nothing.
        """
        raise NotImplementedError

    def recv(self, *, timeout: Optional[float] = None) -> bytes:
        """Dequeue the next message's data; ``Timeout`` if none came within *timeout*."""
        raise NotImplementedError

    def receive(self, *, type: int = 0, timeout: Optional[float] = None) -> Message:
        """Dequeue the next message with its priority (POSIX) or type (SysV).

        SysV *type* selects as ``msgrcv`` does: 0 the first message, >0 the first
        of that type, <0 the first of the lowest type <= |type|. Backends without
        types accept only ``type=0``.
        """
        raise NotImplementedError

    def __len__(self) -> int:
        raise NotImplementedError

    @property
    def max_messages(self) -> Optional[int]:
        raise NotImplementedError

    @property
    def max_message_size(self) -> int:
        raise NotImplementedError

    @property
    def max_bytes(self) -> Optional[int]:
        """The queue's byte capacity where the backend has one (SysV ``msg_qbytes``),
        else None (POSIX queues are bounded by message count)."""
        self._check_open()
        return None

    def stat(self) -> MessageQueueStat:
        raise NotImplementedError

    def unlink(self) -> None:
        raise NotImplementedError

    def __reduce__(self) -> tuple:
        self._check_open()
        return (_reopen, (self.name, self.backend))

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<ipckit.MessageQueue {self.name!r} backend={self.backend!r} {state}>"


__all__ = ["Message", "MessageQueue", "MessageQueueStat", "check_priority", "check_receive_type", "check_send_type", "too_large"]
