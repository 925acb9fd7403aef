"""Semaphore: the public class, its argument checks, and the POSIX backend.

``Semaphore.create(...)`` / ``open(...)`` return an instance of the backend's subclass::

    backend="posix"  ->  PosixSemaphore   sem_open / sem_clockwait / sem_post (cffi, csrc/posixsem.c)
    backend="sysv"   ->  SysvSemaphore    semget / semtimedop (cffi; _semaphore_sysv.py), sets of N

Why cffi and not posix_ipc for POSIX semaphores: posix_ipc's timed acquire is
``sem_timedwait``, whose absolute deadline is on CLOCK_REALTIME. Set the wall clock
back an hour during a 1 s wait and it waits an hour and a second; forward, and it
returns early. ``sem_clockwait(CLOCK_MONOTONIC)`` (glibc >= 2.30) cannot be moved,
and every wait here is a loop on one monotonic ``Deadline`` that also retries EINTR
with the time that is left (PEP 475), so a wait never ends early and never overstays.

Closing a POSIX handle (``sem_close``) unmaps the semaphore. A thread still blocked
in ``sem_wait`` on it would then touch unmapped memory, so ``close()`` only marks
the object closed while a call is in flight; the last call to return releases it.
"""

from __future__ import annotations

import errno
import os
import threading
from typing import Any, Optional

from . import _ffi
from ._errors import closed_error, error_from_errno
from ._naming import NAME_MAX, backend_class, check_mode, check_positive_int, check_posix_name
from ._resource import Resource
from ._timeouts import Deadline

_BACKEND_CLASSES = {
    "posix": ("._semaphore", "PosixSemaphore"),
    "sysv": ("._semaphore_sysv", "SysvSemaphore"),
}


def _backend_class(backend: object) -> "type[Semaphore]":
    return backend_class(_BACKEND_CLASSES, backend)  # type: ignore[no-any-return]


def _check_value(value: object, argument: str, maximum: int, limit_name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{argument} must be an int, not {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{argument} must be >= 0, got {value}")
    if value > maximum:
        raise ValueError(f"{argument} must be <= {maximum} ({limit_name}), got {value}")
    return value


def _wait_deadline(blocking: object, timeout: object) -> Deadline:
    """The deadline for ``acquire(blocking, timeout)``, with threading's rules."""
    if not blocking:
        if timeout is not None:
            raise ValueError("can't specify a timeout for a non-blocking call")
        return Deadline(0.0)
    return Deadline.from_user(timeout)


def _reopen(backend: str, name: Any, index: int, undo: bool) -> "Semaphore":
    """Unpickling: open the same semaphore by name in the receiving process."""
    sem = Semaphore.open(name, backend=backend, undo=undo)
    return sem[index] if index else sem  # type: ignore[index]


class Semaphore(Resource):
    """A named counting semaphore shared between processes. See docs/reference/contract.md, "Semaphore".

    Use ``Semaphore.create()`` / ``Semaphore.open()``. ``with sem:`` acquires and
    releases (it does not close, as in ``threading``). ``close()`` releases this
    handle; ``unlink()`` removes the name whether or not the handle is closed.
    Pickling (e.g. for a ``spawn`` child) opens the same semaphore by name.
    """

    backend: str = ""
    name: Any = None
    count: int = 1  # semaphores in the set (SysV); always 1 for POSIX
    index: int = 0  # which member of the set this object is (SysV)

    @classmethod
    def create(
        cls,
        name: Any,
        value: Any = 1,
        *,
        mode: int = 0o600,
        backend: str = "posix",
        count: Optional[int] = None,
        undo: bool = False,
    ) -> "Semaphore":
        """Create a semaphore with initial *value*; ``ExistsError`` if *name* is taken.

        SysV only: ``count=N`` makes a set of N semaphores (this object is number 0;
        ``sem[i]`` is number i) and *value* may then be a sequence of N values;
        ``undo=True`` makes this handle's acquire/release/op use ``SEM_UNDO``.
        """
        impl = _backend_class(backend)
        check_positive_int(count, "count", allow_none=True)
        return impl._create(name, value, check_mode(mode), count, bool(undo))

    @classmethod
    def open(cls, name: Any, *, backend: str = "posix", undo: bool = False) -> "Semaphore":
        """Open an existing semaphore; ``NotFoundError`` if there is none by *name*."""
        return _backend_class(backend)._open(name, bool(undo))

    # --- what each backend implements -------------------------------------------

    @classmethod
    def _create(cls, name: Any, value: Any, mode: int, count: Optional[int], undo: bool) -> "Semaphore":
        raise NotImplementedError

    @classmethod
    def _open(cls, name: Any, undo: bool) -> "Semaphore":
        raise NotImplementedError

    def acquire(self, blocking: bool = True, timeout: Optional[float] = None) -> bool:
        """Decrement the value, waiting while it is 0. Return True when acquired,
        False if ``blocking=False`` or *timeout* seconds (monotonic) passed first.
        Signals do not cut the wait short (EINTR is retried)."""
        raise NotImplementedError

    def release(self, n: int = 1) -> None:
        """Increment the value by *n* (>= 1), waking up to *n* waiters."""
        raise NotImplementedError

    @property
    def value(self) -> int:
        """The current value (a snapshot: other processes may change it at once)."""
        raise NotImplementedError

    def unlink(self) -> None:
        raise NotImplementedError

    # --- shared behaviour ----------------------------------------------------------

    def __enter__(self) -> "Semaphore":  # type: ignore[override]
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:  # type: ignore[override]
        self.release()

    def __reduce__(self) -> tuple:
        if self.name is None:
            raise TypeError("a private semaphore has no name to be opened by: it cannot be pickled")
        return (_reopen, (self.backend, self.name, self.index, getattr(self, "undo", False)))

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        member = f"[{self.index}] of {self.count}" if self.count > 1 else ""
        return f"<ipckit.Semaphore {self.name!r}{member} backend={self.backend!r} {state}>"


def _check_release_n(n: object) -> int:
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n must be an int, not {type(n).__name__}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    return n


# glibc keeps a semaphore as the file /dev/shm/sem.NAME, so NAME_MAX (255) leaves 251
# bytes for the name: a longer one is a ValueError here, not ENAMETOOLONG from sem_open.
SEM_NAME_MAX = NAME_MAX - len("sem.")


def _check_sem_name(name: Any) -> str:
    return check_posix_name(name, max_bytes=SEM_NAME_MAX, why=" for a POSIX semaphore (glibc stores it as /dev/shm/sem.NAME)")


class PosixSemaphore(Semaphore):
    """``backend="posix"``: a named POSIX semaphore (the file /dev/shm/sem.NAME)."""

    backend = "posix"
    _sem: Any = None
    _lock: threading.Lock
    _busy = 0

    @classmethod
    def _create(cls, name: Any, value: Any, mode: int, count: Optional[int], undo: bool) -> "Semaphore":
        name = _check_sem_name(name)
        _check_value(value, "value", _ffi.lib.SEM_VALUE_MAX, "SEM_VALUE_MAX")
        if count not in (None, 1):
            raise ValueError("count > 1 (a semaphore set) needs backend='sysv'")
        if undo:
            raise ValueError("undo (SEM_UNDO) needs backend='sysv': POSIX semaphores have no undo")
        lib = _ffi.lib
        out = _ffi.ffi.new("sem_t **")
        _ffi.call(lib.ipckit_sem_open, name.encode(), lib.O_CREAT | lib.O_EXCL, mode, value, out, what=f"sem_open({name!r})")
        self = cls._wrap(name, out[0])
        try:
            # sem_open applied the umask; glibc keeps the semaphore in /dev/shm/sem.NAME.
            os.chmod(f"/dev/shm/sem.{name[1:]}", mode)
        except FileNotFoundError:  # pragma: no cover - a libc that stores them elsewhere
            pass
        except BaseException:
            self.close()
            lib.ipckit_sem_unlink(name.encode())
            raise
        return self

    @classmethod
    def _open(cls, name: Any, undo: bool) -> "Semaphore":
        name = _check_sem_name(name)
        if undo:
            raise ValueError("undo (SEM_UNDO) needs backend='sysv': POSIX semaphores have no undo")
        out = _ffi.ffi.new("sem_t **")
        _ffi.call(_ffi.lib.ipckit_sem_open, name.encode(), 0, 0, 0, out, what=f"sem_open({name!r})")
        return cls._wrap(name, out[0])

    @classmethod
    def _wrap(cls, name: str, sem: Any) -> "PosixSemaphore":
        self = cls.__new__(cls)
        self.name = name
        self._sem = sem
        self._lock = threading.Lock()
        self._busy = 0
        self._closed = False
        return self

    # Every call holds a "busy" count so that close() from another thread never
    # unmaps the semaphore under a call in flight (see the module docstring).
    def _enter(self) -> Any:
        with self._lock:
            if self._closed:
                raise closed_error(self)
            self._busy += 1
            return self._sem

    def _leave(self) -> None:
        with self._lock:
            self._busy -= 1
            last = self._closed and self._busy == 0
        if last:
            self._free()

    def _close(self) -> None:
        with self._lock:
            idle = self._busy == 0
        if idle:
            self._free()

    def _free(self) -> None:
        with self._lock:
            sem, self._sem = self._sem, None
        if sem is not None:
            _ffi.lib.ipckit_sem_close(sem)

    def acquire(self, blocking: bool = True, timeout: Optional[float] = None) -> bool:
        deadline = _wait_deadline(blocking, timeout)
        wait = _ffi.lib.ipckit_sem_wait
        sem = self._enter()
        try:
            while True:
                ns = deadline.remaining_ns()
                rc = wait(sem, ns)
                if rc == 0:
                    return True
                if rc == -errno.EAGAIN or rc == -errno.ETIMEDOUT:
                    if ns == 0 or deadline.expired():
                        return False
                elif rc != -errno.EINTR:
                    raise error_from_errno(-rc, f"sem_wait({self.name!r})")
                # EINTR, or woke a hair early: Python signal handlers run here, then wait the rest.
        finally:
            self._leave()

    def release(self, n: int = 1) -> None:
        """Increment the value by *n*: *n* ``sem_post`` calls (POSIX has no atomic
        post-n). ``ValueError`` if the value would pass ``SEM_VALUE_MAX``."""
        _check_release_n(n)
        post = _ffi.lib.ipckit_sem_post
        sem = self._enter()
        try:
            for _ in range(n):
                rc = post(sem)
                if rc == -errno.EOVERFLOW:
                    raise ValueError(f"release would raise the value past SEM_VALUE_MAX ({_ffi.lib.SEM_VALUE_MAX})")
                if rc < 0:
                    raise error_from_errno(-rc, f"sem_post({self.name!r})")
        finally:
            self._leave()

    @property
    def value(self) -> int:
        sem = self._enter()
        try:
            return _ffi.check(_ffi.lib.ipckit_sem_getvalue(sem), f"sem_getvalue({self.name!r})")
        finally:
            self._leave()

    def unlink(self) -> None:
        """``sem_unlink``: the name goes now; open handles keep working until closed."""
        _ffi.check(_ffi.lib.ipckit_sem_unlink(self.name.encode()), f"sem_unlink({self.name!r})")


__all__ = ["Semaphore"]
