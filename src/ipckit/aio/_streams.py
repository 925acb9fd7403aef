"""Stream ends, ``Pipe`` and ``Socket`` under an event loop.

Each coroutine is the synchronous end's attempt (``_attempt_send``,
``_attempt_recv`` ... in ``ipckit._stream``) driven by ``_drive.run`` with its
``ReadyFd`` waiter, so framing, limits and errors are the synchronous ones. A send
is committed by one attempt (nothing written, or the frame's unwritten rest kept
to go out before anything else this end sends), so a send cancelled at any
``await`` sent the whole frame or none of it.
"""

from __future__ import annotations

import socket
from functools import partial
from typing import Any, AsyncIterator, Optional, Tuple

import anyio

from .._data import byte_view
from .._errors import ClosedError, Timeout
from .._naming import check_positive_int
from .._pipe import FifoOpener
from .._pipe import Pipe as _SyncPipe
from .._socket import Connector, parse_address
from .._socket import Socket as _SyncSocket
from .._socket import _SCM_MAX_FD, _check_fds
from .._stream import CHUNK, READ_MAX, WriteAll
from .._timeouts import Deadline
from ._drive import run
from ._twin import Twin, until_closed

_END = frozenset({"max_message_size", "pipe_size", "available", "peer_credentials", "address", "family"})


class _End(Twin):
    __slots__ = ()
    _plain = _END

    def _fd(self) -> Optional[int]:
        return None if self.sync.closed else self.sync._fd


class ReceiveStream(_End):
    """The receiving end of a stream: ``recv``, ``read``, ``async for``."""

    __slots__ = ()

    async def recv(self, *, timeout: Optional[float] = None) -> bytes:
        """One whole message (see the synchronous ``recv``)."""
        end = self.sync
        deadline = Deadline.from_user(timeout)
        end._check_open()
        return await run(end._attempt_recv, deadline, "recv", end._recv_waiter)  # type: ignore[no-any-return]

    async def read(self, n: int = CHUNK, *, timeout: Optional[float] = None) -> bytes:
        """Up to *n* raw bytes as soon as any are there; ``b""`` at end of stream."""
        check_positive_int(n, "n")
        end = self.sync
        deadline = Deadline.from_user(timeout)
        end._check_open()
        return await run(partial(end._attempt_read, min(n, READ_MAX)), deadline, "read", end._recv_waiter)  # type: ignore[no-any-return]

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._messages()

    async def _messages(self) -> AsyncIterator[bytes]:
        """Messages until the peer closes between two of them (or this end is closed);
        a stream that ends inside a message raises ``ClosedError``."""
        end = self.sync
        while True:
            try:
                yield await self.recv()
            except ClosedError:
                if end.closed or end._decoder.at_boundary:
                    return
                raise


class SendStream(_End):
    """The sending end of a stream: ``send``, ``write``, ``flush``."""

    __slots__ = ()

    async def send(self, data: Any, *, timeout: Optional[float] = None) -> None:
        """Send *data* as one message (see the synchronous ``send``). Cancelled or
        timed out, it sent none of the message, or it committed it: the rest goes
        out before anything else this end sends (``Timeout.partial``)."""
        end = self.sync
        view = byte_view(data)
        deadline = Deadline.from_user(timeout)
        end._check_open()
        size = len(view)
        if size > end._send_limit:
            raise end._too_large(size)
        await self._commit(partial(end._attempt_send, view), deadline, "send")

    async def _commit(self, attempt: Any, deadline: Deadline, what: str) -> None:
        end = self.sync
        committed = False
        try:
            await run(attempt, deadline, what, end._send_waiter)
            committed = True
            if end._pending is not None:
                await run(end._attempt_flush, deadline, what, end._send_waiter)
        except Timeout as exc:
            exc.partial = committed  # type: ignore[attr-defined]
            raise
        finally:
            end._own_pending()

    async def write(self, data: Any, *, timeout: Optional[float] = None) -> int:
        """Write all of *data* to the raw stream; ``Timeout.written`` says how much
        went out if it timed out."""
        end = self.sync
        view = byte_view(data)
        deadline = Deadline.from_user(timeout)
        end._check_open()
        await self._flush(deadline, "write")
        attempt = WriteAll(end, view)
        try:
            await run(attempt, deadline, "write", end._send_waiter)
        except Timeout as exc:
            exc.written = attempt.written  # type: ignore[attr-defined]
            raise
        return len(view)

    async def flush(self, *, timeout: Optional[float] = None) -> None:
        """Finish writing the rest of a message that timed out (or was cancelled) after it started."""
        end = self.sync
        deadline = Deadline.from_user(timeout)
        end._check_open()
        await self._flush(deadline, "flush")

    async def _flush(self, deadline: Deadline, what: str) -> None:
        end = self.sync
        if end._pending is None:
            return
        try:
            await run(end._attempt_flush, deadline, what, end._send_waiter)
        except Timeout as exc:
            exc.partial = False  # type: ignore[attr-defined]
            raise


class DuplexStream(ReceiveStream, SendStream):
    """Both: ``send``/``recv``/``write``/``read``/``flush``."""

    __slots__ = ()


class UnixStream(DuplexStream):
    """A Unix stream end (a duplex pipe end, a Unix connection): also descriptors."""

    __slots__ = ()

    async def send_fds(self, data: Any, fds: Any, *, timeout: Optional[float] = None) -> int:
        """Raw *data* (at least one byte) with the descriptors *fds* attached."""
        end = self.sync
        view = byte_view(data)
        if not len(view):
            raise ValueError("data must hold at least one byte: the descriptors travel with it")
        import array

        ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", _check_fds(fds)))]
        deadline = Deadline.from_user(timeout)
        end._unix_socket()
        await self._flush(deadline, "send_fds")
        await self._commit(partial(end._attempt_send_fds, view, ancillary), deadline, "send_fds")
        return len(view)

    async def recv_fds(self, maxfds: int, *, bufsize: int = 65536, timeout: Optional[float] = None) -> Tuple[bytes, list]:
        """Up to *bufsize* raw bytes and up to *maxfds* descriptors (yours to close)."""
        check_positive_int(maxfds, "maxfds")
        if maxfds > _SCM_MAX_FD:
            raise ValueError(f"maxfds must be at most {_SCM_MAX_FD} (the kernel's SCM_MAX_FD), got {maxfds}")
        check_positive_int(bufsize, "bufsize")
        end = self.sync
        deadline = Deadline.from_user(timeout)
        end._unix_socket()
        attempt = partial(end._attempt_recv_fds, maxfds, min(bufsize, READ_MAX))
        return await run(attempt, deadline, "recv_fds", end._recv_waiter)  # type: ignore[no-any-return]


# ---------------------------------------------------------------- Pipe


class Pipe(Twin):
    """``ipckit.Pipe`` under an event loop: ``reader`` and ``writer`` are async
    ends; ``send``/``recv`` are theirs. ``Pipe.duplex()`` and ``await Pipe.fifo()``
    as in the synchronous API."""

    __slots__ = ("reader", "writer")
    _plain = frozenset({"max_message_size"})

    def __init__(self, *, size: Optional[int] = None, max_message_size: Optional[int] = None, _sync: Any = None) -> None:
        sync = _sync if _sync is not None else _SyncPipe(size=size, max_message_size=max_message_size)
        super().__init__(sync)
        object.__setattr__(self, "reader", ReceiveStream(sync.reader))
        object.__setattr__(self, "writer", SendStream(sync.writer))

    async def send(self, data: Any, *, timeout: Optional[float] = None) -> None:
        await self.writer.send(data, timeout=timeout)

    async def recv(self, *, timeout: Optional[float] = None) -> bytes:
        return await self.reader.recv(timeout=timeout)

    def close(self) -> None:
        self.reader.close()
        self.writer.close()
        self.sync.close()

    @staticmethod
    def duplex(*, max_message_size: Optional[int] = None) -> Tuple[UnixStream, UnixStream]:
        """Two connected two-way ends (a socketpair), as ``ipckit.Pipe.duplex``."""
        a, b = _SyncPipe.duplex(max_message_size=max_message_size)
        return UnixStream(a), UnixStream(b)

    @staticmethod
    async def fifo(path: Any, mode: str, *, create: bool = True, timeout: Optional[float] = None,
                   max_message_size: Optional[int] = None) -> Any:
        """Open a named FIFO (``mode`` ``"r"`` or ``"w"``), waiting up to *timeout*
        for the other side without blocking the loop."""
        with FifoOpener(path, mode, create=create, max_message_size=max_message_size, timeout=timeout) as opener:
            end = await run(opener.attempt, opener.deadline, opener.what, opener.waiter)
        return ReceiveStream(end) if mode == "r" else SendStream(end)


# ---------------------------------------------------------------- Socket


class Socket(Twin):
    """``ipckit.Socket`` under an event loop: ``Socket.listen()`` (plain) and
    ``await Socket.connect()``; the sockets they return are twins."""

    __slots__ = ()
    _plain = _END

    def _fd(self) -> Optional[int]:
        return None if self.sync.closed else self.sync._fd

    @classmethod
    def listen(cls, address: str, *, backlog: int = 128, mode: int = 0o600,
               max_message_size: Optional[int] = None) -> Any:
        """As ``ipckit.Socket.listen``: a listener twin (stream) or a datagram twin."""
        from ._wrap import wrap

        return wrap(_SyncSocket.listen(address, backlog=backlog, mode=mode, max_message_size=max_message_size))

    @classmethod
    async def connect(cls, address: str, *, timeout: Optional[float] = None,
                      max_message_size: Optional[int] = None) -> Any:
        """As ``ipckit.Socket.connect``, waiting for the connection in the loop. A host
        name is resolved in a worker thread (``getaddrinfo`` may block on DNS)."""
        from ._wrap import wrap

        make = partial(Connector, address, max_message_size=max_message_size, timeout=timeout)
        if parse_address(address).family == socket.AF_UNSPEC:
            connector = await anyio.to_thread.run_sync(make)
        else:
            connector = make()
        with connector:
            deadline = connector.deadline
            await run(connector.attempt_start, deadline, f"connect to {connector.url} (backlog full)", connector.start_waiter)
            await run(connector.attempt_finish, deadline, f"connect to {connector.url}", connector.finish_waiter)
            return wrap(connector.result())


class SocketListener(Socket):
    """A listening stream socket: ``await accept()``, ``async for conn in listener``."""

    __slots__ = ()

    async def accept(self, *, timeout: Optional[float] = None) -> Any:
        """The next connection, as a connected socket twin."""
        from ._wrap import wrap

        listener = self.sync
        deadline = Deadline.from_user(timeout)
        listener._check_open()
        return wrap(await run(listener._attempt_accept, deadline, "accept", listener._accept_waiter))

    def __aiter__(self) -> AsyncIterator[Any]:
        """Connections, until the listener is closed."""
        return until_closed(self.sync, self.accept)


class SocketConnection(Socket, DuplexStream):
    """A connected stream socket (TCP)."""

    __slots__ = ()


class UnixConnection(Socket, UnixStream):
    """A connected Unix stream socket: also ``send_fds``/``recv_fds``."""

    __slots__ = ()


class DatagramSocket(Socket):
    """A datagram socket: ``send``, ``send_to``, ``recv``, ``recv_from``, ``read``, ``write``."""

    __slots__ = ()

    async def send(self, data: Any, *, timeout: Optional[float] = None) -> None:
        """One datagram to the connected peer."""
        sock = self.sync
        view = byte_view(data)
        deadline = Deadline.from_user(timeout)
        sock._check_open()
        await run(partial(sock._attempt_send, view, None), deadline, "send", sock._send_waiter)

    async def write(self, data: Any, *, timeout: Optional[float] = None) -> int:
        view = byte_view(data)
        await self.send(view, timeout=timeout)
        return len(view)

    async def send_to(self, data: Any, address: str, *, timeout: Optional[float] = None) -> None:
        """One datagram to *address* (a URL of this socket's scheme)."""
        from .._socket import _resolve

        sock = self.sync
        view = byte_view(data)
        addr = parse_address(address)
        deadline = Deadline.from_user(timeout)
        sock._check_open()
        if addr.scheme != sock._scheme:
            raise ValueError(f"address must be a {sock._scheme}:// URL for this socket, got {address!r}")
        if addr.family == socket.AF_UNSPEC:
            family, sockaddr = await anyio.to_thread.run_sync(_resolve, addr, False)
        else:
            family, sockaddr = _resolve(addr, False)
        if family != sock.family:
            raise ValueError(f"address {address!r} is not of this socket's address family")
        await run(partial(sock._attempt_send, view, sockaddr), deadline, "send_to", sock._send_waiter)

    async def recv(self, *, timeout: Optional[float] = None) -> bytes:
        sock = self.sync
        deadline = Deadline.from_user(timeout)
        sock._check_open()
        return await run(sock._attempt_recv, deadline, "recv", sock._recv_waiter)  # type: ignore[no-any-return]

    async def recv_from(self, *, timeout: Optional[float] = None) -> Tuple[bytes, Optional[str]]:
        sock = self.sync
        deadline = Deadline.from_user(timeout)
        sock._check_open()
        return await run(sock._attempt_recv_from, deadline, "recv_from", sock._recv_waiter)  # type: ignore[no-any-return]

    async def read(self, n: int = 65536, *, timeout: Optional[float] = None) -> bytes:
        check_positive_int(n, "n")
        sock = self.sync
        deadline = Deadline.from_user(timeout)
        sock._check_open()
        return await run(partial(sock._attempt_read, n), deadline, "read", sock._recv_waiter)  # type: ignore[no-any-return]

    def __aiter__(self) -> AsyncIterator[bytes]:
        """Datagrams, until the socket is closed."""
        return until_closed(self.sync, self.recv)


__all__ = [
    "DatagramSocket", "DuplexStream", "Pipe", "ReceiveStream", "SendStream", "Socket",
    "SocketConnection", "SocketListener", "UnixConnection", "UnixStream",
]
