"""SharedMemory: one class over POSIX shm, SysV shm, memory-mapped files and memfds.

``SharedMemory.create(...)`` / ``open(...)`` validate what every backend shares and
return an instance of the backend's subclass (``isinstance(m, SharedMemory)`` holds)::

    backend="posix"  ->  _shm_posix.PosixSharedMemory   shm_open + mmap      name "/jobs" (a file in /dev/shm)
    backend="sysv"   ->  _shm_sysv.SysvSharedMemory     shmget + shmat       integer key
    backend="file"   ->  _shm_file.FileSharedMemory     open + mmap          a filesystem path
    backend="memfd"  ->  _shm_memfd.MemfdSharedMemory   memfd_create + mmap  no name: SharedMemory.anonymous()

The three that map a file descriptor share ``_shm_mapped.MappedSharedMemory``
(sizing with posix_fallocate, mapping, the fd, protection against a shrunk file).

The contract a backend subclass implements
------------------------------------------

* ``_create(name, size, mode)`` / ``_open(name)`` (classmethods; *size* >= 1 and
  *mode* checked here, *name* by the backend); ``_open_id(id)`` for SysV.
* ``unlink()``, ``_detach()`` (drop this handle's mapping), and ``_read`` /
  ``_write`` when the plain copy through ``buf`` is not safe (a file another
  process may shrink: see ``_shm_mapped``).

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
truncates below the mapped size makes every access to the lost pages SIGBUS, in
every process that maps it: nothing in user space can prevent that for ``buf``, so
never shrink a segment others have mapped. ipckit's own ``read``/``write`` never
fault on it (they go through the descriptor unless the file is sealed against
shrinking: ``CorruptError`` instead), and memfd segments are sealed
(``F_SEAL_SHRINK``) whenever the kernel lets us: see ``_shm_mapped``.

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

import sys
from typing import Any, Optional

from ._data import byte_view
from ._naming import backend_class, check_mode, check_open_target, check_positive_int
from ._resource import Resource

_BACKEND_CLASSES = {
    "posix": ("._shm_posix", "PosixSharedMemory"),
    "sysv": ("._shm_sysv", "SysvSharedMemory"),
    "file": ("._shm_file", "FileSharedMemory"),
    "memfd": ("._shm_memfd", "MemfdSharedMemory"),
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
        if backend == "memfd":
            raise ValueError("backend='memfd' segments have no name: use SharedMemory.anonymous(size)")
        check_positive_int(size, "size")
        if size > sys.maxsize:
            raise ValueError(f"size must be <= {sys.maxsize} (what can be mapped), got {size}")
        return impl._create(name, size, check_mode(mode))

    @classmethod
    def open(cls, name: Any = None, *, backend: str = "posix", id: Optional[int] = None) -> "SharedMemory":
        """Map an existing segment; ``size`` is its real size. ``NotFoundError`` if
        there is none by *name*. Opening never schedules the segment for removal.

        ``id=`` (SysV only) attaches the segment with that shmid instead of looking
        up a key: ``SharedMemory.open(id=m.id, backend="sysv")``."""
        impl = _backend_class(backend)
        if backend == "memfd":
            raise ValueError("backend='memfd' segments have no name: map a received fd with SharedMemory.from_fd(fd)")
        by_id = check_open_target(name, id, backend)
        if by_id is not None:
            return impl._open_id(by_id)
        return impl._open(name)

    @classmethod
    def anonymous(cls, size: int, *, label: str = "ipckit") -> "SharedMemory":
        """A nameless segment (``memfd_create``): nothing to unlink, nothing to leak.

        Share it by handing ``m.fileno()`` to another process: over a Unix socket
        (``send_fds``), by inheritance (``fork``, ``pass_fds``), or by pickling the
        object for a ``multiprocessing`` child. *label* only shows in
        ``/proc/PID/fd`` and ``/proc/PID/maps`` (as ``/memfd:LABEL``).

        The segment is sealed against shrinking (``F_SEAL_SHRINK``), so no process
        it is shared with can make the others' mappings fault (SIGBUS)."""
        check_positive_int(size, "size")
        if size > sys.maxsize:
            raise ValueError(f"size must be <= {sys.maxsize} (what can be mapped), got {size}")
        return _backend_class("memfd")._anonymous(size, label)  # type: ignore[attr-defined, no-any-return]

    @classmethod
    def from_fd(cls, fd: int, *, size: Optional[int] = None) -> "SharedMemory":
        """Map a shareable file descriptor (typically a memfd received with
        ``recv_fds``). The object takes ownership of *fd* and closes it on
        ``close()``. *size* defaults to the file's size.

        A memfd that allows sealing is sealed against shrinking (``F_SEAL_SHRINK``);
        ``m.seals`` reports the seals it has (``None`` for a file without seals),
        and ``m.shrink_sealed`` whether the mapping is safe from a peer's
        ``ftruncate`` (if not, ``read``/``write`` check the size themselves)."""
        return _backend_class("memfd")._from_fd(fd, size)  # type: ignore[attr-defined, no-any-return]

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
        self._check_open()
        end = offset + len(view)
        if end > self.size:
            raise ValueError(f"writing {len(view)} bytes at offset {offset} would run past the end of the {self.size}-byte segment")
        self._write(offset, view)
        return len(view)

    def read(self, n: int = -1, offset: int = 0) -> bytes:
        """A copy of *n* bytes at *offset* (``n=-1``: up to the end). ``ValueError``
        if the range runs past the end of the segment."""
        if isinstance(n, bool) or not isinstance(n, int):
            raise TypeError(f"n must be an int, not {type(n).__name__}")
        if n < -1:
            raise ValueError(f"n must be >= 0, or -1 for 'to the end', got {n}")
        _check_index(offset, "offset")
        self._check_open()
        if offset > self.size:
            raise ValueError(f"offset {offset} is past the end of the {self.size}-byte segment")
        end = self.size if n == -1 else offset + n
        if end > self.size:
            raise ValueError(f"reading {n} bytes at offset {offset} would run past the end of the {self.size}-byte segment")
        return self._read(offset, end)

    def _read(self, start: int, end: int) -> bytes:
        """Backend: bytes start..end, both checked against ``size``."""
        assert self._buf is not None
        return bytes(self._buf[start:end])

    def _write(self, offset: int, view: memoryview) -> None:
        """Backend: copy *view* in at *offset* (checked: it fits in ``size``)."""
        assert self._buf is not None
        self._buf[offset : offset + view.nbytes] = view

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

    @classmethod
    def _open_id(cls, id: int) -> "SharedMemory":
        raise NotImplementedError

    def __reduce__(self) -> tuple:
        if self.name is None:
            raise TypeError(f"a {self.backend} SharedMemory without a name cannot be pickled")
        return (_reopen, (self.backend, self.name))

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<ipckit.SharedMemory {self.name!r} backend={self.backend!r} size={self.size} {state}>"


__all__ = ["SharedMemory"]
