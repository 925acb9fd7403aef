"""Timeouts: one validation rule and one monotonic deadline, shared by every blocking call.

The contract (docs/reference/contract.md): ``timeout=None`` blocks until done, ``timeout=0`` never blocks,
``timeout>0`` waits until the operation completes or that many seconds have passed on
the monotonic clock, and never returns early. A call that retries (EINTR, partial
reads and writes, spurious futex wake-ups) keeps one ``Deadline`` across the retries,
so the total wait is bounded by the caller's timeout, not by each step's.
"""

from __future__ import annotations

import math
import time
from typing import Optional

from ._errors import Timeout

_monotonic = time.monotonic

# One wait in the kernel is at most this long: every caller loops until its deadline
# has passed, so a longer timeout (even inf) just waits again, and no timeout can
# overflow poll()'s int milliseconds or a C int64 of nanoseconds.
MAX_WAIT = 86400.0


def check_timeout(timeout: object, name: str = "timeout") -> Optional[float]:
    """Validate a user-supplied timeout: ``None`` or a finite number >= 0."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"{name} must be None or a number of seconds, not {type(timeout).__name__}")
    value = float(timeout)
    if math.isnan(value) or value < 0:
        raise ValueError(f"{name} must be None or >= 0, not {timeout!r}")
    return value


class Deadline:
    """A point on the monotonic clock by which a blocking call must give up.

    ``Deadline(None)`` never expires. ``remaining()`` is ``None`` for that, else the
    seconds left (never negative).
    """

    __slots__ = ("timeout", "_end")

    def __init__(self, timeout: Optional[float]) -> None:
        self.timeout = timeout
        self._end = None if timeout is None else _monotonic() + timeout

    @classmethod
    def from_user(cls, timeout: object, name: str = "timeout") -> "Deadline":
        """Validate *timeout* (see ``check_timeout``) and start the clock.

        ``None`` gives the one shared ``FOREVER`` deadline (it has no state to change),
        so the common blocking call allocates nothing here."""
        if timeout is None:
            return FOREVER
        return cls(check_timeout(timeout, name))

    @property
    def blocking(self) -> bool:
        """True when there is no deadline at all."""
        return self._end is None

    def remaining(self) -> Optional[float]:
        if self._end is None:
            return None
        return max(0.0, self._end - _monotonic())

    def expired(self) -> bool:
        return self._end is not None and _monotonic() >= self._end

    def remaining_ms(self) -> int:
        """Milliseconds left for ``poll()``: -1 for no deadline, rounded *up* so a
        wait never ends before the deadline; at most ``MAX_WAIT``."""
        left = self.remaining()
        if left is None:
            return -1
        return math.ceil(min(left, MAX_WAIT) * 1000)

    def remaining_ns(self) -> int:
        """Nanoseconds left for futex/semtimedop: -1 for no deadline; at most ``MAX_WAIT``."""
        left = self.remaining()
        if left is None:
            return -1
        return math.ceil(min(left, MAX_WAIT) * 1e9)

    def end_ns(self) -> int:
        """The deadline as an absolute CLOCK_MONOTONIC time in ns (the clock of
        ``time.monotonic_ns()``), rounded up, for C calls that take an absolute
        deadline: -1 for no deadline; at most ``MAX_WAIT`` from now."""
        if self._end is None:
            return -1
        if self.timeout > MAX_WAIT:  # type: ignore[operator]
            return math.ceil(min(self._end, _monotonic() + MAX_WAIT) * 1e9)
        return math.ceil(self._end * 1e9)

    def timeout_error(self, what: str) -> Timeout:
        """The ``Timeout`` to raise when this deadline expired during *what*."""
        import errno

        return Timeout(errno.ETIMEDOUT, f"{what} timed out after {self.timeout} s")


FOREVER = Deadline(None)


__all__ = ["FOREVER", "MAX_WAIT", "Deadline", "check_timeout"]
