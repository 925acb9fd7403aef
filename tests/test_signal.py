"""ipckit.Signal across real processes: C peers, fork and spawn children, busy threads.

Safety rule for this file: signals are only sent to processes the test started, or
to this process for signals that are being collected (or have a Python handler)
at that moment, so a bug cannot kill the test runner. Anything that could end a
process when it goes wrong (SIG_DFL/SIG_IGN restoration, SIGALRM, pid 0) runs
in a child interpreter.
"""

from __future__ import annotations

import contextlib
import errno
import json
import multiprocessing
import os
import selectors
import signal
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import pytest

import ipckit
from ipckit import Signal, SignalInfo
from ipckit._signal import signal_name, signal_number

SI_USER, SI_QUEUE = 0, -1
RTMIN = int(signal.SIGRTMIN)
INT_MIN, INT_MAX = -(2**31), 2**31 - 1

# Blocks SIG, says "ready", then prints one line per signal taken with sigwaitinfo:
# "signo code value pid". Dies of SIGALRM after 10 s if nothing comes.
C_RECEIVER = r"""
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
int main(int argc, char **argv) {
    int sig = atoi(argv[1]), count = atoi(argv[2]);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sig);
    sigprocmask(SIG_BLOCK, &set, NULL);
    alarm(10);
    printf("ready\n");
    fflush(stdout);
    for (int i = 0; i < count; i++) {
        siginfo_t si;
        if (sigwaitinfo(&set, &si) < 0) { perror("sigwaitinfo"); return 1; }
        printf("%d %d %d %d\n", si.si_signo, si.si_code, si.si_value.sival_int, (int)si.si_pid);
        fflush(stdout);
    }
    return 0;
}
"""

# sigqueue(pid, sig, start + i) for i in 0..count-1, as fast as it can.
C_SENDER = r"""
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv) {
    pid_t pid = (pid_t)atoi(argv[1]);
    int sig = atoi(argv[2]), count = atoi(argv[3]), start = atoi(argv[4]);
    for (int i = 0; i < count; i++) {
        union sigval v;
        v.sival_int = start + i;
        if (sigqueue(pid, sig, v) != 0) { perror("sigqueue"); return 1; }
    }
    return 0;
}
"""


def dead_pid() -> int:
    """A pid that certainly does not exist: a child that has been reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@contextlib.contextmanager
def popen(args: list, **kwargs) -> Iterator[subprocess.Popen]:
    """A child process, killed and reaped if the test ends while it still runs."""
    proc = subprocess.Popen(args, **kwargs)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def run_python(code: str, *, timeout: float = 30, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=timeout, **kwargs
    )
    assert result.returncode == 0, f"child failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    return result


def collect(s, count: int, timeout: float = 10) -> list[SignalInfo]:
    return [s.wait(timeout=timeout) for _ in range(count)]


def blocked_now() -> set[int]:
    return {int(x) for x in signal.pthread_sigmask(signal.SIG_BLOCK, [])}


# ------------------------------------------------------------------ names and bad input


@pytest.mark.parametrize(
    "sig, number",
    [
        ("SIGUSR1", signal.SIGUSR1),
        ("usr1", signal.SIGUSR1),
        ("SigUsr2", signal.SIGUSR2),
        ("SIGRTMIN", RTMIN),
        ("SIGRTMIN+3", RTMIN + 3),
        ("rtmin+3", RTMIN + 3),
        ("SIGRTMAX-1", signal.SIGRTMAX - 1),
        ("rtmax", signal.SIGRTMAX),
        ("SIGRTMIN+30", signal.SIGRTMAX),
        ("SIGIOT", signal.SIGABRT),
        (signal.SIGTERM, signal.SIGTERM),
        (10, 10),
        (RTMIN + 1, RTMIN + 1),
    ],
)
def test_signal_names_resolve(sig, number):
    assert signal_number(sig) == number


def test_signal_names_print():
    assert signal_name(10) == "SIGUSR1"
    assert signal_name(RTMIN) == "SIGRTMIN"
    assert signal_name(RTMIN + 3) == "SIGRTMIN+3"
    assert signal_name(int(signal.SIGRTMAX)) == "SIGRTMAX"
    assert SignalInfo(RTMIN + 2, SI_QUEUE, 1, 0, 5).name == "SIGRTMIN+2"
    assert SignalInfo(RTMIN + 2, SI_QUEUE, 1, 0, 5).queued


@pytest.mark.parametrize(
    "sig, exc",
    [
        ("SIGFOO", ValueError),
        ("", ValueError),
        ("SIGRTMIN+99", ValueError),
        ("SIGRTMIN-1", ValueError),
        ("SIGRTMAX+1", ValueError),
        ("SIG USR1", ValueError),
        ("SIG_DFL", ValueError),
        (65, ValueError),
        (-1, ValueError),
        (32, ValueError),  # glibc-internal
        (1.5, TypeError),
        (None, TypeError),
        (True, TypeError),
        (b"SIGUSR1", TypeError),
    ],
)
def test_bad_signal_is_refused_before_any_syscall(sig, exc):
    # The target does not exist: an error other than exc would mean a syscall ran first.
    pid = dead_pid()
    with pytest.raises(exc):
        Signal.send(pid, sig)
    with pytest.raises(exc):
        Signal.send(pid, sig, value=1)
    with pytest.raises(exc):
        Signal.catch(sig)
    with pytest.raises(exc):
        Signal.handle(sig, lambda *a: None)


@pytest.mark.parametrize(
    "value, exc",
    [
        (2**31, ValueError),
        (INT_MIN - 1, ValueError),
        (10**30, ValueError),
        (1.0, TypeError),
        ("1", TypeError),
        (True, TypeError),
        (b"\x01", TypeError),
    ],
)
def test_bad_value_is_refused_before_any_syscall(value, exc):
    with pytest.raises(exc, match="value"):
        Signal.send(dead_pid(), "SIGRTMIN+1", value=value)


@pytest.mark.parametrize(
    "pid, value, exc",
    [
        ("123", None, TypeError),
        (1.0, None, TypeError),
        (True, None, TypeError),
        (2**40, None, ValueError),
        (-1, None, ValueError),  # every process: refused
        (0, 5, ValueError),  # sigqueue has no process-group form
        (-12345, 5, ValueError),
    ],
)
def test_bad_pid(pid, value, exc):
    with pytest.raises(exc, match="pid"):
        Signal.send(pid, "SIGUSR1", value=value)


def test_missing_process_is_esrch():
    pid = dead_pid()
    for value in (None, 7):
        with pytest.raises(ipckit.IPCError) as info:
            Signal.send(pid, "SIGUSR1", value=value)
        assert info.value.errno == errno.ESRCH
    with pytest.raises(ipckit.IPCError) as info:
        Signal.send(pid, 0)  # signal 0: does the process exist?
    assert info.value.errno == errno.ESRCH
    Signal.send(os.getpid(), 0)  # exists: nothing happens


def _send_to_init_unprivileged() -> None:
    if os.getuid() == 0:  # drop to nobody; ipckit is already imported
        os.setgid(65534)
        os.setuid(65534)
    for value in (None, 1):
        try:
            Signal.send(1, "SIGUSR1", value=value)
        except ipckit.IPCError as exc:
            if exc.errno != errno.EPERM:
                sys.exit(2)
        else:
            sys.exit(3)
    sys.exit(0)


def test_no_permission_is_eperm():
    child = multiprocessing.get_context("fork").Process(target=_send_to_init_unprivileged)
    child.start()
    child.join(10)
    assert child.exitcode == 0


@pytest.mark.parametrize("sig", ["SIGKILL", "SIGSTOP", signal.SIGKILL, 19])
def test_uncatchable_signals(sig):
    with pytest.raises(ValueError, match="cannot be caught"):
        Signal.catch(sig)
    with pytest.raises(ValueError):
        Signal.handle(sig, lambda *a: None)
    with pytest.raises(ValueError):
        Signal.ignore(sig)
    with pytest.raises(ValueError):
        Signal.default(sig)
    with pytest.raises(ValueError):
        with Signal.block(sig):
            pass  # pragma: no cover


def test_fault_signals_and_empty_catch_are_refused():
    for sig in ("SIGSEGV", "SIGBUS", "SIGFPE", "SIGILL"):
        with pytest.raises(ValueError, match="fault"):
            Signal.catch(sig)
    with pytest.raises(ValueError, match="at least one"):
        Signal.catch()
    with pytest.raises(ValueError, match="at least one"):
        with Signal.block():
            pass  # pragma: no cover


def test_handle_needs_a_callable():
    with pytest.raises(TypeError, match="callable"):
        Signal.handle("SIGUSR1", 3)
    with pytest.raises(TypeError, match="callable"):
        Signal.handle("SIGUSR1", None)


def test_signal_is_a_namespace():
    with pytest.raises(TypeError):
        Signal()


# ------------------------------------------------------------------ payloads with C peers


def test_c_receiver_reads_payloads_sent_by_ipckit(cc):
    receiver = cc(C_RECEIVER, "sigreceiver")
    sig = RTMIN + 2
    values = [INT_MIN, -1, 0, 42, INT_MAX]
    with popen([receiver, str(sig), str(len(values) + 1)], stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout.readline() == "ready\n"
        for v in values:
            Signal.send(proc.pid, "SIGRTMIN+2", value=v)
        Signal.send(proc.pid, sig)  # plain kill: no payload
        out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0
    rows = [tuple(map(int, line.split())) for line in out.splitlines()]
    me = os.getpid()
    # Real-time signals are taken in the order they were queued.
    assert rows[:-1] == [(sig, SI_QUEUE, v, me) for v in values]
    assert rows[-1][0] == sig and rows[-1][1] == SI_USER and rows[-1][3] == me


def test_catch_reads_payloads_sent_by_a_c_process(cc):
    sender = cc(C_SENDER, "sigsender")
    with Signal.catch("SIGRTMIN+3") as s:
        proc = subprocess.run([sender, str(os.getpid()), str(RTMIN + 3), "10", "-5"], timeout=10)
        assert proc.returncode == 0
        infos = collect(s, 10)
        with pytest.raises(ipckit.Timeout):
            s.wait(timeout=0.1)
    # Several threads of this process may record concurrently, so compare as a set here;
    # exact order is checked in single-threaded receivers below.
    assert sorted(i.value for i in infos) == list(range(-5, 5))
    for info in infos:
        assert info.signo == RTMIN + 3
        assert info.code == SI_QUEUE and info.queued
        assert info.uid == os.getuid()
    assert {i.pid for i in infos} == {infos[0].pid} and infos[0].pid != os.getpid()


def test_catch_reports_kill_without_value():
    with Signal.catch("SIGUSR2") as s:
        child = subprocess.run([sys.executable, "-c", f"import os, signal; os.kill({os.getpid()}, signal.SIGUSR2)"], timeout=10)
        assert child.returncode == 0
        info = s.wait(timeout=10)
    assert info.signo == signal.SIGUSR2 and info.code == SI_USER
    assert info.value is None and not info.queued
    assert info.uid == os.getuid() and info.pid not in (0, os.getpid())


# ------------------------------------------------------------------ fork and spawn children


def _send_values(parent: int, sig: str, values: list) -> None:
    for v in values:
        Signal.send(parent, sig, value=v)


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_child_process_sends_payloads_to_parent(method):
    ctx = multiprocessing.get_context(method)
    with Signal.catch("SIGRTMIN+7") as s:
        child = ctx.Process(target=_send_values, args=(os.getpid(), "rtmin+7", [3, 1, 4, 1, 5]))
        child.start()
        try:
            infos = collect(s, 5)
        finally:
            child.join(10)
    assert child.exitcode == 0
    assert sorted(i.value for i in infos) == [1, 1, 3, 4, 5]
    assert all(i.pid == child.pid and i.code == SI_QUEUE for i in infos)


def test_a_forked_child_sends_with_its_own_pid_and_uid():
    # The sender's pid is kept between sends (glibc asks the kernel every time): a
    # child forked after the parent sent must still be reported as itself.
    with Signal.catch("SIGRTMIN+7") as s:
        Signal.send(os.getpid(), "SIGRTMIN+7", value=1)
        assert s.wait(timeout=5).pid == os.getpid()
        child = multiprocessing.get_context("fork").Process(target=_send_values, args=(os.getpid(), "rtmin+7", [2]))
        child.start()
        try:
            info = s.wait(timeout=10)
        finally:
            child.join(10)
        Signal.send(os.getpid(), "SIGRTMIN+7", value=3)
        again = s.wait(timeout=5)
    assert (info.value, info.pid, info.uid) == (2, child.pid, os.getuid())
    assert (again.value, again.pid) == (3, os.getpid())


def _receive_in_order(conn, sig: str, count: int) -> None:
    # Single-threaded receiver (a Connection, unlike a Queue, starts no feeder thread).
    with Signal.catch(sig) as s:
        conn.send("ready")
        values = [s.wait(timeout=10).value for _ in range(count)]
        try:
            s.wait(timeout=0.2)
            values.append("extra")
        except ipckit.Timeout:
            pass
    conn.send(values)


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_realtime_signals_queue_in_order(method):
    ctx = multiprocessing.get_context(method)
    parent_end, child_end = ctx.Pipe()
    child = ctx.Process(target=_receive_in_order, args=(child_end, "SIGRTMIN+4", 100))
    child.start()
    try:
        assert parent_end.poll(30) and parent_end.recv() == "ready"
        for v in range(100):
            Signal.send(child.pid, "SIGRTMIN+4", value=v)
        assert parent_end.poll(30)
        assert parent_end.recv() == list(range(100))
    finally:
        child.join(10)
        if child.exitcode is None:
            child.kill()
            child.join()
    assert child.exitcode == 0


def test_realtime_queue_and_standard_coalescing_are_exact_when_blocked():
    # Blocked signals stay pending: 5 SIGUSR1 merge into one, 5 real-time ones queue.
    # catch() unblocks them in the calling thread, so it collects what was pending.
    out = run_python(
        """
        import os, signal
        from ipckit import Signal
        me = os.getpid()
        with Signal.block("SIGUSR1", "SIGRTMIN+5"):
            for i in range(5):
                Signal.send(me, "SIGUSR1")
                Signal.send(me, "SIGRTMIN+5", value=i)
            assert Signal.pending() >= {10, signal.SIGRTMIN + 5}
            with Signal.catch("SIGUSR1", "SIGRTMIN+5") as s:
                infos = s.drain()
            assert not Signal.pending() & {10}
        print(sum(i.signo == 10 for i in infos), [i.value for i in infos if i.signo != 10])
        """
    ).stdout
    assert out.split("\n")[0] == "1 [0, 1, 2, 3, 4]"


def _send_plain(parent: int, sig: str, count: int) -> None:
    for _ in range(count):
        Signal.send(parent, sig)


def test_sigusr1_may_coalesce_across_processes():
    # Standard signals are not queued: N sends give between 1 and N deliveries,
    # depending on how many were pending at the same moment.
    ctx = multiprocessing.get_context("fork")
    with Signal.catch("SIGUSR1") as s:
        child = ctx.Process(target=_send_plain, args=(os.getpid(), "SIGUSR1", 20))
        child.start()
        child.join(10)
        assert child.exitcode == 0
        got = []
        try:
            while True:
                got.append(s.wait(timeout=0.5))
        except ipckit.Timeout:
            pass
    assert 1 <= len(got) <= 20
    assert all(i.signo == signal.SIGUSR1 and i.pid == child.pid for i in got)


# ------------------------------------------------------------------ process groups


def test_negative_pid_reaches_a_process_group(cc):
    receiver = cc(C_RECEIVER, "sigreceiver")
    with popen([receiver, str(int(signal.SIGUSR1)), "1"], stdout=subprocess.PIPE, text=True, start_new_session=True) as proc:
        assert proc.stdout.readline() == "ready\n"
        assert os.getpgid(proc.pid) == proc.pid != os.getpgid(0)
        Signal.send(-proc.pid, "SIGUSR1")
        out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0
    signo, code, _value, pid = map(int, out.split())
    assert (signo, code, pid) == (signal.SIGUSR1, SI_USER, os.getpid())


def test_pid_zero_is_the_callers_process_group():
    # In its own session the child is alone in its group, so pid 0 reaches only itself.
    out = run_python(
        """
        import os
        from ipckit import Signal
        assert os.getpgid(0) == os.getpid()
        with Signal.catch("SIGUSR1") as s:
            Signal.send(0, "SIGUSR1")
            info = s.wait(timeout=5)
        print(info.signo, info.pid == os.getpid())
        """,
        start_new_session=True,
    ).stdout
    assert out.split() == ["10", "True"]


# ------------------------------------------------------------------ threads


@pytest.mark.slow
def test_no_signal_lost_with_busy_threads(cc):
    np = pytest.importorskip("numpy")
    sender = cc(C_SENDER, "sigsender")
    stop = threading.Event()

    def busy() -> int:
        a = np.random.default_rng(0).random((120, 120))
        n = 0
        while not stop.is_set():
            a = (a @ a) / 120.0  # releases the GIL; BLAS may use its own threads too
            n += 1
        return n

    threads = [threading.Thread(target=busy) for _ in range(4)]
    pool = ThreadPoolExecutor(max_workers=3)
    for t in threads:
        t.start()
    futures = [pool.submit(busy) for _ in range(3)]
    try:
        assert threading.active_count() >= 8
        with Signal.catch("SIGRTMIN+6") as s:
            proc = subprocess.run([sender, str(os.getpid()), str(RTMIN + 6), "200", "0"], timeout=20)
            assert proc.returncode == 0
            infos = collect(s, 200)
            with pytest.raises(ipckit.Timeout):
                s.wait(timeout=0.2)
            assert s.dropped == 0
    finally:
        stop.set()
        for t in threads:
            t.join(10)
        pool.shutdown(wait=True)
    assert sorted(i.value for i in infos) == list(range(200))
    assert all(f.result() >= 0 for f in futures)


def test_catch_works_in_a_non_main_thread():
    ready = threading.Event()
    result: list = []

    def worker() -> None:
        with Signal.catch("SIGRTMIN+9") as s:
            ready.set()
            result.extend(collect(s, 3))

    t = threading.Thread(target=worker)
    t.start()
    assert ready.wait(10)
    for v in (7, 8, 9):
        Signal.send(os.getpid(), "SIGRTMIN+9", value=v)
    t.join(10)
    assert not t.is_alive()
    assert sorted(i.value for i in result) == [7, 8, 9]


def test_handle_is_main_thread_only():
    errors = []

    def worker() -> None:
        try:
            Signal.handle("SIGUSR1", lambda *a: None)
        except ValueError as exc:
            errors.append(exc)

    t = threading.Thread(target=worker)
    t.start()
    t.join(10)
    assert errors and "main thread" in str(errors[0])


def test_close_from_another_thread_ends_a_wait():
    s = Signal.catch("SIGRTMIN+10")
    errors = []

    def waiter() -> None:
        try:
            s.wait(timeout=10)
        except ipckit.ClosedError as exc:
            errors.append(exc)

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.2)
    s.close()
    t.join(10)
    assert not t.is_alive() and errors


# ------------------------------------------------------------------ timeouts, fileno, close


def test_wait_timeouts():
    with Signal.catch("SIGRTMIN+11") as s:
        start = time.monotonic()
        with pytest.raises(ipckit.Timeout):
            s.wait(timeout=0.2)
        assert time.monotonic() - start >= 0.2
        start = time.monotonic()
        with pytest.raises(ipckit.Timeout):
            s.wait(timeout=0)
        with pytest.raises(TimeoutError):  # ipckit.Timeout is a TimeoutError
            s.wait(timeout=0)
        Signal.send(os.getpid(), "SIGRTMIN+11", value=1)
        assert s.wait(timeout=0).value == 1  # timeout=0 still returns what is there
        assert s.drain() == []
        with pytest.raises(ValueError):
            s.wait(timeout=-1)
        with pytest.raises(TypeError):
            s.wait(timeout="1")


def test_fileno_works_with_selectors():
    with Signal.catch("SIGRTMIN+12") as s, selectors.DefaultSelector() as sel:
        sel.register(s, selectors.EVENT_READ)
        assert sel.select(timeout=0) == []
        Signal.send(os.getpid(), "SIGRTMIN+12", value=1)
        Signal.send(os.getpid(), "SIGRTMIN+12", value=2)
        assert len(sel.select(timeout=5)) == 1
        assert s.wait(timeout=0).value in (1, 2)
        assert len(sel.select(timeout=0)) == 1  # one still waits
        s.wait(timeout=0)
        assert sel.select(timeout=0) == []
        sel.unregister(s)


def test_fileno_works_with_asyncio():
    import asyncio

    async def main() -> list:
        loop = asyncio.get_running_loop()
        got: list = []
        done = loop.create_future()
        with Signal.catch(signal.SIGRTMIN + 17, "SIGRTMIN+17") as s:  # duplicates collapse

            def readable() -> None:
                got.extend(s.drain())
                if len(got) >= 3 and not done.done():
                    done.set_result(None)

            loop.add_reader(s.fileno(), readable)
            try:
                for v in (1, 2, 3):
                    Signal.send(os.getpid(), "SIGRTMIN+17", value=v)
                await asyncio.wait_for(done, 10)
            finally:
                loop.remove_reader(s.fileno())
        return sorted(i.value for i in got)

    assert asyncio.run(main()) == [1, 2, 3]


def test_closed_catcher():
    with Signal.catch("SIGRTMIN+13") as s:
        pass
    assert s.closed
    for call in (s.wait, s.drain, s.fileno, lambda: s.wait(timeout=0)):
        with pytest.raises(ipckit.ClosedError):
            call()
    s.close()  # idempotent
    with pytest.raises(ipckit.ClosedError):
        with s:
            pass  # pragma: no cover


def test_full_pipe_drops_and_counts():
    # Nobody reads: the pipe fills (about 10,900 records, or 2,730 if the pipe
    # could not be enlarged); the rest are counted, never half-written.
    total = 12000
    with Signal.catch("SIGRTMIN+8") as s:
        for v in range(total):
            Signal.send(os.getpid(), "SIGRTMIN+8", value=v)
        got = [i.value for i in s.drain()]
        dropped = s.dropped
    assert dropped > 0 and len(got) + dropped == total
    assert got == list(range(len(got)))  # the earliest survive, in order (one thread sends to itself)
    assert s.dropped == dropped


# ------------------------------------------------------------------ dispositions and masks


def test_dispositions_and_mask_restored_in_process():
    calls = []
    old = signal.signal(signal.SIGUSR1, lambda signum, frame: calls.append(signum))
    try:
        handler = signal.getsignal(signal.SIGUSR1)
        with Signal.block("SIGRTMIN+14"):
            mask_before = blocked_now()
            assert RTMIN + 14 in mask_before
            with Signal.catch("SIGUSR1", "SIGRTMIN+14") as s:
                assert RTMIN + 14 not in blocked_now()  # unblocked for the block
                os.kill(os.getpid(), signal.SIGUSR1)
                assert s.wait(timeout=5).signo == signal.SIGUSR1
                os.kill(os.getpid(), signal.SIGUSR1)
                os.kill(os.getpid(), signal.SIGUSR1)
                time.sleep(0.05)
                # collected, not given to the Python handler, and left unread
            assert blocked_now() == mask_before
            assert signal.getsignal(signal.SIGUSR1) is handler
            time.sleep(0.05)
            assert calls == []  # unread signals are not delivered again
            os.kill(os.getpid(), signal.SIGUSR1)  # after the block: the Python handler again
            for _ in range(100):
                if calls:
                    break
                time.sleep(0.01)
            assert calls == [signal.SIGUSR1]
    finally:
        signal.signal(signal.SIGUSR1, old)


def test_dispositions_restored_exactly_in_a_child():
    # SIG_IGN, SIG_DFL, CPython's SIGINT handler and a Python handler all come back
    # byte for byte; checked by sending the signals after the block (a wrong SIG_DFL
    # would kill this child, not pytest).
    proc = subprocess.run([sys.executable, "-c", _RESTORE_CHILD], capture_output=True, text=True, timeout=30)
    assert proc.returncode == -signal.SIGTERM, proc.stderr
    assert proc.stdout.split("\n")[:2] == ["KeyboardInterrupt", "[1]"]


_RESTORE_CHILD = """
import os, signal, time
from ipckit import Signal
me = os.getpid()
hits = []
Signal.ignore("SIGUSR2")
Signal.handle("SIGHUP", lambda n, f: hits.append(n))
assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
with Signal.catch("SIGUSR2", "SIGHUP", "SIGINT", "SIGTERM") as s:
    for sig in ("SIGUSR2", "SIGHUP", "SIGINT", "SIGTERM"):
        Signal.send(me, sig)
        assert s.wait(timeout=5).name == sig
assert signal.getsignal(signal.SIGUSR2) == signal.SIG_IGN
assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
Signal.send(me, "SIGUSR2")          # still ignored
Signal.send(me, "SIGHUP")           # the Python handler again
time.sleep(0.05)
try:
    Signal.send(me, "SIGINT")       # CPython's default_int_handler again
    time.sleep(0.5)
    print("no KeyboardInterrupt")
except KeyboardInterrupt:
    print("KeyboardInterrupt")
print(hits, flush=True)
Signal.send(me, "SIGTERM")          # SIG_DFL again: ends the child
time.sleep(5)
"""


def test_nested_catch_of_the_same_signal_is_refused():
    with Signal.catch("SIGUSR1", "SIGRTMIN+15") as outer:
        with pytest.raises(RuntimeError, match="already collected"):
            Signal.catch("SIGRTMIN+15")
        with pytest.raises(RuntimeError, match="already collected"):
            Signal.catch("SIGRTMIN+16", "SIGUSR1")  # nothing half-installed
        with pytest.raises(RuntimeError, match="being collected"):
            Signal.handle("SIGUSR1", lambda *a: None)
        with Signal.catch("SIGRTMIN+16") as inner:  # a different signal nests fine
            Signal.send(os.getpid(), "SIGRTMIN+16", value=16)
            Signal.send(os.getpid(), "SIGRTMIN+15", value=15)
            assert inner.wait(timeout=5).value == 16
            assert outer.wait(timeout=5).value == 15
        assert outer.drain() == []
    with Signal.catch("SIGRTMIN+15", "SIGRTMIN+16"):  # free again
        pass


def _fork_child_checks_its_handler() -> None:
    hits = []
    signal.signal(signal.SIGUSR1, lambda n, f: hits.append(n))
    os.kill(os.getpid(), signal.SIGUSR1)
    time.sleep(0.05)
    sys.exit(0 if hits == [signal.SIGUSR1] else 3)


def _python_handler(signum, frame):  # used before a fork below
    pass


def test_forked_child_does_not_inherit_the_catch():
    old = signal.signal(signal.SIGUSR1, _python_handler)
    try:
        with Signal.catch("SIGUSR1") as s:
            ctx = multiprocessing.get_context("fork")
            child = ctx.Process(target=_fork_child_checks_its_handler)
            child.start()
            child.join(10)
            assert child.exitcode == 0
            with pytest.raises(ipckit.Timeout):
                s.wait(timeout=0.3)  # the child's own signal did not reach our pipe
            os.kill(os.getpid(), signal.SIGUSR1)
            assert s.wait(timeout=5).pid == os.getpid()
    finally:
        signal.signal(signal.SIGUSR1, old)


def test_handle_ignore_default_return_the_previous_disposition():
    calls = []

    def f(signum, frame):
        calls.append((signum, frame is not None))

    def g(signum, frame):
        pass

    original = signal.getsignal(signal.SIGUSR2)
    try:
        assert Signal.handle("SIGUSR2", f) == original
        os.kill(os.getpid(), signal.SIGUSR2)
        for _ in range(100):
            if calls:
                break
            time.sleep(0.01)
        assert calls == [(signal.SIGUSR2, True)]
        assert Signal.ignore("usr2") is f
        assert Signal.default(signal.SIGUSR2) == signal.SIG_IGN
        assert Signal.handle(12, g) == signal.SIG_DFL
        assert Signal.handle("SIGUSR2", f) is g
    finally:
        signal.signal(signal.SIGUSR2, original)


def test_block_defers_until_the_block_ends():
    calls = []
    original = signal.signal(signal.SIGUSR2, lambda n, f: calls.append(n))
    try:
        with Signal.block("SIGUSR2") as before:
            assert signal.SIGUSR2 not in before
            assert signal.SIGUSR2 in blocked_now()
            os.kill(os.getpid(), signal.SIGUSR2)
            time.sleep(0.05)
            assert calls == []
            assert signal.SIGUSR2 in Signal.pending()
        for _ in range(100):
            if calls:
                break
            time.sleep(0.01)
        assert calls == [signal.SIGUSR2]
        assert signal.SIGUSR2 not in blocked_now()
    finally:
        signal.signal(signal.SIGUSR2, original)


def test_alarm_in_a_child():
    # pytest-timeout owns SIGALRM in this process, so the alarm runs in a child.
    out = run_python(
        """
        import time
        from ipckit import Signal
        with Signal.catch("SIGALRM") as s:
            start = time.monotonic()
            assert Signal.alarm(0.15) == 0.0
            info = s.wait(timeout=5)
            elapsed = time.monotonic() - start
            Signal.alarm(5)
            left = Signal.alarm(0)           # cancels, returns what was left
        print(info.name, elapsed >= 0.14, 4.5 < left <= 5.0)
        """
    ).stdout
    assert out.split() == ["SIGALRM", "True", "True"]


@pytest.mark.parametrize("seconds, exc", [("1", TypeError), (None, TypeError), (True, TypeError), (-1, ValueError), (float("nan"), ValueError), (float("inf"), ValueError)])
def test_alarm_bad_input(seconds, exc):
    with pytest.raises(exc, match="seconds"):
        Signal.alarm(seconds)


def test_two_threads_wait_on_one_catcher() -> None:
    """Each waiting thread gets one signal (a shared poll object would refuse the
    second concurrent wait with RuntimeError)."""
    sig = signal.SIGRTMIN + 5
    got: list = []
    with ipckit.Signal.catch(sig) as s:
        def waiter() -> None:
            try:
                got.append(s.wait(timeout=10).value)
            except BaseException as exc:  # reported below
                got.append(exc)

        threads = [threading.Thread(target=waiter) for _ in range(2)]
        for t in threads:
            t.start()
        time.sleep(0.3)  # both threads are inside wait() now
        ipckit.Signal.send(os.getpid(), sig, value=1)
        ipckit.Signal.send(os.getpid(), sig, value=2)
        for t in threads:
            t.join(10)
    assert sorted(got) == [1, 2], got


# ------------------------------------------------------------------ order of delivery

# Sends "sig value" pairs to pid, waiting delay_ms before each: sigqueue with the value,
# or a plain kill when the value is negative. argv: pid delay_ms sig value [sig value ...]
C_SCRIPT_SENDER = r"""
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
int main(int argc, char **argv) {
    pid_t pid = (pid_t)atoi(argv[1]);
    long delay_ms = atol(argv[2]);
    for (int i = 3; i + 1 < argc; i += 2) {
        int sig = atoi(argv[i]), value = atoi(argv[i + 1]);
        struct timespec ts = { delay_ms / 1000, (delay_ms % 1000) * 1000000L };
        nanosleep(&ts, NULL);
        if (value < 0 ? kill(pid, sig) : sigqueue(pid, sig, (union sigval){ .sival_int = value })) {
            perror("send");
            return 1;
        }
    }
    return 0;
}
"""

# Blocked while sent: SIGRTMIN+5 (1), SIGRTMIN+2 (2), SIGRTMIN+5 (3), SIGUSR2, SIGUSR1, SIGRTMIN+2 (4).
_ORDER_SCRIPT = [RTMIN + 5, 1, RTMIN + 2, 2, RTMIN + 5, 3, int(signal.SIGUSR2), -1, int(signal.SIGUSR1), -1, RTMIN + 2, 4]
# Delivered lowest number first; in send order only within one real-time signal.
_ORDER_EXPECTED = [[10, None], [12, None], [RTMIN + 2, 2], [RTMIN + 2, 4], [RTMIN + 5, 1], [RTMIN + 5, 3]]


@pytest.mark.parametrize("where", ["handler", "signalfd"])
def test_pending_signals_come_lowest_number_first(cc, where):
    """Blocked, then collected: through the handler when catch() unblocks them, or from
    the signalfd when they stay blocked during the block."""
    sender = cc(C_SCRIPT_SENDER, "sigscript")
    out = run_python(
        f"""
        import json, os, signal, subprocess
        from ipckit import Signal
        sigs = (10, 12, {RTMIN + 2}, {RTMIN + 5})
        script = [str(x) for x in {_ORDER_SCRIPT!r}]
        send = lambda: subprocess.run([{sender!r}, str(os.getpid()), "0", *script], check=True)
        if {where!r} == "handler":
            with Signal.block(*sigs):
                send()
                with Signal.catch(*sigs) as s:
                    infos = s.drain()
        else:
            with Signal.catch(*sigs) as s:
                with Signal.block(*sigs):
                    send()
                    infos = s.drain()
        print(json.dumps([[i.signo, i.value] for i in infos]))
        """
    ).stdout
    assert json.loads(out) == _ORDER_EXPECTED


# ------------------------------------------------------------------ the two wait paths


def test_single_threaded_process_takes_the_signalfd_path(cc):
    """Nothing else could take the signals, so the waiting thread blocks them while it
    sleeps and reads them from the signalfd: the handler never runs for them."""
    sender = cc(C_SCRIPT_SENDER, "sigscript")
    sig = RTMIN + 3
    out = run_python(
        f"""
        import os, subprocess
        from ipckit import Signal
        from ipckit._ffi import lib
        from ipckit._procfs import thread_blocked_masks
        assert len(thread_blocked_masks()) == 1
        with Signal.catch({sig}) as s:
            assert s._c.block_while_waiting == 1
            # Each signal comes 150 ms after the previous one: this thread is asleep in
            # wait() by then.
            script = [x for v in range(5) for x in ("{sig}", str(v))]
            sender = subprocess.Popen([{sender!r}, str(os.getpid()), "150", *script])
            values = [s.wait(timeout=10).value for _ in range(5)]
            assert sender.wait(10) == 0
            print(values, lib.ipckit_sig_via_handler({sig}), {sig} in Signal.pending())
        """
    ).stdout
    assert out.split("\n")[0] == "[0, 1, 2, 3, 4] 0 False"


_PRESTART = {
    "executor": "from concurrent.futures import ThreadPoolExecutor\npool = ThreadPoolExecutor(3)\nlist(pool.map(abs, range(9)))",
    "numpy": "import numpy\nnumpy.ones((300, 300)) @ numpy.ones((300, 300))",
}


@pytest.mark.parametrize("threads", sorted(_PRESTART))
def test_threads_started_before_catch_take_the_handler_path(cc, threads):
    """Threads that could take the signals exist: the waiting thread leaves its mask
    alone (blocking would only send each signal to another thread's handler), and all
    200 signals, sent as fast as a C program can, are collected."""
    if threads == "numpy":
        pytest.importorskip("numpy")
    sender = cc(C_SCRIPT_SENDER, "sigscript")
    sig = RTMIN + 6
    code = _PRESTART[threads] + textwrap.dedent(
        f"""
        import os, subprocess, sys
        from ipckit import Signal
        from ipckit._ffi import lib
        from ipckit._procfs import thread_blocked_masks
        if len(thread_blocked_masks()) < 2:
            print("single-threaded")
            sys.exit(0)
        with Signal.catch({sig}) as s:
            assert s._c.block_while_waiting == 0
            script = [x for v in range(200) for x in ("{sig}", str(v))]
            sender = subprocess.Popen([{sender!r}, str(os.getpid()), "0", *script])
            values = sorted(s.wait(timeout=10).value for _ in range(200))
            assert sender.wait(10) == 0
            print(values == list(range(200)), lib.ipckit_sig_via_handler({sig}), s.dropped)
        """
    )
    out = run_python(code).stdout.split("\n")[0]
    if out == "single-threaded":
        pytest.skip(f"{threads} started no thread here")
    assert out == "True 200 0"


def test_threads_that_block_the_signals_leave_the_signalfd_path():
    out = run_python(
        """
        import threading
        from ipckit import Signal
        stop = threading.Event()
        with Signal.block("SIGUSR1", "SIGUSR2"):
            t = threading.Thread(target=stop.wait)   # inherits the mask
            t.start()
        with Signal.catch("SIGUSR1") as s:
            print(s._c.block_while_waiting, end=" ")
        with Signal.catch("SIGHUP") as s:         # the thread does not block SIGHUP
            print(s._c.block_while_waiting)
        stop.set()
        t.join()
        """
    ).stdout
    assert out.split("\n")[0] == "1 0"


def test_a_thread_started_during_the_block_loses_nothing(cc):
    """Chosen at catch(), the signalfd path stays correct when a thread that does not
    block the signals appears later: what it takes goes through the handler."""
    sender = cc(C_SCRIPT_SENDER, "sigscript")
    sig = RTMIN + 7
    out = run_python(
        f"""
        import os, subprocess, threading
        from ipckit import Signal
        from ipckit._ffi import lib
        stop = threading.Event()

        def spin():
            n = 0
            while not stop.is_set():
                n += 1

        with Signal.catch({sig}) as s:
            assert s._c.block_while_waiting == 1
            threads = [threading.Thread(target=spin), threading.Thread(target=stop.wait)]
            for t in threads:
                t.start()
            script = [x for v in range(300) for x in ("{sig}", str(v))]
            sender = subprocess.Popen([{sender!r}, str(os.getpid()), "0", *script])
            values = sorted(s.wait(timeout=10).value for _ in range(300))
            assert sender.wait(10) == 0
            stop.set()
            for t in threads:
                t.join()
            print(values == list(range(300)), s.dropped, s.drain())
        """
    ).stdout
    assert out.split("\n")[0] == "True 0 []"


def test_the_signalfd_path_leaks_no_mask(cc):
    """Blocked only inside the kernel wait: the calling thread, a thread started in the
    block and a program started in the block all have the signal unblocked."""
    sig = RTMIN + 8
    out = run_python(
        f"""
        import os, signal, subprocess, threading
        from ipckit import Signal
        from ipckit._procfs import thread_blocked_masks
        bit = 1 << ({sig} - 1)
        with Signal.catch({sig}) as s:
            assert s._c.block_while_waiting == 1
            Signal.send(os.getpid(), {sig}, value=1)
            assert s.wait(timeout=5).value == 1
            try:
                s.wait(timeout=0.05)
            except TimeoutError:
                pass
            mine = {sig} in signal.pthread_sigmask(signal.SIG_BLOCK, [])
            seen = []
            t = threading.Thread(target=lambda: seen.append(thread_blocked_masks()[threading.get_native_id()] & bit))
            t.start()
            t.join()
            status = subprocess.run(["cat", "/proc/self/status"], capture_output=True, text=True).stdout
            child = [int(l.split()[1], 16) & bit for l in status.splitlines() if l.startswith("SigBlk:")]
        print(mine, seen, child)
        """
    ).stdout
    assert out.split("\n")[0] == "False [0] [0]"


def test_a_signal_blocked_everywhere_is_still_collected_and_discarded_at_close():
    """Blocked in every thread during the block, a real-time signal stays pending: the
    signalfd collects it; one left unread is discarded on exit like an unread record,
    not handed to the default action (which would end this child)."""
    sig = RTMIN + 9
    out = run_python(
        f"""
        import os
        from ipckit import Signal
        me = os.getpid()
        with Signal.catch({sig}) as s:
            previous = Signal.set_mask({{{sig}}})
            Signal.send(me, {sig}, value=1)
            print(s.wait(timeout=0).value, end=" ")
            Signal.send(me, {sig}, value=2)
        Signal.set_mask(previous)
        print("alive", {sig} in Signal.pending())
        """
    ).stdout
    assert out.split("\n")[0] == "1 alive False"


def test_close_from_another_thread_ends_a_signalfd_wait_and_closes_every_fd():
    out = run_python(
        """
        import os, threading, time
        import ipckit
        from ipckit import Signal
        before = set(os.listdir("/proc/self/fd"))
        s = Signal.catch("SIGRTMIN+10")
        assert s._c.block_while_waiting == 1
        t = threading.Timer(0.2, s.close)
        t.start()
        try:
            s.wait()
        except ipckit.ClosedError:
            print("closed", end=" ")
        t.join()
        print(set(os.listdir("/proc/self/fd")) == before)
        """
    ).stdout
    assert out.split("\n")[0] == "closed True"


# ------------------------------------------------------------------ pause and suspend


def _wait_for(predicate, timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            return False
        time.sleep(0.01)
    return True


def test_suspend_takes_a_signal_that_was_pending_and_runs_its_handler():
    calls = []
    old = signal.signal(signal.SIGUSR1, lambda n, f: calls.append(n))
    try:
        with Signal.block("SIGUSR1") as before:
            mask = blocked_now()
            signal.pthread_kill(threading.get_ident(), signal.SIGUSR1)
            time.sleep(0.05)
            assert calls == [] and signal.SIGUSR1 in Signal.pending()
            assert Signal.suspend(before, timeout=5) == signal.SIGUSR1
            assert calls == [signal.SIGUSR1]  # the Python handler ran before suspend returned
            assert blocked_now() == mask
            assert signal.SIGUSR1 not in Signal.pending()
    finally:
        signal.signal(signal.SIGUSR1, old)


def test_suspend_raises_what_the_handler_raises():
    class Stop(Exception):
        pass

    def handler(signum, frame):
        raise Stop(signum)

    old = signal.signal(signal.SIGUSR2, handler)
    try:
        with Signal.block("SIGUSR2") as before:
            mask = blocked_now()
            signal.pthread_kill(threading.get_ident(), signal.SIGUSR2)
            with pytest.raises(Stop):
                Signal.suspend(before, timeout=5)
            assert blocked_now() == mask
    finally:
        signal.signal(signal.SIGUSR2, old)


def test_pause_and_suspend_timeouts():
    mask = blocked_now()
    start = time.monotonic()
    with pytest.raises(ipckit.Timeout):
        Signal.pause(timeout=0.2)
    assert time.monotonic() - start >= 0.2
    with pytest.raises(ipckit.Timeout):
        Signal.pause(timeout=0)
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        Signal.suspend(mask | {int(signal.SIGUSR1)}, timeout=0.1)
    assert time.monotonic() - start >= 0.1
    assert blocked_now() == mask


def test_pause_leaves_a_blocked_signal_pending():
    calls = []
    old = signal.signal(signal.SIGUSR1, lambda n, f: calls.append(n))
    try:
        with Signal.block("SIGUSR1"):
            signal.pthread_kill(threading.get_ident(), signal.SIGUSR1)
            with pytest.raises(ipckit.Timeout):
                Signal.pause(timeout=0.1)
            assert calls == [] and signal.SIGUSR1 in Signal.pending()
        assert _wait_for(lambda: calls == [signal.SIGUSR1])
    finally:
        signal.signal(signal.SIGUSR1, old)


@pytest.mark.parametrize(
    "call, exc",
    [
        (lambda: Signal.suspend("SIGUSR1"), TypeError),
        (lambda: Signal.suspend(10), TypeError),
        (lambda: Signal.suspend([99]), ValueError),
        (lambda: Signal.suspend(["SIGNOPE"]), ValueError),
        (lambda: Signal.suspend([32]), ValueError),
        (lambda: Signal.suspend((), timeout=-1), ValueError),
        (lambda: Signal.pause(timeout="1"), TypeError),
        (lambda: Signal.pause(timeout=float("nan")), ValueError),
        (lambda: Signal.set_mask("SIGUSR1"), TypeError),
        (lambda: Signal.set_mask(None), TypeError),
        (lambda: Signal.set_mask([10, 1.5]), TypeError),
        (lambda: Signal.unblock(), ValueError),
        (lambda: Signal.unblock("SIGKILL"), ValueError),
        (lambda: Signal.unblock(0), ValueError),
    ],
)
def test_mask_calls_refuse_bad_arguments_before_any_change(call, exc):
    mask = blocked_now()
    with pytest.raises(exc):
        call()
    assert blocked_now() == mask


def _classic_child(ready) -> None:
    """A child installs a handler (sigaction semantics) and waits for the signal with
    the race-free block / check / suspend loop; its exit status tells the parent."""
    got = []
    Signal.handle("SIGUSR1", lambda signum, frame: got.append(signum))
    with Signal.block("SIGUSR1") as before:
        ready.set()
        while not got:
            Signal.suspend(before, timeout=10)
    sys.exit(0 if got == [signal.SIGUSR1] else 3)


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_parent_signals_a_child_waiting_in_suspend_then_waits_for_it(method):
    ctx = multiprocessing.get_context(method)
    ready = ctx.Event()
    child = ctx.Process(target=_classic_child, args=(ready,))
    child.start()
    try:
        assert ready.wait(30)
        Signal.send(child.pid, "SIGUSR1")
        _, status = os.waitpid(child.pid, 0)
    finally:
        if child.is_alive():  # pragma: no cover - only when the test fails
            child.kill()
    assert os.waitstatus_to_exitcode(status) == 0


def test_pause_keeps_the_siginfo_of_the_signal_that_ended_it(cc):
    """The signal taken by the wait is queued again with its own siginfo, so a handler
    (here catch()'s C one) sees the real sender and payload."""
    sender = cc(C_SCRIPT_SENDER, "sigscript")
    sig = RTMIN + 11
    out = run_python(
        f"""
        import os, subprocess
        from ipckit import Signal
        with Signal.catch({sig}) as s, Signal.block({sig}) as before:
            sender = subprocess.Popen([{sender!r}, str(os.getpid()), "100", "{sig}", "77"])
            woke = Signal.suspend(before, timeout=10)
            info = s.wait(timeout=0)
            assert sender.wait(10) == 0
            print(woke, info.value, info.code, info.pid == sender.pid)
        """
    ).stdout
    assert out.split() == [str(sig), "77", str(SI_QUEUE), "True"]


def test_pause_skips_ignored_signals_and_ends_with_the_default_action(cc):
    """As C's pause(): an ignored signal (SIG_IGN, or SIGCHLD's default) does not end
    it, a handled one does, and one whose default action ends the process ends it."""
    sender = cc(C_SCRIPT_SENDER, "sigscript")
    code = textwrap.dedent(
        f"""
        import os, subprocess, sys
        from ipckit import Signal
        Signal.ignore("SIGUSR2")
        hits = []
        Signal.handle("SIGUSR1", lambda n, f: hits.append(n))
        me = str(os.getpid())
        # SIGUSR2 at 100 ms, SIGUSR1 at 200 ms; the sender's exit brings SIGCHLD.
        sender = subprocess.Popen([{sender!r}, me, "100", "12", "-1", "10", "-1"])
        print(Signal.pause(timeout=10), hits, flush=True)
        sender.wait(10)
        print("ready", flush=True)
        Signal.pause(timeout=20)
        print("pause returned", flush=True)
        """
    )
    with popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout.readline() == "10 [10]\n"
        assert proc.stdout.readline() == "ready\n"
        time.sleep(0.1)
        Signal.send(proc.pid, "SIGTERM")
        rest, _ = proc.communicate(timeout=20)
    assert proc.returncode == -signal.SIGTERM and rest == ""


def test_suspend_in_another_thread_returns_the_signal_the_main_thread_handles_it():
    out = run_python(
        """
        import os, threading, time
        from ipckit import Signal
        ran_in_main = []
        Signal.handle("SIGUSR1", lambda n, f: ran_in_main.append(threading.current_thread() is threading.main_thread()))
        ready, result = threading.Event(), []

        def worker():
            with Signal.block("SIGUSR1") as before:
                ready.set()
                result.append(Signal.suspend(before - {10}, timeout=10))

        with Signal.block("SIGUSR1"):          # so only the worker can take it
            t = threading.Thread(target=worker)
            t.start()
            ready.wait(10)
            time.sleep(0.1)
            Signal.send(os.getpid(), "SIGUSR1")
            t.join(10)
            end = time.monotonic() + 5
            while not ran_in_main and time.monotonic() < end:
                time.sleep(0.01)               # the main thread runs bytecode: the handler runs
        print(result, ran_in_main)
        """
    ).stdout
    assert out.split("\n")[0] == "[10] [True]"


# ------------------------------------------------------------------ unblock and set_mask


def test_set_mask_and_unblock_in_a_child_the_parent_signals():
    code = textwrap.dedent(
        """
        import signal, time
        from ipckit import Signal
        hits = []
        Signal.handle("SIGUSR1", lambda n, f: hits.append(n))
        previous = Signal.set_mask(signal.valid_signals())
        everything = set(signal.valid_signals()) - {signal.SIGKILL, signal.SIGSTOP}
        assert set(Signal.set_mask(signal.valid_signals())) == everything
        print("blocked", flush=True)
        end = time.monotonic() + 10
        while not {10, 15} <= Signal.pending() and time.monotonic() < end:
            time.sleep(0.01)
        print(sorted(Signal.pending() & {10, 15}), hits, flush=True)
        before = Signal.unblock("SIGUSR1")
        print(hits, 10 in before, 10 in Signal.set_mask(before), flush=True)
        Signal.set_mask(previous)              # SIGTERM, pending, ends the child here
        print("still alive", flush=True)
        """
    )
    with popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout.readline() == "blocked\n"
        Signal.send(proc.pid, "SIGUSR1")
        Signal.send(proc.pid, "SIGTERM")
        out, _ = proc.communicate(timeout=20)
    assert out.split("\n")[:2] == ["[10, 15] []", "[10] True False"]
    assert proc.returncode == -signal.SIGTERM


def test_set_mask_empty_unblocks_everything_in_this_thread_only():
    out = run_python(
        """
        import signal, threading
        from ipckit import Signal
        Signal.set_mask({"SIGUSR1", "SIGHUP"})
        seen = []
        t = threading.Thread(target=lambda: seen.append(Signal.set_mask(())))
        t.start()
        t.join()
        print(sorted(seen[0]), sorted(Signal.set_mask(())), sorted(Signal.set_mask(())))
        """
    ).stdout
    assert out.split("\n")[0] == "[1, 10] [1, 10] []"


# ------------------------------------------------------------------ what ipckit.aio drives

_AIO_COLLECT = """
import os, signal, subprocess
from ipckit import Signal
from ipckit._wait import NOW, WOULD_BLOCK

SIG = {sig}
SCRIPT = [x for v in range(20) for x in (str(SIG), str(v))] + ["12", "-1"]   # then SIGUSR2


def start_sender():
    return subprocess.Popen([{sender!r}, str(os.getpid()), "5", *SCRIPT])


async def collect(catcher, wait_readable):
    # What ipckit.aio does: an attempt that never blocks, then await the waiter.
    got = []
    while len(got) < 20:
        info = catcher._attempt(NOW)
        if info is WOULD_BLOCK:
            await wait_readable(catcher._waiter.fd)
        else:
            got.append(info.value)
    return got
"""

_AIO_MAIN = {
    "asyncio": """
import asyncio


async def main():
    loop = asyncio.get_running_loop()
    usr2 = asyncio.Event()
    loop.add_signal_handler(signal.SIGUSR2, usr2.set)    # asyncio's own wakeup fd

    async def wait_readable(fd):
        ready = loop.create_future()
        loop.add_reader(fd, ready.set_result, None)
        try:
            await ready
        finally:
            loop.remove_reader(fd)

    with Signal.catch(SIG) as s:
        sender = start_sender()
        got = await asyncio.wait_for(collect(s, wait_readable), 20)
        await asyncio.wait_for(usr2.wait(), 20)
        sender.wait(10)
    return got

print(asyncio.run(main()))
""",
    "trio": """
import trio


async def main():
    with trio.open_signal_receiver(signal.SIGUSR2) as usr2:   # trio's own wakeup fd
        with Signal.catch(SIG) as s:
            sender = start_sender()
            with trio.fail_after(20):
                got = await collect(s, trio.lowlevel.wait_readable)
                async for _ in usr2:
                    break
            sender.wait(10)
    return got

print(trio.run(main))
""",
}


@pytest.mark.parametrize("library", sorted(_AIO_MAIN))
def test_attempt_and_waiter_drive_an_event_loop_with_its_own_signal_handling(cc, library):
    """The loop runs in the main thread and owns the wakeup fd for SIGUSR2; the
    catcher's non-blocking attempt and its ReadyFd waiter still collect every signal,
    in order, and the loop's own signal handling keeps working."""
    pytest.importorskip(library)
    sender = cc(C_SCRIPT_SENDER, "sigscript")
    code = _AIO_COLLECT.format(sig=RTMIN + 12, sender=sender) + _AIO_MAIN[library]
    out = run_python(code).stdout
    assert out.split("\n")[0] == str(list(range(20)))


# ------------------------------------------------------------------ SIGPIPE outside Python

C_WRITER = r"""
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
int main(int argc, char **argv) {
    if (write(atoi(argv[1]), "x", 1) < 0) { perror("write"); return 3; }
    return 0;
}
"""


def test_a_c_child_writing_to_a_broken_ipckit_pipe_dies_of_sigpipe(cc):
    """ipckit keeps SIGPIPE from ending the Python process; a C program started with
    subprocess (SIGPIPE back to its default action) is killed by it, as docs/signal.md says."""
    writer = cc(C_WRITER, "pipewriter")
    p = ipckit.Pipe()
    fd = p.writer.fileno()
    p.reader.close()  # no reader left
    try:
        with pytest.raises(ipckit.ClosedError):
            p.writer.send(b"x")  # this process: an error, not a signal
        child = subprocess.run([writer, str(fd)], pass_fds=(fd,), timeout=10)
        assert child.returncode == -signal.SIGPIPE
    finally:
        p.close()
