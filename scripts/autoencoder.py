"""A 2-D autoencoder of Fashion-MNIST, compared with a 2-component PCA computed on the device.

The network 784 → 128 → 2 ("latent", logistic) → 128 ("up128") → 784 (logistic), leaky ReLU
elsewhere, learns to reproduce its input through a 2-number bottleneck: squared loss (MSE per
pixel), mini-batches of 16, Adam with the learning rate halved after every epoch
(``step_decay(1, 0.5)``). ``DeviceLoader(x, None)`` yields ``(x, x)`` batches.
``model.forward(x, end="latent")`` encodes, ``model.forward(z, start="up128")`` decodes.

PCA-2 is the best *linear* 2-D code: the top two eigenvectors of the covariance of the centred
training images, computed with the Array API ``linalg`` extension (``xp.linalg.eigh``) on the
backend's device, so it runs on the GPU as well. The report compares the test reconstruction
MSE of both.

Writes ``<out>/autoencoder_latent.png`` and ``<out>/pca_latent.png`` (test codes coloured by
class, with originals and their reconstructions), and ``<out>/autoencoder_traversal.png``
(images decoded from points on circles around the centre of the code square).

    python scripts/autoencoder.py               # full run: 60000 images, 5 epochs (~15 s on 2 cores)
    python scripts/autoencoder.py --quick       # 3000 images, 3 epochs
    python scripts/autoencoder.py --device cuda
"""

from __future__ import annotations

import math

import numpy as np
from _common import figure_path, parser, show_progress

from mlp_xp import (
    MSE,
    Adam,
    DeviceLoader,
    LeakyReLU,
    Linear,
    Sequential,
    Sigmoid,
    evaluate,
    fit,
    get_backend,
    load_dataset,
    step_decay,
)
from mlp_xp.plotting import pyplot, save_figure


def make_autoencoder(features: int = 784) -> Sequential:
    return Sequential(
        ("enc128", Linear(features, 128)),
        ("enc128_act", LeakyReLU()),
        # small initial weights keep the logistic code in its linear range at the start: with
        # larger ones (he, xavier) a latent unit can saturate at once and never recover
        ("code", Linear(128, 2, init="normal", std=0.01)),
        ("latent", Sigmoid()),  # forward(x, end="latent"): the 2-D code in (0, 1)²
        ("up128", Linear(2, 128)),  # forward(z, start="up128"): decode a code
        ("up128_act", LeakyReLU()),
        ("out784", Linear(128, features, init="xavier")),
        ("reconstruction", Sigmoid()),
    )


class LatentSpread:
    """Per-epoch hook: how far the test codes spread in latent space (std per axis)."""

    def __init__(self, backend, x_test):
        self.backend, self.x_test, self.rows = backend, x_test, []

    def on_epoch_end(self, epoch, record, model):
        model.eval()
        codes = self.backend.to_numpy(model.forward(self.x_test, end="latent"))
        model.train()
        std = codes.std(axis=0)
        self.rows.append(std)
        print(f"    latent std after epoch {epoch + 1}: {std[0]:.3f}, {std[1]:.3f}")


def pca_on_device(backend, x_train, x_test, scale, components=2):
    """PCA on the backend: returns (codes of x_test, reconstructions of x_test, MSE, explained variance)."""
    xp = backend.xp
    x = xp.astype(backend.asarray(x_train), xp.float32) * scale
    mean = xp.mean(x, axis=0)
    centred = x - mean
    cov = xp.matmul(centred.T, centred) / (x.shape[0] - 1)
    eigenvalues, eigenvectors = xp.linalg.eigh(cov)  # ascending order
    basis = xp.flip(eigenvectors[:, -components:], axis=1)  # (784, 2): the top components first
    explained = xp.sum(eigenvalues[-components:]) / xp.sum(eigenvalues)
    test = xp.astype(backend.asarray(x_test), xp.float32) * scale
    codes = xp.matmul(test - mean, basis)
    recon = xp.matmul(codes, basis.T) + mean
    mse = xp.mean((recon - test) ** 2)
    return backend.to_numpy(codes), backend.to_numpy(recon), float(backend.to_numpy(mse)), float(
        backend.to_numpy(explained))


def main() -> None:
    p = parser(__doc__.split("\n")[0], dataset=True)
    p.add_argument("--epochs", type=int, help="default 5, quick 3")
    p.add_argument("--lr", type=float, default=5e-3, help="Adam's learning rate in the first epoch")
    args = p.parse_args()
    backend = get_backend(args.device)
    xp = backend.xp
    data = load_dataset(args.dataset, args.data_dir)
    x_train, x_test, y_test = data.x_train, data.x_test, data.y_test
    epochs = args.epochs or (3 if args.quick else 5)
    if args.quick:
        x_train, x_test, y_test = x_train[:3000], x_test[:1000], y_test[:1000]
    print(f"{data.name}: {len(x_train)} train / {len(x_test)} test images; backend {backend.spec}; "
          f"Adam lr {args.lr} halved every epoch, batch 16, {epochs} epochs")

    model = make_autoencoder(data.n_features).init(backend, seed=args.seed)
    train = DeviceLoader(x_train, None, backend, batch_size=16, seed=args.seed, scale=data.scale)
    test = DeviceLoader(x_test, None, backend, batch_size=1000, shuffle=False, scale=data.scale)
    x_test_dev = xp.astype(backend.asarray(x_test), xp.float32) * data.scale
    optimizer = Adam(model, lr=args.lr, schedule=step_decay(1, 0.5))
    fit(model, MSE(), optimizer, train, epochs=epochs, val_loader=test,
        callbacks=[LatentSpread(backend, x_test_dev)], progress=show_progress())
    ae_mse = evaluate(model, MSE(), test)["loss"]

    model.eval()
    ae_codes = backend.to_numpy(model.forward(x_test_dev, end="latent"))
    ae_recon = backend.to_numpy(model.forward(x_test_dev))
    pca_codes, pca_recon, pca_mse, explained = pca_on_device(backend, x_train, x_test, data.scale)

    examples = [int(np.flatnonzero(y_test == c)[0]) for c in range(len(data.class_names))]
    originals = x_test[examples].astype(np.float32) * data.scale
    paths = [
        save_figure(latent_figure(ae_codes, y_test, examples, originals, ae_recon[examples], data.class_names,
                                  f"autoencoder 784-128-2-128-784: test MSE {ae_mse:.4f}",
                                  ("latent 1 (logistic)", "latent 2 (logistic)")),
                    figure_path(args, "autoencoder_latent.png")),
        save_figure(latent_figure(pca_codes, y_test, examples, originals, pca_recon[examples], data.class_names,
                                  f"PCA, 2 components ({explained:.1%} of the variance): test MSE {pca_mse:.4f}",
                                  ("principal component 1", "principal component 2")),
                    figure_path(args, "pca_latent.png")),
        save_figure(traversal_figure(model, backend, ae_codes, y_test, data.class_names),
                    figure_path(args, "autoencoder_traversal.png")),
    ]
    print("\nreport")
    print(f"  test reconstruction MSE per pixel: autoencoder {ae_mse:.5f}, PCA-2 {pca_mse:.5f} "
          f"(autoencoder/PCA = {ae_mse / pca_mse:.3f}; PCA-2 explains {explained:.1%} of the variance)")
    print(f"  autoencoder beats PCA-2: {'yes' if ae_mse < pca_mse else 'no'}")
    for path in paths:
        print(f"wrote {path}")


def _scatter(ax, codes, labels, class_names, plt):
    cmap = plt.get_cmap("tab10")
    for c, name in enumerate(class_names):
        points = codes[labels == c]
        ax.scatter(points[:, 0], points[:, 1], s=3, alpha=0.5, color=cmap(c), label=name, rasterized=True)


def latent_figure(codes, labels, examples, originals, recons, class_names, title, axis_labels):
    """Codes coloured by class (left; the examples numbered), one original per class above its
    reconstruction (right)."""
    plt = pyplot()
    n = len(class_names)
    fig = plt.figure(figsize=(16, 6.2))
    outer = fig.add_gridspec(1, 2, width_ratios=[1, 1.55], wspace=0.3)
    ax = fig.add_subplot(outer[0])
    _scatter(ax, codes, labels, class_names, plt)
    for c, index in enumerate(examples):
        ax.annotate(str(c), codes[index], fontsize=9, weight="bold", ha="center", va="center",
                    bbox={"boxstyle": "circle,pad=0.15", "fc": "white", "ec": "black", "lw": 0.8})
    ax.set(title="test images in the 2-D code (circled: the examples on the right)",
           xlabel=axis_labels[0], ylabel=axis_labels[1])
    ax.legend(markerscale=4, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="class")
    cells = outer[1].subgridspec(4, n, height_ratios=[1.3, 1, 1, 1.3], hspace=0.25, wspace=0.08)
    side = int(round(math.sqrt(originals.shape[1])))
    for c in range(n):
        for row, (images, what) in enumerate(((originals, "original"), (recons, "decoded")), start=1):
            cell = fig.add_subplot(cells[row, c])
            cell.imshow(images[c].reshape(side, side), cmap="gray_r", vmin=0, vmax=1)
            cell.set_xticks([])
            cell.set_yticks([])
            if row == 1:
                cell.set_title(f"{c}: {class_names[c]}", fontsize=8)
            if c == 0:
                cell.set_ylabel(what)
    fig.suptitle(title)
    return fig


def traversal_figure(model, backend, codes, labels, class_names, angles=12, radii=(0.18, 0.32, 0.46)):
    """Images decoded from ``angles`` points on circles around the centre of the code square (0, 1)²."""
    plt = pyplot()
    centre = np.array([0.5, 0.5])
    theta = np.linspace(0, 2 * np.pi, angles, endpoint=False)
    points = np.array([centre + r * np.array([np.cos(t), np.sin(t)]) for r in radii for t in theta])
    points = np.clip(points, 1e-3, 1 - 1e-3).astype(np.float32)  # the logistic code lies in (0, 1)²
    model.eval()
    decoded = backend.to_numpy(model.forward(backend.asarray(points, "float32"), start="up128"))

    fig = plt.figure(figsize=(17, 5.4))
    grid = fig.add_gridspec(len(radii), angles + 2, width_ratios=[len(radii) * 1.5, 0.25] + [1] * angles)
    ax = fig.add_subplot(grid[:, 0])
    _scatter(ax, codes, labels, class_names, plt)
    circle = np.linspace(0, 2 * np.pi, 200)
    for i, r in enumerate(radii):
        ax.plot(centre[0] + r * np.cos(circle), centre[1] + r * np.sin(circle), "k-", lw=1)
        ring = points[i * angles : (i + 1) * angles]
        ax.plot(*ring.T, "ko", ms=2.5)
        ax.plot(*ring[0], "k>", ms=7)
        ax.annotate(f"ring {i + 1}", (centre[0] - r, centre[1]), fontsize=8, ha="left", va="bottom",
                    xytext=(2, 2), textcoords="offset points")
    ax.set(title="traversal circles (codes coloured as\nin autoencoder_latent.png)", xlabel="latent 1",
           ylabel="latent 2", aspect="equal", xlim=(0, 1), ylim=(0, 1))
    side = int(round(math.sqrt(decoded.shape[1])))
    for i, r in enumerate(radii):
        for j in range(angles):
            cell = fig.add_subplot(grid[i, j + 2])
            cell.imshow(decoded[i * angles + j].reshape(side, side), cmap="gray_r", vmin=0, vmax=1)
            cell.set_xticks([])
            cell.set_yticks([])
            if i == 0:
                cell.set_title(f"{round(float(np.degrees(theta[j])))}°", fontsize=8)
            if j == 0:
                cell.set_ylabel(f"ring {i + 1}\nr = {r:.2f}", fontsize=8)
    fig.suptitle('latent traversal: model.forward(z, start="up128") for z on circles around (0.5, 0.5), '
                 "counter-clockwise from ▶ (0°)")
    return fig


if __name__ == "__main__":
    main()
