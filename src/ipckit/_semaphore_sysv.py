"""Semaphore ``backend="sysv"``: SysV semaphore sets through ipckit's cffi layer.

sysv_ipc only makes sets of one semaphore and, as built here, has no
``semtimedop``; so sets are made with ``semget`` and every wait is ``semtimedop``
with a *relative* timeout recomputed from one monotonic ``Deadline`` (EINTR is
retried with the time that is left).

The SysV initialisation race: ``semget(IPC_CREAT)`` makes a set whose values are
0, and setting them is a second call. A process that opens the set in between
would see 0. As Stevens describes, the creator sets the values and then performs
one ``semop`` (which sets ``sem_otime``); ``open()`` of a set whose ``sem_otime``
is still 0 and that was changed in the last seconds waits briefly for it. A set a
C program made without any ``semop`` is opened after that short grace period.
"""

from __future__ import annotations

import errno
import time
from typing import Any, Iterable, NamedTuple, Optional, Sequence

from . import _ffi
from ._errors import ClosedError, NotFoundError, error_from_errno
from ._naming import check_sysv_key, sysv_key_to_c
from ._semaphore import Semaphore, _check_release_n, _check_value, _wait_deadline
from ._timeouts import Deadline

_ffi_mod, _lib = _ffi.ffi, _ffi.lib
_SEM_LIMITS: list[int] = []


def _sem_limits() -> tuple[int, int]:
    """(SEMMSL, SEMOPM) from /proc/sys/kernel/sem: semaphores per set, operations per semop."""
    if not _SEM_LIMITS:
        try:
            with open("/proc/sys/kernel/sem") as f:
                fields = [int(x) for x in f.read().split()]
            _SEM_LIMITS[:] = [fields[0], fields[2]]
        except (OSError, ValueError, IndexError):  # pragma: no cover - no /proc
            _SEM_LIMITS[:] = [32000, 500]
    return _SEM_LIMITS[0], _SEM_LIMITS[1]

_INIT_GRACE = 0.5  # seconds open() waits for a just-created set's creator to finish


class SysvSemStat(NamedTuple):
    """What ``semctl(IPC_STAT)`` says about a set (``nsems``: semaphores in it)."""

    nsems: int
    mode: int
    uid: int
    otime: int
    ctime: int


def _stat(semid: int, what: str) -> SysvSemStat:
    out = _ffi_mod.new("struct ipckit_sem_stat *")
    rc = _lib.ipckit_semctl_stat(semid, out)
    if rc in (-errno.EINVAL, -errno.EIDRM):
        raise NotFoundError(errno.ENOENT, f"{what}: the semaphore set was removed")
    _ffi.check(rc, what)
    return SysvSemStat(out.nsems, out.mode & 0o777, out.uid, out.otime, out.ctime)


def _removed(what: str) -> ClosedError:
    return ClosedError(errno.EIDRM, f"{what}: the semaphore set was removed")


class SysvSemaphore(Semaphore):
    """``backend="sysv"``: member ``index`` of a SysV semaphore set (``name`` is the
    key, or ``None`` for ``IPC_PRIVATE``; ``id`` is the semid).

    ``sem[i]`` is member *i* of the same set; ``sem.op([(0, -1), (1, +1)])`` applies
    several operations atomically (all or none); ``ncount``, ``zcount`` and
    ``last_pid`` are the kernel's GETNCNT, GETZCNT and GETPID for this member. With
    ``undo=True`` every operation this handle makes uses ``SEM_UNDO``: if the
    process dies, the kernel reverts what it did (a crashed holder's acquire is
    given back).
    """

    backend = "sysv"
    id: int = -1
    undo: bool = False

    @classmethod
    def _create(cls, name: Any, value: Any, mode: int, count: Optional[int], undo: bool) -> "Semaphore":
        key = check_sysv_key(name, allow_private=True)
        values = cls._initial_values(value, count)
        ckey = _lib.IPC_PRIVATE if key is None else sysv_key_to_c(key)
        what = f"semget({key})"
        semid = _ffi.check(_lib.ipckit_semget(ckey, len(values), _lib.IPC_CREAT | _lib.IPC_EXCL | mode), what)
        try:
            for number, initial in enumerate(values):
                _ffi.check(_lib.ipckit_semctl_setval(semid, number, initial), f"semctl({key}, SETVAL)")
            # One semop sets sem_otime: the "initialised" mark open() looks for.
            delta = 1 if values[0] < _lib.SEMVMX else -1
            ops = _ffi_mod.new("struct sembuf[2]", [(0, delta, _lib.IPC_NOWAIT), (0, -delta, _lib.IPC_NOWAIT)])
            _ffi.call(_lib.ipckit_semtimedop, semid, ops, 2, _ffi_mod.NULL, what=f"semop({key})")
        except BaseException:
            _lib.ipckit_semctl_rmid(semid)
            raise
        return cls._wrap(key, semid, len(values), 0, undo)

    @staticmethod
    def _initial_values(value: Any, count: Optional[int]) -> list[int]:
        if isinstance(value, (list, tuple)):
            values = [_check_value(v, f"value[{i}]", _lib.SEMVMX, "SEMVMX") for i, v in enumerate(value)]
            if not values:
                raise ValueError("value must not be an empty sequence")
            if count is not None and count != len(values):
                raise ValueError(f"count is {count} but value has {len(values)} entries")
        else:
            values = [_check_value(value, "value", _lib.SEMVMX, "SEMVMX")] * (count or 1)
        semmsl = _sem_limits()[0]
        if len(values) > semmsl:
            raise ValueError(f"count must be <= SEMMSL = {semmsl} (/proc/sys/kernel/sem, 1st field), got {len(values)}")
        return values

    @classmethod
    def _open(cls, name: Any, undo: bool) -> "Semaphore":
        key = check_sysv_key(name)
        what = f"semget({key})"
        semid = _ffi.check(_lib.ipckit_semget(sysv_key_to_c(key), 0, 0), what)
        st = _stat(semid, what)
        grace = Deadline(_INIT_GRACE)
        while st.otime == 0 and time.time() - st.ctime < 2 * _INIT_GRACE + 1 and not grace.expired():
            time.sleep(0.001)  # the creator is between semget and its first semop
            st = _stat(semid, what)
        return cls._wrap(key, semid, st.nsems, 0, undo)

    @classmethod
    def _wrap(cls, key: Optional[int], semid: int, count: int, index: int, undo: bool) -> "SysvSemaphore":
        self = cls.__new__(cls)
        self.name = key
        self.id = semid
        self.count = count
        self.index = index
        self.undo = undo
        self._closed = False
        return self

    # --- the set ---------------------------------------------------------------------

    def __getitem__(self, index: int) -> "SysvSemaphore":
        """Member *index* of the set, as a Semaphore of its own (same undo setting)."""
        self._check_open()
        if isinstance(index, bool) or not isinstance(index, int):
            raise TypeError(f"index must be an int, not {type(index).__name__}")
        if not -self.count <= index < self.count:
            raise IndexError(f"index {index} out of range for a set of {self.count}")
        return self._wrap(self.name, self.id, self.count, index % self.count, self.undo)

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Any:
        return (self[i] for i in range(self.count))

    @property
    def values(self) -> list[int]:
        """The value of every member, in order (each read is a separate snapshot)."""
        self._check_open()
        return [self._get(_lib.GETVAL, i) for i in range(self.count)]

    def op(self, ops: Iterable[Sequence[int]], *, timeout: Optional[float] = None, undo: Optional[bool] = None) -> bool:
        """Apply ``(member, delta)`` operations atomically, as one ``semop``: all of
        them happen at once, or none. A negative delta waits until the member's
        value is at least ``-delta``; ``0`` waits until the value is 0. Return True
        when done, False if *timeout* (``0``: do not wait) passed first, with
        nothing changed. *undo* (default: this handle's) adds ``SEM_UNDO``."""
        deadline = Deadline.from_user(timeout)
        flags = _lib.SEM_UNDO if (self.undo if undo is None else undo) else 0
        checked = []
        for item in ops:
            if not isinstance(item, (tuple, list)) or len(item) != 2:
                raise TypeError(f"each operation must be a (member, delta) pair, got {item!r}")
            number, delta = item
            for argument, v in (("member", number), ("delta", delta)):
                if isinstance(v, bool) or not isinstance(v, int):
                    raise TypeError(f"{argument} must be an int, not {type(v).__name__}")
            if not 0 <= number < self.count:
                raise ValueError(f"member {number} out of range for a set of {self.count}")
            if not -32768 <= delta <= 32767:
                raise ValueError(f"delta must be in -32768..32767 (a C short), got {delta}")
            checked.append((number, delta, flags))
        if not checked:
            raise ValueError("ops must contain at least one (member, delta) pair")
        semopm = _sem_limits()[1]
        if len(checked) > semopm:
            raise ValueError(f"at most SEMOPM = {semopm} operations per call (/proc/sys/kernel/sem, 3rd field), got {len(checked)}")
        self._check_open()
        return self._semop(checked, deadline)

    def _semop(self, ops: list[tuple[int, int, int]], deadline: Deadline) -> bool:
        what = f"semop({self.name})"
        n = len(ops)
        sops = _ffi_mod.new("struct sembuf[]", ops)
        ts = _ffi_mod.new("struct timespec *")
        timedop = _lib.ipckit_semtimedop
        nowait = _lib.IPC_NOWAIT
        while True:
            ns = deadline.remaining_ns()
            if ns == 0:
                for sop in sops:
                    sop.sem_flg |= nowait
                rc = timedop(self.id, sops, n, _ffi_mod.NULL)
            elif ns < 0:
                rc = timedop(self.id, sops, n, _ffi_mod.NULL)
            else:
                ts.tv_sec, ts.tv_nsec = divmod(ns, 1_000_000_000)
                rc = timedop(self.id, sops, n, ts)
            if rc == 0:
                return True
            if rc == -errno.EAGAIN:
                if ns == 0 or deadline.expired():
                    return False
            elif rc in (-errno.EIDRM, -errno.EINVAL):
                raise _removed(what)
            elif rc == -errno.ERANGE:
                raise ValueError(f"{what}: the value would pass SEMVMX ({_lib.SEMVMX})")
            elif rc == -errno.EFBIG:
                raise ValueError(f"{what}: member out of range")
            elif rc != -errno.EINTR:
                raise error_from_errno(-rc, what)
            # EINTR: Python signal handlers run here; then wait for the time left.

    # --- Semaphore ---------------------------------------------------------------------

    def acquire(self, blocking: bool = True, timeout: Optional[float] = None) -> bool:
        deadline = _wait_deadline(blocking, timeout)
        self._check_open()
        return self._semop([(self.index, -1, _lib.SEM_UNDO if self.undo else 0)], deadline)

    def release(self, n: int = 1) -> None:
        """Increment the value by *n* atomically (one semop). ``ValueError`` if it
        would pass SEMVMX (32767)."""
        _check_release_n(n)
        if n > _lib.SEMVMX:
            raise ValueError(f"n must be <= SEMVMX ({_lib.SEMVMX}), got {n}")
        self._check_open()
        self._semop([(self.index, n, _lib.SEM_UNDO if self.undo else 0)], Deadline(None))

    def _get(self, cmd: int, index: Optional[int] = None) -> int:
        rc = _lib.ipckit_semctl_get(self.id, self.index if index is None else index, cmd)
        if rc in (-errno.EIDRM, -errno.EINVAL):
            raise _removed(f"semctl({self.name})")
        return _ffi.check(rc, f"semctl({self.name})")

    @property
    def value(self) -> int:
        self._check_open()
        return self._get(_lib.GETVAL)

    @property
    def ncount(self) -> int:
        """GETNCNT: how many processes wait for this member's value to increase."""
        self._check_open()
        return self._get(_lib.GETNCNT)

    @property
    def zcount(self) -> int:
        """GETZCNT: how many processes wait for this member's value to become 0."""
        self._check_open()
        return self._get(_lib.GETZCNT)

    @property
    def last_pid(self) -> int:
        """GETPID: the pid of the last process that operated on this member."""
        self._check_open()
        return self._get(_lib.GETPID)

    def stat(self) -> SysvSemStat:
        """The kernel's record of the whole set (count, mode, owner, times)."""
        self._check_open()
        return _stat(self.id, f"semctl({self.name}, IPC_STAT)")

    def unlink(self) -> None:
        """``IPC_RMID``: the set is removed at once; waiters get ``ClosedError``."""
        what = f"semctl({self.name}, IPC_RMID)"
        rc = _lib.ipckit_semctl_rmid(self.id)
        if rc in (-errno.EINVAL, -errno.EIDRM):
            raise NotFoundError(errno.ENOENT, f"{what}: the semaphore set was already removed")
        if rc < 0:
            raise error_from_errno(-rc, what)


__all__ = ["SysvSemStat", "SysvSemaphore"]
