"""``MessageQueue``, ``Semaphore`` and ``Signal`` under an event loop.

Each coroutine drives the synchronous object's own attempt with ``_drive.run``:
the queues' ``_send_op`` / ``_recv_op`` (a descriptor to wait on for POSIX, the
ring's futex observed from a thread for shm, naps for SysV, which has no timed
``msgrcv``), the semaphore's ``_acquire_attempt`` with a thread observing
``_wait_positive`` (it takes nothing, so the task's own attempt claims), and the
signal catcher's ``_attempt`` with its pipe to wait on.
"""

from __future__ import annotations

import errno
from typing import Any, AsyncIterator, Iterable, Optional, Sequence

from .._data import byte_view
from .._errors import Timeout, error_from_errno
from .._ffi import lib
from .._mqueue import Message
from .._mqueue import MessageQueue as _SyncMessageQueue
from .._mqueue_posix import check_no_type
from .._mqueue_sysv import check_receive_args
from .._naming import check_positive_int
from .._semaphore import Semaphore as _SyncSemaphore
from .._semaphore import wait_deadline
from .._signal import Signal as _SyncSignal
from .._signal import SignalInfo, SignalLike
from .._timeouts import Deadline
from .._wait import Backoff, Waiter
from ._drive import run
from ._twin import Twin, until_closed

# ---------------------------------------------------------------- MessageQueue


class MessageQueue(Twin):
    """``ipckit.MessageQueue`` under an event loop: ``create``/``open`` as there
    (plain calls); ``send``, ``recv``, ``receive`` are coroutines."""

    __slots__ = ()
    _plain = frozenset({"backend", "max_messages", "max_message_size", "max_bytes", "stat", "unlink", "id", "key",
                        "spin_time"})

    def _fd(self) -> Optional[int]:
        if self.sync.backend == "posix" and not self.sync.closed:
            return self.sync.fileno()  # type: ignore[no-any-return]
        return None

    @classmethod
    def create(cls, name: Any, *, max_messages: Optional[int] = None, max_message_size: Optional[int] = None,
               mode: int = 0o600, backend: str = "posix") -> "MessageQueue":
        """As ``ipckit.MessageQueue.create``."""
        return _queue_twin(_SyncMessageQueue.create(
            name, max_messages=max_messages, max_message_size=max_message_size, mode=mode, backend=backend))

    @classmethod
    def open(cls, name: Any = None, *, backend: str = "posix", id: Optional[int] = None) -> "MessageQueue":
        """As ``ipckit.MessageQueue.open``."""
        return _queue_twin(_SyncMessageQueue.open(name, backend=backend, id=id))

    def __len__(self) -> int:
        return len(self.sync)

    async def send(self, data: Any, *, priority: int = 0, type: int = 1, timeout: Optional[float] = None) -> None:
        """Enqueue *data*, waiting while the queue is full (see the synchronous ``send``)."""
        deadline = Deadline.from_user(timeout)
        attempt, waiter = self.sync._send_op(data, priority, type)
        await run(attempt, deadline, "send", waiter)

    async def recv(self, *, timeout: Optional[float] = None) -> bytes:
        """The next message's bytes."""
        return (await self._receive(0, timeout))[0]  # type: ignore[no-any-return]

    async def receive(self, *, type: int = 0, timeout: Optional[float] = None) -> Message:
        """The next message as ``Message(data, priority, type)``, as the synchronous ``receive``."""
        q = self.sync
        if q.backend == "posix":
            check_no_type(type)
            data, priority = await self._receive(type, timeout)
            return Message(data, priority, None)
        data, _ = await self._receive(type, timeout)
        return Message(data)

    async def _receive(self, type: int, timeout: Optional[float], *args: Any) -> tuple:
        deadline = Deadline.from_user(timeout)
        attempt, waiter = self.sync._recv_op(type, *args)
        return await run(attempt, deadline, "recv", waiter)  # type: ignore[no-any-return]

    def __aiter__(self) -> AsyncIterator[bytes]:
        """Messages for ever, until this queue is closed."""
        return until_closed(self.sync, self.recv)


class ShmMessageQueue(MessageQueue):
    """A shared-memory queue: also ``recv_into``, ``recv_many``, ``send_many``."""

    __slots__ = ()

    async def recv_into(self, buffer: Any, *, timeout: Optional[float] = None) -> int:
        """Copy the next message into *buffer*; its length (see the synchronous one)."""
        q = self.sync
        deadline = Deadline.from_user(timeout)
        q._check_open()
        return await run(q._attempt_recv_into(buffer), deadline, "recv_into", q._recv_waiter())  # type: ignore[no-any-return]

    async def recv_many(self, max_count: int = 128, *, timeout: Optional[float] = None) -> list:
        """Wait for one message, then take up to *max_count* without waiting more."""
        check_positive_int(max_count, "max_count")
        q = self.sync
        deadline = Deadline.from_user(timeout)
        q._check_open()
        return await run(q._attempt_recv_many(max_count), deadline, "recv_many", q._recv_waiter())  # type: ignore[no-any-return]

    async def send_many(self, messages: Iterable[Any], *, timeout: Optional[float] = None) -> None:
        """Send each of *messages* in order; ``Timeout.sent`` counts those enqueued."""
        q = self.sync
        deadline = Deadline.from_user(timeout)
        batch = q._attempt_send_many(messages)
        if batch is None:
            return
        try:
            await run(batch, deadline, "send_many", q._send_waiter())
        except Timeout as exc:
            exc.sent = batch.sent  # type: ignore[attr-defined]
            raise


class _Polled(Waiter):
    """A SysV queue's wait. There is no timed ``msgrcv``/``msgsnd`` to sleep in, so
    the observer thread polls in C, off the GIL (``ipckit_msgq_wait_ready``: an
    ``IPC_STAT`` between naps of 50 µs doubling to 2 ms -- 5 ms after 100 ms with
    nothing -- taking nothing), and the
    loop wakes only when a message (or room for *n* bytes) may be there."""

    __slots__ = ("_queue", "_writer", "_n", "key")

    def __init__(self, queue: Any, writer: bool, n: int = 0) -> None:
        self._queue, self._writer, self._n = queue, int(writer), n
        self.key = (queue, "send", n) if writer else (queue, "recv")

    def wait(self, deadline: Deadline) -> None:
        q = self._queue
        rc = lib.ipckit_msgq_wait_ready(q._qid, self._writer, self._n, _SYSV_FIRST_NS, _SYSV_MAX_NS, _SYSV_IDLE_MAX_NS,
                                        deadline.remaining_ns())
        if rc < 0 and rc not in (-errno.ETIMEDOUT, -errno.EINTR):
            raise error_from_errno(-rc, "msgctl(IPC_STAT)")


#: 50 µs doubling to 2 ms, as the synchronous wait; to 5 ms once idle for 100 ms.
_SYSV_FIRST_NS, _SYSV_MAX_NS, _SYSV_IDLE_MAX_NS = 50_000, 2_000_000, 5_000_000


class SysvMessageQueue(MessageQueue):
    """A SysV queue: ``receive`` selects by *type* and takes *max_size* / *truncate*.
    Its waits poll from a thread (SysV has no timed ``msgrcv``; docs/async.md says
    what it costs)."""

    __slots__ = ()

    async def send(self, data: Any, *, priority: int = 0, type: int = 1, timeout: Optional[float] = None) -> None:
        deadline = Deadline.from_user(timeout)
        attempt, _ = self.sync._send_op(data, priority, type)
        await run(attempt, deadline, "send", _Polled(self.sync, True, byte_view(data).nbytes))

    async def _receive(self, type: int, timeout: Optional[float], *args: Any) -> tuple:
        deadline = Deadline.from_user(timeout)
        attempt, _ = self.sync._recv_op(type, *args)
        return await run(attempt, deadline, "recv", _Polled(self.sync, False))  # type: ignore[no-any-return]

    async def receive(self, *, type: int = 0, timeout: Optional[float] = None, max_size: Optional[int] = None,
                      truncate: bool = False) -> Message:
        """As the synchronous ``receive``: ``Message(data, None, type)``."""
        check_receive_args(type, max_size, truncate)
        data, mtype = await self._receive(type, timeout, max_size, truncate)
        return Message(data, None, mtype)


def _queue_twin(q: Any) -> MessageQueue:
    cls = {"shm": ShmMessageQueue, "sysv": SysvMessageQueue}.get(q.backend, MessageQueue)
    return cls(q)


# ---------------------------------------------------------------- Semaphore


class _Positive(Waiter):
    """Until the semaphore's value is positive, taking nothing (observed from a thread)."""

    __slots__ = ("_sem", "key")

    def __init__(self, sem: Any) -> None:
        self._sem = sem
        self.key = (sem, "positive")

    def wait(self, deadline: Deadline) -> None:
        self._sem._wait_positive(deadline)


#: SysV ``op()`` conditions (several members at once) have nothing to observe: nap.
_OP_FIRST_NAP, _OP_MAX_NAP = 0.00005, 0.002


class Semaphore(Twin):
    """``ipckit.Semaphore`` under an event loop: ``await acquire()``, plain
    ``release()``, and ``async with sem:`` (acquire, then release; it does not close)."""

    __slots__ = ()
    _plain = frozenset({"backend", "count", "index", "undo", "value", "values", "release", "unlink", "id", "key",
                        "ncount", "zcount", "last_pid", "stat", "set", "set_value", "set_values"})

    @classmethod
    def create(cls, name: Any, value: Any = 1, *, mode: int = 0o600, backend: str = "posix",
               count: Optional[int] = None, undo: bool = False) -> "Semaphore":
        """As ``ipckit.Semaphore.create``."""
        return cls(_SyncSemaphore.create(name, value, mode=mode, backend=backend, count=count, undo=undo))

    @classmethod
    def open(cls, name: Any = None, *, backend: str = "posix", undo: bool = False, id: Optional[int] = None) -> "Semaphore":
        """As ``ipckit.Semaphore.open``."""
        return cls(_SyncSemaphore.open(name, backend=backend, undo=undo, id=id))

    async def acquire(self, blocking: bool = True, timeout: Optional[float] = None) -> bool:
        """Decrement the value, waiting while it is 0; False if *timeout* passed
        first (or ``blocking=False`` and it is 0). A cancelled acquire took nothing."""
        sem = self.sync
        deadline = wait_deadline(blocking, timeout)
        sem._check_open()
        try:
            return await run(sem._acquire_attempt, deadline, "acquire", _Positive(sem))  # type: ignore[no-any-return]
        except Timeout:
            return False

    async def op(self, ops: Iterable[Sequence[int]], *, timeout: Optional[float] = None,
                 undo: Optional[bool] = None) -> bool:
        """SysV: ``(member, delta)`` operations applied atomically (see the synchronous
        ``op``). The wait naps (50 µs doubling to 2 ms): nothing wakes on such a condition."""
        sem = self.sync
        deadline = Deadline.from_user(timeout)
        checked = sem._check_ops(ops, undo)
        try:
            return await run(sem._ops_attempt(checked), deadline, "semop", Backoff(_OP_FIRST_NAP, _OP_MAX_NAP))  # type: ignore[no-any-return]
        except Timeout:
            return False

    def __getitem__(self, index: int) -> "Semaphore":
        return Semaphore(self.sync[index])

    def __len__(self) -> int:
        return len(self.sync)

    def __enter__(self) -> "Semaphore":
        raise TypeError("use 'async with' on an ipckit.aio.Semaphore (a plain 'with' would block the loop)")

    def __exit__(self, *exc_info: object) -> None:  # pragma: no cover - __enter__ refuses
        pass

    async def __aenter__(self) -> "Semaphore":
        await self.acquire()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.sync.release()


# ---------------------------------------------------------------- Signal


class SignalCatcher(Twin):
    """The signals collected by ``ipckit.aio.Signal.catch(...)``: ``await wait()``,
    ``async for info in catcher``; ``drain()`` and ``dropped`` are plain. Leaving
    its ``with`` / ``async with`` block ends the catch, as in the synchronous API."""

    __slots__ = ()
    _plain = frozenset({"signals", "drain", "dropped"})

    def _fd(self) -> Optional[int]:
        return None if self.sync.closed else self.sync._rfd

    async def wait(self, timeout: Optional[float] = None) -> SignalInfo:
        """The oldest collected signal, waiting for one (``ipckit.Timeout`` after *timeout*)."""
        catcher = self.sync
        deadline = Deadline.from_user(timeout)
        catcher._check_open()
        return await run(catcher._attempt, deadline, "Signal wait", catcher._waiter)  # type: ignore[no-any-return]

    def __aiter__(self) -> AsyncIterator[SignalInfo]:
        """Every caught signal, until the catch block ends."""
        return until_closed(self.sync, self.wait)


class Signal:
    """``ipckit.Signal`` for async programs: ``Signal.catch`` gives a catcher whose
    ``wait`` is a coroutine; everything else (``send``, ``handle``, ``block`` ...)
    is the synchronous namespace's own, as none of it waits. (``pause`` and
    ``suspend`` block the thread by design: catch the signal instead.)"""

    def __new__(cls, *args: Any, **kwargs: Any) -> "Signal":
        raise TypeError("ipckit.aio.Signal is a namespace; use its static methods")

    send = staticmethod(_SyncSignal.send)
    handle = staticmethod(_SyncSignal.handle)
    ignore = staticmethod(_SyncSignal.ignore)
    default = staticmethod(_SyncSignal.default)
    block = staticmethod(_SyncSignal.block)
    unblock = staticmethod(_SyncSignal.unblock)
    set_mask = staticmethod(_SyncSignal.set_mask)
    pending = staticmethod(_SyncSignal.pending)
    alarm = staticmethod(_SyncSignal.alarm)

    @staticmethod
    def catch(*sigs: SignalLike) -> SignalCatcher:
        """Collect every instance of *sigs* until the catcher is closed (``async with
        ipckit.aio.Signal.catch("SIGTERM") as s: info = await s.wait()``)."""
        return SignalCatcher(_SyncSignal.catch(*sigs))


__all__ = ["MessageQueue", "Semaphore", "ShmMessageQueue", "Signal", "SignalCatcher", "SysvMessageQueue"]
