"""A grid's cells: a grid file (``bench.dispatch.grid_spec``) expanded into ``Cell``s, one per combination of
its axis values (per-value overrides applied, ``[[exclude]]``d combinations dropped, two combinations that
resolve to the same run kept once), each config resolved by ``bench.run.config.resolve``.

A cell with ``mode = "finetune"`` and ``init = "parent"`` starts from the grid's ``fp`` end-to-end cell
with the same model, dataset, seed and data (``PARENT_KEYS``; model keywords the model registers as
``same_weights_kwargs``, e.g. an activation, may differ); that parent runs first (stage 0) and the child
depends on it (stage 1, its ``init`` becomes ``run:<parent run id>``).

A grid is named by its file (``bench/grids/NAME.toml``, ``list_grids``) or given as a path to a TOML file.
"""

from __future__ import annotations

import itertools
from pathlib import Path

from bench.registry import close_match_hint

from bench.run import config as configs
from bench.errors import UserError
from bench.dispatch.cells import Cell, Grid
from bench.dispatch.grid_spec import GridSpec, read_grid_file

GRID_DIR = Path(__file__).resolve().parents[1] / "grids"
PARENT_KEYS = ("model", "dataset", "seed", "data_options", "model_kwargs")  # same network, data and seed


def grid_path(name: str) -> Path:
    """A grid name (bench/grids/NAME.toml) or a path to a TOML file."""
    path = Path(name)
    if path.suffix == ".toml" or path.exists():
        return path
    path = GRID_DIR / f"{name}.toml"
    if not path.is_file():
        shipped = list_grids()
        raise UserError(f"unknown grid {name!r}{close_match_hint(name, shipped)} "
                        f"(shipped: {', '.join(shipped)}; or pass a path to a .toml file)")
    return path


def list_grids() -> list[str]:
    return sorted(p.stem for p in GRID_DIR.glob("*.toml"))


def load_grid(name: str) -> Grid:
    """Read, check and expand a grid (a name or a path; see the module doc)."""
    return expand_grid(read_grid_file(grid_path(name)))


def expand_grid(spec: GridSpec) -> Grid:
    """The ``Grid`` of a checked grid file: its cells resolved, fine-tunes linked to their fp parents."""
    where = str(spec.path)
    keys = list(spec.choices)
    grid = Grid(name=spec.name, path=spec.path, description=spec.description, gpu_hours=spec.gpu_hours)
    resolved = []
    for raw in _expand(keys, spec.choices, spec.defaults, spec.excludes):
        label = ", ".join(f"{k}={raw[k]}" for k in keys)
        resolved.append((configs.resolve(raw, f"{where} cell ({label})"), label))
    if not resolved:
        raise UserError(f"{where}: the grid has no cells (every combination is excluded)")
    by_parent_key = {}
    for cfg, _ in resolved:
        if cfg["method"] == "fp" and cfg["mode"] == "e2e":
            by_parent_key[_parent_key(cfg)] = cfg
    seen = set()
    for cfg, label in resolved:
        parent = None
        if cfg["mode"] == "finetune" and cfg["init"] == "parent":
            parent_cfg = by_parent_key.get(_parent_key(cfg))
            if parent_cfg is None:
                raise UserError(f"{where}: cell ({label}) fine-tunes from its parent, but the grid has no fp e2e "
                                f"cell with the same {', '.join(PARENT_KEYS)}")
            parent = configs.run_id(parent_cfg)
            cfg = {**cfg, "init": f"run:{parent}"}
        rid = configs.run_id(cfg)
        if rid in seen:
            continue  # two axis values that resolve to the same run
        seen.add(rid)
        grid.cells.append(Cell(rid, cfg, parent, 1 if parent else 0, label))
    return grid


def _expand(keys: list[str], choices: dict, defaults: dict, excludes: list[dict]):
    """The raw config of each cell, one at a time, in axis order (overrides applied, excluded cells skipped)."""
    for combo in itertools.product(*(choices[k] for k in keys)):
        raw = {**defaults, **{k: value for k, (value, _, _) in zip(keys, combo)}}
        for _, config, params in combo:
            raw.update(config)
            if params:
                raw["method_params"] = {**raw.get("method_params", {}), **params}
        if not any(_matches(raw, rule) for rule in excludes):
            yield raw


def _parent_key(cfg: dict) -> str:
    """The ``PARENT_KEYS`` of a cell, less the model's ``same_weights_kwargs`` (an activation: the fp parent
    may train with ReLU and its fine-tunes with Hardtanh, as in BiBench; the weights load the same)."""
    import models

    key = {k: cfg[k] for k in PARENT_KEYS}
    same = models.model_info(cfg["model"]).same_weights_kwargs
    key["model_kwargs"] = {k: v for k, v in cfg["model_kwargs"].items() if k not in same}
    return configs.run_id(key)


def _matches(cfg: dict, rule: dict) -> bool:
    for key, wanted in rule.items():
        options = wanted if isinstance(wanted, list) else [wanted]
        if cfg.get(key, configs.DEFAULTS.get(key)) not in options:
            return False
    return True
