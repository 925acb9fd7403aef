"""The one wait loop. Every blocking call that has a deadline goes through ``retry()``.

An operation is written as an *attempt*: a function that tries once and returns its
result, or ``WOULD_BLOCK`` when it cannot complete yet. What to wait for before the
next try is a *waiter*. The loop::

    attempt(limit) ─┬─ result ───────────────────────────────► return it
                    └─ WOULD_BLOCK ─ deadline passed? ─ yes ─► Timeout
                                                      └ no ──► waiter, then attempt again

The rules it keeps, for every primitive alike:

* The first attempt is made even when the deadline has already passed
  (``timeout=0`` asks "ready now?"), and ``Timeout`` is raised only after an attempt
  failed at or past the deadline: a wait never ends early.
* An attempt gets *limit*, the deadline it may block until inside the kernel. Where
  the kernel has a timed wait of its own (``sem_clockwait``, ``semtimedop``, the shm
  ring's futex) the attempt waits there and the waiter is ``NO_WAIT``; where it gives
  a descriptor, the attempt is non-blocking and the waiter is ``ReadyFd`` (poll);
  where it gives nothing (SysV message queues), ``Backoff`` naps.
* EINTR is an attempt returning ``WOULD_BLOCK``. Between attempts Python runs its
  signal handlers (PEP 475), and an exception one raises propagates.

The loop is written once, as the generator ``attempts()``: it yields where it has to
wait. Two drivers run it. ``retry()`` below waits with ``waiter.wait(deadline)``;
``ipckit.aio`` passes ``limit=NOW`` (an attempt never blocks the event loop) and
awaits the waiter's asynchronous twin instead, so cancellation can only happen
between attempts, never inside one: a cancelled wait has consumed nothing.

Blocking calls (``timeout=None``) on a hot path make their one blocking system call
directly and come here only when it was interrupted (EINTR).
"""

from __future__ import annotations

import select
import time
from typing import Any, Callable, Generator, Optional, TypeVar

from ._timeouts import Deadline

T = TypeVar("T")


class _WouldBlock:
    __slots__ = ()

    def __repr__(self) -> str:
        return "WOULD_BLOCK"


#: What an attempt returns when it cannot complete yet.
WOULD_BLOCK: Any = _WouldBlock()

#: The limit an attempt gets when it must not block at all (already expired).
NOW = Deadline(0.0)

POLLIN = select.POLLIN | select.POLLPRI
POLLOUT = select.POLLOUT

Attempt = Callable[[Deadline], Any]


class Waiter:
    """What to wait for between two attempts.

    ``wait(deadline)`` returns when another attempt may succeed (readiness is only a
    hint: another process may take what was ready) or once *deadline* has passed.
    Waiters are plain data otherwise, so ``ipckit.aio`` can wait for the same thing
    asynchronously."""

    __slots__ = ()

    def wait(self, deadline: Deadline) -> None:
        raise NotImplementedError


class _NoWait(Waiter):
    """The attempt waited in the kernel itself, up to its limit: try again at once."""

    __slots__ = ()

    def wait(self, deadline: Deadline) -> None:
        return None

    def __repr__(self) -> str:
        return "NO_WAIT"


NO_WAIT: Waiter = _NoWait()


class ReadyFd(Waiter):
    """Wait until descriptor *fd* is ready for *events* (``POLLIN`` / ``POLLOUT``)."""

    __slots__ = ("fd", "events")

    def __init__(self, fd: int, events: int) -> None:
        self.fd = fd
        self.events = events

    def wait(self, deadline: Deadline) -> None:
        wait_fd(self.fd, self.events, deadline)

    def __repr__(self) -> str:
        return f"ReadyFd({self.fd}, {'POLLOUT' if self.events & POLLOUT else 'POLLIN'})"


class Backoff(Waiter):
    """Nap between attempts, from *first* doubling up to *maximum* seconds, never past
    the deadline: for kernel objects that offer nothing to wait on (SysV message
    queues), and short races (a FIFO's other side, a full Unix backlog).

    It keeps the current nap, so make one per call. *observe*, if given, is a cheap
    check that never consumes anything ("may an attempt succeed now?"), for
    asynchronous waiters that watch from a thread."""

    __slots__ = ("nap", "maximum", "observe")

    def __init__(self, first: float, maximum: float, observe: Optional[Callable[[], bool]] = None) -> None:
        self.nap = first
        self.maximum = maximum
        self.observe = observe

    def wait(self, deadline: Deadline) -> None:
        left = deadline.remaining()
        time.sleep(self.nap if left is None else min(self.nap, left))
        self.nap = min(self.nap * 2, self.maximum)

    def __repr__(self) -> str:
        return f"Backoff({self.nap}, {self.maximum})"


def attempts(attempt: Attempt, deadline: Deadline, what: str, limit: Deadline, *, tried: bool = False) -> Generator[None, None, Any]:
    """The loop itself: yields each time it has to wait; returns the attempt's result.

    *limit* is passed to every attempt: the deadline it may block until (the real
    one for a synchronous caller, ``NOW`` for an event loop). *tried*: the caller
    already made the first attempt, and it returned ``WOULD_BLOCK``."""
    result = WOULD_BLOCK if tried else attempt(limit)
    while result is WOULD_BLOCK:
        if deadline.expired():
            raise deadline.timeout_error(what)
        yield
        result = attempt(limit)
    return result


def retry(attempt: Attempt, deadline: Deadline, what: str, waiter: Waiter = NO_WAIT) -> Any:
    """Run *attempt* until it succeeds (its result) or *deadline* passes (``Timeout``
    naming *what*), waiting with *waiter* in between. See the module docstring."""
    result = attempt(deadline)
    if result is not WOULD_BLOCK:  # the usual case costs no generator
        return result
    loop = attempts(attempt, deadline, what, deadline, tried=True)
    try:
        while True:
            next(loop)
            waiter.wait(deadline)
    except StopIteration as done:
        return done.value


def wait_fd(fd: int, events: int, deadline: Deadline) -> bool:
    """Wait until *fd* is ready for *events*; False once *deadline* has passed.

    Polls at least once, so an expired deadline (``timeout=0``) still asks "ready
    now?". A fresh poll object per wait, because one object must not be polled from
    two threads. EINTR is retried by poll() itself (PEP 475), with the time left."""
    poller = select.poll()
    poller.register(fd, events)
    while True:
        if poller.poll(deadline.remaining_ms()):
            return True
        if deadline.expired():  # poll() rounds up, so this is normally true at once
            return False


__all__ = ["NOW", "NO_WAIT", "POLLIN", "POLLOUT", "WOULD_BLOCK", "Backoff", "ReadyFd", "Waiter", "attempts", "retry", "wait_fd"]
