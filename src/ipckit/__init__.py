"""ipckit: one uniform, fast, safe API over Linux inter-process communication.

Every public name is re-exported here from a private module; see ``__all__``.
"""

from ._errors import ClosedError as ClosedError
from ._errors import CorruptError as CorruptError
from ._errors import ExistsError as ExistsError
from ._errors import IPCError as IPCError
from ._errors import MessageTooLarge as MessageTooLarge
from ._errors import NotFoundError as NotFoundError
from ._errors import Timeout as Timeout
from ._mqueue import Message as Message
from ._mqueue import MessageQueue as MessageQueue
from ._mqueue import MessageQueueStat as MessageQueueStat
from ._pipe import Pipe as Pipe
from ._queue import JoinableQueue as JoinableQueue
from ._queue import Queue as Queue
from ._queue import SimpleQueue as SimpleQueue
from ._semaphore import Semaphore as Semaphore
from ._shm import SharedMemory as SharedMemory
from ._signal import Signal as Signal
from ._signal import SignalInfo as SignalInfo
from ._socket import Socket as Socket
from ._version import __version__ as __version__

__all__ = [
    "ClosedError",
    "CorruptError",
    "ExistsError",
    "IPCError",
    "JoinableQueue",
    "Message",
    "MessageQueue",
    "MessageQueueStat",
    "MessageTooLarge",
    "NotFoundError",
    "Pipe",
    "Queue",
    "Semaphore",
    "SharedMemory",
    "Signal",
    "SignalInfo",
    "SimpleQueue",
    "Socket",
    "Timeout",
]

# Show public classes as ipckit.X, not ipckit._module.X, in reprs and tracebacks.
for _name in __all__:
    _obj = globals()[_name]
    try:
        _obj.__module__ = "ipckit"
    except (AttributeError, TypeError):  # pragma: no cover
        pass
del _name, _obj
