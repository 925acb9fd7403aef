"""ipckit.Signal across real processes: C peers, fork and spawn children, busy threads.

Safety rule for this file: signals are only sent to processes the test started, or
to this process for signals that are being collected (or have a Python handler)
at that moment, so a bug cannot kill the test runner. Anything that could end a
process when it goes wrong (SIG_DFL/SIG_IGN restoration, SIGALRM, pid 0) runs
in a child interpreter.
"""

from __future__ import annotations

import errno
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
    proc = subprocess.Popen([receiver, str(sig), str(len(values) + 1)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "ready\n"
        for v in values:
            Signal.send(proc.pid, "SIGRTMIN+2", value=v)
        Signal.send(proc.pid, sig)  # plain kill: no payload
        out, _ = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
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
    proc = subprocess.Popen([receiver, str(int(signal.SIGUSR1)), "1"], stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert proc.stdout.readline() == "ready\n"
        assert os.getpgid(proc.pid) == proc.pid != os.getpgid(0)
        Signal.send(-proc.pid, "SIGUSR1")
        out, _ = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
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
