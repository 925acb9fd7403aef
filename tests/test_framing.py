"""Sans-IO framing, table-driven: (chunks fed, frames expected, at a boundary after);
the limits a peer's header cannot pass (max_size, memory); and a property: any byte
stream, in any pieces, decodes exactly as an independent reading of the format says."""

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ipckit._framing import BODY_CHUNK_MAX, BODY_FIRST, LARGE_BODY, FrameDecoder, FrameTooLarge, encode, encode_header, parse_header


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
    # A payload up to BODY_FIRST is read into the bytes object returned: the view is
    # the rest of it, after what arrived with the header.
    assert view is not None and len(view) == len(payload) - (1000 - 4)
    rest = wire[1000:]
    # Fill the body in uneven pieces, as partial reads would.
    pos = 0
    while (view := dec.body_buffer()) is not None and len(view):
        n = min(len(view), 7777)
        view[:n] = rest[pos:pos + n]
        dec.body_received(n)
        pos += n
    frame = dec.next_frame()
    assert frame == payload and type(frame) is bytes
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


# ---------------------------------------------------------------- the peer's word about sizes
#
# (max_size, chunks fed, frames yielded before the refusal, size refused)
LIMIT_CASES = [
    (10, [encode(b"a" * 10) + encode(b"b" * 11)], [b"a" * 10], 11),
    (10, [encode(b"a" * 10), u32(11)], [b"a" * 10], 11),  # refused on the header alone
    (5, [u32(0xFFFFFFFF), struct.pack("!Q", 2**62)], [], 2**62),  # a long header, in two reads
    (5, [u32(0xFFFFFFFF) + struct.pack("!Q", 2**64 - 1)], [], 2**64 - 1),
    (LARGE_BODY, [encode(b"x" * LARGE_BODY), encode_header(LARGE_BODY + 1) + b"y"], [b"x" * LARGE_BODY], LARGE_BODY + 1),
]


@pytest.mark.parametrize("limit, chunks, frames, refused", LIMIT_CASES)
def test_frames_over_max_size_are_refused(limit, chunks, frames, refused):
    dec = FrameDecoder(max_size=limit)
    assert dec.max_size == limit
    got = []
    with pytest.raises(FrameTooLarge) as info:
        for chunk in chunks:
            dec.feed(chunk)
            while (frame := dec.next_frame()) is not None:
                got.append(frame)
    assert got == frames
    assert (info.value.size, info.value.limit) == (refused, limit)
    assert isinstance(info.value, ValueError)
    # The refusal sticks: the stream cannot be resynchronised past that frame.
    for call in (dec.next_frame, dec.body_buffer):
        with pytest.raises(FrameTooLarge):
            call()


@pytest.mark.parametrize("announced", [LARGE_BODY, 2**31, 2**62, 2**64 - 1])
def test_memory_follows_what_arrived_not_the_header(announced):
    # A header is the peer's claim: memory is taken a chunk at a time as bytes come,
    # never more than what arrived plus one chunk (BODY_FIRST at first, at most
    # BODY_CHUNK_MAX).
    dec = FrameDecoder()
    dec.feed(encode_header(announced) + b"z" * 100)
    assert dec.next_frame() is None
    arrived = 100
    target = min(announced, 40 * 1024 * 1024)  # feed 40 MiB (or the whole frame) in ragged pieces
    pieces = 0
    while arrived < target:
        view = dec.body_buffer()
        assert view is not None and len(view) > 0
        assert len(view) <= max(BODY_FIRST, min(arrived, BODY_CHUNK_MAX)), (len(view), arrived)
        n = min(len(view), 3 * 1024 * 1024 + 17, target - arrived)
        view[:n] = b"z" * n
        dec.body_received(n)
        arrived += n
        pieces += 1
        assert dec.buffered == arrived
    if announced == target:
        assert dec.next_frame() == b"z" * announced
        assert dec.at_boundary
    else:
        assert dec.next_frame() is None and not dec.at_boundary


def test_chunks_double_so_large_bodies_take_few_reads():
    size = 8 * 1024 * 1024
    dec = FrameDecoder()
    dec.feed(encode_header(size))
    views = 0
    while (view := dec.body_buffer()) is not None:
        n = len(view)
        view[:n] = bytes(n)
        dec.body_received(n)
        views += 1
    assert views <= 10  # 64K, 64K, 128K ... 4M: log2, not size / 64K
    assert dec.next_frame() == bytes(size)


def _reference_frames(stream: bytes, limit: int):
    """An independent reading of the wire format: (frames, how it ends)."""
    frames, pos = [], 0
    while True:
        if len(stream) - pos < 4:
            return frames, ("boundary" if pos == len(stream) else "cut")
        (n,) = struct.unpack_from("!I", stream, pos)
        start = pos + 4
        if n == 0xFFFFFFFF:
            if len(stream) - pos < 12:
                return frames, "cut"
            (n,) = struct.unpack_from("!Q", stream, pos + 4)
            start = pos + 12
        if n > limit:
            return frames, "refused"
        if len(stream) < start + n:
            return frames, "cut"
        frames.append(stream[start:start + n])
        pos = start + n


def _decode(pieces: list, limit, use_body: bool):
    """Feed *pieces* to a decoder (into its body views when *use_body*, as a reader
    using readinto does): (frames, how it ends)."""
    dec = FrameDecoder(max_size=limit)
    frames = []
    try:
        for piece in pieces:
            while piece:
                view = dec.body_buffer() if use_body else None
                if view is None:
                    dec.feed(piece)
                    piece = b""
                else:
                    n = min(len(view), len(piece))
                    view[:n] = piece[:n]
                    dec.body_received(n)
                    piece = piece[n:]
                while (frame := dec.next_frame()) is not None:
                    frames.append(frame)
        return frames, ("boundary" if dec.at_boundary else "cut")
    except FrameTooLarge:
        return frames, "refused"


def _streams():
    frame = st.one_of(
        st.binary(max_size=300).map(encode),
        st.integers(LARGE_BODY, LARGE_BODY + 5000).map(lambda n: encode(bytes([n & 0xFF]) * n)),
        st.integers(0, 2**64 - 1).map(encode_header),  # a header alone: often a huge claim
    )
    return st.one_of(st.lists(frame, max_size=6).map(b"".join), st.binary(max_size=2000))


@pytest.mark.timeout(1800)  # --soak runs 10,000 cases
@given(stream=_streams(), cuts=st.lists(st.integers(0, 1 << 17), max_size=12), limit=st.one_of(st.none(), st.integers(0, 1 << 17)),
       use_body=st.booleans())
def test_any_byte_stream_decodes_as_the_format_says(stream, cuts, limit, use_body):
    # Whatever bytes come, in whatever pieces: the frames the format defines, then the
    # stream ends at a boundary, inside a frame, or at a refused header. No other outcome.
    cuts = sorted({c for c in cuts if c <= len(stream)})
    pieces = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)])]
    expected = _reference_frames(stream, (1 << 64) if limit is None else limit)
    assert _decode(pieces, limit, use_body) == expected


@pytest.mark.parametrize("size", [LARGE_BODY, BODY_FIRST - 1, BODY_FIRST, BODY_FIRST + 1, 3 * BODY_FIRST + 7, 9 * BODY_FIRST])
@pytest.mark.parametrize("piece", [1 << 20, 65536 + 3, 999_983])
def test_large_payloads_come_back_whole_as_bytes_and_stay_unchanged(size, piece):
    # Each payload ends up in the bytes object it is returned as (filled in place):
    # it must equal what was sent, whatever the read sizes, and later frames must
    # never write into a payload already handed out.
    payloads = [bytes([i]) * 7 + bytes(range(256)) * (size // 256) + bytes(size % 256) for i in (1, 2)]
    payloads = [p[:size] for p in payloads]
    wire = b"".join(encode(p) for p in payloads)
    dec = FrameDecoder()
    got, pos = [], 0
    dec.feed(wire[:100])
    pos = 100
    while len(got) < 2:
        frame = dec.next_frame()
        if frame is not None:
            got.append(frame)
            continue
        view = dec.body_buffer()
        if view is None:
            dec.feed(wire[pos:pos + 4096])
            pos += 4096
            continue
        n = min(len(view), piece, len(wire) - pos)
        view[:n] = wire[pos:pos + n]
        dec.body_received(n)
        pos += n
    assert [type(g) for g in got] == [bytes, bytes]
    assert got == payloads
    assert hash(got[0]) == hash(payloads[0])
