"""The raw binding layer, no sugar: each C shim called directly."""

import errno
import os
import signal
import struct
import subprocess
import sys
import threading
import time

import pytest

import ipckit
from ipckit import _ffi
from ipckit._ffi import ffi, lib


def test_compiled_module_matches_package_version():
    assert ffi.string(lib.ipckit_ffi_version()).decode() == ipckit.__version__


def test_check_maps_negative_errno():
    assert _ffi.check(5) == 5
    with pytest.raises(ipckit.NotFoundError):
        _ffi.check(-errno.ENOENT, "thing")


def test_call_retries_eintr():
    results = iter([-errno.EINTR, -errno.EINTR, 7])
    assert _ffi.call(lambda: next(results)) == 7


def test_futex_wait_times_out_and_checks_value():
    word = ffi.new("uint32_t *", 1)
    assert lib.ipckit_futex_wait(word, 0, 10**6) == -errno.EAGAIN  # value differs: no wait
    start = time.monotonic()
    assert lib.ipckit_futex_wait(word, 1, 50 * 10**6) == -errno.ETIMEDOUT
    assert time.monotonic() - start >= 0.045


def test_futex_wake_releases_a_waiter():
    word = ffi.new("uint32_t *", 0)
    out = []

    def waiter():
        out.append(lib.ipckit_futex_wait(word, 0, 5 * 10**9))

    t = threading.Thread(target=waiter)
    t.start()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        word[0] = 1
        if lib.ipckit_futex_wake(word, 1) == 1 or not t.is_alive():
            break
        time.sleep(0.001)
    t.join(5)
    assert out and out[0] in (0, -errno.EAGAIN)


def test_sigqueue_errors_and_payload():
    assert lib.ipckit_sigqueue(2**22 + 12345, signal.SIGUSR1, 0) == -errno.ESRCH
    # The receiver is a separate, single-threaded process: blocking a signal in one
    # thread of this (multi-threaded) test runner would let the kernel deliver it to
    # another thread and kill the run.
    child = subprocess.Popen(
        [sys.executable, "-c", (
            "import signal, sys\n"
            "signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGRTMIN})\n"
            "print('ready', flush=True)\n"
            "info = signal.sigtimedwait({signal.SIGRTMIN}, 10)\n"
            "print(info.si_signo, info.si_pid, info.si_code, flush=True)\n"
        )],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert child.stdout.readline().strip() == "ready"
        assert lib.ipckit_sigqueue(child.pid, signal.SIGRTMIN, 42) == 0
        signo, pid, code = map(int, child.stdout.readline().split())
        assert (signo, pid) == (signal.SIGRTMIN, os.getpid())
        assert code == -1  # SI_QUEUE: sent by sigqueue, with a payload
    finally:
        child.kill()
        child.wait(10)


def test_semtimedop_times_out(sysv_key):
    import sysv_ipc

    sem = sysv_ipc.Semaphore(sysv_key, sysv_ipc.IPC_CREX, 0o600, 0)
    try:
        op = ffi.new("struct sembuf *", {"sem_num": 0, "sem_op": -1, "sem_flg": 0})
        ts = ffi.new("struct timespec *", {"tv_sec": 0, "tv_nsec": 50 * 10**6})
        assert lib.ipckit_semtimedop(sem.id, op, 1, ts) == -errno.EAGAIN
        assert lib.ipckit_semctl_setval(sem.id, 0, 2) == 0
        assert lib.ipckit_semctl_get(sem.id, 0, lib.GETVAL) == 2
        assert lib.ipckit_semtimedop(sem.id, op, 1, ts) == 0
        assert lib.ipckit_semctl_get(sem.id, 0, lib.GETVAL) == 1
        assert lib.ipckit_semctl_get(sem.id, 0, lib.GETPID) == os.getpid()
    finally:
        sem.remove()


def _ring(capacity=4, max_msg=16):
    """A ring in plain process memory: what the shm queue maps, without the file."""
    layout = ffi.new("ipckit_shmq_info *")
    assert lib.ipckit_shmq_layout(capacity, max_msg, layout) == 0
    memory = bytearray(layout.size)
    base = ffi.from_buffer(memory)
    assert lib.ipckit_shmq_init(base, layout.size, capacity, max_msg) == 0
    h = ffi.new("ipckit_shmq *")
    assert lib.ipckit_shmq_attach(h, base, layout.size) == 0
    return h, memory, base, layout


def test_ring_results_come_in_structs_and_errors_as_errno():
    h, memory, base, layout = _ring()
    res = ffi.new("ipckit_shmq_result *")
    dst = ffi.new("char[16]")
    try:
        assert lib.ipckit_shmq_send(h, b"abc", 3, 0) == 0
        assert lib.ipckit_shmq_recv(h, dst, 16, 0, 0, res) == 0
        assert (res.len, res.held, ffi.buffer(dst, 3)[:]) == (3, 0, b"abc")
        assert lib.ipckit_shmq_recv(h, dst, 16, 0, 0, res) == -errno.EAGAIN  # deadline 0: would block
        assert lib.ipckit_shmq_recv(h, dst, 16, 0, 1, res) == -errno.ETIMEDOUT  # a deadline long past
        assert lib.ipckit_shmq_send(h, b"x" * 17, 17, 0) == -errno.EMSGSIZE
        # A length of 2**64 - 4 used to come back as the rc, where it reads -EINTR.
        assert lib.ipckit_shmq_send(h, b"abc", 3, 0) == 0
        struct.pack_into("<Q", memory, lib.IPCKIT_SHMQ_HEADER_SIZE + layout.stride + 8, 2**64 - errno.EINTR)
        assert lib.ipckit_shmq_recv(h, dst, 16, 0, 0, res) == -errno.EBADMSG
        problem = ffi.new("ipckit_shmq_problem *")
        lib.ipckit_shmq_last_problem(problem)
        assert (problem.reason, problem.value, problem.where) == (lib.IPCKIT_SHMQ_BAD_LENGTH, 2**64 - errno.EINTR, 1)
        info = ffi.new("ipckit_shmq_info *")
        assert lib.ipckit_shmq_stat(h, info) == 0 and (info.head, info.tail, info.dropped) == (2, 2, 1)
    finally:
        lib.ipckit_shmq_close(h)
        lib.ipckit_shmq_detach(h)
    assert lib.ipckit_shmq_send(h, b"abc", 3, 0) == -errno.EBADF
    assert lib.ipckit_shmq_stat(h, ffi.new("ipckit_shmq_info *")) == -errno.EBADF
    ffi.release(base)


@pytest.mark.parametrize("patch, reason", [
    ((0, b"NOTQUEUE"), "BAD_MAGIC"),
    ((0, bytes(8)), "NOT_READY"),
    ((8, struct.pack("<I", 7)), "BAD_VERSION"),
    ((16, struct.pack("<Q", 5)), "BAD_LAYOUT"),
])
def test_attach_says_why_with_errno(patch, reason):
    layout = ffi.new("ipckit_shmq_info *")
    assert lib.ipckit_shmq_layout(4, 16, layout) == 0
    memory = bytearray(layout.size)
    base = ffi.from_buffer(memory)
    assert lib.ipckit_shmq_init(base, layout.size, 4, 16) == 0
    offset, data = patch
    memory[offset:offset + len(data)] = data
    h = ffi.new("ipckit_shmq *")
    assert lib.ipckit_shmq_attach(h, base, layout.size) == -errno.EBADMSG
    problem = ffi.new("ipckit_shmq_problem *")
    lib.ipckit_shmq_last_problem(problem)
    assert problem.reason == getattr(lib, "IPCKIT_SHMQ_" + reason)
    if reason == "BAD_VERSION":
        assert problem.value == 7
    ffi.release(base)


def test_layout_rejects_what_does_not_fit():
    layout = ffi.new("ipckit_shmq_info *")
    for capacity, max_msg in [(0, 8), (8, 0), (2**39, 8), (8, 2**49), (2**38, 2**48)]:
        assert lib.ipckit_shmq_layout(capacity, max_msg, layout) == -errno.EINVAL
    assert lib.ipckit_shmq_layout(3, 1, layout) == 0
    assert (layout.stride, layout.size) == (128, lib.IPCKIT_SHMQ_HEADER_SIZE + 3 * 128)


def test_proc_identity():
    start = ffi.new("uint64_t *")
    assert lib.ipckit_proc_identity(os.getpid(), start) == lib.IPCKIT_PROC_ALIVE
    with open("/proc/self/stat") as f:
        assert start[0] == int(f.read().rsplit(")", 1)[1].split()[19])
    child = subprocess.Popen(["true"])
    child.wait()
    assert lib.ipckit_proc_identity(child.pid, start) == lib.IPCKIT_PROC_GONE and start[0] == 0
    assert lib.ipckit_proc_identity(0, start) == -errno.EINVAL
    assert lib.ipckit_proc_identity(-5, start) == -errno.EINVAL


def test_every_concern_is_listed_in_the_build():
    """_build.py compiles what it lists, nothing by globbing: a .cdef it does not
    list would silently be left out. Units have a header; shims do not need one."""
    import importlib.util
    import pathlib

    here = pathlib.Path(_ffi.__file__).resolve().parent
    spec = importlib.util.spec_from_file_location("ipckit_ffi_build", here / "_build.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    concerns = {p.stem for p in (here / "csrc").glob("*.cdef")}
    assert set(build.SHIMS) | set(build.UNITS) == concerns
    assert not set(build.SHIMS) & set(build.UNITS) and build.SHIMS[0] == "common"
    for unit in build.UNITS:
        assert (here / "csrc" / f"{unit}.h").is_file() and (here / "csrc" / f"{unit}.c").is_file()
