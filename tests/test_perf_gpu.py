"""``perf gpu``'s dependencies and its CPU smoke mode, and the eager step's op count (the GPU's launches).

* ``perf gpu --help`` and the import of the perf modules work where submitit and ffcv are not installed (a
  ``sitecustomize`` that blocks both imports, as on the cluster's GPU image);
* ``perf gpu --quick`` on CPU: the same jobs, timing and table code on a tiny MLP (no timing asserted);
* every weight method's eager training step (``TrainStep``, ResNet-20, batch 2, SGD) dispatches at most
  ``BUDGET`` aten ops more than fp's (``bench.perf.ops``: a ``TorchDispatchMode``; on a GPU each is a kernel launch).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

import methods

from bench.perf.ops import BUDGET, eager_step_ops

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_perf_gpu_needs_neither_submitit_nor_ffcv(tmp_path):
    (tmp_path / "sitecustomize.py").write_text("import sys\nsys.modules['submitit'] = None\nsys.modules['ffcv'] = None\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), ROOT])}
    blocked = subprocess.run([sys.executable, "-c", "import submitit"], env=env, capture_output=True, text=True)
    assert blocked.returncode != 0  # the shim works
    for argv in (["-m", "bench", "perf", "gpu", "--help"],
                 ["-c", "import bench.perf.gpu_quick, bench.perf.cuda, bench.cli"]):
        done = subprocess.run([sys.executable, *argv], env=env, capture_output=True, text=True, cwd=ROOT, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
    assert "--quick" in subprocess.run([sys.executable, "-m", "bench", "perf", "gpu", "--help"], env=env,
                                       capture_output=True, text=True, cwd=ROOT, timeout=300).stdout


def test_quick_report_code_path_on_cpu():
    from bench.perf import gpu_quick

    rows = gpu_quick.quick_rows("cpu", smoke=True, steps=1, warmup=1, jobs=1, backend="aot_eager", log=print)
    assert [r["method"] for r in rows] == ["fp", "bnn++"] and rows[0]["ratio"] == 1.0
    assert all(r["none"] > 0 and r["compile"] > 0 and "capture_error" not in r for r in rows)
    assert "captured step / fp" in gpu_quick.format_quick_table(rows)


def test_eager_step_dispatches_few_ops_more_than_fp():
    fp = eager_step_ops("fp")
    builtin = [key for key in methods.list_methods() if key != "fp"
               and methods.get_method_class(key).__module__.startswith("methods.")]  # not other tests' plugins
    extra = {key: eager_step_ops(key) - fp for key in builtin}
    print(f"aten ops per eager ResNet-20 step: fp {fp}; over fp: {extra}")
    assert all(n <= BUDGET for n in extra.values()), extra
