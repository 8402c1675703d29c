"""Checkpoints as safetensors files: named tensors and a header of strings; loading runs no code.

Tensors (host copies in the model's dtype): ``model/<layer>.<key>`` for parameters and buffers,
``optimizer/<state>/<layer>.<key>`` for the optimizer state. Header metadata, all strings:
``format`` (``mlp_xp.checkpoint/2``), ``dtype``, and JSON for ``epoch``, ``partial`` (saved inside
an epoch), ``progress`` (how far that epoch got on each process, see ``train.EpochProgress``; null
otherwise), ``layers`` (the layer list a model must match), ``config`` (the run's settings),
``model_config`` (``make_mlp``'s arguments), ``history`` (per-epoch records) and ``optimizer``
(type, steps, learning rate). Any safetensors reader shows them, e.g.
``safetensors.safe_open(path, framework="np").metadata()``.

Reading checks the safetensors header against the file's size before safetensors opens the file,
so a bad file of any kind (truncated, a pickle, a wrong header length, offsets that do not fit a
tensor's shape, tensors of the wrong shape) raises one ``FileFormatError`` naming the file and the
fault. Format-1 checkpoints (``.npz`` with a JSON ``meta`` entry) still load, read-only, with a
``LegacyCheckpointWarning``.
"""

from __future__ import annotations

import json
import lzma
import math
import os
import stat
import struct
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.numpy
from safetensors import SafetensorError, safe_open

from .errors import FileFormatError
from .files import write_atomically
from .model import DTYPES, Sequential
from .optim import Optimizer

FORMAT = "mlp_xp.checkpoint/2"
NPZ_FORMAT = "mlp_xp.checkpoint/1"
MAX_HEADER_BYTES = 100 * 2**20
"""safetensors' own limit on the JSON header."""
SAFETENSORS_DTYPES = {
    "BOOL": np.dtype(np.bool_),
    "U8": np.dtype(np.uint8),
    "I8": np.dtype(np.int8),
    "U16": np.dtype(np.uint16),
    "I16": np.dtype(np.int16),
    "F16": np.dtype(np.float16),
    "U32": np.dtype(np.uint32),
    "I32": np.dtype(np.int32),
    "F32": np.dtype(np.float32),
    "U64": np.dtype(np.uint64),
    "I64": np.dtype(np.int64),
    "F64": np.dtype(np.float64),
}
"""safetensors dtype codes that NumPy reads, with their NumPy dtypes."""
_JSON_FIELDS = ("epoch", "partial", "progress", "layers", "config", "model_config", "history", "optimizer")
_PROGRESS_FIELDS = {
    "epoch": int,
    "steps": int,
    "samples": int,
    "loss_sum": float,
    "correct": (float, type(None)),
    "seconds": float,
}
"""The entries of one process's progress in ``progress`` (``train.EpochProgress``) and their types."""
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_MAX_DEFLATE_RATIO = 1032
"""The most bytes deflate makes of one compressed byte: what a compressed ``.npz`` member can hold."""
_NPZ_ERRORS = (
    ValueError,
    OSError,
    EOFError,
    KeyError,
    NotImplementedError,  # deflate64 and the other compression methods zipfile lacks
    RecursionError,  # 'meta' JSON nested too deeply
    zipfile.BadZipFile,
    zlib.error,
    lzma.LZMAError,
)
"""What NumPy, zipfile and the decompressors raise for a bad ``.npz`` file."""
_PICKLE_PROTOCOLS = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")


class LegacyCheckpointWarning(UserWarning):
    """A format-1 ``.npz`` checkpoint was read; saving again writes safetensors."""


@dataclass
class Checkpoint:
    """A loaded checkpoint: ``meta`` (dict), host arrays for the model and the optimizer, and the
    ``path`` it came from (named in errors)."""

    meta: dict[str, Any]
    model: dict[str, np.ndarray]
    optimizer: dict[str, np.ndarray]
    path: str = "<checkpoint>"


def layer_list(model: Sequential) -> list[str]:
    """``"<name>: <repr>"`` for every layer: the architecture a checkpoint must match."""
    return [f"{layer.name}: {layer!r}" for layer in model.layers]


def save_checkpoint(
    path: str | os.PathLike,
    model: Sequential,
    optimizer: Optimizer | None = None,
    *,
    epoch: int,
    config: dict[str, Any] | None = None,
    model_config: dict[str, Any] | None = None,
    history: list[dict[str, Any]] | None = None,
    partial: bool = False,
    progress: list[dict[str, Any]] | None = None,
) -> Path:
    """Write ``model`` (and ``optimizer``) after ``epoch`` completed epochs to ``path`` as a
    safetensors file, atomically (a temporary file in the same directory, then a rename).
    ``partial`` marks a save from inside an epoch (Ctrl-C), and ``progress`` says how far
    that epoch got (``dataclasses.asdict`` of each process's ``train.EpochProgress``)."""
    backend = model.backend
    tensors = {f"model/{k}": backend.to_numpy(v) for k, v in model.state().items()}
    meta: dict[str, Any] = {
        "epoch": epoch,
        "partial": partial,
        "progress": progress,
        "layers": layer_list(model),
        "config": config or {},
        "model_config": model_config,
        "history": history or [],
    }
    if optimizer is not None:
        tensors.update({f"optimizer/{k}": backend.to_numpy(v) for k, v in optimizer.state_arrays().items()})
        meta["optimizer"] = {"type": type(optimizer).__name__, "steps": optimizer.steps, "lr": optimizer.lr}
    header = {"format": FORMAT, "dtype": model.dtype, **{k: json.dumps(v) for k, v in meta.items()}}
    return write_atomically(path, safetensors.numpy.save(tensors, metadata=header))


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read a checkpoint (safetensors, or a format-1 ``.npz`` with a warning) without executing
    code. Raises ``FileNotFoundError`` when nothing is at ``path`` and ``FileFormatError`` for
    a file that is not a valid checkpoint."""
    try:
        mode = os.stat(path).st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):  # a FIFO would block the read below
            raise FileFormatError(f"{path} is not a regular file, so not a checkpoint.")
        with open(path, "rb") as f:
            magic = f.read(9)
    except FileNotFoundError:
        raise FileNotFoundError(f"no checkpoint at {path}.") from None
    except OSError as exc:
        raise FileFormatError(f"{path}: cannot be read as a checkpoint ({exc.strerror or exc}).") from exc
    if magic[:4] in _ZIP_MAGIC:
        return _load_npz(path)
    if magic[:2] in _PICKLE_PROTOCOLS and magic[8:9] != b"{":  # a safetensors header's length can start so
        raise FileFormatError(
            f"{path} is a Python pickle, not an mlp_xp checkpoint: mlp_xp never unpickles (loading a pickle "
            "can run arbitrary code). Checkpoints are safetensors files written by save_checkpoint."
        )
    return _load_safetensors(path)


def restore(checkpoint: Checkpoint, model: Sequential, optimizer: Optimizer | None = None) -> None:
    """Load a checkpoint's arrays into an initialised ``model`` (and ``optimizer``) on the
    model's backend, after checking all of it: an error leaves both as they were. A different
    architecture or optimizer raises ``ValueError`` saying what differs; tensors that do not fit
    the architecture the checkpoint names, or optimizer state that does not cover every
    parameter, raise ``FileFormatError``."""
    saved, mine = checkpoint.meta["layers"], layer_list(model)
    if saved != mine:
        diff = [
            f"layer {i}: checkpoint has {a!r}, model has {b!r}" for i, (a, b) in enumerate(zip(saved, mine)) if a != b
        ]
        if len(saved) != len(mine):
            diff.append(f"checkpoint has {len(saved)} layers, model has {len(mine)}")
        raise ValueError("checkpoint does not match the model architecture: " + "; ".join(diff))
    _check_fits(checkpoint, model)
    with_optimizer = optimizer is not None and bool(checkpoint.optimizer or "optimizer" in checkpoint.meta)
    if with_optimizer:  # plain SGD keeps no arrays, yet its type and steps are restored
        _check_optimizer_state(checkpoint, model, optimizer)
    backend = model.backend
    model.load_state({k: backend.asarray(v, model.dtype) for k, v in checkpoint.model.items()})
    if with_optimizer:
        optimizer.load_state_arrays(
            {k: backend.asarray(v, model.dtype) for k, v in checkpoint.optimizer.items()},
            checkpoint.meta["optimizer"]["steps"],
        )


# -- reading ------------------------------------------------------------------------------------


def _load_safetensors(path: str | os.PathLike) -> Checkpoint:
    _check_safetensors_layout(path)
    try:
        with safe_open(path, framework="np") as f:
            metadata = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except (SafetensorError, ValueError) as exc:  # what the layout check did not foresee; NumPy's shape limits
        raise FileFormatError(f"{path}: not a readable safetensors file ({exc}).") from exc
    fmt = metadata.get("format")
    if fmt != FORMAT:
        if fmt is None:
            raise FileFormatError(f"{path} is a safetensors file but not an mlp_xp checkpoint (no 'format' metadata).")
        raise FileFormatError(f"{path} has checkpoint format {fmt!r}; this version reads {FORMAT!r}.")
    meta: dict[str, Any] = {"format": fmt, "dtype": metadata.get("dtype")}
    for key in _JSON_FIELDS:
        if key in metadata:
            try:
                meta[key] = json.loads(metadata[key])
            except (ValueError, RecursionError) as exc:  # RecursionError: nested too deeply
                raise FileFormatError(f"{path}: metadata {key!r} is not valid JSON ({exc}).") from exc
    return _checkpoint(path, meta, tensors)


def _check_safetensors_layout(path: str | os.PathLike) -> None:
    """Validate the 8-byte header length, the JSON header and every tensor's byte span against
    the file's size, so that safetensors is only ever given a consistent file."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size < 8:
            raise FileFormatError(
                f"{path}: truncated or not a safetensors file: {size} bytes, fewer than the 8-byte header length."
            )
        (length,) = struct.unpack("<Q", f.read(8))
        if length > min(size - 8, MAX_HEADER_BYTES):
            raise FileFormatError(
                f"{path}: header length field says {length} bytes but {size - 8} bytes follow (limit "
                f"{MAX_HEADER_BYTES}): a truncated file, a wrong header length, or not a safetensors file."
            )
        raw = f.read(length)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError, JSONDecodeError; JSON nested too deeply
        raise FileFormatError(
            f"{path}: the {length}-byte header is not JSON ({exc}): a wrong header length or not a safetensors file."
        ) from exc
    if not isinstance(header, dict):
        raise FileFormatError(f"{path}: the safetensors header is a JSON {type(header).__name__}, not an object.")
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise FileFormatError(f"{path}: safetensors __metadata__ must map names to strings.")
    data_bytes = size - 8 - length
    position = 0
    for begin, end, name in sorted(_tensor_span(path, name, entry) for name, entry in header.items()):
        if begin != position:
            raise FileFormatError(
                f"{path}: tensor {name!r} starts at data byte {begin}, expected {position} "
                "(tensors are packed without gaps or overlaps)."
            )
        position = end
    if position != data_bytes:
        fault = "truncated file" if position > data_bytes else f"{data_bytes - position} trailing bytes"
        raise FileFormatError(
            f"{path}: the tensors take {position} data bytes but the file has {data_bytes} ({fault})."
        )


def _tensor_span(path: str | os.PathLike, name: str, entry: Any) -> tuple[int, int, str]:
    """``(begin, end, name)`` of one header entry, after checking its dtype, shape and that the
    byte span is exactly what the shape needs."""
    if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
        raise FileFormatError(f"{path}: header entry {name!r} is not a tensor (dtype, shape, data_offsets).")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if dtype not in SAFETENSORS_DTYPES:
        raise FileFormatError(
            f"{path}: tensor {name!r} has dtype {dtype!r}; readable: {', '.join(SAFETENSORS_DTYPES)}."
        )
    if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
        raise FileFormatError(f"{path}: tensor {name!r} has shape {shape!r}, not a list of non-negative integers.")
    if (
        not (isinstance(offsets, list) and len(offsets) == 2 and all(map(_is_count, offsets)))
        or offsets[0] > offsets[1]
    ):
        raise FileFormatError(f"{path}: tensor {name!r} has data_offsets {offsets!r}, not [begin, end].")
    needed = math.prod(shape) * SAFETENSORS_DTYPES[dtype].itemsize
    if offsets[1] - offsets[0] != needed:
        raise FileFormatError(
            f"{path}: tensor {name!r} of shape {tuple(shape)} and dtype {dtype} needs {needed} bytes, "
            f"but its data_offsets {offsets} span {offsets[1] - offsets[0]}."
        )
    return offsets[0], offsets[1], name


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _load_npz(path: str | os.PathLike) -> Checkpoint:
    """A format-1 checkpoint: ``.npz`` arrays plus a JSON ``meta`` entry (uint8 bytes)."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            with zipfile.ZipFile(f) as archive:
                for info in archive.infolist():
                    _check_npz_member(path, archive, info, size)
            f.seek(0)
            with np.load(f, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        meta = arrays.pop("meta", None)
        if isinstance(meta, np.ndarray):  # a member without .npy magic reads as bytes
            meta = json.loads(meta.tobytes().decode())
    except FileFormatError:
        raise
    except _NPZ_ERRORS as exc:
        raise FileFormatError(f"{path}: unreadable .npz checkpoint ({type(exc).__name__}: {exc}).") from exc
    if meta is None:
        raise FileFormatError(f"{path} is a zip/.npz archive without the 'meta' entry of an mlp_xp checkpoint.")
    if not isinstance(meta, dict) or meta.get("format") != NPZ_FORMAT:
        raise FileFormatError(f"{path}: its 'meta' entry is not an mlp_xp format-1 header ({str(meta):.80}).")
    warnings.warn(
        f"{path} is a format-1 .npz checkpoint: it loads read-only; save_checkpoint writes safetensors ({FORMAT}).",
        LegacyCheckpointWarning,
        stacklevel=3,
    )
    return _checkpoint(path, meta, arrays)


def _check_npz_member(path: str | os.PathLike, archive: zipfile.ZipFile, info: zipfile.ZipInfo, size: int) -> None:
    """A member is not encrypted, and the sizes it declares fit the ``size``-byte file, before
    NumPy allocates what they say: its uncompressed size what its compressed bytes can make,
    and an array's shape × itemsize what the member holds after its ``.npy`` header."""
    if info.flag_bits & 0x1:  # zipfile would raise a bare RuntimeError
        raise FileFormatError(f"{path}: member {info.filename!r} is encrypted; checkpoints are not.")
    most = info.compress_size * (1 if info.compress_type == zipfile.ZIP_STORED else _MAX_DEFLATE_RATIO)
    if info.compress_size > size or info.file_size > most:
        raise FileFormatError(
            f"{path}: member {info.filename!r} declares {info.file_size} bytes in {info.compress_size} stored "
            f"bytes of a {size}-byte file: a corrupt or forged archive."
        )
    with archive.open(info) as member:
        if member.read(len(np.lib.format.MAGIC_PREFIX)) != np.lib.format.MAGIC_PREFIX:
            return  # np.load gives its bytes
        member.seek(0)
        version = np.lib.format.read_magic(member)
        # 3.0 differs from 2.0 only in the header's encoding; np.load refuses other versions
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(member)
        needed, holds = math.prod(shape) * dtype.itemsize, info.file_size - member.tell()
    if needed > holds:
        raise FileFormatError(
            f"{path}: member {info.filename!r} declares shape {shape} of {dtype}, {needed} bytes, "
            f"but holds {holds} bytes after its .npy header."
        )


def _checkpoint(path: str | os.PathLike, meta: dict[str, Any], tensors: dict[str, Any]) -> Checkpoint:
    """Check the metadata fields and the tensors' names, dtypes and mutual shapes; split the
    tensors into model and optimizer state."""
    missing = [key for key in ("epoch", "dtype", "layers") if key not in meta]
    if missing:
        raise FileFormatError(f"{path}: the checkpoint's metadata lacks {', '.join(missing)}.")
    meta = {"partial": False, "progress": None, "config": {}, "model_config": None, "history": [], **meta}
    expected = {
        "epoch": int,
        "partial": bool,
        "progress": (list, type(None)),
        "dtype": str,
        "layers": list,
        "config": dict,
        "model_config": (dict, type(None)),
        "history": list,
        "optimizer": dict,
    }
    for key, kind in expected.items():
        if key in meta and not isinstance(meta[key], kind):
            raise FileFormatError(f"{path}: metadata {key!r} has the wrong type: {meta[key]!r:.80}.")
    if meta["dtype"] not in DTYPES:
        raise FileFormatError(f"{path}: metadata 'dtype' is {meta['dtype']!r:.40}; models are float32 or float64.")
    if "optimizer" in meta and not isinstance(meta["optimizer"].get("steps"), int):
        raise FileFormatError(f"{path}: metadata 'optimizer' has no integer 'steps'.")
    for entry in meta["progress"] or []:
        if not isinstance(entry, dict) or set(entry) != set(_PROGRESS_FIELDS) or not all(
            isinstance(entry[key], kind) and not isinstance(entry[key], bool) for key, kind in _PROGRESS_FIELDS.items()
        ):
            raise FileFormatError(f"{path}: metadata 'progress' holds a malformed entry: {entry!r:.80}.")
    groups: dict[str, dict[str, np.ndarray]] = {"model": {}, "optimizer": {}}
    for name, array in tensors.items():
        group, _, key = name.partition("/")
        if group not in groups or not isinstance(array, np.ndarray):
            raise FileFormatError(
                f"{path}: unexpected entry {name!r} (a checkpoint holds model/ and optimizer/ arrays)."
            )
        if array.dtype.name != meta["dtype"]:
            raise FileFormatError(
                f"{path}: tensor {name!r} is {array.dtype.name}; the checkpoint's dtype is {meta['dtype']}."
            )
        groups[group][key] = array
    model, optimizer = groups["model"], groups["optimizer"]
    for key, array in optimizer.items():
        param = model.get(key.partition("/")[2])
        if param is None or param.shape != array.shape:
            found = "no such model tensor" if param is None else f"the parameter has shape {param.shape}"
            raise FileFormatError(f"{path}: optimizer state {key!r} of shape {array.shape} does not fit ({found}).")
    return Checkpoint(meta, model, optimizer, str(path))


def _check_optimizer_state(checkpoint: Checkpoint, model: Sequential, optimizer: Optimizer) -> None:
    """The checkpoint holds ``optimizer``'s kind of state: none yet, or every state of it for
    every parameter of ``model``, and nothing else."""
    saved_type = checkpoint.meta.get("optimizer", {}).get("type")
    if saved_type != type(optimizer).__name__:
        raise ValueError(f"checkpoint holds {saved_type} state; cannot load it into {type(optimizer).__name__}.")
    foreign = sorted({key.partition("/")[0] for key in checkpoint.optimizer} - set(optimizer.state_names))
    if foreign:
        raise ValueError(f"checkpoint holds optimizer state {foreign}, which this {saved_type} does not keep.")
    if not checkpoint.optimizer:  # saved before the first step
        return
    needed = {f"{which}/{name}" for which in optimizer.state_names for name in model.parameters()}
    problems = [f"no {key}" for key in sorted(needed - set(checkpoint.optimizer))]
    problems += [f"unexpected {key}" for key in sorted(set(checkpoint.optimizer) - needed)]
    if problems:
        more = f" and {len(problems) - 8} more" if len(problems) > 8 else ""
        raise FileFormatError(
            f"{checkpoint.path}: the optimizer state does not cover the model's parameters: "
            + "; ".join(problems[:8])
            + f"{more}."
        )


def _check_fits(checkpoint: Checkpoint, model: Sequential) -> None:
    """The checkpoint's tensors are exactly the model's state, shape for shape."""
    mine = {k: tuple(v.shape) for k, v in model.state().items()}
    saved = {k: tuple(v.shape) for k, v in checkpoint.model.items()}
    problems = [f"missing tensor {k}" for k in mine if k not in saved]
    problems += [f"unexpected tensor {k}" for k in saved if k not in mine]
    problems += [
        f"{k} has shape {saved[k]}, the model needs {shape}"
        for k, shape in mine.items()
        if saved.get(k, shape) != shape
    ]
    if problems:
        raise FileFormatError(
            f"{checkpoint.path}: tensors do not fit the layers it names: " + "; ".join(problems) + "."
        )
