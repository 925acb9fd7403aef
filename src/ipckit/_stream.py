"""Framed messages and the raw byte stream over one stream file descriptor.

This is the single implementation behind every stream end in ipckit: both ends of
``Pipe()``, the ends of ``Pipe.duplex()`` (a socketpair) and connected stream
``Socket``s. Framing is ``_framing`` (length prefix, sans-IO); this module only moves
bytes and keeps time.

Roles
    An end has the methods it can honour and no others: ``SendStream`` (``send``,
    ``write``, ``flush``), ``ReceiveStream`` (``recv``, ``read``), ``DuplexStream``
    (both). A pipe's reader end is a ``ReceiveStream``: it has no ``send``.

Transports
    What differs between a pipe and a socket is only how a *non-blocking attempt* is
    made on a descriptor that stays blocking (below); that is a small strategy object,
    ``PipeIO`` or ``SocketIO``, in ``end._io``. Blocking calls are the same for both:
    ``read``/``readv``/``writev`` on the descriptor.

Blocking calls (``timeout=None``), the hot path
    One plain blocking system call whenever possible: a send is one ``writev([header,
    payload])``; a receive reads up to 64 KiB at once and may find several frames in
    it; the body of a large message is read straight into its buffer. No poll(), no
    fcntl(). Only a signal interrupting the call (EINTR, retried by Python) or a
    partial write makes a second one.

Timed calls (``timeout`` a number), and why the descriptors stay blocking
    Ends are *blocking* descriptors, because children inherit them (``cat``, a C
    program) and expect that. O_NONBLOCK lives on the open file description, which is
    shared with every process holding a copy, so flipping it would change a child's
    behaviour under its feet. A timed call is an *attempt* (``_attempt_recv``,
    ``_attempt_send`` ...) run by ``_wait.retry`` with a ``ReadyFd`` waiter (poll);
    the attempt is one *per-call* non-blocking try:

    * sockets: ``MSG_DONTWAIT`` on ``recv_into``/``sendmsg``;
    * pipes: ``preadv2``/``pwritev2`` with ``RWF_NOWAIT`` (Linux honours it on pipes
      since 6.x). On an older kernel that refuses it (``EOPNOTSUPP``) ipckit falls back
      to setting O_NONBLOCK only for the duration of the attempt. Caveat of the
      fallback: another process sharing that pipe end may see O_NONBLOCK (``EAGAIN``)
      during that instant. ``NOWAIT_MECHANISM`` says which one is in use.

    An attempt never blocks and does a bounded amount of work (about 1 MiB once its
    limit has passed), so ``ipckit.aio`` can run the same attempts on an event loop.

A timed send never tears a message
    Frames up to ``PIPE_BUF`` bytes go into a pipe atomically (all or nothing), so a
    small message whose send times out was not sent at all. A larger frame (or one on
    a TCP socket, which may accept part of a write) can time out after part of it is
    in the stream; ipckit cannot take those bytes back, so it keeps the rest of the
    frame (*pending*) and writes it *before anything else* this end sends (the next
    ``send``, ``write`` or ``flush``). The peer therefore always sees whole frames;
    the timed-out message is delivered late and whole rather than torn. The
    ``Timeout`` raised then has ``partial=True`` (it is ``False`` when nothing was
    written): do not send that message again. If the end is closed with a remainder
    pending, the peer sees the stream end inside a frame, which its ``recv`` reports
    as ``ClosedError``. ``_attempt_send`` is that rule as one step: it writes nothing
    of a frame, or *commits* it (the unwritten rest goes to the pending buffer), so an
    asynchronous send cancelled at any await has sent the whole frame or none of it.

The peer's word about sizes
    A frame's header is the peer's claim; memory is spent only as bytes arrive (see
    ``_framing``). With ``max_message_size`` a frame announcing more raises
    ``MessageTooLarge`` and *closes this end*: the rest of the stream cannot be
    found without reading the refused frame. Ends that know their peer's limit (both
    ends of a ``Pipe()``, a duplex pair, a FIFO writer given the limit) also refuse to
    *send* a larger message (``MessageTooLarge``, nothing sent).

Peers going away
    End of stream between frames, end of stream inside a frame, ``EPIPE`` and
    ``ECONNRESET`` all raise ``ClosedError``. Writing to a pipe or socket nobody reads
    raises ``ClosedError``, never kills: Python ignores SIGPIPE, and if the program
    restored its default action ipckit blocks SIGPIPE in the writing thread for the
    duration of the write and discards the one it caused.

An end is meant for one sending and one receiving thread at a time (like
``multiprocessing.Connection``): two threads sending on the same end at once may
interleave their frames.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
from functools import partial
from typing import Any, Optional

import _signal

from ._data import byte_view
from ._errors import ClosedError, IPCError, MessageTooLarge, Timeout, closed_error, error_from_errno
from ._framing import ESCAPE, LONG_HEADER, MAX_FRAME, FrameDecoder, FrameTooLarge, encode_header, parse_header, pack_short_header
from ._naming import check_positive_int
from ._resource import FdHolder, Resource
from ._timeouts import Deadline
from ._wait import NOW, POLLIN, POLLOUT, WOULD_BLOCK, ReadyFd, retry, wait_fd

CHUNK = 64 * 1024  # one read pulls up to this much: several small frames at once
READ_MAX = 1 << 20  # read(n) returns at most this much (it may return less than n anyway)
ATTEMPT_BUDGET = 1 << 20  # bytes one attempt moves before it yields, once its limit has passed

# Plain ints: the socket module's constants are IntFlag members, and combining them
# (flags | MSG_DONTWAIT) goes through enum.__or__, a microsecond on the hot path.
_DONTWAIT = int(socket.MSG_DONTWAIT)
_NOSIGNAL = int(socket.MSG_NOSIGNAL)
_CLOSING_ERRNOS = frozenset({errno.EPIPE, errno.ECONNRESET, errno.ESHUTDOWN, errno.ENOTCONN})

# The C-level getsignal: it returns the handler as stored (the int 0 for SIG_DFL,
# 1 for SIG_IGN, a callable, or None when C code set it), without signal.getsignal's
# conversion to an enum, which costs more than the write it guards.
_getsignal = _signal.getsignal
_SIGPIPE = int(signal.SIGPIPE)
_read = os.read
_readv = os.readv
_writev = os.writev

_RWF_NOWAIT: int = getattr(os, "RWF_NOWAIT", 0)
#: "RWF_NOWAIT" or "O_NONBLOCK": how timed pipe calls avoid blocking (see module docstring).
NOWAIT_MECHANISM = "RWF_NOWAIT" if _RWF_NOWAIT else "O_NONBLOCK"


def _rwf_unsupported() -> None:
    global NOWAIT_MECHANISM
    NOWAIT_MECHANISM = "O_NONBLOCK"


def _pipe_nowait(fd: int, op: Any, buffers: Any) -> int:
    """``op(fd, buffers, -1, RWF_NOWAIT)`` (os.preadv / os.pwritev): one non-blocking
    attempt on a blocking pipe. Raises BlockingIOError when it would block."""
    if NOWAIT_MECHANISM == "RWF_NOWAIT":
        try:
            return op(fd, buffers, -1, _RWF_NOWAIT)  # type: ignore[no-any-return]
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS, errno.ESPIPE):
                raise
            _rwf_unsupported()
    os.set_blocking(fd, False)
    try:
        if op is os.preadv:
            return os.readv(fd, buffers)
        return os.writev(fd, buffers)
    finally:
        os.set_blocking(fd, True)


def _sigpipe_kills() -> bool:
    """Would a SIGPIPE kill this process? (Python ignores it; a program may restore it.)"""
    handler = _getsignal(_SIGPIPE)
    return handler is None or handler == 0


def _write_guarded(call: Any, *args: Any) -> int:
    """``call(*args)`` with SIGPIPE blocked in this thread, and the one an EPIPE raised
    taken off the queue before unblocking: for when SIGPIPE's action would kill."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {_SIGPIPE})
    try:
        return call(*args)  # type: ignore[no-any-return]
    except BrokenPipeError:
        if _SIGPIPE not in old:
            signal.sigtimedwait([_SIGPIPE], 0)
        raise
    finally:
        if _SIGPIPE not in old:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _blocking_writev(fd: int, buffers: Any) -> int:
    if _sigpipe_kills():
        return _write_guarded(_writev, fd, buffers)
    return _writev(fd, buffers)


def _advance(buffers: list, n: int) -> list:
    """The part of *buffers* (memoryviews/bytes) left after the first *n* bytes."""
    rest = []
    for buf in buffers:
        size = len(buf)
        if n >= size:
            n -= size
            continue
        rest.append(memoryview(buf)[n:] if n else buf)
        n = 0
    return rest


def ready_now(fd: int, events: int) -> bool:
    """Is *fd* ready for *events* at this instant? (poll with a zero timeout)"""
    return wait_fd(fd, events, NOW)


# ---------------------------------------------------------------------- transports


class PipeIO:
    """A pipe end's descriptor: non-blocking attempts through ``RWF_NOWAIT``.

    A write attempt polls first: POLLOUT means a free page slot, the kernel's own idea
    of "not full". Without it a small write could still slip into the tail of the
    last page after a larger one was refused, so a "full" pipe would take some
    messages and not others."""

    __slots__ = ("fd", "_holder", "_scratch")
    polls_first = True

    def __init__(self, fd: int) -> None:
        self._holder = FdHolder(fd)
        self.fd = fd
        self._scratch: Optional[bytearray] = None

    def write_nowait(self, buffers: list) -> int:
        if not ready_now(self.fd, POLLOUT):
            raise BlockingIOError(errno.EAGAIN, "pipe full")
        if _sigpipe_kills():
            return _write_guarded(_pipe_nowait, self.fd, os.pwritev, buffers)
        return _pipe_nowait(self.fd, os.pwritev, buffers)

    def readinto_nowait(self, buf: Any) -> int:
        return _pipe_nowait(self.fd, os.preadv, (buf,))

    def read_nowait(self, n: int) -> bytes:
        scratch = self._scratch
        if scratch is None or len(scratch) < n:
            scratch = self._scratch = bytearray(max(n, CHUNK))
        got = _pipe_nowait(self.fd, os.preadv, (memoryview(scratch)[:n],))
        return bytes(memoryview(scratch)[:got])

    def close(self) -> None:
        self.fd = -1
        self._holder.close()


class SocketIO:
    """A stream socket: non-blocking attempts through ``MSG_DONTWAIT``."""

    __slots__ = ("fd", "sock")
    polls_first = False

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.fd = sock.fileno()

    def write_nowait(self, buffers: list) -> int:
        return self.sock.sendmsg(buffers, (), _DONTWAIT | _NOSIGNAL)

    def readinto_nowait(self, buf: Any) -> int:
        return self.sock.recv_into(buf, 0, _DONTWAIT)

    def read_nowait(self, n: int) -> bytes:
        return self.sock.recv(n, _DONTWAIT)

    def close(self) -> None:
        self.fd = -1
        self.sock.close()


# ---------------------------------------------------------------------- ends


class FdObject(Resource):
    """An object with one descriptor: ``fileno()``, the OSError -> ipckit error rule
    for calls on it, and pickling as a duplicate of the descriptor."""

    _fd = -1

    def fileno(self) -> int:
        """The file descriptor (blocking), for ``selectors``, ``asyncio``, ``pass_fds``."""
        self._check_open()
        return self._fd

    def _error(self, exc: OSError, what: str) -> IPCError:
        """The ipckit error for an OSError raised by a system call on this object."""
        if self._closed:
            return closed_error(self)
        err = exc.errno
        if err in _CLOSING_ERRNOS:
            return ClosedError(err, f"{what}: the peer closed the stream ({os.strerror(err)})")
        return error_from_errno(err or errno.EIO, what)

    def __reduce__(self) -> tuple:
        """Objects travel to other processes as a duplicate of the descriptor, the way
        ``multiprocessing`` moves its own connections: passed on the command line's
        fd list when a ``spawn``/``forkserver`` child starts, otherwise through
        multiprocessing's resource sharer. (Bytes an end already read ahead and
        buffered stay here.)"""
        self._check_open()
        from multiprocessing import reduction

        return (_rebuild, (type(self), reduction.DupFd(self._fd), self._pickle_state()))

    def _pickle_state(self) -> dict:
        return {}

    @classmethod
    def _from_fd(cls, fd: int, state: dict) -> "FdObject":
        raise NotImplementedError


def _rebuild(cls: type, dupfd: Any, state: dict) -> FdObject:
    return cls._from_fd(dupfd.detach(), state)  # type: ignore[attr-defined,no-any-return]


class StreamEnd(FdObject):
    """One end of a byte stream; ``SendStream``/``ReceiveStream`` add the directions.

    *io* is the transport (``PipeIO`` or ``SocketIO``); *max_message_size* the
    largest message this end accepts (None: any)."""

    _io: Any = None
    _max: Optional[int] = None
    _what = "stream end"

    def __init__(self, io: Any, *, max_message_size: Optional[int] = None) -> None:
        self._io = io
        self._fd = io.fd
        self._max = max_message_size
        self._closed = False

    @property
    def max_message_size(self) -> Optional[int]:
        """The largest message this end takes (``None``: no limit); see the module notes."""
        return self._max

    def _close(self) -> None:
        self._fd = -1
        self._io.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"fd={self._fd}"
        return f"<ipckit {self._what} {state}>"

    def _pickle_state(self) -> dict:
        return {"max_message_size": self._max}


class SendStream(StreamEnd):
    """The sending side: framed ``send``, raw ``write``, ``flush``."""

    _pending: Optional[list] = None  # the unwritten rest of a committed frame
    _pending_borrowed = False  # _pending still views the caller's buffer (copy before returning)
    _limits_sends = True  # the limit is the peer's too (pipes, duplex pairs): refuse to send more
    _send_limit = MAX_FRAME
    _write_blocked = False  # the last non-blocking write found the buffer full

    def __init__(self, io: Any, **kwargs: Any) -> None:
        super().__init__(io, **kwargs)
        if self._limits_sends and self._max is not None:
            self._send_limit = self._max
        self._send_waiter = ReadyFd(io.fd, POLLOUT)

    def _too_large(self, size: int) -> MessageTooLarge:
        return MessageTooLarge(
            errno.EMSGSIZE, f"send: a {size}-byte message is over max_message_size={self._max}; nothing was sent"
        )

    def send(self, data: Any, *, timeout: Optional[float] = None) -> None:
        """Send *data* (any bytes-like object) as one message of any size.

        ``timeout=None`` blocks until the whole message is in the stream. With a
        timeout, raises ``ipckit.Timeout`` if it cannot get there in time; see the
        module notes for a message that was partly written by then (``exc.partial``).
        ``ClosedError`` if this end is closed or the peer closed its end.
        """
        if timeout is not None or self._pending is not None:
            return self._send_timed(data, timeout)
        if type(data) is not bytes:
            data = byte_view(data)
        size = len(data)
        if size > self._send_limit:
            raise self._too_large(size)
        header = pack_short_header(size) if size < ESCAPE else encode_header(size)
        # _blocking_writev, inlined: this is the hot path.
        handler = _getsignal(_SIGPIPE)
        try:
            if handler is None or handler == 0:
                sent = _write_guarded(_writev, self._fd, (header, data))
            else:
                sent = _writev(self._fd, (header, data))
        except OSError as exc:
            raise self._error(exc, "send") from exc
        if sent != size + len(header):
            # Only a signal handler interrupting a big write stops it short.
            self._write_all_blocking(_advance([header, data], sent), "send")

    def _write_all_blocking(self, buffers: list, what: str) -> None:
        while buffers:
            try:
                n = _blocking_writev(self._fd, buffers)
            except OSError as exc:
                raise self._error(exc, what) from exc
            buffers = _advance(buffers, n)

    def _write_nowait(self, buffers: list, what: str, limit: Deadline, total: int = -1) -> tuple[int, list]:
        """Write what goes without blocking: ``(bytes written, buffers left)``
        (*total*, if known, is their size: a write of all of it is then the end).

        After a write found this end's buffer full, the next attempt first asks
        whether it is writable at all: a TCP socket that polls "not writable" still
        takes a few bytes now and then, and a timed send must not succeed on such
        crumbs of a full buffer after its wait said "full" (pipes always ask first;
        see ``PipeIO``)."""
        if self._closed:  # (a poll on the forgotten descriptor would say "not ready" for ever)
            raise closed_error(self)
        written = 0
        io = self._io
        if self._write_blocked and not io.polls_first and not ready_now(self._fd, POLLOUT):
            return 0, buffers
        while buffers:
            try:
                n = io.write_nowait(buffers)
            except BlockingIOError:
                self._write_blocked = True
                break
            except OSError as exc:
                raise self._error(exc, what) from exc
            self._write_blocked = False
            written += n
            if written == total:
                return written, []
            buffers = _advance(buffers, n)
            if written >= ATTEMPT_BUDGET and limit.expired():
                break
        return written, buffers

    # -------------------------------------------------------------- attempts

    def _attempt_send(self, view: Any, limit: Deadline) -> Any:
        """Put the frame of *view* in the stream without blocking: ``WOULD_BLOCK``
        having written nothing of it, or ``True`` once it is *committed* (written, or
        its unwritten rest in the pending buffer, which ``_attempt_flush`` empties).

        A pending remainder of an earlier frame is written first; the new frame is not
        touched until it is gone. The remainder views *view*: the caller calls
        ``_own_pending()`` before it hands control back to whoever owns *view*."""
        if self._pending is not None and self._attempt_flush(limit) is WOULD_BLOCK:
            return WOULD_BLOCK
        size = len(view)
        if size > self._send_limit:
            raise self._too_large(size)
        header = pack_short_header(size) if size < ESCAPE else encode_header(size)
        written, rest = self._write_nowait([header, view], "send", limit, len(header) + size)
        if not written:
            return WOULD_BLOCK
        if rest:
            self._pending, self._pending_borrowed = rest, True
        return True

    def _attempt_flush(self, limit: Deadline) -> Any:
        """Write the pending remainder without blocking: ``True`` once none is left."""
        if self._closed:
            raise closed_error(self)
        pending = self._pending
        if pending is None:
            return True
        _, rest = self._write_nowait(pending, "flush", limit)
        if rest:
            self._pending = rest
            return WOULD_BLOCK
        self._pending, self._pending_borrowed = None, False
        return True

    def _attempt_write(self, view: Any, limit: Deadline) -> Any:
        """Raw bytes: write what goes without blocking, the count (> 0) or ``WOULD_BLOCK``.
        (A pending remainder must be flushed first: see ``write``.)"""
        written, _ = self._write_nowait([view], "write", limit)
        return written if written else WOULD_BLOCK

    def _own_pending(self) -> None:
        """Copy a pending remainder that still views a caller's buffer."""
        if self._pending_borrowed and self._pending is not None:
            self._pending = [bytes(b) for b in self._pending]
        self._pending_borrowed = False

    # -------------------------------------------------------------- timed calls

    def _send_timed(self, data: Any, timeout: Optional[float]) -> None:
        view = byte_view(data)
        deadline = Deadline.from_user(timeout)
        self._check_open()
        size = len(view)
        if size > self._send_limit:
            raise self._too_large(size)
        if deadline.blocking:
            self._flush_blocking("send")
            self._write_all_blocking([encode_header(size), view], "send")
            return
        committed = False
        try:
            retry(partial(self._attempt_send, view), deadline, "send", self._send_waiter)
            committed = True
            if self._pending is not None:
                retry(self._attempt_flush, deadline, "send", self._send_waiter)
        except Timeout as exc:
            exc.partial = committed  # type: ignore[attr-defined]
            if committed:
                total = len(encode_header(size)) + size
                left = sum(len(b) for b in self._pending or ())
                exc.strerror = (
                    f"{exc.strerror} after writing {total - left} of {total} bytes; "
                    "the rest goes out before anything else this end sends"
                )
            elif self._pending is not None:
                exc.strerror = f"{exc.strerror} (the rest of an earlier timed-out message is still being written)"
            raise
        finally:
            if self._pending_borrowed:
                self._own_pending()

    def _flush_blocking(self, what: str) -> None:
        if self._pending is not None:
            self._write_all_blocking(self._pending, what)
            self._pending = None

    def _flush_timed(self, deadline: Deadline, what: str) -> None:
        if deadline.blocking:
            self._flush_blocking(what)
            return
        try:
            retry(self._attempt_flush, deadline, what, self._send_waiter)
        except Timeout as exc:
            exc.partial = False  # type: ignore[attr-defined]
            exc.strerror = f"{exc.strerror} (the rest of an earlier timed-out message is still being written)"
            raise

    def write(self, data: Any, *, timeout: Optional[float] = None) -> int:
        """Write all of *data* to the raw stream (no framing); returns ``len(data)``.

        On timeout, ``ipckit.Timeout`` has ``written``: how many bytes went out
        (the rest did not)."""
        view = byte_view(data)
        deadline = Deadline.from_user(timeout)
        self._check_open()
        if self._pending is not None:
            self._flush_timed(deadline, "write")
        total = len(view)
        if deadline.blocking:
            self._write_all_blocking([view], "write")
            return total
        attempt = WriteAll(self, view)
        try:
            retry(attempt, deadline, "write", self._send_waiter)
        except Timeout as exc:
            exc.written = attempt.written  # type: ignore[attr-defined]
            raise
        return total

    def flush(self, *, timeout: Optional[float] = None) -> None:
        """Finish writing the rest of a message whose timed ``send`` timed out after
        starting it (a no-op when there is none). ``send``/``write`` do this first."""
        deadline = Deadline.from_user(timeout)
        self._check_open()
        if self._pending is not None:
            self._flush_timed(deadline, "flush")

    def _close(self) -> None:
        self._pending = None
        super()._close()


class WriteAll:
    """The attempt of a timed raw ``write`` (and ``ipckit.aio``'s): writes what goes
    without blocking, keeps count in ``written``; True once all of *view* is out."""

    __slots__ = ("end", "view", "written")

    def __init__(self, end: SendStream, view: Any) -> None:
        self.end, self.view, self.written = end, view, 0

    def __call__(self, limit: Deadline) -> Any:
        n = self.end._attempt_write(self.view[self.written:], limit)
        if n is not WOULD_BLOCK:
            self.written += n
        return True if self.written == len(self.view) else WOULD_BLOCK


class ReceiveStream(StreamEnd):
    """The receiving side: framed ``recv``, raw ``read``."""

    _recv_limit = MAX_FRAME

    def __init__(self, io: Any, **kwargs: Any) -> None:
        super().__init__(io, **kwargs)
        self._decoder = FrameDecoder(self._max)
        if self._max is not None:
            self._recv_limit = self._max
        self._recv_waiter = ReadyFd(io.fd, POLLIN)

    def _eof(self, what: str) -> ClosedError:
        if self._closed:
            return closed_error(self)
        if self._decoder.at_boundary:
            return ClosedError(f"{what}: end of stream (the peer closed its end)")
        return ClosedError(
            f"{what}: end of stream inside a frame ({self._decoder.buffered} bytes of a message "
            "received): the peer closed or died while sending it"
        )

    def _refuse(self, exc: FrameTooLarge) -> IPCError:
        """A frame over the limit: this end is closed (the stream cannot resynchronise),
        and says ``ClosedError`` from then on."""
        if self._closed:
            return closed_error(self)
        self.close()
        return MessageTooLarge(
            errno.EMSGSIZE,
            f"recv: the peer announced a {exc.size}-byte message, over max_message_size={exc.limit}; "
            "this end is now closed (a stream cannot skip a frame)",
        )

    def recv(self, *, timeout: Optional[float] = None) -> bytes:
        """Receive one whole message as ``bytes``.

        ``timeout=None`` blocks; ``timeout=0`` returns only a message already here;
        otherwise raises ``ipckit.Timeout`` after *timeout* seconds (bytes of a message
        that arrived in part are kept for the next call). ``ClosedError`` at end of
        stream, including one inside a message (the peer died while sending it).
        ``MessageTooLarge`` for a message over ``max_message_size`` (the end is closed).
        """
        if timeout is not None:
            return self._recv_timed(timeout)
        decoder = self._decoder
        fd = self._fd
        if decoder.at_boundary:
            # Fast path: one read holding exactly one frame skips the decoder.
            try:
                data = _read(fd, LONG_HEADER if decoder.large_last else CHUNK)
            except OSError as exc:
                raise self._error(exc, "recv") from exc
            if not data:
                raise self._eof("recv")
            header = parse_header(data)
            if header is not None and len(data) == header[0] + header[1] and header[1] <= self._recv_limit:
                return data[header[0]:]
            decoder.feed(data)
        try:
            frame = decoder.next_frame()
            while frame is None:
                body = decoder.body_buffer()
                try:
                    if body is None:
                        data = _read(fd, CHUNK)
                        n = len(data)
                        if n:
                            decoder.feed(data)
                    else:
                        n = _readv(fd, (body,))
                        decoder.body_received(n)
                except OSError as exc:
                    raise self._error(exc, "recv") from exc
                if not n:
                    raise self._eof("recv")
                frame = decoder.next_frame()
        except FrameTooLarge as exc:
            raise self._refuse(exc) from None
        return frame

    def _read_nowait(self, decoder: FrameDecoder) -> int:
        """One non-blocking read into *decoder*: bytes read, -1 when nothing is there, 0 at EOF."""
        io = self._io
        try:
            body = decoder.body_buffer()
            if body is not None:
                n = io.readinto_nowait(body)
                decoder.body_received(n)
                return n  # type: ignore[no-any-return]
            data = io.read_nowait(CHUNK)
        except BlockingIOError:
            return -1
        except OSError as exc:
            raise self._error(exc, "recv") from exc
        if data:
            decoder.feed(data)
        return len(data)

    def _attempt_recv(self, limit: Deadline) -> Any:
        """One whole message if it can be had without blocking, else ``WOULD_BLOCK``
        (bytes read so far stay in the decoder). ``ClosedError`` at end of stream."""
        decoder = self._decoder
        try:
            if decoder.at_boundary:
                # As recv()'s fast path: one read holding exactly one frame skips the decoder.
                try:
                    data = self._io.read_nowait(LONG_HEADER if decoder.large_last else CHUNK)
                except BlockingIOError:
                    return WOULD_BLOCK
                except OSError as exc:
                    raise self._error(exc, "recv") from exc
                if not data:
                    raise self._eof("recv")
                header = parse_header(data)
                if header is not None and len(data) == header[0] + header[1] and header[1] <= self._recv_limit:
                    return data[header[0]:]
                decoder.feed(data)
            got = 0
            while True:
                frame = decoder.next_frame()
                if frame is not None:
                    return frame
                # The budget is looked at only here, after next_frame(): a read that
                # completed a frame must return it, or the caller would wait for the
                # descriptor to become readable with the whole frame already read.
                if got >= ATTEMPT_BUDGET and limit.expired():
                    return WOULD_BLOCK
                n = self._read_nowait(decoder)
                if n == 0:
                    raise self._eof("recv")
                if n < 0:
                    return WOULD_BLOCK
                got += n
        except FrameTooLarge as exc:
            raise self._refuse(exc) from None

    def _recv_timed(self, timeout: Optional[float]) -> bytes:
        deadline = Deadline.from_user(timeout)
        self._check_open()
        return retry(self._attempt_recv, deadline, "recv", self._recv_waiter)  # type: ignore[no-any-return]

    def read(self, n: int = CHUNK, *, timeout: Optional[float] = None) -> bytes:
        """Up to *n* bytes of the raw stream, as soon as any are available; ``b""`` at
        end of stream. ``ipckit.Timeout`` if none arrive in time. (At most ``READ_MAX``
        bytes are returned at once, whatever *n*.)"""
        check_positive_int(n, "n")
        n = min(n, READ_MAX)
        deadline = Deadline.from_user(timeout)
        self._check_open()
        if deadline.blocking and self._decoder.at_boundary:
            try:
                return _read(self._fd, n)
            except OSError as exc:
                raise self._error(exc, "read") from exc
        return retry(partial(self._attempt_read, n), deadline, "read", self._recv_waiter)  # type: ignore[no-any-return]

    def _attempt_read(self, n: int, limit: Deadline) -> Any:
        """Up to *n* raw bytes without blocking (bytes a ``recv`` read ahead come first),
        ``b""`` at end of stream, or ``WOULD_BLOCK``."""
        decoder = self._decoder
        if not decoder.at_boundary:
            if decoder.in_body:
                raise IPCError(errno.EINVAL, "read: a message is half received by recv(); finish it with recv() first")
            return decoder.take_buffered(n)
        buf = bytearray(n)
        try:
            got = self._io.readinto_nowait(buf)
        except BlockingIOError:
            return WOULD_BLOCK
        except OSError as exc:
            raise self._error(exc, "read") from exc
        return bytes(buf) if got == n else bytes(memoryview(buf)[:got])


class DuplexStream(SendStream, ReceiveStream):
    """Both sides: ``send``/``recv``/``write``/``read``/``flush``."""


__all__ = [
    "ATTEMPT_BUDGET",
    "CHUNK",
    "DuplexStream",
    "FdObject",
    "NOWAIT_MECHANISM",
    "PipeIO",
    "READ_MAX",
    "ReceiveStream",
    "SendStream",
    "SocketIO",
    "StreamEnd",
    "ready_now",
]
