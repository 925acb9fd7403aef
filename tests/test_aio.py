"""ipckit.aio: the async twins, under asyncio and trio (through anyio), across real processes.

The contract is docs API.md "Async: ``ipckit.aio``" and "Settled details (Queue and aio)".
Most behaviours repeat over every primitive, so they are written once over a table of
*cases* (``CASES`` below): each case is one kind of wait (a pipe recv, an accept, a
semaphore acquire, a Queue get, ...) with a way to supply what it waits for from a
synchronous handle. The table drives:

* ``timeout=`` results and their timing (never early, not much late);
* cancellation consumes nothing (a race between a supply and a cancel, many times);
* closing the object from another task ends the wait with ``ClosedError``;
* the loop is never blocked while a task waits (a ticker keeps ticking);
* an idle waiter does not busy-poll (CPU time across an idle window).

Round trips, fairness (many tasks on one queue, a slow producer in another process),
torn-frame checks of cancelled stream sends, ``wrap()``, bad input and ``async for``
are written out one by one, with fork and spawn children and non-Python children
(``sh``/``cat`` on an inherited descriptor).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import multiprocessing
import os
import pickle
import queue
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Optional

import anyio
import numpy as np
import pytest

import ipckit
import ipckit.aio as aio
from ipckit.testing import unique_name

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

CONTEXTS = ["fork", "spawn"]
ANYIO_BACKENDS = ["asyncio", "trio"]


@pytest.fixture(params=ANYIO_BACKENDS)
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def procs():  # type: ignore[no-untyped-def]
    """Children this test starts; any still running at the end is killed (only ours)."""
    started: list = []
    yield started
    for proc in started:
        if proc.is_alive():
            proc.kill()
        proc.join(5)


def start(procs: list, context: str, target: Callable, *args: Any) -> Any:
    proc = multiprocessing.get_context(context).Process(target=target, args=args, daemon=True)
    proc.start()
    procs.append(proc)
    return proc


async def ajoin(proc: Any, timeout: float = 30) -> None:
    """Join a child without blocking the loop; it must have exited with status 0."""
    await anyio.to_thread.run_sync(proc.join, timeout)
    assert not proc.is_alive(), "child hung"
    assert proc.exitcode == 0, f"child exited with {proc.exitcode}"


def pattern(size: int, seed: int = 0) -> bytes:
    block = bytes((i * 131 + seed) & 0xFF for i in range(251))
    return (block * (size // len(block) + 1))[:size]


SIZES = (0, 1, 4096, 64 * 1024 + 1, 1024 * 1024 + 3)


# ================================================================ children (module level: spawn imports them)


def _child_run(backend: str, fn: Callable, *args: Any) -> None:
    """A child that runs an async function of this module under *backend*.

    In a fresh thread: a fork child inherits the parent's "a loop runs in this
    thread" state (asyncio's and trio's thread-locals) from the forking thread."""
    import threading

    failed: list = []

    def run() -> None:
        try:
            anyio.run(fn, *args, backend=backend)
        except BaseException as exc:  # re-raised in the main thread
            failed.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if failed:
        raise failed[0]


async def _child_send_sizes(end: Any) -> None:
    # A twin pickled to a child arrives as a twin.
    assert type(end).__module__ == "ipckit.aio", type(end)
    for i, size in enumerate(SIZES):
        await end.send(pattern(size, i), timeout=20)
    end.close()


def _child_echo(end: Any, other: Any) -> None:
    """Sync echo: every message back until the peer closes. *other* is the parent's
    end, which a fork child inherits: closed first, or the peer's close is no EOF."""
    getattr(other, "sync", other).close()
    end = getattr(end, "sync", end)
    try:
        while True:
            end.send(end.recv(timeout=20))
    except ipckit.ClosedError:
        pass
    end.close()


def _child_fifo_writer(path: str, count: int, delay: float) -> None:
    time.sleep(delay)
    with ipckit.Pipe.fifo(path, "w", timeout=20) as w:
        for i in range(count):
            w.send(b"fifo %d" % i)


def _child_connect_and_echo(address: str, count: int) -> None:
    for i in range(count):
        with ipckit.Socket.connect(address, timeout=20) as c:
            c.send(b"hello %d" % i)
            assert c.recv(timeout=20) == b"echo hello %d" % i


def _child_datagrams(address: str, count: int) -> None:
    with ipckit.Socket.connect(address, timeout=20) as c:
        for i in range(count):
            c.send(b"dgram %d" % i)
            time.sleep(0.002)


def _child_send_fd(end: Any, text: bytes) -> None:
    end = getattr(end, "sync", end)
    r, w = os.pipe()
    os.write(w, text)
    os.close(w)
    end.send_fds(b"take this", [r])
    os.close(r)
    assert end.recv(timeout=20) == b"done"
    end.close()


def _child_mq_producer(name: Any, backend: str, count: int, delay: float, size: int = 0) -> None:
    with ipckit.MessageQueue.open(name, backend=backend) as q:
        for i in range(count):
            q.send(b"%d:" % i + b"x" * size, timeout=20)
            if delay:
                time.sleep(delay)


def _child_mq_consumer(name: Any, backend: str, count: int, reply: Any) -> None:
    """Receive *count* messages and report their digest through *reply* (a pipe end)."""
    got = []
    with ipckit.MessageQueue.open(name, backend=backend) as q:
        for _ in range(count):
            got.append(q.recv(timeout=20))
    getattr(reply, "sync", reply).send(pickle.dumps(got))


def _child_sem_release(name: Any, backend: str, times: int, delay: float) -> None:
    with contextlib.closing(ipckit.Semaphore.open(name, backend=backend)) as s:  # a Semaphore's with acquires
        for _ in range(times):
            time.sleep(delay)
            s.release()


def _child_signals(pid: int, sigs: list, delay: float) -> None:
    time.sleep(delay)
    for sig, value in sigs:
        ipckit.Signal.send(pid, sig, value=value)
        time.sleep(0.002)


def _child_queue_put(q: Any, objs: list, delay: float) -> None:
    q = getattr(q, "sync", q)
    for obj in objs:
        q.put(obj)
        if delay:
            time.sleep(delay)
    q.close()
    q.join_thread()


def _child_joinable_worker(q: Any, count: int, results: Any) -> None:
    q = getattr(q, "sync", q)
    results = getattr(results, "sync", results)
    for _ in range(count):
        item = q.get(timeout=20)
        time.sleep(0.005)
        results.put(item * 2)
        q.task_done()
    results.close()
    results.join_thread()


def _child_pipe_producer(end: Any, count: int, delay: float) -> None:
    end = getattr(end, "sync", end)
    for i in range(count):
        end.send(b"%d:" % i + pattern(i * 97 % 5000, i))
        time.sleep(delay)
    end.close()


def _child_slow_reader(end: Any, writer: Any, reply: Any, wait: float) -> None:
    """Sleep first (the parent's big send clogs), then receive every frame and report
    (length, sha256) of each through *reply*. *writer* (inherited) is closed first."""
    getattr(writer, "sync", writer).close()
    end = getattr(end, "sync", end)
    reply = getattr(reply, "sync", reply)
    time.sleep(wait)
    frames = []
    try:
        while True:
            data = end.recv(timeout=20)
            frames.append((len(data), hashlib.sha256(data).hexdigest()))
    except ipckit.ClosedError:
        pass
    reply.send(pickle.dumps(frames))


async def _child_wrapped_writer(writer: Any) -> None:
    twin = aio.wrap(writer)
    assert twin.sync is writer
    await twin.send(b"from a wrapped end in pid %d" % os.getpid(), timeout=20)
    await twin.write(b"raw", timeout=20)
    twin.close()


# ================================================================ 1. round trips across processes


@pytest.mark.parametrize("context", CONTEXTS)
async def test_pipe_twin_to_child_and_async_for_ends_at_close(procs, context: str, anyio_backend: str) -> None:
    p = aio.Pipe()
    with p:
        child = start(procs, context, _child_run, anyio_backend, _child_send_sizes, p.writer)
        p.writer.close()  # ours; the child holds its own
        got = []
        with anyio.fail_after(30):
            async for msg in p.reader:
                got.append(msg)
        assert got == [pattern(size, i) for i, size in enumerate(SIZES)]
        await ajoin(child)
        with pytest.raises(ipckit.ClosedError):
            await p.reader.recv(timeout=1)  # end of stream stays end of stream


@pytest.mark.parametrize("context", CONTEXTS)
async def test_duplex_echo_across_processes(procs, context: str) -> None:
    a, b = aio.Pipe.duplex()
    with a:
        child = start(procs, context, _child_echo, b, a)
        b.close()
        for i, size in enumerate(SIZES):
            await a.send(pattern(size, i), timeout=20)
            assert await a.recv(timeout=20) == pattern(size, i)
        # Both ways at once: a big message out while the echo comes back.
        big = pattern(3 * 1024 * 1024 + 5, 9)
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: a.send(big, timeout=20))
            assert await a.recv(timeout=20) == big
    await ajoin(child)


async def test_fifo_open_waits_for_writer_then_round_trips(procs, tmp_path) -> None:
    path = str(tmp_path / "fifo")
    child = start(procs, "fork", _child_fifo_writer, path, 5, 0.3)
    begin = time.monotonic()
    with anyio.fail_after(20):
        reader = await aio.Pipe.fifo(path, "r", timeout=20)
    assert time.monotonic() - begin >= 0.2  # it really waited for the other side
    with reader:
        got = [msg async for msg in reader]
    assert got == [b"fifo %d" % i for i in range(5)]
    await ajoin(child)


async def test_fifo_open_timeout(tmp_path) -> None:
    path = str(tmp_path / "lonely")
    await expect_timeout_async(lambda: aio.Pipe.fifo(path, "r", timeout=0.2), 0.2)


def _stream_address(kind: str, tmp_path: Any) -> str:
    if kind == "tcp":
        return "tcp://127.0.0.1:0"
    if kind == "unix-path":
        return f"unix://{tmp_path}/s"
    return f"unix://@{unique_name()[1:]}"


@pytest.mark.parametrize("context", CONTEXTS)
@pytest.mark.parametrize("kind", ["unix", "unix-path", "tcp"])
async def test_stream_socket_listener_async_for_across_processes(procs, context: str, kind: str, tmp_path) -> None:
    count = 3
    with aio.Socket.listen(_stream_address(kind, tmp_path)) as listener:
        child = start(procs, context, _child_connect_and_echo, listener.address, count)
        served = 0
        with anyio.fail_after(30):
            async for conn in listener:
                assert type(conn).__module__ == "ipckit.aio"
                with conn:
                    msg = await conn.recv(timeout=20)
                    await conn.send(b"echo " + msg, timeout=20)
                    # The child closes after the echo: the stream ends cleanly.
                    assert [m async for m in conn] == []
                served += 1
                if served == count:
                    break
        await ajoin(child)


@pytest.mark.parametrize("context", CONTEXTS)
@pytest.mark.parametrize("kind", ["udp", "unix+dgram"])
async def test_datagram_across_processes(procs, context: str, kind: str) -> None:
    address = "udp://127.0.0.1:0" if kind == "udp" else f"unix+dgram://@{unique_name()[1:]}"
    with aio.Socket.listen(address) as server:
        child = start(procs, context, _child_datagrams, server.address, 5)
        got = [await server.recv(timeout=20) for _ in range(3)]
        data, sender = await server.recv_from(timeout=20)
        got.append(data)
        got.append(await server.read(65536, timeout=20))
        assert got == [b"dgram %d" % i for i in range(5)]
        await ajoin(child)
        if kind == "udp":
            assert sender is not None and sender.startswith("udp://127.0.0.1:")
            # send_to a peer: our own listener, round trip on the loop.
            with aio.Socket.listen("udp://127.0.0.1:0") as other:
                await server.send_to(b"to you", other.address, timeout=5)
                assert await other.recv(timeout=5) == b"to you"


@pytest.mark.parametrize("context", CONTEXTS)
async def test_send_fds_recv_fds_across_processes(procs, context: str) -> None:
    a, b = aio.Pipe.duplex()
    with a:
        child = start(procs, context, _child_send_fd, b, b"through SCM_RIGHTS")
        b.close()
        data, fds = await a.recv_fds(4, timeout=20)
        assert data == b"take this" and len(fds) == 1
        try:
            assert os.read(fds[0], 100) == b"through SCM_RIGHTS"
        finally:
            for fd in fds:
                os.close(fd)
        await a.send(b"done", timeout=20)
        await ajoin(child)
        # And the other way, in one process: a descriptor of ours arrives usable.
        c, d = aio.Pipe.duplex()
        with c, d:
            r, w = os.pipe()
            try:
                assert await c.send_fds(b"fd", [w], timeout=5) == 2
                data, fds = await d.recv_fds(1, bufsize=16, timeout=5)
                assert data == b"fd" and len(fds) == 1
                os.write(fds[0], b"via copy")
                os.close(fds[0])
                assert os.read(r, 100) == b"via copy"
            finally:
                os.close(r)
                os.close(w)


@pytest.fixture(params=["posix", "sysv", "shm"])
def mq_backend(request: pytest.FixtureRequest) -> str:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def mq_name(mq_backend: str, make_name, make_key):  # type: ignore[no-untyped-def]
    return make_key() if mq_backend == "sysv" else make_name()


@pytest.mark.parametrize("context", CONTEXTS)
async def test_message_queue_round_trip_across_processes(procs, context: str, mq_backend: str, mq_name) -> None:
    count = 50
    with aio.MessageQueue.create(mq_name, backend=mq_backend) as q:
        assert q.backend == mq_backend and q.name == mq_name
        child = start(procs, context, _child_mq_producer, mq_name, mq_backend, count, 0.001, 100)
        got = [await q.recv(timeout=20) for _ in range(count - 10)]
        got += [(await q.receive(timeout=20)).data for _ in range(10)]
        assert got == [b"%d:" % i + b"x" * 100 for i in range(count)]
        await ajoin(child)
        # And back: the child receives what the loop sends.
        reply = ipckit.Pipe()
        with reply:
            child = start(procs, context, _child_mq_consumer, mq_name, mq_backend, 5, reply.writer)
            for i in range(5):
                await q.send(b"to child %d" % i, timeout=20)
            assert pickle.loads(await aio.wrap(reply.reader).recv(timeout=20)) == [b"to child %d" % i for i in range(5)]
            await ajoin(child)
        assert len(q) == 0
        q.unlink()


async def test_posix_priorities_and_sysv_types(make_name, make_key) -> None:
    with aio.MessageQueue.create(make_name()) as q:
        for data, prio in ((b"low", 1), (b"high", 7), (b"mid", 3)):
            await q.send(data, priority=prio, timeout=5)
        got = [await q.receive(timeout=5) for _ in range(3)]
        assert [(m.data, m.priority) for m in got] == [(b"high", 7), (b"mid", 3), (b"low", 1)]
        q.unlink()
    with aio.MessageQueue.create(make_key(), backend="sysv") as q:
        for i, t in enumerate([3, 1, 2]):
            await q.send(b"%d" % i, type=t, timeout=5)
        assert (await q.receive(type=2, timeout=5)).data == b"2"
        assert (await q.receive(type=-3, timeout=5)).type == 1
        assert (await q.receive(timeout=5)).data == b"0"
        q.unlink()


@pytest.mark.parametrize("context", CONTEXTS)
async def test_shm_queue_batches_and_recv_into_across_processes(procs, context: str, make_name) -> None:
    name = make_name()
    with aio.MessageQueue.create(name, max_messages=64, max_message_size=4096, backend="shm") as q:
        child = start(procs, context, _child_mq_producer, name, "shm", 40, 0.0, 10)
        buf = bytearray(4096)
        n = await q.recv_into(buf, timeout=20)
        assert bytes(buf[:n]) == b"0:" + b"x" * 10
        got = [bytes(buf[:n])]
        while len(got) < 40:
            batch = await q.recv_many(16, timeout=20)
            assert 1 <= len(batch) <= 16
            got += batch
        assert got == [b"%d:" % i + b"x" * 10 for i in range(40)]
        await ajoin(child)
        # recv_into a buffer too small: MessageTooLarge and the message stays queued.
        await q.send(b"y" * 100, timeout=5)
        with pytest.raises(ipckit.MessageTooLarge):
            await q.recv_into(bytearray(10), timeout=5)
        assert len(q) == 1 and await q.recv(timeout=5) == b"y" * 100
        # send_many from the loop, received in a child.
        reply = ipckit.Pipe()
        with reply:
            child = start(procs, context, _child_mq_consumer, name, "shm", 30, reply.writer)
            await q.send_many([b"batch %d" % i for i in range(30)], timeout=20)
            assert pickle.loads(await aio.wrap(reply.reader).recv(timeout=20)) == [b"batch %d" % i for i in range(30)]
            await ajoin(child)
        q.unlink()


async def test_shm_send_many_blocks_while_full_then_completes(make_name) -> None:
    with aio.MessageQueue.create(make_name(), max_messages=4, max_message_size=64, backend="shm") as q:
        other = ipckit.MessageQueue.open(q.name, backend="shm")
        with other:
            got: list = []

            async def drain() -> None:
                while len(got) < 20:
                    got.extend(await anyio.to_thread.run_sync(lambda: other.recv_many(8, timeout=20)))

            with anyio.fail_after(20):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(drain)
                    await q.send_many([b"%d" % i for i in range(20)], timeout=20)
            assert got == [b"%d" % i for i in range(20)]
        with pytest.raises(ipckit.Timeout) as info:
            await q.send_many([b"a"] * 6, timeout=0.1)
        assert info.value.sent == 4  # type: ignore[attr-defined]
        q.unlink()


@pytest.fixture(params=["posix", "sysv"])
def sem_backend(request: pytest.FixtureRequest) -> str:
    return request.param  # type: ignore[no-any-return]


@pytest.mark.parametrize("context", CONTEXTS)
async def test_semaphore_released_by_child(procs, context: str, sem_backend: str, make_name, make_key) -> None:
    name = make_key() if sem_backend == "sysv" else make_name()
    sem = aio.Semaphore.create(name, 0, backend=sem_backend)
    with contextlib.closing(sem):
        child = start(procs, context, _child_sem_release, name, sem_backend, 3, 0.05)
        for _ in range(3):
            assert await sem.acquire(timeout=20) is True
        await ajoin(child)
        assert sem.value == 0
        assert await sem.acquire(blocking=False) is False
        sem.release(2)
        async with sem:
            assert sem.value == 1
        assert sem.value == 2
        sem.unlink()


@pytest.mark.parametrize("context", CONTEXTS)
async def test_signal_catch_payloads_from_child(procs, context: str) -> None:
    sigs = [("SIGRTMIN+1", i) for i in range(5)] + [("SIGUSR1", 42)]
    async with aio.Signal.catch("SIGRTMIN+1", "SIGUSR1") as s:
        child = start(procs, context, _child_signals, os.getpid(), sigs, 0.1)
        infos = [await s.wait(timeout=20) for _ in range(3)]
        with anyio.fail_after(20):
            async for info in s:
                infos.append(info)
                if len(infos) == len(sigs):
                    break
        await ajoin(child)
    rt = signal.SIGRTMIN + 1
    assert [(i.signo, i.value) for i in infos if i.signo == rt] == [(rt, v) for v in range(5)]
    assert [(i.signo, i.value) for i in infos if i.signo == signal.SIGUSR1] == [(signal.SIGUSR1, 42)]
    assert {i.pid for i in infos} == {child.pid}
    assert {i.uid for i in infos} == {os.getuid()}


async def test_signal_catch_plain_with_block_and_drain() -> None:
    with aio.Signal.catch("SIGUSR2") as s:
        os.kill(os.getpid(), signal.SIGUSR2)
        info = await s.wait(timeout=5)
        assert info.signo == signal.SIGUSR2 and info.value is None and info.pid == os.getpid()
        ipckit.Signal.send(os.getpid(), "SIGUSR2")
        await anyio.sleep(0.05)
        drained = s.drain()
        assert [i.signo for i in drained] == [signal.SIGUSR2]


QUEUE_OBJS = [None, 1, "text", b"x" * 100, (1, 2.0), {"k": [1, 2]}, b"big" * 400_000, np.arange(10_000, dtype=np.int64)]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and bool((a == b).all())
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("context", CONTEXTS)
@pytest.mark.parametrize("cls", ["Queue", "SimpleQueue", "JoinableQueue"])
async def test_queues_from_child(procs, context: str, cls: str) -> None:
    q = getattr(aio, cls)()
    try:
        child = start(procs, context, _child_queue_put, q, QUEUE_OBJS, 0.002)
        got = [await q.get() if cls == "SimpleQueue" else await q.get(timeout=20) for _ in QUEUE_OBJS]
        for a, b in zip(QUEUE_OBJS, got):
            assert _same(a, b), (a, b)
        assert got[-1].flags.writeable
        await ajoin(child)
        if cls != "SimpleQueue":
            assert q.empty() and q.qsize() == 0
    finally:
        q.close()
        if cls != "SimpleQueue":
            q.join_thread()


@pytest.mark.parametrize("context", CONTEXTS)
async def test_joinable_queue_join_waits_for_task_done(procs, context: str) -> None:
    tasks = aio.JoinableQueue()
    results = aio.Queue()
    try:
        count = 10
        child = start(procs, context, _child_joinable_worker, tasks, count, results)
        for i in range(count):
            await tasks.put(i, timeout=5)
        begin = time.monotonic()
        with anyio.fail_after(20):
            await tasks.join()
        assert time.monotonic() - begin >= 0.02  # the child took >= 5 ms per task
        got = sorted([await results.get(timeout=20) for _ in range(count)])
        assert got == [i * 2 for i in range(count)]
        await ajoin(child)
        await tasks.join(timeout=0)  # nothing pending: returns at once
    finally:
        for q in (tasks, results):
            q.close()
            q.join_thread()


async def test_named_queue_create_open(make_name) -> None:
    name = make_name()
    q = aio.Queue.create(name, maxsize=2)
    try:
        other = aio.Queue.open(name)
        try:
            await q.put({"hello": 1})
            assert await other.get(timeout=5) == {"hello": 1}
            with pytest.raises(ipckit.ExistsError):
                aio.Queue.create(name)
        finally:
            other.close()
            other.join_thread()
    finally:
        q.close()
        q.join_thread()
        q.unlink()
    with pytest.raises(ipckit.NotFoundError):
        aio.Queue.open(name)


# ================================================================ the table of waits


@dataclass
class Case:
    """One kind of wait. ``wait(timeout)`` awaits an item; ``supply(i)`` (sync, plain)
    makes item *i* available; ``check(result, i)`` (async) is true when *result* is
    item *i*; ``expired`` is the exception class of an expired wait, or ``False`` for
    a wait that returns False (Semaphore.acquire); ``close()`` closes the awaited object."""

    wait: Callable[[Optional[float]], Awaitable[Any]]
    supply: Callable[[int], None]
    check: Callable[[Any, int], Awaitable[bool]]
    close: Callable[[], None]
    expired: Any = ipckit.Timeout
    closed_exc: Any = ipckit.ClosedError
    pending: Callable[[], Any] = field(default=lambda: None)


def _is(i_to_bytes: Callable[[int], bytes]) -> Callable[[Any, int], Awaitable[bool]]:
    async def check(result: Any, i: int) -> bool:
        return result == i_to_bytes(i)  # type: ignore[no-any-return]

    return check


def _b(i: int) -> bytes:
    return b"item %d" % i


async def case_pipe(stack: contextlib.AsyncExitStack, env: Any) -> Case:
    p = stack.enter_context(aio.Pipe())
    return Case(lambda t: p.reader.recv(timeout=t), lambda i: p.sync.writer.send(_b(i)), _is(_b), p.reader.close)


async def case_pipe_read(stack: contextlib.AsyncExitStack, env: Any) -> Case:
    p = stack.enter_context(aio.Pipe())
    return Case(lambda t: p.reader.read(100, timeout=t), lambda i: p.sync.writer.write(_b(i)), _is(_b), p.reader.close)


async def case_duplex(stack: contextlib.AsyncExitStack, env: Any) -> Case:
    a, b = aio.Pipe.duplex()
    stack.enter_context(a)
    stack.enter_context(b)
    return Case(lambda t: b.recv(timeout=t), lambda i: a.sync.send(_b(i)), _is(_b), b.close)


def _conn_case(address: str) -> Callable:
    async def make(stack: contextlib.AsyncExitStack, env: Any) -> Case:
        listener = stack.enter_context(aio.Socket.listen(address() if callable(address) else address))
        client = stack.enter_context(ipckit.Socket.connect(listener.address, timeout=5))
        conn = stack.enter_context(await listener.accept(timeout=5))
        return Case(lambda t: conn.recv(timeout=t), lambda i: client.send(_b(i)), _is(_b), conn.close)

    return make


def _dgram_case(address: Callable[[], str]) -> Callable:
    async def make(stack: contextlib.AsyncExitStack, env: Any) -> Case:
        server = stack.enter_context(aio.Socket.listen(address()))
        client = stack.enter_context(ipckit.Socket.connect(server.address, timeout=5))
        return Case(lambda t: server.recv(timeout=t), lambda i: client.send(_b(i)), _is(_b), server.close)

    return make


async def case_accept(stack: contextlib.AsyncExitStack, env: Any) -> Case:
    listener = stack.enter_context(aio.Socket.listen(f"unix://@{unique_name()[1:]}"))
    clients: list = []
    stack.callback(lambda: [c.close() for c in clients])

    def supply(i: int) -> None:
        c = ipckit.Socket.connect(listener.address, timeout=5)
        c.send(_b(i))
        clients.append(c)

    async def check(conn: Any, i: int) -> bool:
        with conn:
            return await conn.recv(timeout=5) == _b(i)  # type: ignore[no-any-return]

    return Case(lambda t: listener.accept(timeout=t), supply, check, listener.close)


async def case_tcp_accept(stack: contextlib.AsyncExitStack, env: Any) -> Case:
    listener = stack.enter_context(aio.Socket.listen("tcp://127.0.0.1:0"))
    clients: list = []
    stack.callback(lambda: [c.close() for c in clients])

    def supply(i: int) -> None:
        c = ipckit.Socket.connect(listener.address, timeout=5)
        c.send(_b(i))
        clients.append(c)

    async def check(conn: Any, i: int) -> bool:
        with conn:
            return await conn.recv(timeout=5) == _b(i)  # type: ignore[no-any-return]

    return Case(lambda t: listener.accept(timeout=t), supply, check, listener.close)


def _mq_case(backend: str, how: str = "recv") -> Callable:
    async def make(stack: contextlib.AsyncExitStack, env: Any) -> Case:
        name = env.make_key() if backend == "sysv" else env.make_name()
        extra = {"max_messages": 8, "max_message_size": 128} if backend != "sysv" else {}
        q = stack.enter_context(aio.MessageQueue.create(name, backend=backend, **extra))
        stack.callback(q.unlink)
        other = stack.enter_context(ipckit.MessageQueue.open(name, backend=backend))
        if how == "recv":
            wait = lambda t: q.recv(timeout=t)  # noqa: E731
            check = _is(_b)
        elif how == "receive":
            wait = lambda t: q.receive(timeout=t)  # noqa: E731

            async def check(m: Any, i: int) -> bool:
                return m.data == _b(i)  # type: ignore[no-any-return]
        elif how == "recv_into":
            buf = bytearray(128)
            wait = lambda t: q.recv_into(buf, timeout=t)  # noqa: E731

            async def check(n: Any, i: int) -> bool:
                return bytes(buf[:n]) == _b(i)
        else:  # recv_many
            wait = lambda t: q.recv_many(4, timeout=t)  # noqa: E731

            async def check(batch: Any, i: int) -> bool:
                return batch == [_b(i)]  # type: ignore[no-any-return]

        return Case(wait, lambda i: other.send(_b(i)), check, q.close, pending=lambda: len(other))

    return make


def _sem_case(backend: str) -> Callable:
    async def make(stack: contextlib.AsyncExitStack, env: Any) -> Case:
        name = env.make_key() if backend == "sysv" else env.make_name()
        sem = aio.Semaphore.create(name, 0, backend=backend)
        stack.callback(sem.close)
        stack.callback(sem.unlink)
        other = ipckit.Semaphore.open(name, backend=backend)  # (its `with` would acquire)
        stack.callback(other.close)

        async def check(result: Any, i: int) -> bool:
            return result is True

        return Case(lambda t: sem.acquire(timeout=t), lambda i: other.release(), check, sem.close,
                    expired=False, pending=lambda: other.value)

    return make


async def case_signal(stack: contextlib.AsyncExitStack, env: Any) -> Case:
    catcher = aio.Signal.catch("SIGRTMIN+4")
    stack.enter_context(catcher)

    async def check(info: Any, i: int) -> bool:
        return info.signo == signal.SIGRTMIN + 4 and info.value == i  # type: ignore[no-any-return]

    return Case(lambda t: catcher.wait(timeout=t), lambda i: ipckit.Signal.send(os.getpid(), "SIGRTMIN+4", value=i),
                check, catcher.close)


def _queue_case(cls: str) -> Callable:
    async def make(stack: contextlib.AsyncExitStack, env: Any) -> Case:
        q = getattr(aio, cls)()

        def done() -> None:
            q.close()
            if cls != "SimpleQueue":
                q.join_thread()

        stack.callback(done)

        async def check(obj: Any, i: int) -> bool:
            return obj == ("obj", i)  # type: ignore[no-any-return]

        if cls == "SimpleQueue":
            async def wait(t: Optional[float]) -> Any:
                if t is None:
                    return await q.get()
                with anyio.fail_after(t):
                    return await q.get()
            expired = TimeoutError
            closed = OSError
        else:
            wait = lambda t: q.get(timeout=t)  # noqa: E731
            expired = queue.Empty
            closed = ipckit.ClosedError
        return Case(wait, lambda i: q.sync.put(("obj", i)), check, q.close, expired=expired, closed_exc=closed)

    return make


def _unix_addr() -> str:
    return f"unix://@{unique_name()[1:]}"


CASES: dict[str, Callable] = {
    "pipe": case_pipe,
    "pipe-read": case_pipe_read,
    "duplex": case_duplex,
    "unix-conn": _conn_case(_unix_addr),
    "tcp-conn": _conn_case("tcp://127.0.0.1:0"),
    "udp": _dgram_case(lambda: "udp://127.0.0.1:0"),
    "unix-dgram": _dgram_case(lambda: f"unix+dgram://@{unique_name()[1:]}"),
    "accept": case_accept,
    "tcp-accept": case_tcp_accept,
    "mq-posix": _mq_case("posix"),
    "mq-posix-receive": _mq_case("posix", "receive"),
    "mq-sysv": _mq_case("sysv"),
    "mq-sysv-receive": _mq_case("sysv", "receive"),
    "mq-shm": _mq_case("shm"),
    "mq-shm-recv_into": _mq_case("shm", "recv_into"),
    "mq-shm-recv_many": _mq_case("shm", "recv_many"),
    "sem-posix": _sem_case("posix"),
    "sem-sysv": _sem_case("sysv"),
    "signal": case_signal,
    "Queue": _queue_case("Queue"),
    "JoinableQueue": _queue_case("JoinableQueue"),
    "SimpleQueue": _queue_case("SimpleQueue"),
}


@dataclass
class Env:
    make_name: Callable[[], str]
    make_key: Callable[[], int]


@pytest.fixture
def env(make_name, make_key) -> Env:  # type: ignore[no-untyped-def]
    return Env(make_name, make_key)


@contextlib.asynccontextmanager
async def open_case(kind: str, env: Env):  # type: ignore[no-untyped-def]
    async with contextlib.AsyncExitStack() as stack:
        yield await CASES[kind](stack, env)


async def expect_timeout_async(call: Callable[[], Awaitable[Any]], wait: float, exc: Any = ipckit.Timeout) -> float:
    """*call* ends with *exc* (or returns False when exc is False), no earlier than
    *wait* seconds, and not absurdly late; returns the elapsed time."""
    begin = time.monotonic()
    if exc is False:
        assert await call() is False
    else:
        with pytest.raises(exc):
            await call()
    elapsed = time.monotonic() - begin
    assert elapsed >= wait, f"returned after {elapsed:.4f} s, before its {wait} s timeout"
    assert elapsed < wait + 2, f"took {elapsed:.3f} s for a {wait} s timeout"
    return elapsed


# ================================================================ 2. timeouts


@pytest.mark.parametrize("kind", sorted(CASES))
async def test_timeout_results_and_timing(kind: str, env: Env) -> None:
    async with open_case(kind, env) as case:
        await expect_timeout_async(lambda: case.wait(0.15), 0.15, case.expired)
        await expect_timeout_async(lambda: case.wait(0), 0, case.expired)
        if kind in ("Queue", "JoinableQueue"):  # multiprocessing: a negative timeout is 0
            await expect_timeout_async(lambda: case.wait(-1), 0, case.expired)
        elif kind != "SimpleQueue":  # as sync: a negative timeout is a ValueError, before waiting
            with pytest.raises(ValueError):
                await case.wait(-1)
        # A Timeout is a TimeoutError.
        if case.expired is ipckit.Timeout:
            with pytest.raises(TimeoutError):
                await case.wait(0.01)
        # The loop's own deadline works too and is honoured.
        begin = time.monotonic()
        with anyio.move_on_after(0.15) as scope:
            await case.wait(None)
        took = time.monotonic() - begin
        assert scope.cancelled_caught and 0.14 <= took < 2.0
        # And after all that, an item supplied is received at once.
        case.supply(7)
        assert await case.check(await case.wait(5), 7)


async def test_sync_timeouts_pass_through_for_full_queues(make_name) -> None:
    # put on a full Queue -> queue.Full, send on a full queue / pipe -> Timeout.
    bounded = aio.Queue(maxsize=1)
    try:
        await bounded.put(1, timeout=1)
        await expect_timeout_async(lambda: bounded.put(2, timeout=0.15), 0.15, queue.Full)
        await expect_timeout_async(lambda: bounded.put(2, block=False), 0, queue.Full)
        with pytest.raises(queue.Full):
            bounded.put_nowait(3)
        assert await bounded.get(timeout=1) == 1
        with pytest.raises(queue.Empty):
            bounded.get_nowait()
        with pytest.raises(queue.Empty):
            await bounded.get(block=False)
    finally:
        bounded.close()
        bounded.join_thread()
    for backend in ("posix", "shm"):
        with aio.MessageQueue.create(make_name(), max_messages=1, max_message_size=16, backend=backend) as q:
            await q.send(b"a", timeout=1)
            await expect_timeout_async(lambda: q.send(b"b", timeout=0.15), 0.15)
            q.unlink()
    p = aio.Pipe()
    with p:
        with anyio.fail_after(5):
            while True:  # fill the pipe
                try:
                    await p.writer.write(b"x" * 4096, timeout=0)
                except ipckit.Timeout:
                    break
        await expect_timeout_async(lambda: p.writer.send(b"more", timeout=0.15), 0.15)
        await expect_timeout_async(lambda: p.writer.write(b"more", timeout=0.15), 0.15)
    j = aio.JoinableQueue()
    try:
        await j.put(1)
        await expect_timeout_async(lambda: j.join(timeout=0.15), 0.15)
        assert await j.get(timeout=1) == 1
        j.task_done()
        await j.join(timeout=1)
    finally:
        j.close()
        j.join_thread()


async def test_connect_timeout_with_full_backlog_and_loop_cancel() -> None:
    with aio.Socket.listen(f"unix://@{unique_name()[1:]}", backlog=1) as listener:
        made: list = []
        try:
            # Fill the backlog with sync connects until one would block.
            for _ in range(64):
                try:
                    made.append(ipckit.Socket.connect(listener.address, timeout=0))
                except ipckit.Timeout:
                    break
            else:
                pytest.skip("the backlog never filled")
            await expect_timeout_async(lambda: aio.Socket.connect(listener.address, timeout=0.15), 0.15)
            with anyio.move_on_after(0.1) as scope:
                await aio.Socket.connect(listener.address)
            assert scope.cancelled_caught
            # Room again: a pending connect completes.
            conn = await listener.accept(timeout=5)
            conn.close()
        finally:
            for c in made:
                c.close()


# ================================================================ 3. cancellation consumes nothing

# Delays between supplying an item and cancelling the waiter: 0 (same tick), a few
# loop iterations, and long enough for a wake-up to land.
RACE_DELAYS = (0, 0, 0.0001, 0.0005, 0.001, 0.003, None)


async def _race(case: Case, i: int, delay: Optional[float]) -> list:
    got: list = []
    scope = anyio.CancelScope()

    async def waiter() -> None:
        with scope:
            got.append(await case.wait(None))

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        await anyio.sleep(0.01)  # parked
        case.supply(i)
        if delay is None:
            await anyio.lowlevel.checkpoint()
        elif delay:
            await anyio.sleep(delay)
        scope.cancel()
    return got


@pytest.mark.parametrize("kind", sorted(CASES))
async def test_cancel_consumes_nothing(kind: str, env: Env) -> None:
    async with open_case(kind, env) as case:
        # Nothing there: a cancelled wait, then the item, then the next wait has it.
        with anyio.move_on_after(0.05):
            await case.wait(None)
        case.supply(0)
        assert await case.check(await case.wait(5), 0)
        # The race: supply, then cancel at various moments. The waiter either got the
        # item or it is still there for the next call -- never lost, never twice.
        rounds = 14
        for i in range(1, rounds + 1):
            got = await _race(case, i, RACE_DELAYS[i % len(RACE_DELAYS)])
            if not got:
                got.append(await case.wait(5))
            assert len(got) == 1 and await case.check(got[0], i), f"round {i}: {got!r}"
        # Nothing extra is left behind.
        await expect_timeout_async(lambda: case.wait(0.02), 0.02, case.expired)


@pytest.mark.parametrize("kind", ["pipe", "duplex", "mq-posix", "mq-shm", "Queue"])
async def test_loop_timeout_cancels_and_consumes_nothing(kind: str, env: Env, anyio_backend: str) -> None:
    # asyncio.wait_for / anyio.fail_after raise on the caller; the item stays.
    async with open_case(kind, env) as case:
        if anyio_backend == "asyncio":
            import asyncio

            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(case.wait(None), 0.05)
        with pytest.raises(TimeoutError):
            with anyio.fail_after(0.05):
                await case.wait(None)
        case.supply(3)
        assert await case.check(await case.wait(5), 3)


@pytest.mark.parametrize("context", CONTEXTS)
async def test_cancelled_big_send_is_whole_or_nothing(procs, context: str) -> None:
    """A send of a message bigger than the pipe buffer, cancelled while the slow
    reader has taken nothing yet: the reader sees whole frames only."""
    p = aio.Pipe(size=65536)
    reply = ipckit.Pipe()
    with p, reply:
        child = start(procs, context, _child_slow_reader, p.reader, p.writer, reply.writer, 0.5)
        p.reader.close()
        reply.writer.close()
        big = pattern(4 * 1024 * 1024, 3)
        begin = time.monotonic()
        with anyio.move_on_after(0.1) as scope:
            await p.writer.send(big)
        cancelled = scope.cancelled_caught
        after = [pattern(1000 + i, i) for i in range(3)]
        for msg in after:
            await p.writer.send(msg, timeout=20)
        await p.writer.flush(timeout=20)
        p.writer.close()
        frames = pickle.loads(await aio.wrap(reply.reader).recv(timeout=30))
        await ajoin(child)
    digest = lambda b: (len(b), hashlib.sha256(b).hexdigest())  # noqa: E731
    expected_after = [digest(m) for m in after]
    assert frames in ([digest(big)] + expected_after, expected_after), (cancelled, time.monotonic() - begin,
                                                                         [f[0] for f in frames])
    if not cancelled:
        assert frames[0] == digest(big)


async def test_cancelled_sends_interleaved_with_tasks_keep_framing() -> None:
    """Many tasks send on one writer, half cancelled at random points while the pipe
    is clogged; the reader (another task) sees only whole frames, each at most once."""
    p = aio.Pipe(size=65536)
    with p:
        sent_ok: set = set()

        async def sender(i: int, cancel_after: Optional[float]) -> None:
            msg = b"%04d" % i + pattern(100_000 + i, i)
            with anyio.move_on_after(cancel_after if cancel_after is not None else math.inf):
                await p.writer.send(msg)
                sent_ok.add(i)

        received: list = []

        async def reader() -> None:
            await anyio.sleep(0.3)
            with contextlib.suppress(ipckit.ClosedError):
                async for msg in p.reader:
                    i = int(msg[:4])
                    assert msg == b"%04d" % i + pattern(100_000 + i, i), f"torn frame for {i}"
                    received.append(i)

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(reader)
                async with anyio.create_task_group() as senders:
                    for i in range(12):
                        senders.start_soon(sender, i, (0.01 * i) if i % 2 else None)
                await p.writer.flush(timeout=20)
                p.writer.close()
        assert len(received) == len(set(received))
        assert sent_ok <= set(received)  # every completed send arrived
        assert set(received) >= {i for i in range(12) if i % 2 == 0}


# ================================================================ 4. fairness


def _fair_producer_mq(name: Any, backend: str, count: int) -> None:
    _child_mq_producer(name, backend, count, 0.002)


async def _consume_fairly(recv: Callable[[], Awaitable[Any]], total: int, tasks: int = 8) -> list:
    got: list = []
    per_task: list = [0] * tasks
    done = anyio.Event()

    async def consumer(k: int) -> None:
        while True:
            try:
                item = await recv()
            except ipckit.ClosedError:  # a stream's producer closed after the last one
                return
            got.append(item)
            per_task[k] += 1
            if len(got) >= total:
                done.set()

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            for k in range(tasks):
                tg.start_soon(consumer, k)
            await done.wait()
            await anyio.sleep(0.05)  # a duplicate would show up here
            tg.cancel_scope.cancel()
    return got


@pytest.mark.parametrize("context", CONTEXTS)
async def test_fairness_many_tasks_one_message_queue(procs, context: str, mq_backend: str, mq_name) -> None:
    total = 80
    with aio.MessageQueue.create(mq_name, backend=mq_backend) as q:
        child = start(procs, context, _fair_producer_mq, mq_name, mq_backend, total)
        got = await _consume_fairly(lambda: q.recv(), total)
        await ajoin(child)
        assert sorted(got) == sorted(b"%d:" % i for i in range(total)), "lost or duplicated messages"
        assert len(q) == 0
        q.unlink()


@pytest.mark.parametrize("context", CONTEXTS)
async def test_fairness_many_tasks_one_queue(procs, context: str) -> None:
    total = 60
    q = aio.Queue()
    try:
        child = start(procs, context, _child_queue_put, q, list(range(total)), 0.003)
        got = await _consume_fairly(lambda: q.get(), total)
        await ajoin(child)
        assert sorted(got) == list(range(total))
    finally:
        q.close()
        q.join_thread()


async def test_fairness_many_tasks_one_pipe_reader(procs) -> None:
    total = 60
    p = aio.Pipe()
    with p:
        child = start(procs, "fork", _child_pipe_producer, p.writer, total, 0.002)
        p.writer.close()
        got = await _consume_fairly(lambda: p.reader.recv(), total)
        await ajoin(child)
    for msg in got:
        i = int(msg.split(b":", 1)[0])
        assert msg == b"%d:" % i + pattern(i * 97 % 5000, i), "torn frame"
    assert sorted(int(m.split(b":", 1)[0]) for m in got) == list(range(total))


async def test_fairness_many_tasks_one_semaphore(procs, sem_backend: str, make_name, make_key) -> None:
    name = make_key() if sem_backend == "sysv" else make_name()
    total = 40
    sem = aio.Semaphore.create(name, 0, backend=sem_backend)
    with contextlib.closing(sem):
        child = start(procs, "fork", _child_sem_release, name, sem_backend, total, 0.003)
        got = await _consume_fairly(lambda: sem.acquire(), total)
        await ajoin(child)
        assert got == [True] * total and sem.value == 0
        sem.unlink()


# ================================================================ 5. the loop never blocks


TICK = 0.01


async def _ticks_while(wait: Callable[[], Awaitable[Any]], window: float = 0.5) -> tuple[int, float]:
    ticks = 0
    worst = 0.0

    async def ticker() -> None:
        nonlocal ticks, worst
        last = time.monotonic()
        while True:
            await anyio.sleep(TICK)
            now = time.monotonic()
            worst = max(worst, now - last)
            last = now
            ticks += 1

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait)
        await anyio.sleep(0.02)
        tg.start_soon(ticker)
        await anyio.sleep(window)
        tg.cancel_scope.cancel()
    return ticks, worst


@pytest.mark.parametrize("kind", ["pipe", "unix-conn", "accept", "mq-posix", "mq-sysv", "mq-shm", "sem-posix", "sem-sysv",
                                  "signal", "Queue", "SimpleQueue"])
async def test_loop_keeps_running_while_waiting(kind: str, env: Env) -> None:
    async with open_case(kind, env) as case:
        window = 0.5
        ticks, worst = await _ticks_while(lambda: case.wait(None), window)
        expected = window / TICK
        assert ticks >= 0.8 * expected, f"{ticks} ticks of {expected:.0f} (worst gap {worst * 1000:.1f} ms)"
        assert worst < 0.1, f"the loop was held {worst * 1000:.1f} ms"


async def test_loop_keeps_running_with_many_waiters_of_every_kind(env: Env) -> None:
    kinds = ["pipe", "mq-posix", "mq-sysv", "mq-shm", "sem-posix", "sem-sysv", "Queue"]
    async with contextlib.AsyncExitStack() as stack:
        cases = [await stack.enter_async_context(open_case(k, env)) for k in kinds]

        async def all_wait() -> None:
            async with anyio.create_task_group() as tg:
                for c in cases:
                    for _ in range(3):
                        tg.start_soon(c.wait, None)

        ticks, worst = await _ticks_while(all_wait, 0.5)
        assert ticks >= 40 and worst < 0.1, (ticks, worst)


# ================================================================ 6. no busy polling


def _cpu_seconds() -> float:
    return time.process_time()  # every thread of the process, observers included


async def _idle_cpu(wait: Callable[[], Awaitable[Any]], window: float = 1.0) -> float:
    async with anyio.create_task_group() as tg:
        tg.start_soon(wait)
        await anyio.sleep(0.1)  # settled: registered, parked
        cpu0, wall0 = _cpu_seconds(), time.monotonic()
        await anyio.sleep(window)
        cpu1, wall1 = _cpu_seconds(), time.monotonic()
        tg.cancel_scope.cancel()
    return (cpu1 - cpu0) / (wall1 - wall0)


async def _baseline_cpu(window: float = 1.0) -> float:
    return await _idle_cpu(anyio.sleep_forever, window)


# SysV message queues offer nothing to wait on: the waiter naps, doubling up to 2 ms,
# so an idle waiter wakes about 500 times a second. Its bound is looser, and printed.
SYSV_IDLE_BOUND = 0.10


@pytest.mark.parametrize("kind", ["pipe", "mq-posix", "mq-shm", "sem-posix", "sem-sysv", "Queue", "mq-sysv"])
async def test_idle_waiter_does_not_busy_poll(kind: str, env: Env, anyio_backend: str) -> None:
    async with open_case(kind, env) as case:
        share = await _idle_cpu(lambda: case.wait(None), 1.0)
    bound = SYSV_IDLE_BOUND if kind == "mq-sysv" else 0.02
    print(f"\nidle {kind} under {anyio_backend}: {share * 100:.2f} % of a CPU (bound {bound * 100:.0f} %)")
    assert share < bound, f"an idle {kind} waiter used {share * 100:.1f} % of a CPU"


async def test_idle_many_waiters_do_not_busy_poll(env: Env) -> None:
    # Eight tasks on one shm queue and eight on one semaphore: still idle.
    async with contextlib.AsyncExitStack() as stack:
        cases = [await stack.enter_async_context(open_case(k, env)) for k in ("mq-shm", "sem-posix", "Queue")]

        async def all_wait() -> None:
            async with anyio.create_task_group() as tg:
                for c in cases:
                    for _ in range(8):
                        tg.start_soon(c.wait, None)

        share = await _idle_cpu(all_wait, 1.0)
    assert share < 0.03, f"{share * 100:.1f} % of a CPU"


# ================================================================ 7. wrap()


def _sync_objects(stack: contextlib.ExitStack, make_name: Callable, make_key: Callable) -> dict:
    objs: dict = {}
    p = stack.enter_context(ipckit.Pipe())
    objs["Pipe"] = p
    objs["PipeReader"] = p.reader
    objs["PipeWriter"] = p.writer
    a, b = ipckit.Pipe.duplex()
    stack.enter_context(a)
    stack.enter_context(b)
    objs["DuplexEnd"] = a
    listener = stack.enter_context(ipckit.Socket.listen(f"unix://@{unique_name()[1:]}"))
    objs["UnixListener"] = listener
    objs["UnixConnection"] = stack.enter_context(ipckit.Socket.connect(listener.address, timeout=5))
    tcp = stack.enter_context(ipckit.Socket.listen("tcp://127.0.0.1:0"))
    objs["TcpListener"] = tcp
    objs["TcpConnection"] = stack.enter_context(ipckit.Socket.connect(tcp.address, timeout=5))
    objs["Udp"] = stack.enter_context(ipckit.Socket.listen("udp://127.0.0.1:0"))
    objs["UnixDgram"] = stack.enter_context(ipckit.Socket.listen(f"unix+dgram://@{unique_name()[1:]}"))
    for backend in ("posix", "sysv", "shm"):
        q = stack.enter_context(ipckit.MessageQueue.create(make_key() if backend == "sysv" else make_name(), backend=backend))
        stack.callback(q.unlink)
        objs[f"MessageQueue-{backend}"] = q
    for backend in ("posix", "sysv"):
        s = ipckit.Semaphore.create(make_key() if backend == "sysv" else make_name(), backend=backend)
        stack.callback(s.close)
        stack.callback(s.unlink)
        objs[f"Semaphore-{backend}"] = s
    objs["SignalCatcher"] = stack.enter_context(ipckit.Signal.catch("SIGUSR2"))
    for cls in ("Queue", "SimpleQueue", "JoinableQueue"):
        q = getattr(ipckit, cls)()
        stack.callback(q.close)
        objs[cls] = q
    return objs


def test_wrap_every_sync_object(make_name, make_key) -> None:
    with contextlib.ExitStack() as stack:
        for what, obj in _sync_objects(stack, make_name, make_key).items():
            twin = aio.wrap(obj)
            assert twin.sync is obj, what
            assert aio.wrap(twin) is twin, what
            assert type(twin).__module__ == "ipckit.aio", (what, type(twin))
            assert twin is not obj
    for bad in (42, "x", None, object(), b"bytes", os.pipe):
        with pytest.raises(TypeError):
            aio.wrap(bad)


def test_wrapped_twins_have_coroutines_and_plain_calls(make_name) -> None:
    import inspect

    with ipckit.MessageQueue.create(make_name(), backend="shm") as q:
        twin = aio.wrap(q)
        for name in ("send", "recv", "receive", "recv_into", "recv_many", "send_many"):
            assert inspect.iscoroutinefunction(getattr(twin, name)), name
        assert len(twin) == 0 and twin.name == q.name and twin.backend == "shm"
        assert twin.max_message_size == q.max_message_size
        q.unlink()
    p = aio.Pipe()
    with p:
        for name in ("send", "recv", "read", "write", "flush"):
            end = p.reader if name in ("recv", "read") else p.writer
            assert inspect.iscoroutinefunction(getattr(end, name)), name
        assert p.reader.fileno() == p.sync.reader.fileno()
    sem = aio.Semaphore.create(make_name(), 2)
    try:
        assert inspect.iscoroutinefunction(sem.acquire)
        assert not inspect.iscoroutinefunction(sem.release)
        sem.release()
        assert sem.value == 3
    finally:
        sem.close()
        sem.unlink()
    q = aio.Queue()
    try:
        for name in ("put", "get"):
            assert inspect.iscoroutinefunction(getattr(q, name)), name
        q.put_nowait(1)
        assert q.qsize() == 1 and not q.empty() and not q.full()
        assert q.get_nowait() == 1
    finally:
        q.close()
        q.join_thread()


async def test_sync_and_twin_side_by_side() -> None:
    p = ipckit.Pipe()
    with p:
        reader = aio.wrap(p.reader)
        p.writer.send(b"one")
        assert await reader.recv(timeout=5) == b"one"
        await aio.wrap(p.writer).send(b"two", timeout=5)
        assert p.reader.recv(timeout=5) == b"two"  # same descriptor, same framing state


@pytest.mark.parametrize("context", CONTEXTS)
async def test_wrap_in_child_of_inherited_end(procs, context: str, anyio_backend: str) -> None:
    p = ipckit.Pipe()
    with p:
        child = start(procs, context, _child_run, anyio_backend, _child_wrapped_writer, p.writer)
        p.writer.close()
        reader = aio.wrap(p.reader)
        assert await reader.recv(timeout=20) == b"from a wrapped end in pid %d" % child.pid
        assert await reader.read(3, timeout=20) == b"raw"
        assert await reader.read(3, timeout=20) == b""  # end of stream
        await ajoin(child)


async def test_wrap_end_shared_with_sh_and_cat(tmp_path) -> None:
    # A non-Python child writes a frame and raw bytes into an inherited descriptor.
    p = aio.Pipe()
    with p:
        wfd = p.writer.fileno()
        script = f"printf '\\000\\000\\000\\005hello' > /dev/fd/{wfd}; printf 'raw tail' > /dev/fd/{wfd}"
        proc = subprocess.Popen(["sh", "-c", script], pass_fds=[wfd])
        p.writer.close()
        try:
            assert await p.reader.recv(timeout=20) == b"hello"
            rest = b""
            while True:
                chunk = await p.reader.read(100, timeout=20)
                if not chunk:
                    break
                rest += chunk
            assert rest == b"raw tail"
        finally:
            assert await anyio.to_thread.run_sync(proc.wait, 20) == 0
    # The loop writes, `cat` reads from its inherited descriptor.
    p = aio.Pipe()
    with p:
        rfd = p.reader.fileno()
        out_file = open(os.path.join(str(tmp_path), "cat.out"), "w+b")
        proc = subprocess.Popen(["sh", "-c", f"exec cat /dev/fd/{rfd}"], pass_fds=[rfd], stdout=out_file)
        p.reader.close()
        data = pattern(300_000, 5)  # more than the pipe holds: the loop waits for cat
        assert await p.writer.write(data, timeout=20) == len(data)
        await p.writer.send(b"framed", timeout=20)
        p.writer.close()
        assert await anyio.to_thread.run_sync(proc.wait, 20) == 0
        with out_file:
            out_file.seek(0)
            out = out_file.read()
        assert out == data + b"\x00\x00\x00\x06framed"


def test_twins_pickle_as_twins(make_name) -> None:
    name = make_name()
    with aio.MessageQueue.create(name, backend="posix") as q:
        clone = pickle.loads(pickle.dumps(q))
        with clone:
            assert type(clone) is type(q) and clone.sync is not q.sync and clone.name == name
        q.unlink()


def test_public_surface() -> None:
    assert aio.__all__ == sorted(aio.__all__)
    assert set(aio.__all__) == {"JoinableQueue", "MessageQueue", "Pipe", "Queue", "Semaphore", "Signal", "SimpleQueue",
                                "Socket", "wrap"}
    for name in aio.__all__:
        assert getattr(aio, name).__module__ == "ipckit.aio", name


# ================================================================ 8. bad input: sync's exceptions, first


async def _clogged_pipe() -> Any:
    p = aio.Pipe()
    while True:
        try:
            await p.writer.write(b"x" * 4096, timeout=0)
        except ipckit.Timeout:
            return p


async def test_bad_input_raises_before_waiting_and_sends_nothing(make_name, make_key) -> None:
    # On a clogged pipe a good send would wait; a bad one must fail at once.
    p = await _clogged_pipe()
    with p:
        with anyio.fail_after(2):
            for bad in (123, "text", None, [1, 2], 1.5):
                with pytest.raises(TypeError):
                    await p.writer.send(bad)  # type: ignore[arg-type]
                with pytest.raises(TypeError):
                    await p.writer.write(bad)  # type: ignore[arg-type]
            with pytest.raises(TypeError):
                await p.writer.send(b"x", timeout="1")  # type: ignore[arg-type]
            with pytest.raises(TypeError):
                await p.reader.read("1")  # type: ignore[arg-type]
            with pytest.raises(ValueError):
                await p.reader.read(0)
        # Drain: only the filler arrived, no frame header of a bad send.
        total = 0
        while True:
            try:
                chunk = await p.reader.read(65536, timeout=0)
            except ipckit.Timeout:
                break
            assert set(chunk) == {ord("x")}
            total += len(chunk)
        assert total % 4096 == 0
        await p.writer.send(b"fine", timeout=5)
        assert await p.reader.recv(timeout=5) == b"fine"
    for backend in ("posix", "sysv", "shm"):
        name = make_key() if backend == "sysv" else make_name()
        with aio.MessageQueue.create(name, max_messages=1, max_message_size=100, backend=backend) as q:
            await q.send(b"fills it", timeout=1)
            with anyio.fail_after(2):
                with pytest.raises(ipckit.MessageTooLarge):
                    await q.send(b"z" * 10_000)
                with pytest.raises(TypeError):
                    await q.send(123)  # type: ignore[arg-type]
                if backend != "sysv":  # SysV queues have no priorities: ignored, as documented
                    with pytest.raises((TypeError, ValueError)):
                        await q.send(b"x", priority=-1)
                if backend == "sysv":
                    with pytest.raises(ValueError):
                        await q.send(b"x", type=0)
                if backend == "shm":
                    with pytest.raises(TypeError):
                        await q.send_many([b"ok", 123])  # type: ignore[list-item]
                    with pytest.raises(ipckit.MessageTooLarge):
                        await q.send_many([b"ok", b"z" * 10_000])
                    with pytest.raises(TypeError):
                        await q.recv_into(b"read-only")
                    with pytest.raises((TypeError, ValueError)):
                        await q.recv_many(0)
            assert len(q) == 1
            assert await q.recv(timeout=1) == b"fills it"
            await expect_timeout_async(lambda: q.recv(timeout=0.05), 0.05)
            q.unlink()
    with aio.Socket.listen("udp://127.0.0.1:0") as udp:
        c = await aio.Socket.connect(udp.address, timeout=5)
        with c:
            with pytest.raises(ipckit.MessageTooLarge):
                await c.send(b"u" * 70_000)
            with pytest.raises(TypeError):
                await c.send(123)  # type: ignore[arg-type]
            await c.send(b"ok", timeout=5)
            assert await udp.recv(timeout=5) == b"ok"
    sem = aio.Semaphore.create(make_name(), 0)
    try:
        with pytest.raises(ValueError):
            sem.release(0)
        with pytest.raises(TypeError):
            await sem.acquire(timeout="x")  # type: ignore[arg-type]
        assert sem.value == 0
    finally:
        sem.close()
        sem.unlink()
    q = aio.Queue()
    try:
        with pytest.raises((TypeError, AttributeError, pickle.PicklingError)):
            await q.put(lambda: None)
        assert q.empty()
    finally:
        q.close()
        q.join_thread()
    with pytest.raises(ValueError):
        aio.Signal.catch("SIGKILL")
    with pytest.raises(ValueError):
        await aio.Socket.connect("nonsense://x")
    with pytest.raises((TypeError, ValueError)):
        await aio.Pipe.fifo(123, "r")  # type: ignore[arg-type]


async def test_stream_recv_over_max_message_size() -> None:
    a, b = aio.Pipe.duplex(max_message_size=100)
    with a, b:
        with pytest.raises(ipckit.MessageTooLarge):  # the sender's own limit: nothing sent
            await a.send(b"k" * 101, timeout=5)
        await a.write(b"\x00\x00\x00\x65" + b"k" * 101, timeout=5)  # a peer's frame over b's limit
        with pytest.raises(ipckit.MessageTooLarge):
            await b.recv(timeout=5)
        with pytest.raises(ipckit.ClosedError):  # the end closed: cannot resynchronise
            await b.recv(timeout=0)


# ================================================================ 9. closing


CLOSE_KINDS = ["pipe", "pipe-read", "duplex", "unix-conn", "tcp-conn", "udp", "unix-dgram", "accept", "tcp-accept",
               "mq-posix", "mq-sysv", "mq-shm", "mq-shm-recv_into", "mq-shm-recv_many", "sem-posix", "sem-sysv", "Queue",
               "JoinableQueue", "SimpleQueue", "signal"]


@pytest.mark.parametrize("kind", CLOSE_KINDS)
async def test_close_while_waiting_ends_the_wait(kind: str, env: Env) -> None:
    async with open_case(kind, env) as case:
        outcome: list = []

        async def waiter() -> None:
            try:
                outcome.append(await case.wait(None))
            except BaseException as exc:  # noqa: B036 - reported below
                outcome.append(exc)
                if not isinstance(exc, Exception):
                    raise

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(waiter)
                await anyio.sleep(0.1)
                begin = time.monotonic()
                case.close()
        assert len(outcome) == 1 and isinstance(outcome[0], case.closed_exc), outcome
        assert time.monotonic() - begin < 2
        # And after close every call raises it at once.
        with anyio.fail_after(2):
            with pytest.raises(case.closed_exc):
                await case.wait(None)
            with pytest.raises(case.closed_exc):
                await case.wait(0)


async def test_calls_after_close_raise_closed_error(make_name, make_key) -> None:
    p = aio.Pipe()
    p.close()
    p.close()  # idempotent
    for call in (lambda: p.send(b"x"), p.recv, lambda: p.writer.write(b"x"), lambda: p.reader.read(1), p.writer.flush):
        with pytest.raises(ipckit.ClosedError):
            await call()
    with pytest.raises(ipckit.ClosedError):
        p.reader.fileno()
    assert p.reader.closed and p.writer.closed
    a, b = aio.Pipe.duplex()
    with a:
        pass
    assert a.closed
    async with b:
        pass
    assert b.closed
    for call in (lambda: b.send(b"x"), b.recv, lambda: b.send_fds(b"x", [0]), lambda: b.recv_fds(1)):
        with pytest.raises(ipckit.ClosedError):
            await call()
    # The peer closed: send raises ClosedError (EPIPE), recv ends the stream.
    c, d = aio.Pipe.duplex()
    with c:
        d.close()
        with pytest.raises(ipckit.ClosedError):
            await c.send(b"x" * 1_000_000, timeout=5)
        with pytest.raises(ipckit.ClosedError):
            await c.recv(timeout=5)
    listener = aio.Socket.listen(f"unix://@{unique_name()[1:]}")
    async with listener:
        pass
    with pytest.raises(ipckit.ClosedError):
        await listener.accept(timeout=0)
    for backend in ("posix", "sysv", "shm"):
        name = make_key() if backend == "sysv" else make_name()
        q = aio.MessageQueue.create(name, backend=backend)
        q.unlink()
        async with q:
            pass
        for call in (lambda: q.send(b"x"), q.recv, q.receive):
            with pytest.raises(ipckit.ClosedError):
                await call()
        with pytest.raises(ipckit.ClosedError):
            len(q)
    sem = aio.Semaphore.create(make_name(), 1)
    sem.unlink()
    sem.close()
    with pytest.raises(ipckit.ClosedError):
        await sem.acquire()
    with pytest.raises(ipckit.ClosedError):
        sem.release()
    for cls, exc in (("Queue", ValueError), ("JoinableQueue", ValueError), ("SimpleQueue", OSError)):
        q = getattr(aio, cls)()
        q.close()
        with pytest.raises(exc, match="is closed") as info:
            await q.get()
        with pytest.raises(exc, match="is closed"):
            await q.put(1)
        assert isinstance(info.value, ipckit.ClosedError)
        if cls != "SimpleQueue":
            q.join_thread()


async def test_async_for_on_message_queue_until_closed(make_name) -> None:
    with aio.MessageQueue.create(make_name(), backend="shm") as q:
        q.unlink()
        for i in range(3):
            await q.send(b"%d" % i)
        got: list = []
        with anyio.fail_after(5):
            with contextlib.suppress(ipckit.ClosedError):
                async with anyio.create_task_group() as tg:
                    async def consume() -> None:
                        async for msg in q:
                            got.append(msg)
                            if len(got) == 3:
                                await anyio.sleep(0.05)
                                q.close()

                    tg.start_soon(consume)
        assert got == [b"0", b"1", b"2"]
