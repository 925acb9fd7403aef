"""Signal: send signals with payloads, collect them reliably, and the classic calls.

Discussion of the collection strategy (``Signal.catch``)
========================================================

What ``catch()`` must do: from the moment the block starts until it ends, every
instance of the named signals sent to this process is recorded, with the
``siginfo_t`` fields the standard library drops (``si_value`` above all), and
is handed to Python code on demand, from ``wait()`` or through a file
descriptor that ``selectors``/``asyncio`` can watch. The hard part is that the
process usually has threads we did not create and cannot reach: numpy/BLAS
pools, ``concurrent.futures`` executors, gRPC, ... A process-directed signal is
delivered by the kernel to *any* thread that does not block it.

Options considered:

* ``signal.signal`` + ``set_wakeup_fd`` (what asyncio and trio do). The Python
  handler runs later, in the main thread, and gets only the signal number: no
  ``si_value``, no ``si_pid``. Two identical signals in a row can be merged by
  CPython's "tripped" flag even when the kernel queued both (real-time). And it
  only works from the main thread. Out.

* ``pthread_sigmask`` + ``signalfd`` / ``sigwaitinfo`` in the calling thread,
  for the whole block. Exact and simple in a single-threaded program, but the
  mask is per thread: the kernel happily delivers the signal to a BLAS thread
  that never blocked it, where the default action runs (for SIGUSR1: the
  process dies) or, at best, the signalfd in our thread never sees it. We cannot
  block the signal in threads that already exist. Out, as the only mechanism.

* A process-wide C ``SA_SIGINFO`` handler that writes the fields to a pipe
  (chosen). The disposition is process-wide, so whichever thread the kernel
  picks runs our handler and nothing is lost. The handler is a few lines of C
  in ``_ffi/csrc/signal.c``: it copies ``si_signo``, ``si_code``, ``si_pid``,
  ``si_uid`` and ``si_value.sival_int`` into a 24-byte record and ``write(2)``s
  it (async-signal-safe) to a non-blocking pipe whose write end is stored per
  signal in a C table. Records are smaller than ``PIPE_BUF``, so concurrent
  handlers on several threads never interleave bytes, and a full pipe drops a
  whole record, which the handler counts (``SignalCatcher.dropped``). No Python
  code ever runs in the handler. Python reads one record at a time from the
  read end, so ``fileno()`` is readable exactly while a record waits.

The cheaper path, where it is safe
----------------------------------
The handler costs more than ``sigwaitinfo``: the kernel interrupts the waiting
thread, builds a signal frame, runs the handler (one ``write``), returns through
``sigreturn``, and only then does the wait see the pipe readable. So each catcher
also has a ``signalfd`` for its signals, and ``wait()`` waits in one C call
(``ipckit_sig_take``: ``ppoll``, then one ``read``). Every instance of a signal
either reached a handler (and is in the pipe) or is still pending in the kernel
(and the signalfd reads it): never both, never neither, whatever the threads do.
Which of the two happens is the kernel's choice, and we steer it where that is
cheap:

* When no *other* thread could take the signals at ``catch()`` time -- every
  other thread blocks them, which is trivially so in a single-threaded process
  (``_procfs.thread_blocked_masks``, from ``/proc/self/task``: it also sees the
  threads of C libraries, which ``threading.active_count`` does not) -- the
  waiting thread blocks the signals *while it sleeps in the kernel*, and only
  then, watching the pipe and the signalfd. A signal arriving then stays pending,
  ``ppoll`` returns (one wake-up, as with ``sigwaitinfo``), the signalfd read takes
  it, and no handler runs. Two more ``rt_sigprocmask`` calls per wait are the
  whole cost.
* Otherwise the mask is left alone and the sleeping wait watches the pipe only:
  blocking would just send each signal to another thread, whose handler then
  wakes us (two wake-ups instead of one), and the signalfd, readable for the
  instant a signal is pending before some thread takes it, would wake us for
  nothing. The handler runs, most often in the waiting thread itself, and the
  ``ppoll`` it interrupts (EINTR) looks again at once rather than returning to
  Python.

The detection only chooses the cheaper path; it never decides correctness. A
thread created later, or one that unblocks the signals, takes them through the
handler into the pipe, which every wait watches. A wait that only looks (timeout
0: ``drain``, ``wait(0)``, ``ipckit.aio``'s attempts) reads both, so a signal that
every thread blocks is collected too.

A signal that arrives while no ``wait()`` sleeps (a quick peer answers before the
caller is back in ``wait``) meets the signals unblocked and goes through the
handler: no wake-up is involved then, only the handler's own cost. Measured with
callgrind (Python instructions per round trip, ``Signal.send`` + ``wait()`` against
a C ``sigwaitinfo`` echo peer): 9,600 on the signalfd path, 11,200 through a
handler on another thread, 10,300 when the answer comes early; 36,000 and 22,000
before this design; 4,300 for ``os.kill`` + ``signal.sigwaitinfo``, which carry no
payload. The rest is cffi's call cost and the ``SignalInfo``.

Why the signals are blocked only during the kernel wait, not for the whole block
(the obvious ``sigwaitinfo`` design): a signal mask survives ``fork`` *and*
``exec``. A program that catches SIGTERM and starts workers with ``subprocess``
or ``multiprocessing`` (spawn) inside the block would give every worker SIGTERM
blocked, so ``terminate()`` would no longer stop them; threads started in the
block would keep the signals blocked for ever; and a ``pthread_kill`` aimed at
another thread would stay pending there. A mask held only inside one C call
leaks into nothing: that thread runs no other code meanwhile.

Order: when the wait unblocks the signals again, the ones that became pending
meanwhile are delivered at once to the handler, lowest number first and in send
order within one real-time signal, as the kernel delivers them; ``take`` reads the
pipe before the signalfd, so in a process where one thread takes the signals the
records come in exactly that order.

``ipckit.aio`` waits in its event loop, not in ``ipckit_sig_take``: it calls
``_attempt(NOW)`` (a ``ppoll`` with a zero timeout, then one ``read``; never
blocks) and awaits ``_waiter``, a ``ReadyFd`` on the pipe. The loop's thread keeps
the signals unblocked (``catch()`` unblocks them in the calling thread), so they
reach the pipe through the handler; asyncio's and trio's own wakeup fd is not
involved, since CPython's handler never runs for a caught signal.

Consequences, each recorded in the public docs:

* Real-time signals queue in the kernel and each instance becomes one record,
  in the order the kernel dequeued them. If two instances land within
  microseconds on *different* threads, the two handlers race to ``write`` and the
  records can swap: with one eligible thread the order is exact. Standard
  signals (SIGUSR1, ...) coalesce in the kernel while pending, as always.
* The previous ``struct sigaction`` is saved in C and put back byte for byte
  on exit. This matters for Python-level handlers: the kernel never sees the
  Python callable, it sees CPython's own C trampoline, and restoring the raw
  struct restores it (``signal.getsignal`` never changes during the block,
  because CPython's table is never touched).
* Records still unread when the block ends are discarded with the pipe: a
  signal the block collected is not delivered again afterwards. Release waits
  for handlers still running on other threads before the pipe is closed, and
  the read end and the signalfd are closed by the last ``take`` still running
  (a count in C), so neither a late write nor a late read can ever reach a
  reused descriptor.
* The calling thread unblocks the signals for the duration of the block (and
  blocks them again on exit), so that at least one thread can take them even
  when the program blocked them everywhere; a signal already pending when the
  block starts is therefore collected by it.
* Since no ``signal.signal`` is involved, ``catch()`` works in any thread.
  One signal can be collected by one block at a time (a nested or concurrent
  ``catch`` of the same signal is a ``RuntimeError``; different signals are
  independent). ``Signal.handle/ignore/default`` refuse a signal that a block
  is collecting, since the block would silently overwrite them on exit.
* ``fork()`` inside a block: the child gets the previous dispositions back (an
  ``os.register_at_fork`` hook), so its signals are not fed into the parent's
  pipe. ``exec`` resets caught dispositions anyway.

``pause`` and ``suspend``
=========================
C's ``sigsuspend(mask)`` swaps in *mask* and sleeps until a handler has run, in one
step, which is what makes "block the signal, check the flag, sigsuspend with the
old mask" free of lost wake-ups. It has no timeout and does not say which signal
ended it. ``ipckit_sig_suspend`` keeps the atomicity and adds both: the signals
that *mask* lets in are blocked and taken with ``sigtimedwait`` (atomic, timed,
and it returns the ``siginfo``), then the one taken is queued again to the same
thread with the same ``siginfo`` (``rt_tgsigqueueinfo`` lets a thread do that to
itself) and let in by setting *mask*, so its disposition acts exactly as inside
``sigsuspend``: a handler runs with the sender's ``si_pid`` and ``si_value``, a
default action ends or stops the process. The disposition is looked up when the
signal arrives: an ignored one (``SIG_IGN``, or ``SIG_DFL`` for SIGCHLD, SIGCONT,
SIGURG, SIGWINCH) is dropped, as the kernel would drop it, and the wait goes on.

A Python handler is two halves: CPython's C trampoline, which runs inside the
call above and only sets a flag, and the Python function, which CPython runs in
the main thread between bytecodes. In the main thread ``suspend`` runs it before
returning (``signal.pthread_sigmask`` checks for pending handlers), so a flag it
sets is set, and an exception it raises comes out of ``suspend``. In another
thread the function runs whenever the main thread next executes bytecode, so
there the returned signal number is the reliable answer.
"""

from __future__ import annotations

import collections
import errno
import math
import os
import re
import signal
import struct
import threading
import weakref
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator, NamedTuple, Optional, Union

from . import _ffi, _procfs
from ._errors import IPCError, closed_error, error_from_errno, translate_oserror
from ._ffi import ffi, lib
from ._resource import Resource
from ._timeouts import Deadline
from ._wait import POLLIN, WOULD_BLOCK, ReadyFd, retry

SignalLike = Union[int, str, signal.Signals]

SIGRTMIN = int(signal.SIGRTMIN)
SIGRTMAX = int(signal.SIGRTMAX)
INT_MIN, INT_MAX = -(2**31), 2**31 - 1

# glibc keeps signals 32 and 33 (below SIGRTMIN) for its thread implementation.
_RESERVED = frozenset(range(32, SIGRTMIN))
_UNCATCHABLE = frozenset({int(signal.SIGKILL), int(signal.SIGSTOP)})
# A handler that returns from a real fault re-executes the faulting instruction forever.
_FAULTS = frozenset(int(s) for s in (signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE, signal.SIGILL))

_RECORD = struct.Struct("=iiiIii")  # struct ipckit_sigrecord in csrc/signal.cdef
assert _RECORD.size == ffi.sizeof("struct ipckit_sigrecord")
_PIPE_SIZE = 256 * 1024  # about 10,900 records before any is dropped

_NAME = re.compile(r"SIG(?:RT(MIN|MAX)([+-]\d+)?|[A-Z0-9]+)\Z")

_EINTR, _EPIPE = -errno.EINTR, -errno.EPIPE


# ------------------------------------------------------------------ naming


def signal_number(sig: object, argument: str = "sig", *, allow_zero: bool = False) -> int:
    """Resolve *sig* to a signal number, checking it exists on this system.

    Accepts an int, a ``signal.Signals`` or a name, case-insensitively, with or
    without the ``SIG`` prefix: ``"SIGUSR1"``, ``"usr1"``, ``"SIGRTMIN+3"``,
    ``"rtmax-1"``. ``TypeError`` for other types, ``ValueError`` for unknown
    names and numbers out of range.
    """
    if isinstance(sig, str):
        return _parse_name(sig, argument)
    if isinstance(sig, bool) or not isinstance(sig, int):
        raise TypeError(f"{argument} must be a signal number, a signal.Signals or a name like 'SIGUSR1', not {type(sig).__name__}")
    number = int(sig)
    low = 0 if allow_zero else 1
    if not low <= number <= SIGRTMAX:
        raise ValueError(f"{argument} must be a signal number in {low}..{SIGRTMAX}, got {number}")
    if number in _RESERVED:
        raise ValueError(f"{argument}: signal {number} is reserved by the C library for its threads")
    return number


def _parse_name(name: str, argument: str) -> int:
    upper = name.upper()
    if not upper.startswith("SIG"):
        upper = "SIG" + upper
    match = _NAME.match(upper)
    if match is None:
        raise ValueError(f"{argument}: {name!r} is not a signal name (like 'SIGUSR1' or 'SIGRTMIN+3')")
    base, offset = match.groups()
    if base is not None:
        number = (SIGRTMIN if base == "MIN" else SIGRTMAX) + int(offset or 0)
        if not SIGRTMIN <= number <= SIGRTMAX:
            span = SIGRTMAX - SIGRTMIN
            raise ValueError(
                f"{argument}: {name!r} is outside the real-time range "
                f"SIGRTMIN+0..SIGRTMIN+{span} (SIGRTMAX-{span}..SIGRTMAX-0)"
            )
        return number
    member = signal.Signals.__members__.get(upper)
    if member is None:
        raise ValueError(f"{argument}: unknown signal name {name!r}")
    return int(member)


def signal_name(signo: int) -> str:
    """``"SIGUSR1"``, ``"SIGRTMIN+3"``, or ``"signal N"`` for a number with no name."""
    if SIGRTMIN < signo < SIGRTMAX:
        return f"SIGRTMIN+{signo - SIGRTMIN}"
    try:
        return signal.Signals(signo).name
    except ValueError:
        return f"signal {signo}"


def _numbers(sigs: Iterable[object], what: str) -> tuple[int, ...]:
    numbers: list[int] = []
    for sig in sigs:
        number = signal_number(sig)
        if number not in numbers:
            numbers.append(number)
    if not numbers:
        raise ValueError(f"{what} needs at least one signal")
    return tuple(numbers)


def _check_catchable(number: int, what: str) -> None:
    if number in _UNCATCHABLE:
        raise ValueError(f"{what}: {signal_name(number)} cannot be caught, blocked or ignored")



def _mask(sigs: object, argument: str) -> frozenset[int]:
    """A set of signals given as a mask (``set_mask``, ``suspend``): any iterable, maybe
    empty. SIGKILL and SIGSTOP are accepted and left out, as the kernel leaves them
    out, so ``signal.valid_signals()`` (block everything) and a mask read back work."""
    if isinstance(sigs, (str, int)) or not hasattr(sigs, "__iter__"):
        raise TypeError(f"{argument} must be a set (an iterable) of signals, not {type(sigs).__name__}")
    return frozenset(signal_number(sig, argument) for sig in sigs) - _UNCATCHABLE


def _bits(numbers: Iterable[int]) -> int:
    """A set of signals as the C side takes it: bit n-1 is signal n."""
    bits = 0
    for number in numbers:
        bits |= 1 << (number - 1)
    return bits


def _as_set(signals: Iterable[object]) -> frozenset[int]:
    return frozenset(int(s) for s in signals)  # type: ignore[call-overload]


# ------------------------------------------------------------------ SignalInfo


class SignalInfo(NamedTuple):
    """One collected signal: number, si_code, sender pid and uid, sigqueue payload or None.

    ``code`` is the kernel's ``si_code``: ``SI_USER`` (0) for ``kill``, ``SI_QUEUE``
    (-1) for ``sigqueue``, ``SI_TKILL`` (-6) for ``tgkill``/``raise``, ``SI_KERNEL``
    (128) and positive values for signals the kernel generated. ``pid``/``uid`` are
    the sender's (0 for kernel-generated signals). ``value`` is the int payload of
    ``sigqueue`` (also of POSIX timers and ``mq_notify``), ``None`` otherwise.
    """

    signo: int
    code: int
    pid: int
    uid: int
    value: Optional[int]

    @property
    def name(self) -> str:
        """The signal's name: ``"SIGUSR1"``, ``"SIGRTMIN+3"``."""
        return signal_name(self.signo)

    @property
    def queued(self) -> bool:
        """True when the sender used ``sigqueue`` (``Signal.send`` with a value)."""
        return self.code == lib.SI_QUEUE


# The hot path builds a SignalInfo with tuple.__new__ (a NamedTuple's own __new__ is
# Python code) from the record's first five fields, as they are when it has a value.
_new_tuple = tuple.__new__
_HEAD = struct.Struct("=iiiIi")
_unpack_head = _HEAD.unpack
_sig_take = lib.ipckit_sig_take


# ------------------------------------------------------------------ catch


# Serialises installing and releasing handlers (cffi calls release the GIL).
_lock = threading.Lock()
_live: "weakref.WeakSet[SignalCatcher]" = weakref.WeakSet()


def _no_other_thread_takes(bits: int) -> bool:
    """True if every thread but this one blocks all of *bits* (so, in a single-threaded
    process): then a waiting thread that blocks them too leaves them to its signalfd."""
    masks = _procfs.thread_blocked_masks()
    if masks is None:
        return False
    me = threading.get_native_id()
    return all(mask & bits == bits for tid, mask in masks.items() if tid != me)


class SignalCatcher(Resource):
    """The signals collected by one ``with Signal.catch(...)`` block.

    Made by ``Signal.catch``; closing it (leaving the block) puts the previous
    dispositions and the calling thread's mask back and discards what was not
    read. Reads: ``wait()``, ``drain()``, ``fileno()``.

    For ``ipckit.aio``: ``_attempt(NOW)`` takes one signal without blocking (or
    returns ``WOULD_BLOCK``), and ``_waiter`` is what to await between attempts.
    """

    _rfd = -1

    def __init__(self, numbers: tuple[int, ...]) -> None:
        self.signals = frozenset(numbers)
        self._numbers = numbers
        self._dropped_at_close = 0
        bits = _bits(numbers)
        fast = _no_other_thread_takes(bits)
        self._c = c = ffi.new("struct ipckit_sigcatcher *")
        # One struct ipckit_sigwait per concurrent wait (a deque's pop/append are atomic).
        self._waits: collections.deque[tuple[Any, Any]] = collections.deque()
        with _lock:
            for number in numbers:
                if lib.ipckit_sig_active(number):
                    raise RuntimeError(
                        f"{signal_name(number)} is already collected by another Signal.catch block "
                        "(one block per signal at a time)"
                    )
            _ffi.check(lib.ipckit_sig_open(c, bits, _PIPE_SIZE), "pipe2")
            c.block_while_waiting = fast
            installed: list[int] = []
            try:
                for number in numbers:
                    _ffi.check(lib.ipckit_sig_catch(number, c.wfd), f"sigaction({signal_name(number)})")
                    installed.append(number)
            except BaseException:
                for number in installed:
                    lib.ipckit_sig_release(number, 1)
                lib.ipckit_sig_close(c)
                raise
            self._closed = False
            _live.add(self)
        self._rfd = c.rfd
        self._waiter = ReadyFd(c.rfd, POLLIN)
        # Some thread must be able to take the signal; make it this one.
        self._thread = threading.get_ident()
        before = signal.pthread_sigmask(signal.SIG_UNBLOCK, numbers)
        self._unblocked = tuple(n for n in numbers if n in _as_set(before))

    def __repr__(self) -> str:
        names = ", ".join(signal_name(n) for n in self._numbers)
        state = "closed" if self._closed else f"fd={self._rfd}"
        return f"<ipckit.SignalCatcher {names} {state}>"

    # -- reading

    def fileno(self) -> int:
        """The read end of the collection pipe: readable while a collected signal waits."""
        self._check_open()
        return self._rfd

    def wait(self, timeout: Optional[float] = None) -> SignalInfo:
        """Return the oldest collected signal, waiting for one if none is there.

        ``timeout=None`` waits until one arrives, ``0`` never blocks; an expired
        wait raises ``ipckit.Timeout``. ``ClosedError`` if the block has ended
        (also when it ends, from another thread, during the wait).
        """
        if timeout is None:
            # The hot path: _take(-1) written out (one Python frame less), one call
            # that waits in the kernel. Anything but a signal goes on to retry().
            waits = self._waits
            try:
                w, raw = waits.pop()
            except IndexError:
                w, raw = self._new_wait()
            rc = _sig_take(w, -1)
            if rc > 0:
                fields = _unpack_head(raw)
                waits.append((w, raw))
                return _new_tuple(SignalInfo, fields if rc == 2 else (*fields[:4], None))
            waits.append((w, raw))
        # The attempt waits in the kernel up to its limit, so no waiter (NO_WAIT).
        return retry(self._attempt, Deadline.from_user(timeout), "Signal wait")

    def drain(self) -> list[SignalInfo]:
        """Every collected signal waiting now, oldest first (maybe none); never blocks."""
        found = []
        while (info := self._take(0)) is not WOULD_BLOCK:
            found.append(info)
        return found

    @property
    def dropped(self) -> int:
        """Signals lost because the pipe was full (about 10,000 unread records)."""
        if self._closed:
            return self._dropped_at_close
        return sum(lib.ipckit_sig_dropped(n) for n in self._numbers)

    def _attempt(self, limit: Deadline) -> Any:
        """One signal, waiting for it in the kernel until *limit* (``NOW``: not at all)."""
        return self._take(limit.remaining_ns())

    def _take(self, timeout_ns: int) -> Any:
        waits = self._waits
        try:
            w, raw = waits.pop()
        except IndexError:
            w, raw = self._new_wait()
        rc = _sig_take(w, timeout_ns)
        if rc > 0:
            fields = _unpack_head(raw)
            waits.append((w, raw))
            return _new_tuple(SignalInfo, fields if rc == 2 else (*fields[:4], None))
        waits.append((w, raw))
        if rc == 0 or rc == _EINTR:  # none yet, or a signal handler interrupted the wait
            return WOULD_BLOCK
        if rc == _EPIPE:
            raise closed_error(self)
        raise error_from_errno(-rc, "Signal wait")

    def _new_wait(self) -> tuple[Any, Any]:
        """A struct ipckit_sigwait for one more wait at once, and its record's bytes."""
        w = ffi.new("struct ipckit_sigwait *")
        w.catcher = self._c
        return w, ffi.buffer(w, _HEAD.size)

    # -- release

    def _close(self) -> None:
        self._dropped_at_close = sum(lib.ipckit_sig_dropped(n) for n in self._numbers)
        # Mask first: a signal arriving from now on is either still recorded (and
        # discarded with the pipe) or, once the old disposition is back, handled by it.
        if self._unblocked and threading.get_ident() == self._thread:
            signal.pthread_sigmask(signal.SIG_BLOCK, self._unblocked)
        lib.ipckit_sig_discard_pending(self._c)  # collected but unread, like the records
        errors = []
        with _lock:
            for number in self._numbers:
                rc = lib.ipckit_sig_release(number, 1)
                if rc < 0:
                    errors.append(error_from_errno(-rc, f"sigaction({signal_name(number)})"))
            _live.discard(self)
        lib.ipckit_sig_close(self._c)  # wakes every wait; the last one out closes the rest
        if errors:
            raise errors[0]

    def _forget_after_fork(self) -> None:
        """In a forked child: give back the dispositions, without waiting for parent threads."""
        self._closed = True
        for number in self._numbers:
            lib.ipckit_sig_release(number, 0)
        if self._unblocked and threading.get_ident() == self._thread:
            signal.pthread_sigmask(signal.SIG_BLOCK, self._unblocked)
        lib.ipckit_sig_forget(self._c)


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()  # another parent thread may have held it at fork time
    catchers = list(_live)
    if catchers:
        lib.ipckit_sig_after_fork()
    for catcher in catchers:
        catcher._forget_after_fork()
    _live.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


# ------------------------------------------------------------------ suspend


def _suspend(mask: Optional[frozenset[int]], timeout: object, what: str) -> int:
    deadline = Deadline.from_user(timeout)
    use_mask, bits = (0, 0) if mask is None else (1, _bits(mask))

    def attempt(limit: Deadline) -> Any:
        rc = lib.ipckit_sig_suspend(use_mask, bits, limit.remaining_ns())
        if rc > 0:
            return rc
        if rc == 0 or rc == _EINTR:  # none yet (or one that is ignored, or stopped us)
            return WOULD_BLOCK
        raise error_from_errno(-rc, what)

    signo: int = retry(attempt, deadline, what)  # the attempt waits in the kernel: NO_WAIT
    # CPython runs pending Python handlers after changing the mask (in the main thread;
    # elsewhere this does nothing): so the handler has run, and raised, before we return.
    signal.pthread_sigmask(signal.SIG_BLOCK, ())
    return signo


# ------------------------------------------------------------------ Signal


def _raise_send_error(err: Optional[int], what: str, exc: Optional[BaseException] = None) -> None:
    if err == errno.EAGAIN:
        # Not a timeout: the receiver's queue of pending real-time signals is full.
        new: IPCError = IPCError(err, f"{what}: the receiver's queue of pending signals is full (RLIMIT_SIGPENDING)")
    else:
        new = error_from_errno(err, what)
    raise new from exc


# Signal.send's fast path: sig (a valid number, a signal.Signals, or a name seen
# before) -> number. Exact types only: a bool or a float must not match an int key.
_SEND_TYPES = frozenset({int, str, signal.Signals})
_SEND_NUMBER: dict[object, int] = {n: n for n in range(SIGRTMAX + 1) if n not in _RESERVED}
_kill = os.kill
_sigqueue = lib.ipckit_sigqueue


def _send_target(pid: object, sig: object) -> int:
    """Check *pid* and *sig* for ``Signal.send`` (raising what is wrong); the number."""
    if isinstance(pid, bool) or not isinstance(pid, int):
        raise TypeError(f"pid must be an int, not {type(pid).__name__}")
    if not -INT_MAX <= pid <= INT_MAX:
        raise ValueError(f"pid must fit a C pid_t, got {pid}")
    if pid == -1:
        raise ValueError("pid -1 would signal every process you may signal; use os.kill(-1, sig) if you mean it")
    number = signal_number(sig, allow_zero=True)
    if type(sig) is str and len(_SEND_NUMBER) < 1024:  # spellings are many: bound it
        _SEND_NUMBER[sig] = number
    return number


def _check_payload(pid: int, value: object) -> None:
    """Raise what is wrong with a ``Signal.send`` payload (an int subclass passes)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"value must be an int (a C int payload) or None, not {type(value).__name__}")
    if not INT_MIN <= value <= INT_MAX:
        raise ValueError(f"value must fit a C int ({INT_MIN}..{INT_MAX}), got {value}")
    if pid <= 0:
        raise ValueError(f"a value needs one process (sigqueue has no process-group form), got pid {pid}")


class Signal:
    """Namespace for sending, collecting and handling signals (no instances).

    Thread rules: ``send``, ``catch``, ``block``, ``unblock``, ``set_mask``,
    ``pending``, ``pause``, ``suspend`` and ``alarm`` work in any thread (the mask
    calls change the *calling* thread's mask). ``handle``, ``ignore`` and
    ``default`` wrap ``signal.signal``, so they work in the main thread only, and
    their Python handlers run in the main thread, between bytecodes.
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> "Signal":
        raise TypeError("ipckit.Signal is a namespace: call Signal.send(), Signal.catch(), ...")

    @staticmethod
    def send(pid: int, sig: SignalLike, value: Optional[int] = None) -> None:
        """Send *sig* to *pid*; with *value* (a C int) queue it with that payload.

        Without a value this is ``kill(2)``: ``pid > 0`` is one process, ``0`` the
        caller's process group, ``-pgid`` the process group *pgid*. ``pid=-1``
        ("every process you may signal") is refused with ``ValueError``; call
        ``os.kill`` if you mean it. ``sig`` may be 0 to check that *pid* exists.
        With a value this is ``sigqueue(3)``, which targets one process only, so
        ``pid <= 0`` with a value is a ``ValueError``. A pid that does not exist
        raises ``IPCError`` with ``errno.ESRCH``; no permission, ``errno.EPERM``.
        """
        # The usual call (one process, a known signal, an int payload) is checked in
        # a few bytecodes; everything else takes the full checks and their messages.
        number = _SEND_NUMBER.get(sig) if type(sig) in _SEND_TYPES else None
        if number is None or type(pid) is not int or not 0 < pid <= INT_MAX:
            number = _send_target(pid, sig)
        if value is None:
            try:
                _kill(pid, number)
            except OSError as exc:
                _raise_send_error(exc.errno, "kill", exc)
            return
        if type(value) is not int or not INT_MIN <= value <= INT_MAX or pid <= 0:
            _check_payload(pid, value)
        rc = _sigqueue(pid, number, value)
        if rc < 0:
            _raise_send_error(-rc, "sigqueue")

    @staticmethod
    def catch(*sigs: SignalLike) -> SignalCatcher:
        """Collect every instance of *sigs* until the returned object is closed.

        Use as ``with Signal.catch("SIGUSR1", "SIGRTMIN+1") as s: info = s.wait(5)``.
        Works from any thread and whatever threads the process has: a C handler
        records each signal on whichever thread the kernel picked. ``RuntimeError``
        if a signal is already collected by another block; ``ValueError`` for
        SIGKILL/SIGSTOP and for the fault signals (SIGSEGV, SIGBUS, SIGFPE, SIGILL).
        """
        numbers = _numbers(sigs, "Signal.catch")
        for number in numbers:
            _check_catchable(number, "Signal.catch")
            if number in _FAULTS:
                raise ValueError(f"Signal.catch: {signal_name(number)} reports a fault; collecting it would re-run the faulting instruction forever")
        return SignalCatcher(numbers)

    @staticmethod
    def handle(sig: SignalLike, fn: Callable[[int, Any], Any]) -> Any:
        """Install ``fn(signum, frame)`` as the Python handler; return the previous disposition.

        The previous disposition is ``signal.SIG_DFL``, ``signal.SIG_IGN``, the
        previous callable, or ``None`` (a handler installed by C code). Main thread
        only (``ValueError`` elsewhere); fn runs in the main thread between bytecodes.
        The handler stays installed until changed, and system calls it interrupts are
        retried (PEP 475): ``sigaction`` semantics, not System V ``signal()``'s.
        """
        number = signal_number(sig)
        _check_catchable(number, "Signal.handle")
        if not callable(fn):
            raise TypeError(f"fn must be callable as fn(signum, frame), not {type(fn).__name__}")
        return _set_disposition(number, fn, "Signal.handle")

    @staticmethod
    def ignore(sig: SignalLike) -> Any:
        """Ignore *sig* (``SIG_IGN``); return the previous disposition. Main thread only."""
        number = signal_number(sig)
        _check_catchable(number, "Signal.ignore")
        return _set_disposition(number, signal.SIG_IGN, "Signal.ignore")

    @staticmethod
    def default(sig: SignalLike) -> Any:
        """Restore the default action (``SIG_DFL``); return the previous disposition. Main thread only."""
        number = signal_number(sig)
        _check_catchable(number, "Signal.default")
        return _set_disposition(number, signal.SIG_DFL, "Signal.default")

    @staticmethod
    @contextmanager
    def block(*sigs: SignalLike) -> Iterator[frozenset[int]]:
        """Block *sigs* in the calling thread for the ``with`` block (``pthread_sigmask``).

        Blocked signals stay pending (standard ones coalesce) and are delivered
        when the block ends and the previous mask is restored. Yields the set of
        signals that were blocked before (pass it to ``suspend``). Other threads
        are not affected.
        """
        numbers = _numbers(sigs, "Signal.block")
        for number in numbers:
            _check_catchable(number, "Signal.block")
        before = signal.pthread_sigmask(signal.SIG_BLOCK, numbers)
        try:
            yield _as_set(before)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, before)

    @staticmethod
    def unblock(*sigs: SignalLike) -> frozenset[int]:
        """Unblock *sigs* in the calling thread; return the mask it had before.

        A signal that was pending is delivered at once: its Python handler (in the
        main thread) has run when this returns.
        """
        numbers = _numbers(sigs, "Signal.unblock")
        for number in numbers:
            _check_catchable(number, "Signal.unblock")
        return _as_set(signal.pthread_sigmask(signal.SIG_UNBLOCK, numbers))

    @staticmethod
    def set_mask(sigs: Iterable[SignalLike]) -> frozenset[int]:
        """Make *sigs* (a set, maybe empty) the calling thread's mask; return the previous one.

        ``Signal.set_mask(signal.valid_signals())`` blocks everything that can be
        blocked (SIGKILL and SIGSTOP never are); ``Signal.set_mask(())`` unblocks
        everything; ``Signal.set_mask(previous)`` puts a mask back.
        """
        mask = _mask(sigs, "sigs")
        return _as_set(signal.pthread_sigmask(signal.SIG_SETMASK, mask))

    @staticmethod
    def pause(timeout: Optional[float] = None) -> int:
        """Wait until a signal's disposition acts (a handler runs); return its number.

        ``pause(2)`` with a timeout: the calling thread's mask stays as it is, so a
        blocked signal does not end the wait, an ignored one is dropped and the wait
        goes on, and one whose default action ends the process ends it. Python
        handlers: see ``suspend``. An expired wait raises ``ipckit.Timeout``.

        A signal that arrives just before the call is handled but does not end it;
        to wait for one without that window, block it first and call ``suspend``.
        """
        return _suspend(None, timeout, "Signal.pause")

    @staticmethod
    def suspend(mask: Iterable[SignalLike], timeout: Optional[float] = None) -> int:
        """Atomically make *mask* the thread's mask and wait as ``pause`` does; return
        the signal's number. The previous mask is back when this returns.

        ``sigsuspend(2)`` with a timeout, for the race-free pattern::

            with Signal.block("SIGUSR1") as before:
                ...                       # start what will signal us
                while not done:           # done: set by the SIGUSR1 handler
                    Signal.suspend(before)

        A SIGUSR1 that arrived before ``suspend`` stayed pending and ends it at once.
        In the main thread the Python handler has run (and any exception it raised
        comes out of here) when this returns. In another thread the C side of the
        handler has run in that thread, but CPython runs the Python function in the
        main thread the next time that executes bytecode: rely on the returned
        number there, not on what the handler sets. In a process with other threads
        that do not block the signal, the kernel may deliver it to one of them
        instead, and the wait goes on, as in C: block it in those threads too.
        """
        return _suspend(_mask(mask, "mask"), timeout, "Signal.suspend")

    @staticmethod
    def pending() -> frozenset[int]:
        """Signals pending for the calling thread or the process (blocked, not yet delivered)."""
        return _as_set(signal.sigpending())

    @staticmethod
    def alarm(seconds: float) -> float:
        """Deliver SIGALRM to the process after *seconds* (a float); 0 cancels.

        Uses ``setitimer(ITIMER_REAL)``, the same timer as ``alarm(2)``, so a float
        works and only one alarm exists per process. Returns the seconds that were
        left on the previous alarm (0.0 if none). SIGALRM's default action ends the
        process: handle or catch it first.
        """
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
            raise TypeError(f"seconds must be a number, not {type(seconds).__name__}")
        value = float(seconds)
        if math.isnan(value) or math.isinf(value) or value < 0:
            raise ValueError(f"seconds must be a finite number >= 0, got {seconds!r}")
        if 0 < value < 1e-6:
            value = 1e-6  # would round to 0, which cancels instead
        previous, _interval = signal.setitimer(signal.ITIMER_REAL, value)
        return previous


def _set_disposition(number: int, handler: Any, what: str) -> Any:
    if threading.current_thread() is not threading.main_thread():
        raise ValueError(f"{what} works only in the main thread (Python runs signal handlers there)")
    if lib.ipckit_sig_active(number):
        raise RuntimeError(f"{what}: {signal_name(number)} is being collected by a Signal.catch block, which restores its own saved disposition on exit")
    with translate_oserror("sigaction"):
        return signal.signal(number, handler)


__all__ = ["Signal", "SignalCatcher", "SignalInfo", "signal_name", "signal_number"]
