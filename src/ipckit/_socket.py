"""Socket: stream and datagram sockets addressed by URL, with descriptor passing.

Addresses (parsed once, here, by ``parse_address``)::

    tcp://HOST:PORT         TCP;  HOST an IPv4 address, [IPv6] in brackets, or a name
    udp://HOST:PORT         UDP datagrams
    unix:///abs/path        Unix stream socket at a filesystem path (at most 107 bytes)
    unix://@name            Unix stream socket in the abstract namespace (no file)
    unix+dgram:///abs/path  Unix datagram socket (also unix+dgram://@name)

Stream sockets carry framed messages through the shared ``_stream`` layer (the same
code as pipes); datagram sockets carry one message per datagram. A connected stream
socket stays a *blocking* descriptor; timed calls use ``MSG_DONTWAIT`` and ``poll()``.

Unix socket files. ``listen("unix:///path")`` replaces a *stale* socket file left by
a server that died (the path is a socket and a connection attempt is refused), never a
live one (``ExistsError``) and never a file that is not a socket (``ExistsError``). Two
servers starting at the same instant on one stale path can still race; give servers
their own paths. Closing the listener removes its socket file, but only in the process
that created it and only if the path still holds that same socket (so a child that
inherited the listener, or a server that took over the path, is left alone).
"""

from __future__ import annotations

import array
import errno
import ipaddress
import os
import re
import socket
import stat
import struct
import time
from typing import Any, NamedTuple, Optional, Tuple

from ._data import byte_view
from ._errors import ClosedError, ExistsError, IPCError, MessageTooLarge, error_from_errno
from ._naming import check_positive_int
from ._stream import StreamEnd
from ._timeouts import Deadline
from ._wait import wait_fd

UNIX_PATH_MAX = 107  # sun_path is 108 bytes, one of them the terminating NUL
# Plain ints, not the socket module's IntFlag/IntEnum members: enum arithmetic and
# sock.family (which builds an IntEnum on each access) cost microseconds per message.
_DONTWAIT = int(socket.MSG_DONTWAIT)
_NOSIGNAL = int(socket.MSG_NOSIGNAL)
_TRUNC = int(socket.MSG_TRUNC)
_AF_UNIX = int(socket.AF_UNIX)
_POLLIN = 1 | 2  # POLLIN | POLLPRI
_POLLOUT = 4
_SCHEMES = {
    "tcp": socket.SOCK_STREAM,
    "udp": socket.SOCK_DGRAM,
    "unix": socket.SOCK_STREAM,
    "unix+dgram": socket.SOCK_DGRAM,
}
_HOSTNAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*\.?$")
_UCRED = struct.Struct("3i")


class Address(NamedTuple):
    """A parsed socket URL."""

    scheme: str  # "tcp", "udp", "unix" or "unix+dgram"
    type: int  # socket.SOCK_STREAM or SOCK_DGRAM
    family: int  # AF_UNIX, AF_INET, AF_INET6, or AF_UNSPEC for a host name
    host: Optional[str]
    port: Optional[int]
    path: Any  # str (filesystem) or bytes starting with NUL (abstract), for Unix
    url: str


class Credentials(NamedTuple):
    """The peer process of a Unix socket, as the kernel saw it (``SO_PEERCRED``)."""

    pid: int
    uid: int
    gid: int


def parse_address(address: object, argument: str = "address") -> Address:
    """Check and split a socket URL; ``TypeError``/``ValueError`` naming *argument*."""
    if not isinstance(address, str):
        raise TypeError(f"{argument} must be a str URL such as 'tcp://127.0.0.1:5000', not {type(address).__name__}")
    scheme, sep, rest = address.partition("://")
    if not sep:
        raise ValueError(
            f"{argument} must be a URL like 'tcp://HOST:PORT', 'udp://HOST:PORT', 'unix:///path', "
            f"'unix://@name' or 'unix+dgram:///path', got {address!r}"
        )
    if scheme not in _SCHEMES:
        raise ValueError(f"{argument} has unknown scheme {scheme!r}: use one of {', '.join(_SCHEMES)}")
    if "\0" in rest:
        raise ValueError(f"{argument} may not contain a NUL character, got {address!r}")
    kind = _SCHEMES[scheme]
    if scheme.startswith("unix"):
        return _parse_unix(scheme, kind, rest, address, argument)
    return _parse_inet(scheme, kind, rest, address, argument)


def _parse_unix(scheme: str, kind: int, rest: str, url: str, argument: str) -> Address:
    if rest.startswith("@"):
        name = rest[1:]
        if not name:
            raise ValueError(f"{argument}: an abstract Unix address needs a name after '@', got {url!r}")
        raw = b"\0" + name.encode("utf-8", "surrogateescape")
        if len(raw) - 1 > UNIX_PATH_MAX:
            raise ValueError(f"{argument}: abstract name is {len(raw) - 1} bytes, the kernel's limit is {UNIX_PATH_MAX}")
        return Address(scheme, kind, socket.AF_UNIX, None, None, raw, url)
    if not rest.startswith("/"):
        raise ValueError(f"{argument}: a Unix socket URL is {scheme}:///absolute/path or {scheme}://@name, got {url!r}")
    size = len(os.fsencode(rest))
    if size > UNIX_PATH_MAX:
        raise ValueError(f"{argument}: socket path is {size} bytes, the kernel's limit is {UNIX_PATH_MAX} ({rest!r})")
    return Address(scheme, kind, socket.AF_UNIX, None, None, rest, url)


def _parse_inet(scheme: str, kind: int, rest: str, url: str, argument: str) -> Address:
    if rest.startswith("["):
        host, bracket, after = rest[1:].partition("]")
        if not bracket or not after.startswith(":"):
            raise ValueError(f"{argument}: expected {scheme}://[IPv6]:PORT, got {url!r}")
        port_text = after[1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{argument}: {host!r} is not an IPv6 address in {url!r}") from None
        family = socket.AF_INET6
    else:
        host, colon, port_text = rest.rpartition(":")
        if not colon or not host:
            raise ValueError(f"{argument}: expected {scheme}://HOST:PORT, got {url!r}")
        if ":" in host:
            raise ValueError(f"{argument}: put an IPv6 address in brackets, {scheme}://[{host}]:PORT, got {url!r}")
        try:
            ipaddress.IPv4Address(host)
            family = socket.AF_INET
        except ValueError:
            if not _HOSTNAME.match(host) or host.replace(".", "").isdigit():
                raise ValueError(f"{argument}: {host!r} is not an IPv4 address or host name in {url!r}") from None
            family = socket.AF_UNSPEC
    if not port_text.isdigit() or not port_text.isascii():
        raise ValueError(f"{argument}: port must be a number 0..65535, got {port_text!r} in {url!r}")
    port = int(port_text)
    if port > 65535:
        raise ValueError(f"{argument}: port must be 0..65535, got {port}")
    return Address(scheme, kind, family, host, port, None, url)


def _format_inet(scheme: str, sockname: Any) -> str:
    host, port = sockname[0], sockname[1]
    if ":" in host:
        return f"{scheme}://[{host}]:{port}"
    return f"{scheme}://{host}:{port}"


def _format_unix(scheme: str, sockname: Any) -> Optional[str]:
    """The URL of a Unix socket address as the kernel reports it (None if unbound)."""
    if not sockname:
        return None
    if isinstance(sockname, bytes):  # abstract: a leading NUL
        return f"{scheme}://@" + sockname[1:].decode("utf-8", "surrogateescape")
    return f"{scheme}://{sockname}"


def _resolve(addr: Address, passive: bool) -> Tuple[int, Any]:
    """(family, sockaddr) for *addr*; host names go through getaddrinfo."""
    if addr.family == socket.AF_UNIX:
        return socket.AF_UNIX, addr.path
    try:
        infos = socket.getaddrinfo(addr.host, addr.port, addr.family, addr.type, 0, socket.AI_PASSIVE if passive else 0)
    except socket.gaierror as exc:
        raise IPCError(errno.EHOSTUNREACH, f"cannot resolve {addr.host!r} in {addr.url!r}: {exc.strerror}") from exc
    family, _, _, _, sockaddr = infos[0]
    return family, sockaddr


def _new_socket(family: int, kind: int) -> socket.socket:
    try:
        return socket.socket(family, kind | socket.SOCK_CLOEXEC)
    except OSError as exc:
        raise error_from_errno(exc.errno, "socket") from exc


def _someone_listens(path: str, kind: int) -> bool:
    """Is a live socket bound at *path*? (A refused connection means a stale file.)"""
    probe = socket.socket(socket.AF_UNIX, kind | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
    try:
        err = probe.connect_ex(path)
    finally:
        probe.close()
    if err == errno.ECONNREFUSED:
        return False
    if err == errno.ENOENT:
        return False
    return True  # connected, EAGAIN (backlog full), EPROTOTYPE (live socket of another type) ...


class Socket(StreamEnd):
    """A socket addressed by URL. Make one with ``Socket.listen()`` or ``Socket.connect()``.

    A connected stream socket (from ``connect`` or ``accept``) has framed
    ``send``/``recv`` and raw ``write``/``read`` (see ``_stream``); Unix ones also
    ``send_fds``/``recv_fds`` and ``peer_credentials()``. ``address`` is the URL:
    the bound address of a listener (port 0 resolved), the server's address for a
    connecting or accepted socket.
    """

    _what = "Socket"
    _address = ""
    _kind = socket.SOCK_STREAM
    _unix = False

    def __init__(self, sock: socket.socket, address: str) -> None:
        super().__init__(sock.fileno(), sock)
        self._address = address
        self._unix = int(sock.family) == _AF_UNIX

    @classmethod
    def _from_fd(cls, fd: int, state: dict) -> "Socket":
        return cls(socket.socket(fileno=fd), state["address"])

    def _pickle_state(self) -> dict:
        return {"address": self._address}

    @property
    def address(self) -> str:
        return self._address

    @property
    def family(self) -> int:
        """``socket.AF_UNIX``, ``AF_INET`` or ``AF_INET6``."""
        self._check_open()
        assert self._sock is not None
        return int(self._sock.family)

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"fd={self._fd}"
        return f"<ipckit.Socket {self._address} {self._role} {state}>"

    _role = "connected"

    # ------------------------------------------------------------------ constructors

    @classmethod
    def listen(cls, address: str, *, backlog: int = 128) -> "Socket":
        """Bind to *address* and, for stream addresses, listen with *backlog*.

        Returns a listening socket (``accept()``) for ``tcp://``/``unix://``, a bound
        datagram socket (``recv()``) for ``udp://``/``unix+dgram://``. ``ExistsError``
        if the address is in use by a live socket (or a Unix path holds a file that
        is not a socket); a stale socket file is replaced.
        """
        addr = parse_address(address)
        check_positive_int(backlog, "backlog", minimum=0)
        family, sockaddr = _resolve(addr, passive=True)
        sock = _new_socket(family, addr.type)
        bound = False
        try:
            if family != socket.AF_UNIX:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            _bind(sock, addr, sockaddr)
            bound = True
            if family == socket.AF_UNIX:
                url = addr.url
            else:
                url = _format_inet(addr.scheme, sock.getsockname())
            if addr.type == socket.SOCK_STREAM:
                sock.listen(backlog)
                obj: Socket = _ListeningSocket(sock, url)
            else:
                obj = _DatagramSocket(sock, url)
        except OSError as exc:
            sock.close()
            if bound and isinstance(addr.path, str):
                os.unlink(addr.path)  # listen() failed after our bind() made the file
            if isinstance(exc, IPCError):
                raise
            raise error_from_errno(exc.errno, f"listen {addr.url}") from exc
        if isinstance(addr.path, str):
            st = os.lstat(addr.path)
            obj._owned_path = (addr.path, st.st_dev, st.st_ino, os.getpid())
        return obj

    @classmethod
    def connect(cls, address: str, *, timeout: Optional[float] = None) -> "Socket":
        """Connect to *address*; returns a connected socket.

        For stream addresses waits for the connection up to *timeout*
        (``ipckit.Timeout``). ``NotFoundError`` for a Unix path where nothing exists,
        an ``IPCError`` with ``errno.ECONNREFUSED`` when nobody listens. For datagram
        addresses it sets the peer that ``send()`` goes to (nothing is sent).
        """
        addr = parse_address(address)
        deadline = Deadline.from_user(timeout)
        family, sockaddr = _resolve(addr, passive=False)
        sock = _new_socket(family, addr.type)
        try:
            if addr.type == socket.SOCK_DGRAM:
                if family == socket.AF_UNIX:
                    sock.bind(b"")  # autobind an abstract name, so the server can reply
                sock.connect(sockaddr)
                return _DatagramSocket(sock, addr.url)
            _connect_stream(sock, sockaddr, deadline, addr)
            return Socket(sock, addr.url)
        except OSError as exc:
            sock.close()
            if isinstance(exc, IPCError):
                raise
            raise error_from_errno(exc.errno, f"connect to {addr.url}") from exc

    def accept(self, *, timeout: Optional[float] = None) -> "Socket":
        """Only listening sockets accept."""
        self._check_open()
        raise IPCError(errno.EINVAL, "accept() on a socket that is not listening (use Socket.listen())")

    # ------------------------------------------------------------------ Unix extras

    def peer_credentials(self) -> Credentials:
        """``(pid, uid, gid)`` of the peer process of a connected Unix socket, as the
        kernel recorded them when the connection was made (``SO_PEERCRED``)."""
        self._check_open()
        return _peer_credentials(self)

    def send_fds(self, data: Any, fds: Any, *, timeout: Optional[float] = None) -> int:
        """Send *data* (raw bytes, not framed; at least one byte) with the descriptors
        *fds* attached (``SCM_RIGHTS``). The receiver gets its own duplicates; yours
        stay open. Returns ``len(data)``. Unix sockets only."""
        return _send_fds(self, data, fds, timeout)

    def recv_fds(self, maxfds: int, *, bufsize: int = 65536, timeout: Optional[float] = None) -> Tuple[bytes, list]:
        """Receive up to *bufsize* raw bytes and up to *maxfds* descriptors (new,
        close-on-exec; closing them is yours). ``(b"", [])`` at end of stream.
        More than *maxfds* descriptors arriving is an ``IPCError`` (``EMSGSIZE``);
        they are all closed, and the bytes that came with them are lost."""
        return _recv_fds(self, maxfds, bufsize, timeout)

    # ------------------------------------------------------------------ closing

    _owned_path: Optional[tuple] = None

    def _close(self) -> None:
        owned, self._owned_path = self._owned_path, None
        if owned is not None:
            path, dev, ino, pid = owned
            if pid == os.getpid():
                try:
                    st = os.lstat(path)
                    if (st.st_dev, st.st_ino) == (dev, ino):
                        os.unlink(path)
                except OSError:
                    pass
        super()._close()


def _bind(sock: socket.socket, addr: Address, sockaddr: Any) -> None:
    try:
        sock.bind(sockaddr)
        return
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise error_from_errno(exc.errno, f"bind {addr.url}") from exc
        if not isinstance(addr.path, str):
            raise ExistsError(errno.EADDRINUSE, f"address in use: {addr.url}") from exc
    path = addr.path
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is not None:
        if not stat.S_ISSOCK(st.st_mode):
            raise ExistsError(errno.EEXIST, f"{path!r} exists and is not a socket: not replacing it", path)
        if _someone_listens(path, addr.type):
            raise ExistsError(errno.EADDRINUSE, f"address in use: a live socket is bound at {addr.url}", path)
        try:
            os.unlink(path)  # a stale file from a server that died
        except FileNotFoundError:
            pass
    try:
        sock.bind(sockaddr)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise ExistsError(errno.EADDRINUSE, f"address in use: {addr.url}", path) from exc
        raise error_from_errno(exc.errno, f"bind {addr.url}") from exc


def _connect_stream(sock: socket.socket, sockaddr: Any, deadline: Deadline, addr: Address) -> None:
    if deadline.blocking:
        sock.connect(sockaddr)
        return
    sock.setblocking(False)
    pause = 0.001
    while True:
        err = sock.connect_ex(sockaddr)
        if err in (0, errno.EISCONN):
            break
        if err == errno.EINPROGRESS:
            if not wait_fd(sock.fileno(), _POLLOUT, deadline):
                raise deadline.timeout_error(f"connect to {addr.url}")
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                raise error_from_errno(err, f"connect to {addr.url}")
            break
        if err != errno.EAGAIN:  # EAGAIN: a Unix listener's backlog is full; retry
            raise error_from_errno(err, f"connect to {addr.url}")
        if deadline.expired():
            raise deadline.timeout_error(f"connect to {addr.url} (backlog full)")
        left = deadline.remaining() or 0.0
        time.sleep(min(pause, left))
        pause = min(pause * 2, 0.05)
    sock.setblocking(True)


class _ListeningSocket(Socket):
    _role = "listening"

    def accept(self, *, timeout: Optional[float] = None) -> Socket:
        """The next connection, as a connected ``Socket``.

        ``timeout=None`` waits for one; otherwise ``ipckit.Timeout`` if none comes in
        time. (A timed accept makes the listening descriptor non-blocking for the
        instant of its attempt; a blocking accept copes with another process doing so.)
        """
        deadline = Deadline.from_user(timeout)
        self._check_open()
        sock = self._sock
        assert sock is not None
        while True:
            if deadline.blocking:
                try:
                    conn, _ = sock.accept()
                    break
                except BlockingIOError:
                    wait_fd(self._fd, _POLLIN, deadline)
                    continue
                except OSError as exc:
                    raise self._error(exc, "accept") from exc
            if not wait_fd(self._fd, _POLLIN, deadline):
                raise deadline.timeout_error("accept")
            sock.setblocking(False)
            try:
                conn, _ = sock.accept()
                break
            except BlockingIOError:
                if deadline.expired():
                    raise deadline.timeout_error("accept") from None
            except OSError as exc:
                raise self._error(exc, "accept") from exc
            finally:
                sock.setblocking(True)
        conn.setblocking(True)
        return Socket(conn, self._address)

    def _not_connected(self, what: str) -> IPCError:
        self._check_open()
        return IPCError(errno.ENOTCONN, f"{what}() on a listening socket: accept() a connection first")

    def send(self, data: Any, *, timeout: Optional[float] = None) -> None:
        raise self._not_connected("send")

    def recv(self, *, timeout: Optional[float] = None) -> bytes:
        raise self._not_connected("recv")

    def write(self, data: Any, *, timeout: Optional[float] = None) -> int:
        raise self._not_connected("write")

    def read(self, n: int = 65536, *, timeout: Optional[float] = None) -> bytes:
        raise self._not_connected("read")


class _DatagramSocket(Socket):
    """``udp://`` and ``unix+dgram://``: one message per datagram, no framing."""

    _kind = socket.SOCK_DGRAM

    @property
    def _role(self) -> str:  # type: ignore[override]
        return "datagram"

    @property
    def max_message_size(self) -> int:
        """The largest datagram this socket can send: 65507 bytes over IPv4 UDP,
        65527 over IPv6, ``SO_SNDBUF - 32`` for Unix datagrams."""
        self._check_open()
        sock = self._sock
        assert sock is not None
        if sock.family == socket.AF_UNIX:
            return int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)) - 32
        return 65507 if sock.family == socket.AF_INET else 65527

    def send(self, data: Any, *, timeout: Optional[float] = None) -> None:
        """Send *data* as one datagram to the connected peer. ``MessageTooLarge``
        (nothing sent) over ``max_message_size``; with a timeout, ``ipckit.Timeout``
        while the peer's queue stays full (Unix) ."""
        view = byte_view(data) if type(data) is not bytes else data
        deadline = Deadline.from_user(timeout)
        self._sendto(view, deadline, "send")

    def send_to(self, data: Any, address: str, *, timeout: Optional[float] = None) -> None:
        """Send *data* as one datagram to *address* (a URL of this socket's scheme,
        e.g. the sender that ``recv_from()`` returned): how a server replies."""
        view = byte_view(data) if type(data) is not bytes else data
        addr = parse_address(address)
        deadline = Deadline.from_user(timeout)
        self._check_open()
        scheme = "unix+dgram" if self.family == socket.AF_UNIX else "udp"
        if addr.scheme != scheme:
            raise ValueError(f"address must be a {scheme}:// URL for this socket, got {address!r}")
        family, sockaddr = _resolve(addr, passive=False)
        if family != self.family:
            raise ValueError(f"address {address!r} is not of this socket's address family")
        self._sendto(view, deadline, "send_to", sockaddr)

    def recv_from(self, *, timeout: Optional[float] = None) -> Tuple[bytes, Optional[str]]:
        """One whole datagram and the URL of its sender, for ``send_to()`` replies
        (None when the sender has no address: an unbound Unix socket).
        ``ipckit.Timeout`` if none arrives in time."""
        deadline = Deadline.from_user(timeout)
        self._check_open()
        sock = self._sock
        assert sock is not None
        flags = 0 if deadline.blocking else _DONTWAIT
        while True:
            try:
                if not self._unix:
                    data, sender = sock.recvfrom(65536, flags)
                    return data, _format_inet("udp", sender)
                return self._recv_unix_datagram(sock, flags, with_sender=True)  # type: ignore[return-value]
            except BlockingIOError:
                if deadline.expired() or not wait_fd(self._fd, _POLLIN, deadline):
                    raise deadline.timeout_error("recv_from") from None
            except OSError as exc:
                raise self._error(exc, "recv_from") from exc

    def write(self, data: Any, *, timeout: Optional[float] = None) -> int:
        """One datagram, as ``send``; returns ``len(data)``."""
        view = byte_view(data)
        deadline = Deadline.from_user(timeout)
        self._sendto(view, deadline, "write")
        return len(view)

    def _sendto(self, view: Any, deadline: Deadline, what: str, sockaddr: Any = None) -> None:
        sock = self._sock
        if sock is None or self._closed:
            self._check_open()
        assert sock is not None
        flags = _NOSIGNAL if deadline.blocking else _NOSIGNAL | _DONTWAIT
        while True:
            try:
                if sockaddr is None:
                    sock.send(view, flags)
                else:
                    sock.sendto(view, flags, sockaddr)
                return
            except BlockingIOError:
                if deadline.expired() or not wait_fd(self._fd, _POLLOUT, deadline):
                    raise deadline.timeout_error(what) from None
            except OSError as exc:
                if exc.errno == errno.EMSGSIZE:
                    raise MessageTooLarge(
                        errno.EMSGSIZE, f"{what}: a {len(view)}-byte datagram is over this socket's limit; nothing was sent"
                    ) from exc
                if exc.errno == errno.ECONNREFUSED:
                    raise ClosedError(errno.ECONNREFUSED, f"{what}: nobody is bound at {self._address} any more") from exc
                raise self._error(exc, what) from exc

    def recv(self, *, timeout: Optional[float] = None) -> bytes:
        """One whole datagram. ``ipckit.Timeout`` if none arrives in time."""
        deadline = Deadline.from_user(timeout)
        return self._recv_one(None, deadline, "recv")

    def read(self, n: int = 65536, *, timeout: Optional[float] = None) -> bytes:
        """One datagram, cut to *n* bytes (the rest of it is discarded)."""
        check_positive_int(n, "n")
        deadline = Deadline.from_user(timeout)
        return self._recv_one(n, deadline, "read")

    def _recv_one(self, n: Optional[int], deadline: Deadline, what: str) -> bytes:
        self._check_open()
        sock = self._sock
        assert sock is not None
        flags = 0 if deadline.blocking else _DONTWAIT
        unix = self._unix
        while True:
            try:
                if n is not None:
                    return sock.recv(n, flags)
                if not unix:
                    return sock.recv(65536, flags)
                return self._recv_unix_datagram(sock, flags)
            except BlockingIOError:
                if deadline.expired() or not wait_fd(self._fd, _POLLIN, deadline):
                    raise deadline.timeout_error(what) from None
            except OSError as exc:
                raise self._error(exc, what) from exc

    _rbuf: Optional[bytearray] = None

    def _recv_unix_datagram(self, sock: socket.socket, flags: int, with_sender: bool = False) -> Any:
        # A Unix datagram is at most the sender's SO_SNDBUF - 32 bytes, and SO_SNDBUF is
        # at most 2 * net.core.wmem_max: one reusable buffer that large takes any
        # datagram in a single recv. MSG_TRUNC makes the kernel report the real
        # length, so the only datagram that could still not fit (from a peer that
        # forced a larger buffer with CAP_NET_ADMIN) is reported, not silently cut.
        buf = self._rbuf
        if buf is None:
            buf = self._rbuf = bytearray(_unix_datagram_limit())
        if with_sender:
            size, _, _, sender = sock.recvmsg_into([buf], 0, flags | _TRUNC)
        else:
            size = sock.recv_into(buf, len(buf), flags | _TRUNC)
        if size > len(buf):
            raise IPCError(errno.EMSGSIZE, f"recv: a {size}-byte datagram was larger than the {len(buf)}-byte receive buffer and was truncated")
        with memoryview(buf) as view:
            data = bytes(view[:size])
        return (data, _format_unix("unix+dgram", sender)) if with_sender else data

    def flush(self, *, timeout: Optional[float] = None) -> None:
        Deadline.from_user(timeout)
        self._check_open()


def _unix_datagram_limit() -> int:
    try:
        with open("/proc/sys/net/core/wmem_max") as f:
            wmem_max = int(f.read())
    except (OSError, ValueError):
        wmem_max = 212992
    return max(65536, 2 * wmem_max)


# ---------------------------------------------------------------------- Unix helpers


def _unix_sock(end: StreamEnd, what: str) -> socket.socket:
    end._check_open()
    sock = end._sock
    if sock is None or sock.family != socket.AF_UNIX:
        raise IPCError(errno.EOPNOTSUPP, f"{what}() works on Unix sockets only")
    return sock


def _peer_credentials(end: StreamEnd) -> Credentials:
    sock = _unix_sock(end, "peer_credentials")
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    except OSError as exc:
        raise end._error(exc, "peer_credentials") from exc
    return Credentials(*_UCRED.unpack(raw))


def _check_fds(fds: Any) -> list:
    if isinstance(fds, (str, bytes)) or not hasattr(fds, "__iter__"):
        raise TypeError(f"fds must be a list of file descriptors, not {type(fds).__name__}")
    out = []
    for fd in fds:
        if not isinstance(fd, int) and hasattr(fd, "fileno"):
            fd = fd.fileno()
        if isinstance(fd, bool) or not isinstance(fd, int):
            raise TypeError(f"fds must hold ints (or objects with fileno()), not {type(fd).__name__}")
        if fd < 0:
            raise ValueError(f"fds must hold descriptors >= 0, got {fd}")
        out.append(fd)
    if not out:
        raise ValueError("fds must hold at least one descriptor (use write() for plain bytes)")
    if len(out) > 253:  # SCM_MAX_FD
        raise ValueError(f"at most 253 descriptors per message, got {len(out)}")
    return out


def _send_fds(end: StreamEnd, data: Any, fds: Any, timeout: Optional[float]) -> int:
    view = byte_view(data)
    if not len(view):
        raise ValueError("data must hold at least one byte: the descriptors travel with it")
    fd_list = _check_fds(fds)
    deadline = Deadline.from_user(timeout)
    sock = _unix_sock(end, "send_fds")
    ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fd_list))]
    flags = _NOSIGNAL if deadline.blocking else _NOSIGNAL | _DONTWAIT
    while True:
        try:
            sent = sock.sendmsg([view], ancillary, flags)
            break
        except BlockingIOError:
            if deadline.expired() or not wait_fd(end._fd, _POLLOUT, deadline):
                raise deadline.timeout_error("send_fds") from None
        except OSError as exc:
            raise end._error(exc, "send_fds") from exc
    if sent < len(view):  # the descriptors went with the first part; the rest is plain
        end._write_all_blocking([view[sent:]], "send_fds")
    return len(view)


def _recv_fds(end: StreamEnd, maxfds: int, bufsize: int, timeout: Optional[float]) -> Tuple[bytes, list]:
    check_positive_int(maxfds, "maxfds")
    check_positive_int(bufsize, "bufsize")
    deadline = Deadline.from_user(timeout)
    sock = _unix_sock(end, "recv_fds")
    cmsg_size = socket.CMSG_SPACE(maxfds * 4)
    flags = socket.MSG_CMSG_CLOEXEC | (0 if deadline.blocking else _DONTWAIT)
    while True:
        try:
            data, ancillary, msg_flags, _ = sock.recvmsg(bufsize, cmsg_size, flags)
            break
        except BlockingIOError:
            if deadline.expired() or not wait_fd(end._fd, _POLLIN, deadline):
                raise deadline.timeout_error("recv_fds") from None
        except OSError as exc:
            raise end._error(exc, "recv_fds") from exc
    fds: list = []
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            usable = len(payload) - len(payload) % 4
            fds.extend(array.array("i", payload[:usable]))
    if msg_flags & socket.MSG_CTRUNC or len(fds) > maxfds:  # (CMSG_SPACE padding may fit one more)
        for fd in fds:
            os.close(fd)
        raise IPCError(errno.EMSGSIZE, f"recv_fds: more than maxfds={maxfds} descriptors arrived; the extra ones were lost (all closed)")
    return data, fds


__all__ = ["Address", "Credentials", "Socket", "UNIX_PATH_MAX", "parse_address"]
