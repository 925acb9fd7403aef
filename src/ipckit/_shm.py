"""SharedMemory: one class over POSIX shm, SysV shm, memory-mapped files and memfds.

``SharedMemory.create(...)`` / ``open(...)`` validate what every backend shares and
return an instance of the backend's subclass (``isinstance(m, SharedMemory)`` holds)::

    backend="posix"  ->  PosixSharedMemory   shm_open + mmap      name "/jobs" (a file in /dev/shm)
    backend="sysv"   ->  SysvSharedMemory    shmget + shmat       integer key (_shm_sysv.py)
    backend="file"   ->  FileSharedMemory    open + mmap          a filesystem path
    backend="memfd"  ->  MemfdSharedMemory   memfd_create + mmap  no name: SharedMemory.anonymous()

Sizing, pages and the /dev/shm trap
-----------------------------------
A POSIX segment is a file on a tmpfs (``/dev/shm``); a memfd is a file on an
internal tmpfs. Making one of size N with ``ftruncate(fd, N)`` only sets the file's
length: tmpfs allocates the pages lazily, on first touch. If the filesystem is full
(its ``size=`` mount option, 50 % of RAM by default, and much less in containers,
where Docker's default /dev/shm is 64 MiB) the first touch of a page that cannot be
allocated does not fail a system call -- the kernel sends SIGBUS and the process
dies, possibly long after create() "succeeded", possibly in another process.
multiprocessing.shared_memory has exactly this trap. ipckit sizes new segments with
``posix_fallocate``, which allocates every page up front, so a full /dev/shm is an
``IPCError(ENOSPC)`` from ``create()`` and never a SIGBUS later. The price is that
the memory is committed at once (a sparse 100 GiB segment is not possible; use a
file backend on a real filesystem for that) and that creating a large segment
costs the time to zero it (about 0.3 s per GiB measured here).

mmap maps whole pages. ``size`` is what the caller asked for and ``buf`` is exactly
that long; the tail of the last page exists in memory but is not exposed. ``open``
reports the real size: ``fstat().st_size`` for files and ``shm_segsz`` (the size
given to ``shmget``, not page-rounded) for SysV. A file that another process
truncates below the mapped size makes access to the lost pages SIGBUS: nothing in
user space can prevent that, so never shrink a segment others have mapped.

Close, views and why no stale view can crash
--------------------------------------------
``close()`` detaches *this handle*: ``m.buf`` is released (using a reference to it
raises ``ValueError: operation forbidden on released memoryview``) and every
method raises ``ClosedError``. Views derived from the buffer -- slices of
``m.buf``, numpy arrays, ``memoryview(m.buf)`` -- hold their own reference to the
mapping (the ``mmap`` object, or for SysV a cffi pointer whose finaliser is
``shmdt``), so the memory is unmapped only when the last of them is garbage
collected. A stale view therefore keeps working on memory that is still mapped; it
can never touch unmapped memory. ``close()`` never raises for live views (unlike
``mmap.close()`` and multiprocessing's ``BufferError: cannot close exported
pointers exist``); drop the views if you need the address space back at once.

Ownership: nothing is ever unlinked behind your back. Opening a segment does not
register it anywhere (multiprocessing.shared_memory before 3.13 registers every
segment it opens with a resource tracker, which unlinks it when the opener exits);
only an explicit ``unlink()`` removes a name. The creator is expected to unlink.
"""

from __future__ import annotations

import errno
import mmap
import os
import stat
from typing import Any, Callable, Optional

from . import _ffi
from ._data import byte_view
from ._errors import IPCError, error_from_errno, translate_oserror
from ._naming import backend_class, check_mode, check_positive_int, check_posix_name
from ._resource import FdHolder, Resource

_BACKEND_CLASSES = {
    "posix": ("._shm", "PosixSharedMemory"),
    "sysv": ("._shm_sysv", "SysvSharedMemory"),
    "file": ("._shm", "FileSharedMemory"),
    "memfd": ("._shm", "MemfdSharedMemory"),
}


def _backend_class(backend: object) -> "type[SharedMemory]":
    return backend_class(_BACKEND_CLASSES, backend)  # type: ignore[no-any-return]


def _check_index(value: object, argument: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{argument} must be an int, not {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{argument} must be >= 0, got {value}")
    return value


def _reopen(backend: str, name: Any) -> "SharedMemory":
    """Unpickling: open the same segment by name in the receiving process."""
    return SharedMemory.open(name, backend=backend)


class SharedMemory(Resource):
    """A segment of memory shared between processes. See docs/reference/contract.md, "SharedMemory".

    Use ``create()``, ``open()``, ``anonymous()`` or ``from_fd()``; the class is not
    instantiated directly. ``m.buf`` is a writable zero-copy ``memoryview`` of the
    whole segment. ``close()`` detaches this handle (views derived from ``buf`` keep
    the memory mapped until they die; see the module docstring); ``unlink()``
    removes the name, whether or not this handle is closed. Pickling a named segment
    (e.g. passing it to a ``spawn`` child) opens it by name on the other side.
    """

    backend: str = ""
    name: Any = None
    size: int = 0
    _buf: Optional[memoryview] = None

    # --- constructors --------------------------------------------------------------

    @classmethod
    def create(cls, name: Any, size: int, *, mode: int = 0o600, backend: str = "posix") -> "SharedMemory":
        """Create a new segment of *size* bytes, zero-filled, with permission *mode*
        exactly (the umask does not apply). ``ExistsError`` if *name* is taken;
        ``IPCError(ENOSPC)`` if there is no room for it (nothing is left behind)."""
        impl = _backend_class(backend)
        if impl is MemfdSharedMemory:
            raise ValueError("backend='memfd' segments have no name: use SharedMemory.anonymous(size)")
        check_positive_int(size, "size")
        return impl._create(name, size, check_mode(mode))

    @classmethod
    def open(cls, name: Any, *, backend: str = "posix") -> "SharedMemory":
        """Map an existing segment; ``size`` is its real size. ``NotFoundError`` if
        there is none by *name*. Opening never schedules the segment for removal."""
        impl = _backend_class(backend)
        if impl is MemfdSharedMemory:
            raise ValueError("backend='memfd' segments have no name: map a received fd with SharedMemory.from_fd(fd)")
        return impl._open(name)

    @classmethod
    def anonymous(cls, size: int, *, label: str = "ipckit") -> "SharedMemory":
        """A nameless segment (``memfd_create``): nothing to unlink, nothing to leak.

        Share it by handing ``m.fileno()`` to another process: over a Unix socket
        (``send_fds``), by inheritance (``fork``, ``pass_fds``), or by pickling the
        object for a ``multiprocessing`` child. *label* only shows in
        ``/proc/PID/fd`` and ``/proc/PID/maps`` (as ``/memfd:LABEL``)."""
        return MemfdSharedMemory._anonymous(check_positive_int(size, "size"), label)

    @classmethod
    def from_fd(cls, fd: int, *, size: Optional[int] = None) -> "SharedMemory":
        """Map a shareable file descriptor (typically a memfd received with
        ``recv_fds``). The object takes ownership of *fd* and closes it on
        ``close()``. *size* defaults to the file's size."""
        return MemfdSharedMemory._from_fd(fd, size)

    # --- data ----------------------------------------------------------------------

    @property
    def buf(self) -> memoryview:
        """A writable memoryview of the whole segment (no copy). ``ClosedError`` after close."""
        self._check_open()
        assert self._buf is not None
        return self._buf

    def write(self, data: Any, offset: int = 0) -> int:
        """Copy *data* (any bytes-like) into the segment at *offset*; return its length.
        ``ValueError`` (and nothing written) if it would run past the end."""
        view = byte_view(data)
        _check_index(offset, "offset")
        buf = self.buf
        end = offset + len(view)
        if end > self.size:
            raise ValueError(f"writing {len(view)} bytes at offset {offset} would run past the end of the {self.size}-byte segment")
        buf[offset:end] = view
        return len(view)

    def read(self, n: int = -1, offset: int = 0) -> bytes:
        """A copy of *n* bytes at *offset* (``n=-1``: up to the end). ``ValueError``
        if the range runs past the end of the segment."""
        if isinstance(n, bool) or not isinstance(n, int):
            raise TypeError(f"n must be an int, not {type(n).__name__}")
        if n < -1:
            raise ValueError(f"n must be >= 0, or -1 for 'to the end', got {n}")
        _check_index(offset, "offset")
        buf = self.buf
        if offset > self.size:
            raise ValueError(f"offset {offset} is past the end of the {self.size}-byte segment")
        end = self.size if n == -1 else offset + n
        if end > self.size:
            raise ValueError(f"reading {n} bytes at offset {offset} would run past the end of the {self.size}-byte segment")
        return bytes(buf[offset:end])

    # --- lifetime ------------------------------------------------------------------

    def _close(self) -> None:
        buf, self._buf = self._buf, None
        if buf is not None:
            try:
                buf.release()
            except BufferError:
                pass  # numpy arrays etc. export it: they keep the mapping alive
        self._detach()

    def _detach(self) -> None:
        """Backend: drop this handle's reference to the mapping (and its fd)."""

    def unlink(self) -> None:
        """Remove the segment's name (``NotFoundError`` if it is already gone).
        Mappings that exist stay valid until they are closed."""
        raise NotImplementedError

    # --- what each backend implements ----------------------------------------------

    @classmethod
    def _create(cls, name: Any, size: int, mode: int) -> "SharedMemory":
        raise NotImplementedError

    @classmethod
    def _open(cls, name: Any) -> "SharedMemory":
        raise NotImplementedError

    def __reduce__(self) -> tuple:
        if self.name is None:
            raise TypeError(f"a {self.backend} SharedMemory without a name cannot be pickled")
        return (_reopen, (self.backend, self.name))

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<ipckit.SharedMemory {self.name!r} backend={self.backend!r} size={self.size} {state}>"


# ------------------------------------------------------------------ fd + mmap backends


def _allocate(fd: int, size: int, what: str) -> None:
    """Give a new file *size* bytes of real pages now (see "the /dev/shm trap")."""
    try:
        os.posix_fallocate(fd, 0, size)
        return
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise IPCError(
                errno.ENOSPC,
                f"{what}: no room for {size} bytes (a full /dev/shm or filesystem; "
                "see `df -h /dev/shm` and the size= mount option)",
            ) from exc
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENODEV):
            raise error_from_errno(exc.errno, what) from exc
    with translate_oserror(what):  # a filesystem without fallocate: sparse is all we can do
        os.ftruncate(fd, size)


class _MappedSharedMemory(SharedMemory):
    """A segment that is a file descriptor mapped with mmap (posix, file, memfd)."""

    _fd: FdHolder
    _mmap: Optional[mmap.mmap] = None

    def _setup(self, name: Any, fd: int, size: int) -> None:
        """Map *fd*, taking ownership of it (closed here if mapping fails)."""
        holder = FdHolder(fd)
        try:
            with translate_oserror("mmap"):
                mm = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        except BaseException:
            holder.close()
            raise
        self.name = name
        self.size = size
        self._fd = holder
        self._mmap = mm
        self._buf = memoryview(mm)
        self._closed = False

    def fileno(self) -> int:
        """The segment's file descriptor (e.g. to hand over with ``send_fds``)."""
        self._check_open()
        return self._fd.fd

    def _detach(self) -> None:
        mm, self._mmap = self._mmap, None
        if mm is not None:
            try:
                mm.close()
            except BufferError:
                pass  # live views: unmapped when the last one is garbage collected
        self._fd.close()

    @classmethod
    def _from_created(cls, name: Any, fd: int, size: int, mode: int, what: str, remove: Callable[[], Any]) -> "SharedMemory":
        """Finish a create(): exact *mode*, *size* bytes reserved, mapped. On any
        failure the descriptor is closed and *remove* takes the new name away again."""
        try:
            with translate_oserror(what):
                os.fchmod(fd, mode)  # exactly *mode*: the open applied the umask
            _allocate(fd, size, what)
        except BaseException:
            os.close(fd)
            remove()
            raise
        self = cls.__new__(cls)
        try:
            self._setup(name, fd, size)
        except BaseException:
            remove()
            raise
        return self

    @classmethod
    def _from_opened(cls, name: Any, fd: int, what: str) -> "SharedMemory":
        """Finish an open(): map the whole of an existing segment."""
        try:
            size = cls._size_of(fd, what)
        except BaseException:
            os.close(fd)
            raise
        self = cls.__new__(cls)
        self._setup(name, fd, size)
        return self

    @staticmethod
    def _size_of(fd: int, what: str) -> int:
        with translate_oserror(what):
            st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"{what}: not a regular file or shared-memory object")
        if st.st_size == 0:
            raise IPCError(errno.EINVAL, f"{what}: the segment has size 0 (its creator has not sized it yet)")
        return st.st_size


class PosixSharedMemory(_MappedSharedMemory):
    """``backend="posix"``: ``shm_open`` (a file in /dev/shm) mapped with mmap."""

    backend = "posix"

    @classmethod
    def _create(cls, name: Any, size: int, mode: int) -> "SharedMemory":
        name = check_posix_name(name)
        encoded = name.encode()
        what = f"shm_open({name!r})"
        fd = _ffi.check(_ffi.lib.ipckit_shm_open(encoded, os.O_RDWR | os.O_CREAT | os.O_EXCL, mode), what)
        return cls._from_created(name, fd, size, mode, what, lambda: _ffi.lib.ipckit_shm_unlink(encoded))

    @classmethod
    def _open(cls, name: Any) -> "SharedMemory":
        name = check_posix_name(name)
        what = f"shm_open({name!r})"
        fd = _ffi.check(_ffi.lib.ipckit_shm_open(name.encode(), os.O_RDWR, 0), what)
        return cls._from_opened(name, fd, what)

    def unlink(self) -> None:
        _ffi.check(_ffi.lib.ipckit_shm_unlink(self.name.encode()), f"shm_unlink({self.name!r})")


def _check_path(path: object) -> str:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"name must be a filesystem path (str or os.PathLike) for backend='file', not {type(path).__name__}")
    text = os.fspath(path)
    if not isinstance(text, str):
        raise TypeError("name must be a str path for backend='file', not bytes")
    if not text:
        raise ValueError("name must be a non-empty path for backend='file'")
    if "\0" in text:
        raise ValueError(f"name may not contain a NUL character, got {text!r}")
    return text


class FileSharedMemory(_MappedSharedMemory):
    """``backend="file"``: a regular file mapped with mmap (the memory-mapped-file
    style of IPC; the data also ends up on disk)."""

    backend = "file"

    @classmethod
    def _create(cls, name: Any, size: int, mode: int) -> "SharedMemory":
        path = _check_path(name)
        what = f"open({path!r})"
        with translate_oserror(what, filename=path):
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, mode)
        return cls._from_created(path, fd, size, mode, what, lambda: os.unlink(path))

    @classmethod
    def _open(cls, name: Any) -> "SharedMemory":
        path = _check_path(name)
        what = f"open({path!r})"
        with translate_oserror(what, filename=path):
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        return cls._from_opened(path, fd, what)

    def unlink(self) -> None:
        with translate_oserror(f"unlink({self.name!r})", filename=self.name):
            os.unlink(self.name)


def _from_dup_fd(dupfd: Any, size: int) -> "SharedMemory":
    """Unpickling a memfd segment: multiprocessing's DupFd brought us the fd."""
    return MemfdSharedMemory._from_fd(dupfd.detach(), size)


class MemfdSharedMemory(_MappedSharedMemory):
    """``backend="memfd"``: an anonymous ``memfd_create`` segment, shared by its fd."""

    backend = "memfd"

    @classmethod
    def _anonymous(cls, size: int, label: str) -> "SharedMemory":
        if not isinstance(label, str):
            raise TypeError(f"label must be a str, not {type(label).__name__}")
        if "\0" in label or len(label.encode()) > 249:
            raise ValueError("label must have no NUL and be at most 249 bytes")
        with translate_oserror("memfd_create"):
            fd = os.memfd_create(label, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            _allocate(fd, size, "memfd_create")
        except BaseException:
            os.close(fd)
            raise
        self = cls.__new__(cls)
        self._setup(None, fd, size)
        return self

    @classmethod
    def _from_fd(cls, fd: object, size: Optional[int]) -> "SharedMemory":
        if isinstance(fd, bool) or not isinstance(fd, int):
            raise TypeError(f"fd must be an int file descriptor, not {type(fd).__name__}")
        if fd < 0:
            raise ValueError(f"fd must be >= 0, got {fd}")
        check_positive_int(size, "size", allow_none=True)
        real = cls._size_of(fd, "from_fd")
        if size is None:
            size = real
        elif size > real:
            raise ValueError(f"size {size} is larger than the file behind fd {fd} ({real} bytes)")
        self = cls.__new__(cls)
        self._setup(None, fd, size)
        return self

    def unlink(self) -> None:
        """A memfd has no name: nothing to remove. The memory is freed when the last
        fd and mapping of it are closed, in every process."""

    def __reduce__(self) -> tuple:
        from multiprocessing.reduction import DupFd

        self._check_open()
        # DupFd passes the fd to a spawn child being started, or through
        # multiprocessing's fd-sharing server otherwise (e.g. over a Queue).
        return (_from_dup_fd, (DupFd(self._fd.fd), self.size))


__all__ = ["SharedMemory"]
