"""The report header: what machine, kernel, Python and packages the numbers were taken on."""

from __future__ import annotations

import contextlib
import os
import platform
import shlex
import sys
from typing import Any, Optional

from ipckit import _procfs  # the project's one reader of /proc files

LIMIT_FILES = {
    "mqueue.msg_max": "/proc/sys/fs/mqueue/msg_max",
    "mqueue.msgsize_max": "/proc/sys/fs/mqueue/msgsize_max",
    "mqueue.queues_max": "/proc/sys/fs/mqueue/queues_max",
    "sysv.msgmax": "/proc/sys/kernel/msgmax",
    "sysv.msgmnb": "/proc/sys/kernel/msgmnb",
    "sysv.msgmni": "/proc/sys/kernel/msgmni",
    "sysv.shmmax": "/proc/sys/kernel/shmmax",
    "net.wmem_default": "/proc/sys/net/core/wmem_default",
    "net.rmem_default": "/proc/sys/net/core/rmem_default",
    "pipe.max_size": "/proc/sys/fs/pipe-max-size",
    "rtsig_max": "/proc/sys/kernel/rtsig-max",
}

PACKAGES = ("ipckit", "cffi", "posix_ipc", "sysv_ipc", "numpy", "matplotlib", "pyzmq", "faster-fifo", "iceoryx2")


def _read(path: str) -> Optional[str]:
    with contextlib.suppress(OSError), open(path) as f:
        return f.read().strip()
    return None


def limit(key: str) -> Optional[int]:
    """A kernel limit from LIMIT_FILES as an int, or None if unreadable."""
    return _procfs.read_int(LIMIT_FILES[key])


def cpu_model() -> str:
    text = _read("/proc/cpuinfo") or ""
    for line in text.splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def hypervisor() -> Optional[str]:
    text = _read("/proc/cpuinfo") or ""
    if " hypervisor" not in text:
        return None
    vendor = _read("/sys/class/dmi/id/sys_vendor")
    return vendor or "yes"


def package_versions() -> dict[str, Optional[str]]:
    from importlib import metadata

    out: dict[str, Optional[str]] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0))


def describe(argv: list[str]) -> dict[str, Any]:
    uname = os.uname()
    load = os.getloadavg()
    return {
        "cpu_model": cpu_model(),
        "cpus_online": os.cpu_count(),
        "cpus_usable": cpus(),
        "hypervisor": hypervisor(),
        "kernel": f"{uname.sysname} {uname.release}",
        "kernel_version": uname.version,
        "machine": uname.machine,
        "hostname": uname.nodename,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "python_executable": sys.executable,
        "packages": package_versions(),
        "limits": {key: limit(key) for key in LIMIT_FILES},
        "loadavg": [round(x, 2) for x in load],
        "command": " ".join(shlex.quote(a) for a in argv),
    }


def sysv_keys_in_use() -> set[int]:
    return {row["key"] for kind in ("msg", "sem", "shm") for row in _procfs.sysvipc_rows(kind)}
