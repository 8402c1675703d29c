"""Read and write IDX files, the format of MNIST and Fashion-MNIST.

An IDX file is a 4-byte magic number ``0x00 0x00 <dtype code> <ndim>``, then ``ndim``
big-endian uint32 dimensions, then the C-order payload of ``prod(dims)`` big-endian items.
Files may be gzip-compressed; compression is recognised by the gzip magic bytes, never by the
file name. Reading validates the header and that the payload size matches the dimensions
exactly, and raises ``FileFormatError`` (a ``ValueError``) naming the file and what is wrong,
whatever the bytes. Arrays come back in native byte order and writable.

Reading is bounded by the header: a file is read (or decompressed) only as far as its header
says, so a header claiming more than ``max_bytes`` (default ``MAX_BYTES``) is refused before
anything is allocated, and a gzip stream that expands beyond its header's promise is stopped
there.
"""

from __future__ import annotations

import gzip as gz
import math
import os
import struct
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..errors import FileFormatError
from ..files import write_atomically

__all__ = ["IDX_DTYPES", "MAX_BYTES", "read_idx", "read_idx_bytes", "parse_idx", "write_idx"]

IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
"""IDX dtype code -> big-endian NumPy dtype of the payload."""

MAX_BYTES = 2**32
"""Largest payload read by default (4 GiB; Fashion-MNIST's biggest file holds 47 MB)."""

MAX_NDIM = 32
"""Most dimensions read (NumPy 1.x's limit; real IDX files have 1 to 4)."""

_CODES = {dtype.newbyteorder("="): code for code, dtype in IDX_DTYPES.items()}
_GZIP_MAGIC = b"\x1f\x8b"
_MAX_DIM = 2**32 - 1
_CHUNK = 1 << 20
"""Bytes per read: memory grows with what a file holds, not with what its header claims."""


def read_idx_bytes(path: str | os.PathLike, *, max_bytes: int = MAX_BYTES) -> bytes:
    """The whole IDX content of ``path`` (header and payload), decompressed if it is gzip.

    The header is read and checked first (see ``parse_idx``), then the payload it announces;
    a payload above ``max_bytes`` is refused before it is read.
    """
    with open(path, "rb") as raw:
        compressed = raw.read(2) == _GZIP_MAGIC
        raw.seek(0)
        if not compressed:
            return _read_content(raw, str(path), max_bytes)
        with gz.GzipFile(fileobj=raw) as stream:
            return _read_content(stream, str(path), max_bytes)


def parse_idx(data: bytes, source: str = "<bytes>") -> np.ndarray:
    """The array held by the IDX content ``data``; ``source`` names it in error messages.

    Returns an array of shape ``dims`` in the native byte order of the header's dtype.
    """
    dtype, ndim = _parse_magic(data[:4], source)
    header = 4 + 4 * ndim
    if len(data) < header:
        raise _truncated_header(ndim, len(data), source)
    dims = _parse_dims(data[4:header], dtype, source, max_bytes=None)
    _check_payload(dims, dtype, len(data) - header, source)
    flat = np.frombuffer(data, dtype=dtype, count=math.prod(dims), offset=header)
    return flat.astype(dtype.newbyteorder("=")).reshape(dims)


def read_idx(path: str | os.PathLike, *, max_bytes: int = MAX_BYTES) -> np.ndarray:
    """The array stored in the IDX file ``path`` (raw or gzip); see ``parse_idx`` and ``read_idx_bytes``."""
    return parse_idx(read_idx_bytes(path, max_bytes=max_bytes), str(path))


def write_idx(path: str | os.PathLike, array: np.ndarray, *, gzip: bool = False) -> Path:
    """Write ``array`` to ``path`` as IDX, gzip-compressed if ``gzip``; return the path.

    Supported dtypes: uint8, int8, int16, int32, float32, float64; at most 255 dimensions, each
    below 2**32. The file appears atomically, through ``mlp_xp.files.write_atomically`` (a symbolic
    link is written through, permissions are kept). Compressed output is reproducible (mtime 0).
    """
    array = np.asarray(array)
    code = _CODES.get(array.dtype.newbyteorder("="))
    if code is None:
        names = ", ".join(d.newbyteorder("=").name for d in IDX_DTYPES.values())
        raise TypeError(f"IDX cannot store dtype {array.dtype}; supported: {names}")
    if array.ndim > 255 or any(n > _MAX_DIM for n in array.shape):
        raise ValueError(f"IDX cannot store shape {array.shape}: at most 255 dimensions, each below 2**32")
    content = (bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
               + np.ascontiguousarray(array, dtype=IDX_DTYPES[code]).tobytes())
    if gzip:
        content = gz.compress(content, mtime=0)
    return write_atomically(path, content)


def _parse_magic(magic: bytes, source: str) -> tuple[np.dtype, int]:
    """(payload dtype, number of dimensions) from the 4-byte magic number."""
    if len(magic) < 4:
        raise FileFormatError(f"{source}: not an IDX file: {len(magic)} bytes, shorter than the 4-byte magic number")
    zero0, zero1, code, ndim = magic[:4]
    if zero0 or zero1:
        raise FileFormatError(f"{source}: not an IDX file: magic number starts with 0x{zero0:02x} 0x{zero1:02x}, "
                              "expected 0x00 0x00")
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02x}" for c in IDX_DTYPES)
        raise FileFormatError(f"{source}: unknown IDX dtype code 0x{code:02x} (known: {known})")
    if ndim > MAX_NDIM:
        raise FileFormatError(f"{source}: IDX header announces {ndim} dimensions; at most {MAX_NDIM} are supported")
    return IDX_DTYPES[code], ndim


def _parse_dims(raw: bytes, dtype: np.dtype, source: str, max_bytes: int | None) -> tuple[int, ...]:
    """The dimensions, refused when their payload would exceed ``max_bytes`` (None: no limit)
    or NumPy's limits."""
    dims = struct.unpack(f">{len(raw) // 4}I", raw)
    claimed = math.prod(dims) * dtype.itemsize
    if max_bytes is not None and claimed > max_bytes:
        raise FileFormatError(f"{source}: IDX header claims dims {dims} of {_name(dtype)}, {claimed} payload bytes, "
                              f"more than the limit of {max_bytes} (read_idx's max_bytes); refused before reading")
    if math.prod(d for d in dims if d) * dtype.itemsize > np.iinfo(np.intp).max:
        raise FileFormatError(f"{source}: IDX dims {dims} are too large for an array")
    return dims


def _check_payload(dims: tuple[int, ...], dtype: np.dtype, actual: int, source: str, *, more: bool = False) -> None:
    """Raise unless ``actual`` payload bytes are exactly what ``dims`` need; ``more``: at least ``actual``."""
    expected = math.prod(dims) * dtype.itemsize
    what = f"dims {dims} of {_name(dtype)} need {expected} payload bytes"
    if actual < expected:
        raise FileFormatError(f"{source}: truncated IDX file: {what}, found {actual} ({expected - actual} missing)")
    if actual > expected:
        count = f"at least {actual - expected}" if more else f"{actual - expected}"
        raise FileFormatError(f"{source}: {count} trailing bytes after the IDX payload: {what}, found {actual}")


def _truncated_header(ndim: int, size: int, source: str) -> FileFormatError:
    return FileFormatError(f"{source}: truncated IDX header: {ndim} dimensions need {4 + 4 * ndim} bytes, "
                           f"the file has {size}")


def _name(dtype: np.dtype) -> str:
    return dtype.newbyteorder("=").name


def _read_content(stream: BinaryIO, source: str, max_bytes: int) -> bytes:
    """Header and payload from ``stream``, read no further than the header allows (plus up to
    ``_CHUNK`` bytes to count trailing data)."""
    magic = _read_up_to(stream, 4, source)
    dtype, ndim = _parse_magic(magic, source)
    dims_raw = _read_up_to(stream, 4 * ndim, source)
    if len(dims_raw) < 4 * ndim:
        raise _truncated_header(ndim, 4 + len(dims_raw), source)
    dims = _parse_dims(dims_raw, dtype, source, max_bytes)
    expected = math.prod(dims) * dtype.itemsize
    payload = _read_up_to(stream, expected + _CHUNK, source)
    more = len(payload) > expected and bool(_read_up_to(stream, 1, source))
    _check_payload(dims, dtype, len(payload), source, more=more)
    return magic + dims_raw + payload


def _read_up_to(stream: BinaryIO, n: int, source: str) -> bytes:
    """Up to ``n`` bytes of ``stream`` (fewer at its end), read in chunks; gzip errors become
    ``FileFormatError``."""
    parts: list[bytes] = []
    got = 0
    try:
        while got < n:
            part = stream.read(min(_CHUNK, n - got))
            if not part:
                break
            parts.append(part)
            got += len(part)
    except (EOFError, gz.BadGzipFile, zlib.error) as exc:
        raise FileFormatError(f"{source}: corrupt or truncated gzip stream ({exc})") from exc
    return b"".join(parts)
