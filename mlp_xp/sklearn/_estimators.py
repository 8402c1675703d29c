"""``MLPClassifier`` and ``MLPRegressor``: sklearn's constructors, targets and predictions."""

from __future__ import annotations

from typing import Any

import numpy as np
from array_api_compat import array_namespace
from sklearn.base import ClassifierMixin, RegressorMixin, _fit_context
from sklearn.metrics import accuracy_score, r2_score
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import column_or_1d
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.multiclass import _check_partial_fit_first_call, type_of_target, unique_labels

from ..arrays import Array
from ._base import BaseMLP


class MLPClassifier(ClassifierMixin, BaseMLP):
    """Multi-layer perceptron classifier: ``sklearn.neural_network.MLPClassifier``'s parameters
    and attributes, trained by mlp_xp on ``device`` (see ``mlp_xp.sklearn``).

    Multiclass targets train a softmax output; binary and multilabel targets a logistic output
    per label (``out_activation_``). ``device`` is a ``get_backend`` spec (``"auto"``: CuPy on
    a GPU, else NumPy); ``dtype`` the training precision; ``batchnorm`` and ``dropout`` add
    ``BatchNorm`` / ``Dropout`` after each hidden layer.
    """

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: Any, y: Any) -> MLPClassifier:
        """Train on ``X`` (n_samples, n_features) and class labels ``y`` (n_samples,) or a label
        indicator matrix (n_samples, n_labels); returns self."""
        return self._fit(X, y, incremental=False)

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X: Any, y: Any, classes: Any = None) -> MLPClassifier:
        """One epoch over ``X``, ``y``; ``classes`` (every label of the whole data) is required
        on the first call."""
        if _check_partial_fit_first_call(self, classes):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y if type_of_target(y).startswith("multilabel") else classes)
        return self._fit(X, y, incremental=True)

    def _targets(self, y: np.ndarray, incremental: bool) -> tuple[np.ndarray, np.ndarray]:
        """(training targets, labels): class ids for multiclass, a float 0/1 matrix otherwise;
        sets or checks ``classes_`` as sklearn does."""
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer().fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start:
                if set(classes) != set(self.classes_):
                    raise ValueError(
                        "warm_start can only be used where `y` has the same classes as in the previous call to fit. "
                        f"Previously got {self.classes_}, `y` has {classes}"
                    )
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(
                    f"`y` has classes not in `self.classes_`. `self.classes_` has {self.classes_}. 'y' has {classes}."
                )
        indicator = self._label_binarizer.transform(y)
        if self._label_binarizer.y_type_ == "multiclass":
            return np.argmax(indicator, axis=1), y
        return indicator.astype(np.float64), y

    def _out_activation(self) -> str:
        return "softmax" if self._label_binarizer.y_type_ == "multiclass" else "logistic"

    def _labels(self, proba: Any) -> np.ndarray:
        """Host labels from host output activations (sklearn's decoding)."""
        return self._label_binarizer.inverse_transform(proba.ravel() if self.n_outputs_ == 1 else proba)

    def _score_output(self, out: Array, y: np.ndarray) -> float:
        pred = self._model.backend.to_numpy(out)
        return float(accuracy_score(y, self._labels(pred))) if np.isfinite(pred).all() else np.nan

    def predict(self, X: Any) -> Any:
        """Predicted classes (n_samples,), or a label indicator matrix for multilabel targets."""
        out, source, _ = self._output(X, "predict")
        labels = self._labels(self._model.backend.to_numpy(out))
        if source is not None and labels.dtype.kind in "biuf":
            return source.asarray(labels)
        return labels

    def predict_proba(self, X: Any) -> Any:
        """Class probabilities (n_samples, n_classes) in the order of ``classes_``."""
        return self._proba(X, "predict_proba")

    def predict_log_proba(self, X: Any) -> Any:
        """``log(predict_proba(X))``."""
        proba = self._proba(X, "predict_log_proba")
        return array_namespace(proba).log(proba)

    def _proba(self, X: Any, method: str) -> Any:
        out, source, dtype = self._output(X, method)
        if self.n_outputs_ == 1:
            out = self._model.backend.xp.concat([1.0 - out, out], axis=1)
        return self._deliver(out, source, dtype)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, BaseMLP):
    """Multi-layer perceptron regressor: ``sklearn.neural_network.MLPRegressor``'s parameters
    and attributes, trained by mlp_xp on ``device`` (see ``MLPClassifier`` and
    ``mlp_xp.sklearn``). ``loss`` is ``"squared_error"`` (identity output) or ``"poisson"`` (exp output)."""

    _parameter_constraints: dict = {
        **BaseMLP._parameter_constraints,
        "loss": [StrOptions({"squared_error", "poisson"})],
    }

    def __init__(
        self,
        loss="squared_error",
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

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: Any, y: Any) -> MLPRegressor:
        """Train on ``X`` (n_samples, n_features) and targets ``y`` (n_samples,) or
        (n_samples, n_outputs); returns self."""
        return self._fit(X, y, incremental=False)

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X: Any, y: Any) -> MLPRegressor:
        """One epoch over ``X``, ``y``."""
        return self._fit(X, y, incremental=True)

    def _targets(self, y: np.ndarray, incremental: bool) -> tuple[np.ndarray, np.ndarray]:
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        y = y.astype(np.float64).reshape(len(y), -1)  # ValueError for strings, as sklearn's float conversion
        return y, y

    def _out_activation(self) -> str:
        return "exp" if self.loss == "poisson" else "identity"

    def _score_output(self, out: Array, y: np.ndarray) -> float:
        pred = self._model.backend.to_numpy(out)
        return float(r2_score(y, pred)) if np.isfinite(pred).all() else np.nan

    def predict(self, X: Any) -> Any:
        """Predictions (n_samples,), or (n_samples, n_outputs) for several targets."""
        out, source, dtype = self._output(X, "predict")
        if self.n_outputs_ == 1:
            out = self._model.backend.xp.reshape(out, (-1,))
        return self._deliver(out, source, dtype)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
