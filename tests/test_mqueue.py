"""MessageQueue, backends "posix" and "sysv": the contract (docs/reference/contract.md), limits, stat(),
bad input, cross-process behaviour (fork and spawn) and interop with C peers."""

from __future__ import annotations

import contextlib
import errno
import multiprocessing
import os
import pickle
import random
import select
import selectors
import signal
import struct
import subprocess
import threading
import time
import zlib

import pytest

import ipckit
from ipckit.testing import expect_timeout
from ipckit import testing
from ipckit._mqueue import MessageQueueStat
from ipckit._procfs import mqueue_mount as _mqueue_mount

BACKENDS = ["posix", "sysv"]
CONTEXTS = ["fork", "spawn"]


def read_int(path: str) -> int:
    with open(path) as f:
        return int(f.read())


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def new_name(backend: str, make_name, make_key):  # type: ignore[no-untyped-def]
    """A factory of fresh names for the backend under test (removed after the test)."""
    return make_name if backend == "posix" else make_key


@pytest.fixture
def queue(backend: str, new_name):  # type: ignore[no-untyped-def]
    q = ipckit.MessageQueue.create(new_name(), backend=backend)
    yield q
    q.close()


# ------------------------------------------------------------------ conformance


def test_check_channel(backend: str, new_name) -> None:  # type: ignore[no-untyped-def]
    made = []
    # A SysV queue is bounded in bytes, so once check_channel's 1000-byte messages
    # fill it a 4-byte one may still fit; size it to exactly 16 such messages.
    limits = {"max_messages": 16, "max_message_size": 1000} if backend == "sysv" else {}

    def make_pair():  # type: ignore[no-untyped-def]
        name = new_name()
        sender = ipckit.MessageQueue.create(name, backend=backend, **limits)
        receiver = ipckit.MessageQueue.open(name, backend=backend)
        if backend == "posix":
            # The queue lives while a handle is open; unlinking now keeps this user's
            # RLIMIT_MSGQUEUE budget (about 9 default-sized queues) from running out.
            sender.unlink()
        made.append(sender)
        return sender, receiver

    probe_name = new_name()
    with ipckit.MessageQueue.create(probe_name, backend=backend, **limits) as probe:
        max_size = probe.max_message_size
        probe.unlink()
    testing.check_channel(make_pair, max_size=max_size, clogs=True, eof_on_close=False)
    assert len(made) >= 8


# ------------------------------------------------------------------ basics


def test_create_open_attributes(backend: str, new_name) -> None:  # type: ignore[no-untyped-def]
    name = new_name()
    with ipckit.MessageQueue.create(name, backend=backend) as q:
        assert isinstance(q, ipckit.MessageQueue)
        assert q.name == name and q.backend == backend
        assert len(q) == 0
        assert repr(q).startswith("<ipckit.MessageQueue")
        with pytest.raises(ipckit.ExistsError) as info:
            ipckit.MessageQueue.create(name, backend=backend)
        assert isinstance(info.value, FileExistsError)
        with ipckit.MessageQueue.open(name, backend=backend) as other:
            other.send(b"hello")
            assert len(q) == 1
            assert q.recv(timeout=5) == b"hello"
            assert other.max_message_size == q.max_message_size
        if backend == "posix":
            assert q.max_messages == read_int("/proc/sys/fs/mqueue/msg_default")
            assert q.max_message_size == read_int("/proc/sys/fs/mqueue/msgsize_default")
            assert q.max_bytes is None
        else:
            assert q.max_messages is None
            assert q.max_message_size == read_int("/proc/sys/kernel/msgmax")
            assert q.max_bytes == read_int("/proc/sys/kernel/msgmnb")
        q.unlink()
    assert q.closed


def test_open_missing(backend: str, new_name) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ipckit.NotFoundError) as info:
        ipckit.MessageQueue.open(new_name(), backend=backend)
    assert isinstance(info.value, FileNotFoundError)


def test_posix_limits_from_mq_getattr(posix_name: str) -> None:
    with ipckit.MessageQueue.create(posix_name, max_messages=3, max_message_size=100) as q:
        with ipckit.MessageQueue.open(posix_name) as other:
            assert (other.max_messages, other.max_message_size) == (3, 100)
        for i in range(3):
            q.send(b"%d" % i, timeout=0)
        expect_timeout(lambda: q.send(b"full", timeout=0.1), 0.1)
        with pytest.raises(ipckit.MessageTooLarge):
            q.send(b"x" * 101)
        assert [q.recv(timeout=1) for _ in range(3)] == [b"0", b"1", b"2"]
        q.unlink()


def test_sysv_max_messages_sets_capacity(sysv_key: int) -> None:
    with ipckit.MessageQueue.create(sysv_key, max_messages=4, max_message_size=100, backend="sysv") as q:
        assert q.max_bytes == 400
        # The kernel keeps no per-queue message size: the limit is what could ever fit.
        assert q.max_message_size == 400
        assert q.stat().max_bytes == 400
        with pytest.raises(ipckit.MessageTooLarge):
            q.send(b"z" * 401)
        for _ in range(4):
            q.send(b"z" * 100, timeout=0)
        expect_timeout(lambda: q.send(b"z", timeout=0.1), 0.1)
        q.unlink()


@pytest.mark.parametrize("umask", [0o077, 0o000])
@pytest.mark.parametrize("mode", [0o600, 0o640, 0o666])
def test_mode_is_exact(backend: str, new_name, umask: int, mode: int) -> None:  # type: ignore[no-untyped-def]
    old = os.umask(umask)
    try:
        kwargs = {} if mode == 0o600 else {"mode": mode}
        q = ipckit.MessageQueue.create(new_name(), backend=backend, **kwargs)
    finally:
        os.umask(old)
    with q:
        assert q.stat().mode == mode
        if backend == "posix":
            assert os.fstat(q.fileno()).st_mode & 0o7777 == mode
            mount = _mqueue_mount()
            if mount:
                assert os.stat(os.path.join(mount, q.name[1:])).st_mode & 0o7777 == mode
        else:
            with open("/proc/sysvipc/msg") as f:
                rows = [line.split() for line in f][1:]
            (row,) = [r for r in rows if int(r[0]) & 0xFFFFFFFF == q.name]
            assert int(row[2], 8) == mode
        q.unlink()


# ------------------------------------------------------------------ limits


@pytest.mark.parametrize(
    "kwargs, limit, path",
    [
        ({"max_messages": 10_000}, "msg_max", "/proc/sys/fs/mqueue/msg_max"),
        ({"max_message_size": 10_000_000}, "msgsize_max", "/proc/sys/fs/mqueue/msgsize_max"),
    ],
)
def test_posix_over_kernel_limit(posix_name: str, kwargs: dict, limit: str, path: str) -> None:
    with pytest.raises(ValueError) as info:
        ipckit.MessageQueue.create(posix_name, **kwargs)
    assert limit in str(info.value) and path in str(info.value)
    with pytest.raises(ipckit.NotFoundError):
        ipckit.MessageQueue.open(posix_name)


@pytest.mark.parametrize(
    "kwargs, limit, path",
    [
        ({"max_message_size": 10_000_000}, "msgmax", "/proc/sys/kernel/msgmax"),
        ({"max_messages": 10_000}, "msgmnb", "/proc/sys/kernel/msgmnb"),
    ],
)
def test_sysv_over_kernel_limit(sysv_key: int, kwargs: dict, limit: str, path: str) -> None:
    with pytest.raises(ValueError) as info:
        ipckit.MessageQueue.create(sysv_key, backend="sysv", **kwargs)
    assert limit in str(info.value) and path in str(info.value)
    with pytest.raises(ipckit.NotFoundError):
        ipckit.MessageQueue.open(sysv_key, backend="sysv")


def test_posix_per_user_byte_limit_is_explained(make_name) -> None:  # type: ignore[no-untyped-def]
    """The kernel says EMFILE when RLIMIT_MSGQUEUE runs out; ipckit says what it is."""
    made = []
    try:
        with pytest.raises(ipckit.IPCError) as info:
            for _ in range(400):
                made.append(ipckit.MessageQueue.create(make_name(), max_messages=10, max_message_size=8192))
        assert info.value.errno == errno.EMFILE
        assert "RLIMIT_MSGQUEUE" in str(info.value) and "ulimit -q" in str(info.value)
        assert made, "not even one queue could be created"
    finally:
        for q in made:
            q.close()
            q.unlink()


# ------------------------------------------------------------------ messages


def test_message_too_large_sends_nothing(queue) -> None:  # type: ignore[no-untyped-def]
    limit = queue.max_message_size
    with pytest.raises(ipckit.MessageTooLarge) as info:
        queue.send(bytearray(limit + 1), timeout=0)
    assert isinstance(info.value, ValueError)
    assert len(queue) == 0
    queue.send(memoryview(b"m" * limit), timeout=0)
    assert queue.recv(timeout=0) == b"m" * limit
    queue.unlink()


def test_posix_priorities(posix_name: str) -> None:
    with ipckit.MessageQueue.create(posix_name) as q:
        for i, priority in enumerate([0, 5, 32767, 5, 1]):
            q.send(b"%d" % i, priority=priority)
        got = [q.receive(timeout=1) for _ in range(5)]
        assert [(m.data, m.priority, m.type) for m in got] == [
            (b"2", 32767, None), (b"1", 5, None), (b"3", 5, None), (b"4", 1, None), (b"0", 0, None)
        ]
        q.unlink()


@pytest.mark.parametrize("bad, exc", [(-1, ValueError), (32768, ValueError), ("1", TypeError), (True, TypeError), (1.0, TypeError)])
def test_posix_bad_priority(posix_name: str, bad: object, exc: type) -> None:
    with ipckit.MessageQueue.create(posix_name) as q:
        with pytest.raises(exc, match="priority"):
            q.send(b"x", priority=bad)  # type: ignore[arg-type]
        assert len(q) == 0
        with pytest.raises(ValueError, match="type"):
            q.receive(type=3, timeout=0)
        q.unlink()


@pytest.mark.parametrize("bad, exc", [(0, ValueError), (-1, ValueError), (2**31, ValueError), ("1", TypeError), (1.0, TypeError), (None, TypeError)])
def test_sysv_bad_type(sysv_key: int, bad: object, exc: type) -> None:
    with ipckit.MessageQueue.create(sysv_key, backend="sysv") as q:
        with pytest.raises(exc, match="type"):
            q.send(b"x", type=bad)  # type: ignore[arg-type]
        assert len(q) == 0
        if bad != 0:
            with pytest.raises(exc, match="type"):
                q.receive(type=bad if bad != -1 else -(2**31) - 5, timeout=0)  # type: ignore[arg-type]
        q.unlink()


def test_sysv_type_selection(sysv_key: int) -> None:
    with ipckit.MessageQueue.create(sysv_key, backend="sysv") as q:
        for i, t in enumerate([3, 1, 2, 5, 1, 4]):
            q.send(b"%d" % i, type=t)
        assert q.receive(type=5, timeout=0) == ipckit.Message(b"3", None, 5)
        assert q.receive(type=-2, timeout=0) == ipckit.Message(b"1", None, 1)
        assert q.receive(type=0, timeout=0) == ipckit.Message(b"0", None, 3)
        assert q.receive(type=-4, timeout=0) == ipckit.Message(b"4", None, 1)
        expect_timeout(lambda: q.receive(type=7, timeout=0.2), 0.2)
        assert q.receive(type=4, timeout=0) == ipckit.Message(b"5", None, 4)
        assert q.recv(timeout=0) == b"2"
        q.unlink()


# ------------------------------------------------------------------ bad input


BAD_POSIX_NAMES = [("noslash", ValueError), ("", ValueError), ("/", ValueError), ("/a/b", ValueError), ("/" + "x" * 255, ValueError), (123, TypeError), (b"/x", TypeError), (None, TypeError)]
BAD_SYSV_KEYS = [(0, ValueError), (-1, ValueError), (2**32, ValueError), ("12", TypeError), (1.5, TypeError), (True, TypeError), (None, TypeError)]


@pytest.mark.parametrize("bad, exc", BAD_POSIX_NAMES)
def test_bad_posix_names(bad: object, exc: type) -> None:
    with pytest.raises(exc, match="name"):
        ipckit.MessageQueue.create(bad)
    with pytest.raises(exc, match="name"):
        ipckit.MessageQueue.open(bad)


@pytest.mark.parametrize("bad, exc", BAD_SYSV_KEYS)
def test_bad_sysv_keys(bad: object, exc: type) -> None:
    if bad is None:
        # The contract: SysV keys may be None "for a private object": create() makes an
        # IPC_PRIVATE queue (as SharedMemory and Semaphore do); open() has nothing to open.
        q = ipckit.MessageQueue.create(None, backend="sysv")
        try:
            assert q.name is None
            q.send(b"private")
            assert q.recv(timeout=0) == b"private"
        finally:
            q.close()
            q.unlink()
    else:
        with pytest.raises(exc, match="key"):
            ipckit.MessageQueue.create(bad, backend="sysv")
    with pytest.raises(exc, match="key"):
        ipckit.MessageQueue.open(bad, backend="sysv")


@pytest.mark.parametrize(
    "kwargs, exc, word",
    [
        ({"max_messages": 0}, ValueError, "max_messages"),
        ({"max_messages": -3}, ValueError, "max_messages"),
        ({"max_messages": "3"}, TypeError, "max_messages"),
        ({"max_message_size": 0}, ValueError, "max_message_size"),
        ({"max_message_size": -1}, ValueError, "max_message_size"),
        ({"max_message_size": 1.5}, TypeError, "max_message_size"),
        ({"mode": -1}, ValueError, "mode"),
        ({"mode": "600"}, TypeError, "mode"),
        ({"backend": "nope"}, ValueError, "backend"),
        ({"backend": 1}, TypeError, "backend"),
    ],
)
def test_bad_create_arguments(backend: str, new_name, kwargs: dict, exc: type, word: str) -> None:  # type: ignore[no-untyped-def]
    name = new_name()
    kwargs = {"backend": backend, **kwargs}
    with pytest.raises(exc, match=word):
        ipckit.MessageQueue.create(name, **kwargs)
    with pytest.raises(ipckit.NotFoundError):
        ipckit.MessageQueue.open(name, backend=backend)


def test_bad_data_and_timeouts(queue) -> None:  # type: ignore[no-untyped-def]
    for bad in ("text", 5, None):
        with pytest.raises(TypeError):
            queue.send(bad)
    for bad, exc in ((-1, ValueError), (float("nan"), ValueError), ("1", TypeError)):
        with pytest.raises(exc):
            queue.send(b"x", timeout=bad)
        with pytest.raises(exc):
            queue.receive(timeout=bad)
    assert len(queue) == 0
    queue.unlink()


# ------------------------------------------------------------------ close / unlink


def test_use_after_close(backend: str, new_name) -> None:  # type: ignore[no-untyped-def]
    q = ipckit.MessageQueue.create(new_name(), backend=backend)
    q.close()
    q.close()
    calls = [
        lambda: q.send(b"x"), lambda: q.recv(timeout=0), lambda: q.receive(), lambda: len(q),
        lambda: q.max_messages, lambda: q.max_message_size, lambda: q.max_bytes, lambda: q.stat(),
        lambda: pickle.dumps(q), lambda: q.__enter__(),
    ]
    if backend == "posix":
        calls.append(q.fileno)
    else:
        assert not hasattr(q, "fileno")
    for call in calls:
        with pytest.raises(ipckit.ClosedError):
            call()
    q.unlink()  # works on a closed handle
    with pytest.raises(ipckit.NotFoundError):
        q.unlink()
    with pytest.raises(ipckit.NotFoundError):
        ipckit.MessageQueue.open(q.name, backend=backend)


def test_use_after_unlink(backend: str, new_name) -> None:  # type: ignore[no-untyped-def]
    name = new_name()
    q = ipckit.MessageQueue.create(name, backend=backend)
    other = ipckit.MessageQueue.open(name, backend=backend)
    q.unlink()
    with pytest.raises(ipckit.NotFoundError):
        ipckit.MessageQueue.open(name, backend=backend)
    if backend == "posix":  # open handles keep the queue alive
        q.send(b"still here")
        assert other.recv(timeout=1) == b"still here"
    else:  # a SysV queue is gone at once, for every handle
        for call in (lambda: q.send(b"x"), lambda: other.recv(timeout=0), lambda: other.recv(timeout=0.05), lambda: len(other)):
            with pytest.raises(ipckit.ClosedError, match="removed"):
                call()
    with pytest.raises(ipckit.NotFoundError):
        other.unlink()
    q.close()
    other.close()


def test_sysv_unlink_wakes_blocked_receiver(sysv_key: int) -> None:
    q = ipckit.MessageQueue.create(sysv_key, backend="sysv")
    box: list = []

    def wait() -> None:
        try:
            box.append(q.recv())
        except BaseException as exc:
            box.append(exc)

    thread = threading.Thread(target=wait, daemon=True)
    thread.start()
    time.sleep(0.2)
    ipckit.MessageQueue.open(sysv_key, backend="sysv").unlink()
    thread.join(10)
    assert not thread.is_alive()
    assert isinstance(box[0], ipckit.ClosedError)
    q.close()


# ------------------------------------------------------------------ stat, fileno, pickle, EINTR


def test_stat(backend: str, new_name) -> None:  # type: ignore[no-untyped-def]
    before = time.time()
    with ipckit.MessageQueue.create(new_name(), backend=backend) as q:
        q.send(b"12345", timeout=1)
        q.send(b"678", timeout=1)
        s = q.stat()
        assert isinstance(s, MessageQueueStat)
        assert (s.backend, s.messages, s.uid, s.mode) == (backend, 2, os.getuid(), 0o600)
        assert s.max_message_size == q.max_message_size and s.max_messages == q.max_messages
        assert s.last_change_time is not None and s.last_change_time >= int(before) - 1
        if backend == "sysv":
            assert s.bytes == 8
            assert s.last_send_pid == os.getpid() and s.last_receive_pid is None
            assert s.last_send_time is not None and s.last_receive_time is None
            assert s.max_bytes == q.max_bytes
            q.recv(timeout=1)
            s = q.stat()
            assert s.last_receive_pid == os.getpid() and s.last_receive_time is not None and s.bytes == 3
        else:
            if _mqueue_mount():
                assert s.bytes == 8
            assert s.last_send_pid is None and s.max_bytes is None
        q.unlink()


def test_posix_fileno_with_selectors(posix_name: str) -> None:
    with ipckit.MessageQueue.create(posix_name, max_messages=2, max_message_size=64) as q:
        with selectors.DefaultSelector() as sel:
            sel.register(q, selectors.EVENT_READ)
            assert sel.select(timeout=0) == []
            q.send(b"ready")
            assert [key.fileobj for key, _ in sel.select(timeout=1)] == [q]
        with selectors.DefaultSelector() as sel:
            sel.register(q, selectors.EVENT_WRITE)
            assert len(sel.select(timeout=0)) == 1
            q.send(b"full")
            assert sel.select(timeout=0) == []
        q.unlink()


def test_pickle_reopens_by_name(backend: str, new_name) -> None:  # type: ignore[no-untyped-def]
    with ipckit.MessageQueue.create(new_name(), backend=backend) as q:
        with pickle.loads(pickle.dumps(q)) as copy:
            assert (type(copy), copy.name, copy.backend) == (type(q), q.name, q.backend)
            copy.send(b"via copy")
            assert q.recv(timeout=1) == b"via copy"
        q.unlink()


@pytest.mark.parametrize("timeout", [None, 10])
def test_eintr_is_retried(backend: str, new_name, timeout) -> None:  # type: ignore[no-untyped-def]
    hits = []
    old = signal.signal(signal.SIGALRM, lambda *a: hits.append(1))
    try:
        with ipckit.MessageQueue.create(new_name(), backend=backend) as q:
            sender = threading.Timer(0.4, lambda: q.send(b"after signals"))
            sender.start()
            signal.setitimer(signal.ITIMER_REAL, 0.05, 0.05)
            try:
                assert q.recv(timeout=timeout) == b"after signals"
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
                sender.join()
            assert hits, "no signal arrived during the wait"
            q.unlink()
    finally:
        signal.signal(signal.SIGALRM, old)


# ------------------------------------------------------------------ cross-process


def _producer(q, tag: int, count: int) -> None:  # type: ignore[no-untyped-def]
    for i in range(count):
        q.send(b"%d:%d:" % (tag, i) + b"p" * (i % 50), priority=i % 3, type=1 + i % 3, timeout=30)
    q.close()


def _send_list(q, items) -> None:  # type: ignore[no-untyped-def]
    for data, priority, mtype in items:
        q.send(data, priority=priority, type=mtype, timeout=10)


def _late_sender(q, delay: float) -> None:  # type: ignore[no-untyped-def]
    time.sleep(delay)
    q.send(b"from child", timeout=10)


def _join(proc) -> None:  # type: ignore[no-untyped-def]
    proc.join(30)
    assert not proc.is_alive(), "child hung"
    assert proc.exitcode == 0, f"child exited with {proc.exitcode}"


@pytest.mark.parametrize("context", CONTEXTS)
def test_producers_consumer_exact(backend: str, new_name, context: str) -> None:  # type: ignore[no-untyped-def]
    ctx = multiprocessing.get_context(context)
    producers, count = 3, 300
    with ipckit.MessageQueue.create(new_name(), backend=backend) as q:
        procs = [ctx.Process(target=_producer, args=(q, tag, count)) for tag in range(producers)]
        for p in procs:
            p.start()
        last = [-1] * producers
        received = 0
        for _ in range(producers * count):
            tag, i, rest = q.recv(timeout=30).split(b":", 2)
            tag, i = int(tag), int(i)
            assert rest == b"p" * (i % 50)
            if backend == "sysv":  # FIFO per sender
                assert i == last[tag] + 1, f"producer {tag}: {i} after {last[tag]}"
            last[tag] = max(last[tag], i)
            received += 1
        for p in procs:
            _join(p)
        assert received == producers * count and last == [count - 1] * producers
        expect_timeout(lambda: q.recv(timeout=0.2), 0.2)
        q.unlink()


@pytest.mark.parametrize("context", CONTEXTS)
def test_priority_order_across_processes(make_name, context: str) -> None:  # type: ignore[no-untyped-def]
    ctx = multiprocessing.get_context(context)
    priorities = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3]
    with ipckit.MessageQueue.create(make_name()) as q:
        child = ctx.Process(target=_send_list, args=(q, [(b"%d" % i, p, 1) for i, p in enumerate(priorities)]))
        child.start()
        _join(child)
        got = [q.receive(timeout=5) for _ in priorities]
        expected = sorted(enumerate(priorities), key=lambda ip: (-ip[1], ip[0]))
        assert [(int(m.data), m.priority) for m in got] == expected
        q.unlink()


@pytest.mark.parametrize("context", CONTEXTS)
def test_type_selection_across_processes(make_key, context: str) -> None:  # type: ignore[no-untyped-def]
    ctx = multiprocessing.get_context(context)
    with ipckit.MessageQueue.create(make_key(), backend="sysv") as q:
        child = ctx.Process(target=_send_list, args=(q, [(b"%d" % i, 0, t) for i, t in enumerate([3, 1, 2, 5, 1, 4])]))
        child.start()
        _join(child)
        assert q.receive(type=5, timeout=5) == (b"3", None, 5)
        assert q.receive(type=-2, timeout=5) == (b"1", None, 1)
        assert q.receive(type=0, timeout=5) == (b"0", None, 3)
        assert q.receive(type=-4, timeout=5) == (b"4", None, 1)
        expect_timeout(lambda: q.receive(type=9, timeout=0.2), 0.2)
        assert q.receive(type=4, timeout=5) == (b"5", None, 4)
        assert q.receive(timeout=5) == (b"2", None, 2)
        q.unlink()


@pytest.mark.parametrize("timeout", [None, 20])
@pytest.mark.parametrize("context", CONTEXTS)
def test_waiting_receiver_woken_by_other_process(backend: str, new_name, context: str, timeout) -> None:  # type: ignore[no-untyped-def]
    ctx = multiprocessing.get_context(context)
    with ipckit.MessageQueue.create(new_name(), backend=backend) as q:
        child = ctx.Process(target=_late_sender, args=(q, 0.3))
        child.start()
        # A safety net so a broken child cannot hang the blocking (timeout=None) wait.
        rescue = threading.Timer(25, lambda: q.send(b"rescue"))
        rescue.start()
        try:
            assert q.recv(timeout=timeout) == b"from child"
        finally:
            rescue.cancel()
        _join(child)
        q.unlink()


# ------------------------------------------------------------------ C interop

POSIX_PEER = r"""
#include <fcntl.h>
#include <mqueue.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* peer NAME N [PRIO:TEXT ...]: receive N messages, print them, then send the rest. */
int main(int argc, char **argv) {
    mqd_t q = mq_open(argv[1], O_RDWR);
    if (q == (mqd_t)-1) { perror("mq_open"); return 2; }
    struct mq_attr attr;
    if (mq_getattr(q, &attr) != 0) { perror("mq_getattr"); return 2; }
    printf("attr %ld %ld\n", attr.mq_maxmsg, attr.mq_msgsize);
    char *buf = malloc(attr.mq_msgsize);
    int n = atoi(argv[2]);
    for (int i = 0; i < n; i++) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 10;
        unsigned prio;
        ssize_t len = mq_timedreceive(q, buf, attr.mq_msgsize, &prio, &ts);
        if (len < 0) { perror("mq_timedreceive"); return 3; }
        printf("got %u %.*s\n", prio, (int)len, buf);
    }
    for (int i = 3; i < argc; i++) {
        char *text = strchr(argv[i], ':') + 1;
        if (mq_send(q, text, strlen(text), (unsigned)strtoul(argv[i], NULL, 10)) != 0) { perror("mq_send"); return 4; }
    }
    mq_close(q);
    return 0;
}
"""

SYSV_PEER = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/msg.h>

struct message { long mtype; char text[65536]; };

/* peer KEY N SELECTOR [TYPE:TEXT ...]: receive N messages with msgrcv(SELECTOR), print, then send. */
int main(int argc, char **argv) {
    static struct message m;
    int id = msgget((key_t)strtoul(argv[1], NULL, 0), 0);
    if (id < 0) { perror("msgget"); return 2; }
    int n = atoi(argv[2]);
    long selector = atol(argv[3]);
    for (int i = 0; i < n; i++) {
        ssize_t len = msgrcv(id, &m, sizeof m.text, selector, IPC_NOWAIT);
        if (len < 0) { perror("msgrcv"); return 3; }
        printf("got %ld %.*s\n", m.mtype, (int)len, m.text);
    }
    for (int i = 4; i < argc; i++) {
        char *text = strchr(argv[i], ':') + 1;
        m.mtype = atol(argv[i]);
        memcpy(m.text, text, strlen(text));
        if (msgsnd(id, &m, strlen(text), 0) != 0) { perror("msgsnd"); return 4; }
    }
    return 0;
}
"""


def _run(exe: str, *args: str) -> list[str]:
    result = subprocess.run([exe, *args], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_posix_interop_with_c(cc, posix_name: str) -> None:  # type: ignore[no-untyped-def]
    exe = cc(POSIX_PEER, "mq_posix_peer")
    with ipckit.MessageQueue.create(posix_name, max_messages=8, max_message_size=256) as q:
        for text, priority in ((b"a", 2), (b"b", 7), (b"c", 4)):
            q.send(text, priority=priority)
        lines = _run(exe, posix_name, "3", "1:low", "9:high", "5:mid")
        assert lines == ["attr 8 256", "got 7 b", "got 4 c", "got 2 a"]
        assert [q.receive(timeout=5) for _ in range(3)] == [(b"high", 9, None), (b"mid", 5, None), (b"low", 1, None)]
        q.unlink()


def test_sysv_interop_with_c(cc, sysv_key: int) -> None:  # type: ignore[no-untyped-def]
    exe = cc(SYSV_PEER, "mq_sysv_peer")
    with ipckit.MessageQueue.create(sysv_key, backend="sysv") as q:
        for text, mtype in ((b"three", 3), (b"one", 1), (b"two", 2)):
            q.send(text, type=mtype)
        lines = _run(exe, str(sysv_key), "3", "-3", "7:seven", "2:two-c", "9:nine")
        assert lines == ["got 1 one", "got 2 two", "got 3 three"]
        assert q.receive(type=9, timeout=5) == (b"nine", None, 9)
        assert q.receive(type=-5, timeout=5) == (b"two-c", None, 2)
        assert q.receive(timeout=5) == (b"seven", None, 7)
        q.unlink()


# ------------------------------------------------------------------ SIGKILL at random moments, and a long soak
#
# A message carries (producer incarnation, crc32 of its payload, sequence number). A
# kernel queue takes or refuses a message whole, so a producer killed at any moment
# leaves only whole messages, in order; a consumer killed at any moment can take at
# most the one message it was receiving with it. Survivors must never wait on a
# wedged queue: every receive below has a timeout, and a Timeout fails the test.

HEADER = struct.Struct("<IIQ")
CORRUPT = 2**64 - 1


def _message(incarnation: int, seq: int, rng: random.Random, limit: int) -> bytes:
    payload = rng.randbytes(rng.randrange(0, limit - HEADER.size + 1))
    return HEADER.pack(incarnation, zlib.crc32(payload), seq) + payload


def _parse(msg: bytes) -> tuple[int, int]:
    """(incarnation, seq) of a message, or AssertionError if it is not whole."""
    assert len(msg) >= HEADER.size, f"a {len(msg)}-byte fragment"
    incarnation, crc, seq = HEADER.unpack_from(msg)
    assert zlib.crc32(msg[HEADER.size:]) == crc, f"message {incarnation}:{seq} is corrupt"
    return incarnation, seq


def _endless_producer(backend: str, name, incarnation: int, limit: int) -> None:  # type: ignore[no-untyped-def]
    q = ipckit.MessageQueue.open(name, backend=backend)
    rng = random.Random(incarnation)
    seq = 0
    while True:
        q.send(_message(incarnation, seq, rng, limit))
        seq += 1


def _endless_consumer(backend: str, name, report: int) -> None:  # type: ignore[no-untyped-def]
    q = ipckit.MessageQueue.open(name, backend=backend)
    while True:
        msg = q.recv()
        try:
            seq = _parse(msg)[1]
        except AssertionError:
            seq = CORRUPT
        os.write(report, struct.pack("<Q", seq))


def _kill(proc) -> None:  # type: ignore[no-untyped-def]
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(30)
    assert proc.exitcode == -signal.SIGKILL


@pytest.fixture
def kill_queue(backend: str, new_name):  # type: ignore[no-untyped-def]
    q = ipckit.MessageQueue.create(new_name(), backend=backend, max_messages=8, max_message_size=64)
    yield q
    q.close()
    with contextlib.suppress(ipckit.NotFoundError):
        q.unlink()


def test_killed_producers_leave_whole_ordered_messages(backend: str, kill_queue, soak: bool) -> None:
    ctx = multiprocessing.get_context("fork")
    kills = 100 if soak else 4
    rng = random.Random()
    start = lambda n: ctx.Process(target=_endless_producer, args=(backend, kill_queue.name, n, 64), daemon=True)  # noqa: E731
    producers = {n: start(n) for n in range(2)}
    for p in producers.values():
        p.start()
    last: dict[int, int] = {}

    def take(timeout: float) -> None:
        incarnation, seq = _parse(kill_queue.recv(timeout=timeout))
        assert seq == last.get(incarnation, -1) + 1, f"producer {incarnation}: message {seq} after {last.get(incarnation)}"
        last[incarnation] = seq

    try:
        for n in range(2, 2 + kills):
            end = time.monotonic() + rng.uniform(0, 0.02)
            take(10)  # at least one per round: the queue is not wedged
            while time.monotonic() < end:
                take(10)
            # A producer that has sent something: killing one that never started
            # (a slow fork under load) would test nothing.
            victim = rng.choice([n for n in sorted(producers) if n in last] or sorted(producers))
            _kill(producers.pop(victim))
            producers[n] = start(n)
            producers[n].start()
    finally:
        for p in producers.values():
            _kill(p)
    while True:  # what the dead left behind is whole and in order too
        try:
            take(0)
        except ipckit.Timeout:
            break
    assert len(last) >= 2 and sum(v + 1 for v in last.values()) > kills
    kill_queue.send(b"after", timeout=1)
    assert kill_queue.recv(timeout=1) == b"after"


def test_killed_consumers_lose_at_most_the_message_in_hand(backend: str, kill_queue, soak: bool) -> None:
    ctx = multiprocessing.get_context("fork")
    kills = 100 if soak else 4
    rng = random.Random()
    read_end, write_end = os.pipe()
    sent = [0]
    stop = threading.Event()
    data = random.Random(7)

    def produce() -> None:
        while not stop.is_set():
            try:
                kill_queue.send(_message(0, sent[0], data, 64), timeout=0.05)
            except ipckit.Timeout:
                continue
            sent[0] += 1

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    reports: list[int] = []
    buffer = b""

    def collect(timeout: float) -> int:
        """Take every report written so far (waiting up to *timeout* for the first)."""
        nonlocal buffer
        while select.select([read_end], [], [], timeout)[0]:
            buffer += os.read(read_end, 65536)
            timeout = 0
        whole = len(buffer) // 8 * 8
        new = [v for (v,) in struct.iter_unpack("<Q", buffer[:whole])]
        buffer = buffer[whole:]
        reports.extend(new)
        return len(new)

    try:
        for _ in range(kills):
            consumer = ctx.Process(target=_endless_consumer, args=(backend, kill_queue.name, write_end), daemon=True)
            consumer.start()
            deadline = time.monotonic() + 10
            while not collect(0.1):  # the new consumer gets messages: the queue is not wedged
                assert time.monotonic() < deadline, "no message reached a consumer within 10 s"
            end = time.monotonic() + rng.uniform(0, 0.02)
            while time.monotonic() < end:
                collect(0)
            _kill(consumer)
        collect(0)
    finally:
        stop.set()
        producer.join(10)
    os.close(write_end)
    os.close(read_end)
    left = []
    while True:
        try:
            left.append(_parse(kill_queue.recv(timeout=0))[1])
        except ipckit.Timeout:
            break
    taken = reports + left
    assert CORRUPT not in reports
    assert all(a < b for a, b in zip(taken, taken[1:])), "a message was duplicated or reordered"
    lost = sent[0] - len(taken)
    assert 0 <= lost <= kills, f"{lost} messages lost to {kills} kills"
    assert taken[-1] == sent[0] - 1 or lost > 0


def _soak_producer(backend: str, name, count: int, limit: int) -> None:  # type: ignore[no-untyped-def]
    q = ipckit.MessageQueue.open(name, backend=backend)
    rng = random.Random(count)
    for seq in range(count):
        q.send(_message(1, seq, rng, limit), timeout=60)


def test_soak_messages_arrive_whole_and_in_order(backend: str, new_name, soak: bool) -> None:
    """1,000,000 messages under --soak (20,000 otherwise), each checked."""
    count = 1_000_000 if soak else 20_000
    limit = 512
    with ipckit.MessageQueue.create(new_name(), backend=backend, max_messages=8, max_message_size=limit) as q:
        child = multiprocessing.get_context("fork").Process(target=_soak_producer, args=(backend, q.name, count, limit))
        child.start()
        try:
            for seq in range(count):
                assert _parse(q.recv(timeout=30)) == (1, seq)
        finally:
            child.join(60)
            if child.is_alive():
                _kill(child)
        assert child.exitcode == 0
        expect_timeout(lambda: q.recv(timeout=0.05), 0.05)
        q.unlink()


# ------------------------------------------------------------------ SysV controls: IPC_SET, MSG_NOERROR, open by id

SYSV_CONTROL_PEER = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/msg.h>

struct message { long mtype; char text[256]; };

/* peer MSQID TEXT: print what IPC_STAT says (qbytes, mode, uid, gid, qnum, cbytes), then send TEXT as type 5 */
int main(int argc, char **argv) {
    int id = atoi(argv[1]);
    struct msqid_ds ds;
    if (msgctl(id, IPC_STAT, &ds) != 0) { perror("IPC_STAT"); return 2; }
    printf("%lu %o %u %u %lu %lu\n", (unsigned long)ds.msg_qbytes, ds.msg_perm.mode & 0777, (unsigned)ds.msg_perm.uid,
           (unsigned)ds.msg_perm.gid, (unsigned long)ds.msg_qnum, (unsigned long)ds.__msg_cbytes);
    struct message m = {5, ""};
    size_t n = strlen(argv[2]);
    memcpy(m.text, argv[2], n);
    if (msgsnd(id, &m, n, 0) != 0) { perror("msgsnd"); return 3; }
    return 0;
}
"""


def test_sysv_set_is_ipc_set_as_a_c_peer_sees_it(sysv_key: int, cc) -> None:  # type: ignore[no-untyped-def]
    exe = cc(SYSV_CONTROL_PEER, "mq_sysv_control")
    with ipckit.MessageQueue.create(sysv_key, backend="sysv") as q:
        q.send(b"12345")
        q.set(mode=0o640, max_bytes=300)
        assert (q.max_bytes, q.max_message_size, q.stat().mode) == (300, 300, 0o640)
        lines = _run(exe, str(q.id), "a long message from C")
        assert lines == [f"300 640 {os.geteuid()} {os.getegid()} 1 5"]
        assert q.recv(timeout=5) == b"12345"
        assert q.receive(timeout=5) == (b"a long message from C", None, 5)
        with pytest.raises(ipckit.MessageTooLarge):
            q.send(b"z" * 301)  # over the new capacity: nothing is sent
        q.set(max_bytes=16384)
        assert q.max_bytes == 16384 and q.stat().bytes == 0
        for kwargs, exc in (({}, TypeError), ({"mode": 0o4600}, ValueError), ({"max_bytes": 0}, ValueError),
                            ({"max_bytes": 2**64}, ValueError), ({"uid": -1}, ValueError), ({"gid": "0"}, TypeError)):
            with pytest.raises(exc):
                q.set(**kwargs)
        q.unlink()


def test_sysv_receive_max_size_and_truncate(sysv_key: int, cc) -> None:  # type: ignore[no-untyped-def]
    exe = cc(SYSV_CONTROL_PEER, "mq_sysv_control")
    with ipckit.MessageQueue.create(sysv_key, backend="sysv") as q:
        _run(exe, str(q.id), "0123456789")
        with pytest.raises(ipckit.MessageTooLarge, match="stays queued"):
            q.receive(max_size=4, timeout=0)
        assert len(q) == 1  # E2BIG took nothing
        assert q.receive(max_size=10, timeout=0) == (b"0123456789", None, 5)
        _run(exe, str(q.id), "0123456789")
        assert q.receive(type=5, max_size=4, truncate=True, timeout=0) == (b"0123", None, 5)  # MSG_NOERROR
        assert len(q) == 0 and q.stat().bytes == 0
        q.send(b"")
        assert q.receive(max_size=0, timeout=0) == (b"", None, 1)
        for kwargs, exc in (({"max_size": -1}, ValueError), ({"max_size": 1.5}, TypeError), ({"truncate": True}, ValueError),
                            ({"max_size": 4, "truncate": 1}, TypeError)):
            with pytest.raises(exc):
                q.receive(timeout=0, **kwargs)
        q.unlink()


def test_sysv_open_by_id_is_unambiguous(sysv_key: int) -> None:
    with ipckit.MessageQueue.create(sysv_key, backend="sysv") as q:
        with ipckit.MessageQueue.open(id=q.id, backend="sysv") as by_id:
            assert (by_id.id, by_id.name) == (q.id, sysv_key)
            by_id.send(b"by id")
        assert q.recv(timeout=1) == b"by id"
        with pytest.raises(ValueError, match="backend='sysv'"):
            ipckit.MessageQueue.open(id=q.id)
        with pytest.raises(TypeError, match="not both"):
            ipckit.MessageQueue.open(sysv_key, id=q.id, backend="sysv")
        q.unlink()
        with pytest.raises(ipckit.NotFoundError):
            ipckit.MessageQueue.open(id=q.id, backend="sysv")
    private = ipckit.MessageQueue.create(None, backend="sysv")
    try:
        with ipckit.MessageQueue.open(id=private.id, backend="sysv") as other:
            assert other.name is None
            other.send(b"private")
        assert private.recv(timeout=1) == b"private"
    finally:
        private.unlink()
        private.close()


def test_posix_stat_bytes_without_an_mqueue_mount(posix_name: str) -> None:
    """QSIZE comes from reading the queue's own descriptor, mounted or not."""
    with ipckit.MessageQueue.create(posix_name) as q:
        q.send(b"123")
        q.send(b"4567")
        assert q.stat().bytes == 7
        assert q.stat().gid == os.getegid()
        q.unlink()


# ------------------------------------------------------------------ the attempts and waiters ipckit.aio drives


def test_attempts_never_block_and_waiters_see_readiness(backend: str, new_name) -> None:  # type: ignore[no-untyped-def]
    from ipckit._wait import NOW, WOULD_BLOCK, Backoff, ReadyFd

    with ipckit.MessageQueue.create(new_name(), backend=backend, max_messages=1, max_message_size=16) as q:
        start = time.monotonic()
        attempt, waiter = q._recv_op()
        assert attempt(NOW) is WOULD_BLOCK
        if backend == "posix":
            assert isinstance(waiter, ReadyFd) and waiter.fd == q.fileno()
            assert not select.select([waiter.fd], [], [], 0)[0]
        else:
            assert isinstance(waiter, Backoff) and waiter.observe() is False
        q.send(b"x" * 16)
        send_attempt, send_waiter = q._send_op(b"y")
        if backend == "posix":
            assert select.select([waiter.fd], [], [], 0)[0]
            assert not select.select([], [send_waiter.fd], [], 0)[1]
        else:
            assert waiter.observe() is True
            assert send_waiter.observe() is False  # 16 of 16 bytes taken
        assert send_attempt(NOW) is WOULD_BLOCK
        assert len(q) == 1  # an observer consumed nothing
        assert attempt(NOW)[0] == b"x" * 16
        assert send_attempt(NOW) is None and q.recv(timeout=0) == b"y"
        assert time.monotonic() - start < 1.0  # no attempt waited
        with pytest.raises(ipckit.MessageTooLarge):
            q._send_op(b"z" * 17)  # the checks come first: nothing to attempt
        q.unlink()
    with pytest.raises(ipckit.ClosedError):
        q._recv_op()
