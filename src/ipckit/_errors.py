"""ipckit's exceptions, and the one boundary where lower-layer errors become them.

::

    OSError
     └── IPCError                      every error ipckit raises (errno set when the kernel gave one)
          ├── Timeout (TimeoutError)     a wait expired; timeout=0 with nothing ready included
          ├── ExistsError (FileExistsError)    create() of a name that is taken
          ├── NotFoundError (FileNotFoundError) open() of a name that does not exist
          ├── ClosedError                used after close(), the peer closed (EOF, EPIPE, ECONNRESET),
          │                              or the object was removed under this handle (SysV EIDRM)
          ├── MessageTooLarge (ValueError)     a message over the object's limit; nothing was sent
          └── CorruptError               a shared segment's content is invalid (errno EBADMSG)

Invalid arguments are plain ``TypeError`` / ``ValueError`` raised before any system
call (see ``_naming`` and ``_timeouts``).

The boundary
------------
Every failure of a lower layer is turned into one of the classes above here, and
nowhere else, from an errno:

* cffi shims return ``-errno``: ``_ffi.check(rc, what)`` calls ``error_from_errno``;
* ``OSError`` from ``os``/``socket``/``mmap``: ``translate_oserror(what)`` around the call
  (or ``error_from_errno(exc.errno, ...)`` where the caller has the exception);
* posix_ipc / sysv_ipc raise their own classes, mostly without errno:
  ``THIRD_PARTY_ERRNO`` gives the errno each class stands for.

``ERRNO_CLASS`` is the one errno -> class table. A call whose errno means something
more specific passes *overrides*: ``{errno: As(cls, text)}``. The standard ones are
here too, so that one condition is one exception on every backend: ``SYSV_REMOVED``
(an operation on a SysV object that was removed, EIDRM or EINVAL, is ``ClosedError``)
and ``EXISTS_ON_CREATE`` (posix_ipc/sysv_ipc's ``ExistentialError`` from an O_EXCL
create means EEXIST, from an open ENOENT). Errors are chained: ``raise X from exc``.
"""

from __future__ import annotations

import contextlib
import errno as _errno
import os
from typing import Iterator, Mapping, NamedTuple, NoReturn, Optional


class IPCError(OSError):
    """Base class of every error raised by ipckit."""


class Timeout(IPCError, TimeoutError):
    """A wait expired before the operation could complete."""


class ExistsError(IPCError, FileExistsError):
    """``create()`` of a name that already exists."""


class NotFoundError(IPCError, FileNotFoundError):
    """``open()`` of a name that does not exist."""


class ClosedError(IPCError):
    """The object was closed by this process, the peer closed or reset it, or it was
    removed under this handle."""


class MessageTooLarge(IPCError, ValueError):
    """A message over the object's size limit; nothing was sent."""


class CorruptError(IPCError):
    """A shared segment holds content no honest ipckit peer writes (``errno.EBADMSG``).

    The message names what was wrong. The object stays closable."""

    def __init__(self, *args: object) -> None:
        if len(args) == 1 and isinstance(args[0], str):
            args = (_errno.EBADMSG, args[0])
        super().__init__(*args)


ERRNO_CLASS: dict[int, type[IPCError]] = {
    _errno.ETIMEDOUT: Timeout,
    _errno.EAGAIN: Timeout,
    _errno.EEXIST: ExistsError,
    _errno.ENOENT: NotFoundError,
    _errno.EPIPE: ClosedError,
    _errno.ECONNRESET: ClosedError,
    _errno.ESHUTDOWN: ClosedError,
    _errno.ENOTCONN: ClosedError,
    _errno.EIDRM: ClosedError,
    _errno.EMSGSIZE: MessageTooLarge,
    _errno.E2BIG: MessageTooLarge,
    _errno.EBADMSG: CorruptError,
}


class As(NamedTuple):
    """A per-call override: errno *e* raises *cls*, with *text* instead of strerror(e)."""

    cls: type[IPCError]
    text: Optional[str] = None


Overrides = Mapping[int, As]

#: An operation on a SysV object (by id) that was removed: msgsnd/semop/shmat say
#: EIDRM or EINVAL for that, and both mean the same thing to the caller.
SYSV_REMOVED: Overrides = {
    _errno.EIDRM: As(ClosedError, "the SysV object was removed"),
    _errno.EINVAL: As(ClosedError, "the SysV object was removed"),
}

#: The same errnos from IPC_RMID (``unlink()``) or a lookup by id: the object is not
#: there (any more), which for those calls is ``NotFoundError``.
SYSV_GONE: Overrides = {
    _errno.EIDRM: As(NotFoundError, "no such SysV object (it was removed)"),
    _errno.EINVAL: As(NotFoundError, "no such SysV object (it was removed)"),
}

# posix_ipc and sysv_ipc raise their own classes, mostly without errno: the errno each
# class stands for. ExistentialError is both EEXIST and ENOENT; which one is the call's
# to say (EXISTS_ON_CREATE), the default being "not found".
THIRD_PARTY_ERRNO: dict[str, int] = {
    "ExistentialError": _errno.ENOENT,
    "BusyError": _errno.EAGAIN,
    "PermissionsError": _errno.EACCES,
    "SignalError": _errno.EINTR,
    "NotAttachedError": _errno.EINVAL,
}
EXISTS_ON_CREATE: Mapping[str, int] = {"ExistentialError": _errno.EEXIST}
_THIRD_PARTY_MODULES = ("posix_ipc", "sysv_ipc")


def error_class(err: Optional[int], overrides: Optional[Overrides] = None) -> type[IPCError]:
    """The ipckit class for kernel errno *err* (``IPCError`` when none is more specific)."""
    if err is None:
        return IPCError
    if overrides and err in overrides:
        return overrides[err].cls
    return ERRNO_CLASS.get(err, IPCError)


def error_from_errno(
    err: Optional[int], what: str = "", filename: object = None, *, overrides: Optional[Overrides] = None
) -> IPCError:
    """Build (not raise) the ipckit error for errno *err*; *what* says which call failed.

    ``err`` may be None (an error raised without one): the result is a plain ``IPCError``."""
    if err is None:
        return IPCError(f"{what}: failed" if what else "failed")
    override = overrides.get(err) if overrides else None
    if override is not None:
        cls, text = override.cls, override.text or os.strerror(err)
    else:
        cls, text = ERRNO_CLASS.get(err, IPCError), os.strerror(err)
    message = f"{what}: {text}" if what else text
    if filename is not None:
        return cls(err, message, filename)
    return cls(err, message)


def closed_error(obj: object) -> ClosedError:
    """The error for a call on an object this process has closed."""
    return ClosedError(_errno.EBADF, f"{type(obj).__name__} is closed")


def errno_of(exc: BaseException, third_party: Optional[Mapping[str, int]] = None) -> Optional[int]:
    """The errno *exc* stands for: ``OSError.errno``, else by its posix_ipc/sysv_ipc class
    (*third_party* maps class names to the errno this call means by them)."""
    name = type(exc).__name__
    if third_party and name in third_party and _is_third_party(exc):
        return third_party[name]
    err = getattr(exc, "errno", None)
    if isinstance(err, int) and err:
        return err
    if _is_third_party(exc):
        return THIRD_PARTY_ERRNO.get(name)
    return None


def _is_third_party(exc: BaseException) -> bool:
    return (type(exc).__module__ or "").split(".")[0] in _THIRD_PARTY_MODULES


def translate(
    exc: BaseException,
    what: str = "",
    *,
    filename: object = None,
    overrides: Optional[Overrides] = None,
    third_party: Optional[Mapping[str, int]] = None,
) -> BaseException:
    """The ipckit error for *exc* (returned, for ``raise translate(exc, ...) from exc``).

    ipckit errors come back as they are; ``OSError`` and posix_ipc/sysv_ipc errors
    become the class of their errno; anything else (``TypeError`` ...) is returned
    unchanged, since it is not an OS error."""
    if isinstance(exc, IPCError):
        return exc
    if not isinstance(exc, OSError) and not _is_third_party(exc):
        return exc
    err = errno_of(exc, third_party)
    if err is None:
        text = f"{what}: {exc}" if what else str(exc)
        return IPCError(text)
    return error_from_errno(err, what, filename, overrides=overrides)


def raise_translated(exc: BaseException, what: str = "", **kwargs: object) -> NoReturn:
    """``raise translate(exc, what, ...) from exc`` (for ``except`` clauses)."""
    new = translate(exc, what, **kwargs)  # type: ignore[arg-type]
    if new is exc:
        raise exc
    raise new from exc


@contextlib.contextmanager
def translate_oserror(
    what: str = "",
    *,
    filename: object = None,
    overrides: Optional[Overrides] = None,
    third_party: Optional[Mapping[str, int]] = None,
) -> Iterator[None]:
    """Re-raise OS errors escaping the block as ipckit errors (see ``translate``)."""
    try:
        yield
    except Exception as exc:
        raise_translated(exc, what, filename=filename, overrides=overrides, third_party=third_party)



__all__ = [
    "As",
    "ClosedError",
    "CorruptError",
    "ERRNO_CLASS",
    "EXISTS_ON_CREATE",
    "ExistsError",
    "IPCError",
    "MessageTooLarge",
    "NotFoundError",
    "Overrides",
    "SYSV_GONE",
    "SYSV_REMOVED",
    "THIRD_PARTY_ERRNO",
    "Timeout",
    "closed_error",
    "errno_of",
    "error_class",
    "error_from_errno",
    "raise_translated",
    "translate",
    "translate_oserror",
]
