"""The twin: an async object over one synchronous ipckit object.

A twin owns nothing of its own: the descriptor, segment or handle is the
synchronous object's (``twin.sync``), so a twin and its original can be used side
by side, and ``wrap()`` makes one for an object made elsewhere (inherited by a
child, received over a queue). Coroutines are the calls that can block; the calls
that never block are the original's own, listed in ``_plain`` per class. Anything
else is refused with an ``AttributeError`` that says why, rather than handing out a
blocking method that would stall the loop.
"""

from __future__ import annotations

from typing import Any, AsyncIterator, Awaitable, Callable, ClassVar, Optional, TypeVar

from .._errors import ClosedError
from ._drive import notify_closing

_T = TypeVar("_T", bound="Twin")

#: Non-blocking members every twin passes through.
COMMON = frozenset({"closed", "name", "fileno"})


class Twin:
    """Base of every ``ipckit.aio`` object: ``sync`` is the synchronous original."""

    __slots__ = ("sync", "__weakref__")
    _plain: ClassVar[frozenset[str]] = frozenset()
    sync: Any

    def __init__(self, sync: Any) -> None:
        object.__setattr__(self, "sync", sync)

    def __getattr__(self, name: str) -> Any:
        if name in self._plain or name in COMMON:
            return getattr(self.sync, name)
        if not name.startswith("_") and hasattr(self.sync, name):
            raise AttributeError(
                f"{type(self).__name__}.{name} is not part of ipckit.aio (it could block the event loop); "
                f"use twin.sync.{name} in a worker thread if you mean it"
            )
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __dir__(self) -> list:
        return sorted(set(super().__dir__()) | {n for n in self._plain if hasattr(self.sync, n)})

    def _fd(self) -> Optional[int]:
        return None

    def close(self) -> None:
        """Close the original (idempotent); tasks of this thread's loop waiting on it
        end their wait with ``ClosedError``."""
        fd = self._fd()
        if fd is not None:
            notify_closing(fd)
        self.sync.close()

    def __enter__(self: _T) -> _T:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self: _T) -> _T:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    def __reduce__(self) -> tuple:
        from ._wrap import wrap

        return (wrap, (self.sync,))

    def __repr__(self) -> str:
        return f"<ipckit.aio twin of {self.sync!r}>"


async def until_closed(sync: Any, receive: Callable[[], Awaitable[Any]]) -> AsyncIterator[Any]:
    """``async for``: what ``receive()`` returns, until *sync* is closed (the
    ``ClosedError`` that closing makes a pending wait raise ends the loop)."""
    while not sync.closed:
        try:
            yield await receive()
        except ClosedError:
            if sync.closed:
                return
            raise


__all__ = ["COMMON", "Twin", "until_closed"]
