"""What every ipckit object shares: idempotent close(), context management, use-after-close checks."""

from __future__ import annotations

import os
from types import TracebackType
from typing import Optional, TypeVar

from ._errors import closed_error

_R = TypeVar("_R", bound="Resource")


class Resource:
    """Base class: ``close()`` is idempotent, ``with obj:`` closes on exit, and
    ``_check_open()`` raises ``ClosedError`` for any call after close.

    Subclasses put their release work in ``_close()``, which runs once. The class
    attribute default ``_closed = True`` makes ``close()`` and ``__del__`` safe on an
    object whose ``__init__`` failed half-way; ``__init__`` sets ``_closed = False``
    only once there is something to release.
    """

    _closed = True

    def _close(self) -> None:
        """Release what this object holds. Runs at most once."""

    def close(self) -> None:
        """Release this handle. Calling it again does nothing."""
        if self._closed:
            return
        self._closed = True
        self._close()

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise closed_error(self)

    def __enter__(self: _R) -> _R:
        self._check_open()
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # pragma: no cover - never raise from a finaliser
            pass


class FdHolder:
    """Owns one file descriptor; forgets the integer before closing it, so a second
    close (or a close racing a finaliser) can never close an fd reused by someone else."""

    fd = -1

    def __init__(self, fd: int) -> None:
        self.fd = fd

    @property
    def closed(self) -> bool:
        return self.fd < 0

    def close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)

    def __del__(self) -> None:
        try:
            self.close()
        except OSError:  # pragma: no cover
            pass


__all__ = ["FdHolder", "Resource"]
