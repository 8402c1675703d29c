"""``fit``, ``evaluate`` and ``train_step`` behaviour that mutants surviving the NumPy-only
mutmut run showed unchecked: the data-parallel path (gradient share and reduction, epoch
metrics and evaluation summed across processes) driven in process by a stand-in for rank 0
of two, the progress bar, the divergence rule's references and its boundary, the loss cache
after ``evaluate``. Expected values come from single-process steps or are known by
construction. All run on NumPy, in process, in milliseconds."""

from __future__ import annotations

import sys
import threading

import numpy as np
import pytest
from conftest import Terminal

import mlp_xp
from mlp_xp import MSE, SGD, BinaryCrossEntropy, DeviceLoader, Layer, Sequential, SoftmaxCrossEntropy, evaluate, fit
from mlp_xp.arrays import namespace
from mlp_xp.distributed import Communicator
from mlp_xp.train import train_step

# -- helpers ---------------------------------------------------------------------------------------


class _Twin(Communicator):
    """Rank 0 of 2 whose partner holds exactly what this rank holds: every sum doubles, a
    broadcast returns rank 0's value, a stop request is this rank's own."""

    def __init__(self) -> None:
        super().__init__()
        self.rank, self.size = 0, 2
        self.reduced: list[np.ndarray] = []

    def allreduce(self, array, backend):
        self.reduced.append(backend.to_numpy(array).copy())
        return array * 2.0

    def sum_floats(self, values):
        return [2.0 * v for v in values]


def _data(n=14, d=3, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)), rng.integers(0, classes, n)


def _model(numpy_backend, d=3, classes=3, seed=1):
    return mlp_xp.make_mlp(d, [5], classes).init(numpy_backend, seed=seed, dtype="float64")


def _clone(model, numpy_backend):
    twin = _model(numpy_backend)
    twin.flat.data[:] = model.flat.data
    return twin


class _Fixed(Layer):
    """Outputs ``x · factor`` whatever its one parameter (whose gradient is zero), so that a
    run's losses are known exactly; ``key`` names the parameter."""

    def __init__(self, n, key="scale", factor=1.0):
        super().__init__()
        self.n, self.key, self.factor = n, key, factor

    def init(self, backend, rng, dtype):
        self.params[self.key] = backend.xp.ones((self.n,), dtype=backend.dtype(dtype))

    def forward(self, x):
        return x * self.factor

    def backward(self, dy):
        self.grads[self.key] = self.params[self.key] * 0.0
        return namespace(dy).zeros_like(dy)


def _fixed_model(numpy_backend, n, key="scale"):
    return Sequential(("fixed", _Fixed(n, key))).init(numpy_backend, dtype="float64")


# -- data-parallel training step -------------------------------------------------------------------


def test_data_parallel_step_scales_the_gradient_by_the_share_and_sums_it(numpy_backend):
    """With two processes the step applies ``allreduce(share · ∇loss)``: here 2 · 0.25 · ∇loss,
    the plain step of half the learning rate; the loss and count are this process's."""
    x, y = _data(8)
    model = _model(numpy_backend)
    reference = _clone(model, numpy_backend)
    comm = _Twin()
    value, count = train_step(model, SoftmaxCrossEntropy(), SGD(model, 0.4), x, y, comm, 0.25)
    ref_value, ref_count = train_step(reference, SoftmaxCrossEntropy(), SGD(reference, 0.2), x, y)
    assert len(comm.reduced) == 1
    np.testing.assert_array_equal(model.flat.data, reference.flat.data)
    assert (float(value), int(count)) == (float(ref_value), int(ref_count))


def test_data_parallel_epoch_uses_each_steps_share_of_the_global_batch(numpy_backend):
    """Rank 0 of 2 over 14 samples in global batches of 9 takes rows 0–3 (share 4/9) and
    9–10 (share 2/5); the epoch's loss and accuracy are its sample-weighted means (summed over
    the two identical processes), every step's gradient is reduced."""
    x, y = _data(14)
    model = _model(numpy_backend)
    reference = _clone(model, numpy_backend)
    comm = _Twin()
    loader = DeviceLoader(x, y, numpy_backend, batch_size=9, shuffle=False, dtype="float64", comm=comm)
    history = fit(model, SoftmaxCrossEntropy(), SGD(model, 0.3), loader, epochs=1, progress=False, log=None)
    optimizer, losses, counts = SGD(reference, 0.3), [], []
    for rows, share in ((slice(0, 4), 4 / 9), (slice(9, 11), 2 / 5)):
        optimizer.lr = 0.3 * 2 * share
        value, count = train_step(reference, SoftmaxCrossEntropy(), optimizer, x[rows], y[rows])
        losses.append(float(value))
        counts.append(int(count))
    assert len(comm.reduced) == 2
    np.testing.assert_allclose(model.flat.data, reference.flat.data, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(history.last["train_loss"], (4 * losses[0] + 2 * losses[1]) / 6, rtol=1e-12)
    assert history.last["train_acc"] == sum(counts) / 6
    assert history.last["lr"] == 0.3


class _Partner(_Twin):
    """Rank 0 of 2 whose partner's epoch sums (loss × samples, correct, samples) are ``sums``."""

    def __init__(self, sums):
        super().__init__()
        self.sums = sums

    def sum_floats(self, values):
        return [v + p for v, p in zip(values, self.sums)]


def test_two_process_epoch_record_sums_both_processes(numpy_backend):
    """With 2 processes the record's loss and accuracy are over both processes' samples: a
    partner that saw 6 samples with loss sum 9.0 and 3 correct enters the means."""
    x, y = _data(14)
    model = _model(numpy_backend)
    reference = _clone(model, numpy_backend)
    loader = DeviceLoader(
        x, y, numpy_backend, batch_size=9, shuffle=False, dtype="float64", comm=_Partner((9.0, 3.0, 6))
    )
    history = fit(model, SoftmaxCrossEntropy(), SGD(model, 0.3), loader, epochs=1, progress=False, log=None)
    loader = DeviceLoader(x, y, numpy_backend, batch_size=9, shuffle=False, dtype="float64", comm=_Twin())
    alone = fit(reference, SoftmaxCrossEntropy(), SGD(reference, 0.3), loader, epochs=1, progress=False, log=None)
    local_loss, local_correct = alone.last["train_loss"], alone.last["train_acc"] * 6
    np.testing.assert_allclose(history.last["train_loss"], (6 * local_loss + 9.0) / 12, rtol=1e-12)
    np.testing.assert_allclose(history.last["train_acc"], (local_correct + 3.0) / 12, rtol=1e-12)


# -- data-parallel evaluation ----------------------------------------------------------------------


def _constant_model(numpy_backend, bias):
    """A 3→2 linear model predicting ``bias`` for every sample."""
    model = mlp_xp.make_mlp(3, [], 2).init(numpy_backend, dtype="float64")
    model.flat.data[:] = 0.0
    model.layers[-1].params["bias"][:] = bias
    return model


def test_sharded_evaluation_sums_losses_and_counts_over_the_processes(numpy_backend):
    """Each of the 2 processes evaluates its half of the 8 samples; the sums over both
    divided by all 8 give the mean loss and accuracy (here: the partner's half is identical)."""
    x, _ = _data(8)
    y = np.array([0, 0, 1, 1, 0, 0, 1, 1])  # rank 0 holds rows 0–3 of the batch of 8
    model = _constant_model(numpy_backend, [2.0, 0.0])
    loader = DeviceLoader(x, y, numpy_backend, batch_size=8, shuffle=False, dtype="float64", comm=_Twin())
    scores = evaluate(model, SoftmaxCrossEntropy(), loader)
    right, wrong = np.log1p(np.exp(-2.0)), 2.0 + np.log1p(np.exp(-2.0))
    np.testing.assert_allclose(scores["loss"], (right + wrong) / 2, rtol=1e-14)
    assert scores["acc"] == 0.5


def test_sharded_evaluation_with_no_correct_prediction_has_accuracy_zero(numpy_backend):
    """A zero count stays zero when summed over processes."""
    x, _ = _data(8)
    model = _constant_model(numpy_backend, [2.0, 0.0])
    loader = DeviceLoader(
        x, np.ones(8, np.int64), numpy_backend, batch_size=8, shuffle=False, dtype="float64", comm=_Twin()
    )
    assert evaluate(model, SoftmaxCrossEntropy(), loader)["acc"] == 0.0


def test_sharded_evaluation_of_a_loss_without_accuracy_has_none(numpy_backend):
    """A regression loss has no accuracy across processes either; its mean loss is summed."""
    x = np.zeros((8, 2))
    model = Sequential(("fixed", _Fixed(2))).init(numpy_backend, dtype="float64")
    loader = DeviceLoader(x, np.ones((8, 2)), numpy_backend, batch_size=4, shuffle=False, comm=_Twin())
    assert evaluate(model, MSE(), loader) == {"loss": 1.0, "acc": None}


def test_evaluate_leaves_an_empty_loss_cache(numpy_backend):
    """After ``evaluate`` the loss's cache is the empty dict (nothing held for a backward)."""
    x, y = _data(8)
    loss = SoftmaxCrossEntropy()
    evaluate(_model(numpy_backend), loss, DeviceLoader(x, y, numpy_backend, batch_size=4, dtype="float64"))
    assert loss.cache == {}


# -- divergence references -------------------------------------------------------------------------


def _one_epoch(model, loss, x, y, numpy_backend):
    loader = DeviceLoader(x, y, numpy_backend, batch_size=len(x), shuffle=False, dtype="float64")
    return fit(model, loss, SGD(model, 0.1), loader, epochs=1, progress=False, log=None)


def test_first_epoch_of_a_model_without_weights_is_checked_against_ln_2(numpy_backend):
    """Without a layer holding a ``weight`` the output width counts as 2: a first-epoch loss
    of 80 exceeds 100 · ln 2 (69.3) and stops the run."""
    x, y = np.array([[0.0, 80.0]]), np.array([0])
    with pytest.raises(mlp_xp.TrainingDiverged, match=r"to 80 in epoch 1, more than 100 times ln\(2\)"):
        _one_epoch(_fixed_model(numpy_backend, 2), SoftmaxCrossEntropy(), x, y, numpy_backend)


def test_output_width_is_the_last_axis_of_a_one_dimensional_weight(numpy_backend):
    """A user layer's 1-D ``weight`` of 3 entries makes 3 classes: a loss of 80 stays under
    100 · ln 3 (109.9) and the epoch is recorded."""
    x, y = np.array([[0.0, 80.0, 0.0]]), np.array([0])
    model = _fixed_model(numpy_backend, 3, key="weight")
    history = _one_epoch(model, SoftmaxCrossEntropy(), x, y, numpy_backend)
    np.testing.assert_allclose(history.last["train_loss"], 80.0, rtol=1e-12)


def test_binary_cross_entropy_of_several_outputs_is_checked_against_ln_2(numpy_backend):
    """Binary cross-entropy's chance level is ln 2 whatever the output width: a loss of 80
    over 3 outputs (ln 3 · 100 would be 109.9) stops the run."""
    x, y = np.full((2, 3), -80.0), np.ones((2, 3))
    with pytest.raises(mlp_xp.TrainingDiverged, match=r"more than 100 times ln\(2\), the loss of a uniform guess"):
        _one_epoch(_fixed_model(numpy_backend, 3, key="weight"), BinaryCrossEntropy(), x, y, numpy_backend)


def test_a_loss_of_exactly_100_times_the_first_epochs_is_not_divergence(numpy_backend):
    """The rule is strict: an epoch loss equal to 100 × the first epoch's passes."""
    model = _fixed_model(numpy_backend, 1)

    class TenfoldOutputs:
        def on_epoch_end(self, epoch, record, model):
            model.layers[0].factor = 10.0

    loader = DeviceLoader(np.ones((4, 1)), np.zeros((4, 1)), numpy_backend, batch_size=4, dtype="float64")
    history = fit(
        model, MSE(), SGD(model, 0.1), loader, epochs=2, callbacks=[TenfoldOutputs()], progress=False, log=None
    )
    assert history["train_loss"] == [1.0, 100.0]


# -- progress bar ----------------------------------------------------------------------------------


def _fit_on_terminal(monkeypatch, numpy_backend, progress):
    monkeypatch.setattr(sys, "stderr", Terminal())
    x, y = _data(8)
    model = _model(numpy_backend)
    loader = DeviceLoader(x, y, numpy_backend, batch_size=4, dtype="float64")
    fit(model, SoftmaxCrossEntropy(), SGD(model, 0.1), loader, epochs=2, progress=progress, log=None)
    return sys.stderr.getvalue()


def test_progress_bar_shows_each_epoch_on_a_terminal(monkeypatch, numpy_backend):
    """With ``progress`` on a terminal each epoch draws a bar named ``epoch e/E`` over its samples."""
    out = _fit_on_terminal(monkeypatch, numpy_backend, progress=True)
    assert "epoch 1/2" in out and "epoch 2/2" in out and "0.00/8.00 [" in out


def test_no_progress_bar_without_progress(monkeypatch, numpy_backend):
    """``progress=False`` draws nothing, even on a terminal."""
    assert _fit_on_terminal(monkeypatch, numpy_backend, progress=False) == ""


class _Bar:
    """Records what the epoch loop shows on a progress bar."""

    def __init__(self, log, args):
        self.log = log
        log.append(("bar", *args))

    def update(self, n):
        self.log.append(("update", n))

    def set_postfix_str(self, text, refresh=True):
        self.log.append(("postfix", text, refresh))

    def close(self):
        self.log.append(("close",))


class _Clock:
    """``perf_counter`` advancing by a quarter second at every call, from 100 s."""

    def __init__(self):
        self.now = 99.75

    def perf_counter(self):
        self.now += 0.25
        return self.now


def _fit_with_bar(monkeypatch, numpy_backend, x, log):
    """One epoch of a ``_Fixed`` model (output = input) under MSE against zeros, batches of 2."""
    monkeypatch.setattr(mlp_xp.train, "_progress_bar", lambda loader, done, epochs: _Bar(log, (done.epoch, epochs)))
    monkeypatch.setattr(mlp_xp.train, "time", _Clock())
    model = _fixed_model(numpy_backend, 1)
    loader = DeviceLoader(x, np.zeros_like(x), numpy_backend, batch_size=2, shuffle=False, dtype="float64")
    try:
        history = fit(model, MSE(), SGD(model, 0.1), loader, epochs=3, callbacks=[_StopAfterOne()], log=None)
    finally:
        monkeypatch.undo()
    return history


class _StopAfterOne:
    def on_epoch_end(self, epoch, record, model):
        return True


def test_progress_bar_shows_the_running_mean_loss_every_half_second(monkeypatch, numpy_backend):
    """The bar counts each step's samples and, once at least 0.5 s passed since the last
    refresh (the clock moves 0.25 s per read), shows the mean loss so far without redrawing."""
    x = np.array([[1.0], [1.0], [2.0], [2.0], [3.0], [3.0], [4.0], [4.0]])  # step losses 1, 4, 9, 16
    log = []
    history = _fit_with_bar(monkeypatch, numpy_backend, x, log)
    assert log == [
        ("bar", 0, 3),
        ("update", 2),
        ("update", 2),
        ("postfix", "loss 2.5000", False),
        ("update", 2),
        ("update", 2),
        ("postfix", "loss 7.5000", False),
        ("close",),
    ]
    assert (history.last["train_loss"], history.last["train_acc"]) == (7.5, None)


def test_a_nan_loss_seen_at_a_bar_refresh_stops_the_run_and_closes_the_bar(monkeypatch, numpy_backend):
    """The refresh read after step 2 catches its NaN loss (epoch and step in the message),
    before step 3 runs, and the bar is closed."""
    x = np.array([[1.0], [1.0], [np.nan], [2.0], [3.0], [3.0]])
    log = []
    with pytest.raises(mlp_xp.TrainingDiverged, match=r"became nan at epoch 1, step 2; last finite loss: 1\.0000"):
        _fit_with_bar(monkeypatch, numpy_backend, x, log)
    assert log == [("bar", 0, 3), ("update", 2), ("update", 2), ("close",)]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([np.nan, 1.0, 2.0], "the loss became nan at epoch 1, step 1; last finite loss: none in this epoch. "),
        ([1.0, 2.0, np.inf], "the loss became inf at epoch 1, step 3; last finite loss: 4.0000 at step 2. "),
    ],
    ids=["first-step", "third-step"],
)
def test_a_non_finite_loss_names_the_last_finite_one(numpy_backend, rows, message):
    """The message names the step before the bad one and its loss, or says there was none."""
    model = _fixed_model(numpy_backend, 1)
    x = np.array(rows)[:, None]  # one sample a step: step losses are the squares
    loader = DeviceLoader(x, np.zeros_like(x), numpy_backend, batch_size=1, shuffle=False, dtype="float64")
    with pytest.raises(mlp_xp.TrainingDiverged) as caught:
        fit(model, MSE(), SGD(model, 0.1), loader, epochs=1, progress=False, log=None)
    assert str(caught.value) == message + "Lower the learning rate, or check the inputs for NaN/inf."


# -- fit: compile refusals, start state, timing, resuming, callbacks --------------------------------


def test_compiling_on_numpy_is_refused_as_unsupported(numpy_backend):
    """NumPy has no compiler: ``compile=True`` raises ``CompileUnsupportedError`` (not the
    data-parallel refusal) before any step."""
    x, y = _data(8)
    model = _model(numpy_backend)
    start = model.flat.data.copy()
    loader = DeviceLoader(x, y, numpy_backend, batch_size=4, dtype="float64")
    with pytest.raises(mlp_xp.backends.base.CompileUnsupportedError):
        fit(model, SoftmaxCrossEntropy(), SGD(model, 0.1), loader, epochs=1, compile=True, progress=False, log=None)
    np.testing.assert_array_equal(model.flat.data, start)


def test_compiling_across_processes_is_refused_with_its_message(numpy_backend):
    """The exact message of the data-parallel refusal of ``compile=True``."""
    x, y = _data(8)
    model = _model(numpy_backend)
    loader = DeviceLoader(x, y, numpy_backend, batch_size=4, dtype="float64", comm=_Twin())
    with pytest.raises(ValueError) as caught:
        fit(model, SoftmaxCrossEntropy(), SGD(model, 0.1), loader, epochs=1, compile=True, log=None)
    assert str(caught.value) == (
        "compiled training does not run data-parallel yet: drop compile=True (--compile) under MPI."
    )


class _Rank1(_Twin):
    """Rank 1 of 2, to which rank 0's arrays arrive as this rank's plus one."""

    def __init__(self):
        super().__init__()
        self.rank = 1

    def broadcast(self, array, backend):
        return array + 1.0


def test_fit_starts_every_process_from_rank_0s_state(numpy_backend):
    """Before the first epoch ``fit`` replaces this process's parameters, BatchNorm statistics
    and optimizer state with rank 0's (here: each value plus one)."""
    model = mlp_xp.make_mlp(3, [4], 2, batchnorm=True).init(numpy_backend, seed=3, dtype="float64")
    start = model.flat.data.copy()
    optimizer = SGD(model, 0.1, momentum=0.9)
    x, y = _data(8, classes=2)
    loader = DeviceLoader(x, y, numpy_backend, batch_size=4, dtype="float64", comm=_Rank1())
    history = fit(model, SoftmaxCrossEntropy(), optimizer, loader, epochs=0, progress=False, log=None)
    assert history.epochs == []
    np.testing.assert_array_equal(model.flat.data, start + 1.0)
    batchnorm = [layer for layer in model.layers if layer.buffers]
    assert len(batchnorm) == 1
    np.testing.assert_array_equal(batchnorm[0].buffers["running_mean"], np.ones(4))
    np.testing.assert_array_equal(batchnorm[0].buffers["running_var"], np.full(4, 2.0))
    assert list(optimizer.state) == ["momentum"]
    np.testing.assert_array_equal(optimizer.state["momentum"], np.ones(model.flat.size))


def test_epoch_seconds_and_throughput_come_from_the_clock(monkeypatch, numpy_backend):
    """``seconds`` is the clock's advance over the epoch (0.25 s per read: start, the loop's
    refresh time, end → 0.5 s) and ``samples_per_s`` the epoch's samples over it."""
    monkeypatch.setattr(mlp_xp.train, "time", _Clock())
    x, y = _data(10)
    model = _model(numpy_backend)
    loader = DeviceLoader(x, y, numpy_backend, batch_size=4, dtype="float64")
    history = fit(model, SoftmaxCrossEntropy(), SGD(model, 0.1), loader, epochs=2, progress=False, log=None)
    assert history["seconds"] == [0.5, 0.5]
    assert history["samples_per_s"] == [20.0, 20.0]


def test_resuming_at_a_later_epoch_runs_only_the_remaining_ones(numpy_backend):
    """``start_epoch=2`` of 4 runs epochs 3 and 4, with their learning rates and shuffles,
    exactly as the tail of an uninterrupted run; the log counts to 4."""
    x, y = _data(12)

    def run(model, start_epoch, log=None):
        optimizer = SGD(model, 0.4, schedule=mlp_xp.step_decay(1, 0.5))
        loader = DeviceLoader(x, y, numpy_backend, batch_size=4, seed=2, dtype="float64")
        return fit(
            model, SoftmaxCrossEntropy(), optimizer, loader, epochs=4, start_epoch=start_epoch, progress=False, log=log
        )

    reference = run(_model(numpy_backend), 0)
    resumed, lines = _model(numpy_backend), []
    optimizer = SGD(resumed, 0.4, schedule=mlp_xp.step_decay(1, 0.5))
    loader = DeviceLoader(x, y, numpy_backend, batch_size=4, seed=2, dtype="float64")
    fit(resumed, SoftmaxCrossEntropy(), optimizer, loader, epochs=2, progress=False, log=None)  # epochs 1–2
    tail = run(resumed, 2, lines.append)
    assert tail["epoch"] == [3, 4]
    assert tail["lr"] == [0.1, 0.05]
    np.testing.assert_allclose(tail["train_loss"], reference["train_loss"][2:], rtol=1e-13)
    assert [line[:10] for line in lines] == ["epoch 3/4 ", "epoch 4/4 "]


def test_callbacks_get_the_epoch_its_record_and_the_model_and_can_stop(numpy_backend):
    """Each callback is called with the 0-based epoch, the record just added to the history
    and the model; one returning True stops after that epoch and ``fit`` still returns the
    history (every callback of that epoch is called)."""
    calls = []

    class Recorder:
        def __init__(self, stop_at):
            self.stop_at = stop_at

        def on_epoch_end(self, epoch, record, model):
            calls.append((self.stop_at, epoch, record, model))
            return epoch == self.stop_at

    x, y = _data(8)
    model = _model(numpy_backend)
    loader = DeviceLoader(x, y, numpy_backend, batch_size=4, dtype="float64")
    history = fit(
        model,
        SoftmaxCrossEntropy(),
        SGD(model, 0.1),
        loader,
        epochs=5,
        callbacks=(Recorder(1), Recorder(9)),
        progress=False,
        log=None,
    )
    assert len(history.epochs) == 2 and not history.interrupted
    assert [(stop_at, epoch) for stop_at, epoch, _, _ in calls] == [(1, 0), (9, 0), (1, 1), (9, 1)]
    assert all(record is history.epochs[epoch] and seen is model for _, epoch, record, seen in calls)


def test_progress_bar_is_on_by_default(monkeypatch, numpy_backend):
    """Without ``progress`` given, a terminal shows the bar."""
    monkeypatch.setattr(sys, "stderr", Terminal())
    x, y = _data(8)
    model = _model(numpy_backend)
    loader = DeviceLoader(x, y, numpy_backend, batch_size=4, dtype="float64")
    fit(model, SoftmaxCrossEntropy(), SGD(model, 0.1), loader, epochs=1, log=None)
    assert "epoch 1/1" in sys.stderr.getvalue()


def test_data_parallel_epoch_of_a_loss_without_accuracy(numpy_backend):
    """Across processes a regression epoch records its mean loss, summed over the identical
    processes, and no accuracy; the validation set is evaluated likewise."""
    x = np.array([[1.0], [1.0], [2.0], [2.0], [3.0], [3.0], [4.0], [4.0]])  # rank 0: rows 0–1 and 4–5
    model = _fixed_model(numpy_backend, 1)
    loader = DeviceLoader(
        x, np.zeros_like(x), numpy_backend, batch_size=4, shuffle=False, dtype="float64", comm=_Twin()
    )
    history = fit(model, MSE(), SGD(model, 0.1), loader, epochs=1, val_loader=loader, progress=False, log=None)
    assert (history.last["train_loss"], history.last["train_acc"]) == (5.0, None)
    assert (history.last["test_loss"], history.last["test_acc"]) == (5.0, None)


def test_data_parallel_step_without_a_share_sums_the_full_gradients(numpy_backend):
    """``train_step`` across processes without ``share`` scales by 1: the two identical
    processes' summed gradient makes the plain step of twice the learning rate."""
    x, y = _data(8)
    model = _model(numpy_backend)
    reference = _clone(model, numpy_backend)
    train_step(model, SoftmaxCrossEntropy(), SGD(model, 0.1), x, y, _Twin())
    train_step(reference, SoftmaxCrossEntropy(), SGD(reference, 0.2), x, y)
    np.testing.assert_array_equal(model.flat.data, reference.flat.data)


def test_fit_runs_in_a_worker_thread(numpy_backend):
    """Off the main thread ``fit`` leaves the SIGINT handler alone and trains normally."""
    x, y = _data(8)
    model = _model(numpy_backend)
    loader = DeviceLoader(x, y, numpy_backend, batch_size=4, dtype="float64")
    results = []

    def work():
        try:
            results.append(
                fit(model, SoftmaxCrossEntropy(), SGD(model, 0.1), loader, epochs=2, progress=False, log=None)
            )
        except Exception as exc:  # reported below, in the test's thread
            results.append(exc)

    worker = threading.Thread(target=work)
    worker.start()
    worker.join()
    assert isinstance(results[0], mlp_xp.History)
    assert results[0]["epoch"] == [1, 2] and not results[0].interrupted
