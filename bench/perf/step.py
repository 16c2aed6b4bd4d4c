"""``python -m bench perf step|loaders|all`` (``gpu``: ``bench.perf.cuda``): performance budgets as ratios measured in one run.

``perf step`` times a full training step (forward, backward, hooks, ``optimizer.step()``,
``set_progress``) of every registered method against ``fp`` on the same model and batch. Within each
repetition every method runs once, between two ``fp`` steps of its network (the order alternates between
repetitions); warm-up steps are excluded. The table gives the median and the interquartile spread of each
per-step time, and as the ratio to ``fp`` the median over repetitions of the method's step over the mean of
its two neighbouring ``fp`` steps: a burst of machine noise, which moves the medians of a shared VM by tens
of percent, hits both sides of each sample alike. ``--fuse`` adds a row "<method> fused" for every method ``methods.fuse`` fuses (all
binarized weights quantized in one flat tensor per forward), timed in the same round-robin. ``perf all`` also runs the loader benchmark and writes ``results/perf/<device>.md``.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from pathlib import Path

import torch
from tabulate import tabulate
from torch import nn

import methods
import models

from bench.errors import UserError


def sync_device(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _Stepper:
    """One model + optimizer + fixed batch for one method; ``step()`` is one full training step."""

    def __init__(self, method: str, model_name: str, batch: int, device: torch.device, compile_model: bool,
                 img_size: int | None = None, fused: bool = False):
        torch.manual_seed(0)
        self.method, self.network = method, model_name
        shape = input_shape(model_name, img_size)
        classes = 1000 if shape[1] >= 224 else 10
        model = models.create_model(model_name, num_classes=classes, in_chans=shape[0], img_size=shape[1])
        methods.binarize(model, method, fused=fused)
        self.model = model.to(device)
        self.device = device
        if device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        self.x = torch.randn(batch, shape[0], shape[1], shape[1], device=device)
        if device.type == "cuda":
            self.x = self.x.contiguous(memory_format=torch.channels_last)
        self.y = torch.randint(0, classes, (batch,), device=device)
        self.loss = nn.CrossEntropyLoss()
        self.forward = torch.compile(self.model) if compile_model else self.model
        self.steps, self.total = 0, 10_000
        self.compile_seconds = 0.0
        if compile_model:
            t0 = time.perf_counter()
            self.step()
            sync_device(device)
            self.compile_seconds = time.perf_counter() - t0

    def step(self) -> None:
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if self.device.type == "cuda" else torch.autocast(
            "cpu", enabled=False)
        with autocast:
            loss = self.loss(self.forward(self.x).float(), self.y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.steps += 1
        methods.optimizer_step(self.model, self.optimizer, progress=min(1.0, self.steps / self.total))


def input_shape(model: str, img_size: int | None = None) -> tuple[int, int]:
    """(channels, side) of the batch ``perf step`` feeds ``model``: its registered input when that is small
    (Fashion-MNIST's 1×28×28, CIFAR's 3×32×32), else 3×``img_size`` (default 32)."""
    info = models.model_info(model)
    if info.default_img_size <= 64 and img_size is None:
        return info.default_in_chans, info.default_img_size
    return 3, img_size or 32


def w1a1_model(model: str, method: str, img_size: int | None = None) -> str:
    """The network W1A1 ``method`` is timed on: ``model`` itself when its binarized layers see signed inputs,
    else its Bi-Real form ``<model>-bireal`` (a ReLU in front of a sign gives the constant +1, a network
    nobody trains; ``bench.run.model.constant_binary_inputs``), when registered."""
    from bench.run.model import constant_binary_inputs

    variant = f"{model}-bireal"
    if variant not in models.list_models():
        return model
    in_chans, size = input_shape(model, img_size)
    net = methods.binarize(models.create_model(model, num_classes=10, in_chans=in_chans, img_size=size), method)
    return variant if constant_binary_inputs(net, (in_chans, size, size)) else model


def measure_steps(model: str = "resnet20", batch: int = 128, device: str = "cpu", repeats: int | None = None,
                  warmup: int = 3, compile_model: bool = False, method_keys: list[str] | None = None,
                  img_size: int | None = None, fuse: bool = False) -> list[dict]:
    """Per-method step times (seconds), measured interleaved; the first row is ``fp``, each row's ratio is to
    the ``fp`` step of its own network. W1A1 methods run on ``w1a1_model(model)``; when that is another
    network its ``fp`` row ("fp (<network>)") is timed as well. ``fuse``: each fusable method a second time as
    "<method> fused"."""
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda asked for but no CUDA device is available")
    asked = [k for k in (method_keys or methods.list_methods()) if k != "fp"]
    repeats = repeats or (20 if dev.type == "cpu" else 100)
    w1a1 = [k for k in asked if methods.get_method_class(k).activation is not None]
    weight = [k for k in asked if k not in w1a1]
    variant = w1a1_model(model, w1a1[0], img_size) if w1a1 else model
    # weight methods first after the plain fp row (left out when only W1A1 methods on another network are
    # asked for), then the W1A1 ones after their network's fp row
    keys = ["fp"] + weight if weight or variant == model else []
    networks = {k: model for k in keys}
    if variant != model:
        keys.append(fp_variant := f"fp ({variant})")
        networks[fp_variant] = variant
    keys += w1a1
    networks.update((k, variant) for k in w1a1)
    steppers = {k: _Stepper(k.split(" ")[0], networks[k], batch, dev, compile_model, img_size) for k in keys}
    if fuse:
        for k in [k for k in keys if not k.startswith("fp (") and methods.create_method(k).fusable]:
            steppers[f"{k} fused"] = _Stepper(k, networks[k], batch, dev, compile_model, img_size, fused=True)
            networks[f"{k} fused"] = networks[k]
        keys = list(steppers)
    for _ in range(warmup):
        for s in steppers.values():
            s.step()
    sync_device(dev)
    baseline = {k: "fp" if networks[k] == model else f"fp ({variant})" for k in keys}
    methods_only = [k for k in keys if baseline[k] != k]
    times: dict[str, list[float]] = {k: [] for k in keys}
    ratios: dict[str, list[float]] = {k: [] for k in methods_only}
    for r in range(repeats):
        # each method between two steps of its network's fp: its ratio sample is to their mean, so a burst of
        # machine noise hits the pair alike (the order alternates: no method always runs first)
        order = methods_only if r % 2 == 0 else methods_only[::-1]
        sequence = [step for k in order for step in (baseline[k], k)] + [baseline[order[-1]]] if order \
            else ["fp"]
        took = []
        for k in sequence:
            t0 = time.perf_counter()
            steppers[k].step()
            sync_device(dev)
            took.append(time.perf_counter() - t0)
            times[k].append(took[-1])
        for i in range(1, len(sequence), 2):
            neighbours = [took[j] for j in (i - 1, i + 1) if sequence[j] == baseline[sequence[i]]]
            ratios[sequence[i]].append(took[i] / statistics.fmean(neighbours))
    rows = []
    for k in keys:
        ts = sorted(times[k])
        q1, q3 = ts[len(ts) // 4], ts[(3 * len(ts)) // 4]
        med = statistics.median(ts)
        rows.append({"method": k, "median_ms": med * 1e3, "iqr_ms": (q3 - q1) * 1e3,
                     "ratio": statistics.median(ratios[k]) if k in ratios else 1.0,
                     "network": networks[k], "compile_s": steppers[k].compile_seconds})
    return rows


def add_op_counts(rows: list[dict], img_size: int | None = None) -> list[dict]:
    """Each row's ``ops_over_fp``: the aten ops its eager step (batch 2, ``bench.perf.ops``) dispatches more
    than the ``fp`` step of the same network (issue 23's budget: ≤ 100 for a weight method on ResNet-20)."""
    from bench.perf.ops import eager_step_ops

    counts = {}
    for r in rows:
        key, fused = r["method"].split(" ")[0], r["method"].endswith(" fused")
        in_chans, side = input_shape(r["network"], img_size)
        for k, f in ((key, fused), ("fp", False)):
            if (k, f, r["network"]) not in counts:
                counts[k, f, r["network"]] = eager_step_ops(k, r["network"], fused=f, in_chans=in_chans,
                                                            img_size=side)
        r["ops_over_fp"] = counts[key, fused, r["network"]] - counts["fp", False, r["network"]]
    return rows


def format_step_table(rows: list[dict], compiled: bool) -> str:
    ops = all("ops_over_fp" in r for r in rows)
    headers = (["method", "median step (ms)", "IQR (ms)", "ratio to fp"] + (["aten ops over fp"] if ops else [])
               + (["compile (s)"] if compiled else []))
    table = [[r["method"], f"{r['median_ms']:.1f}", f"{r['iqr_ms']:.1f}", f"{r['ratio']:.3f}"]
             + ([str(r["ops_over_fp"])] if ops else []) + ([f"{r['compile_s']:.1f}"] if compiled else [])
             for r in rows]
    return tabulate(table, headers=headers, tablefmt="github")


def machine_line(device: str) -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        what = torch.cuda.get_device_name(0)
    else:
        what = platform.processor() or platform.machine()
    return (f"device {device} ({what}), {os.cpu_count()} CPUs, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads, Python {platform.python_version()}")


SYNTHETIC_CIFAR = {"img_size": 32, "in_chans": 3, "num_classes": 10, "train_size": 50000, "test_size": 10000}


def end_to_end_epochs(device: str, method_keys=("fp", "bnn++"), log=print) -> list[dict]:
    """One ResNet-20 epoch on synthetic CIFAR-shaped data (50k/10k) per method, through ``train.execute``."""
    import tempfile

    from bench.run import config as configs
    from bench.run import train

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for key in method_keys:
            cfg = configs.resolve({"model": "resnet20", "dataset": "synthetic", "data_options": SYNTHETIC_CIFAR,
                                   "method": key, "epochs": 1, "batch_size": 128, "optimizer": "sgd", "lr": 0.05})
            t0 = time.perf_counter()
            record = train.execute(cfg, grid="perf", workdir=f"{tmp}/work", results=f"{tmp}/results", device=device,
                                   log=lambda m: None)
            epoch = record["history"][-1]
            rows.append({"method": key, "epoch_s": epoch["seconds"], "images_per_s": SYNTHETIC_CIFAR["train_size"] / epoch["seconds"],
                         "wall_s": time.perf_counter() - t0, "acc": record["final"]["acc"],
                         "peak_mb": record["final"]["peak_memory_mb"]})
            log(f"  e2e {key}: epoch {epoch['seconds']:.2f}s")
    return rows


def format_e2e_table(rows: list[dict]) -> str:
    base = rows[0]["epoch_s"]
    return tabulate([[r["method"], f"{r['epoch_s']:.2f}", f"{r['images_per_s']:.0f}", f"{r['epoch_s'] / base:.3f}",
                      f"{r['peak_mb']:.0f}", f"{r['acc']:.2f}"] for r in rows],
                    headers=["method", "epoch (s)", "train images/s", "ratio to fp", "peak memory (MB)",
                             "test acc (synthetic)"], tablefmt="github")


def _method_keys(spec: str) -> list[str]:
    keys = sorted({k for part in spec.split(",") for k in methods.list_methods(part.strip(), w1a1=None)})
    if not keys:
        raise UserError(f"no method matches {spec!r} (valid: {', '.join(methods.list_methods(w1a1=None))})")
    return keys


def budget_lines(rows: list[dict], model: str) -> str:
    """The worst ratio of the weight-only methods (budget ≤ 1.10) and of the W1A1 ones (≤ 1.15), with the
    network the W1A1 methods ran on when it is not ``model``; the most aten ops a weight method's eager step
    adds to fp's (budget ≤ 100) when counted."""
    def w1a1(row):
        key = row["method"].removesuffix(" fused")
        return not key.startswith("fp") and methods.get_method_class(key).activation is not None

    lines = []
    weight = [r["ratio"] for r in rows if not w1a1(r) and not r["method"].startswith("fp")]
    if weight:
        lines.append(f"worst weight-method ratio {max(weight):.3f} (budget ≤ 1.10, goal ≤ 1.05)")
    ops = [r["ops_over_fp"] for r in rows if "ops_over_fp" in r and not w1a1(r) and not r["method"].startswith("fp")]
    if ops:
        lines.append(f"most aten ops a weight method's eager step adds to fp's: {max(ops)} (budget ≤ 100)")
    binary = [r for r in rows if w1a1(r)]
    if binary:
        network = binary[0]["network"]
        where = (f"W1A1 methods timed on {network} (in {model} a ReLU feeds each binarized layer: sign would see "
                 f"the constant +1), each ratio to its fp row; " if network != model else "")
        lines.append(f"{where}worst W1A1 ratio {max(r['ratio'] for r in binary):.3f} (budget ≤ 1.15)")
    return "".join(f"{line}\n" for line in lines)


def cli_perf(args) -> int:
    """``perf step|loaders|all`` (``perf gpu``: ``bench.perf.cuda.cli_perf``)."""
    sections = [f"# proxbench perf\n\n{machine_line(args.device)}\n"]
    if args.what in ("step", "all"):
        rows = measure_steps(args.model, args.batch, args.device, args.repeats, compile_model=args.compile,
                             method_keys=_method_keys(args.methods), fuse=getattr(args, "fuse", False))
        rows = add_op_counts(rows)
        text = (f"## Training step: {args.model}, batch {args.batch}, {args.device}\n\n"
                f"{format_step_table(rows, args.compile)}\n\n{budget_lines(rows, args.model)}")
        print(text)
        sections.append(text)
    if args.what in ("loaders", "all"):
        from bench.perf.loaders import format_loader_table, run_loader_benchmark

        rows = run_loader_benchmark(dataset=args.dataset, data_root=args.data_root, device=args.device)
        text = (f"## Loaders: {args.dataset}, same augmentations, {args.device}\n\n{format_loader_table(rows)}\n"
                f"\nbudget: memory ≥ 10×, ffcv ≥ 3× the torchvision DataLoader\n")
        print(text)
        sections.append(text)
    return write_report(args, sections)


def write_report(args, sections: list[str]) -> int:
    if args.what in ("all", "gpu") or args.out:
        out = Path(args.out or f"results/perf/{args.device.split(':')[0]}.md")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("\n".join(sections))
        print(f"wrote {out}")
    return 0
