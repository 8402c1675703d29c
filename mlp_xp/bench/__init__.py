"""Epoch-throughput measurement, shared by ``mlp-xp bench`` and the pytest suite in ``benchmarks/``.

A *case* (``cases.Case``) is (backend, model, batch size, data storage, optimizer). Every
*method* of a case (``comparators``) trains the same model from the same initial weights on
the same learnable data in the same sample order, one full epoch at a time: mlp_xp eager
(``package``) and compiled (``package_compiled``, with mlp_xp eager on NumPy
``package_numpy`` beside it on a CPU), a same-math hand loop in NumPy/CuPy
(``hand``), the shared reference loop (``reference``), PyTorch eager (``torch``) and a
hand-written ``jax.jit`` + ``lax.scan`` epoch (``jax_scan``). ``harness.CaseRun`` runs them
interleaved round by round; ``report`` turns the timings into a record (ratios, compile
seconds, operations per step, agreement of the final parameters), a table, and the gate.
"""

from .cases import BATCH_SIZES, GPU_BATCH_SIZES, MODELS, OPTIMIZERS, Case, epoch_flops, make_data, parse_hidden
from .cli import add_bench_arguments, run_bench_command
from .harness import (
    HAND,
    JAX_SCAN,
    PACKAGE,
    PACKAGE_COMPILED,
    PACKAGE_NUMPY,
    REFERENCE,
    SGEMM,
    TORCH,
    CaseRun,
    gemm_gflops,
)
from .report import format_table, gate, machine_info

__all__ = [
    "BATCH_SIZES",
    "GPU_BATCH_SIZES",
    "MODELS",
    "OPTIMIZERS",
    "Case",
    "CaseRun",
    "epoch_flops",
    "make_data",
    "parse_hidden",
    "gemm_gflops",
    "add_bench_arguments",
    "run_bench_command",
    "format_table",
    "gate",
    "machine_info",
    "HAND",
    "JAX_SCAN",
    "PACKAGE",
    "PACKAGE_COMPILED",
    "PACKAGE_NUMPY",
    "REFERENCE",
    "SGEMM",
    "TORCH",
]
