"""Accepting data: any C-contiguous bytes-like object, viewed as bytes without a copy."""

from __future__ import annotations

from ._ffi import ffi


def byte_view(data: object, argument: str = "data") -> memoryview:
    """A flat unsigned-byte memoryview of *data* (bytes, bytearray, memoryview, array,
    contiguous numpy array ...). ``str`` and non-buffers are a ``TypeError``; a
    non-contiguous buffer is a ``ValueError``. No copy is made."""
    if isinstance(data, str):
        raise TypeError(f"{argument} must be bytes-like, not str (encode it first)")
    try:
        view = memoryview(data)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{argument} must be a bytes-like object, not {type(data).__name__}") from None
    if not view.c_contiguous:
        raise ValueError(f"{argument} must be a C-contiguous buffer")
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    return view


def fillable_bytes(n: int) -> tuple[bytes, memoryview]:
    """A new ``bytes`` object of *n* (at least 2) zero bytes and a writable view of
    its storage, to fill in place before the object is handed to anyone.

    This is how ``os.read`` makes its result: the one copy out of the kernel lands in
    the object returned, with no bytearray-to-bytes copy after it. It is sound only
    while nothing else holds the object (no hash cached, not shared): callers make it,
    fill it through the view, release the view, and only then return it. The zeros
    come from ``calloc``, so pages a peer never sends are never touched either."""
    if n < 2:  # bytes(0) and bytes(1) are shared singletons
        raise ValueError(f"fillable_bytes needs n >= 2, got {n}")
    obj = bytes(n)
    return obj, memoryview(ffi.buffer(ffi.from_buffer(obj)))


__all__ = ["byte_view", "fillable_bytes"]
