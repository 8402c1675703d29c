"""mlp_xp.sklearn: sklearn's contract (check_estimator), sklearn's numbers, array-API inputs,
pickles of host arrays, Pipeline/GridSearchCV, and sklearn's errors for bad input.

sklearn's array-API dispatch needs SCIPY_ARRAY_API=1 before scipy is imported; it is set here,
before sklearn (and so scipy) is imported, so these tests exercise it.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import pickletools
import warnings

os.environ.setdefault("SCIPY_ARRAY_API", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

sklearn = pytest.importorskip("sklearn", reason="scikit-learn is not installed (pip install mlp-xp[sklearn])")

import sklearn.neural_network as sk  # noqa: E402
from array_api_compat import device as array_device  # noqa: E402
from scipy import sparse as scipy_sparse  # noqa: E402
from sklearn.datasets import load_digits, make_classification, make_regression  # noqa: E402
from sklearn.exceptions import ConvergenceWarning, NotFittedError  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import MinMaxScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import mlp_xp  # noqa: E402
from mlp_xp.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    x, y = load_digits(return_X_y=True)
    return x / 16.0, y


def _backend_or_skip(spec: str) -> mlp_xp.Backend:
    if spec.startswith("torch"):
        pytest.importorskip("torch", reason="torch is not installed")
    try:
        return mlp_xp.get_backend(spec)
    except mlp_xp.BackendUnavailableError as exc:
        pytest.skip(f"backend {spec!r} unavailable: {exc}")


def _cuda_unusable(check) -> str | None:
    """The CUDA library of ``check``'s arrays where it is an array-API check on CuPy or torch
    CUDA and that library cannot reach a GPU here, else None. (CuPy installed without a CUDA
    driver, or a CUDA build of torch on a machine without a GPU, makes sklearn's own device probe
    raise or fail instead of skip.)"""
    keywords = getattr(check, "keywords", {})
    pairs = [(keywords.get("array_namespace"), keywords.get("device_name"))]
    pairs += [(pair.xp, pair.device) for pair in map(keywords.get, ("X_ns_and_device", "other_ns_and_device")) if pair]
    for namespace, device in pairs:
        spec = "cuda" if namespace == "cupy" else "torch:cuda" if (namespace, device) == ("torch", "cuda") else None
        if spec is None:
            continue
        try:
            mlp_xp.get_backend(spec)
        except mlp_xp.BackendUnavailableError:
            return namespace
    return None


# -- acceptance 1: sklearn's estimator checks ------------------------------------------------------


def _float32_rounding(estimator) -> dict[str, str]:
    """The checks whose tolerance is below float32's resolution, for the default float32 estimators
    (each is run in float64 below instead)."""
    if estimator.dtype != "float32":
        return {}
    return {
        "check_methods_subset_invariance": "its atol 1e-7 is under float32's resolution at 1: a 1-row and a "
        "20-row float32 GEMM differ by a few ulps (the check holds in float64, tested below)"
    }


@parametrize_with_checks([MLPClassifier(), MLPRegressor()], expected_failed_checks=_float32_rounding)
def test_sklearn_estimator_checks(estimator, check):
    """Every check of ``check_estimator``, including the array-API ones on NumPy,
    array-api-strict (CPU and device1) and torch CPU (CUDA, MPS, XPU variants skip themselves)."""
    if library := _cuda_unusable(check):
        pytest.skip(f"{library} is installed but no CUDA device is usable for it on this machine")
    check(estimator)


def test_predictions_of_a_subset_are_those_of_the_whole_set():
    """sklearn's subset-invariance check in float64, where its tolerance applies; in float32, to
    float32 rounding (predicting one row at a time against all 20 rows at once)."""
    from sklearn.utils.estimator_checks import check_methods_subset_invariance

    check_methods_subset_invariance("MLPRegressor", MLPRegressor(dtype="float64"))
    check_methods_subset_invariance("MLPClassifier", MLPClassifier(dtype="float64"))
    x = 3 * np.random.default_rng(0).uniform(size=(20, 3))
    model = MLPRegressor(random_state=1).fit(x, x[:, 0])
    rows = np.concatenate([model.predict(row[None]) for row in x])
    np.testing.assert_allclose(rows, model.predict(x), rtol=1e-6, atol=1e-6)


# -- acceptance 2: sklearn's numbers in float64 --------------------------------------------------------

SAME_MATH = {
    "sgd": dict(solver="sgd", momentum=0.0, alpha=0.0),  # the acceptance case
    "sgd-nesterov-l2": dict(solver="sgd", momentum=0.9, alpha=1e-3),
    "sgd-momentum-tanh": dict(solver="sgd", nesterovs_momentum=False, alpha=1e-3, activation="tanh"),
    "sgd-invscaling": dict(solver="sgd", learning_rate="invscaling", learning_rate_init=0.5, power_t=0.25),
    "sgd-adaptive": dict(
        solver="sgd", learning_rate="adaptive", learning_rate_init=0.05, max_iter=40, n_iter_no_change=2, tol=5e-2
    ),
    "adam-l2": dict(solver="adam", alpha=1e-3),
    "adam-early-stopping": dict(solver="adam", early_stopping=True, max_iter=30, n_iter_no_change=3),
}


def _fitted_pair(kind: str, x, y, **params):
    """sklearn's estimator and ours, fitted in float64 on unshuffled batches of 100 (the last
    one smaller) from the same random_state, i.e. from the same initial weights."""
    defaults = dict(hidden_layer_sizes=(32, 16), random_state=0, max_iter=5, shuffle=False, batch_size=100)
    params = {**defaults, **params}
    theirs = getattr(sk, kind)(**params).fit(x, y)
    ours = {"MLPClassifier": MLPClassifier, "MLPRegressor": MLPRegressor}[kind](dtype="float64", **params).fit(x, y)
    return theirs, ours


def _assert_same_fit(theirs, ours, rtol=1e-9):
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=rtol)
    same = ("n_iter_", "t_", "n_layers_", "n_outputs_", "out_activation_", "n_features_in_")
    assert [getattr(ours, name) for name in same] == [getattr(theirs, name) for name in same]
    for name in ("best_loss_", "best_validation_score_", "validation_scores_"):
        expected = getattr(theirs, name)
        if expected is None:
            assert getattr(ours, name) is None, name
        else:
            np.testing.assert_allclose(getattr(ours, name), expected, rtol=rtol, err_msg=name)
    for mine, expected in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_, strict=True):
        assert isinstance(mine, np.ndarray) and mine.shape == expected.shape
        np.testing.assert_allclose(mine, expected, rtol=1e-7, atol=1e-12)


@pytest.mark.parametrize("params", SAME_MATH.values(), ids=SAME_MATH.keys())
def test_classifier_matches_sklearn_in_float64(digits, params):
    x, y = digits
    theirs, ours = _fitted_pair("MLPClassifier", x, y, **params)
    _assert_same_fit(theirs, ours)
    np.testing.assert_allclose(ours.predict_proba(x), theirs.predict_proba(x), rtol=1e-7, atol=1e-12)
    np.testing.assert_array_equal(ours.predict(x), theirs.predict(x))


@pytest.mark.parametrize(
    "target", ["binary", "multilabel", "strings"], ids=["binary-logistic", "multilabel-identity", "string-classes"]
)
def test_classifier_targets_match_sklearn(digits, target):
    x, y = digits
    targets = {
        "binary": (y % 2, dict(activation="logistic", alpha=1e-2)),
        "multilabel": (np.stack([y % 2, y % 3 == 0, y > 5], axis=1).astype(int), dict(activation="identity")),
        "strings": (np.array(["zero", "one", "two"])[y % 3], {}),
    }
    labels, params = targets[target]
    theirs, ours = _fitted_pair("MLPClassifier", x, labels, solver="sgd", **params)
    _assert_same_fit(theirs, ours)
    np.testing.assert_array_equal(ours.classes_, theirs.classes_)
    np.testing.assert_array_equal(ours.predict(x), theirs.predict(x))
    np.testing.assert_allclose(ours.predict_log_proba(x), theirs.predict_log_proba(x), rtol=1e-7)


@pytest.mark.parametrize("loss", ["squared_error", "poisson"])
def test_regressor_matches_sklearn_in_float64(loss):
    x, y = make_regression(300, 10, n_targets=3, random_state=0)
    y = np.abs(y) / 100 if loss == "poisson" else y / 100
    theirs, ours = _fitted_pair("MLPRegressor", x, y, loss=loss, solver="sgd", alpha=1e-2, learning_rate_init=0.01)
    _assert_same_fit(theirs, ours)
    np.testing.assert_allclose(ours.predict(x), theirs.predict(x), rtol=1e-7, atol=1e-12)
    assert ours.predict(x).dtype == np.float64


def test_partial_fit_and_warm_start_match_sklearn(digits):
    x, y = digits
    params = dict(hidden_layer_sizes=(16,), random_state=0, shuffle=False, batch_size=128, max_iter=3)
    theirs, ours = sk.MLPClassifier(**params), MLPClassifier(dtype="float64", **params)
    with pytest.raises(ValueError, match="classes must be passed on the first call to partial_fit"):
        MLPClassifier().partial_fit(x, y)
    for estimator in (theirs, ours):
        for start in (0, 600, 1200):
            estimator.partial_fit(x[start : start + 600], y[start : start + 600], classes=np.arange(10))
    _assert_same_fit(theirs, ours)
    for estimator in (theirs, ours):
        estimator.set_params(warm_start=True).fit(x, y)
        estimator.fit(x, y)
    _assert_same_fit(theirs, ours)
    assert len(ours.loss_curve_) == 9


def test_verbose_output_is_sklearns(digits):
    x, y = digits
    params = dict(solver="sgd", verbose=True, max_iter=8, n_iter_no_change=1, tol=0.5, random_state=0, shuffle=False)
    printed = []
    for estimator in (sk.MLPClassifier(**params), MLPClassifier(dtype="float64", **params)):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            estimator.fit(x, y)
        printed.append(out.getvalue())
    assert printed[1] == printed[0]
    assert "Iteration 2, loss = " in printed[1] and printed[1].endswith("Stopping.\n")


# -- array-API inputs: same library and device out ---------------------------------------------------


@pytest.mark.parametrize("spec", ["torch", "array-api-strict", "array-api-strict:device1"])
def test_array_api_inputs_train_on_their_device(digits, spec):
    backend = _backend_or_skip(spec)
    x, y = digits
    xd, yd = backend.asarray(x, "float64"), backend.asarray(y, "int64")
    params = dict(hidden_layer_sizes=(16,), max_iter=3, random_state=0, dtype="float64")
    on_host = MLPClassifier(**params).fit(x, y)
    with sklearn.config_context(array_api_dispatch=True):
        est = MLPClassifier(**params).fit(xd, yd)
        proba, labels = est.predict_proba(xd), est.predict(xd)
        score = est.score(xd, yd)
        with pytest.raises(ValueError, match=r"MLPClassifier.predict\(\) must use the same namespace"):
            est.predict(x)
    assert est._model.backend.spec == backend.spec  # trained where the data lives
    for out in (proba, labels):
        assert type(out) is type(xd) and array_device(out) == array_device(xd)
    # same data order and initial weights on every backend: the same model as on NumPy
    np.testing.assert_allclose(backend.to_numpy(proba), on_host.predict_proba(x), rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(backend.to_numpy(labels), on_host.predict(x))
    assert score == pytest.approx(on_host.score(x, y))
    assert isinstance(est.coefs_[0], np.ndarray)


def test_device_parameter_trains_numpy_inputs_elsewhere(digits):
    x, y = digits
    params = dict(hidden_layer_sizes=(16,), max_iter=3, random_state=0, dtype="float64")
    on_host = MLPClassifier(**params).fit(x, y)
    elsewhere = MLPClassifier(device="array-api-strict:device1", **params).fit(x, y)
    assert elsewhere._model.backend.spec == "array-api-strict:device1"
    proba = elsewhere.predict_proba(x)
    assert isinstance(proba, np.ndarray)
    np.testing.assert_allclose(proba, on_host.predict_proba(x), rtol=1e-9, atol=1e-12)


# -- pickles hold host arrays --------------------------------------------------------------------------


def _pickled_classes(blob: bytes) -> set[str]:
    """``module.name`` of every class a pickle refers to."""
    strings, found = [], set()
    for opcode, arg, _ in pickletools.genops(blob):
        if opcode.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
            strings.append(arg)
        elif opcode.name == "STACK_GLOBAL":
            found.add(f"{strings[-2]}.{strings[-1]}")
        elif opcode.name == "GLOBAL":
            found.add(arg.replace(" ", "."))
    return found


def test_pickle_holds_host_arrays_and_resumes_training(digits):
    torch_backend = _backend_or_skip("torch")
    x, y = digits
    params = dict(hidden_layer_sizes=(16,), batchnorm=True, random_state=0, dtype="float64", shuffle=False)
    xd, yd = torch_backend.asarray(x, "float64"), torch_backend.asarray(y, "int64")
    with sklearn.config_context(array_api_dispatch=True):
        reference = MLPClassifier(**params).partial_fit(xd, yd, classes=np.arange(10))
        est = pickle.loads(pickle.dumps(reference))  # a copy to continue after a pickle round trip
        blob = pickle.dumps(est)
        reference.partial_fit(xd, yd)
        loaded = pickle.loads(blob)
        assert loaded._model is None
        before = loaded.predict_proba(xd)  # rebuilt on torch from host arrays
        loaded.partial_fit(xd, yd)  # Adam's moments and step count came through the pickle
    classes = _pickled_classes(blob)
    assert not any(name.startswith(("torch", "mlp_xp.backends", "mlp_xp.model", "mlp_xp.optim")) for name in classes)
    assert "numpy.ndarray" in classes and any(name.endswith(".MLPClassifier") for name in classes)
    assert type(before) is type(xd)
    np.testing.assert_allclose(loaded.loss_curve_, reference.loss_curve_, rtol=1e-12)
    for mine, expected in zip(loaded.coefs_, reference.coefs_, strict=True):
        np.testing.assert_allclose(mine, expected, rtol=1e-12)
    # without dispatch, a torch-trained model predicts NumPy inputs and answers in NumPy
    assert isinstance(loaded.predict_proba(x), np.ndarray)
    np.testing.assert_allclose(loaded.predict_proba(x), reference.predict_proba(x))


def test_pickle_made_on_another_device_predicts_on_the_cpu(digits):
    """A pickle names its device only as a parameter: where that device is missing, the error
    says how to predict on the CPU, and set_params(device="cpu") does."""
    x, y = digits
    est = MLPClassifier(hidden_layer_sizes=(16,), max_iter=3, device="array-api-strict:device1", dtype="float64")
    expected = est.fit(x, y).predict_proba(x)
    loaded = pickle.loads(pickle.dumps(est)).set_params(device="cuda:7")  # as if pickled on a GPU box
    with pytest.raises(mlp_xp.BackendUnavailableError, match=r"set_params\(device='cpu'\) predicts on the CPU"):
        loaded.predict(x)
    np.testing.assert_allclose(loaded.set_params(device="cpu").predict_proba(x), expected, rtol=1e-12)
    assert loaded._model.backend.spec == "numpy"


def test_batchnorm_and_dropout_models_survive_pickling(digits):
    x, y = digits
    est = MLPClassifier(
        hidden_layer_sizes=(32, 16), batchnorm=True, dropout=0.2, max_iter=20, learning_rate_init=0.01, random_state=0
    )
    est.fit(x, y)
    assert [name for name in est._model.names] == [
        "hidden1",
        "bn1",
        "act1",
        "drop1",
        "hidden2",
        "bn2",
        "act2",
        "drop2",
        "output",
    ]
    loaded = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(loaded.predict(x), est.predict(x))  # eval mode: running stats, no dropout
    assert est.score(x, y) > 0.95


# -- fitted weights as sklearn's, set_params after fit, batchnorm batches, sparse inputs ------------------


def test_edited_coefs_and_intercepts_are_the_fitted_weights(digits):
    """Edits of ``coefs_`` / ``intercepts_`` in place and by assignment reach predict, pickles,
    partial_fit and warm_start; BatchNorm's running stats and Adam's state stay."""
    x, y = digits
    est = MLPClassifier(hidden_layer_sizes=(16,), batchnorm=True, max_iter=3, random_state=0, dtype="float64")
    est.fit(x, y)
    twin = pickle.loads(pickle.dumps(est))  # the unedited estimator, with its Adam state
    est.coefs_[-1][:] = 0  # the output layer answers its intercepts: uniform probabilities
    est.intercepts_[-1][:] = 0
    np.testing.assert_allclose(est.predict_proba(x), 0.1)
    np.testing.assert_allclose(pickle.loads(pickle.dumps(est)).predict_proba(x), 0.1)
    est.intercepts_[-1] = np.eye(10)[7]
    assert (est.predict(x) == 7).all()
    est.coefs_ = [w.copy() for w in twin.coefs_]  # back to the fitted weights, by assignment
    est.intercepts_ = [b.copy() for b in twin.intercepts_]
    np.testing.assert_array_equal(est.predict_proba(x), twin.predict_proba(x))  # running stats kept
    est.partial_fit(x, y)
    twin.partial_fit(x, y)
    np.testing.assert_allclose(est.loss_curve_, twin.loss_curve_, rtol=1e-12)  # Adam's moments kept
    for mine, expected in zip(est.coefs_ + est.intercepts_, twin.coefs_ + twin.intercepts_, strict=True):
        np.testing.assert_allclose(mine, expected, rtol=1e-12)
    # custom initial weights for a warm start: all zero, so the one full batch's loss is log(10)
    est.coefs_ = [np.zeros_like(w) for w in est.coefs_]
    est.intercepts_ = [np.zeros_like(b) for b in est.intercepts_]
    est.set_params(warm_start=True, max_iter=1, batch_size=len(x)).fit(x, y)
    assert est.loss_curve_[-1] == pytest.approx(np.log(10), rel=1e-12)
    est.coefs_[0] = np.zeros((3, 16))
    with pytest.raises(ValueError, match=r"coefs_\[0\] has shape \(3, 16\), but the network .* needs \(64, 16\)"):
        est.predict(x)
    est.coefs_[0], est.intercepts_ = np.zeros((64, 16)), est.intercepts_[:1]
    with pytest.raises(ValueError, match="intercepts_ holds 1 arrays, but the network"):
        est.fit(x, y)


def test_set_params_device_and_dtype_after_fit_move_predict(digits):
    x, y = digits
    est = MLPClassifier(hidden_layer_sizes=(16,), max_iter=3, random_state=0, dtype="float64").fit(x, y)
    expected = est.predict_proba(x)
    moved = est.set_params(device="array-api-strict:device1").predict_proba(x)
    assert est._model.backend.spec == "array-api-strict:device1"
    np.testing.assert_allclose(moved, expected, rtol=1e-12)
    single = est.set_params(dtype="float32").predict_proba(x)
    assert est._model.dtype == "float32" and single.dtype == np.float64  # computed in float32, given back in x's
    np.testing.assert_allclose(single, expected, rtol=1e-4, atol=1e-6)


def test_batchnorm_leaves_out_a_one_sample_last_batch():
    """401 samples in batches of 200 or 100 leave one: that sample sits out the epoch (another
    one each epoch); a single sample, or batch_size=1, is an error naming batchnorm."""
    x, y = make_classification(401, 6, n_informative=4, n_classes=3, random_state=0)
    for batch_size in ("auto", 100):
        est = MLPClassifier(batchnorm=True, max_iter=2, batch_size=batch_size, random_state=0).fit(x, y)
        assert est.t_ == 2 * 400 and len(est.loss_curve_) == 2
    assert MLPClassifier(batchnorm=True, max_iter=2).fit(x[:399], y[:399]).t_ == 2 * 399  # nothing left out
    est.set_params(batch_size="auto").partial_fit(x[:3], y[:3])
    with pytest.raises(ValueError, match=r"batchnorm=True needs at least two samples .* partial_fit\(\) got a single"):
        est.partial_fit(x[:1], y[:1])
    with pytest.raises(ValueError, match=r"batchnorm=True .* fit\(\) got batch_size=1"):
        MLPClassifier(batchnorm=True, batch_size=1).fit(x, y)


@pytest.mark.parametrize("kind", ["MLPClassifier", "MLPRegressor"])
def test_sparse_inputs_train_and_predict_as_dense(digits, kind):
    """csr and csc inputs (sklearn's MLP takes them) are densified: the same model as dense input."""
    x, y = digits
    cls = {"MLPClassifier": MLPClassifier, "MLPRegressor": MLPRegressor}[kind]
    params = dict(hidden_layer_sizes=(16,), max_iter=3, random_state=0, dtype="float64")
    dense, sparse = cls(**params).fit(x, y), cls(**params).fit(scipy_sparse.csr_matrix(x), y)
    for mine, expected in zip(sparse.coefs_, dense.coefs_, strict=True):
        np.testing.assert_array_equal(mine, expected)
    np.testing.assert_array_equal(sparse.predict(scipy_sparse.csc_matrix(x)), dense.predict(x))
    assert sparse.score(scipy_sparse.csr_array(x), y) == dense.score(x, y)
    sparse.partial_fit(scipy_sparse.csc_matrix(x), y)
    dense.partial_fit(x, y)
    np.testing.assert_array_equal(sparse.predict(x), dense.predict(x))


# -- acceptance 4: Pipeline, GridSearchCV, cross-validation ------------------------------------------------


def test_pipeline_in_grid_search_and_cross_validation(digits):
    x, y = load_digits(return_X_y=True)
    pipe = make_pipeline(MinMaxScaler(), MLPClassifier(max_iter=30, learning_rate_init=0.01, random_state=0))
    grid = {"mlpclassifier__hidden_layer_sizes": [(16,), (64,)], "mlpclassifier__alpha": [1e-4, 1e-1]}
    search = GridSearchCV(pipe, grid, cv=3, n_jobs=2).fit(x[:1200], y[:1200])
    assert search.best_params_["mlpclassifier__hidden_layer_sizes"] == (64,)  # 2.5 points ahead of (16,)
    assert search.best_score_ > 0.9
    held_out = search.score(x[1200:], y[1200:])
    assert held_out == pytest.approx(np.mean(search.predict(x[1200:]) == y[1200:]))
    assert held_out > 0.9
    scores = cross_val_score(make_pipeline(MinMaxScaler(), MLPClassifier(max_iter=30, random_state=0)), x, y, cv=3)
    assert scores.shape == (3,) and scores.min() > 0.85


# -- acceptance 5: sklearn's errors ---------------------------------------------------------------------


def _error(call):
    with pytest.raises(Exception) as info:
        call()
    return type(info.value), str(info.value)


BAD_INPUTS = {
    "nan-at-fit": lambda cls, x, y: cls().fit(np.where(x == x[0, 5], np.nan, x), y),
    "nan-at-predict": lambda cls, x, y: cls(max_iter=2).fit(x, y).predict(np.full_like(x[:3], np.nan)),
    "features-at-predict": lambda cls, x, y: cls(max_iter=2).fit(x, y).predict(x[:, :10]),
    "1d-x": lambda cls, x, y: cls().fit(x[:, 0], y),
    "predict-before-fit": lambda cls, x, y: cls().predict(x),
    "object-string-targets": lambda cls, x, y: cls().fit(x, np.array(["a", "b"], dtype=object)[y % 2]),
    "bad-parameter": lambda cls, x, y: cls(alpha=-1.0).fit(x, y),
}


@pytest.mark.parametrize("case", BAD_INPUTS, ids=BAD_INPUTS)
@pytest.mark.parametrize("kind", ["MLPClassifier", "MLPRegressor"])
def test_bad_input_gets_sklearns_error(digits, kind, case):
    x, y = digits
    if case == "object-string-targets" and kind == "MLPClassifier":
        pytest.skip("string labels are classes for a classifier")
    ours = {"MLPClassifier": MLPClassifier, "MLPRegressor": MLPRegressor}[kind]
    expected = _error(lambda: BAD_INPUTS[case](getattr(sk, kind), x, y))
    assert _error(lambda: BAD_INPUTS[case](ours, x, y)) == expected
    assert issubclass(expected[0], NotFittedError if case == "predict-before-fit" else ValueError)


def test_regressor_rejects_unicode_string_targets_clearly(digits):
    """sklearn's own regressor fails on '<U' targets with a NumPy ufunc error; ours says what is wrong."""
    x, y = digits
    with pytest.raises(ValueError, match="could not convert string to float"):
        MLPRegressor().fit(x, np.array(["a", "b"])[y % 2])


def test_lbfgs_names_the_alternatives(digits):
    x, y = digits
    with pytest.raises(ValueError, match=r"solver='adam' \(the default\) or solver='sgd'"):
        MLPClassifier(solver="lbfgs").fit(x, y)


def test_warnings_are_like_sklearns_and_point_at_the_callers_line(digits):
    x, y = digits
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        MLPClassifier(max_iter=2).fit(x, y)
        MLPClassifier(batch_size=len(x) + 1).partial_fit(x, y, classes=np.unique(y))
    found = {(w.category, str(w.message).split(" (")[0][:24]): w.filename for w in caught}
    assert found == {
        (ConvergenceWarning, "Stochastic Optimizer: Ma"): __file__,
        (UserWarning, "Got `batch_size` less th"): __file__,
    }


# -- acceptance 3: real Fashion-MNIST against sklearn (manual: about a minute) ---------------------------


@pytest.mark.slow
@pytest.mark.realdata
@pytest.mark.skipif(not os.environ.get("MLP_XP_SKLEARN_COMPARE"), reason="about a minute: set MLP_XP_SKLEARN_COMPARE=1")
@pytest.mark.parametrize("pixels", ["float32", "float64"])
def test_fashion_mnist_accuracy_and_time_against_sklearn(fashion_mnist, pixels):
    """784-256-10, Adam, batch 256, 10 epochs, no early stopping, the same pixels for both (sklearn
    trains in their dtype, mlp_xp in its default float32); prints accuracies and fit times (run
    with -s), asserts accuracy only."""
    import time

    x_train = fashion_mnist.x_train.astype(pixels) / 255.0
    x_test = fashion_mnist.x_test.astype(pixels) / 255.0
    params = dict(hidden_layer_sizes=(256,), batch_size=256, max_iter=10, early_stopping=False, random_state=0)
    results = {}
    for name, estimator in (("sklearn", sk.MLPClassifier(**params)), ("mlp_xp", MLPClassifier(device="cpu", **params))):
        wall, cpu = time.perf_counter(), time.process_time()
        estimator.fit(x_train, fashion_mnist.y_train)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        results[name] = (wall, cpu, estimator.score(x_test, fashion_mnist.y_test))
        print(
            f"\n{pixels} pixels, {name}: test accuracy {results[name][2]:.4f}, fit {wall:.1f} s wall, {cpu:.1f} s CPU",
            end="",
        )
    (sk_wall, sk_cpu, sk_acc), (our_wall, our_cpu, our_acc) = results["sklearn"], results["mlp_xp"]
    print(f"\nfit-time ratio mlp_xp/sklearn: {our_wall / sk_wall:.2f} wall, {our_cpu / sk_cpu:.2f} CPU")
    assert abs(our_acc - sk_acc) <= 0.01
