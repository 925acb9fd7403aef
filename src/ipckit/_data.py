"""Accepting data: any C-contiguous bytes-like object, viewed as bytes without a copy."""

from __future__ import annotations


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


__all__ = ["byte_view"]
