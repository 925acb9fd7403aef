"""SharedMemory ``backend="sysv"``: shmget/shmat through ipckit's cffi layer.

sysv_ipc's SharedMemory exports a buffer but lets ``detach()`` run while views of
it are alive, after which touching a view is a use-after-unmap (a segfault). Here
the attach address is a cffi pointer whose finaliser is ``shmdt``, and ``buf`` is a
memoryview of an ``ffi.buffer`` that references that pointer: the segment is
detached exactly when the handle and every view derived from ``buf`` are gone.

A SysV segment cannot be shrunk once made, so the plain copy through ``buf`` is
safe for ``read``/``write``. ``open(id=...)`` attaches by shmid (the way a segment
id handed over by another process is used); ``set(...)`` is ``IPC_SET`` and
``stat()`` ``IPC_STAT``. While this handle is attached the segment exists (an
``IPC_RMID`` only marks it: ``stat().removed``), so a removed segment is
``NotFoundError`` only for ``unlink()`` and ``open(id=...)``.
"""

from __future__ import annotations

import errno
from typing import Any, NamedTuple, Optional

from . import _ffi
from ._errors import SYSV_GONE, SYSV_REMOVED, As, ExistsError, NotFoundError
from ._naming import check_ipc_set, check_sysv_key, describe_sysv, sysv_key_to_c
from ._shm import SharedMemory

ffi, lib = _ffi.ffi, _ffi.lib
_SHM_DEST = 0o1000  # in shm_perm.mode: IPC_RMID was done, the segment dies at last detach


class SysvShmStat(NamedTuple):
    """What ``shmctl(IPC_STAT)`` says about a segment (times in wall-clock seconds)."""

    size: int
    mode: int
    attached: int
    creator_pid: int
    last_pid: int
    uid: int
    removed: bool
    gid: int = 0
    cuid: int = 0
    cgid: int = 0
    key: Optional[int] = None
    attach_time: int = 0
    detach_time: int = 0
    change_time: int = 0


def _stat(shmid: int, what: str, overrides: Any = SYSV_REMOVED) -> SysvShmStat:
    out = ffi.new("struct ipckit_shm_stat *")
    _ffi.check(lib.ipckit_shmctl_stat(shmid, out), what, overrides)
    return SysvShmStat(
        int(out.segsz), out.mode & 0o777, int(out.nattch), out.cpid, out.lpid, out.uid, bool(out.mode & _SHM_DEST),
        out.gid, out.cuid, out.cgid, (out.key & 0xFFFFFFFF) or None, out.atime, out.dtime, out.ctime,
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
        if mode > 0o777:  # the bits above are shmget flags (SHM_HUGETLB ...), not permissions
            raise ValueError(f"mode must be in 0..0o777 for a SysV segment (it has no setuid/sticky bits), got {oct(mode)}")
        ckey = lib.IPC_PRIVATE if key is None else sysv_key_to_c(key)
        overrides = {errno.EEXIST: As(ExistsError, f"a SysV shared memory segment {describe_sysv(key)} exists")}
        shmid = _ffi.check(lib.ipckit_shmget(ckey, size, lib.IPC_CREAT | lib.IPC_EXCL | mode), f"shmget({key})", overrides)
        try:
            return cls._attach(key, shmid, size)
        except BaseException:
            lib.ipckit_shmctl_rmid(shmid)
            raise

    @classmethod
    def _open(cls, name: Any) -> "SharedMemory":
        key = check_sysv_key(name)
        what = f"shmget({key})"
        overrides = {errno.ENOENT: As(NotFoundError, f"no SysV shared memory segment with key {key:#x}")}
        shmid = _ffi.check(lib.ipckit_shmget(sysv_key_to_c(key), 0, 0), what, overrides)
        return cls._attach(key, shmid, _stat(shmid, what, SYSV_GONE).size)

    @classmethod
    def _open_id(cls, id: int) -> "SharedMemory":
        st = _stat(id, f"shmctl({id}, IPC_STAT)", SYSV_GONE)
        return cls._attach(st.key, id, st.size)

    @classmethod
    def _attach(cls, key: Optional[int], shmid: int, size: int) -> "SysvSharedMemory":
        out = ffi.new("void **")
        _ffi.check(lib.ipckit_shmat(shmid, out), f"shmat({key})", SYSV_GONE)
        addr = ffi.gc(ffi.cast("char *", out[0]), lib.ipckit_shmdt)
        self = cls.__new__(cls)
        self.name = key
        self.id = shmid
        self.size = size
        self._addr = addr
        self._buf = memoryview(ffi.buffer(addr, size))  # the buffer keeps addr alive
        self._closed = False
        return self

    def _detach(self) -> None:
        # shmdt runs when the last reference to the address goes: now, unless
        # views derived from buf still hold it.
        self._addr = None

    def stat(self) -> SysvShmStat:
        """``shmctl(IPC_STAT)``: size, mode, attach count, pids, owner, creator, times."""
        self._check_open()
        return _stat(self.id, f"shmctl({self.name}, IPC_STAT)")

    def set(self, *, mode: Optional[int] = None, uid: Optional[int] = None, gid: Optional[int] = None) -> None:
        """``shmctl(IPC_SET)``: change the permission *mode* and the owner *uid*/*gid*
        (None keeps a field as it is)."""
        c_mode, c_uid, c_gid = check_ipc_set(mode, uid, gid)
        self._check_open()
        _ffi.check(lib.ipckit_shmctl_set(self.id, c_uid, c_gid, c_mode), "shmctl(IPC_SET)", SYSV_REMOVED)

    def unlink(self) -> None:
        """``IPC_RMID``: the key is freed now; the memory when the last process detaches."""
        what = f"shmctl({self.name}, IPC_RMID)"
        if _stat(self.id, what, SYSV_GONE).removed:
            raise NotFoundError(errno.ENOENT, f"{what}: the segment was already removed")
        _ffi.check(lib.ipckit_shmctl_rmid(self.id), what, SYSV_GONE)

    def __reduce__(self) -> tuple:
        if self.name is None:
            raise TypeError("a private (IPC_PRIVATE) SysV segment has no key to be opened by: it cannot be pickled")
        return super().__reduce__()


__all__ = ["SysvSharedMemory", "SysvShmStat"]
