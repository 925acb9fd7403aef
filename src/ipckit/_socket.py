"""Socket: stream and datagram sockets addressed by URL, with descriptor passing.

Addresses (parsed once, here, by ``parse_address``)::

    tcp://HOST:PORT         TCP;  HOST an IPv4 address, [IPv6] in brackets, or a name
    udp://HOST:PORT         UDP datagrams
    unix:///abs/path        Unix stream socket at a filesystem path (at most 107 bytes)
    unix://@name            Unix stream socket in the abstract namespace (no file)
    unix+dgram:///abs/path  Unix datagram socket (also unix+dgram://@name)

Roles. ``Socket`` is the base every socket shares (``address``, ``family``,
``fileno``, ``close``); what one can do depends on what it is, and it has those
methods only:

    SocketListener      listen("tcp://" / "unix://")   accept()
    SocketConnection    connect(), accept() (TCP)      send/recv/write/read/flush
    UnixConnection      the same over Unix sockets     + send_fds/recv_fds, peer_credentials()
    DatagramSocket      listen/connect("udp://" / "unix+dgram://")
                                                       send/recv/write/read, send_to/recv_from

Stream sockets carry framed messages through the shared ``_stream`` layer (the same
code as pipes); datagram sockets carry one message per datagram. A connected socket
stays a *blocking* descriptor; timed calls are non-blocking attempts
(``MSG_DONTWAIT``) run by ``_wait.retry``, waiting with ``poll()``.

Unix socket files and who may connect
-------------------------------------
Connecting to a Unix socket file needs write permission on it, so the file's mode is
the access control. ``listen("unix:///path", mode=0o600)`` gives the file exactly
*mode*, and at no instant a wider one: ``bind`` creates the file with the mode
``0o777 & ~umask``, so the bind runs in a short-lived helper thread that has its own
umask (``unshare(CLONE_FS)`` detaches the thread's umask from the process's, which
other threads keep using undisturbed). Where ``unshare`` is refused (some container
sandboxes), the socket is bound inside a fresh ``0o700`` directory next to the
target, chmod'ed there, and hard-linked into place, which also never replaces an
existing file. (Then the address a peer sees with ``getpeername`` is that private
name, gone once the link is made; ipckit's own URLs are unaffected.)

Abstract names (``unix://@name``) have no file and no permissions at all: any
process in the network namespace can connect. ``peer_credentials()`` (the kernel's
``SO_PEERCRED``: pid, uid, gid of the peer at connect time) is the check there, and
``mode`` is refused for them, as for TCP and UDP.

``listen("unix:///path")`` replaces a *stale* socket file left by a server that died
(the path is a socket and a connection attempt is refused), never a live one
(``ExistsError``) and never a file that is not a socket (``ExistsError``). Two servers
starting at the same instant on one stale path can still race; give servers their
own paths. Closing the listener removes its socket file, but only in the process that
created it and only if the path still holds that same socket (so a child that
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
import tempfile
import threading
from functools import partial
from typing import Any, NamedTuple, Optional, Tuple

from ._data import byte_view
from ._errors import ClosedError, ExistsError, IPCError, MessageTooLarge, Timeout, error_from_errno
from ._naming import check_positive_int
from ._procfs import read_int
from ._stream import READ_MAX, DuplexStream, FdObject, SocketIO, ready_now
from ._timeouts import Deadline
from ._wait import POLLIN, POLLOUT, WOULD_BLOCK, Backoff, ReadyFd, retry

UNIX_PATH_MAX = 107  # sun_path is 108 bytes, one of them the terminating NUL
# Plain ints, not the socket module's IntFlag/IntEnum members: enum arithmetic and
# sock.family (which builds an IntEnum on each access) cost microseconds per message.
_DONTWAIT = int(socket.MSG_DONTWAIT)
_NOSIGNAL = int(socket.MSG_NOSIGNAL)
_TRUNC = int(socket.MSG_TRUNC)
_CMSG_CLOEXEC = int(socket.MSG_CMSG_CLOEXEC)
_AF_UNIX = int(socket.AF_UNIX)
_INT_MAX = 2**31 - 1
_SCM_MAX_FD = 253
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



def _check_listen_mode(mode: object, addr: Address) -> int:
    if isinstance(mode, bool) or not isinstance(mode, int):
        raise TypeError(f"mode must be an int such as 0o600, not {type(mode).__name__}")
    if not 0 <= mode <= 0o777:
        raise ValueError(f"mode must be a permission mode in 0..0o777, got {oct(mode)}")
    if mode != 0o600 and not isinstance(addr.path, str):
        kind = "an abstract Unix name" if addr.family == socket.AF_UNIX else f"a {addr.scheme}:// address"
        raise ValueError(
            f"mode applies to Unix socket files only: {kind} has no permissions "
            f"(check who connected with peer_credentials()), got mode={oct(mode)} for {addr.url!r}"
        )
    return mode


def _check_stream_limit(max_message_size: object, addr: Address) -> Optional[int]:
    check_positive_int(max_message_size, "max_message_size", allow_none=True)
    if max_message_size is not None and addr.type != socket.SOCK_STREAM:
        raise ValueError(f"max_message_size applies to stream sockets; a datagram's size is the kernel's limit ({addr.url!r})")
    return max_message_size  # type: ignore[return-value]


# ---------------------------------------------------------------------- binding a socket file

_private_umask_works: Optional[bool] = None  # None: not tried yet


def _unshare_fs() -> bool:
    """Detach this thread's umask (and cwd, root) from the rest of the process."""
    flag = getattr(os, "CLONE_FS", 0x200)
    unshare = getattr(os, "unshare", None)  # Python 3.12+
    try:
        if unshare is not None:
            unshare(flag)
            return True
        import ctypes

        return ctypes.CDLL(None, use_errno=True).unshare(flag) == 0  # type: ignore[no-any-return]
    except (OSError, AttributeError, ImportError):
        return False


def _bind_with_private_umask(sock: socket.socket, path: str, mode: int) -> bool:
    """``bind`` in a helper thread whose own umask makes the file *mode* exactly.
    False (nothing done) where the thread cannot have a umask of its own."""
    global _private_umask_works
    box: dict = {}

    def run() -> None:
        if not _unshare_fs():
            box["unsupported"] = True
            return
        os.umask(0o777 & ~mode)
        try:
            sock.bind(path)
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=run, name="ipckit-bind", daemon=True)
    thread.start()
    thread.join()
    if box.get("unsupported"):
        _private_umask_works = False
        return False
    _private_umask_works = True
    if "error" in box:
        raise box["error"]
    return True


def _bind_through_private_dir(sock: socket.socket, path: str, mode: int, addr: Address) -> None:
    """Bind inside a fresh 0o700 directory beside *path*, chmod, then hard-link the
    file into place (a link never replaces an existing name)."""
    parent = os.path.dirname(path) or "."
    try:
        private = tempfile.mkdtemp(prefix=".ipckit-bind-", dir=parent)
    except OSError as exc:
        raise error_from_errno(exc.errno, f"bind {addr.url}", path) from exc
    dir_fd = -1
    try:
        name = os.path.join(private, "s")
        if len(os.fsencode(name)) > UNIX_PATH_MAX:  # reach it through /proc instead
            dir_fd = os.open(private, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            sock.bind(f"/proc/self/fd/{dir_fd}/s")
        else:
            sock.bind(name)
        os.chmod(name, mode)  # nobody else can reach it inside the 0o700 directory
        for _ in range(2):
            try:
                os.link(name, path)
                return
            except FileExistsError:
                _clear_stale(path, addr)
        raise ExistsError(errno.EADDRINUSE, f"address in use: {addr.url}", path)
    finally:
        for undo in (lambda: os.unlink(os.path.join(private, "s")), lambda: os.rmdir(private)):
            try:
                undo()
            except OSError:
                pass
        if dir_fd >= 0:
            os.close(dir_fd)


def _clear_stale(path: str, addr: Address) -> None:
    """Remove a stale socket file at *path*; ``ExistsError`` for anything else there."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise ExistsError(errno.EEXIST, f"{path!r} exists and is not a socket: not replacing it", path)
    if _someone_listens(path, addr.type):
        raise ExistsError(errno.EADDRINUSE, f"address in use: a live socket is bound at {addr.url}", path)
    try:
        os.unlink(path)  # a stale file from a server that died
    except FileNotFoundError:
        pass


def _bind(sock: socket.socket, addr: Address, sockaddr: Any, mode: int) -> None:
    path = addr.path
    if not isinstance(path, str):  # TCP, UDP, abstract: no file
        try:
            sock.bind(sockaddr)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ExistsError(errno.EADDRINUSE, f"address in use: {addr.url}") from exc
            raise error_from_errno(exc.errno, f"bind {addr.url}") from exc
        return
    if _private_umask_works is False:
        _bind_through_private_dir(sock, path, mode, addr)
        return
    for _ in range(2):
        try:
            if not _bind_with_private_umask(sock, path, mode):
                _bind_through_private_dir(sock, path, mode, addr)
            return
        except OSError as exc:
            if isinstance(exc, IPCError):
                raise
            if exc.errno != errno.EADDRINUSE:
                raise error_from_errno(exc.errno, f"bind {addr.url}", path) from exc
        _clear_stale(path, addr)
    raise ExistsError(errno.EADDRINUSE, f"address in use: {addr.url}", path)


# ---------------------------------------------------------------------- the roles


class Socket(FdObject):
    """A socket addressed by URL. Make one with ``Socket.listen()`` or ``Socket.connect()``.

    What comes back depends on the address (see the module notes): a listener
    (``accept()``) or a bound datagram socket from ``listen``; a connected stream
    socket (framed ``send``/``recv``, raw ``write``/``read``; over Unix also
    ``send_fds``/``recv_fds`` and ``peer_credentials()``) or a datagram socket from
    ``connect``. All are ``Socket`` instances. ``address`` is the URL: the bound
    address of a listener (port 0 resolved), the server's address for a connecting or
    accepted socket.
    """

    _what = "Socket"
    _role = "socket"
    _address = ""
    _sock: Optional[socket.socket] = None
    _owned_path: Optional[tuple] = None

    def _init_socket(self, sock: socket.socket, address: str) -> None:
        self._sock = sock
        self._fd = sock.fileno()
        self._address = address
        self._closed = False

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

    def _pickle_state(self) -> dict:
        return {**super()._pickle_state(), "address": self._address}

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
        self._fd = -1
        super()._close()
        if self._sock is not None:
            self._sock.close()

    # ------------------------------------------------------------------ constructors

    @classmethod
    def listen(cls, address: str, *, backlog: int = 128, mode: int = 0o600,
               max_message_size: Optional[int] = None) -> Any:
        """Bind to *address* and, for stream addresses, listen with *backlog*.

        Returns a ``SocketListener`` (``accept()``) for ``tcp://``/``unix://``, a bound
        ``DatagramSocket`` (``recv()``) for ``udp://``/``unix+dgram://``. ``ExistsError``
        if the address is in use by a live socket (or a Unix path holds a file that
        is not a socket); a stale socket file is replaced.

        *mode*: the permissions of a Unix socket file, exactly and from the start (who
        may connect); other addresses have none, and only the default is accepted.
        *max_message_size*: the limit of every connection ``accept()`` returns (see
        ``SocketConnection.recv``).
        """
        addr = parse_address(address)
        check_positive_int(backlog, "backlog", minimum=0)
        backlog = min(backlog, _INT_MAX)  # the kernel caps it at net.core.somaxconn anyway
        mode = _check_listen_mode(mode, addr)
        limit = _check_stream_limit(max_message_size, addr)
        family, sockaddr = _resolve(addr, passive=True)
        sock = _new_socket(family, addr.type)
        bound = False
        try:
            if family != socket.AF_UNIX:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            _bind(sock, addr, sockaddr, mode)
            bound = True
            url = addr.url if family == socket.AF_UNIX else _format_inet(addr.scheme, sock.getsockname())
            if addr.type == socket.SOCK_STREAM:
                sock.listen(backlog)
                obj: Socket = SocketListener(sock, url, max_message_size=limit)
            else:
                obj = DatagramSocket(sock, url)
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
    def connect(cls, address: str, *, timeout: Optional[float] = None,
                max_message_size: Optional[int] = None) -> Any:
        """Connect to *address*; returns a connected socket.

        For stream addresses waits for the connection up to *timeout*
        (``ipckit.Timeout``); *max_message_size* limits the messages it takes. A Unix
        path where nothing exists is ``NotFoundError``, nobody listening an ``IPCError``
        with ``errno.ECONNREFUSED``. For datagram addresses it sets the peer that
        ``send()`` goes to (nothing is sent).
        """
        connector = Connector(address, max_message_size=max_message_size, timeout=timeout)
        with connector:
            if connector.deadline.blocking:
                return connector.connect_blocking()
            retry(connector.attempt_start, connector.deadline, f"connect to {connector.url} (backlog full)", connector.start_waiter)
            retry(connector.attempt_finish, connector.deadline, f"connect to {connector.url}", connector.finish_waiter)
            return connector.result()


class Connector:
    """``Socket.connect`` as attempts and waiters, for ``_wait.retry`` (and ``ipckit.aio``).

    Construction checks the arguments, resolves the address and makes the socket (a
    host name goes through ``getaddrinfo``, which may block on DNS). Then:
    ``attempt_start`` (``connect`` on the non-blocking socket; ``WOULD_BLOCK`` while
    a Unix listener's backlog is full: wait with ``start_waiter``, a ``Backoff``),
    ``attempt_finish`` (``WOULD_BLOCK`` until the connection is made: wait with
    ``finish_waiter``, writable), then ``result()`` is the connected ``Socket``.
    Used as a context manager, leaving it closes a socket that did not connect."""

    def __init__(self, address: str, *, max_message_size: Optional[int] = None, timeout: Optional[float] = None) -> None:
        addr = parse_address(address)
        self.deadline = Deadline.from_user(timeout)
        self._max = _check_stream_limit(max_message_size, addr)
        self.addr, self.url = addr, addr.url
        self._family, self._sockaddr = _resolve(addr, passive=False)
        self._sock: Optional[socket.socket] = _new_socket(self._family, addr.type)
        self._in_progress = False
        self.start_waiter = Backoff(0.001, 0.05)
        self.finish_waiter = ReadyFd(self._sock.fileno(), POLLOUT)

    def __enter__(self) -> "Connector":
        return self

    def __exit__(self, *exc: object) -> None:
        if self._sock is not None:
            self._sock.close()

    def _raise(self, err: int) -> None:
        raise error_from_errno(err, f"connect to {self.url}")

    def connect_blocking(self) -> Socket:
        assert self._sock is not None
        if self.addr.type == socket.SOCK_DGRAM:
            return self.result()
        try:
            self._sock.connect(self._sockaddr)
        except OSError as exc:
            raise error_from_errno(exc.errno, f"connect to {self.url}") from exc
        return self.result()

    def attempt_start(self, limit: Deadline) -> Any:
        sock = self._sock
        assert sock is not None
        if self.addr.type == socket.SOCK_DGRAM:
            return True
        sock.setblocking(False)
        err = sock.connect_ex(self._sockaddr)
        if err in (0, errno.EISCONN):
            return True
        if err in (errno.EINPROGRESS, errno.EALREADY):
            self._in_progress = True
            return True
        if err in (errno.EAGAIN, errno.EINTR):  # EAGAIN: a Unix listener's backlog is full
            return WOULD_BLOCK
        self._raise(err)

    def attempt_finish(self, limit: Deadline) -> Any:
        sock = self._sock
        assert sock is not None
        if not self._in_progress:
            return True
        if not ready_now(sock.fileno(), POLLOUT):
            return WOULD_BLOCK
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self._raise(err)
        self._in_progress = False
        return True

    def result(self) -> Socket:
        sock, self._sock = self._sock, None
        assert sock is not None
        try:
            if self.addr.type == socket.SOCK_DGRAM:
                if self._family == socket.AF_UNIX:
                    sock.bind(b"")  # autobind an abstract name, so the server can reply
                sock.connect(self._sockaddr)
                return DatagramSocket(sock, self.url)
            sock.setblocking(True)
            cls = UnixConnection if self._family == socket.AF_UNIX else SocketConnection
            return cls(sock, self.url, max_message_size=self._max)
        except OSError as exc:
            sock.close()
            raise error_from_errno(exc.errno, f"connect to {self.url}") from exc


class SocketListener(Socket):
    """A listening stream socket: ``accept()``."""

    _role = "listening"

    def __init__(self, sock: socket.socket, address: str, *, max_message_size: Optional[int] = None) -> None:
        self._init_socket(sock, address)
        self._max = max_message_size
        self._conn_cls = UnixConnection if int(sock.family) == _AF_UNIX else SocketConnection
        self._accept_waiter = ReadyFd(self._fd, POLLIN)

    @property
    def max_message_size(self) -> Optional[int]:
        """The limit given to every connection ``accept()`` returns."""
        return self._max

    def _pickle_state(self) -> dict:
        return {**super()._pickle_state(), "max_message_size": self._max}

    @classmethod
    def _from_fd(cls, fd: int, state: dict) -> "SocketListener":
        return cls(socket.socket(fileno=fd), state["address"], max_message_size=state["max_message_size"])

    def accept(self, *, timeout: Optional[float] = None) -> "SocketConnection":
        """The next connection, as a connected ``Socket``.

        ``timeout=None`` waits for one; otherwise ``ipckit.Timeout`` if none comes in
        time. (A timed accept makes the listening descriptor non-blocking for the
        instant of its attempt; a blocking accept copes with another process doing so.)
        """
        deadline = Deadline.from_user(timeout)
        self._check_open()
        sock = self._sock
        assert sock is not None
        if deadline.blocking:
            while True:
                try:
                    conn, _ = sock.accept()
                    return self._connection(conn)
                except BlockingIOError:  # another holder made the shared listener non-blocking
                    break
                except ConnectionAbortedError:  # the client gave up before we took it
                    continue
                except OSError as exc:
                    raise self._error(exc, "accept") from exc
        return retry(self._attempt_accept, deadline, "accept", self._accept_waiter)  # type: ignore[no-any-return]

    def _attempt_accept(self, limit: Deadline) -> Any:
        """The next connection without blocking, or ``WOULD_BLOCK``."""
        sock = self._sock
        assert sock is not None
        try:
            sock.setblocking(False)
            try:
                conn, _ = sock.accept()
            finally:
                sock.setblocking(True)
        except (BlockingIOError, ConnectionAbortedError):
            return WOULD_BLOCK
        except OSError as exc:
            raise self._error(exc, "accept") from exc
        return self._connection(conn)

    def _connection(self, conn: socket.socket) -> "SocketConnection":
        conn.setblocking(True)
        return self._conn_cls(conn, self._address, max_message_size=self._max)


class SocketConnection(Socket, DuplexStream):
    """A connected stream socket: framed ``send``/``recv``, raw ``write``/``read``.

    *max_message_size* limits what it receives (the peer's own limit is unknown, so
    sends are not limited here)."""

    _role = "connected"
    _limits_sends = False

    def __init__(self, sock: socket.socket, address: str, *, max_message_size: Optional[int] = None) -> None:
        super().__init__(SocketIO(sock), max_message_size=max_message_size)
        self._sock = sock
        self._address = address

    @classmethod
    def _from_fd(cls, fd: int, state: dict) -> "SocketConnection":
        return cls(socket.socket(fileno=fd), state["address"], max_message_size=state["max_message_size"])


class UnixStream(DuplexStream):
    """What a Unix stream socket adds: ``peer_credentials()`` and descriptor passing."""

    def _unix_socket(self) -> socket.socket:
        self._check_open()
        return self._io.sock  # type: ignore[no-any-return]

    def peer_credentials(self) -> Credentials:
        """``(pid, uid, gid)`` of the peer process, as the kernel recorded them when the
        connection was made (``SO_PEERCRED``): the check for abstract names, which
        have no file permissions."""
        sock = self._unix_socket()
        try:
            raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
        except OSError as exc:
            raise self._error(exc, "peer_credentials") from exc
        return Credentials(*_UCRED.unpack(raw))

    def send_fds(self, data: Any, fds: Any, *, timeout: Optional[float] = None) -> int:
        """Send *data* (raw bytes, not framed; at least one byte) with the descriptors
        *fds* attached (``SCM_RIGHTS``). The receiver gets its own duplicates; yours
        stay open. Returns ``len(data)``. A remainder of an earlier timed-out message
        goes first; if this one times out after the descriptors went, its unwritten
        rest goes out before anything else this end sends (as for ``send``)."""
        view = byte_view(data)
        if not len(view):
            raise ValueError("data must hold at least one byte: the descriptors travel with it")
        ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", _check_fds(fds)))]
        deadline = Deadline.from_user(timeout)
        sock = self._unix_socket()
        if self._pending is not None:
            self._flush_timed(deadline, "send_fds")
        if deadline.blocking:
            try:
                sent = sock.sendmsg([view], ancillary, _NOSIGNAL)
            except OSError as exc:
                raise self._error(exc, "send_fds") from exc
            if sent < len(view):  # the descriptors went with the first part; the rest is plain
                self._write_all_blocking([view[sent:]], "send_fds")
            return len(view)
        committed = False
        try:
            retry(partial(self._attempt_send_fds, view, ancillary), deadline, "send_fds", self._send_waiter)
            committed = True
            if self._pending is not None:
                retry(self._attempt_flush, deadline, "send_fds", self._send_waiter)
        except Timeout as exc:
            exc.partial = committed  # type: ignore[attr-defined]
            raise
        finally:
            self._own_pending()
        return len(view)

    def _attempt_send_fds(self, view: Any, ancillary: list, limit: Deadline) -> Any:
        """As ``_attempt_send``: nothing sent (``WOULD_BLOCK``), or the descriptors and
        the first bytes sent and the rest committed to the pending buffer (``True``)."""
        if self._pending is not None and self._attempt_flush(limit) is WOULD_BLOCK:
            return WOULD_BLOCK
        try:
            sent = self._io.sock.sendmsg([view], ancillary, _DONTWAIT | _NOSIGNAL)
        except BlockingIOError:
            return WOULD_BLOCK
        except OSError as exc:
            raise self._error(exc, "send_fds") from exc
        if sent < len(view):
            self._pending, self._pending_borrowed = [view[sent:]], True
        return True

    def recv_fds(self, maxfds: int, *, bufsize: int = 65536, timeout: Optional[float] = None) -> Tuple[bytes, list]:
        """Receive up to *bufsize* raw bytes and up to *maxfds* descriptors (new,
        close-on-exec; closing them is yours). ``(b"", [])`` at end of stream.
        More than *maxfds* descriptors arriving is an ``IPCError`` (``EMSGSIZE``);
        they are all closed, and the bytes that came with them are lost. (Raw bytes a
        ``recv`` read ahead come first, with no descriptors.)"""
        check_positive_int(maxfds, "maxfds")
        if maxfds > _SCM_MAX_FD:
            raise ValueError(f"maxfds must be at most {_SCM_MAX_FD} (the kernel's SCM_MAX_FD), got {maxfds}")
        check_positive_int(bufsize, "bufsize")
        bufsize = min(bufsize, READ_MAX)
        deadline = Deadline.from_user(timeout)
        sock = self._unix_socket()
        if deadline.blocking and self._decoder.at_boundary:
            try:
                data, ancillary, msg_flags, _ = sock.recvmsg(bufsize, socket.CMSG_SPACE(maxfds * 4), _CMSG_CLOEXEC)
            except OSError as exc:
                raise self._error(exc, "recv_fds") from exc
            return _collect_fds(data, ancillary, msg_flags, maxfds)
        return retry(partial(self._attempt_recv_fds, maxfds, bufsize), deadline, "recv_fds", self._recv_waiter)  # type: ignore[no-any-return]

    def _attempt_recv_fds(self, maxfds: int, bufsize: int, limit: Deadline) -> Any:
        decoder = self._decoder
        if not decoder.at_boundary:
            if decoder.in_body:
                raise IPCError(errno.EINVAL, "recv_fds: a message is half received by recv(); finish it with recv() first")
            return decoder.take_buffered(bufsize), []
        try:
            data, ancillary, msg_flags, _ = self._io.sock.recvmsg(
                bufsize, socket.CMSG_SPACE(maxfds * 4), _CMSG_CLOEXEC | _DONTWAIT
            )
        except BlockingIOError:
            return WOULD_BLOCK
        except OSError as exc:
            raise self._error(exc, "recv_fds") from exc
        return _collect_fds(data, ancillary, msg_flags, maxfds)


class UnixConnection(SocketConnection, UnixStream):
    """A connected Unix stream socket: also ``send_fds``/``recv_fds`` and ``peer_credentials()``."""


class DatagramSocket(Socket):
    """``udp://`` and ``unix+dgram://``: one message per datagram, no framing.

    From ``listen`` it is bound (``recv``/``recv_from``, and ``send_to`` to reply);
    from ``connect`` it has a peer (``send``, and ``recv`` of the replies)."""

    _role = "datagram"
    _rbuf: Optional[bytearray] = None
    _rview: Optional[memoryview] = None

    def __init__(self, sock: socket.socket, address: str) -> None:
        self._init_socket(sock, address)
        self._unix = int(sock.family) == _AF_UNIX
        self._scheme = "unix+dgram" if self._unix else "udp"
        # A Unix datagram is at most the sender's SO_SNDBUF - 32 bytes, and SO_SNDBUF is
        # at most 2 * net.core.wmem_max: one reusable buffer that large takes any
        # datagram in a single recv. MSG_TRUNC makes the kernel report the real
        # length, so the only datagram that could still not fit (from a peer that
        # forced a larger buffer with CAP_NET_ADMIN) is reported, not silently cut.
        self._rsize = _unix_datagram_limit() if self._unix else 65536
        self._sock_send = sock.send
        self._sock_recv_into = sock.recv_into
        self._send_waiter = ReadyFd(self._fd, POLLOUT)
        self._recv_waiter = ReadyFd(self._fd, POLLIN)

    @classmethod
    def _from_fd(cls, fd: int, state: dict) -> "DatagramSocket":
        return cls(socket.socket(fileno=fd), state["address"])

    @property
    def max_message_size(self) -> int:
        """The largest datagram this socket can send: 65507 bytes over IPv4 UDP,
        65527 over IPv6, ``SO_SNDBUF - 32`` for Unix datagrams."""
        self._check_open()
        sock = self._sock
        assert sock is not None
        if self._unix:
            return int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)) - 32
        return 65507 if sock.family == socket.AF_INET else 65527

    # ------------------------------------------------------------------ sending

    def _send_error(self, exc: OSError, size: int, what: str) -> IPCError:
        if exc.errno == errno.EMSGSIZE and not self._closed:
            return MessageTooLarge(errno.EMSGSIZE, f"{what}: a {size}-byte datagram is over this socket's limit; nothing was sent")
        if exc.errno == errno.ECONNREFUSED and not self._closed:
            return ClosedError(errno.ECONNREFUSED, f"{what}: nobody is bound at {self._address} any more")
        return self._error(exc, what)

    def send(self, data: Any, *, timeout: Optional[float] = None) -> None:
        """Send *data* as one datagram to the connected peer. ``MessageTooLarge``
        (nothing sent) over ``max_message_size``; with a timeout, ``ipckit.Timeout``
        while the peer's queue stays full (Unix)."""
        if type(data) is not bytes and type(data) is not bytearray:
            data = byte_view(data)
        if timeout is None:
            try:
                self._sock_send(data, _NOSIGNAL)
                return
            except OSError as exc:
                raise self._send_error(exc, len(data), "send") from exc
        self._send_timed(data, None, timeout, "send")

    def write(self, data: Any, *, timeout: Optional[float] = None) -> int:
        """One datagram, as ``send``; returns ``len(data)``."""
        view = byte_view(data)
        self.send(view, timeout=timeout)
        return len(view)

    def send_to(self, data: Any, address: str, *, timeout: Optional[float] = None) -> None:
        """Send *data* as one datagram to *address* (a URL of this socket's scheme,
        e.g. the sender that ``recv_from()`` returned): how a server replies."""
        view = byte_view(data)
        addr = parse_address(address)
        Deadline.from_user(timeout)  # checked before anything is done
        self._check_open()
        if addr.scheme != self._scheme:
            raise ValueError(f"address must be a {self._scheme}:// URL for this socket, got {address!r}")
        family, sockaddr = _resolve(addr, passive=False)
        if family != self.family:
            raise ValueError(f"address {address!r} is not of this socket's address family")
        self._send_timed(view, sockaddr, timeout, "send_to")

    def _send_timed(self, view: Any, sockaddr: Any, timeout: Optional[float], what: str) -> None:
        deadline = Deadline.from_user(timeout)
        self._check_open()
        if deadline.blocking:
            sock = self._sock
            assert sock is not None
            try:
                sock.sendto(view, _NOSIGNAL, sockaddr)
            except OSError as exc:
                raise self._send_error(exc, len(view), what) from exc
            return
        retry(partial(self._attempt_send, view, sockaddr), deadline, what, self._send_waiter)

    def _attempt_send(self, view: Any, sockaddr: Any, limit: Deadline) -> Any:
        """One datagram to the peer (*sockaddr* None) or to *sockaddr*, without blocking."""
        sock = self._sock
        assert sock is not None
        try:
            if sockaddr is None:
                sock.send(view, _NOSIGNAL | _DONTWAIT)
            else:
                sock.sendto(view, _NOSIGNAL | _DONTWAIT, sockaddr)
        except BlockingIOError:
            return WOULD_BLOCK
        except OSError as exc:
            raise self._send_error(exc, len(view), "send" if sockaddr is None else "send_to") from exc
        return True

    # ------------------------------------------------------------------ receiving

    def _buffer(self) -> bytearray:
        buf = self._rbuf = bytearray(self._rsize)
        self._rview = memoryview(buf)
        return buf

    def _truncated(self, size: int) -> IPCError:
        return IPCError(
            errno.EMSGSIZE,
            f"recv: a {size}-byte datagram was larger than the {self._rsize}-byte receive buffer and was truncated",
        )

    def recv(self, *, timeout: Optional[float] = None) -> bytes:
        """One whole datagram. ``ipckit.Timeout`` if none arrives in time."""
        if timeout is None:
            buf = self._rbuf
            if buf is None:
                buf = self._buffer()
            try:
                size = self._sock_recv_into(buf, 0, _TRUNC)
            except OSError as exc:
                raise self._error(exc, "recv") from exc
            if size > self._rsize:
                raise self._truncated(size)
            return self._rview[:size].tobytes()  # type: ignore[index]
        deadline = Deadline.from_user(timeout)
        self._check_open()
        return retry(self._attempt_recv, deadline, "recv", self._recv_waiter)  # type: ignore[no-any-return]

    def _attempt_recv(self, limit: Deadline) -> Any:
        """One whole datagram without blocking, or ``WOULD_BLOCK``."""
        buf = self._rbuf if self._rbuf is not None else self._buffer()
        try:
            size = self._sock_recv_into(buf, 0, _TRUNC | _DONTWAIT)
        except BlockingIOError:
            return WOULD_BLOCK
        except OSError as exc:
            raise self._error(exc, "recv") from exc
        if size > self._rsize:
            raise self._truncated(size)
        return self._rview[:size].tobytes()  # type: ignore[index]

    def recv_from(self, *, timeout: Optional[float] = None) -> Tuple[bytes, Optional[str]]:
        """One whole datagram and the URL of its sender, for ``send_to()`` replies
        (None when the sender has no address: an unbound Unix socket).
        ``ipckit.Timeout`` if none arrives in time."""
        deadline = Deadline.from_user(timeout)
        self._check_open()
        if deadline.blocking:
            try:
                return self._recv_from(0)
            except BlockingIOError:  # another holder made the shared descriptor non-blocking
                pass
        return retry(self._attempt_recv_from, deadline, "recv_from", self._recv_waiter)  # type: ignore[no-any-return]

    def _recv_from(self, flags: int) -> Tuple[bytes, Optional[str]]:
        sock = self._sock
        assert sock is not None
        buf = self._rbuf if self._rbuf is not None else self._buffer()
        try:
            size, _, _, sender = sock.recvmsg_into([buf], 0, flags | _TRUNC)
        except BlockingIOError:
            raise
        except OSError as exc:
            raise self._error(exc, "recv_from") from exc
        if size > self._rsize:
            raise self._truncated(size)
        data = self._rview[:size].tobytes()  # type: ignore[index]
        if self._unix:
            return data, _format_unix("unix+dgram", sender)
        return data, _format_inet("udp", sender)

    def _attempt_recv_from(self, limit: Deadline) -> Any:
        """``(datagram, sender URL)`` without blocking, or ``WOULD_BLOCK``."""
        try:
            return self._recv_from(_DONTWAIT)
        except BlockingIOError:
            return WOULD_BLOCK

    def read(self, n: int = 65536, *, timeout: Optional[float] = None) -> bytes:
        """One datagram, cut to *n* bytes (the rest of it is discarded)."""
        check_positive_int(n, "n")
        n = min(n, self._rsize)
        deadline = Deadline.from_user(timeout)
        self._check_open()
        if deadline.blocking:
            try:
                return self._read(n, 0)
            except BlockingIOError:  # another holder made the shared descriptor non-blocking
                pass
        return retry(partial(self._attempt_read, n), deadline, "read", self._recv_waiter)  # type: ignore[no-any-return]

    def _read(self, n: int, flags: int) -> bytes:
        sock = self._sock
        assert sock is not None
        try:
            return sock.recv(n, flags)
        except BlockingIOError:
            raise
        except OSError as exc:
            raise self._error(exc, "read") from exc

    def _attempt_read(self, n: int, limit: Deadline) -> Any:
        try:
            return self._read(n, _DONTWAIT)
        except BlockingIOError:
            return WOULD_BLOCK


def _unix_datagram_limit() -> int:
    wmem_max = read_int("/proc/sys/net/core/wmem_max") or 212992
    return max(65536, 2 * wmem_max)


# ---------------------------------------------------------------------- descriptors


def _check_fds(fds: Any) -> list:
    if isinstance(fds, (str, bytes)) or not hasattr(fds, "__iter__"):
        raise TypeError(f"fds must be a list of file descriptors, not {type(fds).__name__}")
    out = []
    for fd in fds:
        if not isinstance(fd, int) and hasattr(fd, "fileno"):
            fd = fd.fileno()
        if isinstance(fd, bool) or not isinstance(fd, int):
            raise TypeError(f"fds must hold ints (or objects with fileno()), not {type(fd).__name__}")
        if not 0 <= fd <= _INT_MAX:
            raise ValueError(f"fds must hold descriptors 0..{_INT_MAX}, got {fd}")
        out.append(fd)
        if len(out) > _SCM_MAX_FD:
            raise ValueError(f"at most {_SCM_MAX_FD} descriptors per message")
    if not out:
        raise ValueError("fds must hold at least one descriptor (use write() for plain bytes)")
    return out


def _collect_fds(data: bytes, ancillary: list, msg_flags: int, maxfds: int) -> Tuple[bytes, list]:
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


__all__ = [
    "Address",
    "Connector",
    "Credentials",
    "DatagramSocket",
    "Socket",
    "SocketConnection",
    "SocketListener",
    "UNIX_PATH_MAX",
    "UnixConnection",
    "UnixStream",
    "parse_address",
]
