"""Object-queue subjects (the ``objects`` family): Python objects, pickled, through
ipckit.Queue / SimpleQueue, multiprocessing.Queue / SimpleQueue and faster-fifo.

The measuring loops move stamped byte messages; here each endpoint turns them into the
objects the family is about and back, the same way for every subject (so every row pays
the same conversion): a 64-byte message travels as a small tuple ``(int, float, str)``
(the int carries the stamp), a larger one as a float64 numpy array over its bytes.
"""

from __future__ import annotations

import functools
import multiprocessing
import struct
from typing import Any, Callable

from .loops import MAGIC, STOP, packer
from .subjects import MAX_PAYLOAD, Ends, Subject, cross

_FORK = multiprocessing.get_context("fork")
SMALL = 64  # the family's small size: a tuple
SIZES = (SMALL, MAX_PAYLOAD)
_HEAD = struct.Struct("<Q")
_pack_small = packer(SMALL)
_MAXSIZE = 64  # objects per bounded queue


def _object_ends(put: Callable[[Any], Any], get: Callable[[], Any], copy: bool = False, close: Any = None) -> Ends:
    """Ends over an object queue: stamped bytes in, objects through, stamped bytes out.
    *copy*: the queue pickles later (a feeder thread), so a reused send buffer must be
    copied first."""
    import numpy as np

    frombuffer, float64, head = np.frombuffer, np.float64, _HEAD.unpack_from

    def send(m: Any) -> None:
        if len(m) <= SMALL:
            put((head(m, 0)[0], 1.5, "objects"))
        else:
            put(frombuffer(bytes(m) if copy else m, float64))

    def recv() -> Any:
        obj = get()
        if obj.__class__ is tuple:
            stamp = obj[0]
            return _pack_small(stamp, (stamp & ~STOP) ^ MAGIC)
        return memoryview(obj).cast("B")

    return Ends(send, recv, close)


class _ObjectSubject(Subject):
    family = "objects"

    def make(self) -> Any:
        raise NotImplementedError

    def setup(self, env: Any) -> Any:
        queues = []
        for _ in range(2):
            q = self.make()
            env.on_cleanup(q.close)
            queues.append(q)
        return tuple(queues)


class IpckitQueue(_ObjectSubject):
    id, label, group = "ipckit.queue", "ipckit.Queue", "ipckit"
    note = "maxsize=64; small objects inline in the ring, arrays out of band (one copy per side)"

    def make(self) -> Any:
        import ipckit

        return ipckit.Queue(_MAXSIZE)

    def open(self, spec: Any, role: str, peer_pid: int) -> Any:
        tx, rx = cross(spec, role)
        return _object_ends(tx.put, rx.get)


class IpckitSimpleQueue(_ObjectSubject):
    id, label, group = "ipckit.simplequeue", "ipckit.SimpleQueue", "ipckit"

    def make(self) -> Any:
        import ipckit

        return ipckit.SimpleQueue()

    def open(self, spec: Any, role: str, peer_pid: int) -> Any:
        tx, rx = cross(spec, role)
        return _object_ends(tx.put, rx.get)


class MpObjectQueue(_ObjectSubject):
    id, label, group = "mp.queue-objects", "multiprocessing.Queue", "peer"
    note = "maxsize=64; a feeder thread pickles into a pipe (the array is copied before put: it pickles later)"

    def make(self) -> Any:
        q = _FORK.Queue(maxsize=_MAXSIZE)
        return q

    def setup(self, env: Any) -> Any:
        queues = super().setup(env)
        for q in queues:
            env.on_cleanup(q.cancel_join_thread)
        return queues

    def open(self, spec: Any, role: str, peer_pid: int) -> Any:
        tx, rx = cross(spec, role)

        def close() -> None:
            tx.close()
            tx.join_thread()

        return _object_ends(tx.put, rx.get, copy=True, close=close)


class MpObjectSimpleQueue(_ObjectSubject):
    id, label, group = "mp.simplequeue", "multiprocessing.SimpleQueue", "peer"
    note = "a pipe and two locks; put pickles at once"

    def make(self) -> Any:
        return _FORK.SimpleQueue()

    def open(self, spec: Any, role: str, peer_pid: int) -> Any:
        tx, rx = cross(spec, role)
        return _object_ends(tx.put, rx.get)


class FasterFifoObjects(_ObjectSubject):
    id, label, group = "faster-fifo.objects", "faster-fifo Queue", "peer"
    requires = ("faster_fifo",)
    note = "8 MiB circular buffer; pickles each object in band"

    def make(self) -> Any:
        import faster_fifo

        return faster_fifo.Queue(max_size_bytes=8 * MAX_PAYLOAD + 4096)

    def open(self, spec: Any, role: str, peer_pid: int) -> Any:
        tx, rx = cross(spec, role)
        return _object_ends(tx.put, functools.partial(rx.get, timeout=3600))
