"""Leaderboards rebuilt from run records alone: ``python -m bench aggregate [GRID]``.

Input: ``<results>/runs/<grid>/*.json`` (schema 1, read by ``bench.report.loading``). Output, under
``<results>/<grid>/``:

* ``leaderboard.md`` (GitHub table, ``bench.report.markdown``), ``leaderboard.csv`` (the same numbers, one
  column each, ``bench.report.tables_csv``), ``leaderboard.tex`` (booktabs, fits one column of a two-column
  paper, ``bench.report.latex``): rows dataset × model × mode, columns FP and each method (the built-ins in
  the paper's order, then other methods alphabetically), cells ``mean ± std`` of the deployed top-1 accuracy
  over seeds (``bench.report.table``);
* ``summary.csv``: one row per record (flattened config, ``final.*`` metrics), sorted by run id;
* ``figures/*.png`` and ``*.pdf`` (``bench.report.figures``);
* when records carry the robustness track (``final.acc_corrupt``): a "Robustness" section in
  ``leaderboard.md`` (mean corrupted accuracy, and BiBench's robustness index, ``bench.report.robustness``),
  ``robustness.tex`` (the two tables) and ``robustness.csv`` (per row, method and corruption kind).

``--metric NAME`` (``bench.report.measures``: acc, acc_forward, acc_bn, acc_corrupt, robust, ops, packed,
time, memory, ...) and ``--transpose`` (methods as rows, ``bench.report.transposed``) write
``leaderboard-<metric>[-transposed].{md,csv,tex}`` instead (no summary, no figures).

The layout is ``--by ROWS:COLUMN``, else the grid file's ``leaderboard_by``, else dataset,model,mode:method.
A cell averages the seeds of one config only (``bench.report.pooling``): a cell that mixes configs is a
``UserError`` (``error: ...``, exit 2); with every grid, the others are still rebuilt. Same records -> same
bytes: everything is sorted, floats are formatted with fixed precision and nothing depends on time or file
order. Corrupt, partial or unknown-schema records, and done records whose ``final.acc`` is not a finite
number in [0, 100], are skipped with one warning on stderr that names them.
"""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path

from bench.atomic import atomic_write
from bench.errors import UserError
from bench.report.figures import render
from bench.report.keys import check_keys, parse_by, value_of, value_text
from bench.report.latex import to_latex
from bench.report.loading import NoRecordsError, list_grids, load_grid
from bench.report.markdown import md_note, to_markdown
from bench.report.measures import MEASURES, SEED_SPREAD, get_measure
from bench.report.robustness import corruption_rows, with_index
from bench.report.styles import column_label
from bench.report.table import build_table
from bench.report.tables_csv import summary_csv, to_csv
from bench.report.transposed import to_csv_t, to_latex_t, to_markdown_t
from bench.run.layout import records_dir


def _write(path: Path, text: str) -> Path:
    atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))
    return path


def shipped_layout(grid: str) -> str | None:
    """The ``leaderboard_by`` of the shipped grid file ``bench/grids/<grid>.toml`` (None: the paper's layout)."""
    from bench.dispatch.grid import GRID_DIR
    from bench.tomlfile import load_toml

    path = GRID_DIR / f"{grid}.toml"
    return load_toml(path).get("leaderboard_by") if path.is_file() else None


def leaderboard_name(metric: str = "acc", transpose: bool = False) -> str:
    """The file stem of a leaderboard: ``leaderboard`` (deployed accuracy), else ``leaderboard-<metric>``,
    ``-transposed`` appended for ``--transpose``."""
    stem = "leaderboard" if metric == "acc" else f"leaderboard-{metric}"
    return stem + ("-transposed" if transpose else "")


def write_grid(grid: str, records: list[dict], results_dir: str | Path = "results", by: str | None = None,
               figures: bool = True, metric: str = "acc", transpose: bool = False,
               spread: float | None = SEED_SPREAD) -> list[Path]:
    """Rebuild ``<results_dir>/<grid>/`` (leaderboards, summary, figures) from ``records``, the grid's valid
    records (``bench.report.loading.load_grid``); the paths written, sorted. Another ``metric`` or
    ``transpose`` writes that leaderboard alone (``leaderboard_name``)."""
    get_measure(metric)
    if not records:
        folder = records_dir(results_dir, grid)
        raise NoRecordsError(f"no valid run records for grid {grid!r} (looked in {folder})")
    records = with_index(records)
    layout = by or shipped_layout(grid)
    table = build_table(records, layout, grid=grid, measure=metric, spread=spread)
    out = Path(results_dir) / grid
    stem = leaderboard_name(metric, transpose)
    label = f"tab:{grid}-{metric}" + ("-t" if transpose else "")
    if transpose or metric != "acc":
        title = f"# Leaderboard: {grid} ({metric}{', transposed' if transpose else ''})"
        md = f"{title}\n\n{(to_markdown_t if transpose else to_markdown)(table)}\n\n{md_note(table)}\n"
        return sorted([
            _write(out / f"{stem}.md", md),
            _write(out / f"{stem}.csv", (to_csv_t if transpose else to_csv)(table)),
            _write(out / f"{stem}.tex", to_latex_t(table, label) if transpose else to_latex(table, tex_label=label)),
        ])
    md = f"# Leaderboard: {grid}\n\n{to_markdown(table)}\n\n{md_note(table)}\n"
    written = []
    if any(isinstance(r["final"].get("acc_corrupt"), (int, float)) for r in records):
        tables = [build_table(records, layout, grid=grid, measure=m, spread=spread) for m in ("acc_corrupt", "robust")]
        md += "".join(f"\n## {title}\n\n{to_markdown(t)}\n\n{md_note(t)}\n"
                      for title, t in zip(("Robustness: corrupted test sets", "Robustness index (BiBench)"), tables))
        tex = "\n".join(to_latex(t, tex_label=f"tab:{grid}-{t.measure.name}") for t in tables)
        written += [_write(out / "robustness.tex", tex), _write(out / "robustness.csv", _corruption_csv(records, layout))]
    written += [
        _write(out / "leaderboard.md", md),
        _write(out / "leaderboard.csv", to_csv(table)),
        _write(out / "leaderboard.tex", to_latex(table, tex_label=label)),
        _write(out / "summary.csv", summary_csv(records)),
    ]
    if figures:
        written += render(records, out / "figures", parse_by(layout)[0])
    return sorted(written)


def _corruption_csv(records: list[dict], layout: str | None) -> str:
    """``robustness.csv``: per row, column and corruption kind, the deployed accuracy (mean over severities and
    seeds) and the seed count."""
    row_keys, column_key = parse_by(layout)

    def column_of(record):
        return "FP" if record["config"]["method"] == "fp" else column_label(column_key, value_text(value_of(record, column_key)))

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*row_keys, column_key, "corruption", "acc", "seeds"])
    for *key, mean, n in corruption_rows(records, row_keys, column_of):
        writer.writerow([*key, f"{mean:.4f}", n])
    return out.getvalue()


def aggregate(grid: str, results_dir: str | Path = "results", by: str | None = None, figures: bool = True,
              warn=None, metric: str = "acc", transpose: bool = False, spread: float | None = SEED_SPREAD) -> list[Path]:
    """Rebuild ``<results_dir>/<grid>/`` from the grid's records (``write_grid``); the paths written."""
    get_measure(metric)
    return write_grid(grid, load_grid(grid, results_dir, warn=warn), results_dir, by, figures, metric, transpose,
                      spread)


def cli_aggregate(args) -> int:
    """``python -m bench aggregate [NAME] [--by ROWS:COLUMN] [--metric NAME] [--transpose] [--spread POINTS]
    [--no-figures]``: print each grid's leaderboard. An unknown metric is one line naming the valid ones.

    Every ``--by`` key must be a key of some record of each grid aggregated (``check_keys``): a misspelt key
    is one line naming the closest keys, and nothing is written. Each grid's records are read once; the
    warnings about skipped records are printed when that grid's turn comes."""
    results = args.results
    metric, transpose = getattr(args, "metric", "acc"), getattr(args, "transpose", False)
    get_measure(metric)  # an unknown name: one line, nothing written
    spread = getattr(args, "spread", SEED_SPREAD)
    if spread is not None and not spread >= 0:
        raise UserError(f"--spread must be a number of points ≥ 0, got {spread}")
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
    loaded: dict[str, tuple[list[dict], list[str]]] = {}
    for grid in grids:
        messages: list[str] = []
        loaded[grid] = (load_grid(grid, results, warn=messages.append), messages)
    if args.by is not None and args.by.strip():
        row_keys, column_key = parse_by(args.by)
        check_keys([*row_keys, column_key], {g: records for g, (records, _) in loaded.items()},
                   f"--by {args.by!r}")
    printed, errors = 0, []
    for grid in grids:
        records, messages = loaded[grid]
        for message in messages:
            print(message, file=sys.stderr)
        try:
            write_grid(grid, records, results, by=args.by, figures=not args.no_figures, metric=metric,
                       transpose=transpose, spread=spread)
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
        text = (Path(results) / grid / f"{leaderboard_name(metric, transpose)}.md").read_text(encoding="utf-8")
        if printed:
            print()
        print(text, end="")
        printed += 1
    if errors:
        raise UserError("; ".join(errors))
    if not printed:
        raise UserError(f"no valid run records under {Path(results) / 'runs'}")
    return 0
