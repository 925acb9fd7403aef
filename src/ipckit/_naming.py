"""Names and addresses: the rules for POSIX names, SysV keys and ids, modes and owners,
checked before any system call."""

from __future__ import annotations

import importlib
from typing import Any, Literal, Optional, overload

NAME_MAX = 255
KEY_MIN, KEY_MAX = 1, 0xFFFFFFFF
ID_MAX = 2**31 - 1
OWNER_MAX = 2**32 - 2


def check_posix_name(name: object, argument: str = "name", *, max_bytes: int = NAME_MAX, why: str = "") -> str:
    """Validate a POSIX IPC name: a str, ``"/"`` then no other ``"/"``, 2..255 bytes in UTF-8.

    *max_bytes* lowers the limit for objects whose file name is longer than the name
    (a POSIX semaphore is /dev/shm/sem.NAME); *why* explains it in the message."""
    if not isinstance(name, str):
        raise TypeError(f"{argument} must be a str like '/jobs', not {type(name).__name__}")
    if not name.startswith("/"):
        raise ValueError(f"{argument} must start with '/', got {name!r}")
    if "/" in name[1:]:
        raise ValueError(f"{argument} may contain no '/' after the first, got {name!r}")
    if "\0" in name:
        raise ValueError(f"{argument} may not contain a NUL character, got {name!r}")
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValueError(f"{argument} must be encodable as UTF-8, got {name!r}") from None
    if not 2 <= size <= max_bytes:
        raise ValueError(f"{argument} must be 2 to {max_bytes} bytes in UTF-8{why}, got {size} bytes")
    return name


@overload
def check_sysv_key(key: object, argument: str = ..., *, allow_private: Literal[False] = ...) -> int: ...
@overload
def check_sysv_key(key: object, argument: str = ..., *, allow_private: bool) -> Optional[int]: ...
def check_sysv_key(key: object, argument: str = "key", *, allow_private: bool = False) -> Optional[int]:
    """Validate a SysV key: an int in 1..0xFFFFFFFF (or None for a private object, if allowed)."""
    if key is None and allow_private:
        return None
    if isinstance(key, bool) or not isinstance(key, int):
        kind = "an int key" + (" or None" if allow_private else "")
        raise TypeError(f"{argument} must be {kind}, not {type(key).__name__}")
    if not KEY_MIN <= key <= KEY_MAX:
        raise ValueError(f"{argument} must be in {KEY_MIN}..{KEY_MAX:#x}, got {key}")
    return key


def sysv_key_to_c(key: int) -> int:
    """A key in 1..0xFFFFFFFF as the signed 32-bit ``key_t`` that C and sysv_ipc use."""
    return key - (1 << 32) if key >= (1 << 31) else key


def check_mode(mode: object, argument: str = "mode") -> int:
    if isinstance(mode, bool) or not isinstance(mode, int):
        raise TypeError(f"{argument} must be an int such as 0o600, not {type(mode).__name__}")
    if not 0 <= mode <= 0o7777:
        raise ValueError(f"{argument} must be a permission mode in 0..0o7777, got {oct(mode)}")
    return mode


def check_backend(backend: object, allowed: tuple[str, ...]) -> str:
    if not isinstance(backend, str):
        raise TypeError(f"backend must be a str, one of {allowed}, not {type(backend).__name__}")
    if backend not in allowed:
        raise ValueError(f"backend must be one of {allowed}, got {backend!r}")
    return backend


def backend_class(table: "dict[str, tuple[str, str]]", backend: object) -> Any:
    """The class implementing *backend*, from ``{backend: (module, class name)}``.

    Validates *backend* against the table's keys, then imports the backend's module
    lazily, so that e.g. sysv_ipc is only imported by programs that use SysV objects.
    """
    module_name, class_name = table[check_backend(backend, tuple(table))]
    return getattr(importlib.import_module(module_name, __package__), class_name)


@overload
def check_positive_int(value: object, argument: str, *, allow_none: Literal[False] = ..., minimum: int = ...) -> int: ...
@overload
def check_positive_int(value: object, argument: str, *, allow_none: bool, minimum: int = ...) -> Optional[int]: ...
def check_positive_int(value: object, argument: str, *, allow_none: bool = False, minimum: int = 1) -> Optional[int]:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{argument} must be an int, not {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{argument} must be >= {minimum}, got {value}")
    return value


def check_open_target(name: object, id: object, backend: str) -> Optional[int]:
    """For ``Cls.open(name, *, backend, id=None)``: the SysV id to open by, or None to
    open by *name*. An id is only ever taken from ``id=``, never from *name*, so a
    shmid passed where a key belongs cannot silently open another object."""
    if id is None:
        return None  # by name: the backend's name check says what a None name means
    if name is not None:
        raise TypeError("give open() a name or id=, not both")
    if backend != "sysv":
        raise ValueError(f"id= opens a SysV object by its id: it needs backend='sysv', not {backend!r}")
    return check_sysv_id(id)


def check_sysv_id(id: object, argument: str = "id") -> int:
    """A SysV object id (shmid, semid, msqid): an int in 0..2**31-1."""
    if isinstance(id, bool) or not isinstance(id, int):
        raise TypeError(f"{argument} must be an int (a SysV id such as m.id), not {type(id).__name__}")
    if not 0 <= id <= ID_MAX:
        raise ValueError(f"{argument} must be in 0..{ID_MAX}, got {id}")
    return id


def check_owner(value: object, argument: str) -> int:
    """A uid or gid for IPC_SET: an int in 0..2**32-2 (-1 means "unchanged" to the kernel)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{argument} must be an int, not {type(value).__name__}")
    if not 0 <= value <= OWNER_MAX:
        raise ValueError(f"{argument} must be in 0..{OWNER_MAX}, got {value}")
    return value


def check_ipc_set(mode: object, uid: object, gid: object, *, required: bool = True) -> tuple[int, int, int]:
    """The arguments of a SysV ``set(mode=, uid=, gid=)``: each None (keep it: -1 for
    C) or checked; one at least, if *required*. Modes are 0..0o777 (no other bits)."""
    if required and mode is None and uid is None and gid is None:
        raise TypeError("set() needs at least one of mode=, uid=, gid=")
    if mode is not None:
        check_mode(mode)
        if mode > 0o777:  # type: ignore[operator]
            raise ValueError(f"mode must be in 0..0o777 for a SysV object (it has no setuid/sticky bits), got {oct(mode)}")  # type: ignore[arg-type]
    return (
        -1 if mode is None else mode,  # type: ignore[return-value]
        -1 if uid is None else check_owner(uid, "uid"),
        -1 if gid is None else check_owner(gid, "gid"),
    )


def describe_sysv(key: Optional[int]) -> str:
    """How a message names a SysV object: by key, or as private."""
    return "IPC_PRIVATE" if key is None else f"with key {key:#x}"


__all__ = [
    "NAME_MAX",
    "backend_class",
    "check_backend",
    "check_mode",
    "check_positive_int",
    "check_posix_name",
    "check_sysv_key",
    "check_ipc_set",
    "check_open_target",
    "check_owner",
    "check_sysv_id",
    "describe_sysv",
    "sysv_key_to_c",
]
