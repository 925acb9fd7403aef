"""Sans-IO framing, table-driven: (chunks fed, frames expected, at a boundary after)."""

import struct

import pytest

from ipckit._framing import BODY_CHUNK_MAX, LARGE_BODY, FrameDecoder, encode, encode_header, parse_header


def u32(n):
    return struct.pack("!I", n)


HEADER_CASES = [
    (0, u32(0)),
    (1, u32(1)),
    (0xFFFFFFFE, u32(0xFFFFFFFE)),
    (0xFFFFFFFF, u32(0xFFFFFFFF) + struct.pack("!Q", 0xFFFFFFFF)),
    (2**40, u32(0xFFFFFFFF) + struct.pack("!Q", 2**40)),
]


@pytest.mark.parametrize("n, header", HEADER_CASES)
def test_header_encoding(n, header):
    assert encode_header(n) == header
    assert parse_header(header) == (len(header), n)


def test_header_rejects_impossible_sizes():
    with pytest.raises(ValueError):
        encode_header(2**64)


@pytest.mark.parametrize("partial", [b"", b"\x00", b"\x00\x00\x00", u32(0xFFFFFFFF), u32(0xFFFFFFFF) + b"\x00" * 7])
def test_parse_header_incomplete(partial):
    assert parse_header(partial) is None


# (chunks fed one after the other, frames expected in order, at_boundary at the end)
SIMPLE_CASES = [
    ([encode(b"")], [b""], True),
    ([encode(b"a")], [b"a"], True),
    ([encode(b"a") + encode(b"bc")], [b"a", b"bc"], True),
    ([u32(3)[:2], u32(3)[2:] + b"ab", b"c"], [b"abc"], True),
    ([encode(b"hello")[:-1]], [], False),
    ([encode(b"x") + u32(5)], [b"x"], False),
    ([bytes([b]) for b in encode(b"byte by byte") + encode(b"")], [b"byte by byte", b""], True),
    ([u32(0xFFFFFFFF) + struct.pack("!Q", 4) + b"long"], [b"long"], True),
]


@pytest.mark.parametrize("chunks, frames, boundary", SIMPLE_CASES)
def test_decoder_table(chunks, frames, boundary):
    dec = FrameDecoder()
    got = []
    for chunk in chunks:
        dec.feed(chunk)
        while (frame := dec.next_frame()) is not None:
            got.append(frame)
    assert got == frames
    assert all(type(f) is bytes for f in got)
    assert dec.at_boundary is boundary


def test_large_body_is_read_into_buffers_directly():
    payload = bytes(range(256)) * (LARGE_BODY // 256 * 3 + 1)
    wire = encode(payload) + encode(b"next")
    dec = FrameDecoder()
    dec.feed(wire[:1000])
    assert dec.next_frame() is None
    view = dec.body_buffer()
    # Memory for what arrived, plus one chunk: not the whole announced payload.
    assert view is not None and len(view) == LARGE_BODY
    rest = wire[1000:]
    # Fill the body in uneven pieces, as partial reads would.
    pos = 0
    while (view := dec.body_buffer()) is not None and len(view):
        n = min(len(view), 7777)
        view[:n] = rest[pos:pos + n]
        dec.body_received(n)
        pos += n
    assert dec.next_frame() == payload
    dec.feed(rest[pos:])
    assert dec.next_frame() == b"next"
    assert dec.at_boundary


def test_take_buffered_returns_raw_bytes_after_frames():
    dec = FrameDecoder()
    dec.feed(encode(b"framed") + b"raw tail")
    assert dec.next_frame() == b"framed"
    assert dec.next_frame() is None
    assert dec.take_buffered(3) == b"raw"
    assert dec.take_buffered(100) == b" tail"
    assert dec.at_boundary


def test_feed_during_large_body_is_refused():
    dec = FrameDecoder()
    dec.feed(encode_header(LARGE_BODY * 2) + b"x")
    assert dec.next_frame() is None
    assert dec.body_buffer() is not None  # the large body now owns the next bytes
    with pytest.raises(RuntimeError):
        dec.feed(b"more")


def test_garbage_header_allocates_nothing_until_asked():
    dec = FrameDecoder()
    dec.feed(b"\x7f\xff\xff\xffxyz")  # claims a 2 GiB frame
    assert dec.next_frame() is None
    assert dec.take_buffered(100) == b"\x7f\xff\xff\xffxyz"
