"""MessageQueue(backend="shm"): conformance, bad input, headers that are not ours,
timeouts, many producers and consumers across processes (fork and spawn),
processes SIGKILLed at random points, recovery of slots held by dead processes,
CPU use while waiting, the zero-copy paths, and close() racing blocked calls."""

from __future__ import annotations

import errno
import io
import multiprocessing
import os
import pickle
import random
import resource
import signal
import struct
import threading
import time
import zlib

import pytest

import ipckit
from ipckit.testing import expect_timeout
from ipckit import testing
from ipckit._ffi import lib

CONTEXTS = ["fork", "spawn"]
HEADER = lib.IPCKIT_SHMQ_HEADER_SIZE
SLOT_HEADER = lib.IPCKIT_SHMQ_SLOT_HEADER
OFF_TAIL, OFF_HEAD = 128, 256


def create(name: str, **kwargs: object) -> ipckit.MessageQueue:
    kwargs.setdefault("max_messages", 16)
    kwargs.setdefault("max_message_size", 256)
    return ipckit.MessageQueue.create(name, backend="shm", **kwargs)


@pytest.fixture
def queue(posix_name: str):  # type: ignore[no-untyped-def]
    q = create(posix_name)
    yield q
    q.close()


# ------------------------------------------------------------------ conformance


def test_check_channel(make_name) -> None:  # type: ignore[no-untyped-def]
    def make_pair():  # type: ignore[no-untyped-def]
        name = make_name()
        sender = create(name, max_messages=64, max_message_size=1 << 20)
        receiver = ipckit.MessageQueue.open(name, backend="shm")
        sender.unlink()  # the segment lives while a handle is open
        return sender, receiver

    testing.check_channel(make_pair, max_size=1 << 20, eof_on_close=False)


def test_create_open_attributes(posix_name: str) -> None:
    with create(posix_name, max_messages=5, max_message_size=100) as q:
        assert isinstance(q, ipckit.MessageQueue)
        assert (q.name, q.backend, q.max_messages, q.max_message_size, len(q)) == (posix_name, "shm", 5, 100, 0)
        with ipckit.MessageQueue.open(posix_name, backend="shm") as other:
            assert (other.max_messages, other.max_message_size) == (5, 100)
            q.send(b"one")
            assert len(other) == 1
            assert other.receive(timeout=1) == ipckit.Message(b"one", None, None)
        st = q.stat()
        assert (st.backend, st.messages, st.max_messages, st.max_message_size, st.mode) == ("shm", 0, 5, 100, 0o600)
        info = q.ring_info()
        assert info["capacity"] == 5 and info["version"] == lib.IPCKIT_SHMQ_VERSION and info["head"] == info["tail"] == 1
        with pytest.raises(ipckit.ExistsError):
            create(posix_name)
        with pytest.raises(io.UnsupportedOperation):
            q.fileno()
        assert "shm" in repr(q)
        q.unlink()
        assert not os.path.exists("/dev/shm" + posix_name)
        q.send(b"still works after unlink")
        assert q.recv(timeout=1) == b"still works after unlink"
        with pytest.raises(ipckit.NotFoundError):
            q.unlink()
    with pytest.raises(ipckit.NotFoundError):
        ipckit.MessageQueue.open(posix_name, backend="shm")


def test_defaults(posix_name: str) -> None:
    with ipckit.MessageQueue.create(posix_name, backend="shm") as q:
        assert (q.max_messages, q.max_message_size) == (8, 1 << 20)
        q.unlink()


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o000])
@pytest.mark.parametrize("mode", [0o600, 0o640, 0o666])
def test_mode_is_exact(posix_name: str, umask: int, mode: int) -> None:
    old = os.umask(umask)
    try:
        with create(posix_name, mode=mode) as q:
            assert os.stat("/dev/shm" + posix_name).st_mode & 0o7777 == mode
            assert q.stat().mode == mode
            q.unlink()
    finally:
        os.umask(old)


def test_many_and_large_messages(posix_name: str) -> None:
    """No kernel limit: far more and far larger messages than POSIX allows."""
    with create(posix_name, max_messages=5000, max_message_size=16384) as q:
        q.send_many([b"%d" % i for i in range(5000)])
        assert len(q) == 5000
        with pytest.raises(ipckit.Timeout):
            q.send(b"full", timeout=0)
        got: list = []
        while len(got) < 5000:
            got += q.recv_many(1000, timeout=1)
        assert got == [b"%d" % i for i in range(5000)]
        q.unlink()
    with create(posix_name, max_messages=2, max_message_size=3 << 20) as q:
        big = os.urandom(3 << 20)
        q.send(big)
        q.send(big[::-1])
        assert q.recv(timeout=1) == big
        assert q.recv_many(5, timeout=1) == [big[::-1]]
        with pytest.raises(ipckit.Timeout) as info:  # big batches go one C call per message
            q.send_many([big, big[::-1], b"third"], timeout=0.05)
        assert info.value.sent == 2
        assert q.recv_many(5, timeout=1) == [big]
        assert q.recv(timeout=1) == big[::-1]
        q.unlink()


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "kwargs, exc",
    [
        ({"max_messages": 0}, ValueError),
        ({"max_messages": -1}, ValueError),
        ({"max_message_size": 0}, ValueError),
        ({"max_message_size": -5}, ValueError),
        ({"max_messages": 1.5}, TypeError),
        ({"max_message_size": "8"}, TypeError),
        ({"max_message_size": 2**60}, ValueError),
        ({"max_messages": 2**62}, ValueError),
        ({"mode": 0o10000}, ValueError),
    ],
)
def test_bad_create_arguments(posix_name: str, kwargs: dict, exc: type) -> None:
    with pytest.raises(exc):
        create(posix_name, **kwargs)
    assert not os.path.exists("/dev/shm" + posix_name)


def test_too_big_for_dev_shm(posix_name: str) -> None:
    free = os.statvfs("/dev/shm").f_bavail * os.statvfs("/dev/shm").f_frsize
    with pytest.raises(ipckit.IPCError) as info:
        create(posix_name, max_messages=free // (1 << 20) + 10, max_message_size=1 << 20)
    assert info.value.errno == errno.ENOSPC and "/dev/shm" in str(info.value)
    assert not os.path.exists("/dev/shm" + posix_name)


@pytest.mark.parametrize("bad, exc", [("noslash", ValueError), ("/a/b", ValueError), ("/", ValueError), (5, TypeError), (b"/x", TypeError)])
def test_bad_names(bad: object, exc: type) -> None:
    with pytest.raises(exc):
        ipckit.MessageQueue.create(bad, backend="shm")
    with pytest.raises(exc):
        ipckit.MessageQueue.open(bad, backend="shm")


def test_bad_send_and_receive_arguments(queue) -> None:  # type: ignore[no-untyped-def]
    queue.send(b"urgent?", priority=3)  # priority is a POSIX notion: checked, then ignored
    queue.send(b"plain")
    assert [queue.recv(timeout=1), queue.recv(timeout=1)] == [b"urgent?", b"plain"]  # still FIFO
    with pytest.raises(ValueError):
        queue.send(b"x", priority=-1)
    with pytest.raises(TypeError):
        queue.send(b"x", priority="high")
    with pytest.raises(ValueError):
        queue.send(b"x", type=0)
    queue.send(b"typed", type=7)  # type is a SysV notion: checked, then ignored
    with pytest.raises(ValueError, match="type"):
        queue.receive(type=7)
    assert queue.receive(type=0, timeout=1).data == b"typed"
    for bad in ("text", 3, None):
        with pytest.raises(TypeError):
            queue.send(bad)
    with pytest.raises(ipckit.MessageTooLarge) as info:
        queue.send(bytearray(257))
    assert isinstance(info.value, ValueError) and info.value.errno == errno.EMSGSIZE
    with pytest.raises(ipckit.MessageTooLarge):
        queue.send_many([b"ok", b"x" * 257])  # checked before anything is sent
    with pytest.raises(TypeError):
        queue.send_many([b"ok", "text"])
    with pytest.raises(TypeError):
        queue.recv_into(b"read-only")
    with pytest.raises(ValueError):
        queue.recv_many(0)
    with pytest.raises(ValueError):
        queue.recv(timeout=-1)
    with pytest.raises(TypeError):
        queue.send(b"x", timeout="1")
    with pytest.raises(ValueError):
        queue.spin_time = -1
    expect_timeout(lambda: queue.recv(timeout=0), 0)  # none of the above sent anything


def test_max_size_message_and_empty_message(queue) -> None:  # type: ignore[no-untyped-def]
    queue.send(b"m" * 256)
    queue.send(b"")
    assert queue.recv(timeout=1) == b"m" * 256
    assert queue.recv(timeout=1) == b""
    queue.send(b"")
    with queue.recv_view(timeout=1) as view:
        assert len(view) == 0
    queue.send(b"")
    assert queue.recv_into(bytearray(1), timeout=1) == 0


# ------------------------------------------------------------------ not an ipckit queue


def _raw_segment(name: str, data: bytes) -> None:
    fd = os.open("/dev/shm" + name, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def _patch(name: str, offset: int, data: bytes) -> None:
    fd = os.open("/dev/shm" + name, os.O_RDWR)
    try:
        os.pwrite(fd, data, offset)
    finally:
        os.close(fd)


def test_open_foreign_segment(make_name) -> None:  # type: ignore[no-untyped-def]
    name = make_name()
    _raw_segment(name, os.urandom(8192))
    with pytest.raises(ValueError, match="not an ipckit shm queue"):
        ipckit.MessageQueue.open(name, backend="shm")
    short = make_name()
    _raw_segment(short, b"IPCKSHMQ")
    with pytest.raises(ValueError, match="not an ipckit shm queue"):
        ipckit.MessageQueue.open(short, backend="shm")
    empty = make_name()
    _raw_segment(empty, b"")
    with pytest.raises(ValueError, match="not an ipckit shm queue"):
        ipckit.MessageQueue.open(empty, backend="shm")
    zeros = make_name()
    _raw_segment(zeros, bytes(HEADER + 4096))
    with pytest.raises(ValueError, match="not an ipckit shm queue"):
        ipckit.MessageQueue.open(zeros, backend="shm")


@pytest.mark.parametrize(
    "offset, data, match",
    [
        (0, b"NOTQUEUE", "magic"),
        (8, struct.pack("<I", 99), "version 99"),
        (16, struct.pack("<Q", 15), "inconsistent"),  # capacity no longer matches the size
        (32, struct.pack("<Q", 255), "inconsistent"),  # max message size: fails the check hash
    ],
)
def test_open_corrupt_header(posix_name: str, offset: int, data: bytes, match: str) -> None:
    create(posix_name).close()
    _patch(posix_name, offset, data)
    with pytest.raises(ValueError, match=match):
        ipckit.MessageQueue.open(posix_name, backend="shm")


def test_truncated_segment(posix_name: str) -> None:
    create(posix_name).close()
    os.truncate("/dev/shm" + posix_name, HEADER + 100)
    with pytest.raises(ValueError, match="inconsistent"):
        ipckit.MessageQueue.open(posix_name, backend="shm")


# ------------------------------------------------------------------ timeouts and close


def test_timeouts(queue) -> None:  # type: ignore[no-untyped-def]
    for call in (queue.recv, queue.recv_view, queue.recv_many, lambda timeout: queue.recv_into(bytearray(300), timeout=timeout)):
        expect_timeout(lambda: call(timeout=0), 0)
        expect_timeout(lambda: call(timeout=0.15), 0.15)
    for i in range(16):
        queue.send(b"%d" % i, timeout=0)
    expect_timeout(lambda: queue.send(b"late", timeout=0), 0)
    expect_timeout(lambda: queue.send(b"late", timeout=0.15), 0.15)
    with pytest.raises(ipckit.Timeout) as info:
        queue.send_many([b"a"], timeout=0.05)
    assert info.value.sent == 0
    assert queue.recv(timeout=0) == b"0"
    with pytest.raises(ipckit.Timeout) as info:
        queue.send_many([b"a", b"b", b"c"], timeout=0.05)
    assert info.value.sent == 1
    assert [queue.recv(timeout=0) for _ in range(16)] == [b"%d" % i for i in range(1, 16)] + [b"a"]


def test_timeout_none_blocks_until_a_message(queue) -> None:  # type: ignore[no-untyped-def]
    timer = threading.Timer(0.2, lambda: queue.send(b"wake"))
    timer.start()
    start = time.monotonic()
    assert queue.recv() == b"wake"
    assert time.monotonic() - start >= 0.19
    timer.join()


def test_blocked_sender_wakes_when_space_frees(queue) -> None:  # type: ignore[no-untyped-def]
    queue.send_many([b"x"] * 16)
    threading.Timer(0.1, queue.recv).start()
    queue.send(b"y", timeout=5)
    assert len(queue) == 16


def test_use_after_close(posix_name: str) -> None:
    q = create(posix_name)
    q.send(b"x")
    view = q.recv_view(timeout=1)
    q.close()
    q.close()
    with pytest.raises(ValueError):
        view.__enter__()[0]  # close() released the held message
    for call in (lambda: q.send(b"x"), q.recv, q.receive, lambda: q.recv_into(bytearray(9)), q.recv_view, q.recv_many,
                 lambda: q.send_many([b"x"]), lambda: len(q), lambda: q.max_messages, lambda: q.max_message_size, q.stat,
                 q.fileno, q.ring_info, lambda: q.send(b"x" * 1000)):
        with pytest.raises(ipckit.ClosedError):
            call()
    q.unlink()  # works on a closed handle


def test_close_from_another_thread_wakes_blocked_recv(queue) -> None:  # type: ignore[no-untyped-def]
    box: list = []

    def run() -> None:
        try:
            queue.recv(timeout=10)
        except BaseException as exc:
            box.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    time.sleep(0.1)
    start = time.monotonic()
    queue.close()
    thread.join(5)
    assert not thread.is_alive() and time.monotonic() - start < 2
    assert isinstance(box[0], ipckit.ClosedError)


def test_eintr_keeps_the_deadline(queue) -> None:  # type: ignore[no-untyped-def]
    hits = []
    old = signal.signal(signal.SIGALRM, lambda *a: hits.append(1))
    signal.setitimer(signal.ITIMER_REAL, 0.03, 0.03)
    try:
        expect_timeout(lambda: queue.recv(timeout=0.3), 0.3)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert len(hits) >= 3

    def boom(*args: object) -> None:
        raise KeyError("from handler")

    old = signal.signal(signal.SIGALRM, boom)
    signal.setitimer(signal.ITIMER_REAL, 0.05)
    try:
        with pytest.raises(KeyError):
            queue.recv(timeout=5)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def test_threads_share_a_handle(queue) -> None:  # type: ignore[no-untyped-def]
    got: list = []
    lock = threading.Lock()

    def consume() -> None:
        while True:
            msg = queue.recv(timeout=5)
            if msg == b"stop":
                return
            with lock:
                got.append(msg)

    threads = [threading.Thread(target=consume) for _ in range(3)]
    for t in threads:
        t.start()
    for i in range(3000):
        queue.send(b"%d" % i, timeout=5)
    for _ in threads:
        queue.send(b"stop", timeout=5)
    for t in threads:
        t.join(10)
    assert sorted(got, key=int) == [b"%d" % i for i in range(3000)]


# ------------------------------------------------------------------ zero copy


def test_zero_copy_paths(posix_name: str) -> None:
    numpy = pytest.importorskip("numpy")
    with create(posix_name, max_messages=4, max_message_size=1 << 16) as q:
        arr = numpy.arange(1000, dtype=numpy.float64)
        q.send(arr)
        out = numpy.empty(1000, dtype=numpy.float64)
        assert q.recv_into(out, timeout=1) == arr.nbytes
        assert (out == arr).all()
        q.send(arr)
        with q.recv_view(timeout=1) as view:
            assert view.readonly and view.nbytes == arr.nbytes
            assert (numpy.frombuffer(view, dtype=numpy.float64) == arr).all()
        with pytest.raises(ValueError):
            view[0]
        # A message too big for the buffer stays queued.
        q.send(b"z" * 100)
        with pytest.raises(ipckit.MessageTooLarge):
            q.recv_into(bytearray(99), timeout=1)
        assert len(q) == 1 and q.recv(timeout=1) == b"z" * 100
        # An array made from the view outlives the block: the slot is freed all
        # the same, and the mapping stays until the array goes (no crash).
        q.send(arr)
        with q.recv_view(timeout=1) as view:
            alias = numpy.frombuffer(view, dtype=numpy.float64)
        for i in range(4):  # every slot is usable again
            q.send(b"%d" % i, timeout=1)
        assert [q.recv(timeout=1) for _ in range(4)] == [b"0", b"1", b"2", b"3"]
        q.unlink()
    assert alias.shape == (1000,) and float(alias.sum()) == float(alias.sum())  # still mapped after close()
    del alias


def test_held_view_blocks_only_its_slot(posix_name: str) -> None:
    with create(posix_name, max_messages=3, max_message_size=16) as q:
        q.send(b"held")
        q.send(b"next")
        with q.recv_view(timeout=1) as view:
            assert bytes(view) == b"held"
            assert q.recv(timeout=1) == b"next"  # readers move past a held slot
            q.send(b"third", timeout=1)
            expect_timeout(lambda: q.send(b"fourth", timeout=0.1), 0.1)  # the ring wrapped onto it
        q.send(b"fourth", timeout=1)
        assert [q.recv(timeout=1), q.recv(timeout=1)] == [b"third", b"fourth"]
        q.unlink()


def test_big_messages_in_other_threads(posix_name: str) -> None:
    """Threads other than the creator copy without the handle's scratch buffer."""
    with create(posix_name, max_messages=4, max_message_size=200_000) as q:
        payloads = [os.urandom(n) for n in (0, 10, 100_000, 200_000)]
        got: list = []
        t = threading.Thread(target=lambda: got.extend([q.recv(timeout=5) for _ in payloads] + q.recv_many(4, timeout=5)))
        t.start()
        for p in payloads:
            q.send(p, timeout=5)
        q.send(b"tail", timeout=5)
        t.join(10)
        assert got == payloads + [b"tail"]
        q.unlink()


# ------------------------------------------------------------------ across processes


def _message(producer: int, seq: int, rng: random.Random) -> bytes:
    payload = rng.randbytes(rng.randrange(0, 120))
    return struct.pack("<HII", producer, seq, zlib.crc32(payload)) + payload


def _check(msg: bytes) -> tuple[int, int]:
    producer, seq, crc = struct.unpack_from("<HII", msg)
    if zlib.crc32(msg[10:]) != crc:
        raise AssertionError(f"torn message from producer {producer} seq {seq}")
    return producer, seq


def _producer(name: str, producer: int, count: int, batch: bool) -> None:
    q = ipckit.MessageQueue.open(name, backend="shm")
    rng = random.Random(producer)
    if batch:
        for start in range(0, count, 100):
            q.send_many([_message(producer, s, rng) for s in range(start, min(count, start + 100))], timeout=30)
    else:
        for seq in range(count):
            q.send(_message(producer, seq, rng), timeout=30)
    q.close()


def _consumer(name: str, producers: int, count: int, batch: bool, results) -> None:  # type: ignore[no-untyped-def]
    q = ipckit.MessageQueue.open(name, backend="shm")
    seen = bytearray(producers * count)
    last = [-1] * producers
    while True:
        msgs = q.recv_many(64, timeout=30) if batch else [q.recv(timeout=30)]
        for i, msg in enumerate(msgs):
            if msg == b"STOP":
                # A batch can hold the other consumer's STOP too: hand it back.
                for _ in range(msgs[i + 1:].count(b"STOP")):
                    q.send(b"STOP", timeout=30)
                q.close()
                results.put(bytes(seen))
                return
            producer, seq = _check(msg)
            assert seq > last[producer], "a producer's messages arrived out of order"
            last[producer] = seq
            seen[producer * count + seq] += 1


@pytest.mark.slow
@pytest.mark.parametrize("context", CONTEXTS)
def test_many_producers_many_consumers_exactly_once(posix_name: str, context: str) -> None:
    producers, count, consumers = 4, 50_000, 2
    ctx = multiprocessing.get_context(context)
    results = ctx.Queue()
    with create(posix_name, max_messages=256, max_message_size=256) as q:
        cons = [ctx.Process(target=_consumer, args=(posix_name, producers, count, i == 1, results)) for i in range(consumers)]
        prods = [ctx.Process(target=_producer, args=(posix_name, i, count, i >= 2)) for i in range(producers)]
        for p in cons + prods:
            p.start()
        for p in prods:
            p.join(60)
            assert p.exitcode == 0
        for _ in cons:
            q.send(b"STOP", timeout=30)
        seen = [results.get(timeout=60) for _ in cons]
        for p in cons:
            p.join(30)
            assert p.exitcode == 0
        total = bytes(a + b for a, b in zip(*seen))
        assert total == b"\x01" * (producers * count), "a message was lost or delivered twice"
        assert all(s.count(1) > 0 for s in seen), "a consumer got nothing"
        assert len(q) == 0 and q.ring_info()["abandoned"] == 0
        q.unlink()


def _spawned_sender(q) -> None:  # type: ignore[no-untyped-def]
    q.send(b"from %d" % os.getpid(), timeout=5)


@pytest.mark.parametrize("context", CONTEXTS)
def test_queue_handed_to_child(queue, context: str) -> None:  # type: ignore[no-untyped-def]
    """fork children use the inherited handle, spawn children reopen it by name."""
    p = multiprocessing.get_context(context).Process(target=_spawned_sender, args=(queue,))
    p.start()
    assert queue.recv(timeout=30) == b"from %d" % p.pid
    p.join(10)
    assert p.exitcode == 0
    assert pickle.loads(pickle.dumps(queue)).max_messages == 16


def _wait_empty(name: str, conn) -> None:  # type: ignore[no-untyped-def]
    q = ipckit.MessageQueue.open(name, backend="shm")
    before = resource.getrusage(resource.RUSAGE_SELF)
    try:
        q.recv(timeout=1.0)
    except ipckit.Timeout:
        pass
    after = resource.getrusage(resource.RUSAGE_SELF)
    conn.send((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))


@pytest.mark.parametrize("context", CONTEXTS)
def test_waiting_uses_little_cpu(queue, context: str) -> None:
    """A consumer waiting 1 s on an empty queue sleeps on the futex (< 20% of a CPU)."""
    ctx = multiprocessing.get_context(context)
    parent, child = ctx.Pipe()
    p = ctx.Process(target=_wait_empty, args=(queue.name, child))
    p.start()
    assert parent.poll(30)
    cpu = parent.recv()
    p.join(10)
    assert cpu < 0.2, f"a 1 s wait on an empty queue used {cpu:.3f} s of CPU"


def _wakes_after_delay(name: str, conn) -> None:  # type: ignore[no-untyped-def]
    q = ipckit.MessageQueue.open(name, backend="shm")
    conn.send("ready")
    conn.send(q.recv(timeout=10))


@pytest.mark.parametrize("context", CONTEXTS)
def test_sleeping_receiver_is_woken_by_other_process(queue, context: str) -> None:
    ctx = multiprocessing.get_context(context)
    parent, child = ctx.Pipe()
    p = ctx.Process(target=_wakes_after_delay, args=(queue.name, child))
    p.start()
    assert parent.poll(30) and parent.recv() == "ready"
    time.sleep(0.3)  # long past the spin: it sleeps on the futex now
    queue.send(b"wake up")
    assert parent.poll(5) and parent.recv() == b"wake up"
    p.join(10)


# ------------------------------------------------------------------ crashes


def _slot_word(name: str, index: int, stride: int) -> int:
    with open("/dev/shm" + name, "rb") as f:
        f.seek(HEADER + index * stride)
        return struct.unpack("<Q", f.read(8))[0]


def _dead_pid() -> int:
    p = multiprocessing.get_context("fork").Process(target=lambda: None)
    p.start()
    p.join()
    return p.pid  # type: ignore[return-value]


@pytest.mark.parametrize("state", [1, 3])  # WRITING (producer died mid-copy), READING (consumer died mid-copy)
def test_slot_of_dead_owner_is_recovered(posix_name: str, state: int) -> None:
    """Plant the exact state a process SIGKILLed between its claim and its
    publish/release leaves behind; the others must step over it."""
    with create(posix_name, max_messages=4, max_message_size=64) as q:
        stride = q.ring_info()["slot_size"]
        dead = _dead_pid()
        if state == 1:
            # A producer claimed position 0 (slot 0, lap 0) and died before publishing.
            _patch(posix_name, HEADER, struct.pack("<QQ", (0 << 24) | (1 << 22) | dead, 20) + b"half-written")
            _patch(posix_name, OFF_TAIL, struct.pack("<Q", 1))
            q.send(b"after the hole")
            start = time.monotonic()
            assert q.recv(timeout=5) == b"after the hole"  # the half message is never delivered
            assert time.monotonic() - start < 2
        else:
            # A consumer took position 0 and died before releasing it: after a
            # full lap the producers reach that slot again.
            q.send(b"taken by the dead")
            _patch(posix_name, HEADER, struct.pack("<Q", (0 << 24) | (3 << 22) | dead))
            _patch(posix_name, OFF_HEAD, struct.pack("<Q", 1))
            for i in range(3):
                q.send(b"%d" % i, timeout=0)
            start = time.monotonic()
            q.send(b"wraps onto the dead slot", timeout=5)
            assert time.monotonic() - start < 2
            assert [q.recv(timeout=1) for _ in range(4)] == [b"0", b"1", b"2", b"wraps onto the dead slot"]
        assert q.ring_info()["abandoned"] == 1
        assert _slot_word(posix_name, 0, stride) >> 22 & 3 in (0, 2)  # FREE or FULL: the dead claim is gone
        expect_timeout(lambda: q.recv(timeout=0), 0)
        q.unlink()


def _hold_and_die(name: str) -> None:
    q = ipckit.MessageQueue.open(name, backend="shm")
    q.recv_view(timeout=5)  # claim a message, never release it
    os.kill(os.getpid(), signal.SIGKILL)


@pytest.mark.parametrize("reap", [True, False])
def test_forked_child_dies_holding_a_slot(queue, reap: bool) -> None:
    """The claim names the child's own pid (not the parent's, after fork); a zombie counts as dead."""
    p = multiprocessing.get_context("fork").Process(target=_hold_and_die, args=(queue.name,))
    queue.send(b"doomed")
    p.start()
    deadline = time.monotonic() + 10
    while len(queue.ring_info()) and queue.ring_info()["head"] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    if reap:
        p.join(10)
    else:
        while os.path.exists(f"/proc/{p.pid}") and open(f"/proc/{p.pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z":
            time.sleep(0.01)
    for i in range(15):
        queue.send(b"%d" % i, timeout=0)
    queue.send(b"over the dead slot", timeout=5)
    assert [queue.recv(timeout=1) for _ in range(16)] == [b"%d" % i for i in range(15)] + [b"over the dead slot"]
    assert queue.ring_info()["abandoned"] == 1
    p.join(10)


_BIG = 1 << 20


def _kill_producer(name: str, ident: int) -> None:
    # Big messages, so that much of the time is spent inside the copy, between
    # the claim and the publish of a slot.
    rng = random.Random(ident)
    payloads = [rng.randbytes(rng.randrange(_BIG // 2, _BIG - 10)) for _ in range(3)]
    messages = [struct.pack("<HII", ident, k, zlib.crc32(p)) + p for k, p in enumerate(payloads)]
    q = ipckit.MessageQueue.open(name, backend="shm")
    while True:
        for msg in messages:
            q.send(msg, timeout=30)


def _kill_consumer(name: str) -> None:
    # Reads in place, so that much of the time is spent holding a claimed slot.
    q = ipckit.MessageQueue.open(name, backend="shm")
    while True:
        with q.recv_view(timeout=30) as view:
            try:
                _check(view)
            except AssertionError:
                os._exit(3)


@pytest.mark.slow
def test_sigkill_at_random_points(posix_name: str) -> None:
    """Producers and consumers are SIGKILLed at random moments, 30 times over one
    queue; after each round the survivors drain it (no torn message), and the
    ring still carries a full lap of messages in order."""
    ctx = multiprocessing.get_context("fork")
    rng = random.Random(1234)
    with create(posix_name, max_messages=4, max_message_size=_BIG) as q:
        for round_ in range(30):
            prods = [ctx.Process(target=_kill_producer, args=(posix_name, 100 + round_ * 2 + i)) for i in range(2)]
            cons = ctx.Process(target=_kill_consumer, args=(posix_name,))
            for p in prods + [cons]:
                p.start()
            victims = prods + [cons]
            rng.shuffle(victims)
            for p in victims:
                time.sleep(rng.uniform(0.0, 0.02))
                os.kill(p.pid, signal.SIGKILL)  # type: ignore[arg-type]
            for p in victims:
                p.join(10)
                assert p.exitcode == -signal.SIGKILL, f"round {round_}: a child exited with {p.exitcode} (3: torn message)"
            # Survivors: drain what the dead left, checking every message.
            while True:
                try:
                    _check(q.recv(timeout=0.05))
                except ipckit.Timeout:
                    break
            for i in range(4):
                q.send(b"lap %d" % i, timeout=2)
            assert [q.recv(timeout=2) for _ in range(4)] == [b"lap %d" % i for i in range(4)]
            assert len(q) == 0
        info = q.ring_info()
        assert info["head"] == info["tail"]
        # About half the kills land inside a claim (0 in 30 rounds is ~e**-15).
        assert info["abandoned"] > 0, "no kill ever landed inside a claimed slot: the test exercised nothing"
        q.unlink()
