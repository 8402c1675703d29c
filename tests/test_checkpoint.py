"""Checkpoints: safetensors round trips on every backend, the header any reader shows, atomic
writes, format-1 ``.npz`` files read-only, and one ``FileFormatError`` for every bad file."""

from __future__ import annotations

import io
import json
import os
import pickle
import struct
import zipfile

import numpy as np
import pytest
import safetensors.numpy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors import safe_open

import mlp_xp
from mlp_xp.checkpoint import FORMAT, NPZ_FORMAT, LegacyCheckpointWarning, layer_list
from mlp_xp.cli import main
from mlp_xp.errors import FileFormatError

MODEL_CONFIG = {"in_features": 12, "hidden": [8], "out_features": 3, "batchnorm": True, "dropout": 0.1}


def _trained(backend, steps=2, seed=0):
    """A small BatchNorm MLP and its Adam optimizer after ``steps`` updates (state in every slot)."""
    model = mlp_xp.make_mlp(**MODEL_CONFIG).init(backend, seed=seed)
    optimizer = mlp_xp.Adam(model, 1e-2)
    rng = np.random.default_rng(seed)
    x = backend.asarray(rng.standard_normal((16, 12)).astype(np.float32))
    y = backend.asarray(rng.integers(0, 3, 16), "int64")
    loss = mlp_xp.SoftmaxCrossEntropy()
    for _ in range(steps):
        loss.forward(model.forward(x), y)
        model.backward(loss.backward())
        optimizer.step()
    return model, optimizer, x


def _save(path, backend=None, **kwargs):
    model, optimizer, _ = _trained(backend or mlp_xp.get_backend("numpy"))
    kwargs = {"epoch": 2, "config": {"dataset": "synthetic"}, "model_config": MODEL_CONFIG, **kwargs}
    return mlp_xp.save_checkpoint(path, model, optimizer, **kwargs)


def test_round_trip_gives_identical_predictions_and_optimizer_state(tmp_path, backend):
    model, optimizer, x = _trained(backend)
    mlp_xp.save_checkpoint(tmp_path / "run.safetensors", model, optimizer, epoch=1, config={"note": "test"})

    other = mlp_xp.make_mlp(**MODEL_CONFIG).init(backend, seed=99)
    other_optimizer = mlp_xp.Adam(other, 1e-2)
    checkpoint = mlp_xp.load_checkpoint(tmp_path / "run.safetensors")
    mlp_xp.restore(checkpoint, other, other_optimizer)
    assert checkpoint.meta["epoch"] == 1 and checkpoint.meta["config"] == {"note": "test"}
    model.eval(), other.eval()
    np.testing.assert_array_equal(backend.to_numpy(other.forward(x)), backend.to_numpy(model.forward(x)))
    assert other_optimizer.steps == optimizer.steps == 2
    saved = optimizer.state_arrays()
    assert saved and set(other_optimizer.state_arrays()) == set(saved)
    for key, value in saved.items():
        np.testing.assert_array_equal(backend.to_numpy(other_optimizer.state_arrays()[key]), backend.to_numpy(value))


def test_fit_resumed_from_a_checkpoint_equals_the_uninterrupted_run_with_dropout(tmp_path, backend):
    """Dropout restarts its masks every epoch at a stream of its seed and the epoch, so a run
    saved after epoch 1 and resumed by a new process (a new model built with the same seed,
    the checkpoint restored) draws the masks the uninterrupted run drew: the same weights;
    compiled too, where the backend compiles (the masks' key is step state there)."""
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((200, 12)).astype(np.float32), rng.integers(0, 3, 200)
    loss = mlp_xp.SoftmaxCrossEntropy(check_labels=False)

    def run(epochs, start_epoch=0, checkpoint=None, compile=False):
        model = mlp_xp.make_mlp(**MODEL_CONFIG).init(backend, seed=0)
        optimizer = mlp_xp.SGD(model, lr=0.1, momentum=0.9)
        if checkpoint is not None:
            mlp_xp.restore(mlp_xp.load_checkpoint(checkpoint), model, optimizer)
        loader = mlp_xp.DeviceLoader(x, y, backend, batch_size=32, num_classes=3, seed=0)
        mlp_xp.fit(
            model, loss, optimizer, loader, epochs=epochs, start_epoch=start_epoch, progress=False, log=None,
            compile=compile,
        )
        return model, optimizer

    for compile in (False, True) if backend.compiles else (False,):
        straight, _ = run(3, compile=compile)
        model, optimizer = run(1, compile=compile)
        mlp_xp.save_checkpoint(tmp_path / "run.safetensors", model, optimizer, epoch=1)
        resumed, _ = run(3, start_epoch=1, checkpoint=tmp_path / "run.safetensors", compile=compile)
        for key, value in straight.state().items():
            got = backend.to_numpy(resumed.state()[key])
            np.testing.assert_array_equal(got, backend.to_numpy(value), err_msg=f"{key}, compile={compile}")


def test_any_safetensors_reader_shows_tensors_and_metadata(tmp_path, numpy_backend):
    model, optimizer, _ = _trained(numpy_backend)
    path = mlp_xp.save_checkpoint(tmp_path / "run.safetensors", model, optimizer, epoch=3, history=[{"epoch": 1}])
    with safe_open(path, framework="np") as f:
        metadata, names = f.metadata(), set(f.keys())
        weight = f.get_tensor("model/hidden1.weight")
    assert metadata["format"] == FORMAT and metadata["dtype"] == "float32" and metadata["epoch"] == "3"
    assert json.loads(metadata["layers"]) == layer_list(model)
    assert json.loads(metadata["optimizer"]) == {"type": "Adam", "steps": 2, "lr": 1e-2}
    assert json.loads(metadata["history"]) == [{"epoch": 1}]
    assert names == {f"model/{k}" for k in model.state()} | {f"optimizer/{k}" for k in optimizer.state_arrays()}
    np.testing.assert_array_equal(weight, model.parameters()["hidden1.weight"])


def test_plain_sgd_restores_its_step_count_and_refuses_another_optimizer(tmp_path, numpy_backend):
    """SGD without momentum keeps no arrays, yet its step count and type are part of the run."""
    model = mlp_xp.make_mlp(**MODEL_CONFIG).init(numpy_backend)
    optimizer = mlp_xp.SGD(model, 0.1)
    optimizer.steps = 7
    mlp_xp.save_checkpoint(tmp_path / "sgd.safetensors", model, optimizer, epoch=1)
    checkpoint = mlp_xp.load_checkpoint(tmp_path / "sgd.safetensors")
    assert not checkpoint.optimizer
    again = mlp_xp.make_mlp(**MODEL_CONFIG).init(numpy_backend)
    resumed = mlp_xp.SGD(again, 0.1)
    mlp_xp.restore(checkpoint, again, resumed)
    assert resumed.steps == 7
    with pytest.raises(ValueError, match="checkpoint holds SGD state; cannot load it into Adam"):
        mlp_xp.restore(checkpoint, again, mlp_xp.Adam(again, 1e-3))


def test_other_architecture_says_what_differs(tmp_path, numpy_backend):
    model = mlp_xp.make_mlp(24, [16], 4).init(numpy_backend)
    mlp_xp.save_checkpoint(tmp_path / "a.safetensors", model, epoch=0)
    other = mlp_xp.make_mlp(24, [32], 4).init(numpy_backend)
    with pytest.raises(
        ValueError, match=r"layer 0: checkpoint has 'hidden1: Linear\(24, 16\)', model has 'hidden1: Linear\(24, 32\)'"
    ):
        mlp_xp.restore(mlp_xp.load_checkpoint(tmp_path / "a.safetensors"), other)


def test_batchnorm_of_another_eps_or_momentum_is_another_architecture(tmp_path, numpy_backend):
    """eps and momentum change what BatchNorm computes: a checkpoint keeps them and checks them."""
    model = mlp_xp.Sequential(mlp_xp.Linear(6, 4), mlp_xp.BatchNorm(4, eps=1e-3, momentum=0.3)).init(numpy_backend)
    mlp_xp.save_checkpoint(tmp_path / "a.safetensors", model, epoch=0)
    checkpoint = mlp_xp.load_checkpoint(tmp_path / "a.safetensors")
    same = mlp_xp.Sequential(mlp_xp.Linear(6, 4), mlp_xp.BatchNorm(4, eps=1e-3, momentum=0.3)).init(numpy_backend)
    mlp_xp.restore(checkpoint, same)
    default = mlp_xp.Sequential(mlp_xp.Linear(6, 4), mlp_xp.BatchNorm(4)).init(numpy_backend)
    saved = r"'batchnorm1: BatchNorm\(4, eps=0.001, momentum=0.3\)'"
    with pytest.raises(ValueError, match=rf"checkpoint has {saved}, model has 'batchnorm1: BatchNorm\(4\)'"):
        mlp_xp.restore(checkpoint, default)


def test_write_is_atomic(tmp_path, numpy_backend, monkeypatch):
    path = _save(tmp_path / "run.safetensors")
    before = path.read_bytes()

    def full_disk(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", full_disk)  # after the new bytes were written to the temporary file
    with pytest.raises(OSError, match="disk full"):
        _save(path, epoch=3)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["run.safetensors"]


# -- format-1 .npz checkpoints: read-only, with a note --------------------------------------------


def _write_npz(path, model, optimizer, meta_format=NPZ_FORMAT):
    """A checkpoint as mlp_xp wrote it before safetensors (format 1)."""
    arrays = {f"model/{k}": np.asarray(v) for k, v in model.state().items()}
    arrays.update({f"optimizer/{k}": np.asarray(v) for k, v in optimizer.state_arrays().items()})
    meta = {
        "format": meta_format,
        "epoch": 4,
        "partial": False,
        "dtype": "float32",
        "layers": layer_list(model),
        "config": {"dataset": "synthetic"},
        "model_config": MODEL_CONFIG,
        "history": [],
        "optimizer": {"type": "Adam", "steps": optimizer.steps, "lr": optimizer.lr},
    }
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(path, **arrays)
    return path


def test_npz_checkpoint_still_loads_with_a_note(tmp_path, numpy_backend):
    model, optimizer, x = _trained(numpy_backend)
    path = _write_npz(tmp_path / "old.npz", model, optimizer)
    with pytest.warns(LegacyCheckpointWarning, match="format-1 .npz checkpoint: it loads read-only"):
        checkpoint = mlp_xp.load_checkpoint(path)
    other = mlp_xp.make_mlp(**MODEL_CONFIG).init(numpy_backend, seed=5)
    other_optimizer = mlp_xp.Adam(other, 1e-2)
    mlp_xp.restore(checkpoint, other, other_optimizer)
    model.eval(), other.eval()
    np.testing.assert_array_equal(other.forward(x), model.forward(x))
    assert checkpoint.meta["epoch"] == 4 and other_optimizer.steps == 2


# -- one clear error for every bad file ------------------------------------------------------------


def _header_length(data: bytes) -> int:
    return struct.unpack("<Q", data[:8])[0]


def _with_header(data: bytes, edit) -> bytes:
    """``data`` with its JSON header passed through ``edit`` (same tensor bytes)."""
    length = _header_length(data)
    header = edit(json.loads(data[8 : 8 + length]))
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data[8 + length :]


def _shape_of(name, shape):
    def edit(header):
        header[name]["shape"] = shape
        return header

    return edit


def _metadata(key, value):
    def edit(header):
        header["__metadata__"][key] = value
        return header

    return edit


BAD_FILES = {
    "empty file": (lambda good: b"", r"0 bytes, fewer than the 8-byte header length"),
    "truncated in the header": (lambda good: good[:100], r"header length field says \d+ bytes but 92 bytes follow"),
    "truncated in the tensors": (lambda good: good[:-10], r"truncated file"),
    "trailing bytes": (lambda good: good + b"\0" * 4, r"4 trailing bytes"),
    "header length too short": (
        lambda good: struct.pack("<Q", _header_length(good) - 40) + good[8:],
        r"header is not JSON",
    ),
    "header length too long": (
        lambda good: struct.pack("<Q", _header_length(good) + 16) + good[8:],
        r"header is not JSON",
    ),
    "header length huge": (lambda good: struct.pack("<Q", 2**62) + good[8:], r"header length field says"),
    "a pickle": (lambda good: pickle.dumps({"model": [1.0, 2.0]}), r"is a Python pickle"),
    "random bytes": (lambda good: bytes(range(256)) * 4, r"not a safetensors file"),
    "shape that does not fit the bytes": (
        lambda good: _with_header(good, _shape_of("model/hidden1.weight", [12, 7])),
        r"tensor 'model/hidden1.weight' of shape \(12, 7\) and dtype F32 needs 336 bytes, but .* span 384",
    ),
    "negative dimension": (
        lambda good: _with_header(good, _shape_of("model/hidden1.bias", [-8])),
        r"not a list of non-negative integers",
    ),
    "unknown dtype": (
        lambda good: _with_header(good, lambda h: {**h, "model/bn1.beta": {**h["model/bn1.beta"], "dtype": "X9"}}),
        r"has dtype 'X9'",
    ),
    "not a checkpoint": (
        lambda good: safetensors.numpy.save({"w": np.zeros(3, np.float32)}),
        r"not an mlp_xp checkpoint \(no 'format' metadata\)",
    ),
    "other format version": (
        lambda good: _with_header(good, _metadata("format", "mlp_xp.checkpoint/9")),
        r"has checkpoint format 'mlp_xp.checkpoint/9'",
    ),
    "a dtype models are not made in": (
        lambda good: _with_header(good, _metadata("dtype", "float16")),
        r"metadata 'dtype' is 'float16'; models are float32 or float64",
    ),
    "metadata not JSON": (lambda good: _with_header(good, _metadata("layers", "[oops")), r"'layers' is not valid JSON"),
    "metadata of the wrong type": (
        lambda good: _with_header(good, _metadata("epoch", '"two"')),
        r"metadata 'epoch' has the wrong type",
    ),
    "header nested too deeply": (
        lambda good: struct.pack("<Q", 100_005) + b'{"a":' + b"[" * 100_000,
        r"header is not JSON \(maximum recursion depth exceeded",
    ),
    "metadata nested too deeply": (
        lambda good: _with_header(good, _metadata("config", "[" * 100_000)),
        r"'config' is not valid JSON \(maximum recursion depth exceeded",
    ),
}


@pytest.fixture(scope="module")
def good_bytes(tmp_path_factory):
    return _save(tmp_path_factory.mktemp("good") / "good.safetensors").read_bytes()


@pytest.mark.parametrize("case", BAD_FILES, ids=list(BAD_FILES))
def test_bad_file_gives_one_clear_error_naming_it(tmp_path, good_bytes, case):
    corrupt, message = BAD_FILES[case]
    path = tmp_path / "bad.safetensors"
    path.write_bytes(corrupt(good_bytes))
    with pytest.raises(FileFormatError, match=message) as info:
        mlp_xp.load_checkpoint(path)
    assert str(path) in str(info.value)


def test_a_fifo_is_refused_instead_of_read(tmp_path):
    """Opening a FIFO to read blocks until a writer comes: a watchdog opens and closes it for
    writing from the fifth second on, so a missing check fails (on the empty reads) instead of
    hanging the suite."""
    import threading
    import time

    path = tmp_path / "pipe"
    os.mkfifo(path)
    done = threading.Event()

    def unblock_readers() -> None:
        time.sleep(5)
        while not done.is_set():
            try:
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:  # ENXIO: no reader waits
                time.sleep(0.01)

    threading.Thread(target=unblock_readers, daemon=True).start()
    try:
        with pytest.raises(FileFormatError, match="is not a regular file, so not a checkpoint"):
            mlp_xp.load_checkpoint(path)
    finally:
        done.set()


def test_consistent_file_with_a_wrong_shape_is_caught_on_restore(tmp_path, numpy_backend):
    model, optimizer, _ = _trained(numpy_backend)
    path = tmp_path / "transposed.safetensors"
    good = mlp_xp.save_checkpoint(path, model, epoch=1)
    with safe_open(good, framework="np") as f:
        tensors, metadata = {k: f.get_tensor(k) for k in f.keys()}, f.metadata()
    tensors["model/hidden1.weight"] = np.ascontiguousarray(tensors["model/hidden1.weight"].T)
    path.write_bytes(safetensors.numpy.save(tensors, metadata=metadata))
    checkpoint = mlp_xp.load_checkpoint(path)
    with pytest.raises(FileFormatError, match=r"hidden1.weight has shape \(8, 12\), the model needs \(12, 8\)"):
        mlp_xp.restore(checkpoint, model)


def test_optimizer_state_of_the_wrong_shape_is_caught_on_load(tmp_path, numpy_backend):
    model, optimizer, _ = _trained(numpy_backend)
    path = mlp_xp.save_checkpoint(tmp_path / "run.safetensors", model, optimizer, epoch=1)
    with safe_open(path, framework="np") as f:
        tensors, metadata = {k: f.get_tensor(k) for k in f.keys()}, f.metadata()
    tensors["optimizer/exp_avg/output.bias"] = np.zeros(5, np.float32)
    path.write_bytes(safetensors.numpy.save(tensors, metadata=metadata))
    with pytest.raises(FileFormatError, match=r"optimizer state 'exp_avg/output.bias' of shape \(5,\) does not fit"):
        mlp_xp.load_checkpoint(path)


def _snapshot(model, optimizer):
    """Host copies of the model's state and the optimizer's state arrays, and its step count."""
    return {k: np.array(v) for k, v in {**model.state(), **optimizer.state_arrays()}.items()}, optimizer.steps


@pytest.mark.parametrize(
    "drop, make_optimizer, error, message",
    [
        (
            lambda key: key.startswith("optimizer/exp_avg_sq/"),
            None,
            FileFormatError,
            r"optimizer state does not cover the model's parameters: no exp_avg_sq/bn1.beta; no exp_avg_sq/bn1.gamma;",
        ),
        (
            lambda key: key == "optimizer/exp_avg/hidden1.weight",
            None,
            FileFormatError,
            r"optimizer state does not cover the model's parameters: no exp_avg/hidden1.weight\.$",
        ),
        (
            lambda key: False,
            lambda model: mlp_xp.SGD(model, 0.1),
            ValueError,
            r"checkpoint holds Adam state; cannot load it into SGD",
        ),
    ],
    ids=["a whole state missing", "one tensor missing", "another optimizer"],
)
def test_optimizer_state_that_cannot_load_leaves_model_and_optimizer_as_they_were(
    tmp_path, numpy_backend, drop, make_optimizer, error, message
):
    model, optimizer, _ = _trained(numpy_backend)
    path = mlp_xp.save_checkpoint(tmp_path / "run.safetensors", model, optimizer, epoch=1)
    with safe_open(path, framework="np") as f:
        tensors, metadata = {k: f.get_tensor(k) for k in f.keys() if not drop(k)}, f.metadata()
    path.write_bytes(safetensors.numpy.save(tensors, metadata=metadata))
    checkpoint = mlp_xp.load_checkpoint(path)
    other, other_optimizer, _ = _trained(numpy_backend, steps=1, seed=5)
    other_optimizer = other_optimizer if make_optimizer is None else make_optimizer(other)
    (before, steps) = _snapshot(other, other_optimizer)
    with pytest.raises(error, match=message) as info:
        mlp_xp.restore(checkpoint, other, other_optimizer)
    assert error is ValueError or str(path) in str(info.value)
    after, steps_after = _snapshot(other, other_optimizer)
    assert set(after) == set(before) and steps_after == steps
    for key, value in before.items():
        np.testing.assert_array_equal(after[key], value, err_msg=key)


def _zip(path, members, compression=zipfile.ZIP_STORED):
    """A zip archive at ``path`` holding ``members`` (name: bytes)."""
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def _npy(array=None, header=None):
    """``array`` as ``np.save`` writes it, or just a version-1.0 ``.npy`` header (dict) without data."""
    buffer = io.BytesIO()
    if header is None:
        np.save(buffer, array)
    else:
        np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue()


_DIRECTORY_FIELDS = {"flags": (8, "<H"), "method": (10, "<H"), "size": (24, "<I")}
"""Offset and struct format of fields in a zip central directory entry (``size``: uncompressed)."""


def _patched_zip(path, name, data, field, value):
    """A zip of one member whose central directory entry (what zipfile reads) says ``value`` in ``field``."""
    _zip(path, {name: data})
    archive = bytearray(path.read_bytes())
    entry = struct.unpack("<I", archive[-6:-2])[0]  # the end record's offset of the directory
    offset, fmt = _DIRECTORY_FIELDS[field]
    struct.pack_into(fmt, archive, entry + offset, value)
    path.write_bytes(bytes(archive))


def _lzma_with_bad_properties(path):
    """A zip whose one LZMA member has invalid properties (the byte after the 4-byte LZMA header)."""
    _zip(path, {"meta.npy": _npy(np.zeros(4, np.uint8))}, zipfile.ZIP_LZMA)
    archive = bytearray(path.read_bytes())
    archive[30 + len("meta.npy") + 4] = 0xFF  # after the 30-byte local header and the name
    path.write_bytes(bytes(archive))


_FORGED_HEADER = {"descr": "<f8", "fortran_order": False, "shape": (2**24,)}
"""128 MiB of float64 that a forged member declares."""


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda path, good: path.write_bytes(good[: len(good) // 2]), r"unreadable .npz checkpoint \(BadZipFile"),
        (lambda path, good: np.savez(path, meta=np.array([{"format": "x"}], dtype=object)), r"Object arrays"),
        (lambda path, good: np.savez(path, weights=np.zeros(3)), r"without the 'meta' entry"),
        (
            lambda path, good: np.savez(path, meta=np.frombuffer(b'{"a":' + b"[" * 100_000, np.uint8)),
            r"unreadable .npz checkpoint \(RecursionError",
        ),
        (lambda path, good: _zip(path, {"meta.npy": b"no magic"}), r"'meta' entry is not .* header \(b'no magic'\)"),
        (lambda path, good: _zip(path, {"meta": b"no magic"}), r"'meta' entry is not .* header \(b'no magic'\)"),
        (
            lambda path, good: _patched_zip(path, "meta.npy", _npy(np.zeros(4, np.uint8)), "method", 9),
            r"\(NotImplementedError: That compression method is not supported",
        ),
        (
            lambda path, good: _patched_zip(path, "meta.npy", _npy(np.zeros(4, np.uint8)), "flags", 1),
            r"member 'meta.npy' is encrypted",
        ),
        (lambda path, good: _lzma_with_bad_properties(path), r"\(LZMAError: Invalid or unsupported options"),
        (
            lambda path, good: _zip(path, {"model/w.npy": _npy(header={**_FORGED_HEADER, "shape": (2**40,)})}),
            r"member 'model/w.npy' declares shape \(1099511627776,\) of float64, 8796093022208 bytes, but holds 0",
        ),
        (
            lambda path, good: _patched_zip(path, "model/w.npy", _npy(header=_FORGED_HEADER), "size", 2**27 + 128),
            r"member 'model/w.npy' declares 134217856 bytes in 128 stored bytes of a \d+-byte file",
        ),
    ],
    ids=[
        "truncated",
        "object array (pickle)",
        "no meta",
        "meta JSON nested too deeply",
        "meta.npy without .npy magic",
        "member named meta",
        "deflate64 member",
        "encrypted member",
        "corrupt LZMA member",
        "array larger than the member",
        "member larger than its stored bytes",
    ],
)
def test_bad_npz_gives_one_clear_error(tmp_path, numpy_backend, make, message):
    model, optimizer, _ = _trained(numpy_backend)
    good = _write_npz(tmp_path / "good.npz", model, optimizer).read_bytes()
    path = tmp_path / "bad.npz"
    make(path, good)
    with pytest.raises(FileFormatError, match=message) as info:
        mlp_xp.load_checkpoint(path)
    assert str(path) in str(info.value)


def test_cli_eval_of_a_truncated_npz_is_one_error_line(tmp_path, numpy_backend, capsys):
    model, optimizer, _ = _trained(numpy_backend)
    path = tmp_path / "run.npz"
    path.write_bytes(_write_npz(tmp_path / "good.npz", model, optimizer).read_bytes()[:-300])
    assert main(["eval", "--load", str(path), "--dataset", "synthetic", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"mlp-xp eval: error: {path}: unreadable .npz checkpoint (BadZipFile")
    assert err.count("\n") == 1


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_truncation_or_byte_flip_is_a_file_format_error_or_a_valid_load(tmp_path, good_bytes, data):
    """Never a safetensors, JSON, struct or NumPy exception: bytes either load or raise FileFormatError."""
    cut = data.draw(st.integers(0, len(good_bytes)), label="length")
    bad = bytearray(good_bytes[:cut])
    if bad and data.draw(st.booleans(), label="flip"):
        where = data.draw(st.integers(0, min(len(bad), 8 + _header_length(good_bytes)) - 1), label="offset")
        bad[where] ^= data.draw(st.integers(1, 255), label="mask")
    path = tmp_path / "fuzzed.safetensors"
    path.write_bytes(bytes(bad))
    try:
        mlp_xp.load_checkpoint(path)
    except FileFormatError as exc:
        assert str(path) in str(exc)


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_a_header_length_that_starts_like_a_pickle_still_loads(tmp_path, numpy_backend, protocol):
    """safetensors files begin with their header's length (8 bytes, little-endian): a length of
    0x..0N80 starts with a pickle protocol's two bytes. Such a checkpoint loads all the same."""
    model, optimizer, _ = _trained(numpy_backend)
    path = tmp_path / "run.safetensors"
    length = struct.unpack("<Q", mlp_xp.save_checkpoint(path, model, epoch=1, config={"pad": ""}).read_bytes()[:8])[0]
    pad = (0x80 + 0x100 * protocol - length) % 0x10000  # the header grows by the padding (multiples of 8)
    mlp_xp.save_checkpoint(path, model, epoch=1, config={"pad": "x" * pad})
    assert path.read_bytes()[:2] == bytes([0x80, protocol])
    assert mlp_xp.load_checkpoint(path).meta["config"]["pad"] == "x" * pad


def test_progress_schema_follows_epoch_progress():
    """The loader's schema for 'progress' entries names exactly EpochProgress's fields, each
    with the type its annotation gives (a field added to one must be added to the other)."""
    import dataclasses

    from mlp_xp import checkpoint
    from mlp_xp.train import EpochProgress

    kinds = {"int": int, "float": float, "float | None": (float, type(None))}
    assert checkpoint._PROGRESS_FIELDS == {f.name: kinds[f.type] for f in dataclasses.fields(EpochProgress)}
