"""``python -m bench perf gpu --quick``: the GPU report users need, sized to about 4 minutes on an H200.

Sections: (1) eager and captured (``capture = "compile"``: ``bench.run.step.TrainStep``, CUDA graphs) images/s
of every weight method on ResNet-20 and every W1A1 method on ``resnet20-bireal``, each with its ratio to the
fp step of its network (r = images/s of fp / images/s of the method, so 1.10 is a step 10 % slower); fp on
ResNet-56 and VGG-small; (2) grid throughput when K = 1, 2, 4, 8 cells share the GPU (``cuda.cells_per_gpu``).

The time budget: every (network, method) is one job that builds its eager and captured steps, runs a few
warm-up steps (the captured ones compile there, once per method), then times ``steps`` steps of each. Jobs
run in ``jobs`` processes at once, so that the compilations (CPU-bound) overlap, while the timed windows
take turns under one lock, so that no two timings share the GPU. A method whose captured step fails to
compile gets one line saying so (its row shows the eager figures and "capture failed"), never a silently
eager "captured" figure. ``--device cpu --quick`` runs the same code on a tiny MLP in seconds (the tests).
Only torch, torchvision, timm, numpy, pandas, tabulate and matplotlib are needed (no submitit, no ffcv).
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import time
from concurrent.futures import ProcessPoolExecutor

import torch
from tabulate import tabulate

import methods

from bench.errors import UserError
from bench.perf import cuda
from bench.perf import step as perf_step

WEIGHT_NET = ("resnet20", 128, 32)
W1A1_NET = ("resnet20-bireal", 128, 32)
FP_NETS = (("resnet56", 128, 32), ("vgg-small", 128, 32))
SMOKE_NET = ("fmnist-mlp", 4, 8)
_LOCK = None  # the timing lock of a worker process (``_init``)


def quick_jobs(smoke: bool) -> list[tuple[str, int, int, str]]:
    """(network, batch, px, method) of every job: the full list on a GPU, two tiny ones for the smoke test."""
    if smoke:
        return [(*SMOKE_NET, "fp"), (*SMOKE_NET, "bnn++")]
    jobs = [(*WEIGHT_NET, key) for key in ["fp"] + [k for k in methods.list_methods() if k != "fp"]]
    jobs += [(*W1A1_NET, key) for key in ["fp"] + methods.list_methods(w1a1=True)]
    return jobs + [(*net, "fp") for net in FP_NETS]


def _init(lock, threads: int) -> None:
    global _LOCK
    _LOCK = lock
    os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", str(threads))


def measure(job: tuple[str, int, int, str], device: str, steps: int, warmup: int, backend: str | None) -> dict:
    """One job: warm-up (and compile) eager and captured, then time both under the shared lock."""
    name, batch, size, key = job
    dev = torch.device(device)
    row = {"model": name, "px": size, "batch": batch, "method": key}
    built = {"none": cuda.build_step(key, name, batch, size, dev, "none", backend)}
    t0 = time.perf_counter()
    try:
        built["compile"] = cuda.build_step(key, name, batch, size, dev, "compile", backend)
        _run(*built["compile"], warmup + 2, 0.0)
        row["compile_s"] = time.perf_counter() - t0
    except Exception as exc:  # noqa: BLE001 - reported in the table, the report goes on
        built.pop("compile", None)
        row["capture_error"] = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:120]}"
    _run(*built["none"], warmup, 0.0)
    with _LOCK if _LOCK is not None else contextlib.nullcontext():
        for capture, (step, x, y) in built.items():
            perf_step.sync_device(dev)
            t1 = time.perf_counter()
            _run(step, x, y, steps, 0.5)
            row[capture] = batch * steps / (time.perf_counter() - t1)
    torch._dynamo.reset()
    return row


def _run(step, x, y, n: int, start: float) -> None:
    for i in range(n):
        step(x, y, min(1.0, start + 0.5 * (i + 1) / max(n, 1)))
    perf_step.sync_device(x.device)


def quick_rows(device: str, smoke: bool, steps: int, warmup: int, jobs: int, backend: str | None,
               log=print) -> list[dict]:
    """Every job's row (``measure``), with the ratios to the fp row of the same network."""
    todo = quick_jobs(smoke)
    if jobs <= 1:
        rows = [measure(job, device, steps, warmup, backend) for job in todo]
    else:
        ctx = mp.get_context("spawn")
        threads = max(1, (os.cpu_count() or 2) // jobs)
        with ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_init, initargs=(ctx.Lock(), threads)) as pool:
            n = len(todo)
            rows = list(pool.map(measure, todo, [device] * n, [steps] * n, [warmup] * n, [backend] * n))
    for row in rows:
        fp = next(r for r in rows if r["model"] == row["model"] and r["method"] == "fp")
        row["ratio"] = fp["none"] / row["none"]
        if "compile" in row and "compile" in fp:
            row["ratio_captured"] = fp["compile"] / row["compile"]
        if "capture_error" in row:
            log(f"perf gpu: {row['model']} {row['method']}: capture failed, eager only ({row['capture_error']})")
    return rows


def format_quick_table(rows: list[dict]) -> str:
    def num(row, key, fmt):
        return format(row[key], fmt) if key in row else "-"

    table = [[r["model"], r["method"], num(r, "none", ".0f"), num(r, "ratio", ".3f"),
              num(r, "compile", ".0f") if "capture_error" not in r else "capture failed",
              num(r, "ratio_captured", ".3f"), f"{r['compile'] / r['none']:.2f}" if "compile" in r else "-",
              num(r, "compile_s", ".0f")] for r in rows]
    return tabulate(table, headers=["model", "method", "eager img/s", "eager step / fp", "captured img/s",
                                         "captured step / fp", "captured / eager", "warm-up+compile (s)"],
                         tablefmt="github")


def quick_report(args) -> int:
    """``perf gpu --quick``: the two sections of the module docstring -> ``results/perf/<device>-quick.md``."""
    smoke = args.device.startswith("cpu")
    if not smoke and not torch.cuda.is_available():
        raise UserError("perf gpu needs a CUDA device (or --device cpu --quick for the CPU smoke run)")
    t0 = time.perf_counter()
    steps = args.repeats or (2 if smoke else 30)
    backend = "aot_eager" if smoke else None
    jobs = 1 if smoke else getattr(args, "jobs", None) or min(8, max(1, (os.cpu_count() or 2) // 2))
    sections = [f"# proxbench perf gpu --quick\n\n{perf_step.machine_line(args.device)}\n"]
    rows = quick_rows(args.device, smoke, steps, 1 if smoke else 3, jobs, backend)
    sections.append(f"## Images/s, eager and captured, batch {rows[0]['batch']}; step / fp = fp's images/s over "
                    f"the method's (same network)\n\n{format_quick_table(rows)}\n")
    print(sections[-1], flush=True)
    net, batch, size = SMOKE_NET if smoke else WEIGHT_NET
    counts = (1, 2) if smoke else cuda.CELL_COUNTS
    cells = [cuda.cells_per_gpu(k, args.device, model_name=net, batch=batch, size=size, steps=2 if smoke else 20)
             for k in counts]
    sections.append(f"## Grid throughput: K {net} bnn++ cells sharing the device (eager)\n\n"
                    f"{cuda.format_cells_table(cells)}\n")
    sections.append(f"total {time.perf_counter() - t0:.0f} s")
    print("\n".join(sections[-2:]), flush=True)
    if args.out is None:
        args.out = f"results/perf/{args.device.split(':')[0]}-quick.md"
    return perf_step.write_report(args, sections)


def cli_perf(args) -> int:
    """``python -m bench perf step|loaders|all|gpu|infer`` (``gpu --quick``: this module's report)."""
    if args.what == "infer":
        from bench.perf.infer import cli_perf_infer

        return cli_perf_infer(args)
    if args.what == "gpu":
        args.device = args.device or "cuda"
        return quick_report(args) if args.quick else cuda.gpu_report(args)
    args.device = args.device or "cpu"
    return perf_step.cli_perf(args)
