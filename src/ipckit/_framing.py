"""Message framing for byte streams (pipes, stream sockets): sans-IO, no system calls here.

Wire format: a big-endian length, then the payload. Lengths below 0xFFFFFFFF take a
4-byte header; larger ones write the sentinel 0xFFFFFFFF and then an 8-byte length,
so small messages pay 4 bytes and the format reaches 2**64 - 1 bytes::

     0                   4                                 4+n
    +-------------------+----------- ... -----------------+
    | n (u32, n < 2^32-1) | payload (n bytes)              |
    +-------------------+----------- ... -----------------+

     0                   4                   12                     12+n
    +-------------------+-------------------+-------- ... ---------+
    | 0xFFFFFFFF        | n (u64)           | payload (n bytes)     |
    +-------------------+-------------------+-------- ... ---------+

``encode_header(n)`` gives the header for an n-byte payload. ``FrameDecoder`` takes
bytes as they arrive and hands back whole payloads. For a large payload it offers the
unfilled part of a preallocated body (``body_buffer()``) so the caller can read
straight into it (``readinto``) instead of growing a buffer piece by piece.
"""

from __future__ import annotations

import struct
from typing import Optional

_U32 = struct.Struct("!I")
_U64 = struct.Struct("!Q")
ESCAPE = 0xFFFFFFFF
MAX_FRAME = (1 << 64) - 1
SHORT_HEADER = _U32.size
LONG_HEADER = _U32.size + _U64.size

# Payloads at least this big are assembled in a preallocated body, read into directly.
LARGE_BODY = 64 * 1024


def encode_header(n: int) -> bytes:
    """The header that precedes an *n*-byte payload."""
    if n < ESCAPE:
        return _U32.pack(n)
    if n > MAX_FRAME:
        raise ValueError(f"a frame carries at most {MAX_FRAME} bytes, got {n}")
    return _U32.pack(ESCAPE) + _U64.pack(n)


def encode(payload: bytes) -> bytes:
    """Header and payload as one bytes object (for small messages and tests)."""
    return encode_header(len(payload)) + payload


def parse_header(buf: bytes | bytearray | memoryview, offset: int = 0) -> Optional[tuple[int, int]]:
    """``(header_size, payload_size)`` of the header at *offset* in *buf*, or None if incomplete."""
    if len(buf) - offset < SHORT_HEADER:
        return None
    (n,) = _U32.unpack_from(buf, offset)
    if n != ESCAPE:
        return SHORT_HEADER, n
    if len(buf) - offset < LONG_HEADER:
        return None
    (n,) = _U64.unpack_from(buf, offset + SHORT_HEADER)
    return LONG_HEADER, n


class FrameDecoder:
    """Turns a byte stream back into payloads.

    ``feed(data)`` adds bytes; ``next_frame()`` returns one payload or None when more
    bytes are needed. When a large payload is pending, ``body_buffer()`` returns the
    writable, still-empty tail of it; after reading *k* bytes into that view call
    ``body_received(k)``. A reader loop is::

        while (frame := dec.next_frame()) is None:
            if (view := dec.body_buffer()) is not None:
                dec.body_received(readinto(view))
            else:
                dec.feed(read(65536))

    ``at_boundary`` says whether the bytes seen so far end exactly between frames
    (an end of stream elsewhere cut a frame short).
    """

    # The unparsed bytes are ``_data[_pos:]``: a read of many small frames is kept as
    # the bytes object it arrived in, and each payload is one slice of it (one copy),
    # with no shifting of a buffer per frame.
    __slots__ = ("_data", "_pos", "_body", "_filled")

    def __init__(self) -> None:
        self._data = b""
        self._pos = 0
        self._body: Optional[bytearray] = None
        self._filled = 0

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        if self._body is not None:
            raise RuntimeError("feed() while a large body is pending: use body_buffer()")
        if self._pos == len(self._data):
            self._data = data if type(data) is bytes else bytes(data)
        else:
            self._data = self._data[self._pos:] + bytes(data)
        self._pos = 0

    def next_frame(self) -> Optional[bytes]:
        body = self._body
        if body is not None:
            if self._filled < len(body):
                return None
            self._body = None
            return bytes(body)
        data, pos = self._data, self._pos
        header = parse_header(data, pos)
        if header is None:
            return None
        start = pos + header[0]
        end = start + header[1]
        if len(data) < end:
            return None
        self._pos = end
        return data[start:end]

    def body_buffer(self) -> Optional[memoryview]:
        """The unfilled tail of a large payload being assembled, or None when the
        next bytes should go through ``feed()`` (no large payload is pending).

        The body is allocated here, on demand, not when its header arrives."""
        if self._body is None:
            data, pos = self._data, self._pos
            header = parse_header(data, pos)
            if header is None or header[1] < LARGE_BODY:
                return None
            start = pos + header[0]
            n = header[1]
            if len(data) >= start + n:
                return None
            body = bytearray(n)
            have = len(data) - start
            body[:have] = data[start:]
            self._data, self._pos = b"", 0
            self._body, self._filled = body, have
        return memoryview(self._body)[self._filled:]

    def body_received(self, n: int) -> None:
        assert self._body is not None and 0 <= n <= len(self._body) - self._filled
        self._filled += n

    def take_buffered(self, n: int) -> bytes:
        """Up to *n* raw bytes already buffered but not yet framed (for raw reads
        that follow framed ones), removing them from the decoder."""
        if self._body is not None:
            raise RuntimeError("a raw read in the middle of a frame")
        data = self._data[self._pos:self._pos + n]
        self._pos += len(data)
        return data

    @property
    def buffered(self) -> int:
        """Bytes held that do not yet form a whole frame."""
        return len(self._data) - self._pos + self._filled

    @property
    def at_boundary(self) -> bool:
        return self._body is None and self._pos == len(self._data)


__all__ = ["FrameDecoder", "encode", "encode_header", "parse_header", "LARGE_BODY", "MAX_FRAME"]
