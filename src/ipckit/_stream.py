"""Framed messages and the raw byte stream over one stream file descriptor.

This is the single implementation behind every stream end in ipckit: both ends of
``Pipe()``, the ends of ``Pipe.duplex()`` (a socketpair) and connected stream
``Socket``s. Framing is ``_framing`` (length prefix, sans-IO); this module only moves
bytes and keeps time.

Blocking calls (``timeout=None``), the hot path
    One plain blocking system call whenever possible: a send is one ``writev([header,
    payload])`` (``sendmsg`` with ``MSG_NOSIGNAL`` on sockets); a receive reads up to
    64 KiB at once and may find several frames in it; the body of a large message is
    read straight into its preallocated buffer. No poll(), no fcntl().

Timed calls (``timeout`` a number), and why the descriptors stay blocking
    Ends are *blocking* descriptors, because children inherit them (``cat``, a C
    program) and expect that. O_NONBLOCK lives on the open file description, which is
    shared with every process holding a copy, so flipping it would change a child's
    behaviour under its feet. A timed call instead waits with ``poll()`` and then makes
    a *per-call* non-blocking attempt:

    * sockets: ``MSG_DONTWAIT`` on ``recv``/``sendmsg``;
    * pipes: ``preadv2``/``pwritev2`` with ``RWF_NOWAIT`` (Linux honours it on pipes
      since 6.x). On an older kernel that refuses it (``EOPNOTSUPP``) ipckit falls back
      to setting O_NONBLOCK only for the duration of the attempt. Caveat of the
      fallback: another process sharing that pipe end may see O_NONBLOCK (``EAGAIN``)
      during that instant. ``NOWAIT_MECHANISM`` says which one is in use.

A timed send never tears a message
    Frames up to ``PIPE_BUF`` bytes go into a pipe atomically (all or nothing), so a
    small message whose send times out was not sent at all. A larger frame (or one on
    a TCP socket, which may accept part of a write) can time out after part of it is
    in the stream; ipckit cannot take those bytes back, so it keeps the rest of the
    frame and writes it *before anything else* this end sends (the next ``send``,
    ``write`` or ``flush``). The peer therefore always sees whole frames; the
    timed-out message is delivered late and whole rather than torn. The ``Timeout``
    raised then has ``partial=True`` (it is ``False`` when nothing was written): do not
    send that message again. If the end is closed with a remainder pending, the peer
    sees the stream end inside a frame, which its ``recv`` reports as ``ClosedError``.

Peers going away
    End of stream between frames, end of stream inside a frame, ``EPIPE`` and
    ``ECONNRESET`` all raise ``ClosedError``. Writing to a pipe nobody reads raises
    ``ClosedError``, never kills: sockets use ``MSG_NOSIGNAL``; for pipes Python ignores
    SIGPIPE, and if the program restored its default action ipckit blocks SIGPIPE in
    the writing thread for the duration of the write and discards the one it caused.

An end is meant for one sending and one receiving thread at a time (like
``multiprocessing.Connection``): two threads sending on the same end at once may
interleave their frames.
"""

from __future__ import annotations

import errno
import os
import select
import signal
import socket
from typing import Any, Optional

from ._data import byte_view
from ._errors import ClosedError, IPCError, closed_error, error_from_errno
from ._framing import FrameDecoder, encode_header, parse_header
from ._naming import check_positive_int
from ._resource import FdHolder, Resource
from ._timeouts import Deadline
from ._wait import wait_fd

CHUNK = 64 * 1024  # one read pulls up to this much: several small frames at once

_POLLIN = select.POLLIN | select.POLLPRI
_POLLOUT = select.POLLOUT
# Plain ints: the socket module's constants are IntFlag members, and combining them
# (flags | MSG_DONTWAIT) goes through enum.__or__, a microsecond on the hot path.
_DONTWAIT = int(socket.MSG_DONTWAIT)
_NOSIGNAL = int(socket.MSG_NOSIGNAL)
_CLOSING_ERRNOS = frozenset({errno.EPIPE, errno.ECONNRESET, errno.ESHUTDOWN, errno.ENOTCONN})

_getsignal = signal.getsignal
_SIGPIPE = signal.SIGPIPE
_SIG_IGN = signal.SIG_IGN

_RWF_NOWAIT: int = getattr(os, "RWF_NOWAIT", 0)
#: "RWF_NOWAIT" or "O_NONBLOCK": how timed pipe calls avoid blocking (see module docstring).
NOWAIT_MECHANISM = "RWF_NOWAIT" if _RWF_NOWAIT else "O_NONBLOCK"


def _rwf_unsupported() -> None:
    global NOWAIT_MECHANISM
    NOWAIT_MECHANISM = "O_NONBLOCK"


def _pipe_nowait(fd: int, op: Any, *args: Any) -> int:
    """``op(fd, buffers, -1, RWF_NOWAIT)`` (os.preadv / os.pwritev): one non-blocking
    attempt on a blocking pipe. Raises BlockingIOError when it would block."""
    if NOWAIT_MECHANISM == "RWF_NOWAIT":
        try:
            return op(fd, *args, -1, _RWF_NOWAIT)  # type: ignore[no-any-return]
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS, errno.ESPIPE):
                raise
            _rwf_unsupported()
    os.set_blocking(fd, False)
    try:
        if op is os.preadv:
            return os.readv(fd, *args)
        return os.writev(fd, *args)
    finally:
        os.set_blocking(fd, True)


def _guarded_pipe_write(call: Any, *args: Any) -> int:
    """Run a pipe write so that EPIPE cannot kill the process through SIGPIPE.

    Python ignores SIGPIPE, which makes this a plain call. Only if the program gave
    SIGPIPE back its default action (or C code changed it behind Python's back, which
    ``getsignal`` reports as None) is the signal blocked in this thread around the
    write, and the one our EPIPE raised is taken off the queue before unblocking."""
    handler = _getsignal(_SIGPIPE)
    if handler is _SIG_IGN or (handler is not None and handler is not signal.SIG_DFL):
        return call(*args)  # type: ignore[no-any-return]
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


class StreamEnd(Resource):
    """One end of a byte stream: framed ``send``/``recv`` and raw ``write``/``read``.

    Subclasses set what they cannot do (a pipe's reader end cannot send). A socket
    backed end passes its ``socket.socket`` as *sock*; the descriptor is the socket's.
    """

    _fd = -1
    _sock: Optional[socket.socket] = None
    _holder: Optional[FdHolder] = None
    _pending: Optional[list] = None  # the unwritten rest of a frame whose send timed out
    _what = "stream end"

    def __init__(self, fd: int, sock: Optional[socket.socket] = None) -> None:
        if sock is None:
            self._holder = FdHolder(fd)
        self._sock = sock
        self._fd = fd
        self._decoder = FrameDecoder()
        self._scratch: Optional[bytearray] = None
        self._closed = False

    # ------------------------------------------------------------------ basics

    def fileno(self) -> int:
        """The file descriptor (blocking), for ``selectors``, ``asyncio``, ``pass_fds``."""
        self._check_open()
        return self._fd

    def _close(self) -> None:
        self._fd = -1
        self._pending = None
        if self._sock is not None:
            self._sock.close()
        elif self._holder is not None:
            self._holder.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"fd={self._fd}"
        return f"<ipckit {self._what} {state}>"

    def _error(self, exc: OSError, what: str) -> IPCError:
        """The ipckit error for an OSError raised by a system call on this end."""
        if self._closed:
            return closed_error(self)
        err = exc.errno
        if err in _CLOSING_ERRNOS:
            return ClosedError(err, f"{what}: the peer closed the stream ({os.strerror(err)})")
        return error_from_errno(err or errno.EIO, what)

    def _eof(self, what: str) -> ClosedError:
        if self._closed:
            return closed_error(self)
        if self._decoder.at_boundary:
            return ClosedError(f"{what}: end of stream (the peer closed its end)")
        return ClosedError(
            f"{what}: end of stream inside a frame ({self._decoder.buffered} bytes of a message "
            "received): the peer closed or died while sending it"
        )

    # ------------------------------------------------------------------ sending

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
        header = encode_header(size)
        try:
            if self._sock is None:
                sent = _guarded_pipe_write(os.writev, self._fd, (header, data))
            else:
                sent = self._sock.sendmsg((header, data), (), _NOSIGNAL)
        except OSError as exc:
            raise self._error(exc, "send") from exc
        if sent != size + len(header):
            # Only a signal handler interrupting a big write stops it short.
            self._write_all_blocking(_advance([header, data], sent), "send")

    def write(self, data: Any, *, timeout: Optional[float] = None) -> int:
        """Write all of *data* to the raw stream (no framing); returns ``len(data)``.

        On timeout, ``ipckit.Timeout`` has ``written``: how many bytes went out
        (the rest did not)."""
        view = byte_view(data)
        deadline = Deadline.from_user(timeout)
        self._check_open()
        if self._pending is not None:
            self._flush(deadline, "write")
        if deadline.blocking:
            self._write_all_blocking([view], "write")
            return len(view)
        written = self._write_timed([view], deadline)
        if written < len(view):
            exc = deadline.timeout_error("write")
            exc.written = written  # type: ignore[attr-defined]
            raise exc
        return written

    def flush(self, *, timeout: Optional[float] = None) -> None:
        """Finish writing the rest of a message whose timed ``send`` timed out after
        starting it (a no-op when there is none). ``send``/``write`` do this first."""
        deadline = Deadline.from_user(timeout)
        self._check_open()
        if self._pending is not None:
            self._flush(deadline, "flush")

    def _write_all_blocking(self, buffers: list, what: str) -> None:
        while buffers:
            try:
                if self._sock is None:
                    n = _guarded_pipe_write(os.writev, self._fd, buffers)
                else:
                    n = self._sock.sendmsg(buffers, (), _NOSIGNAL)
            except OSError as exc:
                raise self._error(exc, what) from exc
            buffers = _advance(buffers, n)

    def _write_nowait(self, buffers: list) -> int:
        """One non-blocking write attempt; 0 when it would block."""
        try:
            if self._sock is None:
                return _guarded_pipe_write(_pipe_nowait, self._fd, os.pwritev, buffers)
            return self._sock.sendmsg(buffers, (), _DONTWAIT | _NOSIGNAL)
        except BlockingIOError:
            return 0

    def _write_timed(self, buffers: list, deadline: Deadline, what: str = "send") -> int:
        """Write *buffers* before *deadline*; returns how much was written (all, or
        less when the deadline passed).

        A pipe is polled *before* each attempt: POLLOUT means a free page slot, the
        kernel's own idea of "not full". Without it a small write could still slip
        into the tail of the last page after a larger one was refused, so a "full"
        pipe would take some messages and not others. Sockets try first."""
        total = sum(len(b) for b in buffers)
        written = 0
        fd = self._fd
        is_pipe = self._sock is None
        while True:
            if is_pipe and not wait_fd(fd, _POLLOUT, deadline):
                return written
            try:
                n = self._write_nowait(buffers)
            except OSError as exc:
                raise self._error(exc, what) from exc
            written += n
            if written == total:
                return written
            buffers = _advance(buffers, n)
            if deadline.expired() or (not is_pipe and not wait_fd(fd, _POLLOUT, deadline)):
                return written

    def _flush(self, deadline: Deadline, what: str) -> None:
        pending = self._pending
        assert pending is not None
        if deadline.blocking:
            self._write_all_blocking(pending, what)
            self._pending = None
            return
        total = sum(len(b) for b in pending)
        n = self._write_timed(pending, deadline, what)
        if n < total:
            self._pending = _advance(pending, n)
            exc = deadline.timeout_error(what)
            exc.partial = False  # type: ignore[attr-defined]
            exc.strerror = f"{exc.strerror} (the rest of an earlier timed-out message is still being written)"
            raise exc
        self._pending = None

    def _send_timed(self, data: Any, timeout: Optional[float]) -> None:
        view = byte_view(data)
        deadline = Deadline.from_user(timeout)
        self._check_open()
        if self._pending is not None:
            self._flush(deadline, "send")
        header = encode_header(len(view))
        if deadline.blocking:
            self._write_all_blocking([header, view], "send")
            return
        total = len(header) + len(view)
        n = self._write_timed([header, view], deadline)
        if n == total:
            return
        exc = deadline.timeout_error("send")
        exc.partial = n > 0  # type: ignore[attr-defined]
        if n:
            # Copy: the caller may reuse its buffer once send() has returned.
            self._pending = [bytes(b) for b in _advance([header, view], n)]
            exc.strerror = f"{exc.strerror} after writing {n} of {total} bytes; the rest goes out before anything else this end sends"
        raise exc

    # ------------------------------------------------------------------ receiving

    def recv(self, *, timeout: Optional[float] = None) -> bytes:
        """Receive one whole message as ``bytes``.

        ``timeout=None`` blocks; ``timeout=0`` returns only a message already here;
        otherwise raises ``ipckit.Timeout`` after *timeout* seconds (bytes of a message
        that arrived in part are kept for the next call). ``ClosedError`` at end of
        stream, including one inside a message (the peer died while sending it).
        """
        if timeout is not None:
            return self._recv_timed(timeout)
        decoder = self._decoder
        fd = self._fd
        if decoder.at_boundary:
            # Fast path: one read holding exactly one frame skips the decoder.
            try:
                data = os.read(fd, CHUNK)
            except OSError as exc:
                raise self._error(exc, "recv") from exc
            if not data:
                raise self._eof("recv")
            header = parse_header(data)
            if header is not None and len(data) == header[0] + header[1]:
                return data[header[0]:]
            decoder.feed(data)
        frame = decoder.next_frame()
        while frame is None:
            body = decoder.body_buffer()
            try:
                if body is None:
                    data = os.read(fd, CHUNK)
                    n = len(data)
                    if n:
                        decoder.feed(data)
                else:
                    n = os.readv(fd, (body,))
                    decoder.body_received(n)
            except OSError as exc:
                raise self._error(exc, "recv") from exc
            if not n:
                raise self._eof("recv")
            frame = decoder.next_frame()
        return frame

    def _read_nowait(self, decoder: FrameDecoder) -> int:
        """One non-blocking read into *decoder*; -1 when nothing is there, 0 at EOF."""
        body = decoder.body_buffer()
        try:
            if body is not None:
                if self._sock is None:
                    n = _pipe_nowait(self._fd, os.preadv, (body,))
                else:
                    n = self._sock.recv_into(body, 0, _DONTWAIT)
                decoder.body_received(n)
                return n
            if self._sock is None:
                if self._scratch is None:
                    self._scratch = bytearray(CHUNK)
                n = _pipe_nowait(self._fd, os.preadv, (self._scratch,))
                if n:
                    decoder.feed(memoryview(self._scratch)[:n])
                return n
            data = self._sock.recv(CHUNK, _DONTWAIT)
            if data:
                decoder.feed(data)
            return len(data)
        except BlockingIOError:
            return -1

    def _recv_timed(self, timeout: Optional[float]) -> bytes:
        deadline = Deadline.from_user(timeout)
        self._check_open()
        decoder = self._decoder
        while True:
            frame = decoder.next_frame()
            if frame is not None:
                return frame
            try:
                n = self._read_nowait(decoder)
            except OSError as exc:
                raise self._error(exc, "recv") from exc
            if n == 0:
                raise self._eof("recv")
            if n < 0 and (deadline.expired() or not wait_fd(self._fd, _POLLIN, deadline)):
                raise deadline.timeout_error("recv")

    def read(self, n: int = CHUNK, *, timeout: Optional[float] = None) -> bytes:
        """Up to *n* bytes of the raw stream, as soon as any are available; ``b""`` at
        end of stream. ``ipckit.Timeout`` if none arrive in time."""
        check_positive_int(n, "n")
        deadline = Deadline.from_user(timeout)
        self._check_open()
        decoder = self._decoder
        if not decoder.at_boundary:
            if decoder.body_buffer() is not None:
                raise IPCError(errno.EINVAL, "read: a message is half received by recv(); finish it with recv() first")
            return decoder.take_buffered(n)
        fd = self._fd
        if deadline.blocking:
            try:
                return os.read(fd, n)
            except OSError as exc:
                raise self._error(exc, "read") from exc
        while True:
            try:
                if self._sock is None:
                    buf = bytearray(n)
                    got = _pipe_nowait(fd, os.preadv, (buf,))
                    return bytes(buf[:got]) if got != n else bytes(buf)
                return self._sock.recv(n, _DONTWAIT)
            except BlockingIOError:
                pass
            except OSError as exc:
                raise self._error(exc, "read") from exc
            if deadline.expired() or not wait_fd(fd, _POLLIN, deadline):
                raise deadline.timeout_error("read")

    # ------------------------------------------------------------------ pickling

    def __reduce__(self) -> tuple:
        """Ends travel to other processes as a duplicate of the descriptor, the way
        ``multiprocessing`` moves its own connections: passed on the command line's
        fd list when a ``spawn``/``forkserver`` child starts, otherwise through
        multiprocessing's resource sharer. (Bytes this end already read ahead and
        buffered stay here.)"""
        self._check_open()
        from multiprocessing import reduction

        return (_rebuild_end, (type(self), reduction.DupFd(self._fd), self._pickle_state()))

    def _pickle_state(self) -> dict:
        return {}

    @classmethod
    def _from_fd(cls, fd: int, state: dict) -> "StreamEnd":
        return cls(fd)


def _rebuild_end(cls: type, dupfd: Any, state: dict) -> StreamEnd:
    return cls._from_fd(dupfd.detach(), state)  # type: ignore[attr-defined,no-any-return]


__all__ = ["CHUNK", "NOWAIT_MECHANISM", "StreamEnd"]
