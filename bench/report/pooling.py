"""The pooling rule of a leaderboard cell: it averages the seeds of one config, nothing else.

A cell's runs (any status) must have the same whole resolved ``config``, nested dicts (``method_params``,
``data_options``, ``model_kwargs``, ...) compared key by key (3 == 3.0, an absent key differs from any value),
except ``seed`` and the keys that already separate cells: the row keys and the column key (for the FP column,
``method``; a key found among the method parameters, like ``scale``, is ``method_params.scale``). So with the
default layout different methods, and their different ``method_params``, are in different columns, but one
column of one row holds one config. A fine-tune's ``init = "run:<id>"`` names a parent whose id changes with
the parent's seed: it is compared as the parent record's config without its seed (recursively), so fine-tunes
of the seeds of one parent config pool and fine-tunes of different parent configs do not; a parent that is not
among the grid's records cannot be checked and its id is taken as seed-derived. Two runs of one config with
the same seed (one run under two run ids) never pool either.

A cell that breaks the rule is a ``UserError`` naming the grid, the cell, each differing key with its values,
and a ``--by`` that puts those keys in the rows (e.g. ``--by dataset,model,mode,lr:method`` for an ``lr``
axis); the first such cell in table order is named, with how many more there are.
"""

from __future__ import annotations

from bench.errors import UserError
from bench.report.keys import config_path, flatten, value_sort_key, value_text
from bench.report.styles import FP, column_label


class _Mark:
    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return self.text


_MISSING = _Mark("(unset)")  # a config key that one record of a cell has and another lacks
_UNKNOWN = _Mark("(parent not in the grid)")  # init 'run:<id>' whose record is not among the grid's records


def _without(obj, path: tuple):
    if not isinstance(obj, dict) or path[0] not in obj:
        return obj
    out = dict(obj)
    if len(path) == 1:
        del out[path[0]]
    else:
        out[path[0]] = _without(out[path[0]], path[1:])
    return out


def _seed_free(cfg: dict, runs: dict, seen: frozenset = frozenset()) -> dict:
    """``cfg`` without its seed; a fine-tune's ``init = 'run:<id>'`` (whose id differs with the parent's seed)
    becomes ``{'run': <the parent's seed-free config>}``, or ``{'run': _UNKNOWN}`` if the parent is not in ``runs``."""
    out = {k: v for k, v in cfg.items() if k != "seed"}
    init = out.get("init")
    if isinstance(init, str) and init.startswith("run:"):
        parent = runs.get(init[4:])
        if parent is None or init[4:] in seen:
            out["init"] = {"run": _UNKNOWN}
        else:
            out["init"] = {"run": _seed_free(parent["config"], runs, seen | {init[4:]})}
    return out

def _same(value):
    """A hashable form of a config value in which 3 == 3.0 but True != 1."""
    if isinstance(value, _Mark):
        return ("mark", value.text)
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return (type(value).__name__, value)
    if isinstance(value, (int, float)):
        return ("number", float(value))
    if isinstance(value, (list, tuple)):
        return ("list", tuple(_same(v) for v in value))
    if isinstance(value, dict):
        return ("dict", tuple(sorted((str(k), _same(v)) for k, v in value.items())))
    return ("other", repr(value))


def _path_label(path: str) -> str:
    """'init.run.epochs' -> "init (parent's epochs)": a key of the run a fine-tune started from."""
    owners = []
    while path == "init.run" or path.startswith("init.run."):
        owners.append("parent's")
        path = path[len("init.run."):]
    return f"init ({' '.join(owners)} {path or 'run'})" if owners else path


def _cell_conflict(cell: list[dict], dropped: list[str], runs: dict) -> tuple[list, str | None]:
    """(differing config paths with their values, a same-seed note) for the records of one cell."""
    flats, unknown = [], []
    for record in cell:
        cfg = record["config"]
        for key in dropped:
            path = config_path(record, key)
            if path:
                cfg = _without(cfg, path)
        flat = flatten(_seed_free(cfg, runs))
        flats.append(flat)
        unknown.append(flat.get("init.run") is _UNKNOWN)
    diffs = []
    for path in sorted(set().union(*flats)):
        values = {}
        for flat, blind in zip(flats, unknown):
            if blind and (path == "init.run" or path.startswith("init.run.")):
                continue  # a parent that is not in the grid: its id is taken as seed-derived
            value = flat.get(path, _MISSING)
            values.setdefault(_same(value), value)
        if len(values) > 1:
            shown = sorted(values.values(), key=lambda v: (1, "") if isinstance(v, _Mark) else (0, value_sort_key(v)))
            diffs.append((path, shown))
    if diffs:
        return diffs, None
    seeds: dict = {}
    for record in cell:
        seeds.setdefault(_same(record["config"]["seed"]), []).append(record)
    for twins in seeds.values():
        if len(twins) > 1:
            ids = ", ".join(str(r["run_id"]) for r in twins)
            inits = sorted({value_text(r["config"].get("init")) for r in twins})
            why = (f"fine-tuned from {', '.join(inits)}, parents that are not among the grid's records"
                   if len(inits) > 1 else "the same config under several run ids: keep one record")
            return [], f"runs {ids} all have seed {value_text(twins[0]['config']['seed'])} ({why})"
    return [], None


def check_seeds_only(members: dict, order: list, columns: list, row_keys: tuple, column_key: str,
                      records: list[dict], grid: str | None) -> None:
    """Raise ``UserError`` naming the first cell (in table order) whose runs are not seeds of one config."""
    runs = {str(r["run_id"]): r for r in records}
    problems = []
    for key in order:
        for column in columns:
            cell = members.get((key, column))
            if not cell or len(cell) < 2:
                continue
            dropped = [*row_keys, "method" if column == FP else column_key]
            diffs, twins = _cell_conflict(cell, dropped, runs)
            if diffs or twins:
                problems.append((key, column, cell, diffs, twins))
    if not problems:
        return
    key, column, cell, diffs, twins = problems[0]
    where = ", ".join(f"{k}={v}" for k, v in zip(row_keys, key))
    head = (f"grid {grid!r}: " if grid else "") + f"the cell ({where}; column {column_label(column_key, column)})"
    more = f" ({len(problems) - 1} more cell(s) also mix runs)" if len(problems) > 1 else ""
    if twins:
        raise UserError(f"{head} counts one seed twice: {twins}{more}")
    text = "; ".join(f"{_path_label(p)} = {', '.join(repr(v) if isinstance(v, _Mark) else value_text(v) for v in vs)}"
                     for p, vs in diffs)
    keys = []
    for path, _ in diffs:
        name = "init" if path.startswith("init.") else path
        if name not in keys:
            keys.append(name)
    keys = [k for k in keys if not any(k.startswith(f"{o}.") for o in keys)]
    if "method" in keys:  # different methods have different parameters by design
        keys = [k for k in keys if not k.startswith("method_params.")]
    by = f"{','.join([*row_keys, *keys])}:{column_key}"
    raise UserError(f"{head} pools {len(cell)} runs that differ in more than the seed: {text}. A cell averages the "
                    f"seeds of one config only: use --by to put {'this key' if len(keys) == 1 else 'these keys'} "
                    f"in the rows, e.g. --by {by}{more}")
