"""backend="sysv": System V message queues (``msgget``/``msgsnd``/``msgrcv``) via sysv_ipc.

Limits. The kernel has no per-queue message size or count: a message may be up to
``msgmax`` bytes (/proc/sys/kernel/msgmax) and a queue holds up to ``msg_qbytes``
bytes (default ``msgmnb``, /proc/sys/kernel/msgmnb) and at most ``msg_qbytes``
messages. So ``create(max_messages=N, max_message_size=S)`` sets the queue's byte
capacity ``msg_qbytes = N * S`` (S defaults to msgmax): room for at least N messages
of S bytes. Values over msgmax, or a product over msgmnb, raise ``ValueError``
naming the limit and its /proc file (raising msg_qbytes over msgmnb needs
CAP_SYS_RESOURCE, which even root may lack in a container). ``max_message_size``
reports ``min(msgmax, msg_qbytes)`` — a larger message could never fit — and
``max_messages`` is ``None``.

Timeouts. There is no timed ``msgrcv``/``msgsnd``. ``timeout=None`` is a plain
blocking call (no latency cost); ``timeout=0`` is one ``IPC_NOWAIT`` attempt; a
``timeout>0`` wait retries ``IPC_NOWAIT`` attempts, sleeping between them with a
backoff from 50 µs up to 2 ms, never past the monotonic ``Deadline``. A timed wait
therefore notices a message up to ~2 ms late and costs a few hundred wake-ups a
second while idle; ``Timeout`` is raised only after the deadline has passed and a
last attempt failed (never early). Polling was chosen over interrupting a blocking
``msgrcv`` with a timer signal, which would disturb the application's signals.

Removal. ``unlink()`` (``IPC_RMID``) destroys the queue at once: calls blocked on
it in any process, and every later call on any handle, raise ``ClosedError``.

No ``fileno()``: a SysV queue is not a file descriptor (``hasattr(q, "fileno")``
is False), so it cannot be used with selectors; use the POSIX backend for that.
"""

from __future__ import annotations

import errno
import time
from typing import Any, Optional

import sysv_ipc

from ._data import byte_view
from ._errors import ClosedError, ExistsError, IPCError, NotFoundError, closed_error, translate_oserror
from ._mqueue import TYPE_MAX, Message, MessageQueue, MessageQueueStat, check_receive_type, check_send_type, read_limit, too_large
from ._naming import check_sysv_key, sysv_key_to_c
from ._timeouts import Deadline

MSGMAX_FILE = "/proc/sys/kernel/msgmax"
MSGMNB_FILE = "/proc/sys/kernel/msgmnb"
MSGMNI_FILE = "/proc/sys/kernel/msgmni"

_FIRST_NAP = 50e-6
_MAX_NAP = 2e-3

_Busy = sysv_ipc.BusyError


def _msgmax() -> int:
    return read_limit(MSGMAX_FILE) or 8192


def _is_eintr(exc: BaseException) -> bool:
    # sysv_ipc reports EINTR as its base Error class with this text.
    return type(exc) is sysv_ipc.Error and "signal" in str(exc).lower()


def _describe(key: Optional[int]) -> str:
    return "IPC_PRIVATE" if key is None else f"with key {key:#x}"


class SysvMessageQueue(MessageQueue):
    """A System V message queue (``backend="sysv"``), named by an integer key.

    ``send(type=...)`` tags a message with a type >= 1; ``receive(type=...)``
    selects as ``msgrcv`` does. ``max_bytes`` is the byte capacity (``msg_qbytes``).
    """

    backend = "sysv"

    def __init__(self, q: Any, key: Optional[int]) -> None:
        self._q = q
        self.name = key
        self._id: int = q.id
        self._msgmax = _msgmax()
        self._limit = min(self._msgmax, q.max_size)
        self._closed = False

    @classmethod
    def _check_name(cls, name: Any) -> Optional[int]:
        # None is a private queue (IPC_PRIVATE) for create(); _open() refuses it.
        return check_sysv_key(name, allow_private=True)

    # --- creation -----------------------------------------------------------------

    @classmethod
    def _create(cls, name: Optional[int], *, max_messages: Optional[int], max_message_size: Optional[int], mode: int) -> "SysvMessageQueue":
        if mode > 0o777:
            raise ValueError(f"mode must be in 0..0o777 for a SysV queue (it has no setuid/sticky bits), got {oct(mode)}")
        msgmax = _msgmax()
        if max_message_size is not None and max_message_size > msgmax:
            raise ValueError(
                f"max_message_size={max_message_size} is over the kernel's per-message limit msgmax={msgmax} ({MSGMAX_FILE})"
            )
        qbytes = None
        if max_messages is not None:
            qbytes = max_messages * (max_message_size or msgmax)
            msgmnb = read_limit(MSGMNB_FILE)
            if msgmnb is not None and qbytes > msgmnb:
                raise ValueError(
                    f"max_messages={max_messages} x max_message_size={max_message_size or msgmax} = {qbytes} bytes is over "
                    f"the kernel's queue capacity limit msgmnb={msgmnb} ({MSGMNB_FILE}); SysV queues are sized in bytes"
                )
        try:
            ckey = sysv_ipc.IPC_PRIVATE if name is None else sysv_key_to_c(name)
            q = sysv_ipc.MessageQueue(ckey, sysv_ipc.IPC_CREX, mode=mode, max_message_size=msgmax)
        except sysv_ipc.ExistentialError as exc:
            raise ExistsError(errno.EEXIST, f"msgget: a SysV message queue with key {name:#x} exists", name) from exc
        except OSError as exc:
            if exc.errno in (None, errno.ENOSPC) and "limit" in str(exc):
                raise IPCError(
                    errno.ENOSPC,
                    f"msgget: the system-wide number of SysV message queues is at its limit msgmni="
                    f"{read_limit(MSGMNI_FILE)} ({MSGMNI_FILE}); remove unused queues (ipcs -q / ipcrm)",
                ) from exc
            with translate_oserror("msgget", filename=name):
                raise
            raise  # pragma: no cover
        except sysv_ipc.Error as exc:
            with translate_oserror("msgget", filename=name):
                raise
            raise AssertionError("unreachable") from exc  # pragma: no cover
        if qbytes is not None:
            try:
                q.max_size = qbytes  # IPC_SET msg_qbytes (lowering it needs no privilege)
            except BaseException as exc:
                q.remove()
                with translate_oserror("msgctl(IPC_SET)"):
                    raise
                raise AssertionError("unreachable") from exc  # pragma: no cover
        return cls(q, name)

    @classmethod
    def _open(cls, name: Optional[int]) -> "SysvMessageQueue":
        if name is None:
            raise TypeError("name must be an int key to open a SysV queue: a private (None) queue has no key to be opened by")
        try:
            q = sysv_ipc.MessageQueue(sysv_key_to_c(name), 0, max_message_size=_msgmax())
        except sysv_ipc.ExistentialError as exc:
            raise NotFoundError(errno.ENOENT, f"msgget: no SysV message queue with key {name:#x}", name) from exc
        except (OSError, sysv_ipc.Error) as exc:
            with translate_oserror("msgget", filename=name):
                raise
            raise AssertionError("unreachable") from exc  # pragma: no cover
        return cls(q, name)

    # --- the hot path -----------------------------------------------------------

    def _fail(self, exc: BaseException, what: str) -> BaseException:
        """The ipckit error for a sysv_ipc failure on this queue."""
        if isinstance(exc, sysv_ipc.ExistentialError) or getattr(exc, "errno", None) in (errno.EINVAL, errno.EIDRM):
            # msgsnd says EINVAL, msgrcv EIDRM/EINVAL, for a queue removed under us.
            return ClosedError(errno.EIDRM, f"{what}: the SysV message queue {_describe(self.name)} was removed")
        with translate_oserror(what):
            raise exc
        raise AssertionError("unreachable")  # pragma: no cover

    def send(self, data: Any, *, priority: int = 0, type: int = 1, timeout: Optional[float] = None) -> None:
        """Enqueue *data* tagged with *type* (1..2**31-1). ``priority`` is for
        POSIX queues and is ignored here. A full queue (``msg_qbytes`` reached)
        waits up to *timeout*, then ``Timeout``; nothing is enqueued."""
        if self._closed:
            raise closed_error(self)
        view = byte_view(data)
        if view.nbytes > self._limit:
            raise too_large(view.nbytes, self._limit, self)
        if type.__class__ is not int or not 1 <= type <= TYPE_MAX:
            check_send_type(type)
        send = self._q.send
        if timeout is None:  # the hot path: one direct blocking call
            try:
                return send(view, True, type)  # type: ignore[no-any-return]
            except Exception as exc:
                if not _is_eintr(exc):
                    raise self._fail(exc, "msgsnd") from exc
        self._retry(lambda block: send(view, block, type), "send", timeout)

    def recv(self, *, timeout: Optional[float] = None) -> bytes:
        """Dequeue the first message (any type); ``Timeout`` if none within *timeout*."""
        return self._receive(0, timeout)[0]  # type: ignore[no-any-return]

    def receive(self, *, type: int = 0, timeout: Optional[float] = None) -> Message:
        """Dequeue a message selected by *type* as ``msgrcv`` does: 0 the first
        message, >0 the first of that type, <0 the first of the lowest type
        <= |type|. Returns ``Message(data, None, type)``."""
        if type.__class__ is not int or not -TYPE_MAX <= type <= TYPE_MAX:
            check_receive_type(type)
        data, mtype = self._receive(type, timeout)
        return Message(data, None, mtype)

    def _receive(self, type_: int, timeout: Optional[float]) -> tuple:
        if self._closed:
            raise closed_error(self)
        receive = self._q.receive
        if timeout is None:  # the hot path: one direct blocking call
            try:
                return receive(True, type_)  # type: ignore[no-any-return]
            except Exception as exc:
                if not _is_eintr(exc):
                    raise self._fail(exc, "msgrcv") from exc
        return self._retry(lambda block: receive(block, type_), "recv", timeout)  # type: ignore[no-any-return]

    def _retry(self, attempt: Any, what: str, timeout: Optional[float]) -> Any:
        """Run ``attempt(block)`` (one msgsnd/msgrcv) to completion: blocking when
        *timeout* is None, else non-blocking tries with growing naps (the kernel has
        no timed msgrcv) until the deadline. EINTR is retried in both cases."""
        call = "msgsnd" if what == "send" else "msgrcv"
        if timeout is None:
            while True:
                try:
                    return attempt(True)
                except Exception as exc:
                    if not _is_eintr(exc):
                        raise self._fail(exc, call) from exc
        deadline = Deadline.from_user(timeout)
        nap = _FIRST_NAP
        while True:
            try:
                return attempt(False)
            except _Busy:
                pass
            except Exception as exc:
                if not _is_eintr(exc):
                    raise self._fail(exc, call) from exc
            if deadline.expired():
                raise deadline.timeout_error(what)
            nap = _nap(nap, deadline)

    # --- the rest ---------------------------------------------------------------

    def _get(self, attribute: str) -> Any:
        self._check_open()
        try:
            return getattr(self._q, attribute)
        except Exception as exc:
            raise self._fail(exc, "msgctl(IPC_STAT)") from exc

    def __len__(self) -> int:
        return int(self._get("current_messages"))

    @property
    def max_messages(self) -> None:
        """Always None: SysV queues are bounded in bytes (``max_bytes``), not messages."""
        self._check_open()
        return None

    @property
    def max_message_size(self) -> int:
        """The largest message that can be sent: ``msgmax`` (/proc/sys/kernel/msgmax),
        or the queue's ``msg_qbytes`` if that is smaller."""
        self._limit = min(self._msgmax, int(self._get("max_size")))
        return self._limit

    @property
    def max_bytes(self) -> int:
        """The queue's byte capacity, ``msg_qbytes``."""
        return int(self._get("max_size"))

    def stat(self) -> MessageQueueStat:
        """``msgctl(IPC_STAT)``: counts, limits, last sender/receiver pids and times
        (None until the first send/receive), owner and mode. ``bytes`` (msg_cbytes)
        comes from /proc/sysvipc/msg."""
        messages = int(self._get("current_messages"))
        qbytes = int(self._get("max_size"))

        def when(attribute: str) -> Optional[float]:
            value = self._get(attribute)
            return float(value) if value else None

        def pid(attribute: str) -> Optional[int]:
            value = self._get(attribute)
            return int(value) if value else None

        return MessageQueueStat(
            backend="sysv",
            messages=messages,
            bytes=_cbytes(self._id),
            max_messages=None,
            max_message_size=min(self._msgmax, qbytes),
            max_bytes=qbytes,
            last_send_pid=pid("last_send_pid"),
            last_receive_pid=pid("last_receive_pid"),
            last_send_time=when("last_send_time"),
            last_receive_time=when("last_receive_time"),
            last_change_time=when("last_change_time"),
            uid=int(self._get("uid")),
            mode=int(self._get("mode")) & 0o777,
        )

    def __reduce__(self) -> tuple:
        if self.name is None:
            raise TypeError("a private (IPC_PRIVATE) SysV queue has no key to be opened by: it cannot be pickled")
        return super().__reduce__()

    def unlink(self) -> None:
        """Remove the queue now (``IPC_RMID``), whether or not this handle is closed.
        Every handle's later calls raise ``ClosedError``; ``NotFoundError`` if it was
        already removed."""
        try:
            sysv_ipc.remove_message_queue(self._id)
        except sysv_ipc.ExistentialError as exc:
            raise NotFoundError(errno.ENOENT, f"msgctl(IPC_RMID): the SysV message queue {_describe(self.name)} is already gone", self.name) from exc
        except (OSError, sysv_ipc.Error) as exc:
            with translate_oserror("msgctl(IPC_RMID)"):
                raise
            raise AssertionError("unreachable") from exc  # pragma: no cover

    def _close(self) -> None:
        self._q = None  # nothing to release: a SysV queue id is not a descriptor


def _nap(nap: float, deadline: Deadline) -> float:
    """Sleep for *nap* (never past *deadline*); return the next, longer nap."""
    left = deadline.remaining()
    time.sleep(nap if left is None else min(nap, left))
    return min(nap * 2, _MAX_NAP)


def _cbytes(msqid: int) -> Optional[int]:
    """msg_cbytes of queue *msqid*, from /proc/sysvipc/msg (sysv_ipc does not expose it)."""
    try:
        with open("/proc/sysvipc/msg") as f:
            next(f)
            for line in f:
                fields = line.split()
                if int(fields[1]) == msqid:
                    return int(fields[3])
    except (OSError, ValueError, IndexError, StopIteration):
        pass
    return None


__all__ = ["SysvMessageQueue"]
