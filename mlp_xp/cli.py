"""The ``mlp-xp`` command: train, eval, predict, info, bench.

Exit codes: 0 done; 1 the run failed (training diverged, an output could not be written, memory ran out);
2 a usage or input error (a bad argument, an unreadable file, a missing dataset or device);
130 interrupted (Ctrl-C). Every error is one line on stderr, ``mlp-xp <command>: error: ...``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from typing import Any

import numpy as np

from . import __version__
from .backends import Backend, BackendUnavailableError, available_backends, get_backend
from .checkpoint import Checkpoint, load_checkpoint, restore, save_checkpoint
from .cli_checks import (
    UsageError,
    check_arguments,
    check_data_against_model,
    check_epochs_against_checkpoint,
    check_input_file,
    check_order_against_checkpoint,
    check_predict_range,
    check_val_split,
)
from .data import DatasetNotFoundError, DeviceLoader, load_dataset, load_idx_dir, synthetic, train_val_split
from .distributed import (
    Communicator,
    DistributedUnavailableError,
    mpi_description,
    per_rank_dropout,
    rank_backend,
    report_failure,
    synchronise_batchnorm,
    world,
)
from .errors import FileFormatError
from .files import write_atomically
from .losses import SoftmaxCrossEntropy
from .mlp import ACTIVATIONS, make_mlp
from .optim import SGD, Adam, AdamW, Optimizer, get_schedule
from .train import EpochProgress, TrainingDiverged, evaluate, fit, resume_point, train_step

DATASETS = ("fashion-mnist", "mnist", "synthetic", "idx")
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
PREDICT_GRID_MAX = 64
"""Most images ``predict`` draws (the first ones); every prediction is still printed."""


class RunFailed(RuntimeError):
    """The run could not write one of its outputs (a full disk, an I/O error) or ran out of memory: exit code 1."""


class _DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Help that ends with each option's default, except None and a flag's False (nothing to show)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line on stderr (exit code 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dataset",
        choices=DATASETS,
        default="fashion-mnist",
        help="idx: the four MNIST-named IDX files of your own data in --data-dir",
    )
    p.add_argument(
        "--data-dir",
        help="directory holding the four IDX files (default: search $MLP_XP_DATA, the cache, /usr/share/datasets)",
    )
    p.add_argument("--synthetic-size", type=int, default=12000, help="training samples of --dataset synthetic")
    p.add_argument(
        "--device",
        default="auto",
        help="auto, cpu, cuda, cuda:N, torch, torch:cuda, jax, jax:cuda, array-api-strict[:device1]",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mlp-xp", description="Train multilayer perceptrons on any Array API library.")
    parser.add_argument("--version", action="version", version=f"mlp-xp {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train an MLP classifier", formatter_class=_DefaultsFormatter)
    _add_data_args(t)
    t.add_argument("--hidden", type=int, nargs="+", default=[256], help="hidden layer widths")
    t.add_argument("--activation", choices=sorted(ACTIVATIONS), default="relu", help="after each hidden Linear")
    t.add_argument("--batchnorm", action="store_true", help="BatchNorm after each hidden Linear")
    t.add_argument(
        "--sync-batchnorm",
        action="store_true",
        help="under mpiexec: BatchNorm statistics over the global batch (default: each process's own part)",
    )
    t.add_argument("--dropout", type=float, default=0.0, help="dropout probability after each hidden activation")
    t.add_argument("--init", choices=("normal", "uniform", "he", "xavier"), default="he", help="weight initialiser")
    t.add_argument("--init-std", type=float, default=0.01, help="std of --init normal")
    t.add_argument("--dtype", choices=("float32", "float64"), default="float32", help="of parameters and batches")
    t.add_argument("--optimizer", choices=("sgd", "adam", "adamw"), default="adam", help="update rule")
    t.add_argument("--lr", type=float, help="learning rate (default: 0.1 for sgd, 0.001 for adam/adamw)")
    t.add_argument("--momentum", type=float, default=0.0, help="of --optimizer sgd")
    t.add_argument("--nesterov", action="store_true", help="Nesterov momentum (sgd)")
    t.add_argument(
        "--weight-decay", type=float, default=0.0, help="on weights only (L2 for sgd/adam, decoupled for adamw)"
    )
    t.add_argument(
        "--lr-decay", choices=("none", "step", "exp", "cosine"), default="none", help="learning-rate schedule per epoch"
    )
    t.add_argument("--lr-gamma", type=float, default=0.5, help="factor of --lr-decay step/exp")
    t.add_argument("--lr-step", type=int, default=1, help="epochs between --lr-decay step decays")
    t.add_argument("--batch-size", type=int, default=256, help="samples per training step")
    t.add_argument("--epochs", type=int, default=10, help="epochs in all (a resumed run counts those it holds)")
    t.add_argument("--no-shuffle", action="store_true", help="keep the training set's order in every epoch")
    t.add_argument(
        "--val-split",
        type=int,
        default=0,
        metavar="N",
        help="hold out N training samples for per-epoch validation; test set evaluated once at the end",
    )
    t.add_argument(
        "--seed", type=int, default=0, help="of initialisation, shuffling, dropout, --val-split and synthetic data"
    )
    t.add_argument("--save", metavar="PATH", help="checkpoint after every epoch (and on Ctrl-C)")
    t.add_argument("--resume", metavar="PATH", help="continue the run saved in this checkpoint")
    t.add_argument("--metrics-json", metavar="PATH", help="write config and per-epoch metrics as JSON")
    t.add_argument("--plot", metavar="PATH.png", help="write loss/accuracy curves")
    t.add_argument("--quiet", action="store_true", help="no progress bar and no per-epoch lines; only the result")
    t.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="trace the training step once and run it compiled (jax: a whole epoch as one XLA program; torch: "
        "torch.compile); jax, jax:cuda, torch and torch:cuda only",
    )
    t.add_argument(
        "--no-divergence-check",
        action="store_true",
        help="train on when the loss grows beyond 100x max(first epoch's loss, ln(classes)) (NaN/inf still stop)",
    )

    e = sub.add_parser("eval", help="evaluate a checkpoint on a test set", formatter_class=_DefaultsFormatter)
    e.add_argument("--load", required=True, metavar="PATH")
    _add_data_args(e)
    e.add_argument("--batch-size", type=int, default=1000, help="test samples per forward pass")

    p = sub.add_parser(
        "predict", help="predict a few test images and draw them with their labels", formatter_class=_DefaultsFormatter
    )
    p.add_argument("--load", required=True, metavar="PATH")
    _add_data_args(p)
    p.add_argument("--count", type=int, default=16, help="test images to predict")
    p.add_argument("--start", type=int, default=0, help="index of the first test image")
    p.add_argument("--out", default="predictions.png", help="PNG grid of images with predicted/true names")

    x = sub.add_parser(
        "export",
        help="write a checkpoint's model as ONNX or as a torch state_dict (safetensors)",
        formatter_class=_DefaultsFormatter,
    )
    x.add_argument("--load", required=True, metavar="CKPT")
    x.add_argument("--format", choices=("onnx", "torch"), required=True)
    x.add_argument("-o", "--out", required=True, metavar="PATH")
    x.add_argument("--class-names", nargs="+", metavar="NAME", help="ONNX metadata (default: the dataset's)")
    x.add_argument("--opset", type=int, default=17, help="ONNX opset (17 or newer)")
    x.set_defaults(device="cpu")

    sub.add_parser("info", help="backends, devices, versions, BLAS threads and datasets found")

    from .bench import add_bench_arguments

    add_bench_arguments(sub.add_parser("bench", help="measure training epoch throughput per backend"))
    return parser


def given_options(argv: Sequence[str] | None, command: str) -> frozenset[str]:
    """The destinations of the options that ``argv`` (of ``command``) gives explicitly."""
    parser = build_parser()
    for action in _command_actions(parser, command):
        action.default = argparse.SUPPRESS
    return frozenset(vars(parser.parse_args(argv))) - {"command"}


def _command_actions(parser: argparse.ArgumentParser, command: str) -> list[argparse.Action]:
    """The options of ``parser``'s subcommand ``command``."""
    (commands,) = parser._subparsers._group_actions  # argparse keeps the subcommands' parsers there
    return commands.choices[command]._actions


ROOT_ONLY = frozenset({"eval", "predict", "export", "info"})
"""Commands that involve no other process: under an MPI launcher rank 0 alone runs them (the
others would print and write the same)."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command of ``argv``; returns the exit code (see the module docstring). Under an MPI
    launcher, a failure on any process ends every process (its message printed by the process
    that failed), so that none waits forever."""
    args = build_parser().parse_args(argv)
    if args.command in ("train", "eval", "predict"):  # their checkpoints say which run and data they belong to
        args.given = given_options(argv, args.command)
    comm = Communicator()
    try:
        comm = world()
        if (checkpoint := _checkpoint_path(args)) is None:
            check_arguments(args)
        else:  # the arguments not given come from the checkpoint: they are checked once taken
            check_input_file(*checkpoint)
        if args.command in ROOT_ONLY and not comm.is_root:  # under mpiexec rank 0 alone runs these
            return EXIT_OK
        with np.errstate(all="ignore"), _one_line_warnings(args.command):  # a NaN loss is reported as one error
            return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print(f"mlp-xp {args.command}: interrupted", file=sys.stderr)
        comm.abort_others(EXIT_INTERRUPTED)
        return EXIT_INTERRUPTED
    except (TrainingDiverged, RunFailed) as exc:
        return _error(args, comm, exc, EXIT_FAILED)
    except MemoryError as exc:  # NumPy's names the array it could not allocate
        failed = RunFailed(
            f"out of memory ({str(exc) or 'an allocation failed'}); try a smaller dataset, batch or model"
        )
        return _error(args, comm, failed, EXIT_FAILED)
    except (
        BackendUnavailableError,
        DatasetNotFoundError,
        DistributedUnavailableError,
        ImportError,
        ValueError,
        OSError,
    ) as exc:
        return _error(args, comm, exc, EXIT_USAGE)
    except Exception:
        report_failure(comm)
        raise


def _checkpoint_path(args: argparse.Namespace) -> tuple[str, str] | None:
    """The flag and path of the checkpoint whose config gives ``args`` the values not given
    (``train --resume``, ``eval`` and ``predict``), or None."""
    if args.command == "train" and args.resume:
        return "--resume", args.resume
    if args.command in ("eval", "predict"):
        return "--load", args.load
    return None


def _error(args: argparse.Namespace, comm: Communicator, exc: BaseException, code: int) -> int:
    """Print the one-line error (naming the process under MPI) and end every process of the run."""
    where = f" (rank {comm.rank} of {comm.size})" if comm.size > 1 else ""
    print(f"mlp-xp {args.command}: error{where}: {exc}", file=sys.stderr)
    comm.abort_others(code)
    return code


@contextlib.contextmanager
def _one_line_warnings(command: str) -> Iterator[None]:
    """Warnings as one line on stderr each, ``mlp-xp <command>: warning: ...``."""
    with warnings.catch_warnings():
        warnings.showwarning = lambda message, *_, **__: print(f"mlp-xp {command}: warning: {message}", file=sys.stderr)
        yield


@contextlib.contextmanager
def _writing(what: str, path: str | os.PathLike) -> Iterator[None]:
    """Turn an OSError while writing ``path`` into ``RunFailed`` (all writes are atomic, so the
    file there before is untouched)."""
    try:
        yield
    except OSError as exc:
        raise RunFailed(
            f"could not write {what} {path}: {exc.strerror or exc}; the file there before, if any, is unchanged"
        ) from exc


# -- train ----------------------------------------------------------------------------------


def _load_data(args: argparse.Namespace, seed: int):
    if args.dataset == "synthetic":
        return synthetic(args.synthetic_size, seed=seed, n_test=max(1, args.synthetic_size // 6))
    if args.dataset == "idx":
        return load_idx_dir(args.data_dir)
    return load_dataset(args.dataset, args.data_dir)


def _make_optimizer(args: argparse.Namespace, model) -> Optimizer:
    schedule = get_schedule(args.lr_decay, args.epochs, gamma=args.lr_gamma, step=args.lr_step)
    if args.optimizer == "sgd":
        return SGD(
            model,
            args.lr,
            momentum=args.momentum,
            nesterov=args.nesterov,
            weight_decay=args.weight_decay,
            schedule=schedule,
        )
    cls = Adam if args.optimizer == "adam" else AdamW
    return cls(model, args.lr, weight_decay=args.weight_decay, schedule=schedule)


class _EpochWriter:
    """Per-epoch side effects of ``train``: checkpoint and metrics JSON, rewritten each epoch
    so that nothing is lost when a run stops."""

    def __init__(self, args, config, model_config, optimizer, history_before):
        self.args, self.config, self.model_config = args, config, model_config
        self.optimizer = optimizer
        self.records = list(history_before)

    def on_epoch_end(self, epoch: int, record: dict[str, Any], model) -> None:
        self.records.append(record)
        if self.args.save:
            self.save(model, epoch + 1, partial=False)
        if self.args.metrics_json:
            write_json(self.args.metrics_json, {"config": self.config, "epochs": self.records})

    def save(self, model, epoch: int, partial: bool, progress: list[EpochProgress] | None = None) -> None:
        with _writing("the checkpoint", self.args.save):
            save_checkpoint(
                self.args.save,
                model,
                self.optimizer,
                epoch=epoch,
                config=self.config,
                model_config=self.model_config,
                history=self.records,
                partial=partial,
                progress=None if progress is None else [asdict(p) for p in progress],
            )


RUN_ARGUMENTS = (
    "dataset", "data_dir", "synthetic_size", "hidden", "activation", "batchnorm", "sync_batchnorm", "dropout", "init",
    "init_std", "dtype", "optimizer", "lr", "momentum", "nesterov", "weight_decay", "lr_decay", "lr_gamma", "lr_step",
    "batch_size", "no_shuffle", "val_split", "seed", "device", "compile",
)  # fmt: skip
"""train's arguments that define a run: ``--resume`` takes from the checkpoint those not given."""


def _continue_run(
    args: argparse.Namespace, saved: dict[str, Any], path: str, names: Sequence[str] = RUN_ARGUMENTS
) -> list[str]:
    """Continue the checkpoint's run: each argument of ``names`` not given on the command line
    takes the value the run was started with (``saved``, the config of the checkpoint at
    ``path``); returns the given ones that differ from it, as ``--flag value (was saved)`` for
    the log. Values the command line could not have given raise ``FileFormatError``."""
    changed, taken = [], []
    for name in names:
        if name not in saved:
            continue
        if name not in args.given:
            setattr(args, name, saved[name])
            taken.append(name)
        elif getattr(args, name) != saved[name]:
            changed.append(f"--{name.replace('_', '-')} {getattr(args, name)} (was {saved[name]})")
    _check_taken(args, taken, path)
    return changed


def _check_taken(args: argparse.Namespace, names: list[str], path: str) -> None:
    """``FileFormatError`` naming ``path`` unless the values ``names`` took from its config are of
    their options' types and choices; ``UsageError`` naming them where the command line's checks
    then fail (a value out of range, or at odds with a given one or with this machine)."""
    actions = {action.dest: action for action in _command_actions(build_parser(), args.command)}
    invalid = [f"{name}={getattr(args, name)!r}" for name in names if not _fits(actions[name], getattr(args, name))]
    if invalid:
        raise _altered(path, f"its config has invalid {', '.join(invalid)}")
    try:
        check_arguments(args)
    except UsageError as exc:
        untaken = argparse.Namespace(**{**vars(args), **{name: actions[name].default for name in names}})
        try:
            check_arguments(untaken)
        except UsageError:  # the given arguments fail by themselves
            raise exc from None
        # a taken value out of range, or at odds with a given one or with this machine
        raise UsageError(f"{exc} (the arguments not given are taken from {path})") from None


def _altered(path: str, what: str) -> FileFormatError:
    return FileFormatError(f"{path}: {what}; the file was not written by `mlp-xp train` or has been altered.")


def _fits(action: argparse.Action, value: Any) -> bool:
    """Whether ``value`` is one that ``action`` (an option of ``build_parser``) can produce."""
    if isinstance(action, (argparse._StoreTrueAction, argparse.BooleanOptionalAction)):
        return isinstance(value, bool)
    if value is None:
        return action.default is None
    if action.nargs == "+":
        return isinstance(value, list) and bool(value) and all(_fits_one(action, v) for v in value)
    return _fits_one(action, value)


def _fits_one(action: argparse.Action, value: Any) -> bool:
    kind = {int: (int,), float: (int, float)}.get(action.type, (str,))
    typed = isinstance(value, kind) and not isinstance(value, bool)
    return typed and (action.choices is None or value in action.choices)


def cmd_train(args: argparse.Namespace) -> int:
    comm = world()
    if args.resume and "save" not in args.given:  # a resumed run goes on saving where it was saved
        args.save = args.resume
    if not comm.is_root:  # under mpiexec rank 0 alone prints and writes files
        args = argparse.Namespace(**{**vars(args), "quiet": True, "save": None, "metrics_json": None, "plot": None})
    log = (lambda line: None) if args.quiet else print
    checkpoint = load_checkpoint(args.resume) if args.resume else None
    changed: list[str] = []
    if checkpoint is not None:
        check_epochs_against_checkpoint(args.epochs, checkpoint.meta["epoch"], args.resume)
        changed = _continue_run(args, checkpoint.meta["config"], args.resume)
        if checkpoint.meta["progress"]:
            check_order_against_checkpoint(args, checkpoint.meta["config"], args.resume)
    backend = rank_backend(args.device, comm)
    if args.dtype not in backend.float_dtypes:
        held = "" if "dtype" in args.given else f", and {args.resume} holds a {args.dtype} run"
        raise UsageError(f"{backend.spec} has no {args.dtype} on its device{held}; give --dtype float32")
    if args.compile and not backend.compiles:
        if "compile" not in args.given:  # taken from --resume's checkpoint
            raise UsageError(f"{backend.spec} has no compiler, and {args.resume} holds a compiled run; "
                             "give --no-compile to resume it eagerly here.")
        backend.compile_step(train_step)  # raises the one-line CompileUnsupportedError, before any work
    data = _load_data(args, args.seed)
    if args.val_split:
        check_val_split(args.val_split, len(data.x_train))
    if args.lr is None:
        args.lr = 0.1 if args.optimizer == "sgd" else 1e-3
    config = {k: v for k, v in vars(args).items() if k not in ("command", "given")}
    config["backend"] = backend.spec
    config["processes"] = comm.size
    model_config = {
        "in_features": data.x_train.shape[1],
        "hidden": args.hidden,
        "out_features": len(data.class_names),
        "activation": args.activation,
        "batchnorm": args.batchnorm,
        "dropout": args.dropout,
        "init": args.init,
        "init_std": args.init_std,
    }
    model = make_mlp(**model_config).init(backend, seed=args.seed, dtype=args.dtype)
    per_rank_dropout(model, comm)
    if args.sync_batchnorm:
        synchronise_batchnorm(model, comm)
    optimizer = _make_optimizer(args, model)
    start_epoch, history_before, resume = 0, [], None
    if checkpoint is not None:
        restore(checkpoint, model, optimizer)
        start_epoch, history_before = checkpoint.meta["epoch"], checkpoint.meta["history"]
        if checkpoint.meta["progress"]:
            resume = resume_point([EpochProgress(**p) for p in checkpoint.meta["progress"]], comm)
            log(f"resumed {args.resume} in epoch {start_epoch + 1}, after step {resume.steps}; saving to {args.save}")
        else:
            log(f"resumed {args.resume} after epoch {start_epoch}; saving to {args.save}")
        if changed:
            log("changed on resuming: " + ", ".join(changed))
    x_train, y_train = data.x_train, data.y_train
    if args.val_split:
        (x_train, y_train), (x_val, y_val) = train_val_split(x_train, y_train, args.val_split, seed=args.seed)
    classes = len(data.class_names)
    train_loader = DeviceLoader(
        x_train,
        y_train,
        backend,
        batch_size=args.batch_size,
        shuffle=not args.no_shuffle,
        seed=args.seed,
        dtype=args.dtype,
        num_classes=classes,
        scale=data.scale,
        comm=comm,
    )
    test_loader = _held_out_loader(data.x_test, data.y_test, backend, args.dtype, data, comm=comm)
    val_loader = test_loader
    if args.val_split:
        val_loader = _held_out_loader(x_val, y_val, backend, args.dtype, data, comm=comm)
    processes = f"; {comm.size} processes, global batch {args.batch_size}" if comm.size > 1 else ""
    log(
        f"{data.name}: {len(x_train)} train / {val_loader.n} {'val' if args.val_split else 'test'} samples "
        f"from {data.source}; backend {backend.spec} ({backend.device}), {args.dtype}{processes}"
    )
    if not args.quiet:
        print(model.summary())
    writer = _EpochWriter(args, config, model_config, optimizer, history_before)
    loss = SoftmaxCrossEntropy(check_labels=False)  # the loaders validated the labels once
    started = time.perf_counter()
    history = fit(
        model,
        loss,
        optimizer,
        train_loader,
        epochs=args.epochs,
        val_loader=val_loader,
        val_name="val" if args.val_split else "test",
        callbacks=[writer],
        progress=not args.quiet,
        start_epoch=start_epoch,
        log=log,
        divergence_check=not args.no_divergence_check,
        compile=args.compile,
        resume=resume,
    )
    elapsed = time.perf_counter() - started
    if history.interrupted and args.save:
        writer.save(model, start_epoch + len(history.epochs), partial=True, progress=history.progress)
        print(f"saved {args.save}; continue with --resume {args.save}", file=sys.stderr)
    records = writer.records
    final = {}
    if args.val_split and records and not history.interrupted:
        final = evaluate(model, loss, test_loader)
    if args.metrics_json:
        write_json(
            args.metrics_json,
            {
                "config": config,
                "epochs": records,
                "final_test": final or None,
                "seconds": elapsed,
                "interrupted": history.interrupted,
            },
        )
    if args.plot and records:
        from .plotting import plot_history

        with _writing("the plot", args.plot):
            plot_history(records, args.plot, title=f"{data.name} {args.hidden} {args.optimizer} lr={args.lr}")
    if records and comm.is_root and not history.interrupted:  # else the message above says where it stopped
        acc = final["acc"] if final else records[-1]["test_acc"]
        ran = len(history.epochs)
        print(f"done: {ran} epoch{'s' * (ran != 1)} in {elapsed:.1f} s; test accuracy {acc:.4f}")
    return EXIT_INTERRUPTED if history.interrupted else EXIT_OK


def _held_out_loader(
    x, y, backend: Backend, dtype: str, data, batch_size: int = 1000, comm: Communicator | None = None
) -> DeviceLoader:
    """An unshuffled loader for evaluation on ``backend``, in batches of at most ``batch_size``,
    shared out across ``comm``'s processes (see ``_shared_batch_size``)."""
    batch_size, comm = _shared_batch_size(x.shape[0], batch_size, comm)
    return DeviceLoader(
        x,
        y,
        backend,
        batch_size=batch_size,
        shuffle=False,
        dtype=dtype,
        num_classes=len(data.class_names),
        scale=data.scale,
        comm=comm,
    )


def _shared_batch_size(n: int, most: int, comm: Communicator | None) -> tuple[int, Communicator | None]:
    """(batch size, communicator) for evaluating ``n`` samples across ``comm``'s processes: the
    largest batch size up to ``most`` that gives every process a part of every batch (the
    loader's rule); where there is none (fewer samples than processes), every process
    evaluates the whole set on its own (no communicator)."""
    size = 1 if comm is None else comm.size
    for batch_size in range(min(most, n), size - 1, -1):
        if n % batch_size == 0 or n % batch_size >= size:
            return batch_size, comm
    return min(most, n), None


def write_json(path: str | os.PathLike, document: dict[str, Any]) -> None:
    """Write JSON atomically (see ``write_atomically``); ``RunFailed`` when that is impossible."""
    with _writing("the metrics JSON", path):
        write_atomically(path, json.dumps(document, indent=1).encode())


# -- eval / predict -------------------------------------------------------------------------


def _count(value: Any) -> bool:
    return type(value) is int and value >= 1


def _number(value: Any) -> bool:
    return type(value) in (int, float) and math.isfinite(value)


MODEL_CONFIG = {
    "in_features": _count,
    "hidden": lambda v: type(v) is list and all(map(_count, v)),
    "out_features": _count,
    "activation": lambda v: type(v) is str,
    "batchnorm": lambda v: type(v) is bool,
    "dropout": lambda v: _number(v) and 0 <= v < 1,
    "init": lambda v: type(v) is str,
    "init_std": lambda v: _number(v) and v > 0,
}
"""``make_mlp``'s arguments, as a checkpoint's ``model_config`` holds them, and what each must be."""


def _check_model_config(path: str, config: dict[str, Any]) -> None:
    """``FileFormatError`` naming ``path`` unless ``config`` holds ``make_mlp``'s three required
    arguments and no others than ``MODEL_CONFIG``'s, each of its type and range."""
    missing = [key for key in ("in_features", "hidden", "out_features") if key not in config]
    unknown = [key for key in config if key not in MODEL_CONFIG]
    bad = [f"{key}={config[key]!r:.40}" for key in config if key in MODEL_CONFIG and not MODEL_CONFIG[key](config[key])]
    problems = [
        f"{what} {', '.join(keys)}"
        for what, keys in (("lacks", missing), ("has unknown", unknown), ("has invalid", bad))
        if keys
    ]
    if problems:
        raise _altered(path, f"its model_config {'; '.join(problems)}")


def _load_model(args: argparse.Namespace) -> tuple[Any, Backend, Checkpoint]:
    checkpoint = load_checkpoint(args.load)
    model_config = checkpoint.meta.get("model_config")
    if not model_config:
        raise ValueError(f"{args.load} has no model config; it was not written by `mlp-xp train`.")
    _check_model_config(args.load, model_config)
    backend = get_backend(args.device)
    dtype = checkpoint.meta["dtype"]
    if dtype not in backend.float_dtypes:
        raise UsageError(f"{args.load} holds a {dtype} model, and {backend.spec} has no {dtype} on its device; "
                         "choose a --device that has it (e.g. --device cpu)")
    try:
        architecture = make_mlp(**model_config)
    except ValueError as exc:  # an unknown activation or initialiser
        raise FileFormatError(f"{args.load}: its model_config does not describe an MLP: {exc}") from exc
    model = architecture.init(backend, dtype=dtype)
    restore(checkpoint, model)
    return model.eval(), backend, checkpoint


def _load_test_data(args: argparse.Namespace, checkpoint: Checkpoint):
    """The dataset of ``args``, checked to fit the checkpoint's model; the data arguments not
    given are the ones the checkpoint was trained on."""
    saved = checkpoint.meta["config"]
    _continue_run(args, saved, args.load, ("dataset", "data_dir", "synthetic_size"))
    seed = saved.get("seed", 0)
    if not (type(seed) is int and seed >= 0):  # bool is an int subclass
        raise _altered(args.load, f"its config has invalid seed={seed!r}")
    data = _load_data(args, seed)
    check_data_against_model(args.load, checkpoint.meta["model_config"], data.name, data.n_features, data.n_classes)
    return data


def cmd_eval(args: argparse.Namespace) -> int:
    model, backend, checkpoint = _load_model(args)
    data = _load_test_data(args, checkpoint)
    loader = _held_out_loader(data.x_test, data.y_test, backend, model.dtype, data, batch_size=args.batch_size)
    scores = evaluate(model, SoftmaxCrossEntropy(check_labels=False), loader)
    print(
        f"{data.name} test: loss {scores['loss']:.4f}  accuracy {scores['acc']:.4f}  ({loader.n} samples, "
        f"checkpoint epoch {checkpoint.meta['epoch']})"
    )
    return EXIT_OK


def cmd_predict(args: argparse.Namespace) -> int:
    model, backend, checkpoint = _load_model(args)
    data = _load_test_data(args, checkpoint)
    check_predict_range(args.start, args.count, len(data.x_test))
    images = data.x_test[args.start : args.start + args.count]
    truth = data.y_test[args.start : args.start + args.count]
    x = backend.asarray(images.astype(np.float32) * np.float32(data.scale), model.dtype)
    predicted = backend.to_numpy(backend.xp.argmax(model.forward(x), axis=-1)).tolist()
    names = data.class_names
    for i, (p, t) in enumerate(zip(predicted, truth.tolist())):
        print(f"{args.start + i:6d}  predicted {names[p]:<12}  true {names[t]:<12}{'' if p == t else '  ✗'}")
    print(f"{sum(p == t for p, t in zip(predicted, truth.tolist()))}/{len(predicted)} right")
    if images.shape[1] == 784:
        from .plotting import plot_predictions

        drawn = min(len(images), PREDICT_GRID_MAX)
        with _writing("the prediction grid", args.out):
            plot_predictions(images[:drawn], predicted[:drawn], truth[:drawn].tolist(), names, args.out)
        print(f"wrote {args.out}" + (f" (the first {drawn} of {len(images)} images)" if drawn < len(images) else ""))
    else:
        print(f"no image grid written to {args.out}: {data.name}'s samples are not 28x28 images")
    return EXIT_OK


# -- export ---------------------------------------------------------------------------------


def cmd_export(args: argparse.Namespace) -> int:
    from .data.datasets import SOURCES
    from .export import export_onnx, save_torch_state, torch_source

    model, _, checkpoint = _load_model(args)
    try:
        if args.format == "torch":
            save_torch_state(model, args.out, batches_tracked=checkpoint.meta.get("optimizer", {}).get("steps", 0))
            print(f"wrote {args.out} (torch state_dict, safetensors); load it with:\n\n{torch_source(model, args.out)}")
            return 0
        dataset = SOURCES.get(checkpoint.meta["config"].get("dataset"))
        outputs = checkpoint.meta["model_config"]["out_features"]
        names = args.class_names or (list(dataset.class_names) if dataset else [str(c) for c in range(outputs)])
        nodes = export_onnx(model, args.out, class_names=names, opset=args.opset).graph.node
    except ImportError as exc:  # onnx (an extra) is missing
        print(f"mlp-xp export: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out} (ONNX opset {args.opset}, {len(nodes)} nodes: {' -> '.join(n.op_type for n in nodes)})")
    print(f"class names: {', '.join(names)}")
    return 0


# -- info -----------------------------------------------------------------------------------


def cmd_info(args: argparse.Namespace) -> int:
    comm = world()
    print(f"mlp-xp {__version__}, Python {sys.version.split()[0]}")
    for spec, status in available_backends().items():
        if status == "ok":
            facts = get_backend(spec).describe()
            blas = ", ".join(f"{b['internal_api']} {b['num_threads']} threads" for b in facts.pop("blas")) or "?"
            print(
                f"  {spec:<18} ok  {facts['backend']} {facts['version']} on {facts['device']}"
                f"{'  (' + facts['gpu'] + ')' if 'gpu' in facts else ''}  BLAS: {blas}"
            )
        else:
            print(f"  {spec:<18} unavailable: {status}")
    print(f"auto selects: {get_backend('auto').spec}")
    print(mpi_description(comm) or 'MPI: mpi4py not installed (pip install "mlp-xp[mpi]" for data-parallel runs)')
    for name in ("fashion-mnist", "mnist"):
        print(f"  dataset {name:<14} {_dataset_status(name)}")
    return 0


def _dataset_status(name: str) -> str:
    """Where ``load_dataset(name)`` finds its files (read and verified), or why it cannot."""
    from .data.datasets import DatasetIntegrityError, candidate_dirs, find_files

    where = find_files(name, None)
    if where is None:
        return "not found (searched " + ", ".join(map(str, candidate_dirs(name, None))) + ")"
    try:
        load_dataset(name, download=False)
    except (DatasetIntegrityError, FileFormatError) as exc:
        return f"{where}: unusable: {exc}"
    return str(where)


def cmd_bench(args: argparse.Namespace) -> int:
    comm = world()
    if comm.size > 1:
        from .distributed_bench import run_scaling_bench

        return run_scaling_bench(args, comm)
    from .bench import run_bench_command

    return run_bench_command(args)


COMMANDS = {
    "train": cmd_train,
    "eval": cmd_eval,
    "predict": cmd_predict,
    "export": cmd_export,
    "info": cmd_info,
    "bench": cmd_bench,
}


if __name__ == "__main__":
    sys.exit(main())
