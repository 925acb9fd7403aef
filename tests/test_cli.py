"""The command line: ipckit info / ls / rm, run as a user would, in a subprocess."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

import ipckit


def ipckit_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "ipckit", *args], capture_output=True, text=True, timeout=60)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def listed(prefix: str = "", orphaned: bool = False) -> list[dict]:
    args = ["ls", "--json"] + (["--prefix", prefix] if prefix else []) + (["--orphaned"] if orphaned else [])
    return json.loads(ipckit_cli(*args).stdout)


def test_help_lists_the_commands():
    out = ipckit_cli("--help").stdout
    for command in ("info", "ls", "rm", "bench"):
        assert command in out


def test_ls_shows_each_kind_and_who_uses_it(make_name, make_key):
    shm_name, sem_name, mq_name = make_name(), make_name(), make_name()
    key = make_key()
    with ipckit.SharedMemory.create(shm_name, 4096), ipckit.Semaphore.create(sem_name) as sem, \
            ipckit.MessageQueue.create(mq_name, max_messages=2, max_message_size=64) as q, \
            ipckit.SharedMemory.create(key, 8192, backend="sysv"):
        objects = {(o["kind"], o["name"]): o for o in json.loads(ipckit_cli("ls", "--json").stdout)}
        assert objects[("posix-shm", shm_name)]["size"] == 4096
        assert objects[("posix-sem", sem_name)]["mode"] == 0o600
        assert ("posix-mq", mq_name) in objects or not os.geteuid() == 0
        assert objects[("sysv-shm", key)]["size"] == 8192
        for kind, name in (("posix-shm", shm_name), ("posix-sem", sem_name), ("sysv-shm", key)):
            assert os.getpid() in objects[(kind, name)]["users"], f"{kind} {name} should be in use by this process"
            assert objects[(kind, name)]["orphaned"] is False
        table = ipckit_cli("ls", "--prefix", shm_name).stdout
        assert shm_name in table and sem_name not in table
        for obj in (sem, q):
            obj.unlink()
        with ipckit.SharedMemory.open(shm_name) as m1, ipckit.SharedMemory.open(key, backend="sysv") as m2:
            m1.unlink()
            m2.unlink()


CRASHING_CHILD = textwrap.dedent("""
    import os, sys, ipckit
    prefix, key = sys.argv[1], int(sys.argv[2])
    ipckit.SharedMemory.create(prefix + "shm", 1024)
    ipckit.Semaphore.create(prefix + "sem")
    ipckit.MessageQueue.create(prefix + "mq", max_messages=1, max_message_size=16).send(b"x")
    print("ready", flush=True)
    os.kill(os.getpid(), 9)   # crash before any unlink()
""")


def test_objects_of_a_killed_program_are_orphans_and_rm_removes_them(make_name):
    prefix = make_name() + "-"
    child = subprocess.run([sys.executable, "-c", CRASHING_CHILD, prefix, "0"], capture_output=True, text=True, timeout=60)
    assert child.returncode == -signal.SIGKILL and "ready" in child.stdout
    try:
        orphans = {(o["kind"], o["name"]) for o in listed(prefix, orphaned=True)}
        expected = {("posix-shm", prefix + "shm"), ("posix-sem", prefix + "sem")}
        if os.geteuid() == 0:
            expected.add(("posix-mq", prefix + "mq"))
        assert expected <= orphans
        dry = ipckit_cli("rm", "--orphaned", "--prefix", prefix, "--dry-run").stdout
        assert dry.count("would remove") == len(orphans)
        assert {(o["kind"], o["name"]) for o in listed(prefix)} == orphans  # dry run removed nothing
        ipckit_cli("rm", "--orphaned", "--prefix", prefix)
        assert listed(prefix) == []
    finally:
        for suffix in ("shm", "sem", "mq"):
            ipckit_cli("rm", prefix + suffix, check=False)


def test_rm_by_name_and_key(posix_name, sysv_key):
    ipckit.SharedMemory.create(posix_name, 100).close()
    q = ipckit.MessageQueue.create(sysv_key, backend="sysv")
    result = ipckit_cli("rm", posix_name, hex(sysv_key))
    assert "removed posix-shm" in result.stdout and "removed sysv-msg" in result.stdout
    with pytest.raises(ipckit.NotFoundError):
        ipckit.SharedMemory.open(posix_name)
    with pytest.raises(ipckit.ClosedError):
        q.recv(timeout=0)
    q.close()


def test_rm_refuses_bad_or_missing_targets(posix_name):
    missing = ipckit_cli("rm", posix_name, check=False)
    assert missing.returncode == 1 and "no IPC object" in missing.stderr
    for args in (["rm", "jobs"], ["rm", "0"], ["rm"], ["rm", "--orphaned"], ["rm", "--orphaned", "--prefix", "/"]):
        result = ipckit_cli(*args, check=False)
        assert result.returncode == 2, (args, result.stdout, result.stderr)


# ---------------------------------------------------------------- hostile hosts
#
# ipckit ls / rm as a hostile peer would attack them (docs/reference/contract.md, "Untrusted
# peers"): /dev/shm is writable by every user, other processes may hide from the
# reader, and every command must end. Each run below has a subprocess timeout, so a
# command that blocks fails the test instead of hanging the suite.

from ipckit import _leftovers, _procfs  # noqa: E402

ROOT = os.geteuid() == 0
NOBODY = 65534
BOUND = 30  # seconds any one command may take


# Another user's ipckit: the interpreter may live where that user cannot read (a root-only
# home), so the child starts as root, imports everything ls/rm will need, then drops to
# NOBODY (setuid from root clears every capability) and runs the CLI in-process.
AS_NOBODY = f"""
import json, os, sys
import posix_ipc, sysv_ipc
from ipckit import _cli, _errors, _leftovers, _naming
os.setgroups([]); os.setgid({NOBODY}); os.setuid({NOBODY})
assert int(open("/proc/self/status").read().split("CapEff:")[1].split()[0], 16) == 0
sys.exit(_cli.main(sys.argv[1:]))
"""


def run_cli(*args: str, nobody: bool = False, prefix_cmd: tuple = ()) -> subprocess.CompletedProcess:
    """``ipckit ARGS`` (as user NOBODY, after *prefix_cmd* such as unshare), bounded in time."""
    command = [sys.executable, "-c", AS_NOBODY] if nobody else [sys.executable, "-m", "ipckit"]
    return subprocess.run([*prefix_cmd, *command, *args], capture_output=True, text=True, timeout=BOUND)


def json_of(result: subprocess.CompletedProcess) -> list[dict]:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def entry(name: str) -> str:
    return "/dev/shm/" + name[1:]


def can_unshare(*flags: str) -> bool:
    try:
        return subprocess.run(["unshare", *flags, "true"], capture_output=True, timeout=BOUND).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


class Child:
    """A Python child running *code*; it prints "ready" (and maybe more) when set up and
    exits when its stdin closes."""

    def __init__(self, code: str, *args: str, prefix_cmd: tuple = ()) -> None:
        self.proc = subprocess.Popen([*prefix_cmd, sys.executable, "-c", textwrap.dedent(code), *args],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        import select

        ready, _, _ = select.select([self.proc.stdout], [], [], BOUND)
        line = self.proc.stdout.readline() if ready else ""  # type: ignore[union-attr]
        if not line.startswith("ready"):
            self.stop()
            raise AssertionError(f"child did not get ready: {line!r}")
        self.said = line.split()[1:]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.proc.stdin.close()  # type: ignore[union-attr]
        try:
            self.proc.wait(timeout=BOUND)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


MAPPER = """
    import mmap, os, sys
    fd = os.open(sys.argv[1], os.O_RDWR)
    m = mmap.mmap(fd, 4096)
    os.close(fd)  # only the mapping holds the segment now
    print("ready", os.getpid(), flush=True)
    sys.stdin.readline()
"""


def make_segment(name: str, uid: int = -1) -> None:
    fd = os.open(entry(name), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.ftruncate(fd, 4096)
        if uid >= 0:
            os.fchown(fd, uid, uid)
    finally:
        os.close(fd)


def the(objects: list[dict], name: object) -> dict:
    [obj] = [o for o in objects if o["name"] == name]
    return obj


def test_fifos_symlinks_and_devices_in_dev_shm_are_never_opened(make_name, tmp_path):
    base = make_name()
    fifo, link_fifo, link_dev, device, real = (base + s for s in ("-fifo", "-link-fifo", "-link-zero", "-dev", "-real"))
    outside_fifo = tmp_path / "fifo"
    os.mkfifo(entry(fifo), 0o666)
    os.mkfifo(outside_fifo, 0o666)
    os.symlink(outside_fifo, entry(link_fifo))
    os.symlink("/dev/zero", entry(link_dev))
    with contextlib.suppress(OSError):  # root only, and not on a nodev mount's creator
        os.mknod(entry(device), 0o600 | __import__("stat").S_IFCHR, os.makedev(1, 5))
    make_segment(real)
    # A writer opening a FIFO blocks until someone opens it for reading: while these
    # threads are blocked, no command has opened either FIFO (even with O_NONBLOCK).
    import threading

    writers = [threading.Thread(target=lambda p=p: os.close(os.open(p, os.O_WRONLY)), daemon=True)
               for p in (entry(fifo), str(outside_fifo))]
    for w in writers:
        w.start()
    try:
        for args in (["ls"], ["ls", "--json"], ["ls", "--prefix", "/nothing-matches-this"], ["ls", "--orphaned", "--prefix", base],
                     ["rm", "--orphaned", "--prefix", "/nothing-matches-this"], ["rm", "--orphaned", "--prefix", base, "--dry-run"]):
            result = run_cli(*args)
            assert result.returncode == 0, (args, result.stderr)
        assert [o["name"] for o in json_of(run_cli("ls", "--json", "--prefix", base))] == [real]
        refused = run_cli("rm", fifo)
        assert refused.returncode == 1 and "no IPC object" in refused.stderr
        removed = run_cli("rm", "--orphaned", "--prefix", base)
        assert removed.returncode == 0, removed.stderr
        if _procfs.pid_namespace_is_initial():
            assert f"removed posix-shm {real}" in removed.stdout
        assert all(w.is_alive() for w in writers), "a FIFO was opened"
        for name in (fifo, link_fifo, link_dev):
            assert os.path.lexists(entry(name)), f"{name} is not an IPC object and must stay"
    finally:
        for p in (entry(fifo), str(outside_fifo)):
            with contextlib.suppress(OSError):
                os.close(os.open(p, os.O_RDONLY | os.O_NONBLOCK))  # lets the writer go
        for w in writers:
            w.join(BOUND)
        for name in (fifo, link_fifo, link_dev, device, real):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry(name))


def test_odd_names_are_printed_escaped_and_round_trip_in_json(make_name):
    base = make_name()
    raw = os.fsencode(entry(base))
    tails = [b"-new\nline", b"-\x1b[2Jescape", b"-\xff\xfenot-utf8", b"-back\\slash"]
    tails.append(b"-" + b"L" * (255 - len(raw) + len(b"/dev/shm/") - 1))  # NAME_MAX
    paths = [raw + t for t in tails]
    for p in paths:
        os.close(os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    try:
        expected = {"/" + os.fsdecode(p)[len("/dev/shm/"):] for p in paths}
        assert {o["name"] for o in json_of(run_cli("ls", "--json", "--prefix", base))} == expected
        table = run_cli("ls", "--prefix", base)
        assert table.returncode == 0, table.stderr
        assert "\x1b" not in table.stdout and "\udcff" not in table.stdout
        body = [line for line in table.stdout.splitlines() if line.startswith("posix-shm")]
        assert len(body) == len(paths)  # the newline did not split a row
        for text in ("new\\x0aline", "\\x1b[2Jescape", "\\xff\\xfenot-utf8", "back\\\\slash", "L" * 100):
            assert any(text in line for line in body), (text, body)
        removed = run_cli("rm", "--orphaned", "--prefix", base, "--dry-run")
        assert "\x1b" not in removed.stdout and removed.stdout.count("would remove") == (len(paths) if _procfs.pid_namespace_is_initial() else 0)
    finally:
        for p in paths:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(p)


def test_a_segment_mapped_outside_the_pid_namespace_of_rm_is_unknown_and_kept(make_name):
    if not can_unshare("--pid", "--fork", "--mount-proc"):
        pytest.skip("unshare --pid --fork --mount-proc is not permitted here")
    name = make_name()
    make_segment(name)
    mapper = Child(MAPPER, entry(name))
    inside = ("unshare", "--pid", "--fork", "--mount-proc")
    try:
        # Seen from here, the mapper uses it: the answer inside must come from the namespace.
        assert the(json_of(run_cli("ls", "--json", "--prefix", name)), name)["users"] == [mapper.pid]
        obj = the(json_of(run_cli("ls", "--json", "--prefix", name, prefix_cmd=inside)), name)
        assert obj["state"] == "unknown" and obj["orphaned"] is None and "pid namespace" in obj["why"]
        assert json_of(run_cli("ls", "--json", "--orphaned", "--prefix", name, prefix_cmd=inside)) == []
        table = run_cli("ls", "--prefix", name, prefix_cmd=inside).stdout
        assert "unknown" in table and "orphaned" not in table
        kept = run_cli("rm", "--orphaned", "--prefix", name, prefix_cmd=inside)
        assert kept.returncode == 0 and "removed" not in kept.stdout and "kept" in kept.stdout
        assert os.path.exists(entry(name))
    finally:
        mapper.stop()
        os.unlink(entry(name))


@pytest.mark.skipif(not ROOT, reason="needs root, to run a process of another user")
def test_a_segment_mapped_by_another_users_process_is_unknown_to_its_owner_and_kept(make_name, make_key):
    import sysv_ipc

    name = make_name()
    make_segment(name, uid=NOBODY)  # nobody owns it, so nobody may remove it
    key = make_key()
    sem = sysv_ipc.Semaphore(key, sysv_ipc.IPC_CREX, 0o600)  # root's; nobody may not read its last pids
    mapper = Child(MAPPER, entry(name))  # root maps it
    try:
        obj = the(json_of(run_cli("ls", "--json", "--prefix", name, nobody=True)), name)
        assert obj["state"] == "unknown" and obj["users"] == [] and "could not be inspected" in obj["why"]
        kept = run_cli("rm", "--orphaned", "--prefix", name, nobody=True)
        assert kept.returncode == 0 and "removed" not in kept.stdout
        assert os.path.exists(entry(name))
        sysv = the(json_of(run_cli("ls", "--json", nobody=True)), key)
        assert sysv["kind"] == "sysv-sem" and sysv["state"] == "unknown" and "cannot be read" in sysv["why"]
        # Root can read the mapper, and nobody may remove the segment when asked by
        # name: only the unknown state kept it.
        assert the(json_of(run_cli("ls", "--json", "--prefix", name)), name)["users"] == [mapper.pid]
        assert run_cli("rm", name, nobody=True).returncode == 0
        assert not os.path.exists(entry(name))
    finally:
        mapper.stop()
        sem.remove()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(entry(name))


@pytest.mark.skipif(not ROOT, reason="needs root, to mount a /proc with hidepid")
def test_processes_hidden_by_hidepid_make_the_answer_unknown(make_name):
    if not can_unshare("--mount", "--fork"):
        pytest.skip("unshare --mount --fork is not permitted here")
    name = make_name()
    make_segment(name, uid=NOBODY)
    mapper = Child(MAPPER, entry(name))  # root's: invisible to nobody under hidepid=2
    # A /proc of its own, with hidepid=2, in a private mount namespace; then nobody runs ls.
    hidden = ("unshare", "--mount", "--fork", "sh", "-c", 'mount -t proc -o hidepid=2 proc /proc && exec "$@"', "sh")
    try:
        result = run_cli("ls", "--json", "--prefix", name, nobody=True, prefix_cmd=hidden)
        if result.returncode != 0 and "mount" in result.stderr:
            pytest.skip(f"cannot mount a proc here: {result.stderr.strip()}")
        obj = the(json_of(result), name)
        assert obj["state"] == "unknown" and "hidepid" in obj["why"]
    finally:
        mapper.stop()
        os.unlink(entry(name))


OPEN_THROUGH_PRIVATE_MOUNT = """
    import os, subprocess, sys
    name, detach, where = sys.argv[1], sys.argv[2] == "detach", sys.argv[3]
    subprocess.run(["mount", "--bind", "/dev/shm", where], check=True)
    fd = os.open(os.path.join(where, name), os.O_RDONLY)  # held open, not mapped
    if detach:
        subprocess.run(["umount", "-l", where], check=True)  # the mount is now in no mountinfo
    print("ready", os.getpid(), flush=True)
    sys.stdin.readline()
    os.close(fd)
    if not detach:
        subprocess.run(["umount", where], check=True)
"""


@pytest.mark.skipif(not ROOT, reason="needs root, to make a mount namespace")
@pytest.mark.parametrize("detach", ["keep", "detach"])
def test_a_descriptor_opened_through_another_mount_namespace_counts(make_name, tmp_path, detach):
    if not can_unshare("--mount", "--fork"):
        pytest.skip("unshare --mount --fork is not permitted here")
    name = make_name()
    make_segment(name)
    holder = Child(OPEN_THROUGH_PRIVATE_MOUNT, name[1:], detach, str(tmp_path), prefix_cmd=("unshare", "--mount", "--fork"))
    try:
        obj = the(json_of(run_cli("ls", "--json", "--prefix", name)), name)
        assert obj["state"] == "in-use" and obj["users"] == [int(holder.said[0])]
    finally:
        holder.stop()
        os.unlink(entry(name))


CREATE_SYSV_AND_DIE = "import os, sys, ipckit; ipckit.SharedMemory.create(int(sys.argv[1]), 4096, backend='sysv'); os.kill(os.getpid(), 9)"
ATTACH_SYSV = """
    import sys, ipckit
    m = ipckit.SharedMemory.open(int(sys.argv[1]), backend="sysv")
    print("ready", flush=True)
    sys.stdin.readline()
"""
ATTACH_SYSV_AND_LEAVE = "import sys, ipckit; ipckit.SharedMemory.open(int(sys.argv[1]), backend='sysv').close()"


def test_an_attached_sysv_segment_is_in_use_whoever_made_it(sysv_key):
    assert subprocess.run([sys.executable, "-c", CREATE_SYSV_AND_DIE, str(sysv_key)], timeout=BOUND).returncode == -signal.SIGKILL
    attacher = Child(ATTACH_SYSV, str(sysv_key))
    try:
        # A third process attaches and leaves: the creator (cpid) and the last
        # attacher (lpid) are both dead now, while the segment stays attached.
        assert subprocess.run([sys.executable, "-c", ATTACH_SYSV_AND_LEAVE, str(sysv_key)], timeout=BOUND).returncode == 0
        [row] = [r for r in _procfs.sysvipc_rows("shm") if r["key"] == sysv_key]
        assert row["nattch"] == 1 and attacher.pid not in (row["cpid"], row["lpid"])
        assert _procfs.provably_gone(row["cpid"]) and _procfs.provably_gone(row["lpid"])
        obj = the(json_of(run_cli("ls", "--json")), sysv_key)
        assert obj["state"] == "in-use" and obj["users"] == [attacher.pid]
        assert all(o["name"] != sysv_key for o in json_of(run_cli("ls", "--json", "--orphaned")))
    finally:
        attacher.stop()
    obj = the(json_of(run_cli("ls", "--json")), sysv_key)
    assert obj["state"] == "orphaned" and obj["users"] == []  # nattch is 0 now


SEND_SYSV = """
    import sys, ipckit
    q = ipckit.MessageQueue.create(int(sys.argv[1]), backend="sysv")
    q.send(b"x")
    print("ready", flush=True)
    sys.stdin.readline()
"""


def test_a_sysv_queue_is_orphaned_only_when_its_last_users_are_gone(sysv_key):
    sender = Child(SEND_SYSV, str(sysv_key))
    try:
        obj = the(json_of(run_cli("ls", "--json")), sysv_key)
        assert obj["kind"] == "sysv-msg" and obj["state"] == "in-use" and obj["users"] == [sender.pid]
    finally:
        sender.stop()
    obj = the(json_of(run_cli("ls", "--json")), sysv_key)
    # A pid of 0 (no receiver yet) proves nothing where the pid namespace hides processes.
    assert obj["state"] == ("orphaned" if _procfs.pid_namespace_is_initial() else "unknown")


def test_a_stalled_process_scan_gives_unknown_instead_of_a_hang(monkeypatch, posix_name):
    import threading
    import time

    ipckit.SharedMemory.create(posix_name, 64).close()
    release = threading.Event()
    listing = _procfs.pids
    monkeypatch.setattr(_procfs, "pids", lambda: (release.wait(BOUND), listing())[1])
    started = time.monotonic()
    try:
        [obj] = _leftovers.list_objects(posix_name, scan_timeout=0.3)
    finally:
        release.set()
    assert 0.3 <= time.monotonic() - started < 10
    assert obj.state == "unknown" and obj.orphaned is None and "did not finish" in obj.why
    ipckit.SharedMemory.open(posix_name).unlink()


def test_rm_leaves_a_name_that_was_replaced_since_it_was_listed(posix_name):
    import errno

    ipckit.SharedMemory.create(posix_name, 64).close()
    [obj] = _leftovers.list_objects(posix_name, inspect=False)
    os.close(os.open(entry(posix_name) + ".new", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    os.rename(entry(posix_name) + ".new", entry(posix_name))  # another file under the same name
    with pytest.raises(ipckit.IPCError) as info:
        _leftovers.remove(obj)
    assert info.value.errno == errno.ESTALE and os.path.exists(entry(posix_name))


# ---------------------------------------------------------------- the /proc reader behind them


def test_open_regular_opens_regular_files_only_and_never_blocks(tmp_path):
    regular = tmp_path / "file"
    regular.write_bytes(b"content")
    os.mkfifo(tmp_path / "fifo")
    os.symlink(regular, tmp_path / "link")
    fd = _procfs.open_regular(str(regular))
    assert fd is not None
    try:
        assert os.read(fd, 100) == b"content"
    finally:
        os.close(fd)
    st = regular.stat()
    assert _procfs.open_regular(str(regular), inode=(st.st_dev, st.st_ino + 1)) is None  # not the listed file
    for other in (tmp_path / "fifo", tmp_path / "link", tmp_path, "/dev/null", tmp_path / "missing"):
        assert _procfs.open_regular(str(other)) is None, other


def test_mapped_and_open_files_of_another_process_are_found_by_inode(make_name):
    name = make_name()
    make_segment(name)
    st = os.stat(entry(name))
    mapper = Child(MAPPER, entry(name))
    try:
        assert (st.st_dev, st.st_ino) in {(m.dev, m.ino) for m in _procfs.mapped_files(mapper.pid, {st.st_ino})}
        assert _procfs.mapped_files(mapper.pid, {st.st_ino + 1}) == []
    finally:
        mapper.stop()
    with open(entry(name), "rb") as held:
        found = _procfs.open_files(os.getpid(), {st.st_ino})
        assert [(f.fd, f.dev, f.ino) for f in found] == [(held.fileno(), st.st_dev, st.st_ino)]
    with pytest.raises(ProcessLookupError):
        _procfs.mapped_files(mapper.pid)
    os.unlink(entry(name))


@pytest.mark.parametrize("options, hidden", [
    ("rw,relatime", None), ("rw,hidepid=0", None), ("rw,hidepid=off", None),
    ("rw,hidepid=2", "hidepid=2"), ("rw,nosuid,hidepid=invisible", "hidepid=invisible"),
    ("rw,hidepid=noaccess,gid=OURS", None), ("rw,hidepid=ptraceable,gid=4000000000", "hidepid=ptraceable"),
])
def test_hidepid_is_read_from_the_proc_mount(monkeypatch, options, hidden):
    options = options.replace("OURS", str(os.getegid()))
    monkeypatch.setattr(_procfs, "can_read_every_process", lambda: False)
    monkeypatch.setattr(_procfs, "mounts", lambda fstype=None: [("/proc", "proc", "rw"), ("/proc", "proc", options)])
    assert _procfs.hidden_by_hidepid() == hidden  # the last mount at /proc is the one seen
    monkeypatch.setattr(_procfs, "can_read_every_process", lambda: True)
    assert _procfs.hidden_by_hidepid() is None


def test_mount_points_are_unescaped():
    assert _procfs._unescape(r"/mnt/a\040b\011c\134d") == "/mnt/a b\tc\\d"


def test_mqueue_status_reads_the_queue_file_of_a_mount(posix_name):
    mount = _procfs.mqueue_mount()
    if mount is None:
        pytest.skip("no mqueue file system is mounted here")
    with ipckit.MessageQueue.create(posix_name, max_messages=4, max_message_size=64) as q:
        q.send(b"12345")
        status = _procfs.mqueue_status(posix_name, mount)
        assert status is not None and status["QSIZE"] == 5 and status["NOTIFY_PID"] == 0
        q.unlink()
    assert _procfs.mqueue_status(posix_name, mount) is None  # gone
    assert _procfs.mqueue_status("/a/b", mount) is None and _procfs.mqueue_status("relative", mount) is None


@pytest.mark.parametrize("privileged", [False, True])
def test_a_process_that_refuses_to_be_read_makes_the_answer_unknown_unless_a_sandbox_refuses(
        monkeypatch, posix_name, privileged):
    # Another user's process refuses an unprivileged reader: unknown. A reader holding
    # CAP_SYS_PTRACE over every process is refused only by a security module confining
    # the reader itself (the module notes of _leftovers): counted, not unknown.
    make_segment(posix_name)
    mapped = _procfs.mapped_files
    refusing = os.getppid()

    def maps(pid: int, inodes: object = None) -> list:
        if pid == refusing:
            raise PermissionError(13, "Permission denied")
        return mapped(pid, inodes)  # type: ignore[arg-type]

    monkeypatch.setattr(_procfs, "mapped_files", maps)
    monkeypatch.setattr(_procfs, "can_read_every_process", lambda: privileged)
    monkeypatch.setattr(_procfs, "hidden_by_hidepid", lambda: None)
    monkeypatch.setattr(_procfs, "pid_namespace_is_initial", lambda: True)
    try:
        [obj] = _leftovers.list_objects(posix_name)
    finally:
        os.unlink(entry(posix_name))
    if privileged:
        assert obj.state == "orphaned" and "security module" in obj.why
    else:
        assert obj.state == "unknown" and "could not be inspected" in obj.why
