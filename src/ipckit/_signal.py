"""Signal: placeholder, implemented by issue 4."""

from __future__ import annotations

from typing import NamedTuple, Optional


class SignalInfo(NamedTuple):
    """One collected signal: number, si_code, sender pid and uid, sigqueue payload or None."""

    signo: int
    code: int
    pid: int
    uid: int
    value: Optional[int]


class Signal:
    @staticmethod
    def send(pid: int, sig: object, value: Optional[int] = None) -> None:
        raise NotImplementedError("ipckit.Signal is not implemented yet")
