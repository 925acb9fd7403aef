"""MessageQueue: the public class, its argument checks, and dispatch to a backend.

``MessageQueue.create(...)`` / ``open(...)`` validate what every backend shares and
return an instance of the backend's subclass, so ``isinstance(q, MessageQueue)``
holds and the send/recv hot path is the subclass's own method, with no facade
in between::

    backend="posix"  ->  _mqueue_posix.PosixMessageQueue   (posix_ipc, mq_*)
    backend="sysv"   ->  _mqueue_sysv.SysvMessageQueue     (sysv_ipc, msg*)
    backend="shm"    ->  _mqueue_shm.ShmMessageQueue       (a ring in POSIX shared memory)
"""

from __future__ import annotations

import importlib
from typing import Any, NamedTuple, Optional

from ._naming import check_backend, check_mode, check_positive_int
from ._resource import Resource

BACKENDS = ("posix", "sysv", "shm")
_BACKEND_CLASSES = {
    "posix": ("._mqueue_posix", "PosixMessageQueue"),
    "sysv": ("._mqueue_sysv", "SysvMessageQueue"),
    "shm": ("._mqueue_shm", "ShmMessageQueue"),
}


class Message(NamedTuple):
    """A received message: ``data``, and ``priority`` (POSIX) or ``type`` (SysV)."""

    data: bytes
    priority: Optional[int] = None
    type: Optional[int] = None


def _backend_class(backend: object) -> "type[MessageQueue]":
    module_name, class_name = _BACKEND_CLASSES[check_backend(backend, BACKENDS)]
    module = importlib.import_module(module_name, __package__)
    return getattr(module, class_name)  # type: ignore[no-any-return]


class MessageQueue(Resource):
    """A named kernel (or shared-memory) message queue. See API.md, "MessageQueue".

    Use ``MessageQueue.create()`` / ``MessageQueue.open()``; the class is not
    instantiated directly. ``close()`` releases this handle; ``unlink()`` removes
    the name (the queue lives on until every handle is closed, for POSIX; SysV
    queues vanish at once).
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
        """Create a new queue; ``ExistsError`` if *name* is taken."""
        impl = _backend_class(backend)
        check_positive_int(max_messages, "max_messages", allow_none=True)
        check_positive_int(max_message_size, "max_message_size", allow_none=True)
        return impl._create(name, max_messages=max_messages, max_message_size=max_message_size, mode=check_mode(mode))

    @classmethod
    def open(cls, name: Any, *, backend: str = "posix") -> "MessageQueue":
        """Open an existing queue; ``NotFoundError`` if there is none by *name*."""
        return _backend_class(backend)._open(name)

    # --- what each backend implements -------------------------------------------

    @classmethod
    def _create(cls, name: Any, *, max_messages: Optional[int], max_message_size: Optional[int], mode: int) -> "MessageQueue":
        raise NotImplementedError

    @classmethod
    def _open(cls, name: Any) -> "MessageQueue":
        raise NotImplementedError

    def send(self, data: Any, *, priority: int = 0, type: int = 1, timeout: Optional[float] = None) -> None:
        raise NotImplementedError

    def recv(self, *, timeout: Optional[float] = None) -> bytes:
        raise NotImplementedError

    def receive(self, *, type: int = 0, timeout: Optional[float] = None) -> Message:
        raise NotImplementedError

    def __len__(self) -> int:
        raise NotImplementedError

    @property
    def max_messages(self) -> Optional[int]:
        raise NotImplementedError

    @property
    def max_message_size(self) -> int:
        raise NotImplementedError

    def unlink(self) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<ipckit.MessageQueue {self.name!r} backend={self.backend!r} {state}>"
