"""``ipckit info``: this host's IPC limits and which ipckit features work here.

Every value is read (through ``_procfs``), not assumed; a value that cannot be read
shows as ``?`` (and is ``null`` in ``--json``), so the command works in containers
with a partial /proc.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
from typing import Any, Callable, Optional, Sequence, Tuple

from . import _procfs


def _default_pipe_size() -> Optional[int]:
    import fcntl

    try:
        r, w = os.pipe()
    except OSError:
        return None
    try:
        return fcntl.fcntl(w, fcntl.F_GETPIPE_SZ)
    except OSError:
        return None
    finally:
        os.close(r)
        os.close(w)


def _shm_usage() -> Tuple[Optional[int], Optional[int]]:
    try:
        st = os.statvfs("/dev/shm")
    except OSError:
        return None, None
    return st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize


def _feature(check: Callable[[], Any]) -> Tuple[bool, str]:
    try:
        detail = check()
    except Exception as exc:  # a feature probe reports, it never fails the command
        # Our own checks explain themselves; anything else shows what failed.
        return False, str(exc) if type(exc) is RuntimeError else f"{type(exc).__name__}: {exc}"
    return True, "" if detail is None else str(detail)


def _cffi() -> str:
    from ._ffi import ffi, lib

    return f"ipckit._ffi._lib built for {ffi.string(lib.ipckit_ffi_version()).decode()}"


def _posix_ipc() -> str:
    import posix_ipc

    return f"posix_ipc {getattr(posix_ipc, 'VERSION', '?')}"


def _sysv_ipc() -> str:
    import sysv_ipc

    return f"sysv_ipc {getattr(sysv_ipc, 'VERSION', '?')}"


def _sysv_timeout() -> str:
    import sysv_ipc

    if not sysv_ipc.SEMAPHORE_TIMEOUT_SUPPORTED:
        raise RuntimeError("sysv_ipc was built without semtimedop (ipckit uses its own binding)")
    return "semtimedop available in sysv_ipc"


def _mqueue_mount() -> str:
    if not _procfs.is_mount("/dev/mqueue", "mqueue"):
        raise RuntimeError("/dev/mqueue is not mounted (queues work; listing them needs the mount)")
    return "mounted"


def _rwf_nowait() -> str:
    r, w = os.pipe()
    try:
        os.pwritev(w, [b"x"], -1, os.RWF_NOWAIT)
        os.preadv(r, [bytearray(1)], -1, os.RWF_NOWAIT)
    except (OSError, AttributeError) as exc:
        raise RuntimeError(f"RWF_NOWAIT refused on pipes ({exc}): timed pipe calls toggle O_NONBLOCK briefly") from None
    finally:
        os.close(r)
        os.close(w)
    return "timed pipe calls use RWF_NOWAIT (ends stay blocking)"


def collect() -> dict:
    """Everything ``ipckit info`` reports, as a dict (also what ``--json`` prints)."""
    shm_size, shm_free = _shm_usage()
    sem = _procfs.read_ints("/proc/sys/kernel/sem")
    limits = {
        "pipe_default_size": _default_pipe_size(),
        "pipe_max_size": _procfs.read_int("/proc/sys/fs/pipe-max-size"),
        "pipe_buf": select.PIPE_BUF,
        "mqueue_msg_max": _procfs.read_int("/proc/sys/fs/mqueue/msg_max"),
        "mqueue_msgsize_max": _procfs.read_int("/proc/sys/fs/mqueue/msgsize_max"),
        "mqueue_msg_default": _procfs.read_int("/proc/sys/fs/mqueue/msg_default"),
        "mqueue_msgsize_default": _procfs.read_int("/proc/sys/fs/mqueue/msgsize_default"),
        "mqueue_queues_max": _procfs.read_int("/proc/sys/fs/mqueue/queues_max"),
        "sysv_msgmax": _procfs.read_int("/proc/sys/kernel/msgmax"),
        "sysv_msgmnb": _procfs.read_int("/proc/sys/kernel/msgmnb"),
        "sysv_msgmni": _procfs.read_int("/proc/sys/kernel/msgmni"),
        "sysv_shmmax": _procfs.read_int("/proc/sys/kernel/shmmax"),
        "sysv_shmall": _procfs.read_int("/proc/sys/kernel/shmall"),
        "sysv_sem": dict(zip(("semmsl", "semmns", "semopm", "semmni"), sem)) if sem and len(sem) == 4 else None,
        "dev_shm_size": shm_size,
        "dev_shm_free": shm_free,
        "sigrtmin": int(signal.SIGRTMIN),
        "sigrtmax": int(signal.SIGRTMAX),
        "cpu_count": os.cpu_count(),
        "unix_max_dgram_qlen": _procfs.read_int("/proc/sys/net/unix/max_dgram_qlen"),
        "somaxconn": _procfs.read_int("/proc/sys/net/core/somaxconn"),
    }
    features = {}
    for name, probe in (
        ("cffi_module", _cffi),
        ("posix_ipc", _posix_ipc),
        ("sysv_ipc", _sysv_ipc),
        ("sysv_ipc_semaphore_timeout", _sysv_timeout),
        ("dev_mqueue_mounted", _mqueue_mount),
        ("pipe_nowait", _rwf_nowait),
    ):
        ok, detail = _feature(probe)
        features[name] = {"ok": ok, "detail": detail}
    uname = os.uname()
    return {"kernel": f"{uname.sysname} {uname.release} {uname.machine}", "limits": limits, "features": features}


_LABELS = {
    "pipe_default_size": ("pipe capacity (default)", "bytes"),
    "pipe_max_size": ("pipe capacity max (fs.pipe-max-size)", "bytes"),
    "pipe_buf": ("PIPE_BUF (atomic pipe write)", "bytes"),
    "mqueue_msg_max": ("POSIX mqueue msg_max", "messages"),
    "mqueue_msgsize_max": ("POSIX mqueue msgsize_max", "bytes"),
    "mqueue_msg_default": ("POSIX mqueue msg_default", "messages"),
    "mqueue_msgsize_default": ("POSIX mqueue msgsize_default", "bytes"),
    "mqueue_queues_max": ("POSIX mqueue queues_max", "queues"),
    "sysv_msgmax": ("SysV msgmax (message size)", "bytes"),
    "sysv_msgmnb": ("SysV msgmnb (queue capacity)", "bytes"),
    "sysv_msgmni": ("SysV msgmni (queues)", "queues"),
    "sysv_shmmax": ("SysV shmmax (segment size)", "bytes"),
    "sysv_shmall": ("SysV shmall (total)", "pages"),
    "sysv_sem": ("SysV sem (semmsl semmns semopm semmni)", ""),
    "dev_shm_size": ("/dev/shm size", "bytes"),
    "dev_shm_free": ("/dev/shm free", "bytes"),
    "sigrtmin": ("SIGRTMIN", ""),
    "sigrtmax": ("SIGRTMAX", ""),
    "cpu_count": ("CPUs", ""),
    "unix_max_dgram_qlen": ("Unix datagram queue length", "datagrams"),
    "somaxconn": ("listen backlog max (somaxconn)", ""),
}


def _human(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f" ({n / size:.1f} {unit})"
    return ""


def render(info: dict) -> str:
    """The plain, aligned text ``ipckit info`` prints."""
    lines = [f"ipckit info: {info['kernel']}", "", "Limits"]
    width = max(len(label) for label, _ in _LABELS.values())
    for key, (label, unit) in _LABELS.items():
        value = info["limits"].get(key)
        if value is None:
            text = "?"
        elif isinstance(value, int) and value >= 1 << 62:
            text = f"{value} (unlimited)"
        elif isinstance(value, dict):
            text = " ".join(str(v) for v in value.values())
        else:
            text = f"{value}" + (f" {unit}" if unit else "") + (_human(value) if unit == "bytes" else "")
        lines.append(f"  {label:<{width}}  {text}")
    lines += ["", "Features"]
    fwidth = max(len(name) for name in info["features"])
    for name, result in info["features"].items():
        mark = "yes" if result["ok"] else "no "
        lines.append(f"  {name:<{fwidth}}  {mark}  {result['detail']}".rstrip())
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Print the report; ``--json`` prints it as JSON. Returns the exit status."""
    parser = argparse.ArgumentParser(prog="ipckit info", description="This host's IPC limits and ipckit features.")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    args = parser.parse_args([] if argv is None else list(argv))
    info = collect()
    print(json.dumps(info, indent=2) if args.json else render(info))
    return 0


__all__ = ["collect", "main", "render"]
