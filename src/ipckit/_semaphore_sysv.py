"""Semaphore ``backend="sysv"``: SysV semaphore sets through ipckit's cffi layer.

sysv_ipc only makes sets of one semaphore and, as built here, has no
``semtimedop``; so sets are made with ``semget`` and every wait is ``semtimedop``
with a *relative* timeout recomputed from one monotonic ``Deadline``: the attempt
of ``_wait.retry`` waits in the kernel up to its limit (``IPC_NOWAIT`` for an
expired one), and EINTR is an attempt that waits again for the time left.
``acquire()``/``release()`` with their defaults are one C call (``ipckit_semop1``,
which builds the ``sembuf`` on the C stack).

Removal. A set removed under a handle (EIDRM, or EINVAL for an id that no longer
exists) is ``ClosedError`` for every call on it, stat included (``SYSV_REMOVED``);
``unlink()`` of a set already gone and ``open(id=...)`` of an id that names nothing
are ``NotFoundError`` (``SYSV_GONE``).

Waiting without taking (``_wait_positive``): one ``semtimedop`` of the two operations
``(i, -1), (i, +1)``. The kernel applies a semop all at once or not at all, so the
call sleeps until member *i* is positive and then changes nothing -- except
``sem_otime`` and the last pid (GETPID), as any semop does.

The SysV initialisation race: ``semget(IPC_CREAT)`` makes a set whose values are
0, and setting them is a second call. A process that opens the set in between
would see 0. As Stevens describes, the creator sets the values and then performs
one ``semop`` (which sets ``sem_otime``); ``open()`` of a set whose ``sem_otime``
is still 0 and that was changed in the last seconds waits briefly for it. A set a
C program made without any ``semop`` is opened after that short grace period.

Settings. ``set_value(v)`` (SETVAL) and ``set_values([...])`` (SETALL) change an
existing set and wake the waiters they satisfy; the kernel also clears every
process's SEM_UNDO adjustment of the members they set. ``set(mode=, uid=, gid=)``
is ``IPC_SET`` and ``stat()`` ``IPC_STAT``.
"""

from __future__ import annotations

import errno
import time
from typing import Any, Iterable, NamedTuple, Optional, Sequence

from . import _ffi
from ._errors import SYSV_GONE, SYSV_REMOVED, As, ExistsError, NotFoundError, Timeout, closed_error, error_from_errno
from ._naming import check_ipc_set, check_sysv_key, describe_sysv, sysv_key_to_c
from ._procfs import read_ints
from ._semaphore import Semaphore, check_release_n, check_value
from ._timeouts import Deadline
from ._wait import NO_WAIT, WOULD_BLOCK, Backoff, retry

ffi, lib = _ffi.ffi, _ffi.lib
_op1 = lib.ipckit_semop1
SEMVMX = lib.SEMVMX
_UNDO = lib.SEM_UNDO
_EAGAIN, _EINTR, _ERANGE = -errno.EAGAIN, -errno.EINTR, -errno.ERANGE
_INIT_GRACE = 0.5  # seconds open() waits for a just-created set's creator to finish
_SEM_FILE = "/proc/sys/kernel/sem"


def _sem_limits() -> tuple[int, int]:
    """(SEMMSL, SEMOPM) from /proc/sys/kernel/sem: semaphores per set, operations per semop."""
    fields = read_ints(_SEM_FILE)
    if not fields or len(fields) < 3:  # pragma: no cover - no /proc
        return 32000, 500
    return fields[0], fields[2]


class SysvSemStat(NamedTuple):
    """What ``semctl(IPC_STAT)`` says about a set (``nsems``: semaphores in it).
    Times are wall-clock seconds (``otime`` 0: no semop yet)."""

    nsems: int
    mode: int
    uid: int
    otime: int
    ctime: int
    gid: int = 0
    cuid: int = 0
    cgid: int = 0
    key: Optional[int] = None


def _stat(semid: int, what: str, overrides: Any = SYSV_REMOVED) -> SysvSemStat:
    out = ffi.new("struct ipckit_sem_stat *")
    _ffi.check(lib.ipckit_semctl_stat(semid, out), what, overrides)
    return SysvSemStat(out.nsems, out.mode, out.uid, out.otime, out.ctime, out.gid, out.cuid, out.cgid, (out.key & 0xFFFFFFFF) or None)


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
    _semid = -1  # the id the hot path uses: -1 once closed
    _flags = 0

    @classmethod
    def _create(cls, name: Any, value: Any, mode: int, count: Optional[int], undo: bool) -> "Semaphore":
        key = check_sysv_key(name, allow_private=True)
        values = cls._initial_values(value, count)
        if mode > 0o777:
            raise ValueError(f"mode must be in 0..0o777 for a SysV semaphore set (it has no setuid/sticky bits), got {oct(mode)}")
        ckey = lib.IPC_PRIVATE if key is None else sysv_key_to_c(key)
        overrides = {errno.EEXIST: As(ExistsError, f"a SysV semaphore set {describe_sysv(key)} exists")}
        semid = _ffi.check(lib.ipckit_semget(ckey, len(values), lib.IPC_CREAT | lib.IPC_EXCL | mode), "semget", overrides)
        try:
            _set_all(semid, values, "semctl(SETALL)")
            # One semop sets sem_otime: the "initialised" mark open() looks for.
            delta = 1 if values[0] < SEMVMX else -1
            ops = ffi.new("struct sembuf[2]", [(0, delta, lib.IPC_NOWAIT), (0, -delta, lib.IPC_NOWAIT)])
            _ffi.call(lib.ipckit_semtimedop, semid, ops, 2, ffi.NULL, what=f"semop({key})")
        except BaseException:
            lib.ipckit_semctl_rmid(semid)
            raise
        return cls._wrap(key, semid, len(values), 0, undo)

    @staticmethod
    def _initial_values(value: Any, count: Optional[int]) -> list[int]:
        if isinstance(value, (list, tuple)):
            values = [check_value(v, f"value[{i}]", SEMVMX, "SEMVMX") for i, v in enumerate(value)]
            if not values:
                raise ValueError("value must not be an empty sequence")
            if count is not None and count != len(values):
                raise ValueError(f"count is {count} but value has {len(values)} entries")
        else:
            values = [check_value(value, "value", SEMVMX, "SEMVMX")] * (count or 1)
        semmsl = _sem_limits()[0]
        if len(values) > semmsl:
            raise ValueError(f"count must be <= SEMMSL = {semmsl} (/proc/sys/kernel/sem, 1st field), got {len(values)}")
        return values

    @classmethod
    def _open(cls, name: Any, undo: bool) -> "Semaphore":
        key = check_sysv_key(name)
        overrides = {errno.ENOENT: As(NotFoundError, f"no SysV semaphore set with key {key:#x}")}
        semid = _ffi.check(lib.ipckit_semget(sysv_key_to_c(key), 0, 0), "semget", overrides)
        return cls._wrap(key, semid, cls._initialised(semid).nsems, 0, undo)

    @classmethod
    def _open_id(cls, id: int, undo: bool) -> "Semaphore":
        st = _stat(id, f"semctl({id}, IPC_STAT)", SYSV_GONE)
        return cls._wrap(st.key, id, cls._initialised(id).nsems, 0, undo)

    @staticmethod
    def _initialised(semid: int) -> SysvSemStat:
        """The set's stat once its creator has finished (see the module docstring)."""
        seen: list[SysvSemStat] = []

        def attempt(limit: Deadline) -> Any:
            st = _stat(semid, "semctl(IPC_STAT)", SYSV_GONE)
            seen.append(st)
            if st.otime != 0 or time.time() - st.ctime >= 2 * _INIT_GRACE + 1:
                return st
            return WOULD_BLOCK  # the creator is between semget and its first semop

        try:
            return retry(attempt, Deadline(_INIT_GRACE), "semaphore set initialisation", Backoff(0.001, 0.001))  # type: ignore[no-any-return]
        except Timeout:
            return seen[-1]  # made by a program without the handshake: open it as it is

    @classmethod
    def _wrap(cls, key: Optional[int], semid: int, count: int, index: int, undo: bool) -> "SysvSemaphore":
        self = cls.__new__(cls)
        self.name = key
        self.id = semid
        self._semid = semid
        self.count = count
        self.index = index
        self.undo = undo
        self._flags = _UNDO if undo else 0
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
        return [self._get(lib.GETVAL, i) for i in range(self.count)]

    def set_value(self, value: int) -> None:
        """SETVAL: set this member's value (0..SEMVMX), waking the waiters it satisfies.
        The kernel also drops every process's SEM_UNDO adjustment for this member."""
        check_value(value, "value", SEMVMX, "SEMVMX")
        self._check_open()
        _ffi.check(lib.ipckit_semctl_setval(self._semid, self.index, value), "semctl(SETVAL)", SYSV_REMOVED)

    def set_values(self, values: Sequence[int]) -> None:
        """SETALL: set every member's value at once (one value per member, in order)."""
        if not isinstance(values, (list, tuple)):
            raise TypeError(f"values must be a list or tuple of ints, not {type(values).__name__}")
        checked = [check_value(v, f"values[{i}]", SEMVMX, "SEMVMX") for i, v in enumerate(values)]
        if len(checked) != self.count:
            raise ValueError(f"values must have one entry per member: {self.count}, got {len(checked)}")
        self._check_open()
        _set_all(self._semid, checked, "semctl(SETALL)")

    def op(self, ops: Iterable[Sequence[int]], *, timeout: Optional[float] = None, undo: Optional[bool] = None) -> bool:
        """Apply ``(member, delta)`` operations atomically, as one ``semop``: all of
        them happen at once, or none. A negative delta waits until the member's
        value is at least ``-delta``; ``0`` waits until the value is 0. Return True
        when done, False if *timeout* (``0``: do not wait) passed first, with
        nothing changed. *undo* (default: this handle's) adds ``SEM_UNDO``."""
        deadline = Deadline.from_user(timeout)
        checked = self._check_ops(ops, undo)
        try:
            return retry(self._ops_attempt(checked), deadline, "semop", NO_WAIT)  # type: ignore[no-any-return]
        except Timeout:
            return False

    def _check_ops(self, ops: Iterable[Sequence[int]], undo: Optional[bool]) -> list[tuple[int, int, int]]:
        """``op``'s arguments, checked: ``(member, delta, flags)`` triples."""
        flags = _UNDO if (self.undo if undo is None else undo) else 0
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
        return checked

    def _ops_attempt(self, ops: list[tuple[int, int, int]]) -> Any:
        """``attempt(limit)``: one semtimedop of *ops* waiting in the kernel up to *limit*."""
        n = len(ops)
        waiting = ffi.new("struct sembuf[]", ops)
        nowait = ffi.new("struct sembuf[]", [(num, delta, flags | lib.IPC_NOWAIT) for num, delta, flags in ops])
        ts = ffi.new("struct timespec *")

        def attempt(limit: Deadline) -> Any:
            ns = limit.remaining_ns()
            if ns == 0:
                rc = lib.ipckit_semtimedop(self._semid, nowait, n, ffi.NULL)
            elif ns < 0:
                rc = lib.ipckit_semtimedop(self._semid, waiting, n, ffi.NULL)
            else:
                ts.tv_sec, ts.tv_nsec = divmod(ns, 1_000_000_000)
                rc = lib.ipckit_semtimedop(self._semid, waiting, n, ts)
            return self._op_result(rc, "semop")

        return attempt

    def _op_result(self, rc: int, what: str) -> Any:
        if rc == 0:
            return True
        if rc == _EAGAIN or rc == _EINTR:
            return WOULD_BLOCK
        if self._closed:
            raise closed_error(self)
        if rc == _ERANGE:
            raise ValueError(f"{what}({self.name}): the value would pass SEMVMX ({SEMVMX})")
        if rc == -errno.EFBIG:
            raise ValueError(f"{what}({self.name}): member out of range")
        raise error_from_errno(-rc, f"{what} on the SysV semaphore set {describe_sysv(self.name)}", overrides=SYSV_REMOVED)

    # --- Semaphore: one C call each ----------------------------------------------------

    def acquire(self, blocking: bool = True, timeout: Optional[float] = None) -> bool:
        if timeout is None and blocking is True and _op1(self._semid, self.index, -1, self._flags, -1) == 0:
            return True
        return self._acquire(blocking, timeout)

    def _acquire_attempt(self, limit: Deadline) -> Any:
        """One semtimedop(-1) waiting in the kernel up to *limit*: True or ``WOULD_BLOCK``."""
        return self._op_result(_op1(self._semid, self.index, -1, self._flags, limit.remaining_ns()), "semop")

    def release(self, n: int = 1) -> None:
        """Increment the value by *n* atomically (one semop). ``ValueError`` if it
        would pass SEMVMX (32767)."""
        if n.__class__ is not int or not 0 < n <= SEMVMX:
            check_release_n(n)
            raise ValueError(f"n must be <= SEMVMX ({SEMVMX}), got {n}")
        rc = _op1(self._semid, self.index, n, self._flags, -1)
        if rc != 0:
            self._check_open()
            while self._op_result(rc, "semop") is WOULD_BLOCK:  # interrupted (a positive semop never waits)
                rc = _op1(self._semid, self.index, n, self._flags, -1)

    def _positive_attempt(self, limit: Deadline) -> Any:
        """Wait up to *limit* until the value is positive, taking nothing."""
        return self._op_result(lib.ipckit_sem_wait_positive(self._semid, self.index, limit.remaining_ns()), "semop")

    def _get(self, cmd: int, index: Optional[int] = None) -> int:
        rc = lib.ipckit_semctl_get(self._semid, self.index if index is None else index, cmd)
        return _ffi.check(rc, f"semctl({self.name})", SYSV_REMOVED)

    @property
    def value(self) -> int:
        self._check_open()
        return self._get(lib.GETVAL)

    @property
    def ncount(self) -> int:
        """GETNCNT: how many processes wait for this member's value to increase."""
        self._check_open()
        return self._get(lib.GETNCNT)

    @property
    def zcount(self) -> int:
        """GETZCNT: how many processes wait for this member's value to become 0."""
        self._check_open()
        return self._get(lib.GETZCNT)

    @property
    def last_pid(self) -> int:
        """GETPID: the pid of the last process that operated on this member."""
        self._check_open()
        return self._get(lib.GETPID)

    def stat(self) -> SysvSemStat:
        """``semctl(IPC_STAT)``: the kernel's record of the whole set (count, mode,
        owner, creator, times, key)."""
        self._check_open()
        return _stat(self._semid, f"semctl({self.name}, IPC_STAT)")

    def set(self, *, mode: Optional[int] = None, uid: Optional[int] = None, gid: Optional[int] = None) -> None:
        """``semctl(IPC_SET)``: change the permission *mode* and the owner *uid*/*gid*
        of the whole set (None keeps a field as it is)."""
        c_mode, c_uid, c_gid = check_ipc_set(mode, uid, gid)
        self._check_open()
        _ffi.check(lib.ipckit_semctl_set(self._semid, c_uid, c_gid, c_mode), "semctl(IPC_SET)", SYSV_REMOVED)

    def unlink(self) -> None:
        """``IPC_RMID``: the set is removed at once; waiters get ``ClosedError``."""
        _ffi.check(lib.ipckit_semctl_rmid(self.id), f"semctl({self.name}, IPC_RMID)", SYSV_GONE)

    def _close(self) -> None:
        self._semid = -1  # nothing to release: a semid is not a descriptor


def _set_all(semid: int, values: list[int], what: str) -> None:
    array = ffi.new("unsigned short[]", values)
    _ffi.check(lib.ipckit_semctl_setall(semid, array), what, SYSV_REMOVED)


__all__ = ["SysvSemStat", "SysvSemaphore"]
