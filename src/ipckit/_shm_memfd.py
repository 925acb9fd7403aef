"""SharedMemory ``backend="memfd"``: an anonymous ``memfd_create`` segment, shared by its fd.

No name exists at any moment, so nothing can leak and no other process can open it
by guessing; it is shared by handing the descriptor over (``send_fds``, ``fork``,
``pass_fds``, or pickling for a ``multiprocessing`` child, which duplicates it).

Sealing: ``anonymous()`` creates the memfd with ``MFD_ALLOW_SEALING`` and, once it is
sized, adds ``F_SEAL_SHRINK``, so no process it is handed to can shrink it and make
the others' mappings fault. ``from_fd()`` adds the seal to a received memfd that
still allows it, and reports what it found in ``m.seals`` (see ``_shm_mapped``).
"""

from __future__ import annotations

import os
from typing import Any, Optional

from ._errors import translate_oserror
from ._naming import check_positive_int
from ._shm import SharedMemory
from ._shm_mapped import MappedSharedMemory, allocate, seal_shrink


def _from_dup_fd(dupfd: Any, size: int) -> "SharedMemory":
    """Unpickling a memfd segment: multiprocessing's DupFd brought us the fd."""
    return MemfdSharedMemory._from_fd(dupfd.detach(), size)


class MemfdSharedMemory(MappedSharedMemory):
    """``backend="memfd"``: an anonymous ``memfd_create`` segment, shared by its fd."""

    backend = "memfd"

    @classmethod
    def _anonymous(cls, size: int, label: str) -> "SharedMemory":
        if not isinstance(label, str):
            raise TypeError(f"label must be a str, not {type(label).__name__}")
        try:
            encoded = label.encode()
        except UnicodeEncodeError:
            raise ValueError(f"label must be encodable as UTF-8, got {label!r}") from None
        if b"\0" in encoded or len(encoded) > 249:
            raise ValueError("label must have no NUL and be at most 249 bytes")
        with translate_oserror("memfd_create"):
            fd = os.memfd_create(label, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            allocate(fd, size, "memfd_create")
            seal_shrink(fd)
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
        if not 0 <= fd <= 2**31 - 1:
            raise ValueError(f"fd must be a descriptor number (0..2**31-1), got {fd}")
        check_positive_int(size, "size", allow_none=True)
        real = cls._size_of(fd, "from_fd")
        if size is None:
            size = real
        elif size > real:
            raise ValueError(f"size {size} is larger than the file behind fd {fd} ({real} bytes)")
        seal_shrink(fd)
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


__all__ = ["MemfdSharedMemory"]
