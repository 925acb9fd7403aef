"""Pipe: anonymous pipes, duplex pairs, FIFOs; across fork/spawn children and non-Python children."""

from __future__ import annotations

import contextlib
import errno
import multiprocessing
import os
import selectors
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

import ipckit
import ipckit.testing
from ipckit.testing import expect_timeout
from ipckit import _stream
from test_framing import _reference_frames  # an independent reading of the wire format

CONTEXTS = ["fork", "spawn"]
BIG = 8 * 1024 * 1024


def _payload(size: int, seed: int = 7) -> bytes:
    block = bytes((i * 31 + seed) & 0xFF for i in range(253))
    return (block * (size // 253 + 1))[:size]


# ---------------------------------------------------------------- basics


def test_send_recv_and_shorthands() -> None:
    with ipckit.Pipe() as p:
        p.send(b"one")
        p.writer.send(bytearray(b"two"))
        assert p.recv() == b"one"
        assert p.reader.recv(timeout=1) == b"two"
        assert isinstance(p.reader.fileno(), int) and p.reader.fileno() != p.writer.fileno()
        assert os.get_blocking(p.reader.fileno()) and os.get_blocking(p.writer.fileno())
        assert "Pipe" in repr(p)
    assert p.closed and p.reader.closed and p.writer.closed


def test_ends_are_blocking_and_close_on_exec() -> None:
    with ipckit.Pipe() as p:
        for end in (p.reader, p.writer):
            assert os.get_blocking(end.fileno())
            assert not os.get_inheritable(end.fileno())
        # A timed call must leave them blocking too.
        with pytest.raises(ipckit.Timeout):
            p.recv(timeout=0.01)
        assert os.get_blocking(p.reader.fileno())


def test_wrong_direction() -> None:
    # Each end has only the methods it can honour: the other direction's are absent.
    with ipckit.Pipe() as p:
        for name in ("send", "write", "flush"):
            with pytest.raises(AttributeError, match=name):
                getattr(p.reader, name)
            assert not hasattr(p.reader, name)
        for name in ("recv", "read"):
            with pytest.raises(AttributeError, match=name):
                getattr(p.writer, name)
            assert not hasattr(p.writer, name)
        assert isinstance(p.reader, ipckit.testing.ReceiveChannel) and not isinstance(p.reader, ipckit.testing.SendChannel)
        assert isinstance(p.writer, ipckit.testing.SendChannel) and not isinstance(p.writer, ipckit.testing.ReceiveChannel)


def test_bad_arguments() -> None:
    with ipckit.Pipe() as p:
        with pytest.raises(TypeError, match="data"):
            p.send("text")
        with pytest.raises(TypeError, match="data"):
            p.writer.write(5)
        with pytest.raises(ValueError, match="timeout"):
            p.recv(timeout=-1)
        with pytest.raises(TypeError, match="timeout"):
            p.send(b"x", timeout="1")
        with pytest.raises(ValueError, match="n must be"):
            p.reader.read(0)
        with pytest.raises(TypeError, match="n must be"):
            p.reader.read(1.5)
    with pytest.raises(TypeError, match="size"):
        ipckit.Pipe(size="big")
    with pytest.raises(ValueError, match="size"):
        ipckit.Pipe(size=0)


def test_closed_objects() -> None:
    p = ipckit.Pipe()
    reader, writer = p.reader, p.writer
    p.close()
    p.close()
    for call in (reader.fileno, writer.fileno, lambda: reader.recv(), lambda: writer.send(b"x"),
                 lambda: reader.read(5), lambda: writer.write(b"x"), lambda: p.send(b"x"), lambda: p.recv(timeout=0),
                 lambda: reader.recv(timeout=1), lambda: writer.send(b"x", timeout=1), lambda: reader.pipe_size):
        with pytest.raises(ipckit.ClosedError):
            call()


def test_dropping_the_pipe_keeps_the_ends() -> None:
    writer = ipckit.Pipe().writer  # the Pipe object itself is garbage at once
    reader_pipe = ipckit.Pipe()
    with writer:
        assert not writer.closed
        writer.close()
    reader_pipe.close()


def test_raw_write_read_and_eof() -> None:
    with ipckit.Pipe() as p:
        assert p.writer.write(b"hello world") == 11
        assert p.reader.read(5) == b"hello"
        assert p.reader.read(100, timeout=1) == b" world"
        p.writer.close()
        assert p.reader.read(10) == b""
        assert p.reader.read(10, timeout=0) == b""


def test_raw_read_after_framed_read_ahead() -> None:
    # A recv() may read ahead past its frame; raw reads get those bytes first.
    with ipckit.Pipe() as p:
        p.writer.write(b"\x00\x00\x00\x02hiRAW")
        assert p.recv() == b"hi"
        assert p.reader.read(10) == b"RAW"


def test_read_timeouts() -> None:
    with ipckit.Pipe() as p:
        expect_timeout(lambda: p.reader.read(5, timeout=0), 0, ipckit.Timeout)
        expect_timeout(lambda: p.reader.read(5, timeout=0.15), 0.15, ipckit.Timeout)
        expect_timeout(lambda: p.recv(timeout=0.15), 0.15, ipckit.Timeout)


def test_frame_arriving_in_pieces_with_timeouts() -> None:
    with ipckit.Pipe() as p:
        p.writer.write(b"\x00\x00\x00\x05ab")
        with pytest.raises(ipckit.Timeout):
            p.recv(timeout=0.05)
        p.writer.write(b"cde")
        assert p.recv(timeout=1) == b"abcde"


def test_eof_inside_a_frame() -> None:
    with ipckit.Pipe() as p:
        p.writer.write(b"\x00\x00\x01\x00partial")
        p.writer.close()
        with pytest.raises(ipckit.ClosedError, match="inside a frame"):
            p.recv(timeout=5)
    with ipckit.Pipe() as p:
        p.writer.write(b"\x00\x00\x01\x00partial")
        p.writer.close()
        with pytest.raises(ipckit.ClosedError, match="inside a frame"):
            p.recv()


def test_large_messages_in_one_process() -> None:
    with ipckit.Pipe() as p:
        data = _payload(3 * 1024 * 1024 + 5)
        t = threading.Thread(target=p.send, args=(data,))
        t.start()
        assert p.recv(timeout=30) == data
        t.join(10)


def test_write_to_pipe_without_reader_is_closed_error() -> None:
    with ipckit.Pipe() as p:
        p.reader.close()
        with pytest.raises(ipckit.ClosedError) as info:
            p.send(b"x")
        assert info.value.errno == errno.EPIPE
        with pytest.raises(ipckit.ClosedError):
            p.send(b"x", timeout=1)
        with pytest.raises(ipckit.ClosedError):
            p.writer.write(b"x" * 100000)


def test_no_sigpipe_death_even_with_default_sigpipe() -> None:
    # In a fresh interpreter whose SIGPIPE action is back to the default (death).
    code = textwrap.dedent(
        """
        import signal, threading, ipckit
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        p = ipckit.Pipe()
        p.reader.close()
        for call in (lambda: p.send(b"x"), lambda: p.send(b"y" * 100000, timeout=1), lambda: p.writer.write(b"z")):
            try:
                call()
            except ipckit.ClosedError:
                pass
            else:
                raise SystemExit("no ClosedError")
        assert signal.SIGPIPE not in signal.sigpending()
        assert signal.SIGPIPE not in signal.pthread_sigmask(signal.SIG_BLOCK, [])
        print("survived")
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "survived"


def test_timed_out_small_send_sends_nothing() -> None:
    with ipckit.Pipe() as p:
        sent = 0
        while True:
            try:
                p.send(b"m%05d" % sent, timeout=0)
            except ipckit.Timeout as exc:
                assert exc.partial is False
                break
            sent += 1
        expect_timeout(lambda: p.send(b"late", timeout=0.1), 0.1, ipckit.Timeout)
        for i in range(sent):
            assert p.recv(timeout=5) == b"m%05d" % i
        with pytest.raises(ipckit.Timeout):
            p.recv(timeout=0)


def test_timed_out_large_send_is_finished_before_the_next_message() -> None:
    with ipckit.Pipe() as p:
        big = _payload(300_000)
        exc = expect_timeout(lambda: p.send(big, timeout=0.1), 0.1, ipckit.Timeout)
        assert exc.partial is True
        # The pipe is still full: the remainder cannot go out, so this times out too
        # and "nope" is not sent.
        exc = expect_timeout(lambda: p.send(b"nope", timeout=0.05), 0.05, ipckit.Timeout)
        assert exc.partial is False
        got: list = []
        t = threading.Thread(target=lambda: got.extend([p.recv(timeout=20), p.recv(timeout=20)]))
        t.start()
        p.send(b"next", timeout=20)  # finishes the big frame first, then sends "next"
        t.join(30)
        assert got == [big, b"next"]
        with pytest.raises(ipckit.Timeout):
            p.recv(timeout=0)


def test_flush_and_close_with_pending_remainder() -> None:
    with ipckit.Pipe() as p:
        with pytest.raises(ipckit.Timeout):
            p.send(_payload(200_000), timeout=0)
        with pytest.raises(ipckit.Timeout):
            p.writer.flush(timeout=0.05)
        p.writer.close()  # the peer sees the stream end inside the frame
        with pytest.raises(ipckit.ClosedError, match="inside a frame"):
            while True:
                p.recv(timeout=5)


def test_raw_write_timeout_reports_bytes_written() -> None:
    with ipckit.Pipe() as p:
        exc = expect_timeout(lambda: p.writer.write(b"x" * 200_000, timeout=0.1), 0.1, ipckit.Timeout)
        assert exc.written == 65536


def test_pipe_size() -> None:
    with ipckit.Pipe(size=256 * 1024) as p:
        assert p.writer.pipe_size >= 256 * 1024
        p.reader.pipe_size = 128 * 1024
        assert p.reader.pipe_size == 128 * 1024
        p.send(b"abc")
        assert p.reader.available == 7
        with pytest.raises(ValueError):
            p.writer.pipe_size = -1
    assert ipckit.Pipe.PIPE_BUF == 4096


def test_selectors_see_readiness() -> None:
    with ipckit.Pipe() as p, selectors.DefaultSelector() as sel:
        sel.register(p.reader, selectors.EVENT_READ)
        assert sel.select(timeout=0) == []
        p.send(b"ready")
        assert [key.fileobj for key, _ in sel.select(timeout=1)] == [p.reader]
        assert p.recv() == b"ready"


def test_duplex() -> None:
    a, b = ipckit.Pipe.duplex()
    with a, b:
        a.send(b"ping")
        assert b.recv(timeout=1) == b"ping"
        b.send(b"pong")
        assert a.recv(timeout=1) == b"pong"
        assert os.get_blocking(a.fileno())
    with pytest.raises(ipckit.ClosedError):
        a.fileno()


# ---------------------------------------------------------------- across processes


def _child_echo_upper(reader, writer, unused) -> None:  # type: ignore[no-untyped-def]
    for end in unused:  # a fork child holds copies of every end; EOF needs them closed
        end.close()
    while True:
        try:
            msg = reader.recv(timeout=30)
        except ipckit.ClosedError:
            break
        writer.send(msg.upper() if len(msg) < 100 else msg[::-1])
    writer.close()


@pytest.mark.parametrize("ctx", CONTEXTS)
def test_pipe_ends_to_child(ctx: str) -> None:
    mp = multiprocessing.get_context(ctx)
    to_child, from_child = ipckit.Pipe(), ipckit.Pipe()
    proc = mp.Process(target=_child_echo_upper, args=(to_child.reader, from_child.writer, [to_child.writer, from_child.reader]))
    proc.start()
    try:
        to_child.reader.close()
        from_child.writer.close()
        to_child.send(b"hello")
        assert from_child.recv(timeout=30) == b"HELLO"
        big = _payload(BIG)
        sender = threading.Thread(target=to_child.send, args=(big,))
        sender.start()
        assert from_child.recv(timeout=60) == big[::-1]
        sender.join(30)
        to_child.writer.close()
        with pytest.raises(ipckit.ClosedError):
            from_child.recv(timeout=30)
    finally:
        proc.join(30)
        to_child.close()
        from_child.close()
    assert proc.exitcode == 0


def _child_use_whole_pipe(pipe, duplex_end) -> None:  # type: ignore[no-untyped-def]
    pipe.send(b"via whole pipe")
    duplex_end.send(duplex_end.recv(timeout=30) + b"!")


@pytest.mark.parametrize("ctx", CONTEXTS)
def test_whole_pipe_and_duplex_end_to_child(ctx: str) -> None:
    mp = multiprocessing.get_context(ctx)
    p = ipckit.Pipe()
    a, b = ipckit.Pipe.duplex()
    proc = mp.Process(target=_child_use_whole_pipe, args=(p, b))
    proc.start()
    try:
        b.close()
        assert p.recv(timeout=30) == b"via whole pipe"
        a.send(b"duplex")
        assert a.recv(timeout=30) == b"duplex!"
    finally:
        proc.join(30)
        p.close()
        a.close()
    assert proc.exitcode == 0


def _child_send_then_hang(writer, half: bool) -> None:  # type: ignore[no-untyped-def]
    writer.send(b"before")
    if half:
        writer.write(b"\x00\x10\x00\x00only part of a 1 MiB frame")
    time.sleep(60)


@pytest.mark.parametrize("ctx", CONTEXTS)
@pytest.mark.parametrize("half", [False, True], ids=["between-frames", "inside-frame"])
def test_sigkilled_writer_gives_closed_error(ctx: str, half: bool) -> None:
    mp = multiprocessing.get_context(ctx)
    p = ipckit.Pipe()
    proc = mp.Process(target=_child_send_then_hang, args=(p.writer, half))
    proc.start()
    try:
        p.writer.close()
        assert p.recv(timeout=30) == b"before"
        if half:
            with pytest.raises(ipckit.Timeout):
                p.recv(timeout=0.2)
        os.kill(proc.pid, signal.SIGKILL)
        start = time.monotonic()
        with pytest.raises(ipckit.ClosedError) as info:
            p.recv(timeout=20)
        assert time.monotonic() - start < 10
        assert ("inside a frame" in str(info.value)) == half
    finally:
        proc.join(30)
        p.close()


def _child_hand_back(queue, reply_writer) -> None:  # type: ignore[no-untyped-def]
    end = queue.get(timeout=30)  # an end pickled through a queue to a running process
    reply_writer.send(end.recv(timeout=30))


def test_end_through_a_queue_to_a_running_process() -> None:
    mp = multiprocessing.get_context("spawn")
    q = mp.Queue()
    p, reply = ipckit.Pipe(), ipckit.Pipe()
    proc = mp.Process(target=_child_hand_back, args=(q, reply.writer))
    proc.start()
    try:
        q.put(p.reader)
        p.send(b"through the queue")
        assert reply.recv(timeout=30) == b"through the queue"
    finally:
        proc.join(30)
        p.close()
        reply.close()
        q.close()
    assert proc.exitcode == 0


def test_cat_reads_the_raw_stream() -> None:
    with ipckit.Pipe() as p:
        fd = p.reader.fileno()
        cat = subprocess.Popen(["cat", f"/dev/fd/{fd}"], pass_fds=[fd], stdout=subprocess.PIPE)
        p.reader.close()
        data = b"".join(b"line %d\n" % i for i in range(20000))  # > 64 KiB: cat must drain as we write

        def feed() -> None:
            assert p.writer.write(data) == len(data)
            p.writer.close()

        feeder = threading.Thread(target=feed)
        feeder.start()
        out, _ = cat.communicate(timeout=30)
        feeder.join(30)
    assert cat.returncode == 0
    assert out == data


def test_shell_pipeline_and_child_writing_to_us() -> None:
    with ipckit.Pipe() as to_shell, ipckit.Pipe() as from_shell:
        rfd, wfd = to_shell.reader.fileno(), from_shell.writer.fileno()
        sh = subprocess.Popen(["sh", "-c", f"cat /dev/fd/{rfd} | tr a-z A-Z > /dev/fd/{wfd}"], pass_fds=[rfd, wfd])
        to_shell.reader.close()
        from_shell.writer.close()
        to_shell.writer.write(b"hello, shell\n")
        to_shell.writer.close()
        chunks = []
        while True:
            chunk = from_shell.reader.read(4096, timeout=30)
            if not chunk:
                break
            chunks.append(chunk)
        assert sh.wait(30) == 0
    assert b"".join(chunks) == b"HELLO, SHELL\n"


# ---------------------------------------------------------------- FIFOs


def test_fifo_created_0600_whatever_the_umask(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "f"
    old = os.umask(0o277)
    try:
        got: list = []
        t = threading.Thread(target=lambda: got.append(ipckit.Pipe.fifo(path, "r", timeout=10)))
        t.start()
        with ipckit.Pipe.fifo(path, "w", timeout=10) as w:
            t.join(10)
            with got[0] as r:
                w.send(b"through a fifo")
                assert r.recv(timeout=5) == b"through a fifo"
    finally:
        os.umask(old)
    st = os.stat(path)
    assert stat.S_ISFIFO(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600


def test_fifo_open_timeouts(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "lonely"
    expect_timeout(lambda: ipckit.Pipe.fifo(path, "w", timeout=0.15), 0.15, ipckit.Timeout)
    expect_timeout(lambda: ipckit.Pipe.fifo(path, "r", timeout=0.15), 0.15, ipckit.Timeout)
    expect_timeout(lambda: ipckit.Pipe.fifo(path, "w", timeout=0), 0, ipckit.Timeout)
    expect_timeout(lambda: ipckit.Pipe.fifo(str(path), "r", timeout=0), 0, ipckit.Timeout)


def test_fifo_timed_reader_keeps_early_data(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = str(tmp_path / "early")
    os.mkfifo(path, 0o600)

    def writer() -> None:
        with ipckit.Pipe.fifo(path, "w") as w:
            w.send(b"first")
            w.send(b"second")

    t = threading.Thread(target=writer)
    t.start()
    time.sleep(0.05)  # the writer is now waiting in open(); it may write as soon as we open
    with ipckit.Pipe.fifo(path, "r", timeout=10) as r:
        assert r.recv(timeout=5) == b"first"
        assert r.recv(timeout=5) == b"second"
        t.join(10)
        with pytest.raises(ipckit.ClosedError):
            r.recv(timeout=5)


def test_fifo_bad_arguments(tmp_path) -> None:  # type: ignore[no-untyped-def]
    regular = tmp_path / "regular"
    regular.write_text("not a fifo")
    with pytest.raises(ValueError, match="not a FIFO"):
        ipckit.Pipe.fifo(regular, "r", timeout=0)
    assert regular.read_text() == "not a fifo"
    with pytest.raises(ipckit.NotFoundError):
        ipckit.Pipe.fifo(tmp_path / "missing", "w", create=False, timeout=0)
    assert not (tmp_path / "missing").exists()
    with pytest.raises(ValueError, match="mode"):
        ipckit.Pipe.fifo(tmp_path / "x", "rw")
    with pytest.raises(TypeError, match="mode"):
        ipckit.Pipe.fifo(tmp_path / "x", 1)
    with pytest.raises(TypeError, match="path"):
        ipckit.Pipe.fifo(42, "r")
    with pytest.raises(ValueError, match="path"):
        ipckit.Pipe.fifo("", "r")
    with pytest.raises(ValueError, match="timeout"):
        ipckit.Pipe.fifo(tmp_path / "x", "r", timeout=-1)
    assert not (tmp_path / "x").exists()


def _fifo_child(path: str) -> None:
    with ipckit.Pipe.fifo(path, "w", create=False, timeout=30) as w:
        w.send(b"from another process")
        w.send(_payload(BIG))


@pytest.mark.parametrize("ctx", CONTEXTS)
def test_fifo_across_processes(ctx: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = str(tmp_path / "fifo")
    os.mkfifo(path, 0o600)
    proc = multiprocessing.get_context(ctx).Process(target=_fifo_child, args=(path,))
    proc.start()
    try:
        with ipckit.Pipe.fifo(path, "r", timeout=30) as r:
            assert r.recv(timeout=30) == b"from another process"
            assert r.recv(timeout=60) == _payload(BIG)
            with pytest.raises(ipckit.ClosedError):
                r.recv(timeout=30)
    finally:
        proc.join(30)
    assert proc.exitcode == 0


def test_nowait_mechanism_reported() -> None:
    assert _stream.NOWAIT_MECHANISM in ("RWF_NOWAIT", "O_NONBLOCK")


# ---------------------------------------------------------------- max_message_size


def _header(n: int) -> bytes:
    from ipckit._framing import encode_header

    return encode_header(n)


@pytest.mark.parametrize("timed", [False, True], ids=["blocking", "timed"])
def test_max_message_size_refuses_a_frame_and_closes_the_reader(timed: bool) -> None:
    timeout = 5 if timed else None
    with ipckit.Pipe(max_message_size=100) as p:
        assert p.reader.max_message_size == p.writer.max_message_size == 100
        p.send(b"x" * 100)
        assert p.recv(timeout=timeout) == b"x" * 100
        # The writer knows the reader's limit: it refuses, and sends nothing.
        with pytest.raises(ipckit.MessageTooLarge) as info:
            p.send(b"x" * 101, timeout=timeout)
        assert isinstance(info.value, ValueError) and info.value.errno == errno.EMSGSIZE
        expect_timeout(lambda: p.recv(timeout=0), 0)
        # A peer that announces more anyway: MessageTooLarge, and the reader is closed,
        # since the rest of the stream cannot be found without reading that frame.
        p.writer.write(_header(101) + b"y" * 101 + _header(1) + b"z")
        with pytest.raises(ipckit.MessageTooLarge, match="101-byte"):
            p.recv(timeout=timeout)
        assert p.reader.closed
        with pytest.raises(ipckit.ClosedError):
            p.recv(timeout=timeout)


def test_max_message_size_refused_on_the_header_alone() -> None:
    # No byte of the body needs to arrive: the header is enough.
    with ipckit.Pipe(max_message_size=1 << 20) as p:
        p.writer.write(_header(2**62))
        with pytest.raises(ipckit.MessageTooLarge):
            p.recv(timeout=5)


def test_max_message_size_on_duplex_and_fifo(tmp_path) -> None:  # type: ignore[no-untyped-def]
    a, b = ipckit.Pipe.duplex(max_message_size=10)
    with a, b:
        with pytest.raises(ipckit.MessageTooLarge):
            a.send(b"x" * 11)
        b.send(b"0123456789")
        assert a.recv(timeout=5) == b"0123456789"
        b.write(_header(11))
        with pytest.raises(ipckit.MessageTooLarge):
            a.recv()
        assert a.closed and not b.closed
    path = tmp_path / "limited"
    box: list = []
    t = threading.Thread(target=lambda: box.append(ipckit.Pipe.fifo(path, "r", timeout=10, max_message_size=8)))
    t.start()
    with ipckit.Pipe.fifo(path, "w", timeout=10) as w:  # this writer was not told the limit
        t.join(10)
        with box[0] as r:
            w.send(b"12345678")
            w.send(b"123456789")
            assert r.recv(timeout=5) == b"12345678"
            with pytest.raises(ipckit.MessageTooLarge):
                r.recv(timeout=5)


def test_max_message_size_bad_values() -> None:
    for bad, exc in (("10", TypeError), (1.5, TypeError), (True, TypeError), (0, ValueError), (-1, ValueError)):
        with pytest.raises(exc, match="max_message_size"):
            ipckit.Pipe(max_message_size=bad)
        with pytest.raises(exc, match="max_message_size"):
            ipckit.Pipe.duplex(max_message_size=bad)


_RSS_PROBE = textwrap.dedent(
    """
    import resource, sys, threading, ipckit
    from ipckit._framing import encode_header
    announced, follow, limit = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    limit = None if limit == "none" else int(limit)
    p = ipckit.Pipe(max_message_size=limit)
    def feed():
        p.writer.write(encode_header(announced))
        chunk = b"j" * 65536
        for _ in range(follow // 65536):
            p.writer.write(chunk)
        p.writer.close()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = threading.Thread(target=feed)
    t.start()
    outcome = "none"
    try:
        for timeout in (0.05, None):   # a timed recv first (it must keep the bytes), then a blocking one
            try:
                p.recv(timeout=timeout)
            except ipckit.Timeout:
                continue
    except ipckit.ClosedError as exc:
        outcome = "closed:" + ("inside" if "inside a frame" in str(exc) else "boundary")
    except ipckit.MessageTooLarge:
        outcome = "toolarge"
    t.join()
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    print(outcome, grown)
    """
)


@pytest.mark.parametrize("announced", [2**31, 2**62, 2**64 - 1])
@pytest.mark.parametrize("follow", [0, 24 * 1024 * 1024])
def test_a_huge_header_costs_only_the_bytes_that_arrive(announced: int, follow: int) -> None:
    # A 12-byte header must not make the reader allocate what it announces: the peak
    # RSS grows by what arrived plus one bounded chunk. Never MemoryError/OverflowError.
    result = subprocess.run([sys.executable, "-c", _RSS_PROBE, str(announced), str(follow), "none"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    outcome, grown_kib = result.stdout.split()
    assert outcome == "closed:inside"
    from ipckit._framing import BODY_CHUNK_MAX

    # what arrived + the chunk being filled + the join of the chunks done at the end (none here) + slack
    bound = follow + BODY_CHUNK_MAX + 16 * 1024 * 1024
    assert int(grown_kib) * 1024 < bound, f"RSS grew by {grown_kib} KiB for {follow} bytes that arrived"


def test_a_huge_header_over_the_limit_costs_nothing() -> None:
    result = subprocess.run([sys.executable, "-c", _RSS_PROBE, str(2**64 - 1), str(8 * 1024 * 1024), str(1 << 20)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    outcome, grown_kib = result.stdout.split()
    assert outcome == "toolarge"
    assert int(grown_kib) < 16 * 1024


C_HOSTILE_WRITER = r"""
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
/* A peer that is not ipckit: announces a frame of 2^64-1 bytes (the long header), then
   sends argv[2] bytes of junk, then exits. Writes to the descriptor number argv[1]. */
int main(int argc, char **argv) {
    int fd = atoi(argv[1]);
    long long follow = atoll(argv[2]);
    unsigned char header[12] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    if (write(fd, header, sizeof header) != sizeof header) return 1;
    char junk[4096];
    memset(junk, 'j', sizeof junk);
    while (follow > 0) {
        ssize_t n = write(fd, junk, follow < (long long)sizeof junk ? (size_t)follow : sizeof junk);
        if (n <= 0) return 2;
        follow -= n;
    }
    return 0;
}
"""


@pytest.mark.parametrize("limit", [None, 1 << 16])
def test_c_writer_sending_a_hostile_header(cc, limit) -> None:  # type: ignore[no-untyped-def]
    exe = cc(C_HOSTILE_WRITER, "hostile_writer")
    with ipckit.Pipe(max_message_size=limit) as p:
        fd = p.writer.fileno()
        child = subprocess.Popen([exe, str(fd), str(3 * 1024 * 1024)], pass_fds=[fd])
        p.writer.close()
        try:
            if limit is None:
                with pytest.raises(ipckit.ClosedError, match="inside a frame"):
                    while True:
                        p.recv(timeout=30)
            else:
                with pytest.raises(ipckit.MessageTooLarge):
                    p.recv(timeout=30)
                assert p.reader.closed  # so the writer sees a broken pipe and stops
        finally:
            child.wait(30)
    # 2 or SIGPIPE: its write failed because the reader closed (the C default kills it)
    assert child.returncode in (0, 2, -signal.SIGPIPE)


# ---------------------------------------------------------------- random and hostile input


def _hostile_streams():  # type: ignore[no-untyped-def]
    from ipckit._framing import encode, encode_header

    piece = st.one_of(
        st.binary(max_size=200).map(encode),
        st.integers(0, 2**64 - 1).map(encode_header),
        st.binary(max_size=64),
        st.integers(60_000, 70_000).map(lambda n: encode(b"L" * n)),
    )
    return st.lists(piece, max_size=8).map(b"".join)


@pytest.mark.timeout(1800)  # --soak runs 10,000 cases
@given(stream=_hostile_streams(), limit=st.one_of(st.none(), st.integers(1, 100_000)),
       timeouts=st.lists(st.sampled_from([None, 0, 0.01, 5]), min_size=1, max_size=4))
def test_random_byte_streams_give_messages_too_large_or_closed(stream: bytes, limit, timeouts) -> None:  # type: ignore[no-untyped-def]
    # Whatever a peer writes, recv() gives the frames it wrote, then MessageTooLarge or
    # ClosedError at the end; no other exception, and no hang.
    expected, ending = _reference_frames(stream, (1 << 64) if limit is None else limit)
    with ipckit.Pipe(max_message_size=limit) as p:
        def feed() -> None:
            with contextlib.suppress(ipckit.ClosedError):  # the reader closes on a refused frame
                p.writer.write(stream)
            p.writer.close()

        feeder = threading.Thread(target=feed)
        feeder.start()
        got: list = []
        i = 0
        try:
            while True:
                timeout = timeouts[i % len(timeouts)]
                i += 1
                try:
                    got.append(p.recv(timeout=timeout))
                except ipckit.Timeout:
                    assert timeout != 5 and timeout is not None, "a recv with time to spare timed out"
        except ipckit.MessageTooLarge:
            outcome = "refused"
            assert p.reader.closed
        except ipckit.ClosedError as exc:
            outcome = "cut" if "inside a frame" in str(exc) else "boundary"
        feeder.join(30)
    assert got == expected
    assert outcome == ending


# ---------------------------------------------------------------- FIFOs other users can reach


@pytest.mark.parametrize("mode, who", [(0o620, "its group"), (0o602, "others"), (0o666, "its group and others")])
def test_fifo_writable_by_others_is_refused(tmp_path, mode: int, who: str) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "shared"
    os.mkfifo(path)
    os.chmod(path, mode)
    for end in ("r", "w"):
        with pytest.raises(ValueError, match=f"writable by {who}"):
            ipckit.Pipe.fifo(path, end, timeout=0)
    assert stat.S_IMODE(os.stat(path).st_mode) == mode  # left as it was


def test_fifo_readable_by_others_but_not_writable_is_used(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "readable"
    os.mkfifo(path)
    os.chmod(path, 0o644)
    r = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        with ipckit.Pipe.fifo(path, "w", timeout=5) as w:
            w.send(b"ok")
        assert os.read(r, 100) == b"\x00\x00\x00\x02ok"
    finally:
        os.close(r)


def test_fifo_of_another_user_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    if os.geteuid() != 0:
        pytest.skip("making a FIFO owned by another user needs root")
    path = tmp_path / "theirs"
    os.mkfifo(path, 0o600)
    os.chown(path, 65534, 65534)
    with pytest.raises(ValueError, match="owned by uid 65534"):
        ipckit.Pipe.fifo(path, "r", timeout=0)
    with pytest.raises(ValueError, match="owned by uid 65534"):
        ipckit.Pipe.fifo(path, "w", create=False, timeout=0)


def test_fifo_symlink_is_never_followed(tmp_path) -> None:  # type: ignore[no-untyped-def]
    real = tmp_path / "real"
    os.mkfifo(real, 0o600)
    link = tmp_path / "link"
    os.symlink(real, link)
    for end in ("r", "w"):
        with pytest.raises(ValueError, match="symbolic link"):
            ipckit.Pipe.fifo(link, end, timeout=0)
    dangling = tmp_path / "dangling"
    os.symlink(tmp_path / "nowhere", dangling)
    with pytest.raises(ValueError, match="symbolic link"):
        ipckit.Pipe.fifo(dangling, "r", timeout=0)  # not created through the link either
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.parametrize("proc", [True, False], ids=["via-proc", "without-proc"])
def test_fifo_swapped_after_the_check_is_not_used(tmp_path, monkeypatch, proc: bool) -> None:  # type: ignore[no-untyped-def]
    # The check is made on the inode the path named when it was opened, and the FIFO is
    # then opened as that inode: replacing the name in between gains an attacker nothing.
    from ipckit import _pipe
    from ipckit._wait import retry

    if not proc:  # as on a system without /proc: the path is opened again and must be the same FIFO
        real_isdir = os.path.isdir
        monkeypatch.setattr(_pipe.os.path, "isdir", lambda p: False if p == "/proc/self/fd" else real_isdir(p))
    path = str(tmp_path / "jobs")
    os.mkfifo(path, 0o600)
    with _pipe.FifoOpener(path, "w", timeout=5) as opener:
        os.rename(path, path + ".ours")
        os.mkfifo(path)
        os.chmod(path, 0o666)  # someone else's world-writable FIFO in its place
        ours = os.open(path + ".ours", os.O_RDONLY | os.O_NONBLOCK)
        theirs = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            if proc:
                with retry(opener.attempt, opener.deadline, opener.what, opener.waiter) as w:
                    w.send(b"for us")
                assert os.read(ours, 100) == b"\x00\x00\x00\x06for us"
                assert os.read(theirs, 100) == b""  # no writer ever opened theirs
            else:
                with pytest.raises(ValueError, match="replaced"):
                    retry(opener.attempt, opener.deadline, opener.what, opener.waiter)
        finally:
            os.close(ours)
            os.close(theirs)


def test_fifo_create_false_on_missing_and_non_fifo(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ipckit.NotFoundError):
        ipckit.Pipe.fifo(tmp_path / "missing", "r", create=False, timeout=0)
    os.mkdir(tmp_path / "adir")
    with pytest.raises(ValueError, match="not a FIFO"):
        ipckit.Pipe.fifo(tmp_path / "adir", "r", timeout=0)


# ---------------------------------------------------------------- hostile arguments

# Values a confused or hostile caller might pass anywhere.
HOSTILE = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12), st.binary(max_size=64), st.lists(st.integers(-5, 2**40), max_size=3),
    st.sampled_from([object(), b"\0", "\0", 2**64, 2**63 - 1, -1, 0, 1, "r", "w", (), {}, bytearray(3)]),
)
# Timeouts that are wrong, or short: a call must never wait long in this test.
SHORT_TIMEOUTS = st.one_of(st.sampled_from([0, 0.001, 0.01, -1, float("nan"), "1", b"1", [], True]), st.floats(max_value=-1e-9))
DOCUMENTED = (TypeError, ValueError, ipckit.IPCError)


def _fifo_path(draw, base):  # type: ignore[no-untyped-def]
    name = draw(st.text(st.characters(blacklist_characters="/\0", blacklist_categories=("Cs",)), min_size=1, max_size=20))
    return draw(st.one_of(HOSTILE, st.just(os.path.join(base, name)), st.just(os.path.join(base, name) + "\0x")))


@pytest.fixture(scope="module")
def hostile_dir(tmp_path_factory):  # type: ignore[no-untyped-def]
    return str(tmp_path_factory.mktemp("hostile"))


@pytest.mark.timeout(1800)  # --soak runs 10,000 cases
@given(data=st.data())
def test_hostile_arguments_raise_only_documented_errors(data, hostile_dir) -> None:  # type: ignore[no-untyped-def]
    # Every public call of Pipe and its ends, any argument: a TypeError, a ValueError or
    # an ipckit error (never OverflowError, MemoryError, AttributeError, a bare OSError,
    # a crash or a hang), or success.
    draw = data.draw
    h = lambda: draw(HOSTILE)  # noqa: E731
    t = lambda: draw(SHORT_TIMEOUTS)  # noqa: E731
    p = ipckit.Pipe()
    a, b = ipckit.Pipe.duplex()
    calls = {
        "Pipe": lambda: ipckit.Pipe(size=draw(st.one_of(st.none(), HOSTILE)), max_message_size=draw(st.one_of(st.none(), HOSTILE))).close(),
        "duplex": lambda: [e.close() for e in ipckit.Pipe.duplex(max_message_size=h())],
        "fifo": lambda: ipckit.Pipe.fifo(_fifo_path(draw, hostile_dir), h(), create=h(), timeout=t(), max_message_size=h()).close(),
        "send": lambda: p.writer.send(h(), timeout=t()),
        "write": lambda: p.writer.write(h(), timeout=t()),
        "flush": lambda: p.writer.flush(timeout=t()),
        "recv": lambda: p.reader.recv(timeout=t()),
        "read": lambda: p.reader.read(h(), timeout=t()),
        "pipe_size": lambda: setattr(p.writer, "pipe_size", h()),
        "shorthand send": lambda: p.send(h(), timeout=t()),
        "duplex send": lambda: a.send(h(), timeout=t()),
        "duplex recv": lambda: b.recv(timeout=t()),
        "duplex read": lambda: b.read(h(), timeout=t()),
        "send_fds": lambda: a.send_fds(h(), draw(st.one_of(HOSTILE, st.lists(st.one_of(st.just(0), HOSTILE), max_size=3))), timeout=t()),
        "recv_fds": lambda: b.recv_fds(h(), bufsize=draw(st.one_of(st.just(65536), HOSTILE)), timeout=t()),
    }
    try:
        for name in data.draw(st.lists(st.sampled_from(sorted(calls)), min_size=1, max_size=4)):
            try:
                calls[name]()
            except DOCUMENTED:
                pass
    finally:
        for end in (p, a, b):
            end.close()
        for entry in os.listdir(hostile_dir):
            os.unlink(os.path.join(hostile_dir, entry))


# ---------------------------------------------------------------- attempts (what ipckit.aio drives)


@pytest.mark.parametrize("kind", ["pipe", "duplex"])
def test_a_send_attempt_commits_a_whole_frame_or_nothing(kind: str) -> None:
    # An event loop runs _attempt_send with limit=NOW and may be cancelled at any await:
    # each attempt writes nothing of the frame (WOULD_BLOCK) or commits all of it (the
    # unwritten rest waits in the pending buffer, copied before control returns to the
    # buffer's owner), so the peer sees whole frames only, in order.
    from ipckit._wait import NOW, WOULD_BLOCK

    if kind == "pipe":
        p = ipckit.Pipe()
        sender, receiver, owners = p.writer, p.reader, [p]
    else:
        sender, receiver = ipckit.Pipe.duplex()
        owners = [sender, receiver]
    try:
        filled = 0
        while sender._attempt_send(memoryview(b"f" * 1000), NOW) is not WOULD_BLOCK:
            assert sender._pending is None  # small frames go whole or not at all
            filled += 1
        big = bytearray(_payload(300_000))
        assert sender._attempt_send(memoryview(big), NOW) is WOULD_BLOCK and sender._pending is None
        for _ in range(filled * 9 // 10):  # room for part of the big frame, not all of it
            assert receiver.recv(timeout=5) == b"f" * 1000
        assert sender._attempt_send(memoryview(big), NOW) is True
        assert sender._pending is not None and sender._pending_borrowed
        sender._own_pending()  # what the async send does when it is cancelled now
        big[:] = bytes(len(big))  # the caller reuses its buffer: the frame must not change
        got: list = []
        t = threading.Thread(target=lambda: got.extend(receiver.recv(timeout=10) for _ in range(filled - filled * 9 // 10 + 2)))
        t.start()
        sender.send(b"after", timeout=20)  # the committed rest goes first
        t.join(30)
        assert got[:-2] == [b"f" * 1000] * (filled - filled * 9 // 10)
        assert got[-2] == _payload(300_000) and got[-1] == b"after"
    finally:
        for obj in owners:
            obj.close()


def test_attempts_on_a_closed_end_raise_closed_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # An event loop that keeps trying a closed end must get ClosedError, not WOULD_BLOCK
    # for ever (its waiter's descriptor is gone).
    from ipckit._wait import NOW

    p = ipckit.Pipe()
    a, b = ipckit.Pipe.duplex()
    srv = ipckit.Socket.listen(f"unix://{tmp_path}/a.sock")
    dgram = ipckit.Socket.listen("udp://127.0.0.1:0")
    for obj in (p, a, b, srv, dgram):
        obj.close()
    attempts = [
        lambda: p.writer._attempt_send(memoryview(b"x"), NOW), lambda: p.writer._attempt_flush(NOW),
        lambda: p.writer._attempt_write(memoryview(b"x"), NOW), lambda: p.reader._attempt_recv(NOW),
        lambda: p.reader._attempt_read(10, NOW), lambda: a._attempt_send(memoryview(b"x"), NOW),
        lambda: b._attempt_recv(NOW), lambda: srv._attempt_accept(NOW), lambda: dgram._attempt_recv(NOW),
        lambda: dgram._attempt_send(memoryview(b"x"), ("127.0.0.1", 9), NOW),
    ]
    for attempt in attempts:
        with pytest.raises(ipckit.ClosedError):
            attempt()


def test_an_attempt_that_reads_the_end_of_a_frame_returns_it():
    """An event loop runs attempts with limit NOW, which stop after a budget of bytes;
    one that read the last bytes of a frame must return the frame, not WOULD_BLOCK:
    the descriptor is then not readable, and the caller would wait for nothing."""
    import threading

    from ipckit._stream import ready_now
    from ipckit._wait import NOW, POLLIN, WOULD_BLOCK, wait_fd
    from ipckit._timeouts import Deadline

    a, b = ipckit.Pipe.duplex()
    with a, b:
        payload = bytes(range(256)) * (12 * 1024 + 7)  # 3 MiB and a bit: several budgets
        done = threading.Event()
        writer = threading.Thread(target=lambda: (a.send(payload), done.set()))
        writer.start()
        got = WOULD_BLOCK
        while got is WOULD_BLOCK:
            got = b._attempt_recv(NOW)
            if got is WOULD_BLOCK:
                if done.is_set() and not ready_now(b.fileno(), POLLIN):
                    pytest.fail("the whole frame was read, yet the attempt said WOULD_BLOCK")
                wait_fd(b.fileno(), POLLIN, Deadline(1.0))
        writer.join()
        assert got == payload
