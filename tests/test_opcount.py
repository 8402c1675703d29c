"""Device operations per training step and per evaluation batch, held to recorded budgets.

Each array operation is a kernel launch on a GPU, and per-launch overhead (not FLOPs) bounds a
small MLP's step there. The counts are exact (see ``mlp_xp.opcount``), so a change that adds
an operation to the step fails here on any machine. Lower a budget when a change saves one.
"""

from __future__ import annotations

import numpy as np
import pytest

from mlp_xp.opcount import STEP_CONFIGS, counting_backend, step_counts

# 784-256-10, batch 64; before the flat buffer (issue 8): 44, 52, 88, 81, 93, 147 per step
STEP_BUDGET = {
    "sgd": 38,
    "sgd-momentum": 40,
    "adam": 48,
    "sgd+bn+dropout": 71,
    "sgd-momentum+bn+dropout": 73,
    "adam+bn+dropout": 81,
}
EVAL_BUDGET = {"plain": 25, "bn+dropout": 32}  # before: 29 and 36


@pytest.mark.parametrize("name", list(STEP_CONFIGS))
def test_step_stays_within_its_operation_budget(name):
    counts = step_counts(STEP_CONFIGS[name])
    assert counts["step_host_reads"] == 0 and counts["eval_host_reads"] == 0, counts
    assert counts["step_ops"] <= STEP_BUDGET[name], (
        f"{name}: {counts['step_ops']} ops per step, budget {STEP_BUDGET[name]}"
    )
    kind = "bn+dropout" if "bn" in name else "plain"
    assert counts["eval_ops"] <= EVAL_BUDGET[kind], f"{name}: {counts['eval_ops']} ops per evaluation batch"


def test_adam_step_is_at_most_60_percent_of_before():
    assert step_counts(STEP_CONFIGS["adam"])["step_ops"] <= 0.6 * 88


def test_counter_counts_exactly():
    backend = counting_backend()
    xp, counter = backend.xp, backend.counter
    a = backend.asarray(np.ones((3, 4)), "float32")
    b = xp.ones((3, 4), dtype=xp.float32, device=backend.device)
    c = a + b  # 1
    c *= 2.0  # 1
    d = xp.sum(c, axis=0)  # 1
    e = xp.reshape(c, (4, 3))  # a view
    f = c.T  # a view
    g = c[0:2]  # a view
    h = c[xp.asarray(np.array([0, 2]))]  # a gather (and an upload)
    assert float(d[0]) == 12.0  # a view, then a host read
    assert counter.calls["asarray"] == 2 and counter.calls["ones"] == 1  # the upload and the index
    assert counter.ops == 2 + 1 + 1 + 1 + 1 + 1  # asarray, ones, +, *=, sum, gather, asarray(index)
    assert counter.views == 4 and counter.host_reads == 1
    assert e.shape == (4, 3) and f.shape == (4, 3) and g.shape == (2, 4) and h.shape == (2, 4)
