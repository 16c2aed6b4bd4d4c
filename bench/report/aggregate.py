"""Leaderboards rebuilt from run records alone: ``python -m bench aggregate [GRID]``.

Input: ``<results>/runs/<grid>/*.json`` (schema 1, see ``bench.run.records``). Output, under ``<results>/<grid>/``:

* ``leaderboard.md`` (GitHub table), ``leaderboard.csv`` (the same numbers, one column each), ``leaderboard.tex``
  (booktabs): rows dataset × model × mode, columns FP and each method (fp, bc, pc, rpc, pq, bnn, bnn+, bnn++,
  then other methods alphabetically), cells ``mean ± std`` of the deployed top-1 accuracy over seeds (std with
  ddof = 1; ``(n=k)`` shown when fewer than 3 seeds), the best binarized cell of each row in bold, then the drop
  from FP (FP − best binarized) and the compression ratio of the best binarized method; the .tex states the
  seeds once and is laid out to fit one column of a two-column paper (``to_latex``);
* ``summary.csv``: one row per record (flattened config, ``final.*`` metrics), sorted by run id;
* ``figures/*.png`` (``bench.report.figures``).

Pooling rule: a cell averages seeds of one config, nothing else. Its runs (any status) must have the same
whole resolved ``config``, nested dicts (``method_params``, ``data_options``, ``model_kwargs``, ...) compared
key by key (3 == 3.0, an absent key differs from any value), except ``seed`` and the keys that already
separate cells: the row keys and the column key (for the FP column, ``method``; a key found among the method
parameters, like ``scale``, is ``method_params.scale``). So with the default layout different methods, and
their different ``method_params``, are in different columns, but one column of one row holds one config.
A fine-tune's ``init = "run:<id>"`` names a parent whose id changes with the parent's seed: it is compared as
the parent record's config without its seed (recursively), so fine-tunes of the seeds of one parent config
pool and fine-tunes of different parent configs do not; a parent that is not among the grid's records cannot
be checked and its id is taken as seed-derived. Two runs of one config with the same seed (one run under two
run ids) never pool either. A cell that breaks the rule is a ``UserError`` (``error: ...``, exit 2) naming the
grid, the cell, each differing key with its values, and a ``--by`` that puts those keys in the rows (e.g.
``--by dataset,model,mode,lr:method`` for an ``lr`` axis); with every grid, the others are still rebuilt.
A fine-tune row without an FP cell shows the FP cell of the row of its ``run:<id>`` fp parents (without such
parents: of its ``mode = e2e`` row).

Only ``status == "done"`` records enter a mean; a cell with no done seed shows ``div.`` if a seed diverged,
``fail.`` if one failed, ``—`` if there is none. Same records -> same bytes: everything is sorted, floats are
formatted with fixed precision and nothing depends on time or file order. Corrupt, partial or unknown-schema
records, and done records whose ``final.acc`` is not a finite number in [0, 100] (a percentage), are skipped
with one warning on stderr that names them; a run id recorded in several files counts once, with one more
warning naming the files (``bench.run.records.load_records``).
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tabulate import tabulate

from bench.atomic import atomic_write
from bench.errors import UserError
from bench.run.records import load_records

METHOD_ORDER = ("fp", "bc", "pc", "rpc", "pq", "bnn", "bnn+", "bnn++")
DEFAULT_ROWS = ("dataset", "model", "mode")
DEFAULT_COLUMN = "method"
CONFIG_REQUIRED = ("model", "method", "dataset", "mode", "seed")
FP = "\x00fp"  # the column id of the full-precision baseline
EMPTY = "—"
ACC_RANGE = (0, 100)  # final.acc is a percentage; a done record outside it is skipped with a warning


class NoRecordsError(UserError):
    """A grid without a single valid record (``python -m bench aggregate`` without a name skips such grids)."""


# ------------------------------------------------------------------------------------------------------
# loading


def list_grids(results_dir: str | Path = "results") -> list[str]:
    folder = Path(results_dir) / "runs"
    return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


def finite_number(value) -> float | None:
    """``value`` as a float if it is a finite int/float (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _problem(record: dict) -> str | None:
    """Beyond ``bench.run.records.validate``: what aggregation itself needs."""
    cfg = record.get("config")
    if not isinstance(cfg, dict):
        return "partial: config is not an object"
    missing = [k for k in CONFIG_REQUIRED if k not in cfg]
    if missing:
        return f"partial: config lacks {', '.join(missing)}"
    if record["status"] == "done":
        acc = finite_number(record["final"].get("acc"))
        if acc is None:
            return f"partial: a done record without a finite numeric final.acc ({record['final'].get('acc')!r})"
        if not ACC_RANGE[0] <= acc <= ACC_RANGE[1]:
            return f"implausible final.acc {acc!r} (an accuracy in % must lie in [{ACC_RANGE[0]}, {ACC_RANGE[1]}])"
    return None


def load_grid(grid: str, results_dir: str | Path = "results", warn=None) -> list[dict]:
    """Valid, aggregatable records of ``grid`` sorted by (run id, file name); skipped files in one warning."""
    return load_records(results_dir, grid, warn, check=_problem)


# ------------------------------------------------------------------------------------------------------
# keys and values


def value_of(record: dict, key: str):
    """A grouping key: a config key, a method parameter (``scale``), a dotted path, a final metric or top-level."""
    cfg = record["config"]
    if key in cfg:
        return cfg[key]
    params = cfg.get("method_params") or {}
    if isinstance(params, dict) and key in params:
        return params[key]
    if "." in key:
        node = record
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                node = None
                break
            node = node[part]
        if node is not None:
            return node
        node = cfg
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return node
    if key in record["final"]:
        return record["final"][key]
    return record.get(key)


def _text(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return str(value)


def _sort_key(value):
    """Numbers numerically, then strings, None last; total and deterministic."""
    if value is None:
        return (2, 0.0, "")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, float(value), "")
    return (1, 0.0, _text(value))


def method_sort_key(method: str):
    return (METHOD_ORDER.index(method), "") if method in METHOD_ORDER else (len(METHOD_ORDER), method)


def method_attribute(method: str, name: str):
    """The presentation attribute ``name`` (``label``, ``color``, ``marker``) that the class registered as
    ``method`` declares, itself or through a base class that is not registered under another key (a mixin);
    None when the method is not registered here (a plugin not loaded) or nothing declares it."""
    import methods

    try:
        cls = methods.get_method_class(method)
    except methods.MethodError:
        return None
    for klass in cls.__mro__:
        if klass is not cls and klass.__dict__.get("name"):
            return None  # a registered ancestor's label, colour or marker would tell two methods apart by nothing
        if klass.__dict__.get(name) is not None:
            return klass.__dict__[name]
    return None


def method_label(method: str) -> str:
    """The display name of ``method``: its class's ``label`` (FP, BC, PC, rPC, PQ, BNN, BNN+, BNN++), else the key."""
    return method_attribute(method, "label") or method


class _BuiltinLabels(Mapping):
    """``METHOD_LABELS[key]`` for the built-in keys of ``METHOD_ORDER``: their classes' ``label`` (read when asked)."""

    def __getitem__(self, key: str) -> str:
        if key not in METHOD_ORDER:
            raise KeyError(key)
        return method_label(key)

    def __iter__(self):
        return iter(METHOD_ORDER)

    def __len__(self) -> int:
        return len(METHOD_ORDER)


METHOD_LABELS = _BuiltinLabels()


def parse_by(by: str | None) -> tuple[tuple[str, ...], str]:
    """'dataset,model:method' -> (('dataset', 'model'), 'method'); None -> the paper's layout."""
    if by is None or not by.strip():
        return DEFAULT_ROWS, DEFAULT_COLUMN
    rows_text, _, column = by.partition(":")
    rows = tuple(k.strip() for k in rows_text.split(",") if k.strip())
    column = column.strip() or DEFAULT_COLUMN
    if not rows:
        raise UserError(f"--by {by!r}: give at least one row key, e.g. 'dataset,model:method'")
    if column in rows:
        raise UserError(f"--by {by!r}: {column!r} is both a row key and the column key")
    repeated = sorted({k for k in rows if rows.count(k) > 1})
    if repeated:
        raise UserError(f"--by {by!r}: row key {repeated[0]!r} given twice")
    return rows, column


def _paths(obj, prefix: str, out: set) -> set:
    """Every dotted path into the nested dicts of ``obj`` (intermediate dicts included)."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            path = f"{prefix}{key}"
            out.add(path)
            _paths(value, f"{path}.", out)
    return out


def record_keys(record: dict) -> set[str]:
    """Every key ``value_of`` finds in ``record``: config keys, method parameters, final metrics, top-level
    keys, and dotted paths into the record and into its config (``method_params.mu_end``, ``final.acc``)."""
    cfg = record.get("config") or {}
    params = cfg.get("method_params") if isinstance(cfg, dict) else None
    keys = set(cfg) | set(record) | set(record.get("final") or {})
    if isinstance(params, dict):
        keys |= set(params)
    return keys | _paths(record, "", set()) | _paths(cfg, "", set())


def close_keys_hint(key: str, known, cutoff: float = 0.6) -> str:
    """'; did you mean 'a' or 'b'?' with up to three keys of ``known`` close to ``key``, or ''."""
    import difflib

    close = difflib.get_close_matches(key, sorted(known), n=3, cutoff=cutoff)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def check_keys(keys, records_by_grid: dict[str, list[dict]], option: str) -> None:
    """Each key of ``keys`` must be a key (``record_keys``) of at least one record of every grid of
    ``records_by_grid`` (grids without records are not checked); else a one-line UserError naming ``option``,
    the key, the grid and up to three keys of that grid close to it."""
    for grid, records in records_by_grid.items():
        if not records:
            continue
        known = set().union(*(record_keys(r) for r in records))
        for key in keys:
            if key not in known:
                hint = close_keys_hint(key, known)
                raise UserError(f"{option}: no record of grid {grid!r} has a key {key!r}{hint} (keys: config keys, "
                                "method parameters, final metrics, or dotted paths like method_params.mu_end)")


# ------------------------------------------------------------------------------------------------------
# the table


@dataclass
class Cell:
    accs: list[float] = field(default_factory=list)
    compressions: list[float] = field(default_factory=list)
    diverged: int = 0
    failed: int = 0

    @property
    def n(self) -> int:
        return len(self.accs)

    @property
    def mean(self) -> float | None:
        return sum(self.accs) / self.n if self.accs else None

    @property
    def std(self) -> float | None:
        """Sample standard deviation (ddof = 1); None with fewer than 2 seeds."""
        if self.n < 2:
            return None
        m = self.mean
        return math.sqrt(sum((a - m) ** 2 for a in self.accs) / (self.n - 1))

    @property
    def compression(self) -> float | None:
        return sum(self.compressions) / len(self.compressions) if self.compressions else None


@dataclass
class Row:
    key: tuple
    cells: dict  # column id -> Cell
    best: list  # column ids of the best binarized cell(s)
    drop: float | None
    compression: float | None


@dataclass
class Table:
    row_keys: tuple[str, ...]
    column_key: str
    columns: list  # column ids, FP first
    rows: list[Row]

    def label(self, column) -> str:
        if column == FP:
            return "FP"
        if self.column_key == "method":
            return method_label(column)
        return f"{self.column_key}={column}"


def build_table(records: list[dict], by: str | None = None, grid: str | None = None) -> Table:
    """The leaderboard of ``records`` (rows and column from ``by``); ``UserError`` when a cell would pool
    runs that are not seeds of one config (see the module docstring); ``grid`` names the grid in that error."""
    row_keys, column_key = parse_by(by)
    grouped: dict[tuple, dict] = {}
    raw_rows: dict[tuple, tuple] = {}
    members: dict[tuple, list[dict]] = {}
    for record in records:
        method = record["config"]["method"]
        column = FP if method == "fp" else _text(value_of(record, column_key))
        values = tuple(value_of(record, k) for k in row_keys)
        key = tuple(_text(v) for v in values)
        raw_rows[key] = values
        members.setdefault((key, column), []).append(record)
        cell = grouped.setdefault(key, {}).setdefault(column, Cell())
        if record["status"] == "done":
            cell.accs.append(float(record["final"]["acc"]))
            comp = finite_number(record["final"].get("compression"))
            if comp is not None:
                cell.compressions.append(comp)
        elif record["status"] == "diverged":
            cell.diverged += 1
        else:
            cell.failed += 1

    _borrow_parent_fp(grouped, row_keys, members)
    present = {c for cells in grouped.values() for c in cells}
    others = sorted((c for c in present if c != FP),
                    key=method_sort_key if column_key == "method" else (lambda c: (_sort_key(_maybe_number(c)), c)))
    columns = ([FP] if FP in present else []) + others
    order = sorted(grouped, key=lambda k: tuple(_sort_key(v) for v in raw_rows[k]) + (k,))
    _check_seeds_only(members, order, columns, row_keys, column_key, records, grid)

    rows = []
    for key in order:
        cells = grouped[key]
        scored = [(round(cells[c].mean, 2), c) for c in others if c in cells and cells[c].n]
        best_value = max((s for s, _ in scored), default=None)
        best = [c for s, c in scored if s == best_value]
        fp_cell = cells.get(FP)
        drop = None
        if best and fp_cell is not None and fp_cell.n:
            drop = fp_cell.mean - cells[best[0]].mean
        compression = cells[best[0]].compression if best else None
        rows.append(Row(key, cells, best, drop, compression))
    return Table(row_keys, column_key, columns, rows)


class _Mark:
    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return self.text


_MISSING = _Mark("(unset)")  # a config key that one record of a cell has and another lacks
_UNKNOWN = _Mark("(parent not in the grid)")  # init 'run:<id>' whose record is not among the grid's records


def _column_label(column_key: str, column) -> str:
    return Table((), column_key, [], []).label(column)


def _config_path(record: dict, key: str) -> tuple | None:
    """Where ``value_of(record, key)`` reads inside the config (None: outside it, or nowhere)."""
    cfg = record["config"]
    if key in cfg:
        return (key,)
    params = cfg.get("method_params")
    if isinstance(params, dict) and key in params:
        return ("method_params", key)
    if "." not in key:
        return None
    parts = key.split(".")
    node = record
    for part in parts:
        if not isinstance(node, dict) or part not in node:
            node = None
            break
        node = node[part]
    if node is not None:
        return tuple(parts[1:]) if parts[0] == "config" and len(parts) > 1 else None
    node = cfg
    for part in parts:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return tuple(parts)


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


def flatten(obj: dict, prefix: str = "", empty: bool = True) -> dict:
    """{'method_params': {'mu_end': 30}} -> {'method_params.mu_end': 30}; an empty table stays as {} unless
    ``empty`` is False (then it is left out, as a table without keys)."""
    out: dict = {}
    for key, value in obj.items():
        if isinstance(value, dict) and (value or not empty):
            out.update(flatten(value, f"{prefix}{key}.", empty))
        else:
            out[f"{prefix}{key}"] = value
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
            path = _config_path(record, key)
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
            shown = sorted(values.values(), key=lambda v: (1, "") if isinstance(v, _Mark) else (0, _sort_key(v)))
            diffs.append((path, shown))
    if diffs:
        return diffs, None
    seeds: dict = {}
    for record in cell:
        seeds.setdefault(_same(record["config"]["seed"]), []).append(record)
    for twins in seeds.values():
        if len(twins) > 1:
            ids = ", ".join(str(r["run_id"]) for r in twins)
            inits = sorted({_text(r["config"].get("init")) for r in twins})
            why = (f"fine-tuned from {', '.join(inits)}, parents that are not among the grid's records"
                   if len(inits) > 1 else "the same config under several run ids: keep one record")
            return [], f"runs {ids} all have seed {_text(twins[0]['config']['seed'])} ({why})"
    return [], None


def _check_seeds_only(members: dict, order: list, columns: list, row_keys: tuple, column_key: str,
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
    head = (f"grid {grid!r}: " if grid else "") + f"the cell ({where}; column {_column_label(column_key, column)})"
    more = f" ({len(problems) - 1} more cell(s) also mix runs)" if len(problems) > 1 else ""
    if twins:
        raise UserError(f"{head} counts one seed twice: {twins}{more}")
    text = "; ".join(f"{_path_label(p)} = {', '.join(repr(v) if isinstance(v, _Mark) else _text(v) for v in vs)}"
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


def _borrow_parent_fp(grouped: dict[tuple, dict], row_keys: list[str], members: dict) -> None:
    """A fine-tune row without an FP cell shows the FP of the row its runs were fine-tuned from: the row of
    their ``init = 'run:<id>'`` fp parents when those are all in one row, else (``mode`` a row key) the row
    with ``mode = e2e`` and the same other keys."""
    row_of = {}
    for (key, _), cell in members.items():
        for record in cell:
            row_of[str(record["run_id"])] = (key, record["config"]["method"])
    for key, cells in grouped.items():
        if FP in cells:
            continue
        parents = set()
        for column in cells:
            for record in members.get((key, column), []):
                init = record["config"].get("init")
                if isinstance(init, str) and init.startswith("run:") and row_of.get(init[4:], (None, ""))[1] == "fp":
                    parents.add(row_of[init[4:]][0])
        if len(parents) == 1:
            parent = grouped[parents.pop()].get(FP)
        elif not parents and "mode" in row_keys and key[row_keys.index("mode")] == "finetune":
            at = row_keys.index("mode")
            parent = grouped.get(key[:at] + ("e2e",) + key[at + 1:], {}).get(FP)
        else:
            parent = None
        if parent is not None:
            cells[FP] = parent


def _maybe_number(text: str):
    try:
        return float(text)
    except ValueError:
        return text


def cell_text(cell: Cell | None, style: str = "md") -> str:
    pm, times, dash = ("$\\pm$", "$\\times$", "--") if style == "tex" else ("±", "×", EMPTY)
    if cell is None:
        return dash
    if not cell.n:
        return "div." if cell.diverged else ("fail." if cell.failed else dash)
    text = f"{cell.mean:.2f}"
    if cell.std is not None:
        text += f" {pm} {cell.std:.2f}"
    if cell.n < 3:
        text += f" (n={cell.n})"
    return text


def _drop_text(drop: float | None, style: str) -> str:
    if drop is None:
        return "--" if style == "tex" else EMPTY
    return f"{drop:.2f}"


def _compression_text(value: float | None, style: str) -> str:
    if value is None:
        return "--" if style == "tex" else EMPTY
    return f"{value:.1f}$\\times$" if style == "tex" else f"{value:.1f}×"


def _header(table: Table) -> list[str]:
    return [*table.row_keys, *(table.label(c) for c in table.columns), "drop (FP − best)", "compression (best)"]


def to_markdown(table: Table) -> str:
    body = []
    for row in table.rows:
        cells = []
        for c in table.columns:
            text = cell_text(row.cells.get(c), "md")
            cells.append(f"**{text}**" if c in row.best else text)
        body.append([*row.key, *cells, _drop_text(row.drop, "md"), _compression_text(row.compression, "md")])
    align = ["left"] * len(table.row_keys) + ["right"] * (len(table.columns) + 2)
    return tabulate(body, headers=_header(table), tablefmt="github", disable_numparse=True, colalign=align)


_TEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "−": "$-$",
                "—": "---", "–": "--", "±": r"$\pm$", "×": r"$\times$", "<": r"\textless{}", ">": r"\textgreater{}",
                "|": r"\textbar{}", "μ": r"$\mu$", "ρ": r"$\rho$", "β": r"$\beta$", "α": r"$\alpha$", "η": r"$\eta$"}


def tex_escape(text: str) -> str:
    """``text`` as LaTeX source that prints it: the special characters escaped, −, ±, ×, dashes and the Greek
    letters of method parameters as their LaTeX commands."""
    return "".join(_TEX_ESCAPES.get(ch, ch) for ch in text)


# The .tex leaderboard is laid out for one column of a two-column paper at 10 pt: \columnwidth of LaTeX's
# article class with [twocolumn], 229.5 pt (ICML's column is 234.9 pt, CVPR's 237.1 pt, ACM's 241.1 pt). Widths
# are estimated from Computer Modern's glyph widths (pt at 10 pt, cmr10; bold ×1.15, subscripts ×0.8; 4% to
# spare); tests/test_aggregate.py compiles the tables and measures them.
TEX_WIDTH_PT = 229.5
TEX_GAP_PT = 8.0  # the space between two columns (the spec's @{\hspace{8pt}}; no space outside the first and last)
_CMR10 = dict(zip("abcdefghijklmnopqrstuvwxyz", (5.0, 5.56, 4.44, 5.56, 4.44, 3.06, 5.0, 5.56, 2.78, 3.06, 5.28, 2.78,
                                                 8.33, 5.56, 5.0, 5.56, 5.28, 3.92, 3.94, 3.89, 5.56, 5.28, 7.22, 5.28,
                                                 5.28, 4.44)))
_CMR10.update(dict(zip("ABCDEFGHIJKLMNOPQRSTUVWXYZ", (7.5, 7.08, 7.22, 7.64, 6.81, 6.53, 7.85, 7.5, 3.61, 5.14, 7.78,
                                                      6.25, 9.17, 7.5, 7.78, 6.81, 7.78, 7.36, 5.56, 7.22, 7.5, 7.5,
                                                      10.28, 7.5, 7.5, 6.11))))
_CMR10.update({**dict.fromkeys("0123456789", 5.0), ".": 2.78, ",": 2.78, " ": 3.33, "-": 3.33, "+": 7.78, "=": 7.78,
               "(": 3.89, ")": 3.89, "/": 5.0, ":": 2.78, "_": 5.0, "±": 7.78, "×": 7.78, "−": 7.78, "—": 10.0})


def _tex_width(text: str, scale: float = 1.0) -> float:
    """Estimated printed width (pt) of plain ``text`` at 10 pt, times ``scale`` (bold 1.15, subscript 0.8)."""
    return 1.04 * scale * sum(_CMR10.get(ch, 7.5) for ch in text)


@dataclass
class _TexCell:
    source: str
    width: float  # estimated, pt


def _tex_number_cell(cell: Cell | None, bold: bool, seeds: int) -> _TexCell:
    """mean, bold when best, the std as a subscript ``$_{\\pm s}$`` and, when the cell's seed count differs from
    the table's ``seeds``, the count as a superscript ``$^{(k)}$``."""
    if cell is None or not cell.n:
        text = "--" if cell is None else ("div." if cell.diverged else ("fail." if cell.failed else "--"))
        return _TexCell(text, _tex_width(text.replace("--", "–")))
    mean = f"{cell.mean:.2f}"
    source, width = (f"\\textbf{{{mean}}}", _tex_width(mean, 1.15)) if bold else (mean, _tex_width(mean))
    script = []
    if cell.std is not None:
        script.append(f"_{{\\pm {cell.std:.2f}}}")
        width += _tex_width(f"±{cell.std:.2f}", 0.8)
    if cell.n != seeds:
        script.append(f"^{{({cell.n})}}")
        width += _tex_width(f"({cell.n})", 0.8) if cell.std is None else 0.0  # stacked over the subscript
    if script:
        source += "$" + "".join(script) + "$"
    return _TexCell(source, width)


def _tex_plain(text: str) -> _TexCell:
    return _TexCell(tex_escape(text), _tex_width(text))


def _common_seeds(table: Table) -> int:
    """The most done seeds of any cell (the seeds the grid asked for, unless every cell lost one); 1 without any."""
    return max((cell.n for row in table.rows for cell in row.cells.values()), default=0) or 1


def _blocks(label_width: float, columns: list[list[_TexCell]]) -> list[list[int]]:
    """The data columns (each a list of cells, header first) in the fewest consecutive blocks, of sizes as
    equal as possible (larger first), whose stacked tabular fits ``TEX_WIDTH_PT`` next to the row labels'
    ``label_width`` (their gap included; 0 without row labels); one column per block at worst."""
    n = len(columns)
    widths = [max(c.width for c in column) for column in columns]
    for count in range(1, n + 1):
        size, extra = divmod(n, count)
        blocks, start = [], 0
        for b in range(count):
            end = start + size + (1 if b < extra else 0)
            blocks.append(list(range(start, end)))
            start = end
        slots = max(len(b) for b in blocks)
        slot_widths = [max(widths[b[j]] for b in blocks if j < len(b)) for j in range(slots)]
        if label_width + sum(slot_widths) + TEX_GAP_PT * (slots - 1) <= TEX_WIDTH_PT:
            return blocks
    return [[i] for i in range(n)]


def tex_caption(table: Table, seeds: int, constant: list[tuple[str, str]]) -> str:
    """The caption-ready sentence of ``to_latex``'s table (LaTeX source)."""
    where = f" ({', '.join(f'{k} {v}' for k, v in constant)})" if constant else ""
    std = "" if seeds == 1 else r", mean$_{\pm\mathrm{std}}$ over the seeds (ddof = 1)"
    marks = any(cell.n and cell.n != seeds for row in table.rows for cell in row.cells.values())
    per_cell = f"{seeds} seed{'s' if seeds != 1 else ''} (n = {seeds}) per cell"
    per_cell += r"; a superscript $^{(k)}$: k seeds" if marks else ""
    columns = "" if table.column_key == "method" else f" Columns: {tex_escape(table.column_key)}."
    return (f"Top-1 accuracy (\\%) of the deployed binary model{tex_escape(where)}{std}; {per_cell}. Bold: the best "
            f"binarized method of the row. drop: FP $-$ best binarized (points); comp.: compression (fp32 bytes / "
            f"packed bytes) of the best binarized method; div.: every seed diverged; fail.: every seed failed; "
            f"--: no run.{columns}")


def to_latex(table: Table) -> str:
    """The leaderboard as a booktabs ``tabular`` that fits one column of a two-column paper (``TEX_WIDTH_PT``).

    Row keys with one value in every row leave the table for the caption; of the others, the last labels the
    rows and the ones before it head groups of rows (a ``\\multicolumn`` row in italics, e.g.
    "cifar10 / resnet20" over the rows e2e and finetune); a table of one row has no label column. The data
    columns (FP, the methods, drop, comp.) are split into the fewest consecutive blocks that fit, stacked in
    one tabular, each with its own header row. A cell is the mean, bold when best, with ``$_{\\pm std}$``
    when it has several seeds; the number of seeds is stated once, in a comment line and in the commented
    ``\\caption`` (a cell with fewer seeds than the most of any cell carries its count as a superscript)."""
    seeds = _common_seeds(table)
    varying = [i for i in range(len(table.row_keys)) if len({row.key[i] for row in table.rows}) > 1]
    constant = [(table.row_keys[i], table.rows[0].key[i]) for i in range(len(table.row_keys))
                if i not in varying and table.rows]
    groups, labels = varying[:-1], varying[-1:]  # no label: one row, named by the caption alone

    def header(column) -> str:
        text = table.label(column)
        return text.split("=", 1)[1] if table.column_key != "method" and column != FP else text

    label_cells = [_tex_plain(text) for i in labels
                   for text in (table.row_keys[i], *(row.key[i] for row in table.rows))]
    columns = [[_tex_plain(header(c))] + [_tex_number_cell(row.cells.get(c), c in row.best, seeds)
                                          for row in table.rows] for c in table.columns]
    columns.append([_tex_plain("drop")] + [_tex_plain(_drop_text(row.drop, "md").replace(EMPTY, "–").replace("-", "−"))
                                            for row in table.rows])  # −: a minus sign, – (--): no value
    columns.append([_tex_plain("comp.")] + [_tex_plain(_compression_text(row.compression, "md").replace(EMPTY, "–"))
                                             for row in table.rows])
    label_width = max((c.width + TEX_GAP_PT for c in label_cells), default=0.0)
    blocks = _blocks(label_width, columns)
    slots = max(len(b) for b in blocks)
    gap = f"@{{\\hspace{{{TEX_GAP_PT:g}pt}}}}"
    spec = "@{}" + gap.join(["l"] * bool(label_cells) + ["r"] * slots) + "@{}"
    label = [c.source for c in label_cells]
    width = slots + bool(label_cells)
    lines = [f"\\begin{{tabular}}{{{spec}}}", "\\toprule"]
    for b, block in enumerate(blocks):
        if b:
            lines.append("\\midrule[\\heavyrulewidth]")  # a block starts: as heavy as the top rule
        pad = [""] * (slots - len(block))
        lines += [" & ".join([*label[:1], *(columns[i][0].source for i in block), *pad]) + " \\\\", "\\midrule"]
        heading = None
        for r, row in enumerate(table.rows):
            if groups and tuple(row.key[i] for i in groups) != heading:
                heading = tuple(row.key[i] for i in groups)
                text = tex_escape(" / ".join(heading))
                lines.append(f"\\multicolumn{{{width}}}{{@{{}}l}}{{\\textit{{{text}}}}} \\\\")
            cells = [*label[r + 1:r + 2], *(columns[i][r + 1].source for i in block), *pad]
            lines.append(" & ".join(cells) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}"]
    head = [
        "% Requires \\usepackage{booktabs}. Generated by `python -m bench aggregate`; do not edit.",
        f"% n = {seeds} seed{'s' if seeds != 1 else ''} per cell. Laid out for a {TEX_WIDTH_PT:g} pt column: "
        + (f"{len(blocks)} blocks of columns, stacked." if len(blocks) > 1 else "one block of columns."),
        f"% \\caption{{{tex_caption(table, seeds, constant)}}}",
    ]
    return "\n".join(head + lines) + "\n"


def _num(value: float | None, digits: int = 4) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def to_csv(table: Table) -> str:
    header = list(table.row_keys)
    for c in table.columns:
        label = table.label(c)
        header += [f"{label} mean", f"{label} std", f"{label} n", f"{label} diverged"]
    header += ["best", "drop", "compression"]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for row in table.rows:
        line = list(row.key)
        for c in table.columns:
            cell = row.cells.get(c)
            if cell is None:
                line += ["", "", "0", "0"]
            else:
                line += [_num(cell.mean), _num(cell.std), str(cell.n), str(cell.diverged)]
        line += [";".join(table.label(c) for c in row.best), _num(row.drop), _num(row.compression)]
        writer.writerow(line)
    return out.getvalue()


def _csv_value(value) -> str:
    """Like ``_text``, but an undefined value is an empty CSV field."""
    return "" if value is None else _text(value)


SUMMARY_HEAD = ("run_id", "grid", "status")
SUMMARY_TAIL = ("device", "wall_seconds", "git_commit", "error")


def summary_csv(records: list[dict]) -> str:
    """One row per record: run_id, grid, status, the flattened config, final.* metrics, device, time, commit, error."""
    rows = []
    config_keys, final_keys = set(), set()
    for record in records:
        flat = flatten(record["config"], empty=False)  # an empty table adds no column
        config_keys |= set(flat)
        final = flatten(record["final"], "final.", empty=False)
        final_keys |= set(final)
        rows.append((record, flat, final))
    header = [*SUMMARY_HEAD, *sorted(config_keys), *sorted(final_keys), *SUMMARY_TAIL]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for record, flat, final in rows:
        merged = {**{k: record.get(k) for k in SUMMARY_HEAD + SUMMARY_TAIL}, **flat, **final}
        writer.writerow([_csv_value(merged.get(k)) for k in header])
    return out.getvalue()


MD_NOTE = (
    "Top-1 accuracy (%) of the deployed binary model (α·sign(w)), mean ± std over seeds (std with ddof = 1; "
    "n shown when fewer than 3 seeds; div. = every seed diverged). Bold: best binarized method of the row. "
    "drop = FP − best binarized. compression = fp32 bytes / bytes of the packed file of the best binarized "
    "method. Built by `python -m bench aggregate` from results/runs/; see results/README.md."
)


def _write(path: Path, text: str) -> Path:
    atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))
    return path


def shipped_layout(grid: str) -> str | None:
    """The ``leaderboard_by`` of the shipped grid file ``bench/grids/<grid>.toml`` (None: the paper's layout)."""
    from bench.run.config import load_toml
    from bench.dispatch.grid import GRID_DIR

    path = GRID_DIR / f"{grid}.toml"
    return load_toml(path).get("leaderboard_by") if path.is_file() else None


def aggregate(grid: str, results_dir: str | Path = "results", by: str | None = None, figures: bool = True,
              warn=None) -> list[Path]:
    """Rebuild ``<results_dir>/<grid>/`` (leaderboards, summary, figures) from the grid's records; the paths written."""
    records = load_grid(grid, results_dir, warn=warn)
    if not records:
        folder = Path(results_dir) / "runs" / grid
        raise NoRecordsError(f"no valid run records for grid {grid!r} (looked in {folder})")
    layout = by or shipped_layout(grid)
    table = build_table(records, layout, grid=grid)
    out = Path(results_dir) / grid
    md = f"# Leaderboard: {grid}\n\n{to_markdown(table)}\n\n{MD_NOTE}\n"
    written = [
        _write(out / "leaderboard.md", md),
        _write(out / "leaderboard.csv", to_csv(table)),
        _write(out / "leaderboard.tex", to_latex(table)),
        _write(out / "summary.csv", summary_csv(records)),
    ]
    if figures:
        from bench.report import figures as figs

        written += figs.render(records, out / "figures", parse_by(layout)[0])
    return sorted(written)


def cli_aggregate(args) -> int:
    """``python -m bench aggregate [NAME] [--by ROWS:COLUMN] [--no-figures]``: print each grid's leaderboard.

    Every ``--by`` key must be a key of some record of each grid aggregated (``check_keys``): a misspelt key
    is one line naming the closest keys, and nothing is written."""
    results = args.results
    available = list_grids(results)
    if args.name is not None:
        if args.name not in available:
            hint = f" (grids with records: {', '.join(available)})" if available else ""
            raise UserError(f"no run records for grid {args.name!r} under {Path(results) / 'runs'}{hint}")
        grids = [args.name]
    else:
        if not available:
            raise UserError(f"no run records under {Path(results) / 'runs'}: run a grid first (make bench)")
        grids = available
    if args.by is not None and args.by.strip():
        row_keys, column_key = parse_by(args.by)
        silent = lambda message: None  # noqa: E731 - aggregate() reports skipped records once, below
        check_keys([*row_keys, column_key], {g: load_grid(g, results, warn=silent) for g in grids},
                   f"--by {args.by!r}")
    printed, errors = 0, []
    for grid in grids:
        try:
            aggregate(grid, results, by=args.by, figures=not args.no_figures)
        except NoRecordsError:
            if args.name is not None:
                raise
            print(f"warning: grid {grid!r} has no valid records; skipped", file=sys.stderr)
            continue
        except UserError as exc:  # a cell that mixes configs: the other grids are still rebuilt
            if args.name is not None:
                raise
            errors.append(str(exc))
            continue
        text = (Path(results) / grid / "leaderboard.md").read_text(encoding="utf-8")
        if printed:
            print()
        print(text, end="")
        printed += 1
    if errors:
        raise UserError("; ".join(errors))
    if not printed:
        raise UserError(f"no valid run records under {Path(results) / 'runs'}")
    return 0
