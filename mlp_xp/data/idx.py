"""Read and write IDX files, the format of MNIST and Fashion-MNIST.

An IDX file is a 4-byte magic number ``0x00 0x00 <dtype code> <ndim>``, then ``ndim``
big-endian uint32 dimensions, then the C-order payload of ``prod(dims)`` big-endian items.
Files may be gzip-compressed; compression is recognised by the gzip magic bytes, never by the
file name. Reading validates the header and that the payload size matches the dimensions
exactly, and raises ``ValueError`` naming the file and what is wrong. Arrays come back in
native byte order and writable.
"""

from __future__ import annotations

import gzip as gz
import math
import os
import secrets
import struct
import zlib
from pathlib import Path

import numpy as np

__all__ = ["IDX_DTYPES", "read_idx", "read_idx_bytes", "parse_idx", "write_idx"]

IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
"""IDX dtype code -> big-endian NumPy dtype of the payload."""

_CODES = {dtype.newbyteorder("="): code for code, dtype in IDX_DTYPES.items()}
_GZIP_MAGIC = b"\x1f\x8b"
_MAX_DIM = 2**32 - 1


def read_idx_bytes(path: str | os.PathLike) -> bytes:
    """The whole IDX content of ``path`` (header and payload), decompressed if it is gzip."""
    data = Path(path).read_bytes()
    if data[:2] != _GZIP_MAGIC:
        return data
    try:
        return gz.decompress(data)
    except (EOFError, gz.BadGzipFile, zlib.error) as exc:
        raise ValueError(f"{path}: corrupt or truncated gzip stream ({exc})") from exc


def parse_idx(data: bytes, source: str = "<bytes>") -> np.ndarray:
    """The array held by the IDX content ``data``; ``source`` names it in error messages.

    Returns an array of shape ``dims`` in the native byte order of the header's dtype.
    """
    if len(data) < 4:
        raise ValueError(f"{source}: not an IDX file: {len(data)} bytes, shorter than the 4-byte magic number")
    zero0, zero1, code, ndim = data[:4]
    if zero0 or zero1:
        raise ValueError(f"{source}: not an IDX file: magic number starts with 0x{zero0:02x} 0x{zero1:02x}, "
                         "expected 0x00 0x00")
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02x}" for c in IDX_DTYPES)
        raise ValueError(f"{source}: unknown IDX dtype code 0x{code:02x} (known: {known})")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{source}: truncated IDX header: {ndim} dimensions need {header} bytes, "
                         f"the file has {len(data)}")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    dtype = IDX_DTYPES[code]
    expected = math.prod(dims) * dtype.itemsize
    actual = len(data) - header
    what = f"dims {dims} of {dtype.newbyteorder('=').name} need {expected} payload bytes"
    if actual < expected:
        raise ValueError(f"{source}: truncated IDX file: {what}, found {actual} ({expected - actual} missing)")
    if actual > expected:
        raise ValueError(f"{source}: {actual - expected} trailing bytes after the IDX payload: {what}, found {actual}")
    flat = np.frombuffer(data, dtype=dtype, count=math.prod(dims), offset=header)
    return flat.astype(dtype.newbyteorder("=")).reshape(dims)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """The array stored in the IDX file ``path`` (raw or gzip); see ``parse_idx``."""
    return parse_idx(read_idx_bytes(path), str(path))


def write_idx(path: str | os.PathLike, array: np.ndarray, *, gzip: bool = False) -> Path:
    """Write ``array`` to ``path`` as IDX, gzip-compressed if ``gzip``; return the path.

    Supported dtypes: uint8, int8, int16, int32, float32, float64; at most 255 dimensions, each
    below 2**32. The file appears atomically: the content goes to a temporary file in the same
    directory, which then replaces ``path``. Compressed output is reproducible (mtime 0).
    """
    path = Path(path)
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
    _write_atomic(path, content)
    return path


def _write_atomic(path: Path, content: bytes) -> None:
    """Write ``content`` to a new temporary file beside ``path``, then rename it onto ``path``."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "xb") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
