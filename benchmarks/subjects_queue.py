"""Message-queue subjects: POSIX and SysV kernel queues, ipckit's shared-memory queue,
multiprocessing.Queue, faster-fifo and iceoryx2. One queue per direction."""

from __future__ import annotations

import ctypes
import functools
import multiprocessing
import os
import time
from typing import Any, Optional

from .subjects import (
    MAX_PAYLOAD, Ends, Subject, cross, posix_mq_limit, posix_mq_too_big, sysv_mq_limit, sysv_mq_too_big,
)

_FORK = multiprocessing.get_context("fork")


# ---------------------------------------------------------------- POSIX


class IpckitMqPosix(Subject):
    id, label, group, family = "ipckit.mq-posix", "ipckit MessageQueue posix", "ipckit", "mq-posix"
    raw = "raw.mq-posix"
    too_big = posix_mq_too_big

    def setup(self, env: Any) -> Any:
        import ipckit

        queues = []
        for tag in ("ab", "ba"):
            q = ipckit.MessageQueue.create(env.name(f"mq{tag}"), max_messages=10, max_message_size=posix_mq_limit())
            env.on_cleanup(q.unlink)
            env.on_cleanup(q.close)
            queues.append(q)
        return tuple(queues)

    def open(self, spec: Any, role: str, peer_pid: int) -> Any:
        tx, rx = cross(spec, role)
        return Ends(tx.send, rx.recv)


class RawMqPosix(Subject):
    id, label, group, family = "raw.mq-posix", "posix_ipc.MessageQueue", "raw", "mq-posix"
    too_big = posix_mq_too_big

    def setup(self, env: Any) -> Any:
        import posix_ipc

        queues = []
        for tag in ("ab", "ba"):
            q = posix_ipc.MessageQueue(
                env.name(f"mq{tag}"), posix_ipc.O_CREX, mode=0o600, max_messages=10, max_message_size=posix_mq_limit()
            )
            env.on_cleanup(q.unlink)
            env.on_cleanup(q.close)
            queues.append(q)
        return tuple(queues)

    def open(self, spec: Any, role: str, peer_pid: int) -> Any:
        tx, rx = cross(spec, role)
        receive = rx.receive
        return Ends(tx.send, lambda: receive()[0])


# ---------------------------------------------------------------- SysV


class IpckitMqSysv(Subject):
    id, label, group, family = "ipckit.mq-sysv", "ipckit MessageQueue sysv", "ipckit", "mq-sysv"
    raw = "raw.mq-sysv"
    too_big = sysv_mq_too_big

    def setup(self, env: Any) -> Any:
        import ipckit

        key = env.key(2)
        queues = []
        for k in (key, key + 1):
            q = ipckit.MessageQueue.create(k, backend="sysv")
            env.on_cleanup(q.unlink)
            env.on_cleanup(q.close)
            queues.append(q)
        return tuple(queues)

    def open(self, spec: Any, role: str, peer_pid: int) -> Any:
        tx, rx = cross(spec, role)
        return Ends(tx.send, rx.recv)


class RawMqSysv(Subject):
    id, label, group, family = "raw.mq-sysv", "sysv_ipc.MessageQueue", "raw", "mq-sysv"
    too_big = sysv_mq_too_big

    def setup(self, env: Any) -> Any:
        import sysv_ipc

        key = env.key(2)
        queues = []
        for k in (key, key + 1):
            q = sysv_ipc.MessageQueue(k, sysv_ipc.IPC_CREX, mode=0o600, max_message_size=sysv_mq_limit())
            env.on_cleanup(q.remove)
            queues.append(q)
        return tuple(queues)

    def open(self, spec: Any, role: str, peer_pid: int) -> Any:
        tx, rx = cross(spec, role)
        receive = rx.receive
        return Ends(tx.send, lambda: receive()[0])


# ---------------------------------------------------------------- ipckit shm queue


def _create_shm_queue(name: str) -> Any:
    import ipckit

    # The defaults: what a user gets (sized to carry MAX_PAYLOAD; issue 11, "the
    # ring's working set").
    return ipckit.MessageQueue.create(name, backend="shm")


class IpckitMqShm(Subject):
    id, label, group, family = "ipckit.mq-shm", "ipckit MessageQueue shm", "ipckit", "mq-shm"
    note = "ring in POSIX shared memory with futex wake-ups; no raw equivalent (C: spin ring)"

    def setup(self, env: Any) -> Any:
        queues = []
        for tag in ("ab", "ba"):
            q = _create_shm_queue(env.name(f"q{tag}"))
            env.on_cleanup(q.unlink)
            env.on_cleanup(q.close)
            queues.append(q)
        return tuple(queues)

    def open(self, spec: Any, role: str, peer_pid: int) -> Any:
        tx, rx = cross(spec, role)
        return Ends(tx.send, rx.recv)


# ---------------------------------------------------------------- peers


class MpQueue(Subject):
    id, label, group, family = "mp.queue", "multiprocessing.Queue", "peer", "mq-shm"
    note = "maxsize=64; pickles in a feeder thread, so each message is copied to bytes first"

    def setup(self, env: Any) -> Any:
        queues = []
        for _ in range(2):
            q = _FORK.Queue(maxsize=64)
            env.on_cleanup(q.cancel_join_thread)
            env.on_cleanup(q.close)
            queues.append(q)
        return tuple(queues)

    def open(self, spec: Any, role: str, peer_pid: int) -> Any:
        tx, rx = cross(spec, role)
        put = tx.put

        def close() -> None:
            tx.close()
            tx.join_thread()

        return Ends(lambda m: put(bytes(m)), rx.get, close)


class FasterFifo(Subject):
    id, label, group, family = "faster-fifo", "faster-fifo Queue", "peer", "mq-shm"
    requires = ("faster_fifo",)
    note = "8 MiB circular buffer; pickles each message"

    def setup(self, env: Any) -> Any:
        import faster_fifo

        return tuple(faster_fifo.Queue(max_size_bytes=8 * MAX_PAYLOAD + 4096) for _ in range(2))

    def open(self, spec: Any, role: str, peer_pid: int) -> Any:
        tx, rx = cross(spec, role)
        return Ends(tx.put, functools.partial(rx.get, timeout=3600))


def _count(config: Any) -> int:
    n = config.number_of_subscribers
    return n() if callable(n) else n


class Iceoryx2(Subject):
    id, label, group, family = "iceoryx2", "iceoryx2 publish-subscribe", "peer", "mq-shm"
    requires = ("iceoryx2",)
    note = "zero-copy publish-subscribe; the subscriber polls (receive() + sched_yield), copies out"

    def setup(self, env: Any) -> Any:
        return env.prefix + f"-{os.getpid()}-{time.monotonic_ns()}"

    def open(self, spec: Any, role: str, peer_pid: int) -> Any:
        import iceoryx2 as ix

        ix.set_log_level(ix.LogLevel.Error)
        node = ix.NodeBuilder.new().signal_handling_mode(ix.SignalHandlingMode.Disabled).create(ix.ServiceType.Ipc)

        def service(direction: str) -> Any:
            for _ in range(200):  # both sides race to create; the loser opens
                try:
                    return (
                        node.service_builder(ix.ServiceName.new(f"{spec}/{direction}"))
                        .publish_subscribe(ix.Slice[ctypes.c_uint8])
                        .enable_safe_overflow(False)
                        .subscriber_max_buffer_size(16)
                        .history_size(0)
                        .open_or_create()
                    )
                except Exception:
                    time.sleep(0.01)
            raise RuntimeError("iceoryx2: could not open or create the service")

        tx_name, rx_name = ("ab", "ba") if role == "a" else ("ba", "ab")
        tx_service, rx_service = service(tx_name), service(rx_name)
        pub = (
            tx_service.publisher_builder()
            .initial_max_slice_len(MAX_PAYLOAD)
            .allocation_strategy(ix.AllocationStrategy.PowerOfTwo)
            .backpressure_strategy(ix.BackpressureStrategy.RetryUntilDelivered)
            .create()
        )
        sub = rx_service.subscriber_builder().create()
        yield_ = os.sched_yield

        def send(data: Any) -> None:
            n = len(data)
            sample = pub.loan_slice_uninit(n)
            ctypes.memmove(sample.payload_ptr, (ctypes.c_char * n).from_buffer_copy(data) if isinstance(data, bytes)
                           else (ctypes.c_char * n).from_buffer(data), n)
            sample.assume_init().send()

        def recv() -> bytes:
            receive = sub.receive
            while True:
                sample = receive()
                if sample is not None:
                    return bytes(sample.payload().as_memory_view())
                yield_()

        def prepare() -> None:
            pub.update_connections()

        def close() -> None:
            for obj in (sub, pub):
                obj.delete()

        ends = Ends(send, recv, close)
        ends.prepare = prepare  # type: ignore[attr-defined]
        # Wait until the peer's subscriber is connected, or the first samples go nowhere.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            pub.update_connections()
            if _count(tx_service.dynamic_config) >= 1:
                break
            time.sleep(0.005)
        return ends


class IpckitMqShmBatch(IpckitMqShm):
    id, label = "ipckit.mq-shm-batch", "ipckit MessageQueue shm, send_many/recv_many"
    metrics = ("throughput",)
    note = "batches of 32 with send_many()/recv_many() (used only if the queue has them)"
    batch = 32

    def open(self, spec: Any, role: str, peer_pid: int) -> Any:
        tx, rx = cross(spec, role)
        if not (hasattr(tx, "send_many") and hasattr(rx, "recv_many")):
            raise NotImplementedError("this MessageQueue shm has no send_many/recv_many")
        # The stream loops hand send_many lists of `batch` messages and take whole
        # lists from recv_many (see loops.py): no per-message adapter in between.
        ends = Ends(tx.send, rx.recv)
        ends.send_many = tx.send_many  # type: ignore[attr-defined]
        ends.recv_many = functools.partial(rx.recv_many, self.batch)  # type: ignore[attr-defined]
        ends.batch = self.batch  # type: ignore[attr-defined]
        return ends
