"""Finding and removing named IPC objects: what ``ipckit ls`` and ``ipckit rm`` do.

Named kernel objects outlive the processes that made them: a program killed before
its ``unlink()`` leaves a POSIX segment in /dev/shm, a semaphore (``sem.NAME``), a
message queue, or a SysV row behind, holding memory until reboot. This module lists
them all in one shape and tells which are still in use:

- POSIX shared memory and semaphores are files in /dev/shm. A process uses one while
  it maps it or holds it open, which /proc/PID/maps and /proc/PID/fd show.
- POSIX message queues live in the mqueue filesystem; where /dev/mqueue is not
  mounted, root can mount a private instance to list them (no other user can).
  Open descriptors show up in /proc/PID/fd as ``/NAME`` on the mqueue mount.
- SysV objects are rows of /proc/sysvipc/{msg,sem,shm}. A segment is in use while it
  is attached (``nattch``); for queues and semaphore sets the kernel only records the
  last pids that used them, so "in use" means one of those is still alive.

An object is *orphaned* when no live process uses it by these measures. That is a
hint, not proof: a process may open it again by name later.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from typing import Iterator, Optional

SHM_QUEUE_MAGIC = b"IPCKSHMQ"


@dataclass
class IPCObject:
    """One named IPC object on this host."""

    kind: str  # "posix-shm", "posix-sem", "posix-mq", "sysv-shm", "sysv-sem", "sysv-msg"
    name: object  # "/name" (POSIX) or the int key (SysV; 0 for IPC_PRIVATE)
    size: int  # bytes (shm, mq), semaphores in the set (sysv-sem) or 0
    uid: int
    mode: int
    ident: Optional[int] = None  # SysV id
    users: list[int] = field(default_factory=list)  # pids using it now (best effort)
    detail: str = ""

    @property
    def orphaned(self) -> bool:
        return not self.users

    @property
    def owner(self) -> str:
        try:
            return pwd.getpwuid(self.uid).pw_name
        except KeyError:
            return str(self.uid)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["orphaned"] = self.orphaned
        return d


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _proc_users() -> dict[tuple[int, int], set[int]]:
    """(st_dev, st_ino) -> pids that map that file or hold it open.

    Matched by inode, not path: glibc's sem_open() creates a semaphore under a
    temporary name and renames it, so its creator maps a path that no longer exists.
    Only processes this user may inspect are seen."""
    users: dict[tuple[int, int], set[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        with contextlib.suppress(OSError):
            with open(f"/proc/{pid}/maps") as f:
                for line in f:
                    fields = line.split(None, 5)
                    if len(fields) == 6 and fields[5].startswith("/dev/shm/"):
                        major, minor = (int(x, 16) for x in fields[3].split(":"))
                        users.setdefault((os.makedev(major, minor), int(fields[4])), set()).add(pid)
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    st = os.stat(f"/proc/{pid}/fd/{fd}")
                    users.setdefault((st.st_dev, st.st_ino), set()).add(pid)
    return users


@contextlib.contextmanager
def _mqueue_dir() -> Iterator[Optional[str]]:
    """A directory listing the POSIX message queues, or None if none can be had."""
    if os.path.ismount("/dev/mqueue"):
        yield "/dev/mqueue"
        return
    if os.geteuid() != 0:
        yield None
        return
    path = tempfile.mkdtemp(prefix="ipckit-mqueue-")
    mounted = subprocess.run(["mount", "-t", "mqueue", "none", path], capture_output=True).returncode == 0
    try:
        yield path if mounted else None
    finally:
        if mounted:
            subprocess.run(["umount", path], capture_output=True)
        with contextlib.suppress(OSError):
            os.rmdir(path)


def _posix_objects(users: dict[tuple[int, int], set[int]]) -> Iterator[IPCObject]:
    with contextlib.suppress(OSError):
        for entry in sorted(os.listdir("/dev/shm")):
            path = f"/dev/shm/{entry}"
            try:
                st = os.stat(path, follow_symlinks=False)
            except OSError:
                continue
            if entry.startswith("sem."):
                yield IPCObject("posix-sem", "/" + entry[4:], 0, st.st_uid, st.st_mode & 0o7777, users=sorted(users.get((st.st_dev, st.st_ino), ())))
                continue
            detail = ""
            with contextlib.suppress(OSError), open(path, "rb") as f:
                if f.read(len(SHM_QUEUE_MAGIC)) == SHM_QUEUE_MAGIC:
                    detail = "ipckit shm queue"
            yield IPCObject("posix-shm", "/" + entry, st.st_size, st.st_uid, st.st_mode & 0o7777, users=sorted(users.get((st.st_dev, st.st_ino), ())), detail=detail)
    with _mqueue_dir() as mqdir:
        if mqdir is None:
            return
        for entry in sorted(os.listdir(mqdir)):
            path = os.path.join(mqdir, entry)
            try:
                st = os.stat(path)
                with open(path) as f:
                    detail = f.read().strip()  # "QSIZE:0 NOTIFY:0 SIGNO:0 NOTIFY_PID:0"
            except OSError:
                continue
            qsize = int(detail.split()[0].split(":")[1]) if detail.startswith("QSIZE:") else 0
            yield IPCObject("posix-mq", "/" + entry, qsize, st.st_uid, st.st_mode & 0o7777, users=sorted(users.get((st.st_dev, st.st_ino), ())), detail=" ".join(detail.split()))


def _sysv_rows(kind: str) -> Iterator[dict[str, int]]:
    with contextlib.suppress(OSError), open(f"/proc/sysvipc/{kind}") as f:
        header = f.readline().split()
        for line in f:
            # perms is printed in octal, everything else in decimal.
            yield {k: int(v, 8 if k == "perms" else 10) for k, v in zip(header, line.split())}


def _sysv_objects() -> Iterator[IPCObject]:
    for row in _sysv_rows("shm"):
        users = [p for p in (row["cpid"], row["lpid"]) if _alive(p)] if row["nattch"] else []
        yield IPCObject("sysv-shm", row["key"] & 0xFFFFFFFF, row["size"], row["uid"], row["perms"] & 0o7777, row["shmid"],
                        sorted(set(users)), f"nattch={row['nattch']} cpid={row['cpid']}")
    for row in _sysv_rows("msg"):
        users = [p for p in (row["lspid"], row["lrpid"]) if _alive(p)]
        yield IPCObject("sysv-msg", row["key"] & 0xFFFFFFFF, row["cbytes"], row["uid"], row["perms"] & 0o7777, row["msqid"],
                        sorted(set(users)), f"qnum={row['qnum']}")
    for row in _sysv_rows("sem"):
        users = _semaphore_users(row["semid"], row["nsems"])
        yield IPCObject("sysv-sem", row["key"] & 0xFFFFFFFF, row["nsems"], row["uid"], row["perms"] & 0o7777, row["semid"], users)


def _semaphore_users(semid: int, nsems: int) -> list[int]:
    """Live pids that last operated on a member of the set (GETPID)."""
    try:
        from ._ffi import lib
    except ImportError:  # pragma: no cover
        return []
    pids = {lib.ipckit_semctl_get(semid, i, lib.GETPID) for i in range(nsems)}
    return sorted(p for p in pids if p > 0 and _alive(p))


def list_objects() -> list[IPCObject]:
    """Every named POSIX and SysV IPC object this process can see."""
    users = _proc_users()
    return [*_posix_objects(users), *_sysv_objects()]


def remove(obj: IPCObject) -> None:
    """Remove *obj* (unlink the name / IPC_RMID). Raises an ipckit error on failure."""
    from ._errors import translate_oserror

    with translate_oserror(f"remove {obj.kind} {obj.name!r}"):
        if obj.kind in ("posix-shm", "posix-sem"):
            path = "/dev/shm/" + ("sem." if obj.kind == "posix-sem" else "") + str(obj.name)[1:]
            os.unlink(path)
        elif obj.kind == "posix-mq":
            import posix_ipc

            posix_ipc.unlink_message_queue(obj.name)
        else:
            import sysv_ipc

            {"sysv-shm": sysv_ipc.remove_shared_memory, "sysv-msg": sysv_ipc.remove_message_queue,
             "sysv-sem": sysv_ipc.remove_semaphore}[obj.kind](obj.ident)


__all__ = ["IPCObject", "list_objects", "remove"]
