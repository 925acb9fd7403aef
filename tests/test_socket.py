"""Socket: URLs, listen/connect/accept, datagrams, fd passing, credentials, across processes
and across two network namespaces."""

from __future__ import annotations

import errno
import multiprocessing
import os
import secrets
import shutil
import socket
import stat
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


# ---------------------------------------------------------------- socket file permissions


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o277])
@pytest.mark.parametrize("mode", [0o600, 0o660, 0o666, 0o700, 0o000])
@pytest.mark.parametrize("scheme", ["unix", "unix+dgram"])
def test_unix_socket_file_gets_mode_exactly(tmp_path, umask: int, mode: int, scheme: str) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "m.sock"
    old = os.umask(umask)
    try:
        with ipckit.Socket.listen(f"{scheme}://{path}", mode=mode):
            st = os.lstat(path)
            assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == mode, oct(st.st_mode)
            assert os.umask(umask) == umask  # the process's umask is untouched
    finally:
        os.umask(old)
    assert not path.exists()


def test_default_mode_is_0600_and_connecting_still_works(tmp_path) -> None:  # type: ignore[no-untyped-def]
    old = os.umask(0)
    try:
        with ipckit.Socket.listen(f"unix://{tmp_path}/d.sock") as srv:
            assert stat.S_IMODE(os.lstat(f"{tmp_path}/d.sock").st_mode) == 0o600
            with ipckit.Socket.connect(srv.address, timeout=5) as c, srv.accept(timeout=5) as s:
                c.send(b"through a 0600 socket")
                assert s.recv(timeout=5) == b"through a 0600 socket"
    finally:
        os.umask(old)


C_MODE_WATCHER = r"""
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>
#include <time.h>
/* Watch a path for argv[2] seconds, as fast as it can: print every distinct
   permission mode it had while it existed. */
int main(int argc, char **argv) {
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    int seen[01000] = {0};
    double limit = atof(argv[2]);
    printf("ready\n"); fflush(stdout);
    for (;;) {
        struct stat st;
        if (lstat(argv[1], &st) == 0) seen[st.st_mode & 0777] = 1;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if ((now.tv_sec - start.tv_sec) + (now.tv_nsec - start.tv_nsec) / 1e9 > limit) break;
    }
    for (int m = 0; m < 01000; m++) if (seen[m]) printf("%o\n", m);
    return 0;
}
"""


@pytest.mark.parametrize("fallback", [False, True], ids=["private-umask", "private-dir"])
def test_socket_file_never_has_wider_permissions(tmp_path, cc, monkeypatch, fallback: bool) -> None:  # type: ignore[no-untyped-def]
    # A C process watches the path while servers start and stop on it under umask 0:
    # the file must never be seen with any mode but the one asked for.
    from ipckit import _socket

    if fallback:
        monkeypatch.setattr(_socket, "_private_umask_works", False)
    exe = cc(C_MODE_WATCHER.replace("#include <time.h>", "#include <time.h>\n#include <stdlib.h>"), "mode_watcher")
    path = str(tmp_path / "watched.sock")
    watcher = subprocess.Popen([exe, path, "1.5"], stdout=subprocess.PIPE, text=True)
    assert watcher.stdout is not None and watcher.stdout.readline().strip() == "ready"
    old = os.umask(0)
    try:
        end = time.monotonic() + 1.2
        starts = 0
        while time.monotonic() < end:
            ipckit.Socket.listen(f"unix://{path}", mode=0o600).close()
            starts += 1
    finally:
        os.umask(old)
    out, _ = watcher.communicate(timeout=30)
    assert starts > 50
    seen = {int(m, 8) for m in out.split()}
    assert seen <= {0o600}, f"the socket file was seen with modes {sorted(map(oct, seen))}"
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".ipckit")], "a private bind directory was left behind"


def test_private_dir_fallback_works_end_to_end(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # Where a thread cannot have its own umask (unshare refused): bind in a private
    # directory, chmod, link into place. Stale files are still replaced, live ones kept.
    from ipckit import _socket

    monkeypatch.setattr(_socket, "_private_umask_works", False)
    path = tmp_path / "fb.sock"
    url = f"unix://{path}"
    old = os.umask(0)
    try:
        with ipckit.Socket.listen(url, mode=0o640) as srv:
            assert stat.S_IMODE(os.lstat(path).st_mode) == 0o640 and os.lstat(path).st_nlink == 1
            with ipckit.Socket.connect(url, timeout=5) as c, srv.accept(timeout=5) as s:
                c.send(b"fallback")
                assert s.recv(timeout=5) == b"fallback"
                assert s.peer_credentials().pid == os.getpid()
            with pytest.raises(ipckit.ExistsError):
                ipckit.Socket.listen(url)
        dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        dead.bind(str(path))
        dead.close()
        with ipckit.Socket.listen(url):
            assert stat.S_IMODE(os.lstat(path).st_mode) == 0o600
        # A path too long for a private directory beside it is reached through /proc.
        deep = tmp_path / ("d" * (UNIX_PATH_MAX - len(str(tmp_path)) - 8))
        deep.mkdir()
        long_url = f"unix://{deep}/x.sock"
        with ipckit.Socket.listen(long_url) as srv3, ipckit.Socket.connect(long_url, timeout=5), srv3.accept(timeout=5):
            assert stat.S_IMODE(os.lstat(f"{deep}/x.sock").st_mode) == 0o600
    finally:
        os.umask(old)
    assert sorted(p.name for p in tmp_path.iterdir()) == [deep.name]


def test_unshare_refused_falls_back(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from ipckit import _socket

    monkeypatch.setattr(_socket, "_private_umask_works", None)
    monkeypatch.setattr(_socket, "_unshare_fs", lambda: False)
    with ipckit.Socket.listen(f"unix://{tmp_path}/u.sock", mode=0o604):
        assert stat.S_IMODE(os.lstat(f"{tmp_path}/u.sock").st_mode) == 0o604
    assert _socket._private_umask_works is False


def test_mode_on_addresses_without_a_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # Abstract names, TCP and UDP have no permissions: a mode other than the default
    # cannot be honoured, so it is refused (peer_credentials() is the check there).
    for url in (_abstract(), "tcp://127.0.0.1:0", "udp://127.0.0.1:0", "unix+dgram://@ipckit-x-" + secrets.token_hex(4)):
        with pytest.raises(ValueError, match="peer_credentials"):
            ipckit.Socket.listen(url, mode=0o666)
        ipckit.Socket.listen(url, mode=0o600).close()
    with pytest.raises(TypeError, match="mode"):
        ipckit.Socket.listen(f"unix://{tmp_path}/x.sock", mode="0600")  # type: ignore[arg-type]
    for bad in (-1, 0o1000, 0o4755):
        with pytest.raises(ValueError, match="mode"):
            ipckit.Socket.listen(f"unix://{tmp_path}/x.sock", mode=bad)
    assert not os.path.exists(f"{tmp_path}/x.sock")


def test_peer_credentials_on_an_abstract_socket() -> None:
    c, s = _connected(_abstract())
    with c, s:
        assert s.peer_credentials() == (os.getpid(), os.getuid(), os.getgid())


# ---------------------------------------------------------------- max_message_size


@pytest.mark.parametrize("url", ["tcp://127.0.0.1:0", "unix://@"])
def test_max_message_size_on_accepted_and_connecting_sockets(url: str) -> None:
    if url == "unix://@":
        url = _abstract()
    with ipckit.Socket.listen(url, max_message_size=64) as srv:
        assert srv.max_message_size == 64
        c = ipckit.Socket.connect(srv.address, timeout=5, max_message_size=16)
        s = srv.accept(timeout=5)
        with c, s:
            assert (s.max_message_size, c.max_message_size) == (64, 16)
            c.send(b"x" * 64)
            assert s.recv(timeout=5) == b"x" * 64
            s.send(b"y" * 17)  # a socket does not know its peer's limit: it sends
            with pytest.raises(ipckit.MessageTooLarge):
                c.recv(timeout=5)
            assert c.closed
            c2 = ipckit.Socket.connect(srv.address, timeout=5)
            with c2, srv.accept(timeout=5) as s2:
                c2.send(b"z" * 65)
                with pytest.raises(ipckit.MessageTooLarge, match="65-byte"):
                    s2.recv()
                assert s2.closed


def test_max_message_size_is_for_streams() -> None:
    with pytest.raises(ValueError, match="stream"):
        ipckit.Socket.listen("udp://127.0.0.1:0", max_message_size=10)
    with pytest.raises(ValueError, match="stream"):
        ipckit.Socket.connect("udp://127.0.0.1:9", max_message_size=10)
    with pytest.raises(TypeError, match="max_message_size"):
        ipckit.Socket.listen("tcp://127.0.0.1:0", max_message_size="10")  # type: ignore[arg-type]


def test_tcp_peer_announcing_a_huge_frame() -> None:
    # A 4-byte header over tcp:// once made a server allocate 256 MiB at once.
    import resource

    with ipckit.Socket.listen("tcp://127.0.0.1:0") as srv:
        raw = socket.create_connection(("127.0.0.1", int(srv.address.rsplit(":", 1)[1])), timeout=5)
        with raw, srv.accept(timeout=5) as conn:
            before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            raw.sendall(b"\x0f\xff\xff\xff" + b"q" * 1000)
            expect_timeout(lambda: conn.recv(timeout=0.2), 0.2, ipckit.Timeout)
            grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
            assert grown < 32 * 1024, f"RSS grew by {grown} KiB"
            raw.close()
            with pytest.raises(ipckit.ClosedError, match="inside a frame"):
                conn.recv(timeout=5)


# ---------------------------------------------------------------- hostile arguments

from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

HOSTILE = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12), st.binary(max_size=64), st.lists(st.integers(-5, 2**40), max_size=3),
    st.sampled_from([object(), b"\0", "\0", 2**64, -1, 0, 1, 0o600, (), bytearray(3)]),
)
SHORT_TIMEOUTS = st.one_of(st.sampled_from([0, 0.001, 0.01, -1, float("nan"), "1", [], True]), st.floats(max_value=-1e-9))
DOCUMENTED = (TypeError, ValueError, ipckit.IPCError)


def _urls(base: str):  # type: ignore[no-untyped-def]
    junk = st.text(max_size=16)
    name = st.text(st.characters(blacklist_characters="/\0", blacklist_categories=("Cs",)), min_size=1, max_size=16)
    port = st.one_of(st.integers(0, 70000).map(str), junk)
    return st.one_of(
        HOSTILE,
        st.builds(lambda s, r: f"{s}://{r}", st.sampled_from(["tcp", "udp", "unix", "unix+dgram", "http", "TCP", ""]), junk),
        st.builds(lambda s, h, p: f"{s}://{h}:{p}", st.sampled_from(["tcp", "udp"]),
                  st.sampled_from(["127.0.0.1", "[::1]", "::1", "[::1", "256.1.1.1", "localhost", "no-such-host", ""]), port),
        st.builds(lambda s, n: f"{s}://{base}/{n}", st.sampled_from(["unix", "unix+dgram"]), name),
        st.builds(lambda s, n: f"{s}://@{n}", st.sampled_from(["unix", "unix+dgram"]), st.text(max_size=120)),
    )


@pytest.fixture(scope="module")
def hostile_socket_dir(tmp_path_factory):  # type: ignore[no-untyped-def]
    return str(tmp_path_factory.mktemp("hsock"))


_real_getaddrinfo = socket.getaddrinfo


def _getaddrinfo_no_dns(host, *args, **kwargs):  # type: ignore[no-untyped-def]
    # Host names other than localhost must not reach a DNS server from a test.
    if host not in ("localhost", "127.0.0.1", "::1"):
        raise socket.gaierror(socket.EAI_NONAME, "no DNS in tests")
    return _real_getaddrinfo(host, *args, **kwargs)


@pytest.mark.timeout(1800)  # --soak runs 10,000 cases
@given(data=st.data())
def test_hostile_arguments_raise_only_documented_errors(data, hostile_socket_dir) -> None:  # type: ignore[no-untyped-def]
    # Every public call of Socket and its roles, any argument: TypeError, ValueError or
    # an ipckit error, or success; never another exception, a crash or a hang.
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket, "getaddrinfo", _getaddrinfo_no_dns)
        _hostile_socket_calls(data, hostile_socket_dir)


def _hostile_socket_calls(data, hostile_socket_dir) -> None:  # type: ignore[no-untyped-def]
    draw = data.draw
    h = lambda: draw(HOSTILE)  # noqa: E731
    t = lambda: draw(SHORT_TIMEOUTS)  # noqa: E731
    url = lambda: draw(_urls(hostile_socket_dir))  # noqa: E731
    made: list = []

    def keep(obj):  # type: ignore[no-untyped-def]
        made.append(obj)
        return obj

    srv = keep(ipckit.Socket.listen("tcp://127.0.0.1:0"))
    conn = keep(ipckit.Socket.connect(srv.address, timeout=5))
    peer = keep(srv.accept(timeout=5))
    userv = keep(ipckit.Socket.listen(f"unix://{hostile_socket_dir}/fixed.sock"))
    uconn = keep(ipckit.Socket.connect(userv.address, timeout=5))
    dgram = keep(ipckit.Socket.listen("udp://127.0.0.1:0"))
    dclient = keep(ipckit.Socket.connect(dgram.address))
    calls = {
        "listen": lambda: keep(ipckit.Socket.listen(url(), backlog=draw(st.one_of(st.just(5), HOSTILE)),
                                                    mode=draw(st.one_of(st.just(0o600), HOSTILE)),
                                                    max_message_size=draw(st.one_of(st.none(), HOSTILE)))),
        "connect": lambda: keep(ipckit.Socket.connect(url(), timeout=t(), max_message_size=draw(st.one_of(st.none(), HOSTILE)))),
        "accept": lambda: keep(srv.accept(timeout=t())),
        "send": lambda: conn.send(h(), timeout=t()),
        "write": lambda: conn.write(h(), timeout=t()),
        "flush": lambda: conn.flush(timeout=t()),
        "recv": lambda: peer.recv(timeout=t()),
        "read": lambda: peer.read(h(), timeout=t()),
        "send_fds": lambda: uconn.send_fds(h(), draw(st.one_of(HOSTILE, st.lists(st.one_of(st.just(0), HOSTILE), max_size=3))), timeout=t()),
        "recv_fds": lambda: uconn.recv_fds(h(), bufsize=draw(st.one_of(st.just(100), HOSTILE)), timeout=t()),
        "dgram send": lambda: dclient.send(h(), timeout=t()),
        "dgram write": lambda: dclient.write(h(), timeout=t()),
        "dgram recv": lambda: dgram.recv(timeout=t()),
        "dgram read": lambda: dgram.read(h(), timeout=t()),
        "send_to": lambda: dgram.send_to(h(), url(), timeout=t()),
        "recv_from": lambda: dgram.recv_from(timeout=t()),
    }
    try:
        for name in draw(st.lists(st.sampled_from(sorted(calls)), min_size=1, max_size=4)):
            try:
                calls[name]()
            except DOCUMENTED:
                pass
    finally:
        for obj in made:
            obj.close()
        for entry in os.listdir(hostile_socket_dir):
            os.unlink(os.path.join(hostile_socket_dir, entry))
