#!/usr/bin/env bash
# The GPU check: one command that proves every GPU path of mlp_xp and records its figures.
#
#   bash scripts/gpu_check.sh [--wheels DIR] [--out DIR] [--data-dir DIR] [--quick] [--dry-run]
#
# Uses the CuPy / PyTorch / JAX already installed; --wheels DIR first installs the wheels in DIR
# (no network needed: e.g. array-api-compat, array-api-strict, pooch, tqdm, hypothesis, safetensors,
# made with `pip download -d DIR ...` on a machine that has a network). The Fashion-MNIST files go in
# --data-dir (or $MLP_XP_DATA, or /usr/share/datasets/fashion-mnist). Writes OUT/gpu_check.json,
# OUT/bench.png and OUT/logs/, prints a summary table.
# Exit codes: 0 every step passed; 1 a step failed; 3 no usable CUDA device (nothing was run).
set -uo pipefail
cd "$(dirname "$0")/.."
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --wheels)
            python3 -m pip install -q --no-index --no-deps --no-compile --target "${TMPDIR:-/tmp}/mlp_xp_site" "$2"/*.whl || exit 1
            export PYTHONPATH="${TMPDIR:-/tmp}/mlp_xp_site${PYTHONPATH:+:$PYTHONPATH}"
            shift 2 ;;
        *) args+=("$1"); shift ;;
    esac
done
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
python3 -c "import mlp_xp" || { echo "gpu_check: mlp_xp does not import here (install it, or give --wheels DIR)" >&2; exit 1; }
exec python3 scripts/gpu_check.py "${args[@]}"
