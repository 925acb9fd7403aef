"""The channel protocols: what a message channel provides, in types.

A *channel* carries whole messages (bytes in, ``bytes`` out, order kept) between two
parties. ipckit's channels are the ends of a ``Pipe`` and of ``Pipe.duplex()``,
connected and datagram ``Socket``s, and ``MessageQueue``; a third-party class that
has these methods is a channel too. ``ipckit.testing.check_channel`` asserts these
protocols and then checks the behaviour behind them (timeouts never early,
``ClosedError`` after close, whole messages of any size ...).

They are ``typing.Protocol`` classes, so nothing has to inherit from them:
``isinstance(x, ReceiveChannel)`` checks that the methods exist (not their
signatures; the conformance suite checks behaviour), and a type checker accepts any
object with matching methods where one is expected::

    def drain(channel: ipckit.testing.ReceiveChannel) -> list[bytes]: ...

Each end has only the direction it can honour: a pipe's reader is a
``ReceiveChannel`` and not a ``SendChannel``; a duplex end, a connected socket or a
queue is a ``Channel`` (both).
"""

from __future__ import annotations

from typing import Any, Optional, Protocol, runtime_checkable


@runtime_checkable
class Closeable(Protocol):
    """``close()`` (idempotent) and ``closed``; any other call after close raises
    ``ipckit.ClosedError``."""

    def close(self) -> None: ...

    @property
    def closed(self) -> bool: ...


@runtime_checkable
class SendChannel(Closeable, Protocol):
    """The sending side: ``send(data, *, timeout=None)`` of any bytes-like object,
    one whole message; ``ipckit.Timeout`` when it cannot be sent in time,
    ``MessageTooLarge`` over the channel's limit (nothing sent)."""

    def send(self, data: Any, *, timeout: Optional[float] = None) -> None: ...


@runtime_checkable
class ReceiveChannel(Closeable, Protocol):
    """The receiving side: ``recv(*, timeout=None) -> bytes``, one whole message in
    the order sent; ``ipckit.Timeout`` when none comes in time, ``ClosedError`` once
    the channel has ended (for channels with an end of stream)."""

    def recv(self, *, timeout: Optional[float] = None) -> bytes: ...


@runtime_checkable
class Channel(SendChannel, ReceiveChannel, Protocol):
    """Both sides in one object (a duplex end, a connected socket, a queue)."""


__all__ = ["Channel", "Closeable", "ReceiveChannel", "SendChannel"]
