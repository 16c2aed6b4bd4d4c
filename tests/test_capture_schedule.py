"""The captured step over a whole schedule, for every weight method and every W1A1 method: no graph break,
no recompile.

``capture = "compile"`` (CPU, the "aot_eager" backend: what is tested is dynamo's tracing) for 120 steps of
the small MLP (8×8 inputs) at batch 4, with the lr (cosine), μ/ρ and the progress moving every step, PQ's freeze reached
half way. After the first two steps (the forward graph; the first update runs eagerly, then the update graph)
``torch._dynamo.config.error_on_recompile`` turns any recompile into an error, and dynamo's graph-break
counter must stay empty. The W1A1 methods run the same 120 steps (each step is cheap next to the compile):
their schedules (FDA's ⌊n⌋ from 9 to 18 and λ, ReCU's τ) move through every value they take in training,
and their activation quantizers and learned per-layer tensors (RSign's β, XNOR-Net++'s h ⊗ w, FDA's noise
layers on the 256-input hidden layer) are in the forward graph (``methods.traceable``).
``python tests/test_capture_schedule.py`` runs the same check as a script and prints one line per method
(used to check another torch, e.g. 2.11, in a side environment; ``--w1a1``: the W1A1 methods only).
"""

from __future__ import annotations

import sys

import pytest
import torch
from torch import nn

import methods
import models

from bench.run.optim import lr_factor, make_optimizer
from bench.run.step import TrainStep, tensor_lr

STEPS = 120
CASES = [(key, {}) for key in methods.list_methods()] + [("pq", {"freeze_at": 0.5}), ("pq", {"prox": "l1"})]
W1A1_CASES = [(key, {}) for key in methods.list_methods(w1a1=True)]


def run_schedule(key: str, params: dict, optimizer: str = "sgd", steps: int = STEPS) -> dict:
    """Train ``steps`` captured steps; {graph breaks, unique graphs, recompile error or None, progress}."""
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    torch.manual_seed(0)
    model = methods.binarize(models.create_model("fmnist-mlp", num_classes=10, in_chans=1, img_size=8), key,
                             **params)
    cfg = {"optimizer": optimizer, "lr": 1e-2, "epochs": 1, "lr_schedule": "cosine", "latent_weight_decay": 0.0,
           "weight_decay": 5e-4, "momentum": 0.9, "warmup_epochs": 0.0}
    opt = make_optimizer(cfg, model)
    tensor_lr(opt, torch.device("cpu"))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(cfg, s, steps, steps))
    step = TrainStep(model, opt, sched, nn.CrossEntropyLoss(), torch.device("cpu"), "compile", backend="aot_eager")
    g = torch.Generator().manual_seed(3)
    batches = [(torch.randn(4, 1, 8, 8, generator=g), torch.randint(0, 10, (4,), generator=g)) for _ in range(4)]
    error = None
    graphs = None
    for i in range(steps):
        if i == 2:
            graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
        try:
            with torch._dynamo.config.patch(error_on_recompile=i >= 2):
                step(*batches[i % len(batches)], (i + 1) / steps)
        except Exception as exc:  # a recompile (or a failed trace): reported, not raised, by the script
            error = f"step {i + 1}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            break
    counters = torch._dynamo.utils.counters
    return {"breaks": sum(counters["graph_break"].values()), "reasons": sorted(counters["graph_break"]),
            "graphs": counters["stats"]["unique_graphs"], "graphs_at_2": graphs, "error": error,
            "progress": methods.get_method(model).progress, "whole_update": step._update is not None}


@pytest.mark.usefixtures("fresh_dynamo")
@pytest.mark.parametrize("key,params", CASES + W1A1_CASES,
                         ids=[k + "".join(f"-{v}" for v in p.values()) for k, p in CASES + W1A1_CASES])
def test_whole_schedule_compiles_once_without_a_break(key, params):
    result = run_schedule(key, params)
    assert result["error"] is None, result
    assert result["breaks"] == 0, result["reasons"]
    assert result["graphs"] == result["graphs_at_2"] == 2, result  # the forward (with its backward), the update
    assert result["whole_update"] and result["progress"] == 1.0


@pytest.mark.usefixtures("fresh_dynamo")
def test_a_part_that_cannot_be_captured_says_so_and_runs_eagerly():
    """A graph break (here a plugin hook that forces one) is an error under ``fullgraph``: that part runs
    eagerly from then on, with one log line and ``TrainStep.fallbacks`` (the record's ``capture_fallback``)."""

    class Breaking(methods.get_method_class("rpc")):
        def before_step_all(self, ws, lr):
            torch._dynamo.graph_break()
            super().before_step_all(ws, lr)

    model = methods.binarize(models.create_model("fmnist-mlp", num_classes=10, in_chans=1, img_size=8), Breaking())
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    tensor_lr(opt, torch.device("cpu"))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    lines = []
    step = TrainStep(model, opt, sched, nn.CrossEntropyLoss(), torch.device("cpu"), "compile", backend="aot_eager",
                     log=lines.append)
    x, y = torch.randn(4, 1, 8, 8), torch.randint(0, 10, (4,))
    for i in range(4):
        step(x, y, (i + 1) / 4)
    assert list(step.fallbacks) == ["update"] and len(lines) == 1 and "runs eagerly" in lines[0], lines
    assert methods.get_method(model).tensors.progress.item() == 1.0


if __name__ == "__main__":
    print(f"torch {torch.__version__}: {STEPS} captured steps per method (fmnist-mlp 8x8, aot_eager)")
    failed = 0
    cases = W1A1_CASES if "--w1a1" in sys.argv else CASES + W1A1_CASES
    keys = [a for a in sys.argv[1:] if not a.startswith("--")]
    cases = [c for c in cases if not keys or c[0] in keys]  # python tests/test_capture_schedule.py rpc pq
    for key, params in cases:
        r = run_schedule(key, params)
        ok = r["error"] is None and r["breaks"] == 0 and r["graphs"] == 2
        failed += not ok
        print(f"{key}{params or ''}: {'ok' if ok else 'FAIL'} graph breaks {r['breaks']}, graphs {r['graphs']}, "
              f"recompile/error {r['error']}" + (f", reasons {r['reasons'][:2]}" if r["reasons"] else ""))
    sys.exit(1 if failed else 0)
