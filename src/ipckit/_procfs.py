"""Reading /proc, once: kernel limits, SysV tables, the mqueue mount, and process identity.

Every module that needs something from /proc asks here, so each file is parsed in
one place. Readers return ``None`` (or nothing) when a file is missing or
unreadable: containers often show a partial /proc, and callers decide what an
unknown value means.

Process identity, and what "dead" means
---------------------------------------
A pid alone does not name a process: pids are reused, and a process in another pid
namespace, of another user under ``hidepid``, or hidden in some other way may not be
visible at all. ipckit takes over something a process held (a ring slot, a lock) or
calls an object orphaned only when the holder is *provably gone*:

* ``kill(pid, 0)`` says ESRCH (no such process), or the process is a zombie; or
* a process with that pid exists but its start time (field 22 of /proc/PID/stat)
  differs from the one recorded when it took the thing: the pid was reused.

EPERM from ``kill`` means the process exists. A process whose /proc entry cannot be
read is alive as far as anyone can prove. ``process_identity`` is the C
implementation (``csrc/procid.c``), which the shm ring calls without the GIL.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator, NamedTuple, Optional

from ._ffi import ffi, lib


def read_int(path: str) -> Optional[int]:
    """The first integer in a /proc (or /sys) file, or None if it cannot be read."""
    values = read_ints(path)
    return values[0] if values else None


def read_ints(path: str) -> Optional[list[int]]:
    """All whitespace-separated integers of a file (``/proc/sys/kernel/sem``), or None."""
    try:
        with open(path) as f:
            return [int(x) for x in f.read().split()]
    except (OSError, ValueError):
        return None


def sysvipc_rows(kind: str) -> Iterator[dict[str, int]]:
    """The rows of /proc/sysvipc/KIND (``msg``, ``sem``, ``shm``), keyed by its header.

    ``key`` is given as the unsigned 32-bit key; ``perms`` is octal in the file."""
    with contextlib.suppress(OSError), open(f"/proc/sysvipc/{kind}") as f:
        header = f.readline().split()
        for line in f:
            with contextlib.suppress(ValueError):
                row = {k: int(v, 8 if k == "perms" else 10) for k, v in zip(header, line.split())}
                row["key"] &= 0xFFFFFFFF
                yield row


def mounts(fstype: Optional[str] = None) -> list[tuple[str, str, str]]:
    """``(mount point, type, options)`` of /proc/self/mounts, of *fstype* if given."""
    found = []
    with contextlib.suppress(OSError), open("/proc/self/mounts") as f:
        for line in f:
            fields = line.split()
            if len(fields) > 3 and (fstype is None or fields[2] == fstype):
                found.append((fields[1].replace("\\040", " "), fields[2], fields[3]))
    return found


def mqueue_mount() -> Optional[str]:
    """Where an mqueue filesystem is mounted in this namespace, if anywhere."""
    points = [point for point, _, _ in mounts("mqueue")]
    if "/dev/mqueue" in points:
        return "/dev/mqueue"
    return points[0] if points else None


class ProcessIdentity(NamedTuple):
    """A live process as /proc shows it: ``start_time`` is 0 when it cannot be seen."""

    pid: int
    start_time: int


def process_identity(pid: int) -> Optional[ProcessIdentity]:
    """None if *pid* is provably gone (no such process, or a zombie); otherwise its
    identity, with ``start_time`` 0 when /proc does not show it (see the module notes)."""
    if pid <= 0:
        return None
    start = ffi.new("uint64_t *")
    if lib.ipckit_proc_identity(pid, start) == lib.IPCKIT_PROC_GONE:
        return None
    return ProcessIdentity(pid, int(start[0]))


def provably_gone(pid: int, start_time: int = 0) -> bool:
    """True only if the process that had *pid* (started at *start_time*, if recorded)
    no longer exists: no such pid, a zombie, or a pid reused by a later process."""
    now = process_identity(pid)
    if now is None:
        return True
    return bool(start_time and now.start_time and now.start_time != start_time)


def own_identity() -> ProcessIdentity:
    """This process's identity (for records that others will check)."""
    me = process_identity(os.getpid())
    assert me is not None
    return me


__all__ = [
    "ProcessIdentity",
    "mounts",
    "mqueue_mount",
    "own_identity",
    "process_identity",
    "provably_gone",
    "read_int",
    "read_ints",
    "sysvipc_rows",
]
