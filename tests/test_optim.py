"""Optimizer settings changed between steps, and the learning-rate schedules' arguments."""

from __future__ import annotations

import numpy as np
import pytest

import mlp_xp
from mlp_xp import SGD, Adam, make_mlp
from mlp_xp.optim import cosine_decay, exponential_decay, step_decay


def _steps(backend, switch_after: int, steps: int = 4) -> np.ndarray:
    """SGD with weight decay on the weights only, then (after ``switch_after`` steps) on all."""
    rng = np.random.default_rng(0)
    x = backend.asarray(rng.standard_normal((16, 6)), "float32")
    y = backend.asarray(rng.integers(0, 3, 16), "int64")
    model = make_mlp(6, [5], 3).init(backend, seed=1)
    optimizer = SGD(model, lr=0.1, weight_decay=0.5)
    loss = mlp_xp.SoftmaxCrossEntropy()
    for step in range(steps):
        optimizer.decay_all = step >= switch_after
        loss.forward(model.forward(x), y)
        model.backward(loss.backward())
        optimizer.step()
    return backend.to_numpy(model.flat.data)


def test_decay_all_switched_between_steps_takes_effect_on_every_backend(backend):
    """NumPy updates per parameter (reading ``decay_all`` each step); the others update the
    whole buffer with a decay mask, which must be made again when ``decay_all`` changes."""
    numpy = mlp_xp.get_backend("numpy")
    np.testing.assert_allclose(_steps(backend, 2), _steps(numpy, 2), rtol=1e-5, atol=1e-6)
    assert not np.allclose(_steps(numpy, 2), _steps(numpy, 4))  # the switch changes the run


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: step_decay(0), "step_decay: step=0 must be at least 1"),
        (lambda: step_decay(1, gamma=2.0), r"step_decay: gamma=2.0 must be in \(0, 1\]"),
        (lambda: exponential_decay(0.0), r"exponential_decay: gamma=0.0 must be in \(0, 1\]"),
        (lambda: cosine_decay(0), "cosine_decay: epochs=0 must be at least 1"),
        (lambda: cosine_decay(5, min_factor=-0.1), r"cosine_decay: min_factor=-0.1 must be in \[0, 1\]"),
    ],
)
def test_schedule_arguments_out_of_range_are_refused_when_made(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_schedules_in_range():
    assert [step_decay(2, 0.5)(e) for e in range(5)] == [1.0, 1.0, 0.5, 0.5, 0.25]
    assert exponential_decay(1.0)(7) == 1.0
    assert cosine_decay(4, min_factor=0.2)(0) == 1.0 and cosine_decay(4, min_factor=0.2)(9) == pytest.approx(0.2)
    assert cosine_decay(1)(1) == pytest.approx(0.0)


@pytest.mark.parametrize(
    "drop, message",
    [("exp_avg_sq/", r"optimizer state lacks \['exp_avg_sq'\]"), ("exp_avg/hidden1.weight", "no array for parameter")],
    ids=["a whole state missing", "one parameter missing"],
)
def test_load_state_arrays_that_fail_leave_the_optimizer_as_it_was(numpy_backend, drop, message):
    model = make_mlp(6, [5], 3).init(numpy_backend, seed=1)
    optimizer = mlp_xp.Adam(model, 1e-2)
    loss = mlp_xp.SoftmaxCrossEntropy()
    rng = np.random.default_rng(0)
    loss.forward(model.forward(rng.standard_normal((8, 6)).astype(np.float32)), rng.integers(0, 3, 8))
    model.backward(loss.backward())
    optimizer.step()
    state = dict(optimizer.state)
    arrays = {k: v + 1 for k, v in optimizer.state_arrays().items() if not k.startswith(drop)}
    with pytest.raises(ValueError, match=message):
        optimizer.load_state_arrays(arrays, steps=99)
    assert optimizer.steps == 1 and optimizer.state.keys() == state.keys()
    assert all(optimizer.state[k] is v for k, v in state.items())



def _adam_moments(backend, grads: list[np.ndarray], dtype: str) -> dict[str, np.ndarray]:
    """Adam's two moments after updates with ``grads`` from zero state, in ``dtype``."""
    optimizer = mlp_xp.Adam(make_mlp(2, [2], 2).init("numpy"), 1e-3)
    n = grads[0].size
    params = backend.asarray(np.zeros(n), dtype)
    state = {name: backend.asarray(np.zeros(n), dtype) for name in Adam.state_names}
    for g in grads:
        optimizer.steps += 1
        params = optimizer._update(params, backend.asarray(g, dtype), state)
    return {name: backend.to_numpy(value).astype(np.float64) for name, value in state.items()}


def test_adam_moments_in_float32_are_as_exact_as_float32_allows(backend, numpy_backend):
    """Five steps of float32 gradients of mixed scales: each moment within a few float32
    rounding errors (of the scale of its terms, the moments of |g|) of the same update in
    float64; β(v − g²) + g², which cancels while v ≪ g², was 500 off."""
    rng = np.random.default_rng(0)
    grads = [(rng.standard_normal(1000) * 10.0 ** rng.uniform(-3, 3, 1000)).astype(np.float32) for _ in range(5)]
    exact = _adam_moments(numpy_backend, grads, "float64")
    scale = _adam_moments(numpy_backend, [np.abs(g) for g in grads], "float64")
    for name, value in _adam_moments(backend, grads, "float32").items():
        assert np.all(np.abs(value - exact[name]) <= 1e-6 * scale[name]), name
