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
bytes as they arrive and hands back whole payloads.

The length is the peer's word, not a fact
-----------------------------------------
A header is eight or twelve bytes anyone can write. The decoder therefore never
sizes memory by it: it holds only the bytes that have actually arrived, plus at most
one read-ahead chunk. A large payload is read straight into its buffers
(``body_buffer()``, for ``readinto``-style calls). Once the rest of a payload fits in
one chunk -- at most ``BODY_FIRST`` before any of it arrived, else as much as has
arrived so far, never more than ``BODY_CHUNK_MAX`` -- the buffer is the ``bytes``
object to be returned itself, filled in place as ``os.read`` fills its result
(``_data.fillable_bytes``), and what came before is moved into it once. So a payload
up to 1 MiB costs one copy out of the kernel and no other, as a raw ``readv`` into a
bytearray of the right size does; a larger one costs at most half its size again; and
a header announcing 2**64 - 1 bytes costs one ``BODY_FIRST`` chunk until bytes follow
it (``calloc``'d, so its pages are not even touched until data lands in them).

*max_size* refuses a frame as soon as its header is complete: ``next_frame()`` and
``body_buffer()`` raise ``FrameTooLarge``, and keep raising it, because the stream
cannot be resynchronised past a frame that will not be read.
"""

from __future__ import annotations

import struct
from typing import Optional

from ._data import fillable_bytes

_U32 = struct.Struct("!I")
_U64 = struct.Struct("!Q")
ESCAPE = 0xFFFFFFFF
MAX_FRAME = (1 << 64) - 1
SHORT_HEADER = _U32.size
LONG_HEADER = _U32.size + _U64.size

# Payloads at least this big are assembled in chunks read into directly; smaller ones
# are collected from what plain reads return.
LARGE_BODY = 64 * 1024
#: The most a large payload's first buffer holds before any of its bytes arrived (and
#: the size up to which a payload is read into its ``bytes`` directly).
BODY_FIRST = 1024 * 1024
#: The largest chunk a large payload is read into: with what has arrived, the bound on
#: the memory a frame can make the decoder hold.
BODY_CHUNK_MAX = 16 * 1024 * 1024


class FrameTooLarge(ValueError):
    """A header announced a payload over the decoder's *max_size*."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"a frame announced {size} bytes, over the limit of {limit}")
        self.size = size
        self.limit = limit


#: The 4-byte header of a payload under ``ESCAPE`` bytes, without a Python call
#: layer (for senders' hot paths; ``encode_header`` is the general form).
pack_short_header = _U32.pack


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
    bytes are needed. When a large payload is pending, ``body_buffer()`` returns a
    writable, still-empty piece of it; after reading *k* bytes into that view call
    ``body_received(k)`` (which releases the view). A reader loop is::

        while (frame := dec.next_frame()) is None:
            if (view := dec.body_buffer()) is not None:
                dec.body_received(readinto(view))
            else:
                dec.feed(read(65536))

    ``at_boundary`` says whether the bytes seen so far end exactly between frames
    (an end of stream elsewhere cut a frame short). With *max_size*, a header over it
    makes ``next_frame()`` and ``body_buffer()`` raise ``FrameTooLarge``.
    """

    # The unparsed bytes are ``_data[_pos:]``: a read of many small frames is kept as
    # the bytes object it arrived in, and each payload is one slice of it (one copy),
    # with no shifting of a buffer per frame. A large payload being assembled is
    # ``_chunks`` (complete) + ``_chunk[:_chunk_filled]``, ``_filled`` bytes of ``_size``,
    # until the rest fits one chunk; from then on it is ``_final``, written through
    # ``_store``, with the first ``_filled`` bytes in place.
    __slots__ = ("_data", "_pos", "_limit", "_size", "_chunks", "_chunk", "_chunk_filled", "_filled", "_final",
                 "_store", "_view", "_refused", "large_last")

    def __init__(self, max_size: Optional[int] = None) -> None:
        self._data = b""
        self._pos = 0
        self._limit = MAX_FRAME if max_size is None else max_size
        self._size = -1  # the size of the large payload being assembled; -1: none
        self._chunks: list = []
        self._chunk: Optional[bytearray] = None
        self._chunk_filled = 0
        self._filled = 0
        self._final: Optional[bytes] = None
        self._store: Optional[memoryview] = None
        self._view: Optional[memoryview] = None
        self._refused: Optional[FrameTooLarge] = None
        #: The last payload was a large one: a reader had better read just a header
        #: next (``LONG_HEADER`` bytes), so that a large payload after it goes
        #: straight into its own buffer instead of through a read-ahead chunk.
        self.large_last = False

    @property
    def max_size(self) -> Optional[int]:
        return None if self._limit == MAX_FRAME else self._limit

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        if self._size >= 0:
            raise RuntimeError("feed() while a large body is pending: use body_buffer()")
        if self._pos == len(self._data):
            self._data = data if type(data) is bytes else bytes(data)
        else:
            self._data = self._data[self._pos:] + bytes(data)
        self._pos = 0

    def _header(self) -> Optional[tuple[int, int]]:
        """The header at the read position (None: incomplete), refused if too large."""
        if self._refused is not None:
            raise self._refused
        header = parse_header(self._data, self._pos)
        if header is not None and header[1] > self._limit:
            self._refused = FrameTooLarge(header[1], self._limit)
            raise self._refused
        return header

    def next_frame(self) -> Optional[bytes]:
        if self._size >= 0:
            if self._filled < self._size:
                return None
            return self._finish_body()
        header = self._header()
        if header is None:
            return None
        data, pos = self._data, self._pos
        start = pos + header[0]
        end = start + header[1]
        if len(data) < end:
            return None
        self._pos = end
        self.large_last = False
        return data[start:end]

    def body_buffer(self) -> Optional[memoryview]:
        """A writable, unfilled piece of the large payload being assembled (at most
        ``BODY_CHUNK_MAX`` bytes), or None when the next bytes should go through
        ``feed()`` (no large payload is pending, or it is complete).

        Memory is taken here, a chunk at a time as the payload fills, never when its
        header arrives."""
        if self._size < 0:
            header = self._header()
            if header is None or header[1] < LARGE_BODY:
                return None
            data, pos = self._data, self._pos
            start = pos + header[0]
            if len(data) >= start + header[1]:
                return None
            head = memoryview(data)[start:]  # moved into the payload once, not sliced first
            self._data, self._pos = b"", 0
            self._size, self._filled = header[1], len(head)
            self._chunks = [head] if len(head) else []
        elif self._filled == self._size:
            return None
        if self._view is not None:
            self._view.release()
        if self._store is None:
            chunk = self._chunk
            if chunk is None or self._chunk_filled == len(chunk):
                if chunk is not None:
                    self._chunks.append(chunk)
                    self._chunk = None
                # As much as has arrived (doubling), at least BODY_FIRST, at most the cap.
                allowance = max(BODY_FIRST, min(self._filled, BODY_CHUNK_MAX))
                if self._size - self._filled > allowance:
                    chunk = self._chunk = bytearray(allowance)
                    self._chunk_filled = 0
                else:
                    self._start_final()
            if self._store is None:
                view = self._view = memoryview(chunk)[self._chunk_filled:]  # type: ignore[arg-type]
                return view
        view = self._view = self._store[self._filled:]  # type: ignore[index]
        return view

    def _start_final(self) -> None:
        """The rest of the payload fits one chunk: make the payload's own ``bytes`` and
        move the pieces that came so far into it (the one extra copy, of at most half
        the payload; none for a payload up to ``BODY_FIRST``)."""
        final, store = fillable_bytes(self._size)
        pos = 0
        for piece in self._chunks:
            store[pos:pos + len(piece)] = piece
            pos += len(piece)
        self._chunks = []
        self._final, self._store = final, store

    def body_received(self, n: int) -> None:
        """*n* bytes were written into the view ``body_buffer()`` returned."""
        view = self._view
        assert view is not None and 0 <= n <= len(view)
        view.release()
        self._view = None
        if self._store is None:
            self._chunk_filled += n
        self._filled += n

    def _finish_body(self) -> bytes:
        # Chunks are sized never to reach the payload's end, so it ends in _final.
        frame, store = self._final, self._store
        assert frame is not None and store is not None
        store.release()  # nothing writes to the object once it is handed out
        self._size, self._filled = -1, 0
        self._chunks, self._chunk, self._chunk_filled = [], None, 0
        self._final = self._store = None
        self.large_last = True
        return frame

    def take_buffered(self, n: int) -> bytes:
        """Up to *n* raw bytes already buffered but not yet framed (for raw reads
        that follow framed ones), removing them from the decoder."""
        if self._size >= 0:
            raise RuntimeError("a raw read in the middle of a frame")
        data = self._data[self._pos:self._pos + n]
        self._pos += len(data)
        return data

    @property
    def buffered(self) -> int:
        """Bytes held that do not yet form a whole frame."""
        return len(self._data) - self._pos + self._filled

    @property
    def in_body(self) -> bool:
        """Whether a large payload is being assembled (raw reads must wait for it)."""
        return self._size >= 0

    @property
    def at_boundary(self) -> bool:
        return self._size < 0 and self._pos == len(self._data)


__all__ = [
    "BODY_CHUNK_MAX",
    "BODY_FIRST",
    "ESCAPE",
    "FrameDecoder",
    "FrameTooLarge",
    "LARGE_BODY",
    "LONG_HEADER",
    "MAX_FRAME",
    "encode",
    "encode_header",
    "pack_short_header",
    "parse_header",
]
