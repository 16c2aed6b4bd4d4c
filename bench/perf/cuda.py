"""``python -m bench perf gpu``: the CUDA report, ``results/perf/cuda.md`` (about 5 minutes on an H100).

Sections: the step ratios of ``perf step`` (bf16 autocast, channels-last), the GPU loaders, two end-to-end
ResNet-20 epochs, then the training throughput of the paper's CNNs, eager and captured (``capture =
"compile"``: ``bench.run.step.TrainStep``, CUDA graphs), with each method's ratio to fp, and the grid
throughput when K cells share one GPU (``cells_per_gpu``: K processes each training ResNet-20 on synthetic
CIFAR-shaped batches at once; total images/s and cell-epochs per GPU-hour). Captured timings exclude the
compilation (the first steps); the compile seconds are reported. Every built-in method is timed eagerly;
the captured column covers ``CAPTURED_METHODS`` (compiling all of them for every model would not fit in five
minutes), the other rows show "-".
"""

from __future__ import annotations

import multiprocessing as mp
import time

import torch
from tabulate import tabulate
from torch import nn

import methods
import models

from bench.errors import UserError
from bench.perf import step as perf_step
from bench.run.step import TrainStep, tensor_lr

PAPER_CNNS = (("resnet20", 128, 32), ("resnet56", 128, 32), ("vgg-small", 128, 32), ("resnet18", 256, 224))
CAPTURED_METHODS = ("fp", "rpc", "bnn++")  # the captured column: no quantizer, an lr hook, F and B' on μ
CELL_COUNTS = (1, 2, 4, 8)
CIFAR_EPOCH = 50_000 + 2 * 10_000  # training images + the two evaluations, in training-image equivalents


def build_step(method: str, model_name: str, batch: int, size: int, device: torch.device, capture: str,
               backend: str | None = None):
    """A ``TrainStep`` (SGD, momentum 0.9, constant lr) on one fixed random batch: (step, x, y)."""
    torch.manual_seed(0)
    in_chans, classes = (1, 10) if model_name.startswith("fmnist") else (3, 1000 if size >= 224 else 10)
    model = models.create_model(model_name, num_classes=classes, in_chans=in_chans, img_size=size)
    model = methods.binarize(model, method).to(device)
    x = torch.randn(batch, in_chans, size, size, device=device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    if capture != "none":
        tensor_lr(opt, device)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    step = TrainStep(model, opt, sched, nn.CrossEntropyLoss(), device, capture, backend)
    return step, x, torch.randint(0, classes, (batch,), device=device)


def images_per_second(step, x, y, steps: int, warmup: int) -> tuple[float, float]:
    """(images/s over ``steps`` steps, seconds of the ``warmup`` steps, compilation included)."""
    t0 = time.perf_counter()
    for i in range(warmup):
        step(x, y, 0.5)
    perf_step.sync_device(x.device)
    t1 = time.perf_counter()
    for i in range(steps):
        step(x, y, 0.5 + 0.5 * i / steps)
    perf_step.sync_device(x.device)
    return x.shape[0] * steps / (time.perf_counter() - t1), t1 - t0


def capture_rows(device: str = "cuda", models_=PAPER_CNNS, method_keys=None, captured=CAPTURED_METHODS,
                 steps: int = 30, warmup: int = 3, backend: str | None = None, log=print) -> list[dict]:
    """Images/s of every method on every model, eager and (for ``captured``) captured, with ratios to fp."""
    dev = torch.device(device)
    keys = ["fp"] + [k for k in (method_keys or methods.list_methods()) if k != "fp"]
    rows = []
    for name, batch, size in models_:
        for key in keys:
            row = {"model": name, "px": size, "batch": batch, "method": key}
            for capture in ("none", "compile") if key in captured else ("none",):
                built = build_step(key, name, batch, size, dev, capture, backend)
                rate, warm_s = images_per_second(*built, steps, warmup + (2 if capture != "none" else 0))
                row[capture] = rate
                if capture != "none":
                    row["compile_s"] = warm_s
                del built
                torch._dynamo.reset()
            log(f"  {name} {key}: eager {row['none']:.0f} img/s" +
                (f", captured {row['compile']:.0f} img/s" if "compile" in row else ""))
            rows.append(row)
    for row in rows:
        fp = next(r for r in rows if r["model"] == row["model"] and r["method"] == "fp")
        row["ratio"] = row["none"] / fp["none"]
        if "compile" in row and "compile" in fp:
            row["ratio_captured"] = row["compile"] / fp["compile"]
    return rows


def format_capture_table(rows: list[dict]) -> str:
    def num(row, key, fmt):
        return format(row[key], fmt) if key in row else "-"

    return tabulate([[r["model"], r["px"], r["batch"], r["method"], num(r, "none", ".0f"), num(r, "ratio", ".3f"),
                      num(r, "compile", ".0f"), num(r, "ratio_captured", ".3f"),
                      f"{r['compile'] / r['none']:.2f}" if "compile" in r else "-", num(r, "compile_s", ".0f")]
                     for r in rows],
                    headers=["model", "px", "batch", "method", "eager img/s", "eager / fp", "captured img/s",
                             "captured / fp", "speed-up", "compile (s)"], tablefmt="github")


def cell_worker(device: str, model_name: str, method: str, batch: int, size: int, steps: int, capture: str,
                start, queue) -> None:
    """One cell of ``cells_per_gpu``: build, warm up, wait for the others, time ``steps`` steps, report."""
    torch.set_num_threads(1)
    step, x, y = build_step(method, model_name, batch, size, torch.device(device), capture)
    images_per_second(step, x, y, 1, 2)
    start.wait()
    t0 = time.perf_counter()
    for i in range(steps):
        step(x, y, 0.5)
    perf_step.sync_device(x.device)
    queue.put((t0, time.perf_counter(), batch * steps))


def cells_per_gpu(k: int, device: str = "cuda", model_name: str = "resnet20", method: str = "bnn++",
                  batch: int = 128, size: int = 32, steps: int = 50, capture: str = "none") -> dict:
    """K processes training at once on one device: total images/s from the first start to the last end."""
    ctx = mp.get_context("spawn")
    start, queue = ctx.Barrier(k), ctx.Queue()
    procs = [ctx.Process(target=cell_worker, args=(device, model_name, method, batch, size, steps, capture,
                                                   start, queue)) for _ in range(k)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=900) for _ in procs]
    for p in procs:
        p.join()
        if p.exitcode != 0:
            raise RuntimeError(f"a cell process ended with status {p.exitcode}")
    seconds = max(r[1] for r in results) - min(r[0] for r in results)
    rate = sum(r[2] for r in results) / seconds
    return {"cells": k, "images_per_s": rate, "cell_epochs_per_gpu_hour": rate * 3600 / CIFAR_EPOCH}


def format_cells_table(rows: list[dict]) -> str:
    base = rows[0]["images_per_s"]
    return tabulate([[r["cells"], f"{r['images_per_s']:.0f}", f"{r['cell_epochs_per_gpu_hour']:.0f}",
                      f"{r['images_per_s'] / base:.2f}"] for r in rows],
                    headers=["cells on the GPU", "total img/s", "cell-epochs / GPU-hour", "vs 1 cell"],
                    tablefmt="github")


def gpu_report(args) -> int:
    """The whole CUDA report (module docstring) -> ``results/perf/cuda.md`` (or ``--out``)."""
    if not torch.cuda.is_available():
        raise UserError("perf gpu needs a CUDA device")
    args.device = "cuda"
    sections = [f"# proxbench perf (CUDA)\n\n{perf_step.machine_line('cuda')}\n"]

    def add(text: str) -> None:
        print(text, flush=True)
        sections.append(text)

    rows = perf_step.measure_steps(args.model, args.batch, "cuda", args.repeats)
    add(f"## Training step: {args.model}, batch {args.batch}, cuda, bf16 autocast, channels-last\n\n"
        f"{perf_step.format_step_table(rows, False)}\n")
    from bench.perf.loaders import format_loader_table, run_loader_benchmark

    rows = run_loader_benchmark(dataset="synthetic", options=perf_step.SYNTHETIC_CIFAR, device="cuda", seconds=3.0)
    add(f"## Loaders: synthetic CIFAR-shaped (50k × 3×32×32), crop+flip, to cuda\n\n{format_loader_table(rows)}\n")
    add(f"## One end-to-end epoch, ResNet-20, synthetic CIFAR-shaped data\n\n"
        f"{perf_step.format_e2e_table(perf_step.end_to_end_epochs('cuda'))}\n")
    add(f"## Training throughput of the paper's CNNs, eager and captured (capture = \"compile\", CUDA graphs)\n\n"
        f"{format_capture_table(capture_rows('cuda'))}\n")
    cells = [cells_per_gpu(k, "cuda") for k in CELL_COUNTS]
    add(f"## Grid throughput: K ResNet-20 bnn++ cells sharing one GPU (batch 128, eager)\n\n"
        f"{format_cells_table(cells)}\n\none cell-epoch = {CIFAR_EPOCH} training-image equivalents\n")
    return perf_step.write_report(args, sections)
