"""The error tree and the errno -> class table, both directions; one answer for a removed
SysV object on every class; and hostile arguments to every public call of MessageQueue,
SharedMemory and Semaphore raise only the documented exceptions (hypothesis)."""

import contextlib
import errno
import math
import os
import threading
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

import ipckit
from ipckit._errors import error_class, error_from_errno, translate_oserror
from ipckit.testing import unique_key, unique_name

HIERARCHY = [
    (ipckit.Timeout, TimeoutError),
    (ipckit.ExistsError, FileExistsError),
    (ipckit.NotFoundError, FileNotFoundError),
    (ipckit.MessageTooLarge, ValueError),
]


def test_every_error_is_an_ipcerror_and_an_oserror():
    assert issubclass(ipckit.IPCError, OSError)
    for cls in (ipckit.Timeout, ipckit.ExistsError, ipckit.NotFoundError, ipckit.ClosedError, ipckit.MessageTooLarge):
        assert issubclass(cls, ipckit.IPCError)


@pytest.mark.parametrize("cls, builtin", HIERARCHY)
def test_errors_subclass_the_matching_builtin(cls, builtin):
    assert issubclass(cls, builtin)
    with pytest.raises(builtin):
        raise cls(errno.EIO, "x")


ERRNO_TABLE = [
    (errno.ETIMEDOUT, ipckit.Timeout),
    (errno.EAGAIN, ipckit.Timeout),
    (errno.EEXIST, ipckit.ExistsError),
    (errno.ENOENT, ipckit.NotFoundError),
    (errno.EPIPE, ipckit.ClosedError),
    (errno.ECONNRESET, ipckit.ClosedError),
    (errno.EMSGSIZE, ipckit.MessageTooLarge),
    (errno.EACCES, ipckit.IPCError),
    (errno.ESRCH, ipckit.IPCError),
]


@pytest.mark.parametrize("err, cls", ERRNO_TABLE)
def test_errno_maps_to_class(err, cls):
    assert error_class(err) is cls
    exc = error_from_errno(err, "mq_send")
    assert type(exc) is cls
    assert exc.errno == err
    assert "mq_send" in str(exc)


def test_errno_table_reverse_direction_has_one_class_per_errno():
    # Each specific class is reachable from at least one errno.
    reachable = {error_class(e) for e, _ in ERRNO_TABLE}
    assert {ipckit.Timeout, ipckit.ExistsError, ipckit.NotFoundError, ipckit.ClosedError, ipckit.MessageTooLarge} <= reachable


def test_translate_oserror_chains_the_cause():
    with pytest.raises(ipckit.NotFoundError) as info:
        with translate_oserror("open thing"):
            raise FileNotFoundError(errno.ENOENT, "No such file")
    assert isinstance(info.value.__cause__, FileNotFoundError)
    assert info.value.errno == errno.ENOENT


def test_translate_oserror_passes_non_os_errors_and_ipckit_errors():
    with pytest.raises(TypeError):
        with translate_oserror():
            raise TypeError("bad")
    original = ipckit.Timeout(errno.ETIMEDOUT, "t")
    with pytest.raises(ipckit.Timeout) as info:
        with translate_oserror():
            raise original
    assert info.value is original


def test_translate_oserror_maps_posix_ipc_errors():
    posix_ipc = pytest.importorskip("posix_ipc")
    with pytest.raises(ipckit.NotFoundError):
        with translate_oserror("open"):
            posix_ipc.SharedMemory("/ipckit-surely-does-not-exist-1234567")
    with pytest.raises(ipckit.Timeout):
        with translate_oserror("acquire"):
            raise posix_ipc.BusyError("Semaphore is busy")


# ---------------------------------------------------------------- a removed SysV object: one answer everywhere
REMOVED_QUEUE_CALLS = {
    "send": lambda q: q.send(b"x"),
    "send(timeout=0)": lambda q: q.send(b"x", timeout=0),
    "send(timeout)": lambda q: q.send(b"x", timeout=0.05),
    "recv(timeout=0)": lambda q: q.recv(timeout=0),
    "recv(timeout)": lambda q: q.recv(timeout=0.05),
    "receive(type)": lambda q: q.receive(type=3, timeout=0),
    "receive(max_size)": lambda q: q.receive(max_size=2, truncate=True, timeout=0),
    "len": len,
    "max_bytes": lambda q: q.max_bytes,
    "max_message_size": lambda q: q.max_message_size,
    "stat": lambda q: q.stat(),
    "set": lambda q: q.set(mode=0o600),
}
REMOVED_SEMAPHORE_CALLS = {
    "acquire": lambda s: s.acquire(),
    "acquire(timeout=0)": lambda s: s.acquire(timeout=0),
    "acquire(timeout)": lambda s: s.acquire(timeout=0.05),
    "release": lambda s: s.release(),
    "value": lambda s: s.value,
    "values": lambda s: s.values,
    "stat": lambda s: s.stat(),
    "op": lambda s: s.op([(0, 1)], timeout=0),
    "set_value": lambda s: s.set_value(1),
    "set_values": lambda s: s.set_values([1]),
    "set": lambda s: s.set(mode=0o600),
    "ncount": lambda s: s.ncount,
    "zcount": lambda s: s.zcount,
    "last_pid": lambda s: s.last_pid,
}


REMOVED_CALLS = [("queue", name, call) for name, call in REMOVED_QUEUE_CALLS.items()] + [
    ("semaphore", name, call) for name, call in REMOVED_SEMAPHORE_CALLS.items()
]
SYSV_CLASSES = {"queue": ipckit.MessageQueue, "semaphore": ipckit.Semaphore}


@pytest.mark.parametrize("kind, name, call", REMOVED_CALLS, ids=[f"{kind}.{name}" for kind, name, _ in REMOVED_CALLS])
def test_every_call_on_a_removed_sysv_object_is_closed_error(kind, name, call):
    cls = SYSV_CLASSES[kind]
    obj = cls.create(unique_key(), backend="sysv")
    cls.open(obj.name, backend="sysv").unlink()
    with pytest.raises(ipckit.ClosedError, match="removed") as info:
        call(obj)
    assert info.value.errno in (errno.EIDRM, errno.EINVAL)
    with pytest.raises(ipckit.NotFoundError):
        obj.unlink()
    obj.close()


def test_a_removed_sysv_segment_stays_mapped_until_detached():
    """IPC_RMID on a segment only marks it: it lives while attached, so calls go on
    working; removing it again, or attaching it by id, is NotFoundError."""
    m = ipckit.SharedMemory.create(unique_key(), 64, backend="sysv")
    try:
        ipckit.SharedMemory.open(m.name, backend="sysv").unlink()
        m.write(b"still here")
        assert m.read(10) == b"still here" and m.stat().removed
        with pytest.raises(ipckit.NotFoundError):
            m.unlink()
    finally:
        m.close()
    with pytest.raises(ipckit.NotFoundError):
        ipckit.SharedMemory.open(id=m.id, backend="sysv")


def test_removal_wakes_every_kind_of_sysv_waiter_with_closed_error():
    q = ipckit.MessageQueue.create(unique_key(), backend="sysv")
    s = ipckit.Semaphore.create(unique_key(), 0, backend="sysv")
    box: list = []

    def wait(call):
        try:
            call()
        except BaseException as exc:
            box.append(exc)

    threads = [threading.Thread(target=wait, args=(call,)) for call in (q.recv, s.acquire, lambda: s.acquire(timeout=20))]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while s.ncount < 2 and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(0.05)
    q.unlink()
    s.unlink()
    for t in threads:
        t.join(20)
    assert [type(e) for e in box] == [ipckit.ClosedError] * 3, box
    q.close()
    s.close()


# ---------------------------------------------------------------- hostile arguments (hypothesis)
#
# Each example makes fresh objects (unique names and keys only: a hostile "valid" name
# must never reach another program's object), makes one public call with arguments
# drawn from valid and hostile values, and removes whatever it made. The call may
# succeed or raise a documented exception; anything else (OverflowError, KeyError,
# AttributeError, SystemError, a crash) fails. Arguments that are valid but would
# make a call slow or huge (a timeout of an hour, a 10 GB segment, a million posts) are
# cut down: the point is what invalid ones do.

DOCUMENTED = (TypeError, ValueError, IndexError, ipckit.IPCError)

_ODD = [object(), 1j, [], {}, (), b"", bytearray(b"x"), "/", "//", "/a/b", "/\0", "x" * 300, "/" + "é" * 200,
        "posix", "sysv", "shm", "file", "memfd", -1, 0, 1, 2**31 - 1, 2**31, 2**32, 2**63, 2**64, -(2**63) - 1,
        float("nan"), float("inf"), -0.0, 1e300, True, False, None, "\udc80", 0o7777, 0o1000]
HOSTILE = st.one_of(
    st.sampled_from(_ODD),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.binary(max_size=12),
    st.lists(st.integers(-3, 3), max_size=3),
    st.tuples(st.integers(-3, 3), st.integers(-3, 3)),
)
BACKENDS_MQ = st.one_of(st.sampled_from(["posix", "sysv"]), HOSTILE)


def _small_timeout(t):
    """Keep a valid timeout short (None too: a hostile call must not block)."""
    if t is None:
        return 0
    if isinstance(t, (int, float)) and not isinstance(t, bool) and not (isinstance(t, float) and math.isnan(t)) and t >= 0:
        return min(t, 0.002)
    return t


TIMEOUT = HOSTILE.map(_small_timeout)


def _small_int(limit):
    def cut(v):
        return min(v, limit) if isinstance(v, int) and not isinstance(v, bool) and v > limit else v

    return cut


def _check(call):
    try:
        call()
    except DOCUMENTED:
        pass


class _Made:
    """What an example created (removed at its end whatever happened) or opened (only
    closed: a hostile key or id that happens to be valid may name another program's
    object, which must never be removed)."""

    def __init__(self):
        self.objects = []
        self.opened = []

    def add(self, obj):
        self.objects.append(obj)
        return obj

    def open(self, obj):
        self.opened.append(obj)
        return obj

    def cleanup(self):
        for obj in self.objects:
            with contextlib.suppress(ipckit.IPCError):
                obj.unlink()
            obj.close()
        for obj in self.opened:
            obj.close()


def _valid_name(backend, tmp_dir=None):
    if backend == "sysv":
        return unique_key()
    if backend == "file":
        return os.path.join(tmp_dir, unique_name()[1:])
    return unique_name()


@given(data=st.data())
def test_hostile_arguments_to_message_queue(data):
    made = _Made()
    try:
        backend = data.draw(st.sampled_from(["posix", "sysv"]))
        q = made.add(ipckit.MessageQueue.create(_valid_name(backend), backend=backend, max_messages=4, max_message_size=64))
        q.send(b"queued", timeout=0)
        arg = lambda: data.draw(HOSTILE)  # noqa: E731
        calls = {
            "create": lambda: made.add(ipckit.MessageQueue.create(
                data.draw(st.one_of(st.just(_valid_name(backend)), HOSTILE)),
                max_messages=data.draw(st.one_of(st.none(), st.integers(1, 4), HOSTILE)),
                max_message_size=data.draw(st.one_of(st.none(), st.integers(1, 64), HOSTILE)),
                mode=data.draw(st.one_of(st.just(0o600), HOSTILE)), backend=data.draw(BACKENDS_MQ))),
            "open": lambda: made.open(ipckit.MessageQueue.open(
                data.draw(st.one_of(st.just(q.name), HOSTILE)), backend=data.draw(BACKENDS_MQ),
                id=data.draw(st.one_of(st.none(), st.just(getattr(q, "id", 0)), HOSTILE)))),
            "send": lambda: q.send(data.draw(st.one_of(st.binary(max_size=80), HOSTILE)), priority=data.draw(st.one_of(st.just(0), HOSTILE)),
                                   type=data.draw(st.one_of(st.just(1), HOSTILE)), timeout=data.draw(TIMEOUT)),
            "recv": lambda: q.recv(timeout=data.draw(TIMEOUT)),
            "receive": lambda: q.receive(type=data.draw(st.one_of(st.just(0), HOSTILE)), timeout=data.draw(TIMEOUT),
                                         **({"max_size": arg(), "truncate": arg()} if backend == "sysv" else {})),
            "len": lambda: len(q),
            "stat": q.stat,
            "limits": lambda: (q.max_messages, q.max_message_size, q.max_bytes),
            "set": lambda: q.set(mode=arg(), uid=arg(), gid=arg(), max_bytes=arg()) if backend == "sysv" else None,
            "fileno": lambda: q.fileno() if backend == "posix" else None,
            "unlink": q.unlink,
            "closed": lambda: (q.close(), q.send(arg(), timeout=data.draw(TIMEOUT))),
        }
        _check(calls[data.draw(st.sampled_from(sorted(calls)))])
    finally:
        made.cleanup()


@given(data=st.data())
def test_hostile_arguments_to_shared_memory(data, tmp_path_factory):
    made = _Made()
    tmp_dir = str(tmp_path_factory.getbasetemp() / "hostile-shm")
    os.makedirs(tmp_dir, exist_ok=True)
    cwd = os.getcwd()
    os.chdir(tmp_dir)  # a hostile relative path for backend="file" lands here, nowhere else
    try:
        backend = data.draw(st.sampled_from(["posix", "sysv", "file", "memfd"]))
        if backend == "memfd":
            m = made.add(ipckit.SharedMemory.anonymous(4096))
        else:
            m = made.add(ipckit.SharedMemory.create(_valid_name(backend, tmp_dir), 4096, backend=backend))
        arg = lambda: data.draw(HOSTILE)  # noqa: E731
        size = st.one_of(st.integers(1, 8192), HOSTILE).map(_small_int(1 << 20))
        # No hostile absolute path: as a "file" name it could be any file on the machine.
        names = HOSTILE.filter(lambda v: not isinstance(v, str) or not v.startswith("/"))
        own_fd = lambda: os.dup(m.fileno()) if backend != "sysv" else -1  # noqa: E731
        def create():
            kind = data.draw(st.one_of(st.just(backend), HOSTILE))
            valid = _valid_name(kind if kind in ("posix", "sysv", "file") else backend, tmp_dir)  # never a file in /
            name = data.draw(st.one_of(st.just(valid), names))
            made.add(ipckit.SharedMemory.create(name, data.draw(size), mode=data.draw(st.one_of(st.just(0o600), HOSTILE)), backend=kind))

        calls = {
            "create": create,
            "open": lambda: made.open(ipckit.SharedMemory.open(data.draw(st.one_of(st.just(m.name), names)),
                                                              backend=data.draw(st.one_of(st.just(backend), HOSTILE)),
                                                              id=data.draw(st.one_of(st.none(), st.just(getattr(m, "id", 0)), HOSTILE)))),
            "anonymous": lambda: made.add(ipckit.SharedMemory.anonymous(data.draw(size), label=data.draw(st.one_of(st.just("x"), HOSTILE)))),
            "from_fd": lambda: made.add(ipckit.SharedMemory.from_fd(data.draw(st.one_of(st.builds(own_fd), HOSTILE.filter(lambda v: not isinstance(v, int) or v < 0 or v > 10**6))),
                                                                    size=data.draw(st.one_of(st.none(), size)))),
            "read": lambda: m.read(data.draw(st.one_of(st.integers(-1, 4096), HOSTILE)), data.draw(st.one_of(st.integers(0, 4096), HOSTILE))),
            "write": lambda: m.write(data.draw(st.one_of(st.binary(max_size=64), HOSTILE)), data.draw(st.one_of(st.integers(0, 4096), HOSTILE))),
            "buf": lambda: m.buf[data.draw(st.integers(0, 4095))],
            "stat": lambda: m.stat() if backend == "sysv" else m.fileno(),
            "set": lambda: m.set(mode=arg(), uid=arg(), gid=arg()) if backend == "sysv" else None,
            "unlink": m.unlink,
            "closed": lambda: (m.close(), m.read(arg())),
        }
        _check(calls[data.draw(st.sampled_from(sorted(calls)))])
    finally:
        made.cleanup()
        os.chdir(cwd)


@given(data=st.data())
def test_hostile_arguments_to_semaphore(data):
    made = _Made()
    try:
        backend = data.draw(st.sampled_from(["posix", "sysv"]))
        s = made.add(ipckit.Semaphore.create(_valid_name(backend), 1, backend=backend, **({"count": 2} if backend == "sysv" else {})))
        arg = lambda: data.draw(HOSTILE)  # noqa: E731
        small = HOSTILE.map(_small_int(1000))
        calls = {
            "create": lambda: made.add(ipckit.Semaphore.create(
                data.draw(st.one_of(st.just(_valid_name(backend)), HOSTILE)), data.draw(st.one_of(small, st.lists(small, max_size=4))),
                mode=data.draw(st.one_of(st.just(0o600), HOSTILE)), backend=data.draw(st.one_of(st.just(backend), HOSTILE)),
                count=data.draw(st.one_of(st.none(), small)), undo=arg())),
            "open": lambda: made.open(ipckit.Semaphore.open(data.draw(st.one_of(st.just(s.name), HOSTILE)),
                                                           backend=data.draw(st.one_of(st.just(backend), HOSTILE)), undo=arg(),
                                                           id=data.draw(st.one_of(st.none(), st.just(getattr(s, "id", 0)), HOSTILE)))),
            "acquire": lambda: s.acquire(data.draw(st.one_of(st.just(True), HOSTILE)), data.draw(TIMEOUT)),
            "release": lambda: s.release(data.draw(small)),
            "value": lambda: s.value,
            "getitem": lambda: s[arg()] if backend == "sysv" else None,
            "op": lambda: s.op(data.draw(st.one_of(st.lists(st.tuples(small, small), max_size=3), HOSTILE.filter(lambda v: not isinstance(v, str) or len(v) < 4))),
                               timeout=data.draw(TIMEOUT), undo=arg()) if backend == "sysv" else None,
            "set_value": lambda: s.set_value(arg()) if backend == "sysv" else None,
            "set_values": lambda: s.set_values(data.draw(st.one_of(st.lists(small, max_size=3), HOSTILE))) if backend == "sysv" else None,
            "set": lambda: s.set(mode=arg(), uid=arg(), gid=arg()) if backend == "sysv" else None,
            "unlink": s.unlink,
            "closed": lambda: (s.close(), s.release(data.draw(small))),
        }
        _check(calls[data.draw(st.sampled_from(sorted(calls)))])
    finally:
        made.cleanup()
