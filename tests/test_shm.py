"""ipckit.SharedMemory on every backend: the contract (docs/reference/contract.md), real processes (fork and
spawn), C peers on the same name/key, stale views that must never crash, bad input."""

from __future__ import annotations

import errno
import multiprocessing
import os
import pickle
import signal
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import ipckit
from ipckit._shm_sysv import SysvSharedMemory

NAMED = ["posix", "sysv", "file"]
CONTEXTS = ["fork", "spawn"]
CHILD_TIMEOUT = 30


@pytest.fixture(params=NAMED)
def backend(request) -> str:
    return request.param


@pytest.fixture
def new_name(backend, make_name, make_key, tmp_path):
    """A factory of fresh names for the backend under test: a POSIX name, a SysV key,
    or a path (all removed after the test)."""
    if backend == "file":
        counter = iter(range(1000))
        return lambda: str(tmp_path / f"segment-{next(counter)}")
    return make_name if backend == "posix" else make_key


def _shm_entries() -> set[str]:
    return set(os.listdir("/dev/shm"))


def _appeared(before: set[str]) -> set[str]:
    """Entries of /dev/shm made since *before*, leaving out other test sessions' objects
    (another session on this machine may be making and removing its own meanwhile)."""
    ours = os.environ[ipckit.testing.PREFIX_ENV]
    return {e for e in _shm_entries() - before if not (e.startswith("ipckit-t") and not e.startswith(ours))}


def _sysv_shm_keys() -> set[int]:
    with open("/proc/sysvipc/shm") as f:
        next(f)
        return {int(line.split()[0]) & 0xFFFFFFFF for line in f}


def _sysv_shm_row(key: int) -> dict[str, str]:
    with open("/proc/sysvipc/shm") as f:
        header = next(f).split()
        for line in f:
            fields = line.split()
            if int(fields[0]) & 0xFFFFFFFF == key:
                return dict(zip(header, fields))
    raise AssertionError(f"no SysV segment with key {key:#x}")


def _exists(backend: str, name) -> bool:
    if backend == "posix":
        return os.path.exists("/dev/shm/" + name[1:])
    if backend == "sysv":
        return name in _sysv_shm_keys()
    return os.path.exists(name)


def _mode_of(backend: str, name) -> int:
    if backend == "posix":
        return os.stat("/dev/shm/" + name[1:]).st_mode & 0o7777
    if backend == "sysv":
        return int(_sysv_shm_row(name)["perms"], 8) & 0o777
    return os.stat(name).st_mode & 0o7777


def _join(proc) -> None:
    proc.join(CHILD_TIMEOUT)
    if proc.is_alive():
        proc.kill()
        proc.join()
        raise AssertionError("child process hung")
    assert proc.exitcode == 0, f"child exited with {proc.exitcode}"


# ---------------------------------------------------------------- the contract, per backend


def test_create_open_read_write(backend, new_name):
    name = new_name()
    with ipckit.SharedMemory.create(name, 5000, backend=backend) as m:
        assert isinstance(m, ipckit.SharedMemory)
        assert (m.name, m.backend, m.size, len(m.buf)) == (name, backend, 5000, 5000)
        assert m.read(16) == bytes(16)  # zero-filled
        assert m.write(b"hello", 10) == 5
        assert m.write(bytearray(b"ab")) == 2
        assert m.write(memoryview(b"xyz"), 4997) == 3
        assert m.write(np.arange(4, dtype=np.uint8), 20) == 4
        with ipckit.SharedMemory.open(name, backend=backend) as o:
            assert o.size == 5000  # the real size, not a page multiple
            assert o.read(5, 10) == b"hello"
            assert o.read(2) == b"ab"
            assert o.read(offset=4997) == b"xyz"
            assert o.read(offset=5000) == b""
            assert o.read(0, 100) == b""
            assert bytes(o.buf[20:24]) == bytes([0, 1, 2, 3])
            o.buf[100] = 42
            assert m.buf[100] == 42
            assert len(o.read()) == 5000
        m.unlink()
    assert not _exists(backend, name)


@pytest.mark.parametrize("umask", [0o077, 0o000])
def test_default_mode_is_exactly_0600(backend, umask, new_name):
    old = os.umask(umask)
    try:
        name = new_name()
        m = ipckit.SharedMemory.create(name, 100, backend=backend)
        other = new_name()
        n = ipckit.SharedMemory.create(other, 100, mode=0o640, backend=backend)
    finally:
        os.umask(old)
    try:
        assert _mode_of(backend, name) == 0o600
        assert _mode_of(backend, other) == 0o640
    finally:
        for seg in (m, n):
            seg.unlink()
            seg.close()


def test_write_past_end_writes_nothing(backend, new_name):
    name = new_name()
    with ipckit.SharedMemory.create(name, 100, backend=backend) as m:
        with pytest.raises(ValueError, match="past the end"):
            m.write(b"x" * 10, 95)
        with pytest.raises(ValueError, match="past the end"):
            m.write(b"x" * 101)
        assert m.read() == bytes(100)
        with pytest.raises(ValueError, match="offset"):
            m.write(b"x", -1)
        with pytest.raises(ValueError, match="past the end"):
            m.read(10, 95)
        with pytest.raises(ValueError, match="past the end"):
            m.read(offset=101)
        with pytest.raises(ValueError, match="n must be"):
            m.read(-2)
        with pytest.raises(ValueError, match="offset"):
            m.read(1, -1)
        with pytest.raises(TypeError, match="str"):
            m.write("text")
        with pytest.raises(TypeError, match="offset"):
            m.write(b"x", 1.0)
        with pytest.raises(TypeError, match="n must be an int"):
            m.read(True)
        m.unlink()


def test_exists_and_not_found(backend, new_name):
    name = new_name()
    with pytest.raises(ipckit.NotFoundError):
        ipckit.SharedMemory.open(name, backend=backend)
    assert not _exists(backend, name)
    with ipckit.SharedMemory.create(name, 10, backend=backend) as m:
        with pytest.raises(ipckit.ExistsError):
            ipckit.SharedMemory.create(name, 10, backend=backend)
        m.write(b"keep")
        m.unlink()
        with pytest.raises(ipckit.NotFoundError):
            m.unlink()
        assert m.read(4) == b"keep"  # an unlinked segment stays mapped
    with pytest.raises(ipckit.NotFoundError):
        m.unlink()


def test_use_after_close(backend, new_name):
    name = new_name()
    m = ipckit.SharedMemory.create(name, 10, backend=backend)
    view = m.buf
    m.close()
    m.close()  # idempotent
    assert m.closed
    for call in (lambda: m.buf, lambda: m.read(), lambda: m.write(b"x"), lambda: m.__enter__()):
        with pytest.raises(ipckit.ClosedError):
            call()
    if backend != "sysv":
        with pytest.raises(ipckit.ClosedError):
            m.fileno()
    with pytest.raises(ValueError, match="released"):
        view[0]  # the handed-out view was released, not left dangling
    m.unlink()  # works on a closed handle
    assert not _exists(backend, name)
    assert "closed" in repr(m)


def test_bad_posix_names(make_name):
    before = _shm_entries()
    for bad in ["noslash", "", "/", "/a/b", "/" + "x" * 255, "/nul\0"]:
        with pytest.raises(ValueError, match="name"):
            ipckit.SharedMemory.create(bad, 10)
        with pytest.raises(ValueError, match="name"):
            ipckit.SharedMemory.open(bad)
    for bad in [123, b"/bytes", None]:
        with pytest.raises(TypeError, match="name"):
            ipckit.SharedMemory.create(bad, 10)
    name = make_name()
    for size in (0, -1):
        with pytest.raises(ValueError, match="size"):
            ipckit.SharedMemory.create(name, size)
    for size in (1.5, True, "10", None):
        with pytest.raises(TypeError, match="size"):
            ipckit.SharedMemory.create(name, size)
    with pytest.raises(ValueError, match="mode"):
        ipckit.SharedMemory.create(name, 10, mode=0o17777)
    with pytest.raises(TypeError, match="mode"):
        ipckit.SharedMemory.create(name, 10, mode="600")
    with pytest.raises(ValueError, match="backend"):
        ipckit.SharedMemory.create(name, 10, backend="nope")
    with pytest.raises(TypeError, match="backend"):
        ipckit.SharedMemory.open(name, backend=None)
    assert _appeared(before) == set()


def test_bad_sysv_keys(make_key):
    before = _sysv_shm_keys()
    for bad in (0, -1, 2**32):
        with pytest.raises(ValueError, match="key"):
            ipckit.SharedMemory.create(bad, 10, backend="sysv")
        with pytest.raises(ValueError, match="key"):
            ipckit.SharedMemory.open(bad, backend="sysv")
    for bad in ("/name", 1.0, True):
        with pytest.raises(TypeError, match="key"):
            ipckit.SharedMemory.create(bad, 10, backend="sysv")
    with pytest.raises(TypeError, match="key"):
        ipckit.SharedMemory.open(None, backend="sysv")  # a private segment cannot be opened
    with pytest.raises(ValueError, match="size"):
        ipckit.SharedMemory.create(make_key(), 0, backend="sysv")
    assert _sysv_shm_keys() == before


def test_bad_file_names(tmp_path):
    for bad in ("", "a\0b"):
        with pytest.raises(ValueError, match="name"):
            ipckit.SharedMemory.create(bad, 10, backend="file")
    with pytest.raises(TypeError, match="name"):
        ipckit.SharedMemory.create(5, 10, backend="file")
    with pytest.raises(ipckit.NotFoundError):
        ipckit.SharedMemory.open(str(tmp_path / "missing"), backend="file")
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    with pytest.raises(ipckit.IPCError, match="size 0"):
        ipckit.SharedMemory.open(empty, backend="file")  # os.PathLike is accepted
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]


def test_full_dev_shm_is_an_error_at_create_not_sigbus(make_name):
    """posix_fallocate: a segment larger than /dev/shm fails in create() (ENOSPC)
    and leaves no name behind, instead of SIGBUS on first touch."""
    name = make_name()
    too_big = os.statvfs("/dev/shm").f_blocks * os.statvfs("/dev/shm").f_frsize + (1 << 30)
    with pytest.raises(ipckit.IPCError) as info:
        ipckit.SharedMemory.create(name, too_big)
    assert info.value.errno == errno.ENOSPC
    assert "/dev/shm" in str(info.value)
    assert not _exists("posix", name)


def test_sysv_private_segment_and_stat():
    m = ipckit.SharedMemory.create(None, 3000, backend="sysv")
    try:
        assert m.name is None and isinstance(m, SysvSharedMemory)
        st = m.stat()
        assert (st.size, st.mode, st.attached, st.creator_pid, st.removed) == (3000, 0o600, 1, os.getpid(), False)
        with pytest.raises(TypeError, match="pickle"):
            pickle.dumps(m)
    finally:
        m.unlink()
        m.close()


def test_pickle_reopens_by_name(backend, new_name):
    name = new_name()
    with ipckit.SharedMemory.create(name, 64, backend=backend) as m:
        m.write(b"pickled")
        with pickle.loads(pickle.dumps(m)) as copy:
            assert (copy.name, copy.backend, copy.size) == (name, backend, 64)
            assert copy.read(7) == b"pickled"
        m.unlink()


# ---------------------------------------------------------------- stale views never crash


STALE_VIEW_SCRIPT = textwrap.dedent(
    """
    import gc, sys
    import numpy as np
    import ipckit
    backend, name = sys.argv[1], sys.argv[2]
    if backend == "sysv":
        name = int(name)
    m = ipckit.SharedMemory.create(name, 1 << 20, backend=backend)
    arr = np.frombuffer(m.buf, dtype=np.uint64)
    piece = m.buf[8:16]
    whole = m.buf
    m.close()
    m.unlink()
    arr[:] = 7                      # the views keep the mapping alive: no crash
    piece[0] = 1
    assert arr[0] == 7 and arr[1] != 7
    try:
        whole[0]
    except ValueError:
        pass                        # the handed-out buf was released
    else:
        raise SystemExit("buf was not released")
    del arr, piece, whole
    gc.collect()
    print("ok")
    """
)


def test_stale_views_after_close_never_crash(backend, new_name):
    name = new_name()
    result = subprocess.run(
        [sys.executable, "-c", STALE_VIEW_SCRIPT, backend, str(name)], capture_output=True, text=True, timeout=CHILD_TIMEOUT
    )
    assert result.returncode >= 0, f"killed by signal {-result.returncode}: {result.stderr}"
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
    assert not _exists(backend, name)


def test_sysv_detaches_when_last_view_dies(make_key):
    key = make_key()
    m = ipckit.SharedMemory.create(key, 100, backend="sysv")
    o = ipckit.SharedMemory.open(key, backend="sysv")
    assert m.stat().attached == 2
    arr = np.frombuffer(o.buf, dtype=np.uint8)
    o.close()
    assert m.stat().attached == 2  # arr still maps it
    del arr
    assert m.stat().attached == 1
    m.unlink()
    m.close()


# ---------------------------------------------------------------- across processes


def _child_numpy_writer(backend, name, handle):
    m = handle if handle is not None else ipckit.SharedMemory.open(name, backend=backend)
    arr = np.frombuffer(m.buf, dtype=np.int64)
    assert arr[0] == 12345  # sees what the parent wrote
    arr[1:] = np.arange(1, len(arr)) * 3
    del arr
    m.close()


@pytest.mark.parametrize("ctx", CONTEXTS)
@pytest.mark.parametrize("by_pickle", [False, True], ids=["by-name", "pickled"])
def test_numpy_view_changes_seen_across_processes(ctx, backend, by_pickle, new_name):
    name = new_name()
    m = ipckit.SharedMemory.create(name, 8 * 1000, backend=backend)
    try:
        arr = np.frombuffer(m.buf, dtype=np.int64)
        arr[0] = 12345
        proc = multiprocessing.get_context(ctx).Process(
            target=_child_numpy_writer, args=(backend, name, m if by_pickle else None)
        )
        proc.start()
        _join(proc)
        assert arr[0] == 12345
        assert (arr[1:] == np.arange(1, 1000) * 3).all()
        del arr
        # The child opened and exited: nothing unlinked the segment (no resource tracker).
        assert _exists(backend, name)
        with ipckit.SharedMemory.open(name, backend=backend) as again:
            assert again.read(8) == (12345).to_bytes(8, "little")
    finally:
        m.unlink()
        m.close()


def _child_from_fd(sock):
    data, fds, _flags, _addr = socket.recv_fds(sock, 16, 1)
    m = ipckit.SharedMemory.from_fd(fds[0])
    assert data == b"shm" and m.backend == "memfd" and m.name is None
    assert m.read(5) == b"start"
    m.write(b"child was here", 100)
    m.close()
    sock.sendall(b"done")
    sock.close()


@pytest.mark.parametrize("ctx", CONTEXTS)
def test_memfd_handed_over_a_unix_socket(ctx):
    before = _shm_entries()
    m = ipckit.SharedMemory.anonymous(4096, label="ipckit-test")
    parent, child = socket.socketpair()
    try:
        assert (m.name, m.backend, m.size) == (None, "memfd", 4096)
        assert os.readlink(f"/proc/self/fd/{m.fileno()}").startswith("/memfd:ipckit-test")
        m.write(b"start")
        proc = multiprocessing.get_context(ctx).Process(target=_child_from_fd, args=(child,))
        proc.start()
        socket.send_fds(parent, [b"shm"], [m.fileno()])
        parent.settimeout(CHILD_TIMEOUT)
        assert parent.recv(4) == b"done"
        _join(proc)
        assert m.read(14, 100) == b"child was here"
        m.unlink()  # nameless: nothing to remove, and no error
    finally:
        parent.close()
        child.close()
        m.close()
    assert _appeared(before) == set()


def _child_pickled_memfd(m):
    m.write(b"via pickle")
    m.close()


@pytest.mark.parametrize("ctx", CONTEXTS)
def test_memfd_pickled_to_a_child(ctx):
    with ipckit.SharedMemory.anonymous(100) as m:
        proc = multiprocessing.get_context(ctx).Process(target=_child_pickled_memfd, args=(m,))
        proc.start()
        _join(proc)
        assert m.read(10) == b"via pickle"


def test_memfd_bad_input():
    for size in (0, -5):
        with pytest.raises(ValueError, match="size"):
            ipckit.SharedMemory.anonymous(size)
    with pytest.raises(TypeError, match="fd"):
        ipckit.SharedMemory.from_fd("3")
    with pytest.raises(ValueError, match="fd"):
        ipckit.SharedMemory.from_fd(-1)
    with pytest.raises(ValueError, match="anonymous"):
        ipckit.SharedMemory.create("/x", 10, backend="memfd")
    with pytest.raises(ValueError, match="from_fd"):
        ipckit.SharedMemory.open("/x", backend="memfd")
    fd = os.memfd_create("small")
    os.ftruncate(fd, 10)
    with pytest.raises(ValueError, match="larger"):
        ipckit.SharedMemory.from_fd(fd, size=11)
    with ipckit.SharedMemory.from_fd(fd, size=4) as m:  # owns fd now
        assert m.size == 4
    with pytest.raises(OSError):
        os.fstat(fd)  # closed by the SharedMemory


# ---------------------------------------------------------------- C peers


C_POSIX_SHM = r"""
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
int main(int argc, char **argv) {
    int fd = shm_open(argv[1], O_RDWR, 0);
    if (fd < 0) { perror("shm_open"); return 1; }
    struct stat st;
    fstat(fd, &st);
    char *p = mmap(NULL, st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) { perror("mmap"); return 1; }
    printf("%ld %s\n", (long)st.st_size, p);
    strcpy(p + 64, "written by C");
    return 0;
}
"""

C_SYSV_SHM = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/shm.h>
int main(int argc, char **argv) {
    int id = shmget((key_t)strtoul(argv[1], NULL, 10), 0, 0);
    if (id < 0) { perror("shmget"); return 1; }
    struct shmid_ds ds;
    shmctl(id, IPC_STAT, &ds);
    char *p = shmat(id, NULL, 0);
    if (p == (void *)-1) { perror("shmat"); return 1; }
    printf("%ld %s\n", (long)ds.shm_segsz, p);
    strcpy(p + 64, "written by C");
    shmdt(p);
    return 0;
}
"""


@pytest.mark.parametrize("backend", ["posix", "sysv"])
def test_c_peer_sees_the_same_segment(backend, new_name, cc):
    exe = cc(C_POSIX_SHM if backend == "posix" else C_SYSV_SHM, f"shm_peer_{backend}")
    name = new_name()
    with ipckit.SharedMemory.create(name, 5000, backend=backend) as m:
        m.write(b"hello from python\0")
        result = subprocess.run([exe, str(name)], capture_output=True, text=True, timeout=CHILD_TIMEOUT)
        assert result.returncode == 0, result.stderr
        assert result.stdout == "5000 hello from python\n"
        assert m.read(12, 64) == b"written by C"
        m.unlink()


def test_sysv_segment_listed_by_ipcs(make_key):
    key = make_key()
    with ipckit.SharedMemory.create(key, 777, backend="sysv") as m:
        row = _sysv_shm_row(key)
        assert (row["perms"], row["size"], row["cpid"]) == ("600", "777", str(os.getpid()))
        out = subprocess.run(["ipcs", "-m"], capture_output=True, text=True).stdout
        assert f"{key:#010x}" in out
        m.unlink()
    assert key not in _sysv_shm_keys()


def test_opening_in_a_child_that_exits_does_not_unlink(make_name):
    """The multiprocessing.shared_memory bug this class exists to avoid."""
    name = make_name()
    with ipckit.SharedMemory.create(name, 10) as m:
        code = f"import ipckit; m = ipckit.SharedMemory.open({name!r}); m.write(b'x')"
        subprocess.run([sys.executable, "-c", code], check=True, timeout=CHILD_TIMEOUT)
        assert _exists("posix", name)
        assert m.read(1) == b"x"
        m.unlink()


def test_sigbus_is_not_reachable_through_the_api(make_name):
    """A segment sized by create() has all its pages: touching the last byte works."""
    name = make_name()
    with ipckit.SharedMemory.create(name, 3 * 4096 + 1) as m:
        m.buf[-1] = 1
        assert m.read(1, m.size - 1) == b"\x01"
        m.unlink()


# ---------------------------------------------------------------- SysV controls: open by id, IPC_SET, IPC_STAT


def test_sysv_segment_attached_by_id_in_an_unrelated_process(make_key):
    """The id, not the key, is what a creator hands to another program (as with
    shmget(IPC_PRIVATE)); open(id=...) attaches exactly that segment."""
    m = ipckit.SharedMemory.create(None, 100, backend="sysv")
    decoy = ipckit.SharedMemory.create(make_key(), 100, backend="sysv")
    try:
        m.write(b"11 22")
        code = ("import ipckit, sys; m = ipckit.SharedMemory.open(id=int(sys.argv[1]), backend='sysv'); "
                "print(m.read(5).decode(), m.size, m.name); m.write(b'33 44', 50); m.close()")
        result = subprocess.run([sys.executable, "-c", code, str(m.id)], capture_output=True, text=True, timeout=CHILD_TIMEOUT)
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == ["11", "22", "100", "None"]
        assert m.read(5, 50) == b"33 44" and decoy.read(5, 50) == bytes(5)
        with ipckit.SharedMemory.open(id=decoy.id, backend="sysv") as again:
            assert again.name == decoy.name
        with pytest.raises(ValueError, match="backend='sysv'"):
            ipckit.SharedMemory.open(id=m.id)
        with pytest.raises(TypeError, match="not both"):
            ipckit.SharedMemory.open(decoy.name, id=decoy.id, backend="sysv")
        for bad, exc in ((-1, ValueError), (2**31, ValueError), ("1", TypeError), (1.0, TypeError)):
            with pytest.raises(exc, match="id"):
                ipckit.SharedMemory.open(id=bad, backend="sysv")
    finally:
        for seg in (m, decoy):
            seg.unlink()
            seg.close()


def test_sysv_set_and_stat(make_key):
    key = make_key()
    with ipckit.SharedMemory.create(key, 4096, backend="sysv") as m:
        m.set(mode=0o640)
        st = m.stat()
        assert (st.mode, st.key, st.cuid, st.gid, st.size) == (0o640, key, os.geteuid(), os.getegid(), 4096)
        assert st.attach_time > 0 and st.change_time > 0
        assert _sysv_shm_row(key)["perms"] == "640"
        if os.geteuid() == 0:
            m.set(uid=4242, gid=4343)
            assert (m.stat().uid, m.stat().gid, _sysv_shm_row(key)["uid"]) == (4242, 4343, "4242")
        with pytest.raises(ValueError, match="mode"):
            m.set(mode=0o4777)
        with pytest.raises(TypeError, match="at least one"):
            m.set()
        m.unlink()
    with pytest.raises(ValueError, match="0o777"):
        ipckit.SharedMemory.create(make_key(), 10, mode=0o4600, backend="sysv")  # 04000 is SHM_HUGETLB to shmget


# ---------------------------------------------------------------- a peer that shrinks the segment (issue 9 item 10)


def test_anonymous_segments_are_sealed_against_shrinking():
    import fcntl

    with ipckit.SharedMemory.anonymous(8192) as m:
        assert m.shrink_sealed and m.seals & fcntl.F_SEAL_SHRINK
        with pytest.raises(PermissionError):
            os.ftruncate(m.fileno(), 4096)  # nobody it is handed to can shrink it
        code = "import os, sys\ntry:\n    os.ftruncate(int(sys.argv[1]), 0)\nexcept PermissionError:\n    print('refused')"
        fd = m.fileno()
        result = subprocess.run([sys.executable, "-c", code, str(fd)], pass_fds=[fd], capture_output=True, text=True, timeout=CHILD_TIMEOUT)
        assert result.stdout.strip() == "refused", result.stderr
        os.ftruncate(fd, 16384)  # growing is harmless and stays allowed
        assert m.read(10, 8000) == bytes(10)


def test_from_fd_seals_what_it_can_and_says_what_it_found():
    import fcntl

    sealable = os.memfd_create("sealable", os.MFD_ALLOW_SEALING)
    os.ftruncate(sealable, 4096)
    with ipckit.SharedMemory.from_fd(sealable) as m:
        assert m.shrink_sealed
    plain = os.memfd_create("plain")  # made without MFD_ALLOW_SEALING: F_SEAL_SEAL
    os.ftruncate(plain, 4096)
    with ipckit.SharedMemory.from_fd(plain) as m:
        assert m.seals == fcntl.F_SEAL_SEAL and not m.shrink_sealed
    with ipckit.SharedMemory.create(ipckit.testing.unique_name(), 4096) as m:
        assert m.seals is not None and not m.shrink_sealed  # a /dev/shm file cannot be sealed
        m.unlink()


SHRINK_SCRIPT = textwrap.dedent(
    """
    import errno, os, sys
    import ipckit
    kind, target = sys.argv[1], sys.argv[2]
    if kind == "memfd":
        fd = os.memfd_create("unsealable")
        os.ftruncate(fd, 3 * 4096)
        m = ipckit.SharedMemory.from_fd(fd)
        path = f"/proc/self/fd/{fd}"
    else:
        m = ipckit.SharedMemory.create(target, 3 * 4096, backend=kind)
        path = "/dev/shm/" + target[1:] if kind == "posix" else target
    m.write(b"kept", 0)
    m.write(b"lost", 2 * 4096)
    # A peer truncates the file under the mapping (here: through its own descriptor).
    other = os.open(path, os.O_RDWR)
    os.ftruncate(other, 4096)
    os.close(other)
    assert m.read(4) == b"kept"                       # what is left is still readable
    for call in (lambda: m.read(4, 2 * 4096), lambda: m.read(), lambda: m.write(b"x", 2 * 4096)):
        try:
            call()
        except ipckit.CorruptError as exc:
            assert exc.errno == errno.EBADMSG, exc.errno
            assert "shrank" in str(exc)
        else:
            raise SystemExit("a shrunk segment was read or written without an error")
    m.write(b"ok", 10)
    assert m.read(2, 10) == b"ok"
    if kind != "memfd":
        m.unlink()
    m.close()
    print("ok")
    """
)


@pytest.mark.parametrize("kind", ["posix", "file", "memfd"])
def test_a_shrunk_segment_is_corrupt_error_not_sigbus(kind, make_name, tmp_path):
    target = make_name() if kind == "posix" else str(tmp_path / "segment")
    result = subprocess.run([sys.executable, "-c", SHRINK_SCRIPT, kind, target], capture_output=True, text=True, timeout=CHILD_TIMEOUT)
    assert result.returncode >= 0, f"killed by signal {-result.returncode} (SIGBUS is {signal.SIGBUS}): {result.stderr}"
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
