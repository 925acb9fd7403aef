"""`ipckit info`: the host limits and feature report."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys

from ipckit import _info, _procfs


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ipckit", "info", *args], capture_output=True, text=True, timeout=60)


def _proc(path: str) -> int:
    with open(path) as f:
        return int(f.read().split()[0])


def test_text_report() -> None:
    result = _run()
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for label in ("pipe capacity (default)", "PIPE_BUF", "POSIX mqueue msg_max", "POSIX mqueue msgsize_max",
                  "SysV msgmax", "SysV msgmnb", "/dev/shm size", "/dev/shm free", "SIGRTMIN", "SIGRTMAX", "CPUs",
                  "cffi_module", "posix_ipc", "sysv_ipc", "sysv_ipc_semaphore_timeout", "dev_mqueue_mounted"):
        assert label in out, f"{label!r} missing from:\n{out}"
    lines = {line.split("  ")[1].strip(): line for line in out.splitlines() if line.startswith("  ")}
    assert f" {select.PIPE_BUF} bytes" in lines["PIPE_BUF (atomic pipe write)"]
    assert lines["SIGRTMIN"].split()[-1] == str(int(signal.SIGRTMIN))
    # Aligned: every value of the limits block starts in the same column.
    limit_lines = out.split("Limits\n")[1].split("\n\n")[0].splitlines()
    columns = {len(line) - len(line[2:].split("  ", 1)[1].lstrip()) for line in limit_lines}
    assert len(columns) == 1, limit_lines


def test_json_report_matches_the_kernel() -> None:
    result = _run("--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    limits = info["limits"]
    assert limits["pipe_buf"] == select.PIPE_BUF
    assert limits["pipe_default_size"] >= 4096
    assert limits["pipe_max_size"] == _proc("/proc/sys/fs/pipe-max-size")
    assert limits["mqueue_msg_max"] == _proc("/proc/sys/fs/mqueue/msg_max")
    assert limits["mqueue_msgsize_max"] == _proc("/proc/sys/fs/mqueue/msgsize_max")
    assert limits["sysv_msgmax"] == _proc("/proc/sys/kernel/msgmax")
    assert limits["sysv_msgmnb"] == _proc("/proc/sys/kernel/msgmnb")
    assert limits["sigrtmin"] == signal.SIGRTMIN and limits["sigrtmax"] == signal.SIGRTMAX
    assert limits["cpu_count"] == os.cpu_count()
    st = os.statvfs("/dev/shm")
    assert limits["dev_shm_size"] == st.f_blocks * st.f_frsize
    assert info["features"]["cffi_module"]["ok"] is True
    assert info["features"]["posix_ipc"]["ok"] is True
    import sysv_ipc

    assert info["features"]["sysv_ipc_semaphore_timeout"]["ok"] is bool(sysv_ipc.SEMAPHORE_TIMEOUT_SUPPORTED)


def test_unreadable_values_show_as_question_marks(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # What a container with a partial /proc looks like to the one /proc reader.
    monkeypatch.setattr(_procfs, "read_int", lambda path: None)
    monkeypatch.setattr(_procfs, "read_ints", lambda path: None)
    info = _info.collect()
    assert info["limits"]["mqueue_msg_max"] is None and info["limits"]["sysv_sem"] is None
    assert info["limits"]["pipe_buf"] == select.PIPE_BUF  # not from /proc: still there
    lines = {line.split("  ")[1].strip(): line for line in _info.render(info).splitlines() if line.startswith("  ")}
    assert lines["POSIX mqueue msg_max"].split()[-1] == "?"
    assert lines["SysV sem (semmsl semmns semopm semmni)"].split()[-1] == "?"
    assert _info.main([]) == 0
