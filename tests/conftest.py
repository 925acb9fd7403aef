"""Test-suite plumbing: unique names, cleanup of kernel objects, a leak check, a C compiler.

The leak check runs at the end of the session and fails the run if this session
left kernel objects behind: files in /dev/shm (shared memory and ``sem.*``), POSIX
message queues, rows in /proc/sysvipc/{msg,sem,shm}, or socket files in the
session's temporary directory. Objects are recognised as this session's by the
name prefix and SysV key base that ``ipckit.testing.unique_name()`` /
``unique_key()`` use (children inherit them through the environment). Under CI
(``CI`` set) the check is stricter: any object that appeared during the run and is
still there counts, whatever its name.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import secrets
import shutil
import stat
import subprocess
import tempfile
from typing import Callable, Iterator

import pytest
from hypothesis import HealthCheck, settings

from ipckit import _procfs, testing

_SESSION_PREFIX = f"ipckit-t{os.getpid()}"
_SESSION_KEYBASE = secrets.randbelow(0x6FFF) + 0x1000
os.environ[testing.PREFIX_ENV] = _SESSION_PREFIX
os.environ[testing.KEYBASE_ENV] = str(_SESSION_KEYBASE)


# ---------------------------------------------------------------- snapshots


def _mqueue_names() -> set[str]:
    """POSIX queue names, read from an mqueue mount (made here if none exists)."""
    # Not any mqueue mount (_procfs.mqueue_mount): another program's private one may
    # be unmounted between finding and listing it, which would look like no queues.
    if _procfs.is_mount("/dev/mqueue", "mqueue"):
        return set(os.listdir("/dev/mqueue"))
    return set(_private_mqueue_listing())


_MQ_MOUNT: list[str] = []


def _private_mqueue_listing() -> list[str]:
    if not _MQ_MOUNT:
        path = tempfile.mkdtemp(prefix="ipckit-mqueue-")
        rc = subprocess.run(["mount", "-t", "mqueue", "none", path], capture_output=True).returncode
        if rc != 0:
            os.rmdir(path)
            _MQ_MOUNT.append("")
        else:
            _MQ_MOUNT.append(path)
    return os.listdir(_MQ_MOUNT[0]) if _MQ_MOUNT[0] else []


def _sysv_rows() -> set[tuple[str, int, int]]:
    return {(kind, row["key"], row[_procfs.SYSVIPC_ID[kind]]) for kind in ("msg", "sem", "shm") for row in _procfs.sysvipc_rows(kind)}


def snapshot() -> dict[str, set]:
    return {
        "/dev/shm": set(os.listdir("/dev/shm")),
        "mqueue": _mqueue_names(),
        "sysv": _sysv_rows(),
    }


# Files a benchmark peer keeps for the whole host by design, shared with every other
# program using that library: iceoryx2's "iox2_*global_mgmt" (the bench smoke test
# runs iceoryx2 when the bench extra is installed). Not ipckit's to remove.
_THIRD_PARTY_HOST_FILES = ("iox2_",)


def leaks_since(before: dict[str, set], *, strict: bool) -> list[str]:
    after = snapshot()
    found = []

    def ours(name: str) -> bool:
        return strict or _SESSION_PREFIX in name

    for entry in sorted(after["/dev/shm"] - before["/dev/shm"]):
        if entry.startswith(_THIRD_PARTY_HOST_FILES):
            continue
        if ours(entry):
            found.append(f"/dev/shm/{entry}")
    for entry in sorted(after["mqueue"] - before["mqueue"]):
        if ours(entry):
            found.append(f"POSIX message queue /{entry}")
    for kind, key, ident in sorted(after["sysv"] - before["sysv"]):
        if strict or key >> 16 == _SESSION_KEYBASE:
            found.append(f"SysV {kind} key={key:#x} id={ident}")
    return found


def remove_posix(name: str) -> None:
    """Remove whatever POSIX object (shm, semaphore, queue) bears *name*."""
    import posix_ipc

    for unlink in (posix_ipc.unlink_shared_memory, posix_ipc.unlink_semaphore, posix_ipc.unlink_message_queue):
        with contextlib.suppress(posix_ipc.ExistentialError, OSError, ValueError):
            unlink(name)


def remove_sysv(key: int) -> None:
    """Remove every SysV object (queue, semaphore set, segment) with *key*."""
    import sysv_ipc

    for kind, row_key, ident in _sysv_rows():
        if row_key != key:
            continue
        remover = {"msg": sysv_ipc.remove_message_queue, "sem": sysv_ipc.remove_semaphore, "shm": sysv_ipc.remove_shared_memory}[kind]
        with contextlib.suppress(Exception):
            remover(ident)


# ---------------------------------------------------------------- soak runs
#
# CI runs a quick slice of every property, kill and soak test. ``pytest --soak`` runs
# them at full size: >= 10,000 cases per property, >= 100 kills per channel, soaks of
# 1,000,000 messages. Tests read the size they should use from the ``soak`` fixture;
# tests that only make sense at full size are marked ``@pytest.mark.soak``.

settings.register_profile("quick", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("soak", max_examples=10_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--soak", action="store_true", default=False,
                     help="run property, kill and soak tests at full size (slow; not in CI)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "soak: runs only with --soak (full-size property, kill and soak runs)")
    settings.load_profile("soak" if config.getoption("--soak") else "quick")


def pytest_collection_modifyitems(config: pytest.Config, items: list) -> None:
    if config.getoption("--soak"):
        return
    skip = pytest.mark.skip(reason="full-size run: use pytest --soak")
    for item in items:
        if "soak" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def soak(request: pytest.FixtureRequest) -> bool:
    """True under ``pytest --soak``: use the full sizes (see above)."""
    return bool(request.config.getoption("--soak"))


# ---------------------------------------------------------------- session hooks

_BEFORE: dict[str, set] = {}


def pytest_sessionstart(session: pytest.Session) -> None:
    _BEFORE.update(snapshot())


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if hasattr(session.config, "workerinput"):
        return
    strict = bool(os.environ.get("CI"))
    leaks = leaks_since(_BEFORE, strict=strict)
    base = getattr(session.config, "_tmp_path_factory", None)
    if base is not None:
        with contextlib.suppress(Exception):
            root = base.getbasetemp()
            for path in pathlib.Path(root).rglob("*"):
                with contextlib.suppress(OSError):
                    if stat.S_ISSOCK(path.lstat().st_mode):
                        leaks.append(f"socket file {path}")
    if _MQ_MOUNT and _MQ_MOUNT[0]:
        subprocess.run(["umount", _MQ_MOUNT[0]], capture_output=True)
        with contextlib.suppress(OSError):
            os.rmdir(_MQ_MOUNT[0])
    if leaks:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        text = "LEAK CHECK FAILED: the test session left kernel objects behind:\n  " + "\n  ".join(leaks)
        if reporter is not None:
            reporter.write_sep("=", "leak check", red=True)
            reporter.write_line(text)
        else:  # pragma: no cover
            print(text)
        session.exitstatus = 1


# ---------------------------------------------------------------- fixtures


@pytest.fixture
def make_name() -> Iterator[Callable[[], str]]:
    """Factory of unique POSIX names; every object bearing one is removed after the test."""
    names: list[str] = []

    def make() -> str:
        name = testing.unique_name()
        names.append(name)
        return name

    yield make
    for name in names:
        remove_posix(name)


@pytest.fixture
def posix_name(make_name: Callable[[], str]) -> str:
    return make_name()


@pytest.fixture
def make_key() -> Iterator[Callable[[], int]]:
    """Factory of unique SysV keys; every object with one is removed after the test."""
    keys: list[int] = []

    def make() -> int:
        key = testing.unique_key()
        keys.append(key)
        return key

    yield make
    for key in keys:
        remove_sysv(key)


@pytest.fixture
def sysv_key(make_key: Callable[[], int]) -> int:
    return make_key()


@pytest.fixture(scope="session")
def cc(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., str]:
    """Compile a small C program: ``cc(source, name, *extra_flags) -> path``.

    Skips the test with a clear reason when no C compiler is installed."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler (cc/gcc) on this machine")
    outdir = tmp_path_factory.mktemp("cbin")
    built: dict[tuple, str] = {}

    def build(source: str, name: str, *flags: str) -> str:
        key = (source, name, flags)
        if key not in built:
            src = outdir / f"{name}.c"
            exe = outdir / name
            src.write_text(source)
            result = subprocess.run([compiler, "-O1", "-Wall", "-o", str(exe), str(src), *flags, "-lrt", "-lpthread"], capture_output=True, text=True)
            if result.returncode != 0:
                raise RuntimeError(f"compiling {name}.c failed:\n{result.stderr}")
            built[key] = str(exe)
        return built[key]

    return build
