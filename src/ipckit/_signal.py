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

* ``pthread_sigmask`` + ``signalfd`` / ``sigwaitinfo`` in the calling thread.
  Exact and simple in a single-threaded program, but the mask is per thread:
  the kernel happily delivers the signal to a BLAS thread that never blocked
  it, where the default action runs (for SIGUSR1: the process dies) or, at best,
  the signalfd in our thread never sees it. We cannot block the signal in
  threads that already exist. Out.

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
  for handlers still running on other threads before the pipe is closed, so a
  late write can never land in a reused descriptor.
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
"""

from __future__ import annotations

import errno
import fcntl
import math
import os
import re
import select
import signal
import struct
import threading
import weakref
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator, NamedTuple, Optional, Union

from . import _ffi
from ._errors import IPCError, closed_error, error_from_errno, translate_oserror
from ._ffi import lib
from ._resource import Resource
from ._timeouts import Deadline
from ._wait import wait_fd

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
assert _RECORD.size == _ffi.ffi.sizeof("struct ipckit_sigrecord")
_PIPE_SIZE = 256 * 1024  # about 10,900 records before any is dropped

_NAME = re.compile(r"SIG(?:RT(MIN|MAX)([+-]\d+)?|[A-Z0-9]+)\Z")


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


# ------------------------------------------------------------------ catch


# Serialises installing and releasing handlers (cffi calls release the GIL).
_lock = threading.Lock()
_live: "weakref.WeakSet[SignalCatcher]" = weakref.WeakSet()


class SignalCatcher(Resource):
    """The signals collected by one ``with Signal.catch(...)`` block.

    Made by ``Signal.catch``; closing it (leaving the block) puts the previous
    dispositions and the calling thread's mask back and discards what was not
    read. Reads: ``wait()``, ``drain()``, ``fileno()``.
    """

    _rfd = -1
    _wfd = -1

    def __init__(self, numbers: tuple[int, ...]) -> None:
        self.signals = frozenset(numbers)
        self._numbers = numbers
        self._dropped_at_close = 0
        with _lock:
            for number in numbers:
                if lib.ipckit_sig_active(number):
                    raise RuntimeError(
                        f"{signal_name(number)} is already collected by another Signal.catch block "
                        "(one block per signal at a time)"
                    )
            with translate_oserror("pipe2"):
                self._rfd, self._wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
            try:
                fcntl.fcntl(self._wfd, fcntl.F_SETPIPE_SZ, _PIPE_SIZE)
            except OSError:  # a per-user pipe quota can refuse it; 64 KiB still works
                pass
            installed: list[int] = []
            try:
                for number in numbers:
                    _ffi.check(lib.ipckit_sig_catch(number, self._wfd), f"sigaction({signal_name(number)})")
                    installed.append(number)
            except BaseException:
                for number in installed:
                    lib.ipckit_sig_release(number, 1)
                self._close_fds()
                raise
            self._closed = False
            _live.add(self)
        # Some thread must be able to take the signal; make it this one.
        self._thread = threading.get_ident()
        before = signal.pthread_sigmask(signal.SIG_UNBLOCK, numbers)
        self._unblocked = tuple(n for n in numbers if n in {int(s) for s in before})

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
        self._check_open()
        deadline = Deadline.from_user(timeout)
        while True:
            info = self._read_one()
            if info is not None:
                return info
            if deadline.timeout == 0 or deadline.expired():
                raise deadline.timeout_error("Signal wait")
            wait_fd(self._rfd, select.POLLIN, deadline)
            if self._closed:
                raise closed_error(self)

    def drain(self) -> list[SignalInfo]:
        """Every collected signal waiting now, oldest first (maybe none); never blocks."""
        self._check_open()
        found = []
        while (info := self._read_one()) is not None:
            found.append(info)
        return found

    @property
    def dropped(self) -> int:
        """Signals lost because the pipe was full (about 10,000 unread records)."""
        if self._closed:
            return self._dropped_at_close
        return sum(lib.ipckit_sig_dropped(n) for n in self._numbers)

    def _read_one(self) -> Optional[SignalInfo]:
        fd = self._rfd
        if fd < 0:
            raise closed_error(self)
        try:
            # One record per read keeps fileno() readable exactly while one waits.
            data = os.read(fd, _RECORD.size)
        except BlockingIOError:
            return None
        except OSError as exc:
            if self._closed:
                raise closed_error(self) from exc
            raise
        if len(data) != _RECORD.size:  # EOF: close() from another thread
            raise closed_error(self)
        signo, code, pid, uid, value, has_value = _RECORD.unpack(data)
        return SignalInfo(signo, code, pid, uid, value if has_value else None)

    # -- release

    def _close(self) -> None:
        self._dropped_at_close = sum(lib.ipckit_sig_dropped(n) for n in self._numbers)
        # Mask first: a signal arriving from now on is either still recorded (and
        # discarded with the pipe) or, once the old disposition is back, handled by it.
        if self._unblocked and threading.get_ident() == self._thread:
            signal.pthread_sigmask(signal.SIG_BLOCK, self._unblocked)
        errors = []
        with _lock:
            for number in self._numbers:
                rc = lib.ipckit_sig_release(number, 1)
                if rc < 0:
                    errors.append(error_from_errno(-rc, f"sigaction({signal_name(number)})"))
            _live.discard(self)
        self._close_fds()
        if errors:
            raise errors[0]

    def _close_fds(self) -> None:
        # The write end first: a wait() polling in another thread sees EOF and stops.
        wfd, self._wfd = self._wfd, -1
        if wfd >= 0:
            os.close(wfd)
        rfd, self._rfd = self._rfd, -1
        if rfd >= 0:
            os.close(rfd)

    def _forget_after_fork(self) -> None:
        """In a forked child: give back the dispositions, without waiting for parent threads."""
        self._closed = True
        for number in self._numbers:
            lib.ipckit_sig_release(number, 0)
        if self._unblocked and threading.get_ident() == self._thread:
            signal.pthread_sigmask(signal.SIG_BLOCK, self._unblocked)
        self._close_fds()


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


# ------------------------------------------------------------------ Signal


def _raise_send_error(err: Optional[int], what: str, exc: Optional[BaseException] = None) -> None:
    if err == errno.EAGAIN:
        # Not a timeout: the receiver's queue of pending real-time signals is full.
        new: IPCError = IPCError(err, f"{what}: the receiver's queue of pending signals is full (RLIMIT_SIGPENDING)")
    else:
        new = error_from_errno(err, what)
    raise new from exc


class Signal:
    """Namespace for sending, collecting and handling signals (no instances).

    Thread rules: ``send``, ``catch``, ``block``, ``pending`` and ``alarm`` work in
    any thread (``block`` and ``catch`` change the *calling* thread's mask).
    ``handle``, ``ignore`` and ``default`` wrap ``signal.signal``, so they work in
    the main thread only, and their Python handlers run in the main thread,
    between bytecodes.
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
        if isinstance(pid, bool) or not isinstance(pid, int):
            raise TypeError(f"pid must be an int, not {type(pid).__name__}")
        if not -INT_MAX <= pid <= INT_MAX:
            raise ValueError(f"pid must fit a C pid_t, got {pid}")
        if pid == -1:
            raise ValueError("pid -1 would signal every process you may signal; use os.kill(-1, sig) if you mean it")
        number = signal_number(sig, allow_zero=True)
        if value is None:
            try:
                os.kill(pid, number)
            except OSError as exc:
                _raise_send_error(exc.errno, "kill", exc)
            return
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"value must be an int (a C int payload) or None, not {type(value).__name__}")
        if not INT_MIN <= value <= INT_MAX:
            raise ValueError(f"value must fit a C int ({INT_MIN}..{INT_MAX}), got {value}")
        if pid <= 0:
            raise ValueError(f"a value needs one process (sigqueue has no process-group form), got pid {pid}")
        rc = lib.ipckit_sigqueue(pid, number, value)
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
        signals that were blocked before. Other threads are not affected.
        """
        numbers = _numbers(sigs, "Signal.block")
        for number in numbers:
            _check_catchable(number, "Signal.block")
        before = signal.pthread_sigmask(signal.SIG_BLOCK, numbers)
        try:
            yield frozenset(int(s) for s in before)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, before)

    @staticmethod
    def pending() -> frozenset[int]:
        """Signals pending for the calling thread or the process (blocked, not yet delivered)."""
        return frozenset(int(s) for s in signal.sigpending())

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
