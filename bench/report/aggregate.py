"""Leaderboards rebuilt from run records alone: ``python -m bench aggregate [GRID]``.

Input: ``<results>/runs/<grid>/*.json`` (schema 1, read by ``bench.report.loading``). Output, under
``<results>/<grid>/``:

* ``leaderboard.md`` (GitHub table, ``bench.report.markdown``), ``leaderboard.csv`` (the same numbers, one
  column each, ``bench.report.tables_csv``), ``leaderboard.tex`` (booktabs, fits one column of a two-column
  paper, ``bench.report.latex``): rows dataset × model × mode, columns FP and each method (the built-ins in
  the paper's order, then other methods alphabetically), cells ``mean ± std`` of the deployed top-1 accuracy
  over seeds (``bench.report.table``);
* ``summary.csv``: one row per record (flattened config, ``final.*`` metrics), sorted by run id;
* ``figures/*.png`` (``bench.report.figures``).

The layout is ``--by ROWS:COLUMN``, else the grid file's ``leaderboard_by``, else dataset,model,mode:method.
A cell averages the seeds of one config only (``bench.report.pooling``): a cell that mixes configs is a
``UserError`` (``error: ...``, exit 2); with every grid, the others are still rebuilt. Same records -> same
bytes: everything is sorted, floats are formatted with fixed precision and nothing depends on time or file
order. Corrupt, partial or unknown-schema records, and done records whose ``final.acc`` is not a finite
number in [0, 100], are skipped with one warning on stderr that names them.
"""

from __future__ import annotations

import sys
from pathlib import Path

from bench.atomic import atomic_write
from bench.errors import UserError
from bench.report.figures import render
from bench.report.keys import check_keys, parse_by
from bench.report.latex import to_latex
from bench.report.loading import NoRecordsError, list_grids, load_grid
from bench.report.markdown import MD_NOTE, to_markdown
from bench.report.table import build_table
from bench.report.tables_csv import summary_csv, to_csv
from bench.run.layout import records_dir


def _write(path: Path, text: str) -> Path:
    atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))
    return path


def shipped_layout(grid: str) -> str | None:
    """The ``leaderboard_by`` of the shipped grid file ``bench/grids/<grid>.toml`` (None: the paper's layout)."""
    from bench.dispatch.grid import GRID_DIR
    from bench.run.config import load_toml

    path = GRID_DIR / f"{grid}.toml"
    return load_toml(path).get("leaderboard_by") if path.is_file() else None


def write_grid(grid: str, records: list[dict], results_dir: str | Path = "results", by: str | None = None,
               figures: bool = True) -> list[Path]:
    """Rebuild ``<results_dir>/<grid>/`` (leaderboards, summary, figures) from ``records``, the grid's valid
    records (``bench.report.loading.load_grid``); the paths written, sorted."""
    if not records:
        folder = records_dir(results_dir, grid)
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
        written += render(records, out / "figures", parse_by(layout)[0])
    return sorted(written)


def aggregate(grid: str, results_dir: str | Path = "results", by: str | None = None, figures: bool = True,
              warn=None) -> list[Path]:
    """Rebuild ``<results_dir>/<grid>/`` from the grid's records (``write_grid``); the paths written."""
    return write_grid(grid, load_grid(grid, results_dir, warn=warn), results_dir, by, figures)


def cli_aggregate(args) -> int:
    """``python -m bench aggregate [NAME] [--by ROWS:COLUMN] [--no-figures]``: print each grid's leaderboard.

    Every ``--by`` key must be a key of some record of each grid aggregated (``check_keys``): a misspelt key
    is one line naming the closest keys, and nothing is written. Each grid's records are read once; the
    warnings about skipped records are printed when that grid's turn comes."""
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
            write_grid(grid, records, results, by=args.by, figures=not args.no_figures)
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
