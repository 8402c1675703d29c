"""Every reader fuzzed: whatever the bytes, a valid result or ``FileFormatError`` naming the file.

Readers: ``read_idx`` on raw and gzip files, ``load_idx_dir`` (four IDX files to a ``Dataset``)
and ``load_checkpoint``. Inputs are arbitrary bytes and mutations of valid files (byte flips,
truncation, insertion, deletion, header words set to extreme values), drawn by hypothesis.

The run is bounded for CI: ``EXAMPLES`` per test, all fuzzing together well under a minute on one
core. ``MLP_XP_FUZZ_SCALE=20`` multiplies the examples for a longer local campaign. Each example
runs under ``hang_guard`` (SIGALRM): a reader stuck for ``HANG_SECONDS`` fails the test.

Every crash the fuzzer found has its own regression test at the end of this file.
"""

from __future__ import annotations

import contextlib
import gzip
import math
import os
import signal
import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mlp_xp
from mlp_xp.data import load_idx_dir, read_idx, write_idx
from mlp_xp.data.datasets import FILES, DatasetIntegrityError
from mlp_xp.errors import FileFormatError

SCALE = float(os.environ.get("MLP_XP_FUZZ_SCALE", "1"))
EXAMPLES = {"idx-bytes": 300, "idx-crafted": 400, "idx-raw": 300, "idx-gzip": 300, "idx-dir": 200, "checkpoint": 200}
HANG_SECONDS = 10
IDX_DTYPES = (np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64)
IDX_CODES = (0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E)
INTERESTING_WORDS = (0, 1, 2, 3, 255, 256, 2**16, 2**24, 2**31 - 1, 2**31, 2**32 - 1)


def fuzz(name: str):
    """Hypothesis settings of one fuzz test: a bounded number of examples, no per-example deadline
    (``hang_guard`` catches hangs), no health check against a shared temporary directory."""
    return settings(
        max_examples=max(1, int(EXAMPLES[name] * SCALE)),
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


@contextlib.contextmanager
def hang_guard(seconds: int = HANG_SECONDS):
    """Fail the example when the code inside runs longer than ``seconds`` (a hang, not a timing)."""

    def hung(signum, frame):
        raise AssertionError(f"reader still running after {seconds} s: a hang")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# -- inputs ------------------------------------------------------------------------------------


@st.composite
def idx_arrays(draw) -> np.ndarray:
    """Small arrays of every IDX dtype, 1 to 4 dimensions, some of them empty."""
    dtype = draw(st.sampled_from(IDX_DTYPES))
    shape = draw(st.lists(st.integers(0, 5), min_size=1, max_size=4))
    seed = draw(st.integers(0, 2**16))
    values = np.random.default_rng(seed).normal(scale=100, size=shape)
    return values.astype(dtype)


@st.composite
def mutations(draw, base: bytes) -> bytes:
    """``base`` with 1 to 4 edits: flip, set, truncate, insert, delete, or a 4-byte word of the
    header set to an extreme value (dimension counts, sizes)."""
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(("flip", "set", "truncate", "insert", "delete", "word")))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and data:
            data[at] = draw(st.integers(0, 255))
        elif kind == "truncate":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 16))]
        elif kind == "word":
            word = 4 * draw(st.integers(0, 4))
            data[word : word + 4] = struct.pack(">I", draw(st.sampled_from(INTERESTING_WORDS)))
    return bytes(data)


ANY_CODE = st.sampled_from(IDX_CODES) | st.integers(0, 255)
MOSTLY_UINT8 = st.sampled_from((0x08, 0x08, 0x08, 0x09)) | st.integers(0, 255)


@st.composite
def crafted_idx(draw, codes=ANY_CODE) -> bytes:
    """IDX-shaped bytes: a magic number with any dtype code and 0 to 255 dimensions, dimensions
    small or extreme, and a payload of exactly the announced size, one byte short or one long
    (random bytes of modest length where the announced size is huge)."""
    code = draw(codes)
    ndim = draw(st.integers(0, 4) | st.integers(0, 255))
    dims = draw(st.lists(st.integers(0, 5) | st.sampled_from(INTERESTING_WORDS), min_size=ndim, max_size=ndim))
    itemsize = dict(zip(IDX_CODES, (1, 1, 2, 4, 4, 8))).get(code, 1)
    claimed = math.prod(dims) * itemsize
    size = claimed + draw(st.sampled_from((0, 0, -1, 1))) if claimed <= 4096 else draw(st.integers(0, 64))
    payload = draw(st.binary(min_size=max(0, size), max_size=max(0, size)))
    return bytes([0, 0, code, ndim]) + struct.pack(f">{ndim}I", *dims) + payload


def idx_content(array: np.ndarray) -> bytes:
    """The IDX bytes of ``array`` (what ``write_idx`` writes, uncompressed)."""
    code = {np.dtype(d): c for c, d in zip(IDX_CODES, IDX_DTYPES)}[array.dtype]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    """One directory for all examples of the module (each example overwrites its files)."""
    return tmp_path_factory.mktemp("fuzz")


def read_or_refuse(path: Path, content: bytes) -> np.ndarray | None:
    """``read_idx(path)``: an array whose IDX bytes are exactly ``content``, or None after a
    ``FileFormatError`` that names the file; anything else fails the test."""
    with hang_guard():
        try:
            array = read_idx(path)
        except FileFormatError as exc:
            assert str(path) in str(exc)
            return None
    assert isinstance(array, np.ndarray) and array.dtype.isnative
    assert idx_content(array) == content, "read_idx returned an array that the file does not hold"
    return array


# -- IDX ---------------------------------------------------------------------------------------


@fuzz("idx-bytes")
@given(prefix=st.sampled_from((b"", b"\x00\x00\x08", b"\x00\x00\x0d\x02", b"\x00\x00\x08\x01")),
       tail=st.binary(max_size=300))
def test_idx_reader_on_arbitrary_bytes(scratch, prefix, tail):
    content = prefix + tail
    path = scratch / "any-ubyte"
    path.write_bytes(content)
    read_or_refuse(path, content)


@fuzz("idx-crafted")
@given(content=crafted_idx(), compress=st.booleans())
def test_idx_reader_on_crafted_headers(scratch, content, compress):
    path = scratch / ("crafted-ubyte.gz" if compress else "crafted-ubyte")
    path.write_bytes(gzip.compress(content, mtime=0) if compress else content)
    read_or_refuse(path, content)


@fuzz("idx-raw")
@given(data=st.data(), array=idx_arrays())
def test_idx_reader_on_mutated_raw_files(scratch, data, array):
    content = data.draw(mutations(idx_content(array)))
    path = scratch / "raw-ubyte"
    path.write_bytes(content)
    read_or_refuse(path, content)


@fuzz("idx-gzip")
@given(data=st.data(), array=idx_arrays(), mutate_stream=st.booleans())
def test_idx_reader_on_mutated_gzip_files(scratch, data, array, mutate_stream):
    """Either the IDX content is mutated and then compressed (valid gzip, bad IDX), or a valid
    file's compressed stream is mutated (bad gzip)."""
    content = idx_content(array)
    if mutate_stream:
        stream = data.draw(mutations(gzip.compress(content, mtime=0)))
    else:
        content = data.draw(mutations(content))
        stream = gzip.compress(content, mtime=0)
    path = scratch / "ubyte.gz"
    path.write_bytes(stream)
    try:
        content = gzip.decompress(stream)
    except Exception:  # noqa: BLE001 - an undecodable stream must be refused
        content = None
    array = read_or_refuse(path, content if content is not None else b"\x00unreadable")
    if content is None:
        assert array is None, "read_idx returned an array from a stream gzip itself rejects"


@fuzz("idx-dir")
@given(data=st.data(), victim=st.sampled_from(FILES), compress=st.booleans(), craft=st.booleans())
def test_load_idx_dir_on_one_mutated_file(scratch, data, victim, compress, craft):
    """Three valid files and one mutated or crafted (uint8 mostly) one: a consistent Dataset or a
    FileFormatError naming the directory."""
    directory = scratch / "idx-dir"
    directory.mkdir(exist_ok=True)
    for stale in directory.iterdir():
        stale.unlink()
    arrays = _tiny_idx_set()
    for base, array in arrays.items():
        write_idx(directory / base, array)
    if craft:
        content = data.draw(crafted_idx(MOSTLY_UINT8))
    else:
        content = data.draw(mutations(idx_content(arrays[victim])))
    target = directory / (f"{victim}.gz" if compress else victim)
    (directory / victim).unlink()
    target.write_bytes(gzip.compress(content, mtime=0) if compress else content)
    with hang_guard():
        try:
            dataset = load_idx_dir(directory)
        except FileFormatError as exc:
            assert str(directory) in str(exc)
            return
    assert len(dataset.x_train) == len(dataset.y_train) and len(dataset.x_test) == len(dataset.y_test)
    assert dataset.x_train.shape[1] == dataset.x_test.shape[1]
    assert int(max(dataset.y_train.max(initial=0), dataset.y_test.max(initial=0))) < dataset.n_classes


def _tiny_idx_set() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "train-images-idx3-ubyte": rng.integers(0, 256, (6, 3, 3), dtype=np.uint8),
        "train-labels-idx1-ubyte": np.array([0, 1, 2, 0, 1, 2], dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (3, 3, 3), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": np.array([2, 1, 0], dtype=np.uint8),
    }


# -- checkpoints -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoint_bytes(scratch) -> bytes:
    backend = mlp_xp.get_backend("numpy")
    model = mlp_xp.make_mlp(4, [3], 2, batchnorm=True).init(backend, seed=0)
    path = mlp_xp.save_checkpoint(scratch / "valid.ckpt", model, mlp_xp.Adam(model, 1e-3), epoch=1)
    return path.read_bytes()


@fuzz("checkpoint")
@given(data=st.data())
def test_checkpoint_reader_on_mutated_files(scratch, checkpoint_bytes, data, request):
    if checkpoint_bytes[:2] == b"PK":
        request.applymarker(
            pytest.mark.xfail(
                strict=True,
                reason="finding for the export issue: the .npz reader (numpy.load + zipfile) lets "
                "zipfile.BadZipFile (truncated or corrupt archive), NotImplementedError (a mutated "
                "compression method) and EOFError escape instead of FileFormatError",
            )
        )
    content = data.draw(mutations(checkpoint_bytes))
    path = scratch / "mutated.ckpt"
    path.write_bytes(content)
    with hang_guard():
        try:
            checkpoint = mlp_xp.load_checkpoint(path)
        except ValueError as exc:  # FileFormatError and the rest of the ValueError family
            assert str(path) in str(exc)
            return
    assert isinstance(checkpoint.meta, dict) and checkpoint.model


# -- regression tests: one per crash the fuzzer found ------------------------------------------


def test_header_of_ten_to_the_twelve_items_is_refused_before_allocating(tmp_path):
    """A gzip file whose header claims 10**12 uint8 items over a few megabytes of zeros."""
    path = tmp_path / "bomb-ubyte.gz"
    path.write_bytes(gzip.compress(b"\x00\x00\x08\x02" + struct.pack(">II", 10**6, 10**6) + bytes(4 << 20)))
    tracemalloc.start()
    try:
        with pytest.raises(FileFormatError, match=r"claims dims \(1000000, 1000000\) of uint8.*refused") as info:
            read_idx(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert str(path) in str(info.value)
    assert peak < 16 << 20, f"{peak} bytes allocated to refuse a header"


def test_gzip_stream_is_decompressed_no_further_than_its_header_promises(tmp_path):
    """A valid header for 4 items followed by 64 MB of zeros in the gzip stream (a zip bomb)."""
    path = tmp_path / "long-ubyte.gz"
    path.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + struct.pack(">I", 4) + bytes(64 << 20)))
    tracemalloc.start()
    try:
        with pytest.raises(FileFormatError, match="at least 1048576 trailing bytes after the IDX payload"):
            read_idx(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, f"{peak} bytes allocated for a 4-byte payload"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x00\x00\x08\x28" + bytes(4 * 40), "announces 40 dimensions; at most 32"),
        (b"\x00\x00\x08\x03" + struct.pack(">III", 0, 2**32 - 1, 2**32 - 1), "too large for an array"),
    ],
    ids=["ndim-40", "empty-but-huge"],
)
def test_headers_numpy_cannot_represent_are_format_errors(tmp_path, content, message):
    path = tmp_path / "odd-ubyte"
    path.write_bytes(content)
    with pytest.raises(FileFormatError, match=message) as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_gzip_with_trailing_garbage_is_a_format_error(tmp_path):
    path = tmp_path / "garbage-ubyte.gz"
    path.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + struct.pack(">I", 2) + b"ab") + b"garbage")
    with pytest.raises(FileFormatError, match="corrupt or truncated gzip stream") as info:
        read_idx(path)
    assert str(path) in str(info.value)


TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS = FILES
U8 = np.uint8


@pytest.mark.parametrize(
    ("replace", "message"),
    [
        ({TRAIN_IMAGES: np.array(7, U8)}, "train-images-idx3-ubyte: images must have a sample dimension"),
        ({TRAIN_LABELS: np.zeros((6, 1), U8)}, r"train-labels-idx1-ubyte: labels must be 1-D, found shape \(6, 1\)"),
        ({TEST_LABELS: np.zeros(2, U8)}, "t10k-labels-idx1-ubyte: 3 test images but 2 labels"),
        ({TRAIN_IMAGES: np.zeros((0, 3, 3), U8), TRAIN_LABELS: np.zeros(0, U8)}, "no training samples"),
        ({TRAIN_IMAGES: np.zeros((6, 0, 3), U8), TEST_IMAGES: np.zeros((3, 0), U8)}, r"\(0, 3\) hold no pixels"),
        ({TEST_IMAGES: np.zeros((3, 4), U8)}, "t10k-images-idx3-ubyte: 9 features per training image but 4"),
    ],
    ids=["0-d-images", "2-d-labels", "count-mismatch", "empty-train", "no-pixels", "feature-mismatch"],
)
def test_load_idx_dir_structure_errors_name_the_file(tmp_path, replace, message):
    """Found by the fuzzer: a 0-d image file (TypeError), empty label files (NumPy's bare
    "zero-size array to reduction"), images without pixels (NumPy's bare reshape error)."""
    for base, value in {**_tiny_idx_set(), **replace}.items():
        write_idx(tmp_path / base, value)
    with pytest.raises(DatasetIntegrityError, match=message) as info:
        load_idx_dir(tmp_path)
    assert isinstance(info.value, FileFormatError) and str(tmp_path) in str(info.value)
