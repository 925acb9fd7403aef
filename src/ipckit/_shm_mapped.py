"""The base of the SharedMemory backends that map a file descriptor (posix, file, memfd).

Sizing: a new segment gets all its pages at once with ``posix_fallocate`` (see the
/dev/shm trap in ``_shm``), so a full filesystem is ``IPCError(ENOSPC)`` at
``create()``, never a SIGBUS later.

A peer that shrinks the file
----------------------------
Whoever can open a segment's file can ``ftruncate`` it smaller. The pages past the
new end then vanish from every mapping, and the next touch of one of them -- through
``buf``, a numpy array, anything -- is SIGBUS in whichever process touches it. A
signal handler cannot make that safe for Python, so:

* memfd segments are *sealed*: ``SharedMemory.anonymous()`` creates them with
  ``MFD_ALLOW_SEALING`` and adds ``F_SEAL_SHRINK``, and ``from_fd()`` adds it to a
  received memfd that still allows sealing. After that the kernel refuses to shrink
  the file for everyone (``EPERM``), so the mapping cannot fault. ``m.seals`` reports
  the seals a segment has; ``m.shrink_sealed`` whether it is safe this way.
* for a file that cannot be sealed (a POSIX segment in /dev/shm, a regular file, a
  memfd whose creator forbade sealing), ipckit's own ``read``/``write`` do not touch
  the mapping: they are ``pread``/``pwrite`` on the descriptor, which at worst come
  back short -- the segment was shrunk, ``CorruptError`` -- and never fault. (A
  ``pwrite`` racing a shrink can grow the file again; that is harmless.) ``buf``
  stays the zero-copy way in, with the risk described above: share such segments
  only with processes you trust not to truncate them.
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
import stat
from typing import Any, Callable, Optional

from ._errors import CorruptError, IPCError, error_from_errno, translate_oserror
from ._resource import FdHolder
from ._shm import SharedMemory

SEAL_SHRINK = fcntl.F_SEAL_SHRINK


def allocate(fd: int, size: int, what: str) -> None:
    """Give a new file *size* bytes of real pages now (see "the /dev/shm trap" in ``_shm``)."""
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


def seals_of(fd: int) -> Optional[int]:
    """The ``F_SEAL_*`` bits of *fd*'s file, or None if it is not a sealable file."""
    try:
        return fcntl.fcntl(fd, fcntl.F_GET_SEALS)
    except OSError:
        return None


def seal_shrink(fd: int) -> Optional[int]:
    """Add ``F_SEAL_SHRINK`` where the file allows it; return the seals it has now."""
    seals = seals_of(fd)
    if seals is not None and not seals & SEAL_SHRINK:
        try:
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, SEAL_SHRINK)
        except OSError:  # F_SEAL_SEAL set, or not ours to seal: report what is there
            pass
        seals = seals_of(fd)
    return seals


class MappedSharedMemory(SharedMemory):
    """A segment that is a file descriptor mapped with mmap (posix, file, memfd)."""

    _fd: FdHolder
    _mmap: Optional[mmap.mmap] = None
    seals: Optional[int] = None  # F_SEAL_* of the file; None: it has none (cannot be sealed)

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
        self.seals = seals_of(fd)
        self._fd = holder
        self._mmap = mm
        self._buf = memoryview(mm)
        self._closed = False

    @property
    def shrink_sealed(self) -> bool:
        """True if the file is sealed against shrinking: no process can make this
        mapping fault by truncating it (see the module docstring)."""
        return self.seals is not None and bool(self.seals & SEAL_SHRINK)

    def fileno(self) -> int:
        """The segment's file descriptor (e.g. to hand over with ``send_fds``)."""
        self._check_open()
        return self._fd.fd

    def _read(self, start: int, end: int) -> bytes:
        if self.shrink_sealed:
            return super()._read(start, end)
        try:
            data = os.pread(self._fd.fd, end - start, start)
        except OSError as exc:
            raise error_from_errno(exc.errno, "pread") from exc
        if len(data) < end - start:
            raise self._shrunk()
        return data

    def _write(self, offset: int, view: memoryview) -> None:
        if self.shrink_sealed:
            return super()._write(offset, view)
        fd = self._fd.fd
        try:
            size = os.fstat(fd).st_size
        except OSError as exc:
            raise error_from_errno(exc.errno, "fstat") from exc
        if size < offset + view.nbytes:
            raise self._shrunk()
        try:
            done = 0
            while done < view.nbytes:
                done += os.pwrite(fd, view[done:], offset + done)
        except OSError as exc:
            raise error_from_errno(exc.errno, "pwrite") from exc

    def _shrunk(self) -> CorruptError:
        try:
            now = f"{os.fstat(self._fd.fd).st_size} bytes"
        except OSError:  # pragma: no cover
            now = "smaller"
        return CorruptError(
            f"the {self.size}-byte segment {self.name!r} is now {now}: another process shrank it "
            "(touching the lost part through buf would be SIGBUS)"
        )

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
            allocate(fd, size, what)
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


__all__ = ["MappedSharedMemory", "SEAL_SHRINK", "allocate", "seal_shrink", "seals_of"]
