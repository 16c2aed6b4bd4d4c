"""Grid files: a TOML description of a model × method × dataset × seed × ... experiment.

Format::

    description = "..."            # optional
    max_cells = 20000              # optional: the most cells this grid may have (default below)
    leaderboard_by = "dataset,model,mode,scale:method"  # optional: the leaderboard's rows:column (aggregate --by)
    [defaults]                     # config keys shared by every cell (bench.run.config.DEFAULTS)
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

Size limit: the number of cells is at most the product of the axis lengths (excludes only remove cells),
and that product is checked before anything is expanded. Past the limit the grid is refused with a one-line
error giving the count. The limit is the grid's own ``max_cells`` (an integer > 0) if it sets one, else the
environment variable ``PROXBENCH_MAX_CELLS``, else 10,000 (``MAX_CELLS``). Below it, the cells are expanded
lazily (one combination at a time) and resolved one by one.

The grid's name is its file name without ``.toml``; it names the folders ``results/runs/<name>`` and
``work/grids/<name>``, so it must be non-empty, must not start with ``.``, and may use only the characters
``A-Za-z0-9._+-``.

Values are checked for their shape before any cell is resolved: a method, model or dataset is a string, a
seed an integer, ``data_options`` a table, a method parameter a number (or a string where the method takes
one: ``scale``, ``schedule``, ``lq``), and so on; ``bench.run.config.resolve`` then checks each cell's values.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import methods

from bench.run import config as configs
from bench.errors import UserError
from bench.run.layout import check_name

GRID_DIR = Path(__file__).resolve().parents[1] / "grids"
TOP_LEVEL = ("description", "defaults", "axes", "exclude", "name", "gpu_hours", "max_cells", "leaderboard_by")
PARENT_KEYS = ("model", "dataset", "seed", "data_options", "model_kwargs")  # same network, data and seed
MAX_CELLS = 10_000  # default size limit (grid key max_cells, then $PROXBENCH_MAX_CELLS, override it)
MAX_CELLS_ENV = "PROXBENCH_MAX_CELLS"
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


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
    gpu_hours: float | None = None  # the grid file's estimate for the whole grid (None: none given)
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
    where = str(path)
    spec = configs.load_toml(path)  # an unreadable file is load_toml's one-line UserError
    check_name(path.stem, where, "(the file name without .toml; rename the file)")
    axes = spec.get("axes", {})
    defaults = spec.get("defaults", {})
    if not isinstance(axes, dict):
        raise UserError(f"{where}: [axes] must be a table, got {_show(axes)}")
    if not isinstance(defaults, dict):
        raise UserError(f"{where}: [defaults] must be a table, got {_show(defaults)}")
    for key in spec:
        if key not in TOP_LEVEL and key not in axes:
            raise UserError(f"{where}: unknown top-level key {key!r} (valid: {', '.join(TOP_LEVEL)}, or an axis name "
                            f"for per-value overrides)")
    _check_top_level(spec, where)
    configs.check_keys(defaults, f"{where} [defaults]")
    configs.check_keys(axes, f"{where} [axes]")
    for key, values in axes.items():
        if not isinstance(values, list) or not values:
            raise UserError(f"{where}: [axes] {key} must be a non-empty list")
    excludes = spec.get("exclude", [])
    if not isinstance(excludes, list) or not all(isinstance(rule, dict) for rule in excludes):
        raise UserError(f"{where}: exclude must be an array of tables ([[exclude]]), got {_show(excludes)}")
    _check_size(spec, axes, bool(excludes), where)

    # shapes of every value, before any cell is made
    all_methods = _method_classes([*axes.get("method", []), defaults.get("method", configs.DEFAULTS["method"])])
    for key, value in defaults.items():
        _check_value(key, value, f"{where} [defaults]", all_methods)
    for key, values in axes.items():
        for value in values:
            _check_value(key, value, f"{where} [axes]", all_methods, plural=True)
    for rule in excludes:
        configs.check_keys(rule, f"{where} [[exclude]]")
        for key, wanted in rule.items():
            if _KINDS.get(key) is not NUMBERS:  # an array there is a list of step_milestones options
                for option in wanted if isinstance(wanted, list) else [wanted]:
                    _check_value(key, option, f"{where} [[exclude]]", all_methods, plural=True)

    # per-value overrides: {axis: [(value, config updates, method parameter updates), ...]}
    choices = {}
    for key, values in axes.items():
        table = spec.get(key, {})
        if not isinstance(table, dict):
            raise UserError(f"{where}: [{key}] must be a table of per-value overrides, got {_show(table)}")
        texts = [_key_text(v) for v in values]
        for text, overrides in table.items():
            if text not in texts:
                raise UserError(f"{where}: {_table_name(key, text)} overrides a value that is not on the {key} axis"
                                f"{methods.base.close_match_hint(text, texts)}")
            if not isinstance(overrides, dict):
                raise UserError(f"{where} [{key}]: {json.dumps(text, ensure_ascii=False)} must be a table of "
                                f"overrides ({_table_name(key, text)}), got {_show(overrides)}")
        split = {text: _split_override(table[text], key, text, where, all_methods) for text in table}
        choices[key] = [(v, *split.get(t, ({}, {}))) for v, t in zip(values, texts)]

    keys = list(axes)
    grid = Grid(name=path.stem, path=path, description=spec.get("description", ""), gpu_hours=spec.get("gpu_hours"))
    resolved = []
    for raw in _expand(keys, choices, defaults, excludes):
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
    return configs.run_id({k: cfg[k] for k in PARENT_KEYS})


def _split_override(table: dict, axis: str, text: str, where: str, all_methods: list) -> tuple[dict, dict]:
    """A per-value override table as (config keys, method parameters), each value's shape checked."""
    where = f"{where} {_table_name(axis, text)}"
    cls = None
    if axis == "method":
        try:
            cls = methods.get_method_class(text)
        except methods.MethodError as exc:  # unknown method: say so, not that its parameters are unknown keys
            raise UserError(f"{where}: {exc}") from None
    classes = [cls] if cls else all_methods
    config, params = {}, {}
    for key, value in table.items():
        if key in configs.DEFAULTS:
            _check_value(key, value, where, classes)
            if key == "method_params":
                params.update(value)
            else:
                config[key] = value
        elif cls is not None and key in cls.valid_parameters():
            _check_param(key, value, where, classes)
            params[key] = value
        else:
            configs.check_keys([key], where)
    return config, params


def _matches(cfg: dict, rule: dict) -> bool:
    for key, wanted in rule.items():
        options = wanted if isinstance(wanted, list) else [wanted]
        if cfg.get(key, configs.DEFAULTS.get(key)) not in options:
            return False
    return True


# -- size limit -----------------------------------------------------------------------------------------------
def _check_size(spec: dict, axes: dict, has_excludes: bool, where: str) -> None:
    """Refuse a grid whose axis-length product is over the limit, before expanding anything."""
    count = math.prod(len(values) for values in axes.values())
    limit, source = _max_cells(spec, where)
    if count <= limit:
        return
    lengths = " × ".join(f"{key} {len(values)}" for key, values in axes.items())
    how = ("raise max_cells in the grid file" if source == "max_cells in the grid file" else
           f"raise it with max_cells = N in the grid file or {MAX_CELLS_ENV}")
    raise UserError(f"grid {where} has {'up to ' if has_excludes else ''}{count:,} cells (axes: {lengths}"
                    f"{', before excludes' if has_excludes else ''}), over the limit of {limit:,} ({source}); {how}")


def _max_cells(spec: dict, where: str) -> tuple[int, str]:
    """(limit, where it comes from): the grid's max_cells, else $PROXBENCH_MAX_CELLS, else MAX_CELLS."""
    if "max_cells" in spec:
        value = spec["max_cells"]
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise UserError(f"{where}: max_cells must be a positive integer, got {_show(value)}")
        return value, "max_cells in the grid file"
    text = os.environ.get(MAX_CELLS_ENV, "").strip()
    if not text:
        return MAX_CELLS, "default"
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise UserError(f"{where}: {MAX_CELLS_ENV} must be a positive integer, got {text!r}")
    return value, MAX_CELLS_ENV


def _check_top_level(spec: dict, where: str) -> None:
    for key in ("description", "name", "leaderboard_by"):
        if key in spec and not isinstance(spec[key], str):
            raise UserError(f"{where}: {key} must be a string, got {_show(spec[key])}")
    hours = spec.get("gpu_hours", 0)
    if not _is_number(hours) or hours < 0:
        raise UserError(f"{where}: gpu_hours must be a number ≥ 0, got {_show(hours)}")


# -- value shapes ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Kind:
    one: str    # "a string"
    many: str   # "strings"
    test: object


def _is_number(value) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        float(value)
    except OverflowError:  # a TOML integer too large for a float
        return False
    return True


STRING = _Kind("a string", "strings", lambda v: isinstance(v, str))
INTEGER = _Kind("an integer", "integers", lambda v: isinstance(v, int) and not isinstance(v, bool))
NUMBER = _Kind("a number", "numbers", _is_number)
BOOL = _Kind("true or false", "true or false", lambda v: isinstance(v, bool))
TABLE = _Kind("a table", "tables", lambda v: isinstance(v, dict))
NUMBERS = _Kind("an array of numbers", "arrays of numbers", lambda v: isinstance(v, list) and all(map(_is_number, v)))
POLICY = _Kind("a string (a preset name) or a table", "strings (a preset name) or tables",
               lambda v: isinstance(v, (str, dict)))
_NAMES = {"method": " (a method name)", "model": " (a model name)", "dataset": " (a dataset name)"}


def _kind_of(key: str) -> _Kind | None:
    """The shape a config key's value has (from its default); None: left to bench.run.config.resolve."""
    default = configs.DEFAULTS.get(key)
    if key == "policy":
        return POLICY
    if key in ("subset", "test_subset"):  # None (all) or a count
        return INTEGER
    if key == "init":  # None or a string
        return STRING
    for types, kind in ((bool, BOOL), (dict, TABLE), (str, STRING), (list, NUMBERS), (float, NUMBER), (int, INTEGER)):
        if isinstance(default, types):
            return kind
    return None


_KINDS = {key: _kind_of(key) for key in configs.DEFAULTS}


def _check_value(key: str, value, where: str, classes: list, plural: bool = False) -> None:
    """The value of config key ``key`` has the right shape (a string, a table, ...), or a UserError."""
    kind = _KINDS.get(key)
    if kind is not None and not kind.test(value):
        if plural:
            raise UserError(f"{where}: {key} values must be {kind.many}{_NAMES.get(key, '')}, got {_show(value)}")
        raise UserError(f"{where}: {key} must be {kind.one}{_NAMES.get(key, '')}, got {_show(value)}")
    if key == "method_params":
        for param, param_value in value.items():
            _check_param(param, param_value, where, classes, prefix="method_params.")


def _check_param(key: str, value, where: str, classes: list, prefix: str = "") -> None:
    """A method parameter has the shape its method declares: a number, or a string / true or false where the
    parameter's default is one (``scale``, ``schedule``, ``lq``, a plugin's flag)."""
    kinds = set()
    for cls in classes:
        if key not in cls.valid_parameters():
            continue
        constant = cls.constants.get(key)
        kinds.add(STRING if key in ("scale", "schedule") or isinstance(constant, str) else
                  BOOL if isinstance(constant, bool) else NUMBER)
    kind = kinds.pop() if len(kinds) == 1 else None  # None: unknown or ambiguous, the method checks it
    if kind is not None and not kind.test(value):
        raise UserError(f"{where}: {prefix}{key} must be {kind.one}, got {_show(value)}")


def _method_classes(names: list) -> list:
    """The registered method classes among ``names`` (other values are reported when cells resolve)."""
    known = methods.list_methods(w1a1=None)
    return [methods.get_method_class(n) for n in dict.fromkeys(n for n in names if isinstance(n, str)) if n in known]


def _key_text(value) -> str:
    """An axis value as the key of its per-value override table: [seed.0], [augment.true], [method."bnn++"]."""
    return value if isinstance(value, str) else _toml(value)


def _table_name(axis: str, text: str) -> str:
    return f"[{axis}.{text if _BARE_KEY.fullmatch(text) else json.dumps(text, ensure_ascii=False)}]"


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict):
        items = (f"{k if _BARE_KEY.fullmatch(k) else json.dumps(k)} = {_toml(v)}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return str(value)


def _show(value, limit: int = 60) -> str:
    """A value as TOML text, shortened to fit in a one-line message."""
    text = _toml(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
