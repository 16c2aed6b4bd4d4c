"""Grid files: a TOML description of a model × method × dataset × seed × ... experiment (DESIGN.md §7).

Format::

    description = "..."            # optional
    [defaults]                     # config keys shared by every cell (bench.config.DEFAULTS)
    epochs = 4
    [axes]                         # lists whose cross product makes the cells
    method = ["fp", "bc", "bnn++"]
    seed = [0, 1, 2]
    [method."bnn++"]               # per-value overrides: [AXIS."VALUE"], config keys; under [method.X]
    mu_end = 40                    #   a method parameter may be given directly
    [[exclude]]                    # drop cells matching every key (a value or a list of values)
    method = "fp"
    mode = "finetune"

A cell with ``mode = "finetune"`` and ``init = "parent"`` starts from the grid's ``fp`` end-to-end cell
with the same model, dataset, seed and data; that parent runs first (stage 0) and the child depends on it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

import methods

from . import config as configs
from .errors import UserError

GRID_DIR = Path(__file__).resolve().parent / "grids"
TOP_LEVEL = ("description", "defaults", "axes", "exclude", "name", "gpu_hours")
PARENT_KEYS = ("model", "dataset", "seed", "data_options", "model_kwargs")  # same network, data and seed


@dataclass
class Cell:
    run_id: str
    config: dict
    parent: str | None = None  # run id of the fp cell a fine-tune starts from
    stage: int = 0
    label: str = ""


@dataclass
class Grid:
    name: str
    path: Path
    description: str
    cells: list[Cell] = field(default_factory=list)

    def stages(self) -> list[list[Cell]]:
        top = max((c.stage for c in self.cells), default=-1)
        return [[c for c in self.cells if c.stage == s] for s in range(top + 1)]


def grid_path(name: str) -> Path:
    """A grid name (bench/grids/NAME.toml) or a path to a TOML file."""
    path = Path(name)
    if path.suffix == ".toml" or path.exists():
        return path
    path = GRID_DIR / f"{name}.toml"
    if not path.is_file():
        shipped = sorted(p.stem for p in GRID_DIR.glob("*.toml"))
        raise UserError(f"unknown grid {name!r}{methods.base.close_match_hint(name, shipped)} "
                        f"(shipped: {', '.join(shipped)}; or pass a path to a .toml file)")
    return path


def list_grids() -> list[str]:
    return sorted(p.stem for p in GRID_DIR.glob("*.toml"))


def load_grid(name: str) -> Grid:
    path = grid_path(name)
    spec = configs.load_toml(path)
    where = str(path)
    axes = spec.get("axes", {})
    defaults = spec.get("defaults", {})
    for key, value in spec.items():
        if key not in TOP_LEVEL and key not in axes:
            raise UserError(f"{where}: unknown top-level key {key!r} (valid: {', '.join(TOP_LEVEL)}, or an axis name "
                            f"for per-value overrides)")
    if not isinstance(defaults, dict) or not isinstance(axes, dict):
        raise UserError(f"{where}: [defaults] and [axes] must be tables")
    configs.check_keys(defaults, f"{where} [defaults]")
    configs.check_keys(axes, f"{where} [axes]")
    for key, values in axes.items():
        if not isinstance(values, list) or not values:
            raise UserError(f"{where}: [axes] {key} must be a non-empty list")
    excludes = spec.get("exclude", [])
    if not isinstance(excludes, list):
        raise UserError(f"{where}: exclude must be an array of tables ([[exclude]])")
    for rule in excludes:
        configs.check_keys(rule, f"{where} [[exclude]]")

    overrides = {key: spec.get(key, {}) for key in axes}
    for key, table in overrides.items():
        if not isinstance(table, dict):
            raise UserError(f"{where}: [{key}] must be a table of per-value overrides")
        for value in table:
            if value not in [str(v) for v in axes[key]]:
                raise UserError(f"{where}: [{key}.{value!r}] overrides a value that is not on the {key} axis")

    raw_cells = []
    keys = list(axes)
    for combo in itertools.product(*(axes[k] for k in keys)):
        raw = {**defaults, **dict(zip(keys, combo))}
        for key, value in zip(keys, combo):
            raw = _apply_override(raw, overrides[key].get(str(value), {}), key, value, where)
        if any(_matches(raw, rule) for rule in excludes):
            continue
        raw_cells.append(raw)
    if not raw_cells:
        raise UserError(f"{where}: the grid has no cells (every combination is excluded)")

    grid = Grid(name=path.stem, path=path, description=spec.get("description", ""))
    resolved = []
    for raw in raw_cells:
        label = ", ".join(f"{k}={raw[k]}" for k in keys)
        cfg = configs.resolve(raw, f"{where} cell ({label})")
        resolved.append((cfg, label))
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


def _parent_key(cfg: dict) -> str:
    return configs.run_id({k: cfg[k] for k in PARENT_KEYS})


def _apply_override(raw: dict, table: dict, axis: str, value, where: str) -> dict:
    out = dict(raw)
    params = dict(out.get("method_params", {}))
    for key, val in table.items():
        if key in configs.DEFAULTS:
            if key == "method_params":
                params.update(val)
            else:
                out[key] = val
        elif axis == "method" and str(value) in methods.list_methods() and key in methods.get_method_class(
                str(value)).valid_parameters():
            params[key] = val
        else:
            configs.check_keys([key], f"{where} [{axis}.{value!r}]")
    if params:
        out["method_params"] = params
    return out


def _matches(cfg: dict, rule: dict) -> bool:
    for key, wanted in rule.items():
        options = wanted if isinstance(wanted, list) else [wanted]
        if cfg.get(key, configs.DEFAULTS.get(key)) not in options:
            return False
    return True
