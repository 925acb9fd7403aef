"""The raw binding layer, no sugar: each C shim called directly."""

import errno
import os
import signal
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
