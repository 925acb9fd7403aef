"""What a subject is, and what subjects share: the kernel-object bookkeeping (``Env``)
and the endpoint adapters. The subjects themselves live in subjects_stream.py (pipes,
sockets, zmq), subjects_queue.py (message queues, multiprocessing.Queue, faster-fifo,
iceoryx2), subjects_shm.py (shared memory + semaphores, signals) and csubjects.py (the
C programs); registry.py lists them, in families, in display order.

A subject is a pair of processes talking through one mechanism. ``setup(env)``
runs in the parent and makes the kernel objects (every name and key comes from
``env``, which removes them afterwards whatever happens); it returns a *spec*
that both children inherit across ``fork``. ``open(spec, role, peer_pid)`` runs
in each child (role ``"a"``: the pinger / sender, ``"b"``: the echo / receiver)
and returns an endpoint with ``send(data)`` and ``recv()``; ``drive`` runs the
shared loops of ``loops.py`` on it, so every subject is measured the same way.

Groups: ``ipckit`` (the library), ``raw`` (the same mechanism through the
standard library / posix_ipc / sysv_ipc, written as a careful user would, so
ipckit/raw is ipckit's own overhead), ``peer`` (what users pick instead) and
``c`` (the same mechanism in C: the limit). A subject names its ``family`` (the
rows that compare with each other), its ``raw`` twin (ipckit rows) and, if it is
not its family's, its ``c`` limit; the modules never import each other, so a
subject module depends on this one only.
"""

from __future__ import annotations

import importlib
import os
import struct
from typing import Any, Callable, ClassVar, Optional

from . import loops, machine

LATENCY = "latency"
THROUGHPUT = "throughput"
MAX_PAYLOAD = 1 << 20  # the largest default size; slots and queues are sized for it

_LEN = struct.Struct("<Q")

# The measuring loops a child runs on its endpoint, by command name (see runner.Pair).
LOOPS: dict[str, Callable[..., Any]] = {
    "ping": loops.ping, "echo": loops.echo, "send": loops.stream_send, "recv": loops.stream_recv,
}


class NotApplicable(Exception):
    """The subject cannot run this measurement here; the message says why (reported as n/a)."""


class Subject:
    id: ClassVar[str] = ""
    label: ClassVar[str] = ""
    group: ClassVar[str] = ""
    family: ClassVar[str] = ""
    raw: ClassVar[Optional[str]] = None  # id of the raw twin (ipckit rows): vs raw
    # Filled in from the family by the registry (a subject may set its own c):
    c: Optional[str] = None  # id of the C limit: vs C
    baselines: tuple[str, ...] = ()  # ipckit rows: ids of the family's extra ratio columns
    # ipckit rows: more ratio columns of this subject's own, after the family's (e.g. the
    # aio rows' "sync call plus the loop's cost" of the same mechanism)
    extra_baselines: ClassVar[tuple[str, ...]] = ()
    sizes: Optional[tuple[int, ...]] = None  # the family's own throughput sizes (None: --sizes)
    metrics: ClassVar[tuple[str, ...]] = (LATENCY, THROUGHPUT)
    requires: ClassVar[tuple[str, ...]] = ()  # importable modules needed (optional extras)
    lossy: ClassVar[bool] = False  # a datagram transport that may drop messages
    note: ClassVar[str] = ""

    def unavailable(self) -> Optional[str]:
        """Why this subject cannot run at all on this host, or None."""
        return missing(self.requires)

    def unsupported(self, metric: str, size: int) -> Optional[str]:
        """Why this size cannot be carried here, or None."""
        if metric not in self.metrics:
            return f"{self.label} has no {metric} mode"
        return self.too_big(size)

    def too_big(self, size: int) -> Optional[str]:
        """Why a message of this size cannot be carried, or None (override per mechanism)."""
        return None

    def setup(self, env: "Env") -> Any:
        raise NotImplementedError

    def open(self, spec: Any, role: str, peer_pid: int) -> Any:
        raise NotImplementedError

    def drive(self, ep: Any, op: str, args: tuple) -> Any:
        """Run measuring loop ``op`` (a key of LOOPS) on endpoint ``ep``, in the child.

        ``AsyncSubject`` overrides this to run the async twins of the loops, with the
        same arguments and results, inside its event loop."""
        return LOOPS[op](ep, *args)


class AsyncSubject(Subject):
    """A subject whose endpoint is awaited (the ``aio`` family's base).

    ``aopen(spec, role, peer_pid)`` is a coroutine returning an endpoint with
    ``async send(data)``, ``async recv()`` and optionally ``async aclose()``. Each
    child keeps one event loop of ``backend`` (``"asyncio"`` or ``"trio"``) for the
    endpoint's whole life, in an anyio blocking portal (a thread running the loop):
    ``open`` starts it and opens the endpoint inside it, ``drive`` runs the async
    twin of each loop (aloops.py) there, the endpoint's ``close`` closes both. The
    main thread only waits for each command's result: one thread hand-off per
    command, none per message.
    """

    backend: ClassVar[str] = "asyncio"
    requires = ("anyio",)

    async def aopen(self, spec: Any, role: str, peer_pid: int) -> Any:
        raise NotImplementedError

    def open(self, spec: Any, role: str, peer_pid: int) -> "PortalEnds":
        return PortalEnds(self.backend, self.aopen, spec, role, peer_pid)

    def drive(self, ep: Any, op: str, args: tuple) -> Any:
        from . import aloops

        return ep.portal.call(aloops.LOOPS[op], ep.inner, *args)


class PortalEnds:
    """An async endpoint (``inner``) and the event loop it lives in (``portal``), from a sync caller."""

    def __init__(self, backend: str, aopen: Callable[..., Any], *args: Any) -> None:
        import anyio.from_thread

        self._cm = anyio.from_thread.start_blocking_portal(backend)
        self.portal = self._cm.__enter__()
        try:
            self.inner = self.portal.call(aopen, *args)
        except BaseException:
            self._cm.__exit__(None, None, None)
            raise

    def close(self) -> None:
        try:
            aclose = getattr(self.inner, "aclose", None)
            if aclose is not None:
                self.portal.call(aclose)
        finally:
            self._cm.__exit__(None, None, None)


def missing(names: tuple[str, ...]) -> Optional[str]:
    """Why one of ``names`` (modules, or ``module.attribute``) is not there, or None."""
    for name in names:
        try:
            importlib.import_module(name)
            continue
        except ImportError:
            pass
        module, _, attr = name.rpartition(".")
        try:
            if module and hasattr(importlib.import_module(module), attr):
                continue
        except ImportError:
            pass
        if name.split(".")[0] == "ipckit":
            return f"not in this version of ipckit ({name})"
        return f"not installed (pip install 'ipckit[bench]' for {name})"
    return None


# Message-size limits of the kernel queues, shared by their ipckit, raw and C subjects.


def posix_mq_limit() -> int:
    return machine.limit("mqueue.msgsize_max") or 8192


def sysv_mq_limit() -> int:
    return machine.limit("sysv.msgmax") or 8192


def posix_mq_too_big(self: Any, size: int) -> Optional[str]:
    limit = posix_mq_limit()
    return f"POSIX mq message limit is {limit} B here (fs.mqueue.msgsize_max)" if size > limit else None


def sysv_mq_too_big(self: Any, size: int) -> Optional[str]:
    limit = sysv_mq_limit()
    return f"SysV message limit is {limit} B here (kernel.msgmax)" if size > limit else None


class Env:
    """Names, keys and paths for one run, and the removal of everything made with them.

    Every POSIX name starts with ``/ipckit-bench-<pid>-`` so a final sweep of
    /dev/shm (shared memory and ``sem.*``) finds leftovers even after a crash;
    POSIX queues and SysV keys are tracked and removed one by one.
    """

    def __init__(self, tmpdir: str) -> None:
        self.prefix = f"ipckit-bench-{os.getpid()}"
        self.tmpdir = tmpdir
        self._count = 0
        self._names: list[str] = []
        self._keys: list[int] = []
        self._cleanups: list[Callable[[], Any]] = []
        self.all_names: list[str] = []  # everything ever handed out, for the report
        self.all_keys: list[int] = []

    def name(self, tag: str) -> str:
        self._count += 1
        name = f"/{self.prefix}-{self._count}-{tag}"
        self._names.append(name)
        self.all_names.append(name)
        return name

    def key(self, span: int = 1) -> int:
        """A SysV key base with ``span`` consecutive keys, none in use right now."""
        import secrets

        used = machine.sysv_keys_in_use()
        while True:
            key = secrets.randbelow(0x3FFF0000) + 0x10000
            if not any(key + i in used for i in range(span)):
                self._keys.extend(key + i for i in range(span))
                self.all_keys.extend(key + i for i in range(span))
                return key

    def path(self, tag: str) -> str:
        self._count += 1
        return os.path.join(self.tmpdir, f"{self._count}-{tag}")

    def on_cleanup(self, fn: Callable[[], Any]) -> None:
        self._cleanups.append(fn)

    def cleanup(self) -> None:
        """Run the registered cleanups (newest first), then remove every name and key handed out."""
        while self._cleanups:
            fn = self._cleanups.pop()
            try:
                fn()
            except Exception:
                pass
        self.sweep()

    def sweep(self) -> None:
        _unlink_posix(self._names)
        _remove_sysv(self._keys)
        self._names.clear()
        self._keys.clear()
        sweep_prefix(self.prefix)


def _unlink_posix(names: list[str]) -> None:
    try:
        import posix_ipc
    except ImportError:  # pragma: no cover - a dependency of ipckit
        return
    for name in names:
        for candidate in (name, name + "-ab", name + "-ba"):
            for fn in (posix_ipc.unlink_message_queue, posix_ipc.unlink_semaphore, posix_ipc.unlink_shared_memory):
                try:
                    fn(candidate)
                except Exception:
                    pass


def _remove_sysv(keys: list[int]) -> None:
    try:
        import sysv_ipc
    except ImportError:  # pragma: no cover
        return
    for key in keys:
        ckey = key - (1 << 32) if key >= 1 << 31 else key
        for cls in (sysv_ipc.MessageQueue, sysv_ipc.Semaphore, sysv_ipc.SharedMemory):
            try:
                cls(ckey).remove()
            except Exception:
                pass


def sweep_prefix(prefix: str) -> None:
    """Remove /dev/shm entries (segments and ``sem.`` semaphores) whose name starts with prefix."""
    try:
        entries = os.listdir("/dev/shm")
    except OSError:
        return
    for entry in entries:
        if entry.startswith(prefix) or entry.startswith("sem." + prefix):
            try:
                os.unlink(os.path.join("/dev/shm", entry))
            except OSError:
                pass


# ------------------------------------------------------------------ endpoints


class Ends:
    """An endpoint made of two callables (bound methods, so the hot loop pays one call).

    A batching endpoint also sets ``send_many(list)``, ``recv_many() -> list`` (a
    non-empty list of messages it no longer touches) and ``batch``; the stream
    loops then move messages ``batch`` at a time through those."""

    def __init__(self, send: Callable[[Any], Any], recv: Callable[[], Any], close: Optional[Callable[[], Any]] = None):
        self.send = send
        self.recv = recv
        self._close = close

    def close(self) -> None:
        if self._close is not None:
            self._close()


class FramedFd:
    """Raw length-prefixed messages over stream file descriptors (pipes, stream sockets).

    What a careful user writes without ipckit: an 8-byte length then the payload,
    written with one ``writev`` and read with ``readv`` into a buffer of the right
    size (no per-chunk concatenation).
    """

    def __init__(self, rfd: int, wfd: int, close: Optional[Callable[[], Any]] = None) -> None:
        self.rfd, self.wfd = rfd, wfd
        self._close = close

    def send(self, data: Any) -> None:
        view = memoryview(data).cast("B")
        parts: list[Any] = [_LEN.pack(len(view)), view]
        total = 8 + len(view)
        done = os.writev(self.wfd, parts)
        while done < total:  # rare: a signal interrupted a large write
            if done < 8:
                done += os.write(self.wfd, parts[0][done:])
            else:
                done += os.write(self.wfd, view[done - 8 :])

    def _read_exact(self, buf: memoryview) -> None:
        got = 0
        while got < len(buf):
            n = os.readv(self.rfd, [buf[got:]])
            if n == 0:
                raise EOFError("peer closed the stream")
            got += n

    def recv(self) -> bytearray:
        head = bytearray(8)
        self._read_exact(memoryview(head))
        out = bytearray(_LEN.unpack(head)[0])
        self._read_exact(memoryview(out))
        return out

    def close(self) -> None:
        if self._close is not None:
            self._close()


class ShmSlots:
    """One-slot handover through shared memory, one slot per direction, four semaphores.

    ``tx``/``rx`` are ``(view, full, empty)``: a memoryview over [8-byte length |
    payload] and two semaphores with ``acquire()``/``release()``. ``recv`` returns a
    zero-copy view into the slot; the slot is handed back (``empty`` released) at the
    next ``recv`` or at ``flush``, after the loop has checked the message, the way a
    zero-copy consumer works. Used with ipckit, posix_ipc and multiprocessing objects.
    """

    def __init__(self, tx: tuple, rx: tuple, close: Optional[Callable[[], Any]] = None) -> None:
        self.tx_view, self.tx_full, self.tx_empty = tx
        self.rx_view, self.rx_full, self.rx_empty = rx
        self._pending = False
        self._close = close

    def send(self, data: Any) -> None:
        n = len(data)
        self.tx_empty.acquire()
        self.tx_view[:8] = _LEN.pack(n)
        self.tx_view[8 : 8 + n] = data
        self.tx_full.release()

    def recv(self) -> memoryview:
        if self._pending:
            self.rx_empty.release()
        self.rx_full.acquire()
        self._pending = True
        n = _LEN.unpack(self.rx_view[:8])[0]
        return self.rx_view[8 : 8 + n]

    def flush(self) -> None:
        if self._pending:
            self._pending = False
            self.rx_empty.release()

    def close(self) -> None:
        if self._close is not None:
            self._close()


def slot_layout(max_size: int) -> tuple[int, int]:
    """(bytes per slot, total bytes for two slots) for messages up to max_size."""
    slot = 8 + max_size
    slot = (slot + 4095) // 4096 * 4096
    return slot, 2 * slot


def cross(spec_pair: tuple, role: str) -> tuple:
    """Pick (mine-to-send-on, mine-to-receive-on) from an (a->b, b->a) pair."""
    ab, ba = spec_pair
    return (ab, ba) if role == "a" else (ba, ab)
