#!/usr/bin/env bash
# The CUDA checks of the captured training step and the GPU report, on one GPU (about 5 minutes on an H100):
#   1. a 1-epoch ResNet-20 run on synthetic CIFAR-shaped data with capture = "compile" (CUDA graphs) and the
#      same run eager: both finish "done" (deferred divergence check, no host sync inside the epoch);
#   2. python -m bench perf gpu -> results/perf/cuda.md (step ratios, loaders, e2e epochs, eager vs captured
#      images/s of the paper's CNNs, cells sharing one GPU).
# Run from the repository root: bash slurm/gpu-report.sh  (PYTHON overrides the interpreter).
set -euo pipefail
PY=${PYTHON:-python}
export PYTHONPATH=${PYTHONPATH:-$PWD}
for capture in none compile; do
  $PY -m bench run --model resnet20 --dataset synthetic --method rpc --epochs 1 --device cuda \
    --set "capture=\"$capture\"" --set 'data_options={img_size=32, in_chans=3, num_classes=10, train_size=12800, test_size=2560}' \
    --workdir /tmp/gpu-report-work --results /tmp/gpu-report-results --grid gpu-check --fresh
done
$PY -m bench perf gpu --out results/perf/cuda.md
