"""The command line: ipckit info / ls / rm, run as a user would, in a subprocess."""

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
