"""Build-only: compile ipckit's C binding module (cffi out-of-line API mode).

Imported by setuptools through ``cffi_modules`` at install time, never at run time.
The C side lives in ``csrc/``, one concern per name, and every concern is listed
below -- nothing is picked up by globbing, and nothing depends on file order:

    csrc/NAME.cdef   what cffi exposes to Python from that concern (declarations only)

and then either

* a **shim** (``SHIMS``): ``csrc/NAME.c`` holds tiny static C functions behind the
  declarations. The module's own source is ``common.h`` followed by each shim in
  the listed order; a shim may rely on the headers of ``common.h`` and includes
  anything else it needs itself. ``common`` is first because it holds the version
  function every build has.
* or a **unit** (``UNITS``): ``csrc/NAME.c`` is compiled on its own
  (``sources=``), and ``csrc/NAME.h`` declares what the module's source and other
  units may call (the module's source includes it). The shm ring is a unit, so it
  calls the futex wrapper and the process-identity check through their headers.

A new binding is a new ``.cdef`` + ``.c`` pair (and a ``.h`` for a unit) and one
line in a list below. For a quick in-place rebuild while developing run
``python src/ipckit/_ffi/_build.py``.
"""

from __future__ import annotations

import pathlib
import re

from cffi import FFI

HERE = pathlib.Path(__file__).resolve().parent
CSRC = HERE / "csrc"

#: Compiled into the module's own source, in this order, after common.h.
SHIMS = (
    "common",
    "sigqueue",
    "signal",
    "posixmq",
    "posixshm",
    "posixsem",
    "sysvmsg",
    "sysvshm",
    "sysvsem",
    "sysvsemset",
)

#: Compiled as separate units, each with its header.
UNITS = (
    "futex",
    "procid",
    "shmqueue",
    "objqueue",
)

_CFLAGS = ["-O2", "-std=gnu11", "-Wall", "-Wno-unused-function", "-fvisibility=hidden"]


def _package_version() -> str:
    text = (HERE.parent / "_version.py").read_text()
    match = re.search(r'__version__\s*=\s*"([^"]+)"', text)
    if match is None:  # pragma: no cover - build misconfiguration
        raise RuntimeError("cannot find __version__ in _version.py")
    return match.group(1)


def _cdef(name: str) -> str:
    return f"/* ---- {name}.cdef ---- */\n" + (CSRC / f"{name}.cdef").read_text()


def make_ffibuilder() -> FFI:
    builder = FFI()
    builder.cdef(_cdef("common") + "\n".join(_cdef(name) for name in (*UNITS, *SHIMS[1:])))
    source = [
        f'static const char IPCKIT_FFI_VERSION[] = "{_package_version()}";',
        '#include "common.h"',
        *(f'#include "{name}.h"' for name in UNITS),
        *(f"/* ---- {name}.c ---- */\n" + (CSRC / f"{name}.c").read_text() for name in SHIMS),
    ]
    builder.set_source(
        "ipckit._ffi._lib",
        "\n".join(source),
        sources=[str(CSRC / f"{name}.c") for name in UNITS],
        include_dirs=[str(CSRC)],
        define_macros=[("_GNU_SOURCE", "1")],
        extra_compile_args=_CFLAGS,
        libraries=["rt", "pthread"],
    )
    return builder


ffibuilder = make_ffibuilder()

if __name__ == "__main__":
    # Development shortcut: compile in a scratch directory, the module next to the
    # package sources (where an editable install has it).
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        ffibuilder.compile(tmpdir=scratch, target=str(HERE / "_lib.abi3.so"))
