"""Grid files: a TOML description of a model × method × dataset × seed × ... experiment, read and checked
(``read_grid_file``) into a ``GridSpec``; ``bench.dispatch.grid`` expands it into cells.

Format::

    description = "..."            # optional
    max_cells = 20000              # optional: the most cells this grid may have (default below)
    leaderboard_by = "dataset,model,mode,scale:method"  # optional: the leaderboard's rows:column (aggregate --by)
    [defaults]                     # config keys shared by every cell (bench.run.settings)
    epochs = 4
    [axes]                         # lists whose cross product makes the cells
    method = ["fp", "bc", "bnn++"]
    seed = [0, 1, 2]
    [method."bnn++"]               # per-value overrides: [AXIS."VALUE"], config keys; under [method.X]
    mu_end = 40                    #   a method parameter may be given directly
    [[exclude]]                    # drop cells matching every key (a value or a list of values)
    method = "fp"
    mode = "finetune"

Size limit: the number of cells is at most the product of the axis lengths (excludes only remove cells),
and that product is checked before anything is expanded. Past the limit the grid is refused with a one-line
error giving the count. The limit is the grid's own ``max_cells`` (an integer > 0) if it sets one, else the
environment variable ``PROXBENCH_MAX_CELLS``, else 10,000 (``MAX_CELLS``). Below it, the cells are expanded
lazily (one combination at a time) and resolved one by one (``bench.dispatch.grid``).

The grid's name is its file name without ``.toml``; it names the folders ``results/runs/<name>`` and
``work/grids/<name>``, so it must be non-empty, must not start with ``.``, and may use only the characters
``A-Za-z0-9._+-``.

Values are checked for their shape before any cell is resolved: a method, model or dataset is a string, a
seed an integer, ``data_options`` a table, a method parameter a number (or a string where the method takes
one: ``scale``, ``schedule``, ``lq``), and so on (``bench.dispatch.grid_values``); ``bench.run.config.resolve``
then checks each cell's values. An axis lists each value once: two values equal once parsed (``"fp"`` twice,
``0.001`` and ``1e-3``) are an error naming the value and both positions.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import methods

from bench.run import config as configs
from bench.errors import UserError
from bench.registry import close_match_hint
from bench.run.layout import check_name
from bench.dispatch.grid_values import KINDS, check_param, check_value, key_text, method_classes, show, table_name
from bench.run.settings import NUMBERS, is_number, method_parameters
from bench.tomlfile import load_toml

TOP_LEVEL = ("description", "defaults", "axes", "exclude", "name", "gpu_hours", "max_cells", "leaderboard_by")
MAX_CELLS = 10_000  # default size limit (grid key max_cells, then $PROXBENCH_MAX_CELLS, override it)
MAX_CELLS_ENV = "PROXBENCH_MAX_CELLS"


@dataclass
class GridSpec:
    """A checked grid file: ``choices`` is {axis: [(value, config overrides, method parameter overrides), ...]}
    in the file's axis order; ``excludes`` the ``[[exclude]]`` rules."""

    name: str
    path: Path
    description: str
    gpu_hours: float | None
    defaults: dict = field(default_factory=dict)
    choices: dict = field(default_factory=dict)
    excludes: list = field(default_factory=list)


def read_grid_file(path: Path) -> GridSpec:
    """Read and check a grid file (see the module doc); every problem is a one-line UserError naming the file."""
    where = str(path)
    spec = load_toml(path)  # an unreadable file is load_toml's one-line UserError
    check_name(path.stem, where, "(the file name without .toml; rename the file)")
    axes = spec.get("axes", {})
    defaults = spec.get("defaults", {})
    if not isinstance(axes, dict):
        raise UserError(f"{where}: [axes] must be a table, got {show(axes)}")
    if not isinstance(defaults, dict):
        raise UserError(f"{where}: [defaults] must be a table, got {show(defaults)}")
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
        raise UserError(f"{where}: exclude must be an array of tables ([[exclude]]), got {show(excludes)}")
    _check_size(spec, axes, bool(excludes), where)

    # shapes of every value, before any cell is made
    all_methods = method_classes([*axes.get("method", []), defaults.get("method", configs.DEFAULTS["method"])])
    for key, value in defaults.items():
        check_value(key, value, f"{where} [defaults]", all_methods)
    for key, values in axes.items():
        for value in values:
            check_value(key, value, f"{where} [axes]", all_methods, plural=True)
        _check_unique(key, values, where)
    for rule in excludes:
        configs.check_keys(rule, f"{where} [[exclude]]")
        for key, wanted in rule.items():
            if KINDS.get(key) is not NUMBERS:  # an array there is a list of step_milestones options
                for option in wanted if isinstance(wanted, list) else [wanted]:
                    check_value(key, option, f"{where} [[exclude]]", all_methods, plural=True)

    # per-value overrides: {axis: [(value, config updates, method parameter updates), ...]}
    choices = {}
    for key, values in axes.items():
        table = spec.get(key, {})
        if not isinstance(table, dict):
            raise UserError(f"{where}: [{key}] must be a table of per-value overrides, got {show(table)}")
        texts = [key_text(v) for v in values]
        for text, overrides in table.items():
            if text not in texts:
                raise UserError(f"{where}: {table_name(key, text)} overrides a value that is not on the {key} axis"
                                f"{close_match_hint(text, texts)}")
            if not isinstance(overrides, dict):
                raise UserError(f"{where} [{key}]: {json.dumps(text, ensure_ascii=False)} must be a table of "
                                f"overrides ({table_name(key, text)}), got {show(overrides)}")
        split = {text: _split_override(table[text], key, text, where, all_methods) for text in table}
        choices[key] = [(v, *split.get(t, ({}, {}))) for v, t in zip(values, texts)]

    return GridSpec(name=path.stem, path=path, description=spec.get("description", ""),
                    gpu_hours=spec.get("gpu_hours"), defaults=defaults, choices=choices, excludes=excludes)


def _split_override(table: dict, axis: str, text: str, where: str, all_methods: list) -> tuple[dict, dict]:
    """A per-value override table as (config keys, method parameters), each value's shape checked."""
    where = f"{where} {table_name(axis, text)}"
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
            check_value(key, value, where, classes)
            if key == "method_params":
                params.update(value)
            else:
                config[key] = value
        elif cls is not None and key in method_parameters(cls):
            check_param(key, value, where, classes)
            params[key] = value
        else:
            configs.check_keys([key], where)
    return config, params



def _check_unique(key: str, values: list, where: str) -> None:
    """An axis lists each value once: values equal once parsed (0.001 and 1e-3, 1 and 1.0) are an error."""
    seen: dict[str, int] = {}
    for position, value in enumerate(values, 1):
        same = json.dumps(float(value) if is_number(value) else value, sort_keys=True)
        if same in seen:
            raise UserError(f"{where}: [axes] {key} lists {show(value)} more than once (values {seen[same]} and "
                            f"{position}; equal once parsed): each value makes its cells, list it once")
        seen[same] = position


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
            raise UserError(f"{where}: max_cells must be a positive integer, got {show(value)}")
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
            raise UserError(f"{where}: {key} must be a string, got {show(spec[key])}")
    hours = spec.get("gpu_hours", 0)
    if not is_number(hours) or hours < 0:
        raise UserError(f"{where}: gpu_hours must be a number ≥ 0, got {show(hours)}")
