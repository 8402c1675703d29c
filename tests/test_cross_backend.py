"""Issue acceptance 2: the same training step gives the same numbers on every backend, and the
optimizers follow torch.optim step for step."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from array_api_compat import device as array_device
from array_api_extra.testing import assert_close
from conftest import require_module

import mlp_xp
from mlp_xp import SGD, Adam, AdamW, BatchNorm, Dropout, Linear, ReLU, Sequential, SoftmaxCrossEntropy
from mlp_xp.backends import HostDrawnRandom

RTOL, ATOL = 1e-4, 1e-5
BATCH = 32
STEPS = 2

OPTIMIZERS = {
    "sgd": lambda model: SGD(model, lr=0.1, momentum=0.9, weight_decay=5e-4),
    "nesterov": lambda model: SGD(model, lr=0.05, momentum=0.9, nesterov=True),
    # a larger eps keeps Adam's first update (≈ lr·sign(g)) continuous in g, so float32
    # round-off in a gradient near zero cannot flip an update between backends
    "adam": lambda model: Adam(model, lr=1e-3, eps=1e-3, weight_decay=1e-4),
    "adamw": lambda model: AdamW(model, lr=1e-3, eps=1e-3, weight_decay=0.01),
}


def make_model() -> Sequential:
    return Sequential(Linear(784, 256), BatchNorm(256), ReLU(), Dropout(0.3), Linear(256, 10))


@functools.lru_cache(maxsize=1)
def batches() -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(2024)
    return [
        (rng.random((BATCH, 784), dtype=np.float32), rng.integers(0, 10, BATCH).astype(np.int64)) for _ in range(STEPS)
    ]


def train(backend: mlp_xp.Backend, optimizer_name: str):
    """STEPS training steps; returns the model and the device arrays to compare."""
    model = make_model().init(backend, seed=0, dtype="float32")
    model["dropout3"].rng = HostDrawnRandom(backend, seed=123)
    loss_fn = SoftmaxCrossEntropy()
    optimizer = OPTIMIZERS[optimizer_name](model)
    results = {}
    for step, (x_host, y_host) in enumerate(batches()):
        x, y = backend.asarray(x_host, "float32"), backend.asarray(y_host, "int64")
        logits = model.forward(x)
        loss = loss_fn.forward(logits, y)
        model.backward(loss_fn.backward())
        optimizer.step()
        results[f"step{step}/loss"] = loss
        results[f"step{step}/train_logits"] = logits
    results.update(model.state())
    results.update({f"optim/{k}": v for k, v in optimizer.state_arrays().items()})
    model.eval()
    results["eval_logits"] = model.forward(backend.asarray(batches()[0][0], "float32"))
    return model, results


@functools.cache
def numpy_reference(optimizer_name: str) -> dict[str, np.ndarray]:
    backend = mlp_xp.get_backend("numpy")
    _, results = train(backend, optimizer_name)
    return {k: np.array(backend.to_numpy(v), copy=True) for k, v in results.items()}


@pytest.mark.parametrize("optimizer_name", list(OPTIMIZERS))
def test_training_step_matches_numpy(other_backend, optimizer_name):
    model, results = train(other_backend, optimizer_name)
    reference = numpy_reference(optimizer_name)
    assert set(results) == set(reference)
    # every parameter, buffer and optimizer state array took part
    slots = 6 if optimizer_name in ("sgd", "nesterov") else 12  # momentum, or exp_avg and exp_avg_sq
    assert len([k for k in results if k.startswith("optim/")]) == slots
    for key, value in results.items():
        expected = other_backend.asarray(reference[key].reshape(-1), "float32")
        expected = other_backend.xp.reshape(expected, reference[key].shape)
        # namespace, device, dtype and values at once
        assert_close(
            value,
            expected,
            rtol=RTOL,
            atol=ATOL,
            err_msg=f"{key} on {other_backend.spec}",
        )
        assert array_device(value) == other_backend.device, key
    # the arrays the model now holds are the ones compared, still on the device
    for key, value in model.state().items():
        assert value.dtype == other_backend.xp.float32, key
        assert array_device(value) == other_backend.device, key


def test_reference_step_changed_everything():
    """Guards the comparison above: the step must move the parameters and running stats."""
    backend = mlp_xp.get_backend("numpy")
    fresh = make_model().init(backend, seed=0, dtype="float32").state()
    after = numpy_reference("sgd")
    for key, value in fresh.items():
        if key == "linear0.bias":  # BatchNorm follows: its gradient is zero up to round-off
            np.testing.assert_allclose(after[key], 0.0, atol=1e-6)
            continue
        assert not np.allclose(after[key], backend.to_numpy(value), rtol=RTOL, atol=ATOL), key
    losses = [float(after[f"step{i}/loss"]) for i in range(STEPS)]
    assert all(np.isfinite(losses))
    assert 1.0 < losses[0] < 5.0
    # dropout was active in the training forward: the masks were injected
    train0 = after["step0/train_logits"]
    assert not np.allclose(train0, after["eval_logits"], rtol=RTOL, atol=ATOL)


def test_dropout_masks_equal_across_backends(other_backend):
    numpy_mask = HostDrawnRandom(mlp_xp.get_backend("numpy"), 123).bernoulli_mask((BATCH, 256), 0.7)
    mask = HostDrawnRandom(other_backend, 123).bernoulli_mask((BATCH, 256), 0.7)
    np.testing.assert_array_equal(other_backend.to_numpy(mask), numpy_mask)


def test_same_initial_weights_everywhere(other_backend):
    reference = make_model().init("numpy", seed=0).state()
    model = make_model().init(other_backend, seed=0)
    for key, value in model.state().items():
        np.testing.assert_array_equal(other_backend.to_numpy(value), reference[key], err_msg=key)
    other = make_model().init(other_backend, seed=1)
    assert not np.array_equal(other_backend.to_numpy(other["linear0"].params["weight"]), reference["linear0.weight"])


# -- update rules against torch.optim ------------------------------------------------------

TORCH_STEPS = 3


def _torch_run(optimizer_name: str, dtype: str):
    torch = require_module("torch")
    p_drop = 0.25
    rng = np.random.default_rng(7)
    data = [(rng.standard_normal((16, 12)), rng.integers(0, 5, 16)) for _ in range(TORCH_STEPS)]

    backend = mlp_xp.get_backend("numpy")
    # ReLU before BatchNorm: a bias right before BatchNorm gets a gradient of pure round-off,
    # which Adam's normalised update would amplify into noise
    ours = Sequential(Linear(12, 20), ReLU(), BatchNorm(20), Dropout(p_drop), Linear(20, 5))
    ours.init(backend, seed=3, dtype=dtype)
    ours["dropout3"].rng = HostDrawnRandom(backend, seed=11)
    mask_rng = np.random.default_rng(11)  # replays HostDrawnRandom's draws for torch

    torch_dtype = getattr(torch, dtype)
    lin1, bn, lin2 = torch.nn.Linear(12, 20), torch.nn.BatchNorm1d(20), torch.nn.Linear(20, 5)
    for module in (lin1, bn, lin2):
        module.to(torch_dtype)
    with torch.no_grad():
        for mine, theirs in ((ours["linear0"], lin1), (ours["linear4"], lin2)):
            theirs.weight.copy_(torch.from_numpy(backend.to_numpy(mine.params["weight"]).T.copy()))
            theirs.bias.copy_(torch.from_numpy(backend.to_numpy(mine.params["bias"])))
    decayed = [lin1.weight, lin2.weight]
    other = [lin1.bias, bn.weight, bn.bias, lin2.bias]

    if optimizer_name == "sgd":
        ours_opt = SGD(ours, lr=0.1, momentum=0.9, weight_decay=0.01)
        torch_opt = torch.optim.SGD(
            [{"params": decayed, "weight_decay": 0.01}, {"params": other, "weight_decay": 0.0}], lr=0.1, momentum=0.9
        )
    elif optimizer_name == "nesterov":
        ours_opt = SGD(ours, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)
        torch_opt = torch.optim.SGD(
            [{"params": decayed, "weight_decay": 0.01}, {"params": other, "weight_decay": 0.0}],
            lr=0.1,
            momentum=0.9,
            nesterov=True,
        )
    elif optimizer_name == "adam":
        ours_opt = Adam(ours, lr=0.01, weight_decay=0.01)
        torch_opt = torch.optim.Adam(
            [{"params": decayed, "weight_decay": 0.01}, {"params": other, "weight_decay": 0.0}], lr=0.01
        )
    else:
        ours_opt = AdamW(ours, lr=0.01, weight_decay=0.1)
        torch_opt = torch.optim.AdamW(
            [{"params": decayed, "weight_decay": 0.1}, {"params": other, "weight_decay": 0.0}], lr=0.01
        )

    loss_fn = SoftmaxCrossEntropy()
    history = []
    for x_host, y_host in data:
        # ours
        logits = ours.forward(backend.asarray(x_host, dtype))
        loss = loss_fn.forward(logits, backend.asarray(y_host, "int64"))
        ours.backward(loss_fn.backward())
        ours_opt.step()
        # torch, with the same dropout mask
        mask = (mask_rng.random((16, 20), dtype=np.float32) < 1 - p_drop).astype(dtype) * (1 / (1 - p_drop))
        torch_opt.zero_grad()
        h = bn(torch.relu(lin1(torch.from_numpy(x_host).to(torch_dtype)))) * torch.from_numpy(mask)
        torch_loss = torch.nn.functional.cross_entropy(lin2(h), torch.from_numpy(y_host))
        torch_loss.backward()
        torch_opt.step()
        history.append(
            {
                "loss": (float(backend.to_numpy(loss)), torch_loss.item()),
                "linear0.weight": (ours["linear0"].params["weight"], lin1.weight.detach().numpy().T),
                "linear0.bias": (ours["linear0"].params["bias"], lin1.bias.detach().numpy()),
                "batchnorm2.gamma": (ours["batchnorm2"].params["gamma"], bn.weight.detach().numpy()),
                "batchnorm2.beta": (ours["batchnorm2"].params["beta"], bn.bias.detach().numpy()),
                "batchnorm2.running_mean": (ours["batchnorm2"].buffers["running_mean"], bn.running_mean.numpy()),
                "batchnorm2.running_var": (ours["batchnorm2"].buffers["running_var"], bn.running_var.numpy()),
                "linear4.weight": (ours["linear4"].params["weight"], lin2.weight.detach().numpy().T),
                "linear4.bias": (ours["linear4"].params["bias"], lin2.bias.detach().numpy()),
            }
        )
        # copy ours now: the next step updates in place
        history[-1] = {k: (np.array(a, copy=True), np.array(b, copy=True)) for k, (a, b) in history[-1].items()}
    return history


@pytest.mark.parametrize("optimizer_name", ["sgd", "nesterov", "adam", "adamw"])
def test_optimizer_matches_torch_float64(optimizer_name):
    history = _torch_run(optimizer_name, "float64")
    assert len(history) == TORCH_STEPS
    for step, record in enumerate(history):
        for key, (mine, theirs) in record.items():
            np.testing.assert_allclose(mine, theirs, rtol=1e-9, atol=1e-12, err_msg=f"step {step}: {key}")
    # the parameters moved: the comparison is not between two untouched copies
    first, last = history[0]["linear0.weight"][0], history[-1]["linear0.weight"][0]
    assert not np.allclose(first, last)


@pytest.mark.parametrize("optimizer_name", ["sgd", "adam"])
def test_optimizer_matches_torch_float32(optimizer_name):
    for step, record in enumerate(_torch_run(optimizer_name, "float32")):
        for key, (mine, theirs) in record.items():
            assert np.asarray(mine).dtype == np.float32 or key == "loss"
            np.testing.assert_allclose(mine, theirs, rtol=1e-4, atol=1e-5, err_msg=f"step {step}: {key}")
