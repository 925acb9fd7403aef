"""Contract audit: one small test per promise of the public contract (docs/reference/contract.md).

Written from the contract's text alone, not from the implementation: each test names
the sentence it checks. Third-party C-level libraries (posix_ipc, sysv_ipc, the stdlib
``socket``) and small C programs stand in for "a program that is not ipckit", and
/dev/shm, /proc/sysvipc and stat() are the independent observers of kernel objects.
"""

from __future__ import annotations

import contextlib
import errno
import multiprocessing
import os
import re
import selectors
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import types

import pytest

import ipckit
from ipckit.testing import expect_timeout
from test_channels import KIND, KINDS, Fixtures  # the channel registry
from test_channels import fifo_pair as _fifo_pair

np = pytest.importorskip("numpy")
posix_ipc = pytest.importorskip("posix_ipc")
sysv_ipc = pytest.importorskip("sysv_ipc")

CONTEXTS = ["fork", "spawn"]
SI_USER, SI_QUEUE = 0, -1
WAIT = 0.1  # the ">0" timeout used to check "never returns early"


# ================================================================ helpers


def expect_immediate(call, exc=ipckit.Timeout):  # type: ignore[no-untyped-def]
    """timeout=0 never blocks: *call* raises *exc* at once."""
    start = time.monotonic()
    with pytest.raises(exc) as info:
        call()
    assert time.monotonic() - start < 1.0
    return info.value


def later(delay: float, fn, *args):  # type: ignore[no-untyped-def]
    t = threading.Timer(delay, fn, args)
    t.daemon = True
    t.start()
    return t


@contextlib.contextmanager
def umask(mask: int):  # type: ignore[no-untyped-def]
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def sysv_row(kind: str, key: int) -> list[str] | None:
    with open(f"/proc/sysvipc/{kind}") as f:
        header = next(f).split()
        for line in f:
            fields = line.split()
            if int(fields[0]) & 0xFFFFFFFF == key:
                return dict(zip(header, fields))  # type: ignore[return-value]
    return None


def child_ok(proc, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
    proc.join(timeout)
    if proc.is_alive():
        proc.kill()
        proc.join(5)
        pytest.fail("child did not finish")
    assert proc.exitcode == 0


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    try:
        os.kill(proc.pid, 0)
    except ProcessLookupError:
        return proc.pid
    pytest.skip("pid was reused at once")


def close_all(*objs) -> None:  # type: ignore[no-untyped-def]
    for o in objs:
        with contextlib.suppress(Exception):
            o.close()


# ================================================================ the named objects
#
# kind -> (create(name, **kw), open(name), namespace) where namespace is "posix"/"sysv".

NAMED = {
    "mq-posix": (lambda n, **kw: ipckit.MessageQueue.create(n, **kw), lambda n: ipckit.MessageQueue.open(n), "posix"),
    "mq-sysv": (lambda n, **kw: ipckit.MessageQueue.create(n, backend="sysv", **kw), lambda n: ipckit.MessageQueue.open(n, backend="sysv"), "sysv"),
    "mq-shm": (lambda n, **kw: ipckit.MessageQueue.create(n, backend="shm", **kw), lambda n: ipckit.MessageQueue.open(n, backend="shm"), "posix"),
    "shm-posix": (lambda n, **kw: ipckit.SharedMemory.create(n, 4096, **kw), lambda n: ipckit.SharedMemory.open(n), "posix"),
    "shm-sysv": (lambda n, **kw: ipckit.SharedMemory.create(n, 4096, backend="sysv", **kw), lambda n: ipckit.SharedMemory.open(n, backend="sysv"), "sysv"),
    "sem-posix": (lambda n, **kw: ipckit.Semaphore.create(n, **kw), lambda n: ipckit.Semaphore.open(n), "posix"),
    "sem-sysv": (lambda n, **kw: ipckit.Semaphore.create(n, backend="sysv", **kw), lambda n: ipckit.Semaphore.open(n, backend="sysv"), "sysv"),
}
POSIX_NAMED = [k for k, v in NAMED.items() if v[2] == "posix"]
SYSV_NAMED = [k for k, v in NAMED.items() if v[2] == "sysv"]


@pytest.fixture
def fresh(make_name, make_key):  # type: ignore[no-untyped-def]
    """fresh(kind) -> a unique, unused name of the kind's namespace."""
    return lambda kind: make_name() if NAMED[kind][2] == "posix" else make_key()


def kernel_mode(kind: str, name) -> int:  # type: ignore[no-untyped-def]
    """Permission bits of the kernel object, read without ipckit."""
    if kind == "mq-posix":
        q = posix_ipc.MessageQueue(name)
        try:
            return os.fstat(q.mqd).st_mode & 0o777
        finally:
            q.close()
    if kind == "shm-posix":
        return os.stat("/dev/shm/" + name[1:]).st_mode & 0o777
    if kind == "sem-posix":
        return os.stat("/dev/shm/sem." + name[1:]).st_mode & 0o777
    if kind == "mq-shm":
        modes = {os.stat("/dev/shm/" + e).st_mode & 0o777 for e in os.listdir("/dev/shm") if name[1:] in e}
        assert modes, "no /dev/shm segment bears the queue's name"
        assert len(modes) == 1, modes
        return modes.pop()
    table = {"mq-sysv": "msg", "shm-sysv": "shm", "sem-sysv": "sem"}[kind]
    row = sysv_row(table, name)
    assert row is not None, f"no /proc/sysvipc/{table} row for key {name:#x}"
    return int(row["perms"], 8) & 0o777


# ================================================================ the channels
#
# Every object with send()/recv(): one sender, one receiver, and what to close. The
# kinds are the one registry of tests/test_channels.py (KINDS), which also runs
# ipckit.testing.check_channel over each of them: the promises every channel shares
# (any bytes-like object in and bytes out, whole messages of any size, timeout=None /
# 0 / >0 / fractions of a millisecond never early, bad timeouts, close idempotent and
# ClosedError after it, with-blocks closing, fileno() readiness, a peer's close
# waking a blocked recv) are checked there, for third parties too; this file keeps
# the promises particular to some kinds.


class Chan(types.SimpleNamespace):
    pass


def _stream_sockets(url: str):  # type: ignore[no-untyped-def]
    srv = ipckit.Socket.listen(url)
    c = ipckit.Socket.connect(srv.address, timeout=10)
    s = srv.accept(timeout=10)
    return c, s, srv


CHANNELS = [k.id for k in KINDS]
FD_CHANNELS = [k.id for k in KINDS if k.fd]
STREAM_CHANNELS = [k.id for k in KINDS if k.stream]
TWO_WAY_STREAMS = [k.id for k in KINDS if k.stream and k.two_way]


@pytest.fixture
def channel(request, tmp_path):  # type: ignore[no-untyped-def]
    kind = KIND[request.param]
    made = kind.make(Fixtures(request, tmp_path))
    ch = Chan(sender=made.sender, receiver=made.receiver, objs=[made.sender, made.receiver, *made.others], kind=kind.id)
    try:
        yield ch
    finally:
        close_all(*ch.objs)
        for step in made.cleanup:
            with contextlib.suppress(Exception):
                step()


def each_channel(kinds=CHANNELS):  # type: ignore[no-untyped-def]
    return pytest.mark.parametrize("channel", kinds, indirect=True)


# ================================================================ import & errors


def test_every_name_is_reachable_from_ipckit() -> None:
    # "every name below is reachable as ipckit.<Name>"
    for name in ["Pipe", "MessageQueue", "Message", "SharedMemory", "Semaphore", "Signal", "SignalInfo", "Socket",
                 "IPCError", "Timeout", "ExistsError", "NotFoundError", "ClosedError", "MessageTooLarge"]:
        assert hasattr(ipckit, name), name
    for meth in ["duplex", "fifo"]:
        assert callable(getattr(ipckit.Pipe, meth))
    for cls in (ipckit.MessageQueue, ipckit.SharedMemory, ipckit.Semaphore):
        assert callable(cls.create) and callable(cls.open)
    for meth in ["send", "catch", "handle", "ignore", "default"]:
        assert callable(getattr(ipckit.Signal, meth))
    assert callable(ipckit.Socket.listen) and callable(ipckit.Socket.connect)


def test_error_hierarchy() -> None:
    # "All errors ... derive from ipckit.IPCError, itself a subclass of OSError", and the table.
    assert issubclass(ipckit.IPCError, OSError)
    table = {
        ipckit.Timeout: TimeoutError,
        ipckit.ExistsError: FileExistsError,
        ipckit.NotFoundError: FileNotFoundError,
        ipckit.ClosedError: ipckit.IPCError,
        ipckit.MessageTooLarge: ValueError,
    }
    for cls, also in table.items():
        assert issubclass(cls, ipckit.IPCError), cls
        assert issubclass(cls, also), (cls, also)


# ================================================================ data in, bytes out
#
# "Data is any bytes-like object on the way in ...; recv() returns bytes", and str is
# a TypeError: ipckit.testing.check_channel (_check_bytes_like, _check_bad_data), for
# every kind in tests/test_channels.py.


def test_non_contiguous_numpy_is_rejected_and_nothing_sent() -> None:
    # "a contiguous numpy array": anything else is a wrong argument, checked before any call
    with ipckit.Pipe() as p:
        with pytest.raises((TypeError, ValueError)):
            p.send(np.arange(10)[::2])
        expect_immediate(lambda: p.reader.recv(timeout=0))


# ================================================================ timeouts (channels)
#
# "timeout=None blocks until done; timeout=0 never blocks; timeout>0 waits until the
# operation can complete or that many seconds have passed (... it never returns
# early)", down to fractions of a millisecond, and bad timeouts: check_channel
# (_check_recv_timeouts, _check_waiting_recv, _check_tiny_timeouts, _check_bad_timeouts).

TINY = [0.0015, 0.0101, 0.05]  # fractions of a millisecond must not be rounded down


def test_tiny_timeouts_never_early_other_waits(make_name, make_key) -> None:  # type: ignore[no-untyped-def]
    sems = [ipckit.Semaphore.create(make_name(), 0), ipckit.Semaphore.create(make_key(), 0, backend="sysv")]
    try:
        with ipckit.Signal.catch(signal.SIGUSR2) as s, ipckit.Socket.listen("tcp://127.0.0.1:0") as srv:
            for wait in TINY:
                expect_timeout(lambda: s.wait(timeout=wait), wait)
                expect_timeout(lambda: srv.accept(timeout=wait), wait)
                for sem in sems:
                    start = time.monotonic()
                    assert sem.acquire(timeout=wait) is False
                    assert time.monotonic() - start >= wait
    finally:
        for sem in sems:
            sem.close()
            sem.unlink()


# ================================================================ close / context managers


# "close() is idempotent. Any other call on a closed object, fileno() included, raises
# ClosedError" and "Every object is a context manager; leaving the with block closes
# it": check_channel (_check_use_after_close, _check_context_managers) for the ends;
# here the raw stream calls and the queue calls, which check_channel does not know.


@each_channel(STREAM_CHANNELS + ["mq-posix", "mq-sysv", "mq-shm"])
def test_channel_close_idempotent_then_closed_error(channel) -> None:  # type: ignore[no-untyped-def]
    for obj in channel.objs:
        obj.close()
        obj.close()
    if channel.kind in STREAM_CHANNELS:
        with pytest.raises(ipckit.ClosedError):
            channel.sender.write(b"x")
        with pytest.raises(ipckit.ClosedError):
            channel.receiver.read(1, timeout=0)
    if channel.kind.startswith("mq-"):
        for q in (channel.sender, channel.receiver):
            with pytest.raises(ipckit.ClosedError):
                q.receive(timeout=0)
            with pytest.raises(ipckit.ClosedError):
                len(q)


def test_pipe_close_closes_both_ends() -> None:
    p = ipckit.Pipe()
    with p:
        pass
    for end in (p.reader, p.writer):
        with pytest.raises(ipckit.ClosedError):
            end.fileno()


def test_listener_closed_error() -> None:
    srv = ipckit.Socket.listen("tcp://127.0.0.1:0")
    with srv as entered:
        assert entered is srv
    srv.close()
    with pytest.raises(ipckit.ClosedError):
        srv.accept(timeout=0)
    with pytest.raises(ipckit.ClosedError):
        srv.fileno()


def test_socket_fd_calls_after_close(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = str(tmp_path / "c.sock")
    c, s, srv = _stream_sockets("unix://" + path)
    close_all(c, s, srv)
    for end in (c, s):
        with pytest.raises(ipckit.ClosedError):
            end.send_fds(b"x", [0])
        with pytest.raises(ipckit.ClosedError):
            end.recv_fds(1)
        with pytest.raises(ipckit.ClosedError):
            end.peer_credentials()
    with contextlib.suppress(OSError):
        os.unlink(path)


@pytest.mark.parametrize("kind", ["shm-posix", "shm-sysv"])
def test_shared_memory_closed(kind, fresh) -> None:  # type: ignore[no-untyped-def]
    name = fresh(kind)
    m = NAMED[kind][0](name)
    try:
        with m as entered:
            assert entered is m
        m.close()
        with pytest.raises(ipckit.ClosedError):
            m.read()
        with pytest.raises(ipckit.ClosedError):
            m.write(b"x")
    finally:
        m.unlink()


@pytest.mark.parametrize("kind", ["sem-posix", "sem-sysv"])
def test_semaphore_closed(kind, fresh) -> None:  # type: ignore[no-untyped-def]
    name = fresh(kind)
    s = NAMED[kind][0](name)
    try:
        s.close()
        s.close()
        with pytest.raises(ipckit.ClosedError):
            s.acquire(timeout=0)
        with pytest.raises(ipckit.ClosedError):
            s.release()
        with pytest.raises(ipckit.ClosedError):
            with s:
                pass
    finally:
        s.unlink()


@pytest.mark.parametrize("kind", list(NAMED))
def test_unlink_works_closed_or_not(kind, fresh) -> None:  # type: ignore[no-untyped-def]
    # "unlink(), which removes the name whether or not this handle is closed"
    create, open_, _ = NAMED[kind]
    name = fresh(kind)
    obj = create(name)
    obj.close()
    obj.unlink()
    with pytest.raises(ipckit.NotFoundError):
        open_(name)
    obj = create(name)  # the name is free again
    obj.unlink()
    with pytest.raises(ipckit.NotFoundError):
        open_(name)
    obj.close()


# ================================================================ Semaphore `with`


@pytest.mark.parametrize("kind", ["sem-posix", "sem-sysv"])
def test_semaphore_with_acquires_releases_and_does_not_close(kind, fresh) -> None:  # type: ignore[no-untyped-def]
    name = fresh(kind)
    sem = NAMED[kind][0](name, value=2)
    try:
        with sem:
            assert sem.value == 1
        assert sem.value == 2
        with pytest.raises(RuntimeError):
            with sem:
                assert sem.value == 1
                raise RuntimeError("boom")
        assert sem.value == 2
        assert sem.acquire(timeout=0) is True  # still open
        sem.release()
    finally:
        sem.close()
        sem.unlink()


# ================================================================ fileno + selectors


# "Objects that have a file descriptor expose fileno(), so they work with selectors":
# check_channel (_check_fileno_readiness) for every channel with a descriptor.


def test_posix_queue_fileno_works_with_selectors(posix_name) -> None:  # type: ignore[no-untyped-def]
    # a POSIX queue is a descriptor on Linux: "Objects that have a file descriptor expose fileno()"
    with ipckit.MessageQueue.create(posix_name) as q, selectors.DefaultSelector() as sel:
        try:
            sel.register(q, selectors.EVENT_READ)
            assert sel.select(timeout=0) == []
            q.send(b"ready")
            assert sel.select(timeout=5)
            assert q.recv(timeout=0) == b"ready"
        finally:
            q.unlink()
    with pytest.raises(ipckit.ClosedError):
        q.fileno()


def test_listener_fileno_readable_on_pending_connection() -> None:
    with ipckit.Socket.listen("tcp://127.0.0.1:0") as srv, selectors.DefaultSelector() as sel:
        sel.register(srv, selectors.EVENT_READ)
        assert sel.select(timeout=0) == []
        with ipckit.Socket.connect(srv.address, timeout=5):
            assert sel.select(timeout=5)
            srv.accept(timeout=0).close()


def test_fileno_with_asyncio() -> None:
    import asyncio

    async def main(p) -> bytes:  # type: ignore[no-untyped-def]
        loop = asyncio.get_running_loop()
        got: asyncio.Future = loop.create_future()
        loop.add_reader(p.reader.fileno(), lambda: got.done() or got.set_result(p.reader.recv(timeout=0)))
        loop.call_later(0.05, p.writer.send, b"async")
        try:
            return await asyncio.wait_for(got, 5)
        finally:
            loop.remove_reader(p.reader.fileno())

    with ipckit.Pipe() as p:
        assert asyncio.run(main(p)) == b"async"


# ================================================================ create/open/name/mode


@pytest.mark.parametrize("kind", list(NAMED))
def test_create_taken_name_is_exists_error(kind, fresh) -> None:  # type: ignore[no-untyped-def]
    create, _, _ = NAMED[kind]
    name = fresh(kind)
    obj = create(name)
    try:
        with pytest.raises(ipckit.ExistsError) as info:
            create(name)
        assert isinstance(info.value, FileExistsError)
        assert info.value.errno == errno.EEXIST
    finally:
        obj.close()
        obj.unlink()


@pytest.mark.parametrize("kind", list(NAMED))
def test_open_missing_is_not_found_error(kind, fresh) -> None:  # type: ignore[no-untyped-def]
    _, open_, _ = NAMED[kind]
    with pytest.raises(ipckit.NotFoundError) as info:
        open_(fresh(kind))
    assert isinstance(info.value, FileNotFoundError)
    assert info.value.errno == errno.ENOENT


@pytest.mark.parametrize("mask", [0o000, 0o277])
@pytest.mark.parametrize("kind", list(NAMED))
def test_default_mode_is_exactly_0600(kind, mask, fresh) -> None:  # type: ignore[no-untyped-def]
    # "Default permission mode is 0o600, exactly (not reduced or widened by the umask)"
    create, _, _ = NAMED[kind]
    name = fresh(kind)
    with umask(mask):
        obj = create(name)
    try:
        assert oct(kernel_mode(kind, name)) == oct(0o600)
    finally:
        obj.close()
        obj.unlink()


@pytest.mark.parametrize("kind", list(NAMED))
def test_explicit_mode_is_used(kind, fresh) -> None:  # type: ignore[no-untyped-def]
    create, _, _ = NAMED[kind]
    name = fresh(kind)
    obj = create(name, mode=0o640)
    try:
        assert oct(kernel_mode(kind, name)) == oct(0o640)
    finally:
        obj.close()
        obj.unlink()


@pytest.mark.parametrize("kind", list(NAMED))
def test_name_is_what_was_passed(kind, fresh) -> None:  # type: ignore[no-untyped-def]
    # "obj.name is what was passed: the string for POSIX, the integer key for SysV"
    create, open_, ns = NAMED[kind]
    name = fresh(kind)
    obj = create(name)
    try:
        other = open_(name)
        for o in (obj, other):
            assert o.name == name
            assert type(o.name) is (str if ns == "posix" else int)
        other.close()
    finally:
        obj.close()
        obj.unlink()


@pytest.mark.parametrize("kind", ["mq-posix", "mq-sysv", "mq-shm", "shm-posix", "shm-sysv"])
def test_backend_attribute(kind, fresh) -> None:  # type: ignore[no-untyped-def]
    obj = NAMED[kind][0](fresh(kind))
    try:
        assert obj.backend == kind.split("-")[1]
    finally:
        obj.close()
        obj.unlink()


def test_default_backend_is_posix(make_name) -> None:  # type: ignore[no-untyped-def]
    for create in (lambda n: ipckit.MessageQueue.create(n), lambda n: ipckit.SharedMemory.create(n, 64)):
        name = make_name()
        with create(name) as obj:
            assert obj.backend == "posix"
            obj.unlink()


@pytest.mark.parametrize("kind", ["mq", "shm", "sem"])
def test_unknown_backend_is_value_error(kind, make_name) -> None:  # type: ignore[no-untyped-def]
    name = make_name()
    calls = {
        "mq": lambda: ipckit.MessageQueue.create(name, backend="nope"),
        "shm": lambda: ipckit.SharedMemory.create(name, 64, backend="shm"),
        "sem": lambda: ipckit.Semaphore.create(name, backend="shm"),
    }
    with pytest.raises(ValueError, match="backend"):
        calls[kind]()


# ---------------------------------------------------------------- POSIX name rules

BAD_NAMES = ["noslash", "/a/b", "/", "", "//", "/" + "x" * 255, "/" + "é" * 128, "/bad\udc80"]
BAD_NAME_TYPES = [b"/bytes", 5, None, 1.5]


@pytest.mark.parametrize("bad", BAD_NAMES, ids=repr)
@pytest.mark.parametrize("kind", POSIX_NAMED)
def test_posix_name_rules_value_error(kind, bad) -> None:  # type: ignore[no-untyped-def]
    create, open_, _ = NAMED[kind]
    with pytest.raises(ValueError, match="name"):
        create(bad)
    with pytest.raises(ValueError, match="name"):
        open_(bad)


@pytest.mark.parametrize("bad", BAD_NAME_TYPES, ids=repr)
@pytest.mark.parametrize("kind", POSIX_NAMED)
def test_posix_name_rules_type_error(kind, bad) -> None:  # type: ignore[no-untyped-def]
    create, open_, _ = NAMED[kind]
    with pytest.raises(TypeError, match="name"):
        create(bad)
    with pytest.raises(TypeError, match="name"):
        open_(bad)


# glibc keeps a POSIX semaphore as /dev/shm/sem.NAME, so NAME_MAX leaves it 251 bytes:
# the 255 of the contract cannot be kept there, and a longer name must still be a
# ValueError naming the argument (not ENAMETOOLONG from the system call).
LONGEST = {"mq-posix": 255, "mq-shm": 255, "shm-posix": 255, "sem-posix": 251}


def _long_name(base: str, size: int) -> str:
    room = size - len(base.encode())
    name = base + "é" * (room // 2) + "x" * (room % 2)
    assert len(name.encode()) == size
    return name


@pytest.mark.parametrize("kind", list(LONGEST))
def test_posix_name_of_255_utf8_bytes_is_accepted(kind, make_name) -> None:  # type: ignore[no-untyped-def]
    # "2 to 255 bytes in UTF-8"
    name = _long_name(make_name(), LONGEST[kind])
    obj = NAMED[kind][0](name)
    try:
        assert obj.name == name
    finally:
        obj.close()
        obj.unlink()


def test_posix_semaphore_name_over_251_bytes_is_value_error(make_name) -> None:  # type: ignore[no-untyped-def]
    base = make_name()
    for size in (252, 255):
        with pytest.raises(ValueError, match="name"):
            ipckit.Semaphore.create(_long_name(base, size))


# ---------------------------------------------------------------- SysV keys


@pytest.mark.parametrize("bad", [0, -1, 0x100000000, 2**64])
@pytest.mark.parametrize("kind", SYSV_NAMED)
def test_sysv_key_range(kind, bad) -> None:  # type: ignore[no-untyped-def]
    create, open_, _ = NAMED[kind]
    with pytest.raises(ValueError, match="name|key"):
        create(bad)
    with pytest.raises(ValueError, match="name|key"):
        open_(bad)


@pytest.mark.parametrize("bad", ["1234", 1.5, b"\x01"])
@pytest.mark.parametrize("kind", SYSV_NAMED)
def test_sysv_key_type(kind, bad) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TypeError, match="name|key"):
        NAMED[kind][0](bad)


@pytest.mark.parametrize("kind", SYSV_NAMED)
def test_sysv_key_top_of_range(kind) -> None:  # type: ignore[no-untyped-def]
    # "an int in 1..0xFFFFFFFF"
    key = 0xFFFFFFFF
    if any(sysv_row(t, key) for t in ("msg", "sem", "shm")):
        pytest.skip("key 0xFFFFFFFF is in use on this machine")
    obj = NAMED[kind][0](key)
    try:
        assert obj.name == key
        table = {"mq-sysv": "msg", "shm-sysv": "shm", "sem-sysv": "sem"}[kind]
        assert sysv_row(table, key) is not None
    finally:
        obj.close()
        obj.unlink()


@pytest.mark.parametrize("kind", SYSV_NAMED)
def test_sysv_private_object(kind) -> None:  # type: ignore[no-untyped-def]
    # "(or None for a private object, where that applies)"
    obj = NAMED[kind][0](None)
    try:
        assert obj.name is None
    finally:
        obj.close()
        obj.unlink()


def test_sysv_private_shared_memory_shared_with_fork_child() -> None:
    m = ipckit.SharedMemory.create(None, 64, backend="sysv")
    try:
        proc = multiprocessing.get_context("fork").Process(target=_child_write_buf, args=(m,))
        proc.start()
        child_ok(proc)
        assert m.read(5) == b"child"
    finally:
        m.close()
        m.unlink()


def _child_write_buf(m) -> None:  # type: ignore[no-untyped-def]
    m.write(b"child")


# ---------------------------------------------------------------- invalid args leave nothing


def test_invalid_arguments_leave_no_kernel_object(make_name, make_key) -> None:  # type: ignore[no-untyped-def]
    # "... before any system call, and leave no kernel object behind"
    name, key = make_name(), make_key()
    with pytest.raises(ValueError, match="size"):
        ipckit.SharedMemory.create(name, -1)
    with pytest.raises(TypeError, match="size"):
        ipckit.SharedMemory.create(name, "10")
    with pytest.raises(ValueError, match="size"):
        ipckit.SharedMemory.create(key, -1, backend="sysv")
    with pytest.raises(ValueError, match="value"):
        ipckit.Semaphore.create(name, value=-1)
    with pytest.raises(ValueError, match="value"):
        ipckit.Semaphore.create(key, value=-1, backend="sysv")
    with pytest.raises(ValueError, match="max_messages"):
        ipckit.MessageQueue.create(name, max_messages=0)
    with pytest.raises(ValueError, match="max_message_size"):
        ipckit.MessageQueue.create(name, max_message_size=-1)
    with pytest.raises(TypeError, match="max_messages"):
        ipckit.MessageQueue.create(name, max_messages="5")
    for open_ in (lambda: ipckit.SharedMemory.open(name), lambda: ipckit.Semaphore.open(name),
                  lambda: ipckit.MessageQueue.open(name), lambda: ipckit.SharedMemory.open(key, backend="sysv"),
                  lambda: ipckit.Semaphore.open(key, backend="sysv")):
        with pytest.raises(ipckit.NotFoundError):
            open_()
    assert not any(sysv_row(t, key) for t in ("msg", "sem", "shm"))


def test_more_bad_arguments_name_the_argument(tmp_path, posix_name) -> None:  # type: ignore[no-untyped-def]
    # "Invalid arguments (wrong type, negative size, ...) raise TypeError / ValueError with a message naming the argument"
    with ipckit.Pipe() as p:
        with pytest.raises(TypeError, match="n"):
            p.reader.read("1")
        with pytest.raises(TypeError, match="timeout"):
            p.send(b"x", timeout="1")
    with pytest.raises(TypeError, match="path"):
        ipckit.Pipe.fifo(1.5, "r", timeout=0.1)
    with pytest.raises(ValueError, match="backlog"):
        ipckit.Socket.listen("tcp://127.0.0.1:0", backlog=-1)
    m = ipckit.SharedMemory.create(posix_name, 64)
    try:
        with pytest.raises(TypeError, match="offset"):
            m.write(b"x", offset="1")
        with pytest.raises(ValueError, match="offset"):
            m.read(1, offset=-1)
    finally:
        m.close()
        m.unlink()
    with ipckit.Socket.listen("unix://" + str(tmp_path / "b.sock")) as srv:
        with ipckit.Socket.connect(srv.address, timeout=5) as c:
            with pytest.raises(ValueError, match="maxfds"):
                c.recv_fds(-1)
            with pytest.raises(TypeError, match="fds"):
                c.send_fds(b"x", "not fds")
    with contextlib.suppress(OSError):
        os.unlink(tmp_path / "b.sock")


# ================================================================ errors table: peers that closed


def test_pipe_peer_closed_is_closed_error() -> None:
    p = ipckit.Pipe()
    p.writer.close()
    with pytest.raises(ipckit.ClosedError):
        p.reader.recv(timeout=5)
    assert p.reader.read(10, timeout=5) == b""  # "read returns b"" at end of stream"
    p.close()
    q = ipckit.Pipe()
    q.reader.close()
    with pytest.raises(ipckit.ClosedError) as info:
        q.writer.write(b"x", timeout=5)
    assert info.value.errno == errno.EPIPE  # "with errno set where the kernel gave one"
    with pytest.raises(ipckit.ClosedError):
        q.writer.send(b"x", timeout=5)
    q.close()


@each_channel(TWO_WAY_STREAMS)
def test_stream_peer_closed_is_closed_error(channel) -> None:  # type: ignore[no-untyped-def]
    channel.sender.close()
    with pytest.raises(ipckit.ClosedError):
        channel.receiver.recv(timeout=5)
    with pytest.raises(ipckit.ClosedError):
        for _ in range(200):  # the first writes may land in the buffer before the reset is seen
            channel.receiver.send(b"x" * 1024, timeout=5)
            time.sleep(0.005)


def test_connection_reset_is_closed_error() -> None:
    # "A peer that reset ... the connection (ECONNRESET) ... is ClosedError"
    with ipckit.Socket.listen("tcp://127.0.0.1:0") as srv:
        port = int(srv.address.rsplit(":", 1)[1])
        for call in (lambda conn: conn.recv(timeout=5), lambda conn: conn.read(10, timeout=5)):
            raw = socket.create_connection(("127.0.0.1", port), timeout=5)
            with srv.accept(timeout=5) as conn:
                raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                raw.close()  # linger 0: an RST, not a FIN
                time.sleep(0.05)
                with pytest.raises(ipckit.ClosedError):
                    call(conn)


# A peer's close wakes a receiver blocked in recv(): check_channel (_check_close_wakes_receiver).


@each_channel(STREAM_CHANNELS)
def test_eof_inside_a_frame_is_closed_error(channel) -> None:  # type: ignore[no-untyped-def]
    # "EOF inside a frame ... is ClosedError"
    channel.sender.write(b"\xff\xff")
    channel.sender.close()
    with pytest.raises(ipckit.ClosedError):
        channel.receiver.recv(timeout=5)


# ================================================================ MessageTooLarge


def _assert_nothing_sent(q) -> None:  # type: ignore[no-untyped-def]
    assert len(q) == 0
    expect_immediate(lambda: q.recv(timeout=0))


@pytest.mark.parametrize("kind", ["mq-posix", "mq-shm"])
def test_message_too_large_posix_like(kind, make_name) -> None:  # type: ignore[no-untyped-def]
    q = NAMED[kind][0](make_name(), max_messages=4, max_message_size=64)
    try:
        q.send(b"x" * 64)
        q.recv(timeout=0)
        with pytest.raises(ipckit.MessageTooLarge) as info:
            q.send(b"x" * 65)
        assert isinstance(info.value, ValueError)
        _assert_nothing_sent(q)
    finally:
        q.close()
        q.unlink()


def test_message_too_large_sysv(sysv_key) -> None:  # type: ignore[no-untyped-def]
    q = ipckit.MessageQueue.create(sysv_key, backend="sysv")
    try:
        with pytest.raises(ipckit.MessageTooLarge):
            q.send(b"x" * (q.max_message_size + 1))
        _assert_nothing_sent(q)
    finally:
        q.close()
        q.unlink()


def test_message_too_large_unix_datagram(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = str(tmp_path / "big.sock")
    try:
        with ipckit.Socket.listen("unix+dgram://" + path) as srv, ipckit.Socket.connect(srv.address) as c:
            with pytest.raises(ipckit.MessageTooLarge):
                c.send(b"x" * (16 * 1024 * 1024))
            expect_timeout(lambda: srv.recv(timeout=WAIT), WAIT)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)


def test_message_too_large_udp() -> None:
    with ipckit.Socket.listen("udp://127.0.0.1:0") as srv, ipckit.Socket.connect(srv.address) as c:
        with pytest.raises(ipckit.MessageTooLarge):
            c.send(b"x" * 70000)
        expect_timeout(lambda: srv.recv(timeout=WAIT), WAIT)


# ================================================================ Pipe


def test_pipe_ends_and_shorthands() -> None:
    with ipckit.Pipe() as p:
        p.send(b"short")
        assert p.reader.recv(timeout=5) == b"short"
        p.writer.send(b"hand")
        assert p.recv(timeout=5) == b"hand"


def test_duplex_both_ways() -> None:
    a, b = ipckit.Pipe.duplex()
    with a, b:
        a.send(b"a->b")
        b.send(b"b->a")
        assert b.recv(timeout=5) == b"a->b"
        assert a.recv(timeout=5) == b"b->a"
        a.write(b"raw")
        assert _read_exactly(b, 3) == b"raw"


def _read_exactly(end, n: int) -> bytes:  # type: ignore[no-untyped-def]
    out = b""
    while len(out) < n:
        chunk = end.read(n - len(out), timeout=5)
        assert chunk, "unexpected end of stream"
        assert type(chunk) is bytes
        out += chunk
    return out


# "carry whole messages of any size (framed)": check_channel (_check_sizes: 0, 1,
# 64 KiB + 1 and 8 MiB, across threads) for every stream kind.


def test_pipe_write_returns_length_and_writes_all() -> None:
    with ipckit.Pipe() as p:
        assert p.writer.write(b"abc") == 3
        assert p.writer.write(bytearray(5)) == 5
        assert _read_exactly(p.reader, 8) == b"abc" + bytes(5)
        big = os.urandom(1024 * 1024 + 3)
        out: list = []
        t = threading.Thread(target=lambda: out.append(_read_exactly(p.reader, len(big))))
        t.start()
        assert p.writer.write(big, timeout=30) == len(big)
        t.join(30)
        assert out == [big]


def test_pipe_read_returns_what_is_there() -> None:
    # "read(n) returns between 1 and n bytes as soon as any are available"
    with ipckit.Pipe() as p:
        p.writer.write(b"abc")
        assert p.reader.read(2, timeout=5) == b"ab"
        assert p.reader.read(100, timeout=5) == b"c"
        expect_immediate(lambda: p.reader.read(10, timeout=0))
        expect_timeout(lambda: p.reader.read(10, timeout=WAIT), WAIT)
        with pytest.raises(ValueError):
            p.reader.read(-1)


def test_pipe_raw_stream_is_unframed() -> None:
    # "the raw byte stream, for peers that are not ipckit"
    with ipckit.Pipe() as p:
        p.writer.write(b"plain")
        assert os.read(p.reader.fileno(), 100) == b"plain"
        os.write(p.writer.fileno(), b"from-os")
        assert _read_exactly(p.reader, 7) == b"from-os"


def test_pipe_write_and_send_time_out_on_full_pipe() -> None:
    with ipckit.Pipe() as p:
        expect_timeout(lambda: p.writer.write(b"x" * (4 * 1024 * 1024), timeout=WAIT), WAIT)
    with ipckit.Pipe() as p:
        expect_timeout(lambda: p.send(b"x" * (4 * 1024 * 1024), timeout=WAIT), WAIT)


def test_ends_are_blocking_fds() -> None:
    # "Ends are blocking file descriptors"
    p = ipckit.Pipe()
    a, b = ipckit.Pipe.duplex()
    with p, a, b:
        ends = [p.reader, p.writer, a, b]
        for end in ends:
            assert os.get_blocking(end.fileno())
        with contextlib.suppress(ipckit.Timeout):
            p.reader.recv(timeout=0)
        with contextlib.suppress(ipckit.Timeout):
            a.recv(timeout=WAIT)
        p.writer.send(b"x", timeout=0.5)
        b.send(b"x", timeout=0)
        for end in ends:
            assert os.get_blocking(end.fileno())


def test_pipe_end_to_subprocess_pass_fds() -> None:
    # "and to a subprocess via pass_fds=[end.fileno()]"
    with ipckit.Pipe() as p:
        fd = p.writer.fileno()
        subprocess.run(["sh", "-c", f"printf from-sh > /dev/fd/{fd}"], pass_fds=[fd], timeout=30, check=True)
        assert _read_exactly(p.reader, 7) == b"from-sh"
    with ipckit.Pipe() as p:
        fd = p.reader.fileno()
        p.writer.write(b"to-head")
        out = subprocess.run(["head", "-c", "7", f"/dev/fd/{fd}"], pass_fds=[fd], timeout=30, check=True, capture_output=True)
        assert out.stdout == b"to-head"


def _child_pipe(writer, end) -> None:  # type: ignore[no-untyped-def]
    writer.send(b"pid=%d" % os.getpid(), timeout=10)
    msg = end.recv(timeout=20)
    end.send(msg.upper(), timeout=10)


@pytest.mark.parametrize("ctx", CONTEXTS)
def test_pipe_ends_to_multiprocessing(ctx) -> None:  # type: ignore[no-untyped-def]
    p = ipckit.Pipe()
    a, b = ipckit.Pipe.duplex()
    with p, a, b:
        proc = multiprocessing.get_context(ctx).Process(target=_child_pipe, args=(p.writer, b))
        proc.start()
        try:
            assert p.reader.recv(timeout=30) == b"pid=%d" % proc.pid
            a.send(np.frombuffer(b"hello", dtype=np.uint8))
            assert a.recv(timeout=30) == b"HELLO"
        finally:
            child_ok(proc)


# ---------------------------------------------------------------- FIFO


def test_fifo_create_makes_it_0600(tmp_path) -> None:  # type: ignore[no-untyped-def]
    for mask in (0o000, 0o277):
        path = str(tmp_path / f"f{mask}")
        with umask(mask):
            w, r = _fifo_pair(path)
        close_all(w, r)
        st = os.stat(path)
        assert stat.S_ISFIFO(st.st_mode)
        assert oct(st.st_mode & 0o777) == oct(0o600)


def test_fifo_existing_used_as_is(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = str(tmp_path / "f")
    os.mkfifo(path, 0o644)
    os.chmod(path, 0o644)
    w, r = _fifo_pair(path)
    with w, r:
        w.send(b"through")
        assert r.recv(timeout=5) == b"through"
    assert oct(os.stat(path).st_mode & 0o777) == oct(0o644)


def test_fifo_on_non_fifo_path_is_value_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "regular"
    path.write_bytes(b"keep")
    for mode in ("r", "w"):
        with pytest.raises(ValueError):
            ipckit.Pipe.fifo(str(path), mode, timeout=1)
    assert path.read_bytes() == b"keep"


def test_fifo_bad_mode_and_missing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = str(tmp_path / "f")
    with pytest.raises(ValueError, match="mode"):
        ipckit.Pipe.fifo(path, "rw", timeout=1)
    assert not os.path.exists(path)
    with pytest.raises(ipckit.NotFoundError):
        ipckit.Pipe.fifo(path, "r", create=False, timeout=1)


@pytest.mark.parametrize("mode", ["r", "w"])
def test_fifo_open_waits_for_the_other_side_up_to_timeout(mode, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = str(tmp_path / "f")
    expect_timeout(lambda: ipckit.Pipe.fifo(path, mode, timeout=WAIT), WAIT)


def test_fifo_end_types(tmp_path) -> None:  # type: ignore[no-untyped-def]
    w, r = _fifo_pair(str(tmp_path / "f"))
    with w, r:
        assert os.get_blocking(w.fileno()) and os.get_blocking(r.fileno())
        assert w.write(b"raw") == 3
        assert _read_exactly(r, 3) == b"raw"


def _child_fifo_writer(path: str) -> None:
    with ipckit.Pipe.fifo(path, "w", timeout=20) as w:
        w.send(b"via fifo from %d" % os.getpid())


@pytest.mark.parametrize("ctx", CONTEXTS)
def test_fifo_cross_process(ctx, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = str(tmp_path / "f")
    proc = multiprocessing.get_context(ctx).Process(target=_child_fifo_writer, args=(path,))
    proc.start()
    try:
        with ipckit.Pipe.fifo(path, "r", timeout=30) as r:
            assert r.recv(timeout=30) == b"via fifo from %d" % proc.pid
    finally:
        child_ok(proc)


# ================================================================ MessageQueue


def test_posix_queue_defaults_are_the_kernels(posix_name) -> None:  # type: ignore[no-untyped-def]
    default = int(open("/proc/sys/fs/mqueue/msg_default").read())
    size = int(open("/proc/sys/fs/mqueue/msgsize_default").read())
    with ipckit.MessageQueue.create(posix_name) as q:
        try:
            assert q.max_messages == default
            assert q.max_message_size == size
            attr = posix_ipc.MessageQueue(posix_name)
            assert (attr.max_messages, attr.max_message_size) == (default, size)
            attr.close()
        finally:
            q.unlink()


def test_posix_queue_limits_are_what_mq_getattr_says(posix_name) -> None:  # type: ignore[no-untyped-def]
    with ipckit.MessageQueue.create(posix_name, max_messages=3, max_message_size=100) as q:
        try:
            other = ipckit.MessageQueue.open(posix_name)
            for x in (q, other):
                assert (x.max_messages, x.max_message_size) == (3, 100)
            other.close()
            observer = posix_ipc.MessageQueue(posix_name)
            assert (observer.max_messages, observer.max_message_size) == (3, 100)
            observer.close()
        finally:
            q.unlink()


def test_sysv_queue_limits(sysv_key) -> None:  # type: ignore[no-untyped-def]
    msgmax = int(open("/proc/sys/kernel/msgmax").read())
    with ipckit.MessageQueue.create(sysv_key, backend="sysv") as q:
        try:
            assert q.max_message_size == msgmax
            assert q.max_messages is None
            assert q.max_bytes == sysv_ipc.MessageQueue(sysv_key).max_size
            assert q.max_bytes == int(open("/proc/sys/kernel/msgmnb").read())
        finally:
            q.unlink()


@pytest.mark.parametrize("kind", ["mq-posix", "mq-sysv", "mq-shm"])
def test_len_counts_waiting_messages(kind, fresh) -> None:  # type: ignore[no-untyped-def]
    name = fresh(kind)
    q = NAMED[kind][0](name)
    try:
        assert len(q) == 0
        for i in range(3):
            q.send(b"m%d" % i, timeout=1)
        assert len(q) == 3
        other = NAMED[kind][1](name)
        assert len(other) == 3
        other.recv(timeout=1)
        assert len(q) == 2
        other.close()
    finally:
        q.close()
        q.unlink()


@pytest.mark.parametrize("kind", ["mq-posix", "mq-sysv", "mq-shm"])
def test_message_fields(kind, fresh) -> None:  # type: ignore[no-untyped-def]
    name = fresh(kind)
    q = NAMED[kind][0](name)
    try:
        q.send(bytearray(b"data"), priority=5, type=7)
        m = q.receive(timeout=1)
        assert isinstance(m, ipckit.Message)
        for field in ("data", "priority", "type"):
            assert hasattr(m, field)
        assert m.data == b"data" and type(m.data) is bytes
        if kind == "mq-posix":
            assert m.priority == 5
        if kind == "mq-sysv":
            assert m.type == 7
    finally:
        q.close()
        q.unlink()


def test_posix_priority_order_and_default(posix_name) -> None:  # type: ignore[no-untyped-def]
    with ipckit.MessageQueue.create(posix_name) as q:
        try:
            q.send(b"low", priority=1)
            q.send(b"zero")
            q.send(b"high", priority=9)
            got = [q.receive(timeout=1) for _ in range(3)]
            assert [(m.data, m.priority) for m in got] == [(b"high", 9), (b"low", 1), (b"zero", 0)]
            for bad in (-1, 32768):
                with pytest.raises(ValueError, match="priority"):
                    q.send(b"x", priority=bad)
            assert len(q) == 0
        finally:
            q.unlink()


def test_sysv_type_selection(sysv_key) -> None:  # type: ignore[no-untyped-def]
    # "0 the first message, >0 the first of that type, <0 the first of the lowest type <= |type|"
    with ipckit.MessageQueue.create(sysv_key, backend="sysv") as q:
        try:
            for data, t in [(b"a3", 3), (b"b1", 1), (b"c2", 2), (b"d1", 1), (b"e5", 5)]:
                q.send(data, type=t)
            m = q.receive(type=2, timeout=0)
            assert (m.data, m.type) == (b"c2", 2)
            m = q.receive(type=-3, timeout=0)
            assert (m.data, m.type) == (b"b1", 1)
            m = q.receive(type=0, timeout=0)
            assert (m.data, m.type) == (b"a3", 3)
            m = q.receive(type=-4, timeout=0)
            assert (m.data, m.type) == (b"d1", 1)
            expect_immediate(lambda: q.receive(type=-4, timeout=0))
            expect_timeout(lambda: q.receive(type=4, timeout=WAIT), WAIT)
            assert q.receive(type=5, timeout=0).data == b"e5"
            assert len(q) == 0
            q.send(b"default")
            assert q.receive(timeout=0).type == 1  # send's default type=1
            for bad in (0, -1):
                with pytest.raises(ValueError, match="type"):
                    q.send(b"x", type=bad)
            assert len(q) == 0
        finally:
            q.unlink()


@pytest.mark.parametrize("kind", ["mq-posix", "mq-sysv", "mq-shm"])
def test_send_on_full_queue_times_out(kind, fresh) -> None:  # type: ignore[no-untyped-def]
    name = fresh(kind)
    if kind == "mq-sysv":
        q = NAMED[kind][0](name)
        msg = b"x" * q.max_message_size
    else:
        q = NAMED[kind][0](name, max_messages=2, max_message_size=64)
        msg = b"x" * 64
    try:
        for _ in range(1000):
            try:
                q.send(msg, timeout=0)
            except ipckit.Timeout:
                break
        else:
            pytest.fail("the queue never filled up")
        count = len(q)
        expect_timeout(lambda: q.send(msg, timeout=WAIT), WAIT)
        assert len(q) == count
        later(0.1, lambda: q.recv(timeout=5))
        q.send(msg, timeout=10)  # waits until there is room
    finally:
        q.close()
        q.unlink()


def test_shm_queue_has_no_kernel_limits(posix_name) -> None:  # type: ignore[no-untyped-def]
    # backend="shm": "no kernel limit on message count or size" (kernel: msg_max 10, msgsize_max 8192)
    q = ipckit.MessageQueue.create(posix_name, max_messages=40, max_message_size=100_000, backend="shm")
    try:
        assert (q.max_messages, q.max_message_size) == (40, 100_000)
        for i in range(40):
            q.send(bytes([i]) * 100_000, timeout=0)
        assert len(q) == 40
        assert all(q.recv(timeout=0) == bytes([i]) * 100_000 for i in range(40))
    finally:
        q.close()
        q.unlink()


def test_posix_queue_interoperates_with_posix_ipc(posix_name) -> None:  # type: ignore[no-untyped-def]
    # "a POSIX object with a C program using the same name": the message is the data, unwrapped
    with ipckit.MessageQueue.create(posix_name) as q:
        try:
            other = posix_ipc.MessageQueue(posix_name)
            q.send(b"to-c", priority=4)
            assert other.receive(1) == (b"to-c", 4)
            other.send(b"from-c", 1, 6)
            m = q.receive(timeout=1)
            assert (m.data, m.priority) == (b"from-c", 6)
            other.close()
        finally:
            q.unlink()


def test_sysv_queue_interoperates_with_sysv_ipc(sysv_key) -> None:  # type: ignore[no-untyped-def]
    with ipckit.MessageQueue.create(sysv_key, backend="sysv") as q:
        try:
            other = sysv_ipc.MessageQueue(sysv_key)
            q.send(b"to-c", type=4)
            assert other.receive(block=False) == (b"to-c", 4)
            other.send(b"from-c", type=9)
            m = q.receive(timeout=1)
            assert (m.data, m.type) == (b"from-c", 9)
        finally:
            q.unlink()


def _child_mq(name, backend, extra) -> None:  # type: ignore[no-untyped-def]
    with ipckit.MessageQueue.open(name, backend=backend) as q:
        q.send(b"child %d" % os.getpid(), timeout=10, **extra)


@pytest.mark.parametrize("ctx", CONTEXTS)
@pytest.mark.parametrize("kind", ["mq-posix", "mq-sysv", "mq-shm"])
def test_message_queue_cross_process(kind, ctx, fresh) -> None:  # type: ignore[no-untyped-def]
    name = fresh(kind)
    q = NAMED[kind][0](name)
    try:
        extra = {"mq-posix": {"priority": 3}, "mq-sysv": {"type": 5}, "mq-shm": {}}[kind]
        proc = multiprocessing.get_context(ctx).Process(target=_child_mq, args=(name, q.backend, extra))
        proc.start()
        try:
            m = q.receive(timeout=30)
            assert m.data == b"child %d" % proc.pid
            if kind == "mq-posix":
                assert m.priority == 3
            if kind == "mq-sysv":
                assert m.type == 5
        finally:
            child_ok(proc)
    finally:
        q.close()
        q.unlink()


# ================================================================ SharedMemory


@pytest.mark.parametrize("kind", ["shm-posix", "shm-sysv"])
def test_shared_memory_basics(kind, fresh) -> None:  # type: ignore[no-untyped-def]
    name = fresh(kind)
    backend = kind.split("-")[1]
    m = ipckit.SharedMemory.create(name, 1000, backend=backend)
    try:
        assert m.size == 1000
        assert isinstance(m.buf, memoryview) and not m.buf.readonly
        assert m.buf.nbytes == 1000
        assert m.read() == bytes(1000)  # read(n=-1, offset=0): the whole segment
        assert m.write(b"hello", offset=10) == 5
        assert m.read(5, offset=10) == b"hello" and type(m.read(5, offset=10)) is bytes
        assert m.write(np.arange(4, dtype=np.uint8)) == 4
        assert bytes(m.buf[:4]) == bytes(range(4))
        assert m.write(memoryview(np.arange(2, dtype=np.int32)), offset=100) == 8
        m.buf[500:503] = b"buf"
        arr = np.frombuffer(m.buf, dtype=np.uint8)
        arr[600] = 42
        del arr
        other = ipckit.SharedMemory.open(name, backend=backend)
        assert other.size == 1000
        assert other.read(3, offset=500) == b"buf"
        assert other.read(1, offset=600) == b"\x2a"
        other.close()
    finally:
        m.close()
        m.unlink()


@pytest.mark.parametrize("kind", ["shm-posix", "shm-sysv"])
def test_shared_memory_write_past_end_writes_nothing(kind, fresh) -> None:  # type: ignore[no-untyped-def]
    name = fresh(kind)
    m = ipckit.SharedMemory.create(name, 64, backend=kind.split("-")[1])
    try:
        with pytest.raises(ValueError):
            m.write(b"abcd", offset=62)
        with pytest.raises(ValueError):
            m.write(b"a", offset=64)
        with pytest.raises(ValueError):
            m.write(b"a" * 65)
        with pytest.raises(ValueError, match="offset"):
            m.write(b"a", offset=-1)
        assert m.read() == bytes(64)
        assert m.write(b"ab", offset=62) == 2  # exactly up to the end is fine
        assert m.read(offset=60) == b"\0\0ab"  # n=-1: to the end
    finally:
        m.close()
        m.unlink()


def test_shared_memory_close_detaches(make_name, make_key) -> None:  # type: ignore[no-untyped-def]
    # "m.close() detaches"
    key = make_key()
    m = ipckit.SharedMemory.create(key, 4096, backend="sysv")
    try:
        assert int(sysv_row("shm", key)["nattch"]) == 1
        m.close()
        assert int(sysv_row("shm", key)["nattch"]) == 0
    finally:
        m.unlink()
    name = make_name()
    m = ipckit.SharedMemory.create(name, 4096)
    try:
        path = "/dev/shm/" + name[1:]
        with open("/proc/self/maps") as f:
            assert path in f.read()
        m.close()
        with open("/proc/self/maps") as f:
            assert path not in f.read()
    finally:
        m.unlink()


def test_shared_memory_posix_is_the_plain_segment(posix_name) -> None:  # type: ignore[no-untyped-def]
    # a POSIX program mapping the same name sees the same bytes, from offset 0, and the size given
    with ipckit.SharedMemory.create(posix_name, 5000) as m:
        try:
            m.write(b"start")
            m.write(b"end", offset=4997)
            path = "/dev/shm/" + posix_name[1:]
            assert os.stat(path).st_size == 5000
            with open(path, "rb") as f:
                raw = f.read()
            assert raw[:5] == b"start" and raw[-3:] == b"end"
            with open(path, "r+b") as f:
                f.seek(100)
                f.write(b"outside")
            assert m.read(7, offset=100) == b"outside"
        finally:
            m.unlink()


def test_shared_memory_sysv_interoperates_with_sysv_ipc(sysv_key) -> None:  # type: ignore[no-untyped-def]
    with ipckit.SharedMemory.create(sysv_key, 5000, backend="sysv") as m:
        try:
            row = sysv_row("shm", sysv_key)
            assert row is not None and int(row["size"]) == 5000
            m.write(b"start")
            other = sysv_ipc.SharedMemory(sysv_key)
            assert other.read(5) == b"start"
            other.write(b"outside", 100)
            other.detach()
            assert m.read(7, offset=100) == b"outside"
        finally:
            m.unlink()


# ================================================================ Semaphore


@pytest.mark.parametrize("kind", ["sem-posix", "sem-sysv"])
def test_semaphore_basics(kind, fresh) -> None:  # type: ignore[no-untyped-def]
    name = fresh(kind)
    create, open_, _ = NAMED[kind]
    s = create(name)
    try:
        assert s.value == 1  # value=1 by default
        assert s.acquire() is True
        assert s.value == 0
        assert s.acquire(blocking=False) is False
        start = time.monotonic()
        assert s.acquire(timeout=0) is False  # returns False, as in threading
        assert time.monotonic() - start < 1
        s.release()
        s.release(3)
        assert s.value == 4
        other = open_(name)
        assert other.value == 4
        other.close()
        for bad in (0, -1):
            with pytest.raises(ValueError):
                s.release(bad)
        assert s.value == 4
    finally:
        s.close()
        s.unlink()


@pytest.mark.parametrize("kind", ["sem-posix", "sem-sysv"])
def test_semaphore_acquire_timeout_returns_false_never_early(kind, fresh) -> None:  # type: ignore[no-untyped-def]
    name = fresh(kind)
    s = NAMED[kind][0](name, value=0)
    try:
        start = time.monotonic()
        assert s.acquire(timeout=WAIT) is False
        elapsed = time.monotonic() - start
        assert WAIT <= elapsed < WAIT + 5
        later(0.1, s.release)
        assert s.acquire(timeout=10) is True
        later(0.1, s.release)
        assert s.acquire() is True  # timeout=None blocks until done
    finally:
        s.close()
        s.unlink()


def test_sysv_semaphore_is_a_set_of_one(sysv_key) -> None:  # type: ignore[no-untyped-def]
    # "create(key, value) makes a set of one semaphore and the object is semaphore number 0"
    s = ipckit.Semaphore.create(sysv_key, 3, backend="sysv")
    try:
        row = sysv_row("sem", sysv_key)
        assert row is not None and int(row["nsems"]) == 1
        other = sysv_ipc.Semaphore(sysv_key)
        assert other.value == 3
        other.release()
        assert s.value == 4
        s.acquire()
        assert other.value == 3
    finally:
        s.close()
        s.unlink()


def test_posix_semaphore_interoperates_with_posix_ipc(posix_name) -> None:  # type: ignore[no-untyped-def]
    s = ipckit.Semaphore.create(posix_name, 2)
    try:
        other = posix_ipc.Semaphore(posix_name)
        assert other.value == 2
        other.release()
        assert s.value == 3
        assert s.acquire(timeout=0)
        assert other.value == 2
        other.close()
    finally:
        s.close()
        s.unlink()


def _child_shm_sem(shm_name, sem_name, backend) -> None:  # type: ignore[no-untyped-def]
    m = ipckit.SharedMemory.open(shm_name, backend=backend)
    s = ipckit.Semaphore.open(sem_name, backend=backend)
    try:
        time.sleep(0.1)
        m.write(b"child %d" % os.getpid())
        s.release()
    finally:
        s.close()
        m.close()


@pytest.mark.parametrize("ctx", CONTEXTS)
@pytest.mark.parametrize("backend", ["posix", "sysv"])
def test_shared_memory_and_semaphore_cross_process(backend, ctx, make_name, make_key) -> None:  # type: ignore[no-untyped-def]
    fresh_ = make_name if backend == "posix" else make_key
    shm_name, sem_name = fresh_(), fresh_()
    m = ipckit.SharedMemory.create(shm_name, 256, backend=backend)
    s = ipckit.Semaphore.create(sem_name, 0, backend=backend)
    try:
        proc = multiprocessing.get_context(ctx).Process(target=_child_shm_sem, args=(shm_name, sem_name, backend))
        proc.start()
        try:
            assert s.acquire(timeout=30) is True
            assert m.read(16).rstrip(b"\0") == b"child %d" % proc.pid
        finally:
            child_ok(proc)
    finally:
        for o in (m, s):
            o.close()
            o.unlink()


# ================================================================ Signal


def test_signal_send_accepts_int_enum_and_names() -> None:
    sigs = [(int(signal.SIGUSR1), signal.SIGUSR1), (signal.SIGUSR2, signal.SIGUSR2),
            ("SIGUSR1", signal.SIGUSR1), ("SIGRTMIN+3", signal.SIGRTMIN + 3)]
    with ipckit.Signal.catch(signal.SIGUSR1, signal.SIGUSR2, signal.SIGRTMIN + 3) as s:
        for given, expected in sigs:
            ipckit.Signal.send(os.getpid(), given)
            info = s.wait(timeout=5)
            assert isinstance(info, ipckit.SignalInfo)
            assert info.signo == expected


def test_signal_info_fields_plain_kill_and_sigqueue() -> None:
    with ipckit.Signal.catch(signal.SIGUSR1) as s:
        ipckit.Signal.send(os.getpid(), signal.SIGUSR1)
        info = s.wait(timeout=5)
        assert (info.signo, info.code, info.pid, info.uid, info.value) == (signal.SIGUSR1, SI_USER, os.getpid(), os.getuid(), None)
        ipckit.Signal.send(os.getpid(), signal.SIGUSR1, value=-42)
        info = s.wait(timeout=5)
        assert (info.signo, info.code, info.pid, info.uid, info.value) == (signal.SIGUSR1, SI_QUEUE, os.getpid(), os.getuid(), -42)
        os.kill(os.getpid(), signal.SIGUSR1)  # a plain kill from outside ipckit
        assert s.wait(timeout=5).value is None


def test_realtime_signals_queue_in_order() -> None:
    sig = signal.SIGRTMIN + 1
    with ipckit.Signal.catch(sig) as s:
        for i in range(5):
            ipckit.Signal.send(os.getpid(), sig, value=i)
        assert [s.wait(timeout=5).value for _ in range(5)] == list(range(5))
        expect_immediate(lambda: s.wait(timeout=0))


def test_signal_wait_timeouts() -> None:
    with ipckit.Signal.catch(signal.SIGUSR2) as s:
        expect_immediate(lambda: s.wait(timeout=0))
        expect_timeout(lambda: s.wait(timeout=WAIT), WAIT)
        later(0.1, os.kill, os.getpid(), signal.SIGUSR2)
        assert s.wait(timeout=None).signo == signal.SIGUSR2


def test_signal_catch_fileno_readable_while_a_signal_waits() -> None:
    with ipckit.Signal.catch(signal.SIGUSR1) as s, selectors.DefaultSelector() as sel:
        sel.register(s, selectors.EVENT_READ)
        assert sel.select(timeout=0) == []
        ipckit.Signal.send(os.getpid(), "SIGUSR1")
        assert sel.select(timeout=5)
        s.wait(timeout=0)
        assert sel.select(timeout=0) == []


def test_signal_catch_closed_after_block() -> None:
    with ipckit.Signal.catch(signal.SIGUSR1) as s:
        pass
    s.close()
    s.close()
    with pytest.raises(ipckit.ClosedError):
        s.wait(timeout=0)
    with pytest.raises(ipckit.ClosedError):
        s.fileno()


def test_signal_catch_restores_dispositions_and_mask() -> None:
    # "On exit the previous dispositions and mask come back"
    rt = signal.SIGRTMIN + 4

    def handler(signum, frame) -> None:  # type: ignore[no-untyped-def]
        pass

    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGUSR1, signal.SIGUSR2, rt)}
    mask0 = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    try:
        signal.signal(signal.SIGUSR1, handler)
        signal.signal(signal.SIGUSR2, signal.SIG_IGN)
        signal.signal(rt, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGWINCH])  # a non-empty mask to get back
        mask_before = signal.pthread_sigmask(signal.SIG_BLOCK, [])
        for raise_inside in (False, True):
            with contextlib.suppress(RuntimeError):
                with ipckit.Signal.catch(signal.SIGUSR1, signal.SIGUSR2, rt) as s:
                    # an ignored signal is still collected during the block
                    for sig in (signal.SIGUSR1, signal.SIGUSR2, rt):
                        os.kill(os.getpid(), sig)
                    assert sorted(s.wait(timeout=5).signo for _ in range(3)) == sorted([signal.SIGUSR1, signal.SIGUSR2, rt])
                    if raise_inside:
                        raise RuntimeError
            assert signal.getsignal(signal.SIGUSR1) is handler
            assert signal.getsignal(signal.SIGUSR2) == signal.SIG_IGN
            assert signal.getsignal(rt) == signal.SIG_DFL
            assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == mask_before
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask0)
        for sig, h in saved.items():
            signal.signal(sig, h if h is not None else signal.SIG_DFL)


def test_signal_handle_ignore_default_return_previous() -> None:
    sig = signal.SIGUSR2
    saved = signal.getsignal(sig)
    calls: list = []

    def fn(signum, frame) -> None:  # type: ignore[no-untyped-def]
        calls.append((signum, frame))

    try:
        signal.signal(sig, signal.SIG_DFL)
        assert ipckit.Signal.handle(sig, fn) == signal.SIG_DFL
        os.kill(os.getpid(), sig)
        deadline = time.monotonic() + 5
        while not calls and time.monotonic() < deadline:
            time.sleep(0.005)
        assert calls and calls[0][0] == sig
        assert calls[0][1] is None or isinstance(calls[0][1], types.FrameType)
        assert ipckit.Signal.ignore(sig) is fn
        os.kill(os.getpid(), sig)  # ignored: we are still here
        time.sleep(0.02)
        assert len(calls) == 1
        assert ipckit.Signal.default(sig) == signal.SIG_IGN
        assert ipckit.Signal.handle(sig, fn) == signal.SIG_DFL
        assert ipckit.Signal.default(sig) is fn
        with pytest.raises(TypeError):
            ipckit.Signal.handle(sig, "not callable")
    finally:
        signal.signal(sig, saved if saved is not None else signal.SIG_DFL)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSTOP])
def test_uncatchable_signals_are_value_error(sig) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError):
        ipckit.Signal.handle(sig, lambda *a: None)
    with pytest.raises(ValueError):
        ipckit.Signal.ignore(sig)
    with pytest.raises(ValueError):
        ipckit.Signal.default(sig)
    with pytest.raises(ValueError):
        with ipckit.Signal.catch(sig):
            pass


def test_signal_send_bad_arguments() -> None:
    pid = os.getpid()
    for bad in ("SIGNOPE", "SIGRTMIN+999", -1, 10_000):
        with pytest.raises(ValueError):
            ipckit.Signal.send(pid, bad)
    with pytest.raises(TypeError):
        ipckit.Signal.send(pid, 1.5)
    with pytest.raises(TypeError, match="value"):
        ipckit.Signal.send(pid, "SIGUSR1", value="x")
    with pytest.raises(TypeError, match="pid"):
        ipckit.Signal.send("1", "SIGUSR1")


@pytest.mark.parametrize("value", [None, 5])
def test_signal_to_missing_pid_is_esrch(value) -> None:  # type: ignore[no-untyped-def]
    pid = dead_pid()
    with pytest.raises(ipckit.IPCError) as info:
        ipckit.Signal.send(pid, "SIGUSR1", value=value)
    assert isinstance(info.value, OSError)
    assert info.value.errno == errno.ESRCH


def _child_signal(parent: int) -> None:
    ipckit.Signal.send(parent, "SIGUSR1", value=77)


def test_signal_from_another_process() -> None:
    with ipckit.Signal.catch(signal.SIGUSR1) as s:
        proc = multiprocessing.get_context("fork").Process(target=_child_signal, args=(os.getpid(),))
        proc.start()
        info = s.wait(timeout=30)
        child_ok(proc)
    assert (info.signo, info.pid, info.uid, info.value, info.code) == (signal.SIGUSR1, proc.pid, os.getuid(), 77, SI_QUEUE)


C_SIGWAIT = r"""
#include <signal.h>
#include <stdio.h>
#include <time.h>
int main(void) {
    sigset_t set; siginfo_t si; struct timespec ts = {20, 0};
    sigemptyset(&set); sigaddset(&set, SIGRTMIN + 2);
    sigprocmask(SIG_BLOCK, &set, NULL);
    printf("ready\n"); fflush(stdout);
    if (sigtimedwait(&set, &si, &ts) < 0) { perror("sigtimedwait"); return 1; }
    printf("%d %d %d %d\n", si.si_signo - SIGRTMIN, si.si_code, si.si_value.sival_int, (int)si.si_pid);
    return 0;
}
"""


def test_sigqueue_payload_readable_by_c(cc) -> None:  # type: ignore[no-untyped-def]
    # "readable by C's si_value.sival_int"
    exe = cc(C_SIGWAIT, "contract_sigwait")
    proc = subprocess.Popen([exe], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "ready\n"
        ipckit.Signal.send(proc.pid, "SIGRTMIN+2", value=123456)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    assert out.split() == ["2", str(SI_QUEUE), "123456", str(os.getpid())]


THREADED_CATCH = r"""
import os, signal, subprocess, sys, threading
import numpy
import ipckit

stop = threading.Event()
threads = [threading.Thread(target=stop.wait) for _ in range(4)]
for t in threads:
    t.start()
numpy.ones((300, 300)) @ numpy.ones((300, 300))  # starts BLAS threads, if any
rt = signal.SIGRTMIN + 1


def masks():
    out = {}
    for tid in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{tid}/status") as f:
            out[tid] = [line for line in f if line.startswith("SigBlk:")][0]
    return out


masks_before = masks()
mask_before = signal.pthread_sigmask(signal.SIG_BLOCK, [])
with ipckit.Signal.catch(signal.SIGUSR1, rt) as s:
    code = "import os, signal\n" + "".join(
        f"os.kill({os.getpid()}, {sig})\n" for sig in [rt, rt, rt, signal.SIGUSR1])
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)
    got = sorted(s.wait(timeout=20).signo for _ in range(4))
assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == mask_before
masks_after = masks()
common = set(masks_before) & set(masks_after)
assert {t: masks_after[t] for t in common} == {t: masks_before[t] for t in common}, (masks_before, masks_after)
stop.set()
for t in threads:
    t.join()
assert got == sorted([rt, rt, rt, signal.SIGUSR1]), got
print("ok")
"""


def test_signal_catch_in_a_threaded_process(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # "also in a process that has other threads ... none is delivered elsewhere or lost"
    script = tmp_path / "threaded.py"
    script.write_text(THREADED_CATCH)
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


# ================================================================ Socket


def test_tcp_address_port_zero_is_resolved() -> None:
    with ipckit.Socket.listen("tcp://127.0.0.1:0") as srv:
        m = re.fullmatch(r"tcp://127\.0\.0\.1:(\d+)", srv.address)
        assert m and int(m.group(1)) > 0
        with socket.create_connection(("127.0.0.1", int(m.group(1))), timeout=5):
            srv.accept(timeout=5).close()


def test_tcp6_address() -> None:
    try:
        probe = socket.socket(socket.AF_INET6)
        probe.bind(("::1", 0))
        probe.close()
    except OSError:
        pytest.skip("no ::1 here")
    with ipckit.Socket.listen("tcp://[::1]:0") as srv:
        assert re.fullmatch(r"tcp://\[::1\]:[1-9]\d*", srv.address)
        with ipckit.Socket.connect(srv.address, timeout=5) as c, srv.accept(timeout=5) as s:
            c.send(b"six")
            assert s.recv(timeout=5) == b"six"


def test_udp_address_and_one_datagram_per_recv() -> None:
    with ipckit.Socket.listen("udp://127.0.0.1:0") as srv:
        m = re.fullmatch(r"udp://127\.0\.0\.1:(\d+)", srv.address)
        assert m and int(m.group(1)) > 0
        raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            raw.sendto(b"one", ("127.0.0.1", int(m.group(1))))
            raw.sendto(b"two", ("127.0.0.1", int(m.group(1))))
            assert srv.recv(timeout=5) == b"one"  # not framed: exactly the datagram
            assert srv.recv(timeout=5) == b"two"
        finally:
            raw.close()


def test_unix_addresses_are_the_url_as_given(tmp_path, make_name) -> None:  # type: ignore[no-untyped-def]
    urls = ["unix://" + str(tmp_path / "a.sock"), "unix://@" + make_name()[1:], "unix+dgram://" + str(tmp_path / "b.sock")]
    for url in urls:
        with ipckit.Socket.listen(url) as srv:
            assert srv.address == url
    for p in ("a.sock", "b.sock"):
        with contextlib.suppress(OSError):
            os.unlink(tmp_path / p)


@pytest.mark.parametrize("bad", ["", "tcp://127.0.0.1", "tcp://127.0.0.1:70000", "tcp://127.0.0.1:-1",
                                 "ftp://127.0.0.1:21", "unix://", "127.0.0.1:80", "udp://:x"])
def test_bad_address_is_value_error(bad) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="address"):
        ipckit.Socket.listen(bad)
    with pytest.raises(ValueError, match="address"):
        ipckit.Socket.connect(bad, timeout=1)


def test_bad_address_type_is_type_error() -> None:
    for bad in (80, b"tcp://127.0.0.1:0", None):
        with pytest.raises(TypeError, match="address"):
            ipckit.Socket.listen(bad)


def test_accept_timeout() -> None:
    with ipckit.Socket.listen("tcp://127.0.0.1:0") as srv:
        expect_immediate(lambda: srv.accept(timeout=0))
        expect_timeout(lambda: srv.accept(timeout=WAIT), WAIT)
        conns: list = []
        later(0.1, lambda: conns.append(ipckit.Socket.connect(srv.address, timeout=5)))
        srv.accept(timeout=None).close()
        close_all(*conns)


def test_connect_timeout() -> None:
    # a listener whose accept queue is full drops SYNs, so connect waits: it must stop at its timeout
    conns: list = []
    with ipckit.Socket.listen("tcp://127.0.0.1:0", backlog=1) as srv:
        try:
            for _ in range(8):
                start = time.monotonic()
                try:
                    conns.append(ipckit.Socket.connect(srv.address, timeout=0.3))
                except ipckit.Timeout:
                    assert time.monotonic() - start >= 0.3
                    break
            else:
                pytest.fail("connect never waited")
        finally:
            close_all(*conns)


def test_socket_raw_stream_with_a_plain_peer() -> None:
    # "write(data) / read(n, *, timeout=None) are the raw stream"
    with ipckit.Socket.listen("tcp://127.0.0.1:0") as srv:
        port = int(srv.address.rsplit(":", 1)[1])
        raw = socket.create_connection(("127.0.0.1", port), timeout=5)
        with srv.accept(timeout=5) as conn:
            raw.sendall(b"hello")
            assert _read_exactly(conn, 5) == b"hello"
            conn.write(b"yo")
            got = b""
            while len(got) < 2:
                got += raw.recv(2 - len(got))
            assert got == b"yo"
            expect_immediate(lambda: conn.read(1, timeout=0))
        raw.close()


def test_datagram_connect_sets_the_peer(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = str(tmp_path / "d.sock")
    srv = ipckit.Socket.listen("unix+dgram://" + path)
    try:
        with ipckit.Socket.connect("unix+dgram://" + path) as c:
            c.send(b"d1")
            c.send(bytearray(b"d2"))
            assert [srv.recv(timeout=5), srv.recv(timeout=5)] == [b"d1", b"d2"]
            raw = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            raw.sendto(b"plain", path)
            raw.close()
            assert srv.recv(timeout=5) == b"plain"
    finally:
        srv.close()
        with contextlib.suppress(OSError):
            os.unlink(path)


@pytest.fixture
def unix_pair(tmp_path):  # type: ignore[no-untyped-def]
    path = str(tmp_path / "u.sock")
    c, s, srv = _stream_sockets("unix://" + path)
    yield c, s, path
    close_all(c, s, srv)
    with contextlib.suppress(OSError):
        os.unlink(path)


def test_send_fds_between_ipckit_sockets(unix_pair) -> None:  # type: ignore[no-untyped-def]
    c, s, _ = unix_pair
    r, w = os.pipe()
    try:
        c.send_fds(bytearray(b"two fds"), [r, w])
        data, fds = s.recv_fds(4)
        assert type(data) is bytes and data == b"two fds"
        assert isinstance(fds, list) and len(fds) == 2
        os.write(fds[1], b"!")
        assert os.read(r, 1) == b"!"
        for fd in fds:
            os.close(fd)
    finally:
        os.close(r)
        os.close(w)


def test_send_fds_interoperates_with_scm_rights(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # raw bytes (not framed) with SCM_RIGHTS descriptors, so a non-ipckit peer interoperates
    path = str(tmp_path / "r.sock")
    srv = ipckit.Socket.listen("unix://" + path)
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    r, w = os.pipe()
    try:
        raw.connect(path)
        with srv.accept(timeout=5) as conn:
            socket.send_fds(raw, [b"from-raw"], [r])
            data, fds = conn.recv_fds(2)
            assert (data, len(fds)) == (b"from-raw", 1)
            os.write(w, b"z")
            assert os.read(fds[0], 1) == b"z"
            os.close(fds[0])
            conn.send_fds(b"from-ipckit", [w])
            msg, fds2, _, _ = socket.recv_fds(raw, 100, 2)
            assert msg == b"from-ipckit" and len(fds2) == 1
            os.write(fds2[0], b"q")
            assert os.read(r, 1) == b"q"
            os.close(fds2[0])
    finally:
        raw.close()
        srv.close()
        os.close(r)
        os.close(w)
        with contextlib.suppress(OSError):
            os.unlink(path)


def test_peer_credentials_same_process(unix_pair) -> None:  # type: ignore[no-untyped-def]
    c, s, _ = unix_pair
    for end in (c, s):
        creds = end.peer_credentials()
        assert isinstance(creds, tuple)
        assert tuple(creds) == (os.getpid(), os.getuid(), os.getgid())


def _child_socket(address: str) -> None:
    with ipckit.Socket.connect(address, timeout=20) as c:
        c.send(b"hi from %d" % os.getpid())
        assert c.recv(timeout=20) == b"ack"


@pytest.mark.parametrize("ctx,scheme", [("fork", "unix"), ("spawn", "tcp"), ("fork", "abstract")])
def test_socket_cross_process(ctx, scheme, tmp_path, make_name) -> None:  # type: ignore[no-untyped-def]
    url = {"unix": "unix://" + str(tmp_path / "x.sock"), "tcp": "tcp://127.0.0.1:0",
           "abstract": "unix://@" + make_name()[1:]}[scheme]
    with ipckit.Socket.listen(url) as srv:
        proc = multiprocessing.get_context(ctx).Process(target=_child_socket, args=(srv.address,))
        proc.start()
        try:
            with srv.accept(timeout=30) as conn:
                assert conn.recv(timeout=30) == b"hi from %d" % proc.pid
                if scheme != "tcp":
                    assert conn.peer_credentials()[0] == proc.pid
                conn.send(b"ack")
        finally:
            child_ok(proc)
    with contextlib.suppress(OSError):
        os.unlink(tmp_path / "x.sock")
