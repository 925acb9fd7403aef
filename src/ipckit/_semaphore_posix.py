"""Semaphore ``backend="posix"``: named POSIX semaphores through cffi (``csrc/posixsem.c``).

Why cffi and not posix_ipc: posix_ipc's timed acquire is ``sem_timedwait``, whose
absolute deadline is on CLOCK_REALTIME. Set the wall clock back an hour during a
1 s wait and it waits an hour and a second; forward, and it returns early.
``sem_clockwait(CLOCK_MONOTONIC)`` (glibc >= 2.30) cannot be moved, and a timed wait
here is ``_wait.retry`` over that call with the time left on one monotonic
``Deadline`` (EINTR is an attempt that waits again for the rest, PEP 475), so a
wait never ends early and never overstays. posix_ipc stays a test peer.

Closing while another thread waits. ``sem_close`` unmaps the semaphore, so a thread
still inside ``sem_wait`` on it would touch unmapped memory. The C handle counts the
calls in flight, lock-free: ``close()`` drops the handle's own reference and
whoever drops the last one (close, or the last call to return) does ``sem_close``;
a call made after ``close()`` gets EBADF, which is ``ClosedError``. The Python side
therefore takes no lock, and ``acquire()``/``release()`` with their defaults are
one C call each. (They were a lock, a loop and several calls: an acquire and a
release took ~20,000 instructions, against ~1,600 for posix_ipc's; now ~4,900.)

Waiting without taking (``_wait_positive``, for an event loop's acquire, which must
not take a unit it may be cancelled before using): POSIX has no such call. glibc's
``sem_t`` is one 64-bit word, the value in the low half and the count of sleepers in
the high half, and ``sem_post`` FUTEX_WAKEs one sleeper when that count is not 0.
The C side waits exactly as glibc's ``sem_wait`` slow path does, minus the taking:
count itself as a sleeper, FUTEX_WAIT while the value is 0, uncount; and since the
wake-up it received might have been meant for a real ``sem_wait``, it passes one on
(FUTEX_WAKE) when it leaves with the value positive and others still sleep: at worst
a spurious wake-up, never a lost one. The alternatives were worse: polling
``sem_getvalue`` wakes up all the time and still notices late; ``sem_wait`` then
``sem_post`` takes the unit for a moment (another process may see 0 and time out,
and a crash in between loses it). The layout is checked on a live semaphore when
first used (``ipckit_psem_can_peek``); with another C library the wait falls back to
polling the value with naps of 50 µs to 2 ms.
"""

from __future__ import annotations

import errno
import os
from typing import Any, Optional

from . import _ffi
from ._errors import As, ClosedError, ExistsError, NotFoundError, closed_error, error_from_errno
from ._naming import NAME_MAX, check_posix_name
from ._semaphore import Semaphore, check_release_n, check_value
from ._timeouts import Deadline
from ._wait import WOULD_BLOCK, Backoff

ffi, lib = _ffi.ffi, _ffi.lib
_wait = lib.ipckit_psem_wait
_post = lib.ipckit_psem_post
_EAGAIN, _ETIMEDOUT, _EINTR, _EOVERFLOW = -errno.EAGAIN, -errno.ETIMEDOUT, -errno.EINTR, -errno.EOVERFLOW
SEM_VALUE_MAX = lib.SEM_VALUE_MAX

# glibc keeps a semaphore as the file /dev/shm/sem.NAME, so NAME_MAX (255) leaves 251
# bytes for the name: a longer one is a ValueError here, not ENAMETOOLONG from sem_open.
SEM_NAME_MAX = NAME_MAX - len("sem.")

_ON_HANDLE = {errno.EBADF: As(ClosedError, "the semaphore handle is closed")}
_FIRST_NAP, _MAX_NAP = 50e-6, 2e-3


def _check_sem_name(name: Any) -> str:
    return check_posix_name(name, max_bytes=SEM_NAME_MAX, why=" for a POSIX semaphore (glibc stores it as /dev/shm/sem.NAME)")


class PosixSemaphore(Semaphore):
    """``backend="posix"``: a named POSIX semaphore (the file /dev/shm/sem.NAME)."""

    backend = "posix"
    _h: Any = None

    @classmethod
    def _create(cls, name: Any, value: Any, mode: int, count: Optional[int], undo: bool) -> "Semaphore":
        name = _check_sem_name(name)
        check_value(value, "value", SEM_VALUE_MAX, "SEM_VALUE_MAX")
        if count not in (None, 1):
            raise ValueError("count > 1 (a semaphore set) needs backend='sysv'")
        if undo:
            raise ValueError("undo (SEM_UNDO) needs backend='sysv': POSIX semaphores have no undo")
        self = cls._open_handle(name, os.O_CREAT | os.O_EXCL, mode, value)
        try:
            # sem_open applied the umask; glibc keeps the semaphore in /dev/shm/sem.NAME.
            os.chmod(f"/dev/shm/sem.{name[1:]}", mode)
        except FileNotFoundError:  # pragma: no cover - a libc that stores them elsewhere
            pass
        except OSError as exc:
            self.close()
            lib.ipckit_sem_unlink(name.encode())
            raise error_from_errno(exc.errno, "chmod", name) from exc
        return self

    @classmethod
    def _open(cls, name: Any, undo: bool) -> "Semaphore":
        name = _check_sem_name(name)
        if undo:
            raise ValueError("undo (SEM_UNDO) needs backend='sysv': POSIX semaphores have no undo")
        return cls._open_handle(name, 0, 0, 0)

    @classmethod
    def _open_id(cls, id: int, undo: bool) -> "Semaphore":  # pragma: no cover - the facade refuses id= for posix
        raise ValueError("POSIX semaphores have no id: open them by name")

    @classmethod
    def _open_handle(cls, name: str, oflag: int, mode: int, value: int) -> "PosixSemaphore":
        h = ffi.new("struct ipckit_psem *")
        overrides = {
            errno.EEXIST: As(ExistsError, f"a POSIX semaphore named {name!r} exists"),
            errno.ENOENT: As(NotFoundError, f"no POSIX semaphore named {name!r}"),
        }
        while True:
            rc = lib.ipckit_psem_open(h, name.encode(), oflag, mode, value)
            if rc != _EINTR:
                break
        _ffi.check(rc, "sem_open", overrides)
        self = cls.__new__(cls)
        self.name = name
        self._h = h
        self._closed = False
        return self

    # --- the hot path: one C call each ------------------------------------------------

    def acquire(self, blocking: bool = True, timeout: Optional[float] = None) -> bool:
        if timeout is None and blocking is True and _wait(self._h, -1) == 0:
            return True
        return self._acquire(blocking, timeout)

    def _acquire_attempt(self, limit: Deadline) -> Any:
        """One wait in the kernel up to *limit* (``sem_clockwait``; ``sem_trywait`` for
        an expired one): True, or ``WOULD_BLOCK`` when it timed out or was interrupted."""
        rc = _wait(self._h, limit.remaining_ns())
        if rc == 0:
            return True
        if rc == _EAGAIN or rc == _ETIMEDOUT or rc == _EINTR:
            return WOULD_BLOCK
        raise self._error(rc, "sem_wait")

    def release(self, n: int = 1) -> None:
        """Increment the value by *n*: *n* ``sem_post`` calls (POSIX has no atomic
        post-n). ``ValueError`` if the value would pass ``SEM_VALUE_MAX`` (the posts
        made before that stay)."""
        if n.__class__ is not int or not 0 < n <= SEM_VALUE_MAX:
            check_release_n(n)
            raise ValueError(f"n must be <= SEM_VALUE_MAX ({SEM_VALUE_MAX}), got {n}")
        rc = _post(self._h, n)
        if rc != 0:
            if rc == _EOVERFLOW and not self._closed:
                raise ValueError(f"release would raise the value past SEM_VALUE_MAX ({SEM_VALUE_MAX})")
            raise self._error(rc, "sem_post")

    @property
    def value(self) -> int:
        self._check_open()
        return _ffi.check(lib.ipckit_psem_getvalue(self._h), f"sem_getvalue({self.name!r})", _ON_HANDLE)

    def _positive_attempt(self, limit: Deadline) -> Any:
        """Wait up to *limit* until the value is positive, taking nothing (see the
        module docstring): True, or ``WOULD_BLOCK``."""
        rc = lib.ipckit_psem_wait_positive(self._h, limit.remaining_ns())
        if rc == 0:
            return True
        if rc == _EAGAIN or rc == _EINTR:
            return WOULD_BLOCK
        if rc == -errno.ENOSYS:  # not glibc's sem_t: look at the value between naps
            naps = Backoff(_FIRST_NAP, _MAX_NAP)
            while self.value == 0:
                if limit.expired():
                    return WOULD_BLOCK
                naps.wait(limit)
            return True
        raise self._error(rc, "sem_wait")

    def _error(self, rc: int, what: str) -> BaseException:
        if self._closed:
            return closed_error(self)
        return error_from_errno(-rc, f"{what}({self.name!r})", overrides=_ON_HANDLE)

    def unlink(self) -> None:
        """``sem_unlink``: the name goes now; open handles keep working until closed."""
        overrides = {errno.ENOENT: As(NotFoundError, f"no POSIX semaphore named {self.name!r}")}
        _ffi.check(lib.ipckit_sem_unlink(self.name.encode()), "sem_unlink", overrides)

    def _close(self) -> None:
        if self._h is not None:
            lib.ipckit_psem_close(self._h)  # sem_close now, or when the last call in flight returns


__all__ = ["PosixSemaphore", "SEM_NAME_MAX"]
