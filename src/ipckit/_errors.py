"""ipckit's exceptions, and the one place where lower-layer errors are translated.

::

    OSError
     └── IPCError                      every error ipckit raises (errno set when the kernel gave one)
          ├── Timeout (TimeoutError)     a wait expired; timeout=0 with nothing ready included
          ├── ExistsError (FileExistsError)    create() of a name that is taken
          ├── NotFoundError (FileNotFoundError) open() of a name that does not exist
          ├── ClosedError                used after close(), or the peer closed (EOF, EPIPE, ECONNRESET)
          └── MessageTooLarge (ValueError)     a message over the object's limit; nothing was sent

Invalid arguments are plain ``TypeError`` / ``ValueError`` raised before any system
call (see ``_naming`` and ``_timeouts``). ``translate_oserror()`` wraps a system
call (or a posix_ipc / sysv_ipc call) and re-raises what escapes it as one of the
classes above, chaining the original as ``__cause__``.
"""

from __future__ import annotations

import contextlib
import errno as _errno
import os
from typing import Iterator, Optional


class IPCError(OSError):
    """Base class of every error raised by ipckit."""


class Timeout(IPCError, TimeoutError):
    """A wait expired before the operation could complete."""


class ExistsError(IPCError, FileExistsError):
    """``create()`` of a name that already exists."""


class NotFoundError(IPCError, FileNotFoundError):
    """``open()`` of a name that does not exist."""


class ClosedError(IPCError):
    """The object was closed by this process, or the peer closed or reset it."""


class MessageTooLarge(IPCError, ValueError):
    """A message over the object's size limit; nothing was sent."""


_ERRNO_CLASS: dict[int, type[IPCError]] = {
    _errno.ETIMEDOUT: Timeout,
    _errno.EAGAIN: Timeout,
    _errno.EEXIST: ExistsError,
    _errno.ENOENT: NotFoundError,
    _errno.EPIPE: ClosedError,
    _errno.ECONNRESET: ClosedError,
    _errno.ESHUTDOWN: ClosedError,
    _errno.EIDRM: ClosedError,
    _errno.EMSGSIZE: MessageTooLarge,
    _errno.E2BIG: MessageTooLarge,
}


def error_class(err: int | None) -> type[IPCError]:
    """The ipckit class for kernel errno *err* (``IPCError`` when none is more specific)."""
    if err is None:
        return IPCError
    return _ERRNO_CLASS.get(err, IPCError)


def error_from_errno(err: Optional[int], what: str = "", filename: object = None) -> IPCError:
    """Build (not raise) the ipckit error for errno *err*; *what* says which call failed.

    ``err`` may be None (an ``OSError`` raised without one): the result is a plain
    ``IPCError``."""
    if err is None:
        return IPCError(f"{what}: failed" if what else "failed")
    message = os.strerror(err)
    if what:
        message = f"{what}: {message}"
    if filename is not None:
        return error_class(err)(err, message, filename)
    return error_class(err)(err, message)


def closed_error(obj: object) -> ClosedError:
    """The error for a call on an object this process has closed."""
    return ClosedError(_errno.EBADF, f"{type(obj).__name__} is closed")


def _errno_of(exc: BaseException) -> int | None:
    err = getattr(exc, "errno", None)
    if isinstance(err, int):
        return err
    return _THIRD_PARTY_ERRNO.get(type(exc).__name__)


# posix_ipc and sysv_ipc raise their own classes, often without errno.
_THIRD_PARTY_ERRNO: dict[str, int] = {
    "ExistentialError": _errno.ENOENT,
    "BusyError": _errno.EAGAIN,
    "PermissionsError": _errno.EACCES,
    "SignalError": _errno.EINTR,
    "NotAttachedError": _errno.EINVAL,
}


@contextlib.contextmanager
def translate_oserror(what: str = "", *, filename: object = None) -> Iterator[None]:
    """Re-raise errors escaping the block as ipckit errors, chaining the cause.

    ``ipckit`` errors pass through untouched. ``OSError`` (and the error classes of
    posix_ipc and sysv_ipc) become the class their errno maps to. Anything else
    (``TypeError``, ``ValueError`` ...) is not an OS error and passes through.
    """
    try:
        yield
    except IPCError:
        raise
    except OSError as exc:
        new = error_from_errno(exc.errno, what, filename) if exc.errno else IPCError(str(exc))
        raise new from exc
    except Exception as exc:
        module = type(exc).__module__ or ""
        if module.split(".")[0] not in ("posix_ipc", "sysv_ipc"):
            raise
        err = _errno_of(exc)
        text = f"{what}: {exc}" if what else str(exc)
        if type(exc).__name__ == "ExistentialError":
            # posix_ipc/sysv_ipc use one class for both "exists" and "not found".
            # Their texts: "... already exists" versus "No ... exists ...".
            err = _errno.EEXIST if "already exist" in str(exc).lower() else _errno.ENOENT
        raise error_class(err)(err, text) from exc


__all__ = [
    "ClosedError",
    "ExistsError",
    "IPCError",
    "MessageTooLarge",
    "NotFoundError",
    "Timeout",
    "closed_error",
    "error_class",
    "error_from_errno",
    "translate_oserror",
]
