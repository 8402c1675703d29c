"""Hyperparameter search with Optuna: depth, width, learning rate and weight decay of an MLP.

The Fashion-MNIST training set is split into 50000 training and 10000 validation images
(``train_val_split``); every trial trains ``make_mlp(784, [width] * depth, 10)`` with SGD and
the trial's learning rate and weight decay, and is scored by its validation accuracy after the
last epoch. A ``fit`` callback reports the validation accuracy of every epoch to Optuna and
stops a trial that the median pruner rejects (the trial then raises ``optuna.TrialPruned``).
The sampler (TPE) is seeded, so a run is reproducible.

The baseline is the untuned default: ``make_mlp(784, [256], 10)`` with SGD, learning rate 0.1,
no weight decay, same batch size and epochs. The report gives the best trial, its gain in
validation accuracy over the default, and both models' accuracy on the (untouched) test set.

Writes ``<out>/tune_importance.png`` (Optuna's parameter-importance plot) and
``<out>/tune_history.png`` (the trials' validation accuracy, the default as a line).
Needs the ``optuna`` extra: ``pip install "mlp-xp[optuna]"``.

    python scripts/tune.py                  # 20 trials of 5 epochs on 50000/10000 images (~1.5 min)
    python scripts/tune.py --quick          # 3 trials of 2 epochs on 3000/1000 images
    python scripts/tune.py --trials 50 --device cuda
"""

from __future__ import annotations

import warnings

from _common import figure_path, parser, show_progress

from mlp_xp import (
    SGD,
    DeviceLoader,
    SoftmaxCrossEntropy,
    TrainingDiverged,
    evaluate,
    fit,
    get_backend,
    load_dataset,
    make_mlp,
    train_val_split,
)
from mlp_xp.plotting import save_figure

try:
    import optuna
except ImportError:
    raise SystemExit('tune.py needs Optuna: pip install "mlp-xp[optuna]"') from None

DEFAULT = {"depth": 1, "width": 256, "lr": 0.1, "weight_decay": 0.0}
BATCH_SIZE = 128


class OptunaPruning:
    """``fit`` callback: report the epoch's validation accuracy; stop when Optuna says prune."""

    def __init__(self, trial: optuna.Trial) -> None:
        self.trial = trial
        self.pruned = False

    def on_epoch_end(self, epoch, record, model):
        self.trial.report(record["val_acc"], step=epoch)
        if self.trial.should_prune():
            self.pruned = True
            return True
        return None


def train(params, loaders, backend, epochs, seed, callbacks=()):
    """Train one configuration; returns (model, history)."""
    model = make_mlp(784, [params["width"]] * params["depth"], 10).init(backend, seed=seed)
    optimizer = SGD(model, params["lr"], weight_decay=params["weight_decay"])
    history = fit(model, SoftmaxCrossEntropy(check_labels=False), optimizer, loaders["train"], epochs=epochs,
                  val_loader=loaders["val"], val_name="val", callbacks=callbacks, progress=show_progress(), log=None)
    return model, history


def main() -> None:
    p = parser(__doc__.split("\n")[0], dataset=True)
    p.add_argument("--trials", type=int, help="default 20, quick 3")
    p.add_argument("--epochs", type=int, help="epochs per trial (default 5, quick 2)")
    args = p.parse_args()
    trials = args.trials or (3 if args.quick else 20)
    epochs = args.epochs or (2 if args.quick else 5)
    backend = get_backend(args.device)
    data = load_dataset(args.dataset, args.data_dir)
    x, y, x_test, y_test = data.x_train, data.y_train, data.x_test, data.y_test
    n_val = 10000
    if args.quick:
        x, y, x_test, y_test, n_val = x[:4000], y[:4000], x_test[:1000], y_test[:1000], 1000
    (x_train, y_train), (x_val, y_val) = train_val_split(x, y, n_val, seed=args.seed)
    classes = len(data.class_names)
    loaders = {
        "train": DeviceLoader(x_train, y_train, backend, batch_size=BATCH_SIZE, seed=args.seed, num_classes=classes),
        "val": DeviceLoader(x_val, y_val, backend, batch_size=1000, shuffle=False, num_classes=classes),
        "test": DeviceLoader(x_test, y_test, backend, batch_size=1000, shuffle=False, num_classes=classes),
    }
    print(f"{data.name}: {len(x_train)} train / {len(x_val)} validation / {len(x_test)} test images; "
          f"backend {backend.spec}; {trials} trials of {epochs} epochs, SGD, batch {BATCH_SIZE}")

    default_model, default_history = train(DEFAULT, loaders, backend, epochs, args.seed)
    default_val = default_history.last["val_acc"]
    print(f"default {DEFAULT}: validation accuracy {default_val:.4f}")

    best = {"value": -1.0, "model": None}

    def objective(trial: optuna.Trial) -> float:
        params = {
            "depth": trial.suggest_int("depth", 1, 3),
            "width": trial.suggest_int("width", 32, 512, log=True),
            "lr": trial.suggest_float("lr", 0.01, 0.5, log=True),
            "weight_decay": trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True),
        }
        pruning = OptunaPruning(trial)
        try:
            model, history = train(params, loaders, backend, epochs, args.seed, callbacks=[pruning])
        except TrainingDiverged as exc:
            raise optuna.TrialPruned(f"diverged: {exc}") from None
        if pruning.pruned:
            raise optuna.TrialPruned(f"pruned after epoch {len(history.epochs)}")
        value = history.last["val_acc"]
        if value > best["value"]:
            best.update(value=value, model=model)
        return value

    def log_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        params = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial.params.items())
        epochs_run = len(trial.intermediate_values)
        if trial.state == optuna.trial.TrialState.COMPLETE:
            result = f"{trial.value:.4f}"
        else:  # a pruned trial keeps its last reported value
            last = trial.intermediate_values.get(epochs_run - 1)
            result = f"{trial.state.name.lower()}" + (f" at {last:.4f}" if last is not None else "")
        print(f"  trial {trial.number:>2}: {params}  ->  {result} ({epochs_run} epochs)")

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=args.seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1),
        study_name="mlp_xp-tune",
    )
    study.optimize(objective, n_trials=trials, callbacks=[log_trial])

    loss = SoftmaxCrossEntropy(check_labels=False)
    best_test = evaluate(best["model"], loss, loaders["test"])["acc"]
    default_test = evaluate(default_model, loss, loaders["test"])["acc"]
    paths = save_plots(study, default_val, args)
    states = [t.state for t in study.trials]
    print("\nreport")
    print(f"  trials: {states.count(optuna.trial.TrialState.COMPLETE)} complete, "
          f"{states.count(optuna.trial.TrialState.PRUNED)} pruned")
    print(f"  best trial {study.best_trial.number}: {study.best_params}")
    print(f"  validation accuracy: best {study.best_value:.4f}, default {default_val:.4f}, "
          f"gain {(study.best_value - default_val) * 100:+.2f} points")
    print(f"  test accuracy: best {best_test:.4f}, default {default_test:.4f}, "
          f"gain {(best_test - default_test) * 100:+.2f} points")
    for path in paths:
        print(f"wrote {path}")


def save_plots(study, default_val, args):
    from matplotlib.ticker import MaxNLocator
    from optuna.visualization.matplotlib import plot_optimization_history, plot_param_importances

    paths = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        ax = plot_param_importances(study, target_name="validation accuracy")
        ax.set_title("", loc="left")  # replace Optuna's left-aligned title
        ax.set_title("Optuna parameter importances (PED-ANOVA) for validation accuracy")
        ax.figure.set_size_inches(8, 4.5)
        paths.append(save_figure(ax.figure, figure_path(args, "tune_importance.png")))

        ax = plot_optimization_history(study, target_name="validation accuracy")
        ax.axhline(default_val, color="tab:red", ls="--", label=f"default config ({default_val:.4f})")
        ax.set_title("validation accuracy per trial (pruned trials not shown)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(loc="best")
        ax.figure.set_size_inches(8, 4.5)
        paths.append(save_figure(ax.figure, figure_path(args, "tune_history.png")))
    return paths


if __name__ == "__main__":
    main()
