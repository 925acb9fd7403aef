"""The channel registry, and every ipckit channel through the conformance checker.

``KINDS`` is the one list of the channels ipckit ships. Each entry says how to make a
fresh ``(sender, receiver)`` (given the test's fixtures: ``tmp_path``, ``make_name``,
``make_key``), what it is (a byte stream? two-way? with a descriptor?) and which
``check_channel`` options apply. This file runs ``ipckit.testing.check_channel`` over
every entry (and ``check_two_way_channel`` over the two-way ones);
``test_contract.py`` parametrises its per-promise tests over the same list. Owners of
other channels add their entries here.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import random
import secrets
import signal
import socket
import struct
import threading
import time
import zlib
from typing import Any, Callable, NamedTuple

import pytest

import ipckit
from ipckit.testing import check_channel, check_two_way_channel


class Made(NamedTuple):
    sender: Any
    receiver: Any
    others: tuple = ()  # more objects to close (the Pipe of a shorthand pair ...)
    cleanup: tuple = ()  # callables to run once everything is closed (unlink a name)


class Kind(NamedTuple):
    id: str
    make: Callable[[Any], Made]  # make(fixtures) -> Made
    stream: bool = False  # a byte stream: framed send/recv and raw write/read
    two_way: bool = False  # the receiver can send back to the sender
    fd: bool = True  # the ends have a pollable fileno()
    eof: bool = True  # closing the sender ends the receiver's stream (ClosedError)
    options: Callable[[], dict] = dict  # check_channel options (a callable: some are probed)


class Fixtures:
    """The fixtures a maker may use, looked up lazily from the test's request."""

    def __init__(self, request: pytest.FixtureRequest, tmp_path: Any) -> None:
        self.request = request
        self.tmp_path = tmp_path

    def __getattr__(self, name: str) -> Any:
        return self.request.getfixturevalue(name)


# ---------------------------------------------------------------- Pipe


def _pipe(fx: Any) -> Made:
    p = ipckit.Pipe()
    return Made(p.writer, p.reader)


def _pipe_shorthand(fx: Any) -> Made:
    p = ipckit.Pipe()
    return Made(p, p)


def _duplex(fx: Any) -> Made:
    a, b = ipckit.Pipe.duplex()
    return Made(a, b)


def fifo_pair(path: str) -> tuple:
    """A (writer, reader) pair of ends on the FIFO at *path* (each open waits for the other)."""
    box: dict = {}

    def open_reader() -> None:
        box["r"] = ipckit.Pipe.fifo(path, "r", timeout=10)

    t = threading.Thread(target=open_reader)
    t.start()
    w = ipckit.Pipe.fifo(path, "w", timeout=10)
    t.join(10)
    return w, box["r"]


def _fifo(fx: Any) -> Made:
    path = str(fx.tmp_path / f"fifo-{secrets.token_hex(4)}")
    w, r = fifo_pair(path)
    return Made(w, r, cleanup=(lambda: os.unlink(path),))


# ---------------------------------------------------------------- MessageQueue


def _mqueue(backend: str) -> Callable[[Any], Made]:
    def make(fx: Any) -> Made:
        if backend == "sysv":
            # Bounded in bytes: sized to exactly 16 of check_channel's 1000-byte messages,
            # so a 4-byte one cannot slip into a "full" queue.
            q1 = ipckit.MessageQueue.create(fx.make_key(), backend="sysv", max_messages=16, max_message_size=1000)
            q2 = ipckit.MessageQueue.open(q1.name, backend="sysv")
            return Made(q1, q2)  # (make_key removes it after the test)
        q1 = ipckit.MessageQueue.create(fx.make_name(), backend=backend)
        q2 = ipckit.MessageQueue.open(q1.name, backend=backend)
        # The queue lives while a handle is open; unlinking at once keeps this user's
        # RLIMIT_MSGQUEUE budget (about 9 default-sized queues) from running out.
        q1.unlink()
        return Made(q1, q2)

    return make


def _mq_limit(backend: str) -> Callable[[], dict]:
    def options() -> dict:
        if backend == "sysv":
            return {"max_size": 1000, "eof_on_close": False}
        name = ipckit.testing.unique_name()
        with ipckit.MessageQueue.create(name, backend=backend) as probe:
            probe.unlink()
            return {"max_size": probe.max_message_size, "eof_on_close": False}

    return options


# ---------------------------------------------------------------- Socket


def _stream_socket(url: Callable[[Any], str]) -> Callable[[Any], Made]:
    def make(fx: Any) -> Made:
        with ipckit.Socket.listen(url(fx)) as srv:
            client = ipckit.Socket.connect(srv.address, timeout=10)
            server_side = srv.accept(timeout=10)
        return Made(client, server_side)

    return make


def _datagram_socket(url: Callable[[Any], str]) -> Callable[[Any], Made]:
    def make(fx: Any) -> Made:
        receiver = ipckit.Socket.listen(url(fx))
        sender = ipckit.Socket.connect(receiver.address)
        return Made(sender, receiver)

    return make


def _unix_path(fx: Any) -> str:
    return f"unix://{fx.tmp_path}/s-{secrets.token_hex(4)}.sock"


def _abstract(fx: Any) -> str:
    return f"unix://@ipckit-test-{os.getpid()}-{secrets.token_hex(6)}"


def _unix_dgram_options() -> dict:
    # The limit is SO_SNDBUF - 32 (212960 with default buffers): 64 KiB+1 fits, 8 MiB does not.
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as probe:
        return {"max_size": probe.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) - 32, "eof_on_close": False}


KINDS: list[Kind] = [
    Kind("pipe", _pipe, stream=True),
    # One object is both ends: closing "the sender" closes the receiver too.
    Kind("pipe-shorthand", _pipe_shorthand, fd=False, eof=False, options=lambda: {"eof_on_close": False}),
    Kind("duplex", _duplex, stream=True, two_way=True),
    Kind("fifo", _fifo, stream=True),
    Kind("mq-posix", _mqueue("posix"), eof=False, options=_mq_limit("posix")),
    Kind("mq-sysv", _mqueue("sysv"), fd=False, eof=False, options=_mq_limit("sysv")),
    Kind("mq-shm", _mqueue("shm"), fd=False, eof=False, options=_mq_limit("shm")),
    Kind("tcp", _stream_socket(lambda fx: "tcp://127.0.0.1:0"), stream=True, two_way=True),
    Kind("tcp6", _stream_socket(lambda fx: "tcp://[::1]:0"), stream=True, two_way=True),
    Kind("unix", _stream_socket(_unix_path), stream=True, two_way=True),
    Kind("abstract", _stream_socket(_abstract), stream=True, two_way=True),
    # UDP drops instead of blocking, and has no end-of-stream.
    Kind("udp", _datagram_socket(lambda fx: "udp://127.0.0.1:0"), eof=False,
         options=lambda: {"max_size": 65507, "clogs": False, "eof_on_close": False}),
    Kind("unix+dgram", _datagram_socket(lambda fx: "unix+dgram" + _unix_path(fx)[len("unix"):]), eof=False,
         options=_unix_dgram_options),
]
KIND = {k.id: k for k in KINDS}


def pair_maker(kind: Kind, fx: Fixtures) -> Callable[[], tuple]:
    """A ``make_pair`` for ``check_channel``: the ends; the rest is cleaned up after the test."""
    pending: list = []
    fx.request.addfinalizer(lambda: [step() for made in pending for step in (*[o.close for o in made.others], *made.cleanup)])

    def make() -> tuple:
        made = kind.make(fx)
        pending.append(made)
        return made.sender, made.receiver

    return make


def _no_socket_files(tmp_path: Any) -> None:
    leftovers = [p for p in tmp_path.iterdir() if p.is_socket()]
    assert not leftovers, f"socket files left behind: {leftovers}"


@pytest.mark.parametrize("kind", KINDS, ids=[k.id for k in KINDS])
def test_check_channel(kind: Kind, request: pytest.FixtureRequest, tmp_path: Any) -> None:
    check_channel(pair_maker(kind, Fixtures(request, tmp_path)), **kind.options())
    _no_socket_files(tmp_path)


TWO_WAY_STREAMS = [k for k in KINDS if k.two_way and k.stream]


@pytest.mark.parametrize("kind", TWO_WAY_STREAMS, ids=[k.id for k in TWO_WAY_STREAMS])
def test_check_two_way_channel(kind: Kind, request: pytest.FixtureRequest, tmp_path: Any) -> None:
    # Each end of a duplex pair or a connection checked as a sender and as a receiver.
    check_two_way_channel(pair_maker(kind, Fixtures(request, tmp_path)), **kind.options())
    _no_socket_files(tmp_path)


def test_role_classes_are_their_channel_protocols(tmp_path: Any) -> None:
    # The protocols check_channel asserts, against what each end can honour.
    from ipckit.testing import Channel, ReceiveChannel, SendChannel

    p = ipckit.Pipe()
    a, b = ipckit.Pipe.duplex()
    with p, a, b, ipckit.Socket.listen(f"unix://{tmp_path}/r.sock") as srv, ipckit.Socket.listen("udp://127.0.0.1:0") as udp:
        assert isinstance(p.reader, ReceiveChannel) and not isinstance(p.reader, SendChannel)
        assert isinstance(p.writer, SendChannel) and not isinstance(p.writer, ReceiveChannel)
        assert isinstance(p, Channel) and isinstance(a, Channel) and isinstance(b, Channel)
        assert not isinstance(srv, (SendChannel, ReceiveChannel)), "a listener neither sends nor receives"
        assert isinstance(udp, Channel)


# ---------------------------------------------------------------- killed peers
#
# A producer or a consumer SIGKILLed at a random moment, across a real fork: the
# survivor must not hang, must see only whole, checksummed messages in order (a frame
# is whole or absent), and ClosedError at the cut. A few kills per channel in CI, more
# than 100 per channel and direction under --soak.

KILLABLE = [KIND[k] for k in ("pipe", "duplex", "tcp", "unix")]
_STAMP = struct.Struct("<QI")  # sequence number, crc32 of the body


def _message(seq: int) -> bytes:
    # Mostly small messages, now and then one larger than a pipe's buffer (so kills
    # land inside frames too).
    size = (seq * 7919) % 97
    if seq % 13 == 5:
        size = 70_000 + seq % 1000
    if seq % 97 == 50:
        size = 300_000
    body = bytes([seq & 0xFF]) * size
    return _STAMP.pack(seq, zlib.crc32(body)) + body


def _check_message(msg: bytes, expected_seq: int) -> None:
    seq, crc = _STAMP.unpack_from(msg)
    body = msg[_STAMP.size:]
    assert seq == expected_seq, f"message {seq} arrived where {expected_seq} was due (lost, duplicated or reordered)"
    assert zlib.crc32(body) == crc and body == bytes([seq & 0xFF]) * len(body), f"message {seq} is corrupt"


def _child(run: Callable[[], None]) -> int:
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            run()
        finally:
            os._exit(0)
    return pid


def _reap(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def _kill_the_producer(kind: Kind, fx: Fixtures, rng: random.Random) -> int:
    made = kind.make(fx)
    sender, receiver = made.sender, made.receiver

    def produce() -> None:
        receiver.close()
        seq = 0
        while True:
            sender.send(_message(seq))
            seq += 1

    pid = _child(produce)
    sender.close()
    received = 0
    try:
        kill_at = time.monotonic() + rng.uniform(0, 0.03)
        killed = False
        while True:
            if not killed and time.monotonic() >= kill_at:
                os.kill(pid, signal.SIGKILL)
                killed = True
            try:
                msg = receiver.recv(timeout=10)
            except ipckit.ClosedError:
                break
            _check_message(msg, received)
            received += 1
        assert killed, "the producer stopped by itself"
    finally:
        receiver.close()
        _reap(pid)
        for obj in made.others:
            obj.close()
    return received


def _kill_the_consumer(kind: Kind, fx: Fixtures, rng: random.Random) -> None:
    made = kind.make(fx)
    sender, receiver = made.sender, made.receiver
    report = mmap.mmap(-1, 16)  # shared with the child: [error flag, messages checked]

    def consume() -> None:
        sender.close()
        seq = 0
        while True:
            msg = receiver.recv(timeout=30)
            try:
                _check_message(msg, seq)
            except AssertionError:
                report[0:8] = struct.pack("<Q", 1)
                raise
            seq += 1
            report[8:16] = struct.pack("<Q", seq)

    pid = _child(consume)
    receiver.close()
    try:
        kill_at = time.monotonic() + rng.uniform(0, 0.03)
        killed = False
        seq = 0
        with pytest.raises(ipckit.ClosedError):
            while True:
                if not killed and time.monotonic() >= kill_at:
                    os.kill(pid, signal.SIGKILL)
                    killed = True
                sender.send(_message(seq), timeout=10)  # a Timeout here is a hang: the test fails
                seq += 1
        assert killed, "the consumer stopped by itself"
        errors, checked = struct.unpack("<QQ", report)
        assert errors == 0, f"the consumer saw a corrupt or out-of-order message after {checked}"
        assert checked <= seq
    finally:
        sender.close()
        _reap(pid)
        for obj in made.others:
            obj.close()


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("kind", KILLABLE, ids=[k.id for k in KILLABLE])
def test_killed_producer_or_consumer(kind: Kind, request: pytest.FixtureRequest, tmp_path: Any, soak: bool) -> None:
    rng = random.Random(f"{kind.id}-{os.getpid()}")
    rounds = 100 if soak else 3
    fx = Fixtures(request, tmp_path)
    received = [_kill_the_producer(kind, fx, rng) for _ in range(rounds)]
    for _ in range(rounds):
        _kill_the_consumer(kind, fx, rng)
    assert len(received) == rounds
    _no_socket_files(tmp_path)


# ---------------------------------------------------------------- soak

SOAK_MESSAGES = 1_000_000


@pytest.mark.soak
@pytest.mark.timeout(3600)
@pytest.mark.parametrize("kind", [k for k in KINDS if k.stream], ids=[k.id for k in KINDS if k.stream])
def test_a_million_checksummed_messages(kind: Kind, request: pytest.FixtureRequest, tmp_path: Any) -> None:
    made = kind.make(Fixtures(request, tmp_path))
    sender, receiver = made.sender, made.receiver

    def produce() -> None:
        receiver.close()
        for seq in range(SOAK_MESSAGES):
            sender.send(_message(seq))
        sender.close()

    pid = _child(produce)
    sender.close()
    try:
        for seq in range(SOAK_MESSAGES):
            _check_message(receiver.recv(timeout=60), seq)
        with pytest.raises(ipckit.ClosedError):
            receiver.recv(timeout=60)
        _, status = os.waitpid(pid, 0)
        pid = 0
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    finally:
        receiver.close()
        if pid:
            _reap(pid)
        for step in made.cleanup:
            step()
