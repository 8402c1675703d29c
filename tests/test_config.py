"""What a user configures, checked against its definition rather than against the package
itself: initialiser scales and bounds, learning-rate schedules at known epochs, the layers
``make_mlp`` builds, ``summary()``'s parameter counts, accuracy counting of the losses, and
``evaluate`` against a hand-written eval-mode forward pass in NumPy."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

import mlp_xp
from mlp_xp import (
    MSE,
    SGD,
    BatchNorm,
    BinaryCrossEntropy,
    DeviceLoader,
    Dropout,
    LeakyReLU,
    Linear,
    ReLU,
    Sequential,
    Sigmoid,
    SoftmaxCrossEntropy,
    Tanh,
    cosine_decay,
    exponential_decay,
    make_mlp,
    step_decay,
)
from mlp_xp.backends import host_rng
from mlp_xp.init import get_initializer, he_normal, normal, uniform, xavier_uniform
from mlp_xp.optim import get_schedule

# -- initialisers ------------------------------------------------------------------------------

FAN_IN, FAN_OUT = 400, 625  # 250 000 draws: the sample std is within 0.15 % (1 sigma) of the true one
STD_RTOL = 0.01  # about 7 sigma, yet far below the gap to a wrong formula (fan_out for fan_in: 11 %)


def _draw(initializer, fan_in=FAN_IN, fan_out=FAN_OUT, seed=0) -> np.ndarray:
    w = np.asarray(initializer(host_rng(seed), fan_in, fan_out))
    assert w.shape == (fan_in, fan_out)
    return w


def _assert_centred_with_std(w: np.ndarray, std: float) -> None:
    assert abs(w.mean()) < 5 * std / math.sqrt(w.size)
    assert w.std() == pytest.approx(std, rel=STD_RTOL)


def _assert_uniform_bound(w: np.ndarray, bound: float) -> None:
    """Entries in [-bound, bound], reaching both ends, with U(-b, b)'s std b/sqrt(3)."""
    assert w.max() <= bound and w.min() >= -bound
    assert w.max() > bound * 0.999 and w.min() < -bound * 0.999
    _assert_centred_with_std(w, bound / math.sqrt(3))


@pytest.mark.parametrize("std", [0.01, 0.2])
def test_normal_std(std):
    _assert_centred_with_std(_draw(normal(std)), std)


def test_normal_default_std_is_0_01():
    _assert_centred_with_std(_draw(normal()), 0.01)


def test_uniform_default_limit_is_one_over_sqrt_fan_in():
    _assert_uniform_bound(_draw(uniform()), 1 / 20)  # 1/sqrt(400)


def test_uniform_explicit_limit():
    _assert_uniform_bound(_draw(uniform(0.3)), 0.3)


@pytest.mark.parametrize("name", ["he", "kaiming"])
def test_he_std_is_sqrt_2_over_fan_in(name):
    _assert_centred_with_std(_draw(get_initializer(name)), math.sqrt(2 / 400))
    _assert_centred_with_std(_draw(he_normal(), fan_in=50), 0.2)  # sqrt(2/50)


@pytest.mark.parametrize("name", ["xavier", "glorot"])
def test_xavier_bound_is_sqrt_6_over_fan_sum(name):
    _assert_uniform_bound(_draw(get_initializer(name)), math.sqrt(6 / 1025))
    _assert_uniform_bound(_draw(xavier_uniform(), fan_in=100, fan_out=500), 0.1)  # sqrt(6/600)


def test_initialisers_by_name_and_unknown_name():
    _assert_centred_with_std(_draw(get_initializer("normal", std=0.05)), 0.05)
    _assert_uniform_bound(_draw(get_initializer("uniform", limit=0.2)), 0.2)
    custom = normal(0.3)
    assert get_initializer(custom) is custom
    with pytest.raises(ValueError) as info:
        get_initializer("lecun")
    assert str(info.value) == "unknown initialiser 'lecun'; choose from normal, uniform, he, kaiming, xavier, glorot."


def test_initialisers_draw_from_the_seed():
    np.testing.assert_array_equal(_draw(he_normal(), seed=3), _draw(he_normal(), seed=3))
    assert not np.array_equal(_draw(he_normal(), seed=3), _draw(he_normal(), seed=4))


@pytest.mark.parametrize(
    ("kwargs", "check"),
    [
        ({}, lambda w, fan_in, fan_out: _assert_centred_with_std(w, math.sqrt(2 / fan_in))),  # he by default
        ({"init": "normal", "init_std": 0.05}, lambda w, fan_in, fan_out: _assert_centred_with_std(w, 0.05)),
        ({"init": "normal"}, lambda w, fan_in, fan_out: _assert_centred_with_std(w, 0.01)),
        ({"init": "uniform"}, lambda w, fan_in, fan_out: _assert_uniform_bound(w, 1 / math.sqrt(fan_in))),
        ({"init": "xavier"}, lambda w, fan_in, fan_out: _assert_uniform_bound(w, math.sqrt(6 / (fan_in + fan_out)))),
    ],
    ids=["default-he", "normal-std", "normal-default", "uniform", "xavier"],
)
def test_make_mlp_initialises_every_linear_as_asked(numpy_backend, kwargs, check):
    model = make_mlp(FAN_IN, [FAN_OUT], 300, **kwargs).init(numpy_backend, seed=0, dtype="float64")
    for name, fan_in, fan_out in (("hidden1", FAN_IN, FAN_OUT), ("output", FAN_OUT, 300)):
        layer = model[name]
        check(numpy_backend.to_numpy(layer.params["weight"]), fan_in, fan_out)
        np.testing.assert_array_equal(numpy_backend.to_numpy(layer.params["bias"]), 0.0)


# -- learning-rate schedules -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        (step_decay(), {0: 1.0, 1: 0.5, 2: 0.25, 3: 0.125}),
        (step_decay(3, 0.1), {0: 1.0, 2: 1.0, 3: 0.1, 5: 0.1, 6: 0.01}),
        (exponential_decay(0.9), {0: 1.0, 1: 0.9, 2: 0.81, 3: 0.729}),
        # 1/2 (1 + cos(pi e / 4)), with cos(pi/4) = 0.7071068; held at 0 after the last epoch
        (cosine_decay(4), {0: 1.0, 1: 0.8535534, 2: 0.5, 3: 0.1464466, 4: 0.0, 5: 0.0}),
        # 0.2 + 0.8 · 1/2 (1 + cos(pi e / 4)), held at 0.2 after the last epoch
        (cosine_decay(4, min_factor=0.2), {0: 1.0, 1: 0.8828427, 2: 0.6, 3: 0.3171573, 4: 0.2, 6: 0.2}),
        # 0.1 + 0.9 · 1/2 (1 + cos(pi e / 10)), with cos(pi/5) = 0.8090170
        (cosine_decay(10, min_factor=0.1), {0: 1.0, 2: 0.9140576, 5: 0.55, 10: 0.1}),
    ],
    ids=["step-default", "step-3-0.1", "exp-0.9", "cosine", "cosine-min", "cosine-10"],
)
def test_schedule_values_at_known_epochs(schedule, expected):
    got = [schedule(epoch) for epoch in expected]
    np.testing.assert_allclose(got, list(expected.values()), rtol=1e-6, atol=1e-12)


def test_schedules_by_cli_name():
    assert get_schedule(None, 10) is None and get_schedule("none", 10) is None
    assert [get_schedule("step", 10, gamma=0.1, step=2)(e) for e in range(5)] == pytest.approx(
        [1.0, 1.0, 0.1, 0.1, 0.01]
    )
    assert [get_schedule("exp", 10, gamma=0.5)(e) for e in range(3)] == pytest.approx([1.0, 0.5, 0.25])
    assert [get_schedule("cosine", 2)(e) for e in range(4)] == pytest.approx([1.0, 0.5, 0.0, 0.0], abs=1e-12)
    with pytest.raises(ValueError, match="unknown learning-rate schedule 'linear'"):
        get_schedule("linear", 10)


def test_optimizer_lr_follows_the_schedule(numpy_backend):
    model = make_mlp(3, [4], 2).init(numpy_backend)
    optimizer = SGD(model, 0.2, schedule=cosine_decay(4, min_factor=0.2))
    assert optimizer.lr == 0.2
    lrs = []
    for epoch in (2, 4, 1):
        optimizer.set_epoch(epoch)
        lrs.append(optimizer.lr)
    assert lrs == pytest.approx([0.12, 0.04, 0.17656854])
    fixed = SGD(model, 0.2)
    fixed.set_epoch(5)
    assert fixed.lr == 0.2


# -- make_mlp and summary ----------------------------------------------------------------------


def _describe(layer) -> tuple:
    """(name, type, sizes) of a layer, read from its attributes."""
    kind = type(layer)
    if kind is Linear:
        return (layer.name, "Linear", layer.in_features, layer.out_features)
    if kind is BatchNorm:
        return (layer.name, "BatchNorm", layer.num_features)
    if kind is Dropout:
        return (layer.name, "Dropout", layer.p)
    if kind is LeakyReLU:
        return (layer.name, "LeakyReLU", layer.negative_slope)
    return (layer.name, kind.__name__)


@pytest.mark.parametrize(
    ("args", "kwargs", "expected"),
    [
        ((7, [], 3), {}, [("output", "Linear", 7, 3)]),
        (
            (784, [256], 10),
            {},
            [("hidden1", "Linear", 784, 256), ("act1", "ReLU"), ("output", "Linear", 256, 10)],
        ),
        (
            (10, [8, 6], 3),
            {"activation": "tanh", "batchnorm": True, "dropout": 0.25},
            [
                ("hidden1", "Linear", 10, 8),
                ("bn1", "BatchNorm", 8),
                ("act1", "Tanh"),
                ("drop1", "Dropout", 0.25),
                ("hidden2", "Linear", 8, 6),
                ("bn2", "BatchNorm", 6),
                ("act2", "Tanh"),
                ("drop2", "Dropout", 0.25),
                ("output", "Linear", 6, 3),
            ],
        ),
        (
            (5, [4, 4, 2], 1),
            {"activation": "leaky_relu", "dropout": 0.5},
            [
                ("hidden1", "Linear", 5, 4),
                ("act1", "LeakyReLU", 0.01),
                ("drop1", "Dropout", 0.5),
                ("hidden2", "Linear", 4, 4),
                ("act2", "LeakyReLU", 0.01),
                ("drop2", "Dropout", 0.5),
                ("hidden3", "Linear", 4, 2),
                ("act3", "LeakyReLU", 0.01),
                ("drop3", "Dropout", 0.5),
                ("output", "Linear", 2, 1),
            ],
        ),
        (
            (6, [3], 2),
            {"activation": "sigmoid", "batchnorm": True},
            [("hidden1", "Linear", 6, 3), ("bn1", "BatchNorm", 3), ("act1", "Sigmoid"), ("output", "Linear", 3, 2)],
        ),
    ],
    ids=["no-hidden", "default", "tanh-bn-dropout", "leaky-dropout", "sigmoid-bn"],
)
def test_make_mlp_builds_exactly_these_layers(args, kwargs, expected):
    model = make_mlp(*args, **kwargs)
    assert [_describe(layer) for layer in model] == expected
    assert model.names == [e[0] for e in expected]


def test_make_mlp_activation_types_and_errors():
    for name, kind in (("relu", ReLU), ("leaky_relu", LeakyReLU), ("sigmoid", Sigmoid), ("tanh", Tanh)):
        assert type(make_mlp(2, [3], 1, activation=name)["act1"]) is kind
    with pytest.raises(ValueError, match="unknown activation 'gelu'"):
        make_mlp(2, [3], 1, activation="gelu")


# hand-counted: weights in·out plus out biases per Linear, gamma and beta per BatchNorm
SUMMARY_ROWS = [
    ("hidden1", "(batch, 256)", "200,960"),  # 784·256 + 256
    ("bn1", "(batch, 256)", "512"),
    ("act1", "(batch, 256)", "0"),
    ("drop1", "(batch, 256)", "0"),
    ("hidden2", "(batch, 128)", "32,896"),  # 256·128 + 128
    ("bn2", "(batch, 128)", "256"),
    ("act2", "(batch, 128)", "0"),
    ("drop2", "(batch, 128)", "0"),
    ("output", "(batch, 10)", "1,290"),  # 128·10 + 10
]
SUMMARY_TOTAL = 235_914


@pytest.mark.parametrize("initialised", [False, True])
def test_summary_counts_parameters_per_layer(numpy_backend, initialised):
    model = make_mlp(784, [256, 128], 10, batchnorm=True, dropout=0.1)
    if initialised:
        model.init(numpy_backend)
    lines = model.summary().splitlines()
    rows = [re.fullmatch(r"(\S+)\s+\S.*?\s+(\(batch, \d+\))\s+([\d,]+)", line) for line in lines[2:-1]]
    assert [row.groups() for row in rows] == SUMMARY_ROWS
    where = " on numpy, float32" if initialised else " (not initialised)"
    assert lines[-1] == f"total parameters: {SUMMARY_TOTAL:,}{where}"
    if initialised:
        assert model.num_parameters() == SUMMARY_TOTAL
        assert sum(v.size for v in model.parameters().values()) == SUMMARY_TOTAL


# -- accuracy counting -------------------------------------------------------------------------


def _count(numpy_backend, loss, pred, target) -> int:
    xp_pred, xp_target = numpy_backend.asarray(np.asarray(pred)), numpy_backend.asarray(np.asarray(target))
    return int(numpy_backend.to_numpy(loss.correct(xp_pred, xp_target)))


@pytest.mark.parametrize("column", [False, True], ids=["flat", "column"])
def test_binary_accuracy_from_logits_thresholds_at_zero(numpy_backend, column):
    logits = np.array([-3.0, -0.2, 0.2, 0.3, 4.0, 0.4], dtype=np.float32)
    target = np.array([0, 0, 1, 1, 1, 0])
    pred = logits[:, None] if column else logits
    # predicted positive exactly where the logit is > 0: right on the first five
    assert _count(numpy_backend, BinaryCrossEntropy(from_logits=True), pred, target) == 5
    assert _count(numpy_backend, BinaryCrossEntropy(from_logits=True), pred, target.astype(np.float32)) == 5


@pytest.mark.parametrize("column", [False, True], ids=["flat", "column"])
def test_binary_accuracy_from_probabilities_thresholds_at_one_half(numpy_backend, column):
    prob = np.array([0.1, 0.3, 0.45, 0.55, 0.9, 0.4], dtype=np.float32)
    target = np.array([0, 0, 1, 1, 1, 0])
    pred = prob[:, None] if column else prob
    # predicted positive exactly where p > 0.5: wrong on 0.45 only
    assert _count(numpy_backend, BinaryCrossEntropy(from_logits=False), pred, target) == 5


def test_softmax_accuracy_from_labels_and_one_hot(numpy_backend):
    logits = np.array([[2.0, 1.0, 0.0], [0.0, 0.5, 3.0], [1.0, 4.0, 0.0], [0.0, 0.0, 1.0]], dtype=np.float32)
    labels = np.array([0, 2, 0, 1])
    assert _count(numpy_backend, SoftmaxCrossEntropy(), logits, labels) == 2
    one_hot = np.eye(3, dtype=np.float32)[labels]
    assert _count(numpy_backend, SoftmaxCrossEntropy(), logits, one_hot) == 2


def test_mse_defines_no_accuracy(numpy_backend):
    pred = numpy_backend.asarray(np.zeros((2, 2), np.float32))
    assert MSE().correct(pred, pred) is None


# -- evaluate runs the model in eval mode ------------------------------------------------------


def _eval_mode_reference(state: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray, eps: float):
    """Loss and accuracy of Linear → BatchNorm (running statistics) → ReLU → Dropout (off) →
    Linear, written out in NumPy."""
    h = x @ state["linear0.weight"] + state["linear0.bias"]
    h = (h - state["batchnorm1.running_mean"]) / np.sqrt(state["batchnorm1.running_var"] + eps)
    h = np.maximum(h * state["batchnorm1.gamma"] + state["batchnorm1.beta"], 0.0)
    logits = h @ state["linear4.weight"] + state["linear4.bias"]
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return -log_probs[np.arange(len(y)), y].mean(), float(np.mean(logits.argmax(axis=1) == y))


@pytest.mark.parametrize("start_in_training", [True, False], ids=["from-train-mode", "from-eval-mode"])
def test_evaluate_matches_a_hand_written_eval_mode_pass(numpy_backend, start_in_training):
    rng = np.random.default_rng(0)
    model = Sequential(Linear(6, 5), BatchNorm(5), ReLU(), Dropout(0.5), Linear(5, 3))
    model.init(numpy_backend, seed=0, dtype="float64")
    bn = model["batchnorm1"]
    # running statistics far from any batch's: batch statistics would give other outputs
    bn.buffers["running_mean"] = numpy_backend.asarray(rng.normal(0.0, 2.0, 5), "float64")
    bn.buffers["running_var"] = numpy_backend.asarray(rng.uniform(0.2, 4.0, 5), "float64")
    bn.params["gamma"] = numpy_backend.asarray(rng.uniform(0.5, 1.5, 5), "float64")
    bn.params["beta"] = numpy_backend.asarray(rng.normal(0.0, 0.5, 5), "float64")
    x = rng.normal(0.0, 1.0, (23, 6))
    y = rng.integers(0, 3, 23)
    state = {k: numpy_backend.to_numpy(v).copy() for k, v in model.state().items()}
    expected_loss, expected_acc = _eval_mode_reference(state, x, y, bn.eps)
    if not start_in_training:
        model.eval()

    loader = DeviceLoader(x, y, numpy_backend, batch_size=5, shuffle=False, dtype="float64")  # 5 batches: 4×5 + 3
    scores = mlp_xp.evaluate(model, SoftmaxCrossEntropy(), loader)

    assert scores["loss"] == pytest.approx(expected_loss, rel=1e-12)
    assert scores["acc"] == pytest.approx(expected_acc, abs=1e-12)
    assert 0.0 < expected_acc < 1.0
    # nothing was trained or updated, and the model is back in the mode it was in
    for key, value in model.state().items():
        np.testing.assert_array_equal(numpy_backend.to_numpy(value), state[key], err_msg=key)
    assert all(layer.training is start_in_training for layer in model)


def test_evaluate_without_accuracy_reports_none(numpy_backend):
    model = Sequential(Linear(3, 2)).init(numpy_backend, seed=0, dtype="float64")
    x = np.random.default_rng(1).normal(size=(7, 3))
    target = np.zeros((7, 2))
    loader = DeviceLoader(x, target, numpy_backend, batch_size=3, shuffle=False, dtype="float64")
    scores = mlp_xp.evaluate(model, MSE(), loader)
    weight, bias = (numpy_backend.to_numpy(model["linear0"].params[k]) for k in ("weight", "bias"))
    assert scores["acc"] is None
    assert scores["loss"] == pytest.approx(np.mean((x @ weight + bias) ** 2), rel=1e-12)
