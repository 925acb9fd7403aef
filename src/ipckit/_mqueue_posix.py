"""backend="posix": POSIX message queues (``mq_open``/``mq_send``/``mq_receive``) via posix_ipc.

Timeouts. posix_ipc's own timed calls use ``mq_timedsend``/``mq_timedreceive``,
whose deadline is absolute on CLOCK_REALTIME: a wall-clock jump would make such a
wait end early or hang. So a wait with a timeout never hands the kernel a
wall-clock deadline that matters: each attempt is a non-blocking one (posix_ipc
``timeout=0``), and between attempts the handle's descriptor is ``poll()``-ed
(POLLIN / POLLOUT, which mqueue descriptors support on Linux) for the time left on
the monotonic ``Deadline``. Losing a race to another receiver just means polling
again; ``Timeout`` is raised only once the deadline has passed and a last attempt
failed, so a wait never ends early. ``timeout=None`` is a plain blocking call.

EINTR: posix_ipc raises ``SignalError``; the call is retried (Python signal
handlers run in between, and an exception from one propagates), as PEP 475 does.

Mode: ``mq_open`` applies the umask, so the mode is set again with ``fchmod`` on
the descriptor (an mqueue descriptor is an inode on Linux), making it exact.
"""

from __future__ import annotations

import errno
import os
import resource
import select
from typing import Any, Optional

import posix_ipc

from ._data import byte_view
from ._errors import ClosedError, ExistsError, IPCError, NotFoundError, closed_error, translate_oserror
from ._mqueue import PRIORITY_MAX, Message, MessageQueue, MessageQueueStat, check_priority, read_limit, too_large
from ._timeouts import Deadline
from ._wait import wait_fd

_PROC = "/proc/sys/fs/mqueue/"
MSG_MAX_FILE = _PROC + "msg_max"
MSGSIZE_MAX_FILE = _PROC + "msgsize_max"
MSG_DEFAULT_FILE = _PROC + "msg_default"
MSGSIZE_DEFAULT_FILE = _PROC + "msgsize_default"
QUEUES_MAX_FILE = _PROC + "queues_max"

_Busy = posix_ipc.BusyError
_Signal = posix_ipc.SignalError


def _queue_bytes(max_messages: int, max_message_size: int) -> int:
    """Roughly what the kernel charges to RLIMIT_MSGQUEUE for a queue (ipc/mqueue.c:
    the message space plus a pointer and a priority-tree node per message)."""
    return max_messages * (max_message_size + 8) + min(max_messages, PRIORITY_MAX + 1) * 40


def _limit_error(max_messages: int, max_message_size: int) -> ValueError:
    """mq_open said EINVAL: name the kernel limit the request went over."""
    msg_max = read_limit(MSG_MAX_FILE)
    msgsize_max = read_limit(MSGSIZE_MAX_FILE)
    problems = []
    if msg_max is not None and max_messages > msg_max:
        problems.append(f"max_messages={max_messages} is over the kernel limit msg_max={msg_max} ({MSG_MAX_FILE})")
    if msgsize_max is not None and max_message_size > msgsize_max:
        problems.append(f"max_message_size={max_message_size} is over the kernel limit msgsize_max={msgsize_max} ({MSGSIZE_MAX_FILE})")
    if not problems:
        problems.append(f"the kernel refused max_messages={max_messages}, max_message_size={max_message_size} (EINVAL)")
    hint = "; use smaller values, or raise the limit with sysctl (needs root, and a kernel that allows it)"
    return ValueError("; ".join(problems) + hint)


def _emfile_error(max_messages: int, max_message_size: int) -> IPCError:
    """mq_open said EMFILE. That is usually not too many open files but the per-user
    RLIMIT_MSGQUEUE byte budget, which the kernel reports with the same errno."""
    soft_files = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    try:
        open_files = len(os.listdir("/proc/self/fd"))
    except OSError:  # pragma: no cover
        open_files = 0
    if soft_files != resource.RLIM_INFINITY and open_files >= soft_files - 1:
        return IPCError(errno.EMFILE, f"mq_open: this process has too many open files ({open_files}, RLIMIT_NOFILE {soft_files})")
    budget = resource.getrlimit(resource.RLIMIT_MSGQUEUE)[0]
    need = _queue_bytes(max_messages, max_message_size)
    return IPCError(
        errno.EMFILE,
        f"mq_open: creating a queue of {max_messages} x {max_message_size} bytes (about {need} bytes) would exceed "
        f"this user's POSIX message queue budget RLIMIT_MSGQUEUE ({budget} bytes, `ulimit -q`), which counts every "
        "queue this user owns until it is unlinked and closed everywhere. The kernel reports this as EMFILE "
        "('too many open files'), which it is not. Unlink queues no longer used, create smaller ones, "
        "or raise RLIMIT_MSGQUEUE (resource.setrlimit before creating; raising the hard limit needs root).",
    )


def _mqueue_mount() -> Optional[str]:
    """Where an mqueue filesystem is mounted (for the QSIZE line), if anywhere."""
    try:
        with open("/proc/self/mounts") as f:
            for line in f:
                fields = line.split()
                if len(fields) > 2 and fields[2] == "mqueue":
                    return fields[1].replace("\\040", " ")
    except OSError:  # pragma: no cover
        pass
    return None


def _queued_bytes(name: str) -> Optional[int]:
    mount = _mqueue_mount()
    if mount is None:
        return None
    try:
        with open(os.path.join(mount, name[1:])) as f:
            return int(f.read().split("QSIZE:")[1].split()[0])
    except (OSError, IndexError, ValueError):
        return None


def _fail(exc: BaseException, what: str) -> BaseException:
    """The ipckit error for a posix_ipc failure in send/receive."""
    if isinstance(exc, posix_ipc.ExistentialError):  # the descriptor is no longer valid
        return ClosedError(errno.EBADF, f"{what}: {exc}")
    with translate_oserror(what):
        raise exc
    raise AssertionError("unreachable")  # pragma: no cover


class PosixMessageQueue(MessageQueue):
    """A POSIX message queue (``backend="posix"``). Its descriptor is pollable:
    ``fileno()`` works with ``selectors`` and asyncio (readable when a message
    waits, writable when there is room)."""

    backend = "posix"

    def __init__(self, mq: Any, name: str) -> None:
        self._mq = mq
        self.name = name
        self._mqd: int = mq.mqd
        self._maxmsg: int = mq.max_messages
        self._msgsize: int = mq.max_message_size
        self._closed = False

    # --- creation -----------------------------------------------------------------

    @classmethod
    def _create(cls, name: str, *, max_messages: Optional[int], max_message_size: Optional[int], mode: int) -> "PosixMessageQueue":
        if max_messages is None:
            max_messages = read_limit(MSG_DEFAULT_FILE) or posix_ipc.QUEUE_MESSAGES_MAX_DEFAULT
        if max_message_size is None:
            max_message_size = read_limit(MSGSIZE_DEFAULT_FILE) or posix_ipc.QUEUE_MESSAGE_SIZE_MAX_DEFAULT
        try:
            mq = posix_ipc.MessageQueue(name, posix_ipc.O_CREX, mode=mode, max_messages=max_messages, max_message_size=max_message_size)
        except posix_ipc.ExistentialError as exc:
            raise ExistsError(errno.EEXIST, f"mq_open: a POSIX message queue named {name!r} exists", name) from exc
        except ValueError as exc:  # posix_ipc's EINVAL
            raise _limit_error(max_messages, max_message_size) from exc
        except OSError as exc:
            if exc.errno == errno.EMFILE or "maximum number of files" in str(exc):
                raise _emfile_error(max_messages, max_message_size) from exc
            if exc.errno == errno.ENOSPC:
                raise IPCError(
                    errno.ENOSPC,
                    f"mq_open: the system-wide number of POSIX message queues is at its limit "
                    f"queues_max={read_limit(QUEUES_MAX_FILE)} ({QUEUES_MAX_FILE}); unlink unused queues",
                ) from exc
            with translate_oserror("mq_open", filename=name):
                raise
        except posix_ipc.Error as exc:
            with translate_oserror("mq_open", filename=name):
                raise
            raise AssertionError("unreachable") from exc  # pragma: no cover
        try:
            os.fchmod(mq.mqd, mode)  # mq_open applied the umask; make the mode exact
        except BaseException:
            mq.unlink()
            mq.close()
            raise
        return cls(mq, name)

    @classmethod
    def _open(cls, name: str) -> "PosixMessageQueue":
        try:
            mq = posix_ipc.MessageQueue(name)
        except posix_ipc.ExistentialError as exc:
            raise NotFoundError(errno.ENOENT, f"mq_open: no POSIX message queue named {name!r}", name) from exc
        except (OSError, posix_ipc.Error) as exc:
            if isinstance(exc, OSError) and (exc.errno == errno.EMFILE or "maximum number of files" in str(exc)):
                raise IPCError(errno.EMFILE, "mq_open: this process has too many open files") from exc
            with translate_oserror("mq_open", filename=name):
                raise
            raise AssertionError("unreachable") from exc  # pragma: no cover
        return cls(mq, name)

    # --- the hot path -----------------------------------------------------------

    def send(self, data: Any, *, priority: int = 0, type: int = 1, timeout: Optional[float] = None) -> None:
        """Enqueue *data* with *priority* (0..32767; higher is received first, FIFO
        within a priority). ``type`` is for SysV queues and is ignored here.
        A full queue waits up to *timeout*, then ``Timeout``; nothing is enqueued."""
        if self._closed:
            raise closed_error(self)
        view = byte_view(data)
        if view.nbytes > self._msgsize:
            raise too_large(view.nbytes, self._msgsize, self)
        if priority.__class__ is not int or not 0 <= priority <= PRIORITY_MAX:
            check_priority(priority)
        send = self._mq.send
        if timeout is None:  # the hot path: one direct blocking call
            try:
                return send(view, None, priority)  # type: ignore[no-any-return]
            except _Signal:
                pass  # interrupted: _retry calls again
            except Exception as exc:
                raise _fail(exc, "mq_send") from exc
        self._retry(lambda block: send(view, None if block else 0, priority), "send", timeout)

    def recv(self, *, timeout: Optional[float] = None) -> bytes:
        """Dequeue the oldest message of the highest priority; ``Timeout`` if none
        arrived within *timeout*."""
        return self._receive(timeout)[0]  # type: ignore[no-any-return]

    def receive(self, *, type: int = 0, timeout: Optional[float] = None) -> Message:
        """Like ``recv()`` but returns ``Message(data, priority, None)``. POSIX
        queues have no types: *type* must be 0."""
        if type != 0 or type.__class__ is not int:
            if isinstance(type, bool) or not isinstance(type, int):
                raise TypeError(f"type must be an int, not {type.__class__.__name__}")
            raise ValueError(f"POSIX queues have no message types (they order by priority): type must be 0, got {type}")
        data, priority = self._receive(timeout)
        return Message(data, priority, None)

    def _receive(self, timeout: Optional[float]) -> tuple:
        if self._closed:
            raise closed_error(self)
        receive = self._mq.receive
        if timeout is None:  # the hot path: one direct blocking call
            try:
                return receive()  # type: ignore[no-any-return]
            except _Signal:
                pass  # interrupted: _retry calls again
            except Exception as exc:
                raise _fail(exc, "mq_receive") from exc
        return self._retry(lambda block: receive(None if block else 0), "recv", timeout)  # type: ignore[no-any-return]

    def _retry(self, attempt: Any, what: str, timeout: Optional[float]) -> Any:
        """Run ``attempt(block)`` (one mq_send/mq_receive) to completion: blocking
        when *timeout* is None, else non-blocking tries with a poll() on the queue
        descriptor between them until the monotonic deadline (not mq_timed*, which
        wait on the wall clock). EINTR is retried in both cases."""
        call = "mq_send" if what == "send" else "mq_receive"
        if timeout is None:
            while True:
                try:
                    return attempt(True)
                except _Signal:
                    continue
                except Exception as exc:
                    raise _fail(exc, call) from exc
        deadline = Deadline.from_user(timeout)
        events = select.POLLOUT if what == "send" else select.POLLIN
        while True:
            try:
                return attempt(False)
            except (_Busy, _Signal):
                pass
            except Exception as exc:
                raise _fail(exc, call) from exc
            if deadline.expired():
                raise deadline.timeout_error(what)
            wait_fd(self._mqd, events, deadline)

    # --- the rest ---------------------------------------------------------------

    def fileno(self) -> int:
        """The queue descriptor (``mqd_t`` is an fd on Linux), for selectors and asyncio."""
        if self._closed:
            raise closed_error(self)
        return self._mqd

    def __len__(self) -> int:
        self._check_open()
        with translate_oserror("mq_getattr"):
            return int(self._mq.current_messages)

    @property
    def max_messages(self) -> int:
        """Capacity in messages (``mq_maxmsg`` from ``mq_getattr``)."""
        self._check_open()
        return self._maxmsg

    @property
    def max_message_size(self) -> int:
        """Largest message in bytes (``mq_msgsize`` from ``mq_getattr``)."""
        self._check_open()
        return self._msgsize

    def stat(self) -> MessageQueueStat:
        """``mq_getattr`` plus the descriptor's inode (owner, mode, last change).
        ``bytes`` is the QSIZE line of the queue's file when an mqueue filesystem
        is mounted somewhere, else None. POSIX queues record no sender/receiver
        pids and no separate send/receive times (those fields are None)."""
        self._check_open()
        with translate_oserror("mq_getattr"):
            messages = int(self._mq.current_messages)
            st = os.fstat(self._mqd)
        return MessageQueueStat(
            backend="posix",
            messages=messages,
            bytes=_queued_bytes(self.name),
            max_messages=self._maxmsg,
            max_message_size=self._msgsize,
            max_bytes=None,
            last_send_pid=None,
            last_receive_pid=None,
            last_send_time=None,
            last_receive_time=None,
            last_change_time=st.st_mtime,
            uid=st.st_uid,
            mode=st.st_mode & 0o7777,
        )

    def unlink(self) -> None:
        """Remove the name (works on a closed handle too). Handles still open keep
        working until closed; ``NotFoundError`` if the name is already gone."""
        try:
            posix_ipc.unlink_message_queue(self.name)
        except posix_ipc.ExistentialError as exc:
            raise NotFoundError(errno.ENOENT, f"mq_unlink: no POSIX message queue named {self.name!r}", self.name) from exc
        except (OSError, posix_ipc.Error) as exc:
            with translate_oserror("mq_unlink", filename=self.name):
                raise
            raise AssertionError("unreachable") from exc  # pragma: no cover

    def _close(self) -> None:
        mq, self._mq = self._mq, None
        try:
            mq.close()
        except posix_ipc.Error:  # pragma: no cover - already invalid
            pass


__all__ = ["PosixMessageQueue"]
