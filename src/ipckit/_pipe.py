"""Pipe: anonymous one-way pipes, duplex pairs and named pipes (FIFOs).

``Pipe()`` is ``pipe2(O_CLOEXEC)``: a reader end and a writer end, both ordinary
*blocking* descriptors, so a child that inherits one (``cat``, a C program) uses it as
it is. ``Pipe.duplex()`` is a ``socketpair(AF_UNIX, SOCK_STREAM)``: two ends that can
both send and receive. All ends share one stream implementation (``_stream``):
framed ``send``/``recv`` for whole messages of any size, raw ``write``/``read`` for
peers that are not ipckit.

Kernel facts that shape the design: a pipe holds 64 KiB by default (16 pages;
``F_SETPIPE_SZ`` raises it up to ``/proc/sys/fs/pipe-max-size`` for unprivileged
users); writes of at most ``PIPE_BUF`` (4096) bytes are atomic, so small frames from
several writers never interleave and a small timed-out send wrote nothing at all.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import socket
import stat
import time
from typing import Any, Optional, Tuple

from ._errors import IPCError, NotFoundError, error_from_errno, translate_oserror
from ._resource import Resource
from ._stream import StreamEnd
from ._timeouts import Deadline

PIPE_BUF = select.PIPE_BUF
_FIFO_MODES = ("r", "w")


class _PipeEndBase(StreamEnd):
    @property
    def pipe_size(self) -> int:
        """The pipe's capacity in bytes (``F_GETPIPE_SZ``). Setting it asks the kernel
        for at least that much (``F_SETPIPE_SZ``; rounded up to a power-of-two number
        of pages; over ``/proc/sys/fs/pipe-max-size`` needs CAP_SYS_RESOURCE)."""
        self._check_open()
        with translate_oserror("F_GETPIPE_SZ"):
            return fcntl.fcntl(self._fd, fcntl.F_GETPIPE_SZ)

    @pipe_size.setter
    def pipe_size(self, size: int) -> None:
        _check_pipe_size(size)
        self._check_open()
        with translate_oserror("F_SETPIPE_SZ"):
            fcntl.fcntl(self._fd, fcntl.F_SETPIPE_SZ, size)

    @property
    def available(self) -> int:
        """Bytes waiting in the pipe right now (``FIONREAD``)."""
        import array
        import termios

        self._check_open()
        buf = array.array("i", [0])
        with translate_oserror("FIONREAD"):
            fcntl.ioctl(self._fd, termios.FIONREAD, buf, True)
        return buf[0]


class PipeReader(_PipeEndBase):
    """The reading end of a pipe: ``recv()``, ``read()``, ``fileno()``, ``close()``."""

    _what = "Pipe reader"

    def send(self, data: Any, *, timeout: Optional[float] = None) -> None:
        self._check_open()  # a closed end says so first, whichever direction
        raise IPCError(errno.EBADF, "send() on the reader end of a pipe: send on its writer")

    def write(self, data: Any, *, timeout: Optional[float] = None) -> int:
        self._check_open()
        raise IPCError(errno.EBADF, "write() on the reader end of a pipe: write to its writer")

    def flush(self, *, timeout: Optional[float] = None) -> None:
        self._check_open()


class PipeWriter(_PipeEndBase):
    """The writing end of a pipe: ``send()``, ``write()``, ``fileno()``, ``close()``."""

    _what = "Pipe writer"

    def recv(self, *, timeout: Optional[float] = None) -> bytes:
        self._check_open()
        raise IPCError(errno.EBADF, "recv() on the writer end of a pipe: receive from its reader")

    def read(self, n: int = 0, *, timeout: Optional[float] = None) -> bytes:
        self._check_open()
        raise IPCError(errno.EBADF, "read() on the writer end of a pipe: read from its reader")


class DuplexEnd(StreamEnd):
    """One end of ``Pipe.duplex()`` (a Unix socketpair): sends and receives."""

    _what = "Pipe.duplex end"

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(sock.fileno(), sock)

    @classmethod
    def _from_fd(cls, fd: int, state: dict) -> "DuplexEnd":
        return cls(socket.socket(fileno=fd))

    def send_fds(self, data: Any, fds: Any, *, timeout: Optional[float] = None) -> int:
        """Send raw bytes with file descriptors attached (``SCM_RIGHTS``); see ``Socket.send_fds``."""
        from ._socket import _send_fds

        return _send_fds(self, data, fds, timeout)

    def recv_fds(self, maxfds: int, *, bufsize: int = 65536, timeout: Optional[float] = None) -> Tuple[bytes, list]:
        """Receive raw bytes and up to *maxfds* descriptors; see ``Socket.recv_fds``."""
        from ._socket import _recv_fds

        return _recv_fds(self, maxfds, bufsize, timeout)


def _check_pipe_size(size: object) -> int:
    if isinstance(size, bool) or not isinstance(size, int):
        raise TypeError(f"size must be an int number of bytes, not {type(size).__name__}")
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    return size


class Pipe(Resource):
    """An anonymous one-way pipe: ``reader`` and ``writer`` ends.

    ``p.send()``/``p.recv()`` are ``p.writer.send()``/``p.reader.recv()``. Closing the
    pipe closes both ends; hand an end to a child first (``multiprocessing.Process``
    args under ``fork`` or ``spawn``, or ``subprocess`` with ``pass_fds``) and close your
    copy of the end you do not use, so end-of-stream reaches the reader.

    *size* (optional) sets the capacity with ``F_SETPIPE_SZ``.
    """

    reader: PipeReader
    writer: PipeWriter

    def __init__(self, *, size: Optional[int] = None) -> None:
        if size is not None:
            _check_pipe_size(size)
        with translate_oserror("pipe"):
            r, w = os.pipe()  # O_CLOEXEC: only children we hand them to get them
        self.reader = PipeReader(r)
        self.writer = PipeWriter(w)
        self._closed = False
        if size is not None:
            try:
                self.writer.pipe_size = size
            except BaseException:
                self.close()
                raise

    @classmethod
    def _from_ends(cls, reader: PipeReader, writer: PipeWriter) -> "Pipe":
        self = cls.__new__(cls)
        self.reader, self.writer = reader, writer
        self._closed = False
        return self

    def __reduce__(self) -> tuple:
        self._check_open()
        return (Pipe._from_ends, (self.reader, self.writer))

    def _close(self) -> None:
        self.reader.close()
        self.writer.close()

    def __del__(self) -> None:
        # The ends close themselves when they go; a Pipe dropped while its ends are
        # still in use (``w = Pipe().writer``) must not close them.
        pass

    def send(self, data: Any, *, timeout: Optional[float] = None) -> None:
        """``self.writer.send(data, timeout=timeout)``."""
        self.writer.send(data, timeout=timeout)

    def recv(self, *, timeout: Optional[float] = None) -> bytes:
        """``self.reader.recv(timeout=timeout)``."""
        return self.reader.recv(timeout=timeout)

    def __repr__(self) -> str:
        if self._closed:
            return "<ipckit.Pipe closed>"
        return f"<ipckit.Pipe reader={self.reader._fd} writer={self.writer._fd}>"

    PIPE_BUF = PIPE_BUF

    @staticmethod
    def duplex() -> Tuple[DuplexEnd, DuplexEnd]:
        """Two connected ends, each able to ``send``/``recv`` (a Unix socketpair).

        They also carry descriptors (``send_fds``/``recv_fds``)."""
        with translate_oserror("socketpair"):
            a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        return DuplexEnd(a), DuplexEnd(b)

    @staticmethod
    def fifo(path: Any, mode: str, *, create: bool = True, timeout: Optional[float] = None) -> StreamEnd:
        """Open the named pipe at *path* for ``mode="r"`` (returns a reader end) or
        ``mode="w"`` (a writer end).

        With *create* a missing FIFO is made with permissions ``0o600`` exactly (the
        umask is not applied); an existing FIFO is used as it is; an existing path that
        is not a FIFO is a ``ValueError``. Without *create* a missing path is
        ``NotFoundError``. The FIFO stays on disk: remove it with ``os.unlink``.

        Opening waits for the other side, as ``open(2)`` does: a reader until some
        process opens it for writing, a writer until some process opens it for
        reading; ``timeout`` bounds that wait (``ipckit.Timeout``), ``None`` waits for
        ever. (A timed reader detects the writer by polling every few milliseconds.)
        """
        if not isinstance(path, (str, bytes, os.PathLike)):
            raise TypeError(f"path must be a str, bytes or os.PathLike, not {type(path).__name__}")
        path = os.fspath(path)
        if not path or (b"\0" if isinstance(path, bytes) else "\0") in path:
            raise ValueError(f"path must be a non-empty path without NUL characters, got {path!r}")
        if not isinstance(mode, str):
            raise TypeError(f"mode must be 'r' or 'w', not {type(mode).__name__}")
        if mode not in _FIFO_MODES:
            raise ValueError(f"mode must be 'r' or 'w', got {mode!r}")
        if not isinstance(create, bool):
            raise TypeError(f"create must be a bool, not {type(create).__name__}")
        deadline = Deadline.from_user(timeout)
        _ensure_fifo(path, create)
        if mode == "r":
            fd, probed = _open_fifo_reader(path, deadline)
            reader = PipeReader(fd)
            if probed:
                reader._decoder.feed(probed)  # the byte read while probing for a writer
            return reader
        return PipeWriter(_open_fifo_writer(path, deadline))


def _ensure_fifo(path: Any, create: bool) -> None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if not create:
            raise NotFoundError(errno.ENOENT, f"no FIFO at {os.fsdecode(path)!r} (create=False)", path) from None
        try:
            os.mkfifo(path, 0o600)
        except FileExistsError:
            return _ensure_fifo(path, create)  # someone made it meanwhile: check what it is
        except OSError as exc:
            raise error_from_errno(exc.errno, "mkfifo", path) from exc
        # mkfifo applies the umask; the contract is 0o600 exactly.
        os.chmod(path, 0o600)
        return
    except OSError as exc:
        raise error_from_errno(exc.errno, "stat", path) from exc
    if not stat.S_ISFIFO(st.st_mode):
        raise ValueError(f"path {os.fsdecode(path)!r} exists and is not a FIFO")


def _open_fifo_writer(path: Any, deadline: Deadline) -> int:
    if deadline.blocking:
        with translate_oserror("open FIFO for writing", filename=path):
            return os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    # O_NONBLOCK|O_WRONLY fails with ENXIO until a reader has it open: retry until then.
    pause = 0.001
    while True:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno != errno.ENXIO:
                raise error_from_errno(exc.errno, "open FIFO for writing", path) from exc
        else:
            os.set_blocking(fd, True)
            return fd
        if deadline.expired():
            raise deadline.timeout_error("opening the FIFO for writing (no reader)")
        left = deadline.remaining()
        time.sleep(min(pause, left) if left is not None else pause)
        pause = min(pause * 2, 0.02)


def _open_fifo_reader(path: Any, deadline: Deadline) -> Tuple[int, bytes]:
    if deadline.blocking:
        with translate_oserror("open FIFO for reading", filename=path):
            return os.open(path, os.O_RDONLY | os.O_CLOEXEC), b""
    # O_NONBLOCK|O_RDONLY always succeeds, even with no writer. A writer waiting in
    # open() is released by it. Whether a writer is there shows in a non-blocking
    # read: EAGAIN (writer, no data yet), data (writer), or 0 = EOF (no writer yet).
    # A byte read while probing is handed back to go first into the end's buffer.
    with translate_oserror("open FIFO for reading", filename=path):
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        pause = 0.001
        while True:
            try:
                data = os.read(fd, 1)
            except BlockingIOError:
                os.set_blocking(fd, True)
                return fd, b""
            if data:
                os.set_blocking(fd, True)
                return fd, data
            if deadline.expired():
                raise deadline.timeout_error("opening the FIFO for reading (no writer)")
            left = deadline.remaining()
            time.sleep(min(pause, left) if left is not None else pause)
            pause = min(pause * 2, 0.02)
    except BaseException:
        os.close(fd)
        raise


__all__ = ["DuplexEnd", "PIPE_BUF", "Pipe", "PipeReader", "PipeWriter"]
