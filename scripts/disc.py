"""The 2-D disc toy: a hidden layer that makes a non-linear problem linearly separable.

Points in [-1, 1]² are labelled by whether they lie inside a disc: no straight line separates
the classes. The network 2 → 100 (leaky ReLU) → 2 (leaky ReLU, "layer2") → 1 (logistic) is
trained with binary cross-entropy twice, with pure SGD (batch size 1, reshuffled every epoch)
and with mini-batches. Its output unit is a linear classifier on the 2-D output of "layer2", so
a high accuracy means the second layer has mapped the disc to linearly separable points; a
fresh logistic regression fitted on those 2-D features confirms it.

Writes ``<out>/disc.png``: per run, the input plane with the predicted region, the 2-D
"layer2" features with the output unit's decision line, and the loss curves.

    python scripts/disc.py                 # full run: 4000 points, 40 epochs (about 15 s on 2 CPU cores)
    python scripts/disc.py --quick         # seconds
    python scripts/disc.py --device torch  # any backend
"""

from __future__ import annotations

import numpy as np
from _common import figure_path, parser, show_progress

import mlp_xp
from mlp_xp import (
    SGD,
    Adam,
    BinaryCrossEntropy,
    DeviceLoader,
    LeakyReLU,
    Linear,
    Sequential,
    Sigmoid,
    cosine_decay,
    evaluate,
    fit,
    get_backend,
)
from mlp_xp.plotting import pyplot, save_figure


def make_model() -> Sequential:
    return Sequential(
        ("hidden", Linear(2, 100)),
        ("hidden_act", LeakyReLU()),
        ("layer2_linear", Linear(100, 2)),
        ("layer2", LeakyReLU()),  # forward(x, end="layer2") gives the 2-D features
        ("output_linear", Linear(2, 1, init="xavier")),
        ("output", Sigmoid()),  # logistic output: P(inside)
    )


def train_run(name, data, backend, *, batch_size, lr, epochs, seed, loss):
    model = make_model().init(backend, seed=seed)
    train = DeviceLoader(data.x_train, data.y_train, backend, batch_size=batch_size, shuffle=True, seed=seed)
    test = DeviceLoader(data.x_test, data.y_test, backend, batch_size=1000, shuffle=False)
    print(f"-- {name}: batch size {batch_size}, SGD lr {lr} (cosine decay), {epochs} epochs, "
          f"{len(train)} steps per epoch")
    optimizer = SGD(model, lr, schedule=cosine_decay(epochs, 0.05))
    history = fit(model, loss, optimizer, train, epochs=epochs, val_loader=test, progress=show_progress())
    return model, history


def layer2_features(model, backend, x):
    model.eval()
    return backend.to_numpy(model.forward(backend.asarray(x, "float32"), end="layer2"))


def linear_probe(features_train, y_train, features_test, y_test, backend, seed):
    """Accuracy of a logistic regression fitted on standardised 2-D features (test set)."""
    mean, std = features_train.mean(axis=0), features_train.std(axis=0) + 1e-6
    probe = Sequential(("logit", Linear(2, 1, init="xavier"))).init(backend, seed=seed)
    loss = BinaryCrossEntropy(from_logits=True)
    train = DeviceLoader(((features_train - mean) / std).astype(np.float32), y_train, backend,
                         batch_size=len(y_train), shuffle=False)
    test = DeviceLoader(((features_test - mean) / std).astype(np.float32), y_test, backend,
                        batch_size=len(y_test), shuffle=False)
    fit(probe, loss, Adam(probe, lr=0.1), train, epochs=300, progress=False, log=None)
    return evaluate(probe, loss, test)["acc"]


def main() -> None:
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, help="epochs per run (default 40, quick 3)")
    p.add_argument("--batch-size", type=int, default=32, help="batch size of the mini-batch run")
    args = p.parse_args()
    backend = get_backend(args.device)
    n, epochs = (1000, 4) if args.quick else (4000, 40)
    epochs = args.epochs or epochs
    data = mlp_xp.disc(n, seed=args.seed, n_test=max(200, n // 4))
    print(f"disc: {n} train / {len(data.y_test)} test points, {data.y_train.mean():.2f} inside; "
          f"backend {backend.spec}")
    loss = BinaryCrossEntropy(from_logits=False)  # the model ends in a logistic unit

    runs = {}
    for name, batch_size, lr in (("SGD (batch 1)", 1, 0.01), (f"mini-batch ({args.batch_size})", args.batch_size,
                                                               0.1)):
        model, history = train_run(name, data, backend, batch_size=batch_size, lr=lr, epochs=epochs,
                                   seed=args.seed, loss=loss)
        f_train = layer2_features(model, backend, data.x_train)
        f_test = layer2_features(model, backend, data.x_test)
        runs[name] = {
            "model": model,
            "history": history,
            "acc": history.last["test_acc"],
            "train_acc": history.last["train_acc"],
            "probe": linear_probe(f_train, data.y_train, f_test, data.y_test, backend, args.seed),
            "features": f_test,
        }

    fig = plot(runs, data, backend)
    path = save_figure(fig, figure_path(args, "disc.png"))
    print("\nreport")
    for name, run in runs.items():
        print(f"  {name:<20} test accuracy {run['acc']:.4f} (train {run['train_acc']:.4f}); "
              f"linear probe on layer2 features: {run['probe']:.4f}")
    worst = min(min(run["acc"], run["probe"]) for run in runs.values())
    print(f"  layer2 features linearly separable (output unit and probe >= 0.98 in both runs): "
          f"{'yes' if worst >= 0.98 else 'no'} (lowest {worst:.4f})")
    print(f"wrote {path}")


def plot(runs, data, backend):
    plt = pyplot()
    fig, axes = plt.subplots(len(runs), 3, figsize=(15, 4.6 * len(runs)), squeeze=False)
    colors = np.array(["tab:blue", "tab:orange"])
    grid = np.linspace(-1, 1, 201, dtype=np.float32)
    gx, gy = np.meshgrid(grid, grid)
    plane = np.stack([gx.ravel(), gy.ravel()], axis=1)
    for row, (name, run) in zip(axes, runs.items()):
        model = run["model"]
        model.eval()
        prob = backend.to_numpy(model.forward(backend.asarray(plane, "float32")))[:, 0].reshape(gx.shape)
        ax = row[0]
        ax.contourf(gx, gy, prob, levels=[0, 0.5, 1], colors=["#cfe2f3", "#fde3c8"])
        ax.contour(gx, gy, prob, levels=[0.5], colors="k", linewidths=1)
        ax.scatter(*data.x_test.T, c=colors[data.y_test], s=6)
        ax.set(title=f"{name}: input plane, predicted region", xlabel="$x_1$", ylabel="$x_2$", aspect="equal")

        ax = row[1]
        feats = run["features"]
        for label, class_name in enumerate(data.class_names):
            ax.scatter(*feats[data.y_test == label].T, s=6, c=colors[label], label=class_name)
        weight = backend.to_numpy(model["output_linear"].params["weight"])[:, 0]
        bias = float(backend.to_numpy(model["output_linear"].params["bias"])[0])
        lo, hi = feats.min(axis=0), feats.max(axis=0)
        pad = 0.05 * (hi - lo) + 1e-3
        ax.set_xlim(lo[0] - pad[0], hi[0] + pad[0])
        ax.set_ylim(lo[1] - pad[1], hi[1] + pad[1])
        if abs(weight[1]) > abs(weight[0]):
            xs = np.linspace(lo[0] - pad[0], hi[0] + pad[0], 2)
            ax.plot(xs, -(weight[0] * xs + bias) / weight[1], "k--", label="output unit: p = 0.5")
        else:
            ys = np.linspace(lo[1] - pad[1], hi[1] + pad[1], 2)
            ax.plot(-(weight[1] * ys + bias) / weight[0], ys, "k--", label="output unit: p = 0.5")
        ax.set(title=f'"layer2" output (test points): accuracy {run["acc"]:.3f}, probe {run["probe"]:.3f}',
               xlabel="layer2 unit 1", ylabel="layer2 unit 2")
        ax.legend(loc="best", markerscale=3)

        ax = row[2]
        epochs = run["history"]["epoch"]
        ax.plot(epochs, run["history"]["train_loss"], marker="o", ms=3, label="train")
        ax.plot(epochs, run["history"]["test_loss"], marker="o", ms=3, label="test")
        ax.set(title=f"{name}: binary cross-entropy", xlabel="epoch", ylabel="loss", yscale="log")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("Disc toy: 2 → 100 leaky ReLU → 2 leaky ReLU (layer2) → 1 logistic")
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    main()
