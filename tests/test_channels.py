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

import os
import secrets
import socket
import threading
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


def _fifo(fx: Any) -> Made:
    path = str(fx.tmp_path / f"fifo-{secrets.token_hex(4)}")
    box: dict = {}

    def open_reader() -> None:
        box["r"] = ipckit.Pipe.fifo(path, "r", timeout=10)

    t = threading.Thread(target=open_reader)
    t.start()
    w = ipckit.Pipe.fifo(path, "w", timeout=10)
    t.join(10)
    return Made(w, box["r"], cleanup=(lambda: os.unlink(path),))


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
