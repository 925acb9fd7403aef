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

Who can be seen
---------------
``ipckit ls`` calls an object orphaned only if every process that could use it was
inspected, so this module also says when /proc does *not* show everything:

* ``pid_namespace_is_initial()``: only the initial pid namespace lists every
  process. Its namespace inode is a kernel constant (``PROC_PID_INIT_INO``), which
  ``/proc/self/ns/pid`` shows; a process in that namespace sees a /proc of it (its
  own /proc entry would not resolve otherwise). ``NSpid`` in /proc/self/status is no
  test: under ``unshare --pid --mount-proc`` it has a single entry.
* ``hidden_by_hidepid()``: /proc mounted with ``hidepid=`` hides (or locks) other
  users' processes unless the reader is in its ``gid=`` group or may ptrace them.
* ``mapped_files(pid)`` / ``open_files(pid)`` raise ``PermissionError`` for a process
  this one may not read (another user's, unless root). ``can_read_every_process()``
  says whether the kernel's ownership and capability rules let this process read
  every process (CAP_SYS_PTRACE in the initial user namespace); then only a security
  module confining this process (Landlock, SELinux, AppArmor) can still refuse.

Reading a process's descriptors never touches the file systems they are on:
``open_files`` reads the link text and ``fdinfo`` (mount id and inode), and resolves a
mount id to a device through mountinfo. A ``stat()`` of a descriptor, as ``lsof``
does, can hang for ever on a dead NFS server or a hostile FUSE daemon; here it is
the last resort, only for a descriptor whose inode is one the caller looks for and
whose mount is in no mountinfo (a kernel-internal mount such as the mqueue one, or a
lazily detached mount).
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import threading
from typing import Collection, Iterator, NamedTuple, Optional, Union

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
                found.append((_unescape(fields[1]), fields[2], fields[3]))
    return found


def is_mount(point: str, fstype: str) -> bool:
    """True if a file system of type *fstype* is mounted at *point* in this namespace."""
    return any(p == point for p, _, _ in mounts(fstype))


def mqueue_mount() -> Optional[str]:
    """Where an mqueue filesystem is mounted in this namespace, if anywhere."""
    points = [point for point, _, _ in mounts("mqueue")]
    if "/dev/mqueue" in points:
        return "/dev/mqueue"
    return points[0] if points else None


def open_fd_count() -> Optional[int]:
    """How many file descriptors this process has open (/proc/self/fd), or None."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return None


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


# ------------------------------------------------------------------ small readers


def _unescape(field: str) -> str:
    """A path field of /proc/*/mounts or mountinfo: the kernel writes space, tab,
    newline and backslash as octal escapes (``\\040``)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


SYSVIPC_ID = {"msg": "msqid", "sem": "semid", "shm": "shmid"}
"""The id column of each /proc/sysvipc table."""


def sysvipc_row(kind: str, ident: int) -> Optional[dict[str, int]]:
    """The /proc/sysvipc/KIND row of the object with id *ident*, or None."""
    column = SYSVIPC_ID[kind]
    return next((row for row in sysvipc_rows(kind) if row.get(column) == ident), None)


def open_regular(name: str, dir_fd: Optional[int] = None, *,
                 inode: Optional[tuple[int, int]] = None) -> Optional[int]:
    """A read-only descriptor of *name* if it is a regular file, else None; never
    opens a symlink, FIFO, socket or device, and never blocks.

    Another user may replace a name between a ``stat`` and an ``open``, so the file is
    first opened with ``O_PATH | O_NOFOLLOW`` (which calls no driver and waits for no
    FIFO writer), checked with ``fstat`` (and, with *inode* = ``(st_dev, st_ino)``, to
    be the file that was listed), and only then reopened for reading through its
    /proc/self/fd link, which names that very inode."""
    try:
        handle = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        st = os.fstat(handle)
        if not stat.S_ISREG(st.st_mode):
            return None
        if inode is not None and (st.st_dev, st.st_ino) != inode:
            return None
        flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
        try:
            return os.open(f"/proc/self/fd/{handle}", flags)
        except OSError:
            return None
    finally:
        os.close(handle)


def mqueue_status(name: str, directory: Optional[str] = None) -> Optional[dict[str, int]]:
    """The status line of POSIX queue *name* ("/jobs") as numbers: ``QSIZE`` (bytes
    queued), ``NOTIFY``, ``SIGNO``, ``NOTIFY_PID``; read from *directory* (an mqueue
    mount; default ``mqueue_mount()``). None if there is no mount or no such queue."""
    directory = directory or mqueue_mount()
    if directory is None or not name.startswith("/") or "/" in name[1:]:
        return None
    fd = open_regular(os.path.join(directory, name[1:]))
    if fd is None:
        return None
    try:
        text = os.read(fd, 256).decode("ascii", "replace")
    except OSError:
        return None
    finally:
        os.close(fd)
    fields = {}
    for item in text.split():
        key, _, value = item.partition(":")
        with contextlib.suppress(ValueError):
            fields[key] = int(value)
    return fields if "QSIZE" in fields else None


# ------------------------------------------------------------------ who can be seen

PROC_PID_INIT_INO = 0xEFFFFFFC
"""Inode of the initial pid namespace (include/linux/proc_ns.h), fixed since 3.8."""
PROC_USER_INIT_INO = 0xEFFFFFFD
"""Inode of the initial user namespace."""
CAP_SYS_PTRACE = 19
PF_KTHREAD = 0x00200000


def pids() -> list[int]:
    """The pids /proc lists (processes, not threads), or [] without a /proc."""
    try:
        return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]
    except OSError:
        return []


def status(pid: Union[int, str] = "self") -> dict[str, str]:
    """/proc/PID/status as ``{"Name": "bash", "NSpid": "812", ...}``; {} if unreadable."""
    fields = {}
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status", errors="replace") as f:
        for line in f:
            key, sep, value = line.partition(":")
            if sep:
                fields[key] = value.strip()
    return fields


def _namespace_inode(kind: str) -> Optional[int]:
    try:
        return os.stat(f"/proc/self/ns/{kind}").st_ino
    except OSError:
        return None


def pid_namespace_is_initial() -> bool:
    """True if this process is in the initial pid namespace, whose /proc lists every
    process on the host (see the module notes). False when it cannot be told."""
    return _namespace_inode("pid") == PROC_PID_INIT_INO


def can_read_every_process() -> bool:
    """True if the kernel's ownership and capability rules let this process read every
    process's maps and descriptors: CAP_SYS_PTRACE, effective, in the initial user
    namespace. A security module may still refuse some (see the module notes)."""
    if _namespace_inode("user") != PROC_USER_INIT_INO:
        return False
    try:
        return bool(int(status().get("CapEff", "0"), 16) >> CAP_SYS_PTRACE & 1)
    except ValueError:
        return False


def hidden_by_hidepid() -> Optional[str]:
    """The ``hidepid=`` option of /proc if it hides processes from this one, else None.

    hidepid=1/noaccess locks other users' entries, 2/invisible hides them, 4/ptraceable
    shows only those this process may ptrace; members of the ``gid=`` group and
    processes that may ptrace every process see everything."""
    entries = [options for point, _, options in mounts("proc") if point == "/proc"]
    if not entries:
        return None
    options = dict(opt.partition("=")[::2] for opt in entries[-1].split(","))  # the last mount is the visible one
    hidepid = options.get("hidepid")
    if hidepid in (None, "0", "off"):
        return None
    gid = options.get("gid")
    if gid is not None and gid.isdigit() and (int(gid) == os.getegid() or int(gid) in os.getgroups()):
        return None
    if can_read_every_process():
        return None
    return f"hidepid={hidepid}"


def is_kernel_thread(pid: int) -> bool:
    """True if *pid* is a kernel thread (PF_KTHREAD in /proc/PID/stat): it runs no user
    code and holds no user's files."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return bool(int(fields[6]) & PF_KTHREAD)  # field 9; fields[0] is field 3 (state)
    except (OSError, IndexError, ValueError):
        return False


# ------------------------------------------------------------------ what a process uses


class MappedFile(NamedTuple):
    """A file mapped by a process: its device and inode, and the path maps shows
    (``"/SYSV%08x (deleted)"`` for a SysV segment, whose inode is its shmid)."""

    dev: int
    ino: int
    path: str


class OpenFile(NamedTuple):
    """A descriptor a process holds on a file (not a socket, pipe or anon inode)."""

    fd: int
    dev: int
    ino: int
    path: str


def _gone(exc: OSError) -> bool:
    return isinstance(exc, (FileNotFoundError, ProcessLookupError))


def mapped_files(pid: int, inodes: Optional[Collection[int]] = None) -> list[MappedFile]:
    """The files process *pid* maps (of those whose inode is in *inodes*, if given).

    Raises ``PermissionError`` if this process may not read them, ``ProcessLookupError``
    if *pid* is gone. The kernel escapes newlines in paths, so a line is a mapping."""
    found = []
    try:
        with open(f"/proc/{pid}/maps", errors="surrogateescape") as f:
            for line in f:
                fields = line.split(None, 5)
                if len(fields) < 6 or fields[4] == "0":
                    continue
                with contextlib.suppress(ValueError):
                    ino = int(fields[4])
                    if inodes is not None and ino not in inodes:
                        continue
                    major, _, minor = fields[3].partition(":")
                    found.append(MappedFile(os.makedev(int(major, 16), int(minor, 16)), ino, fields[5].rstrip("\n")))
    except OSError as exc:
        if _gone(exc):
            raise ProcessLookupError(exc.errno, f"process {pid} is gone") from exc
        raise
    return found


def mount_devices(pid: Union[int, str] = "self") -> dict[int, int]:
    """Mount id -> device number (``st_dev``) of the mounts in /proc/PID/mountinfo."""
    devices = {}
    with contextlib.suppress(OSError), open(f"/proc/{pid}/mountinfo", errors="replace") as f:
        for line in f:
            fields = line.split(None, 3)
            with contextlib.suppress(ValueError, IndexError):
                major, _, minor = fields[2].partition(":")
                devices[int(fields[0])] = os.makedev(int(major), int(minor))
    return devices


def _fdinfo(pid: int, fd: str) -> tuple[Optional[int], Optional[int]]:
    """(mount id, inode) from /proc/PID/fdinfo/FD; None for what it does not show
    (``ino:`` is there since Linux 5.14). The first lines are the kernel's own; what a
    driver appends after them is not looked at."""
    mnt_id = ino = None
    with open(f"/proc/{pid}/fdinfo/{fd}", "rb") as f:
        for line in f.read(4096).split(b"\n")[:4]:
            key, _, value = line.partition(b":")
            with contextlib.suppress(ValueError):
                if key == b"mnt_id":
                    mnt_id = int(value)
                elif key == b"ino":
                    ino = int(value)
    return mnt_id, ino


def open_files(pid: int, inodes: Optional[Collection[int]] = None,
               mounts: Optional[dict[int, int]] = None) -> list[OpenFile]:
    """The files process *pid* holds descriptors on (of those whose inode is in
    *inodes*, if given). *mounts* is a mount id -> device cache (``mount_devices()``),
    shared between calls and filled from the process's own mountinfo when one of its
    mounts is not there yet.

    Raises ``PermissionError`` if this process may not read them, ``ProcessLookupError``
    if *pid* is gone. Descriptors closed meanwhile are skipped."""
    if mounts is None:
        mounts = mount_devices()
    looked_up = False
    found = []
    try:
        entries = os.listdir(f"/proc/{pid}/fd")
    except OSError as exc:
        if _gone(exc):
            raise ProcessLookupError(exc.errno, f"process {pid} is gone") from exc
        raise
    for fd in entries:
        link = f"/proc/{pid}/fd/{fd}"
        try:
            path = os.readlink(link)
            if not path.startswith("/"):  # socket:[..], pipe:[..], anon_inode:..: no file
                continue
            mnt_id, ino = _fdinfo(pid, fd)
            if ino is not None and inodes is not None and ino not in inodes:
                continue
            dev = mounts.get(mnt_id) if mnt_id is not None else None
            if dev is None and mnt_id is not None and not looked_up:
                looked_up = True  # another mount namespace: its mountinfo has the mount
                mounts.update(mount_devices(pid))
                dev = mounts.get(mnt_id)
            if dev is None or ino is None:
                st = os.stat(link)  # last resort (module notes)
                dev, ino = st.st_dev, st.st_ino
                if inodes is not None and ino not in inodes:
                    continue
            found.append(OpenFile(int(fd), dev, ino, path))
        except (FileNotFoundError, ProcessLookupError):
            continue
        except OSError as exc:
            if not os.path.exists(f"/proc/{pid}"):
                raise ProcessLookupError(exc.errno, f"process {pid} is gone") from exc
            raise
    return found



def thread_blocked_masks() -> Optional[dict[int, int]]:
    """Every thread of this process: native thread id -> the signals it blocks
    (``SigBlk`` of /proc/self/task/TID/status; bit n-1 is signal n). A thread that
    exits meanwhile, or that /proc does not show, is left out; None when it does not
    show the calling thread's own."""
    try:
        tids = [int(tid) for tid in os.listdir("/proc/self/task")]
    except (OSError, ValueError):
        return None
    masks = {}
    for tid in tids:
        with contextlib.suppress(KeyError, ValueError):
            masks[tid] = int(status(f"self/task/{tid}")["SigBlk"], 16)
    return masks if threading.get_native_id() in masks else None

__all__ = [
    "CAP_SYS_PTRACE",
    "MappedFile",
    "OpenFile",
    "PF_KTHREAD",
    "PROC_PID_INIT_INO",
    "PROC_USER_INIT_INO",
    "ProcessIdentity",
    "SYSVIPC_ID",
    "can_read_every_process",
    "hidden_by_hidepid",
    "is_mount",
    "is_kernel_thread",
    "mapped_files",
    "mount_devices",
    "mounts",
    "mqueue_mount",
    "mqueue_status",
    "open_fd_count",
    "open_files",
    "open_regular",
    "own_identity",
    "pid_namespace_is_initial",
    "pids",
    "process_identity",
    "provably_gone",
    "read_int",
    "read_ints",
    "status",
    "sysvipc_row",
    "sysvipc_rows",
    "thread_blocked_masks",
]
