"""Build-only: compile ipckit's C binding module (cffi out-of-line API mode).

Imported by setuptools through ``cffi_modules`` at install time, never at run time.
The C side is kept in ``csrc/``: one concern per pair of files,

    csrc/NAME.cdef   declarations cffi exposes to Python (no #include, no logic)
    csrc/NAME.c      the #includes and tiny C shims behind those declarations

so a new binding is a new pair of files, and this script never changes. The pairs
are concatenated in name order ("common" first). For a quick in-place rebuild while
developing run ``python src/ipckit/_ffi/_build.py``.
"""

from __future__ import annotations

import pathlib
import re

from cffi import FFI

HERE = pathlib.Path(__file__).resolve().parent
CSRC = HERE / "csrc"


def _package_version() -> str:
    text = (HERE.parent / "_version.py").read_text()
    match = re.search(r'__version__\s*=\s*"([^"]+)"', text)
    if match is None:  # pragma: no cover - build misconfiguration
        raise RuntimeError("cannot find __version__ in _version.py")
    return match.group(1)


def _concern_names() -> list[str]:
    names = sorted(p.stem for p in CSRC.glob("*.cdef"))
    names.remove("common")
    return ["common", *names]


def make_ffibuilder() -> FFI:
    builder = FFI()
    cdefs, sources = [], []
    for name in _concern_names():
        cdefs.append(f"/* ---- {name}.cdef ---- */\n" + (CSRC / f"{name}.cdef").read_text())
        sources.append(f"/* ---- {name}.c ---- */\n" + (CSRC / f"{name}.c").read_text())
    builder.cdef("\n".join(cdefs))
    version = _package_version()
    prelude = (
        "#define _GNU_SOURCE 1\n"
        f'static const char IPCKIT_FFI_VERSION[] = "{version}";\n'
    )
    builder.set_source(
        "ipckit._ffi._lib",
        prelude + "\n".join(sources),
        extra_compile_args=["-O2", "-std=gnu11", "-Wall", "-Wno-unused-function"],
        libraries=["rt"],
    )
    return builder


ffibuilder = make_ffibuilder()

if __name__ == "__main__":
    # Development shortcut: compile next to the package sources.
    import os

    os.chdir(HERE.parent.parent)
    ffibuilder.compile(verbose=False)
