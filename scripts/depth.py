"""Depth: one hidden layer of 20 ReLU units vs two hidden layers of 40 and 20, on Fashion-MNIST.

Both networks end in a linear layer trained with softmax cross-entropy, with the same
optimizer, batch size, epochs and seed. Train and test accuracy are recorded after every
epoch (``fit`` evaluates the test set as its validation loader), drawn on one plot, and the
report says which network is better and whether either overfits: a network "overfits" here
when its test loss ends more than 5% above its minimum while its training loss keeps falling,
or when the final train-test accuracy gap exceeds 3 points.

Writes ``<out>/depth.png``.

    python scripts/depth.py                        # full run: 60000/10000 images, 30 epochs (~10 s on 2 cores)
    python scripts/depth.py --quick                # 6000/2000 images, 3 epochs
    python scripts/depth.py --dataset mnist --device torch
"""

from __future__ import annotations

from _common import figure_path, parser, show_progress

from mlp_xp import SGD, DeviceLoader, SoftmaxCrossEntropy, fit, get_backend, load_dataset, make_mlp
from mlp_xp.plotting import pyplot, save_figure

ARCHITECTURES = {"784-20-10": [20], "784-40-20-10": [40, 20]}
GAP_LIMIT = 0.03
LOSS_RISE = 1.05


def main() -> None:
    p = parser(__doc__.split("\n")[0], dataset=True)
    p.add_argument("--epochs", type=int, help="default 30, quick 3")
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--batch-size", type=int, default=64)
    args = p.parse_args()
    backend = get_backend(args.device)
    data = load_dataset(args.dataset, args.data_dir)
    x_train, y_train, x_test, y_test = data.x_train, data.y_train, data.x_test, data.y_test
    epochs = args.epochs or (3 if args.quick else 30)
    if args.quick:
        x_train, y_train, x_test, y_test = x_train[:6000], y_train[:6000], x_test[:2000], y_test[:2000]
    print(f"{data.name}: {len(x_train)} train / {len(x_test)} test images; backend {backend.spec}; "
          f"SGD lr {args.lr}, batch {args.batch_size}, {epochs} epochs")
    classes = len(data.class_names)
    train = DeviceLoader(x_train, y_train, backend, batch_size=args.batch_size, seed=args.seed, num_classes=classes)
    test = DeviceLoader(x_test, y_test, backend, batch_size=1000, shuffle=False, num_classes=classes)

    results = {}
    for name, hidden in ARCHITECTURES.items():
        model = make_mlp(data.n_features, hidden, classes, activation="relu").init(backend, seed=args.seed)
        print(f"-- {name} ({model.num_parameters():,} parameters)")
        history = fit(model, SoftmaxCrossEntropy(check_labels=False), SGD(model, args.lr), train, epochs=epochs,
                      val_loader=test, progress=show_progress())
        results[name] = history.epochs

    path = save_figure(plot(results, data.name, args), figure_path(args, "depth.png"))
    report(results)
    print(f"wrote {path}")


def _smooth(values, window=3):
    """Trailing moving average (SGD's epoch-to-epoch test noise hides trends otherwise)."""
    return [sum(values[max(0, i - window + 1) : i + 1]) / len(values[max(0, i - window + 1) : i + 1])
            for i in range(len(values))]


def summarize(records, tail=5):
    test_acc = [r["test_acc"] for r in records]
    test_loss = _smooth([r["test_loss"] for r in records])
    train_loss = _smooth([r["train_loss"] for r in records])
    best = max(range(len(records)), key=test_acc.__getitem__)
    low = min(range(len(records)), key=test_loss.__getitem__)
    last = records[-tail:]
    mean_test = sum(r["test_acc"] for r in last) / len(last)
    mean_train = sum(r["train_acc"] for r in last) / len(last)
    gap = mean_train - mean_test
    loss_rise = test_loss[-1] / test_loss[low]
    reasons = []
    if gap > GAP_LIMIT:
        reasons.append(f"train-test gap {gap * 100:.1f} points")
    if loss_rise > LOSS_RISE and train_loss[-1] < train_loss[low]:
        reasons.append(f"test loss {(loss_rise - 1) * 100:.0f}% above its minimum")
    return {
        "final_train": records[-1]["train_acc"],
        "final_test": records[-1]["test_acc"],
        "tail": len(last),
        "mean_test": mean_test,
        "best_test": test_acc[best],
        "best_epoch": records[best]["epoch"],
        "gap": gap,
        "min_loss": test_loss[low],
        "min_loss_epoch": records[low]["epoch"],
        "final_loss": test_loss[-1],
        "verdict": f"overfits ({', '.join(reasons)})" if reasons else "no overfitting",
    }


def report(results) -> None:
    print("\nreport: accuracy per epoch")
    header = ["epoch"] + [f"{name} {part}" for name in results for part in ("train", "test")]
    widths = [len(h) for h in header]
    print("  " + "  ".join(h.rjust(w) for h, w in zip(header, widths)))
    for rows in zip(*results.values()):
        cells = [str(rows[0]["epoch"])] + [f"{r[key]:.4f}" for r in rows for key in ("train_acc", "test_acc")]
        print("  " + "  ".join(c.rjust(w) for c, w in zip(cells, widths)))
    summaries = {name: summarize(records) for name, records in results.items()}
    print(f"  (overfitting: train-test accuracy gap over the last epochs > {GAP_LIMIT:.2f}, or the 3-epoch mean "
          f"test loss ends > {LOSS_RISE - 1:.0%} above its minimum while the training loss still falls)")
    for name, s in summaries.items():
        print(f"  {name}: final train {s['final_train']:.4f}, final test {s['final_test']:.4f}, "
              f"mean test over the last {s['tail']} epochs {s['mean_test']:.4f}, best test {s['best_test']:.4f} "
              f"(epoch {s['best_epoch']}); train-test gap {s['gap']:+.4f}; 3-epoch mean test loss min "
              f"{s['min_loss']:.4f} (epoch {s['min_loss_epoch']}) -> final {s['final_loss']:.4f}: "
              f"{s['verdict']}")
    (a, sa), (b, sb) = summaries.items()
    better, worse = (a, b) if sa["mean_test"] >= sb["mean_test"] else (b, a)
    diff = summaries[better]["mean_test"] - summaries[worse]["mean_test"]
    print(f"  better: {better} (mean test accuracy over the last epochs {diff * 100:+.2f} points over {worse})")


def plot(results, dataset, args):
    plt = pyplot()
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(13, 4.8))
    for (name, records), color in zip(results.items(), ("tab:blue", "tab:red")):
        epochs = [r["epoch"] for r in records]
        ax_acc.plot(epochs, [r["train_acc"] for r in records], "-", color=color, label=f"{name} train")
        ax_acc.plot(epochs, [r["test_acc"] for r in records], "--", color=color, label=f"{name} test")
        ax_loss.plot(epochs, [r["train_loss"] for r in records], "-", color=color, label=f"{name} train")
        ax_loss.plot(epochs, [r["test_loss"] for r in records], "--", color=color, label=f"{name} test")
    ax_acc.set(title="accuracy per epoch", xlabel="epoch", ylabel="accuracy")
    ax_loss.set(title="softmax cross-entropy per epoch", xlabel="epoch", ylabel="loss")
    for ax in (ax_acc, ax_loss):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"{dataset}: one hidden layer (20) vs two (40-20), ReLU; SGD lr {args.lr}, batch {args.batch_size}")
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    main()
