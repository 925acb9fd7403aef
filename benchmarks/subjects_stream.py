"""Byte-stream and datagram subjects: pipes, socket pairs, Unix/TCP/UDP sockets, multiprocessing.Pipe, pyzmq.

Each ipckit subject sits right above its raw counterpart, so the two can be read
side by side: the raw one is what a careful user writes with ``os``/``socket``.
"""

from __future__ import annotations

import functools
import multiprocessing
import socket
from typing import Any, Optional

from . import machine
from .subjects import Ends, FramedFd, Subject, cross

UDP_MAX = 65507  # 65535 - 8 (UDP header) - 20 (IPv4 header)
_FORK = multiprocessing.get_context("fork")


def _dgram_limit() -> int:
    # A Unix datagram must fit in the sender's socket buffer (less some overhead).
    return (machine.limit("net.wmem_default") or 212992) - 4096


# ---------------------------------------------------------------- pipes


class IpckitPipe(Subject):
    id, label, group, family, raw = "ipckit.pipe", "ipckit Pipe", "ipckit", "pipe", "raw.pipe"
    note = "two one-way pipes (one per direction) for the ping-pong"

    def setup(self, env: Any) -> Any:
        import ipckit

        ab, ba = ipckit.Pipe(), ipckit.Pipe()
        env.on_cleanup(ab.close)
        env.on_cleanup(ba.close)
        return ab, ba

    def open(self, spec: Any, role: str, peer_pid: int) -> Any:
        tx, rx = cross(spec, role)
        return Ends(tx.writer.send, rx.reader.recv)


class RawPipe(Subject):
    id, label, group, family = "raw.pipe", "os.pipe + framing", "raw", "pipe"

    def setup(self, env: Any) -> Any:
        import os

        ab, ba = os.pipe(), os.pipe()

        def close() -> None:
            for fd in (*ab, *ba):
                os.close(fd)

        env.on_cleanup(close)
        return ab, ba

    def open(self, spec: Any, role: str, peer_pid: int) -> Any:
        tx, rx = cross(spec, role)
        return FramedFd(rx[0], tx[1])


class IpckitDuplex(Subject):
    id, label, group, family, raw = "ipckit.duplex", "ipckit Pipe.duplex", "ipckit", "duplex", "raw.socketpair"

    def setup(self, env: Any) -> Any:
        import ipckit

        a, b = ipckit.Pipe.duplex()
        env.on_cleanup(a.close)
        env.on_cleanup(b.close)
        return a, b

    def open(self, spec: Any, role: str, peer_pid: int) -> Any:
        end = spec[0] if role == "a" else spec[1]
        return Ends(end.send, end.recv)


class RawSocketpair(Subject):
    id, label, group, family = "raw.socketpair", "socket.socketpair + framing", "raw", "duplex"

    def setup(self, env: Any) -> Any:
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        env.on_cleanup(a.close)
        env.on_cleanup(b.close)
        return a, b

    def open(self, spec: Any, role: str, peer_pid: int) -> Any:
        s = spec[0] if role == "a" else spec[1]
        return FramedFd(s.fileno(), s.fileno())


class MpPipe(Subject):
    id, label, group, family = "mp.pipe", "multiprocessing.Pipe", "peer", "duplex"
    note = "send_bytes/recv_bytes (no pickling)"

    def setup(self, env: Any) -> Any:
        a, b = _FORK.Pipe(duplex=True)
        env.on_cleanup(a.close)
        env.on_cleanup(b.close)
        return a, b

    def open(self, spec: Any, role: str, peer_pid: int) -> Any:
        conn = spec[0] if role == "a" else spec[1]
        return Ends(conn.send_bytes, conn.recv_bytes)


# ---------------------------------------------------------------- stream sockets


class _IpckitStream(Subject):
    group = "ipckit"
    scheme = ""

    def address(self, env: Any) -> str:
        raise NotImplementedError

    def setup(self, env: Any) -> Any:
        import ipckit

        srv = ipckit.Socket.listen(self.address(env))
        env.on_cleanup(srv.close)
        return srv, srv.address

    def open(self, spec: Any, role: str, peer_pid: int) -> Any:
        import ipckit

        srv, address = spec
        conn = ipckit.Socket.connect(address, timeout=10) if role == "a" else srv.accept(timeout=10)
        return Ends(conn.send, conn.recv, conn.close)


class _RawStream(Subject):
    group = "raw"
    af = socket.AF_UNIX

    def bind_address(self, env: Any) -> Any:
        raise NotImplementedError

    def setup(self, env: Any) -> Any:
        srv = socket.socket(self.af, socket.SOCK_STREAM)
        env.on_cleanup(srv.close)
        srv.bind(self.bind_address(env))
        srv.listen(8)
        return srv, srv.getsockname()

    def open(self, spec: Any, role: str, peer_pid: int) -> Any:
        srv, address = spec
        if role == "a":
            s = socket.create_connection(address, timeout=10) if self.af != socket.AF_UNIX else socket.socket(self.af)
            if self.af == socket.AF_UNIX:
                s.connect(address)
            s.settimeout(None)
        else:
            s, _ = srv.accept()
        if self.af == socket.AF_INET:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return FramedFd(s.fileno(), s.fileno(), s.close)


class IpckitUnix(_IpckitStream):
    id, label, family, raw = "ipckit.unix", "ipckit Socket unix://", "unix", "raw.unix"

    def address(self, env: Any) -> str:
        return "unix://" + env.path("ipckit.sock")


class RawUnix(_RawStream):
    id, label, family = "raw.unix", "socket AF_UNIX + framing", "unix"

    def bind_address(self, env: Any) -> Any:
        return env.path("raw.sock")


class IpckitTcp(_IpckitStream):
    id, label, family, raw = "ipckit.tcp", "ipckit Socket tcp://", "tcp", "raw.tcp"

    def address(self, env: Any) -> str:
        return "tcp://127.0.0.1:0"


class RawTcp(_RawStream):
    id, label, family = "raw.tcp", "socket TCP + framing", "tcp"
    af = socket.AF_INET
    note = "TCP_NODELAY on both ends"

    def bind_address(self, env: Any) -> Any:
        return ("127.0.0.1", 0)


# ---------------------------------------------------------------- datagrams


class _IpckitDgram(Subject):
    group = "ipckit"

    def address(self, env: Any) -> str:
        raise NotImplementedError

    def setup(self, env: Any) -> Any:
        import ipckit

        # One bound socket per side to receive on; each side connects to the other's.
        rx_a = ipckit.Socket.listen(self.address(env))
        env.on_cleanup(rx_a.close)
        rx_b = ipckit.Socket.listen(self.address(env))
        env.on_cleanup(rx_b.close)
        return rx_a, rx_b

    def open(self, spec: Any, role: str, peer_pid: int) -> Any:
        import ipckit

        rx_a, rx_b = spec
        mine, theirs = (rx_a, rx_b) if role == "a" else (rx_b, rx_a)
        tx = ipckit.Socket.connect(theirs.address, timeout=10)
        return Ends(tx.send, mine.recv, tx.close)


class _RawDgram(Subject):
    group = "raw"
    af = socket.AF_UNIX
    capacity = UDP_MAX

    def bind_address(self, env: Any) -> Any:
        raise NotImplementedError

    def setup(self, env: Any) -> Any:
        socks = []
        for _ in range(2):
            s = socket.socket(self.af, socket.SOCK_DGRAM)
            env.on_cleanup(s.close)
            s.bind(self.bind_address(env))
            socks.append(s)
        return socks[0], socks[1], socks[0].getsockname(), socks[1].getsockname()

    def open(self, spec: Any, role: str, peer_pid: int) -> Any:
        s_a, s_b, addr_a, addr_b = spec
        mine, theirs = (s_a, addr_b) if role == "a" else (s_b, addr_a)
        # The same topology as the ipckit subject: receive on the bound socket, send
        # from a second socket connected to the peer's. (Connecting the bound sockets
        # to each other instead would let Unix datagrams skip the kernel's
        # net.unix.max_dgram_qlen limit, a different path from a server's.)
        tx = socket.socket(self.af, socket.SOCK_DGRAM)
        if self.af == socket.AF_UNIX:
            tx.bind(b"")  # autobind, as ipckit's Unix datagram clients do
        tx.connect(theirs)
        buf = bytearray(self.capacity + 1)
        view = memoryview(buf)
        recv_into = functools.partial(mine.recv_into, buf)
        return Ends(tx.send, lambda: view[: recv_into()], tx.close)


class IpckitUdp(_IpckitDgram):
    id, label, family, raw = "ipckit.udp", "ipckit Socket udp://", "udp", "raw.udp"
    lossy = True
    note = "UDP has no flow control: lost datagrams are counted, not retried"

    def address(self, env: Any) -> str:
        return "udp://127.0.0.1:0"

    def too_big(self, size: int) -> Optional[str]:
        return f"a UDP datagram carries at most {UDP_MAX} bytes" if size > UDP_MAX else None


class RawUdp(_RawDgram):
    id, label, family = "raw.udp", "socket UDP", "udp"
    af = socket.AF_INET
    lossy = True
    too_big = IpckitUdp.too_big

    def bind_address(self, env: Any) -> Any:
        return ("127.0.0.1", 0)


class IpckitUnixDgram(_IpckitDgram):
    id, label, family, raw = "ipckit.unixdgram", "ipckit Socket unix+dgram://", "unixdgram", "raw.unixdgram"

    def address(self, env: Any) -> str:
        return "unix+dgram://" + env.path("ipckit.dgram")

    def too_big(self, size: int) -> Optional[str]:
        limit = _dgram_limit()
        if size > limit:
            return f"a Unix datagram must fit the send buffer (net.core.wmem_default = {limit + 4096})"
        return None


class RawUnixDgram(_RawDgram):
    id, label, family = "raw.unixdgram", "socket AF_UNIX SOCK_DGRAM", "unixdgram"
    capacity = 256 * 1024
    too_big = IpckitUnixDgram.too_big

    def bind_address(self, env: Any) -> Any:
        return env.path("raw.dgram")


# ---------------------------------------------------------------- pyzmq


class _Zmq(Subject):
    group = "peer"
    requires = ("zmq",)
    note = "PAIR sockets, high-water mark 16, copy on send"

    def url(self, env: Any) -> str:
        raise NotImplementedError

    def setup(self, env: Any) -> Any:
        return self.url(env)

    def open(self, spec: Any, role: str, peer_pid: int) -> Any:
        import zmq

        ctx = zmq.Context()
        s = ctx.socket(zmq.PAIR)
        s.setsockopt(zmq.SNDHWM, 16)
        s.setsockopt(zmq.RCVHWM, 16)
        s.setsockopt(zmq.LINGER, 0)
        # Copy at send time: the loops reuse one buffer, and zero-copy sends of large
        # messages would still be reading it.
        s.copy_threshold = 1 << 30
        if role == "a":
            s.connect(spec)
        else:
            s.bind(spec)

        def close() -> None:
            s.close(linger=0)
            ctx.term()

        return Ends(s.send, s.recv, close)


class ZmqIpc(_Zmq):
    id, label, family = "zmq.ipc", "pyzmq ipc://", "unix"

    def url(self, env: Any) -> str:
        return "ipc://" + env.path("zmq.ipc")


class ZmqTcp(_Zmq):
    id, label, family = "zmq.tcp", "pyzmq tcp://", "tcp"

    def url(self, env: Any) -> str:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        return f"tcp://127.0.0.1:{port}"

