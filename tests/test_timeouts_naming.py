"""Shared argument rules: timeouts, deadlines, POSIX names, SysV keys, modes, data."""

import math
import time

import pytest

from ipckit._data import byte_view
from ipckit._naming import (
    check_ipc_set,
    check_mode,
    check_open_target,
    check_owner,
    check_posix_name,
    check_sysv_id,
    check_sysv_key,
    sysv_key_to_c,
)
from ipckit._timeouts import MAX_WAIT, Deadline, check_timeout


@pytest.mark.parametrize("value, expected", [(None, None), (0, 0.0), (0.5, 0.5), (3, 3.0)])
def test_check_timeout_accepts(value, expected):
    assert check_timeout(value) == expected


@pytest.mark.parametrize("value, exc", [(-1, ValueError), (-0.001, ValueError), (math.nan, ValueError), ("1", TypeError), (True, TypeError), ([], TypeError)])
def test_check_timeout_rejects(value, exc):
    with pytest.raises(exc, match="timeout"):
        check_timeout(value)


def test_deadline_none_never_expires():
    d = Deadline(None)
    assert d.blocking and not d.expired()
    assert d.remaining() is None and d.remaining_ms() == -1 and d.remaining_ns() == -1


def test_deadline_counts_down_and_never_negative():
    d = Deadline(0.05)
    assert 0 < d.remaining() <= 0.05
    assert d.remaining_ms() >= 1  # rounded up, never 0 while time is left
    time.sleep(0.06)
    assert d.expired() and d.remaining() == 0.0 and d.remaining_ms() == 0


def test_deadline_zero_is_expired_at_once():
    assert Deadline(0).expired()
    assert isinstance(Deadline(0).timeout_error("recv"), TimeoutError)


GOOD_NAMES = ["/a", "/jobs", "/" + "x" * 254, "/ünïcode"]
BAD_NAMES = [
    ("jobs", ValueError),
    ("", ValueError),
    ("/", ValueError),
    ("/a/b", ValueError),
    ("/" + "x" * 255, ValueError),
    ("/" + "é" * 128, ValueError),  # 257 bytes in UTF-8
    ("/nul\0", ValueError),
    (b"/bytes", TypeError),
    (None, TypeError),
    (5, TypeError),
]


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_posix_names_accepted(name):
    assert check_posix_name(name) == name


@pytest.mark.parametrize("name, exc", BAD_NAMES)
def test_posix_names_rejected_with_argument_named(name, exc):
    with pytest.raises(exc, match="name"):
        check_posix_name(name)


@pytest.mark.parametrize("key", [1, 1234, 0xFFFFFFFF])
def test_sysv_keys_accepted(key):
    assert check_sysv_key(key) == key


@pytest.mark.parametrize("key, exc", [(0, ValueError), (-1, ValueError), (2**32, ValueError), ("1", TypeError), (1.0, TypeError), (True, TypeError), (None, TypeError)])
def test_sysv_keys_rejected(key, exc):
    with pytest.raises(exc, match="key"):
        check_sysv_key(key)


def test_private_key_only_where_allowed():
    assert check_sysv_key(None, allow_private=True) is None


def test_sysv_key_to_c_is_signed_32_bit():
    assert sysv_key_to_c(1) == 1
    assert sysv_key_to_c(0x7FFFFFFF) == 0x7FFFFFFF
    assert sysv_key_to_c(0xFFFFFFFF) == -1


@pytest.mark.parametrize("mode, exc", [(-1, ValueError), (0o10000, ValueError), ("600", TypeError)])
def test_bad_modes(mode, exc):
    with pytest.raises(exc, match="mode"):
        check_mode(mode)


def test_byte_view_accepts_bytes_like_without_copy():
    data = bytearray(b"abc")
    view = byte_view(data)
    data[0] = ord("z")
    assert view.tobytes() == b"zbc"
    import array

    assert byte_view(array.array("H", [1, 2])).nbytes == 4
    assert byte_view(memoryview(b"abcdef")[1:3]).tobytes() == b"bc"


@pytest.mark.parametrize("bad, exc", [("str", TypeError), (12, TypeError), (None, TypeError), (memoryview(b"abcdef")[::2], ValueError)])
def test_byte_view_rejects(bad, exc):
    with pytest.raises(exc, match="data"):
        byte_view(bad)


@pytest.mark.parametrize("timeout", [1e7, 1e12, 1e300, math.inf])
def test_a_huge_timeout_is_waited_in_kernel_sized_pieces(timeout):
    """poll() takes an int of milliseconds and the C waits an int64 of nanoseconds:
    no timeout may overflow them; the callers' loops wait again for the rest."""
    d = Deadline(check_timeout(timeout))
    assert not d.expired()
    assert d.remaining_ms() == math.ceil(MAX_WAIT * 1000) < 2**31
    assert d.remaining_ns() == math.ceil(MAX_WAIT * 1e9) < 2**63


def test_open_target_takes_an_id_only_from_id():
    assert check_open_target(1234, None, "sysv") is None  # a key: looked up as a key
    assert check_open_target(None, None, "sysv") is None  # the backend's name check decides
    assert check_open_target(None, 0, "sysv") == 0  # shmid 0 is a valid id
    with pytest.raises(TypeError, match="not both"):
        check_open_target(1234, 5, "sysv")
    with pytest.raises(ValueError, match="backend='sysv'"):
        check_open_target(None, 5, "posix")


@pytest.mark.parametrize("value, exc", [(-1, ValueError), (2**31, ValueError), ("3", TypeError), (True, TypeError), (None, TypeError), (1.0, TypeError)])
def test_sysv_ids_rejected(value, exc):
    with pytest.raises(exc, match="id"):
        check_sysv_id(value)


def test_ipc_set_arguments():
    assert check_ipc_set(0o640, None, None) == (0o640, -1, -1)
    assert check_ipc_set(None, 0, 2**32 - 2) == (-1, 0, 2**32 - 2)
    assert check_ipc_set(None, None, None, required=False) == (-1, -1, -1)
    with pytest.raises(TypeError, match="at least one"):
        check_ipc_set(None, None, None)
    with pytest.raises(ValueError, match="0o777"):
        check_ipc_set(0o1600, None, None)
    for bad, exc in ((-1, ValueError), (2**32 - 1, ValueError), ("0", TypeError), (False, TypeError)):
        with pytest.raises(exc, match="uid"):
            check_owner(bad, "uid")
