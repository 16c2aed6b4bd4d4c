"""The leaderboard as data: rows of cells, one cell per (row, column), built from run records.

Rows are the values of the row keys (dataset × model × mode by default), columns FP and each method (the
column key, ``method`` by default; built-ins in their order, then others alphabetically; for another column
key, its values in order). A cell holds the deployed top-1 accuracies of its done seeds (``mean``, ``std``
with ddof = 1) and counts the diverged and failed ones; only ``status == "done"`` records enter a mean. A
cell pools the seeds of one config only (``bench.report.pooling``). Each row names its best binarized
cell(s) (the highest mean at two decimals), the drop from FP (FP − best binarized) and the compression of
the best binarized method. ``measure`` (``bench.report.measures``) picks what a cell holds (default: the
deployed accuracy) and whether lower is better. A winner is bold only when it is one: not when every
binarized cell ties (or there is only one), and for a noisy measure (accuracy, robustness) only when its mean beats every other
binarized mean by more than their spread, the larger std of the two cells when both have several seeds,
else ``spread`` points (one seed: ``measures.SEED_SPREAD``, the measured run-to-run spread; none for the
robustness index, whose one-seed cells are then never bold). A fine-tune row without an FP cell shows the FP cell of the row of its
``run:<id>`` fp parents (without such parents: of its ``mode = e2e`` row).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from bench.report.keys import finite_number, maybe_number, parse_by, value_of, value_sort_key, value_text
from bench.report.measures import SEED_SPREAD, Measure, get_measure
from bench.report.pooling import check_seeds_only
from bench.report.styles import FP, column_label, method_sort_key

EMPTY = "—"


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
    best: list  # column ids of the bold best binarized cell(s): empty when no cell wins outside the spread
    drop: float | None
    compression: float | None
    top: list = field(default_factory=list)  # column ids of the best binarized mean(s), bold or not


@dataclass
class Table:
    row_keys: tuple[str, ...]
    column_key: str
    columns: list  # column ids, FP first
    rows: list[Row]
    measure: Measure = field(default_factory=lambda: get_measure("acc"))
    spread: float | None = SEED_SPREAD

    def label(self, column) -> str:
        """The header of ``column`` (``bench.report.styles.column_label``)."""
        return column_label(self.column_key, column)


def build_table(records: list[dict], by: str | None = None, grid: str | None = None, measure: str = "acc",
                spread: float | None = SEED_SPREAD) -> Table:
    """The leaderboard of ``records`` (rows and column from ``by``); ``UserError`` when a cell would pool
    runs that are not seeds of one config (``bench.report.pooling``); ``grid`` names the grid in that error.
    ``measure``: what a cell holds (``bench.report.measures``); ``spread``: the one-seed spread of accuracy."""
    row_keys, column_key = parse_by(by)
    what = get_measure(measure)
    grouped: dict[tuple, dict] = {}
    raw_rows: dict[tuple, tuple] = {}
    members: dict[tuple, list[dict]] = {}
    for record in records:
        method = record["config"]["method"]
        column = FP if method == "fp" else value_text(value_of(record, column_key))
        values = tuple(value_of(record, k) for k in row_keys)
        key = tuple(value_text(v) for v in values)
        raw_rows[key] = values
        members.setdefault((key, column), []).append(record)
        cell = grouped.setdefault(key, {}).setdefault(column, Cell())
        if record["status"] == "done":
            value = what.value(record)
            if value is None:  # a done run without this measure (an older record): no value, no mark
                continue
            cell.accs.append(value)
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
                    key=method_sort_key if column_key == "method" else (lambda c: (value_sort_key(maybe_number(c)), c)))
    columns = ([FP] if FP in present else []) + others
    order = sorted(grouped, key=lambda k: tuple(value_sort_key(v) for v in raw_rows[k]) + (k,))
    check_seeds_only(members, order, columns, row_keys, column_key, records, grid)

    rows = []
    for key in order:
        cells = grouped[key]
        scored = [(round(cells[c].mean, what.digits), c) for c in others if c in cells and cells[c].n]
        pick = max if what.higher else min
        best_value = pick((s for s, _ in scored), default=None)
        top = [c for s, c in scored if s == best_value]
        fp_cell = cells.get(FP)
        drop = None
        if top and what.accuracy and fp_cell is not None and fp_cell.n:
            drop = fp_cell.mean - cells[top[0]].mean
        compression = cells[top[0]].compression if top else None
        rows.append(Row(key, cells, _winners(cells, top, [c for _, c in scored], what, spread), drop, compression,
                        top))
    return Table(row_keys, column_key, columns, rows, what, spread)


def _winners(cells: dict, top: list, scored: list, what: Measure, spread: float | None) -> list:
    """The bold cells: ``top``, unless every scored cell ties or (noisy measures) another cell lies within the
    spread of the winner (see the module docstring)."""
    if not top or len(top) == len(scored):  # no cell, one cell, or a tie of all: no winner
        return []
    if not what.noisy:
        return top
    fixed = spread if what.accuracy else None
    for c in top:
        for other in scored:
            if other in top:
                continue
            a, b = cells[c], cells[other]
            margin = abs(a.mean - b.mean)
            limit = max(a.std, b.std) if a.n >= 2 and b.n >= 2 else fixed
            if limit is None or margin <= limit:
                return []
    return top


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
