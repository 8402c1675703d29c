"""``BaseMLP``: what sklearn's two MLP estimators share here — parameters, training through
``fit`` and ``DeviceLoader``, validation, prediction on the input's device, pickling."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from numbers import Integral, Real
from typing import Any

import numpy as np
from array_api_compat import (
    array_namespace,
    is_array_api_obj,
    is_array_api_strict_namespace,
    is_cupy_array,
    is_numpy_array,
    is_torch_array,
)
from array_api_compat import device as array_device
from scipy.sparse import issparse
from sklearn import get_config
from sklearn.base import BaseEstimator, is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from ..arrays import Array
from ..backends import Backend, BackendUnavailableError, get_backend
from ..data import DeviceLoader
from ..layers import BatchNorm, Dropout, Layer, Linear, ReLU, Sigmoid, Tanh, sigmoid, softmax
from ..losses import MSE, BinaryCrossEntropy, SoftmaxCrossEntropy
from ..model import Sequential
from ..optim import SGD, Adam, Optimizer
from ..train import TrainingDiverged
from ..train import fit as train
from ._training import EndOfIteration, HalfPoissonDeviance, Objective

HIDDEN_ACTIVATIONS: dict[str, type[Layer] | None] = {"identity": None, "logistic": Sigmoid, "tanh": Tanh, "relu": ReLU}
STRICT_SPECS = tuple(f"array-api-strict{d}" for d in ("", ":device1", ":device2", ":no_float64"))
LBFGS_MESSAGE = (
    "solver='lbfgs' is not available in mlp_xp.sklearn (it trains with mini-batch optimizers on the device): "
    "use solver='adam' (the default) or solver='sgd', or sklearn.neural_network for L-BFGS."
)
NON_FINITE_MESSAGE = (
    "Solver produced non-finite parameter weights. The input data may contain large values and need to be preprocessed."
)


def array_backend(x: Any) -> Backend | None:
    """The mlp_xp backend holding ``x`` when it is a non-NumPy array; None for NumPy and host data."""
    if is_numpy_array(x) or not is_array_api_obj(x):
        return None
    where = array_device(x)
    if is_torch_array(x):
        return get_backend(f"torch:{where}")
    if is_cupy_array(x):
        return get_backend(f"cuda:{where.id}")
    if is_array_api_strict_namespace(array_namespace(x)):
        for spec in STRICT_SPECS:
            backend = get_backend(spec)
            if backend.device == where:
                return backend
    raise TypeError(
        f"mlp_xp.sklearn takes NumPy, CuPy, torch and array-api-strict arrays; got {type(x).__module__}."
        f"{type(x).__name__} on {where}."
    )


def to_host(x: Any) -> np.ndarray:
    """``x`` as a host NumPy array, from any supported library and device; a scipy sparse
    matrix densified (a dense copy on the host)."""
    if issparse(x):
        return x.toarray()
    backend = array_backend(x)
    return backend.to_numpy(x) if backend is not None else np.asarray(x)


CALLER = 5
"""``warnings.warn`` stacklevel of the user's ``fit``/``partial_fit`` call: warn → ``_batching`` or
``_train`` → ``_fit`` → ``fit`` → sklearn's ``_fit_context`` wrapper → the caller."""


class BaseMLP(BaseEstimator):
    """What the classifier and the regressor share: parameters, training, prediction, pickling."""

    _parameter_constraints: dict = {
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions(set(HIDDEN_ACTIVATIONS))],
        "solver": [StrOptions({"lbfgs", "sgd", "adam"})],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "batch_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "learning_rate": [StrOptions({"constant", "invscaling", "adaptive"})],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "power_t": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "random_state": ["random_state"],
        "tol": [Interval(Real, 0, None, closed="left")],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        "momentum": [Interval(Real, 0, 1, closed="both")],
        "nesterovs_momentum": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "beta_1": [Interval(Real, 0, 1, closed="left")],
        "beta_2": [Interval(Real, 0, 1, closed="left")],
        "epsilon": [Interval(Real, 0, None, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left"), Options(Real, {np.inf})],
        "device": [str],
        "dtype": [StrOptions({"float32", "float64"})],
        "batchnorm": ["boolean"],
        "dropout": [Interval(Real, 0, 1, closed="left")],
    }

    def __init__(
        self,
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=0.001,
        power_t=0.5,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        device="auto",
        dtype="float32",
        batchnorm=False,
        dropout=0.0,
    ):
        vars(self).update({k: v for k, v in locals().items() if k != "self"})  # sklearn: stored unchanged

    # the live model and optimizer on the device; never pickled (see __getstate__)
    _model: Sequential | None = None
    _optimizer: Optimizer | None = None

    # -- training ----------------------------------------------------------------------------

    def _fit(self, X: Any, y: Any, incremental: bool) -> BaseMLP:
        if self.solver == "lbfgs":
            raise ValueError(LBFGS_MESSAGE)
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        hidden = list(self.hidden_layer_sizes) if np.iterable(self.hidden_layer_sizes) else [self.hidden_layer_sizes]
        if any(size <= 0 for size in hidden):
            raise ValueError(f"hidden_layer_sizes must be > 0, got {hidden}.")
        method = "partial_fit" if incremental else "fit"
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        X, y, source = self._validate(X, y, reset=first_pass, method=method)
        targets, labels = self._targets(to_host(y), incremental)
        x = to_host(X)
        rng = check_random_state(self.random_state)  # drawn from in sklearn's order: weights, split, seed
        if first_pass:
            self._initialize(hidden, targets.shape[1] if targets.ndim == 2 else len(self.classes_))
            self._input_spec = source.spec if source is not None else None
            initial = self._initial_weights(rng)
        x, targets, validation = self._split(x, targets, labels, rng)
        seed = self._draw_seed(rng)
        batch_size, drop_last = self._batching(x.shape[0], method)
        backend = source or get_backend(self.device)
        model = self._new_model(backend, initial, seed) if first_pass else self._model_on(backend)
        if not (incremental and self._optimizer is not None):
            self._optimizer = self._new_optimizer(model)
        if validation is not None:
            validation = (backend.asarray(validation[0], self.dtype), validation[1])
        loader = DeviceLoader(
            x, targets, backend, batch_size=batch_size, shuffle=self.shuffle, drop_last=drop_last, seed=seed,
            dtype=self.dtype,
        )  # fmt: skip
        self._train(model, loader, validation, incremental)
        self._keep_host_copy(model)
        return self

    def _batching(self, n: int, method: str) -> tuple[int, bool]:
        """(batch size, drop_last) for ``n`` training samples: sklearn's batch size (``"auto"``:
        min(200, n); clipped to [1, n] with its warning), and with ``batchnorm`` a last batch of
        one sample is left out of each epoch (BatchNorm's batch statistics need two samples; with
        shuffling, a different sample each epoch); a ValueError where every batch has one."""
        if self.batch_size != "auto" and self.batch_size > n:
            warnings.warn(
                "Got `batch_size` less than 1 or larger than sample size. It is going to be clipped", stacklevel=CALLER
            )
        batch_size = min(200, n) if self.batch_size == "auto" else int(np.clip(self.batch_size, 1, n))
        if not self.batchnorm:
            return batch_size, False
        if batch_size == 1:
            got = "a single sample" if n == 1 else "batch_size=1"
            raise ValueError(
                f"batchnorm=True needs at least two samples in every training batch (BatchNorm normalises with the "
                f"batch's statistics), but {method}() got {got}."
            )
        return batch_size, n % batch_size == 1

    def _split(self, x: np.ndarray, targets: np.ndarray, labels: np.ndarray, rng: Any) -> tuple[Any, Any, Any]:
        """(x, targets, None), or with early stopping the training part and the held-out
        ``(x_val, labels_val)``, split as sklearn does (stratified for one output)."""
        if not self.early_stopping:
            return x, targets, None
        stratify = targets if is_classifier(self) and self.n_outputs_ == 1 else None
        x, x_val, targets, _, _, y_val = train_test_split(
            x, targets, labels, random_state=rng, test_size=self.validation_fraction, stratify=stratify
        )
        if x_val.shape[0] < 2:
            raise ValueError(
                "The validation set is too small. Increase 'validation_fraction' or the size of your dataset."
            )
        return x, targets, (x_val, y_val)

    def _train(self, model: Sequential, loader: DeviceLoader, validation: Any, incremental: bool) -> None:
        """One ``fit`` call: ``max_iter`` epochs (one for ``partial_fit``) with sklearn's
        end-of-iteration callback; sklearn's warnings; the best weights back with early stopping."""
        optimizer = self._optimizer
        epoch_end = EndOfIteration(self, optimizer, loader.num_samples, validation, incremental)
        self.n_iter_ = 0
        start = len(self.loss_curve_)
        try:
            history = train(
                model, self._objective(model, optimizer), optimizer, loader,
                epochs=start + (1 if incremental else self.max_iter), start_epoch=start,
                callbacks=[epoch_end], progress=False, log=None,
            )  # fmt: skip
        except TrainingDiverged as exc:
            raise ValueError(NON_FINITE_MESSAGE) from exc
        if not incremental and not epoch_end.stopped and self.n_iter_ == self.max_iter:
            warnings.warn(
                f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached and the optimization hasn't "
                "converged yet.",
                ConvergenceWarning,
                stacklevel=CALLER,
            )
        if history.interrupted:
            warnings.warn("Training interrupted by user.", stacklevel=CALLER)
        if epoch_end.best_state is not None:
            model.load_state(epoch_end.best_state)

    def _initialize(self, hidden: list[int], n_outputs: int) -> None:
        """Reset the fitted attributes for a fresh fit (sklearn's ``_initialize``)."""
        self._hidden = hidden
        self.n_iter_, self.t_, self.n_outputs_ = 0, 0, n_outputs
        self.n_layers_ = len(hidden) + 2
        self.out_activation_ = self._out_activation()
        self.loss_curve_ = []
        self._no_improvement_count = 0
        if self.early_stopping:
            self.validation_scores_, self.best_validation_score_, self.best_loss_ = [], -np.inf, None
        else:
            self.validation_scores_, self.best_validation_score_, self.best_loss_ = None, None, np.inf
        self._optimizer = None
        self.__dict__.pop("_host_optimizer", None)

    def _architecture(self) -> Sequential:
        """``hidden<i>`` Linear → (``bn<i>``) → ``act<i>`` (none for identity) → (``drop<i>``) per
        hidden layer, then the ``output`` Linear (raw outputs; ``out_activation_`` is applied after)."""
        layers: list[tuple[str, Layer]] = []
        width = self.n_features_in_
        activation = HIDDEN_ACTIVATIONS[self.activation]
        for i, size in enumerate(self._hidden, start=1):
            layers.append((f"hidden{i}", Linear(width, size)))
            if self.batchnorm:
                layers.append((f"bn{i}", BatchNorm(size)))
            if activation is not None:
                layers.append((f"act{i}", activation()))
            if self.dropout > 0:
                layers.append((f"drop{i}", Dropout(self.dropout)))
            width = size
        layers.append(("output", Linear(width, self.n_outputs_)))
        return Sequential(*layers)

    def _linear_names(self) -> list[str]:
        return [f"hidden{i}" for i in range(1, len(self._hidden) + 1)] + ["output"]

    def _initial_weights(self, rng: np.random.RandomState) -> dict[str, np.ndarray]:
        """sklearn's initial weights: Glorot-uniform weights and intercepts drawn layer by layer
        from ``rng`` (bound sqrt(6/(fan_in+fan_out)), 2 instead of 6 for logistic), by state name."""
        widths = [self.n_features_in_, *self._hidden, self.n_outputs_]
        factor = 2.0 if self.activation == "logistic" else 6.0
        draws = {}
        for name, fan_in, fan_out in zip(self._linear_names(), widths[:-1], widths[1:]):
            bound = np.sqrt(factor / (fan_in + fan_out))
            draws[f"{name}.weight"] = rng.uniform(-bound, bound, (fan_in, fan_out))
            draws[f"{name}.bias"] = rng.uniform(-bound, bound, fan_out)
        return draws

    def _new_model(self, backend: Backend, initial: dict[str, np.ndarray], seed: int) -> Sequential:
        """The model on ``backend`` with the ``initial`` weights; ``seed`` drives dropout."""
        self._seed = seed
        model = self._architecture().init(backend, seed=seed, dtype=self.dtype)
        state = model.state()
        state.update({k: backend.asarray(v, self.dtype) for k, v in initial.items()})
        model.load_state(state)
        self._model = model
        return model

    def _model_on(self, backend: Backend) -> Sequential:
        """The fitted model on ``backend`` in ``dtype`` holding ``coefs_`` / ``intercepts_``: the
        live one (edited arrays loaded into it), or rebuilt from the host copies (after unpickling,
        or when the backend or ``dtype`` changed), optimizer state and BatchNorm's state included."""
        model = self._model
        if model is not None and model.backend.spec == backend.spec and model.dtype == self.dtype:
            if self._edited():
                self._load_exposed(model, model.state())
            return model
        snapshot = self._optimizer_snapshot()
        model = self._architecture().init(backend, seed=self._seed, dtype=self.dtype)
        self._load_exposed(model, {k: backend.asarray(v, self.dtype) for k, v in self._host_state.items()})
        self._model, self._optimizer = model, None
        if snapshot is not None:
            self._optimizer = self._new_optimizer(model)
            self._optimizer.lr = snapshot["lr"]
            arrays = {k: backend.asarray(v, self.dtype) for k, v in snapshot["arrays"].items()}
            self._optimizer.load_state_arrays(arrays, snapshot["steps"])
        return model

    def _fitted_model(self, source: Backend | None) -> Sequential:
        """The model for predicting inputs on ``source`` (under dispatch), else on ``device``, in
        ``dtype`` (``_model_on``: the live one where it is there already)."""
        try:
            return self._model_on(source or get_backend(self.device))
        except BackendUnavailableError as exc:
            raise BackendUnavailableError(f"{exc} set_params(device='cpu') predicts on the CPU.") from exc

    def _new_optimizer(self, model: Sequential) -> Optimizer:
        """mlp_xp's SGD or Adam with sklearn's settings; weight decay and Adam's eps are set for
        each batch by ``_batch_rules``."""
        decay = self.alpha
        if self.solver == "sgd":
            nesterov = self.nesterovs_momentum and self.momentum > 0
            return SGD(model, self.learning_rate_init, self.momentum, nesterov, weight_decay=decay)
        return Adam(model, self.learning_rate_init, (self.beta_1, self.beta_2), self.epsilon, weight_decay=decay)

    def _objective(self, model: Sequential, optimizer: Optimizer) -> Objective:
        k = self.n_outputs_
        data, loss_scale, grad_scale = {
            "softmax": (SoftmaxCrossEntropy(check_labels=False), 1.0, 1.0),
            "logistic": (BinaryCrossEntropy(from_logits=True), k, k),
            "identity": (MSE(), 0.5, k / 2),
            "exp": (HalfPoissonDeviance(), 1.0, 1.0),
        }[self.out_activation_]
        weights = [model[name] for name in self._linear_names()]
        return Objective(data, loss_scale, grad_scale, self.alpha, weights, self._batch_rules(optimizer))

    def _batch_rules(self, optimizer: Optimizer) -> Callable[[int], None]:
        """sklearn's per-batch optimizer settings for a batch of n samples: L2 weight decay
        ``alpha/n``, and for Adam sklearn's ``eps`` (added to ``sqrt(v)``, not to the
        bias-corrected ``sqrt(v̂)``), i.e. ``epsilon / sqrt(1 − beta_2^t)`` in mlp_xp's Adam."""
        adam = isinstance(optimizer, Adam)

        def apply(n: int) -> None:
            optimizer.weight_decay = self.alpha / n
            if adam:
                optimizer.eps = self.epsilon / math.sqrt(1.0 - self.beta_2 ** (optimizer.steps + 1))

        return apply

    @staticmethod
    def _draw_seed(rng: np.random.RandomState) -> int:
        return int(rng.randint(np.iinfo(np.int32).max))

    def _keep_host_copy(self, model: Sequential) -> None:
        """Host copies of the trained state: ``coefs_`` / ``intercepts_`` hold the Linear layers'
        entries, ``_host_state`` the others (BatchNorm's); ``_loaded`` what ``model`` holds."""
        state = {k: model.backend.to_numpy(v) for k, v in model.state().items()}
        names = self._linear_names()
        self.coefs_ = [state.pop(f"{name}.weight") for name in names]
        self.intercepts_ = [state.pop(f"{name}.bias") for name in names]
        self._host_state = state
        self._loaded = self._exposed_copy()
        if not all(np.isfinite(w).all() for w in self.coefs_ + self.intercepts_):
            raise ValueError(NON_FINITE_MESSAGE)

    def _exposed_copy(self) -> list[np.ndarray]:
        """Copies of ``coefs_`` then ``intercepts_``: what ``_edited`` compares them with."""
        return [np.array(a, copy=True) for a in (*self.coefs_, *self.intercepts_)]

    def _edited(self) -> bool:
        """Whether ``coefs_`` / ``intercepts_`` differ from what the live model was loaded with
        (edited in place or assigned): one host comparison per array."""
        exposed = [*self.coefs_, *self.intercepts_]
        return len(exposed) != len(self._loaded) or not all(map(np.array_equal, exposed, self._loaded))

    def _exposed_state(self) -> dict[str, np.ndarray]:
        """``coefs_[i]`` (in, out) and ``intercepts_[i]`` (out,) by state name; a ValueError
        where their number or a shape does not fit the architecture."""
        widths = [self.n_features_in_, *self._hidden, self.n_outputs_]
        names = self._linear_names()
        expected = {
            "coefs_": ("weight", list(zip(widths[:-1], widths[1:]))),
            "intercepts_": ("bias", [(width,) for width in widths[1:]]),
        }
        state = {}
        for attr, (key, shapes) in expected.items():
            arrays = getattr(self, attr)
            if len(arrays) != len(names):
                raise ValueError(
                    f"{attr} holds {len(arrays)} arrays, but the network (layer widths {widths}) has {len(names)}."
                )
            for i, (name, shape, array) in enumerate(zip(names, shapes, arrays)):
                array = np.asarray(array)
                if array.shape != shape:
                    raise ValueError(
                        f"{attr}[{i}] has shape {array.shape}, but the network (layer widths {widths}) needs {shape}."
                    )
                state[f"{name}.{key}"] = array
        return state

    def _load_exposed(self, model: Sequential, state: dict[str, Array]) -> None:
        """Load ``state`` (on ``model``'s backend) into ``model`` with ``coefs_`` / ``intercepts_``
        in place of its Linear entries; they become the snapshot ``_edited`` compares with."""
        backend = model.backend
        state = {**state, **{k: backend.asarray(v, self.dtype) for k, v in self._exposed_state().items()}}
        model.load_state(state)
        self._loaded = self._exposed_copy()

    # -- inputs and outputs ------------------------------------------------------------------

    def _validate(
        self, X: Any, y: Any = "no_validation", *, reset: bool, method: str
    ) -> tuple[Any, Any, Backend | None]:
        """sklearn's ``validate_data`` (its messages); under array-API dispatch a non-NumPy ``X``
        stays in its library and on its device, whose backend is returned (else None). Sparse
        ``X`` (csr, csc; others become csr) is host data, densified by ``to_host``."""
        source = array_backend(X) if get_config()["array_api_dispatch"] else None
        floats = (source.xp.float64, source.xp.float32) if source is not None else (np.float64, np.float32)
        x_only = isinstance(y, str) and y == "no_validation"
        kwargs = {} if x_only else {"multi_output": True, "y_numeric": not is_classifier(self)}
        validated = validate_data(self, X, y, reset=reset, dtype=floats, accept_sparse=["csr", "csc"], **kwargs)
        if not reset:
            self._check_same_input(source, method)
        return (*validated, source) if isinstance(validated, tuple) else (validated, None, source)

    def _check_same_input(self, source: Backend | None, method: str) -> None:
        """Under dispatch, inputs must come from the library and device that fit's data did."""
        fitted, given = self._input_spec, source.spec if source is not None else None
        if get_config()["array_api_dispatch"] and fitted != given:
            raise ValueError(
                f"Inputs passed to {type(self).__name__}.{method}() must use the same namespace and the same device "
                f"as those passed to fit(): fit() got {fitted or 'NumPy'} arrays, {method}() got {given or 'NumPy'}."
            )

    def _forward(self, model: Sequential, x: Array) -> Array:
        """Output-layer activations (n, n_outputs_) of device input ``x``, in eval mode."""
        model.eval()
        z = model.forward(x)
        if self.out_activation_ == "identity":
            return z
        activation = {"softmax": softmax, "logistic": sigmoid, "exp": model.backend.xp.exp}[self.out_activation_]
        return activation(z)

    def _output(self, X: Any, method: str) -> tuple[Array, Backend | None, Any]:
        """Validated ``X`` through the model: (activations on the model's device, the input's
        backend under dispatch or None, the input's float dtype)."""
        check_is_fitted(self)
        X, _, source = self._validate(X, reset=False, method=method)
        model = self._fitted_model(source)
        backend = model.backend
        if source is not None:
            x = backend.xp.astype(X, backend.dtype(self.dtype), copy=False)
        else:
            x = backend.asarray(to_host(X), self.dtype)
        return self._forward(model, x), source, X.dtype

    def _deliver(self, out: Array, source: Backend | None, dtype: Any) -> Any:
        """Model output in the caller's library, device and float dtype."""
        if source is not None:
            return source.xp.astype(out, dtype)
        return self._model.backend.to_numpy(out).astype(dtype, copy=False)

    # -- pickling: host arrays only ---------------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())
        state.pop("_model", None)
        state.pop("_loaded", None)
        if state.pop("_optimizer", None) is not None:
            state["_host_optimizer"] = self._optimizer_snapshot()
        return state

    def _optimizer_snapshot(self) -> dict[str, Any] | None:
        """The optimizer's state as host arrays with its step count and learning rate: from the
        live optimizer, else the one an unpickled estimator brought, else None."""
        if self._optimizer is None:
            return getattr(self, "_host_optimizer", None)
        backend, optimizer = self._model.backend, self._optimizer
        arrays = {k: backend.to_numpy(v) for k, v in optimizer.state_arrays().items()}
        return {"arrays": arrays, "steps": optimizer.steps, "lr": optimizer.lr}

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.array_api_support = True
        tags.input_tags.sparse = True
        return tags
