"""The pre-flight of ``grid run``: before anything is submitted (and in ``--dry-run``), check what the cells to
run need (their datasets' files, the pretrained weights of ``init = "timm"`` cells, the device) and state the
grid's cell count and GPU-hour estimate. Every problem is one line; ``raise_preflight`` reports them all as one
UserError.
"""

from __future__ import annotations

import sys
from collections import Counter

from bench.errors import UserError
from bench.dispatch.grid import Cell, Grid
from bench.dispatch.executors import create_executor


def preflight(grid: Grid, todo: list[Cell], *, executor: str = "local", device: str | None = None,
              profile: dict | None = None, data_root: str | None = None, parallel: int | None = None,
              cells_per_gpu: int | None = None, n_gpus: int | None = None, out=print,
              results: str | None = None) -> list[str]:
    """Check what the cells to run (``todo``) need before anything is submitted; returns the problems, one
    line each (empty: all is there). ``out`` gets what was checked:

    * the grid's cells, the cells to run, and the grid file's ``gpu_hours`` estimate (pro rata for the cells
      to run when some are finished); without ``gpu_hours``, an estimate from the wall times of the grid's
      records under ``results`` (``wall_hours_note``), when there are any;
    * data: per distinct (dataset, loader) of the cells to run, the train and test files, looked up as a job
      does (``bench.data.source_files``, whose error says where the files belong and how to get them;
      CIFAR is downloaded there unless ``PROXBENCH_NO_DOWNLOAD`` is set); loader ``ffcv`` also needs FFCV;
    * pretrained weights: per model of the ``init = "timm"`` cells, the weights in the local cache;
    * binary inputs: per distinct network of the cells whose method binarizes activations, that no binarized
      layer's input is a constant (``bench.run.model.constant_binary_inputs``: a ReLU in front of a sign);
    * device: the executor's ``check_device``: local and debug: the CUDA device(s) of ``--device`` are here
      (``n_gpus`` assumes that many instead of counting); slurm: ``--device``, if given, agrees with the
      profile's ``gpus_per_node``.

    Nothing to run: nothing is checked.
    """
    out(f"pre-flight: grid {grid.name}: {len(grid.cells)} cells, {len(todo)} to run; "
        f"{gpu_hours_note(grid, len(todo), results)}")
    if not todo:
        return []
    problems: list[str] = []
    found: list[str] = []
    for (dataset, loader), count in sorted(Counter((c.config["dataset"], c.config["loader"]) for c in todo).items()):
        problem = _data_problem(dataset, loader, data_root)
        if problem:
            problems.append(f"data for {count} cell(s) ({dataset}, loader {loader}): {problem}")
        else:
            found.append(f"{dataset} ({loader})")
    weights: list[str] = []
    for model, count in sorted(Counter(c.config["model"] for c in todo if c.config["init"] == "timm").items()):
        problem = _weights_problem(model)
        if problem:
            problems.append(f"pretrained weights for {count} cell(s) (model {model}, init = \"timm\"): {problem}")
        else:
            weights.append(model)
    for problem in _binary_input_problems(todo):
        problems.append(problem)
    problem, where = create_executor(executor, device=device, profile=profile, parallel=parallel,
                                     cells_per_gpu=cells_per_gpu, n_gpus=n_gpus).check_device()
    if problem:
        problems.append(problem)
    if not problems:
        out(f"pre-flight: ok: data {', '.join(found)}; pretrained weights "
            f"{', '.join(weights) + ' cached' if weights else 'not needed'}; device {where}")
    return problems


def raise_preflight(problems: list[str]) -> None:
    """Nothing on no problems. One problem: a UserError ``pre-flight: PROBLEM; nothing submitted``. More:
    each as a line ``error: pre-flight: PROBLEM`` on stderr, then a UserError counting them."""
    if not problems:
        return
    if len(problems) == 1:
        raise UserError(f"pre-flight: {problems[0]}; nothing submitted")
    for problem in problems:
        print(f"error: pre-flight: {problem}", file=sys.stderr, flush=True)
    raise UserError(f"pre-flight: {len(problems)} problems (listed above); nothing submitted")


def gpu_hours_note(grid: Grid, n_to_run: int, results: str | None = None) -> str:
    """The grid file's ``gpu_hours`` (top-level key) as a sentence, pro rata for ``n_to_run`` of its cells;
    without it, the estimate of ``wall_hours_note`` from the grid's records under ``results``."""
    hours = grid.gpu_hours
    if hours is None:
        measured = wall_hours_note(grid, n_to_run, results) if results is not None else None
        if measured:
            return measured
        return f"no GPU-hour estimate (no gpu_hours in {grid.path}" + (", no records with wall times)" if results
                                                                       is not None else ")")
    text = f"about {_hours(hours)} GPU-hours for the whole grid (gpu_hours in {grid.path})"
    if hours and 0 < n_to_run < len(grid.cells):
        text += f", about {_hours(hours * n_to_run / len(grid.cells))} for the {n_to_run} cells to run (pro rata)"
    return text


def wall_hours_note(grid: Grid, n_to_run: int, results: str) -> str | None:
    """An estimate from the wall times (``wall_seconds``) of the grid's finished records under ``results``
    (else under ``results/``, the repository's records, when ``results`` has none of the grid):
    their mean per cell times the cells, in GPU-hours when the records ran on CUDA, else CPU-hours (wall
    time of one cell on the CPU threads the records name). None when no record has a wall time."""
    from bench.run.records import load_records

    found: list[dict] = []
    for root in dict.fromkeys([str(results), "results"]):  # else the repository's records of the grid
        found = [r for r in load_records(root, grid.name) if r["status"] == "done"
                 and isinstance(r.get("wall_seconds"), (int, float)) and r["wall_seconds"] > 0]
        if found:
            results = root
            break
    if not found:
        return None
    mean = sum(r["wall_seconds"] for r in found) / len(found)
    devices = sorted({str(r.get("device", "?")) for r in found})
    unit = "GPU-hours" if all(d.startswith("cuda") for d in devices) else "CPU-hours"
    text = (f"about {_hours(mean * len(grid.cells) / 3600)} {unit} for the whole grid, measured: {len(found)} "
            f"record(s) in {results}/runs/{grid.name}/ took {mean / 60:.1f} min a cell on average "
            f"({', '.join(devices)})")
    if 0 < n_to_run < len(grid.cells):
        text += f"; about {_hours(mean * n_to_run / 3600)} for the {n_to_run} cells to run"
    return text


def _hours(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 else f"{value:.1f}" if value >= 0.1 else f"{value:.2f}"


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _data_problem(dataset: str, loader: str, data_root: str | None) -> str | None:
    """Why the files of ``dataset`` (train and test split) cannot be read with ``loader`` (None: they can)."""
    from bench import data

    try:
        data.get_loader_class(loader).check_available()
        for split in ("train", "test"):
            data.source_files(dataset, split, data_root)
    except (UserError, OSError) as exc:
        return _one_line(exc)
    return None


def _weights_problem(model: str) -> str | None:
    """Why ``model``'s pretrained weights cannot be loaded from the local cache (None: they can). timm's
    ViT/DeiT: the cached file is looked up; any other model is built with ``pretrained=True``."""
    import models
    from models import vit

    try:
        if model in vit.TIMM_VITS:
            vit.cached_timm_weights(model)
        else:
            models.create_model(model, pretrained=True)
    except Exception as exc:  # noqa: BLE001 - a corrupt cached file is a problem to list too
        return _one_line(exc) if isinstance(exc, (UserError, models.ModelError)) else \
            f"{type(exc).__name__}: {_one_line(exc)}"
    return None


def _binary_input_problems(todo: list[Cell]) -> list[str]:
    """One line per distinct network (model, its kwargs, dataset, method, policy) of the W1A1 cells in ``todo``
    that feeds a binarized layer a constant input (built without its init weights: a ReLU stays a ReLU)."""
    import methods
    from bench.run.model import build_model

    networks: dict[str, list] = {}  # network -> [the config of its first cell, its cells]
    for cell in todo:
        cfg = cell.config
        if methods.get_method_class(cfg["method"]).activation is None:
            continue
        key = repr([cfg[k] for k in ("model", "model_kwargs", "dataset", "data_options", "method", "method_params",
                                     "policy")])
        networks.setdefault(key, [cfg, 0])[1] += 1
    problems = []
    for cfg, count in networks.values():
        try:
            build_model(cfg, load_init=False)
        except (UserError, ValueError) as exc:  # ValueError: models.ModelError, methods.MethodError
            problems.append(f"{count} cell(s): {_one_line(exc)}")
    return problems
