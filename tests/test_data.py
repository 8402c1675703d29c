"""Host-side data: IDX reading and writing, dataset look-up and integrity, generated datasets.

No test touches the network: ``isolated`` points every search place at temporary directories
and makes ``pooch.retrieve`` fail the test unless a test replaces it.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import math
import os
import struct

import numpy as np
import pooch
import pytest
import requests

from mlp_xp.data import (
    Dataset,
    DatasetIntegrityError,
    DatasetNotFoundError,
    candidate_dirs,
    disc,
    find_files,
    load_dataset,
    load_idx_dir,
    read_idx,
    synthetic,
    train_val_split,
    write_idx,
)
from mlp_xp.data import datasets as datasets_module
from mlp_xp.data.idx import read_idx_bytes

FILES = datasets_module.FILES


# -- IDX files ---------------------------------------------------------------------------------

IDX_CASES = [
    (np.uint8, (5,)),
    (np.uint8, (4, 28, 28)),
    (np.int8, (3, 2)),
    (np.int16, (2, 3, 4)),
    (np.int32, (7,)),
    (np.float32, (3, 5)),
    (np.float64, (2, 2, 2, 2)),
    (np.uint8, (0, 3)),
]


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
@pytest.mark.parametrize(("dtype", "shape"), IDX_CASES, ids=[f"{np.dtype(d).name}-{s}" for d, s in IDX_CASES])
def test_idx_round_trip(tmp_path, dtype, shape, compress):
    rng = np.random.default_rng(0)
    array = (rng.normal(size=shape) * 100).astype(dtype)
    path = write_idx(tmp_path / "a.idx", array, gzip=compress)
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.dtype.isnative
    assert back.shape == shape
    np.testing.assert_array_equal(back, array)
    assert back.flags.writeable
    assert os.listdir(tmp_path) == ["a.idx"], "no temporary file may be left behind"


def test_idx_header_is_big_endian(tmp_path):
    path = write_idx(tmp_path / "a", np.array([[1, 2, 3]], dtype=np.int16))
    assert path.read_bytes() == bytes([0, 0, 0x0B, 2]) + struct.pack(">II", 1, 3) + struct.pack(">3h", 1, 2, 3)


def test_idx_compression_detected_by_content_not_name(tmp_path):
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    gz_named_raw = write_idx(tmp_path / "raw.gz", array, gzip=False)
    raw_named_gz = write_idx(tmp_path / "compressed-ubyte", array, gzip=True)
    assert raw_named_gz.read_bytes()[:2] == b"\x1f\x8b"
    np.testing.assert_array_equal(read_idx(gz_named_raw), array)
    np.testing.assert_array_equal(read_idx(raw_named_gz), array)


def test_idx_gzip_output_is_reproducible(tmp_path):
    array = np.arange(100, dtype=np.uint8)
    first = write_idx(tmp_path / "a.gz", array, gzip=True).read_bytes()
    assert write_idx(tmp_path / "b.gz", array, gzip=True).read_bytes() == first


def _idx_bytes(tmp_path, array) -> bytes:
    return write_idx(tmp_path / "src", array).read_bytes()


def test_idx_truncated_payload(tmp_path):
    data = _idx_bytes(tmp_path, np.zeros((2, 3), np.int32))
    bad = tmp_path / "short-ubyte"
    bad.write_bytes(data[:-1])
    message = r"truncated IDX file: dims \(2, 3\) of int32 need 24 payload bytes, found 23 \(1 missing\)"
    with pytest.raises(ValueError, match=message) as info:
        read_idx(bad)
    assert str(bad) in str(info.value)


def test_idx_truncated_gzip_stream(tmp_path):
    data = gzip.compress(_idx_bytes(tmp_path, np.arange(1000, dtype=np.int32)))
    bad = tmp_path / "cut.gz"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="corrupt or truncated gzip stream") as info:
        read_idx(bad)
    assert str(bad) in str(info.value)


def test_idx_trailing_bytes(tmp_path):
    bad = tmp_path / "long-ubyte"
    bad.write_bytes(gzip.compress(_idx_bytes(tmp_path, np.zeros(4, np.uint8)) + b"\x00\x00\x00"))
    with pytest.raises(ValueError, match=r"3 trailing bytes after the IDX payload: dims \(4,\) of uint8") as info:
        read_idx(bad)
    assert str(bad) in str(info.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x00", "shorter than the 4-byte magic number"),
        (b"\x01\x00\x08\x01" + struct.pack(">I", 1) + b"\x00", "magic number starts with 0x01 0x00, expected 0x00"),
        (b"\x00\x00\x07\x01" + struct.pack(">I", 1) + b"\x00", "unknown IDX dtype code 0x07"),
        (b"\x00\x00\x08\x03" + struct.pack(">II", 60000, 28), "truncated IDX header: 3 dimensions need 16 bytes"),
        (b"\x00\x00\x08\x02" + struct.pack(">II", 3, 4) + bytes(10), r"dims \(3, 4\) of uint8 need 12 payload bytes"),
    ],
    ids=["empty", "magic", "dtype-code", "header", "dims"],
)
def test_idx_malformed(tmp_path, content, message):
    bad = tmp_path / "bad-ubyte"
    bad.write_bytes(content)
    with pytest.raises(ValueError, match=message) as info:
        read_idx(bad)
    assert str(bad) in str(info.value)


def test_write_idx_rejects_unsupported_dtype(tmp_path):
    with pytest.raises(TypeError, match="IDX cannot store dtype int64; supported: uint8, int8"):
        write_idx(tmp_path / "a", np.arange(3))
    assert os.listdir(tmp_path) == []


def test_write_idx_is_atomic(tmp_path, monkeypatch):
    path = write_idx(tmp_path / "a", np.arange(3, dtype=np.uint8))
    before = path.read_bytes()

    def fail(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        write_idx(path, np.arange(5, dtype=np.uint8))
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["a"]


def test_write_idx_writes_through_a_symlink_and_keeps_the_mode(tmp_path):
    target = tmp_path / "target"
    target.write_bytes(b"old")
    target.chmod(0o640)
    link = tmp_path / "link"
    link.symlink_to(target)
    array = np.arange(3, dtype=np.uint8)
    assert write_idx(link, array) == link
    assert link.is_symlink() and os.readlink(link) == str(target)
    np.testing.assert_array_equal(read_idx(target), array)
    assert target.stat().st_mode & 0o777 == 0o640


# -- IDX datasets: tiny stand-ins for the real files ---------------------------------------------

N_TRAIN, N_TEST = 12, 6


def _tiny_arrays(name: str = "fashion-mnist") -> dict[str, np.ndarray]:
    """Tiny stand-ins of ``name``'s four files: mnist's differ in every file from fashion-mnist's,
    whose hashes ``isolated`` records (load_dataset refuses those for mnist)."""
    other = name != "fashion-mnist"
    rng = np.random.default_rng(42 + other)
    return {
        "train-images-idx3-ubyte": rng.integers(0, 256, (N_TRAIN, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": ((np.arange(N_TRAIN) + other) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (N_TEST, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": ((np.arange(N_TEST) + other) % 10).astype(np.uint8),
    }


def write_tiny(directory, *, compress=True, arrays=None, name="fashion-mnist"):
    """The four tiny files of ``name`` in ``directory`` (created), gzip-compressed if ``compress``."""
    directory.mkdir(parents=True, exist_ok=True)
    for base, array in (arrays or _tiny_arrays(name)).items():
        write_idx(directory / (f"{base}.gz" if compress else base), array, gzip=compress)
    return directory


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """Search places under ``tmp_path``, tiny sizes and hashes, and no network.

    Returns a dict of the places: ``env`` (not set; tests set ``$MLP_XP_DATA`` to it), ``cache``
    (the cache root) and ``system`` (stands for /usr/share/datasets).
    """
    places = {key: tmp_path / key for key in ("env", "cache", "system")}
    monkeypatch.delenv(datasets_module.DATA_ENV, raising=False)
    monkeypatch.setattr(datasets_module, "SYSTEM_DIR", places["system"])
    monkeypatch.setattr(datasets_module, "cache_dir", lambda name: places["cache"] / name)

    def no_network(*args, **kwargs):
        pytest.fail(f"unexpected download: {args} {kwargs}")

    monkeypatch.setattr(pooch, "retrieve", no_network)
    tiny_dir = write_tiny(tmp_path / "reference", compress=False)
    hashes = {base: hashlib.sha256((tiny_dir / base).read_bytes()).hexdigest() for base in FILES}
    sources = {
        "fashion-mnist": dataclasses.replace(datasets_module.SOURCES["fashion-mnist"], n_train=N_TRAIN,
                                             n_test=N_TEST, sha256=hashes),
        "mnist": dataclasses.replace(datasets_module.SOURCES["mnist"], n_train=N_TRAIN, n_test=N_TEST),
    }
    monkeypatch.setattr(datasets_module, "SOURCES", sources)
    return places


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
@pytest.mark.parametrize("name", ["fashion-mnist", "mnist"])
def test_load_from_data_dir(isolated, tmp_path, name, compress):
    directory = write_tiny(tmp_path / "mine", compress=compress, name=name)
    ds = load_dataset(name, directory)
    assert ds.name == name and ds.source == str(directory)
    assert ds.x_train.shape == (N_TRAIN, 784) and ds.x_test.shape == (N_TEST, 784)
    assert ds.x_train.dtype == ds.y_train.dtype == np.uint8
    assert ds.scale == pytest.approx(1 / 255) and ds.n_features == 784 and ds.n_classes == 10
    tiny = _tiny_arrays(name)
    np.testing.assert_array_equal(ds.x_train, tiny["train-images-idx3-ubyte"].reshape(N_TRAIN, 784))
    np.testing.assert_array_equal(ds.y_test, tiny["t10k-labels-idx1-ubyte"])
    expected_names = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                      "Ankle boot"] if name == "fashion-mnist" else [str(i) for i in range(10)]
    assert ds.class_names == expected_names


def test_candidate_dirs(isolated, tmp_path, monkeypatch):
    cache, system, env = isolated["cache"], isolated["system"], isolated["env"]
    assert candidate_dirs("mnist", None) == [cache / "mnist", system / "mnist"]
    monkeypatch.setenv("MLP_XP_DATA", str(env))
    assert candidate_dirs("mnist", None) == [env / "mnist", env, cache / "mnist", system / "mnist"]
    assert candidate_dirs("mnist", tmp_path / "d") == [tmp_path / "d" / "mnist", tmp_path / "d"]


def test_look_up_order(isolated, tmp_path, monkeypatch):
    name = "fashion-mnist"
    given = write_tiny(tmp_path / "given")
    env = write_tiny(isolated["env"] / name)
    cache = write_tiny(isolated["cache"] / name)
    system = write_tiny(isolated["system"] / name, compress=False)
    monkeypatch.setenv("MLP_XP_DATA", str(isolated["env"]))

    assert load_dataset(name, given).source == str(given)
    assert load_dataset(name).source == str(env)
    monkeypatch.delenv("MLP_XP_DATA")
    assert load_dataset(name).source == str(cache)
    for base in FILES[1:]:
        (cache / f"{base}.gz").unlink()
    assert find_files(name) == system
    assert load_dataset(name).source == str(system)


def test_env_dir_may_hold_the_files_directly(isolated, monkeypatch):
    env = write_tiny(isolated["env"], name="mnist")
    monkeypatch.setenv("MLP_XP_DATA", str(env))
    assert load_dataset("mnist").source == str(env)


def test_a_directory_of_fashion_mnist_is_refused_for_mnist(isolated, monkeypatch):
    """Fashion-MNIST has MNIST's file names, dtypes and shapes: its hashes tell them apart."""
    env = write_tiny(isolated["env"])
    monkeypatch.setenv("MLP_XP_DATA", str(env))
    assert load_dataset("fashion-mnist").source == str(env)
    for data_dir in (None, env):
        with pytest.raises(DatasetIntegrityError) as info:
            load_dataset("mnist", data_dir)
        message = str(info.value)
        assert f"{env}/train-images-idx3-ubyte.gz is fashion-mnist's train-images-idx3-ubyte, not mnist's" in message
        assert f"{env} holds fashion-mnist" in message and "--dataset fashion-mnist" in message


def test_a_directory_of_mnist_is_refused_for_fashion_mnist(isolated, tmp_path):
    directory = write_tiny(tmp_path / "digits", name="mnist")
    assert load_dataset("mnist", directory).source == str(directory)
    with pytest.raises(DatasetIntegrityError, match="train-images-idx3-ubyte.gz: the sha256 of its decompressed"):
        load_dataset("fashion-mnist", directory)


def test_a_directory_of_mnist_archives_is_refused_for_fashion_mnist(isolated, tmp_path, monkeypatch):
    """MNIST's decompressed hashes are not recorded: its published archive MD5s tell it apart."""
    directory = write_tiny(tmp_path / "digits", name="mnist")
    md5 = {base: hashlib.md5((directory / f"{base}.gz").read_bytes()).hexdigest() for base in FILES}
    sources = datasets_module.SOURCES
    monkeypatch.setitem(sources, "mnist", dataclasses.replace(sources["mnist"], md5=md5))
    assert load_dataset("mnist", directory).source == str(directory)
    with pytest.raises(DatasetIntegrityError) as info:
        load_dataset("fashion-mnist", directory)
    message = str(info.value)
    assert f"{directory}/train-images-idx3-ubyte.gz is mnist's train-images-idx3-ubyte, not fashion-mnist's" in message
    assert f"{directory} holds mnist" in message and "--dataset mnist" in message


def _truncate(path):
    path.write_bytes(path.read_bytes()[:-20])


@pytest.mark.parametrize(("load", "remedy"), [(lambda d: load_dataset("fashion-mnist", d), "replace or delete it"),
                                             (load_idx_dir, "replace it")], ids=["load_dataset", "load_idx_dir"])
def test_an_unreadable_file_is_an_integrity_error(isolated, tmp_path, load, remedy):
    directory = write_tiny(tmp_path / "mine")
    path = directory / "t10k-labels-idx1-ubyte.gz"
    _truncate(path)
    with pytest.raises(DatasetIntegrityError, match="corrupt or truncated gzip stream") as info:
        load(directory)
    assert str(path) in str(info.value) and str(info.value).endswith(remedy)


def _serve(mirror, calls):
    """A ``pooch.retrieve`` that copies the archive from ``mirror`` and records each file name."""
    def retrieve(url, known_hash, fname, path, downloader, **kwargs):
        calls.append(fname)
        (path / fname).write_bytes((mirror / fname).read_bytes())
        return str(path / fname)

    return retrieve


def test_a_corrupt_cached_archive_is_downloaded_again(isolated, tmp_path, monkeypatch):
    mirror = write_tiny(tmp_path / "mirror")
    cache = write_tiny(isolated["cache"] / "fashion-mnist")
    _truncate(cache / "t10k-labels-idx1-ubyte.gz")
    calls = []
    monkeypatch.setattr(pooch, "retrieve", _serve(mirror, calls))
    assert load_dataset("fashion-mnist").source == str(cache)
    assert calls == ["t10k-labels-idx1-ubyte.gz"]
    assert load_dataset("fashion-mnist").source == str(cache) and len(calls) == 1


def test_a_corrupt_cached_archive_names_the_remedy_without_download(isolated, monkeypatch):
    cache = write_tiny(isolated["cache"] / "fashion-mnist")
    path = cache / "train-images-idx3-ubyte.gz"
    _truncate(path)
    remedy = f"it is in mlp_xp's download cache: delete {path} to have it downloaded again"
    with pytest.raises(DatasetIntegrityError, match="corrupt or truncated gzip stream") as info:
        load_dataset("fashion-mnist", download=False)
    assert str(info.value).endswith(remedy)

    def offline(*args, **kwargs):
        raise requests.ConnectionError("no route to host")

    monkeypatch.setattr(pooch, "retrieve", offline)
    with pytest.raises(DatasetIntegrityError) as info:
        load_dataset("fashion-mnist")
    assert f"{remedy}. Downloading it again failed: ConnectionError: no route to host" in str(info.value)


def test_a_cached_archive_with_its_published_md5_is_not_downloaded_again(isolated, monkeypatch):
    cache = write_tiny(isolated["cache"] / "fashion-mnist")
    path = cache / "train-labels-idx1-ubyte.gz"
    _truncate(path)
    sources = datasets_module.SOURCES
    md5 = sources["fashion-mnist"].md5 | {"train-labels-idx1-ubyte": hashlib.md5(path.read_bytes()).hexdigest()}
    monkeypatch.setitem(sources, "fashion-mnist", dataclasses.replace(sources["fashion-mnist"], md5=md5))
    with pytest.raises(DatasetIntegrityError, match=f"{path}: corrupt or truncated gzip stream"):
        load_dataset("fashion-mnist")


def test_data_dirs_may_start_with_a_tilde(isolated, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    mine = write_tiny(tmp_path / "mine")
    assert load_idx_dir("~/mine").source == str(mine)
    assert load_dataset("fashion-mnist", "~/mine").source == str(mine)
    monkeypatch.setenv("MLP_XP_DATA", "~/mine")
    assert load_dataset("fashion-mnist").source == str(mine)


def test_data_dir_is_the_only_place_searched(isolated, tmp_path):
    write_tiny(isolated["system"] / "fashion-mnist")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetNotFoundError, match="Only data_dir is searched when given") as info:
        load_dataset("fashion-mnist", empty)
    searched = str(info.value).split("Searched:\n")[1].split("\nOnly data_dir")[0]
    assert searched == f"  {empty / 'fashion-mnist'} (does not exist)\n  {empty} (none of the four files)"


def test_not_found_without_download(isolated):
    with pytest.raises(DatasetNotFoundError, match="download=False"):
        load_dataset("fashion-mnist", download=False)


@pytest.mark.parametrize("error", [requests.ConnectionError("Failed to resolve host"), requests.Timeout("timed out")],
                         ids=["connection", "timeout"])
def test_offline_error_names_places_and_remedies(isolated, monkeypatch, error):
    def offline(*args, **kwargs):
        raise error

    monkeypatch.setattr(pooch, "retrieve", offline)
    (isolated["system"] / "fashion-mnist").mkdir(parents=True)
    write_idx(isolated["system"] / "fashion-mnist" / "train-images-idx3-ubyte.gz", np.zeros(1, np.uint8), gzip=True)
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("fashion-mnist")
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    assert f"{isolated['cache'] / 'fashion-mnist'} (none of the four files)" in message or \
        f"{isolated['cache'] / 'fashion-mnist'} (does not exist)" in message
    assert f"{isolated['system'] / 'fashion-mnist'} (missing train-labels-idx1-ubyte, " in message
    assert f"failed: {type(error).__name__}: {error}" in message
    assert "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/train-images-idx3-ubyte.gz" in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert "--data-dir DIR" in message and "MLP_XP_DATA=DIR" in message


def test_offline_mnist_has_no_apt_remedy(isolated, monkeypatch):
    def offline(*args, **kwargs):
        raise requests.ConnectionError("no route to host")

    monkeypatch.setattr(pooch, "retrieve", offline)
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("mnist")
    assert "apt-get" not in str(info.value) and "--data-dir DIR" in str(info.value)


def test_download_goes_to_cache_with_published_md5(isolated, tmp_path, monkeypatch):
    compressed = write_tiny(tmp_path / "mirror", name="mnist")
    calls = []

    def fake_retrieve(url, known_hash, fname, path, downloader, **kwargs):
        calls.append((url, known_hash))
        path.mkdir(parents=True, exist_ok=True)
        (path / fname).write_bytes((compressed / fname).read_bytes())
        return str(path / fname)

    monkeypatch.setattr(pooch, "retrieve", fake_retrieve)
    ds = load_dataset("mnist")
    assert ds.source == str(isolated["cache"] / "mnist")
    assert calls[0] == ("https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz",
                        "md5:f68b3c2dcbeaaa9fbdd348bbdeb94873")
    assert [url.rsplit("/", 1)[1] for url, _ in calls] == [f"{base}.gz" for base in FILES]


def test_download_checksum_mismatch(isolated, monkeypatch):
    def corrupt(*args, **kwargs):
        raise ValueError("MD5 hash of downloaded file (x) does not match the known hash: expected a but got b.")

    monkeypatch.setattr(pooch, "retrieve", corrupt)
    with pytest.raises(DatasetIntegrityError, match="train-images-idx3-ubyte.gz failed verification: MD5 hash"):
        load_dataset("fashion-mnist")


def test_on_disk_checksum_mismatch(isolated, tmp_path):
    arrays = _tiny_arrays()
    arrays["t10k-images-idx3-ubyte"][0, 0, 0] ^= 1
    directory = write_tiny(tmp_path / "bad", arrays=arrays)
    path = directory / "t10k-images-idx3-ubyte.gz"
    expected = datasets_module.SOURCES["fashion-mnist"].sha256["t10k-images-idx3-ubyte"]
    actual = hashlib.sha256(read_idx_bytes(path)).hexdigest()
    with pytest.raises(DatasetIntegrityError) as info:
        load_dataset("fashion-mnist", directory)
    message = str(info.value)
    assert str(path) in message and expected in message and actual in message
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("base", "array", "found"),
    [
        ("train-images-idx3-ubyte", np.zeros((N_TRAIN - 1, 28, 28), np.uint8), rf"uint8 \({N_TRAIN - 1}, 28, 28\)"),
        ("t10k-images-idx3-ubyte", np.zeros((N_TEST, 28, 27), np.uint8), rf"uint8 \({N_TEST}, 28, 27\)"),
        ("t10k-labels-idx1-ubyte", np.zeros(N_TEST, np.int16), rf"int16 \({N_TEST},\)"),
    ],
    ids=["rows", "image-shape", "dtype"],
)
def test_structure_is_checked_without_hashes(isolated, tmp_path, base, array, found):
    arrays = _tiny_arrays("mnist") | {base: array}
    directory = write_tiny(tmp_path / "odd", arrays=arrays)
    with pytest.raises(DatasetIntegrityError, match=rf"{base}.gz: expected uint8 of shape .* for mnist's {base}, "
                                                    rf"found {found}"):
        load_dataset("mnist", directory)


def test_labels_must_index_class_names(isolated, tmp_path):
    arrays = _tiny_arrays("mnist") | {"train-labels-idx1-ubyte": np.full(N_TRAIN, 10, np.uint8)}
    with pytest.raises(ValueError, match="y_train holds label 10, but there are 10 class names"):
        load_dataset("mnist", write_tiny(tmp_path / "odd", arrays=arrays))


def test_unknown_dataset():
    with pytest.raises(ValueError, match="unknown dataset 'cifar'; known: fashion-mnist, mnist"):
        load_dataset("cifar")


# -- Dataset, generated data, splits ----------------------------------------------------------

def test_dataset_validates_arrays():
    x, y = np.zeros((4, 3), np.uint8), np.zeros(4, np.uint8)
    with pytest.raises(ValueError, match=r"y_train must be uint8 of shape \(4,\)"):
        Dataset(x, y[:3], x, y, ["a", "b"], "t", "here")
    with pytest.raises(ValueError, match="x_test must be .* uint8 or float32, got float64"):
        Dataset(x, y, x.astype(np.float64), y, ["a", "b"], "t", "here")
    with pytest.raises(ValueError, match="differ in dtype or features"):
        Dataset(x, y, x[:, :2], y, ["a", "b"], "t", "here")


def test_synthetic_shapes_and_determinism():
    ds = synthetic(600, d=50, classes=4, seed=3, n_test=90)
    assert ds.x_train.shape == (600, 50) and ds.x_test.shape == (90, 50)
    assert ds.x_train.dtype == ds.y_train.dtype == np.uint8
    assert ds.scale == pytest.approx(1 / 255) and ds.n_classes == 4 and ds.class_names == ["0", "1", "2", "3"]
    np.testing.assert_array_equal(np.bincount(ds.y_train), [150] * 4)
    again = synthetic(600, d=50, classes=4, seed=3, n_test=90)
    for field in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(ds, field), getattr(again, field))
    assert not np.array_equal(synthetic(600, d=50, classes=4, seed=4, n_test=90).x_train, ds.x_train)
    assert synthetic(60).x_test.shape == (10, 784)


def test_synthetic_is_learnable():
    ds = synthetic(3000, seed=1)
    x_train, x_test = ds.x_train.astype(np.float32), ds.x_test.astype(np.float32)
    means = np.stack([x_train[ds.y_train == c].mean(axis=0) for c in range(ds.n_classes)])
    distances = (x_test**2).sum(1)[:, None] - 2 * x_test @ means.T + (means**2).sum(1)[None, :]
    accuracy = np.mean(distances.argmin(axis=1) == ds.y_test)
    assert accuracy > 0.85


def test_disc_balanced_and_consistent():
    ds = disc(20000, seed=5)
    assert ds.x_train.dtype == np.float32 and ds.x_train.shape == (20000, 2) and ds.x_test.shape == (20000 // 6, 2)
    assert ds.scale == 1.0 and ds.class_names == ["outside", "inside"]
    assert np.abs(ds.x_train).max() <= 1.0
    assert abs(ds.y_train.mean() - 0.5) < 0.02
    for x, y in ((ds.x_train, ds.y_train), (ds.x_test, ds.y_test)):
        inside = (x.astype(np.float64) ** 2).sum(axis=1) < 2 / math.pi
        np.testing.assert_array_equal(y, inside.astype(np.uint8))
    np.testing.assert_array_equal(disc(20000, seed=5).x_test, ds.x_test)


def test_disc_custom_radius():
    ds = disc(20000, radius=0.5, n_test=0)
    assert abs(ds.y_train.mean() - math.pi * 0.25 / 4) < 0.02
    assert ds.x_test.shape == (0, 2)


def test_train_val_split():
    x = np.arange(100, dtype=np.float32).reshape(50, 2)
    y = np.arange(50, dtype=np.uint8)
    (x_train, y_train), (x_val, y_val) = train_val_split(x, y, 10, seed=1)
    assert x_train.shape == (40, 2) and x_val.shape == (10, 2)
    np.testing.assert_array_equal(x_train[:, 0] // 2, y_train)
    np.testing.assert_array_equal(np.sort(np.concatenate([y_train, y_val])), y)
    assert np.all(np.diff(y_train) > 0) and np.all(np.diff(y_val) > 0)
    np.testing.assert_array_equal(train_val_split(x, y, 10, seed=1)[1][1], y_val)
    assert not np.array_equal(train_val_split(x, y, 10, seed=2)[1][1], y_val)


@pytest.mark.parametrize("n_val", [0, 50, -1])
def test_train_val_split_rejects_bad_sizes(n_val):
    with pytest.raises(ValueError, match="n_val must be between 1 and 49"):
        train_val_split(np.zeros((50, 2)), np.zeros(50), n_val)


# -- real data ---------------------------------------------------------------------------------

@pytest.mark.realdata
def test_fashion_mnist_on_disk(fashion_mnist):
    ds = fashion_mnist
    assert ds.x_train.shape == (60000, 784) and ds.x_test.shape == (10000, 784)
    assert ds.x_train.dtype == ds.x_test.dtype == ds.y_train.dtype == ds.y_test.dtype == np.uint8
    assert ds.y_train.min() == 0 and ds.y_train.max() == 9
    np.testing.assert_array_equal(np.bincount(ds.y_train), [6000] * 10)
    np.testing.assert_array_equal(np.bincount(ds.y_test), [1000] * 10)
    assert ds.class_names[0] == "T-shirt/top" and ds.class_names[9] == "Ankle boot"
    assert 0 < ds.x_train.mean() < 255
