"""Optimizers, ``Sequential`` and ``FlatParameters`` behaviour that mutants surviving the
NumPy-only mutmut run showed unchecked: update rules against hand float64 NumPy versions of
torch's rules (defaults, ``decay_all``, schedules and keyword arguments reaching the base class),
optimizer state contents, error messages, defaults of ``Sequential.init``, the range of a
``backward`` without ``forward``, ``to()`` and its dropout generators, and the buffer
contract (``install`` of a new array, ``snapshot``/``restore``, ``join``, the decay mask).
All run on NumPy, in process, in milliseconds."""

from __future__ import annotations

import numpy as np
import pytest

import mlp_xp
from mlp_xp import SGD, Adam, AdamW, Dropout, Layer, Linear, ReLU, Sequential, make_mlp
from mlp_xp import arrays as arrays_module
from mlp_xp.arrays import namespace
from mlp_xp.opcount import counting_backend
from mlp_xp.optim import Optimizer, step_decay

# -- helpers ---------------------------------------------------------------------------------------


def _model(numpy_backend, seed=1):
    """A float64 3→4→2 MLP whose biases are non-zero too (so decaying them shows)."""
    model = make_mlp(3, [4], 2).init(numpy_backend, seed=seed, dtype="float64")
    model.flat.data[:] = np.random.default_rng(seed).standard_normal(model.flat.size)
    return model


def _grads(model, count=3, seed=7):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(model.flat.size) for _ in range(count)]


def _step(optimizer, grad):
    """``optimizer.step()`` with the layers' gradients set from a flat gradient."""
    for slot in optimizer.model.flat:
        slot.layer.grads[slot.key] = grad[slot.start : slot.stop].reshape(slot.shape).copy()
    optimizer.step()


def _mask(model):
    return np.concatenate([np.full(s.stop - s.start, 1.0 if s.decays else 0.0) for s in model.flat])


def _sgd_reference(p, grads, lr, momentum=0.0, nesterov=False, decay=0.0):
    """torch.optim.SGD: ``g += λp; v ← μv + g; p ← p − lr·v`` (Nesterov ``p ← p − lr·(g + μv)``)."""
    p, v = p.copy(), np.zeros_like(p)
    for g in grads:
        g = g + decay * p
        if momentum:
            v = momentum * v + g
            g = g + momentum * v if nesterov else v
        p = p - lr * g
    return p


def _adam_reference(p, grads, lrs, betas=(0.9, 0.999), eps=1e-8, l2=0.0, decoupled=0.0):
    """torch.optim.Adam / AdamW with bias correction; ``lrs`` gives each step's learning rate."""
    p, m, v = p.copy(), np.zeros_like(p), np.zeros_like(p)
    for t, (g, lr) in enumerate(zip(grads, lrs), start=1):
        p = p * (1.0 - lr * decoupled)
        g = g + l2 * p
        m = betas[0] * m + (1 - betas[0]) * g
        v = betas[1] * v + (1 - betas[1]) * g * g
        p = p - lr / (1 - betas[0] ** t) * m / (np.sqrt(v / (1 - betas[1] ** t)) + eps)
    return p


class _PlainDescent(Optimizer):
    """A user optimizer built on the documented base class: ``p ← p − lr·g``."""

    def _update(self, params, grads, state):
        params -= self.lr * grads
        return params


class _Recorder(Layer):
    """A parameter-free layer that logs its backward calls."""

    def __init__(self, log):
        super().__init__()
        self.log = log

    def forward(self, x):
        return x

    def backward(self, dy):
        self.log.append(self.name)
        return dy


class _Scale(Layer):
    """A layer with exactly one parameter: ``y = x · scale``."""

    def __init__(self, n):
        super().__init__()
        self.n = n

    def init(self, backend, rng, dtype):
        self.params["scale"] = backend.xp.ones((self.n,), dtype=backend.dtype(dtype))

    def forward(self, x):
        self.cache["x"] = x
        return x * self.params["scale"]

    def backward(self, dy):
        self.grads["scale"] = (dy * self.saved("x")).sum(axis=0)
        return dy * self.params["scale"]


# -- Optimizer base class --------------------------------------------------------------------------


def test_base_optimizer_defaults_to_no_weight_decay(numpy_backend):
    """A subclass of ``Optimizer`` built with only ``(model, lr)`` has λ = 0 and ``decay_all`` off."""
    model = _model(numpy_backend)
    start, grads = model.flat.data.copy(), _grads(model, 2)
    optimizer = _PlainDescent(model, 0.1)
    assert (optimizer.weight_decay, optimizer.decay_all, optimizer.schedule) == (0.0, False, None)
    for g in grads:
        _step(optimizer, g)
    np.testing.assert_allclose(model.flat.data, _sgd_reference(start, grads, 0.1), rtol=1e-13, atol=1e-15)


def test_base_optimizer_decays_only_the_masked_parameters_by_default(numpy_backend):
    """With λ but no ``decay_all``, only the layers' ``decay`` parameters (weights) decay."""
    model = _model(numpy_backend)
    start, grads, mask = model.flat.data.copy(), _grads(model, 2), _mask(model)
    optimizer = _PlainDescent(model, 0.1, weight_decay=0.5)
    for g in grads:
        _step(optimizer, g)
    np.testing.assert_allclose(model.flat.data, _sgd_reference(start, grads, 0.1, decay=0.5 * mask), rtol=1e-13)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lr": 0.0}, "learning rate must be positive, got 0.0."),
        ({"lr": -0.5}, "learning rate must be positive, got -0.5."),
        ({"lr": 0.1, "weight_decay": -0.01}, "weight decay must be non-negative, got -0.01."),
    ],
)
def test_invalid_learning_rate_and_weight_decay_messages(numpy_backend, kwargs, message):
    """The exact messages for a non-positive learning rate and a negative weight decay."""
    model = _model(numpy_backend)
    for make in (SGD, Adam, AdamW):
        with pytest.raises(ValueError) as caught:
            make(model, **kwargs)
        assert str(caught.value) == message


def test_nesterov_without_momentum_message(numpy_backend):
    """Nesterov without momentum is refused with the exact message."""
    with pytest.raises(ValueError) as caught:
        SGD(_model(numpy_backend), 0.1, nesterov=True)
    assert str(caught.value) == "Nesterov momentum needs momentum > 0."


def test_stepping_an_uninitialised_model_says_to_init_it():
    """``prepare``/``step`` on a model without parameters (``flat is None``) names the fix."""
    model = make_mlp(3, [4], 2)
    assert (model.backend, model.dtype, model.flat) == (None, None, None)
    for make in (SGD, Adam):
        optimizer = make(model, 0.1)
        for call in (optimizer.prepare, optimizer.step):
            with pytest.raises(RuntimeError) as caught:
                call()
            assert str(caught.value) == "the model has no parameters to optimize: call model.init(backend) first."


def test_optimizer_state_is_empty_until_the_first_step(numpy_backend):
    """A new optimizer holds no state (``state == {}``, ``state_arrays() == {}``) until prepared."""
    model = _model(numpy_backend)
    for optimizer in (SGD(model, 0.1, momentum=0.9), Adam(model)):
        assert optimizer.state == {} and optimizer.state_arrays() == {} and optimizer.steps == 0


def test_sgd_state_holds_exactly_its_momentum(numpy_backend):
    """Plain SGD keeps no state; momentum SGD keeps one ``momentum`` buffer (the velocity), named
    ``momentum/<layer>.<key>`` for checkpoints."""
    model = _model(numpy_backend)
    plain = SGD(model, 0.1)
    _step(plain, _grads(model, 1)[0])
    assert plain.state_names == () and plain.state == {} and plain.state_arrays() == {}
    model = _model(numpy_backend)
    heavy = SGD(model, 0.1, momentum=0.9)
    grads = _grads(model, 2)
    for g in grads:
        _step(heavy, g)
    assert list(heavy.state) == ["momentum"]
    assert sorted(heavy.state_arrays()) == sorted(f"momentum/{name}" for name in model.parameters())
    np.testing.assert_allclose(heavy.state["momentum"], 0.9 * grads[0] + grads[1], rtol=1e-14)


def test_sgd_decay_all_decays_biases_too(numpy_backend):
    """``decay_all=True`` adds λ·p for every parameter (biases included), with and without
    momentum and Nesterov."""
    for momentum, nesterov in ((0.0, False), (0.9, False), (0.9, True)):
        model = _model(numpy_backend)
        start, grads = model.flat.data.copy(), _grads(model)
        optimizer = SGD(model, 0.1, momentum=momentum, nesterov=nesterov, weight_decay=0.05, decay_all=True)
        assert optimizer.decay_all is True
        for g in grads:
            _step(optimizer, g)
        expected = _sgd_reference(start, grads, 0.1, momentum, nesterov, decay=0.05)
        np.testing.assert_allclose(model.flat.data, expected, rtol=1e-13, atol=1e-15)


def test_apply_with_decay_all_decays_every_parameter(numpy_backend):
    """``apply`` (the step after a gradient reduction) on plain SGD with ``decay_all`` decays
    every entry by λ·p."""
    model = _model(numpy_backend)
    start, (g,) = model.flat.data.copy(), _grads(model, 1)
    SGD(model, 0.1, weight_decay=0.2, decay_all=True).apply(g.copy())
    np.testing.assert_allclose(model.flat.data, _sgd_reference(start, [g], 0.1, decay=0.2), rtol=1e-13)


def test_weight_decay_switched_on_later_uses_the_buffers_current_dtype(numpy_backend):
    """λ may change between steps: switched on only after the model moved to float64, it decays
    with the float64 mask·λ (bit for bit ``p − lr·(g + λ·mask·p)``), not a float32 one."""
    model = make_mlp(3, [4], 2).init(numpy_backend, seed=2)
    optimizer = SGD(model, 0.1)
    _step(optimizer, np.ones(model.flat.size, dtype=np.float32))
    model.to(numpy_backend, "float64")
    optimizer.weight_decay = 0.1
    p, (g,) = model.flat.data.copy(), _grads(model, 1)
    optimizer.prepare()
    optimizer.apply(g.copy())
    decay = _mask(model) * 0.1
    np.testing.assert_array_equal(model.flat.data, p - (g + decay * p) * 0.1)


# -- Adam, AdamW -----------------------------------------------------------------------------------


def test_adam_and_adamw_defaults(numpy_backend):
    """Adam defaults to lr 1e-3, betas (0.9, 0.999), eps 1e-8 and no decay; AdamW to lr 1e-3 and
    decoupled λ = 0.01 on the weights only."""
    model = _model(numpy_backend)
    start, grads = model.flat.data.copy(), _grads(model)
    adam = Adam(model)
    assert (adam.lr, adam.betas, adam.eps, adam.weight_decay, adam.decay_all) == (1e-3, (0.9, 0.999), 1e-8, 0.0, False)
    for g in grads:
        _step(adam, g)
    np.testing.assert_allclose(model.flat.data, _adam_reference(start, grads, [1e-3] * 3), rtol=1e-12)

    model = _model(numpy_backend)
    adamw = AdamW(model)
    assert (adamw.lr, adamw.weight_decay, adamw.decay_all) == (1e-3, 0.01, False)
    for g in grads:
        _step(adamw, g)
    expected = _adam_reference(start, grads, [1e-3] * 3, decoupled=0.01 * _mask(model))
    np.testing.assert_allclose(model.flat.data, expected, rtol=1e-12)


def test_adam_passes_decay_all_and_schedule_on(numpy_backend):
    """``Adam(decay_all=True, schedule=...)``: L2 decay on every parameter, and ``set_epoch``
    scales the learning rate by the schedule."""
    model = _model(numpy_backend)
    start, grads = model.flat.data.copy(), _grads(model)
    schedule = step_decay(1, 0.5)
    adam = Adam(model, lr=0.01, weight_decay=0.1, decay_all=True, schedule=schedule)
    assert adam.decay_all is True and adam.schedule is schedule
    lrs = []
    for epoch, g in enumerate(grads):
        adam.set_epoch(epoch)
        lrs.append(adam.lr)
        _step(adam, g)
    assert lrs == [0.01, 0.005, 0.0025]
    np.testing.assert_allclose(model.flat.data, _adam_reference(start, grads, lrs, l2=0.1), rtol=1e-12)


def test_adam_schedule_alone_leaves_the_decay_mask(numpy_backend):
    """A schedule given without ``decay_all`` changes the learning rate and nothing else: L2
    decay stays on the weights only."""
    model = _model(numpy_backend)
    start, grads = model.flat.data.copy(), _grads(model, 2)
    adam = Adam(model, lr=0.01, weight_decay=0.1, schedule=step_decay(1, 0.5))
    assert adam.decay_all is False
    for epoch, g in enumerate(grads):
        adam.set_epoch(epoch)
        _step(adam, g)
    expected = _adam_reference(start, grads, [0.01, 0.005], l2=0.1 * _mask(model))
    np.testing.assert_allclose(model.flat.data, expected, rtol=1e-12)


def test_adamw_passes_its_keyword_arguments_on(numpy_backend):
    """``AdamW(betas=, eps=, decay_all=, schedule=)`` reach the update: decoupled decay of every
    parameter, the given betas and eps, and the scheduled learning rate."""
    model = _model(numpy_backend)
    start, grads = model.flat.data.copy(), _grads(model)
    adamw = AdamW(model, 0.02, weight_decay=0.1, betas=(0.8, 0.95), eps=1e-3, decay_all=True, schedule=step_decay(2))
    assert (adamw.betas, adamw.eps, adamw.decay_all) == ((0.8, 0.95), 1e-3, True)
    lrs = []
    for epoch, g in enumerate(grads):
        adamw.set_epoch(epoch * 2)
        lrs.append(adamw.lr)
        _step(adamw, g)
    assert lrs == [0.02, 0.01, 0.005]
    expected = _adam_reference(start, grads, lrs, betas=(0.8, 0.95), eps=1e-3, decoupled=0.1)
    np.testing.assert_allclose(model.flat.data, expected, rtol=1e-12)


# -- Sequential ------------------------------------------------------------------------------------


def test_sequential_construction_messages():
    """No layers, and an entry that is not a Layer (its type named), are refused exactly."""
    with pytest.raises(ValueError) as empty:
        Sequential()
    assert str(empty.value) == "Sequential needs at least one layer."
    with pytest.raises(TypeError) as wrong:
        Sequential(Linear(2, 2), 3)
    assert str(wrong.value) == "Sequential entry 1 is a int, not a Layer."


def test_negative_indices_down_to_minus_length_and_the_range_message():
    """``model[-len]`` is the first layer; one further either way is an IndexError saying why."""
    model = Sequential(Linear(2, 2), ReLU(), Linear(2, 1))
    assert model[-3] is model.layers[0] and model[-1] is model.layers[2]
    for key in (3, -4):
        with pytest.raises(IndexError) as caught:
            model[key]
        assert str(caught.value) == f"layer index {key} out of range for 3 layers."


def test_init_defaults_to_auto_backend_and_seed_0(monkeypatch):
    """``init()`` picks the ``auto`` backend (``MLP_XP_DEVICE`` replaces it), seed 0, float32."""
    monkeypatch.setenv("MLP_XP_DEVICE", "numpy")
    model = make_mlp(3, [4], 2).init()
    assert model.backend.spec == "numpy" and model.dtype == "float32"
    reference = make_mlp(3, [4], 2).init("numpy", seed=0, dtype="float32")
    other = make_mlp(3, [4], 2).init("numpy", seed=1)
    np.testing.assert_array_equal(model.flat.data, reference.flat.data)
    assert not np.array_equal(model.flat.data, other.flat.data)


def test_parameter_free_model_has_no_buffer_and_loads_an_empty_state(numpy_backend):
    """A model without parameters gets ``flat = None``; ``load_state({})`` then works."""
    model = Sequential(ReLU(), Dropout(0.2)).init(numpy_backend)
    assert model.flat is None and model.num_parameters() == 0
    model.load_state({})
    assert model.flat is None


def test_load_state_message_lists_each_problem(numpy_backend):
    """Missing, unexpected and misshapen entries, in that order, joined by ``"; "``."""
    model = make_mlp(4, [3], 2).init(numpy_backend)
    state = {k: np.asarray(v) for k, v in model.state().items()}
    del state["hidden1.bias"]
    state["extra.weight"] = np.zeros(1, np.float32)
    state["output.weight"] = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError) as caught:
        model.load_state(state)
    assert str(caught.value) == (
        "state does not fit this model: missing hidden1.bias; unexpected extra.weight; "
        "output.weight: shape (2, 3) vs model (3, 2)"
    )


def test_load_state_writes_the_flat_buffer(numpy_backend):
    """After ``load_state`` the buffer holds the loaded values and the layers see views of it."""
    model = make_mlp(4, [3], 2).init(numpy_backend)
    loaded = {k: np.full(v.shape, i + 1.0, np.float32) for i, (k, v) in enumerate(model.state().items())}
    model.load_state(loaded)
    expected = np.concatenate([loaded[slot.name].reshape(-1) for slot in model.flat])
    np.testing.assert_array_equal(model.flat.data, expected)
    for slot in model.flat:
        assert np.shares_memory(slot.layer.params[slot.key], model.flat.data)


def test_to_recreates_dropout_generators_from_their_seed(numpy_backend):
    """``to()`` gives each Dropout a new generator on the target with the same seed, so its
    masks start over."""
    model = Sequential(Linear(4, 4), ("drop", Dropout(0.5))).init(numpy_backend, seed=3)
    old = model["drop"].rng
    first = old.bernoulli_mask((64,), 0.5)
    old.bernoulli_mask((64,), 0.5)
    model.to("numpy")
    new = model["drop"].rng
    assert new is not old and new.seed == old.seed is not None
    np.testing.assert_array_equal(new.bernoulli_mask((64,), 0.5), first)


def test_backward_returns_the_input_gradient_only_when_asked(numpy_backend):
    """``backward`` returns None unless ``input_grad=True``, even when the first layer (a ReLU)
    computes its input gradient anyway."""
    model = Sequential(ReLU(), Linear(3, 2)).init(numpy_backend)
    x, dy = np.ones((5, 3), np.float32), np.ones((5, 2), np.float32)
    model.forward(x)
    assert model.backward(dy) is None
    model.forward(x)
    dx = model.backward(dy, input_grad=True)
    assert dx is not None and dx.shape == (5, 3)


def test_backward_before_any_forward_goes_through_every_layer():
    """Without a previous ``forward``, ``backward`` runs over all layers, last to first."""
    log: list[str] = []
    model = Sequential(("a", _Recorder(log)), ("b", _Recorder(log)), ("c", _Recorder(log)))
    dy = np.ones((2, 3), np.float32)
    np.testing.assert_array_equal(model.backward(dy, input_grad=True), dy)
    assert log == ["c", "b", "a"]


def test_make_mlp_unknown_activation_message():
    """The message lists every activation, comma separated."""
    with pytest.raises(ValueError) as caught:
        make_mlp(2, [3], 1, activation="gelu")
    assert str(caught.value) == "unknown activation 'gelu'; choose from relu, leaky_relu, sigmoid, tanh."


# -- FlatParameters --------------------------------------------------------------------------------


def test_install_of_a_new_array_rebinds_the_layers(numpy_backend):
    """``install`` of a new array makes it the buffer and the layers' params views of it; the
    same array installed again changes nothing (the layers keep their arrays)."""
    model = make_mlp(3, [4], 2).init(numpy_backend)
    flat = model.flat
    held = [slot.layer.params[slot.key] for slot in flat]
    flat.install(flat.data)
    assert all(slot.layer.params[slot.key] is a for slot, a in zip(flat, held))
    new = np.arange(flat.size, dtype=np.float32)
    flat.install(new)
    assert flat.data is new
    for slot in flat:
        param = slot.layer.params[slot.key]
        assert np.shares_memory(param, new) and param.shape == slot.shape
        np.testing.assert_array_equal(param.reshape(-1), new[slot.start : slot.stop])


def test_snapshot_and_restore_return_the_buffer_and_the_views_as_they_were(numpy_backend):
    """``restore(snapshot())`` brings back the very buffer and view objects, after which ``sync``
    sees nothing assigned and leaves them bound."""
    model = make_mlp(3, [4], 2).init(numpy_backend)
    flat = model.flat
    data, views = snapshot = flat.snapshot()
    assert data is flat.data and len(views) == len(flat.slots)
    assert all(view is slot.layer.params[slot.key] for slot, view in zip(flat, views))
    flat.install(np.zeros(flat.size, np.float32))
    flat.restore(snapshot)
    assert flat.data is data
    assert all(slot.layer.params[slot.key] is view for slot, view in zip(flat, views))
    flat.sync()
    assert flat.data is data
    assert all(slot.layer.params[slot.key] is view for slot, view in zip(flat, views))


def test_join_names_every_missing_parameter(numpy_backend):
    """``join`` without some parameters is a ValueError naming each, comma separated."""
    model = make_mlp(3, [4], 2).init(numpy_backend)
    with pytest.raises(ValueError) as caught:
        model.flat.join({"hidden1.weight": np.zeros((3, 4), np.float32)})
    assert str(caught.value) == "no array for parameter(s) hidden1.bias, output.weight, output.bias."


def test_a_model_with_a_single_parameter_trains(numpy_backend):
    """One parameter in all makes a one-slot buffer that the layer views and SGD updates."""
    model = Sequential(("scale", _Scale(3))).init(numpy_backend)
    assert model.flat.size == 3 and [s.name for s in model.flat] == ["scale.scale"]
    model.forward(np.ones((2, 3), np.float32))
    model.backward(np.ones((2, 3), np.float32))
    SGD(model, 0.25).step()
    np.testing.assert_array_equal(model["scale"].params["scale"], [0.5, 0.5, 0.5])
    assert np.shares_memory(model["scale"].params["scale"], model.flat.data)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_decay_mask_is_in_the_buffers_dtype(numpy_backend, dtype):
    """The decay mask has the buffer's dtype (and its layout: 1 on weights, 0 elsewhere)."""
    model = make_mlp(3, [4], 2).init(numpy_backend, dtype=dtype)
    mask = model.flat.decay_mask()
    assert mask.dtype == model.flat.data.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(mask, _mask(model))


# -- arrays ----------------------------------------------------------------------------------------


def test_namespace_is_looked_up_once_per_array_type(monkeypatch):
    """``namespace`` caches by array type: repeated calls ask ``array_namespace`` once."""
    import array_api_strict

    calls = []
    real = arrays_module.array_namespace

    def counting(x):
        calls.append(type(x))
        return real(x)

    monkeypatch.setattr(arrays_module, "_NAMESPACES", {})
    monkeypatch.setattr(arrays_module, "array_namespace", counting)
    x = array_api_strict.zeros(2)
    spaces = [namespace(x) for _ in range(3)]
    assert calls == [type(x)] and spaces[0] is spaces[1] is spaces[2] is real(x)


def test_numpy_arrays_get_the_numpy_backends_namespace():
    """The NumPy backend registers its namespace for ``np.ndarray``: layers and the backend
    use the same one (interop tells "already an array of this backend" by identity)."""
    assert namespace(np.zeros(2)) is mlp_xp.get_backend("numpy").xp


def test_apply_alone_prepares_state_and_the_decay_mask(numpy_backend):
    """``apply`` (the update after a gradient reduction) prepares the optimizer itself: called
    without ``step`` or ``prepare`` first, weight decay still spares the biases and momentum has
    its buffer."""
    for make in (lambda m: mlp_xp.SGD(m, lr=0.1, weight_decay=0.5), lambda m: mlp_xp.SGD(m, lr=0.1, momentum=0.9)):
        model = mlp_xp.Sequential(mlp_xp.Linear(2, 1)).init(numpy_backend, seed=0)
        model.layers[0].params["bias"][...] = 1.0
        make(model).apply(np.zeros(model.flat.size, dtype=np.float32))
        np.testing.assert_array_equal(model.layers[0].params["bias"], [1.0])


def test_decay_mask_is_made_on_the_parameters_device():
    """On a non-default device (array-api-strict's device1) the decay mask lives beside the
    parameters, and an AdamW step with it runs there (mixing devices would raise)."""
    backend = mlp_xp.get_backend("array-api-strict:device1")
    model = make_mlp(3, [4], 2).init(backend, seed=0)
    mask = model.flat.decay_mask()
    assert mask.device == model.flat.data.device == backend.device
    assert mask.dtype == model.flat.data.dtype
    optimizer = AdamW(model, 1e-3)
    optimizer.apply(model.flat.data * 0.0 + 1.0)
    assert all(buffer.device == backend.device for buffer in optimizer.state.values())
    assert optimizer.state


@pytest.mark.parametrize(
    "make",
    [lambda m: SGD(m, 0.1, momentum=0.9, weight_decay=0.01), lambda m: AdamW(m, 0.01)],
    ids=["SGD momentum decay", "AdamW"],
)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("reload", [False, True], ids=["", "state reloaded first"])
def test_optimizer_follows_the_model_to_another_device_and_dtype(numpy_backend, make, dtype, reload):
    """``model.to()`` between steps: the state (momentum, Adam's moments) moves with the
    parameters to array-api-strict's device1 (with or without a change of dtype; also when the
    state was just reloaded, as a checkpoint restore does), and the run continues as if it had
    not moved (float32 tolerance) instead of mixing devices."""
    moved, staying = _model(numpy_backend), _model(numpy_backend)
    grads = _grads(moved, count=4)
    optimizers = make(moved), make(staying)
    for grad in grads[:2]:
        for optimizer in optimizers:
            optimizer.apply(grad.copy())
    if reload:
        optimizers[0].load_state_arrays(optimizers[0].state_arrays(), optimizers[0].steps)
    strict = mlp_xp.get_backend("array-api-strict:device1")
    moved.to(strict, dtype)
    for grad in grads[2:]:
        optimizers[0].apply(strict.asarray(grad, dtype))
        optimizers[1].apply(grad.copy())
    assert all(buffer.device == strict.device for buffer in optimizers[0].state.values())
    assert all(buffer.dtype == moved.flat.data.dtype for buffer in optimizers[0].state.values())
    np.testing.assert_allclose(strict.to_numpy(moved.flat.data), staying.flat.data, rtol=1e-5, atol=1e-6)


def test_weight_decay_factors_are_made_once():
    """After the first step, weight decay adds exactly two operations to a step (multiply by
    the prepared factors, add to the gradient): the factors are not made again every step."""
    counts = {}
    for weight_decay in (0.0, 0.01):
        backend = counting_backend()
        model = make_mlp(3, [4], 2).init(backend, seed=0)
        optimizer = SGD(model, 0.1, weight_decay=weight_decay)
        optimizer.apply(model.flat.data * 0.0 + 1.0)
        grad = model.flat.data * 0.0 + 1.0
        before = backend.counter.ops
        optimizer.apply(grad)
        counts[weight_decay] = backend.counter.ops - before
    assert counts[0.01] == counts[0.0] + 2


@pytest.mark.parametrize(
    "make",
    [
        lambda m: SGD(m, 0.1),
        lambda m: SGD(m, 0.1, momentum=0.9, weight_decay=0.05),
        lambda m: SGD(m, 0.1, momentum=0.9, nesterov=True, weight_decay=0.05, decay_all=True),
        lambda m: Adam(m, 0.01, weight_decay=0.05),
        lambda m: AdamW(m, 0.01, weight_decay=0.1),
    ],
    ids=["sgd", "momentum-decay", "nesterov-decay-all", "adam-decay", "adamw"],
)
def test_parts_mode_updates_the_carried_arrays_as_the_flat_update_does(numpy_backend, make):
    """A compiled scan's arrangement on NumPy: the layers hold per-parameter arrays of their
    own (not views), ``parts`` the per-parameter state and ``_decay`` λ. ``step()`` updates
    those and leaves the flat buffers alone; three steps equal three ordinary steps."""
    flat_model, parts_model = _model(numpy_backend), _model(numpy_backend)
    flat_opt, parts_opt = make(flat_model), make(parts_model)
    parts_opt.prepare()
    buffer, state = parts_model.flat.data.copy(), {w: b.copy() for w, b in parts_opt.state.items()}
    parts_model.flat.bind({name: a.copy() for name, a in parts_model.flat.split(buffer).items()})
    parts_opt.parts = {w: {name: a.copy() for name, a in parts_model.flat.split(b).items()} for w, b in state.items()}
    parts_opt._decay = parts_opt.weight_decay
    for grad in _grads(flat_model):
        _step(flat_opt, grad)
        _step(parts_opt, grad)
    flat_params = flat_model.flat.split(flat_model.flat.data)
    for name, array in parts_model.flat.arrays().items():
        np.testing.assert_allclose(array, flat_params[name], rtol=1e-13, err_msg=name)
    for which, parts in parts_opt.parts.items():
        for name, array in flat_model.flat.split(flat_opt.state[which]).items():
            np.testing.assert_allclose(parts[name], array, rtol=1e-13, err_msg=f"{which}/{name}")
    np.testing.assert_array_equal(parts_model.flat.data, buffer)
    for which, whole in parts_opt.state.items():
        np.testing.assert_array_equal(whole, state[which])
    assert parts_opt.steps == flat_opt.steps == 3
