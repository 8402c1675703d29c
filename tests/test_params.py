"""The flat parameter buffer: layers see views of one buffer, the optimizer updates it whole,
and every backend (in-place views or immutable rebinding) ends with the same parameters."""

from __future__ import annotations

import numpy as np
import pytest

import mlp_xp
from mlp_xp import SGD, Adam, AdamW, make_mlp
from mlp_xp.params import FlatParameters


def _batch(backend, n=16, seed=0):
    rng = np.random.default_rng(seed)
    return backend.asarray(rng.standard_normal((n, 6)), "float32"), backend.asarray(rng.integers(0, 3, n), "int64")


def _step(model, optimizer, backend, seed=0):
    x, y = _batch(backend, seed=seed)
    loss = mlp_xp.SoftmaxCrossEntropy()
    model.backward(loss.backward() if loss.forward(model.forward(x), y) is not None else None)
    optimizer.step()


def test_layout_and_views(backend):
    model = make_mlp(6, [5], 3, batchnorm=True).init(backend, seed=1)
    flat = model.flat
    assert flat.size == model.num_parameters() == 6 * 5 + 5 + 5 + 5 + 5 * 3 + 3
    assert tuple(flat.data.shape) == (flat.size,)
    host = backend.to_numpy(flat.data)
    for slot in flat:
        np.testing.assert_array_equal(
            backend.to_numpy(model.parameters()[slot.name]).reshape(-1), host[slot.start : slot.stop]
        )
    assert [s.name for s in flat if s.decays] == ["hidden1.weight", "output.weight"]
    mask = backend.to_numpy(flat.decay_mask())
    assert mask.sum() == 6 * 5 + 5 * 3 and set(mask.tolist()) == {0.0, 1.0}


def test_updates_reach_the_layers_on_every_backend(backend):
    """After steps, the layers' parameters are the buffer's entries (in-place views on NumPy,
    CuPy, torch and array-api-strict; rebound views on JAX) and equal NumPy's."""
    results = []
    for b in (mlp_xp.get_backend("numpy"), backend):
        model = make_mlp(6, [5], 3).init(b, seed=2)
        optimizer = Adam(model, lr=0.1)
        for seed in range(3):
            _step(model, optimizer, b, seed)
        flat = b.to_numpy(model.flat.data)
        for slot in model.flat:
            np.testing.assert_array_equal(
                b.to_numpy(slot.layer.params[slot.key]).reshape(-1), flat[slot.start : slot.stop]
            )
        results.append(flat)
    np.testing.assert_allclose(results[1], results[0], rtol=1e-5, atol=1e-6)
    assert not np.allclose(results[0], make_mlp(6, [5], 3).init("numpy", seed=2).flat.data)


def test_a_parameter_assigned_from_outside_is_trained(backend):
    model = make_mlp(6, [5], 3).init(backend, seed=3)
    optimizer = SGD(model, lr=0.5)
    replacement = np.full((6, 5), 0.1, dtype=np.float32)
    model["hidden1"].params["weight"] = backend.asarray(replacement, "float32")
    _step(model, optimizer, backend)
    weight = backend.to_numpy(model["hidden1"].params["weight"])
    assert np.abs(weight - replacement).max() > 1e-3  # the step updated the new array's entries
    np.testing.assert_array_equal(backend.to_numpy(model.flat.data)[: 6 * 5], weight.reshape(-1))
    reference = make_mlp(6, [5], 3).init("numpy", seed=3)  # the same weights from the start
    reference["hidden1"].params["weight"] = replacement.copy()
    _step(reference, SGD(reference, lr=0.5), mlp_xp.get_backend("numpy"))
    np.testing.assert_allclose(weight, reference["hidden1"].params["weight"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape, dtype", [((4,), "float32"), ((5,), "float64")])
def test_a_parameter_assigned_with_another_shape_or_dtype_is_refused(backend64, shape, dtype):
    """Either would be re-laid-out silently: a longer buffer, or all of it promoted to float64."""
    model = make_mlp(6, [5], 3).init(backend64, seed=3)
    optimizer = SGD(model, lr=0.5)
    x, y = _batch(backend64)
    loss = mlp_xp.SoftmaxCrossEntropy()
    loss.forward(model.forward(x), y)
    model.backward(loss.backward())
    model["hidden1"].params["bias"] = backend64.asarray(np.ones(shape), dtype)  # between backward and step
    with pytest.raises(ValueError, match=rf"parameter hidden1.bias was assigned an array of shape \({shape[0]},\)"):
        optimizer.step()


def test_gradients_gathered_in_layout_order(numpy_backend):
    model = make_mlp(6, [5], 3).init(numpy_backend, seed=4)
    x, y = _batch(numpy_backend)
    loss = mlp_xp.SoftmaxCrossEntropy()
    loss.forward(model.forward(x), y)
    model.backward(loss.backward())
    grads = model.flat.grads()
    for slot in model.flat:
        np.testing.assert_array_equal(grads[slot.start : slot.stop], slot.layer.grads[slot.key].reshape(-1))


UPDATES = {
    "sgd": lambda model: SGD(model, lr=0.3),
    "sgd-momentum-decay": lambda model: SGD(model, lr=0.3, momentum=0.9, weight_decay=0.05),
    "nesterov-decay-all": lambda model: SGD(
        model, lr=0.3, momentum=0.9, nesterov=True, weight_decay=0.05, decay_all=True
    ),
    "adam-decay": lambda model: Adam(model, lr=0.05, weight_decay=0.05),
    "adamw": lambda model: AdamW(model, lr=0.05, weight_decay=0.05),
}


def _trained(backend, make_optimizer, per_parameter, monkeypatch):
    monkeypatch.setattr(backend, "updates_per_parameter", per_parameter)
    model = make_mlp(6, [5], 3, batchnorm=True).init(backend, seed=5)
    optimizer = make_optimizer(model)
    for seed in range(3):
        _step(model, optimizer, backend, seed)
    host = {name: backend.to_numpy(a) for name, a in model.parameters().items()}
    host.update({name: backend.to_numpy(a) for name, a in optimizer.state_arrays().items()})
    return host


@pytest.mark.parametrize("name", UPDATES)
def test_per_parameter_updates_equal_whole_buffer_updates(backend, name, monkeypatch):
    """NumPy updates parameter by parameter (``updates_per_parameter``), the GPU libraries the
    whole flat buffer: the same arithmetic, so parameters and optimizer state agree bit for bit
    (decay only where the layers ask for it, state written through the views). JAX, whose
    arrays do not update in place, refuses the per-parameter path."""
    if backend.name == "jax":
        with pytest.raises(RuntimeError, match="do not update in place"):
            _trained(backend, UPDATES[name], True, monkeypatch)
        return
    whole = _trained(backend, UPDATES[name], False, monkeypatch)
    per_parameter = _trained(backend, UPDATES[name], True, monkeypatch)
    assert whole.keys() == per_parameter.keys()
    for key in whole:
        np.testing.assert_array_equal(per_parameter[key], whole[key], err_msg=key)
    initial = make_mlp(6, [5], 3, batchnorm=True).init("numpy", seed=5).parameters()
    assert all(not np.array_equal(whole[key], initial[key]) for key in initial)  # every parameter trained


def test_numpy_steps_without_gathering_the_gradients(numpy_backend, monkeypatch):
    """On NumPy the step skips the ``concat`` of all gradients into one buffer (a pass over them)."""
    assert numpy_backend.updates_per_parameter
    model = make_mlp(6, [5], 3).init(numpy_backend, seed=6)
    optimizer = SGD(model, lr=0.3, momentum=0.9)

    def no_gather(self, arrays):
        raise AssertionError("the gradients were gathered into one buffer")

    monkeypatch.setattr(FlatParameters, "join", no_gather)
    before = model.flat.data.copy()
    _step(model, optimizer, numpy_backend)
    assert np.abs(model.flat.data - before).max() > 1e-3


@pytest.mark.parametrize("replaced", ["parameter", "state"])
def test_per_parameter_steps_follow_what_is_replaced_between_steps(numpy_backend, replaced):
    """The per-parameter update keeps its views of the buffers from step to step; a parameter
    assigned, or optimizer state loaded, after a step is what the next step updates."""
    model = make_mlp(6, [5], 3).init(numpy_backend, seed=3)
    optimizer = SGD(model, lr=0.5, momentum=0.9)
    _step(model, optimizer, numpy_backend)
    if replaced == "parameter":
        model["hidden1"].params["weight"] = np.full((6, 5), 0.1, dtype=np.float32)
    state = {key: value.copy() for key, value in optimizer.state_arrays().items()}
    if replaced == "state":
        state = {key: np.full_like(value, 0.2) for key, value in state.items()}
        optimizer.load_state_arrays(state, optimizer.steps)
    reference = make_mlp(6, [5], 3).init(numpy_backend, seed=0)
    for name, value in model.parameters().items():
        layer, _, key = name.partition(".")
        reference[layer].params[key] = value.copy()
    reference_optimizer = SGD(reference, lr=0.5, momentum=0.9)
    reference_optimizer.load_state_arrays({key: value.copy() for key, value in state.items()}, optimizer.steps)
    _step(model, optimizer, numpy_backend, seed=1)
    _step(reference, reference_optimizer, numpy_backend, seed=1)
    for name, value in reference.parameters().items():
        np.testing.assert_array_equal(model.parameters()[name], value, err_msg=name)
    for key, value in reference_optimizer.state_arrays().items():
        np.testing.assert_array_equal(optimizer.state_arrays()[key], value, err_msg=key)
