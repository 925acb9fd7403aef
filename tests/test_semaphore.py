"""ipckit.Semaphore on both backends: the contract (docs/reference/contract.md), timeouts (never early,
EINTR retried), an exact counter under contention across fork and spawn processes,
SysV sets (atomic multi-op, SEM_UNDO after SIGKILL, GETNCNT/GETZCNT/GETPID), C peers."""

from __future__ import annotations

import multiprocessing
import os
import platform
import pickle
import random
import signal
import struct
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import ipckit

BACKENDS = ["posix", "sysv"]
CONTEXTS = ["fork", "spawn"]
CHILD_TIMEOUT = 30


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    return request.param


@pytest.fixture
def new_name(backend, make_name, make_key):
    """A factory of fresh names for the backend under test (removed after the test)."""
    return make_name if backend == "posix" else make_key


def _sysv_sem_row(key: int):
    with open("/proc/sysvipc/sem") as f:
        header = next(f).split()
        for line in f:
            fields = line.split()
            if int(fields[0]) & 0xFFFFFFFF == key:
                return dict(zip(header, fields))
    return None


def _exists(backend, name) -> bool:
    if backend == "posix":
        return os.path.exists(f"/dev/shm/sem.{name[1:]}")
    return _sysv_sem_row(name) is not None


def _mode_of(backend, name) -> int:
    if backend == "posix":
        return os.stat(f"/dev/shm/sem.{name[1:]}").st_mode & 0o7777
    return int(_sysv_sem_row(name)["perms"], 8) & 0o777


def _join(proc) -> None:
    proc.join(CHILD_TIMEOUT)
    if proc.is_alive():
        proc.kill()
        proc.join()
        raise AssertionError("child process hung")
    assert proc.exitcode == 0, f"child exited with {proc.exitcode}"


@pytest.fixture
def sem(backend, new_name):
    s = ipckit.Semaphore.create(new_name(), 1, backend=backend)
    yield s
    try:
        s.unlink()
    except ipckit.NotFoundError:
        pass
    s.close()


# ---------------------------------------------------------------- the contract


def test_create_open_acquire_release_value(backend, new_name):
    name = new_name()
    s = ipckit.Semaphore.create(name, 2, backend=backend)
    try:
        assert isinstance(s, ipckit.Semaphore)
        assert (s.name, s.backend, s.value) == (name, backend, 2)
        assert s.acquire() is True
        assert s.acquire(timeout=1) is True
        assert s.value == 0
        assert s.acquire(blocking=False) is False
        s.release()
        o = ipckit.Semaphore.open(name, backend=backend)
        with o:  # Semaphore's `with` acquires and releases; it does not close
            assert s.value == 0
        assert s.value == 1 and not o.closed
        o.release(3)
        assert s.value == 4
        o.close()
        assert "closed" in repr(o)
        assert s.value == 4
    finally:
        s.unlink()
        s.close()
    assert not _exists(backend, name)


@pytest.mark.parametrize("umask", [0o077, 0o000])
def test_default_mode_is_exactly_0600(backend, umask, new_name):
    old = os.umask(umask)
    try:
        a = ipckit.Semaphore.create(new_name(), backend=backend)
        b = ipckit.Semaphore.create(new_name(), mode=0o640, backend=backend)
    finally:
        os.umask(old)
    try:
        assert _mode_of(backend, a.name) == 0o600
        assert _mode_of(backend, b.name) == 0o640
    finally:
        for s in (a, b):
            s.unlink()
            s.close()


def test_timeout_zero_returns_false_at_once(sem):
    assert sem.acquire(timeout=0) is True
    start = time.monotonic()
    assert sem.acquire(timeout=0) is False
    assert sem.acquire(blocking=False) is False
    assert time.monotonic() - start < 1.0  # "never blocks" (lenient: no speed assertions)


def test_timeout_is_never_early(sem):
    assert sem.acquire()
    for timeout in (0.2, 0.05):
        start = time.monotonic()
        assert sem.acquire(timeout=timeout) is False
        assert time.monotonic() - start >= timeout
    assert sem.value == 0


def test_timeout_arguments_checked_like_threading(sem):
    with pytest.raises(ValueError, match="non-blocking"):
        sem.acquire(blocking=False, timeout=1)
    with pytest.raises(ValueError, match="timeout"):
        sem.acquire(timeout=-1)
    with pytest.raises(TypeError, match="timeout"):
        sem.acquire(timeout="1")
    assert sem.value == 1


def test_eintr_is_retried_and_the_wait_is_not_cut_short(sem):
    hits = []
    old = signal.signal(signal.SIGALRM, lambda *a: hits.append(1))
    try:
        assert sem.acquire()
        signal.setitimer(signal.ITIMER_REAL, 0.05, 0.05)
        start = time.monotonic()
        assert sem.acquire(timeout=0.3) is False
        elapsed = time.monotonic() - start
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert elapsed >= 0.3
    assert len(hits) >= 2  # the handlers ran during the wait


def test_signal_handler_exception_interrupts_the_wait(sem):
    """PEP 475: a handler that raises ends the wait with its exception."""

    def boom(*args):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGALRM, boom)
    try:
        assert sem.acquire()
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        with pytest.raises(KeyboardInterrupt):
            sem.acquire(timeout=5)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    sem.release()
    assert sem.value == 1


def test_release_wakes_a_waiting_thread(sem):
    assert sem.acquire()
    got = []
    t = threading.Thread(target=lambda: got.append(sem.acquire(timeout=10)))
    t.start()
    time.sleep(0.05)
    sem.release()
    t.join(10)
    assert got == [True]


def test_release_argument_checks(sem):
    for n in (0, -1):
        with pytest.raises(ValueError, match="n must be"):
            sem.release(n)
    for n in (1.0, True, "1"):
        with pytest.raises(TypeError, match="n must be"):
            sem.release(n)
    assert sem.value == 1


def test_release_past_the_maximum_is_a_value_error(backend, new_name):
    top = {"posix": 2**31 - 1, "sysv": 32767}[backend]
    s = ipckit.Semaphore.create(new_name(), top, backend=backend)
    try:
        with pytest.raises(ValueError, match="SEM_VALUE_MAX|SEMVMX"):
            s.release()
        assert s.value == top
    finally:
        s.unlink()
        s.close()


def test_use_after_close(sem):
    sem.close()
    sem.close()
    for call in (sem.acquire, sem.release, lambda: sem.value, sem.__enter__):
        with pytest.raises(ipckit.ClosedError):
            call()
    sem.unlink()  # works on a closed handle
    assert not _exists(sem.backend, sem.name)
    with pytest.raises(ipckit.NotFoundError):
        sem.unlink()


def test_posix_handle_keeps_working_after_unlink(make_name):
    s = ipckit.Semaphore.create(make_name(), 0)
    s.unlink()
    s.release()
    assert s.acquire(timeout=0) and s.value == 0
    with pytest.raises(ipckit.NotFoundError):
        ipckit.Semaphore.open(s.name)
    s.close()


def test_sysv_use_after_unlink_is_closed_error_and_wakes_waiters(make_key):
    s = ipckit.Semaphore.create(make_key(), 0, backend="sysv")
    errors = []

    def waiter():
        try:
            s.acquire(timeout=10)
        except ipckit.ClosedError as exc:
            errors.append(exc)

    t = threading.Thread(target=waiter)
    t.start()
    deadline = time.monotonic() + 5
    while s.ncount == 0 and time.monotonic() < deadline:
        time.sleep(0.005)
    s.unlink()
    t.join(10)
    assert len(errors) == 1 and "removed" in str(errors[0])
    for call in (s.acquire, s.release, lambda: s.value):
        with pytest.raises(ipckit.ClosedError):
            call()
    s.close()


def test_exists_and_not_found(backend, new_name):
    name = new_name()
    with pytest.raises(ipckit.NotFoundError):
        ipckit.Semaphore.open(name, backend=backend)
    s = ipckit.Semaphore.create(name, backend=backend)
    try:
        with pytest.raises(ipckit.ExistsError):
            ipckit.Semaphore.create(name, backend=backend)
    finally:
        s.unlink()
        s.close()


def _posix_sems() -> set[str]:
    return {e for e in os.listdir("/dev/shm") if e.startswith("sem.")}


def _sysv_sem_keys() -> set[int]:
    with open("/proc/sysvipc/sem") as f:
        next(f)
        return {int(line.split()[0]) & 0xFFFFFFFF for line in f}


def test_bad_input_leaves_nothing_behind(make_name, make_key):
    before = (_posix_sems(), _sysv_sem_keys())
    for bad in ["noslash", "", "/", "/a/b", "/" + "x" * 255]:
        with pytest.raises(ValueError, match="name"):
            ipckit.Semaphore.create(bad)
        with pytest.raises(ValueError, match="name"):
            ipckit.Semaphore.open(bad)
    for bad in [5, b"/x", None]:
        with pytest.raises(TypeError, match="name"):
            ipckit.Semaphore.create(bad)
    for bad in (0, -1, 2**32):
        with pytest.raises(ValueError, match="key"):
            ipckit.Semaphore.create(bad, backend="sysv")
    for bad in ("/x", 1.5):
        with pytest.raises(TypeError, match="key"):
            ipckit.Semaphore.open(bad, backend="sysv")
    name, key = make_name(), make_key()
    for target, backend in ((name, "posix"), (key, "sysv")):
        with pytest.raises(ValueError, match="value"):
            ipckit.Semaphore.create(target, -1, backend=backend)
        with pytest.raises(TypeError, match="value"):
            ipckit.Semaphore.create(target, 1.0, backend=backend)
        with pytest.raises(ValueError, match="mode"):
            ipckit.Semaphore.create(target, mode=-1, backend=backend)
        with pytest.raises(ValueError, match="count"):
            ipckit.Semaphore.create(target, count=0, backend=backend)
    with pytest.raises(ValueError, match="SEM_VALUE_MAX"):
        ipckit.Semaphore.create(name, 2**31)
    with pytest.raises(ValueError, match="SEMVMX"):
        ipckit.Semaphore.create(key, 32768, backend="sysv")
    with pytest.raises(ValueError, match="sysv"):
        ipckit.Semaphore.create(name, count=2)
    with pytest.raises(ValueError, match="sysv"):
        ipckit.Semaphore.create(name, undo=True)
    with pytest.raises(ValueError, match="count is 3"):
        ipckit.Semaphore.create(key, [1, 2], count=3, backend="sysv")
    with pytest.raises(ValueError, match="backend"):
        ipckit.Semaphore.create(name, backend="shm")
    with pytest.raises(ValueError, match="SEMMSL"):
        ipckit.Semaphore.create(key, count=10**7, backend="sysv")
    with pytest.raises(ValueError, match="empty"):
        ipckit.Semaphore.create(key, [], backend="sysv")
    # Nothing was made (other test sessions on this machine may make their own meanwhile).
    ours = "sem." + os.environ[ipckit.testing.PREFIX_ENV]
    assert {e for e in _posix_sems() - before[0] if not e.startswith("sem.ipckit-t") or e.startswith(ours)} == set()
    assert _sysv_sem_keys() == before[1]


def test_pickle_reopens_by_name(backend, new_name):
    s = ipckit.Semaphore.create(new_name(), 3, backend=backend)
    try:
        with pickle.loads(pickle.dumps(s)) as copy:
            assert (copy.name, copy.backend, copy.value) == (s.name, backend, 2)
    finally:
        s.unlink()
        s.close()


# ---------------------------------------------------------------- exact counter under contention

WORKERS = 4
INCREMENTS = 250


def _counter_worker(sem_name, backend, shm_name, start_gate):
    sem = ipckit.Semaphore.open(sem_name, backend=backend)
    shm = ipckit.SharedMemory.open(shm_name, backend=backend)
    start_gate.wait(CHILD_TIMEOUT)
    buf = shm.buf
    for _ in range(INCREMENTS):
        if not sem.acquire(timeout=CHILD_TIMEOUT):
            raise SystemExit("acquire timed out")
        # A deliberately non-atomic read-modify-write with a yield in the middle:
        # without the semaphore, increments from other processes get lost.
        value = struct.unpack_from("q", buf, 0)[0]
        if _ % 16 == 0:
            time.sleep(0)
        struct.pack_into("q", buf, 0, value + 1)
        sem.release()
    del buf
    shm.close()
    sem.close()


@pytest.mark.parametrize("ctx", CONTEXTS)
def test_exact_counter_under_contention(ctx, backend, new_name):
    context = multiprocessing.get_context(ctx)
    sem = ipckit.Semaphore.create(new_name(), 1, backend=backend)
    shm = ipckit.SharedMemory.create(new_name(), 8, backend=backend)
    gate = context.Barrier(WORKERS)
    try:
        procs = [context.Process(target=_counter_worker, args=(sem.name, backend, shm.name, gate)) for _ in range(WORKERS)]
        for p in procs:
            p.start()
        for p in procs:
            _join(p)
        assert struct.unpack_from("q", shm.buf, 0)[0] == WORKERS * INCREMENTS
        assert sem.value == 1
    finally:
        for obj in (sem, shm):
            obj.unlink()
            obj.close()


def _wait_then_report(sem, queue):
    queue.put(sem.acquire(timeout=CHILD_TIMEOUT))


@pytest.mark.parametrize("ctx", CONTEXTS)
def test_release_wakes_a_waiting_process(ctx, backend, new_name):
    context = multiprocessing.get_context(ctx)
    s = ipckit.Semaphore.create(new_name(), 0, backend=backend)
    queue = context.Queue()
    try:
        proc = context.Process(target=_wait_then_report, args=(s, queue))  # pickled by name for spawn
        proc.start()
        time.sleep(0.1)
        assert queue.empty()
        s.release()
        assert queue.get(timeout=CHILD_TIMEOUT) is True
        _join(proc)
        assert s.value == 0
    finally:
        s.unlink()
        s.close()


# ---------------------------------------------------------------- SysV sets


def test_sysv_set_members_and_atomic_op(make_key):
    s = ipckit.Semaphore.create(make_key(), [1, 0, 5], backend="sysv")
    try:
        assert (s.count, len(s), s.index, s.values) == (3, 3, 0, [1, 0, 5])
        second = s[1]
        assert (second.index, second.value, s[-1].value) == (1, 0, 5)
        assert [m.value for m in s] == [1, 0, 5]
        # All or nothing: member 1 is 0, so member 0 is not decremented either.
        assert s.op([(0, -1), (1, -1)], timeout=0) is False
        assert s.values == [1, 0, 5]
        start = time.monotonic()
        assert s.op([(0, -1), (1, -1)], timeout=0.1) is False
        assert time.monotonic() - start >= 0.1
        assert s.op([(0, -1), (1, +1), (2, -5)]) is True
        assert s.values == [0, 1, 0]
        assert s.op([(2, 0)], timeout=0) is True  # wait-for-zero succeeds at once
        second.release(2)
        assert second.acquire() and s.values == [0, 2, 0]
        assert s.last_pid == os.getpid()
        other = ipckit.Semaphore.open(s.name, backend="sysv")
        assert other.count == 3 and other[2].value == 0
        other.close()
        with pytest.raises(IndexError):
            s[3]
        with pytest.raises(ValueError, match="member"):
            s.op([(3, 1)])
        with pytest.raises(ValueError, match="at least one"):
            s.op([])
        with pytest.raises(TypeError, match="pair"):
            s.op([(0, 1, 2)])
        with pytest.raises(ValueError, match="delta"):
            s.op([(0, 40000)])
        with pytest.raises(ValueError, match="timeout"):
            s.op([(0, 1)], timeout=-1)
        with pytest.raises(ValueError, match="SEMOPM"):
            s.op([(0, 0)] * 100_000)
        assert s.values == [0, 2, 0]
        assert s.stat().nsems == 3
    finally:
        s.unlink()
        s.close()


def _acquire_with_undo_and_die(key):
    s = ipckit.Semaphore.open(key, backend="sysv", undo=True)
    assert s.acquire(timeout=5)
    assert s[1].acquire(timeout=5)
    os.kill(os.getpid(), signal.SIGKILL)


@pytest.mark.parametrize("ctx", CONTEXTS)
def test_sem_undo_gives_back_a_crashed_holders_acquire(ctx, make_key):
    s = ipckit.Semaphore.create(make_key(), [1, 3], backend="sysv")
    try:
        proc = multiprocessing.get_context(ctx).Process(target=_acquire_with_undo_and_die, args=(s.name,))
        proc.start()
        proc.join(CHILD_TIMEOUT)
        assert proc.exitcode == -signal.SIGKILL
        assert s.values == [1, 3]  # the kernel undid the dead process's operations
        assert s.last_pid == proc.pid  # the kernel's undo is booked to the dead process
    finally:
        s.unlink()
        s.close()


def test_without_undo_a_crashed_holders_acquire_is_lost(make_key):
    s = ipckit.Semaphore.create(make_key(), 1, backend="sysv")
    try:
        code = f"import ipckit, os, signal; s = ipckit.Semaphore.open({s.name}, backend='sysv'); s.acquire(); os.kill(os.getpid(), signal.SIGKILL)"
        rc = subprocess.run([sys.executable, "-c", code], timeout=CHILD_TIMEOUT).returncode
        assert rc == -signal.SIGKILL
        assert s.value == 0
    finally:
        s.unlink()
        s.close()


def _block_on(key, member, delta):
    s = ipckit.Semaphore.open(key, backend="sysv")
    assert s.op([(member, delta)], timeout=CHILD_TIMEOUT)


def test_sysv_ncount_zcount_and_pid(make_key):
    s = ipckit.Semaphore.create(make_key(), [0, 1], backend="sysv")
    ctx = multiprocessing.get_context("fork")
    try:
        waiter = ctx.Process(target=_block_on, args=(s.name, 0, -1))  # waits for increase
        zeroer = ctx.Process(target=_block_on, args=(s.name, 1, 0))  # waits for zero
        waiter.start()
        zeroer.start()
        deadline = time.monotonic() + 10
        while (s[0].ncount, s[1].zcount) != (1, 1) and time.monotonic() < deadline:
            time.sleep(0.005)
        assert (s[0].ncount, s[0].zcount, s[1].ncount, s[1].zcount) == (1, 0, 0, 1)
        s.release()
        s[1].acquire()
        _join(waiter)
        _join(zeroer)
        assert (s[0].ncount, s[1].zcount) == (0, 0)
        assert s[0].last_pid == waiter.pid
    finally:
        s.unlink()
        s.close()


# ---------------------------------------------------------------- C peers

C_POSIX_SEM = r"""
#include <fcntl.h>
#include <semaphore.h>
#include <stdio.h>
#include <time.h>
int main(int argc, char **argv) {
    sem_t *s = sem_open(argv[1], 0);
    if (s == SEM_FAILED) { perror("sem_open"); return 1; }
    int v;
    sem_getvalue(s, &v);
    printf("value %d\n", v);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 10;
    if (sem_timedwait(s, &ts) != 0) { perror("sem_timedwait"); return 1; }  /* takes the one Python released */
    sem_post(s);
    sem_post(s);
    sem_post(s);
    return 0;
}
"""

C_SYSV_SEM = r"""
#include <stdio.h>
#include <stdlib.h>
#include <sys/ipc.h>
#include <sys/sem.h>
int main(int argc, char **argv) {
    int id = semget((key_t)strtoul(argv[1], NULL, 10), 0, 0);
    if (id < 0) { perror("semget"); return 1; }
    printf("value %d\n", semctl(id, 0, GETVAL));
    struct sembuf take = {0, -1, 0}, give[2] = {{0, 3, 0}, {1, 1, 0}};
    if (semop(id, &take, 1) != 0) { perror("semop"); return 1; }
    if (semop(id, give, 2) != 0) { perror("semop"); return 1; }
    return 0;
}
"""


def test_c_peer_uses_the_same_semaphore(backend, new_name, cc):
    exe = cc(C_POSIX_SEM if backend == "posix" else C_SYSV_SEM, f"sem_peer_{backend}")
    name = new_name()
    if backend == "posix":
        s = ipckit.Semaphore.create(name, 0)
    else:
        s = ipckit.Semaphore.create(name, 0, backend="sysv", count=2)
    try:
        s.release()
        result = subprocess.run([exe, str(name)], capture_output=True, text=True, timeout=CHILD_TIMEOUT)
        assert result.returncode == 0, result.stderr
        assert result.stdout == "value 1\n"
        assert s.value == 3
        if backend == "sysv":
            assert s[1].value == 1
    finally:
        s.unlink()
        s.close()


# ---------------------------------------------------------------- no crash on close while waiting

CLOSE_WHILE_WAITING = textwrap.dedent(
    """
    import sys, threading, time
    import ipckit
    from ipckit._timeouts import Deadline
    name, how = sys.argv[1], sys.argv[2]
    s = ipckit.Semaphore.create(name, 0)
    other = ipckit.Semaphore.open(name)
    wait = s.acquire if how == "acquire" else lambda timeout: s._wait_positive(Deadline(timeout))
    got = []
    t = threading.Thread(target=lambda: got.append(wait(timeout=10)))
    t.start()
    time.sleep(0.1)
    s.close()                # the waiter still uses the semaphore: must not unmap it
    other.release()
    t.join(10)
    assert got == [True], got
    try:
        wait(timeout=0)
    except ipckit.ClosedError:
        pass
    else:
        raise SystemExit("a closed handle waited")
    other.unlink()
    other.close()
    print("ok")
    """
)


@pytest.mark.parametrize("how", ["acquire", "wait_positive"])
def test_close_while_another_thread_waits_does_not_crash(make_name, how):
    """Also for the wait that takes nothing (ipckit.aio's), which maps the semaphore too."""
    name = make_name()
    result = subprocess.run([sys.executable, "-c", CLOSE_WHILE_WAITING, name, how], capture_output=True, text=True, timeout=CHILD_TIMEOUT)
    assert result.returncode >= 0, f"killed by signal {-result.returncode}"
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_sysv_private_set():
    s = ipckit.Semaphore.create(None, [2, 0], backend="sysv")
    try:
        assert s.name is None and s.values == [2, 0] and s.stat().mode == 0o600
        with pytest.raises(TypeError, match="pickle"):
            pickle.dumps(s)
    finally:
        s.unlink()
        s.close()


# ---------------------------------------------------------------- SysV controls: SETVAL, SETALL, IPC_SET, open by id

C_SYSV_SETALL = r"""
#include <stdio.h>
#include <stdlib.h>
#include <sys/ipc.h>
#include <sys/sem.h>
union semun { int val; struct semid_ds *buf; unsigned short *array; };
/* peer SEMID: print GETALL, then SETALL to 7 8 9 and print the owner and mode IPC_STAT says */
int main(int argc, char **argv) {
    int id = atoi(argv[1]);
    unsigned short v[3];
    union semun arg = {.array = v};
    if (semctl(id, 0, GETALL, arg) != 0) { perror("GETALL"); return 1; }
    printf("%d %d %d\n", v[0], v[1], v[2]);
    v[0] = 7; v[1] = 8; v[2] = 9;
    if (semctl(id, 0, SETALL, arg) != 0) { perror("SETALL"); return 1; }
    struct semid_ds ds;
    arg.buf = &ds;
    if (semctl(id, 0, IPC_STAT, arg) != 0) { perror("IPC_STAT"); return 1; }
    printf("%u %u %o\n", (unsigned)ds.sem_perm.uid, (unsigned)ds.sem_perm.gid, ds.sem_perm.mode & 0777);
    return 0;
}
"""


def test_sysv_set_values_and_set_value_interoperate_with_c(sysv_key, cc):
    exe = cc(C_SYSV_SETALL, "sem_setall_peer")
    s = ipckit.Semaphore.create(sysv_key, [0, 0, 0], backend="sysv")
    try:
        s.set_values([3, 2, 1])
        s[2].set_value(5)
        assert s.values == [3, 2, 5]
        s.set(mode=0o640)
        st = os.stat("/proc/self")  # this process's uid/gid
        result = subprocess.run([exe, str(s.id)], capture_output=True, text=True, timeout=CHILD_TIMEOUT)
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines() == ["3 2 5", f"{st.st_uid} {st.st_gid} 640"]
        assert s.values == [7, 8, 9]
        assert (s.stat().mode, int(_sysv_sem_row(sysv_key)["perms"], 8)) == (0o640, 0o640)
    finally:
        s.unlink()
        s.close()


def test_sysv_set_value_wakes_a_waiter_and_clears_undo(sysv_key):
    s = ipckit.Semaphore.create(sysv_key, 0, backend="sysv")
    try:
        got = []
        t = threading.Thread(target=lambda: got.append(s.acquire(timeout=CHILD_TIMEOUT)))
        t.start()
        deadline = time.monotonic() + 10
        while s.ncount == 0 and time.monotonic() < deadline:
            time.sleep(0.005)
        s.set_value(2)  # SETVAL wakes the waiter, which takes one
        t.join(CHILD_TIMEOUT)
        assert got == [True] and s.value == 1
        # A killed process's SEM_UNDO adjustment is dropped by SETVAL: nothing is given back.
        code = (f"import ipckit, os, signal, sys; s = ipckit.Semaphore.open({sysv_key}, backend='sysv', undo=True); "
                "s.acquire(); print('held', flush=True); sys.stdin.readline(); os.kill(os.getpid(), signal.SIGKILL)")
        child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert child.stdout.readline().strip() == "held"
        assert s.value == 0
        s.set_value(4)
        child.stdin.write("\n")
        child.stdin.flush()
        assert child.wait(CHILD_TIMEOUT) == -signal.SIGKILL
        assert s.value == 4
    finally:
        s.unlink()
        s.close()


def test_sysv_settings_reject_bad_arguments(sysv_key):
    s = ipckit.Semaphore.create(sysv_key, [1, 1], backend="sysv")
    try:
        for bad, exc in ((-1, ValueError), (32768, ValueError), (1.0, TypeError), (True, TypeError), ("1", TypeError)):
            with pytest.raises(exc, match="value"):
                s.set_value(bad)
        with pytest.raises(ValueError, match="one entry per member"):
            s.set_values([1])
        with pytest.raises(TypeError, match="values"):
            s.set_values({1, 2})
        with pytest.raises(ValueError, match="values"):
            s.set_values([1, 40000])
        with pytest.raises(TypeError, match="at least one"):
            s.set()
        for kwargs, exc in (({"mode": 0o1777}, ValueError), ({"mode": "600"}, TypeError), ({"uid": -1}, ValueError),
                            ({"gid": 2**32}, ValueError), ({"uid": 1.0}, TypeError)):
            with pytest.raises(exc):
                s.set(**kwargs)
        assert s.values == [1, 1] and s.stat().mode == 0o600
    finally:
        s.unlink()
        s.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a set to another user needs root (CAP_SYS_ADMIN)")
def test_sysv_set_owner(sysv_key):
    s = ipckit.Semaphore.create(sysv_key, 1, backend="sysv")
    try:
        s.set(uid=4242, gid=4343)
        st = s.stat()
        assert (st.uid, st.gid, st.cuid) == (4242, 4343, os.geteuid())
        row = _sysv_sem_row(sysv_key)
        assert (row["uid"], row["gid"]) == ("4242", "4343")
    finally:
        s.unlink()
        s.close()


def test_sysv_open_by_id_is_unambiguous(make_key):
    key = make_key()
    s = ipckit.Semaphore.create(key, [4, 5], backend="sysv")
    try:
        by_id = ipckit.Semaphore.open(id=s.id, backend="sysv")
        assert (by_id.id, by_id.name, by_id.count, by_id[1].value) == (s.id, key, 2, 5)
        by_id.close()
        private = ipckit.Semaphore.create(None, 2, backend="sysv")
        try:
            other = ipckit.Semaphore.open(id=private.id, backend="sysv")
            assert (other.name, other.value) == (None, 2)
            other.close()
        finally:
            private.unlink()
            private.close()
        with pytest.raises(ValueError, match="backend='sysv'"):
            ipckit.Semaphore.open(id=s.id)
        with pytest.raises(TypeError, match="not both"):
            ipckit.Semaphore.open(key, id=s.id, backend="sysv")
        for bad, exc in ((-1, ValueError), (2**31, ValueError), ("1", TypeError), (True, TypeError)):
            with pytest.raises(exc, match="id"):
                ipckit.Semaphore.open(id=bad, backend="sysv")
    finally:
        s.unlink()
        s.close()
    with pytest.raises(ipckit.NotFoundError):
        ipckit.Semaphore.open(id=s.id, backend="sysv")


# ---------------------------------------------------------------- waiting without taking (for ipckit.aio)


def test_wait_positive_takes_nothing_and_never_ends_early(sem):
    from ipckit._timeouts import Deadline

    assert sem._wait_positive(Deadline(0.5)) is True and sem.value == 1
    assert sem.acquire()
    for timeout in (0, 0.05, 0.2):
        start = time.monotonic()
        assert sem._wait_positive(Deadline(timeout)) is False
        assert time.monotonic() - start >= timeout
    assert sem.value == 0
    threading.Timer(0.1, sem.release).start()
    start = time.monotonic()
    assert sem._wait_positive(Deadline(CHILD_TIMEOUT)) is True
    assert time.monotonic() - start < CHILD_TIMEOUT and sem.value == 1


@pytest.mark.skipif(not platform.libc_ver()[0] == "glibc", reason="the futex wait relies on glibc's sem_t")
def test_posix_wait_positive_uses_the_futex_on_glibc():
    assert ipckit._ffi.lib.ipckit_psem_can_peek() == 1


C_SEM_WAITER = r"""
#include <fcntl.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ipc.h>
#include <sys/sem.h>
#include <time.h>
/* waiter posix NAME N | waiter sysv SEMID N: take N units, one at a time, each within 10 s */
int main(int argc, char **argv) {
    int n = atoi(argv[3]);
    sem_t *s = NULL;
    int id = -1;
    if (argv[1][0] == 'p') { s = sem_open(argv[2], 0); if (s == SEM_FAILED) { perror("sem_open"); return 1; } }
    else id = atoi(argv[2]);
    printf("ready\n");
    fflush(stdout);
    for (int i = 0; i < n; i++) {
        if (s) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += 10;
            if (sem_timedwait(s, &ts) != 0) { perror("sem_timedwait"); return 2; }
        } else {
            struct sembuf op = {0, -1, 0};
            struct timespec ts = {10, 0};
            if (semtimedop(id, &op, 1, &ts) != 0) { perror("semtimedop"); return 2; }
        }
    }
    printf("took %d\n", n);
    return 0;
}
"""


def test_wait_positive_never_steals_a_wake_up_from_a_c_waiter(backend, sem, cc):
    """A non-consuming waiter may receive the one wake-up a post makes; it must pass it
    on, or a real waiter in another process (here a C program) would sleep through a
    positive value. Every post must reach the C waiter while threads peek alongside."""
    from ipckit._timeouts import Deadline

    exe = cc(C_SEM_WAITER, "sem_waiter")
    assert sem.acquire()
    rounds = 200
    target = sem.name if backend == "posix" else str(sem.id)
    child = subprocess.Popen([exe, backend, target, str(rounds)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        stop = threading.Event()

        def peek():
            while not stop.is_set():
                sem._wait_positive(Deadline(0.05))

        peekers = [threading.Thread(target=peek) for _ in range(2)]
        for t in peekers:
            t.start()
        try:
            for i in range(rounds):
                sem.release()
                deadline = time.monotonic() + 5
                while sem.value != 0 and time.monotonic() < deadline:
                    time.sleep(0.0005)  # the C waiter takes it
                assert sem.value == 0, f"post {i}: the C waiter slept through it"
        finally:
            stop.set()
            for t in peekers:
                t.join(CHILD_TIMEOUT)
        out, _ = child.communicate(timeout=CHILD_TIMEOUT)
        assert child.returncode == 0 and out.strip() == f"took {rounds}"
        assert sem.value == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


# ---------------------------------------------------------------- SIGKILL holders at random moments (SEM_UNDO)

_OWNER, _VIOLATIONS, _COUNTS = 0, 8, 16  # offsets in the shared segment


def _undo_worker(key, shm_name, worker):
    """Loop forever: take the lock (with SEM_UNDO), claim the section, check nobody
    else is in it, count, give it back. Killed at any instruction by the test."""
    s = ipckit.Semaphore.open(key, backend="sysv", undo=True)
    shm = ipckit.SharedMemory.open(shm_name)
    buf = shm.buf
    me = os.getpid()
    while True:
        if not s.acquire(timeout=CHILD_TIMEOUT):
            os._exit(3)  # wedged: a dead holder's unit was never given back
        struct.pack_into("q", buf, _OWNER, me)
        for _ in range(3):
            time.sleep(0)
            if struct.unpack_from("q", buf, _OWNER)[0] != me:
                struct.pack_into("q", buf, _VIOLATIONS, struct.unpack_from("q", buf, _VIOLATIONS)[0] + 1)
        offset = _COUNTS + 8 * worker
        struct.pack_into("q", buf, offset, struct.unpack_from("q", buf, offset)[0] + 1)
        s.release()


def test_killed_holders_are_undone_and_never_wedge_the_survivors(make_key, make_name, soak):
    kills = 100 if soak else 5
    workers = 3
    ctx = multiprocessing.get_context("fork")
    rng = random.Random()
    s = ipckit.Semaphore.create(make_key(), 1, backend="sysv")
    shm = ipckit.SharedMemory.create(make_name(), _COUNTS + 8 * workers)
    start = lambda w: ctx.Process(target=_undo_worker, args=(s.name, shm.name, w), daemon=True)  # noqa: E731
    procs = [start(w) for w in range(workers)]
    for p in procs:
        p.start()

    def progress():
        return sum(struct.unpack_from(f"{workers}q", shm.buf, _COUNTS))

    try:
        for _ in range(kills):
            before = progress()
            deadline = time.monotonic() + 10
            while progress() < before + 5:  # the survivors go on: nothing is wedged
                assert time.monotonic() < deadline, "no progress within 10 s after a kill"
                assert all(p.is_alive() for p in procs), [p.exitcode for p in procs]
                time.sleep(0.001)
            time.sleep(rng.uniform(0, 0.005))
            w = rng.randrange(workers)
            os.kill(procs[w].pid, signal.SIGKILL)
            procs[w].join(CHILD_TIMEOUT)
            assert procs[w].exitcode == -signal.SIGKILL
            procs[w] = start(w)
            procs[w].start()
    finally:
        for p in procs:
            if p.is_alive():
                os.kill(p.pid, signal.SIGKILL)
            p.join(CHILD_TIMEOUT)
    try:
        assert struct.unpack_from("q", shm.buf, _VIOLATIONS)[0] == 0, "two processes were inside at once"
        assert s.value == 1 and s.ncount == 0  # every dead holder's acquire was undone
        assert progress() >= 5 * kills
    finally:
        s.unlink()
        s.close()
        shm.unlink()
        shm.close()


def test_positive_wait_without_the_futex_path_naps_until_the_deadline_or_a_post(monkeypatch, make_name):
    # A sem_t that is not glibc's (ENOSYS from the futex wait) falls back to looking at
    # the value between naps: it must still end at its deadline, and see a post.
    import errno as errno_

    import ipckit._semaphore_posix as backend
    from ipckit._timeouts import Deadline
    from ipckit._wait import WOULD_BLOCK

    real = backend.lib

    class NoFutex:
        def __getattr__(self, name):
            return getattr(real, name)

        @staticmethod
        def ipckit_psem_wait_positive(h, timeout_ns):
            return -errno_.ENOSYS

    monkeypatch.setattr(backend, "lib", NoFutex())
    s = ipckit.Semaphore.create(make_name(), 0)
    try:
        start = time.monotonic()
        assert s._positive_attempt(Deadline(0.1)) is WOULD_BLOCK
        assert 0.1 <= time.monotonic() - start < 2
        threading.Timer(0.1, s.release).start()
        assert s._positive_attempt(Deadline(5)) is True
        assert s.value == 1  # looked, took nothing
    finally:
        s.close()
        s.unlink()
