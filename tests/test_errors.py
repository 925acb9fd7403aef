"""The error tree and the errno -> class table, both directions."""

import errno

import pytest

import ipckit
from ipckit._errors import error_class, error_from_errno, translate_oserror

HIERARCHY = [
    (ipckit.Timeout, TimeoutError),
    (ipckit.ExistsError, FileExistsError),
    (ipckit.NotFoundError, FileNotFoundError),
    (ipckit.MessageTooLarge, ValueError),
]


def test_every_error_is_an_ipcerror_and_an_oserror():
    assert issubclass(ipckit.IPCError, OSError)
    for cls in (ipckit.Timeout, ipckit.ExistsError, ipckit.NotFoundError, ipckit.ClosedError, ipckit.MessageTooLarge):
        assert issubclass(cls, ipckit.IPCError)


@pytest.mark.parametrize("cls, builtin", HIERARCHY)
def test_errors_subclass_the_matching_builtin(cls, builtin):
    assert issubclass(cls, builtin)
    with pytest.raises(builtin):
        raise cls(errno.EIO, "x")


ERRNO_TABLE = [
    (errno.ETIMEDOUT, ipckit.Timeout),
    (errno.EAGAIN, ipckit.Timeout),
    (errno.EEXIST, ipckit.ExistsError),
    (errno.ENOENT, ipckit.NotFoundError),
    (errno.EPIPE, ipckit.ClosedError),
    (errno.ECONNRESET, ipckit.ClosedError),
    (errno.EMSGSIZE, ipckit.MessageTooLarge),
    (errno.EACCES, ipckit.IPCError),
    (errno.ESRCH, ipckit.IPCError),
]


@pytest.mark.parametrize("err, cls", ERRNO_TABLE)
def test_errno_maps_to_class(err, cls):
    assert error_class(err) is cls
    exc = error_from_errno(err, "mq_send")
    assert type(exc) is cls
    assert exc.errno == err
    assert "mq_send" in str(exc)


def test_errno_table_reverse_direction_has_one_class_per_errno():
    # Each specific class is reachable from at least one errno.
    reachable = {error_class(e) for e, _ in ERRNO_TABLE}
    assert {ipckit.Timeout, ipckit.ExistsError, ipckit.NotFoundError, ipckit.ClosedError, ipckit.MessageTooLarge} <= reachable


def test_translate_oserror_chains_the_cause():
    with pytest.raises(ipckit.NotFoundError) as info:
        with translate_oserror("open thing"):
            raise FileNotFoundError(errno.ENOENT, "No such file")
    assert isinstance(info.value.__cause__, FileNotFoundError)
    assert info.value.errno == errno.ENOENT


def test_translate_oserror_passes_non_os_errors_and_ipckit_errors():
    with pytest.raises(TypeError):
        with translate_oserror():
            raise TypeError("bad")
    original = ipckit.Timeout(errno.ETIMEDOUT, "t")
    with pytest.raises(ipckit.Timeout) as info:
        with translate_oserror():
            raise original
    assert info.value is original


def test_translate_oserror_maps_posix_ipc_errors():
    posix_ipc = pytest.importorskip("posix_ipc")
    with pytest.raises(ipckit.NotFoundError):
        with translate_oserror("open"):
            posix_ipc.SharedMemory("/ipckit-surely-does-not-exist-1234567")
    with pytest.raises(ipckit.Timeout):
        with translate_oserror("acquire"):
            raise posix_ipc.BusyError("Semaphore is busy")
