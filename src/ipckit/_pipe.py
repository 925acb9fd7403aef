"""Pipe: anonymous one-way pipes, duplex pairs and named pipes (FIFOs).

``Pipe()`` is ``pipe2(O_CLOEXEC)``: a reader end and a writer end, both ordinary
*blocking* descriptors, so a child that inherits one (``cat``, a C program) uses it as
it is. ``Pipe.duplex()`` is a ``socketpair(AF_UNIX, SOCK_STREAM)``: two ends that can
both send and receive. All ends share one stream implementation (``_stream``):
framed ``send``/``recv`` for whole messages of any size, raw ``write``/``read`` for
peers that are not ipckit. A reader end has no ``send``, a writer end no ``recv``.

Kernel facts that shape the design: a pipe holds 64 KiB by default (16 pages;
``F_SETPIPE_SZ`` raises it up to ``/proc/sys/fs/pipe-max-size`` for unprivileged
users); writes of at most ``PIPE_BUF`` (4096) bytes are atomic, so small frames from
several writers never interleave and a small timed-out send wrote nothing at all.

Named pipes and who else can reach them
---------------------------------------
A FIFO is a name in a directory that other users may share (``/tmp``). Whoever can
write to it can feed our reader anything; whoever owns it can swap or chmod it. So
``Pipe.fifo`` uses a FIFO only if it belongs to this user and neither its group nor
others may write to it, and it decides that on the *object it opens*, not on the
name: the path is opened with ``O_PATH | O_NOFOLLOW`` (no symlink is followed, no
FIFO or device is opened for I/O, nothing blocks), that descriptor is checked with
``fstat``, and the FIFO is then opened for reading or writing through
``/proc/self/fd/N``, which reaches that same inode whatever happens to the name
meanwhile. (Without /proc the path is opened again with ``O_NOFOLLOW`` and must be
the same inode.) A FIFO ipckit creates is made ``0o600`` and chmod'ed through the
same descriptor (``mkfifo`` applied the umask, which can only narrow it).
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import socket
import stat
from typing import Any, Literal, Optional, Tuple, overload

from ._errors import IPCError, NotFoundError, error_from_errno, translate_oserror
from ._naming import check_positive_int
from ._resource import Resource
from ._socket import UnixStream
from ._stream import PipeIO, ReceiveStream, SendStream, SocketIO, StreamEnd
from ._timeouts import Deadline
from ._wait import WOULD_BLOCK, Backoff, retry

PIPE_BUF = select.PIPE_BUF
_FIFO_MODES = ("r", "w")
_INT_MAX = 2**31 - 1


class _PipeEnd(StreamEnd):
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

    @classmethod
    def _from_fd(cls, fd: int, state: dict) -> "_PipeEnd":
        return cls(PipeIO(fd), **state)


class PipeReader(_PipeEnd, ReceiveStream):
    """The reading end of a pipe: ``recv()``, ``read()``, ``fileno()``, ``close()``."""

    _what = "Pipe reader"


class PipeWriter(_PipeEnd, SendStream):
    """The writing end of a pipe: ``send()``, ``write()``, ``flush()``, ``fileno()``, ``close()``."""

    _what = "Pipe writer"


class DuplexEnd(UnixStream):
    """One end of ``Pipe.duplex()`` (a Unix socketpair): sends and receives, and
    carries descriptors (``send_fds``/``recv_fds``); ``peer_credentials()`` names the
    process that made the pair."""

    _what = "Pipe.duplex end"

    @classmethod
    def _from_fd(cls, fd: int, state: dict) -> "DuplexEnd":
        return cls(SocketIO(socket.socket(fileno=fd)), **state)


def _check_pipe_size(size: object) -> int:
    if isinstance(size, bool) or not isinstance(size, int):
        raise TypeError(f"size must be an int number of bytes, not {type(size).__name__}")
    if not 1 <= size <= _INT_MAX:
        raise ValueError(f"size must be 1..{_INT_MAX} bytes, got {size}")
    return size


class Pipe(Resource):
    """An anonymous one-way pipe: ``reader`` and ``writer`` ends.

    ``p.send()``/``p.recv()`` are ``p.writer.send()``/``p.reader.recv()``. Closing the
    pipe closes both ends; hand an end to a child first (``multiprocessing.Process``
    args under ``fork`` or ``spawn``, or ``subprocess`` with ``pass_fds``) and close your
    copy of the end you do not use, so end-of-stream reaches the reader.

    *size* (optional) sets the capacity with ``F_SETPIPE_SZ``. *max_message_size*
    (optional) is the largest message the reader takes: a frame announcing more
    raises ``MessageTooLarge`` and closes the reader; the writer refuses to send one.
    """

    reader: PipeReader
    writer: PipeWriter

    def __init__(self, *, size: Optional[int] = None, max_message_size: Optional[int] = None) -> None:
        if size is not None:
            _check_pipe_size(size)
        check_positive_int(max_message_size, "max_message_size", allow_none=True)
        with translate_oserror("pipe"):
            r, w = os.pipe()  # O_CLOEXEC: only children we hand them to get them
        self.reader = PipeReader(PipeIO(r), max_message_size=max_message_size)
        self.writer = PipeWriter(PipeIO(w), max_message_size=max_message_size)
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
    def duplex(*, max_message_size: Optional[int] = None) -> Tuple[DuplexEnd, DuplexEnd]:
        """Two connected ends, each able to ``send``/``recv`` (a Unix socketpair).

        They also carry descriptors (``send_fds``/``recv_fds``). *max_message_size*
        limits what each end takes (and so sends) as for ``Pipe()``."""
        check_positive_int(max_message_size, "max_message_size", allow_none=True)
        with translate_oserror("socketpair"):
            a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        return DuplexEnd(SocketIO(a), max_message_size=max_message_size), DuplexEnd(SocketIO(b), max_message_size=max_message_size)

    @overload
    @staticmethod
    def fifo(path: Any, mode: Literal["r"], *, create: bool = ..., timeout: Optional[float] = ...,
             max_message_size: Optional[int] = ...) -> PipeReader: ...

    @overload
    @staticmethod
    def fifo(path: Any, mode: Literal["w"], *, create: bool = ..., timeout: Optional[float] = ...,
             max_message_size: Optional[int] = ...) -> PipeWriter: ...

    @overload
    @staticmethod
    def fifo(path: Any, mode: str, *, create: bool = ..., timeout: Optional[float] = ...,
             max_message_size: Optional[int] = ...) -> StreamEnd: ...

    @staticmethod
    def fifo(path: Any, mode: str, *, create: bool = True, timeout: Optional[float] = None,
             max_message_size: Optional[int] = None) -> StreamEnd:
        """Open the named pipe at *path* for ``mode="r"`` (returns a reader end) or
        ``mode="w"`` (a writer end).

        With *create* a missing FIFO is made with permissions ``0o600`` exactly (the
        umask is not applied). An existing FIFO is used only if it is owned by this
        user and not writable by its group or others; otherwise, or if the path is
        not a FIFO (a symbolic link is never followed), ``ValueError`` says why.
        Without *create* a missing path is ``NotFoundError``. The FIFO stays on disk:
        remove it with ``os.unlink``.

        Opening waits for the other side, as ``open(2)`` does: a reader until some
        process opens it for writing, a writer until some process opens it for
        reading; ``timeout`` bounds that wait (``ipckit.Timeout``), ``None`` waits for
        ever. (A timed open detects the other side by polling every few milliseconds.)
        *max_message_size*: as for ``Pipe()`` (the reader's limit; a writer given it
        refuses larger messages).
        """
        opener = FifoOpener(path, mode, create=create, max_message_size=max_message_size, timeout=timeout)
        with opener:
            if opener.deadline.blocking:
                return opener.open_blocking()
            return retry(opener.attempt, opener.deadline, opener.what, opener.waiter)  # type: ignore[no-any-return]


def _check_fifo_path(path: object) -> Any:
    if not isinstance(path, (str, bytes, os.PathLike)):
        raise TypeError(f"path must be a str, bytes or os.PathLike, not {type(path).__name__}")
    path = os.fspath(path)
    if not path or (b"\0" if isinstance(path, bytes) else "\0") in path:
        raise ValueError(f"path must be a non-empty path without NUL characters, got {path!r}")
    return path


class FifoOpener:
    """``Pipe.fifo``'s open as an attempt and a waiter, for ``_wait.retry`` (and
    ``ipckit.aio``): ``attempt(limit)`` returns the end or ``WOULD_BLOCK`` and never
    blocks; ``waiter`` is a ``Backoff`` (a FIFO gives nothing to wait on until the
    other side shows); ``open_blocking()`` waits in ``open(2)``. Use it as a context
    manager: leaving it releases what an unfinished open holds.

    Construction checks the arguments, creates the FIFO if asked, and opens and checks
    the path's inode (see the module notes); nothing of that blocks."""

    def __init__(self, path: Any, mode: str, *, create: bool = True, max_message_size: Optional[int] = None,
                 timeout: Optional[float] = None) -> None:
        path = _check_fifo_path(path)
        if not isinstance(mode, str):
            raise TypeError(f"mode must be 'r' or 'w', not {type(mode).__name__}")
        if mode not in _FIFO_MODES:
            raise ValueError(f"mode must be 'r' or 'w', got {mode!r}")
        if not isinstance(create, bool):
            raise TypeError(f"create must be a bool, not {type(create).__name__}")
        check_positive_int(max_message_size, "max_message_size", allow_none=True)
        self.deadline = Deadline.from_user(timeout)
        self.path, self.mode, self._max = path, mode, max_message_size
        self.what = "opening the FIFO for reading (no writer)" if mode == "r" else "opening the FIFO for writing (no reader)"
        self.waiter = Backoff(0.001, 0.02)
        self._io_fd = -1  # the timed reader's descriptor, opened by the first attempt
        self._path_fd = _open_checked_fifo(path, create)

    def __enter__(self) -> "FifoOpener":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for name in ("_path_fd", "_io_fd"):
            fd = getattr(self, name)
            setattr(self, name, -1)
            if fd >= 0:
                os.close(fd)

    def _reopen(self, flags: int) -> int:
        """Open the checked inode for I/O: through /proc, else the path again."""
        flags |= os.O_CLOEXEC
        if os.path.isdir("/proc/self/fd"):
            return self._open(f"/proc/self/fd/{self._path_fd}", flags)
        fd = self._open(self.path, flags | os.O_NOFOLLOW)
        opened, checked = os.fstat(fd), os.fstat(self._path_fd)
        if (opened.st_dev, opened.st_ino) != (checked.st_dev, checked.st_ino):
            os.close(fd)
            raise ValueError(f"path {os.fsdecode(self.path)!r} was replaced while it was being opened")
        return fd

    def _open(self, target: Any, flags: int) -> int:
        try:
            return os.open(target, flags)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # a timed writer's "no reader yet"
                raise
            what = "open FIFO for reading" if self.mode == "r" else "open FIFO for writing"
            raise error_from_errno(exc.errno, what, self.path) from exc

    def _end(self, fd: int, probed: bytes = b"") -> StreamEnd:
        if self.mode == "w":
            return PipeWriter(PipeIO(fd), max_message_size=self._max)
        reader = PipeReader(PipeIO(fd), max_message_size=self._max)
        if probed:
            reader._decoder.feed(probed)  # the byte read while probing for a writer
        return reader

    def open_blocking(self) -> StreamEnd:
        fd = self._reopen(os.O_RDONLY if self.mode == "r" else os.O_WRONLY)
        return self._end(fd)

    def attempt(self, limit: Deadline) -> Any:
        if self.mode == "w":
            # O_NONBLOCK|O_WRONLY fails with ENXIO until a reader has it open.
            try:
                fd = self._reopen(os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                if exc.errno != errno.ENXIO:
                    raise
                return WOULD_BLOCK
            os.set_blocking(fd, True)
            return self._end(fd)
        # O_NONBLOCK|O_RDONLY always succeeds, even with no writer. A writer waiting in
        # open() is released by it. Whether a writer is there shows in a non-blocking
        # read: EAGAIN (writer, no data yet), data (writer), or 0 = EOF (no writer yet).
        # A byte read while probing goes first into the end's buffer.
        if self._io_fd < 0:
            self._io_fd = self._reopen(os.O_RDONLY | os.O_NONBLOCK)
        try:
            probed = os.read(self._io_fd, 1)
        except BlockingIOError:
            probed = b""
        else:
            if not probed:
                return WOULD_BLOCK
        fd, self._io_fd = self._io_fd, -1
        os.set_blocking(fd, True)
        return self._end(fd, probed)


def _open_checked_fifo(path: Any, create: bool) -> int:
    """An ``O_PATH`` descriptor of the FIFO at *path*, made if missing and *create*,
    that passed the checks of the module notes."""
    shown = os.fsdecode(path)
    for _ in range(5):  # a FIFO removed by someone else between mkfifo and open: make it again
        created = False
        if create:
            try:
                os.mkfifo(path, 0o600)
                created = True
            except FileExistsError:
                pass
            except OSError as exc:
                raise error_from_errno(exc.errno, "mkfifo", path) from exc
        try:
            fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            if create:
                continue
            raise NotFoundError(errno.ENOENT, f"no FIFO at {shown!r} (create=False)", path) from None
        except OSError as exc:
            raise error_from_errno(exc.errno, "open", path) from exc
        try:
            st = os.fstat(fd)
            _check_fifo(st, shown)
            if created and stat.S_IMODE(st.st_mode) != 0o600:
                # mkfifo applied the umask; the contract is 0o600 exactly.
                try:
                    os.chmod(f"/proc/self/fd/{fd}", 0o600)
                except FileNotFoundError:  # no /proc
                    os.chmod(path, 0o600)
        except BaseException:
            os.close(fd)
            raise
        return fd
    raise IPCError(errno.ENOENT, f"the FIFO at {shown!r} kept disappearing while it was being opened", path)


def _check_fifo(st: os.stat_result, shown: str) -> None:
    if stat.S_ISLNK(st.st_mode):
        raise ValueError(f"path {shown!r} is a symbolic link: a FIFO is never opened through one")
    if not stat.S_ISFIFO(st.st_mode):
        raise ValueError(f"path {shown!r} exists and is not a FIFO")
    if st.st_uid != os.geteuid():
        raise ValueError(f"FIFO {shown!r} is owned by uid {st.st_uid}, not by this user (uid {os.geteuid()}): not using it")
    if st.st_mode & 0o022:
        who = " and ".join(w for w, bit in (("its group", 0o020), ("others", 0o002)) if st.st_mode & bit)
        raise ValueError(
            f"FIFO {shown!r} is writable by {who} (mode {oct(stat.S_IMODE(st.st_mode))}): "
            "anyone there could write into it; not using it"
        )


__all__ = ["DuplexEnd", "FifoOpener", "PIPE_BUF", "Pipe", "PipeReader", "PipeWriter"]
