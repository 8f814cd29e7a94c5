#!/usr/bin/env bash
# The GPU check in one command, on any CUDA machine with the project installed:
#   1. the `gpu` preset's whole pipeline (bench/gpu_pipeline.py: time per stage, trials at once, GPU busy time),
#   2. the CUDA-only tests (`pytest -m cuda`),
#   3. the training loop eager / CUDA graphs / torch.compile (bench/bench_training_loop.py).
# Usage: bench/gpu_check.sh [OUT_DIR]   (PYTHON=python3 to use another interpreter; logs and JSON go to OUT_DIR)
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-bench/results/gpu-check}
python=${PYTHON:-.venv/bin/python}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || { echo "gpu_check: no nvidia-smi: not a CUDA machine" >&2; exit 2; }
"$python" -c "import torch, ray; print('torch', torch.__version__, 'ray', ray.__version__, 'cuda', torch.cuda.is_available())"
status=0
echo "=== 1/3 the gpu preset's pipeline"
"$python" bench/gpu_pipeline.py --preset gpu --lab /tmp/gpu-check-lab --out "$out/gpu_pipeline.json" 2>&1 \
    | grep --line-buffered -E "^\[|^\||trials at once|GPU during|Error|error" | tee "$out/pipeline.log" || status=1
echo "=== 2/3 pytest -m cuda"
"$python" -m pytest -m cuda -q -p no:cacheprovider tests/diffusion/core/test_cuda.py 2>&1 | tee "$out/pytest.log" | tail -5 || status=1
echo "=== 3/3 the training loop"
"$python" bench/bench_training_loop.py --device cuda --modes off cuda_graphs torch_compile 2>&1 | grep -v Warning \
    | tee "$out/loop.log" || status=1
exit $status
