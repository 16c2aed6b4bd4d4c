"""``python -m bench perf loaders``: loader throughput as ratios to the torchvision DataLoader.

Every loader serves the same training split with the same augmentation (random crop with padding +
horizontal flip + normalisation) at the same batch size, in one process. Each loader is built once; its
warm-up is untimed: for FFCV the first epoch, where numba compiles the pipeline, reported as
``first_epoch_s`` and ``compile_s`` (first epoch minus a warm epoch of the same length) and never folded
into the rate; for the others a few batches. Then the loaders take turns (``rounds`` times) iterating for ``seconds`` each; the best
round counts, which makes the ratios robust to other work on the machine.

Budgets: ``memory`` >= 10x ``torch`` (2 workers), ``ffcv`` >= 3x.
"""

from __future__ import annotations

import itertools
import time
from typing import Iterable

import torch

from bench.errors import UserError

FLOORS = {"memory": 10.0, "ffcv": 3.0}  # minimum images/s ratio to the torch DataLoader


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(loader, device: torch.device, seconds: float) -> tuple[int, float]:
    """Images served and wall seconds: iterate (starting new epochs as needed) until ``seconds`` pass."""
    images = 0
    t0 = time.perf_counter()
    while True:
        for x, _ in loader:
            images += x.shape[0]
            if time.perf_counter() - t0 >= seconds:
                break
        if time.perf_counter() - t0 >= seconds:
            break
    _sync(device)
    return images, time.perf_counter() - t0


def _epoch(loader, device) -> tuple[int, float]:
    t0 = time.perf_counter()
    n = 0
    for x, _ in loader:
        n += x.shape[0]
    _sync(device)
    return n, time.perf_counter() - t0


def run_loader_benchmark(dataset: str = "fashion-mnist", data_root=None, batch_size: int = 256,
                         seconds: float = 4.0, device: str = "cpu", *, loaders: Iterable[str] = ("torch", "memory", "ffcv"),
                         num_workers: int = 2, rounds: int = 2, options: dict | None = None,
                         subset: int | None = None, seed: int = 0) -> list[dict]:
    """Images/s of each loader on ``dataset``'s training split; one dict per loader (see module doc).

    Row keys: loader, images_per_s, ratio_to_torch, floor, meets_floor, compile_s, first_epoch_s (ffcv),
    images, seconds, dataset, batch_size, num_workers, device; ``error`` instead when a loader cannot
    run (e.g. FFCV missing)."""
    from bench.data import build_loader

    if seconds <= 0 or rounds <= 0:
        raise UserError("perf loaders: seconds and rounds must be positive")
    dev = torch.device(device)
    built: dict[str, object] = {}
    rows: dict[str, dict] = {}
    for kind in loaders:
        row = {"loader": kind, "dataset": dataset, "batch_size": batch_size, "device": str(dev),
               "num_workers": num_workers if kind != "memory" else 0}
        rows[kind] = row
        try:
            loader = build_loader(dataset, "train", loader=kind, batch_size=batch_size, train=True, device=dev,
                                  seed=seed, data_root=data_root, subset=subset, num_workers=num_workers,
                                  options=options)
        except UserError as exc:
            row["error"] = str(exc)
            continue
        if loader.compiles_first_epoch:  # ffcv: numba compiles the pipeline during the first epoch
            n_first, t_first = _epoch(loader, dev)
            n_warm, t_warm = _epoch(loader, dev)
            row["first_epoch_s"] = round(t_first, 3)
            row["compile_s"] = round(max(0.0, t_first - t_warm * n_first / max(n_warm, 1)), 3)
        else:  # nothing to compile: a few batches fault the data in
            for _ in itertools.islice(loader, 5):
                pass
            row["compile_s"] = 0.0
        built[kind] = loader
    best: dict[str, tuple[int, float]] = {}
    for _ in range(rounds):
        for kind, loader in built.items():
            n, t = _timed(loader, dev, seconds)
            if kind not in best or n / t > best[kind][0] / best[kind][1]:
                best[kind] = (n, t)
    for kind, (n, t) in best.items():
        rows[kind].update(images=n, seconds=round(t, 3), images_per_s=n / t)
    base = rows.get("torch", {}).get("images_per_s")
    for row in rows.values():
        if "images_per_s" in row and base:
            row["ratio_to_torch"] = row["images_per_s"] / base
            floor = FLOORS.get(row["loader"])
            row["floor"] = floor
            row["meets_floor"] = None if floor is None else row["ratio_to_torch"] >= floor
    return list(rows.values())


def format_loader_table(rows: list[dict]) -> str:
    """The rows as a table: loader, images/s, ratio to torch (with the budget), one-time compile seconds."""
    from tabulate import tabulate

    table = []
    for r in rows:
        if "error" in r:
            table.append([r["loader"], "-", "-", "-", r["error"]])
            continue
        ratio = r.get("ratio_to_torch")
        floor = r.get("floor")
        verdict = "" if floor is None else (f">= {floor:g}x ok" if r.get("meets_floor") else f"< {floor:g}x BELOW BUDGET")
        table.append([r["loader"], f"{r['images_per_s']:,.0f}", "-" if ratio is None else f"{ratio:.1f}x",
                      f"{r.get('compile_s', 0.0):.1f}", verdict])
    head = rows[0] if rows else {}
    title = (f"loader throughput: {head.get('dataset')} train, batch {head.get('batch_size')}, crop+flip+normalise, "
             f"device {head.get('device')}, torch DataLoader with {head.get('num_workers')} workers")
    return title + "\n" + tabulate(table, headers=["loader", "images/s", "vs torch", "compile s", "budget"],
                                   colalign=("left", "right", "right", "right", "left"))
