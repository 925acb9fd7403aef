"""The thin binding layer: the compiled cffi module and one return-code checker.

Runtime code imports ``ffi`` and ``lib`` from here and nothing else of cffi.
Every C function in ``csrc/`` returns ``0`` / a non-negative result, or ``-errno``,
never one that could be read as the other (the shm ring returns ``0`` or
``-errno`` only, its results in named structs); ``check()`` turns a negative
return into the matching ipckit error, and ``call()`` retries ``EINTR`` (PEP 475)
so no caller has to. What is compiled, and how, is listed in ``_build.py``.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from .._errors import Overrides, error_from_errno
from .._version import __version__

try:
    from ._lib import ffi, lib
except ImportError as exc:  # pragma: no cover - only on a broken install
    raise ImportError(
        "ipckit's compiled module ipckit._ffi._lib is missing: install ipckit with pip "
        "(it compiles the C bindings, which needs a C compiler), or run "
        "`python src/ipckit/_ffi/_build.py` in a source checkout"
    ) from exc

_built_for = ffi.string(lib.ipckit_ffi_version()).decode()
if _built_for != __version__:  # pragma: no cover - stale build
    raise ImportError(
        f"ipckit._ffi._lib was built for ipckit {_built_for} but this is ipckit "
        f"{__version__}: reinstall ipckit to rebuild it"
    )

EINTR = 4


def check(rc: int, what: str = "", overrides: Optional[Overrides] = None) -> int:
    """Return *rc* if it is >= 0, else raise the ipckit error for errno ``-rc``
    (*overrides*: see ``_errors``)."""
    if rc < 0:
        raise error_from_errno(-rc, what, overrides=overrides)
    return rc


def call(fn: Callable[..., int], *args: Any, what: str = "") -> int:
    """Call a C shim, retrying on EINTR, and ``check()`` its result.

    Python signal handlers get their chance between retries, as in PEP 475.
    Callers with a deadline must not use this for waits: they recompute the
    remaining time themselves and call again.
    """
    while True:
        rc = fn(*args)
        if rc != -EINTR:
            return check(rc, what)
        # Looping in Python lets a pending signal handler run (and raise) here.


__all__ = ["ffi", "lib", "check", "call", "EINTR"]
