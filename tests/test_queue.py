"""ipckit.Queue / SimpleQueue / JoinableQueue: multiprocessing's semantics, across real processes.

Each group follows the multiprocessing behaviour it mirrors (Lib/test/_test_multiprocessing.py
``_TestQueue``): Empty/Full, timeouts never early, qsize/empty/full, close, task_done/join;
then hand-over to fork/spawn/forkserver children and executors, objects of any size, crash
safety with SIGKILL, and hostile segment content.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import pickle
import queue
import random
import signal
import struct
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import ipckit
from ipckit import _queue
from ipckit._mqueue_shm import ShmMessageQueue
from ipckit.testing import unique_name

pytestmark = pytest.mark.timeout(120)

METHODS = ("fork", "spawn", "forkserver")


@pytest.fixture
def q():
    queue_ = ipckit.Queue()
    yield queue_
    _drain_and_close(queue_)


def _drain_and_close(queue_):
    if not queue_._closed:
        try:
            while True:
                queue_.get(timeout=0)
        except (queue.Empty, ipckit.CorruptError):
            pass
        queue_.close()
        queue_.join_thread()


def _elapsed(call):
    start = time.monotonic()
    try:
        call()
    except (queue.Empty, queue.Full) as exc:
        return time.monotonic() - start, exc
    raise AssertionError("expected Empty/Full")


# ---------------------------------------------------------------- the basics


@pytest.mark.parametrize(
    "obj",
    [None, 0, -1, 2**100, 1.5, "", "text", "ünïcode", b"", b"bytes", bytearray(b"ba"), (1, 2.0, "three"),
     [1, [2, [3]]], {"k": {1, 2}}, frozenset({1}), Exception("boom"), range(3), b"\x80" * 5],
)
def test_roundtrip_values(q, obj):
    q.put(obj)
    got = q.get(timeout=5)
    assert got == obj if not isinstance(obj, Exception) else got.args == obj.args
    assert type(got) is type(obj)


def test_fifo_and_qsize(q):
    assert q.empty() and q.qsize() == 0 and not q.full()
    for i in range(50):
        q.put(i)
    assert q.qsize() == 50 and not q.empty()
    assert [q.get() for _ in range(50)] == list(range(50))
    assert q.empty()


def test_get_timeout_never_early(q):
    for timeout in (0.05, 0.2):
        took, exc = _elapsed(lambda: q.get(timeout=timeout))
        assert isinstance(exc, queue.Empty) and took >= timeout
    took, _ = _elapsed(lambda: q.get(block=False))
    assert took < 1
    took, _ = _elapsed(q.get_nowait)
    _, exc = _elapsed(lambda: q.get(timeout=-1))  # multiprocessing: a negative timeout is 0
    assert isinstance(exc, queue.Empty)


def test_put_full_timeout_never_early():
    bounded = ipckit.Queue(maxsize=3)
    try:
        for i in range(3):
            bounded.put(i)
        assert bounded.full() and bounded.qsize() == 3
        took, exc = _elapsed(lambda: bounded.put(9, timeout=0.2))
        assert isinstance(exc, queue.Full) and took >= 0.2
        for call in (lambda: bounded.put_nowait(9), lambda: bounded.put(9, block=False), lambda: bounded.put(9, timeout=-1)):
            assert isinstance(_elapsed(call)[1], queue.Full)
        assert [bounded.get() for _ in range(3)] == [0, 1, 2]
        assert not bounded.full() and bounded.maxsize == 3
    finally:
        bounded.close()


def test_blocking_get_wakes_on_put(q):
    def later():
        time.sleep(0.1)
        q.put("late")

    threading.Thread(target=later).start()
    assert q.get(timeout=10) == "late"


def test_blocking_put_wakes_on_get():
    bounded = ipckit.Queue(1)
    try:
        bounded.put(1)
        threading.Timer(0.1, bounded.get).start()
        bounded.put(2, timeout=10)
        assert bounded.get(timeout=5) == 2
    finally:
        bounded.close()


def test_unbounded_put_never_blocks():
    unbounded = ipckit.Queue()
    try:
        for i in range(10_000):
            unbounded.put_nowait(i)
        assert unbounded.qsize() == 10_000
        assert [unbounded.get(timeout=10) for _ in range(10_000)] == list(range(10_000))
    finally:
        unbounded.close()
        unbounded.join_thread()


def test_unpicklable_raises_from_put(q):
    with pytest.raises((TypeError, AttributeError, pickle.PicklingError)):
        q.put(lambda: None)
    with pytest.raises(TypeError):
        q.put(threading.Lock())
    q.put("after")
    assert q.get(timeout=5) == "after"


def test_bad_arguments():
    with pytest.raises(TypeError):
        ipckit.Queue("3")
    with pytest.raises(ValueError):
        ipckit.Queue(max_message_size=8)
    with pytest.raises(TypeError):
        ipckit.Queue(max_message_size=1.5)
    with ipckit_queue() as q:
        with pytest.raises(TypeError):
            q.get(timeout="1")


class ipckit_queue:
    def __init__(self, *args, **kwargs):
        self.q = ipckit.Queue(*args, **kwargs)

    def __enter__(self):
        return self.q

    def __exit__(self, *exc):
        _drain_and_close(self.q)


# ---------------------------------------------------------------- close


def test_close_then_calls_raise_valueerror():
    q = ipckit.Queue()
    q.put(1)
    q.close()
    q.close()  # idempotent
    for call in (lambda: q.put(2), q.get, q.get_nowait, lambda: q.put_nowait(3), q.qsize, q.empty):
        with pytest.raises(ValueError, match="is closed") as info:
            call()
        assert isinstance(info.value, ipckit.ClosedError)
    q.join_thread()


def test_join_thread_needs_close(q):
    with pytest.raises(AssertionError):
        q.join_thread()


def test_close_flushes_buffered_objects():
    q = ipckit.Queue()
    for i in range(3000):  # more than the ring holds: the feeder has the rest
        q.put(i)
    other = ipckit.Queue.__new__(ipckit.Queue)
    state = {"name": None, "fd": _DupFd(os.dup(q._core.seg.fd)), "cancelled": False}
    other.__setstate__(state)
    q.close()
    got = [other.get(timeout=10) for _ in range(3000)]
    q.join_thread()
    assert got == list(range(3000))
    other.close()


class _DupFd:
    def __init__(self, fd):
        self.fd = fd

    def detach(self):
        return self.fd


def test_close_wakes_a_blocked_get():
    q = ipckit.Queue()
    errors = []

    def getter():
        try:
            q.get(timeout=30)
        except Exception as exc:
            errors.append(exc)

    t = threading.Thread(target=getter)
    t.start()
    time.sleep(0.2)
    q.close()
    t.join(10)
    assert not t.is_alive()
    assert errors and isinstance(errors[0], (ValueError, ipckit.ClosedError))


def test_cancel_join_thread(q):
    q.cancel_join_thread()
    q.put(1)
    assert q.get(timeout=5) == 1


def test_simple_queue():
    sq = ipckit.SimpleQueue()
    assert sq.empty()
    sq.put((1, "a"))
    assert not sq.empty()
    assert sq.get() == (1, "a")
    sq.put(np.arange(300_000))
    assert sq.get().sum() == np.arange(300_000).sum()
    sq.close()
    for call in (sq.get, lambda: sq.put(1), sq.empty):
        with pytest.raises(OSError) as info:
            call()
        assert not isinstance(info.value, ValueError)


# ---------------------------------------------------------------- JoinableQueue


def test_task_done_and_join():
    jq = ipckit.JoinableQueue()
    try:
        jq.join(timeout=0)  # nothing put: returns at once
        for i in range(5):
            jq.put(i)
        with pytest.raises(ipckit.Timeout):
            jq.join(timeout=0.1)

        def worker():
            for _ in range(5):
                jq.get(timeout=5)
                time.sleep(0.01)
                jq.task_done()

        threading.Thread(target=worker).start()
        jq.join(timeout=20)
        with pytest.raises(ValueError, match="too many"):
            jq.task_done()
    finally:
        jq.close()
        jq.join_thread()


def _jq_worker(jq):
    while True:
        item = jq.get(timeout=20)
        jq.task_done()
        if item is None:
            return


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_joinable_across_processes(method):
    jq = ipckit.JoinableQueue()
    ctx = multiprocessing.get_context(method)
    p = ctx.Process(target=_jq_worker, args=(jq,))
    p.start()
    try:
        for i in range(100):
            jq.put(i)
        jq.put(None)
        jq.join(timeout=60)
        p.join(30)
        assert p.exitcode == 0
    finally:
        jq.close()
        jq.join_thread()


def test_full_put_timeout_undoes_the_task():
    jq = ipckit.JoinableQueue(1)
    try:
        jq.put(1)
        with pytest.raises(queue.Full):
            jq.put(2, timeout=0.05)
        jq.get()
        jq.task_done()
        jq.join(timeout=1)  # the failed put is not counted
    finally:
        jq.close()


# ---------------------------------------------------------------- buffers and big objects


@pytest.mark.parametrize("dtype", ["int8", "uint16", "int64", "float32", "float64", "complex128", "bool", "<U5", "datetime64[ns]"])
def test_numpy_dtypes(q, dtype):
    arr = (np.arange(4000) % 7).astype(dtype)
    q.put(arr)
    got = q.get(timeout=5)
    assert got.dtype == arr.dtype and np.array_equal(got, arr)
    assert got.flags.writeable
    got[0] = got[1]  # writable, like multiprocessing's


def test_read_only_arrays_arrive_writable(q):
    for arr in (np.frombuffer(b"ro" * 40, dtype=np.uint8), np.frombuffer(bytes(800_000), dtype=np.float64)):
        assert not arr.flags.writeable
        q.put([arr, "x" * 70_000])  # a big in-band part too: several pickle frames
        got, text = q.get(timeout=10)
        assert np.array_equal(got, arr) and got.flags.writeable and text == "x" * 70_000


def test_numpy_views_and_orders(q):
    base = np.arange(200 * 300, dtype=np.float64).reshape(200, 300)
    for arr in (base[::3, ::2], base.T, base[:, 5], np.asfortranarray(base), base[10:20], np.float64(3.5)):
        q.put(arr)
        got = q.get(timeout=5)
        assert np.array_equal(got, arr) and got.shape == np.shape(arr)


def test_structured_and_object_arrays(q):
    rec = np.zeros(100, dtype=[("a", "i4"), ("b", "f8", (2,))])
    rec["a"] = np.arange(100)
    objs = np.array([{"x": 1}, "s", 3], dtype=object)
    q.put((rec, objs))
    got_rec, got_objs = q.get(timeout=5)
    assert np.array_equal(got_rec, rec) and list(got_objs) == list(objs)


@pytest.mark.parametrize("size", [100, 5000, 70_000, 3_000_000])
def test_bytes_like_sizes(q, size):
    data = os.urandom(size)
    for obj in (data, bytearray(data), [data, {"k": bytearray(data)}]):
        q.put(obj)
        assert q.get(timeout=10) == obj
    q.put(memoryview(data))
    got = q.get(timeout=10)
    assert bytes(got) == data


def test_memoryview_shape_and_noncontiguous(q):
    arr = np.arange(24, dtype=np.int32).reshape(4, 6)
    q.put(memoryview(arr))
    got = q.get(timeout=5)
    assert got.format == "i" and got.shape == (4, 6) and got.tolist() == arr.tolist()
    q.put(memoryview(arr)[::2])
    assert bytes(q.get(timeout=5)) == arr[::2].tobytes()


def test_object_over_the_record_and_the_lane(q):
    ring = q._core.record_size
    lane_bytes = _queue.LANE_SLOTS * _queue.LANE_CHUNK
    big = np.random.default_rng(1).random((64 << 20) // 8)  # 64 MiB: over the ring and the lane
    mid = os.urandom(ring * 3)
    plain = list(range(300_000))  # a big in-band pickle, no buffers
    assert big.nbytes > lane_bytes
    for obj in (mid, big, plain, (big[:10], mid)):
        q.put(obj)
    assert q.get(timeout=30) == mid
    got = q.get(timeout=60)
    assert np.array_equal(got, big) and got.flags.writeable
    assert q.get(timeout=30) == plain
    small, mid2 = q.get(timeout=30)
    assert np.array_equal(small, big[:10]) and mid2 == mid


def test_order_of_small_and_big_from_one_producer():
    bounded = ipckit.Queue(4)
    items = [i if i % 3 else np.full(200_000 + i, i) for i in range(60)]
    t = threading.Thread(target=lambda: [bounded.put(x, timeout=30) for x in items])
    t.start()
    try:
        for i in range(60):
            got = bounded.get(timeout=30)
            assert (got == i) if i % 3 else (got.shape == (200_000 + i,) and (got == i).all())
        t.join(10)
    finally:
        bounded.close()


def test_big_put_times_out_without_a_consumer_and_nothing_is_put():
    bounded = ipckit.Queue(2)
    try:
        start = time.monotonic()
        with pytest.raises(queue.Full):
            bounded.put(np.zeros(20 << 20, dtype=np.uint8), timeout=0.3)  # over the lane: needs a reader
        assert time.monotonic() - start >= 0.3
        bounded.put("next", timeout=5)
        assert bounded.get(timeout=10) == "next"  # the aborted object was dropped
    finally:
        bounded.close()


def test_big_objects_two_consumer_threads(q):
    arrays = [np.full(300_000, i, dtype=np.int64) for i in range(20)]
    got = []
    lock = threading.Lock()

    def consumer():
        while True:
            x = q.get(timeout=30)
            if x is None:
                return
            with lock:
                got.append(int(x[0]))

    threads = [threading.Thread(target=consumer) for _ in range(2)]
    for t in threads:
        t.start()
    for a in arrays:
        q.put(a)
    q.put(None)
    q.put(None)
    for t in threads:
        t.join(30)
    assert sorted(got) == list(range(20))


# ---------------------------------------------------------------- hand-over


def _child_echo(inq, outq):
    while True:
        item = inq.get(timeout=30)
        if item is None:
            return
        outq.put(item)


@pytest.mark.parametrize("method", METHODS)
def test_process_handover(method):
    ctx = multiprocessing.get_context(method)
    inq, outq = ipckit.Queue(), ipckit.Queue()
    p = ctx.Process(target=_child_echo, args=(inq, outq))
    p.start()
    try:
        items = [1, "two", np.arange(10), np.ones(2 << 20), os.urandom(9000)]
        for item in items:
            inq.put(item)
        inq.put(None)
        for item in items:
            got = outq.get(timeout=60)
            assert np.array_equal(got, item) if isinstance(item, np.ndarray) else got == item
        p.join(30)
        assert p.exitcode == 0
    finally:
        for x in (inq, outq):
            _drain_and_close(x)


_pool_q = None


def _pool_init(q):
    global _pool_q
    _pool_q = q


def _pool_work(i):
    _pool_q.put((os.getpid(), i))
    return i


@pytest.mark.parametrize("method", METHODS)
def test_executor_initializer_handover(method):
    q = ipckit.Queue()
    ctx = multiprocessing.get_context(method)
    try:
        with concurrent.futures.ProcessPoolExecutor(2, mp_context=ctx, initializer=_pool_init, initargs=(q,)) as ex:
            assert sorted(ex.map(_pool_work, range(20))) == list(range(20))
        assert sorted(q.get(timeout=10)[1] for _ in range(20)) == list(range(20))
    finally:
        _drain_and_close(q)


def test_pickling_outside_spawning_is_refused(q):
    with pytest.raises(RuntimeError, match="inheritance"):
        pickle.dumps(q)


def _producer(q, pid, n):
    for i in range(n):
        q.put((pid, i))


def _consumer(q, out, n_stop):
    got = []
    stops = 0
    while stops < 1:
        item = q.get(timeout=60)
        if item is None:
            stops += 1
            continue
        got.append(item)
    out.put(got)


def test_many_producers_many_consumers_exactly_once_in_order():
    ctx = multiprocessing.get_context("fork")
    q, out = ipckit.Queue(), ipckit.Queue()
    n, producers, consumers = 20_000, 4, 3
    procs = [ctx.Process(target=_producer, args=(q, p, n)) for p in range(producers)]
    cons = [ctx.Process(target=_consumer, args=(q, out, 1)) for _ in range(consumers)]
    try:
        for p in procs + cons:
            p.start()
        for p in procs:
            p.join(120)
            assert p.exitcode == 0
        for _ in cons:
            q.put(None)
        results = [out.get(timeout=120) for _ in cons]
        for p in cons:
            p.join(30)
        seen = set()
        for got in results:
            last = {}
            for pid, i in got:
                assert i > last.get(pid, -1), "per-producer order broken"
                last[pid] = i
                seen.add((pid, i))
        assert sum(len(r) for r in results) == producers * n == len(seen)
    finally:
        for p in procs + cons:
            if p.is_alive():
                p.kill()
        _drain_and_close(q)
        _drain_and_close(out)


# ---------------------------------------------------------------- named queues


def test_named_queue_lifecycle():
    name = unique_name()
    q = ipckit.Queue.create(name, 5, mode=0o640)
    try:
        assert q.name == name and os.stat("/dev/shm" + name).st_mode & 0o777 == 0o640
        with pytest.raises(ipckit.ExistsError):
            ipckit.Queue.create(name)
        other = ipckit.Queue.open(name)
        assert other.maxsize == 5
        q.put(np.arange(5))
        assert list(other.get(timeout=5)) == [0, 1, 2, 3, 4]
        # a named queue pickles by name outside of spawning
        again = pickle.loads(pickle.dumps(other))
        q.put("x")
        assert again.get(timeout=5) == "x"
        again.close()
        other.close()
    finally:
        q.unlink()
        q.close()
    with pytest.raises(ipckit.NotFoundError):
        ipckit.Queue.open(name)
    with pytest.raises(ValueError):
        ipckit.Queue().unlink()


def test_named_queue_outlives_creator_and_serves_a_fresh_interpreter():
    name = unique_name()
    code = textwrap.dedent(f"""
        import ipckit, numpy as np
        q = ipckit.Queue.create({name!r}, max_message_size=512)
        q.put(("hello", np.arange(100_000)))
        q.put(b"z" * 2_000_000)
        q.close()
    """)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    q = ipckit.Queue.open(name)
    try:
        text, arr = q.get(timeout=10)
        assert text == "hello" and arr.sum() == np.arange(100_000).sum()
        assert q.get(timeout=10) == b"z" * 2_000_000
        reply = textwrap.dedent(f"""
            import ipckit
            q = ipckit.Queue.open({name!r})
            print(q.get(timeout=30))
        """)
        child = subprocess.Popen([sys.executable, "-c", reply], stdout=subprocess.PIPE, text=True)
        q.put({"answer": 42})
        out, _ = child.communicate(timeout=60)
        assert out.strip() == "{'answer': 42}"
    finally:
        q.unlink()
        q.close()


def test_mode_and_validation_of_named():
    with pytest.raises((ValueError, TypeError)):
        ipckit.Queue.create("no-slash")
    name = unique_name()
    with open("/dev/shm" + name, "wb") as f:
        f.write(b"\0" * 8192)
    try:
        with pytest.raises(ValueError):
            ipckit.Queue.open(name)
    finally:
        os.unlink("/dev/shm" + name)


def test_ls_recognises_a_queue():
    from ipckit import _leftovers

    name = unique_name()
    q = ipckit.Queue.create(name)
    try:
        objs = [o for o in _leftovers.list_objects(name, inspect=False) if o.name == name]
        assert objs and objs[0].detail == "ipckit queue"
    finally:
        q.unlink()
        q.close()


# ---------------------------------------------------------------- crashes


def _everyone(ready_fd):
    q = ipckit.Queue()
    ctx = multiprocessing.get_context("fork")
    kids = [ctx.Process(target=_producer, args=(q, k, 10**9)) for k in range(2)]
    for k in kids:
        k.start()
    os.write(ready_fd, b"x")
    while True:
        q.get(timeout=60)


def test_nothing_left_after_sigkill_of_everyone():
    before = set(os.listdir("/dev/shm"))
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.setpgid(0, 0)
            os.close(r)
            _everyone(w)
        finally:
            os._exit(1)
    try:
        os.close(w)
        assert os.read(r, 1) == b"x"
        time.sleep(0.3)
        # The segment is mapped, and was never linked: /proc shows it "(deleted)".
        with open(f"/proc/{pid}/maps") as maps:
            shm = [line for line in maps if "/dev/shm/" in line]
        assert shm and all(line.rstrip().endswith("(deleted)") for line in shm)
    finally:
        os.killpg(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(r)
    time.sleep(0.2)
    assert set(os.listdir("/dev/shm")) - before == set()


def _slow_big_consumer(q, started):
    started.put("go")
    while True:
        q.get(timeout=60)


@pytest.mark.parametrize("seed", range(3))
def test_consumer_killed_mid_get_loses_at_most_one(seed):
    rng = random.Random(seed)
    ctx = multiprocessing.get_context("fork")
    q, started = ipckit.Queue(), ipckit.Queue()
    victim = ctx.Process(target=_slow_big_consumer, args=(q, started))
    victim.start()
    try:
        assert started.get(timeout=30) == "go"
        for i in range(40):
            q.put(np.full(1_500_000, i, dtype=np.int64))  # 12 MiB each, over the lane
        time.sleep(rng.uniform(0.05, 0.6))
        victim.kill()
        victim.join(10)
        q.put("end")
        got = []
        while True:
            x = q.get(timeout=60)
            if isinstance(x, str):
                break
            assert (x == x[0]).all() and x.shape == (1_500_000,)
            got.append(int(x[0]))
        # the victim took 0..k-1 and maybe k (the one it was taking); the rest comes, whole
        assert got == list(range(got[0], 40)) if got else True
        assert q.qsize() == 0
    finally:
        if victim.is_alive():
            victim.kill()
        _drain_and_close(q)
        _drain_and_close(started)


def _big_producer(q, started):
    started.put("go")
    for i in range(10**6):
        q.put(np.full(2_000_000, i, dtype=np.int64))


@pytest.mark.parametrize("seed", range(3))
def test_producer_killed_mid_put(seed):
    rng = random.Random(seed)
    ctx = multiprocessing.get_context("fork")
    q, started = ipckit.Queue(2), ipckit.Queue()
    victim = ctx.Process(target=_big_producer, args=(q, started))
    victim.start()
    try:
        assert started.get(timeout=30) == "go"
        first = q.get(timeout=30)
        assert first[0] == 0
        time.sleep(rng.uniform(0.0, 0.3))
        victim.kill()
        victim.join(10)
        got = [0]
        while True:  # what it completed comes through, whole; the one it was putting never does
            try:
                x = q.get(timeout=1.0)
            except queue.Empty:
                break
            assert x.shape == (2_000_000,) and (x == x[0]).all()
            got.append(int(x[0]))
        assert got == list(range(len(got)))
        q.put(np.arange(300_000), timeout=10)  # the queue goes on (this one fits the lane)
        assert q.get(timeout=30).sum() == np.arange(300_000).sum()
        q.put("small", timeout=10)
        assert q.get(timeout=10) == "small"
    finally:
        if victim.is_alive():
            victim.kill()
        _drain_and_close(q)
        _drain_and_close(started)


# ---------------------------------------------------------------- hostile content


def _raw_ring(q):
    return q._core.ring, q._core.lane


def test_hostile_records_are_corrupt_and_dropped(q):
    ring, lane = _raw_ring(q)
    for record in (b"", b"Z junk", b"B" + b"\xff" * 30, b"M" * 5, _queue._MARKER.pack(b"M", 1, 2**62)):
        ring.send(record)
        with pytest.raises(ipckit.CorruptError):
            q.get(timeout=5)
    q.put("fine")
    assert q.get(timeout=5) == "fine"


def test_hostile_chunk_headers(q):
    ring, lane = _raw_ring(q)
    seq = int(q._core.q.next_seq)
    q._core.q.next_seq = seq + 3
    bad_chunks = [
        _queue._CHUNK.pack(seq, 0, 2**62, 0) + b"x" * 64,  # a total of 2**62 bytes
        _queue._CHUNK.pack(seq + 1, 10**6, 100, 0) + b"x" * 64,  # an offset past the object
        b"short",
    ]
    for i, chunk in enumerate(bad_chunks):
        ring.send(_queue._MARKER.pack(b"M", seq + i, 100))
        lane.send(chunk)
        with pytest.raises(ipckit.CorruptError):
            q.get(timeout=5)
    # a marker whose writer is gone (nobody holds W): dropped, the next object comes
    ring.send(_queue._MARKER.pack(b"M", seq + 50, 100))
    q.put("after")
    assert q.get(timeout=5) == "after"
    q.put(np.ones(2 << 20))
    assert q.get(timeout=10).sum() == 2 << 20


def test_corrupt_header_refused():
    name = unique_name()
    q = ipckit.Queue.create(name)
    q.close()
    try:
        with open("/dev/shm" + name, "r+b") as f:
            f.seek(16)
            f.write(struct.pack("<Q", 999))  # maxsize no longer matches the check
        with pytest.raises(ipckit.CorruptError):
            ipckit.Queue.open(name)
    finally:
        os.unlink("/dev/shm" + name)


# ---------------------------------------------------------------- the aio hooks


def test_put_and_get_ops(q):
    from ipckit._wait import NOW, WOULD_BLOCK, retry
    from ipckit._timeouts import Deadline

    attempt, waiter = q._get_op()
    assert attempt(NOW) is WOULD_BLOCK
    put, _ = q._put_op(("op", 1))
    assert put(NOW) is None
    waiter.wait(Deadline(5))
    assert attempt(NOW) == ("op", 1)
    threading.Timer(0.2, waiter.interrupt).start()
    start = time.monotonic()
    waiter.wait(Deadline(5))
    assert time.monotonic() - start < 4
    big_put, _ = q._put_op(np.ones(3 << 20))
    threading.Thread(target=big_put, args=(NOW,)).start()
    got = retry(attempt, Deadline(10), "get", waiter)
    assert got.sum() == 3 << 20
    bounded = ipckit.Queue(1)
    try:
        p, w = bounded._put_op(1)
        assert p(NOW) is None
        p2, w2 = bounded._put_op(2)
        assert p2(NOW) is WOULD_BLOCK
        threading.Timer(0.1, bounded.get).start()
        w2.wait(Deadline(5))
        assert p2(NOW) is None
    finally:
        bounded.close()


# ---------------------------------------------------------------- the framing, sans-IO (hypothesis)

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_leaves = st.one_of(
    st.integers(), st.floats(allow_nan=False), st.text(max_size=20), st.binary(max_size=9000),
    st.binary(max_size=9000).map(bytearray),
    st.tuples(st.sampled_from(["u1", "i4", "f8", "c16"]), st.integers(0, 3000)).map(lambda t: np.arange(t[1]).astype(t[0])),
)
_objects = st.recursive(_leaves, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
                        max_leaves=8)


def _same(a, b):
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def _frame_bytes(enc):
    if enc.record is not None:
        return bytearray(enc.record)
    out = bytearray(enc.total)
    for start, view in enc.parts:
        out[start : start + view.nbytes] = view
    return out


@settings(max_examples=60, deadline=None)
@given(_objects, st.sampled_from([64, 4096, 100_000]))
def test_encode_decode_roundtrip(obj, record_size):
    enc = _queue._encode(obj, record_size)
    blob = _frame_bytes(enc)
    if enc.record is not None and blob[:1] != b"B":
        got = pickle.loads(blob)
    else:
        got = _queue._decode_frame(memoryview(blob), "test")
    assert _same(obj, got)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 40), st.integers(0, 2**64 - 1), st.binary(max_size=200))
def test_hostile_frames_never_crash_or_allocate(nbuf, pickle_len, tail):
    blob = bytearray(_queue._FRAME.pack(b"B", nbuf, pickle_len) + tail)
    try:
        _queue._decode_frame(memoryview(blob), "test")
    except ipckit.CorruptError:
        pass
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError,
            struct.error, OverflowError, ImportError, UnicodeDecodeError):
        pass  # a malformed pickle inside a well-formed frame: what pickle.loads raises


# ---------------------------------------------------------------- SIGKILL at random moments


def _chaos_item(pid, i):
    return (pid, i, np.full(300_000, i, dtype=np.int32)) if i % 4 == 0 else (pid, i)


def _chaos_producer(q, pid, n):
    for i in range(n):
        q.put(_chaos_item(pid, i))
        if i % 3 == 0:
            time.sleep(0.001)  # so that the victims die while objects still flow
    q.put((pid, None))


def _chaos_consumer(q, report_fd):
    while True:
        item = q.get(timeout=60)
        os.write(report_fd, struct.pack("<ii", item[0], item[1] if item[1] is not None else -1))


@pytest.mark.parametrize("seed", range(2))
def test_random_sigkills_leave_the_queue_usable(seed):
    """Consumers killed at random moments lose at most the object each was taking;
    the survivors get everything else exactly once, whole, in per-producer order."""
    rng = random.Random(seed)
    ctx = multiprocessing.get_context("fork")
    q = ipckit.Queue(8)
    n = 1500
    r, w = os.pipe()
    victims = [ctx.Process(target=_chaos_consumer, args=(q, w)) for _ in range(3)]
    producers = [ctx.Process(target=_chaos_producer, args=(q, p, n)) for p in range(2)]
    try:
        for p in victims + producers:
            p.start()
        os.close(w)
        for v in victims:
            time.sleep(rng.uniform(0.01, 0.2))
            v.kill()
            v.join(10)
        got = []
        while True:  # until the producers are done and the queue is empty
            try:
                pid, i, *rest = q.get(timeout=0.5)
            except queue.Empty:
                if not any(p.is_alive() for p in producers):
                    break
                continue
            if i is None:
                continue
            if rest:
                assert (rest[0] == i).all() and rest[0].shape == (300_000,)
            got.append((pid, i))
        for p in producers:
            p.join(30)
            assert p.exitcode == 0
        q.put(np.arange(400_000), timeout=10)  # the queue goes on
        assert q.get(timeout=10).sum() == np.arange(400_000).sum()
        reported = []
        data = b""
        while chunk := os.read(r, 65536):
            data += chunk
        reported = [struct.unpack_from("<ii", data, k) for k in range(0, len(data) - len(data) % 8, 8)]
        reported = [(pid, i) for pid, i in reported if i >= 0]
        assert len(set(got)) == len(got) and not set(got) & set(reported)
        for pid in (0, 1):
            mine = [i for p, i in got if p == pid]
            assert mine == sorted(mine)
        missing = {(p, i) for p in (0, 1) for i in range(n)} - set(got) - set(reported)
        assert len(missing) <= len(victims), missing  # at most one in the hands of each victim
    finally:
        for p in victims + producers:
            if p.is_alive():
                p.kill()
        os.close(r)
        _drain_and_close(q)


def test_close_while_another_thread_joins_or_gets_is_an_error_not_a_crash():
    # The header stays mapped while a call on another thread may still be inside C.
    import threading

    for _ in range(20):
        q = ipckit.JoinableQueue()
        q.put(1)
        errors = []

        def join() -> None:
            try:
                q.join(timeout=5)
            except Exception as exc:  # ClosedError/ValueError expected
                errors.append(exc)

        t = threading.Thread(target=join)
        t.start()
        time.sleep(0.01)
        q.close()
        t.join(10)
        assert not t.is_alive()
        assert len(errors) == 1 and isinstance(errors[0], ipckit.ClosedError)
