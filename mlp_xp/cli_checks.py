"""Checks of the ``mlp-xp`` command's arguments, run before any work starts.

``check_arguments`` validates what the arguments alone decide: counts and sizes in range,
conflicting flags, input paths that exist, output paths that can be written (the nearest
existing directory is probed with a real temporary file, so a read-only directory or file system
is reported before an hour of training). The ``check_*_against_*`` helpers validate what needs the
data or the checkpoint, right after loading them and before training or predicting. Every
failure is a ``UsageError`` with one line that names the flag.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import re
import tempfile
from pathlib import Path

__all__ = [
    "UsageError",
    "check_arguments",
    "check_epochs_against_checkpoint",
    "check_input_file",
    "check_data_against_model",
    "check_predict_range",
    "check_val_split",
]


class UsageError(ValueError):
    """A command-line argument is out of range, conflicts with another, or names an unusable path."""


def check_arguments(args: argparse.Namespace) -> None:
    """Raise ``UsageError`` for the first argument of ``args`` that cannot work."""
    checks = {
        "train": _check_train,
        "eval": _check_eval,
        "predict": _check_predict,
        "export": _check_export,
        "bench": _check_bench,
    }
    if args.command in checks:
        checks[args.command](args)


def check_epochs_against_checkpoint(epochs: int, done: int, path: str) -> None:
    """``--epochs`` counts all epochs of a resumed run: it must exceed those already done."""
    if epochs <= done:
        raise UsageError(f"--epochs {epochs}: {path} already holds {done} epoch{'s' * (done != 1)}, "
                         f"so nothing is left to train; ask for more than {done}")


ORDER_ARGUMENTS = ("dataset", "synthetic_size", "val_split", "seed", "no_shuffle", "batch_size")
"""train's arguments that decide which samples each step of an epoch takes."""


def check_order_against_checkpoint(args: argparse.Namespace, config: dict, path: str) -> None:
    """A run stopped inside an epoch continues after the batches it ran: with their samples."""
    for name in ORDER_ARGUMENTS:
        saved, given = config.get(name), getattr(args, name)
        if name in config and saved != given:
            flag = "--" + name.replace("_", "-")
            raise UsageError(f"{flag} {given}: {path} stopped inside an epoch whose batches came from {flag} {saved}, "
                             f"so it continues with {flag} {saved}")


def check_val_split(n_val: int, n_train: int) -> None:
    """``--val-split`` must leave at least one training sample."""
    if n_val >= n_train:
        raise UsageError(f"--val-split {n_val} leaves no training samples: the training set has {n_train}")


def check_predict_range(start: int, count: int, n: int) -> None:
    """``--start`` and ``--count`` must select test samples that exist."""
    if start >= n:
        raise UsageError(f"--start {start} is past the end of the test set ({n} samples, indices 0 to {n - 1})")
    if start + count > n:
        raise UsageError(f"--count {count} from --start {start} goes past the end of the test set ({n} samples); "
                         f"at most {n - start} are left")


def check_data_against_model(path: str, model_config: dict, data_name: str, features: int, classes: int) -> None:
    """The checkpoint's model and the dataset must agree on the input features and the classes."""
    for what, model_has, data_has in (
        ("input features", model_config["in_features"], features),
        ("classes", model_config["out_features"], classes),
    ):
        if model_has != data_has:
            raise UsageError(f"{path} holds a model of {model_has} {what}, but {data_name} has {data_has}; "
                             "choose the dataset it was trained on (--dataset, --data-dir)")


# -- per command ---------------------------------------------------------------------------


def _check_train(args: argparse.Namespace) -> None:
    _check_data_args(args)
    _at_least("--epochs", args.epochs, 1, "nothing would be trained")
    _at_least("--batch-size", args.batch_size, 1)
    _at_least("--seed", args.seed, 0)
    for width in args.hidden:
        _at_least("--hidden", width, 1, "every hidden layer needs a width")
    if not 0 <= args.dropout < 1:
        raise UsageError(f"--dropout {args.dropout} is not a probability in [0, 1)")
    if args.lr is not None:
        _positive("--lr", args.lr)
    _positive("--init-std", args.init_std)
    if not 0 <= args.momentum < 1:
        raise UsageError(f"--momentum {args.momentum} is not in [0, 1)")
    if args.momentum and args.optimizer != "sgd":
        raise UsageError(f"--momentum is an sgd option; --optimizer {args.optimizer} keeps its own moments")
    if args.nesterov and (args.optimizer != "sgd" or not args.momentum):
        raise UsageError("--nesterov needs --optimizer sgd with --momentum above 0")
    if not (math.isfinite(args.weight_decay) and args.weight_decay >= 0):
        raise UsageError(f"--weight-decay {args.weight_decay} must be a finite number >= 0")
    if not 0 < args.lr_gamma <= 1:
        raise UsageError(f"--lr-gamma {args.lr_gamma} is not a decay factor in (0, 1]")
    _at_least("--lr-step", args.lr_step, 1)
    _at_least("--val-split", args.val_split, 0)
    if args.resume:
        check_input_file("--resume", args.resume)
    outputs = {"--save": args.save, "--metrics-json": args.metrics_json, "--plot": args.plot}
    saves_back = bool(args.resume) and "save" not in args.given  # cmd_train then sets --save to --resume's file
    for flag, path in outputs.items():
        if path:
            _output_file(flag, path, SAVES_BACK if flag == "--save" and saves_back else "")
    if args.plot:
        _png_with_matplotlib("--plot", args.plot)
    # --save may overwrite the checkpoint it resumed from (it does unless given); the other outputs may not
    _distinct({"--resume": args.resume, "--metrics-json": args.metrics_json, "--plot": args.plot})
    _distinct(outputs)


def _check_eval(args: argparse.Namespace) -> None:
    _check_data_args(args)
    check_input_file("--load", args.load)
    _at_least("--batch-size", args.batch_size, 1)


def _check_predict(args: argparse.Namespace) -> None:
    _check_data_args(args)
    check_input_file("--load", args.load)
    _at_least("--count", args.count, 1)
    _at_least("--start", args.start, 0)
    _output_file("--out", args.out)
    _png_with_matplotlib("--out", args.out)
    _distinct({"--load": args.load, "--out": args.out})


def _check_export(args: argparse.Namespace) -> None:
    check_input_file("--load", args.load)
    _output_file("--out", args.out)
    _distinct({"--load": args.load, "--out": args.out})


def _check_bench(args: argparse.Namespace) -> None:
    _at_least("--rounds", args.rounds, 1)
    _at_least("--samples", args.samples, 1)
    for size in args.batch_size or ():
        _at_least("--batch-size", size, 1)
    for spec in args.hidden or ():
        if not re.fullmatch(r"[1-9]\d*([,-][1-9]\d*)*", spec):
            raise UsageError(f"--hidden {spec} is not a model: give hidden widths such as 256 or 1024,1024")
    if args.json:
        _output_file("--json", args.json)


def _check_data_args(args: argparse.Namespace) -> None:
    if args.dataset == "synthetic":
        if args.data_dir:
            raise UsageError("--data-dir conflicts with --dataset synthetic, which generates its data")
        _at_least("--synthetic-size", args.synthetic_size, 1)
        return
    if args.dataset == "idx" and not args.data_dir:
        raise UsageError("--dataset idx reads your own IDX files: give their directory with --data-dir")
    if args.data_dir and not Path(args.data_dir).expanduser().is_dir():
        raise UsageError(f"--data-dir {args.data_dir} is not a directory")


# -- single checks --------------------------------------------------------------------------


def _at_least(flag: str, value: int, minimum: int, why: str = "") -> None:
    if value < minimum:
        raise UsageError(f"{flag} {value} is below {minimum}" + (f": {why}" if why else ""))


def _positive(flag: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise UsageError(f"{flag} {value} must be a finite number above 0")


def check_input_file(flag: str, path: str) -> None:
    """``path`` is a regular file (a checkpoint is read with seeks: a FIFO would block)."""
    target = Path(path)
    if target.is_dir():
        raise UsageError(f"{flag} {path} is a directory, not a file")
    if not target.exists():
        raise UsageError(f"{flag} {path}: no such file")
    if not target.is_file():
        raise UsageError(f"{flag} {path} is not a regular file (a FIFO, socket or device)")


SAVES_BACK = "a resumed run saves back to its --resume file unless --save names another"


def _output_file(flag: str, path: str, note: str = "") -> None:
    """``path`` is not a directory, and its directory (or, when that does not exist yet, its
    nearest existing ancestor, where the missing directories would be created) accepts a file;
    ``note`` ends a refusal."""
    target, end = Path(path), f"; {note}" if note else ""
    if target.is_dir():
        raise UsageError(f"{flag} {path} is a directory; give a file name inside it{end}")
    existing = next(parent for parent in target.absolute().parents if parent.exists())
    if not existing.is_dir():
        raise UsageError(f"{flag} {path}: {existing} is a file, not a directory{end}")
    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".mlp-xp-write-test-")
    except OSError as exc:
        raise UsageError(f"{flag} {path}: cannot write in {existing} ({exc.strerror}){end}") from None
    os.close(fd)
    os.unlink(probe)


def _png_with_matplotlib(flag: str, path: str) -> None:
    if Path(path).suffix.lower() != ".png":
        raise UsageError(f"{flag} {path}: figures are written as PNG; give a path ending in .png")
    if importlib.util.find_spec("matplotlib") is None:
        raise UsageError(f'{flag} needs matplotlib: pip install "mlp-xp[plot]"')


def _distinct(paths: dict[str, str | None]) -> None:
    """No two of the flags name the same file."""
    seen: dict[Path, str] = {}
    for flag, path in ((flag, path) for flag, path in paths.items() if path):
        resolved = Path(path).expanduser().resolve()
        if resolved in seen:
            raise UsageError(f"{seen[resolved]} and {flag} name the same file {path}; one would overwrite the other")
        seen[resolved] = flag

