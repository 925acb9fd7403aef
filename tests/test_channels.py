"""Every ipckit channel through the one conformance checker, ``ipckit.testing.check_channel``.

``CHANNELS`` is a list of factories; each entry says how to build a fresh
``(sender, receiver)`` pair (given the test's ``tmp_path`` and the ``make_name`` /
``make_key`` fixtures) and which ``check_channel`` options apply. Owners of other
channels add their entries to the list.
"""

from __future__ import annotations

import os
import secrets
from typing import Any, Callable, NamedTuple

import pytest

import ipckit
from ipckit.testing import check_channel


class Channel(NamedTuple):
    id: str
    # factory(fixtures) -> make_pair, where fixtures has tmp_path, make_name, make_key
    factory: Callable[[Any], Callable[[], tuple]]
    options: dict = {}


# ---------------------------------------------------------------- Pipe


def _pipe(fx: Any) -> Callable[[], tuple]:
    def make() -> tuple:
        p = ipckit.Pipe()
        return p.writer, p.reader

    return make


def _duplex(fx: Any) -> Callable[[], tuple]:
    return ipckit.Pipe.duplex


# ---------------------------------------------------------------- Socket


def _stream_socket(url: Callable[[Any], str]) -> Callable[[Any], Callable[[], tuple]]:
    def factory(fx: Any) -> Callable[[], tuple]:
        def make() -> tuple:
            with ipckit.Socket.listen(url(fx)) as srv:
                client = ipckit.Socket.connect(srv.address, timeout=10)
                server_side = srv.accept(timeout=10)
            return client, server_side

        return make

    return factory


def _datagram_socket(url: Callable[[Any], str]) -> Callable[[Any], Callable[[], tuple]]:
    def factory(fx: Any) -> Callable[[], tuple]:
        def make() -> tuple:
            receiver = ipckit.Socket.listen(url(fx))
            sender = ipckit.Socket.connect(receiver.address)
            return sender, receiver

        return make

    return factory


def _unix_path(fx: Any) -> str:
    return f"unix://{fx.tmp_path}/s-{secrets.token_hex(4)}.sock"


def _abstract(fx: Any) -> str:
    return f"unix://@ipckit-test-{os.getpid()}-{secrets.token_hex(6)}"


CHANNELS: list[Channel] = [
    Channel("pipe", _pipe),
    Channel("pipe-duplex", _duplex),
    Channel("socket-tcp4", _stream_socket(lambda fx: "tcp://127.0.0.1:0")),
    Channel("socket-tcp6", _stream_socket(lambda fx: "tcp://[::1]:0")),
    Channel("socket-unix", _stream_socket(_unix_path)),
    Channel("socket-unix-abstract", _stream_socket(_abstract)),
    Channel(
        "socket-udp",
        _datagram_socket(lambda fx: "udp://127.0.0.1:0"),
        # UDP drops instead of blocking, and has no end-of-stream.
        {"max_size": 65507, "clogs": False, "eof_on_close": False},
    ),
    Channel(
        "socket-unix-dgram",
        _datagram_socket(lambda fx: "unix+dgram" + _unix_path(fx)[len("unix"):]),
        # The limit is SO_SNDBUF - 32 (212960 with default buffers): 64 KiB+1 fits, 8 MiB does not.
        {"max_size": 212992 - 32, "eof_on_close": False},
    ),
]


class _Fixtures:
    def __init__(self, request: pytest.FixtureRequest, tmp_path: Any) -> None:
        self.request = request
        self.tmp_path = tmp_path

    def __getattr__(self, name: str) -> Any:
        return self.request.getfixturevalue(name)


@pytest.mark.parametrize("channel", CHANNELS, ids=[c.id for c in CHANNELS])
def test_check_channel(channel: Channel, request: pytest.FixtureRequest, tmp_path: Any) -> None:
    options = dict(channel.options)
    if channel.id == "socket-unix-dgram":
        import socket

        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as probe:
            options["max_size"] = probe.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) - 32
    check_channel(channel.factory(_Fixtures(request, tmp_path)), **options)
    leftovers = [p for p in tmp_path.iterdir() if p.is_socket()]
    assert not leftovers, f"socket files left behind: {leftovers}"
