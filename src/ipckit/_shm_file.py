"""SharedMemory ``backend="file"``: a regular file mapped with mmap (the
memory-mapped-file style of IPC; the data also ends up on disk).

The file is created with ``O_EXCL | O_NOFOLLOW`` (a symlink planted at the path is
never followed) and gets its mode exactly; sizing and mapping are ``_shm_mapped``'s.
A regular file cannot be sealed, so ``read``/``write`` go through the descriptor.
"""

from __future__ import annotations

import os
from typing import Any

from ._errors import translate_oserror
from ._shm import SharedMemory
from ._shm_mapped import MappedSharedMemory


def _check_path(path: object) -> str:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"name must be a filesystem path (str or os.PathLike) for backend='file', not {type(path).__name__}")
    text = os.fspath(path)
    if not isinstance(text, str):
        raise TypeError("name must be a str path for backend='file', not bytes")
    if not text:
        raise ValueError("name must be a non-empty path for backend='file'")
    if "\0" in text:
        raise ValueError(f"name may not contain a NUL character, got {text!r}")
    return text


class FileSharedMemory(MappedSharedMemory):
    """``backend="file"``: a regular file mapped with mmap."""

    backend = "file"

    @classmethod
    def _create(cls, name: Any, size: int, mode: int) -> "SharedMemory":
        path = _check_path(name)
        what = f"open({path!r})"
        with translate_oserror(what, filename=path):
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, mode)
        return cls._from_created(path, fd, size, mode, what, lambda: os.unlink(path))

    @classmethod
    def _open(cls, name: Any) -> "SharedMemory":
        path = _check_path(name)
        what = f"open({path!r})"
        with translate_oserror(what, filename=path):
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        return cls._from_opened(path, fd, what)

    def unlink(self) -> None:
        with translate_oserror(f"unlink({self.name!r})", filename=self.name):
            os.unlink(self.name)


__all__ = ["FileSharedMemory"]
