"""``ipckit.Queue`` and its kin under an event loop.

``put`` / ``get`` / ``join`` drive the synchronous queue's ``_put_op`` /
``_get_op`` / ``_join_op`` (see ``ipckit._queue``, "For ipckit.aio"): the attempt
runs in the task, the waiter is observed from a thread. Expired waits keep the
synchronous results: ``queue.Full``, ``queue.Empty``, ``ipckit.Timeout`` (join).
"""

from __future__ import annotations

from queue import Empty, Full
from typing import Any, Optional

from .._errors import Timeout
from .._queue import JoinableQueue as _SyncJoinable
from .._queue import Queue as _SyncQueue
from .._queue import SimpleQueue as _SyncSimple
from .._queue import _deadline
from .._timeouts import Deadline
from ._drive import run
from ._twin import Twin

_PLAIN = frozenset({"put_nowait", "get_nowait", "qsize", "empty", "full", "maxsize", "join_thread",
                    "cancel_join_thread", "unlink", "task_done"})


class Queue(Twin):
    """``ipckit.Queue`` under an event loop: ``await put(obj)``, ``await get()``;
    the calls that never wait (``put_nowait``, ``get_nowait``, ``qsize`` ...) are
    the synchronous queue's. Pass ``queue.sync`` (or the twin: it pickles as one)
    to worker processes."""

    __slots__ = ()
    _plain = _PLAIN
    _sync_class: Any = _SyncQueue

    def __init__(self, maxsize: int = 0, *, max_message_size: Optional[int] = None, _sync: Any = None) -> None:
        super().__init__(_sync if _sync is not None else self._sync_class(maxsize, max_message_size=max_message_size))

    @classmethod
    def create(cls, name: str, maxsize: int = 0, *, max_message_size: Optional[int] = None, mode: int = 0o600) -> Any:
        """As ``ipckit.Queue.create``: a named queue."""
        return cls(_sync=cls._sync_class.create(name, maxsize, max_message_size=max_message_size, mode=mode))

    @classmethod
    def open(cls, name: str) -> Any:
        """As ``ipckit.Queue.open``."""
        return cls(_sync=cls._sync_class.open(name))

    def close(self) -> None:
        self.sync.close()

    async def put(self, obj: Any, block: bool = True, timeout: Optional[float] = None) -> None:
        """Put *obj* (pickled at once); ``queue.Full`` if it stays full past *timeout*."""
        deadline = _deadline(block, timeout)
        attempt, waiter = self.sync._put_op(obj)
        try:
            await run(attempt, deadline, "put", waiter)
        except Timeout:
            raise Full from None

    async def get(self, block: bool = True, timeout: Optional[float] = None) -> Any:
        """The next object; ``queue.Empty`` if none arrives within *timeout*. A
        cancelled ``get`` took nothing."""
        deadline = _deadline(block, timeout)
        attempt, waiter = self.sync._get_op()
        try:
            return await run(attempt, deadline, "get", waiter)
        except Timeout:
            raise Empty from None

    def __aiter__(self) -> "Queue":
        return self

    async def __anext__(self) -> Any:
        return await self.get()


class JoinableQueue(Queue):
    """``ipckit.JoinableQueue`` under an event loop: also ``task_done()`` (plain)
    and ``await join()``."""

    __slots__ = ()
    _sync_class = _SyncJoinable

    async def join(self, timeout: Optional[float] = None) -> None:
        """Until every object put has been got and marked ``task_done()``
        (``ipckit.Timeout`` once *timeout* passes)."""
        deadline = Deadline.from_user(timeout)
        attempt, waiter = self.sync._join_op()
        await run(attempt, deadline, "join", waiter)


class SimpleQueue(Queue):
    """``ipckit.SimpleQueue`` under an event loop: ``await put(obj)``, ``await get()``."""

    __slots__ = ()
    _sync_class = _SyncSimple
    _plain = frozenset({"empty"})

    def __init__(self, *, _sync: Any = None) -> None:
        Twin.__init__(self, _sync if _sync is not None else _SyncSimple())

    async def put(self, obj: Any) -> None:  # type: ignore[override]
        await super().put(obj)

    async def get(self) -> Any:  # type: ignore[override]
        return await super().get()


__all__ = ["JoinableQueue", "Queue", "SimpleQueue"]
