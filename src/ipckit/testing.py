"""Helpers for testing code that uses ipckit, and the channel conformance checker.

``check_channel(make_pair)`` runs every behaviour the contract (docs/reference/contract.md) promises for a message
channel against one implementation: the channel protocols (``SendChannel`` /
``ReceiveChannel``), framing of awkward sizes, ordering, bytes-like inputs, timeouts
(``timeout=None`` waits, ``timeout=0`` and ``timeout>0`` never early, even fractions
of a millisecond), a clogged sender, end-of-stream, context managers, ``fileno()``
readiness, and use after close. ``check_two_way_channel(make_pair)`` checks a duplex
pair in both directions, and both at once. ipckit runs them over every channel it
ships; third-party channels with the same methods can run them too.

``unique_name()`` / ``unique_key()`` give names no other test (or test run) uses.
"""

from __future__ import annotations

import errno
import itertools
import os
import secrets
import threading
import time
from typing import Any, Callable, Optional, Tuple

from . import _procfs
from ._channel import Channel, Closeable, ReceiveChannel, SendChannel
from ._errors import ClosedError, MessageTooLarge, Timeout

Pair = Tuple[Any, Any]

_counter = itertools.count()


# A test session sets these (tests/conftest.py) so that its leak check can tell its
# own objects from those of other programs on the machine; child processes inherit them.
PREFIX_ENV = "IPCKIT_TEST_PREFIX"
KEYBASE_ENV = "IPCKIT_TEST_KEYBASE"
_issued_keys: set[int] = set()


def unique_name(prefix: Optional[str] = None) -> str:
    """A POSIX IPC name unique to this process and call, e.g. ``/ipckit-test-812-3-a1b2c3``."""
    prefix = prefix or os.environ.get(PREFIX_ENV, "ipckit-test")
    return f"/{prefix}-{os.getpid()}-{next(_counter)}-{secrets.token_hex(3)}"


def _keys_in_use() -> set[int]:
    return {row["key"] for kind in ("msg", "sem", "shm") for row in _procfs.sysvipc_rows(kind)}


def unique_key() -> int:
    """A SysV key no object on the machine has now and this process never handed out.

    Within a test session its upper 16 bits are the session's (``IPCKIT_TEST_KEYBASE``)."""
    base = int(os.environ.get(KEYBASE_ENV, "0") or 0)
    in_use = _keys_in_use() | _issued_keys
    while True:
        if base:
            key = (base << 16) | (secrets.randbelow(0xFFFE) + 1)
        else:
            key = secrets.randbelow(0x7FFF0000) + 0x10000
        if key not in in_use:
            _issued_keys.add(key)
            return key


# Sizes that stress framing: empty, one byte, just over a pipe's 64 KiB buffer, and
# several megabytes (far over every kernel buffer, so sender and receiver overlap).
FRAMING_SIZES = (0, 1, 64 * 1024 + 1, 8 * 1024 * 1024)


def _pattern(size: int, seed: int = 0) -> bytes:
    block = bytes((i * 131 + seed) & 0xFF for i in range(251))
    return (block * (size // len(block) + 1))[:size]


def _recv_in_thread(receiver: Any, count: int, timeout: float) -> tuple[threading.Thread, list]:
    box: list = []

    def run() -> None:
        try:
            for _ in range(count):
                box.append(receiver.recv(timeout=timeout))
        except BaseException as exc:  # reported by the caller
            box.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, box


def expect_timeout(call: Callable[[], Any], wait: float, exc: type[BaseException] = Timeout, what: str = "") -> BaseException:
    """Assert that ``call()`` raises *exc* (``ipckit.Timeout`` by default) no earlier
    than *wait* seconds on the monotonic clock, and not absurdly late; return the
    exception. The check for "a timeout never returns early"."""
    label = f"{what}: " if what else ""
    start = time.monotonic()
    try:
        call()
    except exc as caught:
        elapsed = time.monotonic() - start
        assert elapsed >= wait, f"{label}returned after {elapsed:.4f} s, before its {wait} s timeout"
        assert elapsed < wait + 5, f"{label}took {elapsed:.3f} s for a {wait} s timeout"
        if exc is Timeout:
            assert isinstance(caught, TimeoutError), f"{label}Timeout must be a TimeoutError"
        return caught
    raise AssertionError(f"{label}expected {exc.__name__}")


def check_channel(
    make_pair: Callable[[], Pair],
    *,
    max_size: Optional[int] = None,
    clogs: bool = True,
    eof_on_close: bool = True,
    sizes: tuple[int, ...] = FRAMING_SIZES,
) -> None:
    """Check that the channels made by *make_pair* keep ipckit's channel contract.

    *make_pair* returns a fresh ``(sender, receiver)``; each check closes both.
    *max_size*: the largest message the channel carries (larger sizes must raise
    ``MessageTooLarge`` and send nothing); None for no limit. *clogs*: whether a
    sender eventually blocks when nobody reads (False for UDP, which drops).
    *eof_on_close*: whether closing the sender makes the receiver's ``recv()`` raise
    ``ClosedError`` (true of streams, not of named queues).
    """
    checks = [
        _check_protocols,
        lambda s, r: _check_sizes(s, r, max_size, sizes),
        _check_order,
        _check_bytes_like,
        _check_bad_data,
        _check_recv_timeouts,
        _check_tiny_timeouts,
        _check_waiting_recv,
        _check_bad_timeouts,
        _check_fileno_readiness,
        _check_context_managers,
        _check_use_after_close,
    ]
    if clogs:
        checks.append(_check_clogged_sender)
    if eof_on_close:
        checks += [_check_eof, _check_close_wakes_receiver]
    for check in checks:
        sender, receiver = make_pair()
        try:
            check(sender, receiver)
        finally:
            sender.close()
            receiver.close()


def check_two_way_channel(make_pair: Callable[[], Pair], **options: Any) -> None:
    """``check_channel`` for a pair of ends that each send and receive (a duplex pair,
    a connected socket and its accepted peer): both ends are ``Channel``s, every check
    passes in each direction, and both directions work at the same time (large
    messages crossing in both directions at once, which deadlocks a channel whose
    sends wait for their own direction's reader). *options* are ``check_channel``'s."""
    a, b = make_pair()
    try:
        for end in (a, b):
            assert isinstance(end, Channel), f"{type(end).__name__} must be a Channel (send and recv)"
    finally:
        a.close()
        b.close()
    check_channel(make_pair, **options)

    def reversed_pair() -> Pair:
        first, second = make_pair()
        return second, first

    check_channel(reversed_pair, **options)
    a, b = make_pair()
    try:
        _check_both_ways_at_once(a, b, options.get("max_size"))
    finally:
        a.close()
        b.close()


def _check_protocols(sender: Any, receiver: Any) -> None:
    assert isinstance(sender, SendChannel), f"the sender ({type(sender).__name__}) must be a SendChannel"
    assert isinstance(receiver, ReceiveChannel), f"the receiver ({type(receiver).__name__}) must be a ReceiveChannel"
    for end in (sender, receiver):
        assert isinstance(end, Closeable) and end.closed is False, f"{type(end).__name__}.closed must be False while open"


def _check_both_ways_at_once(a: Any, b: Any, max_size: Optional[int]) -> None:
    size = 1 << 20 if max_size is None else min(max_size, 1 << 20)
    count = 8
    payloads = {id(a): [_pattern(size, seed=i) for i in range(count)], id(b): [_pattern(size, seed=100 + i) for i in range(count)]}
    results: dict = {}

    def send_all(end: Any) -> None:
        try:
            for data in payloads[id(end)]:
                end.send(data, timeout=60)
        except BaseException as exc:  # reported below
            results[("send", id(end))] = exc

    threads = [threading.Thread(target=send_all, args=(end,), daemon=True) for end in (a, b)]
    readers = [_recv_in_thread(b, count, timeout=60), _recv_in_thread(a, count, timeout=60)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
        assert not t.is_alive(), "sending in both directions at once hung"
    for (thread, _box) in readers:
        thread.join(120)
        assert not thread.is_alive(), "receiving in both directions at once hung"
    errors = [exc for exc in results.values()] + [x for _, box in readers for x in box if isinstance(x, BaseException)]
    if errors:
        raise errors[0]
    assert readers[0][1] == payloads[id(a)], "a -> b: messages lost, altered or reordered while b -> a was busy"
    assert readers[1][1] == payloads[id(b)], "b -> a: messages lost, altered or reordered while a -> b was busy"


def _check_sizes(sender: Any, receiver: Any, max_size: Optional[int], sizes: tuple[int, ...]) -> None:
    for size in sizes:
        payload = _pattern(size, seed=size & 0xFF)
        if max_size is not None and size > max_size:
            try:
                sender.send(payload, timeout=1)
            except MessageTooLarge as exc:
                assert isinstance(exc, ValueError)
            else:
                raise AssertionError(f"a {size}-byte message over max_size {max_size} was accepted")
            expect_timeout(lambda: receiver.recv(timeout=0), 0, what="recv after a refused message")
            continue
        thread, box = _recv_in_thread(receiver, 1, timeout=60)
        sender.send(payload, timeout=60)
        thread.join(60)
        assert not thread.is_alive(), f"receiver of a {size}-byte message hung"
        got = box[0]
        if isinstance(got, BaseException):
            raise got
        assert type(got) is bytes, f"recv() must return bytes, got {type(got).__name__}"
        assert len(got) == size and got == payload, f"a {size}-byte message arrived as {len(got)} bytes, or altered"


def _check_order(sender: Any, receiver: Any) -> None:
    thread, box = _recv_in_thread(receiver, 200, timeout=30)
    for i in range(200):
        sender.send(b"%d:" % i + b"x" * (i % 37), timeout=30)
    thread.join(60)
    errors = [x for x in box if isinstance(x, BaseException)]
    if errors:
        raise errors[0]
    assert box == [b"%d:" % i + b"x" * (i % 37) for i in range(200)], "messages arrived out of order or altered"


def _check_bytes_like(sender: Any, receiver: Any) -> None:
    import array

    inputs: list[Any] = [
        b"bytes", bytearray(b"bytearray"), memoryview(b"--memoryview--")[2:-2], array.array("i", [1, 2, 3]), b"",
    ]
    try:
        import numpy
    except ImportError:  # pragma: no cover - numpy is a test dependency
        pass
    else:
        ints = numpy.arange(6, dtype=numpy.int32)
        # a formatted (itemsize 4) memoryview, a 1-D and a 2-D contiguous array
        inputs += [ints.data, numpy.arange(16, dtype=numpy.float64), numpy.arange(12, dtype=numpy.uint16).reshape(3, 4)]
    for item in inputs:
        expected = bytes(memoryview(item).cast("B"))
        thread, box = _recv_in_thread(receiver, 1, timeout=10)
        sender.send(item, timeout=10)
        thread.join(20)
        assert box and type(box[0]) is bytes, f"{type(item).__name__} input: recv() returned {box[:1]!r}, not bytes"
        assert box[0] == expected, f"{type(item).__name__} input arrived as {box[:1]!r}"


def _check_bad_data(sender: Any, receiver: Any) -> None:
    for bad in ("text", 12, None, object()):
        try:
            sender.send(bad, timeout=0)
        except TypeError:
            pass
        else:
            raise AssertionError(f"send({bad!r}) must raise TypeError")
    try:
        import numpy
    except ImportError:  # pragma: no cover
        return
    strided = numpy.arange(10, dtype=numpy.uint8)[::2]
    try:
        sender.send(strided, timeout=0)
    except (ValueError, TypeError):
        pass
    else:
        raise AssertionError("send() of a non-contiguous buffer must raise ValueError")
    # Nothing from the refused sends may have been half-sent.
    expect_timeout(lambda: receiver.recv(timeout=0), 0, what="recv after refused sends")


def _check_recv_timeouts(sender: Any, receiver: Any) -> None:
    start = time.monotonic()
    expect_timeout(lambda: receiver.recv(timeout=0), 0, what="recv(timeout=0) on an empty channel")
    assert time.monotonic() - start < 1, "recv(timeout=0) must not block"
    expect_timeout(lambda: receiver.recv(timeout=0.2), 0.2, what="recv(timeout=0.2) on an empty channel")
    # The channel still works after a timeout.
    sender.send(b"after timeout", timeout=5)
    assert receiver.recv(timeout=5) == b"after timeout"


TINY_TIMEOUTS = (0.0015, 0.0101)  # fractions of a millisecond must not be rounded down


def _check_tiny_timeouts(sender: Any, receiver: Any) -> None:
    for wait in TINY_TIMEOUTS:
        expect_timeout(lambda: receiver.recv(timeout=wait), wait, what=f"recv(timeout={wait}) on an empty channel")


def _in_thread(call: Callable[[], Any], what: str, wait: float = 20) -> Any:
    """``call()`` in a daemon thread: its result, or its exception re-raised; an
    AssertionError if it has not returned within *wait* seconds (so a broken blocking
    call fails the check instead of hanging it)."""
    box: list = []

    def run() -> None:
        try:
            box.append((True, call()))
        except BaseException as exc:  # re-raised below
            box.append((False, exc))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(wait)
    assert box, f"{what} did not return within {wait} s"
    ok, value = box[0]
    if not ok:
        raise value
    return value


def _check_waiting_recv(sender: Any, receiver: Any) -> None:
    # timeout=None blocks until a message comes; timeout>0 returns as soon as one does.
    for timeout in (None, 30.0):
        timer = threading.Timer(0.1, sender.send, (b"late %r" % timeout,), {"timeout": 10})
        timer.start()
        try:
            got = _in_thread(lambda: receiver.recv(timeout=timeout), f"recv(timeout={timeout}) with a message sent 0.1 s later")
        finally:
            timer.join(20)
        assert got == b"late %r" % timeout, f"recv(timeout={timeout}) returned {got!r}"


def _check_fileno_readiness(sender: Any, receiver: Any) -> None:
    import io
    import selectors

    try:
        receiver.fileno()
    except (AttributeError, io.UnsupportedOperation):  # no descriptor to poll: nothing promised
        return
    with selectors.DefaultSelector() as sel:
        sel.register(receiver, selectors.EVENT_READ)
        assert sel.select(timeout=0) == [], "an empty channel's fileno() polled readable"
        sender.send(b"ping", timeout=5)
        ready = sel.select(timeout=5)
        assert [key.fileobj for key, _ in ready] == [receiver], "fileno() did not poll readable with a message waiting"
    assert receiver.recv(timeout=0) == b"ping"


def _check_context_managers(sender: Any, receiver: Any) -> None:
    for end in {id(sender): sender, id(receiver): receiver}.values():  # (one object may be both)
        with end as entered:
            assert entered is end, "with ... as x: x must be the object itself"
        assert end.closed, "leaving the with block must close the object"
    for name, call in (("send", lambda: sender.send(b"x", timeout=0)), ("recv", lambda: receiver.recv(timeout=0))):
        try:
            call()
        except ClosedError:
            pass
        else:
            raise AssertionError(f"{name} after the with block must raise ClosedError")


def _check_bad_timeouts(sender: Any, receiver: Any) -> None:
    for bad, exc_type in ((-1, ValueError), (float("nan"), ValueError), ("1", TypeError)):
        for call in (lambda: receiver.recv(timeout=bad), lambda: sender.send(b"x", timeout=bad)):
            try:
                call()
            except exc_type:
                pass
            else:
                raise AssertionError(f"timeout={bad!r} must raise {exc_type.__name__}")
    expect_timeout(lambda: receiver.recv(timeout=0), 0, what="recv after refused timeouts")


def _check_clogged_sender(sender: Any, receiver: Any) -> None:
    sent = 0
    chunk = 1000
    limit = 1 << 28  # 256 MiB: a channel that never clogs by then fails the check
    while True:
        try:
            sender.send(b"%09d" % sent + b"." * (chunk - 9), timeout=0)
        except Timeout:
            break
        sent += 1
        assert sent * chunk < limit, "sender never blocked with nobody reading"
    expect_timeout(lambda: sender.send(b"late", timeout=0.2), 0.2, what="send(timeout=0.2) on a full channel")
    for i in range(sent):
        got = receiver.recv(timeout=5)
        assert got[:9] == b"%09d" % i and len(got) == chunk, f"message {i} of {sent} lost or torn: {got[:20]!r}"
    # A message whose send timed out must not be delivered, not even in part.
    expect_timeout(lambda: receiver.recv(timeout=0), 0, what="recv after draining a clogged channel")


def _check_eof(sender: Any, receiver: Any) -> None:
    sender.send(b"last words", timeout=5)
    sender.close()
    assert receiver.recv(timeout=5) == b"last words", "a message sent before close() was lost"
    try:
        receiver.recv(timeout=5)
    except ClosedError:
        pass
    else:
        raise AssertionError("recv() after the sender closed must raise ClosedError")


def _check_close_wakes_receiver(sender: Any, receiver: Any) -> None:
    # A receiver blocked with no timeout wakes with ClosedError when the sender closes.
    timer = threading.Timer(0.1, sender.close)
    timer.start()
    try:
        _in_thread(lambda: receiver.recv(timeout=None), "recv(timeout=None) when the sender closed 0.1 s later")
    except ClosedError:
        pass
    else:
        raise AssertionError("recv() blocked on an empty channel must raise ClosedError when the sender closes")
    finally:
        timer.join(20)


def _check_use_after_close(sender: Any, receiver: Any) -> None:
    sender.close()
    receiver.close()
    sender.close()  # idempotent
    receiver.close()
    for name, call in (
        ("send", lambda: sender.send(b"x", timeout=0)),
        ("recv", lambda: receiver.recv(timeout=0)),
        ("sender.fileno", lambda: sender.fileno()),
        ("receiver.fileno", lambda: receiver.fileno()),
    ):
        try:
            call()
        except ClosedError as exc:
            assert exc.errno in (None, errno.EBADF) or isinstance(exc.errno, int)
        except AttributeError:
            if "fileno" not in name:  # objects without an fd have no fileno()
                raise
        else:
            raise AssertionError(f"{name} after close() must raise ClosedError")


__all__ = [
    "FRAMING_SIZES",
    "Channel",
    "Closeable",
    "ReceiveChannel",
    "SendChannel",
    "check_channel",
    "check_two_way_channel",
    "expect_timeout",
    "unique_key",
    "unique_name",
]
