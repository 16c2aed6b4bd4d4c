#!/usr/bin/env bash
# The CUDA checks and the GPU report users need, on one GPU (budget: about 4 minutes for the report on an
# H200; unmeasured so far):
#   1. pytest tests/test_cuda.py (the CUDA tests);
#   2. python -m bench perf gpu --quick -> results/perf/cuda-quick.md: eager and captured images/s and the
#      ratio to fp of every method (ResNet-20; W1A1 on resnet20-bireal), fp on ResNet-56/VGG-small, K = 1, 2,
#      4, 8 cells per GPU. Needs torch, torchvision, timm, numpy, pandas, tabulate, matplotlib (no submitit,
#      no ffcv). FULL=1 adds the long report (python -m bench perf gpu -> results/perf/cuda.md).
# Run from the repository root: bash slurm/gpu-report.sh  (PYTHON overrides the interpreter).
set -euo pipefail
PY=${PYTHON:-python}
export PYTHONPATH=${PYTHONPATH:-$PWD}
$PY -m pytest -q -p no:cacheprovider tests/test_cuda.py
time $PY -m bench perf gpu --quick --out results/perf/cuda-quick.md
if [ -n "${FULL:-}" ]; then $PY -m bench perf gpu --out results/perf/cuda.md; fi
