"""Shared memory handed over with semaphores, and signal wake-ups.

Shared memory: one slot per direction in one segment, four semaphores
(full/empty per direction); the receiver checks the message in place (zero
copy) and hands the slot back. The same ``ShmSlots`` endpoint runs over ipckit,
posix_ipc + mmap, and multiprocessing.shared_memory + multiprocessing.Semaphore.

Signals: latency only (a signal carries one int). The ipckit subject queues the
sequence number as the ``sigqueue`` payload and the receiver checks it; the
standard library can neither queue a payload nor read one, so the raw subject
counts plain ``os.kill`` signals and marks the last message with SIGRTMIN+1.
"""

from __future__ import annotations

import contextlib
import mmap
import multiprocessing
import os
import signal
from typing import Any

from .loops import stamp
from .subjects import LATENCY, MAX_PAYLOAD, Ends, ShmSlots, Subject, slot_layout

_FORK = multiprocessing.get_context("fork")
LATENCY_SIZE = 64


def _slots(buf: Any, sems: list, role: str) -> ShmSlots:
    slot, _ = slot_layout(MAX_PAYLOAD)
    view = memoryview(buf)
    ab = (view[:slot], sems[0], sems[1])
    ba = (view[slot : 2 * slot], sems[2], sems[3])
    return ShmSlots(ab, ba) if role == "a" else ShmSlots(ba, ab)


_INITIAL = (0, 1, 0, 1)  # full_ab, empty_ab, full_ba, empty_ba


class IpckitShmSem(Subject):
    id, label, group, family = "ipckit.shm-sem", "ipckit SharedMemory + Semaphore", "ipckit", "shm-sem"
    raw = "raw.shm-sem"

    def setup(self, env: Any) -> Any:
        import ipckit

        _, total = slot_layout(MAX_PAYLOAD)
        shm = ipckit.SharedMemory.create(env.name("shm"), total)
        env.on_cleanup(shm.unlink)
        env.on_cleanup(shm.close)
        sems = []
        for i, value in enumerate(_INITIAL):
            sem = ipckit.Semaphore.create(env.name(f"sem{i}"), value)
            env.on_cleanup(sem.unlink)
            env.on_cleanup(sem.close)
            sems.append(sem)
        return shm, sems

    def open(self, spec: Any, role: str, peer_pid: int) -> Any:
        shm, sems = spec
        return _slots(shm.buf, sems, role)


class RawShmSem(Subject):
    id, label, group, family = "raw.shm-sem", "posix_ipc SharedMemory + Semaphore", "raw", "shm-sem"

    def setup(self, env: Any) -> Any:
        import posix_ipc

        _, total = slot_layout(MAX_PAYLOAD)
        seg = posix_ipc.SharedMemory(env.name("shm"), posix_ipc.O_CREX, mode=0o600, size=total)
        env.on_cleanup(seg.unlink)
        mapping = mmap.mmap(seg.fd, total)
        seg.close_fd()
        sems = []
        for i, value in enumerate(_INITIAL):
            sem = posix_ipc.Semaphore(env.name(f"sem{i}"), posix_ipc.O_CREX, mode=0o600, initial_value=value)
            env.on_cleanup(sem.unlink)
            env.on_cleanup(sem.close)
            sems.append(sem)
        return mapping, sems

    def open(self, spec: Any, role: str, peer_pid: int) -> Any:
        mapping, sems = spec
        return _slots(mapping, sems, role)


class MpSharedMemory(Subject):
    id, label, group, family = "mp.shm-sem", "multiprocessing.shared_memory + Semaphore", "peer", "shm-sem"
    note = "created and unlinked by the parent only (Python's resource tracker unlinks what a process opens)"

    def setup(self, env: Any) -> Any:
        from multiprocessing import shared_memory

        _, total = slot_layout(MAX_PAYLOAD)
        shm = shared_memory.SharedMemory(name=env.name("mpshm")[1:], create=True, size=total)
        env.on_cleanup(shm.unlink)
        env.on_cleanup(shm.close)
        return shm, [_FORK.Semaphore(v) for v in _INITIAL]

    def open(self, spec: Any, role: str, peer_pid: int) -> Any:
        shm, sems = spec
        return _slots(shm.buf, sems, role)


# ---------------------------------------------------------------- signals


class _SignalSubject(Subject):
    metrics = (LATENCY,)

    def setup(self, env: Any) -> Any:
        return None


class IpckitSignal(_SignalSubject):
    id, label, group, family, raw = "ipckit.signal", "ipckit Signal (sigqueue payload)", "ipckit", "signal", "raw.signal"
    note = "SIGRTMIN with the sequence number as payload, collected with Signal.catch().wait()"

    def open(self, spec: Any, role: str, peer_pid: int) -> Any:
        import ipckit

        stack = contextlib.ExitStack()
        caught = stack.enter_context(ipckit.Signal.catch("SIGRTMIN"))
        send_signal, wait = ipckit.Signal.send, caught.wait
        buf = bytearray(LATENCY_SIZE)

        def send(msg: Any) -> None:
            head = int.from_bytes(msg[:8], "little")
            value = (head & 0x3FFFFFFF) | (0x40000000 if head >> 63 else 0)
            send_signal(peer_pid, "SIGRTMIN", value=value)

        def recv() -> bytearray:
            value = wait().value
            if value is None:
                raise ValueError("signal arrived without its payload")
            stamp(buf, value & 0x3FFFFFFF, bool(value & 0x40000000))
            return buf

        return Ends(send, recv, stack.close)


class RawSignal(_SignalSubject):
    id, label, group, family = "raw.signal", "os.kill + signal.sigwaitinfo", "raw", "signal"
    note = "no payload (the stdlib cannot queue or read one): counted; the last one is SIGRTMIN+1"

    def open(self, spec: Any, role: str, peer_pid: int) -> Any:
        sig, last_sig = signal.SIGRTMIN, signal.SIGRTMIN + 1
        both = {sig, last_sig}
        signal.pthread_sigmask(signal.SIG_BLOCK, both)
        kill, waitinfo = os.kill, signal.sigwaitinfo
        buf = bytearray(LATENCY_SIZE)
        counter = [0]

        def send(msg: Any) -> None:
            kill(peer_pid, last_sig if msg[7] & 0x80 else sig)

        def recv() -> bytearray:
            last = waitinfo(both).si_signo == last_sig
            stamp(buf, counter[0], last)
            counter[0] = 0 if last else counter[0] + 1  # every run counts from 0
            return buf

        return Ends(send, recv)
