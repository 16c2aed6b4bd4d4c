"""The leaderboard and the run summary as CSV.

``leaderboard.csv``: the rows of the leaderboard, per column the mean, std, seed count and diverged count at
four decimals, then the best binarized method(s), the drop from FP and the best method's compression.
``summary.csv``: one row per record (run id, grid, status, the flattened config, ``final.*`` metrics,
device, wall time, commit, error), in the order given (sorted by run id).
"""

from __future__ import annotations

import csv
import io

from bench.report.keys import flatten, value_text
from bench.report.table import Table


def _num(value: float | None, digits: int = 4) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def to_csv(table: Table) -> str:
    """The leaderboard's numbers, one column each: per table column its mean, std, n and diverged count."""
    header = list(table.row_keys)
    for c in table.columns:
        label = table.label(c)
        header += [f"{label} mean", f"{label} std", f"{label} n", f"{label} diverged"]
    header += ["best", "drop", "compression"] if table.measure.accuracy else ["best"]
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
        line += [";".join(table.label(c) for c in row.best)]
        line += [_num(row.drop), _num(row.compression)] if table.measure.accuracy else []
        writer.writerow(line)
    return out.getvalue()


def _csv_value(value) -> str:
    """Like ``value_text``, but an undefined value is an empty CSV field."""
    return "" if value is None else value_text(value)


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
