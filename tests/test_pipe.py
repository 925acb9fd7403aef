"""Pipe: anonymous pipes, duplex pairs, FIFOs; across fork/spawn children and non-Python children."""

from __future__ import annotations

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

import ipckit
import ipckit.testing
from ipckit.testing import expect_timeout
from ipckit import _stream

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
