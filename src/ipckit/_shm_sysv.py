"""SharedMemory ``backend="sysv"``: shmget/shmat through ipckit's cffi layer.

sysv_ipc's SharedMemory exports a buffer but lets ``detach()`` run while views of
it are alive, after which touching a view is a use-after-unmap (a segfault). Here
the attach address is a cffi pointer whose finaliser is ``shmdt``, and ``buf`` is a
memoryview of an ``ffi.buffer`` that references that pointer: the segment is
detached exactly when the handle and every view derived from ``buf`` are gone.
"""

from __future__ import annotations

import errno
from typing import Any, NamedTuple, Optional

from . import _ffi
from ._errors import NotFoundError, error_from_errno
from ._naming import check_sysv_key, sysv_key_to_c
from ._shm import SharedMemory

_ffi_mod, _lib = _ffi.ffi, _ffi.lib
_SHM_DEST = 0o1000  # in shm_perm.mode: IPC_RMID was done, the segment dies at last detach


class SysvShmStat(NamedTuple):
    """What ``shmctl(IPC_STAT)`` says about a segment."""

    size: int
    mode: int
    attached: int
    creator_pid: int
    last_pid: int
    uid: int
    removed: bool


def _stat(shmid: int, what: str) -> SysvShmStat:
    out = _ffi_mod.new("struct ipckit_shm_stat *")
    rc = _lib.ipckit_shmctl_stat(shmid, out)
    if rc in (-errno.EINVAL, -errno.EIDRM):
        raise NotFoundError(errno.ENOENT, f"{what}: the segment was removed")
    _ffi.check(rc, what)
    return SysvShmStat(
        int(out.segsz), out.mode & 0o777, int(out.nattch), out.cpid, out.lpid, out.uid, bool(out.mode & _SHM_DEST)
    )


class SysvSharedMemory(SharedMemory):
    """``backend="sysv"``: a SysV segment (``name`` is the integer key, or ``None``
    for a private segment made with ``IPC_PRIVATE``; ``m.id`` is the shmid)."""

    backend = "sysv"
    id: int = -1
    _addr: Any = None

    @classmethod
    def _create(cls, name: Any, size: int, mode: int) -> "SharedMemory":
        key = check_sysv_key(name, allow_private=True)
        ckey = _lib.IPC_PRIVATE if key is None else sysv_key_to_c(key)
        what = f"shmget({key})"
        shmid = _ffi.check(_lib.ipckit_shmget(ckey, size, _lib.IPC_CREAT | _lib.IPC_EXCL | mode), what)
        try:
            return cls._attach(key, shmid, size)
        except BaseException:
            _lib.ipckit_shmctl_rmid(shmid)
            raise

    @classmethod
    def _open(cls, name: Any) -> "SharedMemory":
        key = check_sysv_key(name)
        what = f"shmget({key})"
        shmid = _ffi.check(_lib.ipckit_shmget(sysv_key_to_c(key), 0, 0), what)
        return cls._attach(key, shmid, _stat(shmid, what).size)

    @classmethod
    def _attach(cls, key: Optional[int], shmid: int, size: int) -> "SysvSharedMemory":
        out = _ffi_mod.new("void **")
        _ffi.check(_lib.ipckit_shmat(shmid, out), f"shmat({key})")
        addr = _ffi_mod.gc(_ffi_mod.cast("char *", out[0]), _lib.ipckit_shmdt)
        self = cls.__new__(cls)
        self.name = key
        self.id = shmid
        self.size = size
        self._addr = addr
        self._buf = memoryview(_ffi_mod.buffer(addr, size))  # the buffer keeps addr alive
        self._closed = False
        return self

    def _detach(self) -> None:
        # shmdt runs when the last reference to the address goes: now, unless
        # views derived from buf still hold it.
        self._addr = None

    def stat(self) -> SysvShmStat:
        """The kernel's record of the segment (size, mode, attach count, pids)."""
        self._check_open()
        return _stat(self.id, f"shmctl({self.name}, IPC_STAT)")

    def unlink(self) -> None:
        """``IPC_RMID``: the key is freed now; the memory when the last process detaches."""
        what = f"shmctl({self.name}, IPC_RMID)"
        if _stat(self.id, what).removed:
            raise NotFoundError(errno.ENOENT, f"{what}: the segment was already removed")
        rc = _lib.ipckit_shmctl_rmid(self.id)
        if rc in (-errno.EINVAL, -errno.EIDRM):
            raise NotFoundError(errno.ENOENT, f"{what}: the segment was already removed")
        if rc < 0:
            raise error_from_errno(-rc, what)

    def __reduce__(self) -> tuple:
        if self.name is None:
            raise TypeError("a private (IPC_PRIVATE) SysV segment has no key to be opened by: it cannot be pickled")
        return super().__reduce__()


__all__ = ["SysvSharedMemory", "SysvShmStat"]
