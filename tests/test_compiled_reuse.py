"""``fit(compile=True)`` called again with the same model, loss, optimizer and loader reuses the
compiled steps: a run split over several ``fit`` calls (resuming, or ``mlp-xp bench`` timing one
epoch per call) compiles once, and gives the same results as one call."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import require_module, resolve_backend

from mlp_xp import SGD, DeviceLoader, SoftmaxCrossEntropy, compiled, fit, make_mlp


def _objects(spec: str):
    backend = resolve_backend(spec)
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 200)
    x = (rng.standard_normal((3, 8))[y] + rng.standard_normal((200, 8))).astype(np.float32)
    model = make_mlp(8, [16], 3).init(backend, seed=0)
    loader = DeviceLoader(x, y, backend, batch_size=32, num_classes=3)
    return model, SoftmaxCrossEntropy(check_labels=False), SGD(model, lr=0.1), loader


def _count_builds(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    built: list[int] = []
    original = compiled.CompiledSteps.__init__

    def counting(self, *args, **kwargs):
        built.append(1)
        original(self, *args, **kwargs)

    monkeypatch.setattr(compiled.CompiledSteps, "__init__", counting)
    return built


@pytest.mark.parametrize("spec", ["jax", "torch"])
def test_fit_calls_share_one_compiled_step(spec, monkeypatch):
    built = _count_builds(monkeypatch)
    model, loss, optimizer, loader = _objects(spec)
    split = [fit(model, loss, optimizer, loader, epochs=e + 1, start_epoch=e, progress=False, log=None, compile=True)
             for e in range(3)]
    assert len(built) == 1
    other = DeviceLoader(loader.backend.to_numpy(loader.x), loader.backend.to_numpy(loader.y), loader.backend,
                         batch_size=32)
    fit(model, loss, optimizer, other, epochs=4, start_epoch=3, progress=False, log=None, compile=True)
    assert len(built) == 2  # another loader: compiled anew, not the old loader's steps

    model, loss, optimizer, loader = _objects(spec)
    whole = fit(model, loss, optimizer, loader, epochs=3, progress=False, log=None, compile=True)
    np.testing.assert_allclose([h.last["train_loss"] for h in split], whole["train_loss"], rtol=1e-6)


def test_torch_compiles_the_steps_of_every_model_of_a_process():
    """Steps of different models are compiled functions of their own: dynamo caches graphs per
    code object and runs a function eagerly once its cache is full (``mlp-xp bench --compile``
    went eager from its fifth case on)."""
    torch = require_module("torch")
    from torch._dynamo.utils import counters

    backend = resolve_backend("torch")
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 96)
    x = rng.standard_normal((96, 8)).astype(np.float32)
    for width in (16, 12):
        model = make_mlp(8, [width], 3).init(backend, seed=0)
        loader = DeviceLoader(x, y, backend, batch_size=32, num_classes=3)  # one batch shape: one graph
        frames = dict(counters["frames"])
        with torch._dynamo.config.patch(recompile_limit=1):
            fit(model, SoftmaxCrossEntropy(check_labels=False), SGD(model, lr=0.1), loader, epochs=1, progress=False,
                log=None, compile=True)  # fmt: skip
        assert counters["frames"]["ok"] - frames.get("ok", 0) == counters["frames"]["total"] - frames.get("total", 0)
        assert counters["frames"]["ok"] > frames.get("ok", 0), f"the steps of model {width} were not compiled"


SETTINGS_CHANGES = {
    "momentum": lambda model, optimizer: setattr(optimizer, "momentum", 0.5),
    "nesterov": lambda model, optimizer: setattr(optimizer, "nesterov", True),
    "decay_all": lambda model, optimizer: setattr(optimizer, "decay_all", True),
    "dropout p": lambda model, optimizer: setattr(model["drop1"], "p", 0.0),
}


@pytest.mark.parametrize("spec", ["jax", "torch"])
@pytest.mark.parametrize("change", list(SETTINGS_CHANGES))
def test_settings_changed_between_fits_reach_the_compiled_step(spec, change):
    """A trace holds the optimizer's and layers' Python settings as constants: changed between
    ``fit`` calls that reuse the steps, they must be used (JAX kept the first trace's), as eager
    uses them (float64; dropout masks differ from eager's, so ``p`` is compared once it is 0)."""
    results = {}
    for compile in (False, True):
        backend = resolve_backend(spec)
        rng = np.random.default_rng(0)
        x, y = rng.standard_normal((96, 8)), rng.integers(0, 3, 96)
        model = make_mlp(8, [16], 3, dropout=0.3 if change == "dropout p" else 0.0)
        model.init(backend, seed=0, dtype="float64")
        optimizer = SGD(model, lr=0.1, momentum=0.0 if change == "dropout p" else 0.9, weight_decay=0.01)
        loader = DeviceLoader(x, y, backend, batch_size=32, num_classes=3, dtype="float64")
        loss = SoftmaxCrossEntropy(check_labels=False)
        fit(model, loss, optimizer, loader, epochs=1, progress=False, log=None, compile=compile)
        first = backend.to_numpy(model.flat.data)
        SETTINGS_CHANGES[change](model, optimizer)
        if change == "dropout p":  # from here both runs are deterministic: the same weights, no momentum
            results.setdefault("first", first)
            model.flat.install(backend.asarray(results["first"].copy(), "float64"))  # asarray may alias the host
        fit(model, loss, optimizer, loader, epochs=3, start_epoch=1, progress=False, log=None, compile=compile)
        results[compile] = backend.to_numpy(model.flat.data)
    np.testing.assert_allclose(results[True], results[False], rtol=1e-9, atol=1e-12)
