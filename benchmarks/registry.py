"""The registry: every subject of the suite, in families, in display order.

Why a list and not registration on import
-----------------------------------------
The subjects used to register themselves with a decorator when their module was
imported, and the order of the report was the order in which ``subjects.py``
imported the modules that import it: a cycle, and an order nobody wrote down.
Here the order is declared: ``FAMILIES`` says which families exist and in which
order they are shown, ``SUBJECTS`` lists every subject class once, and within a
family the rows keep the order of ``SUBJECTS`` (by convention ipckit, raw, peers,
C). The subject modules import ``subjects.py`` only; this module imports them.

A family is the set of rows that compare with each other. It declares its C
limit (``c``: every row of the family gets a ``vs C`` ratio), the extra ratio
columns its ipckit rows get (``baselines``: subject ids, e.g. the queue that
ipckit.Queue replaces), optionally its own throughput sizes, and what it needs
(``requires``: modules or ``module.attribute`` names; a family whose requirement
is missing is left out of the run and listed as unavailable). A subject declares
its family, its raw twin (``raw``, for ``vs raw``) and, rarely, a C limit of its
own. ``check()`` verifies every reference when the module is imported.

Adding a subject: write one class in a subject module, add it to ``SUBJECTS``
(benchmarks/README.md, "Adding a subject").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from . import csubjects as c
from . import subjects_aio as aio
from . import subjects_objects as objects
from . import subjects_queue as queue
from . import subjects_shm as shm
from . import subjects_stream as stream
from .subjects import Subject, missing


@dataclass(frozen=True)
class Family:
    id: str
    title: str
    c: Optional[str] = None  # the C limit of the mechanism: every row gets vs C
    baselines: tuple[str, ...] = ()  # more ratio columns for the ipckit rows: vs each of these
    sizes: Optional[tuple[int, ...]] = None  # throughput sizes of its own instead of --sizes
    requires: tuple[str, ...] = ()  # without these the family is left out of the run

    def unavailable(self) -> Optional[str]:
        return missing(self.requires)


FAMILIES: tuple[Family, ...] = (
    Family("pipe", "one-way pipes", c="c.pipe"),
    Family("duplex", "two-way pipes", c="c.unix"),
    Family("unix", "Unix stream sockets", c="c.unix"),
    Family("tcp", "TCP on loopback"),
    Family("udp", "UDP on loopback"),
    Family("unixdgram", "Unix datagram sockets"),
    Family("mq-posix", "POSIX message queues", c="c.mq-posix"),
    Family("mq-sysv", "SysV message queues", c="c.mq-sysv"),
    Family("mq-shm", "queues in shared memory", c="c.spin"),
    Family("shm-sem", "shared memory + semaphores", c="c.sem"),
    Family("signal", "signals"),
    # ipckit.aio (issue 10): ipckit.aio Socket unix / Pipe.duplex / shm queue under
    # asyncio and under trio (and ipckit.aio.Queue under asyncio); raw twins the loop's
    # own streams (asyncio.open_unix_connection, trio.open_unix_socket) on the same
    # kernel object; each ipckit row also against the sync ipckit call plus the loop's
    # cost of its mechanism (its extra_baselines), and every one against pyzmq.asyncio
    # ipc://. Each is a subjects.AsyncSubject (subjects_aio.py; aloops.py has the loops).
    Family("aio", "async round trips (asyncio, trio)", baselines=("zmq.asyncio.ipc",), requires=("ipckit.aio",)),
    # ipckit.Queue (issue 11): Python objects -- a 64-byte message travels as a small
    # tuple (int, float, str), a larger one as a float64 numpy array.
    Family("objects", "object queues (pickled Python objects)", c="c.spin",
           baselines=("mp.queue-objects", "faster-fifo.objects"), sizes=objects.SIZES, requires=("ipckit.Queue",)),
)

SUBJECTS: tuple[type[Subject], ...] = (
    # pipe
    stream.IpckitPipe, stream.RawPipe, c.CPipe,
    # duplex
    stream.IpckitDuplex, stream.RawSocketpair, stream.MpPipe,
    # unix
    stream.IpckitUnix, stream.RawUnix, stream.ZmqIpc, c.CUnix,
    # tcp
    stream.IpckitTcp, stream.RawTcp, stream.ZmqTcp,
    # udp
    stream.IpckitUdp, stream.RawUdp,
    # unixdgram
    stream.IpckitUnixDgram, stream.RawUnixDgram,
    # mq-posix
    queue.IpckitMqPosix, queue.RawMqPosix, c.CMqPosix,
    # mq-sysv
    queue.IpckitMqSysv, queue.RawMqSysv, c.CMqSysv,
    # mq-shm
    queue.IpckitMqShm, queue.IpckitMqShmBatch, queue.MpQueue, queue.FasterFifo, queue.Iceoryx2, c.CSpin,
    # shm-sem
    shm.IpckitShmSem, shm.RawShmSem, shm.MpSharedMemory, c.CSem,
    # signal
    shm.IpckitSignal, shm.RawSignal,
    # aio: asyncio, then trio
    aio.AioUnix, aio.RawAsyncioUnix, aio.SyncUnix, aio.AioDuplex, aio.RawAsyncioSocketpair, aio.SyncDuplex,
    aio.AioMqShm, aio.SyncMqShm, aio.AioQueue, aio.ZmqAsyncioIpc,
    aio.AioUnixTrio, aio.RawTrioUnix, aio.SyncUnixTrio, aio.AioDuplexTrio, aio.RawTrioSocketpair, aio.SyncDuplexTrio,
    aio.AioMqShmTrio, aio.SyncMqShmTrio,
    # objects
    objects.IpckitQueue, objects.IpckitSimpleQueue, objects.MpObjectQueue, objects.MpObjectSimpleQueue,
    objects.FasterFifoObjects,
)


def check(families: tuple[Family, ...] = FAMILIES, subjects: tuple[type[Subject], ...] = SUBJECTS) -> None:
    """Raise ValueError unless every id is unique and every reference names a registered subject."""
    fam_ids = [f.id for f in families]
    ids = [s.id for s in subjects]
    problems = [f"duplicate family {f}" for f in set(fam_ids) if fam_ids.count(f) > 1]
    problems += [f"duplicate subject {i}" for i in set(ids) if ids.count(i) > 1]
    for s in subjects:
        if s.family not in fam_ids:
            problems.append(f"{s.id}: unknown family {s.family!r}")
        for what, ref in (("raw", s.raw), ("c", s.c), *(("baseline", b) for b in s.extra_baselines)):
            if ref is not None and ref not in ids:
                problems.append(f"{s.id}: {what} {ref!r} is not a registered subject")
        if s.raw is not None and s.group != "ipckit":
            problems.append(f"{s.id}: only ipckit rows have a raw twin")
    for f in families:
        for ref in (f.c, *f.baselines):
            if ref is not None and ref not in ids:
                problems.append(f"family {f.id}: {ref!r} is not a registered subject")
    if problems:
        raise ValueError("subject registry: " + "; ".join(sorted(problems)))


check()


def family(family_id: str) -> Family:
    for f in FAMILIES:
        if f.id == family_id:
            return f
    raise KeyError(family_id)


def unavailable_families() -> list[tuple[Family, str]]:
    """The declared families left out on this host, with the reason."""
    out = []
    for f in FAMILIES:
        why = f.unavailable()
        if why is not None:
            out.append((f, why))
    return out


def all_subjects(families: tuple[Family, ...] = FAMILIES, subjects: tuple[type[Subject], ...] = SUBJECTS) -> list[Subject]:
    """One instance of every subject of every available family, in display order."""
    out = []
    for f in families:
        if f.unavailable() is not None:
            continue
        for cls in subjects:
            if cls.family == f.id:
                inst = cls()
                if inst.group != "c":
                    inst.c = inst.c or f.c
                if inst.group == "ipckit":
                    inst.baselines = f.baselines + tuple(b for b in cls.extra_baselines if b not in f.baselines)
                inst.sizes = f.sizes
                out.append(inst)
    return out
