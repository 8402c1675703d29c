"""Checkpoint behaviour that mutants surviving the NumPy-only mutmut run showed unchecked: the
exact messages of every ``FileFormatError`` a bad file raises (header length, header and
``__metadata__`` shape, tensor entries, gaps, dtypes, shapes and offsets, metadata fields and
their types, unexpected entries, optimizer state that fits no parameter), the defaults a file
without optional fields loads with, the metadata ``save_checkpoint`` writes, edge cases that
must load (no tensors at all, a zero-size tensor, ``/`` in layer names) and ``restore`` of a
model alone from a checkpoint that holds optimizer state. Files are written by hand with
``struct`` and JSON, so each fault is exactly the one named. All run on NumPy, in milliseconds."""

from __future__ import annotations

import json
import pickle
import struct

import numpy as np
import pytest
import safetensors.numpy

import mlp_xp
from mlp_xp import SGD, Linear, ReLU, Sequential, make_mlp
from mlp_xp.checkpoint import FORMAT, layer_list
from mlp_xp.errors import FileFormatError

# -- helpers ---------------------------------------------------------------------------------------


def _raw(header, data: bytes = b"") -> bytes:
    """A safetensors file: the 8-byte length, the JSON ``header`` as given, then ``data``."""
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


def _file(tmp_path, contents: bytes):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(contents)
    return path


def _error(path) -> str:
    """The message of the ``FileFormatError`` that loading ``path`` raises."""
    with pytest.raises(FileFormatError) as caught:
        mlp_xp.load_checkpoint(path)
    return str(caught.value)


def _checkpoint_file(tmp_path, tensors=None, dtype="float32", **fields):
    """A safetensors checkpoint of ``tensors`` whose metadata holds ``format``, ``dtype`` (when not
    None) and ``fields`` (JSON-encoded, as ``save_checkpoint`` writes them)."""
    metadata = {"format": FORMAT, **({} if dtype is None else {"dtype": dtype})}
    metadata.update({k: json.dumps(v) for k, v in fields.items()})
    path = tmp_path / "run.safetensors"
    path.write_bytes(safetensors.numpy.save(tensors or {}, metadata=metadata))
    return path


def _one(size=1):
    return np.arange(size, dtype=np.float32)


# -- opening the file -----------------------------------------------------------------------------


def test_missing_file_names_the_path(tmp_path):
    """Nothing at the path: ``FileNotFoundError`` with exactly this message."""
    path = tmp_path / "none.safetensors"
    with pytest.raises(FileNotFoundError) as caught:
        mlp_xp.load_checkpoint(path)
    assert str(caught.value) == f"no checkpoint at {path}."


def test_unreadable_path_gives_the_os_reason(tmp_path):
    """A directory cannot be opened: a ``FileFormatError`` with the OS's reason alone."""
    with pytest.raises(FileFormatError) as caught:
        mlp_xp.load_checkpoint(tmp_path)
    assert str(caught.value) == f"{tmp_path}: cannot be read as a checkpoint (Is a directory)."


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_pickle_of_any_protocol_is_refused_with_the_full_reason(tmp_path, protocol):
    """Pickles of protocols 2 to 5 are recognised and refused with this exact message."""
    path = _file(tmp_path, pickle.dumps({"model": [1.0]}, protocol=protocol))
    assert _error(path) == (
        f"{path} is a Python pickle, not an mlp_xp checkpoint: mlp_xp never unpickles (loading a pickle "
        "can run arbitrary code). Checkpoints are safetensors files written by save_checkpoint."
    )


# -- the 8-byte length and the JSON header ----------------------------------------------------------


def test_seven_bytes_are_too_few_for_the_length(tmp_path):
    path = _file(tmp_path, b"\0" * 7)
    assert _error(path) == (
        f"{path}: truncated or not a safetensors file: 7 bytes, fewer than the 8-byte header length."
    )


def test_eight_bytes_are_a_length_and_an_empty_header(tmp_path):
    """Exactly 8 bytes hold the length (0) and a 0-byte header, which is not JSON."""
    path = _file(tmp_path, struct.pack("<Q", 0))
    assert _error(path) == (
        f"{path}: the 0-byte header is not JSON (Expecting value: line 1 column 1 (char 0)): "
        "a wrong header length or not a safetensors file."
    )


METADATA_ONLY = json.dumps({"__metadata__": {"format": FORMAT}}).encode()


@pytest.mark.parametrize("stated", [len(METADATA_ONLY) + 4, 2**63 + 1], ids=["just past the end", "top bit set"])
def test_header_length_past_the_end_of_the_file(tmp_path, stated):
    """A length field beyond the bytes that follow it, even just beyond or with the top bit set
    (an unsigned field), is reported with both figures and the header limit."""
    header = METADATA_ONLY
    path = _file(tmp_path, struct.pack("<Q", stated) + header)
    assert _error(path) == (
        f"{path}: header length field says {stated} bytes but {len(header)} bytes follow (limit "
        "104857600): a truncated file, a wrong header length, or not a safetensors file."
    )


def test_checkpoint_without_tensors_loads(tmp_path, numpy_backend):
    """A parameter-free model's checkpoint is a header filling the whole file; it loads."""
    model = Sequential(("act", ReLU())).init(numpy_backend)
    path = mlp_xp.save_checkpoint(tmp_path / "empty.safetensors", model, epoch=2)
    checkpoint = mlp_xp.load_checkpoint(path)
    assert checkpoint.meta["layers"] == ["act: ReLU()"] and checkpoint.meta["epoch"] == 2
    assert checkpoint.model == {} and checkpoint.optimizer == {}


def test_header_that_is_not_an_object(tmp_path):
    path = _file(tmp_path, _raw([1, 2]))
    assert _error(path) == f"{path}: the safetensors header is a JSON list, not an object."


@pytest.mark.parametrize("metadata", [["format"], {"format": FORMAT, "epoch": 1}], ids=["a list", "a number"])
def test_metadata_that_is_not_names_to_strings(tmp_path, metadata):
    path = _file(tmp_path, _raw({"__metadata__": metadata}))
    assert _error(path) == f"{path}: safetensors __metadata__ must map names to strings."


# -- tensor entries and their byte spans --------------------------------------------------------


def _entry(dtype="F32", shape=(1,), offsets=(0, 4)):
    return {"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets)}


BAD_ENTRIES = {
    "not a dict": (
        "a string",
        "header entry 'model/x' is not a tensor (dtype, shape, data_offsets).",
    ),
    "an extra key": (
        {**_entry(), "note": 1},
        "header entry 'model/x' is not a tensor (dtype, shape, data_offsets).",
    ),
    "a dtype NumPy cannot read": (
        _entry(dtype="BF16"),
        "tensor 'model/x' has dtype 'BF16'; readable: BOOL, U8, I8, U16, I16, F16, U32, I32, F32, U64, I64, F64.",
    ),
    "a shape that is a number": (
        {**_entry(), "shape": 1},
        "tensor 'model/x' has shape 1, not a list of non-negative integers.",
    ),
    "a boolean dimension": (
        {**_entry(), "shape": [True]},
        "tensor 'model/x' has shape [True], not a list of non-negative integers.",
    ),
    "a float dimension": (
        {**_entry(), "shape": [1.0]},
        "tensor 'model/x' has shape [1.0], not a list of non-negative integers.",
    ),
    "three offsets": (
        _entry(offsets=(0, 4, 4)),
        "tensor 'model/x' has data_offsets [0, 4, 4], not [begin, end].",
    ),
    "a negative offset": (
        _entry(offsets=(-4, 0)),
        "tensor 'model/x' has data_offsets [-4, 0], not [begin, end].",
    ),
    "offsets as a string": (
        {**_entry(), "data_offsets": "0:4"},
        "tensor 'model/x' has data_offsets '0:4', not [begin, end].",
    ),
    "begin after end": (
        _entry(offsets=(4, 0)),
        "tensor 'model/x' has data_offsets [4, 0], not [begin, end].",
    ),
}


@pytest.mark.parametrize("case", BAD_ENTRIES, ids=list(BAD_ENTRIES))
def test_bad_tensor_entry_is_named_with_its_fault(tmp_path, case):
    """Each malformed entry of a 4-byte tensor ``model/x`` gives exactly this message."""
    entry, message = BAD_ENTRIES[case]
    path = _file(tmp_path, _raw({"model/x": entry}, b"\0" * 4))
    assert _error(path) == f"{path}: {message}"


def test_span_that_does_not_fit_the_shape_gives_both_sizes(tmp_path):
    """The second tensor claims 2 floats (8 bytes) but spans bytes 4 to 8."""
    header = {"model/a": _entry(offsets=(0, 4)), "model/b": _entry(shape=(2,), offsets=(4, 8))}
    path = _file(tmp_path, _raw(header, b"\0" * 8))
    assert _error(path) == (
        f"{path}: tensor 'model/b' of shape (2,) and dtype F32 needs 8 bytes, but its data_offsets [4, 8] span 4."
    )


def test_gap_before_a_tensor_is_reported(tmp_path):
    path = _file(tmp_path, _raw({"model/x": _entry(offsets=(4, 8))}, b"\0" * 8))
    assert _error(path) == (
        f"{path}: tensor 'model/x' starts at data byte 4, expected 0 (tensors are packed without gaps or overlaps)."
    )


@pytest.mark.parametrize(
    "data, fault",
    [(b"\0" * 2, "the file has 2 (truncated file)"), (b"\0" * 7, "the file has 7 (3 trailing bytes)")],
    ids=["truncated", "trailing"],
)
def test_data_size_that_differs_from_the_tensors(tmp_path, data, fault):
    path = _file(tmp_path, _raw({"model/x": _entry()}, data))
    assert _error(path) == f"{path}: the tensors take 4 data bytes but {fault}."


def test_zero_size_tensor_loads(tmp_path):
    """A tensor with a zero dimension spans no bytes ([0, 0]) and loads with its shape."""
    path = _checkpoint_file(tmp_path, {"model/x": np.zeros((0, 3), np.float32)}, epoch=0, layers=[])
    assert mlp_xp.load_checkpoint(path).model["x"].shape == (0, 3)


def test_layout_safetensors_still_rejects_is_a_file_format_error(tmp_path):
    """A dimension too large for safetensors (in a zero-size tensor, so the byte span is right)
    passes the layout check; safetensors' own error becomes a ``FileFormatError``."""
    header = {"__metadata__": {"format": FORMAT}, "model/x": _entry(shape=(0, 2**70), offsets=(0, 0))}
    path = _file(tmp_path, _raw(header))
    message = _error(path)
    assert message.startswith(f"{path}: not a readable safetensors file (") and message.endswith(").")


@pytest.mark.parametrize("shape", [(0, 2**63), (0, 2**62), (1,) * 70], ids=["dimension 2**63", "2**62", "70 dims"])
def test_shape_beyond_numpys_limits_is_a_file_format_error(tmp_path, shape):
    """A shape NumPy cannot make (a dimension past its limit in a zero-size tensor, or more than
    64 dimensions) passes the layout check and safetensors; NumPy's ``ValueError`` becomes a
    ``FileFormatError`` that names the file, like every other bad file."""
    size = 0 if 0 in shape else 4
    header = {"__metadata__": {"format": FORMAT}, "model/x": _entry(shape=shape, offsets=(0, size))}
    path = _file(tmp_path, _raw(header, b"\0" * size))
    assert _error(path).startswith(f"{path}: not a readable safetensors file (")


# -- metadata fields ------------------------------------------------------------------------------


def test_missing_metadata_fields_are_listed(tmp_path):
    path = _checkpoint_file(tmp_path, config={})
    assert _error(path) == f"{path}: the checkpoint's metadata lacks epoch, layers."


def test_absent_optional_fields_load_with_their_defaults(tmp_path):
    path = _checkpoint_file(tmp_path, epoch=3, layers=[])
    assert mlp_xp.load_checkpoint(path).meta == {
        "format": FORMAT,
        "dtype": "float32",
        "epoch": 3,
        "layers": [],
        "partial": False,
        "progress": None,
        "config": {},
        "model_config": None,
        "history": [],
    }


WRONG_TYPES = {
    "epoch": ("2", "'2'"),
    "partial": (1, "1"),
    "progress": ({"steps": 1}, "{'steps': 1}"),
    "layers": ({"a": 1}, "{'a': 1}"),
    "config": ([1], "[1]"),
    "model_config": (5, "5"),
    "history": ({}, "{}"),
    "optimizer": ("sgd", "'sgd'"),
}


@pytest.mark.parametrize("key", WRONG_TYPES, ids=list(WRONG_TYPES))
def test_metadata_field_of_the_wrong_type_is_named(tmp_path, key):
    value, shown = WRONG_TYPES[key]
    path = _checkpoint_file(tmp_path, **{"epoch": 1, "layers": [], key: value})
    assert _error(path) == f"{path}: metadata {key!r} has the wrong type: {shown}."


GOOD_PROGRESS = {"epoch": 1, "steps": 4, "samples": 40, "loss_sum": 9.5, "correct": 30.0, "seconds": 0.5}


@pytest.mark.parametrize(
    "entry",
    [
        {**GOOD_PROGRESS, "steps": 4.0},
        {**GOOD_PROGRESS, "samples": True},
        {**GOOD_PROGRESS, "loss_sum": "9.5"},
        {**GOOD_PROGRESS, "correct": 30},
        {k: v for k, v in GOOD_PROGRESS.items() if k != "seconds"},
        {**GOOD_PROGRESS, "extra": 1},
        [1, 4],
    ],
    ids=["float steps", "bool samples", "string loss", "int correct", "missing", "extra", "a list"],
)
def test_malformed_progress_entries_are_refused(tmp_path, entry):
    path = _checkpoint_file(tmp_path, epoch=1, layers=[], progress=[GOOD_PROGRESS, entry])
    assert _error(path) == f"{path}: metadata 'progress' holds a malformed entry: {entry!r:.80}."


def test_well_formed_progress_loads(tmp_path):
    entries = [GOOD_PROGRESS, {**GOOD_PROGRESS, "correct": None}]
    path = _checkpoint_file(tmp_path, epoch=1, layers=[], progress=entries)
    assert mlp_xp.load_checkpoint(path).meta["progress"] == entries


def test_checkpoint_without_a_dtype_is_refused(tmp_path):
    path = _checkpoint_file(tmp_path, dtype=None, epoch=1, layers=[])
    assert _error(path) == f"{path}: metadata 'dtype' has the wrong type: None."


@pytest.mark.parametrize("optimizer", [{"type": "SGD"}, {"type": "SGD", "steps": "3"}], ids=["none", "a string"])
def test_optimizer_metadata_needs_integer_steps(tmp_path, optimizer):
    path = _checkpoint_file(tmp_path, epoch=1, layers=[], optimizer=optimizer)
    assert _error(path) == f"{path}: metadata 'optimizer' has no integer 'steps'."


# -- tensor names, dtypes and the optimizer state's fit --------------------------------------------


@pytest.mark.parametrize("name", ["extra/x", "x"])
def test_tensor_outside_model_and_optimizer_is_refused(tmp_path, name):
    path = _checkpoint_file(tmp_path, {name: _one()}, epoch=1, layers=[])
    assert _error(path) == (f"{path}: unexpected entry {name!r} (a checkpoint holds model/ and optimizer/ arrays).")


def test_tensor_of_another_dtype_is_refused(tmp_path):
    path = _checkpoint_file(tmp_path, {"model/x": np.zeros(2)}, epoch=1, layers=[])
    assert _error(path) == f"{path}: tensor 'model/x' is float64; the checkpoint's dtype is float32."


@pytest.mark.parametrize(
    "state, found",
    [
        (
            {"optimizer/momentum/ghost.w": _one()},
            "'momentum/ghost.w' of shape (1,) does not fit (no such model tensor)",
        ),
        (
            {"optimizer/momentum/x.w": _one(2)},
            "'momentum/x.w' of shape (2,) does not fit (the parameter has shape (1,))",
        ),
    ],
    ids=["no such tensor", "another shape"],
)
def test_optimizer_state_that_fits_no_parameter_says_why(tmp_path, state, found):
    optimizer = {"type": "SGD", "steps": 1, "lr": 0.1}
    path = _checkpoint_file(tmp_path, {"model/x.w": _one(), **state}, epoch=1, layers=[], optimizer=optimizer)
    assert _error(path) == f"{path}: optimizer state {found}."


# -- what save_checkpoint writes and restore reads ---------------------------------------------------


def test_saved_metadata_reads_back_whole(tmp_path, numpy_backend):
    """Every metadata field ``save_checkpoint`` writes comes back from ``load_checkpoint`` as given."""
    model = make_mlp(4, [3], 2).init(numpy_backend)
    optimizer = SGD(model, 0.1, momentum=0.9)
    model_config = {"in_features": 4, "hidden": [3], "out_features": 2}
    progress = [{"epoch": 5, "steps": 2, "samples": 20, "loss_sum": 13.25, "correct": None, "seconds": 0.25}]
    path = mlp_xp.save_checkpoint(
        tmp_path / "run.safetensors",
        model,
        optimizer,
        epoch=5,
        config={"seed": 1},
        model_config=model_config,
        partial=True,
        progress=progress,
    )
    assert mlp_xp.load_checkpoint(path).meta == {
        "format": FORMAT,
        "dtype": "float32",
        "epoch": 5,
        "partial": True,
        "progress": progress,
        "layers": layer_list(model),
        "config": {"seed": 1},
        "model_config": model_config,
        "history": [],
        "optimizer": {"type": "SGD", "steps": 0, "lr": 0.1},
    }


def test_model_alone_restores_from_a_checkpoint_with_optimizer_state(tmp_path, numpy_backend):
    model = make_mlp(4, [3], 2).init(numpy_backend, seed=1)
    optimizer = SGD(model, 0.1, momentum=0.9)
    optimizer.prepare()
    checkpoint = mlp_xp.load_checkpoint(mlp_xp.save_checkpoint(tmp_path / "run", model, optimizer, epoch=1))
    assert checkpoint.optimizer
    other = make_mlp(4, [3], 2).init(numpy_backend, seed=2)
    mlp_xp.restore(checkpoint, other)
    for key, value in model.state().items():
        np.testing.assert_array_equal(other.state()[key], value)


def test_optimizer_state_round_trips_with_slashes_in_layer_names(tmp_path, numpy_backend):
    """``/`` in a layer name: model and optimizer tensors still split and pair up on load."""

    def build(seed):
        model = Sequential(("enc/fc", Linear(4, 3)), ("out", Linear(3, 2))).init(numpy_backend, seed=seed)
        return model, SGD(model, 0.1, momentum=0.9)

    model, optimizer = build(1)
    optimizer.prepare()
    optimizer.load_state_arrays({k: np.full(v.shape, 2.0, np.float32) for k, v in optimizer.state_arrays().items()}, 4)
    checkpoint = mlp_xp.load_checkpoint(mlp_xp.save_checkpoint(tmp_path / "run", model, optimizer, epoch=1))
    assert set(checkpoint.model) == set(model.state())
    other, other_optimizer = build(2)
    mlp_xp.restore(checkpoint, other, other_optimizer)
    assert other_optimizer.steps == 4
    np.testing.assert_array_equal(other_optimizer.state_arrays()["momentum/enc/fc.weight"], 2.0)
    np.testing.assert_array_equal(other.state()["enc/fc.weight"], model.state()["enc/fc.weight"])
