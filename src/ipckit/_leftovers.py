"""Finding and removing named IPC objects: what ``ipckit ls`` and ``ipckit rm`` do.

Named kernel objects outlive the processes that made them: a program killed before
its ``unlink()`` leaves a POSIX segment in /dev/shm, a semaphore (``sem.NAME``), a
message queue, or a SysV row behind, holding memory until reboot. This module lists
them all in one shape and says, for each, one of three things:

- ``in-use``: a live process maps it, holds it open, is attached, or last used it;
- ``orphaned``: every process that could use it was inspected and none does;
- ``unknown``: not every such process could be inspected. ``rm --orphaned`` leaves
  these alone, and ``why`` says what was not seen.

How each kind is judged
-----------------------
- POSIX shared memory and semaphores are files in /dev/shm. A process uses one while
  it maps it or holds it open, which its /proc/PID/maps and /proc/PID/fd show; they
  are matched by device and inode, not path (glibc's ``sem_open()`` creates a
  semaphore under a temporary name and renames it, so its creator maps a path that no
  longer exists). Any process could hold any of them (root can open everything, and
  a descriptor can be handed over a socket), so one is orphaned only if *every*
  process was read: not in a pid namespace that does not list them all, not under a
  ``hidepid`` /proc, and not when another user's process refuses to be read.
- POSIX message queues live in the mqueue file system (a private mount is made for
  the listing when root and none exists); users hold descriptors, found the same way.
- A SysV segment is in use while attached: the kernel's ``nattch`` counts every
  attachment, in any pid namespace, whoever made it, so it alone decides. Attachers
  are named from the /SYSV mappings in /proc/PID/maps where they can be read.
- For SysV queues and semaphore sets the kernel records only the last pids that used
  them; the object is orphaned when each of those is provably gone
  (``_procfs.provably_gone``: EPERM means alive). Outside the initial pid namespace a
  pid of 0 may be a process this namespace does not show, so the answer is unknown.

Processes a security module keeps ipckit from reading although it holds
CAP_SYS_PTRACE over every process (Landlock, SELinux or AppArmor confining ipckit
itself) are counted in ``why`` but do not make objects unknown: no peer can arrange
that, only whoever set up the sandbox ipckit runs in (a CI runner whose supervisor is
pid 1), and counting them would leave ipckit unable to answer in any such sandbox.
Kernel threads are skipped. Not seen at all: descriptors in flight over a Unix socket,
io_uring fixed files, loop devices and threads with an fd table of their own.

Orphaned is still a statement about now: a process may open the object by name later.

Hostile names and files
-----------------------
/dev/shm is writable by every user, so its entries are input. A FIFO, symlink,
socket, device or directory there is not an IPC object and is never opened (listing
uses ``lstat``; the few files whose first bytes are read are opened through
``_procfs.open_regular``). Names may hold any byte; the CLI escapes them for display.
The process scan runs under a time limit (``SCAN_TIMEOUT``): if /proc stalls, objects
are unknown rather than the command hanging.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import pwd
import stat
import subprocess
import tempfile
import threading
from dataclasses import asdict, dataclass, field
from typing import Iterator, Optional

from . import _procfs

SHM_QUEUE_MAGIC = b"IPCKSHMQ"
OBJECT_QUEUE_MAGIC = b"IPCKOBJQ"  # ipckit.Queue (_queue.py); same length
SHM_DIR = "/dev/shm"
SCAN_TIMEOUT = 20.0  # seconds for reading every process's maps and descriptors

IN_USE, ORPHANED, UNKNOWN = "in-use", "orphaned", "unknown"


@dataclass
class IPCObject:
    """One named IPC object on this host."""

    kind: str  # "posix-shm", "posix-sem", "posix-mq", "sysv-shm", "sysv-sem", "sysv-msg"
    name: object  # "/name" (POSIX) or the int key (SysV; 0 for IPC_PRIVATE)
    size: int  # bytes (shm, mq), semaphores in the set (sysv-sem) or 0
    uid: int
    mode: int
    ident: Optional[int] = None  # SysV id
    users: list[int] = field(default_factory=list)  # pids seen using it now
    detail: str = ""
    state: str = UNKNOWN  # IN_USE, ORPHANED or UNKNOWN
    why: str = ""  # what the state rests on
    inode: Optional[tuple[int, int]] = field(default=None, repr=False)  # (st_dev, st_ino) of a POSIX object

    @property
    def orphaned(self) -> Optional[bool]:
        """True if provably orphaned, False if in use, None if unknown."""
        return None if self.state == UNKNOWN else self.state == ORPHANED

    @property
    def owner(self) -> str:
        return _user_name(self.uid)

    def as_dict(self) -> dict:
        d = asdict(self)
        del d["inode"]
        d["orphaned"] = self.orphaned
        return d


@functools.lru_cache(maxsize=None)
def _user_name(uid: int) -> str:
    # Cached: with LDAP or sssd behind NSS a lookup may go over the network, and a
    # listing has many objects of few owners.
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


# ------------------------------------------------------------------ the process scan


@dataclass
class _Scan:
    """What reading every process's maps and descriptors found."""

    users: dict[tuple[int, int], set[int]] = field(default_factory=dict)  # (dev, ino) -> pids
    attached: dict[int, set[int]] = field(default_factory=dict)  # SysV shmid -> pids
    blind: str = ""  # why not every process was inspected ("" if it was)
    confined: int = 0  # processes a security module keeps us from reading


def _processes(n: int) -> str:
    return f"{n} process" if n == 1 else f"{n} processes"


def _visibility() -> str:
    """Why /proc does not list every process to us, or ""."""
    if not _procfs.pid_namespace_is_initial():
        return "this pid namespace does not show every process (a container or unshare --pid)"
    hidepid = _procfs.hidden_by_hidepid()
    if hidepid:
        return f"/proc is mounted with {hidepid}, which hides other users' processes"
    return ""


def _scan_processes(inodes: set[int], shmids: set[int]) -> _Scan:
    scan = _Scan(blind=_visibility())
    privileged = _procfs.can_read_every_process()
    mounts = _procfs.mount_devices()
    wanted = inodes | shmids
    refused = 0
    for pid in _procfs.pids():
        try:
            maps = _procfs.mapped_files(pid, wanted)
            fds = _procfs.open_files(pid, inodes, mounts) if inodes else []
        except ProcessLookupError:
            continue  # exited: uses nothing
        except OSError:
            if _procfs.is_kernel_thread(pid):
                continue
            if privileged:
                scan.confined += 1
            else:
                refused += 1
            continue
        for m in maps:
            if m.path.startswith("/SYSV") and m.ino in shmids:
                scan.attached.setdefault(m.ino, set()).add(pid)
            else:
                scan.users.setdefault((m.dev, m.ino), set()).add(pid)
        for f in fds:
            scan.users.setdefault((f.dev, f.ino), set()).add(pid)
    if refused and not scan.blind:
        scan.blind = f"{_processes(refused)} could not be inspected (other users' or privileged ones; run as root)"
    return scan


def _scan_with_limit(inodes: set[int], shmids: set[int], timeout: float) -> _Scan:
    """The scan, or an empty one that says why, if it has not finished in *timeout*.

    /proc reads do not wait on peers, but a kernel may still stall one (a process
    stuck with its memory map locked): the command must end anyway. The thread is a
    daemon, so a stuck read does not keep the process alive."""
    box: list = []

    def run() -> None:
        try:
            box.append(_scan_processes(inodes, shmids))
        except BaseException as exc:  # reported below
            box.append(exc)

    worker = threading.Thread(target=run, name="ipckit-ls-scan", daemon=True)
    worker.start()
    worker.join(timeout)
    if not box:
        return _Scan(blind=f"reading the processes did not finish within {timeout:g} s")
    if isinstance(box[0], BaseException):
        raise box[0]
    return box[0]  # type: ignore[no-any-return]


# ------------------------------------------------------------------ POSIX objects


@contextlib.contextmanager
def _mqueue_dir() -> Iterator[Optional[str]]:
    """A directory listing the POSIX message queues, or None if none can be had.

    The system's /dev/mqueue, else a private mount made here (root only): not just any
    mqueue mount, since another program's private one may go away mid-listing."""
    if _procfs.is_mount("/dev/mqueue", "mqueue"):
        yield "/dev/mqueue"
        return
    if os.geteuid() != 0:
        yield None
        return
    path = tempfile.mkdtemp(prefix="ipckit-mqueue-")
    try:
        mounted = subprocess.run(["mount", "-t", "mqueue", "none", path], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        mounted = False
    try:
        yield path if mounted else None
    finally:
        if mounted:
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                subprocess.run(["umount", path], capture_output=True, timeout=10)
        with contextlib.suppress(OSError):
            os.rmdir(path)


def _regular_entries(directory: str, prefix: str) -> Iterator[tuple[str, os.stat_result]]:
    """(entry, lstat) of the regular files in *directory* whose "/entry" POSIX name
    starts with *prefix* ("sem." stripped for semaphores). Nothing is opened."""
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for entry in sorted(names):
        name = "/" + (entry[4:] if entry.startswith("sem.") and directory == SHM_DIR else entry)
        if not name.startswith(prefix):
            continue
        try:
            st = os.stat(os.path.join(directory, entry), follow_symlinks=False)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            yield entry, st


def _first_bytes(path: str, inode: tuple[int, int], n: int) -> bytes:
    fd = _procfs.open_regular(path, inode=inode)
    if fd is None:
        return b""
    try:
        return os.pread(fd, n, 0)
    except OSError:
        return b""
    finally:
        os.close(fd)


def _posix_state(obj: IPCObject, scan: _Scan) -> None:
    assert obj.inode is not None
    obj.users = sorted(scan.users.get(obj.inode, ()))
    if obj.users:
        obj.state, obj.why = IN_USE, "mapped or held open by " + ", ".join(map(str, obj.users))
    elif scan.blind:
        obj.state, obj.why = UNKNOWN, scan.blind
    else:
        obj.state, obj.why = ORPHANED, "no process maps it or holds it open"
        if scan.confined:
            obj.why += f" ({_processes(scan.confined)} that a security module hides from ipckit not inspected)"


def _posix_objects(prefix: str, mqdir: Optional[str]) -> list[IPCObject]:
    found = []
    for entry, st in _regular_entries(SHM_DIR, prefix):
        if entry.startswith("sem."):
            found.append(IPCObject("posix-sem", "/" + entry[4:], 0, st.st_uid, st.st_mode & 0o7777))
        else:
            found.append(IPCObject("posix-shm", "/" + entry, st.st_size, st.st_uid, st.st_mode & 0o7777))
        found[-1].inode = (st.st_dev, st.st_ino)
    if mqdir is not None:
        for entry, st in _regular_entries(mqdir, prefix):
            obj = IPCObject("posix-mq", "/" + entry, 0, st.st_uid, st.st_mode & 0o7777)
            obj.inode = (st.st_dev, st.st_ino)
            found.append(obj)
    return found


def _posix_details(objects: list[IPCObject], mqdir: Optional[str]) -> None:
    """Read what the listing shows of each object's content (after the scan, so that
    this process's own brief descriptors are not taken for users)."""
    for obj in objects:
        assert isinstance(obj.name, str) and obj.inode is not None
        if obj.kind == "posix-shm":
            magic = _first_bytes(os.path.join(SHM_DIR, obj.name[1:]), obj.inode, len(SHM_QUEUE_MAGIC))
            if magic == SHM_QUEUE_MAGIC:
                obj.detail = "ipckit shm queue"
            elif magic == OBJECT_QUEUE_MAGIC:
                obj.detail = "ipckit queue"
        elif obj.kind == "posix-mq" and mqdir is not None:
            status = _procfs.mqueue_status(obj.name, mqdir)
            if status is not None:
                obj.size = status["QSIZE"]
                obj.detail = " ".join(f"{k}:{v}" for k, v in status.items())


# ------------------------------------------------------------------ SysV objects


def _last_users(obj: IPCObject, pids: list[int], pid_view: str) -> None:
    """State of a SysV queue or semaphore set from the last pids that used it."""
    alive = sorted({p for p in pids if p > 0 and not _procfs.provably_gone(p)})
    obj.users = alive
    if alive:
        obj.state, obj.why = IN_USE, "last used by live process " + ", ".join(map(str, alive))
    elif pid_view:
        obj.state, obj.why = UNKNOWN, f"its last users may be outside this pid namespace ({pid_view})"
    elif any(p > 0 for p in pids):
        obj.state, obj.why = ORPHANED, "its last users (" + ", ".join(str(p) for p in sorted(set(pids)) if p > 0) + ") are gone"
    else:
        obj.state, obj.why = ORPHANED, "no process has used it since it was made"


def _semaphore_pids(semid: int, nsems: int) -> "list[int] | int":
    """The pids that last operated on each member of the set (GETPID), or an errno."""
    from ._ffi import lib

    pids = []
    for i in range(nsems):
        rc = lib.ipckit_semctl_get(semid, i, lib.GETPID)
        if rc < 0:
            return -rc
        pids.append(rc)
    return pids


def _sysv_objects(scan: Optional[_Scan]) -> list[IPCObject]:
    pid_view = "" if _procfs.pid_namespace_is_initial() else "this pid namespace does not show every process"
    found = []
    for row in _procfs.sysvipc_rows("shm"):
        obj = IPCObject("sysv-shm", row["key"], row["size"], row["uid"], row["perms"] & 0o7777, row["shmid"],
                        detail=f"nattch={row['nattch']} cpid={row['cpid']}")
        obj.users = sorted(scan.attached.get(row["shmid"], ())) if scan else []
        if row["nattch"] > 0:
            obj.state, obj.why = IN_USE, f"attached (nattch={row['nattch']})"
        else:
            obj.state, obj.why = ORPHANED, "attached nowhere (nattch=0)"
        found.append(obj)
    for row in _procfs.sysvipc_rows("msg"):
        obj = IPCObject("sysv-msg", row["key"], row["cbytes"], row["uid"], row["perms"] & 0o7777, row["msqid"],
                        detail=f"qnum={row['qnum']}")
        _last_users(obj, [row["lspid"], row["lrpid"]], pid_view)
        found.append(obj)
    for row in _procfs.sysvipc_rows("sem"):
        obj = IPCObject("sysv-sem", row["key"], row["nsems"], row["uid"], row["perms"] & 0o7777, row["semid"])
        pids = _semaphore_pids(row["semid"], row["nsems"])
        if isinstance(pids, int):
            if pids in (errno.EIDRM, errno.EINVAL):
                continue  # removed meanwhile
            obj.state, obj.why = UNKNOWN, f"its last users cannot be read ({os.strerror(pids)})"
        else:
            _last_users(obj, pids, pid_view)
        found.append(obj)
    return found


# ------------------------------------------------------------------ the API


def list_objects(prefix: str = "", *, inspect: bool = True, scan_timeout: float = SCAN_TIMEOUT) -> list[IPCObject]:
    """Every named POSIX and SysV IPC object this process can see.

    With *prefix*, only POSIX objects whose name starts with it (SysV objects have no
    name). ``inspect=False`` skips the process scan: every state is then unknown."""
    with _mqueue_dir() as mqdir:
        posix = _posix_objects(prefix, mqdir)
        shmids = set() if prefix else {row["shmid"] for row in _procfs.sysvipc_rows("shm")}
        inodes = {obj.inode[1] for obj in posix if obj.inode is not None}
        scan = _scan_with_limit(inodes, shmids, scan_timeout) if inspect and (inodes or shmids) else None
        for obj in posix:
            if scan is not None:
                _posix_state(obj, scan)
            else:
                obj.why = "not inspected"
        _posix_details(posix, mqdir)
    sysv = [] if prefix else _sysv_objects(scan)
    if not inspect:
        for obj in sysv:
            obj.state, obj.users, obj.why = UNKNOWN, [], "not inspected"
    return [*posix, *sysv]


def remove(obj: IPCObject) -> None:
    """Remove *obj* (unlink the name / IPC_RMID). Raises an ipckit error on failure.

    A POSIX name is unlinked only if it still names the file that was listed (its
    owner may have replaced it since), a SysV id only if it still has the listed key."""
    from ._errors import error_from_errno, translate_oserror

    what = f"remove {obj.kind} {obj.name!r}"
    with translate_oserror(what):
        if obj.kind in ("posix-shm", "posix-sem"):
            path = os.path.join(SHM_DIR, ("sem." if obj.kind == "posix-sem" else "") + str(obj.name)[1:])
            st = os.stat(path, follow_symlinks=False)
            if obj.inode is not None and (st.st_dev, st.st_ino) != obj.inode:
                raise error_from_errno(errno.ESTALE, f"{what}: replaced since it was listed; left alone")
            os.unlink(path)
        elif obj.kind == "posix-mq":
            import posix_ipc

            posix_ipc.unlink_message_queue(obj.name)
        else:
            import sysv_ipc

            table = {"sysv-shm": "shm", "sysv-msg": "msg", "sysv-sem": "sem"}[obj.kind]
            row = _procfs.sysvipc_row(table, obj.ident) if obj.ident is not None else None
            if row is None:
                raise error_from_errno(errno.ENOENT, what)
            if row["key"] != obj.name:
                raise error_from_errno(errno.ESTALE, f"{what}: its id now belongs to another object; left alone")
            {"sysv-shm": sysv_ipc.remove_shared_memory, "sysv-msg": sysv_ipc.remove_message_queue,
             "sysv-sem": sysv_ipc.remove_semaphore}[obj.kind](obj.ident)


__all__ = ["IN_USE", "IPCObject", "ORPHANED", "UNKNOWN", "list_objects", "remove"]
