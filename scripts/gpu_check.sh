#!/usr/bin/env bash
# The GPU check (issue #36): Stage 2 (HRNet-W48) and Stage 5 (Mask R-CNN R-50-FPN, 1333 x 800)
# trained a few dozen iterations with and without AMP, Stage 3 batched in fp32 and fp16, on
# synthetic data; iterations/s, peak GPU memory and the device name to a JSON file and a table.
# The logic is in benchmarks/gpu_check.py; this finds the Python to run it with.
#
#   bash scripts/gpu_check.sh                    # writes benchmarks/results/gpu_check.json
#   bash scripts/gpu_check.sh --out my_gpu.json
#   bash scripts/gpu_check.sh --tiny             # toy sizes, on the CPU without a GPU
#
# Without a GPU (and without --tiny) it says so and exits 0.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-}"
if [[ -z "$python" ]]; then
    if [[ -x "$repo/.venv/bin/python" ]]; then python="$repo/.venv/bin/python"; else python=python3; fi
fi
exec "$python" "$repo/benchmarks/gpu_check.py" "$@"
