"""The one async driver: ``_wait.attempts()`` run on an event loop.

Every coroutine of ``ipckit.aio`` is the synchronous call's *attempt* and *waiter*
(see ``ipckit._wait``) handed to ``run()``. ``run`` calls the attempt with
``limit=NOW`` -- in the task, on the loop's thread, never blocking -- and between
attempts awaits the waiter's asynchronous twin:

``ReadyFd`` (pipes, sockets, POSIX queues, the signal catcher's pipe)
    The loop's own readiness (``add_reader`` on asyncio, ``wait_readable`` on trio).
    Tasks awaiting the same descriptor share one registration (a *gate*): the first
    registers, the others wait for it to fire, and all try again.

A waiter with ``wait(deadline)`` that blocks in C (the shm ring's futex, a
semaphore becoming positive, ``ipckit.Queue``)
    One parked *observer* thread per watched object and direction. It only
    observes: it waits in C (without the GIL) until a claim *may* succeed and then
    wakes every task registered with it; each task claims in the loop with its own
    attempt. So a task cancelled at any point has taken nothing -- the claim never
    happens in a thread that could outlive the cancel. Losers of a race (another
    task or process claimed first) register again. An observer nobody needs parks
    on a condition variable, and ends after ``PARK`` seconds.

``Backoff`` (SysV queues, which have no timed wait; a FIFO's other side; a full
Unix backlog)
    Async naps, doubling from the waiter's first nap to its maximum: the cost is up
    to that maximum in latency and a wake-up per nap while idle (docs/async.md).

Cancellation can therefore only land between attempts (at an ``await``), never
inside one: a cancelled wait has consumed nothing. ``Timeout`` is raised by the same
loop as in the synchronous API, after an attempt failed at or past the deadline.
"""

from __future__ import annotations

import asyncio
import threading
import time
from functools import partial
from typing import Any, Callable, Optional

import anyio
import sniffio

from .._timeouts import Deadline
from .._wait import NOW, POLLOUT, WOULD_BLOCK, Backoff, ReadyFd, Waiter, attempts

#: How long an observer sleeps in C at most before it looks whether it is still
#: needed (it is also woken at once where the waiter can be interrupted).
SLICE = 0.25
#: How long an unneeded observer thread stays parked before it ends.
PARK = 5.0
#: A schedule point before every this many attempts that succeeded at once, so a
#: task draining a busy queue lets the other tasks of its loop run.
YIELD_EVERY = 16

_get_ident = threading.get_ident
_current_library = sniffio.current_async_library
_calls = 0


async def run(attempt: Callable[[Deadline], Any], deadline: Deadline, what: str, waiter: Waiter) -> Any:
    """Run *attempt* (with ``NOW``) until it succeeds or *deadline* passes
    (``Timeout`` naming *what*), awaiting *waiter* in between."""
    global _calls
    _calls += 1
    if _calls % YIELD_EVERY == 0:
        await anyio.lowlevel.checkpoint()  # before the attempt: a cancel here took nothing
    result = attempt(NOW)
    if result is not WOULD_BLOCK:
        return result
    loop = attempts(attempt, deadline, what, NOW, tried=True)
    try:
        while True:
            next(loop)
            await wait(waiter, deadline)
    except StopIteration as done:
        return done.value


async def wait(waiter: Waiter, deadline: Deadline) -> None:
    """Wait asynchronously for what *waiter* waits for, or until *deadline*."""
    if type(waiter) is Backoff:
        left = deadline.remaining()
        nap = waiter.nap if left is None else min(waiter.nap, left)
        waiter.nap = min(waiter.nap * 2, waiter.maximum)
        await anyio.sleep(nap)
        return
    left = deadline.remaining()
    if left is None:
        await _wait(waiter)
        return
    with anyio.move_on_after(left):
        await _wait(waiter)


async def _wait(waiter: Waiter) -> None:
    if type(waiter) is ReadyFd:
        await wait_fd(waiter.fd, waiter.events)
    else:
        await _observe(waiter)


# ---------------------------------------------------------------- descriptors


class _Gate:
    """One loop's registration of a descriptor: the first task waits on the loop,
    the others on ``done``; ``close()`` (the object is being closed) ends the wait."""

    __slots__ = ("done", "future", "fd")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.done = anyio.Event()
        self.future: Optional[asyncio.Future] = None

    def close(self) -> None:
        future = self.future
        if future is not None and not future.done():
            future.set_result(None)


# (thread, fd, events) -> gate: a loop lives in one thread, so the thread names it.
_gates: dict[tuple[int, int, int], _Gate] = {}


def _set_result(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)


async def wait_fd(fd: int, events: int) -> None:
    """Until *fd* is ready for *events* (a hint: try again after), or it is being
    closed through ``notify_closing``."""
    key = (_get_ident(), fd, events)
    gate = _gates.get(key)
    if gate is not None:
        await gate.done.wait()
        return
    gate = _gates[key] = _Gate(fd)
    try:
        if _current_library() == "asyncio":
            loop = asyncio.get_running_loop()
            future = gate.future = loop.create_future()
            if events & POLLOUT:
                loop.add_writer(fd, _set_result, future)
                try:
                    await future
                finally:
                    loop.remove_writer(fd)
            else:
                loop.add_reader(fd, _set_result, future)
                try:
                    await future
                finally:
                    loop.remove_reader(fd)
        else:
            try:
                if events & POLLOUT:
                    await anyio.wait_writable(fd)
                else:
                    await anyio.wait_readable(fd)
            except anyio.ClosedResourceError:
                pass  # closed under us: the next attempt raises ClosedError
    finally:
        if _gates.get(key) is gate:
            del _gates[key]
        gate.done.set()


def notify_closing(fd: int) -> None:
    """*fd* is about to be closed in this thread: end the waits on it, whose next
    attempt then raises ``ClosedError``."""
    if fd < 0:
        return
    ident = _get_ident()
    for key, gate in list(_gates.items()):
        if key[0] == ident and key[1] == fd:
            if gate.future is not None:
                gate.close()
            else:
                try:
                    anyio.notify_closing(fd)
                except Exception:  # pragma: no cover - no loop running here
                    pass


# ---------------------------------------------------------------- observers


def _waker(event: anyio.Event) -> Callable[[], None]:
    """A function any thread may call to set *event* in the running loop."""
    if _current_library() == "asyncio":
        call = asyncio.get_running_loop().call_soon_threadsafe

        def wake() -> None:
            call(event.set)

        return wake
    import trio

    return partial(trio.lowlevel.current_trio_token().run_sync_soon, event.set)


class _Observer:
    """The thread that watches one object for the tasks waiting on it (see the
    module notes). ``wakers`` maps a registration to the function that wakes its task."""

    def __init__(self, key: Any, waiter: Waiter) -> None:
        self.key = key
        self.waiter = waiter
        self.cond = threading.Condition(threading.Lock())
        self.wakers: dict[int, Callable[[], None]] = {}
        self.next_id = 0
        self.running = False

    def register(self, wake: Callable[[], None]) -> int:
        with self.cond:
            self.next_id += 1
            ticket = self.next_id
            self.wakers[ticket] = wake
            if not self.running:
                self.running = True
                threading.Thread(target=self._run, name=f"ipckit.aio observer {self.key!r}", daemon=True).start()
            else:
                self.cond.notify()
            return ticket

    def unregister(self, ticket: int) -> None:
        with self.cond:
            if self.wakers.pop(ticket, None) is None or self.wakers:
                return
        interrupt = getattr(self.waiter, "interrupt", None)
        if interrupt is not None:  # nobody waits any more: stop the C wait now
            try:
                interrupt()
            except Exception:  # pragma: no cover - closed meanwhile
                pass

    def _run(self) -> None:
        instant = 0  # waits in a row that returned at once (see below)
        while True:
            with self.cond:
                while not self.wakers:
                    if not self.cond.wait(PARK) and not self.wakers:
                        self.running = False
                        if _observers.get(self.key) is self:
                            del _observers[self.key]
                        return
            start = time.monotonic()
            end = Deadline(SLICE)
            try:
                self.waiter.wait(end)
                failed = False
            except BaseException:  # closed, removed ...: the tasks' attempts raise it
                failed = True
            if end.expired() and not failed:
                instant = 0
                continue  # the slice passed: look again whether anyone still waits
            with self.cond:
                wakers, self.wakers = list(self.wakers.values()), {}
            for wake in wakers:
                try:
                    wake()
                except RuntimeError:  # that task's loop has closed
                    pass
            # A waiter that says "ready" at once, again and again, while its tasks'
            # attempts fail, would make this thread spin: nap, growing, after three.
            instant = instant + 1 if time.monotonic() - start < 0.0001 else 0
            if instant > 3 or failed:
                time.sleep(min(0.00005 * 2 ** min(instant, 6), 0.002))


_observers: dict[Any, _Observer] = {}
_observers_lock = threading.Lock()


def _observer(waiter: Waiter) -> _Observer:
    key = getattr(waiter, "key", None)
    if key is None:
        key = waiter
    with _observers_lock:
        obs = _observers.get(key)
        if obs is None:
            obs = _observers[key] = _Observer(key, waiter)
        return obs


async def _observe(waiter: Waiter) -> None:
    event = anyio.Event()
    obs = _observer(waiter)
    ticket = obs.register(_waker(event))
    try:
        await event.wait()
    finally:
        obs.unregister(ticket)


def _after_fork_in_child() -> None:
    # The observer threads did not survive the fork; their registrations are moot.
    _observers.clear()
    _gates.clear()


import os  # noqa: E402

os.register_at_fork(after_in_child=_after_fork_in_child)

__all__ = ["notify_closing", "run", "wait", "wait_fd"]
