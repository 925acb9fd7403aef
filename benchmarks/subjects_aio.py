"""Async subjects (the ``aio`` family): round trips and streams through ``ipckit.aio``
under asyncio and under trio, beside what the loop itself offers.

Every subject here is a ``subjects.AsyncSubject``: each child keeps one event loop of
the subject's ``backend`` for the endpoint's life, and the async twins of the loops
(aloops.py) run inside it, so a message costs the awaited calls and the loop's own
scheduling, and nothing else. Per backend and mechanism:

- ``ipckit.aio`` rows: ``Socket`` ``unix://``, ``Pipe.duplex()``, the shm
  ``MessageQueue`` (one per direction) and, under asyncio, ``ipckit.aio.Queue``.
- raw twins (``vs raw``, the 1.2x target): the loop's own streams over the same
  kernel object with the same framing (an 8-byte little-endian length, then the
  payload). asyncio: ``asyncio.open_unix_connection`` (a path, or ``sock=`` for a
  socketpair), ``writelines`` + ``drain``, ``readexactly``. trio:
  ``trio.open_unix_socket`` / ``trio.SocketStream``, ``send_all``, a receive buffer.
  The shm queue has no raw twin (no loop can wait on a futex).
- ``sync.*`` rows, "the synchronous ipckit call plus the loop's cost": see
  ``_SyncInLoop``. Each ipckit.aio row is divided by the row of its own mechanism.
- ``pyzmq.asyncio`` over ``ipc://`` (PAIR): the family's baseline, so every ipckit
  row gets a ``vs pyzmq.asyncio`` ratio (for the trio rows across backends: it is
  what an async program would pick instead; pyzmq has no trio support).
"""

from __future__ import annotations

import socket
import struct
from typing import Any, Callable, Optional

from .subjects import AsyncSubject, cross

_LEN = struct.Struct("<Q")
_JOIN_MAX = 16384  # trio raw: up to this size the length and payload go out joined, in one send_all
_QUEUE_MAXSIZE = 64  # ipckit.aio.Queue rows: objects per bounded queue


class AEnds:
    """An async endpoint of two coroutine functions (bound methods: the loops pay one
    call per message) and an optional ``aclose``."""

    def __init__(self, send: Callable[[Any], Any], recv: Callable[[], Any],
                 close: Optional[Callable[[], Any]] = None) -> None:
        self.send = send
        self.recv = recv
        self._close = close

    async def aclose(self) -> None:
        if self._close is not None:
            result = self._close()
            if hasattr(result, "__await__"):
                await result


class _Aio(AsyncSubject):
    family = "aio"
    group = "ipckit"
    requires = ("anyio",)


class _AioTrio(_Aio):
    backend = "trio"
    requires = ("anyio", "trio")


def _checkpoint(backend: str) -> Callable[[], Any]:
    """The backend's cheapest pass through its scheduler."""
    if backend == "trio":
        import trio

        return trio.lowlevel.checkpoint
    import asyncio

    return lambda: asyncio.sleep(0)


# ---------------------------------------------------------------- ipckit.aio Socket unix://


class AioUnix(_Aio):
    id, label, raw = "ipckit.aio.asyncio.unix", "ipckit.aio Socket unix:// (asyncio)", "raw.asyncio.unix"
    extra_baselines = ("sync.asyncio.unix",)

    def setup(self, env: Any) -> Any:
        import ipckit.aio

        srv = ipckit.aio.Socket.listen("unix://" + env.path("aio.sock"))
        env.on_cleanup(srv.close)
        return srv, srv.address

    async def aopen(self, spec: Any, role: str, peer_pid: int) -> Any:
        import ipckit.aio

        srv, address = spec
        conn = await ipckit.aio.Socket.connect(address, timeout=10) if role == "a" else await srv.accept(timeout=10)
        return AEnds(conn.send, conn.recv, conn.close)


class AioUnixTrio(_AioTrio, AioUnix):
    id, label, raw = "ipckit.aio.trio.unix", "ipckit.aio Socket unix:// (trio)", "raw.trio.unix"
    extra_baselines = ("sync.trio.unix",)


# ---------------------------------------------------------------- ipckit.aio Pipe.duplex


class AioDuplex(_Aio):
    id, label, raw = "ipckit.aio.asyncio.duplex", "ipckit.aio Pipe.duplex (asyncio)", "raw.asyncio.socketpair"
    extra_baselines = ("sync.asyncio.duplex",)

    def setup(self, env: Any) -> Any:
        import ipckit.aio

        a, b = ipckit.aio.Pipe.duplex()
        env.on_cleanup(a.close)
        env.on_cleanup(b.close)
        return a, b

    async def aopen(self, spec: Any, role: str, peer_pid: int) -> Any:
        end = spec[0] if role == "a" else spec[1]
        return AEnds(end.send, end.recv, end.close)


class AioDuplexTrio(_AioTrio, AioDuplex):
    id, label, raw = "ipckit.aio.trio.duplex", "ipckit.aio Pipe.duplex (trio)", "raw.trio.socketpair"
    extra_baselines = ("sync.trio.duplex",)


# ---------------------------------------------------------------- ipckit.aio shm queue


class AioMqShm(_Aio):
    id, label = "ipckit.aio.asyncio.mq-shm", "ipckit.aio MessageQueue shm (asyncio)"
    extra_baselines = ("sync.asyncio.mq-shm",)
    note = "one queue per direction, default size; the waiting side is woken by a parked observer thread"

    def setup(self, env: Any) -> Any:
        import ipckit.aio

        queues = []
        for tag in ("ab", "ba"):
            q = ipckit.aio.MessageQueue.create(env.name(f"aq{tag}"), backend="shm")
            env.on_cleanup(q.unlink)
            env.on_cleanup(q.close)
            queues.append(q)
        return tuple(queues)

    async def aopen(self, spec: Any, role: str, peer_pid: int) -> Any:
        tx, rx = cross(spec, role)
        return AEnds(tx.send, rx.recv)


class AioMqShmTrio(_AioTrio, AioMqShm):
    id, label = "ipckit.aio.trio.mq-shm", "ipckit.aio MessageQueue shm (trio)"
    extra_baselines = ("sync.trio.mq-shm",)


# ---------------------------------------------------------------- ipckit.aio.Queue


class AioQueue(_Aio):
    id, label = "ipckit.aio.asyncio.queue", "ipckit.aio.Queue (asyncio)"
    extra_baselines = ("ipckit.aio.asyncio.mq-shm",)
    note = "maxsize=64; the stamped bytes themselves are the objects (pickled, out of band when large)"

    def setup(self, env: Any) -> Any:
        import ipckit.aio

        queues = []
        for _ in range(2):
            q = ipckit.aio.Queue(_QUEUE_MAXSIZE)
            env.on_cleanup(q.close)
            queues.append(q)
        return tuple(queues)

    async def aopen(self, spec: Any, role: str, peer_pid: int) -> Any:
        tx, rx = cross(spec, role)

        def close() -> None:
            tx.close()
            tx.join_thread()

        return AEnds(tx.put, rx.get, close)


# ---------------------------------------------------------------- the sync call plus the loop's cost


class _SyncInLoop(AsyncSubject):
    """The synchronous ipckit call plus the loop's cost: the floor of an async twin.

    The same ipckit object, used through its *synchronous* calls from inside the
    event loop: ``send`` is the plain sync ``send``, ``recv`` is one pass through the
    loop's scheduler (``await asyncio.sleep(0)`` / ``trio.lowlevel.checkpoint()``)
    and then the plain, blocking sync ``recv``. That is everything an async twin
    cannot avoid -- the sync call's own work and wake-up, and a trip through the
    loop per receive -- without what it adds: registering for readiness (or with
    an observer thread), suspending the task, and being resumed by the loop. So
    ``ipckit.aio / this`` is the price of awaiting instead of blocking.

    Not a program to copy: its ``recv`` blocks the loop thread, which is exactly
    what ipckit.aio exists to avoid.
    """

    family = "aio"
    group = "peer"

    def sync_ends(self, spec: Any, role: str) -> tuple:
        raise NotImplementedError

    async def aopen(self, spec: Any, role: str, peer_pid: int) -> Any:
        send, recv, close = self.sync_ends(spec, role)
        checkpoint = _checkpoint(self.backend)

        async def asend(data: Any) -> None:
            send(data)

        async def arecv() -> Any:
            await checkpoint()
            return recv()

        return AEnds(asend, arecv, close)


class SyncUnix(_SyncInLoop):
    id, label = "sync.asyncio.unix", "ipckit Socket unix:// sync call + loop pass (asyncio)"

    def setup(self, env: Any) -> Any:
        import ipckit

        srv = ipckit.Socket.listen("unix://" + env.path("sync.sock"))
        env.on_cleanup(srv.close)
        return srv, srv.address

    def sync_ends(self, spec: Any, role: str) -> tuple:
        import ipckit

        srv, address = spec
        conn = ipckit.Socket.connect(address, timeout=10) if role == "a" else srv.accept(timeout=10)
        return conn.send, conn.recv, conn.close


class SyncUnixTrio(SyncUnix):
    id, label = "sync.trio.unix", "ipckit Socket unix:// sync call + loop pass (trio)"
    backend = "trio"
    requires = ("anyio", "trio")


class SyncDuplex(_SyncInLoop):
    id, label = "sync.asyncio.duplex", "ipckit Pipe.duplex sync call + loop pass (asyncio)"

    def setup(self, env: Any) -> Any:
        import ipckit

        a, b = ipckit.Pipe.duplex()
        env.on_cleanup(a.close)
        env.on_cleanup(b.close)
        return a, b

    def sync_ends(self, spec: Any, role: str) -> tuple:
        end = spec[0] if role == "a" else spec[1]
        return end.send, end.recv, end.close


class SyncDuplexTrio(SyncDuplex):
    id, label = "sync.trio.duplex", "ipckit Pipe.duplex sync call + loop pass (trio)"
    backend = "trio"
    requires = ("anyio", "trio")


class SyncMqShm(_SyncInLoop):
    id, label = "sync.asyncio.mq-shm", "ipckit MessageQueue shm sync call + loop pass (asyncio)"

    def setup(self, env: Any) -> Any:
        import ipckit

        queues = []
        for tag in ("ab", "ba"):
            q = ipckit.MessageQueue.create(env.name(f"sq{tag}"), backend="shm")
            env.on_cleanup(q.unlink)
            env.on_cleanup(q.close)
            queues.append(q)
        return tuple(queues)

    def sync_ends(self, spec: Any, role: str) -> tuple:
        tx, rx = cross(spec, role)
        return tx.send, rx.recv, None


class SyncMqShmTrio(SyncMqShm):
    id, label = "sync.trio.mq-shm", "ipckit MessageQueue shm sync call + loop pass (trio)"
    backend = "trio"
    requires = ("anyio", "trio")


# ---------------------------------------------------------------- the loops' own streams (raw twins)


class _AsyncioStreams:
    """Length-prefixed messages over an asyncio ``StreamReader``/``StreamWriter`` pair,
    as a careful asyncio user writes them: ``writelines([length, payload])`` then
    ``drain()`` (flow control), ``readexactly`` twice."""

    def __init__(self, reader: Any, writer: Any) -> None:
        self.reader, self.writer = reader, writer
        self._readexactly = reader.readexactly
        self._writelines = writer.writelines
        self._drain = writer.drain

    async def send(self, data: Any) -> None:
        self._writelines((_LEN.pack(len(data)), data))
        await self._drain()

    async def recv(self) -> bytes:
        head = await self._readexactly(8)
        return await self._readexactly(_LEN.unpack(head)[0])

    async def aclose(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except OSError:
            pass


class _TrioStream:
    """Length-prefixed messages over a ``trio.SocketStream``: ``send_all`` of the
    length and payload joined (two ``send_all`` above 16 KiB, where the copy would
    cost more than the second call), and a receive buffer filled by
    ``receive_some`` (trio has no ``readexactly``)."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self._send_all = stream.send_all
        self._receive_some = stream.receive_some
        self._buf = bytearray()

    async def send(self, data: Any) -> None:
        n = len(data)
        if n <= _JOIN_MAX:
            await self._send_all(_LEN.pack(n) + data)
        else:
            await self._send_all(_LEN.pack(n))
            await self._send_all(data)

    async def _fill(self, want: int) -> None:
        buf = self._buf
        while len(buf) < want:
            chunk = await self._receive_some(max(65536, want - len(buf)))
            if not chunk:
                raise EOFError("peer closed the stream")
            buf += chunk

    async def recv(self) -> bytes:
        buf = self._buf
        if len(buf) < 8:
            await self._fill(8)
        end = 8 + _LEN.unpack_from(buf)[0]
        if len(buf) < end:
            await self._fill(end)
        msg = bytes(buf[8:end])
        del buf[:end]
        return msg

    async def aclose(self) -> None:
        await self.stream.aclose()


class _RawUnixListener(AsyncSubject):
    """A stdlib listening socket made in the parent; ``a`` connects by path, ``b``
    accepts (a blocking accept while the loop opens: the two sides open together)."""

    family = "aio"
    group = "raw"

    def setup(self, env: Any) -> Any:
        path = env.path("raw-aio.sock")
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        env.on_cleanup(srv.close)
        srv.bind(path)
        srv.listen(8)
        return srv, path


class RawAsyncioUnix(_RawUnixListener):
    id, label = "raw.asyncio.unix", "asyncio.open_unix_connection + framing"

    async def aopen(self, spec: Any, role: str, peer_pid: int) -> Any:
        import asyncio

        srv, path = spec
        if role == "a":
            reader, writer = await asyncio.open_unix_connection(path)
        else:
            conn, _ = srv.accept()
            reader, writer = await asyncio.open_unix_connection(sock=conn)
        return _AsyncioStreams(reader, writer)


class RawTrioUnix(_RawUnixListener):
    id, label = "raw.trio.unix", "trio.open_unix_socket + framing"
    backend = "trio"
    requires = ("anyio", "trio")

    async def aopen(self, spec: Any, role: str, peer_pid: int) -> Any:
        import trio

        srv, path = spec
        if role == "a":
            stream = await trio.open_unix_socket(path)
        else:
            conn, _ = srv.accept()
            stream = trio.SocketStream(trio.socket.from_stdlib_socket(conn))
        return _TrioStream(stream)


class _RawSocketpair(AsyncSubject):
    family = "aio"
    group = "raw"

    def setup(self, env: Any) -> Any:
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        env.on_cleanup(a.close)
        env.on_cleanup(b.close)
        return a, b


class RawAsyncioSocketpair(_RawSocketpair):
    id, label = "raw.asyncio.socketpair", "asyncio streams on socket.socketpair + framing"

    async def aopen(self, spec: Any, role: str, peer_pid: int) -> Any:
        import asyncio

        reader, writer = await asyncio.open_unix_connection(sock=spec[0] if role == "a" else spec[1])
        return _AsyncioStreams(reader, writer)


class RawTrioSocketpair(_RawSocketpair):
    id, label = "raw.trio.socketpair", "trio.SocketStream on socket.socketpair + framing"
    backend = "trio"
    requires = ("anyio", "trio")

    async def aopen(self, spec: Any, role: str, peer_pid: int) -> Any:
        import trio

        return _TrioStream(trio.SocketStream(trio.socket.from_stdlib_socket(spec[0] if role == "a" else spec[1])))


# ---------------------------------------------------------------- pyzmq.asyncio


class ZmqAsyncioIpc(AsyncSubject):
    id, label, group, family = "zmq.asyncio.ipc", "pyzmq.asyncio ipc:// (asyncio)", "peer", "aio"
    requires = ("anyio", "zmq.asyncio")
    note = "PAIR sockets, high-water mark 16, copy on send (as the sync pyzmq rows)"

    def setup(self, env: Any) -> Any:
        return "ipc://" + env.path("zmq-aio.ipc")

    async def aopen(self, spec: Any, role: str, peer_pid: int) -> Any:
        import zmq
        import zmq.asyncio

        ctx = zmq.asyncio.Context()
        s = ctx.socket(zmq.PAIR)
        s.setsockopt(zmq.SNDHWM, 16)
        s.setsockopt(zmq.RCVHWM, 16)
        s.setsockopt(zmq.LINGER, 0)
        s.copy_threshold = 1 << 30  # copy at send time: the loops reuse one buffer
        if role == "a":
            s.connect(spec)
        else:
            s.bind(spec)

        def close() -> None:
            s.close(linger=0)
            ctx.term()

        return AEnds(s.send, s.recv, close)
