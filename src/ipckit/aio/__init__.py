"""ipckit.aio: every ipckit primitive under asyncio and trio (through anyio).

The same classes and constructors as ``ipckit``; every call that can block is a
coroutine with the same name and parameters, and ``timeout=`` works as there,
beside the loop's own cancellation. A cancelled receive, accept, wait, acquire or
get has consumed nothing; a cancelled stream send sent its whole message or none
of it. Waiting never blocks the loop and never busy-polls (docs/async.md says how
each kind of object is waited on). ``wrap(obj)`` gives the twin of an object made
by the synchronous API.
"""

from ._objects import MessageQueue as MessageQueue
from ._objects import Semaphore as Semaphore
from ._objects import Signal as Signal
from ._queue import JoinableQueue as JoinableQueue
from ._queue import Queue as Queue
from ._queue import SimpleQueue as SimpleQueue
from ._streams import Pipe as Pipe
from ._streams import Socket as Socket
from ._wrap import wrap as wrap

__all__ = ["JoinableQueue", "MessageQueue", "Pipe", "Queue", "Semaphore", "Signal", "SimpleQueue", "Socket", "wrap"]

from . import _objects, _queue, _streams  # noqa: E402

for _module in (_objects, _queue, _streams):
    for _name in _module.__all__:
        getattr(_module, _name).__module__ = "ipckit.aio"
wrap.__module__ = "ipckit.aio"
del _module, _name
