"""``wrap(obj)``: the async twin of a synchronous ipckit object."""

from __future__ import annotations

from typing import Any

from .._mqueue import MessageQueue as _SyncMessageQueue
from .._pipe import Pipe as _SyncPipe
from .._queue import JoinableQueue as _SyncJoinable
from .._queue import Queue as _SyncQueue
from .._queue import SimpleQueue as _SyncSimple
from .._semaphore import Semaphore as _SyncSemaphore
from .._signal import SignalCatcher as _SyncCatcher
from .._socket import DatagramSocket as _SyncDatagram
from .._socket import SocketConnection as _SyncConnection
from .._socket import SocketListener as _SyncListener
from .._socket import UnixStream as _SyncUnixStream
from .._stream import ReceiveStream as _SyncReceive
from .._stream import SendStream as _SyncSend
from . import _objects, _queue, _streams
from ._twin import Twin


def _stream_twin(end: Any) -> Twin:
    if isinstance(end, _SyncConnection):
        return (_streams.UnixConnection if isinstance(end, _SyncUnixStream) else _streams.SocketConnection)(end)
    if isinstance(end, _SyncUnixStream):
        return _streams.UnixStream(end)
    if isinstance(end, _SyncSend) and isinstance(end, _SyncReceive):
        return _streams.DuplexStream(end)
    if isinstance(end, _SyncReceive):
        return _streams.ReceiveStream(end)
    return _streams.SendStream(end)


# Most specific first: a JoinableQueue is a Queue, a connection is a stream.
_TWINS: tuple[tuple[type, Any], ...] = (
    (_SyncPipe, lambda p: _streams.Pipe(_sync=p)),
    (_SyncListener, _streams.SocketListener),
    (_SyncDatagram, _streams.DatagramSocket),
    (_SyncReceive, _stream_twin),
    (_SyncSend, _stream_twin),
    (_SyncMessageQueue, _objects._queue_twin),
    (_SyncSemaphore, _objects.Semaphore),
    (_SyncCatcher, _objects.SignalCatcher),
    (_SyncJoinable, lambda q: _queue.JoinableQueue(_sync=q)),
    (_SyncSimple, lambda q: _queue.SimpleQueue(_sync=q)),
    (_SyncQueue, lambda q: _queue.Queue(_sync=q)),
)


def wrap(obj: Any) -> Any:
    """The ``ipckit.aio`` twin of *obj*, a synchronous ipckit object (a Pipe or one
    of its ends, a Socket, a MessageQueue, a Semaphore, a signal catcher, a Queue).
    Both use the same descriptor or segment; ``twin.sync`` is *obj*. A twin is
    returned as it is. ``TypeError`` for anything else."""
    if isinstance(obj, Twin):
        return obj
    for cls, make in _TWINS:
        if isinstance(obj, cls):
            return make(obj)
    raise TypeError(f"ipckit.aio.wrap() takes an ipckit object (Pipe, Socket, MessageQueue, Semaphore, "
                    f"Signal.catch(), Queue ...), not {type(obj).__name__}")


__all__ = ["wrap"]
