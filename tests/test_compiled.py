"""Compiled training (``fit(compile=True)``): the same step traced once, on JAX (a whole epoch
as one ``lax.scan``) and torch (``torch.compile``); trace safety of the core."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import require_module, resolve_backend

from mlp_xp import SGD, Adam, AdamW, DeviceLoader, Dropout, SoftmaxCrossEntropy, fit, make_mlp
from mlp_xp.backends import CompileUnsupportedError
from mlp_xp.compiled import CompiledSteps

COMPILING = ["jax", "torch"]


def _data(n=500, d=12, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    centres = rng.standard_normal((classes, d)) * 2
    return (centres[y] + rng.standard_normal((n, d))).astype(np.float32), y


OPTIMIZERS = {
    "sgd": lambda model: SGD(model, lr=0.1),
    "momentum-decay": lambda model: SGD(model, lr=0.1, momentum=0.9, weight_decay=1e-2),
    "nesterov-decay-all": lambda model: SGD(
        model, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-2, decay_all=True
    ),
    "adam-decay": lambda model: Adam(model, lr=1e-2, weight_decay=1e-3),
    "adamw": lambda model: AdamW(model, lr=1e-2, weight_decay=0.05),
}


def _run(
    spec,
    compile,
    dtype="float32",
    dropout=0.0,
    epochs=3,
    batch_size=64,
    seed=0,
    batchnorm=True,
    optimizer="adam-decay",
    decays=(),
):
    """``epochs`` epochs of ``fit``, then one more per weight decay in ``decays`` (set on the
    optimizer between the calls)."""
    backend = resolve_backend(spec)
    x, y = _data()
    model = make_mlp(12, [16], 4, batchnorm=batchnorm, dropout=dropout).init(backend, seed=seed, dtype=dtype)
    optimizer = OPTIMIZERS[optimizer](model)
    loader = DeviceLoader(x, y, backend, batch_size=batch_size, num_classes=4, dtype=dtype, seed=seed)
    loss = SoftmaxCrossEntropy(check_labels=False)
    history = fit(model, loss, optimizer, loader, epochs=epochs, progress=False, log=None, compile=compile)
    for weight_decay in decays:
        optimizer.weight_decay = weight_decay
        more = fit(model, loss, optimizer, loader, epochs=1, progress=False, log=None, compile=compile)
        history.epochs += more.epochs
    state = {k: backend.to_numpy(v) for k, v in model.state().items()}
    return history, state, optimizer


@pytest.mark.parametrize("spec", COMPILING)
def test_compiled_matches_eager_float32(spec):
    """A last batch of another size (500 = 7·64 + 52), Adam state and weight decay go through
    the compiled step; results equal eager to float32 tolerance. (BatchNorm is checked in
    float64 below: the gradient of a bias followed by BatchNorm is pure rounding noise, which
    Adam scales up to visible differences in float32.)"""
    eager, eager_state, eager_opt = _run(spec, compile=False, batchnorm=False)
    compiled, compiled_state, compiled_opt = _run(spec, compile=True, batchnorm=False)
    np.testing.assert_allclose(compiled["train_loss"], eager["train_loss"], rtol=1e-4)
    assert compiled["train_acc"] == pytest.approx(eager["train_acc"], abs=2 / 500)
    for key, value in eager_state.items():
        np.testing.assert_allclose(compiled_state[key], value, rtol=1e-4, atol=1e-5, err_msg=key)
    assert compiled_opt.steps == eager_opt.steps == 3 * 8
    assert isinstance(compiled_opt.lr, float) and isinstance(compiled_opt.steps, int)


@pytest.mark.parametrize("spec", COMPILING)
def test_compiled_float64_equals_numpy_eager(spec):
    """BatchNorm (batch statistics, running buffers), Adam and weight decay, compiled, in float64."""
    numpy_history, numpy_state, _ = _run("numpy", compile=False, dtype="float64")
    history, state, _ = _run(spec, compile=True, dtype="float64")
    np.testing.assert_allclose(history["train_loss"], numpy_history["train_loss"], rtol=1e-9)
    for key, value in numpy_state.items():
        np.testing.assert_allclose(state[key], value, rtol=1e-7, atol=1e-9, err_msg=key)


@pytest.mark.parametrize("spec", COMPILING)
def test_compiled_dropout_same_seed_same_run(spec):
    """Masks come from the RNG state the compiled step carries: the same seed gives the same
    run, another seed another one."""
    first, first_state, _ = _run(spec, compile=True, dropout=0.3)
    second, second_state, _ = _run(spec, compile=True, dropout=0.3)
    other, _, _ = _run(spec, compile=True, dropout=0.3, seed=1)
    assert first["train_loss"] == second["train_loss"]
    for key, value in first_state.items():
        np.testing.assert_array_equal(second_state[key], value)
    assert other["train_loss"] != first["train_loss"]


@pytest.mark.parametrize("spec", ["numpy", "array-api-strict"])
def test_compile_without_a_compiler_is_one_clear_error(spec):
    with pytest.raises(CompileUnsupportedError, match=r"has no compiler: --compile works on jax, jax:cuda, torch"):
        _run(spec, compile=True)


def test_compile_refuses_host_label_checks():
    backend = resolve_backend("jax")
    model = make_mlp(12, [16], 4).init(backend)
    x, y = _data()
    loader = DeviceLoader(x, y, backend, num_classes=4)
    with pytest.raises(ValueError, match="check_labels=False"):
        CompiledSteps(model, SoftmaxCrossEntropy(), Adam(model), loader)


def test_no_tracer_leaks_and_no_retrace_per_epoch(monkeypatch):
    """The step is traced with JAX's leak checker on: an array cached on an object across
    calls (a tracer left behind) or a host read in the step fails here. Tracing happens in
    the first epoch only: the scan once, the last short batch once."""
    jax = require_module("jax")
    traces = []
    original = CompiledSteps._pure_step

    def counting(self, state, x, y):
        traces.append(tuple(x.shape))
        return original(self, state, x, y)

    monkeypatch.setattr(CompiledSteps, "_pure_step", counting)
    with jax.checking_leaks():
        _run("jax", compile=True, dropout=0.2, epochs=3)
    assert sorted(traces) == [(52, 12), (64, 12)]


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_scan_carry_per_parameter_equals_numpy_eager_float64(optimizer):
    """The scan carries each parameter and optimizer buffer on its own (joined into the flat
    buffers at exit), the last short batch runs the flat step: with every update rule and
    weight-decay mode, compiled JAX equals NumPy eager in float64."""
    numpy_history, numpy_state, numpy_opt = _run("numpy", compile=False, dtype="float64", optimizer=optimizer)
    history, state, compiled_opt = _run("jax", compile=True, dtype="float64", optimizer=optimizer)
    np.testing.assert_allclose(history["train_loss"], numpy_history["train_loss"], rtol=1e-9)
    for key, value in numpy_state.items():
        np.testing.assert_allclose(state[key], value, rtol=1e-7, atol=1e-9, err_msg=key)
    backend = resolve_backend("jax")
    for key, value in numpy_opt.state_arrays().items():
        np.testing.assert_allclose(backend.to_numpy(compiled_opt.state_arrays()[key]), value, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("spec", COMPILING)
@pytest.mark.parametrize("optimizer", ["momentum-decay", "nesterov-decay-all"])
def test_compiled_follows_weight_decay_changed_between_fits(spec, optimizer):
    """λ goes into the compiled step as an array: a new λ (or none, or one again) set between
    ``fit`` calls is used, not the one the first trace saw."""
    decays = (0.2, 0.0, 0.05)
    numpy_history, numpy_state, _ = _run("numpy", False, "float64", epochs=1, optimizer=optimizer, decays=decays)
    history, state, _ = _run(spec, True, "float64", epochs=1, optimizer=optimizer, decays=decays)
    np.testing.assert_allclose(history["train_loss"], numpy_history["train_loss"], rtol=1e-9)
    for key, value in numpy_state.items():
        np.testing.assert_allclose(state[key], value, rtol=1e-7, atol=1e-9, err_msg=key)


def test_scan_body_gathers_nothing_into_flat_buffers():
    """Per step, the scan body neither concatenates gradients nor slices a carried flat buffer:
    the flat buffers are split once before the scan and joined once after it (one
    ``concatenate`` for the parameters and one per optimizer buffer)."""
    jax = require_module("jax")
    backend = resolve_backend("jax")
    x, y = _data()
    model = make_mlp(12, [16], 4).init(backend, seed=0)
    optimizer = OPTIMIZERS["adam-decay"](model)
    loader = DeviceLoader(x, y, backend, batch_size=64, num_classes=4, seed=0)
    steps = CompiledSteps(model, SoftmaxCrossEntropy(check_labels=False), optimizer, loader)
    index = backend.xp.reshape(backend.xp.arange(448), (7, 64))
    program = jax.make_jaxpr(steps._pure_scan)(steps._device_state(per_parameter=True), (loader.x, loader.y), index)
    (scan,) = [eqn for eqn in program.jaxpr.eqns if eqn.primitive.name == "scan"]
    body = [eqn.primitive.name for eqn in scan.params["jaxpr"].jaxpr.eqns]
    outside = [eqn.primitive.name for eqn in program.jaxpr.eqns]
    assert "concatenate" not in body
    assert outside.count("concatenate") == 1 + len(optimizer.state_names)


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_torch_compiles_the_step_whole_once_per_batch_shape(monkeypatch, dropout):
    """torch.compile traces the whole step: no graph break (each one splits the step and runs
    the rest eagerly) and one graph per batch shape, however many steps and epochs. A host
    number read inside the step that changes per call, or a process-wide memo first filled
    inside it (emptied here), would recompile on the next call, as would gradients left on
    the layers by an eager epoch run first or forward caches left by an evaluation; a dropout
    mask drawn from a ``torch.Generator`` would break the graph (dynamo cannot trace one). The
    masks' key comes back from every compiled step advanced by one draw (a key not carried as
    step state repeats its masks)."""
    torch = require_module("torch")
    from torch._dynamo.utils import counters

    from mlp_xp import arrays

    monkeypatch.setattr(arrays, "_KINDS", {})
    torch._dynamo.reset()
    counters.clear()
    backend = resolve_backend("torch")
    x, y = _data()
    model = make_mlp(12, [16], 4, batchnorm=True, dropout=dropout).init(backend, seed=0)
    optimizer = OPTIMIZERS["adam-decay"](model)
    loader = DeviceLoader(x, y, backend, batch_size=64, num_classes=4, seed=0)
    loss = SoftmaxCrossEntropy(check_labels=False)
    val = DeviceLoader(x[:100], y[:100], backend, batch_size=64, num_classes=4, shuffle=False)
    for compile, epochs in ((True, 1), (False, 1), (True, 2)):
        fit(model, loss, optimizer, loader, epochs=epochs, val_loader=val, progress=False, log=None, compile=compile)
    assert dict(counters["graph_break"]) == {}
    assert counters["stats"]["unique_graphs"] == 2  # batches of 64, and the last one of 52
    counts = [backend.to_numpy(layer.rng.key)[1] for layer in model.layers if isinstance(layer, Dropout)]
    assert counts == ([8] if dropout else [])  # the last epoch's 8 steps (the key restarts every epoch)


def test_compiled_dropout_follows_generators_replaced_by_model_to():
    """``model.to`` gives Dropout a new generator; steps compiled before must draw from it (they
    drew from the old one, which ``set_epoch`` no longer restarts: another run than eager's)."""
    from mlp_xp import Linear, ReLU, Sequential

    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((48, 3)), rng.integers(0, 2, 48)

    def run(compile: bool) -> np.ndarray:
        backend = resolve_backend("jax")
        model = Sequential(Linear(3, 8), ReLU(), Dropout(0.5), Linear(8, 2)).init(backend, dtype="float64")
        optimizer, loss = SGD(model, lr=0.1), SoftmaxCrossEntropy(check_labels=False)
        loader = DeviceLoader(x, y, backend, batch_size=16, dtype="float64", num_classes=2)
        fit(model, loss, optimizer, loader, epochs=2, log=None, progress=False, compile=compile)
        model.to("numpy")
        model.to(backend)
        fit(model, loss, optimizer, loader, epochs=4, start_epoch=2, log=None, progress=False, compile=compile)
        return backend.to_numpy(model.flat.data)

    np.testing.assert_allclose(run(compile=True), run(compile=False), rtol=1e-12, atol=1e-14)
