"""Socket: URLs, listen/connect/accept, datagrams, fd passing, credentials, across processes
and across two network namespaces."""

from __future__ import annotations

import errno
import multiprocessing
import os
import secrets
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import ipckit
from ipckit.testing import expect_timeout
from ipckit._socket import UNIX_PATH_MAX, parse_address

CONTEXTS = ["fork", "spawn"]


def _abstract() -> str:
    return f"unix://@ipckit-test-{os.getpid()}-{secrets.token_hex(6)}"


def _connected(url: str) -> tuple:
    with ipckit.Socket.listen(url) as srv:
        c = ipckit.Socket.connect(srv.address, timeout=10)
        s = srv.accept(timeout=10)
    return c, s


# ---------------------------------------------------------------- addresses

GOOD = [
    ("tcp://127.0.0.1:0", "tcp", socket.AF_INET, "127.0.0.1", 0),
    ("tcp://[::1]:8080", "tcp", socket.AF_INET6, "::1", 8080),
    ("udp://10.0.0.1:65535", "udp", socket.AF_INET, "10.0.0.1", 65535),
    ("tcp://localhost:5000", "tcp", socket.AF_UNSPEC, "localhost", 5000),
]


@pytest.mark.parametrize("url,scheme,family,host,port", GOOD)
def test_parse_inet(url: str, scheme: str, family: int, host: str, port: int) -> None:
    a = parse_address(url)
    assert (a.scheme, a.family, a.host, a.port, a.url) == (scheme, family, host, port, url)


def test_parse_unix() -> None:
    assert parse_address("unix:///tmp/x.sock").path == "/tmp/x.sock"
    assert parse_address("unix://@name").path == b"\0name"
    a = parse_address("unix+dgram:///tmp/d")
    assert a.type == socket.SOCK_DGRAM and a.path == "/tmp/d"
    assert parse_address("unix:///" + "a" * (UNIX_PATH_MAX - 1)).path  # exactly 107 bytes


BAD = [
    "127.0.0.1:80", "http://127.0.0.1:80", "tcp://127.0.0.1", "tcp://127.0.0.1:", "tcp://:80",
    "tcp://127.0.0.1:99999", "tcp://127.0.0.1:-1", "tcp://127.0.0.1:8x", "tcp://::1:80", "tcp://[::1:80",
    "tcp://[nothex]:80", "tcp://bad host:80", "tcp://1.2.3.4.5:80", "udp://[::1]", "unix://relative/path", "unix://",
    "unix://@", "unix:///tmp/a\0b", "TCP://127.0.0.1:80", "unix:///" + "a" * UNIX_PATH_MAX,
    "unix://@" + "n" * (UNIX_PATH_MAX + 1),
]


@pytest.mark.parametrize("url", BAD)
def test_bad_urls(url: str) -> None:
    with pytest.raises(ValueError, match="address"):
        ipckit.Socket.listen(url)
    with pytest.raises(ValueError, match="address"):
        ipckit.Socket.connect(url)


def test_bad_argument_types() -> None:
    for bad in (None, 80, b"tcp://127.0.0.1:1", ("127.0.0.1", 80)):
        with pytest.raises(TypeError, match="address"):
            ipckit.Socket.connect(bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="backlog"):
        ipckit.Socket.listen("tcp://127.0.0.1:0", backlog="5")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="backlog"):
        ipckit.Socket.listen("tcp://127.0.0.1:0", backlog=-1)
    with pytest.raises(ValueError, match="timeout"):
        ipckit.Socket.connect("tcp://127.0.0.1:1", timeout=-1)


def test_oversized_unix_path_is_value_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    long_path = str(tmp_path / ("x" * 120))
    with pytest.raises(ValueError, match="107"):
        ipckit.Socket.listen("unix://" + long_path)
    assert not os.path.exists(long_path)


# ---------------------------------------------------------------- stream sockets


@pytest.mark.parametrize("url", ["tcp://127.0.0.1:0", "tcp://[::1]:0", "tcp://localhost:0"])
def test_tcp_port_zero_resolved(url: str) -> None:
    with ipckit.Socket.listen(url) as srv:
        host_port = srv.address.rsplit(":", 1)
        assert srv.address.startswith("tcp://") and int(host_port[1]) > 0
        with ipckit.Socket.connect(srv.address, timeout=5) as c, srv.accept(timeout=5) as s:
            c.send(b"over tcp")
            assert s.recv(timeout=5) == b"over tcp"
            assert c.address == srv.address == s.address
            assert "listening" in repr(srv)


def test_unix_socket_file_lifecycle(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "srv.sock"
    url = f"unix://{path}"
    srv = ipckit.Socket.listen(url)
    assert srv.address == url and path.is_socket()
    with pytest.raises(ipckit.ExistsError):
        ipckit.Socket.listen(url)  # a live server keeps its path
    srv.close()
    assert not path.exists()  # the listener removes its file
    # A stale file from a server that died without cleaning up is replaced.
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))
    dead.close()
    assert path.is_socket()
    with ipckit.Socket.listen(url) as srv2, ipckit.Socket.connect(url, timeout=5) as c:
        with srv2.accept(timeout=5) as s:
            c.send(b"fresh")
            assert s.recv(timeout=5) == b"fresh"
    assert not path.exists()


def test_unix_path_that_is_not_a_socket_is_kept(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "data.txt"
    path.write_text("precious")
    with pytest.raises(ipckit.ExistsError, match="not a socket"):
        ipckit.Socket.listen(f"unix://{path}")
    assert path.read_text() == "precious"


def _child_close_listener(srv) -> None:  # type: ignore[no-untyped-def]
    srv.close()


@pytest.mark.parametrize("ctx", CONTEXTS)
def test_child_closing_inherited_listener_keeps_file(ctx: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "keep.sock"
    with ipckit.Socket.listen(f"unix://{path}") as srv:
        proc = multiprocessing.get_context(ctx).Process(target=_child_close_listener, args=(srv,))
        proc.start()
        proc.join(30)
        assert proc.exitcode == 0
        assert path.is_socket()
    assert not path.exists()


def test_abstract_unix() -> None:
    url = _abstract()
    with ipckit.Socket.listen(url) as srv:
        assert srv.address == url
        with pytest.raises(ipckit.ExistsError):
            ipckit.Socket.listen(url)
        c, s = ipckit.Socket.connect(url), srv.accept(timeout=5)
        with c, s:
            s.send(b"abstract")
            assert c.recv(timeout=5) == b"abstract"


def test_accept_and_connect_timeouts(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with ipckit.Socket.listen("tcp://127.0.0.1:0") as srv:
        expect_timeout(lambda: srv.accept(timeout=0), 0, ipckit.Timeout)
        expect_timeout(lambda: srv.accept(timeout=0.15), 0.15, ipckit.Timeout)
        with ipckit.Socket.connect(srv.address, timeout=0.5) as c, srv.accept(timeout=0) as s:
            c.send(b"x")
            assert s.recv(timeout=1) == b"x"
    # A Unix listener with a full backlog makes connect() wait: it must time out.
    url = f"unix://{tmp_path}/full.sock"
    with ipckit.Socket.listen(url, backlog=0) as srv:
        held = []
        try:
            with pytest.raises(ipckit.Timeout):
                for _ in range(50):
                    held.append(ipckit.Socket.connect(url, timeout=0.1))
            assert held  # the backlog took at least one
            expect_timeout(lambda: ipckit.Socket.connect(url, timeout=0.15), 0.15, ipckit.Timeout)
        finally:
            for c in held:
                c.close()


def test_connect_errors(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ipckit.NotFoundError):
        ipckit.Socket.connect(f"unix://{tmp_path}/nobody.sock")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: refused
        with pytest.raises(ipckit.IPCError) as info:
            ipckit.Socket.connect(f"tcp://127.0.0.1:{port}", timeout=5)
        assert info.value.errno == errno.ECONNREFUSED
        with pytest.raises(ipckit.IPCError) as info:
            ipckit.Socket.connect(f"tcp://127.0.0.1:{port}")
        assert info.value.errno == errno.ECONNREFUSED


def test_raw_write_read_and_peer_close() -> None:
    c, s = _connected("tcp://127.0.0.1:0")
    with c, s:
        assert c.write(b"raw bytes") == 9
        got = b""
        while len(got) < 9:
            got += s.read(100, timeout=5)
        assert got == b"raw bytes"
        expect_timeout(lambda: s.read(10, timeout=0.1), 0.1, ipckit.Timeout)
        c.close()
        assert s.read(10, timeout=5) == b""
        with pytest.raises(ipckit.ClosedError):
            s.recv(timeout=5)
        # Writing to a peer that is gone: EPIPE/ECONNRESET -> ClosedError, never SIGPIPE.
        with pytest.raises(ipckit.ClosedError):
            for _ in range(100):
                s.send(b"x" * 10000)
                time.sleep(0.01)


def test_listener_and_closed_misuse() -> None:
    # Each role has only the methods it can honour: a listener cannot send or receive,
    # a connection cannot accept, a TCP connection has no Unix-only calls.
    srv = ipckit.Socket.listen("tcp://127.0.0.1:0")
    for name in ("send", "recv", "write", "read", "flush", "send_fds", "peer_credentials"):
        with pytest.raises(AttributeError, match=name):
            getattr(srv, name)
    c, s = ipckit.Socket.connect(srv.address), srv.accept(timeout=5)
    for obj in (srv, c, s):
        assert isinstance(obj, ipckit.Socket)
    with pytest.raises(AttributeError, match="accept"):
        c.accept(timeout=0)
    with pytest.raises(AttributeError, match="peer_credentials"):
        c.peer_credentials()
    with pytest.raises(AttributeError, match="send_fds"):
        c.send_fds(b"x", [0])
    with ipckit.Socket.listen("udp://127.0.0.1:0") as dgram:
        assert isinstance(dgram, ipckit.Socket)
        for name in ("accept", "flush", "send_fds", "peer_credentials"):
            assert not hasattr(dgram, name), name
    for obj in (srv, c, s):
        obj.close()
        obj.close()
        with pytest.raises(ipckit.ClosedError):
            obj.fileno()
    with pytest.raises(ipckit.ClosedError):
        srv.accept(timeout=0)
    with pytest.raises(ipckit.ClosedError):
        c.send(b"x")
    with pytest.raises(ipckit.ClosedError):
        s.recv(timeout=1)
    with pytest.raises(ipckit.ClosedError):
        c.write(b"x")


# ---------------------------------------------------------------- datagrams


def test_udp_datagrams() -> None:
    with ipckit.Socket.listen("udp://127.0.0.1:0") as rx, ipckit.Socket.connect(rx.address) as tx:
        assert rx.address.startswith("udp://127.0.0.1:") and not rx.address.endswith(":0")
        tx.send(b"one")
        tx.send(b"")
        tx.write(b"three")
        assert [rx.recv(timeout=5) for _ in range(3)] == [b"one", b"", b"three"]
        assert tx.max_message_size == 65507
        tx.send(b"x" * 65507)
        assert rx.recv(timeout=5) == b"x" * 65507
        with pytest.raises(ipckit.MessageTooLarge):
            tx.send(b"x" * 65508)
        expect_timeout(lambda: rx.recv(timeout=0.1), 0.1, ipckit.Timeout)  # nothing was sent
        tx.send(b"abcdef")
        assert rx.read(3, timeout=5) == b"abc"  # the rest of that datagram is gone
        expect_timeout(lambda: rx.recv(timeout=0), 0, ipckit.Timeout)


def test_unix_datagrams(tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = f"unix+dgram://{tmp_path}/d.sock"
    with ipckit.Socket.listen(url) as rx, ipckit.Socket.connect(url) as tx:
        limit = tx.max_message_size
        big = os.urandom(limit)
        tx.send(big)
        assert rx.recv(timeout=5) == big
        with pytest.raises(ipckit.MessageTooLarge):
            tx.send(b"y" * (limit + 1))
        expect_timeout(lambda: rx.recv(timeout=0.1), 0.1, ipckit.Timeout)
        # The receiver's queue fills: a timed send waits, then times out.
        with pytest.raises(ipckit.Timeout):
            for _ in range(10000):
                tx.send(b"z" * 100, timeout=0)
        expect_timeout(lambda: tx.send(b"late", timeout=0.1), 0.1, ipckit.Timeout)
    assert not os.path.exists(f"{tmp_path}/d.sock")


# ---------------------------------------------------------------- across processes


def _client_echo(url: str) -> None:
    with ipckit.Socket.connect(url, timeout=30) as c:
        for _ in range(3):
            c.send(c.recv(timeout=60)[::-1])


def _serve_echo(srv, clients: int) -> None:  # type: ignore[no-untyped-def]
    conns = [srv.accept(timeout=30) for _ in range(clients)]
    for i, conn in enumerate(conns):
        with conn:
            for size in (0, 10, 8 * 1024 * 1024):
                msg = (b"%d-" % i * (size // 3 + 1))[:size]
                t = threading.Thread(target=conn.send, args=(msg,))
                t.start()
                assert conn.recv(timeout=60) == msg[::-1]
                t.join(30)


@pytest.mark.parametrize("ctx", CONTEXTS)
@pytest.mark.parametrize("kind", ["tcp", "unix"])
def test_clients_in_child_processes(ctx: str, kind: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = "tcp://127.0.0.1:0" if kind == "tcp" else f"unix://{tmp_path}/echo.sock"
    mp = multiprocessing.get_context(ctx)
    with ipckit.Socket.listen(url) as srv:
        procs = [mp.Process(target=_client_echo, args=(srv.address,)) for _ in range(2)]
        for p in procs:
            p.start()
        try:
            _serve_echo(srv, len(procs))
        finally:
            for p in procs:
                p.join(30)
    assert [p.exitcode for p in procs] == [0, 0]


def _child_serves_connection(conn) -> None:  # type: ignore[no-untyped-def]
    with conn:
        conn.send(b"child has it: " + conn.recv(timeout=30))


@pytest.mark.parametrize("ctx", CONTEXTS)
def test_accepted_socket_handed_to_child(ctx: str) -> None:
    c, s = _connected(_abstract())
    proc = multiprocessing.get_context(ctx).Process(target=_child_serves_connection, args=(s,))
    proc.start()
    try:
        s.close()
        c.send(b"ping")
        assert c.recv(timeout=30) == b"child has it: ping"
        with pytest.raises(ipckit.ClosedError):
            c.recv(timeout=30)
    finally:
        proc.join(30)
        c.close()
    assert proc.exitcode == 0


def _child_receives_fd(url: str) -> None:
    with ipckit.Socket.connect(url, timeout=30) as c:
        data, fds = c.recv_fds(4, timeout=30)
        assert data == b"take this" and len(fds) == 1
        with os.fdopen(fds[0], "rb") as f:  # read the pipe the parent handed over
            content = f.read()
        c.send(b"read: " + content)


@pytest.mark.parametrize("ctx", CONTEXTS)
def test_send_fds_and_peer_credentials(ctx: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = f"unix://{tmp_path}/fds.sock"
    with ipckit.Socket.listen(url) as srv:
        proc = multiprocessing.get_context(ctx).Process(target=_child_receives_fd, args=(url,))
        proc.start()
        try:
            with srv.accept(timeout=30) as conn, ipckit.Pipe() as p:
                creds = conn.peer_credentials()
                assert creds == (proc.pid, os.getuid(), os.getgid())
                assert (creds.pid, creds.uid, creds.gid) == tuple(creds)
                assert conn.send_fds(b"take this", [p.reader]) == 9
                p.reader.close()
                p.writer.write(b"secret in a pipe")
                p.writer.close()
                assert conn.recv(timeout=30) == b"read: secret in a pipe"
        finally:
            proc.join(30)
    assert proc.exitcode == 0


def test_fd_passing_bad_input_and_timeouts() -> None:
    a, b = _connected(_abstract())
    with a, b:
        with pytest.raises(ValueError, match="data"):
            a.send_fds(b"", [0])
        with pytest.raises(ValueError, match="fds"):
            a.send_fds(b"x", [])
        with pytest.raises(TypeError, match="fds"):
            a.send_fds(b"x", ["0"])
        with pytest.raises(TypeError, match="fds"):
            a.send_fds(b"x", 3)
        with pytest.raises(ValueError, match="maxfds"):
            b.recv_fds(0)
        expect_timeout(lambda: b.recv_fds(1, timeout=0.1), 0.1, ipckit.Timeout)
        a.send_fds(b"two", [0, 1])
        with pytest.raises(ipckit.IPCError, match="maxfds"):
            b.recv_fds(1, timeout=5)
    d1, d2 = ipckit.Pipe.duplex()
    with d1, d2:
        r, w = os.pipe()
        d1.send_fds(b"!", [r])
        os.close(r)
        data, fds = d2.recv_fds(1, timeout=5)
        os.write(w, b"ok")
        os.close(w)
        assert data == b"!" and os.read(fds[0], 10) == b"ok"
        os.close(fds[0])


# ---------------------------------------------------------------- two network namespaces

_NETNS_SERVER = textwrap.dedent(
    """
    import sys, ipckit
    with ipckit.Socket.listen(sys.argv[1]) as srv:
        print(srv.address, flush=True)
        with srv.accept(timeout=30) as conn:
            while True:
                try:
                    msg = conn.recv(timeout=30)
                except ipckit.ClosedError:
                    break
                conn.send(msg[::-1])
    """
)
_NETNS_CLIENT = textwrap.dedent(
    """
    import sys, ipckit
    with ipckit.Socket.connect(sys.argv[1], timeout=10) as c:
        c.send(b"across namespaces")
        assert c.recv(timeout=30) == b"across namespaces"[::-1]
        big = bytes(range(256)) * 32768
        c.send(big)
        assert c.recv(timeout=60) == big[::-1]
    print("client ok")
    """
)


def _ip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)


@pytest.fixture
def two_namespaces():  # type: ignore[no-untyped-def]
    if shutil.which("ip") is None:
        pytest.skip("the `ip` command (iproute2) is not installed")
    tag = f"{os.getpid() % 100000}{secrets.token_hex(1)}"
    ns_a, ns_b = f"ipckit-{tag}-a", f"ipckit-{tag}-b"
    subnet = f"10.231.{secrets.randbelow(250) + 1}"
    made = []
    try:
        for ns in (ns_a, ns_b):
            result = _ip("netns", "add", ns)
            if result.returncode != 0:
                pytest.skip(f"cannot create network namespaces here (`ip netns add` said: {result.stderr.strip()})")
            made.append(ns)
        steps = [
            ("link", "add", f"ipk{tag}a", "netns", ns_a, "type", "veth", "peer", "name", f"ipk{tag}b", "netns", ns_b),
            ("-n", ns_a, "addr", "add", f"{subnet}.1/24", "dev", f"ipk{tag}a"),
            ("-n", ns_b, "addr", "add", f"{subnet}.2/24", "dev", f"ipk{tag}b"),
            ("-n", ns_a, "link", "set", f"ipk{tag}a", "up"),
            ("-n", ns_b, "link", "set", f"ipk{tag}b", "up"),
            ("-n", ns_a, "link", "set", "lo", "up"),
            ("-n", ns_b, "link", "set", "lo", "up"),
        ]
        for step in steps:
            result = _ip(*step)
            if result.returncode != 0:
                pytest.skip(f"cannot set up a veth pair between namespaces (`ip {' '.join(step)}`: {result.stderr.strip()})")
        yield ns_a, ns_b, f"{subnet}.1"
    finally:
        for ns in made:
            _ip("netns", "delete", ns)  # deletes the veth pair with it


def test_tcp_between_network_namespaces(two_namespaces) -> None:  # type: ignore[no-untyped-def]
    ns_a, ns_b, server_ip = two_namespaces
    server = subprocess.Popen(
        ["ip", "netns", "exec", ns_a, sys.executable, "-c", _NETNS_SERVER, f"tcp://{server_ip}:0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        address = server.stdout.readline().strip()  # type: ignore[union-attr]
        assert address.startswith(f"tcp://{server_ip}:"), server.stderr.read()  # type: ignore[union-attr]
        # The server's address is not reachable from this (the root) namespace...
        with pytest.raises((ipckit.Timeout, ipckit.IPCError)):
            ipckit.Socket.connect(address, timeout=0.3)
        # ...but it is from the other namespace, over the veth pair.
        client = subprocess.run(
            ["ip", "netns", "exec", ns_b, sys.executable, "-c", _NETNS_CLIENT, address],
            capture_output=True, text=True, timeout=90,
        )
        assert client.returncode == 0, client.stderr
        assert client.stdout.strip() == "client ok"
        assert server.wait(30) == 0, server.stderr.read()  # type: ignore[union-attr]
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(10)


# ------------------------------------------------------------ datagram replies


def _datagram_client(address: str, count: int) -> None:
    with ipckit.Socket.connect(address) as c:
        for i in range(count):
            c.send(b"question %d" % i, timeout=10)
            assert c.recv(timeout=10) == b"QUESTION %d" % i


@pytest.mark.parametrize("context", ["fork", "spawn"])
@pytest.mark.parametrize("kind", ["udp", "unix+dgram-path", "unix+dgram-abstract"])
def test_datagram_server_replies_with_send_to(tmp_path, context, kind):
    url = {
        "udp": "udp://127.0.0.1:0",
        "unix+dgram-path": f"unix+dgram://{tmp_path}/dgram.sock",
        "unix+dgram-abstract": f"unix+dgram://@ipckit-test-{os.getpid()}-{context}",
    }[kind]
    with ipckit.Socket.listen(url) as srv:
        clients = [multiprocessing.get_context(context).Process(target=_datagram_client, args=(srv.address, 5)) for _ in range(2)]
        for p in clients:
            p.start()
        senders = set()
        for _ in range(10):
            data, sender = srv.recv_from(timeout=30)
            assert sender is not None and sender.startswith(url.split("://")[0] + "://")
            senders.add(sender)
            srv.send_to(data.upper(), sender, timeout=10)
        for p in clients:
            p.join(30)
            assert p.exitcode == 0
        assert len(senders) == 2, "each client has its own reply address"


def test_recv_from_times_out_and_send_to_checks_its_address(tmp_path):
    with ipckit.Socket.listen("udp://127.0.0.1:0") as srv:
        start = time.monotonic()
        with pytest.raises(ipckit.Timeout):
            srv.recv_from(timeout=0.2)
        assert time.monotonic() - start >= 0.2
        with pytest.raises(ipckit.Timeout):
            srv.recv_from(timeout=0)
        with pytest.raises(TypeError, match="address"):
            srv.send_to(b"x", 1234)
        with pytest.raises(ValueError, match="udp://"):
            srv.send_to(b"x", f"unix+dgram://{tmp_path}/x.sock")
        with pytest.raises(ValueError, match="address"):
            srv.send_to(b"x", "udp://nowhere")
        with pytest.raises(TypeError):
            srv.send_to("text", srv.address)
        with pytest.raises(ipckit.MessageTooLarge):
            srv.send_to(b"x" * 70000, srv.address)
        srv.close()
        with pytest.raises(ipckit.ClosedError):
            srv.recv_from(timeout=0)
        with pytest.raises(ipckit.ClosedError):
            srv.send_to(b"x", "udp://127.0.0.1:9")
