"""SharedMemory ``backend="posix"``: ``shm_open`` (a file in /dev/shm) mapped with mmap.

``shm_open``/``shm_unlink`` go through cffi (``csrc/posixshm.c``) and return
``-errno``; sizing, mode and mapping are ``_shm_mapped``'s. A POSIX segment cannot
be sealed, so ``read``/``write`` go through the descriptor (see ``_shm_mapped``).
"""

from __future__ import annotations

import errno
import os
from typing import Any

from . import _ffi
from ._errors import As, ExistsError, NotFoundError
from ._naming import check_posix_name
from ._shm import SharedMemory
from ._shm_mapped import MappedSharedMemory

lib = _ffi.lib


class PosixSharedMemory(MappedSharedMemory):
    """``backend="posix"``: ``shm_open`` (a file in /dev/shm) mapped with mmap."""

    backend = "posix"

    @classmethod
    def _create(cls, name: Any, size: int, mode: int) -> "SharedMemory":
        name = check_posix_name(name)
        encoded = name.encode()
        what = f"shm_open({name!r})"
        overrides = {errno.EEXIST: As(ExistsError, f"a POSIX shared memory segment named {name!r} exists")}
        fd = _ffi.check(lib.ipckit_shm_open(encoded, os.O_RDWR | os.O_CREAT | os.O_EXCL, mode), what, overrides)
        return cls._from_created(name, fd, size, mode, what, lambda: lib.ipckit_shm_unlink(encoded))

    @classmethod
    def _open(cls, name: Any) -> "SharedMemory":
        name = check_posix_name(name)
        what = f"shm_open({name!r})"
        overrides = {errno.ENOENT: As(NotFoundError, f"no POSIX shared memory segment named {name!r}")}
        fd = _ffi.check(lib.ipckit_shm_open(name.encode(), os.O_RDWR, 0), what, overrides)
        return cls._from_opened(name, fd, what)

    def unlink(self) -> None:
        overrides = {errno.ENOENT: As(NotFoundError, f"no POSIX shared memory segment named {self.name!r}")}
        _ffi.check(lib.ipckit_shm_unlink(self.name.encode()), f"shm_unlink({self.name!r})", overrides)


__all__ = ["PosixSharedMemory"]
