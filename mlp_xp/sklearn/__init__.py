"""scikit-learn estimators: ``MLPClassifier`` and ``MLPRegressor`` trained by mlp_xp.

Drop-in replacements for ``sklearn.neural_network.MLPClassifier`` / ``MLPRegressor``: the same
constructor parameters, defaults, fitted attributes (``coefs_[i]`` is the (in, out) host NumPy
weight of layer i, as in sklearn: edits of ``coefs_`` / ``intercepts_`` are the model's weights
from its next use), inputs (sparse ``X`` is densified on the host) and input errors (sklearn's
``validate_data``), plus ``device`` (any ``get_backend`` spec), ``dtype`` (the training
precision), ``batchnorm`` and ``dropout``. Training is one call of mlp_xp's ``fit`` over a
``DeviceLoader``; sklearn's end-of-iteration work (loss curve, ``tol`` / ``n_iter_no_change``,
early stopping, learning-rate updates) is a ``fit`` callback.

How sklearn's objective maps onto mlp_xp, per batch of n samples:

- sklearn minimises ``data_loss + alpha/(2n)·Σ‖W‖²`` (weights, not intercepts). The L2
  gradient ``(alpha/n)·W`` is the optimizer's L2 ``weight_decay``, set to ``alpha/n`` for each
  batch (the last batch may be smaller); the L2 term is added to the reported batch loss, so
  ``loss_curve_`` is sklearn's (sample-weighted mean of the batch objectives).
- data losses: softmax cross-entropy (multiclass); logistic loss summed over outputs and
  averaged over samples (binary, multilabel); half the mean squared error with sklearn's
  gradient ``(pred − y)/n`` (squared_error); half Poisson deviance with an exp link (poisson).
- initial weights and intercepts are Glorot-uniform draws from ``random_state`` in sklearn's
  order, so the same ``random_state`` starts from sklearn's weights.

The optimizers are mlp_xp's (torch's update rules) set to give sklearn's updates: Adam's ``eps``
is rescaled per step to sklearn's placement, and the SGD momentum state is rescaled when the
learning rate changes. With ``dtype="float64"`` and ``shuffle=False``, loss curves and weights
equal sklearn's to rounding. Where results differ: the shuffling order comes from
``DeviceLoader``; outputs are computed in ``dtype`` (float32 by default) and returned in the
input's float dtype. No ``sample_weight``, no ``solver="lbfgs"``.

Array API: inside ``sklearn.config_context(array_api_dispatch=True)`` (which needs
``SCIPY_ARRAY_API=1`` before scipy is imported), CuPy, torch and array-api-strict inputs train
on their own device and predictions come back in their library and device; NumPy, lists and
pandas inputs train on ``device``. Pickles hold host arrays only: the model is rebuilt on first
use after unpickling.
"""

from ._estimators import MLPClassifier, MLPRegressor

__all__ = ["MLPClassifier", "MLPRegressor"]
