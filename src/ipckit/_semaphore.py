"""Semaphore: the public class, its argument checks, and dispatch to a backend.

``Semaphore.create(...)`` / ``open(...)`` validate what every backend shares and
return an instance of the backend's subclass (``isinstance(s, Semaphore)`` holds,
and ``acquire``/``release`` are the subclass's own methods, with nothing between)::

    backend="posix"  ->  _semaphore_posix.PosixSemaphore   sem_open / sem_clockwait / sem_post (cffi, csrc/posixsem.c)
    backend="sysv"   ->  _semaphore_sysv.SysvSemaphore     semget / semtimedop (cffi, csrc/sysvsem*.c), sets of N

The contract a backend subclass implements
------------------------------------------

* ``_create(name, value, mode, count, undo)`` / ``_open(name, undo)`` (classmethods):
  *mode* is checked, *count* None or >= 1; the backend checks *name* and *value*.
  ``_open_id(id, undo)`` for SysV (``open(id=...)``).
* ``acquire``, ``release``, ``value``, ``unlink``, ``_close``. Waiting is one
  *attempt* for ``_wait.retry``: ``_acquire_attempt(limit)`` waits in the kernel up
  to *limit* (``sem_clockwait`` / ``semtimedop``; with ``_wait.NOW`` it never
  blocks) and returns True or ``WOULD_BLOCK``, so its waiter is ``NO_WAIT``.
* ``_wait_positive(limit) -> bool``: wait until the value is positive without
  taking anything, up to *limit* (False when it passed); callable from a worker
  thread without the GIL, for an event loop's acquire.

Shared here: the value and release-count checks, threading's ``blocking``/``timeout``
rules, ``with`` (acquire/release, not close), and pickling by name.
"""

from __future__ import annotations

from typing import Any, Optional

from ._errors import Timeout
from ._naming import backend_class, check_mode, check_open_target, check_positive_int
from ._resource import Resource
from ._timeouts import Deadline
from ._wait import NO_WAIT, retry

_BACKEND_CLASSES = {
    "posix": ("._semaphore_posix", "PosixSemaphore"),
    "sysv": ("._semaphore_sysv", "SysvSemaphore"),
}


def _backend_class(backend: object) -> "type[Semaphore]":
    return backend_class(_BACKEND_CLASSES, backend)  # type: ignore[no-any-return]


def check_value(value: object, argument: str, maximum: int, limit_name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{argument} must be an int, not {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{argument} must be >= 0, got {value}")
    if value > maximum:
        raise ValueError(f"{argument} must be <= {maximum} ({limit_name}), got {value}")
    return value


def check_release_n(n: object) -> int:
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n must be an int, not {type(n).__name__}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    return n


def wait_deadline(blocking: object, timeout: object) -> Deadline:
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
    def open(cls, name: Any = None, *, backend: str = "posix", undo: bool = False, id: Optional[int] = None) -> "Semaphore":
        """Open an existing semaphore; ``NotFoundError`` if there is none by *name*.

        ``id=`` (SysV only) opens the set with that semid instead of looking up a
        key: ``Semaphore.open(id=s.id, backend="sysv")``."""
        impl = _backend_class(backend)
        by_id = check_open_target(name, id, backend)
        if by_id is not None:
            return impl._open_id(by_id, bool(undo))
        return impl._open(name, bool(undo))

    # --- what each backend implements -------------------------------------------

    @classmethod
    def _create(cls, name: Any, value: Any, mode: int, count: Optional[int], undo: bool) -> "Semaphore":
        raise NotImplementedError

    @classmethod
    def _open(cls, name: Any, undo: bool) -> "Semaphore":
        raise NotImplementedError

    @classmethod
    def _open_id(cls, id: int, undo: bool) -> "Semaphore":
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

    def _acquire_attempt(self, limit: Deadline) -> Any:
        raise NotImplementedError

    def _positive_attempt(self, limit: Deadline) -> Any:
        raise NotImplementedError

    # --- shared behaviour ----------------------------------------------------------

    def _acquire(self, blocking: object, timeout: object) -> bool:
        """The general path of ``acquire()``: threading's argument rules, then the one
        wait loop over the backend's attempt (which waits in the kernel: ``NO_WAIT``)."""
        deadline = wait_deadline(blocking, timeout)
        self._check_open()
        try:
            return retry(self._acquire_attempt, deadline, "acquire", NO_WAIT)  # type: ignore[no-any-return]
        except Timeout:
            return False

    def _wait_positive(self, deadline: Deadline) -> bool:
        """Wait until the value is positive, taking nothing; False once *deadline*
        passed. For ``ipckit.aio``: run it in a worker thread (the C call waits
        without the GIL), then try ``_acquire_attempt(NOW)``, which may lose the
        race to another process and wait again; a cancelled wait took nothing."""
        self._check_open()
        try:
            return retry(self._positive_attempt, deadline, "wait", NO_WAIT)  # type: ignore[no-any-return]
        except Timeout:
            return False

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


__all__ = ["Semaphore", "check_release_n", "check_value", "wait_deadline"]
