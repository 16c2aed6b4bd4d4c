"""``python -m bench perf infer``: the bit-packed engine against torch fp32 on the CPU -> results/perf/infer-cpu.md.

For ``fmnist-cnn-bireal`` (28 px), ``resnet20-bireal`` (32 px) and ``resnet18-bireal`` (224 px), each with
random weights binarized by ``bireal`` (policy ``w1a1``), exported with ``save_packed`` and loaded back
(``bench.infer.model.load``): the latency of every binary layer (the engine layer: pack the input, popcount,
scale; against torch's fp32 convolution of the same shape on the same input) and of the whole forward
(the engine model; the full-precision twin, the same architecture unbinarized; the PyTorch deployed model,
batch 1 only), at batch 1 and 64, on ``--threads`` threads (default 1) for both. Within a repetition every
candidate runs once, in turn (interleaved); times are medians over repetitions, and each speed-up is the
median over repetitions of that repetition's ratio ("best/best": fastest over fastest, for a shared machine). Next to it, the theoretical ratio of the records' OPs
convention: fp32 FLOPs / (bops_w1a1/64 + flops_w1a1) for the model, 2·MACs / (MACs/64) = 128 for a binary
layer.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tabulate import tabulate

import methods
import models

from bench.atomic import atomic_write
from bench.infer import build
from bench.infer.layers import EngineLayer
from bench.infer.model import load
from bench.run.export import save_packed
from bench.run.flops import count_ops

from .step import machine_line

MODELS = (("fmnist-cnn-bireal", 1, 28, 10), ("resnet20-bireal", 3, 32, 10), ("resnet18-bireal", 3, 224, 1000))
BATCHES = (1, 64)
LAYER_OPS_RATIO = 128  # 2·MACs FLOPs against MACs/64 OPs


def prepare(name: str, chans: int, size: int, classes: int, tmp: Path) -> dict:
    torch.manual_seed(0)
    shape = {"num_classes": classes, "in_chans": chans, "img_size": size}
    model = models.create_model(name, **shape)
    methods.binarize(model, "bireal", policy="w1a1")
    model.eval()
    path = tmp / f"{name}.pxb"
    config = {"model": name, "method": "bireal", "method_params": {}, "policy": "w1a1", "model_kwargs": {}}
    save_packed(model, path, meta={"config": config, "input": shape})
    engine, reference, _ = load(path)
    fp = models.create_model(name, **shape).eval()
    ops = count_ops(model, (1, chans, size, size))
    fp_flops = count_ops(fp, (1, chans, size, size))["flops"]
    return {"engine": engine, "reference": reference, "fp": fp, "shape": (chans, size),
            "ops_ratio": fp_flops / ops["ops"]}


def _interleaved(candidates: dict, repeats: int) -> dict:
    """{name: [seconds per repetition]}: one warm-up, then every candidate once per repetition, in turn."""
    times = {k: [] for k in candidates}
    with torch.no_grad():
        for fn in candidates.values():
            fn()
        for _ in range(repeats):
            for k, fn in candidates.items():
                start = time.perf_counter()
                fn()
                times[k].append(time.perf_counter() - start)
    return times


def _ratio(times: dict, slow: str, fast: str) -> float:
    return statistics.median(s / f for s, f in zip(times[slow], times[fast]))


def _best_ratio(times: dict, slow: str, fast: str) -> float:
    """min/min: the two fastest repetitions, the least disturbed by other processes on a shared machine."""
    return min(times[slow]) / min(times[fast])


def _layer_inputs(engine, x) -> list[tuple[str, EngineLayer, torch.Tensor]]:
    seen, handles = [], []
    for name, module in engine.named_modules():
        if isinstance(module, EngineLayer):
            handles.append(module.register_forward_pre_hook(
                lambda m, args, name=name: seen.append((name, m, args[0].detach().clone()))))
    with torch.no_grad():
        engine(x)
    for h in handles:
        h.remove()
    return seen


def _torch_layer(layer: EngineLayer, x: torch.Tensor):
    w = torch.randn(layer.co, layer.c, layer.kh, layer.kw)
    if layer.linear:
        return lambda: F.linear(x, w[:, :, 0, 0])
    return lambda: F.conv2d(x, w, None, layer.stride, layer.pad)


def measure(repeats: int = 10, threads: int = 1, log=print) -> list[dict]:
    """One row per (model, batch): e2e times and speed-ups, and per-layer rows."""
    torch.set_num_threads(threads)
    rows = []
    with tempfile.TemporaryDirectory(prefix="proxbench-perf-infer-") as tmp:
        for name, chans, size, classes in MODELS:
            setup = prepare(name, chans, size, classes, Path(tmp))
            for batch in BATCHES:
                reps = repeats if batch == 1 or size < 224 else max(3, repeats // 4)
                x = torch.randn(batch, chans, size, size)
                candidates = {"engine": lambda: setup["engine"](x), "fp32": lambda: setup["fp"](x)}
                if batch == 1:
                    candidates["deployed"] = lambda: setup["reference"](x)
                log(f"perf infer: {name} batch {batch}: end to end, {reps} repetitions")
                e2e = _interleaved(candidates, reps)
                layers = []
                for lname, layer, lx in _layer_inputs(setup["engine"], x):
                    lt = _interleaved({"engine": lambda: layer(lx), "fp32": _torch_layer(layer, lx)}, reps)
                    layers.append({"layer": lname, "shape": f"{layer.c}->{layer.co} k{layer.kh} s{layer.stride} "
                                                            f"{tuple(lx.shape[2:]) if not layer.linear else ''}",
                                   "engine_ms": 1e3 * statistics.median(lt["engine"]),
                                   "fp32_ms": 1e3 * statistics.median(lt["fp32"]),
                                   "speedup": _ratio(lt, "fp32", "engine"), "best": _best_ratio(lt, "fp32", "engine")})
                rows.append({"model": name, "size": size, "batch": batch, "threads": threads,
                             "engine_ms": 1e3 * statistics.median(e2e["engine"]),
                             "fp32_ms": 1e3 * statistics.median(e2e["fp32"]),
                             "deployed_ms": 1e3 * statistics.median(e2e["deployed"]) if "deployed" in e2e else None,
                             "speedup": _ratio(e2e, "fp32", "engine"), "best": _best_ratio(e2e, "fp32", "engine"),
                             "ops_ratio": setup["ops_ratio"],
                             "layers": layers})
    return rows


def report(rows: list[dict], isa: str) -> str:
    threads = rows[0]["threads"] if rows else 1
    e2e = tabulate([[r["model"], r["size"], r["batch"], f"{r['engine_ms']:.2f}", f"{r['fp32_ms']:.2f}",
                     "" if r["deployed_ms"] is None else f"{r['deployed_ms']:.2f}", f"{r['speedup']:.2f}x",
                     f"{r['best']:.2f}x", f"{r['ops_ratio']:.1f}x"] for r in rows],
                   headers=["model", "px", "batch", "engine (ms)", "torch fp32 (ms)", "torch deployed (ms)",
                            "speed-up vs fp32", "best/best", "OPs ratio (theory)"], tablefmt="github")
    parts = [f"# Bit-packed W1A1 inference on the CPU (`python -m bench perf infer`)\n",
             f"{machine_line('cpu')}; engine kernel `{isa}`; engine and torch on {threads} thread(s).\n",
             "Random weights binarized by `bireal` (policy `w1a1`), exported (`save_packed`) and loaded into the "
             "engine. Medians over interleaved repetitions; a speed-up is the median of the per-repetition "
             "ratios; best/best is the ratio of the two fastest repetitions (the least disturbed on a shared "
             "machine). OPs ratio: fp32 FLOPs / (bops_w1a1/64 + flops_w1a1), the records' convention.\n",
             "## End to end\n", e2e, ""]
    for r in rows:
        table = tabulate([[x["layer"], x["shape"], f"{x['engine_ms']:.3f}", f"{x['fp32_ms']:.3f}",
                           f"{x['speedup']:.1f}x", f"{x['best']:.1f}x", f"{LAYER_OPS_RATIO}x"] for x in r["layers"]],
                         headers=["binary layer", "shape (in->out, kernel, stride, input)", "engine (ms)",
                                  "torch fp32 conv (ms)", "speed-up", "best/best", "OPs ratio"], tablefmt="github")
        parts += [f"## {r['model']} ({r['size']} px), batch {r['batch']}: binary layers\n", table, ""]
    return "\n".join(parts)


def cli_perf_infer(args) -> int:
    isa = build.ISA_NAMES[build.selected_isa()]
    repeats = args.repeats or 10
    rows = measure(repeats=repeats, threads=args.threads or 1)
    text = report(rows, isa)
    out = Path(args.out or "results/perf/infer-cpu.md")
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda fh: fh.write(text.encode()))
    print(text)
    print(f"wrote {out}")
    return 0
